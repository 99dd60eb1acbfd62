//! The pipeline engine `leadgate run` and `leadgate serve` share: a batch
//! of input records validated, enriched, matched and classified
//! ([`Engine::prepare`]), then recorded in the store ([`Committer`]),
//! with one result line per record. A validate failure sends the affected
//! lead to the exception queue; an enrich or dedupe failure leaves the lead
//! unenriched or unmatched (enrichment is queued to try again).

use crate::classify::{Classifier, Facts, Qualification, State};
use crate::clock::now_ms;
use crate::config::Config;
use crate::enrich::{EnrichStage, Enriched};
use crate::matcher::{Decision, Matcher, Policy};
use crate::matching::{Found, Stage};
use anyhow::{Context, Result, bail};
use leadgate_ingest::Record as InputRecord;
use leadgate_lead::{CustomField, Issue, Lead, Severity, Source, Validation, Verdict};
use leadgate_providers::ProviderStats;
use leadgate_runtime::{
    CallError, DeduperComponent, EnricherComponent, Runtime, ValidatorComponent, ValidatorInstance,
};
use leadgate_store::prelude::*;
use leadgate_store::{Link, LinkKind, Record, Review, Status, Store, Totals};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

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
    /// Leads prepared.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether no lead was prepared.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
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

pub struct ChunkContext<'a> {
    pub classifier: &'a Classifier,
    /// SHA-256 of the enrich component ("" when enrichment is off).
    pub enrich_component: &'a str,
    pub chain: Option<&'a leadgate_providers::Chain>,
    pub tenant: &'a str,
    pub source: Source,
    pub now: i64,
    pub component: &'a str,
    pub run_id: i64,
    pub import: bool,
    pub rules: &'a leadgate_merge::survivorship::Rules,
}

/// Leads recorded in the store per transaction: larger transactions mean
/// fewer commits and fewer rewrites of the same index pages.
pub const STORE_BATCH: usize = 2048;

/// What became of one input record.
pub struct Outcome {
    pub line: u64,
    pub raw: Lead,
    pub status: Status,
    /// The status validation gave, before dedupe.
    pub validation: Status,
    /// The normalized lead as JSON.
    pub normalized: Option<Box<serde_json::value::RawValue>>,
    /// The normalized lead itself (what `normalized` encodes), kept from
    /// matching on for scoring, which would otherwise parse the JSON.
    pub lead: Option<Lead>,
    pub issues: Vec<Issue>,
    pub exception: Option<(String, String)>,
    pub keys: Vec<i64>,
    pub found: Option<Found>,
    /// The match evidence as JSON, for the store.
    pub evidence: String,
    pub enriched: Option<Enriched>,
    /// The enrichment as JSON (results and store).
    pub enrichment: Option<Box<serde_json::value::RawValue>>,
    /// The enrich component failed on this lead.
    pub enrich_failed: bool,
    pub qualification: Qualification,
    /// The qualification reasons as JSON, for the store.
    pub reasons: String,
}

impl Outcome {
    /// A record as read, before validation or anything after it: `status`
    /// for now (validation's too), with the issues reading found.
    fn read(line: u64, raw: Lead, status: Status, issues: Vec<Issue>) -> Outcome {
        Outcome {
            line,
            raw,
            status,
            validation: status,
            normalized: None,
            lead: None,
            issues,
            exception: None,
            keys: Vec::new(),
            found: None,
            evidence: String::new(),
            enriched: None,
            enrichment: None,
            enrich_failed: false,
            qualification: unclassified(),
            reasons: String::new(),
        }
    }
}

/// A chunk after reading and validation: every record's outcome so far,
/// and the normalized leads to match (with their place in `outcomes`).
pub struct Validated {
    pub outcomes: Vec<Outcome>,
    pub to_match: Vec<(usize, Lead)>,
}

/// The first stage: leads from records, validated.
pub fn validate_chunk(
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
                outcomes.push(Outcome::read(
                    record.line,
                    // Moved in after validation, to spare a copy.
                    Lead::default(),
                    Status::Exception,
                    std::mem::take(&mut parsed.problems),
                ));
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
                outcomes.push(Outcome::read(
                    record.line,
                    raw,
                    Status::Rejected,
                    vec![Issue::new(
                        "record",
                        malformed.code,
                        Severity::Error,
                        malformed.message.clone(),
                    )],
                ));
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
pub fn finish_chunk(
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
pub fn flush(
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
