//! The AWS resources the SAM template declares, created on the emulator: both queues with
//! their DLQs and redrive policies, the idempotency table with TTL, and the secrets.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

/// Queue settings (the template's values, or shorter ones for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Seconds a received message stays invisible: SQS's retry timer.
    pub visibility_timeout_secs: u32,
    /// Receives before SQS moves an event to the events DLQ.
    pub max_receive_count: u32,
    /// Receives before SQS moves a task to the deliveries DLQ: room for the whole retry
    /// schedule plus the waits on an open circuit or a rate limit, which also count.
    pub deliveries_max_receive_count: u32,
}

/// The template's settings.
pub const TEMPLATE_SETTINGS: QueueSettings = QueueSettings {
    visibility_timeout_secs: 180,
    max_receive_count: 5,
    deliveries_max_receive_count: 50,
};

/// What was created: URLs and names the functions are configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Events queue URL.
    pub events_url: String,
    /// Events DLQ URL.
    pub events_dlq_url: String,
    /// Deliveries queue URL.
    pub deliveries_url: String,
    /// Deliveries DLQ URL.
    pub deliveries_dlq_url: String,
    /// Idempotency table name.
    pub table: String,
    /// Archive bucket name.
    pub bucket: String,
}

impl Resources {
    /// What ingest is wired to (its Lambda's environment, deployed).
    pub fn ingest_names(&self) -> ingest::wiring::Names<'_> {
        ingest::wiring::Names {
            events: &self.events_url,
            deliveries: &self.deliveries_url,
            table: &self.table,
            bucket: &self.bucket,
        }
    }

    /// What transform is wired to.
    pub fn transform_names(&self) -> transform::wiring::Names<'_> {
        transform::wiring::Names {
            deliveries: &self.deliveries_url,
            events_dlq: &self.events_dlq_url,
            bucket: &self.bucket,
            table: &self.table,
        }
    }
}

/// The archive bucket's name for a stack (the template lets CloudFormation name it).
pub fn bucket_name(stack: &str) -> String {
    format!("{stack}-archive")
}

/// The resource names for a stack name, as the template derives them.
pub fn names(stack: &str) -> [String; 5] {
    [
        format!("{stack}-events"),
        format!("{stack}-events-dlq"),
        format!("{stack}-deliveries"),
        format!("{stack}-deliveries-dlq"),
        format!("{stack}-idempotency"),
    ]
}

/// Creates (or finds) every resource for `stack`.
pub async fn create(
    sdk: &SdkConfig,
    stack: &str,
    settings: QueueSettings,
) -> anyhow::Result<Resources> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let [events, events_dlq, deliveries, deliveries_dlq, table] = names(stack);
    let (events_url, events_dlq_url) = queue_pair(&sqs, &events, &events_dlq, settings).await?;
    let deliveries_settings = QueueSettings {
        max_receive_count: settings.deliveries_max_receive_count,
        ..settings
    };
    let (deliveries_url, deliveries_dlq_url) =
        queue_pair(&sqs, &deliveries, &deliveries_dlq, deliveries_settings).await?;
    create_table(&aws_sdk_dynamodb::Client::new(sdk), &table).await?;
    let bucket = bucket_name(stack);
    create_bucket(&aws_sdk_s3::Client::new(sdk), &bucket).await?;
    Ok(Resources {
        events_url,
        events_dlq_url,
        deliveries_url,
        deliveries_dlq_url,
        table,
        bucket,
    })
}

/// Every queue takes SQS's largest message, 1 MiB (`batching::MAX_REQUEST_BYTES`), as the
/// template's do.
const MAX_MESSAGE_SIZE: &str = "1048576";

async fn queue_pair(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    dlq_name: &str,
    settings: QueueSettings,
) -> anyhow::Result<(String, String)> {
    let dlq_url = sqs
        .create_queue()
        .queue_name(dlq_name)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .attributes(QueueAttributeName::MaximumMessageSize, MAX_MESSAGE_SIZE)
        .send()
        .await
        .with_context(|| format!("creating queue {dlq_name}"))?
        .queue_url
        .context("CreateQueue returned no URL")?;
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": settings.max_receive_count,
    });
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            settings.visibility_timeout_secs.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(QueueAttributeName::MaximumMessageSize, MAX_MESSAGE_SIZE)
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .context("CreateQueue returned no URL")?;
    Ok((url, dlq_url))
}

/// A queue's ARN.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the attributes of {url}"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("the queue has no ARN")
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, table: &str) -> anyhow::Result<()> {
    let string = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    // The sparse index of review items, as the template declares it.
    let reviews = GlobalSecondaryIndex::builder()
        .index_name(switchboard_shared::aws::REVIEWS_INDEX)
        .key_schema(key("review_status", KeyType::Hash)?)
        .key_schema(key("created_at", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()?;
    let created = ddb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string("id")?)
        .attribute_definitions(string("review_status")?)
        .attribute_definitions(string("created_at")?)
        .key_schema(key("id", KeyType::Hash)?)
        .global_secondary_indexes(reviews)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("creating table {table}")),
    }
    ddb.update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expiration")
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("enabling TTL on {table}"))?;
    Ok(())
}

async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating bucket {bucket}")),
    }
}

/// Reads a YAML map of secret id to value; a value that is a map is stored as JSON.
pub fn read_secrets_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading secrets file {}", path.display()))?;
    let map: BTreeMap<String, serde_norway::Value> = serde_norway::from_str(&text)
        .with_context(|| format!("{}: expected a map of secret id to value", path.display()))?;
    map.into_iter()
        .map(|(id, value)| {
            let text = match value {
                serde_norway::Value::String(s) => s,
                serde_norway::Value::Mapping(_) => serde_json::to_string(&value)?,
                other => serde_norway::to_string(&other)?.trim().to_string(),
            };
            Ok((id, text))
        })
        .collect()
}

/// Stores each secret in Secrets Manager (creating it, or adding a new current version).
pub async fn put_secrets(
    sdk: &SdkConfig,
    secrets: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    for (id, value) in secrets {
        let created = sm
            .create_secret()
            .name(id)
            .secret_string(value)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                sm.put_secret_value()
                    .secret_id(id)
                    .secret_string(value)
                    .send()
                    .await
                    .with_context(|| format!("updating secret {id}"))?;
            }
            Err(e) => return Err(e).with_context(|| format!("creating secret {id}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local stack must create what the SAM template declares, with the same redrive.
    #[test]
    fn names_and_settings_match_the_sam_template() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let template: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let resources = template["Resources"].as_mapping().unwrap();
        let mut queue_names = Vec::new();
        let mut max_receive_counts = Vec::new();
        let mut table_names = Vec::new();
        let sub = |v: &serde_norway::Value| -> String {
            match v {
                serde_norway::Value::Tagged(t) => t.value.as_str().unwrap_or_default().to_string(),
                other => other.as_str().unwrap_or_default().to_string(),
            }
        };
        for (_, r) in resources {
            let props = &r["Properties"];
            match r["Type"].as_str() {
                Some("AWS::SQS::Queue") => {
                    queue_names.push(sub(&props["QueueName"]).replace("${AWS::StackName}", "S"));
                    // The claim-check thresholds assume SQS's 1 MiB, here and locally.
                    assert_eq!(
                        props["MaximumMessageSize"].as_u64(),
                        Some(switchboard_core::batching::MAX_REQUEST_BYTES as u64)
                    );
                    assert_eq!(
                        MAX_MESSAGE_SIZE,
                        switchboard_core::batching::MAX_REQUEST_BYTES.to_string()
                    );
                    if let Some(n) = props["RedrivePolicy"]["maxReceiveCount"].as_u64() {
                        max_receive_counts.push(n);
                    }
                }
                Some("AWS::DynamoDB::Table") => {
                    table_names.push(sub(&props["TableName"]).replace("${AWS::StackName}", "S"));
                    assert_eq!(
                        props["TimeToLiveSpecification"]["AttributeName"].as_str(),
                        Some("expiration")
                    );
                }
                _ => {}
            }
        }
        queue_names.sort();
        let [events, events_dlq, deliveries, deliveries_dlq, table] = names("S");
        let mut expected = vec![events, events_dlq, deliveries, deliveries_dlq];
        expected.sort();
        assert_eq!(queue_names, expected);
        assert_eq!(table_names, vec![table]);
        max_receive_counts.sort();
        assert_eq!(
            max_receive_counts,
            vec![
                TEMPLATE_SETTINGS.max_receive_count as u64,
                TEMPLATE_SETTINGS.deliveries_max_receive_count as u64
            ]
        );
        // Transform dead-letters a retryable failure itself on the queue's last receive.
        let transform_env =
            &resources["TransformFunction"]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            transform_env["EVENTS_MAX_RECEIVE_COUNT"].as_str(),
            Some(TEMPLATE_SETTINGS.max_receive_count.to_string().as_str())
        );
        assert!(!transform_env["EVENTS_DLQ_URL"].is_null());
        // Deliver does the same on the deliveries queue's.
        let deliver_env = &resources["DeliverFunction"]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            deliver_env["DELIVERIES_MAX_RECEIVE_COUNT"].as_str(),
            Some(
                TEMPLATE_SETTINGS
                    .deliveries_max_receive_count
                    .to_string()
                    .as_str()
            )
        );
    }

    #[test]
    fn secret_maps_are_stored_as_json() {
        let dir = std::env::temp_dir().join(format!("sb-secrets-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.yaml");
        std::fs::write(&file, "a/b: whsec_abc\nc: { type: x, n: 1 }\n").unwrap();
        let s = read_secrets_file(&file).unwrap();
        assert_eq!(s["a/b"], "whsec_abc");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&s["c"]).unwrap(),
            serde_json::json!({"type": "x", "n": 1})
        );
    }
}
