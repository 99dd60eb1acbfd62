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
use crate::serve::config::Target;
use anyhow::{Context, Result};
use leadgate_ingest::{Limits, Mapping, Record as InputRecord};
use leadgate_lead::Source;
use leadgate_store::prelude::*;
use leadgate_store::service::{IntakeRow, Logged, NewIntake};
use leadgate_store::{Status, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

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
    let mut back = Back {
        store: {
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
        },
        steps: Steps {
            config: &config,
            tenant: &tenant,
            committer: front.engine.committer(),
            scoring,
            pipeline,
            shared: &shared,
        },
        logged: HashMap::new(),
    };
    // Requests left unfinished by the last process, before any new one
    // (those that fail again are left for the idle retries).
    let mut last_first = None;
    while let Some(work) = front.recover(&mut store)? {
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

/// The write-ahead log's length (pages of 4 KiB) past which the background
/// thread tries to have it start over: 256 MiB. The log starts over on
/// its own at the next write after a checkpoint copied all of it while no
/// reader was on an older snapshot; under steady intake that only happens
/// when the checkpoints are frequent, so past this length the background
/// thread checkpoints every millisecond or so until it does (see
/// `serve::catch_up`).
pub(crate) const RESTART_FRAMES: i64 = 65_536;

/// The length past which the recording thread starts the log over itself
/// (a RESTART checkpoint, holding the batch behind it while it copies the
/// rest, syncs, and waits for readers): twice
/// [`RESTART_FRAMES`], when the background thread has not managed.
const FORCE_RESTART_FRAMES: i64 = 2 * RESTART_FRAMES;

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

impl Front<'_> {
    /// Takes requests until the queue closes.
    fn run(
        &mut self,
        store: &mut Store,
        rx: &Receiver<Job>,
        back: &Sender<ToBack>,
        acks: &Receiver<Ack>,
    ) -> Result<()> {
        let mut last_checkpoint = Instant::now();
        let mut last_idle = Instant::now();
        loop {
            let first = match rx.recv_timeout(POLL) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    // Stopping, and nothing left in the queue.
                    if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    if last_idle.elapsed() < IDLE_RECOVERY {
                        continue;
                    }
                    last_idle = Instant::now();
                    self.settle(acks, true);
                    // Unfinished requests are taken up only when nothing
                    // is in flight: they are not in flight then.
                    if self.in_flight == 0 && self.keys.is_empty() {
                        match self.recover(store) {
                            Ok(Some(work)) => self.send(back, acks, work)?,
                            Ok(None) => {}
                            Err(e) => {
                                tracing::error!(tenant = %self.tenant, error = %format!("{e:#}"), "recovering unfinished requests failed")
                            }
                        }
                    }
                    self.engine.checkpoint(store, "serving")?;
                    last_checkpoint = Instant::now();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let max = self.config.serve.max_batch;
            let mut size = first.size();
            let oldest = first.received();
            self.arrivals.note(oldest);
            let mut jobs = vec![first];
            // What is waiting, then — when requests come close together
            // — what comes before the batch's wait is over.
            let wait = Duration::from_millis(self.config.serve.batch_wait_ms);
            let until = self.arrivals.wait_until(oldest, wait);
            while size < max {
                let job = match rx.try_recv() {
                    Ok(job) => job,
                    Err(_) => {
                        let now = Instant::now();
                        match until.filter(|u| *u > now) {
                            Some(u) => match rx.recv_timeout(u - now) {
                                Ok(job) => job,
                                Err(_) => break,
                            },
                            None => break,
                        }
                    }
                };
                self.arrivals.note(job.received());
                size += job.size();
                jobs.push(job);
            }
            self.settle(acks, false);
            self.batch(store, jobs, back, acks)?;
            if last_checkpoint.elapsed() >= CHECKPOINT {
                self.engine.checkpoint(store, "serving")?;
                last_checkpoint = Instant::now();
            }
        }
        // Everything handed over is recorded before the run is closed.
        while self.in_flight > 0 {
            match acks.recv() {
                Ok(a) => self.ack(a),
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn ack(&mut self, a: Ack) {
        match a {
            Ack::Logged(keys) => {
                for k in keys {
                    self.keys.remove(&k);
                }
            }
            Ack::Recorded(leads) => {
                self.engine.forget(leads);
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
    }

    /// Takes the back's acknowledgements: recorded leads leave the
    /// matcher's memory.
    fn settle(&mut self, acks: &Receiver<Ack>, wait: bool) {
        loop {
            let a = if wait && (self.in_flight > 0 || !self.keys.is_empty()) {
                acks.recv_timeout(Duration::from_millis(10)).ok()
            } else {
                acks.try_recv().ok()
            };
            let Some(a) = a else { return };
            self.ack(a);
        }
    }

    /// Hands `work` to the back once fewer than [`MAX_IN_FLIGHT`] batches
    /// are.
    fn send(&mut self, back: &Sender<ToBack>, acks: &Receiver<Ack>, work: Work) -> Result<()> {
        while self.in_flight >= MAX_IN_FLIGHT {
            match acks.recv() {
                Ok(a) => self.ack(a),
                Err(_) => anyhow::bail!("the recording thread stopped"),
            }
        }
        self.in_flight += 1;
        back.send(ToBack::Work(work))
            .map_err(|_| anyhow::anyhow!("the recording thread stopped"))
    }

    /// Hands one batch of requests to the back to log, prepares the
    /// leads of those that are new and hands them over to record.
    fn batch(
        &mut self,
        store: &Store,
        jobs: Vec<Job>,
        back: &Sender<ToBack>,
        acks: &Receiver<Ack>,
    ) -> Result<()> {
        // A key logged before, or on its way to be, is a redelivery: the
        // back's log answers it with the first request.
        let known: Option<HashSet<String>> = match store
            .logged_keys(self.tenant, jobs.iter().map(Job::key))
        {
            Ok(k) => Some(k.into_iter().map(str::to_string).collect()),
            Err(e) => {
                tracing::error!(tenant = %self.tenant, error = %e, "looking up idempotency keys failed; the requests are logged and processed later");
                None
            }
        };
        let mut logs = Vec::with_capacity(jobs.len());
        let mut pending: Vec<Pending> = Vec::new();
        let mut works = Vec::new();
        for job in jobs {
            let new = known.as_ref().is_some_and(|k| !k.contains(job.key()))
                && self.keys.insert(job.key().to_string());
            match job {
                Job::Leads(j) => {
                    let ids: Vec<String> = (0..j.request.leads.len())
                        .map(|_| uuid::Uuid::now_v7().to_string())
                        .collect();
                    logs.push(ToLog {
                        key: j.key.clone(),
                        kind: j.kind,
                        fingerprint: j.fingerprint,
                        body: serde_json::to_string(&j.request).unwrap_or_default(),
                        lead_ids: serde_json::to_string(&ids).unwrap_or_default(),
                        logged: j.logged,
                        prepared: new,
                    });
                    if new {
                        pending.push(Pending {
                            intake: 0,
                            key: Some(j.key),
                            ids,
                            request: j.request,
                            kind: j.kind.to_string(),
                            received: Some(j.received),
                            done: Some(j.done),
                            recorded: BTreeSet::new(),
                        });
                    }
                }
                Job::Events(j) => {
                    logs.push(ToLog {
                        key: j.key.clone(),
                        kind: "events",
                        fingerprint: j.fingerprint,
                        body: serde_json::to_string(&j.events).unwrap_or_default(),
                        lead_ids: "[]".into(),
                        logged: j.logged,
                        prepared: new,
                    });
                    if new {
                        works.push(Work::Events {
                            intake: 0,
                            key: Some(j.key),
                            events: j.events,
                            done: Some(j.done),
                        });
                    }
                }
            }
        }
        // Logged by the back while this thread prepares the leads.
        back.send(ToBack::Log(logs))
            .map_err(|_| anyhow::anyhow!("the recording thread stopped"))?;
        if !pending.is_empty() {
            let started = Instant::now();
            // What the debug line tells, counted only when it is logged:
            // requests, leads, and how long the oldest request took from
            // its handler to here (the time it waited for the front).
            let counts = tracing::enabled!(tracing::Level::DEBUG).then(|| {
                (
                    pending.len(),
                    pending.iter().map(|p| p.ids.len()).sum::<usize>(),
                    pending.iter().filter_map(|p| p.received).min(),
                )
            });
            match self.prepare(store, pending) {
                Ok(w) => {
                    if let Some((requests, leads, oldest)) = counts {
                        tracing::debug!(
                            tenant = %self.tenant,
                            requests,
                            leads,
                            waited_ms = oldest.map_or(0.0, |o| started.duration_since(o).as_secs_f64() * 1e3),
                            ms = started.elapsed().as_secs_f64() * 1e3,
                            "batch prepared"
                        );
                    }
                    works.insert(0, w)
                }
                Err((e, pending)) => {
                    tracing::error!(tenant = %self.tenant, error = %format!("{e:#}"), "processing leads failed; the requests stay logged and will be processed again");
                    let mut keys = Vec::new();
                    for mut p in pending {
                        if let Some(done) = p.done.take() {
                            let _ = done.send(error_reply(503, "service.unavailable", UNAVAILABLE));
                        }
                        keys.extend(p.key);
                    }
                    back.send(ToBack::Unprepared(keys))
                        .map_err(|_| anyhow::anyhow!("the recording thread stopped"))?;
                }
            }
        }
        for w in works {
            self.send(back, acks, w)?;
        }
        Ok(())
    }

    /// Validates, enriches, matches and classifies the leads of `pending`.
    #[allow(clippy::result_large_err)]
    fn prepare(
        &mut self,
        store: &Store,
        pending: Vec<Pending>,
    ) -> std::result::Result<Work, (anyhow::Error, Vec<Pending>)> {
        let mut sources: Vec<String> = pending.iter().map(|p| p.request.source.clone()).collect();
        sources.sort();
        sources.dedup();
        let mut prepared = Vec::new();
        for source_name in sources {
            let source = Source::parse(&source_name).unwrap_or(Source::Api);
            let mut records: Vec<InputRecord> = Vec::new();
            let mut ids: Vec<String> = Vec::new();
            let mut places: Vec<(usize, usize)> = Vec::new();
            for (pi, p) in pending.iter().enumerate() {
                if p.request.source != source_name {
                    continue;
                }
                for (li, (value, id)) in p.request.leads.iter().zip(&p.ids).enumerate() {
                    if p.recorded.contains(id) {
                        continue;
                    }
                    records.push(InputRecord {
                        line: li as u64 + 1,
                        outcome: leadgate_ingest::parse_value(
                            value,
                            &self.mapping,
                            Limits::default(),
                        ),
                    });
                    ids.push(id.clone());
                    places.push((pi, li));
                }
            }
            if records.is_empty() {
                continue;
            }
            match self.engine.prepare(store, records, &ids, source) {
                Ok(p) => prepared.push((p, places)),
                Err(e) => {
                    // What was prepared will never be recorded.
                    let n: usize = prepared.iter().map(|(p, _): &(Prepared, _)| p.len()).sum();
                    self.engine.forget(n);
                    return Err((e, pending));
                }
            }
        }
        Ok(Work::Leads { pending, prepared })
    }

    /// The oldest requests logged but not finished, as work for the back.
    fn recover(&mut self, store: &mut Store) -> Result<Option<Work>> {
        let rows = store.pending_intake(self.tenant, 64)?;
        if rows.is_empty() {
            return Ok(None);
        }
        tracing::info!(tenant = %self.tenant, requests = rows.len(), "processing requests left unfinished");
        // Events first, one at a time.
        if let Some(row) = rows.iter().find(|r| r.kind == "events") {
            let events: Vec<String> = serde_json::from_str(&row.body).unwrap_or_default();
            return Ok(Some(Work::Events {
                intake: row.id,
                key: None,
                events,
                done: None,
            }));
        }
        let mut pending = Vec::new();
        for row in rows {
            match unpack(&row) {
                Ok(mut p) => {
                    p.recorded = store.recorded(&p.ids)?.into_iter().collect();
                    pending.push(p);
                }
                Err(e) => {
                    // Nothing can be made of it: finished with the
                    // reason, so it is not tried forever.
                    let reply = error_reply(500, "intake.unreadable", &format!("{e:#}"));
                    store.finish_intake(
                        &[(row.id, reply.status, &reply.body)],
                        crate::clock::now_ms(),
                    )?;
                }
            }
        }
        if pending.is_empty() {
            return Ok(None);
        }
        self.prepare(store, pending).map(Some).map_err(|(e, _)| e)
    }
}

impl Back<'_> {
    /// Logs, records and answers what the front hands over, until it
    /// stops.
    fn serve(&mut self, rx: &Receiver<ToBack>, acks: &Sender<Ack>) {
        let mut next: Option<ToBack> = None;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
            };
            match msg {
                ToBack::Log(mut logs) => {
                    more_logs(rx, &mut next, &mut logs);
                    let keys: Vec<String> = logs.iter().map(|l| l.key.clone()).collect();
                    match log(&mut self.store, self.steps.tenant, &logs) {
                        Ok(done) => self.answer_logs(logs, done),
                        Err(e) => fail_logs(self.steps.tenant, logs, &e),
                    }
                    let _ = acks.send(Ack::Logged(keys));
                }
                ToBack::Work(work) => self.work(work, Some((rx, &mut next)), acks),
                ToBack::Unprepared(keys) => {
                    for k in keys {
                        self.logged.remove(&k);
                    }
                }
            }
        }
    }

    /// Starts the write-ahead log over when it has grown long and the
    /// background thread's checkpoints have not had it start over on its
    /// own. Only the writer can start it over without making writers wait
    /// — this is the tenant's only writer.
    fn restart_log(&mut self) {
        let shared = self.steps.shared;
        if shared.wal_frames.load(Relaxed) < FORCE_RESTART_FRAMES {
            return;
        }
        let started = Instant::now();
        let restarted = self.store.restart_log();
        tracing::debug!(
            tenant = %self.steps.tenant,
            ms = started.elapsed().as_secs_f64() * 1e3,
            restarted = matches!(restarted, Ok(true)),
            "write-ahead log restart"
        );
        match restarted {
            Ok(true) => shared.wal_frames.store(0, Relaxed),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(tenant = %self.steps.tenant, error = %e, "starting the write-ahead log over failed")
            }
        }
    }

    /// Tells each request's handler how it was logged, and keeps the
    /// intake ids of those the front prepares.
    fn answer_logs(&mut self, logs: Vec<ToLog>, done: Vec<Logged>) {
        for (l, d) in logs.into_iter().zip(done) {
            if l.prepared
                && let Logged::New(id) = &d
            {
                self.logged.insert(l.key, *id);
            }
            let _ = l.logged.send(Ok(d));
        }
    }

    /// The intake ids of `work`'s requests, from their logging; requests
    /// that were not logged (the store failed, or the key was seen after
    /// all) are left out, and their leads are not recorded.
    fn resolve(&mut self, work: Work) -> Option<Work> {
        match work {
            Work::Events {
                intake,
                key,
                events,
                done,
            } => {
                let intake = match key {
                    Some(k) => self.logged.remove(&k)?,
                    None => intake,
                };
                Some(Work::Events {
                    intake,
                    key: None,
                    events,
                    done,
                })
            }
            Work::Leads {
                mut pending,
                mut prepared,
            } => {
                let mut keep = Vec::with_capacity(pending.len());
                for p in &mut pending {
                    let found = match p.key.take() {
                        Some(k) => self.logged.remove(&k).map(|id| p.intake = id).is_some(),
                        None => true,
                    };
                    keep.push(found);
                }
                if keep.iter().all(|k| *k) {
                    return Some(Work::Leads { pending, prepared });
                }
                // New places of the requests kept.
                let mut place = Vec::with_capacity(keep.len());
                let mut n = 0;
                for k in &keep {
                    place.push(n);
                    n += usize::from(*k);
                }
                for (p, places) in &mut prepared {
                    p.retain(|i| places.get(i).is_some_and(|(pi, _)| keep[*pi]));
                    places.retain(|(pi, _)| keep[*pi]);
                    for (pi, _) in places.iter_mut() {
                        *pi = place[*pi];
                    }
                }
                let pending = pending
                    .into_iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(p, _)| p)
                    .collect();
                Some(Work::Leads { pending, prepared })
            }
        }
    }

    /// Records, scores and answers one batch in one transaction — with the
    /// requests waiting to be logged by then — and acknowledges it.
    fn work(
        &mut self,
        work: Work,
        queue: Option<(&Receiver<ToBack>, &mut Option<ToBack>)>,
        acks: &Sender<Ack>,
    ) {
        let leads = work.leads();
        let Some(mut work) = self.resolve(work) else {
            let _ = acks.send(Ack::Recorded(leads));
            return;
        };
        let tenant = self.steps.tenant;
        // Who waits for the batch's answers (sent once it is committed).
        let waiting: Vec<(Option<oneshot::Sender<Reply>>, Option<Instant>)> = match &mut work {
            Work::Leads { pending, .. } => pending
                .iter_mut()
                .map(|p| (p.done.take(), p.received))
                .collect(),
            Work::Events { done, .. } => vec![(done.take(), None)],
        };
        let events = matches!(work, Work::Events { .. });
        let mut logs = Vec::new();
        let result = transact(&mut self.store, &mut self.steps, work, queue, &mut logs);
        let logged = match result {
            Ok((replies, logged)) => {
                for ((done, received), reply) in waiting.into_iter().zip(replies) {
                    if let Some(at) = received {
                        self.steps
                            .shared
                            .metrics
                            .processing_seconds
                            .get_or_create(&super::metrics::Tenant {
                                tenant: tenant.to_string(),
                            })
                            .observe(at.elapsed().as_secs_f64());
                    }
                    if let Some(done) = done {
                        let _ = done.send(reply);
                    }
                }
                Ok(logged)
            }
            Err(e) => {
                let reply = if events {
                    tracing::error!(tenant = %tenant, error = %format!("{e:#}"), "storing events failed; they stay logged and will be stored again");
                    error_reply(503, "service.unavailable", EVENTS_UNAVAILABLE)
                } else {
                    tracing::error!(tenant = %tenant, error = %format!("{e:#}"), "processing leads failed; the requests stay logged and will be processed again");
                    error_reply(503, "service.unavailable", UNAVAILABLE)
                };
                for (done, _) in waiting {
                    if let Some(done) = done {
                        let _ = done.send(reply.clone());
                    }
                }
                // The requests that were to be logged with the batch are
                // logged on their own.
                if logs.is_empty() {
                    Ok(Vec::new())
                } else {
                    log(&mut self.store, tenant, &logs)
                }
            }
        };
        let _ = acks.send(Ack::Recorded(leads));
        if !logs.is_empty() {
            let keys: Vec<String> = logs.iter().map(|l| l.key.clone()).collect();
            match logged {
                Ok(done) => self.answer_logs(logs, done),
                Err(e) => fail_logs(tenant, logs, &e),
            }
            let _ = acks.send(Ack::Logged(keys));
        }
        // Everyone is answered first.
        self.restart_log();
    }
}

/// One transaction: `work` recorded, scored and answered, then the
/// requests that queued meanwhile logged (taken into `logs`). The replies
/// and how the requests were logged, once committed.
fn transact(
    store: &mut Store,
    steps: &mut Steps<'_>,
    work: Work,
    queue: Option<(&Receiver<ToBack>, &mut Option<ToBack>)>,
    logs: &mut Vec<ToLog>,
) -> Result<(Vec<Reply>, Vec<Logged>)> {
    let mut batch = store.batch()?;
    let replies = steps.apply(&mut batch, work)?;
    if let Some((rx, next)) = queue {
        more_logs(rx, next, logs);
    }
    let logged = if logs.is_empty() {
        Vec::new()
    } else {
        log(&mut batch, steps.tenant, logs)?
    };
    batch.commit()?;
    Ok((replies, logged))
}

impl Steps<'_> {
    /// Records, scores and answers `work` in `store`'s open batch: one
    /// reply per request.
    fn apply(&mut self, store: &mut Store, work: Work) -> Result<Vec<Reply>> {
        match work {
            Work::Leads { pending, prepared } => {
                let replies = self.process(store, &pending, prepared)?;
                let done: Vec<(i64, u16, &str)> = pending
                    .iter()
                    .zip(&replies)
                    .map(|(p, r)| (p.intake, r.status, r.body.as_str()))
                    .collect();
                store.finish_intake(&done, crate::clock::now_ms())?;
                Ok(replies)
            }
            Work::Events { intake, events, .. } => Ok(vec![events_into(
                self.config,
                self.tenant,
                &mut self.scoring,
                &mut self.pipeline,
                store,
                intake,
                &events,
            )?]),
        }
    }

    /// Records prepared leads, scores them and queues handoffs; one reply
    /// per request.
    fn process(
        &mut self,
        store: &mut Store,
        pending: &[Pending],
        prepared: Vec<(Prepared, Vec<(usize, usize)>)>,
    ) -> Result<Vec<Reply>> {
        let started = Instant::now();
        let mut results: Vec<Vec<Option<Processed>>> = pending
            .iter()
            .map(|p| (0..p.ids.len()).map(|_| None).collect())
            .collect();
        let mut failed = None;
        for (p, places) in prepared {
            if failed.is_some() {
                continue;
            }
            match self.committer.commit(store, p) {
                Ok(processed) => {
                    for ((pi, li), p) in places.into_iter().zip(processed) {
                        results[pi][li] = Some(p);
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let recorded = started.elapsed();
        // Scores for the new leads (and their accounts).
        let any_new = results
            .iter()
            .flatten()
            .flatten()
            .any(|p| matches!(p.status, Status::Accepted | Status::Review));
        let now = crate::clock::now_ms();
        if let Some(scoring) = self.scoring.as_mut()
            && any_new
        {
            // Events that waited for these people attach now; those leads
            // change their accounts' intent, the others only themselves.
            let late = store.attach_pending(self.tenant)?;
            // The others as the pipeline recorded them: not read back.
            let alone: Vec<crate::score::Recorded> = results
                .iter_mut()
                .flatten()
                .flatten()
                .filter(|p| !late.contains(&p.lead_id))
                .filter_map(|p| p.recorded.take())
                .collect();
            crate::score::rescore(
                self.config,
                store,
                scoring,
                crate::score::Scope::Recorded(alone),
                "intake",
                &mut self.pipeline,
                now,
            )?;
            if !late.is_empty() {
                crate::score::rescore(
                    self.config,
                    store,
                    scoring,
                    crate::score::Scope::WithAccounts(&late),
                    "events",
                    &mut self.pipeline,
                    now,
                )?;
            }
        }
        let scored = started.elapsed();
        let all_ids: Vec<String> = pending.iter().flat_map(|p| p.ids.clone()).collect();
        let scores = store.score_details(&all_ids)?;
        // Handoffs: qualified leads to the CRM; a lead that came from the
        // CRM gets its result written back.
        let target = self.config.crm.target;
        for (p, rs) in pending.iter().zip(&results) {
            for (i, id) in p.ids.iter().enumerate() {
                let (status, state) = match &rs[i] {
                    Some(r) => (
                        r.status.as_str().to_string(),
                        Some(r.state.as_str().to_string()),
                    ),
                    None => match store.lead_state(self.tenant, id)? {
                        Some((s, q)) => (s, q),
                        None => continue,
                    },
                };
                if target == Target::None {
                    continue;
                }
                if let Some(crm_id) = &p.request.crm_id {
                    store.enqueue_handoff(
                        self.tenant,
                        id,
                        target.as_str(),
                        "update",
                        Some(crm_id),
                        now,
                    )?;
                } else if status == "accepted"
                    && state
                        .as_ref()
                        .is_some_and(|s| self.config.crm.handoff.contains(s))
                {
                    store.enqueue_handoff(self.tenant, id, target.as_str(), "create", None, now)?;
                }
            }
        }
        count(self.shared, self.tenant, &results);
        let handed = started.elapsed();
        let mut replies = Vec::with_capacity(pending.len());
        for (p, rs) in pending.iter().zip(results) {
            replies.push(reply(self.tenant, store, p, rs, &scores)?);
        }
        tracing::debug!(
            tenant = %self.tenant,
            requests = pending.len(),
            leads = all_ids.len(),
            record_ms = recorded.as_secs_f64() * 1e3,
            score_ms = (scored - recorded).as_secs_f64() * 1e3,
            handoff_ms = (handed - scored).as_secs_f64() * 1e3,
            reply_ms = (started.elapsed() - handed).as_secs_f64() * 1e3,
            "batch processed"
        );
        Ok(replies)
    }
}

/// Logs that wait behind the message in hand join it.
fn more_logs(rx: &Receiver<ToBack>, next: &mut Option<ToBack>, logs: &mut Vec<ToLog>) {
    if next.is_some() {
        return;
    }
    while let Ok(m) = rx.try_recv() {
        match m {
            ToBack::Log(l) => logs.extend(l),
            other => {
                *next = Some(other);
                return;
            }
        }
    }
}

/// Logs requests (in the store's open batch, if any).
fn log(
    store: &mut Store,
    tenant: &str,
    logs: &[ToLog],
) -> std::result::Result<Vec<Logged>, leadgate_store::StoreError> {
    let requests: Vec<NewIntake<'_>> = logs
        .iter()
        .map(|l| NewIntake {
            tenant,
            key: &l.key,
            kind: l.kind,
            fingerprint: &l.fingerprint,
            body: &l.body,
            lead_ids: &l.lead_ids,
        })
        .collect();
    store.log_intake(&requests, crate::clock::now_ms())
}

/// Tells the handlers their requests could not be logged.
fn fail_logs(tenant: &str, logs: Vec<ToLog>, e: &dyn std::fmt::Display) {
    let msg = format!("the store cannot take the request: {e}");
    tracing::error!(tenant = %tenant, error = %msg, "logging requests failed");
    for l in logs {
        let _ = l.logged.send(Err(msg.clone()));
    }
}

fn count(shared: &Shared, tenant: &str, results: &[Vec<Option<Processed>>]) {
    let m = &shared.metrics;
    for r in results.iter().flatten().flatten() {
        m.leads
            .get_or_create(&super::metrics::Tenant {
                tenant: tenant.to_string(),
            })
            .inc();
        let outcome = match r.validation {
            Status::Accepted | Status::Duplicate => "pass",
            Status::Review => "review",
            Status::Rejected => "reject",
            Status::Exception => "exception",
        };
        m.count(&m.validation, tenant, outcome);
        if let Some(d) = &r.matched {
            m.count(&m.duplicates, tenant, d);
        }
        if let Some(e) = &r.enrichment {
            m.count(&m.enrichment, tenant, e);
        }
    }
}

/// The answer to one request.
fn reply(
    tenant: &str,
    store: &Store,
    p: &Pending,
    results: Vec<Option<Processed>>,
    scores: &std::collections::HashMap<String, String>,
) -> Result<Reply> {
    let mut lines: Vec<String> = Vec::with_capacity(results.len());
    let mut first: Option<(Status, String)> = None;
    for (id, r) in p.ids.iter().zip(results) {
        let line = match r {
            Some(r) => {
                let text = r.line.get();
                if first.is_none() {
                    first = Some((r.status, text.to_string()));
                }
                match (scores.get(id), text.strip_suffix('}')) {
                    (Some(score), Some(head)) => format!("{head},\"score\":{score}}}"),
                    _ => text.to_string(),
                }
            }
            None => {
                // Recorded before a restart: its stored state.
                let (status, q) = store
                    .lead_state(tenant, id)?
                    .unwrap_or_else(|| ("exception".into(), None));
                serde_json::json!({"lead_id": id, "status": status, "qualification": {"state": q}, "recovered": true})
                    .to_string()
            }
        };
        lines.push(line);
    }
    let request_id = p.intake;
    if p.kind == "form"
        && let Some((status, text)) = first
    {
        let result: serde_json::Value = serde_json::from_str(&text)?;
        if status == Status::Rejected {
            let of = |severity: &str| -> Vec<serde_json::Value> {
                result["issues"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|i| i["severity"] == severity)
                                .map(|i| serde_json::json!({"field": i["field"], "code": i["code"], "message": i["message"]}))
                                .collect()
                        })
                        .unwrap_or_default()
            };
            return Ok(Reply {
                status: 422,
                body: serde_json::json!({
                    "request_id": request_id,
                    "lead_id": result["lead_id"],
                    "status": "rejected",
                    "errors": of("error"),
                    "warnings": of("warning"),
                })
                .to_string(),
            });
        }
        return Ok(Reply {
            status: 201,
            body: format!(
                "{{\"request_id\":{request_id},\"lead_id\":{},\"status\":{},\"result\":{}}}",
                result["lead_id"], result["status"], lines[0]
            ),
        });
    }
    Ok(Reply {
        status: 200,
        body: format!(
            "{{\"request_id\":{request_id},\"state\":\"done\",\"results\":[{}]}}",
            lines.join(",")
        ),
    })
}

/// Stores events, attaches them and re-scores the leads they touch.
#[allow(clippy::too_many_arguments)]
fn events_into(
    config: &Config,
    tenant: &str,
    scoring: &mut Option<crate::score::Scoring<'_>>,
    pipeline: &mut crate::score::Pipeline,
    store: &mut Store,
    intake: i64,
    events: &[String],
) -> Result<Reply> {
    let now = crate::clock::now_ms();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in events.iter().enumerate() {
        match crate::events::parse(i as u64 + 1, raw, &config.score.pages, now) {
            Ok(e) => good.push(e),
            Err(r) => bad.push(r),
        }
    }
    let inserted = store.insert_events(tenant, &good, now)?;
    store.reject_events(tenant, &format!("request {intake}"), &bad, now)?;
    let mut touched = inserted.leads.clone();
    touched.extend(store.attach_pending(tenant)?);
    if let Some(scoring) = scoring.as_mut()
        && !touched.is_empty()
    {
        crate::score::rescore(
            config,
            store,
            scoring,
            crate::score::Scope::WithAccounts(&touched),
            "events",
            pipeline,
            now,
        )?;
    }
    let rejected: Vec<serde_json::Value> = bad
        .iter()
        .map(|b| serde_json::json!({"line": b.line, "field": b.field, "code": b.code, "message": b.message}))
        .collect();
    let status = if good.is_empty() && !bad.is_empty() {
        422
    } else {
        200
    };
    let reply = Reply {
        status,
        body: serde_json::json!({
            "request_id": intake,
            "state": "done",
            "stored": inserted.stored,
            "duplicates": inserted.duplicates,
            "attached": inserted.attached,
            "rejected": rejected,
        })
        .to_string(),
    };
    store.finish_intake(&[(intake, reply.status, &reply.body)], now)?;
    Ok(reply)
}

fn unpack(row: &IntakeRow) -> Result<Pending> {
    let request: LeadsRequest =
        serde_json::from_str(&row.body).context("the logged request is not readable")?;
    let ids: Vec<String> =
        serde_json::from_str(&row.lead_ids).context("the logged lead ids are not readable")?;
    Ok(Pending {
        intake: row.id,
        key: None,
        ids,
        request,
        kind: row.kind.clone(),
        received: None,
        done: None,
        recorded: BTreeSet::new(),
    })
}

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
