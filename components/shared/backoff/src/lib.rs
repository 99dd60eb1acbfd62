//! The retry schedule every retrying part of leadgate uses — enrichment
//! providers, CRM handoff, the edge forwarding to the core: exponential
//! backoff from `base`, capped at `max`, jittered, and never shorter than
//! what the server asked for (`Retry-After`). It is a pure function of its
//! inputs: the caller brings the randomness (the host a seeded or thread
//! RNG, a component what it has), so it links into guests and hosts alike
//! and tests are exact.

use std::time::Duration;

/// The wait before retry `attempt` (0 for the first retry):
/// min(`max`, `base`·2ⁿ) scaled by `jitter` (clamped to 0.5–1: callers
/// that failed together spread over the upper half of the backoff, so they
/// do not retry together; 1 is no jitter), but never less than
/// `retry_after`.
pub fn delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    let capped = exp.min(max);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.5, 1.0)
    } else {
        1.0
    };
    let jittered = capped.mul_f64(jitter);
    match retry_after {
        Some(ra) if ra > jittered => ra,
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_the_base_and_stops_at_the_cap() {
        let got: Vec<u128> = (0..8)
            .map(|a| delay(a, 100 * MS, 1000 * MS, None, 1.0).as_millis())
            .collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(delay(u32::MAX, 100 * MS, 1000 * MS, None, 1.0), 1000 * MS);
    }

    #[test]
    fn jitter_spreads_over_the_upper_half_only() {
        assert_eq!(delay(2, 100 * MS, 1000 * MS, None, 0.5), 200 * MS);
        assert_eq!(delay(2, 100 * MS, 1000 * MS, None, 0.75), 300 * MS);
        assert_eq!(delay(2, 100 * MS, 1000 * MS, None, 0.1), 200 * MS);
        assert_eq!(delay(2, 100 * MS, 1000 * MS, None, 7.0), 400 * MS);
        assert_eq!(delay(2, 100 * MS, 1000 * MS, None, f64::NAN), 400 * MS);
    }

    #[test]
    fn a_longer_retry_after_wins() {
        let asked = Some(Duration::from_secs(3));
        assert_eq!(
            delay(0, 100 * MS, 1000 * MS, asked, 1.0),
            Duration::from_secs(3)
        );
        assert_eq!(delay(3, 100 * MS, 1000 * MS, Some(MS), 1.0), 800 * MS);
    }
}
