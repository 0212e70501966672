//! The `switchboard` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchboard_cli::dev::{DevOptions, DevStack};
use switchboard_cli::ops::{self, StackArgs};
use switchboard_cli::resources::QueueSettings;

/// Switchboard: verified webhooks in, mapped requests delivered, nothing lost.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline locally: emulator, ingest, transform, deliver.
    Dev {
        /// Port for POST /webhooks/{integration}.
        #[arg(long, default_value_t = 3000)]
        port: u16,
        /// Directory of integration definitions.
        #[arg(long, default_value = "integrations")]
        integrations: PathBuf,
        /// YAML map of secret id to value, loaded into Secrets Manager at start.
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Port of the local AWS emulator (started if nothing answers there).
        #[arg(long, default_value_t = 4566)]
        emulator_port: u16,
        /// Start a receiver on this port that prints every request it gets.
        #[arg(long)]
        sink_port: Option<u16>,
        /// Prefix of every resource name, as the SAM stack name.
        #[arg(long, default_value = "switchboard")]
        stack: String,
        /// Seconds a failed message waits before SQS hands it back.
        #[arg(long, default_value_t = 30)]
        visibility_timeout: u32,
        /// Receives before a message moves to its DLQ.
        #[arg(long, default_value_t = 5)]
        max_receive_count: u32,
        /// Apply the deployed network rules: no loopback destinations (the sink included),
        /// https unless a route says `allow_http: true`.
        #[arg(long)]
        strict_network: bool,
    },
    /// Sign a payload with the integration's dev secret and post it.
    Send {
        /// The integration id.
        integration: String,
        /// The JSON payload.
        #[arg(long)]
        file: PathBuf,
        /// Where to post (default: the local dev server).
        #[arg(long)]
        url: Option<String>,
        /// Directory of integration definitions.
        #[arg(long, default_value = "integrations")]
        integrations: PathBuf,
        /// The secrets file `switchboard dev` was given.
        #[arg(long, default_value = "dev/secrets.yaml")]
        secrets: PathBuf,
        /// Port of the local AWS emulator, read when the secret is not in the file.
        #[arg(long, default_value_t = 4566)]
        emulator_port: u16,
        /// Write the signed request as an API Gateway event to this file instead of posting it
        /// (for `cargo lambda invoke ingest --data-file FILE`).
        #[arg(long)]
        lambda_event: Option<PathBuf>,
        /// The body's content type.
        #[arg(long, default_value = "application/json")]
        content_type: String,
    },
    /// Work with secrets in the local emulator.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The pipeline at a glance: queue depths, dead letters by reason, open circuits.
    Status {
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Re-run archived events through the definitions deployed now (after a mapping fix).
    Replay {
        #[command(flatten)]
        args: ops::replay::ReplayArgs,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Read, redrive or purge dead letters.
    Dlq {
        #[command(subcommand)]
        command: ops::dlq::DlqCommand,
    },
    /// Validate every definition and run its fixtures (contract tests); non-zero on a failure.
    Check {
        /// Directory of integration definitions (fixtures in DIR/fixtures/<integration>/<case>/).
        #[arg(default_value = "integrations")]
        dir: PathBuf,
        /// Check the URLs as `switchboard dev` runs them (loopback allowed) instead of as a
        /// deployed stack does.
        #[arg(long)]
        allow_loopback: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Rotate a secret as Secrets Manager would: a new version, then the rotate function's
    /// createSecret, setSecret, testSecret and finishSecret against the emulator.
    /// Secrets Manager is the one the standard AWS configuration names (`AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_PROFILE`); without AWS_ENDPOINT_URL, `switchboard dev`'s emulator.
    Rotate {
        /// The secret id (`switchboard/outbound/signing`).
        secret_id: String,
        /// Port of `switchboard dev`'s emulator, when AWS_ENDPOINT_URL is not set.
        #[arg(long, default_value_t = 4566)]
        emulator_port: u16,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_target(false)
        .compact()
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Secrets {
            command:
                SecretsCommand::Rotate {
                    secret_id,
                    emulator_port,
                },
        } => {
            let sdk = if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
                switchboard_cli::ops::sdk_config().await
            } else {
                switchboard_cli::dev::emulator_sdk(&format!("http://127.0.0.1:{emulator_port}"))
                    .await
            };
            let client = aws_sdk_secretsmanager::Client::new(&sdk);
            println!("rotating {secret_id}");
            let version = switchboard_cli::rotation::rotate(
                &client,
                &secret_id,
                switchboard_shared::metrics::Metrics::Off,
            )
            .await?;
            println!("{secret_id}: AWSCURRENT is now version {version}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { stack } => ops::status::run(stack).await,
        Command::Dlq { command } => ops::dlq::run(command).await,
        Command::Replay { args, stack } => ops::replay::run(args, stack).await,
        Command::Check {
            dir,
            allow_loopback,
        } => {
            let network = if allow_loopback {
                switchboard_shared::network::NetworkPolicy::LOCAL
            } else {
                switchboard_shared::network::NetworkPolicy::DEPLOYED
            };
            let report = switchboard_cli::check::check(&dir, network);
            print!("{}", report.render());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Dev {
            port,
            integrations,
            secrets,
            emulator_port,
            sink_port,
            stack,
            visibility_timeout,
            max_receive_count,
            strict_network,
        } => {
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
                    deliveries_max_receive_count: max_receive_count.max(
                        switchboard_cli::resources::TEMPLATE_SETTINGS.deliveries_max_receive_count,
                    ),
                },
                secrets_ttl: switchboard_shared::config::secrets_ttl()?,
                strict_network,
            };
            let stack_name = options.stack.clone();
            let stack = DevStack::start(options).await?;
            println!("switchboard dev");
            println!(
                "  webhooks  POST http://{}/webhooks/{{integration}}",
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            integration,
            file,
            url,
            integrations,
            secrets,
            emulator_port,
            lambda_event,
            content_type,
        } => {
            let body =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let definition = switchboard_cli::send::integration(&integrations, &integration)?;
            let endpoint = format!("http://127.0.0.1:{emulator_port}");
            let secret =
                switchboard_cli::send::secret_value(&definition, Some(&secrets), &endpoint).await?;
            let url =
                url.unwrap_or_else(|| format!("http://127.0.0.1:3000/webhooks/{integration}"));
            let headers = switchboard_cli::send::signed_headers(
                &definition,
                secret.as_ref(),
                &url,
                &body,
                &content_type,
            )?;
            if let Some(out) = lambda_event {
                let event = switchboard_cli::send::lambda_event(&integration, &headers, &body)?;
                std::fs::write(&out, serde_json::to_string_pretty(&event)?)
                    .with_context(|| format!("writing {}", out.display()))?;
                println!(
                    "wrote {} (its signature is valid for 5 minutes)",
                    out.display()
                );
                return Ok(ExitCode::SUCCESS);
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
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
