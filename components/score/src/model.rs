//! A calibrated conversion model: logistic regression over a lead's
//! values, as `leadgate calibrate` writes it (`model.toml`) and the scorer
//! applies it.
//!
//! Each feature reads one named value of the lead (a lead field, an
//! enrichment attribute, a custom column, or `events.KIND` / `score.fit`,
//! `score.engagement`, `score.intent`) and encodes it:
//!
//! - `number`: clipped to `[lo, hi]`, optionally `log1p`, then
//!   standardized with `center` and `scale`; a missing value counts as the
//!   center;
//! - `level`: 1 when the value equals `level` (case-insensitive), else 0;
//! - `missing`: 1 when the value is absent.
//!
//! `mean` is the feature's average over the training rows, so each value's
//! contribution can be told against the average lead.

use serde::{Deserialize, Serialize};

/// The model file format's version.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub version: u32,
    /// The outcome column it was fitted on.
    pub outcome: String,
    pub intercept: f64,
    pub features: Vec<Feature>,
    /// How it was fitted and how it did on held-out rows (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<Fitted>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fitted {
    pub rows: u64,
    pub positives: u64,
    pub holdout_rows: u64,
    pub l2: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub brier: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Number,
    Level,
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    #[default]
    None,
    Log1p,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// The value it reads.
    pub name: String,
    pub kind: Kind,
    /// For `level`: the value it indicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "is_none_transform")]
    pub transform: Transform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lo: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<f64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub center: f64,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub scale: f64,
    /// The feature's training average.
    #[serde(default)]
    pub mean: f64,
    pub weight: f64,
}

fn is_none_transform(t: &Transform) -> bool {
    *t == Transform::None
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
fn is_one(x: &f64) -> bool {
    *x == 1.0
}
fn one() -> f64 {
    1.0
}

/// A model that cannot be used, naming the feature.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("model version {0} is not supported (this scorer reads version {VERSION})")]
    Version(u32),
    #[error("model feature {index} (`{name}`): {reason}")]
    Feature {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("model intercept must be a finite number")]
    Intercept,
}

impl Feature {
    /// The feature's value for a lead whose value is `v`.
    pub fn encode(&self, v: Option<&str>) -> f64 {
        match self.kind {
            Kind::Missing => f64::from(u8::from(v.is_none())),
            Kind::Level => match (v, &self.level) {
                (Some(v), Some(level)) => f64::from(u8::from(v.trim().eq_ignore_ascii_case(level))),
                _ => 0.0,
            },
            Kind::Number => match v.and_then(parse_number) {
                None => 0.0,
                Some(x) => (self.transformed(x) - self.center) / self.scale,
            },
        }
    }

    /// Clipping and the transform, before standardizing.
    pub fn transformed(&self, x: f64) -> f64 {
        let x = match (self.lo, self.hi) {
            (Some(lo), Some(hi)) if lo <= hi => x.clamp(lo, hi),
            (Some(lo), None) => x.max(lo),
            (None, Some(hi)) => x.min(hi),
            _ => x,
        };
        match self.transform {
            Transform::None => x,
            Transform::Log1p => x.max(0.0).ln_1p(),
        }
    }
}

/// A number as history exports write them: `12`, `3.5`, ` 1,200 `, `40%`.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim().trim_end_matches('%');
    if t.is_empty() {
        return None;
    }
    let x: f64 =
        if t.contains(',') && !t.contains('.') && t.split(',').skip(1).all(|g| g.len() == 3) {
            t.replace(',', "").parse().ok()?
        } else {
            t.parse().ok()?
        };
    x.is_finite().then_some(x)
}

/// One value's share of a lead's log-odds, against the average lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution<'a> {
    pub name: &'a str,
    pub log_odds: f64,
}

impl Model {
    /// Refuses a model that could not score: wrong version, non-finite
    /// numbers, a level feature without its level, a zero scale.
    pub fn check(&self) -> Result<(), ModelError> {
        if self.version != VERSION {
            return Err(ModelError::Version(self.version));
        }
        if !self.intercept.is_finite() {
            return Err(ModelError::Intercept);
        }
        for (index, f) in self.features.iter().enumerate() {
            let bad = |reason: &str| ModelError::Feature {
                index,
                name: f.name.clone(),
                reason: reason.to_string(),
            };
            if f.name.trim().is_empty() {
                return Err(bad("the name is empty"));
            }
            if ![f.weight, f.center, f.scale, f.mean]
                .iter()
                .all(|x| x.is_finite())
            {
                return Err(bad("weight, center, scale and mean must be finite numbers"));
            }
            if f.scale <= 0.0 {
                return Err(bad("scale must be positive"));
            }
            if f.kind == Kind::Level && f.level.is_none() {
                return Err(bad("a `level` feature needs `level`"));
            }
        }
        Ok(())
    }

    /// The conversion probability and each value's contribution (features
    /// reading the same value summed), largest first. `value` answers a
    /// value by name.
    pub fn explain<'m, 'v>(
        &'m self,
        value: impl Fn(&str) -> Option<std::borrow::Cow<'v, str>>,
    ) -> (f64, Vec<Contribution<'m>>) {
        let mut z = self.intercept;
        let mut parts: Vec<Contribution<'m>> = Vec::new();
        let mut last: Option<(&str, Option<std::borrow::Cow<'v, str>>)> = None;
        for f in &self.features {
            // Features of one value are written together: look it up once.
            let v = match &last {
                Some((name, v)) if *name == f.name => v.clone(),
                _ => {
                    let v = value(&f.name);
                    last = Some((&f.name, v.clone()));
                    v
                }
            };
            let x = f.encode(v.as_deref());
            z += f.weight * x;
            let c = f.weight * (x - f.mean);
            match parts.last_mut() {
                Some(p) if p.name == f.name => p.log_odds += c,
                _ => parts.push(Contribution {
                    name: &f.name,
                    log_odds: c,
                }),
            }
        }
        parts.sort_by(|a, b| b.log_odds.abs().total_cmp(&a.log_odds.abs()));
        (sigmoid(z), parts)
    }
}

/// The logistic function, stable for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}
