//! `switchboard replay`: archived events (S3) run again through the definitions deployed now,
//! for example after a mapping fix. Routes already delivered for an event are skipped (their
//! `deliver#` records), unless `--force`. Those records are kept 7 days
//! (`DELIVERY_RECORDS_KEPT`) and the archive 90: an event older than its records is refused
//! unless `--force`, since nothing can say whether it was delivered.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use switchboard_core::archive::{self, ArchivedEvent, ArchivedEventV1, MAX_INLINE_MESSAGE_BYTES};
use switchboard_core::envelope::{EventMessage, EventV1};
use switchboard_core::idempotency::DELIVERY_RECORDS_KEPT;
use switchboard_core::integration::{Integration, Integrations};
use switchboard_core::ports::IdempotencyStore as _;
use switchboard_shared::aws::DynamoIdempotencyStore;

use super::{Stack, confirm, failed};

/// Which archived events to replay.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The integration whose events are replayed.
    #[arg(long)]
    pub integration: String,
    /// Only this route (default: every route of the integration).
    #[arg(long)]
    pub route: Option<String>,
    /// Only this event.
    #[arg(long)]
    pub event_id: Option<String>,
    /// Only events received at or after this time (RFC 3339, or a duration ago: `2h`).
    #[arg(long, value_parser = super::dlq::parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events received before this time.
    #[arg(long, value_parser = super::dlq::parse_time)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Send routes already delivered again too, and events older than the delivery records
    /// (7 days), which may have been delivered.
    #[arg(long)]
    pub force: bool,
    /// Change nothing: say how many match and how many would be skipped.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask.
    #[arg(long)]
    pub yes: bool,
    /// The archive bucket (default: the stack's `ArchiveBucketName` output, or `{stack}-archive`
    /// under `switchboard dev`).
    #[arg(long)]
    pub bucket: Option<String>,
    /// The definitions, for the integration's routes.
    #[arg(long, default_value = "integrations")]
    pub integrations: PathBuf,
}

/// What `replay --json` prints.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Replayed {
    /// Archived events that matched.
    pub matched: usize,
    /// Sent to the events queue again.
    pub replayed: usize,
    /// Skipped: every route asked for was delivered already.
    pub skipped_delivered: usize,
    /// Refused (without `--force`): received before the delivery records' horizon, so whether
    /// they were delivered is not known.
    pub refused_too_old: usize,
    /// The horizon: events received before it are older than their delivery records.
    pub records_since: chrono::DateTime<chrono::Utc>,
}

fn routes(dir: &Path, args: &ReplayArgs) -> anyhow::Result<Vec<String>> {
    let all: Integrations<Integration> =
        Integrations::load_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let integration = all
        .get(&args.integration)
        .with_context(|| format!("no integration `{}` in {}", args.integration, dir.display()))?;
    let ids: Vec<String> = integration.routes.iter().map(|r| r.id.clone()).collect();
    match &args.route {
        Some(r) if !ids.contains(r) => {
            anyhow::bail!(
                "integration `{}` has no route `{r}` (it has {ids:?})",
                args.integration
            )
        }
        Some(r) => Ok(vec![r.clone()]),
        None => Ok(ids),
    }
}

/// Replays the archived events `args` matches: list the archive, read what is in range, plan
/// the routes each still needs, confirm, send.
pub async fn replay(
    stack: &Stack,
    sdk: &aws_config::SdkConfig,
    args: &ReplayArgs,
) -> anyhow::Result<Replayed> {
    let routes = routes(&args.integrations, args)?;
    let s3 = aws_sdk_s3::Client::new(sdk);
    let bucket = match &args.bucket {
        Some(b) => b.clone(),
        None => {
            stack
                .archive_bucket(&aws_sdk_cloudformation::Client::new(sdk))
                .await
        }
    };
    let events_url = stack.queue_url("events").await?;
    let keys = archived_keys(&s3, &bucket, args).await?;
    let events = read_in_range(&s3, &bucket, keys, args).await?;
    let records_since =
        chrono::Utc::now() - chrono::Duration::from_std(DELIVERY_RECORDS_KEPT).unwrap_or_default();
    let mut result = Replayed {
        matched: events.len(),
        replayed: 0,
        skipped_delivered: 0,
        refused_too_old: 0,
        records_since,
    };
    let store = DynamoIdempotencyStore::new(stack.dynamodb.clone(), stack.table());
    let plan = plan(&store, &routes, events, args, &mut result).await?;
    if args.dry_run || plan.is_empty() {
        return Ok(result);
    }
    let question = format!(
        "replay {} event(s) of `{}` through the deployed definitions",
        plan.len(),
        args.integration
    );
    if !confirm(&question, args.yes)? {
        anyhow::bail!("replay: not confirmed; nothing was changed");
    }
    for planned in plan {
        send(stack, (&s3, &bucket), &store, &events_url, planned).await?;
        result.replayed += 1;
    }
    Ok(result)
}

/// The archive's objects of the integration's events from the first day asked for: batch
/// objects (`{integration}/{yyyy}/{mm}/{dd}/{ulid}.jsonl.gz`) and events kept alone
/// (`.../{event_id}`; with `--event-id`, only that one's).
async fn archived_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    args: &ReplayArgs,
) -> anyhow::Result<Vec<String>> {
    let prefix = format!("{}/", args.integration);
    let start_after = args.since.map(|t| {
        format!(
            "{prefix}{}",
            (t - chrono::Duration::days(1)).format("%Y/%m/%d/~")
        )
    });
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .set_start_after(start_after.clone())
            .set_continuation_token(token)
            .send()
            .await
            .map_err(failed(format!(
                "listing the archive bucket `{bucket}` (is --stack right? --bucket names it)"
            )))?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .filter(|k| {
                    k.ends_with(archive::BATCH_SUFFIX)
                        || args
                            .event_id
                            .as_ref()
                            .is_none_or(|e| k.rsplit('/').next() == Some(e.as_str()))
                }),
        );
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    Ok(keys)
}

/// Each archived event read, kept when it was received in the time range (and is the one
/// asked for), once: an event may have more than one line (transform retried it, or it was
/// replayed) and, when it was too large for a message, an object of its own; the one kept
/// holds its body (the object of its own first).
async fn read_in_range(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    keys: Vec<String>,
    args: &ReplayArgs,
) -> anyhow::Result<Vec<(String, ArchivedEvent)>> {
    let mut events: Vec<(String, ArchivedEvent)> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for key in keys {
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(failed(format!("reading {key}")))?;
        let bytes = object.body.collect().await?.into_bytes();
        for record in archive::read_object(&key, &bytes).map_err(anyhow::Error::msg)? {
            let at = record.received_at();
            if args.since.is_some_and(|s| at < s)
                || args.until.is_some_and(|u| at >= u)
                || args
                    .event_id
                    .as_ref()
                    .is_some_and(|e| record.event_id().as_str() != e)
            {
                continue;
            }
            match seen.get(record.event_id()) {
                None => {
                    seen.insert(record.event_id().clone(), events.len());
                    events.push((key.clone(), record));
                }
                Some(&i) if better(&record, &events[i].1) => events[i] = (key.clone(), record),
                Some(_) => {}
            }
        }
    }
    Ok(events)
}

/// Which of two records of one event a replay sends from: the event alone (its raw body),
/// then a line holding the body, then a line pointing to it.
fn better(new: &ArchivedEvent, old: &ArchivedEvent) -> bool {
    let rank = |r: &ArchivedEvent| match r {
        ArchivedEvent::ArchivedEventV1(_) => 2,
        ArchivedEvent::ArchivedEventV2(l) if l.body.is_some() => 1,
        ArchivedEvent::ArchivedEventV2(_) => 0,
    };
    rank(new) > rank(old)
}

/// An event to replay: the archive object it was read from, its record, and the routes it
/// still needs (each with whether it had been delivered: only with `--force`).
type Planned = (String, ArchivedEvent, Vec<(String, bool)>);

/// Which routes each event still needs; an event older than the delivery records is refused
/// (unless `--force`), one every route delivered is skipped; both counted in `result`.
async fn plan(
    store: &DynamoIdempotencyStore,
    routes: &[String],
    events: Vec<(String, ArchivedEvent)>,
    args: &ReplayArgs,
    result: &mut Replayed,
) -> anyhow::Result<Vec<Planned>> {
    let mut plan = Vec::new();
    for (key, record) in events {
        if record.received_at() < result.records_since && !args.force {
            result.refused_too_old += 1;
            continue;
        }
        let mut needed = Vec::new();
        for route in routes {
            let done = store
                .is_completed(&format!("deliver#{}#{route}", record.event_id()))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !done || args.force {
                needed.push((route.clone(), done));
            }
        }
        if needed.is_empty() {
            result.skipped_delivered += 1;
        } else {
            plan.push((key, record, needed));
        }
    }
    Ok(plan)
}

/// Sends one planned event to the events queue for its needed routes (a delivered one, with
/// `--force`, forgotten first so deliver sends it again); as a pointer when too large.
async fn send(
    stack: &Stack,
    (s3, bucket): (&aws_sdk_s3::Client, &str),
    store: &DynamoIdempotencyStore,
    events_url: &str,
    (key, record, needed): Planned,
) -> anyhow::Result<()> {
    for (route, done) in &needed {
        if *done {
            store
                .release(&format!("deliver#{}#{route}", record.event_id()))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let routes = Some(needed.into_iter().map(|(r, _)| r).collect());
    let (mut event, alone) = message(&key, record, routes)?;
    let mut text = serde_json::to_string(&EventMessage::EventV1(event.clone()))?;
    if text.len() > MAX_INLINE_MESSAGE_BYTES {
        // Too large for a message: transform reads it from the archive, as first time; a line
        // is written alone first, as ingest would have.
        let pointer = match alone {
            Some(pointer) => pointer,
            None => keep_alone(s3, bucket, &event).await?,
        };
        event.body = serde_json::Value::Null;
        event.body_ref = Some(pointer);
        text = serde_json::to_string(&EventMessage::EventV1(event))?;
    }
    stack
        .sqs
        .send_message()
        .queue_url(events_url)
        .message_body(text)
        .send()
        .await
        .map_err(failed(format!("sending to {events_url}")))?;
    Ok(())
}

/// The event message a record replays as, and the archive key of the event alone when there
/// is one (a pointer a message too large can carry).
fn message(
    key: &str,
    record: ArchivedEvent,
    routes: Option<Vec<String>>,
) -> anyhow::Result<(EventV1, Option<String>)> {
    let not_json = || format!("{key}: the body is not JSON");
    let (event_id, integration, received_at, headers, body, alone) = match record {
        ArchivedEvent::ArchivedEventV1(r) => {
            let body = r.event_body().with_context(not_json)?;
            (
                r.event_id,
                r.integration,
                r.received_at,
                r.headers,
                body,
                Some(key.to_string()),
            )
        }
        ArchivedEvent::ArchivedEventV2(l) => {
            let body = match &l.body {
                Some(b) => serde_json::from_str(b.get()).with_context(not_json)?,
                None => serde_json::Value::Null,
            };
            (
                l.event_id,
                l.integration,
                l.received_at,
                l.headers,
                body,
                l.body_ref,
            )
        }
    };
    let body_ref = body.is_null().then(|| alone.clone()).flatten();
    let event = EventV1 {
        event_id,
        integration,
        received_at,
        headers,
        body,
        body_ref,
        routes,
        archived: None,
    };
    Ok((event, alone))
}

/// Writes an event alone to the archive (its claim-check object) and answers its key.
async fn keep_alone(s3: &aws_sdk_s3::Client, bucket: &str, e: &EventV1) -> anyhow::Result<String> {
    let key = archive::key(&e.integration, e.received_at, &e.event_id);
    let record = ArchivedEvent::ArchivedEventV1(ArchivedEventV1 {
        event_id: e.event_id.clone(),
        integration: e.integration.clone(),
        received_at: e.received_at,
        headers: e.headers.clone(),
        raw_body: e.body.to_string(),
        body: None,
    });
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(serde_json::to_vec(&record)?.into())
        .send()
        .await
        .map_err(failed(format!("writing {key}")))?;
    Ok(key)
}

/// `switchboard replay`.
pub async fn run(
    args: ReplayArgs,
    stack: super::StackArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let sdk = super::sdk_config().await;
    let r = replay(&Stack::new(&sdk, &stack.stack), &sdk, &args).await?;
    if stack.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} archived event(s) matched: {} replayed, {} skipped (every route delivered){}",
            r.matched,
            r.replayed,
            r.skipped_delivered,
            if args.dry_run {
                "; dry run, nothing sent"
            } else {
                ""
            }
        );
        if r.refused_too_old > 0 {
            println!(
                "{} event(s) refused: received before {}, older than the delivery records (kept {} days), so whether they were delivered is not known; --force sends them (destinations can dedupe by their Idempotency-Key, {{event_id}}:{{route}})",
                r.refused_too_old,
                r.records_since
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                DELIVERY_RECORDS_KEPT.as_secs() / 86_400
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
