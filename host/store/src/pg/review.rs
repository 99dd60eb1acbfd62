//! The review queue and alerts on PostgreSQL: the same semantics as
//! SQLite's (`service/review.rs`). A decision is taken once: the update
//! that records it only matches an undecided item, so two hosts deciding
//! the same item at once see one succeed.

use super::{PgStore, limit, pg};
use crate::service::{Alert, QueueItem, ReviewQueue};
use crate::{Status, StoreError};

const QUEUE_SELECT: &str = "SELECT q.id, q.tenant, q.lead_id, q.kind, q.reason, q.source, q.confidence, q.created_at,
        q.escalated_at, q.fallback_at, q.fallback, q.decided_at, q.decision, q.reviewer, q.note,
        q.match_review, m.lead_a, m.lead_b, s.total,
        (SELECT count(*) FROM issues i WHERE i.lead_id = q.lead_id AND i.severity IN ('warning', 'error'))
   FROM review_queue q
   LEFT JOIN match_reviews m ON m.id = q.match_review
   LEFT JOIN scores s ON s.lead_id = q.lead_id";

fn queue_item(r: &postgres::Row) -> QueueItem {
    QueueItem {
        id: r.get(0),
        tenant: r.get(1),
        lead_id: r.get(2),
        kind: r.get(3),
        reason: r.get(4),
        source: r.get(5),
        confidence: r.get(6),
        created_at: r.get(7),
        escalated_at: r.get(8),
        fallback_at: r.get(9),
        fallback: r.get(10),
        decided_at: r.get(11),
        decision: r.get(12),
        reviewer: r.get(13),
        note: r.get(14),
        match_review: r.get(15),
        lead_a: r.get(16),
        lead_b: r.get(17),
        score: r.get(18),
        issues: r.get(19),
    }
}

impl ReviewQueue for PgStore {
    fn open_queue(&self, tenant: Option<&str>) -> Result<Vec<QueueItem>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "{QUEUE_SELECT} WHERE q.decided_at IS NULL AND ($1::TEXT IS NULL OR q.tenant = $1)
                      ORDER BY q.created_at, q.id"
                ),
                &[&tenant],
            )
            .map_err(pg("list review queue"))?;
        Ok(rows.iter().map(queue_item).collect())
    }

    fn due_queue(
        &self,
        tenant: &str,
        escalate_before: i64,
        fallback_before: i64,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "{QUEUE_SELECT}
                      WHERE q.tenant = $1 AND q.decided_at IS NULL
                        AND (q.escalated_at IS NULL OR q.fallback_at IS NULL)
                        AND q.created_at <= greatest($2::BIGINT, $3::BIGINT)
                        AND ((q.created_at <= $3 AND q.fallback_at IS NULL)
                          OR (q.created_at <= $2 AND q.escalated_at IS NULL))
                      ORDER BY q.created_at, q.id"
                ),
                &[&tenant, &escalate_before, &fallback_before],
            )
            .map_err(pg("list due review items"))?;
        Ok(rows.iter().map(queue_item).collect())
    }

    fn queue_item(&self, tenant: &str, id: i64) -> Result<Option<QueueItem>, StoreError> {
        let row = self
            .client()
            .query_opt(
                &format!("{QUEUE_SELECT} WHERE q.id = $1 AND q.tenant = $2"),
                &[&id, &tenant],
            )
            .map_err(pg("read review item"))?;
        Ok(row.as_ref().map(queue_item))
    }

    fn decide_queue(
        &mut self,
        id: i64,
        decision: &str,
        reviewer: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tx("begin review decision")?;
        let n = tx
            .execute(
                "UPDATE review_queue SET decision = $2, reviewer = $3, note = $4, decided_at = $5
                  WHERE id = $1 AND decided_at IS NULL",
                &[&id, &decision, &reviewer, &note, &now],
            )
            .map_err(pg("record review decision"))?;
        if n == 1 {
            tx.execute(
                "UPDATE match_reviews SET decision = $2, reviewer = $3, note = $4, decided_at = $5
                  WHERE id = (SELECT match_review FROM review_queue WHERE id = $1) AND decided_at IS NULL",
                &[&id, &decision, &reviewer, &note, &now],
            )
            .map_err(pg("record review decision"))?;
        }
        tx.commit().map_err(pg("commit review decision"))?;
        Ok(n == 1)
    }

    fn queue_of_match(&self, match_review: i64) -> Result<Option<i64>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT id FROM review_queue WHERE match_review = $1",
                &[&match_review],
            )
            .map_err(pg("read review item"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_outcome(
        &mut self,
        lead_id: &str,
        status: Status,
        qualification: &str,
        decided_by: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx("begin review outcome")?;
        tx.execute(
            "UPDATE leads SET status = $2, qualification = $3, updated_at = $4 WHERE id = $1",
            &[&lead_id, &status.as_str(), &qualification, &now],
        )
        .map_err(pg("update lead"))?;
        tx.execute(
            "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
             VALUES ($1, NULL, 'review', $2, $3, NULL, $4)",
            &[&lead_id, &decided_by, &qualification, &now],
        )
        .map_err(pg("record review outcome"))?;
        tx.commit().map_err(pg("commit review outcome"))
    }

    fn escalate_item(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let n = self
            .client()
            .execute(
                "UPDATE review_queue SET escalated_at = $2 WHERE id = $1 AND escalated_at IS NULL",
                &[&id, &now],
            )
            .map_err(pg("escalate review item"))?;
        Ok(n == 1)
    }

    fn fallback_item(&self, id: i64, what: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .client()
            .execute(
                "UPDATE review_queue SET fallback_at = $2, fallback = $3 WHERE id = $1 AND fallback_at IS NULL",
                &[&id, &now, &what],
            )
            .map_err(pg("fall back on review item"))?;
        Ok(n == 1)
    }

    fn add_alert(
        &self,
        tenant: &str,
        kind: &str,
        subject: &str,
        message: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let row = self
            .client()
            .query_one(
                "INSERT INTO alerts (tenant, kind, subject, message, created_at) VALUES ($1, $2, $3, $4, $5)
                 RETURNING id",
                &[&tenant, &kind, &subject, &message, &now],
            )
            .map_err(pg("raise alert"))?;
        Ok(row.get(0))
    }

    fn alerts(&self, tenant: &str, n: usize) -> Result<Vec<Alert>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT id, kind, subject, message, created_at, state, labels FROM alerts WHERE tenant = $1
                  ORDER BY id DESC LIMIT $2",
                &[&tenant, &limit(n)],
            )
            .map_err(pg("list alerts"))?;
        Ok(rows
            .iter()
            .map(|r| Alert {
                id: r.get(0),
                kind: r.get(1),
                subject: r.get(2),
                message: r.get(3),
                created_at: r.get(4),
                state: r.get(5),
                labels: r
                    .get::<_, Option<String>>(6)
                    .and_then(|l| serde_json::from_str(&l).ok()),
            })
            .collect())
    }

    fn review_outcomes_by_issue(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT i.code,
                        count(DISTINCT CASE WHEN q.decision = 'accept' THEN q.id END),
                        count(DISTINCT CASE WHEN q.decision = 'reject' THEN q.id END)
                   FROM review_queue q JOIN issues i ON i.lead_id = q.lead_id
                  WHERE q.tenant = $1 AND q.kind IN ('validation', 'classification')
                    AND q.decided_at IS NOT NULL AND q.reviewer NOT LIKE 'sla:%'
                    AND i.severity IN ('warning', 'error')
                  GROUP BY i.code ORDER BY i.code",
                &[&tenant],
            )
            .map_err(pg("review outcomes"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
