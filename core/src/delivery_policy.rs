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
mod tests {
    use super::*;

    fn attempted(outcome: Outcome, attempts: u32, receives: u32) -> Attempted<'static> {
        Attempted {
            outcome,
            what: "the destination answered",
            attempts,
            receives,
            max_receive_count: 10,
            schedule: &DEFAULT_SCHEDULE[..2],
            jitter: 0.0,
            retry_after: None,
        }
    }

    #[test]
    fn an_attempt_settles_by_its_class_the_schedule_and_the_last_receive() {
        let retry = |secs, reason| Settlement::Retry {
            wait: Duration::from_secs(secs),
            reason,
        };
        let dead = |reason, message: &str| Settlement::DeadLetter {
            reason,
            message: message.into(),
        };
        let exhausted = "the destination answered; gave up after 3 attempts";
        let table = [
            (attempted(Outcome::Status(204), 1, 1), Settlement::Delivered),
            (attempted(Outcome::Status(503), 1, 1), retry(5, "status")),
            (attempted(Outcome::Status(429), 1, 1), retry(5, "throttled")),
            (attempted(Outcome::Timeout, 2, 2), retry(300, "timeout")),
            (attempted(Outcome::Dns, 1, 1), retry(5, "connect")),
            (attempted(Outcome::Dropped, 1, 1), retry(5, "dropped")),
            (
                attempted(Outcome::Status(503), 3, 3),
                dead(Reason::RetriesExhausted, exhausted),
            ),
            (
                // The queue's last receive settles for good, whatever the schedule says.
                Attempted {
                    max_receive_count: 1,
                    ..attempted(Outcome::Status(503), 1, 1)
                },
                dead(
                    Reason::RetriesExhausted,
                    "the destination answered; gave up after 1 attempts",
                ),
            ),
            (
                attempted(Outcome::Status(400), 1, 1),
                dead(Reason::PermanentFailure, "the destination answered"),
            ),
            (
                attempted(Outcome::Status(410), 1, 1),
                dead(Reason::PermanentFailure, "the destination answered"),
            ),
            (
                attempted(Outcome::Blocked, 1, 1),
                dead(Reason::NetworkRefused, "the destination answered"),
            ),
            (
                // Retry-After longer than the schedule wins; shorter does not.
                Attempted {
                    retry_after: Some(Duration::from_secs(60)),
                    ..attempted(Outcome::Status(429), 1, 1)
                },
                retry(60, "throttled"),
            ),
            (
                Attempted {
                    retry_after: Some(Duration::from_secs(1)),
                    ..attempted(Outcome::Status(429), 1, 1)
                },
                retry(5, "throttled"),
            ),
        ];
        for (attempt, expected) in table {
            assert_eq!(settle(&attempt), expected, "{attempt:?}");
        }
    }

    #[test]
    fn a_hold_backs_off_with_its_age_and_ends_in_the_dlq() {
        let s = [Duration::from_secs(60), Duration::from_secs(60)];
        let waiting = |why, wait: u64, age: u64, receives| Waiting {
            why,
            wait: Duration::from_secs(wait),
            age: Duration::from_secs(age),
            receives,
            max_receive_count: 10,
            schedule: &s,
            destination: "api.example.com",
            jitter: 0.0,
            probe_failed: true,
            outage: "open for 300s, 2 probe(s) failed",
        };
        let hold_for = |why, secs| Settlement::Hold {
            why,
            wait: Duration::from_secs(secs),
        };
        let open = Held::CircuitOpen;
        let table = [
            // The cool-down's end, at least a second, at least half the age.
            (waiting(open, 30, 0, 1), hold_for(open, 30)),
            (waiting(open, 0, 0, 1), hold_for(open, 1)),
            (waiting(open, 10, 100, 2), hold_for(open, 50)),
            // Through the schedule (120 s), a probe failed since: dead-lettered.
            (
                waiting(open, 10, 120, 3),
                Settlement::DeadLetter {
                    reason: Reason::CircuitOpen,
                    message: "the circuit of api.example.com stayed open through the retry \
                              schedule (120s): open for 300s, 2 probe(s) failed"
                        .into(),
                },
            ),
            // Through the schedule, but no probe has failed since it arrived: it waits on.
            (
                Waiting {
                    probe_failed: false,
                    ..waiting(open, 10, 600, 3)
                },
                hold_for(open, 300),
            ),
            // Near the queue's retention it ends, whatever the probes did (13 days and a wait).
            (
                Waiting {
                    probe_failed: false,
                    ..waiting(open, 10, 13 * 24 * 3600 - 60, 3)
                },
                Settlement::DeadLetter {
                    reason: Reason::CircuitOpen,
                    message: "the circuit of api.example.com stayed open to the edge of the \
                              queue's retention: open for 300s, 2 probe(s) failed"
                        .into(),
                },
            ),
            // The queue's last receive ends it whatever the probes did.
            (
                Waiting {
                    probe_failed: false,
                    ..waiting(open, 10, 20, 10)
                },
                Settlement::DeadLetter {
                    reason: Reason::CircuitOpen,
                    message: "the circuit of api.example.com stayed open to the queue's last \
                              receive (10): open for 300s, 2 probe(s) failed"
                        .into(),
                },
            ),
            (
                waiting(Held::RateLimited, 2, 500, 3),
                hold_for(Held::RateLimited, 2),
            ),
            (
                waiting(Held::Deadline, 0, 0, 10),
                Settlement::DeadLetter {
                    reason: Reason::RetriesExhausted,
                    message: "still deadline on receive 10".into(),
                },
            ),
            // Over its destination's share: the cause's wait, then a quarter of its age; never
            // dead-lettered for it before the queue's last receive or its retention's edge.
            (
                waiting(Held::OverShare, 2, 1, 1),
                hold_for(Held::OverShare, 2),
            ),
            (
                waiting(Held::OverShare, 2, 400, 9),
                hold_for(Held::OverShare, 100),
            ),
            (
                waiting(Held::OverShare, 2, 10 * 24 * 3600, 9),
                hold_for(Held::OverShare, 12 * 3600),
            ),
            (
                waiting(Held::OverShare, 2, 40, 10),
                Settlement::DeadLetter {
                    reason: Reason::RetriesExhausted,
                    message: "api.example.com still held its share of deliver's concurrency \
                              after 40s, on receive 10"
                        .into(),
                },
            ),
            (
                waiting(Held::OverShare, 2, 13 * 24 * 3600 - 60, 3),
                Settlement::DeadLetter {
                    reason: Reason::RetriesExhausted,
                    message: format!(
                        "api.example.com still held its share of deliver's concurrency \
                         after {}s, on receive 3",
                        13 * 24 * 3600 - 60
                    ),
                },
            ),
        ];
        for (w, expected) in table {
            assert_eq!(hold(&w), expected, "{w:?}");
        }
        // The spread is at most JITTER, and only ever longer.
        let spread = hold(&Waiting {
            jitter: -1.0,
            ..waiting(open, 10, 0, 1)
        });
        assert_eq!(spread, hold_for(open, 12));
    }

    #[test]
    fn rate_limited_waits_spread_over_one_to_three_seconds() {
        assert_eq!(rate_limited_wait(0.0), Duration::from_secs(1));
        assert_eq!(rate_limited_wait(-1.0), Duration::from_secs(3));
        assert_eq!(rate_limited_wait(0.5), Duration::from_secs(2));
    }

    #[test]
    fn only_a_permanent_last_answer_refuses_a_redelivery() {
        for (status, refused) in [
            (None, false),
            (Some(503), false),
            (Some(429), false),
            (Some(400), true),
            (Some(410), true),
        ] {
            assert_eq!(already_refused(status), refused, "{status:?}");
        }
    }

    #[test]
    fn a_visibility_never_reaches_past_12_hours_since_the_receive() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let m = |n: u64| Duration::from_secs(n * 60);
        for (wait, ago, expected) in [
            (m(5), Duration::ZERO, m(5)),
            (h(12), Duration::ZERO, h(12) - RECEIVE_MARGIN),
            (h(24), Duration::ZERO, h(12) - RECEIVE_MARGIN),
            (h(12), m(10), h(12) - m(10) - RECEIVE_MARGIN),
            (h(2), h(11), h(1) - RECEIVE_MARGIN),
            (h(1), h(13), Duration::ZERO),
        ] {
            assert_eq!(
                within_receive(wait, ago),
                expected,
                "{wait:?} after {ago:?}"
            );
        }
    }

    #[test]
    fn every_outcome_has_its_class() {
        let permanent = Class::Permanent {
            opens_circuit: false,
        };
        let table = [
            (Outcome::Status(200), Class::Delivered),
            (Outcome::Status(201), Class::Delivered),
            (Outcome::Status(204), Class::Delivered),
            (Outcome::Status(299), Class::Delivered),
            (Outcome::Status(301), permanent),
            (Outcome::Status(302), permanent),
            (Outcome::Status(304), permanent),
            (Outcome::Status(400), permanent),
            (Outcome::Status(401), permanent),
            (Outcome::Status(403), permanent),
            (Outcome::Status(404), permanent),
            (Outcome::Status(408), Class::Retryable),
            (
                Outcome::Status(410),
                Class::Permanent {
                    opens_circuit: true,
                },
            ),
            (Outcome::Status(413), permanent),
            (Outcome::Status(422), permanent),
            (Outcome::Status(425), Class::Retryable),
            (Outcome::Status(429), Class::Retryable),
            (Outcome::Status(500), Class::Retryable),
            (Outcome::Status(502), Class::Retryable),
            (Outcome::Status(503), Class::Retryable),
            (Outcome::Status(504), Class::Retryable),
            (Outcome::Status(599), Class::Retryable),
            (Outcome::Timeout, Class::Retryable),
            (Outcome::Connect, Class::Retryable),
            (Outcome::Dns, Class::Retryable),
            (Outcome::Dropped, Class::Retryable),
        ];
        for (outcome, class) in table {
            assert_eq!(classify(outcome), class, "{outcome:?}");
        }
    }

    #[test]
    fn the_schedule_is_followed_with_bounded_jitter_then_ends() {
        let s = &DEFAULT_SCHEDULE;
        assert_eq!(next_delay(s, 1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(s, 2, 0.0), Some(Duration::from_secs(300)));
        assert_eq!(next_delay(s, 1, 1.0), Some(Duration::from_secs(6)));
        assert_eq!(next_delay(s, 1, -1.0), Some(Duration::from_secs(4)));
        assert_eq!(
            next_delay(s, 1, 7.0),
            Some(Duration::from_secs(6)),
            "clamped"
        );
        // 10 h + 20% stays within SQS's 12 h.
        assert_eq!(next_delay(s, 7, 1.0), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(next_delay(s, 8, 0.0), None, "exhausted after 7 retries");
        assert_eq!(next_delay(s, 0, 0.0), None);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_clamped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("999999", now), Some(MAX_VISIBILITY));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }

    #[test]
    fn a_retry_waits_for_the_later_of_schedule_and_request() {
        let five = Duration::from_secs(5);
        assert_eq!(visibility(five, None), five);
        assert_eq!(visibility(five, Some(Duration::from_secs(1))), five);
        assert_eq!(
            visibility(five, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            visibility(five, Some(Duration::from_secs(86_400))),
            MAX_VISIBILITY
        );
    }
}
