//! Idempotency records with Powertools for AWS Lambda semantics: INPROGRESS while the work runs
//! (with an in-progress expiry tied to the function's remaining time), COMPLETED with the result
//! once it is done, deleted on failure so the retry can run.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long a delivery's records (`deliver#` completion, `attempts#` history) are kept. Within
/// it a replay knows which routes of an event were delivered; past it, it cannot tell, and
/// `switchboard replay` refuses such events unless `--force`. Kept short on purpose: at a
/// billion events a month a record kept as long as the archive (90 days) would cost about
/// $0.19 per million events in DynamoDB storage, 13x this.
pub const DELIVERY_RECORDS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// When an INPROGRESS claim lapses: the Lambda invocation's deadline (ms since the epoch) when
/// there is one, else `fallback` from now (locally, where nothing sets a deadline).
pub fn in_progress_until(deadline_ms: Option<i64>, now: DateTime<Utc>, fallback: Duration) -> i64 {
    deadline_ms
        .filter(|&d| d > 0)
        .unwrap_or_else(|| now.timestamp_millis() + fallback.as_millis() as i64)
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

/// The outcome of trying to take a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: do the work, then complete or release it.
    Acquired,
    /// Someone has or had it; the existing record says what happened.
    Exists(Record),
}

/// A new claim: what the conditional put writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    /// The key.
    pub key: String,
    /// The claim time.
    pub now: DateTime<Utc>,
    /// How long the record counts (Unix seconds at which it expires).
    pub expires_at: i64,
    /// When the INPROGRESS state lapses (Unix ms): the function's deadline.
    pub in_progress_expires_at_ms: i64,
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
