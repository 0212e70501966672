//! A local stack per test on one shared emulator, each with its own resource names.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use switchboard_cli::dev::{DevOptions, DevStack};
use switchboard_cli::emulator::{Emulator, free_port};
use switchboard_cli::resources::QueueSettings;
use switchboard_shared::secret::{SecretString, WebhookSecret};

pub const SIGNING_SECRET: &str = "whsec_dGVzdC1zaWduaW5nLWtleS1mb3ItZTJl";
pub const TOKEN: &str = "t0ken-for-the-destination";

/// The emulator every test in this binary shares. It exits with the test process.
fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| Emulator::start(free_port().unwrap()).expect("start the emulator"))
}

/// A running stack with one integration, `orders`, whose route `echo` posts to `destination`.
pub struct TestStack {
    pub dev: DevStack,
    pub sqs: aws_sdk_sqs::Client,
    http: reqwest::Client,
}

impl TestStack {
    pub async fn start(destination: &str, queues: QueueSettings) -> Self {
        let port: u16 = emulator()
            .endpoint()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let id = ulid::Ulid::new().to_string().to_lowercase();
        let dir = std::env::temp_dir().join(format!("sb-it-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("orders.yaml"),
            format!(
                r#"
source:
  verify: standard-webhooks
  secret: t{id}/signing
routes:
  - id: echo
    map: |
      {{ "name": name, "total": $sum(items.price) }}
    deliver:
      url: {destination}
      auth: {{ type: bearer, secret: t{id}/token }}
"#
            ),
        )
        .unwrap();
        let secrets: PathBuf = std::env::temp_dir().join(format!("sb-it-{id}-secrets.yaml"));
        std::fs::write(
            &secrets,
            format!("t{id}/signing: {SIGNING_SECRET}\nt{id}/token: {TOKEN}\n"),
        )
        .unwrap();
        let dev = DevStack::start(DevOptions {
            port: 0,
            integrations: dir,
            secrets: Some(secrets),
            emulator_port: port,
            sink_port: None,
            stack: format!("t{id}"),
            queues,
            delivery_timeout: Duration::from_secs(5),
        })
        .await
        .expect("start the local stack");
        let sqs = aws_sdk_sqs::Client::new(&dev.sdk);
        Self {
            dev,
            sqs,
            http: reqwest::Client::new(),
        }
    }

    /// Posts `body` with the given headers to the `orders` webhook URL.
    pub async fn post(&self, headers: &[(&str, String)], body: &[u8]) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .post(self.dev.webhook_url("orders"))
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
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

    /// Receives one message from `url`, waiting up to `timeout`.
    pub async fn receive_one(&self, url: &str, timeout: Duration) -> Option<String> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            if let Some(m) = out.messages().first() {
                return m.body().map(str::to_string);
            }
        }
        None
    }
}

/// The signing key the test integration verifies with.
pub fn signing_key() -> WebhookSecret {
    WebhookSecret::parse(&SecretString::new(SIGNING_SECRET)).unwrap()
}

/// Queue settings that make retries quick.
pub const FAST: QueueSettings = QueueSettings {
    visibility_timeout_secs: 1,
    max_receive_count: 2,
};
