//! `switchboard send`: signs a payload the way the integration's provider would, with its dev
//! secret, and posts it, so a first run needs no curl and no hand-made signature.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use switchboard_core::integration::{Integration, Integrations};
use switchboard_core::secret::SecretString;
use switchboard_core::verify::sign;

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

/// `switchboard send`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// The integration id.
    pub integration: String,
    /// The JSON payload.
    #[arg(long)]
    pub file: std::path::PathBuf,
    /// Where to post (default: the local dev server).
    #[arg(long)]
    pub url: Option<String>,
    /// Directory of integration definitions.
    #[arg(long, default_value = "integrations")]
    pub integrations: std::path::PathBuf,
    /// The secrets file `switchboard dev` was given.
    #[arg(long, default_value = "dev/secrets.yaml")]
    pub secrets: std::path::PathBuf,
    /// Port of the local AWS emulator, read when the secret is not in the file.
    #[arg(long, default_value_t = 4566)]
    pub emulator_port: u16,
    /// Write the signed request as an API Gateway event to this file instead of posting it
    /// (for `cargo lambda invoke ingest --data-file FILE`).
    #[arg(long)]
    pub lambda_event: Option<std::path::PathBuf>,
    /// The body's content type.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
}

/// Runs the command.
pub async fn run(args: SendArgs) -> anyhow::Result<std::process::ExitCode> {
    let SendArgs {
        integration,
        file,
        url,
        integrations,
        secrets,
        emulator_port,
        lambda_event,
        content_type,
    } = args;
    let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let definition = self::integration(&integrations, &integration)?;
    let endpoint = format!("http://127.0.0.1:{emulator_port}");
    let secret = secret_value(&definition, Some(&secrets), &endpoint).await?;
    let url = url.unwrap_or_else(|| format!("http://127.0.0.1:3000/webhooks/{integration}"));
    let headers = signed_headers(&definition, secret.as_ref(), &url, &body, &content_type)?;
    if let Some(out) = lambda_event {
        let event = self::lambda_event(&integration, &headers, &body)?;
        std::fs::write(&out, serde_json::to_string_pretty(&event)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!(
            "wrote {} (its signature is valid for 5 minutes)",
            out.display()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let mut request = reqwest::Client::new().post(&url).body(body.clone());
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("posting to {url} (is `switchboard dev` running?)"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("{} {text}", status.as_u16());
    Ok(if status.is_success() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
