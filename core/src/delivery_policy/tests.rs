//! The delivery rules' tables: classification, schedules, `settle` and `hold`.

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
