//! Handler for a batch from the events queue: map every event for each of its routes and queue
//! the deliveries, reporting failed items so SQS retries only those.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use serde_json::json;
use switchboard_shared::archive::ArchivedEvent;
use switchboard_shared::envelope::{DeliveryMessage, DeliveryV1, EventMessage};
use switchboard_shared::integration::Integrations;
use switchboard_shared::ports::{Archive, Queue};
use tracing::Instrument;

/// Why one event could not be transformed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The message is not a known event message.
    #[error(transparent)]
    Decode(#[from] switchboard_shared::envelope::DecodeError),
    /// The event names an integration that is not deployed.
    #[error("integration `{0}` is not defined here")]
    UnknownIntegration(String),
    /// A route's mapping failed.
    #[error("route `{route}`: mapping failed: {source}")]
    Mapping {
        /// The route.
        route: String,
        /// The engine's error.
        source: switchboard_shared::mapping::EvalError,
    },
    /// The deliveries could not be queued, or the archived body read.
    #[error(transparent)]
    Aws(#[from] switchboard_shared::ports::AwsError),
    /// The archived body is not a known archive record.
    #[error("archive record `{key}` is unreadable: {source}")]
    Archive {
        /// The archive key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// The transform handler, generic over the deliveries queue and the archive.
#[derive(Debug)]
pub struct Transform<Q, A> {
    integrations: Arc<Integrations>,
    deliveries: Q,
    archive: A,
}

impl<Q: Queue, A: Archive> Transform<Q, A> {
    /// A handler over these integrations, the deliveries queue and the archive (read for
    /// bodies that travelled there).
    pub fn new(integrations: Arc<Integrations>, deliveries: Q, archive: A) -> Self {
        Self {
            integrations,
            deliveries,
            archive,
        }
    }

    /// Processes a batch; the response lists the messages to retry.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.payload.records {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("event", message_id = %id);
            if let Err(e) = self.process(&message).instrument(span).await {
                tracing::warn!(message_id = %id, error = %e, "transform failed; SQS will retry");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn process(&self, message: &SqsMessage) -> Result<(), TransformError> {
        let EventMessage::EventV1(mut event) =
            EventMessage::decode(message.body.as_deref().unwrap_or_default())?;
        if let Some(key) = event.body_ref.take() {
            // Claim check: the body was too large for the queue.
            let bytes = self.archive.get(&key).await?;
            let ArchivedEvent::ArchivedEventV1(record) =
                serde_json::from_slice(&bytes).map_err(|source| TransformError::Archive {
                    key: key.clone(),
                    source,
                })?;
            event.body = record
                .event_body()
                .map_err(|source| TransformError::Archive { key, source })?;
        }
        let integration = self
            .integrations
            .get(&event.integration)
            .ok_or_else(|| TransformError::UnknownIntegration(event.integration.clone()))?;
        let headers = serde_json::to_value(&event.headers).unwrap_or_default();
        let meta = json!({
            "id": event.event_id,
            "integration": event.integration,
            "received_at": event.received_at,
        });
        let mut bodies = Vec::with_capacity(integration.routes.len());
        for route in &integration.routes {
            let mapped = route
                .mapping
                .evaluate(&event.body, &[("headers", &headers), ("event", &meta)])
                .map_err(|source| TransformError::Mapping {
                    route: route.id.clone(),
                    source,
                })?;
            let Some(body) = mapped else {
                tracing::info!(event_id = %event.event_id, route = %route.id, "mapping produced nothing; route skipped");
                continue;
            };
            let task = DeliveryMessage::DeliveryV1(DeliveryV1 {
                event_id: event.event_id.clone(),
                integration: integration.id.clone(),
                route: route.id.clone(),
                body,
            });
            #[allow(clippy::expect_used)]
            bodies.push(serde_json::to_string(&task).expect("JSON values always serialize"));
        }
        if !bodies.is_empty() {
            self.deliveries.send(&bodies).await?;
        }
        tracing::info!(event_id = %event.event_id, deliveries = bodies.len(), "transformed");
        Ok(())
    }
}
