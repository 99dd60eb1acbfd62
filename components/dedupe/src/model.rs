//! The Fellegi–Sunter model: for each compared field and comparison level,
//! m = P(level | same person) and u = P(level | different people). A pair's
//! match weight is the prior log-odds plus the sum of ln(m/u) over its
//! fields; the probability is the logistic of that weight, calibrated (Platt
//! scaling) so that of pairs scored 0.9 about nine in ten are duplicates.
//!
//! The bundled parameters (`data/model.json`) were estimated by
//! `leadgate dedupe train` from labelled data; a tenant re-estimates them
//! from its own labelled data or reviewer decisions and passes the result as
//! the `model` setting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const BUNDLED: &str = include_str!("../data/model.json");

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
}

/// The model entry for identity columns the model has no entry of its own
/// for (`custom:KEY` evidence).
pub const IDENTITY: &str = "identity";

/// Probabilities are kept away from 0 and 1 so one field can never decide
/// alone with infinite weight.
const CLAMP: (f64, f64) = (1e-4, 1.0 - 1e-4);

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
        assert!(m.weight("name", "exact") > m.weight("name", "different"));
        assert!(m.weight("name", "nickname") > 0.0);
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
        };
        assert!((m.probability(0.0) - 0.5).abs() < 1e-12);
        assert!(m.probability(5.0) > 0.99);
        assert!(m.probability(-5.0) < 0.01);
    }
}
