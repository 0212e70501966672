//! The mapping engine behind one small interface: JSONata today (`jsonata-core`), swappable.
//!
//! `jsonata-core`'s `Expression` and `JValue` are not `Send`; its AST is. A [`Mapping`] holds
//! the AST, parsed once at cold start, and each evaluation builds its own evaluator inside a
//! synchronous call with all three limits set and a `catch_unwind` net, so a bad mapping fails
//! one event, never the batch or the process.

use std::panic::{AssertUnwindSafe, catch_unwind};

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorOptions};
use jsonata_core::value::JValue;

/// Limits applied to every evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget per evaluation.
    pub timeout_ms: u64,
    /// Deepest evaluation stack allowed.
    pub max_stack_depth: usize,
    /// Longest sequence an evaluation may build.
    pub max_sequence_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: 1_000,
            max_stack_depth: 500,
            max_sequence_length: 1_000_000,
        }
    }
}

/// Why an expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    message: String,
    code: Option<&'static str>,
}

impl ParseError {
    /// The JSONata error code (`S0201`, …).
    pub fn code(&self) -> Option<&str> {
        self.code.or_else(|| find_code(&self.message))
    }
}

/// The first JSONata error code (a capital letter and four digits, standing alone) in a message.
fn find_code(message: &str) -> Option<&str> {
    let b = message.as_bytes();
    (0..b.len().saturating_sub(4)).find_map(|i| {
        let code = &b[i..i + 5];
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        (boundary
            && code[0].is_ascii_uppercase()
            && code[1..].iter().all(u8::is_ascii_digit)
            && b.get(i + 5).is_none_or(|c| !c.is_ascii_alphanumeric()))
        .then(|| &message[i..i + 5])
    })
}

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The expression raised an error (JSONata code first when it has one, e.g. `T2002: …`).
    #[error("{0}")]
    Failed(String),
    /// The engine panicked; the panic was caught.
    #[error("the mapping engine panicked: {0}")]
    Panicked(String),
}

impl EvalError {
    /// The JSONata error code (`D1012`, `T2002`, …), when the error has one.
    pub fn code(&self) -> Option<&str> {
        match self {
            // The code may follow a context prefix ("Signature validation failed: T0410: …").
            EvalError::Failed(m) => find_code(m),
            EvalError::Panicked(_) => None,
        }
    }
}

/// What a mapping sees besides the event's body: `$headers` (the request's, less credentials),
/// `$event` (`id`, `integration`, `received_at`) and `$enriched` (each enrichment step's
/// result by name) and `$settings` (the definition's `settings`: thresholds, lists, ids the
/// expressions read instead of writing them in). One builder for transform, `switchboard check` and the mapping bench, so a
/// fixture is proof of what the function does only while they stay equal, and they do.
#[derive(Debug, Clone, PartialEq)]
pub struct Bindings {
    /// `$headers`.
    pub headers: serde_json::Value,
    /// `$event`.
    pub event: serde_json::Value,
    /// `$enriched` (`{}` until enrichment ran).
    pub enriched: serde_json::Value,
    /// `$settings` (`{}` when the definition has none).
    pub settings: serde_json::Value,
}

impl Bindings {
    /// The bindings of an event, before enrichment.
    pub fn new(
        headers: serde_json::Value,
        id: impl serde::Serialize,
        integration: &str,
        received_at: impl serde::Serialize,
    ) -> Self {
        Self {
            headers,
            event: serde_json::json!({
                "id": id,
                "integration": integration,
                "received_at": received_at,
            }),
            enriched: serde_json::json!({}),
            settings: serde_json::json!({}),
        }
    }

    /// The same, with the definition's settings.
    pub fn settings(self, settings: serde_json::Value) -> Self {
        Self { settings, ..self }
    }

    /// The same, with enrichment's results.
    pub fn enriched(self, enriched: serde_json::Value) -> Self {
        Self { enriched, ..self }
    }

    /// As a scope's bindings.
    pub fn pairs(&self) -> [(&'static str, &serde_json::Value); 4] {
        self.pairs_with(&self.enriched)
    }

    /// As a scope's bindings, with `$enriched` as enrichment has it so far.
    pub fn pairs_with<'a>(
        &'a self,
        enriched: &'a serde_json::Value,
    ) -> [(&'static str, &'a serde_json::Value); 4] {
        [
            ("headers", &self.headers),
            ("event", &self.event),
            ("enriched", enriched),
            ("settings", &self.settings),
        ]
    }
}

/// One event's input and bindings as the engine's values, converted once and shared by every
/// expression evaluated over that event (a route's `when`, its mapping, every route).
///
/// It holds the engine's `Rc`-based values, so it is neither `Send` nor `Sync`: build it, use
/// it and drop it inside one synchronous stretch (never across an `.await`).
pub struct Scope {
    input: JValue,
    bindings: Vec<(String, JValue)>,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

impl Scope {
    /// A scope over a parsed input (converted by reference, without cloning it first).
    pub fn new(input: &serde_json::Value, bindings: &[(&str, &serde_json::Value)]) -> Self {
        Self {
            input: to_jvalue(input),
            bindings: bindings
                .iter()
                .map(|(name, value)| ((*name).to_string(), to_jvalue(value)))
                .collect(),
        }
    }

    /// A scope over the JSON text of the input, parsed straight into the engine's values (one
    /// pass, no intermediate `serde_json::Value`).
    pub fn from_json(
        input: &str,
        bindings: &[(&str, &serde_json::Value)],
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            input: JValue::from_json_str(input)?,
            bindings: bindings
                .iter()
                .map(|(name, value)| ((*name).to_string(), to_jvalue(value)))
                .collect(),
        })
    }
}

/// A JSON value as the engine's, walking it by reference.
fn to_jvalue(value: &serde_json::Value) -> JValue {
    use serde::Deserialize as _;
    // `&Value` is a serde deserializer; the engine's visitor builds its values straight from it.
    JValue::deserialize(value).unwrap_or(JValue::Null)
}

/// A parsed expression, shareable across threads.
#[derive(Debug)]
pub struct Mapping {
    ast: AstNode,
    limits: Limits,
}

/// Converts the engine's value to JSON the way mappings see it (for callers of
/// [`Mapping::evaluate_jvalue`]).
pub fn jvalue_to_json(value: &JValue) -> serde_json::Value {
    to_json(value)
}

impl Mapping {
    /// Parses `source` once.
    pub fn parse(source: &str, limits: Limits) -> Result<Self, ParseError> {
        let ast = jsonata_core::parser::parse(source).map_err(|e| ParseError {
            code: match e {
                // The engine reports this one without its JSONata code.
                jsonata_core::parser::ParserError::UnclosedComment => Some("S0106"),
                _ => None,
            },
            message: e.to_string(),
        })?;
        Ok(Self { ast, limits })
    }

    /// Evaluates against `input` with `bindings` (names without the `$`). `Ok(None)` is
    /// JSONata's "undefined": the expression produced nothing. To evaluate several expressions
    /// over one input, build a [`Scope`] once and use [`Mapping::evaluate_in`].
    pub fn evaluate(
        &self,
        input: &serde_json::Value,
        bindings: &[(&str, &serde_json::Value)],
    ) -> Result<Option<serde_json::Value>, EvalError> {
        self.evaluate_in(&Scope::new(input, bindings))
    }

    /// Evaluates over a prepared scope. `Ok(None)` is JSONata's "undefined".
    pub fn evaluate_in(&self, scope: &Scope) -> Result<Option<serde_json::Value>, EvalError> {
        Self::defined(self.run(&scope.input, &scope.bindings, self.limits))
    }

    /// Evaluates over a prepared scope with more bindings (a route's `$request`, made after
    /// the scope). `Ok(None)` is JSONata's "undefined".
    pub fn evaluate_in_with(
        &self,
        scope: &Scope,
        extra: &[(&str, &serde_json::Value)],
    ) -> Result<Option<serde_json::Value>, EvalError> {
        let mut bindings = scope.bindings.clone();
        bindings.extend(
            extra
                .iter()
                .map(|(name, value)| ((*name).to_string(), to_jvalue(value))),
        );
        Self::defined(self.run(&scope.input, &bindings, self.limits))
    }

    fn defined(result: Result<JValue, EvalError>) -> Result<Option<serde_json::Value>, EvalError> {
        result.map(|v| {
            if v.is_undefined() {
                None
            } else {
                Some(to_json(&v))
            }
        })
    }

    /// The engine's own value in and out, with explicit limits: for callers (the conformance
    /// suite) that must tell apart what JSON cannot.
    pub fn evaluate_jvalue(
        &self,
        input: JValue,
        bindings: &[(&str, &serde_json::Value)],
        limits: Limits,
    ) -> Result<JValue, EvalError> {
        let bindings: Vec<(String, JValue)> = bindings
            .iter()
            .map(|(name, value)| ((*name).to_string(), to_jvalue(value)))
            .collect();
        self.run(&input, &bindings, limits)
    }

    fn run(
        &self,
        input: &JValue,
        bindings: &[(String, JValue)],
        limits: Limits,
    ) -> Result<JValue, EvalError> {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut context = Context::new();
            for (name, value) in bindings {
                // The engine's values are reference-counted: a binding is shared, not copied.
                context.bind(name.clone(), value.clone());
            }
            let options = EvaluatorOptions {
                timeout_ms: Some(limits.timeout_ms),
                cancel: None,
                max_stack_depth: Some(limits.max_stack_depth),
                max_sequence_length: Some(limits.max_sequence_length),
            };
            Evaluator::with_options(context, options).evaluate(&self.ast, input)
        }));
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(EvalError::Failed(e.message().to_string())),
            Err(panic) => Err(EvalError::Panicked(panic_text(panic.as_ref()))),
        }
    }
}

/// The engine's value as JSON, with whole numbers written as integers (`130`, not `130.0`), as
/// JSONata's reference implementation writes them.
fn to_json(value: &JValue) -> serde_json::Value {
    let mut json = serde_json::Value::from(value);
    integral_numbers(&mut json);
    json
}

fn integral_numbers(value: &mut serde_json::Value) {
    /// Beyond 2^53 an f64 no longer holds every integer; keep those as they are.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT) {
                *n = serde_json::Number::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn is_send_sync<T: Send + Sync>() {}

    #[test]
    fn mappings_cross_threads() {
        is_send_sync::<Mapping>();
    }

    #[test]
    fn maps_with_bindings() {
        let m = Mapping::parse(
            r#"{ "name": name, "total": $sum(items.price), "via": $event.integration }"#,
            Limits::default(),
        )
        .unwrap();
        let out = m
            .evaluate(
                &json!({"name": "Ada", "items": [{"price": 2}, {"price": 3.5}]}),
                &[("event", &json!({"integration": "example"}))],
            )
            .unwrap();
        assert_eq!(
            out,
            Some(json!({"name": "Ada", "total": 5.5, "via": "example"}))
        );
    }

    #[test]
    fn whole_numbers_are_written_as_integers() {
        let m = Mapping::parse(
            r#"{ "a": 120.5 + 9.5, "b": [1, 2.25], "c": -0 }"#,
            Limits::default(),
        )
        .unwrap();
        let out = m.evaluate(&json!({}), &[]).unwrap().unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"a":130,"b":[1,2.25],"c":0}"#
        );
    }

    #[test]
    fn undefined_is_none() {
        let m = Mapping::parse("missing.field", Limits::default()).unwrap();
        assert_eq!(m.evaluate(&json!({}), &[]).unwrap(), None);
    }

    #[test]
    fn errors_and_runaway_expressions_fail_with_a_reason() {
        let m = Mapping::parse(r#"$number("x") + $error("boom")"#, Limits::default()).unwrap();
        assert!(m.evaluate(&json!({}), &[]).is_err());
        let limits = Limits {
            timeout_ms: 50,
            ..Limits::default()
        };
        let forever =
            Mapping::parse("($f := function($n){ $f($n + 1) + 1 }; $f(0))", limits).unwrap();
        let err = forever.evaluate(&json!({}), &[]).unwrap_err();
        assert!(
            matches!(err.code(), Some("D1011" | "D1012" | "U1001")),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_are_reported_at_parse() {
        assert!(Mapping::parse("{ name: ", Limits::default()).is_err());
    }
}
