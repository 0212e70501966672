//! Wiring for the transform Lambda: telemetry, config, clients, run.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use switchboard_shared::aws::{self, S3Archive, SqsQueue};
use switchboard_shared::config::TransformConfig;
use switchboard_shared::integration::Integrations;
use transform::handler::Transform;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = TransformConfig::from_env()?;
    let integrations = Arc::new(Integrations::load_dir(&config.integrations_dir)?);
    let sdk = aws::load_config().await;
    let handler = Arc::new(Transform::new(
        integrations,
        SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), config.deliveries_queue_url),
        S3Archive::new(aws_sdk_s3::Client::new(&sdk), config.archive_bucket),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Error>(handler.handle(event).await) }
    }))
    .await
}
