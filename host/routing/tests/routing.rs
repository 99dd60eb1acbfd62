//! The router's decisions on small rosters: every step, every skip reason,
//! the fallback chain, and the strategies' long-run shares.

#![allow(clippy::unwrap_used)]

use leadgate_routing::*;
use std::collections::HashMap;

/// Monday 2026-12-07 10:00 UTC.
const MONDAY_10_UTC: i64 = 1_796_637_600_000;

fn config(text: &str) -> RoutingConfig {
    toml::from_str(text).unwrap()
}

fn rep(id: &str, teams: &[&str]) -> Rep {
    Rep {
        id: id.into(),
        name: id.to_uppercase(),
        email: None,
        crm_owner_id: None,
        slack_id: None,
        teams: teams.iter().map(|t| t.to_string()).collect(),
        timezone: "UTC".into(),
        hours: String::new(),
        capacity_per_day: None,
        max_open: None,
        weight: 1,
        away: false,
        away_until: None,
    }
}

const TEAMS: &str = r#"
enabled = true
default_team = "sales"
fallback = ["managers"]
[teams.sales]
[teams.emea]
fallback = ["sales"]
[teams.managers]
"#;

fn lead(country: &str) -> Subject {
    Subject {
        lead_id: "l-1".into(),
        country: Some(country.into()),
        grade: Some("A".into()),
        ..Subject::default()
    }
}

#[test]
fn monday_constant_is_monday_ten() {
    let z = jiff::Timestamp::from_millisecond(MONDAY_10_UTC)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC);
    assert_eq!(z.weekday(), jiff::civil::Weekday::Monday);
    assert_eq!(z.hour(), 10);
}

#[test]
fn territory_table_first_match_wins_with_a_catch_all() {
    let mut c = config(TEAMS);
    c.territories = toml::from_str::<HashMap<String, Vec<Territory>>>(
        r#"rows = [
            { name = "dach-enterprise", country = ["DE", "AT", "CH"], employees = ["1001-5000"], team = "managers" },
            { name = "emea", country = ["fr", "DE", "GB"], team = "emea" },
            { name = "rest", team = "sales" },
        ]"#,
    )
    .unwrap()
    .remove("rows")
    .unwrap();
    let router = Router::new(
        c,
        vec![
            rep("ana", &["sales"]),
            rep("eva", &["emea"]),
            rep("max", &["managers"]),
        ],
    )
    .unwrap();
    let roster = router.roster(&HashMap::new(), MONDAY_10_UTC);
    let d = router.route(&roster, &lead("FR"), &[]);
    assert_eq!(
        (d.rep.as_deref(), d.team.as_str(), d.step),
        (Some("eva"), "emea", Step::Territory)
    );
    assert!(
        d.rule.contains("\"emea\" (row 2)") && d.rule.contains("country=fr|DE|GB"),
        "{}",
        d.rule
    );
    let mut big = lead("DE");
    big.employee_range = Some("1001-5000".into());
    assert_eq!(router.route(&roster, &big, &[]).rep.as_deref(), Some("max"));
    let d = router.route(&roster, &lead("US"), &[]);
    assert_eq!((d.rep.as_deref(), d.step), (Some("ana"), Step::Territory));
    assert!(d.rule.contains("catch-all"), "{}", d.rule);
    assert_eq!(d.sla_minutes, 15);
}

#[test]
fn no_matching_row_goes_to_the_default_team() {
    let router = Router::new(config(TEAMS), vec![rep("ana", &["sales"])]).unwrap();
    let roster = router.roster(&HashMap::new(), MONDAY_10_UTC);
    let mut l = lead("US");
    l.grade = Some("C".into());
    let d = router.route(&roster, &l, &[]);
    assert_eq!(
        (d.rep.as_deref(), d.step, d.sla_minutes),
        (Some("ana"), Step::Default, 240)
    );
}

#[test]
fn the_owner_then_the_account_owner_win_when_available() {
    let mut ana = rep("ana", &["sales"]);
    ana.crm_owner_id = Some("900".into());
    let mut bo = rep("bo", &["sales"]);
    bo.away = true;
    let router = Router::new(config(TEAMS), vec![ana, bo, rep("cy", &["sales"])]).unwrap();
    let roster = router.roster(&HashMap::new(), MONDAY_10_UTC);
    let mut l = lead("US");
    l.owner_id = Some("900".into());
    l.account_owner = Some(AccountOwner {
        rep: "cy".into(),
        via: "lead l-0 of domain acme.com".into(),
    });
    let d = router.route(&roster, &l, &[]);
    assert_eq!((d.rep.as_deref(), d.step), (Some("ana"), Step::Owner));
    // An unknown owner id falls through to the account's owner.
    l.owner_id = Some("404".into());
    let d = router.route(&roster, &l, &[]);
    assert_eq!((d.rep.as_deref(), d.step), (Some("cy"), Step::Account));
    assert_eq!(d.candidates[0].outcome, "unknown_owner");
    assert!(d.rule.contains("acme.com"));
    // An account owner who is away: the territory decides, and says so.
    l.account_owner = Some(AccountOwner {
        rep: "bo".into(),
        via: "x".into(),
    });
    let d = router.route(&roster, &l, &[]);
    assert_eq!(d.step, Step::Default);
    assert!(
        d.candidates
            .iter()
            .any(|c| c.rep == "bo" && c.outcome == "away")
    );
    assert_ne!(d.rep.as_deref(), Some("bo"));
}

#[test]
fn away_outside_hours_and_capacity_are_skipped_with_reasons() {
    let mut away = rep("a-away", &["sales"]);
    away.away = true;
    let mut back = rep("b-back", &["sales"]);
    back.away = true;
    back.away_until = Some(MONDAY_10_UTC - 1);
    back.capacity_per_day = Some(2);
    let mut asleep = rep("c-tokyo", &["sales"]);
    asleep.timezone = "Asia/Tokyo".into(); // 19:00 there
    asleep.hours = "mon-fri 09:00-18:00".into();
    let mut full = rep("d-full", &["sales"]);
    full.max_open = Some(3);
    let router = Router::new(config(TEAMS), vec![away, back, asleep, full]).unwrap();
    let loads = HashMap::from([
        (
            "b-back".to_string(),
            Load {
                day: "2026-12-07".into(),
                today: 1,
                ..Load::default()
            },
        ),
        (
            "d-full".to_string(),
            Load {
                open: 3,
                ..Load::default()
            },
        ),
    ]);
    let mut roster = router.roster(&loads, MONDAY_10_UTC);
    let d = router.route(&roster, &lead("US"), &[]);
    assert_eq!(d.rep.as_deref(), Some("b-back"), "{d:?}");
    let why: HashMap<&str, &str> = d
        .candidates
        .iter()
        .map(|c| (c.rep.as_str(), c.outcome.as_str()))
        .collect();
    assert_eq!(why["a-away"], "away");
    assert_eq!(why["c-tokyo"], "outside_hours");
    assert_eq!(why["d-full"], "open_capacity");
    let tokyo = d.candidates.iter().find(|c| c.rep == "c-tokyo").unwrap();
    assert!(
        tokyo.detail.contains("Mon 19:00 Asia/Tokyo"),
        "{}",
        tokyo.detail
    );
    router.apply(&mut roster, &d);
    // b-back is now at 2/2 today: no one in sales, so the fallback team.
    let d = router.route(&roster, &lead("US"), &[]);
    assert_eq!(
        (d.rep, d.team.as_str(), d.step),
        (None, "unassigned", Step::Queue)
    );
    assert!(
        d.candidates
            .iter()
            .any(|c| c.rep == "b-back" && c.outcome == "daily_capacity")
    );
    assert!(d.rule.contains("\"sales\", \"managers\""), "{}", d.rule);
    // Yesterday's count does not hold today's capacity.
    let loads = HashMap::from([(
        "b-back".to_string(),
        Load {
            day: "2026-12-06".into(),
            today: 2,
            ..Load::default()
        },
    )]);
    let roster = router.roster(&loads, MONDAY_10_UTC);
    assert_eq!(
        router.route(&roster, &lead("US"), &[]).rep.as_deref(),
        Some("b-back")
    );
}

#[test]
fn the_fallback_chain_is_walked_in_order_and_ends_in_the_queue() {
    let mut c = config(TEAMS);
    c.territories = vec![Territory {
        name: "emea".into(),
        country: vec!["FR".into()],
        team: "emea".into(),
        ..Territory::default()
    }];
    let mut eva = rep("eva", &["emea"]);
    eva.away = true;
    let router = Router::new(
        c.clone(),
        vec![
            eva.clone(),
            rep("ana", &["sales"]),
            rep("max", &["managers"]),
        ],
    )
    .unwrap();
    let roster = router.roster(&HashMap::new(), MONDAY_10_UTC);
    // emea's own fallback (sales) comes before the global one (managers).
    let d = router.route(&roster, &lead("FR"), &[]);
    assert_eq!(
        (d.rep.as_deref(), d.team.as_str(), d.step),
        (Some("ana"), "sales", Step::Fallback)
    );
    let d = router.route(&roster, &lead("FR"), &["ana".to_string()]);
    assert_eq!(
        (d.rep.as_deref(), d.team.as_str()),
        (Some("max"), "managers")
    );
    let d = router.route(
        &roster,
        &lead("FR"),
        &["ana".to_string(), "max".to_string()],
    );
    assert_eq!((d.rep, d.step), (None, Step::Queue));
    assert_eq!(
        d.candidates
            .iter()
            .filter(|c| c.outcome == "excluded")
            .count(),
        2
    );
}

#[test]
fn round_robin_takes_turns_and_skips_who_cannot_take_one() {
    let mut bo = rep("bo", &["sales"]);
    bo.away = true;
    let router = Router::new(
        config(TEAMS),
        vec![rep("ana", &["sales"]), bo, rep("cy", &["sales"])],
    )
    .unwrap();
    // One batch: every lead at the same instant.
    let mut roster = router.roster(&HashMap::new(), MONDAY_10_UTC);
    let mut got = Vec::new();
    for _ in 0..4 {
        let d = router.route(&roster, &lead("US"), &[]);
        router.apply(&mut roster, &d);
        got.push(d.rep.unwrap());
    }
    assert_eq!(got, ["ana", "cy", "ana", "cy"]);
    // The next batch goes on from the turns counted (as the store keeps them).
    let loads: HashMap<String, Load> = ["ana", "cy"]
        .iter()
        .map(|r| (r.to_string(), roster.load(&router, r).unwrap().clone()))
        .collect();
    let roster = router.roster(&loads, MONDAY_10_UTC);
    assert_eq!(
        router.route(&roster, &lead("US"), &[]).rep.as_deref(),
        Some("ana")
    );
}

#[test]
fn weighted_shares_converge_to_the_weights() {
    let mut c = config(TEAMS);
    c.teams.get_mut("sales").unwrap().strategy = Strategy::Weighted;
    let reps: Vec<Rep> = [1, 2, 3, 4]
        .iter()
        .map(|w| {
            let mut r = rep(&format!("r{w}"), &["sales"]);
            r.weight = *w;
            r
        })
        .collect();
    let router = Router::new(c, reps).unwrap();
    // Uneven starting counts: shares still converge.
    let loads = HashMap::from([(
        "r1".to_string(),
        Load {
            total: 40,
            ..Load::default()
        },
    )]);
    let mut roster = router.roster(&loads, MONDAY_10_UTC);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for k in 0..10_000 {
        roster.now = MONDAY_10_UTC + k;
        let d = router.route(&roster, &lead("US"), &[]);
        router.apply(&mut roster, &d);
        *counts.entry(d.rep.unwrap()).or_default() += 1;
    }
    for w in 1..=4u32 {
        let share = f64::from(counts[&format!("r{w}")]) / 10_000.0;
        let want = f64::from(w) / 10.0;
        assert!((share - want).abs() <= 0.02, "r{w}: {share} vs {want}");
    }
}

#[test]
fn least_loaded_prefers_the_fewest_open() {
    let mut c = config(TEAMS);
    c.teams.get_mut("sales").unwrap().strategy = Strategy::LeastLoaded;
    let router = Router::new(c, vec![rep("ana", &["sales"]), rep("bo", &["sales"])]).unwrap();
    let loads = HashMap::from([
        (
            "ana".to_string(),
            Load {
                open: 5,
                ..Load::default()
            },
        ),
        (
            "bo".to_string(),
            Load {
                open: 2,
                ..Load::default()
            },
        ),
    ]);
    let roster = router.roster(&loads, MONDAY_10_UTC);
    let d = router.route(&roster, &lead("US"), &[]);
    assert_eq!(d.rep.as_deref(), Some("bo"));
    assert!(d.distribution.contains("2 awaiting"), "{}", d.distribution);
}

#[test]
fn bad_tables_are_refused_naming_the_key() {
    let mut c = config(TEAMS);
    c.territories = vec![Territory {
        team: "nowhere".into(),
        ..Territory::default()
    }];
    let e = Router::new(c, vec![]).unwrap_err().to_string();
    assert!(
        e.contains("routing.territories[0].team") && e.contains("nowhere"),
        "{e}"
    );
    let mut c = config(TEAMS);
    c.default_team = "ghost".into();
    assert!(
        Router::new(c, vec![])
            .unwrap_err()
            .to_string()
            .contains("routing.default_team")
    );
    let mut bad = rep("x", &["sales"]);
    bad.hours = "someday".into();
    assert!(
        Router::new(config(TEAMS), vec![bad])
            .unwrap_err()
            .to_string()
            .contains("hours")
    );
}
