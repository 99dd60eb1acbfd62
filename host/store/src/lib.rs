//! The store: every aggregate behind a trait ([`prelude`]) the rest of the
//! host calls it through. [`Store`] opens one by its location: a SQLite
//! file (or `:memory:`), [`SqliteStore`], the embedded default; or a
//! `postgres://` URL, [`pg::PgStore`], the server several hosts share. Both
//! implement every trait with the same answers (the contract tests in
//! `tests/` run each call on both), and [`copy`] moves a store from one to
//! the other. It touches nothing but its database and, for SQLite, the
//! database's files.
//!
//! The rest of this page describes the SQLite schema; PostgreSQL's is the
//! same tables with its own types (`migrations-pg/`, see [`pg`]).
//!
//! Tables (see [`MIGRATIONS`]): `runs` (one batch job each), `leads` (the raw
//! lead as received, its current status), `decisions` (every verdict a
//! capability reached, with the component digest and the normalized lead it
//! produced: the audit trail), `issues` (per decision), `exceptions` (leads a
//! component failed on: the exception queue).
//!
//! Matching (migration 2, [`matching`]): `match_keys` (the blocking-key
//! index: hashed key → lead), `merges` (every merge or link, reversible:
//! nothing is deleted, an unmerge stamps `undone_at`), `golden` (the golden
//! record of each merged group, keyed by its master lead), `match_reviews`
//! (uncertain pairs with their evidence, and reviewers' decisions).
//! Migration 6 adds `match_keys_new`: the newest keys of a writer that
//! defers them, folded into `match_keys` a key slice at a time
//! ([`SqliteStore::defer_match_keys`]; lookups read both). Migration 8 adds
//! `match_keys_writes`, a count of the transactions that wrote
//! `match_keys` directly, for connections that keep a filter of its keys
//! ([`SqliteStore::filter_match_keys`]). Migration 10 adds `match_keys_mid`,
//! the index's middle tier: the deferring writer folds into it, and moves
//! it into `match_keys` slice by slice, less often ([`pending_keys`]).
//! `leads.master_id` points a merged or linked lead at its master.
//!
//! Enrichment (migration 3, [`enrich`]): `leads.enrichment` (fields with
//! source and confidence), `leads.qualification` and its reasons,
//! `enrich_queue` (leads to enrich again: a lookup was pending, failed or
//! stale), `enrich_cache` (providers' answers, outliving the process),
//! `provider_stats` (per run and provider: success, latency, cache hits).
//!
//! Scoring (migration 4, [`score`]): `lead_keys` (email, domain and
//! external ids → lead, for attaching events), `events` (behavioural
//! events, idempotent by id; unattached until their person appears),
//! `event_rejects` (malformed events with the reason), `scores` (each
//! lead's current score and surfacing state), `score_history`, and
//! `pipeline_outbox` (leads surfaced to sales, awaiting delivery).
//!
//! Service (migration 5, [`service`]): `api_keys` (per-tenant keys, stored
//! hashed), `intake` (every accepted HTTP request by idempotency key: its
//! body until processed, then its result), `review_queue` (every lead
//! waiting for a person — failed validation, an uncertain match, an
//! ambiguous classification — with its SLA state and the decision),
//! `alerts`, `crm_outbox` (handoffs to the CRM with attempts and backoff)
//! and `crm_records` (the CRM's record id for each handed-off lead);
//! migration 9 adds `tenant_counts`, kept by triggers, so that the metrics
//! read counts instead of counting the outbox and the decided reviews;
//! migration 11 scopes the intake log's idempotency keys to their route.
//!
//! Routing (migration 15, [`routing`]) and the notifier (migration 16,
//! [`notify`]) keep reps, assignments, timers, alert groups, the
//! notification outbox and silences. Workflow rules (migration 18,
//! [`rules`]): `rule_versions` (each rule version's behaviour as loaded),
//! `rule_leads` (each lead's rules record and next inactivity timer),
//! `rule_inbox` (leads waiting for the rules), `rule_executions` (unique by
//! idempotency key), `rule_actions` (each action's key, state and outcome)
//! and `lead_stages`.
//!
//! Writes go through [`Runs::record`](runs::Runs::record) in batches, one transaction each; a
//! [`Batch`] (`Store::batch`) makes every write through it one transaction,
//! store functions included (the service records, scores and answers a
//! batch of requests this way).
//!
//! On Linux file stores are opened through the VFS shim in `mapped.rs`,
//! which keeps a connection's memory map across other connections'
//! commits instead of letting SQLite drop it at each.

mod backend;
mod checkpoint;
pub mod copy;
pub mod enrich;
mod key_filter;
mod mapped;
pub mod matching;
pub mod merges;
pub mod notify;
mod packed;
pub mod passes;
mod pending_keys;
pub mod pg;
mod pool;
pub mod rekey;
pub mod routing;
pub mod rules;
mod runs;
pub mod score;
pub mod service;

/// The store's aggregate traits, for `use leadgate_store::prelude::*`: what
/// the rest of the host calls the store through, and what a second backend
/// implements.
pub mod prelude {
    pub use crate::enrich::Enrichments;
    pub use crate::matching::MatchIndex;
    pub use crate::merges::{MatchReviews, Merges};
    pub use crate::notify::Notifications;
    pub use crate::passes::Passes;
    pub use crate::rekey::Rekey;
    pub use crate::routing::Routing;
    pub use crate::rules::Rules;
    pub use crate::runs::Runs;
    pub use crate::score::Scores;
    pub use crate::service::{ApiKeys, CrmOutbox, IntakeLog, ReviewQueue};
}
#[cfg(test)]
mod test_support;
mod wal_writes;

pub use backend::{Batch, Store};
pub use checkpoint::{FORCE_RESTART_FRAMES, RESTART_FRAMES, Round, WalLength};
pub use key_filter::REBUILD_EVERY as KEY_FILTER_REBUILD_EVERY;
pub use matching::{
    Candidate, GoldenMember, LeadRow, Link, LinkKind, MergeRow, Review, ReviewItem, key_hash,
};
pub use pending_keys::{DEFAULT_CYCLE_LEADS, KeyMap, MID_ROUNDS};
pub use pool::{Pool, Pooled};

use leadgate_lead::{Issue, Lead, Severity, Verdict};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeSet;
use std::path::Path;

/// SqliteStore errors name the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store migration {version} failed: {source}")]
    Migrate {
        version: usize,
        source: rusqlite::Error,
    },
    #[error(
        "the store at {path} has schema version {found}, newer than this leadgate ({known}); upgrade leadgate"
    )]
    TooNew {
        path: String,
        found: usize,
        known: usize,
    },
    #[error("store {op} failed: {source}")]
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot connect to the PostgreSQL store at {target}: {source}")]
    PgConnect {
        target: String,
        source: postgres::Error,
    },
    #[error("the {0} pass was taken and given up twice while it was being asked for; try again")]
    PassContended(String),
    #[error("no connection to the store at {location}: {reason}")]
    Pool { location: String, reason: String },
    #[error("PostgreSQL TLS setting {setting}: {reason}")]
    PgTls {
        setting: &'static str,
        reason: String,
    },
    #[error("PostgreSQL store migration {version} failed: {source}")]
    PgMigrate {
        version: usize,
        source: postgres::Error,
    },
    #[error("PostgreSQL store: {op} failed: {source}")]
    Postgres {
        op: &'static str,
        source: postgres::Error,
    },
    #[error("{target} is not empty ({rows} rows in {table}): a store is copied into an empty one")]
    NotEmpty {
        target: String,
        table: &'static str,
        rows: u64,
    },
    #[error("{0} is both the source and the destination")]
    SameStore(String),
    #[error("the store has no table {0} to count")]
    UnknownTable(String),
    #[error("a batch is open on this store connection already")]
    BatchOpen,
    #[error("cannot encode {what} as JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot {op} the store file {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// A store function's own transaction, or — inside a [`Batch`] — the
/// batch's: then committing it commits nothing yet, and the batch's
/// commit (or rollback) decides for every write in it.
pub(crate) enum Tx<'c> {
    Own(rusqlite::Transaction<'c>),
    Outer(&'c Connection),
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Tx::Own(t) => t,
            Tx::Outer(c) => c,
        }
    }
}

impl Tx<'_> {
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        match self {
            Tx::Own(t) => t.commit(),
            Tx::Outer(_) => Ok(()),
        }
    }
}

/// Every write made through it (it dereferences to the [`SqliteStore`]) is one
/// transaction, taken with the write lock at the start: committed by
/// [`Batch::commit`], rolled back if dropped before. The service records,
/// scores and answers a batch of requests this way, so the pages those
/// steps share go to the write-ahead log once.
///
/// A store function that fails inside a batch may leave the writes it
/// made before failing in the batch (it does not roll back on its own, as
/// it would in its own transaction): a caller that gets an error drops the
/// batch instead of committing it.
pub struct SqliteBatch<'s> {
    store: &'s mut SqliteStore,
    open: bool,
}

impl std::ops::Deref for SqliteBatch<'_> {
    type Target = SqliteStore;
    fn deref(&self) -> &SqliteStore {
        self.store
    }
}

impl std::ops::DerefMut for SqliteBatch<'_> {
    fn deref_mut(&mut self) -> &mut SqliteStore {
        self.store
    }
}

impl SqliteBatch<'_> {
    /// Makes every write of the batch durable (as far as the store's
    /// `synchronous` setting goes) and visible to other connections.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.store.commit_batch()
    }
}

impl Drop for SqliteBatch<'_> {
    fn drop(&mut self) {
        if self.open {
            self.store.abandon_batch();
        }
    }
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { op, source }
}

/// Each connection's page cache, in KiB, unless [`SqliteStore::set_cache_kib`]
/// says otherwise: 128 MiB. Matching reads the key index and candidate
/// leads at random, and a batch run keeps them cached.
pub const DEFAULT_CACHE_KIB: i64 = 131_072;

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many ran. Each is a file of `migrations/` beside this crate, numbered.
/// Never edit one that has shipped: append a new one.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_runs_leads_decisions.sql"),
    include_str!("../migrations/0002_dedupe.sql"),
    include_str!("../migrations/0003_enrichment.sql"),
    include_str!("../migrations/0004_events_and_scores.sql"),
    include_str!("../migrations/0005_service.sql"),
    include_str!("../migrations/0006_match_keys_new.sql"),
    include_str!("../migrations/0007_review_queue_due.sql"),
    include_str!("../migrations/0008_match_keys_writes.sql"),
    include_str!("../migrations/0009_tenant_counts.sql"),
    include_str!("../migrations/0010_match_keys_mid.sql"),
    include_str!("../migrations/0011_idempotency_scopes.sql"),
    include_str!("../migrations/0012_outbox_claims.sql"),
    include_str!("../migrations/0013_intake_claims.sql"),
    include_str!("../migrations/0014_passes.sql"),
    include_str!("../migrations/0015_routing.sql"),
    include_str!("../migrations/0016_notifications.sql"),
    include_str!("../migrations/0017_crm_ids_and_account_owners.sql"),
    include_str!("../migrations/0018_rules.sql"),
];

/// How much of the database file a connection memory-maps at most: all
/// of it. On Linux the map is the `mapped` shim's; elsewhere SQLite's own,
/// and the bundled SQLite is built to allow this (`SQLITE_MAX_MMAP_SIZE`
/// in `.cargo/config.toml`; its own cap is 2 GiB). With a cap below the
/// file's size, the pages past it are read with `pread`, a system call
/// and a copy each.
const MMAP_LIMIT: i64 = 1 << 40;

/// Waits while the store is locked by another connection: 50 µs steps for
/// the first 10 ms, then 1 ms steps, giving up after about ten seconds.
fn busy(attempt: i32) -> bool {
    let wait = match attempt {
        0..200 => std::time::Duration::from_micros(50),
        200..10_200 => std::time::Duration::from_millis(1),
        _ => return false,
    };
    std::thread::sleep(wait);
    true
}

/// Waits up to about 5 ms (for [`SqliteStore::restart_log`]).
fn busy_briefly(attempt: i32) -> bool {
    if attempt >= 50 {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_micros(100));
    true
}

/// Status of a lead after processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Accepted,
    Rejected,
    Review,
    Exception,
    /// The same person as an earlier lead: merged into it or linked to it.
    Duplicate,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
            Status::Review => "review",
            Status::Exception => "exception",
            Status::Duplicate => "duplicate",
        }
    }

    /// The status a validation verdict gives.
    pub fn of(verdict: Verdict) -> Status {
        match verdict {
            Verdict::Accept => Status::Accepted,
            Verdict::Reject => Status::Rejected,
            Verdict::Review => Status::Review,
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "accepted" => Status::Accepted,
            "rejected" => Status::Rejected,
            "review" => Status::Review,
            "exception" => Status::Exception,
            "duplicate" => Status::Duplicate,
            _ => return None,
        })
    }
}

/// What happened to one lead in a run.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub line: u64,
    pub raw: &'a Lead,
    /// The lead's status after every capability (validation, dedupe).
    pub status: Status,
    /// The validate capability's own verdict (what an unmerge restores).
    pub validation: Status,
    /// The normalized lead as JSON (serialized once by the caller, who
    /// also writes it to the results file).
    pub normalized: Option<&'a str>,
    pub issues: &'a [Issue],
    /// Set when a component failed: (code, message).
    pub exception: Option<(&'a str, &'a str)>,
    /// Hashed blocking keys ([`matching::key_hash`]) for the index.
    pub keys: &'a [i64],
    /// Set when the lead is a duplicate of a stored lead.
    pub link: Option<Link<'a>>,
    /// Set when the lead may be a duplicate: a review item.
    pub review: Option<Review<'a>>,
    /// Set when the lead was enriched.
    pub enrichment: Option<enrich::Enriched<'a>>,
    /// The qualification state, when classified.
    pub qualification: Option<enrich::Qualified<'a>>,
}

/// Whether a recorded lead waits for a person, and why: validation sent it
/// to review, or classification found it ambiguous. (An uncertain match
/// is queued with its pair.)
fn review_kind(r: &Record<'_>) -> Option<(&'static str, String)> {
    let first_issue = || {
        r.issues
            .iter()
            .find(|i| i.severity >= Severity::Warning)
            .map(|i| i.code.clone())
    };
    if r.status == Status::Review {
        return Some((
            "validation",
            first_issue().unwrap_or_else(|| "review".into()),
        ));
    }
    let q = r.qualification.as_ref()?;
    if q.state != "needs_review" || !matches!(r.status, Status::Accepted) {
        return None;
    }
    let reason = serde_json::from_str::<Vec<String>>(q.reasons)
        .ok()
        .and_then(|v| v.into_iter().next())
        .or_else(first_issue)
        .unwrap_or_else(|| "needs_review".into());
    Some(("classification", reason))
}

/// Run totals written when a run finishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub total: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub review: u64,
    pub exceptions: u64,
    pub duplicates: u64,
}

/// An open exception-queue item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExceptionItem {
    pub id: i64,
    pub lead_id: String,
    pub run_id: Option<i64>,
    pub capability: String,
    pub code: String,
    pub error: String,
    pub created_at: i64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub struct SqliteStore {
    conn: Connection,
    path: String,
    /// `match_keys_new` as this connection last read it.
    pending: std::cell::RefCell<pending_keys::PendingKeys>,
    /// Set by [`SqliteStore::defer_match_keys`]: the cycle, in leads.
    defer_keys: Option<usize>,
    /// Set by [`SqliteStore::filter_match_keys`].
    filter: std::cell::RefCell<Option<key_filter::KeyFilter>>,
    /// The database file, opened by the first [`SqliteStore::checkpoint`] that
    /// copied pages into it, to write them to disk.
    file: std::cell::OnceCell<std::fs::File>,
    /// Frames of the log copied back as of the last [`SqliteStore::checkpoint`].
    synced: std::cell::Cell<i64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite store at `path`; `:memory:`
    /// gives a private in-memory store.
    pub fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_string(),
            source,
        };
        let mut conn = if path == ":memory:" {
            Connection::open_in_memory().map_err(open_err)?
        } else {
            if let Some(parent) = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                    path: path.to_string(),
                    source: rusqlite::Error::InvalidPath(
                        format!("{}: {e}", parent.display()).into(),
                    ),
                })?;
            }
            // Through the shim that keeps the memory map across other
            // connections' commits, where there is one (see `mapped`).
            let conn = match mapped::vfs() {
                Some(vfs) => Connection::open_with_flags_and_vfs(path, Default::default(), vfs),
                None => Connection::open(path),
            }
            .map_err(open_err)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(open_err)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(open_err)?;
            // Matching reads the key index and candidate leads at random:
            // a large page cache and memory-mapped reads keep those off
            // the read() system call, and rarer checkpoints batch the
            // copying back from the WAL.
            conn.pragma_update(None, "cache_size", -DEFAULT_CACHE_KIB)
                .map_err(open_err)?;
            conn.pragma_update(None, "mmap_size", MMAP_LIMIT)
                .map_err(open_err)?;
            conn.pragma_update(None, "wal_autocheckpoint", 16_384)
                .map_err(open_err)?;
            conn
        };
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // Plans never depend on the values bound. Without this, SQLite
        // (built with STAT4) marks a statement whose plan looked at a
        // bound value — an id list for json_each, a LIMIT — to be compiled
        // again each time a value is bound: a cached statement was parsed
        // and planned anew on every call (a tenth of the service's
        // recording and preparing threads).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(open_err)?;
        // Another connection holds the write lock (the service records in
        // one thread while it logs requests in another): wait in short
        // steps — SQLite's own waits grow to 100 ms, which is what a
        // request would then take — for up to about ten seconds.
        conn.busy_handler(Some(busy)).map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = SqliteStore {
            conn,
            path: path.to_string(),
            pending: Default::default(),
            defer_keys: None,
            filter: Default::default(),
            file: Default::default(),
            synced: Default::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let current = self.schema_version()?;
        if current > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: current,
                known: MIGRATIONS.len(),
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(current) {
            let version = i + 1;
            let tx = self
                .conn
                .transaction()
                .map_err(|source| StoreError::Migrate { version, source })?;
            tx.execute_batch(migration)
                .and_then(|()| tx.pragma_update(None, "user_version", version as i64))
                .and_then(|()| tx.commit())
                .map_err(|source| StoreError::Migrate { version, source })?;
        }
        Ok(())
    }

    /// Starts a [`Batch`]: one write transaction for everything done
    /// through it. Fails when one is open already.
    pub fn batch(&mut self) -> Result<SqliteBatch<'_>, StoreError> {
        self.begin_batch()?;
        Ok(SqliteBatch {
            store: self,
            open: true,
        })
    }

    /// Opens a batch's transaction (see [`SqliteStore::batch`]).
    pub(crate) fn begin_batch(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sql("begin batch"))
    }

    /// Commits a batch's transaction.
    pub(crate) fn commit_batch(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(sql("commit batch"))
    }

    /// Rolls back a batch that was not committed.
    pub(crate) fn abandon_batch(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        // What it read of the pending match keys may have been undone.
        *self.pending.get_mut() = Default::default();
        if let Some(f) = self.filter.get_mut() {
            f.forget();
        }
    }

    /// A transaction for one store function: its own, or the open
    /// [`Batch`]'s. Its own takes the write lock at once (`BEGIN
    /// IMMEDIATE`, waiting on the busy handler): every store function
    /// that opens one writes, most after reading, and a transaction that
    /// read first cannot wait for the lock when it comes to write — if
    /// another connection wrote meanwhile it fails at once with "database
    /// is locked" (seen when two tenants' pipelines started together).
    pub(crate) fn tx(&mut self) -> Result<Tx<'_>, StoreError> {
        if self.conn.is_autocommit() {
            self.conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map(Tx::Own)
                .map_err(sql("begin transaction"))
        } else {
            Ok(Tx::Outer(&self.conn))
        }
    }

    /// Defers this connection's match-key writes (see [`pending_keys`]):
    /// [`SqliteStore::record`] appends one `match_keys_new` row per lead and
    /// folds the pending keys into `match_keys_mid` a slice of the key
    /// range at a time, all of them once per `cycle_leads` leads recorded
    /// ([`DEFAULT_CYCLE_LEADS`] is the service's), and those into
    /// `match_keys` once per [`MID_ROUNDS`] such rounds. Lookups on every
    /// connection see pending keys either way.
    ///
    /// For one long-lived writer recording small batches (the service's
    /// recording thread): each key of a lead would otherwise cost a page
    /// of the write-ahead log. A batch run writes `match_keys` directly.
    pub fn defer_match_keys(&mut self, cycle_leads: usize) {
        self.defer_keys = Some(cycle_leads.max(1));
    }

    /// Folds the deferred match keys a writer before this one left (see
    /// [`SqliteStore::defer_match_keys`]) now, in a transaction of their own,
    /// instead of in the first [`SqliteStore::record`]: the service calls it at
    /// start, before it takes requests. Returns how many pending rows
    /// (leads) were folded; nothing to do without deferring.
    pub fn fold_deferred_keys(&mut self) -> Result<usize, StoreError> {
        let Some(cycle) = self.defer_keys else {
            return Ok(0);
        };
        // Restored only on success, as in `record`.
        let mut pending = self.pending.take();
        let tx = self.tx()?;
        pending.refresh(&tx)?;
        let rows = pending.fold(&tx, 0, cycle)?;
        tx.commit().map_err(sql("commit folded match keys"))?;
        *self.pending.get_mut() = pending;
        Ok(rows)
    }

    /// Keeps an in-memory filter of the keys in `match_keys` (see
    /// [`key_filter`]) and builds it now: candidate lookups then skip the
    /// index seek for a key no stored lead has — most keys of most new
    /// leads. It costs about 2.5 bytes per key entry (15 MiB at six
    /// million), and building it reads the whole index (1.7 s at six
    /// million entries, measured).
    ///
    /// For one long-lived connection that looks up candidates for many
    /// leads and writes no keys itself (the service's front): it is built
    /// again whenever keys were written directly (a batch run in another
    /// process), at most once per [`KEY_FILTER_REBUILD_EVERY`].
    pub fn filter_match_keys(&mut self) -> Result<(), StoreError> {
        self.filter_match_keys_with(key_filter::KeyFilter::default())
    }

    /// [`SqliteStore::filter_match_keys`] with `filter`'s settings.
    pub(crate) fn filter_match_keys_with(
        &mut self,
        filter: key_filter::KeyFilter,
    ) -> Result<(), StoreError> {
        *self.filter.get_mut() = Some(filter);
        let tx = self.read_snapshot()?;
        self.catch_up_keys()?;
        if let Some(tx) = tx {
            tx.finish().map_err(sql("end read transaction"))?;
        }
        Ok(())
    }

    /// Brings this connection's pending match keys, and its key filter if
    /// it keeps one, up to the open read snapshot.
    pub(crate) fn catch_up_keys(&self) -> Result<(), StoreError> {
        let mut pending = self.pending.borrow_mut();
        let first = match pending.refresh(&self.conn) {
            Ok(first) => first,
            Err(e) => {
                // Read again from the start next time.
                *pending = Default::default();
                return Err(e);
            }
        };
        // Looked up from here on (a writer that only folds never gets here).
        pending.index();
        if let Some(f) = self.filter.borrow_mut().as_mut() {
            f.catch_up(&self.conn, &pending, first)?;
        }
        Ok(())
    }

    /// A read transaction, so that several reads see one snapshot (and
    /// take the lock once); `None` inside a [`Batch`], whose transaction
    /// is the snapshot then.
    pub(crate) fn read_snapshot(&self) -> Result<Option<rusqlite::Transaction<'_>>, StoreError> {
        if self.conn.is_autocommit() {
            self.conn
                .unchecked_transaction()
                .map(Some)
                .map_err(sql("begin read transaction"))
        } else {
            Ok(None)
        }
    }

    /// Whether `key` may be in `match_keys` by the key filter: false only
    /// for a key it certainly does not hold; true without a usable filter.
    pub fn key_filter_may_hold(&self, key: i64) -> bool {
        self.filter
            .borrow()
            .as_ref()
            .is_none_or(|f| f.may_hold(key))
    }

    /// The path the store was opened at.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the key filter is on and usable now, how many times it was
    /// built, and how many layers it has grown to (`None`:
    /// [`SqliteStore::filter_match_keys`] was not called).
    pub fn key_filter_state(&self) -> Option<(bool, u64, usize)> {
        self.filter
            .borrow()
            .as_ref()
            .map(|f| (f.usable(), f.builds(), f.layers()))
    }

    /// Leaves write-ahead-log checkpoints to [`SqliteStore::checkpoint`] (the
    /// service runs them in a background thread, so no request waits for
    /// one) instead of the connection that happens to commit.
    pub fn manual_checkpoints(&self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(sql("turn off automatic checkpoints"))
    }

    /// Gives this connection a page cache of `kib` KiB instead of
    /// [`DEFAULT_CACHE_KIB`].
    ///
    /// A large cache pays off for one connection doing long work (a batch
    /// run, a dedupe). Where one connection commits small transactions
    /// all the time while others read, as in the service, it costs twice:
    /// - every commit empties the other connections' caches (in WAL mode
    ///   SQLite cannot tell which of their pages changed), so what they
    ///   cache is of use for one transaction only;
    /// - the committing connection walks its whole cache at the end of a
    ///   transaction that split a B-tree page: splitting parks a page at
    ///   the lock-byte page's number (262,145 with 4 KiB pages), past the
    ///   end of a file under 1 GiB, and the commit then cuts the cache
    ///   back to the file's size by visiting every entry. Time grows with
    ///   the cache.
    pub fn set_cache_kib(&self, kib: i64) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "cache_size", -kib.max(1))
            .map_err(sql("set the page cache size"))
    }

    /// Copies the write-ahead log back into the database as far as no
    /// reader needs it, without blocking anyone, and writes the copied
    /// pages to disk. Returns the log's length in pages. (With readers
    /// always busy, as in the service, the log is rarely started over
    /// this way: see [`SqliteStore::restart_log`].)
    ///
    /// SQLite syncs the database file only when a checkpoint reaches the
    /// log's end. With readers always on the log that is the restart's
    /// checkpoint alone, which then waited for seconds of copied pages to
    /// reach the disk with a request batch held behind it.
    /// Syncing here, outside the write lock, leaves it the last few.
    pub fn checkpoint(&self) -> Result<i64, StoreError> {
        if self.path == ":memory:" {
            return Ok(0);
        }
        let (log, copied): (i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .map_err(sql("checkpoint"))?;
        // All of it copied: SQLite synced it. Nothing new copied: nothing
        // to sync.
        if copied < log && copied != self.synced.replace(copied) {
            self.sync_file()?;
        }
        Ok(log)
    }

    /// Writes the database file's changed pages to disk.
    fn sync_file(&self) -> Result<(), StoreError> {
        let io = |op| {
            let path = self.path.clone();
            move |source| StoreError::Io { op, path, source }
        };
        let file = match self.file.get() {
            Some(f) => f,
            None => {
                let f = std::fs::File::open(&self.path).map_err(io("open"))?;
                self.file.get_or_init(|| f)
            }
        };
        file.sync_data().map_err(io("sync"))
    }

    /// Copies what is left of the write-ahead log into the database and
    /// starts the log over, waiting a few milliseconds at most for readers
    /// to step off it. Returns whether it did. It holds the write lock while
    /// it works, so the service's one writer calls it between its own
    /// transactions (when [`SqliteStore::checkpoint`] has copied most of the log
    /// already): no other writer waits.
    pub fn restart_log(&mut self) -> Result<bool, StoreError> {
        if self.path == ":memory:" {
            return Ok(false);
        }
        self.conn
            .busy_handler(Some(busy_briefly))
            .map_err(sql("checkpoint"))?;
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        self.conn
            .busy_handler(Some(busy))
            .map_err(sql("checkpoint"))?;
        Ok(done.map_err(sql("checkpoint"))? == 0)
    }

    /// Whether the database answers a trivial query.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(sql("ping"))
    }

    /// The schema version after migrations.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as usize)
            .map_err(sql("read schema version"))
    }

    /// Counts rows of a table (for summaries and tests).
    pub fn count(&self, table: &str) -> Result<u64, StoreError> {
        if !COUNTABLE.contains(&table) && !matches!(table, "match_keys_mid" | "match_keys_new") {
            return Err(StoreError::UnknownTable(table.to_string()));
        }
        self.conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sql("count"))
    }
}

/// The tables `count` counts on either backend.
pub(crate) const COUNTABLE: &[&str] = &[
    "runs",
    "leads",
    "decisions",
    "issues",
    "exceptions",
    "match_keys",
    "merges",
    "golden",
    "match_reviews",
    "events",
    "event_rejects",
    "scores",
    "score_history",
    "pipeline_outbox",
    "lead_keys",
    "review_queue",
    "crm_outbox",
    "crm_records",
    "intake",
    "api_keys",
    "alerts",
    "enrich_queue",
    "enrich_cache",
    "provider_stats",
];

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::test_support::TempStore;

    #[test]
    fn a_store_function_s_transaction_holds_the_write_lock_from_its_start() {
        let dir = TempStore::new("immediate");
        let mut a = dir.open();
        // Another writer that does not wait.
        let b = Connection::open(dir.path()).unwrap();
        b.busy_timeout(std::time::Duration::ZERO).unwrap();
        {
            let tx = a.tx().unwrap();
            // Only a read so far; a deferred transaction would hold no
            // write lock yet, and its first write could then fail at once
            // if `b` committed in between.
            let _: i64 = tx
                .query_row("SELECT count(*) FROM leads", [], |r| r.get(0))
                .unwrap();
            let refused = b.execute_batch("BEGIN IMMEDIATE");
            assert!(
                matches!(
                    refused,
                    Err(rusqlite::Error::SqliteFailure(ref e, _))
                        if e.code == rusqlite::ErrorCode::DatabaseBusy
                ),
                "{refused:?}"
            );
            tx.commit().unwrap();
        }
        b.execute_batch("BEGIN IMMEDIATE; COMMIT").unwrap();
    }

    #[test]
    fn a_database_of_any_size_is_memory_mapped_whole() {
        let dir = TempStore::new("mmap-limit");
        let limit =
            |c: &Connection| -> i64 { c.query_row("PRAGMA mmap_size", [], |r| r.get(0)).unwrap() };
        assert_eq!(limit(&dir.open().conn), MMAP_LIMIT);
        // Where the shim is not used, SQLite's own VFS caps the limit at
        // the size it was built with, silently: without the build flag
        // this reads 2 GiB.
        let plain = Connection::open(dir.path()).unwrap();
        plain.pragma_update(None, "mmap_size", MMAP_LIMIT).unwrap();
        assert_eq!(limit(&plain), MMAP_LIMIT);
    }

    #[test]
    fn the_write_ahead_log_is_copied_back_and_started_over() {
        let dir = TempStore::new("wal");
        let path = dir.path();
        let mut s = SqliteStore::open(&path).unwrap();
        s.manual_checkpoints().unwrap();
        s.add_api_key("acme", "ci", "h1", "lg_acme_ab", 1).unwrap();
        // A reader on another connection, holding a snapshot.
        let reader = SqliteStore::open(&path).unwrap();
        let snapshot = reader.conn.unchecked_transaction().unwrap();
        reader.api_keys(None).unwrap();
        s.add_api_key("acme", "ci2", "h2", "lg_acme_cd", 2).unwrap();
        let frames = s.checkpoint().unwrap();
        assert!(frames > 0, "the log has the writes: {frames}");
        // It copied what the reader no longer needs, and synced it itself:
        // SQLite syncs only a checkpoint that reaches the log's end.
        assert!(s.synced.get() > 0 && s.synced.get() < frames);
        assert!(s.file.get().is_some(), "the copied pages were synced");
        // The reader still needs the log: it is not started over, and
        // that is not an error.
        assert!(!s.restart_log().unwrap());
        drop(snapshot);
        assert!(s.restart_log().unwrap());
        // The next write starts at the top of the log.
        s.add_api_key("acme", "ci3", "h3", "lg_acme_ef", 3).unwrap();
        let after = s.checkpoint().unwrap();
        assert!(after < frames, "{after} pages after, {frames} before");
        // Nothing was lost on the way.
        assert_eq!(reader.api_keys(Some("acme")).unwrap().len(), 3);
    }

    #[test]
    fn a_checkpoint_that_copies_all_of_the_log_lets_the_next_write_start_it_over() {
        // The service's background thread relies on this: its connection
        // checkpoints, the recording thread's next write starts over.
        let dir = TempStore::new("wal-catch-up");
        let path = dir.path();
        let writer = SqliteStore::open(&path).unwrap();
        writer.manual_checkpoints().unwrap();
        let background = SqliteStore::open(&path).unwrap();
        for i in 0..20 {
            writer
                .add_api_key(
                    "acme",
                    &format!("k{i}"),
                    &format!("h{i}"),
                    &format!("lg_{i}"),
                    i,
                )
                .unwrap();
        }
        let reader = SqliteStore::open(&path).unwrap();
        let snapshot = reader.conn.unchecked_transaction().unwrap();
        reader.api_keys(None).unwrap();
        writer
            .add_api_key("acme", "late", "hl", "lg_late", 20)
            .unwrap();
        let long = background.checkpoint().unwrap();
        // A reader on an older snapshot: not all of it copied, so the
        // next write goes on at the end of the log.
        writer
            .add_api_key("acme", "more", "hm", "lg_more", 21)
            .unwrap();
        let still = background.checkpoint().unwrap();
        assert!(still > long, "{still} pages after, {long} before");
        drop(snapshot);
        // Nobody on an older snapshot: all of it copied, and the next
        // write starts at the top.
        assert_eq!(background.checkpoint().unwrap(), still);
        writer
            .add_api_key("acme", "last", "hz", "lg_last", 22)
            .unwrap();
        let after = background.checkpoint().unwrap();
        assert!(after < long, "{after} pages after, {long} before");
        assert_eq!(reader.api_keys(Some("acme")).unwrap().len(), 23);
    }

    fn lead(id: &str) -> Lead {
        Lead {
            id: id.into(),
            tenant: "t".into(),
            email: Some("a@example.com".into()),
            ..Lead::default()
        }
    }

    #[test]
    fn migrations_run_once_and_are_idempotent() {
        let dir = TempStore::new("migrations");
        let s = dir.open();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
        drop(s);
        let s = dir.open();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = TempStore::new("newer");
        let conn = Connection::open(dir.path()).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&dir.path()).err().unwrap().to_string();
        assert!(err.contains("99") && err.contains("upgrade"), "{err}");
    }

    #[test]
    fn records_leads_decisions_issues_and_exceptions() {
        let mut s = SqliteStore::open(":memory:").unwrap();
        let run = s.begin_run("t", "in.csv", "{}", 1).unwrap();
        let (a, b) = (lead("a"), lead("b"));
        let issues = [Issue::new(
            "email",
            "email.role_account",
            Severity::Info,
            "x",
        )];
        s.record(
            run,
            "validate",
            "sha",
            &[
                Record {
                    line: 1,
                    raw: &a,
                    status: Status::Accepted,
                    validation: Status::Accepted,
                    normalized: Some(r#"{"id":"a"}"#),
                    issues: &issues,
                    exception: None,
                    keys: &[],
                    link: None,
                    review: None,
                    enrichment: None,
                    qualification: None,
                },
                Record {
                    line: 2,
                    raw: &b,
                    status: Status::Exception,
                    validation: Status::Exception,
                    normalized: None,
                    issues: &[],
                    exception: Some(("component.trap", "boom")),
                    keys: &[],
                    link: None,
                    review: None,
                    enrichment: None,
                    qualification: None,
                },
            ],
            2,
        )
        .unwrap();
        let totals = Totals {
            total: 2,
            accepted: 1,
            exceptions: 1,
            ..Totals::default()
        };
        s.finish_run(run, &totals, "done", 3).unwrap();
        assert_eq!(
            s.run_status(run).unwrap(),
            Some(("done".into(), totals.clone()))
        );
        assert_eq!(s.run_status(run + 1).unwrap(), None);
        assert_eq!(s.count("leads").unwrap(), 2);
        assert_eq!(s.count("decisions").unwrap(), 2);
        assert_eq!(s.count("issues").unwrap(), 1);
        let open = s.open_exceptions(10).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(
            (open[0].lead_id.as_str(), open[0].code.as_str()),
            ("b", "component.trap")
        );
        let (status, raw) = s.lead("b").unwrap().unwrap();
        assert_eq!((status.as_str(), raw), ("exception", b));
        assert!(s.count("nope; DROP TABLE leads").is_err());
    }

    #[test]
    fn cached_statements_are_not_compiled_again_for_new_values() {
        let s = SqliteStore::open(":memory:").unwrap();
        // An id list (as the store passes to json_each) and a LIMIT:
        // both made SQLite plan the statement anew on every bind.
        let sql = "SELECT j.value FROM json_each(?1) j CROSS JOIN leads l ON l.id = j.value
                    UNION ALL SELECT value FROM json_each(?1) LIMIT ?2";
        for (ids, limit) in [(r#"["a"]"#, 1), (r#"["b","c"]"#, 2), (r#"["d"]"#, 3)] {
            let mut stmt = s.conn.prepare_cached(sql).unwrap();
            let n = stmt
                .query_map(params![ids, limit], |r| r.get::<_, String>(0))
                .unwrap()
                .count();
            assert!(n <= limit as usize);
        }
        let stmt = s.conn.prepare_cached(sql).unwrap();
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "the statement was compiled again"
        );
    }
}
