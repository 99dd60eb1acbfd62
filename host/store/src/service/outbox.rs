//! The CRM handoff outbox (each handoff's state, attempts, next attempt and
//! last error), the CRM's id per lead and target, and surfaced leads
//! awaiting delivery.

use crate::{SqliteStore, StoreError, sql};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// One CRM handoff.
#[derive(Debug, Clone, Serialize)]
pub struct Handoff {
    pub id: i64,
    pub tenant: String,
    pub lead_id: String,
    /// `hubspot` or `webhook`.
    pub target: String,
    /// `upsert` (a new lead), or `update` (write the result back to a
    /// record the CRM already has: `crm_id`).
    pub op: String,
    pub crm_id: Option<String>,
    /// `pending`, `delivered`, `failed` (the CRM refused it: an exception
    /// item) or `dead` (attempts exhausted).
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

pub(super) const HANDOFF_COLUMNS: &str = "id, tenant, lead_id, target, op, crm_id, state, attempts, next_at, last_error, created_at, delivered_at";

pub(super) fn handoff(r: &rusqlite::Row<'_>) -> rusqlite::Result<Handoff> {
    Ok(Handoff {
        id: r.get(0)?,
        tenant: r.get(1)?,
        lead_id: r.get(2)?,
        target: r.get(3)?,
        op: r.get(4)?,
        crm_id: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        next_at: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        delivered_at: r.get(11)?,
    })
}

/// The CRM handoff outbox: each handoff with its state, attempts, next
/// attempt and last error, and the CRM's id per lead and target.
pub trait CrmOutbox {
    /// Queues a handoff unless one for the same lead, target and operation
    /// is still waiting (the payload is built when it is sent, so the
    /// waiting one will carry the latest data); a `create` is queued once
    /// per lead ever. Returns the id queued.
    fn enqueue_handoff(
        &self,
        tenant: &str,
        lead_id: &str,
        target: &str,
        op: &str,
        crm_id: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// `tenant`'s handoffs due now, oldest first.
    fn due_handoffs(
        &self,
        tenant: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError>;

    /// Claims up to `limit` of `tenant`'s handoffs due now for `holder`
    /// (a host's name) until `now + lease_ms`, oldest first: each due
    /// handoff is claimed by one holder at a time; a claim that has run out
    /// (its host stopped before finishing) is taken over, and a holder takes
    /// its own claims back at once (a host that restarts). Delivering,
    /// failing or rescheduling a handoff ends its claim.
    fn claim_due_handoffs(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError>;

    /// A lead's handoffs, oldest first.
    fn handoffs_of(&self, tenant: &str, lead_id: &str) -> Result<Vec<Handoff>, StoreError>;

    /// Handoffs of `tenant` in `state` (all states when `None`), newest first.
    fn handoffs(
        &self,
        tenant: &str,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError>;

    /// Records delivered handoffs with the CRM's record id, in one
    /// transaction.
    fn handoffs_delivered(&mut self, done: &[(&Handoff, &str)], now: i64)
    -> Result<(), StoreError>;

    /// Schedules another attempt.
    fn handoff_retry(&self, id: i64, next_at: i64, error: &str, now: i64)
    -> Result<(), StoreError>;

    /// Gives up on a handoff: `failed` (the CRM refused it) or `dead`
    /// (attempts exhausted); either way an exception item carries the CRM's
    /// error.
    fn handoff_failed(
        &mut self,
        h: &Handoff,
        state: &str,
        code: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Puts failed and dead handoffs of `tenant` back in the queue (those
    /// in `ids`, or all when empty), resolving their exception items.
    /// Returns how many.
    fn retry_handoffs(&mut self, tenant: &str, ids: &[i64], now: i64) -> Result<usize, StoreError>;

    /// The CRM's record id for a lead handed off to `target`.
    fn crm_record(
        &self,
        tenant: &str,
        lead_id: &str,
        target: &str,
    ) -> Result<Option<String>, StoreError>;

    /// The lead whose record in `target` has the CRM's id `crm_id`: a
    /// record the CRM confirmed, else a handoff that carries that id (a
    /// contact the CRM created, its update still queued).
    fn lead_of_crm_record(
        &self,
        tenant: &str,
        target: &str,
        crm_id: &str,
    ) -> Result<Option<String>, StoreError>;
}

/// [`CrmOutbox::lead_of_crm_record`], for both backends.
pub(crate) const LEAD_OF_CRM_RECORD: &str = "SELECT lead_id FROM (
     SELECT lead_id, 0 AS o, last_at AS t FROM crm_records WHERE tenant = $1 AND target = $2 AND crm_id = $3
     UNION ALL
     SELECT lead_id, 1 AS o, created_at AS t FROM crm_outbox WHERE tenant = $1 AND target = $2 AND crm_id = $3
   ) c ORDER BY o, t DESC LIMIT 1";

impl CrmOutbox for SqliteStore {
    fn enqueue_handoff(
        &self,
        tenant: &str,
        lead_id: &str,
        target: &str,
        op: &str,
        crm_id: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "INSERT INTO crm_outbox (tenant, lead_id, target, op, crm_id, state, next_at, created_at, updated_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?6
                  WHERE NOT EXISTS (SELECT 1 FROM crm_outbox WHERE tenant = ?1 AND lead_id = ?2 AND target = ?3
                                      AND op = ?4 AND (state = 'pending' OR op = 'create'))",
            )
            .and_then(|mut s| s.execute(params![tenant, lead_id, target, op, crm_id, now]))
            .map_err(sql("queue handoff"))?;
        Ok((n == 1).then(|| self.conn.last_insert_rowid()))
    }

    fn due_handoffs(
        &self,
        tenant: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {HANDOFF_COLUMNS} FROM crm_outbox WHERE state = 'pending' AND tenant = ?1 AND next_at <= ?2 ORDER BY next_at, id LIMIT ?3"
            ))
            .map_err(sql("list due handoffs"))?;
        let rows = stmt
            .query_map(params![tenant, now, limit as i64], handoff)
            .map_err(sql("list due handoffs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list due handoffs"))
    }

    fn claim_due_handoffs(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError> {
        let tx = self.tx()?;
        let claimed = {
            let mut due = tx
                .prepare_cached(&format!(
                    "SELECT {HANDOFF_COLUMNS} FROM crm_outbox
                      WHERE state = 'pending' AND tenant = ?1 AND next_at <= ?2
                        AND (claimed_until IS NULL OR claimed_until <= ?2 OR claimed_by = ?4)
                      ORDER BY next_at, id LIMIT ?3"
                ))
                .map_err(sql("list due handoffs"))?;
            let rows: Vec<Handoff> = due
                .query_map(params![tenant, now, limit as i64, holder], handoff)
                .map_err(sql("list due handoffs"))?
                .collect::<Result<_, _>>()
                .map_err(sql("list due handoffs"))?;
            let mut claim = tx
                .prepare_cached(
                    "UPDATE crm_outbox SET claimed_by = ?2, claimed_until = ?3 WHERE id = ?1",
                )
                .map_err(sql("claim handoff"))?;
            for h in &rows {
                claim
                    .execute(params![h.id, holder, now.saturating_add(lease_ms)])
                    .map_err(sql("claim handoff"))?;
            }
            rows
        };
        tx.commit().map_err(sql("commit handoff claims"))?;
        Ok(claimed)
    }

    fn handoffs_of(&self, tenant: &str, lead_id: &str) -> Result<Vec<Handoff>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {HANDOFF_COLUMNS} FROM crm_outbox WHERE tenant = ?1 AND lead_id = ?2 ORDER BY id"
            ))
            .map_err(sql("list handoffs"))?;
        let rows = stmt
            .query_map(params![tenant, lead_id], handoff)
            .map_err(sql("list handoffs"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list handoffs"))
    }

    fn handoffs(
        &self,
        tenant: &str,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {HANDOFF_COLUMNS} FROM crm_outbox WHERE tenant = ?1 AND (?2 IS NULL OR state = ?2) ORDER BY id DESC LIMIT ?3"
            ))
            .map_err(sql("list handoffs"))?;
        let rows = stmt
            .query_map(params![tenant, state, limit as i64], handoff)
            .map_err(sql("list handoffs"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list handoffs"))
    }

    fn handoffs_delivered(
        &mut self,
        done: &[(&Handoff, &str)],
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        {
            let mut outbox = tx
                .prepare_cached(
                    "UPDATE crm_outbox SET state = 'delivered', crm_id = ?2, attempts = attempts + 1,
                            delivered_at = ?3, updated_at = ?3, last_error = NULL,
                            claimed_by = NULL, claimed_until = NULL WHERE id = ?1",
                )
                .map_err(sql("prepare handoff update"))?;
            let mut record = tx
                .prepare_cached(
                    "INSERT INTO crm_records (tenant, lead_id, target, crm_id, first_at, last_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     ON CONFLICT (tenant, lead_id, target) DO UPDATE SET crm_id = excluded.crm_id, last_at = excluded.last_at",
                )
                .map_err(sql("prepare CRM record"))?;
            let mut decision = tx
                .prepare_cached(
                    "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
                     VALUES (?1, NULL, 'handoff', ?2, 'delivered', NULL, ?3)",
                )
                .map_err(sql("prepare handoff decision"))?;
            for (h, crm_id) in done {
                outbox
                    .execute(params![h.id, crm_id, now])
                    .map_err(sql("mark handoff delivered"))?;
                record
                    .execute(params![h.tenant, h.lead_id, h.target, crm_id, now])
                    .map_err(sql("record CRM id"))?;
                decision
                    .execute(params![h.lead_id, h.target, now])
                    .map_err(sql("record handoff"))?;
            }
        }
        tx.commit().map_err(sql("commit handoffs"))
    }

    fn handoff_retry(
        &self,
        id: i64,
        next_at: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE crm_outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3, updated_at = ?4,
                        claimed_by = NULL, claimed_until = NULL WHERE id = ?1",
                params![id, next_at, error, now],
            )
            .map_err(sql("schedule handoff retry"))?;
        Ok(())
    }

    fn handoff_failed(
        &mut self,
        h: &Handoff,
        state: &str,
        code: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "UPDATE crm_outbox SET state = ?2, attempts = attempts + 1, last_error = ?3, updated_at = ?4,
                    claimed_by = NULL, claimed_until = NULL WHERE id = ?1",
            params![h.id, state, error, now],
        )
        .map_err(sql("fail handoff"))?;
        tx.execute(
            "INSERT INTO exceptions (lead_id, run_id, capability, component, code, error, created_at)
             VALUES (?1, NULL, 'handoff', ?2, ?3, ?4, ?5)",
            params![h.lead_id, h.target, code, error, now],
        )
        .map_err(sql("record handoff exception"))?;
        tx.commit().map_err(sql("commit handoff failure"))
    }

    fn retry_handoffs(&mut self, tenant: &str, ids: &[i64], now: i64) -> Result<usize, StoreError> {
        let tx = self.tx()?;
        let mut n = 0;
        {
            let mut list = tx
                .prepare(
                    "SELECT id, lead_id FROM crm_outbox WHERE tenant = ?1 AND state IN ('failed', 'dead')",
                )
                .map_err(sql("list failed handoffs"))?;
            let rows: Vec<(i64, String)> = list
                .query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql("list failed handoffs"))?
                .collect::<Result<_, _>>()
                .map_err(sql("list failed handoffs"))?;
            for (id, lead) in rows {
                if !ids.is_empty() && !ids.contains(&id) {
                    continue;
                }
                tx.execute(
                    "UPDATE crm_outbox SET state = 'pending', attempts = 0, next_at = ?2, updated_at = ?2 WHERE id = ?1",
                    params![id, now],
                )
                .map_err(sql("requeue handoff"))?;
                tx.execute(
                    "UPDATE exceptions SET resolved_at = ?2 WHERE lead_id = ?1 AND capability = 'handoff' AND resolved_at IS NULL",
                    params![lead, now],
                )
                .map_err(sql("resolve handoff exception"))?;
                n += 1;
            }
        }
        tx.commit().map_err(sql("commit handoff retry"))?;
        Ok(n)
    }

    fn crm_record(
        &self,
        tenant: &str,
        lead_id: &str,
        target: &str,
    ) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT crm_id FROM crm_records WHERE tenant = ?1 AND lead_id = ?2 AND target = ?3",
                params![tenant, lead_id, target],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read CRM record"))
    }

    fn lead_of_crm_record(
        &self,
        tenant: &str,
        target: &str,
        crm_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached(LEAD_OF_CRM_RECORD)
            .and_then(|mut s| {
                s.query_row(params![tenant, target, crm_id], |r| r.get(0))
                    .optional()
            })
            .map_err(sql("find a lead by its CRM id"))
    }
}

impl SqliteStore {
    /// Surfaced leads not yet handed on (score changes to write to the CRM).
    pub fn undelivered_surfaced(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, lead_id FROM pipeline_outbox WHERE tenant = ?1 AND delivered_at IS NULL ORDER BY id LIMIT ?2",
            )
            .map_err(sql("list surfaced leads"))?;
        let rows = stmt
            .query_map(params![tenant, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sql("list surfaced leads"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list surfaced leads"))
    }

    /// Marks surfaced leads handed on.
    pub fn surfaced_delivered(&self, ids: &[i64], now: i64) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("UPDATE pipeline_outbox SET delivered_at = ?2 WHERE id = ?1")
            .map_err(sql("mark surfaced delivered"))?;
        for id in ids {
            stmt.execute(params![id, now])
                .map_err(sql("mark surfaced delivered"))?;
        }
        Ok(())
    }
}
