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

mod enrich;
mod review;

use enrich::enrich_step;
use review::{longest_schedule, review_fits_the_queue};
pub(in crate::integration) use review::{review_policy, slack_notify};

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
    let mut public = Vec::new();
    for (i, r) in def.routes.into_iter().enumerate() {
        route_id(file, i, &r.id, routes.iter().map(|o| o.id.as_str()))?;
        let (route, names_public_replies) = route(file, i, r)?;
        if names_public_replies && route.review_when.is_none() {
            public.push(route.id.clone());
        }
        routes.push(route);
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
    if settings["public_replies"] == serde_json::Value::Bool(true)
        && let Some(route) = public.first()
    {
        return Err(error(
            file,
            "settings.public_replies",
            format!(
                "public replies reach customers as written: route `{route}` maps `$settings.public_replies` and has no `review_when`, so nobody would see a reply before the customer does; give it one, or keep public_replies false"
            ),
        ));
    }
    Ok(Integration {
        id,
        file: file.to_path_buf(),
        source,
        settings,
        enrich,
        routes,
    })
}

/// Route `i`: its `when`, mapping (inline or a `.jsonata` file beside the definition),
/// contract and `deliver`; and whether its mapping reads `$settings.public_replies`.
fn route(file: &Path, i: usize, r: RouteFile) -> Result<(Route, bool), DefinitionError> {
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
    let ordering = r
        .ordering
        .as_ref()
        .map(|o| {
            Ok::<_, DefinitionError>(crate::ordering::Ordering {
                key: expression("ordering.key", &o.key)?,
                version: expression("ordering.version", &o.version)?,
                on_stale: o.on_stale,
            })
        })
        .transpose()?;
    let names_public_replies = source.contains("$settings.public_replies");
    let route = Route {
        id: r.id,
        when,
        mapping,
        map_request: r.map_request,
        contract,
        review_when,
        review,
        ordering,
        deliver,
    };
    Ok((route, names_public_replies))
}

/// A duration longer than zero, or `default` when it is not given.
fn positive(
    d: &Option<DurationText>,
    field: &str,
    default: std::time::Duration,
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<std::time::Duration, DefinitionError> {
    let d = match d {
        Some(d) => d.parse().map_err(|m| route_err(field, m))?,
        None => default,
    };
    if d.is_zero() {
        return Err(route_err(field, "must be longer than zero".into()));
    }
    Ok(d)
}

/// `deliver.circuit`: at least one failure to open it, a cool-down longer than zero.
fn circuit_settings(
    c: Option<&CircuitFile>,
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<CircuitSettings, DefinitionError> {
    let defaults = CircuitSettings::default();
    let Some(c) = c else {
        return Ok(defaults);
    };
    Ok(CircuitSettings {
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
        cool_down: positive(
            &c.cool_down,
            "deliver.circuit.cool_down",
            defaults.cool_down,
            route_err,
        )?,
    })
}

/// `deliver.url`: an http(s) URL with a host that the network guard's literal check passes
/// (a name is checked again when it resolves, at the call).
fn destination_url(
    text: &str,
    access: Access,
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<Url, DefinitionError> {
    let url = Url::parse(text)
        .map_err(|e| route_err("deliver.url", format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(route_err(
            "deliver.url",
            "the URL must be http or https, with a host".into(),
        ));
    }
    network::check_literal(&url, access).map_err(|b| route_err("deliver.url", b.to_string()))?;
    Ok(url)
}

/// `deliver.retry`: each delay at most 12 h, and the whole schedule inside the deliveries
/// queue's retention (a retry waits in the queue: a schedule outliving it would lose the task
/// to SQS's expiry instead of the DLQ). Default `DEFAULT_SCHEDULE`.
fn retry_schedule(
    delays: Option<&[DurationText]>,
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<Vec<std::time::Duration>, DefinitionError> {
    let retry = match delays {
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
    Ok(retry)
}

/// A route's `deliver`, validated; `route_err` places an error at a field of the route.
pub(super) fn deliver(
    def: &DeliverFile,
    route_err: &dyn Fn(&str, String) -> DefinitionError,
) -> Result<Deliver, DefinitionError> {
    let access = Access {
        allow_private_network: def.allow_private_network,
        allow_http: def.allow_http,
    };
    let url = destination_url(&def.url, access, route_err)?;
    def.auth
        .validate()
        .map_err(|m| route_err("deliver.auth", m))?;
    let retry = retry_schedule(def.retry.as_deref(), route_err)?;
    let duration =
        |d: &Option<DurationText>, field: &str, default| positive(d, field, default, route_err);
    let timeout = duration(&def.timeout, "deliver.timeout", DEFAULT_DELIVERY_TIMEOUT)?;
    let connect_timeout = duration(&def.connect_timeout, "deliver.connect_timeout", timeout)?;
    let circuit = circuit_settings(def.circuit.as_ref(), route_err)?;
    if def.limits.max_per_second == Some(0) || def.limits.max_concurrency == Some(0) {
        return Err(route_err(
            "deliver.limits",
            "a limit must be at least 1 (leave it out for none)".into(),
        ));
    }
    let sign = def
        .sign
        .as_ref()
        .map(|s| {
            let previous_grace = match &s.previous_grace {
                None => crate::secrets::PREVIOUS_GRACE,
                Some(g) => g
                    .parse()
                    .map_err(|m| route_err("deliver.sign.previous_grace", m))?,
            };
            Ok(Signing {
                secret: s.secret.clone(),
                previous_grace,
            })
        })
        .transpose()?;
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
pub(super) fn response_check(
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
