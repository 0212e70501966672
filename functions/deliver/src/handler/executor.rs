//! The one executor: carries a task's fate out, once (completes or releases its claim, sets
//! its visibility, or dead-letters it, its letter claimed first), and counts it.

use switchboard_core::idempotency::Delivered;

use super::*;

impl<P: DeliverPorts> Deliver<P> {
    /// Carries out a task's fate, exactly once: completes or releases its claim, sets its
    /// visibility, or dead-letters it, and counts it.
    pub(super) async fn execute(&self, work: &Work<'_>, decided: Decided) -> Result<(), HandBack> {
        let Decided {
            fate,
            claimed,
            tried,
        } = decided;
        let tried = tried.unwrap_or(Tried {
            attempts: work.receives,
            ..Tried::default()
        });
        // Delivered, or stale (`ordering`): either way done, never sent again.
        let stale = match &fate {
            Fate::Stale { message } => Some(Some(message.clone())),
            Fate::Settle(Settlement::Delivered) => Some(None),
            _ => None,
        };
        let done = stale.map(|stale| Delivered {
            at: Utc::now(),
            status: tried.last_status,
            latency_ms: tried.latency_ms,
            receives: work.receives,
            archived: work.task.archived.clone(),
            stale,
        });
        let result = self.carry_out(work, fate, tried).await;
        if let (Some(c), Some(done)) = (claimed, done) {
            self.complete(&c, &done).await;
        }
        result
    }

    /// Delivered: the record that suppresses a second send, saying when, what the
    /// destination answered, how long it took and where the event is archived (`events show`).
    async fn complete(&self, claimed: &Claimed, done: &Delivered) {
        let now = Utc::now();
        let data = serde_json::to_string(done).unwrap_or_default();
        if let Err(e) = self
            .store
            .record_completed(&claimed.key, &data, now, claimed.expires_at)
            .await
        {
            // Delivered: nothing is lost. A redelivery is sent again; the destination's
            // Idempotency-Key dedupes it.
            tracing::warn!(error = %e, "recording the delivery failed");
        }
    }

    /// The fate's effect on the message: deleted (Ok), its visibility set, or its letter sent.
    async fn carry_out(&self, work: &Work<'_>, fate: Fate, tried: Tried) -> Result<(), HandBack> {
        let task = work.task;
        let (integration, route) = (task.integration.as_str(), task.route.as_str());
        match fate {
            Fate::Settle(Settlement::Delivered) => {
                self.count(integration, route, metrics::Outcome::Delivered, "");
                Ok(())
            }
            Fate::Settle(Settlement::Retry { wait, reason }) => {
                self.count(integration, route, metrics::Outcome::Retried, reason);
                self.set_visibility(work.message, wait, work.received).await;
                // For `events show` (a failure's write, never the happy path's).
                let at = Utc::now().timestamp_millis() + wait.as_millis() as i64;
                if let Err(e) = self.store.note_next_attempt(&task_key(task), at).await {
                    tracing::warn!(error = %e, "noting the next attempt's time failed");
                }
                Err(HandBack::Waiting(format!(
                    "{reason}; next attempt in {}s",
                    wait.as_secs()
                )))
            }
            Fate::Settle(Settlement::Hold { why, wait }) => {
                self.count(
                    integration,
                    route,
                    metrics::Outcome::Held(why),
                    why.as_str(),
                );
                self.set_visibility(work.message, wait, work.received).await;
                Err(HandBack::Waiting(format!(
                    "{}; next look in {}s",
                    why.as_str(),
                    wait.as_secs()
                )))
            }
            Fate::Settle(Settlement::DeadLetter { reason, message }) => {
                self.dead_letter(work, reason, message, tried, None).await
            }
            Fate::ReviewExpired { message, request } => {
                let body = serde_json::to_string(&DeliveryMessage::DeliveryV1(*request)).ok();
                self.dead_letter(work, Reason::ReviewExpired, message, tried, body)
                    .await
            }
            Fate::AlreadyDelivered => {
                tracing::info!(event_id = %task.event_id, route, "already delivered; not sent again");
                self.count(
                    integration,
                    route,
                    metrics::Outcome::Skipped,
                    "already_delivered",
                );
                Ok(())
            }
            Fate::Stale { message } => {
                tracing::warn!(event_id = %task.event_id, route, why = %message, "stale: not sent");
                self.count(integration, route, metrics::Outcome::Skipped, "stale");
                Ok(())
            }
            Fate::AlreadyDeadLettered => {
                tracing::info!(event_id = %task.event_id, route, "already dead-lettered; not again");
                Ok(())
            }
            Fate::InReview { wait, item } => {
                self.count(integration, route, metrics::Outcome::Review, "waiting");
                self.set_visibility(work.message, wait, work.received).await;
                Err(HandBack::Waiting(format!(
                    "waiting in review ({item}); next look in {}s",
                    wait.as_secs()
                )))
            }
            Fate::Reviewed { item, status } => {
                tracing::info!(event_id = %task.event_id, route, item, status = status.as_str(), "review decided; nothing to send");
                self.count(
                    integration,
                    route,
                    metrics::Outcome::Skipped,
                    format!("review_{}", status.as_str()),
                );
                Ok(())
            }
            Fate::HandBack { wait, why } => {
                if let Some(wait) = wait {
                    self.set_visibility(work.message, wait, work.received).await;
                }
                Err(why)
            }
        }
    }

    /// Hands the message back after `wait`, cut to end within 12 h of its receive (SQS's
    /// limit; `received` is when the batch reached the function).
    pub(super) async fn set_visibility(
        &self,
        message: &SqsMessage,
        wait: Duration,
        received: Instant,
    ) {
        let wait = delivery_policy::within_receive(wait, received.elapsed());
        if let Some(receipt) = message.receipt_handle.as_deref()
            && let Err(e) = self.queue.delay(receipt, wait).await
        {
            // The queue's own visibility timeout applies instead.
            tracing::warn!(error = %e, "could not set the retry delay");
        }
    }

    pub(super) async fn dead_letter(
        &self,
        work: &Work<'_>,
        reason: Reason,
        message: String,
        tried: Tried,
        body: Option<String>,
    ) -> Result<(), HandBack> {
        let task = work.task;
        let letter = DeadLetter {
            body: body.unwrap_or_else(|| work.text.to_string()),
            reason,
            message,
            integration: task.integration.clone(),
            route: Some(task.route.clone()),
            event_id: task.event_id.to_string(),
            attempts: tried.attempts,
            last_status: tried.last_status,
            history: tried.history,
        };
        let message_id = work.message.message_id.as_deref().unwrap_or_default();
        // One refusal, one letter: a second message of the same task (transform queued it
        // twice) finds the letter claimed and leaves none; the same message on a second worker
        // (its visibility lapsed mid-batch) comes back after the first's lease. A claim that
        // cannot be read or written does not stop the letter: a duplicate beats a loss.
        let now_ms = Utc::now().timestamp_millis();
        let lease = now_ms + LETTER_LEASE.as_millis() as i64;
        match self
            .store
            .claim_dead_letter(&task_key(task), message_id, now_ms, lease)
            .await
        {
            Ok(LetterClaim::Busy { until_ms }) => {
                let wait = Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0));
                self.set_visibility(work.message, wait + Duration::from_secs(1), work.received)
                    .await;
                return Err(HandBack::Waiting(
                    "another worker is dead-lettering this message".into(),
                ));
            }
            Ok(LetterClaim::OtherCopy) => {
                tracing::info!(event_id = %task.event_id, route = %task.route, reason = reason.as_str(), "another copy of this task was dead-lettered; no second letter");
                self.count(
                    &task.integration,
                    &task.route,
                    metrics::Outcome::Skipped,
                    "already_dead_lettered",
                );
                return Ok(());
            }
            Ok(LetterClaim::Sent) => {
                tracing::info!(event_id = %task.event_id, route = %task.route, "already dead-lettered from this message; not again");
                return Ok(());
            }
            Ok(LetterClaim::Won) => {}
            Err(e) => tracing::warn!(error = %e, "claiming the dead letter failed; sending it"),
        }
        self.count(
            &task.integration,
            &task.route,
            metrics::Outcome::Failed,
            reason,
        );
        send_dead_letter(&self.dead_letters, &letter, "delivery").await?;
        if let Err(e) = self
            .store
            .mark_dead_lettered(&task_key(task), message_id, reason.as_str())
            .await
        {
            // A redelivery may dead-letter it a second time; nothing is lost.
            tracing::warn!(error = %e, "noting the dead letter failed");
        }
        Ok(())
    }

    pub(super) fn count(
        &self,
        integration: &str,
        route: &str,
        outcome: metrics::Outcome,
        reason: impl AsRef<str>,
    ) {
        self.metrics.delivery(integration, route, outcome, reason);
    }
}
