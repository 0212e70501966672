//! The AI support assistant through the whole local pipeline (`switchboard dev`'s stack, the
//! shipped `support-tickets` definition) against stand-ins on 127.0.0.1 for the docs search, the
//! backend, Zendesk, Slack and a model API in Anthropic's shape that enforces its own limit of
//! 20 requests a second (429 beyond it).
//!
//! 1. Tickets per second under that limit: N tickets posted with C in flight, timed from the
//!    first post to the last ticket update Zendesk receives; the model API's 429s counted.
//! 2. The pack's own time per ticket beyond the model's: tickets one at a time (no limit), each
//!    timed from its post to its ticket update, beside the floor: the same four calls (docs,
//!    backend, model, Zendesk) made bare, in sequence, by this process. The model answers at
//!    once, so what is left is the pack's (and the emulator's) time.
//!
//! `cargo run --profile bench -p switchboard-bench --bin support [-- TICKETS [IN_FLIGHT [ONE_BY_ONE]]]`
//! (default 200 tickets, 16 in flight, 30 one by one). Needs moto (`make venv`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use serde_json::{Value, json};
use switchboard_core::secret::SecretString;
use tokio::net::TcpListener;

/// The model API's own limit, as the shipped definition's `limits.max_per_second` says.
const LIMIT: usize = 20;

struct Model {
    limit: usize,
    second: (i64, usize),
    limited: usize,
}

async fn serve(app: Router) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(path: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(root().join("integrations/fixtures").join(path))?;
    Ok(serde_json::from_str(&text)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let tickets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let in_flight: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let one_by_one: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let enriched = fixture("support-tickets/confident-answer/enriched.json")?;

    let (articles, account) = (enriched["articles"].clone(), enriched["account"].clone());
    let docs = serve(Router::new().fallback(move || {
        let a = articles.clone();
        async move { axum::Json(a) }
    }))
    .await?;
    let backend = serve(Router::new().fallback(move || {
        let a = account.clone();
        async move { axum::Json(a) }
    }))
    .await?;
    let updates = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let u = Arc::clone(&updates);
    let zendesk = serve(Router::new().fallback(move |uri: axum::http::Uri| {
        let u = Arc::clone(&u);
        async move {
            u.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((uri.path().to_string(), Instant::now()));
            axum::Json(json!({"ticket": {}}))
        }
    }))
    .await?;
    let slack = serve(Router::new().fallback(|| async { axum::Json(json!({"ok": true})) })).await?;
    let model = Arc::new(Mutex::new(Model {
        limit: LIMIT,
        second: (0, 0),
        limited: 0,
    }));
    let answer = enriched["triage"].clone();
    let m = Arc::clone(&model);
    let model_base = serve(Router::new().fallback(move || {
        let (m, answer) = (Arc::clone(&m), answer.clone());
        async move {
            use axum::response::IntoResponse;
            let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
            let now = chrono::Utc::now().timestamp();
            if m.second.0 != now {
                m.second = (now, 0);
            }
            m.second.1 += 1;
            if m.second.1 > m.limit {
                m.limited += 1;
                return (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after-ms", "200")],
                    axum::Json(json!({"type": "error", "error": {"type": "rate_limit_error", "message": "rate limited"}})),
                )
                    .into_response();
            }
            axum::Json(answer).into_response()
        }
    }))
    .await?;

    // The shipped definition and its files, hosts on loopback.
    let id = ulid::Ulid::new().to_string().to_lowercase();
    let dir = std::env::temp_dir().join(format!("sb-support-{id}"));
    let source = root().join("integrations");
    for sub in ["mappings", "schemas", "prompts"] {
        std::fs::create_dir_all(dir.join(sub))?;
        for entry in std::fs::read_dir(source.join(sub))? {
            let path = entry?.path();
            std::fs::copy(
                &path,
                dir.join(sub).join(path.file_name().unwrap_or_default()),
            )?;
        }
    }
    let definition = std::fs::read_to_string(source.join("support-tickets.yaml"))?
        .replace("https://docs.example.com", &docs)
        .replace("https://backend.example.com", &backend)
        .replace("https://api.anthropic.com", &model_base)
        .replace("https://example.zendesk.com", &zendesk)
        .replace("https://slack.com", &slack);
    std::fs::write(dir.join("support-tickets.yaml"), definition)?;
    let secrets = std::env::temp_dir().join(format!("sb-support-{id}-secrets.yaml"));
    std::fs::write(
        &secrets,
        "switchboard/inbound/zendesk/signing: bench-zendesk\nswitchboard/enrich/docs/search-token: t\nswitchboard/enrich/backend/api-token: t\nswitchboard/enrich/anthropic/api-key: t\nswitchboard/outbound/zendesk/api-token: t\nswitchboard/outbound/slack/bot-token: t\n",
    )?;
    let stack = switchboard_bench::local_stack(&dir, secrets, format!("s{id}")).await?;
    let definition = switchboard_cli::send::integration(&dir, "support-tickets")?;
    let url = stack.webhook_url("support-tickets");
    let http = reqwest::Client::new();
    let secret = SecretString::new("bench-zendesk");
    let template = fixture("support-tickets/confident-answer/input.json")?;
    let post = {
        let (http, url, definition, secret) = (
            http.clone(),
            url.clone(),
            definition.clone(),
            secret.clone(),
        );
        move |n: usize| {
            let (http, url, definition, secret) = (
                http.clone(),
                url.clone(),
                definition.clone(),
                secret.clone(),
            );
            let mut t = template.clone();
            t["id"] = json!(format!("bench-{id}-{n}"));
            t["detail"]["id"] = json!(format!("{}", 100_000 + n));
            async move {
                switchboard_bench::post_signed(
                    &http,
                    &definition,
                    &secret,
                    &url,
                    serde_json::to_vec(&t)?,
                )
                .await?;
                Ok::<_, anyhow::Error>(Instant::now())
            }
        }
    };
    let wait_for = |n: usize| {
        let updates = Arc::clone(&updates);
        async move {
            let started = Instant::now();
            loop {
                if updates.lock().unwrap_or_else(|p| p.into_inner()).len() >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(600),
                    "tickets not updated after 10 minutes"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    // 1. A burst under the model API's limit.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut posters = Vec::new();
    for _ in 0..in_flight {
        let (next, post) = (Arc::clone(&next), post.clone());
        posters.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= tickets {
                    return Ok::<_, anyhow::Error>(());
                }
                post(n).await?;
            }
        }));
    }
    for p in posters {
        p.await??;
    }
    wait_for(tickets).await?;
    let burst = started.elapsed();
    let limited = model.lock().unwrap_or_else(|p| p.into_inner()).limited;
    println!(
        "{tickets} tickets, {in_flight} in flight, model API limited to {LIMIT}/s: all updated in {:.1} s: {:.1} tickets/s, {limited} answers of 429",
        burst.as_secs_f64(),
        tickets as f64 / burst.as_secs_f64()
    );

    // 2. One at a time, no limit: each ticket's time beside the floor of its four calls.
    model.lock().unwrap_or_else(|p| p.into_inner()).limit = usize::MAX;
    let mut pack = Vec::new();
    for n in 0..one_by_one {
        let sent = post(tickets + n).await?;
        wait_for(tickets + n + 1).await?;
        let done = updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .map(|u| u.1)
            .unwrap_or(sent);
        pack.push(done - sent);
    }
    let mut floor = Vec::new();
    for _ in 0..one_by_one {
        let t = Instant::now();
        for (base, method) in [
            (&docs, "POST"),
            (&backend, "GET"),
            (&model_base, "POST"),
            (&zendesk, "PUT"),
        ] {
            let request = http
                .request(method.parse()?, format!("{base}/x"))
                .body("{}");
            request.send().await?.bytes().await?;
        }
        floor.push(t.elapsed());
    }
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
        (
            mean,
            v[v.len() / 2],
            v[(v.len() * 95 / 100).min(v.len() - 1)],
        )
    };
    let (pm, p50, p95) = stats(pack);
    let (fm, f50, f95) = stats(floor);
    println!(
        "one ticket at a time ({one_by_one}): post to ticket update mean {:.1} ms (p50 {:.1}, p95 {:.1}); floor, the four calls bare: mean {:.2} ms (p50 {:.2}, p95 {:.2}); the pack's own time beyond the model's: {:.1} ms a ticket",
        ms(pm),
        ms(p50),
        ms(p95),
        ms(fm),
        ms(f50),
        ms(f95),
        ms(pm.saturating_sub(fm))
    );
    stack.shutdown().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
