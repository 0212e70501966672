//! Deliver against destinations that need tokens, verify signatures, fail, go down, need pacing,
//! and misbehave at random, through the whole local pipeline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, FAST_OUTLASTING, SIGNING_SECRET, TestStack};

const ORDER: &[u8] = br#"{"name": "Ada", "items": [{"price": 120.5}, {"price": 9.5}]}"#;
const WAIT: Duration = Duration::from_secs(30);
const OUTBOUND_KEY: &str = "whsec_b3V0Ym91bmQtc2lnbmluZy1rZXktY3VycmVudA==";
const NEXT_OUTBOUND_KEY: &str = "whsec_b3V0Ym91bmQtc2lnbmluZy1rZXktbmV4dA==";

fn definition(routes: &str) -> String {
    format!("source:\n  verify: standard-webhooks\n  secret: SECRET/signing\nroutes:\n{routes}")
}

/// A stack with the `orders` integration (Standard Webhooks) and these routes.
async fn signed_orders(routes: &str) -> TestStack {
    TestStack::with(
        &[("orders", definition(routes))],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await
}

async fn dead_letters(stack: &TestStack, n: usize) -> Vec<BTreeMap<String, String>> {
    let mut got = Vec::new();
    while got.len() < n {
        let (_, attributes) = stack
            .receive_with_attributes(&stack.dev.resources.deliveries_dlq_url, WAIT)
            .await
            .expect("a dead letter");
        got.push(attributes);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_cached_refreshed_once_on_401_and_every_request_is_signed() {
    let api = Receiver::start().await;
    api.on(
        "/token",
        vec![
            (
                StatusCode::OK,
                Some(json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600})),
            ),
            (
                StatusCode::OK,
                Some(json!({"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600})),
            ),
        ],
    );
    // First event: accepted. Second: the token is refused once (revoked), then accepted.
    api.on(
        "/hook",
        vec![
            (StatusCode::OK, None),
            (StatusCode::UNAUTHORIZED, None),
            (StatusCode::OK, None),
        ],
    );
    let routes = format!(
        "  - id: crm\n    map: '{{\"name\": name}}'\n    deliver:\n      url: {}/hook\n      auth: {{ type: oauth2-client-credentials, secret: SECRET/oauth }}\n      sign: {{ secret: SECRET/outbound }}\n",
        api.base
    );
    let client = json!({
        "type": "oauth2-client-credentials",
        "token_url": format!("{}/token", api.base),
        "client_id": "switchboard",
        "client_secret": "client-secret-value",
        "scope": "crm.write",
    })
    .to_string();
    let outbound = json!({"type": "signing-secret", "value": OUTBOUND_KEY}).to_string();
    let stack = TestStack::with(
        &[("orders", definition(&routes))],
        &[
            ("signing", SIGNING_SECRET),
            ("oauth", &client),
            ("outbound", &outbound),
        ],
        FAST,
    )
    .await;

    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");
    wait_for_path(&api, "/hook", 1).await;
    let (status, body) = stack.post_signed("orders", br#"{"name": "Grace"}"#).await;
    assert_eq!(status, 202, "{body}");
    let hooks = wait_for_path(&api, "/hook", 3).await;

    let tokens: Vec<&str> = hooks
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap())
        .collect();
    assert_eq!(tokens, ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]);
    let token_requests: Vec<_> = api
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/token"))
        .collect();
    assert_eq!(token_requests.len(), 2, "one token, then one refresh");
    // base64("switchboard:client-secret-value")
    assert_eq!(
        token_requests[0].headers["authorization"],
        "Basic c3dpdGNoYm9hcmQ6Y2xpZW50LXNlY3JldC12YWx1ZQ=="
    );
    // The refused request was resent at once, not after a retry delay.
    let resent = hooks[2].at - hooks[1].at;
    assert!(
        resent < Duration::from_millis(900),
        "resent after {resent:?}"
    );
    for hook in &hooks {
        assert!(hook.verifies_with(OUTBOUND_KEY), "{:?}", hook.headers);
        assert!(!hook.verifies_with(NEXT_OUTBOUND_KEY));
    }
    assert_eq!(
        stack.depth(&stack.dev.resources.deliveries_dlq_url).await,
        0
    );
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_signing_secret_rotates_messages_carry_a_signature_for_each_key() {
    let receiver = Receiver::start().await;
    let routes = format!(
        "  - id: echo\n    map: '{{\"name\": name}}'\n    deliver:\n      url: {}\n      sign: {{ secret: SECRET/outbound }}\n",
        receiver.url
    );
    let stack = TestStack::with(
        &[("orders", definition(&routes))],
        &[("signing", SIGNING_SECRET), ("outbound", OUTBOUND_KEY)],
        FAST,
    )
    .await;
    // A rotation has staged the next key, as the rotate function's createSecret does.
    aws_sdk_secretsmanager::Client::new(&stack.dev.sdk)
        .put_secret_value()
        .secret_id(format!("{}/outbound", stack.prefix))
        .secret_string(NEXT_OUTBOUND_KEY)
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();

    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");
    let got = receiver.wait_for(1, WAIT).await;
    let signatures = got[0].headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(
        got[0].verifies_with(OUTBOUND_KEY),
        "receivers not yet switched"
    );
    assert!(
        got[0].verifies_with(NEXT_OUTBOUND_KEY),
        "receivers already switched"
    );
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_carries_its_attempt_history_with_the_error_answers() {
    let receiver = Receiver::start().await;
    receiver.on(
        "/hook",
        vec![(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(json!({"error": "maintenance", "pad": "x".repeat(2000)})),
        )],
    );
    let routes = format!(
        "  - id: echo\n    map: '{{\"name\": name}}'\n    deliver:\n      url: {}\n      retry: [1s, 1s]\n",
        receiver.url
    );
    let stack = signed_orders(&routes).await;
    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");

    let letter = &dead_letters(&stack, 1).await[0];
    assert_eq!(letter["reason"], "retries_exhausted");
    assert_eq!(letter["attempts"], "3");
    assert_eq!(letter["last_status"], "503");
    let history: Vec<serde_json::Value> = serde_json::from_str(&letter["history"]).unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    for attempt in &history {
        assert_eq!(attempt["status"], 503);
        let response = attempt["response"].as_str().unwrap();
        assert!(
            response.starts_with(r#"{"error":"maintenance""#),
            "{response}"
        );
        assert_eq!(response.len(), 1024, "the first 1 KB only");
    }
    assert_eq!(receiver.received().len(), 3);
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_opens_its_circuit_and_a_probe_closes_it() {
    let receiver = Receiver::start().await;
    receiver.always(StatusCode::INTERNAL_SERVER_ERROR);
    let routes = format!(
        "  - id: echo\n    map: '{{\"name\": name}}'\n    deliver:\n      url: {}\n      retry: [3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s]\n      circuit: {{ failures: 3, cool_down: 3s }}\n",
        receiver.url
    );
    let stack = signed_orders(&routes).await;
    for i in 0..5 {
        let (status, body) = stack
            .post_signed("orders", format!(r#"{{"name": "n{i}"}}"#).as_bytes())
            .await;
        assert_eq!(status, 202, "{body}");
    }
    receiver.wait_for(3, WAIT).await;
    // Down for 8 s: with 5 tasks retrying every second that would be ~40 calls; the open
    // circuit lets through what was already admitted, then one probe per cool-down.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let while_down = receiver.received().len();
    assert!(while_down <= 5 + 3, "{while_down} calls while down");
    let metrics = &stack.dev.metrics;
    let transitions = |t: &str| {
        metrics
            .samples("CircuitTransitions", |l| l["Transition"] == t)
            .len()
    };
    assert!(transitions("opened") >= 1);
    assert!(
        metrics.count("circuit_open", "circuit_open") >= 1,
        "tasks waited"
    );

    receiver.always(StatusCode::OK);
    let started = Instant::now();
    while delivered(&receiver) < 5 {
        assert!(
            started.elapsed() < WAIT,
            "{} delivered",
            delivered(&receiver)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(transitions("closed") >= 1, "the probe closed it");
    assert_eq!(
        stack.depth(&stack.dev.resources.deliveries_dlq_url).await,
        0
    );
    stack.dev.shutdown().await;
}

/// Distinct events the receiver answered 200.
fn delivered(receiver: &Receiver) -> usize {
    receiver
        .received()
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.headers.get("idempotency-key"))
        .map(|k| k.to_str().unwrap().to_string())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Six tasks for a destination taking two a second, one at a time: each waits its turn (in
/// process up to `MAX_LIMIT_WAIT`, then on its visibility) and is sent once (the visibility
/// outlasts that wait: `FAST_OUTLASTING`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_destination_is_paced_not_failed() {
    let receiver = Receiver::start().await;
    let routes = format!(
        "  - id: echo\n    map: '{{\"name\": name}}'\n    deliver:\n      url: {}\n      limits: {{ max_per_second: 2, max_concurrency: 1 }}\n",
        receiver.url
    );
    let stack = TestStack::with(
        &[("orders", definition(&routes))],
        &[("signing", SIGNING_SECRET)],
        FAST_OUTLASTING,
    )
    .await;
    for i in 0..6 {
        let (status, body) = stack
            .post_signed("orders", format!(r#"{{"name": "n{i}"}}"#).as_bytes())
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let got = receiver.wait_for(6, WAIT).await;
    // Six calls at two a second span at least two second boundaries.
    let span = got[5].at - got[0].at;
    assert!(span >= Duration::from_millis(1000), "6 calls in {span:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received().len(), 6, "each sent once");
    assert_eq!(
        stack.depth(&stack.dev.resources.deliveries_dlq_url).await,
        0
    );
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_finish_before_the_deadline_is_never_started() {
    let receiver = Receiver::start().await;
    // Longer than the function's 30 s: no invocation has time for it.
    let routes = format!(
        "  - id: echo\n    map: '{{\"name\": name}}'\n    deliver:\n      url: {}\n      timeout: 40s\n",
        receiver.url
    );
    let stack = signed_orders(&routes).await;
    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");
    let letter = &dead_letters(&stack, 1).await[0];
    assert_eq!(letter["reason"], "retries_exhausted");
    assert!(letter["message"].contains("deadline"), "{letter:?}");
    assert!(receiver.received().is_empty(), "never called");
    stack.dev.shutdown().await;
}

/// Waits until `n` requests reached `path`.
async fn wait_for_path(
    receiver: &Receiver,
    path: &str,
    n: usize,
) -> Vec<crate::utils::receiver::Received> {
    let started = Instant::now();
    loop {
        let got: Vec<_> = receiver
            .received()
            .into_iter()
            .filter(|r| r.path.starts_with(path))
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(started.elapsed() < WAIT, "{} of {n} at {path}", got.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `switchboard dev --strict-network` applies the deployed rules, so the guard is proven with
/// loopback receivers only: a name that resolves to loopback is refused after resolution, the
/// task dead-lettered at once with its own reason, nothing sent, never retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_deployed_rules_a_name_resolving_to_loopback_is_dead_lettered_at_once() {
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    let routes = format!(
        "  - id: rebound\n    map: '{{\"name\": name}}'\n    deliver:\n      url: https://localhost:{port}/hook\n      retry: [1s, 1s]\n"
    );
    let files = [("orders.yaml".to_string(), definition(&routes))];
    let stack = TestStack::with_options(&files, &[("signing", SIGNING_SECRET)], FAST, |o| {
        o.strict_network = true
    })
    .await;
    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");
    let letter = &dead_letters(&stack, 1).await[0];
    assert_eq!(letter["reason"], "network_refused", "{letter:?}");
    assert_eq!(letter["attempts"], "1", "never retried");
    assert!(
        letter["message"].contains("localhost resolves only to refused addresses"),
        "{letter:?}"
    );
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );
    stack.dev.shutdown().await;

    // A literal loopback address fails the stack's start, naming the file, route and field.
    let literal = definition(&format!(
        "  - id: runtime\n    map: $\n    deliver:\n      url: {}\n",
        receiver.url.replace("http://", "https://")
    ));
    let dir = std::env::temp_dir().join(format!("sb-strict-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("orders.yaml"), literal).unwrap();
    let e = switchboard_cli::dev::DevStack::start(switchboard_cli::dev::DevOptions {
        port: 0,
        integrations: dir.clone(),
        strict_network: true,
        ..Default::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("orders.yaml"), "{e}");
    assert!(e.contains("routes[0].deliver.url (route `runtime`)"), "{e}");
    assert!(e.contains("127.0.0.1 is a loopback address"), "{e}");
}

/// A visibility change never reaches past 12 h since the receive: a `Retry-After` of a day is
/// cut to what SQS accepts, so the retry waits (nearly) 12 h instead of failing back to the
/// queue's default timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_a_day_waits_as_long_as_sqs_allows_since_the_receive() {
    use std::sync::{Arc, Mutex};

    use switchboard_core::ports::{PortError, Visibility};
    use switchboard_shared::aws::{DynamoIdempotencyStore, SecretsManagerStore, SqsQueue};

    /// The queue, recording every delay asked of it and whether SQS took it.
    struct Recording {
        inner: SqsQueue,
        delays: Arc<Mutex<Vec<(Duration, bool)>>>,
    }
    impl Visibility for Recording {
        async fn delay(&self, receipt: &str, by: Duration) -> Result<(), PortError> {
            let result = self.inner.delay(receipt, by).await;
            self.delays.lock().unwrap().push((by, result.is_ok()));
            result
        }
    }

    let receiver = Receiver::start().await;
    receiver.always(StatusCode::SERVICE_UNAVAILABLE);
    receiver.retry_after("86400");
    let routes = format!(
        "  - id: echo\n    map: $\n    deliver:\n      url: {}\n      retry: [1s, 1s]\n",
        receiver.url
    );
    let stack = signed_orders(&routes).await;
    let sdk = &stack.dev.sdk;
    // A queue of the test's own, so the stack's worker does not take the message.
    let url = stack
        .sqs
        .create_queue()
        .queue_name(format!("{}-visibility", stack.prefix))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let task = switchboard_core::envelope::DeliveryMessage::DeliveryV1(
        switchboard_core::envelope::DeliveryV1::of(
            switchboard_core::ids::EventId::new(),
            "orders",
            "echo",
            json!({"n": 1}),
        ),
    );
    stack
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body(serde_json::to_string(&task).unwrap())
        .send()
        .await
        .unwrap();
    let received = stack
        .sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    let m = &received.messages()[0];
    let mut message = aws_lambda_events::sqs::SqsMessage::default();
    message.message_id = m.message_id().map(str::to_string);
    message.receipt_handle = m.receipt_handle().map(str::to_string);
    message.body = m.body().map(str::to_string);
    message
        .attributes
        .insert("ApproximateReceiveCount".into(), "1".into());

    let delays = Arc::new(Mutex::new(Vec::new()));
    let handler = deliver::handler::Deliver::new(
        Arc::new(switchboard_core::integration::Integrations::load_dir(&stack.dir).unwrap()),
        deliver::handler::Ports {
            idempotency: DynamoIdempotencyStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &stack.dev.resources.table,
            ),
            secrets: switchboard_core::secrets::SecretsCache::new(
                SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk)),
                Duration::from_secs(300),
            ),
            queue: Recording {
                inner: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), &url),
                delays: Arc::clone(&delays),
            },
            dead_letters: SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                &stack.dev.resources.deliveries_dlq_url,
            ),
            metrics: switchboard_shared::metrics::Metrics::Off,
            network: switchboard_core::network::NetworkPolicy::LOCAL,
            archive: switchboard_shared::memory::MemoryArchive::default(),
        },
        50,
    )
    .unwrap();
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = vec![message];
    let out = handler
        .handle(lambda_runtime::LambdaEvent::new(
            event,
            lambda_runtime::Context::default(),
        ))
        .await;
    assert_eq!(
        out.batch_item_failures.len(),
        1,
        "handed back for the retry"
    );
    let delays = delays.lock().unwrap().clone();
    let twelve_hours = Duration::from_secs(12 * 3600);
    assert_eq!(delays.len(), 1, "{delays:?}");
    let (delay, accepted) = delays[0];
    assert!(accepted, "SQS refused the delay {delay:?}");
    assert!(delay < twelve_hours, "{delay:?}");
    assert!(
        delay >= twelve_hours - Duration::from_secs(6 * 60),
        "{delay:?}"
    );

    // What the cut avoids: SQS (moto as AWS) refuses a visibility reaching past 12 h since the
    // receive, and the message would come back after the queue's own timeout instead.
    let refused = stack
        .sqs
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(m.receipt_handle().unwrap())
        .visibility_timeout(43_200)
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}")
            .contains("Total VisibilityTimeout for the message is beyond the limit"),
        "{refused:?}"
    );
    stack.dev.shutdown().await;
}

/// A destination that answers an error with an endless body: deliver keeps its first 1 KB and
/// stops reading, so the attempt is a 503 settled at once, not a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_answer_is_read_for_its_first_kilobyte_only() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let head = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 4096, "z".repeat(4096));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    let routes = format!(
        "  - id: echo\n    map: $\n    deliver:\n      url: http://{addr}/hook\n      timeout: 5s\n      retry: [1s]\n"
    );
    let stack = signed_orders(&routes).await;
    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");
    let letter = &dead_letters(&stack, 1).await[0];
    assert_eq!(letter["reason"], "retries_exhausted", "{letter:?}");
    assert_eq!(letter["last_status"], "503", "{letter:?}");
    let history: Vec<serde_json::Value> = serde_json::from_str(&letter["history"]).unwrap();
    for attempt in &history {
        assert_eq!(attempt["status"], 503, "{attempt}");
        assert_eq!(
            attempt["response"].as_str().map(str::len),
            Some(1024),
            "{attempt}"
        );
        assert!(attempt["latency_ms"].as_u64().unwrap() < 2000, "{attempt}");
    }
    stack.dev.shutdown().await;
}

mod chaos;
