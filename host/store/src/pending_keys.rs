//! The match-key index's newest entries, for a writer that defers them
//! ([`crate::SqliteStore::defer_match_keys`]: the service's recording thread).
//!
//! `match_keys` is keyed by hashed blocking keys, so every key a new lead
//! brings lands on a random leaf page: a small transaction wrote about one
//! page per key (half of the service's write-ahead log). A deferring
//! writer instead appends one `match_keys_new` row per lead — its keys
//! packed in a blob, a few dozen leads per page — and folds those rows
//! into `match_keys` one slice of the key range at a time, a few slices
//! per transaction: each slice's leaf pages are then written once for the
//! keys of thousands of leads. Once every slice has been folded since a
//! row was read, the row is deleted. A writer's first transaction (and
//! its first after a rollback) folds every row left at once, since it
//! cannot know what the writer before folded: however often a writer
//! starts again, the rows do not pile up.
//!
//! Folded keys go to `match_keys_mid` first, a small index of the newest
//! folded keys, and from there to `match_keys` one slice at a time once
//! per [`MID_ROUNDS`] rounds. Once an index has fewer pages than a round
//! brings keys, a round writes nearly every leaf page of the index it
//! folds into: folded straight into `match_keys`, that cost grew with the
//! store (a page per key entry ≈ 200 entries, so about one page a lead
//! written per 3,000 leads stored, and copied again by the checkpoints).
//! The middle index stays small (about [`MID_ROUNDS`] rounds of keys), and
//! `match_keys` is written [`MID_ROUNDS`] times less often. Where the
//! moving got to is kept in `match_keys_mid_moved`, so a writer that
//! starts again carries on. Rows folded again (after a rollback, or by a
//! writer started again before they were deleted) can put an entry in
//! both tiers until its slice moves on: lookups take each lead once.
//! Lookups, the key filter and `rekey` read both tiers.
//!
//! Every connection keeps the rows in memory ([`PendingKeys`]), read
//! incrementally — new rows by id, deleted ones by the lowest id left
//! (ids only grow: `AUTOINCREMENT`, and rows are deleted oldest first) —
//! and candidate lookups read them beside both indexes, so a lead is found
//! by its keys from the moment it is recorded.

use crate::{StoreError, sql};
use rusqlite::{Connection, params};
use std::collections::{HashMap, VecDeque};

/// Slices of the key range: a transaction folds at least one.
const SLICES: u64 = 1024;
/// Bits of a key (as an unsigned, order-preserving number) below its slice.
const SLICE_SHIFT: u32 = 54;

/// A deferring writer folds every slice once per this many leads recorded
/// (by default): the rows it keeps pending — and every connection holds in
/// memory, ≈ 5 MiB at 8 keys a lead — are about this many. The larger,
/// the fewer times each leaf page of `match_keys_mid` is written: at
/// 16,384 leads a round writes each of its pages once for its share of ≈
/// 130,000 new keys.
pub const DEFAULT_CYCLE_LEADS: usize = 16_384;

/// Adds one (key, lead rowid) entry to `match_keys`: how a batch run
/// writes its keys.
pub(crate) const INSERT_KEY: &str = "INSERT OR IGNORE INTO match_keys (key, lead) VALUES (?1, ?2)";

/// Adds one (key, lead rowid) entry to `match_keys_mid`: how a deferring
/// writer folds its pending rows.
const INSERT_MID: &str = "INSERT OR IGNORE INTO match_keys_mid (key, lead) VALUES (?1, ?2)";

/// A deferring writer moves each slice of `match_keys_mid` into
/// `match_keys` once per this many rounds of pending rows folded: the
/// middle index holds about this many rounds' keys (≈ 130,000 leads at
/// the service's round), and `match_keys` is written this many times less
/// often than if rounds were folded into it directly.
pub const MID_ROUNDS: u64 = 8;

/// Which index [`insert_in_key_order`] adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Index {
    /// `match_keys`.
    Main,
    /// `match_keys_mid`.
    Mid,
}

/// A map keyed by match-key hashes. They are FNV hashes of what clients
/// send, so a fixed hash of them would let a client make them collide:
/// `foldhash`, seeded at random per process. A key comes and goes once per
/// lead and is looked up for every lead; with the standard library's
/// SipHash its upkeep here took twice the time.
pub type KeyMap<V> = HashMap<i64, V, foldhash::fast::RandomState>;

/// One `match_keys_new` row.
struct Row {
    id: i64,
    lead: i64,
    keys: Vec<i64>,
}

/// The `match_keys_new` rows as this connection last read them, and —
/// for a deferring writer — how far each slice has been folded.
#[derive(Default)]
pub(crate) struct PendingKeys {
    /// The highest row id read.
    seen: i64,
    /// Oldest first (by id).
    rows: VecDeque<Row>,
    /// Per key, (row id, lead rowid) of the pending rows with it, oldest
    /// first. Hashed, not ordered: lookups and the rows coming and going
    /// are most of its use — on the front, every lead's every key — and
    /// an ordered set's cost more there. Folding, which
    /// wants a slice's keys, keeps lists of its own (`unfolded`).
    /// Oldest first, so the rows leaving (always the oldest) leave from the
    /// front: a common key's list is not shifted for every row dropped.
    by_key: KeyMap<VecDeque<(i64, i64)>>,
    /// Whether `by_key` is kept. Only a connection that looks candidates
    /// up needs it ([`PendingKeys::index`]): the service's writer, which
    /// only folds, would keep it for nothing.
    indexed: bool,
    /// Per slice, the rows folded into `match_keys_mid`: those up to this id
    /// (empty until the writer folds).
    folded: Vec<i64>,
    /// A deferring writer's: per slice, the (key, lead rowid) entries not
    /// folded yet — a fold takes its slice's whole list (empty until the
    /// writer folds).
    unfolded: Vec<Vec<(i64, i64)>>,
    /// The slice to fold next.
    next: u64,
    /// Slices of `match_keys_mid` moved into `match_keys` in all (the
    /// next to move is this modulo [`SLICES`]; kept in
    /// `match_keys_mid_moved`); `None` until this connection first folds.
    mid_moved: Option<u64>,
}

/// The key as an unsigned number in the same order as SQLite sorts it.
fn unsigned(key: i64) -> u64 {
    (key as u64) ^ (1 << 63)
}

fn signed(u: u64) -> i64 {
    (u ^ (1 << 63)) as i64
}

/// The slice `key` is in.
fn slice_of(key: i64) -> u64 {
    unsigned(key) >> SLICE_SHIFT
}

/// Slice `s`'s keys: the first and the last.
fn slice(s: u64) -> (i64, i64) {
    let lo = s << SLICE_SHIFT;
    (signed(lo), signed(lo | ((1 << SLICE_SHIFT) - 1)))
}

/// The keys packed for `match_keys_new.keys`: 8 bytes each, little-endian.
pub(crate) fn pack(keys: &[i64]) -> Vec<u8> {
    keys.iter().flat_map(|k| k.to_le_bytes()).collect()
}

pub(crate) fn unpack(id: i64, blob: &[u8]) -> Result<Vec<i64>, StoreError> {
    if !blob.len().is_multiple_of(8) {
        return Err(StoreError::Sql {
            op: "read pending match keys",
            source: rusqlite::Error::InvalidColumnType(
                2,
                format!(
                    "match_keys_new row {id}: keys of {} bytes, not a multiple of 8",
                    blob.len()
                ),
                rusqlite::types::Type::Blob,
            ),
        });
    }
    Ok(blob
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            i64::from_le_bytes(b)
        })
        .collect())
}

/// Adds `(key, lead)` entries to `index`, in key order so that the
/// index's leaf pages are visited in turn; returns how many were new.
pub(crate) fn insert_in_key_order(
    conn: &Connection,
    index: Index,
    mut entries: Vec<(i64, i64)>,
) -> Result<u64, StoreError> {
    entries.sort_unstable();
    entries.dedup();
    let mut insert = conn
        .prepare_cached(match index {
            Index::Main => INSERT_KEY,
            Index::Mid => INSERT_MID,
        })
        .map_err(sql("prepare key insert"))?;
    let mut added = 0;
    for (key, lead) in entries {
        added += insert
            .execute(params![key, lead])
            .map_err(sql("insert match keys"))? as u64;
    }
    Ok(added)
}

/// Slices of `match_keys_mid` due to have moved into `match_keys` once
/// `rows` rows have been deferred: all of them once per [`MID_ROUNDS`]
/// rounds of `cycle_leads`.
fn mid_slices_due(rows: i64, cycle_leads: usize) -> u64 {
    let per_round = cycle_leads.max(1) as u128 * u128::from(MID_ROUNDS);
    (rows.max(0) as u128 * u128::from(SLICES) / per_round) as u64
}

/// Moves slice `s` of `match_keys_mid` into `match_keys`, in key order.
fn move_mid_slice(conn: &Connection, s: u64) -> Result<(), StoreError> {
    let (lo, hi) = slice(s);
    conn.prepare_cached(
        "INSERT OR IGNORE INTO match_keys (key, lead)
         SELECT key, lead FROM match_keys_mid WHERE key BETWEEN ?1 AND ?2 ORDER BY key, lead",
    )
    .and_then(|mut st| st.execute(params![lo, hi]))
    .map_err(sql("move match keys"))?;
    conn.prepare_cached("DELETE FROM match_keys_mid WHERE key BETWEEN ?1 AND ?2")
        .and_then(|mut st| st.execute(params![lo, hi]))
        .map_err(sql("move match keys"))?;
    Ok(())
}

/// Adds `row` under each of its keys, as the newest row with it.
fn index_row(by_key: &mut KeyMap<VecDeque<(i64, i64)>>, row: &Row) {
    for k in &row.keys {
        by_key.entry(*k).or_default().push_back((row.id, row.lead));
    }
}

impl PendingKeys {
    /// Catches up with the table: drops the rows deleted since the last
    /// read and reads the new ones. Inside a write transaction, call it
    /// before writing: only committed rows may be kept. Returns the lowest
    /// row id left in the table (`None`: it is empty).
    pub(crate) fn refresh(&mut self, conn: &Connection) -> Result<Option<i64>, StoreError> {
        let first: Option<i64> = conn
            .prepare_cached("SELECT MIN(id) FROM match_keys_new")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(sql("read pending match keys"))?;
        // Every row up to `seen` is gone when the table is empty.
        self.drop_below(first.unwrap_or(self.seen + 1));
        let mut stmt = conn
            .prepare_cached("SELECT id, lead, keys FROM match_keys_new WHERE id > ?1 ORDER BY id")
            .map_err(sql("read pending match keys"))?;
        let mut rows = stmt
            .query([self.seen])
            .map_err(sql("read pending match keys"))?;
        while let Some(r) = rows.next().map_err(sql("read pending match keys"))? {
            let id: i64 = r.get(0).map_err(sql("read pending match keys"))?;
            let lead: i64 = r.get(1).map_err(sql("read pending match keys"))?;
            let blob: Vec<u8> = r.get(2).map_err(sql("read pending match keys"))?;
            self.hold(id, lead, unpack(id, &blob)?);
        }
        Ok(first.or(self.rows.front().map(|r| r.id)))
    }

    /// Holds row `id` (the newest yet) of lead `lead` with `keys`.
    fn hold(&mut self, id: i64, lead: i64, keys: Vec<i64>) {
        for k in &keys {
            if let Some(list) = self.unfolded.get_mut(slice_of(*k) as usize) {
                list.push((*k, lead));
            }
        }
        let row = Row { id, lead, keys };
        if self.indexed {
            index_row(&mut self.by_key, &row);
        }
        self.rows.push_back(row);
        self.seen = id;
    }

    /// The highest row id read.
    pub(crate) fn seen(&self) -> i64 {
        self.seen
    }

    /// The keys of the rows held with ids above `id`.
    pub(crate) fn keys_after(&self, id: i64) -> impl Iterator<Item = i64> + '_ {
        let start = self.rows.partition_point(|r| r.id <= id);
        self.rows
            .range(start..)
            .flat_map(|r| r.keys.iter().copied())
    }

    /// Keys of the rows held, counted once per row.
    pub(crate) fn key_count(&self) -> usize {
        self.rows.iter().map(|r| r.keys.len()).sum()
    }

    /// Forgets the rows with ids below `first`.
    fn drop_below(&mut self, first: i64) {
        while self.rows.front().is_some_and(|r| r.id < first) {
            let Some(row) = self.rows.pop_front() else {
                break;
            };
            if !self.indexed {
                continue;
            }
            for k in row.keys {
                if let Some(entries) = self.by_key.get_mut(&k) {
                    // The oldest of the key's entries: at the front.
                    if entries.front().is_some_and(|(id, _)| *id == row.id) {
                        entries.pop_front();
                    } else if let Some(i) = entries.iter().position(|(id, _)| *id == row.id) {
                        entries.remove(i);
                    }
                    if entries.is_empty() {
                        self.by_key.remove(&k);
                    }
                }
            }
        }
    }

    /// Keeps the rows held indexed by key from now on, for
    /// [`PendingKeys::newest`]: a connection that looks candidates up
    /// calls it once it has caught up.
    pub(crate) fn index(&mut self) {
        if self.indexed {
            return;
        }
        for row in &self.rows {
            index_row(&mut self.by_key, row);
        }
        self.indexed = true;
    }

    /// The newest `n` pending leads (rowids, newest first) with `key`
    /// (looked for row by row when the rows are not indexed).
    pub(crate) fn newest(&self, key: i64, n: usize) -> Vec<i64> {
        let mut leads: Vec<i64> = if self.indexed {
            self.by_key
                .get(&key)
                .map(|entries| entries.iter().map(|(_, lead)| *lead).collect())
                .unwrap_or_default()
        } else {
            self.rows
                .iter()
                .filter(|r| r.keys.contains(&key))
                .map(|r| r.lead)
                .collect()
        };
        leads.sort_unstable_by(|a, b| b.cmp(a));
        leads.dedup();
        leads.truncate(n);
        leads
    }

    /// Pending rows held (for tests and logs).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Folds the next slices into `match_keys_mid` — as many as `leads`
    /// new leads are of a round of `cycle_leads` — each with the rows read
    /// since it was last folded, moves a [`MID_ROUNDS`]th as many slices of
    /// `match_keys_mid` into `match_keys`, and deletes the rows every slice
    /// has folded. Call it in the write transaction, after
    /// [`PendingKeys::refresh`] and before this transaction's own rows are
    /// added. If the transaction is rolled back, the connection must
    /// forget this state (`PendingKeys::default()`): every pending row is
    /// then folded again, and nothing is lost.
    ///
    /// Returns how many pending rows were folded at once: every row held
    /// on this connection's first fold (see below), none after.
    pub(crate) fn fold(
        &mut self,
        conn: &Connection,
        leads: usize,
        cycle_leads: usize,
    ) -> Result<usize, StoreError> {
        let mut at_once = 0;
        if self.folded.is_empty() {
            at_once = self.rows.len();
            // A writer that starts (or starts over, after a rollback)
            // knows nothing of what the one before folded: it folds every
            // row left, all slices at once, so the rows can go now. Left
            // to the round, a writer started again more often than once a
            // round (a quiet tenant's service, restarted daily) would
            // fold them again and again and never delete one: the table,
            // and every connection's copy of it, would only grow. At most
            // about a round's keys (the rows a writer leaves), once.
            let entries: Vec<(i64, i64)> = self
                .rows
                .iter()
                .flat_map(|row| row.keys.iter().map(move |k| (*k, row.lead)))
                .collect();
            insert_in_key_order(conn, Index::Mid, entries)?;
            self.folded = vec![self.seen; SLICES as usize];
            self.unfolded = vec![Vec::new(); SLICES as usize];
            // Carry on where the writer before was (the rows' ids only
            // grow): the slices fold in the same turn however often a
            // writer starts.
            let rounds = self.seen.max(0) as u128 * u128::from(SLICES);
            self.next = (rounds / cycle_leads.max(1) as u128 % u128::from(SLICES)) as u64;
        }
        let n = (SLICES * leads.max(1) as u64)
            .div_ceil(cycle_leads.max(1) as u64)
            .min(SLICES);
        for _ in 0..n {
            let s = self.next as usize;
            self.next = (self.next + 1) % SLICES;
            insert_in_key_order(conn, Index::Mid, std::mem::take(&mut self.unfolded[s]))?;
            self.folded[s] = self.seen;
        }
        // The middle index moves on at a [`MID_ROUNDS`]th of that pace,
        // paced by the rows ever deferred (their ids only grow), from
        // where the last writer left it: however often a writer starts
        // again, every slice moves on once per round of the middle index.
        let due = mid_slices_due(self.seen, cycle_leads);
        let mut moved = match self.mid_moved {
            Some(m) => m,
            None => conn
                .query_row(
                    "SELECT slices FROM match_keys_mid_moved WHERE id = 1",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(sql("read the middle match-key index's place"))?
                .max(0) as u64,
        };
        // Never more than a whole round in one transaction.
        moved = moved.max(due.saturating_sub(SLICES));
        if moved < due {
            while moved < due {
                move_mid_slice(conn, moved % SLICES)?;
                moved += 1;
            }
            conn.prepare_cached("UPDATE match_keys_mid_moved SET slices = ?1 WHERE id = 1")
                .and_then(|mut st| st.execute([moved as i64]))
                .map_err(sql("keep the middle match-key index's place"))?;
        }
        self.mid_moved = Some(moved);
        // Rows every slice has folded are in the index now.
        let done = self.folded.iter().copied().min().unwrap_or(0);
        if self.rows.front().is_some_and(|r| r.id <= done) {
            conn.prepare_cached("DELETE FROM match_keys_new WHERE id <= ?1")
                .and_then(|mut s| s.execute([done]))
                .map_err(sql("delete folded match keys"))?;
            self.drop_below(done + 1);
        }
        Ok(at_once)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_key_range_in_sqlite_order() {
        assert_eq!(signed(0), i64::MIN);
        assert_eq!(signed(u64::MAX), i64::MAX);
        assert!(unsigned(-1) < unsigned(0));
        assert!(unsigned(i64::MIN) < unsigned(-1));
        // Consecutive slices meet without a gap, from the least key to
        // the greatest.
        assert_eq!(slice(0).0, i64::MIN);
        assert_eq!(slice(SLICES - 1).1, i64::MAX);
        for s in 0..SLICES - 1 {
            assert!(slice(s).0 < slice(s).1);
            assert_eq!(unsigned(slice(s).1) + 1, unsigned(slice(s + 1).0));
            assert_eq!((slice_of(slice(s).0), slice_of(slice(s).1)), (s, s));
        }
        assert_eq!(unsigned(-1) >> SLICE_SHIFT, SLICES / 2 - 1);
    }

    #[test]
    fn dropped_rows_leave_every_key_they_held_and_nothing_else() {
        let mut p = PendingKeys::default();
        p.index();
        // A common key on every row; row 3 carries key 7 twice (two of
        // its blocking keys hashed alike).
        for id in 1..=1000 {
            let keys: Vec<i64> = if id == 3 {
                vec![42, 7, 7]
            } else {
                vec![42, id * 100]
            };
            p.hold(id, id + 10, keys);
        }
        assert_eq!(p.newest(42, 3), vec![1010, 1009, 1008]);
        assert_eq!(p.newest(7, 5), vec![13]);
        p.drop_below(501);
        assert_eq!(p.len(), 500);
        assert_eq!(p.by_key[&42].len(), 500);
        assert_eq!(p.by_key[&42].front(), Some(&(501, 511)));
        assert!(!p.by_key.contains_key(&7), "both entries of row 3 dropped");
        assert!(!p.by_key.contains_key(&100));
        assert_eq!(p.newest(500 * 100, 1), Vec::<i64>::new());
        assert_eq!(p.newest(501 * 100, 1), vec![511]);
        assert_eq!(p.newest(42, 2), vec![1010, 1009]);
        p.drop_below(1001);
        assert!(p.by_key.is_empty() && p.len() == 0);
    }

    #[test]
    fn rows_not_indexed_answer_alike_and_are_indexed_when_asked() {
        let rows = |p: &mut PendingKeys| {
            for id in 1..=300 {
                p.hold(id, id + 10, vec![42, id % 7, id * 100]);
            }
        };
        let mut plain = PendingKeys::default();
        rows(&mut plain);
        let mut indexed = PendingKeys::default();
        indexed.index();
        rows(&mut indexed);
        assert!(
            plain.by_key.is_empty(),
            "a writer that only folds keeps no index"
        );
        let ask = |p: &PendingKeys| {
            [42, 0, 3, 6, 100, 29_900, 30_000, 12_345]
                .map(|k| p.newest(k, 5))
                .to_vec()
        };
        assert_eq!(ask(&plain), ask(&indexed));
        plain.drop_below(101);
        indexed.drop_below(101);
        assert!(plain.by_key.is_empty());
        assert_eq!(ask(&plain), ask(&indexed));
        // Indexed once asked, then kept up as rows come and go.
        plain.index();
        assert_eq!(plain.by_key.len(), indexed.by_key.len());
        plain.hold(301, 311, vec![42, 77]);
        indexed.hold(301, 311, vec![42, 77]);
        plain.drop_below(201);
        indexed.drop_below(201);
        assert_eq!(plain.by_key, indexed.by_key);
        assert_eq!(ask(&plain), ask(&indexed));
        assert_eq!(plain.newest(77, 3), vec![311]);
    }

    #[test]
    fn keys_pack_and_unpack() {
        let keys = [i64::MIN, -1, 0, 42, i64::MAX];
        assert_eq!(unpack(1, &pack(&keys)).unwrap(), keys);
        let err = unpack(7, &[1, 2, 3]).unwrap_err().to_string();
        assert!(err.contains("row 7") && err.contains("3 bytes"), "{err}");
    }
}
