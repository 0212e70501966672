//! Sending dead letters back to their source queue in requests SQS takes: at most ten letters
//! and 1 MiB of bodies in all per SendMessageBatch; one SendMessage per letter when a batch is
//! refused whole. A letter SQS will not take stays in the DLQ and is named.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;
use switchboard_core::batching::by_size;
use switchboard_core::ports::AttemptLog as _;
use switchboard_shared::aws::DynamoIdempotencyStore;

use super::{Held, QueueKind, Stack};

/// A letter that was not sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotSent {
    /// Its event.
    pub event_id: String,
    /// Its route (deliveries).
    pub route: Option<String>,
    /// The size of its body.
    pub bytes: usize,
    /// What SQS said.
    pub why: String,
}

/// What [`send_back`] did with the letters it was given.
#[derive(Debug, Default)]
pub struct SentBack {
    /// Sent: to delete from the DLQ.
    pub sent: Vec<Held>,
    /// Not sent: to leave in the DLQ.
    pub kept: Vec<Held>,
    /// Why each kept letter was not sent.
    pub refused: Vec<NotSent>,
}

/// Sends letters back to their source queue with a fresh retry schedule (a delivery's attempt
/// history is forgotten first, or deliver would dead-letter it again at once). Sent before
/// they are deleted: a failure in between leaves a copy in the DLQ, and the event id dedupes
/// any route already delivered.
pub async fn send_back(
    stack: &Stack,
    store: &DynamoIdempotencyStore,
    kind: QueueKind,
    source: &str,
    batch: Vec<Held>,
) -> anyhow::Result<SentBack> {
    if kind == QueueKind::Deliveries {
        let tasks: Vec<String> = batch
            .iter()
            .filter_map(|h| {
                Some(format!(
                    "{}#{}",
                    h.letter.event_id,
                    h.letter.route.as_ref()?
                ))
            })
            .collect();
        for r in futures::future::join_all(tasks.iter().map(|t| store.reset_attempts(t))).await {
            r.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let sizes: Vec<usize> = batch.iter().map(|h| h.letter.body.len()).collect();
    let mut letters: Vec<Option<Held>> = batch.into_iter().map(Some).collect();
    let mut out = SentBack::default();
    for group in by_size(&sizes) {
        let held: Vec<Held> = letters[group].iter_mut().filter_map(Option::take).collect();
        let refused = match send_batch(stack, source, &held).await {
            Ok(refused) => refused,
            // The request as a whole was refused: one at a time, so only the letters SQS
            // cannot take stay behind.
            Err(_) => send_each(stack, source, &held).await,
        };
        for (i, h) in held.into_iter().enumerate() {
            match refused.iter().find(|(at, _)| *at == i) {
                Some((_, why)) => {
                    out.refused.push(NotSent {
                        event_id: h.letter.event_id.clone(),
                        route: h.letter.route.clone(),
                        bytes: h.letter.body.len(),
                        why: why.clone(),
                    });
                    out.kept.push(h);
                }
                None => out.sent.push(h),
            }
        }
    }
    Ok(out)
}

/// One SendMessageBatch: the entries SQS refused (index, why), or the request's own error.
async fn send_batch(
    stack: &Stack,
    source: &str,
    held: &[Held],
) -> anyhow::Result<Vec<(usize, String)>> {
    let entries = held
        .iter()
        .enumerate()
        .map(|(i, h)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&h.letter.body)
                .set_message_group_id(redrive_group(h))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = stack
        .sqs
        .send_message_batch()
        .queue_url(source)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(super::failed(format!("sending to {source}")))?;
    Ok(out
        .failed()
        .iter()
        .filter_map(|f| {
            let at = f.id().parse().ok()?;
            Some((at, f.message().unwrap_or(f.code()).to_string()))
        })
        .collect())
}

/// A redriven delivery's fair-queue group: its route's, apart from the live traffic's groups
/// (one per destination), so a redrive of thousands does not delay what arrives meanwhile. An
/// event (no route) goes back to the events queue ungrouped, as ingest sends it.
fn redrive_group(h: &Held) -> Option<String> {
    let route = h.letter.route.as_deref()?;
    Some(switchboard_core::envelope::message_group(&format!(
        "redrive:{}/{route}",
        h.letter.integration
    )))
}

/// One SendMessage per letter: those SQS refused (index, why).
async fn send_each(stack: &Stack, source: &str, held: &[Held]) -> Vec<(usize, String)> {
    let mut refused = Vec::new();
    for (i, h) in held.iter().enumerate() {
        let sent = stack
            .sqs
            .send_message()
            .queue_url(source)
            .message_body(&h.letter.body)
            .set_message_group_id(redrive_group(h))
            .send()
            .await;
        if let Err(e) = sent {
            refused.push((i, aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()));
        }
    }
    refused
}
