//! The operations commands (`status`, `dlq`): the same against a deployed stack and against
//! `switchboard dev`, through the standard AWS configuration.
//!
//! Configuration is read as the AWS CLI reads it: `AWS_PROFILE`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` (and the rest of the SDK's chain). For the local stack,
//! `AWS_ENDPOINT_URL=http://127.0.0.1:4566` is enough: with an endpoint on loopback and no
//! credentials configured, the emulator's dummy credentials and `us-east-1` are used.

pub mod dlq;
pub mod replay;
pub mod status;

use std::collections::HashMap;
use std::io::IsTerminal as _;

use anyhow::Context as _;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};
use clap::Args;
use switchboard_shared::aws::DeadLetterRecord;

/// The stack and output arguments every operations command takes.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// The stack's name: the prefix of its queues and table (`{stack}-events`, ...).
    #[arg(long, default_value = "switchboard")]
    pub stack: String,
    /// Print the machine form (JSON) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The SDK configuration from the environment, as the AWS CLI reads it.
pub async fn sdk_config() -> SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let local = endpoint.as_deref().is_some_and(is_loopback_url);
    let configured = ["AWS_ACCESS_KEY_ID", "AWS_PROFILE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if local && !configured {
        // The emulator takes any credentials; give it the ones `switchboard dev` uses.
        loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "switchboard-local",
        ));
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(Region::new("us-east-1"));
        }
    }
    loader.load().await
}

fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

/// Which of the stack's two pipelines a DLQ belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// Events (ingest -> transform); its DLQ holds what transform could not map.
    Events,
    /// Deliveries (transform -> deliver); its DLQ holds what could not be delivered.
    Deliveries,
}

impl QueueKind {
    /// Both, in pipeline order.
    pub const ALL: [QueueKind; 2] = [QueueKind::Events, QueueKind::Deliveries];

    /// `events` or `deliveries`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Events => "events",
            QueueKind::Deliveries => "deliveries",
        }
    }
}

/// A stack's resources, found by name.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Its name.
    pub name: String,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Stack {
    /// The stack called `name`, through `sdk`.
    pub fn new(sdk: &SdkConfig, name: &str) -> Self {
        Self {
            name: name.to_string(),
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
        }
    }

    /// The idempotency table's name.
    pub fn table(&self) -> String {
        format!("{}-idempotency", self.name)
    }

    /// The URL of `{stack}-{suffix}`; a clear error when there is no such queue.
    pub async fn queue_url(&self, suffix: &str) -> anyhow::Result<String> {
        let name = format!("{}-{suffix}", self.name);
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "no queue `{name}`: is `--stack {}` right, and AWS_REGION / AWS_ENDPOINT_URL? ({})",
                    self.name,
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })?;
        out.queue_url()
            .map(str::to_string)
            .context("GetQueueUrl answered no URL")
    }

    /// The source queue and the DLQ of `kind`.
    pub async fn queues(&self, kind: QueueKind) -> anyhow::Result<(String, String)> {
        let source = self.queue_url(kind.as_str()).await?;
        let dlq = self.queue_url(&format!("{}-dlq", kind.as_str())).await?;
        Ok((source, dlq))
    }
}

/// A dead letter taken out of sight while a command works on it.
#[derive(Debug, Clone)]
pub struct Held {
    /// What it says.
    pub letter: DeadLetterRecord,
    /// Its receipt handle: to delete it, or make it visible again.
    pub receipt: String,
}

/// How long read messages stay hidden while a command works; they are made visible again (or
/// deleted) before it returns, and come back by themselves if it dies.
const HOLD_SECS: i32 = 300;

/// Reads every message of `dlq`, hiding each while the command runs, so none is read twice.
/// `on_letter` sees each as it arrives (a table row printed at once).
pub async fn read_all(
    sqs: &aws_sdk_sqs::Client,
    dlq: &str,
    mut on_letter: impl FnMut(&DeadLetterRecord),
) -> anyhow::Result<Vec<Held>> {
    let mut held = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .visibility_timeout(HOLD_SECS)
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "reading {dlq}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })?;
        let messages = out.messages();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let letter = DeadLetterRecord::read(m);
            if !seen.insert(letter.message_id.clone()) {
                continue;
            }
            on_letter(&letter);
            held.push(Held {
                letter,
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(held)
}

/// Makes `held` visible again at once: a read consumes nothing.
pub async fn release(sqs: &aws_sdk_sqs::Client, dlq: &str, held: &[Held]) -> anyhow::Result<()> {
    for chunk in held.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&h.receipt)
                    .visibility_timeout(0)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.change_message_visibility_batch()
            .queue_url(dlq)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "releasing {dlq}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })?;
    }
    Ok(())
}

/// Asks on a terminal before destructive work; without one, `--yes` is required.
pub fn confirm(what: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{what}: not a terminal, so nothing was changed; pass --yes to go ahead");
    }
    eprint!("{what}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Counts by a key, sorted by key.
pub fn count_by<'a>(
    keys: impl Iterator<Item = &'a str>,
) -> std::collections::BTreeMap<String, u64> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for k in keys {
        *counts.entry(k).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Prints rows as an aligned table under `header`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}
