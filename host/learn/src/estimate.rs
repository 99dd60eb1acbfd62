//! Estimating the dedupe model on the data at hand, without labels, the way
//! Splink does: `leadgate dedupe` and `leadgate eval dedupe` run it on the
//! file before comparing, unless a model is pinned with `--model`.
//!
//! - **u** (how often a level turns up between two *different* people) is
//!   counted over random pairs of the file's records: nearly all random
//!   pairs are different people, so no labels are needed, and the counts
//!   are not skewed by blocking (pairs that share a blocking key agree on
//!   its fields far more often than different people do).
//! - **m** (how often a level turns up for the *same* person) and the share
//!   of duplicates among the blocked pairs come from expectation–maximisation
//!   over a sample of the blocked pairs, u held fixed, starting from the
//!   configured model (the bundled one unless `[dedupe] model` says).
//! - **Term frequencies** of given names, family names and cities: an exact
//!   match on "Smith" or "Sydney" then says less than one on "Vanderbilt"
//!   or "Bungendore" (`Model::tf_adjustment`).
//!
//! The levels come from the component's own evidence, so any component
//! that reports its levels can be estimated; one that does not take a
//! `model` setting keeps its own parameters and the run says so.

use crate::matcher::Matcher;
use anyhow::{Result, bail};
use leadgate_lead::Lead;
use leadgate_models::dedupe::{Calibration, Frequencies, Model, Mu, sigmoid};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};

/// A pair's comparison levels, (field, level), as the component reports them.
pub type Levels = Vec<(String, String)>;

/// How much of the file the estimate looks at.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Random pairs for u.
    pub random_pairs: usize,
    /// Blocked pairs for EM (a uniform sample when there are more).
    pub blocked_pairs: usize,
    /// Values kept per field in the term-frequency table.
    pub tf_values: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            random_pairs: 100_000,
            blocked_pairs: 50_000,
            tf_values: 5_000,
        }
    }
}

/// The fewest records and blocked pairs worth estimating from; below that
/// the configured model is used as it is.
pub const MIN_RECORDS: usize = 100;
pub const MIN_BLOCKED_PAIRS: usize = 50;

/// What the estimate did, for the report.
#[derive(Debug, Clone)]
pub struct Report {
    pub random_pairs: usize,
    pub blocked_pairs: usize,
    pub iterations: usize,
    pub converged: bool,
    /// The chance that two random records are one person.
    pub prior: f64,
    /// The duplicate pairs expected among the candidate pairs.
    pub duplicates: f64,
    pub candidate_pairs: f64,
}

/// Smoothing added to every level's count.
const SMOOTHING: f64 = 0.5;
/// The least m of a level that speaks against a match: one disagreement
/// never vetoes a match on its own.
const MIN_M: f64 = 0.01;
const MAX_ITERATIONS: usize = 200;
const TOLERANCE: f64 = 1e-6;

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}

/// u per field and level from random pairs; a field no random pair has
/// (both sides present) is left out.
pub fn u_from_random(random: &[Levels]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut counts: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for levels in random {
        for (field, level) in levels {
            if level != "missing" {
                *counts
                    .entry(field.clone())
                    .or_default()
                    .entry(level.clone())
                    .or_default() += 1.0;
            }
        }
    }
    counts
        .into_iter()
        .map(|(field, levels)| {
            let n: f64 = levels.values().sum();
            let k = levels.len() as f64 + 1.0;
            let u = levels
                .into_iter()
                .map(|(level, c)| (level, (c + SMOOTHING) / (n + SMOOTHING * k)))
                .collect();
            (field, u)
        })
        .collect()
}

/// Where the blocked sample comes from: all pairs of the file, of which
/// the candidate pairs are the only ones that can be duplicates.
#[derive(Debug, Clone, Copy)]
pub struct Space {
    /// Pairs of records in the file: n(n−1)/2.
    pub all_pairs: f64,
    /// Candidate (blocked) pairs, of which `blocked` is a uniform sample.
    pub candidate_pairs: f64,
}

/// Fits m and the prior by EM over `blocked` with u fixed from `random`,
/// starting from `start`. Levels neither sample shows keep `start`'s
/// values; `missing` weighs nothing.
///
/// u counts how levels fall between random records, so the prior that
/// goes with it is the chance that two *random* records are one person:
/// the expected duplicates among the candidate pairs over all pairs of the
/// file (pairs that share no key are taken as different people). Using
/// the share among candidate pairs instead would count the agreement that
/// put a pair in a block twice.
pub fn em(
    blocked: &[Levels],
    random: &[Levels],
    space: Space,
    start: &Model,
    source: &str,
) -> Result<(Model, Report)> {
    if blocked.len() < MIN_BLOCKED_PAIRS {
        bail!(
            "estimation needs at least {MIN_BLOCKED_PAIRS} compared pairs; {source} gave {}",
            blocked.len()
        );
    }
    let u = u_from_random(random);
    // The unseen level of a field (present in blocked pairs only): u as if
    // counted once among the random pairs.
    let mut present: HashMap<&str, f64> = HashMap::new();
    for levels in random {
        for (field, level) in levels {
            if level != "missing" {
                *present.entry(field.as_str()).or_default() += 1.0;
            }
        }
    }
    let unseen_u = |field: &str| -> f64 {
        let n = present.get(field).copied().unwrap_or(0.0);
        SMOOTHING / (n + SMOOTHING * 2.0)
    };
    let mut model = start.clone();
    model.calibration = Calibration::default();
    model.term_frequencies.clear();
    // Levels by field from both samples, with u.
    let mut seen: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for levels in blocked.iter().chain(random) {
        for (field, level) in levels {
            if level == "missing" || !seen.insert((field.as_str(), level.as_str())) {
                continue;
            }
            let uf = u.get(field);
            let entry = model
                .fields
                .entry(field.clone())
                .or_default()
                .entry(level.clone())
                .or_insert(Mu { m: 0.0, u: 0.0 });
            if let Some(uf) = uf {
                entry.u = uf.get(level).copied().unwrap_or_else(|| unseen_u(field));
            } else if entry.u == 0.0 {
                entry.u = 0.5;
            }
            if entry.m == 0.0 {
                entry.m = if level == "exact" { 0.9 } else { 0.05 };
            }
        }
    }
    // The starting prior: a fifth of the candidate pairs duplicates (the
    // bundled model's prior belongs to the data it was trained on).
    let per_sample = space.candidate_pairs / blocked.len() as f64;
    let all = space.all_pairs.max(1.0);
    model.prior = (0.2 * space.candidate_pairs / all).clamp(1e-9, 0.5);
    // Index the samples once: (field, level) → slot.
    let mut slots: HashMap<(&str, &str), usize> = HashMap::new();
    let mut names: Vec<(String, String)> = Vec::new();
    let indexed: Vec<Vec<usize>> = blocked
        .iter()
        .map(|levels| {
            levels
                .iter()
                .filter(|(_, l)| l != "missing")
                .map(|(f, l)| {
                    *slots.entry((f.as_str(), l.as_str())).or_insert_with(|| {
                        names.push((f.clone(), l.clone()));
                        names.len() - 1
                    })
                })
                .collect()
        })
        .collect();
    let field_of: Vec<&str> = names.iter().map(|(f, _)| f.as_str()).collect();
    // The starting model's m of each `different` level: EM may make a
    // disagreement stronger evidence against a match, never weaker. Without
    // labels it cannot tell a household (one family name, one address, many
    // given names) from one person whose given name was mistyped, and would
    // otherwise learn that a different given name hardly matters.
    let ceiling: Vec<Option<f64>> = names
        .iter()
        .map(|(f, l)| {
            (l == "different")
                .then(|| start.fields.get(f).and_then(|lv| lv.get(l)).map(|mu| mu.m))
                .flatten()
        })
        .collect();
    let mut iterations = 0;
    let mut converged = false;
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let weights: Vec<f64> = names.iter().map(|(f, l)| model.weight(f, l)).collect();
        let prior = logit(model.prior);
        let mut level_m = vec![0.0f64; names.len()];
        let mut total = 0.0;
        for sample in &indexed {
            let g = sigmoid(prior + sample.iter().map(|&s| weights[s]).sum::<f64>());
            total += g;
            for &s in sample {
                level_m[s] += g;
            }
        }
        let mut field_m: HashMap<&str, f64> = HashMap::new();
        for (s, f) in field_of.iter().enumerate() {
            *field_m.entry(f).or_default() += level_m[s];
        }
        let mut moved: f64 = 0.0;
        for (s, (field, level)) in names.iter().enumerate() {
            let Some(mu) = model.fields.get_mut(field).and_then(|l| l.get_mut(level)) else {
                continue;
            };
            let k = slots.keys().filter(|(f, _)| f == field).count() as f64;
            let fm = field_m.get(field.as_str()).copied().unwrap_or(0.0);
            let mut m = ((level_m[s] + 0.01) / (fm + 0.01 * k)).clamp(1e-6, 1.0);
            if m < mu.u {
                m = m.max(MIN_M.min(mu.u));
            }
            // Sense, whatever the data: agreement never counts against a
            // match, disagreement never for it.
            if level == "exact" && m < mu.u {
                m = mu.u;
            }
            if level == "different" && m > mu.u {
                m = mu.u;
            }
            if let Some(c) = ceiling[s].filter(|_| std::env::var_os("NO_CEIL").is_none()) {
                m = m.min(c);
            }
            moved = moved.max((m - mu.m).abs());
            mu.m = m;
        }
        let next_prior = (total * per_sample / all).clamp(1e-9, 1.0 - 1e-6);
        moved = moved.max((next_prior - model.prior).abs());
        model.prior = next_prior;
        if moved < TOLERANCE {
            converged = true;
            break;
        }
    }
    model.trained_on = format!(
        "EM on {} compared pairs of {source}, u from {} random pairs (no labels)",
        blocked.len(),
        random.len()
    );
    let report = Report {
        random_pairs: random.len(),
        blocked_pairs: blocked.len(),
        iterations,
        converged,
        prior: model.prior,
        duplicates: model.prior * all,
        candidate_pairs: space.candidate_pairs,
    };
    Ok((model, report))
}

/// The term frequencies of one field's values: the `keep` commonest
/// values seen at least twice, and for the rest their agreement-weighted
/// mean frequency. `None` without values.
pub fn frequencies<'a>(values: impl Iterator<Item = &'a str>, keep: usize) -> Option<Frequencies> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut n = 0u64;
    for v in values {
        *counts.entry(v).or_default() += 1;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let total = n as f64;
    let mut by_count: Vec<(&str, u64)> = counts.into_iter().collect();
    by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let split = by_count
        .iter()
        .take(keep)
        .take_while(|(_, c)| *c >= 2)
        .count();
    let values = by_count[..split]
        .iter()
        .map(|(v, c)| ((*v).to_string(), *c as f64 / total))
        .collect();
    let rest = &by_count[split..];
    let (p2, p3) = rest.iter().fold((0.0, 0.0), |(s2, s3), (_, c)| {
        let p = *c as f64 / total;
        (s2 + p * p, s3 + p * p * p)
    });
    let other = if p2 > 0.0 { p3 / p2 } else { 1.0 / total };
    Some(Frequencies {
        values,
        other: other.clamp(1e-9, 1.0),
    })
}

/// Term frequencies of the fields the bundled component adjusts, over
/// `leads` folded as it folds them (one lead at a time: only the values are
/// kept).
pub fn term_frequencies(
    deduper: &leadgate_dedupe::Deduper,
    leads: &[Lead],
    keep: usize,
) -> BTreeMap<String, Frequencies> {
    let fields = leadgate_dedupe::compare::TF_FIELDS;
    let mut values: Vec<Vec<String>> = vec![Vec::new(); fields.len()];
    for lead in leads {
        let f = deduper.prepare(lead);
        for (i, field) in fields.iter().enumerate() {
            if let Some(v) = leadgate_dedupe::compare::value_of(&f, field) {
                values[i].push(v.to_string());
            }
        }
    }
    fields
        .iter()
        .zip(&values)
        .filter_map(|(field, v)| {
            Some((
                field.to_string(),
                frequencies(v.iter().map(String::as_str), keep)?,
            ))
        })
        .collect()
}

/// `n` random pairs of distinct records among `records` (fewer when there
/// are fewer pairs), the same for the same input.
pub fn random_pairs(records: usize, n: usize) -> Vec<(u32, u32)> {
    if records < 2 {
        return Vec::new();
    }
    let possible = records as u128 * (records as u128 - 1) / 2;
    let n = n.min(usize::try_from(possible).unwrap_or(usize::MAX));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x1ead_9a7e);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let a = rng.random_range(0..records) as u32;
        let b = rng.random_range(0..records) as u32;
        if a != b {
            out.push((a.min(b), a.max(b)));
        }
    }
    out
}

/// A uniform sample of `n` of `len` indexes, ascending, the same for the
/// same input.
pub fn sample_indexes(len: usize, n: usize) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5a3e_b10c);
    let mut v = rand::seq::index::sample(&mut rng, len, n).into_vec();
    v.sort_unstable();
    v
}

/// Pairs per component call when asking for evidence (each pair's
/// evidence is a dozen strings; smaller calls stay well inside the
/// component's per-call limits).
const EXPLAIN_BATCH: usize = 128;

/// The levels of `pairs` of `leads`, from the component's evidence; a pair
/// the component fails on is left out.
pub fn levels_of(
    matcher: &mut Matcher<'_>,
    leads: &[Lead],
    pairs: &[(u32, u32)],
    now: i64,
) -> Vec<Levels> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(EXPLAIN_BATCH) {
        for m in matcher
            .compare_pairs(leads, chunk, true, now)
            .into_iter()
            .flatten()
        {
            // `missing` weighs nothing and is left out here already.
            out.push(
                m.evidence
                    .into_iter()
                    .filter(|e| e.level != "missing")
                    .map(|e| (e.field, e.level))
                    .collect(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs drawn from a known model: two fields, three levels each.
    fn draw(n: usize, share: f64, seed: u64) -> (Vec<Levels>, Vec<bool>) {
        let m = [[0.85, 0.10, 0.05], [0.70, 0.20, 0.10]];
        let u = [[0.02, 0.08, 0.90], [0.05, 0.15, 0.80]];
        let names = ["exact", "similar", "different"];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut pick = |p: &[f64; 3]| {
            let x: f64 = rng.random();
            if x < p[0] {
                0
            } else if x < p[0] + p[1] {
                1
            } else {
                2
            }
        };
        let mut labels = Vec::new();
        let mut out = Vec::new();
        let mut rng2 = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 1);
        for _ in 0..n {
            let dup = rng2.random::<f64>() < share;
            let table = if dup { &m } else { &u };
            out.push(vec![
                ("a".to_string(), names[pick(&table[0])].to_string()),
                ("b".to_string(), names[pick(&table[1])].to_string()),
            ]);
            labels.push(dup);
        }
        (out, labels)
    }

    /// The sample is every pair there is.
    fn whole(blocked: &[Levels]) -> Space {
        Space {
            all_pairs: blocked.len() as f64,
            candidate_pairs: blocked.len() as f64,
        }
    }

    #[test]
    fn the_expected_duplicates_scale_from_the_sample_to_the_candidates() {
        let (blocked, _) = draw(20_000, 0.3, 5);
        let (random, _) = draw(20_000, 0.0, 9);
        // The sample is a tenth of the candidate pairs, here every pair of
        // the file: the expected duplicates scale with it.
        let space = Space {
            all_pairs: 200_000.0,
            candidate_pairs: 200_000.0,
        };
        let (model, report) = em(&blocked, &random, space, &start(), "x").unwrap();
        assert!((report.duplicates - 60_000.0).abs() < 3_000.0, "{report:?}");
        assert!((model.prior - 0.3).abs() < 0.015, "{}", model.prior);
    }

    fn start() -> Model {
        Model {
            version: 1,
            prior: 0.5,
            calibration: Calibration::default(),
            fields: BTreeMap::new(),
            trained_on: String::new(),
            term_frequencies: BTreeMap::new(),
        }
    }

    #[test]
    fn em_recovers_the_generating_model() {
        let (blocked, _) = draw(40_000, 0.3, 1);
        let (random, _) = draw(40_000, 0.0, 7);
        let (model, report) =
            em(&blocked, &random, whole(&blocked), &start(), "synthetic").unwrap();
        assert!(report.converged, "{report:?}");
        assert!((model.prior - 0.3).abs() < 0.02, "prior {}", model.prior);
        let mu = |f: &str, l: &str| model.fields[f][l];
        assert!(
            (mu("a", "exact").m - 0.85).abs() < 0.03,
            "{:?}",
            mu("a", "exact")
        );
        assert!(
            (mu("b", "exact").m - 0.70).abs() < 0.03,
            "{:?}",
            mu("b", "exact")
        );
        assert!((mu("a", "different").u - 0.90).abs() < 0.01);
        assert!((mu("b", "similar").u - 0.15).abs() < 0.01);
    }

    #[test]
    fn probabilities_are_calibrated_on_a_held_out_slice() {
        let (blocked, _) = draw(40_000, 0.3, 11);
        let (random, _) = draw(40_000, 0.0, 13);
        let (model, _) = em(&blocked, &random, whole(&blocked), &start(), "fit").unwrap();
        let (held_out, labels) = draw(40_000, 0.3, 17);
        let mut bins = [(0u32, 0.0f64, 0u32); 5];
        for (levels, dup) in held_out.iter().zip(&labels) {
            let w: f64 = levels.iter().map(|(f, l)| model.weight(f, l)).sum();
            let p = model.probability(w);
            let b = ((p * 5.0) as usize).min(4);
            bins[b].0 += 1;
            bins[b].1 += p;
            bins[b].2 += u32::from(*dup);
        }
        for (n, sum, dups) in bins {
            if n >= 500 {
                let (mean, seen) = (sum / f64::from(n), f64::from(dups) / f64::from(n));
                assert!((mean - seen).abs() < 0.05, "{mean} vs {seen} over {n}");
            }
        }
    }

    #[test]
    fn em_refuses_too_few_pairs_by_name() {
        let (blocked, _) = draw(10, 0.3, 1);
        let err = em(&blocked, &blocked, whole(&blocked), &start(), "tiny.csv").unwrap_err();
        assert!(err.to_string().contains("tiny.csv"), "{err}");
    }

    #[test]
    fn missing_levels_weigh_nothing() {
        let (mut blocked, _) = draw(2_000, 0.3, 3);
        for b in blocked.iter_mut().step_by(2) {
            b.push(("c".into(), "missing".into()));
        }
        let (model, _) = em(&blocked, &blocked, whole(&blocked), &start(), "x").unwrap();
        assert_eq!(model.weight("c", "missing"), 0.0);
        assert!(!model.fields.contains_key("c"));
    }

    #[test]
    fn frequencies_keep_the_common_values_and_summarise_the_rest() {
        let mut values = vec!["smith"; 50];
        values.extend(["jones"; 10]);
        values.extend(["vanderbilt", "bungendore", "okonkwo"]);
        let f = frequencies(values.iter().copied(), 10).unwrap();
        assert!((f.values["smith"] - 50.0 / 63.0).abs() < 1e-12);
        assert!(f.values.contains_key("jones"));
        // Values seen once are summarised.
        assert!(!f.values.contains_key("okonkwo"));
        assert!((f.other - 1.0 / 63.0).abs() < 1e-12);
        // Only the commonest `keep` are kept.
        let g = frequencies(values.iter().copied(), 1).unwrap();
        assert_eq!(g.values.len(), 1);
        assert!(g.other > 1.0 / 63.0 && g.other < 10.0 / 63.0);
        assert!(frequencies(std::iter::empty(), 10).is_none());
    }

    #[test]
    fn samples_are_reproducible_and_in_range() {
        let a = random_pairs(1_000, 500);
        assert_eq!(a, random_pairs(1_000, 500));
        assert!(a.iter().all(|&(x, y)| x < y && y < 1_000));
        assert_eq!(random_pairs(3, 100).len(), 3);
        assert!(random_pairs(1, 10).is_empty());
        let s = sample_indexes(100, 10);
        assert_eq!(s.len(), 10);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_indexes(5, 10), vec![0, 1, 2, 3, 4]);
    }
}
