//! The enrich stage of a run: resolve each batch's lookups through the
//! provider chain (within the time budget, concurrently), call the enrich
//! component with those answers lent to it, fill what intake left empty,
//! and decide which leads must be enriched again later.
//!
//! Also: the provider chain from the config with its cache loaded from the
//! store, the cache written back, and the telemetry summary.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use leadgate_lead::enrich::{EnrichStatus, Enrichment, Outcome};
use leadgate_lead::{Issue, Lead, Severity};
use leadgate_providers::cache::Entry;
use leadgate_providers::chain::Chain;
use leadgate_providers::{Fetched, Kind, Prefetcher, ProviderStats, SharedAnswers};
use leadgate_runtime::enricher::LentLookups;
use leadgate_runtime::{CallError, EnricherComponent, EnricherInstance};
use leadgate_store::Store;
use leadgate_store::enrich::CacheRow;
use leadgate_store::prelude::*;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Whether enrichment may fill `field` when intake left it empty: an
/// enrichment field that is also a field of the lead record.
fn is_fillable(field: &str) -> bool {
    leadgate_lead::enrich::FIELDS.contains(&field) && leadgate_lead::TEXT_FIELDS.contains(&field)
}

/// The provider chain of `config`, its cache warmed from `store`.
pub fn chain(config: &Config, store: &Store) -> Result<Arc<Chain>> {
    let (chain, reports) = Chain::from_config(&config.enrich.providers, &config.base)?;
    for (name, kind, r) in reports {
        if r.skipped_total > 0 || r.duplicates > 0 {
            let first: Vec<String> = r
                .skipped
                .iter()
                .map(|(line, why)| format!("line {line}: {why}"))
                .collect();
            tracing::warn!(
                provider = %name,
                "{} data: loaded {} of {} rows; {} skipped ({}), {} duplicate keys ignored",
                kind.as_str(),
                r.loaded,
                r.rows,
                r.skipped_total,
                first.join("; "),
                r.duplicates
            );
        }
    }
    let oldest = chain
        .providers
        .iter()
        .map(|p| p.policy.cache_ttl + p.policy.stale_ttl)
        .max()
        .unwrap_or_default();
    if chain.has_remote() {
        let since =
            crate::clock::now_ms() - i64::try_from(oldest.as_millis()).unwrap_or(i64::MAX / 2);
        let rows = store.cache_rows(since)?;
        chain.cache.load(rows.into_iter().filter_map(entry_of_row));
    }
    Ok(Arc::new(chain))
}

fn entry_of_row(r: CacheRow) -> Option<Entry> {
    let kind = match r.kind.as_str() {
        "company" => Kind::Company,
        "person" => Kind::Person,
        _ => return None,
    };
    let value: Fetched = serde_json::from_str(&r.value).ok()?;
    Some(Entry {
        provider: r.provider,
        kind,
        key: r.key,
        value,
        fetched_at: r.fetched_at,
    })
}

/// Writes the chain's new cache entries to the store.
pub fn save_cache(chain: &Chain, store: &mut Store) -> Result<()> {
    let rows: Vec<CacheRow> = chain
        .cache
        .take_new()
        .into_iter()
        .filter_map(|e| {
            Some(CacheRow {
                provider: e.provider,
                kind: e.kind.as_str().to_string(),
                key: e.key,
                value: serde_json::to_string(&e.value).ok()?,
                fetched_at: e.fetched_at,
            })
        })
        .collect();
    store.save_cache(&rows)?;
    Ok(())
}

/// One lead's enrichment as the run uses it.
pub struct Enriched {
    pub enrichment: Enrichment,
    /// Why the lead goes to the re-enrichment queue, if it does.
    pub requeue: Option<String>,
}

/// Calls the enrich component with the providers' answers.
pub struct EnrichStage<'a> {
    component: &'a EnricherComponent,
    settings: String,
    instance: Option<EnricherInstance>,
    prefetcher: Prefetcher,
    budget: Duration,
}

impl<'a> EnrichStage<'a> {
    /// The stage with the tenant's enrich settings and concurrency from
    /// `config`, waiting at most `budget` per batch.
    pub fn for_tenant(
        component: &'a EnricherComponent,
        config: &Config,
        chain: Arc<Chain>,
        budget: Duration,
    ) -> Result<EnrichStage<'a>> {
        EnrichStage::new(
            component,
            config.enrich_settings()?,
            chain,
            config.enrich.concurrency,
            budget,
        )
    }

    pub fn new(
        component: &'a EnricherComponent,
        settings: String,
        chain: Arc<Chain>,
        concurrency: usize,
        budget: Duration,
    ) -> Result<EnrichStage<'a>> {
        let mut stage = EnrichStage {
            component,
            settings,
            instance: None,
            prefetcher: Prefetcher::new(chain, concurrency),
            budget,
        };
        match stage.instance() {
            Err(e @ CallError::Settings(_)) => {
                bail!("enrich component {}: {e}", component.path().display())
            }
            _ => Ok(stage),
        }
    }

    /// Waits up to one budget for lookups still under way (their answers
    /// reach the cache).
    pub fn settle(&self) {
        self.prefetcher.settle(self.budget);
    }

    fn instance(&mut self) -> Result<&mut EnricherInstance, CallError> {
        if self
            .instance
            .as_ref()
            .is_none_or(EnricherInstance::worn_out)
        {
            self.instance = None;
            self.instance = Some(self.component.instantiate(&self.settings)?);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| CallError::Instantiate("no instance".into()))
    }

    /// Enriches `leads` (normalized) in place: empty fields the enrichment
    /// found are filled. A component failure is contained to the leads that
    /// cause it.
    pub fn enrich(&mut self, leads: &mut [Lead], now: i64) -> Vec<Result<Enriched, CallError>> {
        if leads.is_empty() {
            return Vec::new();
        }
        let keys = lookup_keys(leads);
        let answers = SharedAnswers::new(self.prefetcher.prefetch(&keys, self.budget));
        let results = {
            let refs: Vec<&Lead> = leads.iter().collect();
            let answers = &answers;
            crate::isolate::isolate(
                self,
                &refs,
                |s, all| s.call(all, now, answers),
                |s, one| s.call(&[*one], now, answers).map(|mut v| v.remove(0)),
                |s| s.instance = None,
            )
        };
        let mut shared = answers.lock();
        self.prefetcher.fetch_later(&mut shared);
        leads
            .iter_mut()
            .zip(results)
            .map(|(lead, r)| {
                r.map(|enrichment| {
                    let requeue = requeue_reason(lead, &enrichment, &shared);
                    fill(lead, &enrichment);
                    Enriched {
                        enrichment,
                        requeue,
                    }
                })
            })
            .collect()
    }

    fn call(
        &mut self,
        leads: &[&Lead],
        now: i64,
        answers: &SharedAnswers,
    ) -> Result<Vec<Enrichment>, CallError> {
        let mut lent: Option<LentLookups> = Some(Box::new(answers.clone()));
        self.instance()?.enrich(leads, now, &mut lent)
    }
}

/// The lookups a batch of leads needs before the component runs: each
/// lead's person (by email) and company (by registrable domain).
pub fn lookup_keys(leads: &[Lead]) -> Vec<(Kind, String)> {
    let mut keys = Vec::with_capacity(leads.len() * 2);
    for l in leads {
        if let Some(e) = l.email.as_deref().filter(|e| e.contains('@')) {
            keys.push((Kind::Person, Kind::Person.normalize(e)));
        }
        if let Some(d) = l.domain.as_deref() {
            keys.push((Kind::Company, Kind::Company.normalize(d)));
        }
    }
    keys
}

/// Why a lead must be enriched again: a lookup for its own keys (or its
/// employer's domain) was pending, failed, or served stale, or the
/// component said so.
fn requeue_reason(
    lead: &Lead,
    e: &Enrichment,
    answers: &leadgate_providers::Answers,
) -> Option<String> {
    let mut asked: Vec<(Kind, String)> = Vec::new();
    if let Some(email) = lead.email.as_deref() {
        asked.push((Kind::Person, email.to_string()));
        if let Some((_, Some(Fetched::Person(p)))) = answers.get(Kind::Person, email)
            && let Some(d) = &p.company_domain
        {
            asked.push((Kind::Company, d.clone()));
        }
    }
    if let Some(domain) = lead.domain.as_deref() {
        asked.push((Kind::Company, domain.to_string()));
    }
    for (kind, key) in &asked {
        if let Some((p, _)) = answers.get(*kind, key) {
            let why = match p.outcome {
                Outcome::Pending => Some("pending"),
                Outcome::Unavailable => Some("unavailable"),
                Outcome::Found if p.stale => Some("stale"),
                _ => None,
            };
            if let Some(why) = why {
                return Some(format!("{why}: {} {key}", kind.as_str()));
            }
        }
    }
    e.issues
        .iter()
        .find(|i| {
            matches!(
                i.code.as_str(),
                "enrich.pending" | "enrich.unavailable" | "enrich.stale"
            )
        })
        .map(|i| format!("{}: {}", i.code.trim_start_matches("enrich."), i.field))
}

/// Fills the lead fields intake left empty with what enrichment found.
fn fill(lead: &mut Lead, e: &Enrichment) {
    for f in &e.fields {
        if !is_fillable(&f.field) {
            continue;
        }
        if let Some(slot) = lead.field_mut(&f.field)
            && slot.as_deref().is_none_or(|v| v.trim().is_empty())
        {
            *slot = Some(f.value.clone());
        }
    }
}

/// The issue for a lead the enrich component failed on: it goes on
/// unenriched, and is queued to be enriched again.
pub fn failure_issue(e: &CallError) -> Issue {
    Issue::new(
        "component",
        e.code(),
        Severity::Warning,
        format!("enrich component failed, the lead was not enriched (queued to try again): {e}"),
    )
}

/// The `enrichment` object of a result line (and of the store).
#[derive(Serialize)]
struct EnrichmentOut<'a> {
    status: EnrichStatus,
    fields: Fields<'a>,
    /// Why the lead was queued for re-enrichment.
    #[serde(skip_serializing_if = "Option::is_none")]
    requeued: Option<&'a str>,
}

/// The fields as an object keyed by field name, in the component's order.
struct Fields<'a>(&'a [leadgate_lead::enrich::EnrichedField]);

#[derive(Serialize)]
struct FieldOut<'a> {
    value: &'a str,
    source: &'a str,
    confidence: f64,
}

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|f| {
            (
                f.field.as_str(),
                FieldOut {
                    value: &f.value,
                    source: &f.source,
                    confidence: f.confidence,
                },
            )
        }))
    }
}

/// The enrichment as JSON, for the results and the store.
pub fn enrichment_json(
    e: &Enrichment,
    requeued: Option<&str>,
) -> Result<Box<serde_json::value::RawValue>> {
    serde_json::value::to_raw_value(&EnrichmentOut {
        status: e.status,
        fields: Fields(&e.fields),
        requeued,
    })
    .context("cannot encode an enrichment as JSON")
}

/// Prints each provider's telemetry.
pub fn print_stats(stats: &[ProviderStats]) {
    if stats.is_empty() {
        return;
    }
    eprintln!("enrichment providers:");
    for s in stats {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        let errors: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        eprintln!(
            "  {:<12} lookups {:>7} · found {} · not found {} · failed {} · success {} · cache hits {} · stale {} · attempts {} (retries {}) · p50 {:.1} ms p99 {:.1} ms{}{}",
            s.provider,
            s.lookups,
            s.found,
            s.not_found,
            s.failed,
            pct(s.success_rate()),
            pct(s.cache_hit_rate()),
            s.stale_served,
            s.attempts,
            s.retries,
            s.latency_ms.p50,
            s.latency_ms.p99,
            if s.circuit_opened > 0 {
                format!(" · circuit opened {}×", s.circuit_opened)
            } else {
                String::new()
            },
            if errors.is_empty() {
                String::new()
            } else {
                format!(" · errors: {}", errors.join(", "))
            }
        );
    }
}

/// Records the run's provider telemetry in the store.
pub fn save_stats(store: &Store, run_id: i64, stats: &[ProviderStats]) -> Result<()> {
    for s in stats {
        let json = serde_json::to_string(s).context("cannot encode provider stats")?;
        store.save_provider_stats(run_id, &s.provider, &json)?;
    }
    Ok(())
}
