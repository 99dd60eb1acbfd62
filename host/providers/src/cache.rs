//! The answer cache: per provider, kind and key, with the time it was
//! fetched. Fresh within the provider's TTL; past it, still served when the
//! provider fails, up to the stale limit. New entries are kept aside for
//! the host to persist ([`Cache::take_new`]); persisted ones are loaded
//! back at start ([`Cache::load`]), so a cache outlives the process.

use crate::{Fetched, Kind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One cached answer, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub provider: String,
    pub kind: Kind,
    pub key: String,
    pub value: Fetched,
    /// Milliseconds since the Unix epoch.
    pub fetched_at: i64,
}

/// What the cache holds for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Hit {
    Fresh(Fetched),
    /// Past its TTL, within the stale limit: for when the provider fails.
    Stale(Fetched, Duration),
    Miss,
}

/// (provider, kind, key).
type CacheKey = (String, Kind, String);

#[derive(Default)]
pub struct Cache {
    /// The answer and when it was fetched.
    map: Mutex<HashMap<CacheKey, (Fetched, i64)>>,
    new: Mutex<Vec<Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Entries persisted earlier (not marked new).
    pub fn load(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut map = lock(&self.map);
        for e in entries {
            map.insert((e.provider, e.kind, e.key), (e.value, e.fetched_at));
        }
    }

    pub fn get(
        &self,
        provider: &str,
        kind: Kind,
        key: &str,
        ttl: Duration,
        stale: Duration,
        now: i64,
    ) -> Hit {
        if ttl.is_zero() {
            return Hit::Miss;
        }
        let map = lock(&self.map);
        let Some((value, at)) = map.get(&(provider.to_string(), kind, key.to_string())) else {
            return Hit::Miss;
        };
        let age = Duration::from_millis(u64::try_from(now.saturating_sub(*at)).unwrap_or(0));
        if age <= ttl {
            Hit::Fresh(value.clone())
        } else if age <= ttl + stale {
            Hit::Stale(value.clone(), age)
        } else {
            Hit::Miss
        }
    }

    pub fn put(&self, provider: &str, kind: Kind, key: &str, value: Fetched, now: i64) {
        lock(&self.map).insert(
            (provider.to_string(), kind, key.to_string()),
            (value.clone(), now),
        );
        lock(&self.new).push(Entry {
            provider: provider.to_string(),
            kind,
            key: key.to_string(),
            value,
            fetched_at: now,
        });
    }

    /// Entries added since the last call, for the host to persist.
    pub fn take_new(&self) -> Vec<Entry> {
        std::mem::take(&mut *lock(&self.new))
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_then_stale_then_gone() {
        let c = Cache::new();
        let ttl = Duration::from_secs(10);
        let stale = Duration::from_secs(100);
        c.put("api", Kind::Company, "acme.com", Fetched::NotFound, 1_000);
        assert_eq!(
            c.get("api", Kind::Company, "acme.com", ttl, stale, 5_000),
            Hit::Fresh(Fetched::NotFound)
        );
        assert!(matches!(
            c.get("api", Kind::Company, "acme.com", ttl, stale, 50_000),
            Hit::Stale(Fetched::NotFound, _)
        ));
        assert_eq!(
            c.get("api", Kind::Company, "acme.com", ttl, stale, 500_000),
            Hit::Miss
        );
        assert_eq!(
            c.get("other", Kind::Company, "acme.com", ttl, stale, 5_000),
            Hit::Miss
        );
        let new = c.take_new();
        assert_eq!(new.len(), 1);
        assert!(c.take_new().is_empty());
        let d = Cache::new();
        d.load(new);
        assert_eq!(
            d.get("api", Kind::Company, "acme.com", ttl, stale, 5_000),
            Hit::Fresh(Fetched::NotFound)
        );
        assert!(d.take_new().is_empty(), "loaded entries are not new");
    }
}
