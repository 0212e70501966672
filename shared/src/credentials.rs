//! Credentials for outbound calls: a definition's `auth` turned into a request header from
//! cached secrets, OAuth 2.0 client-credentials tokens obtained and cached until shortly before
//! they expire, and outbound signing keys. Shared by enrichment (transform) and delivery.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::http::{AuthError, GuardedHttp, basic_credentials};
use switchboard_core::integration::{Auth, Signing};
use switchboard_core::ports::SecretStore;
use switchboard_core::secret::{SecretString, TypedSecret, WebhookSecret};
use switchboard_core::secrets::SecretsCache;

/// A token is renewed this long before the expiry its server announced.
const TOKEN_EARLY: Duration = Duration::from_secs(60);
/// How long a token is used when its server announced no expiry.
const TOKEN_DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The longest a token is kept, whatever its endpoint or record says (an `expires_in` of
/// 2^64 - 1 must not overflow the clock).
const TOKEN_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Secrets and the tokens minted from them.
#[derive(Debug)]
pub struct Credentials<K> {
    secrets: SecretsCache<K>,
    http: GuardedHttp,
    /// How long a token request may take.
    timeout: Duration,
    /// Access tokens by client secret id, with when to stop using them.
    tokens: std::sync::Mutex<HashMap<String, (Instant, SecretString)>>,
    /// One lock per client secret, held while its token is minted: concurrent events that find
    /// it missing ask its token endpoint once, and a slow endpoint holds up no other secret.
    minting: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// The longest an answer from a token endpoint may be.
const TOKEN_ANSWER_CAP: usize = 64 * 1024;

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

/// The body of a client-credentials grant (RFC 6749 §4.4): its type and the client's scope,
/// form-encoded. Deliver's and enrichment's tokens and rotation's new ones are asked alike.
pub fn client_credentials_form(client: &switchboard_core::secret::OAuthClient) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = client.scope.as_deref().filter(|s| !s.is_empty()) {
        form.append_pair("scope", scope);
    }
    form.finish()
}

impl<K: SecretStore> Credentials<K> {
    /// Credentials read through `secrets`; token requests go through `http` and time out
    /// after `timeout`.
    pub fn new(secrets: SecretsCache<K>, http: GuardedHttp, timeout: Duration) -> Self {
        Self {
            secrets,
            http,
            timeout,
            tokens: std::sync::Mutex::default(),
            minting: std::sync::Mutex::default(),
        }
    }

    /// The secrets cache underneath.
    pub fn secrets(&self) -> &SecretsCache<K> {
        &self.secrets
    }

    /// Adds `auth`'s credential to `request`.
    pub async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        auth: &Auth,
    ) -> Result<reqwest::RequestBuilder, AuthError> {
        Ok(match auth {
            Auth::None => request,
            Auth::Bearer { secret } => request.header(
                reqwest::header::AUTHORIZATION,
                bearer(secret, &self.value(secret).await?)?,
            ),
            Auth::ApiKey { header, secret } => {
                let value = self.value(secret).await?;
                let mut value = reqwest::header::HeaderValue::from_str(value.expose())
                    .map_err(|_| malformed(secret, "an API key must be printable ASCII"))?;
                value.set_sensitive(true);
                request.header(header.as_str(), value)
            }
            Auth::Basic { secret } => {
                let value = self.secrets.get(secret).await?;
                let (user, password) = basic_credentials(value.expose()).ok_or_else(|| {
                    malformed(
                        secret,
                        "expected `user:password` or {\"username\": .., \"password\": ..}",
                    )
                })?;
                request.basic_auth(user, Some(password))
            }
            Auth::Oauth2ClientCredentials { secret } => {
                let token = self.token(secret).await?;
                request.header(reqwest::header::AUTHORIZATION, bearer(secret, &token)?)
            }
        })
    }

    /// The one rule for a refused credential, used by enrichment and deliver: `send` once;
    /// when `refused` says the answer refused the credential (401/403) and `auth` comes from a
    /// secret, forget it (a fresh read, a new token) and `send` once more, at once. Answers the
    /// last answer and whether it was a second try.
    pub async fn sending_refreshed_once<T, E, Fut>(
        &self,
        auth: &Auth,
        mut send: impl FnMut() -> Fut,
        refused: impl Fn(&T) -> bool,
    ) -> Result<(T, bool), E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let first = send().await?;
        if !refused(&first) || auth.secret().is_none() {
            return Ok((first, false));
        }
        self.invalidate(auth).await;
        tracing::info!(
            secret = auth.secret(),
            "credential refused; read afresh and sending once more"
        );
        Ok((send().await?, true))
    }

    /// Forgets what `auth` was built from (the secret and any token minted with it), after the
    /// destination refused it: the next `authorize` reads and mints afresh.
    pub async fn invalidate(&self, auth: &Auth) {
        if let Some(secret) = auth.secret() {
            self.secrets.invalidate(secret);
            self.cached_tokens().remove(secret);
        }
    }

    /// The keys to sign outbound messages with: the current one, the previous one within the
    /// route's grace after a rotation, and the pending one during a rotation. The secret is a
    /// `whsec_` key or `{"type": "signing-secret", "value": ..}`.
    pub async fn signing_keys(&self, sign: &Signing) -> Result<Vec<WebhookSecret>, AuthError> {
        let secret = sign.secret.as_str();
        self.secrets
            .outbound_signing_keys(secret, sign.previous_grace)
            .await?
            .iter()
            .map(|v| {
                let key = match TypedSecret::parse(v) {
                    Ok(TypedSecret::Signing(key)) => key,
                    _ => v.clone(),
                };
                WebhookSecret::parse(&key)
                    .map_err(|_| malformed(secret, "expected a `whsec_` key or {\"type\": \"signing-secret\", \"value\": \"whsec_..\"}"))
            })
            .collect()
    }

    /// A token, a key: the secret's value, or the `value` of its typed record.
    async fn value(&self, secret: &str) -> Result<SecretString, AuthError> {
        let raw = self.secrets.get(secret).await?;
        Ok(match TypedSecret::parse(&raw) {
            Ok(TypedSecret::ApiKey { value, .. } | TypedSecret::Signing(value))
            | Ok(TypedSecret::Plain(value)) => value,
            Ok(TypedSecret::OAuth2(_)) | Err(_) => raw,
        })
    }

    /// The access token: the one the last rotation stored while it is valid, else one minted
    /// here and cached until shortly before it expires.
    async fn token(&self, secret: &str) -> Result<SecretString, AuthError> {
        if let Some(token) = self.cached_token(secret) {
            return Ok(token);
        }
        let lock = Arc::clone(
            self.minting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(secret.to_string())
                .or_default(),
        );
        let _minting = lock.lock().await;
        // Another event may have minted it while this one waited.
        if let Some(token) = self.cached_token(secret) {
            return Ok(token);
        }
        let value = self.secrets.get(secret).await?;
        let Ok(TypedSecret::OAuth2(client)) = TypedSecret::parse(&value) else {
            return Err(malformed(
                secret,
                "expected {\"type\": \"oauth2-client-credentials\", \"token_url\", \"client_id\", \"client_secret\", \"scope\"}",
            ));
        };
        let now = chrono::Utc::now().timestamp();
        if let (Some(token), Some(expires_at)) = (&client.access_token, client.expires_at) {
            let left = u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0);
            if left > TOKEN_EARLY.as_secs() {
                let keep = (Duration::from_secs(left) - TOKEN_EARLY).min(TOKEN_MAX_LIFETIME);
                self.cached_tokens()
                    .insert(secret.to_string(), (Instant::now() + keep, token.clone()));
                return Ok(token.clone());
            }
        }
        let answer = self.mint(secret, &client).await?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(TOKEN_DEFAULT_LIFETIME)
            .min(TOKEN_MAX_LIFETIME);
        // Renew a minute early, or at half-life for short-lived tokens.
        let keep = lifetime
            .checked_sub(TOKEN_EARLY)
            .filter(|k| *k >= lifetime / 2)
            .unwrap_or(lifetime / 2);
        let token = SecretString::new(answer.access_token);
        self.cached_tokens()
            .insert(secret.to_string(), (Instant::now() + keep, token.clone()));
        Ok(token)
    }

    /// A new token from the client's token endpoint (client credentials, as HTTP Basic: RFC
    /// 6749 §2.3.1 has every server accept it), through the network guard.
    async fn mint(
        &self,
        secret: &str,
        client: &switchboard_core::secret::OAuthClient,
    ) -> Result<TokenAnswer, AuthError> {
        let form = client_credentials_form(client);
        let token_error = |message: String| AuthError::Token {
            secret: secret.to_string(),
            message,
        };
        let blocked = |blocked: switchboard_core::network::Blocked| AuthError::Blocked {
            secret: secret.to_string(),
            blocked,
        };
        let response = self
            .http
            .request_str(reqwest::Method::POST, &client.token_url)
            .map_err(|e| match e {
                crate::http::RequestError::Blocked(b) => blocked(b),
                e => token_error(e.to_string()),
            })?
            .timeout(self.timeout)
            .basic_auth(&client.client_id, Some(client.client_secret.expose()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| match crate::http::blocked(&e) {
                Some(b) => blocked(b.clone()),
                None => token_error(crate::http::transport_error(&e)),
            })?;
        let status = response.status();
        if !status.is_success() {
            if matches!(status.as_u16(), 400 | 401) {
                // The client secret may have been rotated under us.
                self.secrets.invalidate(secret);
            }
            return Err(token_error(format!(
                "the token endpoint answered {}",
                status.as_u16()
            )));
        }
        let answer = crate::http::read_capped(response, TOKEN_ANSWER_CAP)
            .await
            .map_err(|e| token_error(crate::http::transport_error(&e)))?;
        if answer.truncated {
            return Err(token_error(format!(
                "the token endpoint's answer is longer than {TOKEN_ANSWER_CAP} bytes"
            )));
        }
        serde_json::from_slice(&answer.bytes)
            .map_err(|_| token_error("the token endpoint's answer has no access_token".into()))
    }

    fn cached_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, SecretString)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The minted token for `secret`, while it is good.
    fn cached_token(&self, secret: &str) -> Option<SecretString> {
        self.cached_tokens()
            .get(secret)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, token)| token.clone())
    }
}

/// `Bearer <token>`, marked sensitive so it is never printed.
fn bearer(secret: &str, token: &SecretString) -> Result<reqwest::header::HeaderValue, AuthError> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| malformed(secret, "a token must be printable ASCII"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn malformed(secret: &str, problem: &'static str) -> AuthError {
    AuthError::Malformed {
        secret: secret.to_string(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::post;

    use switchboard_core::ports::PortError;

    use super::*;

    #[test]
    fn form_values_are_encoded() {
        let client: switchboard_core::secret::OAuthClient = serde_json::from_value(
            serde_json::json!({"token_url": "https://t", "client_id": "c", "client_secret": "s", "scope": "crm.write a/b"}),
        )
        .unwrap();
        assert_eq!(
            client_credentials_form(&client),
            "grant_type=client_credentials&scope=crm.write+a%2Fb"
        );
    }

    struct Fixed(String);

    /// The guard as `switchboard dev` runs it: these tests' servers are on loopback.
    fn local_http() -> GuardedHttp {
        GuardedHttp::new(
            switchboard_core::network::NetworkPolicy::LOCAL,
            Duration::from_secs(5),
        )
    }

    impl SecretStore for Fixed {
        async fn get(&self, _: &str) -> Result<SecretString, PortError> {
            Ok(SecretString::new(self.0.clone()))
        }
    }

    /// A token endpoint minting `token-N`, checking the client's Basic credentials.
    async fn token_server(expires_in: u64) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let app = Router::new().route(
            "/token",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let c = Arc::clone(&c);
                async move {
                    // base64("id:shh")
                    if headers["authorization"] != "Basic aWQ6c2ho"
                        || !body.contains("grant_type=client_credentials")
                        || !body.contains("scope=read")
                    {
                        return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                    }
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    (
                        axum::http::StatusCode::OK,
                        format!(r#"{{"access_token":"token-{n}","token_type":"Bearer","expires_in":{expires_in}}}"#),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    fn credentials(token_url: &str) -> Credentials<Fixed> {
        let record = format!(
            r#"{{"type":"oauth2-client-credentials","token_url":"{token_url}","client_id":"id","client_secret":"shh","scope":"read"}}"#
        );
        Credentials::new(
            SecretsCache::new(Fixed(record), Duration::from_secs(60)),
            local_http(),
            Duration::from_secs(5),
        )
    }

    /// A record per secret id.
    struct ByName(HashMap<String, String>);

    impl SecretStore for ByName {
        async fn get(&self, id: &str) -> Result<SecretString, PortError> {
            Ok(SecretString::new(self.0[id].clone()))
        }
    }

    #[tokio::test]
    async fn a_slow_token_endpoint_holds_up_no_other_secret() {
        let (fast_url, _) = token_server(3600).await;
        // A token endpoint that answers after two seconds.
        let app = Router::new().route(
            "/token",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                r#"{"access_token":"slow-token","expires_in":3600}"#
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slow_url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let record = |url: &str| {
            format!(
                r#"{{"type":"oauth2-client-credentials","token_url":"{url}","client_id":"id","client_secret":"shh","scope":"read"}}"#
            )
        };
        let store = ByName(HashMap::from([
            ("slow".to_string(), record(&slow_url)),
            ("fast".to_string(), record(&fast_url)),
        ]));
        let c = Arc::new(Credentials::new(
            SecretsCache::new(store, Duration::from_secs(60)),
            local_http(),
            Duration::from_secs(5),
        ));
        let slow = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.token("slow").await.map(|t| t.expose().to_string()) })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let fast = c.token("fast").await.unwrap();
        assert_eq!(fast.expose(), "token-0");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the fast secret waited {:?} for the slow one's mint",
            started.elapsed()
        );
        assert_eq!(slow.await.unwrap().unwrap(), "slow-token");
    }

    fn authorization(request: reqwest::RequestBuilder) -> String {
        let r = request.build().unwrap();
        r.headers()["authorization"].to_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_token_endpoint_the_guard_refuses_is_a_permanent_error_and_is_not_called() {
        let (url, calls) = token_server(3600).await;
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        for token_url in [url.clone(), format!("https://localhost:{port}/token")] {
            let record = format!(
                r#"{{"type":"oauth2-client-credentials","token_url":"{token_url}","client_id":"id","client_secret":"shh","scope":"read"}}"#
            );
            let c = Credentials::new(
                SecretsCache::new(Fixed(record), Duration::from_secs(60)),
                GuardedHttp::new(
                    switchboard_core::network::NetworkPolicy::DEPLOYED,
                    Duration::from_secs(5),
                ),
                Duration::from_secs(5),
            );
            let e = c.token("dest/oauth").await.unwrap_err();
            assert!(matches!(e, AuthError::Blocked { .. }), "{token_url}: {e}");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "nothing reached the endpoint"
        );
    }

    #[tokio::test]
    async fn a_client_credentials_token_is_minted_once_and_reused_until_refused() {
        let (url, calls) = token_server(3600).await;
        let c = credentials(&url);
        let auth = Auth::Oauth2ClientCredentials {
            secret: "dest/oauth".into(),
        };
        let http = reqwest::Client::new();
        for _ in 0..3 {
            let r = c.authorize(http.get("http://x/"), &auth).await.unwrap();
            assert_eq!(authorization(r), "Bearer token-0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        c.invalidate(&auth).await;
        let r = c.authorize(http.get("http://x/"), &auth).await.unwrap();
        assert_eq!(authorization(r), "Bearer token-1");
    }

    #[tokio::test]
    async fn a_token_whose_lifetime_overflows_the_clock_is_kept_a_day_without_a_panic() {
        let (url, calls) = token_server(u64::MAX).await;
        let c = credentials(&url);
        let auth = Auth::Oauth2ClientCredentials {
            secret: "dest/oauth".into(),
        };
        let http = reqwest::Client::new();
        for _ in 0..2 {
            let r = c.authorize(http.get("http://x/"), &auth).await.unwrap();
            assert_eq!(authorization(r), "Bearer token-0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_short_lived_token_is_renewed_before_it_expires() {
        let (url, calls) = token_server(0).await;
        let c = credentials(&url);
        let auth = Auth::Oauth2ClientCredentials {
            secret: "dest/oauth".into(),
        };
        let http = reqwest::Client::new();
        let first = c.authorize(http.get("http://x/"), &auth).await.unwrap();
        assert_eq!(authorization(first), "Bearer token-0");
        let r = c.authorize(http.get("http://x/"), &auth).await.unwrap();
        assert_eq!(authorization(r), "Bearer token-1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refusing_token_endpoint_is_an_error_naming_its_status() {
        let (url, _) = token_server(3600).await;
        let record = format!(
            r#"{{"token_url":"{url}","client_id":"id","client_secret":"wrong","scope":"read"}}"#
        );
        let c = Credentials::new(
            SecretsCache::new(Fixed(record), Duration::from_secs(60)),
            local_http(),
            Duration::from_secs(5),
        );
        let auth = Auth::Oauth2ClientCredentials { secret: "s".into() };
        let e = c
            .authorize(reqwest::Client::new().get("http://x/"), &auth)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("answered 401"), "{e}");
        assert!(!e.to_string().contains("wrong"), "{e}");
    }

    #[tokio::test]
    async fn signing_secrets_come_bare_or_as_a_record() {
        let key = "whsec_a2V5LWJ5dGVz";
        let sign = Signing {
            secret: "s".into(),
            previous_grace: switchboard_core::secrets::PREVIOUS_GRACE,
        };
        for value in [
            key.to_string(),
            format!(r#"{{"type":"signing-secret","value":"{key}"}}"#),
        ] {
            let c = Credentials::new(
                SecretsCache::new(Fixed(value), Duration::from_secs(60)),
                local_http(),
                Duration::from_secs(5),
            );
            let keys = c.signing_keys(&sign).await.unwrap();
            assert_eq!(keys[0].key(), b"key-bytes");
        }
        let bad = Credentials::new(
            SecretsCache::new(Fixed("not base64!".into()), Duration::from_secs(60)),
            local_http(),
            Duration::from_secs(5),
        );
        assert!(matches!(
            bad.signing_keys(&sign).await,
            Err(AuthError::Malformed { .. })
        ));
    }
}
