//! API Gateway's event, made safe before `lambda_http` turns it into a request.
//!
//! `lambda_http` 1.3 builds the request URI as `format!("{x-forwarded-proto}://{host}{path}")`
//! and unwraps `Url::parse` of it: a sender's `Host: example.com:not-a-port` or
//! `X-Forwarded-Proto: a b` panics the conversion, which in Lambda is an invocation error and a
//! 5xx for the sender, before ingest sees anything. Both headers are the sender's to choose, so
//! they are checked first: a scheme other than `http`/`https` becomes `https` (what API Gateway
//! sets), a host that cannot make a URL with the path is replaced by the stage's domain, or
//! dropped.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue};
use lambda_http::request::LambdaRequest;
use lambda_http::{LambdaEvent, Request, Service};
use url::Url;

/// Makes the event's `x-forwarded-proto` and `host` safe for the conversion.
pub fn sanitize(event: &mut LambdaRequest) {
    match event {
        LambdaRequest::ApiGatewayV2(ag) => {
            let path = ag.raw_path.clone().unwrap_or_default();
            fix(&mut ag.headers, &mut ag.request_context.domain_name, &path);
        }
        LambdaRequest::ApiGatewayV1(ag) => {
            let path = ag.path.clone().unwrap_or_default();
            fix(&mut ag.headers, &mut ag.request_context.domain_name, &path);
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

fn fix(headers: &mut HeaderMap, domain: &mut Option<String>, path: &str) {
    let proto = http::HeaderName::from_static("x-forwarded-proto");
    let scheme_ok = headers
        .get(&proto)
        .is_none_or(|v| matches!(v.as_bytes(), b"http" | b"https"));
    if !scheme_ok {
        headers.insert(proto, HeaderValue::from_static("https"));
    }
    // Usable: the URL parses, and the host does not swallow part of the path ("" would make
    // `https:///webhooks/x`, whose host is `webhooks`).
    let expected = Url::parse(&format!("https://localhost{path}")).map(|u| u.path().to_string());
    let usable = |host: &str| {
        !host.is_empty()
            && Url::parse(&format!("https://{host}{path}"))
                .is_ok_and(|u| Ok(u.path()) == expected.as_deref())
    };
    if domain.as_deref().is_some_and(|d| !usable(d)) {
        *domain = None;
    }
    let host_ok = headers
        .get(http::header::HOST)
        .is_none_or(|h| h.to_str().is_ok_and(usable));
    if !host_ok {
        match domain
            .as_deref()
            .and_then(|d| HeaderValue::from_str(d).ok())
        {
            Some(d) => headers.insert(http::header::HOST, d),
            None => headers.remove(http::header::HOST),
        };
    }
}

/// The request ingest sees: the event sanitized, then converted as `lambda_http` does.
pub fn into_request(mut event: LambdaRequest) -> Request {
    sanitize(&mut event);
    event.into()
}

/// A service that sanitizes each event before `lambda_http`'s adapter converts it.
#[derive(Debug, Clone)]
pub struct Sanitized<S>(pub S);

impl<S> Service<LambdaEvent<LambdaRequest>> for Sanitized<S>
where
    S: Service<LambdaEvent<LambdaRequest>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut event: LambdaEvent<LambdaRequest>) -> Self::Future {
        sanitize(&mut event.payload);
        self.0.call(event)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(headers: serde_json::Value, domain: &str) -> LambdaRequest {
        serde_json::from_value(json!({
            "version": "2.0",
            "routeKey": "POST /webhooks/{integration}",
            "rawPath": "/webhooks/x",
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "1", "apiId": "a", "domainName": domain, "domainPrefix": "a",
                "http": {"method": "POST", "path": "/webhooks/x", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.9", "userAgent": "t"},
                "requestId": "r", "routeKey": "POST /webhooks/{integration}", "stage": "$default",
                "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 0
            },
            "body": "{}",
            "isBase64Encoded": false
        }))
        .unwrap()
    }

    #[test]
    fn hostile_scheme_and_host_headers_cannot_panic_the_conversion() {
        let domain = "abc.execute-api.eu-west-1.amazonaws.com";
        for (proto, host) in [
            ("a b", "example.com"),
            ("https", "example.com:not-a-port"),
            ("javascript:", "[::1"),
            ("https", "exa mple.com"),
            ("http", ""),
        ] {
            let e = event(json!({"x-forwarded-proto": proto, "host": host}), domain);
            let converted = std::panic::catch_unwind(|| into_request(e));
            let req =
                converted.unwrap_or_else(|_| panic!("{proto} {host}: the conversion panicked"));
            assert_eq!(req.uri().path(), "/webhooks/x", "{proto} {host}");
        }
        // A bad domain in the request context too: dropped, the path still arrives.
        let e = event(json!({"host": "a:b:c"}), "also bad:x");
        let req = std::panic::catch_unwind(|| into_request(e)).expect("no panic");
        assert_eq!(req.uri().path(), "/webhooks/x");
    }

    #[test]
    fn good_headers_are_left_as_they_are() {
        let e = event(
            json!({"x-forwarded-proto": "https", "host": "hooks.example.com"}),
            "abc.execute-api.eu-west-1.amazonaws.com",
        );
        let req = into_request(e);
        assert_eq!(
            req.uri().to_string(),
            "https://hooks.example.com/webhooks/x"
        );
    }
}
