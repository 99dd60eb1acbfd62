//! Enrichment providers: where the host gets what an enrich component asks
//! for (company by domain, person by email), and the policy every provider
//! runs under.
//!
//! - [`local`]: the embedded default, a firmographics data set (CSV or
//!   SQLite) keyed by domain, and optionally people keyed by email.
//! - [`http`]: any JSON API, from a URL template, an auth header taken from
//!   the environment and a response field mapping.
//! - [`limit`], [`retry`], [`breaker`], [`cache`]: a token bucket, retries
//!   with exponential backoff and jitter (honouring `Retry-After`), a
//!   circuit breaker, and a TTL cache that serves stale data when the
//!   provider fails.
//! - [`chain`]: one provider with its policy ([`chain::Guarded`]), and the
//!   tenant's providers in fallback order ([`chain::Chain`]).
//! - [`prefetch`]: resolves a batch's lookups concurrently within a time
//!   budget, answering the component from the results.
//! - [`telemetry`]: success rate, latency, cache hits and errors per provider.

pub mod breaker;
pub mod cache;
pub mod chain;
pub mod config;
pub mod http;
pub mod limit;
pub mod local;
pub mod prefetch;
pub mod retry;
pub mod telemetry;

pub use chain::{Chain, Guarded};
pub use config::{Policy, ProviderConfig};
pub use prefetch::{Answers, Prefetcher, SharedAnswers};
pub use telemetry::ProviderStats;

use leadgate_lead::enrich::{Company, Person};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A company, by registrable domain.
    Company,
    /// A person, by email address.
    Person,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Company => "company",
            Kind::Person => "person",
        }
    }

    /// The key as providers and caches see it: trimmed, lowercase, and for
    /// domains without a leading `www.`.
    pub fn normalize(self, key: &str) -> String {
        let k = key.trim().to_lowercase();
        match self {
            Kind::Company => k.strip_prefix("www.").map(str::to_string).unwrap_or(k),
            Kind::Person => k,
        }
    }
}

/// What a provider knows of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fetched {
    Company(Company),
    Person(Person),
    /// The provider answered and does not know the key.
    NotFound,
}

/// One failed attempt at a provider.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("rate limited (HTTP 429){}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("HTTP {status}{}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error(
        "circuit open: the provider failed {failures} times in a row; next try in {retry_in:?}"
    )]
    CircuitOpen { failures: u32, retry_in: Duration },
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    /// Whether trying again may help: timeouts, 5xx, 429 and dropped
    /// connections. A 4xx or a malformed body will not change on retry.
    pub fn retryable(&self) -> bool {
        match self {
            FetchError::Timeout(_) | FetchError::RateLimited { .. } | FetchError::Connection(_) => {
                true
            }
            FetchError::Status { status, .. } => *status >= 500 || *status == 408,
            FetchError::Malformed(_) | FetchError::CircuitOpen { .. } | FetchError::Other(_) => {
                false
            }
        }
    }

    /// Whether the failure says the provider is unhealthy (counts towards
    /// opening its circuit). Being rate limited does not: it is the
    /// provider working as designed, and is answered by waiting.
    pub fn unhealthy(&self) -> bool {
        match self {
            FetchError::Timeout(_) | FetchError::Connection(_) | FetchError::Malformed(_) => true,
            FetchError::Status { status, .. } => *status >= 500,
            FetchError::RateLimited { .. }
            | FetchError::CircuitOpen { .. }
            | FetchError::Other(_) => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::RateLimited { retry_after } | FetchError::Status { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A stable code for telemetry: `timeout`, `http_429`, `http_503`,
    /// `malformed`, `connection`, `circuit_open`, `other`.
    pub fn code(&self) -> String {
        match self {
            FetchError::Timeout(_) => "timeout".into(),
            FetchError::RateLimited { .. } => "http_429".into(),
            FetchError::Status { status, .. } => format!("http_{status}"),
            FetchError::Malformed(_) => "malformed".into(),
            FetchError::Connection(_) => "connection".into(),
            FetchError::CircuitOpen { .. } => "circuit_open".into(),
            FetchError::Other(_) => "other".into(),
        }
    }
}

/// One provider: answers one attempt for a key, no policy of its own (the
/// [`chain::Guarded`] wrapper adds rate limits, retries, breaker, cache).
pub trait Provider: Send + Sync {
    /// Which lookups it serves.
    fn serves(&self, kind: Kind) -> bool;
    /// Answers in microseconds from local data: asked inline, never queued,
    /// and not worth caching.
    fn is_local(&self) -> bool;
    /// One attempt.
    fn fetch(&self, kind: Kind, key: &str) -> Result<Fetched, FetchError>;
}

/// A provider could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("provider `{name}`: {reason}")]
    Config { name: String, reason: String },
    #[error("provider `{name}`: cannot read {path}: {reason}")]
    Data {
        name: String,
        path: String,
        reason: String,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
