//! Events per second through the whole local pipeline (`switchboard dev`'s stack: ingest behind
//! the local API Gateway, transform and deliver on their queues, moto for AWS) to a receiver
//! on 127.0.0.1 that answers 200: N signed webhooks posted with C in flight, timed from the
//! first post to the last delivery. The emulator bounds it: every AWS call is a round trip to
//! a Python process on the same two cores.
//!
//! `cargo run --release -p switchboard-bench --bin pipeline [-- EVENTS [IN_FLIGHT]]`
//! (default 500 events, 16 in flight). Needs moto (`make venv`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::secret::SecretString;

const SIGNING: &str = "whsec_c3dpdGNoYm9hcmQtYmVuY2gtc2lnbmluZy1rZXk=";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let in_flight: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);

    // The destination: counts distinct Idempotency-Keys.
    let (addr, keys) = switchboard_bench::counting_destination().await?;

    let id = ulid::Ulid::new().to_string().to_lowercase();
    let dir = std::env::temp_dir().join(format!("sb-pipeline-{id}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("orders.yaml"),
        format!(
            "source:\n  verify: standard-webhooks\n  secret: bench/signing\nroutes:\n  - id: out\n    map: '{{\"name\": name, \"total\": $sum(items.price)}}'\n    deliver:\n      url: http://{addr}/hook\n      auth: {{ type: bearer, secret: bench/token }}\n"
        ),
    )?;
    // Beside the definitions, not among them.
    let secrets = std::env::temp_dir().join(format!("sb-pipeline-{id}-secrets.yaml"));
    std::fs::write(
        &secrets,
        format!("bench/signing: {SIGNING}\nbench/token: bench-token\n"),
    )?;
    let stack = switchboard_bench::local_stack(&dir, secrets, format!("p{id}")).await?;
    let definition = switchboard_cli::send::integration(&dir, "orders")?;
    let url = stack.webhook_url("orders");
    let http = reqwest::Client::new();
    let secret = SecretString::new(SIGNING);

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut posters = Vec::new();
    for _ in 0..in_flight {
        let (next, http, url, definition, secret) = (
            Arc::clone(&next),
            http.clone(),
            url.clone(),
            definition.clone(),
            secret.clone(),
        );
        posters.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= events {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = format!(
                    r#"{{"name": "order {n}", "items": [{{"price": 120.5}}, {{"price": 9.5}}]}}"#
                );
                switchboard_bench::post_signed(
                    &http,
                    &definition,
                    &secret,
                    &url,
                    body.into_bytes(),
                )
                .await?;
            }
        }));
    }
    for p in posters {
        p.await??;
    }
    let posted = started.elapsed();
    loop {
        let delivered = keys.lock().unwrap_or_else(|p| p.into_inner()).len();
        if delivered >= events {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{delivered} of {events} delivered after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    println!(
        "{events} events, {in_flight} in flight: accepted in {:.1} s ({:.1}/s), all delivered in {:.1} s: {:.1} events/s end to end",
        posted.as_secs_f64(),
        events as f64 / posted.as_secs_f64(),
        total.as_secs_f64(),
        events as f64 / total.as_secs_f64()
    );
    stack.shutdown().await;
    Ok(())
}
