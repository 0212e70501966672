//! What the stages decide for a task, and what carrying it out needs: one attempt's result,
//! the task's `Fate`, the claim this worker holds, what the calls so far say (`Tried`), all
//! handed to the executor as one `Decided`.

use super::*;

/// One attempt's result, as the policy and the log see it.
#[derive(Debug)]
pub(super) struct Attempt {
    pub(super) outcome: Outcome,
    /// What went wrong, for the log and the DLQ (no body, no credential).
    pub(super) error: Option<String>,
    /// The destination's `Retry-After`, if it sent one.
    pub(super) retry_after: Option<Duration>,
    /// The first 1 KB of an error answer.
    pub(super) snippet: Option<String>,
}

impl Attempt {
    /// An attempt that got no answer.
    pub(super) fn failed(outcome: Outcome, error: String) -> Self {
        Self {
            outcome,
            error: Some(error),
            retry_after: None,
            snippet: None,
        }
    }

    /// The status the destination answered, if it answered.
    pub(super) fn status(&self) -> Option<u16> {
        match self.outcome {
            Outcome::Status(s) | Outcome::Rejected { status: s, .. } => Some(s),
            _ => None,
        }
    }
}

/// A task's fate, carried out once by [`Deliver::execute`].
#[derive(Debug)]
pub(super) enum Fate {
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
    /// Older than the last change delivered for its record (`ordering`, `on_stale: skip`):
    /// not sent.
    Stale { message: String },
    /// Handed back as it is (after `wait`, when set): another worker holds it, or the table
    /// could not be read.
    HandBack {
        wait: Option<Duration>,
        why: HandBack,
    },
}

impl Fate {
    /// Back to the queue at its own visibility timeout: a dependency failed.
    pub(super) fn unavailable(why: String) -> Self {
        Fate::HandBack {
            wait: None,
            why: HandBack::Unavailable(why),
        }
    }
}

/// The claim this worker holds on a task.
#[derive(Debug)]
pub(super) struct Claimed {
    pub(super) key: String,
    pub(super) expires_at: i64,
}

/// What the task's dead letter says about the attempts made.
#[derive(Debug, Default)]
pub(super) struct Tried {
    pub(super) attempts: u32,
    pub(super) last_status: Option<u16>,
    pub(super) history: Option<String>,
    /// The first 1 KB of the last answer, when the destination refused the request.
    pub(super) answer: Option<String>,
    /// How long the last call took.
    pub(super) latency_ms: Option<u64>,
}

impl Tried {
    /// What a task's attempt history says (calls only: waits for an open circuit or a rate
    /// limit are not attempts).
    pub(super) fn from_history(history: &[AttemptRecord]) -> Self {
        let last = history.last();
        Tried {
            attempts: u32::try_from(history.len()).unwrap_or(u32::MAX),
            last_status: last.and_then(|a| a.status),
            history: switchboard_core::dead_letter::history_json(history),
            answer: last.and_then(|a| a.response.clone()),
            latency_ms: last.map(|a| a.latency_ms),
        }
    }
}

/// What the stages decided for a task, with what carrying it out needs: the claim this worker
/// holds (completed or released by the executor), and what the calls so far say for its letter
/// (`None`: no history was read; the letter counts the receives).
#[derive(Debug)]
pub(super) struct Decided {
    pub(super) fate: Fate,
    pub(super) claimed: Option<Claimed>,
    pub(super) tried: Option<Tried>,
}

impl From<Fate> for Decided {
    fn from(fate: Fate) -> Self {
        Decided {
            fate,
            claimed: None,
            tried: None,
        }
    }
}

/// The task's key in the attempt log.
pub(super) fn task_key(task: &DeliveryV1) -> String {
    format!("{}#{}", task.event_id, task.route)
}

/// Rate-limit slots taken for one call, given back after it.
pub(super) struct Taken {
    pub(super) slot: Option<u32>,
}
