//! One slow destination never holds the others back, through `switchboard dev`: a fast
//! destination's latency (from the event's 202 to its request arriving) beside a destination
//! answering in 6 s, and beside one that times out, stays within 3x of its latency alone plus a
//! second; the slow one still gets every task delivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_cli::resources::TEMPLATE_SETTINGS;

use crate::utils::stack::{SIGNING_SECRET, TestStack};

/// A destination on its own port that answers after `delay()` and records when each event's
/// request (`{"n": n}`) was answered, if it was answered within `in_time` (the route's
/// timeout: a later answer nobody waited for is not a delivery).
struct Recorder {
    base: String,
    arrived: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Recorder {
    async fn start(
        in_time: Duration,
        delay: impl Fn() -> Duration + Clone + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let arrived = Arc::new(Mutex::new(HashMap::new()));
        let seen = arrived.clone();
        let app = axum::Router::new().fallback(move |body: String| {
            let (seen, delay) = (seen.clone(), delay.clone());
            async move {
                let wait = delay();
                tokio::time::sleep(wait).await;
                if wait >= in_time {
                    return "too late";
                }
                let n = serde_json::from_str::<serde_json::Value>(&body).unwrap()["n"]
                    .as_u64()
                    .unwrap();
                seen.lock().unwrap().entry(n).or_insert_with(Instant::now);
                "ok"
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, arrived }
    }

    fn count(&self) -> usize {
        self.arrived.lock().unwrap().len()
    }
}

fn route(id: &str, url: &str, extra: &str) -> String {
    format!("  - id: {id}\n    map: '{{\"n\": n}}'\n    deliver:\n      url: {url}/hook\n{extra}")
}

fn integration(routes: &[String]) -> String {
    format!(
        "source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n{}",
        routes.concat()
    )
}

/// Posts events `from..from+count` to `integration`, eight at a time; when each was accepted.
async fn post(
    test: &Arc<TestStack>,
    integration: &str,
    from: u64,
    count: u64,
) -> HashMap<u64, Instant> {
    let accepted = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(from));
    let posters = (0..8).map(|_| {
        let (test, accepted, next) = (test.clone(), accepted.clone(), next.clone());
        let integration = integration.to_string();
        tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= from + count {
                    return;
                }
                let body = json!({"n": n}).to_string();
                let (status, answer) = test.post_signed(&integration, body.as_bytes()).await;
                assert_eq!(status, 202, "{answer}");
                accepted.lock().unwrap().insert(n, Instant::now());
            }
        })
    });
    for p in posters.collect::<Vec<_>>() {
        p.await.unwrap();
    }
    Arc::try_unwrap(accepted).unwrap().into_inner().unwrap()
}

/// The fast destination's latencies of events `from..from+count`, once all arrived: p95.
async fn p95(fast: &Recorder, accepted: &HashMap<u64, Instant>, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let arrived = fast.arrived.lock().unwrap().clone();
        if accepted.keys().all(|n| arrived.contains_key(n)) {
            let mut latencies: Vec<Duration> = accepted
                .iter()
                .map(|(n, at)| arrived[n].saturating_duration_since(*at))
                .collect();
            latencies.sort();
            return latencies[(latencies.len() * 95).div_ceil(100) - 1];
        }
        assert!(
            started.elapsed() < timeout,
            "the fast destination's requests did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(recorder: &Recorder, count: usize, timeout: Duration, what: &str) {
    let started = Instant::now();
    while recorder.count() < count {
        assert!(
            started.elapsed() < timeout,
            "{what}: {} of {count} delivered after {timeout:?}",
            recorder.count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fast route alone, then beside a second route of the same events whose destination is
/// another; returns the fast route's p95 alone and beside.
async fn alone_then_beside(other_route: &str, events: u64) -> (Duration, Duration, TestStack) {
    let fast = Recorder::start(Duration::from_secs(10), || Duration::ZERO).await;
    let alone = integration(&[route("fast", &fast.base, "")]);
    let beside = integration(&[route("fast", &fast.base, ""), other_route.to_string()]);
    let test = Arc::new(
        TestStack::with(
            &[("alone", alone), ("beside", beside)],
            &[("signing", SIGNING_SECRET)],
            TEMPLATE_SETTINGS,
        )
        .await,
    );
    let accepted = post(&test, "alone", 0, events).await;
    let p95_alone = p95(&fast, &accepted, Duration::from_secs(60)).await;
    let accepted = post(&test, "beside", 1000, events).await;
    let p95_beside = p95(&fast, &accepted, Duration::from_secs(120)).await;
    let test = Arc::try_unwrap(test).ok().expect("the posters are done");
    (p95_alone, p95_beside, test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_a_destination_answering_in_six_seconds_a_fast_one_keeps_its_pace() {
    let slow = Recorder::start(Duration::from_secs(10), || Duration::from_secs(6)).await;
    let slow_route = route("slow", &slow.base, "      timeout: 10s\n");
    let (alone, beside, test) = alone_then_beside(&slow_route, 40).await;
    let bound = alone * 3 + Duration::from_secs(1);
    println!("fast p95 alone {alone:?}, beside a 6 s destination {beside:?} (bound {bound:?})");
    assert!(
        beside <= bound,
        "beside the slow one: p95 {beside:?} > {bound:?}"
    );
    // The operator sees which route is held to its share, and only that one (once one of its
    // calls has run past the threshold: the fast route may be done before that).
    let stack = switchboard_cli::ops::Stack::new(&test.dev.sdk, &test.prefix);
    let started = Instant::now();
    let status = loop {
        let status = switchboard_cli::ops::status::status(&stack).await.unwrap();
        if !status.slow.is_empty() || started.elapsed() > Duration::from_secs(20) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let slow_routes: Vec<&str> = status.slow.iter().map(|r| r.circuit.as_str()).collect();
    assert_eq!(
        slow_routes,
        [format!("beside/slow@{}", slow.base)],
        "{status:?}"
    );
    let rendered = switchboard_cli::ops::status::render(&status);
    assert!(rendered.contains("1 route(s) slow"), "{rendered}");
    // It still gets its share: every task delivered, none dead-lettered.
    wait_for(&slow, 40, Duration::from_secs(240), "the 6 s destination").await;
    assert_eq!(test.depth(&test.dev.resources.deliveries_dlq_url).await, 0);
    test.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_a_destination_that_times_out_a_fast_one_keeps_its_pace() {
    // Its first calls, for 20 s, time out (it answers in 30 s, its route waits 2 s); then it
    // recovers and answers at once.
    let down_until = Instant::now() + Duration::from_secs(20);
    let flaky = Recorder::start(Duration::from_secs(2), move || {
        if Instant::now() < down_until {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        }
    })
    .await;
    let flaky_route = route(
        "flaky",
        &flaky.base,
        "      timeout: 2s\n      retry: [1s, 2s, 4s, 8s, 15s, 30s]\n      circuit: { failures: 1000 }\n",
    );
    let (alone, beside, test) = alone_then_beside(&flaky_route, 40).await;
    let bound = alone * 3 + Duration::from_secs(1);
    println!(
        "fast p95 alone {alone:?}, beside a timing-out destination {beside:?} (bound {bound:?})"
    );
    assert!(
        beside <= bound,
        "beside the timing-out one: p95 {beside:?} > {bound:?}"
    );
    wait_for(
        &flaky,
        40,
        Duration::from_secs(240),
        "the recovered destination",
    )
    .await;
    assert_eq!(test.depth(&test.dev.resources.deliveries_dlq_url).await, 0);
    test.dev.shutdown().await;
}

/// The emulator takes `MessageGroupId` on a standard queue and gives it back, but hands out the
/// messages in the order they came whatever their groups, where SQS fair queues would hand out
/// a quiet group's message before a busy group's backlog. The deliver pollers of `switchboard
/// dev` share a fair look-ahead that does: a message of a quiet group queued behind thirty of
/// a busy one goes in the first batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_keeps_no_fairness_between_groups_and_dev_pollers_do() {
    use switchboard_cli::esm::{EventSourceMapping, Fair};

    let test = TestStack::with(&[], &[], TEMPLATE_SETTINGS).await;
    let sqs = test.sqs.clone();
    let fill = async |name: &str| -> String {
        let url = sqs
            .create_queue()
            .queue_name(format!("{}-{name}", test.prefix))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        for (i, group) in std::iter::repeat_n("busy", 30).chain(["quiet"]).enumerate() {
            sqs.send_message()
                .queue_url(&url)
                .message_body(json!({"event_id": format!("e{i}"), "route": group}).to_string())
                .message_group_id(group)
                .send()
                .await
                .unwrap();
        }
        url
    };

    // The emulator: ten of the busy group, in order; the group comes back as an attribute.
    let url = fill("plain").await;
    let first = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let groups: Vec<&str> = first
        .iter()
        .filter_map(|m| {
            m.attributes()?
                .get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                .map(String::as_str)
        })
        .collect();
    assert_eq!(
        groups, ["busy"; 10],
        "moto keeps arrival order across groups"
    );

    // The dev pollers' look-ahead: the quiet group's message is in the first batch.
    let url = fill("fair").await;
    let batches = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mapping = EventSourceMapping {
        sqs: sqs.clone(),
        queue_url: url,
        queue_arn: "arn:aws:sqs:us-east-1:123456789012:fair".into(),
        function: "deliver",
        batch_size: 10,
        fair: Some(Arc::new(Fair::new(Duration::from_secs(180)))),
        held: None,
    };
    let seen = batches.clone();
    let poller = tokio::spawn(mapping.run(
        move |e: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| {
            let seen = seen.clone();
            async move {
                let routes = e.payload.records.iter().map(|r| {
                    let body: serde_json::Value =
                        serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
                    body["route"].as_str().unwrap().to_string()
                });
                seen.lock().unwrap().push(routes.collect());
                aws_lambda_events::sqs::SqsBatchResponse::default()
            }
        },
        stopped,
    ));
    let started = Instant::now();
    while batches.lock().unwrap().iter().map(Vec::len).sum::<usize>() < 31 {
        assert!(started.elapsed() < Duration::from_secs(30), "{batches:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    poller.await.unwrap();
    let batches = batches.lock().unwrap().clone();
    assert!(
        batches[0].iter().any(|g| g == "quiet"),
        "the quiet group waits behind the busy one's backlog: {batches:?}"
    );
    test.dev.shutdown().await;
}
