//! Prefixed identifiers: `evt_…` for events.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The id Switchboard gives an accepted event: `evt_` followed by a ULID, so ids sort by the
/// time they were received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    const PREFIX: &'static str = "evt_";

    /// A new, unique event id.
    pub fn new() -> Self {
        Self(format!("{}{}", Self::PREFIX, ulid::Ulid::new()))
    }

    /// The id of the event a provider identifies by `key` (the integration and its dedupe
    /// id): the same key always gives the same id, so a sender's retry of an event ingest
    /// queued but could not mark done is the same event downstream (deliver dedupes it), not a
    /// second one. 128 bits of SHA-256, written as a ULID.
    pub fn derived(key: &str) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(format!("{}{}", Self::PREFIX, ulid::Ulid::from_bytes(bytes)))
    }

    /// The id as text, prefix included.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EventId {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.strip_prefix(Self::PREFIX) {
            Some(rest) if !rest.is_empty() => Ok(Self(value)),
            _ => Err(format!(
                "event id `{value}` must start with `{}`",
                Self::PREFIX
            )),
        }
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_prefixed_unique_and_round_trip() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a.as_str().starts_with("evt_"));
        assert_ne!(a, b);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), a);
    }

    #[test]
    fn derived_ids_are_stable_per_key_and_differ_between_keys() {
        let a = EventId::derived("ingest#github#d-1");
        assert_eq!(a, EventId::derived("ingest#github#d-1"));
        assert_ne!(a, EventId::derived("ingest#github#d-2"));
        assert_ne!(a, EventId::derived("ingest#stripe#d-1"));
        assert!(
            a.as_str().starts_with("evt_") && a.as_str().len() == 30,
            "{a}"
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), a);
    }

    #[test]
    fn ids_without_the_prefix_are_rejected() {
        assert!(serde_json::from_str::<EventId>("\"msg_123\"").is_err());
        assert!(serde_json::from_str::<EventId>("\"evt_\"").is_err());
    }
}
