//! One provider under its policy ([`Guarded`]: cache, circuit breaker,
//! token bucket, retries with backoff), and the tenant's providers in
//! fallback order ([`Chain`]).
//!
//! A lookup walks the chain: the first provider that finds the key answers.
//! One that does not know it passes to the next; one that fails (after its
//! retries) passes too, remembering its stale cache entry if it has one. If
//! nobody finds the key, a stale entry is served (flagged stale); with
//! neither, a failure makes the answer `unavailable` (queued for
//! re-enrichment) and otherwise it is `not-found`.

use crate::breaker::Breaker;
use crate::cache::{Cache, Hit};
use crate::config::{Policy, ProviderConfig, ProviderKind};
use crate::http::HttpProvider;
use crate::limit::TokenBucket;
use crate::local::{LoadReport, LocalProvider};
use crate::telemetry::{ProviderStats, Recorder};
use crate::{FetchError, Fetched, Kind, Provider, SetupError, now_ms};
use leadgate_lead::enrich::{Outcome, Provenance};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A provider with its policy and telemetry.
pub struct Guarded {
    pub name: String,
    provider: Box<dyn Provider>,
    pub policy: Policy,
    confidence: f64,
    bucket: TokenBucket,
    breaker: Breaker,
    stats: Recorder,
}

/// What asking one provider gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Found, or not found (`Fetched::NotFound`): fresh from the provider
    /// or its cache.
    Answered(Fetched),
    /// Failed after its retries; with the stale cache entry, if any.
    Failed {
        error: FetchError,
        stale: Option<Fetched>,
    },
}

impl Guarded {
    pub fn new(
        name: &str,
        provider: Box<dyn Provider>,
        policy: Policy,
        confidence: f64,
    ) -> Guarded {
        Guarded {
            name: name.to_string(),
            bucket: TokenBucket::new(policy.rate_per_second, policy.burst),
            breaker: Breaker::new(policy.breaker_failures, policy.breaker_cooldown),
            stats: Recorder::new(name),
            provider,
            policy,
            confidence,
        }
    }

    pub fn serves(&self, kind: Kind) -> bool {
        self.provider.serves(kind)
    }

    pub fn is_local(&self) -> bool {
        self.provider.is_local()
    }

    pub fn stats(&self) -> ProviderStats {
        let mut s = self.stats.snapshot();
        s.circuit_opened = self.breaker.times_opened();
        s
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    fn cache_get(&self, cache: &Cache, kind: Kind, key: &str) -> Hit {
        if self.is_local() {
            return Hit::Miss;
        }
        cache.get(
            &self.name,
            kind,
            key,
            self.policy.cache_ttl,
            self.policy.stale_ttl,
            now_ms(),
        )
    }

    fn counted(&self, step: Step) -> Step {
        self.stats.with(|s| {
            s.lookups += 1;
            match &step {
                Step::Answered(Fetched::NotFound) => s.not_found += 1,
                Step::Answered(_) => s.found += 1,
                Step::Failed { stale, .. } => {
                    s.failed += 1;
                    if stale.is_some() {
                        s.stale_served += 1;
                    }
                }
            }
        });
        step
    }

    /// Answers without waiting on the network, if it can: a local provider,
    /// or a fresh cache entry. `None`: only [`Guarded::ask`] can answer.
    pub fn ask_fast(&self, kind: Kind, key: &str, cache: &Cache) -> Option<Step> {
        if self.is_local() {
            return Some(self.counted(self.attempts(kind, key, cache)));
        }
        match self.cache_get(cache, kind, key) {
            Hit::Fresh(v) => {
                self.stats.with(|s| s.cache_hits += 1);
                Some(self.counted(Step::Answered(v)))
            }
            _ => None,
        }
    }

    /// Answers, from the cache when fresh, else from the provider under its
    /// policy, falling back on a stale entry when it fails.
    pub fn ask(&self, kind: Kind, key: &str, cache: &Cache) -> Step {
        if self.is_local() {
            return self.counted(self.attempts(kind, key, cache));
        }
        let stale = match self.cache_get(cache, kind, key) {
            Hit::Fresh(v) => {
                self.stats.with(|s| s.cache_hits += 1);
                return self.counted(Step::Answered(v));
            }
            Hit::Stale(v, _) => Some(v),
            Hit::Miss => None,
        };
        self.stats.with(|s| s.cache_misses += 1);
        let step = match self.attempts(kind, key, cache) {
            Step::Failed { error, .. } => Step::Failed { error, stale },
            answered => answered,
        };
        self.counted(step)
    }

    /// The provider, tried until it answers or the policy gives up.
    fn attempts(&self, kind: Kind, key: &str, cache: &Cache) -> Step {
        let mut rng = rand::rng();
        let mut attempt = 0u32;
        loop {
            if let Err((failures, retry_in)) = self.breaker.allow() {
                let error = FetchError::CircuitOpen { failures, retry_in };
                self.stats
                    .with(|s| *s.errors.entry(error.code()).or_default() += 1);
                return Step::Failed { error, stale: None };
            }
            if !self.is_local() {
                self.bucket.acquire_before(None);
            }
            let started = Instant::now();
            let result = self.provider.fetch(kind, key);
            let took = started.elapsed();
            match result {
                Ok(v) => {
                    self.stats.attempt(took, None);
                    self.breaker.success();
                    if !self.is_local() && !self.policy.cache_ttl.is_zero() {
                        cache.put(&self.name, kind, key, v.clone(), now_ms());
                    }
                    return Step::Answered(v);
                }
                Err(error) => {
                    self.stats.attempt(took, Some(error.code()));
                    if error.unhealthy() {
                        self.breaker.failure();
                    } else {
                        self.breaker.neutral();
                    }
                    let retry_after = error.retry_after();
                    if let Some(wait) = retry_after {
                        // The server asked every caller to wait, not just this one.
                        self.bucket.pause(wait.min(self.policy.max_retry_wait));
                    }
                    if !error.retryable() || attempt >= self.policy.max_retries {
                        return Step::Failed { error, stale: None };
                    }
                    let wait = crate::retry::delay(
                        attempt,
                        self.policy.backoff_base,
                        self.policy.backoff_max,
                        retry_after,
                        &mut rng,
                    );
                    if wait > self.policy.max_retry_wait {
                        return Step::Failed { error, stale: None };
                    }
                    tracing::debug!(provider = %self.name, key, %error, ?wait, attempt, "retrying");
                    std::thread::sleep(wait);
                    attempt += 1;
                    self.stats.with(|s| s.retries += 1);
                }
            }
        }
    }
}

/// What each local data set loaded: (provider, kind, report).
pub type LoadReports = Vec<(String, Kind, LoadReport)>;

/// A lookup's answer: provenance, and the record if found.
pub type Resolved = (Provenance, Option<Fetched>);

/// Where a lookup stands while walking the chain.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// The next provider to ask.
    next: usize,
    not_found_by: Option<String>,
    stale: Option<(String, Fetched, f64)>,
    last_error: Option<(String, FetchError)>,
}

/// The tenant's providers, in fallback order.
#[derive(Default)]
pub struct Chain {
    pub providers: Vec<Guarded>,
    pub cache: Arc<Cache>,
}

impl Chain {
    pub fn new(providers: Vec<Guarded>) -> Chain {
        Chain {
            providers,
            cache: Arc::new(Cache::new()),
        }
    }

    /// Builds the chain from `[[enrich.providers]]`; relative paths resolve
    /// against `base`. Returns what each local data set loaded.
    pub fn from_config(
        configs: &[ProviderConfig],
        base: &Path,
    ) -> Result<(Chain, LoadReports), SetupError> {
        let mut providers = Vec::new();
        let mut reports = Vec::new();
        for c in configs {
            if c.name.trim().is_empty() {
                return Err(SetupError::Config {
                    name: "(unnamed)".into(),
                    reason: "every provider needs a `name`".into(),
                });
            }
            if providers.iter().any(|p: &Guarded| p.name == c.name) {
                return Err(c.config_error("two providers have this name"));
            }
            let policy = c.policy()?;
            let (provider, confidence): (Box<dyn Provider>, f64) = match c.kind {
                ProviderKind::Local => {
                    let companies = c.companies.as_ref().map(|p| base.join(p));
                    let people = c.people.as_ref().map(|p| base.join(p));
                    let (p, r) =
                        LocalProvider::open(&c.name, companies.as_deref(), people.as_deref())?;
                    reports.extend(r.into_iter().map(|(k, r)| (c.name.clone(), k, r)));
                    (Box::new(p), c.confidence(0.9)?)
                }
                ProviderKind::Http => (
                    Box::new(HttpProvider::new(c, policy.timeout)?),
                    c.confidence(0.8)?,
                ),
            };
            providers.push(Guarded::new(&c.name, provider, policy, confidence));
        }
        Ok((Chain::new(providers), reports))
    }

    pub fn stats(&self) -> Vec<ProviderStats> {
        self.providers.iter().map(Guarded::stats).collect()
    }

    /// Whether any provider may need the network.
    pub fn has_remote(&self) -> bool {
        self.providers.iter().any(|p| !p.is_local())
    }

    fn take(&self, walk: &mut Walk, g: &Guarded, step: Step) -> Option<Resolved> {
        match step {
            Step::Answered(Fetched::NotFound) => {
                walk.not_found_by.get_or_insert_with(|| g.name.clone());
                None
            }
            Step::Answered(found) => Some((
                Provenance {
                    outcome: Outcome::Found,
                    source: g.name.clone(),
                    confidence: g.confidence,
                    stale: false,
                    detail: String::new(),
                },
                Some(found),
            )),
            Step::Failed { error, stale } => {
                if let (Some(v), None) = (stale, &walk.stale) {
                    walk.stale = Some((g.name.clone(), v, g.confidence));
                }
                walk.last_error = Some((g.name.clone(), error));
                None
            }
        }
    }

    /// Resolves what needs no waiting (local providers, fresh cache
    /// entries). `Err(walk)`: the rest needs [`Chain::resume`], off the hot
    /// path.
    pub fn resolve_fast(&self, kind: Kind, key: &str) -> Result<Resolved, Box<Walk>> {
        let mut walk = Box::<Walk>::default();
        while let Some(g) = self.providers.get(walk.next) {
            if !g.serves(kind) {
                walk.next += 1;
                continue;
            }
            let Some(step) = g.ask_fast(kind, key, &self.cache) else {
                return Err(walk);
            };
            walk.next += 1;
            if let Some(found) = self.take(&mut walk, g, step) {
                return Ok(found);
            }
        }
        Ok(self.conclude(*walk))
    }

    /// Finishes a lookup from where [`Chain::resolve_fast`] stopped.
    pub fn resume(&self, kind: Kind, key: &str, mut walk: Box<Walk>) -> Resolved {
        while let Some(g) = self.providers.get(walk.next) {
            walk.next += 1;
            if !g.serves(kind) {
                continue;
            }
            let step = g.ask(kind, key, &self.cache);
            if let Some(found) = self.take(&mut walk, g, step) {
                return found;
            }
        }
        self.conclude(*walk)
    }

    /// Resolves a lookup, waiting on providers as needed.
    pub fn resolve(&self, kind: Kind, key: &str) -> Resolved {
        match self.resolve_fast(kind, key) {
            Ok(r) => r,
            Err(walk) => self.resume(kind, key, walk),
        }
    }

    fn conclude(&self, walk: Walk) -> Resolved {
        let detail = walk
            .last_error
            .as_ref()
            .map(|(name, e)| format!("{name}: {e}"))
            .unwrap_or_default();
        if let Some((source, value, confidence)) = walk.stale {
            return (
                Provenance {
                    outcome: Outcome::Found,
                    source,
                    confidence,
                    stale: true,
                    detail,
                },
                Some(value),
            );
        }
        if walk.last_error.is_some() {
            let source = walk.last_error.map(|(n, _)| n).unwrap_or_default();
            return (
                Provenance::without(Outcome::Unavailable, &source, detail),
                None,
            );
        }
        match walk.not_found_by {
            Some(source) => (Provenance::without(Outcome::NotFound, &source, ""), None),
            None => (
                Provenance::without(
                    Outcome::NotFound,
                    leadgate_lead::enrich::NO_PROVIDER,
                    "no provider serves this lookup",
                ),
                None,
            ),
        }
    }
}
