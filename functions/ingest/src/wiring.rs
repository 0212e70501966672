//! The ingest function's ports on AWS, built one way for the Lambda (`main.rs`),
//! `switchboard dev` and the benchmarks.

use std::time::Duration;

use switchboard_core::secrets::SecretsCache;
use switchboard_shared::aws::{
    DynamoIdempotencyStore, S3Archive, SdkConfig, SecretsManagerStore, SqsQueue,
};
use switchboard_shared::metrics::Metrics;

use crate::handler::Ports;

/// What ingest is wired to.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The events queue's URL.
    pub events: &'a str,
    /// The idempotency table (dedupe records).
    pub table: &'a str,
    /// The archive bucket.
    pub bucket: &'a str,
}

/// Ingest's ports as AWS serves them.
pub type AwsPorts = Ports<SqsQueue, DynamoIdempotencyStore, SecretsManagerStore, S3Archive>;

impl AwsPorts {
    /// The SDK clients of `sdk` behind each port.
    pub fn from_sdk(
        sdk: &SdkConfig,
        names: Names<'_>,
        secrets_ttl: Duration,
        metrics: Metrics,
    ) -> Self {
        Ports {
            events: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), names.events),
            idempotency: DynamoIdempotencyStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                names.table,
            ),
            secrets: SecretsCache::new(
                SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk)),
                secrets_ttl,
            ),
            archive: S3Archive::new(aws_sdk_s3::Client::new(sdk), names.bucket),
            metrics,
        }
    }
}
