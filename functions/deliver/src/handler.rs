//! Handler for a batch from the deliveries queue. Each task, concurrently, goes through five
//! stages, each of which passes it on or decides its fate:
//!
//! 1. **admit**: its destination's circuit (shared in DynamoDB, read at most once a second per
//!    container; open means wait on the message's visibility without calling) and the Lambda
//!    deadline (a request that could not finish before it is not started);
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
use switchboard_core::dead_letter::{AttemptRecord, DeadLetter, send_dead_letter};
use switchboard_core::deadline;
use switchboard_core::delivery_policy::{
    self, Attempted, Class, Held, Outcome, Settlement, Waiting,
};
use switchboard_core::envelope::{DeliveryMessage, DeliveryRef, DeliveryV1};
use switchboard_core::idempotency::{Claim, NewClaim, Status, in_progress_until};
use switchboard_core::integration::{Integrations, Outbound, OutboundRoute, ResponseCheck};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::{
    Archive, AttemptLog, AwsError, CircuitStore, DeadLetterQueue, IdempotencyStore, LetterClaim,
    RateLimiter, ReviewStore, SecretStore, Visibility,
};
use switchboard_core::reason::Reason;
use switchboard_core::review::{Next, ReviewItem, ReviewStatus, Why};
use switchboard_core::secrets::{PREVIOUS_GRACE, SecretsCache};
use switchboard_shared::batch::{self, HandBack, receive_count};
use switchboard_shared::config::StartError;
use switchboard_shared::credentials::Credentials;
use switchboard_shared::http::{self, AuthError, GuardedHttp, RequestError};
use switchboard_shared::metrics::Metrics;

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

/// The deliver handler.
#[derive(Debug)]
pub struct Deliver<K, V, D, S, A> {
    integrations: Arc<Integrations<Outbound>>,
    /// Every request goes through the network guard; one client per connect timeout in use,
    /// each pooling its connections across events (one TLS handshake per destination per
    /// container).
    http: GuardedHttp,
    credentials: Credentials<K>,
    store: S,
    queue: V,
    dead_letters: D,
    archive: A,
    metrics: Metrics,
    /// Circuits as last read, by key (`circuit::key`: one per route).
    circuits: Mutex<HashMap<String, (Instant, CircuitState)>>,
    max_receive_count: u32,
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

/// One attempt's result, as the policy and the log see it.
#[derive(Debug)]
struct Attempt {
    outcome: Outcome,
    /// What went wrong, for the log and the DLQ (no body, no credential).
    error: Option<String>,
    /// The destination's `Retry-After`, if it sent one.
    retry_after: Option<Duration>,
    /// The first 1 KB of an error answer.
    snippet: Option<String>,
}

impl Attempt {
    /// An attempt that got no answer.
    fn failed(outcome: Outcome, error: String) -> Self {
        Self {
            outcome,
            error: Some(error),
            retry_after: None,
            snippet: None,
        }
    }

    /// The status the destination answered, if it answered.
    fn status(&self) -> Option<u16> {
        match self.outcome {
            Outcome::Status(s) | Outcome::Rejected { status: s, .. } => Some(s),
            _ => None,
        }
    }
}

/// A task's fate, carried out once by [`Deliver::execute`].
#[derive(Debug)]
enum Fate {
    /// The delivery policy's decision.
    Settle(Settlement),
    /// Delivered before: nothing is sent again.
    AlreadyDelivered,
    /// Dead-lettered before from this very message (its delete was lost).
    AlreadyDeadLettered,
    /// Waiting in the review queue: its item is looked at again after `wait`.
    InReview { wait: Duration, item: String },
    /// Its review item expired with `on_expiry: dead_letter`: the letter holds the kept request
    /// as decided, so a redrive delivers it.
    ReviewExpired {
        message: String,
        request: Box<DeliveryV1>,
    },
    /// Its review item was decided (rejected, or expired and dropped): nothing is sent.
    Reviewed { item: String, status: ReviewStatus },
    /// Handed back as it is (after `wait`, when set): another worker holds it, or the table
    /// could not be read.
    HandBack {
        wait: Option<Duration>,
        why: HandBack,
    },
}

impl Fate {
    /// Back to the queue at its own visibility timeout: a dependency failed.
    fn unavailable(why: String) -> Self {
        Fate::HandBack {
            wait: None,
            why: HandBack::Unavailable(why),
        }
    }
}

/// The claim this worker holds on a task.
#[derive(Debug)]
struct Claimed {
    key: String,
    expires_at: i64,
}

/// What the task's dead letter says about the attempts made.
#[derive(Debug, Default)]
struct Tried {
    attempts: u32,
    last_status: Option<u16>,
    history: Option<String>,
    /// The first 1 KB of the last answer, when the destination refused the request.
    answer: Option<String>,
}

/// The task's key in the attempt log.
fn task_key(task: &DeliveryV1) -> String {
    format!("{}#{}", task.event_id, task.route)
}

/// Rate-limit slots taken for one call, given back after it.
struct Taken {
    slot: Option<u32>,
}

impl<K, V, D, S, A> Deliver<K, V, D, S, A>
where
    K: SecretStore,
    V: Visibility,
    D: DeadLetterQueue,
    S: IdempotencyStore + CircuitStore + RateLimiter + AttemptLog + ReviewStore,
    A: Archive,
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
        })
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
        let deadline_ms = batch::deadline_ms(event.context.deadline);
        let received = Instant::now();
        batch::settle_each("delivery", &event.payload.records, |message| {
            self.process(message, deadline_ms, received)
        })
        .await
    }

    /// Ok when the message is done with (delivered, dead-lettered, or nothing left to do); Err
    /// when SQS should hand it back. The stages decide its fate; [`Deliver::execute`] carries
    /// it out, once.
    async fn process(
        &self,
        message: &SqsMessage,
        deadline_ms: Option<i64>,
        received: Instant,
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
                        self.count(
                            &pointer.integration,
                            &pointer.route,
                            "failed",
                            Reason::MalformedMessage,
                        );
                        return Ok(send_dead_letter(&self.dead_letters, &letter, "delivery").await?);
                    }
                    // On the queue's last receive, a letter with the pointer and why, rather
                    // than SQS's move with no reason (a redrive tries again).
                    Err(Err(unavailable)) if receives >= self.max_receive_count => {
                        let mut letter = DeadLetter::malformed(text, &unavailable, receives);
                        letter.reason = Reason::ArchiveUnavailable;
                        letter.event_id = pointer.event_id.to_string();
                        letter.integration = pointer.integration.clone();
                        letter.route = Some(pointer.route.clone());
                        self.count(
                            &pointer.integration,
                            &pointer.route,
                            "failed",
                            Reason::ArchiveUnavailable,
                        );
                        return Ok(send_dead_letter(&self.dead_letters, &letter, "delivery").await?);
                    }
                    Err(Err(unavailable)) => return Err(unavailable),
                }
            }
            Err(e) => {
                let letter = DeadLetter::malformed(text, e, receives);
                self.count("", "", "failed", Reason::MalformedMessage);
                return Ok(send_dead_letter(&self.dead_letters, &letter, "delivery").await?);
            }
        };
        let work = Work {
            message,
            text,
            task: &task,
            receives,
            received,
        };
        let mut claimed = None;
        let mut tried = Tried {
            attempts: receives,
            ..Tried::default()
        };
        let fate = self
            .stages(&work, deadline_ms, &mut claimed, &mut tried)
            .await
            .unwrap_or_else(|fate| fate);
        self.execute(&work, fate, claimed, tried).await
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

    /// admit -> claim -> throttle -> send -> settle: each stage either passes the task on or
    /// decides its fate.
    async fn stages(
        &self,
        work: &Work<'_>,
        deadline_ms: Option<i64>,
        claimed: &mut Option<Claimed>,
        tried: &mut Tried,
    ) -> Result<Fate, Fate> {
        let task = work.task;
        let route = self
            .integrations
            .get(&task.integration)
            .and_then(|i| i.routes.iter().find(|r| r.id == task.route))
            .ok_or_else(|| {
                Fate::Settle(Settlement::DeadLetter {
                    reason: Reason::UnknownRoute,
                    message: format!(
                        "route `{}/{}` is not defined here",
                        task.integration, task.route
                    ),
                })
            })?;
        let decided = self.review_gate(work, route).await?;
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
        let fate = self
            .deliver(work, route, deadline_ms, claimed, tried)
            .await
            .unwrap_or_else(|fate| fate);
        Ok(self.refused_to_review(work, route, fate, tried).await)
    }

    /// admit -> claim -> (redelivered) -> throttle -> call -> settle.
    async fn deliver(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        deadline_ms: Option<i64>,
        claimed: &mut Option<Claimed>,
        tried: &mut Tried,
    ) -> Result<Fate, Fate> {
        let destination = route.deliver.destination();
        // A circuit per route: another route's failures on the same host never hold this one.
        let circuit = circuit::key(&work.task.integration, &work.task.route, &destination);
        let probe = self.admit(work, route, &circuit, deadline_ms).await?;
        *claimed = Some(self.claim(work, deadline_ms).await?);
        self.redelivered(work, tried).await?;
        let taken = self
            .throttle(work, route, &destination, deadline_ms)
            .await?;
        let target = Target {
            destination: &destination,
            circuit: &circuit,
        };
        let (attempt, latency) = self.call(work, route, target, taken, probe).await?;
        Ok(self.settle(work, route, attempt, latency, tried).await)
    }

    /// The route's circuit (while it is open nothing is called; after its cool-down one caller
    /// probes) and the deadline (never start what cannot finish before it). Ok(probe).
    async fn admit(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        circuit: &str,
        deadline_ms: Option<i64>,
    ) -> Result<bool, Fate> {
        let now_ms = Utc::now().timestamp_millis();
        let state = self.circuit(circuit).await;
        let probe = match state.admit(now_ms) {
            Admit::Call => false,
            Admit::Probe => {
                let until = now_ms + route.deliver.timeout.as_millis() as i64 + 1000;
                match self.store.take_probe(circuit, now_ms, until).await {
                    Ok(true) => {
                        tracing::info!(circuit = %circuit, "circuit half-open: probing");
                        true
                    }
                    Ok(false) => {
                        let wait = Duration::from_secs(1);
                        return Err(self.held(work, route, Held::CircuitOpen, wait, Some(&state)));
                    }
                    Err(e) => return Err(Fate::unavailable(e.to_string())),
                }
            }
            Admit::Wait(until_ms) => {
                let wait = Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0));
                return Err(self.held(work, route, Held::CircuitOpen, wait, Some(&state)));
            }
        };
        if !self.time_for(route, deadline_ms) {
            return Err(self.held(work, route, Held::Deadline, Duration::ZERO, None));
        }
        Ok(probe)
    }

    /// Idempotent sends: the `deliver#{event_id}#{route}` claim. A redelivery after a success
    /// does not send again; one while another worker holds the claim comes back when that
    /// claim lapses (the worker may have died mid-call), not on every visibility timeout.
    async fn claim(&self, work: &Work<'_>, deadline_ms: Option<i64>) -> Result<Claimed, Fate> {
        let task = work.task;
        let key = format!("deliver#{}#{}", task.event_id, task.route);
        let now = Utc::now();
        let expires_at = now.timestamp() + DELIVERED_TTL.as_secs() as i64;
        let claim = NewClaim {
            key: key.clone(),
            now,
            expires_at,
            in_progress_expires_at_ms: in_progress_until(deadline_ms, now, DEFAULT_IN_PROGRESS),
        };
        match self.store.claim(&claim).await {
            Ok(Claim::Acquired) => Ok(Claimed { key, expires_at }),
            Ok(Claim::Exists(record)) if record.status == Status::Completed => {
                Err(Fate::AlreadyDelivered)
            }
            Ok(Claim::Exists(record)) => {
                let left = record.in_progress_expires_at_ms.unwrap_or(0) - now.timestamp_millis();
                Err(Fate::HandBack {
                    wait: Some(Duration::from_millis(
                        u64::try_from(left).unwrap_or(0) + 500,
                    )),
                    why: HandBack::Waiting("being delivered by another worker".into()),
                })
            }
            Err(e) => Err(Fate::unavailable(format!("idempotency claim failed: {e}"))),
        }
    }

    /// A redelivery of a task already dead-lettered from this message, or whose destination
    /// already refused it for good (the worker died before dead-lettering it), is not called
    /// again. Only redeliveries read the history, so the first attempt costs nothing extra.
    async fn redelivered(&self, work: &Work<'_>, tried: &mut Tried) -> Result<(), Fate> {
        // A request a person decided is sent, though its history says it was refused.
        if work.receives <= 1 || work.task.reviewed.is_some() {
            return Ok(());
        }
        let task = work.task;
        match self.store.attempts(&task_key(task)).await {
            Ok((_, Some(from))) if Some(&from) == work.message.message_id.as_ref() => {
                Err(Fate::AlreadyDeadLettered)
            }
            Ok((history, _)) => {
                let last_status = history.last().and_then(|a| a.status);
                if !delivery_policy::already_refused(last_status) {
                    return Ok(());
                }
                *tried = Tried {
                    attempts: u32::try_from(history.len()).unwrap_or(u32::MAX),
                    last_status,
                    history: switchboard_core::dead_letter::history_json(&history),
                    answer: history.last().and_then(|a| a.response.clone()),
                };
                Err(Fate::Settle(Settlement::DeadLetter {
                    reason: Reason::PermanentFailure,
                    message: format!(
                        "the destination answered {}",
                        last_status.unwrap_or_default()
                    ),
                }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the attempt history failed");
                Ok(())
            }
        }
    }

    /// The destination's limits, shared by every concurrent function.
    async fn throttle(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        destination: &str,
        deadline_ms: Option<i64>,
    ) -> Result<Taken, Fate> {
        match self.take_limits(route, destination, deadline_ms).await {
            Ok(Some(taken)) => Ok(taken),
            Ok(None) => {
                let wait = delivery_policy::rate_limited_wait(jitter(work.text, work.receives));
                Err(self.held(work, route, Held::RateLimited, wait, None))
            }
            Err(e) => Err(Fate::unavailable(format!("rate limit unavailable: {e}"))),
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
        let sent = self.send_refreshing(task, route).await;
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
        tracing::info!(
            event_id = %task.event_id,
            route = %task.route,
            attempt = work.receives,
            status = attempt.status(),
            error = attempt.error.as_deref(),
            class = ?delivery_policy::classify(attempt.outcome),
            latency_ms,
            "delivery attempt"
        );
        self.metrics
            .delivery_latency(&task.integration, &task.route, destination, latency_ms);
        self.update_circuit(route, target, attempt.outcome, probe)
            .await;
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
        tried: &mut Tried,
    ) -> Fate {
        if delivery_policy::classify(attempt.outcome) == Class::Delivered {
            return Fate::Settle(Settlement::Delivered);
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
        // Calls made so far (waits for an open circuit or a rate limit are not attempts).
        let attempts = u32::try_from(history.len()).unwrap_or(u32::MAX).max(1);
        *tried = Tried {
            attempts,
            last_status: status,
            history: switchboard_core::dead_letter::history_json(&history),
            answer: attempt.snippet.clone(),
        };
        Fate::Settle(delivery_policy::settle(&Attempted {
            outcome: attempt.outcome,
            what: &what,
            attempts,
            receives: work.receives,
            max_receive_count: self.max_receive_count,
            schedule: &route.deliver.retry,
            jitter: jitter(work.text, work.receives),
            retry_after: attempt.retry_after,
        }))
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
        Fate::Settle(delivery_policy::hold(&Waiting {
            why,
            wait,
            age,
            receives: work.receives,
            max_receive_count: self.max_receive_count,
            schedule: &route.deliver.retry,
            destination: &route.deliver.destination(),
            jitter: jitter(work.text, work.receives),
            probe_failed: circuit.is_some_and(|c| c.probe_failed_since(sent_ms)),
            outage: &outage,
        }))
    }

    /// Carries out a task's fate, exactly once: completes or releases its claim, sets its
    /// visibility, or dead-letters it, and counts it.
    async fn execute(
        &self,
        work: &Work<'_>,
        fate: Fate,
        claimed: Option<Claimed>,
        tried: Tried,
    ) -> Result<(), HandBack> {
        let task = work.task;
        let (integration, route) = (task.integration.as_str(), task.route.as_str());
        let result = match fate {
            Fate::Settle(Settlement::Delivered) => {
                if let Some(c) = &claimed
                    && let Err(e) = self.store.complete(&c.key, "delivered", c.expires_at).await
                {
                    // Delivered: nothing is lost. A redelivery inside the in-progress window
                    // waits; after it, the destination's Idempotency-Key dedupes.
                    tracing::warn!(error = %e, "completing the idempotency record failed");
                }
                self.count(integration, route, "delivered", "");
                return Ok(());
            }
            Fate::Settle(Settlement::Retry { wait, reason }) => {
                self.count(integration, route, "retried", reason);
                self.set_visibility(work.message, wait, work.received).await;
                Err(HandBack::Waiting(format!(
                    "{reason}; next attempt in {}s",
                    wait.as_secs()
                )))
            }
            Fate::Settle(Settlement::Hold { why, wait }) => {
                self.count(integration, route, why.as_str(), why.as_str());
                self.set_visibility(work.message, wait, work.received).await;
                Err(HandBack::Waiting(format!(
                    "{}; next look in {}s",
                    why.as_str(),
                    wait.as_secs()
                )))
            }
            Fate::Settle(Settlement::DeadLetter { reason, message }) => {
                self.dead_letter(work, reason, message, tried, None).await
            }
            Fate::ReviewExpired { message, request } => {
                let body = serde_json::to_string(&DeliveryMessage::DeliveryV1(*request)).ok();
                self.dead_letter(work, Reason::ReviewExpired, message, tried, body)
                    .await
            }
            Fate::AlreadyDelivered => {
                tracing::info!(event_id = %task.event_id, route, "already delivered; not sent again");
                self.count(integration, route, "skipped", "already_delivered");
                Ok(())
            }
            Fate::AlreadyDeadLettered => {
                tracing::info!(event_id = %task.event_id, route, "already dead-lettered; not again");
                Ok(())
            }
            Fate::InReview { wait, item } => {
                self.count(integration, route, "review", "waiting");
                self.set_visibility(work.message, wait, work.received).await;
                Err(HandBack::Waiting(format!(
                    "waiting in review ({item}); next look in {}s",
                    wait.as_secs()
                )))
            }
            Fate::Reviewed { item, status } => {
                tracing::info!(event_id = %task.event_id, route, item, status = status.as_str(), "review decided; nothing to send");
                self.count(
                    integration,
                    route,
                    "skipped",
                    format!("review_{}", status.as_str()),
                );
                Ok(())
            }
            Fate::HandBack { wait, why } => {
                if let Some(wait) = wait {
                    self.set_visibility(work.message, wait, work.received).await;
                }
                Err(why)
            }
        };
        if let Some(c) = claimed {
            self.release(&c.key).await;
        }
        result
    }

    /// Hands the message back after `wait`, cut to end within 12 h of its receive (SQS's
    /// limit; `received` is when the batch reached the function).
    async fn set_visibility(&self, message: &SqsMessage, wait: Duration, received: Instant) {
        let wait = delivery_policy::within_receive(wait, received.elapsed());
        if let Some(receipt) = message.receipt_handle.as_deref()
            && let Err(e) = self.queue.delay(receipt, wait).await
        {
            // The queue's own visibility timeout applies instead.
            tracing::warn!(error = %e, "could not set the retry delay");
        }
    }

    /// Whether a request of this route started now finishes before the deadline.
    fn time_for(&self, route: &OutboundRoute, deadline_ms: Option<i64>) -> bool {
        deadline::leaves_time(
            route.deliver.timeout,
            deadline_ms,
            Utc::now().timestamp_millis(),
        )
    }

    /// Takes the route's rate limits, waiting in process up to `MAX_LIMIT_WAIT` (and never
    /// past the deadline); None when they stay taken.
    async fn take_limits(
        &self,
        route: &OutboundRoute,
        destination: &str,
        deadline_ms: Option<i64>,
    ) -> Result<Option<Taken>, AwsError> {
        let limits = route.deliver.limits;
        let started = Instant::now();
        let can_wait = |d: Duration| started.elapsed() + d <= MAX_LIMIT_WAIT;
        if let Some(max) = limits.max_per_second {
            loop {
                let now_ms = Utc::now().timestamp_millis();
                let second = now_ms.div_euclid(1000);
                if self.store.take_rate(destination, second, max).await? {
                    break;
                }
                let to_next = u64::try_from(1000 - now_ms.rem_euclid(1000)).unwrap_or(0);
                let next = Duration::from_millis(to_next + 5);
                if !can_wait(next) {
                    return Ok(None);
                }
                tokio::time::sleep(next).await;
                if !self.time_for(route, deadline_ms) {
                    return Ok(None);
                }
            }
        }
        let mut slot = None;
        if let Some(max) = limits.max_concurrency {
            let draw = jitter(destination, started.elapsed().subsec_nanos()).abs();
            let start = (draw * f64::from(max)) as u32 % max;
            let mut pause = Duration::from_millis(50);
            loop {
                let now_ms = Utc::now().timestamp_millis();
                let lease = now_ms + (route.deliver.timeout + deadline::MARGIN).as_millis() as i64;
                let taken = self
                    .store
                    .take_slot(destination, max, start, now_ms, lease)
                    .await?;
                if taken.is_some() {
                    slot = taken;
                    break;
                }
                if !can_wait(pause) {
                    return Ok(None);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(400));
                if !self.time_for(route, deadline_ms) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(Taken { slot }))
    }

    /// Deletes the claim so the next attempt can take it.
    async fn release(&self, key: &str) {
        if let Err(e) = self.store.release(key).await {
            // The claim lapses at its in-progress expiry instead.
            tracing::warn!(error = %e, "releasing the idempotency record failed");
        }
    }

    async fn dead_letter(
        &self,
        work: &Work<'_>,
        reason: Reason,
        message: String,
        tried: Tried,
        body: Option<String>,
    ) -> Result<(), HandBack> {
        let task = work.task;
        let letter = DeadLetter {
            body: body.unwrap_or_else(|| work.text.to_string()),
            reason,
            message,
            integration: task.integration.clone(),
            route: Some(task.route.clone()),
            event_id: task.event_id.to_string(),
            attempts: tried.attempts,
            last_status: tried.last_status,
            history: tried.history,
        };
        let message_id = work.message.message_id.as_deref().unwrap_or_default();
        // One refusal, one letter: a second message of the same task (transform queued it
        // twice) finds the letter claimed and leaves none; the same message on a second worker
        // (its visibility lapsed mid-batch) comes back after the first's lease. A claim that
        // cannot be read or written does not stop the letter: a duplicate beats a loss.
        let now_ms = Utc::now().timestamp_millis();
        let lease = now_ms + LETTER_LEASE.as_millis() as i64;
        match self
            .store
            .claim_dead_letter(&task_key(task), message_id, now_ms, lease)
            .await
        {
            Ok(LetterClaim::Busy { until_ms }) => {
                let wait = Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0));
                self.set_visibility(work.message, wait + Duration::from_secs(1), work.received)
                    .await;
                return Err(HandBack::Waiting(
                    "another worker is dead-lettering this message".into(),
                ));
            }
            Ok(LetterClaim::OtherCopy) => {
                tracing::info!(event_id = %task.event_id, route = %task.route, reason = reason.as_str(), "another copy of this task was dead-lettered; no second letter");
                self.count(
                    &task.integration,
                    &task.route,
                    "skipped",
                    "already_dead_lettered",
                );
                return Ok(());
            }
            Ok(LetterClaim::Sent) => {
                tracing::info!(event_id = %task.event_id, route = %task.route, "already dead-lettered from this message; not again");
                return Ok(());
            }
            Ok(LetterClaim::Won) => {}
            Err(e) => tracing::warn!(error = %e, "claiming the dead letter failed; sending it"),
        }
        self.count(&task.integration, &task.route, "failed", reason);
        send_dead_letter(&self.dead_letters, &letter, "delivery").await?;
        if let Err(e) = self
            .store
            .mark_dead_lettered(&task_key(task), message_id)
            .await
        {
            // A redelivery may dead-letter it a second time; nothing is lost.
            tracing::warn!(error = %e, "noting the dead letter failed");
        }
        Ok(())
    }

    fn count(&self, integration: &str, route: &str, outcome: &str, reason: impl AsRef<str>) {
        self.metrics.delivery(integration, route, outcome, reason);
    }
}

/// What an answer came to. It is read so the connection can be reused (a drop here is a
/// failed attempt), but never more of it than is kept: a success's body is used only by the
/// route's `success` check, an error's first 1 KB travels with the history. A longer answer
/// costs the connection, not memory.
async fn answer(response: reqwest::Response, check: Option<&ResponseCheck>) -> Attempt {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| delivery_policy::retry_after(v, SystemTime::now()));
    let success = (200..300).contains(&status);
    let cap = if success {
        SUCCESS_READ_BYTES
    } else {
        SNIPPET_BYTES
    };
    // Only a checked route pays for its answer's headers.
    let check = check
        .filter(|_| success)
        .map(|c| (c, http::response_headers(&response)));
    let (outcome, snippet) = match http::read_capped(response, cap).await {
        Ok(read) if success => match check {
            None => (Outcome::Status(status), None),
            Some((check, headers)) => match checked(check, status, headers, &read.bytes) {
                None => (Outcome::Status(status), None),
                Some(retryable) => (
                    Outcome::Rejected { status, retryable },
                    snippet(&read.bytes),
                ),
            },
        },
        Ok(read) => (Outcome::Status(status), snippet(&read.bytes)),
        Err(_) if success => (Outcome::Status(status), None),
        Err(_) => (Outcome::Dropped, None),
    };
    let error = match outcome {
        Outcome::Dropped => Some(format!("connection dropped after {status}")),
        Outcome::Rejected { .. } => Some(format!(
            "the destination answered {status}, but its answer fails the route's success check"
        )),
        _ => None,
    };
    Attempt {
        outcome,
        error,
        retry_after,
        snippet,
    }
}

/// Runs the route's check over a 2xx answer: None when it means delivered, else whether
/// another try may help. An answer too long to read whole, not JSON, or a check that fails
/// to evaluate is judged as it reads (a body that is not JSON is the text).
fn checked(
    check: &ResponseCheck,
    status: u16,
    headers: serde_json::Value,
    body: &[u8],
) -> Option<bool> {
    let body = serde_json::from_slice::<serde_json::Value>(body)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned().into());
    check.judge(status, headers, body)
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
}

/// The first 1 KB of an answer, as text (cut on a character boundary).
fn snippet(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let mut end = bytes.len().min(SNIPPET_BYTES);
    while end > 0 && end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// A transport failure as the policy names it.
fn transport_outcome(e: &reqwest::Error) -> Outcome {
    if http::blocked(e).is_some() {
        Outcome::Blocked
    } else if e.is_timeout() {
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
fn jitter(message: &str, attempt: u32) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (message, attempt).hash(&mut h);
    (h.finish() % 20_001) as f64 / 10_000.0 - 1.0
}

mod circuit_state;
mod request;
mod review_gate;
#[cfg(test)]
mod rules;

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
