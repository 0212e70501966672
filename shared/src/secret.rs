//! Secret values: types whose `Debug` and `Display` never show what they hold.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A secret string as read from Secrets Manager. Printing it shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A Standard Webhooks signing key: `whsec_` followed by base64 of the key bytes.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

/// Why a value is not a usable `whsec_` key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookSecretError {
    /// The value is not base64 (after an optional `whsec_` prefix).
    #[error("signing secret is not `whsec_` followed by base64")]
    NotBase64,
    /// The key decodes to nothing.
    #[error("signing secret is empty")]
    Empty,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`; a bare base64 value is accepted too, as the Standard Webhooks
    /// libraries do.
    pub fn parse(value: &SecretString) -> Result<Self, WebhookSecretError> {
        let raw = value.expose().trim();
        let b64 = raw.strip_prefix("whsec_").unwrap_or(raw);
        let key = STANDARD
            .decode(b64)
            .map_err(|_| WebhookSecretError::NotBase64)?;
        if key.is_empty() {
            return Err(WebhookSecretError::Empty);
        }
        Ok(Self(key))
    }

    /// The raw key bytes, for the MAC.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        let w = WebhookSecret::parse(&SecretString::new("whsec_aHVudGVyMg==")).unwrap();
        assert!(!format!("{w:?}").contains("hunter2"));
        assert_eq!(w.key(), b"hunter2");
    }

    #[test]
    fn malformed_signing_secrets_are_rejected() {
        assert_eq!(
            WebhookSecret::parse(&SecretString::new("whsec_***")).unwrap_err(),
            WebhookSecretError::NotBase64
        );
        assert_eq!(
            WebhookSecret::parse(&SecretString::new("whsec_")).unwrap_err(),
            WebhookSecretError::Empty
        );
    }
}
