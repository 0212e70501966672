//! Wiring for the ingest Lambda: telemetry, config, clients, run.

use std::sync::Arc;

use ingest::apigw::Sanitized;
use ingest::handler::{Ingest, Ports};
use lambda_http::{Error, Request, service_fn};
use switchboard_core::integration::{Inbound, Integrations};
use switchboard_core::secrets::SecretsCache;
use switchboard_shared::aws::{
    self, DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue,
};
use switchboard_shared::config::IngestConfig;
use switchboard_shared::metrics::Metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = IngestConfig::from_env()?;
    let integrations = Arc::new(Integrations::<Inbound>::load_dir(&config.integrations_dir)?);
    let sdk = aws::load_config().await;
    let events = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), config.events_queue_url);
    let idempotency = DynamoIdempotencyStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.idempotency_table,
    );
    let archive = S3Archive::new(aws_sdk_s3::Client::new(&sdk), config.archive_bucket);
    let mut warm = vec![
        Box::pin(events.warm()) as aws::WarmUp,
        Box::pin(idempotency.warm("ingest#")),
        Box::pin(archive.warm()),
    ];
    let ports = Ports {
        events,
        idempotency,
        secrets: SecretsCache::new(
            SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk)),
            config.secrets_ttl,
        ),
        archive,
        metrics: Metrics::Stdout,
    };
    let handler = Arc::new(Ingest::new(integrations, ports));
    let prefetch = Arc::clone(&handler);
    warm.push(Box::pin(async move {
        prefetch.prefetch_secrets().await;
        Ok(())
    }));
    aws::warm_up(warm);
    // lambda_http::run, with the sender's scheme and host headers made safe first.
    let service = service_fn(move |req: Request| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Error>(handler.handle(req).await) }
    });
    lambda_http::lambda_runtime::run(Sanitized(lambda_http::Adapter::from(service))).await
}
