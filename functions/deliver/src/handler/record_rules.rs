//! What deliver leaves for `switchboard events show`, at no write of its own on the happy
//! path: the completion record says when, the status, the latency and where the event is
//! archived; a retry notes when the next attempt is due; a dead letter its reason.

use switchboard_core::idempotency::Delivered;
use switchboard_core::ids::EventId;

use super::rules::{Destination, Harness};

#[tokio::test]
async fn a_delivery_records_when_its_status_latency_and_archive() {
    let dest = Destination::start(201).await;
    let h = Harness::new(&dest.url, "");
    let id = EventId::new();
    let before = chrono::Utc::now();
    assert!(!h.deliver(&id, 2).await);
    let record = h.table.record(&format!("deliver#{id}#r")).unwrap();
    let done: Delivered = serde_json::from_str(record.data.as_deref().unwrap()).unwrap();
    assert_eq!((done.status, done.receives), (Some(201), 2));
    assert!(done.at >= before && done.latency_ms.is_some(), "{done:?}");
}

#[tokio::test]
async fn a_retry_notes_its_next_attempt_and_a_dead_letter_its_reason() {
    let dest = Destination::start(503).await;
    let h = Harness::new(&dest.url, "      retry: [100s]\n");
    let id = EventId::new();
    let task = format!("{id}#r");
    let before = chrono::Utc::now().timestamp_millis();
    assert!(h.deliver(&id, 1).await, "handed back for a retry");
    let (next, reason) = h.table.notes(&task);
    let next = next.expect("the next attempt's time");
    let wait = h.queue.delays()[0].1.as_millis() as i64;
    assert!((before + wait..=chrono::Utc::now().timestamp_millis() + wait).contains(&next));
    assert_eq!(reason, None);
    h.deliver(&id, 2).await;
    assert_eq!(
        h.table.notes(&task),
        (None, Some("retries_exhausted".into()))
    );
}
