//! Dedupe's side of the store on PostgreSQL: the blocking-key index and
//! candidate fetch, merges and golden records, the match review pairs —
//! the same semantics as SQLite's (`matching.rs`, `merges.rs`). The index
//! refers to leads by `leads.seq`; the candidates of a whole batch of leads
//! come back in one query.

use super::{PgStore, limit, pg};
use crate::StoreError;
use crate::matching::{
    Candidate, GoldenMember, LeadRow, Link, MatchIndex, MergeRow, Review, ReviewItem, parse_lead,
};
use crate::merges::{MatchReviews, Merges};

pub(crate) fn insert_link(
    tx: &mut postgres::Client,
    tenant: &str,
    lead_id: &str,
    link: &Link<'_>,
    run_id: Option<i64>,
    now: i64,
) -> Result<i64, StoreError> {
    let id: i64 = tx
        .query_one(
            "INSERT INTO merges (tenant, master_id, lead_id, kind, probability, evidence, decided_by, run_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[
                &tenant,
                &link.master,
                &lead_id,
                &link.kind.as_str(),
                &link.probability,
                &link.evidence,
                &link.decided_by,
                &run_id,
                &now,
            ],
        )
        .map_err(pg("insert merge"))?
        .get(0);
    tx.execute(
        "UPDATE leads SET master_id = $2, status = 'duplicate', updated_at = $3 WHERE id = $1",
        &[&lead_id, &link.master, &now],
    )
    .map_err(pg("link lead"))?;
    Ok(id)
}

pub(crate) fn insert_review(
    tx: &mut postgres::Client,
    tenant: &str,
    lead_id: &str,
    review: &Review<'_>,
    run_id: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    let inserted = tx
        .query_opt(
            "INSERT INTO match_reviews (tenant, lead_a, lead_b, probability, evidence, reason, run_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id",
            &[
                &tenant,
                &review.other,
                &lead_id,
                &review.probability,
                &review.evidence,
                &review.reason,
                &run_id,
                &now,
            ],
        )
        .map_err(pg("insert match review"))?;
    if let Some(row) = inserted {
        let id: i64 = row.get(0);
        tx.execute(
            "INSERT INTO review_queue (tenant, lead_id, kind, match_review, reason, source, confidence, created_at)
             SELECT $1, $2, 'match', $3, $4, coalesce((SELECT source FROM leads WHERE id = $2), 'other'), $5, $6
             ON CONFLICT DO NOTHING",
            &[&tenant, &lead_id, &id, &review.reason, &review.probability, &now],
        )
        .map_err(pg("queue match for review"))?;
    }
    Ok(())
}

impl MatchIndex for PgStore {
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

    /// One query for every key of every lead: per key, the newest
    /// `per_key` of the tenant's leads holding it; then, per lead, its keys'
    /// candidates in key order, each once, up to `limit`.
    fn candidates_for_each(
        &self,
        tenant: &str,
        keys: &[Vec<i64>],
        per_key: usize,
        n: usize,
    ) -> Result<Vec<Vec<Candidate>>, StoreError> {
        let flat: Vec<i64> = keys.iter().flatten().copied().collect();
        let mut out: Vec<Vec<Candidate>> = keys.iter().map(|_| Vec::new()).collect();
        if flat.is_empty() {
            return Ok(out);
        }
        // Per key, the index newest first, each entry's lead looked up by
        // `seq` until `per_key` of the tenant's are found (`OFFSET 0`
        // keeps the planner from turning the walk into a join over all
        // the tenant's leads).
        const CANDIDATES: &str = "SELECT q.ord, c.id, c.normalized, c.master_id
               FROM unnest($1::BIGINT[]) WITH ORDINALITY AS q(key, ord)
               CROSS JOIN LATERAL (
                 SELECT l.id, l.normalized, l.master_id, k.lead
                   FROM (SELECT lead FROM match_keys WHERE key = q.key ORDER BY lead DESC OFFSET 0) k
                   CROSS JOIN LATERAL (
                     SELECT id, normalized, master_id FROM leads
                      WHERE seq = k.lead AND tenant = $2 AND normalized IS NOT NULL OFFSET 0) l
                  LIMIT $3) c
              ORDER BY q.ord, c.lead DESC";
        let mut client = self.client();
        let rows = self
            .prepared(&mut client, CANDIDATES)
            .and_then(|st| client.query(&st, &[&flat, &tenant, &limit(per_key)]))
            .map_err(pg("look up candidates"))?;
        // Which lead each flattened key belongs to.
        let mut owner = Vec::with_capacity(flat.len());
        for (i, k) in keys.iter().enumerate() {
            owner.extend(std::iter::repeat_n(i, k.len()));
        }
        for r in &rows {
            let ord: i64 = r.get(0);
            let Some(&lead) = usize::try_from(ord - 1).ok().and_then(|i| owner.get(i)) else {
                continue;
            };
            let found = &mut out[lead];
            let id: String = r.get(1);
            if found.len() >= n || found.iter().any(|c| c.id == id) {
                continue;
            }
            let normalized: String = r.get(2);
            found.push(Candidate {
                id,
                lead: parse_lead(&normalized)?,
                master: r.get(3),
            });
        }
        Ok(out)
    }

    fn master_of(&self, id: &str) -> Result<String, StoreError> {
        let row = self
            .client()
            .query_opt("SELECT master_id FROM leads WHERE id = $1", &[&id])
            .map_err(pg("read master"))?;
        Ok(row
            .and_then(|r| r.get::<_, Option<String>>(0))
            .unwrap_or_else(|| id.to_string()))
    }

    fn link(
        &mut self,
        tenant: &str,
        lead: &str,
        link: &Link<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.tx("begin merge")?;
        let id = insert_link(&mut tx, tenant, lead, link, None, now)?;
        tx.execute(
            "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
             VALUES ($1, NULL, 'dedupe', $2, 'duplicate', NULL, $3)",
            &[&lead, &link.decided_by, &now],
        )
        .map_err(pg("record merge decision"))?;
        tx.commit().map_err(pg("commit merge"))?;
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
        let mut tx = self.tx("begin review")?;
        insert_review(&mut tx, tenant, lead, review, run_id, now)?;
        tx.commit().map_err(pg("commit review"))
    }

    fn lead_row(&self, id: &str) -> Result<Option<LeadRow>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT id, tenant, status, raw, normalized, master_id FROM leads WHERE id = $1",
                &[&id],
            )
            .map_err(pg("read lead"))?;
        Ok(row.map(|r| LeadRow {
            id: r.get(0),
            tenant: r.get(1),
            status: r.get(2),
            raw: r.get(3),
            normalized: r.get(4),
            master_id: r.get(5),
        }))
    }
}

const MERGE_COLUMNS: &str =
    "id, master_id, lead_id, kind, probability, decided_by, created_at, undone_at";

fn merge_row(r: &postgres::Row) -> MergeRow {
    MergeRow {
        id: r.get(0),
        master_id: r.get(1),
        lead_id: r.get(2),
        kind: r.get(3),
        probability: r.get(4),
        decided_by: r.get(5),
        created_at: r.get(6),
        undone_at: r.get(7),
    }
}

impl Merges for PgStore {
    fn golden_members(&self, master: &str) -> Result<Vec<GoldenMember>, StoreError> {
        const MEMBERS: &str = "SELECT l.id, COALESCE(l.normalized, l.raw) FROM leads l
              WHERE l.id = $1 OR (l.master_id = $1 AND EXISTS (
                  SELECT 1 FROM merges m WHERE m.lead_id = l.id AND m.master_id = $1
                    AND m.kind = 'merge' AND m.undone_at IS NULL))
              ORDER BY l.received_at, l.seq";
        let mut client = self.client();
        let rows = self
            .prepared(&mut client, MEMBERS)
            .and_then(|st| client.query(&st, &[&master]))
            .map_err(pg("read golden members"))?;
        rows.iter()
            .map(|r| {
                Ok(GoldenMember {
                    id: r.get(0),
                    lead: parse_lead(r.get(1))?,
                })
            })
            .collect()
    }

    fn set_golden(
        &self,
        tenant: &str,
        master: &str,
        record: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        const WRITE: &str = "INSERT INTO golden (id, tenant, record, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at";
        const REMOVE: &str = "DELETE FROM golden WHERE id = $1";
        let mut client = self.client();
        match record {
            Some(json) => self
                .prepared(&mut client, WRITE)
                .and_then(|st| client.execute(&st, &[&master, &tenant, &json, &now]))
                .map_err(pg("write golden record")),
            None => self
                .prepared(&mut client, REMOVE)
                .and_then(|st| client.execute(&st, &[&master]))
                .map_err(pg("remove golden record")),
        }
        .map(|_| ())
    }

    fn golden(&self, master: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt("SELECT record FROM golden WHERE id = $1", &[&master])
            .map_err(pg("read golden record"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn merges_of(&self, id: &str) -> Result<Vec<MergeRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {MERGE_COLUMNS} FROM merges WHERE master_id = $1 OR lead_id = $1 ORDER BY id"
                ),
                &[&id],
            )
            .map_err(pg("list merges"))?;
        Ok(rows.iter().map(merge_row).collect())
    }

    fn unmerge(&mut self, target: &str, who: &str, now: i64) -> Result<Vec<MergeRow>, StoreError> {
        let mut tx = self.tx("begin unmerge")?;
        let undone: Vec<MergeRow> = tx
            .query(
                &format!(
                    "SELECT {MERGE_COLUMNS} FROM merges WHERE undone_at IS NULL
                       AND (CAST(id AS TEXT) = $1 OR lead_id = $1 OR master_id = $1) ORDER BY id
                       FOR UPDATE"
                ),
                &[&target],
            )
            .map_err(pg("find merges"))?
            .iter()
            .map(merge_row)
            .collect();
        for m in &undone {
            tx.execute(
                "UPDATE merges SET undone_at = $2 WHERE id = $1",
                &[&m.id, &now],
            )
            .map_err(pg("undo merge"))?;
            let verdict: Option<String> = tx
                .query_opt(
                    "SELECT verdict FROM decisions WHERE lead_id = $1 AND capability = 'validate'
                      ORDER BY id DESC LIMIT 1",
                    &[&m.lead_id],
                )
                .map_err(pg("read validation verdict"))?
                .map(|r| r.get(0));
            let status = verdict.unwrap_or_else(|| "accepted".into());
            tx.execute(
                "UPDATE leads SET master_id = NULL, status = $3, updated_at = $4
                  WHERE id = $1 AND master_id = $2",
                &[&m.lead_id, &m.master_id, &status, &now],
            )
            .map_err(pg("restore lead"))?;
            tx.execute(
                "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
                 VALUES ($1, NULL, 'dedupe', $2, 'unmerged', NULL, $3)",
                &[&m.lead_id, &who, &now],
            )
            .map_err(pg("record unmerge"))?;
        }
        tx.commit().map_err(pg("commit unmerge"))?;
        Ok(undone)
    }
}

const REVIEW_COLUMNS: &str =
    "id, lead_a, lead_b, probability, evidence, reason, created_at, decision, reviewer, note";

fn review_item(r: &postgres::Row) -> ReviewItem {
    ReviewItem {
        id: r.get(0),
        lead_a: r.get(1),
        lead_b: r.get(2),
        probability: r.get(3),
        evidence: r.get(4),
        reason: r.get(5),
        created_at: r.get(6),
        decision: r.get(7),
        reviewer: r.get(8),
        note: r.get(9),
    }
}

impl MatchReviews for PgStore {
    fn open_reviews(&self, tenant: &str, n: usize) -> Result<Vec<ReviewItem>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE tenant = $1 AND decided_at IS NULL
                      ORDER BY id LIMIT $2"
                ),
                &[&tenant, &limit(n)],
            )
            .map_err(pg("list match reviews"))?;
        Ok(rows.iter().map(review_item).collect())
    }

    fn decided_reviews(&self, tenant: &str) -> Result<Vec<ReviewItem>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE tenant = $1 AND decided_at IS NOT NULL ORDER BY id"
                ),
                &[&tenant],
            )
            .map_err(pg("list decided reviews"))?;
        Ok(rows.iter().map(review_item).collect())
    }

    fn review_item(&self, tenant: &str, id: i64) -> Result<Option<ReviewItem>, StoreError> {
        let row = self
            .client()
            .query_opt(
                &format!(
                    "SELECT {REVIEW_COLUMNS} FROM match_reviews WHERE id = $1 AND tenant = $2"
                ),
                &[&id, &tenant],
            )
            .map_err(pg("read match review"))?;
        Ok(row.as_ref().map(review_item))
    }

    fn decide_review(
        &self,
        id: i64,
        decision: &str,
        reviewer: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(
                "UPDATE match_reviews SET decision = $2, reviewer = $3, note = $4, decided_at = $5 WHERE id = $1",
                &[&id, &decision, &reviewer, &note, &now],
            )
            .map_err(pg("record review decision"))?;
        Ok(())
    }

    fn pair_decision(&self, tenant: &str, a: &str, b: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT decision FROM match_reviews WHERE tenant = $1 AND decided_at IS NOT NULL
                   AND ((lead_a = $2 AND lead_b = $3) OR (lead_a = $3 AND lead_b = $2))
                 ORDER BY decided_at DESC LIMIT 1",
                &[&tenant, &a, &b],
            )
            .map_err(pg("read pair decision"))?;
        Ok(row.and_then(|r| r.get(0)))
    }
}
