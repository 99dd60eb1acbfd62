//! Per-provider telemetry: lookups and their outcomes, attempts, retries,
//! errors by code, cache hits, stale answers served, circuit openings, and
//! the latency of every attempt (p50/p90/p99/max).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// What a provider did, as reported and stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderStats {
    pub provider: String,
    /// Lookups that reached this provider.
    pub lookups: u64,
    /// ... answered `found` (fresh from the provider or its cache).
    pub found: u64,
    pub not_found: u64,
    /// ... that failed (after retries), whether or not stale data was served.
    pub failed: u64,
    /// Requests sent (first tries and retries).
    pub attempts: u64,
    pub retries: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub stale_served: u64,
    pub circuit_opened: u64,
    /// Failed attempts by code (`timeout`, `http_503`, `http_429`, ...).
    pub errors: BTreeMap<String, u64>,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl ProviderStats {
    /// Of the lookups that reached the provider (not served from cache),
    /// the share that got an answer (found or not found).
    pub fn success_rate(&self) -> Option<f64> {
        let asked = self.found + self.not_found + self.failed;
        let answered = self.found + self.not_found;
        (asked > 0).then(|| answered as f64 / asked as f64)
    }

    pub fn cache_hit_rate(&self) -> Option<f64> {
        let n = self.cache_hits + self.cache_misses;
        (n > 0).then(|| self.cache_hits as f64 / n as f64)
    }
}

/// Counters updated from many threads.
#[derive(Default)]
pub struct Recorder {
    /// The counters, and the newest latencies (µs) in a ring.
    inner: Mutex<(ProviderStats, Vec<u32>)>,
}

/// Latencies kept per provider for percentiles (the newest win).
const MAX_SAMPLES: usize = 100_000;

impl Recorder {
    pub fn new(provider: &str) -> Recorder {
        let r = Recorder::default();
        r.with(|s| s.provider = provider.to_string());
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (ProviderStats, Vec<u32>)> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn with(&self, f: impl FnOnce(&mut ProviderStats)) {
        f(&mut self.lock().0);
    }

    /// One attempt and how long it took; `error` is its code if it failed.
    pub fn attempt(&self, took: Duration, error: Option<String>) {
        let mut g = self.lock();
        g.0.attempts += 1;
        if let Some(code) = error {
            *g.0.errors.entry(code).or_default() += 1;
        }
        let sample = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        if g.1.len() < MAX_SAMPLES {
            g.1.push(sample);
        } else {
            // A ring: attempt n overwrites attempt n - MAX_SAMPLES.
            let at = (g.0.attempts as usize - 1) % MAX_SAMPLES;
            g.1[at] = sample;
        }
    }

    pub fn snapshot(&self) -> ProviderStats {
        let g = self.lock();
        let mut stats = g.0.clone();
        let mut lat = g.1.clone();
        lat.sort_unstable();
        let pick = |q: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
            f64::from(lat[i]) / 1000.0
        };
        stats.latency_ms = Latency {
            p50: pick(0.50),
            p90: pick(0.90),
            p99: pick(0.99),
            max: pick(1.0),
        };
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let r = Recorder::new("api");
        for ms in 1..=100u64 {
            r.attempt(
                Duration::from_millis(ms),
                (ms > 95).then(|| "timeout".into()),
            );
        }
        r.with(|s| {
            s.found = 8;
            s.not_found = 1;
            s.failed = 1;
            s.cache_hits = 3;
            s.cache_misses = 1;
        });
        let s = r.snapshot();
        assert_eq!(s.attempts, 100);
        assert_eq!(s.errors["timeout"], 5);
        assert_eq!(s.latency_ms.p50, 50.0);
        assert_eq!(s.latency_ms.p99, 99.0);
        assert_eq!(s.latency_ms.max, 100.0);
        assert_eq!(s.success_rate(), Some(0.9));
        assert_eq!(s.cache_hit_rate(), Some(0.75));
    }
}
