//! The transform function's ports on AWS, built one way for the Lambda (`main.rs`),
//! `switchboard dev` and the benchmarks.

use switchboard_shared::aws::{
    DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue, Wiring,
};

use crate::handler::Ports;

/// What transform is wired to: the deliveries queue and the events DLQ (URLs), the archive
/// bucket, the table (the shared rate limits of enrichment APIs).
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub deliveries: &'a str,
    pub events_dlq: &'a str,
    pub bucket: &'a str,
    pub table: &'a str,
}

/// Transform's ports as AWS serves them.
pub type AwsPorts =
    Ports<SqsQueue, SqsQueue, S3Archive, SecretsManagerStore, DynamoIdempotencyStore>;

impl AwsPorts {
    /// Each port on its AWS service.
    pub fn from_sdk(w: &Wiring<'_>, names: Names<'_>) -> Self {
        Ports {
            deliveries: w.queue(names.deliveries),
            dead_letters: w.queue(names.events_dlq),
            archive: w.archive(names.bucket),
            secrets: w.secrets(),
            metrics: w.metrics.clone(),
            network: w.network,
            limiter: w.table(names.table),
        }
    }
}
