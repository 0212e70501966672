//! The AWS SDK implementations of the ports. This is the only module of the library that knows
//! the AWS SDK.

mod dynamodb;
mod secretsmanager;
mod sqs;

pub use dynamodb::DynamoIdempotencyStore;
pub use secretsmanager::SecretsManagerStore;
pub use sqs::SqsQueue;

use aws_sdk_dynamodb::error::DisplayErrorContext;

use crate::ports::AwsError;

/// The SDK configuration from the environment (region, credentials, and `AWS_ENDPOINT_URL`
/// when it points at a local emulator).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

pub(crate) fn aws_error<E: std::error::Error>(operation: &'static str, e: E) -> AwsError {
    AwsError {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}
