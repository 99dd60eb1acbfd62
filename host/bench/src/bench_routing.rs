//! `leadgate-bench routing`: the routing decision per lead at 200 reps and
//! 50 territory rows against a small roster (10 reps, 5 rows) in the same
//! process; routing stored leads with their assignments and timers
//! recorded (SQLite); and firing due timers among many open ones — the
//! cost is the timers due, not the timers open.

use anyhow::Result;
use leadgate_routing::{Load, Rep, Router, RoutingConfig, Strategy, Subject, Team, Territory};
use leadgate_store::prelude::*;
use leadgate_store::routing::NewAssignment;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::{Duration, Instant};

const COUNTRIES: &[&str] = &[
    "US", "CA", "GB", "FR", "DE", "NL", "ES", "IT", "SE", "BR", "MX", "JP", "AU", "IN", "SG",
];
const INDUSTRIES: &[&str] = &[
    "Software",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Education",
];
const SIZES: &[&str] = &[
    "1-10",
    "11-50",
    "51-200",
    "201-500",
    "501-1000",
    "1001-5000",
];
const ZONES: &[&str] = &[
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Australia/Sydney",
];

/// A roster of `reps` reps in `teams` teams (strategies mixed; a tenth
/// away, hours and time zones varied) and a table of `rows` rows, the
/// last a catch-all.
pub fn roster(reps: usize, teams: usize, rows: usize) -> Result<Router> {
    let mut config = RoutingConfig {
        enabled: true,
        default_team: "t0".into(),
        fallback: vec!["t0".into()],
        ..RoutingConfig::default()
    };
    for t in 0..teams {
        config.teams.insert(
            format!("t{t}"),
            Team {
                name: format!("team {t}"),
                strategy: [
                    Strategy::RoundRobin,
                    Strategy::Weighted,
                    Strategy::LeastLoaded,
                ][t % 3],
                fallback: vec![format!("t{}", (t + 1) % teams)],
            },
        );
    }
    for r in 0..rows.saturating_sub(1) {
        config.territories.push(Territory {
            name: format!("row {r}"),
            country: vec![COUNTRIES[r % COUNTRIES.len()].into()],
            industry: if r % 2 == 0 {
                vec![INDUSTRIES[r % INDUSTRIES.len()].into()]
            } else {
                Vec::new()
            },
            employees: if r % 3 == 0 {
                vec![
                    SIZES[r % SIZES.len()].into(),
                    SIZES[(r + 1) % SIZES.len()].into(),
                ]
            } else {
                Vec::new()
            },
            team: format!("t{}", r % teams),
            ..Territory::default()
        });
    }
    config.territories.push(Territory {
        name: "rest".into(),
        team: "t0".into(),
        ..Territory::default()
    });
    let reps: Vec<Rep> = (0..reps)
        .map(|i| Rep {
            id: format!("rep-{i:04}"),
            name: format!("Rep {i}"),
            email: None,
            crm_owner_id: Some(format!("{}", 9000 + i)),
            slack_id: None,
            teams: vec![format!("t{}", i % teams)],
            timezone: ZONES[i % ZONES.len()].into(),
            hours: if i % 4 == 0 {
                "mon-fri 08:00-20:00".into()
            } else {
                String::new()
            },
            capacity_per_day: Some(10_000),
            max_open: Some(50_000),
            weight: 1 + (i % 3) as u32,
            away: i % 10 == 9,
            away_until: None,
        })
        .collect();
    Ok(Router::new(config, reps)?)
}

pub fn subjects(n: usize) -> Vec<Subject> {
    (0..n)
        .map(|i| Subject {
            lead_id: format!("l{i}"),
            country: Some(COUNTRIES[(i * 7) % COUNTRIES.len()].into()),
            region: None,
            industry: Some(INDUSTRIES[(i * 5) % INDUSTRIES.len()].into()),
            employee_range: Some(SIZES[(i * 3) % SIZES.len()].into()),
            source: Some("form".into()),
            grade: Some(["A", "B", "C", "D"][i % 4].into()),
            owner_id: (i % 20 == 0).then(|| format!("{}", 9000 + i % 200)),
            account_owner: None,
        })
        .collect()
}

/// Median microseconds per lead to route and count `leads` against `router`.
fn per_lead(router: &Router, leads: &[Subject], rounds: usize, now: i64) -> f64 {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut roster = router.roster(&HashMap::<String, Load>::new(), now);
        let started = Instant::now();
        for s in leads {
            let d = router.route(&roster, s, &[]);
            router.apply(&mut roster, &d);
            black_box(&d);
        }
        times.push(started.elapsed().as_secs_f64() * 1e6 / leads.len() as f64);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn run(leads: usize, rounds: usize, timers: usize) -> Result<()> {
    let now = 1_796_637_600_000; // Monday 2026-12-07 10:00 UTC
    let subjects = subjects(leads);
    let big = roster(200, 20, 50)?;
    let small = roster(10, 2, 5)?;
    // Interleaved, so both see the same machine.
    let mut b = Vec::new();
    let mut s = Vec::new();
    for _ in 0..rounds {
        s.push(per_lead(&small, &subjects, 1, now));
        b.push(per_lead(&big, &subjects, 1, now));
    }
    b.sort_by(f64::total_cmp);
    s.sort_by(f64::total_cmp);
    let (b, s) = (b[b.len() / 2], s[s.len() / 2]);
    println!(
        "routing decision, {leads} leads × {rounds} rounds (median): 200 reps / 50 rows {b:.2} µs/lead · 10 reps / 5 rows {s:.2} µs/lead · ratio {:.2}",
        b / s
    );

    // Recorded: assignments, counters and timers in a SQLite store, in
    // transactions of 512 leads as the service's batches.
    let dir = std::env::temp_dir().join(format!("leadgate-bench-routing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("routing.db");
    let mut store = leadgate_store::Store::open(&path.to_string_lossy())?;
    let reps: Vec<(String, String)> = big
        .reps()
        .iter()
        .map(|r| Ok((r.id.clone(), serde_json::to_string(r)?)))
        .collect::<Result<_, serde_json::Error>>()?;
    store.seed_reps("bench", &reps, now)?;
    let recorded = leads.min(20_000);
    let mut roster = big.roster(&HashMap::new(), now);
    let started = Instant::now();
    for chunk in subjects[..recorded].chunks(512) {
        let mut batch = store.batch()?;
        for s in chunk {
            let d = big.route(&roster, s, &[]);
            big.apply(&mut roster, &d);
            let explanation = serde_json::to_string(&d)?;
            let day = d
                .rep
                .as_deref()
                .and_then(|r| roster.day(&big, r))
                .unwrap_or_default()
                .to_string();
            let due = now + i64::from(d.sla_minutes) * 60_000;
            batch.assign(
                "bench",
                &NewAssignment {
                    lead_id: &s.lead_id,
                    rep_id: d.rep.as_deref(),
                    rep_day: &day,
                    turn: d.rep.as_deref().map_or(0, |r| roster.turn(&big, r)),
                    team: &d.team,
                    step: "territory",
                    state: if d.rep.is_some() { "open" } else { "queued" },
                    explanation: &explanation,
                    domain: None,
                    company_key: None,
                    sla_due_at: Some(due),
                    assigned_by: "bench",
                    timer: Some(("sla", due)),
                },
                now,
            )?;
        }
        batch.commit()?;
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / recorded as f64;
    println!(
        "routed and recorded (SQLite, 512 leads a transaction: explanation, counters, timer): {per:.1} µs/lead over {recorded} leads"
    );

    // Timers: `timers` open, a tick with none due, then with the first due.
    let extra = timers.saturating_sub(recorded);
    {
        let mut batch = store.batch()?;
        for i in 0..extra {
            batch.start_timer("bench", "sla", i as i64, now + 86_400_000 + i as i64)?;
        }
        batch.commit()?;
    }
    let open = store.pending_timers("bench")?;
    let tick = |store: &mut leadgate_store::Store, at: i64| -> Result<(usize, Duration)> {
        let started = Instant::now();
        let due = store.claim_due_timers("bench", "bench-host", 60_000, at, 500)?;
        for t in &due {
            store.finish_timer(t.id, at)?;
        }
        Ok((due.len(), started.elapsed()))
    };
    let mut idle = Vec::new();
    for _ in 0..rounds {
        idle.push(tick(&mut store, now)?.1);
    }
    idle.sort();
    // The earliest SLA timers (grade A's) come due first.
    let mut due_times: BTreeMap<i64, usize> = BTreeMap::new();
    for s in &subjects[..recorded] {
        let minutes = big.config().sla.minutes_for(s.grade.as_deref());
        *due_times
            .entry(now + i64::from(minutes) * 60_000)
            .or_default() += 1;
    }
    let first = due_times.keys().next().copied().unwrap_or(now);
    let (fired, busy) = tick(&mut store, first)?;
    println!(
        "tick among {open} open timers: none due {:.0} µs (median of {rounds}) · {fired} due {:.1} ms ({:.0} µs per timer fired)",
        idle[idle.len() / 2].as_secs_f64() * 1e6,
        busy.as_secs_f64() * 1e3,
        busy.as_secs_f64() * 1e6 / fired.max(1) as f64
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
