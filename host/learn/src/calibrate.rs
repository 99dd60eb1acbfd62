//! `leadgate calibrate`: fits the score component's conversion model from
//! historical outcomes — L2-regularized logistic regression, solved by
//! Newton's method, or gradient-boosted trees (`forust-ml`), calibrated by
//! Platt scaling — and reports how it does on held-out rows (ROC AUC,
//! PR AUC, Brier score, a 10-bin reliability table).
//!
//! Features are found in the file: every column (lead field or custom
//! column) that is not the outcome, not ignored and not an identifier or
//! free text. Placeholder values (`Select`, `N/A`, …) count as missing.
//! Numbers are clipped at their 0.5th/99.5th percentiles, log-scaled when
//! they are counts or durations, and standardized, with a missing-value
//! indicator; categories become one indicator per common value (compared
//! without case), one for the rare values pooled, and one for missing.
//!
//! The training rows are split once more: the penalty, the number of
//! trees and the trees' calibration are chosen on the validation part, and
//! so is the model family when it is not given. The held-out rows are
//! scored through the written model's own evaluation (the one the score
//! component runs), so the metrics printed are what `leadgate score` gives.

use crate::batch;
use crate::config::Config;
use anyhow::{Context, Result, bail};
use leadgate_lead::score::Subject;
use leadgate_models::score::{self as model, Boost, Feature, Fitted, Kind, Model, Transform};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::fmt::Write as _;

/// An outcome cell: converted or not; `None` when it says neither.
pub fn outcome(s: &str) -> Option<bool> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "1" | "true" | "yes" | "y" | "t" | "converted" | "won" | "closed won" | "closed-won"
        | "customer" => Some(true),
        "0" | "false" | "no" | "n" | "f" | "lost" | "closed lost" | "closed-lost"
        | "not converted" => Some(false),
        _ => model::parse_number(&t).map(|x| x > 0.0),
    }
}

/// Values that mean "not answered" unless `--placeholders` says otherwise.
pub const PLACEHOLDERS: &[&str] = &[
    "Select", "N/A", "NA", "none", "-", "--", "Unknown", "NaN", "null",
];

/// Which model family `calibrate` fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelType {
    /// Whichever has the lower validation log loss.
    Auto,
    Logistic,
    /// Gradient-boosted trees.
    Gbt,
}

/// A subject's value of `name`, a placeholder counting as absent.
fn value_of<'a>(s: &'a Subject, name: &str, placeholders: &[String]) -> Option<&'a str> {
    s.value(name).filter(|v| {
        let v = v.trim();
        !placeholders.iter().any(|p| v.eq_ignore_ascii_case(p))
    })
}

/// Why a column is or is not a feature, for the report.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    pub what: String,
}

/// Rows as sparse feature vectors.
#[derive(Debug, Clone, Default)]
pub struct Design {
    pub rows: Vec<Vec<(u32, f64)>>,
    pub dim: usize,
}

fn is_identifier_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| matches!(w, "id" | "uuid" | "guid" | "number" | "no" | "key" | "ref"))
        || n.ends_with("id")
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A 0/1 feature (a category's level, or a missing value), not yet fitted.
fn indicator(name: &str, kind: Kind, level: Option<&str>) -> Feature {
    Feature {
        name: name.to_string(),
        kind,
        level: level.map(String::from),
        transform: Transform::None,
        levels: Vec::new(),
        lo: None,
        hi: None,
        center: 0.0,
        scale: 1.0,
        mean: 0.0,
        weight: 0.0,
    }
}

/// Finds the features in `subjects` (all of their fields and custom
/// columns but `skip`), with their training statistics from `train`.
pub fn plan_features(
    subjects: &[Subject],
    train: &[usize],
    skip: &[String],
    placeholders: &[String],
) -> (Vec<Feature>, Vec<ColumnPlan>) {
    let mut names: Vec<String> = Vec::new();
    for f in leadgate_lead::TEXT_FIELDS {
        if !crate::batch::NOT_FEATURES.contains(f)
            && subjects.iter().any(|s| s.lead.field(f).is_some())
        {
            names.push((*f).to_string());
        }
    }
    // A lead field's value kept as read (see `batch::read`) is the same
    // feature as the field.
    let mut seen: std::collections::HashSet<String> =
        names.iter().map(|n| n.to_ascii_lowercase()).collect();
    for s in subjects {
        for c in &s.lead.custom {
            if seen.insert(c.key.to_ascii_lowercase()) {
                names.push(c.key.clone());
            }
        }
    }
    let n = train.len().max(1);
    let mut features = Vec::new();
    let mut plans = Vec::new();
    for name in names {
        if skip.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
            continue;
        }
        let mut plan = |what: String| {
            plans.push(ColumnPlan {
                name: name.clone(),
                what,
            })
        };
        let values: Vec<Option<&str>> = train
            .iter()
            .map(|&i| value_of(&subjects[i], &name, placeholders))
            .collect();
        let present: Vec<&str> = values.iter().flatten().copied().collect();
        if present.len() * 100 < n {
            plan("left out: almost always empty".into());
            continue;
        }
        let missing = present.len() < n;
        let numbers: Vec<f64> = present
            .iter()
            .filter_map(|v| model::parse_number(v))
            .collect();
        let distinct = |xs: &[&str]| {
            let mut d: Vec<String> = xs.iter().map(|x| x.trim().to_lowercase()).collect();
            d.sort_unstable();
            d.dedup();
            d.len()
        };
        if numbers.len() * 100 >= present.len() * 98 {
            let mut sorted = numbers.clone();
            sorted.sort_by(f64::total_cmp);
            sorted.dedup();
            let unique = sorted.len();
            if unique < 2 {
                plan("left out: the same number in every row".into());
                continue;
            }
            if is_identifier_name(&name) && unique * 10 >= present.len() * 9 {
                plan(format!(
                    "left out: an identifier ({unique} distinct numbers)"
                ));
                continue;
            }
            let mut all = numbers.clone();
            all.sort_by(f64::total_cmp);
            let lo = quantile(&all, 0.005);
            let hi = quantile(&all, 0.995);
            let median = quantile(&all, 0.5);
            let log = lo >= 0.0 && hi > 4.0 * median.max(1.0);
            let mut f = Feature {
                name: name.clone(),
                kind: Kind::Number,
                level: None,
                levels: Vec::new(),
                transform: if log {
                    Transform::Log1p
                } else {
                    Transform::None
                },
                lo: Some(lo),
                hi: Some(hi),
                center: 0.0,
                scale: 1.0,
                mean: 0.0,
                weight: 0.0,
            };
            let xs: Vec<f64> = numbers.iter().map(|&x| f.transformed(x)).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            if var.sqrt() < 1e-12 {
                plan("left out: no spread after clipping".into());
                continue;
            }
            f.center = mean;
            f.scale = var.sqrt();
            plan(format!(
                "number{}, clipped to [{lo}, {hi}]{}",
                if log { " (log scale)" } else { "" },
                if missing {
                    ", with a missing indicator"
                } else {
                    ""
                }
            ));
            features.push(f);
        } else {
            let d = distinct(&present);
            if d > 50 && d * 2 > present.len() {
                plan(format!(
                    "left out: free text or an identifier ({d} distinct values)"
                ));
                continue;
            }
            let mut counts: HashMap<String, (usize, &str)> = HashMap::new();
            for v in &present {
                counts
                    .entry(v.trim().to_lowercase())
                    .or_insert((0, v.trim()))
                    .0 += 1;
            }
            let min_count = (n / 1000).max(5);
            let mut levels: Vec<(usize, &str)> = counts
                .values()
                .filter(|(c, _)| *c >= min_count)
                .copied()
                .collect();
            levels.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            levels.truncate(60);
            let common: usize = levels.iter().map(|(c, _)| c).sum();
            let rare = present.len() - common;
            if levels.len() == 1 && !missing && rare == 0 {
                plan("left out: the same value in every row".into());
                continue;
            }
            if levels.is_empty() && !missing {
                plan("left out: no value common enough to learn from".into());
                continue;
            }
            // The rare values, pooled, when there are enough of them to
            // say something and the common ones do not cover every row.
            let pooled = rare >= min_count && !levels.is_empty();
            plan(format!(
                "category, {} of {d} values{}{}",
                levels.len(),
                if pooled {
                    format!(", the other {} pooled ({rare} rows)", d - levels.len())
                } else {
                    String::new()
                },
                if missing {
                    ", with a missing indicator"
                } else {
                    ""
                }
            ));
            for (_, level) in &levels {
                features.push(indicator(&name, Kind::Level, Some(level)));
            }
            if pooled {
                let mut other = indicator(&name, Kind::Other, None);
                other.levels = levels.iter().map(|(_, l)| (*l).to_string()).collect();
                features.push(other);
            }
        }
        if missing {
            features.push(indicator(&name, Kind::Missing, None));
        }
    }
    (features, plans)
}

/// Encodes every subject with `features`.
pub fn design(subjects: &[Subject], features: &[Feature], placeholders: &[String]) -> Design {
    let rows = subjects
        .iter()
        .map(|s| {
            let mut row = Vec::new();
            let mut last: Option<(&str, Option<&str>)> = None;
            for (j, f) in features.iter().enumerate() {
                let v = match last {
                    Some((n, v)) if n == f.name => v,
                    _ => {
                        let v = value_of(s, &f.name, placeholders);
                        last = Some((&f.name, v));
                        v
                    }
                };
                let x = f.encode(v);
                if x != 0.0 {
                    row.push((j as u32, x));
                }
            }
            row
        })
        .collect();
    Design {
        rows,
        dim: features.len(),
    }
}

/// Fitted weights: intercept and one per feature.
#[derive(Debug, Clone)]
pub struct Fit {
    pub intercept: f64,
    pub weights: Vec<f64>,
}

impl Fit {
    pub fn logit(&self, row: &[(u32, f64)]) -> f64 {
        self.intercept
            + row
                .iter()
                .map(|&(j, x)| self.weights[j as usize] * x)
                .sum::<f64>()
    }

    pub fn predict(&self, row: &[(u32, f64)]) -> f64 {
        model::sigmoid(self.logit(row))
    }
}

/// Mean log loss of `fit` on `rows`.
fn log_loss(fit: &Fit, d: &Design, rows: &[usize], y: &[bool]) -> f64 {
    rows.iter()
        .map(|&i| {
            let z = fit.logit(&d.rows[i]);
            // log(1 + e^z) − y·z, stable.
            let softplus = if z > 0.0 {
                z + (-z).exp().ln_1p()
            } else {
                z.exp().ln_1p()
            };
            softplus - if y[i] { z } else { 0.0 }
        })
        .sum::<f64>()
        / rows.len().max(1) as f64
}

/// Solves `a x = b` for a symmetric positive definite `a` (row-major `n×n`)
/// by Cholesky; `None` if it is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    let mut x = b.to_vec();
    for i in 0..n {
        let mut s = x[i];
        for k in 0..i {
            s -= a[i * n + k] * x[k];
        }
        x[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = x[i];
        for k in i + 1..n {
            s -= a[k * n + i] * x[k];
        }
        x[i] = s / a[i * n + i];
    }
    Some(x)
}

/// L2-regularized logistic regression on `rows` of `d` (mean log loss +
/// `l2`/2·‖w‖², the intercept unpenalized), by Newton's method with a
/// backtracking line search, from `start` if given.
pub fn fit_logistic(d: &Design, rows: &[usize], y: &[bool], l2: f64, start: Option<&Fit>) -> Fit {
    let p = d.dim + 1; // index d.dim is the intercept
    let n = rows.len().max(1) as f64;
    let mut fit = start.cloned().unwrap_or_else(|| {
        let pos = rows.iter().filter(|&&i| y[i]).count() as f64;
        let rate = ((pos + 0.5) / (n + 1.0)).clamp(1e-6, 1.0 - 1e-6);
        Fit {
            intercept: (rate / (1.0 - rate)).ln(),
            weights: vec![0.0; d.dim],
        }
    });
    let objective =
        |f: &Fit| log_loss(f, d, rows, y) + 0.5 * l2 * f.weights.iter().map(|w| w * w).sum::<f64>();
    let mut current = objective(&fit);
    for _ in 0..100 {
        let mut g = vec![0.0; p];
        let mut h = vec![0.0; p * p];
        for &i in rows {
            let row = &d.rows[i];
            let pr = fit.predict(row);
            let r = pr - if y[i] { 1.0 } else { 0.0 };
            let w = (pr * (1.0 - pr)).max(1e-10);
            g[d.dim] += r;
            h[d.dim * p + d.dim] += w;
            for (a, &(ja, xa)) in row.iter().enumerate() {
                let ja = ja as usize;
                g[ja] += r * xa;
                h[ja * p + d.dim] += w * xa;
                for &(jb, xb) in &row[..=a] {
                    h[ja * p + jb as usize] += w * xa * xb;
                }
            }
        }
        // The intercept's cross terms were summed in the last column: move
        // them to the last row, so the lower triangle holds the matrix.
        for j in 0..d.dim {
            h[d.dim * p + j] = h[j * p + d.dim];
        }
        for j in 0..p {
            g[j] /= n;
            for k in 0..=j {
                h[j * p + k] /= n;
            }
        }
        for j in 0..d.dim {
            g[j] += l2 * fit.weights[j];
            h[j * p + j] += l2;
        }
        for j in 0..p {
            for k in j + 1..p {
                h[j * p + k] = h[k * p + j];
            }
        }
        // A little ridge keeps an exactly singular system (an indicator
        // that is never 1 in these rows) solvable.
        for j in 0..p {
            h[j * p + j] += 1e-9;
        }
        let Some(step) = cholesky_solve(&mut h, &g, p) else {
            break;
        };
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let trial = Fit {
                intercept: fit.intercept - t * step[d.dim],
                weights: fit
                    .weights
                    .iter()
                    .zip(&step)
                    .map(|(w, s)| w - t * s)
                    .collect(),
            };
            let value = objective(&trial);
            if value <= current + 1e-12 {
                let gain = current - value;
                fit = trial;
                current = value;
                improved = gain > 1e-10;
                break;
            }
            t *= 0.5;
        }
        let size = step.iter().fold(0.0f64, |m, s| m.max(s.abs())) * t;
        if !improved || size < 1e-7 {
            break;
        }
    }
    fit
}

/// Held-out quality of predictions `p` for outcomes `y`.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub rows: usize,
    pub positives: usize,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub brier: f64,
    pub log_loss: f64,
    /// Per tenth of predicted probability: rows, mean predicted, observed rate.
    pub bins: Vec<(usize, f64, f64)>,
}

/// ROC AUC (ties count half), average precision, Brier score, log loss
/// and the 10-bin reliability table.
pub fn metrics(p: &[f64], y: &[bool]) -> Metrics {
    let n = p.len();
    let positives = y.iter().filter(|&&v| v).count();
    let negatives = n - positives;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    // Mann–Whitney with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if y[k] {
                rank_sum += avg;
            }
        }
        i = j + 1;
    }
    let roc_auc = if positives == 0 || negatives == 0 {
        f64::NAN
    } else {
        (rank_sum - (positives * (positives + 1)) as f64 / 2.0)
            / (positives as f64 * negatives as f64)
    };
    // Average precision, highest scores first, ties taken as one step.
    let mut pr_auc = 0.0;
    let (mut tp, mut seen) = (0usize, 0usize);
    let mut k = n;
    while k > 0 {
        let mut j = k - 1;
        let mut group_tp = 0;
        let mut group = 0;
        loop {
            group += 1;
            if y[order[j]] {
                group_tp += 1;
            }
            if j == 0 || p[order[j - 1]] != p[order[k - 1]] {
                break;
            }
            j -= 1;
        }
        tp += group_tp;
        seen += group;
        if positives > 0 {
            pr_auc += (group_tp as f64 / positives as f64) * (tp as f64 / seen as f64);
        }
        k = j;
    }
    let brier = p
        .iter()
        .zip(y)
        .map(|(p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum::<f64>()
        / n.max(1) as f64;
    let log_loss = p
        .iter()
        .zip(y)
        .map(|(p, &y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            -(if y { p.ln() } else { (1.0 - p).ln() })
        })
        .sum::<f64>()
        / n.max(1) as f64;
    let mut bins = vec![(0usize, 0.0f64, 0.0f64); 10];
    for (p, &y) in p.iter().zip(y) {
        let b = ((p * 10.0) as usize).min(9);
        bins[b].0 += 1;
        bins[b].1 += p;
        bins[b].2 += f64::from(u8::from(y));
    }
    for b in &mut bins {
        if b.0 > 0 {
            b.1 /= b.0 as f64;
            b.2 /= b.0 as f64;
        }
    }
    Metrics {
        rows: n,
        positives,
        roc_auc,
        pr_auc: if positives == 0 { f64::NAN } else { pr_auc },
        brier,
        log_loss,
        bins,
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.positives as f64 / self.rows.max(1) as f64;
        writeln!(
            f,
            "held-out rows      {} ({} converted, {:.1}%)",
            self.rows,
            self.positives,
            100.0 * rate
        )?;
        writeln!(f, "ROC AUC            {:.4}", self.roc_auc)?;
        writeln!(
            f,
            "PR AUC             {:.4}  (base rate {:.4})",
            self.pr_auc, rate
        )?;
        writeln!(
            f,
            "Brier score        {:.4}  (predicting the base rate: {:.4})",
            self.brier,
            rate * (1.0 - rate)
        )?;
        writeln!(f, "log loss           {:.4}", self.log_loss)?;
        writeln!(
            f,
            "reliability        predicted    rows   mean predicted   observed"
        )?;
        for (i, (n, pred, obs)) in self.bins.iter().enumerate() {
            if *n == 0 {
                writeln!(
                    f,
                    "                   {:.1}–{:.1}  {:>7}                -          -",
                    i as f64 / 10.0,
                    (i + 1) as f64 / 10.0,
                    0
                )?;
            } else {
                writeln!(
                    f,
                    "                   {:.1}–{:.1}  {:>7}           {:.3}      {:.3}",
                    i as f64 / 10.0,
                    (i + 1) as f64 / 10.0,
                    n,
                    pred,
                    obs
                )?;
            }
        }
        Ok(())
    }
}

/// A stratified split of `0..y.len()` into (train, held out).
pub fn split(y: &[bool], holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in [true, false] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        idx.shuffle(&mut rng);
        let k = (idx.len() as f64 * holdout).round() as usize;
        test.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// The penalties tried (on mean log loss).
const L2_GRID: &[f64] = &[1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0];

/// The training rows split into (inner, validation).
pub fn inner_split(train: &[usize], y: &[bool], seed: u64) -> (Vec<usize>, Vec<usize>) {
    let ys: Vec<bool> = train.iter().map(|&i| y[i]).collect();
    let (inner, valid) = split(&ys, 0.25, seed ^ 0x5eed);
    (
        inner.iter().map(|&k| train[k]).collect(),
        valid.iter().map(|&k| train[k]).collect(),
    )
}

/// Picks the penalty with the best validation log loss on an inner split
/// of `train`.
#[cfg(test)]
pub fn choose_l2(d: &Design, train: &[usize], y: &[bool], seed: u64) -> f64 {
    let (inner, valid) = inner_split(train, y, seed);
    best_l2(d, &inner, &valid, y).0
}

/// The penalty with the best log loss on `valid` when fitted on `inner`,
/// and that loss.
fn best_l2(d: &Design, inner: &[usize], valid: &[usize], y: &[bool]) -> (f64, f64) {
    let mut best = (f64::INFINITY, L2_GRID[L2_GRID.len() / 2]);
    let mut warm: Option<Fit> = None;
    // Strongest penalty first: each fit starts from the last.
    for &l2 in L2_GRID.iter().rev() {
        let f = fit_logistic(d, inner, y, l2, warm.as_ref());
        let loss = log_loss(&f, d, valid, y);
        if loss < best.0 {
            best = (loss, l2);
        }
        warm = Some(f);
    }
    (best.1, best.0)
}

/// Trees grown at most.
const MAX_TREES: usize = 500;
const LEARNING_RATE: f32 = 0.05;
const MAX_DEPTH: usize = 4;

/// Every row's tree inputs, row by row (`dim` a row).
fn tree_inputs(subjects: &[Subject], model: &Model) -> Vec<Vec<f64>> {
    subjects
        .iter()
        .map(|s| {
            model.tree_inputs(|name| {
                value_of(s, name, &model.placeholders).map(std::borrow::Cow::Borrowed)
            })
        })
        .collect()
}

/// Gradient-boosted trees grown on `inner`: `trees` of them, or as many
/// as do best on `valid` (log loss, at most [`MAX_TREES`]), then
/// calibrated on `valid` by Platt scaling.
pub fn fit_boosted(
    x: &[Vec<f64>],
    dim: usize,
    inner: &[usize],
    valid: &[usize],
    y: &[bool],
    seed: u64,
    trees: Option<usize>,
) -> Result<Boost> {
    use forust_ml::{GradientBooster, Matrix};
    // Column-major, as forust reads it.
    let mut data = vec![0.0; inner.len() * dim];
    for (r, &i) in inner.iter().enumerate() {
        for (j, v) in x[i].iter().enumerate() {
            data[j * inner.len() + r] = *v;
        }
    }
    let yi: Vec<f64> = inner.iter().map(|&i| f64::from(u8::from(y[i]))).collect();
    let matrix = Matrix::new(&data, inner.len(), dim);
    let mut booster = GradientBooster::default()
        .set_iterations(trees.unwrap_or(MAX_TREES).max(1))
        .set_learning_rate(LEARNING_RATE)
        .set_max_depth(MAX_DEPTH)
        .set_l2(1.0)
        .set_min_leaf_weight(1.0)
        .set_parallel(false)
        .set_seed(seed);
    booster
        .fit_unweighted(&matrix, &yi, None)
        .map_err(|e| anyhow::anyhow!("gradient boosting failed: {e}"))?;
    let mut boost = Boost {
        base: booster.base_score,
        slope: 1.0,
        offset: 0.0,
        trees: booster
            .trees
            .iter()
            .map(export_tree)
            .collect::<Result<_>>()?,
        flat: Default::default(),
    };
    // The number of trees: the prefix with the best validation loss.
    let mut margins: Vec<f64> = vec![boost.base; valid.len()];
    let mut best = (f64::INFINITY, 0usize);
    for (t, tree) in boost.trees.iter().enumerate() {
        let one = Boost {
            base: 0.0,
            slope: 1.0,
            offset: 0.0,
            trees: vec![tree.clone()],
            flat: Default::default(),
        };
        for (m, &i) in margins.iter_mut().zip(valid) {
            *m += one.margin(&x[i], None);
        }
        let loss = mean_log_loss(&margins, valid, y);
        if loss < best.0 - 1e-12 {
            best = (loss, t + 1);
        }
    }
    if trees.is_none() {
        boost.trees.truncate(best.1.max(1));
        boost.flat = Default::default();
    }
    platt(&mut boost, x, valid, y);
    Ok(boost)
}

/// Calibrates the trees' margins on `rows` by Platt scaling.
fn platt(boost: &mut Boost, x: &[Vec<f64>], rows: &[usize], y: &[bool]) {
    let (slope, offset) = (boost.slope, boost.offset);
    (boost.slope, boost.offset) = (1.0, 0.0);
    let platt = Design {
        rows: rows
            .iter()
            .map(|&i| vec![(0, boost.margin(&x[i], None))])
            .collect(),
        dim: 1,
    };
    let index: Vec<usize> = (0..rows.len()).collect();
    let yv: Vec<bool> = rows.iter().map(|&i| y[i]).collect();
    let fit = fit_logistic(&platt, &index, &yv, 0.0, None);
    (boost.slope, boost.offset) = match fit.weights.first() {
        Some(w) if w.is_finite() && fit.intercept.is_finite() => (*w, fit.intercept),
        _ => (slope, offset),
    };
}

/// Mean log loss of the calibrated trees on `rows`.
fn boosted_losses(boost: &Boost, x: &[Vec<f64>], rows: &[usize], y: &[bool]) -> Vec<f64> {
    rows.iter()
        .map(|&i| {
            let z = boost.slope * boost.margin(&x[i], None) + boost.offset;
            row_log_loss(z, y[i])
        })
        .collect()
}

/// Log loss of one row whose log-odds are `z`.
fn row_log_loss(z: f64, y: bool) -> f64 {
    let softplus = if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    };
    softplus - if y { z } else { 0.0 }
}

/// Whether the second family's per-row losses beat the first's by more
/// than one standard error of the paired difference: the simpler family
/// (the first) is kept unless the other is better beyond noise.
fn clearly_better(first: &[f64], second: &[f64]) -> bool {
    let n = first.len().min(second.len());
    if n < 2 {
        return false;
    }
    let d: Vec<f64> = first.iter().zip(second).map(|(a, b)| a - b).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    mean > (var / n as f64).sqrt()
}

/// Mean log loss of log-odds `margins` for rows `rows`.
fn mean_log_loss(margins: &[f64], rows: &[usize], y: &[bool]) -> f64 {
    margins
        .iter()
        .zip(rows)
        .map(|(&z, &i)| row_log_loss(z, y[i]))
        .sum::<f64>()
        / rows.len().max(1) as f64
}

/// One of forust's trees as model data, renumbered so that every child
/// comes after its parent (breadth first from the root).
fn export_tree(tree: &forust_ml::tree::Tree) -> Result<model::Tree> {
    let by_num: HashMap<usize, _> = tree.nodes.iter().map(|n| (n.num, n)).collect();
    let root = tree
        .nodes
        .iter()
        .map(|n| n.num)
        .min()
        .context("a fitted tree has no nodes")?;
    let mut order: Vec<usize> = vec![root];
    let mut position: HashMap<usize, u32> = HashMap::from([(root, 0)]);
    let mut k = 0;
    while k < order.len() {
        let n = by_num.get(&order[k]).with_context(|| {
            format!("a fitted tree refers to node {} it does not hold", order[k])
        })?;
        if !n.is_leaf {
            for child in [n.left_child, n.right_child, n.missing_node] {
                if let std::collections::hash_map::Entry::Vacant(e) = position.entry(child) {
                    e.insert(u32::try_from(order.len()).context("a tree too large")?);
                    order.push(child);
                }
            }
        }
        k += 1;
    }
    let nodes = order
        .iter()
        .map(|num| {
            let n = by_num[num];
            if n.is_leaf {
                model::Node {
                    value: f64::from(n.weight_value),
                    leaf: true,
                    feature: 0,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    missing: 0,
                }
            } else {
                model::Node {
                    value: f64::from(n.weight_value),
                    leaf: false,
                    feature: n.split_feature as u32,
                    threshold: n.split_value,
                    left: position[&n.left_child],
                    right: position[&n.right_child],
                    missing: position[&n.missing_node],
                }
            }
        })
        .collect();
    Ok(model::Tree { nodes })
}

pub struct Options {
    pub input: String,
    pub format: Option<leadgate_ingest::Format>,
    pub map: Vec<String>,
    pub outcome: String,
    pub ignore: Vec<String>,
    pub holdout: f64,
    pub seed: u64,
    pub l2: Option<f64>,
    pub model_type: ModelType,
    /// Grow exactly this many trees (default: as many as validation likes).
    pub trees: Option<usize>,
    pub placeholders: Vec<String>,
    pub holdout_output: Option<std::path::PathBuf>,
    pub output: std::path::PathBuf,
    pub quiet: bool,
}

/// What calibration found and wrote.
pub struct Calibrated {
    pub model: Model,
    pub metrics: Metrics,
    pub plans: Vec<ColumnPlan>,
    pub skipped_outcome: usize,
    pub malformed: usize,
    pub l2: f64,
    pub validation: Validation,
}

/// Validation log loss of each family fitted (infinite when not fitted).
#[derive(Debug, Clone, Copy)]
pub struct Validation {
    pub logistic: f64,
    pub gbt: Option<f64>,
}

/// A history export read for learning: the records with a readable
/// outcome (taken out of their custom columns), in order.
pub struct History {
    /// Each subject's record number in the file.
    pub lines: Vec<u64>,
    pub subjects: Vec<Subject>,
    pub outcomes: Vec<bool>,
    /// Records whose outcome was empty or unreadable.
    pub skipped: usize,
    /// Records that could not be read.
    pub malformed: usize,
}

/// Reads `input` (values normalized as at intake) with `outcome` read as a
/// custom column whatever its name; refuses a file without that column.
pub fn read_history(
    config: &Config,
    runtime: &leadgate_runtime::Runtime,
    input: &batch::Input<'_>,
    outcome: &str,
) -> Result<History> {
    let mut map = vec![format!("{outcome}=custom.{outcome}")];
    map.extend(input.map.iter().cloned());
    let records = batch::read(
        config,
        &batch::Input {
            path: input.path,
            format: input.format,
            map: &map,
        },
        Some(runtime),
    )?;
    if !records.columns.is_empty()
        && !records
            .columns
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case(outcome))
    {
        bail!(
            "--outcome {outcome}: the input has no such column (columns: {})",
            records
                .columns
                .iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut h = History {
        lines: Vec::new(),
        subjects: Vec::new(),
        outcomes: Vec::new(),
        skipped: 0,
        malformed: records.malformed.len(),
    };
    for (line, mut s) in records.lines.into_iter().zip(records.subjects) {
        let pos = s
            .lead
            .custom
            .iter()
            .position(|c| c.key.eq_ignore_ascii_case(outcome));
        let value = pos.map(|p| s.lead.custom.remove(p).value);
        match value.as_deref().and_then(self::outcome) {
            Some(v) => {
                h.lines.push(line);
                h.subjects.push(s);
                h.outcomes.push(v);
            }
            None => h.skipped += 1,
        }
    }
    Ok(h)
}

pub fn run(config: &Config, opts: &Options) -> Result<Calibrated> {
    if !(0.05..=0.5).contains(&opts.holdout) {
        bail!(
            "--holdout must be between 0.05 and 0.5, not {}",
            opts.holdout
        );
    }
    let runtime = leadgate_runtime::Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let History {
        lines,
        subjects,
        outcomes: y,
        skipped: skipped_outcome,
        malformed,
    } = read_history(
        config,
        &runtime,
        &batch::Input {
            path: &opts.input,
            format: opts.format,
            map: &opts.map,
        },
        &opts.outcome,
    )?;
    let positives = y.iter().filter(|&&v| v).count();
    if subjects.len() < 50 || positives < 10 || subjects.len() - positives < 10 {
        bail!(
            "{} has {} records with an outcome ({positives} converted): calibration needs at least 50, with 10 of each outcome",
            opts.input,
            subjects.len()
        );
    }
    let (train, test) = split(&y, opts.holdout, opts.seed);
    let placeholders = &opts.placeholders;
    let (mut features, plans) = plan_features(&subjects, &train, &opts.ignore, placeholders);
    if features.is_empty() {
        bail!(
            "no column of {} can be a feature:\n{}",
            opts.input,
            plans
                .iter()
                .map(|p| format!("  {}: {}", p.name, p.what))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let d = design(&subjects, &features, placeholders);
    // Feature means over the training rows, for explanations.
    let mut means = vec![0.0; d.dim];
    for &i in &train {
        for &(j, x) in &d.rows[i] {
            means[j as usize] += x;
        }
    }
    for (f, m) in features.iter_mut().zip(means) {
        f.mean = m / train.len() as f64;
    }
    let (inner, valid) = inner_split(&train, &y, opts.seed);
    let mut model = Model {
        version: model::VERSION,
        outcome: opts.outcome.clone(),
        intercept: 0.0,
        features,
        placeholders: placeholders.clone(),
        boost: None,
        fitted: None,
    };
    // The validation rows in two: one tunes (penalty, trees, calibration),
    // the other judges the two families on what the first chose.
    let (tune, judge) = {
        let yv: Vec<bool> = valid.iter().map(|&i| y[i]).collect();
        let (a, b) = split(&yv, 0.5, opts.seed ^ 0x7e57);
        (
            a.iter().map(|&k| valid[k]).collect::<Vec<_>>(),
            b.iter().map(|&k| valid[k]).collect::<Vec<_>>(),
        )
    };
    let (l2, logistic_losses) = if opts.model_type == ModelType::Gbt {
        (opts.l2.unwrap_or(0.0), Vec::new())
    } else {
        let l2 = match opts.l2 {
            Some(l) => l,
            None => best_l2(&d, &inner, &tune, &y).0,
        };
        let f = fit_logistic(&d, &inner, &y, l2, None);
        let losses: Vec<f64> = judge
            .iter()
            .map(|&i| row_log_loss(f.logit(&d.rows[i]), y[i]))
            .collect();
        (l2, losses)
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::INFINITY
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let logistic_loss = mean(&logistic_losses);
    let boosted = if opts.model_type == ModelType::Logistic {
        None
    } else {
        let x = tree_inputs(&subjects, &model);
        let mut boost = fit_boosted(&x, d.dim, &inner, &tune, &y, opts.seed, opts.trees)?;
        let losses = boosted_losses(&boost, &x, &judge, &y);
        // Calibrated again on every validation row for the model written.
        platt(&mut boost, &x, &valid, &y);
        Some((boost, losses))
    };
    let choice = match (opts.model_type, &boosted) {
        (ModelType::Gbt, _) => ModelType::Gbt,
        (ModelType::Auto, Some((_, gbt))) if clearly_better(&logistic_losses, gbt) => {
            ModelType::Gbt
        }
        _ => ModelType::Logistic,
    };
    match (choice, &boosted) {
        (ModelType::Gbt, Some((boost, _))) => {
            model.version = model::BOOSTED_VERSION;
            model.boost = Some(boost.clone());
        }
        _ => {
            let fit = fit_logistic(&d, &train, &y, l2, None);
            model.intercept = fit.intercept;
            for (f, w) in model.features.iter_mut().zip(&fit.weights) {
                f.weight = *w;
            }
        }
    }
    // The held-out rows through the model's own evaluation: what the
    // score component will say of them.
    let p: Vec<f64> = test
        .iter()
        .map(|&i| {
            let s = &subjects[i];
            model
                .explain(|name| s.value(name).map(std::borrow::Cow::Borrowed))
                .0
        })
        .collect();
    let yt: Vec<bool> = test.iter().map(|&i| y[i]).collect();
    let m = metrics(&p, &yt);
    if let Some(path) = &opts.holdout_output {
        let mut out = String::from("line,probability\n");
        for (&i, p) in test.iter().zip(&p) {
            let _ = writeln!(out, "{},{p}", lines[i]);
        }
        std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    model.fitted = Some(Fitted {
        rows: train.len() as u64,
        positives: train.iter().filter(|&&i| y[i]).count() as u64,
        holdout_rows: test.len() as u64,
        l2,
        roc_auc: finite_or_zero(m.roc_auc),
        pr_auc: finite_or_zero(m.pr_auc),
        brier: m.brier,
        model_type: Some(
            match choice {
                ModelType::Gbt => "gbt",
                _ => "logistic",
            }
            .into(),
        ),
    });
    model.check().context("the fitted model is not usable")?;
    let text = toml::to_string(&model).context("cannot encode the model as TOML")?;
    if let Some(dir) = opts.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(
        &opts.output,
        format!(
            "# leadgate conversion model, from `leadgate calibrate` on {} (outcome `{}`).\n# Use it with `[score] model = \"...\"` or `leadgate score --model`.\n{text}",
            opts.input, opts.outcome
        ),
    )
    .with_context(|| format!("cannot write {}", opts.output.display()))?;
    Ok(Calibrated {
        model,
        metrics: m,
        plans,
        skipped_outcome,
        malformed,
        l2,
        validation: Validation {
            logistic: logistic_loss,
            gbt: boosted.as_ref().map(|(_, l)| mean(l)),
        },
    })
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

pub fn print_report(c: &Calibrated, opts: &Options) {
    let mut s = String::new();
    let _ = writeln!(s, "features:");
    for p in &c.plans {
        let _ = writeln!(s, "  {:<28} {}", p.name, p.what);
    }
    if c.skipped_outcome > 0 {
        let _ = writeln!(
            s,
            "{} records had no readable `{}` outcome and were left out",
            c.skipped_outcome, opts.outcome
        );
    }
    if c.malformed > 0 {
        let _ = writeln!(
            s,
            "{} records could not be read and were left out",
            c.malformed
        );
    }
    if let Some(f) = &c.model.fitted {
        match &c.model.boost {
            Some(b) => {
                let _ = writeln!(
                    s,
                    "gradient-boosted trees on {} rows ({} converted): {} trees of depth ≤ {MAX_DEPTH} over {} features, calibrated (Platt: slope {:.3}, offset {:.3})",
                    f.rows,
                    f.positives,
                    b.trees.len(),
                    c.model.features.len(),
                    b.slope,
                    b.offset
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "logistic regression on {} rows ({} converted), L2 penalty {} (chosen on a validation split), {} weights",
                    f.rows,
                    f.positives,
                    c.l2,
                    c.model.features.len()
                );
            }
        }
        let _ = writeln!(
            s,
            "validation log loss: logistic {}, gradient-boosted trees {}",
            if c.validation.logistic.is_finite() {
                format!("{:.4}", c.validation.logistic)
            } else {
                "-".into()
            },
            c.validation
                .gbt
                .map_or_else(|| "-".to_string(), |l| format!("{l:.4}"))
        );
    }
    let _ = write!(s, "{}", c.metrics);
    if c.model.boost.is_none() {
        let mut top: Vec<&Feature> = c.model.features.iter().collect();
        top.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
        let _ = writeln!(s, "strongest weights:");
        for f in top.iter().take(8) {
            let what = match (&f.kind, &f.level) {
                (Kind::Level, Some(l)) => format!("{} = {l}", f.name),
                (Kind::Missing, _) => format!("{} missing", f.name),
                (Kind::Other, _) => format!("{} another value", f.name),
                _ => format!("{} (per standard deviation)", f.name),
            };
            let _ = writeln!(s, "  {:+.3}  {what}", f.weight);
        }
    }
    let _ = writeln!(s, "model written to {}", opts.output.display());
    eprint!("{s}");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use leadgate_lead::{CustomField, Lead};
    use rand::Rng;

    /// Synthetic history from a known logistic model: a category, a count
    /// and a noise column.
    fn synthetic(n: usize, seed: u64) -> (Vec<Subject>, Vec<bool>, Vec<f64>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let sources = [
            ("referral", 1.5),
            ("ads", -0.5),
            ("organic", 0.3),
            ("event", 0.0),
        ];
        let mut subjects = Vec::new();
        let mut y = Vec::new();
        let mut truth = Vec::new();
        for _ in 0..n {
            let (source, effect) = sources[rng.random_range(0..sources.len())];
            let visits: f64 = (rng.random::<f64>() * 20.0).floor();
            let noise: f64 = rng.random::<f64>();
            let z = -1.2 + effect + 0.12 * visits;
            let p = 1.0 / (1.0 + (-z).exp());
            let mut custom = vec![
                CustomField {
                    key: "Lead Source".into(),
                    value: source.into(),
                },
                CustomField {
                    key: "noise".into(),
                    value: format!("{noise:.4}"),
                },
            ];
            if rng.random::<f64>() > 0.05 {
                custom.push(CustomField {
                    key: "Visits".into(),
                    value: visits.to_string(),
                });
            }
            subjects.push(Subject {
                lead: Lead {
                    custom,
                    ..Lead::default()
                },
                ..Subject::default()
            });
            y.push(rng.random::<f64>() < p);
            truth.push(p);
        }
        (subjects, y, truth)
    }

    #[test]
    fn calibration_recovers_a_known_generating_model() {
        let (subjects, y, truth) = synthetic(6000, 11);
        let (train, test) = split(&y, 0.25, 7);
        let (features, plans) = plan_features(&subjects, &train, &[], &[]);
        assert!(
            plans
                .iter()
                .any(|p| p.name == "Visits" && p.what.contains("missing indicator")),
            "{plans:?}"
        );
        let d = design(&subjects, &features, &[]);
        let l2 = choose_l2(&d, &train, &y, 7);
        let fit = fit_logistic(&d, &train, &y, l2, None);
        let yt: Vec<bool> = test.iter().map(|&i| y[i]).collect();
        let fitted: Vec<f64> = test.iter().map(|&i| fit.predict(&d.rows[i])).collect();
        let ideal: Vec<f64> = test.iter().map(|&i| truth[i]).collect();
        let (mf, mt) = (metrics(&fitted, &yt), metrics(&ideal, &yt));
        assert!(
            mf.roc_auc > mt.roc_auc - 0.02,
            "fitted {} vs true {}",
            mf.roc_auc,
            mt.roc_auc
        );
        assert!(
            mf.brier < mt.brier + 0.01,
            "fitted {} vs true {}",
            mf.brier,
            mt.brier
        );
        // The level effects come back in the right order.
        let w = |level: &str| {
            features
                .iter()
                .zip(&fit.weights)
                .find(|(f, _)| f.level.as_deref() == Some(level))
                .map(|(_, w)| *w)
                .unwrap()
        };
        assert!(w("referral") > w("organic") && w("organic") > w("ads"));
        // Calibrated: predicted and observed rates agree bin by bin.
        for (n, pred, obs) in &mf.bins {
            if *n > 100 {
                assert!((pred - obs).abs() < 0.08, "bin {pred} vs {obs} over {n}");
            }
        }
    }

    /// History where conversion needs two things at once (an interaction
    /// a linear model cannot draw): a demo booked *and* a large company.
    fn interaction(n: usize, seed: u64) -> (Vec<Subject>, Vec<bool>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut subjects = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let demo = rng.random::<bool>();
            let size: f64 = rng.random::<f64>() * 1000.0;
            let both = demo == (size > 500.0);
            let p = if both { 0.8 } else { 0.1 };
            subjects.push(Subject {
                lead: Lead {
                    custom: vec![
                        CustomField {
                            key: "Demo".into(),
                            value: if demo { "yes" } else { "no" }.into(),
                        },
                        CustomField {
                            key: "Employees".into(),
                            value: format!("{size:.0}"),
                        },
                    ],
                    ..Lead::default()
                },
                ..Subject::default()
            });
            y.push(rng.random::<f64>() < p);
        }
        (subjects, y)
    }

    fn boosted_model(subjects: &[Subject], y: &[bool], train: &[usize]) -> (Model, Vec<Vec<f64>>) {
        let (features, _) = plan_features(subjects, train, &[], &[]);
        let mut model = Model {
            version: model::BOOSTED_VERSION,
            outcome: "y".into(),
            intercept: 0.0,
            features,
            placeholders: Vec::new(),
            boost: None,
            fitted: None,
        };
        let x = tree_inputs(subjects, &model);
        let (inner, valid) = inner_split(train, y, 3);
        let boost = fit_boosted(&x, model.features.len(), &inner, &valid, y, 3, None).unwrap();
        model.boost = Some(boost);
        model.check().unwrap();
        (model, x)
    }

    #[test]
    fn boosted_trees_capture_an_interaction_logistic_regression_cannot() {
        let (subjects, y) = interaction(4000, 5);
        let (train, test) = split(&y, 0.25, 7);
        let yt: Vec<bool> = test.iter().map(|&i| y[i]).collect();
        let (features, _) = plan_features(&subjects, &train, &[], &[]);
        let d = design(&subjects, &features, &[]);
        let fit = fit_logistic(&d, &train, &y, choose_l2(&d, &train, &y, 7), None);
        let linear: Vec<f64> = test.iter().map(|&i| fit.predict(&d.rows[i])).collect();
        let (model, _) = boosted_model(&subjects, &y, &train);
        let trees: Vec<f64> = test
            .iter()
            .map(|&i| {
                model
                    .explain(|n| subjects[i].value(n).map(std::borrow::Cow::Borrowed))
                    .0
            })
            .collect();
        let (ml, mt) = (metrics(&linear, &yt), metrics(&trees, &yt));
        assert!(ml.roc_auc < 0.6, "logistic {}", ml.roc_auc);
        assert!(mt.roc_auc > 0.8, "trees {}", mt.roc_auc);
        assert!(mt.brier < ml.brier - 0.05, "{} vs {}", mt.brier, ml.brier);
        // Calibrated: predicted and observed rates agree where there are rows.
        for (n, pred, obs) in &mt.bins {
            if *n > 100 {
                assert!((pred - obs).abs() < 0.08, "bin {pred} vs {obs} over {n}");
            }
        }
    }

    #[test]
    fn exported_trees_evaluate_as_the_trainer_does_and_contributions_add_up() {
        use forust_ml::{GradientBooster, Matrix};
        let (subjects, y) = interaction(1500, 9);
        let train: Vec<usize> = (0..1500).collect();
        let (model, x) = boosted_model(&subjects, &y, &train);
        let boost = model.boost.as_ref().unwrap();
        // The same trees, grown again by forust on the same rows: its own
        // prediction equals the exported trees' margin.
        let (inner, _) = inner_split(&train, &y, 3);
        let dim = model.features.len();
        let mut data = vec![0.0; inner.len() * dim];
        for (r, &i) in inner.iter().enumerate() {
            for (j, v) in x[i].iter().enumerate() {
                data[j * inner.len() + r] = *v;
            }
        }
        let yi: Vec<f64> = inner.iter().map(|&i| f64::from(u8::from(y[i]))).collect();
        let mut booster = GradientBooster::default()
            .set_iterations(boost.trees.len())
            .set_learning_rate(LEARNING_RATE)
            .set_max_depth(MAX_DEPTH)
            .set_l2(1.0)
            .set_min_leaf_weight(1.0)
            .set_parallel(false)
            .set_seed(3);
        booster
            .fit_unweighted(&Matrix::new(&data, inner.len(), dim), &yi, None)
            .unwrap();
        let all: Vec<f64> = (0..dim)
            .flat_map(|j| x.iter().map(move |row| row[j]))
            .collect();
        let theirs = booster.predict(&Matrix::new(&all, x.len(), dim), false);
        for (row, t) in x.iter().zip(&theirs) {
            let mut parts = vec![0.0; dim];
            let ours = boost.margin(row, Some(&mut parts));
            assert!((ours - t).abs() < 1e-9, "{ours} vs {t}");
            // The compact layout and the trees as written agree exactly.
            let mut written = vec![0.0; dim];
            assert_eq!(boost.margin_as_written(row, Some(&mut written)), ours);
            assert_eq!(written, parts);
            // Saabas: the base, the roots and the contributions make the margin.
            let roots: f64 = boost.trees.iter().map(|t| t.nodes[0].value).sum();
            let sum: f64 = parts.iter().sum();
            assert!((boost.base + roots + sum - ours).abs() < 1e-9);
        }
        assert!(
            boost.flat.get().is_some_and(Option::is_some),
            "forust's trees fit the compact layout"
        );
    }

    #[test]
    fn placeholders_are_missing_and_rare_categories_are_pooled() {
        let sources = ["Google", "google", "Direct", "Select", "Referral"];
        let subjects: Vec<Subject> = (0..600)
            .map(|i| {
                let source = if i % 50 == 0 {
                    format!("rare-{i}")
                } else {
                    sources[i % sources.len()].to_string()
                };
                Subject {
                    lead: Lead {
                        custom: vec![CustomField {
                            key: "Lead Source".into(),
                            value: source,
                        }],
                        ..Lead::default()
                    },
                    ..Subject::default()
                }
            })
            .collect();
        let train: Vec<usize> = (0..600).collect();
        let placeholders: Vec<String> = PLACEHOLDERS.iter().map(|s| (*s).to_string()).collect();
        let (features, plans) = plan_features(&subjects, &train, &[], &placeholders);
        let levels: Vec<String> = features
            .iter()
            .filter(|f| f.kind == Kind::Level)
            .filter_map(|f| f.level.clone())
            .map(|l| l.to_lowercase())
            .collect();
        // Google and google are one level; Select is not a level but missing.
        assert_eq!(levels.len(), 3, "{levels:?}");
        assert!(!levels.contains(&"select".to_string()), "{levels:?}");
        assert!(
            features.iter().any(|f| f.kind == Kind::Missing),
            "{plans:?}"
        );
        let other = features.iter().find(|f| f.kind == Kind::Other).unwrap();
        assert_eq!(other.encode(Some("rare-50")), 1.0);
        assert_eq!(other.encode(Some("GOOGLE")), 0.0);
        assert_eq!(other.encode(None), 0.0);
        assert!(plans.iter().any(|p| p.what.contains("pooled")), "{plans:?}");
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        let p = [0.1, 0.4, 0.35, 0.8];
        let y = [false, false, true, true];
        let m = metrics(&p, &y);
        assert!((m.roc_auc - 0.75).abs() < 1e-12);
        // Ranked: 0.8 (+), 0.4 (−), 0.35 (+), 0.1 (−): AP = ½·1 + ½·⅔.
        assert!((m.pr_auc - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        let brier = (0.01 + 0.16 + 0.4225 + 0.04) / 4.0;
        assert!((m.brier - brier).abs() < 1e-12);
        // Ties count half.
        let m = metrics(&[0.5, 0.5], &[true, false]);
        assert!((m.roc_auc - 0.5).abs() < 1e-12);
    }

    #[test]
    fn identifiers_and_free_text_are_not_features() {
        let subjects: Vec<Subject> = (0..500)
            .map(|i| Subject {
                lead: Lead {
                    custom: vec![
                        CustomField {
                            key: "Lead Number".into(),
                            value: (660_000 + i).to_string(),
                        },
                        CustomField {
                            key: "Notes".into(),
                            value: format!("called on day {i}"),
                        },
                        CustomField {
                            key: "Plan".into(),
                            value: ["free", "pro"][i % 2].into(),
                        },
                    ],
                    ..Lead::default()
                },
                ..Subject::default()
            })
            .collect();
        let train: Vec<usize> = (0..500).collect();
        let (features, plans) = plan_features(&subjects, &train, &[], &[]);
        assert!(features.iter().all(|f| f.name == "Plan"), "{plans:?}");
        assert!(
            plans
                .iter()
                .any(|p| p.name == "Lead Number" && p.what.contains("identifier"))
        );
        assert!(
            plans
                .iter()
                .any(|p| p.name == "Notes" && p.what.contains("free text"))
        );
    }

    #[test]
    fn outcomes_read_as_exports_write_them() {
        for (s, v) in [
            ("1", true),
            ("Yes", true),
            ("Closed Won", true),
            ("0", false),
            ("no", false),
            ("2", true),
        ] {
            assert_eq!(outcome(s), Some(v), "{s}");
        }
        assert_eq!(outcome("maybe"), None);
        assert_eq!(outcome(""), None);
    }
}
