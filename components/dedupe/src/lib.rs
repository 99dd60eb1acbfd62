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
//! The logic is plain Rust, tested and benchmarked natively; [`Deduper`]
//! implements the guest SDK's [`leadgate_sdk::Dedupe`], which the `wasm32`
//! build exports as `leadgate:plugin/dedupe@0.1.0`.

pub mod compare;
pub mod fold;
pub mod keys;
pub use leadgate_models::dedupe as model;
pub mod names;

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
    /// Pairs whose given names clearly differ are never matched (default
    /// on): at most [`DIFFERENT_PEOPLE_CAP`] when a contact field differs
    /// too, else at most [`ASK_A_PERSON_CAP`], for review. `false` for data
    /// whose duplicates may carry another given name altogether.
    pub different_given_names_cap: Option<bool>,
}

/// The highest probability of a pair whose given names clearly differ and
/// whose email, phone or company differ too (below the default review
/// threshold: two people).
pub const DIFFERENT_PEOPLE_CAP: f64 = 0.25;
/// The highest probability of a pair whose given names clearly differ with
/// no contact field to tell them apart (between the default review and
/// auto-merge thresholds: a person decides).
pub const ASK_A_PERSON_CAP: f64 = 0.6;

/// A deduper configured for one tenant.
#[derive(Debug, Clone)]
pub struct Deduper {
    different_given_names_cap: bool,
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
            different_given_names_cap: settings.different_given_names_cap.unwrap_or(true),
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
        // Not a nickname, a typo, a sound-alike, an initial or swapped.
        let mut given_names_different = false;
        for mut c in compared {
            given_names_different |= c.field == "first_name" && c.level == "different";
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
        let mut probability = self.model.probability(sum);
        // Two clearly different given names (not a nickname, a typo, a
        // sound-alike, an initial or names swapped) are a relative at the
        // same address or a colleague on the same switchboard more often
        // than one person: whatever else agrees, such a pair is never a
        // match. With a contact field (email, phone, company) on both sides
        // that differs too, they are two people; with nothing but names and
        // an address, a person decides (the pair stays below auto-merge).
        if self.different_given_names_cap
            && given_names_different
            && compare::given_names_far_apart(&a.name, &b.name)
        {
            let differs = |x: &Option<String>, y: &Option<String>| matches!((x, y), (Some(x), Some(y)) if x != y);
            let contacts_differ = (differs(&a.email, &b.email)
                && a.email.as_deref().map(crate::fold::local_part)
                    != b.email.as_deref().map(crate::fold::local_part))
                || differs(&a.phone, &b.phone)
                || differs(&a.company, &b.company);
            let cap = if contacts_differ {
                DIFFERENT_PEOPLE_CAP
            } else {
                ASK_A_PERSON_CAP
            };
            if probability > cap {
                probability = cap;
                if explain {
                    evidence.push(Evidence {
                        field: "first_name".into(),
                        level: "cap".into(),
                        similarity: 0.0,
                        weight: 0.0,
                        detail: if contacts_differ {
                            format!("different given names and contacts: at most {cap}")
                        } else {
                            format!("different given names, no contact to tell: at most {cap}, for review")
                        },
                    });
                }
            }
        }
        Match {
            probability,
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
