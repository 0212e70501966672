//! `switchboard events show|list`: where is my webhook. One event's whole life from what the
//! pipeline keeps (the archive line with transform's decision, deliver's records, the review
//! item, the circuit: `events/timeline.rs`), and a search of the archive by time, route,
//! status and a JSONata predicate over the body (`events/scan.rs` reads it).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;
use switchboard_core::archive::{ArchivedEvent, ArchivedEventV2, EventOutcome};
use switchboard_core::ids::EventId;
use switchboard_core::integration::{Inbound, Integrations, Outbound};
use switchboard_core::mapping::{Limits, Mapping};
use switchboard_shared::aws::DynamoIdempotencyStore;

use super::{Stack, StackArgs};
use scan::{Archive, Cost};
use timeline::{Lookups, RouteView};

mod render;
pub mod scan;
pub mod timeline;

pub use render::timeline as render_timeline;

/// The events commands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// One event's life: received, what transform decided for each route, each route's
    /// delivery (delivered, waiting with its next attempt, in review, dead-lettered).
    Show {
        /// The event id (`evt_…`); or name it by `--integration` and `--provider-id`.
        event: Option<String>,
        /// The provider's own id of the event (`X-Shopify-Webhook-Id`, `webhook-id`, the
        /// `dedupe` field), with `--integration`: turned into the event id as ingest does.
        #[arg(long, requires = "integration")]
        provider_id: Option<String>,
        /// The integration (default: every one in the archive).
        #[arg(long)]
        integration: Option<String>,
        /// How far back to look (RFC 3339, or a duration ago).
        #[arg(long, default_value = "7d", value_parser = super::dlq::parse_time)]
        since: DateTime<Utc>,
        /// Print the event's body too.
        #[arg(long)]
        body: bool,
        #[command(flatten)]
        from: Reading,
    },
    /// The events of an integration, newest first, one line each.
    List {
        /// The integration.
        #[arg(long)]
        integration: String,
        /// From (RFC 3339, or a duration ago: `2h`).
        #[arg(long, value_parser = super::dlq::parse_time)]
        since: DateTime<Utc>,
        /// Until (default: now).
        #[arg(long, value_parser = super::dlq::parse_time)]
        until: Option<DateTime<Utc>>,
        /// Only events with this route.
        #[arg(long)]
        route: Option<String>,
        /// Only events with a route that is `delivered`, `waiting`, `skipped`, `review` or
        /// `failed`.
        #[arg(long)]
        status: Option<String>,
        /// A JSONata predicate over the event's body (`order_number = 1234`).
        #[arg(long = "where")]
        predicate: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print each event's body too (with `--json`).
        #[arg(long)]
        body: bool,
        #[command(flatten)]
        from: Reading,
    },
}

/// Where the events are read from.
#[derive(Debug, Clone, Args)]
pub struct Reading {
    /// The archive bucket (default: the stack's `ArchiveBucketName` output, or
    /// `{stack}-archive` under `switchboard dev`).
    #[arg(long)]
    pub bucket: Option<String>,
    /// The definitions, for each route's circuit.
    #[arg(long, default_value = "integrations")]
    pub integrations: PathBuf,
    #[command(flatten)]
    pub stack: StackArgs,
}

/// One event as `events show` and `events list --json` say it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    /// The event.
    pub event_id: EventId,
    /// Its integration.
    pub integration: String,
    /// When ingest accepted it.
    pub received_at: DateTime<Utc>,
    /// The headers that travelled with it.
    pub headers: BTreeMap<String, String>,
    /// The archive object holding its line.
    pub archive_key: String,
    /// Lines the archive holds for it (more than one: transform retried it, it was replayed,
    /// or two copies of its webhook raced through ingest).
    pub lines: usize,
    /// The sender's posts of it after the first, answered as duplicates (`events show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<timeline::Duplicates>,
    /// When transform decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// Its fate in transform (`transformed`, `skipped`, `failed`).
    pub outcome: Option<EventOutcome>,
    /// Why, when skipped or dead-lettered whole.
    pub reason: Option<String>,
    /// What came of each enrichment step (called, its recorded answer, skipped, its fallback).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<switchboard_core::archive::StepDecision>,
    /// Each route.
    pub routes: Vec<RouteView>,
    /// Where its model steps' audit records are.
    pub audit_prefix: String,
    /// Its model steps, as their audit records say (`events show`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_steps: Vec<scan::ModelStep>,
    /// Its body, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// What a search read, beside what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Found<T> {
    /// The events.
    pub events: T,
    /// What the archive reads cost.
    pub cost: Cost,
    /// Table reads.
    pub table_reads: u64,
}

/// The stack's archive and table, and the local definitions when they load.
pub async fn open(sdk: &aws_config::SdkConfig, from: &Reading) -> (Archive, Lookups) {
    let stack = Stack::new(sdk, &from.stack.stack);
    let bucket = match &from.bucket {
        Some(b) => b.clone(),
        None => {
            stack
                .archive_bucket(&aws_sdk_cloudformation::Client::new(sdk))
                .await
        }
    };
    let archive = Archive {
        s3: aws_sdk_s3::Client::new(sdk),
        bucket,
    };
    let definitions = Integrations::<Outbound>::load_dir(&from.integrations).ok();
    let store = DynamoIdempotencyStore::new(stack.dynamodb.clone(), stack.table());
    let mut lookups = Lookups::new(store, definitions);
    lookups.sources = Integrations::<Inbound>::load_dir(&from.integrations).ok();
    (archive, lookups)
}

/// The event id a provider's own id names, as ingest derives it.
pub fn event_id_of(integration: &str, provider_id: &str) -> EventId {
    EventId::derived(&ingest::request::dedupe_key(integration, provider_id))
}

/// Finds `event`'s newest line in the archive since `since` (of `integration`, or of every
/// integration there) and says where each of its routes stands.
pub async fn show(
    archive: &Archive,
    lookups: &mut Lookups,
    event: &EventId,
    integration: Option<&str>,
    since: DateTime<Utc>,
    body: bool,
    provider_id: Option<&str>,
) -> anyhow::Result<Found<Option<EventView>>> {
    let mut cost = Cost::default();
    let integrations = match integration {
        Some(i) => vec![i.to_string()],
        None => archive.integrations(&mut cost).await?,
    };
    for integration in integrations {
        // A delivered event's record names its object: one read instead of a scan.
        let keys = match lookups.archived(event, &integration).await? {
            Some(key) => vec![key],
            None => {
                archive
                    .keys(&integration, since, Utc::now(), &mut cost)
                    .await?
            }
        };
        let mut found: Option<(String, ArchivedEventV2)> = None;
        let mut lines = 0;
        for key in keys {
            for record in archive.read(&key, &mut cost).await? {
                if let ArchivedEvent::ArchivedEventV2(line) = record
                    && &line.event_id == event
                {
                    lines += 1;
                    if found
                        .as_ref()
                        .is_none_or(|(_, f)| f.decided_at < line.decided_at)
                    {
                        found = Some((key.clone(), line));
                    }
                }
            }
            // The newest object holding it holds its newest line: the rest of that day is enough.
            if found.is_some() && lines > 0 {
                break;
            }
        }
        if let Some((key, line)) = found {
            let mut view = view(archive, lookups, key, line, lines, body, &mut cost).await?;
            view.model_steps = archive.model_steps(&view.audit_prefix, &mut cost).await?;
            view.duplicates = lookups
                .duplicates(event, &view.integration, &view.headers, provider_id)
                .await?;
            let table_reads = lookups.reads;
            return Ok(Found {
                events: Some(view),
                cost,
                table_reads,
            });
        }
    }
    Ok(Found {
        events: None,
        cost,
        table_reads: lookups.reads,
    })
}

/// An archive line as a view, each route looked up.
async fn view(
    archive: &Archive,
    lookups: &mut Lookups,
    archive_key: String,
    line: ArchivedEventV2,
    lines: usize,
    body: bool,
    cost: &mut Cost,
) -> anyhow::Result<EventView> {
    let mut routes = Vec::with_capacity(line.decision.routes.len());
    for r in &line.decision.routes {
        routes.push(lookups.route(&line.event_id, &line.integration, r).await?);
    }
    let audit_prefix = switchboard_core::archive::audit_prefix(
        &line.integration,
        line.received_at,
        &line.event_id,
    );
    let body = if body {
        archive
            .body(&ArchivedEvent::ArchivedEventV2(line.clone()), cost)
            .await?
    } else {
        None
    };
    Ok(EventView {
        event_id: line.event_id,
        integration: line.integration,
        received_at: line.received_at,
        headers: line.headers,
        archive_key,
        lines,
        duplicates: None,
        decided_at: Some(line.decided_at),
        outcome: Some(line.decision.outcome),
        reason: line.decision.reason.or(line.decision.message),
        steps: line.decision.steps,
        routes,
        audit_prefix,
        model_steps: Vec::new(),
        body,
    })
}

/// What `events list` asks for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The integration.
    pub integration: String,
    /// From.
    pub since: DateTime<Utc>,
    /// Until.
    pub until: DateTime<Utc>,
    /// Only events with this route.
    pub route: Option<String>,
    /// Only events with a route in this state.
    pub status: Option<String>,
    /// A JSONata predicate over the body.
    pub predicate: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// With their bodies.
    pub body: bool,
}

/// `--status`'s words.
const STATUSES: [&str; 5] = ["delivered", "waiting", "skipped", "review", "failed"];

/// The integration's events in the query's span, newest first, that pass its filters; the
/// archive read one object at a time, `progress` told after each.
pub async fn list(
    archive: &Archive,
    lookups: &mut Lookups,
    q: &Query,
    mut progress: impl FnMut(&Cost, usize),
) -> anyhow::Result<Found<Vec<EventView>>> {
    if let Some(s) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        anyhow::bail!("`{s}` is not a status: delivered, waiting, skipped, review or failed");
    }
    let predicate = q
        .predicate
        .as_deref()
        .map(|p| Mapping::parse(p, Limits::default()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--where does not parse: {e}"))?;
    let mut cost = Cost::default();
    let keys = archive
        .keys(&q.integration, q.since, q.until, &mut cost)
        .await?;
    let (mut found, mut seen) = (Vec::new(), HashSet::new());
    'objects: for key in keys {
        let mut lines: Vec<ArchivedEventV2> = archive
            .read(&key, &mut cost)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                ArchivedEvent::ArchivedEventV2(l) => Some(l),
                ArchivedEvent::ArchivedEventV1(_) => None,
            })
            .filter(|l| l.received_at >= q.since && l.received_at < q.until)
            .filter(|l| {
                q.route
                    .as_ref()
                    .is_none_or(|r| l.decision.routes.iter().any(|d| &d.route == r))
            })
            .collect();
        lines.sort_by_key(|l| std::cmp::Reverse(l.received_at));
        for line in lines {
            if !seen.insert(line.event_id.clone()) {
                continue;
            }
            if let Some(p) = &predicate {
                let record = ArchivedEvent::ArchivedEventV2(line.clone());
                let body = archive
                    .body(&record, &mut cost)
                    .await?
                    .unwrap_or(Value::Null);
                if p.evaluate(&body, &[]).ok().flatten() != Some(Value::Bool(true)) {
                    continue;
                }
            }
            let view = view(archive, lookups, key.clone(), line, 1, q.body, &mut cost).await?;
            let wanted = q.status.as_deref().is_none_or(|s| {
                view.routes
                    .iter()
                    .filter(|r| q.route.as_ref().is_none_or(|route| &r.route == route))
                    .any(|r| r.state.status() == s)
            });
            if wanted {
                found.push(view);
                if found.len() >= q.limit {
                    break 'objects;
                }
            }
        }
        progress(&cost, found.len());
    }
    found.sort_by_key(|v| std::cmp::Reverse(v.received_at));
    Ok(Found {
        events: found,
        cost,
        table_reads: lookups.reads,
    })
}

/// Runs one `switchboard events` command.
pub async fn run(command: EventsCommand) -> anyhow::Result<ExitCode> {
    let sdk = super::sdk_config().await;
    match command {
        EventsCommand::Show {
            event,
            provider_id,
            integration,
            since,
            body,
            from,
        } => {
            let event = match (&event, &provider_id, &integration) {
                (Some(e), _, _) => EventId::try_from(e.clone())
                    .map_err(|e| anyhow::anyhow!("not an event id: {e}"))?,
                (None, Some(p), Some(i)) => event_id_of(i, p),
                _ => anyhow::bail!("name the event: `evt_…`, or --integration I --provider-id ID"),
            };
            let (archive, mut lookups) = open(&sdk, &from).await;
            let found = show(
                &archive,
                &mut lookups,
                &event,
                integration.as_deref(),
                since,
                body,
                provider_id.as_deref(),
            )
            .await?;
            render::show(&found, &event, from.stack.json)
        }
        EventsCommand::List {
            integration,
            since,
            until,
            route,
            status,
            predicate,
            limit,
            body,
            from,
        } => {
            let query = Query {
                integration,
                since,
                until: until.unwrap_or_else(Utc::now),
                route,
                status,
                predicate,
                limit: limit.max(1),
                body,
            };
            let (archive, mut lookups) = open(&sdk, &from).await;
            let bar = super::progress("reading the archive");
            let found = list(&archive, &mut lookups, &query, |cost, matched| {
                bar.set_message(format!(
                    "{} object(s), {} event(s) read, {matched} found",
                    cost.objects, cost.events
                ));
            })
            .await
            .context("searching the archive")?;
            bar.finish_and_clear();
            render::list(&found, from.stack.json)
        }
    }
}
