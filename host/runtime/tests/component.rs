//! The real validate component through the runtime: the same answers as the
//! native logic, settings refused with a reason, a fresh instance per call.

#![allow(clippy::unwrap_used)]

use leadgate_lead::{Lead, Verdict};
use leadgate_runtime::{CallError, Limits, Runtime, ValidatorComponent};
use std::path::{Path, PathBuf};

fn component(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/components")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo xtask build`",
        path.display()
    );
    path
}

fn runtime() -> Runtime {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/wasmtime-cache");
    Runtime::new(Limits::default(), Some(cache)).unwrap()
}

fn leads() -> Vec<Lead> {
    let raw = [
        ("JANE@Example.COM", "(415) 555-2671", "USA", "Acme, Inc."),
        (
            "bob@@example.com",
            "+44 20 7946 0958",
            "",
            "Bob's <b>Shop</b>",
        ),
        ("x@mailinator.com", "555-0100", "United States", ""),
        ("info@bücher.de", "030 901820", "Deutschland", "Bücher GmbH"),
        ("", "", "Atlantis", ""),
        (
            "\"quoted\"@example.com",
            "＋１ ４１５ ５５５ ２６７１",
            "",
            "=cmd()",
        ),
        // Unsafe characters, folding into syntax, a special-use domain.
        ("me\u{202E}moc.x@example.com", "", "", ""),
        ("me\u{200B}@example.com", "", "", ""),
        ("me＠example.com", "", "", ""),
        ("me@example\u{2488}com", "", "", ""),
        ("me@host.test", "", "", ""),
    ];
    raw.iter()
        .enumerate()
        .map(|(i, (email, phone, country, company))| {
            let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
            Lead {
                id: format!("l{i}"),
                tenant: "t".into(),
                email: some(email),
                phone: some(phone),
                country: some(country),
                company: some(company),
                full_name: Some("MARY-KATE VAN DER BERG".into()),
                ..Lead::default()
            }
        })
        .collect()
}

#[test]
fn the_component_agrees_with_the_native_logic() {
    let rt = runtime();
    let c = ValidatorComponent::load(&rt, &component("validate.wasm")).unwrap();
    let settings = r#"{"default_region": "US"}"#;
    let native = leadgate_validate::Settings::from_json(settings).unwrap();
    let mut inst = c.instantiate(settings).unwrap();
    let leads = leads();
    let batch = inst.validate_batch(&leads, 1_000).unwrap();
    for (lead, got) in leads.iter().zip(&batch) {
        let want = leadgate_validate::validate(lead, &native, 1_000);
        assert_eq!(got, &want, "lead {}", lead.id);
        assert_eq!(inst.validate(lead, 1_000).unwrap(), want);
    }
    assert_eq!(batch[0].verdict, Verdict::Accept);
    assert_eq!(batch[0].lead.phone.as_deref(), Some("+14155552671"));
    assert_eq!(
        batch[5].lead.phone.as_deref(),
        Some("+14155552671"),
        "full-width digits"
    );
    let email_codes: Vec<Vec<&str>> = batch[6..]
        .iter()
        .map(|v| {
            v.issues
                .iter()
                .filter(|i| i.field == "email")
                .map(|i| i.code.as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        email_codes,
        [
            ["email.bidi_control"],
            ["email.invisible_character"],
            ["email.folds_to_syntax"],
            ["email.folds_to_syntax"],
            ["email.special_use_domain"],
        ]
    );
    assert!(batch[6..].iter().all(|v| v.lead.email.is_none()));
    assert_eq!(c.digest().len(), 64);
}

#[test]
fn bad_settings_are_refused_with_the_setting_named() {
    let rt = runtime();
    let c = ValidatorComponent::load(&rt, &component("validate.wasm")).unwrap();
    match c.instantiate(r#"{"max_length": 0}"#) {
        Err(CallError::Settings(msg)) => assert!(msg.contains("max_length"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("accepted bad settings"),
    }
}

/// The mapping of this process that holds `addr`, as `/proc/self/maps`
/// names it: a file's path, or empty for anonymous memory.
#[cfg(target_os = "linux")]
fn mapping_of(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        if (lo..hi).contains(&addr) {
            return fields.nth(4).unwrap_or("").to_string();
        }
    }
    panic!("{addr:#x} is in no mapping");
}

#[test]
#[cfg(target_os = "linux")]
fn a_component_compiled_cold_is_mapped_from_the_cache_like_a_warm_one() {
    let dir = std::env::temp_dir().join(format!("leadgate-cold-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Runtime::new(Limits::default(), Some(dir.clone())).unwrap();
    let bytes = std::fs::read(component("validate.wasm")).unwrap();
    let digest = leadgate_runtime::digest(&bytes);
    // Cold: compiled now, then written to the cache. The compiled code
    // (and the pre-initialized memory image beside it) must not stay in
    // anonymous memory for the life of the process.
    let cold = rt.compile(&bytes, &digest).unwrap();
    let warm = rt.compile(&bytes, &digest).unwrap();
    for (what, c) in [("cold", &cold), ("warm", &warm)] {
        let at = c.image_range().start as usize;
        let mapped = mapping_of(at);
        assert!(
            mapped.ends_with(".cwasm") && mapped.contains("leadgate-cold-cache-"),
            "{what} start: the image at {at:#x} is in {mapped:?}, not the cached artifact"
        );
    }
    drop((cold, warm));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_pre_initialized_component_keeps_its_init_export_harmless() {
    let rt = runtime();
    let bytes = std::fs::read(component("validate.wasm")).unwrap();
    assert!(leadgate_runtime::preinit::has_init(&rt, &bytes).unwrap());
}

#[test]
fn the_dedupe_component_agrees_with_the_native_logic() {
    use leadgate_runtime::DeduperComponent;
    let rt = runtime();
    let c = DeduperComponent::load(&rt, &component("dedupe.wasm")).unwrap();
    let native = leadgate_dedupe::Deduper::from_json("{}").unwrap();
    let mut inst = c.instantiate("{}").unwrap();
    let person = |first: &str, last: &str, email: &str| Lead {
        id: email.into(),
        tenant: "t".into(),
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        email: Some(email.into()),
        company_key: Some("acme".into()),
        postcode: Some("SW1A 1AA".into()),
        ..Lead::default()
    };
    let leads = [
        person("William", "Smith", "william.smith@acme.com"),
        person("Bill", "Smith", "William.Smith+x@acme.com"),
        person("Анна", "Ковальски", "anna@globex.de"),
    ];
    let refs: Vec<&Lead> = leads.iter().collect();
    let keys = inst.keys(&refs, 0).unwrap();
    for (lead, got) in leads.iter().zip(&keys) {
        assert_eq!(got, &native.keys(lead));
    }
    let pairs = [(0, 1), (0, 2), (1, 2)];
    let got = inst.compare(&refs, &pairs, true, 0).unwrap();
    assert_eq!(got, native.compare(&leads, &pairs, true));
    assert!(got[0].probability > 0.9, "{:?}", got[0]);
    assert!(got[1].probability < 0.5, "{:?}", got[1]);
    let quiet = inst.compare(&refs, &pairs, false, 0).unwrap();
    assert!(quiet.iter().all(|m| m.evidence.is_empty()));
}

#[test]
fn a_validate_component_is_refused_as_a_deduper_by_name() {
    let rt = runtime();
    let e = match leadgate_runtime::DeduperComponent::load(&rt, &component("validate.wasm")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a validator was loaded as a deduper"),
    };
    assert!(
        e.contains("deduper") && e.contains("leadgate:plugin/validate@0.1.0"),
        "{e}"
    );
    let e = leadgate_runtime::DeduperComponent::load(&rt, &component("dedupe.wasm"))
        .unwrap()
        .instantiate(r#"{"nicknames": [["x"]]}"#)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("nicknames"), "{e}");
}

/// Lookups with a few known companies, counting what was asked.
#[derive(Default)]
struct Known {
    asked: Vec<String>,
}

impl leadgate_lead::enrich::Lookups for Known {
    fn company(
        &mut self,
        domain: &str,
    ) -> leadgate_lead::enrich::Answer<leadgate_lead::enrich::Company> {
        use leadgate_lead::enrich::{Answer, Company, Outcome, Provenance};
        self.asked.push(format!("company:{domain}"));
        if domain == "acme.com" {
            Answer {
                provenance: Provenance {
                    outcome: Outcome::Found,
                    source: "local".into(),
                    confidence: 0.9,
                    stale: false,
                    detail: String::new(),
                },
                value: Some(Company {
                    domain: domain.into(),
                    name: Some("Acme Inc.".into()),
                    industry: Some("Software".into()),
                    employee_range: Some("51-200".into()),
                    technologies: vec!["AWS".into()],
                    ..Company::default()
                }),
            }
        } else {
            Answer::without(Outcome::Unavailable, "api", "HTTP 503")
        }
    }

    fn person(
        &mut self,
        email: &str,
    ) -> leadgate_lead::enrich::Answer<leadgate_lead::enrich::Person> {
        self.asked.push(format!("person:{email}"));
        leadgate_lead::enrich::Answer::without(leadgate_lead::enrich::Outcome::NotFound, "none", "")
    }
}

#[test]
fn the_enrich_component_agrees_with_the_native_logic_and_asks_the_host() {
    let rt = runtime();
    let c = leadgate_runtime::EnricherComponent::load(&rt, &component("enrich.wasm")).unwrap();
    let leads: Vec<Lead> = [
        ("jane@acme.com", "acme.com", "VP Sales", "+14155550100"),
        (
            "joe@globex.io",
            "globex.io",
            "Software Engineer",
            "+442079460000",
        ),
        ("amy@gmail.com", "", "", ""),
    ]
    .iter()
    .map(|(email, domain, title, phone)| {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Lead {
            tenant: "t".into(),
            email: some(email),
            domain: some(domain),
            job_title: some(title),
            phone: some(phone),
            ..Lead::default()
        }
    })
    .collect();
    let refs: Vec<&Lead> = leads.iter().collect();
    let mut inst = c.instantiate("{}").unwrap();
    let mut lent: Option<leadgate_runtime::enricher::LentLookups> =
        Some(Box::new(Known::default()));
    let got = inst.enrich(&refs, 0, &mut lent).unwrap();
    assert!(lent.is_some(), "the lookups are handed back after the call");
    let native = leadgate_enrich::Enricher::from_json("{}").unwrap();
    let mut known = Known::default();
    for (lead, g) in leads.iter().zip(&got) {
        assert_eq!(g, &native.enrich(lead, &mut known), "{lead:?}");
    }
    assert_eq!(got[0].get("industry").unwrap().value, "Software");
    assert_eq!(got[1].get("country").unwrap().value, "GB");
    assert!(got[1].issues.iter().any(|i| i.code == "enrich.unavailable"));
    assert_eq!(got[2].get("email_type").unwrap().value, "free");
    let e = match c.instantiate(r#"{"want": ["nope"]}"#) {
        Err(e) => e,
        Ok(_) => panic!("bad settings accepted"),
    };
    assert!(
        matches!(&e, CallError::Settings(m) if m.contains("nope")),
        "{e}"
    );
}

#[test]
fn a_validate_component_is_refused_as_an_enricher_by_name() {
    let rt = runtime();
    let e = leadgate_runtime::EnricherComponent::load(&rt, &component("validate.wasm"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("enricher") && e.contains("validate"), "{e}");
}
