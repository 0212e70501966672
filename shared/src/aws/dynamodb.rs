//! [`IdempotencyStore`] over DynamoDB, the way Powertools for AWS Lambda does it: one
//! conditional PutItem takes the key and returns the old item on conflict.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::aws_error;
use crate::idempotency::{Claim, NewClaim, Record, Status};
use crate::ports::{AwsError, IdempotencyStore};

/// The attribute names, as Powertools spells them.
const KEY: &str = "id";
const STATUS: &str = "status";
const EXPIRATION: &str = "expiration";
const IN_PROGRESS_EXPIRATION: &str = "in_progress_expiration";
const DATA: &str = "data";

/// The idempotency table.
#[derive(Debug, Clone)]
pub struct DynamoIdempotencyStore {
    client: Client,
    table: String,
}

impl DynamoIdempotencyStore {
    /// The table named `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn read(&self, key: &str) -> Result<Option<Record>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", e))?;
        Ok(out.item().and_then(record))
    }
}

fn record(item: &HashMap<String, AttributeValue>) -> Option<Record> {
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let n = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
    };
    Some(Record {
        key: s(KEY)?,
        status: Status::parse(&s(STATUS)?)?,
        expires_at: n(EXPIRATION)?,
        in_progress_expires_at_ms: n(IN_PROGRESS_EXPIRATION),
        data: s(DATA),
    })
}

impl IdempotencyStore for DynamoIdempotencyStore {
    async fn claim(&self, claim: &NewClaim) -> Result<Claim, AwsError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(claim.key.clone()))
            .item(
                STATUS,
                AttributeValue::S(Status::InProgress.as_str().into()),
            )
            .item(EXPIRATION, AttributeValue::N(claim.expires_at.to_string()))
            .item(
                IN_PROGRESS_EXPIRATION,
                AttributeValue::N(claim.in_progress_expires_at_ms.to_string()),
            )
            .condition_expression(
                "attribute_not_exists(#id) OR #expiry < :now \
                 OR (#status = :inprogress AND attribute_exists(#in_progress_expiry) \
                 AND #in_progress_expiry < :now_in_millis)",
            )
            .expression_attribute_names("#id", KEY)
            .expression_attribute_names("#expiry", EXPIRATION)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#in_progress_expiry", IN_PROGRESS_EXPIRATION)
            .expression_attribute_values(
                ":now",
                AttributeValue::N(claim.now.timestamp().to_string()),
            )
            .expression_attribute_values(
                ":now_in_millis",
                AttributeValue::N(claim.now.timestamp_millis().to_string()),
            )
            .expression_attribute_values(
                ":inprogress",
                AttributeValue::S(Status::InProgress.as_str().into()),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(conflict)) => {
                    let existing = match conflict.item().and_then(record) {
                        Some(r) => Some(r),
                        // Older emulators do not return the item: read it.
                        None => self.read(&claim.key).await?,
                    };
                    match existing {
                        Some(r) => Ok(Claim::Exists(r)),
                        // Gone between the put and the read: the caller's retry will take it.
                        None => Err(AwsError {
                            operation: "PutItem",
                            message: "the conflicting idempotency record vanished; retry".into(),
                        }),
                    }
                }
                _ => Err(aws_error("PutItem", e)),
            },
        }
    }

    async fn complete(&self, key: &str, data: &str, expires_at: i64) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .update_expression("SET #status = :completed, #data = :data, #expiry = :expiry REMOVE #in_progress_expiry")
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#data", DATA)
            .expression_attribute_names("#expiry", EXPIRATION)
            .expression_attribute_names("#in_progress_expiry", IN_PROGRESS_EXPIRATION)
            .expression_attribute_values(":completed", AttributeValue::S(Status::Completed.as_str().into()))
            .expression_attribute_values(":data", AttributeValue::S(data.to_string()))
            .expression_attribute_values(":expiry", AttributeValue::N(expires_at.to_string()))
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .send()
            .await
            .map_err(|e| aws_error("DeleteItem", e))?;
        Ok(())
    }
}
