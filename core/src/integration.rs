//! Integration definitions: one YAML file per integration, loaded and fully validated at cold
//! start (keys, expressions, URLs), so a broken definition fails start-up, never a live event.
//!
//! A function loads the view of a definition it runs: transform and `switchboard check` the
//! whole [`Integration`], ingest its [`Inbound`] part (id and source), deliver its [`Outbound`]
//! part (each route's destination). Every view checks every key of the file; the parts a view
//! does not load are checked by the views that do (all run from the same layer).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use url::Url;

use crate::contract::Contract;
use crate::mapping::{Limits, Mapping};
use crate::network::{self, Access, NetworkPolicy};
use crate::url_template::UrlTemplate;
use crate::verify::{Algorithm, DEFAULT_TOLERANCE_SECS, Encoding, HmacScheme, Scheme};

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
}

/// A view of a definition file that a function loads ([`Integration`], [`Inbound`],
/// [`Outbound`]).
pub trait Definition: Sized {
    /// Loads and validates this view of one definition file.
    fn from_file(file: &Path) -> Result<Self, DefinitionError>;
    /// The integration's id.
    fn id(&self) -> &str;
    /// The file it was loaded from.
    fn file(&self) -> &Path;
    /// Every URL this view calls (field, URL or its fixed part, opt-ins), for the network guard.
    fn destinations(&self) -> Vec<Destination<'_>> {
        Vec::new()
    }
}

/// A URL a definition calls, as the network guard checks it.
#[derive(Debug)]
pub struct Destination<'a> {
    /// Where it is in the file (`routes[0].deliver.url`).
    pub field: String,
    /// The URL (an enrichment template's fixed part).
    pub url: &'a Url,
    /// What the route or step opted into.
    pub access: Access,
}

fn route_destinations<'a>(
    routes: impl Iterator<Item = (&'a str, &'a Deliver)>,
) -> impl Iterator<Item = Destination<'a>> {
    routes.enumerate().map(|(i, (id, d))| Destination {
        field: format!("routes[{i}].deliver.url (route `{id}`)"),
        url: &d.url,
        access: d.access,
    })
}

impl Definition for Integration {
    fn from_file(file: &Path) -> Result<Self, DefinitionError> {
        load_file(file)
    }
    fn destinations(&self) -> Vec<Destination<'_>> {
        let steps = self.enrich.iter().enumerate().map(|(i, s)| Destination {
            field: format!("enrich[{i}].url (step `{}`)", s.name),
            url: s.url.fixed(),
            access: s.access,
        });
        let routes = route_destinations(self.routes.iter().map(|r| (r.id.as_str(), &r.deliver)));
        steps.chain(routes).collect()
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn file(&self) -> &Path {
        &self.file
    }
}

impl Definition for Inbound {
    fn from_file(file: &Path) -> Result<Self, DefinitionError> {
        let def: InboundFile = read(file)?;
        let _ = (def.enrich, def.routes);
        Ok(Inbound {
            id: definition_id(file, def.id)?,
            file: file.to_path_buf(),
            source: source(def.source).map_err(|(field, m)| error(file, &field, m))?,
        })
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn file(&self) -> &Path {
        &self.file
    }
}

impl Definition for Outbound {
    fn from_file(file: &Path) -> Result<Self, DefinitionError> {
        let def: OutboundFile = read(file)?;
        let _ = (def.source, def.enrich);
        let id = definition_id(file, def.id)?;
        let mut routes: Vec<OutboundRoute> = Vec::with_capacity(def.routes.len());
        for (i, r) in def.routes.into_iter().enumerate() {
            let _ = (r.when, r.map, r.map_request, r.contract);
            route_id(file, i, &r.id, routes.iter().map(|o| o.id.as_str()))?;
            let deliver = deliver(&r.deliver, &|f, m| route_error(file, i, &r.id, f, m))?;
            routes.push(OutboundRoute { id: r.id, deliver });
        }
        if routes.is_empty() {
            return Err(error(file, "routes", "at least one route is needed".into()));
        }
        Ok(Outbound {
            id,
            file: file.to_path_buf(),
            routes,
        })
    }
    fn destinations(&self) -> Vec<Destination<'_>> {
        route_destinations(self.routes.iter().map(|r| (r.id.as_str(), &r.deliver))).collect()
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn file(&self) -> &Path {
        &self.file
    }
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
}

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
    fn validate(&self) -> Result<(), String> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrationFile {
    id: Option<String>,
    source: SourceFile,
    #[serde(default)]
    enrich: Vec<EnrichFile>,
    routes: Vec<RouteFile>,
}

/// A definition file as ingest reads it: the source in full, the rest only as keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundFile {
    id: Option<String>,
    source: SourceFile,
    #[serde(default)]
    enrich: IgnoredAny,
    routes: IgnoredAny,
}

/// A definition file as deliver reads it: each route's `deliver` in full.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundFile {
    id: Option<String>,
    source: IgnoredAny,
    #[serde(default)]
    enrich: IgnoredAny,
    routes: Vec<OutboundRouteFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundRouteFile {
    id: String,
    #[serde(default)]
    when: IgnoredAny,
    map: IgnoredAny,
    #[serde(default)]
    map_request: IgnoredAny,
    #[serde(default)]
    contract: IgnoredAny,
    deliver: DeliverFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrichFile {
    name: String,
    url: String,
    #[serde(default = "no_auth")]
    auth: Auth,
    timeout: Option<DurationText>,
    #[serde(default = "fail")]
    on_missing: OnMissing,
    #[serde(default)]
    allow_private_network: bool,
    #[serde(default)]
    allow_http: bool,
    max_response_bytes: Option<usize>,
}

/// The longest answer an enrichment step reads when it sets no `max_response_bytes` (1 MiB).
pub const DEFAULT_ENRICH_RESPONSE_BYTES: usize = 1024 * 1024;

fn fail() -> OnMissing {
    OnMissing::Fail
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    verify: VerifyKind,
    secret: Option<String>,
    #[serde(default)]
    allow_unsigned: bool,
    tolerance: Option<DurationText>,
    header: Option<String>,
    hmac: Option<HmacFile>,
    dedupe: Option<String>,
    dedupe_ttl: Option<DurationText>,
    split: Option<String>,
    split_max: Option<usize>,
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum VerifyKind {
    StandardWebhooks,
    Stripe,
    Github,
    Shopify,
    Slack,
    HubspotV3,
    Hmac,
    ApiKey,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HmacFile {
    header: String,
    #[serde(default = "sha256")]
    algorithm: AlgorithmFile,
    #[serde(default = "hex_encoding")]
    encoding: EncodingFile,
    prefix: Option<String>,
    timestamp_header: Option<String>,
    signed_content: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AlgorithmFile {
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EncodingFile {
    Hex,
    Base64,
}

fn sha256() -> AlgorithmFile {
    AlgorithmFile::Sha256
}

fn hex_encoding() -> EncodingFile {
    EncodingFile::Hex
}

/// A duration written `300` (seconds) or `5m`, `7d`, `1h 30m`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

impl DurationText {
    fn parse(&self) -> Result<std::time::Duration, String> {
        match self {
            DurationText::Seconds(s) => Ok(std::time::Duration::from_secs(*s)),
            DurationText::Text(t) => humantime::parse_duration(t)
                .map_err(|e| format!("`{t}` is not a duration like `300`, `5m` or `7d`: {e}")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    id: String,
    when: Option<String>,
    map: String,
    #[serde(default)]
    map_request: bool,
    contract: Option<ContractFile>,
    deliver: DeliverFile,
}

/// A contract: the path of a JSON Schema file beside the definition, or the schema inline.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ContractFile {
    Path(String),
    Inline(serde_json::Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverFile {
    url: String,
    #[serde(default = "no_auth")]
    auth: Auth,
    retry: Option<Vec<DurationText>>,
    sign: Option<SignFile>,
    timeout: Option<DurationText>,
    connect_timeout: Option<DurationText>,
    #[serde(default)]
    limits: RateLimits,
    circuit: Option<CircuitFile>,
    #[serde(default)]
    allow_private_network: bool,
    #[serde(default)]
    allow_http: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignFile {
    secret: String,
    previous_grace: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitFile {
    failures: Option<u32>,
    cool_down: Option<DurationText>,
}

fn no_auth() -> Auth {
    Auth::None
}

/// Every integration in a directory, by id, in the view `D` a function runs.
#[derive(Debug)]
pub struct Integrations<D = Integration> {
    by_id: BTreeMap<String, Arc<D>>,
}

impl<D> Default for Integrations<D> {
    fn default() -> Self {
        Self {
            by_id: BTreeMap::new(),
        }
    }
}

impl<D: Definition> Integrations<D> {
    /// Loads every `*.yaml` / `*.yml` file directly in `dir`; the first error stops it.
    pub fn load_dir(dir: &Path) -> Result<Self, DefinitionError> {
        let (all, errors) = Self::load_dir_all(dir);
        match errors.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(all),
        }
    }

    /// Loads every definition in `dir` that is valid, and lists what is wrong with the others
    /// (for `switchboard check`, which reports everything at once).
    pub fn load_dir_all(dir: &Path) -> (Self, Vec<DefinitionError>) {
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(DefinitionError {
                    file: dir.to_path_buf(),
                    field: String::new(),
                    message: format!(
                        "cannot read the integrations directory ({e}); pass --integrations DIR or set INTEGRATIONS_DIR"
                    ),
                });
                return (Self::default(), errors);
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        let mut by_id: BTreeMap<String, Arc<D>> = BTreeMap::new();
        for file in files {
            let integration = match D::from_file(&file) {
                Ok(integration) => integration,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if let Some(previous) = by_id.get(integration.id()) {
                errors.push(DefinitionError {
                    file: file.clone(),
                    field: "id".into(),
                    message: format!(
                        "integration id `{}` is already defined in {}",
                        integration.id(),
                        previous.file().display()
                    ),
                });
                continue;
            }
            by_id.insert(integration.id().to_string(), Arc::new(integration));
        }
        (Self { by_id }, errors)
    }

    /// What the network guard refuses in these definitions under `policy` (plain http, a
    /// literal loopback address where loopback is not allowed), each naming the file and field.
    pub fn network_errors(&self, policy: NetworkPolicy) -> Vec<DefinitionError> {
        self.iter()
            .flat_map(|d| {
                d.destinations().into_iter().filter_map(|dest| {
                    network::check_url(dest.url, policy, dest.access)
                        .err()
                        .map(|b| error(d.file(), &dest.field, b.to_string()))
                })
            })
            .collect()
    }

    /// Start-up's network check: the first refusal fails it; every opt-in is logged.
    pub fn check_network(&self, policy: NetworkPolicy) -> Result<(), DefinitionError> {
        if let Some(first) = self.network_errors(policy).into_iter().next() {
            return Err(first);
        }
        for d in self.iter() {
            for dest in d.destinations() {
                if dest.access.allow_private_network || dest.access.allow_http {
                    tracing::warn!(
                        integration = d.id(),
                        field = %dest.field,
                        allow_private_network = dest.access.allow_private_network,
                        allow_http = dest.access.allow_http,
                        "network guard relaxed by the definition"
                    );
                }
            }
        }
        Ok(())
    }
}

impl<D> Integrations<D> {
    /// The integration with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<D>> {
        self.by_id.get(id)
    }

    /// Every integration, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<D>> {
        self.by_id.values()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A [`DefinitionError`] for a field of a file.
fn error(file: &Path, field: &str, message: String) -> DefinitionError {
    DefinitionError {
        file: file.to_path_buf(),
        field: field.to_string(),
        message,
    }
}

/// An error for a field of a route (`routes[1].deliver.url`), naming the route.
fn route_error(file: &Path, i: usize, route: &str, field: &str, m: String) -> DefinitionError {
    error(
        file,
        &format!("routes[{i}].{field}"),
        format!("route `{route}`: {m}"),
    )
}

/// Reads a definition file into one of its shapes; an unknown key names the file and the key.
fn read<T: DeserializeOwned>(file: &Path) -> Result<T, DefinitionError> {
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
fn definition_id(file: &Path, id: Option<String>) -> Result<String, DefinitionError> {
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
    Ok(id)
}

/// Checks route `i`'s id against the ids of the routes before it.
fn route_id<'a>(
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
    let err = |field: &str, message: String| error(file, field, message);
    let def: IntegrationFile = read(file)?;
    let id = definition_id(file, def.id)?;

    let source = source(def.source).map_err(|(field, message)| err(&field, message))?;

    if def.routes.is_empty() {
        return Err(err("routes", "at least one route is needed".into()));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut enrich: Vec<EnrichStep> = Vec::with_capacity(def.enrich.len());
    for (i, step) in def.enrich.into_iter().enumerate() {
        let at = |f: &str| format!("enrich[{i}].{f}");
        if !valid_id(&step.name) || step.name.contains('-') {
            return Err(err(
                &at("name"),
                format!(
                    "`{}` is not a valid step name: use a-z, 0-9 and '_' (it is read as $enriched.{})",
                    step.name, step.name
                ),
            ));
        }
        if enrich.iter().any(|other| other.name == step.name) {
            return Err(err(
                &at("name"),
                format!("step name `{}` is used twice", step.name),
            ));
        }
        let url = UrlTemplate::parse(&step.url).map_err(|m| err(&at("url"), m))?;
        let access = Access {
            allow_private_network: step.allow_private_network,
            allow_http: step.allow_http,
        };
        network::check_literal(url.fixed(), access).map_err(|b| err(&at("url"), b.to_string()))?;
        step.auth.validate().map_err(|m| err(&at("auth"), m))?;
        let timeout = match step.timeout {
            Some(t) => t.parse().map_err(|m| err(&at("timeout"), m))?,
            None => DEFAULT_ENRICH_TIMEOUT,
        };
        if timeout > MAX_ENRICH_TIMEOUT || timeout.is_zero() {
            return Err(err(
                &at("timeout"),
                format!(
                    "must be more than 0 and at most {}s (transform's function timeout must outlast it)",
                    MAX_ENRICH_TIMEOUT.as_secs()
                ),
            ));
        }
        enrich.push(EnrichStep {
            name: step.name,
            url,
            auth: step.auth,
            timeout,
            on_missing: step.on_missing,
            access,
            max_response_bytes: match step.max_response_bytes {
                Some(0) => return Err(err(&at("max_response_bytes"), "must be at least 1".into())),
                Some(n) => n,
                None => DEFAULT_ENRICH_RESPONSE_BYTES,
            },
        });
    }

    let mut routes: Vec<Route> = Vec::with_capacity(def.routes.len());
    for (i, r) in def.routes.into_iter().enumerate() {
        route_id(file, i, &r.id, routes.iter().map(|o| o.id.as_str()))?;
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
        let deliver = deliver(&r.deliver, &route_err)?;
        routes.push(Route {
            id: r.id.clone(),
            when,
            mapping,
            map_request: r.map_request,
            contract,
            deliver,
        });
    }

    Ok(Integration {
        id,
        file: file.to_path_buf(),
        source,
        enrich,
        routes,
    })
}

/// A route's `deliver`, validated; `route_err` places an error at a field of the route.
fn deliver(
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
    let longest: std::time::Duration = retry
        .iter()
        .map(|d| d.mul_f64(1.0 + crate::delivery_policy::JITTER))
        .sum();
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
    })
}

/// Compiles a route's contract: inline, or a JSON (or YAML) schema file beside the definition.
fn contract(dir: &Path, def: &ContractFile) -> Result<Contract, String> {
    match def {
        ContractFile::Inline(schema) => Contract::compile(schema),
        ContractFile::Path(path) => {
            let full = dir.join(path);
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read schema file {}: {e}", full.display()))?;
            let schema: serde_json::Value = serde_norway::from_str(&text)
                .map_err(|e| format!("schema file {} is not JSON: {e}", full.display()))?;
            Contract::compile(&schema).map_err(|m| format!("{}: {m}", full.display()))
        }
    }
}

fn source(def: SourceFile) -> Result<Source, (String, String)> {
    let at = |f: &str| format!("source.{f}");
    let fail = |f: &str, m: &str| Err((at(f), m.to_string()));
    if def.hmac.is_some() && !matches!(def.verify, VerifyKind::Hmac) {
        return fail("hmac", "`hmac` only goes with verify: hmac");
    }
    if def.header.is_some() && !matches!(def.verify, VerifyKind::ApiKey) {
        return fail("header", "`header` only goes with verify: api-key");
    }
    let scheme = match def.verify {
        VerifyKind::StandardWebhooks => Scheme::StandardWebhooks,
        VerifyKind::Stripe => Scheme::Stripe,
        VerifyKind::Github => Scheme::Github,
        VerifyKind::Shopify => Scheme::Shopify,
        VerifyKind::Slack => Scheme::Slack,
        VerifyKind::HubspotV3 => Scheme::HubspotV3,
        VerifyKind::Hmac => {
            let Some(h) = def.hmac else {
                return fail(
                    "hmac",
                    "verify: hmac needs `hmac: { header, algorithm, encoding, prefix, timestamp_header, signed_content }`",
                );
            };
            Scheme::Hmac(HmacScheme {
                header: h.header,
                algorithm: match h.algorithm {
                    AlgorithmFile::Sha256 => Algorithm::Sha256,
                    AlgorithmFile::Sha512 => Algorithm::Sha512,
                },
                encoding: match h.encoding {
                    EncodingFile::Hex => Encoding::Hex,
                    EncodingFile::Base64 => Encoding::Base64,
                },
                prefix: h.prefix,
                timestamp_header: h.timestamp_header,
                signed_content: h.signed_content,
            })
        }
        VerifyKind::ApiKey => match def.header {
            Some(header) => Scheme::ApiKey { header },
            None => {
                return fail(
                    "header",
                    "verify: api-key needs `header`: the header that carries the key",
                );
            }
        },
        VerifyKind::None => Scheme::None,
    };
    match (&scheme, &def.secret, def.allow_unsigned) {
        (Scheme::None, _, false) => {
            return fail(
                "allow_unsigned",
                "verify: none accepts anyone's posts; say so with `allow_unsigned: true`",
            );
        }
        (Scheme::None, Some(_), _) => return fail("secret", "verify: none uses no secret"),
        (Scheme::None, None, true) => {}
        (_, None, _) => {
            return fail(
                "secret",
                "the Secrets Manager id of the signing secret is needed",
            );
        }
        (_, Some(_), true) => {
            return fail(
                "allow_unsigned",
                "`allow_unsigned` only goes with verify: none",
            );
        }
        (_, Some(_), false) => {}
    }
    let tolerance_secs = match def.tolerance {
        Some(t) => t.parse().map_err(|m| (at("tolerance"), m))?.as_secs() as i64,
        None => DEFAULT_TOLERANCE_SECS,
    };
    let dedupe_ttl = match def.dedupe_ttl {
        Some(t) => t.parse().map_err(|m| (at("dedupe_ttl"), m))?,
        None => DEFAULT_DEDUPE_TTL,
    };
    let expression = |field: &str, text: &str| {
        Mapping::parse(text, Limits::default()).map_err(|e| {
            (
                at(field),
                format!("the JSONata expression does not parse: {e}"),
            )
        })
    };
    let dedupe = match def.dedupe.as_deref() {
        Some(text) => match text.strip_prefix("header.") {
            Some(name) if !name.is_empty() => Dedupe::Header(name.to_ascii_lowercase()),
            _ => Dedupe::Expression(expression("dedupe", text)?),
        },
        None => default_dedupe(&scheme),
    };
    let split = def
        .split
        .as_deref()
        .map(|t| expression("split", t))
        .transpose()?;
    let split_max = match (def.split_max, &split) {
        (Some(_), None) => {
            return Err((at("split_max"), "`split_max` only goes with `split`".into()));
        }
        (Some(0), _) => return Err((at("split_max"), "must be at least 1".into())),
        (Some(n), _) => n,
        (None, _) => DEFAULT_SPLIT_MAX,
    };
    Ok(Source {
        scheme,
        secret: def.secret,
        tolerance_secs,
        dedupe,
        dedupe_ttl,
        split,
        split_max,
        max_body_bytes: def.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
    })
}

/// Each provider's own event id, where it has one.
fn default_dedupe(scheme: &Scheme) -> Dedupe {
    let expr = |e: &str| match Mapping::parse(e, Limits::default()) {
        Ok(m) => Dedupe::Expression(m),
        Err(_) => Dedupe::BodyHash,
    };
    match scheme {
        Scheme::StandardWebhooks => Dedupe::Header("webhook-id".into()),
        Scheme::Stripe => expr("id"),
        Scheme::Github => Dedupe::Header("x-github-delivery".into()),
        Scheme::Shopify => Dedupe::Header("x-shopify-webhook-id".into()),
        Scheme::Slack => expr("event_id"),
        Scheme::HubspotV3 => expr("eventId"),
        Scheme::Hmac(_) | Scheme::ApiKey { .. } | Scheme::None => Dedupe::BodyHash,
    }
}

/// `map` is inline JSONata, or the path (relative to the definition) of a `.jsonata` file.
fn mapping_source(dir: &Path, map: &str) -> Result<String, String> {
    let trimmed = map.trim();
    if trimmed.ends_with(".jsonata") && !trimmed.contains('\n') {
        let path = dir.join(trimmed);
        return std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read mapping file {}: {e}", path.display()));
    }
    Ok(map.to_string())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Algorithm, Encoding};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sb-int-{tag}-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const GOOD: &str = r#"
source:
  verify: standard-webhooks
  secret: example/signing
routes:
  - id: echo
    map: |
      { "name": name, "total": $sum(items.price) }
    deliver:
      url: http://127.0.0.1:3001/hook
      auth: { type: bearer, secret: example/token }
"#;

    #[test]
    fn the_documented_shape_loads_with_the_stem_as_id() {
        let dir = tempdir("good");
        let file = write(&dir, "example.yaml", GOOD);
        let i = load_file(&file).unwrap();
        assert_eq!(i.id, "example");
        assert_eq!(i.source.scheme, Scheme::StandardWebhooks);
        assert_eq!(i.source.secret.as_deref(), Some("example/signing"));
        assert!(matches!(&i.source.dedupe, Dedupe::Header(h) if h == "webhook-id"));
        assert_eq!(i.source.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(i.routes[0].id, "echo");
        assert_eq!(i.routes[0].deliver.auth.secret(), Some("example/token"));
        let all = Integrations::<Integration>::load_dir(&dir).unwrap();
        assert!(all.get("example").is_some());
    }

    #[test]
    fn each_function_loads_its_view_of_the_same_file() {
        let dir = tempdir("views");
        write(&dir, "example.yaml", GOOD);
        let whole = Integrations::<Integration>::load_dir(&dir).unwrap();
        let inbound = Integrations::<Inbound>::load_dir(&dir).unwrap();
        let outbound = Integrations::<Outbound>::load_dir(&dir).unwrap();
        let (w, i, o) = (
            whole.get("example").unwrap(),
            inbound.get("example").unwrap(),
            outbound.get("example").unwrap(),
        );
        assert_eq!(i.source.scheme, w.source.scheme);
        assert_eq!(i.source.secret, w.source.secret);
        assert_eq!(o.routes.len(), 1);
        assert_eq!(o.routes[0].id, "echo");
        assert_eq!(o.routes[0].deliver, w.routes[0].deliver);
    }

    #[test]
    fn a_view_refuses_unknown_keys_and_what_it_loads_but_not_what_it_skips() {
        let dir = tempdir("view-errors");
        // A mapping that does not parse is transform's to refuse; ingest and deliver skip it.
        let file = write(
            &dir,
            "m.yaml",
            &GOOD.replace("$sum(items.price) }", "$sum(items.price"),
        );
        assert_eq!(load_file(&file).unwrap_err().field, "routes[0].map");
        assert!(Inbound::from_file(&file).is_ok());
        assert!(Outbound::from_file(&file).is_ok());
        // Every view checks every key, and what it loads.
        let file = write(
            &dir,
            "k.yaml",
            &GOOD.replace("url:", "colour: red\n      url:"),
        );
        assert_eq!(
            Outbound::from_file(&file).unwrap_err().field,
            "routes[0].deliver.colour"
        );
        let file = write(&dir, "t.yaml", &format!("{GOOD}\nextra: 1\n"));
        assert_eq!(Inbound::from_file(&file).unwrap_err().field, "extra");
        let file = write(
            &dir,
            "u.yaml",
            &GOOD.replace("http://127.0.0.1:3001/hook", "not a url"),
        );
        assert_eq!(
            Outbound::from_file(&file).unwrap_err().field,
            "routes[0].deliver.url"
        );
        assert!(Inbound::from_file(&file).is_ok());
        let file = write(
            &dir,
            "v.yaml",
            &GOOD.replace("standard-webhooks", "carrier-pigeon"),
        );
        assert_eq!(
            Inbound::from_file(&file).unwrap_err().field,
            "source.verify"
        );
    }

    #[test]
    fn map_may_name_a_file_beside_the_definition() {
        let dir = tempdir("file");
        write(&dir, "m.jsonata", "{ \"n\": name }");
        let file = write(
            &dir,
            "x.yaml",
            &GOOD.replace(
                "|\n      { \"name\": name, \"total\": $sum(items.price) }",
                "m.jsonata",
            ),
        );
        let i = load_file(&file).unwrap();
        let out = i.routes[0]
            .mapping
            .evaluate(&serde_json::json!({"name": "a"}), &[])
            .unwrap();
        assert_eq!(out, Some(serde_json::json!({"n": "a"})));
    }

    #[test]
    fn unknown_keys_name_the_file_and_the_key() {
        let dir = tempdir("unknown");
        let file = write(
            &dir,
            "bad.yaml",
            &GOOD.replace("url:", "colour: red\n      url:"),
        );
        let e = load_file(&file).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("bad.yaml"), "{text}");
        assert!(text.contains("colour"), "{text}");
        assert_eq!(e.field, "routes[0].deliver.colour");

        let file = write(
            &dir,
            "bad2.yaml",
            &GOOD.replace("type: bearer,", "type: bearer, scope: x,"),
        );
        let text = load_file(&file).unwrap_err().to_string();
        assert!(text.contains("scope"), "{text}");

        let file = write(&dir, "bad3.yaml", &format!("{GOOD}\nextra: 1\n"));
        let text = load_file(&file).unwrap_err().to_string();
        assert!(text.contains("extra"), "{text}");
    }

    #[test]
    fn broken_definitions_are_refused_with_the_field() {
        let dir = tempdir("broken");
        let cases = [
            (
                GOOD.replace("$sum(items.price) }", "$sum(items.price"),
                "routes[0].map",
            ),
            (
                GOOD.replace("http://127.0.0.1:3001/hook", "not a url"),
                "routes[0].deliver.url",
            ),
            (
                GOOD.replace("  secret: example/signing\n", ""),
                "source.secret",
            ),
            (
                GOOD.replace("standard-webhooks", "carrier-pigeon"),
                "source.verify",
            ),
        ];
        for (text, field) in cases {
            let file = write(&dir, "b.yaml", &text);
            let e = load_file(&file).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    fn with_source(dir: &Path, source: &str) -> Result<Integration, DefinitionError> {
        let routes =
            "routes:\n  - id: r\n    map: $\n    deliver:\n      url: https://example.com/\n";
        let file = write(dir, "s.yaml", &format!("source:\n{source}{routes}"));
        load_file(&file)
    }

    #[test]
    fn every_scheme_and_its_options_load() {
        let dir = tempdir("schemes");
        for (verify, scheme) in [
            ("standard-webhooks", Scheme::StandardWebhooks),
            ("stripe", Scheme::Stripe),
            ("github", Scheme::Github),
            ("shopify", Scheme::Shopify),
            ("slack", Scheme::Slack),
            ("hubspot-v3", Scheme::HubspotV3),
        ] {
            let i = with_source(&dir, &format!("  verify: {verify}\n  secret: s\n")).unwrap();
            assert_eq!(i.source.scheme, scheme);
        }
        let i = with_source(
            &dir,
            "  verify: hmac\n  secret: s\n  tolerance: 2m\n  dedupe_ttl: 1d\n  max_body_bytes: 2048\n  hmac:\n    header: X-Sig\n    algorithm: sha512\n    encoding: base64\n    timestamp_header: X-Ts\n",
        )
        .unwrap();
        assert!(
            matches!(&i.source.scheme, Scheme::Hmac(h) if h.algorithm == Algorithm::Sha512 && h.encoding == Encoding::Base64)
        );
        assert_eq!(i.source.tolerance_secs, 120);
        assert_eq!(i.source.dedupe_ttl, std::time::Duration::from_secs(86_400));
        assert_eq!(i.source.max_body_bytes, 2048);
        let i = with_source(
            &dir,
            "  verify: api-key\n  header: X-Api-Key\n  secret: s\n  dedupe: header.X-Request-Id\n",
        )
        .unwrap();
        assert!(matches!(&i.source.dedupe, Dedupe::Header(h) if h == "x-request-id"));
        let i = with_source(
            &dir,
            "  verify: none\n  allow_unsigned: true\n  split: items\n  dedupe: order.id\n",
        )
        .unwrap();
        assert!(i.source.split.is_some());
        assert!(matches!(i.source.dedupe, Dedupe::Expression(_)));
        let i = with_source(&dir, "  verify: stripe\n  secret: s\n").unwrap();
        assert!(
            matches!(i.source.dedupe, Dedupe::Expression(_)),
            "Stripe's event id by default"
        );
    }

    #[test]
    fn source_mistakes_name_the_field() {
        let dir = tempdir("source-errors");
        for (source, field) in [
            ("  verify: none\n", "source.allow_unsigned"),
            ("  verify: github\n", "source.secret"),
            (
                "  verify: github\n  secret: s\n  allow_unsigned: true\n",
                "source.allow_unsigned",
            ),
            ("  verify: hmac\n  secret: s\n", "source.hmac"),
            ("  verify: api-key\n  secret: s\n", "source.header"),
            (
                "  verify: github\n  secret: s\n  header: x\n",
                "source.header",
            ),
            (
                "  verify: github\n  secret: s\n  tolerance: soon\n",
                "source.tolerance",
            ),
            (
                "  verify: github\n  secret: s\n  split: '[}'\n",
                "source.split",
            ),
            (
                "  verify: github\n  secret: s\n  split_max: 5\n",
                "source.split_max",
            ),
            (
                "  verify: github\n  secret: s\n  split: $\n  split_max: 0\n",
                "source.split_max",
            ),
            (
                "  verify: hmac\n  secret: s\n  hmac:\n    header: x\n    algorithm: md5\n",
                "source.hmac.algorithm",
            ),
        ] {
            let e = with_source(&dir, source).unwrap_err();
            assert_eq!(e.field, field, "{source}: {e}");
        }
    }

    const FULL: &str = r#"
source: { verify: shopify, secret: s/signing }
enrich:
  - name: customer
    url: https://shop.example.com/admin/customers/{customer.id}.json
    auth: { type: api-key, header: X-Shopify-Access-Token, secret: s/admin }
    timeout: 2s
    on_missing: skip
routes:
  - id: to-3pl
    when: financial_status = "paid"
    map: '{ "body": { "id": id } }'
    map_request: true
    contract: { type: object, required: [id] }
    deliver:
      url: https://3pl.example.com/v1/fulfillments
      auth: { type: basic, secret: s/3pl }
"#;

    #[test]
    fn enrich_when_map_request_and_contracts_load() {
        let dir = tempdir("full");
        let i = load_file(&write(&dir, "shop.yaml", FULL)).unwrap();
        let step = &i.enrich[0];
        assert_eq!(step.name, "customer");
        assert_eq!(step.timeout, std::time::Duration::from_secs(2));
        assert_eq!(step.on_missing, OnMissing::Skip);
        assert_eq!(step.auth.secret(), Some("s/admin"));
        let url = step
            .url
            .render(&crate::mapping::Scope::new(
                &serde_json::json!({"customer": {"id": 42}}),
                &[],
            ))
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://shop.example.com/admin/customers/42.json"
        );
        let route = &i.routes[0];
        assert!(route.when.is_some() && route.map_request);
        let contract = route.contract.as_ref().unwrap();
        assert!(
            contract
                .violations(&serde_json::json!({"id": 1}))
                .is_empty()
        );
        assert_eq!(contract.violations(&serde_json::json!({})).len(), 1);
        assert_eq!(
            route.deliver.auth,
            Auth::Basic {
                secret: "s/3pl".into()
            }
        );

        // A contract may also be a schema file beside the definition.
        write(
            &dir,
            "schema.json",
            r#"{"type": "object", "required": ["id"]}"#,
        );
        let from_file = FULL.replace("{ type: object, required: [id] }", "schema.json");
        let i = load_file(&write(&dir, "shop2.yaml", &from_file)).unwrap();
        assert_eq!(
            i.routes[0]
                .contract
                .as_ref()
                .unwrap()
                .violations(&serde_json::json!({}))
                .len(),
            1
        );
    }

    #[test]
    fn enrich_and_route_mistakes_name_the_field_and_the_route() {
        let dir = tempdir("full-errors");
        for (from, to, field) in [
            ("{customer.id}", "{customer.id", "enrich[0].url"),
            (
                "https://shop.example.com/",
                "https://{host}/",
                "enrich[0].url",
            ),
            ("name: customer", "name: the-customer", "enrich[0].name"),
            (
                "on_missing: skip",
                "on_missing: maybe",
                "enrich[0].on_missing",
            ),
            ("timeout: 2s", "timeout: soon", "enrich[0].timeout"),
            (
                "header: X-Shopify-Access-Token",
                "header: \"Bad Header\"",
                "enrich[0].auth",
            ),
            (
                "financial_status = \"paid\"",
                "financial_status = ",
                "routes[0].when",
            ),
            (
                "{ type: object, required: [id] }",
                "{ type: objekt }",
                "routes[0].contract",
            ),
            (
                "{ type: object, required: [id] }",
                "missing.json",
                "routes[0].contract",
            ),
            ("type: basic", "type: oauth1", "routes[0].deliver.auth.type"),
            // Longer than transform's function timeout allows.
            ("timeout: 2s", "timeout: 25s", "enrich[0].timeout"),
            // Literal addresses no stack allows: instance metadata, a private host.
            (
                "https://shop.example.com/",
                "http://169.254.169.254/",
                "enrich[0].url",
            ),
            (
                "https://3pl.example.com/v1/fulfillments",
                "https://10.0.0.7/v1/fulfillments",
                "routes[0].deliver.url",
            ),
            (
                "https://3pl.example.com/v1/fulfillments",
                "https://[::ffff:169.254.169.254]/latest",
                "routes[0].deliver.url",
            ),
            // 30 retries 12 h apart (plus jitter) outlive the queue's 14 days.
            (
                "      auth: { type: basic, secret: s/3pl }",
                "      auth: { type: basic, secret: s/3pl }\n      retry: [12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h, 12h]",
                "routes[0].deliver.retry",
            ),
        ] {
            let text = FULL.replace(from, to);
            assert_ne!(text, FULL, "{from}");
            let e = load_file(&write(&dir, "bad.yaml", &text)).unwrap_err();
            assert_eq!(e.field, field, "{to}: {e}");
            if field.starts_with("routes[0].") && field != "routes[0].deliver.auth.type" {
                assert!(e.message.contains("route `to-3pl`"), "{e}");
            }
        }
    }

    #[test]
    fn a_private_destination_loads_when_the_route_opts_in() {
        let dir = tempdir("vpc");
        let text = FULL.replace(
            "      url: https://3pl.example.com/v1/fulfillments",
            "      url: http://10.0.0.7/v1/fulfillments\n      allow_private_network: true\n      allow_http: true",
        );
        let i = load_file(&write(&dir, "vpc.yaml", &text)).unwrap();
        let access = i.routes[0].deliver.access;
        assert!(access.allow_private_network && access.allow_http);
        let dir2 = tempdir("vpc-list");
        write(&dir2, "vpc.yaml", &text);
        let all: Integrations = Integrations::load_dir(&dir2).unwrap();
        assert!(all.network_errors(NetworkPolicy::DEPLOYED).is_empty());
        assert!(all.check_network(NetworkPolicy::DEPLOYED).is_ok());
        // The same route without the opt-ins: refused at load (private), and by the deployed
        // rules (plain http).
        let bare = text
            .replace("\n      allow_private_network: true", "")
            .replace("\n      allow_http: true", "");
        let e = load_file(&write(&dir, "bare.yaml", &bare)).unwrap_err();
        assert!(e.message.contains("allow_private_network"), "{e}");
    }

    #[test]
    fn duplicate_ids_across_files_are_refused() {
        let dir = tempdir("dup");
        write(&dir, "a.yaml", &format!("id: same\n{GOOD}"));
        write(&dir, "b.yaml", &format!("id: same\n{GOOD}"));
        let e = Integrations::<Integration>::load_dir(&dir).unwrap_err();
        assert!(e.message.contains("already defined"), "{e}");
    }
}
