//! The review gate of deliver: a task its route holds for a person waits on its visibility
//! until its review item is decided or expires, and a refusal kept by `on_rejected: review`
//! opens an item instead of a dead letter.

use super::*;

impl<P: DeliverPorts> Deliver<P> {
    /// The review queue. A task its route holds for a person (transform's `review_when`, or a
    /// refusal kept by `on_rejected: review`) waits here, on its visibility, until its item is
    /// decided or expires. Ok(None) passes the task on as it is; Ok(Some) sends the decided
    /// request. Only flagged tasks and redeliveries of `on_rejected: review` routes read the
    /// table.
    pub(super) async fn review_gate(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
    ) -> Result<Option<DeliveryV1>, Fate> {
        let task = work.task;
        if let Some(id) = &task.reviewed {
            return self.check_reviewed(work, route, id).await;
        }
        // An on_rejected route honours an item on every receive (a replay or a redrive of a
        // task a person already decided is not sent again as it was).
        let looks = task.review.is_some() || route.review.on_rejected;
        if !looks {
            return Ok(None);
        }
        let id = ReviewItem::id_of(task);
        let item = match self.store.review(&id).await {
            Ok(Some(item)) => item,
            Ok(None) => match &task.review {
                Some(why) => {
                    let why = Why {
                        reason: "review_when".into(),
                        message: why.clone(),
                        answer: None,
                    };
                    self.open_review(work, route, why).await?
                }
                None => return Ok(None),
            },
            Err(e) => return Err(Fate::unavailable(format!("reading {id} failed: {e}"))),
        };
        self.wake(work, route, item).await
    }

    /// Creates the task's review item (once: a second look finds the first's).
    pub(super) async fn open_review(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        why: Why,
    ) -> Result<ReviewItem, Fate> {
        let task = work.task;
        let item = ReviewItem::new(task, &route.review, why, Utc::now());
        match self.store.create_review(&item).await {
            Ok(true) => {
                tracing::warn!(
                    event_id = %task.event_id,
                    route = %task.route,
                    item = %item.id,
                    reason = %item.why.reason,
                    why = %item.why.message,
                    expires_at = %item.expires_at.to_rfc3339(),
                    "held for review"
                );
                self.metrics
                    .review(&task.integration, &task.route, "created");
                Ok(item)
            }
            Ok(false) => match self.store.review(&item.id).await {
                Ok(Some(found)) => Ok(found),
                Ok(None) => Err(Fate::unavailable(format!("{} vanished", item.id))),
                Err(e) => Err(Fate::unavailable(format!(
                    "reading {} failed: {e}",
                    item.id
                ))),
            },
            Err(e) => Err(Fate::unavailable(format!(
                "creating {} failed: {e}",
                item.id
            ))),
        }
    }

    /// A task marked as decided by a person is sent only when its item exists, was approved
    /// or edited (or expired to be delivered) and recorded this very request; anything else
    /// (forged, changed, another item's, a decision never made) is dead-lettered
    /// `review_mismatch` without a call.
    /// A decision made outside Slack (the CLI, an expiry to deliver) is shown in the item's
    /// Slack message when the task it sends is first received.
    async fn check_reviewed(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        id: &str,
    ) -> Result<Option<DeliveryV1>, Fate> {
        let task = work.task;
        let item = match self.store.review(id).await {
            Ok(item) => item,
            Err(e) => return Err(Fate::unavailable(format!("reading {id} failed: {e}"))),
        };
        if let Some(item) = item.as_ref().filter(|i| i.authorizes(task)) {
            let by_slack = item
                .decisions
                .last()
                .is_some_and(|d| d.by.starts_with("slack:"));
            if work.receives == 1 && !by_slack {
                self.show_in_slack(route, item).await;
            }
            return Ok(None);
        }
        let why = match item {
            None => format!("no review item {id}"),
            Some(i) => format!(
                "review item {id} is {} and did not decide this request",
                i.status.as_str()
            ),
        };
        Err(Fate::Settle(Settlement::DeadLetter {
            reason: Reason::ReviewMismatch,
            message: format!("the task says a person decided it, but {why}: not sent"),
        }))
    }

    /// What the item's timer does at this wake (the first one follows its creation): post it
    /// to Slack if its route says so and it is not there yet; sleep again (noting once that it
    /// is overdue),
    /// apply its expiry policy, or carry out its decision. An item expired to the DLQ earlier
    /// is opened again first, for the route's review span: its letter was redriven, and a
    /// person decides now.
    pub(super) async fn wake(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        mut item: ReviewItem,
    ) -> Result<Option<DeliveryV1>, Fate> {
        if item.status == ReviewStatus::Expired
            && item.on_expiry == switchboard_core::review::OnExpiry::DeadLetter
        {
            self.reopen(work, route, &mut item).await?;
        }
        self.announce(route, &mut item).await;
        let now = Utc::now();
        let mut next = item.next(now);
        if next == Next::Expire {
            self.expire(work, &mut item).await?;
            self.show_in_slack(route, &item).await;
            next = item.next(now);
        }
        match next {
            Next::Send(request) => Ok(Some(*request)),
            Next::Done => {
                // Rejected outside Slack (a click shows its own; an expiry was shown).
                let by_slack = item
                    .decisions
                    .last()
                    .is_some_and(|d| d.by.starts_with("slack:"));
                if item.status == ReviewStatus::Rejected && !by_slack {
                    self.show_in_slack(route, &item).await;
                }
                Err(Fate::Reviewed {
                    item: item.id,
                    status: item.status,
                })
            }
            // The letter holds the task as it came, undecided: a redrive opens the review again.
            Next::DeadLetter => Err(Fate::ReviewExpired {
                message: format!(
                    "review item {} expired at {} with nobody's decision (on_expiry: dead_letter); a redrive opens it again for a person to decide",
                    item.id,
                    item.expires_at.to_rfc3339()
                ),
                request: Box::new(work.task.clone()),
            }),
            Next::Wait { .. } | Next::Expire if work.receives >= self.max_receive_count => {
                Err(Fate::Settle(Settlement::DeadLetter {
                    reason: Reason::ReviewExpired,
                    message: format!(
                        "review item {} waited through the deliveries queue's {} receives",
                        item.id, self.max_receive_count
                    ),
                }))
            }
            Next::Wait { sleep, overdue } => {
                if overdue {
                    self.note_overdue(work, &mut item).await;
                }
                Err(Fate::InReview {
                    wait: sleep,
                    item: item.id,
                })
            }
            Next::Expire => Err(Fate::HandBack {
                wait: Some(Duration::from_secs(1)),
                why: HandBack::Waiting(format!("{} is expiring", item.id)),
            }),
        }
    }

    /// Opens an expired item again (`ReviewItem::reopen`).
    async fn reopen(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        item: &mut ReviewItem,
    ) -> Result<(), Fate> {
        let task = work.task;
        item.reopen(&route.review, Utc::now());
        item.version += 1;
        match self.store.update_review(item).await {
            Ok(true) => {
                tracing::warn!(event_id = %task.event_id, route = %task.route, item = %item.id, "review opened again: its letter was redriven");
                self.metrics
                    .review(&task.integration, &task.route, "created");
                Ok(())
            }
            Ok(false) => Err(Fate::HandBack {
                wait: Some(Duration::from_secs(1)),
                why: HandBack::Waiting(format!("{} changed; looking again", item.id)),
            }),
            Err(e) => Err(Fate::unavailable(format!(
                "reopening {} failed: {e}",
                item.id
            ))),
        }
    }

    /// Applies the item's expiry: it is decided `expired` (its `on_expiry` says what follows).
    async fn expire(&self, work: &Work<'_>, item: &mut ReviewItem) -> Result<(), Fate> {
        let task = work.task;
        let policy = item.on_expiry.as_str();
        item.decide(
            ReviewStatus::Expired,
            "switchboard",
            Utc::now(),
            Some(format!("on_expiry: {policy}")),
        );
        item.version += 1;
        match self.store.update_review(item).await {
            Ok(true) => {
                tracing::warn!(event_id = %task.event_id, route = %task.route, item = %item.id, on_expiry = policy, "review expired with nobody's decision");
                self.metrics
                    .review(&task.integration, &task.route, "expired");
                Ok(())
            }
            Ok(false) => Err(Fate::HandBack {
                wait: Some(Duration::from_secs(1)),
                why: HandBack::Waiting(format!("{} changed; looking again", item.id)),
            }),
            Err(e) => Err(Fate::unavailable(format!(
                "expiring {} failed: {e}",
                item.id
            ))),
        }
    }

    /// Notes once that the item is overdue (the ReviewOverdue alarm counts it).
    async fn note_overdue(&self, work: &Work<'_>, item: &mut ReviewItem) {
        let task = work.task;
        item.alerted = true;
        item.version += 1;
        if let Ok(true) = self.store.update_review(item).await {
            tracing::warn!(event_id = %task.event_id, route = %task.route, item = %item.id, since = %item.created_at.to_rfc3339(), "review overdue");
            self.metrics
                .review(&task.integration, &task.route, "overdue");
        }
    }

    /// `on_rejected: review`: a permanent refusal by the destination waits for a person
    /// instead of going to the DLQ (once: a request a person decided goes to the DLQ if it is
    /// refused again).
    pub(super) async fn refused_to_review(
        &self,
        work: &Work<'_>,
        route: &OutboundRoute,
        decided: Decided,
    ) -> Decided {
        let Fate::Settle(Settlement::DeadLetter { reason, message }) = &decided.fate else {
            return decided;
        };
        let refused = matches!(
            reason,
            Reason::RejectedByDestination | Reason::PermanentFailure
        );
        if !refused || !route.review.on_rejected || work.task.reviewed.is_some() {
            return decided;
        }
        let why = Why {
            reason: reason.as_str().into(),
            message: message.clone(),
            answer: decided.tried.as_ref().and_then(|t| t.answer.clone()),
        };
        let fate = match self.open_review(work, route, why).await {
            Ok(item) => match self.wake(work, route, item).await {
                Err(held @ Fate::InReview { .. }) => held,
                // Decided before (the same event and route is one item): as the policy says.
                _ => return decided,
            },
            Err(unavailable) => unavailable,
        };
        // The claim is released with it: the item is looked at again on the next receive.
        Decided { fate, ..decided }
    }
}
