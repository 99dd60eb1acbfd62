//! The notifier's policy: routes and groups, inhibition, silences, quiet
//! hours, and settings refused with the key at fault.

#![allow(clippy::unwrap_used)]

use leadgate_notify::{Alert, AlertsConfig, Matcher, Policy, Silence};
use std::collections::BTreeMap;

fn config(text: &str) -> AlertsConfig {
    toml::from_str(text).unwrap()
}

const BASE: &str = r##"
hot_grades = ["A"]
[destinations.team]
kind = "slack"
url = "https://hooks.slack.test/T/B/x"
[destinations.dm]
kind = "slack"
token_env = "SLACK_TOKEN"
channel = "owner"
fallback = "team"
[destinations.ops]
kind = "webhook"
url = "https://ops.test/hook"

[[routes]]
name = "hot"
match = { kind = "lead.hot" }
to = ["dm"]
group_by = ["lead"]
continue = true

[[routes]]
name = "routing"
match = { kind = "routing.*" }
to = ["team", "ops"]
group_by = ["kind", "team"]

[[routes]]
name = "night"
match = { kind = "lead.hot" }
to = ["team"]
quiet_hours = "mon-fri 00:00-08:00, mon-fri 19:00-24:00, sat-sun 00:00-24:00"
timezone = "Europe/Paris"

[[inhibit]]
source = { kind = "routing.sla_breach" }
target = { kind = "lead.hot" }
equal = ["lead"]
"##;

fn alert(id: i64, labels: &[(&str, &str)], created_at: i64) -> Alert {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Alert {
        id,
        kind: labels["kind"].clone(),
        labels,
        message: String::new(),
        created_at,
        ends_at: created_at + 3_600_000,
    }
}

#[test]
fn the_first_matching_route_wins_unless_it_continues() {
    let p = Policy::new(&config(BASE)).unwrap();
    let hot = alert(
        1,
        &[("kind", "lead.hot"), ("lead", "L1"), ("rep", "ana")],
        0,
    );
    let r = p.routes_for(&hot);
    let got: Vec<(&str, &str, &str)> = r
        .iter()
        .map(|m| {
            (
                m.route_name.as_str(),
                m.destination.as_str(),
                m.group_key.as_str(),
            )
        })
        .collect();
    // `hot` continues, `routing` does not match, `night` does.
    assert_eq!(
        got,
        [("hot", "dm", "lead=L1"), ("night", "team", "kind=lead.hot")]
    );
    let queued = alert(
        2,
        &[("kind", "routing.queued"), ("lead", "L2"), ("team", "emea")],
        0,
    );
    let r = p.routes_for(&queued);
    assert_eq!(r.len(), 2, "one per destination");
    assert!(
        r.iter()
            .all(|m| m.group_key == "kind=routing.queued,team=emea")
    );
    let other = alert(3, &[("kind", "review.escalated"), ("lead", "L3")], 0);
    assert!(p.routes_for(&other).is_empty());
}

#[test]
fn an_active_breach_inhibits_the_hot_lead_alert_of_the_same_lead_only() {
    let p = Policy::new(&config(BASE)).unwrap();
    let breach = alert(10, &[("kind", "routing.sla_breach"), ("lead", "L1")], 1_000);
    let hot_same = alert(11, &[("kind", "lead.hot"), ("lead", "L1")], 2_000);
    let hot_other = alert(12, &[("kind", "lead.hot"), ("lead", "L2")], 2_000);
    let active = [breach.clone()];
    assert_eq!(
        p.inhibitor(&hot_same, &active, 2_000).map(|a| a.id),
        Some(10)
    );
    assert!(p.inhibitor(&hot_other, &active, 2_000).is_none());
    // Once the breach has ended (resolved by a touch), it inhibits nothing.
    let mut ended = breach;
    ended.ends_at = 1_500;
    assert!(p.inhibitor(&hot_same, &[ended], 2_000).is_none());
    // Nor does a breach raised after the time asked.
    let later = alert(13, &[("kind", "routing.sla_breach"), ("lead", "L1")], 5_000);
    assert!(p.inhibitor(&hot_same, &[later], 2_000).is_none());
    assert!(p.inhibition_by_lead());
}

#[test]
fn silences_mute_what_they_match_while_they_last() {
    let matchers: BTreeMap<String, Matcher> = [
        ("kind".to_string(), Matcher::parse("routing.*").unwrap()),
        ("team".to_string(), Matcher::parse("!emea").unwrap()),
    ]
    .into();
    let s = Silence {
        id: 1,
        matchers,
        starts_at: 100,
        ends_at: 200,
        comment: "migration".into(),
        created_by: "ana".into(),
    };
    let na = alert(1, &[("kind", "routing.queued"), ("team", "na")], 0);
    let emea = alert(2, &[("kind", "routing.queued"), ("team", "emea")], 0);
    assert!(s.mutes(&na, 150));
    assert!(!s.mutes(&emea, 150));
    assert!(!s.mutes(&na, 99));
    assert!(!s.mutes(&na, 200));
}

#[test]
fn quiet_hours_end_in_the_routes_time_zone() {
    let p = Policy::new(&config(BASE)).unwrap();
    let at = |s: &str| leadgate_routing::parse_time(s).unwrap();
    // Monday 2026-12-07 22:30 in Paris (21:30 UTC): quiet until 08:00 Paris.
    assert_eq!(
        p.quiet_until(2, at("2026-12-07T21:30:00Z")),
        Some(at("2026-12-08T07:00:00Z"))
    );
    // Friday evening: quiet through the weekend, until Monday 08:00.
    assert_eq!(
        p.quiet_until(2, at("2026-12-11T20:00:00Z")),
        Some(at("2026-12-14T07:00:00Z"))
    );
    // Tuesday 10:00 Paris: not quiet; routes without quiet hours never are.
    assert_eq!(p.quiet_until(2, at("2026-12-08T09:00:00Z")), None);
    assert_eq!(p.quiet_until(0, at("2026-12-07T21:30:00Z")), None);
}

#[test]
fn bad_settings_are_refused_naming_the_key() {
    let cases = [
        (
            r#"[[routes]]
to = ["nowhere"]"#,
            "alerts.routes[0].to",
        ),
        (
            r#"[destinations.x]
kind = "email"
to = ["ops@example.com"]"#,
            "alerts.smtp",
        ),
        (
            r#"[smtp]
host = "smtp.test"
from = "alerts@example.com"
[destinations.x]
kind = "email"
to = ["not an address"]"#,
            "alerts.destinations.x.to",
        ),
        (
            r#"[destinations.x]
kind = "slack""#,
            "alerts.destinations.x.kind",
        ),
        (
            r#"[destinations.x]
kind = "webhook"
url = "ftp://x""#,
            "alerts.destinations.x.url",
        ),
        (
            r#"[destinations.x]
kind = "webhook"
url = "https://x.test"
[[routes]]
to = ["x"]
quiet_hours = "weekends""#,
            "alerts.routes[0].quiet_hours",
        ),
        (
            r#"[destinations.x]
kind = "webhook"
url = "https://x.test"
[[routes]]
to = ["x"]
timezone = "Mars/Olympus""#,
            "alerts.routes[0].timezone",
        ),
        (
            r#"[destinations.x]
kind = "webhook"
url = "https://x.test"
[[routes]]
to = ["x"]
match = { kind = "a*b" }"#,
            "",
        ),
        (
            r#"[[inhibit]]
source = { kind = "x" }
target = {}"#,
            "alerts.inhibit[0].source",
        ),
    ];
    for (text, key) in cases {
        let parsed: Result<AlertsConfig, _> = toml::from_str(text);
        match parsed {
            Err(e) => assert!(key.is_empty(), "{text}: {e}"),
            Ok(c) => {
                let e = c.check().expect_err(text);
                assert_eq!(e.key, key, "{text}: {e}");
            }
        }
    }
    assert!(config(BASE).check().is_ok());
}
