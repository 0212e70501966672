//! One signed webhook travels ingest -> transform -> deliver, and the failure paths around it.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use switchboard_shared::envelope::DeliveryMessage;

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

    let dead = stack
        .receive_one(
            &stack.dev.resources.deliveries_dlq_url,
            Duration::from_secs(60),
        )
        .await
        .expect("the delivery reaches the deliveries DLQ");
    let DeliveryMessage::DeliveryV1(task) = DeliveryMessage::decode(&dead).unwrap();
    assert_eq!(task.event_id.as_str(), event_id);
    assert_eq!(task.route, "echo");
    assert_eq!(task.body, json!({"name": "Ada", "total": 130}));
    // One attempt per receive, up to the queue's maxReceiveCount.
    assert_eq!(receiver.received().len(), FAST.max_receive_count as usize);
    assert_eq!(stack.depth(&stack.dev.resources.deliveries_url).await, 0);
    stack.dev.shutdown().await;
}
