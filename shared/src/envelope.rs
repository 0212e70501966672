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
}

/// What transform puts on the deliveries queue: one per route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum DeliveryMessage {
    /// Version 1.
    DeliveryV1(DeliveryV1),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
