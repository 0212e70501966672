//! The `switchboard` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchboard_cli::dev::{DevOptions, DevStack};
use switchboard_cli::ops::dlq::{Action, Filter, Run};
use switchboard_cli::ops::{self, QueueKind, Stack, StackArgs};
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
        command: DlqCommand,
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
enum DlqCommand {
    /// One row per dead letter; consumes nothing.
    List {
        /// Which DLQ.
        #[arg(long, value_enum)]
        queue: QueueKind,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Everything about an event's dead letters: attributes, attempts, the archive.
    Show {
        /// The event id (`evt_...`).
        event_id: String,
        /// Which DLQ (default: both).
        #[arg(long, value_enum)]
        queue: Option<QueueKind>,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Moves the matching dead letters back to their source queue with a fresh retry schedule.
    Redrive {
        /// Which DLQ.
        #[arg(long, value_enum)]
        queue: QueueKind,
        #[command(flatten)]
        filter: Filter,
        /// Change nothing: say how many match, with a sample.
        #[arg(long)]
        dry_run: bool,
        /// At most this many messages per second.
        #[arg(long)]
        rate: Option<u32>,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Deletes the matching dead letters (the archive keeps the events).
    Purge {
        /// Which DLQ.
        #[arg(long, value_enum)]
        queue: QueueKind,
        #[command(flatten)]
        filter: Filter,
        /// Change nothing: say how many match, with a sample.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        stack: StackArgs,
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
        Command::Status { stack } => {
            let sdk = switchboard_cli::ops::sdk_config().await;
            let s = ops::status::status(&Stack::new(&sdk, &stack.stack)).await?;
            if stack.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", ops::status::render(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { command } => dlq(command).await,
        Command::Replay { args, stack } => {
            let sdk = ops::sdk_config().await;
            let r = ops::replay::replay(&Stack::new(&sdk, &stack.stack), &sdk, &args).await?;
            if stack.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} archived event(s) matched: {} replayed, {} skipped (every route delivered){}",
                    r.matched,
                    r.replayed,
                    r.skipped_delivered,
                    if args.dry_run {
                        "; dry run, nothing sent"
                    } else {
                        ""
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
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

async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let sdk = ops::sdk_config().await;
    match command {
        DlqCommand::List {
            queue,
            filter,
            stack,
        } => {
            let letters = ops::dlq::list(&Stack::new(&sdk, &stack.stack), queue, &filter).await?;
            if stack.json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                print!("{}", ops::dlq::render_list(&letters));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show {
            event_id,
            queue,
            stack,
        } => {
            let s = Stack::new(&sdk, &stack.stack);
            let filter = Filter {
                event_id: Some(event_id.clone()),
                ..Filter::default()
            };
            let mut letters = Vec::new();
            for kind in queue.map(|q| vec![q]).unwrap_or(QueueKind::ALL.to_vec()) {
                letters.extend(ops::dlq::list(&s, kind, &filter).await?);
            }
            if letters.is_empty() {
                anyhow::bail!(
                    "no dead letter of event {event_id} in {}'s DLQs",
                    stack.stack
                );
            }
            if stack.json {
                let full: Vec<serde_json::Value> = letters
                    .iter()
                    .map(|l| {
                        let mut v = serde_json::to_value(l).unwrap_or_default();
                        v["history"] = l
                            .history
                            .as_deref()
                            .and_then(|h| serde_json::from_str(h).ok())
                            .unwrap_or_default();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&full)?);
            } else {
                print!("{}", ops::dlq::render_show(&letters));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Redrive {
            queue,
            filter,
            dry_run,
            rate,
            yes,
            stack,
        } => {
            let run = Run { dry_run, yes, rate };
            let moved = ops::dlq::act(
                &Stack::new(&sdk, &stack.stack),
                queue,
                &filter,
                Action::Redrive,
                run,
            )
            .await?;
            report(&moved, stack.json, "redriven", dry_run)
        }
        DlqCommand::Purge {
            queue,
            filter,
            dry_run,
            yes,
            stack,
        } => {
            let run = Run {
                dry_run,
                yes,
                rate: None,
            };
            let moved = ops::dlq::act(
                &Stack::new(&sdk, &stack.stack),
                queue,
                &filter,
                Action::Purge,
                run,
            )
            .await?;
            report(&moved, stack.json, "purged", dry_run)
        }
    }
}

fn report(
    moved: &ops::dlq::Moved,
    json: bool,
    verb: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(moved)?);
    } else if dry_run {
        println!(
            "{} dead letter(s) match; nothing was changed (dry run)",
            moved.matched
        );
        print!("{}", ops::dlq::render_list(&moved.sample));
    } else {
        let done = moved.redriven.or(moved.purged).unwrap_or(0);
        println!("{} matched, {done} {verb}", moved.matched);
    }
    Ok(ExitCode::SUCCESS)
}
