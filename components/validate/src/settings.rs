//! The tenant's settings for validation, from the `[validate.settings]`
//! table of `leadgate.toml`, passed to the component as JSON.

use crate::email::EmailRules;
use leadgate_lead::TEXT_FIELDS;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A setting the component cannot use; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("validate settings are not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("validate setting `{setting}`: {reason}")]
    Invalid { setting: String, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// ISO alpha-2 region for national phone numbers when the lead has no
    /// country.
    pub default_region: Option<String>,
    /// Canonical fields that must be present and usable.
    pub required: Vec<String>,
    /// Require at least one usable contact channel (email or phone).
    pub require_contact: bool,
    pub email: EmailRules,
    pub reject_disposable: bool,
    pub reject_free_mail: bool,
    pub reject_role_accounts: bool,
    /// Default limit, in characters, for text fields.
    pub max_length: usize,
    /// Per-field limits (`email`, `custom.<key>`, …).
    pub max_lengths: BTreeMap<String, usize>,
    /// Send leads with warnings to review (otherwise accept them).
    pub review_on_warning: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_region: None,
            required: Vec::new(),
            require_contact: true,
            email: EmailRules::default(),
            reject_disposable: false,
            reject_free_mail: false,
            reject_role_accounts: false,
            max_length: 256,
            max_lengths: BTreeMap::new(),
            review_on_warning: true,
        }
    }
}

impl Settings {
    /// Parses and checks settings JSON (`{}` gives the defaults).
    pub fn from_json(json: &str) -> Result<Settings, SettingsError> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let mut s: Settings = serde_json::from_str(json)?;
        if let Some(region) = &s.default_region {
            let upper = region.trim().to_ascii_uppercase();
            if upper.len() != 2 || crate::phone::region(&upper).is_none() {
                return Err(SettingsError::Invalid {
                    setting: "default_region".into(),
                    reason: format!("'{region}' is not an ISO 3166 alpha-2 region code"),
                });
            }
            s.default_region = Some(upper);
        }
        for field in &s.required {
            if !TEXT_FIELDS.contains(&field.as_str()) {
                return Err(SettingsError::Invalid {
                    setting: "required".into(),
                    reason: format!(
                        "'{field}' is not a canonical field ({})",
                        TEXT_FIELDS.join(", ")
                    ),
                });
            }
        }
        for field in s.max_lengths.keys() {
            if !TEXT_FIELDS.contains(&field.as_str()) && !field.starts_with("custom.") {
                return Err(SettingsError::Invalid {
                    setting: "max_lengths".into(),
                    reason: format!("'{field}' is not a canonical field or custom.<key>"),
                });
            }
        }
        if s.max_length == 0 {
            return Err(SettingsError::Invalid {
                setting: "max_length".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(s)
    }

    /// The length limit for a field.
    pub fn max_length_of(&self, field: &str) -> usize {
        if let Some(n) = self.max_lengths.get(field) {
            return *n;
        }
        match field {
            "email" => 254,
            _ if field.starts_with("custom.") => self.max_length.max(1024),
            _ => self.max_length,
        }
    }
}
