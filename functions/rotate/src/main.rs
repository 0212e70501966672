//! Wiring for the rotate Lambda: telemetry, clients, run.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use rotate::handler::{Rotate, RotationEvent};
use switchboard_shared::aws::{self, SecretsManagerStore};
use switchboard_shared::metrics::Metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let handler = Arc::new(Rotate::new(
        SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk)),
        Metrics::Stdout,
        switchboard_core::network::NetworkPolicy::DEPLOYED,
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<RotationEvent>| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(&event.payload).await.map_err(Error::from) }
    }))
    .await
}
