//! Loading a whole definition file, part by part, each error naming its file and field.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use url::Url;

use crate::contract::Contract;
use crate::mapping::{Limits, Mapping};
use crate::network::{self, Access};
use crate::review::ReviewPolicy;
use crate::url_template::UrlTemplate;

use super::*;

mod review;

pub(in crate::integration) use review::review_policy;
use review::{longest_schedule, review_fits_the_queue};

/// A [`DefinitionError`] for a field of a file.
pub(super) fn error(file: &Path, field: &str, message: String) -> DefinitionError {
    DefinitionError {
        file: file.to_path_buf(),
        field: field.to_string(),
        message,
    }
}

/// An error for a field of a route (`routes[1].deliver.url`), naming the route.
pub(super) fn route_error(
    file: &Path,
    i: usize,
    route: &str,
    field: &str,
    m: String,
) -> DefinitionError {
    error(
        file,
        &format!("routes[{i}].{field}"),
        format!("route `{route}`: {m}"),
    )
}

/// Reads a definition file into one of its shapes; an unknown key names the file and the key.
pub(super) fn read<T: DeserializeOwned>(file: &Path) -> Result<T, DefinitionError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| error(file, "", format!("cannot read: {e}")))?;
    let de = serde_norway::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        error(file, &field, e.into_inner().to_string())
    })
}

/// The integration's id: `id`, or the file's stem.
pub(super) fn definition_id(file: &Path, id: Option<String>) -> Result<String, DefinitionError> {
    let id = id.unwrap_or_else(|| {
        file.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string()
    });
    if !valid_id(&id) {
        return Err(error(
            file,
            "id",
            format!(
                "`{id}` is not a valid id: use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit"
            ),
        ));
    }
    if RESERVED_IDS.contains(&id.as_str()) {
        return Err(error(
            file,
            "id",
            format!(
                "`{id}` is reserved: the archive keeps the model audit records under `audit/`, tasks too large for a message under `tasks/` and its warm-up object at `warm-up`; choose another id"
            ),
        ));
    }
    Ok(id)
}

/// Integration ids the archive's layout holds for itself (an integration's events are kept
/// under `{id}/`; ingest may not write under `audit/` or `tasks/`).
const RESERVED_IDS: [&str; 3] = ["audit", "tasks", "warm-up"];

/// Checks route `i`'s id against the ids of the routes before it.
pub(super) fn route_id<'a>(
    file: &Path,
    i: usize,
    id: &str,
    mut before: impl Iterator<Item = &'a str>,
) -> Result<(), DefinitionError> {
    let at = format!("routes[{i}].id");
    if !valid_id(id) {
        return Err(error(file, &at, format!("`{id}` is not a valid route id")));
    }
    if before.any(|other| other == id) {
        return Err(error(file, &at, format!("route id `{id}` is used twice")));
    }
    Ok(())
}

/// Loads and validates one definition file, whole.
pub fn load_file(file: &Path) -> Result<Integration, DefinitionError> {
    let def: IntegrationFile = read(file)?;
    let id = definition_id(file, def.id)?;
    let source = source(def.source).map_err(|(field, message)| error(file, &field, message))?;
    if def.routes.is_empty() {
        return Err(error(file, "routes", "at least one route is needed".into()));
    }
    let mut enrich: Vec<EnrichStep> = Vec::with_capacity(def.enrich.len());
    for (i, step) in def.enrich.into_iter().enumerate() {
        let step = enrich_step(file, step, &enrich, &|f: &str, m| {
            error(file, &format!("enrich[{i}].{f}"), m)
        })?;
        enrich.push(step);
    }
    let mut routes: Vec<Route> = Vec::with_capacity(def.routes.len());
    for (i, r) in def.routes.into_iter().enumerate() {
        route_id(file, i, &r.id, routes.iter().map(|o| o.id.as_str()))?;
        routes.push(route(file, i, r)?);
    }
    let settings = match def.settings {
        None => serde_json::json!({}),
        Some(v @ serde_json::Value::Object(_)) => v,
        Some(_) => {
            return Err(error(
                file,
                "settings",
                "settings must be a mapping of names to values (read as $settings.<name>)".into(),
            ));
        }
    };
    Ok(Integration {
        id,
        file: file.to_path_buf(),
        source,
        settings,
        enrich,
        routes,
    })
}

/// One enrichment step, validated against the steps before it; `err` places an error at a
/// field of the step.
fn enrich_step(
    file: &Path,
    step: EnrichFile,
    before: &[EnrichStep],
    err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<EnrichStep, DefinitionError> {
    if !valid_id(&step.name) || step.name.contains('-') {
        return Err(err(
            "name",
            format!(
                "`{}` is not a valid step name: use a-z, 0-9 and '_' (it is read as $enriched.{})",
                step.name, step.name
            ),
        ));
    }
    if before.iter().any(|other| other.name == step.name) {
        return Err(err(
            "name",
            format!("step name `{}` is used twice", step.name),
        ));
    }
    let url = UrlTemplate::parse(&step.url).map_err(|m| err("url", m))?;
    let access = Access {
        allow_private_network: step.allow_private_network,
        allow_http: step.allow_http,
    };
    network::check_literal(url.fixed(), access).map_err(|b| err("url", b.to_string()))?;
    step.auth.validate().map_err(|m| err("auth", m))?;
    let timeout = match step.timeout {
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
    let max_response_bytes = match step.max_response_bytes {
        Some(0) => return Err(err("max_response_bytes", "must be at least 1".into())),
        Some(n) => n,
        None => DEFAULT_ENRICH_RESPONSE_BYTES,
    };
    let check = response_check(step.success.as_deref(), step.retry_when.as_deref(), "", err)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let expression = |f: &str, text: &str| {
        Mapping::parse(text, Limits::default())
            .map_err(|e| err(f, format!("the JSONata expression does not parse: {e}")))
    };
    let model = step
        .model
        .as_ref()
        .map(|m| model_step(dir, m, err))
        .transpose()?;
    if model.is_some() && (step.body.is_some() || step.result.is_some() || step.method.is_some()) {
        return Err(err(
            "model",
            "a model step POSTs a body built from `model.prompt`, and its record is the model's answer: no `method`, `body` or `result`".into(),
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
    let fallback = step
        .fallback
        .as_deref()
        .map(|f| expression("fallback", f))
        .transpose()?;
    let method = match step
        .method
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        _ if model.is_some() => EnrichMethod::Post,
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
        (None, _) if model.is_some() => None,
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
            Some(expression("body", &source)?)
        }
        (None, _) => None,
    };
    let when = step
        .when
        .as_deref()
        .map(|w| expression("when", w))
        .transpose()?;
    let result = step
        .result
        .as_deref()
        .map(|r| expression("result", r))
        .transpose()?;
    Ok(EnrichStep {
        check,
        when,
        method,
        body,
        result,
        model,
        budget,
        limits: step.limits,
        fallback,
        name: step.name,
        url,
        auth: step.auth,
        timeout,
        on_missing: step.on_missing,
        access,
        max_response_bytes,
    })
}

/// Route `i`: its `when`, mapping (inline or a `.jsonata` file beside the definition),
/// contract and `deliver`.
fn route(file: &Path, i: usize, r: RouteFile) -> Result<Route, DefinitionError> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let route_err = |f: &str, m: String| route_error(file, i, &r.id, f, m);
    let expression = |f: &str, text: &str| {
        Mapping::parse(text, Limits::default())
            .map_err(|e| route_err(f, format!("the JSONata expression does not parse: {e}")))
    };
    let when = r
        .when
        .as_deref()
        .map(|w| expression("when", w))
        .transpose()?;
    let source = mapping_source(dir, &r.map).map_err(|m| route_err("map", m))?;
    let mapping = expression("map", &source)?;
    let contract = r
        .contract
        .as_ref()
        .map(|c| contract(dir, c))
        .transpose()
        .map_err(|m| route_err("contract", m))?;
    let review_when = r
        .review_when
        .as_deref()
        .map(|w| expression("review_when", w))
        .transpose()?;
    let review = review_policy(
        review_when.is_some(),
        r.on_rejected,
        r.review.as_ref(),
        &route_err,
    )?;
    let deliver = deliver(&r.deliver, &route_err)?;
    if review_when.is_some() || review.on_rejected {
        review_fits_the_queue(&review, &deliver.retry, &route_err)?;
    }
    Ok(Route {
        id: r.id,
        when,
        mapping,
        map_request: r.map_request,
        contract,
        review_when,
        review,
        deliver,
    })
}

/// A route's `deliver`, validated; `route_err` places an error at a field of the route.
pub(super) fn deliver(
    def: &DeliverFile,
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<Deliver, DefinitionError> {
    let url = Url::parse(&def.url)
        .map_err(|e| route_err("deliver.url", format!("`{}` is not a URL: {e}", def.url)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(route_err(
            "deliver.url",
            "the URL must be http or https, with a host".into(),
        ));
    }
    let access = Access {
        allow_private_network: def.allow_private_network,
        allow_http: def.allow_http,
    };
    network::check_literal(&url, access).map_err(|b| route_err("deliver.url", b.to_string()))?;
    def.auth
        .validate()
        .map_err(|m| route_err("deliver.auth", m))?;
    let retry = match &def.retry {
        None => crate::delivery_policy::DEFAULT_SCHEDULE.to_vec(),
        Some(delays) => delays
            .iter()
            .map(|d| {
                d.parse().and_then(|d| {
                    if d <= crate::delivery_policy::MAX_VISIBILITY {
                        Ok(d)
                    } else {
                        Err("a retry delay cannot exceed 12h (SQS's longest visibility)".into())
                    }
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| route_err("deliver.retry", m))?,
    };
    // Every retry waits in the deliveries queue: a schedule that could outlive the queue's
    // retention would lose the task to SQS's expiry instead of the DLQ.
    let longest = longest_schedule(&retry);
    if longest >= QUEUE_RETENTION {
        return Err(route_err(
            "deliver.retry",
            format!(
                "the schedule may take {} h with its jitter; the deliveries queue keeps a message {} days",
                longest.as_secs() / 3600,
                QUEUE_RETENTION.as_secs() / 86_400
            ),
        ));
    }
    let duration = |d: &Option<DurationText>, field: &str, default| {
        let d = match d {
            Some(d) => d.parse().map_err(|m| route_err(field, m))?,
            None => default,
        };
        if d.is_zero() {
            return Err(route_err(field, "must be longer than zero".into()));
        }
        Ok(d)
    };
    let timeout = duration(&def.timeout, "deliver.timeout", DEFAULT_DELIVERY_TIMEOUT)?;
    let connect_timeout = duration(&def.connect_timeout, "deliver.connect_timeout", timeout)?;
    let defaults = CircuitSettings::default();
    let circuit = match &def.circuit {
        None => defaults,
        Some(c) => CircuitSettings {
            failures: match c.failures {
                Some(0) => {
                    return Err(route_err(
                        "deliver.circuit.failures",
                        "must be at least 1".into(),
                    ));
                }
                Some(n) => n,
                None => defaults.failures,
            },
            cool_down: duration(
                &c.cool_down,
                "deliver.circuit.cool_down",
                defaults.cool_down,
            )?,
        },
    };
    if def.limits.max_per_second == Some(0) || def.limits.max_concurrency == Some(0) {
        return Err(route_err(
            "deliver.limits",
            "a limit must be at least 1 (leave it out for none)".into(),
        ));
    }
    let sign = match &def.sign {
        None => None,
        Some(s) => Some(Signing {
            secret: s.secret.clone(),
            previous_grace: match &s.previous_grace {
                None => crate::secrets::PREVIOUS_GRACE,
                Some(g) => g
                    .parse()
                    .map_err(|m| route_err("deliver.sign.previous_grace", m))?,
            },
        }),
    };
    let check = response_check(
        def.success.as_deref(),
        def.retry_when.as_deref(),
        "deliver.",
        route_err,
    )?;
    Ok(Deliver {
        url,
        auth: def.auth.clone(),
        retry,
        sign,
        timeout,
        connect_timeout,
        limits: def.limits,
        circuit,
        access,
        check,
    })
}

/// `success` (a preset's name or JSONata) and `retry_when` of a route's `deliver` or an
/// enrichment step (fields under `prefix`), compiled.
fn response_check(
    success: Option<&str>,
    retry_when: Option<&str>,
    prefix: &str,
    err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<Option<ResponseCheck>, DefinitionError> {
    let compile = |field: &str, text: &str| {
        Mapping::parse(text, Limits::default())
            .map(Arc::new)
            .map_err(|e| {
                err(
                    &format!("{prefix}{field}"),
                    format!("the JSONata expression does not parse: {e}"),
                )
            })
    };
    let Some(source) = success else {
        return match retry_when {
            Some(_) => Err(err(
                &format!("{prefix}retry_when"),
                "needs `success`: it says which failed answers are worth another try".into(),
            )),
            None => Ok(None),
        };
    };
    let preset = RESPONSE_PRESETS
        .iter()
        .find(|(name, _, _)| *name == source.trim());
    let (success, preset_retry) = match preset {
        Some((_, success, retry)) => (compile("success", success)?, *retry),
        None => (compile("success", source)?, None),
    };
    let retry_when = match retry_when.or(preset_retry) {
        Some(text) => Some(compile("retry_when", text)?),
        None => None,
    };
    Ok(Some(ResponseCheck {
        source: source.to_string(),
        success,
        retry_when,
    }))
}

/// Compiles a route's contract: inline, or a JSON (or YAML) schema file beside the definition.
pub(super) fn contract(dir: &Path, def: &ContractFile) -> Result<Contract, String> {
    let (schema, from) = schema_json(dir, def)?;
    Contract::compile(&schema).map_err(|m| format!("{from}{m}"))
}

/// A contract's schema as JSON, and where it came from (for errors).
fn schema_json(dir: &Path, def: &ContractFile) -> Result<(serde_json::Value, String), String> {
    match def {
        ContractFile::Inline(schema) => Ok((schema.clone(), String::new())),
        ContractFile::Path(path) => {
            let full = dir.join(path);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read schema file {}: {e}", full.display()))?;
            let schema: serde_json::Value = serde_norway::from_str(&text)
                .map_err(|e| format!("schema file {} is not JSON: {e}", full.display()))?;
            Ok((schema, format!("{}: ", full.display())))
        }
    }
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

/// `map` is inline JSONata, or the path (relative to the definition) of a `.jsonata` file.
pub(super) fn mapping_source(dir: &Path, map: &str) -> Result<String, String> {
    let trimmed = map.trim();
    if trimmed.ends_with(".jsonata") && !trimmed.contains('\n') {
        let path = dir.join(trimmed);
        return std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read mapping file {}: {e}", path.display()));
    }
    Ok(map.to_string())
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}
