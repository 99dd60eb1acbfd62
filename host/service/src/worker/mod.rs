//! One pipeline per tenant, in a thread of its own: it takes requests from
//! a bounded queue, logs them in the store under their idempotency key
//! (the request is durable from then on), runs their leads through the
//! same pipeline as `leadgate run` — validate, enrich, dedupe, classify,
//! record — scores them, queues qualified leads for the CRM, records each
//! request's result, and answers the waiting handler.
//!
//! Two threads per tenant, like `leadgate run`'s two stages: the front
//! validates, enriches, matches and classifies the leads of a batch of
//! requests; the back logs requests, records leads, scores them, queues
//! handoffs and answers, while the front works on the next batch (matching
//! sees the leads the back has not recorded yet). The back is the tenant's
//! only writer: each batch is one store transaction — recorded, scored,
//! answered, and the next batch's requests logged — so no thread waits
//! for another's write lock and the pages the steps share reach the
//! write-ahead log once. Requests that arrive together are processed
//! together, which is what keeps intake fast under load.
//!
//! A request is handed to the back to log before its leads are prepared,
//! so it is durable (and can be answered 202) while enrichment is slow.
//! The front prepares only requests whose key is new — not logged before
//! and not on its way to be — so a redelivery, even one that arrives while
//! the first is in flight, is answered with the first request and creates
//! nothing. A request logged but not finished — the process stopped, or
//! the store failed — is picked up again at start and whenever the queue
//! is idle: its leads keep the ids they were given when logged, and leads
//! already recorded are not recorded twice.

use super::Shared;
use crate::config::Config;
use crate::pipeline::{Committer, Components, Engine, Prepared, Processed};
use anyhow::{Context, Result};
use leadgate_ingest::{Limits, Mapping, Record as InputRecord};
use leadgate_lead::Source;
use leadgate_pipeline::config::serve::Target;
use leadgate_store::prelude::*;
use leadgate_store::service::{IntakeRow, Logged, NewIntake};
use leadgate_store::{Status, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

mod back;
mod front;
mod replies;

use replies::*;

/// An HTTP answer: status code and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Leads to process.
pub struct LeadsJob {
    pub key: String,
    /// `leads`, `form`, `hubspot` or `webhook`: how the answer is shaped.
    pub kind: &'static str,
    pub fingerprint: String,
    pub request: LeadsRequest,
    pub received: Instant,
    pub logged: oneshot::Sender<Result<Logged, String>>,
    pub done: oneshot::Sender<Reply>,
}

/// What the intake log keeps of a leads request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeadsRequest {
    pub source: String,
    /// The CRM's record id, when the lead came from the CRM (written back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_id: Option<String>,
    pub leads: Vec<serde_json::Value>,
}

/// Behavioural events to store.
pub struct EventsJob {
    pub key: String,
    pub fingerprint: String,
    /// One JSON object per event, as text.
    pub events: Vec<String>,
    pub logged: oneshot::Sender<Result<Logged, String>>,
    pub done: oneshot::Sender<Reply>,
}

pub enum Job {
    Leads(LeadsJob),
    Events(EventsJob),
}

impl Job {
    fn key(&self) -> &str {
        match self {
            Job::Leads(j) => &j.key,
            Job::Events(j) => &j.key,
        }
    }

    fn size(&self) -> usize {
        match self {
            Job::Leads(j) => j.request.leads.len().max(1),
            Job::Events(j) => j.events.len().max(1),
        }
    }

    /// When its handler queued it (events: when the front took it).
    fn received(&self) -> Instant {
        match self {
            Job::Leads(j) => j.received,
            Job::Events(_) => Instant::now(),
        }
    }
}

/// How closely requests follow each other, to decide whether a batch
/// waits for more.
///
/// Each batch is one store transaction, and a transaction writes every
/// page it touches to the write-ahead log — the ends of the tables and
/// indexes a lead lands in are shared by the whole batch — and each
/// component call, store read and scoring pass has its own fixed cost.
/// Under steady load, requests a couple of milliseconds apart are cheaper
/// together than one by one; when they are far apart there is nothing
/// to wait for, and a request is not held back at all.
#[derive(Debug, Default)]
struct Arrivals {
    last: Option<Instant>,
    /// Moving average of the time between requests, in seconds.
    gap: Option<f64>,
}

impl Arrivals {
    /// Weight of the newest gap in the average.
    const WEIGHT: f64 = 1.0 / 16.0;

    fn note(&mut self, at: Instant) {
        if let Some(last) = self.last {
            // Requests taken together after a wait arrive out of order.
            let g = at.saturating_duration_since(last).as_secs_f64();
            self.gap = Some(match self.gap {
                Some(avg) => avg + (g - avg) * Self::WEIGHT,
                None => g,
            });
        }
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
    }

    /// Until when a batch whose first request came at `first` waits for
    /// more: `wait` after it, when requests come more often than that;
    /// otherwise not at all.
    fn wait_until(&self, first: Instant, wait: Duration) -> Option<Instant> {
        let gap = self.gap?;
        (!wait.is_zero() && gap < wait.as_secs_f64()).then(|| first + wait)
    }
}

/// How often an idle worker looks for requests left unfinished.
const IDLE_RECOVERY: Duration = Duration::from_secs(5);
/// How long the front waits for a request before looking at the time and
/// whether the service is stopping.
const POLL: Duration = Duration::from_millis(200);
/// How often run totals are written.
const CHECKPOINT: Duration = Duration::from_secs(5);

/// Runs the tenant's pipeline until the queue closes.
pub fn run(config: Arc<Config>, db: String, shared: Arc<Shared>, rx: Receiver<Job>) -> Result<()> {
    let tenant = config.tenant.clone();
    let mut store = super::open_store(&db)?;
    store.manual_checkpoints()?;
    let components = Components::load(&config, &store, true)
        .with_context(|| format!("tenant {tenant}: cannot load the pipeline's components"))?;
    if let Some((_, _, chain)) = &components.enrich {
        shared.set_chain(&tenant, chain.clone());
    }
    let score_stage = if config.score.enabled {
        Some(crate::score::Stage::load(
            &config,
            &components.runtime,
            None,
        )?)
    } else {
        None
    };
    let scoring = match &score_stage {
        Some(s) => Some(s.scoring(&config)?),
        None => None,
    };
    let pipeline_path = config.score.pipeline.as_ref().map(|p| config.base.join(p));
    let pipeline = crate::score::Pipeline::open(pipeline_path.as_deref())?;
    let engine = Engine::new(&config, &components, &store, "serve")?;
    let run_id = engine.run_id;
    let mut front = Front {
        config: &config,
        tenant: &tenant,
        engine,
        mapping: Mapping::parse::<&str>(&[])?,
        in_flight: 0,
        keys: HashSet::new(),
        stopping: &shared.stopping,
        arrivals: Arrivals::default(),
    };
    let mut back_store = {
        let mut s = super::open_store(&db)?;
        s.manual_checkpoints()?;
        // Small batches: a lead's keys would each cost a page.
        s.defer_match_keys(leadgate_store::DEFAULT_CYCLE_LEADS);
        // What the last process left pending, before any request.
        let started = std::time::Instant::now();
        let rows = s
            .fold_deferred_keys()
            .context("cannot fold the match keys left pending")?;
        tracing::debug!(tenant = %tenant, rows, ms = started.elapsed().as_millis() as u64,
                "pending match keys folded");
        s
    };
    let assigner = if config.routing.enabled {
        Some(
            leadgate_pipeline::assign::Assigner::open(
                &config,
                &mut back_store,
                crate::clock::now_ms(),
            )
            .context("cannot read the reps to route leads to")?,
        )
    } else {
        None
    };
    let mut back = Back {
        store: back_store,
        steps: Steps {
            config: &config,
            tenant: &tenant,
            committer: front.engine.committer(),
            scoring,
            pipeline,
            shared: &shared,
            assigner,
        },
        logged: HashMap::new(),
    };
    // Requests left unfinished by the last process, before any new one
    // (those that fail again are left for the idle retries).
    let mut last_first = None;
    while let Some(work) = front.recover(&mut store, true)? {
        let first = match &work {
            Work::Leads { pending, .. } => pending.first().map(|p| p.intake),
            Work::Events { intake, .. } => Some(*intake),
        };
        if first.is_some() && first == last_first {
            front.engine.forget(work.leads());
            break;
        }
        last_first = first;
        let n = work.leads();
        let (atx, _arx) = std::sync::mpsc::channel();
        back.work(work, None, &atx);
        front.engine.forget(n);
    }
    back.store
        .index_lead_keys()
        .context("cannot index the stored leads' keys")?;
    // Most of a new lead's keys no stored lead has: the front answers
    // those from memory instead of seeking the index.
    let started = std::time::Instant::now();
    store
        .filter_match_keys()
        .context("cannot build the match-key filter")?;
    tracing::debug!(tenant = %tenant, ms = started.elapsed().as_millis() as u64, "match-key filter built");
    shared.set_ready(&tenant);
    tracing::info!(tenant = %tenant, run_id, "pipeline ready");
    std::thread::scope(|scope| -> Result<()> {
        let (wtx, wrx) = std::sync::mpsc::channel::<ToBack>();
        let (atx, arx) = std::sync::mpsc::channel::<Ack>();
        let back_thread = std::thread::Builder::new()
            .name(format!("record-{tenant}"))
            .spawn_scoped(scope, move || back.serve(&wrx, &atx))
            .context("cannot start the recording thread")?;
        let result = front.run(&mut store, &rx, &wtx, &arx);
        drop(wtx);
        if back_thread.join().is_err() {
            anyhow::bail!("the recording thread panicked");
        }
        result
    })?;
    front.engine.checkpoint(&store, "done")?;
    tracing::info!(tenant = %tenant, "pipeline stopped");
    Ok(())
}

/// What the front hands the back, in order.
enum ToBack {
    /// Requests to log: the back writes them in its next transaction.
    Log(Vec<ToLog>),
    /// Leads or events to record.
    Work(Work),
    /// Requests logged for the front whose leads it could not prepare:
    /// they stay logged, for the idle retries.
    Unprepared(Vec<String>),
}

/// A request to log, and who waits to hear that it is.
struct ToLog {
    key: String,
    kind: &'static str,
    fingerprint: String,
    body: String,
    lead_ids: String,
    logged: oneshot::Sender<Result<Logged, String>>,
    /// The front prepares its leads (its key was new): the back keeps
    /// the intake id for them.
    prepared: bool,
}

/// What the front hands the back to record.
enum Work {
    Leads {
        pending: Vec<Pending>,
        /// Each source's prepared leads, with each lead's place: (request,
        /// lead) in `pending`.
        prepared: Vec<(Prepared, Vec<(usize, usize)>)>,
    },
    Events {
        intake: i64,
        /// Logged by the back under this key (the intake id is the
        /// back's to fill in); `None` when picked up from the store.
        key: Option<String>,
        events: Vec<String>,
        done: Option<oneshot::Sender<Reply>>,
    },
}

impl Work {
    fn leads(&self) -> usize {
        match self {
            Work::Leads { prepared, .. } => prepared.iter().map(|(p, _)| p.len()).sum(),
            Work::Events { .. } => 0,
        }
    }
}

/// What the back tells the front.
enum Ack {
    /// These keys are logged (or failed to be): the store answers for
    /// them now.
    Logged(Vec<String>),
    /// A batch is done: this many prepared leads are recorded (or will
    /// never be).
    Recorded(usize),
}

/// Batches handed to the back and not acknowledged, at most: one being
/// recorded, one ready.
const MAX_IN_FLIGHT: usize = 2;

/// The front half: validation, enrichment, matching. It only reads the
/// store (its run totals aside): every write is the back's, so the two
/// never wait for each other's locks.
struct Front<'a> {
    config: &'a Config,
    tenant: &'a str,
    engine: Engine<'a>,
    mapping: Mapping,
    /// Batches handed to the back and not acknowledged.
    in_flight: usize,
    /// Idempotency keys handed to the back to log and not acknowledged.
    keys: HashSet<String>,
    /// Set when the service stops: the queue is drained, then the front
    /// stops.
    stopping: &'a std::sync::atomic::AtomicBool,
    arrivals: Arrivals,
}

/// The back half: logging, recording, scoring, handoffs, answers — one
/// store transaction per batch.
struct Back<'a> {
    store: Store,
    steps: Steps<'a>,
    /// Intake ids of requests logged for the front to prepare, by key,
    /// until their work arrives.
    logged: HashMap<String, i64>,
}

/// What the back does to a batch inside its transaction.
struct Steps<'a> {
    config: &'a Config,
    tenant: &'a str,
    committer: Committer<'a>,
    scoring: Option<crate::score::Scoring<'a>>,
    pipeline: crate::score::Pipeline,
    shared: &'a Shared,
    /// The tenant's router, when `[routing]` is on.
    assigner: Option<leadgate_pipeline::assign::Assigner>,
}

/// A leads request being processed: its intake id, lead ids and request.
struct Pending {
    intake: i64,
    /// Logged by the back under this key (the intake id is the back's to
    /// fill in); `None` when picked up from the store.
    key: Option<String>,
    ids: Vec<String>,
    request: LeadsRequest,
    kind: String,
    received: Option<Instant>,
    done: Option<oneshot::Sender<Reply>>,
    /// Leads recorded before (a request picked up again).
    recorded: BTreeSet<String>,
}

fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    Reply {
        status,
        body: serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
    }
}

const UNAVAILABLE: &str = "the leads were accepted and logged but could not be processed now; they will be processed when the pipeline recovers (see the status URL)";
const EVENTS_UNAVAILABLE: &str = "the events could not be stored now; they are logged and will be stored when the store recovers";

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_batch_waits_for_more_only_while_requests_come_close_together() {
        let t0 = Instant::now();
        let wait = ms(2);
        let mut a = Arrivals::default();
        a.note(t0);
        // One request seen: nothing to go by, no wait.
        assert_eq!(a.wait_until(t0, wait), None);
        // Steady, a request every millisecond: wait, from the first.
        for i in 1..=20 {
            a.note(t0 + ms(i));
        }
        let first = t0 + ms(20);
        assert_eq!(a.wait_until(first, wait), Some(first + wait));
        assert_eq!(a.wait_until(first, Duration::ZERO), None, "0 never waits");
        // Then quiet: a request every 50 ms soon stops the waiting.
        let mut at = first;
        for _ in 0..8 {
            at += ms(50);
            a.note(at);
        }
        assert_eq!(a.wait_until(at, wait), None, "{a:?}");
        // Requests taken out of order do not count as gaps back in time.
        let before = a.gap;
        a.note(at - ms(10));
        assert!(a.gap < before && a.gap >= Some(0.0), "{a:?}");
        assert_eq!(a.last, Some(at));
    }
}
