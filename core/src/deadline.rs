//! The Lambda deadline rule, shared by every outbound call a function makes (deliver's
//! requests, transform's enrichment calls): a call is never started when it may not finish,
//! with its bookkeeping, before the invocation's deadline. A call cut off by the deadline is
//! work lost and, for a delivery, a request the destination may have acted on unseen.

use std::time::Duration;

/// Time kept back before the deadline for the bookkeeping after a call.
pub const MARGIN: Duration = Duration::from_millis(1500);

/// Whether a call that may take `timeout` can start at `now_ms` and finish with its
/// bookkeeping before `deadline_ms` (ms since the epoch; `None`, locally, always can).
pub fn leaves_time(timeout: Duration, deadline_ms: Option<i64>, now_ms: i64) -> bool {
    let Some(deadline) = deadline_ms else {
        return true;
    };
    let needed = i64::try_from(timeout.saturating_add(MARGIN).as_millis()).unwrap_or(i64::MAX);
    deadline.saturating_sub(now_ms) >= needed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_starts_only_when_it_can_finish_before_the_deadline() {
        let now = 1_700_000_000_000;
        let s = Duration::from_secs;
        assert!(leaves_time(s(10), None, now));
        assert!(leaves_time(s(10), Some(now + 11_500), now));
        assert!(!leaves_time(s(10), Some(now + 11_499), now));
        assert!(!leaves_time(s(1), Some(now - 5), now), "already past");
        // No overflow at the limits.
        assert!(!leaves_time(Duration::MAX, Some(now + 1_000_000), now));
        assert!(leaves_time(s(1), Some(i64::MAX), i64::MIN));
    }
}
