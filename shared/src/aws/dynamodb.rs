//! [`IdempotencyStore`] over DynamoDB: a record read before the work, written once after it
//! with a conditional PutItem (a live COMPLETED record wins). The other state in
//! the same table has its own rooms: `circuits` (each route's circuit), `attempts` (each
//! task's attempt log), the rate limits and the review items here.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use switchboard_core::idempotency::{Record, Status};
use switchboard_core::ports::{IdempotencyStore, PortError, RateLimiter, ReviewStore, slot_order};
use switchboard_core::review::{ReviewItem, ReviewStatus};

use super::aws_error;

mod attempts;
mod circuits;
mod order;

pub use attempts::TaskLog;
pub use circuits::{OpenCircuit, SlowRoute};

/// The attribute names, as Powertools spells them.
const KEY: &str = "id";
const STATUS: &str = "status";
const EXPIRATION: &str = "expiration";
const IN_PROGRESS_EXPIRATION: &str = "in_progress_expiration";
const DATA: &str = "data";
/// A dedupe record's count of the sender's retries answered as duplicates, and the last's time.
const DUPLICATES: &str = "duplicates";
const LAST_DUPLICATE: &str = "last_duplicate_at";

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

    /// Opens the connection to DynamoDB with one cheap call (a GetItem of a key no record
    /// has), for [`super::warm_up`]. `prefix` is one of the function's own key prefixes
    /// (`ingest#`, `deliver#`): its role may read no other key.
    pub fn warm(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send + 'static {
        let call = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(format!("{prefix}warm-up")))
            .projection_expression("id");
        async move {
            call.send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error("GetItem", e))
        }
    }

    async fn read(&self, key: &str) -> Result<Option<Record>, PortError> {
        self.lookup(key, true).await
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
    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .send()
            .await
            .map_err(|e| aws_error("DeleteItem", e))?;
        Ok(())
    }

    async fn lookup(&self, key: &str, consistent: bool) -> Result<Option<Record>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", e))?;
        Ok(out.item().and_then(record))
    }

    async fn record_completed(
        &self,
        key: &str,
        data: &str,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: i64,
    ) -> Result<bool, PortError> {
        let completed = || AttributeValue::S(Status::Completed.as_str().into());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(key.to_string()))
            .item(STATUS, completed())
            .item(DATA, AttributeValue::S(data.to_string()))
            .item(EXPIRATION, AttributeValue::N(expires_at.to_string()))
            .condition_expression(
                "attribute_not_exists(#id) OR #expiry < :now OR #status <> :completed",
            )
            .expression_attribute_names("#id", KEY)
            .expression_attribute_names("#expiry", EXPIRATION)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
            .expression_attribute_values(":completed", completed())
            .send()
            .await;
        conditional("PutItem", result)
    }

    async fn note_duplicate(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .update_expression("SET #d = if_not_exists(#d, :zero) + :one, #last = :now")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#id", KEY)
            .expression_attribute_names("#d", DUPLICATES)
            .expression_attribute_names("#last", LAST_DUPLICATE)
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":now", AttributeValue::S(now.to_rfc3339()))
            .send()
            .await;
        conditional("UpdateItem", result).map(|_| ())
    }
}

impl DynamoIdempotencyStore {
    /// How often the sender posted an accepted event again, and when last (its dedupe
    /// record's count; none when it never did, or the record is gone).
    pub async fn duplicates(&self, key: &str) -> Result<Option<(u64, String)>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_string()))
            .send()
            .await
            .map_err(|e| aws_error("GetItem", e))?;
        let item = out.item().cloned().unwrap_or_default();
        let count = number::<u64>(&item, DUPLICATES);
        let last = item
            .get(LAST_DUPLICATE)
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok(count.zip(last))
    }
}

/// Destination state shares the idempotency table (key `id`, TTL attribute `expiration`):
/// `circuit#{integration}/{route}@{destination}`, `rate#{destination}#{second}`, `slot#{destination}#{n}`
/// (`slot#share@{destination}#{n}`: a destination's share, `share::pool`) and
/// `attempts#{event_id}#{route}` items.
const FAILURES: &str = "failures";
const OPEN_UNTIL: &str = "open_until";
const PROBE_UNTIL: &str = "probe_until";
const OPENED_AT: &str = "opened_at";
const PROBES_FAILED: &str = "probes_failed";
const PROBE_FAILED_AT: &str = "probe_failed_at";
const SLOW_UNTIL: &str = "slow_until";
const COUNT: &str = "n";
const LEASE_UNTIL: &str = "lease_until";
const HISTORY: &str = "history";
const DEAD_LETTERED: &str = "dead_lettered";
const DEAD_LETTER_REASON: &str = "dead_letter_reason";
const NEXT_ATTEMPT: &str = "next_attempt";
const DEAD_LETTER_CLAIM: &str = "dead_letter_claim";
const DEAD_LETTER_LEASE: &str = "dead_letter_lease";
/// How long a circuit record outlives its last change.
const CIRCUIT_TTL_SECS: i64 = 7 * 24 * 3600;

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(k: String) -> AttributeValue {
    AttributeValue::S(k)
}

fn number<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, k: &str) -> Option<T> {
    item.get(k)?.as_n().ok()?.parse().ok()
}

/// A conditional write's result: true when it was made, false when its condition did not hold.
fn conditional<T, E, R>(
    operation: &'static str,
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<bool, PortError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .and_then(|s| s.code())
                .is_some_and(|c| c == "ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(aws_error(operation, e)),
    }
}

fn later(secs: i64) -> AttributeValue {
    n(chrono::Utc::now().timestamp() + secs)
}

impl DynamoIdempotencyStore {
    /// Whether the work under `key` is done (a COMPLETED record that has not expired): for
    /// `switchboard replay`, which skips routes already delivered.
    pub async fn is_completed(&self, key: &str) -> Result<bool, PortError> {
        let now = chrono::Utc::now().timestamp();
        Ok(self.read(key).await?.is_some_and(|r| {
            r.status == switchboard_core::idempotency::Status::Completed && r.expires_at > now
        }))
    }
}

impl RateLimiter for DynamoIdempotencyStore {
    async fn take_rate(&self, destination: &str, second: i64, max: u32) -> Result<bool, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key(format!("rate#{destination}#{second}")))
            .update_expression("ADD #n :one SET #exp = :exp")
            .condition_expression("attribute_not_exists(#n) OR #n < :max")
            .expression_attribute_names("#n", COUNT)
            .expression_attribute_names("#exp", EXPIRATION)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .expression_attribute_values(":exp", n(second + 60))
            .send()
            .await;
        conditional("UpdateItem", result)
    }

    async fn exhaust(
        &self,
        destination: &str,
        from: i64,
        to: i64,
        max: u32,
    ) -> Result<(), PortError> {
        for second in from..=to {
            self.client
                .update_item()
                .table_name(&self.table)
                .key(KEY, key(format!("rate#{destination}#{second}")))
                .update_expression("SET #n = :max, #exp = :exp")
                .expression_attribute_names("#n", COUNT)
                .expression_attribute_names("#exp", EXPIRATION)
                .expression_attribute_values(":max", n(max))
                .expression_attribute_values(":exp", n(second + 60))
                .send()
                .await
                .map_err(|e| aws_error("UpdateItem", e))?;
        }
        Ok(())
    }

    async fn take_slot(
        &self,
        destination: &str,
        max: u32,
        start: u32,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<u32>, PortError> {
        for slot in slot_order(start, max) {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY, key(format!("slot#{destination}#{slot}")))
                .item(LEASE_UNTIL, n(lease_until_ms))
                .item(EXPIRATION, n(lease_until_ms / 1000 + 60))
                .condition_expression("attribute_not_exists(#id) OR #lease < :now")
                .expression_attribute_names("#id", KEY)
                .expression_attribute_names("#lease", LEASE_UNTIL)
                .expression_attribute_values(":now", n(now_ms))
                .send()
                .await;
            if conditional("PutItem", result)? {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    async fn free_slot(&self, destination: &str, slot: u32) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, key(format!("slot#{destination}#{slot}")))
            .send()
            .await
            .map_err(|e| aws_error("DeleteItem", e))?;
        Ok(())
    }
}

/// Review items share the table: `review#{item id}`, the item as JSON in `item`, its status in
/// `review_status` and its creation time in `created_at` (the sparse `reviews` index, which
/// only review items appear in), its `version` for optimistic writes.
const REVIEW_ITEM: &str = "item";
const REVIEW_STATUS: &str = "review_status";
const REVIEW_CREATED: &str = "created_at";
const REVIEW_VERSION: &str = "version";
/// The index `review list` queries.
pub const REVIEWS_INDEX: &str = "reviews";

fn review_key(id: &str) -> AttributeValue {
    AttributeValue::S(format!("review#{id}"))
}

fn review_item(item: &HashMap<String, AttributeValue>) -> Result<ReviewItem, PortError> {
    let text = item
        .get(REVIEW_ITEM)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| PortError {
            operation: "GetItem",
            message: "a review record without its item".into(),
        })?;
    serde_json::from_str(text).map_err(|e| PortError {
        operation: "GetItem",
        message: format!("a review record that does not read: {e}"),
    })
}

impl DynamoIdempotencyStore {
    fn put_review(
        &self,
        item: &ReviewItem,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        #[allow(clippy::expect_used)]
        let json = serde_json::to_string(item).expect("a review item always serializes");
        self.client
            .put_item()
            .table_name(&self.table)
            .item(KEY, review_key(&item.id))
            .item(REVIEW_ITEM, AttributeValue::S(json))
            .item(
                REVIEW_STATUS,
                AttributeValue::S(item.status.as_str().into()),
            )
            .item(
                REVIEW_CREATED,
                AttributeValue::S(item.created_at.to_rfc3339()),
            )
            .item(REVIEW_VERSION, n(item.version))
            .item(EXPIRATION, n(item.ttl()))
    }
}

impl ReviewStore for DynamoIdempotencyStore {
    async fn create_review(&self, item: &ReviewItem) -> Result<bool, PortError> {
        let result = self
            .put_review(item)
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        conditional("PutItem", result)
    }

    async fn review(&self, id: &str) -> Result<Option<ReviewItem>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, review_key(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", e))?;
        out.item().map(review_item).transpose()
    }

    async fn update_review(&self, item: &ReviewItem) -> Result<bool, PortError> {
        let result = self
            .put_review(item)
            .condition_expression("#v = :read")
            .expression_attribute_names("#v", REVIEW_VERSION)
            .expression_attribute_values(":read", n(item.version.saturating_sub(1)))
            .send()
            .await;
        conditional("PutItem", result)
    }

    async fn reviews(&self, status: ReviewStatus) -> Result<Vec<ReviewItem>, PortError> {
        let mut items = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(REVIEWS_INDEX)
            .key_condition_expression("#s = :s")
            .expression_attribute_names("#s", REVIEW_STATUS)
            .expression_attribute_values(":s", AttributeValue::S(status.as_str().into()))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| aws_error("Query", e))?;
            // The index projects keys only on some tables: read the item itself then.
            match review_item(&item) {
                Ok(i) => items.push(i),
                Err(_) => {
                    let id = item
                        .get(KEY)
                        .and_then(|v| v.as_s().ok())
                        .and_then(|k| k.strip_prefix("review#"))
                        .unwrap_or_default()
                        .to_string();
                    if let Some(i) = self.review(&id).await? {
                        items.push(i);
                    }
                }
            }
        }
        items.sort_by_key(|i| i.created_at);
        Ok(items)
    }
}
