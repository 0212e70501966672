//! `switchboard events list --where` over an archive of many events in the emulator: events
//! scanned per second and objects read, beside the floor (the same objects fetched bare, not
//! read), and `events show` of the oldest event (the worst case: every object of the day read).
//!
//! `cargo run --release -p switchboard-bench --bin search [-- EVENTS]` (default 10,000, in
//! transform's batches of 100: one object each). Needs moto (`make venv`).

use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use switchboard_cli::dev::emulator_sdk;
use switchboard_cli::emulator::{Emulator, free_port};
use switchboard_cli::ops::StackArgs;
use switchboard_cli::ops::events::{self, Query, Reading};
use switchboard_cli::resources::{self, TEMPLATE_SETTINGS};
use switchboard_core::archive::{
    self, ArchivedEvent, ArchivedEventV2, Decision, EventOutcome, RouteDecision, RouteOutcome,
};
use switchboard_core::ids::EventId;

/// One archived Shopify-like order (about 1 KB of JSON) with transform's decision.
fn line(n: usize, at: chrono::DateTime<Utc>) -> ArchivedEvent {
    let body = json!({
        "order_number": n, "email": format!("buyer{n}@example.com"), "total_price": "129.90",
        "customer": {"id": 9_000_000 + n, "first_name": "Ada", "last_name": "Lovelace"},
        "shipping_address": {"address1": "12 Analytical Row", "city": "London", "zip": "EC1A 1BB", "country": "GB"},
        "line_items": (0..4).map(|i| json!({"sku": format!("SKU-{i}"), "quantity": 1 + i, "price": "32.47", "title": "A useful thing"})).collect::<Vec<_>>(),
    });
    ArchivedEvent::ArchivedEventV2(ArchivedEventV2 {
        event_id: EventId::derived(&format!("ingest#shop#{n}")),
        integration: "shop".into(),
        received_at: at,
        headers: [("x-shopify-topic".to_string(), "orders/create".to_string())].into(),
        body: serde_json::value::to_raw_value(&body).ok(),
        body_ref: None,
        decided_at: at,
        decision: Decision {
            steps: Vec::new(),
            outcome: EventOutcome::Transformed,
            reason: None,
            message: None,
            routes: vec![RouteDecision {
                route: "to-3pl".into(),
                outcome: RouteOutcome::Skipped,
                reason: Some("when_false".into()),
            }],
        },
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let emulator = Emulator::ensure(free_port()?)?;
    let sdk = emulator_sdk(emulator.endpoint()).await;
    let name = format!("s{}", ulid::Ulid::new().to_string().to_lowercase());
    let res = resources::create(&sdk, &name, TEMPLATE_SETTINGS).await?;
    let s3 = aws_sdk_s3::Client::new(&sdk);

    // The archive as transform writes it: batches of 100, one object each, oldest first.
    let start = Utc::now() - chrono::Duration::minutes(30);
    let mut stored = 0usize;
    for (b, chunk) in (0..total).collect::<Vec<_>>().chunks(100).enumerate() {
        let at = start + chrono::Duration::milliseconds(b as i64 * 100);
        let lines: Vec<ArchivedEvent> = chunk.iter().map(|n| line(*n, at)).collect();
        let bytes = archive::write_batch(&lines);
        stored += bytes.len();
        let key = archive::batch_key("shop", at, &archive::batch_id());
        s3.put_object()
            .bucket(&res.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await?;
    }
    println!(
        "archived {total} events in {} objects ({:.1} MiB gzipped)",
        total.div_ceil(100),
        stored as f64 / 1024.0 / 1024.0
    );
    let reading = Reading {
        bucket: Some(res.bucket.clone()),
        integrations: std::path::PathBuf::from("/nonexistent"),
        stack: StackArgs {
            stack: name.clone(),
            json: false,
        },
    };
    let (archive, mut lookups) = events::open(&sdk, &reading).await;

    // The floor: the same objects listed and fetched, not decompressed nor read.
    let mut cost = events::scan::Cost::default();
    let started = Instant::now();
    let keys = archive.keys("shop", start, Utc::now(), &mut cost).await?;
    let mut bytes = 0usize;
    for key in &keys {
        let o = s3.get_object().bucket(&res.bucket).key(key).send().await?;
        bytes += o.body.collect().await?.into_bytes().len();
    }
    report(
        "floor: list + GetObject, bytes only",
        total,
        keys.len() as u64,
        started,
    );
    anyhow::ensure!(bytes == stored);

    // `events list --where`: every line read and its body tested; one matches.
    let query = Query {
        integration: "shop".into(),
        since: start - chrono::Duration::minutes(1),
        until: Utc::now(),
        predicate: Some("customer.id = 9000042".into()),
        limit: 50,
        ..Query::default()
    };
    let started = Instant::now();
    let found = events::list(&archive, &mut lookups, &query, |_, _| {}).await?;
    report(
        "events list --where 'customer.id = 9000042'",
        found.cost.events as usize,
        found.cost.objects,
        started,
    );
    anyhow::ensure!(found.events.len() == 1, "{} matched", found.events.len());
    println!("  {}", found.cost.said());

    // `events show` of the oldest event: the newest objects first, so every one is read.
    let oldest = EventId::derived("ingest#shop#0");
    let started = Instant::now();
    let shown = events::show(
        &archive,
        &mut lookups,
        &oldest,
        Some("shop"),
        start - chrono::Duration::minutes(1),
        false,
        None,
    )
    .await?;
    report(
        "events show (the oldest: a full scan)",
        shown.cost.events as usize,
        shown.cost.objects,
        started,
    );
    anyhow::ensure!(shown.events.is_some());
    Ok(())
}

fn report(what: &str, events: usize, objects: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what:<46} {events:>6} events  {objects:>4} objects  {secs:>6.2} s  {:>8.0} events/s",
        events as f64 / secs
    );
}
