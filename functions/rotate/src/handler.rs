//! The Secrets Manager rotation protocol, step by step, for the secret kinds Switchboard uses.
//!
//! Secrets Manager calls the function four times with the same `ClientRequestToken` (the new
//! version's id): `createSecret` stages a new value as `AWSPENDING`; `setSecret` would tell a
//! provider about it (nothing to do here: the providers issue the values); `testSecret` proves
//! the pending value works; `finishSecret` moves `AWSCURRENT` to it (the old value becomes
//! `AWSPREVIOUS`). Every step first checks that rotation is enabled and that the token is a
//! version staged `AWSPENDING`, returns at once when it is already `AWSCURRENT`, and is
//! idempotent: a retried step changes nothing twice.
//!
//! Kinds, from the secret's `type`:
//! - `oauth2-client-credentials`: a fresh access token from the token URL with the stored client
//!   credentials; tested against `test_url` (GET, the token as bearer, 2xx).
//! - `signing-secret` (or a bare `whsec_` key): a new random key; tested by parsing it. While it
//!   is pending, deliver signs with both keys.
//! - `api-key`: a new key from `mint_url` (POST, the current key as bearer; the answer's
//!   `value`, `key` or `api_key`); tested against `test_url`.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::network::NetworkPolicy;
use switchboard_core::ports::{PortError, RotationStore};
use switchboard_core::secret::{SecretString, TypedSecret, WebhookSecret};
use switchboard_shared::http::GuardedHttp;
use switchboard_shared::metrics::{Metrics, Outcome};

/// What Secrets Manager sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationEvent {
    /// The secret's ARN or name.
    pub secret_id: String,
    /// The new version's id.
    pub client_request_token: String,
    /// `createSecret`, `setSecret`, `testSecret` or `finishSecret`.
    pub step: String,
}

/// Why a step failed. Secrets Manager retries the step; AWSCURRENT is never touched by a failure.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The secret is not set up for this rotation.
    #[error("{0}")]
    Refused(String),
    /// The secret's value is not a kind that can rotate.
    #[error("secret `{secret}`: {problem}")]
    Unrotatable {
        /// The secret id.
        secret: String,
        /// What is wrong.
        problem: String,
    },
    /// A provider call failed (minting or testing).
    #[error("secret `{secret}`: {what}")]
    Provider {
        /// The secret id.
        secret: String,
        /// What the provider did (no value, no token).
        what: String,
    },
    /// Secrets Manager failed.
    #[error(transparent)]
    Aws(#[from] PortError),
}

/// The rotate handler.
#[derive(Debug)]
pub struct Rotate<S> {
    store: S,
    http: GuardedHttp,
    metrics: Metrics,
}

/// The longest answer a provider's token, mint or test endpoint may give.
const ANSWER_CAP: usize = 64 * 1024;

/// The steps, in the order Secrets Manager calls them.
pub const STEP_NAMES: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

impl<S: RotationStore> Rotate<S> {
    /// A handler over `store`; provider calls go where `network` allows and time out after
    /// 10 s.
    pub fn new(store: S, metrics: Metrics, network: NetworkPolicy) -> Self {
        Self {
            store,
            http: GuardedHttp::new(network, Duration::from_secs(10)),
            metrics,
        }
    }

    /// A provider call: its status and (capped) answer. The network guard's refusal and
    /// transport failures are the provider's failure.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
        provider: impl Fn(String) -> RotateError,
    ) -> Result<(u16, Vec<u8>), RotateError> {
        let request = self
            .http
            .request_str(method, url)
            .map_err(|e| provider(e.to_string()))?;
        let response = build(request)
            .send()
            .await
            .map_err(|e| provider(switchboard_shared::http::transport_error(&e)))?;
        let status = response.status().as_u16();
        let body = switchboard_shared::http::read_capped(response, ANSWER_CAP)
            .await
            .map_err(|e| provider(switchboard_shared::http::transport_error(&e)))?;
        if body.truncated {
            return Err(provider(format!(
                "the answer is longer than {ANSWER_CAP} bytes"
            )));
        }
        Ok((status, body.bytes))
    }

    /// Runs one step.
    pub async fn handle(&self, event: &RotationEvent) -> Result<(), RotateError> {
        let (id, token, step) = (&event.secret_id, &event.client_request_token, &event.step);
        let versions = self.store.versions(id).await?;
        if !versions.rotation_enabled {
            return Err(RotateError::Refused(format!(
                "secret `{id}` does not have rotation enabled"
            )));
        }
        if !versions.stages.contains_key(token) {
            return Err(RotateError::Refused(format!(
                "secret `{id}` has no version {token} to rotate to"
            )));
        }
        if versions.has(token, CURRENT) {
            if versions.has(token, PENDING) && step == "finishSecret" {
                // Promoted by an earlier try that stopped before tidying up.
                self.store.clear_pending(id, token).await?;
            }
            tracing::info!(secret = %id, step = %step, "version is already AWSCURRENT; nothing to do");
            return Ok(());
        }
        if !versions.has(token, PENDING) {
            return Err(RotateError::Refused(format!(
                "secret `{id}`: version {token} is not staged AWSPENDING"
            )));
        }
        let result = match step.as_str() {
            "createSecret" => self.create(id, token).await,
            // The providers issue the values; there is nothing to tell them.
            "setSecret" => Ok(()),
            "testSecret" => self.test(id, token).await,
            "finishSecret" => self.finish(id, token, &versions).await,
            other => Err(RotateError::Refused(format!("unknown step `{other}`"))),
        };
        match &result {
            Ok(()) => tracing::info!(secret = %id, step = %step, "rotation step done"),
            Err(e) => {
                tracing::error!(secret = %id, step = %step, error = %e, "rotation step failed")
            }
        }
        self.metrics.rotation(
            step,
            if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
        );
        result
    }

    /// Stages a new value, unless this token already has one.
    async fn create(&self, id: &str, token: &str) -> Result<(), RotateError> {
        let current = self.store.value(id, None, CURRENT).await?.ok_or_else(|| {
            RotateError::Refused(format!("secret `{id}` has no AWSCURRENT value"))
        })?;
        // A pending value that differs from the current one was made by an earlier try of this
        // step. (One equal to it is a placeholder: rotation never yields the same value.)
        if let Some(pending) = self.store.value(id, Some(token), PENDING).await?
            && pending != current
        {
            return Ok(());
        }
        let next = self.next_value(id, &current).await?;
        self.store.put_pending(id, token, &next).await?;
        Ok(())
    }

    /// The value that replaces `current`, of the same kind and shape.
    async fn next_value(
        &self,
        id: &str,
        current: &SecretString,
    ) -> Result<SecretString, RotateError> {
        let unrotatable = |problem: String| RotateError::Unrotatable {
            secret: id.to_string(),
            problem,
        };
        let provider = |what: String| RotateError::Provider {
            secret: id.to_string(),
            what,
        };
        let typed = TypedSecret::parse(current).map_err(unrotatable)?;
        let record = || -> serde_json::Map<String, serde_json::Value> {
            serde_json::from_str(current.expose()).unwrap_or_default()
        };
        match typed {
            TypedSecret::Signing(_) => {
                let key = WebhookSecret::generate().map_err(|e| unrotatable(e.to_string()))?;
                if current.expose().trim_start().starts_with('{') {
                    let mut r = record();
                    r.insert("value".into(), key.expose().into());
                    Ok(SecretString::new(serde_json::Value::Object(r).to_string()))
                } else {
                    Ok(key)
                }
            }
            TypedSecret::OAuth2(client) => {
                let answer = self.oauth_token(&client, provider).await?;
                let mut r = record();
                r.insert("access_token".into(), answer.access_token.into());
                match answer.expires_in {
                    Some(s) => r.insert(
                        "expires_at".into(),
                        (chrono::Utc::now().timestamp() + s).into(),
                    ),
                    None => r.remove("expires_at"),
                };
                Ok(SecretString::new(serde_json::Value::Object(r).to_string()))
            }
            TypedSecret::ApiKey { value, mint_url, .. } => {
                let url = mint_url.ok_or_else(|| unrotatable("an api-key needs `mint_url` to rotate".into()))?;
                let key = self.minted_key(&url, &value, provider).await?;
                let mut r = record();
                r.insert("value".into(), key.into());
                Ok(SecretString::new(serde_json::Value::Object(r).to_string()))
            }
            TypedSecret::Plain(_) => Err(unrotatable(
                "a plain value cannot be renewed; give it a `type` (oauth2-client-credentials, signing-secret, api-key)".into(),
            )),
        }
    }

    /// A new access token from the client's token endpoint (client credentials).
    async fn oauth_token(
        &self,
        client: &switchboard_core::secret::OAuthClient,
        provider: impl Fn(String) -> RotateError,
    ) -> Result<TokenAnswer, RotateError> {
        let form = switchboard_shared::credentials::client_credentials_form(client);
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &client.token_url,
                |r| {
                    r.basic_auth(&client.client_id, Some(client.client_secret.expose()))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form)
                },
                &provider,
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(provider(format!("the token endpoint answered {status}")));
        }
        serde_json::from_slice(&body)
            .map_err(|_| provider("the token endpoint's answer has no access_token".into()))
    }

    /// A new key from the provider's mint endpoint, asked with the current one.
    async fn minted_key(
        &self,
        url: &str,
        current: &SecretString,
        provider: impl Fn(String) -> RotateError,
    ) -> Result<String, RotateError> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                url,
                |r| r.bearer_auth(current.expose()),
                &provider,
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(provider(format!("the mint endpoint answered {status}")));
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| provider("the mint endpoint's answer is not JSON".into()))?;
        ["value", "key", "api_key"]
            .iter()
            .find_map(|k| answer[*k].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                provider("the mint endpoint's answer has no `value`, `key` or `api_key`".into())
            })
    }

    /// Proves the pending value works; AWSCURRENT stays as it is when it does not.
    async fn test(&self, id: &str, token: &str) -> Result<(), RotateError> {
        let pending = self
            .store
            .value(id, Some(token), PENDING)
            .await?
            .ok_or_else(|| {
                RotateError::Refused(format!("secret `{id}` has no pending value for {token}"))
            })?;
        let provider = |what: String| RotateError::Provider {
            secret: id.to_string(),
            what,
        };
        let (credential, test_url) = match TypedSecret::parse(&pending) {
            Ok(TypedSecret::Signing(key)) => {
                return WebhookSecret::parse(&key)
                    .map(|_| ())
                    .map_err(|e| provider(format!("the pending key is unusable: {e}")));
            }
            Ok(TypedSecret::OAuth2(client)) => (
                client
                    .access_token
                    .ok_or_else(|| provider("the pending record has no access_token".into()))?,
                client.test_url,
            ),
            Ok(TypedSecret::ApiKey {
                value, test_url, ..
            }) => (value, test_url),
            Ok(TypedSecret::Plain(_)) | Err(_) => {
                return Err(provider("the pending value is not a rotatable kind".into()));
            }
        };
        let Some(url) = test_url else {
            tracing::warn!(secret = %id, "no test_url: the pending value is promoted untested");
            return Ok(());
        };
        let (status, _) = self
            .call(
                reqwest::Method::GET,
                &url,
                |r| r.bearer_auth(credential.expose()),
                provider,
            )
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(provider(format!(
                "the test URL answered {status} to the pending value"
            )))
        }
    }

    /// Moves AWSCURRENT to the pending version.
    async fn finish(
        &self,
        id: &str,
        token: &str,
        versions: &switchboard_core::ports::SecretVersions,
    ) -> Result<(), RotateError> {
        let Some(current) = versions.version_with(CURRENT) else {
            return Err(RotateError::Refused(format!(
                "secret `{id}` has no AWSCURRENT version"
            )));
        };
        self.store.promote(id, token, current).await?;
        Ok(())
    }
}

/// A token endpoint's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<i64>,
}
