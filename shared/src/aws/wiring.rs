//! What every function's ports are built from on AWS: one SDK configuration and the settings
//! the adapters share. Each function's `wiring::AwsPorts::from_sdk` names its resources and
//! asks this for the clients, so `main.rs`, `switchboard dev` and the benches wire alike.

use std::time::Duration;

use aws_config::SdkConfig;
use switchboard_core::network::NetworkPolicy;
use switchboard_core::secrets::SecretsCache;

use super::{DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue};
use crate::metrics::Metrics;

/// One SDK configuration and the settings every function's ports share.
#[derive(Debug, Clone)]
pub struct Wiring<'a> {
    /// The AWS configuration (credentials, region, endpoint).
    pub sdk: &'a SdkConfig,
    /// How long a secret value is cached.
    pub secrets_ttl: Duration,
    /// Where the counts go.
    pub metrics: Metrics,
    /// Which addresses the function may call.
    pub network: NetworkPolicy,
}

impl<'a> Wiring<'a> {
    /// A Lambda's wiring: counts to stdout (EMF), the deployed network rules.
    pub fn deployed(sdk: &'a SdkConfig, secrets_ttl: Duration) -> Self {
        Self {
            sdk,
            secrets_ttl,
            metrics: Metrics::Stdout,
            network: NetworkPolicy::DEPLOYED,
        }
    }

    /// The queue at `url`.
    pub fn queue(&self, url: &str) -> SqsQueue {
        SqsQueue::new(aws_sdk_sqs::Client::new(self.sdk), url)
    }

    /// The idempotency table `name`.
    pub fn table(&self, name: &str) -> DynamoIdempotencyStore {
        DynamoIdempotencyStore::new(aws_sdk_dynamodb::Client::new(self.sdk), name)
    }

    /// The archive bucket `name`.
    pub fn archive(&self, name: &str) -> S3Archive {
        S3Archive::new(aws_sdk_s3::Client::new(self.sdk), name)
    }

    /// Secrets Manager behind the function's cache.
    pub fn secrets(&self) -> SecretsCache<SecretsManagerStore> {
        SecretsCache::new(
            SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(self.sdk)),
            self.secrets_ttl,
        )
    }
}
