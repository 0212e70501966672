//! Each function's configuration, read once at cold start from the environment into a
//! validated struct.

use std::path::PathBuf;
use std::time::Duration;

/// Why a handler could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A definition fails the network guard under the function's policy.
    #[error(transparent)]
    Definition(#[from] switchboard_core::integration::DefinitionError),
}

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}: {problem}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|_| ConfigError {
        name,
        problem: "is not set".into(),
    })
}

fn secs_or(name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(Duration::from_secs(default)),
        Ok(v) => v
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| ConfigError {
                name,
                problem: format!("`{v}` is not a whole number of seconds"),
            }),
    }
}

/// How long a secret value is cached (`SECRETS_TTL_SECS`, default 300): every function and
/// `switchboard dev` read it alike.
pub fn secrets_ttl() -> Result<Duration, ConfigError> {
    secs_or("SECRETS_TTL_SECS", 300)
}

fn integrations_dir() -> PathBuf {
    std::env::var("INTEGRATIONS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/opt"))
}

/// Ingest's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Directory of integration definitions (`INTEGRATIONS_DIR`, default `/opt`,
    /// where the integrations layer is unpacked).
    pub integrations_dir: PathBuf,
    /// The events queue (`EVENTS_QUEUE_URL`).
    pub events_queue_url: String,
    /// The idempotency table (`IDEMPOTENCY_TABLE`).
    pub idempotency_table: String,
    /// The raw-event archive bucket (`ARCHIVE_BUCKET`).
    pub archive_bucket: String,
    /// How long a secret value is cached (`SECRETS_TTL_SECS`, default 300).
    pub secrets_ttl: Duration,
}

impl IngestConfig {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            integrations_dir: integrations_dir(),
            events_queue_url: required("EVENTS_QUEUE_URL")?,
            idempotency_table: required("IDEMPOTENCY_TABLE")?,
            archive_bucket: required("ARCHIVE_BUCKET")?,
            secrets_ttl: secrets_ttl()?,
        })
    }
}

/// Transform's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformConfig {
    /// Directory of integration definitions (`INTEGRATIONS_DIR`).
    pub integrations_dir: PathBuf,
    /// The deliveries queue (`DELIVERIES_QUEUE_URL`).
    pub deliveries_queue_url: String,
    /// The archive bucket, where large bodies wait (`ARCHIVE_BUCKET`).
    pub archive_bucket: String,
    /// The events DLQ, where permanent failures go at once (`EVENTS_DLQ_URL`).
    pub events_dlq_url: String,
    /// The events queue's maxReceiveCount (`EVENTS_MAX_RECEIVE_COUNT`, default 5): a retryable
    /// failure on that receive is dead-lettered with its reason.
    pub max_receive_count: u32,
    /// How long a secret value is cached (`SECRETS_TTL_SECS`, default 300).
    pub secrets_ttl: Duration,
}

impl TransformConfig {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            integrations_dir: integrations_dir(),
            deliveries_queue_url: required("DELIVERIES_QUEUE_URL")?,
            archive_bucket: required("ARCHIVE_BUCKET")?,
            events_dlq_url: required("EVENTS_DLQ_URL")?,
            max_receive_count: count_or("EVENTS_MAX_RECEIVE_COUNT", 5)?,
            secrets_ttl: secrets_ttl()?,
        })
    }
}

/// A whole number from the environment, or `default` when it is not set.
fn count_or(name: &'static str, default: u32) -> Result<u32, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.parse::<u32>().map_err(|_| ConfigError {
            name,
            problem: format!("`{v}` is not a whole number"),
        }),
    }
}

/// Deliver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverConfig {
    /// Directory of integration definitions (`INTEGRATIONS_DIR`).
    pub integrations_dir: PathBuf,
    /// The deliveries queue, whose visibility timeout is the retry timer (`DELIVERIES_QUEUE_URL`).
    pub deliveries_queue_url: String,
    /// The deliveries DLQ (`DELIVERIES_DLQ_URL`).
    pub deliveries_dlq_url: String,
    /// The idempotency table (`IDEMPOTENCY_TABLE`): `deliver#{event_id}#{route}` records.
    pub idempotency_table: String,
    /// The deliveries queue's maxReceiveCount (`DELIVERIES_MAX_RECEIVE_COUNT`, default 50): a
    /// task still failing on that receive is dead-lettered with its reason.
    pub max_receive_count: u32,
    /// How long a secret value is cached (`SECRETS_TTL_SECS`, default 300).
    pub secrets_ttl: Duration,
}

impl DeliverConfig {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            integrations_dir: integrations_dir(),
            deliveries_queue_url: required("DELIVERIES_QUEUE_URL")?,
            deliveries_dlq_url: required("DELIVERIES_DLQ_URL")?,
            idempotency_table: required("IDEMPOTENCY_TABLE")?,
            max_receive_count: count_or("DELIVERIES_MAX_RECEIVE_COUNT", 50)?,
            secrets_ttl: secrets_ttl()?,
        })
    }
}
