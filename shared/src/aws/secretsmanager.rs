//! [`SecretStore`] over AWS Secrets Manager.

use aws_sdk_secretsmanager::Client;

use super::aws_error;
use switchboard_core::ports::{
    PortError, RotationStore, SecretStages, SecretStore, SecretVersions,
};
use switchboard_core::secret::SecretString;

/// Reads secrets' values by version stage.
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
    async fn get(&self, id: &str) -> Result<SecretString, PortError> {
        // The stage is asked for explicitly: it is what AWS does without one, and moto without
        // one keeps answering the version current before the last UpdateSecretVersionStage.
        self.read(id, None, Some("AWSCURRENT"))
            .await?
            .map(|(v, _)| v)
            .ok_or_else(|| PortError {
                operation: "GetSecretValue",
                message: format!("secret `{id}` has no string value"),
            })
    }

    async fn get_stages(&self, id: &str) -> Result<SecretStages, PortError> {
        // One listing names the version behind each stage; each value is then read by version,
        // so the three agree even if a rotation moves the labels meanwhile. The current
        // version's age comes from GetSecretValue: moto dates every listed version "now".
        let listing = self
            .client
            .list_secret_version_ids()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| aws_error("ListSecretVersionIds", e))?;
        let with = |stage: &str| {
            listing
                .versions()
                .iter()
                .find(|v| v.version_stages().iter().any(|s| s == stage))
        };
        let Some(current) = with("AWSCURRENT") else {
            return Ok(SecretStages {
                current: self.get(id).await?,
                ..SecretStages::default()
            });
        };
        let version = |stage: &str| with(stage).and_then(|v| v.version_id()).map(str::to_string);
        let (value, previous, pending) = tokio::join!(
            self.get_version(id, current.version_id().map(str::to_string)),
            self.get_version(id, version("AWSPREVIOUS")),
            self.get_version(id, version("AWSPENDING")),
        );
        let (current, current_since) = value?.ok_or_else(|| PortError {
            operation: "GetSecretValue",
            message: format!("secret `{id}` has no string value"),
        })?;
        Ok(SecretStages {
            current,
            current_since,
            previous: previous?.map(|(v, _)| v),
            pending: pending?.map(|(v, _)| v),
        })
    }
}

impl SecretsManagerStore {
    /// The value of `version` and when it was created, or None when there is no such version
    /// (or none was named).
    async fn get_version(
        &self,
        id: &str,
        version: Option<String>,
    ) -> Result<Option<(SecretString, Option<i64>)>, PortError> {
        match version {
            Some(v) => self.read(id, Some(&v), None).await,
            None => Ok(None),
        }
    }

    /// The value of the version named by id and/or stage, and when that version was created;
    /// None when there is none.
    async fn read(
        &self,
        id: &str,
        version: Option<&str>,
        stage: Option<&str>,
    ) -> Result<Option<(SecretString, Option<i64>)>, PortError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .set_version_id(version.map(str::to_string))
            .set_version_stage(stage.map(str::to_string))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .secret_string()
                .map(|v| (SecretString::new(v), out.created_date().map(|d| d.secs())))),
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

impl RotationStore for SecretsManagerStore {
    async fn versions(&self, id: &str) -> Result<SecretVersions, PortError> {
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
    ) -> Result<Option<SecretString>, PortError> {
        Ok(self.read(id, version, Some(stage)).await?.map(|(v, _)| v))
    }

    async fn put_pending(
        &self,
        id: &str,
        token: &str,
        value: &SecretString,
    ) -> Result<(), PortError> {
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

    async fn promote(&self, id: &str, token: &str, from: &str) -> Result<(), PortError> {
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

    async fn clear_pending(&self, id: &str, token: &str) -> Result<(), PortError> {
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
