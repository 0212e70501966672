//! Wiring for the deliver Lambda: telemetry, config, clients, run.
#![recursion_limit = "256"]

use std::sync::Arc;

use deliver::config::DeliverConfig;
use deliver::handler::Deliver;
use deliver::wiring::{AwsPorts, Names};
use lambda_runtime::Error;
use switchboard_core::integration::{Integrations, Outbound};
use switchboard_shared::aws::{self, Wiring};
use switchboard_shared::batch;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = DeliverConfig::from_env()?;
    let integrations = Arc::new(Integrations::<Outbound>::load_dir(
        &config.integrations_dir,
    )?);
    let sdk = aws::load_config().await;
    let names = Names {
        table: &config.idempotency_table,
        deliveries: &config.deliveries_queue_url,
        deliveries_dlq: &config.deliveries_dlq_url,
        bucket: &config.archive_bucket,
    };
    let ports = AwsPorts::from_sdk(&Wiring::deployed(&sdk, config.secrets_ttl), names);
    let mut warm = vec![
        Box::pin(ports.idempotency.warm("deliver#")) as aws::WarmUp,
        Box::pin(ports.queue.warm()),
    ];
    let handler = Arc::new(
        Deliver::new(integrations, ports, config.max_receive_count)?.with_share(config.share),
    );
    let prefetch = Arc::clone(&handler);
    warm.push(Box::pin(async move {
        prefetch.prefetch_secrets().await;
        Ok(())
    }));
    aws::warm_up(warm);
    batch::serve(move |event| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(event).await }
    })
    .await
}
