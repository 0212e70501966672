//! Deliver's settings, read once at cold start from the environment into a validated struct.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_core::share;
use switchboard_shared::config::{ConfigError, count_or, integrations_dir, required, secrets_ttl};

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
    /// The archive bucket (`ARCHIVE_BUCKET`): tasks too large for a message wait under
    /// `tasks/`.
    pub archive_bucket: String,
    /// The deliveries queue's maxReceiveCount (`DELIVERIES_MAX_RECEIVE_COUNT`, default 50): a
    /// task still failing on that receive is dead-lettered with its reason.
    pub max_receive_count: u32,
    /// How long a secret value is cached (`SECRETS_TTL_SECS`, default 300).
    pub secrets_ttl: Duration,
    /// How many invocations one slow or unknown destination may hold at once:
    /// `DESTINATION_SHARE_PERCENT` (default 50) of `DELIVER_MAX_CONCURRENCY` (default 20), the
    /// template's `DestinationSharePercent` and `DeliverMaxConcurrency` (`share::of`).
    pub share: u32,
}

impl DeliverConfig {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            integrations_dir: integrations_dir(),
            deliveries_queue_url: required("DELIVERIES_QUEUE_URL")?,
            deliveries_dlq_url: required("DELIVERIES_DLQ_URL")?,
            idempotency_table: required("IDEMPOTENCY_TABLE")?,
            archive_bucket: required("ARCHIVE_BUCKET")?,
            max_receive_count: count_or("DELIVERIES_MAX_RECEIVE_COUNT", 50)?,
            secrets_ttl: secrets_ttl()?,
            share: share::of(
                count_or("DELIVER_MAX_CONCURRENCY", share::DEFAULT_CONCURRENCY)?,
                count_or("DESTINATION_SHARE_PERCENT", share::DEFAULT_PERCENT)?,
            ),
        })
    }
}
