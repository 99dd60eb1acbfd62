//! `leadgate enrich --queued`: works through the re-enrichment queue —
//! leads whose lookups were pending, failed or served stale when they were
//! processed, or that the enrich component failed on. Each is enriched
//! again (with a longer budget), reclassified, and updated in the store;
//! leads still waiting on a provider stay queued, with one more attempt
//! counted.

use crate::classify::{Classifier, Facts, State};
use crate::config::Config;
use crate::enrich::EnrichStage;
use anyhow::{Context, Result};
use leadgate_lead::Lead;
use leadgate_runtime::{EnricherComponent, Runtime};
use leadgate_store::enrich::{Enriched, Qualified};
use leadgate_store::prelude::*;
use leadgate_store::{Status, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

pub struct Options {
    pub db: String,
    /// Leads taken from the queue at most.
    pub limit: usize,
    /// How long each batch waits for its lookups.
    pub budget: Duration,
    /// Where each lead's new enrichment and state go (NDJSON), if anywhere.
    pub output: Option<String>,
    pub quiet: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub taken: usize,
    pub done: usize,
    pub still_queued: usize,
    pub unreadable: usize,
    pub states: BTreeMap<State, u64>,
}

#[derive(Serialize)]
struct Line<'a> {
    lead_id: &'a str,
    enrichment: &'a serde_json::value::RawValue,
    qualification: &'a crate::classify::Qualification,
}

pub fn run(config: &Config, opts: &Options) -> Result<Report> {
    let mut store = Store::open(&opts.db)?;
    let queued = store.enrich_queue(&config.tenant, opts.limit)?;
    let mut report = Report {
        taken: queued.len(),
        ..Report::default()
    };
    if queued.is_empty() {
        return Ok(report);
    }
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let path = config.enrich_component()?;
    let component = EnricherComponent::load(&runtime, &path)?;
    let chain = crate::enrich::chain(config, &store)?;
    let mut stage = EnrichStage::for_tenant(&component, config, chain.clone(), opts.budget)?;
    let classifier = Classifier::new(config.classify.clone());
    let mut out: Option<Box<dyn Write>> = match opts.output.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::BufWriter::new(std::io::stdout().lock()))),
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?,
        ))),
    };
    let now = crate::clock::now_ms();
    for batch in queued.chunks(config.limits.batch_size) {
        let mut ids = Vec::new();
        let mut leads = Vec::new();
        let mut statuses = Vec::new();
        for q in batch {
            let lead: Option<Lead> = q
                .normalized
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok());
            match lead {
                Some(l) => {
                    ids.push(q.lead_id.as_str());
                    statuses.push(Status::parse(&q.status).unwrap_or(Status::Review));
                    leads.push(l);
                }
                None => {
                    // Nothing to enrich from: it stays queued for a person to look at.
                    report.unreadable += 1;
                    tracing::warn!(lead = %q.lead_id, "queued for re-enrichment, but its normalized record cannot be read");
                }
            }
        }
        let results = stage.enrich(&mut leads, now);
        for (((id, lead), status), result) in ids.into_iter().zip(&leads).zip(statuses).zip(results)
        {
            let (validation, issues) = store.lead_facts(id)?;
            let validation = validation
                .as_deref()
                .and_then(Status::parse)
                .unwrap_or(status);
            let (enriched, failed) = match result {
                Ok(e) => (Some(e), false),
                Err(e) => {
                    tracing::warn!(lead = %id, "enrich component failed again: {e}");
                    (None, true)
                }
            };
            let q = classifier.classify(&Facts {
                status,
                validation,
                lead: Some(lead),
                enrichment: enriched.as_ref().map(|e| &e.enrichment),
                issues: &issues,
                pending: enriched.as_ref().is_some_and(|e| e.requeue.is_some()),
                enrich_failed: failed,
                exception: None,
            });
            let requeue = match &enriched {
                Some(e) => e.requeue.clone(),
                None => Some("component failed".to_string()),
            };
            let json = match &enriched {
                Some(e) => crate::enrich::enrichment_json(&e.enrichment, requeue.as_deref())?,
                None => serde_json::value::to_raw_value(&serde_json::Value::Null)?,
            };
            let reasons = serde_json::to_string(&q.reasons)?;
            let normalized = serde_json::to_string(lead)?;
            store.update_enrichment(
                id,
                &config.tenant,
                Some(&normalized),
                &Enriched {
                    component: component.digest(),
                    status: enriched
                        .as_ref()
                        .map_or("failed", |e| e.enrichment.status.as_str()),
                    json: json.get(),
                    requeue: requeue.as_deref(),
                },
                &Qualified {
                    state: q.state.as_str(),
                    reasons: &reasons,
                },
                now,
            )?;
            if requeue.is_some() {
                report.still_queued += 1;
            } else {
                report.done += 1;
            }
            *report.states.entry(q.state).or_default() += 1;
            if let Some(out) = out.as_mut() {
                serde_json::to_writer(
                    &mut *out,
                    &Line {
                        lead_id: id,
                        enrichment: &json,
                        qualification: &q,
                    },
                )?;
                out.write_all(b"\n")?;
            }
        }
        crate::enrich::save_cache(&chain, &mut store)?;
    }
    if let Some(out) = out.as_mut() {
        out.flush().context("cannot write the results")?;
    }
    let stats = chain.stats();
    if !opts.quiet {
        crate::enrich::print_stats(&stats);
    }
    Ok(report)
}
