//! The `switchboard` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard_cli::ops::{self, StackArgs};

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
    Dev(switchboard_cli::dev::DevArgs),
    /// Sign a payload with the integration's dev secret and post it.
    Send(switchboard_cli::send::SendArgs),
    /// Work with secrets in the local emulator.
    Secrets {
        #[command(subcommand)]
        command: switchboard_cli::rotation::SecretsCommand,
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
    /// The human review queue: list, show, approve, edit or reject what waits for a person.
    Review {
        #[command(subcommand)]
        command: ops::review::ReviewCommand,
    },
    /// Where is my webhook: one event's life (`show`), or the events of an integration by
    /// time, route, status and what their body says (`list --where`).
    Events {
        #[command(subcommand)]
        command: ops::events::EventsCommand,
    },
    /// Validate every definition and run its fixtures (contract tests); non-zero on a failure.
    Check(switchboard_cli::check::CheckArgs),
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
        Command::Secrets { command } => switchboard_cli::rotation::run(command).await,
        Command::Status { stack } => ops::status::run(stack).await,
        Command::Dlq { command } => ops::dlq::run(command).await,
        Command::Replay { args, stack } => ops::replay::run(args, stack).await,
        Command::Review { command } => ops::review::run(command).await,
        Command::Events { command } => ops::events::run(command).await,
        Command::Check(args) => switchboard_cli::check::run(args).await,
        Command::Dev(args) => switchboard_cli::dev::run(args).await,
        Command::Send(args) => switchboard_cli::send::run(args).await,
    }
}
