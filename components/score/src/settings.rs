//! The tenant's score settings (`[score.settings]` in `leadgate.toml`,
//! passed in as JSON, with the calibrated model as `model`). Unknown keys
//! and bad values are refused by name.

use crate::model::{Model, ModelError};
use leadgate_lead::score::EventKind;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A setting the scorer cannot use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("score settings are not valid: {0}")]
    Json(String),
    #[error("score setting `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("score setting `model`: {0}")]
    Model(#[from] ModelError),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How fit, engagement and intent make the total (normalized to sum 1).
    pub weights: Weights,
    /// An event's weight halves every this many days.
    pub half_life_days: f64,
    /// Decayed event points at which engagement reaches 63 (1 − 1/e).
    pub engagement_scale: f64,
    /// Points per event kind (`page_view`, `content_download`, …), over
    /// the defaults.
    pub event_weights: BTreeMap<String, f64>,
    /// Multipliers of a page view's points by page category, over the
    /// defaults (`pricing` 3, `comparison` 3, `demo` 3, `docs` 1.5,
    /// `blog` 0.5, `careers` 0: job seekers are not buyers).
    pub category_weights: BTreeMap<String, f64>,
    /// Page categories that count as research for intent.
    pub research_categories: Vec<String>,
    /// Activity within this many days makes a person of the account an
    /// engaged stakeholder.
    pub stakeholder_window_days: f64,
    /// The most intent points each pattern gives (they should sum to 100).
    pub intent: IntentPoints,
    pub icp: Icp,
    /// Lowest totals of grades A, B and C; below C is D.
    pub grades: Grades,
    /// A model from `leadgate calibrate`: the total becomes the calibrated
    /// conversion probability in percent.
    pub model: Option<Model>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            weights: Weights::default(),
            half_life_days: 14.0,
            engagement_scale: 20.0,
            event_weights: BTreeMap::new(),
            category_weights: BTreeMap::new(),
            research_categories: ["pricing", "comparison", "docs", "demo"]
                .map(String::from)
                .to_vec(),
            stakeholder_window_days: 30.0,
            intent: IntentPoints::default(),
            icp: Icp::default(),
            grades: Grades::default(),
            model: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub fit: f64,
    pub engagement: f64,
    pub intent: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            fit: 0.4,
            engagement: 0.3,
            intent: 0.3,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntentPoints {
    /// Research-heavy visits (pricing, comparison, docs), the account's
    /// included.
    pub research: f64,
    /// Several people of one account engaging.
    pub stakeholders: f64,
    /// A trial sign-up and product usage.
    pub trial: f64,
}

impl Default for IntentPoints {
    fn default() -> Self {
        IntentPoints {
            research: 40.0,
            stakeholders: 35.0,
            trial: 25.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grades {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

impl Default for Grades {
    fn default() -> Self {
        Grades {
            a: 80.0,
            b: 60.0,
            c: 40.0,
        }
    }
}

/// The ideal-customer profile. The lists are shorthands for rules on the
/// enrichment attributes; `rules` reach any value, custom columns included.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Icp {
    pub industries: Vec<String>,
    pub employee_ranges: Vec<String>,
    pub countries: Vec<String>,
    pub seniorities: Vec<String>,
    /// Words any of which in the job title fits (`revenue`, `sales ops`).
    pub titles: Vec<String>,
    pub technologies: Vec<String>,
    pub rules: Vec<Rule>,
}

/// One ICP rule: a value and what fits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The value it reads: a lead field, an attribute (`industry`), or a
    /// custom column (`custom.plan`).
    pub field: String,
    /// Fits when the value (or one of its comma-separated items) is one of
    /// these, case-insensitive.
    #[serde(default)]
    pub any_of: Vec<String>,
    /// `exact` (default) or `contains` (any of them appears as words).
    #[serde(default)]
    pub matching: Matching,
    /// Fits when the value is a number in `[min, max]`.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Points when it fits; negative points mark a poor fit.
    pub points: f64,
    /// The reason code's name (default: the field).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matching {
    #[default]
    Exact,
    Contains,
}

impl Rule {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.field)
    }
}

/// Default points per event kind.
pub fn default_event_weight(kind: EventKind) -> f64 {
    match kind {
        EventKind::PageView => 1.0,
        EventKind::ContentDownload => 4.0,
        EventKind::EmailOpen => 0.5,
        EventKind::EmailClick => 2.0,
        EventKind::FormSubmission => 6.0,
        EventKind::TrialSignup => 10.0,
        EventKind::ProductUsage => 3.0,
        EventKind::SupportInquiry => 1.0,
        EventKind::Reply => 6.0,
    }
}

fn default_category_weights() -> BTreeMap<String, f64> {
    [
        ("pricing", 3.0),
        ("comparison", 3.0),
        ("demo", 3.0),
        ("docs", 1.5),
        ("blog", 0.5),
        ("careers", 0.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Settings checked and resolved for scoring.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub settings: Settings,
    /// Weights normalized to sum 1.
    pub weights: Weights,
    /// Points per kind, indexed like [`EventKind::ALL`].
    pub event_weights: [f64; 9],
    pub category_weights: BTreeMap<String, f64>,
    /// The ICP as rules, shorthands first.
    pub rules: Vec<Rule>,
    pub half_life_ms: f64,
    pub stakeholder_window_ms: f64,
}

const DAY_MS: f64 = 86_400_000.0;

impl Settings {
    /// Parses and checks `[score.settings]` as JSON (`{}` for defaults).
    pub fn from_json(json: &str) -> Result<Resolved, SettingsError> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let s: Settings =
            serde_json::from_str(json).map_err(|e| SettingsError::Json(e.to_string()))?;
        s.resolve()
    }

    pub fn resolve(self) -> Result<Resolved, SettingsError> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    format!("must be a positive number of days/points, not {v}"),
                ))
            }
        };
        positive("half_life_days", self.half_life_days)?;
        positive("engagement_scale", self.engagement_scale)?;
        positive("stakeholder_window_days", self.stakeholder_window_days)?;
        let w = self.weights;
        for (name, v) in [
            ("fit", w.fit),
            ("engagement", w.engagement),
            ("intent", w.intent),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(
                    format!("weights.{name}"),
                    format!("must be 0 or more, not {v}"),
                ));
            }
        }
        let sum = w.fit + w.engagement + w.intent;
        if sum <= 0.0 {
            return Err(invalid(
                "weights",
                "at least one of fit, engagement and intent must be above 0",
            ));
        }
        let i = self.intent;
        for (name, v) in [
            ("research", i.research),
            ("stakeholders", i.stakeholders),
            ("trial", i.trial),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(
                    format!("intent.{name}"),
                    format!("must be 0 or more, not {v}"),
                ));
            }
        }
        let g = self.grades;
        if !(g.a >= g.b && g.b >= g.c && g.c >= 0.0 && g.a <= 100.0) {
            return Err(invalid(
                "grades",
                format!(
                    "need 100 ≥ a ≥ b ≥ c ≥ 0, not a {} b {} c {}",
                    g.a, g.b, g.c
                ),
            ));
        }
        let mut event_weights = EventKind::ALL.map(default_event_weight);
        for (k, v) in &self.event_weights {
            let Some(kind) = EventKind::parse(k) else {
                return Err(invalid(
                    format!("event_weights.{k}"),
                    format!(
                        "not an event kind; use one of {}",
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    ),
                ));
            };
            if !v.is_finite() {
                return Err(invalid(format!("event_weights.{k}"), "must be a number"));
            }
            if let Some(i) = EventKind::ALL.iter().position(|x| *x == kind) {
                event_weights[i] = *v;
            }
        }
        let mut category_weights = default_category_weights();
        for (k, v) in &self.category_weights {
            if !v.is_finite() || *v < 0.0 {
                return Err(invalid(
                    format!("category_weights.{k}"),
                    format!("must be 0 or more, not {v}"),
                ));
            }
            category_weights.insert(k.to_ascii_lowercase(), *v);
        }
        let mut rules = Vec::new();
        let icp = &self.icp;
        for (field, list, points, matching) in [
            ("industry", &icp.industries, 25.0, Matching::Exact),
            (
                "employee_range",
                &icp.employee_ranges,
                25.0,
                Matching::Exact,
            ),
            ("country", &icp.countries, 15.0, Matching::Exact),
            ("seniority", &icp.seniorities, 20.0, Matching::Exact),
            ("job_title", &icp.titles, 15.0, Matching::Contains),
            ("technologies", &icp.technologies, 15.0, Matching::Exact),
        ] {
            if !list.is_empty() {
                rules.push(Rule {
                    field: field.to_string(),
                    any_of: list.clone(),
                    matching,
                    min: None,
                    max: None,
                    points,
                    name: None,
                });
            }
        }
        for (i, r) in icp.rules.iter().enumerate() {
            let at = format!("icp.rules[{i}]");
            if r.field.trim().is_empty() {
                return Err(invalid(format!("{at}.field"), "must name a value"));
            }
            if r.any_of.is_empty() && r.min.is_none() && r.max.is_none() {
                return Err(invalid(at, "needs `any_of`, or `min` and/or `max`"));
            }
            if !r.points.is_finite() {
                return Err(invalid(format!("{at}.points"), "must be a number"));
            }
            if let (Some(lo), Some(hi)) = (r.min, r.max)
                && lo > hi
            {
                return Err(invalid(at, format!("min {lo} is above max {hi}")));
            }
            rules.push(r.clone());
        }
        if let Some(m) = &self.model {
            m.check()?;
        }
        Ok(Resolved {
            weights: Weights {
                fit: w.fit / sum,
                engagement: w.engagement / sum,
                intent: w.intent / sum,
            },
            event_weights,
            category_weights,
            rules,
            half_life_ms: self.half_life_days * DAY_MS,
            stakeholder_window_ms: self.stakeholder_window_days * DAY_MS,
            settings: self,
        })
    }
}
