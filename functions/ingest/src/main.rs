//! Wiring for the ingest Lambda: telemetry, config, clients, run.

use std::sync::Arc;

use ingest::apigw::Sanitized;
use ingest::config::IngestConfig;
use ingest::handler::Ingest;
use ingest::wiring::{AwsPorts, Names};
use lambda_http::{Error, Request, service_fn};
use switchboard_core::integration::{Inbound, Integrations};
use switchboard_shared::aws::{self, Wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = IngestConfig::from_env()?;
    let integrations = Arc::new(Integrations::<Inbound>::load_dir(&config.integrations_dir)?);
    let sdk = aws::load_config().await;
    let names = Names {
        events: &config.events_queue_url,
        deliveries: &config.deliveries_queue_url,
        table: &config.idempotency_table,
        bucket: &config.archive_bucket,
    };
    let ports = AwsPorts::from_sdk(&Wiring::deployed(&sdk, config.secrets_ttl), names);
    let mut warm = vec![
        Box::pin(ports.events.warm()) as aws::WarmUp,
        Box::pin(ports.idempotency.warm("ingest#")),
    ];
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
