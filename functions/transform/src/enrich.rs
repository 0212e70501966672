//! Enrichment: the API calls an integration makes before mapping ("the webhook says something
//! changed, the API says what"). Each step's JSON answer is bound as `$enriched.<name>` for the
//! later steps and the routes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_core::archive::{StepDecision, StepOutcome};
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
    /// What came of each step, for the event's archive line.
    pub steps: Vec<StepDecision>,
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
        self.run_recorded(steps, body, bindings, deadline_ms, &HashMap::new())
            .await
    }

    /// [`Enricher::run`], a model step whose answer for this event is `recorded` (its audit
    /// record: the event retried, redriven or replayed) taking that answer without a call: one
    /// model answer per event and step, the one delivered.
    pub async fn run_recorded(
        &self,
        steps: &[EnrichStep],
        body: &str,
        bindings: &Bindings,
        deadline_ms: Option<i64>,
        recorded: &HashMap<String, Value>,
    ) -> Result<Enriched, EnrichError> {
        let mut enriched = serde_json::Map::new();
        let (mut interactions, mut fates) = (Vec::new(), Vec::new());
        let fate = |step: &EnrichStep, outcome, reason: Option<&str>, latency_ms| StepDecision {
            step: step.name.clone(),
            outcome,
            reason: reason.map(str::to_string),
            latency_ms,
        };
        for step in steps {
            if let Some(answer) = recorded.get(&step.name).filter(|_| step.model.is_some()) {
                tracing::info!(step = %step.name, "the model's recorded answer for this event stands: not asked again");
                enriched.insert(step.name.clone(), answer.clone());
                fates.push(fate(step, StepOutcome::Recorded, None, None));
                continue;
            }
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
                fates.push(fate(step, StepOutcome::Skipped, Some("when_false"), None));
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
            let took = Some(started.elapsed().as_millis() as u64);
            let (record, usage, failure) = match made {
                Ok((record, usage)) => {
                    fates.push(fate(step, StepOutcome::Called, None, took));
                    (record, usage, None)
                }
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
                    let why = Some(failure_reason(step, &e));
                    fates.push(fate(step, StepOutcome::Fallback, why, took));
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
            steps: fates,
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
}

mod calls;
mod limits;
mod prepare;

use limits::backoff;

use prepare::{Prepared, prepare, record};
pub use prepare::{extract, failure, failure_reason, fall_back};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
