//! The score capability, as plain Rust: a lead's fit against the tenant's
//! ideal-customer profile, its engagement (recent activity weighted by
//! signal strength and recency), its intent (research-heavy visits, several
//! stakeholders of one account, trial usage), a total 0–100 with a grade,
//! and every factor's contribution as a reason.
//!
//! - [`settings`]: the tenant's `[score.settings]`.
//! - [`model`]: a calibrated conversion model (`leadgate calibrate`); with
//!   one, the total is the conversion probability in percent.
//! - `component`: [`Scorer`] as the guest SDK's [`leadgate_sdk::Score`],
//!   exported by the `wasm32` build as `leadgate:plugin/score@0.1.0`.
//!
//! Scoring is pure: "now" comes from the caller, so decay and windows are
//! the same on every re-run.

pub use leadgate_models::score as model;
pub mod settings;

mod component;

#[cfg(test)]
mod tests;

use leadgate_lead::score::{Event, EventKind, Reason, Scored, Subject};
pub use settings::{Resolved, Settings, SettingsError};
use std::borrow::Cow;

/// Reasons kept per score, largest contribution first.
pub const MAX_REASONS: usize = 12;

/// A scorer configured for one tenant.
#[derive(Debug, Clone)]
pub struct Scorer {
    r: Resolved,
}

/// A subscore and the reasons that make it (contributions in the
/// subscore's own points, 0–100).
struct Part {
    value: f64,
    reasons: Vec<Draft>,
}

/// A reason before it is put into words: scoring weighs every candidate,
/// keeps the largest [`MAX_REASONS`], and writes out only those.
struct Draft {
    contribution: f64,
    what: What,
}

/// What a reason is about, with the numbers its words need.
enum What {
    /// No ideal-customer profile is configured.
    NoIcp,
    /// The field of ICP rule `rule` is unknown.
    FitUnknown {
        rule: usize,
    },
    /// The field of ICP rule `rule` matches it or not.
    Fit {
        rule: usize,
        fits: bool,
    },
    /// `count` events of `kind` (page views of `category`, when not 0)
    /// worth `points` recency-weighted.
    Engagement {
        kind: EventKind,
        category: u8,
        points: f64,
        count: u32,
    },
    Research {
        own: f64,
        peers: f64,
    },
    Stakeholders {
        people: usize,
    },
    Trial {
        trial: bool,
        usage: f64,
    },
}

fn reason(code: String, factor: &str, contribution: f64, detail: String) -> Reason {
    Reason {
        code,
        factor: factor.to_string(),
        contribution,
        detail,
    }
}

impl What {
    fn draft(self, contribution: f64) -> Draft {
        Draft {
            contribution,
            what: self,
        }
    }

    /// Shown even when it is worth nothing: what the profile could not
    /// judge.
    fn shown_at_zero(&self) -> bool {
        matches!(self, What::NoIcp | What::FitUnknown { .. })
    }
}

impl Scorer {
    pub fn new(r: Resolved) -> Scorer {
        Scorer { r }
    }

    /// A scorer from `[score.settings]` as JSON.
    pub fn from_json(json: &str) -> Result<Scorer, SettingsError> {
        Ok(Scorer::new(Settings::from_json(json)?))
    }

    pub fn settings(&self) -> &Resolved {
        &self.r
    }

    /// Scores `s` as of `now` (ms since the epoch).
    pub fn score(&self, s: &Subject, now: i64) -> Scored {
        let tables = self.tables(s);
        let fit = self.fit(s);
        let engagement = self.engagement(s, now, &tables);
        let intent = self.intent(s, now, &tables);
        let w = self.r.weights;
        let blended = w.fit * fit.value + w.engagement * engagement.value + w.intent * intent.value;
        let mut drafts: Vec<&Draft> = Vec::new();
        let mut weighted: Vec<f64> = Vec::new();
        for (part, weight) in [
            (&fit, w.fit),
            (&engagement, w.engagement),
            (&intent, w.intent),
        ] {
            for d in &part.reasons {
                drafts.push(d);
                weighted.push(round2(d.contribution * weight));
            }
        }
        // Indexes of the drafts, largest weighted contribution first (ties
        // in the order they were made).
        let mut order: Vec<usize> = (0..drafts.len()).collect();
        let by_size = |order: &mut Vec<usize>| {
            order.sort_by(|&a, &b| weighted[b].abs().total_cmp(&weighted[a].abs()));
        };
        let words = |order: &[usize]| -> Vec<Reason> {
            order
                .iter()
                .map(|&i| self.words(s, drafts[i], weighted[i]))
                .collect()
        };
        let mut probability = None;
        let mut reasons: Vec<Reason>;
        let total = match &self.r.settings.model {
            None => {
                reasons = Vec::new();
                blended
            }
            Some(m) => {
                let (p, parts) =
                    m.explain(|name| self.model_value(s, name, &fit, &engagement, &intent, now));
                probability = Some(p);
                // The parts come largest first: only the ones shown are
                // put into words.
                let mut model: Vec<Reason> = parts
                    .iter()
                    .filter(|c| c.log_odds.abs() >= 0.005)
                    .take(MAX_REASONS / 2)
                    .map(|c| {
                        let shown = self
                            .model_value(s, c.name, &fit, &engagement, &intent, now)
                            .map_or_else(|| "missing".to_string(), |v| format!("'{v}'"));
                        reason(
                            format!("model.{}", code_name(c.name)),
                            "model",
                            round2(c.log_odds),
                            format!(
                                "{} {shown} {} the odds of converting ×{:.2}",
                                c.name,
                                if c.log_odds >= 0.0 {
                                    "raises"
                                } else {
                                    "lowers"
                                },
                                c.log_odds.exp()
                            ),
                        )
                    })
                    .collect();
                model.truncate(MAX_REASONS / 2);
                by_size(&mut order);
                order.truncate(MAX_REASONS - model.len());
                model.append(&mut words(&order));
                reasons = model;
                100.0 * p
            }
        };
        if probability.is_none() {
            order.retain(|&i| weighted[i] != 0.0 || drafts[i].what.shown_at_zero());
            by_size(&mut order);
            order.truncate(MAX_REASONS);
            reasons = words(&order);
        }
        let total = total.round().clamp(0.0, 100.0);
        let g = self.r.settings.grades;
        let grade = if total >= g.a {
            "A"
        } else if total >= g.b {
            "B"
        } else if total >= g.c {
            "C"
        } else {
            "D"
        };
        Scored {
            total: total as u8,
            grade: grade.to_string(),
            fit: round2(fit.value),
            engagement: round2(engagement.value),
            intent: round2(intent.value),
            probability,
            reasons,
        }
    }

    /// A value for the model: the subject's own, the subscores, or event
    /// counts.
    fn model_value<'a>(
        &self,
        s: &'a Subject,
        name: &str,
        fit: &Part,
        engagement: &Part,
        intent: &Part,
        now: i64,
    ) -> Option<Cow<'a, str>> {
        match name {
            "score.fit" => return Some(Cow::Owned(fit.value.to_string())),
            "score.engagement" => return Some(Cow::Owned(engagement.value.to_string())),
            "score.intent" => return Some(Cow::Owned(intent.value.to_string())),
            _ => {}
        }
        if let Some(kind) = name.strip_prefix("events.").and_then(EventKind::parse) {
            let window = self.r.settings.stakeholder_window_days * 86_400_000.0;
            let n = s
                .events
                .iter()
                .filter(|e| e.kind == kind && ((now - e.at) as f64) <= window)
                .count();
            return Some(Cow::Owned(n.to_string()));
        }
        s.value(name).map(Cow::Borrowed)
    }

    fn fit(&self, s: &Subject) -> Part {
        let rules = &self.r.rules;
        if rules.is_empty() {
            return Part {
                value: 50.0,
                reasons: vec![What::NoIcp.draft(0.0)],
            };
        }
        let den: f64 = rules
            .iter()
            .map(|r| r.points.max(0.0))
            .sum::<f64>()
            .max(1e-9);
        let mut got = 0.0;
        let mut reasons = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            match s.value(&rule.field) {
                None => reasons.push(What::FitUnknown { rule: i }.draft(0.0)),
                Some(v) => {
                    let fits = rule_fits(rule, v);
                    if fits {
                        got += rule.points;
                    }
                    let points = if fits { 100.0 * rule.points / den } else { 0.0 };
                    reasons.push(What::Fit { rule: i, fits }.draft(points));
                }
            }
        }
        Part {
            value: (100.0 * got / den).clamp(0.0, 100.0),
            reasons,
        }
    }

    /// A reason's code and words, with its weighted contribution.
    fn words(&self, s: &Subject, d: &Draft, contribution: f64) -> Reason {
        let rule = |i: usize| self.r.rules.get(i);
        let rule_name = |i: usize| rule(i).map_or_else(String::new, |r| code_name(r.name()));
        let field = |i: usize| rule(i).map_or("", |r| r.field.as_str());
        let (code, factor, detail) = match &d.what {
            What::NoIcp => (
                "fit.no_icp".to_string(),
                "fit",
                "no ideal-customer profile is configured: fit is neutral (50)".to_string(),
            ),
            What::FitUnknown { rule } => (
                format!("fit.{}_unknown", rule_name(*rule)),
                "fit",
                format!("{} is unknown", field(*rule)),
            ),
            What::Fit { rule, fits } => (
                format!("fit.{}", rule_name(*rule)),
                "fit",
                format!(
                    "{} '{}' {} the ideal-customer profile",
                    field(*rule),
                    s.value(field(*rule)).unwrap_or_default(),
                    if *fits { "matches" } else { "is outside" }
                ),
            ),
            What::Engagement {
                kind,
                category,
                points,
                count,
            } => {
                let n = *count;
                let cat = usize::from(*category)
                    .checked_sub(1)
                    .and_then(|i| s.categories.get(i))
                    .map(|c| c.to_ascii_lowercase());
                let code = match &cat {
                    Some(c) => format!("engagement.{}.{}", kind.as_str(), code_name(c)),
                    None => format!("engagement.{}", kind.as_str()),
                };
                let what = match &cat {
                    Some(c) => format!("{} {c} page view{}", n, plural(n)),
                    None => format!("{n} {}{}", kind.as_str().replace('_', " "), plural(n)),
                };
                (
                    code,
                    "engagement",
                    format!("{what}, recency-weighted {points:.1} points"),
                )
            }
            What::Research { own, peers } => (
                "intent.research".to_string(),
                "intent",
                format!(
                    "research-heavy visits ({}): {own:.1} recency-weighted of the lead's own, {peers:.1} of colleagues'",
                    self.r.settings.research_categories.join(", ")
                ),
            ),
            What::Stakeholders { people } => (
                "intent.stakeholders".to_string(),
                "intent",
                format!(
                    "{people} people of {} engaged in the last {} days",
                    s.value("domain")
                        .or(s.value("company"))
                        .unwrap_or("the account"),
                    self.r.settings.stakeholder_window_days
                ),
            ),
            What::Trial { trial, usage } => (
                "intent.trial".to_string(),
                "intent",
                format!(
                    "{}product usage {usage:.1} recency-weighted units",
                    if *trial {
                        "a trial sign-up in the window, "
                    } else {
                        ""
                    }
                ),
            ),
        };
        reason(code, factor, contribution, detail)
    }

    /// Per category of `s` (by index; 0 is none): the page-view
    /// multiplier and whether it counts as research.
    fn tables(&self, s: &Subject) -> Tables {
        let mut t = Tables {
            multiplier: Vec::with_capacity(s.categories.len() + 1),
            research: Vec::with_capacity(s.categories.len() + 1),
        };
        t.multiplier.push(1.0);
        t.research.push(false);
        for c in &s.categories {
            t.multiplier.push(
                self.r
                    .category_weights
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(c))
                    .map_or(1.0, |(_, m)| *m),
            );
            t.research.push(
                self.r
                    .settings
                    .research_categories
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(c)),
            );
        }
        t
    }

    fn event_points(&self, e: &Event, now: i64, t: &Tables) -> f64 {
        let i = EventKind::ALL
            .iter()
            .position(|k| *k == e.kind)
            .unwrap_or(0);
        let mut w = self.r.event_weights[i];
        if e.kind == EventKind::PageView {
            w *= t
                .multiplier
                .get(usize::from(e.category))
                .copied()
                .unwrap_or(1.0);
        }
        if e.kind == EventKind::ProductUsage && e.value.is_finite() {
            w *= e.value.clamp(0.0, 10.0);
        }
        w * self.decay(e.at, now)
    }

    /// 1 for an event now, ½ one half-life ago. Events stamped in the
    /// future (clock skew) count as now.
    fn decay(&self, at: i64, now: i64) -> f64 {
        let age = (now.saturating_sub(at)).max(0) as f64;
        half_power(age / self.r.half_life_ms)
    }

    fn engagement(&self, s: &Subject, now: i64, t: &Tables) -> Part {
        // Points and count per kind and page category (a lead may pass
        // hundreds of events: nothing is allocated per event).
        let mut by: Vec<(EventKind, u8, f64, u32)> = Vec::new();
        let mut sum = 0.0;
        for e in &s.events {
            let p = self.event_points(e, now, t);
            sum += p;
            let cat = if e.kind == EventKind::PageView && s.category(e).is_some() {
                e.category
            } else {
                0
            };
            match by.iter_mut().find(|x| x.0 == e.kind && x.1 == cat) {
                Some(slot) => {
                    slot.2 += p;
                    slot.3 += 1;
                }
                None => by.push((e.kind, cat, p, 1)),
            }
        }
        let name = |c: u8| {
            usize::from(c)
                .checked_sub(1)
                .and_then(|i| s.categories.get(i))
                .map(String::as_str)
        };
        by.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| cmp_category(name(a.1), name(b.1)))
        });
        let value = 100.0 * (1.0 - (-sum.max(0.0) / self.r.settings.engagement_scale).exp());
        let reasons = by
            .into_iter()
            .map(|(kind, category, points, count)| {
                let share = if sum > 0.0 { value * points / sum } else { 0.0 };
                What::Engagement {
                    kind,
                    category,
                    points,
                    count,
                }
                .draft(share)
            })
            .collect();
        Part { value, reasons }
    }

    fn intent(&self, s: &Subject, now: i64, tables: &Tables) -> Part {
        let pts = self.r.settings.intent;
        // One pass over each person's events: research visits, activity in
        // the window, trial sign-ups and usage.
        let window = self.r.stakeholder_window_ms;
        let tally = |events: &[Event]| {
            let mut t = Tally::default();
            for e in events {
                let recent = ((now - e.at) as f64) <= window;
                t.active |= recent;
                match e.kind {
                    EventKind::PageView
                        if tables
                            .research
                            .get(usize::from(e.category))
                            .copied()
                            .unwrap_or(false) =>
                    {
                        t.research += self.decay(e.at, now);
                    }
                    EventKind::TrialSignup => t.trial |= recent,
                    EventKind::ProductUsage => {
                        t.usage += e.value.clamp(0.0, 10.0) * self.decay(e.at, now);
                    }
                    _ => {}
                }
            }
            t
        };
        let mine = tally(&s.events);
        let (mut peers, mut people, mut trial, mut usage) =
            (0.0, usize::from(mine.active), mine.trial, mine.usage);
        for p in &s.peers {
            let t = tally(&p.events);
            peers += t.research;
            people += usize::from(t.active);
            trial |= t.trial;
            usage += t.usage;
        }
        let own = mine.research;
        let r = own + 0.5 * peers;
        let research_pts = pts.research * (1.0 - (-r / 3.0).exp());
        let stakeholder_pts = pts.stakeholders * ((people.saturating_sub(1)) as f64 / 2.0).min(1.0);
        let trial_pts =
            pts.trial * (if trial { 0.6 } else { 0.0 } + 0.4 * (1.0 - (-usage / 5.0).exp()));

        let mut reasons = Vec::new();
        if research_pts > 0.0 {
            reasons.push(What::Research { own, peers }.draft(research_pts));
        }
        if people >= 2 {
            reasons.push(What::Stakeholders { people }.draft(stakeholder_pts));
        }
        if trial_pts > 0.0 {
            reasons.push(What::Trial { trial, usage }.draft(trial_pts));
        }
        Part {
            value: (research_pts + stakeholder_pts + trial_pts).clamp(0.0, 100.0),
            reasons,
        }
    }
}

/// 2^−x for x ≥ 0, to about 1e-9 relative: the integer part by the
/// exponent bits, the fraction from a table of 2^(−k/64) and a quartic for
/// the rest. A short chain of multiplications: the libm `exp` (or a long
/// polynomial) costs several times more inside WebAssembly, and a lead may
/// pass hundreds of events.
pub fn half_power(x: f64) -> f64 {
    // NaN and x ≤ 0: no decay.
    if x.is_nan() || x <= 0.0 {
        return 1.0;
    }
    if x >= 1000.0 {
        return 0.0;
    }
    static TABLE: std::sync::OnceLock<[f64; 64]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        std::array::from_fn(|k| (-(k as f64) / 64.0 * std::f64::consts::LN_2).exp())
    });
    let n = x.floor();
    let f = x - n;
    let k = ((f * 64.0) as usize).min(63);
    let u = -(f - k as f64 / 64.0) * std::f64::consts::LN_2;
    let p = 1.0 + u * (1.0 + u * (0.5 + u * (1.0 / 6.0 + u * (1.0 / 24.0))));
    // 2^−n as a float built from its exponent (n < 1000 < 1022).
    let scale = f64::from_bits(((1023 - n as u64) & 0x7ff) << 52);
    scale * table[k] * p
}

/// Categories in order, case-insensitively; none first.
fn cmp_category(a: Option<&str>, b: Option<&str>) -> std::cmp::Ordering {
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(y.bytes().map(|c| c.to_ascii_lowercase())),
    }
}

/// A subject's categories resolved against the settings.
struct Tables {
    multiplier: Vec<f64>,
    research: Vec<bool>,
}

/// What intent needs of one person's events.
#[derive(Default)]
struct Tally {
    research: f64,
    active: bool,
    trial: bool,
    usage: f64,
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A name as a reason code segment: lowercase, runs of other characters as `_`.
pub fn code_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim().chars() {
        if c.is_alphanumeric() || c == '.' {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Whether `value` fits `rule`.
pub fn rule_fits(rule: &settings::Rule, value: &str) -> bool {
    if rule.min.is_some() || rule.max.is_some() {
        let Some(x) = model::parse_number(value) else {
            return false;
        };
        let in_range = rule.min.is_none_or(|lo| x >= lo) && rule.max.is_none_or(|hi| x <= hi);
        if rule.any_of.is_empty() || !in_range {
            return in_range;
        }
    }
    let v = value.trim().to_lowercase();
    match rule.matching {
        settings::Matching::Exact => v.split([',', ';']).map(str::trim).any(|item| {
            rule.any_of
                .iter()
                .any(|a| a.trim().eq_ignore_ascii_case(item))
        }),
        settings::Matching::Contains => rule
            .any_of
            .iter()
            .any(|a| contains_words(&v, &a.to_lowercase())),
    }
}

/// Whether `needle`'s words appear in `hay` as whole words, in order.
fn contains_words(hay: &str, needle: &str) -> bool {
    let words: Vec<&str> = hay
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let want: Vec<&str> = needle
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    !want.is_empty() && words.windows(want.len()).any(|w| w == want.as_slice())
}
