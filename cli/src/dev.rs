//! `switchboard dev`: the whole pipeline on one machine. The emulator stands in for AWS, an
//! HTTP server stands in for API Gateway, and two event source mappings stand in for Lambda's
//! SQS triggers; the handlers are the same code that runs in Lambda.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use deliver::handler::Deliver;
use ingest::handler::Ingest;
use switchboard_core::integration::{Definition, Inbound, Integrations, Outbound};
use switchboard_core::network::NetworkPolicy;
use switchboard_core::secrets::DEFAULT_TTL;
use switchboard_shared::aws::{
    DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue, Wiring,
};
use switchboard_shared::metrics::Metrics;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use transform::handler::Transform;

use crate::emulator::Emulator;
use crate::esm::EventSourceMapping;
use crate::resources::{self, QueueSettings, Resources};

/// What `switchboard dev` runs with.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Port for `POST /webhooks/{integration}` (0: any free port).
    pub port: u16,
    /// Directory of integration definitions.
    pub integrations: PathBuf,
    /// YAML map of secret id to value, loaded into Secrets Manager at start.
    pub secrets: Option<PathBuf>,
    /// Port of the emulator: used if something answers there, else moto is started on it.
    pub emulator_port: u16,
    /// Start the printing receiver on this port.
    pub sink_port: Option<u16>,
    /// Prefix of every resource name (the SAM stack name).
    pub stack: String,
    /// Queue visibility timeout and max receive count.
    pub queues: QueueSettings,
    /// How long each handler caches a secret value (`SECRETS_TTL_SECS`).
    pub secrets_ttl: Duration,
    /// Apply the deployed network rules (no loopback destinations) instead of allowing
    /// loopback, where the sink and tests listen.
    pub strict_network: bool,
    /// Hold a slow destination to its share of the deliver pollers and poll the deliveries
    /// queue fairly by destination, as deployed (on). Off only for the `isolation` benchmark's
    /// figure without them.
    pub isolation: bool,
}

impl DevOptions {
    /// The network guard's rule for this stack.
    pub fn network(&self) -> NetworkPolicy {
        if self.strict_network {
            NetworkPolicy::DEPLOYED
        } else {
            NetworkPolicy::LOCAL
        }
    }
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            port: 3000,
            integrations: PathBuf::from("integrations"),
            secrets: None,
            emulator_port: 4566,
            sink_port: None,
            stack: "switchboard".into(),
            queues: QueueSettings {
                visibility_timeout_secs: 30,
                ..crate::resources::TEMPLATE_SETTINGS
            },
            secrets_ttl: DEFAULT_TTL,
            strict_network: false,
            isolation: true,
        }
    }
}

/// The ingest handler as the local stack wires it.
pub type LocalIngest = Ingest<SqsQueue, DynamoIdempotencyStore, SecretsManagerStore, S3Archive>;

/// The transform handler as the local stack wires it.
type LocalTransform =
    Transform<SqsQueue, SqsQueue, S3Archive, SecretsManagerStore, DynamoIdempotencyStore>;

/// A running local stack.
#[derive(Debug)]
pub struct DevStack {
    /// Where webhooks are posted.
    pub addr: SocketAddr,
    /// Where the printing receiver listens, when started.
    pub sink: Option<SocketAddr>,
    /// The emulator's endpoint.
    pub endpoint: String,
    /// The resources created.
    pub resources: Resources,
    /// SDK configuration pointing at the emulator.
    pub sdk: SdkConfig,
    /// Ingest's metrics (embedded metric format lines, kept in memory).
    pub metrics: Metrics,
    /// The ingest handler behind the webhook URL (for events API Gateway sends other than
    /// HTTP API v2).
    pub ingest: Arc<LocalIngest>,
    stop: watch::Sender<bool>,
    hold: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    deliver: DeliverWorker,
    deliver_task: Option<JoinHandle<()>>,
    _emulator: Emulator,
}

/// What a deliver worker is made from, so one can be killed and another started.
#[derive(Debug, Clone)]
struct DeliverWorker {
    sdk: SdkConfig,
    integrations: Arc<Integrations<Outbound>>,
    resources: Resources,
    queues: QueueSettings,
    secrets_ttl: Duration,
    network: NetworkPolicy,
    metrics: Metrics,
    arn: String,
    stopped: watch::Receiver<bool>,
    held: watch::Receiver<bool>,
    isolation: bool,
}

impl DeliverWorker {
    fn spawn(&self) -> anyhow::Result<JoinHandle<()>> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let names = deliver::wiring::Names {
            table: &self.resources.table,
            deliveries: &self.resources.deliveries_url,
            deliveries_dlq: &self.resources.deliveries_dlq_url,
            bucket: &self.resources.bucket,
        };
        let deliver = Arc::new(
            Deliver::new(
                Arc::clone(&self.integrations),
                deliver::wiring::AwsPorts::from_sdk(
                    &Wiring {
                        sdk: &self.sdk,
                        secrets_ttl: self.secrets_ttl,
                        metrics: self.metrics.clone(),
                        network: self.network,
                    },
                    names,
                ),
                self.queues.deliveries_max_receive_count,
            )
            // As deployed: a slow destination holds at most this share of the pollers.
            .map(|d| match self.isolation {
                true => d.with_share(switchboard_core::share::of(
                    DELIVER_POLLERS as u32,
                    switchboard_core::share::DEFAULT_PERCENT,
                )),
                false => d.without_share(),
            })?,
        );
        // Lambda runs several batches of a queue at once; so does the local stack.
        // Its messages carry their destination as their group: fair, as SQS fair queues are.
        let fair = self.isolation.then(|| {
            Arc::new(crate::esm::Fair::new(Duration::from_secs(u64::from(
                self.queues.visibility_timeout_secs,
            ))))
        });
        let pollers = (0..DELIVER_POLLERS).map(|_| {
            let mapping = EventSourceMapping {
                sqs: sqs.clone(),
                queue_url: self.resources.deliveries_url.clone(),
                queue_arn: self.arn.clone(),
                function: "deliver",
                batch_size: 10,
                fair: fair.clone(),
                held: Some(self.held.clone()),
            };
            let deliver = Arc::clone(&deliver);
            tokio::spawn(mapping.run(
                move |e| {
                    let d = Arc::clone(&deliver);
                    async move { d.handle(e).await }
                },
                self.stopped.clone(),
            ))
        });
        let pollers: Vec<JoinHandle<()>> = pollers.collect();
        Ok(tokio::spawn(async move {
            // Aborting this task aborts the pollers with it; stopping ends them all.
            let mut pollers = AbortOnDrop(pollers);
            for poller in &mut pollers.0 {
                let _ = poller.await;
            }
        }))
    }
}

/// The largest body API Gateway passes on (10 MB).
pub const API_GATEWAY_MAX_BODY: usize = 10 * 1024 * 1024;

/// How many deliveries batches the local stack works on at once (its `DeliverMaxConcurrency`):
/// a slow destination holds at most half of them (`share`).
const DELIVER_POLLERS: usize = 4;

/// Aborts the tasks when dropped.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// SDK configuration for the emulator at `endpoint` (fixed region and dummy credentials).
pub async fn emulator_sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "switchboard-dev",
        ))
        .load()
        .await
}

/// One view of the definitions in `dir`.
fn load<D: Definition>(dir: &std::path::Path) -> anyhow::Result<Arc<Integrations<D>>> {
    Ok(Arc::new(
        Integrations::load_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

/// Ingest behind `POST /webhooks/{integration}` on 127.0.0.1:`port` (0: any free port), until
/// `stopped`.
async fn serve(
    port: u16,
    ingest: Arc<LocalIngest>,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/webhooks/{integration}", post(webhook))
        .route(ingest::handler::REVIEWS_SLACK_PATH, post(review_click))
        // API Gateway takes bodies up to 10 MB: larger ones are its to refuse, smaller ones
        // ingest's (413 `payload_too_large` beyond the integration's limit).
        .layer(axum::extract::DefaultBodyLimit::max(API_GATEWAY_MAX_BODY))
        .fallback(not_found)
        .with_state(ingest);
    let mut server_stop = stopped;
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        })
        .await;
    });
    Ok((addr, server))
}

/// Transform on the events queue, as its event source mapping runs it (batches of up to 100,
/// the template's).
fn poll_events(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    arn: String,
    transform: Arc<LocalTransform>,
    (stopped, held): (watch::Receiver<bool>, watch::Receiver<bool>),
) -> tokio::task::JoinHandle<()> {
    let mapping = EventSourceMapping {
        sqs: sqs.clone(),
        queue_url: url.to_string(),
        queue_arn: arn,
        function: "transform",
        batch_size: 100,
        fair: None,
        held: Some(held),
    };
    tokio::spawn(mapping.run(
        move |e| {
            let t = Arc::clone(&transform);
            async move { t.handle(e).await }
        },
        stopped,
    ))
}

/// The AWS side: the emulator (started, or the one already on its port), the template's
/// resources for the stack, and the secrets file's values.
async fn aws_side(options: &DevOptions) -> anyhow::Result<(Emulator, SdkConfig, Resources)> {
    let emulator_port = options.emulator_port;
    let emulator = tokio::task::spawn_blocking(move || Emulator::ensure(emulator_port)).await??;
    let sdk = emulator_sdk(emulator.endpoint()).await;
    let resources = resources::create(&sdk, &options.stack, options.queues).await?;
    if let Some(file) = &options.secrets {
        let secrets = resources::read_secrets_file(file)?;
        resources::put_secrets(&sdk, &secrets).await?;
    }
    Ok((emulator, sdk, resources))
}

impl DevStack {
    /// Starts everything; returns once webhooks can be posted.
    pub async fn start(options: DevOptions) -> anyhow::Result<Self> {
        // Each handler gets the view of the definitions its Lambda loads.
        let integrations: Arc<Integrations> = load(&options.integrations)?;
        let inbound: Arc<Integrations<Inbound>> = load(&options.integrations)?;
        let outbound: Arc<Integrations<Outbound>> = load(&options.integrations)?;
        // Before anything starts: a definition the guard refuses stops the stack here.
        integrations.check_network(options.network())?;
        let (emulator, sdk, resources) = aws_side(&options).await?;
        let endpoint = emulator.endpoint().to_string();

        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let metrics = Metrics::Memory(Arc::default());
        let wiring = Wiring {
            sdk: &sdk,
            secrets_ttl: options.secrets_ttl,
            metrics: metrics.clone(),
            network: options.network(),
        };
        let ingest = Arc::new(Ingest::new(
            inbound,
            ingest::wiring::AwsPorts::from_sdk(&wiring, resources.ingest_names()),
        ));
        let transform = Arc::new(Transform::new(
            Arc::clone(&integrations),
            transform::wiring::AwsPorts::from_sdk(&wiring, resources.transform_names()),
            options.queues.max_receive_count,
        )?);
        let (stop, stopped) = watch::channel(false);
        let (hold, held) = watch::channel(false);
        let mut tasks = Vec::new();
        let sink = match options.sink_port {
            Some(port) => Some(crate::sink::start(port, stopped.clone()).await?),
            None => None,
        };

        let events_arn = resources::queue_arn(&sqs, &resources.events_url).await?;
        let deliveries_arn = resources::queue_arn(&sqs, &resources.deliveries_url).await?;
        tasks.push(poll_events(
            &sqs,
            &resources.events_url,
            events_arn,
            Arc::clone(&transform),
            (stopped.clone(), held.clone()),
        ));
        let deliver = DeliverWorker {
            sdk: sdk.clone(),
            integrations: outbound,
            resources: resources.clone(),
            queues: options.queues,
            secrets_ttl: options.secrets_ttl,
            network: options.network(),
            metrics: metrics.clone(),
            arn: deliveries_arn,
            stopped: stopped.clone(),
            held: held.clone(),
            isolation: options.isolation,
        };
        let deliver_task = Some(deliver.spawn()?);

        let (addr, server) = serve(options.port, Arc::clone(&ingest), stopped.clone()).await?;
        tasks.push(server);

        Ok(Self {
            addr,
            sink,
            endpoint,
            resources,
            sdk,
            metrics,
            ingest,
            stop,
            hold,
            tasks,
            deliver,
            deliver_task,
            _emulator: emulator,
        })
    }

    /// Kills the deliver worker wherever it is, mid-batch included (as when a Lambda
    /// container dies): its requests in flight are dropped and its messages come back when
    /// their visibility lapses.
    pub fn kill_deliver(&mut self) {
        if let Some(task) = self.deliver_task.take() {
            task.abort();
        }
    }

    /// Holds transform's and deliver's pollers (true) or lets them go (false): what is queued
    /// meanwhile waits, so they then take full batches, as Lambda's do under load.
    pub fn hold_pollers(&self, held: bool) {
        self.hold.send_replace(held);
    }

    /// Starts a fresh deliver worker (a new container: empty caches, new connections).
    pub fn start_deliver(&mut self) -> anyhow::Result<()> {
        self.kill_deliver();
        self.deliver_task = Some(self.deliver.spawn()?);
        Ok(())
    }

    /// The webhook URL for an integration.
    pub fn webhook_url(&self, integration: &str) -> String {
        format!("http://{}/webhooks/{integration}", self.addr)
    }

    /// Stops the server and the pollers (and the emulator, if this stack started it).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks.into_iter().chain(self.deliver_task) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// API Gateway's part: the request becomes a payload v2 event for the ingest handler.
async fn webhook(
    State(ingest): State<Arc<LocalIngest>>,
    Path(integration): Path<String>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let event = crate::apigw::webhook_event(
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or_default(),
        &integration,
        &headers,
        &body,
        source,
    );
    relay(&ingest, event, &format!("/webhooks/{integration}")).await
}

/// API Gateway's part for Slack's clicks on review items (`POST /reviews/slack`).
async fn review_click(
    State(ingest): State<Arc<LocalIngest>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().unwrap_or_default();
    let event = crate::apigw::route_event("POST", uri.path(), query, &headers, &body, source);
    relay(&ingest, event, uri.path()).await
}

/// The event to the ingest handler, its answer back as HTTP (and a line on the console).
async fn relay(ingest: &LocalIngest, event: serde_json::Value, path: &str) -> Response {
    let request = match crate::apigw::into_request(event) {
        Ok(r) => r,
        Err(e) => {
            let body = serde_json::json!({ "error": "invalid_request", "message": e.to_string() });
            return (
                StatusCode::BAD_REQUEST,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response();
        }
    };
    let response = ingest.handle(request).await;
    let (parts, body) = response.into_parts();
    let body_bytes = body.to_vec();
    println!(
        "  ingest    POST {path} -> {} {}",
        parts.status.as_u16(),
        String::from_utf8_lossy(&body_bytes)
    );
    Response::from_parts(parts, axum::body::Body::from(body_bytes))
}

/// What API Gateway answers for a route it does not have.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"message":"Not Found"}"#,
    )
        .into_response()
}

/// `switchboard dev`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Port for POST /webhooks/{integration}.
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Directory of integration definitions.
    #[arg(long, default_value = "integrations")]
    pub integrations: std::path::PathBuf,
    /// YAML map of secret id to value, loaded into Secrets Manager at start.
    #[arg(long)]
    pub secrets: Option<std::path::PathBuf>,
    /// Port of the local AWS emulator (started if nothing answers there).
    #[arg(long, default_value_t = 4566)]
    pub emulator_port: u16,
    /// Start a receiver on this port that prints every request it gets.
    #[arg(long)]
    pub sink_port: Option<u16>,
    /// Prefix of every resource name, as the SAM stack name.
    #[arg(long, default_value = "switchboard")]
    pub stack: String,
    /// Seconds a failed message waits before SQS hands it back.
    #[arg(long, default_value_t = 30)]
    pub visibility_timeout: u32,
    /// Receives before a message moves to its DLQ.
    #[arg(long, default_value_t = 5)]
    pub max_receive_count: u32,
    /// Apply the deployed network rules: no loopback destinations (the sink included),
    /// https unless a route says `allow_http: true`.
    #[arg(long)]
    pub strict_network: bool,
}

/// Runs the command.
pub async fn run(args: DevArgs) -> anyhow::Result<std::process::ExitCode> {
    // Locally every success is logged (at INFO: `RUST_LOG=info` shows them), unless asked.
    if std::env::var_os("LOG_SAMPLE_RATE").is_none() {
        switchboard_shared::telemetry::set_sample_rate(1.0);
    }
    let DevArgs {
        port,
        integrations,
        secrets,
        emulator_port,
        sink_port,
        stack,
        visibility_timeout,
        max_receive_count,
        strict_network,
    } = args;
    let options = DevOptions {
        port,
        integrations,
        secrets,
        emulator_port,
        sink_port,
        stack,
        queues: QueueSettings {
            visibility_timeout_secs: visibility_timeout,
            max_receive_count,
            deliveries_max_receive_count: max_receive_count
                .max(crate::resources::TEMPLATE_SETTINGS.deliveries_max_receive_count),
        },
        secrets_ttl: switchboard_shared::config::secrets_ttl()?,
        strict_network,
        isolation: true,
    };
    let stack_name = options.stack.clone();
    let stack = DevStack::start(options).await?;
    println!("switchboard dev");
    println!(
        "  webhooks  POST http://{}/webhooks/{{integration}}",
        stack.addr
    );
    println!(
        "  reviews   POST http://{}/reviews/slack (a Slack app's button clicks)",
        stack.addr
    );
    println!("  emulator  {}", stack.endpoint);
    if let Some(sink) = stack.sink {
        println!("  sink      http://{sink}/ (prints every request)");
    }
    println!(
        "  queues    {} -> {}",
        stack.resources.events_url, stack.resources.deliveries_url
    );
    println!(
        "  ops       AWS_ENDPOINT_URL={} switchboard status --stack {} (dlq, replay: the same)",
        stack.endpoint, stack_name
    );
    println!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("stopping");
    stack.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}
