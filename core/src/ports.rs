//! What the handlers need from the outside world, as narrow traits. The AWS SDK
//! implementations live in `aws`; tests and benchmarks may supply their own.

use std::future::Future;

use crate::circuit::CircuitState;
use crate::dead_letter::{AttemptRecord, DeadLetter};
use crate::idempotency::Record;
use crate::reason::Reason;
use crate::review::{ReviewItem, ReviewStatus};
use crate::secret::SecretString;

/// A call through a port that failed (an AWS service, behind its adapter): the operation and
/// what the service or the transport said. Whether to retry is the caller's decision.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct PortError {
    /// The API operation (`SendMessage`, `PutItem`, …).
    pub operation: &'static str,
    /// What the service or the transport said.
    pub message: String,
}

/// A queue that takes message bodies.
pub trait Queue: Send + Sync {
    /// Sends every message, in as few requests as the service allows; all or an error.
    fn send(&self, messages: &[Outgoing]) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Sends every message, in as few requests as the service allows, and says which were not
    /// sent (a batch request's entries fail one by one). By default: all or none.
    fn send_each(&self, messages: &[Outgoing]) -> impl Future<Output = Result<(), Unsent>> + Send {
        async move {
            self.send(messages).await.map_err(|error| Unsent {
                error,
                failed: (0..messages.len()).collect(),
            })
        }
    }
}

/// What a [`Queue::send_each`] could not send: the messages' indexes, and the first error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} message(s) not sent: {error}", failed.len())]
pub struct Unsent {
    /// The first error.
    pub error: PortError,
    /// The indexes of the messages not sent, ascending.
    pub failed: Vec<usize>,
}

/// A message to send, and the group it is fair within (SQS's `MessageGroupId`: on a standard
/// queue, fair queues keep one group's backlog from delaying the others' messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The message body.
    pub body: String,
    /// Its group (`envelope::message_group`), if it has one.
    pub group: Option<String>,
}

impl Outgoing {
    /// A message in no group.
    pub fn ungrouped(body: String) -> Self {
        Self { body, group: None }
    }
}

/// A dead-letter queue we write to ourselves (permanent failures do not wait for
/// maxReceiveCount).
pub trait DeadLetterQueue: Send + Sync {
    /// Sends one dead letter with its reason attributes.
    fn dead_letter(
        &self,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The queue a message was received from: its visibility timeout is the retry timer.
pub trait Visibility: Send + Sync {
    /// Keeps a received message invisible for `by` from now (then SQS hands it back).
    fn delay(
        &self,
        receipt_handle: &str,
        by: std::time::Duration,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The idempotency table.
pub trait IdempotencyStore: Send + Sync {
    /// Deletes the key so a retry can take it.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), PortError>> + Send;

    /// The key's record: read strongly consistently (one read unit), or eventually (half: a
    /// write of the last second may not be seen yet).
    fn lookup(
        &self,
        key: &str,
        consistent: bool,
    ) -> impl Future<Output = Result<Option<Record>, PortError>> + Send;

    /// Records the key COMPLETED with `data` unless a live COMPLETED record holds it (one
    /// conditional put); answers whether this call recorded it.
    fn record_completed(
        &self,
        key: &str,
        data: &str,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Counts a sender's retry of an event already accepted on its record (ingest answered it
    /// as a duplicate): `switchboard events show` says it was posted again, and when last.
    /// A store that keeps no such count does nothing.
    fn note_duplicate(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<(), PortError>> + Send {
        let _ = (key, now);
        std::future::ready(Ok(()))
    }
}

/// Routes' circuit breakers, shared by every concurrent deliver function. Keys are
/// `circuit::key` (one circuit per route).
pub trait CircuitStore: Send + Sync {
    /// The circuit as stored (closed when there is no record).
    fn circuit(&self, key: &str) -> impl Future<Output = Result<CircuitState, PortError>> + Send;

    /// Counts one more consecutive failure; returns the count.
    fn count_failure(&self, key: &str) -> impl Future<Output = Result<u32, PortError>> + Send;

    /// Opens the circuit until `until_ms`, noting when this outage began if it is new. After a
    /// failed probe (`probe_failed`) it opens whatever its state, and the probe is counted
    /// with its time; otherwise only if it is not open at `now_ms` already. Returns whether
    /// this call opened it.
    fn open_circuit(
        &self,
        key: &str,
        now_ms: i64,
        until_ms: i64,
        probe_failed: bool,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Marks the route's destination slow until `until_ms` (`share`): every container reads it
    /// with the circuit, and holds the destination to its share.
    fn mark_slow(
        &self,
        key: &str,
        until_ms: i64,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Takes the one probe of a cooled-down circuit until `until_ms`; false if another caller
    /// has it.
    fn take_probe(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Resets the failure count and closes the circuit; returns whether it had been open.
    fn close_circuit(
        &self,
        destination: &str,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
}

/// Destinations' rate limits (calls per second, calls in flight), shared by every concurrent
/// deliver function.
pub trait RateLimiter: Send + Sync {
    /// Takes one of the `max` calls of second `second` (Unix); false if they are all taken.
    fn take_rate(
        &self,
        destination: &str,
        second: i64,
        max: u32,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Takes every call of each second from `from` to `to` (Unix, inclusive; none when `to`
    /// is before `from`): the API said none are left until then, so no function calls it
    /// before.
    fn exhaust(
        &self,
        destination: &str,
        from: i64,
        to: i64,
        max: u32,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Takes a free one of `max` concurrency slots (trying them in [`slot_order`] from
    /// `start`), leased until `lease_until_ms` so a crashed caller's slot frees itself; None if
    /// all are taken.
    fn take_slot(
        &self,
        destination: &str,
        max: u32,
        start: u32,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> impl Future<Output = Result<Option<u32>, PortError>> + Send;

    /// Gives a slot back.
    fn free_slot(
        &self,
        destination: &str,
        slot: u32,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Each delivery task's attempt history, kept across receives (and so across functions).
pub trait AttemptLog: Send + Sync {
    /// The task's attempt history (empty when there is none), and the SQS message id it was
    /// dead-lettered from, if it was.
    fn attempts(
        &self,
        task: &str,
    ) -> impl Future<Output = Result<(Vec<AttemptRecord>, Option<String>), PortError>> + Send;

    /// Takes the right to dead-letter the task for message `message_id` until `lease_until_ms`,
    /// before its letter is sent. Won when nobody has it, or this message had it and its lease
    /// lapsed (its worker died before the letter went). A second message of the same task
    /// (transform queued it twice) finds it taken by another copy and writes no letter; the
    /// same message on a second worker (its visibility lapsed mid-batch) finds it busy and
    /// comes back. A redrive forgets it with the history.
    fn claim_dead_letter(
        &self,
        task: &str,
        message_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> impl Future<Output = Result<LetterClaim, PortError>> + Send;

    /// Notes that message `message_id` of the task is in the DLQ with `reason` (after its
    /// letter was sent),
    /// so a redelivery of that message (its worker died before deleting it) does not put it
    /// there twice. A redrive is a new message and runs again.
    fn mark_dead_lettered(
        &self,
        task: &str,
        message_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Notes when the task's next attempt is due (Unix ms), after a failed one set its delay:
    /// `switchboard events show` says when a waiting task is tried again.
    fn note_next_attempt(
        &self,
        task: &str,
        at_ms: i64,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Forgets the task's history and its dead letter's marks, so it is sent again with its
    /// whole retry schedule (a redrive, a person's decision).
    fn reset_attempts(&self, task: &str) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Appends a failed attempt to the task's history; returns the whole history.
    fn record_attempt(
        &self,
        task: &str,
        attempt: &AttemptRecord,
        expires_at: i64,
    ) -> impl Future<Output = Result<Vec<AttemptRecord>, PortError>> + Send;
}

/// Who writes a task's dead letter ([`AttemptLog::claim_dead_letter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterClaim {
    /// This message: write it.
    Won,
    /// Another message of the same task has it and writes the letter: this copy leaves none.
    OtherCopy,
    /// This message's letter was sent already (a worker's message came back after it): none
    /// again.
    Sent,
    /// This message, on a worker that has not finished: look again after the lease (Unix ms).
    Busy {
        /// When the other worker's lease lapses.
        until_ms: i64,
    },
}

/// Whose turn it is to change a record, and its last delivered version (in the idempotency
/// table, under `order#{integration}/{route}#{key}`): one task of an ordered route's key at a
/// time (`ordering`).
pub trait OrderStore: Send + Sync {
    /// Takes the key's turn for `holder` until `until_ms` when it is free, lapsed or already
    /// the holder's (a retry extends it), no longer waiting; answers the last version
    /// delivered and who else waits, or until when the turn is another's.
    fn take_turn(
        &self,
        key: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = Result<Turn, PortError>> + Send;

    /// Notes that `holder`, at `version`, waits for the key's turn until `expires_ms`: an
    /// older change waiting goes before a newer one when the turn passes on.
    fn wait_turn(
        &self,
        key: &str,
        holder: &str,
        version: &serde_json::Value,
        expires_ms: i64,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Ends the holder's turn; `delivered`, the version it delivered, becomes the last one.
    /// A turn that lapsed and was taken by another is left to it.
    fn end_turn(
        &self,
        key: &str,
        holder: &str,
        delivered: Option<&serde_json::Value>,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A key's turn ([`OrderStore::take_turn`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// This holder's: the last version delivered for the key, if any, and the versions of
    /// the other changes waiting for it (their waits not lapsed).
    Mine {
        /// The last delivered version.
        last: Option<serde_json::Value>,
        /// The versions waiting.
        waiting: Vec<serde_json::Value>,
    },
    /// Another task's, until then (Unix ms).
    Taken {
        /// When its turn lapses, unless it is extended or ended first.
        until_ms: i64,
    },
}

/// The review queue's items (in the idempotency table, under `review#{id}`).
pub trait ReviewStore: Send + Sync {
    /// Stores a new item unless one with its id exists; returns whether it was created.
    fn create_review(
        &self,
        item: &ReviewItem,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// The item, if there is one.
    fn review(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ReviewItem>, PortError>> + Send;

    /// Writes the item back if it is still at `item.version - 1` (nobody wrote it since it was
    /// read); returns whether it was written.
    fn update_review(
        &self,
        item: &ReviewItem,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Every item with this status, oldest first.
    fn reviews(
        &self,
        status: ReviewStatus,
    ) -> impl Future<Output = Result<Vec<ReviewItem>, PortError>> + Send;
}

/// Where secret values are read from.
pub trait SecretStore: Send + Sync {
    /// The current value of a secret (`AWSCURRENT`).
    fn get(&self, id: &str) -> impl Future<Output = Result<SecretString, PortError>> + Send;

    /// Every value a signature may be made or checked with, read together so they agree:
    /// `AWSCURRENT` (with when it became current), `AWSPREVIOUS` and `AWSPENDING`. Stores
    /// without rotation have only the current value.
    fn get_stages(&self, id: &str) -> impl Future<Output = Result<SecretStages, PortError>> + Send {
        async move {
            Ok(SecretStages {
                current: self.get(id).await?,
                ..SecretStages::default()
            })
        }
    }
}

/// A secret's values by version stage, as one read saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretStages {
    /// `AWSCURRENT`.
    pub current: SecretString,
    /// When the current version was created (Unix seconds): the last rotation, near enough.
    pub current_since: Option<i64>,
    /// `AWSPREVIOUS`, the value before the last rotation.
    pub previous: Option<SecretString>,
    /// `AWSPENDING`, the value a rotation in progress is about to make current.
    pub pending: Option<SecretString>,
}

/// A secret's rotation state, as Secrets Manager describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretVersions {
    /// Whether rotation is enabled for the secret.
    pub rotation_enabled: bool,
    /// Each version's staging labels (`AWSCURRENT`, `AWSPENDING`, `AWSPREVIOUS`).
    pub stages: std::collections::HashMap<String, Vec<String>>,
}

impl SecretVersions {
    /// The version carrying `stage`, if any.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(v, _)| v.as_str())
    }

    /// Whether `version` carries `stage`.
    pub fn has(&self, version: &str, stage: &str) -> bool {
        self.stages
            .get(version)
            .is_some_and(|s| s.iter().any(|x| x == stage))
    }
}

/// What the rotate function needs from Secrets Manager.
pub trait RotationStore: Send + Sync {
    /// The secret's rotation flag and version stages (`DescribeSecret`).
    fn versions(&self, id: &str) -> impl Future<Output = Result<SecretVersions, PortError>> + Send;

    /// The value of `version` if it carries `stage` (None when there is no such version).
    fn value(
        &self,
        id: &str,
        version: Option<&str>,
        stage: &str,
    ) -> impl Future<Output = Result<Option<SecretString>, PortError>> + Send;

    /// Stores `value` as version `token`, staged `AWSPENDING` (idempotent for a token).
    fn put_pending(
        &self,
        id: &str,
        token: &str,
        value: &SecretString,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Moves `AWSCURRENT` from version `from` to version `token`, and takes `AWSPENDING` off it.
    fn promote(
        &self,
        id: &str,
        token: &str,
        from: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Takes `AWSPENDING` off version `token`.
    fn clear_pending(
        &self,
        id: &str,
        token: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Where raw events are archived (and large bodies parked for the queues).
pub trait Archive: Send + Sync {
    /// Stores `body` under `key`.
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Reads the object at `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, PortError>> + Send;
}

/// A dead letter that could not be written: the message goes back to its queue, so nothing
/// is lost.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not dead-letter ({reason}): {error}")]
pub struct NotDeadLettered {
    /// Why it was to be dead-lettered.
    pub reason: Reason,
    /// What the DLQ said.
    pub error: PortError,
}

/// The order a `take_slot` tries a destination's `max` slots: from `start`, around.
pub fn slot_order(start: u32, max: u32) -> impl Iterator<Item = u32> {
    (0..max).map(move |i| ((u64::from(start) + u64::from(i)) % u64::from(max)) as u32)
}

/// Logs why `letter` is dead-lettered (never its body) and sends it. `what` names the message
/// in the log line.
pub async fn send_dead_letter<D: DeadLetterQueue>(
    queue: &D,
    letter: &DeadLetter,
    what: &'static str,
) -> Result<(), NotDeadLettered> {
    tracing::warn!(
        event_id = %letter.event_id,
        integration = %letter.integration,
        route = letter.route.as_deref(),
        reason = letter.reason.as_str(),
        message = %letter.message,
        attempts = letter.attempts,
        last_status = letter.last_status,
        "{what} dead-lettered"
    );
    queue
        .dead_letter(letter)
        .await
        .map_err(|error| NotDeadLettered {
            reason: letter.reason,
            error,
        })
}
