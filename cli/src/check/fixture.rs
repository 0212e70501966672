//! What a fixture's directory holds, read and checked: the event body, its headers, the
//! enrichment steps' and destinations' answers, and what each route must do (`expected/`).

use super::*;

/// What a fixture's directory holds: the event body, its headers, the APIs' answers, the
/// enrichment steps' answers, and what each route must do.
pub(super) struct Fixture {
    /// `input.json`: the event body.
    pub(super) input: Value,
    /// `headers.json`: the headers the event carries (`$headers`).
    pub(super) headers: Value,
    /// `answers/<route>.json`: what a route's destination answered, where a case says.
    pub(super) answers: BTreeMap<String, Value>,
    /// `enriched.json`: each enrichment step's answer (null: a 404).
    pub(super) enriched: Value,
    /// `expected/`: what each route must do.
    pub(super) expectations: BTreeMap<String, Expected>,
    /// `expected/<route>.order.json`: an ordered route's record and version, where given.
    pub(super) orders: BTreeMap<String, Value>,
}

impl Fixture {
    /// The fixture in `dir`, or `None` (with the problems) when it cannot be run.
    pub(super) fn read(
        dir: &Path,
        integration: &Integration,
        problems: &mut Vec<String>,
    ) -> Option<Self> {
        let input = match read_json(&dir.join("input.json")) {
            Ok(Some(v)) => v,
            Ok(None) => {
                problems.push("input.json is missing: it holds the event body".into());
                return None;
            }
            Err(e) => {
                problems.push(e);
                return None;
            }
        };
        let optional_object =
            |name: &str, problems: &mut Vec<String>| match read_json(&dir.join(name)) {
                Ok(Some(v @ Value::Object(_))) => v,
                Ok(None) => json!({}),
                Ok(Some(_)) => {
                    problems.push(format!("{name} must hold a JSON object"));
                    json!({})
                }
                Err(e) => {
                    problems.push(e);
                    json!({})
                }
            };
        let headers = optional_object("headers.json", problems);
        let answers = answers(&dir.join("answers"), integration)
            .map_err(|mut p| problems.append(&mut p))
            .ok()?;
        let enriched = optional_object("enriched.json", problems);
        let expectations = expectations(&dir.join("expected"), integration)
            .map_err(|mut p| problems.append(&mut p))
            .ok()?;
        let orders = orders(&dir.join("expected"), problems);
        Some(Fixture {
            input,
            headers,
            answers,
            enriched,
            expectations,
            orders,
        })
    }
}

/// `answers/<route>.json` of a case, by route (none when the folder is not there).
pub(super) fn answers(
    dir: &Path,
    integration: &Integration,
) -> Result<BTreeMap<String, Value>, Vec<String>> {
    let mut found = BTreeMap::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(found);
    };
    for entry in entries.flatten() {
        let file = entry.path();
        let name = file_name(&file);
        let Some(route) = name.strip_suffix(".json") else {
            problems.push(format!("answers/{name}: name it <route>.json"));
            continue;
        };
        if !integration.routes.iter().any(|r| r.id == route) {
            problems.push(format!(
                "answers/{name}: `{}` has no route `{route}`",
                integration.id
            ));
            continue;
        }
        match read_json(&file) {
            Ok(Some(v @ Value::Object(_))) => {
                found.insert(route.to_string(), v);
            }
            Ok(_) => problems.push(format!(
                "answers/{name} must hold {{\"status\", \"headers\", \"body\"}}"
            )),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

/// What a fixture says a route does.
pub(super) enum Expected {
    Request(PathBuf, Value),
    Skip,
    Rejected(String),
    Retried,
    Review(String),
}

pub(super) fn expectations(
    dir: &Path,
    integration: &Integration,
) -> Result<BTreeMap<String, Expected>, Vec<String>> {
    let mut problems = Vec::new();
    let mut found: BTreeMap<String, Expected> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![format!(
            "expected/ cannot be read ({e}): it holds <route>.json, <route>.skip, <route>.rejected, <route>.retried or <route>.review for each route"
        )]
    })?;
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    for file in files {
        let name = file_name(&file);
        if name.ends_with(".order.json") {
            continue; // beside the route's expectation: `orders`
        }
        let Some((route, kind)) = name.rsplit_once('.') else {
            problems.push(format!(
                "expected/{name}: name it <route>.json, <route>.skip, <route>.rejected, <route>.retried or <route>.review"
            ));
            continue;
        };
        if !integration.routes.iter().any(|r| r.id == route) {
            problems.push(format!(
                "expected/{name}: `{}` has no route `{route}`",
                integration.id
            ));
            continue;
        }
        let expected = match kind {
            "json" => match read_json(&file) {
                Ok(Some(v)) => Expected::Request(file.clone(), v),
                Ok(None) => continue,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            },
            "skip" => Expected::Skip,
            "retried" => Expected::Retried,
            "rejected" => Expected::Rejected(text(&file)),
            "review" => Expected::Review(text(&file)),
            _ => {
                problems.push(format!(
                    "expected/{name}: name it <route>.json, <route>.skip, <route>.rejected, <route>.retried or <route>.review"
                ));
                continue;
            }
        };
        if found.insert(route.to_string(), expected).is_some() {
            problems.push(format!(
                "expected/: more than one expectation for route `{route}`"
            ));
        }
    }
    for route in &integration.routes {
        if !found.contains_key(&route.id) {
            problems.push(format!(
                "expected/: nothing for route `{0}`: add {0}.json (the request), {0}.skip, {0}.rejected, {0}.retried or {0}.review",
                route.id
            ));
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

/// The `<route>.order.json` files: `{"key", "version"}` an ordered route's task must carry.
fn orders(dir: &Path, problems: &mut Vec<String>) -> BTreeMap<String, Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    let mut found = BTreeMap::new();
    for file in entries.filter_map(Result::ok).map(|e| e.path()) {
        let name = file_name(&file);
        let Some(route) = name.strip_suffix(".order.json") else {
            continue;
        };
        match read_json(&file) {
            Ok(Some(v)) => {
                found.insert(route.to_string(), v);
            }
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    found
}

/// A `.rejected` or `.review` file's text: what the reason or the why must be (empty: any).
pub(super) fn text(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub(super) fn read_json(path: &Path) -> Result<Option<Value>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

pub(super) fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
