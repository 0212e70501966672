//! In-memory adapters of every port, with the AWS adapters' rules (conditional writes, leases,
//! version stages), so a handler's rules are unit-tested beside it without the emulator. They
//! stand beside the end-to-end tests through moto, not instead of them; nothing deployed
//! uses them. A clone shares its original's state, so a test keeps one to look into what the
//! handler did with the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use switchboard_core::circuit::CircuitState;
use switchboard_core::dead_letter::{AttemptRecord, DeadLetter};
use switchboard_core::idempotency::{Record, Status};
use switchboard_core::ports::{
    Archive, AttemptLog, CircuitStore, DeadLetterQueue, IdempotencyStore, LetterClaim, Outgoing,
    PortError, Queue, RateLimiter, RotationStore, SecretStages, SecretStore, SecretVersions,
    Visibility, slot_order,
};
use switchboard_core::review::ReviewItem;
use switchboard_core::secret::SecretString;

mod reviews;
mod turns;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found(operation: &'static str, what: &str) -> PortError {
    PortError {
        operation,
        message: format!("ResourceNotFoundException: {what} not found"),
    }
}

/// A queue (what was sent), the visibility of what was received from it (each delay asked),
/// and a DLQ (each letter), in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryQueue {
    sent: Arc<Mutex<Vec<String>>>,
    groups: Arc<Mutex<Vec<Option<String>>>>,
    delays: Arc<Mutex<Vec<(String, Duration)>>>,
    letters: Arc<Mutex<Vec<DeadLetter>>>,
}

impl MemoryQueue {
    /// Every body sent, in order.
    pub fn sent(&self) -> Vec<String> {
        lock(&self.sent).clone()
    }

    /// The group of every message sent, in order.
    pub fn groups(&self) -> Vec<Option<String>> {
        lock(&self.groups).clone()
    }

    /// Every delay asked, by receipt handle, in order.
    pub fn delays(&self) -> Vec<(String, Duration)> {
        lock(&self.delays).clone()
    }

    /// Every dead letter written, in order.
    pub fn letters(&self) -> Vec<DeadLetter> {
        lock(&self.letters).clone()
    }
}

impl Queue for MemoryQueue {
    async fn send(&self, messages: &[Outgoing]) -> Result<(), PortError> {
        lock(&self.sent).extend(messages.iter().map(|m| m.body.clone()));
        lock(&self.groups).extend(messages.iter().map(|m| m.group.clone()));
        Ok(())
    }
}

impl Visibility for MemoryQueue {
    async fn delay(&self, receipt_handle: &str, by: Duration) -> Result<(), PortError> {
        lock(&self.delays).push((receipt_handle.to_string(), by));
        Ok(())
    }
}

impl DeadLetterQueue for MemoryQueue {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), PortError> {
        lock(&self.letters).push(letter.clone());
        Ok(())
    }
}

/// A task's attempt history, the message it was dead-lettered from, and the message that
/// claimed its dead letter with its lease.
type TaskLog = (Vec<AttemptRecord>, Option<String>, Option<(String, i64)>);

/// A task's next attempt (Unix ms) and its dead letter's reason, as noted.
pub type TaskNotes = (Option<i64>, Option<String>);

/// The idempotency table: idempotency records, circuits, rate counters, concurrency slots
/// and attempt logs, each judged as the DynamoDB adapter's conditions judge them.
#[derive(Debug, Default, Clone)]
pub struct MemoryTable {
    records: Arc<Mutex<HashMap<String, Record>>>,
    circuits: Arc<Mutex<HashMap<String, CircuitState>>>,
    rates: Arc<Mutex<HashMap<(String, i64), u32>>>,
    slots: Arc<Mutex<HashMap<(String, u32), i64>>>,
    attempts: Arc<Mutex<HashMap<String, TaskLog>>>,
    /// Each ordered key's turn (holder, until) and last delivered version.
    turns: Arc<Mutex<HashMap<String, turns::KeyTurn>>>,
    /// Each dedupe record's count of duplicates answered.
    duplicates: Arc<Mutex<HashMap<String, u64>>>,
    /// Each task's next attempt (Unix ms) and dead letter's reason, as noted.
    notes: Arc<Mutex<HashMap<String, TaskNotes>>>,
    reviews: Arc<Mutex<HashMap<String, ReviewItem>>>,
}

impl MemoryTable {
    /// How many duplicates of the dedupe record `key` were answered.
    pub fn duplicates(&self, key: &str) -> u64 {
        lock(&self.duplicates).get(key).copied().unwrap_or_default()
    }

    /// A task's noted next attempt (Unix ms) and dead letter's reason.
    pub fn notes(&self, task: &str) -> TaskNotes {
        lock(&self.notes).get(task).cloned().unwrap_or_default()
    }

    /// The record under `key`, if there is one.
    pub fn record(&self, key: &str) -> Option<Record> {
        lock(&self.records).get(key).cloned()
    }

    /// Stores a record as given (a test's: one an earlier version left, say).
    pub fn put_record(&self, record: Record) {
        lock(&self.records).insert(record.key.clone(), record);
    }

    /// The destination's circuit as stored.
    pub fn circuit_of(&self, destination: &str) -> CircuitState {
        lock(&self.circuits)
            .get(destination)
            .copied()
            .unwrap_or_default()
    }

    /// Sets the destination's circuit (to start a test from a state).
    pub fn set_circuit(&self, destination: &str, state: CircuitState) {
        lock(&self.circuits).insert(destination.to_string(), state);
    }

    /// Marks `key` COMPLETED (to start a test from a delivered task).
    pub fn set_completed(&self, key: &str) {
        lock(&self.records).insert(
            key.to_string(),
            Record {
                key: key.to_string(),
                status: Status::Completed,
                expires_at: Utc::now().timestamp() + 3600,
                in_progress_expires_at_ms: None,
                data: None,
            },
        );
    }

    /// The task's attempt history.
    pub fn history(&self, task: &str) -> Vec<AttemptRecord> {
        lock(&self.attempts)
            .get(task)
            .map(|(h, _, _)| h.clone())
            .unwrap_or_default()
    }
}

/// A COMPLETED record of `key` holding `data`.
fn completed(key: &str, data: &str, expires_at: i64) -> Record {
    Record {
        key: key.to_string(),
        status: Status::Completed,
        expires_at,
        in_progress_expires_at_ms: None,
        data: Some(data.to_string()),
    }
}

impl IdempotencyStore for MemoryTable {
    async fn release(&self, key: &str) -> Result<(), PortError> {
        lock(&self.records).remove(key);
        Ok(())
    }

    async fn note_duplicate(
        &self,
        key: &str,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), PortError> {
        if lock(&self.records).contains_key(key) {
            *lock(&self.duplicates).entry(key.to_string()).or_default() += 1;
        }
        Ok(())
    }

    async fn lookup(&self, key: &str, _consistent: bool) -> Result<Option<Record>, PortError> {
        Ok(lock(&self.records).get(key).cloned())
    }

    async fn record_completed(
        &self,
        key: &str,
        data: &str,
        now: chrono::DateTime<chrono::Utc>,
        expires_at: i64,
    ) -> Result<bool, PortError> {
        let mut records = lock(&self.records);
        if records
            .get(key)
            .is_some_and(|r| r.status == Status::Completed && r.expires_at >= now.timestamp())
        {
            return Ok(false);
        }
        records.insert(key.to_string(), completed(key, data, expires_at));
        Ok(true)
    }
}

impl CircuitStore for MemoryTable {
    async fn circuit(&self, destination: &str) -> Result<CircuitState, PortError> {
        Ok(self.circuit_of(destination))
    }

    async fn count_failure(&self, destination: &str) -> Result<u32, PortError> {
        let mut circuits = lock(&self.circuits);
        let state = circuits.entry(destination.to_string()).or_default();
        state.failures += 1;
        Ok(state.failures)
    }

    async fn open_circuit(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
        probe_failed: bool,
    ) -> Result<bool, PortError> {
        let mut circuits = lock(&self.circuits);
        let state = circuits.entry(destination.to_string()).or_default();
        if !probe_failed && state.open_until_ms.is_some_and(|open| open >= now_ms) {
            return Ok(false);
        }
        state.open_until_ms = Some(until_ms);
        state.probe_until_ms = None;
        state.opened_at_ms.get_or_insert(now_ms);
        if probe_failed {
            state.probes_failed += 1;
            state.probe_failed_at_ms = Some(now_ms);
        }
        Ok(true)
    }

    async fn take_probe(
        &self,
        destination: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, PortError> {
        let mut circuits = lock(&self.circuits);
        let Some(state) = circuits.get_mut(destination) else {
            return Ok(false);
        };
        let cooled = state.open_until_ms.is_some_and(|open| open < now_ms);
        let free = state.probe_until_ms.is_none_or(|probe| probe < now_ms);
        if !(cooled && free) {
            return Ok(false);
        }
        state.probe_until_ms = Some(until_ms);
        Ok(true)
    }

    async fn mark_slow(&self, destination: &str, until_ms: i64) -> Result<(), PortError> {
        let mut circuits = lock(&self.circuits);
        circuits
            .entry(destination.to_string())
            .or_default()
            .slow_until_ms = Some(until_ms);
        Ok(())
    }

    async fn close_circuit(&self, destination: &str) -> Result<bool, PortError> {
        let mut circuits = lock(&self.circuits);
        let slow_until_ms = circuits.get(destination).and_then(|s| s.slow_until_ms);
        let old = circuits.insert(
            destination.to_string(),
            CircuitState {
                slow_until_ms,
                ..CircuitState::default()
            },
        );
        Ok(old.is_some_and(|s| s.open_until_ms.is_some()))
    }
}

impl RateLimiter for MemoryTable {
    async fn take_rate(&self, destination: &str, second: i64, max: u32) -> Result<bool, PortError> {
        let mut rates = lock(&self.rates);
        let n = rates.entry((destination.to_string(), second)).or_default();
        if *n >= max {
            return Ok(false);
        }
        *n += 1;
        Ok(true)
    }

    async fn exhaust(
        &self,
        destination: &str,
        from: i64,
        to: i64,
        max: u32,
    ) -> Result<(), PortError> {
        let mut rates = lock(&self.rates);
        for second in from..=to {
            rates.insert((destination.to_string(), second), max);
        }
        Ok(())
    }

    async fn take_slot(
        &self,
        destination: &str,
        max: u32,
        start: u32,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<u32>, PortError> {
        let mut slots = lock(&self.slots);
        for slot in slot_order(start, max) {
            let key = (destination.to_string(), slot);
            if slots.get(&key).is_none_or(|lease| *lease < now_ms) {
                slots.insert(key, lease_until_ms);
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    async fn free_slot(&self, destination: &str, slot: u32) -> Result<(), PortError> {
        lock(&self.slots).remove(&(destination.to_string(), slot));
        Ok(())
    }
}

impl AttemptLog for MemoryTable {
    async fn reset_attempts(&self, task: &str) -> Result<(), PortError> {
        lock(&self.attempts).remove(task);
        lock(&self.notes).remove(task);
        Ok(())
    }

    async fn attempts(
        &self,
        task: &str,
    ) -> Result<(Vec<AttemptRecord>, Option<String>), PortError> {
        Ok(lock(&self.attempts)
            .get(task)
            .map(|(h, d, _)| (h.clone(), d.clone()))
            .unwrap_or_default())
    }

    async fn claim_dead_letter(
        &self,
        task: &str,
        message_id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<LetterClaim, PortError> {
        let mut attempts = lock(&self.attempts);
        let (_, sent, claim) = attempts.entry(task.to_string()).or_default();
        if sent.as_deref() == Some(message_id) {
            return Ok(LetterClaim::Sent);
        }
        match claim {
            Some((by, _)) if by != message_id => Ok(LetterClaim::OtherCopy),
            Some((_, until)) if *until >= now_ms => Ok(LetterClaim::Busy { until_ms: *until }),
            _ => {
                *claim = Some((message_id.to_string(), lease_until_ms));
                Ok(LetterClaim::Won)
            }
        }
    }

    async fn mark_dead_lettered(
        &self,
        task: &str,
        message_id: &str,
        reason: &str,
    ) -> Result<(), PortError> {
        lock(&self.attempts).entry(task.to_string()).or_default().1 = Some(message_id.to_string());
        lock(&self.notes).insert(task.to_string(), (None, Some(reason.to_string())));
        Ok(())
    }

    async fn note_next_attempt(&self, task: &str, at_ms: i64) -> Result<(), PortError> {
        lock(&self.notes).entry(task.to_string()).or_default().0 = Some(at_ms);
        Ok(())
    }

    async fn record_attempt(
        &self,
        task: &str,
        attempt: &AttemptRecord,
        _expires_at: i64,
    ) -> Result<Vec<AttemptRecord>, PortError> {
        let mut attempts = lock(&self.attempts);
        let (history, _, _) = attempts.entry(task.to_string()).or_default();
        history.push(attempt.clone());
        Ok(history.clone())
    }
}

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";
const PENDING: &str = "AWSPENDING";

#[derive(Debug, Default)]
struct Secret {
    rotation_enabled: bool,
    /// By version id: the value, its stages, when it was created (Unix seconds).
    versions: HashMap<String, (SecretString, Vec<String>, i64)>,
}

impl Secret {
    fn with_stage(&self, stage: &str) -> Option<&SecretString> {
        self.versions
            .values()
            .find(|(_, stages, _)| stages.iter().any(|s| s == stage))
            .map(|(v, _, _)| v)
    }
}

/// Secrets Manager in memory: secrets with versions and stages, as rotation moves them.
#[derive(Debug, Default, Clone)]
pub struct MemorySecrets {
    secrets: Arc<Mutex<HashMap<String, Secret>>>,
}

impl MemorySecrets {
    /// A store holding these secrets' current values.
    pub fn with(values: &[(&str, &str)]) -> Self {
        let store = Self::default();
        for (id, value) in values {
            store.put_current(id, value);
        }
        store
    }

    /// Makes `value` the secret's current value (a new version; the old current becomes
    /// previous), as PutSecretValue does.
    pub fn put_current(&self, id: &str, value: &str) {
        let mut secrets = lock(&self.secrets);
        let secret = secrets.entry(id.to_string()).or_default();
        let version = format!("v{}", secret.versions.len() + 1);
        for (_, stages, _) in secret.versions.values_mut() {
            stages.retain(|s| s != PREVIOUS);
            if let Some(s) = stages.iter_mut().find(|s| *s == CURRENT) {
                *s = PREVIOUS.to_string();
            }
        }
        secret.versions.insert(
            version,
            (
                SecretString::new(value.to_string()),
                vec![CURRENT.to_string()],
                Utc::now().timestamp(),
            ),
        );
    }

    /// Turns rotation on for the secret.
    pub fn enable_rotation(&self, id: &str) {
        lock(&self.secrets)
            .entry(id.to_string())
            .or_default()
            .rotation_enabled = true;
    }
}

impl SecretStore for MemorySecrets {
    async fn get(&self, id: &str) -> Result<SecretString, PortError> {
        lock(&self.secrets)
            .get(id)
            .and_then(|s| s.with_stage(CURRENT))
            .cloned()
            .ok_or_else(|| not_found("GetSecretValue", id))
    }

    async fn get_stages(&self, id: &str) -> Result<SecretStages, PortError> {
        let secrets = lock(&self.secrets);
        let secret = secrets
            .get(id)
            .ok_or_else(|| not_found("GetSecretValue", id))?;
        let (current, current_since) = secret
            .versions
            .values()
            .find(|(_, stages, _)| stages.iter().any(|s| s == CURRENT))
            .map(|(v, _, at)| (v.clone(), Some(*at)))
            .ok_or_else(|| not_found("GetSecretValue", id))?;
        Ok(SecretStages {
            current,
            current_since,
            previous: secret.with_stage(PREVIOUS).cloned(),
            pending: secret.with_stage(PENDING).cloned(),
        })
    }
}

impl RotationStore for MemorySecrets {
    async fn versions(&self, id: &str) -> Result<SecretVersions, PortError> {
        let secrets = lock(&self.secrets);
        let secret = secrets
            .get(id)
            .ok_or_else(|| not_found("DescribeSecret", id))?;
        Ok(SecretVersions {
            rotation_enabled: secret.rotation_enabled,
            stages: secret
                .versions
                .iter()
                .map(|(v, (_, stages, _))| (v.clone(), stages.clone()))
                .collect(),
        })
    }

    async fn value(
        &self,
        id: &str,
        version: Option<&str>,
        stage: &str,
    ) -> Result<Option<SecretString>, PortError> {
        let secrets = lock(&self.secrets);
        let secret = secrets
            .get(id)
            .ok_or_else(|| not_found("GetSecretValue", id))?;
        Ok(match version {
            Some(v) => secret
                .versions
                .get(v)
                .filter(|(_, stages, _)| stages.iter().any(|s| s == stage))
                .map(|(value, _, _)| value.clone()),
            None => secret.with_stage(stage).cloned(),
        })
    }

    async fn put_pending(
        &self,
        id: &str,
        token: &str,
        value: &SecretString,
    ) -> Result<(), PortError> {
        let mut secrets = lock(&self.secrets);
        let secret = secrets
            .get_mut(id)
            .ok_or_else(|| not_found("PutSecretValue", id))?;
        if secret.versions.contains_key(token) {
            return Ok(());
        }
        for (_, stages, _) in secret.versions.values_mut() {
            stages.retain(|s| s != PENDING);
        }
        secret.versions.insert(
            token.to_string(),
            (
                value.clone(),
                vec![PENDING.to_string()],
                Utc::now().timestamp(),
            ),
        );
        Ok(())
    }

    async fn promote(&self, id: &str, token: &str, from: &str) -> Result<(), PortError> {
        let mut secrets = lock(&self.secrets);
        let secret = secrets
            .get_mut(id)
            .ok_or_else(|| not_found("UpdateSecretVersionStage", id))?;
        if !secret.versions.contains_key(token) {
            return Err(not_found("UpdateSecretVersionStage", token));
        }
        for (version, (_, stages, _)) in secret.versions.iter_mut() {
            stages.retain(|s| s != PREVIOUS);
            if version == from {
                stages.retain(|s| s != CURRENT);
                stages.push(PREVIOUS.to_string());
            }
            if version == token {
                stages.retain(|s| s != PENDING);
                stages.push(CURRENT.to_string());
            }
        }
        Ok(())
    }

    async fn clear_pending(&self, id: &str, token: &str) -> Result<(), PortError> {
        if let Some((_, stages, _)) = lock(&self.secrets)
            .get_mut(id)
            .and_then(|s| s.versions.get_mut(token))
        {
            stages.retain(|s| s != PENDING);
        }
        Ok(())
    }
}

/// The archive bucket in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryArchive {
    objects: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl MemoryArchive {
    /// Every key stored.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.objects).keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl Archive for MemoryArchive {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), PortError> {
        lock(&self.objects).insert(key.to_string(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PortError> {
        lock(&self.objects)
            .get(key)
            .cloned()
            .ok_or_else(|| not_found("GetObject", key))
    }
}

/// A directory of definitions for a test, removed when dropped: the in-memory handlers load
/// their integrations from it as the functions load theirs from the layer.
#[derive(Debug)]
pub struct DefinitionsDir(std::path::PathBuf);

impl DefinitionsDir {
    /// A fresh directory holding `{id}.yaml` with `yaml`.
    pub fn with(id: &str, yaml: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "sb-definitions-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{id}.yaml")), yaml)?;
        Ok(Self(dir))
    }

    /// Where it is.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

static DIRS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for DefinitionsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
