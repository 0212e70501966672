//! Calls and auth: one call through the network guard with the step's credential (read afresh
//! once on a 401/403), and what its answer means: a model API's refusal, a status that is not
//! a 2xx, or the record read out of a 2xx.

use super::*;

impl<K: SecretStore, L: RateLimiter> Enricher<K, L> {
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
    pub(super) async fn once(
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
