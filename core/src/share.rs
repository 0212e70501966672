//! A destination's share of deliver's concurrency: the rule that keeps one slow destination from
//! holding every invocation while the others wait. Pure and table-tested.
//!
//! An invocation of deliver lasts as long as its slowest call, so the resource a slow
//! destination takes from the others is *invocations*. A destination that is slow (a call ran
//! past [`SLOW_CALL`] or timed out: marked on its route's circuit record for [`SLOW_MARK`], which
//! every container reads anyway) or not yet known to this container may be called from at most
//! [`of`] invocations at once: each invocation that has its tasks takes one leased slot of the
//! destination's pool for the whole batch, and gives it back when the batch ends. A task whose
//! batch finds the pool full is not called: it waits on its visibility ([`over_share_wait`]),
//! not failed for waiting (`delivery_policy::hold`: only on the queue's last receive, days
//! later), and the rest of its batch goes on.
//!
//! A destination this container has seen answer fast (within [`TRUST`], and not marked slow)
//! takes no slot: on the happy path the share costs no request. What it costs: two writes per
//! batch for a destination that is slow or new to a container, and the first calls of a
//! destination that turns slow are not held back until one of them has run [`SLOW_CALL`] (and
//! the other containers have read the mark, within a second).

use std::time::Duration;

/// A call running longer than this marks its destination slow.
pub const SLOW_CALL: Duration = Duration::from_secs(2);
/// How long a slow mark lasts (renewed by every slow call once it is half spent).
pub const SLOW_MARK: Duration = Duration::from_secs(60);
/// How long a container trusts a destination after a fast answer.
pub const TRUST: Duration = Duration::from_secs(15 * 60);
/// The default share: the percentage of deliver's concurrency one destination may hold.
pub const DEFAULT_PERCENT: u32 = 50;
/// deliver's default concurrency (the template's `DeliverMaxConcurrency`).
pub const DEFAULT_CONCURRENCY: u32 = 20;

/// How many invocations one destination may hold at once: `percent` of `concurrency`, at
/// least one (a destination always gets somewhere), at most all but one when there are two or
/// more (another destination always has somewhere to go).
pub fn of(concurrency: u32, percent: u32) -> u32 {
    let share = (u64::from(concurrency) * u64::from(percent.min(100)) / 100) as u32;
    share.min(concurrency.saturating_sub(1)).max(1)
}

/// What this container knows of a destination's speed when a task reaches the share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// It answered fast here within [`TRUST`], and it is not marked slow.
    Fast,
    /// Marked slow on its route's circuit record.
    Slow,
    /// Neither: new to this container, or its last answer here was long ago or slow.
    Unknown,
}

/// Whether a task of a destination must hold a slot of its share: not when the route sets its
/// own `limits.max_concurrency` (explicit limits win), nor when the destination is known fast.
pub fn needs_slot(known: Known, explicit_limit: bool) -> bool {
    !explicit_limit && known != Known::Fast
}

/// How long a call counts as slow: it ran past [`SLOW_CALL`], or timed out.
pub fn is_slow(latency: Duration, timed_out: bool) -> bool {
    timed_out || latency >= SLOW_CALL
}

/// The wait a task over its destination's share asks for: a slow destination frees its slots
/// no sooner than a slow call ends ([`SLOW_CALL`]); an unknown one may be fast, so the shortest
/// look again SQS's whole-second visibility allows (its first answer tells).
pub fn over_share_wait(known: Known) -> Duration {
    match known {
        Known::Slow => SLOW_CALL,
        Known::Fast | Known::Unknown => Duration::from_secs(1),
    }
}

/// The pool of a destination's share in the table (beside `limits.max_concurrency`'s, which
/// is keyed by the destination alone).
pub fn pool(destination: &str) -> String {
    format!("share@{destination}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_a_part_of_the_concurrency_never_none_never_all() {
        for (concurrency, percent, share) in [
            (20, 50, 10),
            (20, 25, 5),
            (4, 50, 2),
            (3, 50, 1),
            (1, 50, 1),
            (0, 50, 1),
            (20, 100, 19),
            (20, 250, 19),
            (20, 0, 1),
            (u32::MAX, 100, u32::MAX - 1),
        ] {
            assert_eq!(
                of(concurrency, percent),
                share,
                "{concurrency} x {percent}%"
            );
        }
    }

    #[test]
    fn only_a_destination_known_fast_or_with_its_own_limit_skips_the_share() {
        for (known, explicit, needs) in [
            (Known::Fast, false, false),
            (Known::Slow, false, true),
            (Known::Unknown, false, true),
            (Known::Slow, true, false),
            (Known::Unknown, true, false),
        ] {
            assert_eq!(needs_slot(known, explicit), needs, "{known:?} {explicit}");
        }
    }

    #[test]
    fn a_call_is_slow_past_the_threshold_or_when_it_timed_out() {
        assert!(!is_slow(Duration::from_millis(1999), false));
        assert!(is_slow(SLOW_CALL, false));
        assert!(is_slow(Duration::from_millis(300), true));
    }

    #[test]
    fn an_unknown_destination_is_looked_at_again_sooner_than_a_slow_one() {
        assert!(over_share_wait(Known::Unknown) < over_share_wait(Known::Slow));
        assert_eq!(over_share_wait(Known::Slow), SLOW_CALL);
        assert_ne!(pool("https://a:443"), "https://a:443");
    }
}
