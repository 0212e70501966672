//! Deliver's warm path per task against a local receiver on 127.0.0.1, side by side with its
//! floor: the same POST made with a bare reqwest client. The difference is the handler's
//! overhead (decode, claim, auth, signing, classify, complete, metrics). AWS calls are
//! in-memory stubs that count themselves, so the run also reports the AWS requests a
//! delivered task costs (the queue's own receive and delete come on top).
//!
//! `cargo bench -p switchboard-bench --bench deliver`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use criterion::{Criterion, criterion_group, criterion_main};
use deliver::handler::{Deliver, Ports};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use switchboard_core::circuit::CircuitState;
use switchboard_core::dead_letter::{AttemptRecord, DeadLetter};
use switchboard_core::envelope::{DeliveryMessage, DeliveryV1};
use switchboard_core::integration::Integrations;
use switchboard_core::ports::{
    AttemptLog, CircuitStore, DeadLetterQueue, IdempotencyStore, LetterClaim, OrderStore,
    PortError, RateLimiter, ReviewStore, SecretStore, Turn, Visibility,
};
use switchboard_core::review::{ReviewItem, ReviewStatus};
use switchboard_core::secret::SecretString;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::metrics::Metrics;

/// AWS stubbed: every call succeeds at once and is counted.
#[derive(Default, Clone)]
struct Stub(Arc<AtomicUsize>);

impl Stub {
    fn call(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl IdempotencyStore for Stub {
    async fn release(&self, _: &str) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
    async fn lookup(
        &self,
        _: &str,
        _: bool,
    ) -> Result<Option<switchboard_core::idempotency::Record>, PortError> {
        self.call();
        Ok(None)
    }
    async fn record_completed(
        &self,
        _: &str,
        _: &str,
        _: chrono::DateTime<chrono::Utc>,
        _: i64,
    ) -> Result<bool, PortError> {
        self.call();
        Ok(true)
    }
}

impl CircuitStore for Stub {
    async fn circuit(&self, _: &str) -> Result<CircuitState, PortError> {
        self.call();
        Ok(CircuitState::default())
    }
    async fn count_failure(&self, _: &str) -> Result<u32, PortError> {
        self.call();
        Ok(1)
    }
    async fn open_circuit(&self, _: &str, _: i64, _: i64, _: bool) -> Result<bool, PortError> {
        self.call();
        Ok(true)
    }
    async fn mark_slow(&self, _: &str, _: i64) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
    async fn take_probe(&self, _: &str, _: i64, _: i64) -> Result<bool, PortError> {
        self.call();
        Ok(true)
    }
    async fn close_circuit(&self, _: &str) -> Result<bool, PortError> {
        self.call();
        Ok(false)
    }
}

impl RateLimiter for Stub {
    async fn take_rate(&self, _: &str, _: i64, _: u32) -> Result<bool, PortError> {
        self.call();
        Ok(true)
    }
    async fn exhaust(&self, _: &str, _: i64, _: i64, _: u32) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
    async fn take_slot(
        &self,
        _: &str,
        _: u32,
        s: u32,
        _: i64,
        _: i64,
    ) -> Result<Option<u32>, PortError> {
        self.call();
        Ok(Some(s))
    }
    async fn free_slot(&self, _: &str, _: u32) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
}

impl AttemptLog for Stub {
    async fn reset_attempts(&self, _: &str) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
    async fn attempts(&self, _: &str) -> Result<(Vec<AttemptRecord>, Option<String>), PortError> {
        self.call();
        Ok((Vec::new(), None))
    }
    async fn claim_dead_letter(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<LetterClaim, PortError> {
        self.call();
        Ok(LetterClaim::Won)
    }
    async fn mark_dead_lettered(&self, _: &str, _: &str, _: &str) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
    async fn note_next_attempt(&self, _: &str, _: i64) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
    async fn record_attempt(
        &self,
        _: &str,
        a: &AttemptRecord,
        _: i64,
    ) -> Result<Vec<AttemptRecord>, PortError> {
        self.call();
        Ok(vec![a.clone()])
    }
}

// No route of the bench keeps its changes in order: a call here would be a cost it measures.
impl OrderStore for Stub {
    async fn take_turn(&self, _: &str, _: &str, _: i64, _: i64) -> Result<Turn, PortError> {
        self.call();
        Ok(Turn::Mine {
            last: None,
            waiting: Vec::new(),
        })
    }
    async fn wait_turn(
        &self,
        _: &str,
        _: &str,
        _: &serde_json::Value,
        _: i64,
    ) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
    async fn end_turn(
        &self,
        _: &str,
        _: &str,
        _: Option<&serde_json::Value>,
    ) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
}

// No route of the bench holds anything for review: a call here would be a cost it measures.
impl ReviewStore for Stub {
    async fn create_review(&self, _: &ReviewItem) -> Result<bool, PortError> {
        self.call();
        Ok(true)
    }
    async fn review(&self, _: &str) -> Result<Option<ReviewItem>, PortError> {
        self.call();
        Ok(None)
    }
    async fn update_review(&self, _: &ReviewItem) -> Result<bool, PortError> {
        self.call();
        Ok(true)
    }
    async fn reviews(&self, _: ReviewStatus) -> Result<Vec<ReviewItem>, PortError> {
        self.call();
        Ok(Vec::new())
    }
}

impl SecretStore for Stub {
    async fn get(&self, id: &str) -> Result<SecretString, PortError> {
        self.call();
        Ok(SecretString::new(if id.contains("signing") {
            "whsec_c3dpdGNoYm9hcmQtYmVuY2gtc2lnbmluZy1rZXk="
        } else {
            "bench-token"
        }))
    }
}

impl Visibility for Stub {
    async fn delay(&self, _: &str, _: Duration) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
}

impl DeadLetterQueue for Stub {
    async fn dead_letter(&self, _: &DeadLetter) -> Result<(), PortError> {
        self.call();
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The receiver: answers 200 at once, with a Slack-like `{"ok": true}`.
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let app = axum::Router::new()
            .fallback(|| async { axum::Json(json!({"ok": true, "ts": "1700000000.000100"})) });
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    let dir = std::env::temp_dir().join(format!("sb-bench-deliver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_default();
    let routes = [
        ("plain", "auth: { type: bearer, secret: shop/token }"),
        (
            "signed",
            "auth: { type: bearer, secret: shop/token }\n      sign: { secret: shop/signing }",
        ),
        (
            "checked",
            "auth: { type: bearer, secret: shop/token }\n      success: slack",
        ),
    ];
    let mut yaml = String::from("source:\n  verify: none\n  allow_unsigned: true\nroutes:\n");
    for (id, extra) in routes {
        yaml.push_str(&format!(
            "  - id: {id}\n    map: $\n    deliver:\n      url: http://{addr}/hook\n      {extra}\n"
        ));
    }
    std::fs::write(dir.join("shop.yaml"), yaml).unwrap_or_default();
    let integrations = Arc::new(Integrations::load_dir(&dir).unwrap_or_else(|e| panic!("{e}")));
    let counter = Stub::default();
    let handler = Deliver::new(
        integrations,
        Ports {
            idempotency: counter.clone(),
            secrets: SecretsCache::new(counter.clone(), Duration::from_secs(300)),
            queue: counter.clone(),
            dead_letters: counter.clone(),
            metrics: Metrics::Off,
            // The bench's destination is a loopback server.
            network: switchboard_core::network::NetworkPolicy::LOCAL,
            // No bench task is large enough to travel in the archive.
            archive: switchboard_shared::memory::MemoryArchive::default(),
        },
        50,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let body = json!({"id": "ord_1", "customer": {"email": "ada@example.com"}, "total": 130.5,
        "items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}]});
    let event = |route: &str| {
        let task = DeliveryMessage::DeliveryV1(DeliveryV1 {
            event_id: switchboard_core::ids::EventId::new(),
            integration: "shop".into(),
            route: route.into(),
            body: body.clone(),
            method: None,
            path: None,
            headers: Default::default(),
            received_at: None,
            review: None,
            reviewed: None,
            archived: None,
            order: None,
        });
        let mut m = SqsMessage::default();
        m.message_id = Some(ulid::Ulid::new().to_string());
        m.receipt_handle = Some("r".into());
        m.body = Some(serde_json::to_string(&task).unwrap_or_default());
        m.attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        let mut e = SqsEvent::default();
        e.records = vec![m];
        LambdaEvent::new(e, Context::default())
    };
    let bare = reqwest::Client::new();
    let url = format!("http://{addr}/hook");
    let body_bytes = serde_json::to_vec(&body).unwrap_or_default();

    // AWS requests per delivered task: the first of a container (its destination not yet known
    // fast: a share slot taken and freed; the circuit read), then in steady state.
    let before = counter.0.load(Ordering::Relaxed);
    runtime.block_on(handler.handle(event("plain")));
    let first = counter.0.load(Ordering::Relaxed) - before;
    println!(
        "AWS requests for a container's first task (its secret, circuit and share slot): {first}"
    );
    runtime.block_on(handler.handle(event("signed")));
    runtime.block_on(handler.handle(event("checked")));
    for route in ["plain", "signed", "checked"] {
        let before = counter.0.load(Ordering::Relaxed);
        let n = 100;
        for _ in 0..n {
            let out = runtime.block_on(handler.handle(event(route)));
            assert!(out.batch_item_failures.is_empty());
        }
        let per = (counter.0.load(Ordering::Relaxed) - before) as f64 / f64::from(n);
        println!("AWS requests per delivered task ({route}): {per:.2}");
    }

    let mut g = c.benchmark_group("deliver one task (local receiver)");
    g.bench_function("bare reqwest POST (the floor)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let r = bare
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body_bytes.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                black_box(r.bytes().await.unwrap_or_default());
            })
        })
    });
    for route in ["plain", "signed", "checked"] {
        g.bench_function(
            format!(
                "deliver handler, bearer{}",
                match route {
                    "signed" => " + signed",
                    "checked" => " + success: slack",
                    _ => "",
                }
            ),
            |b| {
                b.iter_batched(
                    || event(route),
                    |e| runtime.block_on(handler.handle(e)),
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
