//! Updates in order: a route may say which record an event changes (`ordering.key`) and what
//! orders its changes (`ordering.version`: an `updated_at`, an `occurredAt`, a sequence).
//! Transform stamps each task with both; deliver sends one task of a key at a time and never
//! an older version after a newer one (`on_stale`). The rules here are pure.

use std::cmp::Ordering as Cmp;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mapping::Mapping;

/// What deliver does with a change older than the last delivered for its key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStale {
    /// Not sent: outcome `stale`, counted and logged with both versions.
    #[default]
    Skip,
    /// Held for a person in the review queue.
    Review,
    /// Sent anyway (the destination decides).
    Deliver,
}

impl OnStale {
    /// As definitions write it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnStale::Skip => "skip",
            OnStale::Review => "review",
            OnStale::Deliver => "deliver",
        }
    }
}

/// A route's ordering, as transform runs it.
#[derive(Debug)]
pub struct Ordering {
    /// JSONata over the event: the record's id.
    pub key: Mapping,
    /// JSONata over the event: what orders its changes (a number, or a text: ISO 8601 times
    /// compare as times).
    pub version: Mapping,
    /// What deliver does with a stale change.
    pub on_stale: OnStale,
}

/// A task's place in its record's changes, as transform stamped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderStamp {
    /// The record (the key's value as text).
    pub key: String,
    /// Its version.
    pub version: Value,
}

/// A record's key as the table keeps it: as it is, or, longer than 200 bytes, its SHA-256
/// (a DynamoDB key holds at most 2 KB, and the record's id comes from the sender).
pub fn record_key(key: &str) -> String {
    use sha2::Digest as _;
    if key.len() <= 200 {
        return key.to_string();
    }
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    )
}

/// Reads a key or a version an expression yielded: text or a number; anything else (or
/// nothing) cannot order a change.
pub fn stamp_part(v: Option<Value>) -> Option<Value> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(Value::String(s)),
        Some(Value::Number(n)) => Some(Value::Number(n)),
        _ => None,
    }
}

/// How two versions compare: numbers as numbers (whole ones exactly; a number written as text
/// is a number); texts as times when both are RFC 3339 (any offset, any precision), else as
/// texts; a word and a number do not compare (None: neither is stale).
pub fn compare(a: &Value, b: &Value) -> Option<Cmp> {
    let number = |v: &Value| match v {
        Value::Number(n) => Some(n.clone()),
        Value::String(s) => s.trim().parse::<serde_json::Number>().ok(),
        _ => None,
    };
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
            return Some(x.cmp(&y));
        }
        if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
            return Some(x.cmp(&y));
        }
        return x.as_f64()?.partial_cmp(&y.as_f64()?);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
            match (time(x), time(y)) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => Some(x.cmp(y)),
            }
        }
        _ => None,
    }
}

/// Whether `version` is older than `last` (the last delivered for its key): such a change is
/// stale. An equal version is not (a retry of the delivered change is caught by its own
/// delivery record).
pub fn is_stale(version: &Value, last: Option<&Value>) -> bool {
    last.and_then(|l| compare(version, l)) == Some(Cmp::Less)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_compare_as_numbers_times_or_texts_and_mixed_ones_never_stale() {
        assert!(is_stale(&json!(9), Some(&json!(10))));
        assert!(!is_stale(&json!(10), Some(&json!(9.5))));
        assert!(
            !is_stale(&json!(10), Some(&json!(10))),
            "equal is not stale"
        );
        // Times compare as times whatever their offset or precision.
        let (early, late) = ("2026-12-07T10:00:00+01:00", "2026-12-07T09:30:00.5Z");
        assert!(is_stale(&json!(early), Some(&json!(late))));
        assert!(!is_stale(&json!(late), Some(&json!(early))));
        assert!(is_stale(&json!("a"), Some(&json!("b"))), "texts as texts");
        assert!(
            is_stale(&json!(1), Some(&json!("2"))),
            "a number written as text"
        );
        assert!(is_stale(&json!("9"), Some(&json!("10"))), "not as texts");
        let (big, bigger) = (
            json!(9_007_199_254_740_993_u64),
            json!(9_007_199_254_740_994_u64),
        );
        assert!(
            is_stale(&big, Some(&bigger)),
            "whole numbers past 2^53 exactly"
        );
        assert!(
            !is_stale(&json!("x"), Some(&json!(1))),
            "a word and a number do not compare"
        );
        assert_eq!(record_key("a"), "a");
        assert!(record_key(&"k".repeat(300)).starts_with("sha256:"));
        assert!(!is_stale(&json!(1), None), "nothing delivered yet");
        assert_eq!(stamp_part(Some(json!(""))), None);
        assert_eq!(stamp_part(Some(json!({"a": 1}))), None);
        assert_eq!(stamp_part(Some(json!(42))), Some(json!(42)));
    }
}
