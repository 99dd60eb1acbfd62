//! Per-tenant API keys and rate limits.
//!
//! A key is `lg_<tenant>_<32 random hex>`; the store keeps only its
//! SHA-256 (keys are random, so a fast hash is enough) and its first
//! characters for recognising it in a list. `leadgate keys create` prints a
//! key once. The service resolves a key to its tenant through a cache, so a
//! request costs no store read after the first (a key is checked again
//! after a minute, so a revoked key stops working within one); unknown
//! keys are cached as unknown for a few seconds, so guessing cannot load
//! the store.

use leadgate_store::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// A new key for `tenant`.
pub fn new_key(tenant: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let safe: String = tenant
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    format!("lg_{safe}_{hex}")
}

pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The part of a key shown in lists.
pub fn prefix(key: &str) -> String {
    key.chars()
        .take(key.len().saturating_sub(24))
        .collect::<String>()
        + "…"
}

/// How long an unknown key stays known as unknown.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How long a known key is trusted before the store is asked again.
const POSITIVE_TTL: Duration = Duration::from_secs(60);

/// Key hash → tenant, with the store behind it.
#[derive(Default)]
pub struct Keys {
    known: RwLock<HashMap<String, (String, Instant)>>,
    unknown: Mutex<HashMap<String, Instant>>,
}

impl Keys {
    /// The tenant of `key`, if it is a live key.
    pub fn tenant(&self, key: &str, store: &leadgate_store::Pool) -> Option<String> {
        let h = hash(key);
        if let Some((t, at)) = self.known.read().ok()?.get(&h)
            && at.elapsed() < POSITIVE_TTL
        {
            return Some(t.clone());
        }
        {
            let mut unknown = self.unknown.lock().ok()?;
            if let Some(at) = unknown.get(&h) {
                if at.elapsed() < NEGATIVE_TTL {
                    return None;
                }
                unknown.remove(&h);
            }
        }
        let look_up = || store.get().ok()?.api_key_tenant(&h).ok().flatten();
        // Called from a request handler: a PostgreSQL store's client blocks
        // on a runtime of its own, which a runtime thread must first leave.
        let found = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(look_up)
            }
            _ => look_up(),
        };
        match &found {
            Some(t) => {
                self.known
                    .write()
                    .ok()?
                    .insert(h, (t.clone(), Instant::now()));
            }
            None => {
                if let Ok(mut k) = self.known.write() {
                    k.remove(&h);
                }
                let mut unknown = self.unknown.lock().ok()?;
                if unknown.len() > 100_000 {
                    unknown.clear();
                }
                unknown.insert(h, Instant::now());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use leadgate_store::Store;

    #[test]
    fn keys_resolve_to_their_tenant_and_only_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keys.db").display().to_string();
        let store = Store::open(&db).unwrap();
        let key = new_key("acme corp");
        assert!(key.starts_with("lg_acme-corp_"));
        store
            .add_api_key("acme corp", "test", &hash(&key), &prefix(&key), 1)
            .unwrap();
        let store = leadgate_store::Pool::open(&db, 2, None).unwrap();
        let keys = Keys::default();
        assert_eq!(keys.tenant(&key, &store).as_deref(), Some("acme corp"));
        assert_eq!(keys.tenant(&new_key("acme corp"), &store), None);
        assert_eq!(keys.tenant("", &store), None);
        assert!(!prefix(&key).contains(&key[key.len() - 24..]));
    }
}
