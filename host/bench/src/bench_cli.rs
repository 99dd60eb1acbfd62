//! `leadgate-bench`'s command line: one subcommand per benchmark, each with
//! its own flags (validate with its defaults when none is named), handed to
//! the benchmark's module.

use crate::{bench, bench_dedupe, bench_edge, bench_enrich, bench_score, bench_serve};
use anyhow::Result;
use clap::{Args, Subcommand};
use leadgate::config::{self, Config};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub struct BenchArgs {
    /// Which benchmark; validate with its defaults when none is named.
    #[command(subcommand)]
    what: Option<BenchWhat>,
}

const LEADS: usize = 20_000;
const E2E_LEADS: usize = 100_000;
const ROUNDS: usize = 5;

/// Validate natively and through the component, a fresh instance's cold
/// start, the request body parse, and `leadgate run` end to end.
#[derive(Args)]
struct ValidateArgs {
    /// Leads for the per-lead measures (generated).
    #[arg(long, default_value_t = LEADS)]
    leads: usize,
    /// Leads in the file `leadgate run` processes end to end.
    #[arg(long, default_value_t = E2E_LEADS)]
    e2e_leads: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = ROUNDS)]
    rounds: usize,
}

impl Default for ValidateArgs {
    fn default() -> Self {
        ValidateArgs {
            leads: LEADS,
            e2e_leads: E2E_LEADS,
            rounds: ROUNDS,
        }
    }
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Validate (the default): native vs component, cold start, end to end.
    Validate(ValidateArgs),
    /// Dedupe: one new lead against a large store, and batch clean-up at
    /// growing sizes.
    Dedupe {
        /// Records in the store new leads are matched against.
        #[arg(long, default_value_t = 1_000_000)]
        stored: usize,
        /// New leads timed one by one against the store.
        #[arg(long, default_value_t = 2_000)]
        probes: usize,
        /// File sizes for `leadgate dedupe` (comma-separated; 0 for none).
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000, 1_000_000])]
        sizes: Vec<usize>,
    },
    /// Enrich: per lead natively and through the component with the
    /// configured providers, and an HTTP provider's throughput under its
    /// rate limit (a loopback API).
    Enrich {
        /// Leads for the per-lead measures (generated).
        #[arg(long, default_value_t = 20_000)]
        leads: usize,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Leads through the HTTP provider.
        #[arg(long, default_value_t = 1_000)]
        http_leads: usize,
        /// The HTTP provider's rate limit (requests/s).
        #[arg(long, default_value_t = 200.0)]
        http_rate: f64,
        /// The loopback API's latency per request (ms).
        #[arg(long, default_value_t = 50)]
        http_latency_ms: u64,
        /// Lookups in flight at once.
        #[arg(long, default_value_t = 32)]
        http_concurrency: usize,
    },
    /// Score: one lead with many events and peers natively and through the
    /// component, and re-scoring a store.
    Score {
        /// Calls per round for the per-lead measures.
        #[arg(long, default_value_t = 20_000)]
        leads: usize,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Leads in the store re-scored.
        #[arg(long, default_value_t = 100_000)]
        rescore_leads: usize,
    },
    /// The store on PostgreSQL against SQLite: `leadgate run` end to end,
    /// and the candidate lookup against a large store.
    Postgres {
        /// A PostgreSQL server where the benchmark may create and drop
        /// databases (postgres://user@host/db).
        #[arg(long, env = "LEADGATE_BENCH_POSTGRES")]
        server: String,
        /// Leads `leadgate run` processes end to end (0: skip).
        #[arg(long, default_value_t = 100_000)]
        leads: usize,
        /// Repetitions of the end-to-end run; the median is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Leads stored for the candidate lookup (0: skip).
        #[arg(long, default_value_t = 1_000_000)]
        stored: usize,
        /// New leads looked up one by one.
        #[arg(long, default_value_t = 2_000)]
        probes: usize,
    },
    /// Routing: the decision per lead at 200 reps and 50 territory rows
    /// against a small roster, routing with the records written, and a
    /// tick among many open SLA timers.
    Routing {
        /// Leads routed per round.
        #[arg(long, default_value_t = 20_000)]
        leads: usize,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Open timers in the store when ticking.
        #[arg(long, default_value_t = 100_000)]
        timers: usize,
    },
    /// Workflow rules in memory: 20 rules per event against one, and a
    /// scheduler pass among armed inactivity timers.
    Rules {
        /// Leads the events are spread over.
        #[arg(long, default_value_t = 10_000)]
        leads: usize,
        /// Events per round.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Leads with armed inactivity timers for the scheduler pass.
        #[arg(long, default_value_t = 200_000)]
        timers: usize,
        /// Events through intake and rules on a SQLite store, per round
        /// (0: skip the store part).
        #[arg(long, default_value_t = 50_000)]
        store_events: usize,
        /// Leads with an armed timer in the store for the scheduler tick.
        #[arg(long, default_value_t = 1_000_000)]
        store_timers: usize,
    },
    /// The notifier: filing alerts into groups, flushing them into the
    /// outbox and delivering to a webhook on loopback, against raising them.
    Notify {
        /// Alerts raised per round.
        #[arg(long, default_value_t = 10_000)]
        alerts: usize,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The HTTP service: intake under an open-loop load on loopback,
    /// against a filled store.
    Serve {
        /// Records in the store at the start.
        #[arg(long, default_value_t = 100_000)]
        stored: usize,
        #[command(flatten)]
        load: LoadArgs,
        /// Leads per request.
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// Then the same on PostgreSQL: a server where the benchmark may
        /// create and drop databases (postgres://user@host/db).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// The edge component: form submissions to it under `wasmtime serve`,
    /// a fresh instance per request.
    Edge {
        #[command(flatten)]
        load: LoadArgs,
        /// The wasmtime CLI.
        #[arg(long, env = "LEADGATE_WASMTIME", default_value = "wasmtime")]
        wasmtime: PathBuf,
        /// The composed edge component (default: edge-composed.wasm among
        /// the bundled components).
        #[arg(long)]
        edge_component: Option<PathBuf>,
        /// An option for `wasmtime serve`, e.g. `-O pooling-allocator=y`
        /// (repeat for several).
        #[arg(long = "runtime-arg", allow_hyphen_values = true)]
        runtime_args: Vec<String>,
    },
}

/// An open-loop load.
#[derive(Args)]
struct LoadArgs {
    /// Leads (or forms) per second offered.
    #[arg(long, default_value_t = 5_000.0)]
    rate: f64,
    /// Client connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
}

/// Runs the benchmark `args` names.
pub fn execute(config: &Config, config_path: Option<&Path>, args: BenchArgs) -> Result<()> {
    match args
        .what
        .unwrap_or_else(|| BenchWhat::Validate(ValidateArgs::default()))
    {
        BenchWhat::Validate(v) => bench::run(config, v.leads, v.e2e_leads.max(1), v.rounds.max(1)),
        BenchWhat::Dedupe {
            stored,
            probes,
            sizes,
        } => bench_dedupe::run(config, stored, probes.max(1), &sizes),
        BenchWhat::Enrich {
            leads,
            rounds,
            http_leads,
            http_rate,
            http_latency_ms,
            http_concurrency,
        } => bench_enrich::run(
            config,
            &bench_enrich::Options {
                leads,
                rounds: rounds.max(1),
                http_leads: http_leads.max(10),
                rate: if http_rate > 0.0 { http_rate } else { 200.0 },
                latency_ms: http_latency_ms,
                concurrency: http_concurrency.clamp(1, 256),
            },
        ),
        BenchWhat::Score {
            leads,
            rounds,
            rescore_leads,
        } => bench_score::run(
            config,
            leads.min(20_000),
            rescore_leads.max(100),
            rounds.max(1),
        ),
        BenchWhat::Routing {
            leads,
            rounds,
            timers,
        } => crate::bench_routing::run(leads.max(100), rounds.max(1), timers),
        BenchWhat::Rules {
            leads,
            events,
            rounds,
            timers,
            store_events,
            store_timers,
        } => {
            crate::bench_rules::run(leads.max(10), events.max(100), rounds.max(1), timers.max(1))?;
            if store_events == 0 {
                return Ok(());
            }
            crate::bench_rules::run_store(
                leads.max(10),
                store_events.max(5_000),
                store_timers.max(100),
                rounds.max(1),
            )
        }
        BenchWhat::Notify { alerts, rounds } => {
            crate::bench_notify::run(alerts.max(100), rounds.max(1))
        }
        BenchWhat::Postgres {
            server,
            leads,
            rounds,
            stored,
            probes,
        } => crate::bench_postgres::run(
            config,
            &crate::bench_postgres::Options {
                server,
                leads,
                rounds,
                stored,
                probes: probes.max(1),
            },
        ),
        BenchWhat::Serve {
            stored,
            load,
            batch,
            postgres,
        } => bench_serve::run(
            config,
            config_path,
            &bench_serve::Options {
                stored,
                rate: load.rate,
                batch,
                concurrency: load.concurrency,
                duration: Duration::from_secs(load.duration),
                warmup: Duration::from_secs(load.warmup),
                postgres,
            },
        ),
        BenchWhat::Edge {
            load,
            wasmtime,
            edge_component,
            runtime_args,
        } => bench_edge::run(
            config,
            &bench_edge::Options {
                wasmtime,
                component: match edge_component {
                    Some(c) => c,
                    None => config::components_dir()?.join("edge-composed.wasm"),
                },
                rate: load.rate,
                concurrency: load.concurrency,
                duration: Duration::from_secs(load.duration),
                warmup: Duration::from_secs(load.warmup),
                runtime_args,
            },
        ),
    }
}
