//! Wiring for the deliver Lambda: telemetry, config, clients, run.
#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use deliver::handler::{Deliver, Ports};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use switchboard_core::integration::{Integrations, Outbound};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::aws::{self, DynamoIdempotencyStore, SecretsManagerStore, SqsQueue};
use switchboard_shared::config::DeliverConfig;
use switchboard_shared::metrics::Metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = DeliverConfig::from_env()?;
    let integrations = Arc::new(Integrations::<Outbound>::load_dir(
        &config.integrations_dir,
    )?);
    let sdk = aws::load_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let idempotency = DynamoIdempotencyStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.idempotency_table,
    );
    let queue = SqsQueue::new(sqs.clone(), config.deliveries_queue_url);
    let mut warm = vec![
        Box::pin(idempotency.warm("deliver#")) as aws::WarmUp,
        Box::pin(queue.warm()),
    ];
    let handler = Arc::new(Deliver::new(
        integrations,
        Ports {
            secrets: SecretsCache::new(
                SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk)),
                config.secrets_ttl,
            ),
            idempotency,
            queue,
            dead_letters: SqsQueue::new(sqs, config.deliveries_dlq_url),
            metrics: Metrics::Stdout,
            network: NetworkPolicy::DEPLOYED,
        },
        config.max_receive_count,
    )?);
    let prefetch = Arc::clone(&handler);
    warm.push(Box::pin(async move {
        prefetch.prefetch_secrets().await;
        Ok(())
    }));
    aws::warm_up(warm);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Error>(handler.handle(event).await) }
    }))
    .await
}
