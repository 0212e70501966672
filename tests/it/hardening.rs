//! Timing and input nobody here chose, through `switchboard dev`: a replay older than the
//! delivery records, dead letters too large to redrive ten at a time, a circuit that must not
//! give up on tasks its probe never tried, and a failing route beside a healthy one on the
//! same host.

use std::time::Duration;

use serde_json::json;
use switchboard_cli::ops::Stack;
use switchboard_cli::ops::replay::{self, ReplayArgs};
use switchboard_core::archive::{self, ArchivedEvent, ArchivedEventV1};
use switchboard_core::ids::EventId;

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, FAST_OUTLASTING, SIGNING_SECRET, TestStack};

/// An event 30 days old is in the archive (kept 90 days) but its delivery records (kept 7) are
/// gone: a replay cannot tell whether it was delivered, so it refuses it and says so; with
/// `--force` it sends it. A fresh delivered event is skipped as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_refuses_events_older_than_their_delivery_records_unless_forced() {
    let receiver = Receiver::start().await;
    let test = TestStack::start(&receiver.url, FAST).await;
    let (status, body) = test
        .post_signed(
            "orders",
            json!({"name": "fresh", "items": []}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    receiver.wait_for(1, Duration::from_secs(30)).await;

    // An event delivered a month ago, as the archive still holds it.
    let old = EventId::new();
    let received_at = chrono::Utc::now() - chrono::Duration::days(30);
    let record = ArchivedEvent::ArchivedEventV1(ArchivedEventV1 {
        event_id: old.clone(),
        integration: "orders".into(),
        received_at,
        headers: Default::default(),
        raw_body: json!({"name": "old", "items": []}).to_string(),
        body: None,
    });
    aws_sdk_s3::Client::new(&test.dev.sdk)
        .put_object()
        .bucket(&test.dev.resources.bucket)
        .key(archive::key("orders", received_at, &old))
        .body(serde_json::to_vec(&record).unwrap().into())
        .send()
        .await
        .unwrap();

    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let args = ReplayArgs {
        integration: "orders".into(),
        route: None,
        event_id: None,
        since: Some(chrono::Utc::now() - chrono::Duration::days(60)),
        until: None,
        force: false,
        dry_run: false,
        yes: true,
        bucket: None,
        integrations: test.dir.clone(),
    };
    let refused = replay::replay(&stack, &test.dev.sdk, &args).await.unwrap();
    assert_eq!(
        (
            refused.matched,
            refused.replayed,
            refused.skipped_delivered,
            refused.refused_too_old
        ),
        (2, 0, 1, 1),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 1, "nothing sent again");

    let forced = replay::replay(
        &stack,
        &test.dev.sdk,
        &ReplayArgs {
            force: true,
            event_id: Some(old.to_string()),
            ..args
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (forced.replayed, forced.refused_too_old),
        (1, 0),
        "{forced:?}"
    );
    let received = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(received[1].body["name"], "old");
    test.dev.shutdown().await;
}

/// The `big` integration: Standard Webhooks, route `all` sending the whole event to `url`.
fn whole_event(url: &str, deliver: &str) -> String {
    format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n  - id: all\n    map: '$'\n    deliver:\n      url: {url}\n{deliver}"
    )
}

/// Three 400 KiB letters, refused by a destination that then recovers: one redrive sends them
/// all back (two requests, as SQS takes 1 MiB per batch) and all three are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_400_kib_letters_are_redriven_together_and_delivered() {
    let receiver = Receiver::start().await;
    receiver.always(axum::http::StatusCode::BAD_REQUEST);
    let test = TestStack::with(
        &[("big", whole_event(&receiver.url, ""))],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    for n in 0..3 {
        let body = json!({"n": n, "pad": "x".repeat(400 * 1024)}).to_string();
        let (status, answer) = test.post_signed("big", body.as_bytes()).await;
        assert_eq!(status, 202, "{answer}");
    }
    let dlq_url = test.dev.resources.deliveries_dlq_url.clone();
    let started = std::time::Instant::now();
    while test.depth(&dlq_url).await < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "three letters");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    receiver.always(axum::http::StatusCode::OK);
    let moved = redrive_all(&test).await;
    assert_eq!(moved.redriven, Some(3), "{:?}", moved.not_redriven);
    assert!(moved.not_redriven.is_empty());
    let started = std::time::Instant::now();
    loop {
        let delivered: std::collections::BTreeSet<i64> = receiver
            .received()
            .iter()
            .filter(|r| {
                r.body["pad"]
                    .as_str()
                    .is_some_and(|p| p.len() == 400 * 1024)
            })
            .skip(3)
            .filter_map(|r| r.body["n"].as_i64())
            .collect();
        if delivered.len() == 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{delivered:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(test.depth(&dlq_url).await, 0);
    test.dev.shutdown().await;
}

/// Distinct tasks a receiver answered 200 at `path` (by their Idempotency-Key).
fn delivered_at(receiver: &Receiver, path: &str) -> usize {
    receiver
        .received()
        .iter()
        .filter(|r| r.status == 200 && r.path.starts_with(path))
        .filter_map(|r| r.headers.get("idempotency-key"))
        .map(|k| k.to_str().unwrap().to_string())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// `switchboard dlq redrive --queue deliveries --yes`: every letter.
async fn redrive_all(test: &TestStack) -> switchboard_cli::ops::dlq::Moved {
    use switchboard_cli::ops::QueueKind;
    use switchboard_cli::ops::dlq::{self, Action, Filter, Run};
    let run = Run {
        yes: true,
        ..Run::default()
    };
    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    dlq::act(
        &stack,
        QueueKind::Deliveries,
        &Filter::default(),
        Action::Redrive,
        run,
    )
    .await
    .unwrap()
}

/// Posts `{"n": 0}` .. `{"n": count - 1}` to `orders`, each accepted.
async fn post_numbered(test: &TestStack, count: usize) {
    for n in 0..count {
        let (status, body) = test
            .post_signed("orders", json!({"n": n}).to_string().as_bytes())
            .await;
        assert_eq!(status, 202, "{body}");
    }
}

async fn eventually(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A destination that failed long enough to fill the DLQ has recovered, but its circuit is
/// still open (its last probe failed a moment ago) when the letters are redriven: every task
/// waits for the circuit's next probe instead of giving up on a schedule of two seconds, and
/// all twenty are delivered; none comes back to the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_under_an_open_circuit_waits_for_the_probe_and_delivers_everything() {
    let receiver = Receiver::start().await;
    receiver.always(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    let test = TestStack::with(
        &[(
            "orders",
            whole_event(
                &receiver.url,
                "      retry: [1s, 1s]\n      circuit: { failures: 3, cool_down: 5s }\n",
            ),
        )],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    post_numbered(&test, 20).await;
    let dlq_url = test.dev.resources.deliveries_dlq_url.clone();
    eventually("twenty letters", Duration::from_secs(90), async || {
        test.depth(&dlq_url).await == 20
    })
    .await;

    // Recovered; the circuit reopened by a probe that failed just before the redrive.
    receiver.always(axum::http::StatusCode::OK);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let circuit = switchboard_core::circuit::key("orders", "all", &receiver.base);
    let n = |v: i64| aws_sdk_dynamodb::types::AttributeValue::N(v.to_string());
    aws_sdk_dynamodb::Client::new(&test.dev.sdk)
        .put_item()
        .table_name(&test.dev.resources.table)
        .item(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("circuit#{circuit}")),
        )
        .item("failures", n(12))
        .item("open_until", n(now_ms + 8_000))
        .item("opened_at", n(now_ms - 60_000))
        .item("probes_failed", n(4))
        .item("probe_failed_at", n(now_ms - 1))
        .send()
        .await
        .unwrap();
    let moved = redrive_all(&test).await;
    assert_eq!(moved.redriven, Some(20));
    eventually("twenty deliveries", Duration::from_secs(60), async || {
        delivered_at(&receiver, "/hook") == 20
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(test.depth(&dlq_url).await, 0, "none came back to the DLQ");
    test.dev.shutdown().await;
}

/// Two routes on one host: one whose destination is down, one healthy. The failing route's
/// circuit opens; the healthy route's tasks never wait on it and all forty are delivered. The
/// failing route's tasks end in the DLQ, each with its reason; a `circuit_open` letter says how
/// long the circuit was open and how many probes failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_route_beside_a_failing_one_on_the_same_host_delivers_everything() {
    use switchboard_cli::ops::QueueKind;
    use switchboard_cli::ops::dlq::{self, Filter};

    let receiver = Receiver::start().await;
    receiver.on(
        "/down",
        vec![(axum::http::StatusCode::SERVICE_UNAVAILABLE, None)],
    );
    let deliver = |path: &str| {
        format!(
            "    deliver:\n      url: {}{path}\n      retry: [1s, 1s, 1s]\n      circuit: {{ failures: 3, cool_down: 3s }}\n",
            receiver.base
        )
    };
    let definition = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n  - id: down\n    map: '$'\n{}  - id: healthy\n    map: '$'\n{}",
        deliver("/down"),
        deliver("/healthy")
    );
    let test = TestStack::with(
        &[("orders", definition)],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    post_numbered(&test, 40).await;
    let dlq_url = test.dev.resources.deliveries_dlq_url.clone();
    eventually(
        "the healthy route's forty",
        Duration::from_secs(90),
        async || delivered_at(&receiver, "/healthy") == 40,
    )
    .await;
    eventually(
        "the failing route's forty letters",
        Duration::from_secs(90),
        async || test.depth(&dlq_url).await == 40,
    )
    .await;
    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let letters = dlq::list(&stack, QueueKind::Deliveries, &Filter::default())
        .await
        .unwrap();
    let seen: Vec<(&str, &str, &str)> = letters
        .iter()
        .map(|l| (l.event_id.as_str(), l.reason.as_str(), l.message.as_str()))
        .collect();
    assert_eq!(letters.len(), 40, "{seen:#?}");
    for l in &letters {
        assert_eq!(l.route.as_deref(), Some("down"), "{l:?}");
        match l.reason.as_str() {
            "retries_exhausted" => {}
            "circuit_open" => assert!(
                l.message.contains("open for") && l.message.contains("probe(s) failed"),
                "{}",
                l.message
            ),
            other => panic!("{other}: {}", l.message),
        }
    }
    test.dev.shutdown().await;
}

/// Transform killed after its send (or its event's visibility lapsing) queues the same task
/// twice. The destination refuses both copies; one letter reaches the DLQ, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_queued_twice_and_refused_twice_leaves_one_letter() {
    use switchboard_core::envelope::{DeliveryMessage, DeliveryV1};

    let receiver = Receiver::start().await;
    receiver.always(axum::http::StatusCode::BAD_REQUEST);
    let test = TestStack::start(&receiver.url, FAST).await;
    let task = DeliveryMessage::DeliveryV1(DeliveryV1 {
        event_id: EventId::new(),
        integration: "orders".into(),
        route: "echo".into(),
        body: json!({"name": "twice", "total": 1}),
        method: None,
        path: None,
        headers: Default::default(),
        received_at: Some(chrono::Utc::now()),
        review: None,
        reviewed: None,
        archived: None,
        order: None,
    });
    for _ in 0..2 {
        test.sqs
            .send_message()
            .queue_url(&test.dev.resources.deliveries_url)
            .message_body(serde_json::to_string(&task).unwrap())
            .send()
            .await
            .unwrap();
    }
    // The second copy either meets the first's claim and comes back after it, or is asked
    // and refused too; either way it settles.
    let dlq_url = test.dev.resources.deliveries_dlq_url.clone();
    let deliveries = test.dev.resources.deliveries_url.clone();
    eventually(
        "both copies settled",
        Duration::from_secs(120),
        async || test.depth(&dlq_url).await >= 1 && test.depth(&deliveries).await == 0,
    )
    .await;
    assert_eq!(test.depth(&dlq_url).await, 1, "one refusal, one letter");
    assert!((1..=2).contains(&receiver.received().len()));
    test.dev.shutdown().await;
}

/// A mapping that doubles a 600 KiB event makes a task of 1.2 MiB, over SQS's 1 MiB: transform
/// writes it to the archive and queues a pointer, deliver reads it there, and it is delivered
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_a_mebibyte_travels_in_the_archive_and_is_delivered_whole() {
    let receiver = Receiver::start().await;
    let definition = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n  - id: twice\n    map: '{{\"a\": $, \"b\": $}}'\n    deliver:\n      url: {}\n",
        receiver.url
    );
    let test = TestStack::with(&[("big", definition)], &[("signing", SIGNING_SECRET)], FAST).await;
    let pad = "x".repeat(600 * 1024);
    let (status, answer) = test
        .post_signed("big", json!({"n": 1, "pad": pad}).to_string().as_bytes())
        .await;
    assert_eq!(status, 202, "{answer}");
    let received = receiver.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(
        received[0].body["a"]["pad"].as_str().map(str::len),
        Some(pad.len())
    );
    assert_eq!(
        received[0].body["b"]["pad"].as_str().map(str::len),
        Some(pad.len())
    );
    let tasks: Vec<String> = test
        .archived()
        .await
        .into_iter()
        .filter(|k| k.starts_with("tasks/big/"))
        .collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert!(tasks[0].ends_with("/twice.json"), "{tasks:?}");
    assert_eq!(test.depth(&test.dev.resources.events_dlq_url).await, 0);
    assert_eq!(test.depth(&test.dev.resources.deliveries_dlq_url).await, 0);
    test.dev.shutdown().await;
}

/// A destination answering in 1.2 s beside one answering at once: each call's latency is
/// counted by destination (what the dashboard's per-destination latency and the
/// DestinationSlow alarm, over every destination, read), so the slow one is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_calls_latency_is_counted_by_its_destination() {
    let fast = Receiver::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        "ok"
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let definition = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n  - id: fast\n    map: '$'\n    deliver:\n      url: {}\n  - id: slow\n    map: '$'\n    deliver:\n      url: {slow}/hook\n",
        fast.url
    );
    let test = TestStack::with(
        &[("orders", definition)],
        &[("signing", SIGNING_SECRET)],
        // Calls of 1.2 s: a visibility that outlasts them, as deployed.
        FAST_OUTLASTING,
    )
    .await;
    post_numbered(&test, 3).await;
    let metrics = &test.dev.metrics;
    let latencies = |destination: &str| -> Vec<f64> {
        metrics
            .samples("DeliveryLatency", |l| l["Destination"] == destination)
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect()
    };
    eventually("six calls counted", Duration::from_secs(60), async || {
        latencies(&slow).len() == 3 && latencies(&fast.base).len() == 3
    })
    .await;
    assert!(
        latencies(&slow).iter().all(|ms| *ms >= 1200.0),
        "{:?}",
        latencies(&slow)
    );
    assert!(
        latencies(&fast.base).iter().all(|ms| *ms < 1200.0),
        "{:?}",
        latencies(&fast.base)
    );
    let line = metrics
        .lines()
        .into_iter()
        .find(|l| l["DeliveryLatency"].is_array())
        .unwrap();
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Integration", "Route"], ["Destination"], []])
    );
    test.dev.shutdown().await;
}

/// A letter no function wrote: SQS's redrive policy moved the message after maxReceiveCount
/// receives (a function that crashed on it every time), so it carries no reason attributes.
/// `dlq list` names it `redrive_policy`, with what the task says of itself (event, route) and
/// its receive count, and `--reason redrive_policy` finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_the_redrive_policy_moved_is_listed_as_redrive_policy_with_its_task() {
    use switchboard_cli::ops::QueueKind;
    use switchboard_cli::ops::dlq::{self, Filter};
    use switchboard_core::envelope::{DeliveryMessage, DeliveryV1};
    use switchboard_core::reason::Reason;

    let receiver = Receiver::start().await;
    let test = TestStack::start(&receiver.url, FAST).await;
    let event_id = EventId::new();
    let task = DeliveryMessage::DeliveryV1(DeliveryV1::of(
        event_id.clone(),
        "orders",
        "out",
        json!({"n": 1}),
    ));
    // As SQS moves it: the body alone, no message attributes.
    test.sqs
        .send_message()
        .queue_url(&test.dev.resources.deliveries_dlq_url)
        .message_body(serde_json::to_string(&task).unwrap())
        .send()
        .await
        .unwrap();
    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let filter = Filter {
        reason: Some(Reason::RedrivePolicy),
        ..Filter::default()
    };
    let letters = dlq::list(&stack, QueueKind::Deliveries, &filter)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, "redrive_policy");
    assert_eq!(letters[0].event_id, event_id.as_str());
    assert_eq!(letters[0].route.as_deref(), Some("out"));
    test.dev.shutdown().await;
}

/// `dedupe_ttl`: a provider's id is remembered that long and no longer. Within it a retry is
/// answered as a duplicate (nothing queued again); after it the same id is a new arrival,
/// accepted and queued (DynamoDB's TTL deletes lazily, so the claim's own expiry decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_id_is_remembered_for_dedupe_ttl_and_then_forgotten() {
    let receiver = Receiver::start().await;
    let definition = format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\n  dedupe: order_id\n  dedupe_ttl: 3s\nroutes:\n  - id: out\n    map: $\n    deliver:\n      url: {}\n",
        receiver.url
    );
    let test = TestStack::with(
        &[("orders", definition)],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    let body = json!({"order_id": 1001, "status": "paid"}).to_string();
    let (status, first) = test.post_signed("orders", body.as_bytes()).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = test.post_signed("orders", body.as_bytes()).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );
    assert_eq!(again["event_id"], first["event_id"]);

    // Kept to the second (expiry times are whole seconds, compared strictly): gone once a
    // whole second past the TTL has begun.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (status, later) = test.post_signed("orders", body.as_bytes()).await;
    assert_eq!(status, 202, "after the TTL the id is new again: {later}");
    assert_ne!(later["duplicate"], json!(true));
    // Queued twice in all: the first arrival and the one after the TTL.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while test.queued("out") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} queued",
            test.queued("out")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(test.queued("out"), 2);
    test.dev.shutdown().await;
}
