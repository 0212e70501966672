//! Secret values: types whose `Debug` and `Display` never show what they hold.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A secret string as read from Secrets Manager. Printing it shows `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
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

impl WebhookSecret {
    /// A fresh key: 32 random bytes from the system's secure source, as `whsec_<base64>`.
    pub fn generate() -> Result<SecretString, &'static str> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| "no secure random source")?;
        Ok(SecretString::new(format!("whsec_{}", STANDARD.encode(key))))
    }
}

/// A secret's value by what it holds, from the `type` of its JSON (a bare value is `Plain`, or
/// a signing key when it starts with `whsec_`). `Debug` never shows a value.
#[derive(Clone)]
pub enum TypedSecret {
    /// `{"type": "oauth2-client-credentials", "token_url", "client_id", "client_secret",
    /// "scope", "test_url"}`, with the `access_token` (and its `expires_at`, Unix seconds)
    /// the last rotation obtained.
    OAuth2(OAuthClient),
    /// `whsec_…`, or `{"type": "signing-secret", "value": "whsec_…"}`.
    Signing(SecretString),
    /// `{"type": "api-key", "value", "mint_url", "test_url"}`.
    ApiKey {
        /// The key.
        value: SecretString,
        /// Where a new key is minted (POST, the current key as bearer).
        mint_url: Option<String>,
        /// A URL that answers 2xx to a working key (GET, the key as bearer).
        test_url: Option<String>,
    },
    /// Any other value: a bearer token, `user:password`, an API key.
    Plain(SecretString),
}

/// An OAuth 2.0 client record.
#[derive(Clone, serde::Deserialize)]
pub struct OAuthClient {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The scope asked for, if any.
    #[serde(default)]
    pub scope: Option<String>,
    /// A URL that answers 2xx to a working token (GET, the token as bearer).
    #[serde(default)]
    pub test_url: Option<String>,
    /// The token the last rotation obtained, if any.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// When that token expires (Unix seconds).
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

impl TypedSecret {
    /// Reads a value; `Err` names what is wrong with a record whose `type` is known.
    pub fn parse(value: &SecretString) -> Result<Self, String> {
        let text = value.expose().trim();
        let Ok(serde_json::Value::Object(record)) = serde_json::from_str(text) else {
            return Ok(if text.starts_with("whsec_") {
                TypedSecret::Signing(value.clone())
            } else {
                TypedSecret::Plain(value.clone())
            });
        };
        let field = |name: &str| {
            record
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        match record.get("type").and_then(|t| t.as_str()) {
            Some("oauth2-client-credentials") | None if record.contains_key("token_url") => {
                serde_json::from_value(serde_json::Value::Object(record.clone()))
                    .map(TypedSecret::OAuth2)
                    .map_err(|e| format!("not an oauth2-client-credentials record: {e}"))
            }
            Some("signing-secret") => field("value")
                .map(|v| TypedSecret::Signing(SecretString::new(v)))
                .ok_or_else(|| "a signing-secret record needs `value`".to_string()),
            Some("api-key") => Ok(TypedSecret::ApiKey {
                value: SecretString::new(
                    field("value").ok_or_else(|| "an api-key record needs `value`".to_string())?,
                ),
                mint_url: field("mint_url"),
                test_url: field("test_url"),
            }),
            Some(other) => Err(format!("unknown secret type `{other}`")),
            None => field("value")
                .map(|v| TypedSecret::Plain(SecretString::new(v)))
                .ok_or_else(|| "a JSON secret needs `type` or `value`".to_string()),
        }
    }

    /// The kind's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TypedSecret::OAuth2(_) => "oauth2-client-credentials",
            TypedSecret::Signing(_) => "signing-secret",
            TypedSecret::ApiKey { .. } => "api-key",
            TypedSecret::Plain(_) => "plain",
        }
    }
}

impl fmt::Debug for TypedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedSecret::{}([redacted])", self.kind())
    }
}

impl fmt::Display for TypedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("access_token", &self.access_token)
            .finish_non_exhaustive()
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
    fn typed_secrets_are_read_by_type_and_never_printed() {
        let oauth = SecretString::new(
            r#"{"type":"oauth2-client-credentials","token_url":"https://id.example/token","client_id":"c","client_secret":"s3cr3t","scope":"a","access_token":"t0k3n"}"#,
        );
        let TypedSecret::OAuth2(client) = TypedSecret::parse(&oauth).unwrap() else {
            panic!("oauth");
        };
        assert_eq!(client.client_secret.expose(), "s3cr3t");
        let typed = TypedSecret::parse(&oauth).unwrap();
        let shown = format!("{client:?} {typed:?} {typed}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0k3n"),
            "{shown}"
        );
        for (value, kind) in [
            ("whsec_aHVudGVyMg==", "signing-secret"),
            (
                r#"{"type":"signing-secret","value":"whsec_aHVudGVyMg=="}"#,
                "signing-secret",
            ),
            (
                r#"{"type":"api-key","value":"k","mint_url":"https://x/mint"}"#,
                "api-key",
            ),
            ("plain-token", "plain"),
        ] {
            let typed = TypedSecret::parse(&SecretString::new(value)).unwrap();
            assert_eq!(typed.kind(), kind, "{value}");
        }
        assert!(TypedSecret::parse(&SecretString::new(r#"{"type":"x509"}"#)).is_err());
        let fresh = WebhookSecret::generate().unwrap();
        assert_eq!(WebhookSecret::parse(&fresh).unwrap().key().len(), 32);
        assert_ne!(fresh, WebhookSecret::generate().unwrap());
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
