//! Wiring for the transform Lambda: telemetry, config, clients, run.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use switchboard_core::integration::{Integration, Integrations};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::aws::{self, S3Archive, SecretsManagerStore, SqsQueue};
use switchboard_shared::config::TransformConfig;
use switchboard_shared::metrics::Metrics;
use transform::handler::{Ports, Transform};

// The mapping engine allocates per value (reference-counted strings, index maps): with mimalloc
// the Shopify mapping took 88 µs per event instead of 155 µs with the system allocator
// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = TransformConfig::from_env()?;
    let integrations = Arc::new(Integrations::<Integration>::load_dir(
        &config.integrations_dir,
    )?);
    let sdk = aws::load_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let deliveries = SqsQueue::new(sqs.clone(), config.deliveries_queue_url);
    aws::warm_up(vec![Box::pin(deliveries.warm())]);
    let handler = Arc::new(Transform::new(
        integrations,
        Ports {
            deliveries,
            dead_letters: SqsQueue::new(sqs, config.events_dlq_url),
            archive: S3Archive::new(aws_sdk_s3::Client::new(&sdk), config.archive_bucket),
            secrets: SecretsCache::new(
                SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk)),
                config.secrets_ttl,
            ),
            metrics: Metrics::Stdout,
            network: NetworkPolicy::DEPLOYED,
        },
        config.max_receive_count,
    )?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Error>(handler.handle(event).await) }
    }))
    .await
}
