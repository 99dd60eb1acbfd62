//! One pipeline per tenant, in a thread of its own: it takes requests from
//! a bounded queue, logs them in the store under their idempotency key
//! (the request is durable from then on), runs their leads through the
//! same pipeline as `leadgate run` — validate, enrich, dedupe, classify,
//! record — scores them, queues qualified leads for the CRM, records each
//! request's result, and answers the waiting handler.
//!
//! Two threads per tenant, like `leadgate run`'s two stages: the front
//! logs requests and validates, enriches, matches and classifies their
//! leads; the back records them, scores them, queues handoffs and answers,
//! while the front works on the next batch (matching sees the leads the
//! back has not recorded yet). Requests that arrive together are processed
//! together (one store transaction each way), which is what keeps intake
//! fast under load. A request
//! logged but not finished — the process stopped, or the store failed —
//! is picked up again at start and whenever the queue is idle: its leads
//! keep the ids they were given when logged, and leads already recorded
//! are not recorded twice.

use super::Shared;
use crate::config::Config;
use crate::run::{Committer, Components, Engine, Prepared, Processed};
use crate::serve::config::Target;
use anyhow::{Context, Result};
use leadgate_ingest::{Limits, Mapping, Record as InputRecord};
use leadgate_lead::Source;
use leadgate_store::service::{IntakeRow, Logged, NewIntake};
use leadgate_store::{Status, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
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
    fn size(&self) -> usize {
        match self {
            Job::Leads(j) => j.request.leads.len().max(1),
            Job::Events(j) => j.events.len().max(1),
        }
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
    let mut store = Store::open(&db)?;
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
        stopping: &shared.stopping,
    };
    let mut back = Back {
        config: &config,
        tenant: &tenant,
        committer: front.engine.committer(),
        scoring,
        pipeline,
        shared: &shared,
        store: {
            let s = Store::open(&db)?;
            s.manual_checkpoints()?;
            s
        },
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
        back.work(work, &atx);
        front.engine.forget(n);
    }
    shared.set_ready(&tenant);
    tracing::info!(tenant = %tenant, run_id, "pipeline ready");
    std::thread::scope(|scope| -> Result<()> {
        // Two batches in flight at most: one being recorded, one ready.
        let (wtx, wrx) = std::sync::mpsc::sync_channel::<Work>(1);
        let (atx, arx) = std::sync::mpsc::channel::<Ack>();
        let back_thread = std::thread::Builder::new()
            .name(format!("record-{tenant}"))
            .spawn_scoped(scope, move || {
                for work in wrx {
                    back.work(work, &atx);
                }
            })
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

/// What the front hands the back.
enum Work {
    Leads {
        pending: Vec<Pending>,
        /// Each source's prepared leads, with each lead's place: (request,
        /// lead) in `pending`.
        prepared: Vec<(Prepared, Vec<(usize, usize)>)>,
    },
    Events {
        intake: i64,
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

/// What the back tells the front when a batch is done: how many prepared
/// leads are recorded (or will never be).
struct Ack {
    leads: usize,
}

/// The front half: logging, validation, enrichment, matching.
struct Front<'a> {
    config: &'a Config,
    tenant: &'a str,
    engine: Engine<'a>,
    mapping: Mapping,
    /// Batches handed to the back and not acknowledged.
    in_flight: usize,
    /// Set when the service stops: the queue is drained, then the front
    /// stops.
    stopping: &'a std::sync::atomic::AtomicBool,
}

/// The back half: recording, scoring, handoffs, answers.
struct Back<'a> {
    config: &'a Config,
    tenant: &'a str,
    committer: Committer<'a>,
    scoring: Option<crate::score::Scoring<'a>>,
    pipeline: crate::score::Pipeline,
    shared: &'a Shared,
    store: Store,
}

/// A leads request being processed: its intake id, lead ids and request.
struct Pending {
    intake: i64,
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

impl Front<'_> {
    /// Takes requests until the queue closes.
    fn run(
        &mut self,
        store: &mut Store,
        rx: &Receiver<Job>,
        back: &SyncSender<Work>,
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
                    if self.in_flight == 0 {
                        match self.recover(store) {
                            Ok(Some(work)) => self.send(back, work)?,
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
            let mut size = first.size();
            let mut jobs = vec![first];
            while size < self.config.serve.max_batch {
                match rx.try_recv() {
                    Ok(job) => {
                        size += job.size();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.settle(acks, false);
            self.batch(store, jobs, back);
            if last_checkpoint.elapsed() >= CHECKPOINT {
                self.engine.checkpoint(store, "serving")?;
                last_checkpoint = Instant::now();
            }
        }
        // Everything handed over is recorded before the run is closed.
        while self.in_flight > 0 {
            match acks.recv() {
                Ok(a) => {
                    self.engine.forget(a.leads);
                    self.in_flight -= 1;
                }
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Takes the back's acknowledgements: recorded leads leave the
    /// matcher's memory.
    fn settle(&mut self, acks: &Receiver<Ack>, wait: bool) {
        loop {
            let a = if wait && self.in_flight > 0 {
                acks.recv_timeout(Duration::from_millis(10)).ok()
            } else {
                acks.try_recv().ok()
            };
            let Some(a) = a else { return };
            self.engine.forget(a.leads);
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    fn send(&mut self, back: &SyncSender<Work>, work: Work) -> Result<()> {
        self.in_flight += 1;
        back.send(work)
            .map_err(|_| anyhow::anyhow!("the recording thread stopped"))
    }

    /// Logs one batch of requests, prepares their leads and hands them
    /// to the back.
    fn batch(&mut self, store: &mut Store, jobs: Vec<Job>, back: &SyncSender<Work>) {
        let mut leads: Vec<(LeadsJob, Vec<String>, String)> = Vec::new();
        let mut events: Vec<EventsJob> = Vec::new();
        for job in jobs {
            match job {
                Job::Leads(j) => {
                    let ids: Vec<String> = (0..j.request.leads.len())
                        .map(|_| uuid::Uuid::now_v7().to_string())
                        .collect();
                    let body = serde_json::to_string(&j.request).unwrap_or_default();
                    leads.push((j, ids, body));
                }
                Job::Events(j) => events.push(j),
            }
        }
        // Log every request in one transaction.
        let lead_ids: Vec<String> = leads
            .iter()
            .map(|(_, ids, _)| serde_json::to_string(ids).unwrap_or_default())
            .collect();
        let event_bodies: Vec<String> = events
            .iter()
            .map(|j| serde_json::to_string(&j.events).unwrap_or_default())
            .collect();
        let mut requests: Vec<NewIntake<'_>> = Vec::new();
        for ((j, _, body), ids) in leads.iter().zip(&lead_ids) {
            requests.push(NewIntake {
                tenant: self.tenant,
                key: &j.key,
                kind: j.kind,
                fingerprint: &j.fingerprint,
                body,
                lead_ids: ids,
            });
        }
        for (j, body) in events.iter().zip(&event_bodies) {
            requests.push(NewIntake {
                tenant: self.tenant,
                key: &j.key,
                kind: "events",
                fingerprint: &j.fingerprint,
                body,
                lead_ids: "[]",
            });
        }
        let logged = match store.log_intake(&requests, crate::run::now_ms()) {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("the store cannot take the request: {e}");
                tracing::error!(tenant = %self.tenant, error = %msg, "logging requests failed");
                for (j, _, _) in leads {
                    let _ = j.logged.send(Err(msg.clone()));
                }
                for j in events {
                    let _ = j.logged.send(Err(msg.clone()));
                }
                return;
            }
        };
        let mut logged = logged.into_iter();
        let mut pending: Vec<Pending> = Vec::new();
        for (j, ids, _) in leads {
            let Some(l) = logged.next() else { break };
            if let Some(intake) = answer_logged(l, j.logged) {
                pending.push(Pending {
                    intake,
                    ids,
                    request: j.request,
                    kind: j.kind.to_string(),
                    received: Some(j.received),
                    done: Some(j.done),
                    recorded: BTreeSet::new(),
                });
            }
        }
        let mut new_events = Vec::new();
        for j in events {
            let Some(l) = logged.next() else { break };
            if let Some(intake) = answer_logged(l, j.logged) {
                new_events.push((intake, j.events, Some(j.done)));
            }
        }
        let mut works = Vec::new();
        if !pending.is_empty() {
            match self.prepare(store, pending) {
                Ok(w) => works.push(w),
                Err((e, pending)) => {
                    tracing::error!(tenant = %self.tenant, error = %format!("{e:#}"), "processing leads failed; the requests stay logged and will be processed again");
                    for mut p in pending {
                        if let Some(done) = p.done.take() {
                            let _ = done.send(error_reply(503, "service.unavailable", UNAVAILABLE));
                        }
                    }
                }
            }
        }
        for (intake, events, done) in new_events {
            works.push(Work::Events {
                intake,
                events,
                done,
            });
        }
        for w in works {
            if self.send(back, w).is_err() {
                tracing::error!(tenant = %self.tenant, "the recording thread stopped");
            }
        }
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
                        crate::run::now_ms(),
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
    /// Records, scores and answers one batch, then acknowledges it.
    fn work(&mut self, work: Work, acks: &std::sync::mpsc::Sender<Ack>) {
        let leads = work.leads();
        match work {
            Work::Leads { pending, prepared } => self.leads(pending, prepared, acks),
            Work::Events {
                intake,
                events,
                done,
            } => {
                let store = &mut self.store;
                let reply = match events_into(
                    self.config,
                    self.tenant,
                    &mut self.scoring,
                    &mut self.pipeline,
                    store,
                    intake,
                    &events,
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(tenant = %self.tenant, error = %format!("{e:#}"), "storing events failed");
                        error_reply(
                            503,
                            "service.unavailable",
                            "the events could not be stored now; they are logged and will be stored when the store recovers",
                        )
                    }
                };
                if let Some(done) = done {
                    let _ = done.send(reply);
                }
                let _ = acks.send(Ack { leads });
            }
        }
    }

    fn leads(
        &mut self,
        mut pending: Vec<Pending>,
        prepared: Vec<(Prepared, Vec<(usize, usize)>)>,
        acks: &std::sync::mpsc::Sender<Ack>,
    ) {
        let leads: usize = prepared.iter().map(|(p, _)| p.len()).sum();
        let result = self.process(&pending, prepared, acks, leads);
        match result {
            Ok(replies) => {
                let done: Vec<(i64, u16, &str)> = pending
                    .iter()
                    .zip(&replies)
                    .map(|(p, r)| (p.intake, r.status, r.body.as_str()))
                    .collect();
                if let Err(e) = self.store.finish_intake(&done, crate::run::now_ms()) {
                    tracing::error!(tenant = %self.tenant, error = %e, "recording request results failed");
                }
                for (p, reply) in pending.iter_mut().zip(replies) {
                    if let Some(at) = p.received {
                        self.shared
                            .metrics
                            .processing_seconds
                            .get_or_create(&super::metrics::Tenant {
                                tenant: self.tenant.to_string(),
                            })
                            .observe(at.elapsed().as_secs_f64());
                    }
                    if let Some(done) = p.done.take() {
                        let _ = done.send(reply);
                    }
                }
            }
            Err(e) => {
                tracing::error!(tenant = %self.tenant, error = %format!("{e:#}"), "processing leads failed; the requests stay logged and will be processed again");
                for p in &mut pending {
                    if let Some(done) = p.done.take() {
                        let _ = done.send(error_reply(503, "service.unavailable", UNAVAILABLE));
                    }
                }
            }
        }
    }

    /// Records prepared leads, scores them and queues handoffs; one reply
    /// per request. The front is acknowledged as soon as the leads are
    /// recorded (or failed).
    fn process(
        &mut self,
        pending: &[Pending],
        prepared: Vec<(Prepared, Vec<(usize, usize)>)>,
        acks: &std::sync::mpsc::Sender<Ack>,
        leads: usize,
    ) -> Result<Vec<Reply>> {
        let started = Instant::now();
        let store = &mut self.store;
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
        let _ = acks.send(Ack { leads });
        if let Some(e) = failed {
            return Err(e);
        }
        let recorded = started.elapsed();
        // Scores for the new leads (and their accounts).
        let new_ids: BTreeSet<String> = results
            .iter()
            .flatten()
            .flatten()
            .filter(|p| matches!(p.status, Status::Accepted | Status::Review))
            .map(|p| p.lead_id.clone())
            .collect();
        let now = crate::run::now_ms();
        if let Some(scoring) = self.scoring.as_mut()
            && !new_ids.is_empty()
        {
            // Events that waited for these people attach now; those leads
            // change their accounts' intent, the others only themselves.
            let late = store.attach_pending(self.tenant)?;
            let alone: BTreeSet<String> = new_ids.difference(&late).cloned().collect();
            crate::score::rescore(
                self.config,
                store,
                scoring,
                crate::score::Scope::Only(&alone),
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
    let now = crate::run::now_ms();
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

/// Tells the waiting handler how its request was logged; the intake id
/// when the request is new (and so to be processed).
fn answer_logged(l: Logged, to: oneshot::Sender<Result<Logged, String>>) -> Option<i64> {
    let new = match &l {
        Logged::New(id) => Some(*id),
        Logged::Seen(_) => None,
    };
    let _ = to.send(Ok(l));
    new
}

fn unpack(row: &IntakeRow) -> Result<Pending> {
    let request: LeadsRequest =
        serde_json::from_str(&row.body).context("the logged request is not readable")?;
    let ids: Vec<String> =
        serde_json::from_str(&row.lead_ids).context("the logged lead ids are not readable")?;
    Ok(Pending {
        intake: row.id,
        ids,
        request,
        kind: row.kind.clone(),
        received: None,
        done: None,
        recorded: BTreeSet::new(),
    })
}
