//! Workflow rules' records: each rule version as loaded (immutable), each
//! lead's rules record (JSON the store does not read, with a version for
//! optimistic writes and its next inactivity timer), the leads waiting
//! for the rules, every execution under its idempotency key (unique, so
//! a retry, a redelivered event or a restart never repeats one), every
//! action with a key and state of its own, and the lifecycle stages leads
//! passed through. Waiting leads, due timers and pending actions are
//! claimed by one host for a lease; a scheduler's tick reads the due
//! timers from an index, never every lead.
//!
//! The SQL is shared with PostgreSQL (`pg/rules.rs`): `$N` parameters,
//! numbered in the order they first appear, mean the same to both.

use crate::{SqliteStore, StoreError, sql};
use rusqlite::{OptionalExtension, Row, params};

/// A rule version as loaded from its document.
#[derive(Debug, Clone)]
pub struct RuleVersion {
    pub rule_id: String,
    pub version: i64,
    /// A digest of the version's document: the same id and version with
    /// another digest is refused.
    pub digest: String,
    pub doc: String,
}

/// A lead waiting for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub id: i64,
    pub lead_id: String,
    /// `lead` (recorded or changed), `events`, `stage`, or a signal
    /// (`duplicate_conflict`, `enrichment_failed`).
    pub kind: String,
    /// The signal's own id (the review item, the attempt), else empty.
    pub reference: String,
    pub at: i64,
}

/// A lead's rules record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLeadRow {
    pub lead_id: String,
    /// The engine's record (JSON).
    pub state: String,
    /// Bumped by each write: a write from an older read is refused.
    pub version: i64,
    pub due_at: Option<i64>,
}

/// An event of a lead, as the rules read it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEventRow {
    pub id: String,
    pub kind: String,
    pub at: i64,
    pub category: Option<String>,
    pub url: Option<String>,
}

/// An action to record with its execution.
#[derive(Debug, Clone)]
pub struct NewRuleAction {
    pub kind: String,
    /// The action (JSON).
    pub body: String,
    /// `pending` (to carry out), `suppressed`, `shadow` or `failed`.
    pub state: String,
    pub outcome: Option<String>,
}

/// An execution to record.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// Rule × lead × trigger window.
    pub key: String,
    pub rule_id: String,
    pub version: i64,
    pub lead_id: String,
    pub fired_by: String,
    pub mode: String,
    pub at: i64,
    /// The whole execution (JSON): trigger, inputs, actions, suppressions.
    pub record: String,
    pub actions: Vec<NewRuleAction>,
}

/// What one pass of the rules over a lead writes, in one transaction.
#[derive(Debug, Clone)]
pub struct RulesCommit {
    pub lead_id: String,
    /// The record's version as read; `None` when it had none.
    pub read_version: Option<i64>,
    pub state: String,
    pub due_at: Option<i64>,
    pub executions: Vec<NewExecution>,
    /// Inbox rows taken care of.
    pub inbox: Vec<i64>,
}

/// What [`Rules::commit_rules`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Written: the keys recorded, and those recorded before (nothing of
    /// theirs was written again).
    Done {
        recorded: Vec<String>,
        repeated: Vec<String>,
    },
    /// Another writer changed the record since it was read: nothing was
    /// written; read it again.
    Stale,
}

/// An execution as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRow {
    pub id: i64,
    pub key: String,
    pub rule_id: String,
    pub version: i64,
    pub lead_id: String,
    pub fired_by: String,
    pub mode: String,
    pub at: i64,
    pub record: String,
    pub created_at: i64,
}

/// An action as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleActionRow {
    pub id: i64,
    pub execution_id: i64,
    pub key: String,
    pub lead_id: String,
    pub kind: String,
    pub body: String,
    /// `pending`, `done`, `failed`, `suppressed` or `shadow`.
    pub state: String,
    pub attempts: i64,
    pub outcome: Option<String>,
    pub updated_at: i64,
}

/// What waits for the rules of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RulesBacklog {
    pub inbox: i64,
    pub timers: i64,
    pub actions: i64,
}

/// The workflow rules aggregate.
pub trait Rules {
    /// Records the rule versions loaded; those whose id and version were
    /// loaded before with another document are refused (returned, nothing
    /// of theirs written).
    fn load_rule_versions(
        &mut self,
        tenant: &str,
        versions: &[RuleVersion],
        now: i64,
    ) -> Result<Vec<RuleVersion>, StoreError>;

    /// Queues leads for the rules: (lead, kind, reference).
    fn queue_for_rules(
        &mut self,
        tenant: &str,
        items: &[(String, String, String)],
        at: i64,
    ) -> Result<(), StoreError>;

    /// Claims up to `limit` waiting leads for `holder` until
    /// `now + lease_ms`, oldest first (a holder's own claims and run-out
    /// claims are taken again).
    fn claim_rule_inbox(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError>;

    /// Claims up to `limit` leads whose inactivity timer is due by `now`:
    /// (lead, due), earliest first.
    fn claim_due_rule_leads(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError>;

    /// The lead's rules record.
    fn rule_lead(&self, tenant: &str, lead: &str) -> Result<Option<RuleLeadRow>, StoreError>;

    /// The lead's attached events at or after `since` (its own and those
    /// of leads merged into it), oldest first.
    fn rule_events(
        &self,
        tenant: &str,
        lead: &str,
        since: i64,
    ) -> Result<Vec<RuleEventRow>, StoreError>;

    /// Writes the lead's record (if nobody wrote it since it was read),
    /// its executions (a key recorded before is skipped with its actions)
    /// and drops the inbox rows it took care of, in one transaction.
    fn commit_rules(
        &mut self,
        tenant: &str,
        c: &RulesCommit,
        now: i64,
    ) -> Result<Committed, StoreError>;

    /// Executions at or after `from` and before `to`, of one lead or all,
    /// oldest first, at most `limit`.
    fn rule_executions(
        &self,
        tenant: &str,
        lead: Option<&str>,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError>;

    /// The lead's actions, oldest first.
    fn rule_actions_of(&self, tenant: &str, lead: &str) -> Result<Vec<RuleActionRow>, StoreError>;

    /// Claims up to `limit` pending actions due by `now` for `holder`;
    /// with `remote` false, only those carried out in the store (not
    /// [`REMOTE_ACTIONS`], which call the CRM or a sequencing target).
    fn claim_rule_actions(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
        remote: bool,
    ) -> Result<Vec<RuleActionRow>, StoreError>;

    /// Records an action's outcome: `done` or `failed` end it; `pending`
    /// tries again at `retry_at`. Every call counts an attempt.
    fn finish_rule_action(
        &mut self,
        id: i64,
        state: &str,
        outcome: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// The score actions carried out, for `leads` or for every lead of the
    /// tenant: (lead, key, action JSON), oldest first.
    fn rule_score_actions(
        &self,
        tenant: &str,
        leads: Option<&[String]>,
    ) -> Result<Vec<(String, String, String)>, StoreError>;

    /// Opens a review item of `kind` for the lead, source `rules`; false
    /// when one of that kind exists already (one per lead and kind).
    fn open_rule_review(
        &mut self,
        tenant: &str,
        lead: &str,
        kind: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Puts the lead on the re-enrichment queue with `reason`.
    fn queue_enrichment(
        &mut self,
        tenant: &str,
        lead: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Records the lead's lifecycle stage at `at`; false when it already
    /// was in it (nothing written).
    fn set_stage(
        &mut self,
        tenant: &str,
        lead: &str,
        stage: &str,
        at: i64,
        source: &str,
    ) -> Result<bool, StoreError>;

    /// The lead's current stage and since when.
    fn stage_of(&self, tenant: &str, lead: &str) -> Result<Option<(String, i64)>, StoreError>;

    /// What waits: leads in the inbox, armed timers, pending actions.
    fn rules_backlog(&self, tenant: &str) -> Result<RulesBacklog, StoreError>;
}

/// The actions that call out of the store: the CRM, a sequencing target.
pub const REMOTE_ACTIONS: &[&str] = &["crm_update", "crm_task", "sequence"];

pub(crate) const VERSION_DIGEST: &str =
    "SELECT digest FROM rule_versions WHERE tenant = $1 AND rule_id = $2 AND version = $3";
pub(crate) const INSERT_VERSION: &str =
    "INSERT INTO rule_versions (tenant, rule_id, version, digest, doc, loaded_at)
    VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const QUEUE: &str =
    "INSERT INTO rule_inbox (tenant, lead_id, kind, ref, at) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const CLAIM_INBOX_SQLITE: &str = "UPDATE rule_inbox SET claimed_by = $1, claimed_until = $2
    WHERE id IN (SELECT id FROM rule_inbox
                  WHERE tenant = $3 AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                  ORDER BY id LIMIT $5)
    RETURNING id, lead_id, kind, ref, at";
pub(crate) const CLAIM_DUE_SQLITE: &str =
    "UPDATE rule_leads SET claimed_by = $1, claimed_until = $2
    WHERE id IN (SELECT id FROM rule_leads
                  WHERE tenant = $3 AND due_at IS NOT NULL AND due_at <= $4
                    AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                  ORDER BY due_at, id LIMIT $5)
    RETURNING lead_id, due_at";
pub(crate) const RULE_LEAD: &str =
    "SELECT lead_id, state, version, due_at FROM rule_leads WHERE tenant = $1 AND lead_id = $2";
/// The lead's own events, and those of the leads merged into it: index
/// lookups (`events_lead`, `leads_master`; the `CROSS JOIN` keeps SQLite
/// from starting at the tenant's recent events), never a scan of them.
pub(crate) const RULE_EVENTS: &str = "SELECT id, kind, at, category, url FROM (
        SELECT id, kind, at, category, url FROM events
         WHERE tenant = $1 AND at >= $2 AND lead_id = $3
        UNION ALL
        SELECT e.id, e.kind, e.at, e.category, e.url FROM leads l CROSS JOIN events e
         WHERE l.tenant = $1 AND l.master_id = $3 AND e.lead_id = l.id AND e.at >= $2
    ) lead_events ORDER BY at, id";
pub(crate) const UPDATE_LEAD: &str =
    "UPDATE rule_leads SET state = $1, version = version + 1, due_at = $2,
        claimed_by = NULL, claimed_until = NULL, updated_at = $3
    WHERE tenant = $4 AND lead_id = $5 AND version = $6";
pub(crate) const INSERT_LEAD: &str =
    "INSERT INTO rule_leads (tenant, lead_id, state, version, due_at, updated_at)
    VALUES ($1, $2, $3, 1, $4, $5) ON CONFLICT (tenant, lead_id) DO NOTHING";
pub(crate) const INSERT_EXECUTION: &str = "INSERT INTO rule_executions
        (tenant, idem_key, rule_id, version, lead_id, fired_by, mode, at, record, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (tenant, idem_key) DO NOTHING RETURNING id";
pub(crate) const INSERT_ACTION: &str = "INSERT INTO rule_actions
        (tenant, execution_id, idem_key, lead_id, kind, body, state, next_at, outcome, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)
    ON CONFLICT (tenant, idem_key) DO NOTHING";
pub(crate) const DROP_INBOX: &str = "DELETE FROM rule_inbox WHERE id = $1";
pub(crate) const EXECUTION_COLUMNS: &str =
    "id, idem_key, rule_id, version, lead_id, fired_by, mode, at, record, created_at";
pub(crate) const ACTION_COLUMNS: &str =
    "id, execution_id, idem_key, lead_id, kind, body, state, attempts, outcome, updated_at";
pub(crate) const CLAIM_ACTIONS_SQLITE: &str = "UPDATE rule_actions SET claimed_by = $1, claimed_until = $2
    WHERE id IN (SELECT id FROM rule_actions
                  WHERE tenant = $3 AND state = 'pending' AND next_at <= $4
                    AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                    AND ($5 = 1 OR kind NOT IN ('crm_update', 'crm_task', 'sequence'))
                  ORDER BY next_at, id LIMIT $6)
    RETURNING id, execution_id, idem_key, lead_id, kind, body, state, attempts, outcome, updated_at";
pub(crate) const FINISH_ACTION: &str = "UPDATE rule_actions SET state = $1, outcome = $2,
        next_at = COALESCE($3, next_at), attempts = attempts + 1,
        claimed_by = NULL, claimed_until = NULL, updated_at = $4
    WHERE id = $5 AND state = 'pending'";
pub(crate) const ALL_SCORE_ACTIONS: &str = "SELECT lead_id, idem_key, body FROM rule_actions
    WHERE tenant = $1 AND kind = 'score' AND state = 'done' ORDER BY id";
pub(crate) const OPEN_REVIEW: &str =
    "INSERT INTO review_queue (tenant, lead_id, kind, reason, source, created_at)
    VALUES ($1, $2, $3, $4, 'rules', $5) ON CONFLICT DO NOTHING";
pub(crate) const QUEUE_ENRICHMENT: &str =
    "INSERT INTO enrich_queue (lead_id, tenant, reason, queued_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (lead_id) DO UPDATE SET reason = excluded.reason, queued_at = excluded.queued_at";
/// The current stage: the latest by time of the `stage_change` events
/// attached to the lead and the stages rules and CRM webhooks recorded.
/// (A lead id belongs to one tenant: the events are read by lead alone,
/// through `events_stage`.)
pub(crate) const STAGE_OF: &str = "SELECT stage, at FROM (
        SELECT stage, at, id AS n FROM lead_stages WHERE tenant = $1 AND lead_id = $2
        UNION ALL
        SELECT category AS stage, at, 0 AS n FROM events
         WHERE lead_id = $2 AND kind = 'stage_change' AND category IS NOT NULL
    ) stages ORDER BY at DESC, n DESC LIMIT 1";
pub(crate) const INSERT_STAGE: &str =
    "INSERT INTO lead_stages (tenant, lead_id, stage, at, source) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const BACKLOG: &str = "SELECT
        (SELECT count(*) FROM rule_inbox WHERE tenant = $1),
        (SELECT count(*) FROM rule_leads WHERE tenant = $1 AND due_at IS NOT NULL),
        (SELECT count(*) FROM rule_actions WHERE tenant = $1 AND state = 'pending')";

fn execution_row(r: &Row<'_>) -> rusqlite::Result<ExecutionRow> {
    Ok(ExecutionRow {
        id: r.get(0)?,
        key: r.get(1)?,
        rule_id: r.get(2)?,
        version: r.get(3)?,
        lead_id: r.get(4)?,
        fired_by: r.get(5)?,
        mode: r.get(6)?,
        at: r.get(7)?,
        record: r.get(8)?,
        created_at: r.get(9)?,
    })
}

fn action_row(r: &Row<'_>) -> rusqlite::Result<RuleActionRow> {
    Ok(RuleActionRow {
        id: r.get(0)?,
        execution_id: r.get(1)?,
        key: r.get(2)?,
        lead_id: r.get(3)?,
        kind: r.get(4)?,
        body: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        outcome: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// Whether a stage reported at `at` is written (`Some`) and whether it
/// becomes the current one (`Some(true)`): the same stage again is not
/// written; an older report is kept in the history only.
pub(crate) fn stage_change(current: Option<&(String, i64)>, stage: &str, at: i64) -> Option<bool> {
    match current {
        Some((s, _)) if s == stage => None,
        Some((_, since)) if at < *since => Some(false),
        _ => Some(true),
    }
}

impl SqliteStore {
    /// Runs one of the claim statements (`UPDATE … RETURNING`, its last
    /// parameter the limit) in a transaction of its own: the rows claimed.
    fn claim<T, P: rusqlite::Params>(
        &mut self,
        statement: &str,
        op: &'static str,
        limit: usize,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
        params: impl FnOnce(i64) -> P,
    ) -> Result<Vec<T>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let tx = self.tx()?;
        let rows = tx
            .prepare_cached(statement)
            .and_then(|mut s| {
                s.query_map(params(limit), row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql(op))?;
        tx.commit().map_err(sql(op))?;
        Ok(rows)
    }
}

/// The key of an execution's `n`th action.
pub fn action_key(execution_key: &str, n: usize) -> String {
    format!("{execution_key}#{n}")
}

impl Rules for SqliteStore {
    fn load_rule_versions(
        &mut self,
        tenant: &str,
        versions: &[RuleVersion],
        now: i64,
    ) -> Result<Vec<RuleVersion>, StoreError> {
        let tx = self.tx()?;
        let mut refused = Vec::new();
        for v in versions {
            let known: Option<String> = tx
                .prepare_cached(VERSION_DIGEST)
                .and_then(|mut s| {
                    s.query_row(params![tenant, v.rule_id, v.version], |r| r.get(0))
                        .optional()
                })
                .map_err(sql("read rule version"))?;
            match known {
                Some(d) if d == v.digest => {}
                Some(_) => refused.push(v.clone()),
                None => {
                    tx.prepare_cached(INSERT_VERSION)
                        .and_then(|mut s| {
                            s.execute(params![tenant, v.rule_id, v.version, v.digest, v.doc, now])
                        })
                        .map_err(sql("record rule version"))?;
                }
            }
        }
        tx.commit().map_err(sql("commit rule versions"))?;
        Ok(refused)
    }

    fn queue_for_rules(
        &mut self,
        tenant: &str,
        items: &[(String, String, String)],
        at: i64,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let tx = self.tx()?;
        {
            let mut s = tx.prepare_cached(QUEUE).map_err(sql("queue for rules"))?;
            for (lead, kind, reference) in items {
                s.execute(params![tenant, lead, kind, reference, at])
                    .map_err(sql("queue for rules"))?;
            }
        }
        tx.commit().map_err(sql("commit rules queue"))?;
        Ok(())
    }

    fn claim_rule_inbox(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let until = now.saturating_add(lease_ms);
        let map = |r: &Row<'_>| {
            Ok(InboxRow {
                id: r.get(0)?,
                lead_id: r.get(1)?,
                kind: r.get(2)?,
                reference: r.get(3)?,
                at: r.get(4)?,
            })
        };
        let mut rows = self.claim(CLAIM_INBOX_SQLITE, "claim rules inbox", limit, map, |l| {
            (holder, until, tenant, now, l)
        })?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn claim_due_rule_leads(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let until = now.saturating_add(lease_ms);
        let map = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?));
        let mut rows = self.claim(CLAIM_DUE_SQLITE, "claim due rule timers", limit, map, |l| {
            (holder, until, tenant, now, l)
        })?;
        rows.sort_by_key(|(lead, due): &(String, i64)| (*due, lead.clone()));
        Ok(rows)
    }

    fn rule_lead(&self, tenant: &str, lead: &str) -> Result<Option<RuleLeadRow>, StoreError> {
        self.conn
            .prepare_cached(RULE_LEAD)
            .and_then(|mut s| {
                s.query_row(params![tenant, lead], |r| {
                    Ok(RuleLeadRow {
                        lead_id: r.get(0)?,
                        state: r.get(1)?,
                        version: r.get(2)?,
                        due_at: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(sql("read rules record"))
    }

    fn rule_events(
        &self,
        tenant: &str,
        lead: &str,
        since: i64,
    ) -> Result<Vec<RuleEventRow>, StoreError> {
        self.conn
            .prepare_cached(RULE_EVENTS)
            .and_then(|mut s| {
                s.query_map(params![tenant, since, lead], |r| {
                    Ok(RuleEventRow {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        at: r.get(2)?,
                        category: r.get(3)?,
                        url: r.get(4)?,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("read a lead's events"))
    }

    fn commit_rules(
        &mut self,
        tenant: &str,
        c: &RulesCommit,
        now: i64,
    ) -> Result<Committed, StoreError> {
        let tx = self.tx()?;
        let written = match c.read_version {
            Some(v) => tx
                .prepare_cached(UPDATE_LEAD)
                .and_then(|mut s| s.execute(params![c.state, c.due_at, now, tenant, c.lead_id, v])),
            None => tx
                .prepare_cached(INSERT_LEAD)
                .and_then(|mut s| s.execute(params![tenant, c.lead_id, c.state, c.due_at, now])),
        }
        .map_err(sql("write rules record"))?;
        if written == 0 {
            // Nothing written: dropping an own transaction rolls it back.
            return Ok(Committed::Stale);
        }
        let mut recorded = Vec::new();
        let mut repeated = Vec::new();
        for e in &c.executions {
            let id: Option<i64> = tx
                .prepare_cached(INSERT_EXECUTION)
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            tenant, e.key, e.rule_id, e.version, e.lead_id, e.fired_by, e.mode,
                            e.at, e.record, now
                        ],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(sql("record rule execution"))?;
            let Some(id) = id else {
                repeated.push(e.key.clone());
                continue;
            };
            for (n, a) in e.actions.iter().enumerate() {
                tx.prepare_cached(INSERT_ACTION)
                    .and_then(|mut s| {
                        s.execute(params![
                            tenant,
                            id,
                            action_key(&e.key, n),
                            e.lead_id,
                            a.kind,
                            a.body,
                            a.state,
                            now,
                            a.outcome
                        ])
                    })
                    .map_err(sql("record rule action"))?;
            }
            recorded.push(e.key.clone());
        }
        for id in &c.inbox {
            tx.prepare_cached(DROP_INBOX)
                .and_then(|mut s| s.execute(params![id]))
                .map_err(sql("drop rules inbox row"))?;
        }
        tx.commit().map_err(sql("commit rules"))?;
        Ok(Committed::Done { recorded, repeated })
    }

    fn rule_executions(
        &self,
        tenant: &str,
        lead: Option<&str>,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let q = format!(
            "SELECT {EXECUTION_COLUMNS} FROM rule_executions
              WHERE tenant = $1 AND ($2 IS NULL OR lead_id = $2) AND at >= $3 AND at < $4
              ORDER BY at, id LIMIT $5"
        );
        self.conn
            .prepare_cached(&q)
            .and_then(|mut s| {
                s.query_map(params![tenant, lead, from, to, limit], execution_row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("list rule executions"))
    }

    fn rule_actions_of(&self, tenant: &str, lead: &str) -> Result<Vec<RuleActionRow>, StoreError> {
        let q = format!(
            "SELECT {ACTION_COLUMNS} FROM rule_actions WHERE tenant = $1 AND lead_id = $2 ORDER BY id"
        );
        self.conn
            .prepare_cached(&q)
            .and_then(|mut s| {
                s.query_map(params![tenant, lead], action_row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("list rule actions"))
    }

    fn claim_rule_actions(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
        remote: bool,
    ) -> Result<Vec<RuleActionRow>, StoreError> {
        let until = now.saturating_add(lease_ms);
        let remote = i64::from(remote);
        let mut rows = self.claim(
            CLAIM_ACTIONS_SQLITE,
            "claim rule actions",
            limit,
            action_row,
            |l| (holder, until, tenant, now, remote, l),
        )?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn finish_rule_action(
        &mut self,
        id: i64,
        state: &str,
        outcome: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(FINISH_ACTION)
            .and_then(|mut s| s.execute(params![state, outcome, retry_at, now, id]))
            .map_err(sql("finish rule action"))?;
        Ok(())
    }

    fn rule_score_actions(
        &self,
        tenant: &str,
        leads: Option<&[String]>,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let map = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
        match leads {
            Some(ids) => {
                let ids = serde_json::to_string(ids).map_err(|source| StoreError::Json {
                    what: "lead ids",
                    source,
                })?;
                self.conn
                    .prepare_cached(
                        "SELECT lead_id, idem_key, body FROM rule_actions
                          WHERE tenant = $1 AND lead_id IN (SELECT value FROM json_each($2))
                            AND kind = 'score' AND state = 'done' ORDER BY id",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![tenant, ids], map)
                            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    })
            }
            None => self
                .conn
                .prepare_cached(ALL_SCORE_ACTIONS)
                .and_then(|mut s| {
                    s.query_map(params![tenant], map)
                        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                }),
        }
        .map_err(sql("read score actions"))
    }

    fn open_rule_review(
        &mut self,
        tenant: &str,
        lead: &str,
        kind: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(OPEN_REVIEW)
            .and_then(|mut s| s.execute(params![tenant, lead, kind, reason, now]))
            .map_err(sql("open a review item"))?;
        Ok(n > 0)
    }

    fn queue_enrichment(
        &mut self,
        tenant: &str,
        lead: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(QUEUE_ENRICHMENT)
            .and_then(|mut s| s.execute(params![lead, tenant, reason, now]))
            .map_err(sql("queue re-enrichment"))?;
        Ok(())
    }

    fn set_stage(
        &mut self,
        tenant: &str,
        lead: &str,
        stage: &str,
        at: i64,
        source: &str,
    ) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let current: Option<(String, i64)> = tx
            .prepare_cached(STAGE_OF)
            .and_then(|mut s| {
                s.query_row(params![tenant, lead], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sql("read stage"))?;
        let Some(change) = stage_change(current.as_ref(), stage, at) else {
            return Ok(false);
        };
        tx.prepare_cached(INSERT_STAGE)
            .and_then(|mut s| s.execute(params![tenant, lead, stage, at, source]))
            .map_err(sql("record stage"))?;
        tx.commit().map_err(sql("commit stage"))?;
        Ok(change)
    }

    fn stage_of(&self, tenant: &str, lead: &str) -> Result<Option<(String, i64)>, StoreError> {
        self.conn
            .prepare_cached(STAGE_OF)
            .and_then(|mut s| {
                s.query_row(params![tenant, lead], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sql("read stage"))
    }

    fn rules_backlog(&self, tenant: &str) -> Result<RulesBacklog, StoreError> {
        self.conn
            .prepare_cached(BACKLOG)
            .and_then(|mut s| {
                s.query_row(params![tenant], |r| {
                    Ok(RulesBacklog {
                        inbox: r.get(0)?,
                        timers: r.get(1)?,
                        actions: r.get(2)?,
                    })
                })
            })
            .map_err(sql("count the rules backlog"))
    }
}
