#![allow(clippy::unwrap_used)]

use super::*;
use leadgate_lead::score::{Event, EventKind, Peer, Subject};
use leadgate_lead::{CustomField, Lead};

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_790_000_000_000;

/// The categories every test subject's events refer to.
const CATEGORIES: [&str; 3] = ["pricing", "careers", "docs"];

fn ev(kind: EventKind, days_ago: f64, category: Option<&str>) -> Event {
    Event {
        kind,
        at: NOW - (days_ago * DAY as f64) as i64,
        category: category.map_or(0, |c| {
            CATEGORIES
                .iter()
                .position(|x| *x == c)
                .map_or(0, |i| i as u8 + 1)
        }),
        value: 1.0,
    }
}

fn subject(events: Vec<Event>) -> Subject {
    Subject {
        lead: Lead {
            id: "l1".into(),
            domain: Some("acme.com".into()),
            country: Some("US".into()),
            job_title: Some("VP Revenue Operations".into()),
            ..Lead::default()
        },
        attributes: vec![
            ("industry".into(), "Software".into()),
            ("employee_range".into(), "51-200".into()),
        ],
        categories: CATEGORIES.map(String::from).to_vec(),
        events,
        peers: Vec::new(),
    }
}

fn scorer(json: &str) -> Scorer {
    Scorer::from_json(json).unwrap()
}

#[test]
fn decay_halves_an_event_every_half_life() {
    let s = scorer(r#"{"half_life_days": 10, "engagement_scale": 1000}"#);
    let fresh = s.score(
        &subject(vec![ev(EventKind::FormSubmission, 0.0, None)]),
        NOW,
    );
    let old = s.score(
        &subject(vec![ev(EventKind::FormSubmission, 10.0, None)]),
        NOW,
    );
    let older = s.score(
        &subject(vec![ev(EventKind::FormSubmission, 20.0, None)]),
        NOW,
    );
    // With a large scale engagement is nearly linear in decayed points.
    let ratio = old.engagement / fresh.engagement;
    assert!((ratio - 0.5).abs() < 0.01, "{ratio}");
    let ratio = older.engagement / fresh.engagement;
    assert!((ratio - 0.25).abs() < 0.01, "{ratio}");
    // The same events scored later are worth less: the clock is the caller's.
    let later = s.score(
        &subject(vec![ev(EventKind::FormSubmission, 0.0, None)]),
        NOW + 10 * DAY,
    );
    assert!((later.engagement - old.engagement).abs() < 1e-9);
}

#[test]
fn future_events_count_as_now_and_nothing_is_not_engagement() {
    let s = scorer("{}");
    let none = s.score(&subject(vec![]), NOW);
    assert_eq!(none.engagement, 0.0);
    assert_eq!(none.intent, 0.0);
    let future = s.score(&subject(vec![ev(EventKind::Reply, -3.0, None)]), NOW);
    let now = s.score(&subject(vec![ev(EventKind::Reply, 0.0, None)]), NOW);
    assert_eq!(future.engagement, now.engagement);
}

#[test]
fn pricing_views_outweigh_careers_views() {
    let s = scorer("{}");
    let pricing = s.score(
        &subject(vec![ev(EventKind::PageView, 1.0, Some("pricing")); 3]),
        NOW,
    );
    let careers = s.score(
        &subject(vec![ev(EventKind::PageView, 1.0, Some("careers")); 3]),
        NOW,
    );
    assert!(pricing.engagement > careers.engagement);
    assert_eq!(careers.engagement, 0.0);
    assert!(pricing.intent > 0.0 && careers.intent == 0.0);
    let r = pricing
        .reasons
        .iter()
        .find(|r| r.code == "engagement.page_view.pricing")
        .unwrap();
    assert!(r.detail.contains("3 pricing page views"), "{}", r.detail);
}

#[test]
fn several_stakeholders_of_an_account_raise_intent() {
    let s = scorer("{}");
    let alone = subject(vec![ev(EventKind::PageView, 2.0, Some("docs"))]);
    let mut team = alone.clone();
    for i in 0..2 {
        team.peers.push(Peer {
            id: format!("p{i}"),
            job_title: Some("Engineer".into()),
            seniority: None,
            events: vec![ev(EventKind::EmailClick, 5.0, None)],
        });
    }
    // A colleague active only outside the window does not count.
    let mut stale = alone.clone();
    stale.peers.push(Peer {
        id: "old".into(),
        events: vec![ev(EventKind::EmailClick, 90.0, None)],
        ..Peer::default()
    });
    let a = s.score(&alone, NOW);
    let t = s.score(&team, NOW);
    let st = s.score(&stale, NOW);
    assert!(t.intent >= a.intent + 34.9, "{} vs {}", t.intent, a.intent);
    assert_eq!(st.intent, a.intent);
    let r = t
        .reasons
        .iter()
        .find(|r| r.code == "intent.stakeholders")
        .unwrap();
    assert!(r.detail.starts_with("3 people of acme.com"), "{}", r.detail);
}

#[test]
fn trial_usage_is_intent() {
    let s = scorer("{}");
    let mut usage = ev(EventKind::ProductUsage, 1.0, None);
    usage.value = 8.0;
    let t = s.score(
        &subject(vec![ev(EventKind::TrialSignup, 3.0, None), usage]),
        NOW,
    );
    assert!(t.intent > 20.0, "{}", t.intent);
    assert!(t.reasons.iter().any(|r| r.code == "intent.trial"));
}

#[test]
fn fit_follows_the_icp_and_names_what_matched() {
    let s = scorer(
        r#"{"icp": {"industries": ["software"], "employee_ranges": ["201-500"], "titles": ["revenue operations"],
             "rules": [{"field": "custom.plan", "any_of": ["enterprise"], "points": 10},
                       {"field": "custom.seats", "min": 50, "points": 10}]}}"#,
    );
    let mut x = subject(vec![]);
    x.lead.custom.push(CustomField {
        key: "Plan".into(),
        value: "Enterprise".into(),
    });
    let r = s.score(&x, NOW);
    // industry 25 + title 15 + plan 10 of 25 + 25 + 15 + 10 + 10 = 85.
    assert!((r.fit - 100.0 * 50.0 / 85.0).abs() < 0.01, "{}", r.fit);
    let codes: Vec<&str> = r.reasons.iter().map(|r| r.code.as_str()).collect();
    assert!(codes.contains(&"fit.industry"), "{codes:?}");
    assert!(codes.contains(&"fit.custom.seats_unknown"), "{codes:?}");
    assert!(
        !codes.contains(&"fit.employee_range"),
        "no points, not shown: {codes:?}"
    );
    // Total is the weighted blend, and reasons add up to it.
    let sum: f64 = r.reasons.iter().map(|r| r.contribution).sum();
    assert!(
        (sum - f64::from(r.total)).abs() <= 1.0,
        "{sum} vs {}",
        r.total
    );
}

#[test]
fn no_icp_is_a_neutral_fit() {
    let r = scorer("{}").score(&subject(vec![]), NOW);
    assert_eq!(r.fit, 50.0);
    assert_eq!(r.total, 20);
    assert_eq!(r.grade, "D");
}

#[test]
fn bad_settings_are_refused_by_name() {
    let e = Scorer::from_json(r#"{"half_life_day": 7}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("half_life_day"), "{e}");
    let e = Scorer::from_json(r#"{"half_life_days": -3}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("half_life_days") && e.contains("-3"), "{e}");
    let e = Scorer::from_json(r#"{"event_weights": {"webinar": 2}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("event_weights.webinar") && e.contains("page_view"),
        "{e}"
    );
    let e = Scorer::from_json(r#"{"icp": {"rules": [{"field": "x", "points": 3}]}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("icp.rules[0]"), "{e}");
    let e = Scorer::from_json(r#"{"grades": {"a": 50, "b": 60, "c": 10}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("grades"), "{e}");
}

fn model_json() -> String {
    r#"{"model": {"version": 1, "outcome": "converted", "intercept": -1.0, "features": [
        {"name": "Lead Source", "kind": "level", "level": "Referral", "mean": 0.2, "weight": 2.0},
        {"name": "visits", "kind": "number", "transform": "log1p", "lo": 0, "hi": 100, "center": 1.0, "scale": 0.5, "mean": 0.0, "weight": 0.8},
        {"name": "visits", "kind": "missing", "mean": 0.1, "weight": -0.5}
    ]}}"#
        .to_string()
}

#[test]
fn a_model_makes_the_total_a_calibrated_probability() {
    let s = scorer(&model_json());
    let mut x = subject(vec![]);
    x.lead.custom.push(CustomField {
        key: "Lead Source".into(),
        value: "referral".into(),
    });
    x.lead.custom.push(CustomField {
        key: "visits".into(),
        value: "1000".into(),
    });
    let r = s.score(&x, NOW);
    // z = -1 + 2·1 + 0.8·(ln(101) − 1)/0.5 ; clipped at 100 visits.
    let z: f64 = -1.0 + 2.0 + 0.8 * (101f64.ln() - 1.0) / 0.5;
    let p = 1.0 / (1.0 + (-z).exp());
    assert!((r.probability.unwrap() - p).abs() < 1e-6);
    assert_eq!(f64::from(r.total), (100.0 * p).round());
    assert_eq!(r.reasons[0].factor, "model");
    assert!(
        r.reasons
            .iter()
            .any(|r| r.code == "model.lead_source" && r.detail.contains("'referral'"))
    );
    // Missing values fall back to the center and the missing indicator.
    let r = s.score(&subject(vec![]), NOW);
    let z: f64 = -1.0 - 0.5;
    assert!((r.probability.unwrap() - 1.0 / (1.0 + (-z).exp())).abs() < 1e-6);
}

#[test]
fn a_broken_model_is_refused() {
    let json = model_json().replace("\"scale\": 0.5", "\"scale\": 0");
    let e = Scorer::from_json(&json).unwrap_err().to_string();
    assert!(e.contains("visits") && e.contains("scale"), "{e}");
    let json = model_json().replace("\"version\": 1", "\"version\": 9");
    assert!(
        Scorer::from_json(&json)
            .unwrap_err()
            .to_string()
            .contains("version 9")
    );
}

/// A boosted model by hand: one tree on `visits` (missing to its own
/// leaf), one on `Lead Source` = Referral; `Select` means not answered.
fn boosted_json() -> String {
    r#"{"model": {"version": 2, "outcome": "converted", "intercept": 0.0,
        "placeholders": ["Select"],
        "features": [
            {"name": "visits", "kind": "number", "weight": 0.0},
            {"name": "Lead Source", "kind": "level", "level": "Referral", "weight": 0.0},
            {"name": "Lead Source", "kind": "other", "levels": ["Referral", "Ads"], "weight": 0.0}
        ],
        "boost": {"base": -0.5, "slope": 2.0, "offset": 0.1, "trees": [
            {"nodes": [
                {"value": 0.0, "feature": 0, "threshold": 5.0, "left": 1, "right": 2, "missing": 3},
                {"value": -0.3, "leaf": true},
                {"value": 0.4, "leaf": true},
                {"value": -0.1, "leaf": true}
            ]},
            {"nodes": [
                {"value": 0.05, "feature": 1, "threshold": 0.5, "left": 1, "right": 2, "missing": 1},
                {"value": 0.0, "leaf": true},
                {"value": 0.6, "leaf": true}
            ]}
        ]}}}"#
        .to_string()
}

fn with(custom: &[(&str, &str)]) -> Subject {
    let mut x = subject(vec![]);
    for (k, v) in custom {
        x.lead.custom.push(CustomField {
            key: (*k).into(),
            value: (*v).into(),
        });
    }
    x
}

#[test]
fn a_boosted_model_walks_its_trees_and_explains_by_feature() {
    let s = scorer(&boosted_json());
    let p = |margin: f64| 1.0 / (1.0 + (-(2.0 * margin + 0.1)).exp());
    // visits 9 → right (0.4); Referral → right (0.6).
    let r = s.score(&with(&[("visits", "9"), ("Lead Source", "referral")]), NOW);
    assert!((r.probability.unwrap() - p(-0.5 + 0.4 + 0.6)).abs() < 1e-12);
    // Contributions: the path's changes, times the slope.
    let source = r
        .reasons
        .iter()
        .find(|r| r.code == "model.lead_source")
        .unwrap();
    assert!(
        (source.contribution - 2.0 * (0.6 - 0.05)).abs() < 0.006,
        "{source:?}"
    );
    let visits = r.reasons.iter().find(|r| r.code == "model.visits").unwrap();
    assert!((visits.contribution - 0.8).abs() < 0.006, "{visits:?}");
    // A missing number takes the missing branch; a placeholder is missing.
    let r = s.score(&with(&[("Lead Source", "Select")]), NOW);
    assert!((r.probability.unwrap() - p(-0.5 - 0.1 + 0.0)).abs() < 1e-12);
    let r = s.score(&with(&[("visits", "2")]), NOW);
    assert!((r.probability.unwrap() - p(-0.5 - 0.3 + 0.0)).abs() < 1e-12);
}

#[test]
fn the_compact_walk_agrees_with_the_trees_as_written() {
    use crate::model::{Boost, Node, Tree};
    let leaf = |value: f64| Node {
        value,
        leaf: true,
        feature: 0,
        threshold: 0.0,
        left: 0,
        right: 0,
        missing: 0,
    };
    let split = |value: f64, feature: u32, threshold: f64, left: u32, missing: u32| Node {
        value,
        leaf: false,
        feature,
        threshold,
        left,
        right: left + 1,
        missing,
    };
    // Trees of depth 0, 1 and 3 side by side in the walk's groups.
    let shape = |k: usize| Tree {
        nodes: match k % 3 {
            0 => vec![leaf(0.25)],
            1 => vec![split(0.0, 0, 1.0, 1, 2), leaf(-0.5), leaf(0.5)],
            _ => vec![
                split(0.125, 1, 0.0, 1, 1),
                leaf(-0.25),
                split(0.25, 0, 2.0, 3, 4),
                leaf(0.375),
                split(0.5, 1, 3.0, 5, 7),
                leaf(0.75),
                leaf(1.0),
                leaf(-1.0),
            ],
        },
    };
    let boost = Boost {
        base: 0.5,
        slope: 1.0,
        offset: 0.0,
        trees: (0..11).map(shape).collect(),
        flat: Default::default(),
    };
    boost.check(2).unwrap();
    let mut parts = vec![0.0; 2];
    assert_eq!(boost.margin(&[3.0, 5.0], Some(&mut parts)), 6.5);
    assert_eq!(parts, [2.75, 1.875]);
    assert!(boost.flat.get().is_some_and(Option::is_some), "compact");
    for x in [
        [f64::NAN, f64::NAN],
        [0.5, 5.0],
        [3.0, -1.0],
        [1.0, 3.0],
        [2.0, f64::NAN],
    ] {
        let (mut compact, mut written) = (vec![0.0; 2], vec![0.0; 2]);
        assert_eq!(
            boost.margin(&x, Some(&mut compact)),
            boost.margin_as_written(&x, Some(&mut written)),
            "{x:?}"
        );
        assert_eq!(compact, written, "{x:?}");
    }
}

#[test]
fn rare_values_are_the_other_level_and_placeholders_are_not() {
    let json: serde_json::Value = serde_json::from_str(&boosted_json()).unwrap();
    let model: crate::model::Model = serde_json::from_value(json["model"].clone()).unwrap();
    model.check().unwrap();
    let other = &model.features[2];
    assert_eq!(other.encode(Some("Trade show")), 1.0);
    assert_eq!(other.encode(Some(" ads ")), 0.0);
    assert!(model.is_placeholder(" select "));
}

#[test]
fn broken_trees_are_refused_naming_the_node() {
    for (from, to, needle) in [
        (
            r#""left": 1, "right": 2, "missing": 3"#,
            r#""left": 0, "right": 2, "missing": 3"#,
            "tree 0, node 0",
        ),
        (
            r#""left": 1, "right": 2, "missing": 3"#,
            r#""left": 1, "right": 2, "missing": 9"#,
            "within the tree",
        ),
        (
            r#""feature": 1, "threshold""#,
            r#""feature": 7, "threshold""#,
            "tree 1, node 0: feature 7",
        ),
        (r#""version": 2"#, r#""version": 1"#, "version 1"),
    ] {
        let json = boosted_json().replacen(from, to, 1);
        let e = Scorer::from_json(&json).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn half_power_matches_the_library_exponential() {
    for i in 0..20_000 {
        let x = f64::from(i) * 0.0371;
        let want = (-x * std::f64::consts::LN_2).exp();
        let got = super::half_power(x);
        assert!(
            (got - want).abs() <= 1e-9 * want.max(1e-300),
            "{x}: {got} vs {want}"
        );
    }
    assert_eq!(super::half_power(-1.0), 1.0);
    assert_eq!(super::half_power(5000.0), 0.0);
}
