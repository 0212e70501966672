//! The transform handler's rules on in-memory ports: what is queued for each route, and what
//! is dead-lettered with which reason. The same rules run end to end through the emulator in
//! `tests/it/transform.rs`.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use switchboard_core::envelope::{DeliveryMessage, EventMessage, EventV1};
use switchboard_core::ids::EventId;
use switchboard_core::integration::Integrations;
use switchboard_core::network::NetworkPolicy;
use switchboard_core::reason::Reason;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::memory::{
    DefinitionsDir, MemoryArchive, MemoryQueue, MemorySecrets, MemoryTable,
};
use switchboard_shared::metrics::Metrics;

use super::{Ports, Transform};

struct Harness {
    handler: Transform<MemoryQueue, MemoryQueue, MemoryArchive, MemorySecrets, MemoryTable>,
    deliveries: MemoryQueue,
    dlq: MemoryQueue,
    _dir: DefinitionsDir,
}

impl Harness {
    fn new() -> Self {
        let dir = DefinitionsDir::with(
            "shop",
            r#"source:
  verify: none
  allow_unsigned: true
routes:
  - id: to-3pl
    map: '{"sku": sku, "quantity": qty}'
    contract: { type: object, required: [sku, quantity] }
    deliver:
      url: https://api.example.com/orders
  - id: big-only
    when: qty > 10
    map: '{"n": qty}'
    deliver:
      url: https://api.example.com/big
"#,
        )
        .unwrap();
        let integrations = Arc::new(Integrations::load_dir(dir.path()).unwrap());
        let (deliveries, dlq) = (MemoryQueue::default(), MemoryQueue::default());
        let handler =
            Transform::new(integrations, ports(deliveries.clone(), dlq.clone()), 5).unwrap();
        Self {
            handler,
            deliveries,
            dlq,
            _dir: dir,
        }
    }

    /// Transforms one message; answers whether SQS is to hand it back.
    async fn transform(&self, body: String) -> bool {
        let mut m = SqsMessage::default();
        m.message_id = Some("m-1".into());
        m.body = Some(body);
        let mut e = SqsEvent::default();
        e.records = vec![m];
        let out = self
            .handler
            .handle(LambdaEvent::new(e, Context::default()))
            .await;
        !out.batch_item_failures.is_empty()
    }
}

/// In-memory ports around `deliveries`, as the deployed network rules allow.
fn ports<Q>(
    deliveries: Q,
    dlq: MemoryQueue,
) -> Ports<Q, MemoryQueue, MemoryArchive, MemorySecrets, MemoryTable> {
    Ports {
        deliveries,
        dead_letters: dlq,
        archive: MemoryArchive::default(),
        secrets: SecretsCache::new(MemorySecrets::default(), Duration::from_secs(60)),
        metrics: Metrics::Memory(Arc::default()),
        network: NetworkPolicy::DEPLOYED,
        limiter: MemoryTable::default(),
    }
}

fn event(body: serde_json::Value) -> String {
    serde_json::to_string(&EventMessage::EventV1(EventV1 {
        event_id: EventId::new(),
        integration: "shop".into(),
        received_at: chrono::Utc::now(),
        headers: Default::default(),
        body,
        body_ref: None,
        routes: None,
        archived: None,
    }))
    .unwrap()
}

#[tokio::test]
async fn each_route_that_applies_gets_its_mapped_task_and_the_others_are_skipped() {
    let h = Harness::new();
    assert!(
        !h.transform(event(serde_json::json!({"sku": "A-1", "qty": 2})))
            .await
    );
    let sent = h.deliveries.sent();
    assert_eq!(sent.len(), 1, "big-only skipped by its `when`: {sent:?}");
    let Ok(DeliveryMessage::DeliveryV1(task)) = DeliveryMessage::decode(&sent[0]) else {
        panic!("not a task: {}", sent[0]);
    };
    assert_eq!(task.route, "to-3pl");
    assert_eq!(task.body, serde_json::json!({"sku": "A-1", "quantity": 2}));
    assert!(task.received_at.is_some());
    assert!(h.dlq.letters().is_empty());
    // Fair within its destination (SQS fair queues): the group is the route's origin.
    assert_eq!(
        h.deliveries.groups(),
        [Some("https://api.example.com".to_string())]
    );
}

#[tokio::test]
async fn a_contract_violation_dead_letters_that_route_only_and_a_malformed_message_itself() {
    let h = Harness::new();
    // No sku: to-3pl's contract refuses it; big-only still runs.
    assert!(!h.transform(event(serde_json::json!({"qty": 20}))).await);
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::ContractViolation);
    assert_eq!(letters[0].route.as_deref(), Some("to-3pl"));
    let sent = h.deliveries.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("big-only"), "{sent:?}");
    // Counted in the vocabulary every function shares: a dead letter is `failed` (as in
    // deliver, whose failure-rate alarm reads it), the route's task `queued`.
    let metrics = &h.handler.metrics;
    assert_eq!(metrics.count("failed", "contract_violation"), 1);
    assert_eq!(metrics.count("queued", "mapped"), 1);

    assert!(!h.transform("not an envelope".into()).await);
    assert_eq!(h.dlq.letters()[1].reason, Reason::MalformedMessage);
}

/// An event whose body travelled in the archive, when the archive cannot give it back: handed
/// back to SQS (the archive may recover), and on the queue's last receive dead-lettered
/// `archive_unavailable` with the reason, never dropped.
#[tokio::test]
async fn an_archived_body_that_cannot_be_read_is_retried_then_dead_lettered_archive_unavailable() {
    let h = Harness::new();
    let mut pointer =
        serde_json::from_str::<serde_json::Value>(&event(serde_json::json!(null))).unwrap();
    pointer["body_ref"] = serde_json::json!("shop/2026/12/06/evt_gone");
    let body = pointer.to_string();
    let receive = |n: u32| {
        let mut m = SqsMessage::default();
        m.message_id = Some("m-archived".into());
        m.body = Some(body.clone());
        m.attributes
            .insert("ApproximateReceiveCount".into(), n.to_string());
        let mut e = SqsEvent::default();
        e.records = vec![m];
        LambdaEvent::new(e, Context::default())
    };
    let first = h.handler.handle(receive(1)).await;
    assert_eq!(first.batch_item_failures.len(), 1, "handed back to SQS");
    assert!(h.dlq.letters().is_empty());
    let last = h.handler.handle(receive(5)).await;
    assert!(
        last.batch_item_failures.is_empty(),
        "settled on the last receive"
    );
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::ArchiveUnavailable);
    assert!(h.deliveries.sent().is_empty());
}

/// A deliveries queue that refuses every send.
struct Refusing;

impl switchboard_core::ports::Queue for Refusing {
    async fn send(
        &self,
        _: &[switchboard_core::ports::Outgoing],
    ) -> Result<(), switchboard_core::ports::PortError> {
        Err(switchboard_core::ports::PortError {
            operation: "SendMessageBatch",
            message: "the service is unavailable".into(),
        })
    }
}

/// The deliveries queue refusing the event's tasks: handed back, then on the queue's last
/// receive dead-lettered `queue_unavailable`.
#[tokio::test]
async fn tasks_the_deliveries_queue_refuses_are_retried_then_dead_lettered_queue_unavailable() {
    let dir = DefinitionsDir::with(
        "shop",
        "source:\n  verify: none\n  allow_unsigned: true\nroutes:\n  - id: r\n    map: $\n    deliver:\n      url: https://api.example.com/orders\n",
    )
    .unwrap();
    let dlq = MemoryQueue::default();
    let integrations = Arc::new(Integrations::load_dir(dir.path()).unwrap());
    let handler = Transform::new(integrations, ports(Refusing, dlq.clone()), 5).unwrap();
    let receive = |n: u32| {
        let mut m = SqsMessage::default();
        m.message_id = Some("m-refused".into());
        m.body = Some(event(serde_json::json!({"sku": "A"})));
        m.attributes
            .insert("ApproximateReceiveCount".into(), n.to_string());
        let mut e = SqsEvent::default();
        e.records = vec![m];
        LambdaEvent::new(e, Context::default())
    };
    assert_eq!(
        handler.handle(receive(1)).await.batch_item_failures.len(),
        1
    );
    assert!(dlq.letters().is_empty());
    assert!(
        handler
            .handle(receive(5))
            .await
            .batch_item_failures
            .is_empty()
    );
    let letters = dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::QueueUnavailable);
    assert!(
        letters[0].message.contains("unavailable"),
        "{}",
        letters[0].message
    );
}
