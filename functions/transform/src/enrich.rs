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
use switchboard_shared::metrics::{Metrics, Outcome};

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
    /// How long a model API out of quota is held off ([`QUOTA_HOLD`]).
    quota_hold: Duration,
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
            quota_hold: QUOTA_HOLD,
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
                    self.metrics.enrichment(
                        &step.name,
                        Outcome::Fallback,
                        failure_reason(step, &e),
                    );
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
                self.take_rate(&destination, max, &fits)
                    .await
                    .map_err(unavailable)?;
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

    /// One of the API's `max` calls this second, shared by every function: waits for the next
    /// second while that `fits` the step's budget. Fails open when the limiter cannot be read.
    async fn take_rate(
        &self,
        destination: &str,
        max: u32,
        fits: &impl Fn(Duration) -> bool,
    ) -> Result<(), String> {
        loop {
            let now = chrono::Utc::now();
            match self
                .limiter
                .take_rate(destination, now.timestamp(), max)
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    let next = Duration::from_millis(
                        1000 - u64::from(now.timestamp_subsec_millis().min(999)),
                    );
                    if !fits(next) {
                        return Err(format!(
                            "its {max} calls a second stayed taken through the step's budget"
                        ));
                    }
                    tokio::time::sleep(next).await;
                }
                // Fail open: the limiter's table in a bad minute must not stop calls.
                Err(e) => {
                    tracing::warn!(error = %e, "the shared rate limit could not be read");
                    return Ok(());
                }
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
            (Instant::now() + self.quota_hold, why.to_string()),
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
        *after = self.heed_limits(step, destination, &response).await;
        if step.model.is_some()
            && !(200..=299).contains(&status)
            && !matches!(status, 401 | 403 | 404 | 410)
        {
            return Err(self.model_refusal(step, destination, response).await);
        }
        if let Some(refused) = refusal(step, status) {
            return Err(refused);
        }
        answer(step, response).await
    }

    /// What the answer's headers say of the API's limits: when to come back (`Retry-After`, or
    /// the window's reset when nothing is left in it). A 429/529 or a spent window holds this
    /// API off here, and with a shared limit in every function.
    async fn heed_limits(
        &self,
        step: &EnrichStep,
        destination: &str,
        response: &reqwest::Response,
    ) -> Option<Duration> {
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
        let after = switchboard_core::model::retry_after(header).or(exhausted);
        if !matches!(response.status().as_u16(), 429 | 529) && exhausted.is_none() {
            return after;
        }
        self.pace(destination, after);
        // With a shared limit, every function holds off too: the seconds until the reset
        // (as far as a step's budget reaches) are taken.
        if let (Some(max), Some(wait)) = (step.limits.max_per_second, after) {
            let now = chrono::Utc::now();
            // The seconds that end before the reset (a wait inside this second is this
            // function's alone: the shared counter counts whole seconds).
            let until = now + chrono::Duration::from_std(wait.min(MAX_TIMEOUT)).unwrap_or_default();
            if let Err(e) = self
                .limiter
                .exhaust(destination, now.timestamp(), until.timestamp() - 1, max)
                .await
            {
                tracing::warn!(error = %e, "sharing the API's wait failed; this function holds off alone");
            }
        }
        after
    }

    /// A model API's refusal, read from its error body: out of quota (no calls for a while),
    /// worth a retry, or permanent.
    async fn model_refusal(
        &self,
        step: &EnrichStep,
        destination: &str,
        response: reqwest::Response,
    ) -> EnrichError {
        let status = response.status().as_u16();
        let answer = http::read_capped(response, 64 * 1024)
            .await
            .map(|c| serde_json::from_slice(&c.bytes).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        match switchboard_core::model::classify(status, &answer) {
            switchboard_core::model::ErrorClass::Quota(why) => {
                self.stop_calls(destination, &why);
                tracing::error!(step = %step.name, destination, why = %why, "model API out of quota: no calls for a while");
                self.metrics
                    .enrichment(&step.name, Outcome::Failed, Reason::ModelQuota.as_str());
                EnrichError::permanent(step, Reason::ModelQuota, why)
            }
            switchboard_core::model::ErrorClass::Retry => {
                EnrichError::retryable(step, format!("the model API answered {status}"))
            }
            switchboard_core::model::ErrorClass::Permanent(why) => {
                EnrichError::permanent(step, Reason::EnrichFailed, why)
            }
        }
    }
}

/// What an answer that is not a 2xx means for the step (`None` for a 2xx).
fn refusal(step: &EnrichStep, status: u16) -> Option<EnrichError> {
    let permanent = |reason, message| EnrichError::permanent(step, reason, message);
    Some(match status {
        200..=299 => return None,
        404 | 410 => match step.on_missing {
            OnMissing::Skip => EnrichError::Skip {
                step: step.name.clone(),
            },
            OnMissing::Fail => permanent(
                Reason::EnrichNotFound,
                format!("the API answered {status}: the record is not there"),
            ),
        },
        // No credential to refresh: perhaps a gateway's bad minute; retry through SQS.
        401 | 403 => EnrichError::retryable(step, format!("the API answered {status}")),
        s if delivery_policy::retryable_status(s) => {
            EnrichError::retryable(step, format!("the API answered {status}"))
        }
        _ => permanent(Reason::EnrichFailed, format!("the API answered {status}")),
    })
}

/// A 2xx answer read (to the step's cap), parsed, held to the step's success check, and made
/// its record.
async fn answer(
    step: &EnrichStep,
    response: reqwest::Response,
) -> Result<(Value, Option<switchboard_core::model::Usage>), EnrichError> {
    let retryable = |message| EnrichError::retryable(step, message);
    let permanent = |reason, message| EnrichError::permanent(step, reason, message);
    let status = response.status().as_u16();
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

mod prepare;

use prepare::{Prepared, prepare, record};
pub use prepare::{extract, failure, failure_reason, fall_back};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
