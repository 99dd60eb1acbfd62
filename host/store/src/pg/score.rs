//! Events and scores on PostgreSQL: the same semantics as SQLite's
//! (`score.rs`). A batch of events is stored and attached to its leads in
//! one statement; `ON CONFLICT DO NOTHING` on the event id keeps a
//! redelivered event out however many hosts receive it. The key index
//! events attach by (`lead_keys`) is filled as leads are recorded, so
//! there is nothing to catch up.

use super::{PgStore, pg};
use crate::StoreError;
use crate::score::{
    EventReject, EventRow, Inserted, NewEvent, ScoreState, ScoreWrite, Scores, ScoringLead,
    StoredScore, Surfaced,
};
use std::collections::{BTreeSet, HashMap};

const SCORING_LEADS: &str = "SELECT id, normalized, enrichment, qualification FROM leads
     WHERE tenant = $1 AND master_id IS NULL AND status IN ('accepted', 'review')
       AND normalized IS NOT NULL";

fn scoring_lead(r: &postgres::Row) -> ScoringLead {
    ScoringLead {
        id: r.get(0),
        normalized: r.get(1),
        enrichment: r.get(2),
        qualification: r.get(3),
    }
}

fn event_row(r: &postgres::Row) -> (String, EventRow) {
    (
        r.get(0),
        EventRow {
            kind: r.get(1),
            at: r.get(2),
            category: r.get(3),
            value: r.get(4),
        },
    )
}

impl Scores for PgStore {
    fn insert_events(
        &mut self,
        tenant: &str,
        events: &[NewEvent],
        now: i64,
    ) -> Result<Inserted, StoreError> {
        let mut out = Inserted::default();
        if events.is_empty() {
            return Ok(out);
        }
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        let ats: Vec<i64> = events.iter().map(|e| e.at).collect();
        let categories: Vec<Option<&str>> = events.iter().map(|e| e.category.as_deref()).collect();
        let values: Vec<f64> = events.iter().map(|e| e.value).collect();
        let urls: Vec<Option<&str>> = events.iter().map(|e| e.url.as_deref()).collect();
        let emails: Vec<Option<&str>> = events.iter().map(|e| e.email.as_deref()).collect();
        let refs: Vec<Option<&str>> = events.iter().map(|e| e.lead_ref.as_deref()).collect();
        let systems: Vec<Option<&str>> = events
            .iter()
            .map(|e| e.external.as_ref().map(|x| x.0.as_str()))
            .collect();
        let ext_ids: Vec<Option<&str>> = events
            .iter()
            .map(|e| e.external.as_ref().map(|x| x.1.as_str()))
            .collect();
        let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
        let mut tx = self.tx("begin events")?;
        let rows = tx
            .query(
                "INSERT INTO events (tenant, id, kind, at, category, value, url, email, ref_lead,
                                     ext_system, ext_id, lead_id, payload, received_at)
                 SELECT $1, e.id, e.kind, e.at, e.category, e.value, e.url, e.email, e.ref_lead,
                        e.ext_system, e.ext_id,
                        COALESCE(
                          (SELECT l.id FROM leads l WHERE l.id = e.ref_lead AND l.tenant = $1),
                          (SELECT k.lead_id FROM lead_keys k WHERE k.tenant = $1 AND k.kind = 'email'
                              AND k.value = e.email ORDER BY k.lead_id LIMIT 1),
                          (SELECT k.lead_id FROM lead_keys k WHERE k.tenant = $1
                              AND k.kind = 'external:' || e.ext_system AND k.value = e.ext_id
                            ORDER BY k.lead_id LIMIT 1)),
                        e.payload, $13
                   FROM unnest($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::FLOAT8[], $7::TEXT[],
                               $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[])
                        WITH ORDINALITY AS e(id, kind, at, category, value, url, email, ref_lead,
                                             ext_system, ext_id, payload, ord)
                  ORDER BY e.ord
                 ON CONFLICT (tenant, id) DO NOTHING
                 RETURNING lead_id",
                &[
                    &tenant,
                    &ids,
                    &kinds,
                    &ats,
                    &categories,
                    &values,
                    &urls,
                    &emails,
                    &refs,
                    &systems,
                    &ext_ids,
                    &payloads,
                    &now,
                ],
            )
            .map_err(pg("insert events"))?;
        tx.commit().map_err(pg("commit events"))?;
        out.stored = rows.len() as u64;
        out.duplicates = events.len() as u64 - out.stored;
        for r in &rows {
            if let Some(lead) = r.get::<_, Option<String>>(0) {
                out.attached += 1;
                out.leads.insert(lead);
            }
        }
        Ok(out)
    }

    fn reject_events(
        &mut self,
        tenant: &str,
        input: &str,
        rejects: &[EventReject],
        now: i64,
    ) -> Result<(), StoreError> {
        if rejects.is_empty() {
            return Ok(());
        }
        let lines: Vec<i64> = rejects
            .iter()
            .map(|r| i64::try_from(r.line).unwrap_or(i64::MAX))
            .collect();
        let fields: Vec<&str> = rejects.iter().map(|r| r.field.as_str()).collect();
        let codes: Vec<&str> = rejects.iter().map(|r| r.code.as_str()).collect();
        let messages: Vec<&str> = rejects.iter().map(|r| r.message.as_str()).collect();
        let raws: Vec<&str> = rejects.iter().map(|r| r.raw.as_str()).collect();
        self.client()
            .execute(
                "INSERT INTO event_rejects (tenant, input, line, field, code, message, raw, received_at)
                 SELECT $1, $2, u.line, u.field, u.code, u.message, u.raw, $8
                   FROM unnest($3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[])
                        WITH ORDINALITY AS u(line, field, code, message, raw, ord)
                  ORDER BY u.ord",
                &[&tenant, &input, &lines, &fields, &codes, &messages, &raws, &now],
            )
            .map_err(pg("insert rejected events"))?;
        Ok(())
    }

    /// Keys are indexed as leads are recorded: nothing to catch up.
    fn index_lead_keys(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn attach_pending(&mut self, tenant: &str) -> Result<BTreeSet<String>, StoreError> {
        let rows = self
            .client()
            .query(
                "UPDATE events SET lead_id = COALESCE(
                    (SELECT id FROM leads l WHERE l.id = events.ref_lead AND l.tenant = events.tenant),
                    (SELECT lead_id FROM lead_keys k WHERE k.tenant = events.tenant AND k.kind = 'email'
                        AND k.value = events.email ORDER BY k.lead_id LIMIT 1),
                    (SELECT lead_id FROM lead_keys k WHERE k.tenant = events.tenant
                        AND k.kind = 'external:' || events.ext_system AND k.value = events.ext_id
                      ORDER BY k.lead_id LIMIT 1))
                  WHERE tenant = $1 AND lead_id IS NULL
                 RETURNING lead_id",
                &[&tenant],
            )
            .map_err(pg("attach events"))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect())
    }

    fn unattached_events(&self, tenant: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()
            .query_one(
                "SELECT count(*) FROM events WHERE tenant = $1 AND lead_id IS NULL",
                &[&tenant],
            )
            .map_err(pg("count unattached events"))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    fn lead_count(&self, tenant: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()
            .query_one("SELECT count(*) FROM leads WHERE tenant = $1", &[&tenant])
            .map_err(pg("count leads"))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    fn scoring_leads(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<ScoringLead>, StoreError> {
        let rows = match only {
            None => self.client().query(SCORING_LEADS, &[&tenant]),
            Some(ids) => self.client().query(
                "SELECT l.id, l.normalized, l.enrichment, l.qualification
                   FROM unnest($2::TEXT[]) AS u(id) JOIN leads l ON l.id = u.id
                  WHERE l.tenant = $1 AND l.master_id IS NULL AND l.status IN ('accepted', 'review')
                    AND l.normalized IS NOT NULL",
                &[&tenant, &ids],
            ),
        }
        .map_err(pg("read leads to score"))?;
        Ok(rows.iter().map(scoring_lead).collect())
    }

    fn account_members(&self, tenant: &str, domains: &[String]) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT DISTINCT k.lead_id FROM unnest($2::TEXT[]) AS d(value)
                   JOIN lead_keys k ON k.tenant = $1 AND k.kind = 'domain' AND k.value = d.value",
                &[&tenant, &domains],
            )
            .map_err(pg("read account members"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn active_account_members(
        &self,
        tenant: &str,
        domains: &[String],
        since: i64,
    ) -> Result<Vec<String>, StoreError> {
        if domains.is_empty() {
            return Ok(Vec::new());
        }
        // With no attached event in the window (one index lookup) no member
        // can have one: the member-by-member query is skipped.
        let mut client = self.client();
        let any: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM events WHERE tenant = $1 AND at >= $2 AND lead_id IS NOT NULL)",
                &[&tenant, &since],
            )
            .map_err(pg("read account members"))?
            .get(0);
        if !any {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                "SELECT DISTINCT k.lead_id FROM unnest($2::TEXT[]) AS d(value)
                   JOIN lead_keys k ON k.tenant = $1 AND k.kind = 'domain' AND k.value = d.value
                  WHERE (EXISTS (SELECT 1 FROM events e WHERE e.lead_id = k.lead_id AND e.at >= $3)
                         OR EXISTS (SELECT 1 FROM leads m JOIN events e ON e.lead_id = m.id
                                     WHERE m.master_id = k.lead_id AND e.at >= $3))",
                &[&tenant, &domains, &since],
            )
            .map_err(pg("read account members"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn recent_events(
        &self,
        tenant: &str,
        since: i64,
        only: Option<&[String]>,
    ) -> Result<Vec<(String, EventRow)>, StoreError> {
        let rows = match only {
            None => self.client().query(
                "SELECT e.lead_id, e.kind, e.at, e.category, e.value FROM events e
                  WHERE e.tenant = $1 AND e.at >= $2 AND e.lead_id IS NOT NULL
                  ORDER BY e.at DESC",
                &[&tenant, &since],
            ),
            Some(ids) => self.client().query(
                "SELECT e.lead_id, e.kind, e.at, e.category, e.value FROM events e
                  WHERE e.tenant = $1 AND e.at >= $2 AND e.lead_id IS NOT NULL
                    AND e.lead_id IN (SELECT unnest($3::TEXT[])
                                      UNION SELECT l.id FROM unnest($3::TEXT[]) AS m(id)
                                              JOIN leads l ON l.master_id = m.id)
                  ORDER BY e.at DESC",
                &[&tenant, &since, &ids],
            ),
        }
        .map_err(pg("read events"))?;
        Ok(rows.iter().map(event_row).collect())
    }

    fn masters(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<HashMap<String, String>, StoreError> {
        let rows = match only {
            None => self.client().query(
                "SELECT id, master_id FROM leads WHERE tenant = $1 AND master_id IS NOT NULL",
                &[&tenant],
            ),
            Some(ids) => self.client().query(
                "SELECT l.id, l.master_id FROM unnest($2::TEXT[]) AS m(id)
                   JOIN leads l ON l.master_id = m.id WHERE l.tenant = $1",
                &[&tenant, &ids],
            ),
        }
        .map_err(pg("read masters"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn score_states(
        &self,
        tenant: &str,
        since: i64,
        only: Option<&[String]>,
    ) -> Result<HashMap<String, (ScoreState, Option<i64>)>, StoreError> {
        let mut client = self.client();
        let (scores, history) = match only {
            None => (
                client.query(
                    "SELECT lead_id, total, above, surfaced_at FROM scores WHERE tenant = $1",
                    &[&tenant],
                ),
                client.query(
                    "SELECT lead_id, min(total) FROM score_history
                      WHERE tenant = $1 AND at >= $2 GROUP BY lead_id",
                    &[&tenant, &since],
                ),
            ),
            Some(ids) => (
                client.query(
                    "SELECT s.lead_id, s.total, s.above, s.surfaced_at
                       FROM unnest($2::TEXT[]) AS u(id) JOIN scores s ON s.lead_id = u.id
                      WHERE s.tenant = $1",
                    &[&tenant, &ids],
                ),
                client.query(
                    "SELECT h.lead_id, min(h.total)
                       FROM unnest($3::TEXT[]) AS u(id) JOIN score_history h ON h.lead_id = u.id
                      WHERE h.tenant = $1 AND h.at >= $2 GROUP BY h.lead_id",
                    &[&tenant, &since, &ids],
                ),
            ),
        };
        let mut out: HashMap<String, (ScoreState, Option<i64>)> = scores
            .map_err(pg("read scores"))?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    (
                        ScoreState {
                            total: r.get(1),
                            above: r.get(2),
                            surfaced_at: r.get(3),
                        },
                        None,
                    ),
                )
            })
            .collect();
        for r in history.map_err(pg("read score history"))? {
            let id: String = r.get(0);
            if let Some(slot) = out.get_mut(&id) {
                slot.1 = Some(r.get(1));
            }
        }
        Ok(out)
    }

    fn save_scores(
        &mut self,
        tenant: &str,
        component: &str,
        rows: &[ScoreWrite],
        surfaced: &[Surfaced],
        now: i64,
    ) -> Result<(), StoreError> {
        // The last score of a lead that comes twice wins, as row by row.
        let mut last: HashMap<&str, &ScoreWrite> = HashMap::with_capacity(rows.len());
        for r in rows {
            last.insert(r.lead_id.as_str(), r);
        }
        let latest: Vec<&ScoreWrite> = last.into_values().collect();
        let leads: Vec<&str> = latest.iter().map(|r| r.lead_id.as_str()).collect();
        let totals: Vec<i64> = latest.iter().map(|r| i64::from(r.total)).collect();
        let grades: Vec<&str> = latest.iter().map(|r| r.grade.as_str()).collect();
        let probabilities: Vec<Option<f64>> = latest.iter().map(|r| r.probability).collect();
        let details: Vec<&str> = latest.iter().map(|r| r.detail.as_str()).collect();
        let above: Vec<bool> = latest.iter().map(|r| r.above).collect();
        let surfaced_at: Vec<Option<i64>> = latest.iter().map(|r| r.surfaced_at).collect();
        let changed: Vec<&ScoreWrite> = rows.iter().filter(|r| r.changed).collect();
        let mut tx = self.tx("begin scores")?;
        if !latest.is_empty() {
            tx.execute(
                "INSERT INTO scores (lead_id, tenant, total, grade, probability, detail, component, scored_at, above, surfaced_at)
                 SELECT u.lead, $1, u.total, u.grade, u.probability, u.detail, $2, $3, u.above, u.surfaced_at
                   FROM unnest($4::TEXT[], $5::BIGINT[], $6::TEXT[], $7::FLOAT8[], $8::TEXT[], $9::BOOL[], $10::BIGINT[])
                        AS u(lead, total, grade, probability, detail, above, surfaced_at)
                 ON CONFLICT (lead_id) DO UPDATE SET total = excluded.total, grade = excluded.grade,
                   probability = excluded.probability, detail = excluded.detail, component = excluded.component,
                   scored_at = excluded.scored_at, above = excluded.above, surfaced_at = excluded.surfaced_at",
                &[
                    &tenant,
                    &component,
                    &now,
                    &leads,
                    &totals,
                    &grades,
                    &probabilities,
                    &details,
                    &above,
                    &surfaced_at,
                ],
            )
            .map_err(pg("save scores"))?;
        }
        if !changed.is_empty() {
            // An append, in order (`seq` numbers the rows as they come):
            // `COPY … (FORMAT binary)`.
            use postgres::types::Type;
            let mut w = super::copy_in(
                &mut tx,
                "COPY score_history (lead_id, tenant, at, total, fit, engagement, intent, probability, cause)
                 FROM STDIN (FORMAT binary)",
                &[
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::FLOAT8,
                    Type::FLOAT8,
                    Type::FLOAT8,
                    Type::FLOAT8,
                    Type::TEXT,
                ],
                "save score history",
            )?;
            for r in &changed {
                w.write(&[
                    &r.lead_id.as_str(),
                    &tenant,
                    &now,
                    &i64::from(r.total),
                    &r.fit,
                    &r.engagement,
                    &r.intent,
                    &r.probability,
                    &r.cause.as_str(),
                ])
                .map_err(pg("save score history"))?;
            }
            w.finish().map_err(pg("save score history"))?;
        }
        for s in surfaced {
            tx.execute(
                "INSERT INTO pipeline_outbox (tenant, lead_id, trigger, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&tenant, &s.lead_id, &s.trigger, &s.payload, &now],
            )
            .map_err(pg("save surfaced lead"))?;
            tx.execute(
                "INSERT INTO decisions (lead_id, run_id, capability, component, verdict, normalized, decided_at)
                 VALUES ($1, NULL, 'score', $2, $3, $4, $5)",
                &[
                    &s.lead_id,
                    &component,
                    &format!("surfaced:{}", s.trigger),
                    &s.payload,
                    &now,
                ],
            )
            .map_err(pg("record decision"))?;
        }
        tx.commit().map_err(pg("commit scores"))
    }

    fn stored_score(&self, lead: &str) -> Result<Option<StoredScore>, StoreError> {
        let mut client = self.client();
        let Some(r) = client
            .query_opt(
                "SELECT total, grade, probability, scored_at, above, surfaced_at, detail FROM scores WHERE lead_id = $1",
                &[&lead],
            )
            .map_err(pg("read score"))?
        else {
            return Ok(None);
        };
        let history = client
            .query(
                "SELECT at, total, cause FROM score_history WHERE lead_id = $1 ORDER BY at, seq",
                &[&lead],
            )
            .map_err(pg("read score history"))?
            .iter()
            .map(|h| (h.get(0), h.get(1), h.get(2)))
            .collect();
        Ok(Some(StoredScore {
            total: r.get(0),
            grade: r.get(1),
            probability: r.get(2),
            scored_at: r.get(3),
            above: r.get(4),
            surfaced_at: r.get(5),
            detail: r.get(6),
            history,
        }))
    }
}
