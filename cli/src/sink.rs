//! A receiver for local runs: answers 200 to every request and prints what arrived, so a new
//! user sees the mapped request come out. Credentials are printed redacted.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Starts the sink on `port` (0: any free port); returns where it listens.
pub async fn start(port: u16, mut stop: watch::Receiver<bool>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(receive);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(addr)
}

async fn receive(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> &'static str {
    let mut out = format!("  sink      {method} {uri}\n");
    for (name, value) in &headers {
        let value = if name == "authorization" {
            redact(value.to_str().unwrap_or_default())
        } else if switchboard_core::envelope::is_sensitive_header(name.as_str()) {
            "[redacted]".to_string()
        } else {
            value.to_str().unwrap_or("<binary>").to_string()
        };
        out.push_str(&format!("              {name}: {value}\n"));
    }
    let pretty = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    for line in pretty.lines() {
        out.push_str(&format!("              {line}\n"));
    }
    print!("{out}");
    "{\"ok\":true}"
}

/// `Bearer [redacted]`: the scheme stays visible, the credential does not.
fn redact(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, _)) => format!("{scheme} [redacted]"),
        None => "[redacted]".to_string(),
    }
}
