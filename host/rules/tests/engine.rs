//! Rules run over leads and events on an injected clock: windows on event
//! time, lateness, redelivery, keys, enrolment, goals, inactivity, modes
//! and suppression.

#![allow(clippy::unwrap_used)]

use leadgate_lead::score::{EventKind, Scored};
use leadgate_lead::{Consent, Lead};
use leadgate_rules::engine::{Engine, EventIn, Execution, LeadState};
use leadgate_rules::{RuleSet, parse};

const H: i64 = 3_600_000;
const D: i64 = 24 * H;
const T0: i64 = 1_780_000_000_000;

fn rules(text: &str) -> RuleSet {
    parse("r.toml", text).unwrap()
}

fn pricing(extra: &str) -> RuleSet {
    rules(&format!(
        r#"[[rule]]
id = "pricing-revisit"
trigger = {{ on = "event", events = ["page_view"], categories = ["pricing"], count = 2, within = "48h", lateness = "1h" }}
{extra}
actions = [{{ type = "alert", message = "pricing twice" }}, {{ type = "score", points = 20, reason = "pricing revisit" }}]
"#
    ))
}

fn lead(email: &str) -> LeadState {
    LeadState {
        lead: Lead {
            email: Some(email.into()),
            ..Lead::default()
        },
        ..LeadState::default()
    }
}

fn view(id: &str, at: i64, category: &str) -> EventIn {
    EventIn {
        id: id.into(),
        kind: EventKind::PageView,
        category: Some(category.into()),
        url: None,
        at,
    }
}

/// Events delivered on time (arriving as they happen); what fired.
fn on_time(engine: &mut Engine, lead: &str, events: &[EventIn]) -> Vec<Execution> {
    events
        .iter()
        .flat_map(|e| engine.event(lead, e.clone(), e.at))
        .collect()
}

#[test]
fn two_pricing_views_within_48_hours_fire_once() {
    // 47 h apart: once.
    let mut e = Engine::new(pricing(""));
    e.lead("l1", lead("ann@acme.io"), T0);
    let fired = on_time(
        &mut e,
        "l1",
        &[view("a", T0, "pricing"), view("b", T0 + 47 * H, "pricing")],
    );
    assert_eq!(fired.len(), 1, "{fired:#?}");
    let x = &fired[0];
    assert_eq!(
        (x.rule.as_str(), x.at, x.key.as_str(), x.trigger),
        (
            "pricing-revisit",
            T0 + 47 * H,
            &*format!("pricing-revisit:l1:window:{T0}"),
            "event"
        )
    );
    assert_eq!(x.actions.len(), 2);
    assert_eq!(x.email.as_deref(), Some("ann@acme.io"));
    // 49 h apart: never.
    let mut e = Engine::new(pricing(""));
    let fired = on_time(
        &mut e,
        "l1",
        &[view("a", T0, "pricing"), view("b", T0 + 49 * H, "pricing")],
    );
    assert!(fired.is_empty(), "{fired:#?}");
    // Three within 48 h: once. Another category does not count.
    let mut e = Engine::new(pricing("enrol = { policy = \"every\" }"));
    let fired = on_time(
        &mut e,
        "l1",
        &[
            view("a", T0, "pricing"),
            view("x", T0 + H, "blog"),
            view("b", T0 + 10 * H, "pricing"),
            view("c", T0 + 20 * H, "pricing"),
        ],
    );
    assert_eq!(fired.len(), 1, "{fired:#?}");
    // The same events delivered again fire nothing new.
    let again = on_time(
        &mut e,
        "l1",
        &[view("a", T0, "pricing"), view("b", T0 + 10 * H, "pricing")],
    );
    assert!(again.is_empty(), "{again:#?}");
}

#[test]
fn a_late_event_inside_its_window_fires_once_and_a_too_late_one_not_on_arrival() {
    // The first view arrives out of order, after the second (its window is
    // still open): the window fires, once.
    let mut e = Engine::new(pricing(""));
    assert!(
        e.event("l1", view("b", T0 + 20 * H, "pricing"), T0 + 20 * H)
            .is_empty()
    );
    let fired = e.event("l1", view("a", T0, "pricing"), T0 + 20 * H + 40 * 60_000);
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!(fired[0].key, format!("pricing-revisit:l1:window:{T0}"));
    assert_eq!(fired[0].at, T0 + 20 * H, "the window's last event");
    // Delivered once more, even later: nothing.
    assert!(
        e.event("l1", view("a", T0, "pricing"), T0 + 30 * H)
            .is_empty()
    );
    // Arriving two hours after its window closed, with one hour allowed:
    // it fires nothing on arrival.
    let mut e = Engine::new(pricing(""));
    e.event("l1", view("a", T0, "pricing"), T0);
    let late = e.event("l1", view("b", T0 + 5 * H, "pricing"), T0 + 55 * H);
    assert!(late.is_empty(), "{late:#?}");
    // Within the hour allowed after the window closed, it still fires.
    let mut e = Engine::new(pricing(""));
    e.event("l1", view("a", T0, "pricing"), T0);
    let late = e.event(
        "l1",
        view("b", T0 + 5 * H, "pricing"),
        T0 + 53 * H + 30 * 60_000,
    );
    assert_eq!(late.len(), 1, "{late:#?}");
}

#[test]
fn enrolment_policies_keep_a_lead_out_with_the_reason() {
    let windows = [
        view("a", T0, "pricing"),
        view("b", T0 + H, "pricing"),
        // Another window three days on, and another a week after that.
        view("c", T0 + 3 * D, "pricing"),
        view("d", T0 + 3 * D + H, "pricing"),
        view("e", T0 + 10 * D, "pricing"),
        view("f", T0 + 10 * D + H, "pricing"),
    ];
    let outcome = |enrol: &str| -> Vec<(usize, usize)> {
        let mut e = Engine::new(pricing(enrol));
        on_time(&mut e, "l1", &windows)
            .iter()
            .map(|x| (x.actions.len(), x.suppressed.len()))
            .collect()
    };
    // Once ever: the later windows are recorded, every action suppressed.
    assert_eq!(outcome(""), [(2, 0), (0, 2), (0, 2)]);
    assert_eq!(
        outcome("enrol = { policy = \"every\" }"),
        [(2, 0), (2, 0), (2, 0)]
    );
    assert_eq!(
        outcome("enrol = { policy = \"once_per\", period = \"7d\" }"),
        [(2, 0), (0, 2), (2, 0)]
    );
    assert_eq!(
        outcome("enrol = { policy = \"cooldown\", period = \"2d\" }"),
        [(2, 0), (2, 0), (2, 0)]
    );
    assert_eq!(
        outcome("enrol = { policy = \"cooldown\", period = \"4d\" }"),
        [(2, 0), (0, 2), (2, 0)]
    );
    let mut e = Engine::new(pricing(""));
    let x = on_time(&mut e, "l1", &windows);
    assert!(
        x[1].suppressed[0]
            .reason
            .starts_with("enrolled once already"),
        "{:?}",
        x[1].suppressed
    );
}

#[test]
fn a_goal_ends_a_run_and_a_goal_already_met_keeps_the_lead_out() {
    let set = rules(
        r#"[[rule]]
id = "nurture"
trigger = { on = "event", events = ["email_open"] }
goal = 'stage == "customer"'
enrol = { policy = "every" }
actions = [{ type = "sequence", sequence = "nurture" }]
"#,
    );
    let open = |id: &str, at: i64| EventIn {
        id: id.into(),
        kind: EventKind::EmailOpen,
        category: None,
        url: None,
        at,
    };
    let mut e = Engine::new(set);
    e.lead("l1", lead("ann@acme.io"), T0);
    let first = e.event("l1", open("o1", T0 + H), T0 + H);
    assert_eq!(first[0].actions.len(), 1);
    // While the run is open, the lead does not enter again.
    let second = e.event("l1", open("o2", T0 + 2 * H), T0 + 2 * H);
    assert!(
        second[0].suppressed[0].reason.starts_with("in a run"),
        "{second:#?}"
    );
    // The goal met ends the run; met already, it keeps the lead out.
    let mut customer = lead("ann@acme.io");
    customer.stage = Some("customer".into());
    e.lead("l1", customer, T0 + 3 * H);
    let third = e.event("l1", open("o3", T0 + 4 * H), T0 + 4 * H);
    assert_eq!(
        third[0].suppressed[0].reason, "the rule's goal already holds",
        "{third:#?}"
    );
}

#[test]
fn inactivity_fires_exactly_after_30_days_rearmed_by_activity() {
    let set = rules(
        r#"[[rule]]
id = "opportunity-inactive"
trigger = { on = "inactivity", after = "30d", stage = "opportunity" }
enrol = { policy = "every" }
actions = [{ type = "review", reason = "inactive" }]
"#,
    );
    let mut e = Engine::new(set);
    e.lead("l1", lead("ann@acme.io"), T0);
    assert_eq!(e.pending_timers(), 0, "not an opportunity yet");
    let mut opp = lead("ann@acme.io");
    opp.stage = Some("opportunity".into());
    e.lead("l1", opp, T0 + D);
    assert_eq!(e.pending_timers(), 1);
    // Activity on day 10 re-arms it: nothing at day 31.
    e.event("l1", view("v", T0 + 10 * D, "blog"), T0 + 10 * D);
    assert!(e.advance(T0 + 31 * D).is_empty());
    assert!(e.advance(T0 + 40 * D - 1).is_empty());
    let fired = e.advance(T0 + 41 * D);
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!((fired[0].at, fired[0].trigger), (T0 + 40 * D, "inactivity"));
    assert_eq!(
        e.pending_timers(),
        0,
        "fired timers wait for the next activity"
    );
    assert!(e.advance(T0 + 100 * D).is_empty());
}

#[test]
fn a_new_version_does_not_fire_again_what_an_older_one_fired() {
    let mut e = Engine::new(pricing("enrol = { policy = \"every\" }"));
    let fired = on_time(
        &mut e,
        "l1",
        &[view("a", T0, "pricing"), view("b", T0 + H, "pricing")],
    );
    assert_eq!(fired[0].version, 1);
    e.set_rules(pricing("version = 2\nenrol = { policy = \"every\" }"));
    // A third view in the same window: the v2 rule sees the window v1
    // fired.
    assert!(
        e.event("l1", view("c", T0 + 2 * H, "pricing"), T0 + 2 * H)
            .is_empty()
    );
    // A new window fires under v2.
    let later = on_time(
        &mut e,
        "l1",
        &[
            view("d", T0 + 5 * D, "pricing"),
            view("e", T0 + 5 * D + H, "pricing"),
        ],
    );
    assert_eq!(later[0].version, 2);
}

#[test]
fn shadow_mode_records_without_acting_and_sequences_respect_consent() {
    let set = rules(
        r#"[[rule]]
id = "hot-lead"
mode = "shadow"
trigger = { on = "score_crossed", above = 80 }
actions = [{ type = "sequence", sequence = "outbound" }]

[[rule]]
id = "hot-lead-live"
trigger = { on = "score_crossed", above = 80 }
enrol = { policy = "every" }
actions = [{ type = "sequence", sequence = "outbound" }, { type = "alert", message = "hot" }]
"#,
    );
    let scored = |total: u8, consent: bool| {
        let mut s = lead("ann@acme.io");
        s.score = Some(Scored {
            total,
            grade: "A".into(),
            fit: 0.0,
            engagement: 0.0,
            intent: 0.0,
            probability: None,
            reasons: Vec::new(),
        });
        if !consent {
            s.lead.consent = vec![Consent {
                purpose: "marketing".into(),
                granted: false,
                recorded_at: None,
            }];
        }
        s
    };
    let mut e = Engine::new(set);
    e.lead("l1", scored(50, true), T0);
    let x = e.lead("l1", scored(85, true), T0 + H);
    assert_eq!(x.len(), 2, "{x:#?}");
    assert_eq!(serde_json::to_value(x[0].mode).unwrap(), "shadow");
    assert_eq!(x[0].actions.len(), 1, "what it would do");
    // The shadow run started no sequence: the live rule starts it.
    assert_eq!(x[1].actions.len(), 2, "{x:#?}");
    // Down and up again: already in the sequence.
    e.lead("l1", scored(60, true), T0 + 2 * H);
    let x = e.lead("l1", scored(90, true), T0 + 3 * H);
    let live = x.iter().find(|x| x.rule == "hot-lead-live").unwrap();
    assert_eq!(
        live.suppressed[0].reason,
        "already in sequence \"outbound\""
    );
    assert_eq!(live.actions.len(), 1, "the alert still goes");
    // A lead who refused marketing consent is never put in a sequence.
    let mut e = Engine::new(rules(
        r#"[[rule]]
id = "hot"
trigger = { on = "score_crossed", above = 80 }
actions = [{ type = "sequence", sequence = "outbound" }]
"#,
    ));
    e.lead("l2", scored(50, false), T0);
    let x = e.lead("l2", scored(85, false), T0 + H);
    assert_eq!(
        x[0].suppressed[0].reason,
        "opted out (marketing consent refused)"
    );
}

#[test]
fn a_condition_that_cannot_be_evaluated_stops_the_rule_with_the_reason() {
    let mut e = Engine::new(rules(
        r#"[[rule]]
id = "by-industry"
trigger = { on = "lead_created" }
when = 'enrichment.industry == "software"'
actions = [{ type = "assign" }]
"#,
    ));
    let x = e.lead("l1", lead("ann@acme.io"), T0);
    assert_eq!(x.len(), 1);
    assert!(x[0].actions.is_empty());
    assert!(
        x[0].failed.as_deref().unwrap().contains("industry"),
        "{x:#?}"
    );
}

#[test]
fn a_lead_kept_as_json_between_signals_fires_as_one_kept_in_memory() {
    use leadgate_rules::engine::{Evaluator, LeadRules};
    let text = r#"[[rule]]
id = "pricing-revisit"
trigger = { on = "event", events = ["page_view"], categories = ["pricing"], count = 2, within = "48h", lateness = "1h" }
enrol = { policy = "cooldown", period = "7d" }
actions = [{ type = "alert", message = "pricing twice" }]

[[rule]]
id = "quiet"
trigger = { on = "inactivity", after = "30d" }
enrol = { policy = "every" }
actions = [{ type = "review", reason = "quiet" }]
"#;
    let events = [
        view("a", T0, "pricing"),
        view("b", T0 + 47 * H, "pricing"),
        view("b", T0 + 47 * H, "pricing"),
        view("c", T0 + 3 * D, "pricing"),
        view("d", T0 + 9 * D, "pricing"),
        view("e", T0 + 9 * D + H, "pricing"),
    ];
    let mut memory = Engine::new(rules(text));
    memory.lead("l1", lead("ann@acme.com"), T0);
    let mut expected = Vec::new();
    for e in &events {
        expected.extend(memory.event("l1", e.clone(), e.at));
    }
    expected.extend(memory.advance(T0 + 60 * D));
    let eval = Evaluator::new(rules(text));
    let mut kept = String::new();
    let mut got = Vec::new();
    let mut step = |f: &mut dyn FnMut(&mut LeadRules) -> Vec<Execution>| {
        let mut rec: LeadRules = if kept.is_empty() {
            LeadRules::default()
        } else {
            serde_json::from_str(&kept).unwrap()
        };
        rec.state = lead("ann@acme.com");
        got.extend(f(&mut rec));
        kept = serde_json::to_string(&rec).unwrap();
    };
    step(&mut |r| eval.lead(r, "l1", lead("ann@acme.com"), T0));
    for e in &events {
        step(&mut |r| eval.event(r, "l1", e.clone(), e.at));
    }
    step(&mut |r| eval.due(r, "l1", T0 + 60 * D));
    assert_eq!(got, expected);
    let keys: Vec<&str> = got.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("pricing-revisit:l1:window:{T0}"),
            // b and c: a window of its own, held by the cooldown.
            format!("pricing-revisit:l1:window:{}", T0 + 47 * H),
            format!("pricing-revisit:l1:window:{}", T0 + 9 * D),
            format!("quiet:l1:inactive:{}", T0 + 39 * D + H),
        ]
    );
    assert!(got[1].actions.is_empty() && got[1].suppressed[0].reason.contains("cooling down"));
}

#[test]
fn frequency_caps_and_customers_suppress_with_the_reason() {
    let text = r#"[limits]
caps = { alert = { count = 2, per = "1d" } }

[[rule]]
id = "views"
trigger = { on = "event", events = ["page_view"] }
enrol = { policy = "every" }
actions = [{ type = "alert", message = "a view" }, { type = "sequence", sequence = "nurture" }]
"#;
    let mut e = Engine::new(rules(text));
    e.lead("l1", lead("ann@acme.com"), T0);
    let fired: Vec<Execution> = (0..4)
        .flat_map(|i| {
            let v = view(&format!("v{i}"), T0 + i * H, "docs");
            e.event("l1", v, T0 + i * H)
        })
        .collect();
    let alerts: Vec<bool> = fired
        .iter()
        .map(|x| x.actions.iter().any(|a| a.kind() == "alert"))
        .collect();
    assert_eq!(alerts, [true, true, false, false], "{fired:#?}");
    assert!(
        fired[2].suppressed[0]
            .reason
            .contains("frequency cap: 2 alert per 1d")
    );
    // A day after the first two, alerts go out again.
    let later = e.event("l1", view("v9", T0 + 25 * H, "docs"), T0 + 25 * H);
    assert!(
        later[0].actions.iter().any(|a| a.kind() == "alert"),
        "{later:#?}"
    );
    // A customer is started in no sequence.
    let mut e = Engine::new(rules(text));
    let mut customer = lead("bo@acme.com");
    customer.stage = Some("customer".into());
    e.lead("l2", customer, T0);
    let x = e.event("l2", view("w1", T0, "docs"), T0);
    assert!(x[0].actions.iter().all(|a| a.kind() != "sequence"));
    assert!(
        x[0].suppressed
            .iter()
            .any(|s| s.kind == "sequence" && s.reason.contains("stage is customer")),
        "{x:#?}"
    );
    // Caps are checked where they are written.
    let bad = parse(
        "r.toml",
        "[limits]\ncaps = { mail = { count = 1, per = \"1d\" }, alert = { count = 1, per = \"7\" } }\n",
    )
    .unwrap_err();
    let text: Vec<String> = bad.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text[0].contains("limits.caps.alert.per"), "{text:?}");
    assert!(
        text[1].contains("limits.caps.mail: not an action type"),
        "{text:?}"
    );
}
