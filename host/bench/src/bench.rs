//! `leadgate-bench` (no subcommand): validate per lead natively and through the component,
//! a request body's strict parse against serde_json's, a fresh instance's
//! first call (cold start), and `leadgate run` end to end
//! with the SQLite store. Every figure is the median of several rounds taken
//! in one process, so ratios compare like with like on a noisy machine.

use anyhow::{Context, Result};
use leadgate::clock;
use leadgate::config::Config;
use leadgate::pipeline::Validator;
use leadgate::run::{self, RunOptions};
use leadgate_ingest::Format;
use leadgate_lead::{Lead, Source};
use leadgate_runtime::{Runtime, ValidatorComponent};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn run(config: &Config, count: usize, e2e_count: usize, rounds: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("leadgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let input = dir.join("leads.csv");
    leadgate_sample::write(count, 11, &input, None, None)?;
    let leads: Vec<Lead> = leadgate_sample::read_leads(&input)?
        .into_iter()
        .map(|mut l| {
            l.tenant = config.tenant.clone();
            l
        })
        .collect();
    let n = leads.len() as u32;
    let now = clock::now_ms();
    eprintln!(
        "bench: {} leads, {rounds} rounds, median reported",
        leads.len()
    );

    // Native baseline (the same crate compiled for the host) and the
    // component (one instance reused, batches as `run` sends them), in
    // alternating rounds so both see the same machine; the ratio is taken
    // per round and its median reported.
    let settings_json = config.validate_settings()?;
    let settings = leadgate_validate::Settings::from_json(&settings_json)?;
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let path = config.validate_component()?;
    let component = ValidatorComponent::load(&runtime, &path)?;
    let mut validator = Validator::new(&component, settings_json.clone())?;
    let batch = config.limits.batch_size;
    let native_pass = || {
        let t = Instant::now();
        for l in &leads {
            std::hint::black_box(leadgate_validate::validate(l, &settings, now));
        }
        t.elapsed() / n
    };
    let mut wasm_pass = || {
        let t = Instant::now();
        for chunk in leads.chunks(batch) {
            std::hint::black_box(validator.validate(chunk, now));
        }
        t.elapsed() / n
    };
    // One untimed pass each, so lazily built state exists on both sides.
    native_pass();
    wasm_pass();
    let (mut native, mut wasm, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let n_time = native_pass();
        let w_time = wasm_pass();
        native.push(n_time);
        wasm.push(w_time);
        ratios.push(w_time.as_secs_f64() / n_time.as_secs_f64());
    }
    let native = median(native);
    let wasm = median(wasm);
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];

    // A request body as the service reads it: ten leads in a JSON array,
    // parsed strictly (duplicate keys and control characters refused) and,
    // as the baseline, by serde_json alone, in alternating rounds.
    let bodies: Vec<Vec<u8>> = leads
        .chunks(10)
        .map(serde_json::to_vec)
        .collect::<Result<_, _>>()?;
    let parse_pass = |strict: bool| {
        let t = Instant::now();
        for b in &bodies {
            if strict {
                let _ = std::hint::black_box(leadgate_ingest::body::parse_json(b));
            } else {
                let _ = std::hint::black_box(serde_json::from_slice::<serde_json::Value>(b));
            }
        }
        t.elapsed() / bodies.len().max(1) as u32
    };
    parse_pass(true);
    parse_pass(false);
    let (mut strict, mut plain, mut parse_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let s = parse_pass(true);
        let p = parse_pass(false);
        strict.push(s);
        plain.push(p);
        parse_ratios.push(s.as_secs_f64() / p.as_secs_f64());
    }
    parse_ratios.sort_by(f64::total_cmp);
    let body_bytes = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len().max(1);

    // Cold start: a fresh instance (from the pre-linked InstancePre), its
    // settings applied, and its first lead.
    let samples = 200.min(leads.len().max(1));
    let mut instantiate = Vec::new();
    let mut first_call = Vec::new();
    for l in leads.iter().cycle().take(samples) {
        let t = Instant::now();
        let mut inst = component.instantiate(&settings_json)?;
        let ready = t.elapsed();
        inst.validate(l, now)?;
        instantiate.push(ready);
        first_call.push(t.elapsed());
    }

    // End to end: `leadgate run` on a larger CSV, SQLite store on disk; and
    // start-up alone (a one-lead file), which the large run amortizes.
    let big = dir.join("leads-e2e.csv");
    leadgate_sample::write(e2e_count, 11, &big, None, None)?;
    let one = dir.join("one.csv");
    std::fs::write(&one, "email\njane@example.com\n")?;
    let mut without = config.clone();
    without.dedupe.enabled = false;
    without.enrich.enabled = false;
    let mut enrich_only = config.clone();
    enrich_only.dedupe.enabled = false;
    let run_once = |config: &Config, input: &std::path::Path, db: String| -> Result<Duration> {
        let opts = RunOptions {
            input: input.display().to_string(),
            format: Some(Format::Csv),
            map: Vec::new(),
            output: dir.join("results.ndjson").display().to_string(),
            source: Source::Import,
            db: dir.join(db).display().to_string(),
            progress: false,
            quiet: true,
            import: false,
        };
        Ok(run::run(config, &opts)?.elapsed)
    };
    let mut e2e = Vec::new();
    let mut e2e_alone = Vec::new();
    let mut e2e_enrich = Vec::new();
    let mut startup = Vec::new();
    for round in 0..rounds {
        e2e.push(run_once(config, &big, format!("e2e-{round}.db"))?);
        e2e_alone.push(run_once(&without, &big, format!("alone-{round}.db"))?);
        e2e_enrich.push(run_once(&enrich_only, &big, format!("enrich-{round}.db"))?);
        startup.push(run_once(config, &one, format!("one-{round}.db"))?);
    }
    let e2e = median(e2e);
    let e2e_alone = median(e2e_alone);
    let e2e_enrich = median(e2e_enrich);
    let startup = median(startup);
    let rate = e2e_count as f64 / e2e.as_secs_f64();

    println!("| measure | median | note |");
    println!("|---|---|---|");
    println!(
        "| validate, native | {:.2} µs/lead | baseline |",
        us(native)
    );
    println!(
        "| validate, component (batch {batch}) | {:.2} µs/lead | {ratio:.2}× native (median of per-round ratios, range {:.2}–{:.2}) |",
        us(wasm),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    println!(
        "| request body, serde_json alone (10 leads, {body_bytes} bytes) | {:.2} µs/body | baseline |",
        us(median(plain))
    );
    println!(
        "| request body, strict parse (duplicate keys, control characters) | {:.2} µs/body | {:.2}× serde_json (median of per-round ratios, range {:.2}–{:.2}) |",
        us(median(strict)),
        parse_ratios[parse_ratios.len() / 2],
        parse_ratios[0],
        parse_ratios[parse_ratios.len() - 1]
    );
    println!(
        "| fresh instance ready (instantiate + open) | {:.1} µs | p99 {:.1} µs |",
        us(median(instantiate.clone())),
        us(crate::load::percentile_of(&mut instantiate, 0.99))
    );
    println!(
        "| fresh instance, first lead answered | {:.1} µs | p99 {:.1} µs |",
        us(median(first_call.clone())),
        us(crate::load::percentile_of(&mut first_call, 0.99))
    );
    println!(
        "| `leadgate run` end to end, SQLite, enrich + dedupe on | {:.0} leads/s | {e2e_count} leads in {:.2} s, start-up included |",
        rate,
        e2e.as_secs_f64()
    );
    println!(
        "| `leadgate run` end to end, SQLite, enrich on, dedupe off | {:.0} leads/s | {e2e_count} leads in {:.2} s |",
        e2e_count as f64 / e2e_enrich.as_secs_f64(),
        e2e_enrich.as_secs_f64()
    );
    println!(
        "| `leadgate run` end to end, SQLite, enrich and dedupe off | {:.0} leads/s | {e2e_count} leads in {:.2} s, validation only |",
        e2e_count as f64 / e2e_alone.as_secs_f64(),
        e2e_alone.as_secs_f64()
    );
    println!(
        "| `leadgate run` start-up (one lead) | {:.0} ms | engine, cached components, store |",
        startup.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
