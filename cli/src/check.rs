//! `switchboard check [DIR]`: contract tests for integration definitions, run before deploy.
//!
//! 1. Every definition in `DIR` loads exactly as the functions load it at cold start (keys,
//!    expressions, URL templates, schemas, referenced files); every error is listed with its
//!    file and field, not just the first.
//! 2. Every fixture `DIR/fixtures/<integration>/<case>/` runs through the code transform runs
//!    (`when`, mapping, request shape, contract): `input.json` is the event body, `headers.json`
//!    its headers, `enriched.json` each enrich step's API answer (`null` for a 404; a step's
//!    `result` picks the record out of it, as transform does; a step with a `when` may be
//!    left out). Each route
//!    has one expectation in `expected/`: `<route>.json` (the request: the body, or for a
//!    `map_request` route the `{body, headers, method, path}` object), `<route>.skip`, or
//!    `<route>.rejected` (holding the reason code, e.g. `contract_violation`), or
//!    `<route>.retried`. `answers/<route>.json` (optional) is the destination's answer
//!    (`{"status", "headers", "body"}`) to the route's request, judged as deliver judges it
//!    (the status, then the route's `success` / `retry_when`): it can turn a produced request
//!    into `rejected_by_destination`, `permanent_failure` or a retry. `<route>.review` expects
//!    the event held for a person (its `review_when`, or a refusal with `on_rejected: review`),
//!    the file holding text its why must contain (empty: any). A mismatch prints a diff.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use switchboard_core::integration::{DefinitionError, Integration, Integrations, OnMissing};
use switchboard_core::mapping::{Bindings, Scope};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::reason::Reason;
use transform::pipeline::{RouteOutcome, run_route};

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Definitions that loaded.
    pub definitions: Vec<String>,
    /// Definitions that did not.
    pub errors: Vec<DefinitionError>,
    /// Every fixture case run.
    pub cases: Vec<Case>,
}

/// One fixture case.
#[derive(Debug)]
pub struct Case {
    /// `integration/case`.
    pub name: String,
    /// What each route did (`delivered`, `skipped`, `rejected: reason`).
    pub routes: Vec<(String, String)>,
    /// Everything that did not match, each a readable paragraph.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether everything loaded and every case matched.
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.cases.iter().all(|c| c.problems.is_empty())
    }

    /// The report as the command prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            let _ = writeln!(out, "error  {e}");
        }
        for case in &self.cases {
            let routes: Vec<String> = case
                .routes
                .iter()
                .map(|(r, what)| format!("{r} {what}"))
                .collect();
            let status = if case.problems.is_empty() {
                "ok   "
            } else {
                "FAIL "
            };
            let _ = writeln!(out, "{status}  {}: {}", case.name, routes.join(", "));
            for p in &case.problems {
                for line in p.lines() {
                    let _ = writeln!(out, "         {line}");
                }
            }
        }
        let failed = self.cases.iter().filter(|c| !c.problems.is_empty()).count();
        let _ = writeln!(
            out,
            "\n{} definition(s) loaded, {} with errors; {} fixture case(s), {} failed",
            self.definitions.len(),
            self.errors.len(),
            self.cases.len(),
            failed
        );
        out
    }
}

/// Checks the definitions and fixtures in `dir`; every URL against the network guard's
/// `network` rule (a deployed stack's, unless the definitions are for `switchboard dev`).
pub fn check(dir: &Path, network: NetworkPolicy) -> Report {
    let (integrations, mut errors) = Integrations::<Integration>::load_dir_all(dir);
    errors.extend(integrations.network_errors(network));
    let mut report = Report {
        definitions: integrations.iter().map(|i| i.id.clone()).collect(),
        errors,
        cases: Vec::new(),
    };
    let fixtures = dir.join("fixtures");
    for integration_dir in sorted_dirs(&fixtures) {
        let id = file_name(&integration_dir);
        let Some(integration) = integrations.get(&id) else {
            if !report.errors.is_empty() {
                // It may be one of the definitions that failed to load: already reported.
                continue;
            }
            report.cases.push(Case {
                name: id.clone(),
                routes: Vec::new(),
                problems: vec![format!(
                    "fixtures/{id}: no integration `{id}` is defined in {}",
                    dir.display()
                )],
            });
            continue;
        };
        for case_dir in sorted_dirs(&integration_dir) {
            report.cases.push(run_case(integration, &case_dir));
        }
    }
    report
}

fn run_case(integration: &Integration, dir: &Path) -> Case {
    let mut case = Case {
        name: format!("{}/{}", integration.id, file_name(dir)),
        routes: Vec::new(),
        problems: Vec::new(),
    };
    let Some(fixture) = Fixture::read(dir, integration, &mut case.problems) else {
        return case;
    };
    let bindings = Bindings::new(
        fixture.headers.clone(),
        "evt_01FIXTURE0000000000000000",
        &integration.id,
        "2026-01-01T00:00:00Z",
    )
    .settings(integration.settings.clone());
    let (records, stopped) =
        enrich_as_answered(integration, &fixture, &bindings, &mut case.problems);
    let bindings = bindings.enriched(Value::Object(records));
    let scope = Scope::new(&fixture.input, &bindings.pairs());
    for route in &integration.routes {
        let outcome = match &stopped {
            Some(e) => stopped_by(e),
            None => route_actual(route, &scope, &fixture.answers),
        };
        case.routes.push((route.id.clone(), outcome.summary()));
        let expected = &fixture.expectations[&route.id];
        if let Some(problem) = compare(&route.id, expected, &outcome) {
            case.problems.push(problem);
        }
        if let Some(want) = fixture.orders.get(&route.id) {
            case.problems.extend(order_differs(route, &scope, want));
        }
    }
    case
}

/// An ordered route's record and version (`<route>.order.json`: `{"key", "version"}`) as
/// transform stamps them on the task; what differs, if anything.
fn order_differs(
    route: &switchboard_core::integration::Route,
    scope: &Scope,
    want: &Value,
) -> Option<String> {
    let got = match run_route(route, scope) {
        RouteOutcome::Deliver(r) | RouteOutcome::Review(r, _) => r.order,
        _ => None,
    };
    let got = got.map(|o| json!({"key": o.key, "version": o.version}));
    (got.as_ref() != Some(want)).then(|| {
        format!(
            "{}: the record and version differ: expected/{}.order.json says {want}, transform stamps {}",
            route.id,
            route.id,
            got.map_or("nothing (no ordering, or no request)".into(), |g| g.to_string())
        )
    })
}

/// Enrichment as the API answered it: a null is a 404, and the step's on_missing decides; a
/// step's `result` (or a model step's schema) reads the record out of its answer, and a step
/// that fails takes its fallback, as transform does. The records, and the failure that
/// stopped the steps, if one did.
fn enrich_as_answered(
    integration: &Integration,
    fixture: &Fixture,
    bindings: &Bindings,
    problems: &mut Vec<String>,
) -> (
    serde_json::Map<String, Value>,
    Option<transform::enrich::EnrichError>,
) {
    use transform::enrich::EnrichError;
    let given = &fixture.enriched;
    let mut records = serde_json::Map::new();
    let mut stopped = None;
    for step in &integration.enrich {
        let answer = match given.get(&step.name) {
            None if step.when.is_some() => continue,
            None => {
                problems.push(format!(
                    "enriched.json has no `{}`: give the API's answer for enrich step `{}` (null for a 404)",
                    step.name, step.name
                ));
                continue;
            }
            Some(answer) => answer.clone(),
        };
        let made = if answer.is_null() {
            Err(match step.on_missing {
                OnMissing::Skip => EnrichError::Skip {
                    step: step.name.clone(),
                },
                OnMissing::Fail => EnrichError::Permanent {
                    reason: Reason::EnrichNotFound,
                    step: step.name.clone(),
                    message: "the API answered 404: the record is not there".into(),
                },
            })
        } else {
            transform::enrich::extract(step, answer)
        };
        let made = made.or_else(|e| {
            let so_far = Value::Object(records.clone());
            let scope = Scope::new(&fixture.input, &bindings.pairs_with(&so_far));
            transform::enrich::fall_back(step, &e, &scope).unwrap_or(Err(e))
        });
        match made {
            Ok(record) => {
                records.insert(step.name.clone(), record);
            }
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    if let Value::Object(given) = given {
        for name in given.keys() {
            if !integration.enrich.iter().any(|s| &s.name == name) {
                problems.push(format!(
                    "enriched.json has `{name}`, which is not an enrich step of `{}`",
                    integration.id
                ));
            }
        }
    }
    (records, stopped)
}

/// What every route does when enrichment stopped the event.
fn stopped_by(e: &transform::enrich::EnrichError) -> Actual {
    use transform::enrich::EnrichError;
    match e {
        EnrichError::Skip { .. } => Actual::Skipped("enrich_not_found".into()),
        EnrichError::Permanent { reason, .. } => {
            Actual::Rejected(reason.as_str().into(), e.to_string())
        }
        EnrichError::Retryable { .. } => Actual::Retried(e.to_string()),
    }
}

/// What a route does with the event, and with the destination's answer when the fixture
/// gives one.
fn route_actual(
    route: &switchboard_core::integration::Route,
    scope: &Scope,
    answers: &BTreeMap<String, Value>,
) -> Actual {
    match run_route(route, scope) {
        RouteOutcome::Deliver(request) => {
            match answers.get(&route.id).and_then(|a| answered(route, a)) {
                // The route's `on_rejected: review` holds a refused request for a person.
                Some(Actual::Rejected(_, said)) if route.review.on_rejected => Actual::Review(said),
                Some(other) => other,
                None => Actual::Request(request.to_fixture(route.map_request)),
            }
        }
        RouteOutcome::Review(_, why) => Actual::Review(why),
        RouteOutcome::Skipped(skip) => Actual::Skipped(skip.reason().into()),
        RouteOutcome::Rejected(r) => Actual::Rejected(r.reason.as_str().into(), r.message),
    }
}

/// What a route did with the fixture.
enum Actual {
    Request(Value),
    Skipped(String),
    Rejected(String, String),
    Retried(String),
    Review(String),
}

impl Actual {
    fn summary(&self) -> String {
        match self {
            Actual::Request(_) => "delivered".into(),
            Actual::Skipped(why) => format!("skipped ({why})"),
            Actual::Rejected(reason, _) => format!("rejected ({reason})"),
            Actual::Retried(_) => "retried".into(),
            Actual::Review(why) => format!("held for review ({why})"),
        }
    }
}

/// What deliver would do with the destination's `answer` to the route's request: None when
/// it is delivered, else the rejection or the retry, as the status and the route's check say.
fn answered(route: &switchboard_core::integration::Route, answer: &Value) -> Option<Actual> {
    use switchboard_core::delivery_policy::{self, Class, Outcome};
    let status = answer["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    if !(200..300).contains(&status) {
        let said = format!("the destination answered {status}");
        return Some(match delivery_policy::classify(Outcome::Status(status)) {
            Class::Retryable => Actual::Retried(said),
            _ => Actual::Rejected("permanent_failure".into(), said),
        });
    }
    let check = route.deliver.check.as_ref()?;
    let headers = answer.get("headers").cloned().unwrap_or_else(|| json!({}));
    let body = answer.get("body").cloned().unwrap_or(Value::Null);
    let said = format!("the destination answered {status}, but its answer fails the success check");
    match check.judge(status, headers, body)? {
        true => Some(Actual::Retried(said)),
        false => Some(Actual::Rejected("rejected_by_destination".into(), said)),
    }
}

fn compare(route: &str, expected: &Expected, actual: &Actual) -> Option<String> {
    match (expected, actual) {
        (Expected::Review(want), Actual::Review(why)) if why.contains(want.as_str()) => None,
        (Expected::Review(want), Actual::Review(why)) => Some(format!(
            "{route}: review saying `{want}` was expected, it says `{why}`"
        )),
        (Expected::Review(_), other) => Some(format!(
            "{route}: review was expected, but the route was {}",
            other.summary()
        )),
        (_, Actual::Review(why)) => Some(format!(
            "{route}: the route holds the event for review ({why}), which the fixture does not expect"
        )),
        (Expected::Retried, Actual::Retried(_)) => None,
        (Expected::Retried, other) => Some(format!(
            "{route}: a retry was expected, but the route was {}",
            other.summary()
        )),
        (_, Actual::Retried(why)) => Some(format!(
            "{route}: the destination's answer means a retry ({why}), which the fixture does not expect"
        )),
        (Expected::Request(_, want), Actual::Request(got)) if want == got => None,
        (Expected::Request(file, want), Actual::Request(got)) => {
            let want = pretty(want);
            let got = pretty(got);
            let diff = similar::TextDiff::from_lines(&want, &got)
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("expected/{}", file_name(file)),
                    &format!("{route} (what the mapping produced)"),
                )
                .to_string();
            Some(format!("{route}: the request differs\n{diff}"))
        }
        (Expected::Request(..), Actual::Skipped(why)) => Some(format!(
            "{route}: a request was expected, but the route skipped the event ({why})"
        )),
        (Expected::Request(..), Actual::Rejected(reason, message)) => Some(format!(
            "{route}: a request was expected, but it was rejected: {reason}: {message}"
        )),
        (Expected::Skip, Actual::Skipped(_)) => None,
        (Expected::Skip, Actual::Request(got)) => Some(format!(
            "{route}: a skip was expected, but the route produced:\n{}",
            pretty(got)
        )),
        (Expected::Skip, Actual::Rejected(reason, message)) => Some(format!(
            "{route}: a skip was expected, but it was rejected: {reason}: {message}"
        )),
        (Expected::Rejected(want), Actual::Rejected(got, _)) if want.is_empty() || want == got => {
            None
        }
        (Expected::Rejected(want), Actual::Rejected(got, message)) => Some(format!(
            "{route}: rejection `{want}` was expected, got `{got}`: {message}"
        )),
        (Expected::Rejected(want), Actual::Request(got)) => Some(format!(
            "{route}: rejection `{want}` was expected, but the route produced:\n{}",
            pretty(got)
        )),
        (Expected::Rejected(want), Actual::Skipped(why)) => Some(format!(
            "{route}: rejection `{want}` was expected, but the route skipped the event ({why})"
        )),
    }
}

/// Pretty JSON with object keys sorted, so a diff shows changes, not orderings.
fn pretty(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    text.push('\n');
    text
}

/// `switchboard check`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Directory of integration definitions (fixtures in DIR/fixtures/<integration>/<case>/).
    #[arg(default_value = "integrations")]
    pub dir: std::path::PathBuf,
    /// Check the URLs as `switchboard dev` runs them (loopback allowed) instead of as a
    /// deployed stack does.
    #[arg(long)]
    pub allow_loopback: bool,
}

/// Runs the command.
pub async fn run(args: CheckArgs) -> anyhow::Result<std::process::ExitCode> {
    let CheckArgs {
        dir,
        allow_loopback,
    } = args;
    let network = if allow_loopback {
        switchboard_core::network::NetworkPolicy::LOCAL
    } else {
        switchboard_core::network::NetworkPolicy::DEPLOYED
    };
    let report = check(&dir, network);
    print!("{}", report.render());
    Ok(if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

mod fixture;

use fixture::{Expected, Fixture, file_name, sorted_dirs};

#[cfg(test)]
mod tests;
