//! Requests counted where they leave the AWS SDK: an interceptor that notes each HTTP request's
//! operation just before it is sent, retries included (the SDK's operation metadata; else
//! `X-Amz-Target`, which the JSON protocols carry). What a test counts this way is what AWS
//! would bill.

use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};

/// The operations sent so far, in order (`GetSecretValue`, `ListSecretVersionIds`, ...).
#[derive(Debug, Clone, Default)]
pub struct SentRequests(Arc<Mutex<Vec<String>>>);

impl SentRequests {
    /// A Secrets Manager client whose every request is noted here.
    pub fn secrets_manager(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// The operations sent since the last take.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// An SQS client whose every request is noted here.
    pub fn sqs(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    /// A DynamoDB client whose every request is noted here.
    pub fn dynamodb(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// An S3 client whose every request is noted here.
    pub fn s3(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// How many requests were sent.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// How many requests of `operation` were sent.
    pub fn count(&self, operation: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|o| *o == operation)
            .count()
    }
}

impl Intercept for SentRequests {
    fn name(&self) -> &'static str {
        "SentRequests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // The operation the SDK is running (S3's REST calls carry no `x-amz-target`).
        if let Some(m) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            self.0.lock().unwrap().push(m.name().to_string());
            return Ok(());
        }
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("");
        // `secretsmanager.GetSecretValue` -> `GetSecretValue`.
        let operation = target.rsplit('.').next().unwrap_or(target);
        self.0.lock().unwrap().push(operation.to_string());
        Ok(())
    }
}
