//! Outbound HTTP, shared by enrichment calls (transform) and deliveries (deliver): one client
//! shape (compiled-in Mozilla roots, no redirects, a time limit), a definition's auth applied
//! from cached secrets, and transport errors described without the query string or anything
//! the server sent.

use std::time::Duration;

use crate::integration::Auth;
use crate::ports::{AwsError, SecretStore};
use crate::secrets::SecretsCache;

/// A credential that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The secret could not be read.
    #[error(transparent)]
    Secret(#[from] AwsError),
    /// The secret's value is not in the shape the auth type needs.
    #[error("secret `{secret}` is malformed: {problem}")]
    Malformed {
        /// The secret id.
        secret: String,
        /// What shape was expected.
        problem: &'static str,
    },
}

/// A client for calls to third parties: `timeout` bounds connect to last byte.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config())
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// TLS for third parties: the Mozilla root store compiled into the binary (no scan of the
/// system's certificate directory at cold start).
fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
    .unwrap_or_else(|_| {
        // The default provider always supports the default versions.
        rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    })
}

/// Adds `auth`'s credential to `request`, reading its secret through the cache.
pub async fn authorize<K: SecretStore>(
    request: reqwest::RequestBuilder,
    auth: &Auth,
    secrets: &SecretsCache<K>,
) -> Result<reqwest::RequestBuilder, AuthError> {
    Ok(match auth {
        Auth::None => request,
        Auth::Bearer { secret } => request.bearer_auth(secrets.get(secret).await?.expose()),
        Auth::ApiKey { header, secret } => {
            let value = secrets.get(secret).await?;
            let mut value =
                reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
                    AuthError::Malformed {
                        secret: secret.clone(),
                        problem: "an API key must be printable ASCII",
                    }
                })?;
            value.set_sensitive(true);
            request.header(header.as_str(), value)
        }
        Auth::Basic { secret } => {
            let value = secrets.get(secret).await?;
            let (user, password) =
                basic_credentials(value.expose()).ok_or_else(|| AuthError::Malformed {
                    secret: secret.clone(),
                    problem: "expected `user:password` or {\"username\": .., \"password\": ..}",
                })?;
            request.basic_auth(user, Some(password))
        }
    })
}

/// `user:password`, or a JSON object with `username` and `password`.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(value) {
        let user = o.get("username")?.as_str()?;
        let password = o.get("password")?.as_str()?;
        return Some((user.to_string(), password.to_string()));
    }
    let (user, password) = value.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A transport error's kind and where it went (host and path, no query).
pub fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_body() || e.is_decode() {
        "connection dropped mid-response"
    } else {
        "connection error"
    };
    match e.url() {
        Some(url) => format!(
            "{kind} ({}{})",
            url.host_str().unwrap_or_default(),
            url.path()
        ),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_come_as_text_or_json() {
        assert_eq!(
            basic_credentials("ada:pa:ss"),
            Some(("ada".into(), "pa:ss".into()))
        );
        assert_eq!(
            basic_credentials(r#"{"username": "ada", "password": "x"}"#),
            Some(("ada".into(), "x".into()))
        );
        assert_eq!(basic_credentials("no-colon"), None);
        assert_eq!(basic_credentials(r#"{"username": "ada"}"#), None);
    }
}
