//! Handler for a batch from the events queue: map every event for each of its routes and queue
//! the deliveries, reporting failed items so SQS retries only those.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use serde_json::json;
use switchboard_shared::envelope::{DeliveryMessage, DeliveryV1, EventMessage};
use switchboard_shared::integration::Integrations;
use switchboard_shared::ports::Queue;
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
    /// The deliveries could not be queued.
    #[error(transparent)]
    Queue(#[from] switchboard_shared::ports::AwsError),
}

/// The transform handler, generic over the deliveries queue.
#[derive(Debug)]
pub struct Transform<Q> {
    integrations: Arc<Integrations>,
    deliveries: Q,
}

impl<Q: Queue> Transform<Q> {
    /// A handler over these integrations and the deliveries queue.
    pub fn new(integrations: Arc<Integrations>, deliveries: Q) -> Self {
        Self {
            integrations,
            deliveries,
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
        let EventMessage::EventV1(event) =
            EventMessage::decode(message.body.as_deref().unwrap_or_default())?;
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
