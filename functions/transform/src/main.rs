//! Wiring for the transform Lambda: telemetry, config, clients, run.

use std::sync::Arc;

use lambda_runtime::Error;
use switchboard_core::integration::{Integration, Integrations};
use switchboard_shared::aws::{self, Wiring};
use switchboard_shared::batch;
use transform::config::TransformConfig;
use transform::handler::Transform;
use transform::wiring::{AwsPorts, Names};

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
    let names = Names {
        deliveries: &config.deliveries_queue_url,
        events_dlq: &config.events_dlq_url,
        bucket: &config.archive_bucket,
        table: &config.table,
    };
    let ports = AwsPorts::from_sdk(&Wiring::deployed(&sdk, config.secrets_ttl), names);
    aws::warm_up(vec![
        Box::pin(ports.deliveries.warm()),
        Box::pin(ports.archive.warm()),
    ]);
    let handler = Arc::new(Transform::new(
        integrations,
        ports,
        config.max_receive_count,
    )?);
    batch::serve(move |event| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(event).await }
    })
    .await
}
