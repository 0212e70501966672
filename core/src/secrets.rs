//! A small in-memory cache in front of a [`SecretStore`]: each secret fetched once per TTL per
//! container, not once per event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ports::{PortError, SecretStages, SecretStore};
use crate::secret::SecretString;

/// How long a cached value is used before it is read again, by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// How long after a rotation the previous value still signs and verifies, by default (Svix's
/// 24 hours): a sender or receiver has had a day to switch.
pub const PREVIOUS_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Cached secret values.
#[derive(Debug)]
pub struct SecretsCache<S> {
    store: S,
    ttl: Duration,
    values: Mutex<HashMap<String, (Instant, SecretString)>>,
    /// Every stage of a signing secret, read together.
    stages: Mutex<HashMap<String, (Instant, SecretStages)>>,
    /// Held while a value is fetched, so events that miss the cache together cause one read,
    /// not one each.
    fetching: tokio::sync::Mutex<()>,
}

impl<S: SecretStore> SecretsCache<S> {
    /// A cache over `store` keeping values for `ttl`.
    pub fn new(store: S, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            values: Mutex::new(HashMap::new()),
            stages: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys an outbound message is signed with: the current one, the previous one for
    /// `grace` after the rotation that replaced it, and the pending one while a rotation is in
    /// progress. A receiver holding any of them verifies, so none notices a rotation; from one
    /// cache TTL after it every message carries a new-key signature.
    pub async fn outbound_signing_keys(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<Vec<SecretString>, PortError> {
        let stages = self.stages(id).await?;
        Ok(keys(&stages, grace, true))
    }

    /// The values an inbound signature may be made with: the current one and, for
    /// [`PREVIOUS_GRACE`] after a rotation, the previous one, so senders that have not switched
    /// yet still verify.
    pub async fn signing_keys(&self, id: &str) -> Result<Vec<SecretString>, PortError> {
        let stages = self.stages(id).await?;
        Ok(keys(&stages, PREVIOUS_GRACE, false))
    }

    /// Every stage of `id`, from the cache while it is fresh.
    async fn stages(&self, id: &str) -> Result<SecretStages, PortError> {
        if let Some(s) = fresh(&self.stages, id, self.ttl) {
            return Ok(s);
        }
        let _fetching = self.fetching.lock().await;
        // Another caller may have fetched it while this one waited.
        if let Some(s) = fresh(&self.stages, id, self.ttl) {
            return Ok(s);
        }
        let stages = self.store.get_stages(id).await?;
        lock(&self.stages).insert(id.to_string(), (Instant::now(), stages.clone()));
        Ok(stages)
    }

    /// The secret's value, from the cache while it is fresh.
    pub async fn get(&self, id: &str) -> Result<SecretString, PortError> {
        if let Some(value) = fresh(&self.values, id, self.ttl) {
            return Ok(value);
        }
        let _fetching = self.fetching.lock().await;
        // Another caller may have fetched it while this one waited.
        if let Some(value) = fresh(&self.values, id, self.ttl) {
            return Ok(value);
        }
        let value = self.store.get(id).await?;
        lock(&self.values).insert(id.to_string(), (Instant::now(), value.clone()));
        Ok(value)
    }

    /// Drops a cached value, so the next read asks the store again (after an auth failure).
    pub fn invalidate(&self, id: &str) {
        lock(&self.values).remove(id);
        lock(&self.stages).remove(id);
    }
}

/// The keys of `stages` that count now: current, previous within `grace` of the rotation,
/// pending when `with_pending`; each once.
fn keys(stages: &SecretStages, grace: Duration, with_pending: bool) -> Vec<SecretString> {
    let now = chrono::Utc::now().timestamp();
    let previous = stages
        .previous
        .as_ref()
        .filter(|_| previous_still_valid(stages.current_since, now, grace));
    let pending = stages.pending.as_ref().filter(|_| with_pending);
    let mut keys = vec![stages.current.clone()];
    for k in [pending, previous].into_iter().flatten() {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys
}

/// Whether the previous value still counts, the current one being current since
/// `current_since` (Unix seconds; unknown counts as recent).
pub fn previous_still_valid(current_since: Option<i64>, now: i64, grace: Duration) -> bool {
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    current_since.is_none_or(|since| now.saturating_sub(since) < grace)
}

/// A cached value while it is fresh.
fn fresh<T: Clone>(
    map: &Mutex<HashMap<String, (Instant, T)>>,
    id: &str,
    ttl: Duration,
) -> Option<T> {
    let map = lock(map);
    map.get(id)
        .filter(|(at, _)| at.elapsed() < ttl)
        .map(|(_, v)| v.clone())
}

fn lock<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-insert; the map is still sound.
    map.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl SecretStore for Counting {
        async fn get(&self, id: &str) -> Result<SecretString, PortError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            // A network call takes a while: let other callers run meanwhile.
            tokio::task::yield_now().await;
            Ok(SecretString::new(format!("{id}-{n}")))
        }

        async fn get_stages(&self, id: &str) -> Result<SecretStages, PortError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            let hour_ago = chrono::Utc::now().timestamp() - 3600;
            Ok(SecretStages {
                current: SecretString::new(format!("{id}-{n}")),
                current_since: Some(hour_ago),
                previous: id
                    .starts_with("rotated")
                    .then(|| SecretString::new(format!("old-{n}"))),
                pending: (id == "rotating").then(|| SecretString::new(format!("next-{n}"))),
            })
        }
    }

    fn exposed(v: Vec<SecretString>) -> Vec<String> {
        v.iter().map(|k| k.expose().to_string()).collect()
    }

    #[tokio::test]
    async fn reads_once_per_ttl_and_again_after_invalidate() {
        let cache = SecretsCache::new(Counting::default(), Duration::from_secs(60));
        assert_eq!(cache.get("a").await.unwrap().expose(), "a-0");
        assert_eq!(cache.get("a").await.unwrap().expose(), "a-0");
        assert_eq!(cache.get("b").await.unwrap().expose(), "b-1");
        cache.invalidate("a");
        assert_eq!(cache.get("a").await.unwrap().expose(), "a-2");
        let expired = SecretsCache::new(Counting::default(), Duration::ZERO);
        expired.get("a").await.unwrap();
        assert_eq!(expired.get("a").await.unwrap().expose(), "a-1");
    }

    #[tokio::test]
    async fn inbound_keys_include_the_previous_value_for_a_day() {
        let cache = SecretsCache::new(Counting::default(), Duration::from_secs(60));
        let keys = exposed(cache.signing_keys("rotated").await.unwrap());
        assert_eq!(keys, ["rotated-0", "old-0"]);
        let again = exposed(cache.signing_keys("rotated").await.unwrap());
        assert_eq!(again, keys, "served from the cache");
        assert_eq!(cache.signing_keys("plain").await.unwrap().len(), 1);
        // Pending keys sign outbound messages; they do not verify inbound ones.
        assert_eq!(cache.signing_keys("rotating").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn events_that_miss_the_cache_together_cause_one_read() {
        let cache = SecretsCache::new(Counting::default(), Duration::from_secs(60));
        let (a, b, c, d) = tokio::join!(
            cache.get("s"),
            cache.get("s"),
            cache.outbound_signing_keys("s", PREVIOUS_GRACE),
            cache.get("s")
        );
        for v in [a.unwrap(), b.unwrap(), d.unwrap()] {
            assert_eq!(v.expose(), "s-0");
        }
        assert_eq!(c.unwrap().len(), 1);
        // The value, and the stages once.
        assert_eq!(cache.store.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_previous_value_counts_for_the_grace_after_a_rotation() {
        let now = 1_700_000_000;
        assert!(previous_still_valid(Some(now - 3600), now, PREVIOUS_GRACE));
        assert!(previous_still_valid(None, now, PREVIOUS_GRACE));
        assert!(!previous_still_valid(
            Some(now - 25 * 3600),
            now,
            PREVIOUS_GRACE
        ));
        assert!(!previous_still_valid(
            Some(now - 61),
            now,
            Duration::from_secs(60)
        ));
        // Far-off times and graces saturate instead of overflowing.
        assert!(!previous_still_valid(Some(i64::MIN), now, PREVIOUS_GRACE));
        assert!(previous_still_valid(Some(now), now, Duration::MAX));
    }

    #[tokio::test]
    async fn outbound_keys_are_current_pending_and_previous_within_the_route_grace() {
        let cache = SecretsCache::new(Counting::default(), Duration::from_secs(60));
        let first = exposed(
            cache
                .outbound_signing_keys("rotating", PREVIOUS_GRACE)
                .await
                .unwrap(),
        );
        assert_eq!(first, ["rotating-0", "next-0"]);
        let again = exposed(
            cache
                .outbound_signing_keys("rotating", PREVIOUS_GRACE)
                .await
                .unwrap(),
        );
        assert_eq!(again, first, "served from the cache");
        cache.invalidate("rotating");
        let fresh = exposed(
            cache
                .outbound_signing_keys("rotating", PREVIOUS_GRACE)
                .await
                .unwrap(),
        );
        assert_eq!(fresh, ["rotating-1", "next-1"]);
        // Rotated an hour ago: the previous key signs within a day's grace, not a minute's.
        let day = exposed(
            cache
                .outbound_signing_keys("rotated", PREVIOUS_GRACE)
                .await
                .unwrap(),
        );
        assert_eq!(day, ["rotated-2", "old-2"]);
        let minute = exposed(
            cache
                .outbound_signing_keys("rotated", Duration::from_secs(60))
                .await
                .unwrap(),
        );
        assert_eq!(minute, ["rotated-2"]);
    }
}
