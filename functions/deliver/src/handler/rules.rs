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
use switchboard_core::idempotency::Status;
use switchboard_core::ids::EventId;
use switchboard_core::integration::{Integrations, Outbound};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::{AttemptLog, LetterClaim, ReviewStore};
use switchboard_core::reason::Reason;
use switchboard_core::review::{ReviewItem, ReviewStatus};
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::memory::{
    DefinitionsDir, MemoryArchive, MemoryQueue, MemorySecrets, MemoryTable,
};
use switchboard_shared::metrics::Metrics;

use super::{Deliver, Ports};

/// A destination that answers `status` with `body` and counts what it is asked.
pub(super) struct Destination {
    pub(super) url: String,
    pub(super) status: Arc<AtomicU16>,
    body: Arc<std::sync::Mutex<String>>,
    hits: Arc<AtomicUsize>,
    /// The bodies it was sent, in order.
    pub(super) received: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Destination {
    pub(super) async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(status));
        let hits = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(std::sync::Mutex::new(String::new()));
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, h, b, r) = (status.clone(), hits.clone(), body.clone(), received.clone());
        let app = axum::Router::new().fallback(move |sent: String| {
            let (s, h, b, r) = (s.clone(), h.clone(), b.clone(), r.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                r.lock().unwrap().push(sent);
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
            received,
        }
    }

    pub(super) fn answer(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    pub(super) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

pub(super) struct Harness {
    pub(super) handler:
        Deliver<Ports<MemorySecrets, MemoryQueue, MemoryQueue, MemoryTable, MemoryArchive>>,
    pub(super) integrations: Arc<Integrations<Outbound>>,
    pub(super) table: MemoryTable,
    pub(super) queue: MemoryQueue,
    pub(super) dlq: MemoryQueue,
    pub(super) archive: MemoryArchive,
    pub(super) _dir: DefinitionsDir,
}

impl Harness {
    /// The `shop` integration with one route `r` to `url`, `deliver` settings added.
    pub(super) fn new(url: &str, deliver: &str) -> Self {
        let dir = DefinitionsDir::with(
            "shop",
            &format!(
                "source:\n  verify: none\n  allow_unsigned: true\nroutes:\n  - id: r\n    map: $\n    deliver:\n      url: {url}\n{deliver}"
            ),
        )
        .unwrap();
        let integrations = Arc::new(Integrations::load_dir(dir.path()).unwrap());
        let (table, queue, dlq, archive) = (
            MemoryTable::default(),
            MemoryQueue::default(),
            MemoryQueue::default(),
            MemoryArchive::default(),
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
                archive: archive.clone(),
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
            archive,
            _dir: dir,
        }
    }

    /// The route's circuit key.
    pub(super) fn circuit(&self) -> String {
        let destination = self.integrations.get("shop").unwrap().routes[0]
            .deliver
            .destination();
        switchboard_core::circuit::key("shop", "r", &destination)
    }

    /// Delivers one task on its `receives`th receive; answers whether SQS is to hand it back.
    pub(super) async fn deliver(&self, event_id: &EventId, receives: u32) -> bool {
        self.deliver_task(shop_task(event_id, None), receives).await
    }

    /// [`Harness::deliver`] of a task as given.
    pub(super) async fn deliver_task(&self, task: DeliveryV1, receives: u32) -> bool {
        let message_id = format!("m-{}", task.event_id);
        self.deliver_message(task, receives, &message_id).await
    }

    /// [`Harness::deliver_task`] in the SQS message `message_id`.
    async fn deliver_message(&self, task: DeliveryV1, receives: u32, message_id: &str) -> bool {
        let task = DeliveryMessage::DeliveryV1(task);
        self.deliver_body(&serde_json::to_string(&task).unwrap(), receives, message_id)
            .await
    }

    /// A message body as given, on its first receive.
    async fn deliver_text(&self, body: &str, message_id: &str) -> bool {
        self.deliver_body(body, 1, message_id).await
    }

    pub(super) async fn deliver_body(&self, body: &str, receives: u32, message_id: &str) -> bool {
        let mut m = SqsMessage::default();
        m.message_id = Some(message_id.to_string());
        m.receipt_handle = Some("receipt".into());
        m.body = Some(body.to_string());
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

/// A task of the `shop` integration's route `r`, held for review when `review` is given.
pub(super) fn shop_task(event_id: &EventId, review: Option<&str>) -> DeliveryV1 {
    DeliveryV1 {
        event_id: event_id.clone(),
        integration: "shop".into(),
        route: "r".into(),
        body: serde_json::json!({"order": 1}),
        method: None,
        path: None,
        headers: Default::default(),
        received_at: None,
        review: review.map(str::to_string),
        reviewed: None,
        archived: None,
        order: None,
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
async fn a_path_climbing_out_of_the_route_is_refused_without_a_call() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "");
    for path in [
        "/ok/%2e%2E/admin",
        "/a\\..\\b",
        "/x#/../admin",
        "//evil.example/x",
    ] {
        let mut climbing = shop_task(&EventId::new(), None);
        climbing.path = Some(path.into());
        assert!(!h.deliver_task(climbing, 1).await, "{path}: settled");
    }
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 4);
    assert!(letters.iter().all(|l| l.reason == Reason::NetworkRefused));
    assert_eq!(dest.hits(), 0);
}

#[tokio::test]
async fn a_task_queued_twice_and_refused_twice_leaves_one_letter() {
    let dest = Destination::start(400).await;
    let h = Harness::new(&dest.url, "");
    let id = EventId::new();
    // Transform killed after its send queues the same task again, as a new message.
    assert!(!h.deliver_message(shop_task(&id, None), 1, "first").await);
    assert!(!h.deliver_message(shop_task(&id, None), 1, "second").await);
    assert_eq!(h.dlq.letters().len(), 1, "one refusal, one letter");
    // A redelivery of the second copy does not write one either; nor does the first's.
    assert!(!h.deliver_message(shop_task(&id, None), 2, "second").await);
    assert!(!h.deliver_message(shop_task(&id, None), 2, "first").await);
    assert_eq!(h.dlq.letters().len(), 1);
}

/// A task the destination refused: its attempt is recorded (as the worker that called did
/// before it claimed the letter).
async fn refused_once(h: &Harness, id: &EventId) {
    let refusal = AttemptRecord {
        receive: 1,
        at: chrono::Utc::now().to_rfc3339(),
        status: Some(400),
        error: None,
        latency_ms: 3,
        response: None,
    };
    h.table
        .record_attempt(&task(id), &refusal, 0)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_letter_claimed_by_a_worker_that_died_is_written_by_its_successor_after_the_lease() {
    let dest = Destination::start(400).await;
    let h = Harness::new(&dest.url, "");
    let now = chrono::Utc::now().timestamp_millis();
    // A worker still at it (its lease live): the same message on another worker comes back.
    let busy = EventId::new();
    refused_once(&h, &busy).await;
    let (key, table) = (task(&busy), &h.table);
    let claim = table
        .claim_dead_letter(&key, "m-1", now, now + 60_000)
        .await;
    assert_eq!(claim.unwrap(), LetterClaim::Won);
    assert!(
        h.deliver_message(shop_task(&busy, None), 2, "m-1").await,
        "handed back"
    );
    assert!(h.dlq.letters().is_empty());
    // The worker finished (letter sent, message marked); its message comes back past the
    // lease, held before any call (an open circuit, say): no second letter.
    h.table
        .mark_dead_lettered(&key, "m-1", "permanent_failure")
        .await
        .unwrap();
    let later = table
        .claim_dead_letter(&key, "m-1", now + 120_000, now + 150_000)
        .await;
    assert_eq!(later.unwrap(), LetterClaim::Sent);
    // A worker that died after its claim, before its letter (its lease lapsed): the letter is
    // written by the next worker of that message, not lost, and the destination not asked.
    let died = EventId::new();
    refused_once(&h, &died).await;
    let key = task(&died);
    let claim = table
        .claim_dead_letter(&key, "m-2", now - 60_000, now - 1)
        .await;
    assert_eq!(claim.unwrap(), LetterClaim::Won);
    assert!(!h.deliver_message(shop_task(&died, None), 2, "m-2").await);
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1, "the letter is not lost");
    assert_eq!(letters[0].reason, Reason::PermanentFailure);
    assert_eq!(dest.hits(), 0, "not asked again");
}

#[tokio::test]
async fn a_task_in_the_archive_is_read_there_and_a_pointer_to_another_is_refused() {
    use switchboard_core::envelope::DeliveryRef;
    use switchboard_core::ports::Archive;
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "");
    let (id, other) = (EventId::new(), EventId::new());
    let whole = DeliveryMessage::DeliveryV1(shop_task(&id, None));
    h.archive
        .put("tasks/shop/t.json", serde_json::to_vec(&whole).unwrap())
        .await
        .unwrap();
    let pointer = |event_id: &EventId| {
        let r = DeliveryMessage::DeliveryRefV1(DeliveryRef {
            event_id: event_id.clone(),
            integration: "shop".into(),
            route: "r".into(),
            received_at: None,
            key: "tasks/shop/t.json".into(),
            archived: None,
        });
        serde_json::to_string(&r).unwrap()
    };
    assert!(!h.deliver_text(&pointer(&id), "m-1").await);
    assert_eq!(dest.hits(), 1);
    assert_eq!(dest.received.lock().unwrap()[0], r#"{"order":1}"#);
    // A pointer whose object holds another event's task is not sent: its letter says why.
    assert!(!h.deliver_text(&pointer(&other), "m-2").await);
    assert_eq!(dest.hits(), 1);
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::MalformedMessage);
    // Missing from the archive: handed back, SQS tries again.
    let mut missing = pointer(&id);
    missing = missing.replace("t.json", "gone.json");
    assert!(h.deliver_text(&missing, "m-3").await);
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
        &h.circuit(),
        CircuitState {
            failures: 10,
            open_until_ms: Some(now + 60_000),
            ..Default::default()
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
    assert_eq!(h.table.circuit_of(&h.circuit()).open_until_ms, None);
    h.deliver(&EventId::new(), 1).await;
    assert!(h.table.circuit_of(&h.circuit()).open_until_ms.is_some());

    let gone = Destination::start(410).await;
    let h = Harness::new(&gone.url, "");
    h.deliver(&EventId::new(), 1).await;
    assert!(h.table.circuit_of(&h.circuit()).open_until_ms.is_some());
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
    assert_eq!(h.table.circuit_of(&h.circuit()).failures, 0);
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

/// The review item of an event's route `r` (its request as `shop_task` maps it), as stored.
pub(super) async fn item(h: &Harness, id: &EventId) -> ReviewItem {
    h.table
        .review(&ReviewItem::id_of(&shop_task(id, None)))
        .await
        .unwrap()
        .expect("a review item")
}

/// Writes a change to a stored item, as the CLI does (the version it read, plus one).
pub(super) async fn change(h: &Harness, mut it: ReviewItem, f: impl FnOnce(&mut ReviewItem)) {
    f(&mut it);
    it.version += 1;
    assert!(h.table.update_review(&it).await.unwrap());
}

#[tokio::test]
async fn a_task_held_for_review_waits_on_its_item_and_calls_nothing() {
    let dest = Destination::start(200).await;
    let h = Harness::new(
        &dest.url,
        "    review_when: \"true\"\n    review: { expires: 2h, alert_after: 30m, deciders: [ops] }\n",
    );
    let id = EventId::new();
    let held = shop_task(&id, Some("address rejected: no such street"));
    assert!(
        h.deliver_task(held.clone(), 1).await,
        "handed back: waiting"
    );
    assert_eq!(dest.hits(), 0);
    let it = item(&h, &id).await;
    assert_eq!(it.status, ReviewStatus::Pending);
    assert_eq!(it.why.message, "address rejected: no such street");
    assert_eq!(it.deciders, ["ops"]);
    assert_eq!(it.request.body, serde_json::json!({"order": 1}));
    // It sleeps until it is overdue (30 min), not through the whole expiry.
    let sleep = h.queue.delays()[0].1.as_secs();
    assert!((1799..=1800).contains(&sleep), "until overdue: {sleep}");

    // Overdue: the next look notes it once (the alarm's metric), then sleeps to the expiry.
    change(&h, it, |i| {
        i.alert_at = chrono::Utc::now() - chrono::Duration::seconds(1)
    })
    .await;
    assert!(h.deliver_task(held.clone(), 2).await);
    let it = item(&h, &id).await;
    assert!(it.alerted);
    assert_eq!(it.version, 3, "one item, written twice");
    let sleep = h.queue.delays()[1].1.as_secs();
    assert!((7100..=7200).contains(&sleep), "until the expiry: {sleep}");
    assert_eq!(dest.hits(), 0);
    assert!(h.dlq.letters().is_empty());
}

#[tokio::test]
async fn an_approved_item_is_delivered_once_an_edited_one_with_its_edit_a_rejected_one_never() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "    review_when: \"true\"\n");
    let id = EventId::new();
    let held = shop_task(&id, Some("check it"));
    assert!(h.deliver_task(held.clone(), 1).await);
    let it = item(&h, &id).await;
    change(&h, it.clone(), |i| {
        i.decide(ReviewStatus::Approved, "ops", chrono::Utc::now(), None)
    })
    .await;
    // The CLI queues the decided request; the held task's next wake finds it decided too.
    let decided = item(&h, &id).await.decided_request();
    assert!(!h.deliver_task(decided, 1).await, "delivered");
    assert!(!h.deliver_task(held.clone(), 2).await, "the timer: done");
    assert_eq!(dest.hits(), 1, "delivered once");
    assert_eq!(
        h.table.record(&format!("deliver#{id}#r")).unwrap().status,
        Status::Completed
    );

    // Edited: the edited body goes out (the timer alone, as when the CLI's send was lost).
    let id = EventId::new();
    let held = shop_task(&id, Some("check it"));
    h.deliver_task(held.clone(), 1).await;
    change(&h, item(&h, &id).await, |i| {
        i.edited = Some(serde_json::json!({"order": 2}));
        i.decide(ReviewStatus::Edited, "ops", chrono::Utc::now(), None);
    })
    .await;
    assert!(!h.deliver_task(held, 2).await);
    assert_eq!(
        dest.received.lock().unwrap().last().unwrap(),
        r#"{"order":2}"#
    );

    // Rejected: nothing is sent, and the held task is done with.
    let id = EventId::new();
    let held = shop_task(&id, Some("check it"));
    h.deliver_task(held.clone(), 1).await;
    change(&h, item(&h, &id).await, |i| {
        i.decide(
            ReviewStatus::Rejected,
            "ops",
            chrono::Utc::now(),
            Some("fraud".into()),
        )
    })
    .await;
    assert!(!h.deliver_task(held, 2).await);
    assert_eq!(dest.hits(), 2);
    assert!(h.dlq.letters().is_empty());
}

#[tokio::test]
async fn an_expired_item_follows_its_policy() {
    let dest = Destination::start(200).await;
    for (policy, hits, letter) in [
        ("dead_letter", 0, true),
        ("drop", 0, false),
        ("deliver", 1, false),
    ] {
        let h = Harness::new(
            &dest.url,
            &format!(
                "    review_when: \"true\"\n    review: {{ expires: 1h, on_expiry: {policy} }}\n"
            ),
        );
        let before = dest.hits();
        let id = EventId::new();
        let held = shop_task(&id, Some("check it"));
        h.deliver_task(held.clone(), 1).await;
        change(&h, item(&h, &id).await, |i| {
            i.expires_at = chrono::Utc::now() - chrono::Duration::seconds(1)
        })
        .await;
        assert!(!h.deliver_task(held, 2).await, "{policy}: settled");
        let it = item(&h, &id).await;
        assert_eq!(it.status, ReviewStatus::Expired, "{policy}");
        assert_eq!(it.decisions[0].by, "switchboard");
        assert_eq!(dest.hits() - before, hits, "{policy}");
        let letters = h.dlq.letters();
        assert_eq!(letters.len(), usize::from(letter), "{policy}");
        if letter {
            assert_eq!(letters[0].reason, Reason::ReviewExpired);
            assert!(
                letters[0].message.contains(&it.id),
                "{}",
                letters[0].message
            );
        }
    }
}
