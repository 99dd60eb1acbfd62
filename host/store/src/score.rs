//! Events and scores in the store: the key index that attaches events to
//! leads (email, domain, external ids), behavioural events (idempotent by
//! id, kept unattached until their person appears), rejected events with
//! their reason, each lead's current score and surfacing state, its score
//! history, and the outbox of leads surfaced to sales.

use crate::{SqliteStore, StoreError, sql};
use rusqlite::{OptionalExtension, params};
use std::collections::{BTreeSet, HashMap};

/// Indexes the email, domain and external ids of leads recorded since the
/// last call, so events can find them: one set-based statement when
/// events arrive, rather than three index writes per lead in every run.
/// (A lead is indexed as first recorded.)
fn catch_up_keys(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let last: i64 = conn
        .query_row(
            "SELECT last_rowid FROM lead_keys_state WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .map_err(sql("read key index state"))?;
    let top: i64 = conn
        .query_row("SELECT COALESCE(MAX(rowid), 0) FROM leads", [], |r| {
            r.get(0)
        })
        .map_err(sql("read key index state"))?;
    if top <= last {
        return Ok(());
    }
    conn.execute(
        "INSERT OR IGNORE INTO lead_keys (tenant, kind, value, lead_id)
         SELECT tenant, 'email', lower(json_extract(normalized, '$.email')), id FROM leads
          WHERE rowid > ?1 AND rowid <= ?2 AND json_extract(normalized, '$.email') IS NOT NULL
         UNION ALL
         SELECT tenant, 'domain', lower(json_extract(normalized, '$.domain')), id FROM leads
          WHERE rowid > ?1 AND rowid <= ?2 AND json_extract(normalized, '$.domain') IS NOT NULL
         UNION ALL
         SELECT l.tenant, 'external:' || lower(json_extract(e.value, '$.system')), json_extract(e.value, '$.id'), l.id
           FROM leads l, json_each(l.normalized, '$.external_ids') e
          WHERE l.rowid > ?1 AND l.rowid <= ?2 AND json_extract(e.value, '$.id') IS NOT NULL",
        params![last, top],
    )
    .map_err(sql("index lead keys"))?;
    conn.execute(
        "UPDATE lead_keys_state SET last_rowid = ?1 WHERE id = 1",
        [top],
    )
    .map_err(sql("save key index state"))?;
    Ok(())
}

/// A well-formed event, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    /// [`EventKind::as_str`](leadgate_lead::score::EventKind::as_str).
    pub kind: &'static str,
    pub at: i64,
    pub category: Option<String>,
    pub value: f64,
    pub url: Option<String>,
    /// Lowercase.
    pub email: Option<String>,
    pub lead_ref: Option<String>,
    /// `(system, id)`, the system lowercase.
    pub external: Option<(String, String)>,
    /// The event as received (JSON).
    pub payload: String,
}

/// A malformed event: what was wrong and the line as received.
#[derive(Debug, Clone)]
pub struct EventReject {
    pub line: u64,
    pub field: String,
    pub code: String,
    pub message: String,
    pub raw: String,
}

/// What storing a batch of events did.
#[derive(Debug, Clone, Default)]
pub struct Inserted {
    pub stored: u64,
    /// Ids seen before: ignored.
    pub duplicates: u64,
    /// Stored and attached to a lead.
    pub attached: u64,
    /// The leads that got events.
    pub leads: BTreeSet<String>,
}

/// One event of a lead, as scoring reads it.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub kind: String,
    pub at: i64,
    pub category: Option<String>,
    pub value: f64,
}

/// A lead to score: its normalized record and enrichment (JSON).
#[derive(Debug, Clone)]
pub struct ScoringLead {
    pub id: String,
    pub normalized: String,
    pub enrichment: Option<String>,
    pub qualification: Option<String>,
}

/// A lead's surfacing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreState {
    pub total: i64,
    /// At or above the threshold since it was last surfaced.
    pub above: bool,
    pub surfaced_at: Option<i64>,
}

/// A new score to record.
#[derive(Debug, Clone)]
pub struct ScoreWrite {
    pub lead_id: String,
    pub total: u8,
    pub grade: String,
    pub probability: Option<f64>,
    pub fit: f64,
    pub engagement: f64,
    pub intent: f64,
    /// The full score (reasons included) as JSON.
    pub detail: String,
    pub above: bool,
    pub surfaced_at: Option<i64>,
    /// Whether the total changed (or is the first): a history row.
    pub changed: bool,
    /// What caused the re-score (`run`, `events`, `rescore`).
    pub cause: String,
}

/// A lead surfaced to sales, for the `qualified_lead_pipeline`.
#[derive(Debug, Clone)]
pub struct Surfaced {
    pub lead_id: String,
    /// `threshold` or `jump`.
    pub trigger: String,
    /// The pipeline line (JSON).
    pub payload: String,
}

/// A lead's stored score.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredScore {
    pub total: i64,
    pub grade: String,
    pub probability: Option<f64>,
    pub scored_at: i64,
    pub above: bool,
    pub surfaced_at: Option<i64>,
    /// The full score as JSON.
    pub detail: String,
    /// `(at, total, cause)`, oldest first.
    pub history: Vec<(i64, i64, String)>,
}

/// `ids` as a JSON array parameter.
fn id_list(ids: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(ids).map_err(|source| StoreError::Json {
        what: "lead ids",
        source,
    })
}

/// The events and scores aggregate: behavioural events (attached to their
/// lead by key, or waiting for it), the leads and accounts scoring reads,
/// and each lead's score state and history.
pub trait Scores {
    /// Stores events, ignoring ids already stored, and attaches each to its
    /// lead: by lead id, else email, else external id (a merged lead's
    /// events count for its master when scoring). Events whose person is
    /// not known yet are kept unattached.
    fn insert_events(
        &mut self,
        tenant: &str,
        events: &[NewEvent],
        now: i64,
    ) -> Result<Inserted, StoreError>;

    /// Keeps malformed events with their reason (nothing is lost).
    fn reject_events(
        &mut self,
        tenant: &str,
        input: &str,
        rejects: &[EventReject],
        now: i64,
    ) -> Result<(), StoreError>;

    /// Brings the key index that events are attached by up to date with
    /// the stored leads (done anyway when events attach; a service does it
    /// before it takes requests, so the first one does not wait for the
    /// leads imported since).
    fn index_lead_keys(&mut self) -> Result<(), StoreError>;

    /// Attaches events that were waiting for their person, now that the
    /// person may have appeared. Returns the leads that got events.
    fn attach_pending(&mut self, tenant: &str) -> Result<BTreeSet<String>, StoreError>;

    /// Events still waiting for their person.
    fn unattached_events(&self, tenant: &str) -> Result<u64, StoreError>;

    /// How many leads the tenant has, whatever their state.
    fn lead_count(&self, tenant: &str) -> Result<u64, StoreError>;

    /// Leads that get a score: accepted or in review, not merged into
    /// another; all of the tenant's, or only `only`.
    fn scoring_leads(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<ScoringLead>, StoreError>;

    /// The leads of the accounts (registrable domains) given.
    fn account_members(&self, tenant: &str, domains: &[String]) -> Result<Vec<String>, StoreError>;

    /// The leads of the accounts given that have events at or after
    /// `since` (their own, or of leads merged into them).
    fn active_account_members(
        &self,
        tenant: &str,
        domains: &[String],
        since: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Attached events at or after `since`, most recent first, under the
    /// lead they were attached to (see [`SqliteStore::masters`] for merged
    /// leads); all of the tenant's, or only those of `only` and of the
    /// leads merged into them.
    fn recent_events(
        &self,
        tenant: &str,
        since: i64,
        only: Option<&[String]>,
    ) -> Result<Vec<(String, EventRow)>, StoreError>;

    /// Merged or linked leads and the master each counts for: all of the
    /// tenant's, or those whose master is in `only`.
    fn masters(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<HashMap<String, String>, StoreError>;

    /// Each scored lead's surfacing state, and the lowest total of its
    /// history at or after `since` (the base a jump is measured from); of
    /// all the tenant's leads, or only of `only`.
    fn score_states(
        &self,
        tenant: &str,
        since: i64,
        only: Option<&[String]>,
    ) -> Result<HashMap<String, (ScoreState, Option<i64>)>, StoreError>;

    /// Records new scores (a history row where the total changed) and the
    /// leads surfaced, in one transaction.
    fn save_scores(
        &mut self,
        tenant: &str,
        component: &str,
        rows: &[ScoreWrite],
        surfaced: &[Surfaced],
        now: i64,
    ) -> Result<(), StoreError>;

    /// A lead's stored score and history; `None` when it has none.
    fn stored_score(&self, lead: &str) -> Result<Option<StoredScore>, StoreError>;
}

impl Scores for SqliteStore {
    fn insert_events(
        &mut self,
        tenant: &str,
        events: &[NewEvent],
        now: i64,
    ) -> Result<Inserted, StoreError> {
        let tx = self.tx()?;
        catch_up_keys(&tx)?;
        let mut out = Inserted::default();
        {
            let mut by_id = tx
                .prepare_cached("SELECT id FROM leads WHERE id = ?1 AND tenant = ?2")
                .map_err(sql("prepare lead lookup"))?;
            let mut by_key = tx
                .prepare_cached(
                    "SELECT lead_id FROM lead_keys WHERE tenant = ?1 AND kind = ?2 AND value = ?3 LIMIT 1",
                )
                .map_err(sql("prepare key lookup"))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (tenant, id, kind, at, category, value, url, email, ref_lead,
                                                   ext_system, ext_id, lead_id, payload, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(sql("prepare event insert"))?;
            for e in events {
                let mut lead: Option<String> = None;
                if let Some(r) = &e.lead_ref {
                    lead = by_id
                        .query_row(params![r, tenant], |row| row.get(0))
                        .optional()
                        .map_err(sql("look up lead"))?;
                }
                if lead.is_none()
                    && let Some(email) = &e.email
                {
                    lead = by_key
                        .query_row(params![tenant, "email", email], |row| row.get(0))
                        .optional()
                        .map_err(sql("look up email"))?;
                }
                if lead.is_none()
                    && let Some((system, id)) = &e.external
                {
                    lead = by_key
                        .query_row(params![tenant, format!("external:{system}"), id], |row| {
                            row.get(0)
                        })
                        .optional()
                        .map_err(sql("look up external id"))?;
                }
                let n = insert
                    .execute(params![
                        tenant,
                        e.id,
                        e.kind,
                        e.at,
                        e.category,
                        e.value,
                        e.url,
                        e.email,
                        e.lead_ref,
                        e.external.as_ref().map(|x| x.0.as_str()),
                        e.external.as_ref().map(|x| x.1.as_str()),
                        lead,
                        e.payload,
                        now
                    ])
                    .map_err(sql("insert event"))?;
                if n == 0 {
                    out.duplicates += 1;
                    continue;
                }
                out.stored += 1;
                if let Some(l) = lead {
                    out.attached += 1;
                    out.leads.insert(l);
                }
            }
        }
        tx.commit().map_err(sql("commit events"))?;
        Ok(out)
    }

    fn reject_events(
        &mut self,
        tenant: &str,
        input: &str,
        rejects: &[EventReject],
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO event_rejects (tenant, input, line, field, code, message, raw, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sql("prepare reject insert"))?;
            for r in rejects {
                insert
                    .execute(params![
                        tenant,
                        input,
                        r.line as i64,
                        r.field,
                        r.code,
                        r.message,
                        r.raw,
                        now
                    ])
                    .map_err(sql("insert rejected event"))?;
            }
        }
        tx.commit().map_err(sql("commit rejected events"))
    }

    fn index_lead_keys(&mut self) -> Result<(), StoreError> {
        let tx = self.tx()?;
        catch_up_keys(&tx)?;
        tx.commit().map_err(sql("commit key index"))
    }

    fn attach_pending(&mut self, tenant: &str) -> Result<BTreeSet<String>, StoreError> {
        // Nothing waits: the key index is left for when something does
        // (indexing many leads at once touches fewer of its pages).
        // Asked once per recorded batch: the statement is kept.
        let waiting: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM events WHERE tenant = ?1 AND lead_id IS NULL)",
            )
            .and_then(|mut s| s.query_row([tenant], |r| r.get(0)))
            .map_err(sql("look for unattached events"))?;
        if !waiting {
            return Ok(BTreeSet::new());
        }
        catch_up_keys(&self.conn)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "UPDATE events SET lead_id = COALESCE(
                    (SELECT id FROM leads l WHERE l.id = events.ref_lead AND l.tenant = events.tenant),
                    (SELECT lead_id FROM lead_keys k WHERE k.tenant = events.tenant AND k.kind = 'email'
                        AND k.value = events.email LIMIT 1),
                    (SELECT lead_id FROM lead_keys k WHERE k.tenant = events.tenant
                        AND k.kind = 'external:' || events.ext_system AND k.value = events.ext_id LIMIT 1))
                  WHERE tenant = ?1 AND lead_id IS NULL
                 RETURNING lead_id",
            )
            .map_err(sql("prepare attach"))?;
        let rows = stmt
            .query_map([tenant], |r| r.get::<_, Option<String>>(0))
            .map_err(sql("attach events"))?;
        let mut out = BTreeSet::new();
        for r in rows {
            if let Some(id) = r.map_err(sql("attach events"))? {
                out.insert(id);
            }
        }
        Ok(out)
    }

    fn unattached_events(&self, tenant: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE tenant = ?1 AND lead_id IS NULL",
                [tenant],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(sql("count unattached events"))
    }

    fn lead_count(&self, tenant: &str) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached("SELECT count(*) FROM leads WHERE tenant = ?1")
            .and_then(|mut s| s.query_row([tenant], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(sql("count leads"))
    }

    fn scoring_leads(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<ScoringLead>, StoreError> {
        let base = "SELECT id, normalized, enrichment, qualification FROM leads
                     WHERE tenant = ?1 AND master_id IS NULL AND status IN ('accepted', 'review')
                       AND normalized IS NOT NULL";
        let map = |r: &rusqlite::Row<'_>| {
            Ok(ScoringLead {
                id: r.get(0)?,
                normalized: r.get(1)?,
                enrichment: r.get(2)?,
                qualification: r.get(3)?,
            })
        };
        let rows: Result<Vec<ScoringLead>, rusqlite::Error> = match only {
            None => {
                let mut stmt = self
                    .conn
                    .prepare(base)
                    .map_err(sql("read leads to score"))?;
                stmt.query_map([tenant], map)
                    .map_err(sql("read leads to score"))?
                    .collect()
            }
            Some(ids) => {
                // By id first (CROSS JOIN fixes the order): the planner
                // would otherwise walk an index over every lead.
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT l.id, l.normalized, l.enrichment, l.qualification
                           FROM json_each(?2) j CROSS JOIN leads l ON l.id = j.value
                          WHERE l.tenant = ?1 AND l.master_id IS NULL AND l.status IN ('accepted', 'review')
                            AND l.normalized IS NOT NULL",
                    )
                    .map_err(sql("read leads to score"))?;
                stmt.query_map(params![tenant, id_list(ids)?], map)
                    .map_err(sql("read leads to score"))?
                    .collect()
            }
        };
        rows.map_err(sql("read leads to score"))
    }

    fn account_members(&self, tenant: &str, domains: &[String]) -> Result<Vec<String>, StoreError> {
        catch_up_keys(&self.conn)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT lead_id FROM lead_keys
                  WHERE tenant = ?1 AND kind = 'domain' AND value IN (SELECT value FROM json_each(?2))",
            )
            .map_err(sql("read account members"))?;
        let rows = stmt
            .query_map(params![tenant, id_list(domains)?], |r| r.get(0))
            .map_err(sql("read account members"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read account members"))
    }

    fn active_account_members(
        &self,
        tenant: &str,
        domains: &[String],
        since: i64,
    ) -> Result<Vec<String>, StoreError> {
        // No catching up of the key index first: a lead has events only
        // once they were attached to it, and attaching brings the index up
        // to date first, so every lead this can find is in it.
        //
        // The query below looks up every member's events: two index
        // lookups per member, hundreds per large account. With no attached
        // event in the window (one lookup) no member can have one.
        if domains.is_empty() {
            return Ok(Vec::new());
        }
        let any: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM events
                                 WHERE tenant = ?1 AND at >= ?2 AND lead_id IS NOT NULL)",
            )
            .and_then(|mut s| s.query_row(params![tenant, since], |r| r.get(0)))
            .map_err(sql("read account members"))?;
        if !any {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT k.lead_id FROM lead_keys k
                  WHERE k.tenant = ?1 AND k.kind = 'domain' AND k.value IN (SELECT value FROM json_each(?2))
                    AND (EXISTS (SELECT 1 FROM events e WHERE e.lead_id = k.lead_id AND e.at >= ?3)
                         OR EXISTS (SELECT 1 FROM leads m JOIN events e ON e.lead_id = m.id
                                     WHERE m.master_id = k.lead_id AND e.at >= ?3))",
            )
            .map_err(sql("read account members"))?;
        let rows = stmt
            .query_map(params![tenant, id_list(domains)?, since], |r| r.get(0))
            .map_err(sql("read account members"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read account members"))
    }

    fn recent_events(
        &self,
        tenant: &str,
        since: i64,
        only: Option<&[String]>,
    ) -> Result<Vec<(String, EventRow)>, StoreError> {
        // Whole statements (not formatted per call), so both stay prepared.
        macro_rules! recent {
            ($only:literal) => {
                concat!(
                    "SELECT e.lead_id, e.kind, e.at, e.category, e.value
                       FROM events e
                      WHERE e.tenant = ?1 AND e.at >= ?2 AND e.lead_id IS NOT NULL",
                    $only,
                    " ORDER BY e.at DESC"
                )
            };
        }
        let map = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, String>(0)?,
                EventRow {
                    kind: r.get(1)?,
                    at: r.get(2)?,
                    category: r.get(3)?,
                    value: r.get(4)?,
                },
            ))
        };
        let rows: Result<Vec<_>, rusqlite::Error> = match only {
            None => {
                let mut stmt = self
                    .conn
                    .prepare_cached(recent!(""))
                    .map_err(sql("read events"))?;
                stmt.query_map(params![tenant, since], map)
                    .map_err(sql("read events"))?
                    .collect()
            }
            Some(ids) => {
                let mut stmt = self
                    .conn
                    .prepare_cached(recent!(
                        " AND e.lead_id IN (
                            SELECT value FROM json_each(?3)
                            UNION SELECT id FROM leads WHERE master_id IN (SELECT value FROM json_each(?3)))"
                    ))
                    .map_err(sql("read events"))?;
                stmt.query_map(params![tenant, since, id_list(ids)?], map)
                    .map_err(sql("read events"))?
                    .collect()
            }
        };
        rows.map_err(sql("read events"))
    }

    fn masters(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<HashMap<String, String>, StoreError> {
        let map = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
        let rows: Result<HashMap<String, String>, rusqlite::Error> = match only {
            None => {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT id, master_id FROM leads WHERE tenant = ?1 AND master_id IS NOT NULL",
                    )
                    .map_err(sql("read masters"))?;
                stmt.query_map([tenant], map)
                    .map_err(sql("read masters"))?
                    .collect()
            }
            Some(ids) => {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT l.id, l.master_id FROM json_each(?2) j CROSS JOIN leads l ON l.master_id = j.value
                          WHERE l.tenant = ?1",
                    )
                    .map_err(sql("read masters"))?;
                stmt.query_map(params![tenant, id_list(ids)?], map)
                    .map_err(sql("read masters"))?
                    .collect()
            }
        };
        rows.map_err(sql("read masters"))
    }

    fn score_states(
        &self,
        tenant: &str,
        since: i64,
        only: Option<&[String]>,
    ) -> Result<HashMap<String, (ScoreState, Option<i64>)>, StoreError> {
        let ids = only.map(id_list).transpose()?;
        // Two forms of each query: all of the tenant's, or these leads
        // looked up by id (CROSS JOIN fixes the order; an index over the
        // whole tenant would be walked otherwise).
        let (scores_sql, history_sql) = if ids.is_some() {
            (
                "SELECT s.lead_id, s.total, s.above, s.surfaced_at
                   FROM json_each(?2) j CROSS JOIN scores s ON s.lead_id = j.value WHERE s.tenant = ?1",
                "SELECT h.lead_id, MIN(h.total) FROM json_each(?3) j CROSS JOIN score_history h INDEXED BY score_history_lead ON h.lead_id = j.value
                  WHERE h.tenant = ?1 AND h.at >= ?2 GROUP BY h.lead_id",
            )
        } else {
            (
                "SELECT lead_id, total, above, surfaced_at FROM scores WHERE tenant = ?1 AND ?2 IS NULL",
                "SELECT lead_id, MIN(total) FROM score_history
                  WHERE tenant = ?1 AND at >= ?2 AND ?3 IS NULL GROUP BY lead_id",
            )
        };
        let mut out: HashMap<String, (ScoreState, Option<i64>)> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare_cached(scores_sql)
            .map_err(sql("read scores"))?;
        let rows = stmt
            .query_map(params![tenant, ids], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    ScoreState {
                        total: r.get(1)?,
                        above: r.get::<_, i64>(2)? != 0,
                        surfaced_at: r.get(3)?,
                    },
                ))
            })
            .map_err(sql("read scores"))?;
        for r in rows {
            let (id, state) = r.map_err(sql("read scores"))?;
            out.insert(id, (state, None));
        }
        let mut stmt = self
            .conn
            .prepare_cached(history_sql)
            .map_err(sql("read score history"))?;
        let rows = stmt
            .query_map(params![tenant, since, ids], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(sql("read score history"))?;
        for r in rows {
            let (id, min) = r.map_err(sql("read score history"))?;
            if let Some(slot) = out.get_mut(&id) {
                slot.1 = Some(min);
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
        let tx = self.tx()?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO scores (lead_id, tenant, total, grade, probability, detail, component, scored_at, above, surfaced_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT(lead_id) DO UPDATE SET total = excluded.total, grade = excluded.grade,
                       probability = excluded.probability, detail = excluded.detail, component = excluded.component,
                       scored_at = excluded.scored_at, above = excluded.above, surfaced_at = excluded.surfaced_at",
                )
                .map_err(sql("prepare score upsert"))?;
            let mut history = tx
                .prepare_cached(
                    "INSERT INTO score_history (lead_id, tenant, at, total, fit, engagement, intent, probability, cause)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(sql("prepare history insert"))?;
            for r in rows {
                upsert
                    .execute(params![
                        r.lead_id,
                        tenant,
                        r.total,
                        r.grade,
                        r.probability,
                        r.detail,
                        component,
                        now,
                        r.above,
                        r.surfaced_at
                    ])
                    .map_err(sql("save score"))?;
                if r.changed {
                    history
                        .execute(params![
                            r.lead_id,
                            tenant,
                            now,
                            r.total,
                            r.fit,
                            r.engagement,
                            r.intent,
                            r.probability,
                            r.cause
                        ])
                        .map_err(sql("save score history"))?;
                }
            }
            let mut outbox = tx
                .prepare_cached(
                    "INSERT INTO pipeline_outbox (tenant, lead_id, trigger, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql("prepare outbox insert"))?;
            for s in surfaced {
                outbox
                    .execute(params![tenant, s.lead_id, s.trigger, s.payload, now])
                    .map_err(sql("save surfaced lead"))?;
                let d = crate::enrich::Decision {
                    lead: &s.lead_id,
                    run_id: None,
                    now,
                };
                d.write(
                    &tx,
                    "score",
                    component,
                    &format!("surfaced:{}", s.trigger),
                    &s.payload,
                )?;
            }
        }
        tx.commit().map_err(sql("commit scores"))
    }

    fn stored_score(&self, lead: &str) -> Result<Option<StoredScore>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT total, grade, probability, scored_at, above, surfaced_at, detail FROM scores WHERE lead_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([lead], |r| {
                    Ok(StoredScore {
                        total: r.get(0)?,
                        grade: r.get(1)?,
                        probability: r.get(2)?,
                        scored_at: r.get(3)?,
                        above: r.get::<_, i64>(4)? != 0,
                        surfaced_at: r.get(5)?,
                        detail: r.get(6)?,
                        history: Vec::new(),
                    })
                })
                .optional()
            })
            .map_err(sql("read score"))?;
        let Some(mut s) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, total, cause FROM score_history WHERE lead_id = ?1 ORDER BY at, rowid",
            )
            .map_err(sql("read score history"))?;
        s.history = stmt
            .query_map([lead], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql("read score history"))?
            .collect::<Result<_, _>>()
            .map_err(sql("read score history"))?;
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Status;
    use crate::prelude::*;
    use crate::test_support::plain_record;
    use leadgate_lead::Lead;

    fn store_leads(s: &mut SqliteStore, leads: &[(&str, &str)]) {
        let run = s.begin_run("t", "x.csv", "{}", 1).unwrap();
        let raws: Vec<Lead> = leads
            .iter()
            .map(|(id, _)| Lead {
                id: (*id).into(),
                tenant: "t".into(),
                ..Lead::default()
            })
            .collect();
        let normalized: Vec<String> = leads
            .iter()
            .map(|(_, email)| {
                let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                format!(r#"{{"email": "{email}", "domain": "{domain}", "external_ids": [{{"system": "crm", "id": "x-{email}"}}]}}"#)
            })
            .collect();
        let records: Vec<_> = raws
            .iter()
            .zip(&normalized)
            .map(|(raw, n)| plain_record(raw, Status::Accepted, Some(n), &[]))
            .collect();
        s.record(run, "validate", "c", &records, 1).unwrap();
    }

    fn event(id: &str, email: Option<&str>, external: Option<&str>) -> NewEvent {
        NewEvent {
            id: id.into(),
            kind: "page_view",
            at: 10,
            category: None,
            value: 1.0,
            url: None,
            email: email.map(String::from),
            lead_ref: None,
            external: external.map(|x| ("crm".to_string(), x.to_string())),
            payload: "{}".into(),
        }
    }

    #[test]
    fn events_attach_by_key_wait_for_their_person_and_are_idempotent() {
        let mut s = SqliteStore::open(":memory:").unwrap();
        store_leads(&mut s, &[("A", "ann@acme.com")]);
        let r = s
            .insert_events(
                "t",
                &[
                    event("e1", Some("ann@acme.com"), None),
                    event("e2", None, Some("x-ann@acme.com")),
                    event("e3", Some("bob@acme.com"), None),
                    event("e1", Some("ann@acme.com"), None),
                ],
                5,
            )
            .unwrap();
        assert_eq!((r.stored, r.duplicates, r.attached), (3, 1, 2));
        assert_eq!(s.unattached_events("t").unwrap(), 1);
        // Bob appears: his waiting event is attached, and counts for his
        // master once he is merged into Ann.
        store_leads(&mut s, &[("B", "bob@acme.com")]);
        let late = s.attach_pending("t").unwrap();
        assert_eq!(late.into_iter().collect::<Vec<_>>(), vec!["B".to_string()]);
        assert_eq!(s.unattached_events("t").unwrap(), 0);
        s.conn
            .execute("UPDATE leads SET master_id = 'A' WHERE id = 'B'", [])
            .unwrap();
        assert_eq!(
            s.masters("t", None).unwrap().get("B").map(String::as_str),
            Some("A")
        );
        let only = vec!["A".to_string()];
        let rows = s.recent_events("t", 0, Some(&only)).unwrap();
        assert_eq!(rows.len(), 3, "Ann's two and Bob's, merged into her");
        assert_eq!(
            s.account_members("t", &["acme.com".into()]).unwrap().len(),
            2
        );
        assert_eq!(s.lead_count("t").unwrap(), 2, "merged leads count too");
        assert_eq!(s.lead_count("other").unwrap(), 0);
    }

    #[test]
    fn active_members_are_the_account_leads_with_recent_events() {
        let mut s = SqliteStore::open(":memory:").unwrap();
        store_leads(
            &mut s,
            &[
                ("A", "ann@acme.com"),
                ("B", "bob@acme.com"),
                ("C", "cat@acme.com"),
            ],
        );
        s.index_lead_keys().unwrap();
        let acme = vec!["acme.com".to_string()];
        let active = |s: &SqliteStore, since| {
            let mut v = s.active_account_members("t", &acme, since).unwrap();
            v.sort();
            v
        };
        assert!(active(&s, 0).is_empty(), "no events at all");
        // Ann's event is at 10; Cat's too, and Cat is merged into Bob.
        s.insert_events(
            "t",
            &[
                event("e1", Some("ann@acme.com"), None),
                event("e2", Some("cat@acme.com"), None),
            ],
            5,
        )
        .unwrap();
        s.conn
            .execute("UPDATE leads SET master_id = 'B' WHERE id = 'C'", [])
            .unwrap();
        // Bob through Cat; Cat too (scoring leaves merged leads out).
        let abc: Vec<String> = ["A", "B", "C"].map(String::from).into();
        assert_eq!(active(&s, 0), abc);
        assert_eq!(active(&s, 10), abc);
        assert!(
            active(&s, 11).is_empty(),
            "the events are older than the window"
        );
        assert!(s.active_account_members("t", &[], 0).unwrap().is_empty());
        assert!(
            s.active_account_members("t", &["other.com".into()], 0)
                .unwrap()
                .is_empty()
        );
    }
}
