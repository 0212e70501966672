//! Ingest's settings, read once at cold start from the environment into a validated struct.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_shared::config::{ConfigError, integrations_dir, required, secrets_ttl};

/// Ingest's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Directory of integration definitions (`INTEGRATIONS_DIR`, default `/opt`,
    /// where the integrations layer is unpacked).
    pub integrations_dir: PathBuf,
    /// The events queue (`EVENTS_QUEUE_URL`).
    pub events_queue_url: String,
    /// The deliveries queue (`DELIVERIES_QUEUE_URL`): requests approved in Slack.
    pub deliveries_queue_url: String,
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
            deliveries_queue_url: required("DELIVERIES_QUEUE_URL")?,
            idempotency_table: required("IDEMPOTENCY_TABLE")?,
            archive_bucket: required("ARCHIVE_BUCKET")?,
            secrets_ttl: secrets_ttl()?,
        })
    }
}
