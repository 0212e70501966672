//! Enrichment: the API calls an integration makes before mapping ("the webhook says something
//! changed, the API says what"). Each step's JSON answer is bound as `$enriched.<name>` for the
//! later steps and the routes.

use serde_json::Value;
use switchboard_shared::http::{self, AuthError};
use switchboard_shared::integration::{EnrichStep, OnMissing};
use switchboard_shared::ports::SecretStore;
use switchboard_shared::secrets::SecretsCache;

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
        reason: &'static str,
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
pub struct Enricher<K> {
    http: reqwest::Client,
    secrets: SecretsCache<K>,
}

/// The longest any single enrichment call may take, whatever its step says.
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl<K: SecretStore> Enricher<K> {
    /// An enricher reading credentials through `secrets`.
    pub fn new(secrets: SecretsCache<K>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: http::client(MAX_TIMEOUT)?,
            secrets,
        })
    }

    /// Runs every step in order; the result is the `$enriched` object (`{}` when there are no
    /// steps).
    pub async fn run(
        &self,
        steps: &[EnrichStep],
        input: &Value,
        headers: &Value,
        event: &Value,
    ) -> Result<Value, EnrichError> {
        let mut enriched = serde_json::Map::new();
        for step in steps {
            let so_far = Value::Object(enriched.clone());
            let bindings = [
                ("headers", headers),
                ("event", event),
                ("enriched", &so_far),
            ];
            let value = self.step(step, input, &bindings).await?;
            enriched.insert(step.name.clone(), value);
        }
        Ok(Value::Object(enriched))
    }

    async fn step(
        &self,
        step: &EnrichStep,
        input: &Value,
        bindings: &[(&str, &Value)],
    ) -> Result<Value, EnrichError> {
        let retryable = |message: String| EnrichError::Retryable {
            step: step.name.clone(),
            message,
        };
        let permanent = |reason, message: String| EnrichError::Permanent {
            reason,
            step: step.name.clone(),
            message,
        };
        let url = step
            .url
            .render(input, bindings)
            .map_err(|m| permanent("enrich_url", format!("cannot fill the URL: {m}")))?;
        let request = self
            .http
            .get(url)
            .header("accept", "application/json")
            .timeout(step.timeout.min(MAX_TIMEOUT));
        let request = http::authorize(request, &step.auth, &self.secrets)
            .await
            .map_err(|e| match e {
                AuthError::Secret(e) => retryable(e.to_string()),
                e @ AuthError::Malformed { .. } => permanent("enrich_failed", e.to_string()),
            })?;
        let response = request
            .send()
            .await
            .map_err(|e| retryable(http::transport_error(&e)))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            404 | 410 => {
                return Err(match step.on_missing {
                    OnMissing::Skip => EnrichError::Skip {
                        step: step.name.clone(),
                    },
                    OnMissing::Fail => permanent(
                        "enrich_not_found",
                        format!("the API answered {status}: the record is not there"),
                    ),
                });
            }
            401 | 403 => {
                // The credential may have been rotated: read it afresh on the retry.
                if let Some(secret) = step.auth.secret() {
                    self.secrets.invalidate(secret);
                }
                return Err(retryable(format!("the API answered {status}")));
            }
            408 | 425 | 429 | 500..=599 => {
                return Err(retryable(format!("the API answered {status}")));
            }
            _ => {
                return Err(permanent(
                    "enrich_failed",
                    format!("the API answered {status}"),
                ));
            }
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| retryable(http::transport_error(&e)))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            permanent(
                "enrich_invalid_response",
                format!("the API's answer is not JSON ({e})"),
            )
        })
    }
}
