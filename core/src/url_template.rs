//! URL templates for enrichment calls: `https://api.example.com/contacts/{objectId}?a=b`, each
//! `{...}` a JSONata expression over the event. The scheme, host and port are fixed text (a
//! placeholder may only follow the first `/` of the path) and every value is percent-encoded, so
//! a payload can choose which record is fetched but never which server is asked.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use crate::mapping::{Limits, Mapping, Scope};

/// Everything but the unreserved characters of RFC 3986 is encoded in a value.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

enum Part {
    Text(String),
    Value(Mapping),
}

/// A parsed template.
pub struct UrlTemplate {
    text: String,
    parts: Vec<Part>,
    /// The text before the first placeholder, as a URL: scheme, host and port are this one's.
    fixed: Url,
}

impl fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UrlTemplate").field(&self.text).finish()
    }
}

impl UrlTemplate {
    /// Parses a template; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("`{text}`: a `{{` is not closed"))?;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let expression = &rest[open + 1..close];
            if expression.contains('{') {
                return Err(format!(
                    "`{text}`: placeholders hold a plain JSONata path, without braces"
                ));
            }
            let mapping = Mapping::parse(expression, Limits::default()).map_err(|e| {
                format!("`{text}`: the placeholder `{{{expression}}}` does not parse: {e}")
            })?;
            parts.push(Part::Value(mapping));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let head = match parts.first() {
            Some(Part::Text(head)) => head.as_str(),
            _ => "",
        };
        let fixed = Url::parse(head).map_err(|e| {
            format!("`{text}`: the text before the first placeholder must be a URL: {e}")
        })?;
        let authority_end = head.find("://").map(|i| i + 3).unwrap_or(0);
        if !matches!(fixed.scheme(), "http" | "https") || !head[authority_end..].contains('/') {
            return Err(format!(
                "`{text}`: must be an http(s) URL whose scheme, host and port are fixed (placeholders only in the path and query)"
            ));
        }
        Ok(Self {
            text: text.to_string(),
            parts,
            fixed,
        })
    }

    /// The fixed part (scheme, host, port and the path up to the first placeholder), for the
    /// network guard.
    pub fn fixed(&self) -> &Url {
        &self.fixed
    }

    /// Fills the template from the event's scope. A placeholder must yield a string, a number
    /// or a boolean.
    pub fn render(&self, scope: &Scope) -> Result<Url, String> {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(m) => {
                    let value = m.evaluate_in(scope).map_err(|e| e.to_string())?;
                    let text = match value {
                        Some(serde_json::Value::String(s)) => s,
                        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                            v.to_string()
                        }
                        Some(_) => return Err("a placeholder yielded an object or array".into()),
                        None => return Err("a placeholder yielded nothing".into()),
                    };
                    out.extend(utf8_percent_encode(&text, VALUE));
                }
            }
        }
        if climbs(&out) {
            return Err("a placeholder yielded a `.` or `..` path segment".into());
        }
        let url = Url::parse(&out).map_err(|e| format!("the filled URL is not valid: {e}"))?;
        if url.origin() != self.fixed.origin() {
            return Err("the filled URL points at another server".into());
        }
        Ok(url)
    }
}

/// Whether the path of `url` (text, before parsing) has a `.` or `..` segment, percent-encoded
/// or not: the URL parser would resolve it and the request would climb out of the template's
/// path.
fn climbs(url: &str) -> bool {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[after_scheme..];
    match rest.find('/') {
        Some(i) => path_climbs(&rest[i..]),
        None => false,
    }
}

/// Whether a mapped request's path (and query) may be set on a route's URL: it starts with a
/// single `/`, holds no `\` (a URL parser reads it as `/` for http(s)), `#`, control
/// character, or `.`/`..` segment. Deliver checks every task with it, whoever made it.
pub fn path_is_safe(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains(['\\', '#'])
        && !path.chars().any(char::is_control)
        && !path_climbs(path)
}

/// Whether a path (and query) has a `.` or `..` segment, percent-encoded or not: a URL parser
/// resolves them, so `/ok/../admin` is sent to `/admin`. A mapped request's path is refused
/// for it, as an enrichment URL is.
pub fn path_climbs(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.split('/').any(|segment| {
        let s = segment.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fills_placeholders_from_the_event_and_encodes_them() {
        let t = UrlTemplate::parse(
            "https://api.example.com/crm/contacts/{objectId}?properties=email&portal={$event.integration}",
        )
        .unwrap();
        let url = t
            .render(&Scope::new(
                &json!({"objectId": 123}),
                &[("event", &json!({"integration": "hub spot"}))],
            ))
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/crm/contacts/123?properties=email&portal=hub%20spot"
        );
    }

    #[test]
    fn a_payload_cannot_change_the_server_or_escape_the_path() {
        let t = UrlTemplate::parse("https://api.example.com/c/{id}").unwrap();
        for id in [
            "../../admin",
            "x/../../y",
            "@evil.com",
            "//evil.com/",
            "a?b#c",
        ] {
            let url = t.render(&Scope::new(&json!({ "id": id }), &[])).unwrap();
            assert_eq!(url.host_str(), Some("api.example.com"), "{id}");
            assert_eq!(url.path_segments().unwrap().count(), 2, "{id}: {url}");
            assert_eq!(url.query(), None, "{id}");
        }
        assert!(
            t.render(&Scope::new(&json!({}), &[])).is_err(),
            "missing value"
        );
        // A whole segment of dots would be resolved by the URL parser: refused, and no value,
        // encoded or not, climbs out of the template's path.
        let deep = UrlTemplate::parse("https://api.example.com/v1/c/{id}/notes").unwrap();
        for id in ["..", ".", "%2e%2e", "%2E.", ".%2e", "..%2f..", "%2e%2e%2f"] {
            match deep.render(&Scope::new(&json!({ "id": id }), &[])) {
                Err(_) => {}
                Ok(url) => {
                    let segments: Vec<&str> = url.path_segments().unwrap().collect();
                    assert_eq!(segments.len(), 4, "{id}: {url}");
                    assert_eq!(
                        [segments[0], segments[1], segments[3]],
                        ["v1", "c", "notes"]
                    );
                }
            }
        }
        assert!(deep.render(&Scope::new(&json!({"id": ".."}), &[])).is_err());
        let dots = deep
            .render(&Scope::new(&json!({"id": "a..b"}), &[]))
            .unwrap();
        assert_eq!(dots.path(), "/v1/c/a..b/notes");
        assert!(
            t.render(&Scope::new(&json!({"id": {"a": 1}}), &[]))
                .is_err()
        );
    }

    #[test]
    fn the_server_must_be_fixed_text() {
        for bad in [
            "https://{host}/x",
            "https://api.example.com{path}",
            "{base}/x",
            "ftp://example.com/{id}",
            "https://api.example.com/{id",
            "https://api.example.com/{ {\"a\": 1} }",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad}");
        }
        assert!(UrlTemplate::parse("https://api.example.com/fixed").is_ok());
    }
}
