//! Each signature scheme in one place: a provider's declaration ([`Provider`]: its name, id,
//! forms, handshake and an example post) beside its check (its headers, its signed content, its
//! timestamp held to the tolerance, the signatures compared in constant time) and its signing.

use super::*;

/// What every check reads: the request, the secrets that may match, the clock and tolerance.
pub(super) struct Check<'a> {
    pub(super) req: &'a SignedRequest<'a>,
    pub(super) secrets: &'a [SecretString],
    pub(super) now_unix: i64,
    pub(super) tolerance_secs: i64,
}

/// What a sender signs with: the secret (and its raw bytes), the request's parts, the message
/// id and the clock.
pub(super) struct Signing<'a> {
    pub(super) secret: &'a SecretString,
    pub(super) key: &'a [u8],
    pub(super) method: &'a str,
    pub(super) url: &'a str,
    pub(super) body: &'a [u8],
    pub(super) id: &'a str,
    pub(super) now_unix: i64,
    /// `now_unix` as text.
    pub(super) ts: String,
}

fn header(name: &str, value: String) -> (String, String) {
    (name.to_string(), value)
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
pub(super) const STANDARD_WEBHOOKS: Provider = Provider {
    name: "standard-webhooks",
    scheme: Scheme::StandardWebhooks,
    signed_headers: &["webhook-id", "webhook-timestamp", "webhook-signature"],
    dedupe: DefaultDedupe::Header("webhook-id"),
    forms: false,
    handshake: None,
    example: r#"{"type":"invoice.paid","timestamp":"2026-12-01T12:00:00Z","data":{"id":"inv_1"}}"#,
    verify: standard_webhooks,
    sign: |s| {
        let k = WebhookSecret::parse(s.secret)
            .map_err(|e| VerifyError::UnusableSecret(e.to_string()))?;
        Ok(sign_standard_webhooks(&[k], s.id, s.now_unix, s.body))
    },
};

fn standard_webhooks(c: &Check<'_>) -> Result<(), VerifyError> {
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
pub(super) const STRIPE: Provider = Provider {
    name: "stripe",
    scheme: Scheme::Stripe,
    signed_headers: &["stripe-signature"],
    dedupe: DefaultDedupe::Field("id"),
    forms: false,
    handshake: None,
    example: r#"{"id":"evt_1NG8Du2eZvKYlo2C","object":"event","type":"charge.succeeded","data":{"object":{"id":"ch_1"}}}"#,
    verify: stripe,
    sign: |s| {
        let mac = mac(s.key, &[s.ts.as_bytes(), b".", s.body], Algorithm::Sha256);
        let value = format!("t={},v1={}", s.ts, hex::encode(mac));
        Ok(vec![header("stripe-signature", value)])
    },
};

fn stripe(c: &Check<'_>) -> Result<(), VerifyError> {
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
pub(super) const GITHUB: Provider = Provider {
    name: "github",
    scheme: Scheme::Github,
    signed_headers: &["x-hub-signature-256"],
    dedupe: DefaultDedupe::Header("x-github-delivery"),
    forms: false,
    handshake: None,
    example: r#"{"action":"opened","issue":{"number":1347,"title":"Found a bug"}}"#,
    verify: github,
    sign: |s| {
        let mac = hex::encode(mac(s.key, &[s.body], Algorithm::Sha256));
        Ok(vec![header("x-hub-signature-256", format!("sha256={mac}"))])
    },
};

fn github(c: &Check<'_>) -> Result<(), VerifyError> {
    let candidates = prefixed_hex(c.header("x-hub-signature-256")?, "sha256=");
    c.sha256(&[c.req.body], &candidates, "x-hub-signature-256")
}

/// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
pub(super) const SHOPIFY: Provider = Provider {
    name: "shopify",
    scheme: Scheme::Shopify,
    signed_headers: &["x-shopify-hmac-sha256"],
    dedupe: DefaultDedupe::Header("x-shopify-webhook-id"),
    forms: false,
    handshake: None,
    example: r#"{"id":820982911946154508,"email":"jon@example.com","updated_at":"2026-12-01T12:00:00-05:00"}"#,
    verify: shopify,
    sign: |s| {
        let mac = STANDARD.encode(mac(s.key, &[s.body], Algorithm::Sha256));
        Ok(vec![header("x-shopify-hmac-sha256", mac)])
    },
};

fn shopify(c: &Check<'_>) -> Result<(), VerifyError> {
    let candidates = base64_candidates(c.header("x-shopify-hmac-sha256")?);
    c.sha256(&[c.req.body], &candidates, "x-shopify-hmac-sha256")
}

/// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`. Interactions and slash
/// commands come as forms; a new Events API URL is checked with a `url_verification` post,
/// answered with its challenge.
pub(super) const SLACK: Provider = Provider {
    name: "slack",
    scheme: Scheme::Slack,
    signed_headers: &["x-slack-request-timestamp", "x-slack-signature"],
    dedupe: DefaultDedupe::Field("event_id"),
    forms: true,
    handshake: Some(|body| {
        (body["type"] == "url_verification")
            .then(|| serde_json::json!({ "challenge": body["challenge"] }))
    }),
    example: r#"{"type":"event_callback","team_id":"T0001","event_id":"Ev0PV52K21","event":{"type":"app_mention","text":"hi"}}"#,
    verify: slack,
    sign: |s| {
        let mac = mac(
            s.key,
            &[b"v0:", s.ts.as_bytes(), b":", s.body],
            Algorithm::Sha256,
        );
        Ok(vec![
            header("x-slack-request-timestamp", s.ts.clone()),
            header("x-slack-signature", format!("v0={}", hex::encode(mac))),
        ])
    },
};

fn slack(c: &Check<'_>) -> Result<(), VerifyError> {
    let value = c.header("x-slack-signature")?;
    let ts_text = c.header("x-slack-request-timestamp")?;
    let ts = parse_ts("x-slack-request-timestamp", ts_text)?;
    c.in_tolerance(ts)?;
    let candidates = prefixed_hex(value, "v0=");
    let content = [b"v0:", ts_text.as_bytes(), b":", c.req.body];
    c.sha256(&content, &candidates, "x-slack-signature")
}

/// HubSpot v3: `X-HubSpot-Signature-v3` (base64) over method, URI, body and the millisecond
/// timestamp in `X-HubSpot-Request-Timestamp`. It posts arrays of events (`split: $`), each
/// with its `eventId`.
pub(super) const HUBSPOT_V3: Provider = Provider {
    name: "hubspot-v3",
    scheme: Scheme::HubspotV3,
    signed_headers: &["x-hubspot-request-timestamp", "x-hubspot-signature-v3"],
    dedupe: DefaultDedupe::Field("eventId"),
    forms: false,
    handshake: None,
    example: r#"[{"eventId":1001,"subscriptionType":"contact.propertyChange","objectId":123,"propertyName":"lifecyclestage","propertyValue":"customer","occurredAt":1764590400000}]"#,
    verify: hubspot_v3,
    sign: |s| {
        let ts_ms = (s.now_unix * 1000).to_string();
        let content = [
            s.method.as_bytes(),
            s.url.as_bytes(),
            s.body,
            ts_ms.as_bytes(),
        ];
        let mac = STANDARD.encode(mac(s.key, &content, Algorithm::Sha256));
        Ok(vec![
            header("x-hubspot-request-timestamp", ts_ms),
            header("x-hubspot-signature-v3", mac),
        ])
    },
};

fn hubspot_v3(c: &Check<'_>) -> Result<(), VerifyError> {
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
pub(super) const ZENDESK: Provider = Provider {
    name: "zendesk",
    scheme: Scheme::Zendesk,
    signed_headers: &[
        "x-zendesk-webhook-signature-timestamp",
        "x-zendesk-webhook-signature",
    ],
    dedupe: DefaultDedupe::Header("x-zendesk-webhook-invocation-id"),
    forms: false,
    handshake: None,
    example: r#"{"type":"zen:event-type:ticket.created","account_id":1,"id":"f2a1","detail":{"id":"35436","subject":"Help"}}"#,
    verify: zendesk,
    sign: |s| {
        let ts = chrono::DateTime::from_timestamp(s.now_unix, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mac = STANDARD.encode(mac(s.key, &[ts.as_bytes(), s.body], Algorithm::Sha256));
        Ok(vec![
            header("x-zendesk-webhook-signature-timestamp", ts),
            header("x-zendesk-webhook-signature", mac),
        ])
    },
};

fn zendesk(c: &Check<'_>) -> Result<(), VerifyError> {
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

/// A generic HMAC's headers, as the integration configures it.
pub(super) fn sign_hmac(s: &Signing<'_>, h: &HmacScheme) -> Vec<(String, String)> {
    let content = hmac_content(
        h,
        h.timestamp_header.as_ref().map(|_| s.ts.as_str()),
        s.body,
    );
    let mac = mac(s.key, &[&content], h.algorithm);
    let encoded = match h.encoding {
        Encoding::Hex => hex::encode(mac),
        Encoding::Base64 => STANDARD.encode(mac),
    };
    let prefix = h.prefix.as_deref().unwrap_or("");
    let mut headers = vec![header(&h.header, format!("{prefix}{encoded}"))];
    if let Some(name) = &h.timestamp_header {
        headers.push(header(name, s.ts.clone()));
    }
    headers
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
