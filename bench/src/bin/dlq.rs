//! `switchboard dlq list` and `dlq redrive` over a large dead-letter queue in the emulator:
//! wall time, messages per second and peak RSS of each, beside the floor (the same SQS
//! receive-and-release calls made bare) and the size of the letters they read.
//!
//! `cargo run --release -p switchboard-bench --bin dlq [-- LETTERS]` (default 10,000). Needs
//! moto (`make venv`). The peak RSS is this process's (moto runs apart), reset before each
//! phase through `/proc/self/clear_refs`.

use std::time::Instant;

use switchboard_cli::dev::emulator_sdk;
use switchboard_cli::emulator::{Emulator, free_port};
use switchboard_cli::ops::dlq::{self, Action, Filter, Run};
use switchboard_cli::ops::{DlqReader, QueueKind, Stack};
use switchboard_cli::resources::{self, TEMPLATE_SETTINGS};
use switchboard_core::dead_letter::DeadLetter;
use switchboard_core::ports::DeadLetterQueue;
use switchboard_core::reason::Reason;
use switchboard_shared::aws::SqsQueue;

fn reset_peak() {
    // "5" resets the peak RSS to the current RSS (Linux 4.0+).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn report(what: &str, n: usize, started: Instant, base_kib: u64) {
    let secs = started.elapsed().as_secs_f64();
    let peak = switchboard_bench::peak_rss_kib("self");
    println!(
        "{what:<44} {n:>6} letters  {secs:>7.2} s  {:>8.0}/s  peak RSS {:>6.1} MiB (+{:.1} MiB over the start)",
        n as f64 / secs,
        peak as f64 / 1024.0,
        peak.saturating_sub(base_kib) as f64 / 1024.0
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let letters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let emulator = Emulator::ensure(free_port()?)?;
    let sdk = emulator_sdk(emulator.endpoint()).await;
    let name = format!("d{}", ulid::Ulid::new().to_string().to_lowercase());
    let res = resources::create(&sdk, &name, TEMPLATE_SETTINGS).await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);

    // Fill the deliveries DLQ with letters as deliver writes them: body, reason, history.
    let history = serde_json::to_string(&serde_json::json!([
        {"receive": 1, "at": "2026-12-01T09:00:00Z", "status": 503, "latency_ms": 41, "response": "x".repeat(200)},
        {"receive": 2, "at": "2026-12-01T09:00:05Z", "status": 503, "latency_ms": 38, "response": "x".repeat(200)}
    ]))?;
    let dlq = SqsQueue::new(sqs.clone(), &res.deliveries_dlq_url);
    let filled = Instant::now();
    let mut bytes = 0usize;
    for chunk in (0..letters).collect::<Vec<_>>().chunks(32) {
        let sends = chunk.iter().map(|n| {
            let event = format!("evt_{:026}", n);
            let body =
                serde_json::json!({"type": "DeliveryV1", "event_id": event, "integration": "shop",
                "route": "to-3pl", "body": {"order": n, "items": [{"sku": "SKU-1", "quantity": 2}]},
                "headers": {}})
                .to_string();
            let letter = DeadLetter {
                body,
                reason: if n % 2 == 0 {
                    Reason::RetriesExhausted
                } else {
                    Reason::PermanentFailure
                },
                message: "the destination answered 503; gave up after 2 attempts".into(),
                integration: "shop".into(),
                route: Some("to-3pl".into()),
                event_id: event,
                attempts: 2,
                last_status: Some(503),
                history: Some(history.clone()),
            };
            bytes += letter.body.len() + history.len() + 200;
            let dlq = dlq.clone();
            async move { dlq.dead_letter(&letter).await }
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
    println!(
        "filled {letters} dead letters (~{:.1} MiB of bodies and attributes) in {:.1} s",
        bytes as f64 / 1024.0 / 1024.0,
        filled.elapsed().as_secs_f64()
    );
    let stack = Stack::new(&sdk, &name);

    // The floor: the same receive-and-release calls, bare.
    reset_peak();
    let base = switchboard_bench::peak_rss_kib("self");
    let started = Instant::now();
    let mut reader = DlqReader::new(&sqs, &res.deliveries_dlq_url);
    let mut n = 0;
    while let Some(batch) = reader.next().await? {
        n += batch.len();
        for h in batch {
            reader.put_back(h);
        }
    }
    reader.release().await?;
    report("floor: receive + release, nothing else", n, started, base);

    reset_peak();
    let base = switchboard_bench::peak_rss_kib("self");
    let started = Instant::now();
    let mut shown = 0;
    let listed = dlq::each(&stack, QueueKind::Deliveries, &Filter::default(), |l| {
        // What `dlq list` does with each: a row.
        shown += l.event_id.len();
    })
    .await?;
    report("dlq list (every letter, streamed)", listed, started, base);

    reset_peak();
    let base = switchboard_bench::peak_rss_kib("self");
    let started = Instant::now();
    let filter = Filter {
        reason: Some(Reason::RetriesExhausted),
        ..Filter::default()
    };
    let moved = dlq::act(
        &stack,
        QueueKind::Deliveries,
        &filter,
        Action::Redrive,
        Run {
            yes: true,
            ..Run::default()
        },
    )
    .await?;
    report(
        "dlq redrive --reason retries_exhausted",
        moved.redriven.unwrap_or(0),
        started,
        base,
    );
    let left = dlq::each(&stack, QueueKind::Deliveries, &Filter::default(), |_| {}).await?;
    println!(
        "matched {}, redriven {:?}; {left} letters left in the DLQ (the other reason)",
        moved.matched, moved.redriven
    );
    anyhow::ensure!(shown > 0 && left == letters - moved.matched);
    Ok(())
}
