//! A route's circuit breaker, as data. The state lives in DynamoDB (so every concurrent
//! function sees the same circuit); this module decides, from a read of it and the time, whether
//! a call may go out, and which outcomes count against the destination. Pure and table-tested.
//!
//! Closed: calls go out; consecutive failures are counted. When they reach the route's
//! threshold (or the destination answers 410) the circuit opens until `now + cool_down`. Open:
//! nothing is called; messages wait on their visibility. After the cool-down one caller wins
//! the probe (a conditional write); its success closes the circuit, its failure opens it again.
//!
//! **One circuit per route** ([`key`]), not per host: a route's calls share its path, auth and
//! payload, so its failures say something about them; another route to the same host may be
//! healthy (a different endpoint, a different credential) and must not be held by them. What it
//! costs: when a whole host is down, each of its routes finds out with its own threshold of
//! failures (a few calls each, not one circuit's). A host circuit kept closed by a route's
//! successes was the other choice; it needs a second record read beside every call.

use crate::delivery_policy::{self, Class, Outcome};

/// The circuit of `integration`'s route `route`, whose destination is `destination` (the
/// table key after `circuit#`; `switchboard status` shows it).
pub fn key(integration: &str, route: &str, destination: &str) -> String {
    format!("{integration}/{route}@{destination}")
}

/// A route's shared state, as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CircuitState {
    /// Consecutive failures counted so far.
    pub failures: u32,
    /// While in the future, the circuit is open (Unix ms).
    pub open_until_ms: Option<i64>,
    /// While in the future, a probe is out (Unix ms).
    pub probe_until_ms: Option<i64>,
    /// When it opened, for this outage (Unix ms; cleared when it closes).
    pub opened_at_ms: Option<i64>,
    /// Probes that failed in this outage.
    pub probes_failed: u32,
    /// When the last probe failed (Unix ms).
    pub probe_failed_at_ms: Option<i64>,
    /// While in the future, the destination is slow for this route (`share`; Unix ms).
    pub slow_until_ms: Option<i64>,
}

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The circuit is closed: call.
    Call,
    /// The cool-down is over and no probe is out: try to take the probe, call if it is won.
    Probe,
    /// Open (or a probe is out): wait until then (Unix ms) without calling.
    Wait(i64),
}

impl CircuitState {
    /// Whether a call may go out at `now_ms`.
    pub fn admit(&self, now_ms: i64) -> Admit {
        let Some(open_until) = self.open_until_ms else {
            return Admit::Call;
        };
        if now_ms < open_until {
            return Admit::Wait(open_until);
        }
        match self.probe_until_ms {
            Some(probe) if now_ms < probe => Admit::Wait(probe),
            _ => Admit::Probe,
        }
    }

    /// Whether its destination is marked slow at `now_ms` (a call ran past `share::SLOW_CALL`).
    pub fn slow(&self, now_ms: i64) -> bool {
        self.slow_until_ms.is_some_and(|until| now_ms < until)
    }

    /// Whether a slow mark is still good for half its length: a slow call renews it only
    /// after that, so a slow destination costs one write per half mark, not one per call.
    pub fn slow_mark_fresh(&self, now_ms: i64) -> bool {
        let half = (crate::share::SLOW_MARK.as_millis() / 2) as i64;
        self.slow_until_ms
            .is_some_and(|until| until - now_ms > half)
    }

    /// Whether a success has anything to reset.
    pub fn is_clean(&self) -> bool {
        self.failures == 0 && self.open_until_ms.is_none() && self.probe_until_ms.is_none()
    }

    /// Whether a probe has failed since `since_ms` (a task's arrival): only then may a task
    /// waiting on this circuit give up on it.
    pub fn probe_failed_since(&self, since_ms: i64) -> bool {
        self.probe_failed_at_ms.is_some_and(|at| at >= since_ms)
    }

    /// What a `circuit_open` letter says of the outage at `now_ms`: how long the circuit has
    /// been open, and how many probes failed.
    pub fn outage(&self, now_ms: i64) -> String {
        let open_for = self
            .opened_at_ms
            .map(|at| (now_ms - at).max(0) / 1000)
            .unwrap_or_default();
        let last = self
            .probe_failed_at_ms
            .map(|at| format!(", the last {}s ago", (now_ms - at).max(0) / 1000))
            .unwrap_or_default();
        format!(
            "open for {open_for}s, {} probe(s) failed{last}",
            self.probes_failed
        )
    }
}

/// Whether an outcome says the destination is unwell: 5xx, 408 and every transport failure.
/// A 429 is the destination pacing us (Retry-After covers it) and other 4xx are the request's
/// fault, so neither counts; an answer that is not a failure resets the count.
pub fn counts_as_failure(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Status(s) => s == 408 || (500..=599).contains(&s),
        Outcome::Timeout | Outcome::Connect | Outcome::Dns | Outcome::Dropped => true,
        // Nothing was sent: it says nothing about the destination.
        Outcome::Blocked => false,
        // It answered: up, whatever it said.
        Outcome::Rejected { .. } => false,
    }
}

/// A change of the circuit's state, for the log and the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed to open (threshold reached, or 410).
    Opened,
    /// The probe failed: open again.
    Reopened,
    /// The probe (or any call after a failure) succeeded: closed.
    Closed,
}

impl Transition {
    /// The metric and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::Reopened => "reopened",
            Transition::Closed => "closed",
        }
    }
}

/// What an attempt's outcome does to its destination's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A failure is counted; `opens` when the destination said it is gone for good (410),
    /// which opens the circuit whatever the count.
    Failure {
        /// Whether the circuit opens at once.
        opens: bool,
    },
    /// The destination answered well enough: the count resets, an open circuit closes.
    Success,
    /// Nothing was sent (the network guard refused it): the circuit is untouched.
    Untouched,
}

/// The effect of `outcome` (see [`counts_as_failure`]; a 410 opens the circuit at once).
pub fn effect(outcome: Outcome) -> Effect {
    if outcome == Outcome::Blocked {
        return Effect::Untouched;
    }
    let opens = matches!(
        delivery_policy::classify(outcome),
        Class::Permanent {
            opens_circuit: true
        }
    );
    if opens || counts_as_failure(outcome) {
        Effect::Failure { opens }
    } else {
        Effect::Success
    }
}

/// After a failure was counted (`failures` in a row, this one included): whether the circuit
/// opens. A failed probe opens it again; otherwise it opens at the route's threshold or when
/// the outcome forces it.
pub fn after_failure(
    failures: u32,
    threshold: u32,
    opens: bool,
    probe: bool,
) -> Option<Transition> {
    if probe {
        Some(Transition::Reopened)
    } else if opens || failures >= threshold {
        Some(Transition::Opened)
    } else {
        None
    }
}

/// After a success: whether there is anything to reset (a probe, or a circuit as last read
/// that is not clean).
pub fn after_success(probe: bool, last_read: &CircuitState) -> bool {
    probe || !last_read.is_clean()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_effect_and_the_threshold_opens() {
        for (outcome, expected) in [
            (Outcome::Status(200), Effect::Success),
            (Outcome::Status(400), Effect::Success),
            (Outcome::Status(429), Effect::Success),
            (Outcome::Status(410), Effect::Failure { opens: true }),
            (Outcome::Status(503), Effect::Failure { opens: false }),
            (Outcome::Status(408), Effect::Failure { opens: false }),
            (Outcome::Timeout, Effect::Failure { opens: false }),
            (Outcome::Blocked, Effect::Untouched),
        ] {
            assert_eq!(effect(outcome), expected, "{outcome:?}");
        }
        for (failures, opens, probe, expected) in [
            (1, false, false, None),
            (4, false, false, None),
            (5, false, false, Some(Transition::Opened)),
            (1, true, false, Some(Transition::Opened)),
            (1, false, true, Some(Transition::Reopened)),
        ] {
            assert_eq!(after_failure(failures, 5, opens, probe), expected);
        }
        let clean = CircuitState::default();
        let counted = CircuitState {
            failures: 2,
            ..clean
        };
        assert!(!after_success(false, &clean));
        assert!(after_success(true, &clean));
        assert!(after_success(false, &counted));
    }

    #[test]
    fn admission_follows_the_state() {
        let now = 10_000;
        let closed = CircuitState::default();
        let counting = CircuitState {
            failures: 3,
            ..Default::default()
        };
        let open = CircuitState {
            failures: 10,
            open_until_ms: Some(now + 5_000),
            ..Default::default()
        };
        let cooled = CircuitState {
            open_until_ms: Some(now - 1),
            ..open
        };
        let probing = CircuitState {
            probe_until_ms: Some(now + 2_000),
            ..cooled
        };
        let lapsed_probe = CircuitState {
            probe_until_ms: Some(now - 1),
            ..cooled
        };
        for (state, admit) in [
            (closed, Admit::Call),
            (counting, Admit::Call),
            (open, Admit::Wait(now + 5_000)),
            (cooled, Admit::Probe),
            (probing, Admit::Wait(now + 2_000)),
            (lapsed_probe, Admit::Probe),
        ] {
            assert_eq!(state.admit(now), admit, "{state:?}");
        }
        assert!(closed.is_clean());
        assert!(!counting.is_clean() && !cooled.is_clean());
    }

    #[test]
    fn only_an_unwell_destination_counts_against_its_circuit() {
        for (outcome, counts) in [
            (Outcome::Status(200), false),
            (Outcome::Status(400), false),
            (Outcome::Status(404), false),
            (Outcome::Status(429), false),
            (Outcome::Status(408), true),
            (Outcome::Status(500), true),
            (Outcome::Status(503), true),
            (Outcome::Timeout, true),
            (Outcome::Connect, true),
            (Outcome::Dns, true),
            (Outcome::Dropped, true),
        ] {
            assert_eq!(counts_as_failure(outcome), counts, "{outcome:?}");
        }
    }

    #[test]
    fn a_task_gives_up_only_after_a_probe_failed_since_it_arrived_and_says_so() {
        let state = CircuitState {
            failures: 7,
            open_until_ms: Some(90_000),
            opened_at_ms: Some(10_000),
            probes_failed: 3,
            probe_failed_at_ms: Some(60_000),
            ..Default::default()
        };
        assert!(state.probe_failed_since(60_000));
        assert!(state.probe_failed_since(20_000));
        assert!(!state.probe_failed_since(60_001));
        assert!(!CircuitState::default().probe_failed_since(0));
        assert_eq!(
            state.outage(70_000),
            "open for 60s, 3 probe(s) failed, the last 10s ago"
        );
        assert_eq!(
            key("shop", "to-3pl", "https://3pl.example.com"),
            "shop/to-3pl@https://3pl.example.com"
        );
    }
}
