//! Idempotency records: COMPLETED with the result once the work is done (ingest's dedupe
//! record, deliver's `deliver#` record), each read before the work and written once after it
//! with a conditional put. INPROGRESS is what earlier versions wrote while the work ran; such a
//! record never counts as done.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long a delivery's records (`deliver#` completion, `attempts#` history) are kept. Within
/// it a replay knows which routes of an event were delivered; past it, it cannot tell, and
/// `switchboard replay` refuses such events unless `--force`. Kept short on purpose: at a
/// billion events a month a record kept as long as the archive (90 days) would cost about
/// $0.19 per million events in DynamoDB storage, 13x this.
pub const DELIVERY_RECORDS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What deliver's completion record (`deliver#{event_id}#{route}`) says of the delivery, in
/// its `data` (JSON): when, the destination's status, how long the call took, on which receive
/// of the task, where the event is archived. Written with the record (no write of its own);
/// `switchboard events show` reads it. Earlier versions wrote the text `delivered`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivered {
    /// When the destination took it.
    pub at: DateTime<Utc>,
    /// Its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the call took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The task's receive count when it was delivered (waits and retries before it included).
    pub receives: u32,
    /// The archive object holding the event's line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    /// Not sent: an older change than the last delivered for its record (`ordering`), why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
}

/// Where a record's work stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Someone is doing the work now.
    InProgress,
    /// The work is done; `data` holds its result.
    Completed,
}

impl Status {
    /// The value stored in the table (Powertools' spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "INPROGRESS",
            Status::Completed => "COMPLETED",
        }
    }

    /// Reads a stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "INPROGRESS" => Some(Status::InProgress),
            "COMPLETED" => Some(Status::Completed),
            _ => None,
        }
    }
}

/// One record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `ingest#{integration}#{provider event id}` or `deliver#{event_id}#{route}`.
    pub key: String,
    /// Where the work stands.
    pub status: Status,
    /// When the record stops counting (Unix seconds; the table's TTL attribute).
    pub expires_at: i64,
    /// When an INPROGRESS claim lapses, so a crashed worker does not block forever (Unix ms).
    pub in_progress_expires_at_ms: Option<i64>,
    /// The result of the completed work.
    pub data: Option<String>,
}

impl Record {
    /// Whether the record still blocks a new claim at `now`, as the conditional put judges it.
    pub fn blocks(&self, now: DateTime<Utc>) -> bool {
        if self.expires_at < now.timestamp() {
            return false;
        }
        match (self.status, self.in_progress_expires_at_ms) {
            (Status::InProgress, Some(until)) => until >= now.timestamp_millis(),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn what_blocks_a_new_claim() {
        let now = Utc.timestamp_opt(1_000, 0).unwrap();
        let rec = |status, expires_at, ip: Option<i64>| Record {
            key: "k".into(),
            status,
            expires_at,
            in_progress_expires_at_ms: ip,
            data: None,
        };
        assert!(rec(Status::Completed, 2_000, None).blocks(now));
        assert!(!rec(Status::Completed, 999, None).blocks(now), "expired");
        assert!(rec(Status::InProgress, 2_000, Some(1_000_500)).blocks(now));
        assert!(
            !rec(Status::InProgress, 2_000, Some(999_999)).blocks(now),
            "lapsed claim"
        );
        assert_eq!(
            Status::parse(Status::InProgress.as_str()),
            Some(Status::InProgress)
        );
    }
}
