//! The messages between stages: versioned, serde-tagged, so a change is additive and an unknown
//! version is a clear error.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::EventId;

/// What ingest puts on the events queue. The body type is a parameter so ingest can write the
/// JSON it received verbatim (`&RawValue`) while transform reads it as a `Value`: one wire format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventMessage<B = serde_json::Value> {
    /// Version 1.
    EventV1(EventV1<B>),
}

/// An accepted webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventV1<B = serde_json::Value> {
    /// The id ingest gave it.
    pub event_id: EventId,
    /// The integration it arrived for.
    pub integration: String,
    /// When ingest accepted it.
    pub received_at: DateTime<Utc>,
    /// The request's headers, lower-cased, less credentials and signatures.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`null` when it travels in the archive: see `body_ref`).
    pub body: B,
    /// The archive key holding the body, when it was too large for a queue message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_ref: Option<String>,
    /// Only these routes run (set on a dead-lettered event, so a redrive re-runs the route that
    /// failed and not the ones already delivered); every route when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
    /// The archive object holding the event's line (`archive::batch_key`), once transform
    /// has archived it: where `dlq show` and `review show` point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
}

/// What transform puts on the deliveries queue: one per route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum DeliveryMessage {
    /// Version 1.
    DeliveryV1(DeliveryV1),
    /// A task too large for a message (over `archive::MAX_INLINE_MESSAGE_BYTES`), kept whole
    /// in the archive: deliver reads the `DeliveryV1` there. Its letters carry this pointer.
    DeliveryRefV1(DeliveryRef),
}

/// Where a task too large for a message is kept (claim check), and whose it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRef {
    /// The event it came from.
    pub event_id: EventId,
    /// The integration that defines the route.
    pub integration: String,
    /// The route's id within the integration.
    pub route: String,
    /// When ingest accepted the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// The archive key of the whole `DeliveryMessage` (`archive::task_key`).
    pub key: String,
    /// The archive object holding the event's line (`archive::batch_key`), once transform
    /// has archived it: where `dlq show` and `review show` point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
}

/// One mapped request for one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryV1 {
    /// The event it came from.
    pub event_id: EventId,
    /// The integration that defines the route.
    pub integration: String,
    /// The route's id within the integration.
    pub route: String,
    /// The JSON body to send.
    pub body: serde_json::Value,
    /// The HTTP method when the route's mapping chose one (`map_request`); POST otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The path (and query) on the route's host when the mapping chose one; the route's URL
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Extra request headers the mapping chose.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// When ingest accepted the event: with the event id and integration, where the archive
    /// keeps it (absent from tasks written before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// Why the route holds it for a person (its `review_when` said so): deliver puts it in the
    /// review queue instead of sending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// The review item that decided it (a person approved or edited it): it is sent, not held
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed: Option<String>,
    /// The archive object holding the event's line (`archive::batch_key`), once transform
    /// has archived it: where `dlq show` and `review show` point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    /// Its record and version, when its route keeps changes in order (`ordering`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Box<crate::ordering::OrderStamp>>,
}

impl DeliveryV1 {
    /// A task of `route` carrying `body` alone: the route's own method and path, no mapped
    /// headers, not held for review (what a plain `map` makes; tests and benches build these).
    pub fn of(event_id: EventId, integration: &str, route: &str, body: serde_json::Value) -> Self {
        Self {
            event_id,
            integration: integration.into(),
            route: route.into(),
            body,
            method: None,
            path: None,
            headers: BTreeMap::new(),
            received_at: None,
            review: None,
            reviewed: None,
            archived: None,
            order: None,
        }
    }
}

/// A message body that is not a known, well-formed message.
#[derive(Debug, thiserror::Error)]
#[error("not a Switchboard {kind} message: {source}")]
pub struct DecodeError {
    kind: &'static str,
    #[source]
    source: serde_json::Error,
}

impl EventMessage<serde_json::Value> {
    /// Reads a message from a queue body.
    pub fn decode(body: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(body).map_err(|source| DecodeError {
            kind: "event",
            source,
        })
    }
}

impl EventMessage<Box<serde_json::value::RawValue>> {
    /// Reads a message from a queue body, leaving the event body as its JSON text (transform
    /// parses it once, straight into the mapping engine's values).
    pub fn decode_raw(body: &str) -> Result<Self, DecodeError> {
        // serde's internally tagged enums buffer their content, which a `RawValue` cannot be
        // read from: the tag is read as a field here instead.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tagged {
            #[serde(rename = "type")]
            version: String,
            event_id: EventId,
            integration: String,
            received_at: DateTime<Utc>,
            headers: BTreeMap<String, String>,
            body: Box<serde_json::value::RawValue>,
            #[serde(default)]
            body_ref: Option<String>,
            #[serde(default)]
            routes: Option<Vec<String>>,
            #[serde(default)]
            archived: Option<String>,
        }
        let fail = |source| DecodeError {
            kind: "event",
            source,
        };
        let m: Tagged = serde_json::from_str(body).map_err(fail)?;
        if m.version != "EventV1" {
            return Err(fail(serde::de::Error::custom(format!(
                "unknown variant `{}`, expected `EventV1`",
                m.version
            ))));
        }
        Ok(EventMessage::EventV1(EventV1 {
            event_id: m.event_id,
            integration: m.integration,
            received_at: m.received_at,
            headers: m.headers,
            body: m.body,
            body_ref: m.body_ref,
            routes: m.routes,
            archived: m.archived,
        }))
    }
}

impl DeliveryMessage {
    /// Reads a message from a queue body.
    pub fn decode(body: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(body).map_err(|source| DecodeError {
            kind: "delivery",
            source,
        })
    }
}

/// Headers never carried between stages: credentials and signatures.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "cookie" | "proxy-authorization" | "x-api-key"
    ) || name.contains("signature")
        || name.contains("secret")
        || name.contains("token")
        || name.contains("hmac")
}

/// The fair-queue group of a delivery task to `destination` (its origin: scheme, host, port):
/// SQS allows 128 characters from `!` to `~`; a longer or odd origin keeps its first 100 and a
/// digest of the whole, so one destination is always one group.
pub fn message_group(destination: &str) -> String {
    let fits = |s: &str| s.len() <= 128 && s.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if fits(destination) && !destination.is_empty() {
        return destination.to_string();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(destination.as_bytes());
    let head: String = destination
        .chars()
        .filter(|c| ('!'..='~').contains(c))
        .take(100)
        .collect();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{head}#{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_is_its_own_group_within_what_sqs_allows() {
        assert_eq!(
            message_group("https://api.example.com:443"),
            "https://api.example.com:443"
        );
        let long = format!("https://{}.example.com", "a".repeat(200));
        let group = message_group(&long);
        assert!(
            group.len() <= 128 && group.starts_with("https://aaa"),
            "{group}"
        );
        assert_eq!(group, message_group(&long), "one destination, one group");
        let other = message_group(&format!("https://{}.example.com", "a".repeat(201)));
        assert_ne!(group, other, "two destinations sharing a head stay apart");
        for odd in ["", "http://h\u{e9}te:80", "a b"] {
            let g = message_group(odd);
            assert!(!g.is_empty() && g.len() <= 128, "{odd:?} -> {g:?}");
            assert!(
                g.bytes().all(|b| (b'!'..=b'~').contains(&b)),
                "{odd:?} -> {g:?}"
            );
        }
    }

    #[test]
    fn messages_carry_their_version_tag_and_round_trip() {
        let msg = EventMessage::EventV1(EventV1 {
            event_id: EventId::new(),
            integration: "example".into(),
            received_at: Utc::now(),
            headers: BTreeMap::new(),
            body: serde_json::json!({"a": 1}),
            body_ref: None,
            routes: None,
            archived: None,
        });
        let text = serde_json::to_string(&msg).unwrap();
        assert!(text.starts_with(r#"{"type":"EventV1""#), "{text}");
        assert_eq!(EventMessage::decode(&text).unwrap(), msg);
    }

    #[test]
    fn a_raw_body_is_written_verbatim_and_read_back_as_a_value() {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(r#"{"b": [1, 2.5], "a": "x"}"#).unwrap();
        let msg = EventMessage::EventV1(EventV1 {
            event_id: EventId::new(),
            integration: "example".into(),
            received_at: Utc::now(),
            headers: BTreeMap::new(),
            body: raw,
            body_ref: None,
            routes: None,
            archived: None,
        });
        let text = serde_json::to_string(&msg).unwrap();
        assert!(
            text.contains(r#""body":{"b": [1, 2.5], "a": "x"}"#),
            "{text}"
        );
        let EventMessage::EventV1(read) = EventMessage::decode(&text).unwrap();
        assert_eq!(read.body, serde_json::json!({"a": "x", "b": [1, 2.5]}));
    }

    #[test]
    fn transform_reads_the_body_as_text_and_writes_it_back_verbatim() {
        let text = r#"{"type":"EventV1","event_id":"evt_01JSAMPLE0000000000000000","integration":"x","received_at":"2026-11-24T03:00:00Z","headers":{},"body":{"b": [1, 2.50], "a": "x"},"routes":["r"]}"#;
        let EventMessage::EventV1(event) = EventMessage::decode_raw(text).unwrap();
        assert_eq!(event.body.get(), r#"{"b": [1, 2.50], "a": "x"}"#);
        assert_eq!(event.routes, Some(vec!["r".to_string()]));
        let again = serde_json::to_string(&EventMessage::EventV1(event)).unwrap();
        assert!(
            again.contains(r#""body":{"b": [1, 2.50], "a": "x"}"#),
            "{again}"
        );
        let EventMessage::EventV1(value) = EventMessage::decode(&again).unwrap();
        assert_eq!(value.body, serde_json::json!({"a": "x", "b": [1, 2.5]}));

        let e = EventMessage::decode_raw(&text.replace("EventV1", "EventV7")).unwrap_err();
        assert!(e.to_string().contains("EventV7"), "{e}");
        assert!(EventMessage::decode_raw(&text.replace("\"routes\"", "\"extra\"")).is_err());
    }

    #[test]
    fn an_unknown_version_is_a_clear_error() {
        let err = DeliveryMessage::decode(r#"{"type":"DeliveryV9"}"#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("DeliveryV9") && text.contains("DeliveryV1"),
            "{text}"
        );
    }

    #[test]
    fn credentials_and_signatures_are_sensitive() {
        for h in [
            "Authorization",
            "webhook-signature",
            "X-Hub-Signature-256",
            "x-api-key",
        ] {
            assert!(is_sensitive_header(h), "{h}");
        }
        for h in ["content-type", "webhook-id", "user-agent"] {
            assert!(!is_sensitive_header(h), "{h}");
        }
    }
}
