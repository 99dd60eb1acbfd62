//! `leadgate-bench score`: scoring one lead with 200 events and 10
//! account peers through the component against the same logic compiled
//! natively, and re-scoring a store of leads after a burst of events
//! (load, build subjects, score, record history and surfacing).

use anyhow::{Context, Result};
use leadgate::config::Config;
use leadgate_lead::score::{Event, EventKind, Peer, Subject};
use leadgate_lead::{CustomField, Lead};
use leadgate_runtime::{Runtime, ScorerComponent};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A lead of a busy account: `events` of its own, `peers` colleagues with
/// 20 events each.
pub fn busy_subject(events: usize, peers: usize, now: i64) -> Subject {
    let kinds = EventKind::ALL;
    let cats = ["pricing", "docs", "blog", "comparison", "careers"];
    let ev = |i: usize| Event {
        kind: kinds[i % kinds.len()],
        at: now - (i as i64) * 3_600_000,
        category: if i.is_multiple_of(9) {
            (i % cats.len()) as u8 + 1
        } else {
            0
        },
        value: 1.0 + (i % 3) as f64,
    };
    Subject {
        lead: Lead {
            id: "bench".into(),
            tenant: "bench".into(),
            email: Some("ann.lee@acme.com".into()),
            company: Some("Acme".into()),
            domain: Some("acme.com".into()),
            country: Some("US".into()),
            job_title: Some("VP Revenue Operations".into()),
            custom: vec![CustomField {
                key: "plan".into(),
                value: "enterprise".into(),
            }],
            ..Lead::default()
        },
        attributes: vec![
            ("industry".into(), "Software".into()),
            ("employee_range".into(), "201-500".into()),
            ("seniority".into(), "vp".into()),
            ("technologies".into(), "Salesforce, HubSpot".into()),
        ],
        categories: cats.map(String::from).to_vec(),
        events: (0..events).map(ev).collect(),
        peers: (0..peers)
            .map(|p| Peer {
                id: format!("peer-{p}"),
                job_title: Some("Engineer".into()),
                seniority: None,
                events: (0..20).map(|i| ev(i * 7 + p)).collect(),
            })
            .collect(),
    }
}

pub fn run(config: &Config, calls: usize, rescore_leads: usize, rounds: usize) -> Result<()> {
    let now = leadgate::clock::now_ms();
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let component = ScorerComponent::load(&runtime, &config.score_component()?)?;
    let settings = config.score_settings(None)?;
    let native = leadgate_score::Scorer::from_json(&settings)?;
    let subject = busy_subject(200, 10, now);
    let calls = calls.clamp(100, 20_000);
    eprintln!(
        "bench score: one lead with 200 events and 10 peers (20 events each), {calls} calls per round, {rounds} rounds, median reported"
    );
    let timing = Timing {
        component: &component,
        settings: &settings,
        native: &native,
        calls,
        rounds,
        now,
    };
    for (label, subject) in [
        ("score one lead (200 events, 10 peers)", &subject),
        (
            "score one lead (no events, no peers)  ",
            &busy_subject(0, 0, now),
        ),
    ] {
        timing.report(label, subject)?;
    }

    // Re-scoring a store after a burst of events.
    let dir = std::env::temp_dir().join(format!("leadgate-bench-score-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = boosted_bench(config, &timing, &subject, &dir)
        .and_then(|()| rescore_bench(config, &dir, rescore_leads, rounds, now));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Trees in the boosted model scored.
const BENCH_TREES: usize = 500;

/// The busy lead scored with a gradient-boosted model of [`BENCH_TREES`]
/// trees, fitted on a generated history.
fn boosted_bench(
    config: &Config,
    timing: &Timing<'_>,
    subject: &Subject,
    dir: &std::path::Path,
) -> Result<()> {
    let history = dir.join("history.csv");
    leadgate_sample::write_history(&history, 5_000, 7)?;
    let model = dir.join("boosted.toml");
    leadgate::calibrate::run(
        config,
        &leadgate::calibrate::Options {
            input: history.display().to_string(),
            format: None,
            map: Vec::new(),
            outcome: "Converted".into(),
            ignore: Vec::new(),
            holdout: 0.2,
            seed: 7,
            l2: None,
            model_type: leadgate::calibrate::ModelType::Gbt,
            trees: Some(BENCH_TREES),
            placeholders: Vec::new(),
            holdout_output: None,
            output: model.clone(),
            quiet: true,
        },
    )?;
    let settings = config.score_settings(Some(&model))?;
    let native = leadgate_score::Scorer::from_json(&settings)?;
    Timing {
        settings: &settings,
        native: &native,
        ..*timing
    }
    .report(
        &format!("score one lead (200 events, 10 peers), {BENCH_TREES} trees"),
        subject,
    )
}

/// One subject scored natively and through the component, `calls` times a
/// round, rounds alternating; the medians printed.
#[derive(Clone, Copy)]
struct Timing<'a> {
    component: &'a ScorerComponent,
    settings: &'a str,
    native: &'a leadgate_score::Scorer,
    calls: usize,
    rounds: usize,
    now: i64,
}

impl Timing<'_> {
    fn report(&self, label: &str, subject: &Subject) -> Result<()> {
        let mut instance = self.component.instantiate(self.settings)?;
        let mut native_us = Vec::new();
        let mut wasm_us = Vec::new();
        for _ in 0..self.rounds {
            let t = Instant::now();
            for _ in 0..self.calls {
                std::hint::black_box(self.native.score(std::hint::black_box(subject), self.now));
            }
            native_us.push(t.elapsed().as_secs_f64() * 1e6 / self.calls as f64);
            let t = Instant::now();
            for _ in 0..self.calls {
                if instance.worn_out() {
                    instance = self.component.instantiate(self.settings)?;
                }
                std::hint::black_box(instance.score(&[subject], self.now)?);
            }
            wasm_us.push(t.elapsed().as_secs_f64() * 1e6 / self.calls as f64);
        }
        let (n, w) = (median(native_us), median(wasm_us));
        println!(
            "{label}   native {n:>8.2} µs   component {w:>8.2} µs   ratio {:.2}×",
            w / n
        );
        Ok(())
    }
}

fn rescore_bench(
    config: &Config,
    dir: &std::path::Path,
    count: usize,
    rounds: usize,
    now: i64,
) -> Result<()> {
    let input = dir.join("leads.csv");
    leadgate_sample::write(count, 13, &input, None, None)?;
    let db = dir.join("bench.db").display().to_string();
    let mut c = config.clone();
    c.enrich.enabled = false;
    c.dedupe.enabled = false;
    let t = Instant::now();
    leadgate::run::run(
        &c,
        &leadgate::run::RunOptions {
            input: input.display().to_string(),
            format: None,
            map: Vec::new(),
            output: String::new(),
            source: leadgate_lead::Source::Import,
            db: db.clone(),
            progress: false,
            quiet: true,
            import: false,
        },
    )?;
    let loaded = t.elapsed();
    let events = dir.join("events.ndjson");
    let n_events = leadgate_sample::write_events(&input, &events, 13, now)?;
    let t = Instant::now();
    let ev = leadgate::events::run(
        &c,
        &leadgate::events::Options {
            input: events.display().to_string(),
            db: db.clone(),
            pipeline: None,
            score: false,
        },
    )?;
    let ingest = t.elapsed();
    eprintln!(
        "store: {count} generated leads loaded in {:.1}s; burst of {n_events} events ({} attached) stored in {:.2}s ({:.0} events/s)",
        loaded.as_secs_f64(),
        ev.attached,
        ingest.as_secs_f64(),
        n_events as f64 / ingest.as_secs_f64()
    );
    let runtime = Runtime::new(c.runtime_limits(), c.cache_dir())?;
    let stage = leadgate::score::Stage::load(&c, &runtime, None)?;
    let mut store = leadgate_store::Store::open(&db)?;
    let mut rates = Vec::new();
    let mut in_component = Vec::new();
    let mut scored = 0;
    for round in 0..rounds {
        let mut scoring = stage.scoring(&c)?;
        let mut pipeline = leadgate::score::Pipeline::open(None)?;
        let r = leadgate::score::rescore(
            &c,
            &mut store,
            &mut scoring,
            leadgate::score::Scope::All,
            "bench",
            &mut pipeline,
            now + round as i64 * 3_600_000,
        )?;
        scored = r.scored;
        rates.push(r.scored as f64 / r.elapsed.as_secs_f64());
        in_component.push(r.scoring.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9));
        let _: Duration = r.elapsed;
    }
    println!(
        "re-score the store ({scored} leads)        {:>8.0} leads/s (component {:.0}% of the time)",
        median(rates),
        100.0 * median(in_component)
    );
    Ok(())
}
