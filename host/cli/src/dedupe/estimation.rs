//! The matching model estimated on the data at hand (random pairs for u,
//! EM over candidate pairs for m), and the decisions it gives.

use super::*;

/// Estimates the model on the prepared records and their candidate pairs
/// (see [`crate::estimate`]): the settings to compare with, or `None` to
/// keep the configured ones, and what happened.
pub(super) fn estimate_model(
    config: &Config,
    component: &DeduperComponent,
    leads: &[Lead],
    pairs: &[u64],
    source: &str,
    now: i64,
) -> Result<(Option<String>, Estimated)> {
    use crate::estimate;
    let settings = config.dedupe_settings()?;
    let skip = |why: String| Ok((None, Estimated::Skipped(why)));
    if leads.len() < estimate::MIN_RECORDS || pairs.len() < estimate::MIN_BLOCKED_PAIRS {
        return skip(format!(
            "{} records and {} candidate pairs are too few to estimate from (at least {} and {})",
            leads.len(),
            pairs.len(),
            estimate::MIN_RECORDS,
            estimate::MIN_BLOCKED_PAIRS
        ));
    }
    let mut settings: serde_json::Value = serde_json::from_str(&settings)?;
    let start = match settings.get("model") {
        Some(m) => serde_json::from_value(m.clone()).context("the configured dedupe model")?,
        None => leadgate_models::dedupe::Model::bundled().map_err(anyhow::Error::msg)?,
    };
    let sizes = estimate::Sizes::default();
    let mut matcher = Matcher::new(component, settings.to_string())?;
    let random = estimate::random_pairs(leads.len(), sizes.random_pairs);
    let random = estimate::levels_of(&mut matcher, leads, &random, now);
    let blocked: Vec<(u32, u32)> = estimate::sample_indexes(pairs.len(), sizes.blocked_pairs)
        .into_iter()
        .map(|i| ((pairs[i] >> 32) as u32, pairs[i] as u32))
        .collect();
    let blocked = estimate::levels_of(&mut matcher, leads, &blocked, now);
    let n = leads.len() as f64;
    let space = estimate::Space {
        all_pairs: n * (n - 1.0) / 2.0,
        candidate_pairs: pairs.len() as f64,
    };
    let (mut model, report) = match estimate::em(&blocked, &random, space, &start, source) {
        Ok(x) => x,
        Err(e) => return skip(e.to_string()),
    };
    // Term frequencies of values folded as the bundled component folds
    // them; settings it cannot read (another component's) mean none.
    if let Ok(native) = leadgate_dedupe::Deduper::from_json(&settings.to_string()) {
        model.term_frequencies = estimate::term_frequencies(&native, leads, sizes.tf_values);
    }
    if let Some(map) = settings.as_object_mut() {
        map.insert("model".into(), serde_json::to_value(&model)?);
    }
    let settings = settings.to_string();
    // A component that does not take the bundled model format keeps its own.
    if let Err(e) = component.instantiate(&settings) {
        return skip(format!(
            "the dedupe component refused the estimated model ({e})"
        ));
    }
    Ok((Some(settings), Estimated::Done(report)))
}

/// A model estimated on leads already normalized — the store's own — for
/// `run`, `import` and `serve`: blocked on the store path's passes, as a
/// new lead meets the stored ones.
pub struct LeadsEstimate {
    pub estimate: Estimated,
    /// The dedupe settings with the estimated model, when there is one.
    pub settings: Option<String>,
    pub stats: Stats,
    /// What the tenant's thresholds do on a sample of the candidate pairs:
    /// under the configured model, then under the estimated one.
    pub decisions: Option<[Decisions; 2]>,
}

/// Sampled candidate pairs by decision at the tenant's thresholds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Decisions {
    pub sampled: usize,
    /// At or above `review`, below `auto_merge`.
    pub review: usize,
    /// At or above `auto_merge`.
    pub auto_merge: usize,
    /// The mean probability of the pairs at or above `auto_merge`: the
    /// share of them that are duplicates, if the model is right.
    pub auto_merge_precision: Option<f64>,
}

/// Candidate pairs sampled to show what the thresholds do.
pub(super) const DECISION_SAMPLE: usize = 20_000;

/// Keys `leads` on the store path's passes, blocks them and estimates the
/// model on them (see [`crate::estimate`]); `source` names them in the
/// model's `trained_on`.
pub fn estimate_on_leads(
    config: &Config,
    leads: &[Lead],
    source: &str,
    quiet: bool,
) -> Result<LeadsEstimate> {
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let dedupe = DeduperComponent::load(&runtime, &config.dedupe_component()?)?;
    let configured = config.dedupe_settings()?;
    let mut matcher =
        Matcher::new(&dedupe, configured.clone())?.only_passes(&config.dedupe.store_passes);
    let now = now_ms();
    let tenant = config.tenant.as_str();
    let mut stats = Stats {
        records: leads.len() as u64,
        ..Stats::default()
    };
    let started = Instant::now();
    let bar = progress(quiet, Some(leads.len() as u64), "keying");
    let mut blocking = Blocking::default();
    let batch = config.limits.batch_size.max(1);
    for (c, chunk) in leads.chunks(batch).enumerate() {
        let refs: Vec<&Lead> = chunk.iter().collect();
        for (i, keys) in matcher.keys(&refs, now).into_iter().enumerate() {
            let idx = u32::try_from(c * batch + i).context("more than 4 billion leads")?;
            match keys {
                Ok(keys) => {
                    let hashed: Vec<i64> = keys.iter().map(|k| key_hash(tenant, k)).collect();
                    stats.keys += hashed.len() as u64;
                    blocking.add(idx, &keys, &hashed);
                }
                Err(_) => stats.left_out += 1,
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    stats.read = started.elapsed();
    let pairs = blocking.pairs(leads, &config.dedupe, &mut stats);

    let started = Instant::now();
    let (settings, estimate) = estimate_model(config, &dedupe, leads, &pairs, source, now)?;
    stats.estimate = started.elapsed();
    let decisions = match &settings {
        Some(estimated) => {
            let sample: Vec<(u32, u32)> =
                crate::estimate::sample_indexes(pairs.len(), DECISION_SAMPLE)
                    .into_iter()
                    .map(|i| ((pairs[i] >> 32) as u32, pairs[i] as u32))
                    .collect();
            let mut both = [Decisions::default(); 2];
            for (d, settings) in both.iter_mut().zip([&configured, estimated]) {
                let mut m = Matcher::new(&dedupe, settings.clone())?;
                *d = decisions(&mut m, leads, &sample, &config.dedupe, now);
            }
            Some(both)
        }
        None => None,
    };
    Ok(LeadsEstimate {
        estimate,
        settings,
        stats,
        decisions,
    })
}

/// What the thresholds do with `pairs` under `matcher`'s model.
pub(super) fn decisions(
    matcher: &mut Matcher<'_>,
    leads: &[Lead],
    pairs: &[(u32, u32)],
    config: &crate::config::DedupeConfig,
    now: i64,
) -> Decisions {
    let mut d = Decisions::default();
    let mut auto_sum = 0.0;
    for chunk in pairs.chunks(COMPARE_BATCH) {
        for m in matcher
            .compare_pairs(leads, chunk, false, now)
            .into_iter()
            .flatten()
        {
            d.sampled += 1;
            if m.probability >= config.auto_merge {
                d.auto_merge += 1;
                auto_sum += m.probability;
            } else if m.probability >= config.review {
                d.review += 1;
            }
        }
    }
    if d.auto_merge > 0 {
        d.auto_merge_precision = Some(auto_sum / d.auto_merge as f64);
    }
    d
}
