//! The front thread of a tenant's pipeline: batches requests that arrive
//! together, prepares the leads of those whose key is new (validate, enrich,
//! match, classify), and picks up requests logged but not finished.

use super::*;

impl Front<'_> {
    /// Takes requests until the queue closes.
    pub(super) fn run(
        &mut self,
        store: &mut Store,
        rx: &Receiver<Job>,
        back: &Sender<ToBack>,
        acks: &Receiver<Ack>,
    ) -> Result<()> {
        let mut last_checkpoint = Instant::now();
        let mut last_idle = Instant::now();
        let mut last_takeover = Instant::now();
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
                        last_takeover = Instant::now();
                        match self.recover(store, true) {
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
            // Busy: requests another host left unfinished (its claim ran
            // out) are taken over all the same; this host's own wait for a
            // quiet moment, as some may be in flight.
            if last_takeover.elapsed() >= IDLE_RECOVERY {
                last_takeover = Instant::now();
                match self.recover(store, false) {
                    Ok(Some(work)) => self.send(back, acks, work)?,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(tenant = %self.tenant, error = %format!("{e:#}"), "taking over unfinished requests failed")
                    }
                }
            }
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

    pub(super) fn ack(&mut self, a: Ack) {
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
    pub(super) fn settle(&mut self, acks: &Receiver<Ack>, wait: bool) {
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
    pub(super) fn send(
        &mut self,
        back: &Sender<ToBack>,
        acks: &Receiver<Ack>,
        work: Work,
    ) -> Result<()> {
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
    pub(super) fn batch(
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
    pub(super) fn prepare(
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

    /// The oldest requests logged but not finished, as work for the back:
    /// another host's whose claim ran out, and with `own` this host's.
    pub(super) fn recover(&mut self, store: &mut Store, own: bool) -> Result<Option<Work>> {
        // Only the requests no other host is processing: unclaimed, left by
        // a host that stopped (its claim ran out), or this host's own.
        let rows = store.claim_pending_intake(
            self.tenant,
            crate::claim(&self.config.serve),
            own,
            crate::clock::now_ms(),
            64,
        )?;
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
