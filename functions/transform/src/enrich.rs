//! Enrichment: the API calls an integration makes before mapping ("the webhook says something
//! changed, the API says what"). Each step's JSON answer is bound as `$enriched.<name>` for the
//! later steps and the routes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_core::integration::{EnrichMethod, EnrichStep, OnMissing};
use switchboard_core::mapping::{Bindings, Scope};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::{RateLimiter, SecretStore};
use switchboard_core::reason::Reason;
use switchboard_core::secrets::SecretsCache;
use switchboard_core::{deadline, delivery_policy};
use switchboard_shared::credentials::Credentials;
use switchboard_shared::http::{self, AuthError, GuardedHttp, RequestError};
use switchboard_shared::metrics::Metrics;

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

/// A step's call, filled from the event: its URL and its body; for a model step its prompt
/// and what the audit says was sent.
struct Prepared {
    url: Result<url::Url, String>,
    body: Option<Value>,
    prompt: Option<String>,
    sent: Option<Value>,
}

impl Default for Prepared {
    fn default() -> Self {
        Self {
            url: Err(String::new()),
            body: None,
            prompt: None,
            sent: None,
        }
    }
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
    let (mut body, mut prompt, mut sent) = (body, None, None);
    if let Some(model) = &step.model {
        let text = match model.prompt.evaluate_in(scope) {
            Ok(Some(Value::String(text))) => text,
            Ok(other) => {
                return Err(permanent(
                    Reason::MappingError,
                    format!(
                        "the model's prompt must yield text, it yielded {}",
                        other.map_or("nothing".to_string(), |v| format!(
                            "a {}",
                            crate::pipeline::type_name(&v)
                        ))
                    ),
                ));
            }
            Err(e) => {
                return Err(permanent(
                    Reason::MappingError,
                    format!("the model's prompt failed: {e}"),
                ));
            }
        };
        body = Some(model.call.request(&text));
        sent = Some(match &model.audit {
            Some(audit) => audit
                .evaluate_in(scope)
                .ok()
                .flatten()
                .unwrap_or(Value::Null),
            None => Value::Null,
        });
        prompt = Some(text);
    }
    Ok(Some(Prepared {
        url: step.url.render(scope),
        body,
        prompt,
        sent,
    }))
}

/// What of a step's answer is the record: a model step's structured answer (read and checked
/// against its schema), else its `result` over the answer (the whole answer without one).
/// Nothing or null there is a missing record, as a 404 is (`on_missing`). `switchboard check`
/// applies it to a fixture's answers as this function does.
pub fn extract(step: &EnrichStep, answer: Value) -> Result<Value, EnrichError> {
    record(step, answer).map(|(record, _)| record)
}

fn record(
    step: &EnrichStep,
    answer: Value,
) -> Result<(Value, Option<switchboard_core::model::Usage>), EnrichError> {
    use switchboard_core::model::AnswerError;
    if let Some(model) = &step.model {
        return match model.call.read(&answer) {
            Ok(read) => Ok((read.record, Some(read.usage))),
            Err(AnswerError::Refused(why)) => Err(EnrichError::permanent(
                step,
                Reason::ModelRefused,
                format!("the model refused: {why}"),
            )),
            Err(AnswerError::Invalid(why)) => Err(EnrichError::permanent(
                step,
                Reason::ModelInvalidAnswer,
                why,
            )),
        };
    }
    let Some(result) = &step.result else {
        return Ok((answer, None));
    };
    match result.evaluate(&answer, &[]) {
        Ok(Some(v)) if !v.is_null() => Ok((v, None)),
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

/// The reason code a step's failure has (`$failure.reason`).
pub fn failure_reason(step: &EnrichStep, e: &EnrichError) -> &'static str {
    match e {
        EnrichError::Permanent { reason, .. } => reason.as_str(),
        EnrichError::Skip { .. } => Reason::EnrichNotFound.as_str(),
        EnrichError::Retryable { .. } if step.model.is_some() => Reason::ModelUnavailable.as_str(),
        EnrichError::Retryable { .. } => Reason::EnrichUnavailable.as_str(),
    }
}

/// `$failure` of a step's fallback: `{reason, message}`.
pub fn failure(step: &EnrichStep, e: &EnrichError) -> Value {
    let message = match e {
        EnrichError::Retryable { message, .. } | EnrichError::Permanent { message, .. } => {
            message.clone()
        }
        EnrichError::Skip { .. } => "the record is not there".to_string(),
    };
    serde_json::json!({"reason": failure_reason(step, e), "message": message})
}

/// A failed step's fallback record over the event (`$failure` bound), when it has one.
pub fn fall_back(
    step: &EnrichStep,
    e: &EnrichError,
    scope: &Scope,
) -> Option<Result<Value, EnrichError>> {
    let fallback = step.fallback.as_ref()?;
    let failure = failure(step, e);
    Some(
        match fallback.evaluate_in_with(scope, &[("failure", &failure)]) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(EnrichError::permanent(
                step,
                Reason::MappingError,
                "the step's fallback produced nothing".into(),
            )),
            Err(err) => Err(EnrichError::permanent(
                step,
                Reason::MappingError,
                format!("the step's fallback failed: {err}"),
            )),
        },
    )
}

/// The wait before try `n + 1` of a step with a budget: doubling from 500 ms, spread ±20% so
/// concurrent events do not come back together.
fn backoff(n: u32) -> Duration {
    let base = FIRST_BACKOFF.as_secs_f64() * 2f64.powi(n.saturating_sub(1).min(6) as i32);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = 1.0 + delivery_policy::JITTER * ((f64::from(nanos % 2001) / 1000.0) - 1.0);
    Duration::from_secs_f64(base * spread)
}

/// Makes enrichment calls with the definition's auth, reading secrets through a cache.
#[derive(Debug)]
pub struct Enricher<K, L> {
    http: GuardedHttp,
    credentials: Credentials<K>,
    /// The shared per-second limits (`limits.max_per_second`), across every function.
    limiter: L,
    metrics: Metrics,
    /// APIs this container holds off until then: their rate-limit headers said nothing is
    /// left in the window, or a 429 said when to come back.
    paused: Mutex<HashMap<String, Instant>>,
    /// Model APIs out of quota or over a spend limit: no call until then, and why.
    quota: Mutex<HashMap<String, (Instant, String)>>,
}

/// How long a model API that answered with a quota or spend-limit error is not called again
/// by this container (every event meanwhile takes its step's fallback at once).
pub const QUOTA_HOLD: Duration = Duration::from_secs(300);

/// The first wait between two tries of a step with a budget (doubled each time, ±20%).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// What one step made: its record, and for a model step what the audit keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// The step.
    pub step: String,
    /// The provider and model asked.
    pub provider: &'static str,
    /// The model's id.
    pub model: String,
    /// What was sent, as the step's `model.audit` says (or the names of the earlier steps).
    pub sent: Value,
    /// The prompt's text, when the definition allows the audit to keep it.
    pub prompt: Option<String>,
    /// The model's structured answer, or the fallback record.
    pub record: Value,
    /// Why the fallback was taken, if it was (`{reason, message}`).
    pub failure: Option<Value>,
    /// Tokens in and out.
    pub usage: Option<switchboard_core::model::Usage>,
    /// Calls made.
    pub attempts: u32,
    /// From the first call to the record.
    pub latency_ms: u64,
}

/// `$enriched`, and the model interactions behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Enriched {
    /// Each step's record by name.
    pub value: Value,
    /// One per model step that ran.
    pub interactions: Vec<Interaction>,
}

/// The longest any single enrichment call may take (definitions are refused beyond it).
const MAX_TIMEOUT: std::time::Duration = switchboard_core::integration::MAX_ENRICH_TIMEOUT;

impl<K: SecretStore, L: RateLimiter> Enricher<K, L> {
    /// An enricher reading credentials through `secrets`, calling where `network` allows,
    /// pacing through `limiter`.
    pub fn new(
        secrets: SecretsCache<K>,
        network: NetworkPolicy,
        limiter: L,
        metrics: Metrics,
    ) -> Self {
        let http = GuardedHttp::new(network, MAX_TIMEOUT);
        Self {
            credentials: Credentials::new(secrets, http.clone(), MAX_TIMEOUT),
            http,
            limiter,
            metrics,
            paused: Mutex::new(HashMap::new()),
            quota: Mutex::new(HashMap::new()),
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
    ) -> Result<Enriched, EnrichError> {
        let mut enriched = serde_json::Map::new();
        let mut interactions = Vec::new();
        for step in steps {
            let so_far = Value::Object(enriched.clone());
            // The scope is not Send: fill the URL and the body, and drop it before calling.
            let prepared = match Scope::from_json(body, &bindings.pairs_with(&so_far)) {
                Ok(scope) => prepare(step, &scope)?,
                Err(e) => Some(Prepared {
                    url: Err(e.to_string()),
                    ..Prepared::default()
                }),
            };
            let Some(prepared) = prepared else {
                continue;
            };
            let started = Instant::now();
            let mut attempts = 0;
            let made = self
                .step(
                    step,
                    prepared.url,
                    prepared.body.as_ref(),
                    deadline_ms,
                    &mut attempts,
                )
                .await;
            let (record, usage, failure) = match made {
                Ok((record, usage)) => (record, usage, None),
                Err(e) => {
                    let Some(Ok(record)) = Scope::from_json(body, &bindings.pairs_with(&so_far))
                        .ok()
                        .and_then(|scope| fall_back(step, &e, &scope))
                    else {
                        return Err(e);
                    };
                    tracing::warn!(step = %step.name, reason = failure_reason(step, &e), error = %e, "enrichment failed: its fallback stands in");
                    self.metrics
                        .enrichment(&step.name, "fallback", failure_reason(step, &e));
                    (record, None, Some(failure(step, &e)))
                }
            };
            if let Some(model) = &step.model {
                interactions.push(Interaction {
                    step: step.name.clone(),
                    provider: model.call.provider.as_str(),
                    model: model.call.model.clone(),
                    sent: prepared.sent.unwrap_or(Value::Null),
                    prompt: prepared.prompt.filter(|_| model.audit_prompt),
                    record: record.clone(),
                    failure,
                    usage,
                    attempts,
                    latency_ms: started.elapsed().as_millis() as u64,
                });
            }
            enriched.insert(step.name.clone(), record);
        }
        Ok(Enriched {
            value: Value::Object(enriched),
            interactions,
        })
    }

    /// A step's calls within its budget: held off while its API said to wait (rate-limit
    /// headers, `retry-after`) or its quota is spent, paced by its shared per-second limit,
    /// and tried again on a 429, 529, 5xx or timeout while the budget lasts. Without a budget,
    /// one call; a retryable failure retries the event through SQS.
    async fn step(
        &self,
        step: &EnrichStep,
        url: Result<url::Url, String>,
        body: Option<&Value>,
        deadline_ms: Option<i64>,
        attempts: &mut u32,
    ) -> Result<(Value, Option<switchboard_core::model::Usage>), EnrichError> {
        let url = url.map_err(|m| {
            EnrichError::permanent(step, Reason::EnrichUrl, format!("cannot fill the URL: {m}"))
        })?;
        let destination = url.origin().ascii_serialization();
        let started = Instant::now();
        // Whether waiting this long still leaves a whole call inside the budget and the
        // function's deadline.
        let fits = |wait: Duration| {
            let budget = step.budget.unwrap_or(step.timeout);
            let now_ms = chrono::Utc::now().timestamp_millis() + wait.as_millis() as i64;
            started.elapsed() + wait + step.timeout <= budget
                && deadline::leaves_time(step.timeout, deadline_ms, now_ms)
        };
        let unavailable = |why: String| EnrichError::retryable(step, why);
        loop {
            if let Some(why) = self.out_of_quota(&destination) {
                return Err(EnrichError::permanent(step, Reason::ModelQuota, why));
            }
            if let Some(wait) = self.paused_for(&destination) {
                if !fits(wait) {
                    return Err(unavailable(format!(
                        "its API asked to wait {} ms, past the step's budget",
                        wait.as_millis()
                    )));
                }
                tokio::time::sleep(wait).await;
            }
            if let Some(max) = step.limits.max_per_second {
                loop {
                    let now = chrono::Utc::now();
                    match self
                        .limiter
                        .take_rate(&destination, now.timestamp(), max)
                        .await
                    {
                        Ok(true) => break,
                        Ok(false) => {
                            let next = Duration::from_millis(
                                1000 - u64::from(now.timestamp_subsec_millis().min(999)),
                            );
                            if !fits(next) {
                                return Err(unavailable(format!(
                                    "its {max} calls a second stayed taken through the step's budget"
                                )));
                            }
                            tokio::time::sleep(next).await;
                        }
                        // Fail open: the limiter's table in a bad minute must not stop calls.
                        Err(e) => {
                            tracing::warn!(error = %e, "the shared rate limit could not be read");
                            break;
                        }
                    }
                }
            }
            *attempts += 1;
            let mut after = None;
            match self
                .once(step, &url, body, deadline_ms, &destination, &mut after)
                .await
            {
                Err(e @ EnrichError::Retryable { .. }) if step.budget.is_some() => {
                    let wait = after.unwrap_or_else(|| backoff(*attempts));
                    if !fits(wait) {
                        return Err(e);
                    }
                    tracing::info!(step = %step.name, attempt = *attempts, wait_ms = wait.as_millis() as u64, error = %e, "trying again within the step's budget");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Notes what an answer's rate-limit headers or `retry-after` say about the next call.
    fn pace(&self, destination: &str, wait: Option<Duration>) {
        let Some(wait) = wait.filter(|w| !w.is_zero()) else {
            return;
        };
        let until = Instant::now() + wait.min(MAX_TIMEOUT);
        let mut paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        let entry = paused.entry(destination.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    fn paused_for(&self, destination: &str) -> Option<Duration> {
        let paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        paused
            .get(destination)
            .and_then(|until| until.checked_duration_since(Instant::now()))
    }

    fn out_of_quota(&self, destination: &str) -> Option<String> {
        let quota = self.quota.lock().unwrap_or_else(|p| p.into_inner());
        quota
            .get(destination)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, why)| format!("out of quota (not called again for a while): {why}"))
    }

    fn stop_calls(&self, destination: &str, why: &str) {
        self.quota.lock().unwrap_or_else(|p| p.into_inner()).insert(
            destination.to_string(),
            (Instant::now() + QUOTA_HOLD, why.to_string()),
        );
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
        if let Some(model) = &step.model {
            for (name, value) in model.call.headers() {
                request = request.header(*name, *value);
            }
        }
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

    /// One call (with its credential refreshed once on a 401/403) and what its answer means;
    /// `after` is set when the answer says when to come back.
    async fn once(
        &self,
        step: &EnrichStep,
        url: &url::Url,
        body: Option<&Value>,
        deadline_ms: Option<i64>,
        destination: &str,
        after: &mut Option<Duration>,
    ) -> Result<(Value, Option<switchboard_core::model::Usage>), EnrichError> {
        let retryable = |message| EnrichError::retryable(step, message);
        let permanent = |reason, message| EnrichError::permanent(step, reason, message);
        // A 401/403 to a cached credential: read it afresh (and mint a new token) and ask once
        // more, at once; a second refusal stands.
        let refused = |r: &reqwest::Response| matches!(r.status().as_u16(), 401 | 403);
        let (response, refreshed) = self
            .credentials
            .sending_refreshed_once(
                &step.auth,
                || self.call(step, url, body, deadline_ms),
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
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // Nothing left in the window: hold off until it resets (every step of this API).
        let exhausted = switchboard_core::model::pacing(header, chrono::Utc::now())
            .filter(|p| p.remaining == 0)
            .map(|p| p.reset);
        *after = switchboard_core::model::retry_after(header).or(exhausted);
        if matches!(status, 429 | 529) || exhausted.is_some() {
            self.pace(destination, *after);
            // With a shared limit, every function holds off too: the seconds until the reset
            // (as far as a step's budget reaches) are taken.
            if let (Some(max), Some(wait)) = (step.limits.max_per_second, *after) {
                let now = chrono::Utc::now();
                // The seconds that end before the reset (a wait inside this second is this
                // function's alone: the shared counter counts whole seconds).
                let until =
                    now + chrono::Duration::from_std(wait.min(MAX_TIMEOUT)).unwrap_or_default();
                if let Err(e) = self
                    .limiter
                    .exhaust(destination, now.timestamp(), until.timestamp() - 1, max)
                    .await
                {
                    tracing::warn!(error = %e, "sharing the API's wait failed; this function holds off alone");
                }
            }
        }
        if step.model.is_some()
            && !(200..=299).contains(&status)
            && !matches!(status, 401 | 403 | 404 | 410)
        {
            let answer = http::read_capped(response, 64 * 1024)
                .await
                .map(|c| serde_json::from_slice(&c.bytes).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            return Err(match switchboard_core::model::classify(status, &answer) {
                switchboard_core::model::ErrorClass::Quota(why) => {
                    self.stop_calls(destination, &why);
                    tracing::error!(step = %step.name, destination, why = %why, "model API out of quota: no calls for a while");
                    self.metrics
                        .enrichment(&step.name, "failed", Reason::ModelQuota.as_str());
                    permanent(Reason::ModelQuota, why)
                }
                switchboard_core::model::ErrorClass::Retry => {
                    retryable(format!("the model API answered {status}"))
                }
                switchboard_core::model::ErrorClass::Permanent(why) => {
                    permanent(Reason::EnrichFailed, why)
                }
            });
        }
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
            None => record(step, value),
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
