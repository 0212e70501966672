//! Handler for a batch from the deliveries queue: send each task to its route's destination
//! with the route's auth; a non-2xx answer fails the item so SQS retries it, and after the
//! queue's maxReceiveCount it lands in the deliveries DLQ.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use switchboard_shared::envelope::{DeliveryMessage, DeliveryV1};
use switchboard_shared::integration::{Auth, Integrations};
use switchboard_shared::ports::SecretStore;
use switchboard_shared::secrets::SecretsCache;
use tracing::Instrument;

/// Why one delivery did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The message is not a known delivery message.
    #[error(transparent)]
    Decode(#[from] switchboard_shared::envelope::DecodeError),
    /// The task names a route that is not deployed.
    #[error("route `{integration}/{route}` is not defined here")]
    UnknownRoute {
        /// The integration.
        integration: String,
        /// The route.
        route: String,
    },
    /// The route's credential could not be read.
    #[error(transparent)]
    Secret(#[from] switchboard_shared::ports::AwsError),
    /// The request did not get an answer (connect error, timeout, dropped connection).
    #[error("request failed: {0}")]
    Transport(String),
    /// The destination answered with something other than 2xx.
    #[error("destination answered {0}")]
    Status(u16),
}

/// The deliver handler, generic over the secret store.
#[derive(Debug)]
pub struct Deliver<K> {
    integrations: Arc<Integrations>,
    http: reqwest::Client,
    secrets: SecretsCache<K>,
}

impl<K: SecretStore> Deliver<K> {
    /// A handler over these integrations and secrets; `timeout` bounds each request.
    pub fn new(
        integrations: Arc<Integrations>,
        secrets: SecretsCache<K>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config())
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            integrations,
            http,
            secrets,
        })
    }

    /// Processes a batch; the response lists the messages to retry.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.payload.records {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("delivery", message_id = %id);
            if let Err(e) = self.process(&message).instrument(span).await {
                tracing::warn!(message_id = %id, error = %e, "delivery failed; SQS will retry");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn process(&self, message: &SqsMessage) -> Result<(), DeliverError> {
        let DeliveryMessage::DeliveryV1(task) =
            DeliveryMessage::decode(message.body.as_deref().unwrap_or_default())?;
        let attempt = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1);
        let started = Instant::now();
        let result = self.send(&task).await;
        let (status, error) = match &result {
            Ok(status) => (Some(*status), None),
            Err(DeliverError::Status(s)) => (Some(*s), None),
            Err(e) => (None, Some(e.to_string())),
        };
        tracing::info!(
            event_id = %task.event_id,
            route = %task.route,
            attempt,
            status,
            error,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "delivery attempt"
        );
        result.map(|_| ())
    }

    async fn send(&self, task: &DeliveryV1) -> Result<u16, DeliverError> {
        let route = self
            .integrations
            .get(&task.integration)
            .and_then(|i| i.routes.iter().find(|r| r.id == task.route))
            .ok_or_else(|| DeliverError::UnknownRoute {
                integration: task.integration.clone(),
                route: task.route.clone(),
            })?;
        let mut request = self
            .http
            .post(route.deliver.url.clone())
            .header(
                "idempotency-key",
                format!("{}:{}", task.event_id, task.route),
            )
            .json(&task.body);
        if let Auth::Bearer { secret } = &route.deliver.auth {
            request = request.bearer_auth(self.secrets.get(secret).await?.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| DeliverError::Transport(transport_error(&e)))?;
        let status = response.status().as_u16();
        if matches!(status, 401 | 403)
            && let Some(secret) = route.deliver.auth.secret()
        {
            // The credential may have been rotated: read it afresh on the retry.
            self.secrets.invalidate(secret);
        }
        if response.status().is_success() {
            Ok(status)
        } else {
            Err(DeliverError::Status(status))
        }
    }
}

/// TLS for destinations: the Mozilla root store compiled into the binary (no scan of the
/// system's certificate directory at cold start), HTTP/1.1.
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

/// A transport error's kind, without the URL's query or anything the destination sent.
fn transport_error(e: &reqwest::Error) -> String {
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
