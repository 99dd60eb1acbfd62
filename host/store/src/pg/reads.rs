//! What the API, the CLI and `/metrics` read back on PostgreSQL: a lead's
//! state, issues and score, the per-tenant counts, surfaced leads, and row
//! counts — the same answers as SQLite's.

use super::{PgStore, limit, pg};
use crate::StoreError;
use crate::service::Backlog;
use std::collections::HashMap;

impl PgStore {
    /// Counts rows of a table (for summaries and tests). SQLite's deferred
    /// key tiers (`match_keys_mid`, `match_keys_new`) are always empty here.
    pub fn count(&self, table: &str) -> Result<u64, StoreError> {
        if matches!(table, "match_keys_mid" | "match_keys_new") {
            return Ok(0);
        }
        if !crate::COUNTABLE.contains(&table) {
            return Err(StoreError::UnknownTable(table.to_string()));
        }
        let n: i64 = self
            .client()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .map_err(pg("count"))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    /// The current score (as JSON) of each of `ids` that has one.
    pub fn score_details(&self, ids: &[String]) -> Result<HashMap<String, String>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT s.lead_id, s.detail FROM unnest($1::TEXT[]) AS u(id) JOIN scores s ON s.lead_id = u.id",
                &[&ids],
            )
            .map_err(pg("read score"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// A lead's status and qualification, if it is `tenant`'s.
    pub fn lead_state(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT status, qualification FROM leads WHERE id = $1 AND tenant = $2",
                &[&id, &tenant],
            )
            .map_err(pg("read lead"))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// A lead's issues from its latest decisions: (field, code, severity,
    /// message).
    pub fn lead_issues(
        &self,
        lead_id: &str,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT field, code, severity, message FROM issues WHERE lead_id = $1
                  AND decision_id = (SELECT max(decision_id) FROM issues WHERE lead_id = $1)
                  ORDER BY seq",
                &[&lead_id],
            )
            .map_err(pg("list issues"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }

    /// Which of `ids` are recorded leads, in the order given.
    pub fn recorded(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT l.id FROM unnest($1::TEXT[]) AS u(id) JOIN leads l ON l.id = u.id",
                &[&ids],
            )
            .map_err(pg("look up lead"))?;
        let found: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(ids
            .iter()
            .filter(|id| found.contains(*id))
            .cloned()
            .collect())
    }

    /// Review, outbox and intake counts of `tenant`, from the open review
    /// items and the kept counts (see [`crate::SqliteStore::backlog`]).
    pub fn backlog(&self, tenant: &str, escalate_ms: i64, now: i64) -> Result<Backlog, StoreError> {
        let mut client = self.client();
        let mut b = Backlog::default();
        let row = client
            .query_one(
                "SELECT count(*), count(escalated_at), count(CASE WHEN created_at + $2 < $3 THEN 1 END)
                   FROM review_queue WHERE tenant = $1 AND decided_at IS NULL",
                &[&tenant, &escalate_ms, &now],
            )
            .map_err(pg("count review queue"))?;
        b.review_open = row.get(0);
        b.review_escalated = row.get(1);
        b.review_overdue = row.get(2);
        for r in client
            .query(
                "SELECT name, n FROM tenant_counts WHERE tenant = $1",
                &[&tenant],
            )
            .map_err(pg("read kept counts"))?
        {
            let n: i64 = r.get(1);
            match r.get::<_, &str>(0) {
                "review:decided" => b.review_decided = n,
                "review:in_time" => b.review_decided_within_sla = n,
                "outbox:pending" => b.outbox_pending = n,
                "outbox:delivered" => b.outbox_delivered = n,
                "outbox:failed" => b.outbox_failed = n,
                "outbox:dead" => b.outbox_dead = n,
                _ => {}
            }
        }
        b.intake_pending = client
            .query_one(
                "SELECT count(*) FROM intake WHERE tenant = $1 AND state = 'pending'",
                &[&tenant],
            )
            .map_err(pg("count intake"))?
            .get(0);
        Ok(b)
    }

    /// Lead counts of `tenant` by status, for metrics.
    pub fn status_counts(&self, tenant: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT status, count(*) FROM leads WHERE tenant = $1 GROUP BY status ORDER BY status",
                &[&tenant],
            )
            .map_err(pg("count leads"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Surfaced leads not yet handed on (score changes to write to the CRM).
    pub fn undelivered_surfaced(
        &self,
        tenant: &str,
        n: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT id, lead_id FROM pipeline_outbox WHERE tenant = $1 AND delivered_at IS NULL
                  ORDER BY id LIMIT $2",
                &[&tenant, &limit(n)],
            )
            .map_err(pg("list surfaced leads"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Marks surfaced leads handed on.
    pub fn surfaced_delivered(&self, ids: &[i64], now: i64) -> Result<(), StoreError> {
        self.client()
            .execute(
                "UPDATE pipeline_outbox SET delivered_at = $2 WHERE id = ANY($1)",
                &[&ids, &now],
            )
            .map_err(pg("mark surfaced delivered"))?;
        Ok(())
    }
}
