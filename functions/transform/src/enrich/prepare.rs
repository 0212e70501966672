//! A step made ready from the event (its URL, body, and for a model step its prompt), and its
//! answer read back: the record `result` picks out, a missing one, a failure as `$failure`.

use super::*;

/// A step's call, filled from the event: its URL and its body; for a model step its prompt
/// and what the audit says was sent.
pub(super) struct Prepared {
    pub(super) url: Result<url::Url, String>,
    pub(super) body: Option<Value>,
    pub(super) prompt: Option<String>,
    pub(super) sent: Option<Value>,
}

impl Default for Prepared {
    fn default() -> Self {
        Self {
            url: Err(String::new()),
            body: None,
            prompt: None,
            sent: None,
        }
    }
}

/// A step's `when`, URL and body over the event and the earlier steps' answers; None when its
/// `when` is not true (the step is not called).
pub(super) fn prepare(step: &EnrichStep, scope: &Scope) -> Result<Option<Prepared>, EnrichError> {
    let permanent = |reason, message| EnrichError::permanent(step, reason, message);
    if let Some(when) = &step.when {
        match when.evaluate_in(scope) {
            Ok(Some(Value::Bool(true))) => {}
            Ok(Some(Value::Bool(false)) | None) => return Ok(None),
            Ok(Some(_)) => {
                return Err(permanent(
                    Reason::WhenError,
                    "`when` must yield true or false".into(),
                ));
            }
            Err(e) => return Err(permanent(Reason::WhenError, format!("`when` failed: {e}"))),
        }
    }
    let body = match &step.body {
        None => None,
        Some(mapping) => match mapping.evaluate_in(scope) {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                return Err(permanent(
                    Reason::MappingError,
                    "the body mapping produced nothing".into(),
                ));
            }
            Err(e) => {
                return Err(permanent(
                    Reason::MappingError,
                    format!("the body mapping failed: {e}"),
                ));
            }
        },
    };
    let (mut body, mut prompt, mut sent) = (body, None, None);
    if let Some(model) = &step.model {
        let text = match model.prompt.evaluate_in(scope) {
            Ok(Some(Value::String(text))) => text,
            Ok(other) => {
                return Err(permanent(
                    Reason::MappingError,
                    format!(
                        "the model's prompt must yield text, it yielded {}",
                        other.map_or("nothing".to_string(), |v| format!(
                            "a {}",
                            crate::pipeline::type_name(&v)
                        ))
                    ),
                ));
            }
            Err(e) => {
                return Err(permanent(
                    Reason::MappingError,
                    format!("the model's prompt failed: {e}"),
                ));
            }
        };
        body = Some(model.call.request(&text));
        sent = Some(match &model.audit {
            Some(audit) => audit
                .evaluate_in(scope)
                .ok()
                .flatten()
                .unwrap_or(Value::Null),
            None => Value::Null,
        });
        prompt = Some(text);
    }
    Ok(Some(Prepared {
        url: step.url.render(scope),
        body,
        prompt,
        sent,
    }))
}

/// What of a step's answer is the record: a model step's structured answer (read and checked
/// against its schema), else its `result` over the answer (the whole answer without one).
/// Nothing or null there is a missing record, as a 404 is (`on_missing`). `switchboard check`
/// applies it to a fixture's answers as this function does.
pub fn extract(step: &EnrichStep, answer: Value) -> Result<Value, EnrichError> {
    record(step, answer).map(|(record, _)| record)
}

pub(super) fn record(
    step: &EnrichStep,
    answer: Value,
) -> Result<(Value, Option<switchboard_core::model::Usage>), EnrichError> {
    use switchboard_core::model::AnswerError;
    if let Some(model) = &step.model {
        return match model.call.read(&answer) {
            Ok(read) => Ok((read.record, Some(read.usage))),
            Err(AnswerError::Refused(why)) => Err(EnrichError::permanent(
                step,
                Reason::ModelRefused,
                format!("the model refused: {why}"),
            )),
            Err(AnswerError::Invalid(why)) => Err(EnrichError::permanent(
                step,
                Reason::ModelInvalidAnswer,
                why,
            )),
        };
    }
    let Some(result) = &step.result else {
        return Ok((answer, None));
    };
    match result.evaluate(&answer, &[]) {
        Ok(Some(v)) if !v.is_null() => Ok((v, None)),
        Ok(_) => Err(match step.on_missing {
            OnMissing::Skip => EnrichError::Skip {
                step: step.name.clone(),
            },
            OnMissing::Fail => EnrichError::permanent(
                step,
                Reason::EnrichNotFound,
                "the answer's `result` holds nothing: the record is not there".into(),
            ),
        }),
        Err(e) => Err(EnrichError::permanent(
            step,
            Reason::EnrichInvalidResponse,
            format!("the step's `result` failed on the answer: {e}"),
        )),
    }
}

/// The reason code a step's failure has (`$failure.reason`).
pub fn failure_reason(step: &EnrichStep, e: &EnrichError) -> &'static str {
    match e {
        EnrichError::Permanent { reason, .. } => reason.as_str(),
        EnrichError::Skip { .. } => Reason::EnrichNotFound.as_str(),
        EnrichError::Retryable { .. } if step.model.is_some() => Reason::ModelUnavailable.as_str(),
        EnrichError::Retryable { .. } => Reason::EnrichUnavailable.as_str(),
    }
}

/// `$failure` of a step's fallback: `{reason, message}`.
pub fn failure(step: &EnrichStep, e: &EnrichError) -> Value {
    let message = match e {
        EnrichError::Retryable { message, .. } | EnrichError::Permanent { message, .. } => {
            message.clone()
        }
        EnrichError::Skip { .. } => "the record is not there".to_string(),
    };
    serde_json::json!({"reason": failure_reason(step, e), "message": message})
}

/// A failed step's fallback record over the event (`$failure` bound), when it has one.
pub fn fall_back(
    step: &EnrichStep,
    e: &EnrichError,
    scope: &Scope,
) -> Option<Result<Value, EnrichError>> {
    let fallback = step.fallback.as_ref()?;
    let failure = failure(step, e);
    Some(
        match fallback.evaluate_in_with(scope, &[("failure", &failure)]) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(EnrichError::permanent(
                step,
                Reason::MappingError,
                "the step's fallback produced nothing".into(),
            )),
            Err(err) => Err(EnrichError::permanent(
                step,
                Reason::MappingError,
                format!("the step's fallback failed: {err}"),
            )),
        },
    )
}
