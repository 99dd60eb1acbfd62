//! An in-memory Bloom filter of the keys in `match_keys`, so that a
//! candidate lookup skips the index seek for a key no stored lead has
//! ([`crate::SqliteStore::filter_match_keys`]: the service's front).
//!
//! Most blocking keys belong to one lead: in a store of a million leads,
//! 4.3 of the 5.1 million distinct keys. So most of a new lead's keys are
//! new, and each cost a seek four pages deep that found nothing — most of
//! the front's candidate lookups. The filter answers "not stored" for
//! those from memory (a false "maybe", about 1 key in 100 when full, only
//! costs the seek it would have cost anyway).
//!
//! A filter must never miss a stored key, so it must learn of every key
//! written, by any connection of any process:
//! - keys deferred by a writer ([`crate::pending_keys`]) are rows of
//!   `match_keys_new` first, which the filter reads as they come, before
//!   they are folded into `match_keys`. If rows were folded and deleted
//!   before it read them (it fell behind a whole cycle, or the connection
//!   forgot what it had read), the row ids show the gap: they are
//!   `AUTOINCREMENT`, so committed rows have consecutive ids;
//! - a writer that writes `match_keys` directly (a batch `leadgate run`)
//!   adds one to `match_keys_writes.direct` in the same transaction, and
//!   the filter compares that count with the one it was built at.
//!
//! Either way the filter is built again from the table, in the snapshot
//! the lookup reads (1.7 s at six million entries, measured). When that
//! would happen more often than once per [`REBUILD_EVERY`] — a batch run
//! writing into the service's store — the lookups seek every key in
//! between, as without a filter. A filter that has taken in all the keys
//! it was sized for grows a layer instead (a scalable Bloom filter): new
//! keys go into a new filter sized for twice the keys held so far, and a
//! key may be held if any layer may hold it. Nothing is read again, so
//! the service does not stop for a second each time the index doubles, as
//! it did when the whole filter was built again (2026-12-01:
//! BENCHMARKS.md). Deleted keys (an erasure) stay in the filter: a false
//! "maybe", never a miss.

use crate::pending_keys::PendingKeys;
use crate::{StoreError, sql};
use fastbloom::BloomFilter;
use rusqlite::{Connection, OptionalExtension};
use std::time::{Duration, Instant};

/// The filter is built again at most this often; in between a stale one
/// is not used.
pub const REBUILD_EVERY: Duration = Duration::from_secs(30);

/// Bits per key the filter is sized for: about 1 % false "maybe" when it
/// holds that many keys, 0.1 % at half.
const BITS_PER_KEY: u64 = 10;

/// The fewest keys a filter is sized for.
const MIN_CAPACITY: u64 = 1 << 16;

/// Counts the transactions that wrote `match_keys` directly.
pub(crate) const COUNT_DIRECT_WRITE: &str =
    "UPDATE match_keys_writes SET direct = direct + 1 WHERE id = 1";

/// One layer of a filter: a Bloom filter sized for `capacity` keys.
struct Layer {
    bloom: BloomFilter,
    /// Keys added to it.
    keys: u64,
    capacity: u64,
}

impl Layer {
    fn new(capacity: u64) -> Layer {
        Layer {
            bloom: BloomFilter::with_num_bits((capacity * BITS_PER_KEY) as usize)
                .expected_items(capacity as usize),
            keys: 0,
            capacity,
        }
    }
}

/// A filter built from the table.
struct Built {
    /// The first built from the table; each later one sized for twice
    /// the keys of all before it. New keys go into the last.
    layers: Vec<Layer>,
    /// `match_keys_writes.direct` it was built at.
    direct: i64,
    /// The highest `match_keys_new` row id whose keys it holds.
    seen: i64,
    /// The fewest keys a layer is sized for.
    min_capacity: u64,
}

impl Built {
    fn insert(&mut self, key: i64) {
        if self.layers.last().is_none_or(|l| l.keys >= l.capacity) {
            let held: u64 = self.layers.iter().map(|l| l.keys).sum();
            self.layers
                .push(Layer::new((held * 2).max(self.min_capacity)));
        }
        if let Some(l) = self.layers.last_mut() {
            l.bloom.insert(&key);
            l.keys += 1;
        }
    }

    fn contains(&self, key: i64) -> bool {
        self.layers.iter().any(|l| l.bloom.contains(&key))
    }
}

/// The filter of one connection: built, or not usable until it is built
/// again.
pub(crate) struct KeyFilter {
    built: Option<Built>,
    /// When it was last built.
    at: Option<Instant>,
    /// Times it was built (for tests and logs).
    builds: u64,
    /// [`REBUILD_EVERY`], and [`MIN_CAPACITY`] (tests make them small).
    every: Duration,
    min_capacity: u64,
}

impl Default for KeyFilter {
    fn default() -> Self {
        KeyFilter {
            built: None,
            at: None,
            builds: 0,
            every: REBUILD_EVERY,
            min_capacity: MIN_CAPACITY,
        }
    }
}

impl KeyFilter {
    /// A filter built again as often as `every` allows, sized for at least
    /// `min_capacity` keys.
    #[cfg(test)]
    pub(crate) fn with(every: Duration, min_capacity: u64) -> KeyFilter {
        KeyFilter {
            every,
            min_capacity,
            ..KeyFilter::default()
        }
    }

    /// Brings the filter up to the open read transaction's snapshot:
    /// adds the pending rows `pending` read since the filter last did
    /// (call [`PendingKeys::refresh`] first, in the same transaction), or
    /// builds it again when it cannot know every key. `first` is the
    /// lowest `match_keys_new` id the refresh found (`None`: none left).
    pub(crate) fn catch_up(
        &mut self,
        conn: &Connection,
        pending: &PendingKeys,
        first: Option<i64>,
    ) -> Result<(), StoreError> {
        let Some(direct) = direct_writes(conn)? else {
            // The count is gone (removed by hand): direct writes cannot be
            // known, so the filter is not used.
            self.built = None;
            return Ok(());
        };
        if let Some(b) = &mut self.built
            && b.direct == direct
            && !gap(conn, b.seen, first)?
        {
            for k in pending.keys_after(b.seen) {
                b.insert(k);
            }
            b.seen = b.seen.max(pending.seen());
            return Ok(());
        }
        self.built = None;
        // Stale again soon after a build: not used for a while.
        if self.at.is_some_and(|at| at.elapsed() < self.every) {
            return Ok(());
        }
        self.build(conn, pending, direct)
    }

    /// Builds the filter from `match_keys` and the pending rows, in the
    /// open read transaction.
    fn build(
        &mut self,
        conn: &Connection,
        pending: &PendingKeys,
        direct: i64,
    ) -> Result<(), StoreError> {
        self.at = Some(Instant::now());
        let entries: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM match_keys) + (SELECT COUNT(*) FROM match_keys_mid)",
                [],
                |r| r.get(0),
            )
            .map_err(sql("count match keys"))?;
        let held = entries.max(0) as u64 + pending.key_count() as u64;
        let mut first = Layer::new((held * 2).max(self.min_capacity));
        // Both tiers of the index, each in key order: a key's entries are
        // together (a key in both is counted twice: a little more room).
        for table in [
            "SELECT key FROM match_keys",
            "SELECT key FROM match_keys_mid",
        ] {
            let mut stmt = conn.prepare(table).map_err(sql("read match keys"))?;
            let mut rows = stmt.query([]).map_err(sql("read match keys"))?;
            let mut last = None;
            while let Some(r) = rows.next().map_err(sql("read match keys"))? {
                let key: i64 = r.get(0).map_err(sql("read match keys"))?;
                if last != Some(key) {
                    first.bloom.insert(&key);
                    first.keys += 1;
                    last = Some(key);
                }
            }
        }
        let mut built = Built {
            layers: vec![first],
            direct,
            seen: pending.seen(),
            min_capacity: self.min_capacity,
        };
        for k in pending.keys_after(0) {
            built.insert(k);
        }
        self.built = Some(built);
        self.builds += 1;
        Ok(())
    }

    /// Whether `key` may be in `match_keys`: false only for a key that
    /// certainly is not. True whenever the filter is not usable.
    pub(crate) fn may_hold(&self, key: i64) -> bool {
        self.built.as_ref().is_none_or(|b| b.contains(key))
    }

    /// Whether the filter is usable now (for tests and logs).
    pub(crate) fn usable(&self) -> bool {
        self.built.is_some()
    }

    /// Times it was built (for tests and logs).
    pub(crate) fn builds(&self) -> u64 {
        self.builds
    }

    /// Layers it has grown to (0 when not usable).
    pub(crate) fn layers(&self) -> usize {
        self.built.as_ref().map_or(0, |b| b.layers.len())
    }

    /// Forgets what it holds: it is built again at the next lookup, or
    /// once [`REBUILD_EVERY`] has passed since the last build.
    pub(crate) fn forget(&mut self) {
        self.built = None;
    }
}

/// `match_keys_writes.direct`: transactions that wrote `match_keys`
/// directly (`None` if its row is missing).
fn direct_writes(conn: &Connection) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT direct FROM match_keys_writes WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(sql("read match key writes"))
}

/// Whether pending rows after `seen` were deleted — folded into
/// `match_keys` — before the filter read them. `first` is the lowest id
/// left.
fn gap(conn: &Connection, seen: i64, first: Option<i64>) -> Result<bool, StoreError> {
    Ok(match first {
        Some(first) => first > seen + 1,
        // None left: was any row written after `seen`?
        None => {
            let last: Option<i64> = conn
                .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'match_keys_new'")
                .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
                .map_err(sql("read pending match keys"))?;
            last.unwrap_or(0) > seen
        }
    })
}
