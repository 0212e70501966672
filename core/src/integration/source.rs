//! A definition's `source`: the signature scheme, its secret, its dedupe and its limits. A
//! provider's scheme (its name, its default dedupe) is declared once, in `verify/schemes.rs`.

use serde::Deserialize;

use crate::mapping::{Limits, Mapping};
use crate::verify::{
    Algorithm, CONFIGURED, DEFAULT_TOLERANCE_SECS, DefaultDedupe, Encoding, HmacScheme, PROVIDERS,
    Scheme,
};

use super::*;

/// A definition's `source`: how its webhooks are received and verified.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFile {
    /// The signature scheme: a provider's (`standard-webhooks`, `stripe`, `github`, `shopify`,
    /// `slack`, `hubspot-v3`, `zendesk`: `verify::PROVIDERS`) or one the definition configures
    /// (`hmac`, `api-key`, `none`). Required.
    pub(super) verify: String,
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

/// What a field's mistake is: the field (`source.…`) and the message.
type Mistake = (String, String);

fn mistake(field: &str, message: &str) -> Mistake {
    (format!("source.{field}"), message.to_string())
}

pub(super) fn source(mut def: SourceFile) -> Result<Source, Mistake> {
    let at = |f: &str| format!("source.{f}");
    let scheme = scheme(&def.verify, def.hmac.take(), def.header.take())?;
    secret_rule(&scheme, def.secret.is_some(), def.allow_unsigned)?;
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

/// `source.verify`, with the settings a configured scheme takes (`hmac`, `header`).
fn scheme(verify: &str, hmac: Option<HmacFile>, header: Option<String>) -> Result<Scheme, Mistake> {
    if hmac.is_some() && verify != "hmac" {
        return Err(mistake("hmac", "`hmac` only goes with verify: hmac"));
    }
    if header.is_some() && verify != "api-key" {
        return Err(mistake("header", "`header` only goes with verify: api-key"));
    }
    Ok(match verify {
        "hmac" => {
            let Some(h) = hmac else {
                return Err(mistake(
                    "hmac",
                    "verify: hmac needs `hmac: { header, algorithm, encoding, prefix, timestamp_header, signed_content }`",
                ));
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
        "api-key" => match header {
            Some(header) => Scheme::ApiKey { header },
            None => {
                return Err(mistake(
                    "header",
                    "verify: api-key needs `header`: the header that carries the key",
                ));
            }
        },
        "none" => Scheme::None,
        name => Scheme::named(name).ok_or_else(|| {
            let known: Vec<String> = PROVIDERS
                .iter()
                .map(|p| p.name)
                .chain(CONFIGURED.iter().copied())
                .map(|n| format!("`{n}`"))
                .collect();
            mistake(
                "verify",
                &format!(
                    "unknown scheme `{name}`, expected one of {}",
                    known.join(", ")
                ),
            )
        })?,
    })
}

/// A signed scheme needs its secret; `verify: none` none, and says so with `allow_unsigned`.
fn secret_rule(scheme: &Scheme, secret: bool, allow_unsigned: bool) -> Result<(), Mistake> {
    let fail = |f: &str, m: &str| Err(mistake(f, m));
    match (scheme, secret, allow_unsigned) {
        (Scheme::None, _, false) => fail(
            "allow_unsigned",
            "verify: none accepts anyone's posts; say so with `allow_unsigned: true`",
        ),
        (Scheme::None, true, _) => fail("secret", "verify: none uses no secret"),
        (Scheme::None, false, true) => Ok(()),
        (_, false, _) => fail(
            "secret",
            "the Secrets Manager id of the signing secret is needed",
        ),
        (_, true, true) => fail(
            "allow_unsigned",
            "`allow_unsigned` only goes with verify: none",
        ),
        (_, true, false) => Ok(()),
    }
}

/// Each provider's own event id, where it has one; otherwise the body's SHA-256.
pub(super) fn default_dedupe(scheme: &Scheme) -> Dedupe {
    match scheme.provider().map(|p| p.dedupe) {
        Some(DefaultDedupe::Header(name)) => Dedupe::Header(name.into()),
        Some(DefaultDedupe::Field(expr)) => match Mapping::parse(expr, Limits::default()) {
            Ok(m) => Dedupe::Expression(m),
            Err(_) => Dedupe::BodyHash,
        },
        None => Dedupe::BodyHash,
    }
}
