//! `leadgate report`: how scores relate to what happened — over a file of
//! records with their eventual outcome, scored as `leadgate score` would.
//!
//! - `scoring_calibration_signal`: each lead's score (and probability)
//!   against its outcome, with the conversion rate by grade and score band,
//!   ROC AUC of the total, and the reliability of the probability.
//! - `icp_drift_signal`: segments (a value of any categorical column or
//!   ICP field) whose conversion rate is far from what their fit predicts —
//!   an industry converting well above the ICP's expectation, a target
//!   country converting below it.

use crate::batch;
use crate::calibrate;
use crate::config::Config;
use anyhow::{Context, Result, bail};
use leadgate_lead::score::{Scored, Subject};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

pub struct Options {
    pub input: String,
    pub format: Option<leadgate_ingest::Format>,
    pub map: Vec<String>,
    pub outcome: String,
    pub model: Option<std::path::PathBuf>,
    /// The signals as NDJSON.
    pub signals: Option<String>,
    /// Smallest segment reported.
    pub min_segment: usize,
}

/// One segment whose conversion differs from what its fit predicts.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub field: String,
    pub value: String,
    pub leads: usize,
    pub converted: usize,
    pub observed_rate: f64,
    /// What the fit scores of its leads predict.
    pub expected_rate: f64,
    /// (observed − expected) / standard error.
    pub z: f64,
    pub mean_fit: f64,
    /// `above` or `below` the ICP's expectation.
    pub direction: &'static str,
}

pub struct Report {
    pub text: String,
}

/// Conversion rate by fit band (tenths), smoothed toward the overall rate:
/// what the ICP "predicts" for a lead of that fit.
fn fit_curve(fits: &[f64], y: &[bool]) -> [f64; 11] {
    let overall = y.iter().filter(|&&v| v).count() as f64 / y.len().max(1) as f64;
    let mut sums = [(0.0f64, 0.0f64); 11];
    for (f, &v) in fits.iter().zip(y) {
        let b = ((f / 10.0).floor() as usize).min(10);
        sums[b].0 += 1.0;
        sums[b].1 += f64::from(u8::from(v));
    }
    // Twenty pseudo-leads at the overall rate keep sparse bands sane.
    sums.map(|(n, k)| (k + 20.0 * overall) / (n + 20.0))
}

pub fn run(config: &Config, opts: &Options) -> Result<Report> {
    let runtime = leadgate_runtime::Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let calibrate::History {
        lines,
        subjects,
        outcomes: y,
        skipped,
        ..
    } = calibrate::read_history(
        config,
        &runtime,
        &batch::Input {
            path: &opts.input,
            format: opts.format,
            map: &opts.map,
        },
        &opts.outcome,
    )?;
    if subjects.is_empty() {
        bail!(
            "{} has no record with a readable `{}` outcome",
            opts.input,
            opts.outcome
        );
    }
    let stage = crate::score::Stage::load(config, &runtime, opts.model.as_deref())?;
    let mut scoring = stage.scoring(config)?;
    let refs: Vec<&leadgate_lead::score::Subject> = subjects.iter().collect();
    let now = crate::clock::now_ms();
    let scores = scoring.score(&refs, now);
    let mut kept = Vec::new();
    for (i, s) in scores.into_iter().enumerate() {
        if let Ok(s) = s {
            kept.push((i, s));
        }
    }
    let ys: Vec<bool> = kept.iter().map(|(i, _)| y[*i]).collect();
    let mut text = String::new();
    let mut signals: Vec<serde_json::Value> = Vec::new();

    calibration_signal(&mut text, &mut signals, &kept, &ys, &lines, skipped);

    // icp_drift_signal
    let fits: Vec<f64> = kept.iter().map(|(_, s)| s.fit).collect();
    let curve = fit_curve(&fits, &ys);
    let expected: Vec<f64> = fits
        .iter()
        .map(|f| curve[((f / 10.0).floor() as usize).min(10)])
        .collect();
    let mut fields: Vec<String> = stage_fields(config);
    for s in &subjects {
        for c in &s.lead.custom {
            if !fields.iter().any(|f| f.eq_ignore_ascii_case(&c.key)) {
                fields.push(c.key.clone());
            }
        }
    }
    let mut drifts = drifts(
        &fields,
        &Segments {
            subjects: &subjects,
            kept: &kept,
            ys: &ys,
            fits: &fits,
            expected: &expected,
        },
        opts.min_segment,
    );
    drifts.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
    let _ = writeln!(
        text,
        "icp_drift_signal: {} segment{} convert far from what their ICP fit predicts (|z| ≥ 3, ≥ 5 points, ≥ {} leads)",
        drifts.len(),
        if drifts.len() == 1 { "" } else { "s" },
        opts.min_segment
    );
    for d in drifts.iter().take(20) {
        let _ = writeln!(
            text,
            "  {:<40} {:>6} leads  converts {:>5.1}% vs {:>5.1}% predicted (mean fit {:.0}) → {} the ICP, z {:+.1}",
            format!("{} = {}", d.field, d.value),
            d.leads,
            100.0 * d.observed_rate,
            100.0 * d.expected_rate,
            d.mean_fit,
            d.direction,
            d.z
        );
    }
    for d in &drifts {
        let mut v = serde_json::to_value(d).context("cannot encode a drift signal")?;
        if let Some(o) = v.as_object_mut() {
            o.insert("signal".into(), "icp_drift_signal".into());
        }
        signals.push(v);
    }
    if let Some(path) = &opts.signals {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?,
        );
        for s in &signals {
            writeln!(f, "{s}").with_context(|| format!("cannot write {path}"))?;
        }
        f.flush().with_context(|| format!("cannot write {path}"))?;
        let _ = writeln!(text, "signals written to {path}");
    }
    Ok(Report { text })
}

/// `scoring_calibration_signal`: how well the total ranks conversions,
/// conversion by grade and by band of the total, and the model's own
/// probability when every lead has one.
fn calibration_signal(
    text: &mut String,
    signals: &mut Vec<serde_json::Value>,
    kept: &[(usize, Scored)],
    ys: &[bool],
    lines: &[u64],
    skipped: usize,
) {
    let totals: Vec<f64> = kept.iter().map(|(_, s)| f64::from(s.total)).collect();
    let m = calibrate::metrics(&totals, ys);
    let _ = writeln!(
        text,
        "scoring_calibration_signal: {} leads, {} converted",
        m.rows, m.positives
    );
    if skipped > 0 {
        let _ = writeln!(
            text,
            "  ({skipped} records without a readable outcome left out)"
        );
    }
    let _ = writeln!(text, "  ROC AUC of the total        {:.4}", m.roc_auc);
    let mut by_grade: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut by_band: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for ((_, s), &v) in kept.iter().zip(ys) {
        let g = by_grade.entry(s.grade.clone()).or_default();
        g.0 += 1;
        g.1 += usize::from(v);
        let b = by_band
            .entry((usize::from(s.total) / 10).min(9))
            .or_default();
        b.0 += 1;
        b.1 += usize::from(v);
    }
    let _ = writeln!(text, "  grade     leads   converted");
    for (g, (n, k)) in &by_grade {
        let _ = writeln!(
            text,
            "  {g:<5} {n:>9}   {:>8.1}%",
            100.0 * *k as f64 / *n as f64
        );
    }
    let _ = writeln!(text, "  total     leads   converted");
    for (b, (n, k)) in &by_band {
        let _ = writeln!(
            text,
            "  {:>2}–{:<3} {n:>8}   {:>8.1}%",
            b * 10,
            b * 10 + 9,
            100.0 * *k as f64 / *n as f64
        );
    }
    let probs: Vec<f64> = kept.iter().filter_map(|(_, s)| s.probability).collect();
    if probs.len() == kept.len() && !probs.is_empty() {
        let pm = calibrate::metrics(&probs, ys);
        let _ = writeln!(text, "  the model's probability:");
        for line in pm.to_string().lines().skip(1) {
            let _ = writeln!(text, "    {line}");
        }
    }
    for ((i, s), &v) in kept.iter().zip(ys) {
        signals.push(serde_json::json!({
            "signal": "scoring_calibration_signal",
            "line": lines.get(*i).copied(),
            "total": s.total,
            "grade": s.grade,
            "probability": s.probability,
            "fit": s.fit,
            "converted": v,
        }));
    }
}

/// The history scored, for the segments of `icp_drift_signal`: the kept
/// leads (index into `subjects`, score), and per kept lead whether it
/// converted, its fit, and the conversion its fit predicts.
struct Segments<'a> {
    subjects: &'a [Subject],
    kept: &'a [(usize, Scored)],
    ys: &'a [bool],
    fits: &'a [f64],
    expected: &'a [f64],
}

/// `icp_drift_signal`: segments (a field's value, at least `min_segment`
/// leads) that convert far from what their fit predicts (|z| ≥ 3 and at
/// least 5 points apart). Fields with over 100 values, or mostly numbers,
/// are not segments.
fn drifts(fields: &[String], seg: &Segments<'_>, min_segment: usize) -> Vec<Drift> {
    let mut drifts = Vec::new();
    for field in fields {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (k, (i, _)) in seg.kept.iter().enumerate() {
            if let Some(v) = seg.subjects[*i].value(field) {
                groups.entry(v.trim().to_lowercase()).or_default().push(k);
            }
        }
        if groups.len() > 100 || groups.len() < 2 {
            continue;
        }
        // Segments are categories: numbers are the model's business.
        let numeric = groups
            .keys()
            .filter(|v| leadgate_models::score::parse_number(v).is_some())
            .count();
        if numeric * 10 >= groups.len() * 9 {
            continue;
        }
        for (value, members) in groups {
            let n = members.len();
            if n < min_segment {
                continue;
            }
            let conv = members.iter().filter(|&&k| seg.ys[k]).count();
            let obs = conv as f64 / n as f64;
            let exp = members.iter().map(|&k| seg.expected[k]).sum::<f64>() / n as f64;
            let se = (exp * (1.0 - exp) / n as f64).sqrt().max(1e-9);
            let z = (obs - exp) / se;
            if z.abs() >= 3.0 && (obs - exp).abs() >= 0.05 {
                drifts.push(Drift {
                    field: field.clone(),
                    value,
                    leads: n,
                    converted: conv,
                    observed_rate: obs,
                    expected_rate: exp,
                    z,
                    mean_fit: members.iter().map(|&k| seg.fits[k]).sum::<f64>() / n as f64,
                    direction: if obs > exp { "above" } else { "below" },
                });
            }
        }
    }
    drifts
}

/// The fields the tenant's ICP looks at.
fn stage_fields(config: &Config) -> Vec<String> {
    let json = serde_json::to_string(&config.score.settings).unwrap_or_else(|_| "{}".into());
    match leadgate_score::Settings::from_json(&json) {
        Ok(r) => {
            let mut v: Vec<String> = r.rules.iter().map(|r| r.field.clone()).collect();
            v.dedup();
            v
        }
        Err(_) => Vec::new(),
    }
}
