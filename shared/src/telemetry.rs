//! How much the functions log. Every failure, rejection, retry and wait is logged at INFO or
//! above, always; a success (a webhook accepted, an event transformed, a task delivered) is
//! logged at DEBUG, except in a sampled invocation, where it is INFO: `LOG_SAMPLE_RATE` (0 to 1,
//! as in Powertools for AWS Lambda) is the share of invocations sampled, [`DEFAULT_SAMPLE_RATE`]
//! when unset. Successes are counted in the metrics either way; at a billion events a month a
//! line per success would cost more in CloudWatch Logs than the rest of the pipeline's logs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The share of invocations whose successes are logged at INFO when `LOG_SAMPLE_RATE` is unset
/// (the template's `LogSampleRate` default).
pub const DEFAULT_SAMPLE_RATE: f64 = 0.01;

/// The rate, as `f64` bits; `u64::MAX` until read from the environment.
static RATE: AtomicU64 = AtomicU64::new(u64::MAX);
/// Whether the running invocation is sampled.
static SAMPLED: AtomicBool = AtomicBool::new(false);

/// `LOG_SAMPLE_RATE` read: a number from 0 to 1 (clamped), the default when unset or not one.
pub fn rate_from(value: Option<&str>) -> f64 {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite())
        .map_or(DEFAULT_SAMPLE_RATE, |r| r.clamp(0.0, 1.0))
}

/// The sample rate in force.
pub fn sample_rate() -> f64 {
    match RATE.load(Ordering::Relaxed) {
        u64::MAX => {
            let rate = rate_from(std::env::var("LOG_SAMPLE_RATE").ok().as_deref());
            RATE.store(rate.to_bits(), Ordering::Relaxed);
            rate
        }
        bits => f64::from_bits(bits),
    }
}

/// Sets the sample rate (`switchboard dev` logs every success; the cost bench uses the
/// template's default).
pub fn set_sample_rate(rate: f64) {
    let rate = if rate.is_finite() {
        rate.clamp(0.0, 1.0)
    } else {
        0.0
    };
    RATE.store(rate.to_bits(), Ordering::Relaxed);
}

/// Draws whether the invocation starting now is sampled; called as each one starts.
pub fn sample_invocation() -> bool {
    let rate = sample_rate();
    let draw = getrandom::u64().map_or(1.0, |n| (n >> 11) as f64 / (1u64 << 53) as f64);
    let sampled = rate >= 1.0 || (rate > 0.0 && draw < rate);
    SAMPLED.store(sampled, Ordering::Relaxed);
    sampled
}

/// Whether the running invocation is sampled.
pub fn sampled() -> bool {
    SAMPLED.load(Ordering::Relaxed)
}

/// Logs a success: at INFO in a sampled invocation, else at DEBUG (see the module).
#[macro_export]
macro_rules! success {
    ($($arg:tt)+) => {
        if $crate::telemetry::sampled() {
            ::tracing::info!($($arg)+)
        } else {
            ::tracing::debug!($($arg)+)
        }
    };
}

/// Logs an outcome: a failure (the first argument false) at INFO, always; a success as
/// [`success!`] does.
#[macro_export]
macro_rules! outcome {
    ($success:expr, $($arg:tt)+) => {
        if !($success) || $crate::telemetry::sampled() {
            ::tracing::info!($($arg)+)
        } else {
            ::tracing::debug!($($arg)+)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_a_share_from_nought_to_one_and_the_default_otherwise() {
        assert_eq!(rate_from(None), DEFAULT_SAMPLE_RATE);
        assert_eq!(rate_from(Some("0.25")), 0.25);
        assert_eq!(rate_from(Some(" 1 ")), 1.0);
        assert_eq!(rate_from(Some("7")), 1.0);
        assert_eq!(rate_from(Some("-1")), 0.0);
        assert_eq!(rate_from(Some("NaN")), DEFAULT_SAMPLE_RATE);
        assert_eq!(rate_from(Some("often")), DEFAULT_SAMPLE_RATE);
    }

    #[test]
    fn every_invocation_is_sampled_at_one_and_none_at_nought() {
        set_sample_rate(1.0);
        assert!((0..100).all(|_| sample_invocation()));
        set_sample_rate(0.0);
        assert!((0..100).all(|_| !sample_invocation()));
        assert!(!sampled());
    }
}
