//! Routing's records on PostgreSQL (`crate::routing`): the same SQL as
//! SQLite's; due timers are claimed with `FOR UPDATE SKIP LOCKED`, so hosts
//! ticking at once never fire the same timer.

use super::{PgStore, pg};
use crate::StoreError;
use crate::routing::*;

const CLAIM_TIMERS: &str = "UPDATE timers SET claimed_by = $1, claimed_until = $2
    WHERE id IN (SELECT id FROM timers
                  WHERE tenant = $3 AND done_at IS NULL AND due_at <= $4
                    AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                  ORDER BY due_at, id LIMIT $5
                  FOR UPDATE SKIP LOCKED)
    RETURNING id, tenant, kind, ref_id, due_at";

fn rep_row(r: &postgres::Row) -> RepRow {
    RepRow {
        id: r.get(0),
        doc: r.get(1),
        day: r.get(2),
        today: r.get(3),
        open: r.get(4),
        total: r.get(5),
        last_at: r.get(6),
        touched: r.get(7),
        touched_in_sla: r.get(8),
        breached: r.get(9),
        updated_at: r.get(10),
        turn: r.get(11),
    }
}

fn assignment_row(r: &postgres::Row) -> AssignmentRow {
    AssignmentRow {
        id: r.get(0),
        tenant: r.get(1),
        lead_id: r.get(2),
        rep_id: r.get(3),
        team: r.get(4),
        step: r.get(5),
        state: r.get(6),
        explanation: r.get(7),
        sla_due_at: r.get(8),
        assigned_by: r.get(9),
        created_at: r.get(10),
        touched_at: r.get(11),
        replaced_at: r.get(12),
    }
}

impl Routing for PgStore {
    fn reps(&self, tenant: &str) -> Result<Vec<RepRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!("SELECT {REP_COLUMNS} FROM reps WHERE tenant = $1 ORDER BY id"),
                &[&tenant],
            )
            .map_err(pg("list reps"))?;
        Ok(rows.iter().map(rep_row).collect())
    }

    fn put_rep(&mut self, tenant: &str, id: &str, doc: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.tx("write rep")?;
        let existed = tx
            .query_opt(
                "SELECT 1 FROM reps WHERE tenant = $1 AND id = $2 FOR UPDATE",
                &[&tenant, &id],
            )
            .map_err(pg("read rep"))?;
        tx.execute_cached(PUT_REP, &[&tenant, &id, &doc, &now])
            .map_err(pg("write rep"))?;
        tx.commit().map_err(pg("commit rep"))?;
        Ok(existed.is_none())
    }

    fn seed_reps(
        &mut self,
        tenant: &str,
        reps: &[(String, String)],
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut tx = self.tx("seed reps")?;
        // Hosts seeding at once: one writes, the others find its reps.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('leadgate.seed_reps:' || $1))",
            &[&tenant],
        )
        .map_err(pg("lock rep seeding"))?;
        let any = tx
            .query_opt("SELECT 1 FROM reps WHERE tenant = $1 LIMIT 1", &[&tenant])
            .map_err(pg("read reps"))?;
        if any.is_some() {
            return Ok(0);
        }
        for (id, doc) in reps {
            tx.execute_cached(PUT_REP, &[&tenant, id, doc, &now])
                .map_err(pg("seed reps"))?;
        }
        tx.commit().map_err(pg("commit seeded reps"))?;
        Ok(reps.len())
    }

    fn assign(&mut self, tenant: &str, a: &NewAssignment<'_>, now: i64) -> Result<i64, StoreError> {
        let mut tx = self.tx("record assignment")?;
        let before = tx
            .query_opt(
                "SELECT id, rep_id, state FROM assignments
                  WHERE tenant = $1 AND lead_id = $2 AND replaced_at IS NULL FOR UPDATE",
                &[&tenant, &a.lead_id],
            )
            .map_err(pg("read current assignment"))?;
        if let Some(row) = before {
            let (id, rep, state): (i64, Option<String>, String) =
                (row.get(0), row.get(1), row.get(2));
            tx.execute_cached(STOP_TIMERS, &[&now, &id])
                .map_err(pg("stop timers"))?;
            if let Some(rep) = rep
                && (state == "open" || state == "escalated")
            {
                tx.execute_cached(GIVE_BACK, &[&tenant, &rep])
                    .map_err(pg("count reassignment"))?;
            }
            tx.execute_cached(REPLACE_CURRENT, &[&now, &tenant, &a.lead_id])
                .map_err(pg("replace assignment"))?;
        }
        let id: i64 = tx
            .query_one(
                INSERT_ASSIGNMENT,
                &[
                    &tenant,
                    &a.lead_id,
                    &a.rep_id,
                    &a.team,
                    &a.step,
                    &a.state,
                    &a.explanation,
                    &a.domain,
                    &a.company_key,
                    &a.sla_due_at,
                    &a.assigned_by,
                    &now,
                ],
            )
            .map_err(pg("record assignment"))?
            .get(0);
        if let Some(rep) = a.rep_id {
            tx.execute_cached(COUNT_ASSIGNED, &[&a.rep_day, &now, &a.turn, &tenant, &rep])
                .map_err(pg("count assignment"))?;
        }
        if let Some((kind, due)) = a.timer {
            tx.execute_cached(INSERT_TIMER, &[&tenant, &kind, &id, &due])
                .map_err(pg("start timer"))?;
        }
        tx.commit().map_err(pg("commit assignment"))?;
        Ok(id)
    }

    fn assignment(&self, tenant: &str, lead: &str) -> Result<Option<AssignmentRow>, StoreError> {
        let row = self
            .client()
            .query_opt(
                &format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                      WHERE tenant = $1 AND lead_id = $2 AND replaced_at IS NULL"
                ),
                &[&tenant, &lead],
            )
            .map_err(pg("read assignment"))?;
        Ok(row.as_ref().map(assignment_row))
    }

    fn assignments_of(&self, tenant: &str, lead: &str) -> Result<Vec<AssignmentRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                      WHERE tenant = $1 AND lead_id = $2 ORDER BY id"
                ),
                &[&tenant, &lead],
            )
            .map_err(pg("list assignments"))?;
        Ok(rows.iter().map(assignment_row).collect())
    }

    fn assignment_by_id(&self, id: i64) -> Result<Option<AssignmentRow>, StoreError> {
        let row = self
            .client()
            .query_opt(
                &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = $1"),
                &[&id],
            )
            .map_err(pg("read assignment"))?;
        Ok(row.as_ref().map(assignment_row))
    }

    fn account_owner(
        &self,
        tenant: &str,
        lead: &str,
        domain: Option<&str>,
        company_key: Option<&str>,
    ) -> Result<Option<AccountOwnerRow>, StoreError> {
        if domain.is_none() && company_key.is_none() {
            return Ok(None);
        }
        let row = self
            .client()
            .query_opt(ACCOUNT_OWNER, &[&tenant, &domain, &lead, &company_key])
            .map_err(pg("find account owner"))?;
        Ok(row.map(|r| AccountOwnerRow {
            rep_id: r.get(0),
            lead_id: r.get(1),
            by: r.get(2),
        }))
    }

    fn touch(
        &mut self,
        tenant: &str,
        lead: &str,
        at: i64,
    ) -> Result<Option<AssignmentRow>, StoreError> {
        let mut tx = self.tx("record touch")?;
        let id: Option<i64> = tx
            .query_cached(TOUCH, &[&at, &tenant, &lead])
            .map_err(pg("record touch"))?
            .first()
            .map(|r| r.get(0));
        let Some(id) = id else {
            return Ok(None);
        };
        let row = tx
            .query_one(
                &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = $1"),
                &[&id],
            )
            .map_err(pg("read assignment"))?;
        let row = assignment_row(&row);
        tx.execute_cached(STOP_TIMERS, &[&at, &id])
            .map_err(pg("stop timers"))?;
        if let Some(rep) = &row.rep_id {
            let in_sla = i64::from(row.sla_due_at.is_none_or(|due| at <= due));
            tx.execute_cached(COUNT_TOUCH, &[&in_sla, &tenant, rep])
                .map_err(pg("count touch"))?;
        }
        tx.commit().map_err(pg("commit touch"))?;
        Ok(Some(row))
    }

    fn miss_sla(&mut self, id: i64, state: &str, _now: i64) -> Result<bool, StoreError> {
        let mut tx = self.tx("record missed SLA")?;
        let hit = tx
            .query_cached(MISS_SLA, &[&state, &id])
            .map_err(pg("record missed SLA"))?;
        let Some(row) = hit.first() else {
            return Ok(false);
        };
        let (tenant, rep): (String, Option<String>) = (row.get(0), row.get(1));
        if let Some(rep) = rep {
            tx.execute_cached(COUNT_BREACH, &[&(state == "breached"), &tenant, &rep])
                .map_err(pg("count missed SLA"))?;
        }
        tx.commit().map_err(pg("commit missed SLA"))?;
        Ok(true)
    }

    fn claim_due_timers(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<TimerRow>, StoreError> {
        let until = now.saturating_add(lease_ms);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut tx = self.tx("claim timers")?;
        let rows = tx
            .query_cached(CLAIM_TIMERS, &[&holder, &until, &tenant, &now, &limit])
            .map_err(pg("claim timers"))?;
        tx.commit().map_err(pg("commit timer claims"))?;
        let mut timers: Vec<TimerRow> = rows
            .iter()
            .map(|r| TimerRow {
                id: r.get(0),
                tenant: r.get(1),
                kind: r.get(2),
                ref_id: r.get(3),
                due_at: r.get(4),
            })
            .collect();
        timers.sort_by_key(|t| (t.due_at, t.id));
        Ok(timers)
    }

    fn start_timer(
        &mut self,
        tenant: &str,
        kind: &str,
        ref_id: i64,
        due: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(INSERT_TIMER, &[&tenant, &kind, &ref_id, &due])
            .map_err(pg("start timer"))?;
        Ok(())
    }

    fn finish_timer(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        self.client()
            .execute(
                "UPDATE timers SET done_at = $1 WHERE id = $2 AND done_at IS NULL",
                &[&now, &id],
            )
            .map_err(pg("finish timer"))?;
        Ok(())
    }

    fn unassigned(
        &self,
        tenant: &str,
        state: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .query(UNASSIGNED, &[&tenant, &state, &limit])
            .map_err(pg("list unassigned leads"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn pending_timers(&self, tenant: &str) -> Result<i64, StoreError> {
        let row = self
            .client()
            .query_one(
                "SELECT count(*) FROM timers WHERE tenant = $1 AND done_at IS NULL",
                &[&tenant],
            )
            .map_err(pg("count timers"))?;
        Ok(row.get(0))
    }
}
