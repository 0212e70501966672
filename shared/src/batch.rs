//! What the SQS-triggered functions (transform, deliver) share about a batch.

use std::future::Future;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use switchboard_core::ports::NotDeadLettered;
use tracing::Instrument;

/// The receive count SQS reports for a message (1 when it does not say).
pub fn receive_count(attributes: &std::collections::HashMap<String, String>) -> u32 {
    attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1)
}

/// Why a message goes back to its queue for SQS to hand out again: the SQS handlers' only
/// error. What cannot succeed on a retry is dead-lettered (Ok), never an error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandBack {
    /// Waiting on purpose (a retry's delay, an open circuit, a rate limit, the deadline,
    /// another worker's claim): its visibility says when it comes back.
    #[error("{0}")]
    Waiting(String),
    /// A dependency failed (the table, the archive, a queue, an enrichment API): retried.
    #[error("{0}")]
    Unavailable(String),
    /// Its dead letter could not be written: retried, so nothing is lost.
    #[error(transparent)]
    NotDeadLettered(#[from] NotDeadLettered),
}

/// Runs an SQS-triggered Lambda: each batch through `handle`, its partial batch response
/// back to the runtime.
pub async fn serve<Fut>(
    handle: impl Fn(LambdaEvent<SqsEvent>) -> Fut,
) -> Result<(), lambda_runtime::Error>
where
    Fut: Future<Output = SqsBatchResponse>,
{
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        let response = handle(event);
        async move { Ok::<_, lambda_runtime::Error>(response.await) }
    }))
    .await
}

/// The invocation's deadline (ms since the epoch) from the Lambda context's, None when unset
/// (locally).
pub fn deadline_ms(context_deadline: u64) -> Option<i64> {
    i64::try_from(context_deadline).ok().filter(|d| *d > 0)
}

/// Runs `process` over every message of a batch concurrently, each in a span naming `what`
/// and its message id, and answers SQS's partial batch response: the messages `process`
/// handed back are retried by SQS (logged with why: a wait at info, a failure at warn), the
/// rest deleted.
pub async fn settle_each<'a, Fut>(
    what: &'static str,
    records: &'a [SqsMessage],
    process: impl Fn(&'a SqsMessage) -> Fut,
) -> SqsBatchResponse
where
    Fut: Future<Output = Result<(), HandBack>>,
{
    settle_indexed(what, records, |_, m| process(m)).await
}

/// [`settle_each`], with each message's index in the batch.
pub async fn settle_indexed<'a, Fut>(
    what: &'static str,
    records: &'a [SqsMessage],
    process: impl Fn(usize, &'a SqsMessage) -> Fut,
) -> SqsBatchResponse
where
    Fut: Future<Output = Result<(), HandBack>>,
{
    let results = futures::future::join_all(records.iter().enumerate().map(|(i, m)| {
        let id = m.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("message", what, message_id = %id);
        let done = process(i, m);
        async move {
            let result = done.await;
            match &result {
                Ok(()) => {}
                Err(e @ HandBack::Waiting(_)) => {
                    tracing::info!(message_id = %id, reason = %e, "{what} handed back");
                }
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "{what} failed; SQS will retry")
                }
            }
            (id, result.is_ok())
        }
        .instrument(span)
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (id, ok) in results {
        if !ok {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_messages_handed_back_are_reported() {
        let records: Vec<SqsMessage> = ["a", "b", "c"]
            .iter()
            .map(|id| {
                let mut m = SqsMessage::default();
                m.message_id = Some(id.to_string());
                m
            })
            .collect();
        let response = settle_each("test", &records, |m| async move {
            match m.message_id.as_deref() {
                Some("b") => Err(HandBack::Waiting("later".into())),
                _ => Ok(()),
            }
        })
        .await;
        let ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["b"]);
        assert_eq!(deadline_ms(0), None);
        assert_eq!(deadline_ms(1_700_000_000_000), Some(1_700_000_000_000));
    }
}
