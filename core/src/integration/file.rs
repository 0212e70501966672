//! The YAML shapes of a definition file (every key refused unless known), and the small value types they share.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::*;

/// A definition file as transform and `switchboard check` read it: every key known, each
/// documented here and in `docs/integrations.md`'s reference (a test holds the two equal).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IntegrationFile {
    /// The integration's id and URL path (`/webhooks/{id}`); not `audit`, `tasks` or `warm-up`.
    /// Default: the file's stem.
    pub(super) id: Option<String>,
    /// An object every expression reads as `$settings.<name>`. Default: none.
    pub(super) settings: Option<serde_json::Value>,
    /// How webhooks are received and verified. Required.
    pub(super) source: SourceFile,
    /// API and model calls before mapping, in order. Default: none.
    #[serde(default)]
    pub(super) enrich: Vec<EnrichFile>,
    /// Where each event goes. Required.
    pub(super) routes: Vec<RouteFile>,
}

/// A definition file as ingest reads it: the source in full, the rest only as keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InboundFile {
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) settings: IgnoredAny,
    pub(super) source: SourceFile,
    #[serde(default)]
    pub(super) enrich: IgnoredAny,
    pub(super) routes: Vec<InboundRouteFile>,
}

/// A route as ingest reads it: only where its items are decided (Slack's clicks come to
/// ingest); the other views check the rest.
#[derive(Debug, Deserialize)]
pub(super) struct InboundRouteFile {
    pub(super) id: String,
    pub(super) review: Option<InboundReviewFile>,
}

/// A route's `review:` as ingest reads it.
#[derive(Debug, Deserialize)]
pub(super) struct InboundReviewFile {
    #[serde(default)]
    pub(super) deciders: Vec<String>,
    pub(super) notify: Option<NotifyFile>,
}

/// A definition file as deliver reads it: each route's `deliver` in full.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutboundFile {
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) settings: IgnoredAny,
    pub(super) source: IgnoredAny,
    #[serde(default)]
    pub(super) enrich: IgnoredAny,
    pub(super) routes: Vec<OutboundRouteFile>,
}

/// A route as deliver reads it: its `deliver`, review settings and `on_rejected` in full, the
/// rest only as keys (their meaning is `RouteFile`'s).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutboundRouteFile {
    pub(super) id: String,
    #[serde(default)]
    pub(super) when: IgnoredAny,
    pub(super) map: IgnoredAny,
    #[serde(default)]
    pub(super) map_request: IgnoredAny,
    #[serde(default)]
    pub(super) contract: IgnoredAny,
    #[serde(default)]
    pub(super) review_when: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) on_rejected: OnRejected,
    pub(super) review: Option<ReviewFile>,
    pub(super) ordering: Option<OrderingFile>,
    pub(super) deliver: DeliverFile,
}

/// What a permanent refusal by the destination does to a route's task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OnRejected {
    /// To the deliveries DLQ with its reason.
    #[default]
    DeadLetter,
    /// To the review queue, for a person.
    Review,
}

/// A route's `review:` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReviewFile {
    /// How long an item waits, at most `7d`. Default `24h`.
    pub(super) expires: Option<DurationText>,
    /// `deliver`, `drop` or `dead_letter` (reason `review_expired`). Default `dead_letter`.
    pub(super) on_expiry: Option<crate::review::OnExpiry>,
    /// Who may decide; anyone when empty. Default: empty.
    #[serde(default)]
    pub(super) deciders: Vec<String>,
    /// The ReviewOverdue alarm's wait, before the expiry. Default `1h`.
    pub(super) alert_after: Option<DurationText>,
    /// Where each new item is posted for people to decide. Default: nowhere.
    pub(super) notify: Option<NotifyFile>,
}

/// A route's `review.notify:` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotifyFile {
    /// Approvals in Slack. Required.
    pub(super) slack: SlackFile,
}

/// A route's `review.notify.slack:` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlackFile {
    /// The channel id (`C0REVIEWS`). Required.
    pub(super) channel: String,
    /// The secret holding the bot token. Required.
    pub(super) token: String,
    /// The secret holding the app's signing secret. Required.
    pub(super) signing_secret: String,
    /// Slack's Web API. Default `https://slack.com/api`.
    pub(super) api_url: Option<String>,
}

/// One `enrich[]` step: an API call (or with `model`, a model API call) before mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnrichFile {
    /// The step's record is `$enriched.<name>`. Required.
    pub(super) name: String,
    /// The API's URL; `{…}` placeholders (JSONata paths) only after the host, percent-encoded. Required.
    pub(super) url: String,
    /// JSONata predicate: not true, the step is not called. Default: always.
    pub(super) when: Option<String>,
    /// `GET`, `POST` or `PUT`. Default `GET`.
    pub(super) method: Option<String>,
    /// JSONata: the request body (POST, PUT). Default: none.
    pub(super) body: Option<String>,
    /// JSONata: the record in the answer; nothing or null = not found. Default: the whole answer.
    pub(super) result: Option<String>,
    /// The credential. Default `none`.
    #[serde(default = "no_auth")]
    pub(super) auth: Auth,
    /// One call's limit, at most 20 s. Default `5s`.
    pub(super) timeout: Option<DurationText>,
    /// A 404 or no record: `skip` the event or `fail` it to the DLQ. Default `fail`.
    #[serde(default = "fail")]
    pub(super) on_missing: OnMissing,
    /// May call a private (VPC) address (logged at start). Default `false`.
    #[serde(default)]
    pub(super) allow_private_network: bool,
    /// May call plain `http` (logged at start). Default `false`.
    #[serde(default)]
    pub(super) allow_http: bool,
    /// The most of an answer read (more: `enrich_invalid_response`); at least 1.
    /// Default 1,048,576.
    pub(super) max_response_bytes: Option<usize>,
    /// JSONata over `{status, headers, body}` after a 2xx, or `slack` / `graphql`. Default: any 2xx.
    pub(super) success: Option<String>,
    /// JSONata: which failed answers are worth another try. Default: the preset's rule.
    pub(super) retry_when: Option<String>,
    /// The step calls a model API instead (no `method`, `body` or `result`). Default: none.
    pub(super) model: Option<ModelFile>,
    /// How long all its calls and in-process waits may take: at least `timeout`, at most
    /// 20 s. Default: one call.
    pub(super) budget: Option<DurationText>,
    /// `max_per_second`, shared by every transform function. Default: none.
    #[serde(default)]
    pub(super) limits: RateLimits,
    /// JSONata over the event and `$failure`: the record when the step fails for good.
    /// Default: none (the event fails or is retried).
    pub(super) fallback: Option<String>,
}

/// An enrichment step's `model:` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelFile {
    /// `anthropic` (Messages) or `openai` (Chat Completions). Required.
    pub(super) provider: crate::model::Provider,
    /// The model. Required.
    pub(super) name: String,
    /// The answer's token limit. Default 1024.
    pub(super) max_tokens: Option<u32>,
    /// The system prompt. Default: none.
    pub(super) system: Option<String>,
    /// JSONata (inline or a file): the user message's text. Required.
    pub(super) prompt: String,
    /// JSON Schema of the structured answer (a file or inline; an object). Required.
    pub(super) schema: ContractFile,
    /// JSONata: what the audit record says was sent. Default: none.
    pub(super) audit: Option<String>,
    /// Keep the prompt's text in the audit record. Default `false`.
    #[serde(default)]
    pub(super) audit_prompt: bool,
}

pub(super) fn fail() -> OnMissing {
    OnMissing::Fail
}

/// A duration written `300` (seconds) or `5m`, `7d`, `1h 30m`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum DurationText {
    Seconds(u64),
    Text(String),
}

impl DurationText {
    pub(super) fn parse(&self) -> Result<std::time::Duration, String> {
        match self {
            DurationText::Seconds(s) => Ok(std::time::Duration::from_secs(*s)),
            DurationText::Text(t) => humantime::parse_duration(t)
                .map_err(|e| format!("`{t}` is not a duration like `300`, `5m` or `7d`: {e}")),
        }
    }
}

/// One `routes[]` entry: filter, map, validate, review, deliver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    /// Unique within the integration. Required.
    pub(super) id: String,
    /// JSONata predicate: not true, the route skips the event. Default: always.
    pub(super) when: Option<String>,
    /// JSONata (inline or a file): the request body, or with `map_request` the request. Required.
    pub(super) map: String,
    /// The mapping yields `{body, headers, method, path}`. Default `false`.
    #[serde(default)]
    pub(super) map_request: bool,
    /// JSON Schema 2020-12 of the mapped body (a file or inline). Default: none.
    pub(super) contract: Option<ContractFile>,
    /// JSONata: `true` or a text (why) holds the request for a person. Default: never.
    pub(super) review_when: Option<String>,
    /// A permanent refusal: `dead_letter` or `review`. Default `dead_letter`.
    #[serde(default)]
    pub(super) on_rejected: OnRejected,
    /// The review item's settings. Default: the defaults of `ReviewFile`.
    pub(super) review: Option<ReviewFile>,
    /// One change of a record at a time, never an older after a newer. Default: none.
    pub(super) ordering: Option<OrderingFile>,
    /// Where and how the request is sent. Required.
    pub(super) deliver: DeliverFile,
}

/// A route's `ordering:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrderingFile {
    /// JSONata over the event: the record's id. Required.
    pub(super) key: String,
    /// JSONata over the event: what orders its changes (a number, or an ISO 8601 time).
    /// Required.
    pub(super) version: String,
    /// `skip`, `review` or `deliver` a change older than the last delivered. Default `skip`.
    #[serde(default)]
    pub(super) on_stale: crate::ordering::OnStale,
}

/// A contract: the path of a JSON Schema file beside the definition, or the schema inline.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ContractFile {
    Path(String),
    Inline(serde_json::Value),
}

/// A route's `deliver`: where and how its request is sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliverFile {
    /// The destination (https; its origin is the route's destination). Required.
    pub(super) url: String,
    /// The credential. Default `none`.
    #[serde(default = "no_auth")]
    pub(super) auth: Auth,
    /// The delays before each retry, each spread ±20%; with its jitter under the queue's
    /// retention. Default `[5s, 5m, 30m, 2h, 5h, 10h, 10h]`.
    pub(super) retry: Option<Vec<DurationText>>,
    /// Outbound Standard Webhooks signing. Default: none.
    pub(super) sign: Option<SignFile>,
    /// One call's limit. Default `10s`.
    pub(super) timeout: Option<DurationText>,
    /// The connection's limit. Default: the `timeout`.
    pub(super) connect_timeout: Option<DurationText>,
    /// `max_per_second`, `max_concurrency` across every deliver function; replaces the
    /// default share (`share`). Default: none.
    #[serde(default)]
    pub(super) limits: RateLimits,
    /// The route's circuit breaker. Default `failures: 10`, `cool_down: 60s`.
    pub(super) circuit: Option<CircuitFile>,
    /// May call a private (VPC) address (logged at start). Default `false`.
    #[serde(default)]
    pub(super) allow_private_network: bool,
    /// May call plain `http` (logged at start). Default `false`.
    #[serde(default)]
    pub(super) allow_http: bool,
    /// JSONata over `{status, headers, body}` after a 2xx, or `slack` / `graphql`. Default: any 2xx.
    pub(super) success: Option<String>,
    /// JSONata: which failed answers are worth another try. Default: the preset's rule, else none.
    pub(super) retry_when: Option<String>,
}

/// `deliver.sign`: outbound Standard Webhooks signing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignFile {
    /// Secrets Manager id of the `whsec_` key (or a `signing-secret` record). Required.
    pub(super) secret: String,
    /// How long the previous key still signs after a rotation. Default `24h`.
    pub(super) previous_grace: Option<DurationText>,
}

/// `deliver.circuit`: the route's circuit breaker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CircuitFile {
    /// Consecutive 5xx, 408 or transport failures that open it. Default 10.
    pub(super) failures: Option<u32>,
    /// How long it stays open before one probe. Default `60s`.
    pub(super) cool_down: Option<DurationText>,
}

pub(super) fn no_auth() -> Auth {
    Auth::None
}
