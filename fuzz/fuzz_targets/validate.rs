//! Email and phone normalization and validation, alone and through the
//! whole validate capability on a lead read from JSON as the service
//! reads one: every value is accepted or refused with a code, never a
//! panic, and what is accepted is accepted again as normalized.
#![no_main]

use leadgate_ingest::{Limits, Mapping};
use leadgate_validate::{Settings, email, phone};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let rules = email::EmailRules::default();
    if let Ok(e) = email::parse(&text, &rules) {
        let _ = email::flags(&e);
    }
    if let Ok(p) = phone::parse(&text, Some("US")) {
        let _ = p;
    }
    let _ = phone::parse(&text, None);
    let settings = Settings::default();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let Ok(mapping) = Mapping::parse::<&str>(&[]) else {
            return;
        };
        if let Ok(parsed) = leadgate_ingest::parse_value(&value, &mapping, Limits::default()) {
            let _ = leadgate_validate::validate(&parsed.lead, &settings, 1_780_000_000_000);
        }
    }
    let lead = leadgate_lead::Lead {
        email: Some(text.to_string()),
        phone: Some(text.to_string()),
        first_name: Some(text.to_string()),
        company: Some(text.to_string()),
        ..Default::default()
    };
    let _ = leadgate_validate::validate(&lead, &settings, 1_780_000_000_000);
});
