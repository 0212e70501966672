//! What the handlers need from the outside world, as narrow traits. The AWS SDK
//! implementations live in `aws`; tests and benchmarks may supply their own.

use std::future::Future;

use crate::idempotency::{Claim, NewClaim};
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
    pub reason: &'static str,
    /// What went wrong, for a human; never a secret or a body.
    pub message: String,
    /// The integration.
    pub integration: String,
    /// The route at fault, when one is.
    pub route: Option<String>,
    /// The event.
    pub event_id: String,
    /// How many times the message had been received.
    pub attempts: u32,
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
        reason = letter.reason,
        message = %letter.message,
        attempts = letter.attempts,
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

/// Where secret values are read from.
pub trait SecretStore: Send + Sync {
    /// The current value of a secret (`AWSCURRENT`).
    fn get(&self, id: &str) -> impl Future<Output = Result<SecretString, AwsError>> + Send;

    /// The value it had before its last rotation (`AWSPREVIOUS`), if there is one.
    fn get_previous(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SecretString>, AwsError>> + Send;
}

/// Where raw events are archived (and large bodies parked for the queues).
pub trait Archive: Send + Sync {
    /// Stores `body` under `key`.
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Reads the object at `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, AwsError>> + Send;
}
