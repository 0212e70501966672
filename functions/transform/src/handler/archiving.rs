//! A batch's events archived together, then their tasks queued together: one archive object
//! per integration and day of the batch (a line per decided event, with what transform
//! decided), one `SendMessageBatch` per ten tasks across the whole batch.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use switchboard_core::archive::{
    self, ArchivedEvent, ArchivedEventV2, Decision, EventOutcome, RouteDecision,
};
use switchboard_core::dead_letter::DeadLetter;
use switchboard_core::ports::{Archive, DeadLetterQueue, Queue, RateLimiter, SecretStore};
use switchboard_core::reason::Reason;

use super::{Failure, RawEvent, Report, Transform};

/// One message of a batch, decided: its event and what the routes made of it, or the letter
/// of a message that is not an event.
pub(super) struct Decided {
    /// Its receive count.
    pub(super) attempts: u32,
    /// The event decided, or the letter of a message that is not one.
    pub(super) event: Result<Event, DeadLetter>,
}

/// An event decided.
pub(super) struct Event {
    pub(super) event: RawEvent,
    /// The batch object its line goes to.
    pub(super) key: String,
    pub(super) result: Result<Report, Failure>,
    pub(super) decided_at: DateTime<Utc>,
    /// Whether it has a line in the batch's archive (set when the batch is archived).
    pub(super) has_line: bool,
}

impl Decided {
    /// A letter for this message's event (only called once it is known to be one).
    pub(super) fn letter(
        &self,
        reason: Reason,
        message: String,
        route: Option<&str>,
        body: String,
    ) -> DeadLetter {
        let (integration, event_id) = match &self.event {
            Ok(e) => (e.event.integration.clone(), e.event.event_id.to_string()),
            Err(l) => (l.integration.clone(), l.event_id.clone()),
        };
        DeadLetter {
            body,
            reason,
            message,
            integration,
            route: route.map(str::to_string),
            event_id,
            attempts: self.attempts,
            last_status: None,
            history: None,
        }
    }
}

/// Whether each archive object of a batch was written.
#[derive(Debug, Default)]
pub(super) struct Archived(HashMap<String, Result<(), String>>);

impl Archived {
    /// Whether `decided`'s line was written (None: it has no line).
    pub(super) fn of(&self, decided: &Decided) -> Option<Result<(), String>> {
        let e = decided.event.as_ref().ok()?;
        self.0.get(&e.key).cloned().filter(|_| e.has_line)
    }
}

impl Event {
    /// Its line, when it has one: every event settled here (transformed, skipped,
    /// dead-lettered) has one; one handed back to SQS gets its line when it is decided.
    fn line(&self, last_receive: bool) -> Option<ArchivedEvent> {
        let decision = decision(self.result.as_ref(), last_receive)?;
        let e = &self.event;
        Some(ArchivedEvent::ArchivedEventV2(ArchivedEventV2 {
            event_id: e.event_id.clone(),
            integration: e.integration.clone(),
            received_at: e.received_at,
            headers: e.headers.clone(),
            body: e.body_ref.is_none().then(|| e.body.clone()),
            body_ref: e.body_ref.clone(),
            decided_at: self.decided_at,
            decision,
        }))
    }
}

/// What transform decided for an event, as its archive line keeps it (None: nothing yet, it is
/// retried).
fn decision(result: Result<&Report, &Failure>, last_receive: bool) -> Option<Decision> {
    let whole = |outcome, reason: &str, message: &str| Decision {
        outcome,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        routes: Vec::new(),
        steps: Vec::new(),
    };
    Some(match result {
        Ok(report) => Decision {
            outcome: EventOutcome::Transformed,
            reason: None,
            message: None,
            routes: route_decisions(report),
            steps: report.steps.clone(),
        },
        Err(Failure::Skip { step }) => whole(
            EventOutcome::Skipped,
            Reason::EnrichNotFound.as_str(),
            &format!("enrichment step `{step}` found no record"),
        ),
        Err(Failure::Permanent { reason, message }) => {
            whole(EventOutcome::Failed, reason.as_str(), message)
        }
        Err(Failure::Retry { reason, message }) if last_receive => {
            whole(EventOutcome::Failed, reason.as_str(), message)
        }
        Err(Failure::Retry { .. }) => return None,
    })
}

fn route_decisions(report: &Report) -> Vec<RouteDecision> {
    use archive::RouteOutcome as O;
    let route = |route: &str, outcome, reason: Option<&str>| RouteDecision {
        route: route.to_string(),
        outcome,
        reason: reason.map(str::to_string),
    };
    let held = |r: &str| report.held.iter().find(|(h, _)| h == r).map(|(_, why)| why);
    let queued = report.queued.iter().map(|r| match held(r) {
        Some(why) => route(r, O::Review, Some(why)),
        None => route(r, O::Queued, None),
    });
    let skipped = report
        .skipped
        .iter()
        .map(|(r, why)| route(r, O::Skipped, Some(why)));
    let rejected = report
        .rejected
        .iter()
        .map(|(r, why)| route(r, O::Failed, Some(why.reason.as_str())));
    queued.chain(skipped).chain(rejected).collect()
}

impl<Q: Queue, D: DeadLetterQueue, A: Archive, K: SecretStore, L: RateLimiter>
    Transform<Q, D, A, K, L>
{
    /// Every decided event's line, one object per integration and day, the objects written
    /// side by side.
    pub(super) async fn archive_batch(&self, decided: &mut [Decided]) -> Archived {
        let mut objects: BTreeMap<String, Vec<ArchivedEvent>> = BTreeMap::new();
        for d in decided.iter_mut() {
            let last = d.attempts >= self.max_receive_count;
            if let Ok(e) = &mut d.event
                && let Some(line) = e.line(last)
            {
                e.has_line = true;
                objects.entry(e.key.clone()).or_default().push(line);
            }
        }
        let writes = objects.into_iter().map(|(key, lines)| async move {
            let bytes = archive::write_batch(&lines);
            let result = self.archive.put(&key, bytes).await.map_err(|e| {
                tracing::error!(key = %key, events = lines.len(), error = %e, "archiving the batch failed");
                format!("writing the archive object {key}: {e}")
            });
            (key, result)
        });
        Archived(
            futures::future::join_all(writes)
                .await
                .into_iter()
                .collect(),
        )
    }

    /// Every task of the events archived, sent together; for each message, whether its tasks
    /// went.
    pub(super) async fn queue_batch(
        &self,
        decided: &mut [Decided],
        archived: &Archived,
    ) -> Vec<Result<(), String>> {
        let mut results = vec![Ok(()); decided.len()];
        let (mut tasks, mut owner) = (Vec::new(), Vec::new());
        for (i, d) in decided.iter_mut().enumerate() {
            let written = matches!(archived.of(d), Some(Ok(())));
            if let Ok(e) = &mut d.event
                && let Ok(report) = &mut e.result
                && written
            {
                owner.extend(std::iter::repeat_n(i, report.tasks.len()));
                tasks.append(&mut report.tasks);
            }
        }
        if tasks.is_empty() {
            return results;
        }
        if let Err(unsent) = self.deliveries.send_each(&tasks).await {
            for j in unsent.failed {
                if let Some(&i) = owner.get(j) {
                    results[i] = Err(unsent.error.to_string());
                }
            }
        }
        results
    }
}
