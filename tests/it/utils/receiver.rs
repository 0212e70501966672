//! A destination (or a stand-in API) whose answers the test scripts, recording every request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// One request as the destination saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    /// The body as sent (for signature checks).
    pub raw: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// Whether it verifies as a Standard Webhooks message signed with `key`, now.
    pub fn verifies_with(&self, key: &str) -> bool {
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let request = switchboard_core::verify::SignedRequest {
            method: "POST",
            url: "",
            headers: &headers,
            body: &self.raw,
        };
        switchboard_core::verify::verify(
            &switchboard_core::verify::Scheme::StandardWebhooks,
            &[switchboard_core::secret::SecretString::new(key)],
            &request,
            chrono::Utc::now().timestamp(),
            switchboard_core::verify::DEFAULT_TOLERANCE_SECS,
        )
        .is_ok()
    }
}

/// An answer: a status and, optionally, a JSON body.
type Answer = (StatusCode, Option<serde_json::Value>);

#[derive(Debug, Default)]
struct Inner {
    status: Option<StatusCode>,
    /// Sent as `Retry-After` with every answer that is not a success.
    retry_after: Option<String>,
    /// Answers for paths containing a text (and bodies containing another, when set: one
    /// GraphQL endpoint, many queries), each used in turn; the last one sticks.
    rules: Vec<(String, Option<String>, VecDeque<Answer>)>,
    /// Paths containing a text answer 401 unless a signature verifies with one of the keys.
    keys: Vec<(String, Vec<String>)>,
    /// Paths containing a text answer 401 unless `Authorization: Bearer` one of the tokens.
    bearers: Vec<(String, Vec<String>)>,
    received: Vec<Received>,
}

/// A scripted receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:port/hook`.
    pub url: String,
    /// `http://127.0.0.1:port`.
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    /// Starts a receiver answering 200.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            base: format!("http://{addr}"),
            inner,
        }
    }

    /// From now on, answer every request with `status` (unless a rule matches).
    pub fn always(&self, status: StatusCode) {
        self.inner.lock().unwrap().status = Some(status);
    }

    /// Requests whose path contains `path` get these answers in turn; the last one repeats.
    pub fn on(&self, path: &str, answers: Vec<Answer>) {
        self.inner
            .lock()
            .unwrap()
            .rules
            .push((path.to_string(), None, answers.into()));
    }

    /// As [`Receiver::on`], for requests whose body also contains `text` (a GraphQL query's
    /// name or variable): the first rule that matches answers.
    pub fn on_body(&self, path: &str, text: &str, answers: Vec<Answer>) {
        self.inner.lock().unwrap().rules.push((
            path.to_string(),
            Some(text.to_string()),
            answers.into(),
        ));
    }

    /// Requests whose path contains `path` are refused (401) unless their Standard Webhooks
    /// signature verifies with one of `keys`, as a receiver holding only those keys does.
    pub fn require_signature(&self, path: &str, keys: &[&str]) {
        self.inner.lock().unwrap().keys.push((
            path.to_string(),
            keys.iter().map(|k| k.to_string()).collect(),
        ));
    }

    /// From now on, requests whose path contains `path` are refused (401) unless they carry
    /// `Authorization: Bearer` one of `tokens` (replacing what this path accepted before), as an
    /// API that revoked every other token does.
    pub fn require_bearer(&self, path: &str, tokens: &[&str]) {
        let mut inner = self.inner.lock().unwrap();
        inner.bearers.retain(|(p, _)| p != path);
        let tokens = tokens.iter().map(|t| t.to_string()).collect();
        inner.bearers.push((path.to_string(), tokens));
    }

    /// From now on, send `Retry-After: value` with every answer that is not a success.
    pub fn retry_after(&self, value: &str) {
        self.inner.lock().unwrap().retry_after = Some(value.to_string());
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits until at least `n` requests arrived, or panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < timeout,
                "expected {n} requests within {timeout:?}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    let scripted = inner
        .rules
        .iter_mut()
        .find(|(p, b, _)| {
            path.contains(p.as_str()) && b.as_ref().is_none_or(|b| text.contains(b.as_str()))
        })
        .and_then(|(_, _, answers)| {
            if answers.len() > 1 {
                answers.pop_front()
            } else {
                answers.front().cloned()
            }
        });
    let mut received = Received {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw: body.to_vec(),
        status: 0,
        at: Instant::now(),
    };
    let unsigned = inner
        .keys
        .iter()
        .find(|(p, _)| received.path.contains(p.as_str()))
        .is_some_and(|(_, keys)| !keys.iter().any(|k| received.verifies_with(k)));
    let bearer = received
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let revoked = inner
        .bearers
        .iter()
        .find(|(p, _)| received.path.contains(p.as_str()))
        .is_some_and(|(_, tokens)| !tokens.contains(&bearer));
    let mut response = match scripted {
        _ if unsigned || revoked => StatusCode::UNAUTHORIZED.into_response(),
        Some((status, Some(json))) => (status, axum::Json(json)).into_response(),
        Some((status, None)) => status.into_response(),
        None => inner.status.unwrap_or(StatusCode::OK).into_response(),
    };
    if let Some(value) = &inner.retry_after
        && !response.status().is_success()
    {
        response
            .headers_mut()
            .insert("retry-after", value.parse().unwrap());
    }
    received.status = response.status().as_u16();
    inner.received.push(received);
    response
}
