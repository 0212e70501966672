//! `switchboard events` through `switchboard dev`: one event whose five routes end five ways
//! (delivered, skipped by its `when`, waiting between retries with its next attempt's time, in
//! review, dead-lettered) shown as a timeline, by its id and by the provider's own id; and a
//! search that finds an event by a field of its body.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use switchboard_cli::ops::events::timeline::RouteState;
use switchboard_cli::ops::events::{self, EventView, Query};
use switchboard_core::ids::EventId;

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
  - id: ok
    map: '{{"order": n}}'
    deliver: {{ url: {base}/ok }}
  - id: skip
    when: "false"
    map: '{{"order": n}}'
    deliver: {{ url: {base}/skip }}
  - id: slow
    map: '{{"order": n}}'
    deliver: {{ url: {base}/slow, retry: [60s] }}
  - id: held
    map: '{{"order": n}}'
    review_when: "'a person looks first'"
    deliver: {{ url: {base}/held }}
  - id: bad
    map: '{{"order": n}}'
    deliver: {{ url: {base}/bad }}
"#
    )
}

async fn start() -> (TestStack, Receiver) {
    let receiver = Receiver::start().await;
    receiver.on("/slow", vec![(StatusCode::SERVICE_UNAVAILABLE, None)]);
    receiver.on(
        "/bad",
        vec![(
            StatusCode::BAD_REQUEST,
            Some(json!({"error": "no such sku"})),
        )],
    );
    let test = TestStack::with(
        &[("shop", definition(&receiver.base))],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    (test, receiver)
}

/// The routes, and where each comes to rest.
const ROUTES: [&str; 5] = ["ok", "skip", "slow", "held", "bad"];
const STATES: [&str; 5] = ["delivered", "skipped", "waiting", "review", "failed"];

fn state_of<'a>(view: &'a EventView, route: &str) -> Option<&'a RouteState> {
    view.routes
        .iter()
        .find(|r| r.route == route)
        .map(|r| &r.state)
}

/// The event's view once every route has come to rest.
async fn settled(test: &TestStack, event: &EventId) -> EventView {
    let (archive, mut lookups) = events::open(&test.dev.sdk, &test.reading()).await;
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let (started, mut last) = (Instant::now(), None);
    loop {
        let found = events::show(&archive, &mut lookups, event, None, since, true, None)
            .await
            .unwrap();
        last = found.events.clone().or(last);
        if let Some(view) = found.events {
            let settled = ROUTES
                .iter()
                .zip(STATES)
                .all(|(route, state)| state_of(&view, route).is_some_and(|s| s.status() == state));
            let tried = matches!(state_of(&view, "slow"), Some(RouteState::Waiting { attempts, .. }) if !attempts.is_empty());
            if settled && tried {
                return view;
            }
        }
        assert!(
            started.elapsed() < WAIT,
            "the routes did not settle: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Each route where it came to rest, with what it says of it.
fn each_route_as_it_ended(view: &EventView) {
    let sent = view.received_at;
    match state_of(view, "ok").unwrap() {
        RouteState::Delivered {
            at,
            status,
            latency_ms,
            ..
        } => {
            assert_eq!(*status, Some(200));
            assert!(at.is_some_and(|t| t >= sent) && latency_ms.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        state_of(view, "skip"),
        Some(&RouteState::Skipped {
            reason: "when_false".into()
        })
    );
    let Some(RouteState::Waiting {
        attempts,
        next_attempt_at,
        ..
    }) = state_of(view, "slow")
    else {
        unreachable!()
    };
    assert_eq!(attempts[0].status, Some(503));
    let next = next_attempt_at.expect("the next attempt's time");
    let from_now = (next - chrono::Utc::now()).num_seconds();
    assert!(
        (30..=75).contains(&from_now),
        "60 s ± 20% after the attempt: {from_now}"
    );
    let held = state_of(view, "held");
    assert!(matches!(held, Some(RouteState::Review { why, .. }) if why == "a person looks first"));
    let bad = state_of(view, "bad");
    assert!(
        matches!(bad, Some(RouteState::DeadLettered { queue: "deliveries", reason, .. }) if reason == "permanent_failure")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_shows_each_routes_fate_by_its_id_or_the_providers() {
    let (test, _receiver) = start().await;
    let body = json!({"n": 7}).to_string();
    let headers = test.sign("shop", body.as_bytes(), "application/json");
    let (status, answer) = test.post("shop", &headers, body.as_bytes()).await;
    assert_eq!(status, 202, "{answer}");
    let event = EventId::try_from(answer["event_id"].as_str().unwrap().to_string()).unwrap();
    // The sender posts it again: answered as a duplicate, counted.
    let (status, again) = test.post("shop", &headers, body.as_bytes()).await;
    assert_eq!(
        (status, again["duplicate"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    let provider_id = &headers.iter().find(|(n, _)| n == "webhook-id").unwrap().1;
    assert_eq!(
        events::event_id_of("shop", provider_id),
        event,
        "ingest's derivation"
    );

    let view = settled(&test, &event).await;
    assert_eq!(view.body, Some(json!({"n": 7})));
    assert_eq!(
        view.duplicates.as_ref().map(|d| d.count),
        Some(1),
        "posted twice"
    );
    assert!(view.archive_key.starts_with("shop/") && view.archive_key.ends_with(".jsonl.gz"));
    each_route_as_it_ended(&view);

    // Its delivery record names its archive object: one object read, no day scanned.
    let (archive, mut lookups) = events::open(&test.dev.sdk, &test.reading()).await;
    let since = chrono::Utc::now() - chrono::Duration::days(7);
    let again = events::show(
        &archive,
        &mut lookups,
        &event,
        Some("shop"),
        since,
        false,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        again.events.map(|v| v.archive_key),
        Some(view.archive_key.clone())
    );
    assert_eq!(
        (again.cost.objects, again.cost.lists),
        (1, 1),
        "one object, the audit prefix listed"
    );

    // The timeline a person reads says the same.
    let text = switchboard_cli::ops::events::render_timeline(&view);
    for line in [
        "posted again 1 time(s)",
        "route ok: delivered",
        "route skip: skipped when_false",
        "next attempt at",
        "route held: review",
        "in the deliveries DLQ: permanent_failure",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    test.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_the_event_by_what_its_body_says() {
    let (test, _receiver) = start().await;
    let mut ids = Vec::new();
    for n in [5, 6, 7, 8] {
        let (status, answer) = test
            .post_signed("shop", json!({"n": n}).to_string().as_bytes())
            .await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["event_id"].as_str().unwrap().to_string());
    }
    let (archive, mut lookups) = events::open(&test.dev.sdk, &test.reading()).await;
    let query = Query {
        integration: "shop".into(),
        since: chrono::Utc::now() - chrono::Duration::hours(1),
        until: chrono::Utc::now() + chrono::Duration::minutes(1),
        predicate: Some("n = 7".into()),
        limit: 10,
        ..Query::default()
    };
    let started = Instant::now();
    let found = loop {
        let found = events::list(&archive, &mut lookups, &query, |_, _| {})
            .await
            .unwrap();
        if !found.events.is_empty() {
            break found;
        }
        assert!(started.elapsed() < WAIT, "never archived");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let matched: Vec<String> = found
        .events
        .iter()
        .map(|v| v.event_id.to_string())
        .collect();
    assert_eq!(matched, [ids[2].clone()]);
    assert!(
        found.cost.objects >= 1 && found.cost.events >= 1,
        "{:?}",
        found.cost
    );
    // By route and state: every event's `bad` route failed, none was delivered there.
    let failed = Query {
        predicate: None,
        route: Some("bad".into()),
        status: Some("delivered".into()),
        ..query.clone()
    };
    assert!(
        events::list(&archive, &mut lookups, &failed, |_, _| {})
            .await
            .unwrap()
            .events
            .is_empty()
    );
    test.dev.shutdown().await;
}
