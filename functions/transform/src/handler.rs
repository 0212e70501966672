//! Handler for a batch from the events queue. Per event: enrich, then per route `when`, map,
//! request shape, contract; the requests go to the deliveries queue in one batch call.
//!
//! What cannot succeed on a retry (a malformed message, an unknown integration, a mapping error,
//! a contract violation, a missing record) goes to the events DLQ at once with its reason as
//! message attributes; a route's failure dead-letters the event for that route only (the
//! message names it, so a redrive re-runs just that route). What may succeed later (an API
//! answering 503, AWS throttling) is reported as a batch item failure so SQS retries it, and on
//! the queue's last receive it is dead-lettered with its reason instead of silently by the
//! redrive policy.

use std::borrow::Cow;
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use serde_json::value::RawValue;
use switchboard_core::archive::{self, ArchivedEvent, MAX_INLINE_MESSAGE_BYTES};
use switchboard_core::dead_letter::DeadLetter;
use switchboard_core::envelope::{
    DeliveryMessage, DeliveryRef, DeliveryV1, EventMessage, EventV1, message_group,
};
use switchboard_core::integration::{Integration, Integrations, Route};
use switchboard_core::mapping::{Bindings, Scope};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::send_dead_letter;
use switchboard_core::ports::{
    Archive, DeadLetterQueue, Outgoing, Queue, RateLimiter, SecretStore,
};
use switchboard_core::reason::Reason;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::batch::{self, HandBack, receive_count};
use switchboard_shared::config::StartError;
use switchboard_shared::metrics::{Metrics, Outcome};

use tracing::Instrument as _;

use crate::enrich::{EnrichError, Enricher};
use crate::pipeline::{RouteOutcome, run_route};

/// The ports transform uses.
#[derive(Debug)]
pub struct Ports<Q, D, A, K, L> {
    /// The deliveries queue.
    pub deliveries: Q,
    /// The events DLQ.
    pub dead_letters: D,
    /// The archive (read for bodies that travelled there).
    pub archive: A,
    /// Credentials for enrichment calls.
    pub secrets: SecretsCache<K>,
    /// Where metrics go.
    pub metrics: Metrics,
    /// Where enrichment calls may go.
    pub network: NetworkPolicy,
    /// The shared per-second limits of enrichment APIs (`limits.max_per_second`).
    pub limiter: L,
}

/// Why an event did not complete here.
#[derive(Debug)]
enum Failure {
    /// May succeed later: SQS retries it.
    Retry { reason: Reason, message: String },
    /// Cannot succeed: the events DLQ, now.
    Permanent { reason: Reason, message: String },
    /// An enrichment step found no record and says to skip the event.
    Skip { step: String },
}

impl From<EnrichError> for Failure {
    fn from(e: EnrichError) -> Self {
        match e {
            EnrichError::Retryable { .. } => Failure::Retry {
                reason: Reason::EnrichUnavailable,
                message: e.to_string(),
            },
            EnrichError::Permanent { reason, .. } => Failure::Permanent {
                reason,
                message: e.to_string(),
            },
            EnrichError::Skip { step } => Failure::Skip { step },
        }
    }
}

/// What the routes made of an event.
#[derive(Debug, Default)]
struct Report {
    /// The routes whose tasks are queued (held for review among them).
    queued: Vec<String>,
    /// Of those, the routes held for review, and why.
    held: Vec<(String, String)>,
    /// The routes with nothing to deliver, and why.
    skipped: Vec<(String, &'static str)>,
    rejected: Vec<(String, crate::pipeline::Rejection)>,
    /// The tasks, in `queued`'s order.
    tasks: Vec<Outgoing>,
    /// What came of each enrichment step.
    steps: Vec<switchboard_core::archive::StepDecision>,
}

/// The transform handler.
#[derive(Debug)]
pub struct Transform<Q, D, A, K, L> {
    integrations: Arc<Integrations>,
    deliveries: Q,
    dead_letters: D,
    archive: A,
    metrics: Metrics,
    enricher: Enricher<K, L>,
    max_receive_count: u32,
}

impl<Q: Queue, D: DeadLetterQueue, A: Archive, K: SecretStore, L: RateLimiter>
    Transform<Q, D, A, K, L>
{
    /// A handler over these integrations and ports. `max_receive_count` is the events queue's
    /// redrive setting: a retryable failure on that receive is dead-lettered with its reason.
    pub fn new(
        integrations: Arc<Integrations>,
        ports: Ports<Q, D, A, K, L>,
        max_receive_count: u32,
    ) -> Result<Self, StartError> {
        integrations.check_network(ports.network)?;
        Ok(Self {
            integrations,
            deliveries: ports.deliveries,
            dead_letters: ports.dead_letters,
            archive: ports.archive,
            enricher: Enricher::new(
                ports.secrets,
                ports.network,
                ports.limiter,
                ports.metrics.clone(),
            ),
            metrics: ports.metrics,
            max_receive_count,
        })
    }

    /// Processes a batch: its events decided concurrently (a slow enrichment API holds up one
    /// event's decision, not the others'); then the batch archived, one object per integration
    /// and day, a line per decided event; then every task of the archived events queued
    /// together; then each event settled. The response lists the messages to retry.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        switchboard_shared::telemetry::sample_invocation();
        self.metrics.invocation(Box::pin(self.batch(event))).await
    }

    async fn batch(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        let deadline_ms = batch::deadline_ms(event.context.deadline);
        let records = &event.payload.records;
        let batch_id = archive::batch_id();
        let mut decided = futures::future::join_all(records.iter().map(|m| {
            let id = m.message_id.as_deref().unwrap_or_default();
            self.decide(m, deadline_ms, &batch_id)
                .instrument(tracing::info_span!("message", what = "event", message_id = %id))
        }))
        .await;
        let archived = self.archive_batch(&mut decided).await;
        let queued = self.queue_batch(&mut decided, &archived).await;
        batch::settle_indexed("event", records, |i, _| {
            self.settle(&decided[i], archived.of(&decided[i]), queued[i].clone())
        })
        .await
    }

    /// One message read and decided: its event run through enrichment and the routes (nothing
    /// queued yet), or its letter when it is not an event.
    async fn decide(
        &self,
        message: &SqsMessage,
        deadline_ms: Option<i64>,
        batch_id: &str,
    ) -> Decided {
        let text = message.body.as_deref().unwrap_or_default();
        let attempts = receive_count(&message.attributes);
        let event = match EventMessage::decode_raw(text) {
            Ok(EventMessage::EventV1(event)) => event,
            Err(e) => {
                return Decided {
                    attempts,
                    event: Err(DeadLetter::malformed(text, e, attempts)),
                };
            }
        };
        let key = archive::batch_key(&event.integration, event.received_at, batch_id);
        let result = self.run(&event, deadline_ms, &key).await;
        Decided {
            attempts,
            event: Ok(Event {
                event,
                key,
                result,
                decided_at: chrono::Utc::now(),
                has_line: false,
            }),
        }
    }

    /// Ok when the message is done with (transformed, skipped or dead-lettered); Err when SQS
    /// should hand it back. `archived`: whether its line was written (None: it has none);
    /// `queued`: whether its tasks were.
    async fn settle(
        &self,
        decided: &Decided,
        archived: Option<Result<(), String>>,
        queued: Result<(), String>,
    ) -> Result<(), HandBack> {
        let Decided { attempts, .. } = *decided;
        let e = match &decided.event {
            Ok(e) => e,
            Err(letter) => return self.dead_letter(letter).await,
        };
        let event = &e.event;
        let last = attempts >= self.max_receive_count;
        let failed = match (&e.result, archived) {
            (_, Some(Err(error))) => Some((Reason::ArchiveUnavailable, error)),
            (Ok(_), _) => queued.err().map(|q| (Reason::QueueUnavailable, q)),
            (Err(Failure::Retry { reason, message }), _) => Some((*reason, message.clone())),
            _ => None,
        };
        if let Some((reason, message)) = failed {
            if !last {
                self.metrics
                    .transform(&event.integration, "", Outcome::Retried, reason);
                return Err(HandBack::Unavailable(message));
            }
            let message = format!("{message} (gave up after {attempts} attempts)");
            return self.dead_letter_event(decided, e, reason, message).await;
        }
        match &e.result {
            Ok(report) => self.transformed(decided, e, report).await,
            Err(Failure::Skip { step }) => {
                tracing::info!(event_id = %event.event_id, step = %step, "enrichment found no record; event skipped");
                self.metrics.transform(
                    &event.integration,
                    "",
                    Outcome::Skipped,
                    Reason::EnrichNotFound,
                );
                Ok(())
            }
            Err(Failure::Permanent { reason, message }) => {
                self.dead_letter_event(decided, e, *reason, message.clone())
                    .await
            }
            Err(Failure::Retry { .. }) => Ok(()), // settled above
        }
    }

    /// A transformed event's tasks are queued: counted, its rejected routes dead-lettered.
    async fn transformed(
        &self,
        decided: &Decided,
        e: &Event,
        report: &Report,
    ) -> Result<(), HandBack> {
        let event = &e.event;
        for route in &report.queued {
            self.metrics
                .transform(&event.integration, route, Outcome::Queued, "mapped");
        }
        for (route, rejection) in &report.rejected {
            let mut scoped = event.clone();
            scoped.routes = Some(vec![route.to_string()]);
            scoped.archived = Some(e.key.clone());
            #[allow(clippy::expect_used)]
            let body = serde_json::to_string(&EventMessage::EventV1(scoped))
                .expect("an event always serializes");
            let reason = rejection.reason;
            let letter = decided.letter(reason, rejection.message.clone(), Some(route), body);
            self.dead_letter(&letter).await?;
            self.metrics
                .transform(&event.integration, route, Outcome::Failed, reason);
        }
        switchboard_shared::success!(
            event_id = %event.event_id,
            integration = %event.integration,
            deliveries = report.queued.len(),
            routes = ?report.queued,
            "transformed"
        );
        Ok(())
    }

    /// The whole event dead-lettered with `reason`; the letter says where it is archived.
    async fn dead_letter_event(
        &self,
        decided: &Decided,
        e: &Event,
        reason: Reason,
        message: String,
    ) -> Result<(), HandBack> {
        let mut event = e.event.clone();
        event.archived = Some(e.key.clone());
        #[allow(clippy::expect_used)]
        let body = serde_json::to_string(&EventMessage::EventV1(event))
            .expect("an event always serializes");
        self.dead_letter(&decided.letter(reason, message, None, body))
            .await?;
        self.metrics
            .transform(&e.event.integration, "", Outcome::Failed, reason);
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), HandBack> {
        Ok(send_dead_letter(&self.dead_letters, letter, "event").await?)
    }

    /// integration -> body -> enrich -> each route's outcome -> tasks -> audit. The tasks
    /// name `archived`, the batch object the event's line goes to.
    async fn run(
        &self,
        event: &RawEvent,
        deadline_ms: Option<i64>,
        archived: &str,
    ) -> Result<Report, Failure> {
        let integration = self.integration_of(event)?;
        let body = self.body(event).await?;
        let bindings = Bindings::new(
            serde_json::to_value(&event.headers).unwrap_or_default(),
            &event.event_id,
            &event.integration,
            event.received_at,
        )
        .settings(integration.settings.clone());
        let recorded = self.recorded_answers(event, integration).await;
        let crate::enrich::Enriched {
            value: enriched,
            interactions,
            steps,
        } = self
            .enricher
            .run_recorded(
                &integration.enrich,
                &body,
                &bindings,
                deadline_ms,
                &recorded,
            )
            .await
            .map_err(Failure::from)?;
        let bindings = bindings.enriched(enriched);
        let outcomes = route_outcomes(
            integration,
            event.routes.as_deref(),
            &body,
            &bindings.pairs(),
        )
        .map_err(|e| Failure::Permanent {
            reason: Reason::MalformedMessage,
            message: format!("the event body is not JSON: {e}"),
        })?;
        let mut report = self.tasks(event, integration, outcomes, archived).await?;
        report.steps = steps;
        // The audit of each model interaction, with the decision taken, before anything goes
        // out: an event whose audit could not be written is retried whole.
        for interaction in &interactions {
            self.audit(event, &integration.id, interaction, &report)
                .await?;
        }
        Ok(report)
    }

    /// The event's integration, and the routes it names (a redrive's), as deployed here.
    fn integration_of(&self, event: &RawEvent) -> Result<&Integration, Failure> {
        let integration =
            self.integrations
                .get(&event.integration)
                .ok_or_else(|| Failure::Permanent {
                    reason: Reason::UnknownIntegration,
                    message: format!("integration `{}` is not defined here", event.integration),
                })?;
        if let Some(routes) = &event.routes
            && let Some(unknown) = routes
                .iter()
                .find(|r| !integration.routes.iter().any(|d| &d.id == *r))
        {
            return Err(Failure::Permanent {
                reason: Reason::UnknownRoute,
                message: format!(
                    "route `{unknown}` is not defined in integration `{}`",
                    integration.id
                ),
            });
        }
        Ok(integration)
    }

    /// Each route's outcome as a task to queue (held for review or not), a skip counted, or a
    /// rejection reported.
    async fn tasks(
        &self,
        event: &RawEvent,
        integration: &Integration,
        outcomes: Vec<(&Route, RouteOutcome)>,
        archived: &str,
    ) -> Result<Report, Failure> {
        let mut report = Report::default();
        for (route, outcome) in outcomes {
            let (request, review) = match outcome {
                RouteOutcome::Deliver(request) => (request, None),
                RouteOutcome::Review(request, why) => {
                    tracing::info!(event_id = %event.event_id, route = %route.id, why = %why, "held for review");
                    report.held.push((route.id.clone(), why.clone()));
                    (request, Some(why))
                }
                RouteOutcome::Skipped(skip) => {
                    switchboard_shared::success!(event_id = %event.event_id, route = %route.id, reason = skip.reason(), "route skipped");
                    report.skipped.push((route.id.clone(), skip.reason()));
                    self.metrics.transform(
                        &integration.id,
                        &route.id,
                        Outcome::Skipped,
                        skip.reason(),
                    );
                    continue;
                }
                RouteOutcome::Rejected(rejection) => {
                    report.rejected.push((route.id.clone(), rejection));
                    continue;
                }
            };
            let task = DeliveryMessage::DeliveryV1(DeliveryV1 {
                event_id: event.event_id.clone(),
                integration: integration.id.clone(),
                route: route.id.clone(),
                body: request.body,
                method: request.method,
                path: request.path,
                headers: request.headers,
                received_at: Some(event.received_at),
                review,
                reviewed: None,
                archived: Some(archived.to_string()),
                order: request.order.map(Box::new),
            });
            #[allow(clippy::expect_used)]
            let text = serde_json::to_string(&task).expect("JSON values always serialize");
            // Fair within its destination: another destination's backlog does not delay it.
            report.tasks.push(Outgoing {
                body: self
                    .claim_check(event, &integration.id, &route.id, text, archived)
                    .await?,
                group: Some(message_group(&route.deliver.destination())),
            });
            report.queued.push(route.id.clone());
        }
        Ok(report)
    }

    /// The model answers already recorded for this event (its audit records: it was retried,
    /// redriven or replayed), by step. One read per model step; nothing recorded, or a record
    /// that cannot be read, asks the model.
    async fn recorded_answers(
        &self,
        event: &RawEvent,
        integration: &Integration,
    ) -> std::collections::HashMap<String, Value> {
        let mut recorded = std::collections::HashMap::new();
        for step in integration.enrich.iter().filter(|s| s.model.is_some()) {
            let key = archive::audit_key(
                &integration.id,
                event.received_at,
                &event.event_id,
                &step.name,
            );
            let Ok(bytes) = self.archive.get(&key).await else {
                continue;
            };
            if let Some(answer) = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|mut audit| audit.get_mut("record").map(Value::take))
                .filter(|answer| !answer.is_null())
            {
                recorded.insert(step.name.clone(), answer);
            }
        }
        recorded
    }

    /// A model interaction's audit record, with what the routes decided, in the archive.
    async fn audit(
        &self,
        event: &RawEvent,
        integration: &str,
        interaction: &crate::enrich::Interaction,
        report: &Report,
    ) -> Result<(), Failure> {
        let key = switchboard_core::archive::audit_key(
            integration,
            event.received_at,
            &event.event_id,
            &interaction.step,
        );
        let record = audit_record(event, interaction, report);
        #[allow(clippy::expect_used)]
        let bytes = serde_json::to_vec(&record).expect("JSON values always serialize");
        self.archive
            .put(&key, bytes)
            .await
            .map_err(|e| Failure::Retry {
                reason: Reason::ArchiveUnavailable,
                message: format!("writing the audit record {key}: {e}"),
            })
    }

    /// A task's message: the task itself, or when it is too large for one (a large mapped
    /// body) a pointer to it, written to the archive first (claim check).
    async fn claim_check(
        &self,
        event: &RawEvent,
        integration: &str,
        route: &str,
        text: String,
        archived: &str,
    ) -> Result<String, Failure> {
        if text.len() <= MAX_INLINE_MESSAGE_BYTES {
            return Ok(text);
        }
        let key = archive::task_key(integration, event.received_at, &event.event_id, route);
        let size = text.len();
        self.archive
            .put(&key, text.into_bytes())
            .await
            .map_err(|e| Failure::Retry {
                reason: Reason::ArchiveUnavailable,
                message: format!("writing the task {key}: {e}"),
            })?;
        tracing::info!(event_id = %event.event_id, route, bytes = size, key = %key, "task too large for a message: it travels in the archive");
        let pointer = DeliveryMessage::DeliveryRefV1(DeliveryRef {
            event_id: event.event_id.clone(),
            integration: integration.to_string(),
            route: route.to_string(),
            received_at: Some(event.received_at),
            key,
            archived: Some(archived.to_string()),
        });
        #[allow(clippy::expect_used)]
        Ok(serde_json::to_string(&pointer).expect("JSON values always serialize"))
    }

    /// The event body's JSON text, from the archive when it travelled there (claim check).
    async fn body<'e>(&self, event: &'e RawEvent) -> Result<Cow<'e, str>, Failure> {
        let Some(key) = &event.body_ref else {
            return Ok(Cow::Borrowed(event.body.get()));
        };
        let bytes = self.archive.get(key).await.map_err(|e| Failure::Retry {
            reason: Reason::ArchiveUnavailable,
            message: e.to_string(),
        })?;
        let unreadable = |e: String| Failure::Permanent {
            reason: Reason::ArchiveUnreadable,
            message: format!("archive record `{key}` is unreadable: {e}"),
        };
        // Ingest's claim check: one event alone (a batch object is never a body's pointer).
        let record = match archive::read_object(key, &bytes).map_err(unreadable)?.pop() {
            Some(ArchivedEvent::ArchivedEventV1(record)) => record,
            _ => return Err(unreadable("not one event as ingest keeps it".into())),
        };
        let body = record.event_body().map_err(|e| unreadable(e.to_string()))?;
        Ok(Cow::Owned(body.to_string()))
    }
}

/// What the audit keeps of one model interaction: what was sent (as the definition's
/// `model.audit` says; the prompt's text only with `audit_prompt: true`), the model, its
/// structured answer (or the fallback and why), tokens, latency, and the decision taken. Never
/// a credential.
fn audit_record(
    event: &RawEvent,
    interaction: &crate::enrich::Interaction,
    report: &Report,
) -> Value {
    let rejected: Vec<&str> = report.rejected.iter().map(|(r, _)| r.as_str()).collect();
    serde_json::json!({
        "type": "ModelInteractionV1",
        "event_id": event.event_id,
        "integration": event.integration,
        "received_at": event.received_at,
        "at": chrono::Utc::now(),
        "step": interaction.step,
        "provider": interaction.provider,
        "model": interaction.model,
        "sent": interaction.sent,
        "prompt": interaction.prompt,
        "record": interaction.record,
        "failure": interaction.failure,
        "usage": interaction.usage,
        "attempts": interaction.attempts,
        "latency_ms": interaction.latency_ms,
        "decision": {
            "delivered": report.queued.iter().filter(|r| !report.held.iter().any(|(h, _)| h == *r)).collect::<Vec<_>>(),
            "review": report.held.iter().map(|(r, _)| r).collect::<Vec<_>>(),
            "rejected": rejected,
        },
    })
}

/// An event as transform reads it: the body left as JSON text.
type RawEvent = EventV1<Box<RawValue>>;

/// Every route's outcome (or only `only`'s), the body parsed once for all of them. Synchronous:
/// the scope holds the engine's non-`Send` values.
fn route_outcomes<'i>(
    integration: &'i Integration,
    only: Option<&[String]>,
    body: &str,
    bindings: &[(&str, &Value)],
) -> Result<Vec<(&'i Route, RouteOutcome)>, serde_json::Error> {
    let scope = Scope::from_json(body, bindings)?;
    Ok(integration
        .routes
        .iter()
        .filter(|r| only.is_none_or(|only| only.contains(&r.id)))
        .map(|r| (r, run_route(r, &scope)))
        .collect())
}

mod archiving;
use archiving::{Decided, Event};

#[cfg(test)]
mod rules;
