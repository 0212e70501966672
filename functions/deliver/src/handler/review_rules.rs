//! What deliver trusts of a review: a task marked as decided is sent only when its item
//! approved (or edited) that very request; an expired item's letter, redriven, opens the
//! review again and never delivers.

use switchboard_core::envelope::DeliveryMessage;
use switchboard_core::ids::EventId;
use switchboard_core::ports::ReviewStore as _;
use switchboard_core::reason::Reason;
use switchboard_core::review::{ReviewItem, ReviewStatus};

use super::rules::{Destination, Harness, change, item, shop_task};

/// Holds `id`'s task for review, then a person approves its item.
async fn held_and_approved(h: &Harness, id: &EventId) {
    assert!(h.deliver_task(shop_task(id, Some("check it")), 1).await);
    change(h, item(h, id).await, |i| {
        i.decide(
            ReviewStatus::Approved,
            "local:ops",
            chrono::Utc::now(),
            None,
        )
    })
    .await;
}

/// A task that says a person decided it is checked against its item: none (forged), one that
/// decided nothing, or one that approved another body: dead-lettered `review_mismatch`, never
/// called. The approved request itself goes out once.
#[tokio::test]
async fn a_reviewed_task_is_sent_only_as_its_item_approved_it() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "    review_when: \"true\"\n");
    // Forged: no such item.
    let mut forged = shop_task(&EventId::new(), None);
    forged.reviewed = Some("rv_00000000000000000000".into());
    assert!(!h.deliver_task(forged, 1).await, "settled");
    // Pending: nobody decided yet.
    let id = EventId::new();
    let held = shop_task(&id, Some("check it"));
    assert!(h.deliver_task(held.clone(), 1).await);
    let mut early = shop_task(&id, None);
    early.reviewed = Some(item(&h, &id).await.id);
    assert!(!h.deliver_task(early, 1).await);
    // Approved, but the task carries another body than the one approved.
    let id = EventId::new();
    held_and_approved(&h, &id).await;
    let approved = item(&h, &id).await.decided_request();
    let mut changed = approved.clone();
    changed.body = serde_json::json!({"order": 1, "ship_to": "elsewhere"});
    assert!(!h.deliver_task(changed, 1).await);
    assert_eq!(dest.hits(), 0, "none of them was sent");
    let reasons: Vec<Reason> = h.dlq.letters().iter().map(|l| l.reason).collect();
    assert_eq!(reasons, [Reason::ReviewMismatch; 3]);
    assert!(h.dlq.letters()[0].message.contains("no review item"));
    // The approved request itself goes out.
    assert!(!h.deliver_task(approved, 1).await);
    assert_eq!(dest.hits(), 1);
}

/// A different request of the same event and route (a mapping changed, a replay after a fix)
/// is a new review, not the old approval.
#[tokio::test]
async fn another_request_of_the_same_event_and_route_is_a_new_review() {
    let dest = Destination::start(200).await;
    let h = Harness::new(&dest.url, "    review_when: \"true\"\n");
    let id = EventId::new();
    held_and_approved(&h, &id).await;
    let mut replayed = shop_task(&id, Some("check it"));
    replayed.body = serde_json::json!({"order": 1, "total": 99});
    assert!(
        h.deliver_task(replayed.clone(), 1).await,
        "waits: a new item"
    );
    let new = h
        .table
        .review(&ReviewItem::id_of(&replayed))
        .await
        .unwrap()
        .expect("its own item");
    assert_eq!(new.status, ReviewStatus::Pending);
    assert_ne!(new.id, item(&h, &id).await.id);
    assert_eq!(dest.hits(), 0);
}

/// An item nobody decided expires to the DLQ with the task as it came, undecided; the
/// letter's redrive opens the review again (pending, a new expiry) and calls nothing.
#[tokio::test]
async fn a_redriven_expired_letter_opens_the_review_again_and_never_delivers() {
    let dest = Destination::start(200).await;
    let h = Harness::new(
        &dest.url,
        "    review_when: \"true\"\n    review: { expires: 1h, on_expiry: dead_letter }\n",
    );
    let id = EventId::new();
    let held = shop_task(&id, Some("check it"));
    assert!(h.deliver_task(held.clone(), 1).await);
    change(&h, item(&h, &id).await, |i| {
        i.expires_at = chrono::Utc::now() - chrono::Duration::seconds(1)
    })
    .await;
    assert!(!h.deliver_task(held, 2).await, "expired: to the DLQ");
    let letter = h.dlq.letters()[0].clone();
    assert_eq!(letter.reason, Reason::ReviewExpired);
    let Ok(DeliveryMessage::DeliveryV1(kept)) = DeliveryMessage::decode(&letter.body) else {
        panic!("{}", letter.body)
    };
    assert_eq!(kept.reviewed, None, "undecided");
    assert!(kept.review.is_some(), "still held for a person");
    // The redrive: the same task, on a fresh message.
    assert!(h.deliver_task(kept, 1).await, "waits for a person again");
    let it = item(&h, &id).await;
    assert_eq!(it.status, ReviewStatus::Pending);
    assert!(it.expires_at > chrono::Utc::now() + chrono::Duration::minutes(59));
    assert_eq!(it.decisions.last().unwrap().action, "reopen");
    assert_eq!(dest.hits(), 0);
    assert_eq!(h.dlq.letters().len(), 1);
}

#[tokio::test]
async fn a_refusal_waits_in_review_with_on_rejected_and_a_decided_request_refused_again_is_dead_lettered()
 {
    let dest = Destination::start(422).await;
    let h = Harness::new(&dest.url, "    on_rejected: review\n");
    dest.answer(r#"{"error": "address_invalid"}"#);
    let id = EventId::new();
    assert!(h.deliver(&id, 1).await, "held, not dead-lettered");
    assert!(h.dlq.letters().is_empty());
    let it = item(&h, &id).await;
    assert_eq!(it.why.reason, "permanent_failure");
    assert!(
        it.why
            .answer
            .as_deref()
            .unwrap()
            .contains("address_invalid")
    );
    assert_eq!(
        h.table.record(&format!("deliver#{id}#r")),
        None,
        "claim released"
    );
    // The held task's next look waits on the item; the destination is not asked again.
    assert!(h.deliver(&id, 2).await);
    assert_eq!(dest.hits(), 1);

    // A person edits it; the destination still refuses: to the DLQ this time, not review.
    change(&h, it, |i| {
        i.edited = Some(serde_json::json!({"order": 1, "address": "fixed"}));
        i.decide(ReviewStatus::Edited, "ops", chrono::Utc::now(), None);
    })
    .await;
    assert!(!h.deliver(&id, 3).await);
    assert_eq!(dest.hits(), 2);
    let letters = h.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::PermanentFailure);
}
