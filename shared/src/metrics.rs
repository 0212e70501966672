//! Metrics in CloudWatch Embedded Metric Format: JSON lines on stdout, which CloudWatch turns
//! into metrics without an API call. Inside an invocation ([`Metrics::invocation`]) the values
//! of one document (the same metrics and dimension values) are gathered into one line, each
//! metric's values as an array (EMF takes up to 100; each is a sample, so counts, sums and
//! percentiles are those of one line per value): a batch of ten like events is one line, not
//! ten.

use std::sync::{Arc, Mutex};

use serde_json::json;
use switchboard_core::delivery_policy::Held;

/// Where metric lines go.
#[derive(Debug, Clone, Default)]
pub enum Metrics {
    /// Standard output (in Lambda: CloudWatch Logs, which extracts the metrics).
    #[default]
    Stdout,
    /// Kept in memory (tests, the local stack).
    Memory(Arc<Mutex<Vec<serde_json::Value>>>),
    /// Dropped.
    Off,
}

/// The `Outcome` dimension of every metric: one vocabulary across the functions, so a dashboard
/// or an alarm reads the same word for the same thing wherever it happened; the `Reason` says
/// which case it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ingest took the request: its events are queued.
    Accepted,
    /// Ingest had the event already (a provider's retry): answered, nothing queued again.
    Duplicate,
    /// Ingest refused the request (4xx): the sender's input is at fault.
    Rejected,
    /// Slack's `url_verification` handshake, answered.
    Challenge,
    /// Transform queued a route's task.
    Queued,
    /// Nothing to do, by rule: a `when` was false, nothing mapped, already delivered, a review
    /// decided it.
    Skipped,
    /// Handed back to be tried again (a failure worth a retry).
    Retried,
    /// Handed back without a call: its destination is held (`circuit_open`, `rate_limited`,
    /// `deadline`, `over_share`).
    Held(Held),
    /// Waiting for a person in the review queue.
    Review,
    /// The destination took it.
    Delivered,
    /// An enrichment step's fallback stood in for its record.
    Fallback,
    /// A rotation step went through.
    Ok,
    /// It did not go through: dead-lettered with its reason (transform, deliver), refused for
    /// the sender to retry (ingest's 5xx), a step without its result (enrichment, rotation).
    Failed,
}

impl Outcome {
    /// The dimension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Challenge => "challenge",
            Outcome::Queued => "queued",
            Outcome::Skipped => "skipped",
            Outcome::Retried => "retried",
            Outcome::Held(why) => why.as_str(),
            Outcome::Review => "review",
            Outcome::Delivered => "delivered",
            Outcome::Fallback => "fallback",
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        }
    }
}

/// The namespace every Switchboard metric is in.
pub const NAMESPACE: &str = "Switchboard";

/// The EMF directive: `metrics`, in Switchboard's namespace, by each set of `dimensions`.
fn aws(dimensions: serde_json::Value, metrics: serde_json::Value) -> serde_json::Value {
    json!({
        "Timestamp": chrono::Utc::now().timestamp_millis(),
        "CloudWatchMetrics": [{
            "Namespace": NAMESPACE,
            "Dimensions": dimensions,
            "Metrics": metrics
        }]
    })
}

/// The EMF directive for `metrics`, counted by integration and outcome, by outcome and reason,
/// and by outcome alone (what the alarms read; every line carries `Integration`, `Outcome` and
/// `Reason`).
fn directive(metrics: serde_json::Value) -> serde_json::Value {
    aws(
        json!([
            ["Integration", "Outcome"],
            ["Outcome", "Reason"],
            ["Outcome"]
        ]),
        metrics,
    )
}

impl Metrics {
    /// One ingest request: counted by integration and outcome, and by outcome and reason;
    /// its latency recorded.
    pub fn webhook(
        &self,
        integration: &str,
        outcome: Outcome,
        reason: impl AsRef<str>,
        latency_ms: f64,
    ) {
        let reason = reason.as_ref();
        self.emit(json!({
            "_aws": directive(json!([
                { "Name": "Webhooks", "Unit": "Count" },
                { "Name": "Latency", "Unit": "Milliseconds" }
            ])),
            "Integration": integration,
            "Outcome": outcome.as_str(),
            "Reason": reason,
            "Webhooks": 1,
            "Latency": latency_ms,
        }));
    }

    /// One transform outcome for an event, or for one of its routes (`route` empty for the
    /// event as a whole): counted by integration and outcome, and by outcome and reason.
    pub fn transform(
        &self,
        integration: &str,
        route: &str,
        outcome: Outcome,
        reason: impl AsRef<str>,
    ) {
        self.route_count("Transforms", integration, route, outcome, reason.as_ref());
    }

    /// One delivery outcome for a task: delivered, retried, failed (permanently, to the DLQ),
    /// skipped (already delivered), or held without a call (circuit_open, rate_limited,
    /// deadline); counted by integration and outcome, and by outcome and reason.
    pub fn delivery(
        &self,
        integration: &str,
        route: &str,
        outcome: Outcome,
        reason: impl AsRef<str>,
    ) {
        self.route_count("Deliveries", integration, route, outcome, reason.as_ref());
    }

    /// One of `metric` for a route, with its outcome and reason.
    fn route_count(
        &self,
        metric: &str,
        integration: &str,
        route: &str,
        outcome: Outcome,
        reason: &str,
    ) {
        let mut line = json!({
            "_aws": directive(json!([{ "Name": metric, "Unit": "Count" }])),
            "Integration": integration,
            "Route": route,
            "Outcome": outcome.as_str(),
            "Reason": reason,
        });
        line[metric] = json!(1);
        self.emit(line);
    }

    /// How long one call to a destination took: by integration and route, by destination
    /// (the dashboard's latency per destination: a slow one stands out), and over every
    /// destination (the DestinationSlow alarm reads its maximum: no alarm can search).
    pub fn delivery_latency(
        &self,
        integration: &str,
        route: &str,
        destination: &str,
        latency_ms: f64,
    ) {
        self.emit(json!({
            "_aws": aws(
                json!([["Integration", "Route"], ["Destination"], []]),
                json!([{ "Name": "DeliveryLatency", "Unit": "Milliseconds" }]),
            ),
            "Integration": integration,
            "Route": route,
            "Destination": destination,
            "DeliveryLatency": latency_ms,
        }));
    }

    /// A task handed back without a call (`why`: circuit_open, rate_limited, deadline,
    /// over_share) and how long it has waited since it was queued: by destination and why (the
    /// dashboard's held tasks), by destination, and over every destination (the
    /// DestinationHolding alarm reads the longest wait).
    pub fn held(&self, destination: &str, why: Held, waited_ms: f64) {
        self.emit(json!({
            "_aws": aws(
                json!([["Destination", "Why"], ["Destination"], []]),
                json!([
                    { "Name": "HeldTasks", "Unit": "Count" },
                    { "Name": "HeldFor", "Unit": "Milliseconds" }
                ]),
            ),
            "Destination": destination,
            "Why": why.as_str(),
            "HeldTasks": 1,
            "HeldFor": waited_ms,
        }));
    }

    /// A destination's circuit changed state (opened, reopened, closed).
    pub fn circuit(&self, destination: &str, transition: &str) {
        self.emit(json!({
            // By transition alone too: one alarm for every destination's circuit.
            "_aws": aws(
                json!([["Destination", "Transition"], ["Transition"]]),
                json!([{ "Name": "CircuitTransitions", "Unit": "Count" }]),
            ),
            "Destination": destination,
            "Transition": transition,
            "CircuitTransitions": 1,
        }));
    }

    /// Something happened to a review item: `created`, `overdue` (waiting past its
    /// `alert_after`: the ReviewOverdue alarm), `expired`, `decided`. By event alone too: one
    /// alarm for every integration.
    pub fn review(&self, integration: &str, route: &str, event: &str) {
        self.emit(json!({
            "_aws": aws(
                json!([["Integration", "Event"], ["Event"]]),
                json!([{ "Name": "Reviews", "Unit": "Count" }]),
            ),
            "Integration": integration,
            "Route": route,
            "Event": event,
            "Reviews": 1,
        }));
    }

    /// An enrichment step that did not get its record: `fallback` (its fallback stood in) or
    /// `failed`, with the reason (`model_quota`: the ModelQuota alarm). By outcome and reason
    /// alone too: one alarm for every step.
    pub fn enrichment(&self, step: &str, outcome: Outcome, reason: &str) {
        self.emit(json!({
            "_aws": aws(
                json!([["Step", "Outcome"], ["Outcome", "Reason"]]),
                json!([{ "Name": "Enrichments", "Unit": "Count" }]),
            ),
            "Step": step,
            "Outcome": outcome.as_str(),
            "Reason": reason,
            "Enrichments": 1,
        }));
    }

    /// One rotation step (`createSecret`, …) and how it went (`ok`, `failed`).
    pub fn rotation(&self, step: &str, outcome: Outcome) {
        self.emit(json!({
            "_aws": aws(
                json!([["Step", "Outcome"]]),
                json!([{ "Name": "RotationSteps", "Unit": "Count" }]),
            ),
            "Step": step,
            "Outcome": outcome.as_str(),
            "RotationSteps": 1,
        }));
    }

    /// Runs `work` as one invocation: the documents it emits are gathered, and written when it
    /// ends. (Handlers pass their work boxed: a whole batch's future nested in the scope's is
    /// deeper than the compiler lays out by default.)
    pub async fn invocation<F: std::future::Future>(&self, work: F) -> F::Output {
        GATHERED
            .scope(std::cell::RefCell::new(Vec::new()), async {
                let out = work.await;
                let lines = GATHERED.with(|g| std::mem::take(&mut *g.borrow_mut()));
                for line in lines {
                    self.write(line);
                }
                out
            })
            .await
    }

    fn emit(&self, line: serde_json::Value) {
        if matches!(self, Metrics::Off) {
            return;
        }
        // Outside an invocation: written now.
        if GATHERED.try_with(|_| ()).is_err() {
            return self.write(line);
        }
        if let Ok(Some(full)) = GATHERED.try_with(|g| gather(&mut g.borrow_mut(), line)) {
            self.write(full);
        }
    }

    fn write(&self, line: serde_json::Value) {
        match self {
            Metrics::Stdout => println!("{line}"),
            Metrics::Memory(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).push(line),
            Metrics::Off => {}
        }
    }

    /// The lines kept so far (`Memory` only).
    pub fn lines(&self) -> Vec<serde_json::Value> {
        match self {
            Metrics::Memory(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            _ => Vec::new(),
        }
    }

    /// Every sample of `metric` in the lines `matches` keeps (`Memory` only): a gathered
    /// line's values one by one.
    pub fn samples(
        &self,
        metric: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let mut samples = Vec::new();
        for line in self.lines().iter().filter(|l| matches(l)) {
            match &line[metric] {
                serde_json::Value::Array(values) => samples.extend(values.iter().cloned()),
                serde_json::Value::Null => {}
                value => samples.push(value.clone()),
            }
        }
        samples
    }

    /// How many were counted with this outcome and reason (`Memory` only): the values of each
    /// line's first metric.
    pub fn count(&self, outcome: &str, reason: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l["Outcome"] == outcome && l["Reason"] == reason)
            .map(|l| {
                let first = &l["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"];
                match &l[first.as_str().unwrap_or_default()] {
                    serde_json::Value::Array(values) => values.len(),
                    _ => 1,
                }
            })
            .sum()
    }
}

tokio::task_local! {
    /// The documents of the invocation running on this task, values gathered.
    static GATHERED: std::cell::RefCell<Vec<serde_json::Value>>;
}

/// EMF's limit of values per metric in one document.
const MAX_VALUES: usize = 100;

/// Adds `line`'s values to the gathered document with the same metrics and dimension values,
/// or gathers it as a new one; answers a document that is full, to be written now.
fn gather(
    gathered: &mut Vec<serde_json::Value>,
    line: serde_json::Value,
) -> Option<serde_json::Value> {
    let names: Vec<String> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["Name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let same = |g: &serde_json::Value| {
        g["_aws"]["CloudWatchMetrics"] == line["_aws"]["CloudWatchMetrics"]
            && line.as_object().is_some_and(|l| {
                l.iter()
                    .filter(|(k, _)| *k != "_aws" && !names.contains(k))
                    .all(|(k, v)| &g[k] == v)
            })
    };
    let at = match gathered.iter().position(same) {
        Some(at) => at,
        None => {
            let mut new = line.clone();
            for name in &names {
                new[name] = serde_json::Value::Array(Vec::new());
            }
            gathered.push(new);
            gathered.len() - 1
        }
    };
    let mut full = false;
    for name in &names {
        if let Some(values) = gathered[at][name].as_array_mut() {
            values.push(line[name].clone());
            full |= values.len() >= MAX_VALUES;
        }
    }
    full.then(|| gathered.remove(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_embedded_metric_format() {
        let m = Metrics::Memory(Arc::default());
        m.webhook("shop", Outcome::Rejected, "invalid_signature", 1.5);
        let line = &m.lines()[0];
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        // Every dimension and metric named in the directive is a top-level member.
        for set in directive["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(line.get(d.as_str().unwrap()).is_some(), "{d}");
            }
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(line[metric["Name"].as_str().unwrap()].is_number());
        }
        assert_eq!(m.count("rejected", "invalid_signature"), 1);
    }

    #[tokio::test]
    async fn an_invocation_writes_one_line_per_document_with_each_value_a_sample() {
        let m = Metrics::Memory(Arc::default());
        m.invocation(async {
            for _ in 0..10 {
                m.delivery("shop", "wms", Outcome::Delivered, "ok");
            }
            m.delivery("shop", "wms", Outcome::Retried, "server_error");
            m.delivery_latency("shop", "wms", "https://wms", 12.0);
            m.delivery_latency("shop", "wms", "https://wms", 30.0);
            assert!(m.lines().is_empty(), "written when the invocation ends");
        })
        .await;
        let lines = m.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(m.count("delivered", "ok"), 10);
        assert_eq!(m.count("retried", "server_error"), 1);
        let latency = lines
            .iter()
            .find(|l| l["DeliveryLatency"].is_array())
            .unwrap();
        assert_eq!(latency["DeliveryLatency"], serde_json::json!([12.0, 30.0]));
        assert_eq!(latency["Route"], "wms");
        // A hundred values fill a document: it is written, the next starts another.
        m.invocation(async {
            for _ in 0..150 {
                m.transform("shop", "wms", Outcome::Queued, "mapped");
            }
        })
        .await;
        let queued: Vec<usize> = m
            .lines()
            .iter()
            .filter(|l| l["Outcome"] == "queued")
            .map(|l| l["Transforms"].as_array().unwrap().len())
            .collect();
        assert_eq!(queued, [100, 50]);
    }
}
