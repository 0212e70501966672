//! The deliver function's ports on AWS, built one way for the Lambda (`main.rs`),
//! `switchboard dev` and the benchmarks.

use switchboard_shared::aws::{
    DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue, Wiring,
};

use crate::handler::Ports;

/// What deliver is wired to: the idempotency table (claims, circuits, rate limits, attempt
/// logs), the deliveries queue and its DLQ (URLs), the archive bucket (tasks too large for a
/// message).
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub table: &'a str,
    pub deliveries: &'a str,
    pub deliveries_dlq: &'a str,
    pub bucket: &'a str,
}

/// Deliver's ports as AWS serves them.
pub type AwsPorts =
    Ports<SecretsManagerStore, SqsQueue, SqsQueue, DynamoIdempotencyStore, S3Archive>;

impl AwsPorts {
    /// Each port on its AWS service.
    pub fn from_sdk(w: &Wiring<'_>, names: Names<'_>) -> Self {
        Ports {
            idempotency: w.table(names.table),
            secrets: w.secrets(),
            queue: w.queue(names.deliveries),
            dead_letters: w.queue(names.deliveries_dlq),
            metrics: w.metrics.clone(),
            network: w.network,
            archive: w.archive(names.bucket),
        }
    }
}
