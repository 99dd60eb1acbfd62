//! Matching end to end on the native side: keys, comparison and the bundled
//! model together.

use super::*;
use leadgate_lead::{ExternalId, Lead};

fn deduper() -> Deduper {
    Deduper::from_json("{}").unwrap()
}

fn person() -> Lead {
    Lead {
        email: Some("william.smith@acme.com".into()),
        phone: Some("+442079460123".into()),
        first_name: Some("William".into()),
        last_name: Some("Smith".into()),
        company: Some("Acme Ltd".into()),
        company_key: Some("acme".into()),
        domain: Some("acme.com".into()),
        city: Some("London".into()),
        postcode: Some("SW1A 1AA".into()),
        country: Some("GB".into()),
        ..Lead::default()
    }
}

fn probability(a: &Lead, b: &Lead) -> f64 {
    deduper().compare(&[a.clone(), b.clone()], &[(0, 1)], false)[0].probability
}

#[test]
fn a_nickname_duplicate_with_a_new_phone_matches() {
    let mut dup = person();
    dup.first_name = Some("Bill".into());
    dup.phone = None;
    dup.email = Some("W.I.L.L.I.A.M.Smith@acme.com".into());
    let m = deduper()
        .compare(&[person(), dup], &[(0, 1)], true)
        .remove(0);
    assert!(m.probability > 0.9, "{m:?}");
    let name = m.evidence.iter().find(|e| e.field == "first_name").unwrap();
    assert_eq!(name.level, "nickname");
    assert!(name.weight > 0.0);
}

#[test]
fn gmail_aliases_are_the_same_mailbox() {
    let mut a = person();
    a.email = Some("jane.doe@gmail.com".into());
    a.domain = None;
    let mut b = a.clone();
    b.email = Some("janedoe+crm@googlemail.com".into());
    let m = deduper().compare(&[a, b], &[(0, 1)], true).remove(0);
    let email = m.evidence.iter().find(|e| e.field == "email").unwrap();
    assert_eq!(email.level, "exact");
}

#[test]
fn a_colleague_at_the_same_company_is_not_a_duplicate() {
    let mut other = person();
    other.first_name = Some("Anna".into());
    other.last_name = Some("Kowalski".into());
    other.email = Some("anna.kowalski@acme.com".into());
    other.phone = Some("+442079460999".into());
    // Well below the default review threshold: distinct.
    assert!(probability(&person(), &other) < 0.3);
    // On the same switchboard number they share a blocking key and much
    // else; different names and mailboxes keep them from being merged.
    other.phone = person().phone;
    assert!(probability(&person(), &other) < 0.9);
}

#[test]
fn a_relative_at_the_same_address_is_not_a_duplicate() {
    let home = |first: &str, email: &str| Lead {
        first_name: Some(first.into()),
        last_name: Some("Smith".into()),
        email: Some(email.into()),
        street: Some("12 Baker Street".into()),
        city: Some("London".into()),
        postcode: Some("NW1 6XE".into()),
        country: Some("GB".into()),
        ..Lead::default()
    };
    let p = probability(
        &home("John", "john.smith@gmail.com"),
        &home("Mary", "mary.smith@yahoo.com"),
    );
    assert!(p < 0.5, "{p}");
}

#[test]
fn an_old_export_without_contacts_still_matches_on_name_and_address() {
    let a = Lead {
        first_name: Some("Robert".into()),
        last_name: Some("O'Brien".into()),
        street: Some("4 Elm Rd".into()),
        city: Some("Dublin".into()),
        postcode: Some("D02 X285".into()),
        ..Lead::default()
    };
    let mut b = a.clone();
    b.first_name = Some("Bob".into());
    b.street = Some("4 Elm Road".into());
    let d = deduper();
    let (ka, kb) = (d.keys(&a), d.keys(&b));
    assert!(ka.iter().any(|k| kb.contains(k)), "{ka:?} {kb:?}");
    assert!(probability(&a, &b) > 0.8);
}

#[test]
fn transliterated_names_match() {
    let a = Lead {
        first_name: Some("Дмитрий".into()),
        last_name: Some("Иванов".into()),
        company_key: Some("globexa".into()),
        city: Some("Berlin".into()),
        ..Lead::default()
    };
    let b = Lead {
        first_name: Some("Dmitrii".into()),
        last_name: Some("Ivanov".into()),
        company_key: Some("globexa".into()),
        city: Some("Berlin".into()),
        ..Lead::default()
    };
    let d = deduper();
    let (ka, kb) = (d.keys(&a), d.keys(&b));
    assert!(ka.iter().any(|k| kb.contains(k)), "{ka:?} {kb:?}");
    let m = d.compare(&[a, b], &[(0, 1)], true).remove(0);
    let name = m.evidence.iter().find(|e| e.field == "last_name").unwrap();
    assert!(name.detail.contains("transliterated"), "{name:?}");
    let given = m.evidence.iter().find(|e| e.field == "first_name").unwrap();
    assert_eq!(given.level, "exact", "{given:?}");
    assert!(given.weight > 0.0, "{given:?}");
}

#[test]
fn the_same_crm_id_decides_and_two_ids_in_one_system_conflict() {
    let mut a = person();
    a.external_ids = vec![ExternalId {
        system: "hubspot".into(),
        id: "101".into(),
    }];
    let mut b = a.clone();
    b.external_ids[0].id = "202".into();
    let m = deduper().compare(&[a, b], &[(0, 1)], true).remove(0);
    let x = m
        .evidence
        .iter()
        .find(|e| e.field == "external_id")
        .unwrap();
    assert_eq!(x.level, "conflict");
    assert!(x.weight < 0.0);
}

#[test]
fn pairs_outside_the_list_are_reported_not_panicked() {
    let m = deduper().compare(&[person()], &[(0, 5)], false);
    assert_eq!(m[0].probability, 0.0);
    assert!(m[0].evidence[0].detail.contains("outside"));
}

#[test]
fn settings_mistakes_are_named() {
    let e = Deduper::from_json(r#"{"identity_fields": [" "]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("identity_fields"), "{e}");
    let e = Deduper::from_json(r#"{"nicknames": [["solo"]]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nicknames"), "{e}");
    let e = Deduper::from_json(r#"{"model": {"version": 1}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model"), "{e}");
    let e = Deduper::from_json(r#"{"modle": {}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("modle"), "{e}");
}

#[test]
fn identity_columns_compare_and_block() {
    let d = Deduper::from_json(r#"{"identity_fields": ["customer_no"]}"#).unwrap();
    let with = |no: &str| Lead {
        last_name: Some("Smith".into()),
        custom: vec![leadgate_lead::CustomField {
            key: "customer_no".into(),
            value: no.into(),
        }],
        ..Lead::default()
    };
    assert!(
        d.keys(&with("C-1"))
            .iter()
            .any(|k| k.starts_with("i:customer_no:"))
    );
    let m = d
        .compare(&[with("C-1"), with("C-2")], &[(0, 1)], true)
        .remove(0);
    assert!(
        m.evidence
            .iter()
            .any(|e| e.field == "custom:customer_no" && e.level == "different")
    );
}

#[test]
fn identity_columns_with_common_names_are_used_unless_turned_off() {
    let with = |dob: &str| Lead {
        first_name: Some("Anna".into()),
        last_name: Some("Smith".into()),
        custom: vec![leadgate_lead::CustomField {
            key: "date_of_birth".into(),
            value: dob.into(),
        }],
        ..Lead::default()
    };
    let d = deduper();
    assert!(
        d.keys(&with("19800102"))
            .iter()
            .any(|k| k.starts_with("i:date_of_birth:"))
    );
    let same = d
        .compare(&[with("19800102"), with("19800102")], &[(0, 1)], true)
        .remove(0);
    let dob = same
        .evidence
        .iter()
        .find(|e| e.field == "custom:date_of_birth")
        .unwrap();
    assert!(dob.weight > 0.0, "weighed as a generic identifier: {dob:?}");
    let other = d
        .compare(&[with("19800102"), with("19751231")], &[(0, 1)], false)
        .remove(0);
    assert!(other.probability < same.probability);
    let off = Deduper::from_json(r#"{"identity_fields": []}"#).unwrap();
    assert!(
        !off.keys(&with("19800102"))
            .iter()
            .any(|k| k.starts_with("i:"))
    );
}

#[test]
fn details_are_written_only_when_asked_for_and_nothing_else_changes() {
    // Pairs that reach every kind of field comparison: differing values,
    // near ones, and a tenant's identity column.
    let d = Deduper::from_json(r#"{"identity_fields": ["customer_no"]}"#).unwrap();
    let mut a = person();
    a.street = Some("12 High Street".into());
    a.custom = vec![leadgate_lead::CustomField {
        key: "customer_no".into(),
        value: "C-1".into(),
    }];
    let mut b = a.clone();
    b.first_name = Some("Bill".into());
    b.email = Some("w.smith@other.org".into());
    b.phone = Some("+442079469999".into());
    b.street = Some("12 High St".into());
    b.postcode = Some("SW1A 1AB".into());
    b.city = Some("Londn".into());
    b.custom = vec![leadgate_lead::CustomField {
        key: "customer_no".into(),
        value: "C-2".into(),
    }];
    let mut c = person();
    c.first_name = None;
    let leads = [a, b, c];
    let pairs = [(0, 1), (0, 2), (1, 2), (0, 0)];
    let bulk = d.compare(&leads, &pairs, false);
    let explained = d.compare(&leads, &pairs, true);
    for (x, y) in bulk.iter().zip(&explained) {
        assert_eq!(x.probability, y.probability);
        assert!(x.evidence.is_empty());
        assert!(y.evidence.iter().any(|e| !e.detail.is_empty()), "{y:?}");
    }
    // The levels the model weighs do not depend on the details either.
    let (fa, fb) = (d.prepare(&leads[0]), d.prepare(&leads[1]));
    let with: Vec<(String, String)> = explained[0]
        .evidence
        .iter()
        .map(|e| (e.field.clone(), e.level.clone()))
        .collect();
    let without: Vec<(String, String)> = d
        .levels(&fa, &fb)
        .into_iter()
        .map(|(f, l)| (f, l.to_string()))
        .collect();
    assert_eq!(with, without);
    assert!(with.iter().any(|(f, _)| f == "custom:customer_no"));
}

#[test]
fn the_names_and_city_key_is_a_setting_off_by_default() {
    let mut lead = person();
    lead.email = None;
    lead.phone = None;
    let city_keys = |d: &Deduper| {
        d.keys(&lead)
            .into_iter()
            .filter(|k| k.starts_with("nt:"))
            .count()
    };
    assert_eq!(city_keys(&deduper()), 0);
    let on = Deduper::from_json(r#"{"name_city_key": true}"#).unwrap();
    assert_eq!(city_keys(&on), 1);
    let off = Deduper::from_json(r#"{"name_city_key": false}"#).unwrap();
    assert_eq!(city_keys(&off), 0);
    let bad = Deduper::from_json(r#"{"name_city_key": "yes"}"#).unwrap_err();
    assert!(bad.to_string().contains("`name_city_key`"), "{bad}");
    assert!(Deduper::from_json(r#"{"name_city_key": true} x"#).is_err());
}

/// Two records of one person or one household, as an old CRM export has
/// them: names and a postal address, no contact fields.
fn resident(first: &str, last: &str, street: &str) -> Lead {
    Lead {
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        street: Some(street.into()),
        city: Some("Turner".into()),
        postcode: Some("2612".into()),
        country: Some("AU".into()),
        ..Lead::default()
    }
}

#[test]
fn different_given_names_never_match_and_go_to_review_without_contacts() {
    let a = resident("April", "Dreckow", "19 Baynton Street");
    let b = resident("Cain", "Dreckow", "19 Baynton Street");
    assert!(probability(&a, &b) <= ASK_A_PERSON_CAP);
    // However much else agrees (here one shared mailbox, phone and
    // company), never a match.
    let shared = |l: &Lead| {
        let mut l = l.clone();
        l.email = Some("dreckow.family@example.com".into());
        l.phone = Some("+61262000000".into());
        l.company = Some("Dreckow Farms".into());
        l.company_key = Some("dreckowfarms".into());
        l
    };
    // A model for which a shared mailbox is near proof.
    let mut strong = Model::bundled().unwrap();
    if let Some(mu) = strong
        .fields
        .get_mut("email")
        .and_then(|l| l.get_mut("exact"))
    {
        mu.u = 1e-6;
    }
    let with = |cap: bool| {
        Deduper::new(Settings {
            model: Some(serde_json::to_value(&strong).unwrap()),
            different_given_names_cap: Some(cap),
            ..Settings::default()
        })
        .unwrap()
    };
    let free = with(false);
    let uncapped = free
        .compare(&[shared(&a), shared(&b)], &[(0, 1)], false)
        .remove(0);
    assert!(uncapped.probability > ASK_A_PERSON_CAP, "{uncapped:?}");
    let m = with(true)
        .compare(&[shared(&a), shared(&b)], &[(0, 1)], true)
        .remove(0);
    assert!(m.probability <= ASK_A_PERSON_CAP, "{m:?}");
    assert!(m.evidence.iter().any(|e| e.level == "cap"), "{m:?}");
    // With their own phones too, they are two people.
    let (mut a2, mut b2) = (shared(&a), shared(&b));
    a2.phone = Some("+61262000001".into());
    b2.phone = Some("+61262000002".into());
    assert!(probability(&a2, &b2) <= DIFFERENT_PEOPLE_CAP);
    // A typo, a nickname or two letters swapped are not different names.
    for other in ["Aprli", "Apirl"] {
        let c = resident(other, "Dreckow", "19 Baynton Street");
        assert!(probability(&a, &c) > ASK_A_PERSON_CAP, "{other}");
    }
    // Off by setting: the evidence alone decides.
    let m = free
        .compare(&[shared(&a), shared(&b)], &[(0, 1)], true)
        .remove(0);
    assert!(!m.evidence.iter().any(|e| e.level == "cap"), "{m:?}");
}

#[test]
fn address_levels_survive_typos_transpositions_and_a_second_line() {
    let level = |a: &Lead, b: &Lead, field: &str| -> String {
        let m = deduper()
            .compare(&[a.clone(), b.clone()], &[(0, 1)], true)
            .remove(0);
        m.evidence
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.level.clone())
            .unwrap_or_default()
    };
    let a = resident("Jessica", "Wittenoom", "42 Banks Street");
    let mut b = a.clone();
    b.street = Some("24 Banks St Stanton Lodge".into());
    b.postcode = Some("2621".into());
    assert_eq!(level(&a, &b, "street_number"), "transposed");
    assert_eq!(level(&a, &b, "street"), "same_words");
    assert_eq!(level(&a, &b, "postcode"), "transposed");
    b.street = Some("43 Bankss Street".into());
    b.postcode = Some("2613".into());
    assert_eq!(level(&a, &b, "street_number"), "one_edit");
    assert_eq!(level(&a, &b, "street"), "similar");
    assert_eq!(level(&a, &b, "postcode"), "one_edit");
    // The same postcode: the city follows from it and weighs nothing.
    assert_eq!(level(&a, &a.clone(), "city"), "missing");
    b.street = None;
    assert_eq!(level(&a, &b, "street_number"), "missing");
}

#[test]
fn spaces_typed_into_names_and_streets_are_read_through() {
    let a = resident("Sophie", "Snell", "4 Vaughan Gardens");
    let b = resident("Soph ie", "Snell", "4 Vaughan Gar dens");
    let m = deduper().compare(&[a, b], &[(0, 1)], true).remove(0);
    let first = m.evidence.iter().find(|e| e.field == "first_name").unwrap();
    assert_eq!(first.level, "exact", "{m:?}");
    let street = m.evidence.iter().find(|e| e.field == "street").unwrap();
    assert!(
        street.level == "similar" || street.level == "same_words",
        "{m:?}"
    );
}

#[test]
fn a_common_family_name_weighs_less_than_a_rare_one() {
    let mut d = deduper();
    let mut values = std::collections::BTreeMap::new();
    values.insert("smith".to_string(), 0.05);
    d.model.term_frequencies.insert(
        "last_name".into(),
        model::Frequencies {
            values,
            other: 0.0001,
        },
    );
    let weight = |last: &str| {
        let a = resident("Anna", last, "1 Kent Street");
        let m = d.compare(&[a.clone(), a], &[(0, 1)], true).remove(0);
        m.evidence
            .iter()
            .find(|e| e.field == "last_name")
            .map(|e| (e.weight, e.detail.clone()))
            .unwrap()
    };
    let (smith, detail) = weight("Smith");
    let (rare, _) = weight("Vanderbilt");
    assert!(smith < rare, "{smith} {rare}");
    assert!(detail.contains("% of leads"), "{detail}");
}
