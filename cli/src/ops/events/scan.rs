//! Reading the archive for `switchboard events`: an integration's objects of a span of days,
//! newest first, one object at a time (transform's batch objects, `{integration}/{yyyy}/{mm}/
//! {dd}/{ulid}.jsonl.gz`, whose ULIDs sort by when they were written, and events kept alone),
//! with what the reading cost: objects, bytes, events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use switchboard_core::archive::{self, ArchivedEvent};

use super::super::failed;

/// What a search read.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Cost {
    /// ListObjectsV2 requests.
    pub lists: u64,
    /// Objects read (GetObject).
    pub objects: u64,
    /// Their bytes, compressed.
    pub bytes: u64,
    /// Archived events read.
    pub events: u64,
}

impl Cost {
    /// What it cost at S3's request prices (us-east-1: $0.005 per 1,000 LIST, $0.0004 per
    /// 1,000 GET).
    pub fn dollars(&self) -> f64 {
        self.lists as f64 * 0.005 / 1000.0 + self.objects as f64 * 0.0004 / 1000.0
    }

    /// In words, for a person.
    pub fn said(&self) -> String {
        format!(
            "read {} object(s) ({:.1} KB), {} archived event(s): ${:.6} in S3 requests",
            self.objects,
            self.bytes as f64 / 1024.0,
            self.events,
            self.dollars()
        )
    }
}

/// The archive of one stack.
#[derive(Debug, Clone)]
pub struct Archive {
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// Its bucket.
    pub bucket: String,
}

impl Archive {
    /// The integrations the archive holds events of (its top-level prefixes, less the model
    /// audit records and the tasks).
    pub async fn integrations(&self, cost: &mut Cost) -> anyhow::Result<Vec<String>> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .delimiter("/")
            .send()
            .await
            .map_err(failed(format!(
                "listing the archive bucket `{}`",
                self.bucket
            )))?;
        cost.lists += 1;
        Ok(out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix()?.strip_suffix('/').map(str::to_string))
            .filter(|p| p != "audit" && p != "tasks")
            .collect())
    }

    /// The integration's object keys from the day before `since` (an event is filed under the
    /// day it was received, its batch object may be written just after midnight) through
    /// `until`'s day, newest first.
    pub async fn keys(
        &self,
        integration: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        cost: &mut Cost,
    ) -> anyhow::Result<Vec<String>> {
        let prefix = format!("{integration}/");
        let from = format!(
            "{prefix}{}",
            (since - chrono::Duration::days(1)).format("%Y/%m/%d/")
        );
        let last = format!(
            "{prefix}{}~",
            (until + chrono::Duration::days(1)).format("%Y/%m/%d/")
        );
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .start_after(&from)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(failed(format!(
                    "listing the archive bucket `{}`",
                    self.bucket
                )))?;
            cost.lists += 1;
            let mut past = false;
            for key in out.contents().iter().filter_map(|o| o.key()) {
                if key > last.as_str() {
                    past = true;
                    break;
                }
                keys.push(key.to_string());
            }
            match out.next_continuation_token() {
                Some(t) if !past => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.reverse();
        Ok(keys)
    }

    /// One object's bytes, counted.
    async fn bytes(&self, key: &str, cost: &mut Cost) -> anyhow::Result<Vec<u8>> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(failed(format!("reading {key}")))?;
        let bytes = object.body.collect().await?.into_bytes().to_vec();
        cost.objects += 1;
        cost.bytes += bytes.len() as u64;
        Ok(bytes)
    }

    /// One object's events.
    pub async fn read(&self, key: &str, cost: &mut Cost) -> anyhow::Result<Vec<ArchivedEvent>> {
        let bytes = self.bytes(key, cost).await?;
        let events = archive::read_object(key, &bytes).map_err(anyhow::Error::msg)?;
        cost.events += events.len() as u64;
        Ok(events)
    }

    /// An event's JSON as received: its line's, or, when it travelled alone (too large for a
    /// message), its own object's.
    pub async fn body(
        &self,
        event: &ArchivedEvent,
        cost: &mut Cost,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        let alone = match event {
            ArchivedEvent::ArchivedEventV1(e) => return Ok(e.event_body().ok()),
            ArchivedEvent::ArchivedEventV2(line) => match (&line.body, &line.body_ref) {
                (Some(body), _) => return Ok(serde_json::from_str(body.get()).ok()),
                (None, Some(key)) => key.clone(),
                (None, None) => return Ok(None),
            },
        };
        let kept = self.read(&alone, cost).await?;
        Ok(match kept.first() {
            Some(ArchivedEvent::ArchivedEventV1(e)) => e.event_body().ok(),
            _ => None,
        })
    }

    /// The event's model steps, from their audit records under `prefix`: the step, the model,
    /// and what came of it (`answered`, or the failure's reason).
    pub async fn model_steps(
        &self,
        prefix: &str,
        cost: &mut Cost,
    ) -> anyhow::Result<Vec<ModelStep>> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .map_err(failed(format!("listing {prefix}")))?;
        cost.lists += 1;
        let mut steps = Vec::new();
        for key in out.contents().iter().filter_map(|o| o.key()) {
            let Ok(bytes) = self.bytes(key, cost).await else {
                continue;
            };
            let Ok(audit) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let text = |name: &str| audit[name].as_str().unwrap_or_default().to_string();
            let outcome = match audit.get("failure").filter(|f| !f.is_null()) {
                Some(f) => f["reason"].as_str().unwrap_or("failed").to_string(),
                None => "answered".into(),
            };
            steps.push(ModelStep {
                step: text("step"),
                model: text("model"),
                outcome,
                latency_ms: audit["latency_ms"].as_u64(),
                audit_key: key.to_string(),
            });
        }
        Ok(steps)
    }
}

/// A model step of an event, as its audit record says.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModelStep {
    /// The step's name.
    pub step: String,
    /// The model asked.
    pub model: String,
    /// `answered`, or why it failed.
    pub outcome: String,
    /// How long it took.
    pub latency_ms: Option<u64>,
    /// Its audit record.
    pub audit_key: String,
}
