//! Secrets Manager requests in steady state: one per secret (and version stage) per TTL per
//! container, never one per event.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use deliver::handler::{Deliver, Ports};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use switchboard_core::envelope::{DeliveryMessage, DeliveryV1};
use switchboard_core::integration::Integrations;
use switchboard_core::ports::SecretStore;
use switchboard_core::secrets::{DEFAULT_TTL, SecretsCache};
use switchboard_shared::aws::{DynamoIdempotencyStore, SecretsManagerStore, SqsQueue};
use switchboard_shared::metrics::Metrics;

use crate::utils::receiver::Receiver;
use crate::utils::sdk_count::SentRequests;
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

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
    // Counted as they leave the SDK: what AWS would see and bill.
    let sent = SentRequests::default();
    let handler = Deliver::new(
        Arc::new(Integrations::load_dir(&stack.dir).unwrap()),
        Ports {
            idempotency: DynamoIdempotencyStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &stack.dev.resources.table,
            ),
            secrets: SecretsCache::new(
                SecretsManagerStore::new(sent.secrets_manager(sdk)),
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
            network: switchboard_core::network::NetworkPolicy::LOCAL,
            archive: switchboard_shared::memory::MemoryArchive::default(),
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
                let task = DeliveryMessage::DeliveryV1(DeliveryV1::of(
                    switchboard_core::ids::EventId::new(),
                    "orders",
                    "out",
                    json!({"n": batch * 10 + i}),
                ));
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
    let asked = sent.len();
    let per_1000 = asked as f64 * 1000.0 / events as f64;
    println!(
        "Secrets Manager requests: {asked} for {events} deliveries ({per_1000:.1} per 1,000 events) \
         within one TTL: the token; the signing key's versions and current value"
    );
    // The token once; the signing key's listing and its current value once: for the whole run.
    assert_eq!(asked, 3, "one read per secret and stage per TTL");
    assert_eq!(sent.count("ListSecretVersionIds"), 1);
    assert_eq!(sent.count("GetSecretValue"), 2);
    stack.dev.shutdown().await;
}

/// moto differs from AWS here, and the code is written for AWS: after `UpdateSecretVersionStage`
/// moves AWSCURRENT, moto's `GetSecretValue` without a `VersionStage` still answers the old
/// value (AWS answers AWSCURRENT). Every read names its stage, so both give the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_awscurrent_moves_every_read_gives_the_new_value() {
    let stack = TestStack::with(&[], &[("key", "value-1")], FAST).await;
    let client = aws_sdk_secretsmanager::Client::new(&stack.dev.sdk);
    let id = format!("{}/key", stack.prefix);
    let old_version = client
        .describe_secret()
        .secret_id(&id)
        .send()
        .await
        .unwrap()
        .version_ids_to_stages()
        .unwrap()
        .iter()
        .find(|(_, s)| s.iter().any(|s| s == "AWSCURRENT"))
        .map(|(v, _)| v.clone())
        .unwrap();
    let token = format!("{}-{}", ulid::Ulid::new(), ulid::Ulid::new());
    client
        .put_secret_value()
        .secret_id(&id)
        .client_request_token(&token)
        .secret_string("value-2")
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    client
        .update_secret_version_stage()
        .secret_id(&id)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&token)
        .remove_from_version_id(&old_version)
        .send()
        .await
        .unwrap();
    let unstaged = client
        .get_secret_value()
        .secret_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        unstaged.secret_string(),
        Some("value-1"),
        "moto now answers AWSCURRENT without a stage, as AWS does: this pin can go"
    );
    let store = SecretsManagerStore::new(client.clone());
    assert_eq!(store.get(&id).await.unwrap().expose(), "value-2");
    let stages = store.get_stages(&id).await.unwrap();
    assert_eq!(stages.current.expose(), "value-2");
    assert_eq!(
        stages.previous.as_ref().map(|v| v.expose()),
        Some("value-1")
    );
    let since = stages.current_since.expect("the version's creation date");
    assert!(
        (chrono::Utc::now().timestamp() - since).abs() < 60,
        "{since}"
    );
    // Nothing cleared AWSPENDING: it still labels the new version, as on AWS until a
    // rotation's finishSecret takes it off.
    assert_eq!(stages.pending.as_ref().map(|v| v.expose()), Some("value-2"));
    stack.dev.shutdown().await;
}
