//! Handler for `POST /webhooks/{integration}`: verify, dedupe, queue, answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use switchboard_shared::envelope::{EventMessage, EventV1, is_sensitive_header};
use switchboard_shared::idempotency::{Claim, NewClaim, Status};
use switchboard_shared::ids::EventId;
use switchboard_shared::integration::{Integration, Integrations, Verify};
use switchboard_shared::ports::{IdempotencyStore, Queue, SecretStore};
use switchboard_shared::secret::WebhookSecret;
use switchboard_shared::secrets::SecretsCache;
use switchboard_shared::verify::{
    DEFAULT_TOLERANCE_SECS, StandardWebhookHeaders, verify_standard_webhook,
};

/// How long a provider is asked to wait before retrying after a failure on our side.
const RETRY_AFTER_SECS: u64 = 5;
/// The in-progress expiry used when there is no Lambda deadline (local runs).
const DEFAULT_IN_PROGRESS: Duration = Duration::from_secs(30);

/// The ingest handler, generic over the queue, the idempotency table and the secret store.
#[derive(Debug)]
pub struct Ingest<Q, S, K> {
    integrations: Arc<Integrations>,
    events: Q,
    idempotency: S,
    secrets: SecretsCache<K>,
    dedupe_ttl: Duration,
}

/// A request's outcome: the answer, and what the log line says of it.
struct Outcome {
    status: StatusCode,
    body: serde_json::Value,
    label: &'static str,
    event_id: Option<EventId>,
    retry_after: bool,
}

impl Outcome {
    fn reject(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": code, "message": message.into() }),
            label: code,
            event_id: None,
            retry_after: status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::CONFLICT,
        }
    }

    fn unavailable(message: impl Into<String>) -> Self {
        Self::reject(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl<Q: Queue, S: IdempotencyStore, K: SecretStore> Ingest<Q, S, K> {
    /// A handler over these integrations and ports.
    pub fn new(
        integrations: Arc<Integrations>,
        events: Q,
        idempotency: S,
        secrets: SecretsCache<K>,
        dedupe_ttl: Duration,
    ) -> Self {
        Self {
            integrations,
            events,
            idempotency,
            secrets,
            dedupe_ttl,
        }
    }

    /// Answers one webhook request. Never fails: every outcome is an HTTP answer.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let integration = integration_id(&req);
        let outcome = self.process(&req, integration.as_deref()).await;
        tracing::info!(
            integration = integration.as_deref().unwrap_or("-"),
            event_id = outcome
                .event_id
                .as_ref()
                .map(EventId::as_str)
                .unwrap_or("-"),
            outcome = outcome.label,
            status = outcome.status.as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "webhook"
        );
        let mut response = Response::builder()
            .status(outcome.status)
            .header(http::header::CONTENT_TYPE, "application/json");
        if outcome.retry_after {
            response = response.header(http::header::RETRY_AFTER, RETRY_AFTER_SECS);
        }
        response
            .body(Body::Text(outcome.body.to_string()))
            .unwrap_or_else(|_| Response::new(Body::Empty))
    }

    async fn process(&self, req: &Request, integration: Option<&str>) -> Outcome {
        let Some(id) = integration else {
            return Outcome::reject(
                StatusCode::NOT_FOUND,
                "unknown_integration",
                "post webhooks to /webhooks/{integration}",
            );
        };
        let Some(integration) = self.integrations.get(id) else {
            return Outcome::reject(
                StatusCode::NOT_FOUND,
                "unknown_integration",
                format!("no integration is defined with id `{id}`"),
            );
        };
        let body: &[u8] = req.body().as_ref();
        let now = Utc::now();

        let webhook_id = match self.verify(integration, req.headers(), body, now).await {
            Ok(id) => id,
            Err(outcome) => return outcome,
        };

        let payload: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Outcome::reject(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body is not valid JSON: {e}"),
                );
            }
        };

        let key = format!("ingest#{}#{webhook_id}", integration.id);
        let claim = NewClaim {
            key: key.clone(),
            now,
            expires_at: now.timestamp() + self.dedupe_ttl.as_secs() as i64,
            in_progress_expires_at_ms: in_progress_deadline(req, now),
        };
        match self.idempotency.claim(&claim).await {
            Ok(Claim::Acquired) => {}
            Ok(Claim::Exists(record)) => return duplicate(record.status, record.data),
            Err(e) => {
                tracing::error!(error = %e, "idempotency claim failed");
                return Outcome::unavailable("the idempotency store is unavailable; retry later");
            }
        }

        let event_id = EventId::new();
        let message = EventMessage::EventV1(EventV1 {
            event_id: event_id.clone(),
            integration: integration.id.clone(),
            received_at: now,
            headers: carried_headers(req.headers()),
            body: payload,
        });
        let queued = match serde_json::to_string(&message) {
            Ok(text) => self.events.send(&[text]).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = queued {
            tracing::error!(error = %e, "queueing the event failed");
            // Release the claim so the provider's retry is accepted rather than deduped.
            if let Err(e) = self.idempotency.release(&key).await {
                tracing::error!(error = %e, "releasing the idempotency record failed");
            }
            return Outcome::unavailable("the event could not be queued; retry later");
        }
        if let Err(e) = self
            .idempotency
            .complete(&key, event_id.as_str(), claim.expires_at)
            .await
        {
            // The event is queued; a retry inside the in-progress window is answered 409,
            // after it the record lapses. Nothing is lost.
            tracing::warn!(error = %e, "completing the idempotency record failed");
        }
        Outcome {
            status: StatusCode::ACCEPTED,
            body: json!({ "event_id": event_id }),
            label: "accepted",
            event_id: Some(event_id),
            retry_after: false,
        }
    }

    async fn verify<'r>(
        &self,
        integration: &Integration,
        headers: &'r HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<&'r str, Outcome> {
        match &integration.verify {
            Verify::StandardWebhooks { secret } => {
                let value = self.secrets.get(secret).await.map_err(|e| {
                    tracing::error!(error = %e, secret = %secret, "reading the signing secret failed");
                    Outcome::unavailable("the signing secret could not be read; retry later")
                })?;
                let key = WebhookSecret::parse(&value).map_err(|e| {
                    tracing::error!(error = %e, secret = %secret, "the signing secret is unusable");
                    Outcome::unavailable(
                        "the integration's signing secret is misconfigured; retry later",
                    )
                })?;
                let h = |name| headers.get(name).and_then(|v| v.to_str().ok());
                let parts = StandardWebhookHeaders {
                    id: h("webhook-id"),
                    timestamp: h("webhook-timestamp"),
                    signature: h("webhook-signature"),
                };
                verify_standard_webhook(
                    &[key],
                    parts,
                    body,
                    now.timestamp(),
                    DEFAULT_TOLERANCE_SECS,
                )
                .map_err(|e| Outcome::reject(StatusCode::UNAUTHORIZED, e.code(), e.to_string()))
            }
        }
    }
}

fn duplicate(status: Status, data: Option<String>) -> Outcome {
    match (status, data) {
        (Status::Completed, Some(event_id)) => Outcome {
            status: StatusCode::OK,
            body: json!({ "event_id": event_id, "duplicate": true }),
            label: "duplicate",
            event_id: EventId::try_from(event_id).ok(),
            retry_after: false,
        },
        _ => Outcome::reject(
            StatusCode::CONFLICT,
            "duplicate_in_progress",
            "this webhook id is being processed right now; retry later",
        ),
    }
}

/// The integration id: the `{integration}` path parameter, or the path's last segment under
/// `/webhooks/`.
fn integration_id(req: &Request) -> Option<String> {
    if let Some(id) = req
        .path_parameters_ref()
        .and_then(|p| p.first("integration"))
    {
        return Some(id.to_string());
    }
    let path = req.raw_http_path();
    let path = if path.is_empty() {
        req.uri().path()
    } else {
        path
    };
    path.trim_end_matches('/')
        .strip_prefix("/webhooks/")
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .map(str::to_string)
}

/// When an INPROGRESS claim lapses: the Lambda deadline, or a default when run locally.
fn in_progress_deadline(req: &Request, now: DateTime<Utc>) -> i64 {
    req.lambda_context_ref()
        .map(|c| c.deadline as i64)
        .filter(|&d| d > 0)
        .unwrap_or_else(|| now.timestamp_millis() + DEFAULT_IN_PROGRESS.as_millis() as i64)
}

fn carried_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| !is_sensitive_header(name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}
