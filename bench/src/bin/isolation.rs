//! One slow destination beside a fast one, through `switchboard dev`'s stack: N signed webhooks
//! posted C at a time to an integration whose every event has a task for a fast destination
//! (answers 200 at once) and one for another destination; the fast destination's latency, from
//! the event's 202 to its request arriving, p50 / p95 / max. Scenarios, each on a fresh stack:
//! the fast route alone; beside a destination answering in 6 s (and how long until all of its
//! tasks arrived); beside one that never answers within its 10 s timeout. The two "beside"
//! scenarios run without isolation (the share and the fair pollers off: how deliver behaved
//! before issue 23) and with it (as deployed).
//!
//! `cargo run --release -p switchboard-bench --bin isolation [-- EVENTS [IN_FLIGHT]]` (default
//! 150 events, 8 in flight). Needs moto (`make venv`). Takes several minutes: the scenarios
//! without isolation are the slow ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use switchboard_core::secret::SecretString;
use tokio::net::TcpListener;

const SIGNING: &str = "whsec_c3dpdGNoYm9hcmQtYmVuY2gtc2lnbmluZy1rZXk=";

type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

/// A destination on its own port that answers after `delay`, recording when each event's
/// request (`{"n": n}`) first arrived.
async fn destination(delay: Duration) -> anyhow::Result<(String, Arrivals)> {
    let arrived: Arrivals = Arc::default();
    let seen = Arc::clone(&arrived);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = Router::new().fallback(move |body: String| {
        let seen = Arc::clone(&seen);
        async move {
            let at = Instant::now();
            tokio::time::sleep(delay).await;
            if let Some(n) = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["n"].as_u64())
            {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(n)
                    .or_insert(at + delay);
            }
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, arrived))
}

struct Scenario {
    name: &'static str,
    /// The other destination's answer time, if there is one.
    other: Option<Duration>,
    isolation: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(150);
    let in_flight: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let scenarios = [
        ("the fast route alone", None, true),
        (
            "beside a 6 s destination, without isolation",
            Some(6),
            false,
        ),
        ("beside a 6 s destination, with isolation", Some(6), true),
        (
            "beside a timing-out destination, without isolation",
            Some(60),
            false,
        ),
        (
            "beside a timing-out destination, with isolation",
            Some(60),
            true,
        ),
    ];
    println!("{events} webhooks, {in_flight} in flight; the fast destination's latency:\n");
    println!("| | p50 | p95 | max | the other's tasks all arrived |");
    println!("|---|---:|---:|---:|---:|");
    for (name, other, isolation) in scenarios {
        let scenario = Scenario {
            name,
            other: other.map(Duration::from_secs),
            isolation,
        };
        run(&scenario, events, in_flight).await?;
    }
    Ok(())
}

async fn run(scenario: &Scenario, events: u64, in_flight: u64) -> anyhow::Result<()> {
    let (fast, fast_arrived) = destination(Duration::ZERO).await?;
    let mut routes =
        format!("  - id: fast\n    map: '{{\"n\": n}}'\n    deliver:\n      url: {fast}/hook\n");
    let mut other_arrived = None;
    if let Some(delay) = scenario.other {
        let (base, arrived) = destination(delay).await?;
        routes += &format!(
            "  - id: other\n    map: '{{\"n\": n}}'\n    deliver:\n      url: {base}/hook\n"
        );
        other_arrived = Some(arrived);
    }
    let id = ulid::Ulid::new().to_string().to_lowercase();
    let dir = std::env::temp_dir().join(format!("sb-isolation-{id}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("orders.yaml"),
        format!("source:\n  verify: standard-webhooks\n  secret: bench/signing\nroutes:\n{routes}"),
    )?;
    let secrets = std::env::temp_dir().join(format!("sb-isolation-{id}-secrets.yaml"));
    std::fs::write(&secrets, format!("bench/signing: {SIGNING}\n"))?;
    let isolation = scenario.isolation;
    let stack = switchboard_bench::local_stack_with(&dir, secrets, format!("i{id}"), |o| {
        o.isolation = isolation;
    })
    .await?;
    let accepted = post_all(&stack, &dir, events, in_flight).await?;
    let fast_latencies = wait_all(&fast_arrived, &accepted, Duration::from_secs(900)).await?;
    let other = match (&other_arrived, scenario.other) {
        // Never answering in time: its tasks wait on retries; not waited for.
        (Some(_), Some(d)) if d > switchboard_core::integration::DEFAULT_DELIVERY_TIMEOUT => {
            "(times out)".to_string()
        }
        (Some(arrived), _) => {
            wait_all(arrived, &accepted, Duration::from_secs(1800)).await?;
            let last_post = accepted.values().max().copied();
            let last = arrived
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .max()
                .copied();
            match (last_post, last) {
                (Some(p), Some(a)) => {
                    format!(
                        "{:.0} s after the last post",
                        a.saturating_duration_since(p).as_secs_f64()
                    )
                }
                _ => String::new(),
            }
        }
        (None, _) => String::new(),
    };
    let at = |q: f64| {
        let i = ((fast_latencies.len() as f64 * q).ceil() as usize).clamp(1, fast_latencies.len());
        fast_latencies[i - 1].as_secs_f64()
    };
    println!(
        "| {} | {:.2} s | {:.2} s | {:.2} s | {other} |",
        scenario.name,
        at(0.5),
        at(0.95),
        at(1.0)
    );
    stack.shutdown().await;
    Ok(())
}

/// Posts events 0..N, C at a time; when each was accepted.
async fn post_all(
    stack: &switchboard_cli::dev::DevStack,
    dir: &std::path::Path,
    events: u64,
    in_flight: u64,
) -> anyhow::Result<HashMap<u64, Instant>> {
    let definition = switchboard_cli::send::integration(dir, "orders")?;
    let url = stack.webhook_url("orders");
    let http = reqwest::Client::new();
    let accepted: Arrivals = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut posters = Vec::new();
    for _ in 0..in_flight {
        let (next, http, url, definition) = (
            Arc::clone(&next),
            http.clone(),
            url.clone(),
            definition.clone(),
        );
        let accepted = Arc::clone(&accepted);
        posters.push(tokio::spawn(async move {
            let secret = SecretString::new(SIGNING);
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= events {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = format!(r#"{{"n": {n}}}"#).into_bytes();
                switchboard_bench::post_signed(&http, &definition, &secret, &url, body).await?;
                accepted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(n, Instant::now());
            }
        }));
    }
    for p in posters {
        p.await??;
    }
    let accepted = accepted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(accepted)
}

/// Waits until every accepted event's request arrived; their latencies, sorted.
async fn wait_all(
    arrived: &Arrivals,
    accepted: &HashMap<u64, Instant>,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let started = Instant::now();
    loop {
        let seen = arrived.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if accepted.keys().all(|n| seen.contains_key(n)) {
            let mut latencies: Vec<Duration> = accepted
                .iter()
                .map(|(n, at)| seen[n].saturating_duration_since(*at))
                .collect();
            latencies.sort();
            return Ok(latencies);
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{} of {} arrived after {timeout:?}",
            seen.len(),
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
