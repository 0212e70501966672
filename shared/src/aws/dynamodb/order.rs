//! Each ordered route key's turn and last delivered version, in the idempotency table
//! (`order#{integration}/{route}#{key}`): who holds the turn and until when, the last version
//! delivered (its JSON), and each change waiting for the turn (an attribute `w:{holder}`:
//! its version's JSON and until when it waits). Kept 30 days after the last change.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use switchboard_core::ports::{OrderStore, PortError, Turn};

use super::{
    DynamoIdempotencyStore, EXPIRATION, KEY, aws_error, conditional, key, later, n, number,
};

const HOLDER: &str = "turn_holder";
const UNTIL: &str = "turn_until";
const LAST: &str = "last_version";
const WAITING: &str = "w:";
/// How long a key's record outlives its last change.
const KEPT_SECS: i64 = 30 * 24 * 3600;

impl OrderStore for DynamoIdempotencyStore {
    async fn take_turn(
        &self,
        turn: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Turn, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("order#{turn}")))
            .update_expression("SET #h = :h, #u = :u, #exp = :exp REMOVE #w")
            .expression_attribute_names("#w", waiting(holder))
            .condition_expression("attribute_not_exists(#h) OR #h = :h OR #u < :now")
            .expression_attribute_names("#h", HOLDER)
            .expression_attribute_names("#u", UNTIL)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":h", AttributeValue::S(holder.to_string()))
            .expression_attribute_values(":u", n(until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":exp", later(KEPT_SECS))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let (won, attributes) = match result {
            Ok(out) => (true, out.attributes().cloned().unwrap_or_default()),
            Err(e) => {
                conditional("UpdateItem", Err::<(), _>(e))?;
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key(KEY, key(format!("order#{turn}")))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| aws_error("GetItem", e))?;
                (false, out.item().cloned().unwrap_or_default())
            }
        };
        if !won {
            return Ok(Turn::Taken {
                until_ms: number(&attributes, UNTIL).unwrap_or(now_ms),
            });
        }
        let last = attributes
            .get(LAST)
            .and_then(|v| v.as_s().ok())
            .and_then(|t| serde_json::from_str(t).ok());
        let waiting = attributes
            .iter()
            .filter(|(name, _)| name.starts_with(WAITING))
            .filter_map(|(_, v)| v.as_s().ok())
            .filter_map(|entry| entry.split_once('|'))
            .filter(|(until, _)| until.parse::<i64>().is_ok_and(|u| u >= now_ms))
            .filter_map(|(_, version)| serde_json::from_str(version).ok())
            .collect();
        Ok(Turn::Mine { last, waiting })
    }

    async fn wait_turn(
        &self,
        turn: &str,
        holder: &str,
        version: &serde_json::Value,
        expires_ms: i64,
    ) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("order#{turn}")))
            .update_expression("SET #w = :w, #exp = :exp")
            .expression_attribute_names("#w", waiting(holder))
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":w", AttributeValue::S(format!("{expires_ms}|{version}")))
            .expression_attribute_values(":exp", later(KEPT_SECS))
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(())
    }

    async fn end_turn(
        &self,
        turn: &str,
        holder: &str,
        delivered: Option<&serde_json::Value>,
    ) -> Result<(), PortError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("order#{turn}")))
            .condition_expression("#h = :h")
            .expression_attribute_names("#h", HOLDER)
            .expression_attribute_names("#u", UNTIL)
            .expression_attribute_values(":h", AttributeValue::S(holder.to_string()));
        update = match delivered {
            Some(v) => update
                .update_expression("SET #l = :l REMOVE #h, #u")
                .expression_attribute_names("#l", LAST)
                .expression_attribute_values(":l", AttributeValue::S(v.to_string())),
            None => update.update_expression("REMOVE #h, #u"),
        };
        conditional("UpdateItem", update.send().await)?;
        Ok(())
    }
}

/// The attribute of a change waiting for its record's turn.
fn waiting(holder: &str) -> String {
    format!("{WAITING}{holder}")
}
