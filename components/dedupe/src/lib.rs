//! leadgate's dedupe capability: which leads are the same person.
//!
//! The component decides *how* to match; the host owns storage. For each lead
//! it returns blocking keys ([`keys`]); the host fetches the stored leads that
//! share a key and asks it to compare pairs ([`Deduper::compare`]), which
//! gives a calibrated match probability with per-field evidence.
//!
//! Matching is Fellegi–Sunter ([`model`]): every field is compared into a
//! level ([`compare`]: exact, nickname, typo, transliterated, swapped, ...),
//! each level carries m/u probabilities learned from labelled data, and the
//! evidence adds up in log-odds. Names from any script are transliterated
//! ([`fold`]), given names are folded through a real nickname table
//! ([`names`]).
//!
//! The logic is plain Rust, tested and benchmarked natively; `component.rs`
//! exports it as the `leadgate:plugin/deduper@0.1.0` world.

pub mod compare;
pub mod fold;
pub mod keys;
pub mod model;
pub mod names;

#[cfg(target_arch = "wasm32")]
mod component;

use compare::Features;
use leadgate_lead::Lead;
pub use leadgate_lead::{Evidence, Match};
use model::Model;
use names::Nicknames;
use serde::Deserialize;

/// A setting was refused; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("dedupe settings are not valid JSON for this component: {0}")]
    Json(String),
    #[error("dedupe setting `model`: {0}")]
    Model(String),
    #[error("dedupe setting `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The tenant's dedupe settings (`[dedupe.settings]` in `leadgate.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Fellegi–Sunter parameters (the JSON `leadgate dedupe train` writes);
    /// default: the bundled model.
    pub model: Option<serde_json::Value>,
    /// Custom columns that identify a person (customer number, tax id,
    /// date of birth): compared exactly and used as blocking keys. Default:
    /// any custom column with one of the common names in
    /// [`compare::DEFAULT_IDENTITY`]; `[]` turns that off.
    pub identity_fields: Option<Vec<String>>,
    /// Extra nickname groups, formal name first: `[["wilhelmina", "mina"]]`.
    pub nicknames: Vec<Vec<String>>,
    /// Also block on the spelled names and the city (`nt:` keys): for data
    /// without email, phone or company, it finds a person who moved within
    /// a city. Off by default: a city's namesakes all share the key, so its
    /// blocks grow with the store (see [`keys`]).
    pub name_city_key: bool,
}

/// A deduper configured for one tenant.
#[derive(Debug, Clone)]
pub struct Deduper {
    model: Model,
    nicknames: Nicknames,
    identity_fields: Option<Vec<String>>,
    name_city_key: bool,
}

impl Deduper {
    pub fn new(settings: Settings) -> Result<Deduper, SettingsError> {
        let model = match settings.model {
            None => Model::bundled().map_err(SettingsError::Model)?,
            Some(v) => {
                let m: Model =
                    serde_json::from_value(v).map_err(|e| SettingsError::Model(e.to_string()))?;
                m.check().map_err(SettingsError::Model)?;
                m
            }
        };
        if let Some(bad) = settings
            .identity_fields
            .iter()
            .flatten()
            .find(|f| f.trim().is_empty())
        {
            return Err(SettingsError::Invalid {
                field: "identity_fields",
                reason: format!("'{bad}' is not a column name"),
            });
        }
        if let Some(bad) = settings.nicknames.iter().find(|g| g.len() < 2) {
            return Err(SettingsError::Invalid {
                field: "nicknames",
                reason: format!("{bad:?}: a group needs a formal name and at least one nickname"),
            });
        }
        Ok(Deduper {
            model,
            nicknames: Nicknames::new(&settings.nicknames),
            identity_fields: settings.identity_fields,
            name_city_key: settings.name_city_key,
        })
    }

    /// From the settings JSON the host passes.
    pub fn from_json(json: &str) -> Result<Deduper, SettingsError> {
        // The path names the setting a wrong value is under.
        let mut de = serde_json::Deserializer::from_str(json);
        let settings: Settings = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            SettingsError::Json(match e.path().to_string().as_str() {
                "." => e.inner().to_string(),
                path => format!("`{path}`: {}", e.inner()),
            })
        })?;
        de.end().map_err(|e| SettingsError::Json(e.to_string()))?;
        Deduper::new(settings)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// A lead folded for matching.
    pub fn prepare(&self, lead: &Lead) -> Features {
        Features::new(lead, self.identity_fields.as_deref())
    }

    /// Blocking keys of a lead.
    pub fn keys(&self, lead: &Lead) -> Vec<String> {
        self.keys_of(&self.prepare(lead))
    }

    /// Blocking keys of a prepared lead.
    pub fn keys_of(&self, f: &Features) -> Vec<String> {
        keys::keys(f, &self.nicknames, self.name_city_key)
    }

    /// Compares two prepared leads.
    pub fn compare_prepared(&self, a: &Features, b: &Features, explain: bool) -> Match {
        let compared = compare::compare(a, b, &self.nicknames, explain);
        let mut sum = 0.0;
        let mut evidence = Vec::with_capacity(if explain { compared.len() } else { 0 });
        for mut c in compared {
            let mut weight = self.model.weight(&c.field, c.level);
            if c.level == "exact"
                && let Some(value) = compare::value_of(a, &c.field)
                && let Some((adjustment, p)) = self.model.tf_adjustment(&c.field, value)
            {
                weight += adjustment;
                if explain {
                    c.detail = format!(
                        "{} ({:.3}% of leads: {adjustment:+.2} for how common it is)",
                        c.detail,
                        p * 100.0
                    );
                }
            }
            sum += weight;
            if explain {
                evidence.push(Evidence {
                    field: c.field.into_owned(),
                    level: c.level.to_string(),
                    similarity: c.similarity,
                    weight,
                    detail: c.detail,
                });
            }
        }
        Match {
            probability: self.model.probability(sum),
            evidence,
        }
    }

    /// Compares `pairs` (indexes into `leads`), in order. Pairs that point
    /// outside `leads` get probability 0 and an `error` evidence.
    pub fn compare(&self, leads: &[Lead], pairs: &[(u32, u32)], explain: bool) -> Vec<Match> {
        let prepared: Vec<Features> = leads.iter().map(|l| self.prepare(l)).collect();
        pairs
            .iter()
            .map(
                |&(a, b)| match (prepared.get(a as usize), prepared.get(b as usize)) {
                    (Some(x), Some(y)) => self.compare_prepared(x, y, explain),
                    _ => Match {
                        probability: 0.0,
                        evidence: vec![Evidence {
                            field: "pair".into(),
                            level: "error".into(),
                            similarity: 0.0,
                            weight: 0.0,
                            detail: format!(
                                "pair ({a}, {b}) points outside the {} leads sent",
                                leads.len()
                            ),
                        }],
                    },
                },
            )
            .collect()
    }

    /// The comparison levels of a pair without the model (for training).
    pub fn levels(&self, a: &Features, b: &Features) -> Vec<(String, &'static str)> {
        compare::compare(a, b, &self.nicknames, false)
            .into_iter()
            .map(|c| (c.field.into_owned(), c.level))
            .collect()
    }
}

#[cfg(test)]
mod tests;
