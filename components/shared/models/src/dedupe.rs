//! The Fellegi–Sunter model: for each compared field and comparison level,
//! m = P(level | same person) and u = P(level | different people). A pair's
//! match weight is the prior log-odds plus the sum of ln(m/u) over its
//! fields; the probability is the logistic of that weight, calibrated (Platt
//! scaling) so that of pairs scored 0.9 about nine in ten are duplicates.
//!
//! The bundled parameters (`data/dedupe-model.json`) were estimated by
//! `leadgate dedupe train` from labelled data; a tenant re-estimates them
//! from its own labelled data or reviewer decisions and passes the result as
//! the `model` setting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const BUNDLED: &str = include_str!("../data/dedupe-model.json");

/// m and u of one comparison level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mu {
    pub m: f64,
    pub u: f64,
}

/// Platt scaling of the raw weight: p = σ(a·w + b).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub a: f64,
    pub b: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { a: 1.0, b: 0.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Format version of this file.
    pub version: u32,
    /// P(same person) for a pair of leads that share a blocking key.
    pub prior: f64,
    #[serde(default)]
    pub calibration: Calibration,
    /// field → level → m/u.
    pub fields: BTreeMap<String, BTreeMap<String, Mu>>,
    /// Where the parameters came from (free text).
    #[serde(default)]
    pub trained_on: String,
    /// Term frequencies of the values of some fields (`first_name`,
    /// `last_name`, `city`), for term-frequency adjustment: an exact match
    /// on a common value says less than the field's average exact match, on
    /// a rare value more. Estimated on the data at hand.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub term_frequencies: BTreeMap<String, Frequencies>,
}

/// How often each value of a field occurs, as a share of the records that
/// have the field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frequencies {
    /// The commonest values (folded as the component compares them).
    pub values: BTreeMap<String, f64>,
    /// For any other value: the mean frequency of the values left out,
    /// weighted as agreements on them are (Σp³ / Σp² over those values).
    pub other: f64,
}

/// The largest term-frequency adjustment either way, in log-odds: a value
/// one in a million cannot outweigh every other field.
pub const TF_MAX: f64 = 3.0;

/// The model entry for identity columns the model has no entry of its own
/// for (`custom:KEY` evidence).
pub const IDENTITY: &str = "identity";

/// Probabilities are kept away from 0 and 1 so one field can never decide
/// alone with infinite weight.
const CLAMP: (f64, f64) = (1e-6, 1.0 - 1e-6);

impl Model {
    /// The bundled default model.
    pub fn bundled() -> Result<Model, String> {
        Model::from_json(BUNDLED).map_err(|e| format!("bundled model: {e}"))
    }

    pub fn from_json(json: &str) -> Result<Model, String> {
        let m: Model = serde_json::from_str(json).map_err(|e| e.to_string())?;
        m.check()?;
        Ok(m)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!(
                "model version {} is not supported (expected 1)",
                self.version
            ));
        }
        if !(self.prior > 0.0 && self.prior < 1.0) {
            return Err(format!(
                "model prior must be between 0 and 1 exclusive, not {}",
                self.prior
            ));
        }
        for (field, levels) in &self.fields {
            for (level, mu) in levels {
                for (name, v) in [("m", mu.m), ("u", mu.u)] {
                    if !(v > 0.0 && v <= 1.0) {
                        return Err(format!(
                            "model {field}.{level}.{name} must be in (0, 1], not {v}"
                        ));
                    }
                }
            }
        }
        for (field, tf) in &self.term_frequencies {
            let bad = |v: f64| !(v > 0.0 && v <= 1.0);
            if let Some((value, p)) = tf.values.iter().find(|(_, p)| bad(**p)) {
                return Err(format!(
                    "model term_frequencies.{field}.values.{value} must be in (0, 1], not {p}"
                ));
            }
            if bad(tf.other) {
                return Err(format!(
                    "model term_frequencies.{field}.other must be in (0, 1], not {}",
                    tf.other
                ));
            }
        }
        if !self.calibration.a.is_finite() || !self.calibration.b.is_finite() {
            return Err("model calibration must be finite numbers".into());
        }
        Ok(())
    }

    /// ln(m/u) of a field's level; 0 when the model does not know it (the
    /// level then carries no evidence either way).
    pub fn weight(&self, field: &str, level: &str) -> f64 {
        // A tenant's identity column (`custom:KEY`) not in the model is
        // weighed as a generic identifier.
        let levels = self.fields.get(field).or_else(|| {
            field
                .starts_with("custom:")
                .then(|| self.fields.get(IDENTITY))
                .flatten()
        });
        levels.and_then(|l| l.get(level)).map_or(0.0, |mu| {
            (mu.m.clamp(CLAMP.0, CLAMP.1) / mu.u.clamp(CLAMP.0, CLAMP.1)).ln()
        })
    }

    /// The term-frequency adjustment of an exact match of `field` on
    /// `value`: ln(u / p), u being the field's chance of an exact match
    /// between two random leads and p the value's frequency; 0 when the
    /// model has no frequencies for the field.
    pub fn tf_adjustment(&self, field: &str, value: &str) -> Option<(f64, f64)> {
        let tf = self.term_frequencies.get(field)?;
        let u = self.fields.get(field)?.get("exact")?.u;
        let p = tf.values.get(value).copied().unwrap_or(tf.other);
        let adjustment = (u.clamp(CLAMP.0, CLAMP.1) / p.max(1e-9)).ln();
        Some((adjustment.clamp(-TF_MAX, TF_MAX), p))
    }

    /// The calibrated probability of a pair whose field weights sum to `sum`.
    pub fn probability(&self, sum: f64) -> f64 {
        let prior = self.prior.clamp(CLAMP.0, CLAMP.1);
        let w = (prior / (1.0 - prior)).ln() + sum;
        sigmoid(self.calibration.a * w + self.calibration.b)
    }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_model_loads_and_orders_levels() {
        let m = Model::bundled().unwrap();
        assert!(m.weight("email", "exact") > 0.0);
        assert!(m.weight("last_name", "exact") > m.weight("last_name", "different"));
        assert!(m.weight("first_name", "nickname") > 0.0);
        assert_eq!(m.weight("nothing", "exact"), 0.0);
    }

    #[test]
    fn bad_models_are_refused_by_name() {
        let mut m = Model::bundled().unwrap();
        m.prior = 1.0;
        assert!(m.check().unwrap_err().contains("prior"));
        let json = r#"{"version":1,"prior":0.1,"fields":{"email":{"exact":{"m":0.9,"u":0}}}}"#;
        assert!(
            Model::from_json(json)
                .unwrap_err()
                .contains("email.exact.u")
        );
        assert!(
            Model::from_json(r#"{"version":2,"prior":0.1,"fields":{}}"#)
                .unwrap_err()
                .contains("version")
        );
    }

    #[test]
    fn probability_follows_the_weight() {
        let m = Model {
            version: 1,
            prior: 0.5,
            calibration: Calibration::default(),
            fields: BTreeMap::new(),
            trained_on: String::new(),
            term_frequencies: BTreeMap::new(),
        };
        assert!((m.probability(0.0) - 0.5).abs() < 1e-12);
        assert!(m.probability(5.0) > 0.99);
        assert!(m.probability(-5.0) < 0.01);
    }

    #[test]
    fn term_frequencies_lower_a_common_value_and_raise_a_rare_one() {
        let mut m = Model::bundled().unwrap();
        let exact = Mu { m: 0.9, u: 0.002 };
        m.fields
            .entry("last_name".into())
            .or_default()
            .insert("exact".into(), exact);
        let mut values = BTreeMap::new();
        values.insert("smith".to_string(), 0.02);
        values.insert("jones".to_string(), 0.002);
        m.term_frequencies.insert(
            "last_name".into(),
            Frequencies {
                values,
                other: 0.0002,
            },
        );
        assert!(m.check().is_ok());
        let (smith, p) = m.tf_adjustment("last_name", "smith").unwrap();
        assert!(smith < 0.0 && (p - 0.02).abs() < 1e-12, "{smith}");
        assert!(m.tf_adjustment("last_name", "jones").unwrap().0.abs() < 1e-9);
        let (rare, _) = m.tf_adjustment("last_name", "vanderbilt").unwrap();
        assert!(rare > 0.0 && rare <= TF_MAX, "{rare}");
        assert!(m.tf_adjustment("city", "sydney").is_none());
        m.term_frequencies.get_mut("last_name").unwrap().other = 0.0;
        assert!(
            m.check()
                .unwrap_err()
                .contains("term_frequencies.last_name.other")
        );
    }
}
