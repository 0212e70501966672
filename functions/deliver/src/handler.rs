//! Handler for a batch from the deliveries queue: send each task to its route's destination
//! with the route's auth, then act on the outcome as `delivery_policy` classifies it:
//! delivered; retryable (the message's visibility set to the route's next delay, or longer if
//! the destination sent `Retry-After`, and the item reported failed so SQS hands it back then);
//! permanent or out of retries (the task sent to the deliveries DLQ with its reason, and done).
//! The queue's own maxReceiveCount stays as the safety net for crashes.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use switchboard_shared::delivery_policy::{self, Class, Outcome};
use switchboard_shared::envelope::{DeliveryMessage, DeliveryV1};
use switchboard_shared::http::{self, AuthError};
use switchboard_shared::idempotency::{Claim, NewClaim, Status, in_progress_until};
use switchboard_shared::integration::{Integrations, Route};
use switchboard_shared::ports::{
    DeadLetter, DeadLetterQueue, IdempotencyStore, SecretStore, Visibility, send_dead_letter,
};
use switchboard_shared::secrets::SecretsCache;
use tracing::Instrument;

/// The ports deliver uses.
#[derive(Debug)]
pub struct Ports<K, V, D, S> {
    /// The idempotency table (`deliver#{event_id}#{route}` records).
    pub idempotency: S,
    /// Destination credentials.
    pub secrets: SecretsCache<K>,
    /// The deliveries queue (its visibility timeout is the retry timer).
    pub queue: V,
    /// The deliveries DLQ.
    pub dead_letters: D,
}

/// The deliver handler.
#[derive(Debug)]
pub struct Deliver<K, V, D, S> {
    integrations: Arc<Integrations>,
    http: reqwest::Client,
    ports: Ports<K, V, D, S>,
}

/// How long a delivered task is remembered: longer than the longest retry schedule.
const DELIVERED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// When an in-progress claim lapses if the Lambda deadline is unknown (locally).
const DEFAULT_IN_PROGRESS: Duration = Duration::from_secs(60);

/// One attempt's result, as the policy and the log see it.
#[derive(Debug)]
struct Attempt {
    outcome: Outcome,
    /// What went wrong, for the log and the DLQ (no body, no credential).
    error: Option<String>,
    /// The destination's `Retry-After`, if it sent one.
    retry_after: Option<Duration>,
}

impl<K: SecretStore, V: Visibility, D: DeadLetterQueue, S: IdempotencyStore> Deliver<K, V, D, S> {
    /// A handler over these integrations and ports; `timeout` bounds each request.
    pub fn new(
        integrations: Arc<Integrations>,
        ports: Ports<K, V, D, S>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            integrations,
            http: http::client(timeout)?,
            ports,
        })
    }

    /// Processes a batch; the response lists the messages SQS should hand back.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let deadline_ms = i64::try_from(event.context.deadline).ok();
        for message in event.payload.records {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("delivery", message_id = %id);
            if let Err(e) = self.process(&message, deadline_ms).instrument(span).await {
                tracing::warn!(message_id = %id, error = %e, "delivery will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Ok when the message is done with (delivered or dead-lettered); Err when SQS should hand
    /// it back.
    async fn process(&self, message: &SqsMessage, deadline_ms: Option<i64>) -> Result<(), String> {
        let text = message.body.as_deref().unwrap_or_default();
        let attempts = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1);
        let letter = |reason, message: String, task: Option<&DeliveryV1>| DeadLetter {
            body: text.to_string(),
            reason,
            message,
            integration: task.map(|t| t.integration.clone()).unwrap_or_default(),
            route: task.map(|t| t.route.clone()),
            event_id: task.map(|t| t.event_id.to_string()).unwrap_or_default(),
            attempts,
        };
        let task = match DeliveryMessage::decode(text) {
            Ok(DeliveryMessage::DeliveryV1(task)) => task,
            Err(e) => {
                return self
                    .dead_letter(&letter("malformed_message", e.to_string(), None))
                    .await;
            }
        };
        let Some(route) = self
            .integrations
            .get(&task.integration)
            .and_then(|i| i.routes.iter().find(|r| r.id == task.route))
        else {
            let m = format!(
                "route `{}/{}` is not defined here",
                task.integration, task.route
            );
            return self
                .dead_letter(&letter("unknown_route", m, Some(&task)))
                .await;
        };

        // Idempotent sends: a redelivery after a success does not send again.
        let key = format!("deliver#{}#{}", task.event_id, task.route);
        let now = Utc::now();
        let expires_at = now.timestamp() + DELIVERED_TTL.as_secs() as i64;
        let claim = NewClaim {
            key: key.clone(),
            now,
            expires_at,
            in_progress_expires_at_ms: in_progress_until(deadline_ms, now, DEFAULT_IN_PROGRESS),
        };
        match self.ports.idempotency.claim(&claim).await {
            Ok(Claim::Acquired) => {}
            Ok(Claim::Exists(record)) if record.status == Status::Completed => {
                tracing::info!(event_id = %task.event_id, route = %task.route, "already delivered; not sent again");
                return Ok(());
            }
            Ok(Claim::Exists(_)) => return Err("being delivered by another worker".into()),
            Err(e) => return Err(format!("idempotency claim failed: {e}")),
        }

        let started = Instant::now();
        let attempt = match self.send(&task, route).await {
            Ok(attempt) => attempt,
            Err(AuthError::Malformed { secret, problem }) => {
                self.release(&key).await;
                let m = format!("secret `{secret}` is malformed: {problem}");
                return self
                    .dead_letter(&letter("auth_misconfigured", m, Some(&task)))
                    .await;
            }
            // The credential could not be read: AWS trouble, worth a retry.
            Err(AuthError::Secret(e)) => Attempt {
                outcome: Outcome::Connect,
                error: Some(e.to_string()),
                retry_after: None,
            },
        };
        let status = match attempt.outcome {
            Outcome::Status(s) => Some(s),
            _ => None,
        };
        let class = delivery_policy::classify(attempt.outcome);
        tracing::info!(
            event_id = %task.event_id,
            route = %task.route,
            attempt = attempts,
            status,
            error = attempt.error.as_deref(),
            class = ?class,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "delivery attempt"
        );
        let what = match (status, &attempt.error) {
            (Some(s), _) => format!("the destination answered {s}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".into(),
        };
        if class == Class::Delivered {
            if let Err(e) = self
                .ports
                .idempotency
                .complete(&key, "delivered", expires_at)
                .await
            {
                // Delivered: nothing is lost. A redelivery inside the in-progress window
                // waits; after it, the destination's Idempotency-Key dedupes.
                tracing::warn!(error = %e, "completing the idempotency record failed");
            }
        } else {
            self.release(&key).await;
        }
        match class {
            Class::Delivered => Ok(()),
            Class::Permanent { .. } => {
                self.dead_letter(&letter("permanent_failure", what, Some(&task)))
                    .await
            }
            Class::Retryable => {
                let jitter = jitter(message.message_id.as_deref().unwrap_or_default(), attempts);
                let Some(delay) =
                    delivery_policy::next_delay(&route.deliver.retry, attempts, jitter)
                else {
                    let m = format!("{what}; gave up after {attempts} attempts");
                    return self
                        .dead_letter(&letter("retries_exhausted", m, Some(&task)))
                        .await;
                };
                let wait = delivery_policy::visibility(delay, attempt.retry_after);
                if let Some(receipt) = message.receipt_handle.as_deref()
                    && let Err(e) = self.ports.queue.delay(receipt, wait).await
                {
                    // The queue's own visibility timeout applies instead.
                    tracing::warn!(error = %e, "could not set the retry delay");
                }
                Err(format!("{what}; next attempt in {}s", wait.as_secs()))
            }
        }
    }

    /// Deletes the claim so the next attempt can take it.
    async fn release(&self, key: &str) {
        if let Err(e) = self.ports.idempotency.release(key).await {
            // The claim lapses at its in-progress expiry instead.
            tracing::warn!(error = %e, "releasing the idempotency record failed");
        }
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), String> {
        send_dead_letter(&self.ports.dead_letters, letter, "delivery").await
    }

    async fn send(&self, task: &DeliveryV1, route: &Route) -> Result<Attempt, AuthError> {
        let mut url = route.deliver.url.clone();
        if let Some(path) = &task.path {
            // The mapping chose the path; scheme, host and port stay the definition's.
            let (path, query) = match path.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (path.as_str(), None),
            };
            url.set_path(path);
            url.set_query(query);
        }
        let method = task
            .method
            .as_deref()
            .and_then(|m| reqwest::Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(reqwest::Method::POST);
        let mut request = self.http.request(method, url);
        for (name, value) in &task.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header(
                "idempotency-key",
                format!("{}:{}", task.event_id, task.route),
            )
            .json(&task.body);
        let request = http::authorize(request, &route.deliver.auth, &self.ports.secrets).await?;
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Attempt {
                    outcome: transport_outcome(&e),
                    error: Some(http::transport_error(&e)),
                    retry_after: None,
                });
            }
        };
        let status = response.status().as_u16();
        if matches!(status, 401 | 403)
            && let Some(secret) = route.deliver.auth.secret()
        {
            // The credential may have been rotated: the next read goes to Secrets Manager.
            self.ports.secrets.invalidate(secret);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| delivery_policy::retry_after(v, SystemTime::now()));
        // Read the answer so the connection can be reused; a drop here is a failed attempt.
        let outcome = match response.bytes().await {
            Ok(_) => Outcome::Status(status),
            Err(_) if (200..300).contains(&status) => Outcome::Status(status),
            Err(_) => Outcome::Dropped,
        };
        Ok(Attempt {
            outcome,
            error: None,
            retry_after,
        })
    }
}

/// A transport failure as the policy names it.
fn transport_outcome(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        Outcome::Timeout
    } else if e.is_body() || e.is_decode() {
        Outcome::Dropped
    } else {
        // Refused, unreachable, TLS and DNS failures all surface as connect errors.
        Outcome::Connect
    }
}

/// A draw in [-1, 1] that differs between messages and attempts (so retries spread out) but
/// needs no random source.
fn jitter(message_id: &str, attempt: u32) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (message_id, attempt).hash(&mut h);
    (h.finish() % 20_001) as f64 / 10_000.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let draws: Vec<f64> = (0..200).map(|i| jitter(&format!("m{i}"), 1)).collect();
        assert!(draws.iter().all(|j| (-1.0..=1.0).contains(j)));
        assert!(draws.iter().any(|j| *j < -0.5) && draws.iter().any(|j| *j > 0.5));
        assert_ne!(jitter("m", 1), jitter("m", 2));
    }
}
