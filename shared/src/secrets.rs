//! A small in-memory cache in front of a [`SecretStore`]: each secret fetched once per TTL per
//! container, not once per event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ports::{AwsError, SecretStore};
use crate::secret::SecretString;

/// How long a cached value is used before it is read again, by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Cached secret values.
#[derive(Debug)]
pub struct SecretsCache<S> {
    store: S,
    ttl: Duration,
    values: Mutex<HashMap<String, (Instant, SecretString)>>,
    previous: Mutex<HashMap<String, (Instant, Option<SecretString>)>>,
    pending: Mutex<HashMap<String, (Instant, Option<SecretString>)>>,
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
            previous: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys an outbound message is signed with: the current one and, while a rotation is
    /// in progress, the pending one, so a receiver that already switched and one that has not
    /// both verify.
    pub async fn outbound_signing_keys(&self, id: &str) -> Result<Vec<SecretString>, AwsError> {
        self.with_stage(id, Stage::Pending).await
    }

    /// The values a signature may be made with: the current one and, while it exists, the one
    /// before the last rotation, so senders that have not switched yet still verify.
    pub async fn signing_keys(&self, id: &str) -> Result<Vec<SecretString>, AwsError> {
        self.with_stage(id, Stage::Previous).await
    }

    /// The current value, then the `stage` value when there is one and it differs.
    async fn with_stage(&self, id: &str, stage: Stage) -> Result<Vec<SecretString>, AwsError> {
        let current = self.get(id).await?;
        let map = match stage {
            Stage::Previous => &self.previous,
            Stage::Pending => &self.pending,
        };
        let cached = fresh_optional(map, id, self.ttl);
        let _fetching = match cached {
            Some(_) => None,
            None => Some(self.fetching.lock().await),
        };
        // Another caller may have fetched it while this one waited.
        let other = match cached.or_else(|| fresh_optional(map, id, self.ttl)) {
            Some(v) => v,
            None => {
                let v = match stage {
                    Stage::Previous => self.store.get_previous(id).await?,
                    Stage::Pending => self.store.get_pending(id).await?,
                };
                map.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_string(), (Instant::now(), v.clone()));
                v
            }
        };
        let mut keys = vec![current];
        keys.extend(other.filter(|o| o != &keys[0]));
        Ok(keys)
    }

    /// The secret's value, from the cache while it is fresh.
    pub async fn get(&self, id: &str) -> Result<SecretString, AwsError> {
        if let Some(value) = self.fresh(id) {
            return Ok(value);
        }
        let _fetching = self.fetching.lock().await;
        // Another caller may have fetched it while this one waited.
        if let Some(value) = self.fresh(id) {
            return Ok(value);
        }
        let value = self.store.get(id).await?;
        self.lock()
            .insert(id.to_string(), (Instant::now(), value.clone()));
        Ok(value)
    }

    /// Drops a cached value, so the next `get` reads it again (after an auth failure).
    pub fn invalidate(&self, id: &str) {
        self.lock().remove(id);
        self.previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn fresh(&self, id: &str) -> Option<SecretString> {
        let values = self.lock();
        let (at, value) = values.get(id)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, SecretString)>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still sound.
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long after a secret changes its previous value still verifies inbound signatures.
pub const PREVIOUS_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Whether the previous value still counts, the current one being current since
/// `current_since` (Unix seconds; unknown counts as recent).
pub fn previous_still_valid(current_since: Option<i64>, now: i64) -> bool {
    current_since.is_none_or(|since| now - since < PREVIOUS_GRACE.as_secs() as i64)
}

/// A version stage besides AWSCURRENT.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Previous,
    Pending,
}

/// A cached optional value (another version stage) while it is fresh.
fn fresh_optional(
    map: &Mutex<HashMap<String, (Instant, Option<SecretString>)>>,
    id: &str,
    ttl: Duration,
) -> Option<Option<SecretString>> {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.get(id)
        .filter(|(at, _)| at.elapsed() < ttl)
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl SecretStore for Counting {
        async fn get(&self, id: &str) -> Result<SecretString, AwsError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            // A network call takes a while: let other callers run meanwhile.
            tokio::task::yield_now().await;
            Ok(SecretString::new(format!("{id}-{n}")))
        }

        async fn get_previous(&self, id: &str) -> Result<Option<SecretString>, AwsError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok((id == "rotated").then(|| SecretString::new(format!("old-{n}"))))
        }

        async fn get_pending(&self, id: &str) -> Result<Option<SecretString>, AwsError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok((id == "rotating").then(|| SecretString::new(format!("next-{n}"))))
        }
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
    async fn signing_keys_include_the_previous_value_while_there_is_one() {
        let cache = SecretsCache::new(Counting::default(), Duration::from_secs(60));
        let keys: Vec<String> = cache
            .signing_keys("rotated")
            .await
            .unwrap()
            .iter()
            .map(|k| k.expose().to_string())
            .collect();
        assert_eq!(keys, ["rotated-0", "old-1"]);
        let again: Vec<String> = cache
            .signing_keys("rotated")
            .await
            .unwrap()
            .iter()
            .map(|k| k.expose().to_string())
            .collect();
        assert_eq!(again, keys, "served from the cache");
        assert_eq!(cache.signing_keys("plain").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn events_that_miss_the_cache_together_cause_one_read() {
        let cache = SecretsCache::new(Counting::default(), Duration::from_secs(60));
        let (a, b, c, d) = tokio::join!(
            cache.get("s"),
            cache.get("s"),
            cache.outbound_signing_keys("s"),
            cache.get("s")
        );
        for v in [a.unwrap(), b.unwrap(), c.unwrap().remove(0), d.unwrap()] {
            assert_eq!(v.expose(), "s-0");
        }
        // The value, and the pending stage once.
        assert_eq!(cache.store.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_previous_value_counts_for_a_day_after_a_change() {
        let now = 1_700_000_000;
        assert!(previous_still_valid(Some(now - 3600), now));
        assert!(previous_still_valid(None, now));
        assert!(!previous_still_valid(Some(now - 25 * 3600), now));
    }

    #[tokio::test]
    async fn outbound_keys_include_the_pending_value_during_a_rotation() {
        let cache = SecretsCache::new(Counting::default(), Duration::from_secs(60));
        let keys = |v: Vec<SecretString>| -> Vec<String> {
            v.iter().map(|k| k.expose().to_string()).collect()
        };
        let first = keys(cache.outbound_signing_keys("rotating").await.unwrap());
        assert_eq!(first, ["rotating-0", "next-1"]);
        let again = keys(cache.outbound_signing_keys("rotating").await.unwrap());
        assert_eq!(again, first, "served from the cache");
        cache.invalidate("rotating");
        let fresh = keys(cache.outbound_signing_keys("rotating").await.unwrap());
        assert_eq!(fresh, ["rotating-2", "next-3"]);
        assert_eq!(cache.outbound_signing_keys("plain").await.unwrap().len(), 1);
    }
}
