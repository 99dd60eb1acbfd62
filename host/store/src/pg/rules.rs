//! Workflow rules' records on PostgreSQL (`crate::rules`): the same SQL as
//! SQLite's; waiting leads, due timers and pending actions are claimed
//! with `FOR UPDATE SKIP LOCKED`, so hosts working at once never take the
//! same one, and a lead's record is written only over the version read.

use super::{PgStore, pg};
use crate::StoreError;
use crate::rules::*;

const CLAIM_INBOX: &str = "UPDATE rule_inbox SET claimed_by = $1, claimed_until = $2
    WHERE id IN (SELECT id FROM rule_inbox
                  WHERE tenant = $3 AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                  ORDER BY id LIMIT $5
                  FOR UPDATE SKIP LOCKED)
    RETURNING id, lead_id, kind, ref, at";
const CLAIM_DUE: &str = "UPDATE rule_leads SET claimed_by = $1, claimed_until = $2
    WHERE id IN (SELECT id FROM rule_leads
                  WHERE tenant = $3 AND due_at IS NOT NULL AND due_at <= $4
                    AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                  ORDER BY due_at, id LIMIT $5
                  FOR UPDATE SKIP LOCKED)
    RETURNING lead_id, due_at";
const CLAIM_ACTIONS: &str = "UPDATE rule_actions SET claimed_by = $1, claimed_until = $2
    WHERE id IN (SELECT id FROM rule_actions
                  WHERE tenant = $3 AND state = 'pending' AND next_at <= $4
                    AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                    AND ($5::BIGINT = 1 OR kind NOT IN ('crm_update', 'crm_task', 'sequence'))
                  ORDER BY next_at, id LIMIT $6
                  FOR UPDATE SKIP LOCKED)
    RETURNING id, execution_id, idem_key, lead_id, kind, body, state, attempts, outcome, updated_at";
const EXECUTIONS: &str =
    "SELECT id, idem_key, rule_id, version, lead_id, fired_by, mode, at, record, created_at
    FROM rule_executions
    WHERE tenant = $1 AND ($2::text IS NULL OR lead_id = $2) AND at >= $3 AND at < $4
    ORDER BY at, id LIMIT $5";
const ACTIONS_OF: &str =
    "SELECT id, execution_id, idem_key, lead_id, kind, body, state, attempts, outcome, updated_at
    FROM rule_actions WHERE tenant = $1 AND lead_id = $2 ORDER BY id";

fn action_row(r: &postgres::Row) -> RuleActionRow {
    RuleActionRow {
        id: r.get(0),
        execution_id: r.get(1),
        key: r.get(2),
        lead_id: r.get(3),
        kind: r.get(4),
        body: r.get(5),
        state: r.get(6),
        attempts: r.get(7),
        outcome: r.get(8),
        updated_at: r.get(9),
    }
}

impl Rules for PgStore {
    fn load_rule_versions(
        &mut self,
        tenant: &str,
        versions: &[RuleVersion],
        now: i64,
    ) -> Result<Vec<RuleVersion>, StoreError> {
        let mut tx = self.tx("record rule versions")?;
        // Hosts loading at once: one writes, the others find its versions.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('leadgate.rule_versions:' || $1))",
            &[&tenant],
        )
        .map_err(pg("lock rule versions"))?;
        let mut refused = Vec::new();
        for v in versions {
            let known = tx
                .query_cached(VERSION_DIGEST, &[&tenant, &v.rule_id, &v.version])
                .map_err(pg("read rule version"))?;
            match known.first().map(|r| r.get::<_, String>(0)) {
                Some(d) if d == v.digest => {}
                Some(_) => refused.push(v.clone()),
                None => {
                    tx.execute_cached(
                        INSERT_VERSION,
                        &[&tenant, &v.rule_id, &v.version, &v.digest, &v.doc, &now],
                    )
                    .map_err(pg("record rule version"))?;
                }
            }
        }
        tx.commit().map_err(pg("commit rule versions"))?;
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
        let mut tx = self.tx("queue for rules")?;
        for (lead, kind, reference) in items {
            tx.execute_cached(QUEUE, &[&tenant, lead, kind, reference, &at])
                .map_err(pg("queue for rules"))?;
        }
        tx.commit().map_err(pg("commit rules queue"))?;
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut tx = self.tx("claim rules inbox")?;
        let rows = tx
            .query_cached(CLAIM_INBOX, &[&holder, &until, &tenant, &now, &limit])
            .map_err(pg("claim rules inbox"))?;
        tx.commit().map_err(pg("commit rules inbox claims"))?;
        let mut out: Vec<InboxRow> = rows
            .iter()
            .map(|r| InboxRow {
                id: r.get(0),
                lead_id: r.get(1),
                kind: r.get(2),
                reference: r.get(3),
                at: r.get(4),
            })
            .collect();
        out.sort_by_key(|r| r.id);
        Ok(out)
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut tx = self.tx("claim due rule timers")?;
        let rows = tx
            .query_cached(CLAIM_DUE, &[&holder, &until, &tenant, &now, &limit])
            .map_err(pg("claim due rule timers"))?;
        tx.commit().map_err(pg("commit rule timer claims"))?;
        let mut out: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        out.sort_by_key(|(lead, due)| (*due, lead.clone()));
        Ok(out)
    }

    fn rule_lead(&self, tenant: &str, lead: &str) -> Result<Option<RuleLeadRow>, StoreError> {
        let row = self
            .client()
            .query_opt(RULE_LEAD, &[&tenant, &lead])
            .map_err(pg("read rules record"))?;
        Ok(row.map(|r| RuleLeadRow {
            lead_id: r.get(0),
            state: r.get(1),
            version: r.get(2),
            due_at: r.get(3),
        }))
    }

    fn rule_events(
        &self,
        tenant: &str,
        lead: &str,
        since: i64,
    ) -> Result<Vec<RuleEventRow>, StoreError> {
        let rows = self
            .client()
            .query(RULE_EVENTS, &[&tenant, &since, &lead])
            .map_err(pg("read a lead's events"))?;
        Ok(rows
            .iter()
            .map(|r| RuleEventRow {
                id: r.get(0),
                kind: r.get(1),
                at: r.get(2),
                category: r.get(3),
                url: r.get(4),
            })
            .collect())
    }

    fn commit_rules(
        &mut self,
        tenant: &str,
        c: &RulesCommit,
        now: i64,
    ) -> Result<Committed, StoreError> {
        let mut tx = self.tx("write rules")?;
        let written = match c.read_version {
            Some(v) => tx.execute_cached(
                UPDATE_LEAD,
                &[&c.state, &c.due_at, &now, &tenant, &c.lead_id, &v],
            ),
            None => tx.execute_cached(
                INSERT_LEAD,
                &[&tenant, &c.lead_id, &c.state, &c.due_at, &now],
            ),
        }
        .map_err(pg("write rules record"))?;
        if written == 0 {
            return Ok(Committed::Stale);
        }
        let mut recorded = Vec::new();
        let mut repeated = Vec::new();
        for e in &c.executions {
            let rows = tx
                .query_cached(
                    INSERT_EXECUTION,
                    &[
                        &tenant,
                        &e.key,
                        &e.rule_id,
                        &e.version,
                        &e.lead_id,
                        &e.fired_by,
                        &e.mode,
                        &e.at,
                        &e.record,
                        &now,
                    ],
                )
                .map_err(pg("record rule execution"))?;
            let Some(id) = rows.first().map(|r| r.get::<_, i64>(0)) else {
                repeated.push(e.key.clone());
                continue;
            };
            for (n, a) in e.actions.iter().enumerate() {
                tx.execute_cached(
                    INSERT_ACTION,
                    &[
                        &tenant,
                        &id,
                        &action_key(&e.key, n),
                        &e.lead_id,
                        &a.kind,
                        &a.body,
                        &a.state,
                        &now,
                        &a.outcome,
                    ],
                )
                .map_err(pg("record rule action"))?;
            }
            recorded.push(e.key.clone());
        }
        for id in &c.inbox {
            tx.execute_cached(DROP_INBOX, &[id])
                .map_err(pg("drop rules inbox row"))?;
        }
        tx.commit().map_err(pg("commit rules"))?;
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
        let rows = self
            .client()
            .query(EXECUTIONS, &[&tenant, &lead, &from, &to, &limit])
            .map_err(pg("list rule executions"))?;
        Ok(rows
            .iter()
            .map(|r| ExecutionRow {
                id: r.get(0),
                key: r.get(1),
                rule_id: r.get(2),
                version: r.get(3),
                lead_id: r.get(4),
                fired_by: r.get(5),
                mode: r.get(6),
                at: r.get(7),
                record: r.get(8),
                created_at: r.get(9),
            })
            .collect())
    }

    fn rule_actions_of(&self, tenant: &str, lead: &str) -> Result<Vec<RuleActionRow>, StoreError> {
        let rows = self
            .client()
            .query(ACTIONS_OF, &[&tenant, &lead])
            .map_err(pg("list rule actions"))?;
        Ok(rows.iter().map(action_row).collect())
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let remote = i64::from(remote);
        let mut tx = self.tx("claim rule actions")?;
        let rows = tx
            .query_cached(
                CLAIM_ACTIONS,
                &[&holder, &until, &tenant, &now, &remote, &limit],
            )
            .map_err(pg("claim rule actions"))?;
        tx.commit().map_err(pg("commit rule action claims"))?;
        let mut out: Vec<RuleActionRow> = rows.iter().map(action_row).collect();
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    fn finish_rule_action(
        &mut self,
        id: i64,
        state: &str,
        outcome: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx("finish rule action")?;
        tx.execute_cached(FINISH_ACTION, &[&state, &outcome, &retry_at, &now, &id])
            .map_err(pg("finish rule action"))?;
        tx.commit().map_err(pg("commit rule action"))?;
        Ok(())
    }

    fn rule_score_actions(
        &self,
        tenant: &str,
        leads: Option<&[String]>,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = match leads {
            Some(ids) => self.client().query(
                "SELECT lead_id, idem_key, body FROM rule_actions
                  WHERE tenant = $1 AND lead_id = ANY($2)
                    AND kind = 'score' AND state = 'done' ORDER BY id",
                &[&tenant, &ids],
            ),
            None => self.client().query(ALL_SCORE_ACTIONS, &[&tenant]),
        }
        .map_err(pg("read score actions"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn open_rule_review(
        &mut self,
        tenant: &str,
        lead: &str,
        kind: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tx("open a review item")?;
        let n = tx
            .execute_cached(OPEN_REVIEW, &[&tenant, &lead, &kind, &reason, &now])
            .map_err(pg("open a review item"))?;
        tx.commit().map_err(pg("commit a review item"))?;
        Ok(n > 0)
    }

    fn queue_enrichment(
        &mut self,
        tenant: &str,
        lead: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx("queue re-enrichment")?;
        tx.execute_cached(QUEUE_ENRICHMENT, &[&lead, &tenant, &reason, &now])
            .map_err(pg("queue re-enrichment"))?;
        tx.commit().map_err(pg("commit re-enrichment"))?;
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
        let mut tx = self.tx("record stage")?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('leadgate.stage:' || $1 || ':' || $2))",
            &[&tenant, &lead],
        )
        .map_err(pg("lock stage"))?;
        let current = tx
            .query_cached(STAGE_OF, &[&tenant, &lead])
            .map_err(pg("read stage"))?
            .first()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)));
        let Some(change) = stage_change(current.as_ref(), stage, at) else {
            return Ok(false);
        };
        tx.execute_cached(INSERT_STAGE, &[&tenant, &lead, &stage, &at, &source])
            .map_err(pg("record stage"))?;
        tx.commit().map_err(pg("commit stage"))?;
        Ok(change)
    }

    fn stage_of(&self, tenant: &str, lead: &str) -> Result<Option<(String, i64)>, StoreError> {
        let row = self
            .client()
            .query_opt(STAGE_OF, &[&tenant, &lead])
            .map_err(pg("read stage"))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn rules_backlog(&self, tenant: &str) -> Result<RulesBacklog, StoreError> {
        let r = self
            .client()
            .query_one(BACKLOG, &[&tenant])
            .map_err(pg("count the rules backlog"))?;
        Ok(RulesBacklog {
            inbox: r.get(0),
            timers: r.get(1),
            actions: r.get(2),
        })
    }
}
