//! API keys (hashed) and the intake log: every request by tenant and
//! idempotency key, its body until processed, then its answer, so requests
//! are idempotent and survive restarts; and what the API reads back of a
//! lead (its state, issues, score).

use crate::packed::{Pack, Unpacked};
use crate::{SqliteStore, StoreError, sql};
use rusqlite::{OptionalExtension, params};
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

/// Who takes a claim and for how long: a host's name and its lease.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub holder: &'a str,
    pub lease_ms: i64,
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
/// request also looks here ([`IntakeLog::legacy_form_key`]).
pub const LEGACY_FORM_SCOPE: &str = "before migration 11: form";

/// An idempotency key scoped to the route it came to: `scope` is the
/// method and route template, with a form's name (`POST /v1/forms/contact`).
/// The same key on another route is another request. A key never holds a
/// newline (a header value cannot), so the last newline parts the two.
pub fn scoped_key(scope: &str, key: &str) -> String {
    format!("{scope}\n{key}")
}

pub(super) const INTAKE_COLUMNS: &str = "id, tenant, key, kind, fingerprint, body, lead_ids, received_at, state, status_code, result, done_at";

pub(super) fn intake_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IntakeRow> {
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

/// API keys: each stored as a hash, with its tenant and label; a revoked key stops
/// answering at once.
pub trait ApiKeys {
    /// Stores a new key's hash.
    fn add_api_key(
        &self,
        tenant: &str,
        label: &str,
        hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// The tenant a key hash belongs to, unless revoked.
    fn api_key_tenant(&self, hash: &str) -> Result<Option<String>, StoreError>;

    /// Every key of `tenant` (all tenants when `None`).
    fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes the keys of `tenant` whose prefix or label is `which`;
    /// returns how many.
    fn revoke_api_key(&self, tenant: &str, which: &str, now: i64) -> Result<usize, StoreError>;
}

impl ApiKeys for SqliteStore {
    fn add_api_key(
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

    fn api_key_tenant(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT tenant FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL")
            .and_then(|mut s| s.query_row([hash], |r| r.get(0)).optional())
            .map_err(sql("look up API key"))
    }

    fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
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

    fn revoke_api_key(&self, tenant: &str, which: &str, now: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE api_keys SET revoked_at = ?3 WHERE tenant = ?1 AND (prefix = ?2 OR label = ?2) AND revoked_at IS NULL",
                params![tenant, which, now],
            )
            .map_err(sql("revoke API key"))
    }
}

/// The intake log: every request by tenant and idempotency key (scoped to its
/// route), its body until processed, then its answer — what makes requests
/// idempotent and lets them survive a restart.
pub trait IntakeLog {
    /// Logs requests in one transaction: each is new (claimed by `claim`'s
    /// holder, which is processing it), or was seen before under the same
    /// tenant and key.
    fn log_intake(
        &mut self,
        requests: &[NewIntake<'_>],
        claim: Claim<'_>,
        now: i64,
    ) -> Result<Vec<Logged>, StoreError>;

    /// The key a form request's `key` (unscoped) was logged under before
    /// keys were scoped to their route, if `tenant` has such a row: a
    /// retry of that request is answered as it was then.
    fn legacy_form_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError>;

    /// The tenants with form requests logged before keys were scoped to
    /// their route.
    fn tenants_with_legacy_form_keys(&self) -> Result<Vec<String>, StoreError>;

    /// Which of `keys` the tenant has logged requests under already.
    fn logged_keys<'k>(
        &self,
        tenant: &str,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<std::collections::HashSet<&'k str>, StoreError>;

    /// Records requests' results; the bodies are dropped (each lead's raw
    /// form is in `leads`).
    fn finish_intake(&mut self, done: &[(i64, u16, &str)], now: i64) -> Result<(), StoreError>;

    /// Requests of `tenant` logged but not processed (after a restart),
    /// oldest first.
    fn pending_intake(&self, tenant: &str, limit: usize) -> Result<Vec<IntakeRow>, StoreError>;

    /// Claims and returns the oldest `limit` unfinished requests of
    /// `tenant` that no other host holds: unclaimed, or their claim run out
    /// (the host that logged them stopped) — and, with `own`, `claim`'s
    /// holder's own (it restarted, or has none in flight). Several hosts
    /// claiming at once take different requests.
    fn claim_pending_intake(
        &mut self,
        tenant: &str,
        claim: Claim<'_>,
        own: bool,
        now: i64,
        limit: usize,
    ) -> Result<Vec<IntakeRow>, StoreError>;

    /// One logged request of `tenant`.
    fn intake(&self, tenant: &str, id: i64) -> Result<Option<IntakeRow>, StoreError>;
}

impl IntakeLog for SqliteStore {
    fn log_intake(
        &mut self,
        requests: &[NewIntake<'_>],
        claim: Claim<'_>,
        now: i64,
    ) -> Result<Vec<Logged>, StoreError> {
        let tx = self.tx()?;
        let until = now.saturating_add(claim.lease_ms);
        let mut out = Vec::with_capacity(requests.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO intake (tenant, key, kind, fingerprint, body, lead_ids, received_at, state,
                                         claimed_by, claimed_until)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9) ON CONFLICT (tenant, key) DO NOTHING",
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
                        now,
                        claim.holder,
                        until
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

    fn legacy_form_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        let legacy = scoped_key(LEGACY_FORM_SCOPE, key);
        let found = self
            .conn
            .prepare_cached("SELECT 1 FROM intake WHERE tenant = ?1 AND key = ?2")
            .and_then(|mut s| s.exists(params![tenant, legacy]))
            .map_err(sql("look up idempotency key"))?;
        Ok(found.then_some(legacy))
    }

    fn tenants_with_legacy_form_keys(&self) -> Result<Vec<String>, StoreError> {
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

    fn logged_keys<'k>(
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

    fn finish_intake(&mut self, done: &[(i64, u16, &str)], now: i64) -> Result<(), StoreError> {
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

    fn pending_intake(&self, tenant: &str, limit: usize) -> Result<Vec<IntakeRow>, StoreError> {
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

    fn claim_pending_intake(
        &mut self,
        tenant: &str,
        claim: Claim<'_>,
        own: bool,
        now: i64,
        limit: usize,
    ) -> Result<Vec<IntakeRow>, StoreError> {
        let tx = self.tx()?;
        let rows: Vec<IntakeRow> = {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {INTAKE_COLUMNS} FROM intake
                      WHERE state = 'pending' AND tenant = ?1
                        AND ((claimed_by IS NOT ?3 AND (claimed_until IS NULL OR claimed_until <= ?2))
                          OR (?5 AND claimed_by = ?3))
                      ORDER BY id LIMIT ?4"
                ))
                .map_err(sql("claim pending requests"))?;
            let rows = stmt
                .query_map(
                    params![tenant, now, claim.holder, limit as i64, own],
                    intake_row,
                )
                .map_err(sql("claim pending requests"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("claim pending requests"))?
        };
        {
            let mut take = tx
                .prepare_cached(
                    "UPDATE intake SET claimed_by = ?2, claimed_until = ?3 WHERE id = ?1",
                )
                .map_err(sql("claim pending requests"))?;
            for r in &rows {
                take.execute(params![
                    r.id,
                    claim.holder,
                    now.saturating_add(claim.lease_ms)
                ])
                .map_err(sql("claim pending requests"))?;
            }
        }
        tx.commit().map_err(sql("commit claims"))?;
        Ok(rows)
    }

    fn intake(&self, tenant: &str, id: i64) -> Result<Option<IntakeRow>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {INTAKE_COLUMNS} FROM intake WHERE id = ?1 AND tenant = ?2"),
                params![id, tenant],
                intake_row,
            )
            .optional()
            .map_err(sql("read request"))
    }
}

impl SqliteStore {
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
}
