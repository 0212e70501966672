//! `switchboard secrets rotate <secret-id>`: a rotation against the local emulator, run the way
//! Secrets Manager runs one: a new version token, then the rotate function's four steps in
//! order with that token, each step's outcome printed. The steps are the rotate Lambda's own
//! handler.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::types::RotationRulesType;
use rotate::handler::{Rotate, RotationEvent, STEP_NAMES};
use switchboard_shared::aws::SecretsManagerStore;
use switchboard_shared::metrics::Metrics;

/// Secrets Manager's own part of a rotation, against the emulator: rotation enabled on `id` if
/// it is off (what a SAM `RotationSchedule` does in AWS) and a new version staged AWSPENDING.
/// Returns the version's id, the `ClientRequestToken` the steps are called with.
pub async fn begin(client: &Client, id: &str) -> anyhow::Result<String> {
    let described = client
        .describe_secret()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(&e)))?;
    if !described.rotation_enabled().unwrap_or(false) {
        // The emulator has no Lambda to call: asked without one, it only marks rotation as
        // enabled (and re-stamps the current value as a new, identical version).
        client
            .rotate_secret()
            .secret_id(id)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(30)
                    .build(),
            )
            .rotate_immediately(false)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(&e)))?;
    }
    // Secrets Manager's tokens are 32 to 64 characters (it uses UUIDs).
    let token = format!("{}-{}", ulid::Ulid::new(), ulid::Ulid::new());
    // Secrets Manager's own part of a rotation: the version the steps work on, staged
    // AWSPENDING. It has no value in AWS; the public API cannot make one without, so here it
    // holds the current value, which createSecret treats as "not created yet".
    let current = client
        .get_secret_value()
        .secret_id(id)
        // Asked by stage: moto answers the version before the last stage move without one.
        .version_stage("AWSCURRENT")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(&e)))?
        .secret_string()
        .unwrap_or_default()
        .to_string();
    client
        .put_secret_value()
        .secret_id(id)
        .client_request_token(&token)
        .secret_string(current)
        .version_stages("AWSPENDING")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(&e)))?;
    Ok(token)
}

/// Rotates `id`: [`begin`], then the four steps. Returns the new version's id; the first
/// failing step stops it, leaving AWSCURRENT as it was.
pub async fn rotate(client: &Client, id: &str, metrics: Metrics) -> anyhow::Result<String> {
    let token = begin(client, id).await?;
    let handler = Rotate::new(
        SecretsManagerStore::new(client.clone()),
        metrics,
        switchboard_core::network::NetworkPolicy::LOCAL,
    );
    for step in STEP_NAMES {
        let event = RotationEvent {
            secret_id: id.to_string(),
            client_request_token: token.clone(),
            step: step.to_string(),
        };
        match handler.handle(&event).await {
            Ok(()) => println!("  {step:<13} ok"),
            Err(e) => {
                println!("  {step:<13} failed: {e}");
                anyhow::bail!("rotation of `{id}` stopped at {step}; AWSCURRENT is unchanged");
            }
        }
    }
    Ok(token)
}

/// `switchboard secrets ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SecretsCommand {
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

/// Runs `switchboard secrets ...`.
pub async fn run(command: SecretsCommand) -> anyhow::Result<std::process::ExitCode> {
    let SecretsCommand::Rotate {
        secret_id,
        emulator_port,
    } = command;
    let sdk = if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        crate::ops::sdk_config().await
    } else {
        crate::dev::emulator_sdk(&format!("http://127.0.0.1:{emulator_port}")).await
    };
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    println!("rotating {secret_id}");
    let version = rotate(
        &client,
        &secret_id,
        switchboard_shared::metrics::Metrics::Off,
    )
    .await?;
    println!("{secret_id}: AWSCURRENT is now version {version}");
    Ok(std::process::ExitCode::SUCCESS)
}
