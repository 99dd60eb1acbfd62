//! The tenant's enrich settings (`[enrich.settings]` in `leadgate.toml`,
//! passed in as JSON). Unknown keys and bad values are refused by name.

use serde::Deserialize;

/// Every field an enricher can set, for checking `want`.
pub use leadgate_lead::enrich::FIELDS;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The fields whose presence makes an enrichment `complete` (from the
    /// lead as given or from enrichment).
    pub want: Vec<String>,
    /// Ask the host for the company behind the lead's domain.
    pub lookup_company: bool,
    /// Ask the host for the person behind the lead's email.
    pub lookup_person: bool,
    /// Derive a company name from a corporate domain when no provider knows it.
    pub company_from_domain: bool,
    /// Confidence is multiplied by this for answers served stale from cache.
    pub stale_factor: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            want: [
                "company",
                "country",
                "industry",
                "employee_range",
                "timezone",
                "seniority",
                "department",
            ]
            .map(String::from)
            .to_vec(),
            lookup_company: true,
            lookup_person: true,
            company_from_domain: true,
            stale_factor: 0.8,
        }
    }
}

/// A setting the enricher refuses.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("enrich settings are not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("enrich setting `want`: unknown field `{0}` (known: {known})", known = FIELDS.join(", "))]
    UnknownField(String),
    #[error("enrich setting `stale_factor` must be between 0 and 1, not {0}")]
    StaleFactor(f64),
}

impl Settings {
    pub fn from_json(json: &str) -> Result<Settings, SettingsError> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let s: Settings = serde_json::from_str(json)?;
        if let Some(bad) = s.want.iter().find(|w| !FIELDS.contains(&w.as_str())) {
            return Err(SettingsError::UnknownField(bad.clone()));
        }
        if !(0.0..=1.0).contains(&s.stale_factor) {
            return Err(SettingsError::StaleFactor(s.stale_factor));
        }
        Ok(s)
    }
}
