//! The store's side of dedupe: the blocking-key index, candidate fetch,
//! reversible merges and links, golden records, and the match review queue
//! with reviewers' decisions.
//!
//! Nothing here deletes or rewrites a lead: a merge is a row in `merges`
//! plus `leads.master_id`; an unmerge stamps the row `undone_at` and clears
//! the pointer, so the source records come back exactly as they were.

use crate::key_filter::KeyFilter;
use crate::pending_keys::PendingKeys;
use crate::{SqliteStore, StoreError, sql};
use leadgate_lead::Lead;
use rusqlite::{Connection, OptionalExtension, params};

/// The index key of a blocking key for a tenant: 64-bit FNV-1a over the
/// tenant and the key, so the index stays small and tenants never share a
/// key. A collision only adds a candidate, which comparison then rejects.
pub fn key_hash(tenant: &str, key: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in tenant.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h as i64
}

/// Whether a duplicate was merged into its master's golden record or only
/// linked to it (auto-merge off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Merge,
    Link,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Merge => "merge",
            LinkKind::Link => "link",
        }
    }
}

/// A lead found to be a duplicate of `master`.
#[derive(Debug, Clone)]
pub struct Link<'a> {
    pub master: &'a str,
    pub kind: LinkKind,
    pub probability: f64,
    /// The evidence as JSON.
    pub evidence: &'a str,
    /// `auto`, `dedupe` (batch clean-up) or `reviewer:NAME`.
    pub decided_by: &'a str,
}

/// A lead that may be a duplicate of `other`: a review item.
#[derive(Debug, Clone)]
pub struct Review<'a> {
    pub other: &'a str,
    pub probability: f64,
    pub evidence: &'a str,
    /// `uncertain` (between the thresholds) or `consent_conflict`.
    pub reason: &'a str,
}

/// A stored lead that shares a blocking key with the one being matched.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    /// The normalized lead.
    pub lead: Lead,
    /// The lead it was merged into or linked to, if any.
    pub master: Option<String>,
}

/// A lead that belongs to a golden record.
#[derive(Debug, Clone)]
pub struct GoldenMember {
    pub id: String,
    pub lead: Lead,
}

/// One row of `merges`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MergeRow {
    pub id: i64,
    pub master_id: String,
    pub lead_id: String,
    pub kind: String,
    pub probability: Option<f64>,
    pub decided_by: String,
    pub created_at: i64,
    pub undone_at: Option<i64>,
}

/// One match review item.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReviewItem {
    pub id: i64,
    pub lead_a: String,
    pub lead_b: String,
    pub probability: f64,
    /// Evidence as stored (JSON).
    pub evidence: String,
    pub reason: String,
    pub created_at: i64,
    pub decision: Option<String>,
    pub reviewer: Option<String>,
    pub note: Option<String>,
}

/// A lead row as stored, JSON untouched (for `leadgate show` and for
/// checking that an unmerge restored it byte for byte).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeadRow {
    pub id: String,
    pub tenant: String,
    pub status: String,
    pub raw: String,
    pub normalized: Option<String>,
    pub master_id: Option<String>,
}

pub(crate) fn insert_link(
    tx: &Connection,
    tenant: &str,
    lead_id: &str,
    link: &Link<'_>,
    run_id: Option<i64>,
    now: i64,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO merges (tenant, master_id, lead_id, kind, probability, evidence, decided_by, run_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant,
            link.master,
            lead_id,
            link.kind.as_str(),
            link.probability,
            link.evidence,
            link.decided_by,
            run_id,
            now
        ])
    })
    .map_err(sql("insert merge"))?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached(
        "UPDATE leads SET master_id = ?2, status = 'duplicate', updated_at = ?3 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![lead_id, link.master, now]))
    .map_err(sql("link lead"))?;
    Ok(id)
}

pub(crate) fn insert_review(
    tx: &Connection,
    tenant: &str,
    lead_id: &str,
    review: &Review<'_>,
    run_id: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO match_reviews (tenant, lead_a, lead_b, probability, evidence, reason, run_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant,
            review.other,
            lead_id,
            review.probability,
            review.evidence,
            review.reason,
            run_id,
            now
        ])
    })
    .map_err(sql("insert match review"))?;
    if tx.changes() == 1 {
        let id = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT OR IGNORE INTO review_queue (tenant, lead_id, kind, match_review, reason, source, confidence, created_at)
             SELECT ?1, ?2, 'match', ?3, ?4, coalesce((SELECT source FROM leads WHERE id = ?2), 'other'), ?5, ?6",
        )
        .and_then(|mut s| {
            s.execute(params![
                tenant,
                lead_id,
                id,
                review.reason,
                review.probability,
                now
            ])
        })
        .map_err(sql("queue match for review"))?;
    }
    Ok(())
}

pub(crate) fn parse_lead(json: &str) -> Result<Lead, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Json {
        what: "stored lead",
        source,
    })
}

/// The matching index: each lead's blocking keys and the candidates that
/// share them, and the links that make leads one person.
pub trait MatchIndex {
    /// Stored leads of `tenant` sharing any of `keys`: at most `per_key` per
    /// key (the most recent), at most `limit` in all. Leads without a
    /// normalized form (exceptions) are skipped.
    fn candidates(
        &self,
        tenant: &str,
        keys: &[i64],
        per_key: usize,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError>;

    /// [`SqliteStore::candidates`] for several leads at once, in one read
    /// transaction (one lock, one snapshot, instead of one per query).
    fn candidates_for_each(
        &self,
        tenant: &str,
        keys: &[Vec<i64>],
        per_key: usize,
        limit: usize,
    ) -> Result<Vec<Vec<Candidate>>, StoreError>;

    /// The lead `id` resolves to: its master if it has one, else itself.
    fn master_of(&self, id: &str) -> Result<String, StoreError>;

    /// Merges (or links) `lead` into `master` outside a run: a reviewer's
    /// decision or a batch clean-up plan. Returns the merge id.
    fn link(
        &mut self,
        tenant: &str,
        lead: &str,
        link: &Link<'_>,
        now: i64,
    ) -> Result<i64, StoreError>;

    /// Queues a pair for review outside a run's batch (batch clean-up).
    fn add_review(
        &mut self,
        tenant: &str,
        lead: &str,
        review: &Review<'_>,
        run_id: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// A lead row exactly as stored.
    fn lead_row(&self, id: &str) -> Result<Option<LeadRow>, StoreError>;
}

impl MatchIndex for SqliteStore {
    fn candidates(
        &self,
        tenant: &str,
        keys: &[i64],
        per_key: usize,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        self.candidates_for_each(tenant, &[keys.to_vec()], per_key, limit)
            .map(|mut all| all.pop().unwrap_or_default())
    }

    fn candidates_for_each(
        &self,
        tenant: &str,
        keys: &[Vec<i64>],
        per_key: usize,
        limit: usize,
    ) -> Result<Vec<Vec<Candidate>>, StoreError> {
        let tx = self.read_snapshot()?;
        self.catch_up_keys()?;
        let pending = self.pending.borrow();
        let filter = self.filter.borrow();
        let found = keys
            .iter()
            .map(|k| self.candidates_in(&pending, filter.as_ref(), tenant, k, per_key, limit))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(tx) = tx {
            tx.finish().map_err(sql("end read transaction"))?;
        }
        Ok(found)
    }

    fn master_of(&self, id: &str) -> Result<String, StoreError> {
        let master: Option<Option<String>> = self
            .conn
            .query_row("SELECT master_id FROM leads WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("read master"))?;
        Ok(master.flatten().unwrap_or_else(|| id.to_string()))
    }

    fn link(
        &mut self,
        tenant: &str,
        lead: &str,
        link: &Link<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let tx = self.tx()?;
        let id = insert_link(&tx, tenant, lead, link, None, now)?;
        tx.execute(
            "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
             VALUES (?1, NULL, 'dedupe', ?2, 'duplicate', NULL, ?3)",
            params![lead, link.decided_by, now],
        )
        .map_err(sql("record merge decision"))?;
        tx.commit().map_err(sql("commit merge"))?;
        Ok(id)
    }

    fn add_review(
        &mut self,
        tenant: &str,
        lead: &str,
        review: &Review<'_>,
        run_id: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        insert_review(&tx, tenant, lead, review, run_id, now)?;
        tx.commit().map_err(sql("commit review"))
    }

    fn lead_row(&self, id: &str) -> Result<Option<LeadRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id, tenant, status, raw, normalized, master_id FROM leads WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([id], |r| {
                    Ok(LeadRow {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        status: r.get(2)?,
                        raw: r.get(3)?,
                        normalized: r.get(4)?,
                        master_id: r.get(5)?,
                    })
                })
                .optional()
            })
            .map_err(sql("read lead"))
    }
}

impl SqliteStore {
    /// [`SqliteStore::candidates`] in the open read transaction, with the keys
    /// not yet folded into `match_keys` from `pending`; `filter` (caught
    /// up in the same transaction) skips the index for keys it does not
    /// hold.
    fn candidates_in(
        &self,
        pending: &PendingKeys,
        filter: Option<&KeyFilter>,
        tenant: &str,
        keys: &[i64],
        per_key: usize,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        // The newest leads with a key in one tier of the index (the text
        // made at compile time: this runs for every lead the front keys).
        macro_rules! by_key_in {
            ($table:literal) => {
                self.conn
                    .prepare_cached(concat!(
                        "SELECT k.lead, l.id, l.normalized, l.master_id FROM ",
                        $table,
                        " k JOIN leads l ON l.rowid = k.lead
                         WHERE k.key = ?1 AND l.tenant = ?2 AND l.normalized IS NOT NULL
                         ORDER BY k.lead DESC LIMIT ?3"
                    ))
                    .map_err(sql("prepare candidate lookup"))?
            };
        }
        let mut by_key = by_key_in!("match_keys");
        let mut by_mid = by_key_in!("match_keys_mid");
        let mut by_row = self
            .conn
            .prepare_cached(
                "SELECT rowid, id, normalized, master_id FROM leads
                 WHERE rowid = ?1 AND tenant = ?2 AND normalized IS NOT NULL",
            )
            .map_err(sql("prepare candidate lookup"))?;
        let row =
            |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, String, String, Option<String>)> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            };
        let mut out: Vec<Candidate> = Vec::new();
        for k in keys {
            // The newest leads with the key: pending ones (the newest of
            // all) and folded ones, by rowid, each once.
            let mut found = Vec::new();
            for lead in pending.newest(*k, per_key) {
                if let Some(r) = by_row
                    .query_row(params![lead, tenant], row)
                    .optional()
                    .map_err(sql("look up candidates"))?
                {
                    found.push(r);
                }
            }
            if filter.is_none_or(|f| f.may_hold(*k)) {
                // Both tiers of the index: the newest folded keys, then
                // the rest.
                for stmt in [&mut by_mid, &mut by_key] {
                    let mut rows = stmt
                        .query(params![k, tenant, per_key as i64])
                        .map_err(sql("look up candidates"))?;
                    while let Some(r) = rows.next().map_err(sql("look up candidates"))? {
                        found.push(row(r).map_err(sql("read candidate"))?);
                    }
                }
            }
            found.sort_by_key(|r| std::cmp::Reverse(r.0));
            found.dedup_by_key(|r| r.0);
            found.truncate(per_key);
            for (_, id, normalized, master) in found {
                if out.len() >= limit {
                    return Ok(out);
                }
                if out.iter().any(|c| c.id == id) {
                    continue;
                }
                out.push(Candidate {
                    id,
                    lead: parse_lead(&normalized)?,
                    master,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::test_support::{TempStore, plain_record};
    use crate::{Record, Status};

    fn lead(id: &str, email: &str) -> Lead {
        Lead {
            id: id.into(),
            tenant: "t".into(),
            email: Some(email.into()),
            ..Lead::default()
        }
    }

    fn record<'a>(l: &'a Lead, keys: &'a [i64], normalized: &'a str) -> Record<'a> {
        plain_record(l, Status::Accepted, Some(normalized), keys)
    }

    /// Lead `i`'s keys: spread over the whole key range, the extremes
    /// included.
    fn keys_of(i: usize) -> Vec<i64> {
        let mut k = vec![
            key_hash("t", &format!("e:{i}")),
            key_hash("t", &format!("p:{i}")),
        ];
        match i {
            0 => k.push(i64::MIN),
            1 => k.push(i64::MAX),
            _ => {}
        }
        k
    }

    /// Records one lead with its keys, in its own transaction.
    fn put(s: &mut SqliteStore, run: i64, l: &Lead, keys: &[i64], json: &str) {
        s.record(run, "validate", "sha", &[record(l, keys, json)], 1)
            .unwrap();
    }

    /// [`numbered`] leads as JSON, for [`record`].
    fn as_json(leads: &[Lead]) -> Vec<String> {
        leads
            .iter()
            .map(|l| serde_json::to_string(l).unwrap())
            .collect()
    }

    /// Leads `l0`…, each with its own email, and their keys.
    fn numbered(n: usize) -> (Vec<Lead>, Vec<Vec<i64>>) {
        let leads = (0..n)
            .map(|i| lead(&format!("l{i}"), &format!("{i}@x.com")))
            .collect();
        (leads, (0..n).map(keys_of).collect())
    }

    /// Records lead `i` alone (its own transaction), then checks that each
    /// lead up to it is found by each of its keys from each of `others`
    /// and from the writer's own connection.
    fn record_and_find(
        w: &mut SqliteStore,
        others: &[&SqliteStore],
        run: i64,
        (leads, keys): (&[Lead], &[Vec<i64>]),
        i: usize,
    ) {
        let n = serde_json::to_string(&leads[i]).unwrap();
        w.record(
            run,
            "validate",
            "sha",
            &[record(&leads[i], &keys[i], &n)],
            1,
        )
        .unwrap();
        for j in 0..=i {
            for k in &keys[j] {
                for s in others.iter().copied().chain([&*w]) {
                    let found = s.candidates("t", &[*k], 10, 10).unwrap();
                    assert_eq!(found.len(), 1, "lead {j} after {i}");
                    assert_eq!(found[0].id, leads[j].id);
                }
            }
        }
    }

    /// Leads with `key` in either tier of the index, each once (an entry
    /// folded again after a rollback can be in both until its slice of
    /// the middle tier moves on).
    fn indexed(s: &SqliteStore, key: i64) -> Vec<i64> {
        let mut stmt = s
            .conn
            .prepare(
                "SELECT lead FROM (SELECT lead FROM match_keys WHERE key = ?1
                                   UNION SELECT lead FROM match_keys_mid WHERE key = ?1)
                  ORDER BY lead",
            )
            .unwrap();
        stmt.query_map([key], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn deferred_keys_are_found_at_once_and_folded_within_a_cycle() {
        let dir = TempStore::new("deferred-keys");
        let mut w = dir.open();
        w.defer_match_keys(4);
        let r = dir.open();
        let run = w.begin_run("t", "x", "{}", 1).unwrap();
        let (leads, keys) = numbered(40);
        for i in 0..40 {
            // Every lead recorded so far is found by each of its keys, at
            // once, from another connection and from the writer's own.
            record_and_find(&mut w, &[&r], run, (&leads, &keys), i);
            if i == 0 {
                assert_eq!(w.count("match_keys").unwrap(), 0, "nothing folded yet");
                assert_eq!(w.count("match_keys_new").unwrap(), 1);
            }
            // Pending rows are at most two cycles' worth.
            assert!(w.count("match_keys_new").unwrap() <= 8, "after {i}");
        }
        // Leads older than two cycles are in match_keys, every key once.
        for (j, lead_keys) in keys.iter().enumerate().take(32) {
            for k in lead_keys {
                assert_eq!(indexed(&w, *k).len(), 1, "lead {j}");
            }
        }
        assert!(w.pending.borrow().len() <= 8);
    }

    /// Rows of `table` (`match_keys` or `match_keys_mid`) with `key`.
    fn in_table(s: &SqliteStore, table: &str, key: i64) -> i64 {
        s.conn
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE key = ?1"),
                [key],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn folded_keys_pass_through_the_middle_index_into_match_keys() {
        pass_through_the_middle_index(false);
    }

    #[test]
    fn a_writer_that_starts_again_carries_on_moving_the_middle_index() {
        // A new writer for every lead: the middle index is still moved on
        // whole, not only its first slices again and again.
        pass_through_the_middle_index(true);
    }

    #[test]
    fn a_new_writer_folds_the_keys_left_pending_before_its_first_batch() {
        let dir = TempStore::new("deferred-left");
        let mut w = dir.open();
        // A round longer than the run: every row stays pending.
        w.defer_match_keys(1 << 20);
        let r = dir.open();
        let run = w.begin_run("t", "x", "{}", 1).unwrap();
        let (leads, keys) = numbered(30);
        for i in 0..30 {
            record_and_find(&mut w, &[&r], run, (&leads, &keys), i);
        }
        assert_eq!(w.count("match_keys_new").unwrap(), 30);
        drop(w);
        // Without deferring there is nothing to fold.
        let mut plain = dir.open();
        assert_eq!(plain.fold_deferred_keys().unwrap(), 0);
        assert_eq!(plain.count("match_keys_new").unwrap(), 30);
        let mut w = dir.open();
        w.defer_match_keys(1 << 20);
        assert_eq!(w.fold_deferred_keys().unwrap(), 30);
        assert_eq!(w.count("match_keys_new").unwrap(), 0);
        // Folded once, into the middle index, and found from everywhere.
        for (j, lead_keys) in keys.iter().enumerate() {
            for k in lead_keys {
                assert_eq!(in_table(&w, "match_keys_mid", *k), 1, "lead {j}");
            }
        }
        for j in 0..30 {
            assert!(finds(&r, &leads, &keys, j), "lead {j}, another connection");
            assert!(finds(&w, &leads, &keys, j), "lead {j}, the writer");
        }
        // Nothing left to fold a second time.
        assert_eq!(w.fold_deferred_keys().unwrap(), 0);
    }

    fn pass_through_the_middle_index(reopen: bool) {
        let dir = TempStore::new(if reopen {
            "deferred-mid-reopen"
        } else {
            "deferred-mid"
        });
        let mut w = dir.open();
        // A round is 4 leads; the middle index moves on once per
        // MID_ROUNDS rounds.
        w.defer_match_keys(4);
        let mut r = dir.open();
        r.filter_match_keys().unwrap();
        let run = w.begin_run("t", "x", "{}", 1).unwrap();
        let n = 120;
        let (leads, keys) = numbered(n);
        let mut seen_in_mid = 0;
        for i in 0..n {
            if reopen {
                w = dir.open();
                w.defer_match_keys(4);
            }
            // Every lead is found by each of its keys at every step, from
            // another connection (with a key filter) and the writer's own.
            record_and_find(&mut w, &[&r], run, (&leads, &keys), i);
            seen_in_mid = seen_in_mid.max(w.count("match_keys_mid").unwrap());
            if reopen {
                // A writer's first transaction folds the rows the one
                // before left: only its own is pending after it.
                assert_eq!(w.count("match_keys_new").unwrap(), 1, "after lead {i}");
            }
        }
        assert!(seen_in_mid > 0, "keys went through the middle index");
        // A lead's keys reach match_keys itself within two rounds of
        // pending and MID_ROUNDS rounds in the middle.
        let settled = n - 4 * (2 + crate::MID_ROUNDS as usize) - 4;
        for (j, lead_keys) in keys.iter().enumerate().take(settled) {
            for k in lead_keys {
                assert_eq!(in_table(&w, "match_keys", *k), 1, "lead {j}");
                assert_eq!(in_table(&w, "match_keys_mid", *k), 0, "lead {j}");
            }
        }
        // The middle index holds only the newest rounds' keys.
        let newest_keys: usize = keys[settled..].iter().map(Vec::len).sum();
        assert!(
            w.count("match_keys_mid").unwrap() as usize <= newest_keys,
            "{} in the middle",
            w.count("match_keys_mid").unwrap()
        );
    }

    #[test]
    fn a_rolled_back_batch_loses_no_deferred_key() {
        let dir = TempStore::new("deferred-rollback");
        let mut w = dir.open();
        w.defer_match_keys(2);
        let run = w.begin_run("t", "x", "{}", 1).unwrap();
        let (leads, keys) = numbered(12);
        for i in 0..12 {
            let n = serde_json::to_string(&leads[i]).unwrap();
            let rec = record(&leads[i], &keys[i], &n);
            if i % 3 == 1 {
                // Recorded (and a cycle finished: its deletes too), then
                // undone.
                let mut b = w.batch().unwrap();
                b.record(run, "validate", "sha", &[rec], 1).unwrap();
                drop(b);
            } else {
                w.record(run, "validate", "sha", &[rec], 1).unwrap();
            }
        }
        for _ in 0..4 {
            w.record(run, "validate", "sha", &[], 1).unwrap();
        }
        let r = dir.open();
        for (i, lead_keys) in keys.iter().enumerate() {
            for k in lead_keys {
                let found = r.candidates("t", &[*k], 10, 10).unwrap();
                if i % 3 == 1 {
                    assert!(found.is_empty(), "lead {i} was rolled back");
                } else {
                    assert_eq!(found.len(), 1, "lead {i}");
                    assert_eq!(indexed(&r, *k).len(), 1, "lead {i} is folded");
                }
            }
        }
        assert_eq!(r.count("match_keys_new").unwrap(), 0);
    }

    #[test]
    fn the_newest_leads_of_a_key_win_across_pending_and_folded() {
        let dir = TempStore::new("deferred-newest");
        let mut w = dir.open();
        let run = w.begin_run("t", "x", "{}", 1).unwrap();
        let k = [key_hash("t", "e:same@x.com")];
        let leads: Vec<Lead> = (0..4)
            .map(|i| lead(&format!("l{i}"), "same@x.com"))
            .collect();
        for (i, l) in leads.iter().enumerate() {
            if i == 2 {
                // The later two are deferred, and stay pending.
                w.defer_match_keys(1 << 20);
            }
            let n = serde_json::to_string(l).unwrap();
            w.record(run, "validate", "sha", &[record(l, &k, &n)], 1)
                .unwrap();
        }
        assert_eq!(w.count("match_keys").unwrap(), 2);
        assert_eq!(w.count("match_keys_new").unwrap(), 2);
        let r = dir.open();
        let ids = |per_key| -> Vec<String> {
            r.candidates("t", &k, per_key, 10)
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(ids(1), ["l3"]);
        assert_eq!(ids(3), ["l3", "l2", "l1"]);
        assert_eq!(ids(10), ["l3", "l2", "l1", "l0"]);
    }

    /// A key filter built as often as it needs to be, sized for `min`.
    fn filtering(s: &mut SqliteStore, min: u64) {
        s.filter_match_keys_with(KeyFilter::with(std::time::Duration::ZERO, min))
            .unwrap();
    }

    /// Whether `s` finds lead `j` by each of its keys.
    fn finds(s: &SqliteStore, leads: &[Lead], keys: &[Vec<i64>], j: usize) -> bool {
        keys[j].iter().all(|k| {
            let found = s.candidates("t", &[*k], 10, 10).unwrap();
            found.len() == 1 && found[0].id == leads[j].id
        })
    }

    #[test]
    fn a_key_filter_misses_no_key_however_it_was_written() {
        let dir = TempStore::new("key-filter");
        let (leads, keys) = numbered(120);
        let json = as_json(&leads);
        let rec = |i: usize| record(&leads[i], &keys[i], &json[i]);
        let mut direct = dir.open();
        let run = direct.begin_run("t", "x", "{}", 1).unwrap();
        for i in 0..10 {
            direct.record(run, "validate", "sha", &[rec(i)], 1).unwrap();
        }
        let mut r = dir.open();
        filtering(&mut r, 16);
        // A filter that has fallen behind; and one built on the spot.
        let mut late = dir.open();
        filtering(&mut late, 16);
        assert_eq!(r.key_filter_state(), Some((true, 1, 1)));
        for j in 0..10 {
            assert!(finds(&r, &leads, &keys, j), "lead {j}");
        }
        // Most keys no lead has are answered from memory.
        let maybe = absent_maybes(&r);
        assert!(maybe < 500, "{maybe} of 10,000 absent keys");
        let filter = r.filter.borrow();
        let f = filter.as_ref().unwrap();
        assert!(keys[..10].iter().flatten().all(|k| f.may_hold(*k)));
        drop(filter);

        // Deferred keys: read as pending rows, found at once and after
        // they are folded (cycles of 4 leads), without building again.
        let mut w = dir.open();
        w.defer_match_keys(4);
        for i in 10..60 {
            w.record(run, "validate", "sha", &[rec(i)], 1).unwrap();
            for j in 0..=i {
                assert!(finds(&r, &leads, &keys, j), "lead {j} after {i}");
            }
        }
        assert!(r.count("match_keys_new").unwrap() < 50, "rows were folded");
        // Past its capacity (16 keys, as built) it grew layers; it was
        // not built again.
        let (usable, builds, layers) = r.key_filter_state().unwrap();
        assert!(usable);
        assert_eq!(builds, 1);
        assert!(layers > 1, "{layers}");
        for i in 60..70 {
            w.record(run, "validate", "sha", &[rec(i)], 1).unwrap();
        }
        for j in 0..70 {
            assert!(finds(&r, &leads, &keys, j), "lead {j}");
        }
        let grown = r.key_filter_state().unwrap().1;

        // The late one saw none of that: the folded rows are gone, and the
        // gap in their ids says so.
        for j in 0..70 {
            assert!(finds(&late, &leads, &keys, j), "late, lead {j}");
        }
        assert_eq!(late.key_filter_state().map(|s| (s.0, s.1)), Some((true, 2)));

        // Keys written directly (a batch run) are counted, and the filter
        // is built again.
        for i in 70..80 {
            direct.record(run, "validate", "sha", &[rec(i)], 1).unwrap();
        }
        for j in 0..80 {
            assert!(finds(&r, &leads, &keys, j), "lead {j}");
        }
        assert_eq!(r.key_filter_state().map(|s| s.1), Some(grown + 1));

        // Without the count of direct writes (removed by hand) the filter
        // is not used, and nothing fails.
        r.conn.execute("DELETE FROM match_keys_writes", []).unwrap();
        for j in 0..80 {
            assert!(finds(&r, &leads, &keys, j), "lead {j}");
        }
        assert_eq!(r.key_filter_state().map(|s| s.0), Some(false));
        r.conn
            .execute(
                "INSERT INTO match_keys_writes (id, direct) VALUES (1, 0)",
                [],
            )
            .unwrap();

        // Between rebuilds a stale filter is not used: every key is
        // looked up in the index.
        r.filter_match_keys().unwrap();
        for i in 80..90 {
            direct.record(run, "validate", "sha", &[rec(i)], 1).unwrap();
        }
        for j in 0..90 {
            assert!(finds(&r, &leads, &keys, j), "lead {j}");
        }
        assert_eq!(r.key_filter_state(), Some((false, 1, 0)));
    }

    #[test]
    fn a_full_key_filter_grows_a_layer_and_is_not_built_again() {
        let dir = TempStore::new("key-filter-full");
        let (leads, keys) = numbered(20);
        let json = as_json(&leads);
        let mut w = dir.open();
        w.defer_match_keys(4);
        let run = w.begin_run("t", "x", "{}", 1).unwrap();
        let mut r = dir.open();
        // Rebuilt for staleness at most every 30 s, sized for 16 keys.
        r.filter_match_keys_with(KeyFilter::with(crate::key_filter::REBUILD_EVERY, 16))
            .unwrap();
        for i in 0..20 {
            put(&mut w, run, &leads[i], &keys[i], &json[i]);
            for j in 0..=i {
                assert!(finds(&r, &leads, &keys, j), "lead {j} after {i}");
            }
        }
        // 20 leads' keys, into a layer sized for 16 and the next for
        // twice those: grown, never read from the table again, and still
        // a filter.
        let (usable, builds, layers) = r.key_filter_state().unwrap();
        assert!(usable);
        assert_eq!(builds, 1);
        assert!(layers >= 2, "{layers}");
        let maybe = absent_maybes(&r);
        assert!(maybe < 500, "{maybe} of 10,000 absent keys");
    }

    /// How many of 10,000 keys no lead has `s`'s key filter may hold.
    fn absent_maybes(s: &SqliteStore) -> usize {
        let filter = s.filter.borrow();
        let f = filter.as_ref().expect("a key filter");
        (0..10_000)
            .filter(|i| f.may_hold(key_hash("t", &format!("absent:{i}"))))
            .count()
    }

    #[test]
    fn a_key_filter_forgets_what_a_rolled_back_batch_showed_it() {
        let dir = TempStore::new("key-filter-rollback");
        let (leads, keys) = numbered(3);
        let json = as_json(&leads);
        let mut a = dir.open();
        a.defer_match_keys(1 << 20);
        filtering(&mut a, 16);
        let run = a.begin_run("t", "x", "{}", 1).unwrap();
        {
            // Lead 0's pending row, read by the filter inside the batch,
            // then undone.
            let mut b = a.batch().unwrap();
            put(&mut b, run, &leads[0], &keys[0], &json[0]);
            assert!(finds(&b, &leads, &keys, 0));
        }
        // Another writer's row takes the same id, and is folded into
        // match_keys (and deleted) when the next is recorded.
        let mut w = dir.open();
        w.defer_match_keys(1);
        for i in [1, 2] {
            put(&mut w, run, &leads[i], &keys[i], &json[i]);
        }
        assert_eq!(w.count("match_keys_new").unwrap(), 1);
        assert!(finds(&a, &leads, &keys, 1));
        assert!(finds(&a, &leads, &keys, 2));
        assert!(a.candidates("t", &keys[0], 10, 10).unwrap().is_empty());
    }

    #[test]
    fn key_hashes_are_stable_and_per_tenant() {
        assert_eq!(key_hash("t", "e:a@b.com"), key_hash("t", "e:a@b.com"));
        assert_ne!(key_hash("t", "e:a@b.com"), key_hash("u", "e:a@b.com"));
        assert_ne!(key_hash("t", "e:a@b.com"), key_hash("t", "e:a@b.co"));
    }

    #[test]
    fn candidates_merge_and_unmerge_restore_exactly() {
        let mut s = SqliteStore::open(":memory:").unwrap();
        let run = s.begin_run("t", "x", "{}", 1).unwrap();
        let k = [key_hash("t", "e:a@b.com")];
        let (a, b) = (lead("a", "a@b.com"), lead("b", "A@b.com"));
        let na = serde_json::to_string(&a).unwrap();
        let nb = serde_json::to_string(&b).unwrap();
        s.record(run, "validate", "sha", &[record(&a, &k, &na)], 1)
            .unwrap();
        let before = s.lead_row("a").unwrap().unwrap();

        let found = s.candidates("t", &k, 10, 10).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "a");
        assert!(s.candidates("other", &k, 10, 10).unwrap().is_empty());

        let mut rb = record(&b, &k, &nb);
        rb.link = Some(Link {
            master: "a",
            kind: LinkKind::Merge,
            probability: 0.99,
            evidence: "[]",
            decided_by: "auto",
        });
        s.record(run, "validate", "sha", &[rb], 2).unwrap();
        let b_linked = s.lead_row("b").unwrap().unwrap();
        assert_eq!(b_linked.master_id.as_deref(), Some("a"));
        assert_eq!(b_linked.status, "duplicate");
        assert_eq!(s.golden_members("a").unwrap().len(), 2);
        assert_eq!(s.master_of("b").unwrap(), "a");

        let undone = s.unmerge("b", "test", 3).unwrap();
        assert_eq!(undone.len(), 1);
        let b_after = s.lead_row("b").unwrap().unwrap();
        assert_eq!(b_after.master_id, None);
        assert_eq!(b_after.status, "accepted", "validation's verdict is back");
        assert_eq!(b_after.raw, b_linked.raw);
        assert_eq!(b_after.normalized, b_linked.normalized);
        assert_eq!(s.lead_row("a").unwrap().unwrap(), before);
        assert_eq!(s.golden_members("a").unwrap().len(), 1);
        assert!(
            s.unmerge("b", "test", 4).unwrap().is_empty(),
            "nothing left to undo"
        );
        assert_eq!(s.merges_of("a").unwrap()[0].undone_at, Some(3));
    }

    #[test]
    fn review_items_are_decided_once_and_remembered() {
        let mut s = SqliteStore::open(":memory:").unwrap();
        let run = s.begin_run("t", "x", "{}", 1).unwrap();
        let (a, b) = (lead("a", "a@b.com"), lead("b", "c@d.com"));
        let mut rb = record(&b, &[], "{}");
        rb.review = Some(Review {
            other: "a",
            probability: 0.7,
            evidence: "[]",
            reason: "uncertain",
        });
        s.record(run, "validate", "sha", &[record(&a, &[], "{}"), rb], 1)
            .unwrap();
        let open = s.open_reviews("t", 10).unwrap();
        assert_eq!(open.len(), 1);
        assert!(s.open_reviews("u", 10).unwrap().is_empty());
        s.decide_review(open[0].id, "distinct", "ann", Some("different people"), 2)
            .unwrap();
        assert!(s.open_reviews("t", 10).unwrap().is_empty());
        assert_eq!(
            s.pair_decision("t", "b", "a").unwrap().as_deref(),
            Some("distinct")
        );
        assert_eq!(s.decided_reviews("t").unwrap().len(), 1);
    }
}
