//! A route's review settings, validated, and whether its review's timer fits in the deliveries
//! queue beside its retry schedule.

use super::*;
use crate::review::slack::SlackNotify;

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
    let notify = def
        .notify
        .as_ref()
        .map(|n| slack_notify(&n.slack, &def.deciders, route_err))
        .transpose()?;
    Ok(ReviewPolicy {
        on_rejected,
        expires,
        on_expiry: def.on_expiry.unwrap_or(crate::review::OnExpiry::DeadLetter),
        deciders: def.deciders.clone(),
        alert_after,
        notify,
    })
}

/// `review.notify.slack`: a channel id, the two secrets, an https Web API (plain http only on
/// loopback, for tests), and deciders that name a Slack user or group: without one, a click
/// could never decide, or anyone in the channel could.
pub(in crate::integration) fn slack_notify(
    def: &SlackFile,
    deciders: &[String],
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<SlackNotify, DefinitionError> {
    use crate::review::slack::{DEFAULT_API_URL, is_id};
    let field = |f: &str| format!("review.notify.slack.{f}");
    if !is_id(&def.channel, &['C', 'G']) {
        return Err(route_err(
            &field("channel"),
            format!(
                "`{}` is not a channel id (C0123ABC: the channel's details show it)",
                def.channel
            ),
        ));
    }
    for (name, secret) in [
        ("token", &def.token),
        ("signing_secret", &def.signing_secret),
    ] {
        if secret.trim().is_empty() {
            return Err(route_err(
                &field(name),
                "the secret's name is needed".into(),
            ));
        }
    }
    let text = def.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
    let api_url = url::Url::parse(text.trim_end_matches('/'))
        .map_err(|e| route_err(&field("api_url"), format!("`{text}` is not a URL: {e}")))?;
    let loopback_http = api_url.scheme() == "http"
        && matches!(api_url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback());
    if api_url.scheme() != "https" && !loopback_http {
        return Err(route_err(
            &field("api_url"),
            "Slack's Web API is https (plain http only on 127.0.0.1, for tests)".into(),
        ));
    }
    let in_slack = deciders.iter().any(|d| {
        d.trim()
            .strip_prefix("slack:")
            .is_some_and(|id| is_id(id, &['U', 'W', 'S']))
    });
    if !in_slack {
        return Err(route_err(
            "review.deciders",
            "approvals in Slack need deciders that name a Slack user or group (`slack:U0123ABC`, `slack:S0456DEF`): nobody else can click".into(),
        ));
    }
    Ok(SlackNotify {
        channel: def.channel.clone(),
        token: def.token.trim().to_string(),
        signing_secret: def.signing_secret.trim().to_string(),
        api_url,
    })
}
