//! A route's review settings, validated, and whether its review's timer fits in the deliveries
//! queue beside its retry schedule.

use super::*;

/// The longest a retry schedule can take, every delay at the top of its jitter.
pub(super) fn longest_schedule(retry: &[std::time::Duration]) -> std::time::Duration {
    retry
        .iter()
        .map(|d| d.mul_f64(1.0 + crate::delivery_policy::JITTER))
        .sum()
}

/// A review's timer is the task's own message in the deliveries queue, so the schedule before
/// the review (`on_rejected: review` holds a task after its calls), the wait for a person, and
/// the schedule of the decided request must all fit in the queue's retention: past it SQS
/// drops the timer and the item would stay pending for ever.
pub(super) fn review_fits_the_queue(
    review: &ReviewPolicy,
    retry: &[std::time::Duration],
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<(), DefinitionError> {
    let schedule = longest_schedule(retry);
    let before = if review.on_rejected {
        schedule
    } else {
        std::time::Duration::ZERO
    };
    let total = before + review.expires + schedule;
    if total < QUEUE_RETENTION {
        return Ok(());
    }
    let hours = |d: std::time::Duration| d.as_secs() / 3600;
    Err(route_err(
        "review.expires",
        format!(
            "a task may wait {} h in the deliveries queue ({} h of retries before the review, {} h for a decision, {} h of retries after it, with jitter); the queue keeps a message {} days: shorten review.expires or deliver.retry",
            hours(total),
            hours(before),
            hours(review.expires),
            hours(schedule),
            QUEUE_RETENTION.as_secs() / 86_400
        ),
    ))
}

/// A route's review settings, validated: `review:` only with something that sends to review,
/// an expiry within what the queue can hold, an alarm before the expiry.
pub(in crate::integration) fn review_policy(
    has_review_when: bool,
    on_rejected: OnRejected,
    def: Option<&ReviewFile>,
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<ReviewPolicy, DefinitionError> {
    use crate::review::{DEFAULT_ALERT_AFTER, DEFAULT_EXPIRES, MAX_EXPIRES};
    let on_rejected = on_rejected == OnRejected::Review;
    let Some(def) = def else {
        return Ok(ReviewPolicy {
            on_rejected,
            ..ReviewPolicy::default()
        });
    };
    if !has_review_when && !on_rejected {
        return Err(route_err(
            "review",
            "review settings need `review_when` or `on_rejected: review` to send anything to review".into(),
        ));
    }
    let duration = |f: &str, d: &Option<DurationText>, default| {
        d.as_ref()
            .map_or(Ok(default), DurationText::parse)
            .map_err(|m| route_err(f, m))
    };
    let expires = duration("review.expires", &def.expires, DEFAULT_EXPIRES)?;
    if expires > MAX_EXPIRES || expires.is_zero() {
        return Err(route_err(
            "review.expires",
            format!(
                "an item may wait at most {} (the deliveries queue holds its timer), and more than 0s",
                humantime::format_duration(MAX_EXPIRES)
            ),
        ));
    }
    let alert_after = duration(
        "review.alert_after",
        &def.alert_after,
        DEFAULT_ALERT_AFTER.min(expires),
    )?;
    if alert_after > expires {
        return Err(route_err(
            "review.alert_after",
            "the overdue alarm must come before the item expires".into(),
        ));
    }
    Ok(ReviewPolicy {
        on_rejected,
        expires,
        on_expiry: def.on_expiry.unwrap_or(crate::review::OnExpiry::DeadLetter),
        deciders: def.deciders.clone(),
        alert_after,
    })
}
