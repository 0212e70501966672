//! Handler for a batch from the deliveries queue: send each task to its route's destination
//! with the route's auth; a non-2xx answer fails the item so SQS retries it, and after the
//! queue's maxReceiveCount it lands in the deliveries DLQ.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use switchboard_shared::envelope::{DeliveryMessage, DeliveryV1};
use switchboard_shared::http;
use switchboard_shared::integration::Integrations;
use switchboard_shared::ports::SecretStore;
use switchboard_shared::secrets::SecretsCache;
use tracing::Instrument;

/// Why one delivery did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The message is not a known delivery message.
    #[error(transparent)]
    Decode(#[from] switchboard_shared::envelope::DecodeError),
    /// The task names a route that is not deployed.
    #[error("route `{integration}/{route}` is not defined here")]
    UnknownRoute {
        /// The integration.
        integration: String,
        /// The route.
        route: String,
    },
    /// The route's credential could not be read or applied.
    #[error(transparent)]
    Auth(#[from] http::AuthError),
    /// The request did not get an answer (connect error, timeout, dropped connection).
    #[error("request failed: {0}")]
    Transport(String),
    /// The destination answered with something other than 2xx.
    #[error("destination answered {0}")]
    Status(u16),
}

/// The deliver handler, generic over the secret store.
#[derive(Debug)]
pub struct Deliver<K> {
    integrations: Arc<Integrations>,
    http: reqwest::Client,
    secrets: SecretsCache<K>,
}

impl<K: SecretStore> Deliver<K> {
    /// A handler over these integrations and secrets; `timeout` bounds each request.
    pub fn new(
        integrations: Arc<Integrations>,
        secrets: SecretsCache<K>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = http::client(timeout)?;
        Ok(Self {
            integrations,
            http,
            secrets,
        })
    }

    /// Processes a batch; the response lists the messages to retry.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.payload.records {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("delivery", message_id = %id);
            if let Err(e) = self.process(&message).instrument(span).await {
                tracing::warn!(message_id = %id, error = %e, "delivery failed; SQS will retry");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn process(&self, message: &SqsMessage) -> Result<(), DeliverError> {
        let DeliveryMessage::DeliveryV1(task) =
            DeliveryMessage::decode(message.body.as_deref().unwrap_or_default())?;
        let attempt = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1);
        let started = Instant::now();
        let result = self.send(&task).await;
        let (status, error) = match &result {
            Ok(status) => (Some(*status), None),
            Err(DeliverError::Status(s)) => (Some(*s), None),
            Err(e) => (None, Some(e.to_string())),
        };
        tracing::info!(
            event_id = %task.event_id,
            route = %task.route,
            attempt,
            status,
            error,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "delivery attempt"
        );
        result.map(|_| ())
    }

    async fn send(&self, task: &DeliveryV1) -> Result<u16, DeliverError> {
        let route = self
            .integrations
            .get(&task.integration)
            .and_then(|i| i.routes.iter().find(|r| r.id == task.route))
            .ok_or_else(|| DeliverError::UnknownRoute {
                integration: task.integration.clone(),
                route: task.route.clone(),
            })?;
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
        let method = match task.method.as_deref() {
            Some(m) => reqwest::Method::from_bytes(m.as_bytes())
                .map_err(|_| DeliverError::Transport(format!("method `{m}` is not valid")))?,
            None => reqwest::Method::POST,
        };
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
        let request = http::authorize(request, &route.deliver.auth, &self.secrets).await?;
        let response = request
            .send()
            .await
            .map_err(|e| DeliverError::Transport(http::transport_error(&e)))?;
        let status = response.status().as_u16();
        if matches!(status, 401 | 403)
            && let Some(secret) = route.deliver.auth.secret()
        {
            // The credential may have been rotated: read it afresh on the retry.
            self.secrets.invalidate(secret);
        }
        if response.status().is_success() {
            Ok(status)
        } else {
            Err(DeliverError::Status(status))
        }
    }
}
