//! What every function's configuration shares: reading the environment, the errors, the
//! secrets TTL. Each function's own settings live in its crate (`config.rs`).

use std::path::PathBuf;
use std::time::Duration;

/// Why a handler could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A definition fails the network guard under the function's policy.
    #[error(transparent)]
    Definition(#[from] switchboard_core::integration::DefinitionError),
}

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}: {problem}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// A variable that must be set.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|_| ConfigError {
        name,
        problem: "is not set".into(),
    })
}

/// Whole seconds from the environment, or `default` when it is not set.
pub fn secs_or(name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(Duration::from_secs(default)),
        Ok(v) => v
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| ConfigError {
                name,
                problem: format!("`{v}` is not a whole number of seconds"),
            }),
    }
}

/// How long a secret value is cached (`SECRETS_TTL_SECS`, default 300): every function and
/// `switchboard dev` read it alike.
pub fn secrets_ttl() -> Result<Duration, ConfigError> {
    secs_or("SECRETS_TTL_SECS", 300)
}

/// Where the integration definitions are (`INTEGRATIONS_DIR`, default `/opt`, the layer).
pub fn integrations_dir() -> PathBuf {
    std::env::var("INTEGRATIONS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/opt"))
}

/// A whole number from the environment, or `default` when it is not set.
pub fn count_or(name: &'static str, default: u32) -> Result<u32, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.parse::<u32>().map_err(|_| ConfigError {
            name,
            problem: format!("`{v}` is not a whole number"),
        }),
    }
}
