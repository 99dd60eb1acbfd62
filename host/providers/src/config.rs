//! A provider's configuration, one `[[enrich.providers]]` table in
//! `leadgate.toml`, and the policy it runs under. Every policy key has a
//! default; mistakes are refused with the provider's name and the key.

use crate::{Kind, SetupError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// A data set on disk: `companies` and/or `people`, CSV or SQLite.
    Local,
    /// A JSON API over HTTP(S).
    Http,
}

/// One `[[enrich.providers]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Shown in provenance, telemetry and errors; the cache is keyed by it.
    pub name: String,
    pub kind: ProviderKind,

    /// local: companies keyed by domain (`.csv`, or `.db`/`.sqlite` with a
    /// `companies` table); columns in `docs/src/capabilities/enrich.md`.
    pub companies: Option<PathBuf>,
    /// local: people keyed by email (`.csv`, or SQLite with a `people` table).
    pub people: Option<PathBuf>,

    /// http: what the API looks up: `company` (URL has `{domain}`) or
    /// `person` (URL has `{email}`).
    pub lookup: Option<Kind>,
    /// http: the URL template; `{domain}` / `{email}` are URL-encoded in.
    pub url: Option<String>,
    /// http: the header carrying the credential (default `Authorization`).
    pub auth_header: Option<String>,
    /// http: the environment variable holding the credential. The secret
    /// never goes in the file.
    pub auth_env: Option<String>,
    /// http: put before the credential, e.g. `Bearer `.
    #[serde(default)]
    pub auth_prefix: String,
    /// http: other headers sent as they are.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// http: JSON pointer to the record in the response (default: the root).
    #[serde(default)]
    pub record: String,
    /// http: field → JSON pointer (relative to `record`), e.g.
    /// `industry = "/category/industry"`. `technologies` may point at an
    /// array of strings or a comma-separated string.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// http: statuses meaning "the API does not know this key" (default 404).
    pub not_found_status: Option<Vec<u16>>,

    /// How far to trust this provider's data, 0 to 1 (default 0.9 local,
    /// 0.8 http).
    pub confidence: Option<f64>,

    // The policy (defaults in [`Policy::default`]).
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub max_retry_wait_ms: Option<u64>,
    pub breaker_failures: Option<u32>,
    pub breaker_cooldown_ms: Option<u64>,
    pub cache_ttl_secs: Option<u64>,
    pub stale_ttl_secs: Option<u64>,
}

/// How a provider is called.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Requests per second, sustained (token bucket refill); retries count.
    pub rate_per_second: f64,
    /// Requests allowed at once after a quiet spell (bucket size).
    pub burst: u32,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// Attempts after the first, on retryable failures only.
    pub max_retries: u32,
    /// Backoff before retry n: min(max, base·2ⁿ), with full jitter on its
    /// upper half.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this is not waited for: the lookup
    /// fails now (stale cache, next provider, or re-enrichment later).
    pub max_retry_wait: Duration,
    /// Consecutive unhealthy failures that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one trial call.
    pub breaker_cooldown: Duration,
    /// How long an answer is fresh. Zero: no cache.
    pub cache_ttl: Duration,
    /// How long past its TTL an answer may still be served when the
    /// provider fails.
    pub stale_ttl: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            rate_per_second: 10.0,
            burst: 10,
            timeout: Duration::from_millis(2_000),
            max_retries: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            max_retry_wait: Duration::from_secs(10),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(30 * 86_400),
            stale_ttl: Duration::from_secs(365 * 86_400),
        }
    }
}

impl ProviderConfig {
    fn err(&self, reason: impl Into<String>) -> SetupError {
        SetupError::Config {
            name: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// The policy with this provider's overrides, checked.
    pub fn policy(&self) -> Result<Policy, SetupError> {
        let d = Policy::default();
        let ms = Duration::from_millis;
        let p = Policy {
            rate_per_second: self.rate_per_second.unwrap_or(d.rate_per_second),
            burst: self.burst.unwrap_or(d.burst),
            timeout: self.timeout_ms.map_or(d.timeout, ms),
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            backoff_base: self.backoff_base_ms.map_or(d.backoff_base, ms),
            backoff_max: self.backoff_max_ms.map_or(d.backoff_max, ms),
            max_retry_wait: self.max_retry_wait_ms.map_or(d.max_retry_wait, ms),
            breaker_failures: self.breaker_failures.unwrap_or(d.breaker_failures),
            breaker_cooldown: self.breaker_cooldown_ms.map_or(d.breaker_cooldown, ms),
            cache_ttl: self.cache_ttl_secs.map_or(d.cache_ttl, Duration::from_secs),
            stale_ttl: self.stale_ttl_secs.map_or(d.stale_ttl, Duration::from_secs),
        };
        if !(p.rate_per_second.is_finite() && p.rate_per_second > 0.0) {
            return Err(self.err(format!(
                "rate_per_second must be above 0, not {}",
                p.rate_per_second
            )));
        }
        if p.burst == 0 {
            return Err(self.err("burst must be at least 1"));
        }
        if p.timeout.is_zero() {
            return Err(self.err("timeout_ms must be at least 1"));
        }
        if p.breaker_failures == 0 {
            return Err(self.err("breaker_failures must be at least 1"));
        }
        if p.backoff_base > p.backoff_max {
            return Err(self.err(format!(
                "backoff_base_ms ({:?}) must not be above backoff_max_ms ({:?})",
                p.backoff_base, p.backoff_max
            )));
        }
        Ok(p)
    }

    /// The configured confidence, checked.
    pub fn confidence(&self, default: f64) -> Result<f64, SetupError> {
        let c = self.confidence.unwrap_or(default);
        if (0.0..=1.0).contains(&c) {
            Ok(c)
        } else {
            Err(self.err(format!("confidence must be between 0 and 1, not {c}")))
        }
    }

    pub(crate) fn config_error(&self, reason: impl Into<String>) -> SetupError {
        self.err(reason)
    }
}
