//! Merges and golden records, and the possible duplicates a person decides:
//! the members of a merged person, its golden record, the merges a lead
//! took part in and undoing one; open and decided review pairs.

use crate::matching::*;
use crate::*;

fn review_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReviewItem> {
    Ok(ReviewItem {
        id: r.get(0)?,
        lead_a: r.get(1)?,
        lead_b: r.get(2)?,
        probability: r.get(3)?,
        evidence: r.get(4)?,
        reason: r.get(5)?,
        created_at: r.get(6)?,
        decision: r.get(7)?,
        reviewer: r.get(8)?,
        note: r.get(9)?,
    })
}

const REVIEW_COLUMNS: &str =
    "id, lead_a, lead_b, probability, evidence, reason, created_at, decision, reviewer, note";

fn merge_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MergeRow> {
    Ok(MergeRow {
        id: r.get(0)?,
        master_id: r.get(1)?,
        lead_id: r.get(2)?,
        kind: r.get(3)?,
        probability: r.get(4)?,
        decided_by: r.get(5)?,
        created_at: r.get(6)?,
        undone_at: r.get(7)?,
    })
}

const MERGE_COLUMNS: &str =
    "id, master_id, lead_id, kind, probability, decided_by, created_at, undone_at";

/// Merges and golden records: the members of a merged person, its golden
/// record, the merges a lead took part in, and undoing one.
pub trait Merges {
    /// The leads whose values make up `master`'s golden record: the master
    /// and every lead merged (not merely linked) into it, oldest first.
    fn golden_members(&self, master: &str) -> Result<Vec<GoldenMember>, StoreError>;

    /// Writes `master`'s golden record (JSON), or removes it when `None`
    /// (nothing is merged into the master any more).
    fn set_golden(
        &self,
        tenant: &str,
        master: &str,
        record: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// `master`'s golden record (JSON), if it has one.
    fn golden(&self, master: &str) -> Result<Option<String>, StoreError>;

    /// Active and undone merges that involve `id` (as master or member).
    fn merges_of(&self, id: &str) -> Result<Vec<MergeRow>, StoreError>;

    /// Undoes merges: `target` is a merge id, or a lead id (every active
    /// merge it takes part in, as member or master). Each member gets back
    /// the status its validation gave it. Returns the merges undone.
    fn unmerge(&mut self, target: &str, who: &str, now: i64) -> Result<Vec<MergeRow>, StoreError>;
}

impl Merges for SqliteStore {
    fn golden_members(&self, master: &str) -> Result<Vec<GoldenMember>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT l.id, COALESCE(l.normalized, l.raw) FROM leads l
                 WHERE l.id = ?1 OR (l.master_id = ?1 AND EXISTS (
                     SELECT 1 FROM merges m WHERE m.lead_id = l.id AND m.master_id = ?1
                       AND m.kind = 'merge' AND m.undone_at IS NULL))
                 ORDER BY l.received_at, l.rowid",
            )
            .map_err(sql("prepare golden members"))?;
        let rows = stmt
            .query_map([master], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(sql("read golden members"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(sql("read golden members"))?;
            out.push(GoldenMember {
                id,
                lead: parse_lead(&json)?,
            });
        }
        Ok(out)
    }

    fn set_golden(
        &self,
        tenant: &str,
        master: &str,
        record: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        // Once per merged lead of a batch: the statements are kept.
        match record {
            Some(json) => self
                .conn
                .prepare_cached(
                    "INSERT INTO golden (id, tenant, record, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
                )
                .and_then(|mut s| s.execute(params![master, tenant, json, now]))
                .map(|_| ())
                .map_err(sql("write golden record")),
            None => self
                .conn
                .prepare_cached("DELETE FROM golden WHERE id = ?1")
                .and_then(|mut s| s.execute([master]))
                .map(|_| ())
                .map_err(sql("remove golden record")),
        }
    }

    fn golden(&self, master: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT record FROM golden WHERE id = ?1", [master], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("read golden record"))
    }

    fn merges_of(&self, id: &str) -> Result<Vec<MergeRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {MERGE_COLUMNS} FROM merges WHERE master_id = ?1 OR lead_id = ?1 ORDER BY id"
            ))
            .map_err(sql("list merges"))?;
        let rows = stmt
            .query_map([id], merge_row)
            .map_err(sql("list merges"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list merges"))
    }

    fn unmerge(&mut self, target: &str, who: &str, now: i64) -> Result<Vec<MergeRow>, StoreError> {
        let tx = self.tx()?;
        let undone: Vec<MergeRow> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {MERGE_COLUMNS} FROM merges WHERE undone_at IS NULL
                       AND (CAST(id AS TEXT) = ?1 OR lead_id = ?1 OR master_id = ?1) ORDER BY id"
                ))
                .map_err(sql("find merges"))?;
            let rows = stmt
                .query_map([target], merge_row)
                .map_err(sql("find merges"))?;
            rows.collect::<Result<_, _>>().map_err(sql("find merges"))?
        };
        for m in &undone {
            tx.execute(
                "UPDATE merges SET undone_at = ?2 WHERE id = ?1",
                params![m.id, now],
            )
            .map_err(sql("undo merge"))?;
            let verdict: Option<String> = tx
                .query_row(
                    "SELECT verdict FROM decisions WHERE lead_id = ?1 AND capability = 'validate'
                     ORDER BY id DESC LIMIT 1",
                    [&m.lead_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("read validation verdict"))?;
            let status = verdict.unwrap_or_else(|| "accepted".into());
            tx.execute(
                "UPDATE leads SET master_id = NULL, status = ?3, updated_at = ?4
                 WHERE id = ?1 AND master_id = ?2",
                params![m.lead_id, m.master_id, status, now],
            )
            .map_err(sql("restore lead"))?;
            tx.execute(
                "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
                 VALUES (?1, NULL, 'dedupe', ?2, 'unmerged', NULL, ?3)",
                params![m.lead_id, who, now],
            )
            .map_err(sql("record unmerge"))?;
        }
        tx.commit().map_err(sql("commit unmerge"))?;
        Ok(undone)
    }
}

/// Possible duplicates a person decides: the open and decided pairs, one
/// item, a decision, and the decision remembered for a pair.
pub trait MatchReviews {
    /// Undecided match review items of `tenant`, oldest first.
    fn open_reviews(&self, tenant: &str, limit: usize) -> Result<Vec<ReviewItem>, StoreError>;

    /// Decided match review items of `tenant`: labelled pairs for training.
    fn decided_reviews(&self, tenant: &str) -> Result<Vec<ReviewItem>, StoreError>;

    /// One match review item of `tenant`.
    fn review_item(&self, tenant: &str, id: i64) -> Result<Option<ReviewItem>, StoreError>;

    /// Records a reviewer's decision (`merge` or `distinct`) on an item.
    fn decide_review(
        &self,
        id: i64,
        decision: &str,
        reviewer: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// A reviewer's earlier decision on the pair, in either order.
    fn pair_decision(&self, tenant: &str, a: &str, b: &str) -> Result<Option<String>, StoreError>;
}

impl MatchReviews for SqliteStore {
    fn open_reviews(&self, tenant: &str, limit: usize) -> Result<Vec<ReviewItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE tenant = ?1 AND decided_at IS NULL
                 ORDER BY id LIMIT ?2"
            ))
            .map_err(sql("list match reviews"))?;
        let rows = stmt
            .query_map(params![tenant, limit as i64], review_item)
            .map_err(sql("list match reviews"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list match reviews"))
    }

    fn decided_reviews(&self, tenant: &str) -> Result<Vec<ReviewItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE tenant = ?1 AND decided_at IS NOT NULL ORDER BY id"
            ))
            .map_err(sql("list decided reviews"))?;
        let rows = stmt
            .query_map([tenant], review_item)
            .map_err(sql("list decided reviews"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list decided reviews"))
    }

    fn review_item(&self, tenant: &str, id: i64) -> Result<Option<ReviewItem>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE id = ?1 AND tenant = ?2"
                ),
                params![id, tenant],
                review_item,
            )
            .optional()
            .map_err(sql("read match review"))
    }

    fn decide_review(
        &self,
        id: i64,
        decision: &str,
        reviewer: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE match_reviews SET decision = ?2, reviewer = ?3, note = ?4, decided_at = ?5 WHERE id = ?1",
                params![id, decision, reviewer, note, now],
            )
            .map_err(sql("record review decision"))?;
        Ok(())
    }

    fn pair_decision(&self, tenant: &str, a: &str, b: &str) -> Result<Option<String>, StoreError> {
        let found: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT decision FROM match_reviews WHERE tenant = ?1 AND decided_at IS NOT NULL
                   AND ((lead_a = ?2 AND lead_b = ?3) OR (lead_a = ?3 AND lead_b = ?2))
                 ORDER BY decided_at DESC LIMIT 1",
                params![tenant, a, b],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read pair decision"))?;
        Ok(found.flatten())
    }
}
