//! `leadgate serve`: the HTTP service — lead and event intake, form
//! intake, signed CRM webhooks, the review queue, the CRM outbox, metrics,
//! health and the OpenAPI document — and the work it does in the
//! background, which the CLI runs too: CRM handoff and the review queue's
//! SLA. It runs leads through the pipeline crate and knows nothing of the
//! CLI.
//!
//! - [`worker`]: one pipeline thread per tenant; requests are logged
//!   durably under their idempotency key before anything else happens.
//! - [`auth`]: API keys (hashed) and per-tenant rate limits.
//! - [`metrics`]: the Prometheus metrics served at `/metrics`.
//! - [`handoff`]: the CRM outbox's delivery, retries and dead letters.
//! - [`review`]: the review queue, its SLA and escalations.
//! - [`routing`]: reps, routing a lead (or asking who would get it), first
//!   touches; the response-SLA timers fire in the background thread.
//! - `[serve]`, `[crm]`, `[review]` are read by the pipeline's
//!   configuration (`leadgate_pipeline::config::serve`).
//! - [`listener`]: connections, their per-client limit and header timeout.
//! - `openapi.json`: the API's contract, served at `/openapi.json`.
//!
//! Besides the pipelines, two background threads: the CRM handoff worker
//! ([`crate::handoff`]) and the review SLA scheduler ([`crate::review::tick`]).

pub mod auth;
pub mod handoff;
mod listener;
pub mod metrics;
pub mod notifier;
pub mod review;
mod routes;
pub mod routing;
pub mod rule_actions;
pub mod worker;

use leadgate_pipeline::{clock, config, engine as pipeline, events, logging, matching, score};

use crate::config::Config;
use anyhow::{Context, Result, bail};
use leadgate_store::Store;
use leadgate_store::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

/// A tenant as the HTTP layer sees it.
pub struct Tenant {
    pub config: Arc<Config>,
    pub jobs: SyncSender<worker::Job>,
    /// Webhook secrets, read from the environment at start.
    pub hubspot_secret: Option<Vec<u8>>,
    pub webhook_secret: Option<Vec<u8>>,
    pub crm_token: Option<String>,
    /// The sequence webhook's signing secret (`[rules] sequence_token_env`).
    pub sequence_token: Option<String>,
}

type Limiter = governor::RateLimiter<
    String,
    governor::state::keyed::DashMapStateStore<String>,
    governor::clock::DefaultClock,
>;

/// State every handler shares.
pub struct Shared {
    pub tenants: HashMap<String, Tenant>,
    pub metrics: metrics::Metrics,
    pub keys: auth::Keys,
    /// Store connections for reads and small writes from handlers
    /// (`[serve] store_connections` of them at most).
    pub reader: leadgate_store::Pool,
    /// The connection `/metrics` counts backlogs with. Those counts read
    /// whole tables (the review queue, the outbox), so a scrape has a
    /// connection of its own and never holds up the handlers' reads —
    /// an API key's lookup in the store among them.
    gauges: Mutex<Store>,
    pub db: String,
    limiters: HashMap<String, Limiter>,
    ready: Mutex<HashSet<String>>,
    chains: Mutex<HashMap<String, Arc<leadgate_providers::Chain>>>,
    pub stopping: AtomicBool,
    /// The write-ahead log's length in pages at the last checkpoint.
    pub wal: leadgate_store::WalLength,
    /// Tenants with form requests logged before idempotency keys were
    /// scoped to their route: their form routes look those up too.
    pub legacy_forms: HashSet<String>,
    /// How long a request's body may take to arrive (`[serve]
    /// body_timeout_ms`, the process's own).
    pub body_timeout: std::time::Duration,
}

impl Shared {
    pub fn set_ready(&self, tenant: &str) {
        if let Ok(mut r) = self.ready.lock() {
            r.insert(tenant.to_string());
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
            .lock()
            .map(|r| r.len() == self.tenants.len())
            .unwrap_or(false)
    }

    pub fn set_chain(&self, tenant: &str, chain: Arc<leadgate_providers::Chain>) {
        if let Ok(mut c) = self.chains.lock() {
            c.insert(tenant.to_string(), chain);
        }
    }

    /// Takes one token of `tenant`'s bucket; `Err` holds the seconds to wait.
    pub fn rate_limit(&self, tenant: &str) -> Result<(), u64> {
        let Some(l) = self.limiters.get(tenant) else {
            return Ok(());
        };
        l.check_key(&tenant.to_string()).map_err(|not_until| {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_secs().max(1)
        })
    }

    /// Sets the gauges read from the store, then encodes every metric.
    ///
    /// Routing tenants add each rep's load and share, which `leadgate reps
    /// stats` shows too.
    pub fn render_metrics(&self) -> String {
        let now = crate::clock::now_ms();
        let m = &self.metrics;
        if let Ok(store) = self.gauges.lock() {
            for (name, t) in &self.tenants {
                let Ok(b) = store.backlog(name, t.config.review.escalate_ms(), now) else {
                    continue;
                };
                let label = metrics::Tenant {
                    tenant: name.clone(),
                };
                m.review_open.get_or_create(&label).set(b.review_open);
                m.review_escalated
                    .get_or_create(&label)
                    .set(b.review_escalated);
                m.review_overdue.get_or_create(&label).set(b.review_overdue);
                let adherence = if b.review_decided > 0 {
                    b.review_decided_within_sla as f64 / b.review_decided as f64
                } else {
                    1.0
                };
                m.review_sla_adherence.get_or_create(&label).set(adherence);
                m.intake_pending.get_or_create(&label).set(b.intake_pending);
                for (state, n) in [
                    ("pending", b.outbox_pending),
                    ("delivered", b.outbox_delivered),
                    ("failed", b.outbox_failed),
                    ("dead", b.outbox_dead),
                ] {
                    m.outbox
                        .get_or_create(&metrics::Outcome {
                            tenant: name.clone(),
                            outcome: state.into(),
                        })
                        .set(n);
                }
                let finished = b.outbox_delivered + b.outbox_failed + b.outbox_dead;
                let rate = if finished > 0 {
                    (b.outbox_failed + b.outbox_dead) as f64 / finished as f64
                } else {
                    0.0
                };
                m.handoff_failure_rate.get_or_create(&label).set(rate);
                if t.config.routing.enabled {
                    rep_gauges(m, &t.config, &store);
                }
                if t.config.alerts.enabled()
                    && let Ok(b) = store.notify_backlog(name)
                {
                    for (what, n) in [
                        ("new_alerts", b.new_alerts),
                        ("groups_waiting", b.groups_waiting),
                        ("pending", b.pending),
                        ("dead", b.dead),
                    ] {
                        m.notify_backlog
                            .get_or_create(&metrics::Outcome {
                                tenant: name.clone(),
                                outcome: what.into(),
                            })
                            .set(n);
                    }
                }
            }
        }
        if let Ok(chains) = self.chains.lock() {
            for (tenant, chain) in chains.iter() {
                for s in chain.stats() {
                    for (q, v) in [
                        ("0.5", s.latency_ms.p50),
                        ("0.9", s.latency_ms.p90),
                        ("0.99", s.latency_ms.p99),
                    ] {
                        m.enrichment_latency_ms
                            .get_or_create(&metrics::Provider {
                                tenant: tenant.clone(),
                                provider: s.provider.clone(),
                                quantile: q.into(),
                            })
                            .set(v);
                    }
                    if let Some(rate) = s.success_rate() {
                        m.enrichment_success
                            .get_or_create(&metrics::Outcome {
                                tenant: tenant.clone(),
                                outcome: s.provider.clone(),
                            })
                            .set(rate);
                    }
                }
            }
        }
        m.encode()
    }
}

/// `leadgate serve` options.
pub struct Options {
    pub listen: Option<String>,
    pub db: String,
    /// Run without the CRM handoff worker (handoffs wait in the outbox).
    pub no_handoff: bool,
    pub json_logs: bool,
}

/// Loads every tenant: the main configuration's and those it lists.
pub fn tenants(config: &Config) -> Result<Vec<Config>> {
    let mut all = vec![config.clone()];
    for path in &config.serve.tenants {
        let p = config.base.join(path);
        let c = Config::load(Some(&p))
            .with_context(|| format!("serve.tenants: cannot load {}", p.display()))?;
        if all.iter().any(|o| o.tenant == c.tenant) {
            bail!(
                "serve.tenants: tenant '{}' is configured twice ({})",
                c.tenant,
                p.display()
            );
        }
        all.push(c);
    }
    Ok(all)
}

fn secret(env: &str) -> Option<Vec<u8>> {
    if env.is_empty() {
        return None;
    }
    std::env::var(env)
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::into_bytes)
}

/// Runs the service until interrupted.
pub fn serve(config: &Config, opts: &Options) -> Result<()> {
    crate::logging::init("info", opts.json_logs);
    let listen = opts
        .listen
        .clone()
        .unwrap_or_else(|| config.serve.listen.clone());
    let configs = tenants(config)?;
    // The store is created and migrated before anything listens.
    let reader =
        leadgate_store::Pool::open(&opts.db, config.serve.store_connections, Some(CACHE_KIB))?;
    let mut tenants = HashMap::new();
    let mut receivers = Vec::new();
    let mut limiters = HashMap::new();
    for c in configs {
        let c = Arc::new(c);
        let (tx, rx) = std::sync::mpsc::sync_channel(c.serve.queue_capacity);
        let quota = governor::Quota::per_second(
            std::num::NonZeroU32::new(c.serve.rate_limit_per_second)
                .context("serve.rate_limit_per_second must be at least 1")?,
        )
        .allow_burst(
            std::num::NonZeroU32::new(c.serve.rate_limit_burst)
                .context("serve.rate_limit_burst must be at least 1")?,
        );
        limiters.insert(c.tenant.clone(), governor::RateLimiter::dashmap(quota));
        tenants.insert(
            c.tenant.clone(),
            Tenant {
                config: c.clone(),
                jobs: tx,
                hubspot_secret: secret(&c.serve.hubspot_secret_env),
                webhook_secret: secret(&c.serve.webhook_secret_env),
                crm_token: secret(&c.crm.token_env).and_then(|s| String::from_utf8(s).ok()),
                sequence_token: secret(&c.rules.sequence_token_env)
                    .and_then(|s| String::from_utf8(s).ok()),
            },
        );
        receivers.push((c, rx));
    }
    let legacy_forms = reader
        .get()?
        .tenants_with_legacy_form_keys()
        .context("cannot read the intake log")?
        .into_iter()
        .collect();
    let shared = Arc::new(Shared {
        tenants,
        metrics: metrics::Metrics::new(),
        keys: auth::Keys::default(),
        reader,
        gauges: Mutex::new(open_store(&opts.db)?),
        db: opts.db.clone(),
        limiters,
        ready: Mutex::new(HashSet::new()),
        chains: Mutex::new(HashMap::new()),
        stopping: AtomicBool::new(false),
        wal: leadgate_store::WalLength::default(),
        legacy_forms,
        body_timeout: std::time::Duration::from_millis(config.serve.body_timeout_ms),
    });
    let no_keys = shared
        .reader
        .get()
        .ok()
        .and_then(|s| s.api_keys(None).ok())
        .is_some_and(|k| k.is_empty());
    if no_keys {
        tracing::warn!(
            "no API keys exist yet: `leadgate keys create --tenant NAME` makes one; every /v1 request is refused until then"
        );
    }
    let mut workers = Vec::new();
    for (c, rx) in receivers {
        let shared = shared.clone();
        let db = opts.db.clone();
        let name = c.tenant.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("pipeline-{name}"))
                .spawn(move || {
                    if let Err(e) = worker::run(c, db, shared.clone(), rx) {
                        tracing::error!(tenant = %name, error = %format!("{e:#}"), "the tenant's pipeline stopped");
                        shared.stopping.store(true, Ordering::SeqCst);
                    }
                })
                .context("cannot start a pipeline thread")?,
        );
    }
    let background = {
        let shared = shared.clone();
        let handoff = !opts.no_handoff;
        std::thread::Builder::new()
            .name("background".into())
            .spawn(move || background(&shared, handoff))
            .context("cannot start the background thread")?
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // The process's own `[serve]`, as `listen` is.
    let http_threads = config.serve.http_threads(cores);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(http_threads)
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let app = routes::router(shared.clone());
    let limits = listener::Limits {
        header_timeout: std::time::Duration::from_millis(config.serve.header_timeout_ms),
        per_client: config.serve.max_connections_per_client,
    };
    let http_shared = shared.clone();
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("no local address")?;
        tracing::info!(address = %addr, "listening");
        // Tests and scripts read the address from standard error.
        eprintln!("leadgate serve: listening on http://{addr}");
        listener::serve(listener, app, http_shared, limits, shutdown_signal()).await;
        anyhow::Ok(())
    });
    shared.stopping.store(true, Ordering::SeqCst);
    // Closing the queues lets each pipeline finish what it has and stop.
    drop(runtime);
    let shared_tenants: Vec<String> = shared.tenants.keys().cloned().collect();
    drop(shared);
    for w in workers {
        let _ = w.join();
    }
    let _ = background.join();
    tracing::info!(tenants = ?shared_tenants, "stopped");
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// The name this host claims shared work under (logged requests, due
/// handoffs): `HOSTNAME`, else the kernel's host name. Read once per
/// process.
pub fn instance() -> &'static str {
    leadgate_pipeline::pass::instance()
}

/// This host's claims, with the tenant's lease (`[serve] claim_lease_ms`).
pub fn claim(serve: &crate::config::serve::ServeConfig) -> leadgate_store::service::Claim<'static> {
    leadgate_store::service::Claim {
        holder: instance(),
        lease_ms: i64::try_from(serve.claim_lease_ms).unwrap_or(i64::MAX),
    }
}

/// The page cache of each of the service's long-lived connections, in
/// KiB. The recording thread commits many small transactions: each one
/// empties the others' caches, and each that split a page walks its own
/// whole cache ([`Store::set_cache_kib`]): with the store's large default
/// cache that walk grows as the cache fills. Reads that miss come from the
/// memory-mapped file or the log, a copy each.
pub(crate) const CACHE_KIB: i64 = 8 * 1024;

/// Opens the store for one of the service's long-lived connections, with
/// its page cache at [`CACHE_KIB`].
pub(crate) fn open_store(db: &str) -> Result<Store, leadgate_store::StoreError> {
    let store = Store::open(db)?;
    store.set_cache_kib(CACHE_KIB)?;
    Ok(store)
}

/// The handoff worker, the SLA scheduler and checkpoints, until the
/// service stops.
/// Fires `c`'s due response-SLA and routing timers (claimed, so hosts
/// sharing the store fire each once).
fn fire_timers(
    shared: &Shared,
    c: &Config,
    store: &mut Store,
    assigners: &mut HashMap<String, leadgate_pipeline::assign::Assigner>,
) {
    let now = crate::clock::now_ms();
    let assigner = match assigners.entry(c.tenant.clone()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            match leadgate_pipeline::assign::Assigner::open(c, store, now) {
                Ok(a) => v.insert(a),
                Err(e) => {
                    tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "cannot read the reps; routing timers wait");
                    return;
                }
            }
        }
    };
    let claim = crate::claim(&c.serve);
    match leadgate_pipeline::assign::fire_due(c, store, assigner, claim.holder, claim.lease_ms, now)
    {
        Ok(f) if f.any() => {
            tracing::warn!(tenant = %c.tenant, reassigned = f.reassigned, escalated = f.escalated,
                routed = f.routed, waiting = f.waiting, "routing timers");
            for (step, n) in [
                ("sla_reassigned", f.reassigned),
                ("sla_escalated", f.escalated),
            ] {
                if n > 0 {
                    shared
                        .metrics
                        .assignments
                        .get_or_create(&metrics::Outcome {
                            tenant: c.tenant.clone(),
                            outcome: step.into(),
                        })
                        .inc_by(n);
                }
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "routing timers failed")
        }
    }
}

fn background(shared: &Shared, handoff: bool) {
    let mut store = match open_store(&shared.db) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "the background thread cannot open the store");
            return;
        }
    };
    let agent = crate::handoff::agent();
    let every = shared
        .tenants
        .values()
        .map(|t| t.config.serve.tick_seconds.max(1))
        .min()
        .unwrap_or(60);
    // How often the log is copied back (`[serve] checkpoint_ms`): often,
    // so that what is left when a recording thread starts the log over is
    // little. One store, so the shortest any tenant asks for.
    let checkpoint_every = std::time::Duration::from_millis(
        shared
            .tenants
            .values()
            .map(|t| t.config.serve.checkpoint_ms)
            .min()
            .unwrap_or(100),
    );
    let mut next_tick = std::time::Instant::now();
    let mut last_checkpoint = std::time::Instant::now();
    // Each tenant's notifier, run about once a second (Slack's pace).
    let notifiers: HashMap<String, notifier::Notifier> = shared
        .tenants
        .values()
        .filter_map(|t| match notifier::Notifier::open(&t.config) {
            Ok(n) => n.map(|n| (t.config.tenant.clone(), n)),
            Err(e) => {
                tracing::error!(tenant = %t.config.tenant, error = %format!("{e:#}"), "the notifier cannot start; alerts stay in the store");
                None
            }
        })
        .collect();
    let mut next_notify = std::time::Instant::now();
    // Each routing tenant's router, for the timers it fires.
    let mut assigners: HashMap<String, leadgate_pipeline::assign::Assigner> = HashMap::new();
    // Each tenant's workflow rules, opened when first run.
    let mut runners: HashMap<String, Runners> = HashMap::new();
    while !shared.stopping.load(Ordering::SeqCst) {
        // The pipelines leave copying the log back to this thread, and
        // having a long one start over (`Store::checkpoint_round`); their
        // recording threads force that only past twice the length.
        if last_checkpoint.elapsed() >= checkpoint_every {
            match store.checkpoint_round(&shared.wal) {
                Ok(r) if r.restarted => tracing::debug!(
                    ms = r.elapsed.as_secs_f64() * 1e3,
                    checkpoints = r.checkpoints,
                    "write-ahead log started over"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
            last_checkpoint = std::time::Instant::now();
        }
        let tick = std::time::Instant::now() >= next_tick;
        if tick {
            next_tick = std::time::Instant::now() + std::time::Duration::from_secs(every);
        }
        let mut busy = false;
        let notify = std::time::Instant::now() >= next_notify;
        if notify {
            next_notify = std::time::Instant::now() + std::time::Duration::from_secs(1);
        }
        for t in shared.tenants.values() {
            let c = &t.config;
            if notify && let Some(n) = notifiers.get(&c.tenant) {
                notify_pass(shared, c, n, &mut store);
            }
            if tick {
                match crate::review::tick(c, &mut store, crate::clock::now_ms()) {
                    Ok(r) if r.escalated + r.fallbacks > 0 => {
                        tracing::warn!(tenant = %c.tenant, escalated = r.escalated, fallbacks = r.fallbacks, "review SLA");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "review SLA tick failed")
                    }
                }
            }
            if tick && c.routing.enabled {
                fire_timers(shared, c, &mut store, &mut assigners);
            }
            if !c.rules.files.is_empty() {
                busy |= rules_pass(t, &mut store, &mut runners, &agent);
            }
            if !handoff {
                continue;
            }
            match crate::handoff::deliver_due(
                c,
                &mut store,
                &agent,
                t.crm_token.as_deref(),
                crate::clock::now_ms(),
            ) {
                Ok(r) => {
                    let m = &shared.metrics;
                    for (outcome, n) in [
                        ("delivered", r.delivered),
                        ("retry", r.retried),
                        ("failed", r.failed),
                        ("dead", r.dead),
                    ] {
                        if n > 0 {
                            m.handoffs
                                .get_or_create(&metrics::Outcome {
                                    tenant: c.tenant.clone(),
                                    outcome: outcome.into(),
                                })
                                .inc_by(n);
                        }
                    }
                    busy |= r.attempted() > 0;
                }
                Err(e) => {
                    tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "CRM handoff failed")
                }
            }
        }
        if !busy {
            // Handoffs and ticks are looked at every 100 ms at most, however
            // far apart the checkpoints are.
            std::thread::sleep(checkpoint_every.min(std::time::Duration::from_millis(100)));
        }
    }
}

/// A tenant's rules runner, or when opening it failed (tried again a
/// minute later).
enum Runners {
    /// Running, with when its documents were last looked at.
    Open(leadgate_pipeline::rules::Runner, std::time::Instant),
    Failed(std::time::Instant),
}

/// How often the service looks whether the rules documents changed.
const RULES_RELOAD: std::time::Duration = std::time::Duration::from_secs(2);

/// Leads run through the rules, and actions carried out, per pass.
const RULES_PASS: u64 = 2_000;
const ACTIONS_PASS: usize = 200;

/// One pass of `t`'s workflow rules: the queued leads and due timers run,
/// then the pending actions carried out (those calling out delivered).
/// True when it found work.
fn rules_pass(
    t: &Tenant,
    store: &mut Store,
    runners: &mut HashMap<String, Runners>,
    agent: &ureq::Agent,
) -> bool {
    let c = &t.config;
    let now = crate::clock::now_ms();
    let retry = match runners.get_mut(&c.tenant) {
        None => true,
        Some(Runners::Failed(at)) => at.elapsed() >= std::time::Duration::from_secs(60),
        Some(Runners::Open(runner, checked)) if checked.elapsed() >= RULES_RELOAD => {
            *checked = std::time::Instant::now();
            if runner.documents_changed() {
                // Read again: new versions take over; a document with
                // mistakes, or a version changed in place, is refused
                // and the rules running go on.
                match leadgate_pipeline::rules::Runner::open(c, store, now) {
                    Ok(Some(r)) => {
                        tracing::info!(tenant = %c.tenant, rules = r.rules().rules.len(), "workflow rules read again");
                        *runner = r;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "the changed workflow rules are refused; the rules read before go on");
                        // Not again until they change again.
                        runner.mark_read();
                    }
                }
            }
            false
        }
        Some(Runners::Open(..)) => false,
    };
    if retry {
        let opened = match leadgate_pipeline::rules::Runner::open(c, store, now) {
            Ok(Some(r)) => Runners::Open(r, std::time::Instant::now()),
            Ok(None) => return false,
            Err(e) => {
                tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "the workflow rules cannot start; leads wait in their queue");
                Runners::Failed(std::time::Instant::now())
            }
        };
        runners.insert(c.tenant.clone(), opened);
    }
    let Some(Runners::Open(runner, _)) = runners.get(&c.tenant) else {
        return false;
    };
    let claim = crate::claim(&c.serve);
    let pass = match runner.run(store, claim, now, Some(RULES_PASS)) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "workflow rules pass failed");
            return false;
        }
    };
    let mut delivery = crate::rule_actions::Delivery {
        agent,
        crm_token: t.crm_token.as_deref(),
        sequence_token: t.sequence_token.as_deref(),
    };
    let performed = match runner.perform(c, store, claim, now, ACTIONS_PASS, Some(&mut delivery)) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "workflow rule actions failed");
            return pass.any();
        }
    };
    if pass.executions > 0 || performed.done + performed.failed > 0 {
        tracing::info!(tenant = %c.tenant, leads = pass.leads, executions = pass.executions,
            repeated = pass.repeated, due = pass.due, done = performed.done,
            failed = performed.failed, retried = performed.retried, "workflow rules");
    }
    pass.any() || performed.done + performed.failed > 0
}

/// One notifier pass for `c`, counted in the metrics.
fn notify_pass(shared: &Shared, c: &Config, n: &notifier::Notifier, store: &mut Store) {
    match n.pass(c, store, crate::clock::now_ms()) {
        Ok(p) => {
            let m = &shared.metrics;
            for (what, k) in [
                ("routed", p.routed),
                ("unrouted", p.unrouted),
                ("silenced", p.silenced),
                ("inhibited", p.inhibited),
            ] {
                if k > 0 {
                    m.alerts
                        .get_or_create(&metrics::Outcome {
                            tenant: c.tenant.clone(),
                            outcome: what.into(),
                        })
                        .inc_by(k);
                }
            }
            for ((destination, outcome), k) in &p.outcomes {
                m.notifications
                    .get_or_create(&metrics::Destination {
                        tenant: c.tenant.clone(),
                        destination: destination.clone(),
                        outcome: (*outcome).into(),
                    })
                    .inc_by(*k);
            }
            if p.any() {
                tracing::info!(tenant = %c.tenant, routed = p.routed, queued = p.queued, held = p.held,
                    sent = p.sent, retried = p.retried, dead = p.dead, failed = p.failed, "notifier");
            }
        }
        Err(e) => {
            tracing::error!(tenant = %c.tenant, error = %format!("{e:#}"), "notifier pass failed")
        }
    }
}

/// Each rep's load, share and SLA record as gauges, and the timers left.
fn rep_gauges(m: &metrics::Metrics, c: &Config, store: &Store) {
    let tenant = c.tenant.as_str();
    if let Ok(n) = store.pending_timers(tenant) {
        m.timers_pending
            .get_or_create(&metrics::Tenant {
                tenant: tenant.to_string(),
            })
            .set(n);
    }
    let Ok(rows) = store.reps(tenant) else {
        return;
    };
    // Read-only: seeding is the pipelines' and the verbs' to do.
    let Ok(reps) = leadgate_pipeline::assign::reps_of(&rows) else {
        return;
    };
    for v in crate::routing::views(&rows, &reps, crate::clock::now_ms()) {
        let label = metrics::RepLabel {
            tenant: tenant.to_string(),
            rep: v.rep.id.clone(),
        };
        m.rep_assigned.get_or_create(&label).set(v.assigned_total);
        m.rep_open.get_or_create(&label).set(v.open);
        m.rep_share.get_or_create(&label).set(v.share);
        m.rep_weight_share.get_or_create(&label).set(v.weight_share);
        m.rep_sla_adherence
            .get_or_create(&label)
            .set(v.sla_adherence);
    }
}
