//! The review queue (items with kind, source, confidence, SLA stamps and
//! the decision) and the alerts raised for people.

use crate::{SqliteStore, StoreError, sql};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// One review queue item with what prioritizing it needs.
#[derive(Debug, Clone, Serialize)]
pub struct QueueItem {
    pub id: i64,
    pub tenant: String,
    pub lead_id: String,
    /// `validation`, `match` or `classification`.
    pub kind: String,
    pub reason: String,
    pub source: String,
    /// The match probability, for a match item.
    pub confidence: Option<f64>,
    pub created_at: i64,
    pub escalated_at: Option<i64>,
    pub fallback_at: Option<i64>,
    pub fallback: Option<String>,
    pub decided_at: Option<i64>,
    pub decision: Option<String>,
    pub reviewer: Option<String>,
    pub note: Option<String>,
    /// The match review pair, for a match item.
    pub match_review: Option<i64>,
    pub lead_a: Option<String>,
    pub lead_b: Option<String>,
    /// The lead's current score total, if scored.
    pub score: Option<i64>,
    /// Warnings and errors on the lead's latest validation.
    pub issues: i64,
}

pub(super) const QUEUE_SELECT: &str = "SELECT q.id, q.tenant, q.lead_id, q.kind, q.reason, q.source, q.confidence, q.created_at,
        q.escalated_at, q.fallback_at, q.fallback, q.decided_at, q.decision, q.reviewer, q.note,
        q.match_review, m.lead_a, m.lead_b, s.total,
        (SELECT count(*) FROM issues i WHERE i.lead_id = q.lead_id AND i.severity IN ('warning', 'error'))
   FROM review_queue q
   LEFT JOIN match_reviews m ON m.id = q.match_review
   LEFT JOIN scores s ON s.lead_id = q.lead_id";

pub(super) fn queue_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueItem> {
    Ok(QueueItem {
        id: r.get(0)?,
        tenant: r.get(1)?,
        lead_id: r.get(2)?,
        kind: r.get(3)?,
        reason: r.get(4)?,
        source: r.get(5)?,
        confidence: r.get(6)?,
        created_at: r.get(7)?,
        escalated_at: r.get(8)?,
        fallback_at: r.get(9)?,
        fallback: r.get(10)?,
        decided_at: r.get(11)?,
        decision: r.get(12)?,
        reviewer: r.get(13)?,
        note: r.get(14)?,
        match_review: r.get(15)?,
        lead_a: r.get(16)?,
        lead_b: r.get(17)?,
        score: r.get(18)?,
        issues: r.get(19)?,
    })
}

/// Puts a lead on the review queue (once per lead and kind).
#[allow(clippy::too_many_arguments)]
pub(crate) fn enqueue_review(
    tx: &Connection,
    tenant: &str,
    lead_id: &str,
    kind: &str,
    match_review: Option<i64>,
    reason: &str,
    source: &str,
    confidence: Option<f64>,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO review_queue (tenant, lead_id, kind, match_review, reason, source, confidence, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant,
            lead_id,
            kind,
            match_review,
            reason,
            source,
            confidence,
            now
        ])
    })
    .map_err(sql("queue for review"))?;
    Ok(())
}

/// An alert raised for people: a review item past its SLA, a lead routing
/// could not place or whose response SLA was missed, a dead handoff …
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    /// `review.escalated`, `routing.sla_breach`, `handoff.dead` …
    pub kind: String,
    /// The lead concerned.
    pub subject: String,
    pub message: String,
    pub created_at: i64,
    /// What the notifier made of it: `new`, `routed`, `deduplicated`,
    /// `unrouted`, `silenced`, `inhibited` (`kept`: raised before it).
    pub state: String,
    /// Its labels, when raised with them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// The review queue: items with kind, source, confidence, SLA stamps and the
/// decision, and the alerts raised when an item passes its SLA.
pub trait ReviewQueue {
    /// Undecided items of `tenant` (every tenant when `None`), oldest first.
    fn open_queue(&self, tenant: Option<&str>) -> Result<Vec<QueueItem>, StoreError>;

    /// The open items of `tenant` an SLA threshold acts on now, oldest
    /// first: created at or before `fallback_before` and not fallen back,
    /// or created at or before `escalate_before` and not escalated. Reads
    /// only items still waiting for a threshold (`review_queue_due`): the
    /// ones due, and those escalated that wait for the fallback — not the
    /// whole open queue, which items left open past both keep growing.
    fn due_queue(
        &self,
        tenant: &str,
        escalate_before: i64,
        fallback_before: i64,
    ) -> Result<Vec<QueueItem>, StoreError>;

    /// One item of `tenant`.
    fn queue_item(&self, tenant: &str, id: i64) -> Result<Option<QueueItem>, StoreError>;

    /// Records a decision on an item; refuses one already decided (returns
    /// false). For a match item the pair's review is decided too.
    fn decide_queue(
        &mut self,
        id: i64,
        decision: &str,
        reviewer: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// The queue item of a match review pair.
    fn queue_of_match(&self, match_review: i64) -> Result<Option<i64>, StoreError>;

    /// Sets a lead's status and qualification after a person (or the SLA
    /// fallback) decided, with a decision row for the audit trail.
    fn set_outcome(
        &mut self,
        lead_id: &str,
        status: crate::Status,
        qualification: &str,
        decided_by: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Marks an item escalated (the first SLA threshold passed); false when
    /// it was already (another host's scheduler got there first).
    fn escalate_item(&self, id: i64, now: i64) -> Result<bool, StoreError>;

    /// Marks the second SLA threshold passed: `what` is the fallback applied
    /// (`accept`, `reject`) or `manual` (escalated to a manager); false
    /// when it was already.
    fn fallback_item(&self, id: i64, what: &str, now: i64) -> Result<bool, StoreError>;

    /// Raises an alert.
    fn add_alert(
        &self,
        tenant: &str,
        kind: &str,
        subject: &str,
        message: &str,
        now: i64,
    ) -> Result<i64, StoreError>;

    /// Alerts of `tenant`, newest first.
    fn alerts(&self, tenant: &str, limit: usize) -> Result<Vec<Alert>, StoreError>;

    /// Per issue code, how reviewers decided the validation items that
    /// carried it: (code, accepted, rejected).
    fn review_outcomes_by_issue(&self, tenant: &str)
    -> Result<Vec<(String, i64, i64)>, StoreError>;
}

impl ReviewQueue for SqliteStore {
    fn open_queue(&self, tenant: Option<&str>) -> Result<Vec<QueueItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{QUEUE_SELECT} WHERE q.decided_at IS NULL AND (?1 IS NULL OR q.tenant = ?1) ORDER BY q.created_at, q.id"
            ))
            .map_err(sql("list review queue"))?;
        let rows = stmt
            .query_map([tenant], queue_item)
            .map_err(sql("list review queue"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list review queue"))
    }

    fn due_queue(
        &self,
        tenant: &str,
        escalate_before: i64,
        fallback_before: i64,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{}
                  WHERE q.tenant = ?1 AND q.decided_at IS NULL
                    AND (q.escalated_at IS NULL OR q.fallback_at IS NULL)
                    AND q.created_at <= max(?2, ?3)
                    AND ((q.created_at <= ?3 AND q.fallback_at IS NULL)
                      OR (q.created_at <= ?2 AND q.escalated_at IS NULL))
                  ORDER BY q.created_at, q.id",
                QUEUE_SELECT.replacen(
                    "FROM review_queue q",
                    "FROM review_queue q INDEXED BY review_queue_due",
                    1
                )
            ))
            .map_err(sql("list due review items"))?;
        let rows = stmt
            .query_map(
                params![tenant, escalate_before, fallback_before],
                queue_item,
            )
            .map_err(sql("list due review items"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list due review items"))
    }

    fn queue_item(&self, tenant: &str, id: i64) -> Result<Option<QueueItem>, StoreError> {
        self.conn
            .query_row(
                &format!("{QUEUE_SELECT} WHERE q.id = ?1 AND q.tenant = ?2"),
                params![id, tenant],
                queue_item,
            )
            .optional()
            .map_err(sql("read review item"))
    }

    fn decide_queue(
        &mut self,
        id: i64,
        decision: &str,
        reviewer: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let n = tx
            .execute(
                "UPDATE review_queue SET decision = ?2, reviewer = ?3, note = ?4, decided_at = ?5
                  WHERE id = ?1 AND decided_at IS NULL",
                params![id, decision, reviewer, note, now],
            )
            .map_err(sql("record review decision"))?;
        if n == 1 {
            tx.execute(
                "UPDATE match_reviews SET decision = ?2, reviewer = ?3, note = ?4, decided_at = ?5
                  WHERE id = (SELECT match_review FROM review_queue WHERE id = ?1) AND decided_at IS NULL",
                params![id, decision, reviewer, note, now],
            )
            .map_err(sql("record review decision"))?;
        }
        tx.commit().map_err(sql("commit review decision"))?;
        Ok(n == 1)
    }

    fn queue_of_match(&self, match_review: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT id FROM review_queue WHERE match_review = ?1",
                [match_review],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read review item"))
    }

    fn set_outcome(
        &mut self,
        lead_id: &str,
        status: crate::Status,
        qualification: &str,
        decided_by: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "UPDATE leads SET status = ?2, qualification = ?3, updated_at = ?4 WHERE id = ?1",
            params![lead_id, status.as_str(), qualification, now],
        )
        .map_err(sql("update lead"))?;
        tx.execute(
            "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
             VALUES (?1, NULL, 'review', ?2, ?3, NULL, ?4)",
            params![lead_id, decided_by, qualification, now],
        )
        .map_err(sql("record review outcome"))?;
        tx.commit().map_err(sql("commit review outcome"))
    }

    fn escalate_item(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE review_queue SET escalated_at = ?2 WHERE id = ?1 AND escalated_at IS NULL",
                params![id, now],
            )
            .map_err(sql("escalate review item"))?;
        Ok(n == 1)
    }

    fn fallback_item(&self, id: i64, what: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE review_queue SET fallback_at = ?2, fallback = ?3 WHERE id = ?1 AND fallback_at IS NULL",
                params![id, now, what],
            )
            .map_err(sql("fall back on review item"))?;
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
        self.conn
            .execute(
                "INSERT INTO alerts (tenant, kind, subject, message, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![tenant, kind, subject, message, now],
            )
            .map_err(sql("raise alert"))?;
        Ok(self.conn.last_insert_rowid())
    }

    fn alerts(&self, tenant: &str, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, kind, subject, message, created_at, state, labels FROM alerts WHERE tenant = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(sql("list alerts"))?;
        let rows = stmt
            .query_map(params![tenant, limit as i64], |r| {
                Ok(Alert {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    subject: r.get(2)?,
                    message: r.get(3)?,
                    created_at: r.get(4)?,
                    state: r.get(5)?,
                    labels: r
                        .get::<_, Option<String>>(6)?
                        .and_then(|l| serde_json::from_str(&l).ok()),
                })
            })
            .map_err(sql("list alerts"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list alerts"))
    }

    fn review_outcomes_by_issue(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.code,
                        count(DISTINCT CASE WHEN q.decision = 'accept' THEN q.id END),
                        count(DISTINCT CASE WHEN q.decision = 'reject' THEN q.id END)
                   FROM review_queue q JOIN issues i ON i.lead_id = q.lead_id
                  WHERE q.tenant = ?1 AND q.kind IN ('validation', 'classification')
                    AND q.decided_at IS NOT NULL AND q.reviewer NOT LIKE 'sla:%'
                    AND i.severity IN ('warning', 'error')
                  GROUP BY i.code ORDER BY i.code",
            )
            .map_err(sql("review outcomes"))?;
        let rows = stmt
            .query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql("review outcomes"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("review outcomes"))
    }
}
