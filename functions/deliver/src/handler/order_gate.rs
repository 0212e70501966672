//! Updates in order, deliver's part: a task of a route with `ordering` takes its record's
//! turn before it is sent (one task of a key at a time, across every deliver function), is
//! `stale` when an older version than the last delivered for its key (its route's `on_stale`:
//! skip, review or deliver), and keeps the turn while it waits between retries, so the newer
//! changes behind it wait too; delivered, its version becomes the key's last; dead-lettered
//! or decided otherwise, the turn passes on.

use std::time::Duration;

use serde_json::Value;
use switchboard_core::ordering::{self, OnStale};
use switchboard_core::ports::{OrderStore as _, Turn};

use super::*;

/// How long a turn lasts without a word from its holder: longer than a call and its
/// settlement; a holder that died loses it after this.
const TURN: Duration = Duration::from_secs(30);
/// How soon a change behind a holder that is sending looks again (a holder waiting between
/// its retries holds the turn longer than `TURN`: the changes behind it sleep until then).
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// A task holding its record's turn.
pub(super) struct Held {
    /// `{integration}/{route}#{key}` (a key longer than 200 bytes as its SHA-256).
    key: String,
    /// The SQS message (the same across its receives; a second copy of the task is another
    /// holder, so it can never extend or end the first's turn).
    holder: String,
    /// Its version.
    version: Value,
    /// Sent although stale (`on_stale: deliver`): its version does not become the last.
    stale: bool,
}

/// A task's place in its record's changes, as the gate decides it.
pub(super) enum Turned {
    /// Its route keeps no order.
    Unordered,
    /// It holds its record's turn.
    Mine(Held),
    /// Stale and held for a person, who approved it: this request goes, holding the turn.
    Decided(Held, Box<DeliveryV1>),
}

impl<P: DeliverPorts> Deliver<P> {
    /// Takes the task's turn for its record, when its route keeps changes in order. Err: the
    /// task waits (another change of its record is being sent, or waits between its retries)
    /// or is stale and its route says not to send it.
    pub(super) async fn take_turn(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
    ) -> Result<Turned, Fate> {
        let task = work.task;
        let (Some(on_stale), Some(stamp)) = (route.on_stale, &task.order) else {
            return Ok(Turned::Unordered);
        };
        let record = ordering::record_key(&stamp.key);
        let mut held = Held {
            key: format!("{}/{}#{record}", task.integration, task.route),
            holder: work
                .message
                .message_id
                .clone()
                .unwrap_or_else(|| format!("{}#{}", task.event_id, task.route)),
            version: stamp.version.clone(),
            stale: false,
        };
        let now = Utc::now().timestamp_millis();
        let until = now + TURN.as_millis() as i64;
        let turn = self
            .store
            .take_turn(&held.key, &held.holder, now, until)
            .await;
        let (last, waiting) = match turn {
            Ok(Turn::Mine { last, waiting }) => (last, waiting),
            Ok(Turn::Taken { until_ms }) => {
                let left = Duration::from_millis(u64::try_from(until_ms - now).unwrap_or(0));
                // A holder between retries keeps its turn until `TURN` after its next attempt:
                // sleep until just after that attempt (sending now: look again soon).
                let wait = left.saturating_sub(TURN) + LOOK_AGAIN;
                return Err(self.wait_behind(work, &held, wait, &stamp.key).await);
            }
            Err(e) => {
                let why = format!("taking {}'s turn failed: {e}", held.key);
                return Err(Fate::unavailable(why));
            }
        };
        // An older change waiting goes first (unless it is stale itself): this one yields.
        let older_waits = waiting.iter().any(|w| {
            ordering::compare(w, &held.version) == Some(std::cmp::Ordering::Less)
                && !ordering::is_stale(w, last.as_ref())
        });
        if older_waits {
            self.end_turn(&held, None).await;
            return Err(self.wait_behind(work, &held, LOOK_AGAIN, &stamp.key).await);
        }
        // A person decided this very request (the review gate checked it): it goes.
        let stale = ordering::is_stale(&held.version, last.as_ref());
        if !stale || task.reviewed.is_some() || on_stale == OnStale::Deliver {
            held.stale = stale;
            return Ok(Turned::Mine(held));
        }
        let last = last.unwrap_or(Value::Null);
        self.end_turn(&held, None).await;
        let message = format!(
            "version {} of record {} is older than {}, the last delivered",
            held.version, stamp.key, last
        );
        tracing::warn!(event_id = %task.event_id, route = %task.route, key = %stamp.key, version = %held.version, last = %last, "stale change");
        match on_stale {
            OnStale::Review => {
                let why = Why {
                    reason: "stale".into(),
                    message,
                    answer: None,
                };
                let item = self.open_review(work, route, why).await?;
                match self.wake(work, route, item).await {
                    // Approved: the decided request goes, as its record's turn allows.
                    Ok(Some(request)) => {
                        let now = Utc::now().timestamp_millis();
                        let until = now + TURN.as_millis() as i64;
                        match self
                            .store
                            .take_turn(&held.key, &held.holder, now, until)
                            .await
                        {
                            Ok(Turn::Mine { .. }) => {
                                held.stale = true;
                                Ok(Turned::Decided(held, Box::new(request)))
                            }
                            _ => Err(self.wait_behind(work, &held, LOOK_AGAIN, &stamp.key).await),
                        }
                    }
                    Ok(None) => Err(Fate::AlreadyDelivered),
                    Err(fate) => Err(fate),
                }
            }
            _ => Err(Fate::Stale { message }),
        }
    }

    /// The task waits `wait` for its record's turn, noted as waiting so that the oldest
    /// change waiting goes first; a change looking again soon backs off with each receive
    /// (a second at first), and one on the deliveries queue's last receive is dead-lettered
    /// with why rather than lost to the queue's own redrive.
    async fn wait_behind(&self, work: &Work<'_>, held: &Held, wait: Duration, key: &str) -> Fate {
        if work.receives + 1 >= self.max_receive_count {
            return Fate::Settle(Settlement::DeadLetter {
                reason: Reason::RetriesExhausted,
                message: format!(
                    "waited {} receives behind other changes of record {key} (ordering)",
                    work.receives
                ),
            });
        }
        let backoff = LOOK_AGAIN * work.receives.min(60);
        let wait = wait
            .max(backoff)
            .clamp(LOOK_AGAIN, Duration::from_secs(11 * 3600));
        let expires = Utc::now().timestamp_millis() + (wait + TURN).as_millis() as i64;
        let noted = self
            .store
            .wait_turn(&held.key, &held.holder, &held.version, expires)
            .await;
        if let Err(e) = noted {
            tracing::warn!(key = %held.key, error = %e, "noting the change as waiting failed");
        }
        Fate::HandBack {
            wait: Some(wait),
            why: HandBack::Waiting(format!("behind another change of record {key} (ordering)")),
        }
    }

    /// After the stages: delivered, the version is the key's last and the turn passes on; a
    /// retry or a hold keeps the turn until a while after the task's next look; anything else
    /// passes it on.
    pub(super) async fn after_turn(&self, held: Held, fate: &Fate) {
        let keep = |wait: Duration| wait + TURN;
        match fate {
            Fate::Settle(Settlement::Delivered) => {
                let delivered = (!held.stale).then_some(&held.version);
                self.end_turn(&held, delivered).await;
            }
            Fate::Settle(Settlement::Retry { wait, .. } | Settlement::Hold { wait, .. }) => {
                self.keep_turn(&held, keep(*wait)).await;
            }
            Fate::HandBack { wait, .. } => {
                self.keep_turn(&held, keep(wait.unwrap_or(TURN))).await;
            }
            _ => self.end_turn(&held, None).await,
        }
    }

    async fn keep_turn(&self, held: &Held, span: Duration) {
        let now = Utc::now().timestamp_millis();
        let until = now + span.as_millis() as i64;
        if let Err(e) = self
            .store
            .take_turn(&held.key, &held.holder, now, until)
            .await
        {
            tracing::warn!(key = %held.key, error = %e, "keeping the record's turn failed; it lapses on its own");
        }
    }

    async fn end_turn(&self, held: &Held, delivered: Option<&Value>) {
        if let Err(e) = self
            .store
            .end_turn(&held.key, &held.holder, delivered)
            .await
        {
            tracing::warn!(key = %held.key, error = %e, "ending the record's turn failed; it lapses on its own");
        }
    }

    /// The claimed stages in the task's record's turn, when its route keeps changes in order.
    pub(super) async fn in_turn(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        target: Target<'_>,
        probe: bool,
        deadline_ms: Option<i64>,
    ) -> Decided {
        let (turn, approved) = match self.take_turn(work, route).await {
            Ok(Turned::Unordered) => {
                return self.claimed(work, route, target, probe, deadline_ms).await;
            }
            Ok(Turned::Mine(turn)) => (turn, None),
            Ok(Turned::Decided(turn, request)) => (turn, Some(request)),
            Err(fate) => return fate.into(),
        };
        let decided = match &approved {
            Some(request) => {
                let approved = Work {
                    task: request,
                    ..*work
                };
                self.claimed(&approved, route, target, probe, deadline_ms)
                    .await
            }
            None => self.claimed(work, route, target, probe, deadline_ms).await,
        };
        self.after_turn(turn, &decided.fate).await;
        decided
    }
}
