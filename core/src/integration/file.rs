//! The YAML shapes of a definition file (every key refused unless known), and the small value types they share.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IntegrationFile {
    pub(super) id: Option<String>,
    pub(super) settings: Option<serde_json::Value>,
    pub(super) source: SourceFile,
    #[serde(default)]
    pub(super) enrich: Vec<EnrichFile>,
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
    pub(super) routes: IgnoredAny,
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
    pub(super) expires: Option<DurationText>,
    pub(super) on_expiry: Option<crate::review::OnExpiry>,
    #[serde(default)]
    pub(super) deciders: Vec<String>,
    pub(super) alert_after: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnrichFile {
    pub(super) name: String,
    pub(super) url: String,
    pub(super) when: Option<String>,
    pub(super) method: Option<String>,
    pub(super) body: Option<String>,
    pub(super) result: Option<String>,
    #[serde(default = "no_auth")]
    pub(super) auth: Auth,
    pub(super) timeout: Option<DurationText>,
    #[serde(default = "fail")]
    pub(super) on_missing: OnMissing,
    #[serde(default)]
    pub(super) allow_private_network: bool,
    #[serde(default)]
    pub(super) allow_http: bool,
    pub(super) max_response_bytes: Option<usize>,
    pub(super) success: Option<String>,
    pub(super) retry_when: Option<String>,
    pub(super) model: Option<ModelFile>,
    pub(super) budget: Option<DurationText>,
    #[serde(default)]
    pub(super) limits: RateLimits,
    pub(super) fallback: Option<String>,
}

/// An enrichment step's `model:` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelFile {
    pub(super) provider: crate::model::Provider,
    pub(super) name: String,
    pub(super) max_tokens: Option<u32>,
    pub(super) system: Option<String>,
    pub(super) prompt: String,
    pub(super) schema: ContractFile,
    pub(super) audit: Option<String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub(super) id: String,
    pub(super) when: Option<String>,
    pub(super) map: String,
    #[serde(default)]
    pub(super) map_request: bool,
    pub(super) contract: Option<ContractFile>,
    pub(super) review_when: Option<String>,
    #[serde(default)]
    pub(super) on_rejected: OnRejected,
    pub(super) review: Option<ReviewFile>,
    pub(super) deliver: DeliverFile,
}

/// A contract: the path of a JSON Schema file beside the definition, or the schema inline.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ContractFile {
    Path(String),
    Inline(serde_json::Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliverFile {
    pub(super) url: String,
    #[serde(default = "no_auth")]
    pub(super) auth: Auth,
    pub(super) retry: Option<Vec<DurationText>>,
    pub(super) sign: Option<SignFile>,
    pub(super) timeout: Option<DurationText>,
    pub(super) connect_timeout: Option<DurationText>,
    #[serde(default)]
    pub(super) limits: RateLimits,
    pub(super) circuit: Option<CircuitFile>,
    #[serde(default)]
    pub(super) allow_private_network: bool,
    #[serde(default)]
    pub(super) allow_http: bool,
    pub(super) success: Option<String>,
    pub(super) retry_when: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignFile {
    pub(super) secret: String,
    pub(super) previous_grace: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CircuitFile {
    pub(super) failures: Option<u32>,
    pub(super) cool_down: Option<DurationText>,
}

pub(super) fn no_auth() -> Auth {
    Auth::None
}
