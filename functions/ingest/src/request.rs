//! Reading a webhook request, pure: content type, body decoding, the provider event id. Every
//! failure is a [`Rejection`] with the status and code the sender gets.

use http::{HeaderMap, StatusCode};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use switchboard_core::integration::Dedupe;
use switchboard_core::verify::Scheme;

/// A request refused, with what the sender is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable error code.
    pub code: &'static str,
    /// What is wrong and why.
    pub message: String,
}

impl Rejection {
    /// A rejection.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// JSON.
    Json,
    /// `application/x-www-form-urlencoded` (Slack's slash commands and interactivity).
    Form,
}

/// The body's encoding from its `Content-Type`. No content type is read as JSON.
pub fn body_kind(content_type: Option<&str>, scheme: &Scheme) -> Result<BodyKind, Rejection> {
    let Some(ct) = content_type else {
        return Ok(BodyKind::Json);
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/json" | "text/json" => Ok(BodyKind::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyKind::Json),
        "application/x-www-form-urlencoded" if scheme.takes_forms() => Ok(BodyKind::Form),
        _ => Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type `{essence}` is not accepted; send application/json{}",
                if scheme.takes_forms() {
                    " or application/x-www-form-urlencoded"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// A body known to be valid JSON, kept as text: ingest passes JSON on verbatim and builds a
/// `Value` only when something must look inside.
#[derive(Debug)]
pub enum Json<'a> {
    /// The request body itself.
    Borrowed(&'a RawValue),
    /// JSON made from the body (a form) or from part of it (a split element).
    Owned(Box<RawValue>),
}

impl Json<'_> {
    /// The JSON text.
    pub fn raw(&self) -> &RawValue {
        match self {
            Json::Borrowed(r) => r,
            Json::Owned(r) => r,
        }
    }

    /// The JSON as a value.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.raw().get()).unwrap_or_default()
    }

    /// JSON text for a value.
    pub fn from_value(value: &serde_json::Value) -> Json<'static> {
        Json::Owned(
            serde_json::value::to_raw_value(value).unwrap_or_else(|_| Box::<RawValue>::default()),
        )
    }
}

/// The body as JSON, validated in one pass without building it: JSON as received, or for a
/// form, its `payload` field (Slack interactivity) or its fields as an object (slash commands).
pub fn decode_body(kind: BodyKind, body: &[u8]) -> Result<Json<'_>, Rejection> {
    let text = std::str::from_utf8(body).map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let invalid = |e: serde_json::Error| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    };
    match kind {
        BodyKind::Json => serde_json::from_str::<&RawValue>(text)
            .map(Json::Borrowed)
            .map_err(invalid),
        BodyKind::Form => {
            let fields: serde_json::Map<String, serde_json::Value> =
                url::form_urlencoded::parse(text.as_bytes())
                    .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                    .collect();
            match fields.get("payload").and_then(|p| p.as_str()) {
                Some(payload) => serde_json::from_str::<Box<RawValue>>(payload)
                    .map(Json::Owned)
                    .map_err(invalid),
                None => Ok(Json::from_value(&serde_json::Value::Object(fields))),
            }
        }
    }
}

/// The provider's id for one event: the configured header or expression (over `event`, which
/// the caller parses when the dedupe is an expression), or the SHA-256 of `body` when that
/// yields nothing. With a split request, `index` keeps header-based ids apart.
/// Provider ids longer than this are hashed into the dedupe key (DynamoDB refuses keys over
/// 2,048 bytes).
pub const MAX_RAW_DEDUPE_ID: usize = 512;

/// The idempotency key of a provider event: its integration and dedupe id, a long id hashed.
pub fn dedupe_key(integration: &str, provider_id: &str) -> String {
    if provider_id.len() > MAX_RAW_DEDUPE_ID {
        let digest = hex::encode(Sha256::digest(provider_id.as_bytes()));
        format!("ingest#{integration}#long-sha256:{digest}")
    } else {
        format!("ingest#{integration}#{provider_id}")
    }
}

pub fn dedupe_id(
    dedupe: &Dedupe,
    headers: &HeaderMap,
    event: Option<&serde_json::Value>,
    body: &[u8],
    index: Option<usize>,
) -> String {
    let found = match dedupe {
        Dedupe::Header(name) => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| match index {
                Some(i) => format!("{v}#{i}"),
                None => v.to_string(),
            }),
        Dedupe::Expression(m) => match event.map(|e| m.evaluate(e, &[])) {
            Some(Ok(Some(serde_json::Value::String(s)))) if !s.is_empty() => Some(s),
            Some(Ok(Some(serde_json::Value::Number(n)))) => Some(n.to_string()),
            _ => None,
        },
        Dedupe::BodyHash => None,
    };
    found.unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(body))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_core::mapping::{Limits, Mapping};

    use super::*;

    #[test]
    fn content_types() {
        let ok = |ct, scheme: &Scheme| body_kind(ct, scheme);
        assert_eq!(ok(None, &Scheme::Github), Ok(BodyKind::Json));
        assert_eq!(
            ok(Some("application/json; charset=utf-8"), &Scheme::Github),
            Ok(BodyKind::Json)
        );
        assert_eq!(
            ok(Some("application/cloudevents+json"), &Scheme::Github),
            Ok(BodyKind::Json)
        );
        assert_eq!(
            ok(Some("application/x-www-form-urlencoded"), &Scheme::Slack),
            Ok(BodyKind::Form)
        );
        for (ct, scheme) in [
            ("application/x-www-form-urlencoded", Scheme::Github),
            ("text/xml", Scheme::Slack),
            ("multipart/form-data; boundary=x", Scheme::Stripe),
        ] {
            let r = ok(Some(ct), &scheme).unwrap_err();
            assert_eq!((r.status.as_u16(), r.code), (415, "unsupported_media_type"));
        }
    }

    #[test]
    fn bodies() {
        let value = |kind, body: &[u8]| decode_body(kind, body).map(|j| j.value());
        assert_eq!(value(BodyKind::Json, br#"{"a":1}"#), Ok(json!({"a": 1})));
        let verbatim = decode_body(BodyKind::Json, br#" {"a": 1} "#).unwrap();
        assert_eq!(verbatim.raw().get(), r#"{"a": 1}"#);
        let r = value(BodyKind::Json, b"{").unwrap_err();
        assert_eq!((r.status.as_u16(), r.code), (400, "invalid_json"));
        let r = value(BodyKind::Json, b"\"\xff\"").unwrap_err();
        assert_eq!((r.status.as_u16(), r.code), (400, "invalid_utf8"));
        assert_eq!(
            value(BodyKind::Form, b"command=%2Fdeploy&text=now+please"),
            Ok(json!({"command": "/deploy", "text": "now please"}))
        );
        assert_eq!(
            value(
                BodyKind::Form,
                b"payload=%7B%22type%22%3A%22block_actions%22%7D"
            ),
            Ok(json!({"type": "block_actions"}))
        );
    }

    #[test]
    fn a_long_provider_id_is_hashed_into_a_key_of_bounded_length() {
        let short = dedupe_key("github", "d-1");
        assert_eq!(short, "ingest#github#d-1");
        let long = "x".repeat(3000);
        let key = dedupe_key("github", &long);
        assert!(key.len() < 200, "{key}");
        assert_eq!(
            key,
            dedupe_key("github", &long),
            "the same id, the same key"
        );
        assert_ne!(key, dedupe_key("github", &"y".repeat(3000)));
    }

    #[test]
    fn dedupe_ids() {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-delivery", "d-1".parse().unwrap());
        let header = Dedupe::Header("x-github-delivery".into());
        assert_eq!(dedupe_id(&header, &headers, None, b"{}", None), "d-1");
        assert_eq!(dedupe_id(&header, &headers, None, b"{}", Some(2)), "d-1#2");
        let expr = Dedupe::Expression(Mapping::parse("eventId", Limits::default()).unwrap());
        let event = json!({"eventId": 42});
        assert_eq!(dedupe_id(&expr, &headers, Some(&event), b"", None), "42");
        let hashed = dedupe_id(&expr, &headers, Some(&json!({})), b"abc", None);
        assert_eq!(
            hashed,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            dedupe_id(&Dedupe::BodyHash, &HeaderMap::new(), None, b"abc", None),
            hashed
        );
    }
}
