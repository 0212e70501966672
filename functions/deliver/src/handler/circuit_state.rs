//! Deliver's side of each route's circuit: the state as this container last read it (once a
//! second), and what an attempt's outcome does to it (`circuit` decides, this writes).

use super::*;

impl<P: DeliverPorts> Deliver<P> {
    /// The circuit as this container last read it, read again once a second.
    pub(super) async fn circuit(&self, destination: &str) -> CircuitState {
        let cached = self
            .circuits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(destination)
            .filter(|(at, _)| at.elapsed() < CIRCUIT_READ_TTL)
            .map(|(_, s)| *s);
        if let Some(state) = cached {
            return state;
        }
        let state = match self.store.circuit(destination).await {
            Ok(state) => state,
            Err(e) => {
                // Fail open: a table hiccup must not stop deliveries.
                tracing::warn!(error = %e, "reading the circuit failed; treating it as closed");
                CircuitState::default()
            }
        };
        self.remember(destination, state);
        state
    }

    pub(super) fn remember(&self, destination: &str, state: CircuitState) {
        self.circuits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(destination.to_string(), (Instant::now(), state));
    }

    /// Counts the outcome against the route's circuit and opens or closes it, as `circuit`
    /// decides.
    pub(super) async fn update_circuit(
        &self,
        route: &OutboundRoute,
        target: Target<'_>,
        outcome: Outcome,
        probe: bool,
    ) {
        let Target {
            destination,
            circuit: key,
        } = target;
        let settings = route.deliver.circuit;
        let now_ms = Utc::now().timestamp_millis();
        let until = now_ms + settings.cool_down.as_millis() as i64;
        let result: Result<Option<Transition>, PortError> = async {
            match circuit::effect(outcome) {
                Effect::Untouched => Ok(None),
                Effect::Failure { opens } => {
                    let failures = self.store.count_failure(key).await?;
                    let mut state = self.circuit(key).await;
                    state.failures = failures;
                    let transition =
                        match circuit::after_failure(failures, settings.failures, opens, probe) {
                            Some(Transition::Reopened) => {
                                self.store.open_circuit(key, now_ms, until, true).await?;
                                Some(Transition::Reopened)
                            }
                            // Only the caller whose write opened it reports it.
                            Some(t) => self
                                .store
                                .open_circuit(key, now_ms, until, false)
                                .await?
                                .then_some(t),
                            None => None,
                        };
                    if transition.is_some() {
                        state.open_until_ms = Some(until);
                        state.probe_until_ms = None;
                        state.opened_at_ms.get_or_insert(now_ms);
                    }
                    if transition == Some(Transition::Reopened) {
                        state.probes_failed += 1;
                        state.probe_failed_at_ms = Some(now_ms);
                    }
                    self.remember(key, state);
                    Ok(transition)
                }
                Effect::Success => {
                    let last_read = if probe {
                        CircuitState::default()
                    } else {
                        self.circuit(key).await
                    };
                    if !circuit::after_success(probe, &last_read) {
                        return Ok(None);
                    }
                    let was_open = self.store.close_circuit(key).await?;
                    self.remember(key, CircuitState::default());
                    Ok((probe || was_open).then_some(Transition::Closed))
                }
            }
        }
        .await;
        match result {
            Ok(Some(t)) => {
                tracing::warn!(
                    destination = %destination,
                    circuit = %key,
                    state = t.as_str(),
                    cool_down_s = settings.cool_down.as_secs(),
                    "circuit {}",
                    t.as_str()
                );
                self.metrics.circuit(destination, t.as_str());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "updating the circuit failed"),
        }
    }
}
