//! The share's rules on in-memory ports and loopback destinations: a destination that is slow
//! or new to the container holds at most its share of invocations, one slot per batch; one
//! known fast, or with its own `limits.max_concurrency`, holds none; a long call marks it slow.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use chrono::Utc;
use lambda_runtime::{Context, LambdaEvent};
use switchboard_core::envelope::DeliveryMessage;
use switchboard_core::ids::EventId;
use switchboard_core::ports::{CircuitStore, RateLimiter};
use switchboard_core::share;

use super::rules::{Destination, Harness, shop_task};

/// A destination that answers 200 after `delay`, counting its calls.
struct Slow {
    url: String,
    calls: Arc<AtomicUsize>,
}

impl Slow {
    async fn start(delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = axum::Router::new().fallback(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                "ok"
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, calls }
    }
}

impl Harness {
    /// The handler with a share of `share` invocations.
    fn shared(self, share: u32) -> Self {
        Self {
            handler: self.handler.with_share(share),
            ..self
        }
    }

    /// The route's share pool.
    fn pool(&self) -> String {
        let circuit = self.circuit();
        let destination = circuit.split_once('@').unwrap().1;
        share::pool(destination)
    }

    /// Takes every slot of a share of `share` for a minute, as other invocations would.
    async fn fill_share(&self, share: u32) {
        let now = Utc::now().timestamp_millis();
        let pool = self.pool();
        for _ in 0..share {
            let slot = self.table.take_slot(&pool, share, 0, now, now + 60_000);
            assert!(slot.await.unwrap().is_some(), "a slot of {pool} is taken");
        }
    }

    /// One batch of a task per id, on its first receive; the ids SQS is to hand back.
    async fn batch(&self, ids: &[EventId]) -> Vec<String> {
        let records = ids
            .iter()
            .map(|id| {
                let mut m = SqsMessage::default();
                m.message_id = Some(id.to_string());
                m.receipt_handle = Some(format!("receipt-{id}"));
                let task = DeliveryMessage::DeliveryV1(shop_task(id, None));
                m.body = Some(serde_json::to_string(&task).unwrap());
                m.attributes
                    .insert("ApproximateReceiveCount".into(), "1".into());
                m
            })
            .collect();
        let mut e = SqsEvent::default();
        e.records = records;
        let out = self
            .handler
            .handle(LambdaEvent::new(e, Context::default()))
            .await;
        out.batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }
}

fn ids(n: usize) -> Vec<EventId> {
    (0..n).map(|_| EventId::new()).collect()
}

#[tokio::test]
async fn a_new_destination_waits_while_its_share_is_taken_and_once_known_fast_needs_none() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "").shared(1);
    h.fill_share(1).await;
    let id = EventId::new();
    assert!(h.deliver(&id, 1).await, "held: handed back");
    assert_eq!(dest.hits(), 0, "not called over its share");
    assert!(h.dlq.letters().is_empty(), "never failed for it");
    let wait = h.queue.delays()[0].1;
    assert!(
        (1.0..1.5).contains(&wait.as_secs_f64()),
        "looked at again soon: {wait:?}"
    );
    assert_eq!(h.table.record(&format!("deliver#{id}#r")), None, "no claim");

    // The slot frees: it goes, and the batch gives its slot back.
    h.table.free_slot(&h.pool(), 0).await.unwrap();
    assert!(!h.deliver(&id, 2).await);
    assert_eq!(dest.hits(), 1);
    h.fill_share(1).await;

    // Known fast here: no slot needed, though the share is taken.
    assert!(!h.deliver(&EventId::new(), 1).await);
    assert_eq!(dest.hits(), 2);

    // Marked slow by another container: held to its share again, looked at after a slow call.
    let mut state = h.table.circuit_of(&h.circuit());
    state.slow_until_ms = Some(Utc::now().timestamp_millis() + 60_000);
    h.table.set_circuit(&h.circuit(), state);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the circuit's read lapses
    assert!(h.deliver(&EventId::new(), 1).await);
    assert_eq!(dest.hits(), 2);
    let (_, wait) = h.queue.delays().pop().unwrap();
    assert!(wait >= share::SLOW_CALL, "{wait:?}");
}

#[tokio::test]
async fn a_route_with_its_own_concurrency_limit_is_not_held_to_the_default_share() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "      limits: { max_concurrency: 2 }\n").shared(1);
    h.fill_share(1).await;
    let mut state = h.table.circuit_of(&h.circuit());
    state.slow_until_ms = Some(Utc::now().timestamp_millis() + 60_000);
    h.table.set_circuit(&h.circuit(), state);
    assert!(!h.deliver(&EventId::new(), 1).await, "delivered");
    assert_eq!(dest.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_holds_one_slot_for_its_tasks_and_another_batch_waits_without_calling() {
    let slow = Slow::start(Duration::from_millis(2300)).await;
    let h = Arc::new(Harness::new(&slow.url, "      timeout: 10s\n").shared(1));
    let (first, second) = (ids(3), ids(2));
    let one = {
        let h = h.clone();
        let first = first.clone();
        tokio::spawn(async move { h.batch(&first).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let held = h.batch(&second).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the second batch did not wait for the first's calls: {:?}",
        started.elapsed()
    );
    let mut expected: Vec<String> = second.iter().map(ToString::to_string).collect();
    let mut held = held;
    held.sort();
    expected.sort();
    assert_eq!(held, expected, "the second batch's tasks wait");
    assert!(
        one.await.unwrap().is_empty(),
        "the first batch's three delivered"
    );
    assert_eq!(slow.calls.load(Ordering::SeqCst), 3);
    assert!(h.dlq.letters().is_empty());
    // Its calls ran past the threshold: the route is marked slow for every container.
    let state = h.table.circuit(&h.circuit()).await.unwrap();
    assert!(state.slow(Utc::now().timestamp_millis()), "{state:?}");
    // The slot went back with the batch.
    h.fill_share(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_still_running_past_the_threshold_marks_its_route_slow_before_it_ends() {
    let slow = Slow::start(Duration::from_millis(3500)).await;
    let h = Arc::new(Harness::new(&slow.url, "      timeout: 10s\n"));
    let call = {
        let h = h.clone();
        tokio::spawn(async move { h.deliver(&EventId::new(), 1).await })
    };
    tokio::time::sleep(share::SLOW_CALL + Duration::from_millis(600)).await;
    assert!(!call.is_finished(), "the call is still running");
    let state = h.table.circuit(&h.circuit()).await.unwrap();
    assert!(state.slow(Utc::now().timestamp_millis()), "{state:?}");
    assert!(!call.await.unwrap(), "delivered");
}

#[tokio::test]
async fn a_timeout_marks_the_destination_slow_however_short_the_timeout() {
    let slow = Slow::start(Duration::from_secs(3)).await;
    let h = Harness::new(&slow.url, "      timeout: 1s\n");
    assert!(h.deliver(&EventId::new(), 1).await, "retried");
    let state = h.table.circuit(&h.circuit()).await.unwrap();
    assert!(state.slow(Utc::now().timestamp_millis()), "{state:?}");
}
