//! Cold start of each function's release binary against a local Lambda Runtime API and the
//! emulator: time from exec to the first `next` request (set-up), to the first event's
//! response (set-up plus the event's own work and AWS calls), and peak RSS through that event,
//! side by side with a hello-world `lambda_runtime` binary built the same way.
//!
//! `cargo build --release -p ingest -p transform -p deliver -p rotate -p hello -p switchboard-bench`,
//! then `$CARGO_TARGET_DIR/release/coldstart [RUNS] [--set NAME=DIR[@RUNNER]]...` (default 20
//! runs each, of the release binaries beside `coldstart`). Each `--set` adds a set of the five
//! binaries measured in the same run, side by side: another build (`before=/tmp/old/release`),
//! or the aarch64 ones under user-mode emulation (`arm64=.../aarch64-unknown-linux-gnu/release@qemu-aarch64`,
//! whose RSS is the emulator's, so it is not shown), or the same with extra environment
//! (`nowarm=DIR+SWITCHBOARD_WARM_UP=off`). The functions load what a deploy gives them:
//! the integrations layer (`integrations/Makefile`'s recipe) plus the example, pointed at a local
//! receiver by a name the deployed network guard lets through at start and refuses on the
//! call (so deliver's first event ends in a `network_refused` letter, sending nothing).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use switchboard_cli::dev::emulator_sdk;
use switchboard_cli::emulator::{Emulator, free_port};
use switchboard_cli::resources::{self, TEMPLATE_SETTINGS};
use tokio::net::TcpListener;

/// One invocation as the Runtime API saw it.
#[derive(Debug, Default)]
struct Invocation {
    event: Vec<u8>,
    first_next: Option<Instant>,
    response: Option<(Instant, Vec<u8>)>,
    nexts: u32,
}

type Shared = Arc<Mutex<Invocation>>;

/// Whether a function's response is the one expected.
type Check = dyn Fn(&[u8]) -> bool;

async fn next(State(state): State<Shared>) -> axum::response::Response {
    let event = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.nexts += 1;
        if s.nexts > 1 {
            None
        } else {
            s.first_next = Some(Instant::now());
            Some(s.event.clone())
        }
    };
    let Some(event) = event else {
        // One event per cold start: hold the second `next` until the process is stopped.
        return std::future::pending().await;
    };
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    axum::http::Response::builder()
        .header(
            "lambda-runtime-aws-request-id",
            ulid::Ulid::new().to_string(),
        )
        .header("lambda-runtime-deadline-ms", deadline.to_string())
        .header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench",
        )
        .body(axum::body::Body::from(event))
        .map(IntoResponse::into_response)
        .unwrap_or_else(|e| {
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        })
}

async fn response(State(state): State<Shared>, body: Bytes) -> &'static str {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.response = Some((Instant::now(), body.to_vec()));
    "{}"
}

async fn error(State(state): State<Shared>, body: Bytes) -> &'static str {
    eprintln!(
        "function reported an error: {}",
        String::from_utf8_lossy(&body)
    );
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.response = Some((Instant::now(), body.to_vec()));
    "{}"
}

/// Five binaries to measure, and what runs them (nothing: exec'd directly).
#[derive(Debug)]
struct BinarySet {
    name: String,
    dir: PathBuf,
    runner: Option<String>,
    env: Vec<(String, String)>,
}

impl BinarySet {
    /// `NAME=DIR[@RUNNER][+KEY=VALUE...]`: the binaries in DIR, run by RUNNER if given, with
    /// the extra environment.
    fn parse(spec: &str) -> anyhow::Result<Self> {
        let usage = "--set NAME=DIR[@RUNNER][+KEY=VALUE...]";
        let mut parts = spec.split('+');
        let head = parts.next().context(usage)?;
        let (name, rest) = head.split_once('=').context(usage)?;
        let (dir, runner) = match rest.split_once('@') {
            Some((dir, runner)) => (dir, Some(runner.to_string())),
            None => (rest, None),
        };
        let env = parts
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .context(usage)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            name: name.into(),
            dir: PathBuf::from(dir),
            runner,
            env,
        })
    }
}

/// One cold start's numbers.
#[derive(Debug, Clone, Copy)]
struct Sample {
    to_next: Duration,
    to_response: Duration,
    peak_rss_kib: u64,
}

async fn cold_start(
    runner: Option<&str>,
    binary: &Path,
    env: &HashMap<String, String>,
    api: SocketAddr,
    state: &Shared,
    event: Vec<u8>,
    check: &Check,
) -> anyhow::Result<Sample> {
    *state.lock().unwrap_or_else(|p| p.into_inner()) = Invocation {
        event,
        ..Invocation::default()
    };
    let mut command = match runner {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(binary);
            c
        }
        None => Command::new(binary),
    };
    let started = Instant::now();
    let mut child = command
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id();
    let outcome = loop {
        let (first_next, response) = {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            (s.first_next, s.response.clone())
        };
        if let (Some(n), Some((r, body))) = (first_next, response) {
            // Wait for the runtime's second `next`: the event is fully done by then.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let rss = switchboard_bench::peak_rss_kib(&pid.to_string());
            break Ok((n, r, body, rss));
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!(
                "{} exited early: {status}",
                binary.display()
            ));
        }
        if started.elapsed() > Duration::from_secs(30) {
            break Err(anyhow::anyhow!(
                "{} gave no response in 30 s",
                binary.display()
            ));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let (n, r, body, rss) = outcome?;
    if !check(&body) {
        bail!(
            "{} answered {}",
            binary.display(),
            String::from_utf8_lossy(&body)
        );
    }
    Ok(Sample {
        to_next: n - started,
        to_response: r - started,
        peak_rss_kib: rss,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn p90(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[(xs.len() * 9 / 10).min(xs.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut runs = 20;
    let release = std::env::current_exe()?
        .parent()
        .context("no target dir")?
        .to_path_buf();
    let mut sets = vec![BinarySet {
        name: "this build".into(),
        dir: release,
        runner: None,
        env: Vec::new(),
    }];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--set" {
            let spec = args.next().context("--set NAME=DIR[@RUNNER]")?;
            sets.push(BinarySet::parse(&spec)?);
        } else {
            runs = arg.parse().context("RUNS is a number")?;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");

    // AWS side: the emulator, the template's resources, the example's secrets.
    let emulator = tokio::task::spawn_blocking(|| Emulator::start(free_port()?)).await??;
    let sdk = emulator_sdk(emulator.endpoint()).await;
    let res = resources::create(&sdk, "bench", TEMPLATE_SETTINGS).await?;
    let secrets = resources::read_secrets_file(&root.join("dev/secrets.yaml"))?;
    resources::put_secrets(&sdk, &secrets).await?;

    // A destination for deliver, and the example integration pointed at it.
    let sink = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink.local_addr()?;
    tokio::spawn(async move { axum::serve(sink, Router::new().fallback(|| async { "ok" })).await });
    let integrations: PathBuf =
        std::env::temp_dir().join(format!("sb-bench-{}", ulid::Ulid::new()));
    // What the deployed layer holds (the shipped definitions, their mappings and schemas) ...
    let layer = Command::new("make")
        .args(["--quiet", "build-IntegrationsLayer"])
        .arg(format!("ARTIFACTS_DIR={}", integrations.display()))
        .current_dir(root.join("integrations"))
        .status()?;
    if !layer.success() {
        bail!("building the integrations layer failed");
    }
    // ... and the example, which the events below are for. The binaries run the deployed
    // network guard, which refuses plain http and loopback: the route names the sink as
    // `https://localhost:PORT`, which passes the check at start (a name, not an address), and
    // deliver's first event is refused when the name resolves to loopback, before any
    // connection (a `network_refused` letter), so no traffic leaves the machine's loopback.
    let example = std::fs::read_to_string(root.join("integrations/example.yaml"))?.replace(
        "http://127.0.0.1:3001/hook",
        &format!("https://localhost:{}/hook", sink_addr.port()),
    );
    std::fs::write(integrations.join("example.yaml"), example)?;

    // The Runtime API.
    let state: Shared = Arc::default();
    let api = TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = api.local_addr()?;
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(api, app).await });

    let mut env: HashMap<String, String> = [
        ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("AWS_ENDPOINT_URL".into(), emulator.endpoint().into());
    env.insert(
        "INTEGRATIONS_DIR".into(),
        integrations.display().to_string(),
    );
    env.insert("EVENTS_QUEUE_URL".into(), res.events_url.clone());
    env.insert("DELIVERIES_QUEUE_URL".into(), res.deliveries_url.clone());
    env.insert("EVENTS_DLQ_URL".into(), res.events_dlq_url.clone());
    env.insert("DELIVERIES_DLQ_URL".into(), res.deliveries_dlq_url.clone());
    env.insert("IDEMPOTENCY_TABLE".into(), res.table.clone());
    env.insert("ARCHIVE_BUCKET".into(), res.bucket.clone());

    let example = switchboard_cli::send::integration(&integrations, "example")?;
    let key = switchboard_cli::send::secret_value(
        &example,
        Some(&root.join("dev/secrets.yaml")),
        emulator.endpoint(),
    )
    .await?;
    let order = std::fs::read(root.join("dev/order.json"))?;
    // Rotate: the outbound signing secret with rotation enabled and a version staged
    // AWSPENDING, as Secrets Manager leaves it before calling the function; each run is that
    // rotation's setSecret step (idempotent, so every run does the same work).
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let rotating = "switchboard/outbound/signing";
    let token = switchboard_cli::rotation::begin(&sm, rotating).await?;
    let rotate_event = serde_json::to_vec(&serde_json::json!({
        "SecretId": rotating, "ClientRequestToken": token, "Step": "setSecret"
    }))?;
    let transform_event = std::fs::read(root.join("events/transform/event.json"))?;
    let deliver_event = std::fs::read(root.join("events/deliver/delivery.json"))?;

    let no_failures = |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|v| {
            v["batchItemFailures"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        })
    };
    let accepted = |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|v| v["statusCode"] == 202)
    };
    let any = |_: &[u8]| true;
    // The rotate function answers `null` on success.
    let succeeded = |b: &[u8]| b == b"null";

    for set in &sets {
        println!(
            "\ncold start, {runs} runs each: {} ({}{}{})",
            set.name,
            set.dir.display(),
            set.runner
                .as_deref()
                .map(|r| format!(", run by {r}"))
                .unwrap_or_default(),
            set.env
                .iter()
                .map(|(k, v)| format!(", {k}={v}"))
                .collect::<String>()
        );
        println!(
            "{:<10} {:>10} {:>10} {:>12} {:>12} {:>11} {:>10} {:>9}",
            "binary",
            "next p50",
            "next p90",
            "event p50",
            "event p90",
            "first evt",
            "peak RSS",
            "size"
        );
        let mut set_env = env.clone();
        set_env.extend(set.env.iter().cloned());
        let mut hello_next = 0.0;
        for name in ["hello", "ingest", "transform", "deliver", "rotate"] {
            let binary = set.dir.join(name);
            let mut samples = Vec::with_capacity(runs);
            for _ in 0..runs {
                let (event, check): (Vec<u8>, &Check) = match name {
                    "ingest" => {
                        let headers = switchboard_cli::send::signed_headers(
                            &example,
                            key.as_ref(),
                            "https://localhost/webhooks/example",
                            &order,
                            "application/json",
                        )?;
                        let ev = switchboard_cli::send::lambda_event("example", &headers, &order)?;
                        (serde_json::to_vec(&ev)?, &accepted)
                    }
                    "transform" => (transform_event.clone(), &no_failures),
                    // A fresh event id each run: deliver's idempotency record would otherwise
                    // make every run after the first skip the send.
                    "deliver" => (
                        String::from_utf8_lossy(&deliver_event)
                            .replace(
                                "evt_01JSAMPLE0000000000000000",
                                switchboard_core::ids::EventId::new().as_str(),
                            )
                            .into_bytes(),
                        &no_failures,
                    ),
                    "rotate" => (rotate_event.clone(), &succeeded),
                    _ => (br#"{"hello":"world"}"#.to_vec(), &any),
                };
                samples.push(
                    cold_start(
                        set.runner.as_deref(),
                        &binary,
                        &set_env,
                        api_addr,
                        &state,
                        event,
                        check,
                    )
                    .await?,
                );
            }
            let ms = |f: fn(&Sample) -> Duration| {
                samples
                    .iter()
                    .map(|s| f(s).as_secs_f64() * 1000.0)
                    .collect::<Vec<_>>()
            };
            let next = ms(|s| s.to_next);
            let resp = ms(|s| s.to_response);
            let own: Vec<f64> = resp.iter().zip(&next).map(|(r, n)| r - n).collect();
            let rss = samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
            let size = std::fs::metadata(&binary)?.len();
            let next_p50 = median(next.clone());
            if name == "hello" {
                hello_next = next_p50;
            }
            let rss = match set.runner {
                None => format!("{:.1}MiB", rss as f64 / 1024.0),
                Some(_) => "-".into(),
            };
            println!(
                "{:<10} {:>8.2}ms {:>8.2}ms {:>10.2}ms {:>10.2}ms {:>9.2}ms {:>10} {:>6.1}MiB   ({:.2}x hello to next)",
                name,
                next_p50,
                p90(next),
                median(resp.clone()),
                p90(resp),
                median(own),
                rss,
                size as f64 / (1024.0 * 1024.0),
                next_p50 / hello_next,
            );
        }
    }
    println!(
        "'first evt' = time from `next` to the response: the event's own work, AWS calls included."
    );
    drop(emulator);
    Ok(())
}
