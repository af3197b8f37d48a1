//! Caches and single flight for proofs: bounded maps with a time to live, and one
//! computation per key at a time whose entries go away when nobody waits any more.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A map whose entries answer for a time to live given when asked, and that never
/// holds more than `max` of them: past that, the oldest goes. Eviction costs O(1)
/// amortised (insertion order kept beside the map), not a scan of the full map under
/// its lock.
pub(crate) struct TtlCache<T> {
    inner: Mutex<Inner<T>>,
    max: usize,
}

struct Inner<T> {
    map: HashMap<String, (T, Instant)>,
    /// Keys in insertion order, with the insertion time; an entry whose time differs
    /// from the map's was re-inserted since and is passed over.
    order: VecDeque<(String, Instant)>,
}

impl<T: Clone> TtlCache<T> {
    pub(crate) fn new(max: usize) -> TtlCache<T> {
        TtlCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key` if it is younger than `ttl`.
    pub(crate) fn fresh(&self, key: &str, ttl: Duration) -> Option<T> {
        self.lock()
            .map
            .get(key)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(v, _)| v.clone())
    }

    /// The value for `key` however old (`on_unreachable = "cached"`).
    pub(crate) fn any_age(&self, key: &str) -> Option<T> {
        self.lock().map.get(key).map(|(v, _)| v.clone())
    }

    pub(crate) fn insert(&self, key: String, value: T) {
        let mut inner = self.lock();
        let Inner { map, order } = &mut *inner;
        let now = Instant::now();
        if map.len() >= self.max && !map.contains_key(&key) {
            while let Some((old, at)) = order.pop_front() {
                if map.get(&old).is_some_and(|(_, t)| *t == at) {
                    map.remove(&old);
                    break;
                }
            }
        }
        map.insert(key.clone(), (value, now));
        order.push_back((key, now));
        // Re-inserted keys leave stale entries behind: drop them once they are as many
        // as the live ones (amortised O(1) per insert).
        if order.len() > 2 * self.max.max(1) {
            order.retain(|(k, at)| map.get(k).is_some_and(|(_, t)| t == at));
        }
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.order.clear();
    }

    /// Removes the value for `key` if `which` holds for it (its entry in the insertion
    /// order goes when next passed over).
    pub(crate) fn remove_if(&self, key: &str, which: impl Fn(&T) -> bool) {
        let mut inner = self.lock();
        if inner.map.get(key).is_some_and(|(v, _)| which(v)) {
            inner.map.remove(key);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
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
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        c.insert("c".into(), 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.fresh("a", ttl), None);
        assert_eq!(c.fresh("c", ttl), Some(3));
        assert_eq!(c.fresh("c", Duration::ZERO), None, "older than a zero ttl");
        assert_eq!(c.any_age("c"), Some(3));
    }

    #[test]
    fn a_key_inserted_again_is_young_again_and_the_order_stays_bounded() {
        let c = TtlCache::new(2);
        let ttl = Duration::from_secs(60);
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        c.insert("a".into(), 10); // a is now the younger
        c.insert("c".into(), 3); // b goes, not a
        assert_eq!(
            (c.fresh("a", ttl), c.fresh("b", ttl), c.fresh("c", ttl)),
            (Some(10), None, Some(3))
        );
        for i in 0..1000 {
            c.insert("a".into(), i);
        }
        assert_eq!(c.len(), 2);
        assert!(c.lock().order.len() <= 4, "stale order entries are dropped");
        assert_eq!(
            c.fresh("c", ttl),
            Some(3),
            "re-inserting one key evicts nothing"
        );
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
