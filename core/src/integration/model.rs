//! The integration model: what a loaded, validated definition is.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use crate::contract::Contract;
use crate::mapping::Mapping;
use crate::network::Access;
use crate::review::ReviewPolicy;
use crate::url_template::UrlTemplate;
use crate::verify::Scheme;

/// The longest answer an enrichment step reads when it sets no `max_response_bytes` (1 MiB).
pub const DEFAULT_ENRICH_RESPONSE_BYTES: usize = 1024 * 1024;
/// The request body limit when an integration sets none (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most events one request's `split` may yield when an integration sets no `split_max`.
pub const DEFAULT_SPLIT_MAX: usize = 100;
/// How long a provider event id is remembered when an integration sets nothing (7 days).
pub const DEFAULT_DEDUPE_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// A loaded, validated integration.
#[derive(Debug)]
pub struct Integration {
    /// Its id: the last segment of its webhook URL (`/webhooks/{id}`).
    pub id: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// How its webhooks are received: verification, dedupe, split, limits.
    pub source: Source,
    /// The definition's `settings` (an object, `{}` when absent), bound as `$settings` in
    /// every expression: thresholds and lists are settings, not code.
    pub settings: serde_json::Value,
    /// API calls made before mapping, in order; each result is bound as `$enriched.<name>`.
    pub enrich: Vec<EnrichStep>,
    /// Where each event goes.
    pub routes: Vec<Route>,
}

/// What ingest runs of an integration: its id and how its webhooks are received. Loading this
/// view compiles no mapping, contract or URL template of the routes.
#[derive(Debug)]
pub struct Inbound {
    /// Its id: the last segment of its webhook URL (`/webhooks/{id}`).
    pub id: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// How its webhooks are received: verification, dedupe, split, limits.
    pub source: Source,
    /// The routes whose review items are decided in Slack: ingest takes their clicks.
    pub slack_reviews: Vec<SlackReview>,
}

/// A route whose review items are posted to Slack and decided there (`review.notify.slack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackReview {
    /// The route.
    pub route: String,
    /// Its channel, token, signing secret and Web API.
    pub slack: crate::review::slack::SlackNotify,
}

/// What deliver runs of an integration: where and how each route's requests go. Loading this
/// view compiles no expression or contract.
#[derive(Debug)]
pub struct Outbound {
    /// Its id.
    pub id: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Each route's destination, by route id.
    pub routes: Vec<OutboundRoute>,
}

/// A route as deliver sees it.
#[derive(Debug)]
pub struct OutboundRoute {
    /// Unique within the integration.
    pub id: String,
    /// Where and how the mapped request is sent.
    pub deliver: Deliver,
    /// When a task waits for a person, and how long.
    pub review: ReviewPolicy,
    /// A stale change's fate, when the route keeps its records' changes in order.
    pub on_stale: Option<crate::ordering::OnStale>,
}

/// The longest an enrichment step's `timeout` may be: transform's function timeout (30 s in the
/// template, checked by a test) must outlast it with room for the rest of the event.
pub const MAX_ENRICH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The longest an enrichment call may take when its step sets no `timeout`.
pub const DEFAULT_ENRICH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One enrichment call: the webhook says "something changed", the API says what.
#[derive(Debug)]
pub struct EnrichStep {
    /// The result is bound as `$enriched.<name>`.
    pub name: String,
    /// The URL, filled from the event (placeholders only in the path and query).
    pub url: UrlTemplate,
    /// A predicate over the event (and the earlier steps' `$enriched`): when it is not true
    /// the step is not called and `$enriched.<name>` is absent.
    pub when: Option<Mapping>,
    /// `GET` (the default), `POST` or `PUT`.
    pub method: EnrichMethod,
    /// The JSON body of a POST or PUT (a GraphQL query and its variables), built by a mapping
    /// over the event with `$enriched` of the earlier steps.
    pub body: Option<Mapping>,
    /// What of the answer is the record (`data.customer` of a GraphQL answer), over the parsed
    /// answer; nothing or null there is a missing record (`on_missing`).
    pub result: Option<Mapping>,
    /// How the call authenticates.
    pub auth: Auth,
    /// The longest the call may take.
    pub timeout: std::time::Duration,
    /// What a 404 means.
    pub on_missing: OnMissing,
    /// What the network guard lets the call reach besides public https.
    pub access: Access,
    /// Longer answers are refused (`enrich_invalid_response`) without reading the rest.
    pub max_response_bytes: usize,
    /// What a 2xx answer must say to be the record (`success`, `retry_when`): a GraphQL
    /// query answering `errors` is not one.
    pub check: Option<ResponseCheck>,
    /// A model API call: its request built from `prompt`, its answer read against a schema.
    pub model: Option<ModelStep>,
    /// How long every call and wait of the step may take in all (retries of a 429, 529 or 5xx
    /// in process, honouring `retry-after`), then it fails; none: one call, and a retryable
    /// failure retries the event through SQS.
    pub budget: Option<std::time::Duration>,
    /// How often the step's API may be called, across every concurrent transform function.
    pub limits: RateLimits,
    /// The step's record when it fails (over the event, `$failure` = `{reason, message}`):
    /// the event goes on instead of to the DLQ or a retry.
    pub fallback: Option<Mapping>,
}

/// A model API step: the call and the prompt that fills it.
#[derive(Debug)]
pub struct ModelStep {
    /// The request shape, model and schema.
    pub call: crate::model::ModelCall,
    /// JSONata over the event and `$enriched`: the user message's text.
    pub prompt: Mapping,
    /// JSONata over the event and `$enriched`: what the audit record says was sent (ids of
    /// articles, names of fields); absent: the names of the earlier steps.
    pub audit: Option<Mapping>,
    /// Whether the audit record keeps the prompt's text (customer text): off unless the
    /// definition says so.
    pub audit_prompt: bool,
}

/// An enrichment call's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrichMethod {
    /// Reads the record (no body).
    Get,
    /// A query with a body (GraphQL).
    Post,
    /// A body to an idempotent endpoint.
    Put,
}

impl EnrichMethod {
    /// As HTTP spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichMethod::Get => "GET",
            EnrichMethod::Post => "POST",
            EnrichMethod::Put => "PUT",
        }
    }
}

/// What an enrichment step does when the record is not there (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// Nothing to do for this event: no route runs, nothing is delivered.
    Skip,
    /// The event goes to the events DLQ with reason `enrich_not_found`.
    Fail,
}

/// How an integration's webhooks are received.
#[derive(Debug)]
pub struct Source {
    /// The signature scheme.
    pub scheme: Scheme,
    /// The Secrets Manager id of the signing secret or key (`None` only for `verify: none`).
    pub secret: Option<String>,
    /// How far a signed timestamp may be from now.
    pub tolerance_secs: i64,
    /// What identifies a provider event for dedupe.
    pub dedupe: Dedupe,
    /// How long a provider event id is remembered.
    pub dedupe_ttl: std::time::Duration,
    /// Turns one delivery into several events (each element of the result), if set.
    pub split: Option<Mapping>,
    /// A split yielding more events than this is refused whole (413 `too_many_events`).
    pub split_max: usize,
    /// Larger bodies are refused with 413.
    pub max_body_bytes: usize,
}

/// What identifies a provider event, for dedupe. When it yields nothing for an event, the
/// SHA-256 of the event's body is used.
#[derive(Debug)]
pub enum Dedupe {
    /// A request header (`header.x-github-delivery`).
    Header(String),
    /// A JSONata expression over the event body (`id`, `eventId`).
    Expression(Mapping),
    /// The body's SHA-256.
    BodyHash,
}

/// One destination of an integration's events.
#[derive(Debug)]
pub struct Route {
    /// Unique within the integration.
    pub id: String,
    /// A predicate: when it is not true, the route skips the event.
    pub when: Option<Mapping>,
    /// The mapping from the event to the request body (or, with `map_request`, the request).
    pub mapping: Mapping,
    /// The mapping yields `{"body", "headers", "method", "path"}` rather than a body.
    pub map_request: bool,
    /// The JSON Schema the body must satisfy to go out.
    pub contract: Option<Contract>,
    /// Over the event (with `$enriched` and the mapped `$request`): true, or a text saying
    /// why, holds the request for a person instead of delivering it.
    pub review_when: Option<Mapping>,
    /// When a task waits for a person, and how long.
    pub review: ReviewPolicy,
    /// Which record an event changes and what orders its changes, when the route keeps them
    /// in order.
    pub ordering: Option<crate::ordering::Ordering>,
    /// Where and how the mapped request is sent.
    pub deliver: Deliver,
}

/// A route's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// The URL the request is posted to.
    pub url: Url,
    /// How the request authenticates.
    pub auth: Auth,
    /// The delays before each retry; once exhausted, the deliveries DLQ.
    pub retry: Vec<std::time::Duration>,
    /// Outbound Standard Webhooks signing, when set.
    pub sign: Option<Signing>,
    /// The longest a request may take, connect to last byte.
    pub timeout: std::time::Duration,
    /// The longest the connection may take to open.
    pub connect_timeout: std::time::Duration,
    /// How hard the destination may be called, across every concurrent function.
    pub limits: RateLimits,
    /// When calls stop because the destination seems down.
    pub circuit: CircuitSettings,
    /// What the network guard lets the call reach besides public https.
    pub access: Access,
    /// What a 2xx answer must say to count as delivered (`success`, `retry_when`).
    pub check: Option<ResponseCheck>,
}

/// What a 2xx answer must say to count as delivered (`deliver.success`: a JSONata predicate
/// over `{status, headers, body}`, the body parsed when it is JSON, or a preset's name), and
/// which answers that fail it are worth another try (`deliver.retry_when`, the same input).
/// Many APIs answer 200 when they failed: Slack's `{"ok": false}`, GraphQL's `errors` and
/// `userErrors`.
#[derive(Debug, Clone)]
pub struct ResponseCheck {
    /// As written (a preset's name, or the expression).
    pub source: String,
    /// True when the answer means delivered.
    pub success: Arc<Mapping>,
    /// True when a failed answer is worth another try; none: every failure is permanent.
    pub retry_when: Option<Arc<Mapping>>,
}

impl ResponseCheck {
    /// Judges an answer: None when it means success, else whether another try may help. The
    /// check sees `{status, headers, body}`; anything but `true` (false, nothing, an error)
    /// fails it.
    pub fn judge(
        &self,
        status: u16,
        headers: serde_json::Value,
        body: serde_json::Value,
    ) -> Option<bool> {
        let input = serde_json::json!({"status": status, "headers": headers, "body": body});
        let yes = |m: &Mapping| {
            matches!(
                m.evaluate(&input, &[]),
                Ok(Some(serde_json::Value::Bool(true)))
            )
        };
        if yes(&self.success) {
            return None;
        }
        Some(self.retry_when.as_deref().is_some_and(yes))
    }
}

impl PartialEq for ResponseCheck {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for ResponseCheck {}

/// The preset checks a definition names instead of writing one (`success: slack`): the
/// success expression and its retry rule.
pub const RESPONSE_PRESETS: [(&str, &str, Option<&str>); 2] = [
    // chat.postMessage and friends: `ok` says it; `ratelimited` is worth another try.
    (
        "slack",
        "body.ok = true",
        Some("body.error = 'ratelimited'"),
    ),
    // GraphQL (Shopify's Admin API among them): no `errors`, and no mutation's `userErrors`;
    // a throttled query is worth another try.
    (
        "graphql",
        "$not($exists(body.errors)) and $count(body.data.*.userErrors) = 0",
        Some("$exists(body.errors[extensions.code = 'THROTTLED'])"),
    ),
];

/// How a route signs what it sends (Standard Webhooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// The signing secret's id.
    pub secret: String,
    /// How long after a rotation the previous key still signs too (default 24 h, as Svix).
    pub previous_grace: std::time::Duration,
}

impl Deliver {
    /// The destination whose limits and circuit this route shares: scheme, host and port.
    pub fn destination(&self) -> String {
        self.url.origin().ascii_serialization()
    }
}

/// A destination's rate limits (none by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Requests started per second.
    pub max_per_second: Option<u32>,
    /// Requests in flight at once.
    pub max_concurrency: Option<u32>,
}

/// A destination's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long it stays open before one probe is let through.
    pub cool_down: std::time::Duration,
}

/// How long the events and deliveries queues keep a message (14 days, SQS's longest; the
/// template's `MessageRetentionPeriod`, held by a test).
pub const QUEUE_RETENTION: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

/// Requests time out after this long when a route sets no `timeout`.
pub const DEFAULT_DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for CircuitSettings {
    fn default() -> Self {
        Self {
            failures: 10,
            cool_down: std::time::Duration::from_secs(60),
        }
    }
}

/// How a delivery authenticates to its destination.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Auth {
    /// No credentials.
    None,
    /// `Authorization: Bearer <token>`, the token in the named secret.
    Bearer {
        /// Secrets Manager secret id.
        secret: String,
    },
    /// The key in a header of the destination's choosing (`X-Shopify-Access-Token`).
    ApiKey {
        /// The header.
        header: String,
        /// Secrets Manager secret id of the key.
        secret: String,
    },
    /// HTTP Basic; the secret holds `user:password` or `{"username": .., "password": ..}`.
    Basic {
        /// Secrets Manager secret id.
        secret: String,
    },
    /// OAuth 2.0 client credentials: the secret holds `{"type":
    /// "oauth2-client-credentials", "token_url", "client_id", "client_secret", "scope"}`; the
    /// access token obtained with it is sent as a bearer and cached until shortly before it
    /// expires.
    Oauth2ClientCredentials {
        /// Secrets Manager secret id of the client record.
        secret: String,
    },
}

impl Auth {
    /// The secret this auth reads, if any.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Auth::None => None,
            Auth::Bearer { secret }
            | Auth::ApiKey { secret, .. }
            | Auth::Basic { secret }
            | Auth::Oauth2ClientCredentials { secret } => Some(secret),
        }
    }

    /// Checks what serde cannot: a header name that HTTP accepts.
    pub(super) fn validate(&self) -> Result<(), String> {
        match self {
            Auth::ApiKey { header, .. } => http::HeaderName::from_bytes(header.as_bytes())
                .map(|_| ())
                .map_err(|_| format!("`{header}` is not a valid header name")),
            Auth::None
            | Auth::Bearer { .. }
            | Auth::Basic { .. }
            | Auth::Oauth2ClientCredentials { .. } => Ok(()),
        }
    }
}

/// A definition that cannot be used, naming the file and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionError {
    /// The file at fault.
    pub file: PathBuf,
    /// The field at fault (`routes[0].deliver.url`), empty for the whole file.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}
