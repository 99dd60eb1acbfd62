//! Enrichment and qualification in the store: each lead's enrichment and
//! qualification state (with a decision row each, for the audit trail), the
//! re-enrichment queue, the providers' answer cache, and per-run provider
//! telemetry.

use crate::{Record, StoreError, sql};
use rusqlite::{Connection, OptionalExtension, params};

/// A lead's enrichment, as recorded.
#[derive(Debug, Clone)]
pub struct Enriched<'a> {
    /// SHA-256 of the enrich component.
    pub component: &'a str,
    /// `complete`, `partial` or `failed`.
    pub status: &'a str,
    /// The enrichment object as JSON (fields with source and confidence).
    pub json: &'a str,
    /// Why the lead must be enriched again (a lookup was pending, failed
    /// or served stale); `None` takes it off the queue.
    pub requeue: Option<&'a str>,
}

/// A lead's qualification, as recorded.
#[derive(Debug, Clone)]
pub struct Qualified<'a> {
    /// `qualified`, `incomplete`, `needs_review` or `rejected`.
    pub state: &'a str,
    /// The reason codes as a JSON array.
    pub reasons: &'a str,
}

/// Writes a record's enrichment and qualification decisions and queues it
/// for re-enrichment if it must be (inside the batch's transaction; the
/// lead row itself already carries both).
pub(crate) fn record(
    tx: &Connection,
    r: &Record<'_>,
    run_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    let lead = r.raw.id.as_str();
    if let Some(e) = &r.enrichment {
        let d = Decision {
            lead,
            run_id: Some(run_id),
            now,
        };
        d.write(tx, "enrich", e.component, e.status, e.json)?;
        // A lead of a run is new: there is nothing to take off the queue.
        if let Some(reason) = e.requeue {
            queue(tx, lead, &r.raw.tenant, reason, now)?;
        }
    }
    if let Some(q) = &r.qualification {
        let d = Decision {
            lead,
            run_id: Some(run_id),
            now,
        };
        d.write(tx, "classify", "host", q.state, q.reasons)?;
    }
    Ok(())
}

/// Who a decision row is about.
pub(crate) struct Decision<'a> {
    pub(crate) lead: &'a str,
    pub(crate) run_id: Option<i64>,
    pub(crate) now: i64,
}

impl Decision<'_> {
    pub(crate) fn write(
        &self,
        tx: &rusqlite::Connection,
        capability: &str,
        component: &str,
        verdict: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        tx.prepare_cached(
            "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                self.lead, self.run_id, capability, component, verdict, detail, self.now
            ])
        })
        .map(|_| ())
        .map_err(sql("record decision"))
    }
}

fn queue(
    tx: &rusqlite::Connection,
    lead: &str,
    tenant: &str,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO enrich_queue (lead_id, tenant, reason, queued_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(lead_id) DO UPDATE SET reason = excluded.reason,
           attempts = attempts + 1, last_try_at = excluded.queued_at",
    )
    .and_then(|mut s| s.execute(params![lead, tenant, reason, now]))
    .map(|_| ())
    .map_err(sql("queue re-enrichment"))
}

/// Updates a stored lead's enrichment and qualification (re-enrichment).
fn write(
    tx: &rusqlite::Connection,
    lead: &str,
    tenant: &str,
    e: &Enriched<'_>,
    q: &Qualified<'_>,
    now: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE leads SET enrichment = ?2, qualification = ?3, qualification_reasons = ?4, updated_at = ?5
          WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![lead, e.json, q.state, q.reasons, now]))
    .map_err(sql("record enrichment"))?;
    let d = Decision {
        lead,
        run_id: None,
        now,
    };
    d.write(tx, "enrich", e.component, e.status, e.json)?;
    d.write(tx, "classify", "host", q.state, q.reasons)?;
    match e.requeue {
        Some(reason) => queue(tx, lead, tenant, reason, now),
        None => tx
            .prepare_cached("DELETE FROM enrich_queue WHERE lead_id = ?1")
            .and_then(|mut s| s.execute([lead]))
            .map(|_| ())
            .map_err(sql("dequeue re-enrichment")),
    }
}

/// A lead waiting in the re-enrichment queue.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Queued {
    pub lead_id: String,
    pub reason: String,
    pub attempts: i64,
    pub queued_at: i64,
    /// The normalized lead as JSON (as stored).
    pub normalized: Option<String>,
    /// Its current status (`accepted`, `review`, ...).
    pub status: String,
}

/// A lead's enrichment and qualification as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredEnrichment {
    /// The enrichment object (JSON).
    pub enrichment: Option<String>,
    pub qualification: Option<String>,
    /// The reason codes (JSON array).
    pub reasons: Option<String>,
    /// Why it waits in the re-enrichment queue, if it does.
    pub queued: Option<String>,
}

/// One provider answer, as cached.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRow {
    pub provider: String,
    pub kind: String,
    pub key: String,
    /// The answer as JSON.
    pub value: String,
    pub fetched_at: i64,
}

/// The enrichment aggregate: each lead's enrichment and qualification, the
/// re-enrichment queue, the providers' answers cached with the time fetched,
/// and per-run provider statistics.
pub trait Enrichments {
    /// Re-records a lead's enrichment and qualification outside a run (the
    /// re-enrichment queue).
    fn update_enrichment(
        &mut self,
        lead: &str,
        tenant: &str,
        normalized: Option<&str>,
        enrichment: &Enriched<'_>,
        qualification: &Qualified<'_>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// The oldest `limit` leads of `tenant` waiting for re-enrichment.
    fn enrich_queue(&self, tenant: &str, limit: usize) -> Result<Vec<Queued>, StoreError>;

    /// What classification needs of a stored lead: the validate verdict of
    /// its latest validation, and the issues recorded with it (other than
    /// enrichment's own).
    fn lead_facts(
        &self,
        lead: &str,
    ) -> Result<(Option<String>, Vec<leadgate_lead::Issue>), StoreError>;

    /// A lead's stored enrichment and qualification; `None` for no such lead.
    fn enrichment(&self, lead: &str) -> Result<Option<StoredEnrichment>, StoreError>;

    /// Cached provider answers fetched at or after `since` (ms).
    fn cache_rows(&self, since: i64) -> Result<Vec<CacheRow>, StoreError>;

    /// Writes provider answers to the cache (newer replace older).
    fn save_cache(&mut self, rows: &[CacheRow]) -> Result<(), StoreError>;

    /// Records a run's telemetry for one provider (JSON).
    fn save_provider_stats(
        &self,
        run_id: i64,
        provider: &str,
        stats: &str,
    ) -> Result<(), StoreError>;

    /// Telemetry per provider of a run: (provider, stats JSON).
    fn provider_stats(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError>;
}

impl Enrichments for crate::SqliteStore {
    fn update_enrichment(
        &mut self,
        lead: &str,
        tenant: &str,
        normalized: Option<&str>,
        enrichment: &Enriched<'_>,
        qualification: &Qualified<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        if let Some(n) = normalized {
            tx.execute(
                "UPDATE leads SET normalized = ?2 WHERE id = ?1",
                params![lead, n],
            )
            .map_err(sql("update normalized lead"))?;
        }
        write(&tx, lead, tenant, enrichment, qualification, now)?;
        tx.commit().map_err(sql("commit enrichment"))
    }

    fn enrich_queue(&self, tenant: &str, limit: usize) -> Result<Vec<Queued>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT q.lead_id, q.reason, q.attempts, q.queued_at, l.normalized, l.status
                   FROM enrich_queue q JOIN leads l ON l.id = q.lead_id
                  WHERE q.tenant = ?1 ORDER BY q.queued_at, q.lead_id LIMIT ?2",
            )
            .map_err(sql("read enrich queue"))?;
        let rows = stmt
            .query_map(params![tenant, limit as i64], |r| {
                Ok(Queued {
                    lead_id: r.get(0)?,
                    reason: r.get(1)?,
                    attempts: r.get(2)?,
                    queued_at: r.get(3)?,
                    normalized: r.get(4)?,
                    status: r.get(5)?,
                })
            })
            .map_err(sql("read enrich queue"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read enrich queue"))
    }

    fn lead_facts(
        &self,
        lead: &str,
    ) -> Result<(Option<String>, Vec<leadgate_lead::Issue>), StoreError> {
        let decision: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT id, verdict FROM decisions WHERE lead_id = ?1 AND capability = 'validate'
                  ORDER BY id DESC LIMIT 1",
                [lead],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("read validation"))?;
        let Some((id, verdict)) = decision else {
            return Ok((None, Vec::new()));
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT field, code, severity, message FROM issues
                  WHERE decision_id = ?1 AND code NOT LIKE 'enrich.%' ORDER BY rowid",
            )
            .map_err(sql("read issues"))?;
        let issues = stmt
            .query_map([id], |r| {
                let severity: String = r.get(2)?;
                Ok(leadgate_lead::Issue {
                    field: r.get(0)?,
                    code: r.get(1)?,
                    severity: match severity.as_str() {
                        "error" => leadgate_lead::Severity::Error,
                        "warning" => leadgate_lead::Severity::Warning,
                        _ => leadgate_lead::Severity::Info,
                    },
                    message: r.get(3)?,
                })
            })
            .map_err(sql("read issues"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("read issues"))?;
        Ok((Some(verdict), issues))
    }

    fn enrichment(&self, lead: &str) -> Result<Option<StoredEnrichment>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT l.enrichment, l.qualification, l.qualification_reasons, q.reason
                   FROM leads l LEFT JOIN enrich_queue q ON q.lead_id = l.id WHERE l.id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([lead], |r| {
                    Ok(StoredEnrichment {
                        enrichment: r.get(0)?,
                        qualification: r.get(1)?,
                        reasons: r.get(2)?,
                        queued: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(sql("read enrichment"))
    }

    fn cache_rows(&self, since: i64) -> Result<Vec<CacheRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT provider, kind, key, value, fetched_at FROM enrich_cache WHERE fetched_at >= ?1",
            )
            .map_err(sql("read enrich cache"))?;
        let rows = stmt
            .query_map([since], |r| {
                Ok(CacheRow {
                    provider: r.get(0)?,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    value: r.get(3)?,
                    fetched_at: r.get(4)?,
                })
            })
            .map_err(sql("read enrich cache"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read enrich cache"))
    }

    fn save_cache(&mut self, rows: &[CacheRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.tx()?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO enrich_cache (provider, kind, key, value, fetched_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(provider, kind, key) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at
                     WHERE excluded.fetched_at >= enrich_cache.fetched_at",
                )
                .map_err(sql("prepare cache insert"))?;
            for r in rows {
                put.execute(params![r.provider, r.kind, r.key, r.value, r.fetched_at])
                    .map_err(sql("insert cache entry"))?;
            }
        }
        tx.commit().map_err(sql("commit cache"))
    }

    fn save_provider_stats(
        &self,
        run_id: i64,
        provider: &str,
        stats: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO provider_stats (run_id, provider, stats) VALUES (?1, ?2, ?3)
                 ON CONFLICT(run_id, provider) DO UPDATE SET stats = excluded.stats",
                params![run_id, provider, stats],
            )
            .map(|_| ())
            .map_err(sql("record provider stats"))
    }

    fn provider_stats(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT provider, stats FROM provider_stats WHERE run_id = ?1 ORDER BY provider",
            )
            .map_err(sql("read provider stats"))?;
        let rows = stmt
            .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read provider stats"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read provider stats"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{SqliteStore, Status};
    use leadgate_lead::Lead;

    fn record<'a>(lead: &'a Lead, e: Option<Enriched<'a>>) -> Record<'a> {
        Record {
            line: 1,
            raw: lead,
            status: Status::Accepted,
            validation: Status::Accepted,
            normalized: Some("{}"),
            issues: &[],
            exception: None,
            keys: &[],
            link: None,
            review: None,
            enrichment: e,
            qualification: Some(Qualified {
                state: "incomplete",
                reasons: "[\"missing.industry\"]",
            }),
        }
    }

    #[test]
    fn queue_cache_and_stats_round_trip() {
        let mut s = SqliteStore::open(":memory:").unwrap();
        let run = s.begin_run("t", "x.csv", "{}", 1).unwrap();
        let lead = Lead {
            id: "L1".into(),
            tenant: "t".into(),
            ..Lead::default()
        };
        let e = Enriched {
            component: "abc",
            status: "partial",
            json: "{\"status\":\"partial\"}",
            requeue: Some("pending: company acme.com"),
        };
        s.record(run, "validate", "v", &[record(&lead, Some(e.clone()))], 10)
            .unwrap();
        let q = s.enrich_queue("t", 10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].lead_id.as_str(), q[0].attempts), ("L1", 0));
        let stored = s.enrichment("L1").unwrap().unwrap();
        assert_eq!(stored.enrichment.as_deref(), Some(e.json));
        assert_eq!(stored.qualification.as_deref(), Some("incomplete"));
        assert_eq!(stored.queued.as_deref(), Some("pending: company acme.com"));
        // Still pending: queued again, one more attempt.
        s.update_enrichment(
            "L1",
            "t",
            None,
            &e,
            &Qualified {
                state: "incomplete",
                reasons: "[]",
            },
            20,
        )
        .unwrap();
        assert_eq!(s.enrich_queue("t", 10).unwrap()[0].attempts, 1);
        // Done: off the queue.
        let done = Enriched {
            requeue: None,
            status: "complete",
            ..e
        };
        s.update_enrichment(
            "L1",
            "t",
            None,
            &done,
            &Qualified {
                state: "qualified",
                reasons: "[]",
            },
            30,
        )
        .unwrap();
        assert!(s.enrich_queue("t", 10).unwrap().is_empty());
        let stored = s.enrichment("L1").unwrap().unwrap();
        assert_eq!(stored.qualification.as_deref(), Some("qualified"));
        assert_eq!(stored.queued, None);

        let row = |at: i64, v: &str| CacheRow {
            provider: "api".into(),
            kind: "company".into(),
            key: "acme.com".into(),
            value: v.into(),
            fetched_at: at,
        };
        s.save_cache(&[row(100, "\"new\"")]).unwrap();
        s.save_cache(&[row(50, "\"older\"")]).unwrap();
        assert_eq!(s.cache_rows(0).unwrap(), vec![row(100, "\"new\"")]);
        assert!(s.cache_rows(101).unwrap().is_empty());

        s.save_provider_stats(run, "api", "{\"lookups\":3}")
            .unwrap();
        assert_eq!(
            s.provider_stats(run).unwrap(),
            vec![("api".to_string(), "{\"lookups\":3}".to_string())]
        );
    }
}
