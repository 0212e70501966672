//! One signed webhook travels ingest -> transform -> deliver, and the failure paths around it.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use switchboard_cli::resources::QueueSettings;
use switchboard_core::envelope::DeliveryMessage;

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, TOKEN, TestStack};

const ORDER: &[u8] = br#"{"name": "Ada", "items": [{"price": 120.5}, {"price": 9.5}]}"#;
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_arrives_mapped_with_the_bearer_token() {
    let receiver = Receiver::start().await;
    let stack = TestStack::start(&receiver.url, FAST).await;

    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");
    let event_id = body["event_id"].as_str().unwrap().to_string();
    assert!(event_id.starts_with("evt_"), "{event_id}");

    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].body, json!({"name": "Ada", "total": 130}));
    assert_eq!(got[0].headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(
        got[0].headers["idempotency-key"],
        format!("{event_id}:echo")
    );
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_twice_is_a_duplicate_and_delivered_once() {
    let receiver = Receiver::start().await;
    let stack = TestStack::start(&receiver.url, FAST).await;
    let headers = stack.sign("orders", ORDER, "application/json");

    let (first, accepted) = stack.post("orders", &headers, ORDER).await;
    assert_eq!(first, 202, "{accepted}");
    let (second, duplicate) = stack.post("orders", &headers, ORDER).await;
    assert_eq!(second, 200, "{duplicate}");
    assert_eq!(duplicate["duplicate"], json!(true));
    assert_eq!(duplicate["event_id"], accepted["event_id"]);

    receiver.wait_for(1, WAIT).await;
    // Long enough for a second delivery to have arrived, had one been queued.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(stack.depth(&stack.dev.resources.events_url).await, 0);
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_reason_and_nothing_is_queued() {
    let receiver = Receiver::start().await;
    let stack = TestStack::start(&receiver.url, FAST).await;
    // Signed for one body, sent with another.
    let headers = stack.sign("orders", ORDER, "application/json");
    let (status, body) = stack
        .post("orders", &headers, br#"{"name": "Mallory"}"#)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_signature")),
        "{body}"
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let unsigned: Vec<_> = headers
        .iter()
        .filter(|(n, _)| *n != "webhook-signature")
        .cloned()
        .collect();
    let (status, body) = stack.post("orders", &unsigned, ORDER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_signature")),
        "{body}"
    );

    let not_json = b"name=Ada";
    let (status, body) = stack.post_signed("orders", not_json).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_json")),
        "{body}"
    );

    let response = reqwest::Client::new()
        .post(stack.dev.webhook_url("no-such-integration"))
        .body(ORDER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unknown_integration");

    assert_eq!(stack.depth(&stack.dev.resources.events_url).await, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.received().is_empty());
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_always_fails_leaves_the_delivery_in_the_dlq() {
    let receiver = Receiver::start().await;
    receiver.always(StatusCode::INTERNAL_SERVER_ERROR);
    let stack = TestStack::start(&receiver.url, FAST).await;

    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");
    let event_id = body["event_id"].as_str().unwrap();

    let (dead, attributes) = stack
        .receive_with_attributes(
            &stack.dev.resources.deliveries_dlq_url,
            Duration::from_secs(60),
        )
        .await
        .expect("the delivery reaches the deliveries DLQ");
    let Ok(DeliveryMessage::DeliveryV1(task)) = DeliveryMessage::decode(&dead) else {
        panic!("not a task: {dead}");
    };
    assert_eq!(task.event_id.as_str(), event_id);
    assert_eq!(task.route, "echo");
    assert_eq!(task.body, json!({"name": "Ada", "total": 130}));
    // The route's schedule has one retry: two attempts, then the DLQ with the reason.
    assert_eq!(attributes["reason"], "retries_exhausted");
    assert_eq!(attributes["attempts"], "2");
    assert!(attributes["message"].contains("500"), "{attributes:?}");
    assert_eq!(receiver.received().len(), 2);
    // Dead-lettered, then deleted from the deliveries queue.
    let started = std::time::Instant::now();
    while stack.depth(&stack.dev.resources.deliveries_url).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still on the queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_a_400_is_dead_lettered_after_one_attempt() {
    let flaky = Receiver::start().await;
    flaky.on(
        "/hook",
        vec![
            (StatusCode::TOO_MANY_REQUESTS, None),
            (StatusCode::OK, None),
        ],
    );
    flaky.retry_after("3");
    let refusing = Receiver::start().await;
    refusing.always(StatusCode::BAD_REQUEST);
    let definition = format!(
        r#"
source:
  verify: standard-webhooks
  secret: SECRET/signing
routes:
  - id: flaky
    map: '{{ "name": name }}'
    deliver: {{ url: "{}", retry: [1s, 1s] }}
  - id: refusing
    map: '{{ "name": name }}'
    deliver: {{ url: "{}", retry: [1s, 1s] }}
"#,
        flaky.url, refusing.url
    );
    let stack = TestStack::with(
        &[("orders", definition)],
        &[("signing", crate::utils::stack::SIGNING_SECRET)],
        QueueSettings {
            visibility_timeout_secs: 1,
            max_receive_count: 5,
            deliveries_max_receive_count: 20,
        },
    )
    .await;
    let (status, body) = stack.post_signed("orders", ORDER).await;
    assert_eq!(status, 202, "{body}");

    // 429 with Retry-After: 3 -> the next attempt waits 3 s, not the schedule's 1 s.
    let got = flaky.wait_for(2, Duration::from_secs(30)).await;
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(2_500),
        "retried after {waited:?}"
    );

    // 400: permanent, one attempt, the DLQ with the reason.
    let (_, attributes) = stack
        .receive_with_attributes(
            &stack.dev.resources.deliveries_dlq_url,
            Duration::from_secs(30),
        )
        .await
        .expect("the 400 reaches the deliveries DLQ");
    assert_eq!(attributes["reason"], "permanent_failure");
    assert_eq!(attributes["route"], "refusing");
    assert_eq!(attributes["attempts"], "1");
    assert!(attributes["message"].contains("400"), "{attributes:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(refusing.received().len(), 1);
    assert_eq!(flaky.received().len(), 2);
    assert_eq!(
        stack.depth(&stack.dev.resources.deliveries_dlq_url).await,
        1,
        "only the 400 is dead-lettered"
    );
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_received_again_after_its_success_is_not_sent_again() {
    let receiver = Receiver::start().await;
    let stack = TestStack::start(&receiver.url, FAST).await;
    // The same task twice, as SQS may hand a message over again after it was processed.
    let task = serde_json::to_string(&DeliveryMessage::DeliveryV1(
        switchboard_core::envelope::DeliveryV1 {
            event_id: switchboard_core::ids::EventId::new(),
            integration: "orders".into(),
            route: "echo".into(),
            body: json!({"name": "Ada", "total": 130}),
            method: None,
            path: None,
            headers: Default::default(),
            received_at: None,
            review: None,
            reviewed: None,
            archived: None,
            order: None,
        },
    ))
    .unwrap();
    for _ in 0..2 {
        stack
            .sqs
            .send_message()
            .queue_url(&stack.dev.resources.deliveries_url)
            .message_body(&task)
            .send()
            .await
            .unwrap();
        receiver.wait_for(1, Duration::from_secs(20)).await;
        let started = std::time::Instant::now();
        while stack.depth(&stack.dev.resources.deliveries_url).await > 0 {
            assert!(started.elapsed() < Duration::from_secs(20), "not processed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received().len(), 1, "sent once");
    assert_eq!(
        stack.depth(&stack.dev.resources.deliveries_dlq_url).await,
        0
    );
    stack.dev.shutdown().await;
}
