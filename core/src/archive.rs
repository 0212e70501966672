//! The archive record of an accepted event, and where it is kept: every accepted event is
//! written to `{integration}/{yyyy}/{mm}/{dd}/{event_id}`; bodies too large for a queue message
//! travel as a pointer to it (claim check).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::EventId;

/// Messages larger than this travel as a pointer to the archive: an event (ingest, replay) and
/// a task (transform). SQS takes 1 MiB per message since August 2025 (the template sets
/// `MaximumMessageSize` to it, a test holds them together); 64 KiB are kept for the attributes
/// a dead letter adds to the same body (reason, message, history: see
/// `dead_letter::MAX_HISTORY_BYTES`).
pub const MAX_INLINE_MESSAGE_BYTES: usize = crate::batching::MAX_REQUEST_BYTES - 64 * 1024;

/// One archived event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ArchivedEvent {
    /// Version 1.
    ArchivedEventV1(ArchivedEventV1),
}

/// Version 1 of the archive record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedEventV1 {
    /// The event.
    pub event_id: EventId,
    /// The integration it arrived for.
    pub integration: String,
    /// When ingest accepted it.
    pub received_at: DateTime<Utc>,
    /// The request headers, less credentials and signatures.
    pub headers: BTreeMap<String, String>,
    /// The bytes received, exactly (ingest refuses bodies that are not UTF-8).
    pub raw_body: String,
    /// The event's JSON body as transform maps it, when it is not simply `raw_body` parsed:
    /// one element of a split request, or a form body read as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

impl ArchivedEventV1 {
    /// The JSON body transform maps.
    pub fn event_body(&self) -> Result<serde_json::Value, serde_json::Error> {
        match &self.body {
            Some(body) => Ok(body.clone()),
            None => serde_json::from_str(&self.raw_body),
        }
    }
}

/// Where the audit records of an event's model steps are kept, beside its archived event:
/// `audit/{integration}/{yyyy}/{mm}/{dd}/{event_id}/` (one `{step}.json` per model step).
pub fn audit_prefix(integration: &str, received_at: DateTime<Utc>, event_id: &EventId) -> String {
    format!(
        "audit/{integration}/{}/{event_id}/",
        received_at.format("%Y/%m/%d")
    )
}

/// The audit record of an event's model step `step` (under [`audit_prefix`]).
pub fn audit_key(
    integration: &str,
    received_at: DateTime<Utc>,
    event_id: &EventId,
    step: &str,
) -> String {
    format!(
        "{}{step}.json",
        audit_prefix(integration, received_at, event_id)
    )
}

/// Where a task too large for a message is kept until deliver reads it:
/// `tasks/{integration}/{yyyy}/{mm}/{dd}/{event_id}/{route}.json`. Only transform writes here.
pub fn task_key(
    integration: &str,
    received_at: DateTime<Utc>,
    event_id: &EventId,
    route: &str,
) -> String {
    format!(
        "tasks/{integration}/{}/{event_id}/{route}.json",
        received_at.format("%Y/%m/%d")
    )
}

/// The archive key of an event.
pub fn key(integration: &str, received_at: DateTime<Utc>, event_id: &EventId) -> String {
    format!(
        "{integration}/{}/{event_id}",
        received_at.format("%Y/%m/%d")
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn keys_are_partitioned_by_integration_and_day() {
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 0).unwrap();
        let id = EventId::try_from("evt_01ABC".to_string()).unwrap();
        assert_eq!(key("shop", at, &id), "shop/2026/03/07/evt_01ABC");
    }
}
