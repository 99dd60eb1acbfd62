//! A pool of store connections, for a process that answers many requests
//! at once (`leadgate serve`): each request borrows an open connection
//! instead of opening one, which on PostgreSQL is a round of
//! authentication and a schema check. Either backend; pooling is `r2d2`'s.

use crate::{Store, StoreError};
use std::time::Duration;

/// Opens the pool's connections.
#[derive(Debug)]
struct Manager {
    location: String,
    cache_kib: Option<i64>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Store;
    type Error = StoreError;

    fn connect(&self) -> Result<Store, StoreError> {
        let store = Store::open(&self.location)?;
        if let Some(kib) = self.cache_kib {
            store.set_cache_kib(kib)?;
        }
        Ok(store)
    }

    fn is_valid(&self, store: &mut Store) -> Result<(), StoreError> {
        store.ping()
    }

    fn has_broken(&self, _: &mut Store) -> bool {
        // A PostgreSQL connection the server closed opens itself again on
        // its next use; a SQLite one does not break.
        false
    }
}

/// Open connections to one store, lent out one at a time.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: r2d2::Pool<Manager>,
    location: String,
}

/// A connection borrowed from a [`Pool`] (it dereferences to the
/// [`Store`]); it goes back when dropped.
pub struct Pooled(r2d2::PooledConnection<Manager>);

impl std::ops::Deref for Pooled {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.0
    }
}

impl Pool {
    /// A pool of at most `size` connections to the store at `location`,
    /// each with its page cache at `cache_kib` (SQLite) when given. The
    /// store is opened once now, so one that cannot be is refused here;
    /// the pool keeps one connection idle and opens the others as
    /// requests need them.
    pub fn open(location: &str, size: u32, cache_kib: Option<i64>) -> Result<Pool, StoreError> {
        let manager = Manager {
            location: location.to_string(),
            cache_kib,
        };
        // A store that cannot be opened (or migrated) is refused here,
        // with the store's own error; the pool then opens its own.
        drop(r2d2::ManageConnection::connect(&manager)?);
        let inner = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .build_unchecked(manager);
        Ok(Pool {
            inner,
            location: crate::pg::redact(location),
        })
    }

    /// A connection: an idle one, a new one while the pool is below its
    /// size, else the next one returned; refused, with the reason, after
    /// 10 s.
    pub fn get(&self) -> Result<Pooled, StoreError> {
        self.inner.get().map(Pooled).map_err(|e| StoreError::Pool {
            location: self.location.clone(),
            reason: e.to_string(),
        })
    }

    /// Connections open now, idle or lent out.
    pub fn connections(&self) -> u32 {
        self.inner.state().connections
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::prelude::*;

    #[test]
    fn connections_open_as_needed_share_one_store_and_go_back() {
        let dir = crate::test_support::TempStore::new("pool");
        let pool = Pool::open(&dir.path(), 2, Some(1024)).unwrap();
        let a = pool.get().unwrap();
        a.add_api_key("acme", "web", "h1", "lg_acme_1", 1).unwrap();
        let b = pool.get().unwrap();
        // Another connection to the same store sees what the first wrote.
        assert_eq!(b.api_key_tenant("h1").unwrap().as_deref(), Some("acme"));
        assert_eq!(pool.connections(), 2);
        drop((a, b));
        // Returned, and lent again: the pool never opens more than its size.
        let again: Vec<Pooled> = (0..2).map(|_| pool.get().unwrap()).collect();
        assert_eq!(pool.connections(), 2);
        drop(again);
    }

    #[test]
    fn a_store_that_cannot_be_opened_is_refused_at_once() {
        let dir = crate::test_support::TempStore::new("pool-refused");
        // A path under a file: no directory can be made there.
        let file = format!("{}.file", dir.path());
        std::fs::write(&file, "not a directory").unwrap();
        let at = format!("{file}/s.db");
        let err = Pool::open(&at, 2, None).err().unwrap().to_string();
        assert!(err.contains(&at), "{err}");
    }
}
