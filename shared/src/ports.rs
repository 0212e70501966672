//! What the handlers need from the outside world, as narrow traits. The AWS SDK
//! implementations live in `aws`; tests and benchmarks may supply their own.

use std::future::Future;

use crate::circuit::CircuitState;
use crate::idempotency::{Claim, NewClaim};
use crate::reason::Reason;
use crate::secret::SecretString;

/// An AWS call that failed. `retryable` is false only when retrying cannot help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct AwsError {
    /// The API operation (`SendMessage`, `PutItem`, …).
    pub operation: &'static str,
    /// What the service or the transport said.
    pub message: String,
}

/// A queue that takes message bodies.
pub trait Queue: Send + Sync {
    /// Sends every body, in as few requests as the service allows; all or an error.
    fn send(&self, bodies: &[String]) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Why a message was dead-lettered, carried as SQS message attributes so an operator can
/// filter and redrive by reason without opening bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message body (what a redrive puts back on the source queue).
    pub body: String,
    /// A stable, machine-readable reason (`contract_violation`, `mapping_error`, ...).
    pub reason: Reason,
    /// What went wrong, for a human; never a secret or a body.
    pub message: String,
    /// The integration.
    pub integration: String,
    /// The route at fault, when one is.
    pub route: Option<String>,
    /// The event.
    pub event_id: String,
    /// How many attempts were made (for a delivery: calls to the destination; else the
    /// message's receive count).
    pub attempts: u32,
    /// The destination's last answer, when it gave one.
    pub last_status: Option<u16>,
    /// The attempt history (a JSON array of [`AttemptRecord`]), when there is one.
    pub history: Option<String>,
}

impl DeadLetter {
    /// A message whose body could not be decoded: nothing is known of it but its text.
    pub fn malformed(body: &str, error: impl std::fmt::Display, attempts: u32) -> Self {
        Self {
            body: body.to_string(),
            reason: Reason::MalformedMessage,
            message: error.to_string(),
            integration: String::new(),
            route: None,
            event_id: String::new(),
            attempts,
            last_status: None,
            history: None,
        }
    }
}

/// The receive count SQS reports for a message (1 when it does not say).
pub fn receive_count(attributes: &std::collections::HashMap<String, String>) -> u32 {
    attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1)
}

/// One delivery attempt as it is kept for ops: it travels to the DLQ with the task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    /// The message's receive count when the attempt was made.
    pub receive: u32,
    /// When it was made (RFC 3339).
    pub at: String,
    /// The destination's status, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The transport error, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the call took.
    pub latency_ms: u64,
    /// The first 1 KB of an error answer's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// A dead-letter queue we write to ourselves (permanent failures do not wait for
/// maxReceiveCount).
pub trait DeadLetterQueue: Send + Sync {
    /// Sends one dead letter with its reason attributes.
    fn dead_letter(&self, letter: &DeadLetter)
    -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// The queue a message was received from: its visibility timeout is the retry timer.
pub trait Visibility: Send + Sync {
    /// Keeps a received message invisible for `by` from now (then SQS hands it back).
    fn delay(
        &self,
        receipt_handle: &str,
        by: std::time::Duration,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Logs why `letter` is dead-lettered (never its body) and sends it; the error says which
/// reason could not be dead-lettered. `what` names the message in the log line.
pub async fn send_dead_letter<D: DeadLetterQueue>(
    queue: &D,
    letter: &DeadLetter,
    what: &'static str,
) -> Result<(), String> {
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
        .map_err(|e| format!("could not dead-letter ({}): {e}", letter.reason))
}

/// The idempotency table.
pub trait IdempotencyStore: Send + Sync {
    /// Takes the key unless a live record holds it (one conditional put).
    fn claim(&self, claim: &NewClaim) -> impl Future<Output = Result<Claim, AwsError>> + Send;

    /// Marks the key COMPLETED with the work's result.
    fn complete(
        &self,
        key: &str,
        data: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Deletes the key so a retry can take it.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// State shared by every concurrent deliver function about destinations (circuit breakers,
/// rate limits) and about tasks (attempt histories). Keys are a destination's origin.
pub trait DestinationStore: Send + Sync {
    /// The destination's circuit as stored (closed when there is no record).
    fn circuit(
        &self,
        destination: &str,
    ) -> impl Future<Output = Result<CircuitState, AwsError>> + Send;

    /// Counts one more consecutive failure; returns the count.
    fn count_failure(
        &self,
        destination: &str,
    ) -> impl Future<Output = Result<u32, AwsError>> + Send;

    /// Opens the circuit until `until_ms`. Unless `force`, only if it is not open at `now_ms`
    /// already; returns whether this call opened it.
    fn open_circuit(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
        force: bool,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;

    /// Takes the one probe of a cooled-down circuit until `until_ms`; false if another caller
    /// has it.
    fn take_probe(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;

    /// Resets the failure count and closes the circuit; returns whether it had been open.
    fn close_circuit(
        &self,
        destination: &str,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;

    /// Takes one of the `max` calls of second `second` (Unix); false if they are all taken.
    fn take_rate(
        &self,
        destination: &str,
        second: i64,
        max: u32,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;

    /// Takes a free one of `max` concurrency slots (trying from `start`), leased until
    /// `lease_until_ms` so a crashed caller's slot frees itself; None if all are taken.
    fn take_slot(
        &self,
        destination: &str,
        max: u32,
        start: u32,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> impl Future<Output = Result<Option<u32>, AwsError>> + Send;

    /// Gives a slot back.
    fn free_slot(
        &self,
        destination: &str,
        slot: u32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// The task's attempt history (empty when there is none), and the SQS message id it was
    /// dead-lettered from, if it was.
    fn attempts(
        &self,
        task: &str,
    ) -> impl Future<Output = Result<(Vec<AttemptRecord>, Option<String>), AwsError>> + Send;

    /// Notes that message `message_id` of the task is in the DLQ, so a redelivery of that
    /// message (its worker died before deleting it) does not put it there twice. A redrive
    /// is a new message and runs again.
    fn mark_dead_lettered(
        &self,
        task: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Appends a failed attempt to the task's history; returns the whole history.
    fn record_attempt(
        &self,
        task: &str,
        attempt: &AttemptRecord,
        expires_at: i64,
    ) -> impl Future<Output = Result<Vec<AttemptRecord>, AwsError>> + Send;
}

/// Where secret values are read from.
pub trait SecretStore: Send + Sync {
    /// The current value of a secret (`AWSCURRENT`).
    fn get(&self, id: &str) -> impl Future<Output = Result<SecretString, AwsError>> + Send;

    /// Every value a signature may be made or checked with, read together so they agree:
    /// `AWSCURRENT` (with when it became current), `AWSPREVIOUS` and `AWSPENDING`. Stores
    /// without rotation have only the current value.
    fn get_stages(&self, id: &str) -> impl Future<Output = Result<SecretStages, AwsError>> + Send {
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
    fn versions(&self, id: &str) -> impl Future<Output = Result<SecretVersions, AwsError>> + Send;

    /// The value of `version` if it carries `stage` (None when there is no such version).
    fn value(
        &self,
        id: &str,
        version: Option<&str>,
        stage: &str,
    ) -> impl Future<Output = Result<Option<SecretString>, AwsError>> + Send;

    /// Stores `value` as version `token`, staged `AWSPENDING` (idempotent for a token).
    fn put_pending(
        &self,
        id: &str,
        token: &str,
        value: &SecretString,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Moves `AWSCURRENT` from version `from` to version `token`, and takes `AWSPENDING` off it.
    fn promote(
        &self,
        id: &str,
        token: &str,
        from: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Takes `AWSPENDING` off version `token`.
    fn clear_pending(
        &self,
        id: &str,
        token: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Where raw events are archived (and large bodies parked for the queues).
pub trait Archive: Send + Sync {
    /// Stores `body` under `key`.
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Reads the object at `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, AwsError>> + Send;
}
