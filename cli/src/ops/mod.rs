//! The operations commands (`status`, `dlq`, `replay`, `review`, `events`): the same against a deployed stack and against
//! `switchboard dev`, through the standard AWS configuration.
//!
//! Configuration is read as the AWS CLI reads it: `AWS_PROFILE`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` (and the rest of the SDK's chain). For the local stack,
//! `AWS_ENDPOINT_URL=http://127.0.0.1:4566` is enough: with an endpoint on loopback and no
//! credentials configured, the emulator's dummy credentials and `us-east-1` are used.

pub mod dlq;
pub mod events;
pub mod redrive;
pub mod replay;
pub mod review;
pub mod status;

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
    /// CloudWatch (the source queues' age of the oldest message).
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Stack {
    /// The stack called `name`, through `sdk`.
    pub fn new(sdk: &SdkConfig, name: &str) -> Self {
        Self {
            name: name.to_string(),
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        }
    }

    /// The archive bucket: the deployed stack's `ArchiveBucketName` output, or
    /// `{stack}-archive` (`switchboard dev`'s) when there is no such CloudFormation stack.
    pub async fn archive_bucket(&self, cloudformation: &aws_sdk_cloudformation::Client) -> String {
        let described = cloudformation
            .describe_stacks()
            .stack_name(&self.name)
            .send()
            .await;
        described
            .ok()
            .and_then(|out| {
                out.stacks()
                    .first()?
                    .outputs()
                    .iter()
                    .find(|o| o.output_key() == Some("ArchiveBucketName"))?
                    .output_value()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| crate::resources::bucket_name(&self.name))
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
            .map_err(|e| match &e {
                aws_sdk_sqs::error::SdkError::DispatchFailure(_)
                | aws_sdk_sqs::error::SdkError::TimeoutError(_) => anyhow::anyhow!(
                    "cannot reach SQS{}: is the endpoint right (and `switchboard dev` running, for the local stack)? ({})",
                    std::env::var("AWS_ENDPOINT_URL")
                        .map(|u| format!(" at {u}"))
                        .unwrap_or_default(),
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ),
                _ => anyhow::anyhow!(
                    "no queue `{name}`: is `--stack {}` right, and AWS_REGION / AWS_ENDPOINT_URL? ({})",
                    self.name,
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ),
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

/// Reads a DLQ batch by batch without consuming it: each message read is hidden while the
/// command works, so none is read twice, and [`DlqReader::release`] makes visible again every
/// one not deleted. It keeps only the receipt handles and message ids, never the letters: a
/// queue of any size streams through.
#[derive(Debug)]
pub struct DlqReader {
    sqs: aws_sdk_sqs::Client,
    /// The queue's URL.
    pub url: String,
    seen: std::collections::HashSet<String>,
    hidden: Vec<String>,
}

impl DlqReader {
    /// A reader of the queue at `url`.
    pub fn new(sqs: &aws_sdk_sqs::Client, url: &str) -> Self {
        Self {
            sqs: sqs.clone(),
            url: url.to_string(),
            seen: std::collections::HashSet::new(),
            hidden: Vec::new(),
        }
    }

    /// The next batch (up to 10), or None when every message has been read. The batch's
    /// messages stay hidden until [`DlqReader::release`], unless deleted.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<Held>>> {
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .visibility_timeout(HOLD_SECS)
                .wait_time_seconds(0)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(failed(format!("reading {}", self.url)))?;
            let messages = out.messages();
            if messages.is_empty() {
                return Ok(None);
            }
            let mut batch = Vec::with_capacity(messages.len());
            for m in messages {
                let letter = DeadLetterRecord::read(m);
                let receipt = m.receipt_handle().unwrap_or_default().to_string();
                if self.seen.insert(letter.message_id.clone()) {
                    batch.push(Held { letter, receipt });
                } else {
                    // Read again (it outlived the hold): keep its newest receipt only.
                    self.hidden.push(receipt);
                }
            }
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
        }
    }

    /// Keeps `held` hidden until [`DlqReader::release`] makes it visible again.
    pub fn put_back(&mut self, held: Held) {
        self.hidden.push(held.receipt);
    }

    /// How many messages have been read.
    pub fn read(&self) -> usize {
        self.seen.len()
    }

    /// Makes every message put back visible again at once: a read consumes nothing.
    pub async fn release(self) -> anyhow::Result<()> {
        for chunk in self.hidden.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.sqs
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(failed(format!("releasing {}", self.url)))?;
        }
        Ok(())
    }
}

/// A progress line on standard error when it is a terminal (nothing otherwise).
pub fn progress(what: &str) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix} {pos} ({per_sec})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// An AWS call's failure as a sentence: `what` failed, then the SDK's whole error chain.
pub fn failed<E: std::error::Error + 'static>(
    what: impl std::fmt::Display,
) -> impl FnOnce(E) -> anyhow::Error {
    move |e| anyhow::anyhow!("{what}: {}", aws_sdk_sqs::error::DisplayErrorContext(&e))
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

/// `text` in an ANSI colour (`31` red, `32` green, `33` yellow) when standard output is a
/// terminal and `NO_COLOR` is not set; plain otherwise (pipes, files, `--json`).
pub fn paint(text: &str, colour: u8) -> String {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{colour}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Prints rows as an aligned table under `header`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    tinted_table(header, rows, |_, _| None)
}

/// [`table`], with the header in bold and each cell in the colour `tint(column, text)` names
/// (colour only where [`paint`] paints; widths are the plain text's).
pub fn tinted_table(
    header: &[&str],
    rows: &[Vec<String>],
    tint: impl Fn(usize, &str) -> Option<u8>,
) -> String {
    // Cells hold text from outside (reasons, ids, answers): shown, never obeyed.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| shown(c).into_owned()).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>, colour: &dyn Fn(usize, &str) -> Option<u8>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let padded = if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}")
                };
                match colour(i, c) {
                    Some(code) if !c.is_empty() => padded.replacen(c, &paint(c, code), 1),
                    _ => padded,
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec(), &|_, _| Some(1));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect(), &tint));
        out.push('\n');
    }
    out
}

/// Text from outside (a destination's answer, a reason, a note, a header, a body) as a
/// terminal shows it without obeying it: control characters (C0, DEL, C1: escape sequences,
/// carriage returns, line breaks) and the bidirectional marks, embeddings, overrides and
/// isolates (which reorder what follows) are written as `\u{…}` escapes.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, false)
}

/// [`shown`], line breaks kept: for a block Switchboard laid out itself (pretty-printed JSON,
/// whose strings cannot hold a raw line break).
pub fn shown_block(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, true)
}

fn escaped(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod shown_tests {
    use super::*;

    #[test]
    fn what_a_sender_writes_is_shown_not_obeyed() {
        assert_eq!(shown("plain text, é"), "plain text, é");
        assert_eq!(
            shown("ok\u{1b}[2J\rdone\nfake line"),
            "ok\\u{1b}[2J\\u{d}done\\u{a}fake line"
        );
        // A right-to-left override would show `exe.txt` as `txt.exe`.
        assert_eq!(shown("a\u{202e}txt.exe"), "a\\u{202e}txt.exe");
        assert_eq!(shown("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(
            shown_block("{\n  \"a\": \"\u{2066}x\"\n}"),
            "{\n  \"a\": \"\\u{2066}x\"\n}"
        );
    }

    #[test]
    fn a_table_shows_its_cells_escaped() {
        let table = tinted_table(&["a"], &[vec!["x\u{1b}]0;pwned\u{7}".into()]], |_, _| None);
        assert!(
            !table.contains('\u{1b}') && !table.contains('\u{7}'),
            "{table:?}"
        );
        assert!(table.contains("\\u{1b}]0;pwned\\u{7}"), "{table}");
    }
}
