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

mod apply;
mod blocking;
mod estimation;
mod report;

use apply::*;
use blocking::*;
use estimation::*;
pub use estimation::{Decisions, LeadsEstimate, estimate_on_leads};
use leadgate_store::prelude::*;
use report::*;
pub use report::{describe_estimate, describe_model, explain, print_report, write_passes};

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
    let (mut reader, size) = open_input(input)?;

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
    let probabilities = compare_pairs(
        &mut matcher,
        &p.leads,
        &pairs,
        input.quiet,
        now,
        &mut p.stats,
    );
    p.stats.compare = compare_started.elapsed();
    p.pairs = pairs;
    p.probabilities = probabilities;
    Ok(p)
}

/// Opens the input, tells its format, and refuses a file the matcher has
/// nothing to read in (no header, no lead column, no truth column asked
/// for). Returns the reader and the file's size, for progress.
fn open_input(input: &Input) -> Result<(Reader, Option<u64>)> {
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
    let reader = Reader::new(Box::new(file), format, mapping, IngestLimits::default())
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
    Ok((reader, size))
}

/// The probability of each candidate pair (0 for a pair the component
/// failed on, counted in `stats`), compared in batches of pairs that share
/// their leads.
fn compare_pairs(
    matcher: &mut Matcher<'_>,
    leads: &[Lead],
    pairs: &[u64],
    quiet: bool,
    now: i64,
    stats: &mut Stats,
) -> Vec<f32> {
    let bar = progress(quiet, Some(pairs.len() as u64), "comparing");
    let mut probabilities: Vec<f32> = Vec::with_capacity(pairs.len());
    let mut local: Vec<u32> = vec![u32::MAX; leads.len()];
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
                    pool.push(&leads[r as usize]);
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
                    stats.compare_failures += 1;
                    probabilities.push(0.0);
                }
            }
        }
        bar.inc(block.len() as u64);
    }
    bar.finish_and_clear();
    probabilities
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
        let applied = store.is_some();
        write_clusters(
            path,
            config,
            &prepared,
            &review_clusters,
            &merge_clusters,
            kind,
            applied,
        )?;
    }

    let merged_records: usize = merge_clusters.groups.iter().map(|g| g.len() - 1).sum();
    if let (Some(store), Some(run_id)) = (store.as_mut(), run_id) {
        let plan = Plan {
            merge_clusters: &merge_clusters,
            reviews: &reviews,
            kind,
            merged_records,
        };
        apply_plan(store, run_id, config, &prepared, &plan)?;
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
