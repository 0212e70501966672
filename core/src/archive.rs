//! The archive: what is kept of every accepted event, and where.
//!
//! Transform archives each batch it decides: one object per integration and day of the batch,
//! `{integration}/{yyyy}/{mm}/{dd}/{ulid}.jsonl.gz`, a line per event (the event as transform
//! read it and what it decided for each route: [`ArchivedEventV2`]), written before any task of
//! the batch is queued. An event too large for a queue message is also written alone by ingest
//! to `{integration}/{yyyy}/{mm}/{dd}/{event_id}` ([`ArchivedEventV1`]: the raw body, exactly)
//! and travels as a pointer to it (claim check); events archived before the batches are kept
//! there too. [`read_object`] reads either kind.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::EventId;

/// Messages larger than this travel as a pointer to the archive: an event (ingest, replay) and
/// a task (transform). SQS takes 1 MiB per message since August 2025 (the template sets
/// `MaximumMessageSize` to it, a test holds them together); 64 KiB are kept for the attributes
/// a dead letter adds to the same body (reason, message, history: see
/// `dead_letter::MAX_HISTORY_BYTES`).
pub const MAX_INLINE_MESSAGE_BYTES: usize = crate::batching::MAX_REQUEST_BYTES - 64 * 1024;

/// One archived event. Read with [`ArchivedEvent::parse`] (or [`read_object`]): serde's
/// internally tagged enums cannot hold a line's body verbatim.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum ArchivedEvent {
    /// Version 1: one event alone, as ingest received it (a body too large for a message, or
    /// an event archived before the batches).
    ArchivedEventV1(ArchivedEventV1),
    /// Version 2: an event's line in a batch object, with what transform decided.
    ArchivedEventV2(ArchivedEventV2),
}

impl ArchivedEvent {
    /// Reads one archived event from its JSON: the tag first, then its version's fields.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            version: String,
        }
        match serde_json::from_str::<Tag>(text)?.version.as_str() {
            "ArchivedEventV1" => serde_json::from_str(text).map(Self::ArchivedEventV1),
            "ArchivedEventV2" => serde_json::from_str(text).map(Self::ArchivedEventV2),
            other => Err(serde::de::Error::custom(format!(
                "unknown archive record `{other}`, expected `ArchivedEventV1` or `ArchivedEventV2`"
            ))),
        }
    }

    /// The event.
    pub fn event_id(&self) -> &EventId {
        match self {
            Self::ArchivedEventV1(e) => &e.event_id,
            Self::ArchivedEventV2(e) => &e.event_id,
        }
    }

    /// When ingest accepted it.
    pub fn received_at(&self) -> DateTime<Utc> {
        match self {
            Self::ArchivedEventV1(e) => e.received_at,
            Self::ArchivedEventV2(e) => e.received_at,
        }
    }

    /// Transform's decision, when this is a line it wrote.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Self::ArchivedEventV1(_) => None,
            Self::ArchivedEventV2(e) => Some(&e.decision),
        }
    }
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

/// Version 2: an event's line in a batch object (transform's, one object per integration and
/// day of a batch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchivedEventV2 {
    /// The event.
    pub event_id: EventId,
    /// The integration it arrived for.
    pub integration: String,
    /// When ingest accepted it.
    pub received_at: DateTime<Utc>,
    /// The request headers, less credentials and signatures.
    pub headers: BTreeMap<String, String>,
    /// The event's JSON as transform read it: the body received verbatim, or one element of a
    /// split request, or a form read as JSON. Absent when it travelled in the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<RawValue>>,
    /// The archive key holding the event whole (ingest's claim check), when it is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_ref: Option<String>,
    /// When transform decided.
    pub decided_at: DateTime<Utc>,
    /// What it decided.
    pub decision: Decision,
}

/// What transform decided for an event: the event's fate and each route's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The event's fate.
    pub outcome: EventOutcome,
    /// Why, when it was skipped or dead-lettered whole (a reason code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What went wrong, in words (no body, no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each route's fate, when the routes ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteDecision>,
    /// Each enrichment step's, when the steps ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepDecision>,
}

/// What came of an enrichment step (an API or model call) for an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDecision {
    /// The step's name.
    pub step: String,
    /// What came of it.
    pub outcome: StepOutcome,
    /// Why its fallback stood in, or why it was not called (a reason code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long its calls took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// An enrichment step's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// Called; its answer is the record.
    Called,
    /// A model step whose answer was already recorded for the event: not asked again.
    Recorded,
    /// Not called: its `when` was not true.
    Skipped,
    /// Its call failed; its fallback stood in.
    Fallback,
}

/// An event's fate in transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// The routes ran (see each route's fate).
    Transformed,
    /// Skipped whole (an enrichment step found no record and says to skip).
    Skipped,
    /// Dead-lettered whole to the events DLQ.
    Failed,
}

/// A route's fate in transform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// The route.
    pub route: String,
    /// Its fate.
    pub outcome: RouteOutcome,
    /// Why it was skipped, held or dead-lettered (a reason code, or the review's why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A route's fate in transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteOutcome {
    /// Its task was queued for deliver.
    Queued,
    /// Its task was queued to wait for a person's decision.
    Review,
    /// Nothing to deliver (`when` false, nothing mapped).
    Skipped,
    /// Dead-lettered for this route.
    Failed,
}

/// The batch object of `integration`'s events received on `day`, written by the batch `id`
/// (a ULID: keys sort by when they were written).
pub fn batch_key(integration: &str, day: DateTime<Utc>, id: &str) -> String {
    format!(
        "{integration}/{}/{id}{BATCH_SUFFIX}",
        day.format("%Y/%m/%d")
    )
}

/// A new batch id: a ULID, so a day's batch objects sort by when they were written.
pub fn batch_id() -> String {
    ulid::Ulid::new().to_string()
}

/// What a batch object's key ends with.
pub const BATCH_SUFFIX: &str = ".jsonl.gz";

/// A batch object's bytes: one JSON line per event, gzipped. A body kept verbatim may hold
/// line breaks between its tokens (a pretty-printed webhook): they become spaces, so each event
/// stays one line (a line break inside a JSON string is always escaped, so none is there).
pub fn write_batch(lines: &[ArchivedEvent]) -> Vec<u8> {
    let mut text = Vec::with_capacity(lines.len() * 1024);
    for line in lines {
        let start = text.len();
        #[allow(clippy::expect_used)]
        serde_json::to_writer(&mut text, line).expect("an archive line always serializes");
        for byte in &mut text[start..] {
            if matches!(*byte, b'\n' | b'\r') {
                *byte = b' ';
            }
        }
        text.push(b'\n');
    }
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 3),
        flate2::Compression::fast(),
    );
    #[allow(clippy::expect_used)]
    gz.write_all(&text).expect("writing to memory cannot fail");
    #[allow(clippy::expect_used)]
    gz.finish().expect("writing to memory cannot fail")
}

/// The events an archive object holds: a batch object's lines (its key ends with
/// [`BATCH_SUFFIX`]) or one event alone.
pub fn read_object(key: &str, bytes: &[u8]) -> Result<Vec<ArchivedEvent>, String> {
    if !key.ends_with(BATCH_SUFFIX) {
        return std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| ArchivedEvent::parse(text).map_err(|e| e.to_string()))
            .map(|e| vec![e])
            .map_err(|e| format!("{key} is not an archived event: {e}"));
    }
    // At most 256 MiB unpacked (a batch of 100 events of 1 MiB each is 100 MiB): a corrupt or
    // hostile object cannot take the reader's memory.
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .take(256 * 1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("{key} is not gzipped text: {e}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            ArchivedEvent::parse(line)
                .map_err(|e| format!("{key}, line {}: not an archived event: {e}", n + 1))
        })
        .collect()
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
        assert_eq!(
            batch_key("shop", at, "01KB"),
            "shop/2026/03/07/01KB.jsonl.gz"
        );
    }

    fn line(id: &str, body: &str) -> ArchivedEvent {
        ArchivedEvent::ArchivedEventV2(ArchivedEventV2 {
            event_id: EventId::try_from(id.to_string()).unwrap(),
            integration: "shop".into(),
            received_at: Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 0).unwrap(),
            headers: BTreeMap::from([("x-shop".into(), "1".into())]),
            body: Some(RawValue::from_string(body.into()).unwrap()),
            body_ref: None,
            decided_at: Utc.with_ymd_and_hms(2026, 3, 8, 0, 0, 1).unwrap(),
            decision: Decision {
                steps: Vec::new(),
                outcome: EventOutcome::Transformed,
                reason: None,
                message: None,
                routes: vec![RouteDecision {
                    route: "wms".into(),
                    outcome: RouteOutcome::Skipped,
                    reason: Some("when_false".into()),
                }],
            },
        })
    }

    #[test]
    fn a_batch_object_gives_back_each_line_with_its_body_verbatim_and_decision() {
        let pretty = "{\n  \"name\": \"Ada\\nLovelace\",\r\n  \"items\": [\n    1\n  ]\n}";
        let lines = [
            line("evt_1", r#"{"b": 1,  "a":[2]}"#),
            line("evt_2", "[]"),
            line("evt_3", pretty),
        ];
        let bytes = write_batch(&lines);
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip");
        let read = read_object("shop/2026/03/07/01KB.jsonl.gz", &bytes).unwrap();
        assert_eq!(read.len(), 3, "a pretty-printed body is still one line");
        let ArchivedEvent::ArchivedEventV2(first) = &read[0] else {
            panic!("{read:?}")
        };
        assert_eq!(first.event_id.as_str(), "evt_1");
        assert_eq!(first.body.as_ref().unwrap().get(), r#"{"b": 1,  "a":[2]}"#);
        assert_eq!(first.decision.routes[0].outcome, RouteOutcome::Skipped);
        assert_eq!(read[1].event_id().as_str(), "evt_2");
        let ArchivedEvent::ArchivedEventV2(third) = &read[2] else {
            panic!("{read:?}")
        };
        let body: serde_json::Value =
            serde_json::from_str(third.body.as_ref().unwrap().get()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "Ada\nLovelace", "items": [1]}),
            "the same JSON, its string's escaped line break kept"
        );
    }

    #[test]
    fn a_single_event_object_and_a_damaged_batch_are_told_apart() {
        let one = br#"{"type":"ArchivedEventV1","event_id":"evt_9","integration":"shop","received_at":"2026-03-07T00:00:00Z","headers":{},"raw_body":"{}"}"#;
        let read = read_object("shop/2026/03/07/evt_9", one).unwrap();
        assert_eq!(read[0].event_id().as_str(), "evt_9");
        assert!(read[0].decision().is_none());
        let err = read_object("shop/2026/03/07/01KB.jsonl.gz", b"not gzip").unwrap_err();
        assert!(err.contains("01KB.jsonl.gz"), "{err}");
    }
}
