//! The operations commands as an operator runs them: the real binary, configured only by the
//! standard AWS environment (`AWS_ENDPOINT_URL` at `switchboard dev`'s emulator) and `--stack`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use switchboard_cli::dev::{DevOptions, DevStack};
use switchboard_cli::emulator::free_port;

fn switchboard(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        // Only what an operator sets: no credentials (the emulator's are used on loopback).
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap()
}

/// The command failed and its error says `why`.
fn assert_refused(out: &Output, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(why), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_dlq_work_against_the_local_stack_through_the_aws_environment() {
    let dir = std::env::temp_dir().join(format!("sb-ops-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let stack_name = format!("ops{}", ulid::Ulid::new().to_string().to_lowercase());
    let stack = DevStack::start(DevOptions {
        port: 0,
        integrations: dir.clone(),
        emulator_port: free_port().unwrap(),
        stack: stack_name.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let endpoint = stack.endpoint.clone();

    let out = switchboard(&endpoint, &["status", "--stack", &stack_name, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for queue in ["events", "events-dlq", "deliveries", "deliveries-dlq"] {
        assert_eq!(status["queues"][queue]["visible"], 0, "{status}");
    }
    assert_eq!(status["dead_letters"]["deliveries"]["total"], 0);
    assert!(status["circuits"].as_array().unwrap().is_empty());

    let out = switchboard(&endpoint, &["status", "--stack", &stack_name]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("deliveries-dlq") && table.contains("no circuit open"),
        "{table}"
    );

    let out = switchboard(
        &endpoint,
        &[
            "dlq",
            "list",
            "--queue",
            "events",
            "--stack",
            &stack_name,
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    // Bad input gets a clear error and changes nothing.
    let out = switchboard(&endpoint, &["status", "--stack", "no-such-stack"]);
    assert_refused(&out, "no queue `no-such-stack-events`");
    let out = switchboard(
        &endpoint,
        &[
            "dlq",
            "list",
            "--queue",
            "events",
            "--since",
            "yesterday-ish",
            "--stack",
            &stack_name,
        ],
    );
    assert_refused(&out, "neither an RFC 3339 time");
    let out = switchboard(
        &endpoint,
        &[
            "dlq",
            "purge",
            "--queue",
            "deliveries",
            "--reason",
            "bogus",
            "--yes",
            "--stack",
            &stack_name,
        ],
    );
    assert_refused(&out, "not a reason; one of: contract_violation");
    // Nothing listening at the endpoint: said so, not "no queue".
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let out = switchboard(&closed, &["status", "--stack", &stack_name]);
    assert_refused(&out, "cannot reach SQS at");
    // Destructive work without a terminal and without --yes: refused before anything is read.
    let out = switchboard(
        &endpoint,
        &[
            "dlq",
            "purge",
            "--queue",
            "deliveries",
            "--stack",
            &stack_name,
        ],
    );
    assert_refused(&out, "pass --yes");
    stack.shutdown().await;
}
