//! The transform function's ports on AWS, built one way for the Lambda (`main.rs`),
//! `switchboard dev` and the benchmarks.

use std::time::Duration;

use switchboard_core::network::NetworkPolicy;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::aws::{S3Archive, SdkConfig, SecretsManagerStore, SqsQueue};
use switchboard_shared::metrics::Metrics;

use crate::handler::Ports;

/// What transform is wired to.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The deliveries queue's URL.
    pub deliveries: &'a str,
    /// The events DLQ's URL.
    pub events_dlq: &'a str,
    /// The archive bucket.
    pub bucket: &'a str,
}

/// Transform's ports as AWS serves them.
pub type AwsPorts = Ports<SqsQueue, SqsQueue, S3Archive, SecretsManagerStore>;

impl AwsPorts {
    /// The SDK clients of `sdk` behind each port.
    pub fn from_sdk(
        sdk: &SdkConfig,
        names: Names<'_>,
        secrets_ttl: Duration,
        metrics: Metrics,
        network: NetworkPolicy,
    ) -> Self {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Ports {
            deliveries: SqsQueue::new(sqs.clone(), names.deliveries),
            dead_letters: SqsQueue::new(sqs, names.events_dlq),
            archive: S3Archive::new(aws_sdk_s3::Client::new(sdk), names.bucket),
            secrets: SecretsCache::new(
                SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk)),
                secrets_ttl,
            ),
            metrics,
            network,
        }
    }
}
