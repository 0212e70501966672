//! What a delivery attempt's outcome means, as data: delivered, retry later (and when), or give
//! up. Pure: no clock, no randomness, no I/O; the caller passes the attempt number (SQS's
//! receive count), a jitter draw and the time, so every rule is a table test. The deliver
//! handler acts on it.

use std::time::{Duration, SystemTime};

use crate::reason::Reason;

/// SQS's longest visibility timeout: no retry can wait longer in the queue.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// The default retry schedule: the delay before attempt 2, 3, … (7 retries, ~28 h in all).
pub const DEFAULT_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// How far a delay is spread either way, so retries of many events do not arrive together.
pub const JITTER: f64 = 0.2;

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The destination answered with this status.
    Status(u16),
    /// No answer in time (connect or total timeout).
    Timeout,
    /// The connection could not be made (refused, unreachable, TLS).
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The connection dropped before the whole answer arrived.
    Dropped,
    /// The network guard refused the destination (no request was sent): permanent.
    Blocked,
    /// A 2xx whose answer fails the route's `success` check; `retryable` when its
    /// `retry_when` says so.
    Rejected {
        /// The status it came with.
        status: u16,
        /// Whether another try may help.
        retryable: bool,
    },
}

/// What to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Done.
    Delivered,
    /// Try again later.
    Retryable,
    /// Retrying cannot help: to the DLQ now. `opens_circuit` when the destination says it is
    /// gone for good (410).
    Permanent {
        /// Whether the route's circuit opens.
        opens_circuit: bool,
    },
}

/// Classifies an outcome: 2xx delivered; 408, 425, 429, 5xx and every transport failure
/// retryable; 410 permanent and opens the circuit; other 4xx and 3xx (redirects are not
/// followed) permanent.
pub fn classify(outcome: Outcome) -> Class {
    match outcome {
        Outcome::Status(200..=299) => Class::Delivered,
        Outcome::Status(s) if retryable_status(s) => Class::Retryable,
        Outcome::Status(410) => Class::Permanent {
            opens_circuit: true,
        },
        Outcome::Status(_) => Class::Permanent {
            opens_circuit: false,
        },
        Outcome::Timeout | Outcome::Connect | Outcome::Dns | Outcome::Dropped => Class::Retryable,
        Outcome::Blocked
        | Outcome::Rejected {
            retryable: false, ..
        } => Class::Permanent {
            opens_circuit: false,
        },
        Outcome::Rejected {
            retryable: true, ..
        } => Class::Retryable,
    }
}

/// The answers worth asking again later, for deliveries and enrichment calls alike: 408, 425,
/// 429 and every 5xx.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

/// The delay before the next attempt after attempt `attempt` (1-based, SQS's receive count)
/// failed, with `jitter` in `[-1, 1]` spreading it by up to ±20%; `None` once the schedule is
/// exhausted.
pub fn next_delay(schedule: &[Duration], attempt: u32, jitter: f64) -> Option<Duration> {
    let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
    let base = schedule.get(index)?;
    let factor = 1.0 + JITTER * jitter.clamp(-1.0, 1.0);
    Some(base.mul_f64(factor).min(MAX_VISIBILITY))
}

/// A `Retry-After` value (seconds, or an HTTP date) as a wait from `now`, at most 12 h.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_VISIBILITY))
}

/// How long a retried message stays invisible: the schedule's delay, or longer if the
/// destination asked (`Retry-After`), never past SQS's maximum.
pub fn visibility(scheduled: Duration, asked: Option<Duration>) -> Duration {
    asked
        .map_or(scheduled, |asked| scheduled.max(asked))
        .min(MAX_VISIBILITY)
}

/// Time kept back from SQS's 12 h when a visibility is set: the message was received by
/// Lambda's poller a little before the function saw it.
pub const RECEIVE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long a task may wait on an open circuit at most: a day short of the deliveries queue's
/// 14-day retention.
const RETENTION_EDGE: Duration =
    Duration::from_secs(crate::integration::QUEUE_RETENTION.as_secs() - 24 * 3600);

/// `wait`, cut so the message's visibility ends within 12 h of its receive (`received_ago`):
/// SQS refuses a ChangeMessageVisibility beyond that, and the message would come back after
/// the queue's own timeout instead, burning the retry schedule in minutes.
pub fn within_receive(wait: Duration, received_ago: Duration) -> Duration {
    let left = MAX_VISIBILITY
        .saturating_sub(received_ago)
        .saturating_sub(RECEIVE_MARGIN);
    wait.min(left)
}

/// Why a task was handed back without a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The destination's circuit is open (or a probe is out).
    CircuitOpen,
    /// The destination's rate limits stayed taken.
    RateLimited,
    /// The call could not finish before the function's deadline.
    Deadline,
    /// Its destination already holds its share of deliver's concurrency (`share`).
    OverShare,
}

impl Held {
    /// The metric and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Held::CircuitOpen => Reason::CircuitOpen.as_str(),
            Held::RateLimited => "rate_limited",
            Held::Deadline => "deadline",
            Held::OverShare => "over_share",
        }
    }
}

/// What becomes of a task: the one decision the deliver handler's executor carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Sent and accepted.
    Delivered,
    /// The attempt failed and may succeed later: hand it back after `wait`. `reason` is the
    /// metric's (`throttled`, `status`, `timeout`, `connect`, `dropped`).
    Retry {
        /// How long the message stays invisible.
        wait: Duration,
        /// Why, for the metric.
        reason: &'static str,
    },
    /// Not called: hand it back after `wait`.
    Hold {
        /// Why.
        why: Held,
        /// How long the message stays invisible.
        wait: Duration,
    },
    /// To the DLQ, with its reason.
    DeadLetter {
        /// Why.
        reason: Reason,
        /// What happened, in a sentence (no body, no credential).
        message: String,
    },
}

/// An attempt that was made, as [`settle`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct Attempted<'a> {
    /// What it came to.
    pub outcome: Outcome,
    /// What went wrong, in a sentence.
    pub what: &'a str,
    /// Calls made so far, this one included (the attempt history's length).
    pub attempts: u32,
    /// SQS's receive count of this message.
    pub receives: u32,
    /// The queue's maxReceiveCount: the last receive settles for good.
    pub max_receive_count: u32,
    /// The route's retry schedule.
    pub schedule: &'a [Duration],
    /// A draw in `[-1, 1]`.
    pub jitter: f64,
    /// The destination's `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// What an attempt settles: delivered; retried after the schedule's next delay (or the
/// destination's `Retry-After`, if later); dead-lettered when the outcome is permanent, the
/// schedule is spent, or this is the queue's last receive.
pub fn settle(a: &Attempted<'_>) -> Settlement {
    match classify(a.outcome) {
        Class::Delivered => Settlement::Delivered,
        Class::Permanent { .. } => Settlement::DeadLetter {
            reason: match a.outcome {
                Outcome::Blocked => Reason::NetworkRefused,
                Outcome::Rejected { .. } => Reason::RejectedByDestination,
                _ => Reason::PermanentFailure,
            },
            message: a.what.to_string(),
        },
        Class::Retryable => {
            match next_delay(a.schedule, a.attempts, a.jitter)
                .filter(|_| a.receives < a.max_receive_count)
            {
                None => Settlement::DeadLetter {
                    reason: Reason::RetriesExhausted,
                    message: format!("{}; gave up after {} attempts", a.what, a.attempts),
                },
                Some(delay) => Settlement::Retry {
                    wait: visibility(delay, a.retry_after),
                    reason: retry_reason(a.outcome),
                },
            }
        }
    }
}

/// The metric reason of a retried outcome.
pub fn retry_reason(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Status(429) => "throttled",
        Outcome::Status(_) => "status",
        Outcome::Timeout => "timeout",
        Outcome::Connect | Outcome::Dns => "connect",
        Outcome::Dropped => "dropped",
        Outcome::Blocked => Reason::NetworkRefused.as_str(),
        Outcome::Rejected { .. } => "rejected",
    }
}

/// A task handed back without a call, as [`hold`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct Waiting<'a> {
    /// Why.
    pub why: Held,
    /// The wait the cause asks for (until the circuit's cool-down ends; the rate limiter's).
    pub wait: Duration,
    /// How long since the task was queued.
    pub age: Duration,
    /// SQS's receive count of this message.
    pub receives: u32,
    /// The queue's maxReceiveCount.
    pub max_receive_count: u32,
    /// The route's retry schedule.
    pub schedule: &'a [Duration],
    /// The destination, for the message.
    pub destination: &'a str,
    /// A draw in `[-1, 1]`.
    pub jitter: f64,
    /// An open circuit: whether one of its probes failed after the task arrived.
    pub probe_failed: bool,
    /// An open circuit: what it says of its outage (how long open, probes failed).
    pub outage: &'a str,
}

/// What a hand-back without a call settles. An open circuit: a task waits at least as long as
/// its retry schedule would have lasted (measured from when it was queued), backing off with
/// the time waited (at least a second, at least half its age, spread by [`JITTER`]) so a long
/// outage costs few receives and the closing circuit is not met by every task at once; it is
/// dead-lettered `circuit_open` only once a probe has failed since it arrived (a circuit whose
/// probe has not run yet may be about to close), or on the queue's last receive. A rate limit
/// or the deadline: the cause's wait, and `retries_exhausted` on the queue's last receive.
/// Over its destination's share: the cause's wait, at least a quarter of its age (a long
/// backlog costs few receives), spread; `retries_exhausted` only on the queue's last receive
/// or at the edge of its retention, which a share never holds a task to in practice (50
/// receives backing off by a quarter of their age last days).
pub fn hold(w: &Waiting<'_>) -> Settlement {
    let last_receive = w.receives >= w.max_receive_count;
    match w.why {
        Held::CircuitOpen => {
            let budget: Duration = w.schedule.iter().sum();
            if last_receive || (w.age >= budget && w.probe_failed) {
                let when = if w.age >= budget && w.probe_failed {
                    format!("through the retry schedule ({}s)", budget.as_secs())
                } else {
                    format!("to the queue's last receive ({})", w.receives)
                };
                return Settlement::DeadLetter {
                    reason: Reason::CircuitOpen,
                    message: format!(
                        "the circuit of {} stayed open {when}: {}",
                        w.destination, w.outage
                    ),
                };
            }
            let spread = 1.0 + JITTER * w.jitter.clamp(-1.0, 1.0).abs();
            let wait = w
                .wait
                .max(w.age / 2)
                .max(Duration::from_secs(1))
                .mul_f64(spread)
                .min(MAX_VISIBILITY);
            // Whatever the probes did, never wait past what the queue keeps: SQS would drop
            // the task without a letter.
            if w.age + wait >= RETENTION_EDGE {
                return Settlement::DeadLetter {
                    reason: Reason::CircuitOpen,
                    message: format!(
                        "the circuit of {} stayed open to the edge of the queue's retention: {}",
                        w.destination, w.outage
                    ),
                };
            }
            Settlement::Hold { why: w.why, wait }
        }
        Held::RateLimited | Held::Deadline if last_receive => Settlement::DeadLetter {
            reason: Reason::RetriesExhausted,
            message: format!("still {} on receive {}", w.why.as_str(), w.receives),
        },
        Held::OverShare => over_share(w, last_receive),
        Held::RateLimited | Held::Deadline => Settlement::Hold {
            why: w.why,
            wait: w.wait,
        },
    }
}

/// [`hold`] for a task over its destination's share.
fn over_share(w: &Waiting<'_>, last_receive: bool) -> Settlement {
    let spread = 1.0 + JITTER * w.jitter.clamp(-1.0, 1.0).abs();
    let wait = w.wait.max(w.age / 4).mul_f64(spread).min(MAX_VISIBILITY);
    if last_receive || w.age + wait >= RETENTION_EDGE {
        return Settlement::DeadLetter {
            reason: Reason::RetriesExhausted,
            message: format!(
                "{} still held its share of deliver's concurrency after {}s, on receive {}",
                w.destination,
                w.age.as_secs(),
                w.receives
            ),
        };
    }
    Settlement::Hold { why: w.why, wait }
}

/// How long a task waits on its visibility when the rate limits stayed taken in process:
/// one to three seconds, spread by the draw so waiting tasks do not return together.
pub fn rate_limited_wait(jitter: f64) -> Duration {
    Duration::from_millis(1000 + (jitter.clamp(-1.0, 1.0).abs() * 2000.0) as u64)
}

/// Whether a redelivered task's last recorded answer already refused it for good (its worker
/// died before dead-lettering it): it is dead-lettered without calling again.
pub fn already_refused(last_status: Option<u16>) -> bool {
    last_status.is_some_and(|s| matches!(classify(Outcome::Status(s)), Class::Permanent { .. }))
}

#[cfg(test)]
mod tests;
