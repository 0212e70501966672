//! Tests of `enrich.rs`.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use switchboard_core::integration::Auth;
use switchboard_core::ports::PortError;
use switchboard_core::secret::SecretString;
use switchboard_core::url_template::UrlTemplate;

use super::*;
use switchboard_shared::memory::MemoryTable;

/// An enricher with no shared limits and no metrics.
fn enricher_for<K: SecretStore>(
    secrets: SecretsCache<K>,
    network: NetworkPolicy,
) -> Enricher<K, MemoryTable> {
    Enricher::new(secrets, network, MemoryTable::default(), Metrics::Off)
}

fn no_bindings() -> Bindings {
    Bindings::new(json!({}), "evt", "test", "2026-01-01T00:00:00Z")
}

/// These steps use no credentials: a read would be a bug.
struct NoSecrets;

impl SecretStore for NoSecrets {
    async fn get(&self, id: &str) -> Result<SecretString, PortError> {
        panic!("no secret should be read, asked for {id}")
    }

    async fn get_stages(
        &self,
        id: &str,
    ) -> Result<switchboard_core::ports::SecretStages, PortError> {
        panic!("no secret should be read, asked for {id}")
    }
}

/// A token store counting its reads.
struct Token(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl SecretStore for Token {
    async fn get(&self, _: &str) -> Result<SecretString, PortError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(SecretString::new("t0ken"))
    }
}

#[tokio::test]
async fn a_refused_credential_is_read_afresh_once_then_the_refusal_stands() {
    let base = api().await;
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = Token(std::sync::Arc::clone(&reads));
    let enricher = enricher_for(
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
    // An API whose window is spent: its answer says none left for 2 s.
    async fn exhausted() -> axum::response::Response {
        use axum::response::IntoResponse;
        (
            [
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "2s"),
            ],
            axum::Json(json!({"id": 1})),
        )
            .into_response()
    }
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
    // An API whose rate-limit headers say whatever the path says (`/hostile/<status>/<v>`).
    async fn hostile(
        axum::extract::Path((status, value)): axum::extract::Path<(u16, String)>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        (
            StatusCode::from_u16(status).unwrap(),
            [
                ("retry-after", value.as_str()),
                ("retry-after-ms", value.as_str()),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", value.as_str()),
            ],
            axum::Json(json!({"id": 1})),
        )
            .into_response()
    }
    let app = axum::Router::new()
        .route("/gql", axum::routing::post(graphql))
        .route("/hostile/{status}/{value}", axum::routing::get(hostile))
        .route("/exhausted", axum::routing::get(exhausted))
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
        model: None,
        budget: None,
        limits: Default::default(),
        fallback: None,
    }
}

fn expression(text: &str) -> switchboard_core::mapping::Mapping {
    switchboard_core::mapping::Mapping::parse(text, Default::default()).unwrap()
}

#[tokio::test]
async fn an_answer_saying_the_window_is_spent_holds_every_function_off_until_its_reset() {
    let base = api().await;
    let table = MemoryTable::default();
    let enricher = Enricher::new(
        SecretsCache::new(NoSecrets, Duration::from_secs(60)),
        NetworkPolicy::LOCAL,
        table.clone(),
        Metrics::Off,
    );
    let mut s = step(format!("{base}/exhausted"), OnMissing::Fail);
    s.limits.max_per_second = Some(5);
    let now = chrono::Utc::now().timestamp();
    enricher
        .run(&[s], "{}", &no_bindings(), None)
        .await
        .unwrap();
    let origin = url::Url::parse(&base)
        .unwrap()
        .origin()
        .ascii_serialization();
    // The shared limiter, as any other function sees it: the seconds before the reset are
    // taken (the next one whichever second the call fell in), the ones after it free.
    assert!(!table.take_rate(&origin, now + 1, 5).await.unwrap());
    assert!(table.take_rate(&origin, now + 4, 5).await.unwrap());
    // And this function holds off itself.
    assert!(enricher.paused_for(&origin).is_some());
}

#[tokio::test]
async fn no_rate_limit_header_value_panics_a_step() {
    let base = api().await;
    for status in [200, 429] {
        for value in [
            "inf",
            "1e300",
            "NaN",
            "-1",
            "99999999999999999999h",
            "1e300h",
        ] {
            let mut s = step(format!("{base}/hostile/{status}/{value}"), OnMissing::Fail);
            s.budget = Some(Duration::from_millis(200));
            s.limits.max_per_second = Some(5);
            let result = run_step(s, NetworkPolicy::LOCAL).await;
            match status {
                200 => assert!(result.is_ok(), "{value}: {result:?}"),
                _ => assert!(
                    matches!(result, Err(EnrichError::Retryable { .. })),
                    "{value}: {result:?}"
                ),
            }
        }
    }
}

#[tokio::test]
async fn a_graphql_step_posts_its_body_built_from_the_event_and_keeps_its_result() {
    let base = api().await;
    let enricher = enricher_for(
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
        .unwrap()
        .value;
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
        .unwrap()
        .value;
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
    let enricher = enricher_for(
        SecretsCache::new(NoSecrets, Duration::from_secs(60)),
        network,
    );
    enricher
        .run(&[step], r#"{"id": "a b"}"#, &no_bindings(), None)
        .await
        .map(|e| e.value)
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
    let enricher = enricher_for(
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
        let loaded = switchboard_core::integration::load_file(&dir.path().join("g.yaml")).unwrap();
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

/// A model API that said it is out of quota is not called for the hold, then is again: the
/// hold ends by itself, without a deploy.
#[tokio::test]
async fn a_model_api_out_of_quota_is_held_off_for_the_hold_and_then_asked_again() {
    let mut enricher = enricher_for(
        SecretsCache::new(NoSecrets, Duration::from_secs(60)),
        NetworkPolicy::LOCAL,
    );
    enricher.quota_hold = Duration::from_millis(300);
    let api = "https://api.openai.com";
    enricher.stop_calls(api, "insufficient_quota");
    let held = enricher.out_of_quota(api).expect("held off");
    assert!(held.contains("insufficient_quota"), "{held}");
    assert_eq!(enricher.out_of_quota("https://api.anthropic.com"), None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(enricher.out_of_quota(api), None, "the hold has ended");
}
