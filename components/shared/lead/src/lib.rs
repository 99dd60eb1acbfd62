//! The canonical lead record, shared by the host and by the native side of
//! the capability components.
//!
//! It mirrors `record lead` and friends in `wit/v0.1.0/types.wit` (and the
//! capabilities' records: validation, match evidence) field for field; the
//! WIT files are the contract, this crate is their Rust spelling with serde
//! attached, so the host can read and write it as JSON and a
//! component's logic can be tested and benchmarked natively.

pub mod enrich;
pub mod mail;
pub mod score;

use serde::{Deserialize, Serialize};

/// Where a lead entered the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Form,
    Ads,
    #[default]
    Import,
    Crm,
    Api,
    Other,
}

impl Source {
    /// Parses a source name as written in input files and configuration.
    pub fn parse(s: &str) -> Option<Source> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "form" | "web" | "webform" | "web-form" => Source::Form,
            "ads" | "ad" | "advertising" | "paid" => Source::Ads,
            "import" | "csv" | "upload" => Source::Import,
            "crm" => Source::Crm,
            "api" => Source::Api,
            "other" => Source::Other,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Form => "form",
            Source::Ads => "ads",
            Source::Import => "import",
            Source::Crm => "crm",
            Source::Api => "api",
            Source::Other => "other",
        }
    }
}

/// One recorded consent decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub purpose: String,
    pub granted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
}

/// An identifier of this lead in another system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalId {
    pub system: String,
    pub id: String,
}

/// A customer-specific column without a canonical field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    pub key: String,
    pub value: String,
}

/// The canonical lead record (`record lead` in `types.wit`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Lead {
    pub id: String,
    pub tenant: String,
    pub source: Source,
    /// Milliseconds since the Unix epoch (UTC).
    pub received_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_extension: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consent: Vec<Consent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_ids: Vec<ExternalId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomField>,
}

/// The text fields of a lead by canonical name, for code that treats them
/// uniformly (length limits, injection checks, input mapping).
pub const TEXT_FIELDS: &[&str] = &[
    "email",
    "phone",
    "phone_extension",
    "first_name",
    "last_name",
    "full_name",
    "job_title",
    "company",
    "company_key",
    "website",
    "domain",
    "street",
    "city",
    "postcode",
    "region",
    "country",
];

impl Lead {
    /// The value of the text field named `name` (one of [`TEXT_FIELDS`]),
    /// `None` when it is absent or empty, or `name` is not a text field.
    pub fn field(&self, name: &str) -> Option<&str> {
        let v = match name {
            "email" => &self.email,
            "phone" => &self.phone,
            "phone_extension" => &self.phone_extension,
            "first_name" => &self.first_name,
            "last_name" => &self.last_name,
            "full_name" => &self.full_name,
            "job_title" => &self.job_title,
            "company" => &self.company,
            "company_key" => &self.company_key,
            "website" => &self.website,
            "domain" => &self.domain,
            "street" => &self.street,
            "city" => &self.city,
            "postcode" => &self.postcode,
            "region" => &self.region,
            "country" => &self.country,
            _ => return None,
        };
        v.as_deref().filter(|s| !s.is_empty())
    }

    /// The text field named `name` (one of [`TEXT_FIELDS`]).
    pub fn field_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "email" => &mut self.email,
            "phone" => &mut self.phone,
            "phone_extension" => &mut self.phone_extension,
            "first_name" => &mut self.first_name,
            "last_name" => &mut self.last_name,
            "full_name" => &mut self.full_name,
            "job_title" => &mut self.job_title,
            "company" => &mut self.company,
            "company_key" => &mut self.company_key,
            "website" => &mut self.website,
            "domain" => &mut self.domain,
            "street" => &mut self.street,
            "city" => &mut self.city,
            "postcode" => &mut self.postcode,
            "region" => &mut self.region,
            "country" => &mut self.country,
            _ => return None,
        })
    }

    /// Every text field with its canonical name, in [`TEXT_FIELDS`] order.
    pub fn text_fields_mut(&mut self) -> [(&'static str, &mut Option<String>); 16] {
        [
            ("email", &mut self.email),
            ("phone", &mut self.phone),
            ("phone_extension", &mut self.phone_extension),
            ("first_name", &mut self.first_name),
            ("last_name", &mut self.last_name),
            ("full_name", &mut self.full_name),
            ("job_title", &mut self.job_title),
            ("company", &mut self.company),
            ("company_key", &mut self.company_key),
            ("website", &mut self.website),
            ("domain", &mut self.domain),
            ("street", &mut self.street),
            ("city", &mut self.city),
            ("postcode", &mut self.postcode),
            ("region", &mut self.region),
            ("country", &mut self.country),
        ]
    }
}

/// How serious an [`Issue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// A structured finding about one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub field: String,
    pub code: String,
    pub severity: Severity,
    pub message: String,
}

impl Issue {
    pub fn new(field: &str, code: &str, severity: Severity, message: impl Into<String>) -> Self {
        Issue {
            field: field.to_string(),
            code: code.to_string(),
            severity,
            message: message.into(),
        }
    }
}

/// The outcome of validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Reject,
    Review,
}

/// A validated, normalized lead with its findings (`record validation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    pub verdict: Verdict,
    pub lead: Lead,
    pub issues: Vec<Issue>,
}

/// How one field of a pair compared (`record evidence` in `dedupe.wit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub field: String,
    pub level: String,
    pub similarity: f64,
    /// ln(m/u): positive for the same person, negative against.
    pub weight: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The outcome of comparing one pair (`record match-result`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub probability: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

/// Converts a WIT-generated lead record (guest `wit-bindgen` or host
/// `wasmtime::component::bindgen!` types: same field names) into a [`Lead`].
/// `$wit` is the module holding the generated `Source` enum.
///
/// One macro for both sides keeps the field list in one place: when
/// `types.wit` grows a field, this, [`Lead`] and the WIT file change together.
#[macro_export]
macro_rules! lead_from_wit {
    ($lead:expr, $wit:path) => {{
        use $wit as wit_types;
        let l = $lead;
        $crate::Lead {
            id: l.id,
            tenant: l.tenant,
            source: match l.source {
                wit_types::Source::Form => $crate::Source::Form,
                wit_types::Source::Ads => $crate::Source::Ads,
                wit_types::Source::Import => $crate::Source::Import,
                wit_types::Source::Crm => $crate::Source::Crm,
                wit_types::Source::Api => $crate::Source::Api,
                wit_types::Source::Other => $crate::Source::Other,
            },
            received_at: l.received_at,
            email: l.email,
            phone: l.phone,
            phone_extension: l.phone_extension,
            first_name: l.first_name,
            last_name: l.last_name,
            full_name: l.full_name,
            job_title: l.job_title,
            company: l.company,
            company_key: l.company_key,
            website: l.website,
            domain: l.domain,
            street: l.street,
            city: l.city,
            postcode: l.postcode,
            region: l.region,
            country: l.country,
            consent: l
                .consent
                .into_iter()
                .map(|c| $crate::Consent {
                    purpose: c.purpose,
                    granted: c.granted,
                    recorded_at: c.recorded_at,
                })
                .collect(),
            external_ids: l
                .external_ids
                .into_iter()
                .map(|e| $crate::ExternalId {
                    system: e.system,
                    id: e.id,
                })
                .collect(),
            custom: l
                .custom
                .into_iter()
                .map(|c| $crate::CustomField {
                    key: c.key,
                    value: c.value,
                })
                .collect(),
        }
    }};
}

/// Converts a [`Lead`] into a component's own WIT-generated `Lead` (guest
/// side, owned types). `$wit` is the module holding the generated types.
#[macro_export]
macro_rules! lead_into_wit {
    ($lead:expr, $wit:path) => {{
        use $wit as wit_types;
        let l: $crate::Lead = $lead;
        wit_types::Lead {
            id: l.id,
            tenant: l.tenant,
            source: match l.source {
                $crate::Source::Form => wit_types::Source::Form,
                $crate::Source::Ads => wit_types::Source::Ads,
                $crate::Source::Import => wit_types::Source::Import,
                $crate::Source::Crm => wit_types::Source::Crm,
                $crate::Source::Api => wit_types::Source::Api,
                $crate::Source::Other => wit_types::Source::Other,
            },
            received_at: l.received_at,
            email: l.email,
            phone: l.phone,
            phone_extension: l.phone_extension,
            first_name: l.first_name,
            last_name: l.last_name,
            full_name: l.full_name,
            job_title: l.job_title,
            company: l.company,
            company_key: l.company_key,
            website: l.website,
            domain: l.domain,
            street: l.street,
            city: l.city,
            postcode: l.postcode,
            region: l.region,
            country: l.country,
            consent: l
                .consent
                .into_iter()
                .map(|c| wit_types::Consent {
                    purpose: c.purpose,
                    granted: c.granted,
                    recorded_at: c.recorded_at,
                })
                .collect(),
            external_ids: l
                .external_ids
                .into_iter()
                .map(|e| wit_types::ExternalId {
                    system: e.system,
                    id: e.id,
                })
                .collect(),
            custom: l
                .custom
                .into_iter()
                .map(|c| wit_types::CustomField {
                    key: c.key,
                    value: c.value,
                })
                .collect(),
        }
    }};
}

/// Converts a WIT-generated issue (either side's generated types) into an
/// [`Issue`]. `$wit` is the module holding the generated `Severity` enum.
#[macro_export]
macro_rules! issue_from_wit {
    ($issue:expr, $wit:path) => {{
        use $wit as wit_types;
        let i = $issue;
        $crate::Issue {
            field: i.field,
            code: i.code,
            severity: match i.severity {
                wit_types::Severity::Info => $crate::Severity::Info,
                wit_types::Severity::Warning => $crate::Severity::Warning,
                wit_types::Severity::Error => $crate::Severity::Error,
            },
            message: i.message,
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_json_round_trip_keeps_custom_fields() {
        let lead = Lead {
            id: "l1".into(),
            email: Some("a@b.com".into()),
            custom: vec![CustomField {
                key: "utm_campaign".into(),
                value: "spring".into(),
            }],
            ..Lead::default()
        };
        let json = serde_json::to_string(&lead).unwrap();
        assert!(!json.contains("phone"), "absent fields are omitted: {json}");
        let back: Lead = serde_json::from_str(&json).unwrap();
        assert_eq!(back, lead);
    }

    #[test]
    fn field_mut_covers_every_text_field() {
        let mut lead = Lead::default();
        for name in TEXT_FIELDS {
            assert!(lead.field_mut(name).is_some(), "{name}");
        }
        assert!(lead.field_mut("nope").is_none());
        assert_eq!(lead.text_fields_mut().len(), TEXT_FIELDS.len());
    }

    #[test]
    fn source_parse_accepts_aliases() {
        assert_eq!(Source::parse(" Web "), Some(Source::Form));
        assert_eq!(Source::parse("CRM"), Some(Source::Crm));
        assert_eq!(Source::parse("carrier pigeon"), None);
    }
}
