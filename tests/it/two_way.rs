//! The retailer's two-way workflow through `switchboard dev`, with the shipped `shopify-orders`
//! and `3pl-shipments` definitions and scripted receivers for Shopify's GraphQL endpoint, the
//! 3PL and Slack: a paid order goes out to the 3PL; its shipment comes back and becomes a
//! `fulfillmentCreate` on the order's fulfillment order with the shipped lines and tracking;
//! a `userErrors` answer and Slack's `ok: false` are dead-lettered with what they said, not
//! called delivered; an address exception waits in review, is edited and delivered once.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard_cli::ops::review::{self, Decision};
use switchboard_cli::ops::{QueueKind, Stack, dlq};
use switchboard_core::review::ReviewStatus;

use crate::transform::{fixture, shipped};
use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, TestStack};

const WAIT: Duration = Duration::from_secs(60);
const GRAPHQL: &str = "/admin/api/2025-01/graphql.json";

/// The order Shopify holds for what the 3PL was sent: one open fulfillment order with a line
/// per SKU (ids 9001, 9002, ...), nothing fulfilled yet.
fn shopify_order(sent: &Value) -> Value {
    let lines: Vec<Value> = lines(sent)
        .into_iter()
        .map(|(id, item)| json!({"id": id, "remainingQuantity": item["quantity"], "sku": item["sku"]}))
        .collect();
    json!({"data": {"order": {
        "id": format!("gid://shopify/Order/{}", sent["external_id"].as_str().unwrap()),
        "name": sent["order_reference"],
        "fulfillmentOrders": {"nodes": [{
            "id": "gid://shopify/FulfillmentOrder/6101",
            "status": "OPEN",
            "lineItems": {"nodes": lines},
        }]},
        "fulfillments": [],
    }}})
}

/// Each item the 3PL was sent, with the id of its fulfillment order line (9001, 9002, ...).
fn lines(sent: &Value) -> Vec<(String, Value)> {
    sent["items"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, item)| {
            (
                format!("gid://shopify/FulfillmentOrderLineItem/{}", 9001 + i),
                item.clone(),
            )
        })
        .collect()
}

/// A 3PL shipment webhook for what it was sent.
fn shipment(sent: &Value, event_id: &str, topic: &str, tracking: &str, extra: Value) -> Vec<u8> {
    let mut s = json!({
        "id": "shp_77001",
        "order_reference": sent["order_reference"],
        "external_id": sent["external_id"],
        "status": topic.trim_start_matches("shipment."),
        "carrier": "UPS",
        "tracking_number": tracking,
        "tracking_url": format!("https://www.ups.com/track?tracknum={tracking}"),
        "items": sent["items"].as_array().unwrap().iter()
            .map(|i| json!({"sku": i["sku"], "quantity": i["quantity"]}))
            .collect::<Vec<_>>(),
        "ship_to": sent["ship_to"],
    });
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::to_vec(&json!({
        "event_id": event_id,
        "topic": topic,
        "occurred_at": "2026-12-01T09:00:00Z",
        "shipment": s,
    }))
    .unwrap()
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_out_its_shipment_comes_back_as_a_fulfillment_and_exceptions_wait_for_a_person()
 {
    let (shop, tpl, slack) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let mut files = shipped(
        "shopify-orders",
        &[
            ("https://example-shop.myshopify.com", &shop.base),
            (
                "https://api.3pl.example.com/v1/fulfillments",
                &format!("{}/v1/fulfillments", tpl.base),
            ),
        ],
    );
    files.extend(shipped(
        "3pl-shipments",
        &[
            ("https://example-shop.myshopify.com", &shop.base),
            ("https://api.3pl.example.com", &tpl.base),
            ("https://slack.com", &slack.base),
        ],
    ));
    let test = TestStack::with_files(
        &files,
        &[
            ("shopify-signing", "shpss_shopify-webhook-secret"),
            ("shopify-admin-token", "shpat_admin-token"),
            ("3pl-api-token", "3pl-token"),
            ("3pl-signing", "3pl-webhook-secret"),
            ("slack-bot-token", "xoxb-slack"),
        ],
        FAST,
    )
    .await;

    // Out: a paid order, its customer from Shopify's GraphQL API, to the 3PL.
    shop.on_body(
        GRAPHQL,
        "query Customer",
        vec![(
            StatusCode::OK,
            Some(fixture("shopify-orders/paid-order-us/enriched.json")["customer"].clone()),
        )],
    );
    let order = fixture("shopify-orders/paid-order-us/input.json");
    let (status, answer) = test
        .post_signed("shopify-orders", &serde_json::to_vec(&order).unwrap())
        .await;
    assert_eq!(status, 202, "{answer}");
    let sent = tpl.wait_for(1, WAIT).await[0].body.clone();
    assert_eq!(sent["external_id"], order["id"].to_string());

    // Back: Shopify knows the order; Slack posts, except where it does not.
    shop.on_body(
        GRAPHQL,
        "query OrderFulfillment",
        vec![(StatusCode::OK, Some(shopify_order(&sent)))],
    );
    shop.on_body(
        GRAPHQL,
        "1ZUSERERRORS",
        vec![(
            StatusCode::OK,
            Some(json!({"data": {"fulfillmentCreate": {"fulfillment": null,
                "userErrors": [{"field": ["fulfillment"], "message": "Fulfillment order 6101 has an unfulfillable status= closed."}]}}})),
        )],
    );
    shop.on_body(
        GRAPHQL,
        "fulfillmentCreate",
        vec![(
            StatusCode::OK,
            Some(json!({"data": {"fulfillmentCreate": {
                "fulfillment": {"id": "gid://shopify/Fulfillment/8001", "status": "SUCCESS"},
                "userErrors": []}}})),
        )],
    );
    slack.on_body(
        "/api/chat.postMessage",
        "1ZUSERERRORS",
        vec![(
            StatusCode::OK,
            Some(json!({"ok": false, "error": "channel_not_found"})),
        )],
    );
    slack.on(
        "/api/chat.postMessage",
        vec![(StatusCode::OK, Some(json!({"ok": true, "ts": "1.2"})))],
    );

    let shipped_body = shipment(
        &sent,
        "whk_2001",
        "shipment.shipped",
        "1Z999AA10000000001",
        json!({}),
    );
    let (status, answer) = test.post_signed("3pl-shipments", &shipped_body).await;
    assert_eq!(status, 202, "{answer}");
    // The same webhook posted again is the same event: one fulfillment.
    let (status, _) = test.post_signed("3pl-shipments", &shipped_body).await;
    assert_eq!(status, 200);
    let created = |shop: &Receiver| {
        shop.received()
            .into_iter()
            .filter(|r| {
                r.body["query"]
                    .as_str()
                    .is_some_and(|q| q.starts_with("mutation fulfillmentCreate"))
            })
            .collect::<Vec<_>>()
    };
    until("the fulfillment", || async { !created(&shop).is_empty() }).await;
    let fulfillment = &created(&shop)[0].body["variables"]["fulfillment"];
    let lines: Vec<Value> = lines(&sent)
        .into_iter()
        .map(|(id, item)| json!({"id": id, "quantity": item["quantity"]}))
        .collect();
    assert_eq!(
        fulfillment["lineItemsByFulfillmentOrder"],
        json!([{"fulfillmentOrderId": "gid://shopify/FulfillmentOrder/6101", "fulfillmentOrderLineItems": lines}])
    );
    assert_eq!(
        fulfillment["trackingInfo"],
        json!({"company": "UPS", "number": "1Z999AA10000000001",
               "url": "https://www.ups.com/track?tracknum=1Z999AA10000000001"})
    );
    assert_eq!(
        created(&shop)[0].headers["x-shopify-access-token"],
        "shpat_admin-token"
    );

    // A userErrors answer is not delivered; neither is Slack's ok: false.
    let refused = shipment(
        &sent,
        "whk_2002",
        "shipment.partially_shipped",
        "1ZUSERERRORS",
        json!({}),
    );
    assert_eq!(test.post_signed("3pl-shipments", &refused).await.0, 202);
    let dlq_url = test.dev.resources.deliveries_dlq_url.clone();
    until("two dead letters", || async {
        test.depth(&dlq_url).await == 2
    })
    .await;
    let stack = Stack::new(&test.dev.sdk, &test.prefix);
    let mut letters = dlq::list(&stack, QueueKind::Deliveries, &dlq::Filter::default())
        .await
        .unwrap();
    letters.sort_by(|a, b| a.route.cmp(&b.route));
    let said: Vec<(Option<String>, String, bool)> = letters
        .iter()
        .map(|l| {
            let history = l.history.clone().unwrap_or_default();
            (
                l.route.clone(),
                l.reason.clone(),
                history.contains("unfulfillable") || history.contains("channel_not_found"),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            (
                Some("fulfillment-create".into()),
                "rejected_by_destination".into(),
                true
            ),
            (
                Some("support-slack".into()),
                "rejected_by_destination".into(),
                true
            ),
        ]
    );

    // An address exception waits in review (and support hears of it), is edited, delivered once.
    let exception = shipment(
        &sent,
        "whk_2003",
        "shipment.exception",
        "1Z999AA10000000001",
        json!({"exception": {"code": "address_invalid",
            "message": "The carrier rejected the address: no such room"}}),
    );
    assert_eq!(test.post_signed("3pl-shipments", &exception).await.0, 202);
    let mut waiting = Vec::new();
    until("the review item", || {
        let stack = stack.clone();
        async move {
            !review::list(&stack, &[ReviewStatus::Pending])
                .await
                .unwrap()
                .is_empty()
        }
    })
    .await;
    waiting.extend(
        review::list(&stack, &[ReviewStatus::Pending])
            .await
            .unwrap(),
    );
    assert_eq!(waiting.len(), 1);
    let item = &waiting[0];
    assert_eq!(item.request.route, "exception-resolution");
    assert!(
        item.why.message.contains("address_invalid"),
        "{}",
        item.why.message
    );
    assert!(
        item.why.message.contains("no such room"),
        "{}",
        item.why.message
    );
    assert_eq!(item.deciders, ["support-lead", "ops"]);
    let resolutions = |tpl: &Receiver| {
        tpl.received()
            .into_iter()
            .filter(|r| r.path.ends_with("/resolution"))
            .collect::<Vec<_>>()
    };
    assert!(
        resolutions(&tpl).is_empty(),
        "nothing goes before a person decides"
    );
    until("support hears of it", || async {
        slack.received().iter().any(|r| {
            r.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("needs a person"))
        })
    })
    .await;

    let mut corrected = item.request.body.clone();
    corrected["address"]["address_lines"] = json!(["1 Oxford Street", "Room 201B"]);
    let decided = review::decide(
        &test.dev.sdk,
        &stack,
        &item.id,
        Some("support-lead"),
        Decision::Edit {
            body: corrected.clone(),
            from: "corrected.json".into(),
            integrations: test.dir.clone(),
        },
    )
    .await
    .unwrap();
    assert!(matches!(decided.queued, Some(Ok(()))));
    until("the resolution", || async { !resolutions(&tpl).is_empty() }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent_resolutions = resolutions(&tpl);
    assert_eq!(sent_resolutions.len(), 1, "delivered once");
    assert_eq!(
        sent_resolutions[0].path,
        "/v1/shipments/shp_77001/resolution"
    );
    assert_eq!(sent_resolutions[0].body, corrected);
    assert_eq!(
        sent_resolutions[0].headers["authorization"],
        "Bearer 3pl-token"
    );
    assert_eq!(
        created(&shop).len(),
        2,
        "the shipment once, the refused one once"
    );
    test.dev.shutdown().await;
}
