//! Rules documents: the demo tenant's rules load; every mistake is refused
//! with the file, the line, the rule and the field; conditions evaluate
//! against a lead's facts.

#![allow(clippy::unwrap_used)]

use leadgate_lead::Lead;
use leadgate_lead::score::{EventKind, Scored};
use leadgate_rules::{Action, Enrol, EventFacts, Facts, Mode, Trigger, parse, parse_duration_ms};

fn refusals(text: &str) -> Vec<String> {
    match parse("r.toml", text) {
        Ok(set) => panic!("accepted: {set:?}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn one_refusal(text: &str) -> String {
    let r = refusals(text);
    assert_eq!(r.len(), 1, "{r:#?}");
    r[0].clone()
}

/// A valid rule with `trigger` and `extra` lines spliced in.
fn rule(trigger: &str, extra: &str) -> String {
    format!(
        "[[rule]]\nid = \"r1\"\ntrigger = {trigger}\n{extra}\nactions = [{{ type = \"alert\", message = \"hi\" }}]\n"
    )
}

#[test]
fn the_demo_rules_load() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/rules.toml");
    let set = leadgate_rules::load(&[path]).unwrap();
    let ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "pricing-revisit",
            "new-form-lead",
            "hot-lead",
            "opportunity-inactive"
        ]
    );
    let pricing = set.get("pricing-revisit").unwrap();
    assert_eq!(
        pricing.trigger,
        Trigger::Event {
            kinds: vec![EventKind::PageView],
            categories: vec!["pricing".into()],
            count: 2,
            within_ms: Some(48 * 3_600_000),
            lateness_ms: 3_600_000,
        }
    );
    assert_eq!(
        pricing.enrol,
        Enrol::Cooldown {
            period_ms: 7 * 86_400_000
        }
    );
    assert_eq!(
        pricing.actions[1],
        Action::Score {
            points: 20,
            reason: "pricing page revisited within 48 h".into()
        }
    );
    assert_eq!((pricing.mode, pricing.version), (Mode::Active, 1));
    let inactive = set.get("opportunity-inactive").unwrap();
    assert_eq!(
        inactive.trigger,
        Trigger::Inactivity {
            after_ms: 30 * 86_400_000,
            stage: Some("opportunity".into())
        }
    );
    assert_eq!(inactive.line, 31, "the line of its [[rule]]");
}

#[test]
fn mistakes_are_refused_naming_file_line_rule_and_field() {
    // Unknown settings, at their line.
    let r = one_refusal(
        "[[rule]]\nid = \"a\"\ntrigger = { on = \"event\", events = [\"page_view\"] }\nwhen_ = \"true\"\nactions = []\n",
    );
    assert!(r.starts_with("r.toml:4: ") && r.contains("when_"), "{r}");
    // An event type that does not exist, with the spelling it means.
    let r = one_refusal(&rule(r#"{ on = "event", events = ["pageview"] }"#, ""));
    assert!(
        r.starts_with("r.toml:3: rule \"r1\": trigger.events: unknown event type \"pageview\"")
            && r.contains("write \"page_view\""),
        "{r}"
    );
    // Windows need a unit, and several events need a window.
    let r = one_refusal(&rule(
        r#"{ on = "event", events = ["page_view"], count = 2, within = "48" }"#,
        "",
    ));
    assert!(r.contains("trigger.within: \"48\" has no unit"), "{r}");
    let r = one_refusal(&rule(
        r#"{ on = "event", events = ["page_view"], count = 2 }"#,
        "",
    ));
    assert!(r.contains("trigger.within: 2 events need a window"), "{r}");
    let r = one_refusal(&rule(
        r#"{ on = "event", events = ["page_view"], within = "1mo" }"#,
        "",
    ));
    assert!(r.contains("months and years have no fixed length"), "{r}");
    // A setting another trigger takes.
    let r = one_refusal(&rule(
        r#"{ on = "score_crossed", above = 80, after = "3d" }"#,
        "",
    ));
    assert!(
        r.contains("trigger.after: is not a setting of an \"score_crossed\" trigger"),
        "{r}"
    );
    let r = one_refusal(&rule(r#"{ on = "score_crossed", above = 180 }"#, ""));
    assert!(r.contains("trigger.above: 180 is not a score"), "{r}");
    let r = one_refusal(&rule(r#"{ on = "sometimes" }"#, ""));
    assert!(
        r.contains("trigger.on: unknown trigger \"sometimes\""),
        "{r}"
    );
    // Conditions: syntax, unknown variables, types, results that are not
    // true or false, attributes a provider may leave out.
    let trig = r#"{ on = "lead_created" }"#;
    for (when, want) in [
        ("score.total >=", "when: not CEL"),
        ("scores.total > 80", "when: unknown variable \"scores\""),
        ("score.total > \"80\"", "when: "),
        ("score.total + 1", "when: gives int, not true or false"),
        ("enrichment.revenue == \"1M\"", "has(enrichment.x)"),
        ("lead.favourite_colour == \"red\"", "when: "),
    ] {
        let r = one_refusal(&rule(trig, &format!("when = '{when}'")));
        assert!(
            r.starts_with("r.toml:4: rule \"r1\": when: ") && r.contains(want),
            "{when}: {r}"
        );
    }
    // Re-enrolment and actions.
    let r = one_refusal(&rule(trig, "enrol = { policy = \"once_per\" }"));
    assert!(
        r.contains("enrol: policy \"once_per\" needs a period"),
        "{r}"
    );
    let r = one_refusal(&rule(trig, "enrol = { policy = \"weekly\" }"));
    assert!(r.contains("unknown policy \"weekly\""), "{r}");
    let r = one_refusal(
        "[[rule]]\nid = \"r1\"\ntrigger = { on = \"lead_created\" }\nactions = [\n  { type = \"score\", points = 0, reason = \"x\" },\n]\n",
    );
    assert!(
        r.starts_with("r.toml:5: rule \"r1\": actions[0] (score): points: 0"),
        "{r}"
    );
    let r = one_refusal(
        "[[rule]]\nid = \"r1\"\ntrigger = { on = \"lead_created\" }\nactions = [{ type = \"fax\" }]\n",
    );
    assert!(r.starts_with("r.toml:4: ") && r.contains("fax"), "{r}");
    let r = one_refusal("[[rule]]\nid = \"r1\"\ntrigger = { on = \"lead_created\" }\n");
    assert!(
        r.contains("actions: a rule needs at least one action"),
        "{r}"
    );
    // Ids: their shape, and once per file.
    let r = one_refusal(&rule(trig, "").replace("\"r1\"", "\"Hot Lead\""));
    assert!(r.contains("id: \"Hot Lead\": lowercase letters"), "{r}");
    let twice = format!("{}\n{}", rule(trig, ""), rule(trig, ""));
    let r = one_refusal(&twice);
    assert!(
        r.starts_with("r.toml:8: rule \"r1\": id: is used by another rule"),
        "{r}"
    );
    // Every mistake of a document at once, not only the first.
    let many = format!(
        "{}\n{}",
        rule(r#"{ on = "event", events = ["nope"] }"#, ""),
        rule(trig, "when = 'x > 1'").replace("\"r1\"", "\"r2\"")
    );
    assert_eq!(refusals(&many).len(), 2);
}

#[test]
fn rule_ids_are_unique_across_files() {
    let dir = std::env::temp_dir().join(format!("leadgate-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
    let r = rule(r#"{ on = "lead_created" }"#, "");
    std::fs::write(&a, &r).unwrap();
    std::fs::write(&b, format!("# another team's rules\n{r}")).unwrap();
    let errors =
        leadgate_rules::load(&[a.clone(), b.clone(), dir.join("missing.toml")]).unwrap_err();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(
        text[0].ends_with(&format!(
            "b.toml:2: rule \"r1\": id: also defined at {}:1",
            a.display()
        )),
        "{}",
        text[0]
    );
    assert!(text[1].contains("missing.toml"), "{}", text[1]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn durations_carry_their_unit() {
    assert_eq!(parse_duration_ms("48h"), Ok(172_800_000));
    assert_eq!(parse_duration_ms("30d"), Ok(2_592_000_000));
    assert_eq!(parse_duration_ms("2w"), Ok(1_209_600_000));
    assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
    assert_eq!(parse_duration_ms(" 90s "), Ok(90_000));
    for bad in ["48", "", "soon", "1y", "0s"] {
        assert!(parse_duration_ms(bad).is_err(), "{bad}");
    }
}

#[test]
fn conditions_evaluate_on_a_leads_facts() {
    let compile = |src: &str| {
        let set = parse(
            "r.toml",
            &rule(r#"{ on = "lead_created" }"#, &format!("when = '{src}'")),
        )
        .unwrap();
        set.rules[0].when.clone().unwrap()
    };
    let lead: Lead = serde_json::from_value(serde_json::json!({
        "email": "ann@acme.io", "country": "FR", "job_title": "VP Sales", "source": "form",
        "custom": [{"key": "plan", "value": "enterprise"}]
    }))
    .unwrap();
    let score = Scored {
        total: 84,
        grade: "A".into(),
        fit: 0.9,
        engagement: 0.4,
        intent: 0.7,
        probability: None,
        reasons: Vec::new(),
    };
    let enrichment = vec![("industry".to_string(), "software".to_string())];
    let facts = Facts {
        lead: &lead,
        enrichment: &enrichment,
        score: Some(&score),
        stage: Some("opportunity"),
        qualification: Some("qualified"),
        event: Some(EventFacts {
            kind: "page_view",
            category: Some("pricing"),
            url: Some("https://acme.io/pricing"),
            at: 1_780_000_000_000,
        }),
        window: 2,
    };
    for (src, want) in [
        (r#"lead.country == "FR" && score.total >= 80"#, true),
        (r#"lead.country == "DE" || score.grade == "B""#, false),
        (
            r#"has(enrichment.industry) && enrichment.industry == "software""#,
            true,
        ),
        (r#"has(enrichment.employee_range)"#, false),
        (
            r#"lead.custom.exists(k, k == "plan") && lead.custom.plan == "enterprise""#,
            true,
        ),
        (r#"event.category == "pricing" && window.count >= 2"#, true),
        (
            r#"stage == "opportunity" && qualification == "qualified""#,
            true,
        ),
        (r#"lead.phone == "" && lead.source == "form""#, true),
        (r#"lead.job_title.matches("(?i)^vp")"#, true),
        (r#"score.fit > 0.5 && score.intent < 0.5"#, false),
    ] {
        assert_eq!(compile(src).eval(&facts), Ok(want), "{src}");
    }
    // A missing attribute, unguarded, is an error to stop on, not false.
    let unguarded = compile(r#"enrichment.industry == "software""#);
    let bare = Facts {
        enrichment: &[],
        ..facts
    };
    assert!(unguarded.eval(&bare).unwrap_err().contains("industry"));
}
