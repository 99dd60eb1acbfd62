//! Runs, leads and their audit trail on PostgreSQL: the same semantics as
//! SQLite's (`runs.rs`). A batch of processed leads is recorded with a
//! handful of set-based statements (arrays bound once, `unnest`ed on the
//! server), not a round trip per row.

use super::{PgStore, Tx, limit, pg};
use crate::enrich::Enriched;
use crate::runs::Runs;
use crate::{ExceptionItem, Record, StoreError, Totals, review_kind, severity};
use leadgate_lead::Lead;
use std::collections::{BTreeSet, HashMap};

/// Leads a run records past which `finish_run` analyzes the tables.
const ANALYZE_AFTER: u64 = 10_000;

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Runs for PgStore {
    fn begin_run(
        &self,
        tenant: &str,
        input: &str,
        components: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let row = self
            .client()
            .query_one(
                "INSERT INTO runs (tenant, input, started_at, components, status)
                 VALUES ($1, $2, $3, $4, 'running') RETURNING id",
                &[&tenant, &input, &now, &components],
            )
            .map_err(pg("begin run"))?;
        Ok(row.get(0))
    }

    fn run_leads(&self, run_id: i64) -> Result<BTreeSet<String>, StoreError> {
        let rows = self
            .client()
            .query("SELECT id FROM leads WHERE run_id = $1", &[&run_id])
            .map_err(pg("read run leads"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn record(
        &mut self,
        run_id: i64,
        capability: &str,
        component: &str,
        records: &[Record<'_>],
        now: i64,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.tx("begin recording")?;
        let batch = BatchOf {
            run_id,
            capability,
            component,
            now,
        };
        let seqs = upsert_leads(&mut tx, records, &batch)?;
        index_lead_keys(&mut tx, records)?;
        write_decisions(&mut tx, records, &batch)?;
        write_exceptions(&mut tx, records, &batch)?;
        write_keys(&mut tx, records, &seqs)?;
        write_links(&mut tx, records, &batch)?;
        write_requeues(&mut tx, records, now)?;
        write_reviews(&mut tx, records, &batch)?;
        tx.commit().map_err(pg("commit batch"))
    }

    /// A run that ends (`done`) having recorded many leads also brings the
    /// planner's statistics up to date: a large import changes every
    /// table's shape at once, faster than autovacuum notices. (The service
    /// closes its run as `serving` at each checkpoint: not then.)
    fn finish_run(
        &self,
        run_id: i64,
        totals: &Totals,
        status: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if status == "done" && totals.total >= ANALYZE_AFTER {
            self.client()
                .batch_execute("ANALYZE leads, match_keys, lead_keys, decisions, issues, scores")
                .map_err(pg("analyze after a run"))?;
        }
        self.client()
            .execute(
                "UPDATE runs SET finished_at = $2, total = $3, accepted = $4, rejected = $5, review = $6,
                 exceptions = $7, status = $8, duplicates = $9 WHERE id = $1",
                &[
                    &run_id,
                    &now,
                    &count(totals.total),
                    &count(totals.accepted),
                    &count(totals.rejected),
                    &count(totals.review),
                    &count(totals.exceptions),
                    &status,
                    &count(totals.duplicates),
                ],
            )
            .map_err(pg("finish run"))?;
        Ok(())
    }

    fn run_status(&self, run_id: i64) -> Result<Option<(String, Totals)>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT status, total, accepted, rejected, review, exceptions, duplicates FROM runs WHERE id = $1",
                &[&run_id],
            )
            .map_err(pg("read run"))?;
        Ok(row.map(|r| {
            let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
            (
                r.get(0),
                Totals {
                    total: n(1),
                    accepted: n(2),
                    rejected: n(3),
                    review: n(4),
                    exceptions: n(5),
                    duplicates: n(6),
                },
            )
        }))
    }

    fn open_exceptions(&self, n: usize) -> Result<Vec<ExceptionItem>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT id, lead_id, run_id, capability, code, error, created_at FROM exceptions
                  WHERE resolved_at IS NULL ORDER BY id LIMIT $1",
                &[&limit(n)],
            )
            .map_err(pg("list exceptions"))?;
        Ok(rows
            .iter()
            .map(|r| ExceptionItem {
                id: r.get(0),
                lead_id: r.get(1),
                run_id: r.get(2),
                capability: r.get(3),
                code: r.get(4),
                error: r.get(5),
                created_at: r.get(6),
            })
            .collect())
    }

    fn lead(&self, id: &str) -> Result<Option<(String, Lead)>, StoreError> {
        let row = self
            .client()
            .query_opt("SELECT status, raw FROM leads WHERE id = $1", &[&id])
            .map_err(pg("read lead"))?;
        match row {
            None => Ok(None),
            Some(r) => {
                let raw: String = r.get(1);
                let lead = serde_json::from_str(&raw).map_err(|source| StoreError::Json {
                    what: "stored lead",
                    source,
                })?;
                Ok(Some((r.get(0), lead)))
            }
        }
    }
}

/// What every lead of a batch is recorded with.
struct BatchOf<'a> {
    run_id: i64,
    capability: &'a str,
    component: &'a str,
    now: i64,
}

/// Inserts or updates the batch's leads (the last record of a lead that
/// comes twice wins, as it would row by row) and returns each lead's `seq`,
/// the key the match index refers to it by.
fn upsert_leads(
    tx: &mut Tx<'_>,
    records: &[Record<'_>],
    b: &BatchOf<'_>,
) -> Result<HashMap<String, i64>, StoreError> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        last.insert(r.raw.id.as_str(), i);
    }
    let mut order: Vec<usize> = last.into_values().collect();
    order.sort_unstable();
    let n = order.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut raws = Vec::with_capacity(n);
    let mut normalized = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut lines = Vec::with_capacity(n);
    let mut enrichments = Vec::with_capacity(n);
    let mut qualifications = Vec::with_capacity(n);
    let mut reasons = Vec::with_capacity(n);
    for &i in &order {
        let r = &records[i];
        ids.push(r.raw.id.as_str());
        tenants.push(r.raw.tenant.as_str());
        sources.push(r.raw.source.as_str());
        received.push(r.raw.received_at);
        raws.push(
            serde_json::to_string(r.raw).map_err(|source| StoreError::Json {
                what: "lead",
                source,
            })?,
        );
        normalized.push(r.normalized);
        statuses.push(r.status.as_str());
        lines.push(i64::try_from(r.line).unwrap_or(i64::MAX));
        enrichments.push(r.enrichment.as_ref().map(|e| e.json));
        qualifications.push(r.qualification.as_ref().map(|q| q.state));
        reasons.push(r.qualification.as_ref().map(|q| q.reasons));
    }
    let rows = tx
        .query_cached(
            "INSERT INTO leads (id, tenant, source, received_at, raw, normalized, status, run_id, line, updated_at,
                                enrichment, qualification, qualification_reasons)
             SELECT u.id, u.tenant, u.source, u.received_at, u.raw, u.normalized, u.status, $12, u.line, $13,
                    u.enrichment, u.qualification, u.reasons
               FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::TEXT[],
                           $8::BIGINT[], $9::TEXT[], $10::TEXT[], $11::TEXT[])
                    AS u(id, tenant, source, received_at, raw, normalized, status, line, enrichment, qualification, reasons)
             ON CONFLICT (id) DO UPDATE SET raw = excluded.raw, normalized = excluded.normalized,
               status = excluded.status, run_id = excluded.run_id, line = excluded.line,
               updated_at = excluded.updated_at,
               enrichment = COALESCE(excluded.enrichment, leads.enrichment),
               qualification = COALESCE(excluded.qualification, leads.qualification),
               qualification_reasons = COALESCE(excluded.qualification_reasons, leads.qualification_reasons)
             RETURNING id, seq",
            &[
                &ids,
                &tenants,
                &sources,
                &received,
                &raws,
                &normalized,
                &statuses,
                &lines,
                &enrichments,
                &qualifications,
                &reasons,
                &b.run_id,
                &b.now,
            ],
        )
        .map_err(pg("insert leads"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What the event-key index reads of a normalized lead.
#[derive(serde::Deserialize)]
struct Keyed<'a> {
    #[serde(borrow, default)]
    email: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    domain: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    external_ids: Vec<External<'a>>,
}

#[derive(serde::Deserialize)]
struct External<'a> {
    #[serde(borrow)]
    system: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// Indexes the leads' email, domain and external ids, so that events find
/// them (`lead_keys`), as they are recorded: read from the normalized
/// records here, one statement for the batch.
fn index_lead_keys(tx: &mut Tx<'_>, records: &[Record<'_>]) -> Result<(), StoreError> {
    let mut rows: Vec<(&str, String, String, &str)> = Vec::new();
    for r in records {
        let Some(json) = r.normalized else { continue };
        let Ok(k) = serde_json::from_str::<Keyed<'_>>(json) else {
            continue;
        };
        let (tenant, id) = (r.raw.tenant.as_str(), r.raw.id.as_str());
        if let Some(e) = k.email {
            rows.push((tenant, "email".into(), e.to_lowercase(), id));
        }
        if let Some(d) = k.domain {
            rows.push((tenant, "domain".into(), d.to_lowercase(), id));
        }
        for x in k.external_ids {
            rows.push((
                tenant,
                format!("external:{}", x.system.to_lowercase()),
                x.id.into_owned(),
                id,
            ));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let values: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let leads: Vec<&str> = rows.iter().map(|r| r.3).collect();
    tx.execute_cached(
        "INSERT INTO lead_keys (tenant, kind, value, lead_id)
         SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[])
         ON CONFLICT DO NOTHING",
        &[&tenants, &kinds, &values, &leads],
    )
    .map_err(pg("index lead keys"))?;
    Ok(())
}

/// One decision row to write.
struct DecisionRow<'a> {
    lead: &'a str,
    capability: &'a str,
    component: &'a str,
    verdict: &'a str,
    detail: Option<&'a str>,
}

/// Every record's decisions, in the order SQLite writes them (validation,
/// dedupe, enrichment, classification), and their issues under the
/// validation decision; ids are drawn from the table's sequence first, so
/// the issues can refer to them in the same round trip.
fn write_decisions(
    tx: &mut Tx<'_>,
    records: &[Record<'_>],
    b: &BatchOf<'_>,
) -> Result<(), StoreError> {
    let mut rows: Vec<DecisionRow<'_>> = Vec::with_capacity(records.len() * 3);
    // (index into rows of the validation decision, record)
    let mut validated: Vec<(usize, &Record<'_>)> = Vec::with_capacity(records.len());
    for r in records {
        let lead = r.raw.id.as_str();
        validated.push((rows.len(), r));
        rows.push(DecisionRow {
            lead,
            capability: b.capability,
            component: b.component,
            verdict: r.validation.as_str(),
            detail: r.normalized,
        });
        let dedupe = match (&r.link, &r.review) {
            (Some(l), _) => Some(l.kind.as_str()),
            (None, Some(_)) => Some("review"),
            (None, None) => None,
        };
        if let Some(verdict) = dedupe {
            rows.push(DecisionRow {
                lead,
                capability: "dedupe",
                component: b.component,
                verdict,
                detail: None,
            });
        }
        if let Some(Enriched {
            component,
            status,
            json,
            ..
        }) = &r.enrichment
        {
            rows.push(DecisionRow {
                lead,
                capability: "enrich",
                component,
                verdict: status,
                detail: Some(json),
            });
        }
        if let Some(q) = &r.qualification {
            rows.push(DecisionRow {
                lead,
                capability: "classify",
                component: "host",
                verdict: q.state,
                detail: Some(q.reasons),
            });
        }
    }
    let ids: Vec<i64> = tx
        .query_cached(
            "SELECT nextval(pg_get_serial_sequence('decisions', 'id')) FROM generate_series(1::BIGINT, $1::BIGINT)",
            &[&(rows.len() as i64)],
        )
        .map_err(pg("number decisions"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Appends only: `COPY … (FORMAT binary)`, no statement to plan and no
    // arrays to build and take apart.
    {
        use postgres::types::Type;
        let mut w = super::copy_in(
            tx,
            "COPY decisions (id, lead_id, run_id, capability, component, verdict, normalized, decided_at)
             FROM STDIN (FORMAT binary)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
            ],
            "copy decisions",
        )?;
        for (d, id) in rows.iter().zip(&ids) {
            w.write(&[
                id,
                &d.lead,
                &b.run_id,
                &d.capability,
                &d.component,
                &d.verdict,
                &d.detail,
                &b.now,
            ])
            .map_err(pg("copy decisions"))?;
        }
        w.finish().map_err(pg("copy decisions"))?;
    }
    let issues = validated
        .iter()
        .flat_map(|(at, r)| r.issues.iter().map(move |i| (*at, *r, i)));
    if validated.iter().any(|(_, r)| !r.issues.is_empty()) {
        use postgres::types::Type;
        let mut w = super::copy_in(
            tx,
            "COPY issues (decision_id, lead_id, field, code, severity, message) FROM STDIN (FORMAT binary)",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
            ],
            "copy issues",
        )?;
        for (at, r, i) in issues {
            let decision = ids.get(at).copied().unwrap_or_default();
            w.write(&[
                &decision,
                &r.raw.id.as_str(),
                &i.field.as_str(),
                &i.code.as_str(),
                &severity(i.severity),
                &i.message.as_str(),
            ])
            .map_err(pg("copy issues"))?;
        }
        w.finish().map_err(pg("copy issues"))?;
    }
    Ok(())
}

fn write_exceptions(
    tx: &mut Tx<'_>,
    records: &[Record<'_>],
    b: &BatchOf<'_>,
) -> Result<(), StoreError> {
    let (mut leads, mut codes, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for r in records {
        if let Some((code, error)) = r.exception {
            leads.push(r.raw.id.as_str());
            codes.push(code);
            errors.push(error);
        }
    }
    if leads.is_empty() {
        return Ok(());
    }
    tx.execute_cached(
        "INSERT INTO exceptions (lead_id, run_id, capability, component, code, error, created_at)
         SELECT u.lead, $4, $5, $6, u.code, u.error, $7
           FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS u(lead, code, error)",
        &[
            &leads,
            &codes,
            &errors,
            &b.run_id,
            &b.capability,
            &b.component,
            &b.now,
        ],
    )
    .map_err(pg("insert exceptions"))?;
    Ok(())
}

/// The batch's blocking keys into the index, under each lead's `seq`.
fn write_keys(
    tx: &mut Tx<'_>,
    records: &[Record<'_>],
    seqs: &HashMap<String, i64>,
) -> Result<(), StoreError> {
    let (mut keys, mut leads) = (Vec::new(), Vec::new());
    for r in records {
        let Some(&seq) = seqs.get(&r.raw.id) else {
            continue;
        };
        for k in r.keys {
            keys.push(*k);
            leads.push(seq);
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    tx.execute_cached(
        "INSERT INTO match_keys (key, lead) SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[])
         ON CONFLICT DO NOTHING",
        &[&keys, &leads],
    )
    .map_err(pg("insert keys"))?;
    Ok(())
}

/// Duplicates merged into or linked to their masters: the merge rows and
/// the leads pointed at their masters, a statement each.
fn write_links(tx: &mut Tx<'_>, records: &[Record<'_>], b: &BatchOf<'_>) -> Result<(), StoreError> {
    let links: Vec<(&Record<'_>, &crate::Link<'_>)> = records
        .iter()
        .filter_map(|r| r.link.as_ref().map(|l| (r, l)))
        .collect();
    if links.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = links.iter().map(|(r, _)| r.raw.tenant.as_str()).collect();
    let leads: Vec<&str> = links.iter().map(|(r, _)| r.raw.id.as_str()).collect();
    let masters: Vec<&str> = links.iter().map(|(_, l)| l.master).collect();
    let kinds: Vec<&str> = links.iter().map(|(_, l)| l.kind.as_str()).collect();
    let probabilities: Vec<f64> = links.iter().map(|(_, l)| l.probability).collect();
    let evidence: Vec<&str> = links.iter().map(|(_, l)| l.evidence).collect();
    let decided_by: Vec<&str> = links.iter().map(|(_, l)| l.decided_by).collect();
    tx.execute_cached(
        "INSERT INTO merges (tenant, master_id, lead_id, kind, probability, evidence, decided_by, run_id, created_at)
         SELECT u.tenant, u.master, u.lead, u.kind, u.probability, u.evidence, u.decided_by, $8, $9
           FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::FLOAT8[], $6::TEXT[], $7::TEXT[])
                WITH ORDINALITY AS u(tenant, master, lead, kind, probability, evidence, decided_by, ord)
          ORDER BY u.ord",
        &[
            &tenants,
            &masters,
            &leads,
            &kinds,
            &probabilities,
            &evidence,
            &decided_by,
            &b.run_id,
            &b.now,
        ],
    )
    .map_err(pg("insert merges"))?;
    tx.execute_cached(
        "UPDATE leads SET master_id = u.master, status = 'duplicate', updated_at = $3
           FROM unnest($1::TEXT[], $2::TEXT[]) AS u(lead, master) WHERE leads.id = u.lead",
        &[&leads, &masters, &b.now],
    )
    .map_err(pg("link leads"))?;
    Ok(())
}

/// Leads whose lookups must be tried again, onto the re-enrichment queue.
fn write_requeues(tx: &mut Tx<'_>, records: &[Record<'_>], now: i64) -> Result<(), StoreError> {
    let mut queued: HashMap<&str, (&str, &str)> = HashMap::new();
    for r in records {
        if let Some(reason) = r.enrichment.as_ref().and_then(|e| e.requeue) {
            queued.insert(r.raw.id.as_str(), (r.raw.tenant.as_str(), reason));
        }
    }
    if queued.is_empty() {
        return Ok(());
    }
    let (mut leads, mut tenants, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    for (lead, (tenant, reason)) in queued {
        leads.push(lead);
        tenants.push(tenant);
        reasons.push(reason);
    }
    tx.execute_cached(
        "INSERT INTO enrich_queue (lead_id, tenant, reason, queued_at)
         SELECT u.lead, u.tenant, u.reason, $4 FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS u(lead, tenant, reason)
         ON CONFLICT (lead_id) DO UPDATE SET reason = excluded.reason,
           attempts = enrich_queue.attempts + 1, last_try_at = excluded.queued_at",
        &[&leads, &tenants, &reasons, &now],
    )
    .map_err(pg("queue re-enrichment"))?;
    Ok(())
}

/// A review queue item to write: (tenant, lead, kind, match review,
/// reason, confidence).
type QueueRow<'a> = (&'a str, &'a str, &'a str, Option<i64>, String, Option<f64>);

/// Possible duplicates and leads waiting for a person, onto the queues:
/// the pairs first (a pair already under review is not queued again), then
/// every queue item, a statement each.
fn write_reviews(
    tx: &mut Tx<'_>,
    records: &[Record<'_>],
    b: &BatchOf<'_>,
) -> Result<(), StoreError> {
    let pairs: Vec<(&Record<'_>, &crate::Review<'_>)> = records
        .iter()
        .filter_map(|r| r.review.as_ref().map(|v| (r, v)))
        .collect();
    let mut queued: Vec<QueueRow<'_>> = Vec::new();
    // (tenant, lead, other) → the pair's id, for pairs new to review.
    let mut pair_ids: HashMap<(String, String, String), i64> = HashMap::new();
    if !pairs.is_empty() {
        let tenants: Vec<&str> = pairs.iter().map(|(r, _)| r.raw.tenant.as_str()).collect();
        let others: Vec<&str> = pairs.iter().map(|(_, v)| v.other).collect();
        let leads: Vec<&str> = pairs.iter().map(|(r, _)| r.raw.id.as_str()).collect();
        let probabilities: Vec<f64> = pairs.iter().map(|(_, v)| v.probability).collect();
        let evidence: Vec<&str> = pairs.iter().map(|(_, v)| v.evidence).collect();
        let reasons: Vec<&str> = pairs.iter().map(|(_, v)| v.reason).collect();
        let rows = tx
            .query_cached(
                "INSERT INTO match_reviews (tenant, lead_a, lead_b, probability, evidence, reason, run_id, created_at)
                 SELECT u.tenant, u.other, u.lead, u.probability, u.evidence, u.reason, $7, $8
                   FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::FLOAT8[], $5::TEXT[], $6::TEXT[])
                        WITH ORDINALITY AS u(tenant, other, lead, probability, evidence, reason, ord)
                  ORDER BY u.ord
                 ON CONFLICT DO NOTHING RETURNING id, tenant, lead_a, lead_b",
                &[
                    &tenants,
                    &others,
                    &leads,
                    &probabilities,
                    &evidence,
                    &reasons,
                    &b.run_id,
                    &b.now,
                ],
            )
            .map_err(pg("insert match reviews"))?;
        let inserted: HashMap<(String, String, String), i64> = rows
            .iter()
            .map(|r| ((r.get(1), r.get(3), r.get(2)), r.get(0)))
            .collect();
        pair_ids = inserted;
    }
    // In record order, as row by row.
    for r in records {
        if let Some(v) = &r.review {
            let key = (r.raw.tenant.clone(), r.raw.id.clone(), v.other.to_string());
            if let Some(id) = pair_ids.get(&key) {
                queued.push((
                    r.raw.tenant.as_str(),
                    r.raw.id.as_str(),
                    "match",
                    Some(*id),
                    v.reason.to_string(),
                    Some(v.probability),
                ));
            }
        } else if let Some((kind, reason)) = review_kind(r) {
            queued.push((
                r.raw.tenant.as_str(),
                r.raw.id.as_str(),
                kind,
                None,
                reason,
                None,
            ));
        }
    }
    if queued.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = queued.iter().map(|q| q.0).collect();
    let leads: Vec<&str> = queued.iter().map(|q| q.1).collect();
    let kinds: Vec<&str> = queued.iter().map(|q| q.2).collect();
    let reviews: Vec<Option<i64>> = queued.iter().map(|q| q.3).collect();
    let reasons: Vec<&str> = queued.iter().map(|q| q.4.as_str()).collect();
    let confidences: Vec<Option<f64>> = queued.iter().map(|q| q.5).collect();
    tx.execute_cached(
        "INSERT INTO review_queue (tenant, lead_id, kind, match_review, reason, source, confidence, created_at)
         SELECT u.tenant, u.lead, u.kind, u.review, u.reason, coalesce(l.source, 'other'), u.confidence, $7
           FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::FLOAT8[])
                WITH ORDINALITY AS u(tenant, lead, kind, review, reason, confidence, ord)
           LEFT JOIN leads l ON l.id = u.lead
          ORDER BY u.ord
         ON CONFLICT DO NOTHING",
        &[&tenants, &leads, &kinds, &reviews, &reasons, &confidences, &b.now],
    )
    .map_err(pg("queue for review"))?;
    Ok(())
}
