//! The CRM outbox on PostgreSQL: the same semantics as SQLite's
//! (`service/outbox.rs`); due handoffs are claimed with `FOR UPDATE SKIP
//! LOCKED`, so hosts claiming at once take different rows without waiting.

use super::{PgStore, limit, pg};
use crate::StoreError;
use crate::service::{CrmOutbox, Handoff};

const HANDOFF_COLUMNS: &str = "id, tenant, lead_id, target, op, crm_id, state, attempts, next_at, last_error, created_at, delivered_at";

fn handoff(r: &postgres::Row) -> Handoff {
    Handoff {
        id: r.get(0),
        tenant: r.get(1),
        lead_id: r.get(2),
        target: r.get(3),
        op: r.get(4),
        crm_id: r.get(5),
        state: r.get(6),
        attempts: r.get(7),
        next_at: r.get(8),
        last_error: r.get(9),
        created_at: r.get(10),
        delivered_at: r.get(11),
    }
}

impl CrmOutbox for PgStore {
    fn enqueue_handoff(
        &self,
        tenant: &str,
        lead_id: &str,
        target: &str,
        op: &str,
        crm_id: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "INSERT INTO crm_outbox (tenant, lead_id, target, op, crm_id, state, next_at, created_at, updated_at)
                 SELECT $1, $2, $3, $4, $5, 'pending', $6, $6, $6
                  WHERE NOT EXISTS (SELECT 1 FROM crm_outbox WHERE tenant = $1 AND lead_id = $2 AND target = $3
                                      AND op = $4 AND (state = 'pending' OR op = 'create'))
                 RETURNING id",
                &[&tenant, &lead_id, &target, &op, &crm_id, &now],
            )
            .map_err(pg("queue handoff"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn due_handoffs(&self, tenant: &str, now: i64, n: usize) -> Result<Vec<Handoff>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {HANDOFF_COLUMNS} FROM crm_outbox WHERE state = 'pending' AND tenant = $1 AND next_at <= $2
                      ORDER BY next_at, id LIMIT $3"
                ),
                &[&tenant, &now, &limit(n)],
            )
            .map_err(pg("list due handoffs"))?;
        Ok(rows.iter().map(handoff).collect())
    }

    fn claim_due_handoffs(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        n: usize,
    ) -> Result<Vec<Handoff>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "UPDATE crm_outbox SET claimed_by = $3, claimed_until = $4
                      WHERE id IN (SELECT id FROM crm_outbox
                                    WHERE state = 'pending' AND tenant = $1 AND next_at <= $2
                                      AND (claimed_until IS NULL OR claimed_until <= $2 OR claimed_by = $3)
                                    ORDER BY next_at, id LIMIT $5
                                    FOR UPDATE SKIP LOCKED)
                      RETURNING {HANDOFF_COLUMNS}"
                ),
                &[
                    &tenant,
                    &now,
                    &holder,
                    &now.saturating_add(lease_ms),
                    &limit(n),
                ],
            )
            .map_err(pg("claim due handoffs"))?;
        let mut claimed: Vec<Handoff> = rows.iter().map(handoff).collect();
        claimed.sort_by_key(|h| (h.next_at, h.id));
        Ok(claimed)
    }

    fn handoffs_of(&self, tenant: &str, lead_id: &str) -> Result<Vec<Handoff>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {HANDOFF_COLUMNS} FROM crm_outbox WHERE tenant = $1 AND lead_id = $2 ORDER BY id"
                ),
                &[&tenant, &lead_id],
            )
            .map_err(pg("list handoffs"))?;
        Ok(rows.iter().map(handoff).collect())
    }

    fn handoffs(
        &self,
        tenant: &str,
        state: Option<&str>,
        n: usize,
    ) -> Result<Vec<Handoff>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {HANDOFF_COLUMNS} FROM crm_outbox WHERE tenant = $1 AND ($2::TEXT IS NULL OR state = $2)
                      ORDER BY id DESC LIMIT $3"
                ),
                &[&tenant, &state, &limit(n)],
            )
            .map_err(pg("list handoffs"))?;
        Ok(rows.iter().map(handoff).collect())
    }

    fn handoffs_delivered(
        &mut self,
        done: &[(&Handoff, &str)],
        now: i64,
    ) -> Result<(), StoreError> {
        let ids: Vec<i64> = done.iter().map(|(h, _)| h.id).collect();
        let crm_ids: Vec<&str> = done.iter().map(|(_, c)| *c).collect();
        let tenants: Vec<&str> = done.iter().map(|(h, _)| h.tenant.as_str()).collect();
        let leads: Vec<&str> = done.iter().map(|(h, _)| h.lead_id.as_str()).collect();
        let targets: Vec<&str> = done.iter().map(|(h, _)| h.target.as_str()).collect();
        let mut tx = self.tx("begin handoffs")?;
        tx.execute(
            "UPDATE crm_outbox SET state = 'delivered', crm_id = d.crm_id, attempts = attempts + 1,
                    delivered_at = $3, updated_at = $3, last_error = NULL,
                    claimed_by = NULL, claimed_until = NULL
               FROM unnest($1::BIGINT[], $2::TEXT[]) AS d(id, crm_id)
              WHERE crm_outbox.id = d.id",
            &[&ids, &crm_ids, &now],
        )
        .map_err(pg("mark handoffs delivered"))?;
        // One row per lead and target: a batch naming one twice keeps the last.
        tx.execute(
            "INSERT INTO crm_records (tenant, lead_id, target, crm_id, first_at, last_at)
             SELECT DISTINCT ON (tenant, lead_id, target) tenant, lead_id, target, crm_id, $6::BIGINT, $6::BIGINT
               FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[])
                    AS d(tenant, lead_id, target, crm_id, n)
              ORDER BY tenant, lead_id, target, n DESC
             ON CONFLICT (tenant, lead_id, target) DO UPDATE SET crm_id = excluded.crm_id, last_at = excluded.last_at",
            &[
                &tenants,
                &leads,
                &targets,
                &crm_ids,
                &(0..ids.len() as i64).collect::<Vec<i64>>(),
                &now,
            ],
        )
        .map_err(pg("record CRM ids"))?;
        tx.execute(
            "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
             SELECT lead_id, NULL, 'handoff', target, 'delivered', NULL, $3
               FROM unnest($1::TEXT[], $2::TEXT[]) AS d(lead_id, target)",
            &[&leads, &targets, &now],
        )
        .map_err(pg("record handoffs"))?;
        tx.commit().map_err(pg("commit handoffs"))
    }

    fn handoff_retry(
        &self,
        id: i64,
        next_at: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(
                "UPDATE crm_outbox SET attempts = attempts + 1, next_at = $2, last_error = $3, updated_at = $4,
                        claimed_by = NULL, claimed_until = NULL WHERE id = $1",
                &[&id, &next_at, &error, &now],
            )
            .map_err(pg("schedule handoff retry"))?;
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
        let mut tx = self.tx("begin handoff failure")?;
        tx.execute(
            "UPDATE crm_outbox SET state = $2, attempts = attempts + 1, last_error = $3, updated_at = $4,
                    claimed_by = NULL, claimed_until = NULL WHERE id = $1",
            &[&h.id, &state, &error, &now],
        )
        .map_err(pg("fail handoff"))?;
        tx.execute(
            "INSERT INTO exceptions (lead_id, run_id, capability, component, code, error, created_at)
             VALUES ($1, NULL, 'handoff', $2, $3, $4, $5)",
            &[&h.lead_id, &h.target, &code, &error, &now],
        )
        .map_err(pg("record handoff exception"))?;
        tx.commit().map_err(pg("commit handoff failure"))
    }

    fn retry_handoffs(&mut self, tenant: &str, ids: &[i64], now: i64) -> Result<usize, StoreError> {
        let mut tx = self.tx("begin handoff retry")?;
        let requeued = tx
            .query(
                "UPDATE crm_outbox SET state = 'pending', attempts = 0, next_at = $3, updated_at = $3
                  WHERE tenant = $1 AND state IN ('failed', 'dead')
                    AND (cardinality($2::BIGINT[]) = 0 OR id = ANY($2))
                  RETURNING lead_id",
                &[&tenant, &ids, &now],
            )
            .map_err(pg("requeue handoffs"))?;
        let leads: Vec<String> = requeued.iter().map(|r| r.get(0)).collect();
        tx.execute(
            "UPDATE exceptions SET resolved_at = $2
              WHERE lead_id = ANY($1) AND capability = 'handoff' AND resolved_at IS NULL",
            &[&leads, &now],
        )
        .map_err(pg("resolve handoff exceptions"))?;
        tx.commit().map_err(pg("commit handoff retry"))?;
        Ok(leads.len())
    }

    fn crm_record(
        &self,
        tenant: &str,
        lead_id: &str,
        target: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT crm_id FROM crm_records WHERE tenant = $1 AND lead_id = $2 AND target = $3",
                &[&tenant, &lead_id, &target],
            )
            .map_err(pg("read CRM record"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn lead_of_crm_record(
        &self,
        tenant: &str,
        target: &str,
        crm_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt(
                crate::service::outbox::LEAD_OF_CRM_RECORD,
                &[&tenant, &target, &crm_id],
            )
            .map_err(pg("find a lead by its CRM id"))?;
        Ok(row.map(|r| r.get(0)))
    }
}
