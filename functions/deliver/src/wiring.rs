//! The deliver function's ports on AWS, built one way for the Lambda (`main.rs`),
//! `switchboard dev` and the benchmarks.

use std::time::Duration;

use switchboard_core::network::NetworkPolicy;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::aws::{DynamoIdempotencyStore, SdkConfig, SecretsManagerStore, SqsQueue};
use switchboard_shared::metrics::Metrics;

use crate::handler::Ports;

/// What deliver is wired to.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The idempotency table (claims, circuits, rate limits, attempt logs).
    pub table: &'a str,
    /// The deliveries queue's URL.
    pub deliveries: &'a str,
    /// The deliveries DLQ's URL.
    pub deliveries_dlq: &'a str,
}

/// Deliver's ports as AWS serves them.
pub type AwsPorts = Ports<SecretsManagerStore, SqsQueue, SqsQueue, DynamoIdempotencyStore>;

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
            idempotency: DynamoIdempotencyStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                names.table,
            ),
            secrets: SecretsCache::new(
                SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk)),
                secrets_ttl,
            ),
            queue: SqsQueue::new(sqs.clone(), names.deliveries),
            dead_letters: SqsQueue::new(sqs, names.deliveries_dlq),
            metrics,
            network,
        }
    }
}
