//! Transform's settings, read once at cold start from the environment into a validated struct.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_shared::config::{ConfigError, count_or, integrations_dir, required, secrets_ttl};

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
    /// The table holding the shared rate limits of enrichment APIs (`IDEMPOTENCY_TABLE`).
    pub table: String,
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
            table: required("IDEMPOTENCY_TABLE")?,
            max_receive_count: count_or("EVENTS_MAX_RECEIVE_COUNT", 5)?,
            secrets_ttl: secrets_ttl()?,
        })
    }
}
