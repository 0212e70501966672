//! Limits and pacing: what an API's answers say about the next call (rate-limit headers,
//! `retry-after`), the shared per-second limit every function takes from, a model API held off
//! while its quota is spent, and the backoff between tries within a step's budget.

use super::*;

impl<K: SecretStore, L: RateLimiter> Enricher<K, L> {
    /// One of the API's `max` calls this second, shared by every function: waits for the next
    /// second while that `fits` the step's budget. Fails open when the limiter cannot be read.
    pub(super) async fn take_rate(
        &self,
        destination: &str,
        max: u32,
        fits: &impl Fn(Duration) -> bool,
    ) -> Result<(), String> {
        loop {
            let now = chrono::Utc::now();
            match self
                .limiter
                .take_rate(destination, now.timestamp(), max)
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    let next = Duration::from_millis(
                        1000 - u64::from(now.timestamp_subsec_millis().min(999)),
                    );
                    if !fits(next) {
                        return Err(format!(
                            "its {max} calls a second stayed taken through the step's budget"
                        ));
                    }
                    tokio::time::sleep(next).await;
                }
                // Fail open: the limiter's table in a bad minute must not stop calls.
                Err(e) => {
                    tracing::warn!(error = %e, "the shared rate limit could not be read");
                    return Ok(());
                }
            }
        }
    }

    /// Notes what an answer's rate-limit headers or `retry-after` say about the next call.
    fn pace(&self, destination: &str, wait: Option<Duration>) {
        let Some(wait) = wait.filter(|w| !w.is_zero()) else {
            return;
        };
        let until = Instant::now() + wait.min(MAX_TIMEOUT);
        let mut paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        let entry = paused.entry(destination.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    pub(super) fn paused_for(&self, destination: &str) -> Option<Duration> {
        let paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        paused
            .get(destination)
            .and_then(|until| until.checked_duration_since(Instant::now()))
    }

    pub(super) fn out_of_quota(&self, destination: &str) -> Option<String> {
        let quota = self.quota.lock().unwrap_or_else(|p| p.into_inner());
        quota
            .get(destination)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, why)| format!("out of quota (not called again for a while): {why}"))
    }

    pub(super) fn stop_calls(&self, destination: &str, why: &str) {
        self.quota.lock().unwrap_or_else(|p| p.into_inner()).insert(
            destination.to_string(),
            (Instant::now() + self.quota_hold, why.to_string()),
        );
    }

    /// What the answer's headers say of the API's limits: when to come back (`Retry-After`, or
    /// the window's reset when nothing is left in it). A 429/529 or a spent window holds this
    /// API off here, and with a shared limit in every function.
    pub(super) async fn heed_limits(
        &self,
        step: &EnrichStep,
        destination: &str,
        response: &reqwest::Response,
    ) -> Option<Duration> {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // Nothing left in the window: hold off until it resets (every step of this API).
        let exhausted = switchboard_core::model::pacing(header, chrono::Utc::now())
            .filter(|p| p.remaining == 0)
            .map(|p| p.reset);
        let after = switchboard_core::model::retry_after(header).or(exhausted);
        if !matches!(response.status().as_u16(), 429 | 529) && exhausted.is_none() {
            return after;
        }
        self.pace(destination, after);
        // With a shared limit, every function holds off too: the seconds until the reset
        // (as far as a step's budget reaches) are taken.
        if let (Some(max), Some(wait)) = (step.limits.max_per_second, after) {
            let now = chrono::Utc::now();
            // The seconds that end before the reset (a wait inside this second is this
            // function's alone: the shared counter counts whole seconds).
            let until = now + chrono::Duration::from_std(wait.min(MAX_TIMEOUT)).unwrap_or_default();
            if let Err(e) = self
                .limiter
                .exhaust(destination, now.timestamp(), until.timestamp() - 1, max)
                .await
            {
                tracing::warn!(error = %e, "sharing the API's wait failed; this function holds off alone");
            }
        }
        after
    }
}

/// The wait before try `n + 1` of a step with a budget: doubling from 500 ms, spread ±20% so
/// concurrent events do not come back together.
pub(super) fn backoff(n: u32) -> Duration {
    let base = FIRST_BACKOFF.as_secs_f64() * 2f64.powi(n.saturating_sub(1).min(6) as i32);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = 1.0 + delivery_policy::JITTER * ((f64::from(nanos % 2001) / 1000.0) - 1.0);
    Duration::from_secs_f64(base * spread)
}
