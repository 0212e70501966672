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
}

impl<S: SecretStore> SecretsCache<S> {
    /// A cache over `store` keeping values for `ttl`.
    pub fn new(store: S, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            values: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's value, from the cache while it is fresh.
    pub async fn get(&self, id: &str) -> Result<SecretString, AwsError> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl SecretStore for Counting {
        async fn get(&self, id: &str) -> Result<SecretString, AwsError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(SecretString::new(format!("{id}-{n}")))
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
}
