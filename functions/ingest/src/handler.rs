//! Handler for `POST /webhooks/{integration}`: check, verify, split, dedupe, archive, queue,
//! answer. Every request ends in one log line and one metric with its outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use switchboard_core::archive::{self, ArchivedEvent, ArchivedEventV1, MAX_INLINE_MESSAGE_BYTES};
use switchboard_core::envelope::{EventMessage, EventV1, is_sensitive_header};
use switchboard_core::idempotency::Status;
use switchboard_core::ids::EventId;
use switchboard_core::integration::{Inbound, Integrations};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::{
    Archive, AttemptLog, IdempotencyStore, Outgoing, PortError, Queue, ReviewStore, SecretStore,
};
use switchboard_core::secrets::SecretsCache;
use switchboard_core::verify::{Scheme, SignedRequest, VerifyError, verify};
use switchboard_shared::http::GuardedHttp;
use switchboard_shared::metrics::{Metrics, Outcome};
use switchboard_shared::slack::SlackApi;

use serde_json::value::RawValue;
use switchboard_core::integration::Dedupe;

use crate::request::{BodyKind, Rejection, body_kind, decode_body};
use stages::Pending;

/// How long a sender is asked to wait before retrying after a failure on our side.
const RETRY_AFTER_SECS: u64 = 5;
/// How many events of a split request are accepted at once.
const CONCURRENT_EVENTS: usize = 10;

/// The ports ingest uses.
#[derive(Debug)]
pub struct Ports<Q, S, K, A, R = S> {
    /// The events queue.
    pub events: Q,
    /// The deliveries queue: a request approved in Slack goes there at once.
    pub deliveries: Q,
    /// The idempotency table's dedupe records.
    pub idempotency: S,
    /// The review items decided in Slack, and their tasks' attempt histories (a decision
    /// forgets it, as the CLI's does): the same table.
    pub reviews: R,
    /// Signing secrets.
    pub secrets: SecretsCache<K>,
    /// The raw-event archive.
    pub archive: A,
    /// Where metrics go.
    pub metrics: Metrics,
    /// Where it may call (Slack's Web API, for the review clicks).
    pub network: NetworkPolicy,
}

/// The ingest handler.
#[derive(Debug)]
pub struct Ingest<Q, S, K, A, R = S> {
    integrations: Arc<Integrations<Inbound>>,
    ports: Ports<Q, S, K, A, R>,
    /// Slack's Web API (a client is built on the first click).
    slack: SlackApi,
}

/// How long one call to Slack may take: a click is answered within Slack's 3 s.
const SLACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A request's answer, and what the log line and the metric say of it.
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
    /// `accepted`, `duplicate`, `rejected`, `failed` (5xx: the sender retries), `challenge`.
    outcome: Outcome,
    /// The error code, or `none`.
    reason: &'static str,
    event_ids: Vec<EventId>,
}

impl Answer {
    fn rejected(r: Rejection) -> Self {
        let outcome = if r.status.is_server_error() {
            Outcome::Failed
        } else {
            Outcome::Rejected
        };
        Self {
            status: r.status,
            body: json!({ "error": r.code, "message": r.message }),
            outcome,
            reason: r.code,
            event_ids: Vec::new(),
        }
    }
}

fn unavailable(message: &str) -> Rejection {
    Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}

/// What every event of one request shares: where it came in, its body, the headers that
/// travel with it, when.
struct Arrival<'a> {
    integration: &'a Inbound,
    /// The request body, as received.
    body: &'a [u8],
    /// The headers that travel with each event (no credential, no signature).
    headers: BTreeMap<String, String>,
    now: DateTime<Utc>,
}

/// A provider's URL handshake (Slack's `url_verification`), answered as it asks; nothing is
/// queued.
fn handshake(
    source: &switchboard_core::integration::Source,
    v: &serde_json::Value,
) -> Option<Answer> {
    let answer = (source.scheme.provider()?.handshake?)(v)?;
    Some(Answer {
        status: StatusCode::OK,
        body: answer,
        outcome: Outcome::Challenge,
        reason: "none",
        event_ids: Vec::new(),
    })
}

/// One event out of a request, once its fate is known.
struct Accepted {
    event_id: EventId,
    duplicate: bool,
}

impl<Q, S, K, A, R> Ingest<Q, S, K, A, R>
where
    Q: Queue,
    S: IdempotencyStore,
    K: SecretStore,
    A: Archive,
    R: ReviewStore + AttemptLog,
{
    /// A handler over these integrations and ports.
    pub fn new(integrations: Arc<Integrations<Inbound>>, ports: Ports<Q, S, K, A, R>) -> Self {
        for i in integrations.iter() {
            if i.source.scheme == Scheme::None {
                tracing::warn!(integration = %i.id, "integration accepts unsigned webhooks (verify: none, allow_unsigned: true)");
            }
        }
        let http = GuardedHttp::new(ports.network, SLACK_TIMEOUT);
        Self {
            integrations,
            ports,
            slack: SlackApi::new(http, SLACK_TIMEOUT),
        }
    }

    /// Reads every integration's signing secret into the cache (current and, while recent,
    /// previous), so the first webhook after a cold start does not wait on Secrets Manager.
    /// Run at start by the warm-up; a failure leaves the cache empty, and the first webhook
    /// asks again.
    pub async fn prefetch_secrets(&self) {
        let ids: std::collections::BTreeSet<&str> = self
            .integrations
            .iter()
            .filter_map(|i| i.source.secret.as_deref())
            .chain(
                self.integrations
                    .iter()
                    .flat_map(|i| &i.slack_reviews)
                    .map(|s| s.slack.signing_secret.as_str()),
            )
            .collect();
        let reads = ids
            .into_iter()
            .map(|id| self.ports.secrets.signing_keys(id));
        futures::future::join_all(reads).await;
    }

    /// Answers one webhook request. Never fails: every outcome is an HTTP answer.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        switchboard_shared::telemetry::sample_invocation();
        self.ports
            .metrics
            .invocation(Box::pin(self.answer(req)))
            .await
    }

    async fn answer(&self, req: Request) -> Response<Body> {
        let started = Instant::now();
        let clicked = request_path(&req).trim_end_matches('/') == reviews::PATH;
        let integration = if clicked {
            Some("reviews/slack".to_string())
        } else {
            integration_id(&req)
        };
        let processed = if clicked {
            self.review_click(&req).await
        } else {
            self.process(&req, integration.as_deref()).await
        };
        let outcome = processed.unwrap_or_else(Answer::rejected);
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let integration = integration.as_deref().unwrap_or("-");
        let ids: Vec<&str> = outcome.event_ids.iter().map(EventId::as_str).collect();
        let fine = matches!(
            outcome.outcome,
            Outcome::Accepted | Outcome::Duplicate | Outcome::Challenge
        );
        // A rejection or a failure always; an accepted webhook as a success (sampled).
        switchboard_shared::outcome!(
            fine,
            integration,
            event_id = ids.join(",").as_str(),
            outcome = outcome.outcome.as_str(),
            reason = outcome.reason,
            status = outcome.status.as_u16(),
            latency_ms,
            "webhook"
        );
        self.ports
            .metrics
            .webhook(integration, outcome.outcome, outcome.reason, latency_ms);
        let mut response = Response::builder()
            .status(outcome.status)
            .header(http::header::CONTENT_TYPE, "application/json");
        if outcome.status == StatusCode::SERVICE_UNAVAILABLE {
            response = response.header(http::header::RETRY_AFTER, RETRY_AFTER_SECS);
        }
        response
            .body(Body::Text(outcome.body.to_string()))
            .unwrap_or_else(|_| Response::new(Body::Empty))
    }

    /// admit -> verify -> read (and Slack's handshake) -> split -> accept each -> answer.
    async fn process(&self, req: &Request, id: Option<&str>) -> Result<Answer, Rejection> {
        let (integration, kind) = self.admit(req, id)?;
        let source = &integration.source;
        let body: &[u8] = req.body().as_ref();
        let now = Utc::now();
        self.verify(integration, req, body, now).await?;
        let decoded = decode_body(kind, body)?;
        // A `Value` is built only when something must look inside the body; otherwise the JSON
        // received travels on verbatim.
        let needs_value = source.split.is_some()
            || kind == BodyKind::Form
            || source
                .scheme
                .provider()
                .is_some_and(|p| p.handshake.is_some())
            || matches!(source.dedupe, Dedupe::Expression(_));
        let value = needs_value.then(|| decoded.value());
        if let Some(challenge) = value.as_ref().and_then(|v| handshake(source, v)) {
            return Ok(challenge);
        }
        let events = stages::split_events(source, decoded, value)?;
        let archive_json = source.split.is_some() || kind == BodyKind::Form;
        let pending = stages::pending(integration, req.headers(), body, events, archive_json);
        let arrival = Arrival {
            integration,
            body,
            headers: carried_headers(req.headers(), source.scheme.credential_header()),
            now,
        };
        // A split request's events go ten at a time, so a batch of 100 fits the timeout.
        let mut accepted = Vec::with_capacity(pending.len());
        for chunk in pending.chunks(CONCURRENT_EVENTS) {
            let results =
                futures::future::join_all(chunk.iter().map(|p| self.accept(&arrival, p))).await;
            for result in results {
                accepted.push(result?);
            }
        }
        Ok(stages::answer(&accepted, source.split.is_some()))
    }

    /// The integration the path names, a body within its limit, a content type it takes.
    fn admit<'i>(
        &'i self,
        req: &Request,
        id: Option<&str>,
    ) -> Result<(&'i Inbound, BodyKind), Rejection> {
        let unknown = |m: String| Rejection::new(StatusCode::NOT_FOUND, "unknown_integration", m);
        let id = id.ok_or_else(|| unknown("post webhooks to /webhooks/{integration}".into()))?;
        let integration = self
            .integrations
            .get(id)
            .ok_or_else(|| unknown(format!("no integration is defined with id `{id}`")))?;
        let source = &integration.source;
        let length = req.body().as_ref().len();
        if length > source.max_body_bytes {
            return Err(Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is {length} bytes; this integration accepts at most {}",
                    source.max_body_bytes
                ),
            ));
        }
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Ok((integration, body_kind(content_type, &source.scheme)?))
    }

    async fn verify(
        &self,
        integration: &Inbound,
        req: &Request,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        let source = &integration.source;
        let Some(secret) = &source.secret else {
            return Ok(()); // verify: none, allowed explicitly
        };
        let keys = self.ports.secrets.signing_keys(secret).await.map_err(|e| {
            tracing::error!(error = %e, secret = %secret, "reading the signing secret failed");
            unavailable("the signing secret could not be read; retry later")
        })?;
        let url = req.uri().to_string();
        let signed = SignedRequest {
            method: req.method().as_str(),
            url: &url,
            headers: req.headers(),
            body,
        };
        verify(
            &source.scheme,
            &keys,
            &signed,
            now.timestamp(),
            source.tolerance_secs,
        )
        .map_err(|e| match e {
            VerifyError::UnusableSecret(_) => {
                tracing::error!(error = %e, secret = %secret, "the signing secret is unusable");
                unavailable("the integration's signing secret is misconfigured; retry later")
            }
            e => Rejection::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
        })
    }

    /// One event: a provider's retry of one already accepted (its record read, eventually
    /// consistently) is a duplicate; otherwise it is queued, then recorded with one
    /// conditional write. Two copies racing (both read nothing) are both queued: the one whose
    /// write loses is answered as a duplicate, and deliver's record sends its routes once.
    async fn accept(
        &self,
        arrival: &Arrival<'_>,
        event: &Pending<'_>,
    ) -> Result<Accepted, Rejection> {
        let (key, now) = (event.key.as_str(), arrival.now);
        let expires_at = now.timestamp() + arrival.integration.source.dedupe_ttl.as_secs() as i64;
        let store_down = |e: PortError| {
            tracing::error!(error = %e, "the idempotency store failed");
            unavailable("the idempotency store is unavailable; retry later")
        };
        let seen = self
            .ports
            .idempotency
            .lookup(key, false)
            .await
            .map_err(store_down)?;
        if let Some(record) = seen.filter(|r| r.status == Status::Completed && r.blocks(now))
            && let Some(Ok(event_id)) = record.data.map(EventId::try_from)
        {
            // Counted for `events show` (a retry's write, never the first post's).
            if let Err(e) = self.ports.idempotency.note_duplicate(key, now).await {
                tracing::warn!(error = %e, "counting the duplicate failed");
            }
            return Ok(Accepted {
                event_id,
                duplicate: true,
            });
        }
        // Derived from the key: a sender's retry after a failure below is the same event.
        let event_id = EventId::derived(key);
        if let Err(e) = self.archive_and_queue(arrival, &event_id, event).await {
            tracing::error!(event_id = %event_id, error = %e, "queueing the event failed");
            return Err(unavailable("the event could not be queued; retry later"));
        }
        let recorded = self
            .ports
            .idempotency
            .record_completed(key, event_id.as_str(), now, expires_at)
            .await;
        let duplicate = match recorded {
            Ok(won) => !won,
            Err(e) => {
                // The event is queued: nothing is lost. A retry is queued again, as the same
                // event, and deliver sends each route once.
                tracing::warn!(error = %e, "recording the accepted event failed");
                false
            }
        };
        Ok(Accepted {
            event_id,
            duplicate,
        })
    }

    /// The event queued. Transform archives it with the rest of its batch; only an event too
    /// large for a message is archived here, alone (the raw body, the carried headers, its JSON
    /// when it is not the body parsed), and travels as a pointer to it (claim check).
    async fn archive_and_queue(
        &self,
        arrival: &Arrival<'_>,
        event_id: &EventId,
        event: &Pending<'_>,
    ) -> Result<(), String> {
        let (integration, now) = (arrival.integration, arrival.now);
        let message = EventMessage::EventV1(EventV1 {
            event_id: event_id.clone(),
            integration: integration.id.clone(),
            received_at: now,
            headers: arrival.headers.clone(),
            body: event.json.raw(),
            body_ref: None,
            routes: None,
            archived: None,
        });
        let mut text = serde_json::to_string(&message).map_err(|e| e.to_string())?;
        if text.len() > MAX_INLINE_MESSAGE_BYTES {
            let EventMessage::EventV1(mut message) = message;
            let key = archive::key(&integration.id, now, event_id);
            let record = ArchivedEvent::ArchivedEventV1(ArchivedEventV1 {
                event_id: event_id.clone(),
                integration: integration.id.clone(),
                received_at: now,
                headers: message.headers.clone(),
                raw_body: String::from_utf8_lossy(arrival.body).into_owned(),
                body: event.archived.clone(),
            });
            let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
            self.ports
                .archive
                .put(&key, bytes)
                .await
                .map_err(|e| e.to_string())?;
            message.body = null();
            message.body_ref = Some(key);
            text = serde_json::to_string(&EventMessage::EventV1(message))
                .map_err(|e| e.to_string())?;
        }
        self.ports
            .events
            .send(&[Outgoing::ungrouped(text)])
            .await
            .map_err(|e| e.to_string())
    }
}

fn null() -> &'static RawValue {
    #[allow(clippy::expect_used)]
    serde_json::from_str("null").expect("`null` is JSON")
}

/// The request's path as the sender wrote it.
fn request_path(req: &Request) -> &str {
    let path = req.raw_http_path();
    if path.is_empty() {
        req.uri().path()
    } else {
        path
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
    request_path(req)
        .trim_end_matches('/')
        .strip_prefix("/webhooks/")
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .map(str::to_string)
}

/// The headers that travel with the event: none that carries a credential or a signature,
/// the integration's own credential header (`api-key`, `hmac`) included.
fn carried_headers(headers: &HeaderMap, credential: Option<&str>) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| !is_sensitive_header(name.as_str()))
        .filter(|(name, _)| credential.is_none_or(|c| !name.as_str().eq_ignore_ascii_case(c)))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

mod reviews;
pub use reviews::PATH as REVIEWS_SLACK_PATH;
#[cfg(test)]
mod rules;
mod stages;
