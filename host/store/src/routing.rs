//! Routing's records: the reps who can receive a tenant's leads (their
//! settings as JSON, which the store does not read, and their load
//! counters), each lead's assignments with their explanations, and
//! durable timers — a row per due time, claimed by one host, so a
//! scheduler's tick costs the timers due, never a scan of every lead.
//!
//! The SQL is shared with PostgreSQL (`pg/routing.rs`): `$N` parameters,
//! numbered in the order they first appear, mean the same to both.

use crate::{SqliteStore, StoreError, sql};
use rusqlite::{OptionalExtension, Row, params};

/// A rep as stored: settings (JSON) and load counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepRow {
    pub id: String,
    pub doc: String,
    /// The rep's local date `today` counts.
    pub day: String,
    pub today: i64,
    /// Assigned and not yet touched.
    pub open: i64,
    pub total: i64,
    pub last_at: Option<i64>,
    /// The tenant-wide turn of the rep's last assignment.
    pub turn: i64,
    pub touched: i64,
    pub touched_in_sla: i64,
    pub breached: i64,
    pub updated_at: i64,
}

/// An assignment to record.
#[derive(Debug, Clone)]
pub struct NewAssignment<'a> {
    pub lead_id: &'a str,
    /// None: no one could take the lead (`state` is `queued`).
    pub rep_id: Option<&'a str>,
    /// The rep's local date, for their daily count.
    pub rep_day: &'a str,
    /// The assignment's turn (round robin's order).
    pub turn: i64,
    pub team: &'a str,
    pub step: &'a str,
    /// `open` (awaiting the rep's first touch) or `queued`.
    pub state: &'a str,
    /// The decision with its candidates, as JSON.
    pub explanation: &'a str,
    pub domain: Option<&'a str>,
    pub company_key: Option<&'a str>,
    pub sla_due_at: Option<i64>,
    /// `routing`, `sla`, or the person who assigned it.
    pub assigned_by: &'a str,
    /// The timer started with it: kind and due time.
    pub timer: Option<(&'a str, i64)>,
}

/// An assignment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRow {
    pub id: i64,
    pub tenant: String,
    pub lead_id: String,
    pub rep_id: Option<String>,
    pub team: String,
    pub step: String,
    /// `open`, `touched`, `escalated` (SLA missed, the rep keeps it),
    /// `breached` (SLA missed, reassigned), `queued`, `reassigned`.
    pub state: String,
    pub explanation: String,
    pub sla_due_at: Option<i64>,
    pub assigned_by: String,
    pub created_at: i64,
    pub touched_at: Option<i64>,
    /// When a later assignment replaced it; none for the current one.
    pub replaced_at: Option<i64>,
}

/// A timer that came due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRow {
    pub id: i64,
    pub tenant: String,
    /// `sla` (an assignment's response time) or `route` (a queued lead
    /// routed again).
    pub kind: String,
    /// The assignment it belongs to.
    pub ref_id: i64,
    pub due_at: i64,
}

/// Who owns an account, from another of its leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountOwnerRow {
    pub rep_id: String,
    pub lead_id: String,
    /// `domain` or `company_key`.
    pub by: String,
}

/// The routing aggregate.
pub trait Routing {
    /// `tenant`'s reps, by id.
    fn reps(&self, tenant: &str) -> Result<Vec<RepRow>, StoreError>;

    /// Adds or replaces a rep's settings (its counters are kept); true
    /// when it was new.
    fn put_rep(&mut self, tenant: &str, id: &str, doc: &str, now: i64) -> Result<bool, StoreError>;

    /// Writes `reps` (id, settings) when `tenant` has none; how many.
    fn seed_reps(
        &mut self,
        tenant: &str,
        reps: &[(String, String)],
        now: i64,
    ) -> Result<usize, StoreError>;

    /// Records an assignment as the lead's current one: the one before is
    /// replaced (its timers stopped, its rep's open count given back),
    /// the rep's counters move, and the timer starts. Returns its id.
    fn assign(&mut self, tenant: &str, a: &NewAssignment<'_>, now: i64) -> Result<i64, StoreError>;

    /// The lead's current assignment.
    fn assignment(&self, tenant: &str, lead: &str) -> Result<Option<AssignmentRow>, StoreError>;

    /// The lead's assignments, oldest first.
    fn assignments_of(&self, tenant: &str, lead: &str) -> Result<Vec<AssignmentRow>, StoreError>;

    fn assignment_by_id(&self, id: i64) -> Result<Option<AssignmentRow>, StoreError>;

    /// The rep of the newest current assignment of another lead with the
    /// same corporate domain, else the same company key.
    fn account_owner(
        &self,
        tenant: &str,
        lead: &str,
        domain: Option<&str>,
        company_key: Option<&str>,
    ) -> Result<Option<AccountOwnerRow>, StoreError>;

    /// Records the first touch of the lead's current assignment (open or
    /// escalated): its timer stops and the rep's counters move. None when
    /// there is nothing awaiting a touch.
    fn touch(
        &mut self,
        tenant: &str,
        lead: &str,
        at: i64,
    ) -> Result<Option<AssignmentRow>, StoreError>;

    /// Marks an open assignment's SLA missed: `breached` (it is to be
    /// reassigned: the rep's open count given back) or `escalated` (the
    /// rep keeps it). False when it was no longer open.
    fn miss_sla(&mut self, id: i64, state: &str, now: i64) -> Result<bool, StoreError>;

    /// Claims up to `limit` of `tenant`'s due timers for `holder` until
    /// `now + lease_ms`, earliest first (a holder's own claims and run-out
    /// claims are taken again).
    fn claim_due_timers(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<TimerRow>, StoreError>;

    /// Starts a timer for assignment `ref_id`.
    fn start_timer(
        &mut self,
        tenant: &str,
        kind: &str,
        ref_id: i64,
        due: i64,
    ) -> Result<(), StoreError>;

    /// Ends a timer (fired, or no longer needed).
    fn finish_timer(&mut self, id: i64, now: i64) -> Result<(), StoreError>;

    /// Up to `limit` accepted leads of `tenant` whose qualification is
    /// `state` and that were never assigned, by id.
    fn unassigned(
        &self,
        tenant: &str,
        state: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// `tenant`'s timers not yet done.
    fn pending_timers(&self, tenant: &str) -> Result<i64, StoreError>;
}

pub(crate) const REP_COLUMNS: &str =
    "id, doc, load_day, assigned_day, open_count, assigned_total, last_assigned_at,
    touched, touched_in_sla, breached, updated_at, turn";

pub(crate) const ASSIGNMENT_COLUMNS: &str =
    "id, tenant, lead_id, rep_id, team, step, state, explanation, sla_due_at,
    assigned_by, created_at, touched_at, replaced_at";

pub(crate) const PUT_REP: &str =
    "INSERT INTO reps (tenant, id, doc, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at";

pub(crate) const REPLACE_CURRENT: &str = "UPDATE assignments SET replaced_at = $1,
        state = CASE WHEN state IN ('open', 'queued', 'escalated') THEN 'reassigned' ELSE state END
    WHERE tenant = $2 AND lead_id = $3 AND replaced_at IS NULL";

pub(crate) const STOP_TIMERS: &str =
    "UPDATE timers SET done_at = $1 WHERE ref_id = $2 AND done_at IS NULL";

/// A rep's open count given back (an assignment that left `open` or
/// `escalated` without a touch).
pub(crate) const GIVE_BACK: &str =
    "UPDATE reps SET open_count = open_count - 1 WHERE tenant = $1 AND id = $2 AND open_count > 0";

pub(crate) const INSERT_ASSIGNMENT: &str =
    "INSERT INTO assignments (tenant, lead_id, rep_id, team, step, state, explanation,
        domain, company_key, sla_due_at, assigned_by, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id";

pub(crate) const COUNT_ASSIGNED: &str = "UPDATE reps SET
        assigned_day = CASE WHEN load_day = $1 THEN assigned_day + 1 ELSE 1 END,
        load_day = $1, open_count = open_count + 1, assigned_total = assigned_total + 1,
        last_assigned_at = $2, turn = $3
    WHERE tenant = $4 AND id = $5";

pub(crate) const INSERT_TIMER: &str =
    "INSERT INTO timers (tenant, kind, ref_id, due_at) VALUES ($1, $2, $3, $4)";

pub(crate) const ACCOUNT_OWNER: &str = "SELECT rep_id, lead_id, found_by FROM (
        SELECT * FROM (SELECT rep_id, lead_id, 'domain' AS found_by, 0 AS pref FROM assignments
         WHERE tenant = $1 AND domain = $2 AND lead_id <> $3 AND replaced_at IS NULL AND rep_id IS NOT NULL
         ORDER BY id DESC LIMIT 1) by_domain
        UNION ALL
        SELECT * FROM (SELECT rep_id, lead_id, 'company_key' AS found_by, 1 AS pref FROM assignments
         WHERE tenant = $1 AND company_key = $4 AND lead_id <> $3 AND replaced_at IS NULL AND rep_id IS NOT NULL
         ORDER BY id DESC LIMIT 1) by_company
    ) owners ORDER BY pref LIMIT 1";

pub(crate) const TOUCH: &str = "UPDATE assignments SET state = 'touched', touched_at = $1
    WHERE tenant = $2 AND lead_id = $3 AND replaced_at IS NULL AND state IN ('open', 'escalated')
    RETURNING id";

pub(crate) const COUNT_TOUCH: &str = "UPDATE reps SET
        open_count = CASE WHEN open_count > 0 THEN open_count - 1 ELSE 0 END,
        touched = touched + 1,
        touched_in_sla = touched_in_sla + $1
    WHERE tenant = $2 AND id = $3";

pub(crate) const MISS_SLA: &str = "UPDATE assignments SET state = $1
    WHERE id = $2 AND state = 'open' AND replaced_at IS NULL
    RETURNING tenant, rep_id";

pub(crate) const COUNT_BREACH: &str = "UPDATE reps SET breached = breached + 1,
        open_count = CASE WHEN $1 AND open_count > 0 THEN open_count - 1 ELSE open_count END
    WHERE tenant = $2 AND id = $3";

pub(crate) const UNASSIGNED: &str = "SELECT l.id FROM leads l
    WHERE l.tenant = $1 AND l.status = 'accepted' AND l.qualification = $2
      AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.tenant = l.tenant AND a.lead_id = l.id)
    ORDER BY l.id LIMIT $3";

pub(crate) const CLAIM_TIMERS_SQLITE: &str = "UPDATE timers SET claimed_by = $1, claimed_until = $2
    WHERE id IN (SELECT id FROM timers
                  WHERE tenant = $3 AND done_at IS NULL AND due_at <= $4
                    AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                  ORDER BY due_at, id LIMIT $5)
    RETURNING id, tenant, kind, ref_id, due_at";

fn rep_row(r: &Row<'_>) -> rusqlite::Result<RepRow> {
    Ok(RepRow {
        id: r.get(0)?,
        doc: r.get(1)?,
        day: r.get(2)?,
        today: r.get(3)?,
        open: r.get(4)?,
        total: r.get(5)?,
        last_at: r.get(6)?,
        touched: r.get(7)?,
        touched_in_sla: r.get(8)?,
        breached: r.get(9)?,
        updated_at: r.get(10)?,
        turn: r.get(11)?,
    })
}

fn assignment_row(r: &Row<'_>) -> rusqlite::Result<AssignmentRow> {
    Ok(AssignmentRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        lead_id: r.get(2)?,
        rep_id: r.get(3)?,
        team: r.get(4)?,
        step: r.get(5)?,
        state: r.get(6)?,
        explanation: r.get(7)?,
        sla_due_at: r.get(8)?,
        assigned_by: r.get(9)?,
        created_at: r.get(10)?,
        touched_at: r.get(11)?,
        replaced_at: r.get(12)?,
    })
}

fn timer_row(r: &Row<'_>) -> rusqlite::Result<TimerRow> {
    Ok(TimerRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        kind: r.get(2)?,
        ref_id: r.get(3)?,
        due_at: r.get(4)?,
    })
}

impl Routing for SqliteStore {
    fn reps(&self, tenant: &str) -> Result<Vec<RepRow>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {REP_COLUMNS} FROM reps WHERE tenant = $1 ORDER BY id"
            ))
            .map_err(sql("list reps"))?;
        let rows = st
            .query_map(params![tenant], rep_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql("list reps"))?;
        Ok(rows)
    }

    fn put_rep(&mut self, tenant: &str, id: &str, doc: &str, now: i64) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let existed: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM reps WHERE tenant = $1 AND id = $2",
                params![tenant, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read rep"))?;
        tx.execute(PUT_REP, params![tenant, id, doc, now])
            .map_err(sql("write rep"))?;
        tx.commit().map_err(sql("commit rep"))?;
        Ok(existed.is_none())
    }

    fn seed_reps(
        &mut self,
        tenant: &str,
        reps: &[(String, String)],
        now: i64,
    ) -> Result<usize, StoreError> {
        let tx = self.tx()?;
        let any: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM reps WHERE tenant = $1 LIMIT 1",
                params![tenant],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read reps"))?;
        if any.is_some() {
            return Ok(0);
        }
        for (id, doc) in reps {
            tx.execute(PUT_REP, params![tenant, id, doc, now])
                .map_err(sql("seed reps"))?;
        }
        tx.commit().map_err(sql("commit seeded reps"))?;
        Ok(reps.len())
    }

    fn assign(&mut self, tenant: &str, a: &NewAssignment<'_>, now: i64) -> Result<i64, StoreError> {
        let tx = self.tx()?;
        let before: Option<(i64, Option<String>, String)> = tx
            .prepare_cached(
                "SELECT id, rep_id, state FROM assignments
                  WHERE tenant = $1 AND lead_id = $2 AND replaced_at IS NULL",
            )
            .and_then(|mut s| {
                s.query_row(params![tenant, a.lead_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(sql("read current assignment"))?;
        if let Some((id, rep, state)) = &before {
            tx.prepare_cached(STOP_TIMERS)
                .and_then(|mut s| s.execute(params![now, id]))
                .map_err(sql("stop timers"))?;
            if let Some(rep) = rep
                && (state == "open" || state == "escalated")
            {
                tx.prepare_cached(GIVE_BACK)
                    .and_then(|mut s| s.execute(params![tenant, rep]))
                    .map_err(sql("count reassignment"))?;
            }
            tx.prepare_cached(REPLACE_CURRENT)
                .and_then(|mut s| s.execute(params![now, tenant, a.lead_id]))
                .map_err(sql("replace assignment"))?;
        }
        let id: i64 = tx
            .prepare_cached(INSERT_ASSIGNMENT)
            .and_then(|mut s| {
                s.query_row(
                    params![
                        tenant,
                        a.lead_id,
                        a.rep_id,
                        a.team,
                        a.step,
                        a.state,
                        a.explanation,
                        a.domain,
                        a.company_key,
                        a.sla_due_at,
                        a.assigned_by,
                        now
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(sql("record assignment"))?;
        if let Some(rep) = a.rep_id {
            tx.prepare_cached(COUNT_ASSIGNED)
                .and_then(|mut s| s.execute(params![a.rep_day, now, a.turn, tenant, rep]))
                .map_err(sql("count assignment"))?;
        }
        if let Some((kind, due)) = a.timer {
            tx.prepare_cached(INSERT_TIMER)
                .and_then(|mut s| s.execute(params![tenant, kind, id, due]))
                .map_err(sql("start timer"))?;
        }
        tx.commit().map_err(sql("commit assignment"))?;
        Ok(id)
    }

    fn assignment(&self, tenant: &str, lead: &str) -> Result<Option<AssignmentRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                  WHERE tenant = $1 AND lead_id = $2 AND replaced_at IS NULL"
            ))
            .and_then(|mut s| {
                s.query_row(params![tenant, lead], assignment_row)
                    .optional()
            })
            .map_err(sql("read assignment"))
    }

    fn assignments_of(&self, tenant: &str, lead: &str) -> Result<Vec<AssignmentRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                  WHERE tenant = $1 AND lead_id = $2 ORDER BY id"
            ))
            .and_then(|mut s| {
                s.query_map(params![tenant, lead], assignment_row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("list assignments"))
    }

    fn assignment_by_id(&self, id: i64) -> Result<Option<AssignmentRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = $1"
            ))
            .and_then(|mut s| s.query_row(params![id], assignment_row).optional())
            .map_err(sql("read assignment"))
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
        self.conn
            .prepare_cached(ACCOUNT_OWNER)
            .and_then(|mut s| {
                s.query_row(params![tenant, domain, lead, company_key], |r| {
                    Ok(AccountOwnerRow {
                        rep_id: r.get(0)?,
                        lead_id: r.get(1)?,
                        by: r.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(sql("find account owner"))
    }

    fn touch(
        &mut self,
        tenant: &str,
        lead: &str,
        at: i64,
    ) -> Result<Option<AssignmentRow>, StoreError> {
        let tx = self.tx()?;
        let id: Option<i64> = tx
            .prepare_cached(TOUCH)
            .and_then(|mut s| {
                s.query_row(params![at, tenant, lead], |r| r.get(0))
                    .optional()
            })
            .map_err(sql("record touch"))?;
        let Some(id) = id else {
            return Ok(None);
        };
        let row = tx
            .prepare_cached(&format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = $1"
            ))
            .and_then(|mut s| s.query_row(params![id], assignment_row))
            .map_err(sql("read assignment"))?;
        tx.prepare_cached(STOP_TIMERS)
            .and_then(|mut s| s.execute(params![at, id]))
            .map_err(sql("stop timers"))?;
        if let Some(rep) = &row.rep_id {
            let in_sla = i64::from(row.sla_due_at.is_none_or(|due| at <= due));
            tx.prepare_cached(COUNT_TOUCH)
                .and_then(|mut s| s.execute(params![in_sla, tenant, rep]))
                .map_err(sql("count touch"))?;
        }
        tx.commit().map_err(sql("commit touch"))?;
        Ok(Some(row))
    }

    fn miss_sla(&mut self, id: i64, state: &str, _now: i64) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let hit: Option<(String, Option<String>)> = tx
            .prepare_cached(MISS_SLA)
            .and_then(|mut s| {
                s.query_row(params![state, id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sql("record missed SLA"))?;
        let Some((tenant, rep)) = hit else {
            return Ok(false);
        };
        if let Some(rep) = rep {
            tx.prepare_cached(COUNT_BREACH)
                .and_then(|mut s| s.execute(params![state == "breached", tenant, rep]))
                .map_err(sql("count missed SLA"))?;
        }
        tx.commit().map_err(sql("commit missed SLA"))?;
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
        let tx = self.tx()?;
        let mut rows = tx
            .prepare_cached(CLAIM_TIMERS_SQLITE)
            .and_then(|mut s| {
                s.query_map(params![holder, until, tenant, now, limit], timer_row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("claim timers"))?;
        tx.commit().map_err(sql("commit timer claims"))?;
        rows.sort_by_key(|t| (t.due_at, t.id));
        Ok(rows)
    }

    fn start_timer(
        &mut self,
        tenant: &str,
        kind: &str,
        ref_id: i64,
        due: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(INSERT_TIMER)
            .and_then(|mut s| s.execute(params![tenant, kind, ref_id, due]))
            .map_err(sql("start timer"))?;
        Ok(())
    }

    fn finish_timer(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE timers SET done_at = $1 WHERE id = $2 AND done_at IS NULL")
            .and_then(|mut s| s.execute(params![now, id]))
            .map_err(sql("finish timer"))?;
        Ok(())
    }

    fn unassigned(
        &self,
        tenant: &str,
        state: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(UNASSIGNED)
            .and_then(|mut s| {
                s.query_map(params![tenant, state, limit], |r| r.get(0))
                    .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
            })
            .map_err(sql("list unassigned leads"))
    }

    fn pending_timers(&self, tenant: &str) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached("SELECT count(*) FROM timers WHERE tenant = $1 AND done_at IS NULL")
            .and_then(|mut s| s.query_row(params![tenant], |r| r.get(0)))
            .map_err(sql("count timers"))
    }
}
