//! The ingest handler's rules on in-memory ports: what a sender sees, and what is queued,
//! archived and deduped. The same rules run end to end through the emulator in
//! `tests/it/ingest.rs`.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Body, Request};
use switchboard_core::envelope::EventMessage;
use switchboard_core::integration::Integrations;
use switchboard_core::secret::{SecretString, WebhookSecret};
use switchboard_core::secrets::SecretsCache;
use switchboard_core::verify::sign_standard_webhooks;
use switchboard_shared::memory::{
    DefinitionsDir, MemoryArchive, MemoryQueue, MemorySecrets, MemoryTable,
};
use switchboard_shared::metrics::Metrics;

use super::{Ingest, Ports};

const SECRET: &str = "whsec_dGVzdC1zaWduaW5nLWtleS1mb3ItZTJl";

struct Harness {
    handler: Ingest<MemoryQueue, MemoryTable, MemorySecrets, MemoryArchive>,
    events: MemoryQueue,
    archive: MemoryArchive,
    table: MemoryTable,
    _dir: DefinitionsDir,
}

impl Harness {
    fn new() -> Self {
        let dir = DefinitionsDir::with(
            "shop",
            "source:\n  verify: standard-webhooks\n  secret: shop/signing\nroutes:\n  - id: r\n    map: $\n    deliver:\n      url: https://api.example.com/orders\n",
        )
        .unwrap();
        let integrations = Arc::new(Integrations::load_dir(dir.path()).unwrap());
        let (events, archive) = (MemoryQueue::default(), MemoryArchive::default());
        let table = MemoryTable::default();
        let handler = Ingest::new(
            integrations,
            Ports {
                events: events.clone(),
                deliveries: MemoryQueue::default(),
                idempotency: table.clone(),
                reviews: table.clone(),
                secrets: SecretsCache::new(
                    MemorySecrets::with(&[("shop/signing", SECRET)]),
                    Duration::from_secs(60),
                ),
                archive: archive.clone(),
                metrics: Metrics::Off,
                network: switchboard_core::network::NetworkPolicy::LOCAL,
            },
        );
        Self {
            handler,
            events,
            archive,
            table,
            _dir: dir,
        }
    }

    /// Posts `body` to `/webhooks/{integration}` as message `id`, signed with `key`.
    async fn post(&self, integration: &str, id: &str, body: &str, key: &str) -> (u16, String) {
        let keys = [WebhookSecret::parse(&SecretString::new(key)).unwrap()];
        let now = chrono::Utc::now().timestamp();
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("https://hooks.example.com/webhooks/{integration}"))
            .header("content-type", "application/json");
        for (name, value) in sign_standard_webhooks(&keys, id, now, body.as_bytes()) {
            req = req.header(name, value);
        }
        let req: Request = req.body(Body::from(body.to_string())).unwrap();
        let response = self.handler.handle(req).await;
        let text = match response.body() {
            Body::Text(t) => t.clone(),
            Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        (response.status().as_u16(), text)
    }
}

#[tokio::test]
async fn a_signed_webhook_is_queued_once_and_its_retry_gets_the_same_event_id() {
    let h = Harness::new();
    let (status, answer) = h.post("shop", "msg_1", r#"{"order": 1}"#, SECRET).await;
    assert_eq!(status, 202, "{answer}");
    let event_id = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = h.events.sent();
    assert_eq!(sent.len(), 1);
    let EventMessage::EventV1(event) = EventMessage::decode(&sent[0]).unwrap();
    assert_eq!(event.event_id.as_str(), event_id);
    assert_eq!(event.body, serde_json::json!({"order": 1}));
    // Small enough for a message: transform archives it with its batch, not ingest.
    assert!(h.archive.keys().is_empty(), "{:?}", h.archive.keys());

    // The vendor retries the same message: 200, the same event, a duplicate, not queued again.
    let (status, again) = h.post("shop", "msg_1", r#"{"order": 1}"#, SECRET).await;
    assert_eq!(status, 200, "{again}");
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["event_id"], event_id.as_str());
    assert_eq!(again["duplicate"], true);
    assert_eq!(h.events.sent().len(), 1);
    // Counted on its record, for `events show`.
    assert_eq!(h.table.duplicates("ingest#shop#msg_1"), 1);
}

#[tokio::test]
async fn a_bad_signature_or_an_unknown_integration_is_refused_and_nothing_is_kept() {
    let h = Harness::new();
    let other = "whsec_b3RoZXIta2V5LW5vdC10aGUtc2hvcHMta2V5";
    let (status, answer) = h.post("shop", "msg_2", r#"{"order": 2}"#, other).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("signature"), "{answer}");
    let (status, answer) = h.post("nope", "msg_3", r#"{"order": 3}"#, SECRET).await;
    assert_eq!(status, 404, "{answer}");
    assert!(h.events.sent().is_empty());
    assert!(h.archive.keys().is_empty());
}

#[tokio::test]
async fn a_claim_left_in_progress_does_not_hold_a_webhook_back() {
    use switchboard_core::idempotency::{Record, Status};
    use switchboard_core::ports::IdempotencyStore;
    let h = Harness::new();
    // A claim an earlier version of ingest took and never completed (it crashed mid-request):
    // only a completed record makes a duplicate, so the webhook is queued and recorded.
    let now = chrono::Utc::now();
    h.table.put_record(Record {
        key: "ingest#shop#msg_9".into(),
        status: Status::InProgress,
        expires_at: now.timestamp() + 3600,
        in_progress_expires_at_ms: Some(now.timestamp_millis() + 30_000),
        data: None,
    });
    let (status, answer) = h.post("shop", "msg_9", r#"{"order": 9}"#, SECRET).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(h.events.sent().len(), 1);
    let record = h
        .table
        .lookup("ingest#shop#msg_9", true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, Status::Completed);
    // Its retry is now a duplicate, queued no more.
    let (status, again) = h.post("shop", "msg_9", r#"{"order": 9}"#, SECRET).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(h.events.sent().len(), 1);
}

/// `IngestEndpoint: function-url`: a function URL's event has no route and no path parameters
/// (its route key is `$default`, its domain the URL's); the integration comes from the path, and
/// the webhook is verified, queued and answered as behind the API. A forged one is refused.
#[tokio::test]
async fn a_webhook_through_a_function_url_is_verified_and_queued_as_behind_the_api() {
    let h = Harness::new();
    let body = r#"{"order": 7}"#;
    let keys = [WebhookSecret::parse(&SecretString::new(SECRET)).unwrap()];
    let now = chrono::Utc::now().timestamp();
    let event = |headers: serde_json::Value| {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/webhooks/shop",
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "anonymous", "apiId": "abcdefgh",
                "domainName": "abcdefgh.lambda-url.us-east-1.on.aws", "domainPrefix": "abcdefgh",
                "http": {"method": "POST", "path": "/webhooks/shop", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.9", "userAgent": "shop"},
                "requestId": "r", "routeKey": "$default", "stage": "$default",
                "time": "07/Dec/2026:00:00:00 +0000", "timeEpoch": 0
            },
            "body": body,
            "isBase64Encoded": false
        });
        crate::apigw::into_request(serde_json::from_value(event).unwrap())
    };
    let mut headers = serde_json::json!({"content-type": "application/json"});
    for (name, value) in sign_standard_webhooks(&keys, "msg_fu_1", now, body.as_bytes()) {
        headers[name] = value.into();
    }
    let response = h.handler.handle(event(headers.clone())).await;
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(h.events.sent().len(), 1);

    headers["webhook-signature"] = "v1,Zm9yZ2Vk".into();
    headers["webhook-id"] = "msg_fu_2".into();
    let response = h.handler.handle(event(headers)).await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(h.events.sent().len(), 1, "nothing queued for a forged post");
}
