//! The AWS SDK implementations of the ports. This is the only module of the library that knows
//! the AWS SDK.

mod dynamodb;
mod s3;
mod secretsmanager;
mod sqs;
mod wiring;

pub use dynamodb::{DynamoIdempotencyStore, OpenCircuit, REVIEWS_INDEX, SlowRoute, TaskLog};
pub use s3::S3Archive;
pub use secretsmanager::SecretsManagerStore;
pub use sqs::{DeadLetterRecord, SqsQueue};
pub use wiring::Wiring;

pub use aws_config::SdkConfig;

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use switchboard_core::ports::PortError;

/// The SDK configuration for a function (region, credentials, and `AWS_ENDPOINT_URL` when it
/// points at a local emulator).
///
/// Cold start matters here. Lambda hands the role's credentials and the region over in the
/// environment, so when they are there they are read directly instead of building the whole
/// default chain (profile files, SSO, web identity, ECS, IMDS, each with its own client); and
/// TLS trusts the Mozilla root store compiled into the binary instead of scanning the system's
/// certificate directory at start.
pub async fn load_config() -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client());
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    if std::env::var_os("AWS_REGION").is_some() || std::env::var_os("AWS_DEFAULT_REGION").is_some()
    {
        loader = loader.region(EnvironmentVariableRegionProvider::new());
    }
    loader.load().await
}

/// Runs a function's warm-up calls in the background: each opens the connection (TCP and TLS)
/// to a service the first event will call, and builds the HTTP connector, so that the event
/// finds both ready instead of paying for them; the secrets prefetch among them leaves the
/// event's secrets cached. `next` is not held up for it. A failed call is only logged at debug:
/// the event meets the same failure and answers it as it always does.
///
/// `SWITCHBOARD_WARM_UP=off` turns it off (for a benchmark beside it, or a role without the
/// warm-up calls' permissions).
pub fn warm_up(calls: Vec<WarmUp>) {
    if std::env::var("SWITCHBOARD_WARM_UP").is_ok_and(|v| v == "off") {
        return;
    }
    tokio::spawn(async move {
        let results = futures::future::join_all(calls).await;
        for e in results.into_iter().filter_map(Result::err) {
            tracing::debug!(operation = e.operation, error = %e.message, "warm-up call failed");
        }
    });
}

/// One warm-up call (`SqsQueue::warm`, `DynamoIdempotencyStore::warm`, `S3Archive::warm`, or
/// a handler's secrets prefetch).
pub type WarmUp = std::pin::Pin<Box<dyn Future<Output = Result<(), PortError>> + Send>>;

/// The HTTP client every SDK client of a function shares. The smithy client builds, and throws
/// away, a whole TLS connector (every root certificate parsed) in each `Client::new`, "so that
/// certificates load at start": 1.2-1.5 ms per client, 5.5 ms of ingest's set-up with four
/// clients. This wrapper leaves that out: the one connector is built by the first request (the
/// warm-up's, in the background) and shared through the inner client's cache.
#[derive(Debug, Clone)]
struct SharedConnector(SharedHttpClient);

impl HttpClient for SharedConnector {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The SDK's HTTPS client, trusting the compiled-in Mozilla roots.
fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(SharedConnector(roots_client()))
}

fn roots_client() -> SharedHttpClient {
    let trust = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().fold(
        TrustStore::empty().with_native_roots(false),
        |store, der| store.with_pem_certificate(pem(der)),
    );
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::AwsLc,
    ));
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        // Cannot happen with the bundled roots; fall back to the SDK's own defaults.
        Err(_) => builder.build_https(),
    }
}

fn pem(der: &[u8]) -> Vec<u8> {
    let b64 = STANDARD.encode(der);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
}

pub(crate) fn aws_error<E: std::error::Error>(operation: &'static str, e: E) -> PortError {
    PortError {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}
