//! Metrics in CloudWatch Embedded Metric Format: one JSON line per request on stdout, which
//! CloudWatch turns into metrics without an API call.

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

    fn emit(&self, line: serde_json::Value) {
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

    /// How many lines were counted with this outcome and reason (`Memory` only).
    pub fn count(&self, outcome: &str, reason: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l["Outcome"] == outcome && l["Reason"] == reason)
            .count()
    }
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
}
