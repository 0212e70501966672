//! The operations commands against `switchboard dev`'s stack: failures of three kinds, read by
//! `status` and `dlq list` without consuming anything, a dry run that moves nothing, a redrive
//! by reason once the destination recovers, and a purge.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use switchboard_cli::ops::dlq::{self, Action, Filter, Run};
use switchboard_cli::ops::{QueueKind, Stack, status};

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

const WAIT: Duration = Duration::from_secs(60);

fn reason(r: &str) -> Filter {
    Filter {
        reason: Some(r.parse().unwrap()),
        ..Filter::default()
    }
}

/// A redrive or purge of one reason's deliveries, confirmed.
async fn settle(stack: &Stack, r: &str, action: Action) -> dlq::Moved {
    let run = Run {
        yes: true,
        ..Run::default()
    };
    dlq::act(stack, QueueKind::Deliveries, &reason(r), action, run)
        .await
        .unwrap()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_failures_to_a_redrive_by_reason_without_losing_or_resending_anything() {
    let receiver = Receiver::start().await;
    receiver.on(
        "/bad",
        vec![(
            StatusCode::BAD_REQUEST,
            Some(json!({"error": "no such field"})),
        )],
    );
    // Down for the two events' two attempts each, and for the first call after the redrive
    // (the redrive resets the attempt history: that task gets its schedule again, retries and
    // is delivered; with the history kept it would be dead-lettered at once), then back.
    let down = StatusCode::SERVICE_UNAVAILABLE;
    receiver.on(
        "/down",
        vec![
            (down, None),
            (down, None),
            (down, None),
            (down, None),
            (down, None),
            (StatusCode::OK, None),
        ],
    );
    let route = |id: &str, extra: &str| {
        format!(
            "  - id: {id}\n    map: '{{\"n\": n}}'\n{extra}    deliver:\n      url: {}/{id}\n      retry: [1s]\n",
            receiver.base
        )
    };
    let definition = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n{}{}{}",
        route("bad", ""),
        route("down", ""),
        route(
            "strict",
            "    contract: { type: object, required: [sku] }\n"
        ),
    );
    let test = TestStack::with(
        &[("orders", definition)],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    for n in [1, 2] {
        let (status, body) = test
            .post_signed("orders", json!({"n": n}).to_string().as_bytes())
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let res = &test.dev.resources;
    wait_until("four dead deliveries and two dead events", || async {
        test.depth(&res.deliveries_dlq_url).await == 4 && test.depth(&res.events_dlq_url).await == 2
    })
    .await;

    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let s = status::status(&stack).await.unwrap();
    let deliveries = &s.dead_letters["deliveries"];
    assert_eq!(deliveries.total, 4);
    assert_eq!(deliveries.by_reason["permanent_failure"], 2, "{s:?}");
    assert_eq!(deliveries.by_reason["retries_exhausted"], 2, "{s:?}");
    assert_eq!(
        s.dead_letters["events"].by_reason["contract_violation"], 2,
        "{s:?}"
    );
    assert!(s.queues["deliveries-dlq"].oldest_age_secs.is_some());
    // `dlq show` names where the event is archived, for a dead event and a dead delivery:
    // an object holding the event's line, which says what transform decided.
    for kind in [QueueKind::Events, QueueKind::Deliveries] {
        let letters = dlq::list(&stack, kind, &Filter::default()).await.unwrap();
        let key = dlq::archive_key(&letters[0]);
        assert!(key.ends_with(".jsonl.gz"), "{key}");
        let lines = test.archive_object(&key).await;
        let line = lines
            .iter()
            .find(|l| l.event_id().as_str() == letters[0].event_id)
            .unwrap_or_else(|| panic!("{key} has no line of {}", letters[0].event_id));
        let routes = &line.decision().expect("transform's line").routes;
        let expected = match kind {
            QueueKind::Events => switchboard_core::archive::RouteOutcome::Failed,
            _ => switchboard_core::archive::RouteOutcome::Queued,
        };
        assert!(routes.iter().any(|r| r.outcome == expected), "{routes:?}");
        assert!(
            dlq::render_show(&letters[..1]).contains(&key),
            "dlq show prints it"
        );
    }
    // The source queues' age is CloudWatch's metric; moto publishes no SQS metrics (AWS does
    // every minute), so here it is unknown rather than made up.
    assert_eq!(s.queues["events"].oldest_age_secs, None);
    let rendered = status::render(&s);
    assert!(
        rendered.contains("retries_exhausted") && rendered.contains("deliveries-dlq"),
        "{rendered}"
    );

    // Reading consumes nothing.
    let exhausted = dlq::list(&stack, QueueKind::Deliveries, &reason("retries_exhausted"))
        .await
        .unwrap();
    assert_eq!(exhausted.len(), 2);
    assert!(
        exhausted
            .iter()
            .all(|l| l.route.as_deref() == Some("down") && l.last_status == Some(503))
    );
    assert_eq!(
        dlq::list(&stack, QueueKind::Deliveries, &Filter::default())
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(test.depth(&res.deliveries_dlq_url).await, 4);

    // A dry run moves nothing.
    let dry = dlq::act(
        &stack,
        QueueKind::Deliveries,
        &reason("retries_exhausted"),
        Action::Redrive,
        Run {
            dry_run: true,
            ..Run::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((dry.matched, dry.redriven), (2, None));
    assert_eq!(dry.sample.len(), 2);
    assert_eq!(test.depth(&res.deliveries_dlq_url).await, 4);

    // Without --yes and without a terminal: refused, nothing changed.
    let refused = dlq::act(
        &stack,
        QueueKind::Deliveries,
        &reason("retries_exhausted"),
        Action::Redrive,
        Run::default(),
    )
    .await;
    assert!(refused.unwrap_err().to_string().contains("--yes"));
    assert_eq!(test.depth(&res.deliveries_dlq_url).await, 4);

    // The destination is back: redrive just the exhausted ones.
    let bad_calls = || {
        receiver
            .received()
            .iter()
            .filter(|r| r.path == "/bad")
            .count()
    };
    let before_bad = bad_calls();
    let moved = settle(&stack, "retries_exhausted", Action::Redrive).await;
    assert_eq!((moved.matched, moved.redriven), (2, Some(2)));
    wait_until("both redriven deliveries", || async {
        receiver
            .received()
            .iter()
            .filter(|r| r.path == "/down" && r.status == 200)
            .count()
            == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| r.path == "/down" && r.status == 200)
        .map(|r| r.body["n"].clone())
        .collect();
    assert_eq!(delivered.len(), 2, "each delivered once: {delivered:?}");
    assert_eq!(
        bad_calls(),
        before_bad,
        "the other dead letters were not sent again"
    );
    let left = dlq::list(&stack, QueueKind::Deliveries, &Filter::default())
        .await
        .unwrap();
    assert_eq!(left.len(), 2);
    assert!(
        left.iter().all(|l| l.reason == "permanent_failure"),
        "{left:?}"
    );

    // A purge empties what it matched, and only that.
    let purged = settle(&stack, "permanent_failure", Action::Purge).await;
    assert_eq!((purged.matched, purged.purged), (2, Some(2)));
    assert_eq!(test.depth(&res.deliveries_dlq_url).await, 0);
    assert_eq!(
        test.depth(&res.events_dlq_url).await,
        2,
        "the events DLQ is untouched"
    );

    // A filter that matches nothing changes nothing; an unknown stack is a clear error.
    let none = dlq::act(
        &stack,
        QueueKind::Events,
        &reason("auth_misconfigured"),
        Action::Purge,
        Run {
            yes: true,
            ..Run::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(none.matched, 0);
    assert_eq!(test.depth(&res.events_dlq_url).await, 2);
    let e = status::status(&Stack::new(&test.dev.sdk, "no-such-stack"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("no queue `no-such-stack-events`"),
        "{e}"
    );
    test.dev.shutdown().await;
}

/// A mapping broke one route for two events; after the fix, a replay of the archive delivers
/// them on that route and sends nothing twice on the route that had worked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_mapping_fix_delivers_the_fixed_route_only_once() {
    use switchboard_cli::ops::replay::{self, ReplayArgs};

    let receiver = Receiver::start().await;
    let definition = |fix_map: &str| {
        format!(
            "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n  - id: ok\n    map: '{{\"n\": n}}'\n    deliver:\n      url: {base}/ok\n  - id: fix\n    map: '{fix_map}'\n    contract: {{ type: object, required: [sku] }}\n    deliver:\n      url: {base}/fix\n",
            base = receiver.base
        )
    };
    let mut test = TestStack::with(
        &[("orders", definition("{\"n\": n}"))],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    for n in [1, 2] {
        // Pretty-printed, as some senders post: its line breaks must not break the archive's
        // lines.
        let (status, body) = test
            .post_signed(
                "orders",
                serde_json::to_string_pretty(&json!({"n": n, "sku": format!("S-{n}")}))
                    .unwrap()
                    .as_bytes(),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let res = test.dev.resources.clone();
    wait_until("the working route and the two dead events", || async {
        receiver
            .received()
            .iter()
            .filter(|r| r.path == "/ok")
            .count()
            == 2
            && test.depth(&res.events_dlq_url).await == 2
    })
    .await;

    // The fix, deployed: the local stack restarted on the same resources with the new mapping.
    std::fs::write(
        test.dir.join("orders.yaml"),
        definition("{\"n\": n, \"sku\": sku}").replace("SECRET/", &format!("{}/", test.prefix)),
    )
    .unwrap();
    let options = switchboard_cli::dev::DevOptions {
        port: 0,
        integrations: test.dir.clone(),
        emulator_port: test
            .dev
            .endpoint
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
        stack: test.prefix.clone(),
        queues: FAST,
        ..Default::default()
    };
    let old = std::mem::replace(
        &mut test.dev,
        switchboard_cli::dev::DevStack::start(options)
            .await
            .unwrap(),
    );
    old.shutdown().await;

    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let args = ReplayArgs {
        integration: "orders".into(),
        route: None,
        event_id: None,
        since: None,
        until: None,
        force: false,
        dry_run: true,
        yes: true,
        bucket: None,
        integrations: test.dir.clone(),
    };
    let dry = replay::replay(&stack, &test.dev.sdk, &args).await.unwrap();
    assert_eq!(
        (dry.matched, dry.replayed, dry.skipped_delivered),
        (2, 0, 0)
    );
    let done = replay::replay(
        &stack,
        &test.dev.sdk,
        &ReplayArgs {
            dry_run: false,
            ..args.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!((done.matched, done.replayed), (2, 2), "{done:?}");
    wait_until("the fixed route's deliveries", || async {
        receiver
            .received()
            .iter()
            .filter(|r| r.path == "/fix")
            .count()
            == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fixed: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| r.path == "/fix")
        .collect();
    assert!(fixed.iter().all(|r| r.body["sku"].is_string()), "{fixed:?}");
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.path == "/ok")
            .count(),
        2,
        "the route that had worked was not sent again"
    );
    // Not merely suppressed by deliver's record: the replay asked transform for `fix` only
    // (the restarted stack's metrics start empty: what it queued, it queued for the replay).
    assert_eq!(
        (test.queued("fix"), test.queued("ok")),
        (2, 0),
        "the replay queued `fix` only"
    );
    assert_eq!(test.dev.metrics.count("skipped", "already_delivered"), 0);
    // Everything delivered now: a second replay skips both.
    let again = replay::replay(
        &stack,
        &test.dev.sdk,
        &ReplayArgs {
            dry_run: false,
            ..args
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (again.matched, again.replayed, again.skipped_delivered),
        (2, 0, 2)
    );
    test.dev.shutdown().await;
}

/// Slack answers 200 `{"ok": false}` and a GraphQL API 200 with `userErrors`: through the local
/// pipeline neither is called delivered; `dlq list` shows each as `rejected_by_destination`
/// with the destination's own words in the history, and the good answers are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_says_it_failed_is_dead_lettered_with_what_the_destination_said() {
    let receiver = Receiver::start().await;
    receiver.on(
        "/slack",
        vec![(
            StatusCode::OK,
            Some(json!({"ok": false, "error": "channel_not_found"})),
        )],
    );
    receiver.on(
        "/gql",
        vec![(
            StatusCode::OK,
            Some(json!({"data": {"fulfillmentCreate": {"fulfillment": null,
                "userErrors": [{"field": ["fulfillment"], "message": "Fulfillment order does not exist"}]}}})),
        )],
    );
    receiver.on("/plain", vec![(StatusCode::OK, Some(json!({"ok": false})))]);
    let route = |id: &str, check: &str| {
        format!(
            "  - id: {id}\n    map: '{{\"n\": n}}'\n    deliver:\n      url: {}/{id}\n{check}",
            receiver.base
        )
    };
    let definition = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n{}{}{}",
        route("slack", "      success: slack\n"),
        route("gql", "      success: graphql\n"),
        // No check: a 200 is delivered, whatever its body says.
        route("plain", ""),
    );
    let test = TestStack::with(
        &[("orders", definition)],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    let (status, body) = test
        .post_signed("orders", json!({"n": 1}).to_string().as_bytes())
        .await;
    assert_eq!(status, 202, "{body}");
    let res = &test.dev.resources;
    wait_until("two rejected deliveries", || async {
        test.depth(&res.deliveries_dlq_url).await == 2
    })
    .await;
    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let mut letters = dlq::list(&stack, QueueKind::Deliveries, &Filter::default())
        .await
        .unwrap();
    letters.sort_by(|a, b| a.route.cmp(&b.route));
    let routes: Vec<_> = letters.iter().map(|l| l.route.clone().unwrap()).collect();
    assert_eq!(routes, ["gql", "slack"]);
    for (letter, said) in letters.iter().zip(["does not exist", "channel_not_found"]) {
        assert_eq!(letter.reason, "rejected_by_destination", "{letter:?}");
        assert_eq!(letter.last_status, Some(200));
        let history = letter.history.as_deref().unwrap_or_default();
        assert!(history.contains(said), "{history}");
    }
    // Each was asked once (a permanent rejection is not retried); the unchecked route was
    // delivered.
    let asked = |path: &str| {
        receiver
            .received()
            .iter()
            .filter(|r| r.path.contains(path))
            .count()
    };
    assert_eq!((asked("/slack"), asked("/gql"), asked("/plain")), (1, 1, 1));
    test.dev.shutdown().await;
}
