//! [`SecretStore`] over AWS Secrets Manager.

use aws_sdk_secretsmanager::Client;

use super::aws_error;
use crate::ports::{AwsError, RotationStore, SecretStore, SecretVersions};
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
        // The previous value counts only while the current one is recent: a sender has had
        // PREVIOUS_GRACE to switch.
        let versions = self
            .client
            .list_secret_version_ids()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| aws_error("ListSecretVersionIds", e))?;
        let current_since = versions
            .versions()
            .iter()
            .find(|v| v.version_stages().iter().any(|s| s == "AWSCURRENT"))
            .and_then(|v| v.created_date())
            .map(|d| d.secs());
        if !crate::secrets::previous_still_valid(current_since, chrono::Utc::now().timestamp()) {
            return Ok(None);
        }
        self.get_stage(id, "AWSPREVIOUS").await
    }

    async fn get_pending(&self, id: &str) -> Result<Option<SecretString>, AwsError> {
        self.get_stage(id, "AWSPENDING").await
    }
}

impl SecretsManagerStore {
    /// The value labelled `stage`, or None when no version carries the label.
    async fn get_stage(&self, id: &str, stage: &str) -> Result<Option<SecretString>, AwsError> {
        RotationStore::value(self, id, None, stage).await
    }
}

impl RotationStore for SecretsManagerStore {
    async fn versions(&self, id: &str) -> Result<SecretVersions, AwsError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| aws_error("DescribeSecret", e))?;
        Ok(SecretVersions {
            rotation_enabled: out.rotation_enabled().unwrap_or(false),
            stages: out
                .version_ids_to_stages()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })
    }

    async fn value(
        &self,
        id: &str,
        version: Option<&str>,
        stage: &str,
    ) -> Result<Option<SecretString>, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .set_version_id(version.map(str::to_string))
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

    async fn put_pending(
        &self,
        id: &str,
        token: &str,
        value: &SecretString,
    ) -> Result<(), AwsError> {
        self.client
            .put_secret_value()
            .secret_id(id)
            .client_request_token(token)
            .secret_string(value.expose())
            .version_stages("AWSPENDING")
            .send()
            .await
            .map_err(|e| aws_error("PutSecretValue", e))?;
        Ok(())
    }

    async fn promote(&self, id: &str, token: &str, from: &str) -> Result<(), AwsError> {
        self.client
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage("AWSCURRENT")
            .move_to_version_id(token)
            .remove_from_version_id(from)
            .send()
            .await
            .map_err(|e| aws_error("UpdateSecretVersionStage", e))?;
        // The rotation is over: the new version is current, not pending.
        self.clear_pending(id, token).await
    }

    async fn clear_pending(&self, id: &str, token: &str) -> Result<(), AwsError> {
        self.client
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage("AWSPENDING")
            .remove_from_version_id(token)
            .send()
            .await
            .map_err(|e| aws_error("UpdateSecretVersionStage", e))?;
        Ok(())
    }
}
