//! The leads and decisions aggregate: a run, each lead as last recorded
//! with its keys, every decision recorded with the component that made it,
//! and the exception items a person must look at.

use crate::*;

/// The leads and decisions aggregate: runs, each lead as last recorded, every
/// decision recorded with the component that made it, and the exception
/// items a person must look at.
pub trait Runs {
    /// Starts a run; `components` describes which component (path and digest)
    /// serves each capability.
    fn begin_run(
        &self,
        tenant: &str,
        input: &str,
        components: &str,
        now: i64,
    ) -> Result<i64, StoreError>;

    /// The leads recorded by a run.
    fn run_leads(&self, run_id: i64) -> Result<BTreeSet<String>, StoreError>;

    /// Records a batch of processed leads in one transaction.
    fn record(
        &mut self,
        run_id: i64,
        capability: &str,
        component: &str,
        records: &[Record<'_>],
        now: i64,
    ) -> Result<(), StoreError>;

    /// Closes a run with its totals.
    fn finish_run(
        &self,
        run_id: i64,
        totals: &Totals,
        status: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// A run's status (`running`, `done`, `failed`) and totals.
    fn run_status(&self, run_id: i64) -> Result<Option<(String, Totals)>, StoreError>;

    /// Unresolved exception-queue items, oldest first.
    fn open_exceptions(&self, limit: usize) -> Result<Vec<ExceptionItem>, StoreError>;

    /// The stored status and raw lead of `id`.
    fn lead(&self, id: &str) -> Result<Option<(String, Lead)>, StoreError>;
}

impl Runs for SqliteStore {
    fn begin_run(
        &self,
        tenant: &str,
        input: &str,
        components: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (tenant, input, started_at, components, status) VALUES (?1, ?2, ?3, ?4, 'running')",
                params![tenant, input, now, components],
            )
            .map_err(sql("begin run"))?;
        Ok(self.conn.last_insert_rowid())
    }

    fn run_leads(&self, run_id: i64) -> Result<BTreeSet<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM leads WHERE run_id = ?1")
            .map_err(sql("read run leads"))?;
        let rows = stmt
            .query_map([run_id], |r| r.get(0))
            .map_err(sql("read run leads"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read run leads"))
    }

    fn record(
        &mut self,
        run_id: i64,
        capability: &str,
        component: &str,
        records: &[Record<'_>],
        now: i64,
    ) -> Result<(), StoreError> {
        let defer = self.defer_keys;
        let mut direct = false;
        // Restored only on success: after a failure it is read again.
        let mut pending = self.pending.take();
        let tx = self.tx()?;
        if let Some(cycle) = defer {
            pending.refresh(&tx)?;
            pending.fold(&tx, records.len(), cycle)?;
        }
        {
            let batch = BatchOf {
                run_id,
                capability,
                component,
                now,
                defer: defer.is_some(),
            };
            let mut writers = Writers::prepare(&tx)?;
            for r in records {
                direct |= writers.write(&tx, r, &batch)?;
            }
        }
        if direct {
            // Other connections' key filters learn of these keys by this.
            tx.execute(key_filter::COUNT_DIRECT_WRITE, [])
                .map_err(sql("count match key writes"))?;
        }
        tx.commit().map_err(sql("commit batch"))?;
        *self.pending.get_mut() = pending;
        Ok(())
    }

    fn finish_run(
        &self,
        run_id: i64,
        totals: &Totals,
        status: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, total = ?3, accepted = ?4, rejected = ?5, review = ?6,
                 exceptions = ?7, status = ?8, duplicates = ?9 WHERE id = ?1",
                params![
                    run_id,
                    now,
                    totals.total as i64,
                    totals.accepted as i64,
                    totals.rejected as i64,
                    totals.review as i64,
                    totals.exceptions as i64,
                    status,
                    totals.duplicates as i64
                ],
            )
            .map_err(sql("finish run"))?;
        Ok(())
    }

    fn run_status(&self, run_id: i64) -> Result<Option<(String, Totals)>, StoreError> {
        self.conn
            .query_row(
                "SELECT status, total, accepted, rejected, review, exceptions, duplicates FROM runs WHERE id = ?1",
                [run_id],
                |r| {
                    let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                    Ok((
                        r.get::<_, String>(0)?,
                        Totals {
                            total: n(1)?,
                            accepted: n(2)?,
                            rejected: n(3)?,
                            review: n(4)?,
                            exceptions: n(5)?,
                            duplicates: n(6)?,
                        },
                    ))
                },
            )
            .optional()
            .map_err(sql("read run"))
    }

    fn open_exceptions(&self, limit: usize) -> Result<Vec<ExceptionItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, lead_id, run_id, capability, code, error, created_at FROM exceptions
                 WHERE resolved_at IS NULL ORDER BY id LIMIT ?1",
            )
            .map_err(sql("list exceptions"))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(ExceptionItem {
                    id: r.get(0)?,
                    lead_id: r.get(1)?,
                    run_id: r.get(2)?,
                    capability: r.get(3)?,
                    code: r.get(4)?,
                    error: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })
            .map_err(sql("list exceptions"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list exceptions"))
    }

    fn lead(&self, id: &str) -> Result<Option<(String, Lead)>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row("SELECT status, raw FROM leads WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(sql("read lead"))?;
        match row {
            None => Ok(None),
            Some((status, raw)) => {
                let lead = serde_json::from_str(&raw).map_err(|source| StoreError::Json {
                    what: "stored lead",
                    source,
                })?;
                Ok(Some((status, lead)))
            }
        }
    }
}

/// What every lead of a batch is recorded with.
#[derive(Clone, Copy)]
struct BatchOf<'a> {
    run_id: i64,
    capability: &'a str,
    component: &'a str,
    now: i64,
    /// Keys go to the pending tier (the service), not the index.
    defer: bool,
}

/// The statements recording a batch of leads, prepared once per batch.
struct Writers<'t> {
    upsert_lead: rusqlite::CachedStatement<'t>,
    decision: rusqlite::CachedStatement<'t>,
    issue: rusqlite::CachedStatement<'t>,
    exception: rusqlite::CachedStatement<'t>,
    rowid: rusqlite::CachedStatement<'t>,
    key: rusqlite::CachedStatement<'t>,
    key_row: rusqlite::CachedStatement<'t>,
}

impl<'t> Writers<'t> {
    fn prepare(tx: &'t Tx<'_>) -> Result<Writers<'t>, StoreError> {
        let upsert_lead = tx
            .prepare_cached(
                "INSERT INTO leads (id, tenant, source, received_at, raw, normalized, status, run_id, line, updated_at,
                                    enrichment, qualification, qualification_reasons)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT(id) DO UPDATE SET raw = excluded.raw, normalized = excluded.normalized,
                   status = excluded.status, run_id = excluded.run_id, line = excluded.line,
                   updated_at = excluded.updated_at,
                   enrichment = COALESCE(excluded.enrichment, leads.enrichment),
                   qualification = COALESCE(excluded.qualification, leads.qualification),
                   qualification_reasons = COALESCE(excluded.qualification_reasons, leads.qualification_reasons)",
            )
            .map_err(sql("prepare lead insert"))?;
        let decision = tx
            .prepare_cached(
                "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql("prepare decision insert"))?;
        let issue = tx
            .prepare_cached(
                "INSERT INTO issues (decision_id, lead_id, field, code, severity, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(sql("prepare issue insert"))?;
        let exception = tx
            .prepare_cached(
                "INSERT INTO exceptions (lead_id, run_id, capability, component, code, error, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql("prepare exception insert"))?;
        let rowid = tx
            .prepare_cached("SELECT rowid FROM leads WHERE id = ?1")
            .map_err(sql("prepare lead lookup"))?;
        let key = tx
            .prepare_cached(pending_keys::INSERT_KEY)
            .map_err(sql("prepare key insert"))?;
        let key_row = tx
            .prepare_cached("INSERT INTO match_keys_new (lead, keys) VALUES (?1, ?2)")
            .map_err(sql("prepare pending key insert"))?;
        Ok(Writers {
            upsert_lead,
            decision,
            issue,
            exception,
            rowid,
            key,
            key_row,
        })
    }

    /// Records one lead: the lead, its decisions and issues, an exception,
    /// its keys (deferred to the pending tier when `defer`), a link, its
    /// enrichment, a review. Whether it wrote keys to the index directly.
    fn write(&mut self, tx: &Tx<'_>, r: &Record<'_>, b: &BatchOf<'_>) -> Result<bool, StoreError> {
        let BatchOf {
            run_id,
            capability,
            component,
            now,
            defer,
        } = *b;
        let mut direct = false;
        let raw = serde_json::to_string(r.raw).map_err(|source| StoreError::Json {
            what: "lead",
            source,
        })?;
        let normalized = r.normalized;
        self.upsert_lead
            .execute(params![
                r.raw.id,
                r.raw.tenant,
                r.raw.source.as_str(),
                r.raw.received_at,
                raw,
                normalized,
                r.status.as_str(),
                run_id,
                r.line as i64,
                now,
                r.enrichment.as_ref().map(|e| e.json),
                r.qualification.as_ref().map(|q| q.state),
                r.qualification.as_ref().map(|q| q.reasons),
            ])
            .map_err(sql("insert lead"))?;
        self.decision
            .execute(params![
                r.raw.id,
                run_id,
                capability,
                component,
                r.validation.as_str(),
                normalized,
                now
            ])
            .map_err(sql("insert decision"))?;
        let decision_id = tx.last_insert_rowid();
        let dedupe = match (&r.link, &r.review) {
            (Some(l), _) => Some(l.kind.as_str()),
            (None, Some(_)) => Some("review"),
            (None, None) => None,
        };
        if let Some(verdict) = dedupe {
            self.decision
                .execute(params![
                    r.raw.id,
                    run_id,
                    "dedupe",
                    component,
                    verdict,
                    Option::<&str>::None,
                    now
                ])
                .map_err(sql("insert dedupe decision"))?;
        }
        for i in r.issues {
            self.issue
                .execute(params![
                    decision_id,
                    r.raw.id,
                    i.field,
                    i.code,
                    severity(i.severity),
                    i.message
                ])
                .map_err(sql("insert issue"))?;
        }
        if let Some((code, error)) = r.exception {
            self.exception
                .execute(params![
                    r.raw.id, run_id, capability, component, code, error, now
                ])
                .map_err(sql("insert exception"))?;
        }
        if !r.keys.is_empty() {
            let lead_row: i64 = self
                .rowid
                .query_row([&r.raw.id], |row| row.get(0))
                .map_err(sql("look up lead"))?;
            if defer {
                self.key_row
                    .execute(params![lead_row, pending_keys::pack(r.keys)])
                    .map_err(sql("insert pending keys"))?;
            } else {
                for k in r.keys {
                    self.key
                        .execute(params![k, lead_row])
                        .map_err(sql("insert key"))?;
                }
                direct = true;
            }
        }
        if let Some(link) = &r.link {
            matching::insert_link(tx, &r.raw.tenant, &r.raw.id, link, Some(run_id), now)?;
        }
        enrich::record(tx, r, run_id, now)?;
        if let Some(review) = &r.review {
            matching::insert_review(tx, &r.raw.tenant, &r.raw.id, review, Some(run_id), now)?;
        } else if let Some((kind, reason)) = review_kind(r) {
            service::enqueue_review(
                tx,
                &r.raw.tenant,
                &r.raw.id,
                kind,
                None,
                &reason,
                r.raw.source.as_str(),
                None,
                now,
            )?;
        }
        Ok(direct)
    }
}
