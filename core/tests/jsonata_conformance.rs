//! The official JSONata test suite (jsonata-js v2.2.2, MIT; copied into `tests/jsonata-suite/`)
//! run through the project's own mapping interface, judging results as JSON values. Every case must
//! pass but the two that need a lone surrogate (`\uD800`), which a Rust string cannot hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use jsonata_core::value::JValue;
use serde_json::Value;
use switchboard_core::mapping::{Limits, Mapping, jvalue_to_json};

/// Cases skipped, by file, with the reason.
const SKIPPED: &[(&str, &str)] = &[
    (
        "function-encodeUrlComponent/case002.json",
        "needs a lone surrogate \\uD800, which a Rust string cannot hold",
    ),
    (
        "function-encodeUrl/case002.json",
        "needs a lone surrogate \\uD800, which a Rust string cannot hold",
    ),
];

/// Cases the bundled suite holds, less the skipped ones: a suite that loses files fails.
const BUNDLED_CASES: usize = 1684;

/// The suite to run: `JSONATA_SUITE` (another copy, e.g. a newer jsonata-js), else the one
/// inside this crate.
fn suite() -> (PathBuf, bool) {
    match std::env::var("JSONATA_SUITE") {
        Ok(dir) => (PathBuf::from(dir), false),
        Err(_) => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jsonata-suite"),
            true,
        ),
    }
}

/// Numbers compare by value (`1` equals `1.0`); arrays in order unless `unordered`.
fn same(a: &Value, b: &Value, unordered: bool) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || ((x - y).abs() / x.abs().max(y.abs())) < 1e-12
        }
        (Value::Array(x), Value::Array(y)) if unordered => {
            x.len() == y.len() && {
                let mut left: Vec<&Value> = y.iter().collect();
                x.iter()
                    .all(|item| match left.iter().position(|c| same(item, c, true)) {
                        Some(i) => {
                            left.remove(i);
                            true
                        }
                        None => false,
                    })
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q, false))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same(v, w, unordered)))
        }
        _ => a == b,
    }
}

enum Verdict {
    Pass,
    Fail(String),
}

fn run_case(group: &Path, case: &Value) -> Verdict {
    let expr = match (case.get("expr"), case.get("expr-file")) {
        (Some(Value::String(e)), _) => e.clone(),
        (_, Some(Value::String(f))) => std::fs::read_to_string(group.join(f)).unwrap(),
        _ => return Verdict::Fail("no expr".into()),
    };
    let datasets = suite().0.join("datasets");
    let input = match (case.get("data"), case.get("dataset")) {
        (Some(data), _) => JValue::from(data.clone()),
        (None, Some(Value::String(name))) => {
            let text = std::fs::read_to_string(datasets.join(format!("{name}.json"))).unwrap();
            JValue::from(serde_json::from_str::<Value>(&text).unwrap())
        }
        _ => JValue::Undefined,
    };
    let bindings: Vec<(String, Value)> = case
        .get("bindings")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let bindings: Vec<(&str, &Value)> = bindings.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let limits = Limits {
        timeout_ms: case
            .get("timelimit")
            .and_then(Value::as_u64)
            .unwrap_or(10_000),
        max_stack_depth: case
            .get("depth")
            .and_then(Value::as_u64)
            .map(|d| d as usize)
            .unwrap_or(100_000),
        max_sequence_length: Limits::default().max_sequence_length * 10,
    };
    let expected_code = case
        .get("code")
        .or_else(|| case.get("error").and_then(|e| e.get("code")))
        .and_then(Value::as_str);
    let mapping = match Mapping::parse(&expr, limits) {
        Ok(m) => m,
        Err(e) => {
            return match expected_code {
                Some(code) if e.code() == Some(code) => Verdict::Pass,
                _ => Verdict::Fail(format!("parse error: {e}")),
            };
        }
    };
    let outcome = mapping.evaluate_jvalue(input, &bindings, limits);
    let unordered = case
        .get("unordered")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match (outcome, expected_code) {
        (Err(e), Some(code)) if e.code() == Some(code) => Verdict::Pass,
        // The suite's harness stops runaway expressions with its own depth and time limits and
        // reports either as U1001; the engine's limits report D1011 (depth) and D1012 (time).
        (Err(e), Some("U1001")) if matches!(e.code(), Some("D1011" | "D1012")) => Verdict::Pass,
        (Err(e), _) => Verdict::Fail(format!("error {e}")),
        (Ok(v), Some(code)) => {
            Verdict::Fail(format!("expected error {code}, got {}", jvalue_to_json(&v)))
        }
        (Ok(v), None) => {
            if case.get("undefinedResult").and_then(Value::as_bool) == Some(true) {
                return if v.is_undefined() {
                    Verdict::Pass
                } else {
                    Verdict::Fail(format!("expected undefined, got {}", jvalue_to_json(&v)))
                };
            }
            let Some(expected) = case.get("result") else {
                return Verdict::Fail("the case has no expected result".into());
            };
            let got = jvalue_to_json(&v);
            if !v.is_undefined() && same(&got, expected, unordered) {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("got {got}, expected {expected}"))
            }
        }
    }
}

#[test]
fn the_official_jsonata_suite_passes_through_our_mapping_interface() {
    let (dir, bundled) = suite();
    let groups = dir.join("groups");
    assert!(
        groups.is_dir(),
        "the JSONata suite is not at {} (set JSONATA_SUITE)",
        groups.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&groups)
        .unwrap()
        .flat_map(|g| std::fs::read_dir(g.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut passed, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let name = format!(
            "{}/{}",
            file.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy(),
            file.file_name().unwrap().to_string_lossy()
        );
        if let Some((_, reason)) = SKIPPED.iter().find(|(n, _)| *n == name) {
            println!("skip {name}: {reason}");
            skipped += 1;
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let cases = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(cases)) => cases,
            Ok(case) => vec![case],
            Err(e) => {
                failures.push(format!("{name}: unreadable: {e}"));
                continue;
            }
        };
        for (i, case) in cases.iter().enumerate() {
            match run_case(file.parent().unwrap(), case) {
                Verdict::Pass => passed += 1,
                Verdict::Fail(why) => failures.push(format!("{name}[{i}] {}: {why}", case["expr"])),
            }
        }
    }
    println!(
        "JSONata conformance: {passed} passed, {} failed, {skipped} skipped",
        failures.len()
    );
    for f in failures.iter().take(60) {
        println!("  FAIL {f}");
    }
    assert!(
        failures.is_empty(),
        "{} conformance cases failed (first: {})",
        failures.len(),
        failures[0]
    );
    assert!(
        passed >= if bundled { BUNDLED_CASES } else { 1 },
        "only {passed} cases ran from {}",
        dir.display()
    );
}
