//! Where each route of an event stands, read from what the pipeline already keeps: the
//! archive line (transform's decision), deliver's completion record (`deliver#`: when, status,
//! latency), the task's log (`attempts#`: each failed attempt, the next one's time, a dead
//! letter's reason), the review queue's item, and the route's circuit.

use chrono::{DateTime, Utc};
use serde::Serialize;
use switchboard_core::archive::{RouteDecision, RouteOutcome};
use switchboard_core::circuit;
use switchboard_core::dead_letter::AttemptRecord;
use switchboard_core::idempotency::{Delivered, Status};
use switchboard_core::ids::EventId;
use switchboard_core::integration::{Dedupe, Inbound, Integrations, Outbound};
use switchboard_core::ports::{CircuitStore as _, IdempotencyStore as _, ReviewStore as _};
use switchboard_core::review::{ReviewItem, ReviewStatus};
use switchboard_shared::aws::DynamoIdempotencyStore;

/// Where a route of an event stands.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RouteState {
    /// The destination took it.
    Delivered {
        /// When (absent for a record of an earlier version).
        at: Option<DateTime<Utc>>,
        /// Its status.
        status: Option<u16>,
        /// How long the call took.
        latency_ms: Option<u64>,
        /// The task's receive that delivered it.
        receives: Option<u32>,
    },
    /// Tried and failed; it is tried again (or held: an open circuit).
    Waiting {
        /// The failed attempts, oldest first.
        attempts: Vec<AttemptRecord>,
        /// When the next attempt is due.
        next_attempt_at: Option<DateTime<Utc>>,
        /// Until when its route's circuit holds it, when open.
        circuit_open_until: Option<DateTime<Utc>>,
    },
    /// Queued for deliver, not tried yet (or held by an open circuit).
    Queued {
        /// Until when its route's circuit holds it, when open.
        circuit_open_until: Option<DateTime<Utc>>,
    },
    /// In the review queue.
    Review {
        /// The item.
        item: String,
        /// Where it stands (`pending`, `approved`, ...).
        status: ReviewStatus,
        /// Why it waits.
        why: String,
        /// When its expiry applies.
        expires_at: DateTime<Utc>,
        /// Who decided, when someone did.
        decided_by: Option<String>,
    },
    /// In a DLQ with its reason.
    DeadLettered {
        /// `events` (transform's) or `deliveries`.
        queue: &'static str,
        /// Its reason code.
        reason: String,
        /// The failed attempts (deliveries).
        attempts: Vec<AttemptRecord>,
    },
    /// Nothing to deliver, by rule.
    Skipped {
        /// Why (`when` false, nothing mapped, ...).
        reason: String,
    },
}

impl RouteState {
    /// As `--status` names it: `delivered`, `waiting`, `review`, `failed`, `skipped`.
    pub fn status(&self) -> &'static str {
        match self {
            RouteState::Delivered { .. } => "delivered",
            RouteState::Waiting { .. } | RouteState::Queued { .. } => "waiting",
            RouteState::Review { .. } => "review",
            RouteState::DeadLettered { .. } => "failed",
            RouteState::Skipped { .. } => "skipped",
        }
    }
}

/// The sender's posts of an event after the first (answered as duplicates).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Duplicates {
    /// How many.
    pub count: u64,
    /// When the last was.
    pub last_at: String,
}

/// One route of an event: what transform decided, where it stands.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteView {
    /// The route.
    pub route: String,
    /// Transform's decision (`queued`, `review`, `skipped`, `failed`).
    pub transform: RouteOutcome,
    /// Where it stands now.
    #[serde(flatten)]
    pub state: RouteState,
}

/// What the lookups read from: the table, the review items (read once), the definitions
/// (for each route's circuit), and how many table reads they made.
#[derive(Debug)]
pub struct Lookups {
    /// The stack's table.
    pub store: DynamoIdempotencyStore,
    /// Every review item, once read.
    reviews: Option<Vec<ReviewItem>>,
    /// The local definitions, when they load: a route's destination names its circuit.
    pub definitions: Option<Integrations<Outbound>>,
    /// Their sources, when they load: how ingest named an event (its dedupe header).
    pub sources: Option<Integrations<Inbound>>,
    /// Table reads made.
    pub reads: u64,
}

impl Lookups {
    /// Lookups in `store`, circuits named from `definitions` when given.
    pub fn new(store: DynamoIdempotencyStore, definitions: Option<Integrations<Outbound>>) -> Self {
        Self {
            store,
            reviews: None,
            definitions,
            sources: None,
            reads: 0,
        }
    }

    /// Where route `decided` of `event` stands.
    pub async fn route(
        &mut self,
        event: &EventId,
        integration: &str,
        decided: &RouteDecision,
    ) -> anyhow::Result<RouteView> {
        let reason = || decided.reason.clone().unwrap_or_default();
        let state = match decided.outcome {
            RouteOutcome::Skipped => RouteState::Skipped { reason: reason() },
            RouteOutcome::Failed => RouteState::DeadLettered {
                queue: "events",
                reason: reason(),
                attempts: Vec::new(),
            },
            RouteOutcome::Queued | RouteOutcome::Review => {
                self.delivery(event, integration, &decided.route).await?
            }
        };
        Ok(RouteView {
            route: decided.route.clone(),
            transform: decided.outcome,
            state,
        })
    }

    /// A queued route's delivery: delivered, dead-lettered, in review, waiting, or queued.
    async fn delivery(
        &mut self,
        event: &EventId,
        integration: &str,
        route: &str,
    ) -> anyhow::Result<RouteState> {
        let task = format!("{event}#{route}");
        let record = self.store.lookup(&format!("deliver#{task}"), true).await?;
        self.reads += 2;
        if let Some(r) = record.filter(|r| r.status == Status::Completed) {
            let done: Option<Delivered> =
                r.data.as_deref().and_then(|d| serde_json::from_str(d).ok());
            if let Some(why) = done.as_ref().and_then(|d| d.stale.clone()) {
                return Ok(RouteState::Skipped {
                    reason: format!("stale: {why}"),
                });
            }
            return Ok(RouteState::Delivered {
                at: done.as_ref().map(|d| d.at),
                status: done.as_ref().and_then(|d| d.status),
                latency_ms: done.as_ref().and_then(|d| d.latency_ms),
                receives: done.as_ref().map(|d| d.receives),
            });
        }
        let log = self.store.task_log(&task).await?;
        if let Some((_, reason)) = log.dead_lettered {
            return Ok(RouteState::DeadLettered {
                queue: "deliveries",
                reason,
                attempts: log.history,
            });
        }
        if let Some(item) = self.review(event, route).await? {
            return Ok(RouteState::Review {
                item: item.id.clone(),
                status: item.status,
                why: item.why.message.clone(),
                expires_at: item.expires_at,
                decided_by: item.decisions.last().map(|d| d.by.clone()),
            });
        }
        let circuit_open_until = self.circuit(integration, route).await?;
        if log.history.is_empty() {
            return Ok(RouteState::Queued { circuit_open_until });
        }
        Ok(RouteState::Waiting {
            attempts: log.history,
            next_attempt_at: log
                .next_attempt_ms
                .and_then(DateTime::from_timestamp_millis),
            circuit_open_until,
        })
    }

    /// The archive object a delivery record of `event` names (deliver keeps it with the
    /// record), trying each route of `integration` the local definitions know.
    pub async fn archived(
        &mut self,
        event: &EventId,
        integration: &str,
    ) -> anyhow::Result<Option<String>> {
        let routes: Vec<String> = self
            .definitions
            .as_ref()
            .and_then(|d| d.get(integration))
            .map(|i| i.routes.iter().map(|r| r.id.clone()).collect())
            .unwrap_or_default();
        for route in routes {
            let record = self
                .store
                .lookup(&format!("deliver#{event}#{route}"), false)
                .await?;
            self.reads += 1;
            let done: Option<Delivered> = record
                .and_then(|r| r.data)
                .and_then(|d| serde_json::from_str(&d).ok());
            if let Some(key) = done.and_then(|d| d.archived) {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// How often the sender posted the event again after it was accepted (ingest answered
    /// duplicates), and when last: its dedupe record, found by the provider's id (`given`, or
    /// the integration's dedupe header among the carried ones).
    pub async fn duplicates(
        &mut self,
        event: &EventId,
        integration: &str,
        headers: &std::collections::BTreeMap<String, String>,
        given: Option<&str>,
    ) -> anyhow::Result<Option<Duplicates>> {
        let from_header = || {
            let source = &self.sources.as_ref()?.get(integration)?.source;
            let Dedupe::Header(name) = &source.dedupe else {
                return None;
            };
            headers
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let Some(provider_id) = given.map(str::to_string).or_else(from_header) else {
            return Ok(None);
        };
        let key = ingest::request::dedupe_key(integration, &provider_id);
        if &EventId::derived(&key) != event {
            return Ok(None);
        }
        self.reads += 1;
        Ok(self
            .store
            .duplicates(&key)
            .await?
            .map(|(count, last_at)| Duplicates { count, last_at }))
    }

    /// The event's newest review item for the route, if any.
    async fn review(&mut self, event: &EventId, route: &str) -> anyhow::Result<Option<ReviewItem>> {
        if self.reviews.is_none() {
            let mut all = Vec::new();
            for status in ReviewStatus::ALL {
                all.extend(self.store.reviews(status).await?);
                self.reads += 1;
            }
            self.reviews = Some(all);
        }
        Ok(self
            .reviews
            .iter()
            .flatten()
            .filter(|i| &i.request.event_id == event && i.request.route == route)
            .max_by_key(|i| i.created_at)
            .cloned())
    }

    /// Until when the route's circuit is open, when it is (its destination from the local
    /// definitions; unknown without them).
    async fn circuit(
        &mut self,
        integration: &str,
        route: &str,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let Some(destination) = self
            .definitions
            .as_ref()
            .and_then(|d| d.get(integration))
            .and_then(|i| i.routes.iter().find(|r| r.id == route))
            .map(|r| r.deliver.destination())
        else {
            return Ok(None);
        };
        let state = self
            .store
            .circuit(&circuit::key(integration, route, &destination))
            .await?;
        self.reads += 1;
        let now = Utc::now().timestamp_millis();
        Ok(state
            .open_until_ms
            .filter(|until| *until > now)
            .and_then(DateTime::from_timestamp_millis))
    }
}
