//! `leadgate dedupe-train`: estimates the bundled dedupe component's
//! Fellegi–Sunter model from the tenant's own data.
//!
//! - With labelled records (`--input FILE --truth-column COL`), reviewers'
//!   decisions (`--reviews`), or both: m and u are counted per comparison
//!   level among the compared (blocked) pairs, the prior is the share of
//!   duplicates among them, and Platt scaling calibrates the weight so a
//!   probability of 0.9 means about nine in ten.
//! - Without labels (`--input FILE` alone): the model `leadgate dedupe`
//!   estimates on a file ([`crate::estimate`]: EM over the candidate pairs
//!   with u from random pairs, and term frequencies).
//! - Without labels, on the store (`--from-store`): the same estimation on
//!   the tenant's keyed leads, blocked on the store path's passes as `run`
//!   and `serve` block, with what the tenant's thresholds would do under
//!   the configured and the estimated model.
//!
//! The levels come from the component's own evidence, so the model fits
//! whatever the component compares. The result is the JSON the component
//! takes as its `model` setting (`[dedupe] model = "model.json"`).

use anyhow::{Result, bail};
use leadgate_models::dedupe::{Calibration, Model, Mu, sigmoid};
use leadgate_store::prelude::*;
use std::collections::BTreeMap;

/// A compared pair: its comparison levels and, if known, whether it is a
/// duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub levels: Vec<(String, String)>,
    pub label: Option<bool>,
}

/// The least m of a level that speaks against a match: however rarely the
/// training pairs show a duplicate disagreeing on a field, real people keep
/// two phones, change jobs and mistype, so one disagreement must not veto a
/// match on its own.
const MIN_M: f64 = 0.03;

/// Laplace-style smoothing added to every level's count.
///
/// A missing value is no evidence either way (its weight stays 0): in
/// labelled samples, whether a field is empty says more about how the sample
/// was made than about who the records are.
const SMOOTHING: f64 = 0.5;

fn weight_sum(model: &Model, s: &Sample) -> f64 {
    s.levels.iter().map(|(f, l)| model.weight(f, l)).sum()
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// m/u per level from (weighted) counts: `w_match[i]` is how much sample i
/// counts as a duplicate (1/0 with labels, the posterior in EM).
fn estimate(samples: &[Sample], w_match: &[f64], trained_on: String) -> Model {
    let mut counts: BTreeMap<String, BTreeMap<String, (f64, f64)>> = BTreeMap::new();
    let (mut n_m, mut n_u) = (0.0, 0.0);
    for (s, g) in samples.iter().zip(w_match) {
        n_m += g;
        n_u += 1.0 - g;
        for (field, level) in &s.levels {
            let c = counts
                .entry(field.clone())
                .or_default()
                .entry(level.clone())
                .or_default();
            c.0 += g;
            c.1 += 1.0 - g;
        }
    }
    let fields = counts
        .into_iter()
        .map(|(field, levels)| {
            let k = levels.len() as f64;
            let levels = levels
                .into_iter()
                .filter(|(level, _)| level != "missing")
                .map(|(level, (cm, cu))| {
                    let mut mu = Mu {
                        m: ((cm + SMOOTHING) / (n_m + SMOOTHING * k)).clamp(1e-4, 1.0),
                        u: ((cu + SMOOTHING) / (n_u + SMOOTHING * k)).clamp(1e-4, 1.0),
                    };
                    // Evidence against a match is never stronger than
                    // MIN_M allows (the floor never turns it into evidence
                    // for one).
                    if mu.m < mu.u {
                        mu.m = mu.m.max(MIN_M.min(mu.u));
                    }
                    // Sense, whatever the sample: agreement never counts
                    // against a match, disagreement never for it.
                    if (level == "exact" && mu.m < mu.u) || (level == "different" && mu.m > mu.u) {
                        mu.u = mu.m;
                    }
                    (level, mu)
                })
                .collect();
            (field, levels)
        })
        .collect();
    let total = (n_m + n_u).max(1.0);
    Model {
        version: 1,
        prior: (n_m / total).clamp(1e-4, 1.0 - 1e-4),
        calibration: Calibration::default(),
        fields,
        trained_on,
        term_frequencies: BTreeMap::new(),
    }
}

/// Platt scaling: a, b minimising the log loss of σ(a·w + b) over labelled
/// samples, with Platt's smoothed targets ((N₊+1)/(N₊+2) and 1/(N₋+2)) so
/// that nearly separable data does not drive the slope to infinity; damped
/// Newton steps on the two parameters.
fn calibrate(model: &Model, samples: &[(f64, bool)], slope_only: bool) -> Calibration {
    let prior = logit(model.prior);
    let positives = samples.iter().filter(|(_, y)| *y).count() as f64;
    let negatives = samples.len() as f64 - positives;
    let (hi, lo) = (
        (positives + 1.0) / (positives + 2.0),
        1.0 / (negatives + 2.0),
    );
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..200 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (sum, y) in samples {
            let w = prior + sum;
            let p = sigmoid(a * w + b);
            let d = p - if *y { hi } else { lo };
            let h = (p * (1.0 - p)).max(1e-12);
            ga += d * w;
            gb += d;
            haa += h * w * w;
            hab += h * w;
            hbb += h;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let (da, db) = if slope_only {
            ((ga / haa).clamp(-0.5, 0.5), 0.0)
        } else {
            (
                ((hbb * ga - hab * gb) / det).clamp(-0.5, 0.5),
                ((haa * gb - hab * ga) / det).clamp(-2.0, 2.0),
            )
        };
        a -= da;
        b -= db;
        if da.abs() < 1e-9 && db.abs() < 1e-9 {
            break;
        }
    }
    if a.is_finite() && b.is_finite() && a > 0.0 {
        Calibration { a, b }
    } else {
        Calibration::default()
    }
}

/// Levels the samples never showed (an external id, say, when the data
/// has none) keep the values of `base`.
fn fill_from(model: &mut Model, base: &Model) {
    for (field, levels) in &base.fields {
        let mine = model.fields.entry(field.clone()).or_default();
        for (level, mu) in levels {
            if level != "missing" {
                mine.entry(level.clone()).or_insert(*mu);
            }
        }
    }
}

/// Fits a model from labelled samples (unlabelled ones are ignored);
/// levels the samples lack keep `base`'s values.
///
/// With `neutral_prior`, the prior is set to 0.5 and only the slope is
/// calibrated: the share of duplicates among compared pairs belongs to the
/// data set (its duplicate rate, its blocking), so a model meant for other
/// data (the bundled default) should not carry it. Evidence alone then
/// decides, and a pair with no evidence either way scores 0.5.
pub fn supervised(
    samples: &[Sample],
    base: &Model,
    source: &str,
    neutral_prior: bool,
) -> Result<Model> {
    let labelled: Vec<Sample> = samples
        .iter()
        .filter(|s| s.label.is_some())
        .cloned()
        .collect();
    let dup = labelled.iter().filter(|s| s.label == Some(true)).count();
    if dup == 0 || dup == labelled.len() {
        bail!(
            "training needs compared pairs of both kinds: {} pairs, {dup} of them duplicates",
            labelled.len()
        );
    }
    let g: Vec<f64> = labelled
        .iter()
        .map(|s| f64::from(u8::from(s.label == Some(true))))
        .collect();
    let mut model = estimate(
        &labelled,
        &g,
        format!(
            "{} compared pairs ({dup} duplicates) from {source}",
            labelled.len()
        ),
    );
    fill_from(&mut model, base);
    if neutral_prior {
        model.prior = 0.5;
    }
    let sums: Vec<(f64, bool)> = labelled
        .iter()
        .map(|s| (weight_sum(&model, s), s.label == Some(true)))
        .collect();
    model.calibration = calibrate(&model, &sums, neutral_prior);
    Ok(model)
}

/// Thresholds the labelled pairs suggest: review where pair F1 peaks,
/// auto-merge where pair precision first reaches 0.99.
pub fn suggest(model: &Model, samples: &[Sample]) -> Option<(f64, f64)> {
    let scored: Vec<(f64, bool)> = samples
        .iter()
        .filter_map(|s| Some((model.probability(weight_sum(model, s)), s.label?)))
        .collect();
    let total = scored.iter().filter(|(_, y)| *y).count() as f64;
    if total == 0.0 {
        return None;
    }
    let grid: Vec<f64> = (0..200).map(|i| 0.005 * f64::from(i)).collect();
    let stats = |t: f64| {
        let (tp, fp) = scored.iter().fold((0.0, 0.0), |(tp, fp), (p, y)| {
            if *p >= t {
                if *y { (tp + 1.0, fp) } else { (tp, fp + 1.0) }
            } else {
                (tp, fp)
            }
        });
        let precision = if tp + fp == 0.0 { 1.0 } else { tp / (tp + fp) };
        let recall = tp / total;
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        (precision, f1)
    };
    let review = grid
        .iter()
        .copied()
        .max_by(|a, b| stats(*a).1.total_cmp(&stats(*b).1))?;
    let auto_merge = grid
        .iter()
        .copied()
        .find(|t| *t >= review && stats(*t).0 >= 0.99)
        .unwrap_or_else(|| review.max(0.99));
    Some((review, auto_merge))
}

/// What `leadgate dedupe-train` learns from.
pub struct Sources {
    /// A file: estimated on it, or learnt from its labels.
    pub input: Option<crate::dedupe::Input>,
    /// Reviewers' decisions in the store.
    pub reviews: bool,
    /// The tenant's keyed leads in the store, estimated on without labels.
    pub from_store: bool,
}

/// `leadgate dedupe-train`.
pub fn command(
    config: &crate::config::Config,
    db: &str,
    sources: Sources,
    neutral_prior: bool,
    output: &std::path::Path,
) -> Result<()> {
    use anyhow::Context;
    let Sources {
        input,
        reviews,
        from_store,
    } = sources;
    if from_store {
        if input.is_some() || reviews {
            bail!(
                "--from-store estimates on the store's leads alone: leave out --input and --reviews"
            );
        }
        return from_the_store(config, db, output);
    }
    let mut samples: Vec<Sample> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    if let Some(input) = &input
        && !reviews
        && input.truth_column.is_none()
    {
        // No labels: the model estimated on the file (EM, random-pair u,
        // term frequencies), as `leadgate dedupe` estimates it.
        let prepared = crate::dedupe::prepare(config, input, None)?;
        let settings: serde_json::Value = serde_json::from_str(&prepared.settings)?;
        let Some(model) = settings
            .get("model")
            .filter(|_| matches!(prepared.estimate, Some(crate::dedupe::Estimated::Done(_))))
        else {
            bail!(
                "no model could be estimated on {}: {}",
                input.path,
                crate::dedupe::describe_model(&prepared)
            );
        };
        let model: Model = serde_json::from_value(model.clone())?;
        return write_model(&model, output, None);
    }
    if let Some(input) = &input {
        let prepared = crate::dedupe::prepare(config, input, None)?;
        let all: Vec<usize> = (0..prepared.pairs.len()).collect();
        let evidence = crate::dedupe::explain(config, &prepared, &all)?;
        for (i, ev) in evidence.into_iter().enumerate() {
            let (a, b) = prepared.pair(i);
            let label = match (&prepared.truth[a as usize], &prepared.truth[b as usize]) {
                (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => Some(x == y),
                _ => None,
            };
            samples.push(Sample {
                levels: ev.into_iter().map(|e| (e.field, e.level)).collect(),
                label,
            });
        }
        sources.push(input.path.clone());
    }
    if reviews {
        let store = leadgate_store::Store::open(db)?;
        let mut n = 0;
        for item in store.decided_reviews(&config.tenant)? {
            let evidence: Vec<leadgate_lead::Evidence> =
                serde_json::from_str(&item.evidence).unwrap_or_default();
            let label = match item.decision.as_deref() {
                Some("merge") => Some(true),
                Some("distinct") => Some(false),
                _ => None,
            };
            if evidence.is_empty() || label.is_none() {
                continue;
            }
            n += 1;
            samples.push(Sample {
                levels: evidence.into_iter().map(|e| (e.field, e.level)).collect(),
                label,
            });
        }
        sources.push(format!("{n} reviewer decisions in {db}"));
    }
    if sources.is_empty() {
        bail!(
            "nothing to learn from: give --input FILE (with --truth-column for labels) and/or --reviews, or --from-store"
        );
    }
    let source = sources.join(" and ");
    let labelled = samples.iter().any(|s| s.label.is_some());
    let settings: serde_json::Value = serde_json::from_str(&config.dedupe_settings()?)?;
    let current: Model = match settings.get("model") {
        Some(m) => serde_json::from_value(m.clone()).context("the configured dedupe model")?,
        None => Model::bundled().map_err(anyhow::Error::msg)?,
    };
    if !labelled {
        bail!("{source} gave no labelled pairs to learn from");
    }
    let model = supervised(&samples, &current, &source, neutral_prior)?;
    write_model(&model, output, suggest(&model, &samples))
}

/// Stored leads read per query.
const STORE_CHUNK: usize = 10_000;

/// `dedupe-train --from-store`: the model estimated, without labels, on the
/// tenant's keyed leads — the leads new ones are matched against — blocked
/// as `run` and `serve` block.
fn from_the_store(
    config: &crate::config::Config,
    db: &str,
    output: &std::path::Path,
) -> Result<()> {
    use anyhow::Context;
    let tenant = config.tenant.as_str();
    let store = leadgate_store::Store::open(db)?;
    let mut leads: Vec<leadgate_lead::Lead> = Vec::new();
    let mut unreadable: Vec<String> = Vec::new();
    let bar = crate::dedupe::progress(false, None, "reading the store");
    let visited = store
        .keyed_leads(tenant, STORE_CHUNK, |chunk| {
            for stored in chunk {
                match serde_json::from_str(&stored.normalized) {
                    Ok(lead) => leads.push(lead),
                    Err(e) => unreadable.push(format!("{}: {e}", stored.id)),
                }
            }
            bar.inc(chunk.len() as u64);
            Ok::<_, std::convert::Infallible>(())
        })
        .with_context(|| format!("cannot read the leads of tenant {tenant} in {db}"))?;
    bar.finish_and_clear();
    let visited = match visited {
        Ok(n) => n,
        Err(never) => match never {},
    };
    if let Some(first) = unreadable.first() {
        eprintln!(
            "warning: {} stored leads could not be read and were left out (first: lead {first})",
            unreadable.len()
        );
    }
    if leads.is_empty() {
        bail!(
            "the store at {db} holds no keyed leads of tenant {tenant} ({visited} read): load leads with `leadgate run` or `leadgate import` first, or estimate on a file with --input"
        );
    }
    let source = format!("{} stored leads of tenant {tenant}", leads.len());
    let e = crate::dedupe::estimate_on_leads(config, &leads, &source, false)?;
    eprintln!(
        "{} stored leads, {} blocking keys, {} candidate pairs ({:.1} s keying, {:.1} s estimating)",
        leads.len(),
        e.stats.keys,
        e.stats
            .passes
            .iter()
            .filter(|p| !p.dropped)
            .map(|p| p.pairs)
            .sum::<u64>(),
        e.stats.read.as_secs_f64(),
        e.stats.estimate.as_secs_f64()
    );
    let mut passes = String::new();
    crate::dedupe::write_passes(&mut passes, &e.stats.passes, leads.len())?;
    eprint!("{passes}");
    let (Some(settings), crate::dedupe::Estimated::Done(_)) = (&e.settings, &e.estimate) else {
        bail!(
            "no model could be estimated on the store's leads: {}",
            crate::dedupe::describe_estimate(&e.estimate)
        );
    };
    eprintln!("  {}", crate::dedupe::describe_estimate(&e.estimate));
    if let Some([before, after]) = e.decisions {
        let d = &config.dedupe;
        eprintln!(
            "  at the tenant's thresholds (review {:.2}, auto_merge {:.2}), {} sampled candidate pairs:",
            d.review, d.auto_merge, after.sampled
        );
        eprintln!(
            "    {:<18} {:>8} {:>11}  expected auto-merge precision",
            "", "review", "auto-merge"
        );
        for (name, x) in [("configured model", before), ("estimated model", after)] {
            eprintln!(
                "    {name:<18} {:>8} {:>11}  {}",
                x.review,
                x.auto_merge,
                x.auto_merge_precision
                    .map_or_else(|| "-".to_string(), |p| format!("{p:.4}"))
            );
        }
    }
    let settings: serde_json::Value = serde_json::from_str(settings)?;
    let model: Model = serde_json::from_value(
        settings
            .get("model")
            .cloned()
            .context("the estimated settings hold no model")?,
    )?;
    write_model(&model, output, None)
}

/// Writes the model and says how to use it.
fn write_model(
    model: &Model,
    output: &std::path::Path,
    thresholds: Option<(f64, f64)>,
) -> Result<()> {
    use anyhow::Context;
    let json = serde_json::to_string_pretty(model)?;
    std::fs::write(output, json + "\n")
        .with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!("dedupe model: {}", model.trained_on);
    eprintln!(
        "  prior {:.4}, calibration a={:.3} b={:.3}",
        model.prior, model.calibration.a, model.calibration.b
    );
    if let Some((review, auto_merge)) = thresholds {
        eprintln!(
            "  suggested thresholds on these pairs: [dedupe] review = {review:.3}, auto_merge = {auto_merge:.3}"
        );
    }
    eprintln!(
        "wrote {}: use it with `[dedupe] model = \"{}\"` in leadgate.toml",
        output.display(),
        output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(email: &str, name: &str, label: bool) -> Sample {
        Sample {
            levels: vec![("email".into(), email.into()), ("name".into(), name.into())],
            label: Some(label),
        }
    }

    fn base() -> Model {
        Model::bundled().unwrap()
    }

    #[test]
    fn unseen_levels_keep_the_base_and_missing_is_neutral() {
        let mut d = data();
        d.push(Sample {
            levels: vec![("email".into(), "missing".into())],
            label: Some(true),
        });
        let m = supervised(&d, &base(), "test", false).unwrap();
        assert_eq!(m.weight("email", "missing"), 0.0);
        assert_eq!(
            m.fields["external_id"]["exact"],
            base().fields["external_id"]["exact"]
        );
    }

    fn data() -> Vec<Sample> {
        let mut v = Vec::new();
        for i in 0..200 {
            v.push(sample(
                if i % 10 == 0 { "different" } else { "exact" },
                "exact",
                true,
            ));
            v.push(sample(
                "different",
                if i % 5 == 0 { "exact" } else { "different" },
                false,
            ));
            v.push(sample("different", "different", false));
        }
        v
    }

    #[test]
    fn supervised_counts_make_agreement_positive_and_calibrate() {
        let m = supervised(&data(), &base(), "test", false).unwrap();
        assert!(m.weight("email", "exact") > 2.0);
        assert!(m.weight("email", "different") < 0.0);
        assert!((m.prior - 1.0 / 3.0).abs() < 1e-9);
        // Calibrated: pairs with both fields agreeing are (nearly) all duplicates.
        let both = sample("exact", "exact", true);
        assert!(m.probability(weight_sum(&m, &both)) > 0.95);
        let none = sample("different", "different", false);
        assert!(m.probability(weight_sum(&m, &none)) < 0.05);
        let (review, auto) = suggest(&m, &data()).unwrap();
        assert!(review <= auto && auto < 1.0, "{review} {auto}");
    }

    #[test]
    fn one_kind_only_is_refused_with_the_counts() {
        let only: Vec<Sample> = (0..5).map(|_| sample("exact", "exact", true)).collect();
        let e = supervised(&only, &base(), "test", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both kinds") && e.contains("5"), "{e}");
    }
}
