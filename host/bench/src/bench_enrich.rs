//! `leadgate-bench enrich`: what enrichment costs per lead through the
//! component against the same logic compiled natively (both with the
//! tenant's providers — the demo's local firmographics — and the same
//! prefetch), and what an HTTP provider sustains: a loopback API answering
//! after a set latency, under the configured rate limit, with the worker
//! pool and with a single worker.

use anyhow::{Context, Result, bail};
use fixture_fake_provider::{FakeProvider, Reply, company_json};
use leadgate::config::Config;
use leadgate::enrich::EnrichStage;
use leadgate_lead::Lead;
use leadgate_providers::{Prefetcher, ProviderConfig};
use leadgate_runtime::{EnricherComponent, Runtime};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Normalized leads from the generator (validated natively).
fn normalized(config: &Config, count: usize) -> Result<Vec<Lead>> {
    let dir = std::env::temp_dir().join(format!("leadgate-bench-enrich-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let input = dir.join("leads.csv");
    leadgate_sample::write(count, 11, &input, None, None)?;
    let settings = leadgate_validate::Settings::from_json(&config.validate_settings()?)?;
    let now = leadgate::clock::now_ms();
    let leads = leadgate_sample::read_leads(&input)?
        .into_iter()
        .map(|mut l| {
            l.tenant = config.tenant.clone();
            leadgate_validate::validate(&l, &settings, now)
        })
        .filter(|v| v.verdict != leadgate_lead::Verdict::Reject)
        .map(|v| v.lead)
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(leads)
}

pub struct Options {
    pub leads: usize,
    pub rounds: usize,
    pub http_leads: usize,
    pub rate: f64,
    pub latency_ms: u64,
    pub concurrency: usize,
}

pub fn run(config: &Config, o: &Options) -> Result<()> {
    let leads = normalized(config, o.leads)?;
    if leads.is_empty() {
        bail!("no leads to enrich");
    }
    let n = leads.len() as u32;
    let now = leadgate::clock::now_ms();
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let component = EnricherComponent::load(&runtime, &config.enrich_component()?)?;
    let store = leadgate_store::Store::open(":memory:")?;
    let chain = leadgate::enrich::chain(config, &store)?;
    let batch = config.limits.batch_size;
    let budget = Duration::from_millis(config.enrich.budget_ms);
    eprintln!(
        "bench enrich: {} normalized leads, providers: {}, {} rounds, median reported",
        leads.len(),
        chain
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        o.rounds
    );

    let mut stage = EnrichStage::for_tenant(&component, config, chain.clone(), budget)?;
    let native = leadgate_enrich::Enricher::from_json(&config.enrich_settings()?)?;
    let prefetcher = Prefetcher::new(chain.clone(), 1);
    let native_pass = || {
        let t = Instant::now();
        for chunk in leads.chunks(batch) {
            let mut answers = prefetcher.prefetch(&leadgate::enrich::lookup_keys(chunk), budget);
            for l in chunk {
                std::hint::black_box(native.enrich(l, &mut answers));
            }
        }
        t.elapsed() / n
    };
    let mut wasm_pass = || {
        let t = Instant::now();
        for chunk in leads.chunks(batch) {
            let mut owned = chunk.to_vec();
            std::hint::black_box(stage.enrich(&mut owned, now));
        }
        t.elapsed() / n
    };
    native_pass();
    wasm_pass();
    let (mut nat, mut wasm, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        let a = native_pass();
        let b = wasm_pass();
        nat.push(a);
        wasm.push(b);
        ratios.push(b.as_secs_f64() / a.as_secs_f64());
    }
    // The copy `wasm_pass` makes of each chunk (run moves leads instead).
    let copy = {
        let t = Instant::now();
        for chunk in leads.chunks(batch) {
            std::hint::black_box(chunk.to_vec());
        }
        t.elapsed() / n
    };
    let native_us = median(nat).as_secs_f64() * 1e6;
    let wasm_us = median(wasm).saturating_sub(copy).as_secs_f64() * 1e6;
    let ratio = median(ratios.clone());
    let (lo, hi) = (
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );

    println!("| measure | median | note |");
    println!("|---|---|---|");
    println!("| enrich, native (prefetch + enrich) | {native_us:.2} µs/lead | baseline |");
    println!(
        "| enrich, component (batch {batch}, prefetch + call + fill) | {wasm_us:.2} µs/lead | {ratio:.2}× native (range {lo:.2}–{hi:.2}) |"
    );

    // An HTTP provider: the worker pool against a single worker.
    for (concurrency, count) in [
        (o.concurrency, o.http_leads),
        (1, (o.http_leads / 10).max(10)),
    ] {
        let (rate, secs, peak) = http_throughput(config, o, concurrency, count)?;
        println!(
            "| HTTP provider, {} ms latency, limit {}/s, concurrency {concurrency} | {rate:.0} leads/s | {count} leads with distinct domains in {secs:.2} s, at most {peak} requests in any second; bound: {} |",
            o.latency_ms,
            o.rate,
            if concurrency == 1 {
                format!("one worker, {:.0}/s", 1000.0 / o.latency_ms.max(1) as f64)
            } else {
                format!("the rate limit, {}/s", o.rate)
            }
        );
    }
    Ok(())
}

/// Leads per second through the enrich stage when every lookup goes to a
/// loopback API answering after `latency_ms`.
fn http_throughput(
    config: &Config,
    o: &Options,
    concurrency: usize,
    count: usize,
) -> Result<(f64, f64, usize)> {
    let latency = Duration::from_millis(o.latency_ms);
    let server = FakeProvider::start(move |r| {
        Reply::Slow(
            latency,
            company_json(r.path.rsplit('=').next().unwrap_or("")),
        )
    });
    let provider: ProviderConfig = serde_json::from_value(serde_json::json!({
        "name": "bench-api",
        "kind": "http",
        "lookup": "company",
        "url": format!("{}/v1/companies?domain={{domain}}", server.url()),
        "record": "/data",
        "fields": {"name": "/legalName", "industry": "/category/industry"},
        "rate_per_second": o.rate,
        // The default bucket size: what a tenant gets without tuning.
        "burst": 10,
        "timeout_ms": 5000,
    }))?;
    let mut c = config.clone();
    c.enrich.providers = vec![provider];
    let store = leadgate_store::Store::open(":memory:")?;
    let chain = leadgate::enrich::chain(&c, &store)?;
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let component = EnricherComponent::load(&runtime, &config.enrich_component()?)?;
    let mut stage = EnrichStage::new(
        &component,
        "{\"lookup_person\": false}".into(),
        Arc::clone(&chain),
        concurrency,
        Duration::from_secs(600),
    )?;
    let mut leads: Vec<Lead> = (0..count)
        .map(|i| Lead {
            tenant: c.tenant.clone(),
            email: Some(format!("p{i}@company{i}.com")),
            domain: Some(format!("company{i}.com")),
            ..Lead::default()
        })
        .collect();
    let now = leadgate::clock::now_ms();
    let t = Instant::now();
    for chunk in leads.chunks_mut(c.limits.batch_size) {
        for r in stage.enrich(chunk, now) {
            r?;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let found = chain.stats().first().map_or(0, |s| s.found);
    if found as usize != count {
        bail!("HTTP bench: {found} of {count} lookups found");
    }
    let peak = server.max_in_window(Duration::from_secs(1));
    // The bucket allows its size plus a second's refill in any second; the
    // server's clock sees arrivals, which loopback scheduling can bunch by
    // a few milliseconds.
    let allowed = (o.rate + 10.0) * 1.02 + 1.0;
    if peak as f64 > allowed {
        bail!(
            "HTTP bench: {peak} requests in one second, over the limit of {}/s (burst 10)",
            o.rate
        );
    }
    Ok((count as f64 / secs, secs, peak))
}
