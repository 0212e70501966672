//! The AI support assistant through `switchboard dev`, with the shipped `support-tickets`
//! definition and scripted receivers for Zendesk, the docs search, the backend, Slack, and a
//! model API that answers in Anthropic's or OpenAI's shape with their rate-limit headers and
//! enforces its own limit: a burst of tickets is paced under the limit and every one triaged
//! without a retry through SQS; 429s with `retry-after-ms` are waited out; a 529 storm escalates
//! to a person within the step's budget; a quota error stops calls at once; nothing is lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::transform::{fixture, shipped};
use crate::utils::receiver::Receiver;
use crate::utils::stack::{FAST, TestStack};

const WAIT: Duration = Duration::from_secs(90);

/// How the scripted model API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A triage record, within `limit` requests per wall-clock second (429 beyond it).
    Answer,
    /// The first `n` calls get 429 with `retry-after-ms: 300`, then answers.
    TooManyFirst(usize),
    /// 529 `overloaded_error`, always.
    Overloaded,
    /// Out of quota, always.
    Quota,
}

#[derive(Debug)]
struct ModelState {
    mode: Mode,
    limit: usize,
    /// (arrival, status answered)
    calls: Vec<(Instant, u16)>,
    second: (i64, usize),
}

/// A model API on loopback: `/v1/messages` (Anthropic) and `/v1/chat/completions` (OpenAI).
#[derive(Clone)]
struct ModelApi {
    base: String,
    state: Arc<Mutex<ModelState>>,
}

fn triage(prompt: &str) -> Value {
    let no_article = prompt.contains("No approved knowledge base article");
    json!({
        "intent": "order_status",
        "confidence": if no_article { 0.3 } else { 0.93 },
        "sentiment": "neutral",
        "sensitive_topics": [],
        "needs_human": no_article,
        "reason": if no_article { "No article answers it." } else { "The tracking article answers it." },
        "draft_reply": if no_article { Value::Null } else { json!("Your order is on its way: https://docs.example.com/kb/tracking") },
    })
}

impl ModelApi {
    async fn start(mode: Mode, limit: usize) -> Self {
        let state = Arc::new(Mutex::new(ModelState {
            mode,
            limit,
            calls: Vec::new(),
            second: (0, 0),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let s = Arc::clone(&state);
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let s = Arc::clone(&s);
                async move { answer(&s, uri.path(), &headers, &body) }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    fn set(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn calls(&self) -> Vec<(Instant, u16)> {
        self.state.lock().unwrap().calls.clone()
    }
}

fn answer(
    state: &Mutex<ModelState>,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> axum::response::Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let openai = path.ends_with("/chat/completions");
    let mut s = state.lock().unwrap();
    let now = chrono::Utc::now();
    if s.second.0 != now.timestamp() {
        s.second = (now.timestamp(), 0);
    }
    s.second.1 += 1;
    let over = s.second.1 > s.limit;
    let left = s.limit.saturating_sub(s.second.1);
    let reset_ms = 1000 - u64::from(now.timestamp_subsec_millis().min(999));
    let n = s.calls.len();
    let (status, json) = match s.mode {
        Mode::Quota if openai => (
            429,
            json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "code": "insufficient_quota"}}),
        ),
        Mode::Quota => (
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low to access the Anthropic API."}}),
        ),
        Mode::Overloaded => (
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
        Mode::TooManyFirst(k) if n < k => (
            429,
            json!({"error": {"type": "rate_limit_error", "message": "Rate limit reached for requests"}}),
        ),
        _ if over => (
            429,
            json!({"error": {"type": "rate_limit_error", "message": "Rate limit reached for requests"}}),
        ),
        _ => {
            let key_ok = if openai {
                headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer sk-test")
            } else {
                headers.get("x-api-key").is_some_and(|v| v == "sk-ant-test")
                    && headers.get("anthropic-version").is_some()
            };
            assert!(key_ok, "the model API key and version headers are sent");
            let prompt = if openai {
                assert_eq!(request["response_format"]["json_schema"]["strict"], true);
                request["messages"][1]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            } else {
                assert_eq!(request["output_config"]["format"]["type"], "json_schema");
                request["messages"][0]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            let record = triage(&prompt).to_string();
            if openai {
                (
                    200,
                    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": request["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": record, "refusal": null}}],
                    "usage": {"prompt_tokens": 700, "completion_tokens": 60, "total_tokens": 760}}),
                )
            } else {
                (
                    200,
                    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": request["model"],
                    "content": [{"type": "text", "text": record}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 700, "output_tokens": 60}}),
                )
            }
        }
    };
    s.calls.push((Instant::now(), status));
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(json)).into_response();
    let h = response.headers_mut();
    let put = |h: &mut HeaderMap, name: &'static str, value: String| {
        h.insert(name, value.parse().unwrap());
    };
    if openai {
        put(h, "x-ratelimit-limit-requests", s.limit.to_string());
        put(h, "x-ratelimit-remaining-requests", left.to_string());
        put(h, "x-ratelimit-reset-requests", format!("{reset_ms}ms"));
    } else {
        let reset = (now + chrono::Duration::milliseconds(reset_ms as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        put(h, "anthropic-ratelimit-requests-limit", s.limit.to_string());
        put(
            h,
            "anthropic-ratelimit-requests-remaining",
            left.to_string(),
        );
        put(h, "anthropic-ratelimit-requests-reset", reset);
    }
    if status == 429 && !matches!(s.mode, Mode::Quota) {
        put(h, "retry-after-ms", "300".into());
        put(h, "retry-after", "1".into());
    }
    response
}

struct Support {
    test: TestStack,
    zendesk: Receiver,
    slack: Receiver,
}

/// The shipped definition, its hosts on loopback; `openai` switches the model step to OpenAI's
/// shape; `changes` are replaced in the definition (a shorter budget keeps the storm test
/// short).
async fn support(model: &ModelApi, openai: bool, changes: &[(&str, &str)]) -> Support {
    let (docs, backend, zendesk, slack) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    docs.on(
        "/api/v1/search",
        vec![(
            StatusCode::OK,
            Some(fixture("support-tickets/confident-answer/enriched.json")["articles"].clone()),
        )],
    );
    backend.on(
        "/accounts/",
        vec![(
            StatusCode::OK,
            Some(fixture("support-tickets/confident-answer/enriched.json")["account"].clone()),
        )],
    );
    slack.on(
        "/api/chat.postMessage",
        vec![(StatusCode::OK, Some(json!({"ok": true})))],
    );
    let model_url = if openai {
        format!("{}/v1/chat/completions", model.base)
    } else {
        format!("{}/v1/messages", model.base)
    };
    let mut hosts = vec![
        ("https://docs.example.com", docs.base.as_str()),
        ("https://backend.example.com", backend.base.as_str()),
        ("https://api.anthropic.com/v1/messages", model_url.as_str()),
        ("https://example.zendesk.com", zendesk.base.as_str()),
        ("https://slack.com", slack.base.as_str()),
    ];
    hosts.extend_from_slice(changes);
    let mut files = shipped("support-tickets", &hosts);
    if openai {
        let definition = &mut files[0].1;
        *definition = definition
            .replace("provider: anthropic", "provider: openai")
            .replace(
                "{ type: api-key, header: x-api-key, secret: SECRET/anthropic-api-key }",
                "{ type: bearer, secret: SECRET/anthropic-api-key }",
            );
    }
    let key = if openai { "sk-test" } else { "sk-ant-test" };
    let test = TestStack::with_files(
        &files,
        &[
            ("zendesk-signing", "zendesk-webhook-secret"),
            ("docs-search-token", "docs"),
            ("backend-api-token", "backend"),
            ("anthropic-api-key", key),
            ("zendesk-api-token", "zendesk"),
            ("slack-bot-token", "xoxb"),
        ],
        FAST,
    )
    .await;
    Support {
        test,
        zendesk,
        slack,
    }
}

fn ticket(n: usize) -> Vec<u8> {
    let mut t = fixture("support-tickets/confident-answer/input.json");
    t["id"] = json!(format!("evt-ticket-{n}"));
    t["detail"]["id"] = json!(format!("{}", 40000 + n));
    serde_json::to_vec(&t).unwrap()
}

/// The ticket updates Zendesk received: (ticket id, what the assistant did).
fn updates(zendesk: &Receiver) -> Vec<(String, &'static str)> {
    zendesk
        .received()
        .iter()
        .map(|r| {
            let id = r
                .path
                .trim_start_matches("/api/v2/tickets/")
                .trim_end_matches(".json")
                .to_string();
            let what = if r.body["ticket"]["group_id"].is_number() {
                "escalated"
            } else {
                "drafted"
            };
            (id, what)
        })
        .collect()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_tickets_is_paced_under_the_model_apis_limit_and_every_one_is_triaged() {
    let model = ModelApi::start(Mode::Answer, 20).await;
    let s = support(&model, false, &[]).await;
    const TICKETS: usize = 200;
    let started = Instant::now();
    for n in 0..TICKETS {
        let (status, body) = s.test.post_signed("support-tickets", &ticket(n)).await;
        assert_eq!(status, 202, "{body}");
    }
    until("every ticket drafted", || {
        updates(&s.zendesk).len() >= TICKETS
    })
    .await;
    let took = started.elapsed();
    let updates = updates(&s.zendesk);
    assert_eq!(updates.len(), TICKETS, "each ticket once");
    assert!(
        updates.iter().all(|(_, what)| *what == "drafted"),
        "none fell back to a person"
    );
    let calls = model.calls();
    let limited = calls.iter().filter(|(_, status)| *status == 429).count();
    let answered = calls.iter().filter(|(_, status)| *status == 200).count();
    assert_eq!(answered, TICKETS, "one triage per ticket");
    // Paced by the shared limit: the API's own limit is (almost) never hit, and a 429 at a
    // second's edge is waited out in process, never by the retry schedule.
    assert!(limited <= 5, "{limited} answers of 429");
    assert_eq!(s.test.dev.metrics.count("retried", "enrich_unavailable"), 0);
    assert!(
        took >= Duration::from_secs(9),
        "200 at 20 a second: {took:?}"
    );
    eprintln!(
        "{TICKETS} tickets through the local pipeline in {:.1} s: {:.1} tickets/s ({limited} 429s)",
        took.as_secs_f64(),
        TICKETS as f64 / took.as_secs_f64()
    );
    // The audit of one interaction: what was sent, the answer, tokens, the decision.
    let audits: Vec<String> = s
        .test
        .archived()
        .await
        .into_iter()
        .filter(|k| k.starts_with("audit/support-tickets/"))
        .collect();
    assert_eq!(audits.len(), TICKETS, "one audit record per interaction");
    let s3 = aws_sdk_s3::Client::new(&s.test.dev.sdk);
    let object = s3
        .get_object()
        .bucket(&s.test.dev.resources.bucket)
        .key(&audits[0])
        .send()
        .await
        .unwrap();
    let audit: Value =
        serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(audit["step"], "triage");
    assert_eq!(audit["provider"], "anthropic");
    assert_eq!(audit["model"], "claude-sonnet-4-5");
    assert_eq!(
        audit["sent"]["articles"],
        json!(["kb-204", "kb-377"]),
        "approved ones only"
    );
    assert_eq!(audit["sent"]["account_fields"], json!(["plan", "status"]));
    assert_eq!(
        audit["prompt"],
        Value::Null,
        "no customer text unless the definition allows it"
    );
    assert_eq!(audit["record"]["intent"], "order_status");
    assert_eq!(audit["usage"]["input_tokens"], 700);
    assert_eq!(audit["decision"]["delivered"], json!(["draft-note"]));
    assert!(
        !audit.to_string().contains("sk-ant-test"),
        "never a credential"
    );
    s.test.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_a_529_storm_escalates_within_the_budget_and_a_quota_error_stops_calls()
{
    let model = ModelApi::start(Mode::TooManyFirst(2), 20).await;
    let s = support(
        &model,
        true,
        &[
            ("budget: 20s", "budget: 4s"),
            ("timeout: 10s", "timeout: 2s"),
        ],
    )
    .await;

    // Two 429s with retry-after-ms: 300, then the answer: drafted, each wait honoured.
    assert_eq!(
        s.test.post_signed("support-tickets", &ticket(1)).await.0,
        202
    );
    until("the draft", || updates(&s.zendesk).len() == 1).await;
    assert_eq!(updates(&s.zendesk)[0].1, "drafted");
    let calls = model.calls();
    assert_eq!(
        calls.iter().map(|c| c.1).collect::<Vec<_>>(),
        [429, 429, 200]
    );
    for pair in calls.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(290),
            "retry-after-ms honoured: {gap:?}"
        );
    }

    // A 529 storm: retried with backoff until the 4 s budget is spent, then a person has it.
    model.set(Mode::Overloaded);
    let before = model.calls().len();
    let started = Instant::now();
    assert_eq!(
        s.test.post_signed("support-tickets", &ticket(2)).await.0,
        202
    );
    until("the escalation", || updates(&s.zendesk).len() == 2).await;
    let took = started.elapsed();
    let escalated = &s.zendesk.received()[1];
    assert_eq!(updates(&s.zendesk)[1].1, "escalated");
    let note = escalated.body["ticket"]["comment"]["body"]
        .as_str()
        .unwrap();
    assert!(note.contains("model_unavailable"), "{note}");
    assert!(
        model.calls().len() - before >= 3,
        "backed off and tried again"
    );
    assert!(
        took < Duration::from_secs(15),
        "escalated within the budget: {took:?}"
    );
    until("support hears of it", || !s.slack.received().is_empty()).await;

    // Out of quota: one call, then no more; every ticket goes to a person with the reason.
    model.set(Mode::Quota);
    let before = model.calls().len();
    assert_eq!(
        s.test.post_signed("support-tickets", &ticket(3)).await.0,
        202
    );
    until("the first escalation", || updates(&s.zendesk).len() == 3).await;
    for n in 4..8 {
        assert_eq!(
            s.test.post_signed("support-tickets", &ticket(n)).await.0,
            202
        );
    }
    until("every escalation", || updates(&s.zendesk).len() == 7).await;
    assert_eq!(
        model.calls().len() - before,
        1,
        "no call after the quota error"
    );
    for r in &s.zendesk.received()[2..] {
        let note = r.body["ticket"]["comment"]["body"].as_str().unwrap();
        assert!(note.contains("model_quota"), "{note}");
    }
    assert!(s.test.dev.metrics.count("failed", "model_quota") >= 1);
    assert_eq!(
        s.test.depth(&s.test.dev.resources.events_dlq_url).await,
        0,
        "nothing lost"
    );
    s.test.dev.shutdown().await;
}

/// One model answer per event and step: a ticket replayed (with `--force`, so its routes are
/// sent again) is decided from the answer its audit record holds. The model is asked once,
/// and the audit record stays the decision first delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_ticket_reuses_its_model_answer() {
    use switchboard_cli::ops::{Stack, replay};
    let model = ModelApi::start(Mode::Answer, 20).await;
    let s = support(&model, false, &[]).await;
    let (status, body) = s.test.post_signed("support-tickets", &ticket(7)).await;
    assert_eq!(status, 202, "{body}");
    until("the ticket drafted", || updates(&s.zendesk).len() == 1).await;
    let audits = || async {
        s.test
            .archived()
            .await
            .into_iter()
            .filter(|k| k.starts_with("audit/support-tickets/"))
            .collect::<Vec<_>>()
    };
    let first = audits().await;
    assert_eq!(first.len(), 1);
    let before = s.test.archive_object_bytes(&first[0]).await;

    let stack = Stack::new(&s.test.dev.sdk, &s.test.prefix);
    let args = replay::ReplayArgs {
        integration: "support-tickets".into(),
        route: None,
        event_id: None,
        since: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        until: None,
        force: true,
        dry_run: false,
        yes: true,
        bucket: Some(s.test.dev.resources.bucket.clone()),
        integrations: s.test.dir.clone(),
    };
    let replayed = replay::replay(&stack, &s.test.dev.sdk, &args)
        .await
        .unwrap();
    assert_eq!(replayed.replayed, 1);
    until("the ticket drafted again", || {
        updates(&s.zendesk).len() == 2
    })
    .await;
    let answered = model.calls().iter().filter(|c| c.1 == 200).count();
    assert_eq!(answered, 1, "the model was asked once");
    assert_eq!(audits().await, first, "one audit record");
    assert_eq!(
        s.test.archive_object_bytes(&first[0]).await,
        before,
        "the decision first delivered"
    );
    // `events show` names the model step and what came of it, from its audit record.
    let event = s.test.archived_events().await[0].1.event_id().clone();
    let view = shown(&s.test, &event).await;
    let steps = &view.model_steps;
    assert_eq!(steps.len(), 1, "{steps:?}");
    let text = switchboard_cli::ops::events::render_timeline(&view);
    assert!(text.contains("model:     step triage"), "{text}");
    // The replay's line: the recorded answer stood for the model step; the API steps called.
    assert!(text.contains("enrich:    step triage: recorded"), "{text}");
    assert!(text.contains("enrich:    step articles: called"), "{text}");
    assert_eq!(
        (steps[0].outcome.as_str(), steps[0].audit_key.as_str()),
        ("answered", first[0].as_str())
    );
    s.test.dev.shutdown().await;
}

/// The event as `events show` finds it.
async fn shown(
    test: &TestStack,
    event: &switchboard_core::ids::EventId,
) -> switchboard_cli::ops::events::EventView {
    use switchboard_cli::ops::events;
    let (archive, mut lookups) = events::open(&test.dev.sdk, &test.reading()).await;
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let found = events::show(&archive, &mut lookups, event, None, since, false, None)
        .await
        .unwrap();
    found.events.expect("the event in the archive")
}
