//! Handler for a batch from the deliveries queue. Each task, concurrently, goes through five
//! stages, each of which passes it on or decides its fate:
//!
//! 1. **admit**: its route's circuit (shared in DynamoDB, read at most once a second per
//!    container; open means wait on the message's visibility without calling), the Lambda
//!    deadline (a request that could not finish before it is not started), and its
//!    destination's **share** (one that is slow or new to this container may hold only so many
//!    invocations at once: `switchboard_core::share`; over it the task waits);
//! 2. **claim**: the `deliver#{event_id}#{route}` claim (COMPLETED: already sent, done); a
//!    redelivery whose history says it was already refused for good is dead-lettered;
//! 3. **throttle**: the destination's rate limits (per second and in flight, across
//!    functions); over the limit the task waits, in process briefly, else on its visibility;
//! 4. **send**: the request with the route's auth (a 401/403 refreshes the credential and
//!    retries once, at once) and signature; its outcome counts against the circuit;
//! 5. **settle**: the attempt joins the history and `delivery_policy::settle` decides:
//!    delivered, retried (visibility set to the next delay or `Retry-After`), or dead-lettered
//!    with its reason and attempt history.
//!
//! Every rule is a pure function in `delivery_policy` or `circuit`; one executor carries the
//! fate out, once: it completes or releases the claim, sets the visibility, or dead-letters.
//! The queue's own maxReceiveCount stays as the safety net for crashes.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use switchboard_core::circuit::{self, Admit, CircuitState, Effect, Transition};
use switchboard_core::dead_letter::{AttemptRecord, DeadLetter};
use switchboard_core::deadline;
use switchboard_core::delivery_policy::{
    self, Attempted, Class, Held, Outcome, Settlement, Waiting,
};
use switchboard_core::envelope::{DeliveryMessage, DeliveryRef, DeliveryV1};
use switchboard_core::idempotency::Status;
use switchboard_core::integration::{Integrations, Outbound, OutboundRoute, ResponseCheck};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::send_dead_letter;
use switchboard_core::ports::{
    Archive, AttemptLog, CircuitStore, DeadLetterQueue, IdempotencyStore, LetterClaim, PortError,
    RateLimiter, ReviewStore, SecretStore, Visibility,
};
use switchboard_core::reason::Reason;
use switchboard_core::review::{Next, ReviewItem, ReviewStatus, Why};
use switchboard_core::secrets::{PREVIOUS_GRACE, SecretsCache};
use switchboard_shared::batch::{self, HandBack, receive_count};
use switchboard_shared::config::StartError;
use switchboard_shared::credentials::Credentials;
use switchboard_shared::http::{self, AuthError, GuardedHttp, RequestError};
use switchboard_shared::metrics::{self, Metrics};

/// The ports deliver uses.
#[derive(Debug)]
pub struct Ports<K, V, D, S, A> {
    /// The idempotency table: `deliver#{event_id}#{route}` records, and the destinations'
    /// shared state (circuits, rate limits, attempt histories).
    pub idempotency: S,
    /// Destination credentials.
    pub secrets: SecretsCache<K>,
    /// The deliveries queue (its visibility timeout is the retry timer).
    pub queue: V,
    /// The deliveries DLQ.
    pub dead_letters: D,
    /// Where the counts go.
    pub metrics: Metrics,
    /// Where deliveries may go.
    pub network: NetworkPolicy,
    /// The archive: tasks too large for a message wait there (`tasks/`).
    pub archive: A,
}

/// The types of the ports deliver runs on, named once: every part of the handler is written
/// over one `P: DeliverPorts` (a [`Ports`] of fitting ports is one).
pub trait DeliverPorts {
    /// Where destination credentials are read.
    type Secrets: SecretStore;
    /// The deliveries queue (its visibility timeout is the retry timer).
    type Queue: Visibility;
    /// The deliveries DLQ.
    type DeadLetters: DeadLetterQueue;
    /// The table: claims, circuits, limits, attempt histories and review items.
    type Store: IdempotencyStore
        + CircuitStore
        + RateLimiter
        + AttemptLog
        + ReviewStore
        + switchboard_core::ports::OrderStore;
    /// Where tasks too large for a message wait.
    type Archive: Archive;
}

impl<K, V, D, S, A> DeliverPorts for Ports<K, V, D, S, A>
where
    K: SecretStore,
    V: Visibility,
    D: DeadLetterQueue,
    S: IdempotencyStore
        + CircuitStore
        + RateLimiter
        + AttemptLog
        + ReviewStore
        + switchboard_core::ports::OrderStore,
    A: Archive,
{
    type Secrets = K;
    type Queue = V;
    type DeadLetters = D;
    type Store = S;
    type Archive = A;
}

/// The deliver handler.
pub struct Deliver<P: DeliverPorts> {
    integrations: Arc<Integrations<Outbound>>,
    /// Every request goes through the network guard; one client per connect timeout in use,
    /// each pooling its connections across events (one TLS handshake per destination per
    /// container).
    http: GuardedHttp,
    credentials: Credentials<P::Secrets>,
    store: P::Store,
    queue: P::Queue,
    dead_letters: P::DeadLetters,
    archive: P::Archive,
    metrics: Metrics,
    /// Circuits as last read, by key (`circuit::key`: one per route).
    circuits: Mutex<HashMap<String, (Instant, CircuitState)>>,
    max_receive_count: u32,
    /// How many invocations one slow or unknown destination may hold (`share::of`); None:
    /// no share (the isolation benchmark's figure without it).
    share: Option<u32>,
    /// When each route (its circuit key) last had a fast answer here (`share::Known::Fast`).
    fast: Mutex<HashMap<String, Instant>>,
}

impl<P: DeliverPorts> std::fmt::Debug for Deliver<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliver")
            .field("max_receive_count", &self.max_receive_count)
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

/// How long a delivered task is remembered (and its attempt history kept).
const DELIVERED_TTL: Duration = switchboard_core::idempotency::DELIVERY_RECORDS_KEPT;
/// When an in-progress claim lapses if the Lambda deadline is unknown (locally).
const DEFAULT_IN_PROGRESS: Duration = Duration::from_secs(60);
/// Where a call goes: its destination (the origin, for limits, logs and metrics) and its
/// route's circuit.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    destination: &'a str,
    circuit: &'a str,
}

/// How long a claim to dead-letter a message holds off other workers holding the same message:
/// longer than the letter's send and the mark after it.
const LETTER_LEASE: Duration = Duration::from_secs(30);

/// How long a container trusts its read of a circuit.
const CIRCUIT_READ_TTL: Duration = Duration::from_secs(1);
/// The longest a task waits in process for a rate limit before it waits on its visibility.
const MAX_LIMIT_WAIT: Duration = Duration::from_secs(3);
/// How much of an error answer travels with the attempt history (and is read at all).
const SNIPPET_BYTES: usize = 1024;
/// How much of a successful answer is read, so its connection can be reused.
const SUCCESS_READ_BYTES: usize = 64 * 1024;

impl<K, V, D, S, A> Deliver<Ports<K, V, D, S, A>>
where
    K: SecretStore,
    Ports<K, V, D, S, A>:
        DeliverPorts<Secrets = K, Queue = V, DeadLetters = D, Store = S, Archive = A>,
{
    /// A handler over these integrations and ports. `max_receive_count` is the deliveries
    /// queue's: a task handed back on that receive is dead-lettered with its reason instead.
    pub fn new(
        integrations: Arc<Integrations<Outbound>>,
        ports: Ports<K, V, D, S, A>,
        max_receive_count: u32,
    ) -> Result<Self, StartError> {
        let Ports {
            idempotency,
            secrets,
            queue,
            dead_letters,
            metrics,
            network,
            archive,
        } = ports;
        integrations.check_network(network)?;
        let http = GuardedHttp::new(network, delivery_policy::MAX_VISIBILITY);
        Ok(Self {
            integrations,
            credentials: Credentials::new(secrets, http.clone(), Duration::from_secs(10)),
            http,
            store: idempotency,
            queue,
            dead_letters,
            archive,
            metrics,
            circuits: Mutex::new(HashMap::new()),
            max_receive_count,
            share: Some(switchboard_core::share::of(
                switchboard_core::share::DEFAULT_CONCURRENCY,
                switchboard_core::share::DEFAULT_PERCENT,
            )),
            fast: Mutex::new(HashMap::new()),
        })
    }
}

impl<P: DeliverPorts> Deliver<P> {
    /// Holds each slow or unknown destination to `share` invocations at once
    /// (`share::of(concurrency, percent)`; the default is the template's).
    pub fn with_share(mut self, share: u32) -> Self {
        self.share = Some(share.max(1));
        self
    }

    /// Holds no destination to a share: every destination may take every invocation, as
    /// deliver did before it had one (for the isolation benchmark's figure without it).
    pub fn without_share(mut self) -> Self {
        self.share = None;
        self
    }

    /// Reads every route's credential and signing keys into the cache, so the first task after
    /// a cold start does not wait on Secrets Manager. Run at start by the warm-up; a failure
    /// leaves the cache empty, and the first task asks again.
    pub async fn prefetch_secrets(&self) {
        let routes = || self.integrations.iter().flat_map(|i| i.routes.iter());
        let credentials: std::collections::BTreeSet<&str> =
            routes().filter_map(|r| r.deliver.auth.secret()).collect();
        let signing: std::collections::BTreeSet<&str> = routes()
            .filter_map(|r| r.deliver.sign.as_ref().map(|s| s.secret.as_str()))
            .collect();
        let secrets = self.credentials.secrets();
        futures::future::join(
            futures::future::join_all(credentials.into_iter().map(|id| secrets.get(id))),
            futures::future::join_all(
                signing
                    .into_iter()
                    .map(|id| secrets.outbound_signing_keys(id, PREVIOUS_GRACE)),
            ),
        )
        .await;
    }

    /// Processes a batch, its tasks concurrently; the response lists the messages SQS should
    /// hand back.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        switchboard_shared::telemetry::sample_invocation();
        self.metrics.invocation(Box::pin(self.batch(event))).await
    }

    async fn batch(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        let deadline_ms = batch::deadline_ms(event.context.deadline);
        let received = Instant::now();
        let leases = Leases::default();
        let response = batch::settle_each("delivery", &event.payload.records, |message| {
            self.process(message, deadline_ms, received, &leases)
        })
        .await;
        self.free_leases(&leases).await;
        response
    }

    /// Ok when the message is done with (delivered, dead-lettered, or nothing left to do); Err
    /// when SQS should hand it back. The stages decide its fate; [`Deliver::execute`] carries
    /// it out, once.
    async fn process(
        &self,
        message: &SqsMessage,
        deadline_ms: Option<i64>,
        received: Instant,
        leases: &Leases,
    ) -> Result<(), HandBack> {
        let text = message.body.as_deref().unwrap_or_default();
        let receives = receive_count(&message.attributes);
        let task = match DeliveryMessage::decode(text) {
            Ok(DeliveryMessage::DeliveryV1(task)) => task,
            Ok(DeliveryMessage::DeliveryRefV1(pointer)) => {
                match self.claimed_task(&pointer).await {
                    Ok(task) => task,
                    Err(Ok(e)) => {
                        let letter = DeadLetter::malformed(text, e, receives);
                        return self.unreadable(letter, &pointer).await;
                    }
                    // On the queue's last receive, a letter with the pointer and why, rather
                    // than SQS's move with no reason (a redrive tries again).
                    Err(Err(unavailable)) if receives >= self.max_receive_count => {
                        let mut letter = DeadLetter::malformed(text, &unavailable, receives);
                        letter.reason = Reason::ArchiveUnavailable;
                        letter.event_id = pointer.event_id.to_string();
                        letter.integration = pointer.integration.clone();
                        letter.route = Some(pointer.route.clone());
                        return self.unreadable(letter, &pointer).await;
                    }
                    Err(Err(unavailable)) => return Err(unavailable),
                }
            }
            Err(e) => {
                let letter = DeadLetter::malformed(text, e, receives);
                self.count("", "", metrics::Outcome::Failed, letter.reason);
                return Ok(send_dead_letter(&self.dead_letters, &letter, "delivery").await?);
            }
        };
        let work = Work {
            message,
            text,
            task: &task,
            receives,
            received,
            leases,
        };
        let decided = self.stages(&work, deadline_ms).await;
        self.execute(&work, decided).await
    }

    /// A message whose task cannot be read: its letter, counted against the route it names.
    async fn unreadable(&self, letter: DeadLetter, pointer: &DeliveryRef) -> Result<(), HandBack> {
        let (integration, route) = (&pointer.integration, &pointer.route);
        self.count(integration, route, metrics::Outcome::Failed, letter.reason);
        Ok(send_dead_letter(&self.dead_letters, &letter, "delivery").await?)
    }

    /// A task that travelled in the archive (too large for a message), read whole. Err(Ok)
    /// when what is there is not a task of that event and route (a letter, with the pointer);
    /// Err(Err) when the archive cannot be read now (handed back: SQS retries).
    async fn claimed_task(
        &self,
        pointer: &DeliveryRef,
    ) -> Result<DeliveryV1, Result<String, HandBack>> {
        let bytes = self.archive.get(&pointer.key).await.map_err(|e| {
            Err(HandBack::Unavailable(format!(
                "reading the task {} failed: {e}",
                pointer.key
            )))
        })?;
        let text = String::from_utf8_lossy(&bytes);
        match DeliveryMessage::decode(&text) {
            Ok(DeliveryMessage::DeliveryV1(task))
                if task.event_id == pointer.event_id && task.route == pointer.route =>
            {
                Ok(task)
            }
            Ok(_) => Err(Ok(format!(
                "{} does not hold the task of {} {}",
                pointer.key, pointer.event_id, pointer.route
            ))),
            Err(e) => Err(Ok(format!("{}: {e}", pointer.key))),
        }
    }

    /// route -> review gate -> deliver -> (refused: review): each stage passes the task on or
    /// decides its fate.
    async fn stages(&self, work: &Work<'_>, deadline_ms: Option<i64>) -> Decided {
        let task = work.task;
        let Some(route) = self
            .integrations
            .get(&task.integration)
            .and_then(|i| i.routes.iter().find(|r| r.id == task.route))
        else {
            return Fate::Settle(Settlement::DeadLetter {
                reason: Reason::UnknownRoute,
                message: format!(
                    "route `{}/{}` is not defined here",
                    task.integration, task.route
                ),
            })
            .into();
        };
        let decided = match self.review_gate(work, route).await {
            Ok(decided) => decided,
            Err(fate) => return fate.into(),
        };
        let decided_work;
        let work = match &decided {
            Some(request) => {
                decided_work = Work {
                    task: request,
                    ..*work
                };
                &decided_work
            }
            None => work,
        };
        let decided = self.deliver(work, route, deadline_ms).await;
        self.refused_to_review(work, route, decided).await
    }

    /// admit -> claim -> (redelivered) -> throttle -> call -> settle. Once claimed, whatever
    /// is decided carries the claim.
    async fn deliver(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        deadline_ms: Option<i64>,
    ) -> Decided {
        let destination = route.deliver.destination();
        // A circuit per route: another route's failures on the same host never hold this one.
        let circuit = circuit::key(&work.task.integration, &work.task.route, &destination);
        let target = Target {
            destination: &destination,
            circuit: &circuit,
        };
        let probe = match self.admit(work, route, target, deadline_ms).await {
            Ok(probe) => probe,
            Err(fate) => return fate.into(),
        };
        let claimed = match self.claim(work).await {
            Ok(claimed) => claimed,
            Err(fate) => return fate.into(),
        };
        // One change of a record at a time, never an older after a newer (`ordering`).
        let decided = self.in_turn(work, route, target, probe, deadline_ms).await;
        Decided {
            claimed: Some(claimed),
            ..decided
        }
    }

    /// The stages a claimed task goes through: (redelivered) -> throttle -> call -> settle.
    async fn claimed(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        target: Target<'_>,
        probe: bool,
        deadline_ms: Option<i64>,
    ) -> Decided {
        if let Err(decided) = self.redelivered(work).await {
            return decided;
        }
        let taken = match self
            .throttle(work, route, target.destination, deadline_ms)
            .await
        {
            Ok(taken) => taken,
            Err(fate) => return fate.into(),
        };
        match self.call(work, route, target, taken, probe).await {
            Ok((attempt, latency)) => self.settle(work, route, attempt, latency).await,
            Err(fate) => fate.into(),
        }
    }

    /// The call, its log line and latency, and what it does to the route's circuit.
    async fn call(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        target: Target<'_>,
        taken: Taken,
        probe: bool,
    ) -> Result<(Attempt, Duration), Fate> {
        let destination = target.destination;
        let task = work.task;
        let started = Instant::now();
        let (sent, marked) = self.send_watched(task, route, target).await;
        let latency = started.elapsed();
        if let Some(slot) = taken.slot
            && let Err(e) = self.store.free_slot(destination, slot).await
        {
            // The lease lapses by itself.
            tracing::warn!(error = %e, "freeing a concurrency slot failed");
        }
        let attempt = match sent {
            Ok(attempt) => attempt,
            Err(AuthError::Malformed { secret, problem }) => {
                return Err(Fate::Settle(Settlement::DeadLetter {
                    reason: Reason::AuthMisconfigured,
                    message: format!("secret `{secret}` is malformed: {problem}"),
                }));
            }
            // The token endpoint is refused by the network guard: permanent, like a refused
            // destination.
            Err(e @ AuthError::Blocked { .. }) => Attempt::failed(Outcome::Blocked, e.to_string()),
            // The credential could not be had: AWS or token-endpoint trouble, worth a retry.
            Err(e) => Attempt::failed(Outcome::Connect, e.to_string()),
        };
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let class = delivery_policy::classify(attempt.outcome);
        // A failed attempt always; a delivered one as a success (sampled).
        switchboard_shared::outcome!(
            matches!(class, delivery_policy::Class::Delivered),
            event_id = %task.event_id,
            route = %task.route,
            attempt = work.receives,
            status = attempt.status(),
            error = attempt.error.as_deref(),
            class = ?class,
            latency_ms,
            "delivery attempt"
        );
        self.metrics
            .delivery_latency(&task.integration, &task.route, destination, latency_ms);
        self.update_circuit(route, target, attempt.outcome, probe)
            .await;
        self.learn(target, attempt.outcome, latency, marked).await;
        Ok((attempt, latency))
    }

    /// A failed attempt joins the task's history, and the policy settles it. The claim is held
    /// until the executor has carried the settlement out (history written, dead-lettered or
    /// its delay set), so a worker that receives it meanwhile (its visibility lapsed) waits
    /// rather than calling again or dead-lettering it twice.
    async fn settle(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        attempt: Attempt,
        latency: Duration,
    ) -> Decided {
        if delivery_policy::classify(attempt.outcome) == Class::Delivered {
            return Decided {
                tried: Some(Tried {
                    attempts: work.receives,
                    last_status: attempt.status(),
                    latency_ms: Some(latency.as_millis() as u64),
                    ..Tried::default()
                }),
                ..Fate::Settle(Settlement::Delivered).into()
            };
        }
        let status = attempt.status();
        let what = match (status, &attempt.error) {
            (Some(_), Some(e)) if matches!(attempt.outcome, Outcome::Rejected { .. }) => e.clone(),
            (Some(s), _) => format!("the destination answered {s}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".into(),
        };
        let record = AttemptRecord {
            receive: work.receives,
            at: Utc::now().to_rfc3339(),
            status,
            error: attempt.error.clone(),
            latency_ms: latency.as_millis() as u64,
            response: attempt.snippet.clone(),
        };
        let expires_at = Utc::now().timestamp() + DELIVERED_TTL.as_secs() as i64;
        let history = match self
            .store
            .record_attempt(&task_key(work.task), &record, expires_at)
            .await
        {
            Ok(history) => history,
            Err(e) => {
                tracing::warn!(error = %e, "recording the attempt failed");
                vec![record]
            }
        };
        let tried = Tried {
            attempts: u32::try_from(history.len()).unwrap_or(u32::MAX).max(1),
            last_status: status,
            answer: attempt.snippet.clone(),
            ..Tried::from_history(&history)
        };
        let settlement = delivery_policy::settle(&Attempted {
            outcome: attempt.outcome,
            what: &what,
            attempts: tried.attempts,
            receives: work.receives,
            max_receive_count: self.max_receive_count,
            schedule: &route.deliver.retry,
            jitter: jitter(work.text, work.receives),
            retry_after: attempt.retry_after,
        });
        Decided {
            tried: Some(tried),
            ..Fate::Settle(settlement).into()
        }
    }

    /// A hand-back without a call, as the policy settles it; `circuit` as read, when it is
    /// the cause.
    fn held(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        why: Held,
        wait: Duration,
        circuit: Option<&CircuitState>,
    ) -> Fate {
        let now_ms = Utc::now().timestamp_millis();
        let sent_ms = work
            .message
            .attributes
            .get("SentTimestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(now_ms);
        let age = Duration::from_millis(u64::try_from(now_ms - sent_ms).unwrap_or(0));
        let outage = circuit.map(|c| c.outage(now_ms)).unwrap_or_default();
        let destination = route.deliver.destination();
        let settlement = delivery_policy::hold(&Waiting {
            why,
            wait,
            age,
            receives: work.receives,
            max_receive_count: self.max_receive_count,
            schedule: &route.deliver.retry,
            destination: &destination,
            jitter: jitter(work.text, work.receives),
            probe_failed: circuit.is_some_and(|c| c.probe_failed_since(sent_ms)),
            outage: &outage,
        });
        if let Settlement::Hold { why, .. } = settlement {
            let waited_ms = age.as_secs_f64() * 1000.0;
            self.metrics.held(&destination, why, waited_ms);
        }
        Fate::Settle(settlement)
    }
}

/// A message being worked on.
#[derive(Clone, Copy)]
struct Work<'a> {
    message: &'a SqsMessage,
    text: &'a str,
    task: &'a DeliveryV1,
    receives: u32,
    /// When the batch reached the function.
    received: Instant,
    /// The share slots the batch holds.
    leases: &'a Leases,
}

/// A draw in [-1, 1] that differs between messages and attempts (so retries spread out) but
/// needs no random source.
fn jitter(message: &str, attempt: u32) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (message, attempt).hash(&mut h);
    (h.finish() % 20_001) as f64 / 10_000.0 - 1.0
}

mod admission;
mod fate;

use fate::{Attempt, Claimed, Decided, Fate, Taken, Tried, task_key};
mod circuit_state;
mod executor;
mod request;
#[cfg(test)]
use request::snippet;
mod order_gate;
mod review_gate;
mod review_slack;
mod share;
use share::Leases;
#[cfg(test)]
mod limit_rules;
#[cfg(test)]
mod order_rules;
#[cfg(test)]
mod record_rules;
#[cfg(test)]
mod review_rules;
#[cfg(test)]
mod rules;
#[cfg(test)]
mod share_rules;

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

    #[test]
    fn a_snippet_is_the_first_kilobyte_cut_on_a_character() {
        assert_eq!(snippet(b""), None);
        assert_eq!(
            snippet(br#"{"error":"bad"}"#).as_deref(),
            Some(r#"{"error":"bad"}"#)
        );
        let long = "\u{e9}".repeat(1000); // 2,000 bytes
        let s = snippet(long.as_bytes()).unwrap();
        assert_eq!(s.len(), 1024);
        assert!(s.chars().all(|c| c == '\u{e9}'));
    }
}
