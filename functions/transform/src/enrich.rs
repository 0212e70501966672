//! Enrichment: the API calls an integration makes before mapping ("the webhook says something
//! changed, the API says what"). Each step's JSON answer is bound as `$enriched.<name>` for the
//! later steps and the routes.

use serde_json::Value;
use switchboard_core::integration::{EnrichMethod, EnrichStep, OnMissing};
use switchboard_core::mapping::{Bindings, Scope};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::SecretStore;
use switchboard_core::reason::Reason;
use switchboard_core::secrets::SecretsCache;
use switchboard_core::{deadline, delivery_policy};
use switchboard_shared::credentials::Credentials;
use switchboard_shared::http::{self, AuthError, GuardedHttp, RequestError};

/// How enrichment ended, when it did not produce results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrichError {
    /// Worth another try later (429, 5xx, 408, timeouts, connection errors, a rejected
    /// credential that may have been rotated).
    Retryable {
        /// The step.
        step: String,
        /// What happened.
        message: String,
    },
    /// Retrying cannot help.
    Permanent {
        /// `enrich_not_found`, `enrich_failed`, `enrich_url`, `enrich_invalid_response`.
        reason: Reason,
        /// The step.
        step: String,
        /// What happened.
        message: String,
    },
    /// A step's record is gone and the step says `on_missing: skip`.
    Skip {
        /// The step.
        step: String,
    },
}

impl EnrichError {
    fn retryable(step: &EnrichStep, message: String) -> Self {
        EnrichError::Retryable {
            step: step.name.clone(),
            message,
        }
    }

    fn permanent(step: &EnrichStep, reason: Reason, message: String) -> Self {
        EnrichError::Permanent {
            reason,
            step: step.name.clone(),
            message,
        }
    }
}

impl std::fmt::Display for EnrichError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnrichError::Retryable { step, message } => {
                write!(f, "enrich step `{step}`: {message}")
            }
            EnrichError::Permanent { step, message, .. } => {
                write!(f, "enrich step `{step}`: {message}")
            }
            EnrichError::Skip { step } => {
                write!(f, "enrich step `{step}`: not found; event skipped")
            }
        }
    }
}

/// A step's call, filled from the event: its URL and its body.
struct Prepared {
    url: Result<url::Url, String>,
    body: Option<Value>,
}

/// A step's `when`, URL and body over the event and the earlier steps' answers; None when its
/// `when` is not true (the step is not called).
fn prepare(step: &EnrichStep, scope: &Scope) -> Result<Option<Prepared>, EnrichError> {
    let permanent = |reason, message| EnrichError::permanent(step, reason, message);
    if let Some(when) = &step.when {
        match when.evaluate_in(scope) {
            Ok(Some(Value::Bool(true))) => {}
            Ok(Some(Value::Bool(false)) | None) => return Ok(None),
            Ok(Some(_)) => {
                return Err(permanent(
                    Reason::WhenError,
                    "`when` must yield true or false".into(),
                ));
            }
            Err(e) => return Err(permanent(Reason::WhenError, format!("`when` failed: {e}"))),
        }
    }
    let body = match &step.body {
        None => None,
        Some(mapping) => match mapping.evaluate_in(scope) {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                return Err(permanent(
                    Reason::MappingError,
                    "the body mapping produced nothing".into(),
                ));
            }
            Err(e) => {
                return Err(permanent(
                    Reason::MappingError,
                    format!("the body mapping failed: {e}"),
                ));
            }
        },
    };
    Ok(Some(Prepared {
        url: step.url.render(scope),
        body,
    }))
}

/// What of a step's answer is the record: its `result` over the answer (the whole answer
/// without one). Nothing or null there is a missing record, as a 404 is (`on_missing`).
/// `switchboard check` applies it to a fixture's answers as this function does.
pub fn extract(step: &EnrichStep, answer: Value) -> Result<Value, EnrichError> {
    let Some(result) = &step.result else {
        return Ok(answer);
    };
    match result.evaluate(&answer, &[]) {
        Ok(Some(v)) if !v.is_null() => Ok(v),
        Ok(_) => Err(match step.on_missing {
            OnMissing::Skip => EnrichError::Skip {
                step: step.name.clone(),
            },
            OnMissing::Fail => EnrichError::permanent(
                step,
                Reason::EnrichNotFound,
                "the answer's `result` holds nothing: the record is not there".into(),
            ),
        }),
        Err(e) => Err(EnrichError::permanent(
            step,
            Reason::EnrichInvalidResponse,
            format!("the step's `result` failed on the answer: {e}"),
        )),
    }
}

/// Makes enrichment calls with the definition's auth, reading secrets through a cache.
#[derive(Debug)]
pub struct Enricher<K> {
    http: GuardedHttp,
    credentials: Credentials<K>,
}

/// The longest any single enrichment call may take (definitions are refused beyond it).
const MAX_TIMEOUT: std::time::Duration = switchboard_core::integration::MAX_ENRICH_TIMEOUT;

impl<K: SecretStore> Enricher<K> {
    /// An enricher reading credentials through `secrets`, calling where `network` allows.
    pub fn new(secrets: SecretsCache<K>, network: NetworkPolicy) -> Self {
        let http = GuardedHttp::new(network, MAX_TIMEOUT);
        Self {
            credentials: Credentials::new(secrets, http.clone(), MAX_TIMEOUT),
            http,
        }
    }

    /// Runs every step in order over the event body's JSON text; the result is the
    /// `$enriched` object (`{}` when there are no steps).
    pub async fn run(
        &self,
        steps: &[EnrichStep],
        body: &str,
        bindings: &Bindings,
        deadline_ms: Option<i64>,
    ) -> Result<Value, EnrichError> {
        let mut enriched = serde_json::Map::new();
        for step in steps {
            let so_far = Value::Object(enriched.clone());
            // The scope is not Send: fill the URL and the body, and drop it before calling.
            let prepared = match Scope::from_json(body, &bindings.pairs_with(&so_far)) {
                Ok(scope) => prepare(step, &scope)?,
                Err(e) => Some(Prepared {
                    url: Err(e.to_string()),
                    body: None,
                }),
            };
            let Some(Prepared { url, body: sent }) = prepared else {
                continue;
            };
            let value = self.step(step, url, sent.as_ref(), deadline_ms).await?;
            enriched.insert(step.name.clone(), value);
        }
        Ok(Value::Object(enriched))
    }

    /// One call of a step: not started when it could not finish before the deadline; the
    /// request through the network guard, with the step's credential.
    async fn call(
        &self,
        step: &EnrichStep,
        url: &url::Url,
        body: Option<&Value>,
        deadline_ms: Option<i64>,
    ) -> Result<reqwest::Response, EnrichError> {
        let retryable = |message| EnrichError::retryable(step, message);
        let permanent = |reason, message| EnrichError::permanent(step, reason, message);
        let timeout = step.timeout.min(MAX_TIMEOUT);
        // The deliver rule: a call that may not finish before the deadline is not started
        // (the event comes back through SQS, to a fresh invocation).
        let now_ms = chrono::Utc::now().timestamp_millis();
        if !deadline::leaves_time(timeout, deadline_ms, now_ms) {
            let left = deadline_ms.map_or(0, |d| d - now_ms).max(0);
            return Err(retryable(format!(
                "not started: {left} ms left before the deadline, the call may take {} ms",
                timeout.as_millis()
            )));
        }
        let method = match step.method {
            EnrichMethod::Get => reqwest::Method::GET,
            EnrichMethod::Post => reqwest::Method::POST,
            EnrichMethod::Put => reqwest::Method::PUT,
        };
        let request = match self.http.request(method, url.clone(), timeout, step.access) {
            Ok(r) => r,
            Err(RequestError::Blocked(b)) => {
                return Err(permanent(
                    Reason::NetworkRefused,
                    format!("refused by the network guard: {b}"),
                ));
            }
            Err(RequestError::Client(e)) => {
                return Err(retryable(format!("no HTTP client: {e}")));
            }
        };
        let mut request = request
            .header("accept", "application/json")
            .timeout(timeout);
        if let Some(body) = body {
            #[allow(clippy::expect_used)]
            let bytes = serde_json::to_vec(body).expect("JSON values always serialize");
            request = request
                .header("content-type", "application/json")
                .body(bytes);
        }
        let request = self
            .credentials
            .authorize(request, &step.auth)
            .await
            .map_err(|e| match e {
                AuthError::Secret(e) => retryable(e.to_string()),
                e @ AuthError::Token { .. } => retryable(e.to_string()),
                e @ AuthError::Blocked { .. } => permanent(Reason::NetworkRefused, e.to_string()),
                e @ AuthError::Malformed { .. } => permanent(Reason::EnrichFailed, e.to_string()),
            })?;
        request.send().await.map_err(|e| match http::blocked(&e) {
            // The name resolved only to refused addresses.
            Some(_) => permanent(Reason::NetworkRefused, http::transport_error(&e)),
            None => retryable(http::transport_error(&e)),
        })
    }

    async fn step(
        &self,
        step: &EnrichStep,
        url: Result<url::Url, String>,
        body: Option<&Value>,
        deadline_ms: Option<i64>,
    ) -> Result<Value, EnrichError> {
        let retryable = |message| EnrichError::retryable(step, message);
        let permanent = |reason, message| EnrichError::permanent(step, reason, message);
        let url =
            url.map_err(|m| permanent(Reason::EnrichUrl, format!("cannot fill the URL: {m}")))?;
        // A 401/403 to a cached credential: read it afresh (and mint a new token) and ask once
        // more, at once; a second refusal stands.
        let refused = |r: &reqwest::Response| matches!(r.status().as_u16(), 401 | 403);
        let (response, refreshed) = self
            .credentials
            .sending_refreshed_once(
                &step.auth,
                || self.call(step, &url, body, deadline_ms),
                refused,
            )
            .await?;
        if refreshed && refused(&response) {
            self.credentials.invalidate(&step.auth).await;
            return Err(permanent(
                Reason::EnrichUnauthorized,
                format!(
                    "the API answered {} to the credential read afresh",
                    response.status().as_u16()
                ),
            ));
        }
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            404 | 410 => {
                return Err(match step.on_missing {
                    OnMissing::Skip => EnrichError::Skip {
                        step: step.name.clone(),
                    },
                    OnMissing::Fail => permanent(
                        Reason::EnrichNotFound,
                        format!("the API answered {status}: the record is not there"),
                    ),
                });
            }
            // Without a credential to refresh: perhaps a gateway in a bad minute; retry later.
            // No credential to refresh: perhaps a gateway's bad minute; retry through SQS.
            401 | 403 => {
                return Err(retryable(format!("the API answered {status}")));
            }
            s if delivery_policy::retryable_status(s) => {
                return Err(retryable(format!("the API answered {status}")));
            }
            _ => {
                return Err(permanent(
                    Reason::EnrichFailed,
                    format!("the API answered {status}"),
                ));
            }
        }
        // Only a checked step pays for its answer's headers.
        let headers = step
            .check
            .is_some()
            .then(|| http::response_headers(&response));
        let body = http::read_capped(response, step.max_response_bytes)
            .await
            .map_err(|e| retryable(http::transport_error(&e)))?;
        if body.truncated {
            return Err(permanent(
                Reason::EnrichInvalidResponse,
                format!(
                    "the API's answer is longer than {} bytes (the step's max_response_bytes)",
                    step.max_response_bytes
                ),
            ));
        }
        let value: Value = serde_json::from_slice(&body.bytes).map_err(|e| {
            permanent(
                Reason::EnrichInvalidResponse,
                format!("the API's answer is not JSON ({e})"),
            )
        })?;
        match step
            .check
            .as_ref()
            .zip(headers)
            .and_then(|(c, headers)| c.judge(status, headers, value.clone()))
        {
            None => extract(step, value),
            Some(true) => Err(retryable(format!(
                "the API answered {status}, but its answer fails the step's success check; worth another try"
            ))),
            Some(false) => Err(permanent(
                Reason::EnrichFailed,
                format!("the API answered {status}, but its answer fails the step's success check"),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use serde_json::json;
    use switchboard_core::integration::Auth;
    use switchboard_core::ports::AwsError;
    use switchboard_core::secret::SecretString;
    use switchboard_core::url_template::UrlTemplate;

    use super::*;

    fn no_bindings() -> Bindings {
        Bindings::new(json!({}), "evt", "test", "2026-01-01T00:00:00Z")
    }

    /// These steps use no credentials: a read would be a bug.
    struct NoSecrets;

    impl SecretStore for NoSecrets {
        async fn get(&self, id: &str) -> Result<SecretString, AwsError> {
            panic!("no secret should be read, asked for {id}")
        }

        async fn get_stages(
            &self,
            id: &str,
        ) -> Result<switchboard_core::ports::SecretStages, AwsError> {
            panic!("no secret should be read, asked for {id}")
        }
    }

    /// A token store counting its reads.
    struct Token(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl SecretStore for Token {
        async fn get(&self, _: &str) -> Result<SecretString, AwsError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(SecretString::new("t0ken"))
        }
    }

    #[tokio::test]
    async fn a_refused_credential_is_read_afresh_once_then_the_refusal_stands() {
        let base = api().await;
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let store = Token(std::sync::Arc::clone(&reads));
        let enricher = Enricher::new(
            SecretsCache::new(store, Duration::from_secs(60)),
            NetworkPolicy::LOCAL,
        );
        for code in [401, 403] {
            let mut s = step(format!("{base}/status/{code}"), OnMissing::Fail);
            s.auth = Auth::Bearer {
                secret: "api/token".into(),
            };
            let before = reads.load(std::sync::atomic::Ordering::SeqCst);
            let e = enricher
                .run(&[s], "{}", &no_bindings(), None)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &e,
                    EnrichError::Permanent {
                        reason: Reason::EnrichUnauthorized,
                        ..
                    }
                ),
                "{code}: {e:?}"
            );
            let after = reads.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(after - before, 2, "read, then read afresh once");
        }
    }

    /// An API on 127.0.0.1 answering `/status/<code>`, `/slow`, `/text` and `/ok/<id>`.
    async fn api() -> String {
        async fn answer(
            axum::extract::Path(path): axum::extract::Path<String>,
        ) -> axum::response::Response {
            use axum::response::IntoResponse;
            let mut parts = path.splitn(2, '/');
            match (parts.next(), parts.next()) {
                (Some("status"), Some(code)) => StatusCode::from_u16(code.parse().unwrap())
                    .unwrap()
                    .into_response(),
                (Some("slow"), _) => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    StatusCode::OK.into_response()
                }
                (Some("text"), _) => "not json".into_response(),
                (Some("graphql"), id) => axum::Json(match id {
                    Some("missing") => json!({"errors": [{"message": "Customer not found"}]}),
                    Some("busy") => json!({"errors": [{"message": "Throttled",
                        "extensions": {"code": "THROTTLED"}}]}),
                    _ => {
                        json!({"data": {"customer": {"id": "gid://1", "email": "ada@example.com"}}})
                    }
                })
                .into_response(),
                (Some("big"), _) => axum::Json(json!({"pad": "x".repeat(300_000)})).into_response(),
                (_, id) => axum::Json(json!({"id": id, "name": "Ada"})).into_response(),
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A GraphQL endpoint: the order whose id the query's variables name, none for `missing`.
        async fn graphql(axum::Json(request): axum::Json<Value>) -> axum::Json<Value> {
            let id = request["variables"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            axum::Json(if id.ends_with("missing") {
                json!({"data": {"order": null}})
            } else {
                json!({"data": {"order": {"id": id, "query": request["query"]}}})
            })
        }
        let app = axum::Router::new()
            .route("/gql", axum::routing::post(graphql))
            .route("/{*path}", axum::routing::get(answer));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn step(url: String, on_missing: OnMissing) -> EnrichStep {
        EnrichStep {
            name: "record".into(),
            url: UrlTemplate::parse(&url).unwrap(),
            auth: Auth::None,
            timeout: Duration::from_millis(300),
            on_missing,
            access: Default::default(),
            max_response_bytes: switchboard_core::integration::DEFAULT_ENRICH_RESPONSE_BYTES,
            check: None,
            when: None,
            method: EnrichMethod::Get,
            body: None,
            result: None,
        }
    }

    fn expression(text: &str) -> switchboard_core::mapping::Mapping {
        switchboard_core::mapping::Mapping::parse(text, Default::default()).unwrap()
    }

    #[tokio::test]
    async fn a_graphql_step_posts_its_body_built_from_the_event_and_keeps_its_result() {
        let base = api().await;
        let enricher = Enricher::new(
            SecretsCache::new(NoSecrets, Duration::from_secs(60)),
            NetworkPolicy::LOCAL,
        );
        let mut order = step(format!("{base}/gql"), OnMissing::Fail);
        order.name = "order".into();
        order.method = EnrichMethod::Post;
        order.body = Some(expression(
            r#"{"query": "query($id: ID!) { order(id: $id) { id } }", "variables": {"id": "gid://shopify/Order/" & external_id}}"#,
        ));
        order.result = Some(expression("data.order"));
        // A second step runs only when the first found something, and sees its answer.
        let mut again = step(format!("{base}/gql"), OnMissing::Fail);
        again.name = "again".into();
        again.method = EnrichMethod::Post;
        again.when = Some(expression("$exists($enriched.order.id) and flag"));
        again.body = Some(expression(
            r#"{"variables": {"id": $enriched.order.id & "/2"}}"#,
        ));
        let steps = [order, again];

        let got = enricher
            .run(
                &steps,
                r#"{"external_id": "42", "flag": true}"#,
                &no_bindings(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(got["order"]["id"], "gid://shopify/Order/42");
        assert!(
            got["order"]["query"]
                .as_str()
                .unwrap()
                .starts_with("query($id")
        );
        assert_eq!(
            got["again"]["data"]["order"]["id"],
            "gid://shopify/Order/42/2"
        );

        let got = enricher
            .run(
                &steps,
                r#"{"external_id": "42", "flag": false}"#,
                &no_bindings(),
                None,
            )
            .await
            .unwrap();
        assert!(
            got.get("again").is_none(),
            "`when` false: not called, absent"
        );

        // `data.order: null` is a missing record: on_missing decides.
        let e = enricher
            .run(
                &steps,
                r#"{"external_id": "missing"}"#,
                &no_bindings(),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, EnrichError::Permanent { reason: Reason::EnrichNotFound, step, .. } if step == "order"),
            "{e:?}"
        );
    }

    async fn run(url: String, on_missing: OnMissing) -> Result<Value, EnrichError> {
        run_step(step(url, on_missing), NetworkPolicy::LOCAL).await
    }

    async fn run_step(step: EnrichStep, network: NetworkPolicy) -> Result<Value, EnrichError> {
        let enricher = Enricher::new(
            SecretsCache::new(NoSecrets, Duration::from_secs(60)),
            network,
        );
        enricher
            .run(&[step], r#"{"id": "a b"}"#, &no_bindings(), None)
            .await
    }

    fn reason(e: &EnrichError) -> &'static str {
        match e {
            EnrichError::Permanent { reason, .. } => reason.as_str(),
            _ => "not permanent",
        }
    }

    #[tokio::test]
    async fn a_call_that_cannot_finish_before_the_deadline_is_not_started() {
        let base = api().await;
        let enricher = Enricher::new(
            SecretsCache::new(NoSecrets, Duration::from_secs(60)),
            NetworkPolicy::LOCAL,
        );
        let mut s = step(format!("{base}/slow"), OnMissing::Fail);
        s.timeout = Duration::from_secs(5);
        let deadline = chrono::Utc::now().timestamp_millis() + 3000;
        let started = std::time::Instant::now();
        let e = enricher
            .run(&[s], "{}", &no_bindings(), Some(deadline))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, EnrichError::Retryable { message, .. } if message.starts_with("not started")),
            "{e:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "nothing was called"
        );
    }

    #[tokio::test]
    async fn an_answer_longer_than_the_cap_is_refused_unread() {
        let base = api().await;
        let mut s = step(format!("{base}/big"), OnMissing::Fail);
        s.max_response_bytes = 64 * 1024;
        let e = run_step(s, NetworkPolicy::LOCAL).await.unwrap_err();
        assert_eq!(reason(&e), "enrich_invalid_response", "{e:?}");
        assert!(e.to_string().contains("longer than 65536 bytes"), "{e}");
        // The default cap (1 MiB) takes an answer of a few hundred KB.
        let mut s = step(format!("{base}/big"), OnMissing::Fail);
        s.timeout = Duration::from_secs(5);
        let ok = run_step(s, NetworkPolicy::LOCAL).await.unwrap();
        assert_eq!(ok["record"]["pad"].as_str().map(str::len), Some(300_000));
    }

    #[tokio::test]
    async fn under_the_deployed_rules_loopback_is_refused_before_and_after_resolution() {
        let base = api().await;
        let port = base.rsplit(':').next().unwrap();
        // A literal loopback address: refused before any connection.
        let e = run_step(
            step(format!("{base}/ok/1"), OnMissing::Fail),
            NetworkPolicy::DEPLOYED,
        )
        .await
        .unwrap_err();
        assert_eq!(reason(&e), "network_refused", "{e:?}");
        // A name that resolves to loopback: refused by the resolver, nothing sent.
        let e = run_step(
            step(format!("https://localhost:{port}/ok/1"), OnMissing::Fail),
            NetworkPolicy::DEPLOYED,
        )
        .await
        .unwrap_err();
        assert_eq!(reason(&e), "network_refused", "{e:?}");
        assert!(
            e.to_string()
                .contains("localhost resolves only to refused addresses"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn answers_are_bound_by_step_name_and_failures_classified() {
        let base = api().await;
        let ok = run(format!("{base}/ok/{{id}}"), OnMissing::Fail)
            .await
            .unwrap();
        assert_eq!(
            ok,
            json!({"record": {"id": "a b", "name": "Ada"}}),
            "the placeholder was encoded and decoded"
        );

        for code in [429, 500, 502, 503, 408, 401, 403] {
            let e = run(format!("{base}/status/{code}"), OnMissing::Fail)
                .await
                .unwrap_err();
            assert!(matches!(e, EnrichError::Retryable { .. }), "{code}: {e:?}");
        }
        let e = run(format!("{base}/slow"), OnMissing::Fail)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, EnrichError::Retryable { message, .. } if message.starts_with("timeout")),
            "{e:?}"
        );
        for (code, reason) in [
            (400, "enrich_failed"),
            (422, "enrich_failed"),
            (404, "enrich_not_found"),
        ] {
            let e = run(format!("{base}/status/{code}"), OnMissing::Fail)
                .await
                .unwrap_err();
            assert!(
                matches!(&e, EnrichError::Permanent { reason: r, .. } if r.as_str() == reason),
                "{code}: {e:?}"
            );
        }
        let e = run(format!("{base}/status/404"), OnMissing::Skip)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            EnrichError::Skip {
                step: "record".into()
            }
        );
        let e = run(format!("{base}/text"), OnMissing::Fail)
            .await
            .unwrap_err();
        assert!(
            matches!(
                &e,
                EnrichError::Permanent {
                    reason: Reason::EnrichInvalidResponse,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = run(format!("{base}/ok/{{missing}}"), OnMissing::Fail)
            .await
            .unwrap_err();
        assert!(
            matches!(
                &e,
                EnrichError::Permanent {
                    reason: Reason::EnrichUrl,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_graphql_answer_with_errors_is_not_the_record() {
        let base = api().await;
        let checked = |id: &str| {
            let mut s = step(format!("{base}/graphql/{id}"), OnMissing::Fail);
            let yaml = format!(
                "source:\n  verify: none\n  allow_unsigned: true\nenrich:\n  - name: record\n    url: {base}/x\n    success: graphql\nroutes:\n  - id: r\n    map: $\n    deliver:\n      url: {base}/y\n"
            );
            let dir = switchboard_shared::memory::DefinitionsDir::with("g", &yaml).unwrap();
            let loaded =
                switchboard_core::integration::load_file(&dir.path().join("g.yaml")).unwrap();
            s.check = loaded.enrich[0].check.clone();
            s.access.allow_http = true;
            s
        };
        let record = run_step(checked("ok"), NetworkPolicy::LOCAL).await.unwrap();
        assert_eq!(record["record"]["data"]["customer"]["id"], "gid://1");
        let e = run_step(checked("missing"), NetworkPolicy::LOCAL)
            .await
            .unwrap_err();
        assert_eq!(reason(&e), "enrich_failed", "{e}");
        assert!(e.to_string().contains("success check"), "{e}");
        let e = run_step(checked("busy"), NetworkPolicy::LOCAL)
            .await
            .unwrap_err();
        assert!(matches!(e, EnrichError::Retryable { .. }), "{e}");
    }
}
