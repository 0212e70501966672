//! A local event source mapping: polls a queue in batches the way Lambda's SQS event source
//! mapping does, invokes the handler, deletes what succeeded and leaves the reported failures
//! to come back after the visibility timeout (`ReportBatchItemFailures`). The deliveries
//! queue's pollers share a fair look-ahead (`fair`), as SQS fair queues order its groups.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use lambda_runtime::{Context, LambdaEvent};
use tokio::sync::watch;

pub mod fair;
pub use fair::Fair;

/// The function timeout the local invocations get (the template's).
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(30);

/// One queue's mapping to a handler.
#[derive(Debug, Clone)]
pub struct EventSourceMapping {
    /// The SQS client.
    pub sqs: Client,
    /// The queue polled.
    pub queue_url: String,
    /// Its ARN, as the event's `eventSourceARN`.
    pub queue_arn: String,
    /// A name for progress lines (`transform`, `deliver`).
    pub function: &'static str,
    /// Messages per batch (up to ten a receive; more are received ten at a time while the
    /// queue has them, as Lambda's pollers gather a batch within its window).
    pub batch_size: i32,
    /// The fair look-ahead the queue's pollers share (`fair`), or none: batches as received.
    pub fair: Option<Arc<Fair>>,
    /// While true, nothing is received (`DevStack::hold_pollers`: a backlog builds up, so the
    /// pollers then hand over full batches), or none: never held.
    pub held: Option<watch::Receiver<bool>>,
}

impl EventSourceMapping {
    /// Polls until `stop` turns true.
    pub async fn run<H, F>(self, handler: H, mut stop: watch::Receiver<bool>)
    where
        H: Fn(LambdaEvent<SqsEvent>) -> F,
        F: Future<Output = SqsBatchResponse>,
    {
        let mut held = self.held.clone();
        while !*stop.borrow() {
            if let Some(held) = held.as_mut().filter(|h| *h.borrow()) {
                tokio::select! {
                    _ = held.changed() => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
            let messages = tokio::select! {
                m = self.next_batch() => m,
                _ = stop.changed() => break,
            };
            if messages.is_empty() {
                continue;
            }
            self.invoke(&handler, &messages).await;
            if let Some(fair) = &self.fair {
                fair.done(&messages);
            }
        }
    }

    /// The next batch: as received, or through the fair look-ahead.
    async fn next_batch(&self) -> Vec<Message> {
        let Some(fair) = &self.fair else {
            let mut batch = self.receive(self.batch_size.min(10), 1).await;
            while !batch.is_empty() && batch.len() < self.batch_size as usize {
                let ask = (self.batch_size as usize - batch.len()).min(10);
                let more = self.receive(ask as i32, 0).await;
                let full = more.len() == ask;
                batch.extend(more);
                if !full {
                    break;
                }
            }
            return batch;
        };
        // Receive ahead while the queue has more; long-poll only when there is nothing to do.
        let mut wait = if fair.is_empty() { 1 } else { 0 };
        loop {
            let ask = fair.room().min(10);
            if ask == 0 {
                break;
            }
            let got = self.receive(i32::try_from(ask).unwrap_or(10), wait).await;
            let more = got.len() == ask;
            fair.add(got);
            if !more {
                break;
            }
            wait = 0;
        }
        fair.take(usize::try_from(self.batch_size).unwrap_or(10))
    }

    async fn receive(&self, count: i32, wait_seconds: i32) -> Vec<Message> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(count)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(function = self.function, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "polling failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                Vec::new()
            }
        }
    }

    /// Invokes the handler with one batch, deletes what succeeded and says what happened.
    async fn invoke<H, F>(&self, handler: &H, messages: &[Message])
    where
        H: Fn(LambdaEvent<SqsEvent>) -> F,
        F: Future<Output = SqsBatchResponse>,
    {
        let records: Vec<SqsMessage> = messages.iter().map(|m| self.record(m)).collect();
        let mut event = SqsEvent::default();
        event.records = records;
        let mut context = Context::default();
        context.request_id = ulid::Ulid::new().to_string();
        context.deadline =
            (chrono::Utc::now().timestamp_millis() + FUNCTION_TIMEOUT.as_millis() as i64) as u64;
        let response = handler(LambdaEvent::new(event, context)).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| !failed.contains(&m.message_id().unwrap_or_default()))
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        for m in messages {
            let id = m.message_id().unwrap_or_default();
            let receives = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .map(String::as_str)
                .unwrap_or("1");
            let what = describe(m.body().unwrap_or_default());
            if failed.contains(&id) {
                println!(
                    "  {:<9} {what}: failed on receive {receives}; SQS will retry it",
                    self.function
                );
            } else {
                println!("  {:<9} {what}: done", self.function);
            }
        }
        if !done.is_empty()
            && let Err(e) = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await
        {
            tracing::warn!(function = self.function, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "deleting processed messages failed");
        }
    }

    fn record(&self, m: &aws_sdk_sqs::types::Message) -> SqsMessage {
        let attributes: HashMap<String, String> = m
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut record = SqsMessage::default();
        record.message_id = m.message_id().map(str::to_string);
        record.receipt_handle = m.receipt_handle().map(str::to_string);
        record.body = m.body().map(str::to_string);
        record.md5_of_body = m.md5_of_body().map(str::to_string);
        record.attributes = attributes;
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(self.queue_arn.clone());
        record.aws_region = Some("us-east-1".into());
        record
    }
}

/// `evt_… → route` for a progress line, from a message body.
fn describe(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let event = v["event_id"].as_str().unwrap_or("?");
    match v["route"].as_str() {
        Some(route) => format!("{event} -> {route}"),
        None => event.to_string(),
    }
}
