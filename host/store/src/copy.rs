//! Moving a store to another backend (`leadgate migrate-store`): every
//! table copied from one store into an empty one — SQLite to PostgreSQL,
//! back, or between two of a kind — and verified afterwards by a row count
//! and a checksum per table, computed on what the source held and on what
//! the destination holds after the copy. The source is only read.
//!
//! Rows travel as neutral values in chunks; PostgreSQL takes each chunk as
//! one `INSERT … SELECT FROM unnest(…)` of column arrays, SQLite as
//! prepared inserts in one transaction. What the backends keep
//! differently is translated: the match index refers to leads by rowid
//! (SQLite) or `seq` (PostgreSQL), and is copied as (key, lead id);
//! SQLite's deferred key tiers and its lagging event-key index are read as
//! the index they stand for; the intake log's packed bodies are unpacked;
//! kept counts are recounted; PostgreSQL's id sequences are moved past the
//! copied ids.

use crate::pg::{PgStore, pg};
use crate::{SqliteStore, Store, StoreError, sql};
use postgres::types::ToSql;

/// A column's type, as both backends can hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Text,
    /// PostgreSQL `BOOLEAN`, SQLite 0/1.
    Bool,
}

/// One value in transit.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

use Kind::{Bool, Int, Real, Text};

/// A table copied column for column.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// How the source is read: in the order rows were written.
    sqlite_order: &'static str,
    pg_order: &'static str,
    /// The identity column whose sequence moves past the copied ids.
    identity: bool,
}

const fn table(
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    sqlite_order: &'static str,
    pg_order: &'static str,
    identity: bool,
) -> Table {
    Table {
        name,
        columns,
        sqlite_order,
        pg_order,
        identity,
    }
}

/// Every table but the match index and the intake log, in an order that
/// satisfies foreign keys. Pass leases (`passes`) are not copied: a store
/// is moved with nothing running on it.
const TABLES: &[Table] = &[
    table(
        "runs",
        &[
            ("id", Int),
            ("tenant", Text),
            ("input", Text),
            ("started_at", Int),
            ("finished_at", Int),
            ("components", Text),
            ("total", Int),
            ("accepted", Int),
            ("rejected", Int),
            ("review", Int),
            ("exceptions", Int),
            ("status", Text),
            ("duplicates", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "leads",
        &[
            ("id", Text),
            ("tenant", Text),
            ("source", Text),
            ("received_at", Int),
            ("raw", Text),
            ("normalized", Text),
            ("status", Text),
            ("run_id", Int),
            ("line", Int),
            ("updated_at", Int),
            ("master_id", Text),
            ("enrichment", Text),
            ("qualification", Text),
            ("qualification_reasons", Text),
        ],
        "rowid",
        "seq",
        false,
    ),
    table(
        "decisions",
        &[
            ("id", Int),
            ("lead_id", Text),
            ("run_id", Int),
            ("capability", Text),
            ("component", Text),
            ("verdict", Text),
            ("normalized", Text),
            ("decided_at", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "issues",
        &[
            ("decision_id", Int),
            ("lead_id", Text),
            ("field", Text),
            ("code", Text),
            ("severity", Text),
            ("message", Text),
        ],
        "rowid",
        "seq",
        false,
    ),
    table(
        "exceptions",
        &[
            ("id", Int),
            ("lead_id", Text),
            ("run_id", Int),
            ("capability", Text),
            ("component", Text),
            ("code", Text),
            ("error", Text),
            ("created_at", Int),
            ("resolved_at", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "golden",
        &[
            ("id", Text),
            ("tenant", Text),
            ("record", Text),
            ("updated_at", Int),
        ],
        "id",
        "id",
        false,
    ),
    table(
        "merges",
        &[
            ("id", Int),
            ("tenant", Text),
            ("master_id", Text),
            ("lead_id", Text),
            ("kind", Text),
            ("probability", Real),
            ("evidence", Text),
            ("decided_by", Text),
            ("run_id", Int),
            ("created_at", Int),
            ("undone_at", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "match_reviews",
        &[
            ("id", Int),
            ("tenant", Text),
            ("lead_a", Text),
            ("lead_b", Text),
            ("probability", Real),
            ("evidence", Text),
            ("reason", Text),
            ("run_id", Int),
            ("created_at", Int),
            ("decision", Text),
            ("reviewer", Text),
            ("note", Text),
            ("decided_at", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "enrich_queue",
        &[
            ("lead_id", Text),
            ("tenant", Text),
            ("reason", Text),
            ("queued_at", Int),
            ("attempts", Int),
            ("last_try_at", Int),
        ],
        "lead_id",
        "lead_id",
        false,
    ),
    table(
        "enrich_cache",
        &[
            ("provider", Text),
            ("kind", Text),
            ("key", Text),
            ("value", Text),
            ("fetched_at", Int),
        ],
        "provider, kind, key",
        "provider, kind, key",
        false,
    ),
    table(
        "provider_stats",
        &[("run_id", Int), ("provider", Text), ("stats", Text)],
        "run_id, provider",
        "run_id, provider",
        false,
    ),
    table(
        "events",
        &[
            ("tenant", Text),
            ("id", Text),
            ("kind", Text),
            ("at", Int),
            ("category", Text),
            ("value", Real),
            ("url", Text),
            ("email", Text),
            ("ref_lead", Text),
            ("ext_system", Text),
            ("ext_id", Text),
            ("lead_id", Text),
            ("payload", Text),
            ("received_at", Int),
        ],
        "tenant, id",
        "tenant, id",
        false,
    ),
    table(
        "event_rejects",
        &[
            ("id", Int),
            ("tenant", Text),
            ("input", Text),
            ("line", Int),
            ("field", Text),
            ("code", Text),
            ("message", Text),
            ("raw", Text),
            ("received_at", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "scores",
        &[
            ("lead_id", Text),
            ("tenant", Text),
            ("total", Int),
            ("grade", Text),
            ("probability", Real),
            ("detail", Text),
            ("component", Text),
            ("scored_at", Int),
            ("above", Bool),
            ("surfaced_at", Int),
        ],
        "lead_id",
        "lead_id",
        false,
    ),
    table(
        "score_history",
        &[
            ("lead_id", Text),
            ("tenant", Text),
            ("at", Int),
            ("total", Int),
            ("fit", Real),
            ("engagement", Real),
            ("intent", Real),
            ("probability", Real),
            ("cause", Text),
        ],
        "rowid",
        "seq",
        false,
    ),
    table(
        "pipeline_outbox",
        &[
            ("id", Int),
            ("tenant", Text),
            ("lead_id", Text),
            ("trigger", Text),
            ("payload", Text),
            ("created_at", Int),
            ("delivered_at", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "api_keys",
        &[
            ("hash", Text),
            ("tenant", Text),
            ("label", Text),
            ("prefix", Text),
            ("created_at", Int),
            ("revoked_at", Int),
        ],
        "hash",
        "hash",
        false,
    ),
    table(
        "review_queue",
        &[
            ("id", Int),
            ("tenant", Text),
            ("lead_id", Text),
            ("kind", Text),
            ("match_review", Int),
            ("reason", Text),
            ("source", Text),
            ("confidence", Real),
            ("created_at", Int),
            ("escalated_at", Int),
            ("fallback_at", Int),
            ("fallback", Text),
            ("decided_at", Int),
            ("decision", Text),
            ("reviewer", Text),
            ("note", Text),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "alerts",
        &[
            ("id", Int),
            ("tenant", Text),
            ("kind", Text),
            ("subject", Text),
            ("message", Text),
            ("created_at", Int),
            ("labels", Text),
            ("state", Text),
            ("ends_at", Int),
            ("claimed_by", Text),
            ("claimed_until", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "crm_outbox",
        &[
            ("id", Int),
            ("tenant", Text),
            ("lead_id", Text),
            ("target", Text),
            ("op", Text),
            ("crm_id", Text),
            ("state", Text),
            ("attempts", Int),
            ("next_at", Int),
            ("last_error", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("delivered_at", Int),
            ("claimed_by", Text),
            ("claimed_until", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "crm_records",
        &[
            ("tenant", Text),
            ("lead_id", Text),
            ("target", Text),
            ("crm_id", Text),
            ("first_at", Int),
            ("last_at", Int),
        ],
        "tenant, lead_id, target",
        "tenant, lead_id, target",
        false,
    ),
    table(
        "reps",
        &[
            ("tenant", Text),
            ("id", Text),
            ("doc", Text),
            ("load_day", Text),
            ("assigned_day", Int),
            ("open_count", Int),
            ("assigned_total", Int),
            ("last_assigned_at", Int),
            ("turn", Int),
            ("touched", Int),
            ("touched_in_sla", Int),
            ("breached", Int),
            ("updated_at", Int),
        ],
        "tenant, id",
        "tenant, id",
        false,
    ),
    table(
        "assignments",
        &[
            ("id", Int),
            ("tenant", Text),
            ("lead_id", Text),
            ("rep_id", Text),
            ("team", Text),
            ("step", Text),
            ("state", Text),
            ("explanation", Text),
            ("domain", Text),
            ("company_key", Text),
            ("sla_due_at", Int),
            ("assigned_by", Text),
            ("created_at", Int),
            ("touched_at", Int),
            ("replaced_at", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "timers",
        &[
            ("id", Int),
            ("tenant", Text),
            ("kind", Text),
            ("ref_id", Int),
            ("due_at", Int),
            ("done_at", Int),
            ("claimed_by", Text),
            ("claimed_until", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "alert_groups",
        &[
            ("id", Int),
            ("tenant", Text),
            ("route", Text),
            ("destination", Text),
            ("channel", Text),
            ("group_key", Text),
            ("flush_at", Int),
            ("held", Int),
            ("last_sent_at", Int),
            ("seq", Int),
            ("claimed_by", Text),
            ("claimed_until", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "alert_members",
        &[
            ("group_id", Int),
            ("fingerprint", Text),
            ("alert_id", Int),
            ("repeats", Int),
        ],
        "group_id, fingerprint",
        "group_id, fingerprint",
        false,
    ),
    table(
        "alert_sent",
        &[
            ("tenant", Text),
            ("route", Text),
            ("destination", Text),
            ("channel", Text),
            ("fingerprint", Text),
            ("sent_at", Int),
        ],
        "tenant, route, destination, channel, fingerprint",
        "tenant, route, destination, channel, fingerprint",
        false,
    ),
    table(
        "notifications",
        &[
            ("id", Int),
            ("tenant", Text),
            ("idem_key", Text),
            ("route", Text),
            ("destination", Text),
            ("channel", Text),
            ("title", Text),
            ("body", Text),
            ("alert_ids", Text),
            ("state", Text),
            ("attempts", Int),
            ("next_at", Int),
            ("last_error", Text),
            ("claimed_by", Text),
            ("claimed_until", Int),
            ("created_at", Int),
            ("sent_at", Int),
        ],
        "id",
        "id",
        true,
    ),
    table(
        "notify_pace",
        &[("tenant", Text), ("pace_key", Text), ("next_at", Int)],
        "tenant, pace_key",
        "tenant, pace_key",
        false,
    ),
    table(
        "silences",
        &[
            ("id", Int),
            ("tenant", Text),
            ("matchers", Text),
            ("starts_at", Int),
            ("ends_at", Int),
            ("comment", Text),
            ("created_by", Text),
            ("created_at", Int),
        ],
        "id",
        "id",
        true,
    ),
];

const MATCH_KEYS: &[(&str, Kind)] = &[("key", Int), ("lead_id", Text)];
const LEAD_KEYS: &[(&str, Kind)] = &[
    ("tenant", Text),
    ("kind", Text),
    ("value", Text),
    ("lead_id", Text),
];
const INTAKE: &[(&str, Kind)] = &[
    ("id", Int),
    ("tenant", Text),
    ("key", Text),
    ("kind", Text),
    ("fingerprint", Text),
    ("body", Text),
    ("lead_ids", Text),
    ("received_at", Int),
    ("state", Text),
    ("status_code", Int),
    ("result", Text),
    ("done_at", Int),
    ("claimed_by", Text),
    ("claimed_until", Int),
];

/// Rows per chunk written.
const CHUNK: usize = 5_000;

/// One table as copied: rows and checksum read from the source, and the
/// same read back from the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub rows: u64,
    pub checksum: u64,
    pub rows_after: u64,
    pub checksum_after: u64,
}

impl Copied {
    /// Whether the destination holds what the source held.
    pub fn verified(&self) -> bool {
        self.rows == self.rows_after && self.checksum == self.checksum_after
    }
}

/// Order-independent checksum of a multiset of rows: the wrapping sum of
/// each row's FNV-1a hash over a canonical encoding of its values.
#[derive(Default, Clone, Copy)]
struct Sum {
    rows: u64,
    sum: u64,
}

impl Sum {
    fn add(&mut self, row: &[Value]) {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(PRIME);
            }
        };
        for v in row {
            match v {
                Value::Null => eat(&[0]),
                Value::Int(i) => {
                    eat(&[1]);
                    eat(&i.to_le_bytes());
                }
                Value::Real(f) => {
                    eat(&[2]);
                    eat(&f.to_bits().to_le_bytes());
                }
                Value::Text(s) => {
                    eat(&[3]);
                    eat(&(s.len() as u64).to_le_bytes());
                    eat(s.as_bytes());
                }
            }
        }
        self.rows += 1;
        self.sum = self.sum.wrapping_add(h);
    }
}

/// What is read and written, by name: a table as it is, or one of those
/// the backends keep differently.
#[derive(Clone, Copy)]
enum Source<'t> {
    Plain(&'t Table),
    MatchKeys,
    LeadKeys,
    Intake,
}

impl Source<'_> {
    fn name(&self) -> &'static str {
        match self {
            Source::Plain(t) => t.name,
            Source::MatchKeys => "match_keys",
            Source::LeadKeys => "lead_keys",
            Source::Intake => "intake",
        }
    }

    fn columns(&self) -> &'static [(&'static str, Kind)] {
        match self {
            Source::Plain(t) => t.columns,
            Source::MatchKeys => MATCH_KEYS,
            Source::LeadKeys => LEAD_KEYS,
            Source::Intake => INTAKE,
        }
    }
}

/// Copies every table of `from` into `to`, which must hold no leads, runs,
/// keys or requests yet, then reads both back to verify each table.
/// `progress` hears of each table as it is done.
pub fn copy_store(
    from: &Store,
    to: &mut Store,
    mut progress: impl FnMut(&Copied),
) -> Result<Vec<Copied>, StoreError> {
    if from.path() == to.path() {
        return Err(StoreError::SameStore(to.path().to_string()));
    }
    for t in ["leads", "runs", "api_keys", "intake", "events"] {
        let n = to.count(t)?;
        if n > 0 {
            return Err(StoreError::NotEmpty {
                target: to.path().to_string(),
                table: t,
                rows: n,
            });
        }
    }
    let mut sources: Vec<Source<'_>> = Vec::new();
    for t in TABLES {
        sources.push(Source::Plain(t));
        if t.name == "leads" {
            sources.push(Source::MatchKeys);
            sources.push(Source::LeadKeys);
        }
    }
    sources.push(Source::Intake);
    let mut done = Vec::with_capacity(sources.len());
    for source in &sources {
        let mut tx = to.batch()?;
        let mut sum = Sum::default();
        let mut chunk: Vec<Vec<Value>> = Vec::with_capacity(CHUNK);
        read(from, *source, &mut |row| {
            sum.add(&row);
            chunk.push(row);
            if chunk.len() >= CHUNK {
                write(&mut tx, *source, &chunk)?;
                chunk.clear();
            }
            Ok(())
        })?;
        write(&mut tx, *source, &chunk)?;
        if let (Source::Plain(t), Store::Sqlite(s)) = (source, &*tx)
            && t.name == "leads"
        {
            // The copied leads' event keys come with the index, not from
            // catching up.
            s.conn
                .execute(
                    "UPDATE lead_keys_state SET last_rowid = (SELECT coalesce(max(rowid), 0) FROM leads)",
                    [],
                )
                .map_err(sql("mark the event keys indexed"))?;
        }
        tx.commit()?;
        let mut after = Sum::default();
        read(to, *source, &mut |row| {
            after.add(&row);
            Ok(())
        })?;
        let copied = Copied {
            table: source.name(),
            rows: sum.rows,
            checksum: sum.sum,
            rows_after: after.rows,
            checksum_after: after.sum,
        };
        progress(&copied);
        done.push(copied);
    }
    finish(to)?;
    Ok(done)
}

/// What a copied store needs beyond its rows: the kept counts recounted,
/// and, per backend, the id sequences (PostgreSQL) or the key-filter
/// counter (SQLite).
fn finish(to: &mut Store) -> Result<(), StoreError> {
    const RECOUNT: &str = "DELETE FROM tenant_counts;
        INSERT INTO tenant_counts (tenant, name, n)
            SELECT tenant, 'outbox:' || state, count(*) FROM crm_outbox GROUP BY tenant, state;
        INSERT INTO tenant_counts (tenant, name, n)
            SELECT tenant, 'review:decided', count(*) FROM review_queue
             WHERE decided_at IS NOT NULL GROUP BY tenant;
        INSERT INTO tenant_counts (tenant, name, n)
            SELECT tenant, 'review:in_time', count(*) FROM review_queue
             WHERE decided_at IS NOT NULL AND escalated_at IS NULL AND reviewer NOT LIKE 'sla:%'
             GROUP BY tenant;";
    match to {
        Store::Sqlite(s) => s
            .conn
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 {RECOUNT}
                 {}; COMMIT;",
                crate::key_filter::COUNT_DIRECT_WRITE
            ))
            .map_err(sql("finish the copied store")),
        Store::Postgres(p) => {
            let mut script = format!("BEGIN; {RECOUNT}");
            for t in TABLES.iter().filter(|t| t.identity) {
                script.push_str(&format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', 'id'), coalesce(max(id), 0) + 1, false) FROM {0};",
                    t.name
                ));
            }
            script.push_str(
                "SELECT setval(pg_get_serial_sequence('intake', 'id'), coalesce(max(id), 0) + 1, false) FROM intake; COMMIT;",
            );
            p.client()
                .batch_execute(&script)
                .map_err(pg("finish the copied store"))
        }
    }
}

type Visit<'v> = dyn FnMut(Vec<Value>) -> Result<(), StoreError> + 'v;

fn read(store: &Store, source: Source<'_>, visit: &mut Visit<'_>) -> Result<(), StoreError> {
    match store {
        Store::Sqlite(s) => read_sqlite(s, source, visit),
        Store::Postgres(p) => read_pg(p, source, visit),
    }
}

fn column_list(columns: &[(&str, Kind)]) -> String {
    columns
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_sqlite(
    s: &SqliteStore,
    source: Source<'_>,
    visit: &mut Visit<'_>,
) -> Result<(), StoreError> {
    let query = match source {
        Source::Plain(t) => format!(
            "SELECT {} FROM {} ORDER BY {}",
            column_list(t.columns),
            t.name,
            t.sqlite_order
        ),
        Source::Intake => format!("SELECT {} FROM intake ORDER BY id", column_list(INTAKE)),
        Source::MatchKeys => {
            // The index as lookups see it: both folded tiers and the
            // deferred rows, each entry once.
            s.conn
                .execute_batch(
                    "DROP TABLE IF EXISTS temp.copy_pending;
                     CREATE TEMP TABLE copy_pending (key INTEGER NOT NULL, lead INTEGER NOT NULL);",
                )
                .map_err(sql("read deferred match keys"))?;
            let pending: Vec<(i64, i64, Vec<u8>)> = {
                let mut stmt = s
                    .conn
                    .prepare("SELECT id, lead, keys FROM match_keys_new")
                    .map_err(sql("read deferred match keys"))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(sql("read deferred match keys"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(sql("read deferred match keys"))?
            };
            {
                let mut put = s
                    .conn
                    .prepare("INSERT INTO temp.copy_pending (key, lead) VALUES (?1, ?2)")
                    .map_err(sql("read deferred match keys"))?;
                for (id, lead, blob) in &pending {
                    for k in crate::pending_keys::unpack(*id, blob)? {
                        put.execute([k, *lead])
                            .map_err(sql("read deferred match keys"))?;
                    }
                }
            }
            "SELECT k.key, l.id FROM (SELECT key, lead FROM match_keys
                                       UNION SELECT key, lead FROM match_keys_mid
                                       UNION SELECT key, lead FROM temp.copy_pending) k
               JOIN leads l ON l.rowid = k.lead ORDER BY l.rowid, k.key"
                .to_string()
        }
        Source::LeadKeys => {
            // The index and what catching up would add (SQLite indexes
            // leads recorded since its mark only when events arrive).
            "SELECT tenant, kind, value, lead_id FROM lead_keys
             UNION
             SELECT tenant, 'email', lower(json_extract(normalized, '$.email')), id FROM leads
              WHERE rowid > (SELECT last_rowid FROM lead_keys_state WHERE id = 1)
                AND json_extract(normalized, '$.email') IS NOT NULL
             UNION
             SELECT tenant, 'domain', lower(json_extract(normalized, '$.domain')), id FROM leads
              WHERE rowid > (SELECT last_rowid FROM lead_keys_state WHERE id = 1)
                AND json_extract(normalized, '$.domain') IS NOT NULL
             UNION
             SELECT l.tenant, 'external:' || lower(json_extract(e.value, '$.system')), json_extract(e.value, '$.id'), l.id
               FROM leads l, json_each(l.normalized, '$.external_ids') e
              WHERE l.rowid > (SELECT last_rowid FROM lead_keys_state WHERE id = 1)
                AND json_extract(e.value, '$.id') IS NOT NULL"
                .to_string()
        }
    };
    let columns = source.columns();
    let packed = matches!(source, Source::Intake);
    let mut stmt = s.conn.prepare(&query).map_err(sql("read for copying"))?;
    let mut rows = stmt.query([]).map_err(sql("read for copying"))?;
    while let Some(r) = rows.next().map_err(sql("read for copying"))? {
        let mut row = Vec::with_capacity(columns.len());
        for (i, (name, kind)) in columns.iter().enumerate() {
            let v = if packed && matches!(*name, "body" | "result") {
                r.get::<_, Option<crate::packed::Unpacked>>(i)
                    .map(|u| u.map_or(Value::Null, |u| Value::Text(u.0)))
            } else {
                match kind {
                    Int | Bool => r
                        .get::<_, Option<i64>>(i)
                        .map(|v| v.map_or(Value::Null, Value::Int)),
                    Real => r
                        .get::<_, Option<f64>>(i)
                        .map(|v| v.map_or(Value::Null, Value::Real)),
                    Text => r
                        .get::<_, Option<String>>(i)
                        .map(|v| v.map_or(Value::Null, Value::Text)),
                }
            };
            row.push(v.map_err(sql("read for copying"))?);
        }
        visit(row)?;
    }
    if matches!(source, Source::MatchKeys) {
        drop(rows);
        drop(stmt);
        s.conn
            .execute_batch("DROP TABLE temp.copy_pending")
            .map_err(sql("read deferred match keys"))?;
    }
    Ok(())
}

fn read_pg(p: &PgStore, source: Source<'_>, visit: &mut Visit<'_>) -> Result<(), StoreError> {
    let query = match source {
        Source::Plain(t) => format!(
            "SELECT {} FROM {} ORDER BY {}",
            column_list(t.columns),
            t.name,
            t.pg_order
        ),
        Source::Intake => format!("SELECT {} FROM intake ORDER BY id", column_list(INTAKE)),
        Source::MatchKeys => {
            "SELECT k.key, l.id FROM match_keys k JOIN leads l ON l.seq = k.lead ORDER BY l.seq, k.key"
                .to_string()
        }
        Source::LeadKeys => "SELECT tenant, kind, value, lead_id FROM lead_keys".to_string(),
    };
    let columns = source.columns();
    let mut client = p.client();
    let params: [&(dyn ToSql + Sync); 0] = [];
    let mut rows = client
        .query_raw(query.as_str(), params)
        .map_err(pg("read for copying"))?;
    use postgres::fallible_iterator::FallibleIterator;
    while let Some(r) = rows.next().map_err(pg("read for copying"))? {
        let mut row = Vec::with_capacity(columns.len());
        for (i, (_, kind)) in columns.iter().enumerate() {
            let v = match kind {
                Int => r
                    .try_get::<_, Option<i64>>(i)
                    .map(|v| v.map_or(Value::Null, Value::Int)),
                Bool => r
                    .try_get::<_, Option<bool>>(i)
                    .map(|v| v.map_or(Value::Null, |b| Value::Int(i64::from(b)))),
                Real => r
                    .try_get::<_, Option<f64>>(i)
                    .map(|v| v.map_or(Value::Null, Value::Real)),
                Text => r
                    .try_get::<_, Option<String>>(i)
                    .map(|v| v.map_or(Value::Null, Value::Text)),
            };
            row.push(v.map_err(pg("read for copying"))?);
        }
        visit(row)?;
    }
    Ok(())
}

fn write(to: &mut Store, source: Source<'_>, rows: &[Vec<Value>]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match to {
        Store::Sqlite(s) => write_sqlite(s, source, rows),
        Store::Postgres(p) => write_pg(p, source, rows),
    }
}

fn write_sqlite(
    s: &SqliteStore,
    source: Source<'_>,
    rows: &[Vec<Value>],
) -> Result<(), StoreError> {
    let columns = source.columns();
    let statement = match source {
        Source::MatchKeys => {
            "INSERT OR IGNORE INTO match_keys (key, lead) SELECT ?1, rowid FROM leads WHERE id = ?2"
                .to_string()
        }
        Source::LeadKeys => {
            "INSERT OR IGNORE INTO lead_keys (tenant, kind, value, lead_id) VALUES (?1, ?2, ?3, ?4)"
                .to_string()
        }
        _ => format!(
            "INSERT INTO {} ({}) VALUES ({})",
            source.name(),
            column_list(columns),
            (1..=columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let packed = matches!(source, Source::Intake);
    let mut stmt = s
        .conn
        .prepare_cached(&statement)
        .map_err(sql("write copied rows"))?;
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            let at = i + 1;
            let bound = match v {
                Value::Null => stmt.raw_bind_parameter(at, rusqlite::types::Null),
                Value::Int(n) => stmt.raw_bind_parameter(at, n),
                Value::Real(f) => stmt.raw_bind_parameter(at, f),
                Value::Text(t) if packed && matches!(columns[i].0, "body" | "result") => {
                    stmt.raw_bind_parameter(at, crate::packed::Pack(t.as_str()))
                }
                Value::Text(t) => stmt.raw_bind_parameter(at, t),
            };
            bound.map_err(sql("write copied rows"))?;
        }
        stmt.raw_execute().map_err(sql("write copied rows"))?;
    }
    Ok(())
}

/// A chunk's values of one column, as a typed array parameter.
fn array(rows: &[Vec<Value>], i: usize, kind: Kind) -> Box<dyn ToSql + Sync> {
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    match kind {
        Int => Box::new(rows.iter().map(|r| int(&r[i])).collect::<Vec<_>>()),
        Bool => Box::new(
            rows.iter()
                .map(|r| int(&r[i]).map(|n| n != 0))
                .collect::<Vec<_>>(),
        ),
        Real => Box::new(
            rows.iter()
                .map(|r| match &r[i] {
                    Value::Real(f) => Some(*f),
                    Value::Int(n) => Some(*n as f64),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Text => Box::new(
            rows.iter()
                .map(|r| match &r[i] {
                    Value::Text(t) => Some(t.clone()),
                    Value::Int(n) => Some(n.to_string()),
                    Value::Real(f) => Some(f.to_string()),
                    Value::Null => None,
                })
                .collect::<Vec<_>>(),
        ),
    }
}

fn pg_type(kind: Kind) -> &'static str {
    match kind {
        Int => "BIGINT[]",
        Real => "FLOAT8[]",
        Text => "TEXT[]",
        Bool => "BOOL[]",
    }
}

fn write_pg(p: &PgStore, source: Source<'_>, rows: &[Vec<Value>]) -> Result<(), StoreError> {
    let columns = source.columns();
    let arrays: Vec<Box<dyn ToSql + Sync>> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| array(rows, i, *kind))
        .collect();
    let unnest = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("${}::{}", i + 1, pg_type(*kind)))
        .collect::<Vec<_>>()
        .join(", ");
    let statement = match source {
        Source::MatchKeys => format!(
            "INSERT INTO match_keys (key, lead)
             SELECT u.key, l.seq FROM unnest({unnest}) WITH ORDINALITY AS u(key, id, ord)
               JOIN leads l ON l.id = u.id ORDER BY u.ord
             ON CONFLICT DO NOTHING"
        ),
        Source::LeadKeys => format!(
            "INSERT INTO lead_keys (tenant, kind, value, lead_id) SELECT * FROM unnest({unnest})
             ON CONFLICT DO NOTHING"
        ),
        Source::Intake => format!(
            "INSERT INTO intake ({}) OVERRIDING SYSTEM VALUE SELECT * FROM unnest({unnest})",
            column_list(columns)
        ),
        Source::Plain(t) => format!(
            "INSERT INTO {} ({}) SELECT * FROM unnest({unnest})",
            t.name,
            column_list(columns)
        ),
    };
    let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a.as_ref()).collect();
    p.client()
        .execute(statement.as_str(), &params)
        .map_err(pg("write copied rows"))?;
    Ok(())
}
