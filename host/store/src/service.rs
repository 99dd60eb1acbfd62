//! What the HTTP service keeps: API keys (hashed), the intake log that makes
//! requests idempotent and survives restarts, the review queue with its SLA
//! state, alerts, and the CRM handoff outbox.

use crate::packed::{Pack, Unpacked};
use crate::{Store, StoreError, sql};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// A request as the intake log holds it.
#[derive(Debug, Clone, Serialize)]
pub struct IntakeRow {
    pub id: i64,
    pub tenant: String,
    pub key: String,
    pub kind: String,
    /// SHA-256 of the body, to tell a redelivery from a reused key.
    pub fingerprint: String,
    #[serde(skip)]
    pub body: String,
    /// The lead ids given to the request's leads, as a JSON array.
    #[serde(skip)]
    pub lead_ids: String,
    pub received_at: i64,
    /// `pending` until processed, then `done`.
    pub state: String,
    pub status_code: Option<i64>,
    #[serde(skip)]
    pub result: Option<String>,
    pub done_at: Option<i64>,
}

/// A request to log.
#[derive(Debug, Clone)]
pub struct NewIntake<'a> {
    pub tenant: &'a str,
    pub key: &'a str,
    pub kind: &'a str,
    pub fingerprint: &'a str,
    pub body: &'a str,
    pub lead_ids: &'a str,
}

/// What logging a request found.
#[derive(Debug, Clone)]
pub enum Logged {
    /// A new request, with its intake id.
    New(i64),
    /// The key was seen before.
    Seen(Box<IntakeRow>),
}

/// The scope of intake rows of forms logged before keys were scoped to
/// their route (migration 11): the form's name was not kept, so a form
/// request also looks here ([`Store::legacy_form_key`]).
pub const LEGACY_FORM_SCOPE: &str = "before migration 11: form";

/// An idempotency key scoped to the route it came to: `scope` is the
/// method and route template, with a form's name (`POST /v1/forms/contact`).
/// The same key on another route is another request. A key never holds a
/// newline (a header value cannot), so the last newline parts the two.
pub fn scoped_key(scope: &str, key: &str) -> String {
    format!("{scope}\n{key}")
}

const INTAKE_COLUMNS: &str = "id, tenant, key, kind, fingerprint, body, lead_ids, received_at, state, status_code, result, done_at";

fn intake_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IntakeRow> {
    Ok(IntakeRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        key: r.get(2)?,
        kind: r.get(3)?,
        fingerprint: r.get(4)?,
        body: r.get::<_, Unpacked>(5)?.0,
        lead_ids: r.get(6)?,
        received_at: r.get(7)?,
        state: r.get(8)?,
        status_code: r.get(9)?,
        result: r.get::<_, Option<Unpacked>>(10)?.map(|u| u.0),
        done_at: r.get(11)?,
    })
}

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

const QUEUE_SELECT: &str = "SELECT q.id, q.tenant, q.lead_id, q.kind, q.reason, q.source, q.confidence, q.created_at,
        q.escalated_at, q.fallback_at, q.fallback, q.decided_at, q.decision, q.reviewer, q.note,
        q.match_review, m.lead_a, m.lead_b, s.total,
        (SELECT count(*) FROM issues i WHERE i.lead_id = q.lead_id AND i.severity IN ('warning', 'error'))
   FROM review_queue q
   LEFT JOIN match_reviews m ON m.id = q.match_review
   LEFT JOIN scores s ON s.lead_id = q.lead_id";

fn queue_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueItem> {
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

const HANDOFF_COLUMNS: &str = "id, tenant, lead_id, target, op, crm_id, state, attempts, next_at, last_error, created_at, delivered_at";

fn handoff(r: &rusqlite::Row<'_>) -> rusqlite::Result<Handoff> {
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

/// An alert raised for people: a review item past its SLA.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    /// `review.escalated` or `review.fallback`.
    pub kind: String,
    /// The lead concerned.
    pub subject: String,
    pub message: String,
    pub created_at: i64,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub tenant: String,
    pub label: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Counts for `/metrics` and reports, per tenant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Backlog {
    pub review_open: i64,
    pub review_escalated: i64,
    pub review_overdue: i64,
    pub review_decided: i64,
    /// Decided by a person before the item was escalated.
    pub review_decided_within_sla: i64,
    pub outbox_pending: i64,
    pub outbox_delivered: i64,
    pub outbox_failed: i64,
    pub outbox_dead: i64,
    pub intake_pending: i64,
}

impl Store {
    // ---- API keys ----------------------------------------------------

    /// Stores a new key's hash.
    pub fn add_api_key(
        &self,
        tenant: &str,
        label: &str,
        hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO api_keys (hash, tenant, label, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash, tenant, label, prefix, now],
            )
            .map_err(sql("add API key"))?;
        Ok(())
    }

    /// The tenant a key hash belongs to, unless revoked.
    pub fn api_key_tenant(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT tenant FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL")
            .and_then(|mut s| s.query_row([hash], |r| r.get(0)).optional())
            .map_err(sql("look up API key"))
    }

    /// Every key of `tenant` (all tenants when `None`).
    pub fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tenant, label, prefix, created_at, revoked_at FROM api_keys
                  WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, created_at",
            )
            .map_err(sql("list API keys"))?;
        let rows = stmt
            .query_map([tenant], |r| {
                Ok(ApiKey {
                    tenant: r.get(0)?,
                    label: r.get(1)?,
                    prefix: r.get(2)?,
                    created_at: r.get(3)?,
                    revoked_at: r.get(4)?,
                })
            })
            .map_err(sql("list API keys"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list API keys"))
    }

    /// Revokes the keys of `tenant` whose prefix or label is `which`;
    /// returns how many.
    pub fn revoke_api_key(&self, tenant: &str, which: &str, now: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE api_keys SET revoked_at = ?3 WHERE tenant = ?1 AND (prefix = ?2 OR label = ?2) AND revoked_at IS NULL",
                params![tenant, which, now],
            )
            .map_err(sql("revoke API key"))
    }

    // ---- intake ------------------------------------------------------

    /// Logs requests in one transaction: each is new, or was seen before
    /// under the same tenant and key.
    pub fn log_intake(
        &mut self,
        requests: &[NewIntake<'_>],
        now: i64,
    ) -> Result<Vec<Logged>, StoreError> {
        let tx = self.tx()?;
        let mut out = Vec::with_capacity(requests.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO intake (tenant, key, kind, fingerprint, body, lead_ids, received_at, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending') ON CONFLICT (tenant, key) DO NOTHING",
                )
                .map_err(sql("prepare intake insert"))?;
            let mut seen = tx
                .prepare_cached(&format!(
                    "SELECT {INTAKE_COLUMNS} FROM intake WHERE tenant = ?1 AND key = ?2"
                ))
                .map_err(sql("prepare intake lookup"))?;
            for r in requests {
                let n = insert
                    .execute(params![
                        r.tenant,
                        r.key,
                        r.kind,
                        r.fingerprint,
                        Pack(r.body),
                        r.lead_ids,
                        now
                    ])
                    .map_err(sql("log request"))?;
                if n == 1 {
                    out.push(Logged::New(tx.last_insert_rowid()));
                } else {
                    let row = seen
                        .query_row(params![r.tenant, r.key], intake_row)
                        .map_err(sql("read logged request"))?;
                    out.push(Logged::Seen(Box::new(row)));
                }
            }
        }
        tx.commit().map_err(sql("commit intake"))?;
        Ok(out)
    }

    /// The key a form request's `key` (unscoped) was logged under before
    /// keys were scoped to their route, if `tenant` has such a row: a
    /// retry of that request is answered as it was then.
    pub fn legacy_form_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        let legacy = scoped_key(LEGACY_FORM_SCOPE, key);
        let found = self
            .conn
            .prepare_cached("SELECT 1 FROM intake WHERE tenant = ?1 AND key = ?2")
            .and_then(|mut s| s.exists(params![tenant, legacy]))
            .map_err(sql("look up idempotency key"))?;
        Ok(found.then_some(legacy))
    }

    /// The tenants with form requests logged before keys were scoped to
    /// their route.
    pub fn tenants_with_legacy_form_keys(&self) -> Result<Vec<String>, StoreError> {
        let lo = scoped_key(LEGACY_FORM_SCOPE, "");
        let hi = format!("{LEGACY_FORM_SCOPE}\u{b}");
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT tenant FROM intake WHERE key >= ?1 AND key < ?2")
            .map_err(sql("list legacy form keys"))?;
        let rows = stmt
            .query_map(params![lo, hi], |r| r.get(0))
            .map_err(sql("list legacy form keys"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list legacy form keys"))
    }

    /// Which of `keys` the tenant has logged requests under already.
    pub fn logged_keys<'k>(
        &self,
        tenant: &str,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<std::collections::HashSet<&'k str>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM intake WHERE tenant = ?1 AND key = ?2")
            .map_err(sql("look up idempotency key"))?;
        let mut found = std::collections::HashSet::new();
        for key in keys {
            if stmt
                .exists(params![tenant, key])
                .map_err(sql("look up idempotency key"))?
            {
                found.insert(key);
            }
        }
        Ok(found)
    }

    /// Records requests' results; the bodies are dropped (each lead's raw
    /// form is in `leads`).
    pub fn finish_intake(&mut self, done: &[(i64, u16, &str)], now: i64) -> Result<(), StoreError> {
        let tx = self.tx()?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE intake SET state = 'done', status_code = ?2, result = ?3, done_at = ?4, body = '' WHERE id = ?1",
                )
                .map_err(sql("prepare intake update"))?;
            for (id, code, result) in done {
                stmt.execute(params![id, *code as i64, Pack(result), now])
                    .map_err(sql("finish request"))?;
            }
        }
        tx.commit().map_err(sql("commit intake"))
    }

    /// Requests of `tenant` logged but not processed (after a restart),
    /// oldest first.
    pub fn pending_intake(&self, tenant: &str, limit: usize) -> Result<Vec<IntakeRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {INTAKE_COLUMNS} FROM intake WHERE state = 'pending' AND tenant = ?1 ORDER BY id LIMIT ?2"
            ))
            .map_err(sql("list pending requests"))?;
        let rows = stmt
            .query_map(params![tenant, limit as i64], intake_row)
            .map_err(sql("list pending requests"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list pending requests"))
    }

    /// One logged request of `tenant`.
    pub fn intake(&self, tenant: &str, id: i64) -> Result<Option<IntakeRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {INTAKE_COLUMNS} FROM intake WHERE id = ?1 AND tenant = ?2"),
                params![id, tenant],
                intake_row,
            )
            .optional()
            .map_err(sql("read request"))
    }

    /// The current score (as JSON) of each of `ids` that has one.
    pub fn score_details(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT detail FROM scores WHERE lead_id = ?1")
            .map_err(sql("read score"))?;
        let mut out = std::collections::HashMap::new();
        for id in ids {
            if let Some(d) = stmt
                .query_row([id], |r| r.get::<_, String>(0))
                .optional()
                .map_err(sql("read score"))?
            {
                out.insert(id.clone(), d);
            }
        }
        Ok(out)
    }

    /// A lead's status and qualification, if it is `tenant`'s.
    pub fn lead_state(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        self.conn
            .query_row(
                "SELECT status, qualification FROM leads WHERE id = ?1 AND tenant = ?2",
                params![id, tenant],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("read lead"))
    }

    /// A lead's issues from its latest decisions: (field, code, severity,
    /// message).
    pub fn lead_issues(
        &self,
        lead_id: &str,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT field, code, severity, message FROM issues WHERE lead_id = ?1
                  AND decision_id = (SELECT max(decision_id) FROM issues WHERE lead_id = ?1)",
            )
            .map_err(sql("list issues"))?;
        let rows = stmt
            .query_map([lead_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(sql("list issues"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list issues"))
    }

    /// Which of `ids` are recorded leads.
    pub fn recorded(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM leads WHERE id = ?1")
            .map_err(sql("look up lead"))?;
        let mut out = Vec::new();
        for id in ids {
            if stmt
                .query_row([id], |_| Ok(()))
                .optional()
                .map_err(sql("look up lead"))?
                .is_some()
            {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    // ---- review queue ------------------------------------------------

    /// Undecided items of `tenant` (every tenant when `None`), oldest first.
    pub fn open_queue(&self, tenant: Option<&str>) -> Result<Vec<QueueItem>, StoreError> {
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

    /// The open items of `tenant` an SLA threshold acts on now, oldest
    /// first: created at or before `fallback_before` and not fallen back,
    /// or created at or before `escalate_before` and not escalated. Reads
    /// only items still waiting for a threshold (`review_queue_due`): the
    /// ones due, and those escalated that wait for the fallback — not the
    /// whole open queue, which items left open past both keep growing.
    pub fn due_queue(
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

    /// One item of `tenant`.
    pub fn queue_item(&self, tenant: &str, id: i64) -> Result<Option<QueueItem>, StoreError> {
        self.conn
            .query_row(
                &format!("{QUEUE_SELECT} WHERE q.id = ?1 AND q.tenant = ?2"),
                params![id, tenant],
                queue_item,
            )
            .optional()
            .map_err(sql("read review item"))
    }

    /// Records a decision on an item; refuses one already decided (returns
    /// false). For a match item the pair's review is decided too.
    pub fn decide_queue(
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

    /// The queue item of a match review pair.
    pub fn queue_of_match(&self, match_review: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT id FROM review_queue WHERE match_review = ?1",
                [match_review],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read review item"))
    }

    /// Sets a lead's status and qualification after a person (or the SLA
    /// fallback) decided, with a decision row for the audit trail.
    pub fn set_outcome(
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

    /// Marks an item escalated (the first SLA threshold passed).
    pub fn escalate_item(&self, id: i64, now: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE review_queue SET escalated_at = ?2 WHERE id = ?1 AND escalated_at IS NULL",
                params![id, now],
            )
            .map_err(sql("escalate review item"))?;
        Ok(())
    }

    /// Marks the second SLA threshold passed: `what` is the fallback applied
    /// (`accept`, `reject`) or `manual` (escalated to a manager).
    pub fn fallback_item(&self, id: i64, what: &str, now: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE review_queue SET fallback_at = ?2, fallback = ?3 WHERE id = ?1 AND fallback_at IS NULL",
                params![id, now, what],
            )
            .map_err(sql("fall back on review item"))?;
        Ok(())
    }

    /// Raises an alert.
    pub fn add_alert(
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

    /// Alerts of `tenant`, newest first.
    pub fn alerts(&self, tenant: &str, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, kind, subject, message, created_at FROM alerts WHERE tenant = ?1 ORDER BY id DESC LIMIT ?2",
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
                })
            })
            .map_err(sql("list alerts"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list alerts"))
    }

    /// Per issue code, how reviewers decided the validation items that
    /// carried it: (code, accepted, rejected).
    pub fn review_outcomes_by_issue(
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

    // ---- CRM outbox --------------------------------------------------

    /// Queues a handoff unless one for the same lead, target and operation
    /// is still waiting (the payload is built when it is sent, so the
    /// waiting one will carry the latest data); a `create` is queued once
    /// per lead ever. Returns the id queued.
    pub fn enqueue_handoff(
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

    /// `tenant`'s handoffs due now, oldest first.
    pub fn due_handoffs(
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

    /// A lead's handoffs, oldest first.
    pub fn handoffs_of(&self, tenant: &str, lead_id: &str) -> Result<Vec<Handoff>, StoreError> {
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

    /// Handoffs of `tenant` in `state` (all states when `None`), newest first.
    pub fn handoffs(
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

    /// Records delivered handoffs with the CRM's record id, in one
    /// transaction.
    pub fn handoffs_delivered(
        &mut self,
        done: &[(&Handoff, &str)],
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        {
            let mut outbox = tx
                .prepare_cached(
                    "UPDATE crm_outbox SET state = 'delivered', crm_id = ?2, attempts = attempts + 1,
                            delivered_at = ?3, updated_at = ?3, last_error = NULL WHERE id = ?1",
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

    /// Schedules another attempt.
    pub fn handoff_retry(
        &self,
        id: i64,
        next_at: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE crm_outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, next_at, error, now],
            )
            .map_err(sql("schedule handoff retry"))?;
        Ok(())
    }

    /// Gives up on a handoff: `failed` (the CRM refused it) or `dead`
    /// (attempts exhausted); either way an exception item carries the CRM's
    /// error.
    pub fn handoff_failed(
        &mut self,
        h: &Handoff,
        state: &str,
        code: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "UPDATE crm_outbox SET state = ?2, attempts = attempts + 1, last_error = ?3, updated_at = ?4 WHERE id = ?1",
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

    /// Puts failed and dead handoffs of `tenant` back in the queue (those
    /// in `ids`, or all when empty), resolving their exception items.
    /// Returns how many.
    pub fn retry_handoffs(
        &mut self,
        tenant: &str,
        ids: &[i64],
        now: i64,
    ) -> Result<usize, StoreError> {
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

    /// The CRM's record id for a lead handed off to `target`.
    pub fn crm_record(
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

    /// Review, outbox and intake counts of `tenant`; `escalate_ms` is the
    /// SLA's first threshold, for the overdue count. Reads the open review
    /// items (the backlog, by index) and the kept counts (`tenant_counts`),
    /// never the decided items or the outbox row by row: those grow with
    /// every lead, and counting them would make a scrape grow with the store.
    pub fn backlog(&self, tenant: &str, escalate_ms: i64, now: i64) -> Result<Backlog, StoreError> {
        let mut b = Backlog::default();
        self.conn
            .prepare_cached(
                "SELECT count(*), count(escalated_at), count(CASE WHEN created_at + ?2 < ?3 THEN 1 END)
                   FROM review_queue INDEXED BY review_queue_open
                  WHERE tenant = ?1 AND decided_at IS NULL",
            )
            .and_then(|mut s| {
                s.query_row(params![tenant, escalate_ms, now], |r| {
                    b.review_open = r.get(0)?;
                    b.review_escalated = r.get(1)?;
                    b.review_overdue = r.get(2)?;
                    Ok(())
                })
            })
            .map_err(sql("count review queue"))?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, n FROM tenant_counts WHERE tenant = ?1")
            .map_err(sql("read kept counts"))?;
        let rows = stmt
            .query_map([tenant], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(sql("read kept counts"))?;
        for row in rows {
            let (name, n) = row.map_err(sql("read kept counts"))?;
            match name.as_str() {
                "review:decided" => b.review_decided = n,
                "review:in_time" => b.review_decided_within_sla = n,
                "outbox:pending" => b.outbox_pending = n,
                "outbox:delivered" => b.outbox_delivered = n,
                "outbox:failed" => b.outbox_failed = n,
                "outbox:dead" => b.outbox_dead = n,
                _ => {}
            }
        }
        b.intake_pending = self
            .conn
            .query_row(
                "SELECT count(*) FROM intake WHERE tenant = ?1 AND state = 'pending'",
                [tenant],
                |r| r.get(0),
            )
            .map_err(sql("count intake"))?;
        Ok(b)
    }

    /// Lead counts of `tenant` by status, for metrics.
    pub fn status_counts(&self, tenant: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, count(*) FROM leads WHERE tenant = ?1 GROUP BY status")
            .map_err(sql("count leads"))?;
        let rows = stmt
            .query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("count leads"))?;
        rows.collect::<Result<_, _>>().map_err(sql("count leads"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `backlog` counted over the tables, as it did before the kept counts.
    fn counted(s: &Store, tenant: &str, escalate_ms: i64, now: i64) -> Backlog {
        let mut b = Backlog::default();
        s.conn
            .query_row(
                "SELECT count(CASE WHEN decided_at IS NULL THEN 1 END),
                        count(CASE WHEN decided_at IS NULL AND escalated_at IS NOT NULL THEN 1 END),
                        count(CASE WHEN decided_at IS NULL AND created_at + ?2 < ?3 THEN 1 END),
                        count(decided_at),
                        count(CASE WHEN decided_at IS NOT NULL AND escalated_at IS NULL
                                   AND reviewer NOT LIKE 'sla:%' THEN 1 END)
                   FROM review_queue WHERE tenant = ?1",
                params![tenant, escalate_ms, now],
                |r| {
                    b.review_open = r.get(0)?;
                    b.review_escalated = r.get(1)?;
                    b.review_overdue = r.get(2)?;
                    b.review_decided = r.get(3)?;
                    b.review_decided_within_sla = r.get(4)?;
                    Ok(())
                },
            )
            .unwrap();
        for (state, slot) in [
            ("pending", &mut b.outbox_pending),
            ("delivered", &mut b.outbox_delivered),
            ("failed", &mut b.outbox_failed),
            ("dead", &mut b.outbox_dead),
        ] {
            *slot = s
                .conn
                .query_row(
                    "SELECT count(*) FROM crm_outbox WHERE tenant = ?1 AND state = ?2",
                    params![tenant, state],
                    |r| r.get(0),
                )
                .unwrap();
        }
        b.intake_pending = s
            .conn
            .query_row(
                "SELECT count(*) FROM intake WHERE tenant = ?1 AND state = 'pending'",
                [tenant],
                |r| r.get(0),
            )
            .unwrap();
        b
    }

    fn same(a: &Backlog, b: &Backlog) -> bool {
        serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
    }

    #[test]
    fn kept_counts_agree_with_the_tables_through_every_change_and_a_migration() {
        let dir = crate::test_support::TempStore::new("kept-counts");
        let mut s = dir.open();
        s.conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        let h = 3_600_000;
        let check = |s: &Store, what: &str| {
            for tenant in ["a", "b"] {
                for now in [0, 2 * h, 10 * h] {
                    let kept = s.backlog(tenant, h, now).unwrap();
                    let direct = counted(s, tenant, h, now);
                    assert!(
                        same(&kept, &direct),
                        "{what}, {tenant} at {now}: {kept:?} != {direct:?}"
                    );
                }
            }
        };
        for (tenant, lead, at) in [
            ("a", "l1", 0),
            ("a", "l2", h),
            ("a", "l3", 2 * h),
            ("a", "l4", 3 * h),
            ("b", "l5", 0),
        ] {
            enqueue_review(
                &s.conn,
                tenant,
                lead,
                "validation",
                None,
                "r",
                "form",
                Some(0.5),
                at,
            )
            .unwrap();
        }
        // The same lead and kind again: ignored, not counted twice.
        enqueue_review(
            &s.conn,
            "a",
            "l1",
            "validation",
            None,
            "r",
            "form",
            Some(0.5),
            5,
        )
        .unwrap();
        check(&s, "queued");
        let ids: Vec<i64> = s
            .open_queue(Some("a"))
            .unwrap()
            .into_iter()
            .map(|q| q.id)
            .collect();
        assert_eq!(ids.len(), 4);
        // In time; after escalation; by the fallback; escalated, open.
        assert!(
            s.decide_queue(ids[0], "accept", "ann", None, h / 2)
                .unwrap()
        );
        s.escalate_item(ids[1], 6 * h).unwrap();
        assert!(
            s.decide_queue(ids[1], "reject", "ann", None, 7 * h)
                .unwrap()
        );
        assert!(
            s.decide_queue(ids[2], "reject", "sla:fallback", None, 30 * h)
                .unwrap()
        );
        s.escalate_item(ids[3], 8 * h).unwrap();
        // Decided twice: refused, counted once.
        assert!(!s.decide_queue(ids[0], "reject", "bob", None, h).unwrap());
        check(&s, "decided");

        for (tenant, lead) in [
            ("a", "l1"),
            ("a", "l2"),
            ("a", "l3"),
            ("a", "l4"),
            ("b", "l5"),
        ] {
            s.enqueue_handoff(tenant, lead, "hubspot", "upsert", None, 1)
                .unwrap();
        }
        // Still waiting: not queued again.
        assert_eq!(
            s.enqueue_handoff("a", "l1", "hubspot", "upsert", None, 2)
                .unwrap(),
            None
        );
        check(&s, "handed off");
        let outbox = |lead: &str| -> i64 {
            s.conn
                .query_row(
                    "SELECT id FROM crm_outbox WHERE lead_id = ?1",
                    [lead],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let (o1, o2, o3) = (outbox("l1"), outbox("l2"), outbox("l3"));
        for (id, state) in [(o1, "delivered"), (o2, "failed"), (o3, "dead")] {
            s.conn
                .execute(
                    "UPDATE crm_outbox SET state = ?2 WHERE id = ?1",
                    params![id, state],
                )
                .unwrap();
        }
        // A retry touches other columns only.
        s.handoff_retry(o1, 9, "429", 3).unwrap();
        check(&s, "delivered, failed, dead");
        assert_eq!(s.retry_handoffs("a", &[], 4).unwrap(), 2);
        check(&s, "replayed");
        s.conn
            .execute_batch("DELETE FROM crm_outbox WHERE lead_id = 'l4'; DELETE FROM review_queue WHERE lead_id = 'l1';")
            .unwrap();
        check(&s, "deleted");

        // A store from before the counts: they are counted at the migration.
        s.conn
            .execute_batch(
                "DROP TABLE tenant_counts;
                 DROP TRIGGER crm_outbox_counted; DROP TRIGGER crm_outbox_recounted;
                 DROP TRIGGER crm_outbox_uncounted; DROP TRIGGER review_queue_decided;
                 DROP TRIGGER review_queue_uncounted; DROP TABLE match_keys_mid; DROP TABLE match_keys_mid_moved;
                 PRAGMA user_version = 8;",
            )
            .unwrap();
        drop(s);
        let s = dir.open();
        check(&s, "migrated");
    }

    #[test]
    fn intake_is_idempotent_by_tenant_and_key() {
        let mut s = Store::open(":memory:").unwrap();
        let req = |tenant, key| NewIntake {
            tenant,
            key,
            kind: "leads",
            fingerprint: "f",
            body: "[]",
            lead_ids: "[]",
        };
        let first = s.log_intake(&[req("a", "k1"), req("b", "k1")], 1).unwrap();
        assert!(matches!(first[0], Logged::New(_)));
        assert!(matches!(first[1], Logged::New(_)));
        let again = s.log_intake(&[req("a", "k1")], 2).unwrap();
        let Logged::Seen(row) = &again[0] else {
            panic!("a redelivery is seen")
        };
        assert_eq!(row.state, "pending");
        assert_eq!(s.pending_intake("a", 10).unwrap().len(), 1);
        assert_eq!(s.pending_intake("b", 10).unwrap().len(), 1);
        s.finish_intake(&[(row.id, 201, "{\"ok\":true}")], 3)
            .unwrap();
        let done = s.intake("a", row.id).unwrap().unwrap();
        assert_eq!(done.state, "done");
        assert_eq!(done.result.as_deref(), Some("{\"ok\":true}"));
        assert!(done.body.is_empty());
        // Another tenant cannot read it.
        assert!(s.intake("b", row.id).unwrap().is_none());
        assert_eq!(s.pending_intake("a", 10).unwrap().len(), 0);
    }

    #[test]
    fn a_key_is_scoped_to_its_route_and_rows_logged_before_answer_as_before() {
        let dir = crate::test_support::TempStore::new("scoped-keys");
        let mut s = dir.open();
        let req = |key: &'static str, kind: &'static str| NewIntake {
            tenant: "a",
            key,
            kind,
            fingerprint: "f",
            body: "[]",
            lead_ids: "[]",
        };
        // Rows as a store before migration 11 held them: unscoped keys.
        let old = s
            .log_intake(
                &[
                    req("key:L", "leads"),
                    req("key:F", "form"),
                    req("events:abc", "events"),
                    req("hubspot:9", "hubspot"),
                    req("key:W", "webhook"),
                ],
                1,
            )
            .unwrap();
        let ids: Vec<i64> = old
            .iter()
            .map(|l| match l {
                Logged::New(id) => *id,
                Logged::Seen(_) => panic!("new rows"),
            })
            .collect();
        s.finish_intake(&[(ids[0], 200, "{\"leads\":1}")], 2)
            .unwrap();
        s.conn.pragma_update(None, "user_version", 10).unwrap();
        drop(s);
        let mut s = dir.open();
        // Each row answers under its route's scope, as it did unscoped.
        for (scope, key, id) in [
            ("POST /v1/leads", "key:L", ids[0]),
            ("POST /v1/events", "events:abc", ids[2]),
            ("POST /v1/webhooks/{tenant}/hubspot", "hubspot:9", ids[3]),
            ("POST /v1/webhooks/{tenant}/lead", "key:W", ids[4]),
        ] {
            let k = scoped_key(scope, key);
            let again = s
                .log_intake(
                    &[NewIntake {
                        key: &k,
                        ..req("", "leads")
                    }],
                    3,
                )
                .unwrap();
            let Logged::Seen(row) = &again[0] else {
                panic!("{scope} {key} is seen after the migration")
            };
            assert_eq!(row.id, id);
        }
        // A form's name was not kept: its row is found through the form scope
        // of rows from before, by every form route.
        assert_eq!(
            s.legacy_form_key("a", "key:F").unwrap(),
            Some(scoped_key(LEGACY_FORM_SCOPE, "key:F"))
        );
        assert_eq!(s.legacy_form_key("a", "key:L").unwrap(), None);
        assert_eq!(s.legacy_form_key("b", "key:F").unwrap(), None);
        assert_eq!(s.tenants_with_legacy_form_keys().unwrap(), vec!["a"]);
        // The same key on another route is a new request; both are kept.
        let same: Vec<(String, &str)> = [
            ("POST /v1/events", "events"),
            ("POST /v1/leads", "leads"),
            ("POST /v1/forms/a", "form"),
            ("POST /v1/forms/b", "form"),
        ]
        .into_iter()
        .map(|(scope, kind)| (scoped_key(scope, "key:same"), kind))
        .collect();
        let requests: Vec<NewIntake<'_>> = same
            .iter()
            .map(|(key, kind)| NewIntake {
                key,
                ..req("", kind)
            })
            .collect();
        let logged = s.log_intake(&requests, 4).unwrap();
        assert!(logged.iter().all(|l| matches!(l, Logged::New(_))));
        assert_eq!(s.pending_intake("a", 100).unwrap().len(), 8);
    }

    #[test]
    fn a_batch_commits_its_writes_together_or_not_at_all() {
        let mut s = Store::open(":memory:").unwrap();
        let req = |key| NewIntake {
            tenant: "a",
            key,
            kind: "leads",
            fingerprint: "f",
            body: "[]",
            lead_ids: "[]",
        };
        // Rolled back when dropped: neither write is kept.
        {
            let mut b = s.batch().unwrap();
            let logged = b.log_intake(&[req("k1")], 1).unwrap();
            let Logged::New(id) = logged[0] else {
                panic!("a new key is new")
            };
            b.finish_intake(&[(id, 200, "{}")], 2).unwrap();
            assert!(b.logged_keys("a", ["k1"]).unwrap().contains("k1"));
        }
        assert!(s.logged_keys("a", ["k1"]).unwrap().is_empty());
        // A batch cannot be opened inside another.
        {
            let mut b = s.batch().unwrap();
            assert!(b.batch().is_err());
        }
        // Committed: both are.
        let mut b = s.batch().unwrap();
        let logged = b.log_intake(&[req("k1"), req("k2")], 1).unwrap();
        let Logged::New(id) = logged[0] else {
            panic!("a new key is new")
        };
        b.finish_intake(&[(id, 200, "{}")], 2).unwrap();
        b.commit().unwrap();
        assert_eq!(s.logged_keys("a", ["k1", "k2", "k3"]).unwrap().len(), 2);
        assert_eq!(s.intake("a", id).unwrap().unwrap().state, "done");
        assert_eq!(s.pending_intake("a", 10).unwrap().len(), 1);
        // Other tenants' keys are theirs.
        assert!(s.logged_keys("b", ["k1"]).unwrap().is_empty());
    }

    #[test]
    fn only_review_items_a_threshold_acts_on_are_due() {
        let s = Store::open(":memory:").unwrap();
        // Items without leads behind them: only the queue matters here.
        s.conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        let h = 3_600_000;
        let now = 100 * h;
        // (lead, tenant, age in hours); what happened to each is set below.
        let items = [
            ("young", "a", 1),
            ("to-escalate", "a", 5),
            ("escalated", "a", 5),
            ("to-fall-back", "a", 25),
            ("done-with", "a", 25),
            ("decided", "a", 25),
            ("other-tenant", "b", 25),
            ("fell-back-unescalated", "a", 25),
        ];
        for (lead, tenant, age) in items {
            enqueue_review(
                &s.conn,
                tenant,
                lead,
                "validation",
                None,
                "r",
                "api",
                None,
                now - age * h,
            )
            .unwrap();
        }
        let id = |lead: &str| -> i64 {
            s.conn
                .query_row(
                    "SELECT id FROM review_queue WHERE lead_id = ?1",
                    [lead],
                    |r| r.get(0),
                )
                .unwrap()
        };
        s.escalate_item(id("escalated"), now).unwrap();
        s.escalate_item(id("to-fall-back"), now).unwrap();
        s.escalate_item(id("done-with"), now).unwrap();
        s.fallback_item(id("done-with"), "manual", now).unwrap();
        s.fallback_item(id("fell-back-unescalated"), "manual", now)
            .unwrap();
        s.conn
            .execute(
                "UPDATE review_queue SET decided_at = ?2 WHERE id = ?1",
                params![id("decided"), now],
            )
            .unwrap();
        let due = |s: &Store| -> Vec<String> {
            s.due_queue("a", now - 4 * h, now - 24 * h)
                .unwrap()
                .into_iter()
                .map(|i| i.lead_id)
                .collect()
        };
        assert_eq!(
            due(&s),
            ["to-fall-back", "fell-back-unescalated", "to-escalate"],
            "oldest first"
        );
        s.escalate_item(id("to-escalate"), now).unwrap();
        s.fallback_item(id("to-fall-back"), "manual", now).unwrap();
        s.escalate_item(id("fell-back-unescalated"), now).unwrap();
        assert!(due(&s).is_empty(), "{:?}", due(&s));
        // Items that are done with their thresholds are out of the index
        // the scheduler reads.
        let indexed: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM review_queue INDEXED BY review_queue_due
                  WHERE tenant = 'a' AND decided_at IS NULL
                    AND (escalated_at IS NULL OR fallback_at IS NULL) AND created_at > 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            indexed, 3,
            "young, escalated and to-escalate still wait for a threshold"
        );
    }

    #[test]
    fn api_keys_resolve_until_revoked() {
        let s = Store::open(":memory:").unwrap();
        s.add_api_key("acme", "ci", "h1", "lg_acme_ab", 1).unwrap();
        assert_eq!(s.api_key_tenant("h1").unwrap().as_deref(), Some("acme"));
        assert_eq!(s.api_key_tenant("h2").unwrap(), None);
        assert_eq!(s.revoke_api_key("other", "ci", 2).unwrap(), 0);
        assert_eq!(s.revoke_api_key("acme", "ci", 2).unwrap(), 1);
        assert_eq!(s.api_key_tenant("h1").unwrap(), None);
        assert_eq!(s.api_keys(Some("acme")).unwrap()[0].revoked_at, Some(2));
    }
}
