//! `switchboard send`: signs a payload with the integration's dev secret and posts it, so a
//! first run needs no curl and no hand-made signature.

use std::path::Path;

use anyhow::{Context as _, bail};
use switchboard_shared::integration::{Verify, load_file};
use switchboard_shared::secret::{SecretString, WebhookSecret};
use switchboard_shared::verify::sign_standard_webhook;

/// The headers that sign `body` for `integration` with `secret`, with a fresh webhook id.
pub fn signed_headers(secret: &WebhookSecret, body: &[u8]) -> Vec<(&'static str, String)> {
    let id = format!("msg_{}", ulid::Ulid::new());
    let ts = chrono::Utc::now().timestamp();
    let signature = sign_standard_webhook(secret, &id, ts, body);
    vec![
        ("content-type", "application/json".to_string()),
        ("webhook-id", id),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature),
    ]
}

/// The signing secret id of the integration `id` in `dir`.
pub fn signing_secret_id(dir: &Path, id: &str) -> anyhow::Result<String> {
    let integrations = switchboard_shared::integration::Integrations::load_dir(dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let integration = match integrations.get(id) {
        Some(i) => i,
        None => {
            let known: Vec<&str> = integrations.iter().map(|i| i.id.as_str()).collect();
            bail!(
                "no integration `{id}` in {} (known: {})",
                dir.display(),
                known.join(", ")
            )
        }
    };
    // Re-read the one file for a clear error if it changed meanwhile.
    let integration = load_file(&integration.file).map_err(|e| anyhow::anyhow!("{e}"))?;
    match integration.verify {
        Verify::StandardWebhooks { secret } => Ok(secret),
    }
}

/// The secret's value: from the secrets file if it has it, else from the emulator.
pub async fn secret_value(
    secret_id: &str,
    secrets_file: Option<&Path>,
    endpoint: &str,
) -> anyhow::Result<WebhookSecret> {
    let from_file = match secrets_file {
        Some(file) if file.exists() => crate::resources::read_secrets_file(file)?.remove(secret_id),
        _ => None,
    };
    let value = match from_file {
        Some(v) => v,
        None => {
            let sdk = crate::dev::emulator_sdk(endpoint).await;
            aws_sdk_secretsmanager::Client::new(&sdk)
                .get_secret_value()
                .secret_id(secret_id)
                .send()
                .await
                .with_context(|| format!("secret `{secret_id}` is not in the secrets file, and reading it from the emulator at {endpoint} failed"))?
                .secret_string()
                .context("the secret has no string value")?
                .to_string()
        }
    };
    WebhookSecret::parse(&SecretString::new(value)).with_context(|| format!("secret `{secret_id}`"))
}

/// The API Gateway (HTTP API v2) event for posting `body` with `headers` to `integration`.
pub fn lambda_event(
    integration: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.parse()?);
    }
    Ok(crate::apigw::webhook_event(
        "POST",
        &format!("/webhooks/{integration}"),
        "",
        integration,
        &map,
        body,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    ))
}
