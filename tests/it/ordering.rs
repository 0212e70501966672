//! Updates in order through `switchboard dev`: 200 changes of 20 records, posted shuffled
//! (out of order, in bursts of one record, ten of them twice), reach an ordered route's destination so that
//! every record ends at its newest version and no older version ever arrives after a newer
//! one, the older ones counted `stale`; the same changes to a route without `ordering` show
//! the problem.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_cli::ops::events;
use switchboard_cli::ops::events::timeline::RouteState;

use crate::utils::receiver::{Received, Receiver};
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

const RECORDS: u64 = 20;
const VERSIONS: u64 = 10;

fn definition(base: &str) -> String {
    format!(
        r#"
source:
  verify: standard-webhooks
  secret: SECRET/signing
routes:
  - id: ordered
    map: '{{"id": id, "v": v}}'
    ordering: {{ key: id, version: v }}
    deliver: {{ url: {base}/ordered }}
  - id: plain
    map: '{{"id": id, "v": v}}'
    deliver: {{ url: {base}/plain }}
"#
    )
}

/// Every change, shuffled (a fixed seed), then each record's run of changes made a burst here
/// and there by pulling a few of its changes together.
fn shuffled() -> Vec<(u64, u64)> {
    let mut changes: Vec<(u64, u64)> = (0..RECORDS)
        .flat_map(|r| (1..=VERSIONS).map(move |v| (r, v)))
        .collect();
    let mut seed: u64 = 0x5eed;
    for i in (1..changes.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        changes.swap(i, (seed >> 33) as usize % (i + 1));
    }
    changes.sort_by_key(|(r, _)| u64::from(*r % 7 != 0));
    changes
}

/// The versions each record received at `path`, in arrival order.
fn arrivals(received: &[Received], path: &str) -> HashMap<u64, Vec<u64>> {
    let mut by_record: HashMap<u64, Vec<u64>> = HashMap::new();
    for r in received.iter().filter(|r| r.path == path) {
        let (id, v) = (
            r.body["id"].as_u64().unwrap(),
            r.body["v"].as_u64().unwrap(),
        );
        by_record.entry(id).or_default().push(v);
    }
    by_record
}

/// How often a record received an older version after a newer one.
fn inversions(by_record: &HashMap<u64, Vec<u64>>) -> usize {
    by_record
        .values()
        .map(|vs| vs.windows(2).filter(|w| w[1] < w[0]).count())
        .sum()
}

/// `events list` finds each stale change of the ordered route, skipped with why.
async fn each_stale_change_shows_as_skipped(test: &TestStack, stale: usize) {
    let (archive, mut lookups) = events::open(&test.dev.sdk, &test.reading()).await;
    let query = events::Query {
        integration: "records".into(),
        since: chrono::Utc::now() - chrono::Duration::hours(1),
        until: chrono::Utc::now() + chrono::Duration::minutes(1),
        route: Some("ordered".into()),
        status: Some("skipped".into()),
        limit: 1000,
        ..events::Query::default()
    };
    let skipped = events::list(&archive, &mut lookups, &query, |_, _| {})
        .await
        .unwrap()
        .events;
    assert_eq!(skipped.len(), stale, "each stale change shows as skipped");
    let why = skipped[0]
        .routes
        .iter()
        .find(|r| r.route == "ordered")
        .map(|r| r.state.clone());
    assert!(
        matches!(&why, Some(RouteState::Skipped { reason }) if reason.starts_with("stale: version")),
        "{why:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_updates_end_at_the_newest_and_never_go_back_on_an_ordered_route() {
    let receiver = Receiver::start().await;
    let test = TestStack::with(
        &[("records", definition(&receiver.base))],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    let changes = shuffled();
    // Some changes twice (the sender's own duplicates, a new webhook id each): the same
    // version again is not older, so it may go again, never after a newer one.
    let twice: Vec<(u64, u64)> = changes.iter().step_by(20).copied().collect();
    for (record, version) in changes.iter().chain(&twice) {
        let body = json!({"id": record, "v": version}).to_string();
        let (status, answer) = test.post_signed("records", body.as_bytes()).await;
        assert_eq!(status, 202, "{answer}");
    }
    let posted = changes.len() + twice.len();
    // Until the deliveries queue is empty and every record reached its newest version.
    let started = Instant::now();
    loop {
        let ordered = arrivals(&receiver.received(), "/ordered");
        let done = ordered.len() == RECORDS as usize
            && ordered.values().all(|vs| vs.last() == Some(&VERSIONS));
        if done && test.depth(&test.dev.resources.deliveries_url).await == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "not settled");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let received = receiver.received();
    let (ordered, plain) = (
        arrivals(&received, "/ordered"),
        arrivals(&received, "/plain"),
    );
    assert_eq!(
        inversions(&ordered),
        0,
        "an older version after a newer: {ordered:?}"
    );
    let stale = test
        .dev
        .metrics
        .samples("Deliveries", |l| {
            l["Route"] == "ordered" && l["Reason"] == "stale"
        })
        .len();
    let sent: usize = ordered.values().map(Vec::len).sum();
    println!(
        "ordered: {sent} sent, {stale} stale, {} inversions; plain: {} inversions",
        inversions(&ordered),
        inversions(&plain)
    );
    assert!(stale > 0, "the shuffle made some changes stale");
    assert_eq!(sent + stale, posted, "each change sent or stale");
    each_stale_change_shows_as_skipped(&test, stale).await;
    // Without `ordering`, every change arrives, and older ones after newer.
    assert_eq!(plain.values().map(Vec::len).sum::<usize>(), posted);
    assert!(
        inversions(&plain) > 0,
        "the unordered route shows the problem: {plain:?}"
    );
    test.dev.shutdown().await;
}

/// The first update of a record fails three times, then goes: the later ones wait behind it
/// and arrive after it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_update_holds_the_later_ones_until_it_is_delivered() {
    use axum::http::StatusCode;
    let receiver = Receiver::start().await;
    let unavailable = (StatusCode::SERVICE_UNAVAILABLE, None);
    let answers = vec![
        unavailable.clone(),
        unavailable.clone(),
        unavailable,
        (StatusCode::OK, None),
    ];
    receiver.on_body("/ordered", "\"v\":1}", answers);
    let definition =
        definition(&receiver.base).replace("/ordered }", "/ordered, retry: [1s, 1s, 1s, 1s] }");
    let test = TestStack::with(
        &[("records", definition)],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    let post = |v: u64| {
        let body = json!({"id": 7, "v": v}).to_string();
        let test = &test;
        async move { assert_eq!(test.post_signed("records", body.as_bytes()).await.0, 202) }
    };
    post(1).await;
    receiver.wait_for(2, Duration::from_secs(30)).await; // its first try (and the plain route's)
    post(2).await;
    post(3).await;
    let started = Instant::now();
    let delivered = loop {
        let got: Vec<(u64, u16)> = receiver
            .received()
            .iter()
            .filter(|r| r.path == "/ordered")
            .map(|r| (r.body["v"].as_u64().unwrap(), r.status))
            .collect();
        if got.iter().filter(|(_, s)| *s == 200).count() == 3 {
            break got;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        delivered,
        [(1, 503), (1, 503), (1, 503), (1, 200), (2, 200), (3, 200)]
    );
    test.dev.shutdown().await;
}
