//! A definition's `source`: the signature scheme, its secret and what each scheme dedupes on by default. A new scheme is its `VerifyKind` and its arm in `source` here, plus `verify`.

use serde::Deserialize;

use crate::mapping::{Limits, Mapping};
use crate::verify::{Algorithm, DEFAULT_TOLERANCE_SECS, Encoding, HmacScheme, Scheme};

use super::*;

/// A definition's `source`: how its webhooks are received and verified.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFile {
    /// The signature scheme (`standard-webhooks`, `stripe`, `github`, `shopify`, `slack`,
    /// `hubspot-v3`, `zendesk`, `hmac`, `api-key`, `none`). Required.
    pub(super) verify: VerifyKind,
    /// Secrets Manager id of the signing secret or key. Required, except with `verify: none`.
    pub(super) secret: Option<String>,
    /// Must be `true` with `verify: none` (logged at start); refused otherwise. Default `false`.
    #[serde(default)]
    pub(super) allow_unsigned: bool,
    /// How far a signed timestamp may be from now. Default `5m`.
    pub(super) tolerance: Option<DurationText>,
    /// `verify: api-key` only: the header that carries the key. Required there.
    pub(super) header: Option<String>,
    /// `verify: hmac` only: the scheme's settings. Required there.
    pub(super) hmac: Option<HmacFile>,
    /// The provider's event id: `header.<name>`, or JSONata over the event. Default: the
    /// scheme's own id (`default_dedupe`), else the body's SHA-256.
    pub(super) dedupe: Option<String>,
    /// How long an id is remembered. Default `7d`.
    pub(super) dedupe_ttl: Option<DurationText>,
    /// JSONata turning one post into several events (HubSpot's arrays: `$`). Default: none.
    pub(super) split: Option<String>,
    /// With `split`: the most events one post may split into (more: 413 `too_many_events`);
    /// at least 1. Default 100.
    pub(super) split_max: Option<usize>,
    /// The largest body accepted (more: 413). Default 1,048,576.
    pub(super) max_body_bytes: Option<usize>,
}

/// `source.verify`: the signature scheme's name.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum VerifyKind {
    StandardWebhooks,
    Stripe,
    Github,
    Shopify,
    Zendesk,
    Slack,
    HubspotV3,
    Hmac,
    ApiKey,
    None,
}

/// `source.hmac`: a generic HMAC scheme's settings (`verify: hmac`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HmacFile {
    /// The header carrying the signature. Required.
    pub(super) header: String,
    /// `sha256` or `sha512`. Default `sha256`.
    #[serde(default = "sha256")]
    pub(super) algorithm: AlgorithmFile,
    /// `hex` (lower-case) or `base64`. Default `hex`.
    #[serde(default = "hex_encoding")]
    pub(super) encoding: EncodingFile,
    /// Text before the signature in the header (`sha256=`). Default: none.
    pub(super) prefix: Option<String>,
    /// The header carrying the signed timestamp, then held to `tolerance`. Default: none.
    pub(super) timestamp_header: Option<String>,
    /// What is signed, a template of `{timestamp}` and `{body}`. Default
    /// `{timestamp}.{body}` with a `timestamp_header`, else `{body}`.
    pub(super) signed_content: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum AlgorithmFile {
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum EncodingFile {
    Hex,
    Base64,
}

pub(super) fn sha256() -> AlgorithmFile {
    AlgorithmFile::Sha256
}

pub(super) fn hex_encoding() -> EncodingFile {
    EncodingFile::Hex
}

pub(super) fn source(def: SourceFile) -> Result<Source, (String, String)> {
    let at = |f: &str| format!("source.{f}");
    let fail = |f: &str, m: &str| Err((at(f), m.to_string()));
    if def.hmac.is_some() && !matches!(def.verify, VerifyKind::Hmac) {
        return fail("hmac", "`hmac` only goes with verify: hmac");
    }
    if def.header.is_some() && !matches!(def.verify, VerifyKind::ApiKey) {
        return fail("header", "`header` only goes with verify: api-key");
    }
    let scheme = match def.verify {
        VerifyKind::StandardWebhooks => Scheme::StandardWebhooks,
        VerifyKind::Stripe => Scheme::Stripe,
        VerifyKind::Github => Scheme::Github,
        VerifyKind::Shopify => Scheme::Shopify,
        VerifyKind::Zendesk => Scheme::Zendesk,
        VerifyKind::Slack => Scheme::Slack,
        VerifyKind::HubspotV3 => Scheme::HubspotV3,
        VerifyKind::Hmac => {
            let Some(h) = def.hmac else {
                return fail(
                    "hmac",
                    "verify: hmac needs `hmac: { header, algorithm, encoding, prefix, timestamp_header, signed_content }`",
                );
            };
            Scheme::Hmac(HmacScheme {
                header: h.header,
                algorithm: match h.algorithm {
                    AlgorithmFile::Sha256 => Algorithm::Sha256,
                    AlgorithmFile::Sha512 => Algorithm::Sha512,
                },
                encoding: match h.encoding {
                    EncodingFile::Hex => Encoding::Hex,
                    EncodingFile::Base64 => Encoding::Base64,
                },
                prefix: h.prefix,
                timestamp_header: h.timestamp_header,
                signed_content: h.signed_content,
            })
        }
        VerifyKind::ApiKey => match def.header {
            Some(header) => Scheme::ApiKey { header },
            None => {
                return fail(
                    "header",
                    "verify: api-key needs `header`: the header that carries the key",
                );
            }
        },
        VerifyKind::None => Scheme::None,
    };
    match (&scheme, &def.secret, def.allow_unsigned) {
        (Scheme::None, _, false) => {
            return fail(
                "allow_unsigned",
                "verify: none accepts anyone's posts; say so with `allow_unsigned: true`",
            );
        }
        (Scheme::None, Some(_), _) => return fail("secret", "verify: none uses no secret"),
        (Scheme::None, None, true) => {}
        (_, None, _) => {
            return fail(
                "secret",
                "the Secrets Manager id of the signing secret is needed",
            );
        }
        (_, Some(_), true) => {
            return fail(
                "allow_unsigned",
                "`allow_unsigned` only goes with verify: none",
            );
        }
        (_, Some(_), false) => {}
    }
    let tolerance_secs = match def.tolerance {
        Some(t) => t.parse().map_err(|m| (at("tolerance"), m))?.as_secs() as i64,
        None => DEFAULT_TOLERANCE_SECS,
    };
    let dedupe_ttl = match def.dedupe_ttl {
        Some(t) => t.parse().map_err(|m| (at("dedupe_ttl"), m))?,
        None => DEFAULT_DEDUPE_TTL,
    };
    let expression = |field: &str, text: &str| {
        Mapping::parse(text, Limits::default()).map_err(|e| {
            (
                at(field),
                format!("the JSONata expression does not parse: {e}"),
            )
        })
    };
    let dedupe = match def.dedupe.as_deref() {
        Some(text) => match text.strip_prefix("header.") {
            Some(name) if !name.is_empty() => Dedupe::Header(name.to_ascii_lowercase()),
            _ => Dedupe::Expression(expression("dedupe", text)?),
        },
        None => default_dedupe(&scheme),
    };
    let split = def
        .split
        .as_deref()
        .map(|t| expression("split", t))
        .transpose()?;
    let split_max = match (def.split_max, &split) {
        (Some(_), None) => {
            return Err((at("split_max"), "`split_max` only goes with `split`".into()));
        }
        (Some(0), _) => return Err((at("split_max"), "must be at least 1".into())),
        (Some(n), _) => n,
        (None, _) => DEFAULT_SPLIT_MAX,
    };
    Ok(Source {
        scheme,
        secret: def.secret,
        tolerance_secs,
        dedupe,
        dedupe_ttl,
        split,
        split_max,
        max_body_bytes: def.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
    })
}

/// Each provider's own event id, where it has one.
pub(super) fn default_dedupe(scheme: &Scheme) -> Dedupe {
    let expr = |e: &str| match Mapping::parse(e, Limits::default()) {
        Ok(m) => Dedupe::Expression(m),
        Err(_) => Dedupe::BodyHash,
    };
    match scheme {
        Scheme::StandardWebhooks => Dedupe::Header("webhook-id".into()),
        Scheme::Stripe => expr("id"),
        Scheme::Github => Dedupe::Header("x-github-delivery".into()),
        Scheme::Shopify => Dedupe::Header("x-shopify-webhook-id".into()),
        Scheme::Zendesk => Dedupe::Header("x-zendesk-webhook-invocation-id".into()),
        Scheme::Slack => expr("event_id"),
        Scheme::HubspotV3 => expr("eventId"),
        Scheme::Hmac(_) | Scheme::ApiKey { .. } | Scheme::None => Dedupe::BodyHash,
    }
}
