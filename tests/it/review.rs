//! The human review queue through `switchboard dev`: an address exception waits in review
//! (its route's `review_when`), an edit that breaks the route's contract and a decider who is
//! not one change nothing, the edited request is delivered once; a refusal kept by
//! `on_rejected: review` is rejected by the AWS caller identity and never sent again; an item
//! nobody decides follows its expiry policy into the DLQ, and a redrive of it delivers it.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use switchboard_cli::ops::review::{self, Decision};
use switchboard_cli::ops::{QueueKind, Stack, dlq};
use switchboard_core::review::{ReviewItem, ReviewStatus};

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

const WAIT: Duration = Duration::from_secs(60);

fn definition(base: &str) -> String {
    format!(
        r#"
source:
  verify: standard-webhooks
  secret: SECRET/signing
routes:
  - id: ship
    map: '{{"order": n, "address": address}}'
    contract:
      type: object
      required: [order, address]
      properties:
        address: {{ type: string, minLength: 5 }}
    review_when: "exception = 'address' ? '3PL: address rejected (' & address & ')' : false"
    review: {{ expires: 1h, deciders: [ops] }}
    deliver:
      url: {base}/ship
  - id: notify
    map: '{{"order": n}}'
    on_rejected: review
    deliver:
      url: {base}/notify
  - id: expiring
    map: '{{"order": n}}'
    review_when: "true"
    review: {{ expires: 2s, on_expiry: dead_letter }}
    deliver:
      url: {base}/expiring
"#
    )
}

async fn pending(stack: &Stack) -> Vec<ReviewItem> {
    review::list(stack, &[ReviewStatus::Pending]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_waits_in_review_is_edited_and_delivered_once_and_an_undecided_one_expires() {
    let receiver = Receiver::start().await;
    receiver.on(
        "/notify",
        vec![(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(json!({"error": "address_invalid"})),
        )],
    );
    let test = TestStack::with(
        &[("orders", definition(&receiver.base))],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    let body = json!({"n": 7, "address": "12 Nowhere Lane", "exception": "address"}).to_string();
    let (status, answer) = test.post_signed("orders", body.as_bytes()).await;
    assert_eq!(status, 202, "{answer}");
    let stack = Stack::new(&test.dev.sdk, &test.prefix);

    // `ship` and `notify` wait for a person; `expiring` waited 2 s and went to the DLQ.
    let started = Instant::now();
    while pending(&stack).await.len() < 2
        || test.depth(&test.dev.resources.deliveries_dlq_url).await < 1
    {
        assert!(started.elapsed() < WAIT, "{:?}", pending(&stack).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let items = pending(&stack).await;
    let by_route = |r: &str| items.iter().find(|i| i.request.route == r).unwrap().clone();
    let (ship, notify) = (by_route("ship"), by_route("notify"));
    assert_eq!(ship.why.message, "3PL: address rejected (12 Nowhere Lane)");
    assert_eq!(
        ship.request.body,
        json!({"order": 7, "address": "12 Nowhere Lane"})
    );
    assert_eq!(notify.why.reason, "permanent_failure");
    assert!(
        notify
            .why
            .answer
            .as_deref()
            .unwrap()
            .contains("address_invalid")
    );
    let asked = |path: &str| {
        receiver
            .received()
            .iter()
            .filter(|r| r.path.contains(path))
            .count()
    };
    assert_eq!(
        (asked("/ship"), asked("/notify"), asked("/expiring")),
        (0, 1, 0)
    );

    let letters = dlq::list(&stack, QueueKind::Deliveries, &dlq::Filter::default())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, "review_expired");
    assert_eq!(letters[0].route.as_deref(), Some("expiring"));
    let expired = review::list(&stack, &[ReviewStatus::Expired])
        .await
        .unwrap();
    assert_eq!(expired[0].decisions[0].by, "switchboard");

    // Refused, and nothing changes: someone who is not a decider; an edit breaking the contract.
    let sdk = &test.dev.sdk;
    let e = review::decide(sdk, &stack, &ship.id, Some("intern"), Decision::Approve)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("may not decide"), "{e}");
    let edit = |address: &str| Decision::Edit {
        body: json!({"order": 7, "address": address}),
        from: "fixed.json".into(),
        integrations: test.dir.clone(),
    };
    let e = review::decide(sdk, &stack, &ship.id, Some("ops"), edit("x"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("contract"), "{e}");
    assert_eq!(
        review::show(&stack, &ship.id).await.unwrap().status,
        ReviewStatus::Pending
    );

    // The edit that holds is delivered, once, with the edited body.
    let decided = review::decide(sdk, &stack, &ship.id, Some("ops"), edit("1 Main Street"))
        .await
        .unwrap();
    assert!(matches!(decided.queued, Some(Ok(()))));
    let got = receiver.wait_for(2, WAIT).await;
    let shipped: Vec<_> = got.iter().filter(|r| r.path.contains("/ship")).collect();
    assert_eq!(shipped.len(), 1);
    assert_eq!(
        shipped[0].body,
        json!({"order": 7, "address": "1 Main Street"})
    );
    let shown = review::show(&stack, &ship.id).await.unwrap();
    assert_eq!(shown.status, ReviewStatus::Edited);
    assert_eq!(shown.decisions.len(), 1);
    // Against the emulator `--by` is the identity, recorded as a local name.
    assert_eq!(shown.decisions[0].by, "local:ops");
    let e = review::decide(sdk, &stack, &ship.id, Some("ops"), Decision::Approve)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("edited already"), "{e}");

    // Rejected by the caller identity (the emulator's): recorded, and nothing is sent.
    let rejected = review::decide(
        sdk,
        &stack,
        &notify.id,
        None,
        Decision::Reject {
            reason: "customer cancelled".into(),
        },
    )
    .await
    .unwrap();
    // moto's caller identity is `arn:aws:sts::123456789012:user/moto`, an ARN AWS never
    // answers: under the emulator it is kept as a local name.
    assert_eq!(
        rejected.by, "local:arn:aws:sts::123456789012:user/moto",
        "{}",
        rejected.by
    );
    assert!(rejected.queued.is_none());
    assert!(pending(&stack).await.is_empty());

    // The expired letter holds the task as it came, undecided: a redrive by its reason opens
    // the review again for a person (here it expires again, two seconds on), and never
    // delivers what nobody approved.
    let filter = dlq::Filter {
        reason: Some("review_expired".parse().unwrap()),
        ..dlq::Filter::default()
    };
    let run = dlq::Run {
        yes: true,
        ..dlq::Run::default()
    };
    dlq::act(
        &stack,
        QueueKind::Deliveries,
        &filter,
        dlq::Action::Redrive,
        run,
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        let all = review::list(&stack, &ReviewStatus::ALL).await.unwrap();
        let reopened = all
            .iter()
            .find(|i| i.request.route == "expiring")
            .is_some_and(|i| i.decisions.iter().any(|d| d.action == "reopen"));
        if reopened {
            break;
        }
        assert!(started.elapsed() < WAIT, "the review was not opened again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (asked("/ship"), asked("/notify"), asked("/expiring")),
        (1, 1, 0)
    );
    test.dev.shutdown().await;
}
