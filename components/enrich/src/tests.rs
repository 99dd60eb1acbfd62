//! The enricher against scripted lookups.

use super::*;
use leadgate_lead::enrich::{Answer, Company, EnrichStatus, Outcome, Person, Provenance};

#[derive(Default)]
struct Scripted {
    company: Option<Answer<Company>>,
    person: Option<Answer<Person>>,
    asked: Vec<String>,
}

impl Lookups for Scripted {
    fn company(&mut self, domain: &str) -> Answer<Company> {
        self.asked.push(format!("company:{domain}"));
        self.company
            .clone()
            .unwrap_or_else(|| Answer::without(Outcome::NotFound, "test", ""))
    }
    fn person(&mut self, email: &str) -> Answer<Person> {
        self.asked.push(format!("person:{email}"));
        self.person
            .clone()
            .unwrap_or_else(|| Answer::without(Outcome::NotFound, "test", ""))
    }
}

fn found<T>(value: T, stale: bool) -> Answer<T> {
    Answer {
        provenance: Provenance {
            outcome: Outcome::Found,
            source: "local".into(),
            confidence: 0.9,
            stale,
            detail: if stale {
                "HTTP 503".into()
            } else {
                String::new()
            },
        },
        value: Some(value),
    }
}

fn acme() -> Company {
    Company {
        domain: "acme.com".into(),
        name: Some("Acme, Inc.".into()),
        industry: Some("Software".into()),
        employee_range: Some("51-200".into()),
        revenue_range: Some("10M-50M".into()),
        country: Some("US".into()),
        city: Some("Austin".into()),
        technologies: vec!["Salesforce".into(), "AWS".into()],
    }
}

fn lead() -> Lead {
    Lead {
        email: Some("jane@acme.com".into()),
        domain: Some("acme.com".into()),
        job_title: Some("VP Sales".into()),
        ..Lead::default()
    }
}

#[test]
fn a_found_company_fills_the_lead_with_provenance() {
    let mut l = Scripted {
        company: Some(found(acme(), false)),
        ..Default::default()
    };
    let e = Enricher::from_json("{}").unwrap().enrich(&lead(), &mut l);
    assert_eq!(l.asked, ["person:jane@acme.com", "company:acme.com"]);
    assert_eq!(e.status, EnrichStatus::Complete, "{e:?}");
    let industry = e.get("industry").unwrap();
    assert_eq!(
        (industry.value.as_str(), industry.source.as_str()),
        ("Software", "local")
    );
    assert_eq!(industry.confidence, 0.9);
    assert_eq!(e.get("company").unwrap().value, "Acme, Inc.");
    assert_eq!(e.get("technologies").unwrap().value, "Salesforce, AWS");
    // Austin decides the US timezone.
    assert_eq!(e.get("timezone").unwrap().value, "America/Chicago");
    assert_eq!(e.get("seniority").unwrap().value, "vp");
    assert_eq!(e.get("department").unwrap().value, "sales");
    assert_eq!(e.get("email_type").unwrap().value, "corporate");
    assert_eq!(e.get("seniority").unwrap().source, "derived");
}

#[test]
fn intake_data_is_never_overwritten() {
    let mut lead = lead();
    lead.company = Some("ACME Europe".into());
    lead.country = Some("DE".into());
    let mut l = Scripted {
        company: Some(found(acme(), false)),
        ..Default::default()
    };
    let e = Enricher::from_json("{}").unwrap().enrich(&lead, &mut l);
    assert!(e.get("company").is_none());
    assert!(e.get("country").is_none());
    assert_eq!(e.get("timezone").unwrap().value, "Europe/Berlin");
}

#[test]
fn stale_answers_are_discounted_and_flagged() {
    let mut l = Scripted {
        company: Some(found(acme(), true)),
        ..Default::default()
    };
    let e = Enricher::from_json("{}").unwrap().enrich(&lead(), &mut l);
    assert!((e.get("industry").unwrap().confidence - 0.72).abs() < 1e-9);
    assert!(e.issues.iter().any(|i| i.code == "enrich.stale"));
}

#[test]
fn failed_lookups_leave_derivations_and_a_reason() {
    let mut l = Scripted {
        company: Some(Answer::without(
            Outcome::Unavailable,
            "api",
            "HTTP 500 after 3 tries",
        )),
        person: Some(Answer::without(Outcome::Pending, "api", "")),
        ..Default::default()
    };
    let mut lead = lead();
    lead.phone = Some("+442079460000".into());
    let e = Enricher::from_json("{}").unwrap().enrich(&lead, &mut l);
    assert_eq!(e.status, EnrichStatus::Partial);
    assert_eq!(e.get("country").unwrap().value, "GB");
    assert_eq!(e.get("company").unwrap().value, "Acme");
    assert_eq!(e.get("company").unwrap().confidence, 0.5);
    let codes: Vec<&str> = e.issues.iter().map(|i| i.code.as_str()).collect();
    assert!(codes.contains(&"enrich.unavailable"), "{codes:?}");
    assert!(codes.contains(&"enrich.pending"), "{codes:?}");
    let unavailable = e
        .issues
        .iter()
        .find(|i| i.code == "enrich.unavailable")
        .unwrap();
    assert_eq!(unavailable.field, "company");
    assert!(
        unavailable.message.contains("HTTP 500"),
        "{}",
        unavailable.message
    );
}

#[test]
fn nothing_to_add_after_a_failure_is_failed() {
    let mut l = Scripted {
        company: Some(Answer::without(Outcome::Unavailable, "api", "timeout")),
        ..Default::default()
    };
    let lead = Lead {
        domain: Some("x.io".into()),
        ..Lead::default()
    };
    let e = Enricher::from_json(r#"{"want": ["industry"], "company_from_domain": false}"#)
        .unwrap()
        .enrich(&lead, &mut l);
    assert_eq!(e.status, EnrichStatus::Failed);
}

#[test]
fn a_person_lookup_finds_the_employer() {
    let mut l = Scripted {
        person: Some(found(
            Person {
                email: "jane@gmail.com".into(),
                job_title: Some("Head of Data".into()),
                company_domain: Some("acme.com".into()),
                linkedin: Some("https://linkedin.com/in/jane".into()),
                ..Person::default()
            },
            false,
        )),
        company: Some(found(acme(), false)),
        ..Default::default()
    };
    let lead = Lead {
        email: Some("jane@gmail.com".into()),
        ..Lead::default()
    };
    let e = Enricher::from_json("{}").unwrap().enrich(&lead, &mut l);
    assert_eq!(l.asked, ["person:jane@gmail.com", "company:acme.com"]);
    assert_eq!(e.get("email_type").unwrap().value, "free");
    assert_eq!(e.get("job_title").unwrap().value, "Head of Data");
    assert_eq!(e.get("seniority").unwrap().value, "director");
    assert_eq!(e.get("department").unwrap().value, "data");
    assert_eq!(e.get("industry").unwrap().value, "Software");
}

#[test]
fn no_provider_is_not_a_finding_and_a_plain_title_is_an_individual_contributor() {
    let mut l = Scripted {
        person: Some(Answer::without(Outcome::NotFound, crate::NO_PROVIDER, "")),
        company: Some(Answer::without(Outcome::NotFound, "local", "")),
        ..Default::default()
    };
    let mut lead = lead();
    lead.job_title = Some("Software Engineer".into());
    let e = Enricher::from_json("{}").unwrap().enrich(&lead, &mut l);
    let codes: Vec<(&str, &str)> = e
        .issues
        .iter()
        .map(|i| (i.field.as_str(), i.code.as_str()))
        .collect();
    assert_eq!(codes, [("company", "enrich.not_found")]);
    let s = e.get("seniority").unwrap();
    assert_eq!(
        (s.value.as_str(), s.confidence),
        ("individual_contributor", 0.5)
    );
}

#[test]
fn settings_are_checked_by_name() {
    let e = Enricher::from_json(r#"{"want": ["industy"]}"#).unwrap_err();
    assert!(e.to_string().contains("industy"), "{e}");
    let e = Enricher::from_json(r#"{"stale_factor": 2}"#).unwrap_err();
    assert!(e.to_string().contains("stale_factor"), "{e}");
    let e = Enricher::from_json(r#"{"wnat": []}"#).unwrap_err();
    assert!(e.to_string().contains("wnat"), "{e}");
    assert!(Enricher::from_json("").is_ok());
}
