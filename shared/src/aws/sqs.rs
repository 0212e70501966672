//! [`Queue`] over Amazon SQS.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use super::aws_error;
use switchboard_core::dead_letter::DeadLetter;
use switchboard_core::ports::{DeadLetterQueue, Outgoing, PortError, Queue, Unsent, Visibility};

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
    pub fn warm(&self) -> impl Future<Output = Result<(), PortError>> + Send + 'static {
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
    async fn send(&self, messages: &[Outgoing]) -> Result<(), PortError> {
        self.send_each(messages)
            .await
            .map_err(|unsent| unsent.error)
    }

    async fn send_each(&self, messages: &[Outgoing]) -> Result<(), Unsent> {
        if let [message] = messages {
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(&message.body)
                .set_message_group_id(message.group.clone())
                .send()
                .await
                .map_err(|e| Unsent {
                    error: aws_error("SendMessage", e),
                    failed: vec![0],
                })?;
            return Ok(());
        }
        // Ten bodies and 1 MiB in all per request; a request's failure, or an entry's, is
        // that message's alone.
        let (mut failed, mut first) = (Vec::new(), None);
        for group in switchboard_core::batching::by_size(
            &messages.iter().map(|m| m.body.len()).collect::<Vec<_>>(),
        ) {
            let offset = group.start;
            if let Err((error, entries)) = self.send_batch(&messages[group]).await {
                failed.extend(entries.into_iter().map(|i| offset + i));
                first.get_or_insert(error);
            }
        }
        match first {
            None => Ok(()),
            Some(error) => Err(Unsent { error, failed }),
        }
    }
}

impl SqsQueue {
    /// One SendMessageBatch; on failure, the error and the chunk's indexes not sent.
    async fn send_batch(&self, chunk: &[Outgoing]) -> Result<(), (PortError, Vec<usize>)> {
        let all = || (0..chunk.len()).collect::<Vec<_>>();
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&message.body)
                    .set_message_group_id(message.group.clone())
                    .build()
                    .map_err(|e| (aws_error("SendMessageBatch", e), all()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| (aws_error("SendMessageBatch", e), all()))?;
        let Some(first) = out.failed().first() else {
            return Ok(());
        };
        let error = PortError {
            operation: "SendMessageBatch",
            message: format!(
                "{} of {} entries failed, first: {} {}",
                out.failed().len(),
                chunk.len(),
                first.code(),
                first.message().unwrap_or_default()
            ),
        };
        let mut failed: Vec<usize> = out
            .failed()
            .iter()
            .map(|f| f.id().parse().unwrap_or(usize::MAX))
            .collect();
        if failed.contains(&usize::MAX) {
            failed = all(); // an id we did not give: count the whole chunk as unsent
        }
        failed.sort_unstable();
        Err((error, failed))
    }
}

impl Visibility for SqsQueue {
    async fn delay(&self, receipt_handle: &str, by: std::time::Duration) -> Result<(), PortError> {
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
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), PortError> {
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
            ("reason", letter.reason.as_str()),
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

/// A dead letter as read back from its DLQ: exactly the attributes [`DeadLetterQueue`] wrote
/// (absent for a message the redrive policy moved: its reason is then `redrive_policy`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetterRecord {
    /// SQS's id of this copy.
    pub message_id: String,
    /// The event.
    pub event_id: String,
    /// The integration.
    pub integration: String,
    /// The route at fault, when one is.
    pub route: Option<String>,
    /// Why: the [`switchboard_core::reason::Reason`] written with it (kept as text: a letter written by
    /// another version may carry one this one does not know).
    pub reason: String,
    /// What went wrong, for a human.
    pub message: String,
    /// The destination's last answer.
    pub last_status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// When it was dead-lettered (RFC 3339): `failed_at`, else when SQS got it.
    pub failed_at: String,
    /// The attempt history (JSON), when there is one.
    #[serde(skip)]
    pub history: Option<String>,
    /// The body (what a redrive sends back).
    #[serde(skip)]
    pub body: String,
}

impl DeadLetterRecord {
    /// Reads a received DLQ message's attributes.
    pub fn read(m: &aws_sdk_sqs::types::Message) -> Self {
        let attribute = |name: &str| {
            m.message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_string)
        };
        let body = m.body().unwrap_or_default().to_string();
        let sent_at = m
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339());
        // A letter without attributes: what the body says of itself (a message is tagged
        // internally: `{"type": "DeliveryV1", "event_id": …, "route": …}`).
        let envelope: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let from_body = |key: &str| envelope[key].as_str().map(str::to_string);
        Self {
            message_id: m.message_id().unwrap_or_default().to_string(),
            event_id: attribute("event_id")
                .or_else(|| from_body("event_id"))
                .unwrap_or_default(),
            integration: attribute("integration")
                .or_else(|| from_body("integration"))
                .unwrap_or_default(),
            route: attribute("route").or_else(|| from_body("route")),
            // None written: SQS's redrive policy moved it (no function settled it).
            reason: attribute("reason")
                .unwrap_or_else(|| switchboard_core::reason::Reason::RedrivePolicy.as_str().to_string()),
            message: attribute("message").unwrap_or_default(),
            last_status: attribute("last_status").and_then(|s| s.parse().ok()),
            attempts: attribute("attempts")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    m.attributes()
                        .and_then(|a| {
                            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                        })
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                }),
            failed_at: attribute("failed_at").or(sent_at).unwrap_or_default(),
            history: attribute("history"),
            body,
        }
    }
}
