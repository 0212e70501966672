//! [`Queue`] over Amazon SQS.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use super::aws_error;
use crate::ports::{AwsError, DeadLetter, DeadLetterQueue, Queue, Visibility};

/// SQS caps a message (body and attributes) at 256 KiB; a reason needs far less.
const MAX_REASON_MESSAGE_CHARS: usize = 1024;

/// One SQS queue, by URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// Opens the connection to SQS with one cheap call (GetQueueAttributes: QueueArn), for
    /// [`super::warm_up`].
    pub fn warm(&self) -> impl Future<Output = Result<(), AwsError>> + Send + 'static {
        let call = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn);
        async move {
            call.send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error("GetQueueAttributes", e))
        }
    }
}

impl Queue for SqsQueue {
    async fn send(&self, bodies: &[String]) -> Result<(), AwsError> {
        if let [body] = bodies {
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(body)
                .send()
                .await
                .map_err(|e| aws_error("SendMessage", e))?;
            return Ok(());
        }
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| aws_error("SendMessageBatch", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_error("SendMessageBatch", e))?;
            if let Some(failed) = out.failed().first() {
                return Err(AwsError {
                    operation: "SendMessageBatch",
                    message: format!(
                        "{} of {} entries failed, first: {} {}",
                        out.failed().len(),
                        chunk.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl Visibility for SqsQueue {
    async fn delay(&self, receipt_handle: &str, by: std::time::Duration) -> Result<(), AwsError> {
        let secs = i32::try_from(by.as_secs()).unwrap_or(i32::MAX).min(43_200);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| aws_error("ChangeMessageVisibility", e))?;
        Ok(())
    }
}

impl DeadLetterQueue for SqsQueue {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), AwsError> {
        let attribute = |data_type: &str, value: &str| {
            MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .map_err(|e| aws_error("SendMessage", e))
        };
        let message: String = letter
            .message
            .chars()
            .take(MAX_REASON_MESSAGE_CHARS)
            .collect();
        let failed_at = chrono::Utc::now().to_rfc3339();
        let attempts = letter.attempts.to_string();
        let last_status = letter
            .last_status
            .map(|s| s.to_string())
            .unwrap_or_default();
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(&letter.body)
            .message_attributes("attempts", attribute("Number", &attempts)?);
        // SQS refuses empty attribute values: what is unknown is left out.
        for (name, value) in [
            ("reason", letter.reason),
            ("message", message.as_str()),
            ("integration", letter.integration.as_str()),
            ("event_id", letter.event_id.as_str()),
            ("route", letter.route.as_deref().unwrap_or_default()),
            ("failed_at", failed_at.as_str()),
            ("last_status", last_status.as_str()),
            ("history", letter.history.as_deref().unwrap_or_default()),
        ] {
            if !value.is_empty() {
                request = request.message_attributes(name, attribute("String", value)?);
            }
        }
        request
            .send()
            .await
            .map_err(|e| aws_error("SendMessage", e))?;
        Ok(())
    }
}
