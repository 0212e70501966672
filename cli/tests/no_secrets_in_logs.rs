//! Every line `switchboard dev` prints or logs during an end-to-end run (at the INFO level the
//! template deploys with), captured from the real binary: no secret value, token or signature
//! may appear in it, whatever happens (accepted, refused, delivered, retried, rotated).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_cli::emulator::free_port;
use switchboard_core::secret::SecretString;

const INBOUND: &str = "whsec_aW5ib3VuZC1zaWduaW5nLWtleS1mb3ItbG9ncw==";
const OUTBOUND: &str = "whsec_b3V0Ym91bmQtc2lnbmluZy1rZXktZm9yLWxvZ3M=";
const TOKEN: &str = "destination-bearer-token-do-not-log";

fn venv_path() -> String {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin");
    format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_to_end_run_logs_no_secret_token_or_signature() {
    let dir = std::env::temp_dir().join(format!("sb-logs-{}", ulid::Ulid::new()));
    let integrations = dir.join("integrations");
    std::fs::create_dir_all(&integrations).unwrap();
    let (port, emulator, sink) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    std::fs::write(
        integrations.join("orders.yaml"),
        format!(
            "source:\n  verify: standard-webhooks\n  secret: logs/inbound\nroutes:\n  - id: out\n    map: '{{\"name\": name}}'\n    deliver:\n      url: http://127.0.0.1:{sink}/hook\n      auth: {{ type: bearer, secret: logs/token }}\n      sign: {{ secret: logs/outbound }}\n      retry: [1s]\n"
        ),
    )
    .unwrap();
    let secrets = dir.join("secrets.yaml");
    std::fs::write(
        &secrets,
        format!("logs/inbound: {INBOUND}\nlogs/outbound: {OUTBOUND}\nlogs/token: {TOKEN}\n"),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "dev",
            "--port",
            &port.to_string(),
            "--emulator-port",
            &emulator.to_string(),
        ])
        .args(["--sink-port", &sink.to_string(), "--stack", "logs"])
        .arg("--integrations")
        .arg(&integrations)
        .arg("--secrets")
        .arg(&secrets)
        .env("RUST_LOG", "info")
        .env("PATH", venv_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run switchboard dev");
    let log = Arc::new(Mutex::new(String::new()));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|stream| {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    })
    .collect();
    let wait_for = |text: &str, count: usize| {
        let started = Instant::now();
        while log.lock().unwrap().matches(text).count() < count {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "waiting for {count} x {text:?} in:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("Ctrl-C stops everything", 1);

    let url = format!("http://127.0.0.1:{port}/webhooks/orders");
    let body = br#"{"name": "Ada"}"#;
    let headers = switchboard_core::verify::sign(
        &switchboard_core::verify::Scheme::StandardWebhooks,
        &SecretString::new(INBOUND),
        "POST",
        &url,
        body,
        "msg_logs_1",
        chrono::Utc::now().timestamp(),
    )
    .unwrap();
    let inbound_signature = headers
        .iter()
        .find(|(n, _)| n == "webhook-signature")
        .unwrap()
        .1
        .clone();
    let http = reqwest::Client::new();
    let post = |headers: Vec<(String, String)>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (n, v) in &headers {
            request = request.header(n.as_str(), v.as_str());
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(headers.clone()).await, 202);
    // Refused: a tampered signature is logged as a rejection, never echoed.
    let mut tampered = headers.clone();
    for (n, v) in &mut tampered {
        if n == "webhook-signature" {
            *v = "v1,dGFtcGVyZWQtc2lnbmF0dXJlLXZhbHVlLXh4eHh4eHh4eHg=".into();
        }
        if n == "webhook-id" {
            *v = "msg_logs_2".into();
        }
    }
    assert_eq!(post(tampered).await, 401);
    wait_for("-> out: done", 1);
    std::thread::sleep(Duration::from_millis(500));

    // Ctrl-C, as a user stops it.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    for r in readers {
        let _ = r.join();
    }

    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("sink      POST /hook"),
        "the run delivered:\n{log}"
    );
    let base64_part = |k: &str| k.trim_start_matches("whsec_").to_string();
    for (what, secret) in [
        ("inbound signing key", INBOUND.to_string()),
        ("inbound signing key (base64)", base64_part(INBOUND)),
        ("outbound signing key", OUTBOUND.to_string()),
        ("outbound signing key (base64)", base64_part(OUTBOUND)),
        ("bearer token", TOKEN.to_string()),
        ("inbound signature", inbound_signature.clone()),
        (
            "inbound signature (value)",
            inbound_signature.trim_start_matches("v1,").to_string(),
        ),
        (
            "tampered signature",
            "dGFtcGVyZWQtc2lnbmF0dXJlLXZhbHVlLXh4eHh4eHh4eHg=".into(),
        ),
    ] {
        assert!(
            !log.contains(&secret),
            "the {what} appears in the log:\n{log}"
        );
    }
    // No outbound signature either: none of the `v1,<base64>` shape at all.
    assert!(
        !log.contains("v1,"),
        "a signature appears in the log:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
