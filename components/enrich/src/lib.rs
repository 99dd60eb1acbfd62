//! The enrich capability, as plain Rust: decides what a lead is missing,
//! asks the host's lookups (company by domain, person by email), derives
//! what needs no provider, and returns every field it set with its source
//! and confidence, plus an overall status.
//!
//! - [`settings`]: the tenant's `[enrich.settings]`.
//! - [`derive`]: email type, company from domain, country from phone,
//!   timezone, seniority and department from the job title.
//! - `component`: [`Enricher`] as the guest SDK's [`leadgate_sdk::Enrich`],
//!   exported by the `wasm32` build as `leadgate:plugin/enrich@0.1.0`.
//!
//! The component never talks to the network: [`Lookups`] is the host's
//! `lookup` interface, answered from what the host has fetched or cached.

pub mod derive;
pub mod settings;

mod component;

#[cfg(test)]
mod tests;

use leadgate_lead::enrich::{EnrichStatus, EnrichedField, Enrichment, Outcome, Provenance};
use leadgate_lead::{Issue, Lead, Severity};
pub use settings::{Settings, SettingsError};

pub use leadgate_lead::enrich::Lookups;

/// Confidence of derivations, by rule.
const EMAIL_TYPE: f64 = 1.0;
const COMPANY_FROM_DOMAIN: f64 = 0.5;
const COUNTRY_FROM_PHONE: f64 = 0.8;
const FROM_TITLE: f64 = 0.7;
const INDIVIDUAL: f64 = 0.5;
const DERIVED: &str = "derived";
pub use leadgate_lead::enrich::NO_PROVIDER;

/// An enricher configured for one tenant.
#[derive(Debug, Clone)]
pub struct Enricher {
    settings: Settings,
    /// Seniority and department by job title: titles repeat across leads.
    titles: std::cell::RefCell<std::collections::HashMap<String, Title>>,
}

type Title = (Option<&'static str>, Option<&'static str>);

/// Distinct titles remembered at most (then the memory starts over).
const TITLE_MEMORY: usize = 4096;

/// Fields collected for one lead.
struct Out<'a> {
    lead: &'a Lead,
    fields: Vec<EnrichedField>,
    issues: Vec<Issue>,
    /// A lookup failed or was not ready: nothing to show for it yet.
    failed_lookup: bool,
}

impl Out<'_> {
    /// The lead's own value of a canonical field, or what enrichment set.
    fn value(&self, field: &str) -> Option<&str> {
        self.lead.field(field).or_else(|| {
            self.fields
                .iter()
                .find(|f| f.field == field)
                .map(|f| f.value.as_str())
        })
    }

    /// Sets `field` unless the lead or an earlier, surer source has it.
    fn set(&mut self, field: &str, value: Option<&str>, source: &str, confidence: f64) {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return;
        };
        if self.value(field).is_some() {
            return;
        }
        self.fields.push(EnrichedField {
            field: field.to_string(),
            value: value.to_string(),
            source: source.to_string(),
            confidence: confidence.clamp(0.0, 1.0),
        });
    }

    /// Notes what a lookup's provenance says about the lead, and returns the
    /// confidence to give its fields.
    fn note(&mut self, what: &str, key: &str, p: &Provenance, stale_factor: f64) -> f64 {
        match p.outcome {
            Outcome::Found if p.stale => {
                self.issues.push(Issue::new(
                    what,
                    "enrich.stale",
                    Severity::Info,
                    format!(
                        "{what} data for '{key}' is from {}'s cache, past its time to live: the provider failed ({})",
                        p.source, p.detail
                    ),
                ));
                p.confidence * stale_factor
            }
            Outcome::Found => p.confidence,
            // No provider serves this kind of lookup: nothing to report.
            Outcome::NotFound if p.source == NO_PROVIDER => 0.0,
            Outcome::NotFound => {
                self.issues.push(Issue::new(
                    what,
                    "enrich.not_found",
                    Severity::Info,
                    format!("no provider knows the {what} '{key}'"),
                ));
                0.0
            }
            Outcome::Unavailable => {
                self.failed_lookup = true;
                self.issues.push(Issue::new(
                    what,
                    "enrich.unavailable",
                    Severity::Warning,
                    format!(
                        "the {what} lookup for '{key}' failed and nothing was cached ({}): queued for re-enrichment",
                        if p.detail.is_empty() { "no detail" } else { &p.detail }
                    ),
                ));
                0.0
            }
            Outcome::Pending => {
                self.failed_lookup = true;
                self.issues.push(Issue::new(
                    what,
                    "enrich.pending",
                    Severity::Info,
                    format!(
                        "the {what} lookup for '{key}' was not answered within the time budget: queued for re-enrichment"
                    ),
                ));
                0.0
            }
        }
    }
}

impl Enricher {
    pub fn new(settings: Settings) -> Enricher {
        Enricher {
            settings,
            titles: Default::default(),
        }
    }

    fn title(&self, title: &str) -> Title {
        let mut memory = self.titles.borrow_mut();
        if let Some(t) = memory.get(title) {
            return *t;
        }
        if memory.len() >= TITLE_MEMORY {
            memory.clear();
        }
        let t = derive::title(title);
        memory.insert(title.to_string(), t);
        t
    }

    /// An enricher from the tenant's settings as JSON.
    pub fn from_json(json: &str) -> Result<Enricher, SettingsError> {
        Settings::from_json(json).map(Enricher::new)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Enriches one normalized lead.
    pub fn enrich(&self, lead: &Lead, lookups: &mut dyn Lookups) -> Enrichment {
        let s = &self.settings;
        let mut out = Out {
            lead,
            fields: Vec::new(),
            issues: Vec::new(),
            failed_lookup: false,
        };
        let email = lead.email.as_deref().filter(|e| e.contains('@'));
        if let Some(kind) = email.and_then(derive::email_type) {
            out.set("email_type", Some(kind), DERIVED, EMAIL_TYPE);
        }

        let mut employer: Option<String> = None;
        if let (true, Some(email)) = (s.lookup_person, email) {
            let answer = lookups.person(email);
            let confidence = out.note("person", email, &answer.provenance, s.stale_factor);
            if let Some(p) = answer.value.filter(|_| confidence > 0.0) {
                let src = answer.provenance.source.as_str();
                out.set("first_name", p.first_name.as_deref(), src, confidence);
                out.set("last_name", p.last_name.as_deref(), src, confidence);
                out.set("job_title", p.job_title.as_deref(), src, confidence);
                out.set("seniority", p.seniority.as_deref(), src, confidence);
                out.set("department", p.department.as_deref(), src, confidence);
                out.set("linkedin", p.linkedin.as_deref(), src, confidence);
                out.set("country", p.country.as_deref(), src, confidence);
                out.set("city", p.city.as_deref(), src, confidence);
                employer = p.company_domain;
            }
        }

        let domain = lead.domain.clone().or(employer);
        if let (true, Some(domain)) = (s.lookup_company, domain.as_deref()) {
            let answer = lookups.company(domain);
            let confidence = out.note("company", domain, &answer.provenance, s.stale_factor);
            if let Some(c) = answer.value.filter(|_| confidence > 0.0) {
                let src = answer.provenance.source.as_str();
                out.set("company", c.name.as_deref(), src, confidence);
                out.set("industry", c.industry.as_deref(), src, confidence);
                out.set(
                    "employee_range",
                    c.employee_range.as_deref(),
                    src,
                    confidence,
                );
                out.set("revenue_range", c.revenue_range.as_deref(), src, confidence);
                if !c.technologies.is_empty() {
                    let techs = c.technologies.join(", ");
                    out.set("technologies", Some(&techs), src, confidence);
                }
                out.set("country", c.country.as_deref(), src, confidence);
                out.set("city", c.city.as_deref(), src, confidence);
            }
        }

        // Derivations, for what no provider supplied.
        if let Some(name) = domain
            .as_deref()
            .filter(|_| s.company_from_domain)
            .and_then(derive::company_from_domain)
        {
            out.set("company", Some(&name), DERIVED, COMPANY_FROM_DOMAIN);
        }
        if let Some(country) = lead.phone.as_deref().and_then(derive::country_from_phone) {
            out.set("country", Some(country), DERIVED, COUNTRY_FROM_PHONE);
        }
        if let Some(country) = out.value("country").map(str::to_string) {
            let region = out.value("region").map(str::to_string);
            let city = out.value("city").map(str::to_string);
            if let Some((tz, confidence)) =
                derive::timezone(&country, region.as_deref(), city.as_deref())
            {
                out.set("timezone", Some(tz), DERIVED, confidence);
            }
        }
        if let Some(title) = out.value("job_title").map(str::to_string) {
            let (seniority, department) = self.title(&title);
            // A title that names a function but no rank is an individual
            // contributor's ("Software Engineer"), less surely.
            match (seniority, department) {
                (Some(s), _) => out.set("seniority", Some(s), DERIVED, FROM_TITLE),
                (None, Some(_)) => out.set(
                    "seniority",
                    Some("individual_contributor"),
                    DERIVED,
                    INDIVIDUAL,
                ),
                (None, None) => {}
            }
            out.set("department", department, DERIVED, FROM_TITLE);
        }

        let status = self.status(&out);
        Enrichment {
            status,
            fields: out.fields,
            issues: out.issues,
        }
    }

    /// Complete when every wanted field is there; failed when a lookup
    /// failed and enrichment added none of them; partial otherwise.
    fn status(&self, out: &Out<'_>) -> EnrichStatus {
        let want = &self.settings.want;
        let present = want.iter().filter(|w| out.value(w).is_some()).count();
        let added = want
            .iter()
            .filter(|w| out.fields.iter().any(|f| &f.field == *w))
            .count();
        if present == want.len() {
            EnrichStatus::Complete
        } else if out.failed_lookup && added == 0 {
            EnrichStatus::Failed
        } else {
            EnrichStatus::Partial
        }
    }
}
