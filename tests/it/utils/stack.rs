//! A local stack per test on one shared emulator, each with its own resource and secret names.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use switchboard_cli::dev::{DevOptions, DevStack};
use switchboard_cli::emulator::{Emulator, free_port};
use switchboard_cli::resources::QueueSettings;
use switchboard_core::secret::SecretString;

pub const SIGNING_SECRET: &str = "whsec_dGVzdC1zaWduaW5nLWtleS1mb3ItZTJl";
pub const TOKEN: &str = "t0ken-for-the-destination";

/// The emulator every test in this binary shares. It exits with the test process.
fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| Emulator::start(free_port().unwrap()).expect("start the emulator"))
}

/// A running stack. Secret ids in definitions are written `SECRET/name` and become unique to
/// the test.
pub struct TestStack {
    pub dev: DevStack,
    pub sqs: aws_sdk_sqs::Client,
    pub dir: PathBuf,
    secrets: Vec<(String, String)>,
    /// The stack name: the prefix of every resource and secret of this test.
    pub prefix: String,
    http: reqwest::Client,
}

/// The `orders` integration: Standard Webhooks, route `echo` to `destination` with a bearer;
/// one retry, a second later.
pub fn orders(destination: &str) -> String {
    format!(
        r#"
source:
  verify: standard-webhooks
  secret: SECRET/signing
routes:
  - id: echo
    map: |
      {{ "name": name, "total": $sum(items.price) }}
    deliver:
      url: {destination}
      auth: {{ type: bearer, secret: SECRET/token }}
      retry: [1s]
"#
    )
}

impl TestStack {
    /// The `orders` integration only.
    pub async fn start(destination: &str, queues: QueueSettings) -> Self {
        Self::with(
            &[("orders", orders(destination))],
            &[("signing", SIGNING_SECRET), ("token", TOKEN)],
            queues,
        )
        .await
    }

    /// These definitions (file stem, YAML) and secrets (name, value).
    pub async fn with(
        definitions: &[(&str, String)],
        secrets: &[(&str, &str)],
        queues: QueueSettings,
    ) -> Self {
        let files: Vec<(String, String)> = definitions
            .iter()
            .map(|(name, yaml)| (format!("{name}.yaml"), yaml.clone()))
            .collect();
        Self::with_files(&files, secrets, queues).await
    }

    /// These files (path in the integrations directory, text: definitions, mappings, schemas)
    /// and secrets (name, value).
    pub async fn with_files(
        files: &[(String, String)],
        secrets: &[(&str, &str)],
        queues: QueueSettings,
    ) -> Self {
        Self::with_options(files, secrets, queues, |_| {}).await
    }

    /// As `with_files`, the stack's options changed by `tweak` first.
    pub async fn with_options(
        files: &[(String, String)],
        secrets: &[(&str, &str)],
        queues: QueueSettings,
        tweak: impl FnOnce(&mut DevOptions),
    ) -> Self {
        let port: u16 = emulator()
            .endpoint()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let id = ulid::Ulid::new().to_string().to_lowercase();
        let prefix = format!("t{id}");
        let dir = std::env::temp_dir().join(format!("sb-it-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (path, text) in files {
            let text = text.replace("SECRET/", &format!("{prefix}/"));
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let secrets: Vec<(String, String)> = secrets
            .iter()
            .map(|(n, v)| (format!("{prefix}/{n}"), v.to_string()))
            .collect();
        let secrets_file = std::env::temp_dir().join(format!("sb-it-{id}-secrets.yaml"));
        let yaml: String = secrets
            .iter()
            .map(|(n, v)| format!("{n}: {}\n", serde_json::to_string(v).unwrap()))
            .collect();
        std::fs::write(&secrets_file, yaml).unwrap();
        let mut options = DevOptions {
            port: 0,
            integrations: dir.clone(),
            secrets: Some(secrets_file),
            emulator_port: port,
            sink_port: None,
            stack: prefix.clone(),
            queues,
            ..DevOptions::default()
        };
        tweak(&mut options);
        let dev = DevStack::start(options)
            .await
            .expect("start the local stack");
        let sqs = aws_sdk_sqs::Client::new(&dev.sdk);
        Self {
            dev,
            sqs,
            dir,
            secrets,
            prefix,
            http: reqwest::Client::new(),
        }
    }

    /// Where `switchboard events` reads this stack: its bucket, definitions and name.
    pub fn reading(&self) -> switchboard_cli::ops::events::Reading {
        switchboard_cli::ops::events::Reading {
            bucket: Some(self.dev.resources.bucket.clone()),
            integrations: self.dir.clone(),
            stack: switchboard_cli::ops::StackArgs {
                stack: self.prefix.clone(),
                json: false,
            },
        }
    }

    /// The value of the test's secret `name`.
    pub fn secret(&self, name: &str) -> SecretString {
        let id = format!("{}/{name}", self.prefix);
        let value = &self.secrets.iter().find(|(n, _)| *n == id).unwrap().1;
        SecretString::new(value.clone())
    }

    /// Headers that sign `body` for `integration` as its provider would.
    pub fn sign(
        &self,
        integration: &str,
        body: &[u8],
        content_type: &str,
    ) -> Vec<(String, String)> {
        let definition = switchboard_cli::send::integration(&self.dir, integration).unwrap();
        let secret = definition.source.secret.as_ref().map(|id| {
            let name = id.rsplit('/').next().unwrap();
            self.secret(name)
        });
        switchboard_cli::send::signed_headers(
            &definition,
            secret.as_ref(),
            &self.dev.webhook_url(integration),
            body,
            content_type,
        )
        .unwrap()
    }

    /// Headers that sign a JSON `body` for `integration` as its provider would, but with
    /// `secret` and `age_secs` seconds ago: for wrong-secret, stale and rotation cases.
    pub fn sign_with(
        &self,
        integration: &str,
        secret: &str,
        body: &[u8],
        age_secs: i64,
    ) -> Vec<(String, String)> {
        let definition = switchboard_cli::send::integration(&self.dir, integration).unwrap();
        let mut headers = switchboard_core::verify::sign(
            &definition.source.scheme,
            &SecretString::new(secret),
            "POST",
            &self.dev.webhook_url(integration),
            body,
            &format!("msg_{}", ulid::Ulid::new()),
            chrono::Utc::now().timestamp() - age_secs,
        )
        .unwrap();
        headers.push(("content-type".into(), "application/json".into()));
        headers
    }

    /// Posts `body` with `headers` to the integration's webhook URL.
    pub async fn post(
        &self,
        integration: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .post(self.dev.webhook_url(integration))
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if status == 503 || status == 409 {
            assert!(
                response.headers().contains_key("retry-after"),
                "{status} without Retry-After"
            );
        }
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Signs and posts a JSON body.
    pub async fn post_signed(&self, integration: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let headers = self.sign(integration, body, "application/json");
        self.post(integration, &headers, body).await
    }

    /// How many tasks transform queued for `route` (its `Transforms` metric, outcome `queued`)
    /// since this stack started.
    pub fn queued(&self, route: &str) -> usize {
        self.dev
            .metrics
            .samples("Transforms", |l| {
                l["Route"] == route && l["Outcome"] == "queued"
            })
            .len()
    }

    /// Messages in a queue, visible or in flight.
    pub async fn depth(&self, url: &str) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes().unwrap();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| attrs[a].parse::<u64>().unwrap())
        .sum()
    }

    /// Objects in the archive bucket.
    pub async fn archived(&self) -> Vec<String> {
        let s3 = aws_sdk_s3::Client::new(&self.dev.sdk);
        let out = s3
            .list_objects_v2()
            .bucket(&self.dev.resources.bucket)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// The events an archive object holds (a batch object's lines, or one event alone).
    pub async fn archive_object(&self, key: &str) -> Vec<switchboard_core::archive::ArchivedEvent> {
        let bytes = self.archive_object_bytes(key).await;
        switchboard_core::archive::read_object(key, &bytes).unwrap()
    }

    /// An archive object's bytes, as stored.
    pub async fn archive_object_bytes(&self, key: &str) -> Vec<u8> {
        let object = aws_sdk_s3::Client::new(&self.dev.sdk)
            .get_object()
            .bucket(&self.dev.resources.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key} is not in the archive: {e:?}"));
        object.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// Every archived event (each line of each object), with the object's key.
    pub async fn archived_events(&self) -> Vec<(String, switchboard_core::archive::ArchivedEvent)> {
        let mut all = Vec::new();
        for key in self.archived().await {
            if key == "warm-up" || key.starts_with("audit/") || key.starts_with("tasks/") {
                continue;
            }
            for e in self.archive_object(&key).await {
                all.push((key.clone(), e));
            }
        }
        all
    }

    /// Receives one message from `url` with its message attributes, waiting up to `timeout`.
    pub async fn receive_with_attributes(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Option<(String, std::collections::BTreeMap<String, String>)> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .message_attribute_names("All")
                .max_number_of_messages(1)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            if let Some(m) = out.messages().first() {
                let attributes = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (k.clone(), v.string_value().unwrap_or_default().to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                return Some((m.body().unwrap_or_default().to_string(), attributes));
            }
        }
        None
    }
}

/// Queue settings that make retries quick.
pub const FAST: QueueSettings = QueueSettings {
    visibility_timeout_secs: 1,
    max_receive_count: 2,
    deliveries_max_receive_count: 20,
};

/// [`FAST`], with a visibility timeout that outlasts a call or an in-process wait of a few
/// seconds, as the deployed one (180 s) outlasts an invocation (30 s): a task is never
/// received twice at once, which deliver's record read before a call relies on.
pub const FAST_OUTLASTING: QueueSettings = QueueSettings {
    visibility_timeout_secs: 5,
    ..FAST
};
