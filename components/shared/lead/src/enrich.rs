//! The enrich capability's records (`wit/v0.1.0/enrich.wit`): what the
//! host's lookups answer (`interface lookup`) and what an enricher returns
//! (`interface enrich`), in Rust with serde, so providers, caches and the
//! native enricher share one spelling.

use serde::{Deserialize, Serialize};

/// Every field an enricher can set: what `[enrich.settings] want` and
/// `[classify] required` may name besides the lead's own fields.
pub const FIELDS: &[&str] = &[
    "company",
    "country",
    "city",
    "region",
    "job_title",
    "first_name",
    "last_name",
    "industry",
    "employee_range",
    "revenue_range",
    "technologies",
    "timezone",
    "seniority",
    "department",
    "email_type",
    "linkedin",
];

/// A company, keyed by its registrable domain (`record company`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Company {
    pub domain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revenue_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub technologies: Vec<String>,
}

/// A person, keyed by email (`record person`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Person {
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seniority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linkedin: Option<String>,
}

/// How a lookup went (`enum outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Found,
    NotFound,
    Unavailable,
    Pending,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Found => "found",
            Outcome::NotFound => "not-found",
            Outcome::Unavailable => "unavailable",
            Outcome::Pending => "pending",
        }
    }
}

/// The `source` of a not-found answer when no provider serves the lookup.
pub const NO_PROVIDER: &str = "none";

/// Where an answer came from (`record provenance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub outcome: Outcome,
    pub source: String,
    pub confidence: f64,
    pub stale: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Provenance {
    /// An answer with nothing in it.
    pub fn without(outcome: Outcome, source: &str, detail: impl Into<String>) -> Provenance {
        Provenance {
            outcome,
            source: source.to_string(),
            confidence: 0.0,
            stale: false,
            detail: detail.into(),
        }
    }
}

/// What a lookup found: a company or a person, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer<T> {
    pub provenance: Provenance,
    pub value: Option<T>,
}

impl<T> Answer<T> {
    pub fn without(outcome: Outcome, source: &str, detail: impl Into<String>) -> Answer<T> {
        Answer {
            provenance: Provenance::without(outcome, source, detail),
            value: None,
        }
    }
}

/// The lookups an enricher may ask of the host (`interface lookup`): the
/// host answers from what its providers fetched or its cache holds.
pub trait Lookups {
    fn company(&mut self, domain: &str) -> Answer<Company>;
    fn person(&mut self, email: &str) -> Answer<Person>;
}

/// Overall result of enriching a lead (`enum status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrichStatus {
    Complete,
    Partial,
    Failed,
}

impl EnrichStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichStatus::Complete => "complete",
            EnrichStatus::Partial => "partial",
            EnrichStatus::Failed => "failed",
        }
    }
}

/// One field set by enrichment (`record enriched-field`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedField {
    pub field: String,
    pub value: String,
    pub source: String,
    pub confidence: f64,
}

/// What an enricher returns for one lead (`record enrichment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrichment {
    pub status: EnrichStatus,
    pub fields: Vec<EnrichedField>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<crate::Issue>,
}

impl Enrichment {
    /// The enriched value of `field`, if set.
    pub fn get(&self, field: &str) -> Option<&EnrichedField> {
        self.fields.iter().find(|f| f.field == field)
    }
}
