//! The back thread of a tenant's pipeline, the tenant's only writer: logs
//! requests, records and scores the prepared leads, queues handoffs, and
//! answers, one store transaction a batch.

use super::*;

impl Back<'_> {
    /// Logs, records and answers what the front hands over, until it
    /// stops.
    pub(super) fn serve(&mut self, rx: &Receiver<ToBack>, acks: &Sender<Ack>) {
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
                    match log(
                        &mut self.store,
                        self.steps.tenant,
                        crate::claim(&self.steps.config.serve),
                        &logs,
                    ) {
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
    pub(super) fn restart_log(&mut self) {
        let started = Instant::now();
        let restarted = self.store.restart_long_log(&self.steps.shared.wal);
        match restarted {
            Ok(None) => {}
            Ok(Some(restarted)) => tracing::debug!(
                tenant = %self.steps.tenant,
                ms = started.elapsed().as_secs_f64() * 1e3,
                restarted,
                "write-ahead log restart"
            ),
            Err(e) => {
                tracing::warn!(tenant = %self.steps.tenant, error = %e, "starting the write-ahead log over failed")
            }
        }
    }

    /// Tells each request's handler how it was logged, and keeps the
    /// intake ids of those the front prepares.
    pub(super) fn answer_logs(&mut self, logs: Vec<ToLog>, done: Vec<Logged>) {
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
    pub(super) fn resolve(&mut self, work: Work) -> Option<Work> {
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
    pub(super) fn work(
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
                            .get_or_create(&crate::metrics::Tenant {
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
                    log(
                        &mut self.store,
                        tenant,
                        crate::claim(&self.steps.config.serve),
                        &logs,
                    )
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
pub(super) fn transact(
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
        log(
            &mut batch,
            steps.tenant,
            crate::claim(&steps.config.serve),
            logs,
        )?
    };
    batch.commit()?;
    Ok((replies, logged))
}

impl Steps<'_> {
    /// Records, scores and answers `work` in `store`'s open batch: one
    /// reply per request.
    pub(super) fn apply(&mut self, store: &mut Store, work: Work) -> Result<Vec<Reply>> {
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
    pub(super) fn process(
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
        // What routing needs of the leads it will route, taken before
        // scoring takes the recorded leads (the grade is added after):
        // not read back.
        let mut held: HashMap<String, leadgate_pipeline::assign::Facts> = HashMap::new();
        if self.assigner.is_some() {
            for p in results.iter().flatten().flatten() {
                if p.status == Status::Accepted
                    && self
                        .config
                        .crm
                        .handoff
                        .iter()
                        .any(|s| s == p.state.as_str())
                    && let Some(r) = &p.recorded
                {
                    let facts = leadgate_pipeline::assign::facts_of(
                        self.config,
                        &p.lead_id,
                        &r.lead,
                        &r.attributes,
                        None,
                    );
                    held.insert(p.lead_id.clone(), facts);
                }
            }
        }
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
        // The workflow rules see each lead recorded here once the pipeline
        // is done with it (the background thread runs them).
        if !self.config.rules.files.is_empty() {
            let recorded: Vec<String> = results
                .iter()
                .flatten()
                .flatten()
                .filter(|p| matches!(p.status, Status::Accepted | Status::Review))
                .map(|p| p.lead_id.clone())
                .collect();
            leadgate_pipeline::rules::queue(
                self.config,
                store,
                &recorded,
                leadgate_pipeline::rules::cause::LEAD,
                now,
            )?;
            // An uncertain match waiting for review: a duplicate conflict,
            // keyed by its request (a request processed again after a
            // restart signals nothing new).
            for (p, rs) in pending.iter().zip(&results) {
                for r in rs.iter().flatten() {
                    if r.matched == Some("review") {
                        leadgate_pipeline::rules::queue_signal(
                            self.config,
                            store,
                            &r.lead_id,
                            leadgate_pipeline::rules::cause::DUPLICATE_CONFLICT,
                            &format!("request-{}", p.intake),
                            now,
                        )?;
                    }
                }
            }
        }
        let all_ids: Vec<String> = pending.iter().flat_map(|p| p.ids.clone()).collect();
        let scores = store.score_details(&all_ids)?;
        // Handoffs: qualified leads to the CRM; a lead that came from the
        // CRM gets its result written back. With routing on, a qualified
        // lead is handed off once it has an owner.
        let target = self.config.crm.target;
        let mut to_route: Vec<(String, bool)> = Vec::new();
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
                let qualified = status == "accepted"
                    && state
                        .as_ref()
                        .is_some_and(|s| self.config.crm.handoff.contains(s));
                // Enrichment failed on a lead that needed it: the lead stops
                // short of qualification, and someone is told.
                if let Some(r) = &rs[i]
                    && status == "accepted"
                    && !qualified
                    && matches!(r.enrichment, Some("component failed" | "failed"))
                {
                    leadgate_pipeline::assign::raise(
                        store,
                        self.tenant,
                        "enrich.failed",
                        id,
                        &[("qualification", r.state.as_str())],
                        &format!(
                            "lead {id}: enrichment failed ({}), so it is {} and was not handed off; `leadgate enrich` tries again",
                            r.enrichment.unwrap_or_default(),
                            r.state.as_str()
                        ),
                        now,
                    )?;
                    leadgate_pipeline::rules::queue_signal(
                        self.config,
                        store,
                        id,
                        leadgate_pipeline::rules::cause::ENRICHMENT_FAILED,
                        &format!("request-{}", p.intake),
                        now,
                    )?;
                }
                if qualified && self.assigner.is_some() {
                    // Recorded before (its request picked up again): it may
                    // have been assigned then.
                    to_route.push((id.clone(), p.recorded.contains(id)));
                }
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
                } else if qualified && self.assigner.is_none() {
                    store.enqueue_handoff(self.tenant, id, target.as_str(), "create", None, now)?;
                }
            }
        }
        if let Some(assigner) = self.assigner.as_mut()
            && !to_route.is_empty()
        {
            // A lead assigned before (its request picked up again) keeps
            // its assignment.
            let mut fresh = Vec::with_capacity(to_route.len());
            for (lead, before) in to_route {
                if before && store.assignment(self.tenant, &lead)?.is_some() {
                    continue;
                }
                let facts = match held.remove(&lead) {
                    Some(mut facts) => {
                        facts.subject.grade = scores
                            .get(&lead)
                            .and_then(|d| leadgate_pipeline::assign::grade_in(d));
                        facts
                    }
                    None => leadgate_pipeline::assign::stored_facts(self.config, store, &lead)?,
                };
                fresh.push((facts, Vec::new()));
            }
            let routed = assigner.assign_known(self.config, store, fresh, "routing", now)?;
            for r in &routed {
                self.shared
                    .metrics
                    .count_assignment(self.tenant, &r.decision);
                if r.decision.rep.is_some() && target != Target::None {
                    let crm_id = pending
                        .iter()
                        .find(|p| p.ids.contains(&r.lead_id))
                        .and_then(|p| p.request.crm_id.as_deref());
                    if crm_id.is_none() {
                        store.enqueue_handoff(
                            self.tenant,
                            &r.lead_id,
                            target.as_str(),
                            "create",
                            None,
                            now,
                        )?;
                    }
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
pub(super) fn more_logs(rx: &Receiver<ToBack>, next: &mut Option<ToBack>, logs: &mut Vec<ToLog>) {
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
pub(super) fn log(
    store: &mut Store,
    tenant: &str,
    claim: leadgate_store::service::Claim<'_>,
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
    store.log_intake(&requests, claim, crate::clock::now_ms())
}

/// Tells the handlers their requests could not be logged.
pub(super) fn fail_logs(tenant: &str, logs: Vec<ToLog>, e: &dyn std::fmt::Display) {
    let msg = format!("the store cannot take the request: {e}");
    tracing::error!(tenant = %tenant, error = %msg, "logging requests failed");
    for l in logs {
        let _ = l.logged.send(Err(msg.clone()));
    }
}

pub(super) fn count(shared: &Shared, tenant: &str, results: &[Vec<Option<Processed>>]) {
    let m = &shared.metrics;
    for r in results.iter().flatten().flatten() {
        m.leads
            .get_or_create(&crate::metrics::Tenant {
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
