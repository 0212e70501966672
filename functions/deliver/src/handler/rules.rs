//! The deliver handler's rules on in-memory ports and a loopback destination: what each
//! answer does to the task, its claim, its history and the circuit. The same rules run end to
//! end through the emulator in `tests/it/deliver.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use switchboard_core::circuit::CircuitState;
use switchboard_core::dead_letter::AttemptRecord;
use switchboard_core::envelope::{DeliveryMessage, DeliveryV1};
use switchboard_core::ids::EventId;
use switchboard_core::integration::{Integrations, Outbound};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::AttemptLog;
use switchboard_core::reason::Reason;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::memory::{DefinitionsDir, MemoryQueue, MemorySecrets, MemoryTable};
use switchboard_shared::metrics::Metrics;

use super::{Deliver, Ports};

/// A destination that answers `status` with `body` and counts what it is asked.
struct Destination {
    url: String,
    status: Arc<AtomicU16>,
    body: Arc<std::sync::Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl Destination {
    async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(status));
        let hits = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(std::sync::Mutex::new(String::new()));
        let (s, h, b) = (status.clone(), hits.clone(), body.clone());
        let app = axum::Router::new().fallback(move || {
            let (s, h, b) = (s.clone(), h.clone(), b.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let status = axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                (status, b.lock().unwrap().clone())
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            status,
            body,
            hits,
        }
    }

    fn answer(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

struct Harness {
    handler: Deliver<MemorySecrets, MemoryQueue, MemoryQueue, MemoryTable>,
    integrations: Arc<Integrations<Outbound>>,
    table: MemoryTable,
    queue: MemoryQueue,
    dlq: MemoryQueue,
    _dir: DefinitionsDir,
}

impl Harness {
    /// The `shop` integration with one route `r` to `url`, `deliver` settings added.
    fn new(url: &str, deliver: &str) -> Self {
        let dir = DefinitionsDir::with(
            "shop",
            &format!(
                "source:\n  verify: none\n  allow_unsigned: true\nroutes:\n  - id: r\n    map: $\n    deliver:\n      url: {url}\n{deliver}"
            ),
        )
        .unwrap();
        let integrations = Arc::new(Integrations::load_dir(dir.path()).unwrap());
        let (table, queue, dlq) = (
            MemoryTable::default(),
            MemoryQueue::default(),
            MemoryQueue::default(),
        );
        let handler = Deliver::new(
            integrations.clone(),
            Ports {
                idempotency: table.clone(),
                secrets: SecretsCache::new(MemorySecrets::default(), Duration::from_secs(60)),
                queue: queue.clone(),
                dead_letters: dlq.clone(),
                metrics: Metrics::Off,
                network: NetworkPolicy::LOCAL,
            },
            10,
        )
        .unwrap();
        Self {
            handler,
            integrations,
            table,
            queue,
            dlq,
            _dir: dir,
        }
    }

    fn destination(&self) -> String {
        self.integrations.get("shop").unwrap().routes[0]
            .deliver
            .destination()
    }

    /// Delivers one task on its `receives`th receive; answers whether SQS is to hand it back.
    async fn deliver(&self, event_id: &EventId, receives: u32) -> bool {
        let task = DeliveryMessage::DeliveryV1(DeliveryV1 {
            event_id: event_id.clone(),
            integration: "shop".into(),
            route: "r".into(),
            body: serde_json::json!({"order": 1}),
            method: None,
            path: None,
            headers: Default::default(),
            received_at: None,
        });
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("m-{event_id}"));
        m.receipt_handle = Some("receipt".into());
        m.body = Some(serde_json::to_string(&task).unwrap());
        m.attributes
            .insert("ApproximateReceiveCount".into(), receives.to_string());
        let mut e = SqsEvent::default();
        e.records = vec![m];
        let out = self
            .handler
            .handle(LambdaEvent::new(e, Context::default()))
            .await;
        !out.batch_item_failures.is_empty()
    }
}

fn task(id: &EventId) -> String {
    format!("{id}#r")
}

#[tokio::test]
async fn a_refused_task_is_dead_lettered_once_with_its_reason_and_its_claim_released() {
    let dest = Destination::start(400).await;
    let h = Harness::new(&dest.url, "");
    let id = EventId::new();
    assert!(!h.deliver(&id, 1).await, "settled, not handed back");
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::PermanentFailure);
    assert_eq!(letters[0].last_status, Some(400));
    assert_eq!(letters[0].attempts, 1);
    assert_eq!(
        h.table.record(&format!("deliver#{id}#r")),
        None,
        "claim released"
    );
    assert_eq!(dest.hits(), 1);
    assert!(h.queue.delays().is_empty());
}

#[tokio::test]
async fn a_failed_attempt_waits_its_scheduled_delay_and_joins_the_history() {
    let dest = Destination::start(503).await;
    let h = Harness::new(&dest.url, "      retry: [100s, 200s]\n");
    let id = EventId::new();
    assert!(h.deliver(&id, 1).await, "handed back for a retry");
    let delays = h.queue.delays();
    assert_eq!(delays.len(), 1);
    let wait = delays[0].1.as_secs();
    assert!((80..=120).contains(&wait), "100 s ± 20%: {wait}");
    let history = h.table.history(&task(&id));
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, Some(503));
    assert!(h.dlq.letters().is_empty());
    assert_eq!(h.table.record(&format!("deliver#{id}#r")), None);

    // The second failure is the schedule's last: dead-lettered with the whole history.
    h.deliver(&id, 2).await;
    h.deliver(&id, 3).await;
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, Reason::RetriesExhausted);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(dest.hits(), 3);
}

#[tokio::test]
async fn a_delivered_task_is_not_sent_again() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "");
    let id = EventId::new();
    assert!(!h.deliver(&id, 1).await);
    // Were it sent again, this answer would hand it back.
    dest.status.store(503, Ordering::SeqCst);
    assert!(!h.deliver(&id, 2).await, "a redelivery after the success");
    assert_eq!(dest.hits(), 1);
    assert!(h.dlq.letters().is_empty());
}

#[tokio::test]
async fn an_open_circuit_holds_the_task_without_calling_until_its_cool_down() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "");
    let now = chrono::Utc::now().timestamp_millis();
    h.table.set_circuit(
        &h.destination(),
        CircuitState {
            failures: 10,
            open_until_ms: Some(now + 60_000),
            probe_until_ms: None,
        },
    );
    assert!(h.deliver(&EventId::new(), 1).await);
    assert_eq!(dest.hits(), 0);
    let wait = h.queue.delays()[0].1.as_secs();
    assert!((58..=72).contains(&wait), "the cool-down, spread: {wait}");
}

#[tokio::test]
async fn failures_open_the_circuit_at_the_threshold_and_a_410_at_once() {
    let dest = Destination::start(503).await;
    let h = Harness::new(
        &dest.url,
        "      retry: [1s, 1s, 1s]\n      circuit: { failures: 2, cool_down: 30s }\n",
    );
    h.deliver(&EventId::new(), 1).await;
    assert_eq!(h.table.circuit_of(&h.destination()).open_until_ms, None);
    h.deliver(&EventId::new(), 1).await;
    assert!(h.table.circuit_of(&h.destination()).open_until_ms.is_some());

    let gone = Destination::start(410).await;
    let h = Harness::new(&gone.url, "");
    h.deliver(&EventId::new(), 1).await;
    assert!(h.table.circuit_of(&h.destination()).open_until_ms.is_some());
    assert_eq!(h.dlq.letters()[0].reason, Reason::PermanentFailure);
}

#[tokio::test]
async fn a_redelivery_already_refused_is_dead_lettered_without_calling() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "");
    let id = EventId::new();
    // The worker that got the 400 died before dead-lettering it.
    h.table
        .record_attempt(
            &task(&id),
            &AttemptRecord {
                receive: 1,
                at: "2026-12-01T09:00:00Z".into(),
                status: Some(400),
                error: None,
                latency_ms: 12,
                response: None,
            },
            0,
        )
        .await
        .unwrap();
    assert!(!h.deliver(&id, 2).await);
    assert_eq!(dest.hits(), 0);
    let letters = h.dlq.letters();
    assert_eq!(letters[0].reason, Reason::PermanentFailure);
    assert_eq!(letters[0].last_status, Some(400));
    // And that message is not dead-lettered a second time.
    assert!(!h.deliver(&id, 3).await);
    assert_eq!(h.dlq.letters().len(), 1);
}

#[tokio::test]
async fn a_200_that_says_it_failed_is_not_delivered_and_a_rate_limit_is_retried() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "      success: slack\n      retry: [100s]\n");
    dest.answer(r#"{"ok": true, "ts": "1.2"}"#);
    assert!(
        !h.deliver(&EventId::new(), 1).await,
        "ok: true is delivered"
    );
    assert!(h.dlq.letters().is_empty());

    // Slack's `ok: false` with an error: dead-lettered with what it said.
    dest.answer(r#"{"ok": false, "error": "channel_not_found"}"#);
    let id = EventId::new();
    assert!(!h.deliver(&id, 1).await);
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::RejectedByDestination);
    assert_eq!(letters[0].last_status, Some(200));
    assert!(letters[0].message.contains("success check"), "{letters:?}");
    let history = letters[0].history.as_deref().unwrap_or_default();
    assert!(history.contains("channel_not_found"), "{history}");

    // `ratelimited` is the preset's retry rule: handed back on the schedule.
    dest.answer(r#"{"ok": false, "error": "ratelimited"}"#);
    assert!(h.deliver(&EventId::new(), 1).await);
    assert_eq!(h.dlq.letters().len(), 1);
    let wait = h.queue.delays().last().unwrap().1.as_secs();
    assert!((80..=120).contains(&wait), "{wait}");
    // A 200 that says it failed is the destination up: the circuit counts nothing.
    assert_eq!(h.table.circuit_of(&h.destination()).failures, 0);
}

#[tokio::test]
async fn graphql_user_errors_are_a_failure_and_data_alone_is_delivered() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "      success: graphql\n");
    dest.answer(
        r#"{"data": {"fulfillmentCreate": {"fulfillment": {"id": "gid://1"}, "userErrors": []}}}"#,
    );
    assert!(!h.deliver(&EventId::new(), 1).await);
    assert!(h.dlq.letters().is_empty(), "{:?}", h.dlq.letters());
    dest.answer(
        r#"{"data": {"fulfillmentCreate": {"fulfillment": null, "userErrors": [{"field": ["id"], "message": "not found"}]}}}"#,
    );
    assert!(!h.deliver(&EventId::new(), 1).await);
    dest.answer(r#"{"errors": [{"message": "syntax error"}]}"#);
    assert!(!h.deliver(&EventId::new(), 1).await);
    let reasons: Vec<Reason> = h.dlq.letters().iter().map(|l| l.reason).collect();
    assert_eq!(reasons, [Reason::RejectedByDestination; 2]);
    // Throttled is worth another try.
    dest.answer(r#"{"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}"#);
    assert!(h.deliver(&EventId::new(), 1).await);
    assert_eq!(h.dlq.letters().len(), 2);
}
