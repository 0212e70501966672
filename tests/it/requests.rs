//! AWS requests per event, pinned for each function, counted where they leave the SDK: a change
//! that adds a request per event fails here (ingest's are pinned in `ingest.rs`). BENCHMARKS.md's
//! cost table prices these counts.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use switchboard_core::envelope::{DeliveryMessage, DeliveryV1, EventMessage, EventV1};
use switchboard_core::ids::EventId;
use switchboard_core::integration::Integrations;
use switchboard_core::network::NetworkPolicy;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::aws::{DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue};
use switchboard_shared::metrics::Metrics;

use crate::utils::receiver::Receiver;
use crate::utils::sdk_count::SentRequests;
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

/// One batch of messages with these bodies, as the event source mapping hands it over.
fn batch(bodies: Vec<String>) -> LambdaEvent<SqsEvent> {
    let mut event = SqsEvent::default();
    event.records = bodies
        .into_iter()
        .map(|body| {
            let mut m = SqsMessage::default();
            m.message_id = Some(ulid::Ulid::new().to_string());
            m.body = Some(body);
            m
        })
        .collect();
    LambdaEvent::new(event, Context::default())
}

async fn stack(receiver: &Receiver) -> TestStack {
    TestStack::with(
        &[("orders", crate::utils::stack::orders(&receiver.url))],
        &[("signing", SIGNING_SECRET), ("token", "t0ken")],
        FAST,
    )
    .await
}

/// Transform: per batch, one archive object (a line per event) and the tasks of every event
/// sent ten to a request; nothing else: no archive read for a body that travelled in the
/// message, no limiter for a route without limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_archives_a_batch_in_one_object_and_sends_its_tasks_together() {
    let receiver = Receiver::start().await;
    let stack = stack(&receiver).await;
    let (sdk, res) = (&stack.dev.sdk, &stack.dev.resources);
    let sent = SentRequests::default();
    let handler = transform::handler::Transform::new(
        Arc::new(Integrations::load_dir(&stack.dir).unwrap()),
        transform::handler::Ports {
            deliveries: SqsQueue::new(sent.sqs(sdk), &res.deliveries_url),
            dead_letters: SqsQueue::new(sent.sqs(sdk), &res.events_dlq_url),
            archive: S3Archive::new(sent.s3(sdk), &res.bucket),
            secrets: SecretsCache::new(
                SecretsManagerStore::new(sent.secrets_manager(sdk)),
                Duration::from_secs(300),
            ),
            metrics: Metrics::Off,
            network: NetworkPolicy::LOCAL,
            limiter: DynamoIdempotencyStore::new(sent.dynamodb(sdk), &res.table),
        },
        5,
    )
    .unwrap();
    let event = |n: u32| {
        serde_json::to_string(&EventMessage::EventV1(EventV1 {
            event_id: EventId::new(),
            integration: "orders".into(),
            received_at: chrono::Utc::now(),
            headers: Default::default(),
            body: json!({"name": format!("order {n}"), "items": [{"price": 3}]}),
            body_ref: None,
            routes: None,
            archived: None,
        }))
        .unwrap()
    };
    let out = handler.handle(batch(vec![event(1)])).await;
    assert!(out.batch_item_failures.is_empty());
    assert_eq!(sent.take(), ["PutObject", "SendMessage"]);
    let out = handler.handle(batch((2..12).map(event).collect())).await;
    assert!(out.batch_item_failures.is_empty());
    assert_eq!(
        sent.take(),
        ["PutObject", "SendMessageBatch"],
        "a full batch of ten: one object, one send"
    );
    // The object holds each event's line, the order its batch came in.
    let objects: Vec<String> = stack
        .archived()
        .await
        .into_iter()
        .filter(|k| k.ends_with(".jsonl.gz"))
        .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    let mut lines = 0;
    for key in objects {
        lines += stack.archive_object(&key).await.len();
    }
    assert_eq!(lines, 11);
    stack.dev.shutdown().await;
}

/// Deliver: in steady state a task's record is read before its call (GetItem, consistent) and
/// written after it (one conditional PutItem), nothing else; a container's first task also
/// reads its route's circuit and its credential, and takes a share slot for a destination it
/// has not seen answer yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_reads_and_writes_each_tasks_record_and_nothing_more_in_steady_state() {
    let receiver = Receiver::start().await;
    let stack = stack(&receiver).await;
    let (sdk, res) = (&stack.dev.sdk, &stack.dev.resources);
    let sent = SentRequests::default();
    let handler = deliver::handler::Deliver::new(
        Arc::new(Integrations::load_dir(&stack.dir).unwrap()),
        deliver::handler::Ports {
            idempotency: DynamoIdempotencyStore::new(sent.dynamodb(sdk), &res.table),
            secrets: SecretsCache::new(
                SecretsManagerStore::new(sent.secrets_manager(sdk)),
                Duration::from_secs(300),
            ),
            queue: SqsQueue::new(sent.sqs(sdk), &res.deliveries_url),
            dead_letters: SqsQueue::new(sent.sqs(sdk), &res.deliveries_dlq_url),
            metrics: Metrics::Off,
            network: NetworkPolicy::LOCAL,
            archive: S3Archive::new(sent.s3(sdk), &res.bucket),
        },
        50,
    )
    .unwrap();
    let task = |n: u32| {
        serde_json::to_string(&DeliveryMessage::DeliveryV1(DeliveryV1::of(
            EventId::new(),
            "orders",
            "echo",
            json!({"n": n}),
        )))
        .unwrap()
    };
    let out = handler.handle(batch(vec![task(1)])).await;
    assert!(out.batch_item_failures.is_empty());
    // A container's first task: its route's circuit read, a share slot for a destination not
    // yet seen answering (taken before the record's read, freed when the batch ends), the
    // record read, the bearer token, the record written.
    assert_eq!(
        sent.take(),
        [
            "GetItem",
            "PutItem",
            "GetItem",
            "GetSecretValue",
            "PutItem",
            "DeleteItem"
        ]
    );
    let out = handler.handle(batch(vec![task(2), task(3)])).await;
    assert!(out.batch_item_failures.is_empty());
    let steady = sent.take();
    let count = |op: &str| steady.iter().filter(|o| *o == op).count();
    // Each task's record read and written; the circuit is read at most once a second a
    // container: none, or one, here.
    assert_eq!(count("PutItem"), 2, "{steady:?}");
    assert!((2..=3).contains(&count("GetItem")), "{steady:?}");
    assert_eq!(
        steady.len(),
        count("PutItem") + count("GetItem"),
        "{steady:?}"
    );
    receiver.wait_for(3, Duration::from_secs(10)).await;
    stack.dev.shutdown().await;
}
