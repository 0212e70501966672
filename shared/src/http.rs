//! Outbound HTTP, shared by enrichment calls (transform) and deliveries (deliver): one client
//! shape (compiled-in Mozilla roots, no redirects, time limits) and transport errors described
//! without the query string or anything the server sent. Credentials are in `credentials`.

use std::time::Duration;

use crate::ports::AwsError;

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
    /// An OAuth token could not be obtained (worth a retry: the endpoint may be down, or the
    /// client secret rotated).
    #[error("no token for secret `{secret}`: {message}")]
    Token {
        /// The client record's secret id.
        secret: String,
        /// What the token endpoint did.
        message: String,
    },
}

/// A client for calls to third parties: `timeout` bounds connect to last byte, `connect` the
/// connection alone. Connections are pooled and reused across events.
pub fn client(timeout: Duration, connect: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config())
        .timeout(timeout)
        .connect_timeout(connect)
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

/// `user:password`, or a JSON object with `username` and `password`.
pub(crate) fn basic_credentials(value: &str) -> Option<(String, String)> {
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
