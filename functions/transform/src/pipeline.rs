//! The pure part of transform: what one route makes of one event (skip, a request, or a
//! rejection with its reason). The handler and `switchboard check` both run it, so a fixture
//! proves exactly what the deployed function will do.

use std::collections::BTreeMap;

use serde_json::Value;
use switchboard_core::contract;
use switchboard_core::integration::Route;
use switchboard_core::mapping::Scope;
use switchboard_core::reason::Reason;

/// What a route makes of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteOutcome {
    /// A request to queue for delivery.
    Deliver(Request),
    /// A request to hold for a person (the route's `review_when` said so, and why).
    Review(Request, String),
    /// Nothing for this route.
    Skipped(Skip),
    /// A permanent failure: the event goes to the events DLQ for this route.
    Rejected(Rejection),
}

/// Why a route skipped an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The route's `when` was not true.
    When,
    /// The mapping produced nothing (JSONata's undefined).
    NothingMapped,
}

impl Skip {
    /// The reason as metrics and logs name it.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::When => "when_false",
            Skip::NothingMapped => "nothing_mapped",
        }
    }
}

/// A permanent failure, with a stable reason code and a message (no body, no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `when_error`, `mapping_error`, `invalid_request`, `contract_violation`.
    pub reason: Reason,
    /// What went wrong.
    pub message: String,
}

/// The request a route's mapping asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The JSON body.
    pub body: Value,
    /// The method, when the mapping chose one.
    pub method: Option<String>,
    /// The path and query on the route's host, when the mapping chose one.
    pub path: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Its record and version, when the route keeps changes in order.
    pub order: Option<switchboard_core::ordering::OrderStamp>,
}

impl Request {
    /// The request as a fixture states it: the body for a plain route, the
    /// `{"body", "headers", "method", "path"}` object (what was set) for a `map_request` route.
    pub fn to_fixture(&self, map_request: bool) -> Value {
        if !map_request {
            return self.body.clone();
        }
        let mut out = serde_json::Map::new();
        out.insert("body".into(), self.body.clone());
        if let Some(m) = &self.method {
            out.insert("method".into(), Value::String(m.clone()));
        }
        if let Some(p) = &self.path {
            out.insert("path".into(), Value::String(p.clone()));
        }
        if !self.headers.is_empty() {
            out.insert(
                "headers".into(),
                Value::Object(
                    self.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            );
        }
        Value::Object(out)
    }
}

/// Methods a mapping may choose.
const METHODS: [&str; 5] = ["POST", "PUT", "PATCH", "DELETE", "GET"];

/// Headers a mapping may not set: the transport's, and the credentials the definition owns.
fn reserved_header(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "authorization"
            | "proxy-authorization"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "te"
            | "upgrade"
            | "idempotency-key"
            | "content-type"
    ) || name.starts_with("webhook-")
}

/// Runs a route: `when`, the mapping, the request shape, the contract, `review_when` (over
/// the event, with the mapped request as `$request`: `{body, method, path, headers}`).
///
/// The scope is the event's body and bindings, converted once for every route.
pub fn run_route(route: &Route, scope: &Scope) -> RouteOutcome {
    let reject = |reason, message: String| RouteOutcome::Rejected(Rejection { reason, message });
    if let Some(when) = &route.when {
        match when.evaluate_in(scope) {
            Ok(Some(Value::Bool(true))) => {}
            Ok(Some(Value::Bool(false)) | None) => return RouteOutcome::Skipped(Skip::When),
            Ok(Some(other)) => {
                return reject(
                    Reason::WhenError,
                    format!(
                        "`when` must yield true or false, it yielded a {}",
                        type_name(&other)
                    ),
                );
            }
            Err(e) => return reject(Reason::WhenError, format!("`when` failed: {e}")),
        }
    }
    let mapped = match route.mapping.evaluate_in(scope) {
        Ok(Some(v)) => v,
        Ok(None) => return RouteOutcome::Skipped(Skip::NothingMapped),
        Err(e) => return reject(Reason::MappingError, e.to_string()),
    };
    let mut request = if route.map_request {
        match request_from(mapped) {
            Ok(r) => r,
            Err(m) => return reject(Reason::InvalidRequest, m),
        }
    } else {
        Request {
            body: mapped,
            method: None,
            path: None,
            headers: BTreeMap::new(),
            order: None,
        }
    };
    if let Some(contract) = &route.contract {
        let violations = contract.violations(&request.body);
        if !violations.is_empty() {
            return reject(
                Reason::ContractViolation,
                format!(
                    "{} violation(s) of the route's contract: {}",
                    violations.len(),
                    contract::describe(&violations)
                ),
            );
        }
    }
    if let Some(ordering) = &route.ordering {
        match stamp(ordering, scope) {
            Ok(stamp) => request.order = Some(stamp),
            Err(m) => return reject(Reason::MappingError, m),
        }
    }
    let Some(review_when) = &route.review_when else {
        return RouteOutcome::Deliver(request);
    };
    let mapped = request.to_fixture(true);
    match review_when.evaluate_in_with(scope, &[("request", &mapped)]) {
        Ok(Some(Value::Bool(false)) | None) => RouteOutcome::Deliver(request),
        Ok(Some(Value::Bool(true))) => {
            RouteOutcome::Review(request, "`review_when` was true".into())
        }
        Ok(Some(Value::String(why))) if !why.is_empty() => RouteOutcome::Review(request, why),
        Ok(Some(other)) => reject(
            Reason::WhenError,
            format!(
                "`review_when` must yield true, false or a text saying why, it yielded a {}",
                type_name(&other)
            ),
        ),
        Err(e) => reject(Reason::WhenError, format!("`review_when` failed: {e}")),
    }
}

/// A `map_request` method: one of `METHODS`, upper-cased.
fn request_method(value: Value) -> Result<String, String> {
    let Value::String(m) = value else {
        return Err(format!(
            "method must be a string, not a {}",
            type_name(&value)
        ));
    };
    let upper = m.to_ascii_uppercase();
    if !METHODS.contains(&upper.as_str()) {
        return Err(format!("method `{m}` is not one of {}", METHODS.join(", ")));
    }
    Ok(upper)
}

/// A `map_request` path: the rule deliver applies to every task, said here in its two parts.
fn request_path(value: Value) -> Result<String, String> {
    use switchboard_core::url_template::{path_climbs, path_is_safe};
    let Value::String(p) = value else {
        return Err(format!(
            "path must be a string, not a {}",
            type_name(&value)
        ));
    };
    if path_is_safe(&p) {
        Ok(p)
    } else if path_climbs(&p) {
        Err("path must hold no `.` or `..` segment (a URL resolves them: `/a/../b` is `/b`)".into())
    } else {
        Err("path must start with a single `/` and hold no `\\`, `#` or control characters (the host comes from the definition)".into())
    }
}

/// `map_request` headers: valid names and values, none Switchboard or the definition sets.
fn request_headers(value: Value) -> Result<BTreeMap<String, String>, String> {
    let Value::Object(h) = value else {
        return Err(format!(
            "headers must be an object, not a {}",
            type_name(&value)
        ));
    };
    let mut headers = BTreeMap::new();
    for (name, value) in h {
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(format!("`{name}` is not a valid header name"));
        }
        if reserved_header(&lower) {
            return Err(format!(
                "header `{name}` is set by Switchboard or the definition, not by a mapping"
            ));
        }
        let value = match value {
            Value::String(s) => s,
            v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
            other => {
                return Err(format!(
                    "header `{name}` must be a string, not a {}",
                    type_name(&other)
                ));
            }
        };
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(format!("header `{name}` has a value HTTP cannot carry"));
        }
        headers.insert(lower, value);
    }
    Ok(headers)
}

/// Reads a `map_request` result: `{"body": .., "headers": {..}, "method": .., "path": ..}`.
pub fn request_from(mapped: Value) -> Result<Request, String> {
    let Value::Object(mut o) = mapped else {
        return Err(format!(
            "with map_request the mapping must yield an object {{body, headers, method, path}}, it yielded a {}",
            type_name(&mapped)
        ));
    };
    if let Some(key) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "body" | "headers" | "method" | "path"))
    {
        return Err(format!(
            "unknown request key `{key}`: expected body, headers, method, path"
        ));
    }
    let method = o.remove("method").map(request_method).transpose()?;
    let path = o.remove("path").map(request_path).transpose()?;
    let headers = o
        .remove("headers")
        .map(request_headers)
        .transpose()?
        .unwrap_or_default();
    let body = o.remove("body").unwrap_or(Value::Null);
    Ok(Request {
        body,
        method,
        path,
        headers,
        order: None,
    })
}

/// The event's record and version for an ordered route: both must be text or a number.
fn stamp(
    ordering: &switchboard_core::ordering::Ordering,
    scope: &Scope,
) -> Result<switchboard_core::ordering::OrderStamp, String> {
    use switchboard_core::ordering::{OrderStamp, stamp_part};
    let part = |name: &str, m: &switchboard_core::mapping::Mapping| {
        let v = m
            .evaluate_in(scope)
            .map_err(|e| format!("`ordering.{name}` failed: {e}"))?;
        stamp_part(v).ok_or_else(|| {
            format!("`ordering.{name}` yielded no text or number: the change cannot be ordered")
        })
    };
    let key = match part("key", &ordering.key)? {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Ok(OrderStamp {
        key,
        version: part("version", &ordering.version)?,
    })
}

/// A JSON value's type, as messages name it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_object_is_read_and_checked() {
        let r = request_from(json!({
            "body": {"a": 1},
            "method": "put",
            "path": "/v1/orders/7?x=1",
            "headers": {"X-Priority": "high", "X-Count": 2}
        }))
        .unwrap();
        assert_eq!(r.method.as_deref(), Some("PUT"));
        assert_eq!(r.path.as_deref(), Some("/v1/orders/7?x=1"));
        assert_eq!(r.headers["x-priority"], "high");
        assert_eq!(r.headers["x-count"], "2");
        assert_eq!(r.body, json!({"a": 1}));

        for (bad, says) in [
            (json!([1]), "must yield an object"),
            (
                json!({"body": 1, "url": "https://evil.example"}),
                "unknown request key `url`",
            ),
            (json!({"path": "//evil.example/x"}), "single `/`"),
            (json!({"path": "https://evil.example/x"}), "single `/`"),
            (json!({"path": "/ok/../admin"}), "`..` segment"),
            (json!({"path": "/ok/%2E%2e/admin?x=1"}), "`..` segment"),
            (json!({"path": "/ok/./x"}), "`..` segment"),
            (json!({"method": "CONNECT"}), "not one of"),
            (
                json!({"headers": {"Host": "evil.example"}}),
                "set by Switchboard",
            ),
            (
                json!({"headers": {"Authorization": "Bearer x"}}),
                "set by Switchboard",
            ),
            (json!({"headers": {"x": {"a": 1}}}), "must be a string"),
            (json!({"headers": {"x": "a\nb"}}), "cannot carry"),
        ] {
            let e = request_from(bad.clone()).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn review_when_holds_a_request_with_its_why_and_sees_the_mapped_request() {
        let dir = switchboard_shared::memory::DefinitionsDir::with(
            "shop",
            "source:\n  verify: none\n  allow_unsigned: true\nroutes:\n  - id: r\n    map: '{\"total\": total}'\n    review_when: |\n      $request.body.total > 1000 ? 'over 1000: ' & $string($request.body.total) : (flag = 'odd' ? true : (flag = 'bad' ? 42 : false))\n    deliver:\n      url: https://example.com/hook\n",
        )
        .unwrap();
        let all: switchboard_core::integration::Integrations<
            switchboard_core::integration::Integration,
        > = switchboard_core::integration::Integrations::load_dir(dir.path()).unwrap();
        let route = &all.get("shop").unwrap().routes[0];
        let run = |event: Value| run_route(route, &Scope::new(&event, &[]));
        assert!(matches!(
            run(json!({"total": 10})),
            RouteOutcome::Deliver(_)
        ));
        match run(json!({"total": 5000})) {
            RouteOutcome::Review(request, why) => {
                assert_eq!(why, "over 1000: 5000");
                assert_eq!(request.body, json!({"total": 5000}));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(json!({"total": 1, "flag": "odd"})),
            RouteOutcome::Review(_, why) if why == "`review_when` was true"
        ));
        assert!(matches!(
            run(json!({"total": 1, "flag": "bad"})),
            RouteOutcome::Rejected(Rejection {
                reason: Reason::WhenError,
                ..
            })
        ));
    }
}
