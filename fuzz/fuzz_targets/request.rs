//! Request parsing and verification on arbitrary input: the bytes become an API Gateway event
//! (as JSON text, so the event parser itself is fuzzed) or, when that fails, a request built
//! directly; then content type, body decoding, dedupe and every scheme's verification run, and
//! every header value goes through the parsers of an API's waits (`Retry-After`,
//! `retry-after-ms`, rate-limit resets), which must give a bounded wait. None of it may panic.

#![no_main]

use ingest::request::{BodyKind, body_kind, decode_body, dedupe_id};
use lambda_http::request::LambdaRequest;
use libfuzzer_sys::fuzz_target;
use switchboard_core::integration::Dedupe;
use switchboard_core::secret::SecretString;
use switchboard_core::{delivery_policy, model};
use switchboard_core::verify::{
    Algorithm, Encoding, HmacScheme, PROVIDERS, Scheme, SignedRequest, verify,
};

/// Every provider's scheme (`verify::PROVIDERS`), then the configured ones.
fn schemes() -> Vec<Scheme> {
    let providers = PROVIDERS.iter().map(|p| p.scheme.clone());
    providers
        .chain([
            Scheme::Hmac(HmacScheme {
                header: "x-sig".into(),
                algorithm: Algorithm::Sha512,
                encoding: Encoding::Base64,
                prefix: Some("v=".into()),
                timestamp_header: Some("x-ts".into()),
                signed_content: Some("{timestamp}{{body}}{body}{".into()),
            }),
            Scheme::ApiKey { header: "x-api-key".into() },
        ])
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // Split: first line is header material, the rest the body.
    let (head, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);

    // 1. The event parser, on text that may or may not be an event.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(event) = serde_json::from_str::<LambdaRequest>(text) {
            // lambda_http 1.3 panics on a host that is not a URL authority (this target's first
            // finding, guarded in `switchboard dev`); step over it to keep fuzzing the rest.
            let converted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                http::Request::<lambda_http::Body>::from(event)
            }));
            if let Ok(request) = converted {
                let _ = request.uri().to_string();
            }
        }
    }

    // 2. Headers from `name: value; name: value` in the first line.
    let mut headers = http::HeaderMap::new();
    for pair in head.split(';') {
        if let Some((n, v)) = pair.split_once(':') {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::try_from(n.trim().to_ascii_lowercase()),
                http::HeaderValue::try_from(v.trim()),
            ) {
                headers.append(n, v);
            }
        }
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    for scheme in schemes() {
        let _ = body_kind(content_type, &scheme);
        let signed = SignedRequest {
            method: "POST",
            url: "https://h/webhooks/x",
            headers: &headers,
            body,
        };
        let secrets = [SecretString::new("whsec_c2VjcmV0"), SecretString::new("secret")];
        let _ = verify(&scheme, &secrets, &signed, 1_700_000_000, 300);
    }
    // 3. The waits an API's answer asks for: every header value, under every name a parser
    // reads, must give nothing or a bounded wait.
    let now = chrono::Utc::now();
    for value in headers.values().filter_map(|v| v.to_str().ok()) {
        let header = |name: &str| {
            let named = name.contains("reset") || name.starts_with("retry-after");
            Some(if named { value.to_string() } else { "0".to_string() })
        };
        let waits = [
            model::retry_after(header),
            model::pacing(header, now).map(|p| p.reset),
            model::go_duration(value),
            delivery_policy::retry_after(value, std::time::SystemTime::now()),
        ];
        for wait in waits.into_iter().flatten() {
            assert!(wait <= model::MAX_HEADER_WAIT);
            let _ = std::time::Instant::now() + wait + wait;
        }
    }
    for kind in [BodyKind::Json, BodyKind::Form] {
        if let Ok(json) = decode_body(kind, body) {
            let value = json.value();
            let _ = dedupe_id(&Dedupe::BodyHash, &headers, Some(&value), body, Some(1));
            let _ = dedupe_id(&Dedupe::Header("x-id".into()), &headers, None, body, None);
        }
    }
});
