//! What one event costs on AWS, measured: N signed webhooks through `switchboard dev`'s stack
//! (one route, a bearer token, a destination answering 200 at once), every AWS request the
//! pipeline makes counted by service and action from the emulator's request recorder
//! (`/moto-api/recorder/*`), every byte the functions log counted as Lambda writes it (JSON, one
//! line per event, and one EMF document per metric line), and both priced with the list prices in
//! `bench/src/prices.rs`. A container's first requests (secrets, warm-up) are left out: twenty
//! events go through before the count starts.
//!
//! Durations are modelled, not the emulator's wall time: the whole process's CPU time per event
//! (ingest, transform, deliver, the sink and the posting client together, an upper bound)
//! shared equally by the three functions, plus a stated latency for each AWS call (`latency`),
//! made one after another.
//!
//! `cargo run --release -p switchboard-bench --bin cost [-- EVENTS [ordered]]` (default 300;
//! `ordered`: the route keeps its records' changes in order). Needs moto (`make venv`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_bench::prices;
use switchboard_core::secret::SecretString;

const SIGNING: &str = "whsec_c3dpdGNoYm9hcmQtYmVuY2gtc2lnbmluZy1rZXk=";
/// The functions' memory (the template's `MemorySize`).
const MEMORY_GB: f64 = 256.0 / 1024.0;
/// Events per invocation of transform at full batches (the template's `BatchSize`).
const TRANSFORM_BATCH: f64 = 100.0;
/// Events per invocation of deliver at full batches (the template's `BatchSize`).
const BATCH: f64 = 10.0;
/// What Lambda writes per invocation beside the function's lines, in its JSON log format.
const PLATFORM_LINES: [&str; 2] = [
    r#"{"time":"2026-12-07T00:00:00.000Z","type":"platform.start","record":{"requestId":"c6af9ac6-7b61-11e6-9a41-93e812345678","version":"$LATEST"}}"#,
    r#"{"time":"2026-12-07T00:00:00.012Z","type":"platform.report","record":{"requestId":"c6af9ac6-7b61-11e6-9a41-93e812345678","metrics":{"durationMs":11.42,"billedDurationMs":12,"memorySizeMB":256,"maxMemoryUsedMB":31},"status":"success"}}"#,
];
/// The invocation's span each function line carries in Lambda (`span` and `spans`), which the
/// local stack has not.
const SPAN: &str = r#"{"requestId":"c6af9ac6-7b61-11e6-9a41-93e812345678","xrayTraceId":"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1","name":"Lambda runtime invoke"}"#;

/// Bytes a function line gains in Lambda: `,"span":{..},"spans":[{..}]`.
fn span_bytes() -> f64 {
    (",\"span\":".len() + SPAN.len() + ",\"spans\":[]".len() + SPAN.len()) as f64
}

/// Bytes of Lambda's own lines per invocation: none unless the template's `SystemLogLevel`
/// lets them through (they are INFO: `WARN` drops them).
fn platform_bytes() -> f64 {
    let template = include_str!("../../../infra/template.yaml");
    let level = template
        .lines()
        .find_map(|l| l.trim().strip_prefix("SystemLogLevel:"))
        .map(str::trim)
        .unwrap_or("INFO");
    match level {
        "WARN" => 0.0,
        _ => PLATFORM_LINES.iter().map(|l| l.len() + 1).sum::<usize>() as f64,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    // `cost -- 300 ordered`: the route keeps each order's changes in order (issue 28).
    let ordering = if std::env::args().nth(2).as_deref() == Some("ordered") {
        "    ordering: { key: name, version: '$sum(items.price)' }\n"
    } else {
        ""
    };
    let logs = log_bytes::install();
    let (sink, delivered) = switchboard_bench::counting_destination().await?;

    let id = ulid::Ulid::new().to_string().to_lowercase();
    let dir = std::env::temp_dir().join(format!("sb-cost-{id}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("orders.yaml"),
        format!(
            "source:\n  verify: standard-webhooks\n  secret: bench/signing\nroutes:\n  - id: out\n    map: '{{\"name\": name, \"total\": $sum(items.price)}}'\n{ordering}    deliver:\n      url: http://{sink}/hook\n      auth: {{ type: bearer, secret: bench/token }}\n"
        ),
    )?;
    let secrets = std::env::temp_dir().join(format!("sb-cost-{id}-secrets.yaml"));
    std::fs::write(
        &secrets,
        format!("bench/signing: {SIGNING}\nbench/token: bench-token\n"),
    )?;
    let stack = switchboard_bench::local_stack(&dir, secrets, format!("c{id}")).await?;
    let poster = Poster::new(&stack, &dir)?;
    let recorder = Recorder::new(&stack.endpoint);

    // Warm: the containers' first requests (secrets, queue and table checks) are not per event.
    poster.post(0..20).await?;
    wait_delivered(&delivered, 20).await?;
    settle().await;
    recorder.call("reset-recording").await?;
    recorder.call("start-recording").await?;
    logs.reset();
    let metric_lines = stack.metrics.lines().len();
    let cpu = cpu_seconds();
    // At full batches: the events queued while the pollers are held, then let go, so transform
    // and deliver take them ten at a time (as under load with a batching window).
    stack.hold_pollers(true);
    poster.post(20..20 + events).await?;
    stack.hold_pollers(false);
    wait_delivered(&delivered, 20 + events).await?;
    settle().await;
    let cpu = cpu_seconds() - cpu;
    recorder.call("stop-recording").await?;
    let recording = recorder.download().await?;
    let emf: Vec<Value> = stack.metrics.lines().split_off(metric_lines);

    let requests = tally(&recording);
    let report = Report {
        events: events as f64,
        requests,
        logged: logs.bytes(),
        emf,
        cpu_per_event: cpu / events as f64,
    };
    report.print();
    stack.shutdown().await;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn wait_delivered(delivered: &Mutex<HashSet<String>>, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while lock(delivered).len() < n {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{} of {n} delivered after 10 minutes",
            lock(delivered).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Time for the last deletes and completions to reach the emulator.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// Posts signed webhooks, 16 in flight.
struct Poster {
    http: reqwest::Client,
    definition: Arc<switchboard_core::integration::Integration>,
    url: String,
}

impl Poster {
    fn new(stack: &switchboard_cli::dev::DevStack, dir: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::new(),
            definition: switchboard_cli::send::integration(dir, "orders")?,
            url: stack.webhook_url("orders"),
        })
    }

    async fn post(&self, range: std::ops::Range<usize>) -> anyhow::Result<()> {
        use futures::StreamExt;
        let secret = SecretString::new(SIGNING);
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(range)
            .map(|n| {
                let body = format!(
                    r#"{{"name": "order {n}", "items": [{{"price": 120.5}}, {{"price": 9.5}}]}}"#
                );
                switchboard_bench::post_signed(
                    &self.http,
                    &self.definition,
                    &secret,
                    &self.url,
                    body.into_bytes(),
                )
            })
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

/// The emulator's request recorder.
struct Recorder {
    http: reqwest::Client,
    base: String,
}

impl Recorder {
    fn new(endpoint: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{endpoint}/moto-api/recorder"),
        }
    }

    async fn call(&self, what: &str) -> anyhow::Result<()> {
        let status = self
            .http
            .post(format!("{}/{what}", self.base))
            .send()
            .await?
            .status();
        anyhow::ensure!(
            status.is_success(),
            "{what}: the emulator answered {status}"
        );
        Ok(())
    }

    async fn download(&self) -> anyhow::Result<String> {
        let url = format!("{}/download-recording", self.base);
        Ok(self.http.get(url).send().await?.text().await?)
    }
}

/// One AWS request the recorder saw: who made it, to which service, which action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    by: &'static str,
    service: String,
    action: String,
}

/// The recorded requests, counted by who made them, service and action.
fn tally(recording: &str) -> BTreeMap<Call, usize> {
    let mut calls = BTreeMap::new();
    for line in recording.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        *calls.entry(call(&entry)).or_default() += 1;
    }
    calls
}

/// What a recorded request was: the service from its signature's credential scope, the action
/// from `X-Amz-Target` (JSON protocols) or the method and path (S3's REST).
fn call(entry: &Value) -> Call {
    let header = |name: &str| {
        entry["headers"]
            .as_object()
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let service = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("?")
        .to_string();
    let target = header("x-amz-target");
    let method = entry["method"].as_str().unwrap_or("");
    let url = entry["url"].as_str().unwrap_or("");
    let action = match target.rsplit_once('.') {
        Some((_, action)) => action.to_string(),
        None if service == "s3" => s3_action(method, url).to_string(),
        None => format!("{method} {url}"),
    };
    let body = body_text(entry);
    let by = caller(&service, &action, &body, url);
    // A read that does not ask for consistency is eventually consistent: half a read unit.
    let action = match action.as_str() {
        "GetItem" if !body.replace(' ', "").contains("\"ConsistentRead\":true") => {
            "GetItem (eventually consistent)".to_string()
        }
        _ => action,
    };
    Call {
        by,
        service,
        action,
    }
}

fn s3_action(method: &str, url: &str) -> &'static str {
    match method {
        "PUT" => "PutObject",
        "GET" if url.contains("list-type") => "ListObjectsV2",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "DELETE" => "DeleteObject",
        "POST" if url.contains("delete") => "DeleteObjects",
        _ => "other",
    }
}

fn body_text(entry: &Value) -> String {
    let body = entry["body"].as_str().unwrap_or("");
    if entry["body_encoded"].as_bool() == Some(true) {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    } else {
        body.to_string()
    }
}

/// Which part of the pipeline made a request: read from the queue, key or object it names.
fn caller(service: &str, action: &str, body: &str, url: &str) -> &'static str {
    match service {
        "sqs" if matches!(action, "SendMessage" | "SendMessageBatch") => {
            if body.contains("-deliveries\"") {
                "transform"
            } else {
                "ingest"
            }
        }
        // Receives and deletes are the event source mappings' (AWS's side, billed the same).
        "sqs" if action.starts_with("ChangeMessageVisibility") => "deliver",
        "sqs" => "event source mappings",
        "dynamodb" if body.contains("\"ingest#") => "ingest",
        "dynamodb" => "deliver",
        "s3" if url.contains("/tasks/")
            || url.contains("/audit/")
            || url.contains(".jsonl.gz")
            || url.ends_with("/warm-up") =>
        {
            "transform"
        }
        // An event alone: ingest's claim check.
        "s3" if action == "PutObject" => "ingest",
        "s3" => "transform",
        "secretsmanager" => "secrets",
        _ => "other",
    }
}

/// The process's CPU time so far (user and system), in seconds.
fn cpu_seconds() -> f64 {
    // /proc/self/stat: utime and stime are fields 14 and 15, in clock ticks (100 a second).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// The latency assumed for one call of an action, in seconds (AWS in-region, p50-ish).
fn latency(service: &str, action: &str) -> f64 {
    match (service, action) {
        ("dynamodb", _) => 0.005,
        ("sqs", _) => 0.010,
        ("s3", "PutObject") => 0.025,
        ("s3", _) => 0.015,
        ("secretsmanager", _) => 0.020,
        _ => 0.010,
    }
}

/// What was measured, priced per million events.
struct Report {
    events: f64,
    requests: BTreeMap<Call, usize>,
    logged: BTreeMap<&'static str, (usize, usize)>,
    emf: Vec<Value>,
    cpu_per_event: f64,
}

impl Report {
    fn print(&self) {
        println!(
            "{} events, one route, bearer token; AWS list prices (us-east-1) as read on {}",
            self.events,
            prices::READ_ON
        );
        println!(
            "\n{:<22} {:<15} {:<32} {:>10} {:>12}",
            "by", "service", "action", "per event", "$ / million"
        );
        let mut aws = 0.0;
        for (c, n) in &self.requests {
            let per_event = *n as f64 / self.events;
            let dollars = per_event * prices::request(&c.service, &c.action) * 1e6;
            aws += dollars;
            println!(
                "{:<22} {:<15} {:<32} {:>10.2} {:>12.3}",
                c.by, c.service, c.action, per_event, dollars
            );
        }
        let lambda = self.lambda();
        let logs = self.logs();
        let api = prices::API_GATEWAY_HTTP_REQUEST * 1e6;
        println!("\n{:<64} {:>12.3}", "AWS requests", aws);
        println!(
            "{:<64} {:>12.3}",
            "Lambda requests and duration (256 MB arm64)", lambda
        );
        println!("{:<64} {:>12.3}", "CloudWatch Logs ingestion", logs);
        println!("{:<64} {:>12.3}", "API Gateway HTTP API", api);
        println!(
            "{:<64} {:>12.3}",
            "total per million events, with API Gateway",
            aws + lambda + logs + api
        );
        println!(
            "{:<64} {:>12.3}",
            "total per million events, with a function URL",
            aws + lambda + logs + prices::FUNCTION_URL_REQUEST * 1e6
        );
    }

    /// Lambda's requests and duration: ingest once per event, transform and deliver once per
    /// full batch; each invocation the CPU time of its events plus its AWS calls' latency.
    fn lambda(&self) -> f64 {
        let mut total = 0.0;
        for (function, invocations_per_event) in [
            ("ingest", 1.0),
            ("transform", 1.0 / TRANSFORM_BATCH),
            ("deliver", 1.0 / BATCH),
        ] {
            let waiting: f64 = self
                .requests
                .iter()
                .filter(|(c, _)| c.by == function)
                .map(|(c, n)| *n as f64 / self.events * latency(&c.service, &c.action))
                .sum();
            // The process's CPU time shared equally by the three functions (it includes the
            // posting client, the sink and the emulator's clients: an upper bound).
            let cpu = self.cpu_per_event / 3.0;
            let seconds_per_event = cpu + waiting;
            let duration = seconds_per_event * MEMORY_GB * prices::LAMBDA_ARM_GB_SECOND;
            let requests = invocations_per_event * prices::LAMBDA_REQUEST;
            let dollars = (duration + requests) * 1e6;
            println!(
                "  lambda {function:<10} {:>6.1} ms an event ({:.2} ms CPU, the rest AWS calls), {:.2} invocations an event: ${dollars:.3} / million",
                seconds_per_event * 1e3,
                cpu * 1e3,
                invocations_per_event
            );
            total += dollars;
        }
        total
    }

    /// What the functions log per event, in Lambda's JSON format, with its per-invocation lines.
    fn logs(&self) -> f64 {
        let emf_bytes: usize = self.emf.iter().map(|l| l.to_string().len() + 1).sum();
        let mut bytes_per_event = emf_bytes as f64 / self.events;
        println!(
            "  logs: EMF {:.0} B an event ({} documents)",
            bytes_per_event,
            self.emf.len()
        );
        for (function, (bytes, lines)) in &self.logged {
            let b = (*bytes as f64 + *lines as f64 * span_bytes()) / self.events;
            println!("  logs: {function:<10} {b:>6.0} B an event ({lines} lines)");
            bytes_per_event += b;
        }
        let platform = platform_bytes() * (1.0 + 1.0 / TRANSFORM_BATCH + 1.0 / BATCH);
        println!(
            "  logs: Lambda's own lines {platform:.0} B an event (the template's SystemLogLevel)"
        );
        bytes_per_event += platform;
        bytes_per_event * 1e6 / 1e9 * prices::LOGS_INGESTED_GB
    }
}

/// The functions' log lines, formatted as Lambda's runtime formats them (JSON, no time, no
/// target) and counted by the crate that wrote them.
mod log_bytes {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    type Counts = Arc<Mutex<BTreeMap<&'static str, (usize, usize)>>>;

    #[derive(Clone, Default)]
    pub struct LogBytes(Counts);

    pub fn install() -> LogBytes {
        let counts = LogBytes::default();
        let writer = counts.clone();
        tracing_subscriber::fmt()
            .with_target(false)
            .without_time()
            .with_max_level(tracing::Level::INFO)
            .json()
            .with_writer(writer)
            .init();
        counts
    }

    impl LogBytes {
        pub fn reset(&self) {
            super::lock(&self.0).clear();
        }

        /// Bytes and lines by function.
        pub fn bytes(&self) -> BTreeMap<&'static str, (usize, usize)> {
            super::lock(&self.0).clone()
        }
    }

    /// Counts what it is given for one function.
    pub struct Counter {
        counts: Counts,
        function: Option<&'static str>,
    }

    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(f) = self.function {
                let mut counts = super::lock(&self.counts);
                let entry = counts.entry(f).or_default();
                entry.0 += buf.len();
                entry.1 += buf.iter().filter(|b| **b == b'\n').count();
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for LogBytes {
        type Writer = Counter;

        fn make_writer(&'a self) -> Counter {
            Counter {
                counts: Arc::clone(&self.0),
                function: None,
            }
        }

        fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Counter {
            let target = meta.target();
            let function = ["ingest", "transform", "deliver", "switchboard_shared"]
                .into_iter()
                .find(|f| target.starts_with(f));
            Counter {
                counts: Arc::clone(&self.0),
                function: function.map(|f| {
                    if f == "switchboard_shared" {
                        "shared"
                    } else {
                        f
                    }
                }),
            }
        }
    }
}
