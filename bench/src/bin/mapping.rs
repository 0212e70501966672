//! The mapping budget: a 5 KB Shopify order mapped to a 3PL request by the shipped
//! `shopify-orders` integration, through the project's mapping interface, side by side in one
//! run with the reference JavaScript engine (npm `jsonata`, `bench/jsonata-js/`) on the same
//! expression, input and bindings. Then transform's own work around the mapping (envelope
//! decode, `when`, request shape and contract, task encode) beside the mapping's time.
//!
//! `cargo run --release -p switchboard-bench --bin mapping [-- SAMPLES SAMPLE_MS ROUNDS]`
//! (`make bench-mapping` installs the JS engine first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use switchboard_core::envelope::{DeliveryMessage, DeliveryV1, EventMessage, EventV1};
use switchboard_core::ids::EventId;
use switchboard_core::integration::{Integration, Integrations};
use switchboard_core::mapping::{Bindings, Scope};
use transform::pipeline::{RouteOutcome, run_route};

// As in the transform binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Nanoseconds per call of `f`, one number per sample of `sample_ms`, after a warm-up.
fn sample(samples: usize, sample_ms: u64, mut f: impl FnMut()) -> Vec<f64> {
    let warm = Instant::now();
    while warm.elapsed().as_millis() < u128::from(2 * sample_ms) {
        f();
    }
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed().as_millis() < u128::from(sample_ms) {
                f();
                n += 1;
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let samples: usize = args.first().map_or(Ok(10), |s| s.parse())?;
    let sample_ms: u64 = args.get(1).map_or(Ok(300), |s| s.parse())?;
    // Rounds alternate the two engines, so a noisy moment on this machine hits both.
    let rounds: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;

    let dir = root().join("integrations");
    let integrations =
        Integrations::<Integration>::load_dir(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let integration = integrations
        .get("shopify-orders")
        .context("the shopify-orders integration")?;
    let route = &integration.routes[0];
    let case = dir.join("fixtures/shopify-orders/paid-order-us");
    // As a webhook arrives: compact JSON.
    let input: Value = serde_json::from_str(&std::fs::read_to_string(case.join("input.json"))?)?;
    let input_text = serde_json::to_string(&input)?;
    // Each step's record as transform binds it (its `result` out of the API's answer).
    let answers: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("enriched.json"))?)?;
    let mut enriched = serde_json::Map::new();
    for step in &integration.enrich {
        let record = transform::enrich::extract(step, answers[&step.name].clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        enriched.insert(step.name.clone(), record);
    }
    let enriched = Value::Object(enriched);
    let headers = json!({"content-type": "application/json", "x-shopify-topic": "orders/paid"});
    let bound = Bindings::new(
        headers,
        "evt_01JBENCH000000000000000000",
        "shopify-orders",
        "2026-11-24T00:00:00Z",
    )
    .settings(integration.settings.clone())
    .enriched(enriched);
    let bindings = bound.pairs();

    // Rust, through the project's interface: the evaluation over a prepared scope, and from
    // the body's JSON text (parsed into the engine's values, then evaluated).
    let scope = Scope::from_json(&input_text, &bindings)?;
    let rust_result = route
        .mapping
        .evaluate_in(&scope)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .context("the mapping produced nothing")?;
    let js_dir = root().join("bench/jsonata-js");
    if !js_dir.join("node_modules/jsonata").exists() {
        bail!(
            "the reference engine is not installed: run `npm ci --prefix bench/jsonata-js` (or `make bench-mapping`)"
        );
    }
    let tmp = std::env::temp_dir().join(format!("sb-bench-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&tmp)?;
    let input_file = tmp.join("input.json");
    std::fs::write(&input_file, &input_text)?;
    let bindings_file = tmp.join("bindings.json");
    std::fs::write(
        &bindings_file,
        serde_json::to_vec(
            &json!({"headers": bound.headers, "event": bound.event, "enriched": bound.enriched}),
        )?,
    )?;

    let (mut rust, mut from_text, mut js_evaluate, mut js_from_text) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut js_result = Value::Null;
    let mut js_version = String::new();
    for _ in 0..rounds {
        rust.extend(sample(samples, sample_ms, || {
            std::hint::black_box(route.mapping.evaluate_in(std::hint::black_box(&scope))).ok();
        }));
        from_text.extend(sample(samples, sample_ms, || {
            if let Ok(scope) = Scope::from_json(std::hint::black_box(&input_text), &bindings) {
                std::hint::black_box(route.mapping.evaluate_in(&scope)).ok();
            }
        }));
        // JS: the same expression, input and bindings.
        let out = Command::new("node")
            .arg(js_dir.join("bench.mjs"))
            .arg(dir.join("mappings/shopify-to-3pl.jsonata"))
            .arg(&input_file)
            .arg(&bindings_file)
            .arg(samples.to_string())
            .arg(sample_ms.to_string())
            .output()
            .context("running node (is Node.js installed?)")?;
        if !out.status.success() {
            bail!("node failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let js: Value = serde_json::from_slice(&out.stdout)?;
        js_evaluate.extend(serde_json::from_value::<Vec<f64>>(
            js["evaluate_ns"].clone(),
        )?);
        js_from_text.extend(serde_json::from_value::<Vec<f64>>(
            js["from_text_ns"].clone(),
        )?);
        js_result = js["result"].clone();
        js_version = js["version"].as_str().unwrap_or("?").to_string();
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let (rust, from_text) = (median(rust), median(from_text));
    let (js_evaluate, js_from_text) = (median(js_evaluate), median(js_from_text));
    let same = js_result == rust_result;
    let parse = median(sample(samples, sample_ms, || {
        std::hint::black_box(Scope::from_json(
            std::hint::black_box(&input_text),
            &bindings,
        ))
        .ok();
    }));

    // Transform's own work around the mapping, on the same event.
    let message = serde_json::to_string(&EventMessage::EventV1(EventV1 {
        event_id: EventId::new(),
        integration: "shopify-orders".into(),
        received_at: chrono::Utc::now(),
        headers: Default::default(),
        body: input.clone(),
        body_ref: None,
        routes: None,
        archived: None,
    }))?;
    EventMessage::decode_raw(&message)?;
    let decode = median(sample(samples, sample_ms, || {
        std::hint::black_box(EventMessage::decode_raw(std::hint::black_box(&message))).ok();
    }));
    let when = route.when.as_ref().context("the route's `when`")?;
    let when_time = median(sample(samples, sample_ms, || {
        std::hint::black_box(when.evaluate_in(std::hint::black_box(&scope))).ok();
    }));
    let mapped = route
        .mapping
        .evaluate_in(&scope)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .context("nothing mapped")?;
    let shape = median(sample(samples, sample_ms, || {
        std::hint::black_box(transform::pipeline::request_from(std::hint::black_box(
            mapped.clone(),
        )))
        .ok();
    }));
    let RouteOutcome::Deliver(request) = run_route(route, &scope) else {
        bail!("the route did not deliver");
    };
    let contract = route.contract.as_ref().context("the route's contract")?;
    let validate = median(sample(samples, sample_ms, || {
        std::hint::black_box(contract.violations(std::hint::black_box(&request.body)));
    }));
    let encode = median(sample(samples, sample_ms, || {
        let task = DeliveryMessage::DeliveryV1(DeliveryV1 {
            event_id: EventId::new(),
            integration: "shopify-orders".into(),
            route: route.id.clone(),
            body: request.body.clone(),
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            received_at: None,
            review: None,
            reviewed: None,
            archived: None,
            order: None,
        });
        std::hint::black_box(serde_json::to_string(&task)).ok();
    }));
    // The budget's overhead: envelope decode, contract validation, task encode (plus the
    // request shape check, which is ours too). `when` is a JSONata evaluation: shown apart.
    let overhead = decode + shape + validate + encode;

    let eps = |ns: f64| 1e9 / ns;
    let us = |ns: f64| ns / 1e3;
    println!(
        "Mapping a {}-byte Shopify order to a 3PL request ({rounds} rounds x {samples} samples of {sample_ms} ms, medians)\n",
        input_text.len()
    );
    println!("| engine | evaluate (µs) | events/s | parse + evaluate (µs) | events/s |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| Switchboard `Mapping` (jsonata-core 2.2.13, Rust) | {:.1} | {:.0} | {:.1} | {:.0} |",
        us(rust),
        eps(rust),
        us(from_text),
        eps(from_text)
    );
    println!(
        "| jsonata {} (Node.js {}) | {:.1} | {:.0} | {:.1} | {:.0} |",
        js_version,
        node_version(),
        us(js_evaluate),
        eps(js_evaluate),
        us(js_from_text),
        eps(js_from_text)
    );
    println!(
        "| speed-up | | {:.2}x | | {:.2}x |\n",
        js_evaluate / rust,
        js_from_text / from_text
    );
    println!("goal: at least 5x; the two engines' results are identical: {same}\n");
    println!("Transform's own work around that mapping:\n");
    println!("| step | µs per event |");
    println!("|---|---:|");
    println!(
        "| envelope decode (SQS body -> EventV1, body kept as JSON text) | {:.1} |",
        us(decode)
    );
    println!("| request shape check (map_request) | {:.1} |", us(shape));
    println!(
        "| contract validation (JSON Schema) | {:.1} |",
        us(validate)
    );
    println!("| task encode (DeliveryV1 -> JSON) | {:.1} |", us(encode));
    println!("| **overhead** | {:.1} |", us(overhead));
    println!("| the mapping (evaluate) | {:.1} |", us(rust));
    println!("| the route's `when` (evaluate) | {:.1} |", us(when_time));
    println!(
        "| the body parsed into the engine's values (once per event, shared by all routes) | {:.1} |\n",
        us(parse)
    );
    println!(
        "overhead / mapping: {:.2} (budget: at most 0.5); with the body parse counted as overhead: {:.2}",
        overhead / rust,
        (overhead + parse) / rust
    );
    if !same {
        println!("\nthe engines differ!\nRust: {rust_result}\nJS:   {js_result}");
    }
    Ok(())
}

fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
