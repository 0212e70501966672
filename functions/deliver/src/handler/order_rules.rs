//! Updates in order on in-memory ports: an older change after a newer one is stale and not
//! sent (or sent, with `on_stale: deliver`); a change waits while an earlier one of its record
//! holds the turn between its retries, and goes once that one is delivered.

use std::sync::atomic::Ordering;

use serde_json::json;
use switchboard_core::envelope::DeliveryV1;
use switchboard_core::ids::EventId;
use switchboard_core::ordering::OrderStamp;

use super::rules::{Destination, Harness, shop_task};

const ORDERED: &str = "    ordering: { key: id, version: v }\n";

/// A change of record `key` at `version`.
fn change(key: &str, version: i64) -> DeliveryV1 {
    DeliveryV1 {
        order: Some(Box::new(OrderStamp {
            key: key.into(),
            version: json!(version),
        })),
        body: json!({"id": key, "v": version}),
        ..shop_task(&EventId::new(), None)
    }
}

#[tokio::test]
async fn an_older_change_after_a_newer_is_stale_and_not_sent() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, ORDERED);
    assert!(!h.deliver_task(change("a", 2), 1).await);
    let older = change("a", 1);
    assert!(
        !h.deliver_task(older.clone(), 1).await,
        "settled: not handed back"
    );
    assert_eq!(dest.hits(), 1, "the older change is not sent");
    // Done, with why: never sent, and `events show` says so.
    let record = h
        .table
        .record(&format!("deliver#{}#r", older.event_id))
        .unwrap();
    let data = record.data.unwrap_or_default();
    assert!(
        data.contains("version 1 of record a is older than 2"),
        "{data}"
    );
    // Another record is its own; a newer change of the first goes.
    assert!(!h.deliver_task(change("b", 1), 1).await);
    assert!(!h.deliver_task(change("a", 3), 1).await);
    assert_eq!(dest.hits(), 3);
    assert!(h.dlq.letters().is_empty());
}

#[tokio::test]
async fn with_on_stale_deliver_an_older_change_is_sent_anyway() {
    let dest = Destination::start(200).await;
    let h = Harness::new(
        &dest.url,
        "    ordering: { key: id, version: v, on_stale: deliver }\n",
    );
    assert!(!h.deliver_task(change("a", 2), 1).await);
    assert!(!h.deliver_task(change("a", 1), 1).await);
    assert_eq!(dest.hits(), 2);
}

#[tokio::test]
async fn a_change_waits_while_an_earlier_one_retries_then_goes_after_it() {
    let dest = Destination::start(503).await;
    let h = Harness::new(&dest.url, &format!("      retry: [100s, 100s]\n{ORDERED}"));
    let (first, second, third) = (change("a", 1), change("a", 2), change("a", 3));
    assert!(
        h.deliver_task(first.clone(), 1).await,
        "the first waits for its retry"
    );
    assert!(
        h.deliver_task(second.clone(), 1).await,
        "the second waits behind it"
    );
    assert!(h.deliver_task(third.clone(), 1).await, "and the third");
    assert_eq!(dest.hits(), 1, "neither was sent");
    let delays = h.queue.delays();
    let behind = delays[1].1.as_secs();
    assert!(
        behind >= 80,
        "it waits about as long as the first's retry: {behind} s"
    );
    dest.status.store(200, Ordering::SeqCst);
    assert!(
        !h.deliver_task(first, 2).await,
        "the first delivered on its retry"
    );
    // The third looks first: the second, older, waits, so the third yields to it.
    assert!(h.deliver_task(third.clone(), 2).await, "the third yields");
    assert_eq!(dest.hits(), 2);
    assert!(!h.deliver_task(second, 2).await, "then the second goes");
    assert!(!h.deliver_task(third, 3).await, "then the third");
    assert_eq!(dest.hits(), 4);
    let sent = dest.received.lock().unwrap().clone();
    let versions: Vec<i64> = sent
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["v"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(versions, [1, 1, 2, 3], "in order");
}

#[tokio::test]
async fn with_on_stale_review_an_older_change_waits_for_a_person() {
    use switchboard_core::ports::ReviewStore as _;
    use switchboard_core::review::{ReviewItem, ReviewStatus};
    let dest = Destination::start(200).await;
    let h = Harness::new(
        &dest.url,
        "    ordering: { key: id, version: v, on_stale: review }\n",
    );
    assert!(!h.deliver_task(change("a", 2), 1).await);
    let older = change("a", 1);
    assert!(h.deliver_task(older.clone(), 1).await, "held for review");
    assert_eq!(dest.hits(), 1);
    let item = h
        .table
        .review(&ReviewItem::id_of(&older))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (item.status, item.why.reason.as_str()),
        (ReviewStatus::Pending, "stale")
    );
    assert!(
        item.why.message.contains("older than 2"),
        "{}",
        item.why.message
    );

    // A person approves it: the held task sends it on its next look, and the record's last
    // version stays the newer one (a stale change sent does not move it back).
    let mut approved = item.clone();
    approved.decide(
        ReviewStatus::Approved,
        "local:ops",
        chrono::Utc::now(),
        None,
    );
    approved.version += 1;
    assert!(h.table.update_review(&approved).await.unwrap());
    assert!(!h.deliver_task(older, 2).await, "delivered");
    assert_eq!(dest.hits(), 2);
    assert!(
        h.deliver_task(change("a", 1), 1).await,
        "another older one waits for a person too: 2 is still the last"
    );
    assert_eq!(dest.hits(), 2);
}
