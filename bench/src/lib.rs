//! What the bench binaries share.

pub mod prices;

/// Peak resident set of process `pid` (`self` for this one) since it started or its last
/// reset, in KiB (`VmHWM` in `/proc/<pid>/status`; 0 where there is no such file).
pub fn peak_rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// `switchboard dev`'s stack on a fresh emulator, as the template configures its queues, over
/// the definitions in `dir` and the secrets file `secrets`, its resources named after `stack`.
pub async fn local_stack(
    dir: &std::path::Path,
    secrets: std::path::PathBuf,
    stack: String,
) -> anyhow::Result<switchboard_cli::dev::DevStack> {
    local_stack_with(dir, secrets, stack, |_| {}).await
}

/// [`local_stack`], its options changed by `tweak` first.
pub async fn local_stack_with(
    dir: &std::path::Path,
    secrets: std::path::PathBuf,
    stack: String,
    tweak: impl FnOnce(&mut switchboard_cli::dev::DevOptions),
) -> anyhow::Result<switchboard_cli::dev::DevStack> {
    let mut options = switchboard_cli::dev::DevOptions {
        port: 0,
        integrations: dir.to_path_buf(),
        secrets: Some(secrets),
        emulator_port: switchboard_cli::emulator::free_port()?,
        sink_port: None,
        stack,
        queues: switchboard_cli::resources::TEMPLATE_SETTINGS,
        ..switchboard_cli::dev::DevOptions::default()
    };
    tweak(&mut options);
    switchboard_cli::dev::DevStack::start(options).await
}

/// Posts `body` to ingest at `url`, signed as the integration's provider would; an error unless
/// ingest answers 202.
pub async fn post_signed(
    http: &reqwest::Client,
    definition: &switchboard_core::integration::Integration,
    secret: &switchboard_core::secret::SecretString,
    url: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let headers = switchboard_cli::send::signed_headers(
        definition,
        Some(secret),
        url,
        &body,
        "application/json",
    )?;
    let mut request = http.post(url).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let status = request.send().await?.status();
    anyhow::ensure!(status.as_u16() == 202, "ingest answered {status}");
    Ok(())
}

/// Keys a destination has been sent (distinct `Idempotency-Key`s: one per task, however often
/// it is sent).
pub type Delivered = std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

/// A destination on 127.0.0.1 answering 200 at once, noting each request's `Idempotency-Key`.
pub async fn counting_destination() -> anyhow::Result<(std::net::SocketAddr, Delivered)> {
    let delivered = Delivered::default();
    let keys = std::sync::Arc::clone(&delivered);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let keys = std::sync::Arc::clone(&keys);
        async move {
            if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
                keys.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.to_string());
            }
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, delivered))
}
