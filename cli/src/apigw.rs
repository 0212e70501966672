//! API Gateway (HTTP API, payload v2) events built from local HTTP requests, and the handler's
//! answer turned back into HTTP: what API Gateway does in front of the ingest Lambda.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use lambda_http::request::LambdaRequest;
use serde_json::{Value, json};

/// The payload v2 event for `POST /webhooks/{integration}`.
pub fn webhook_event(
    method: &str,
    path: &str,
    query: &str,
    integration: &str,
    headers: &HeaderMap,
    body: &[u8],
    source: SocketAddr,
) -> Value {
    let mut event = route_event(method, path, query, headers, body, source);
    let key = "POST /webhooks/{integration}";
    event["routeKey"] = key.into();
    event["requestContext"]["routeKey"] = key.into();
    event["pathParameters"] = json!({ "integration": integration });
    event
}

/// The payload v2 event for a route without parameters (`POST /reviews/slack`).
pub fn route_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    source: SocketAddr,
) -> Value {
    let mut joined: serde_json::Map<String, Value> = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        joined.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    // What API Gateway adds in front of every request; the local server speaks plain http.
    joined
        .entry("x-forwarded-proto")
        .or_insert_with(|| Value::String("http".into()));
    joined
        .entry("x-forwarded-for")
        .or_insert_with(|| Value::String(source.ip().to_string()));
    let now = chrono::Utc::now();
    // API Gateway passes text bodies as they are and base64-encodes the rest.
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (STANDARD.encode(body), true),
    };
    let user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body,
        "isBase64Encoded": is_base64,
    })
}

/// The request the ingest handler sees, sanitized and converted exactly as in Lambda
/// (`ingest::apigw`: a hostile `Host` or `X-Forwarded-Proto` cannot panic `lambda_http`).
pub fn into_request(event: Value) -> anyhow::Result<lambda_http::Request> {
    let request: LambdaRequest = serde_json::from_value(event)?;
    Ok(ingest::apigw::into_request(request))
}

#[cfg(test)]
mod tests {
    use lambda_http::RequestExt;

    use super::*;

    #[test]
    fn the_event_reaches_the_handler_with_exact_bytes_and_path_parameter() {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        let source = SocketAddr::from(([127, 0, 0, 1], 9));
        for body in [&b"{\"a\": 1}"[..], &[0xff, 0x00, 0x01][..]] {
            let event = webhook_event("POST", "/webhooks/x", "", "x", &headers, body, source);
            let req = into_request(event).unwrap();
            assert_eq!(req.body().as_ref(), body);
            assert_eq!(req.headers()["webhook-id"], "msg_1");
            assert_eq!(
                req.path_parameters_ref().unwrap().first("integration"),
                Some("x")
            );
        }
    }

    #[test]
    fn a_host_that_is_not_a_url_authority_reaches_ingest_without_it() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.com:not-a-port".parse().unwrap());
        headers.insert("x-forwarded-proto", "no way".parse().unwrap());
        let source = SocketAddr::from(([127, 0, 0, 1], 9));
        let event = webhook_event("POST", "/webhooks/x", "", "x", &headers, b"{}", source);
        let req = into_request(event).unwrap();
        assert_eq!(req.uri().path(), "/webhooks/x");
        assert_eq!(req.uri().scheme_str(), Some("https"));
    }
}
