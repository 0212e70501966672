//! Each signature scheme's check, one function per scheme: its headers, its signed content,
//! its timestamp held to the tolerance, and the signatures compared in constant time.

use super::*;

/// What every check reads: the request, the secrets that may match, the clock and tolerance.
pub(super) struct Check<'a> {
    pub(super) req: &'a SignedRequest<'a>,
    pub(super) secrets: &'a [SecretString],
    pub(super) now_unix: i64,
    pub(super) tolerance_secs: i64,
}

impl Check<'_> {
    fn header(&self, name: &str) -> Result<&str, VerifyError> {
        self.req
            .headers
            .header(name)
            .ok_or_else(|| VerifyError::MissingHeader(name.to_string()))
    }

    fn in_tolerance(&self, ts: i64) -> Result<(), VerifyError> {
        // Saturating: a timestamp near the integer limits is far off, not an overflow.
        let skew_secs = ts.saturating_sub(self.now_unix);
        if skew_secs.unsigned_abs() > self.tolerance_secs.unsigned_abs() {
            Err(VerifyError::TimestampOutOfTolerance {
                skew_secs,
                tolerance_secs: self.tolerance_secs,
            })
        } else {
            Ok(())
        }
    }

    /// HMAC-SHA256 of `content` under each secret's raw bytes, against `candidates`.
    fn sha256(
        &self,
        content: &[&[u8]],
        candidates: &[Vec<u8>],
        header: &str,
    ) -> Result<(), VerifyError> {
        any_match(
            raw_keys(self.secrets),
            content,
            Algorithm::Sha256,
            candidates,
            header,
        )
    }
}

/// The one base64 signature a header holds (none when it does not decode).
fn base64_candidates(value: &str) -> Vec<Vec<u8>> {
    STANDARD.decode(value.trim()).ok().into_iter().collect()
}

/// The hex signature after `prefix` (none when it is absent or does not decode).
fn prefixed_hex(value: &str, prefix: &str) -> Vec<Vec<u8>> {
    value
        .strip_prefix(prefix)
        .and_then(decode_hex)
        .into_iter()
        .collect()
}

/// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<b64>`, several
/// allowed) over `{id}.{timestamp}.{body}`, keyed by the `whsec_` secret's bytes.
pub(super) fn standard_webhooks(c: &Check<'_>) -> Result<(), VerifyError> {
    let id = c.header("webhook-id")?;
    let ts_text = c.header("webhook-timestamp")?;
    let signatures = c.header("webhook-signature")?;
    let ts = parse_ts("webhook-timestamp", ts_text)?;
    c.in_tolerance(ts)?;
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let keys = c
        .secrets
        .iter()
        .map(|s| WebhookSecret::parse(s).map_err(|e| VerifyError::UnusableSecret(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let ts = ts.to_string();
    let content = [id.as_bytes(), b".", ts.as_bytes(), b".", c.req.body];
    any_match(
        keys.iter().map(|k| k.key()),
        &content,
        Algorithm::Sha256,
        &candidates,
        "webhook-signature",
    )
}

/// Stripe: `Stripe-Signature: t=…,v1=<hex>` over `{t}.{body}`.
pub(super) fn stripe(c: &Check<'_>) -> Result<(), VerifyError> {
    let value = c.header("stripe-signature")?;
    let mut ts = None;
    let mut candidates = Vec::new();
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => ts = Some(t),
            Some(("v1", sig)) => candidates.extend(decode_hex(sig)),
            _ => {}
        }
    }
    let ts_text = ts.ok_or_else(|| VerifyError::MalformedTimestamp("stripe-signature".into()))?;
    let ts = parse_ts("stripe-signature", ts_text)?;
    c.in_tolerance(ts)?;
    c.sha256(
        &[ts_text.as_bytes(), b".", c.req.body],
        &candidates,
        "stripe-signature",
    )
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
pub(super) fn github(c: &Check<'_>) -> Result<(), VerifyError> {
    let candidates = prefixed_hex(c.header("x-hub-signature-256")?, "sha256=");
    c.sha256(&[c.req.body], &candidates, "x-hub-signature-256")
}

/// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
pub(super) fn shopify(c: &Check<'_>) -> Result<(), VerifyError> {
    let candidates = base64_candidates(c.header("x-shopify-hmac-sha256")?);
    c.sha256(&[c.req.body], &candidates, "x-shopify-hmac-sha256")
}

/// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
pub(super) fn slack(c: &Check<'_>) -> Result<(), VerifyError> {
    let value = c.header("x-slack-signature")?;
    let ts_text = c.header("x-slack-request-timestamp")?;
    let ts = parse_ts("x-slack-request-timestamp", ts_text)?;
    c.in_tolerance(ts)?;
    let candidates = prefixed_hex(value, "v0=");
    let content = [b"v0:", ts_text.as_bytes(), b":", c.req.body];
    c.sha256(&content, &candidates, "x-slack-signature")
}

/// HubSpot v3: `X-HubSpot-Signature-v3` (base64) over method, URI, body and the millisecond
/// timestamp in `X-HubSpot-Request-Timestamp`.
pub(super) fn hubspot_v3(c: &Check<'_>) -> Result<(), VerifyError> {
    let value = c.header("x-hubspot-signature-v3")?;
    let ts_text = c.header("x-hubspot-request-timestamp")?;
    let ts_ms = parse_ts("x-hubspot-request-timestamp", ts_text)?;
    c.in_tolerance(ts_ms.div_euclid(1000))?;
    let content = [
        c.req.method.as_bytes(),
        c.req.url.as_bytes(),
        c.req.body,
        ts_text.as_bytes(),
    ];
    c.sha256(
        &content,
        &base64_candidates(value),
        "x-hubspot-signature-v3",
    )
}

/// Zendesk: `X-Zendesk-Webhook-Signature` (base64) over the RFC 3339 timestamp in
/// `X-Zendesk-Webhook-Signature-Timestamp` followed by the body.
pub(super) fn zendesk(c: &Check<'_>) -> Result<(), VerifyError> {
    let value = c.header("x-zendesk-webhook-signature")?;
    let ts_text = c.header("x-zendesk-webhook-signature-timestamp")?;
    let ts = chrono::DateTime::parse_from_rfc3339(ts_text.trim())
        .map_err(|_| {
            VerifyError::MalformedTimestamp("x-zendesk-webhook-signature-timestamp".into())
        })?
        .timestamp();
    c.in_tolerance(ts)?;
    c.sha256(
        &[ts_text.as_bytes(), c.req.body],
        &base64_candidates(value),
        "x-zendesk-webhook-signature",
    )
}

/// A generic HMAC, as the integration configures it.
pub(super) fn hmac(c: &Check<'_>, h: &HmacScheme) -> Result<(), VerifyError> {
    let value = c.header(&h.header)?;
    let value = match &h.prefix {
        Some(p) => value.strip_prefix(p.as_str()).unwrap_or(""),
        None => value,
    };
    let candidates: Vec<Vec<u8>> = match h.encoding {
        Encoding::Hex => decode_hex(value.trim()),
        Encoding::Base64 => STANDARD.decode(value.trim()).ok(),
    }
    .into_iter()
    .collect();
    let ts_text = match &h.timestamp_header {
        Some(name) => {
            let text = c.header(name)?;
            c.in_tolerance(parse_ts(name, text)?)?;
            Some(text)
        }
        None => None,
    };
    let content = hmac_content(h, ts_text, c.req.body);
    any_match(
        raw_keys(c.secrets),
        &[&content],
        h.algorithm,
        &candidates,
        &h.header,
    )
}

/// A shared key in a header, compared in constant time with each secret.
pub(super) fn api_key(c: &Check<'_>, name: &str) -> Result<(), VerifyError> {
    let given = c.header(name)?.as_bytes();
    let mut matched = subtle::Choice::from(0);
    for s in c.secrets {
        matched |= ct_eq_bytes(s.expose().as_bytes(), given);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature(name.to_string()))
    }
}
