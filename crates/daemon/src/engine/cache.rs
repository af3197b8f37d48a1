//! Caches and single flight for proofs: bounded maps with a time to live, and one
//! computation per key at a time whose entries go away when nobody waits any more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A map whose entries answer for `ttl` and that never holds more than `max` of them:
/// past that, expired entries go first, then the oldest.
pub(crate) struct TtlCache<T> {
    map: Mutex<HashMap<String, (T, Instant)>>,
    max: usize,
}

impl<T: Clone> TtlCache<T> {
    pub(crate) fn new(max: usize) -> TtlCache<T> {
        TtlCache {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (T, Instant)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key` if it is younger than `ttl`.
    pub(crate) fn fresh(&self, key: &str, ttl: Duration) -> Option<T> {
        self.lock()
            .get(key)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(v, _)| v.clone())
    }

    /// The value for `key` however old (`on_unreachable = "cached"`).
    pub(crate) fn any_age(&self, key: &str) -> Option<T> {
        self.lock().get(key).map(|(v, _)| v.clone())
    }

    pub(crate) fn insert(&self, key: String, value: T, ttl: Duration) {
        let mut map = self.lock();
        if map.len() >= self.max && !map.contains_key(&key) {
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= self.max {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(key, (value, Instant::now()));
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One computation per key at a time: the others wait for it, then look in the cache.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a computation runs; the key's entry goes when the last holder drops.
pub(crate) struct Flight<'a> {
    flights: &'a Flights,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Flights {
    /// Waits until no other computation for `key` runs.
    pub(crate) async fn enter(&self, key: &str) -> Flight<'_> {
        let lock = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        Flight {
            flights: self,
            key: key.to_owned(),
            lock,
            guard: Some(guard),
        }
    }

    /// Keys with a computation running or waited for.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.flights.map.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else waits, so the entry goes (with the
        // map locked, nobody can take a new reference meanwhile).
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_within_its_bound_and_drops_the_oldest() {
        let c = TtlCache::new(2);
        let ttl = Duration::from_secs(60);
        c.insert("a".into(), 1, ttl);
        c.insert("b".into(), 2, ttl);
        c.insert("c".into(), 3, ttl);
        assert_eq!(c.len(), 2);
        assert_eq!(c.fresh("a", ttl), None);
        assert_eq!(c.fresh("c", ttl), Some(3));
        assert_eq!(c.fresh("c", Duration::ZERO), None, "older than a zero ttl");
        assert_eq!(c.any_age("c"), Some(3));
    }

    #[tokio::test]
    async fn flights_leave_no_entry_behind() {
        let f = Flights::default();
        {
            let _one = f.enter("k").await;
            assert_eq!(f.len(), 1);
        }
        assert_eq!(f.len(), 0, "every reload used to add entries that stayed");
        let f = Arc::new(f);
        let first = f.enter("k").await;
        let f2 = f.clone();
        let waiter = tokio::spawn(async move {
            let _second = f2.enter("k").await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the second waits for the first");
        drop(first);
        waiter.await.unwrap();
        assert_eq!(f.len(), 0);
    }
}
