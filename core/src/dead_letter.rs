//! What a dead letter says (written as SQS message attributes by the adapter, read back by the
//! operations commands), the attempt history it carries, and how a handler sends one.

use crate::reason::Reason;

/// Why a message was dead-lettered, carried as SQS message attributes so an operator can
/// filter and redrive by reason without opening bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message body (what a redrive puts back on the source queue).
    pub body: String,
    /// A stable, machine-readable reason (`contract_violation`, `mapping_error`, ...).
    pub reason: Reason,
    /// What went wrong, for a human; never a secret or a body.
    pub message: String,
    /// The integration.
    pub integration: String,
    /// The route at fault, when one is.
    pub route: Option<String>,
    /// The event.
    pub event_id: String,
    /// How many attempts were made (for a delivery: calls to the destination; else the
    /// message's receive count).
    pub attempts: u32,
    /// The destination's last answer, when it gave one.
    pub last_status: Option<u16>,
    /// The attempt history (a JSON array of [`AttemptRecord`]), when there is one.
    pub history: Option<String>,
}

impl DeadLetter {
    /// A message whose body could not be decoded: nothing is known of it but its text.
    pub fn malformed(body: &str, error: impl std::fmt::Display, attempts: u32) -> Self {
        Self {
            body: body.to_string(),
            reason: Reason::MalformedMessage,
            message: error.to_string(),
            integration: String::new(),
            route: None,
            event_id: String::new(),
            attempts,
            last_status: None,
            history: None,
        }
    }
}

/// One delivery attempt as it is kept for ops: it travels to the DLQ with the task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    /// The message's receive count when the attempt was made.
    pub receive: u32,
    /// When it was made (RFC 3339).
    pub at: String,
    /// The destination's status, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The transport error, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the call took.
    pub latency_ms: u64,
    /// The first 1 KB of an error answer's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// The most a letter's history attribute holds: the newest attempts that fit (a long schedule
/// of 1 KB error answers would otherwise push a letter past SQS's 1 MiB).
pub const MAX_HISTORY_BYTES: usize = 48 * 1024;

/// The history as the letter carries it: a JSON array of the newest attempts that fit in
/// [`MAX_HISTORY_BYTES`] (the count of all of them is the letter's `attempts`).
pub fn history_json(history: &[AttemptRecord]) -> Option<String> {
    let mut from = 0;
    loop {
        let text = serde_json::to_string(&history[from..]).ok()?;
        if text.len() <= MAX_HISTORY_BYTES || from + 1 >= history.len() {
            return Some(text);
        }
        // Drop enough of the oldest at once: the entries are of like size.
        let over = text.len() - MAX_HISTORY_BYTES;
        let per = text.len() / (history.len() - from);
        from = (from + over.div_ceil(per.max(1))).min(history.len() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_history_keeps_its_newest_attempts_within_the_cap() {
        let attempt = |receive| AttemptRecord {
            receive,
            at: "2026-12-06T10:00:00Z".into(),
            status: Some(503),
            error: None,
            latency_ms: 10,
            response: Some("x".repeat(1024)),
        };
        let short: Vec<_> = (1..=3).map(attempt).collect();
        assert_eq!(history_json(&short), serde_json::to_string(&short).ok());
        let long: Vec<_> = (1..=500).map(attempt).collect();
        let kept: Vec<AttemptRecord> = serde_json::from_str(&history_json(&long).unwrap()).unwrap();
        assert!(serde_json::to_string(&kept).unwrap().len() <= MAX_HISTORY_BYTES);
        assert!(kept.len() > 30, "{}", kept.len());
        assert_eq!(kept.last().unwrap().receive, 500, "the newest kept");
        assert!(history_json(&[]).is_some());
    }
}
