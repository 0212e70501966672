//! A model API as an enrichment step: the request in Anthropic's Messages or OpenAI's Chat
//! Completions shape with structured output against the step's JSON Schema, and the answer read
//! back, validated against that schema (a refusal, a cut-off or a malformed answer is a failure
//! with its own reason, never a crash). Also what the providers' errors and rate-limit headers
//! mean. Pure: the caller passes the answer, its headers and the time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::contract::Contract;
use crate::delivery_policy;

/// Which API shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Anthropic Messages (`POST /v1/messages`), `output_config.format` for the schema.
    Anthropic,
    /// OpenAI Chat Completions (`POST /v1/chat/completions`), `response_format` `json_schema`
    /// strict.
    #[serde(rename = "openai")]
    OpenAi,
}

impl Provider {
    /// As definitions and audit records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
        }
    }
}

/// The Anthropic API version this request shape is written against.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A step's model call, as its definition says.
#[derive(Debug)]
pub struct ModelCall {
    /// Which API.
    pub provider: Provider,
    /// The model's id (`claude-sonnet-4-5`, `gpt-4o-mini`): a setting of the definition.
    pub model: String,
    /// The most tokens the answer may take.
    pub max_tokens: u32,
    /// The system prompt.
    pub system: Option<String>,
    /// The schema the answer must satisfy, compiled.
    pub schema: Contract,
    /// The schema as sent to the provider.
    pub schema_json: Value,
}

/// A model's answer, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The structured record, valid against the step's schema.
    pub record: Value,
    /// Tokens in and out, as the provider counted them.
    pub usage: Usage,
    /// The model that answered.
    pub model: Option<String>,
}

/// Tokens, as the provider counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Answer tokens.
    pub output_tokens: u64,
}

/// Why a 2xx answer is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The model declined (Anthropic's `stop_reason: refusal`, OpenAI's `message.refusal`).
    #[error("the model refused: {0}")]
    Refused(String),
    /// Not the shape asked for: not JSON, cut off at `max_tokens`, or against the schema.
    #[error("the model's answer is not the record asked for: {0}")]
    Invalid(String),
}

/// What a failed call to a model API means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Out of quota or over a spend limit: another try cannot help until a person acts.
    Quota(String),
    /// Worth another try (429 rate limit, 529 overloaded, 5xx, 408).
    Retry,
    /// The request itself is wrong.
    Permanent(String),
}

impl ModelCall {
    /// The request body asking for `prompt`, in the provider's shape.
    pub fn request(&self, prompt: &str) -> Value {
        match self.provider {
            Provider::Anthropic => {
                let mut body = json!({
                    "model": self.model,
                    "max_tokens": self.max_tokens,
                    "messages": [{"role": "user", "content": prompt}],
                    "output_config": {"format": {"type": "json_schema", "schema": self.schema_json}},
                });
                if let Some(system) = &self.system {
                    body["system"] = system.clone().into();
                }
                body
            }
            Provider::OpenAi => {
                let mut messages = Vec::new();
                if let Some(system) = &self.system {
                    messages.push(json!({"role": "system", "content": system}));
                }
                messages.push(json!({"role": "user", "content": prompt}));
                json!({
                    "model": self.model,
                    "max_completion_tokens": self.max_tokens,
                    "messages": messages,
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "record", "strict": true, "schema": self.schema_json},
                    },
                })
            }
        }
    }

    /// Headers the provider needs besides the credential.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self.provider {
            Provider::Anthropic => &[("anthropic-version", ANTHROPIC_VERSION)],
            Provider::OpenAi => &[],
        }
    }

    /// Reads a 2xx answer: the structured record, validated against the schema.
    pub fn read(&self, answer: &Value) -> Result<Answer, AnswerError> {
        let (text, usage) = match self.provider {
            Provider::Anthropic => {
                match answer["stop_reason"].as_str() {
                    Some("refusal") => {
                        return Err(AnswerError::Refused(
                            first_text(&answer["content"])
                                .unwrap_or("stop_reason: refusal")
                                .to_string(),
                        ));
                    }
                    Some("max_tokens") => {
                        return Err(AnswerError::Invalid("cut off at max_tokens".to_string()));
                    }
                    _ => {}
                }
                let usage = Usage {
                    input_tokens: answer["usage"]["input_tokens"].as_u64().unwrap_or(0),
                    output_tokens: answer["usage"]["output_tokens"].as_u64().unwrap_or(0),
                };
                (first_text(&answer["content"]), usage)
            }
            Provider::OpenAi => {
                let choice = &answer["choices"][0];
                if let Some(refusal) = choice["message"]["refusal"].as_str() {
                    return Err(AnswerError::Refused(refusal.to_string()));
                }
                if choice["finish_reason"] == "length" {
                    return Err(AnswerError::Invalid(
                        "cut off at max_completion_tokens".to_string(),
                    ));
                }
                let usage = Usage {
                    input_tokens: answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    output_tokens: answer["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                };
                (choice["message"]["content"].as_str(), usage)
            }
        };
        let text = text.ok_or_else(|| AnswerError::Invalid("no text in the answer".into()))?;
        let record: Value = serde_json::from_str(text)
            .map_err(|e| AnswerError::Invalid(format!("not JSON ({e})")))?;
        let violations = self.schema.violations(&record);
        if !violations.is_empty() {
            return Err(AnswerError::Invalid(format!(
                "{} violation(s) of the step's schema: {}",
                violations.len(),
                crate::contract::describe(&violations)
            )));
        }
        Ok(Answer {
            record,
            usage,
            model: answer["model"].as_str().map(str::to_string),
        })
    }
}

fn first_text(content: &Value) -> Option<&str> {
    content
        .as_array()?
        .iter()
        .find(|b| b["type"] == "text")?
        .get("text")?
        .as_str()
}

/// What a non-2xx answer of a model API means: quota and spend limits are never retried
/// (OpenAI's `insufficient_quota`, Anthropic's credit balance or spend limit), rate limits,
/// overload (Anthropic's 529 `overloaded_error`) and 5xx are.
pub fn classify(status: u16, body: &Value) -> ErrorClass {
    let error = &body["error"];
    let kind = [&error["code"], &error["type"]]
        .iter()
        .filter_map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let message = error["message"].as_str().unwrap_or_default();
    let lower = message.to_ascii_lowercase();
    if kind.contains("insufficient_quota")
        || kind.contains("billing")
        || lower.contains("credit balance")
        || lower.contains("spend limit")
        || lower.contains("exceeded your current quota")
    {
        return ErrorClass::Quota(if message.is_empty() {
            kind
        } else {
            message.to_string()
        });
    }
    if matches!(status, 408 | 409 | 429 | 529) || status >= 500 {
        return ErrorClass::Retry;
    }
    ErrorClass::Permanent(format!(
        "the API answered {status}{}",
        if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        }
    ))
}

/// The longest wait any header may ask for: SQS's 12 h visibility, past which no wait of ours
/// can reach anyway.
pub const MAX_HEADER_WAIT: Duration = delivery_policy::MAX_VISIBILITY;

/// A number of seconds read from outside (a header, an answer) as a wait: negative is none,
/// anything past [`MAX_HEADER_WAIT`] (`inf`, `1e300`) is that, `NaN` is no answer. Never
/// panics, and a sum of such waits cannot overflow.
pub fn bounded_secs(secs: f64) -> Option<Duration> {
    if secs.is_nan() {
        return None;
    }
    Some(
        Duration::try_from_secs_f64(secs.max(0.0))
            .unwrap_or(MAX_HEADER_WAIT)
            .min(MAX_HEADER_WAIT),
    )
}

/// How long a 429 or 529 asks to wait: `retry-after-ms` (OpenAI), else `retry-after` in
/// seconds; at most [`MAX_HEADER_WAIT`].
pub fn retry_after(header: impl Fn(&str) -> Option<String>) -> Option<Duration> {
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return bounded_secs(ms / 1000.0);
    }
    header("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(bounded_secs)
}

/// What the rate-limit headers say of the requests left: how many remain in the window, and
/// when it resets. OpenAI: `x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests`
/// (`1s`, `6m0s`, `20ms`); Anthropic: `anthropic-ratelimit-requests-remaining` and
/// `-requests-reset` (an RFC 3339 time). Tokens are paced the same way when they run out
/// first (`-tokens`, `-input-tokens`, `-output-tokens`).
pub fn pacing(header: impl Fn(&str) -> Option<String>, now: DateTime<Utc>) -> Option<Pacing> {
    let mut tightest: Option<Pacing> = None;
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let openai = (
            header(&format!("x-ratelimit-remaining-{kind}")),
            header(&format!("x-ratelimit-reset-{kind}")).and_then(|r| go_duration(&r)),
        );
        let anthropic = (
            header(&format!("anthropic-ratelimit-{kind}-remaining")),
            header(&format!("anthropic-ratelimit-{kind}-reset")).and_then(|r| {
                DateTime::parse_from_rfc3339(r.trim()).ok().map(|t| {
                    (t.with_timezone(&Utc) - now)
                        .to_std()
                        .unwrap_or_default()
                        .min(MAX_HEADER_WAIT)
                })
            }),
        );
        for (remaining, reset) in [openai, anthropic] {
            let (Some(remaining), Some(reset)) =
                (remaining.and_then(|r| r.trim().parse::<u64>().ok()), reset)
            else {
                continue;
            };
            let this = Pacing { remaining, reset };
            tightest = Some(match tightest {
                Some(t) if t.remaining <= this.remaining => t,
                _ => this,
            });
        }
    }
    tightest
}

/// Requests left in a provider's window, and when it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// What is left.
    pub remaining: u64,
    /// How long until the window resets.
    pub reset: Duration,
}

/// A Go-style duration (`1s`, `6m0s`, `20ms`, `1h2m3.5s`), as OpenAI writes its resets; at
/// most [`MAX_HEADER_WAIT`].
pub fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0_f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let (unit, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return None;
        };
        total += number * unit;
        rest = &rest[len..];
    }
    bounded_secs(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(provider: Provider) -> ModelCall {
        let schema_json = json!({
            "type": "object",
            "required": ["intent", "confidence"],
            "additionalProperties": false,
            "properties": {
                "intent": {"type": "string"},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1}
            }
        });
        ModelCall {
            provider,
            model: "m".into(),
            max_tokens: 256,
            system: Some("You triage tickets.".into()),
            schema: Contract::compile(&schema_json).unwrap(),
            schema_json,
        }
    }

    #[test]
    fn each_provider_is_asked_in_its_shape_with_the_schema() {
        let a = call(Provider::Anthropic).request("Where is my order?");
        assert_eq!(a["messages"][0]["content"], "Where is my order?");
        assert_eq!(a["system"], "You triage tickets.");
        assert_eq!(a["output_config"]["format"]["type"], "json_schema");
        assert_eq!(
            a["output_config"]["format"]["schema"]["required"][0],
            "intent"
        );
        let o = call(Provider::OpenAi).request("Where is my order?");
        assert_eq!(o["messages"][0]["role"], "system");
        assert_eq!(o["messages"][1]["content"], "Where is my order?");
        assert_eq!(o["response_format"]["json_schema"]["strict"], true);
        assert_eq!(o["max_completion_tokens"], 256);
    }

    #[test]
    fn answers_are_read_validated_and_refusals_named() {
        let anthropic = call(Provider::Anthropic);
        let good = json!({"model": "m", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "{\"intent\": \"shipping\", \"confidence\": 0.9}"}],
            "usage": {"input_tokens": 812, "output_tokens": 41}});
        let read = anthropic.read(&good).unwrap();
        assert_eq!(read.record["intent"], "shipping");
        assert_eq!(read.usage.input_tokens, 812);
        let off_schema = json!({"stop_reason": "end_turn",
            "content": [{"type": "text", "text": "{\"intent\": \"shipping\", \"confidence\": 7}"}]});
        assert!(
            matches!(anthropic.read(&off_schema), Err(AnswerError::Invalid(m)) if m.contains("/confidence"))
        );
        let prose =
            json!({"stop_reason": "end_turn", "content": [{"type": "text", "text": "Sure!"}]});
        assert!(
            matches!(anthropic.read(&prose), Err(AnswerError::Invalid(m)) if m.contains("not JSON"))
        );
        let refused = json!({"stop_reason": "refusal", "content": []});
        assert!(matches!(
            anthropic.read(&refused),
            Err(AnswerError::Refused(_))
        ));

        let openai = call(Provider::OpenAi);
        let good = json!({"model": "m", "choices": [{"finish_reason": "stop", "message": {"role": "assistant",
            "content": "{\"intent\": \"billing\", \"confidence\": 0.4}", "refusal": null}}],
            "usage": {"prompt_tokens": 700, "completion_tokens": 30}});
        assert_eq!(openai.read(&good).unwrap().record["intent"], "billing");
        let refused = json!({"choices": [{"message": {"content": null, "refusal": "I can't help with that."}}]});
        assert_eq!(
            openai.read(&refused),
            Err(AnswerError::Refused("I can't help with that.".into()))
        );
        let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "{\"intent\""}}]});
        assert!(matches!(openai.read(&cut), Err(AnswerError::Invalid(_))));
    }

    #[test]
    fn quota_is_never_retried_and_overload_is() {
        let openai_quota = json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "code": "insufficient_quota"}});
        assert!(matches!(classify(429, &openai_quota), ErrorClass::Quota(_)));
        let anthropic_credit = json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "Your credit balance is too low to access the Anthropic API."}});
        assert!(matches!(
            classify(400, &anthropic_credit),
            ErrorClass::Quota(_)
        ));
        let rate = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}});
        assert_eq!(classify(429, &rate), ErrorClass::Retry);
        let overloaded = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert_eq!(classify(529, &overloaded), ErrorClass::Retry);
        assert_eq!(classify(503, &Value::Null), ErrorClass::Retry);
        assert!(
            matches!(classify(400, &json!({"error": {"message": "bad schema"}})), ErrorClass::Permanent(m) if m.contains("bad schema"))
        );
    }

    #[test]
    fn rate_limit_headers_give_what_is_left_and_when_it_resets() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let openai = h(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1.5s"),
            ("x-ratelimit-remaining-tokens", "149000"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(
            pacing(openai, now),
            Some(Pacing {
                remaining: 0,
                reset: Duration::from_millis(1500)
            })
        );
        let anthropic = h(&[
            ("anthropic-ratelimit-requests-remaining", "3"),
            ("anthropic-ratelimit-requests-reset", "2026-12-01T10:00:02Z"),
        ]);
        assert_eq!(
            pacing(anthropic, now),
            Some(Pacing {
                remaining: 3,
                reset: Duration::from_secs(2)
            })
        );
        assert_eq!(pacing(h(&[]), now), None);
        assert_eq!(
            retry_after(h(&[("retry-after-ms", "250"), ("retry-after", "1")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(h(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("soon"), None);
    }

    #[test]
    fn no_header_value_panics_and_every_wait_is_bounded() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let values = [
            "inf",
            "-inf",
            "NaN",
            "1e300",
            "-1e300",
            "1e308",
            "99999999999999999999",
            "99999999999999999999h",
            "1e300h",
            "9223372036854775807ms",
            "18446744073709551616s",
            "0.000000001ns",
            "",
            " ",
            "-5",
            "1.5",
            "2",
            "1h1e300s",
            "..s",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "+275760-09-13T00:00:00Z",
        ];
        let names = [
            "retry-after-ms",
            "retry-after",
            "x-ratelimit-reset-requests",
            "anthropic-ratelimit-requests-reset",
        ];
        for name in names {
            for value in values {
                let h = |n: &str| match n {
                    "x-ratelimit-remaining-requests" | "anthropic-ratelimit-requests-remaining" => {
                        Some("0".to_string())
                    }
                    n if n == name => Some(value.to_string()),
                    _ => None,
                };
                let waits = [retry_after(h), pacing(h, now).map(|p| p.reset)];
                for wait in waits.into_iter().flatten() {
                    assert!(wait <= MAX_HEADER_WAIT, "{name}: {value} -> {wait:?}");
                    // What enrichment does with a wait: add it to a clock and to other waits.
                    let _ = std::time::Instant::now() + wait + wait;
                }
            }
        }
        assert_eq!(bounded_secs(f64::INFINITY), Some(MAX_HEADER_WAIT));
        assert_eq!(bounded_secs(f64::NAN), None);
        assert_eq!(bounded_secs(-3.0), Some(Duration::ZERO));
        assert_eq!(
            retry_after(|n: &str| (n == "retry-after-ms").then(|| "1e300".to_string())),
            Some(MAX_HEADER_WAIT)
        );
    }
}
