//! Each task's attempt log in the idempotency table (`attempts#{event_id}#{route}`): its
//! history, who claimed its dead letter, and the message it was dead-lettered from.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use switchboard_core::dead_letter::AttemptRecord;
use switchboard_core::ports::{AttemptLog, LetterClaim, PortError};

use super::{
    CIRCUIT_TTL_SECS, DEAD_LETTER_CLAIM, DEAD_LETTER_LEASE, DEAD_LETTER_REASON, DEAD_LETTERED,
    DynamoIdempotencyStore, EXPIRATION, HISTORY, KEY, NEXT_ATTEMPT, aws_error, conditional, key,
    later, n, number,
};

/// A task's log as `switchboard events show` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLog {
    /// Its failed attempts, oldest first.
    pub history: Vec<AttemptRecord>,
    /// When its next attempt is due (Unix ms), once a failed one set a delay.
    pub next_attempt_ms: Option<i64>,
    /// Why it was dead-lettered, when it was (the letter's message id beside).
    pub dead_lettered: Option<(String, String)>,
}

impl DynamoIdempotencyStore {
    /// The task's log (`attempts#{event_id}#{route}`), read consistently; empty when none.
    pub async fn task_log(&self, task: &str) -> Result<TaskLog, PortError> {
        let item = self.attempts_item(task).await?;
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Ok(TaskLog {
            history: history(&item),
            next_attempt_ms: number(&item, NEXT_ATTEMPT),
            dead_lettered: text(DEAD_LETTERED)
                .map(|m| (m, text(DEAD_LETTER_REASON).unwrap_or_default())),
        })
    }

    /// The task's `attempts#` item as stored (empty when there is none), read consistently.
    async fn attempts_item(
        &self,
        task: &str,
    ) -> Result<HashMap<String, AttributeValue>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, key(format!("attempts#{task}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", e))?;
        Ok(out.item().cloned().unwrap_or_default())
    }
}

impl AttemptLog for DynamoIdempotencyStore {
    /// Deletes `attempts#{event_id}#{route}`: a redriven or decided task gets its whole retry
    /// schedule again instead of being dead-lettered at once.
    async fn reset_attempts(&self, task: &str) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, key(format!("attempts#{task}")))
            .send()
            .await
            .map_err(|e| aws_error("DeleteItem", e))?;
        Ok(())
    }

    async fn attempts(
        &self,
        task: &str,
    ) -> Result<(Vec<AttemptRecord>, Option<String>), PortError> {
        let item = self.attempts_item(task).await?;
        let from = item.get(DEAD_LETTERED).and_then(|v| v.as_s().ok()).cloned();
        Ok((history(&item), from))
    }

    async fn claim_dead_letter(
        &self,
        task: &str,
        message_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<LetterClaim, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("attempts#{task}")))
            .update_expression("SET #c = :message, #l = :until, #exp = if_not_exists(#exp, :exp)")
            .condition_expression(
                "(attribute_not_exists(#c) OR (#c = :message AND #l < :now)) \
                 AND (attribute_not_exists(#d) OR #d <> :message)",
            )
            .expression_attribute_names("#d", DEAD_LETTERED)
            .expression_attribute_names("#c", DEAD_LETTER_CLAIM)
            .expression_attribute_names("#l", DEAD_LETTER_LEASE)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":message", AttributeValue::S(message_id.to_string()))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":exp", later(CIRCUIT_TTL_SECS))
            .send()
            .await;
        if conditional("UpdateItem", result)? {
            return Ok(LetterClaim::Won);
        }
        // Taken: by another copy of the task, or by this message on a worker still at it.
        let item = self.attempts_item(task).await?;
        let by = item.get(DEAD_LETTER_CLAIM).and_then(|v| v.as_s().ok());
        let sent = item.get(DEAD_LETTERED).and_then(|v| v.as_s().ok());
        if sent.is_some_and(|s| s == message_id) {
            return Ok(LetterClaim::Sent);
        }
        Ok(match by {
            Some(by) if by == message_id => LetterClaim::Busy {
                until_ms: number(&item, DEAD_LETTER_LEASE).unwrap_or(now_ms),
            },
            _ => LetterClaim::OtherCopy,
        })
    }

    async fn mark_dead_lettered(
        &self,
        task: &str,
        message_id: &str,
        reason: &str,
    ) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("attempts#{task}")))
            .update_expression(
                "SET #d = :message, #r = :reason, #exp = if_not_exists(#exp, :exp) REMOVE #n",
            )
            .expression_attribute_names("#d", DEAD_LETTERED)
            .expression_attribute_names("#r", DEAD_LETTER_REASON)
            .expression_attribute_names("#n", NEXT_ATTEMPT)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":message", AttributeValue::S(message_id.to_string()))
            .expression_attribute_values(":reason", AttributeValue::S(reason.to_string()))
            .expression_attribute_values(":exp", later(CIRCUIT_TTL_SECS))
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(())
    }

    async fn note_next_attempt(&self, task: &str, at_ms: i64) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("attempts#{task}")))
            .update_expression("SET #n = :at, #exp = if_not_exists(#exp, :exp)")
            .expression_attribute_names("#n", NEXT_ATTEMPT)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":at", n(at_ms))
            .expression_attribute_values(":exp", later(CIRCUIT_TTL_SECS))
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(())
    }

    async fn record_attempt(
        &self,
        task: &str,
        attempt: &AttemptRecord,
        expires_at: i64,
    ) -> Result<Vec<AttemptRecord>, PortError> {
        let entry = serde_json::to_string(attempt).map_err(|e| PortError {
            operation: "UpdateItem",
            message: e.to_string(),
        })?;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("attempts#{task}")))
            .update_expression(
                "SET #h = list_append(if_not_exists(#h, :empty), :entry), #exp = :exp",
            )
            .expression_attribute_names("#h", HISTORY)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":entry",
                AttributeValue::L(vec![AttributeValue::S(entry)]),
            )
            .expression_attribute_values(":exp", n(expires_at))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(out.attributes().map(history).unwrap_or_default())
    }
}

/// The attempt history kept in an `attempts#` item.
fn history(item: &HashMap<String, AttributeValue>) -> Vec<AttemptRecord> {
    item.get(HISTORY)
        .and_then(|h| h.as_l().ok())
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_s().ok())
                .filter_map(|s| serde_json::from_str(s).ok())
                .collect()
        })
        .unwrap_or_default()
}
