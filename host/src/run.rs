//! `leadgate run`: ingest → normalize → validate → enrich → dedupe →
//! classify, one result line per input record, in input order, everything
//! recorded in the store. A validate failure sends the affected lead to the
//! exception queue; an enrich or dedupe failure leaves the lead unenriched
//! or unmatched (enrichment is queued to try again); processing goes on.

use crate::classify::{Classifier, Facts, Qualification, State};
use crate::config::Config;
use crate::enrich::{EnrichStage, Enriched};
use crate::matcher::{Decision, Matcher, Policy};
use crate::matching::{Found, Stage};
use anyhow::{Context, Result, bail};
use leadgate_ingest::{Format, Limits as IngestLimits, Mapping, Reader, Record as InputRecord};
use leadgate_lead::{CustomField, Issue, Lead, Severity, Source, Validation, Verdict};
use leadgate_providers::ProviderStats;
use leadgate_runtime::{
    CallError, DeduperComponent, EnricherComponent, Runtime, ValidatorComponent, ValidatorInstance,
};
use leadgate_store::{Link, LinkKind, Record, Review, Status, Store, Totals};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::time::{Duration, Instant};

/// What to run on.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A file path, or `-` for standard input.
    pub input: String,
    pub format: Option<Format>,
    pub map: Vec<String>,
    /// A file path, `-` for standard output, or empty for none.
    pub output: String,
    /// Source for records that do not name one.
    pub source: Source,
    /// Store path (`:memory:` for none kept).
    pub db: String,
    pub progress: bool,
    pub quiet: bool,
    /// `leadgate import`: existing CRM records, the base to match against.
    /// Records that fail validation still take part in matching.
    pub import: bool,
}

/// One line of `results.ndjson` (`docs/src/guide/output.md`).
#[derive(Serialize)]
struct OutputLine<'a> {
    line: u64,
    lead_id: &'a str,
    status: Status,
    issues: &'a [Issue],
    /// The master lead this one was merged into or linked to.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_of: Option<&'a str>,
    /// The probability of the best match at or above the review threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    match_probability: Option<f64>,
    /// The best match: decision, the other lead, evidence.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    found: Option<&'a Found>,
    /// What enrichment found, each field with its source and confidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    enrichment: Option<&'a serde_json::value::RawValue>,
    qualification: &'a Qualification,
    /// The lead, already serialized (it is stored in the same form).
    lead: Option<&'a serde_json::value::RawValue>,
}

/// Counts for the summary.
#[derive(Debug, Default)]
pub struct RunReport {
    pub run_id: i64,
    pub totals: Totals,
    pub issue_counts: BTreeMap<String, u64>,
    /// Leads per qualification state.
    pub states: BTreeMap<State, u64>,
    /// Leads per enrichment status, and queued for re-enrichment.
    pub enriched: BTreeMap<&'static str, u64>,
    pub providers: Vec<ProviderStats>,
    pub elapsed: Duration,
}

impl RunReport {
    /// Issue codes by frequency, most frequent first.
    pub fn top_issues(&self, n: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self
            .issue_counts
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }
}

/// Calls the validate component, replacing instances that fail or wear out
/// and isolating the lead that made a batch fail.
pub struct Validator<'a> {
    component: &'a ValidatorComponent,
    settings: String,
    instance: Option<ValidatorInstance>,
}

impl<'a> Validator<'a> {
    pub fn new(component: &'a ValidatorComponent, settings: String) -> Result<Validator<'a>> {
        let mut v = Validator {
            component,
            settings,
            instance: None,
        };
        // Fail fast on settings the component refuses.
        match v.instance() {
            Err(e @ CallError::Settings(_)) => {
                bail!("validate component {}: {e}", component.path().display())
            }
            _ => Ok(v),
        }
    }

    fn instance(&mut self) -> Result<&mut ValidatorInstance, CallError> {
        if self
            .instance
            .as_ref()
            .is_none_or(ValidatorInstance::worn_out)
        {
            self.instance = None;
            self.instance = Some(self.component.instantiate(&self.settings)?);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| CallError::Instantiate("no instance".into()))
    }

    /// Validates `leads` in one call; if the call fails, each lead again on
    /// its own so only the ones that fail become exceptions.
    pub fn validate(&mut self, leads: &[Lead], now: i64) -> Vec<Result<Validation, CallError>> {
        crate::isolate::isolate(
            self,
            leads,
            |v, all| v.instance().and_then(|i| i.validate_batch(all, now)),
            |v, lead| v.instance().and_then(|i| i.validate(lead, now)),
            |v| v.instance = None,
        )
    }
}

/// The components a pipeline runs, loaded once: validate, and dedupe and
/// enrich when the tenant has them on, with the classifier.
pub struct Components {
    pub runtime: Runtime,
    pub validate: ValidatorComponent,
    validate_path: std::path::PathBuf,
    pub dedupe: Option<(DeduperComponent, std::path::PathBuf)>,
    pub enrich: Option<(
        EnricherComponent,
        std::path::PathBuf,
        std::sync::Arc<leadgate_providers::Chain>,
    )>,
    pub classifier: Classifier,
}

impl Components {
    /// Loads the tenant's components; `enrich` false leaves enrichment out
    /// (an import loads the CRM's own base as it is).
    pub fn load(config: &Config, store: &Store, enrich: bool) -> Result<Components> {
        let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
        let validate_path = config.validate_component()?;
        let validate = ValidatorComponent::load(&runtime, &validate_path)?;
        let dedupe = if config.dedupe.enabled {
            let path = config.dedupe_component()?;
            Some((DeduperComponent::load(&runtime, &path)?, path))
        } else {
            None
        };
        let enrich = if config.enrich.enabled && enrich {
            let path = config.enrich_component()?;
            let component = EnricherComponent::load(&runtime, &path)?;
            let chain = crate::enrich::chain(config, store)?;
            Some((component, path, chain))
        } else {
            None
        };
        Ok(Components {
            runtime,
            validate,
            validate_path,
            dedupe,
            enrich,
            classifier: Classifier::new(config.classify.clone()),
        })
    }

    /// The matching stage, when dedupe is on.
    pub fn matching_stage<'a>(&'a self, config: &'a Config) -> Result<Option<Stage<'a>>> {
        Ok(match &self.dedupe {
            Some((component, _)) => Some(Stage::new(
                Matcher::new(component, config.dedupe_settings()?)?
                    .only_passes(&config.dedupe.store_passes),
                Policy::of(&config.dedupe),
                &config.tenant,
                config.dedupe.candidates_per_key,
                config.dedupe.max_candidates,
            )),
            None => None,
        })
    }

    /// The enrichment stage, when enrichment is on.
    pub fn enrich_stage<'a>(&'a self, config: &Config) -> Result<Option<EnrichStage<'a>>> {
        Ok(match &self.enrich {
            Some((component, _, chain)) => Some(EnrichStage::for_tenant(
                component,
                config,
                chain.clone(),
                Duration::from_millis(config.enrich.budget_ms),
            )?),
            None => None,
        })
    }

    /// Which component (path and digest) serves each capability, for the
    /// run's record.
    pub fn describe(&self) -> serde_json::Value {
        let mut components = serde_json::json!({
            "validate": {"path": self.validate_path.display().to_string(), "sha256": self.validate.digest()}
        });
        if let Some((d, path)) = &self.dedupe {
            components["dedupe"] =
                serde_json::json!({"path": path.display().to_string(), "sha256": d.digest()});
        }
        if let Some((e, path, _)) = &self.enrich {
            components["enrich"] =
                serde_json::json!({"path": path.display().to_string(), "sha256": e.digest()});
        }
        components
    }
}

/// One record processed by an [`Engine`].
pub struct Processed {
    pub lead_id: String,
    pub status: Status,
    /// The validate capability's own verdict.
    pub validation: Status,
    /// The dedupe decision, when the lead matched a stored one: `merge`,
    /// `link` or `review`.
    pub matched: Option<&'static str>,
    /// The enrichment status (`complete`, `partial`, ... or `component
    /// failed`), when enrichment ran.
    pub enrichment: Option<&'static str>,
    pub state: State,
    /// The result line, as `run` writes it to its results file.
    pub line: Box<serde_json::value::RawValue>,
    /// The lead as recorded, for scoring it without reading it back: set
    /// when it gets a score (accepted or in review, not a duplicate).
    pub recorded: Option<crate::score::Recorded>,
}

/// Leads validated, enriched, matched and classified, not yet recorded.
pub struct Prepared {
    outcomes: Vec<Outcome>,
    out: Vec<u8>,
    now: i64,
    source: Source,
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Keeps only the leads (by place, in order) for which `keep` holds:
    /// the others will not be recorded.
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let text = std::mem::take(&mut self.out);
        let mut out = Vec::with_capacity(text.len());
        let mut outcomes = Vec::with_capacity(self.outcomes.len());
        let lines = text.split(|b| *b == b'\n');
        for (i, (o, line)) in std::mem::take(&mut self.outcomes)
            .into_iter()
            .zip(lines)
            .enumerate()
        {
            if keep(i) {
                outcomes.push(o);
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        self.outcomes = outcomes;
        self.out = out;
    }
}

/// The second half of the pipeline: records prepared leads.
#[derive(Clone, Copy)]
pub struct Committer<'a> {
    config: &'a Config,
    loaded: &'a Components,
    run_id: i64,
}

impl<'a> Committer<'a> {
    /// What the pipeline's stages need to know about this tenant's run.
    fn context(&self, source: Source, now: i64) -> ChunkContext<'a> {
        ChunkContext {
            tenant: &self.config.tenant,
            source,
            now,
            component: self.loaded.validate.digest(),
            run_id: self.run_id,
            import: false,
            rules: &self.config.dedupe.survivorship,
            classifier: &self.loaded.classifier,
            enrich_component: self
                .loaded
                .enrich
                .as_ref()
                .map_or("", |(c, _, _)| c.digest()),
            chain: self.loaded.enrich.as_ref().map(|(_, _, c)| c.as_ref()),
        }
    }

    /// Records `p` in one transaction; one result per lead, in order.
    pub fn commit(&self, store: &mut Store, p: Prepared) -> Result<Vec<Processed>> {
        let Prepared {
            mut outcomes,
            out,
            now,
            source,
        } = p;
        let ctx = self.context(source, now);
        let mut results: Vec<Processed> = outcomes
            .iter_mut()
            .map(|o| Processed {
                lead_id: o.raw.id.clone(),
                status: o.status,
                validation: o.validation,
                matched: o
                    .found
                    .as_ref()
                    .map(|f| f.decision)
                    .filter(|d| *d != Decision::Distinct)
                    .map(Decision::as_str),
                enrichment: if o.enrich_failed {
                    Some("component failed")
                } else {
                    o.enriched.as_ref().map(|e| e.enrichment.status.as_str())
                },
                state: o.qualification.state,
                line: serde_json::value::RawValue::NULL.to_owned(),
                recorded: recorded(o),
            })
            .collect();
        flush(&ctx, store, &mut outcomes, None)?;
        let text = String::from_utf8(out).context("a result line is not UTF-8")?;
        for (p, line) in results.iter_mut().zip(text.lines()) {
            p.line = serde_json::value::RawValue::from_string(line.to_string())
                .context("a result line is not JSON")?;
        }
        Ok(results)
    }
}

/// What scoring reads of `o` once it is stored ([`Store::scoring_leads`]:
/// accepted or in review, no master, a normalized lead), or `None` if it
/// gets no score.
///
/// [`Store::scoring_leads`]: leadgate_store::Store::scoring_leads
fn recorded(o: &mut Outcome) -> Option<crate::score::Recorded> {
    if !matches!(o.status, Status::Accepted | Status::Review)
        || o.found
            .as_ref()
            .is_some_and(|f| matches!(f.decision, Decision::Merge | Decision::Link))
    {
        return None;
    }
    Some(crate::score::Recorded {
        id: o.raw.id.clone(),
        // Kept exactly when `normalized` is set (a lead that validated).
        lead: o.lead.take()?,
        // A failed enrichment is stored as `null`: no attributes.
        attributes: match (&o.enriched, o.enrich_failed) {
            (Some(e), false) => crate::score::attributes_of(&e.enrichment.fields),
            _ => Vec::new(),
        },
        qualification: Some(o.qualification.state.as_str().to_string()),
    })
}

/// The pipeline for records that arrive a few at a time (the service), in
/// two halves that can run in two threads: [`Engine::prepare`] validates,
/// enriches, matches and classifies a batch; its [`Committer`] records it.
pub struct Engine<'a> {
    config: &'a Config,
    loaded: &'a Components,
    validator: Validator<'a>,
    stage: Option<Stage<'a>>,
    enricher: Option<EnrichStage<'a>>,
    pub run_id: i64,
    pub report: RunReport,
}

impl<'a> Engine<'a> {
    /// Starts a run named `input` in the store.
    pub fn new(
        config: &'a Config,
        loaded: &'a Components,
        store: &Store,
        input: &str,
    ) -> Result<Engine<'a>> {
        let validator = Validator::new(&loaded.validate, config.validate_settings()?)?;
        let stage = loaded.matching_stage(config)?;
        let enricher = loaded.enrich_stage(config)?;
        let run_id = store.begin_run(
            &config.tenant,
            input,
            &loaded.describe().to_string(),
            now_ms(),
        )?;
        Ok(Engine {
            config,
            loaded,
            validator,
            stage,
            enricher,
            run_id,
            report: RunReport {
                run_id,
                ..RunReport::default()
            },
        })
    }

    /// The first half: validates, enriches, matches and classifies
    /// `records`; nothing is recorded yet. Matching sees the leads of
    /// earlier batches that are not recorded yet, until [`Engine::forget`].
    pub fn prepare(
        &mut self,
        store: &Store,
        mut records: Vec<InputRecord>,
        ids: &[String],
        source: Source,
    ) -> Result<Prepared> {
        let now = now_ms();
        let ctx = self.committer().context(source, now);
        let validated = validate_chunk(
            &ctx,
            &mut records,
            ids,
            &mut self.validator,
            self.enricher.as_mut(),
        )?;
        let mut out: Vec<u8> = Vec::new();
        let mut outcomes = Vec::with_capacity(records.len());
        finish_chunk(
            &ctx,
            validated,
            self.stage.as_mut(),
            store,
            &mut outcomes,
            &mut out,
            &mut self.report,
        )?;
        Ok(Prepared {
            outcomes,
            out,
            now,
            source,
        })
    }

    /// The oldest `n` leads prepared are recorded now.
    pub fn forget(&mut self, n: usize) {
        if let Some(stage) = self.stage.as_mut() {
            stage.forget_oldest(n);
        }
    }

    /// What records prepared leads: it can work in another thread.
    pub fn committer(&self) -> Committer<'a> {
        Committer {
            config: self.config,
            loaded: self.loaded,
            run_id: self.run_id,
        }
    }

    /// Records the run's totals so far under `status`.
    pub fn checkpoint(&self, store: &Store, status: &str) -> Result<()> {
        if let Some(chain) = self.loaded.enrich.as_ref().map(|(_, _, c)| c) {
            crate::enrich::save_stats(store, self.run_id, &chain.stats())?;
        }
        store.finish_run(self.run_id, &self.report.totals, status, now_ms())?;
        Ok(())
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn open_input(input: &str) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
    if input == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = std::fs::File::open(input).with_context(|| format!("cannot open input {input}"))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), len))
}

fn open_output(output: &str) -> Result<Box<dyn Write>> {
    if output.is_empty() {
        return Ok(Box::new(std::io::sink()));
    }
    if output == "-" {
        return Ok(Box::new(BufWriter::new(std::io::stdout().lock())));
    }
    let file =
        std::fs::File::create(output).with_context(|| format!("cannot create output {output}"))?;
    Ok(Box::new(BufWriter::with_capacity(256 * 1024, file)))
}

/// Runs the pipeline over one input.
pub fn run(config: &Config, opts: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let format = match opts.format {
        Some(f) => f,
        None if opts.input == "-" => Format::Csv,
        None => Format::from_path(&opts.input).with_context(|| {
            format!(
                "cannot tell the format of {} from its name: pass --format csv or --format ndjson",
                opts.input
            )
        })?,
    };
    let mapping = Mapping::parse(&opts.map)?;
    let (input, input_len) = open_input(&opts.input)?;
    let mut reader = Reader::new(input, format, mapping, IngestLimits::default())
        .with_context(|| format!("cannot read {}", opts.input))?;
    if !opts.quiet && format == Format::Csv {
        let cols: Vec<String> = reader
            .columns()
            .iter()
            .map(|(h, t)| format!("{h} → {t}"))
            .collect();
        eprintln!("columns: {}", cols.join(", "));
    }

    let mut store = Store::open(&opts.db)?;
    // New leads are enriched; an import loads the CRM's own base as it is.
    let loaded = Components::load(config, &store, !opts.import)?;
    let component = &loaded.validate;
    let mut validator = Validator::new(component, config.validate_settings()?)?;
    let mut stage = loaded.matching_stage(config)?;
    let mut enricher = loaded.enrich_stage(config)?;
    let chain = loaded.enrich.as_ref().map(|(_, _, c)| c.clone());
    let classifier = &loaded.classifier;
    let now = now_ms();
    let components = loaded.describe();
    let run_id = store.begin_run(&config.tenant, &opts.input, &components.to_string(), now)?;
    let mut out = open_output(&opts.output)?;

    let progress = progress_bar(opts.progress && !opts.quiet, input_len);
    let mut report = RunReport {
        run_id,
        ..RunReport::default()
    };
    let batch_size = config.limits.batch_size;
    let mut pending: Vec<Outcome> = Vec::with_capacity(STORE_BATCH + batch_size);
    let ctx = ChunkContext {
        tenant: &config.tenant,
        source: opts.source,
        now,
        component: component.digest(),
        run_id,
        import: opts.import,
        rules: &config.dedupe.survivorship,
        classifier,
        enrich_component: loaded.enrich.as_ref().map_or("", |(c, _, _)| c.digest()),
        chain: chain.as_deref(),
    };
    let bytes = reader.progress();
    // Two stages on two threads: reading and validation in one, matching,
    // results and the store in the other; chunks flow between them in order.
    // Room for two store batches, so reading and validation go on while the
    // other stage commits one.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Validated>>(
        (2 * STORE_BATCH).div_ceil(batch_size).max(4),
    );
    let (outcome, io_error) = std::thread::scope(|scope| {
        let ctx = &ctx;
        let worker = scope.spawn(move || {
            let mut chunk: Vec<InputRecord> = Vec::with_capacity(batch_size);
            loop {
                chunk.clear();
                let mut io_error = None;
                while chunk.len() < batch_size {
                    match reader.next_record() {
                        None => break,
                        Some(Ok(r)) => chunk.push(r),
                        Some(Err(e)) => {
                            io_error = Some(e);
                            break;
                        }
                    }
                }
                if chunk.is_empty() {
                    // Lookups still under way get one more budget to land in
                    // the cache, so re-enrichment need not ask again.
                    if let Some(e) = &enricher {
                        e.settle();
                    }
                    return io_error;
                }
                let validated =
                    validate_chunk(ctx, &mut chunk, &[], &mut validator, enricher.as_mut());
                let failed = validated.is_err();
                // A closed channel: the other stage stopped on an error.
                if tx.send(validated).is_err() || failed || io_error.is_some() {
                    return io_error;
                }
            }
        });
        let mut processed = || -> Result<()> {
            for validated in rx.iter() {
                finish_chunk(
                    ctx,
                    validated?,
                    stage.as_mut(),
                    &store,
                    &mut pending,
                    &mut out,
                    &mut report,
                )?;
                if pending.len() >= STORE_BATCH {
                    flush(ctx, &mut store, &mut pending, stage.as_mut())?;
                }
                progress.set_position(bytes.load(std::sync::atomic::Ordering::Relaxed));
            }
            Ok(())
        };
        let outcome = processed();
        // Stops the reading stage if this one stopped early.
        drop(rx);
        let io_error = match worker.join() {
            Ok(e) => e.map(anyhow::Error::from),
            Err(_) => Some(anyhow::anyhow!("the reading and validation stage panicked")),
        };
        (outcome, io_error)
    });
    progress.finish_and_clear();
    // Whatever was processed is recorded, even when the run stops on an error.
    let recorded = flush(&ctx, &mut store, &mut pending, stage.as_mut());
    if let Some(chain) = &chain {
        report.providers = chain.stats();
        crate::enrich::save_stats(&store, run_id, &report.providers)?;
    }
    let written = out.flush().context("cannot write the results");
    let failed = outcome.is_err() || recorded.is_err() || written.is_err() || io_error.is_some();
    store.finish_run(
        run_id,
        &report.totals,
        if failed { "failed" } else { "done" },
        now_ms(),
    )?;
    outcome.and(recorded).and(written)?;
    if let Some(e) = io_error {
        return Err(e).with_context(|| {
            format!(
                "reading {} stopped after {} records (those were processed and recorded in run {run_id})",
                opts.input, report.totals.total
            )
        });
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

struct ChunkContext<'a> {
    classifier: &'a Classifier,
    /// SHA-256 of the enrich component ("" when enrichment is off).
    enrich_component: &'a str,
    chain: Option<&'a leadgate_providers::Chain>,
    tenant: &'a str,
    source: Source,
    now: i64,
    component: &'a str,
    run_id: i64,
    import: bool,
    rules: &'a leadgate_merge::survivorship::Rules,
}

/// Leads recorded in the store per transaction: larger transactions mean
/// fewer commits and fewer rewrites of the same index pages.
const STORE_BATCH: usize = 2048;

/// What became of one input record.
struct Outcome {
    line: u64,
    raw: Lead,
    status: Status,
    /// The status validation gave, before dedupe.
    validation: Status,
    /// The normalized lead as JSON.
    normalized: Option<Box<serde_json::value::RawValue>>,
    /// The normalized lead itself (what `normalized` encodes), kept from
    /// matching on for scoring, which would otherwise parse the JSON.
    lead: Option<Lead>,
    issues: Vec<Issue>,
    exception: Option<(String, String)>,
    keys: Vec<i64>,
    found: Option<Found>,
    /// The match evidence as JSON, for the store.
    evidence: String,
    enriched: Option<Enriched>,
    /// The enrichment as JSON (results and store).
    enrichment: Option<Box<serde_json::value::RawValue>>,
    /// The enrich component failed on this lead.
    enrich_failed: bool,
    qualification: Qualification,
    /// The qualification reasons as JSON, for the store.
    reasons: String,
}

/// A chunk after reading and validation: every record's outcome so far,
/// and the normalized leads to match (with their place in `outcomes`).
struct Validated {
    outcomes: Vec<Outcome>,
    to_match: Vec<(usize, Lead)>,
}

/// The first stage: leads from records, validated.
fn validate_chunk(
    ctx: &ChunkContext<'_>,
    chunk: &mut [InputRecord],
    ids: &[String],
    validator: &mut Validator<'_>,
    enricher: Option<&mut EnrichStage<'_>>,
) -> Result<Validated> {
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(chunk.len());
    let mut to_validate: Vec<Lead> = Vec::new();
    let mut slots: Vec<usize> = Vec::new();
    for (i, record) in chunk.iter_mut().enumerate() {
        // Ids given in advance (the service's, logged with the request),
        // or new ones.
        let id = ids
            .get(i)
            .cloned()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        match &mut record.outcome {
            Ok(parsed) => {
                let mut lead = std::mem::take(&mut parsed.lead);
                lead.id = id;
                lead.tenant = ctx.tenant.to_string();
                if !parsed.has_received_at {
                    lead.received_at = ctx.now;
                }
                if !parsed.has_source {
                    lead.source = ctx.source;
                }
                slots.push(outcomes.len());
                to_validate.push(lead);
                outcomes.push(Outcome {
                    line: record.line,
                    // Moved in after validation, to spare a copy.
                    raw: Lead::default(),
                    status: Status::Exception,
                    validation: Status::Exception,
                    normalized: None,
                    lead: None,
                    issues: std::mem::take(&mut parsed.problems),
                    exception: None,
                    keys: Vec::new(),
                    found: None,
                    evidence: String::new(),
                    enriched: None,
                    enrichment: None,
                    enrich_failed: false,
                    qualification: unclassified(),
                    reasons: String::new(),
                });
            }
            Err(malformed) => {
                let raw = Lead {
                    id,
                    tenant: ctx.tenant.to_string(),
                    source: ctx.source,
                    received_at: ctx.now,
                    custom: vec![CustomField {
                        key: "raw_record".into(),
                        value: std::mem::take(&mut malformed.raw),
                    }],
                    ..Lead::default()
                };
                outcomes.push(Outcome {
                    line: record.line,
                    raw,
                    status: Status::Rejected,
                    validation: Status::Rejected,
                    normalized: None,
                    lead: None,
                    issues: vec![Issue::new(
                        "record",
                        malformed.code,
                        Severity::Error,
                        malformed.message.clone(),
                    )],
                    exception: None,
                    keys: Vec::new(),
                    found: None,
                    evidence: String::new(),
                    enriched: None,
                    enrichment: None,
                    enrich_failed: false,
                    qualification: unclassified(),
                    reasons: String::new(),
                });
            }
        }
    }

    let results = validator.validate(&to_validate, ctx.now);
    let mut valid: Vec<(usize, Lead)> = Vec::new();
    for ((slot, result), raw) in slots.into_iter().zip(results).zip(to_validate) {
        let o = &mut outcomes[slot];
        o.raw = raw;
        match result {
            Ok(v) => {
                // Problems found while reading can only make a verdict stricter.
                let read_warning = o.issues.iter().any(|i| i.severity >= Severity::Warning);
                o.status = match v.verdict {
                    Verdict::Reject => Status::Rejected,
                    Verdict::Review => Status::Review,
                    Verdict::Accept if read_warning => Status::Review,
                    Verdict::Accept => Status::Accepted,
                };
                o.validation = o.status;
                o.issues.extend(v.issues);
                valid.push((slot, v.lead));
            }
            Err(e) => {
                let message = format!("validate component failed: {e}");
                o.issues.push(Issue::new(
                    "component",
                    e.code(),
                    Severity::Error,
                    message.clone(),
                ));
                o.exception = Some((e.code().to_string(), message));
            }
        }
    }

    // Enrichment, for leads that passed validation.
    if let Some(enricher) = enricher {
        let (slots, mut leads): (Vec<usize>, Vec<Lead>) = valid
            .iter_mut()
            .filter(|(slot, _)| matches!(outcomes[*slot].status, Status::Accepted | Status::Review))
            .map(|(slot, lead)| (*slot, std::mem::take(lead)))
            .unzip();
        let results = enricher.enrich(&mut leads, ctx.now);
        let mut back = slots
            .iter()
            .copied()
            .zip(leads)
            .collect::<BTreeMap<usize, Lead>>();
        for (slot, r) in slots.into_iter().zip(results) {
            let o = &mut outcomes[slot];
            match r {
                Ok(e) => {
                    o.issues.extend(e.enrichment.issues.iter().cloned());
                    o.enrichment = Some(crate::enrich::enrichment_json(
                        &e.enrichment,
                        e.requeue.as_deref(),
                    )?);
                    o.enriched = Some(e);
                }
                Err(e) => {
                    o.issues.push(crate::enrich::failure_issue(&e));
                    o.enrich_failed = true;
                }
            }
        }
        for (slot, lead) in valid.iter_mut() {
            if let Some(l) = back.remove(slot) {
                *lead = l;
            }
        }
    }

    let mut to_match: Vec<(usize, Lead)> = Vec::with_capacity(valid.len());
    for (slot, lead) in valid {
        let o = &mut outcomes[slot];
        o.normalized =
            Some(serde_json::value::to_raw_value(&lead).context("cannot encode a lead as JSON")?);
        to_match.push((slot, lead));
    }
    Ok(Validated { outcomes, to_match })
}

/// The state of a lead not classified yet.
fn unclassified() -> Qualification {
    Qualification {
        state: State::NeedsReview,
        reasons: Vec::new(),
    }
}

/// Classifies every outcome of a chunk; `leads` are the normalized leads
/// by slot.
fn classify(
    ctx: &ChunkContext<'_>,
    outcomes: &mut [Outcome],
    leads: &BTreeMap<usize, &Lead>,
) -> Result<()> {
    for (slot, o) in outcomes.iter_mut().enumerate() {
        let q = ctx.classifier.classify(&Facts {
            status: o.status,
            validation: o.validation,
            lead: leads.get(&slot).copied(),
            enrichment: o.enriched.as_ref().map(|e| &e.enrichment),
            issues: &o.issues,
            pending: o.enriched.as_ref().is_some_and(|e| e.requeue.is_some()),
            enrich_failed: o.enrich_failed,
            exception: o.exception.as_ref().map(|(code, _)| code.as_str()),
        });
        o.reasons = serde_json::to_string(&q.reasons).context("cannot encode reasons")?;
        o.qualification = q;
    }
    Ok(())
}

/// The second stage: matching, the results file, the counts; outcomes
/// queued for the store.
fn finish_chunk(
    ctx: &ChunkContext<'_>,
    validated: Validated,
    stage: Option<&mut Stage<'_>>,
    store: &Store,
    pending: &mut Vec<Outcome>,
    out: &mut dyn Write,
    report: &mut RunReport,
) -> Result<()> {
    let Validated {
        mut outcomes,
        to_match,
    } = validated;
    let (all_slots, all_leads): (Vec<usize>, Vec<Lead>) = to_match.into_iter().unzip();
    if let Some(stage) = stage {
        // Rejected leads take part in matching only in an import.
        let (slots, leads): (Vec<usize>, Vec<&Lead>) = all_slots
            .iter()
            .zip(&all_leads)
            .filter(|(slot, _)| match outcomes[**slot].status {
                Status::Accepted | Status::Review => true,
                Status::Rejected => ctx.import,
                Status::Exception | Status::Duplicate => false,
            })
            .map(|(slot, lead)| (*slot, lead))
            .unzip();
        let matched = stage.match_leads(store, &leads, ctx.now)?;
        for (slot, m) in slots.into_iter().zip(matched) {
            let o = &mut outcomes[slot];
            o.keys = m.keys;
            if let Some(e) = m.error {
                o.issues.push(Issue::new(
                    "component",
                    e.code(),
                    Severity::Warning,
                    format!("dedupe component failed, the lead was not matched: {e}"),
                ));
            }
            if let Some(found) = m.found {
                apply_match(o, found)?;
            }
        }
    }

    let by_slot: BTreeMap<usize, &Lead> = all_slots.iter().copied().zip(&all_leads).collect();
    classify(ctx, &mut outcomes, &by_slot)?;
    for (slot, lead) in all_slots.into_iter().zip(all_leads) {
        outcomes[slot].lead = Some(lead);
    }

    // Counted and queued for the store first: if writing the results fails,
    // what was processed is still recorded.
    for o in &outcomes {
        *report.states.entry(o.qualification.state).or_default() += 1;
        if let Some(e) = &o.enriched {
            *report
                .enriched
                .entry(e.enrichment.status.as_str())
                .or_default() += 1;
            if e.requeue.is_some() {
                *report.enriched.entry("queued").or_default() += 1;
            }
        } else if o.enrich_failed {
            *report.enriched.entry("component failed").or_default() += 1;
            *report.enriched.entry("queued").or_default() += 1;
        }
        let t = &mut report.totals;
        t.total += 1;
        match o.status {
            Status::Accepted => t.accepted += 1,
            Status::Rejected => t.rejected += 1,
            Status::Review => t.review += 1,
            Status::Exception => t.exceptions += 1,
            Status::Duplicate => t.duplicates += 1,
        }
        for i in &o.issues {
            *report.issue_counts.entry(i.code.clone()).or_default() += 1;
        }
    }
    let first = pending.len();
    pending.extend(outcomes);
    for o in &pending[first..] {
        // An exception's result carries the lead as it was read.
        let raw_json = match o.status {
            Status::Exception => Some(
                serde_json::value::to_raw_value(&o.raw).context("cannot encode a lead as JSON")?,
            ),
            _ => None,
        };
        let line = OutputLine {
            line: o.line,
            lead_id: &o.raw.id,
            status: o.status,
            issues: &o.issues,
            duplicate_of: o
                .found
                .as_ref()
                .filter(|f| matches!(f.decision, Decision::Merge | Decision::Link))
                .map(|f| f.with.as_str()),
            match_probability: o.found.as_ref().map(|f| f.probability),
            found: o.found.as_ref(),
            enrichment: o.enrichment.as_deref(),
            qualification: &o.qualification,
            lead: raw_json.as_deref().or(o.normalized.as_deref()),
        };
        serde_json::to_writer(&mut *out, &line).context("cannot write the results")?;
        out.write_all(b"\n").context("cannot write the results")?;
    }
    Ok(())
}

/// Applies a match to a lead's outcome: its status, an issue saying why,
/// and the evidence for the store.
fn apply_match(o: &mut Outcome, found: Found) -> Result<()> {
    o.evidence = serde_json::to_string(&found.evidence).context("cannot encode match evidence")?;
    match found.decision {
        Decision::Merge | Decision::Link => {
            o.status = Status::Duplicate;
            o.issues.push(Issue::new(
                "lead",
                "dedupe.duplicate",
                Severity::Info,
                format!(
                    "the same person as lead {} (probability {:.3}): {}",
                    found.with,
                    found.probability,
                    if found.decision == Decision::Merge {
                        "merged into its golden record"
                    } else {
                        "linked to it (auto-merge is off)"
                    }
                ),
            ));
        }
        Decision::Review => {
            if o.status == Status::Accepted {
                o.status = Status::Review;
            }
            let (code, message) = match &found.consent_conflict {
                Some(purpose) => (
                    "dedupe.consent_conflict",
                    format!(
                        "probably the same person as lead {} (probability {:.3}), but one of them withdrew consent for '{purpose}': never merged without a review; the opt-out wins",
                        found.with, found.probability
                    ),
                ),
                None => (
                    "dedupe.possible_duplicate",
                    format!(
                        "may be the same person as lead {} (probability {:.3}): queued for review",
                        found.with, found.probability
                    ),
                ),
            };
            o.issues
                .push(Issue::new("lead", code, Severity::Warning, message));
        }
        Decision::Distinct => {}
    }
    o.found = Some(found);
    Ok(())
}

/// Records processed leads in the store in one transaction.
fn flush(
    ctx: &ChunkContext<'_>,
    store: &mut Store,
    pending: &mut Vec<Outcome>,
    stage: Option<&mut Stage<'_>>,
) -> Result<()> {
    let records: Vec<Record<'_>> = pending
        .iter()
        .map(|o| Record {
            line: o.line,
            raw: &o.raw,
            status: o.status,
            validation: o.validation,
            normalized: o
                .normalized
                .as_deref()
                .map(serde_json::value::RawValue::get),
            issues: &o.issues,
            exception: o.exception.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
            keys: &o.keys,
            link: o.found.as_ref().and_then(|f| match f.decision {
                Decision::Merge | Decision::Link => Some(Link {
                    master: &f.with,
                    kind: if f.decision == Decision::Merge {
                        LinkKind::Merge
                    } else {
                        LinkKind::Link
                    },
                    probability: f.probability,
                    evidence: &o.evidence,
                    decided_by: "auto",
                }),
                _ => None,
            }),
            review: o.found.as_ref().and_then(|f| match f.decision {
                Decision::Review => Some(Review {
                    other: &f.with,
                    probability: f.probability,
                    evidence: &o.evidence,
                    reason: if f.consent_conflict.is_some() {
                        "consent_conflict"
                    } else {
                        "uncertain"
                    },
                }),
                _ => None,
            }),
            enrichment: if o.enrich_failed {
                Some(leadgate_store::enrich::Enriched {
                    component: ctx.enrich_component,
                    status: "failed",
                    json: "null",
                    requeue: Some("component failed"),
                })
            } else {
                o.enriched
                    .as_ref()
                    .map(|e| leadgate_store::enrich::Enriched {
                        component: ctx.enrich_component,
                        status: e.enrichment.status.as_str(),
                        json: o
                            .enrichment
                            .as_deref()
                            .map_or("null", serde_json::value::RawValue::get),
                        requeue: e.requeue.as_deref(),
                    })
            },
            qualification: Some(leadgate_store::enrich::Qualified {
                state: o.qualification.state.as_str(),
                reasons: &o.reasons,
            }),
        })
        .collect();
    store.record(ctx.run_id, "validate", ctx.component, &records, ctx.now)?;
    if let Some(chain) = ctx.chain {
        crate::enrich::save_cache(chain, store)?;
    }
    let mut merged: Vec<String> = pending
        .iter()
        .filter_map(|o| o.found.as_ref())
        .filter(|f| f.decision == Decision::Merge)
        .map(|f| f.with.clone())
        .collect();
    merged.sort();
    merged.dedup();
    crate::matching::refresh_golden(store, ctx.tenant, &merged, ctx.rules, ctx.now)?;
    if let Some(stage) = stage {
        stage.flushed();
    }
    pending.clear();
    Ok(())
}

fn progress_bar(enabled: bool, len: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled {
        return ProgressBar::hidden();
    }
    let target = ProgressDrawTarget::stderr_with_hz(10);
    match len {
        Some(len) => {
            let bar = ProgressBar::with_draw_target(Some(len), target);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta})",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => ProgressBar::with_draw_target(None, target),
    }
}

/// The summary printed at the end of a run.
pub fn print_summary(report: &RunReport, opts: &RunOptions) {
    let t = &report.totals;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "leadgate {} {}: {} records in {:.2} s ({:.0}/s)",
        if opts.import { "import" } else { "run" },
        report.run_id,
        t.total,
        secs,
        t.total as f64 / secs
    );
    for (name, n) in [
        ("accepted", t.accepted),
        ("review", t.review),
        ("rejected", t.rejected),
        ("duplicate", t.duplicates),
        ("exception", t.exceptions),
    ] {
        eprintln!("  {name:<10} {n:>9}");
    }
    if !report.states.is_empty() {
        let states: Vec<String> = report
            .states
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        eprintln!("qualification: {}", states.join(" · "));
    }
    if !report.enriched.is_empty() {
        let e: Vec<String> = report
            .enriched
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        eprintln!("enrichment: {}", e.join(" · "));
    }
    crate::enrich::print_stats(&report.providers);
    let top = report.top_issues(10);
    if !top.is_empty() {
        eprintln!("top issues:");
        for (code, n) in top {
            eprintln!("  {code:<28} {n:>9}");
        }
    }
    if opts.output.is_empty() {
        eprintln!("store: {}", opts.db);
    } else {
        eprintln!("results: {} · store: {}", opts.output, opts.db);
    }
    if t.exceptions > 0 {
        eprintln!(
            "{} lead(s) are in the exception queue: `leadgate exceptions` lists them",
            t.exceptions
        );
    }
}
