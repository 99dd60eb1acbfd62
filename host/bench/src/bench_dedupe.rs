//! `leadgate-bench dedupe`: dedupe's speed targets.
//!
//! - One new lead against a store of `stored` records: the dedupe stage of
//!   `leadgate run` for a single lead (keys through the component, candidate
//!   fetch from SQLite, comparison through the component, evidence for a
//!   match), timed per lead; p50 and p99 reported. The store is filled
//!   natively (the validate and dedupe crates compiled for the host, the same
//!   logic as the components) so building a million records does not
//!   dominate the benchmark; what is timed goes through the components.
//! - `leadgate dedupe --dry-run` (the real binary, a child process per size)
//!   over growing files: time, pairs compared, peak memory, so near-linear
//!   growth can be seen.

use anyhow::{Context, Result, bail};
use leadgate::clock::now_ms;
use leadgate::config::Config;
use leadgate::matcher::{Matcher, Policy};
use leadgate::matching::Stage;
use leadgate_lead::Lead;
use leadgate_runtime::{DeduperComponent, Runtime};
use leadgate_store::{Record, Status, Store, key_hash};
use std::time::{Duration, Instant};

use crate::load::percentile_of as percentile;
use leadgate_store::prelude::*;

/// Fills `store` with `leads`, normalized and keyed natively.
pub(crate) fn fill(config: &Config, store: &mut Store, leads: Vec<Lead>, now: i64) -> Result<()> {
    let settings = leadgate_validate::Settings::from_json(&config.validate_settings()?)?;
    let deduper = leadgate_dedupe::Deduper::from_json(&config.dedupe_settings()?)?;
    let run = store.begin_run(&config.tenant, "bench", "{}", now)?;
    let started = Instant::now();
    let total = leads.len();
    let mut done = 0;
    let mut it = leads.into_iter().enumerate();
    loop {
        let chunk: Vec<(usize, Lead)> = it.by_ref().take(10_000).collect();
        if chunk.is_empty() {
            break;
        }
        let mut prepared: Vec<(Lead, Lead, String, Vec<i64>, Status)> =
            Vec::with_capacity(chunk.len());
        for (i, mut raw) in chunk {
            raw.id = format!("s{i:08}");
            raw.tenant.clone_from(&config.tenant);
            let v = leadgate_validate::validate(&raw, &settings, now);
            let status = Status::of(v.verdict);
            let keys = if status == Status::Rejected {
                Vec::new()
            } else {
                deduper
                    .keys(&v.lead)
                    .iter()
                    .filter(|k| leadgate::matcher::in_passes(k, &config.dedupe.store_passes))
                    .map(|k| key_hash(&config.tenant, k))
                    .collect()
            };
            let json = serde_json::to_string(&v.lead)?;
            prepared.push((raw, v.lead, json, keys, status));
        }
        let records: Vec<Record<'_>> = prepared
            .iter()
            .enumerate()
            .map(|(i, (raw, _, json, keys, status))| Record {
                line: i as u64 + 1,
                raw,
                status: *status,
                validation: *status,
                normalized: Some(json),
                issues: &[],
                exception: None,
                keys,
                link: None,
                review: None,
                enrichment: None,
                qualification: None,
            })
            .collect();
        store.record(run, "validate", "bench", &records, now)?;
        done += records.len();
        eprint!(
            "\rbench: stored {done}/{total} records ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    // Closed as a run is (on PostgreSQL that brings the planner's
    // statistics up to date, as after an import).
    let totals = leadgate_store::Totals {
        total: done as u64,
        ..Default::default()
    };
    store.finish_run(run, &totals, "done", now)?;
    Ok(())
}

/// Peak memory of a `leadgate dedupe` child, from its report.
fn peak(report: &str) -> Option<String> {
    report
        .lines()
        .find_map(|l| l.split("peak memory ").nth(1))
        .map(|s| s.trim().trim_end_matches(')').to_string())
}

pub fn run(config: &Config, stored: usize, probes: usize, sizes: &[usize]) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("leadgate-bench-dedupe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exe = crate::leadgate_exe()?;
    let mut rows: Vec<String> = Vec::new();

    // Batch clean-up at growing sizes, each in its own process.
    for &n in sizes.iter().filter(|n| **n > 0) {
        let input = dir.join(format!("dirty-{n}.csv"));
        leadgate_sample::write(n, 13, &input, None, None)?;
        let mut cmd = std::process::Command::new(&exe);
        if let Some(c) = std::env::var_os("LEADGATE_CONFIG") {
            cmd.env("LEADGATE_CONFIG", c);
        }
        let t = Instant::now();
        let out = cmd
            .args(["dedupe", "--input"])
            .arg(&input)
            .arg("--pairs")
            .arg(dir.join("pairs.csv"))
            .arg("--dry-run")
            .output()
            .context("cannot run leadgate dedupe")?;
        let elapsed = t.elapsed();
        let report = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("leadgate dedupe failed on {n} records: {report}");
        }
        let compared = report
            .lines()
            .find_map(|l| {
                l.split(" pairs compared")
                    .next()
                    .filter(|_| l.contains("pairs compared"))
            })
            .and_then(|l| l.rsplit(", ").next())
            .unwrap_or("?")
            .to_string();
        rows.push(format!(
            "| `leadgate dedupe --dry-run`, {n} records | {:.1} s | {compared} pairs compared ({:.2}/record), peak memory {} |",
            elapsed.as_secs_f64(),
            compared.parse::<f64>().unwrap_or(f64::NAN) / n as f64,
            peak(&report).unwrap_or_else(|| "not measured".into())
        ));
        let _ = std::fs::remove_file(&input);
        eprintln!("bench: {}", rows.last().map_or("", String::as_str));
    }

    // One new lead against `stored` records.
    if stored > 0 {
        let input = dir.join("stored.csv");
        // A few generated rows are unreadable on purpose: make enough.
        let generated = (stored + probes) + (stored + probes) / 20;
        leadgate_sample::write(generated, 17, &input, None, None)?;
        let mut leads = leadgate_sample::read_leads(&input)?;
        let _ = std::fs::remove_file(&input);
        leads.truncate(stored + probes);
        // The last `probes` records are the new leads (one in eight of them
        // a person already stored); the rest are stored.
        let new: Vec<Lead> = leads.split_off(leads.len().saturating_sub(probes));
        let stored = leads.len();
        let db = dir.join("stored.db");
        let mut store = Store::open(&db.display().to_string())?;
        let now = now_ms();
        fill(config, &mut store, leads, now)?;
        drop(store);
        let store = Store::open(&db.display().to_string())?;
        let settings = leadgate_validate::Settings::from_json(&config.validate_settings()?)?;
        let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
        let component = DeduperComponent::load(&runtime, &config.dedupe_component()?)?;
        let mut stage = Stage::new(
            Matcher::new(&component, config.dedupe_settings()?)?
                .only_passes(&config.dedupe.store_passes),
            Policy::of(&config.dedupe),
            &config.tenant,
            config.dedupe.candidates_per_key,
            config.dedupe.max_candidates,
        );
        let probes: Vec<Lead> = new
            .into_iter()
            .enumerate()
            .map(|(i, mut raw)| {
                raw.id = format!("n{i:08}");
                raw.tenant.clone_from(&config.tenant);
                leadgate_validate::validate(&raw, &settings, now).lead
            })
            .collect();
        let mut times = Vec::with_capacity(probes.len());
        let mut matched = 0;
        for lead in &probes {
            let t = Instant::now();
            let out = stage.match_leads(&store, &[lead], now)?;
            times.push(t.elapsed());
            // Each probe is matched against the store only.
            stage.flushed();
            matched += usize::from(out.first().is_some_and(|m| m.found.is_some()));
        }
        let n = times.len();
        let p50 = percentile(&mut times, 0.5);
        let p99 = percentile(&mut times, 0.99);
        let max = percentile(&mut times, 1.0);
        rows.push(format!(
            "| one new lead against {stored} stored records | p50 {:.2} ms, p99 {:.2} ms | {n} leads, {matched} matched a stored record; max {:.2} ms; keys + candidate fetch + compare (+ evidence) |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        ));
        rows.push(lookups(config, &store, &probes, stored)?);
    }

    println!("| measure | result | note |");
    println!("|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The candidate fetch alone for `probes` (in requests of 10, as the
/// service's front looks them up), without and then with the key filter
/// (`Store::filter_match_keys`), alternating three times: the medians,
/// the filter's build time and the share of keys it let through to the
/// index.
fn lookups(config: &Config, store: &Store, probes: &[Lead], stored: usize) -> Result<String> {
    let deduper = leadgate_dedupe::Deduper::from_json(&config.dedupe_settings()?)?;
    let keys: Vec<Vec<i64>> = probes
        .iter()
        .map(|l| {
            deduper
                .keys(l)
                .iter()
                .filter(|k| leadgate::matcher::in_passes(k, &config.dedupe.store_passes))
                .map(|k| key_hash(&config.tenant, k))
                .collect()
        })
        .collect();
    let per_key = config.dedupe.candidates_per_key;
    let max = config.dedupe.max_candidates;
    let pass = |store: &Store| -> Result<Duration> {
        let t = Instant::now();
        for chunk in keys.chunks(10) {
            store.candidates_for_each(&config.tenant, chunk, per_key, max)?;
        }
        Ok(t.elapsed())
    };
    // The first pass reads the pages both will find cached.
    pass(store)?;
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut build = Vec::new();
    let mut reopened = Store::open(store.path())?;
    for _ in 0..3 {
        without.push(pass(store)?);
        let t = Instant::now();
        reopened.filter_match_keys()?;
        build.push(t.elapsed());
        with.push(pass(&reopened)?);
    }
    let through = keys
        .iter()
        .flatten()
        .filter(|k| reopened.key_filter_may_hold(**k))
        .count();
    let n = keys.len().max(1) as f64;
    let us = |v: &mut Vec<Duration>| percentile(v, 0.5).as_secs_f64() * 1e6 / n;
    let (a, b) = (us(&mut without), us(&mut with));
    Ok(format!(
        "| candidate fetch alone, {} new leads against {stored} stored, in requests of 10 | {a:.1} µs/lead without the key filter, {b:.1} µs/lead with it ({:.2}×) | median of 3 alternating passes; the filter let {through} of {} keys through to the index and was built in {:.0} ms |",
        keys.len(),
        b / a,
        keys.iter().map(Vec::len).sum::<usize>(),
        percentile(&mut build, 0.5).as_secs_f64() * 1e3
    ))
}
