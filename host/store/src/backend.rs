//! The store a host opens: SQLite or PostgreSQL, chosen by its location —
//! `postgres://…` (or `postgresql://…`) is a server, anything else a SQLite
//! file (`:memory:` a private in-memory one). [`Store`] answers every
//! aggregate trait of [`crate::prelude`] from the backend behind it; what
//! only one backend has (SQLite's write-ahead-log checkpoints, its deferred
//! match-key tiers and key filter) is a no-op on the other, named as such
//! on each method.

use crate::checkpoint::{Round, WalLength};
use crate::enrich::{CacheRow, Enriched, Enrichments, Qualified, Queued, StoredEnrichment};
use crate::matching::{Candidate, GoldenMember, LeadRow, Link, MergeRow, Review, ReviewItem};
use crate::merges::{MatchReviews, Merges};
use crate::notify::{
    AlertRow, Filed, GroupRow, NewNotification, NewSilence, NotificationRow, NotifyBacklog,
    SilenceRow,
};
use crate::passes::PassHeld;
use crate::pg::PgStore;
use crate::prelude::*;
use crate::rekey::{KeyedLead, Rekeyed};
use crate::routing::{AccountOwnerRow, AssignmentRow, NewAssignment, RepRow, TimerRow};
use crate::rules::{
    Committed, ExecutionRow, InboxRow, RuleActionRow, RuleEventRow, RuleLeadRow, RuleVersion,
    RulesBacklog, RulesCommit,
};
use crate::score::{
    EventReject, EventRow, Inserted, NewEvent, ScoreState, ScoreWrite, ScoringLead, StoredScore,
    Surfaced,
};
use crate::service::{
    Alert, ApiKey, Backlog, Claim, Handoff, IntakeRow, Logged, NewIntake, QueueItem,
};
use crate::{ExceptionItem, Record, SqliteStore, StoreError, Totals};
use leadgate_lead::Lead;
use std::collections::{BTreeSet, HashMap};

/// A store on either backend.
#[derive(Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Dispatches an inherent method to the backend.
macro_rules! either {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Opens the store at `location`: connects to PostgreSQL for a
    /// `postgres://` URL, else opens (creating if needed) a SQLite file.
    /// Either way the schema is brought up to date, and one newer than this
    /// leadgate is refused.
    pub fn open(location: &str) -> Result<Store, StoreError> {
        if crate::pg::is_postgres(location) {
            PgStore::connect(location).map(Store::Postgres)
        } else {
            SqliteStore::open(location).map(Store::Sqlite)
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// The SQLite store behind this one, if that is the backend.
    pub fn as_sqlite(&self) -> Option<&SqliteStore> {
        match self {
            Store::Sqlite(s) => Some(s),
            Store::Postgres(_) => None,
        }
    }

    /// Where the store is: the SQLite file, or the PostgreSQL server and
    /// database (never a password).
    pub fn path(&self) -> &str {
        match self {
            Store::Sqlite(s) => s.path(),
            Store::Postgres(p) => p.target(),
        }
    }

    /// Starts a [`Batch`]: one transaction for everything done through it.
    /// Fails when one is open already.
    pub fn batch(&mut self) -> Result<Batch<'_>, StoreError> {
        either!(self, s => s.begin_batch())?;
        Ok(Batch {
            store: self,
            open: true,
        })
    }

    /// SQLite: defers this connection's match-key writes (see
    /// [`SqliteStore::defer_match_keys`]). PostgreSQL writes every key to
    /// the index as the lead is recorded: nothing to defer.
    pub fn defer_match_keys(&mut self, cycle_leads: usize) {
        if let Store::Sqlite(s) = self {
            s.defer_match_keys(cycle_leads);
        }
    }

    /// SQLite: folds deferred match keys left by an earlier writer
    /// ([`SqliteStore::fold_deferred_keys`]). PostgreSQL: none, `Ok(0)`.
    pub fn fold_deferred_keys(&mut self) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.fold_deferred_keys(),
            Store::Postgres(_) => Ok(0),
        }
    }

    /// SQLite: keeps an in-memory filter of the index's keys
    /// ([`SqliteStore::filter_match_keys`]). PostgreSQL looks keys up on the
    /// server, which other hosts write to: no filter is kept.
    pub fn filter_match_keys(&mut self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.filter_match_keys(),
            Store::Postgres(_) => Ok(()),
        }
    }

    /// Whether `key` may be in the index by the key filter (true without
    /// one).
    pub fn key_filter_may_hold(&self, key: i64) -> bool {
        match self {
            Store::Sqlite(s) => s.key_filter_may_hold(key),
            Store::Postgres(_) => true,
        }
    }

    /// The key filter's state ([`SqliteStore::key_filter_state`]); `None`
    /// on PostgreSQL.
    pub fn key_filter_state(&self) -> Option<(bool, u64, usize)> {
        self.as_sqlite().and_then(SqliteStore::key_filter_state)
    }

    /// SQLite: leaves checkpoints to the caller
    /// ([`SqliteStore::manual_checkpoints`]). PostgreSQL: nothing to do.
    pub fn manual_checkpoints(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.manual_checkpoints(),
            Store::Postgres(_) => Ok(()),
        }
    }

    /// SQLite: sets this connection's page cache
    /// ([`SqliteStore::set_cache_kib`]). PostgreSQL's cache is the
    /// server's: nothing to do.
    pub fn set_cache_kib(&self, kib: i64) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_cache_kib(kib),
            Store::Postgres(_) => Ok(()),
        }
    }

    /// SQLite: one round of the background checkpointer
    /// ([`SqliteStore::checkpoint_round`]). PostgreSQL checkpoints on its
    /// own: an empty round.
    pub fn checkpoint_round(&self, wal: &WalLength) -> Result<Round, StoreError> {
        match self {
            Store::Sqlite(s) => s.checkpoint_round(wal),
            Store::Postgres(_) => Ok(Round::default()),
        }
    }

    /// SQLite: the writer's part of checkpointing
    /// ([`SqliteStore::restart_long_log`]). PostgreSQL: `None`.
    pub fn restart_long_log(&mut self, wal: &WalLength) -> Result<Option<bool>, StoreError> {
        match self {
            Store::Sqlite(s) => s.restart_long_log(wal),
            Store::Postgres(_) => Ok(None),
        }
    }

    /// Whether the store answers: a trivial query (for readiness checks).
    pub fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping(),
            Store::Postgres(p) => p.ping(),
        }
    }

    /// The schema version after migrations (each backend counts its own).
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        either!(self, s => s.schema_version())
    }

    /// Counts rows of a table (for summaries and tests).
    pub fn count(&self, table: &str) -> Result<u64, StoreError> {
        either!(self, s => s.count(table))
    }

    /// The current score (as JSON) of each of `ids` that has one.
    pub fn score_details(&self, ids: &[String]) -> Result<HashMap<String, String>, StoreError> {
        either!(self, s => s.score_details(ids))
    }

    /// A lead's status and qualification, if it is `tenant`'s.
    pub fn lead_state(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        either!(self, s => s.lead_state(tenant, id))
    }

    /// A lead's issues from its latest decisions: (field, code, severity,
    /// message).
    pub fn lead_issues(
        &self,
        lead_id: &str,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        either!(self, s => s.lead_issues(lead_id))
    }

    /// Which of `ids` are recorded leads.
    pub fn recorded(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        either!(self, s => s.recorded(ids))
    }

    /// Review, outbox and intake counts of `tenant` (see
    /// [`SqliteStore::backlog`]).
    pub fn backlog(&self, tenant: &str, escalate_ms: i64, now: i64) -> Result<Backlog, StoreError> {
        either!(self, s => s.backlog(tenant, escalate_ms, now))
    }

    /// Lead counts of `tenant` by status, for metrics.
    pub fn status_counts(&self, tenant: &str) -> Result<Vec<(String, i64)>, StoreError> {
        either!(self, s => s.status_counts(tenant))
    }

    /// Surfaced leads not yet handed on (score changes to write to the CRM).
    pub fn undelivered_surfaced(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        either!(self, s => s.undelivered_surfaced(tenant, limit))
    }

    /// Marks surfaced leads handed on.
    pub fn surfaced_delivered(&self, ids: &[i64], now: i64) -> Result<(), StoreError> {
        either!(self, s => s.surfaced_delivered(ids, now))
    }
}

/// Every write made through it (it dereferences to the [`Store`]) is one
/// transaction: committed by [`Batch::commit`], rolled back if dropped
/// before. On SQLite it takes the write lock at the start (see
/// [`SqliteBatch`](crate::SqliteBatch)); on PostgreSQL it is one
/// transaction on the store's connection.
///
/// A store function that fails inside a batch may leave the writes it
/// made before failing in the batch: a caller that gets an error drops the
/// batch instead of committing it.
pub struct Batch<'s> {
    store: &'s mut Store,
    open: bool,
}

impl std::ops::Deref for Batch<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store
    }
}

impl std::ops::DerefMut for Batch<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.store
    }
}

impl Batch<'_> {
    /// Makes every write of the batch durable and visible to other
    /// connections.
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        either!(self.store, s => s.commit_batch())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.open {
            either!(self.store, s => s.abandon_batch());
        }
    }
}

// Each aggregate trait, answered by the backend.

impl Enrichments for Store {
    fn update_enrichment(
        &mut self,
        lead: &str,
        tenant: &str,
        normalized: Option<&str>,
        enrichment: &Enriched<'_>,
        qualification: &Qualified<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.update_enrichment(lead, tenant, normalized, enrichment, qualification, now))
    }
    fn enrich_queue(&self, tenant: &str, limit: usize) -> Result<Vec<Queued>, StoreError> {
        either!(self, s => s.enrich_queue(tenant, limit))
    }
    fn lead_facts(
        &self,
        lead: &str,
    ) -> Result<(Option<String>, Vec<leadgate_lead::Issue>), StoreError> {
        either!(self, s => s.lead_facts(lead))
    }
    fn enrichment(&self, lead: &str) -> Result<Option<StoredEnrichment>, StoreError> {
        either!(self, s => s.enrichment(lead))
    }
    fn cache_rows(&self, since: i64) -> Result<Vec<CacheRow>, StoreError> {
        either!(self, s => s.cache_rows(since))
    }
    fn save_cache(&mut self, rows: &[CacheRow]) -> Result<(), StoreError> {
        either!(self, s => s.save_cache(rows))
    }
    fn save_provider_stats(
        &self,
        run_id: i64,
        provider: &str,
        stats: &str,
    ) -> Result<(), StoreError> {
        either!(self, s => s.save_provider_stats(run_id, provider, stats))
    }
    fn provider_stats(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        either!(self, s => s.provider_stats(run_id))
    }
}

impl MatchIndex for Store {
    fn candidates(
        &self,
        tenant: &str,
        keys: &[i64],
        per_key: usize,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        either!(self, s => s.candidates(tenant, keys, per_key, limit))
    }
    fn candidates_for_each(
        &self,
        tenant: &str,
        keys: &[Vec<i64>],
        per_key: usize,
        limit: usize,
    ) -> Result<Vec<Vec<Candidate>>, StoreError> {
        either!(self, s => s.candidates_for_each(tenant, keys, per_key, limit))
    }
    fn master_of(&self, id: &str) -> Result<String, StoreError> {
        either!(self, s => s.master_of(id))
    }
    fn link(
        &mut self,
        tenant: &str,
        lead: &str,
        link: &Link<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        either!(self, s => s.link(tenant, lead, link, now))
    }
    fn add_review(
        &mut self,
        tenant: &str,
        lead: &str,
        review: &Review<'_>,
        run_id: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.add_review(tenant, lead, review, run_id, now))
    }
    fn lead_row(&self, id: &str) -> Result<Option<LeadRow>, StoreError> {
        either!(self, s => s.lead_row(id))
    }
}

impl Merges for Store {
    fn golden_members(&self, master: &str) -> Result<Vec<GoldenMember>, StoreError> {
        either!(self, s => s.golden_members(master))
    }
    fn set_golden(
        &self,
        tenant: &str,
        master: &str,
        record: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.set_golden(tenant, master, record, now))
    }
    fn golden(&self, master: &str) -> Result<Option<String>, StoreError> {
        either!(self, s => s.golden(master))
    }
    fn merges_of(&self, id: &str) -> Result<Vec<MergeRow>, StoreError> {
        either!(self, s => s.merges_of(id))
    }
    fn unmerge(&mut self, target: &str, who: &str, now: i64) -> Result<Vec<MergeRow>, StoreError> {
        either!(self, s => s.unmerge(target, who, now))
    }
}

impl MatchReviews for Store {
    fn open_reviews(&self, tenant: &str, limit: usize) -> Result<Vec<ReviewItem>, StoreError> {
        either!(self, s => s.open_reviews(tenant, limit))
    }
    fn decided_reviews(&self, tenant: &str) -> Result<Vec<ReviewItem>, StoreError> {
        either!(self, s => s.decided_reviews(tenant))
    }
    fn review_item(&self, tenant: &str, id: i64) -> Result<Option<ReviewItem>, StoreError> {
        either!(self, s => s.review_item(tenant, id))
    }
    fn decide_review(
        &self,
        id: i64,
        decision: &str,
        reviewer: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.decide_review(id, decision, reviewer, note, now))
    }
    fn pair_decision(&self, tenant: &str, a: &str, b: &str) -> Result<Option<String>, StoreError> {
        either!(self, s => s.pair_decision(tenant, a, b))
    }
}

impl Rekey for Store {
    fn rekey<E>(
        &mut self,
        tenant: &str,
        chunk: usize,
        keys_of: impl FnMut(&[KeyedLead], u64) -> Result<Vec<Vec<i64>>, E>,
    ) -> Result<Result<Rekeyed, E>, StoreError> {
        either!(self, s => s.rekey(tenant, chunk, keys_of))
    }
    fn keyed_leads<E>(
        &self,
        tenant: &str,
        chunk: usize,
        visit: impl FnMut(&[KeyedLead]) -> Result<(), E>,
    ) -> Result<Result<u64, E>, StoreError> {
        either!(self, s => s.keyed_leads(tenant, chunk, visit))
    }
}

impl Runs for Store {
    fn begin_run(
        &self,
        tenant: &str,
        input: &str,
        components: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        either!(self, s => s.begin_run(tenant, input, components, now))
    }
    fn run_leads(&self, run_id: i64) -> Result<BTreeSet<String>, StoreError> {
        either!(self, s => s.run_leads(run_id))
    }
    fn record(
        &mut self,
        run_id: i64,
        capability: &str,
        component: &str,
        records: &[Record<'_>],
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.record(run_id, capability, component, records, now))
    }
    fn finish_run(
        &self,
        run_id: i64,
        totals: &Totals,
        status: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.finish_run(run_id, totals, status, now))
    }
    fn run_status(&self, run_id: i64) -> Result<Option<(String, Totals)>, StoreError> {
        either!(self, s => s.run_status(run_id))
    }
    fn open_exceptions(&self, limit: usize) -> Result<Vec<ExceptionItem>, StoreError> {
        either!(self, s => s.open_exceptions(limit))
    }
    fn lead(&self, id: &str) -> Result<Option<(String, Lead)>, StoreError> {
        either!(self, s => s.lead(id))
    }
}

impl Scores for Store {
    fn insert_events(
        &mut self,
        tenant: &str,
        events: &[NewEvent],
        now: i64,
    ) -> Result<Inserted, StoreError> {
        either!(self, s => s.insert_events(tenant, events, now))
    }
    fn reject_events(
        &mut self,
        tenant: &str,
        input: &str,
        rejects: &[EventReject],
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.reject_events(tenant, input, rejects, now))
    }
    fn index_lead_keys(&mut self) -> Result<(), StoreError> {
        either!(self, s => s.index_lead_keys())
    }
    fn attach_pending(&mut self, tenant: &str) -> Result<BTreeSet<String>, StoreError> {
        either!(self, s => s.attach_pending(tenant))
    }
    fn unattached_events(&self, tenant: &str) -> Result<u64, StoreError> {
        either!(self, s => s.unattached_events(tenant))
    }
    fn lead_count(&self, tenant: &str) -> Result<u64, StoreError> {
        either!(self, s => s.lead_count(tenant))
    }
    fn scoring_leads(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<ScoringLead>, StoreError> {
        either!(self, s => s.scoring_leads(tenant, only))
    }
    fn account_members(&self, tenant: &str, domains: &[String]) -> Result<Vec<String>, StoreError> {
        either!(self, s => s.account_members(tenant, domains))
    }
    fn active_account_members(
        &self,
        tenant: &str,
        domains: &[String],
        since: i64,
    ) -> Result<Vec<String>, StoreError> {
        either!(self, s => s.active_account_members(tenant, domains, since))
    }
    fn recent_events(
        &self,
        tenant: &str,
        since: i64,
        only: Option<&[String]>,
    ) -> Result<Vec<(String, EventRow)>, StoreError> {
        either!(self, s => s.recent_events(tenant, since, only))
    }
    fn masters(
        &self,
        tenant: &str,
        only: Option<&[String]>,
    ) -> Result<HashMap<String, String>, StoreError> {
        either!(self, s => s.masters(tenant, only))
    }
    fn score_states(
        &self,
        tenant: &str,
        since: i64,
        only: Option<&[String]>,
    ) -> Result<HashMap<String, (ScoreState, Option<i64>)>, StoreError> {
        either!(self, s => s.score_states(tenant, since, only))
    }
    fn save_scores(
        &mut self,
        tenant: &str,
        component: &str,
        rows: &[ScoreWrite],
        surfaced: &[Surfaced],
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.save_scores(tenant, component, rows, surfaced, now))
    }
    fn stored_score(&self, lead: &str) -> Result<Option<StoredScore>, StoreError> {
        either!(self, s => s.stored_score(lead))
    }
}

impl Passes for Store {
    fn take_pass(
        &mut self,
        tenant: &str,
        name: &str,
        claim: Claim<'_>,
        now: i64,
    ) -> Result<Option<PassHeld>, StoreError> {
        either!(self, s => s.take_pass(tenant, name, claim, now))
    }
    fn release_pass(&mut self, tenant: &str, name: &str, holder: &str) -> Result<(), StoreError> {
        either!(self, s => s.release_pass(tenant, name, holder))
    }
}

impl ApiKeys for Store {
    fn add_api_key(
        &self,
        tenant: &str,
        label: &str,
        hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.add_api_key(tenant, label, hash, prefix, now))
    }
    fn api_key_tenant(&self, hash: &str) -> Result<Option<String>, StoreError> {
        either!(self, s => s.api_key_tenant(hash))
    }
    fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        either!(self, s => s.api_keys(tenant))
    }
    fn revoke_api_key(&self, tenant: &str, which: &str, now: i64) -> Result<usize, StoreError> {
        either!(self, s => s.revoke_api_key(tenant, which, now))
    }
}

impl IntakeLog for Store {
    fn log_intake(
        &mut self,
        requests: &[NewIntake<'_>],
        claim: Claim<'_>,
        now: i64,
    ) -> Result<Vec<Logged>, StoreError> {
        either!(self, s => s.log_intake(requests, claim, now))
    }
    fn legacy_form_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        either!(self, s => s.legacy_form_key(tenant, key))
    }
    fn tenants_with_legacy_form_keys(&self) -> Result<Vec<String>, StoreError> {
        either!(self, s => s.tenants_with_legacy_form_keys())
    }
    fn logged_keys<'k>(
        &self,
        tenant: &str,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<std::collections::HashSet<&'k str>, StoreError> {
        either!(self, s => s.logged_keys(tenant, keys))
    }
    fn finish_intake(&mut self, done: &[(i64, u16, &str)], now: i64) -> Result<(), StoreError> {
        either!(self, s => s.finish_intake(done, now))
    }
    fn pending_intake(&self, tenant: &str, limit: usize) -> Result<Vec<IntakeRow>, StoreError> {
        either!(self, s => s.pending_intake(tenant, limit))
    }
    fn claim_pending_intake(
        &mut self,
        tenant: &str,
        claim: Claim<'_>,
        own: bool,
        now: i64,
        limit: usize,
    ) -> Result<Vec<IntakeRow>, StoreError> {
        either!(self, s => s.claim_pending_intake(tenant, claim, own, now, limit))
    }
    fn intake(&self, tenant: &str, id: i64) -> Result<Option<IntakeRow>, StoreError> {
        either!(self, s => s.intake(tenant, id))
    }
}

impl CrmOutbox for Store {
    fn enqueue_handoff(
        &self,
        tenant: &str,
        lead_id: &str,
        target: &str,
        op: &str,
        crm_id: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        either!(self, s => s.enqueue_handoff(tenant, lead_id, target, op, crm_id, now))
    }
    fn due_handoffs(
        &self,
        tenant: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError> {
        either!(self, s => s.due_handoffs(tenant, now, limit))
    }
    fn claim_due_handoffs(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError> {
        either!(self, s => s.claim_due_handoffs(tenant, holder, lease_ms, now, limit))
    }
    fn handoffs_of(&self, tenant: &str, lead_id: &str) -> Result<Vec<Handoff>, StoreError> {
        either!(self, s => s.handoffs_of(tenant, lead_id))
    }
    fn handoffs(
        &self,
        tenant: &str,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Handoff>, StoreError> {
        either!(self, s => s.handoffs(tenant, state, limit))
    }
    fn handoffs_delivered(
        &mut self,
        done: &[(&Handoff, &str)],
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.handoffs_delivered(done, now))
    }
    fn handoff_retry(
        &self,
        id: i64,
        next_at: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.handoff_retry(id, next_at, error, now))
    }
    fn handoff_failed(
        &mut self,
        h: &Handoff,
        state: &str,
        code: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.handoff_failed(h, state, code, error, now))
    }
    fn retry_handoffs(&mut self, tenant: &str, ids: &[i64], now: i64) -> Result<usize, StoreError> {
        either!(self, s => s.retry_handoffs(tenant, ids, now))
    }
    fn crm_record(
        &self,
        tenant: &str,
        lead_id: &str,
        target: &str,
    ) -> Result<Option<String>, StoreError> {
        either!(self, s => s.crm_record(tenant, lead_id, target))
    }
    fn lead_of_crm_record(
        &self,
        tenant: &str,
        target: &str,
        crm_id: &str,
    ) -> Result<Option<String>, StoreError> {
        either!(self, s => s.lead_of_crm_record(tenant, target, crm_id))
    }
}

impl ReviewQueue for Store {
    fn open_queue(&self, tenant: Option<&str>) -> Result<Vec<QueueItem>, StoreError> {
        either!(self, s => s.open_queue(tenant))
    }
    fn due_queue(
        &self,
        tenant: &str,
        escalate_before: i64,
        fallback_before: i64,
    ) -> Result<Vec<QueueItem>, StoreError> {
        either!(self, s => s.due_queue(tenant, escalate_before, fallback_before))
    }
    fn queue_item(&self, tenant: &str, id: i64) -> Result<Option<QueueItem>, StoreError> {
        either!(self, s => s.queue_item(tenant, id))
    }
    fn decide_queue(
        &mut self,
        id: i64,
        decision: &str,
        reviewer: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        either!(self, s => s.decide_queue(id, decision, reviewer, note, now))
    }
    fn queue_of_match(&self, match_review: i64) -> Result<Option<i64>, StoreError> {
        either!(self, s => s.queue_of_match(match_review))
    }
    fn set_outcome(
        &mut self,
        lead_id: &str,
        status: crate::Status,
        qualification: &str,
        decided_by: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.set_outcome(lead_id, status, qualification, decided_by, now))
    }
    fn escalate_item(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        either!(self, s => s.escalate_item(id, now))
    }
    fn fallback_item(&self, id: i64, what: &str, now: i64) -> Result<bool, StoreError> {
        either!(self, s => s.fallback_item(id, what, now))
    }
    fn add_alert(
        &self,
        tenant: &str,
        kind: &str,
        subject: &str,
        message: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        either!(self, s => s.add_alert(tenant, kind, subject, message, now))
    }
    fn alerts(&self, tenant: &str, limit: usize) -> Result<Vec<Alert>, StoreError> {
        either!(self, s => s.alerts(tenant, limit))
    }
    fn review_outcomes_by_issue(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        either!(self, s => s.review_outcomes_by_issue(tenant))
    }
}

impl Routing for Store {
    fn reps(&self, tenant: &str) -> Result<Vec<RepRow>, StoreError> {
        either!(self, s => s.reps(tenant))
    }
    fn put_rep(&mut self, tenant: &str, id: &str, doc: &str, now: i64) -> Result<bool, StoreError> {
        either!(self, s => s.put_rep(tenant, id, doc, now))
    }
    fn seed_reps(
        &mut self,
        tenant: &str,
        reps: &[(String, String)],
        now: i64,
    ) -> Result<usize, StoreError> {
        either!(self, s => s.seed_reps(tenant, reps, now))
    }
    fn assign(&mut self, tenant: &str, a: &NewAssignment<'_>, now: i64) -> Result<i64, StoreError> {
        either!(self, s => s.assign(tenant, a, now))
    }
    fn assignment(&self, tenant: &str, lead: &str) -> Result<Option<AssignmentRow>, StoreError> {
        either!(self, s => s.assignment(tenant, lead))
    }
    fn assignments_of(&self, tenant: &str, lead: &str) -> Result<Vec<AssignmentRow>, StoreError> {
        either!(self, s => s.assignments_of(tenant, lead))
    }
    fn assignment_by_id(&self, id: i64) -> Result<Option<AssignmentRow>, StoreError> {
        either!(self, s => s.assignment_by_id(id))
    }
    fn account_owner(
        &self,
        tenant: &str,
        lead: &str,
        domain: Option<&str>,
        company_key: Option<&str>,
    ) -> Result<Option<AccountOwnerRow>, StoreError> {
        either!(self, s => s.account_owner(tenant, lead, domain, company_key))
    }
    fn touch(
        &mut self,
        tenant: &str,
        lead: &str,
        at: i64,
    ) -> Result<Option<AssignmentRow>, StoreError> {
        either!(self, s => s.touch(tenant, lead, at))
    }
    fn miss_sla(&mut self, id: i64, state: &str, now: i64) -> Result<bool, StoreError> {
        either!(self, s => s.miss_sla(id, state, now))
    }
    fn claim_due_timers(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<TimerRow>, StoreError> {
        either!(self, s => s.claim_due_timers(tenant, holder, lease_ms, now, limit))
    }
    fn start_timer(
        &mut self,
        tenant: &str,
        kind: &str,
        ref_id: i64,
        due: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.start_timer(tenant, kind, ref_id, due))
    }
    fn finish_timer(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        either!(self, s => s.finish_timer(id, now))
    }
    fn unassigned(
        &self,
        tenant: &str,
        state: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        either!(self, s => s.unassigned(tenant, state, limit))
    }
    fn pending_timers(&self, tenant: &str) -> Result<i64, StoreError> {
        either!(self, s => s.pending_timers(tenant))
    }
}

impl Notifications for Store {
    fn raise_alert(
        &self,
        tenant: &str,
        kind: &str,
        subject: &str,
        labels: &str,
        message: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        either!(self, s => s.raise_alert(tenant, kind, subject, labels, message, now))
    }
    fn claim_new_alerts(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertRow>, StoreError> {
        either!(self, s => s.claim_new_alerts(tenant, holder, lease_ms, now, limit))
    }
    fn file_alerts(
        &mut self,
        tenant: &str,
        filed: &[Filed<'_>],
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.file_alerts(tenant, filed, now))
    }
    fn active_alerts(
        &self,
        tenant: &str,
        subject: Option<&str>,
        active_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertRow>, StoreError> {
        either!(self, s => s.active_alerts(tenant, subject, active_ms, now, limit))
    }
    fn resolve_alerts(
        &self,
        tenant: &str,
        subject: &str,
        kinds: &[&str],
        active_ms: i64,
        now: i64,
    ) -> Result<usize, StoreError> {
        either!(self, s => s.resolve_alerts(tenant, subject, kinds, active_ms, now))
    }
    fn claim_due_groups(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<GroupRow>, StoreError> {
        either!(self, s => s.claim_due_groups(tenant, holder, lease_ms, now, limit))
    }
    fn group_members(&self, group_id: i64) -> Result<Vec<(AlertRow, i64)>, StoreError> {
        either!(self, s => s.group_members(group_id))
    }
    fn hold_group(&mut self, group_id: i64, until: i64) -> Result<(), StoreError> {
        either!(self, s => s.hold_group(group_id, until))
    }
    fn flush_group(
        &mut self,
        group: &GroupRow,
        dropped: &[(i64, &str)],
        message: Option<&NewNotification<'_>>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        either!(self, s => s.flush_group(group, dropped, message, now))
    }
    fn claim_due_notifications(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        either!(self, s => s.claim_due_notifications(tenant, holder, lease_ms, now, limit))
    }
    fn notification_sent(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        either!(self, s => s.notification_sent(id, now))
    }
    fn notification_retry(
        &mut self,
        id: i64,
        next_at: i64,
        error: Option<&str>,
        count: bool,
    ) -> Result<(), StoreError> {
        either!(self, s => s.notification_retry(id, next_at, error, count))
    }
    fn notification_failed(
        &mut self,
        id: i64,
        state: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.notification_failed(id, state, error, now))
    }
    fn retry_notifications(
        &mut self,
        tenant: &str,
        ids: &[i64],
        now: i64,
    ) -> Result<usize, StoreError> {
        either!(self, s => s.retry_notifications(tenant, ids, now))
    }
    fn notifications(
        &self,
        tenant: &str,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        either!(self, s => s.notifications(tenant, state, limit))
    }
    fn pace(&self, tenant: &str, key: &str) -> Result<Option<i64>, StoreError> {
        either!(self, s => s.pace(tenant, key))
    }
    fn set_pace(&mut self, tenant: &str, key: &str, next_at: i64) -> Result<(), StoreError> {
        either!(self, s => s.set_pace(tenant, key, next_at))
    }
    fn add_silence(
        &mut self,
        tenant: &str,
        n: &NewSilence<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        either!(self, s => s.add_silence(tenant, n, now))
    }
    fn silences(&self, tenant: &str, all: bool, now: i64) -> Result<Vec<SilenceRow>, StoreError> {
        either!(self, s => s.silences(tenant, all, now))
    }
    fn expire_silence(&mut self, tenant: &str, id: i64, now: i64) -> Result<bool, StoreError> {
        either!(self, s => s.expire_silence(tenant, id, now))
    }
    fn notify_backlog(&self, tenant: &str) -> Result<NotifyBacklog, StoreError> {
        either!(self, s => s.notify_backlog(tenant))
    }
}

impl Rules for Store {
    fn load_rule_versions(
        &mut self,
        tenant: &str,
        versions: &[RuleVersion],
        now: i64,
    ) -> Result<Vec<RuleVersion>, StoreError> {
        either!(self, s => s.load_rule_versions(tenant, versions, now))
    }
    fn queue_for_rules(
        &mut self,
        tenant: &str,
        items: &[(String, String, String)],
        at: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.queue_for_rules(tenant, items, at))
    }
    fn claim_rule_inbox(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        either!(self, s => s.claim_rule_inbox(tenant, holder, lease_ms, now, limit))
    }
    fn claim_due_rule_leads(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        either!(self, s => s.claim_due_rule_leads(tenant, holder, lease_ms, now, limit))
    }
    fn rule_lead(&self, tenant: &str, lead: &str) -> Result<Option<RuleLeadRow>, StoreError> {
        either!(self, s => s.rule_lead(tenant, lead))
    }
    fn rule_events(
        &self,
        tenant: &str,
        lead: &str,
        since: i64,
    ) -> Result<Vec<RuleEventRow>, StoreError> {
        either!(self, s => s.rule_events(tenant, lead, since))
    }
    fn commit_rules(
        &mut self,
        tenant: &str,
        c: &RulesCommit,
        now: i64,
    ) -> Result<Committed, StoreError> {
        either!(self, s => s.commit_rules(tenant, c, now))
    }
    fn rule_executions(
        &self,
        tenant: &str,
        lead: Option<&str>,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        either!(self, s => s.rule_executions(tenant, lead, from, to, limit))
    }
    fn rule_actions_of(&self, tenant: &str, lead: &str) -> Result<Vec<RuleActionRow>, StoreError> {
        either!(self, s => s.rule_actions_of(tenant, lead))
    }
    fn claim_rule_actions(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
        remote: bool,
    ) -> Result<Vec<RuleActionRow>, StoreError> {
        either!(self, s => s.claim_rule_actions(tenant, holder, lease_ms, now, limit, remote))
    }
    fn finish_rule_action(
        &mut self,
        id: i64,
        state: &str,
        outcome: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.finish_rule_action(id, state, outcome, retry_at, now))
    }
    fn rule_score_actions(
        &self,
        tenant: &str,
        leads: Option<&[String]>,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        either!(self, s => s.rule_score_actions(tenant, leads))
    }
    fn open_rule_review(
        &mut self,
        tenant: &str,
        lead: &str,
        kind: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        either!(self, s => s.open_rule_review(tenant, lead, kind, reason, now))
    }
    fn queue_enrichment(
        &mut self,
        tenant: &str,
        lead: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        either!(self, s => s.queue_enrichment(tenant, lead, reason, now))
    }
    fn set_stage(
        &mut self,
        tenant: &str,
        lead: &str,
        stage: &str,
        at: i64,
        source: &str,
    ) -> Result<bool, StoreError> {
        either!(self, s => s.set_stage(tenant, lead, stage, at, source))
    }
    fn stage_of(&self, tenant: &str, lead: &str) -> Result<Option<(String, i64)>, StoreError> {
        either!(self, s => s.stage_of(tenant, lead))
    }
    fn rules_backlog(&self, tenant: &str) -> Result<RulesBacklog, StoreError> {
        either!(self, s => s.rules_backlog(tenant))
    }
}
