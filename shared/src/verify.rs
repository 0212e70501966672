//! Webhook signature verification (Standard Webhooks), pure: headers, body and clock in,
//! verdict out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::WebhookSecret;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from now, either way, by default (Standard Webhooks).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a request's signature was not accepted. Each has a stable error code for the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    /// The timestamp header is not a number of seconds.
    #[error("header `webhook-timestamp` is not a Unix time in seconds")]
    MalformedTimestamp,
    /// The timestamp is too old or too far in the future.
    #[error("timestamp is {skew_secs} s from now; the tolerance is {tolerance_secs} s")]
    TimestampOutOfTolerance {
        /// Signed distance from now (negative: in the past).
        skew_secs: i64,
        /// The allowed distance.
        tolerance_secs: i64,
    },
    /// No signature in the header matches the body under any active secret.
    #[error("no signature in `webhook-signature` matches the body")]
    InvalidSignature,
}

impl VerifyError {
    /// The error code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::MalformedTimestamp | VerifyError::TimestampOutOfTolerance { .. } => {
                "timestamp_out_of_tolerance"
            }
            VerifyError::InvalidSignature => "invalid_signature",
        }
    }
}

/// The headers of a Standard Webhooks request, already looked up.
#[derive(Debug, Clone, Copy)]
pub struct StandardWebhookHeaders<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// Verifies a Standard Webhooks request: `v1,<base64 HMAC-SHA256>` signatures (several may be
/// given, space-separated; any one valid passes) over `{id}.{timestamp}.{body}`, with the
/// timestamp within `tolerance_secs` of `now`. Any of `secrets` may match (rotation).
/// Returns the `webhook-id`.
pub fn verify_standard_webhook<'a>(
    secrets: &[WebhookSecret],
    headers: StandardWebhookHeaders<'a>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<&'a str, VerifyError> {
    let id = headers.id.ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let ts_raw = headers
        .timestamp
        .ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signatures = headers
        .signature
        .ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let ts: i64 = ts_raw
        .trim()
        .parse()
        .map_err(|_| VerifyError::MalformedTimestamp)?;
    let skew_secs = ts - now_unix;
    if skew_secs.abs() > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance {
            skew_secs,
            tolerance_secs,
        });
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    for secret in secrets {
        let expected = mac(secret, id, ts, body);
        // Every candidate is compared, in constant time, whatever matched before.
        let matched = candidates
            .iter()
            .fold(subtle::Choice::from(0), |acc, c| acc | expected.ct_eq(c));
        if bool::from(matched) {
            return Ok(id);
        }
    }
    Err(VerifyError::InvalidSignature)
}

/// The `webhook-signature` value for a message: `v1,<base64>`.
pub fn sign_standard_webhook(secret: &WebhookSecret, id: &str, ts: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac(secret, id, ts, body)))
}

fn mac(secret: &WebhookSecret, id: &str, ts: i64, body: &[u8]) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(secret.key()).expect("HMAC takes keys of any size");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    // The example from the Standard Webhooks specification's reference libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::parse(&SecretString::new(s)).unwrap()
    }

    fn headers<'a>(sig: &'a str, ts: &'a str) -> StandardWebhookHeaders<'a> {
        StandardWebhookHeaders {
            id: Some(SPEC_ID),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    #[test]
    fn signing_matches_the_specification_example() {
        let sig =
            sign_standard_webhook(&secret(SPEC_SECRET), SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes());
        assert_eq!(sig, SPEC_SIG);
    }

    #[test]
    fn verdicts() {
        let ts = SPEC_TS.to_string();
        let good = [secret(SPEC_SECRET)];
        let other = [secret("whsec_b3RoZXIta2V5")];
        let body = SPEC_BODY.as_bytes();
        let v = |secrets: &[WebhookSecret], sig: &str, body: &[u8], now: i64| {
            verify_standard_webhook(
                secrets,
                headers(sig, &ts),
                body,
                now,
                DEFAULT_TOLERANCE_SECS,
            )
            .map(str::to_string)
        };
        assert_eq!(v(&good, SPEC_SIG, body, SPEC_TS), Ok(SPEC_ID.into()));
        // Several signatures, one valid.
        let many = format!("v1,AAAA v1a,xyz {SPEC_SIG}");
        assert_eq!(v(&good, &many, body, SPEC_TS), Ok(SPEC_ID.into()));
        // During rotation either secret verifies.
        let both = [other[0].clone(), good[0].clone()];
        assert_eq!(v(&both, SPEC_SIG, body, SPEC_TS), Ok(SPEC_ID.into()));
        assert_eq!(
            v(&other, SPEC_SIG, body, SPEC_TS),
            Err(VerifyError::InvalidSignature)
        );
        assert_eq!(
            v(&good, SPEC_SIG, br#"{"test": 2432232315}"#, SPEC_TS),
            Err(VerifyError::InvalidSignature)
        );
        assert_eq!(
            v(&good, "v1,not-base64!", body, SPEC_TS),
            Err(VerifyError::InvalidSignature)
        );
        assert_eq!(
            v(&good, SPEC_SIG, body, SPEC_TS + 301).unwrap_err().code(),
            "timestamp_out_of_tolerance"
        );
        assert_eq!(
            v(&good, SPEC_SIG, body, SPEC_TS - 301).unwrap_err().code(),
            "timestamp_out_of_tolerance"
        );
        assert_eq!(v(&good, SPEC_SIG, body, SPEC_TS + 300), Ok(SPEC_ID.into()));
    }

    #[test]
    fn missing_headers_are_named() {
        let h = StandardWebhookHeaders {
            id: Some(SPEC_ID),
            timestamp: Some("1"),
            signature: None,
        };
        let err = verify_standard_webhook(&[secret(SPEC_SECRET)], h, b"", 1, 300).unwrap_err();
        assert_eq!(err, VerifyError::MissingHeader("webhook-signature"));
        assert_eq!(err.code(), "missing_signature");
        let h = StandardWebhookHeaders {
            timestamp: Some("soon"),
            signature: Some(SPEC_SIG),
            ..h
        };
        assert_eq!(
            verify_standard_webhook(&[secret(SPEC_SECRET)], h, b"", 1, 300),
            Err(VerifyError::MalformedTimestamp)
        );
    }
}
