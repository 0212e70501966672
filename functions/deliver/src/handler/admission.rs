//! Whether a task may be called now: its route's circuit, the deadline and its destination's
//! share (`admit`), the idempotency claim, a redelivery already refused, and the destination's
//! rate limits.

use super::*;

impl<P: DeliverPorts> Deliver<P> {
    /// The route's circuit (while it is open nothing is called; after its cool-down one caller
    /// probes), the deadline (never start what cannot finish before it) and the destination's
    /// share, in that order: the probe is taken last, so a task held for another cause never
    /// takes it (and no other caller waits out its lease). Ok(whether this call is the probe).
    pub(super) async fn admit(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        target: Target<'_>,
        deadline_ms: Option<i64>,
    ) -> Result<bool, Fate> {
        let circuit = target.circuit;
        let now_ms = Utc::now().timestamp_millis();
        let state = self.circuit(circuit).await;
        let admitted = state.admit(now_ms);
        if let Admit::Wait(until_ms) = admitted {
            let wait = Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0));
            return Err(self.held(work, route, Held::CircuitOpen, wait, Some(&state)));
        }
        if !self.time_for(route, deadline_ms) {
            return Err(self.held(work, route, Held::Deadline, Duration::ZERO, None));
        }
        let known = self.known(circuit, &state);
        self.share(work, route, target.destination, known, deadline_ms)
            .await?;
        let probe = match admitted {
            Admit::Call | Admit::Wait(_) => false,
            Admit::Probe => {
                let until = now_ms + route.deliver.timeout.as_millis() as i64 + 1000;
                match self.store.take_probe(circuit, now_ms, until).await {
                    Ok(true) => {
                        tracing::info!(circuit = %circuit, "circuit half-open: probing");
                        true
                    }
                    Ok(false) => {
                        let wait = Duration::from_secs(1);
                        return Err(self.held(work, route, Held::CircuitOpen, wait, Some(&state)));
                    }
                    Err(e) => return Err(Fate::unavailable(e.to_string())),
                }
            }
        };
        Ok(probe)
    }

    /// Idempotent sends: the `deliver#{event_id}#{route}` record, read strongly consistently.
    /// A redelivery after a success does not send again; the record is written when the
    /// destination took the task (one conditional put). Two copies of a task in flight at once
    /// (an SQS duplicate; two copies of a webhook racing through ingest) may both be sent: the
    /// destination dedupes them by their `Idempotency-Key`.
    pub(super) async fn claim(&self, work: &Work<'_>) -> Result<Claimed, Fate> {
        let task = work.task;
        let key = format!("deliver#{}#{}", task.event_id, task.route);
        let now = Utc::now();
        let expires_at = now.timestamp() + DELIVERED_TTL.as_secs() as i64;
        match self.store.lookup(&key, true).await {
            Ok(Some(record)) if record.status == Status::Completed && record.blocks(now) => {
                Err(Fate::AlreadyDelivered)
            }
            Ok(_) => Ok(Claimed { key, expires_at }),
            Err(e) => Err(Fate::unavailable(format!("idempotency read failed: {e}"))),
        }
    }

    /// A redelivery of a task already dead-lettered from this message, or whose destination
    /// already refused it for good (the worker died before dead-lettering it), is not called
    /// again. Only redeliveries read the history, so the first attempt costs nothing extra.
    pub(super) async fn redelivered(&self, work: &Work<'_>) -> Result<(), Decided> {
        // A request a person decided is sent, though its history says it was refused.
        if work.receives <= 1 || work.task.reviewed.is_some() {
            return Ok(());
        }
        let task = work.task;
        match self.store.attempts(&task_key(task)).await {
            Ok((_, Some(from))) if Some(&from) == work.message.message_id.as_ref() => {
                Err(Fate::AlreadyDeadLettered.into())
            }
            Ok((history, _)) => {
                if !delivery_policy::already_refused(history.last().and_then(|a| a.status)) {
                    return Ok(());
                }
                let tried = Tried::from_history(&history);
                let message = format!(
                    "the destination answered {}",
                    tried.last_status.unwrap_or_default()
                );
                Err(Decided {
                    tried: Some(tried),
                    ..Fate::Settle(Settlement::DeadLetter {
                        reason: Reason::PermanentFailure,
                        message,
                    })
                    .into()
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the attempt history failed");
                Ok(())
            }
        }
    }

    /// The destination's limits, shared by every concurrent function.
    pub(super) async fn throttle(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        destination: &str,
        deadline_ms: Option<i64>,
    ) -> Result<Taken, Fate> {
        match self.take_limits(route, destination, deadline_ms).await {
            Ok(Some(taken)) => Ok(taken),
            Ok(None) => {
                let wait = delivery_policy::rate_limited_wait(jitter(work.text, work.receives));
                Err(self.held(work, route, Held::RateLimited, wait, None))
            }
            Err(e) => Err(Fate::unavailable(format!("rate limit unavailable: {e}"))),
        }
    }

    /// Whether a request of this route started now finishes before the deadline.
    pub(super) fn time_for(&self, route: &OutboundRoute, deadline_ms: Option<i64>) -> bool {
        deadline::leaves_time(
            route.deliver.timeout,
            deadline_ms,
            Utc::now().timestamp_millis(),
        )
    }

    /// Takes the route's rate limits, waiting in process up to `MAX_LIMIT_WAIT` (and never
    /// past the deadline); None when they stay taken.
    pub(super) async fn take_limits(
        &self,
        route: &OutboundRoute,
        destination: &str,
        deadline_ms: Option<i64>,
    ) -> Result<Option<Taken>, PortError> {
        let limits = route.deliver.limits;
        let started = Instant::now();
        let can_wait = |d: Duration| started.elapsed() + d <= MAX_LIMIT_WAIT;
        if let Some(max) = limits.max_per_second {
            loop {
                let now_ms = Utc::now().timestamp_millis();
                let second = now_ms.div_euclid(1000);
                if self.store.take_rate(destination, second, max).await? {
                    break;
                }
                let to_next = u64::try_from(1000 - now_ms.rem_euclid(1000)).unwrap_or(0);
                let next = Duration::from_millis(to_next + 5);
                if !can_wait(next) {
                    return Ok(None);
                }
                tokio::time::sleep(next).await;
                if !self.time_for(route, deadline_ms) {
                    return Ok(None);
                }
            }
        }
        let mut slot = None;
        if let Some(max) = limits.max_concurrency {
            let draw = jitter(destination, started.elapsed().subsec_nanos()).abs();
            let start = (draw * f64::from(max)) as u32 % max;
            let mut pause = Duration::from_millis(50);
            loop {
                let now_ms = Utc::now().timestamp_millis();
                let lease = now_ms + (route.deliver.timeout + deadline::MARGIN).as_millis() as i64;
                let taken = self
                    .store
                    .take_slot(destination, max, start, now_ms, lease)
                    .await?;
                if taken.is_some() {
                    slot = taken;
                    break;
                }
                if !can_wait(pause) {
                    return Ok(None);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(400));
                if !self.time_for(route, deadline_ms) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(Taken { slot }))
    }
}
