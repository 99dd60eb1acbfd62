//! `leadgate dedupe`: batch clean-up of a dirty file. Every record is
//! normalized (records that fail validation still take part: old CRM
//! exports have no email or phone), blocked by the dedupe component's keys,
//! the candidate pairs compared, the pairs clustered with a chain guard, and
//! a merge plan written — and applied to the store unless `--dry-run`.
//!
//! Comparisons grow with the blocks, not with the square of the input: a key
//! shared by more than `dedupe.max_block` records (a shared switchboard
//! number, `info@`) is not used for blocking, and the report says so.
//!
//! [`prepare`] (read, validate, key, block, compare) is shared with
//! `leadgate eval dedupe` and `leadgate dedupe-train`.

use crate::clock::now_ms;
use crate::config::Config;
use crate::matcher::{Decision, Matcher, Policy};
use crate::pipeline::Validator;
use anyhow::{Context, Result, bail};
use leadgate_ingest::{Format, Limits as IngestLimits, Mapping, Reader};
use leadgate_lead::{Lead, Source, Verdict};
use leadgate_merge::cluster::{self, Edge, Guard};
use leadgate_merge::survivorship;
use leadgate_runtime::{DeduperComponent, Runtime, ValidatorComponent};
use leadgate_store::{Link, LinkKind, Record, Review, Status, Store, key_hash};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to read.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: String,
    pub format: Option<Format>,
    pub map: Vec<String>,
    /// A column holding the true entity (for evaluation and training); it
    /// is taken out of the records so it cannot influence matching.
    pub truth_column: Option<String>,
    pub quiet: bool,
    /// Estimate the model on the file, or use the configured one.
    pub model: ModelChoice,
    /// Block on the store path's passes only (`dedupe.store_passes`): for
    /// training a model that `run` and `serve` will use.
    pub store_passes: bool,
}

/// The records of a file, normalized and compared.
pub struct Prepared {
    /// 1-based record number of each participating record.
    pub lines: Vec<u64>,
    /// Normalized leads (ids set when written to the store).
    pub leads: Vec<Lead>,
    /// The validation verdict of each.
    pub verdicts: Vec<Verdict>,
    /// The truth column's value, when asked for.
    pub truth: Vec<Option<String>>,
    /// Compared pairs (indexes into `leads`), sorted, as [`cluster::pair_key`].
    pub pairs: Vec<u64>,
    /// Match probability of each pair.
    pub probabilities: Vec<f32>,
    pub stats: Stats,
    /// What estimating the model on the file did (or why it did not).
    pub estimate: Option<Estimated>,
    /// The dedupe settings the pairs were compared with (the estimated
    /// model in them, when there is one).
    pub settings: String,
}

/// Which model compares the pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChoice {
    /// Estimated on the file itself (EM, random-pair u, term frequencies),
    /// from the configured model.
    Estimate,
    /// The configured model as it is (`[dedupe] model`, else the bundled one).
    Configured,
}

/// The outcome of estimating the model on the file.
#[derive(Debug, Clone)]
pub enum Estimated {
    Done(crate::estimate::Report),
    /// The configured model was used; the reason says why.
    Skipped(String),
}

/// One blocking key of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: u64,
    record: u32,
    pass: u16,
}

/// A key's pass: the text before its first `:` (the whole key if none).
fn pass_of(key: &str) -> &str {
    key.split_once(':').map_or(key, |(p, _)| p)
}

/// Blocking statistics of one pass.
#[derive(Debug, Default, Clone)]
pub struct PassStats {
    pub name: String,
    /// Keys shared by two or more records.
    pub blocks: u64,
    /// Keys shared by more than `max_block` records: compared as a sorted
    /// neighbourhood.
    pub oversize: u64,
    /// Distinct pairs this pass proposed (before pairs from several passes
    /// are merged).
    pub pairs: u64,
    /// Left out because comparisons would have exceeded the budget.
    pub dropped: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub records: u64,
    /// Records that could not be read or that the validate component failed
    /// on: they do not take part.
    pub left_out: u64,
    pub keys: u64,
    pub blocks: u64,
    /// Keys shared by more than `max_block` records, not used for blocking.
    pub oversize_blocks: u64,
    /// The most common oversize key, for the report.
    pub oversize_example: Option<(String, usize)>,
    pub compare_failures: u64,
    /// Time spent estimating the model on the file.
    pub estimate: Duration,
    /// Per blocking pass, in the order first seen.
    pub passes: Vec<PassStats>,
    pub read: Duration,
    pub compare: Duration,
}

impl Prepared {
    pub fn pair(&self, i: usize) -> (u32, u32) {
        let k = self.pairs[i];
        ((k >> 32) as u32, k as u32)
    }

    /// Probability of a compared pair, if it was compared.
    pub fn probability(&self, a: u32, b: u32) -> Option<f32> {
        self.pairs
            .binary_search(&cluster::pair_key(a, b))
            .ok()
            .map(|i| self.probabilities[i])
    }

    /// Clusters at `threshold`, with the chain guard.
    pub fn clusters(&self, threshold: f64, guard: Guard) -> cluster::Clusters {
        let edges: Vec<Edge> = (0..self.pairs.len())
            .filter(|&i| f64::from(self.probabilities[i]) >= threshold)
            .map(|i| {
                let (a, b) = self.pair(i);
                Edge {
                    a,
                    b,
                    probability: f64::from(self.probabilities[i]),
                }
            })
            .collect();
        let below = guard.cannot_link_below;
        cluster::cluster(
            self.leads.len(),
            &edges,
            |a, b| self.probability(a, b).is_some_and(|p| f64::from(p) < below),
            guard,
        )
    }
}

/// Where each record goes in the store when the plan is applied.
pub struct Apply<'a> {
    pub store: &'a mut Store,
    pub run_id: i64,
    pub source: Source,
    /// The validate component's digest, for the audit trail.
    pub component: String,
}

pub(crate) fn progress(
    quiet: bool,
    len: Option<u64>,
    what: &'static str,
) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr_with_hz(5));
    let template = if len.is_some() {
        "{spinner} {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})"
    } else {
        "{spinner} {msg} [{elapsed_precise}] {pos}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}

/// Reads, validates, keys, blocks and compares. With `apply`, every record
/// is also written to the store (with its keys), so a plan can link them.
pub fn prepare(
    config: &Config,
    input: &Input,
    mut apply: Option<&mut Apply<'_>>,
) -> Result<Prepared> {
    let started = Instant::now();
    let format = match input.format {
        Some(f) => f,
        None => Format::from_path(&input.path).with_context(|| {
            format!(
                "cannot tell the format of {} from its name: pass --format csv or --format ndjson",
                input.path
            )
        })?,
    };
    // The truth column is read as a custom field whatever its name, then
    // taken out of the record.
    let mut map = input.map.clone();
    if let Some(col) = &input.truth_column {
        map.insert(0, format!("{col}=custom.{col}"));
    }
    let mapping = Mapping::parse(&map)?;
    let file = std::fs::File::open(&input.path)
        .with_context(|| format!("cannot open input {}", input.path))?;
    let size = file.metadata().ok().map(|m| m.len());
    let mut reader = Reader::new(Box::new(file), format, mapping, IngestLimits::default())
        .with_context(|| format!("cannot read {}", input.path))?;
    if format == Format::Csv {
        let columns = reader.columns();
        if columns.is_empty() {
            bail!(
                "{} is empty: it has no header row, so there is nothing to deduplicate",
                input.path
            );
        }
        let truth = input.truth_column.as_deref().unwrap_or("");
        if columns.iter().all(|(h, t)| {
            t == "ignore" || t.starts_with("custom.") || h.eq_ignore_ascii_case(truth)
        }) {
            bail!(
                "none of the columns of {} is a lead field the matcher can use (columns: {}): map them with --map COLUMN=FIELD",
                input.path,
                columns
                    .iter()
                    .map(|(h, t)| format!("{h} → {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if let Some(col) = &input.truth_column
        && format == Format::Csv
        && !reader
            .columns()
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case(col))
    {
        bail!(
            "--truth-column {col}: {} has no such column (columns: {})",
            input.path,
            reader
                .columns()
                .iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let validate = ValidatorComponent::load(&runtime, &config.validate_component()?)?;
    let mut validator = Validator::new(&validate, config.validate_settings()?)?;
    let dedupe_path = config.dedupe_component()?;
    let dedupe = DeduperComponent::load(&runtime, &dedupe_path)?;
    let mut matcher = Matcher::new(&dedupe, config.dedupe_settings()?)?;
    if input.store_passes {
        matcher = matcher.only_passes(&config.dedupe.store_passes);
    }
    let now = now_ms();
    let tenant = config.tenant.as_str();

    let mut p = Prepared {
        lines: Vec::new(),
        leads: Vec::new(),
        verdicts: Vec::new(),
        truth: Vec::new(),
        pairs: Vec::new(),
        probabilities: Vec::new(),
        stats: Stats::default(),
        estimate: None,
        settings: config.dedupe_settings()?,
    };
    let mut blocking = Blocking::default();
    let bar = progress(input.quiet, size, "reading");
    let batch = config.limits.batch_size.max(1);
    loop {
        let mut chunk = Vec::with_capacity(batch);
        while chunk.len() < batch {
            match reader.next_record() {
                None => break,
                Some(r) => chunk.push(r.with_context(|| format!("reading {}", input.path))?),
            }
        }
        if chunk.is_empty() {
            break;
        }
        p.stats.records += chunk.len() as u64;
        let mut lines = Vec::with_capacity(chunk.len());
        let mut raws: Vec<Lead> = Vec::with_capacity(chunk.len());
        let mut truths = Vec::with_capacity(chunk.len());
        for record in chunk {
            let Ok(parsed) = record.outcome else {
                p.stats.left_out += 1;
                continue;
            };
            let mut lead = parsed.lead;
            let truth = input.truth_column.as_ref().and_then(|col| {
                let pos = lead
                    .custom
                    .iter()
                    .position(|c| c.key.eq_ignore_ascii_case(col))?;
                Some(lead.custom.remove(pos).value)
            });
            lead.tenant = tenant.to_string();
            if !parsed.has_received_at {
                lead.received_at = now;
            }
            if let Some(a) = apply.as_deref() {
                lead.id = uuid::Uuid::now_v7().to_string();
                if !parsed.has_source {
                    lead.source = a.source;
                }
            } else {
                lead.id = record.line.to_string();
            }
            lines.push(record.line);
            raws.push(lead);
            truths.push(truth);
        }
        let validated = validator.validate(&raws, now);
        let mut kept: Vec<Kept> = Vec::new();
        for (((line, raw), truth), v) in lines.into_iter().zip(raws).zip(truths).zip(validated) {
            match v {
                Ok(v) => kept.push(Kept {
                    line,
                    lead: v.lead,
                    verdict: v.verdict,
                    issues: v.issues,
                    truth,
                    raw,
                }),
                Err(_) => p.stats.left_out += 1,
            }
        }
        let refs: Vec<&Lead> = kept.iter().map(|k| &k.lead).collect();
        let keys = matcher.keys(&refs, now);
        let mut records_keys: Vec<Vec<i64>> = Vec::with_capacity(kept.len());
        for (k, keys) in kept.iter().zip(keys) {
            let idx = u32::try_from(p.leads.len()).context("more than 4 billion records")?;
            let keys = keys.unwrap_or_default();
            let hashed: Vec<i64> = keys.iter().map(|k| key_hash(tenant, k)).collect();
            p.stats.keys += hashed.len() as u64;
            blocking.add(idx, &keys, &hashed);
            // The store indexes the keys `run` and `serve` look up.
            if apply.is_some() {
                records_keys.push(
                    keys.iter()
                        .zip(&hashed)
                        .filter(|(k, _)| crate::matcher::in_passes(k, &config.dedupe.store_passes))
                        .map(|(_, h)| *h)
                        .collect(),
                );
            } else {
                records_keys.push(Vec::new());
            }
            p.lines.push(k.line);
            p.leads.push(k.lead.clone());
            p.verdicts.push(k.verdict);
            p.truth.push(k.truth.clone());
        }
        if let Some(a) = apply.as_deref_mut() {
            write_records(a, &kept, &records_keys, now)?;
        }
        bar.set_position(reader.bytes_read());
    }
    bar.finish_and_clear();
    p.stats.read = started.elapsed();

    // Blocking: records sharing a key, pass by pass.
    let pairs = blocking.pairs(&p.leads, &config.dedupe, &mut p.stats);

    // The model: estimated on this file unless one is pinned.
    if input.model == ModelChoice::Estimate {
        let started = Instant::now();
        let (estimated, outcome) =
            estimate_model(config, &dedupe, &p.leads, &pairs, "the input", now)?;
        p.stats.estimate = started.elapsed();
        if let Some(settings) = estimated {
            matcher = Matcher::new(&dedupe, settings.clone())?;
            p.settings = settings;
        }
        p.estimate = Some(outcome);
    }

    // Comparison, in batches of pairs that share their leads.
    let compare_started = Instant::now();
    let bar = progress(input.quiet, Some(pairs.len() as u64), "comparing");
    let mut probabilities: Vec<f32> = Vec::with_capacity(pairs.len());
    let mut local: Vec<u32> = vec![u32::MAX; p.leads.len()];
    for block in pairs.chunks(COMPARE_BATCH) {
        let mut pool: Vec<&Lead> = Vec::new();
        let mut touched: Vec<u32> = Vec::new();
        let mut local_pairs: Vec<(u32, u32)> = Vec::with_capacity(block.len());
        for key in block {
            let (a, b) = ((key >> 32) as u32, *key as u32);
            let mut slot = |r: u32| {
                let s = &mut local[r as usize];
                if *s == u32::MAX {
                    *s = pool.len() as u32;
                    pool.push(&p.leads[r as usize]);
                    touched.push(r);
                }
                *s
            };
            let (x, y) = (slot(a), slot(b));
            local_pairs.push((x, y));
        }
        for r in touched {
            local[r as usize] = u32::MAX;
        }
        for m in matcher.compare(&pool, &local_pairs, false, now) {
            match m {
                Ok(m) => probabilities.push(m.probability as f32),
                Err(_) => {
                    p.stats.compare_failures += 1;
                    probabilities.push(0.0);
                }
            }
        }
        bar.inc(block.len() as u64);
    }
    bar.finish_and_clear();
    p.stats.compare = compare_started.elapsed();
    p.pairs = pairs;
    p.probabilities = probabilities;
    Ok(p)
}

/// The blocking keys of records, gathered record by record.
#[derive(Default)]
struct Blocking {
    entries: Vec<Entry>,
    /// Pass names, in the order first seen.
    passes: Vec<String>,
}

impl Blocking {
    /// Adds the keys of record `record` (as the component gave them, and
    /// hashed).
    fn add(&mut self, record: u32, keys: &[String], hashed: &[i64]) {
        for (k, h) in keys.iter().zip(hashed) {
            let name = pass_of(k);
            let pass = match self.passes.iter().position(|p| p == name) {
                Some(i) => i,
                None => {
                    self.passes.push(name.to_string());
                    self.passes.len() - 1
                }
            };
            self.entries.push(Entry {
                key: *h as u64,
                record,
                pass: u16::try_from(pass).unwrap_or(u16::MAX),
            });
        }
    }

    /// The candidate pairs (see [`block`]).
    fn pairs(
        mut self,
        leads: &[Lead],
        config: &crate::config::DedupeConfig,
        stats: &mut Stats,
    ) -> Vec<u64> {
        if self.passes.is_empty() {
            return Vec::new();
        }
        block(&mut self.entries, leads, &self.passes, config, stats)
    }
}

/// Neighbours each record of an oversize block is compared with.
const WINDOW: usize = 8;

/// The sort key of a record in an oversize block's sorted neighbourhood:
/// family name, given name, postcode, folded to lowercase.
fn neighbourhood_key(lead: &Lead) -> String {
    let part = |s: &Option<String>| s.as_deref().unwrap_or("").to_lowercase();
    format!(
        "{}\u{1f}{}\u{1f}{}",
        part(&lead.last_name),
        part(&lead.first_name),
        part(&lead.postcode)
    )
}

/// Candidate pairs from the blocking keys, sorted and without duplicates.
///
/// A block of up to `max_block` records gives every pair in it. A larger
/// one (a shared switchboard number, a common name in a big city) is
/// compared as a sorted neighbourhood: ordered by family name, given name
/// and postcode, each record meets its [`WINDOW`] next neighbours, so
/// near-identical records still meet and the cost stays linear.
///
/// Passes are taken most selective (fewest distinct pairs) first while
/// their pairs fit in `max_pairs_per_record` pairs a record; the rest are
/// left out whole, and the report names them.
fn block(
    entries: &mut [Entry],
    leads: &[Lead],
    passes: &[String],
    config: &crate::config::DedupeConfig,
    stats: &mut Stats,
) -> Vec<u64> {
    entries.sort_unstable();
    let max_block = config.max_block.max(2);
    let mut by_pass: Vec<PassStats> = passes
        .iter()
        .map(|name| PassStats {
            name: name.clone(),
            ..PassStats::default()
        })
        .collect();
    // The blocks of each pass: (start, end) into entries.
    let mut of_pass: Vec<Vec<(usize, usize)>> = vec![Vec::new(); by_pass.len()];
    let mut start = 0;
    while start < entries.len() {
        let key = entries[start].key;
        let mut end = start;
        while end < entries.len() && entries[end].key == key {
            end += 1;
        }
        let n = (end - start) as u64;
        if n > 1 {
            let index = usize::from(entries[start].pass).min(passes.len() - 1);
            let pass = &mut by_pass[index];
            pass.blocks += 1;
            if n as usize > max_block {
                pass.oversize += 1;
                if stats
                    .oversize_example
                    .as_ref()
                    .is_none_or(|(_, m)| n as usize > *m)
                {
                    let lead = &leads[entries[start].record as usize];
                    let name = lead
                        .email
                        .clone()
                        .or_else(|| lead.phone.clone())
                        .unwrap_or_else(|| {
                            format!("a `{}` key", passes[usize::from(entries[start].pass)])
                        });
                    stats.oversize_example = Some((name, n as usize));
                }
                stats.oversize_blocks += 1;
            }
            stats.blocks += 1;
            of_pass[index].push((start, end));
        }
        start = end;
    }
    // Each pass's distinct pairs (several keys of one pass, such as the
    // deletion variants of one name, often propose the same pair).
    let mut order: Vec<(String, u32)> = Vec::new();
    let mut pairs_of = |blocks: &[(usize, usize)], pairs: &mut Vec<u64>| {
        // Several keys of one pass often propose the same pair (the
        // deletion variants of one name): duplicates are folded away as the
        // list grows, so it never holds many more than the distinct pairs.
        let mut compacted = pairs.len();
        for &(start, end) in blocks {
            if pairs.len() > 2 * compacted + (1 << 20) {
                pairs.sort_unstable();
                pairs.dedup();
                compacted = pairs.len();
            }
            let block = &entries[start..end];
            if block.len() > max_block {
                order.clear();
                order.extend(
                    block
                        .iter()
                        .map(|e| (neighbourhood_key(&leads[e.record as usize]), e.record)),
                );
                order.sort_unstable();
                for (i, (_, x)) in order.iter().enumerate() {
                    for (_, y) in order.iter().skip(i + 1).take(WINDOW) {
                        if x != y {
                            pairs.push(cluster::pair_key(*x, *y));
                        }
                    }
                }
            } else {
                for (i, x) in block.iter().enumerate() {
                    for y in &block[i + 1..] {
                        if x.record != y.record {
                            pairs.push(cluster::pair_key(x.record, y.record));
                        }
                    }
                }
            }
        }
    };
    // Counted pass by pass (a kept pass's pairs are made again below, so
    // that only one pass's pairs are held at a time).
    let mut scratch: Vec<u64> = Vec::new();
    for (pass, blocks) in of_pass.iter().enumerate() {
        scratch.clear();
        pairs_of(blocks, &mut scratch);
        scratch.sort_unstable();
        scratch.dedup();
        by_pass[pass].pairs = scratch.len() as u64;
    }
    drop(scratch);
    // The budget: the most selective passes first, while they fit; the
    // rest are left out (never the first).
    let budget = (config.max_pairs_per_record as u64).saturating_mul(leads.len() as u64);
    let mut ranked: Vec<usize> = (0..by_pass.len()).collect();
    ranked.sort_by_key(|&i| by_pass[i].pairs);
    let mut total = 0u64;
    for (rank, &i) in ranked.iter().enumerate() {
        if rank > 0 && total + by_pass[i].pairs > budget {
            by_pass[i].dropped = true;
        } else {
            total += by_pass[i].pairs;
        }
    }
    let mut pairs: Vec<u64> = Vec::with_capacity(total as usize);
    for (pass, blocks) in of_pass.iter().enumerate() {
        if !by_pass[pass].dropped {
            pairs_of(blocks, &mut pairs);
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    stats.passes = by_pass;
    pairs
}

/// Estimates the model on the prepared records and their candidate pairs
/// (see [`crate::estimate`]): the settings to compare with, or `None` to
/// keep the configured ones, and what happened.
fn estimate_model(
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
        None => leadgate_dedupe::model::Model::bundled().map_err(anyhow::Error::msg)?,
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
const DECISION_SAMPLE: usize = 20_000;

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
fn decisions(
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

/// Pairs per component call in batch comparison.
const COMPARE_BATCH: usize = 1024;

/// A record that took part, as read and as validated.
struct Kept {
    line: u64,
    lead: Lead,
    verdict: Verdict,
    issues: Vec<leadgate_lead::Issue>,
    truth: Option<String>,
    raw: Lead,
}

/// Stores the records of a chunk (batch clean-up without `--dry-run`),
/// with their validation issues and blocking keys.
fn write_records(a: &mut Apply<'_>, kept: &[Kept], keys: &[Vec<i64>], now: i64) -> Result<()> {
    let normalized: Vec<String> = kept
        .iter()
        .map(|k| serde_json::to_string(&k.lead))
        .collect::<Result<_, _>>()?;
    let records: Vec<Record<'_>> = kept
        .iter()
        .zip(&normalized)
        .zip(keys)
        .map(|((k, json), keys)| {
            let status = Status::of(k.verdict);
            Record {
                line: k.line,
                raw: &k.raw,
                status,
                validation: status,
                normalized: Some(json),
                issues: &k.issues,
                exception: None,
                keys,
                link: None,
                review: None,
                enrichment: None,
                qualification: None,
            }
        })
        .collect();
    a.store
        .record(a.run_id, "validate", &a.component, &records, now)?;
    Ok(())
}

/// `leadgate dedupe` options.
pub struct Options {
    pub input: Input,
    pub pairs: PathBuf,
    pub clusters: Option<PathBuf>,
    pub dry_run: bool,
    pub db: String,
}

/// A cluster of the plan.
#[derive(serde::Serialize)]
struct ClusterLine<'a> {
    cluster: usize,
    /// Record numbers, ascending; the first is the master.
    lines: Vec<u64>,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lead_ids: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    golden: Option<survivorship::Golden>,
}

/// The summary of a batch clean-up.
pub struct Report {
    pub stats: Stats,
    pub records: usize,
    pub pairs_compared: usize,
    pub pairs_written: usize,
    pub clusters: usize,
    pub merge_groups: usize,
    pub merged_records: usize,
    pub reviews: usize,
    pub refused_joins: u64,
    pub applied: Option<i64>,
    pub elapsed: Duration,
    /// Which model compared the pairs.
    pub model: String,
}

pub fn run(config: &Config, opts: &Options) -> Result<Report> {
    let started = Instant::now();
    let policy = Policy::of(&config.dedupe);
    let guard = Guard {
        max_size: config.dedupe.max_cluster,
        ..Guard::default()
    };
    let mut store = if opts.dry_run {
        None
    } else {
        Some(Store::open(&opts.db)?)
    };
    let mut run_id = None;
    let prepared = match store.as_mut() {
        Some(store) => {
            let components = serde_json::json!({
                "validate": {"path": config.validate_component()?.display().to_string()},
                "dedupe": {"path": config.dedupe_component()?.display().to_string()}
            });
            let id = store.begin_run(
                &config.tenant,
                &opts.input.path,
                &components.to_string(),
                now_ms(),
            )?;
            run_id = Some(id);
            let validate_path = config.validate_component()?;
            let digest = leadgate_runtime::digest(
                &std::fs::read(&validate_path)
                    .with_context(|| format!("cannot read {}", validate_path.display()))?,
            );
            let mut apply = Apply {
                store,
                run_id: id,
                source: Source::Import,
                component: digest,
            };
            prepare(config, &opts.input, Some(&mut apply))?
        }
        None => prepare(config, &opts.input, None)?,
    };

    // Pairs at or above the review threshold, with their decision.
    let mut out = csv::Writer::from_path(&opts.pairs)
        .with_context(|| format!("cannot create {}", opts.pairs.display()))?;
    out.write_record(["line_a", "line_b", "probability", "decision"])?;
    let mut written = 0;
    let mut reviews: Vec<(u32, u32, f64, bool)> = Vec::new();
    let mut merge_edges: Vec<Edge> = Vec::new();
    for i in 0..prepared.pairs.len() {
        let prob = f64::from(prepared.probabilities[i]);
        if prob < policy.review {
            continue;
        }
        let (a, b) = prepared.pair(i);
        let conflict = survivorship::consent_conflict(
            &prepared.leads[a as usize],
            &prepared.leads[b as usize],
        )
        .is_some();
        let decision = policy.decide(prob, conflict);
        match decision {
            Decision::Merge | Decision::Link => merge_edges.push(Edge {
                a,
                b,
                probability: prob,
            }),
            Decision::Review => reviews.push((a, b, prob, conflict)),
            Decision::Distinct => {}
        }
        out.write_record([
            prepared.lines[a as usize].to_string(),
            prepared.lines[b as usize].to_string(),
            format!("{prob:.4}"),
            decision.as_str().to_string(),
        ])?;
        written += 1;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", opts.pairs.display()))?;

    // Groups: at the review threshold for the report, at auto-merge for the plan.
    let below = guard.cannot_link_below;
    let review_clusters = prepared.clusters(policy.review, guard);
    let merge_clusters = cluster::cluster(
        prepared.leads.len(),
        &merge_edges,
        |a, b| {
            prepared
                .probability(a, b)
                .is_some_and(|p| f64::from(p) < below)
        },
        guard,
    );
    let kind = if policy.auto_merge_enabled {
        LinkKind::Merge
    } else {
        LinkKind::Link
    };
    if let Some(path) = &opts.clusters {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        for (k, group) in review_clusters.groups.iter().enumerate() {
            let planned = merge_clusters.groups.binary_search(group).is_ok();
            let members: Vec<(String, Lead)> = group
                .iter()
                .map(|&r| {
                    (
                        prepared.leads[r as usize].id.clone(),
                        prepared.leads[r as usize].clone(),
                    )
                })
                .collect();
            let line = ClusterLine {
                cluster: k + 1,
                lines: group.iter().map(|&r| prepared.lines[r as usize]).collect(),
                decision: if planned { kind.as_str() } else { "review" },
                lead_ids: store.is_some().then(|| {
                    group
                        .iter()
                        .map(|&r| prepared.leads[r as usize].id.as_str())
                        .collect()
                }),
                golden: (planned && kind == LinkKind::Merge)
                    .then(|| survivorship::golden(&members, &config.dedupe.survivorship))
                    .flatten(),
            };
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")?;
        }
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    let merged_records: usize = merge_clusters.groups.iter().map(|g| g.len() - 1).sum();
    if let (Some(store), Some(run_id)) = (store.as_mut(), run_id) {
        let review_pairs: Vec<usize> = reviews
            .iter()
            .filter_map(|(a, b, _, _)| {
                prepared
                    .pairs
                    .binary_search(&cluster::pair_key(*a, *b))
                    .ok()
            })
            .collect();
        let evidence: Vec<String> = explain(config, &prepared, &review_pairs)?
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        let now = now_ms();
        let tenant = config.tenant.as_str();
        let mut masters = Vec::new();
        for group in &merge_clusters.groups {
            let master = &prepared.leads[group[0] as usize].id;
            for &r in &group[1..] {
                let prob = group
                    .iter()
                    .filter(|&&o| o != r)
                    .filter_map(|&o| prepared.probability(r, o))
                    .fold(0.0f32, f32::max);
                store.link(
                    tenant,
                    &prepared.leads[r as usize].id,
                    &Link {
                        master,
                        kind,
                        probability: f64::from(prob),
                        evidence: "[]",
                        decided_by: "dedupe",
                    },
                    now,
                )?;
            }
            if kind == LinkKind::Merge {
                masters.push(master.clone());
            }
        }
        crate::matching::refresh_golden(store, tenant, &masters, &config.dedupe.survivorship, now)?;
        for ((a, b, prob, conflict), evidence) in reviews.iter().zip(&evidence) {
            store.add_review(
                tenant,
                &prepared.leads[*b as usize].id,
                &Review {
                    other: &prepared.leads[*a as usize].id,
                    probability: *prob,
                    evidence,
                    reason: if *conflict {
                        "consent_conflict"
                    } else {
                        "uncertain"
                    },
                },
                Some(run_id),
                now,
            )?;
        }
        let totals = leadgate_store::Totals {
            total: prepared.stats.records,
            duplicates: merged_records as u64,
            review: reviews.len() as u64,
            rejected: prepared
                .verdicts
                .iter()
                .filter(|v| **v == Verdict::Reject)
                .count() as u64,
            ..leadgate_store::Totals::default()
        };
        store.finish_run(run_id, &totals, "done", now)?;
    }
    Ok(Report {
        records: prepared.leads.len(),
        pairs_compared: prepared.pairs.len(),
        pairs_written: written,
        clusters: review_clusters.groups.len(),
        merge_groups: merge_clusters.groups.len(),
        merged_records,
        reviews: reviews.len(),
        refused_joins: review_clusters.refused + merge_clusters.refused,
        applied: run_id,
        model: describe_model(&prepared),
        stats: prepared.stats,
        elapsed: started.elapsed(),
    })
}

pub fn print_report(r: &Report, opts: &Options) {
    let s = &r.stats;
    eprintln!(
        "leadgate dedupe: {} records ({} took part, {} left out: unreadable or a component failure) in {:.1} s",
        s.records,
        r.records,
        s.left_out,
        r.elapsed.as_secs_f64()
    );
    eprintln!(
        "  read and validated in {:.1} s; model in {:.1} s",
        s.read.as_secs_f64(),
        s.estimate.as_secs_f64()
    );
    eprintln!(
        "  blocking: {} keys, {} blocks, {} pairs compared ({:.2} per record) in {:.1} s",
        s.keys,
        s.blocks,
        r.pairs_compared,
        r.pairs_compared as f64 / (r.records.max(1) as f64),
        s.compare.as_secs_f64()
    );
    let mut passes = String::new();
    if write_passes(&mut passes, &s.passes, r.records).is_ok() {
        eprint!("{passes}");
    }
    if let Some((example, n)) = &s.oversize_example {
        eprintln!(
            "  {} keys were shared by more than dedupe.max_block records: compared as a sorted neighbourhood (largest: {example}, {n} records)",
            s.oversize_blocks
        );
    }
    eprintln!("  model: {}", r.model);
    if s.compare_failures > 0 {
        eprintln!(
            "  {} pairs could not be compared (the component failed on them): scored 0",
            s.compare_failures
        );
    }
    eprintln!(
        "  {} pairs at or above the review threshold → {}",
        r.pairs_written,
        opts.pairs.display()
    );
    eprintln!(
        "  {} clusters; merge plan: {} groups absorbing {} records; {} pairs for review{}",
        r.clusters,
        r.merge_groups,
        r.merged_records,
        r.reviews,
        if r.refused_joins > 0 {
            format!("; the chain guard refused {} joins", r.refused_joins)
        } else {
            String::new()
        }
    );
    if let Some(peak) = peak_memory() {
        eprintln!("  peak memory {peak}");
    }
    match r.applied {
        Some(run) => eprintln!(
            "  applied to {} as run {run}: every merge can be undone with `leadgate unmerge`",
            opts.db
        ),
        None => eprintln!("  dry run: nothing was written to the store"),
    }
}

/// One line per blocking pass: its blocks, oversize blocks and proposed
/// pairs per record, and whether it was left out.
pub fn write_passes(
    f: &mut impl std::fmt::Write,
    passes: &[PassStats],
    records: usize,
) -> std::fmt::Result {
    for pass in passes {
        writeln!(
            f,
            "    pass {:<4} {:>9} blocks {:>6} oversize {:>8.2} pairs a record{}",
            pass.name,
            pass.blocks,
            pass.oversize,
            pass.pairs as f64 / records.max(1) as f64,
            if pass.dropped {
                " (left out: over dedupe.max_pairs_per_record)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// Which model compared the pairs, for reports.
pub fn describe_model(p: &Prepared) -> String {
    match &p.estimate {
        None => "the configured model (pinned)".into(),
        Some(Estimated::Skipped(why)) => format!("{why}: the configured model was used"),
        Some(e @ Estimated::Done(_)) => format!("estimated on this file: {}", describe_estimate(e)),
    }
}

/// What estimating did: the EM run, or why there was none.
pub fn describe_estimate(e: &Estimated) -> String {
    match e {
        Estimated::Skipped(why) => why.clone(),
        Estimated::Done(r) => format!(
            "EM over {} candidate pairs ({} iterations{}), u from {} random pairs; about {:.0} of the {:.0} candidate pairs are duplicates (prior {:.3e})",
            r.blocked_pairs,
            r.iterations,
            if r.converged { "" } else { ", not converged" },
            r.random_pairs,
            r.duplicates,
            r.candidate_pairs,
            r.prior
        ),
    }
}

/// The evidence of chosen pairs (indexes into `p.pairs`), from a fresh
/// instance of the dedupe component: for review items and for training.
pub fn explain(
    config: &Config,
    p: &Prepared,
    which: &[usize],
) -> Result<Vec<Vec<leadgate_lead::Evidence>>> {
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let dedupe = DeduperComponent::load(&runtime, &config.dedupe_component()?)?;
    let mut matcher = Matcher::new(&dedupe, p.settings.clone())?;
    let now = now_ms();
    let mut out = Vec::with_capacity(which.len());
    for chunk in which.chunks(COMPARE_BATCH) {
        let pairs: Vec<(u32, u32)> = chunk.iter().map(|&i| p.pair(i)).collect();
        for m in matcher.compare_pairs(&p.leads, &pairs, true, now) {
            out.push(m.map(|m| m.evidence).unwrap_or_default());
        }
    }
    Ok(out)
}

/// This process's peak resident memory (Linux), for the report.
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(format!("{:.0} MiB", kib / 1024.0))
}
