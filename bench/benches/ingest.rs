//! Ingest's warm path per event, 4 KB body, secrets cached, AWS calls stubbed, side by side
//! with the floor: HMAC-SHA256 over the body plus one parse of the API Gateway event.
//!
//! `cargo bench -p switchboard-bench --bench ingest`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use ingest::handler::{Ingest, Ports};
use lambda_http::request::LambdaRequest;
use serde_json::json;
use sha2::Sha256;
use switchboard_core::integration::Integrations;
use switchboard_core::ports::{Archive, IdempotencyStore, Outgoing, PortError, Queue, SecretStore};
use switchboard_core::secret::SecretString;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::metrics::Metrics;

const SECRET: &str = "whsec_c3dpdGNoYm9hcmQtYmVuY2gtc2lnbmluZy1rZXk=";

/// AWS stubbed: every call succeeds at once and keeps nothing.
struct Stub;

impl Queue for Stub {
    async fn send(&self, messages: &[Outgoing]) -> Result<(), PortError> {
        black_box(messages);
        Ok(())
    }
}

impl IdempotencyStore for Stub {
    async fn release(&self, _: &str) -> Result<(), PortError> {
        Ok(())
    }
    async fn lookup(
        &self,
        _: &str,
        _: bool,
    ) -> Result<Option<switchboard_core::idempotency::Record>, PortError> {
        Ok(None)
    }
    async fn record_completed(
        &self,
        _: &str,
        _: &str,
        _: chrono::DateTime<chrono::Utc>,
        _: i64,
    ) -> Result<bool, PortError> {
        Ok(true)
    }
}

impl SecretStore for Stub {
    async fn get(&self, _: &str) -> Result<SecretString, PortError> {
        Ok(SecretString::new(SECRET))
    }
}

impl Archive for Stub {
    async fn put(&self, _: &str, body: Vec<u8>) -> Result<(), PortError> {
        black_box(body);
        Ok(())
    }
    async fn get(&self, _: &str) -> Result<Vec<u8>, PortError> {
        Ok(Vec::new())
    }
}

/// A 4 KB order, as a shop would post it.
fn body_4k() -> Vec<u8> {
    let mut items = Vec::new();
    let mut body = Vec::new();
    for i in 0.. {
        items.push(json!({"sku": format!("SKU-{i:04}"), "title": "Widget, blue, large", "price": 12.5, "quantity": 2}));
        body = serde_json::to_vec(
            &json!({"id": "ord_1", "customer": {"email": "ada@example.com"}, "items": items}),
        )
        .unwrap_or_default();
        if body.len() >= 4096 {
            break;
        }
    }
    body
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("sb-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_default();
    std::fs::write(
        dir.join("shop.yaml"),
        "source:\n  verify: standard-webhooks\n  secret: shop/signing\nroutes:\n  - id: out\n    map: $\n    deliver:\n      url: https://example.com/orders\n",
    )
    .unwrap_or_default();
    let integrations = Arc::new(Integrations::load_dir(&dir).unwrap_or_default());
    let handler = Ingest::new(
        integrations,
        Ports {
            events: Stub,
            deliveries: Stub,
            idempotency: Stub,
            // Only Slack's review clicks read it: never in this bench.
            reviews: switchboard_shared::memory::MemoryTable::default(),
            secrets: SecretsCache::new(Stub, Duration::from_secs(300)),
            archive: Stub,
            metrics: Metrics::Off,
            network: switchboard_core::network::NetworkPolicy::DEPLOYED,
        },
    );
    let body = body_4k();
    let definition =
        switchboard_cli::send::integration(&dir, "shop").unwrap_or_else(|e| panic!("{e}"));
    let headers = switchboard_cli::send::signed_headers(
        &definition,
        Some(&SecretString::new(SECRET)),
        "https://localhost/webhooks/shop",
        &body,
        "application/json",
    )
    .unwrap_or_default();
    let event = switchboard_cli::send::lambda_event("shop", &headers, &body).unwrap_or_default();
    let event_text = event.to_string();
    let key = base64_key();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));

    // Warm the secrets cache and check the path accepts the event.
    let warm: LambdaRequest = serde_json::from_str(&event_text).unwrap_or_else(|e| panic!("{e}"));
    let status = runtime
        .block_on(handler.handle(ingest::apigw::into_request(warm)))
        .status();
    assert_eq!(
        status.as_u16(),
        202,
        "the benchmarked request must be accepted"
    );

    let mut group = c.benchmark_group(format!("ingest_{}B", body.len()));
    group.bench_function("floor: parse API Gateway event + HMAC-SHA256 body", |b| {
        b.iter(|| {
            let request: LambdaRequest =
                serde_json::from_str(black_box(&event_text)).unwrap_or_else(|e| panic!("{e}"));
            black_box(request);
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap_or_else(|e| panic!("{e}"));
            mac.update(black_box(&body));
            black_box(mac.finalize().into_bytes());
        })
    });
    group.bench_function("ingest handler (AWS stubbed)", |b| {
        b.iter(|| {
            let request: LambdaRequest =
                serde_json::from_str(black_box(&event_text)).unwrap_or_else(|e| panic!("{e}"));
            // As in Lambda: the event sanitized, then converted.
            let request = ingest::apigw::into_request(request);
            black_box(runtime.block_on(handler.handle(request)));
        })
    });
    group.finish();

    // Where the handler's time goes, step by step, on the same input.
    let mut steps = c.benchmark_group(format!("ingest_steps_{}B", body.len()));
    steps.bench_function("API Gateway event into http::Request", |b| {
        b.iter(|| {
            let request: LambdaRequest =
                serde_json::from_str(black_box(&event_text)).unwrap_or_else(|e| panic!("{e}"));
            black_box(lambda_http::Request::from(request));
        })
    });
    steps.bench_function("parse body to serde_json::Value", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).ok()))
    });
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    steps.bench_function("serialize body Value", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&value)).ok()))
    });
    steps.bench_function("serialize raw body as JSON string", |b| {
        let raw = String::from_utf8_lossy(&body).into_owned();
        b.iter(|| black_box(serde_json::to_vec(black_box(&raw)).ok()))
    });
    steps.bench_function("EventId::new", |b| {
        b.iter(|| black_box(switchboard_core::ids::EventId::new()))
    });
    steps.bench_function("EventId::derived", |b| {
        b.iter(|| {
            black_box(switchboard_core::ids::EventId::derived(black_box(
                "ingest#shop#msg_01JD7QX5R3K2M1N0P9Q8R7S6T5",
            )))
        })
    });
    steps.bench_function("sanitize the API Gateway event", |b| {
        b.iter(|| {
            let mut request: LambdaRequest =
                serde_json::from_str(black_box(&event_text)).unwrap_or_else(|e| panic!("{e}"));
            ingest::apigw::sanitize(&mut request);
            black_box(request);
        })
    });
    steps.finish();
}

fn base64_key() -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap_or_default()
}

criterion_group!(benches, bench);
criterion_main!(benches);
