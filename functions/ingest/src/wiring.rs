//! The ingest function's ports on AWS, built one way for the Lambda (`main.rs`),
//! `switchboard dev` and the benchmarks.

use switchboard_shared::aws::{
    DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue, Wiring,
};

use crate::handler::Ports;

/// What ingest is wired to: the events queue (URL), the deliveries queue (URL: requests
/// approved in Slack), the idempotency table (dedupe records, review items), the archive
/// bucket.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub events: &'a str,
    pub deliveries: &'a str,
    pub table: &'a str,
    pub bucket: &'a str,
}

/// Ingest's ports as AWS serves them.
pub type AwsPorts = Ports<SqsQueue, DynamoIdempotencyStore, SecretsManagerStore, S3Archive>;

impl AwsPorts {
    /// Each port on its AWS service (outside AWS, ingest calls only Slack's Web API, for
    /// review clicks, under the function's network policy).
    pub fn from_sdk(w: &Wiring<'_>, names: Names<'_>) -> Self {
        Ports {
            events: w.queue(names.events),
            deliveries: w.queue(names.deliveries),
            idempotency: w.table(names.table),
            reviews: w.table(names.table),
            secrets: w.secrets(),
            archive: w.archive(names.bucket),
            metrics: w.metrics.clone(),
            network: w.network,
        }
    }
}
