//! `switchboard dlq list|show|redrive|purge`: the dead letters, read without consuming them,
//! moved back to their source queue, or deleted, by filter.

use std::process::ExitCode;
use std::time::Duration;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use clap::Args;
use serde::Serialize;
use switchboard_core::envelope::{DeliveryRef, DeliveryV1};
use switchboard_core::reason::Reason;
use switchboard_shared::aws::{DeadLetterRecord, DynamoIdempotencyStore};

use super::{
    DlqReader, Held, QueueKind, Stack, StackArgs, confirm, failed, paint, progress, shown,
    tinted_table,
};

/// Which dead letters a command works on (all of them when nothing is given).
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// Only this reason (`permanent_failure`, `contract_violation`, ...).
    #[arg(long, value_parser = |s: &str| s.parse::<Reason>())]
    pub reason: Option<Reason>,
    /// Only this integration.
    #[arg(long)]
    pub integration: Option<String>,
    /// Only this route.
    #[arg(long)]
    pub route: Option<String>,
    /// Only this event.
    #[arg(long)]
    pub event_id: Option<String>,
    /// Only those whose destination last answered this status.
    #[arg(long)]
    pub status: Option<u16>,
    /// Only those dead-lettered at or after this time (RFC 3339, or a duration ago: `2h`).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only those dead-lettered before this time (RFC 3339, or a duration ago).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// RFC 3339 (`2026-12-01T09:00:00Z`), or a duration meaning that long ago (`90m`, `2h`, `7d`).
pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| chrono::Utc::now() - d)
        .ok_or_else(|| {
            format!("`{text}` is neither an RFC 3339 time (2026-12-01T09:00:00Z) nor a duration ago (2h)")
        })
}

impl Filter {
    /// Whether it asks for everything.
    pub fn is_empty(&self) -> bool {
        self.reason.is_none()
            && self.integration.is_none()
            && self.route.is_none()
            && self.event_id.is_none()
            && self.status.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.limit.is_none()
    }

    /// Whether `letter` is one of those asked for.
    pub fn matches(&self, letter: &DeadLetterRecord) -> bool {
        let failed_at = chrono::DateTime::parse_from_rfc3339(&letter.failed_at)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc));
        self.reason.is_none_or(|r| r.as_str() == letter.reason)
            && self
                .integration
                .as_ref()
                .is_none_or(|i| *i == letter.integration)
            && self
                .route
                .as_ref()
                .is_none_or(|r| Some(r) == letter.route.as_ref())
            && self.event_id.as_ref().is_none_or(|e| *e == letter.event_id)
            && self.status.is_none_or(|s| Some(s) == letter.last_status)
            && self.since.is_none_or(|s| failed_at.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| failed_at.is_some_and(|t| t < u))
    }

    /// Whether, with `taken` already taken, `letter` is one more.
    fn takes(&self, taken: usize, letter: &DeadLetterRecord) -> bool {
        taken < self.limit.unwrap_or(usize::MAX) && self.matches(letter)
    }
}

/// The dead letters of `kind` that `filter` matches, each passed to `on_match` as it is read;
/// every one is visible again afterwards. Returns how many matched.
pub async fn each(
    stack: &Stack,
    kind: QueueKind,
    filter: &Filter,
    mut on_match: impl FnMut(DeadLetterRecord),
) -> anyhow::Result<usize> {
    let (_, dlq) = stack.queues(kind).await?;
    let mut reader = DlqReader::new(&stack.sqs, &dlq);
    let bar = progress("read");
    let mut matched = 0;
    while let Some(batch) = reader.next().await? {
        for h in batch {
            bar.inc(1);
            if filter.takes(matched, &h.letter) {
                matched += 1;
                on_match(h.letter.clone());
            }
            reader.put_back(h);
        }
    }
    bar.finish_and_clear();
    reader.release().await?;
    Ok(matched)
}

/// The dead letters of `kind` that `filter` matches, collected (see [`each`] to stream them).
pub async fn list(
    stack: &Stack,
    kind: QueueKind,
    filter: &Filter,
) -> anyhow::Result<Vec<DeadLetterRecord>> {
    let mut letters = Vec::new();
    each(stack, kind, filter, |l| letters.push(l)).await?;
    Ok(letters)
}

/// The table a person reads.
pub fn render_list(letters: &[DeadLetterRecord]) -> String {
    let now = chrono::Utc::now();
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            let age = chrono::DateTime::parse_from_rfc3339(&l.failed_at)
                .map(|t| format!("{}s", (now - t.with_timezone(&chrono::Utc)).num_seconds()))
                .unwrap_or_default();
            vec![
                l.event_id.clone(),
                l.integration.clone(),
                l.route.clone().unwrap_or_default(),
                l.reason.clone(),
                l.last_status.map(|s| s.to_string()).unwrap_or_default(),
                l.attempts.to_string(),
                l.failed_at.clone(),
                age,
            ]
        })
        .collect();
    let mut out = tinted_table(
        &[
            "event",
            "integration",
            "route",
            "reason",
            "status",
            "attempts",
            "failed at",
            "age",
        ],
        &rows,
        |column, cell| match column {
            3 => Some(31),
            4 if cell.starts_with('5') => Some(31),
            4 => Some(33),
            _ => None,
        },
    );
    let summary = format!("{} dead letter(s)", letters.len());
    let colour = if letters.is_empty() { 32 } else { 33 };
    out.push_str(&format!("{}\n", paint(&summary, colour)));
    out
}

/// Everything about one event's dead letters: attributes, the attempt history. Every text
/// from the letter is shown escaped (`shown`): a destination's answer or a reason cannot
/// drive the terminal.
pub fn render_show(letters: &[DeadLetterRecord]) -> String {
    let mut out = String::new();
    for l in letters {
        out.push_str(&format!(
            "event {}  integration {}  route {}\nreason {}  last status {}  attempts {}  failed at {}\n{}\n",
            shown(&l.event_id),
            shown(&l.integration),
            shown(l.route.as_deref().unwrap_or("-")),
            shown(&l.reason),
            l.last_status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            l.attempts,
            shown(&l.failed_at),
            shown(&l.message),
        ));
        if let Some(history) = &l.history {
            let attempts: Vec<serde_json::Value> =
                serde_json::from_str(history).unwrap_or_default();
            for a in attempts {
                out.push_str(&format!(
                    "  attempt {} at {}: {} in {} ms{}\n",
                    a["receive"],
                    shown(a["at"].as_str().unwrap_or_default()),
                    a["status"]
                        .as_u64()
                        .map(|s| s.to_string())
                        .or_else(|| a["error"].as_str().map(|e| shown(e).into_owned()))
                        .unwrap_or_default(),
                    a["latency_ms"],
                    a["response"]
                        .as_str()
                        .map(|r| format!("\n    {}", shown(r)))
                        .unwrap_or_default(),
                ));
            }
        }
        out.push_str(&format!(
            "  archived in {} (the archive bucket; its line is {})\n",
            shown(&archive_key(l)),
            shown(&l.event_id)
        ));
        if let Some(audit) = audit_prefix(l) {
            out.push_str(&format!(
                "  model interactions (steps with `model:`) audited under {}\n",
                shown(&audit)
            ));
        }
        out.push('\n');
    }
    out
}

/// Where the letter's event is archived: the batch object holding its line, as transform
/// wrote it on the event and its tasks; for a letter written before the batches, where the
/// event was kept alone (exact when the letter says when it was received, else by day prefix).
pub fn archive_key(l: &DeadLetterRecord) -> String {
    use switchboard_core::archive::key;
    use switchboard_core::envelope::{DeliveryMessage, EventMessage};
    if let Ok(EventMessage::EventV1(e)) = EventMessage::decode(&l.body) {
        return e
            .archived
            .unwrap_or_else(|| key(&e.integration, e.received_at, &e.event_id));
    }
    match DeliveryMessage::decode(&l.body) {
        Ok(DeliveryMessage::DeliveryV1(DeliveryV1 {
            archived: Some(archived),
            order: None,
            ..
        }))
        | Ok(DeliveryMessage::DeliveryRefV1(DeliveryRef {
            archived: Some(archived),
            ..
        })) => archived,
        Ok(DeliveryMessage::DeliveryV1(DeliveryV1 {
            received_at: Some(at),
            event_id,
            integration,
            ..
        })) => key(&integration, at, &event_id),
        Ok(DeliveryMessage::DeliveryRefV1(DeliveryRef {
            received_at: Some(at),
            event_id,
            integration,
            ..
        })) => key(&integration, at, &event_id),
        _ => format!("{}/<yyyy>/<mm>/<dd>/{}", l.integration, l.event_id),
    }
}

/// Where the letter's event's model interactions are audited, when its time is known.
pub fn audit_prefix(l: &DeadLetterRecord) -> Option<String> {
    use switchboard_core::envelope::{DeliveryMessage, EventMessage};
    let (integration, at, event_id) = match EventMessage::decode(&l.body) {
        Ok(EventMessage::EventV1(e)) => (e.integration, e.received_at, e.event_id),
        Err(_) => match DeliveryMessage::decode(&l.body).ok()? {
            DeliveryMessage::DeliveryV1(t) => (t.integration, t.received_at?, t.event_id),
            DeliveryMessage::DeliveryRefV1(r) => (r.integration, r.received_at?, r.event_id),
        },
    };
    Some(switchboard_core::archive::audit_prefix(
        &integration,
        at,
        &event_id,
    ))
}

/// What `redrive --json` and `purge --json` print.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Moved {
    /// How many matched the filter.
    pub matched: usize,
    /// How many were moved back to their source queue (redrive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven: Option<usize>,
    /// How many were deleted (purge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged: Option<usize>,
    /// A few of those matched (dry runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<DeadLetterRecord>,
    /// Letters SQS would not take back (too large, or refused): they stay in the DLQ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_redriven: Vec<super::redrive::NotSent>,
}

/// What to do with the matched letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Back to the source queue, with a fresh retry schedule.
    Redrive,
    /// Deleted (the archive keeps the event).
    Purge,
}

/// How a redrive or purge runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    /// Change nothing: say how many match, with a sample.
    pub dry_run: bool,
    /// No question asked.
    pub yes: bool,
    /// At most this many messages per second.
    pub rate: Option<u32>,
}

/// Redrives or purges the dead letters of `kind` that `filter` matches, batch by batch as they
/// are read (nothing but receipt handles is held); the rest are visible again afterwards,
/// untouched.
pub async fn act(
    stack: &Stack,
    kind: QueueKind,
    filter: &Filter,
    action: Action,
    run: Run,
) -> anyhow::Result<Moved> {
    let (source, dlq) = stack.queues(kind).await?;
    let verb = match action {
        Action::Redrive => "redrive",
        Action::Purge => "purge",
    };
    let mut moved = Moved::default();
    if !run.dry_run {
        confirmed(stack, kind, &dlq, filter, verb, run.yes).await?;
    }
    let store = DynamoIdempotencyStore::new(stack.dynamodb.clone(), stack.table());
    let pause = run
        .rate
        .filter(|r| *r > 0)
        .map(|r| Duration::from_secs_f64(1.0 / f64::from(r)));
    let mut reader = DlqReader::new(&stack.sqs, &dlq);
    let bar = progress(verb);
    let mut done = 0;
    let result: anyhow::Result<()> = async {
        while let Some(batch) = reader.next().await? {
            let mut chosen = Vec::new();
            for h in batch {
                if !filter.takes(moved.matched, &h.letter) {
                    reader.put_back(h);
                    continue;
                }
                moved.matched += 1;
                if run.dry_run {
                    if moved.sample.len() < 5 {
                        moved.sample.push(h.letter.clone());
                    }
                    reader.put_back(h);
                    continue;
                }
                chosen.push(h);
            }
            if chosen.is_empty() {
                continue;
            }
            let (gone, kept) = match action {
                Action::Redrive => {
                    let sent =
                        super::redrive::send_back(stack, &store, kind, &source, chosen).await?;
                    moved.not_redriven.extend(sent.refused);
                    (sent.sent, sent.kept)
                }
                Action::Purge => (chosen, Vec::new()),
            };
            for h in kept {
                reader.put_back(h);
            }
            let n = gone.len();
            delete_batch(stack, &dlq, &gone).await?;
            done += n;
            bar.inc(n as u64);
            if let Some(p) = pause {
                tokio::time::sleep(p * n as u32).await;
            }
        }
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    // Whatever happened, what was read and not deleted is visible again.
    reader.release().await?;
    result?;
    if !run.dry_run {
        match action {
            Action::Redrive => moved.redriven = Some(done),
            Action::Purge => moved.purged = Some(done),
        }
    }
    Ok(moved)
}

/// Asks before a redrive or purge changes anything, saying how many letters the DLQ holds.
async fn confirmed(
    stack: &Stack,
    kind: QueueKind,
    dlq: &str,
    filter: &Filter,
    verb: &str,
    yes: bool,
) -> anyhow::Result<()> {
    let depth = super::status::queue_depth(stack, dlq).await?;
    let question = format!(
        "{verb} the dead letters of {}-{}-dlq that match{} (it holds about {depth})",
        stack.name,
        kind.as_str(),
        if filter.is_empty() {
            " (all of them)"
        } else {
            " the filter"
        },
    );
    if !confirm(&question, yes)? {
        anyhow::bail!("{verb}: not confirmed; nothing was changed");
    }
    Ok(())
}

/// Deletes up to 10 letters in one request.
async fn delete_batch(stack: &Stack, dlq: &str, batch: &[Held]) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let entries = batch
        .iter()
        .enumerate()
        .map(|(i, h)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(&h.receipt)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = stack
        .sqs
        .delete_message_batch()
        .queue_url(dlq)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(failed(format!(
            "deleting from {dlq} (a redriven copy may stay in the DLQ)"
        )))?;
    if let Some(f) = out.failed().first() {
        anyhow::bail!(
            "deleting from {dlq}: {} of {} refused ({}); a redriven copy may stay in the DLQ",
            out.failed().len(),
            batch.len(),
            f.message().unwrap_or(f.code())
        );
    }
    Ok(())
}

/// Which dead letters a redrive or purge works on, and how.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Which DLQ.
    #[arg(long, value_enum)]
    pub queue: QueueKind,
    #[command(flatten)]
    pub filter: Filter,
    /// Change nothing: say how many match, with a sample.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub stack: StackArgs,
}

/// `switchboard dlq ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// One row per dead letter; consumes nothing.
    List {
        /// Which DLQ.
        #[arg(long, value_enum)]
        queue: QueueKind,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Everything about an event's dead letters: attributes, attempts, the archive.
    Show {
        /// The event id (`evt_...`).
        event_id: String,
        /// Which DLQ (default: both).
        #[arg(long, value_enum)]
        queue: Option<QueueKind>,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Moves the matching dead letters back to their source queue with a fresh retry schedule.
    Redrive {
        #[command(flatten)]
        selection: Selection,
        /// At most this many messages per second.
        #[arg(long)]
        rate: Option<u32>,
    },
    /// Deletes the matching dead letters (the archive keeps the events).
    Purge {
        #[command(flatten)]
        selection: Selection,
    },
}

/// Runs one `switchboard dlq` command.
pub async fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let sdk = super::sdk_config().await;
    match command {
        DlqCommand::List {
            queue,
            filter,
            stack,
        } => {
            let letters = list(&Stack::new(&sdk, &stack.stack), queue, &filter).await?;
            if stack.json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                print!("{}", render_list(&letters));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show {
            event_id,
            queue,
            stack,
        } => {
            let s = Stack::new(&sdk, &stack.stack);
            let filter = Filter {
                event_id: Some(event_id.clone()),
                ..Filter::default()
            };
            let mut letters = Vec::new();
            for kind in queue.map(|q| vec![q]).unwrap_or(QueueKind::ALL.to_vec()) {
                letters.extend(list(&s, kind, &filter).await?);
            }
            if letters.is_empty() {
                anyhow::bail!(
                    "no dead letter of event {event_id} in {}'s DLQs",
                    stack.stack
                );
            }
            if stack.json {
                let full: Vec<serde_json::Value> = letters
                    .iter()
                    .map(|l| {
                        let mut v = serde_json::to_value(l).unwrap_or_default();
                        v["archive_key"] = archive_key(l).into();
                        v["audit_prefix"] = audit_prefix(l).into();
                        v["history"] = l
                            .history
                            .as_deref()
                            .and_then(|h| serde_json::from_str(h).ok())
                            .unwrap_or_default();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&full)?);
            } else {
                print!("{}", render_show(&letters));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Redrive { selection, rate } => {
            act_and_report(&sdk, selection, Action::Redrive, rate).await
        }
        DlqCommand::Purge { selection } => {
            act_and_report(&sdk, selection, Action::Purge, None).await
        }
    }
}

/// Runs a redrive or purge and prints what it did.
async fn act_and_report(
    sdk: &aws_config::SdkConfig,
    selection: Selection,
    action: Action,
    rate: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let Selection {
        queue,
        filter,
        dry_run,
        yes,
        stack,
    } = selection;
    let run = Run { dry_run, yes, rate };
    let moved = act(&Stack::new(sdk, &stack.stack), queue, &filter, action, run).await?;
    let verb = match action {
        Action::Redrive => "redriven",
        Action::Purge => "purged",
    };
    report(&moved, stack.json, verb, dry_run)
}

/// Prints what a redrive or purge did.
fn report(moved: &Moved, json: bool, verb: &str, dry_run: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(moved)?);
    } else if dry_run {
        println!(
            "{} dead letter(s) match; nothing was changed (dry run)",
            moved.matched
        );
        print!("{}", render_list(&moved.sample));
    } else {
        let done = moved.redriven.or(moved.purged).unwrap_or(0);
        println!("{} matched, {done} {verb}", moved.matched);
        for n in &moved.not_redriven {
            println!(
                "not redriven, still in the DLQ: {} {} ({} bytes): {}",
                n.event_id,
                n.route.as_deref().unwrap_or("-"),
                n.bytes,
                n.why
            );
        }
    }
    if moved.not_redriven.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests;
