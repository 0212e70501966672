//! `switchboard status`: the pipeline at a glance: each queue's depth, the dead letters by
//! reason, the open circuits. It consumes nothing.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;
use switchboard_shared::aws::{DynamoIdempotencyStore, OpenCircuit, SlowRoute};

use super::{DlqReader, QueueKind, Stack, failed, paint, table, tinted_table};

/// One queue's depth.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages waiting.
    pub visible: u64,
    /// Messages received and not yet deleted (being worked on, or waiting out a retry delay).
    pub in_flight: u64,
    /// Messages sent with a delay.
    pub delayed: u64,
    /// Seconds since the oldest message was sent: the DLQs' from the letters themselves, the
    /// source queues' from CloudWatch's `ApproximateAgeOfOldestMessage` (its last minute with a
    /// datapoint in the last ten; none where CloudWatch has none, as under the emulator).
    pub oldest_age_secs: Option<i64>,
}

/// The dead letters of one DLQ.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetters {
    /// How many.
    pub total: u64,
    /// How many per reason.
    pub by_reason: BTreeMap<String, u64>,
}

/// What `status --json` prints.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Each queue by name (`events`, `events-dlq`, `deliveries`, `deliveries-dlq`).
    pub queues: BTreeMap<String, QueueDepth>,
    /// Each DLQ's letters (`events`, `deliveries`).
    pub dead_letters: BTreeMap<String, DeadLetters>,
    /// Circuits open now.
    pub circuits: Vec<OpenCircuit>,
    /// Routes whose destination is marked slow now: held to their share of deliver.
    pub slow: Vec<SlowRoute>,
}

async fn depth(stack: &Stack, url: &str) -> anyhow::Result<QueueDepth> {
    let out = stack
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(failed(url))?;
    let get = |name: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(QueueDepth {
        visible: get(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        oldest_age_secs: None,
    })
}

/// CloudWatch's `ApproximateAgeOfOldestMessage` of `queue` (its name), the latest minute of the
/// last ten that has a datapoint. SQS has no API for it; without CloudWatch data, None.
async fn oldest_age(stack: &Stack, queue: &str) -> Option<i64> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let now = std::time::SystemTime::now();
    let out = stack
        .cloudwatch
        .get_metric_statistics()
        .namespace("AWS/SQS")
        .metric_name("ApproximateAgeOfOldestMessage")
        .dimensions(Dimension::builder().name("QueueName").value(queue).build())
        .start_time(DateTime::from(now - std::time::Duration::from_secs(600)))
        .end_time(DateTime::from(now))
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .ok()?;
    out.datapoints()
        .iter()
        .filter_map(|d| Some((d.timestamp()?.secs(), d.maximum()?)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, age)| age as i64)
}

/// How many messages a queue holds (visible and in flight), approximately.
pub async fn queue_depth(stack: &Stack, url: &str) -> anyhow::Result<u64> {
    let d = depth(stack, url).await?;
    Ok(d.visible + d.in_flight)
}

/// Reads the stack's state.
pub async fn status(stack: &Stack) -> anyhow::Result<Status> {
    let mut queues = BTreeMap::new();
    let mut dead_letters = BTreeMap::new();
    let now = chrono::Utc::now();
    for kind in QueueKind::ALL {
        let (source, dlq) = stack.queues(kind).await?;
        let mut source_depth = depth(stack, &source).await?;
        source_depth.oldest_age_secs =
            oldest_age(stack, &format!("{}-{}", stack.name, kind.as_str())).await;
        queues.insert(kind.as_str().to_string(), source_depth);
        let mut dlq_depth = depth(stack, &dlq).await?;
        // Read (and put back) to count by reason.
        let mut reader = DlqReader::new(&stack.sqs, &dlq);
        let mut letters = DeadLetters {
            total: 0,
            by_reason: BTreeMap::new(),
        };
        let mut oldest: Option<i64> = None;
        while let Some(batch) = reader.next().await? {
            for h in batch {
                letters.total += 1;
                *letters
                    .by_reason
                    .entry(h.letter.reason.clone())
                    .or_default() += 1;
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&h.letter.failed_at) {
                    let age = (now - t.with_timezone(&chrono::Utc)).num_seconds();
                    oldest = Some(oldest.map_or(age, |o| o.max(age)));
                }
                reader.put_back(h);
            }
        }
        reader.release().await?;
        dlq_depth.oldest_age_secs = oldest;
        // Before this read the letters were visible: count them as such.
        dlq_depth.visible = dlq_depth.visible.max(letters.total);
        queues.insert(format!("{}-dlq", kind.as_str()), dlq_depth);
        dead_letters.insert(kind.as_str().to_string(), letters);
    }
    let store = DynamoIdempotencyStore::new(stack.dynamodb.clone(), stack.table());
    let (circuits, slow) = store
        .open_circuits(now.timestamp_millis())
        .await
        .map_err(|e| anyhow::anyhow!("reading the circuits of {}: {e}", stack.table()))?;
    Ok(Status {
        queues,
        dead_letters,
        circuits,
        slow,
    })
}

/// The table a person reads.
pub fn render(s: &Status) -> String {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let rows: Vec<Vec<String>> = s
        .queues
        .iter()
        .map(|(name, d)| {
            vec![
                name.clone(),
                d.visible.to_string(),
                d.in_flight.to_string(),
                d.delayed.to_string(),
                d.oldest_age_secs
                    .map(|a| format!("{a}s"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = tinted_table(
        &["queue", "visible", "in flight", "delayed", "oldest"],
        &rows,
        |column, cell| (column == 1 && cell != "0").then_some(33),
    );
    for (queue, letters) in &s.dead_letters {
        let line = format!("{queue} DLQ: {} dead letter(s)", letters.total);
        let colour = if letters.total == 0 { 32 } else { 31 };
        out.push_str(&format!("\n{}\n", paint(&line, colour)));
        for (reason, n) in &letters.by_reason {
            out.push_str(&format!("  {reason:<24} {n}\n"));
        }
    }
    out.push_str(&circuits(&s.circuits, now_ms));
    if !s.slow.is_empty() {
        out.push_str(&slow_routes(&s.slow, now_ms));
    }
    out
}

/// The open circuits, or a line saying there is none.
fn circuits(circuits: &[OpenCircuit], now_ms: i64) -> String {
    if circuits.is_empty() {
        return format!("\n{}\n", paint("no circuit open", 32));
    }
    let mut out = format!(
        "\n{}\n",
        paint(&format!("{} circuit(s) open", circuits.len()), 31)
    );
    let rows: Vec<Vec<String>> = circuits
        .iter()
        .map(|c| {
            let open_for = c
                .opened_at_ms
                .map(|at| format!("{}s", (now_ms - at).max(0) / 1000))
                .unwrap_or_default();
            vec![
                c.circuit.clone(),
                c.failures.to_string(),
                open_for,
                c.probes_failed.to_string(),
                chrono::DateTime::from_timestamp_millis(c.open_until_ms)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "open circuit (integration/route@destination)",
            "failures",
            "open for",
            "probes failed",
            "until",
        ],
        &rows,
    ));
    out
}

/// The routes marked slow, held to their share of deliver, and for how much longer.
fn slow_routes(slow: &[SlowRoute], now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = slow
        .iter()
        .map(|r| {
            let left = (r.slow_until_ms - now_ms).max(0) / 1000;
            vec![r.circuit.clone(), format!("{left}s")]
        })
        .collect();
    let heading = format!(
        "{} route(s) slow: held to their share of deliver",
        slow.len()
    );
    format!(
        "\n{}\n{}",
        paint(&heading, 33),
        table(
            &["slow route (integration/route@destination)", "marked for"],
            &rows,
        )
    )
}

/// `switchboard status`.
pub async fn run(stack: super::StackArgs) -> anyhow::Result<std::process::ExitCode> {
    let sdk = super::sdk_config().await;
    let s = status(&Stack::new(&sdk, &stack.stack)).await?;
    if stack.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", render(&s));
    }
    Ok(std::process::ExitCode::SUCCESS)
}
