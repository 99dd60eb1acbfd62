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
const CATEGORIES: &[&str] = &["pricing", "docs", "blog", "careers", "product"];
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
        ("product", 2),
        ("careers", 2),
        ("product", 3),
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
