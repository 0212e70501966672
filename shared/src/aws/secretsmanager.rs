//! [`SecretStore`] over AWS Secrets Manager.

use aws_sdk_secretsmanager::Client;

use super::aws_error;
use crate::ports::{AwsError, SecretStore};
use crate::secret::SecretString;

/// Reads the AWSCURRENT value of secrets.
#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: Client,
}

impl SecretsManagerStore {
    /// A store over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl SecretStore for SecretsManagerStore {
    async fn get(&self, id: &str) -> Result<SecretString, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| aws_error("GetSecretValue", e))?;
        out.secret_string()
            .map(SecretString::new)
            .ok_or_else(|| AwsError {
                operation: "GetSecretValue",
                message: format!("secret `{id}` has no string value"),
            })
    }

    async fn get_previous(&self, id: &str) -> Result<Option<SecretString>, AwsError> {
        self.get_stage(id, "AWSPREVIOUS").await
    }

    async fn get_pending(&self, id: &str) -> Result<Option<SecretString>, AwsError> {
        self.get_stage(id, "AWSPENDING").await
    }
}

impl SecretsManagerStore {
    /// The value labelled `stage`, or None when no version carries the label.
    async fn get_stage(&self, id: &str, stage: &str) -> Result<Option<SecretString>, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_stage(stage)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.secret_string().map(SecretString::new)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(aws_error("GetSecretValue", e)),
        }
    }
}
