//! `leadgate-bench postgres`: the store on PostgreSQL against SQLite, in
//! one process on one machine (the database, the host and the benchmark
//! share its cores):
//!
//! - `leadgate run` end to end on the same file into a fresh SQLite file
//!   and a fresh PostgreSQL database, rounds alternating; the median of the
//!   per-round ratios.
//! - The dedupe candidate lookup for one new lead against `stored` leads
//!   filled into each backend (natively keyed, as `bench dedupe` fills),
//!   one lead per call as a single-lead request looks it up: p50 and p99.
//!
//! `--server` names a PostgreSQL server where the benchmark may create and
//! drop databases of its own.

use crate::load::percentile_of as percentile;
use anyhow::{Context, Result};
use leadgate::clock::now_ms;
use leadgate::config::Config;
use leadgate::run::{self, RunOptions};
use leadgate_ingest::Format;
use leadgate_lead::{Lead, Source};
use leadgate_store::prelude::*;
use leadgate_store::{Store, key_hash};
use std::time::{Duration, Instant};

/// A database of the benchmark's own on `server`, dropped when done.
pub(crate) struct Database {
    server: String,
    name: String,
    pub(crate) url: String,
}

impl Database {
    pub(crate) fn create(server: &str, name: &str) -> Result<Database> {
        let mut c = postgres::Client::connect(server, postgres::NoTls)
            .with_context(|| format!("cannot connect to {server}"))?;
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .and_then(|()| c.batch_execute(&format!("CREATE DATABASE {name}")))
            .with_context(|| format!("cannot create the database {name}"))?;
        let (scheme, rest) = server
            .split_once("://")
            .context("--server must be a postgres:// URL")?;
        let host = rest.split(['/', '?']).next().unwrap_or(rest);
        Ok(Database {
            server: server.to_string(),
            name: name.to_string(),
            url: format!("{scheme}://{host}/{name}"),
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

pub struct Options {
    pub server: String,
    pub leads: usize,
    pub rounds: usize,
    pub stored: usize,
    pub probes: usize,
}

pub fn run(config: &Config, o: &Options) -> Result<()> {
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("leadgate-bench-postgres-{pid}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rows = Vec::new();
    if o.leads > 0 {
        rows.extend(end_to_end(config, o, &dir)?);
    }
    if o.stored > 0 {
        rows.extend(lookup(config, o, &dir)?);
    }
    println!("| measure | SQLite | PostgreSQL | PostgreSQL / SQLite |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn end_to_end(config: &Config, o: &Options, dir: &std::path::Path) -> Result<Vec<String>> {
    let input = dir.join("leads.csv");
    leadgate_sample::write(o.leads, 11, &input, None, None)?;
    let run_once = |db: String| -> Result<(Duration, u64)> {
        let opts = RunOptions {
            input: input.display().to_string(),
            format: Some(Format::Csv),
            map: Vec::new(),
            output: dir.join("results.ndjson").display().to_string(),
            source: Source::Import,
            db,
            progress: false,
            quiet: true,
            import: false,
        };
        let report = run::run(config, &opts)?;
        Ok((report.elapsed, report.totals.total))
    };
    let (mut sqlite, mut pg, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut count = 0;
    for round in 0..o.rounds.max(1) {
        let file = dir.join(format!("run-{round}.db"));
        let (s, n) = run_once(file.display().to_string())?;
        let _ = std::fs::remove_file(&file);
        let db = Database::create(
            &o.server,
            &format!("leadgate_bench_{}_{round}", std::process::id()),
        )?;
        let (p, _) = run_once(db.url.clone())?;
        eprintln!(
            "bench postgres: round {round}: run {n} leads: SQLite {:.2} s, PostgreSQL {:.2} s",
            s.as_secs_f64(),
            p.as_secs_f64()
        );
        count = n;
        ratios.push(p.as_secs_f64() / s.as_secs_f64());
        sqlite.push(s);
        pg.push(p);
    }
    sqlite.sort();
    pg.sort();
    ratios.sort_by(f64::total_cmp);
    let (s, p) = (sqlite[sqlite.len() / 2], pg[pg.len() / 2]);
    Ok(vec![format!(
        "| `leadgate run` end to end, {count} leads (median of {} rounds) | {:.0} leads/s | {:.0} leads/s | {:.2}× the time (per-round ratios {:.2}–{:.2}) |",
        o.rounds.max(1),
        count as f64 / s.as_secs_f64(),
        count as f64 / p.as_secs_f64(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    )])
}

fn lookup(config: &Config, o: &Options, dir: &std::path::Path) -> Result<Vec<String>> {
    let input = dir.join("stored.csv");
    // A few generated rows are unreadable on purpose: make enough.
    let generated = (o.stored + o.probes) + (o.stored + o.probes) / 20;
    leadgate_sample::write(generated, 17, &input, None, None)?;
    let mut leads = leadgate_sample::read_leads(&input)?;
    let _ = std::fs::remove_file(&input);
    leads.truncate(o.stored + o.probes);
    let new: Vec<Lead> = leads.split_off(leads.len().saturating_sub(o.probes));
    let stored = leads.len();
    let now = now_ms();
    let file = dir.join("stored.db");
    let db = Database::create(
        &o.server,
        &format!("leadgate_bench_{}_stored", std::process::id()),
    )?;
    let mut fills = Vec::new();
    for location in [file.display().to_string(), db.url.clone()] {
        let mut store = Store::open(&location)?;
        let t = Instant::now();
        crate::bench_dedupe::fill(config, &mut store, leads.clone(), now)?;
        fills.push(t.elapsed());
        if let Store::Postgres(_) = store {
            // What autovacuum would do soon after a load this size.
            postgres::Client::connect(&db.url, postgres::NoTls)?.batch_execute("ANALYZE")?;
        }
    }
    let settings = leadgate_validate::Settings::from_json(&config.validate_settings()?)?;
    let deduper = leadgate_dedupe::Deduper::from_json(&config.dedupe_settings()?)?;
    let keys: Vec<Vec<i64>> = new
        .into_iter()
        .map(|mut raw| {
            raw.tenant.clone_from(&config.tenant);
            let lead = leadgate_validate::validate(&raw, &settings, now).lead;
            deduper
                .keys(&lead)
                .iter()
                .filter(|k| leadgate::matcher::in_passes(k, &config.dedupe.store_passes))
                .map(|k| key_hash(&config.tenant, k))
                .collect()
        })
        .collect();
    let (per_key, max) = (
        config.dedupe.candidates_per_key,
        config.dedupe.max_candidates,
    );
    let stores = [
        Store::open(&file.display().to_string())?,
        Store::open(&db.url)?,
    ];
    // A pass over every probe on each store reads what both will find
    // cached; then three passes each, alternating.
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut found = [0usize; 2];
    for pass in 0..4 {
        for (i, store) in stores.iter().enumerate() {
            for k in &keys {
                let t = Instant::now();
                let c = store.candidates(&config.tenant, k, per_key, max)?;
                if pass > 0 {
                    times[i].push(t.elapsed());
                    found[i] += c.len();
                }
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let [mut s, mut p] = times;
    let (s50, s99) = (percentile(&mut s, 0.5), percentile(&mut s, 0.99));
    let (p50, p99) = (percentile(&mut p, 0.5), percentile(&mut p, 0.99));
    Ok(vec![
        format!(
            "| filling {stored} leads (natively keyed, batches of 10,000) | {:.0} s | {:.0} s | {:.2}× |",
            fills[0].as_secs_f64(),
            fills[1].as_secs_f64(),
            fills[1].as_secs_f64() / fills[0].as_secs_f64()
        ),
        format!(
            "| candidate lookup, one new lead against {stored}, p50 | {:.3} ms | {:.3} ms | {:.2}× |",
            ms(s50),
            ms(p50),
            ms(p50) / ms(s50)
        ),
        format!(
            "| candidate lookup, one new lead against {stored}, p99 ({} lookups each, {} vs {} candidates found) | {:.3} ms | {:.3} ms | {:.2}× |",
            s.len(),
            found[0],
            found[1],
            ms(s99),
            ms(p99),
            ms(p99) / ms(s99)
        ),
    ])
}
