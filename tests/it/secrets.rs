//! Secrets Manager requests in steady state: one per secret (and version stage) per TTL per
//! container, never one per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use deliver::handler::{Deliver, Ports};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use switchboard_shared::aws::{DynamoIdempotencyStore, SecretsManagerStore, SqsQueue};
use switchboard_shared::envelope::{DeliveryMessage, DeliveryV1};
use switchboard_shared::integration::Integrations;
use switchboard_shared::metrics::Metrics;
use switchboard_shared::ports::{AwsError, SecretStore};
use switchboard_shared::secret::SecretString;
use switchboard_shared::secrets::{DEFAULT_TTL, SecretsCache};

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

/// Secrets Manager, counting the requests that reach it.
struct Counting {
    inner: SecretsManagerStore,
    requests: Arc<AtomicUsize>,
}

impl SecretStore for Counting {
    async fn get(&self, id: &str) -> Result<SecretString, AwsError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.inner.get(id).await
    }
    async fn get_previous(&self, id: &str) -> Result<Option<SecretString>, AwsError> {
        // ListSecretVersionIds, then GetSecretValue when the change is recent.
        self.requests.fetch_add(2, Ordering::SeqCst);
        self.inner.get_previous(id).await
    }
    async fn get_pending(&self, id: &str) -> Result<Option<SecretString>, AwsError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.inner.get_pending(id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_is_asked_once_per_secret_per_ttl_not_per_event() {
    let receiver = Receiver::start().await;
    let definition = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n  - id: out\n    map: $\n    deliver:\n      url: {}\n      auth: {{ type: bearer, secret: SECRET/token }}\n      sign: {{ secret: SECRET/outbound }}\n",
        receiver.url
    );
    let stack = TestStack::with(
        &[("orders", definition)],
        &[
            ("signing", SIGNING_SECRET),
            ("token", "t0ken"),
            ("outbound", "whsec_b3V0Ym91bmQtc2lnbmluZy1rZXk="),
        ],
        FAST,
    )
    .await;
    let sdk = &stack.dev.sdk;
    let requests = Arc::new(AtomicUsize::new(0));
    let handler = Deliver::new(
        Arc::new(Integrations::load_dir(&stack.dir).unwrap()),
        Ports {
            idempotency: DynamoIdempotencyStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &stack.dev.resources.table,
            ),
            secrets: SecretsCache::new(
                Counting {
                    inner: SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk)),
                    requests: Arc::clone(&requests),
                },
                DEFAULT_TTL,
            ),
            queue: SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                &stack.dev.resources.deliveries_url,
            ),
            dead_letters: SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                &stack.dev.resources.deliveries_dlq_url,
            ),
            metrics: Metrics::Off,
        },
        50,
    )
    .unwrap();
    let events: usize = std::env::var("SECRETS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for batch in 0..events / 10 {
        let mut event = SqsEvent::default();
        event.records = (0..10)
            .map(|i| {
                let task = DeliveryMessage::DeliveryV1(DeliveryV1 {
                    event_id: switchboard_shared::ids::EventId::new(),
                    integration: "orders".into(),
                    route: "out".into(),
                    body: json!({"n": batch * 10 + i}),
                    method: None,
                    path: None,
                    headers: Default::default(),
                });
                let mut m = SqsMessage::default();
                m.message_id = Some(ulid::Ulid::new().to_string());
                m.body = Some(serde_json::to_string(&task).unwrap());
                m
            })
            .collect();
        let out = handler
            .handle(LambdaEvent::new(event, Context::default()))
            .await;
        assert!(out.batch_item_failures.is_empty());
    }
    receiver.wait_for(events, Duration::from_secs(60)).await;
    let asked = requests.load(Ordering::SeqCst);
    let per_1000 = asked as f64 * 1000.0 / events as f64;
    println!(
        "Secrets Manager requests: {asked} for {events} deliveries ({per_1000:.1} per 1,000 events) \
         within one TTL: the token, the signing key, its pending stage"
    );
    // Two secrets, one with its pending stage: read once each for the whole run.
    assert_eq!(asked, 3, "one read per secret and stage per TTL");
    stack.dev.shutdown().await;
}
