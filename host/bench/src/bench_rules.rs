//! `leadgate-bench rules`: workflow rules run over events in memory — 20
//! active rules (event windows with CEL conditions, single events,
//! inactivity timers, score and stage triggers) against one rule with no
//! condition, rounds interleaved in one process; then a scheduler pass
//! among many armed inactivity timers with none due and with some due.

use anyhow::{Result, anyhow};
use leadgate_lead::Lead;
use leadgate_lead::score::{EventKind, Scored};
use leadgate_rules::RuleSet;
use leadgate_rules::engine::{Engine, EventIn, LeadState};
use std::hint::black_box;
use std::time::Instant;

const H: i64 = 3_600_000;
const T0: i64 = 1_780_000_000_000;
const COUNTRIES: &[&str] = &["US", "FR", "DE", "GB", "JP"];
const CATEGORIES: &[&str] = &["pricing", "docs", "blog", "careers", "demo"];
const KINDS: &[EventKind] = &[
    EventKind::PageView,
    EventKind::PageView,
    EventKind::PageView,
    EventKind::EmailOpen,
    EventKind::EmailClick,
    EventKind::ContentDownload,
    EventKind::FormSubmission,
];

/// Twenty rules of every kind, most with a condition.
fn twenty() -> String {
    let mut doc = String::new();
    for (i, (cat, count)) in [
        ("pricing", 2),
        ("pricing", 3),
        ("docs", 2),
        ("docs", 3),
        ("blog", 3),
        ("demo", 2),
        ("careers", 2),
        ("demo", 3),
    ]
    .iter()
    .enumerate()
    {
        doc.push_str(&format!(
            "[[rule]]\nid = \"window-{i}\"\ntrigger = {{ on = \"event\", events = [\"page_view\"], categories = [\"{cat}\"], count = {count}, within = \"48h\" }}\nwhen = 'score.total >= {} && lead.country != \"JP\"'\nenrol = {{ policy = \"cooldown\", period = \"7d\" }}\nactions = [{{ type = \"alert\", message = \"m\" }}, {{ type = \"score\", points = 5, reason = \"r\" }}]\n\n",
            i * 5
        ));
    }
    for (i, kind) in [
        "email_open",
        "email_click",
        "content_download",
        "form_submission",
    ]
    .iter()
    .enumerate()
    {
        doc.push_str(&format!(
            "[[rule]]\nid = \"single-{i}\"\ntrigger = {{ on = \"event\", events = [\"{kind}\"] }}\nwhen = 'has(enrichment.industry) && enrichment.industry == \"software\" || score.grade == \"A\"'\nenrol = {{ policy = \"every\" }}\nactions = [{{ type = \"alert\", message = \"m\" }}]\n\n"
        ));
    }
    for i in 0..2 {
        doc.push_str(&format!(
            "[[rule]]\nid = \"inactive-{i}\"\ntrigger = {{ on = \"inactivity\", after = \"{}d\" }}\nenrol = {{ policy = \"every\" }}\nactions = [{{ type = \"review\", reason = \"r\" }}]\n\n",
            20 + i * 10
        ));
    }
    for i in 0..2 {
        doc.push_str(&format!(
            "[[rule]]\nid = \"hot-{i}\"\ntrigger = {{ on = \"score_crossed\", above = {} }}\nactions = [{{ type = \"sequence\", sequence = \"s{i}\" }}]\n\n",
            70 + i * 10
        ));
    }
    for (i, country) in COUNTRIES.iter().take(2).enumerate() {
        doc.push_str(&format!(
            "[[rule]]\nid = \"created-{i}\"\ntrigger = {{ on = \"lead_created\" }}\nwhen = 'lead.country == \"{country}\"'\nactions = [{{ type = \"assign\" }}]\n\n"
        ));
    }
    for i in 0..2 {
        doc.push_str(&format!(
            "[[rule]]\nid = \"stage-{i}\"\ntrigger = {{ on = \"stage_changed\", to = [\"{}\"] }}\nactions = [{{ type = \"stage\", to = \"x\" }}]\n\n",
            ["opportunity", "customer"][i]
        ));
    }
    doc
}

const ONE: &str = "[[rule]]\nid = \"one\"\ntrigger = { on = \"event\", events = [\"page_view\"] }\nenrol = { policy = \"every\" }\nactions = [{ type = \"alert\", message = \"m\" }]\n";

fn parse(text: &str) -> Result<RuleSet> {
    leadgate_rules::parse("bench.toml", text).map_err(|e| {
        anyhow!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// A small deterministic generator (the same stream every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() as usize) % n.max(1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() as usize) % xs.len()]
    }
}

fn lead_state(i: usize, rng: &mut Lcg) -> LeadState {
    LeadState {
        lead: Lead {
            email: Some(format!("p{i}@c{}.example", i % 997)),
            country: Some(rng.pick(COUNTRIES).to_string()),
            company: Some(format!("Company {}", i % 997)),
            job_title: Some("Head of Operations".into()),
            ..Lead::default()
        },
        enrichment: vec![
            (
                "industry".into(),
                ["software", "retail", "finance"][i % 3].into(),
            ),
            ("employee_range".into(), "51-200".into()),
        ],
        score: Some(Scored {
            total: (rng.next() % 90) as u8,
            grade: ["A", "B", "C", "D"][i % 4].into(),
            fit: 0.5,
            engagement: 0.3,
            intent: 0.2,
            probability: None,
            reasons: Vec::new(),
        }),
        stage: None,
        qualification: Some("qualified".into()),
    }
}

fn events(leads: usize, n: usize) -> Vec<(String, EventIn)> {
    let mut rng = Lcg(11);
    let span = 30 * 24 * H;
    (0..n)
        .map(|i| {
            let lead = (rng.next() as usize) % leads;
            let kind = *rng.pick(KINDS);
            let at = T0 + (i as i64) * span / (n as i64);
            let category = (kind == EventKind::PageView).then(|| rng.pick(CATEGORIES).to_string());
            (
                format!("l{lead}"),
                EventIn {
                    id: format!("e{i}"),
                    kind,
                    category,
                    url: None,
                    at,
                },
            )
        })
        .collect()
}

/// One round: a fresh engine, the leads created, then every event timed.
fn round(rules: &RuleSet, leads: usize, stream: &[(String, EventIn)]) -> (f64, usize) {
    let mut rng = Lcg(7);
    let mut e = Engine::new(rules.clone());
    for i in 0..leads {
        black_box(e.lead(&format!("l{i}"), lead_state(i, &mut rng), T0 - H));
    }
    let mut fired = 0;
    let started = Instant::now();
    for (lead, ev) in stream {
        fired += black_box(e.event(lead, ev.clone(), ev.at)).len();
    }
    (
        started.elapsed().as_secs_f64() * 1e6 / stream.len() as f64,
        fired,
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

pub fn run(leads: usize, n: usize, rounds: usize, timers: usize) -> Result<()> {
    let many = parse(&twenty())?;
    let one = parse(ONE)?;
    anyhow::ensure!(
        many.rules.len() == 20,
        "twenty rules, not {}",
        many.rules.len()
    );
    let stream = events(leads, n);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut fired = 0;
    for _ in 0..rounds {
        let (x, f) = round(&many, leads, &stream);
        a.push(x);
        fired = f;
        b.push(round(&one, leads, &stream).0);
    }
    let (a, b) = (median(a), median(b));
    println!(
        "rules per event, {n} events over {leads} leads × {rounds} rounds (median): 20 rules {a:.2} µs/event ({fired} executions) · 1 rule, no condition {b:.2} µs/event · ratio {:.2}",
        a / b
    );
    // A scheduler pass among many armed inactivity timers.
    let mut e = Engine::new(many);
    let mut rng = Lcg(5);
    for i in 0..timers {
        e.lead(
            &format!("t{i}"),
            lead_state(i, &mut rng),
            T0 + (i as i64) * 1_000,
        );
    }
    let armed = e.pending_timers();
    let started = Instant::now();
    let none = e.advance(T0 + H).len();
    let quiet = started.elapsed();
    let started = Instant::now();
    // 20 days after the first 500 leads were created.
    let due = e.advance(T0 + 20 * 24 * H + 499 * 1_000).len();
    let busy = started.elapsed();
    println!(
        "scheduler among {armed} armed inactivity timers: none due {:.1} µs ({none} fired) · {due} due {:.2} ms ({:.1} µs a timer)",
        quiet.as_secs_f64() * 1e6,
        busy.as_secs_f64() * 1e3,
        busy.as_secs_f64() * 1e6 / due.max(1) as f64
    );
    Ok(())
}

/// The rules against a SQLite store: events through intake (stored,
/// attached) alone, against intake and the twenty rules (each touched
/// lead run, its record and executions written, the local actions carried
/// out), in one process; then a scheduler tick among `timers` leads with
/// an armed timer, against one among a hundredth of them.
pub fn run_store(leads: usize, events: usize, timers: usize, rounds: usize) -> Result<()> {
    use leadgate_store::prelude::*;
    let dir = std::env::temp_dir().join(format!("leadgate-bench-rules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("rules.toml"), twenty())?;
    std::fs::write(
        dir.join("leadgate.toml"),
        "tenant = \"bench\"\n[rules]\nfiles = [\"rules.toml\"]\n",
    )?;
    let config = leadgate_pipeline::config::Config::load(Some(&dir.join("leadgate.toml")))?;
    let path = dir.join("rules.db");
    let location = path.to_string_lossy().to_string();
    drop(leadgate_store::Store::open(&location)?);
    {
        let mut c = rusqlite::Connection::open(&path)?;
        let tx = c.transaction()?;
        {
            let mut s = tx.prepare(
                "INSERT INTO leads (id, tenant, source, received_at, raw, normalized, status, updated_at)
                 VALUES (?1, 'bench', 'form', 1, '{}', ?2, 'accepted', 1)",
            )?;
            for i in 0..leads {
                let lead = serde_json::json!({"source": "form", "email": format!("p{i}@acme{}.io", i % 97), "country": COUNTRIES[i % COUNTRIES.len()]});
                s.execute(rusqlite::params![format!("l{i}"), lead.to_string()])?;
            }
        }
        tx.commit()?;
    }
    let mut store = leadgate_store::Store::open(&location)?;
    let now = leadgate_pipeline::clock::now_ms();
    let runner = leadgate_pipeline::rules::Runner::open(&config, &mut store, now)?
        .ok_or_else(|| anyhow!("the bench config has no rules"))?;
    let mut rng = Lcg(11);
    let mut next = 0usize;
    let mut batch_of = |n: usize, rng: &mut Lcg| -> Vec<leadgate_store::score::NewEvent> {
        (0..n)
            .map(|_| {
                next += 1;
                let kind = KINDS[rng.below(KINDS.len())];
                leadgate_store::score::NewEvent {
                    id: format!("e{next}"),
                    kind: kind.as_str(),
                    at: now - (rng.below(96) as i64) * H,
                    category: (kind == EventKind::PageView)
                        .then(|| CATEGORIES[rng.below(CATEGORIES.len())].to_string()),
                    value: 1.0,
                    url: None,
                    email: None,
                    lead_ref: Some(format!("l{}", rng.below(leads))),
                    external: None,
                    payload: "{}".into(),
                }
            })
            .collect()
    };
    const CHUNK: usize = 5_000;
    let (mut alone, mut with_rules) = (Vec::new(), Vec::new());
    let mut executions = 0;
    for _ in 0..rounds {
        // Intake alone.
        let started = Instant::now();
        for _ in 0..events / CHUNK {
            let evs = batch_of(CHUNK, &mut rng);
            store.insert_events("bench", &evs, now)?;
        }
        alone.push(started.elapsed().as_secs_f64());
        // Intake, then the rules over what it touched, as `leadgate events`.
        let started = Instant::now();
        for _ in 0..events / CHUNK {
            let evs = batch_of(CHUNK, &mut rng);
            let r = store.insert_events("bench", &evs, now)?;
            leadgate_pipeline::rules::queue(
                &config,
                &mut store,
                &r.leads,
                leadgate_pipeline::rules::cause::EVENTS,
                now,
            )?;
            let claim = leadgate_store::service::Claim {
                holder: "bench",
                lease_ms: 60_000,
            };
            let pass = runner.run(&mut store, claim, now, None)?;
            executions += pass.executions;
            runner.perform(&config, &mut store, claim, now, 100_000, None)?;
        }
        with_rules.push(started.elapsed().as_secs_f64());
    }
    let per_s = |t: f64| (events / CHUNK * CHUNK) as f64 / t;
    let (a, b) = (median(alone), median(with_rules));
    println!(
        "events through intake (SQLite, {CHUNK} a transaction, {leads} leads, median of {rounds}): alone {:.0} events/s · with 20 rules run and their local actions {:.0} events/s ({executions} executions) · ratio {:.2}",
        per_s(a),
        per_s(b),
        b / a
    );

    // Scheduler: a tick with none due, then the first 500 due, among
    // `timers` armed leads and among a hundredth of them.
    let tick = |timers: usize| -> Result<(f64, f64, usize)> {
        let path = dir.join(format!("timers-{timers}.db"));
        let mut store = leadgate_store::Store::open(&path.to_string_lossy())?;
        for chunk in (0..timers).collect::<Vec<_>>().chunks(20_000) {
            let mut batch = store.batch()?;
            for i in chunk {
                let c = leadgate_store::rules::RulesCommit {
                    lead_id: format!("t{i}"),
                    read_version: None,
                    state: "{}".into(),
                    due_at: Some(now + H + *i as i64 * 1_000),
                    executions: Vec::new(),
                    inbox: Vec::new(),
                };
                batch.commit_rules("bench", &c, now)?;
            }
            batch.commit()?;
        }
        let mut idle = Vec::new();
        for _ in 0..rounds.max(3) {
            let started = Instant::now();
            let due = store.claim_due_rule_leads("bench", "bench", 60_000, now, 500)?;
            idle.push(started.elapsed().as_secs_f64());
            black_box(due);
        }
        let started = Instant::now();
        let due = store.claim_due_rule_leads("bench", "bench", 60_000, now + H + 499_000, 500)?;
        let busy = started.elapsed().as_secs_f64();
        Ok((median(idle), busy, due.len()))
    };
    let small = (timers / 100).max(1);
    let (idle_small, busy_small, _) = tick(small)?;
    let (idle_big, busy_big, due) = tick(timers)?;
    println!(
        "scheduler tick (SQLite): among {timers} armed leads none due {:.1} µs, {due} due {:.2} ms · among {small}: {:.1} µs, {:.2} ms · ratios {:.2} and {:.2}",
        idle_big * 1e6,
        busy_big * 1e3,
        idle_small * 1e6,
        busy_small * 1e3,
        idle_big / idle_small,
        busy_big / busy_small
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
