//! `switchboard review list|show|approve|edit|reject`: the human review queue. Items are read
//! from the stack's table (the sparse `reviews` index); a decision is recorded on the item
//! with who and when (the verified AWS caller identity: `--by` is only a note, except against
//! the local emulator), and an approved or edited request is
//! queued on the deliveries queue at once, so it goes through the normal deliver path (auth,
//! retries, idempotency). Should that send fail, the decision still holds: the item's timer
//! sends it at its next wake.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use switchboard_core::integration::{Integration, Integrations};
use switchboard_core::ports::ReviewStore as _;
use switchboard_core::principal::{self, Principal};
use switchboard_core::review::record::{Recorded, record};
use switchboard_core::review::{ReviewItem, ReviewStatus};
use switchboard_shared::aws::DynamoIdempotencyStore;

use super::{Stack, StackArgs, confirm, paint, shown, shown_block, tinted_table};

/// The review commands.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// The items waiting for a decision, oldest first (`--status` for decided ones).
    List {
        /// Which items: pending (the default), approved, edited, rejected, expired, or all.
        #[arg(long, default_value = "pending")]
        status: String,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Everything about an item: why it waits, the kept request, the decisions, the archive.
    Show {
        /// The item id (`rv_...`).
        item: String,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Delivers the kept request as it is.
    Approve {
        /// The item id.
        item: String,
        #[command(flatten)]
        decide: Decide,
    },
    /// Delivers an edited body instead, once it satisfies the route's contract.
    Edit {
        /// The item id.
        item: String,
        /// The body to deliver (JSON).
        #[arg(long)]
        file: PathBuf,
        /// The definitions, for the route's contract.
        #[arg(long, default_value = "integrations")]
        integrations: PathBuf,
        #[command(flatten)]
        decide: Decide,
    },
    /// Delivers nothing; the reason is recorded.
    Reject {
        /// The item id.
        item: String,
        /// Why (recorded on the item).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        decide: Decide,
    },
}

/// What every decision takes.
#[derive(Debug, Clone, Args)]
pub struct Decide {
    /// A note of whom the decision is for; the decider is always the verified AWS caller
    /// identity (against `switchboard dev`'s emulator only, this name is the identity).
    #[arg(long)]
    pub by: Option<String>,
    /// Do not ask (a rejection asks first).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub stack: StackArgs,
}

/// Runs one `switchboard review` command.
pub async fn run(command: ReviewCommand) -> anyhow::Result<ExitCode> {
    let sdk = super::sdk_config().await;
    match command {
        ReviewCommand::List { status, stack } => {
            let statuses = match status.as_str() {
                "all" => ReviewStatus::ALL.to_vec(),
                s => vec![parse_status(s)?],
            };
            let items = list(&Stack::new(&sdk, &stack.stack), &statuses).await?;
            if stack.json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else if items.is_empty() {
                println!("no {status} review items in {}", stack.stack);
            } else {
                print!("{}", render_list(&items, chrono::Utc::now()));
            }
            Ok(ExitCode::SUCCESS)
        }
        ReviewCommand::Show { item, stack } => {
            let found = show(&Stack::new(&sdk, &stack.stack), &item).await?;
            if stack.json {
                let mut v = serde_json::to_value(&found)?;
                v["archive_key"] = archive_key(&found).into();
                v["audit_prefix"] = found
                    .request
                    .received_at
                    .map(|at| {
                        switchboard_core::archive::audit_prefix(
                            &found.request.integration,
                            at,
                            &found.request.event_id,
                        )
                    })
                    .into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", render_show(&found));
            }
            Ok(ExitCode::SUCCESS)
        }
        ReviewCommand::Approve { item, decide } => {
            report(&sdk, &item, &decide, Decision::Approve).await
        }
        ReviewCommand::Edit {
            item,
            file,
            integrations,
            decide,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let edit = Decision::Edit {
                body,
                from: file.display().to_string(),
                integrations,
            };
            report(&sdk, &item, &decide, edit).await
        }
        ReviewCommand::Reject {
            item,
            reason,
            decide,
        } => {
            if !confirm(&format!("reject {item} (nothing is delivered)"), decide.yes)? {
                return Ok(ExitCode::FAILURE);
            }
            report(&sdk, &item, &decide, Decision::Reject { reason }).await
        }
    }
}

/// A person's decision on an item.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Deliver the kept request.
    Approve,
    /// Deliver this body instead, once it satisfies the route's contract (read from the
    /// definitions in `integrations`).
    Edit {
        /// The body.
        body: serde_json::Value,
        /// Where it came from (recorded).
        from: String,
        /// The definitions.
        integrations: PathBuf,
    },
    /// Deliver nothing.
    Reject {
        /// Why (recorded).
        reason: String,
    },
}

/// What a decision did.
#[derive(Debug)]
pub struct Decided {
    /// The item as recorded.
    pub item: ReviewItem,
    /// Who decided.
    pub by: String,
    /// For an approval or an edit: whether the request was queued (if not, the item's timer
    /// sends it at its next look).
    pub queued: Option<anyhow::Result<()>>,
}

/// Every item with one of these statuses, oldest first.
pub async fn list(stack: &Stack, statuses: &[ReviewStatus]) -> anyhow::Result<Vec<ReviewItem>> {
    let store = store(stack);
    let mut items = Vec::new();
    for s in statuses {
        items.extend(store.reviews(*s).await.map_err(reading(&stack.name))?);
    }
    items.sort_by_key(|i| i.created_at);
    Ok(items)
}

/// One item.
pub async fn show(stack: &Stack, id: &str) -> anyhow::Result<ReviewItem> {
    find(&store(stack), id, &stack.name).await
}

fn store(stack: &Stack) -> DynamoIdempotencyStore {
    DynamoIdempotencyStore::new(stack.dynamodb.clone(), stack.table())
}

fn parse_status(text: &str) -> anyhow::Result<ReviewStatus> {
    ReviewStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .with_context(|| {
            format!("`{text}` is not a status: pending, approved, edited, rejected, expired or all")
        })
}

fn reading(stack: &str) -> impl Fn(switchboard_core::ports::PortError) -> anyhow::Error + '_ {
    move |e| {
        anyhow::anyhow!(
            "reading {stack}'s review items: {e} (is `--stack {stack}` right, and AWS_REGION / AWS_ENDPOINT_URL?)"
        )
    }
}

async fn find(store: &DynamoIdempotencyStore, id: &str, stack: &str) -> anyhow::Result<ReviewItem> {
    store
        .review(id)
        .await
        .map_err(reading(stack))?
        .with_context(|| {
            format!("no review item {id} in {stack} (`switchboard review list` lists them)")
        })
}

/// Who is deciding, verified: the AWS caller identity as STS answers it (an assumed role is
/// its role; the session name, which the caller chose, is kept as a note). `--by` is a note
/// too, except against the local emulator (`switchboard dev`), where it is the identity.
/// Answers the principal and the note to record with the decision.
async fn who(
    sdk: &aws_config::SdkConfig,
    by: Option<&str>,
) -> anyhow::Result<(Principal, Option<String>)> {
    let local = sdk.endpoint_url().is_some_and(is_loopback);
    if let (true, Some(by)) = (local, by) {
        return Ok((Principal::Local(by.to_string()), None));
    }
    let identity = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "who is deciding? The AWS caller identity could not be read ({}); a decision records the verified caller",
                aws_sdk_sts::error::DisplayErrorContext(&e)
            )
        })?;
    let arn = identity.arn().context("the caller identity has no ARN")?;
    caller(arn, by, local)
}

/// The principal STS's `arn` names and the note a decision keeps (the session name, `--by`).
pub fn caller(
    arn: &str,
    by: Option<&str>,
    local: bool,
) -> anyhow::Result<(Principal, Option<String>)> {
    let principal = match Principal::from_arn(arn) {
        Some(p) => p,
        // moto answers `arn:aws:sts::123456789012:user/moto`, which AWS never does.
        None if local => Principal::Local(arn.to_string()),
        None => anyhow::bail!("the caller `{arn}` is not an IAM user or role: it cannot decide"),
    };
    let mut notes = Vec::new();
    if let Some(session) = principal::session(arn) {
        notes.push(format!("session {session}"));
    }
    if let Some(by) = by {
        notes.push(format!("for {by}"));
    }
    Ok((principal, (!notes.is_empty()).then(|| notes.join("; "))))
}

/// Whether an endpoint URL is the local emulator's (loopback).
fn is_loopback(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    })
}

/// The account the stack is deployed in: its deliveries queue's URL names it.
async fn stack_account(stack: &Stack) -> anyhow::Result<String> {
    let url = stack.queue_url("deliveries").await?;
    url::Url::parse(&url)
        .ok()
        .and_then(|u| u.path_segments()?.next().map(str::to_string))
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
        .with_context(|| format!("no account in the deliveries queue's URL {url}"))
}

/// Records a decision on a pending item, by `by` (or the AWS caller identity), and for an
/// approval or an edit queues the request. A decided item, someone not among its deciders, an
/// edit that breaks the route's contract or a write that lost a race changes nothing.
pub async fn decide(
    sdk: &aws_config::SdkConfig,
    stack: &Stack,
    id: &str,
    by: Option<&str>,
    decision: Decision,
) -> anyhow::Result<Decided> {
    let store = store(stack);
    let mut item = find(&store, id, &stack.name).await?;
    if item.status != ReviewStatus::Pending {
        let last = item.decisions.last().map_or(String::new(), |d| {
            format!(" by {} at {}", d.by, d.at.to_rfc3339())
        });
        anyhow::bail!(
            "{id} is {} already{last}: nothing was changed",
            item.status.as_str()
        );
    }
    let (principal, identity_note) = who(sdk, by).await?;
    let account = stack_account(stack).await?;
    if !item.may_decide(&principal, &account) {
        anyhow::bail!(
            "{principal} may not decide {id}: its route names {} as deciders (exact principals: an IAM user or role ARN, a role name in account {account}, a Slack id)",
            item.deciders.join(", ")
        );
    }
    let by = principal.to_string();
    let (status, note) = match decision {
        Decision::Approve => (ReviewStatus::Approved, None),
        Decision::Edit {
            body,
            from,
            integrations,
        } => {
            contract_holds(&item, &body, &integrations)?;
            item.edited = Some(body);
            (
                ReviewStatus::Edited,
                Some(format!("edited body from {from}")),
            )
        }
        Decision::Reject { reason } => (ReviewStatus::Rejected, Some(reason)),
    };
    let note = match (note, identity_note) {
        (Some(n), Some(i)) => Some(format!("{n} ({i})")),
        (n, i) => n.or(i),
    };
    item.decide(status, &by, chrono::Utc::now(), note);
    item.version += 1;
    let url = stack.queue_url("deliveries").await?;
    let deliveries = switchboard_shared::aws::SqsQueue::new(stack.sqs.clone(), &url);
    let queued = match record(&store, &deliveries, &item)
        .await
        .map_err(reading(&stack.name))?
    {
        Recorded::Changed => anyhow::bail!(
            "{id} changed while you decided (another decision, or its expiry): nothing was changed; look again with `switchboard review show {id}`"
        ),
        Recorded::Written { queued } => {
            queued.map(|q| q.map_err(|e| anyhow::anyhow!("sending to {url}: {e}")))
        }
    };
    Ok(Decided { item, by, queued })
}

/// Decides, then says what happened (a line, or the item as JSON).
async fn report(
    sdk: &aws_config::SdkConfig,
    id: &str,
    args: &Decide,
    decision: Decision,
) -> anyhow::Result<ExitCode> {
    let stack = Stack::new(sdk, &args.stack.stack);
    let Decided { item, by, queued } =
        decide(sdk, &stack, id, args.by.as_deref(), decision).await?;
    if let Some(Err(e)) = &queued {
        let next = chrono::Utc::now()
            + chrono::Duration::from_std(switchboard_core::review::MAX_SLEEP).unwrap_or_default();
        eprintln!(
            "warning: the decision is recorded, but queueing the request failed ({e:#}); deliver sends it when the item's timer next looks (by {})",
            next.to_rfc3339()
        );
    }
    if args.stack.json {
        println!("{}", serde_json::to_string_pretty(&item)?);
    } else {
        let what = match &queued {
            None => "nothing will be delivered".to_string(),
            Some(Ok(())) => format!(
                "queued for delivery to {}/{}",
                item.request.integration, item.request.route
            ),
            Some(Err(_)) => "to be sent at the timer's next look".to_string(),
        };
        println!("{id} {} by {by}: {what}", item.status.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// The edited body must satisfy the route's contract, as transform would have checked it.
fn contract_holds(
    item: &ReviewItem,
    body: &serde_json::Value,
    integrations: &std::path::Path,
) -> anyhow::Result<()> {
    let all: Integrations<Integration> = Integrations::load_dir(integrations)
        .map_err(|e| anyhow::anyhow!("loading the definitions for the route's contract: {e}"))?;
    let request = &item.request;
    let route = all
        .get(&request.integration)
        .and_then(|i| i.routes.iter().find(|r| r.id == request.route))
        .with_context(|| {
            format!(
                "{} has no route {}/{}: is `--integrations` the deployed definitions?",
                integrations.display(),
                request.integration,
                request.route
            )
        })?;
    if let Some(contract) = &route.contract {
        let violations = contract.violations(body);
        if !violations.is_empty() {
            anyhow::bail!(
                "the edited body breaks the route's contract, so nothing was changed: {}",
                switchboard_core::contract::describe(&violations)
            );
        }
    }
    Ok(())
}

/// The batch object holding the event's line (an item of a task written before the batches:
/// where its event was kept alone).
fn archive_key(item: &ReviewItem) -> Option<String> {
    let r = &item.request;
    r.archived.clone().or_else(|| {
        r.received_at
            .map(|at| switchboard_core::archive::key(&r.integration, at, &r.event_id))
    })
}

/// A duration as people say it, to the minute (`3h 20m`, `45s`).
fn ago(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0) as u64;
    let rounded = if secs >= 3600 { secs - secs % 60 } else { secs };
    humantime::format_duration(std::time::Duration::from_secs(rounded)).to_string()
}

fn render_list(items: &[ReviewItem], now: chrono::DateTime<chrono::Utc>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let mut why = i.why.message.clone();
            if why.chars().count() > 60 {
                why = format!("{}…", why.chars().take(59).collect::<String>());
            }
            vec![
                i.id.clone(),
                i.status.as_str().into(),
                format!("{}/{}", i.request.integration, i.request.route),
                i.request.event_id.to_string(),
                ago(now - i.created_at),
                if i.status == ReviewStatus::Pending {
                    format!("in {} ({})", ago(i.expires_at - now), i.on_expiry.as_str())
                } else {
                    "-".into()
                },
                why,
            ]
        })
        .collect();
    tinted_table(
        &[
            "ITEM", "STATUS", "ROUTE", "EVENT", "WAITING", "EXPIRES", "WHY",
        ],
        &rows,
        |column, text| match (column, text) {
            (1, "pending") => Some(33),
            (1, "rejected" | "expired") => Some(31),
            (1, _) => Some(32),
            _ => None,
        },
    )
}

/// One item for a person. Text from outside (why, the destination's answer, the request, its
/// headers, notes) is shown escaped (`shown`): it cannot drive the terminal.
fn render_show(item: &ReviewItem) -> String {
    use std::fmt::Write as _;
    let r = &item.request;
    let mut out = String::new();
    let _ = writeln!(out, "item:        {}", shown(&item.id));
    let _ = writeln!(out, "status:      {}", paint(item.status.as_str(), 1));
    let _ = writeln!(
        out,
        "route:       {}/{}",
        shown(&r.integration),
        shown(&r.route)
    );
    let _ = writeln!(out, "event:       {}", r.event_id);
    let _ = writeln!(
        out,
        "why:         {} ({})",
        shown(&item.why.message),
        shown(&item.why.reason)
    );
    if let Some(answer) = &item.why.answer {
        let _ = writeln!(out, "answer:      {}", shown(answer));
    }
    let _ = writeln!(out, "waiting:     since {}", item.created_at.to_rfc3339());
    let _ = writeln!(
        out,
        "expires:     {} (then: {})",
        item.expires_at.to_rfc3339(),
        item.on_expiry.as_str()
    );
    let deciders = if item.deciders.is_empty() {
        "anyone with access".to_string()
    } else {
        item.deciders.join(", ")
    };
    let _ = writeln!(out, "deciders:    {}", shown(&deciders));
    if let Some(key) = archive_key(item) {
        let _ = writeln!(out, "archive:     {}", shown(&key));
    }
    if let Some(at) = r.received_at {
        let audit = switchboard_core::archive::audit_prefix(&r.integration, at, &r.event_id);
        let _ = writeln!(out, "audit:       {audit} (model interactions, if any)");
    }
    let method = r.method.as_deref().unwrap_or("POST");
    let path = r.path.as_deref().unwrap_or("(the route's URL)");
    let _ = writeln!(out, "request:     {} {}", shown(method), shown(path));
    for (name, value) in &r.headers {
        let _ = writeln!(out, "  {}: {}", shown(name), shown(value));
    }
    let pretty = |v: &serde_json::Value| {
        shown_block(&serde_json::to_string_pretty(v).unwrap_or_default()).into_owned()
    };
    let _ = writeln!(out, "{}", indent(&pretty(&r.body)));
    if let Some(edited) = &item.edited {
        let _ = writeln!(out, "edited body:");
        let _ = writeln!(out, "{}", indent(&pretty(edited)));
    }
    if item.decisions.is_empty() {
        let _ = writeln!(out, "decisions:   none yet");
    } else {
        let _ = writeln!(out, "decisions:");
        for d in &item.decisions {
            let note = d
                .note
                .as_deref()
                .map(|n| format!(": {}", shown(n)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {} by {}{note}",
                d.at.to_rfc3339(),
                shown(&d.action),
                shown(&d.by)
            );
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
