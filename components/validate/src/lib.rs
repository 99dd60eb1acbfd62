//! leadgate's validate capability: normalize a raw lead, then decide accept,
//! reject or review with structured issues.
//!
//! The logic is plain Rust over [`leadgate_lead::Lead`] so it can be tested
//! and benchmarked natively; [`Validator`] is the capability as the guest
//! SDK's [`leadgate_sdk::Validate`], which the `wasm32` build exports as
//! `leadgate:plugin/validate@0.1.0`. It is pure and deterministic: the
//! tenant's [`Settings`] and "now" come from the host.
//!
//! Modules: [`text`] (Unicode clean-up, injection), [`names`], [`email`],
//! [`phone`], [`org`] (country, website/domain, company), [`lists`].

pub mod email;
pub mod lists;
pub mod names;
pub mod org;
pub mod phone;
mod settings;
pub mod text;

mod component;
pub use component::Validator;

pub use settings::{Settings, SettingsError};

use leadgate_lead::{Issue, Lead, Severity, Validation, Verdict};

/// Leads received more than this far in the future (ms) are suspicious.
const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// Normalizes and validates one lead.
pub fn validate(raw: &Lead, settings: &Settings, now: i64) -> Validation {
    validate_owned(raw.clone(), settings, now)
}

/// [`validate`] taking the lead by value: its strings are reused where they
/// need no change.
pub fn validate_owned(mut lead: Lead, settings: &Settings, now: i64) -> Validation {
    let mut issues = Vec::new();

    clean_text_fields(&mut lead, settings, &mut issues);
    normalize_names(&mut lead);

    if let Some(raw_country) = lead.country.take() {
        match org::country_code(&raw_country) {
            Some(code) => lead.country = Some(code),
            None => issues.push(Issue::new(
                "country",
                "country.unknown",
                Severity::Warning,
                format!("'{raw_country}' is not a country name or ISO 3166 code"),
            )),
        }
    }

    let corporate_email_domain = check_email(&mut lead, settings, &mut issues);
    check_phone(&mut lead, settings, &mut issues);
    check_website(&mut lead, corporate_email_domain, &mut issues);

    if let Some(company) = &lead.company {
        lead.company_key = org::company_key(company);
    }
    if let Some(cased) = lead.city.as_deref().and_then(names::recase) {
        lead.city = Some(cased);
    }
    if let Some(postcode) = &mut lead.postcode
        && postcode.chars().any(char::is_lowercase)
    {
        *postcode = postcode.to_uppercase();
    }

    for field in &settings.required {
        if lead.field_mut(field).is_some_and(|v| v.is_none()) {
            issues.push(Issue::new(
                field,
                &format!("{field}.required"),
                Severity::Error,
                format!("{field} is required by the tenant's settings but is missing or unusable"),
            ));
        }
    }
    if settings.require_contact && lead.email.is_none() && lead.phone.is_none() {
        issues.push(Issue::new(
            "contact",
            "contact.missing",
            Severity::Error,
            "no usable contact channel: the lead needs a valid email or phone number",
        ));
    }
    if lead.received_at > now.saturating_add(CLOCK_SKEW_MS) {
        issues.push(Issue::new(
            "received_at",
            "received_at.future",
            Severity::Warning,
            format!(
                "received_at is {} s in the future",
                (lead.received_at - now) / 1000
            ),
        ));
    }

    let verdict = if issues.iter().any(|i| i.severity == Severity::Error) {
        Verdict::Reject
    } else if settings.review_on_warning && issues.iter().any(|i| i.severity == Severity::Warning) {
        Verdict::Review
    } else {
        Verdict::Accept
    };
    Validation {
        verdict,
        lead,
        issues,
    }
}

/// Cleans every text field and custom field; enforces length limits and flags
/// injection attempts.
fn clean_text_fields(lead: &mut Lead, settings: &Settings, issues: &mut Vec<Issue>) {
    for (name, value) in lead.text_fields_mut() {
        let Some(raw) = value.take() else { continue };
        // An address is checked as received: cleaning would drop or fold
        // the characters that make it unsafe.
        if name == "email"
            && let Err(e) = email::check_characters(&raw)
        {
            issues.push(Issue::new("email", e.code, Severity::Warning, e.message));
            continue;
        }
        let Some(clean) = text::clean_owned(raw) else {
            continue;
        };
        let limit = settings.max_length_of(name);
        let len = clean.chars().count();
        if len > limit {
            issues.push(Issue::new(
                name,
                &format!("{name}.too_long"),
                Severity::Error,
                format!("{name} is {len} characters long; the limit is {limit}"),
            ));
            continue;
        }
        flag_injection(name, &clean, name == "phone", issues);
        *value = Some(clean);
    }
    let custom = std::mem::take(&mut lead.custom);
    for mut field in custom {
        let Some(key) = text::clean_owned(std::mem::take(&mut field.key)) else {
            continue;
        };
        let field_name = format!("custom.{key}");
        let value = text::clean_owned(std::mem::take(&mut field.value)).unwrap_or_default();
        let limit = settings.max_length_of(&field_name);
        let len = value.chars().count();
        if len > limit {
            issues.push(Issue::new(
                &field_name,
                "custom.too_long",
                Severity::Error,
                format!("{field_name} is {len} characters long; the limit is {limit}"),
            ));
            continue;
        }
        flag_injection(&field_name, &value, false, issues);
        field.key = key;
        field.value = value;
        lead.custom.push(field);
    }
}

fn flag_injection(field: &str, value: &str, allow_plus: bool, issues: &mut Vec<Issue>) {
    let (code, what) = match text::injection(value, allow_plus) {
        Some(text::Injection::Markup) => ("text.markup", "markup or script"),
        Some(text::Injection::Formula) => ("text.formula", "a spreadsheet formula"),
        None => return,
    };
    let shown: String = value.chars().take(40).collect();
    issues.push(Issue::new(
        field,
        code,
        Severity::Warning,
        format!("{field} looks like {what}: '{shown}'"),
    ));
}

/// Cases names and fills full / first / last from each other.
fn normalize_names(lead: &mut Lead) {
    for value in [
        &mut lead.first_name,
        &mut lead.last_name,
        &mut lead.full_name,
    ] {
        if let Some(cased) = value.as_deref().and_then(names::recase) {
            *value = Some(cased);
        }
    }
    match (&lead.first_name, &lead.last_name, &lead.full_name) {
        (None, None, Some(full)) => {
            let (first, last) = names::split_full_name(full);
            lead.first_name = first;
            lead.last_name = last;
        }
        (Some(_), _, _) | (_, Some(_), _) if lead.full_name.is_none() => {
            let parts: Vec<&str> = [&lead.first_name, &lead.last_name]
                .into_iter()
                .filter_map(|v| v.as_deref())
                .collect();
            lead.full_name = Some(parts.join(" "));
        }
        _ => {}
    }
}

/// Normalizes and checks the email. Returns the registrable domain when the
/// address is a corporate one (neither free-mail nor disposable).
fn check_email(lead: &mut Lead, settings: &Settings, issues: &mut Vec<Issue>) -> Option<String> {
    let raw = lead.email.take()?;
    let parsed = match email::parse(&raw, &settings.email) {
        Ok(p) => p,
        Err(e) => {
            issues.push(Issue::new("email", e.code, Severity::Warning, e.message));
            return None;
        }
    };
    let flags = email::flags(&parsed);
    let pick = |reject: bool, otherwise: Severity| {
        if reject { Severity::Error } else { otherwise }
    };
    if flags.disposable {
        issues.push(Issue::new(
            "email",
            "email.disposable",
            pick(settings.reject_disposable, Severity::Warning),
            format!("'{}' is a disposable-email domain", parsed.domain),
        ));
    }
    if flags.free_mail {
        issues.push(Issue::new(
            "email",
            "email.free_provider",
            pick(settings.reject_free_mail, Severity::Info),
            format!(
                "'{}' is a free-mail provider, not a company domain",
                parsed.domain
            ),
        ));
    }
    if flags.role_account {
        issues.push(Issue::new(
            "email",
            "email.role_account",
            pick(settings.reject_role_accounts, Severity::Info),
            format!("'{}' is a role account, not a person", parsed.address),
        ));
    }
    let corporate = (!flags.free_mail && !flags.disposable)
        .then(|| parsed.registrable.clone())
        .flatten();
    lead.email = Some(parsed.address);
    corporate
}

fn check_phone(lead: &mut Lead, settings: &Settings, issues: &mut Vec<Issue>) {
    let Some(raw) = lead.phone.take() else { return };
    let region = lead
        .country
        .as_deref()
        .or(settings.default_region.as_deref());
    match phone::parse(&raw, region) {
        Ok(p) => {
            lead.phone = Some(p.e164);
            if p.extension.is_some() {
                lead.phone_extension = p.extension;
            }
        }
        Err(e) => issues.push(Issue::new("phone", e.code, Severity::Warning, e.message)),
    }
}

fn check_website(lead: &mut Lead, email_domain: Option<String>, issues: &mut Vec<Issue>) {
    let given = lead.website.clone().or_else(|| lead.domain.take());
    lead.domain = None;
    if let Some(site) = given {
        match org::website_domain(&site) {
            Ok(domain) => lead.domain = Some(domain),
            Err((code, message)) => {
                let field = if lead.website.is_some() {
                    "website"
                } else {
                    "domain"
                };
                issues.push(Issue::new(field, code, Severity::Warning, message));
                lead.website = None;
            }
        }
    }
    if lead.domain.is_none() {
        lead.domain = email_domain;
    }
}

/// Runs every code path once, so a snapshot taken afterwards (wizer) holds
/// the lazily built tables and compiled patterns.
pub fn warm_up() {
    phone::warm_up();
    let sample = Lead {
        email: Some("Jane.O'Neil@Bücher.example.co.uk".into()),
        phone: Some("+44 20 7946 0958 ext. 2".into()),
        first_name: Some("JANE".into()),
        last_name: Some("o'neil".into()),
        company: Some("Bücher GmbH & Co. KG".into()),
        website: Some("https://www.bücher.de/".into()),
        country: Some("Deutschland".into()),
        city: Some("MÜNCHEN".into()),
        ..Lead::default()
    };
    let _ = validate(&sample, &Settings::default(), 0);
}

#[cfg(test)]
mod tests;
