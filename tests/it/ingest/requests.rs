//! Ingest's AWS requests per event, counted at each port and at the SDK, and what happens
//! when the write that records an accepted event fails.

use std::time::Duration;

use serde_json::Value;

use super::{WAIT, body_for, start};
use crate::utils::receiver::Receiver;
use crate::utils::stack::TestStack;

/// Counts the calls each port makes while delegating to the real SDK adapter.
#[derive(Clone)]
struct Counted<P> {
    inner: P,
    calls: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl<P> Counted<P> {
    fn note(&self, what: &'static str) {
        self.calls.lock().unwrap().push(what);
    }
}

use switchboard_core::ports::{Archive, IdempotencyStore, PortError, Queue};

impl<P: Queue> Queue for Counted<P> {
    async fn send(&self, messages: &[switchboard_core::ports::Outgoing]) -> Result<(), PortError> {
        self.note("SendMessage");
        self.inner.send(messages).await
    }
}

impl<P: IdempotencyStore> IdempotencyStore for Counted<P> {
    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.note("DeleteItem");
        self.inner.release(key).await
    }
    async fn lookup(
        &self,
        key: &str,
        consistent: bool,
    ) -> Result<Option<switchboard_core::idempotency::Record>, PortError> {
        self.note("GetItem");
        self.inner.lookup(key, consistent).await
    }
    async fn record_completed(
        &self,
        key: &str,
        data: &str,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: i64,
    ) -> Result<bool, PortError> {
        self.note("PutItem");
        self.inner
            .record_completed(key, data, now, expires_at)
            .await
    }
}

impl<P: Archive> Archive for Counted<P> {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), PortError> {
        self.note("PutObject");
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, PortError> {
        self.note("GetObject");
        self.inner.get(key).await
    }
}

/// The review items' port (only Slack's review clicks use it: never here).
fn table(stack: &TestStack) -> switchboard_shared::aws::DynamoIdempotencyStore {
    switchboard_shared::aws::DynamoIdempotencyStore::new(
        aws_sdk_dynamodb::Client::new(&stack.dev.sdk),
        &stack.dev.resources.table,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_requests_per_accepted_event() {
    use switchboard_shared::aws::{
        DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue,
    };

    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = crate::utils::sdk_count::SentRequests::default();
    let sdk = &stack.dev.sdk;
    let integrations = std::sync::Arc::new(
        switchboard_core::integration::Integrations::load_dir(&stack.dir).unwrap(),
    );
    let handler = ingest::handler::Ingest::new(
        integrations,
        ingest::handler::Ports {
            events: counted(
                &calls,
                SqsQueue::new(
                    aws_sdk_sqs::Client::new(sdk),
                    &stack.dev.resources.events_url,
                ),
            ),
            // Only Slack's review clicks use these.
            deliveries: counted(
                &calls,
                SqsQueue::new(
                    aws_sdk_sqs::Client::new(sdk),
                    &stack.dev.resources.deliveries_url,
                ),
            ),
            reviews: table(&stack),
            network: switchboard_core::network::NetworkPolicy::LOCAL,
            idempotency: counted(
                &calls,
                DynamoIdempotencyStore::new(
                    aws_sdk_dynamodb::Client::new(sdk),
                    &stack.dev.resources.table,
                ),
            ),
            // Secrets Manager's requests counted as they leave the SDK.
            secrets: switchboard_core::secrets::SecretsCache::new(
                SecretsManagerStore::new(sent.secrets_manager(sdk)),
                Duration::from_secs(300),
            ),
            archive: counted(
                &calls,
                S3Archive::new(aws_sdk_s3::Client::new(sdk), &stack.dev.resources.bucket),
            ),
            metrics: switchboard_shared::metrics::Metrics::Off,
        },
    );
    let mut per_event = Vec::new();
    for n in 0..3 {
        calls.lock().unwrap().clear();
        let response = handler.handle(github_webhook(&stack, 100 + n)).await;
        assert_eq!(response.status().as_u16(), 202);
        // The secret is read before anything else is asked.
        let mut requests = sent.take();
        requests.extend(calls.lock().unwrap().iter().map(|c| c.to_string()));
        per_event.push(requests);
    }
    println!(
        "AWS requests per accepted event: first {:?}, then {:?}",
        per_event[0], per_event[1]
    );
    // First event of a container: the signing secret's versions are listed and the current
    // one read, once.
    assert_eq!(
        per_event[0],
        [
            "ListSecretVersionIds",
            "GetSecretValue",
            "GetItem",
            "SendMessage",
            "PutItem"
        ]
    );
    // Steady state: the dedupe record read (eventually consistent: half a read unit), the send,
    // the record written (one conditional put); transform archives the event with its batch.
    assert_eq!(per_event[1], ["GetItem", "SendMessage", "PutItem"]);
    assert_eq!(per_event[2], per_event[1]);
    stack.dev.shutdown().await;
}

/// The cold-start warm-up: its calls are valid against the services, and after the secrets
/// prefetch the first webhook reads no secret (it only claims, sends, completes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_warm_up_the_first_webhook_reads_no_secret() {
    use switchboard_shared::aws::{
        DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue,
    };

    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = crate::utils::sdk_count::SentRequests::default();
    let sdk = &stack.dev.sdk;
    let res = &stack.dev.resources;
    let events = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), &res.events_url);
    let deliveries = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), &res.deliveries_url);
    let idempotency = DynamoIdempotencyStore::new(aws_sdk_dynamodb::Client::new(sdk), &res.table);
    let archive = S3Archive::new(aws_sdk_s3::Client::new(sdk), &res.bucket);
    events.warm().await.expect("GetQueueAttributes");
    idempotency
        .warm("ingest#")
        .await
        .expect("GetItem of a key no record has");
    // Transform's warm-up (the archive is its, batch by batch).
    archive.warm().await.expect("PutObject warm-up");

    let handler = ingest::handler::Ingest::new(
        std::sync::Arc::new(
            switchboard_core::integration::Integrations::load_dir(&stack.dir).unwrap(),
        ),
        ingest::handler::Ports {
            events: counted(&calls, events),
            deliveries: counted(&calls, deliveries),
            idempotency: counted(&calls, idempotency),
            reviews: table(&stack),
            // Secrets Manager's requests counted as they leave the SDK.
            secrets: switchboard_core::secrets::SecretsCache::new(
                SecretsManagerStore::new(sent.secrets_manager(sdk)),
                Duration::from_secs(300),
            ),
            archive: counted(&calls, archive),
            metrics: switchboard_shared::metrics::Metrics::Off,
            network: switchboard_core::network::NetworkPolicy::LOCAL,
        },
    );
    handler.prefetch_secrets().await;
    let prefetched = sent.take();
    assert!(
        prefetched.iter().any(|o| o == "GetSecretValue"),
        "the prefetch reads the signing secrets: {prefetched:?}"
    );
    calls.lock().unwrap().clear();
    let response = handler.handle(github_webhook(&stack, 300)).await;
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(sent.take(), Vec::<String>::new(), "no secret read");
    assert_eq!(
        *calls.lock().unwrap(),
        ["GetItem", "SendMessage", "PutItem"]
    );
    stack.dev.shutdown().await;
}

/// A signed GitHub webhook (the `n`th body) as the ingest Lambda receives it.
fn github_webhook(stack: &TestStack, n: u32) -> lambda_http::Request {
    let body = body_for("github", n);
    let headers = stack.sign("github", &body, "application/json");
    webhook_request("github", &headers, &body)
}

/// The request API Gateway would hand ingest for this post.
fn webhook_request(
    integration: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> lambda_http::Request {
    // The event `switchboard send --lambda-event` writes.
    let event = switchboard_cli::send::lambda_event(integration, headers, body).unwrap();
    switchboard_cli::apigw::into_request(event).unwrap()
}

fn counted<P>(calls: &std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>, inner: P) -> Counted<P> {
    Counted {
        inner,
        calls: calls.clone(),
    }
}

/// Ingest queued the event, then the write that records it failed: the sender's retry is
/// accepted again, as the same event, and delivered once (deliver's record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_completion_write_failed_is_the_same_event() {
    use switchboard_shared::aws::{
        DynamoIdempotencyStore, S3Archive, SecretsManagerStore, SqsQueue,
    };

    /// The idempotency table, whose write of an accepted event fails.
    struct FailingComplete(DynamoIdempotencyStore);
    impl IdempotencyStore for FailingComplete {
        async fn release(&self, key: &str) -> Result<(), PortError> {
            self.0.release(key).await
        }
        async fn lookup(
            &self,
            key: &str,
            consistent: bool,
        ) -> Result<Option<switchboard_core::idempotency::Record>, PortError> {
            self.0.lookup(key, consistent).await
        }
        async fn record_completed(
            &self,
            _: &str,
            _: &str,
            _: chrono::DateTime<chrono::Utc>,
            _: i64,
        ) -> Result<bool, PortError> {
            Err(PortError {
                operation: "PutItem",
                message: "injected: the write of the accepted event failed".into(),
            })
        }
    }

    let receiver = Receiver::start().await;
    let stack = start(&receiver).await;
    let sdk = &stack.dev.sdk;
    let res = &stack.dev.resources;
    let handler = ingest::handler::Ingest::new(
        std::sync::Arc::new(
            switchboard_core::integration::Integrations::load_dir(&stack.dir).unwrap(),
        ),
        ingest::handler::Ports {
            events: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), &res.events_url),
            deliveries: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), &res.deliveries_url),
            reviews: table(&stack),
            idempotency: FailingComplete(DynamoIdempotencyStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &res.table,
            )),
            secrets: switchboard_core::secrets::SecretsCache::new(
                SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk)),
                Duration::from_secs(300),
            ),
            archive: S3Archive::new(aws_sdk_s3::Client::new(sdk), &res.bucket),
            metrics: switchboard_shared::metrics::Metrics::Off,
            network: switchboard_core::network::NetworkPolicy::LOCAL,
        },
    );
    let body = body_for("github", 77);
    let headers = stack.sign("github", &body, "application/json");
    let response = handler
        .handle(webhook_request("github", &headers, &body))
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let first: Value = serde_json::from_slice(response.body().as_ref()).unwrap();

    // The sender retries the same delivery through the stack, whose table works.
    let (status, again) = stack.post("github", &headers, &body).await;
    assert_eq!(status, 202, "nothing recorded it: accepted again {again}");
    assert_eq!(
        again["event_id"], first["event_id"],
        "the same event, not a second one"
    );
    receiver.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delivered: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| r.body["body"]["n"] == 77)
        .collect();
    assert_eq!(delivered.len(), 1, "delivered once: {delivered:?}");
    stack.dev.shutdown().await;
}
