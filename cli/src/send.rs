//! `switchboard send`: signs a payload the way the integration's provider would, with its dev
//! secret, and posts it, so a first run needs no curl and no hand-made signature.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use switchboard_shared::integration::{Integration, Integrations};
use switchboard_shared::secret::SecretString;
use switchboard_shared::verify::sign;

/// The integration `id` in `dir`.
pub fn integration(dir: &Path, id: &str) -> anyhow::Result<Arc<Integration>> {
    let integrations =
        Integrations::<Integration>::load_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    match integrations.get(id) {
        Some(i) => Ok(Arc::clone(i)),
        None => {
            let known: Vec<&str> = integrations.iter().map(|i| i.id.as_str()).collect();
            bail!(
                "no integration `{id}` in {} (known: {})",
                dir.display(),
                known.join(", ")
            )
        }
    }
}

/// The headers that sign `body` as the integration's provider would, at `url`, now, with a
/// fresh message id, plus a content type.
pub fn signed_headers(
    integration: &Integration,
    secret: Option<&SecretString>,
    url: &str,
    body: &[u8],
    content_type: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    if let Some(secret) = secret {
        let id = format!("msg_{}", ulid::Ulid::new());
        let now = chrono::Utc::now().timestamp();
        headers.extend(
            sign(
                &integration.source.scheme,
                secret,
                "POST",
                url,
                body,
                &id,
                now,
            )
            .map_err(|e| anyhow::anyhow!("signing for `{}`: {e}", integration.id))?,
        );
    }
    Ok(headers)
}

/// The integration's secret value: from the secrets file if it has it, else from the emulator.
pub async fn secret_value(
    integration: &Integration,
    secrets_file: Option<&Path>,
    endpoint: &str,
) -> anyhow::Result<Option<SecretString>> {
    let Some(secret_id) = integration.source.secret.as_deref() else {
        return Ok(None);
    };
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
                // Asked by stage: moto answers the version before the last stage move without one.
                .version_stage("AWSCURRENT")
                .send()
                .await
                .with_context(|| format!("secret `{secret_id}` is not in the secrets file, and reading it from the emulator at {endpoint} failed"))?
                .secret_string()
                .context("the secret has no string value")?
                .to_string()
        }
    };
    Ok(Some(SecretString::new(value)))
}

/// The API Gateway (HTTP API v2) event for posting `body` with `headers` to `integration`.
pub fn lambda_event(
    integration: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.insert(http::HeaderName::try_from(name.as_str())?, value.parse()?);
    }
    map.insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
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
