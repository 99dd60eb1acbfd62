//! Enrichment and qualification on PostgreSQL: the same semantics as
//! SQLite's (`enrich.rs`) — each lead's enrichment with a decision row,
//! the re-enrichment queue, the providers' answer cache (written in one
//! statement per batch) and per-run provider statistics.

use super::{PgStore, limit, pg};
use crate::StoreError;
use crate::enrich::{CacheRow, Enriched, Enrichments, Qualified, Queued, StoredEnrichment};
use leadgate_lead::{Issue, Severity};

fn decision(
    tx: &mut postgres::Client,
    lead: &str,
    capability: &str,
    component: &str,
    verdict: &str,
    detail: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
         VALUES ($1, NULL, $2, $3, $4, $5, $6)",
        &[&lead, &capability, &component, &verdict, &detail, &now],
    )
    .map_err(pg("record decision"))?;
    Ok(())
}

impl Enrichments for PgStore {
    fn update_enrichment(
        &mut self,
        lead: &str,
        tenant: &str,
        normalized: Option<&str>,
        e: &Enriched<'_>,
        q: &Qualified<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx("begin enrichment")?;
        if let Some(n) = normalized {
            tx.execute(
                "UPDATE leads SET normalized = $2 WHERE id = $1",
                &[&lead, &n],
            )
            .map_err(pg("update normalized lead"))?;
        }
        tx.execute(
            "UPDATE leads SET enrichment = $2, qualification = $3, qualification_reasons = $4, updated_at = $5
              WHERE id = $1",
            &[&lead, &e.json, &q.state, &q.reasons, &now],
        )
        .map_err(pg("record enrichment"))?;
        decision(&mut tx, lead, "enrich", e.component, e.status, e.json, now)?;
        decision(&mut tx, lead, "classify", "host", q.state, q.reasons, now)?;
        match e.requeue {
            Some(reason) => tx
                .execute(
                    "INSERT INTO enrich_queue (lead_id, tenant, reason, queued_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (lead_id) DO UPDATE SET reason = excluded.reason,
                       attempts = enrich_queue.attempts + 1, last_try_at = excluded.queued_at",
                    &[&lead, &tenant, &reason, &now],
                )
                .map_err(pg("queue re-enrichment"))?,
            None => tx
                .execute("DELETE FROM enrich_queue WHERE lead_id = $1", &[&lead])
                .map_err(pg("dequeue re-enrichment"))?,
        };
        tx.commit().map_err(pg("commit enrichment"))
    }

    fn enrich_queue(&self, tenant: &str, n: usize) -> Result<Vec<Queued>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT q.lead_id, q.reason, q.attempts, q.queued_at, l.normalized, l.status
                   FROM enrich_queue q JOIN leads l ON l.id = q.lead_id
                  WHERE q.tenant = $1 ORDER BY q.queued_at, q.lead_id LIMIT $2",
                &[&tenant, &limit(n)],
            )
            .map_err(pg("read enrich queue"))?;
        Ok(rows
            .iter()
            .map(|r| Queued {
                lead_id: r.get(0),
                reason: r.get(1),
                attempts: r.get(2),
                queued_at: r.get(3),
                normalized: r.get(4),
                status: r.get(5),
            })
            .collect())
    }

    fn lead_facts(&self, lead: &str) -> Result<(Option<String>, Vec<Issue>), StoreError> {
        let mut client = self.client();
        let Some(row) = client
            .query_opt(
                "SELECT id, verdict FROM decisions WHERE lead_id = $1 AND capability = 'validate'
                  ORDER BY id DESC LIMIT 1",
                &[&lead],
            )
            .map_err(pg("read validation"))?
        else {
            return Ok((None, Vec::new()));
        };
        let id: i64 = row.get(0);
        let issues = client
            .query(
                "SELECT field, code, severity, message FROM issues
                  WHERE decision_id = $1 AND code NOT LIKE 'enrich.%' ORDER BY seq",
                &[&id],
            )
            .map_err(pg("read issues"))?
            .iter()
            .map(|r| Issue {
                field: r.get(0),
                code: r.get(1),
                severity: match r.get::<_, &str>(2) {
                    "error" => Severity::Error,
                    "warning" => Severity::Warning,
                    _ => Severity::Info,
                },
                message: r.get(3),
            })
            .collect();
        Ok((Some(row.get(1)), issues))
    }

    fn enrichment(&self, lead: &str) -> Result<Option<StoredEnrichment>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT l.enrichment, l.qualification, l.qualification_reasons, q.reason
                   FROM leads l LEFT JOIN enrich_queue q ON q.lead_id = l.id WHERE l.id = $1",
                &[&lead],
            )
            .map_err(pg("read enrichment"))?;
        Ok(row.map(|r| StoredEnrichment {
            enrichment: r.get(0),
            qualification: r.get(1),
            reasons: r.get(2),
            queued: r.get(3),
        }))
    }

    fn cache_rows(&self, since: i64) -> Result<Vec<CacheRow>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT provider, kind, key, value, fetched_at FROM enrich_cache WHERE fetched_at >= $1",
                &[&since],
            )
            .map_err(pg("read enrich cache"))?;
        Ok(rows
            .iter()
            .map(|r| CacheRow {
                provider: r.get(0),
                kind: r.get(1),
                key: r.get(2),
                value: r.get(3),
                fetched_at: r.get(4),
            })
            .collect())
    }

    /// One statement for the batch. A key that comes twice keeps its newest
    /// answer (an upsert cannot touch a row twice in one statement).
    fn save_cache(&mut self, rows: &[CacheRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut newest: std::collections::HashMap<(&str, &str, &str), &CacheRow> =
            std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            let slot = newest
                .entry((r.provider.as_str(), r.kind.as_str(), r.key.as_str()))
                .or_insert(r);
            if r.fetched_at >= slot.fetched_at {
                *slot = r;
            }
        }
        let rows: Vec<&CacheRow> = newest.into_values().collect();
        let providers: Vec<&str> = rows.iter().map(|r| r.provider.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let values: Vec<&str> = rows.iter().map(|r| r.value.as_str()).collect();
        let fetched: Vec<i64> = rows.iter().map(|r| r.fetched_at).collect();
        self.client()
            .execute(
                "INSERT INTO enrich_cache (provider, kind, key, value, fetched_at)
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[])
                 ON CONFLICT (provider, kind, key) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at
                 WHERE excluded.fetched_at >= enrich_cache.fetched_at",
                &[&providers, &kinds, &keys, &values, &fetched],
            )
            .map_err(pg("write enrich cache"))?;
        Ok(())
    }

    fn save_provider_stats(
        &self,
        run_id: i64,
        provider: &str,
        stats: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(
                "INSERT INTO provider_stats (run_id, provider, stats) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id, provider) DO UPDATE SET stats = excluded.stats",
                &[&run_id, &provider, &stats],
            )
            .map_err(pg("record provider stats"))?;
        Ok(())
    }

    fn provider_stats(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT provider, stats FROM provider_stats WHERE run_id = $1 ORDER BY provider",
                &[&run_id],
            )
            .map_err(pg("read provider stats"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
