//! Outbound HTTP, shared by enrichment calls (transform), deliveries (deliver), token mints and
//! rotation test calls: one client shape (compiled-in Mozilla roots, no redirects, no proxy,
//! time limits, the network guard) and transport errors described without the query string or
//! anything the server sent. Credentials are in `credentials`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use std::net::SocketAddr;

use switchboard_core::network::{self, Access, Blocked, GuardedResolver, NetworkPolicy};
use switchboard_core::ports::PortError;

/// A credential that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The secret could not be read.
    #[error(transparent)]
    Secret(#[from] PortError),
    /// The secret's value is not in the shape the auth type needs.
    #[error("secret `{secret}` is malformed: {problem}")]
    Malformed {
        /// The secret id.
        secret: String,
        /// What shape was expected.
        problem: &'static str,
    },
    /// The network guard refuses the secret's token endpoint: permanent.
    #[error(
        "no token for secret `{secret}`: its token endpoint is refused by the network guard: {blocked}"
    )]
    Blocked {
        /// The client record's secret id.
        secret: String,
        /// Why.
        blocked: Blocked,
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
/// connection alone; names resolve through the network guard and no proxy is used (a proxy
/// would resolve names where the guard cannot see them). Connections are pooled and reused
/// across events.
fn client(
    timeout: Duration,
    connect: Duration,
    guard: GuardedResolver,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config())
        .timeout(timeout)
        .connect_timeout(connect)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Resolver(guard))
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The HTTP client's resolver: resolves, then keeps only what the network guard allows
/// ([`GuardedResolver::filter`]), on every new connection.
#[derive(Debug, Clone, Copy)]
struct Resolver(GuardedResolver);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            guard
                .filter(&host, resolved)
                .map(|addrs| Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}

/// The answer's headers as the `success` check sees them (lower-case names, text values).
pub fn response_headers(response: &reqwest::Response) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.into())))
        .collect();
    serde_json::Value::Object(headers)
}

/// Why a request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The network guard refuses the destination.
    #[error(transparent)]
    Blocked(#[from] Blocked),
    /// No client could be built (TLS set-up).
    #[error("no HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Every outbound request of a function goes through here: the URL is checked by the network
/// guard before the request exists, and its client resolves names through the guard. One
/// client per connect timeout and private-network opt-in, built on first use and kept.
#[derive(Debug, Clone)]
pub struct GuardedHttp {
    policy: NetworkPolicy,
    timeout: Duration,
    clients: Arc<Mutex<HashMap<(Duration, bool), reqwest::Client>>>,
}

impl GuardedHttp {
    /// Requests under `policy`, none longer than `timeout` (a request may set less). Clients
    /// are built on first use: none is built at cold start that no request needs.
    pub fn new(policy: NetworkPolicy, timeout: Duration) -> Self {
        Self {
            policy,
            timeout,
            clients: Arc::default(),
        }
    }

    /// The function-wide network rule.
    pub fn policy(&self) -> NetworkPolicy {
        self.policy
    }

    /// A request to `url`, or why the guard refuses it.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: Url,
        connect: Duration,
        access: Access,
    ) -> Result<reqwest::RequestBuilder, RequestError> {
        network::check_url(&url, self.policy, access)?;
        Ok(self.client(connect, access)?.request(method, url))
    }

    /// A request to a URL given as text (a token endpoint, a rotation test URL).
    pub fn request_str(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, RequestError> {
        let url = Url::parse(url).map_err(|_| Blocked::Scheme)?;
        self.request(method, url, self.timeout, Access::default())
    }

    fn client(&self, connect: Duration, access: Access) -> Result<reqwest::Client, reqwest::Error> {
        let key = (connect, access.allow_private_network);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let guard = GuardedResolver {
            policy: self.policy,
            access,
        };
        let c = client(self.timeout, connect, guard)?;
        clients.insert(key, c.clone());
        Ok(c)
    }
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

/// An answer's body, read up to a cap.
#[derive(Debug)]
pub struct Capped {
    /// At most the cap's worth of the body.
    pub bytes: Vec<u8>,
    /// The body was longer: the rest was not read (the connection is dropped, not reused).
    pub truncated: bool,
}

/// Reads `response`'s body, stopping after `cap` bytes: a destination or an API cannot make a
/// function hold more than that in memory or wait for more.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Capped, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Capped {
                bytes,
                truncated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Capped {
        bytes,
        truncated: false,
    })
}

/// The network guard's refusal, when that is why the request failed (a name that resolved only
/// to refused addresses).
pub fn blocked(e: &reqwest::Error) -> Option<&Blocked> {
    network::blocked_in(e)
}

/// A transport error's kind and where it went (host and path, no query).
pub fn transport_error(e: &reqwest::Error) -> String {
    if let Some(b) = blocked(e) {
        return format!("refused by the network guard: {b}");
    }
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

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_after_resolution() {
        use reqwest::dns::Resolve as _;
        let guard = Resolver(GuardedResolver {
            policy: NetworkPolicy::DEPLOYED,
            access: Access::default(),
        });
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let e = match guard.resolve(name).await {
            Ok(_) => panic!("localhost resolved to an allowed address"),
            Err(e) => e,
        };
        assert!(
            matches!(
                network::blocked_in(e.as_ref()),
                Some(Blocked::Resolved { .. })
            ),
            "{e}"
        );
        let local = Resolver(GuardedResolver {
            policy: NetworkPolicy::LOCAL,
            access: Access::default(),
        });
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(local.resolve(name).await.is_ok());
    }
}
