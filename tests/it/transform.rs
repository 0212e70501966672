//! Transform end to end, with the integrations this pack ships: enrichment from a stand-in API,
//! `when`, fan-out, `map_request`, contracts, and the events DLQ with reasons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard_core::envelope::EventMessage;

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, SIGNING_SECRET, TestStack};

const WAIT: Duration = Duration::from_secs(30);

fn integrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations")
}

/// A shipped definition with its mappings and schemas, hosts pointed at local receivers and
/// secret ids (`switchboard/<function's prefix>/hubspot/x`) made the test's own
/// (`SECRET/hubspot-x`).
pub(crate) fn shipped(id: &str, hosts: &[(&str, &str)]) -> Vec<(String, String)> {
    let dir = integrations_dir();
    let secret_ids = |text: String| {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("switchboard/") {
            out.push_str(&rest[..i]);
            let after = &rest[i + "switchboard/".len()..];
            let after = ["inbound/", "enrich/", "outbound/"]
                .iter()
                .find_map(|p| after.strip_prefix(p))
                .unwrap_or(after);
            let slash = after.find('/').unwrap();
            out.push_str("SECRET/");
            out.push_str(&after[..slash]);
            out.push('-');
            rest = &after[slash + 1..];
        }
        out.push_str(rest);
        out
    };
    let mut definition =
        secret_ids(std::fs::read_to_string(dir.join(format!("{id}.yaml"))).unwrap());
    for (from, to) in hosts {
        assert!(definition.contains(from), "{from} in {id}.yaml");
        definition = definition.replace(from, to);
    }
    let mut files = vec![(format!("{id}.yaml"), definition)];
    for sub in ["mappings", "schemas", "queries", "prompts"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((
                format!("{sub}/{name}"),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    files
}

/// A file of a shipped fixture, as JSON.
pub(crate) fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(integrations_dir().join("fixtures").join(path)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every message in the events DLQ within `timeout` once `n` have arrived: (body, attributes).
async fn dead_letters(
    stack: &TestStack,
    n: usize,
    timeout: Duration,
) -> Vec<(String, BTreeMap<String, String>)> {
    let url = &stack.dev.resources.events_dlq_url;
    let mut got = Vec::new();
    let started = std::time::Instant::now();
    while got.len() < n {
        assert!(
            started.elapsed() < timeout,
            "expected {n} dead letters within {timeout:?}, got {}: {got:?}",
            got.len()
        );
        if let Some(m) = stack
            .receive_with_attributes(url, Duration::from_secs(2))
            .await
        {
            got.push(m);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_change_fans_out_to_salesforce_and_slack_with_the_fetched_contact() {
    let api = Receiver::start().await;
    let salesforce = Receiver::start().await;
    let slack = Receiver::start().await;
    let files = shipped(
        "hubspot-contacts",
        &[
            ("https://api.hubapi.com", &api.base),
            ("https://example.my.salesforce.com", &salesforce.base),
            ("https://slack.com/api/chat.postMessage", &slack.url),
        ],
    );
    let stack = TestStack::with_files(
        &files,
        &[
            ("hubspot-client-secret", "hubspot-app-client-secret"),
            ("hubspot-private-app-token", "pat-na1-test-token"),
            ("salesforce-access-token", "00D-salesforce-token"),
            ("slack-bot-token", "xoxb-slack-token"),
        ],
        FAST,
    )
    .await;
    let case = "hubspot-contacts/became-sales-qualified";
    let contact = fixture(&format!("{case}/enriched.json"))["contact"].clone();
    let mut other = contact.clone();
    other["id"] = json!("5102");
    other["properties"]["lifecyclestage"] = json!("lead");
    api.on("/contacts/5101", vec![(StatusCode::OK, Some(contact))]);
    api.on("/contacts/5102", vec![(StatusCode::OK, Some(other))]);

    // One HubSpot request, two changes: 5101 became sales-qualified, 5102 changed its title.
    let qualified = fixture(&format!("{case}/input.json"));
    let mut title = fixture("hubspot-contacts/other-property-changed/input.json");
    title["objectId"] = json!(5102);
    title["eventId"] = json!(1_790_000_002);
    let body = serde_json::to_vec(&json!([qualified, title])).unwrap();
    let (status, answer) = stack.post_signed("hubspot-contacts", &body).await;
    assert_eq!(status, 202, "{answer}");

    let leads = salesforce.wait_for(2, WAIT).await;
    let alerts = slack.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        slack.received().len(),
        1,
        "only the qualified contact alerts"
    );
    assert_eq!(salesforce.received().len(), 2);

    // Salesforce: an upsert per contact (PATCH on the external id), the fixture's body.
    let expected = fixture(&format!("{case}/expected/to-salesforce.json"));
    let lead = leads
        .iter()
        .find(|r| r.path.ends_with("/HubSpot_Contact_Id__c/5101"))
        .expect("a lead for 5101");
    assert_eq!(lead.method, "PATCH");
    assert_eq!(lead.path, expected["path"]);
    assert_eq!(lead.body, expected["body"]);
    assert_eq!(lead.headers["authorization"], "Bearer 00D-salesforce-token");
    assert!(
        leads
            .iter()
            .any(|r| r.path.ends_with("/HubSpot_Contact_Id__c/5102"))
    );

    // Slack: the fixture's message, with the bot token.
    assert_eq!(
        alerts[0].body,
        fixture(&format!("{case}/expected/to-slack.json"))
    );
    assert_eq!(
        alerts[0].headers["authorization"],
        "Bearer xoxb-slack-token"
    );

    // The stand-in API was asked for each contact with the private app token.
    let fetches = api.received();
    assert_eq!(fetches.len(), 2, "{fetches:?}");
    for fetch in &fetches {
        assert_eq!(fetch.method, "GET");
        assert!(fetch.path.contains("?properties=email,"), "{}", fetch.path);
        assert_eq!(fetch.headers["authorization"], "Bearer pat-na1-test-token");
    }
    assert_eq!(stack.dev.metrics.count("skipped", "when_false"), 1);
    assert_eq!(stack.depth(&stack.dev.resources.events_dlq_url).await, 0);
}

async fn shopify_stack(api: &Receiver, tpl: &Receiver) -> TestStack {
    let files = shipped(
        "shopify-orders",
        &[
            ("https://example-shop.myshopify.com", &api.base),
            ("https://api.3pl.example.com/v1/fulfillments", &tpl.url),
        ],
    );
    TestStack::with_files(
        &files,
        &[
            ("shopify-signing", "shpss_shopify-webhook-secret"),
            ("shopify-admin-token", "shpat_admin-token"),
            ("3pl-api-token", "3pl-token"),
        ],
        FAST,
    )
    .await
}

fn order(case: &str, customer_id: u64) -> Vec<u8> {
    let mut order = fixture(&format!("shopify-orders/{case}/input.json"));
    order["customer"]["id"] = json!(customer_id);
    serde_json::to_vec(&order).unwrap()
}

/// Shopify's GraphQL answer for customer `id`.
fn customer(id: u64) -> Option<Value> {
    let mut c = fixture("shopify-orders/paid-order-us/enriched.json")["customer"].clone();
    c["data"]["customer"]["id"] = json!(format!("gid://shopify/Customer/{id}"));
    Some(c)
}

/// Answers the GraphQL endpoint's query for customer `id`.
fn on_customer(api: &Receiver, id: u64, answers: Vec<(StatusCode, Option<Value>)>) {
    api.on_body(
        "/graphql.json",
        &format!("\"gid://shopify/Customer/{id}\""),
        answers,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopify_order_is_enriched_and_sent_to_the_3pl_and_what_cannot_go_is_dead_lettered_at_once()
 {
    let api = Receiver::start().await;
    let tpl = Receiver::start().await;
    let stack = shopify_stack(&api, &tpl).await;
    on_customer(
        &api,
        6_812_345_678_901,
        vec![(StatusCode::OK, customer(6_812_345_678_901))],
    );
    // A customer that is gone: Shopify's GraphQL answers 200 with `customer: null`.
    on_customer(
        &api,
        404,
        vec![(StatusCode::OK, Some(json!({"data": {"customer": null}})))],
    );

    for body in [
        order("paid-order-us", 6_812_345_678_901),
        order("bad-address", 6_812_345_678_901),
        order("paid-order-us", 404),
    ] {
        let (status, answer) = stack.post_signed("shopify-orders", &body).await;
        assert_eq!(status, 202, "{answer}");
    }

    let sent = tpl.wait_for(1, WAIT).await;
    let expected = fixture("shopify-orders/paid-order-us/expected/to-3pl.json");
    assert_eq!(sent[0].path, expected["path"]);
    assert_eq!(sent[0].body, expected["body"]);
    assert_eq!(sent[0].headers["authorization"], "Bearer 3pl-token");

    let letters = dead_letters(&stack, 2, WAIT).await;
    let by_reason: BTreeMap<&str, &BTreeMap<String, String>> = letters
        .iter()
        .map(|(_, a)| (a["reason"].as_str(), a))
        .collect();
    let contract = by_reason["contract_violation"];
    assert_eq!(contract["route"], "to-3pl");
    assert_eq!(contract["integration"], "shopify-orders");
    assert_eq!(
        contract["attempts"], "1",
        "dead-lettered on the first receive"
    );
    for path in ["/ship_to/postal_code", "/ship_to/country"] {
        assert!(contract["message"].contains(path), "{contract:?}");
    }
    let missing = by_reason["enrich_not_found"];
    assert_eq!(missing["attempts"], "1");
    assert!(missing["message"].contains("customer"), "{missing:?}");
    for (body, attributes) in &letters {
        let EventMessage::EventV1(event) = EventMessage::decode(body).unwrap();
        assert_eq!(event.event_id.to_string(), attributes["event_id"]);
        assert!(!format!("{attributes:?}").contains("shpat_admin-token"));
    }

    // The API was asked with the admin token in Shopify's header; nothing else went to the 3PL.
    for fetch in api.received() {
        assert_eq!(fetch.headers["x-shopify-access-token"], "shpat_admin-token");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(tpl.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_answering_503_is_retried_through_sqs_then_given_up_with_the_reason() {
    let api = Receiver::start().await;
    let tpl = Receiver::start().await;
    let stack = shopify_stack(&api, &tpl).await;
    // Customer 1: one 503, then the record. Customer 2: 503 for good.
    on_customer(
        &api,
        1,
        vec![
            (StatusCode::SERVICE_UNAVAILABLE, None),
            (StatusCode::OK, customer(1)),
        ],
    );
    on_customer(&api, 2, vec![(StatusCode::SERVICE_UNAVAILABLE, None)]);
    for body in [order("paid-order-us", 1), order("paid-order-eu-express", 2)] {
        let (status, answer) = stack.post_signed("shopify-orders", &body).await;
        assert_eq!(status, 202, "{answer}");
    }

    let sent = tpl.wait_for(1, WAIT).await;
    assert_eq!(sent[0].body["customer"]["id"], "1");
    let letters = dead_letters(&stack, 1, WAIT).await;
    let attributes = &letters[0].1;
    assert_eq!(attributes["reason"], "enrich_unavailable");
    assert_eq!(attributes["attempts"], FAST.max_receive_count.to_string());
    assert!(attributes["message"].contains("503"), "{attributes:?}");
    let fetches = api.received();
    assert_eq!(
        fetches
            .iter()
            .filter(|f| f.body["variables"]["id"] == "gid://shopify/Customer/1")
            .count(),
        2
    );
    assert_eq!(
        fetches
            .iter()
            .filter(|f| f.body["variables"]["id"] == "gid://shopify/Customer/2")
            .count(),
        FAST.max_receive_count as usize
    );
    assert_eq!(tpl.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_route_is_dead_lettered_alone_and_its_redrive_reruns_only_it() {
    let receiver = Receiver::start().await;
    let definition = format!(
        r#"
source:
  verify: standard-webhooks
  secret: SECRET/signing
routes:
  - id: good
    map: '{{ "name": name }}'
    deliver: {{ url: "{url}" }}
  - id: broken
    map: '{{ "n": $number(name) }}'
    deliver: {{ url: "{url}" }}
"#,
        url = receiver.url
    );
    let stack = TestStack::with(
        &[("orders", definition)],
        &[("signing", SIGNING_SECRET)],
        FAST,
    )
    .await;
    let (status, _) = stack.post_signed("orders", br#"{"name": "Ada"}"#).await;
    assert_eq!(status, 202);

    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].body, json!({"name": "Ada"}));
    let letters = dead_letters(&stack, 1, WAIT).await;
    let (body, attributes) = &letters[0];
    assert_eq!(attributes["reason"], "mapping_error");
    assert_eq!(attributes["route"], "broken");
    assert!(attributes["message"].contains("D3030"), "{attributes:?}");
    let EventMessage::EventV1(event) = EventMessage::decode(body).unwrap();
    assert_eq!(event.routes, Some(vec!["broken".to_string()]));

    // Redrive: the dead letter goes back on the events queue; only `broken` runs again.
    stack
        .sqs
        .send_message()
        .queue_url(&stack.dev.resources.events_url)
        .message_body(body)
        .send()
        .await
        .unwrap();
    let again = dead_letters(&stack, 1, WAIT).await;
    assert_eq!(again[0].1["route"], "broken");
    assert_eq!(
        receiver.received().len(),
        1,
        "`good` was not delivered twice"
    );
    // Not merely suppressed by deliver's record: transform did not queue `good` again.
    assert_eq!(
        stack.queued("good"),
        1,
        "`good` was queued once, before the redrive"
    );
    assert_eq!(stack.dev.metrics.count("skipped", "already_delivered"), 0);
}
