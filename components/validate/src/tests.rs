//! Whole-lead scenarios: verdicts, issue codes and the normalized record.

use super::*;
use leadgate_lead::CustomField;

fn lead() -> Lead {
    Lead {
        id: "l1".into(),
        tenant: "acme".into(),
        received_at: 1_000,
        ..Lead::default()
    }
}

fn codes(v: &Validation) -> Vec<&str> {
    v.issues.iter().map(|i| i.code.as_str()).collect()
}

fn us() -> Settings {
    Settings::from_json(r#"{"default_region": "us"}"#).unwrap()
}

#[test]
fn a_clean_b2b_lead_is_accepted_and_normalized() {
    let raw = Lead {
        email: Some("  JANE.Doe@Example.COM ".into()),
        phone: Some("(415) 555-2671 ext. 12".into()),
        first_name: Some("JANE".into()),
        last_name: Some("o'neil".into()),
        company: Some("Example, Inc.".into()),
        website: Some("https://www.example.com/contact".into()),
        country: Some("United States".into()),
        city: Some("san francisco".into()),
        postcode: Some("94105".into()),
        ..lead()
    };
    let v = validate(&raw, &us(), 2_000);
    assert_eq!(v.verdict, Verdict::Accept, "{:?}", v.issues);
    let l = &v.lead;
    assert_eq!(l.email.as_deref(), Some("JANE.Doe@example.com"));
    assert_eq!(l.phone.as_deref(), Some("+14155552671"));
    assert_eq!(l.phone_extension.as_deref(), Some("12"));
    assert_eq!(l.full_name.as_deref(), Some("Jane O'Neil"));
    assert_eq!(l.company_key.as_deref(), Some("example"));
    assert_eq!(l.domain.as_deref(), Some("example.com"));
    assert_eq!(l.country.as_deref(), Some("US"));
    assert_eq!(l.city.as_deref(), Some("San Francisco"));
}

#[test]
fn the_lead_country_beats_the_default_region_for_phones() {
    let raw = Lead {
        phone: Some("030 901820".into()),
        country: Some("Germany".into()),
        ..lead()
    };
    let v = validate(&raw, &us(), 2_000);
    assert_eq!(v.lead.phone.as_deref(), Some("+4930901820"));
}

#[test]
fn no_usable_contact_is_rejected_with_every_reason() {
    let raw = Lead {
        email: Some("not-an-email".into()),
        phone: Some("12".into()),
        ..lead()
    };
    let v = validate(&raw, &us(), 2_000);
    assert_eq!(v.verdict, Verdict::Reject);
    assert_eq!(
        codes(&v),
        ["email.syntax", "phone.syntax", "contact.missing"]
    );
    assert!(v.issues[0].message.contains("not-an-email"));
}

#[test]
fn a_bad_field_beside_a_good_channel_goes_to_review() {
    let raw = Lead {
        email: Some("jane@example.com".into()),
        phone: Some("555-0000".into()),
        ..lead()
    };
    let v = validate(&raw, &us(), 2_000);
    assert_eq!(v.verdict, Verdict::Review);
    assert_eq!(codes(&v), ["phone.invalid_for_region"]);
    assert_eq!(
        v.lead.phone, None,
        "an invalid value is not passed on as normalized"
    );
}

#[test]
fn disposable_and_free_mail_are_flags_unless_the_tenant_rejects_them() {
    let raw = Lead {
        email: Some("x@mailinator.com".into()),
        ..lead()
    };
    let v = validate(&raw, &us(), 2_000);
    assert_eq!(
        (v.verdict, codes(&v)),
        (Verdict::Review, vec!["email.disposable"])
    );
    let strict =
        Settings::from_json(r#"{"reject_disposable": true, "reject_free_mail": true}"#).unwrap();
    assert_eq!(validate(&raw, &strict, 2_000).verdict, Verdict::Reject);

    let free = Lead {
        email: Some("jane@gmail.com".into()),
        ..lead()
    };
    let v = validate(&free, &us(), 2_000);
    assert_eq!(
        (v.verdict, codes(&v)),
        (Verdict::Accept, vec!["email.free_provider"])
    );
    assert_eq!(
        v.lead.domain, None,
        "a free-mail domain is not the company's"
    );
    assert_eq!(validate(&free, &strict, 2_000).verdict, Verdict::Reject);
}

#[test]
fn required_fields_and_length_limits_name_the_field() {
    let settings =
        Settings::from_json(r#"{"required": ["company"], "max_lengths": {"first_name": 5}}"#)
            .unwrap();
    let raw = Lead {
        email: Some("jane@example.com".into()),
        first_name: Some("Bartholomew".into()),
        ..lead()
    };
    let v = validate(&raw, &settings, 2_000);
    assert_eq!(v.verdict, Verdict::Reject);
    assert_eq!(codes(&v), ["first_name.too_long", "company.required"]);
    assert_eq!(v.issues[0].field, "first_name");
}

#[test]
fn injection_in_text_and_custom_fields_is_flagged() {
    let raw = Lead {
        email: Some("jane@example.com".into()),
        company: Some("<script>alert(1)</script>".into()),
        custom: vec![CustomField {
            key: " Notes ".into(),
            value: "=HYPERLINK(\"http://x\")".into(),
        }],
        ..lead()
    };
    let v = validate(&raw, &us(), 2_000);
    assert_eq!(v.verdict, Verdict::Review);
    assert_eq!(codes(&v), ["text.markup", "text.formula"]);
    assert_eq!(v.issues[1].field, "custom.Notes");
    assert_eq!(v.lead.custom[0].key, "Notes");
}

#[test]
fn unknown_countries_and_future_timestamps_are_warnings() {
    let raw = Lead {
        email: Some("jane@example.com".into()),
        country: Some("Atlantis".into()),
        received_at: 10 * 60 * 1000,
        ..lead()
    };
    let v = validate(&raw, &us(), 0);
    assert_eq!(codes(&v), ["country.unknown", "received_at.future"]);
}

#[test]
fn validation_is_deterministic() {
    let raw = Lead {
        email: Some("Jane@Example.com".into()),
        full_name: Some("VAN DER BERG, ANNA".into()),
        ..lead()
    };
    let a = validate(&raw, &us(), 5);
    let b = validate(&raw, &us(), 5);
    assert_eq!(a, b);
    assert_eq!(a.lead.first_name.as_deref(), Some("Anna"));
    assert_eq!(a.lead.last_name.as_deref(), Some("van der Berg"));
}

#[test]
fn settings_errors_name_the_setting() {
    let e = Settings::from_json(r#"{"default_region": "Mars"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("default_region") && e.contains("Mars"), "{e}");
    let e = Settings::from_json(r#"{"required": ["shoe_size"]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shoe_size"), "{e}");
    let e = Settings::from_json(r#"{"colour": "blue"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("colour"), "{e}");
    assert!(Settings::from_json("").is_ok());
}
