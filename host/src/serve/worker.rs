//! One pipeline per tenant, in a thread of its own: it takes requests from
//! a bounded queue, logs them in the store under their idempotency key
//! (the request is durable from then on), runs their leads through the
//! same pipeline as `leadgate run` — validate, enrich, dedupe, classify,
//! record — scores them, queues qualified leads for the CRM, records each
//! request's result, and answers the waiting handler.
//!
//! Requests that arrive together are processed together (one store
//! transaction), which is what keeps intake fast under load. A request
//! logged but not finished — the process stopped, or the store failed —
//! is picked up again at start and whenever the queue is idle: its leads
//! keep the ids they were given when logged, and leads already recorded
//! are not recorded twice.

use super::Shared;
use crate::config::Config;
use crate::run::{Components, Engine, Processed};
use crate::serve::config::Target;
use anyhow::{Context, Result};
use leadgate_ingest::{Limits, Mapping, Record as InputRecord};
use leadgate_lead::Source;
use leadgate_store::service::{IntakeRow, Logged, NewIntake};
use leadgate_store::{Status, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
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
/// How often run totals are written.
const CHECKPOINT: Duration = Duration::from_secs(5);

/// Runs the tenant's pipeline until the queue closes.
pub fn run(config: Arc<Config>, db: String, shared: Arc<Shared>, rx: Receiver<Job>) -> Result<()> {
    let tenant = config.tenant.clone();
    let mut store = Store::open(&db)?;
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
    let mut w = Worker {
        config: &config,
        tenant: &tenant,
        engine,
        scoring,
        pipeline,
        shared: &shared,
        mapping: Mapping::parse::<&str>(&[])?,
    };
    w.recover(&mut store)?;
    shared.set_ready(&tenant);
    tracing::info!(tenant = %tenant, run_id = w.engine.run_id, "pipeline ready");
    let mut last_checkpoint = Instant::now();
    loop {
        let first = match rx.recv_timeout(IDLE_RECOVERY) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = w.recover(&mut store) {
                    tracing::error!(tenant = %tenant, error = %format!("{e:#}"), "recovering unfinished requests failed");
                }
                w.engine.checkpoint(&store, "serving")?;
                last_checkpoint = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut size = first.size();
        let mut jobs = vec![first];
        while size < config.serve.max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.size();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        w.batch(&mut store, jobs);
        if last_checkpoint.elapsed() >= CHECKPOINT {
            w.engine.checkpoint(&store, "serving")?;
            last_checkpoint = Instant::now();
        }
    }
    w.engine.checkpoint(&store, "done")?;
    tracing::info!(tenant = %tenant, "pipeline stopped");
    Ok(())
}

struct Worker<'a> {
    config: &'a Config,
    tenant: &'a str,
    engine: Engine<'a>,
    scoring: Option<crate::score::Scoring<'a>>,
    pipeline: crate::score::Pipeline,
    shared: &'a Shared,
    mapping: Mapping,
}

/// A leads request being processed: its intake id, lead ids and request.
struct Pending {
    intake: i64,
    ids: Vec<String>,
    request: LeadsRequest,
    kind: String,
    received: Option<Instant>,
    done: Option<oneshot::Sender<Reply>>,
}

fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    Reply {
        status,
        body: serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
    }
}

impl Worker<'_> {
    /// Logs, processes and answers one batch of requests.
    fn batch(&mut self, store: &mut Store, jobs: Vec<Job>) {
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
            let new = match &l {
                Logged::New(id) => Some(*id),
                Logged::Seen(_) => None,
            };
            let _ = j.logged.send(Ok(l));
            if let Some(intake) = new {
                pending.push(Pending {
                    intake,
                    ids,
                    request: j.request,
                    kind: j.kind.to_string(),
                    received: Some(j.received),
                    done: Some(j.done),
                });
            }
        }
        let mut new_events = Vec::new();
        for j in events {
            let Some(l) = logged.next() else { break };
            let new = match &l {
                Logged::New(id) => Some(*id),
                Logged::Seen(_) => None,
            };
            let _ = j.logged.send(Ok(l));
            if let Some(intake) = new {
                new_events.push((intake, j.events, Some(j.done)));
            }
        }
        if !pending.is_empty() {
            self.leads(store, pending);
        }
        for (intake, evs, done) in new_events {
            let reply = match self.events(store, intake, &evs) {
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
        }
    }

    /// Processes logged leads requests and answers them.
    fn leads(&mut self, store: &mut Store, mut pending: Vec<Pending>) {
        let result = self.process(store, &mut pending);
        match result {
            Ok(replies) => {
                let done: Vec<(i64, u16, &str)> = pending
                    .iter()
                    .zip(&replies)
                    .map(|(p, r)| (p.intake, r.status, r.body.as_str()))
                    .collect();
                if let Err(e) = store.finish_intake(&done, crate::run::now_ms()) {
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
                        let _ = done.send(error_reply(
                            503,
                            "service.unavailable",
                            "the leads were accepted and logged but could not be processed now; they will be processed when the pipeline recovers (see the status URL)",
                        ));
                    }
                }
            }
        }
    }

    /// Runs leads through the pipeline, scores them and queues handoffs;
    /// one reply per request.
    fn process(&mut self, store: &mut Store, pending: &mut [Pending]) -> Result<Vec<Reply>> {
        // Leads already recorded (a request picked up again) are not
        // processed twice.
        let mut recorded: BTreeSet<String> = BTreeSet::new();
        for p in pending.iter() {
            if p.received.is_none() {
                recorded.extend(store.recorded(&p.ids)?);
            }
        }
        // Group by source: the pipeline takes one default source per call.
        let mut results: Vec<Vec<Option<Processed>>> = pending
            .iter()
            .map(|p| (0..p.ids.len()).map(|_| None).collect())
            .collect();
        let mut sources: Vec<String> = pending.iter().map(|p| p.request.source.clone()).collect();
        sources.sort();
        sources.dedup();
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
                    if recorded.contains(id) {
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
            let processed = self.engine.process(store, records, &ids, source)?;
            for ((pi, li), p) in places.into_iter().zip(processed) {
                results[pi][li] = Some(p);
            }
        }
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
            crate::score::rescore(
                self.config,
                store,
                scoring,
                Some(&new_ids),
                "intake",
                &mut self.pipeline,
                now,
            )?;
        }
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
        self.count(&results);
        let mut replies = Vec::with_capacity(pending.len());
        for (p, rs) in pending.iter().zip(results) {
            replies.push(self.reply(store, p, rs, &scores)?);
        }
        Ok(replies)
    }

    fn count(&self, results: &[Vec<Option<Processed>>]) {
        let m = &self.shared.metrics;
        for r in results.iter().flatten().flatten() {
            m.leads
                .get_or_create(&super::metrics::Tenant {
                    tenant: self.tenant.to_string(),
                })
                .inc();
            let outcome = match r.validation {
                Status::Accepted | Status::Duplicate => "pass",
                Status::Review => "review",
                Status::Rejected => "reject",
                Status::Exception => "exception",
            };
            m.count(&m.validation, self.tenant, outcome);
            if let Some(d) = &r.matched {
                m.count(&m.duplicates, self.tenant, d);
            }
            if let Some(e) = &r.enrichment {
                m.count(&m.enrichment, self.tenant, e);
            }
        }
    }

    /// The answer to one request.
    fn reply(
        &self,
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
                        .lead_state(self.tenant, id)?
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
    fn events(&mut self, store: &mut Store, intake: i64, events: &[String]) -> Result<Reply> {
        let now = crate::run::now_ms();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (i, raw) in events.iter().enumerate() {
            match crate::events::parse(i as u64 + 1, raw, &self.config.score.pages, now) {
                Ok(e) => good.push(e),
                Err(r) => bad.push(r),
            }
        }
        let inserted = store.insert_events(self.tenant, &good, now)?;
        store.reject_events(self.tenant, &format!("request {intake}"), &bad, now)?;
        let mut touched = inserted.leads.clone();
        touched.extend(store.attach_pending(self.tenant)?);
        if let Some(scoring) = self.scoring.as_mut()
            && !touched.is_empty()
        {
            crate::score::rescore(
                self.config,
                store,
                scoring,
                Some(&touched),
                "events",
                &mut self.pipeline,
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

    /// Processes requests logged but not finished.
    fn recover(&mut self, store: &mut Store) -> Result<()> {
        loop {
            let rows = store.pending_intake(self.tenant, 64)?;
            if rows.is_empty() {
                return Ok(());
            }
            let n = rows.len();
            tracing::info!(tenant = %self.tenant, requests = n, "processing requests left unfinished");
            let mut pending = Vec::new();
            for row in rows {
                if row.kind == "events" {
                    let events: Vec<String> = serde_json::from_str(&row.body).unwrap_or_default();
                    self.events(store, row.id, &events)?;
                    continue;
                }
                match unpack(&row) {
                    Ok(p) => pending.push(p),
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
            if !pending.is_empty() {
                let replies = self.process(store, &mut pending)?;
                let done: Vec<(i64, u16, &str)> = pending
                    .iter()
                    .zip(&replies)
                    .map(|(p, r)| (p.intake, r.status, r.body.as_str()))
                    .collect();
                store.finish_intake(&done, crate::run::now_ms())?;
            }
            if n < 64 {
                return Ok(());
            }
        }
    }
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
    })
}
