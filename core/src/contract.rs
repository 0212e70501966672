//! A destination's contract: a JSON Schema (draft 2020-12) that a mapped body must satisfy
//! before it goes out. Compiled once at cold start; no network (remote `$ref`s do not resolve).

use std::fmt;

use serde_json::Value;

/// A compiled contract.
pub struct Contract {
    validator: jsonschema::Validator,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract").finish_non_exhaustive()
    }
}

/// One way a body breaks a contract: where, and what is wrong (without the offending value,
/// so a violation can be logged without logging the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The JSON Pointer of the offending part of the body (`""` for the whole body).
    pub instance_path: String,
    /// What is wrong, values masked (`value is not of type "string"`).
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.instance_path.is_empty() {
            "/"
        } else {
            &self.instance_path
        };
        write!(f, "{path}: {}", self.message)
    }
}

impl Contract {
    /// Compiles a schema as draft 2020-12, with `format` asserted (a contract that says
    /// `"format": "email"` means it).
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(schema)
            .map(|validator| Self { validator })
            .map_err(|e| format!("the schema does not compile: {}", e.masked()))
    }

    /// Every violation, in the order the validator finds them; empty when the body fits.
    pub fn violations(&self, body: &Value) -> Vec<Violation> {
        if self.validator.is_valid(body) {
            return Vec::new();
        }
        self.validator
            .iter_errors(body)
            .map(|e| Violation {
                instance_path: e.instance_path().to_string(),
                message: e.masked().to_string(),
            })
            .collect()
    }
}

/// Violations as one line each (`/Email: value is not a "email"`).
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_violation_is_listed_by_instance_path_without_the_value() {
        let contract = Contract::compile(&json!({
            "type": "object",
            "required": ["LastName", "Company"],
            "properties": {
                "Email": { "type": "string", "format": "email" },
                "LastName": { "type": "string", "minLength": 1 },
                "Tags": { "type": "array", "items": { "type": "string" } }
            }
        }))
        .unwrap();
        assert!(
            contract
                .violations(&json!({"LastName": "Lovelace", "Company": "Analytical"}))
                .is_empty()
        );
        let violations = contract.violations(&json!({
            "Email": "secret-person-at-example",
            "LastName": "",
            "Tags": ["a", 7]
        }));
        let paths: Vec<&str> = violations
            .iter()
            .map(|v| v.instance_path.as_str())
            .collect();
        for path in ["", "/Email", "/LastName", "/Tags/1"] {
            assert!(paths.contains(&path), "{path} in {violations:?}");
        }
        let text = describe(&violations);
        assert!(!text.contains("secret-person"), "{text}");
        assert!(text.contains("/Tags/1"), "{text}");
    }

    #[test]
    fn a_broken_schema_is_refused() {
        let e = Contract::compile(&json!({"type": "strnig"})).unwrap_err();
        assert!(e.contains("does not compile"), "{e}");
    }
}
