//! What a delivery attempt's outcome means, as data: delivered, retry later (and when), or give
//! up. Pure: no clock, no randomness, no I/O; the caller passes the attempt number (SQS's
//! receive count), a jitter draw and the time, so every rule is a table test. The deliver
//! handler acts on it.

use std::time::{Duration, SystemTime};

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
        Outcome::Status(408 | 425 | 429 | 500..=599) => Class::Retryable,
        Outcome::Status(410) => Class::Permanent {
            opens_circuit: true,
        },
        Outcome::Status(_) => Class::Permanent {
            opens_circuit: false,
        },
        Outcome::Timeout | Outcome::Connect | Outcome::Dns | Outcome::Dropped => Class::Retryable,
        Outcome::Blocked => Class::Permanent {
            opens_circuit: false,
        },
    }
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

/// `wait`, cut so the message's visibility ends within 12 h of its receive (`received_ago`):
/// SQS refuses a ChangeMessageVisibility beyond that, and the message would come back after
/// the queue's own timeout instead, burning the retry schedule in minutes.
pub fn within_receive(wait: Duration, received_ago: Duration) -> Duration {
    let left = MAX_VISIBILITY
        .saturating_sub(received_ago)
        .saturating_sub(RECEIVE_MARGIN);
    wait.min(left)
}

#[cfg(test)]
mod tests {
    use super::*;

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
