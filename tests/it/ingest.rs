//! Ingest end to end through the local stack: every signature scheme, every bad-input class,
//! split, dedupe, claim check, both API Gateway payloads, and an AWS failure mid-request.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::verify::Scheme;

use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, TestStack};

const WAIT: Duration = Duration::from_secs(30);

/// One integration per scheme, each mapping to `{ "via": <integration>, "body": <event> }`.
fn definitions(destination: &str) -> Vec<(&'static str, String)> {
    let route = format!(
        r#"
routes:
  - id: out
    map: '{{ "via": $event.integration, "body": $ }}'
    deliver:
      url: {destination}
"#
    );
    let def = |source: &str| format!("source:\n{source}{route}");
    vec![
        (
            "std",
            def("  verify: standard-webhooks\n  secret: SECRET/std\n"),
        ),
        ("stripe", def("  verify: stripe\n  secret: SECRET/stripe\n")),
        ("github", def("  verify: github\n  secret: SECRET/github\n")),
        (
            "shopify",
            def("  verify: shopify\n  secret: SECRET/shopify\n"),
        ),
        ("slack", def("  verify: slack\n  secret: SECRET/slack\n")),
        (
            "hubspot",
            def("  verify: hubspot-v3\n  secret: SECRET/hubspot\n  split: $\n"),
        ),
        (
            "generic",
            def(
                "  verify: hmac\n  secret: SECRET/generic\n  max_body_bytes: 1024\n  hmac:\n    header: X-Signature\n    algorithm: sha512\n    encoding: base64\n    prefix: 'sha512='\n    timestamp_header: X-Timestamp\n",
            ),
        ),
        (
            "apikey",
            def("  verify: api-key\n  header: X-Api-Key\n  secret: SECRET/apikey\n"),
        ),
        ("open", def("  verify: none\n  allow_unsigned: true\n")),
    ]
}

const SECRETS: &[(&str, &str)] = &[
    ("std", "whsec_c3RkLXNpZ25pbmcta2V5LWZvci10ZXN0cw=="),
    ("stripe", "whsec_stripe_test_secret"),
    ("github", "github-webhook-secret"),
    ("shopify", "shpss_shopify_app_secret"),
    ("slack", "8f742231b10e8888abcd99yyyzzz85a5"),
    ("hubspot", "hubspot-app-client-secret"),
    ("generic", "generic-shared-key"),
    ("apikey", "k3y-for-the-api"),
];

/// A valid body for each integration: with the provider's own event id where it has one.
fn body_for(integration: &str, n: u32) -> Vec<u8> {
    match integration {
        "stripe" => json!({"id": format!("evt_stripe_{n}"), "type": "invoice.paid"}),
        "slack" => json!({"type": "event_callback", "event_id": format!("Ev{n}"), "event": {"type": "app_mention"}}),
        "hubspot" => json!([{"eventId": n, "subscriptionType": "contact.creation", "objectId": 7}]),
        other => json!({"source": other, "n": n}),
    }
    .to_string()
    .into_bytes()
}

async fn start(receiver: &Receiver) -> TestStack {
    TestStack::with(&definitions(&receiver.url), SECRETS, FAST).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_accepts_a_valid_post_and_it_is_delivered() {
    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let names: Vec<&str> = definitions("").iter().map(|(n, _)| *n).collect();
    for name in &names {
        let (status, body) = stack.post_signed(name, &body_for(name, 1)).await;
        assert_eq!(status, 202, "{name}: {body}");
    }
    let got = receiver.wait_for(names.len(), WAIT).await;
    let mut via: Vec<&str> = got
        .iter()
        .map(|r| r.body["via"].as_str().unwrap())
        .collect();
    via.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(via, expected);
    // HubSpot posts arrays; each element is its own event.
    let hubspot = got.iter().find(|r| r.body["via"] == "hubspot").unwrap();
    assert_eq!(hubspot.body["body"]["eventId"], 1);
    // Every accepted event is archived, once, under its integration and day, with what
    // transform decided for it.
    let archived = stack.archived_events().await;
    assert_eq!(archived.len(), names.len(), "{archived:?}");
    for name in &names {
        let (key, line) = archived
            .iter()
            .find(|(k, _)| k.starts_with(&format!("{name}/")))
            .unwrap_or_else(|| panic!("{name}: {archived:?}"));
        let day = line.received_at().format("%Y/%m/%d").to_string();
        assert!(key.starts_with(&format!("{name}/{day}/")), "{key}");
        let decision = line.decision().expect("transform's line");
        assert_eq!(decision.routes.len(), 1, "{decision:?}");
    }
    assert_eq!(stack.dev.metrics.count("accepted", "none"), names.len());
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_class_gets_its_answer_and_nothing_is_queued() {
    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let signed = [
        "std", "stripe", "github", "shopify", "slack", "hubspot", "generic", "apikey",
    ];
    let mut expected_rejections: Vec<(&str, &str)> = Vec::new();
    for name in signed {
        let body = body_for(name, 2);

        // Tampered body.
        let headers = stack.sign(name, &body, "application/json");
        // Still valid JSON, one more field (or element) than was signed.
        let mut changed: Value = serde_json::from_slice(&body).unwrap();
        match &mut changed {
            Value::Object(o) => {
                o.insert("amount".into(), json!(1_000_000));
            }
            Value::Array(a) => a.push(json!({"eventId": 999})),
            _ => unreachable!(),
        }
        let tampered = serde_json::to_vec(&changed).unwrap();
        let (status, reply) = stack.post(name, &headers, &tampered).await;
        if name == "apikey" {
            // An API key does not sign the body: a changed body is not detectable, and it
            // is still valid JSON here, so it is accepted. Nothing more to check for it.
            assert_eq!(status, 202, "{reply}");
        } else {
            assert_eq!(
                (status, reply["error"].as_str()),
                (401, Some("invalid_signature")),
                "{name}: {reply}"
            );
            expected_rejections.push(("rejected", "invalid_signature"));
        }

        // Wrong secret.
        let definition = switchboard_cli::send::integration(&stack.dir, name).unwrap();
        let wrong_key = if name == "std" {
            "whsec_d3Jvbmc="
        } else {
            "wrong"
        };
        let wrong = stack.sign_with(name, wrong_key, &body, 0);
        let (status, reply) = stack.post(name, &wrong, &body).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (401, Some("invalid_signature")),
            "{name}: {reply}"
        );
        expected_rejections.push(("rejected", "invalid_signature"));

        // Missing signature headers.
        let (status, reply) = stack
            .post(
                name,
                &[("content-type".into(), "application/json".into())],
                &body,
            )
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (401, Some("missing_signature")),
            "{name}: {reply}"
        );
        expected_rejections.push(("rejected", "missing_signature"));

        // A stale timestamp, where the scheme signs one.
        if matches!(
            definition.source.scheme,
            Scheme::StandardWebhooks
                | Scheme::Stripe
                | Scheme::Slack
                | Scheme::HubspotV3
                | Scheme::Hmac(_)
        ) {
            let stale = stack.sign_with(name, stack.secret(name).expose(), &body, 600);
            let (status, reply) = stack.post(name, &stale, &body).await;
            assert_eq!(
                (status, reply["error"].as_str()),
                (401, Some("timestamp_out_of_tolerance")),
                "{name}: {reply}"
            );
            expected_rejections.push(("rejected", "timestamp_out_of_tolerance"));
        }

        // Signed, but not JSON; signed, but not UTF-8.
        for (bad, code) in [
            (&b"{\"n\": "[..], "invalid_json"),
            (&b"{\"n\": \"\xff\"}"[..], "invalid_utf8"),
        ] {
            let headers = stack.sign(name, bad, "application/json");
            let (status, reply) = stack.post(name, &headers, bad).await;
            assert_eq!(
                (status, reply["error"].as_str()),
                (400, Some(code)),
                "{name}: {reply}"
            );
            expected_rejections.push(("rejected", code));
        }

        // A content type nobody sends webhooks in.
        let headers = stack.sign(name, &body, "text/xml");
        let (status, reply) = stack.post(name, &headers, &body).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (415, Some("unsupported_media_type")),
            "{name}: {reply}"
        );
        expected_rejections.push(("rejected", "unsupported_media_type"));
    }

    // Over the integration's limit (1 KiB for `generic`).
    let big = json!({"pad": "x".repeat(2000)}).to_string().into_bytes();
    let (status, reply) = stack.post_signed("generic", &big).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (413, Some("payload_too_large")),
        "{reply}"
    );
    expected_rejections.push(("rejected", "payload_too_large"));

    // No such integration.
    let (status, reply) = stack.post("nope", &[], b"{}").await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("unknown_integration")),
        "{reply}"
    );
    expected_rejections.push(("rejected", "unknown_integration"));

    // Only the api-key post with the changed (but valid JSON) body went through.
    receiver.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(receiver.received()[0].body["via"], "apikey");
    assert_eq!(stack.depth(&stack.dev.resources.events_url).await, 0);
    // Every rejection was counted, by reason.
    for (outcome, reason) in &expected_rejections {
        let expected = expected_rejections
            .iter()
            .filter(|r| **r == (*outcome, *reason))
            .count();
        assert_eq!(
            stack.dev.metrics.count(outcome, reason),
            expected,
            "{reason}"
        );
    }
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_batch_is_split_and_each_event_deduped_on_its_own() {
    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let batch = |ids: &[u32]| {
        Value::Array(
            ids.iter()
                .map(|i| json!({"eventId": i, "objectId": 100 + i}))
                .collect(),
        )
        .to_string()
        .into_bytes()
    };
    // More events than ingest accepts at once (10), as HubSpot's batches of up to 100 are.
    let first: Vec<u32> = (11..=35).collect();
    let (status, reply) = stack.post_signed("hubspot", &batch(&first)).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["events"].as_array().unwrap().len(), 25);
    // HubSpot retries with an overlapping batch: only the new event is accepted.
    let (status, reply) = stack.post_signed("hubspot", &batch(&[35, 36])).await;
    assert_eq!(status, 202, "{reply}");
    let duplicates: Vec<bool> = reply["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["duplicate"].as_bool().unwrap())
        .collect();
    assert_eq!(duplicates, [true, false]);
    let (status, reply) = stack.post_signed("hubspot", &batch(&[11, 12])).await;
    assert_eq!(status, 200, "all duplicates: {reply}");

    receiver.wait_for(26, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ids: Vec<i64> = receiver
        .received()
        .iter()
        .map(|r| r.body["body"]["eventId"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (11..=36).collect::<Vec<i64>>());
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_challenges_are_answered_and_form_bodies_accepted() {
    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let challenge = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let (status, reply) = stack.post_signed("slack", challenge).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    let form = b"command=%2Fdeploy&text=api+now&user_id=U2147483697";
    let headers = stack.sign("slack", form, "application/x-www-form-urlencoded");
    let (status, reply) = stack.post("slack", &headers, form).await;
    assert_eq!(status, 202, "{reply}");
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].body["body"],
        json!({"command": "/deploy", "text": "api now", "user_id": "U2147483697"})
    );
    // Only the form post was queued: the challenge is answered, not delivered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 1);
    stack.dev.shutdown().await;
}

/// An event larger than an SQS message (1 MiB) can only travel as a pointer to its archived
/// copy: a 1.3 MB body (the integration takes up to 2 MiB) is accepted, transformed from the
/// archive and delivered. Without ingest's claim check SQS refuses the message and the sender
/// gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_large_for_a_queue_message_travels_through_the_archive() {
    let receiver = Receiver::start().await;
    let definition = format!(
        "source:\n  verify: github\n  secret: SECRET/github\n  max_body_bytes: 2097152\nroutes:\n  - id: out\n    map: '{{\"n\": n, \"count\": $count(items), \"last\": items[-1].sku}}'\n    deliver:\n      url: {}\n",
        receiver.url
    );
    let stack = TestStack::with(&[("github", definition)], SECRETS, FAST).await;
    let items: Vec<Value> = (0..13000)
        .map(|i| json!({"sku": format!("SKU-{i:05}"), "note": "x".repeat(80)}))
        .collect();
    let body = json!({"n": 1, "items": items}).to_string().into_bytes();
    assert!(body.len() > 1_048_576 + 200 * 1024, "{}", body.len());
    let (status, reply) = stack.post_signed("github", &body).await;
    assert_eq!(status, 202, "{reply}");
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        got[0].body,
        json!({"n": 1, "count": 13000, "last": "SKU-12999"})
    );
    // Kept twice in the archive: alone, as received (ingest's claim check), and as a line of
    // transform's batch that points to it instead of repeating 1.3 MB.
    use switchboard_core::archive::ArchivedEvent;
    let archived = stack.archived_events().await;
    let (alone, whole) = archived
        .iter()
        .find_map(|(k, e)| match e {
            ArchivedEvent::ArchivedEventV1(e) => Some((k, e)),
            _ => None,
        })
        .expect("the event alone");
    assert_eq!(whole.raw_body.len(), body.len());
    let line = archived.iter().find_map(|(_, e)| match e {
        ArchivedEvent::ArchivedEventV2(l) => Some(l),
        _ => None,
    });
    let line = line.expect("its line");
    assert_eq!(line.body_ref.as_ref(), Some(alone));
    assert!(line.body.is_none());
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_v1_events_with_base64_bodies_and_any_header_case_are_verified() {
    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let body = body_for("github", 7);
    let headers = stack.sign("github", &body, "application/json");
    // REST API (payload v1): headers as the client wrote them, body base64-encoded.
    let mut v1_headers = serde_json::Map::new();
    for (name, value) in &headers {
        let shouted: String = name
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-");
        v1_headers.insert(shouted, Value::String(value.clone()));
    }
    v1_headers.insert(
        "Host".into(),
        json!("abc123.execute-api.us-east-1.amazonaws.com"),
    );
    use base64::Engine as _;
    let event = json!({
        "resource": "/webhooks/{integration}",
        "path": "/webhooks/github",
        "httpMethod": "POST",
        "headers": v1_headers,
        "multiValueHeaders": {},
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": {"integration": "github"},
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "resourceId": "r", "stage": "prod", "requestId": "req-1",
            "resourcePath": "/webhooks/{integration}", "httpMethod": "POST", "apiId": "abc123",
            "path": "/prod/webhooks/github", "identity": {"sourceIp": "192.0.2.1"}
        },
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "isBase64Encoded": true
    });
    let request = switchboard_cli::apigw::into_request(event).unwrap();
    let response = stack.dev.ingest.handle(request).await;
    assert_eq!(response.status().as_u16(), 202, "{:?}", response.body());
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].body["body"]["n"], 7);
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_failure_answers_503_and_the_retry_is_accepted() {
    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let body = body_for("github", 9);
    let headers = stack.sign("github", &body, "application/json");
    // The events queue disappears (the emulator's real SQS answers QueueDoesNotExist).
    stack
        .sqs
        .delete_queue()
        .queue_url(&stack.dev.resources.events_url)
        .send()
        .await
        .unwrap();
    let (status, reply) = stack.post("github", &headers, &body).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (503, Some("unavailable")),
        "{reply}"
    );
    assert_eq!(stack.dev.metrics.count("failed", "unavailable"), 1);

    // The queue is back; the provider retries the same delivery: accepted, not a duplicate.
    switchboard_cli::resources::create(&stack.dev.sdk, &stack.prefix, FAST)
        .await
        .unwrap();
    let (status, reply) = stack.post("github", &headers, &body).await;
    assert_eq!(status, 202, "{reply}");
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].body["body"]["n"], 9);
    stack.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_the_previous_and_the_current_secret_both_verify() {
    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let body = body_for("github", 21);
    // Signed with the secret as it was before the rotation.
    let old = stack.sign("github", &body, "application/json");
    // A new version becomes AWSCURRENT; the old one is now AWSPREVIOUS.
    let secret_id = format!("{}/github", stack.prefix);
    aws_sdk_secretsmanager::Client::new(&stack.dev.sdk)
        .put_secret_value()
        .secret_id(&secret_id)
        .secret_string("github-secret-after-rotation")
        .send()
        .await
        .unwrap();
    let (status, reply) = stack.post("github", &old, &body).await;
    assert_eq!(status, 202, "the previous secret still verifies: {reply}");

    let body = body_for("github", 22);
    let new = stack.sign_with("github", "github-secret-after-rotation", &body, 0);
    let (status, reply) = stack.post("github", &new, &body).await;
    assert_eq!(status, 202, "the current secret verifies: {reply}");

    // A secret that was never one of them does not.
    let mut other = new.clone();
    other.retain(|(n, _)| n != "x-hub-signature-256");
    other.push((
        "x-hub-signature-256".into(),
        format!("sha256={}", "ab".repeat(32)),
    ));
    let (status, _) = stack.post("github", &other, &body).await;
    assert_eq!(status, 401);
    receiver.wait_for(2, WAIT).await;
    stack.dev.shutdown().await;
}

/// A sender controls the body, the headers and when it retries: every hostile request is a 4xx
/// with a code, answered at once, and nothing a sender sends can make a second event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_4xx_with_a_code_and_make_no_second_event() {
    let receiver = Receiver::start().await;
    let mut defs = definitions(&receiver.url);
    let headers_route = format!(
        "routes:\n  - id: out\n    map: '{{ \"via\": $event.integration, \"headers\": $headers }}'\n    deliver:\n      url: {}\n",
        receiver.url
    );
    defs.push((
        "partner",
        format!("source:\n  verify: api-key\n  header: X-Partner-Key\n  secret: SECRET/partner\n{headers_route}"),
    ));
    defs.push((
        "custom",
        format!("source:\n  verify: hmac\n  secret: SECRET/custom\n  hmac:\n    header: X-Mac\n    algorithm: sha256\n    encoding: hex\n{headers_route}"),
    ));
    let mut secrets = SECRETS.to_vec();
    secrets.extend([
        ("partner", "partner-key-value"),
        ("custom", "custom-mac-key"),
    ]);
    let stack = TestStack::with(&defs, &secrets, FAST).await;

    // A split beyond 100 events: refused whole, at once.
    let batch: Vec<Value> = (0..150)
        .map(|n| json!({"eventId": 10_000 + n, "subscriptionType": "contact.creation", "objectId": n}))
        .collect();
    let started = std::time::Instant::now();
    let (status, reply) = stack
        .post_signed("hubspot", json!(batch).to_string().as_bytes())
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (413, Some("too_many_events")),
        "{reply}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A split that yields nothing: a code, not a silent 202.
    let (status, reply) = stack.post_signed("hubspot", b"[]").await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (422, Some("no_events")),
        "{reply}"
    );

    // A 3,000-character delivery id: accepted, and its repeat deduped.
    let body = body_for("github", 31);
    let mut headers = stack.sign("github", &body, "application/json");
    let long_id = "d".repeat(3000);
    for (name, value) in headers.iter_mut() {
        if name.eq_ignore_ascii_case("x-github-delivery") {
            *value = long_id.clone();
        }
    }
    let (status, first) = stack.post("github", &headers, &body).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = stack.post("github", &headers, &body).await;
    assert_eq!(
        (status, again["duplicate"].as_bool()),
        (200, Some(true)),
        "{again}"
    );
    assert_eq!(first["event_id"], again["event_id"]);

    // A hostile Host and X-Forwarded-Proto reach ingest, which answers as usual.
    let body = body_for("github", 32);
    let mut headers = stack.sign("github", &body, "application/json");
    headers.push(("host".into(), "example.com:not-a-port".into()));
    headers.push(("x-forwarded-proto".into(), "not a scheme".into()));
    let (status, reply) = stack.post("github", &headers, &body).await;
    assert_eq!(status, 202, "{reply}");

    // 2 MiB: ingest's own 413 with its code, not the local server's plain text.
    let big = json!({"pad": "x".repeat(2 * 1024 * 1024)})
        .to_string()
        .into_bytes();
    let (status, reply) = stack
        .post(
            "open",
            &[("content-type".into(), "application/json".into())],
            &big,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (413, Some("payload_too_large")),
        "{reply}"
    );

    // The integration's own credential headers do not travel with the event.
    for name in ["partner", "custom"] {
        let (status, reply) = stack.post_signed(name, &body_for(name, 1)).await;
        assert_eq!(status, 202, "{name}: {reply}");
    }
    let got = receiver.wait_for(4, WAIT).await;
    for via in ["partner", "custom"] {
        let r = got.iter().find(|r| r.body["via"] == via).unwrap();
        let carried = r.body["headers"].as_object().unwrap();
        assert!(
            !carried.contains_key("x-partner-key") && !carried.contains_key("x-mac"),
            "{via}: {carried:?}"
        );
        assert!(carried.contains_key("content-type"), "{via}: {carried:?}");
    }
    stack.dev.shutdown().await;
}

mod requests;
