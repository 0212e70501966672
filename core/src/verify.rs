//! Webhook signature verification and signing for every supported provider scheme, pure:
//! request parts, secrets and clock in, verdict out. Every comparison is constant time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::secret::{SecretString, WebhookSecret};

/// How far a signed timestamp may be from now, either way, by default.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// A signature scheme, as configured by `source.verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<b64>`).
    StandardWebhooks,
    /// Stripe: `Stripe-Signature: t=…,v1=…`, hex HMAC-SHA256 over `t.body`.
    Stripe,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify,
    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    Slack,
    /// HubSpot v3: `X-HubSpot-Signature-v3`, base64 HMAC-SHA256 over method, URI, body and the
    /// millisecond timestamp in `X-HubSpot-Request-Timestamp`.
    HubspotV3,
    /// Zendesk: `X-Zendesk-Webhook-Signature`, base64 HMAC-SHA256 over the RFC 3339 timestamp
    /// in `X-Zendesk-Webhook-Signature-Timestamp` followed by the body.
    Zendesk,
    /// A generic HMAC, configured per integration.
    Hmac(HmacScheme),
    /// A shared token in a header.
    ApiKey {
        /// The header that carries it.
        header: String,
    },
    /// No verification (only with `allow_unsigned: true`).
    None,
}

/// A provider's own scheme (`stripe`, `slack`, …): everything Switchboard knows of it, declared
/// beside its check in `verify/schemes.rs`. [`PROVIDERS`] lists them; verification and signing,
/// the loader (the names `source.verify` takes, the default dedupe), ingest (forms, the
/// handshake), the tests and the fuzz target all read that list.
pub struct Provider {
    /// Its name in `source.verify`.
    pub name: &'static str,
    /// The scheme it is.
    pub scheme: Scheme,
    /// The headers its signature, signed timestamp and signed id travel in.
    pub signed_headers: &'static [&'static str],
    /// The provider's own event id: what a definition dedupes on unless it says otherwise.
    pub dedupe: DefaultDedupe,
    /// Whether it posts `application/x-www-form-urlencoded` bodies (Slack's interactions and
    /// slash commands), read as JSON objects.
    pub forms: bool,
    /// Its URL handshake, if it has one: given the post's body, the answer to give instead of
    /// accepting an event (Slack's `url_verification`).
    pub handshake: Option<Handshake>,
    /// A post it sends, shaped as its documentation shows (the tests sign, verify and dedupe
    /// it).
    pub example: &'static str,
    verify: fn(&schemes::Check<'_>) -> Result<(), VerifyError>,
    sign: fn(&schemes::Signing<'_>) -> Result<SignedHeaders, VerifyError>,
}

/// Headers a sender sets, by name.
type SignedHeaders = Vec<(String, String)>;

/// A provider's handshake: given a post's body, the answer to give instead of an event.
pub type Handshake = fn(&serde_json::Value) -> Option<serde_json::Value>;

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .finish()
    }
}

/// Where a provider puts its own event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultDedupe {
    /// In this header.
    Header(&'static str),
    /// In the body, where this JSONata expression finds it.
    Field(&'static str),
}

/// Every provider's own scheme.
pub const PROVIDERS: &[&Provider] = &[
    &schemes::STANDARD_WEBHOOKS,
    &schemes::STRIPE,
    &schemes::GITHUB,
    &schemes::SHOPIFY,
    &schemes::ZENDESK,
    &schemes::SLACK,
    &schemes::HUBSPOT_V3,
];

/// The names `source.verify` takes besides the providers': the schemes a definition configures.
pub const CONFIGURED: &[&str] = &["hmac", "api-key", "none"];

impl Scheme {
    /// The provider whose scheme this is (`None` for the schemes a definition configures).
    pub fn provider(&self) -> Option<&'static Provider> {
        match self {
            Scheme::StandardWebhooks => Some(&schemes::STANDARD_WEBHOOKS),
            Scheme::Stripe => Some(&schemes::STRIPE),
            Scheme::Github => Some(&schemes::GITHUB),
            Scheme::Shopify => Some(&schemes::SHOPIFY),
            Scheme::Slack => Some(&schemes::SLACK),
            Scheme::HubspotV3 => Some(&schemes::HUBSPOT_V3),
            Scheme::Zendesk => Some(&schemes::ZENDESK),
            Scheme::Hmac(_) | Scheme::ApiKey { .. } | Scheme::None => None,
        }
    }

    /// A provider's scheme by its name in `source.verify`.
    pub fn named(name: &str) -> Option<Scheme> {
        PROVIDERS
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.scheme.clone())
    }

    /// Whether it posts forms as well as JSON.
    pub fn takes_forms(&self) -> bool {
        self.provider().is_some_and(|p| p.forms)
    }

    /// The header the integration chose to carry its credential or signature (`api-key`,
    /// `hmac`), which must not travel on with the event.
    pub fn credential_header(&self) -> Option<&str> {
        match self {
            Scheme::ApiKey { header } => Some(header),
            Scheme::Hmac(h) => Some(&h.header),
            _ => None,
        }
    }
}

/// The hash behind a generic HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a generic HMAC's bytes are written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// A generic HMAC scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacScheme {
    /// The header carrying the signature.
    pub header: String,
    /// The hash.
    pub algorithm: Algorithm,
    /// How the MAC is written.
    pub encoding: Encoding,
    /// Text before the encoded MAC (`sha256=`), if any.
    pub prefix: Option<String>,
    /// The header carrying a Unix timestamp (seconds) that is signed and checked, if any.
    pub timestamp_header: Option<String>,
    /// What is signed: `{body}` and `{timestamp}` are replaced. Default `{body}`, or
    /// `{timestamp}.{body}` with a timestamp header.
    pub signed_content: Option<String>,
}

/// Why a request's signature was not accepted. Each has a stable error code for the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("missing header `{0}`")]
    MissingHeader(String),
    /// The timestamp is not a number.
    #[error("header `{0}` is not a Unix timestamp")]
    MalformedTimestamp(String),
    /// The timestamp is too old or too far in the future.
    #[error("the signed timestamp is {skew_secs} s from now; the tolerance is {tolerance_secs} s")]
    TimestampOutOfTolerance {
        /// Signed distance from now (negative: in the past).
        skew_secs: i64,
        /// The allowed distance.
        tolerance_secs: i64,
    },
    /// No signature matches the body under any active secret.
    #[error("the signature in `{0}` does not match the request")]
    InvalidSignature(String),
    /// The configured secret cannot be used with this scheme (an operator error).
    #[error("the signing secret is unusable: {0}")]
    UnusableSecret(String),
}

impl VerifyError {
    /// The error code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::MalformedTimestamp(_) | VerifyError::TimestampOutOfTolerance { .. } => {
                "timestamp_out_of_tolerance"
            }
            VerifyError::InvalidSignature(_) => "invalid_signature",
            VerifyError::UnusableSecret(_) => "unusable_secret",
        }
    }
}

/// Header lookup, case-insensitive.
pub trait Headers {
    /// The first value of `name` as text.
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for Vec<(String, String)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The parts of a request a scheme may sign.
#[derive(Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The full URL the sender posted to (`https://host/path?query`): HubSpot signs it.
    pub url: &'a str,
    /// The headers.
    pub headers: &'a dyn Headers,
    /// The exact bytes received.
    pub body: &'a [u8],
}

impl std::fmt::Debug for SignedRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Verifies `req` under `scheme`; any of `secrets` may match (rotation: current and previous).
/// Each scheme's check is its own function in `verify/schemes.rs`.
pub fn verify(
    scheme: &Scheme,
    secrets: &[SecretString],
    req: &SignedRequest<'_>,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let c = schemes::Check {
        req,
        secrets,
        now_unix,
        tolerance_secs,
    };
    match scheme {
        Scheme::Hmac(h) => schemes::hmac(&c, h),
        Scheme::ApiKey { header } => schemes::api_key(&c, header),
        Scheme::None => Ok(()),
        named => match named.provider() {
            Some(p) => (p.verify)(&c),
            // Every named scheme is a provider (`Scheme::provider`); refuse rather than pass.
            None => Err(VerifyError::InvalidSignature(String::new())),
        },
    }
}

/// Standard Webhooks headers for an outbound message: one `v1,` signature per key in
/// `webhook-signature`, space-separated, so a receiver that knows any of the keys (the current
/// one, or the one a rotation is about to make current) verifies it.
pub fn sign_standard_webhooks(
    keys: &[WebhookSecret],
    id: &str,
    now_unix: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let ts = now_unix.to_string();
    let signatures: Vec<String> = keys
        .iter()
        .map(|k| {
            let mac = mac(
                k.key(),
                &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
                Algorithm::Sha256,
            );
            format!("v1,{}", STANDARD.encode(mac))
        })
        .collect();
    vec![
        ("webhook-id".to_string(), id.to_string()),
        ("webhook-timestamp".to_string(), ts),
        ("webhook-signature".to_string(), signatures.join(" ")),
    ]
}

/// The headers that sign `req`'s body for `scheme` with `secret` at `now`, as a sender would
/// set them (for `switchboard send`, tests and outbound signing). `id` is used where the
/// scheme carries a message id.
pub fn sign(
    scheme: &Scheme,
    secret: &SecretString,
    method: &str,
    url: &str,
    body: &[u8],
    id: &str,
    now_unix: i64,
) -> Result<Vec<(String, String)>, VerifyError> {
    let s = schemes::Signing {
        key: secret.expose().as_bytes(),
        secret,
        method,
        url,
        body,
        id,
        now_unix,
        ts: now_unix.to_string(),
    };
    match scheme {
        Scheme::Hmac(h) => Ok(schemes::sign_hmac(&s, h)),
        Scheme::ApiKey { header } => Ok(vec![(header.clone(), secret.expose().to_string())]),
        Scheme::None => Ok(Vec::new()),
        named => {
            let Some(p) = named.provider() else {
                return Ok(Vec::new());
            };
            let mut headers = (p.sign)(&s)?;
            // The provider's id header travels with every post, as the provider sends it.
            if let DefaultDedupe::Header(name) = p.dedupe
                && !headers.iter().any(|(n, _)| n == name)
            {
                headers.push((name.to_string(), id.to_string()));
            }
            Ok(headers)
        }
    }
}

fn hmac_content(h: &HmacScheme, ts: Option<&str>, body: &[u8]) -> Vec<u8> {
    let template = match (&h.signed_content, ts) {
        (Some(t), _) => t.as_str(),
        (None, Some(_)) => "{timestamp}.{body}",
        (None, None) => "{body}",
    };
    // `{body}` is spliced in as bytes: the body need not be UTF-8.
    let mut out = Vec::with_capacity(template.len() + body.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let tail = &rest[i..];
        if let Some(r) = tail.strip_prefix("{body}") {
            out.extend_from_slice(body);
            rest = r;
        } else if let Some(r) = tail.strip_prefix("{timestamp}") {
            out.extend_from_slice(ts.unwrap_or_default().as_bytes());
            rest = r;
        } else {
            out.push(b'{');
            rest = &tail[1..];
        }
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// Lower-case hex only: every provider writes it so, and a case-flipped byte is a changed
/// signature.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then(|| hex::decode(text).ok())
        .flatten()
}

fn parse_ts(header: &str, text: &str) -> Result<i64, VerifyError> {
    text.trim()
        .parse()
        .map_err(|_| VerifyError::MalformedTimestamp(header.to_string()))
}

fn raw_keys(secrets: &[SecretString]) -> impl Iterator<Item = &[u8]> {
    secrets.iter().map(|s| s.expose().as_bytes())
}

fn mac(key: &[u8], parts: &[&[u8]], algorithm: Algorithm) -> Vec<u8> {
    match algorithm {
        Algorithm::Sha256 => mac_with::<Hmac<Sha256>>(key, parts),
        Algorithm::Sha512 => mac_with::<Hmac<Sha512>>(key, parts),
    }
}

fn mac_with<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    let mut m =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any size");
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().to_vec()
}

/// Constant time for equal lengths; a length difference is not secret.
fn ct_eq_bytes(a: &[u8], b: &[u8]) -> subtle::Choice {
    if a.len() == b.len() {
        a.ct_eq(b)
    } else {
        subtle::Choice::from(0)
    }
}

fn any_match<'k>(
    keys: impl Iterator<Item = &'k [u8]>,
    content: &[&[u8]],
    algorithm: Algorithm,
    candidates: &[Vec<u8>],
    header: &str,
) -> Result<(), VerifyError> {
    let mut matched = subtle::Choice::from(0);
    for key in keys {
        let expected = mac(key, content, algorithm);
        // Every candidate under every key is compared, whatever matched before.
        for c in candidates {
            matched |= ct_eq_bytes(&expected, c);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature(header.to_string()))
    }
}

mod schemes;
#[cfg(test)]
mod tests;
