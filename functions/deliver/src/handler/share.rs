//! A destination's share of deliver's concurrency (`switchboard_core::share`): what this
//! container knows of each destination's speed, the slots a batch holds for the destinations
//! that are slow or new to it, and the slow mark a long call leaves on its route's circuit.

use super::*;
use switchboard_core::share::{self, Known};
use tokio::sync::OnceCell;

/// The share slots one invocation holds, one per destination that needed one, taken by the
/// batch's first task of that destination and given back when the batch ends: an invocation
/// lasts as long as its slowest call, so the invocation is what a slow destination holds.
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// By destination: the slot won (None: the share was full), once taken.
    taken: Mutex<HashMap<String, Arc<OnceCell<Option<u32>>>>>,
}

impl Leases {
    fn cell(&self, destination: &str) -> Arc<OnceCell<Option<u32>>> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(taken.entry(destination.to_string()).or_default())
    }

    /// The slots won, to give back.
    fn won(&self) -> Vec<(String, u32)> {
        let taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        taken
            .iter()
            .filter_map(|(d, cell)| Some((d.clone(), (*cell.get()?)?)))
            .collect()
    }
}

impl<P: DeliverPorts> Deliver<P> {
    /// What this container knows of the route's destination: slow when its circuit says so,
    /// fast when the route had a fast answer here lately (by route, as circuits are: another
    /// route's slow calls to the same host never pull this one into the share).
    pub(super) fn known(&self, circuit: &str, state: &CircuitState) -> Known {
        if state.slow(Utc::now().timestamp_millis()) {
            return Known::Slow;
        }
        let fast = self.fast.lock().unwrap_or_else(|p| p.into_inner());
        match fast.get(circuit) {
            Some(at) if at.elapsed() < share::TRUST => Known::Fast,
            _ => Known::Unknown,
        }
    }

    /// Holds a slot of the destination's share for this batch, unless it needs none. Over the
    /// share the task waits on its visibility, not called and not failed for waiting; a table
    /// that cannot be read lets it through (the share protects, it must not stop deliveries).
    pub(super) async fn share(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        destination: &str,
        known: Known,
        deadline_ms: Option<i64>,
    ) -> Result<(), Fate> {
        let explicit = route.deliver.limits.max_concurrency.is_some();
        let Some(share) = self.share.filter(|_| share::needs_slot(known, explicit)) else {
            return Ok(());
        };
        let cell = work.leases.cell(destination);
        let won = cell
            .get_or_init(|| async {
                let now_ms = Utc::now().timestamp_millis();
                let lease = deadline_ms.unwrap_or(now_ms + DEFAULT_IN_PROGRESS.as_millis() as i64)
                    + deadline::MARGIN.as_millis() as i64;
                let start = (jitter(work.text, 0).abs() * f64::from(share)) as u32;
                let pool = share::pool(destination);
                match self
                    .store
                    .take_slot(&pool, share, start % share, now_ms, lease)
                    .await
                {
                    Ok(slot) => slot,
                    Err(e) => {
                        tracing::warn!(error = %e, "taking a share slot failed; calling anyway");
                        Some(u32::MAX)
                    }
                }
            })
            .await;
        if won.is_some() {
            return Ok(());
        }
        tracing::info!(
            destination = %destination,
            known = ?known,
            share,
            "destination at its share: waiting"
        );
        let wait = share::over_share_wait(known);
        Err(self.held(work, route, Held::OverShare, wait, None))
    }

    /// Gives the batch's share slots back.
    pub(super) async fn free_leases(&self, leases: &Leases) {
        let won = leases.won();
        let frees = won.iter().filter(|(_, slot)| *slot != u32::MAX).map(
            |(destination, slot)| async move {
                let pool = share::pool(destination);
                if let Err(e) = self.store.free_slot(&pool, *slot).await {
                    // The lease lapses by itself at the deadline.
                    tracing::warn!(error = %e, "freeing a share slot failed");
                }
            },
        );
        futures::future::join_all(frees).await;
    }

    /// Sends the request; a call still running at `share::SLOW_CALL` marks its route's
    /// destination slow at once, so the other containers hold it to its share while it runs.
    /// Also says whether it ran that long (then it is marked already).
    pub(super) async fn send_watched(
        &self,
        task: &DeliveryV1,
        route: &OutboundRoute,
        target: Target<'_>,
    ) -> (Result<Attempt, AuthError>, bool) {
        let send = self.send_refreshing(task, route);
        tokio::pin!(send);
        match tokio::time::timeout(share::SLOW_CALL, &mut send).await {
            Ok(sent) => (sent, false),
            // The mark is written while the request goes on.
            Err(_) => (tokio::join!(send, self.mark_slow(target)).0, true),
        }
    }

    /// What a finished call teaches about its destination: a quick end (an answer or a quick
    /// failure: neither holds an invocation) makes it known fast here; a slow one or a timeout
    /// makes it unknown again, and marks it slow unless the call was marked while it ran (one
    /// write, and no second read of the circuit, per slow call).
    pub(super) async fn learn(
        &self,
        target: Target<'_>,
        outcome: Outcome,
        latency: Duration,
        marked: bool,
    ) {
        let slow = share::is_slow(latency, outcome == Outcome::Timeout);
        {
            let mut fast = self.fast.lock().unwrap_or_else(|p| p.into_inner());
            if slow {
                fast.remove(target.circuit);
            } else {
                fast.insert(target.circuit.to_string(), Instant::now());
            }
        }
        if slow && !marked {
            self.mark_slow(target).await;
        }
    }

    /// Marks the route's destination slow for `share::SLOW_MARK`, unless this container read a
    /// mark still good for half of that.
    async fn mark_slow(&self, target: Target<'_>) {
        let now_ms = Utc::now().timestamp_millis();
        if self.circuit(target.circuit).await.slow_mark_fresh(now_ms) {
            return;
        }
        let until = now_ms + share::SLOW_MARK.as_millis() as i64;
        match self.store.mark_slow(target.circuit, until).await {
            Ok(()) => {
                tracing::warn!(destination = %target.destination, circuit = %target.circuit, "destination slow: held to its share");
                // Only the mark: what another task wrote to the cached state meanwhile stays.
                let mut circuits = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((_, state)) = circuits.get_mut(target.circuit) {
                    state.slow_until_ms = Some(until);
                }
            }
            Err(e) => tracing::warn!(error = %e, "marking the destination slow failed"),
        }
    }
}
