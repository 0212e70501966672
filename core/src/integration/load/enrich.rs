//! An enrichment step, validated: its name, where it calls (the network guard's literal check),
//! its timing (timeout, budget), its request (method, body) or its model call, and its
//! expressions.

use super::*;

/// An error placed at a field of the step.
type Err<'a> = &'a dyn Fn(&str, String) -> DefinitionError;

/// One enrichment step, validated against the steps before it; `err` places an error at a
/// field of the step.
pub(super) fn enrich_step(
    file: &Path,
    step: EnrichFile,
    before: &[EnrichStep],
    err: Err<'_>,
) -> Result<EnrichStep, DefinitionError> {
    step_name(&step.name, before, err)?;
    let url = UrlTemplate::parse(&step.url).map_err(|m| err("url", m))?;
    let access = Access {
        allow_private_network: step.allow_private_network,
        allow_http: step.allow_http,
    };
    network::check_literal(url.fixed(), access).map_err(|b| err("url", b.to_string()))?;
    step.auth.validate().map_err(|m| err("auth", m))?;
    let (timeout, budget) = timing(&step, err)?;
    let max_response_bytes = match step.max_response_bytes {
        Some(0) => return Err(err("max_response_bytes", "must be at least 1".into())),
        Some(n) => n,
        None => DEFAULT_ENRICH_RESPONSE_BYTES,
    };
    let check = response_check(step.success.as_deref(), step.retry_when.as_deref(), "", err)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let model = step
        .model
        .as_ref()
        .map(|m| model_step(dir, m, err))
        .transpose()?;
    let (method, body) = request(dir, &step, model.is_some(), err)?;
    let optional =
        |f: &str, text: &Option<String>| text.as_deref().map(|t| expression(f, t, err)).transpose();
    Ok(EnrichStep {
        check,
        when: optional("when", &step.when)?,
        method,
        body,
        result: optional("result", &step.result)?,
        model,
        budget,
        limits: step.limits,
        fallback: optional("fallback", &step.fallback)?,
        name: step.name,
        url,
        auth: step.auth,
        timeout,
        on_missing: step.on_missing,
        access,
        max_response_bytes,
    })
}

fn expression(field: &str, text: &str, err: Err<'_>) -> Result<Mapping, DefinitionError> {
    Mapping::parse(text, Limits::default())
        .map_err(|e| err(field, format!("the JSONata expression does not parse: {e}")))
}

/// A name read as `$enriched.<name>`: a-z, 0-9 and '_', once per integration.
fn step_name(name: &str, before: &[EnrichStep], err: Err<'_>) -> Result<(), DefinitionError> {
    if !valid_id(name) || name.contains('-') {
        return Err(err(
            "name",
            format!(
                "`{name}` is not a valid step name: use a-z, 0-9 and '_' (it is read as $enriched.{name})"
            ),
        ));
    }
    if before.iter().any(|other| other.name == name) {
        return Err(err("name", format!("step name `{name}` is used twice")));
    }
    Ok(())
}

/// One call's timeout (more than 0, at most `MAX_ENRICH_TIMEOUT`) and the budget of all its
/// calls (at least the timeout, at most `MAX_ENRICH_TIMEOUT`).
fn timing(
    step: &EnrichFile,
    err: Err<'_>,
) -> Result<(std::time::Duration, Option<std::time::Duration>), DefinitionError> {
    let timeout = match &step.timeout {
        Some(t) => t.parse().map_err(|m| err("timeout", m))?,
        None => DEFAULT_ENRICH_TIMEOUT,
    };
    if timeout > MAX_ENRICH_TIMEOUT || timeout.is_zero() {
        return Err(err(
            "timeout",
            format!(
                "must be more than 0 and at most {}s (transform's function timeout must outlast it)",
                MAX_ENRICH_TIMEOUT.as_secs()
            ),
        ));
    }
    let budget = step
        .budget
        .as_ref()
        .map(|b| b.parse().map_err(|m| err("budget", m)))
        .transpose()?;
    if let Some(b) = budget
        && (b > MAX_ENRICH_TIMEOUT || b < timeout)
    {
        return Err(err(
            "budget",
            format!(
                "must be at least the step's timeout and at most {}s (transform's function timeout must outlast it)",
                MAX_ENRICH_TIMEOUT.as_secs()
            ),
        ));
    }
    Ok((timeout, budget))
}

/// The step's method and body: a model step POSTs what its prompt builds (no `method`, `body`
/// or `result` of its own); a GET sends no body, a POST or PUT needs one.
fn request(
    dir: &Path,
    step: &EnrichFile,
    model: bool,
    err: Err<'_>,
) -> Result<(EnrichMethod, Option<Mapping>), DefinitionError> {
    if model && (step.body.is_some() || step.result.is_some() || step.method.is_some()) {
        return Err(err(
            "model",
            "a model step POSTs a body built from `model.prompt`, and its record is the model's answer: no `method`, `body` or `result`".into(),
        ));
    }
    if model {
        return Ok((EnrichMethod::Post, None));
    }
    let method = match step
        .method
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("GET") => EnrichMethod::Get,
        Some("POST") => EnrichMethod::Post,
        Some("PUT") => EnrichMethod::Put,
        Some(other) => {
            return Err(err(
                "method",
                format!(
                    "`{other}` is not GET, POST or PUT (an enrichment step reads, it does not change)"
                ),
            ));
        }
    };
    let body = match (&step.body, method) {
        (Some(_), EnrichMethod::Get) => {
            return Err(err(
                "body",
                "a GET sends no body: set `method: POST`".into(),
            ));
        }
        (None, EnrichMethod::Post | EnrichMethod::Put) => {
            return Err(err(
                "body",
                format!(
                    "a {} needs a body: a JSONata mapping (inline or a .jsonata file)",
                    method.as_str()
                ),
            ));
        }
        (Some(b), _) => {
            let source = mapping_source(dir, b).map_err(|m| err("body", m))?;
            Some(expression("body", &source, err)?)
        }
        (None, _) => None,
    };
    Ok((method, body))
}

/// An enrichment step's `model:` block, validated: the prompt, the schema (compiled, and as
/// sent), a schema the providers' strict modes take (an object at the top).
fn model_step(
    dir: &Path,
    def: &ModelFile,
    err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<ModelStep, DefinitionError> {
    let expression = |f: &str, text: &str| {
        Mapping::parse(text, Limits::default())
            .map_err(|e| err(f, format!("the JSONata expression does not parse: {e}")))
    };
    let prompt_source = mapping_source(dir, &def.prompt).map_err(|m| err("model.prompt", m))?;
    let prompt = expression("model.prompt", &prompt_source)?;
    let audit = def
        .audit
        .as_deref()
        .map(|a| expression("model.audit", a))
        .transpose()?;
    let (schema_json, from) = schema_json(dir, &def.schema).map_err(|m| err("model.schema", m))?;
    if schema_json.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(err(
            "model.schema",
            "structured output needs an object schema (`type: object` at the top)".into(),
        ));
    }
    let schema =
        Contract::compile(&schema_json).map_err(|m| err("model.schema", format!("{from}{m}")))?;
    if def.name.trim().is_empty() {
        return Err(err(
            "model.name",
            "name the model (`claude-sonnet-4-5`, `gpt-4o-mini`)".into(),
        ));
    }
    Ok(ModelStep {
        call: crate::model::ModelCall {
            provider: def.provider,
            model: def.name.clone(),
            max_tokens: def.max_tokens.unwrap_or(1024),
            system: def.system.clone(),
            schema,
            schema_json,
        },
        prompt,
        audit,
        audit_prompt: def.audit_prompt,
    })
}
