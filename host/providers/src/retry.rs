//! The retry schedule (the shared `leadgate-backoff`, jittered by an RNG),
//! and a server's `Retry-After` read from its header.

use rand::Rng;
use std::time::{Duration, SystemTime};

/// The wait before retry `attempt` (0 for the first retry): the shared
/// schedule ([`leadgate_backoff::delay`]), jittered uniformly over the upper
/// half of the backoff so clients that failed together do not retry
/// together — but never less than the server's `Retry-After`.
pub fn delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    leadgate_backoff::delay(attempt, base, max, retry_after, rng.random_range(0.5..=1.0))
}

/// Parses a `Retry-After` value: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let mut rng = StdRng::seed_from_u64(1);
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 0..8 {
            let full = (100u64 << attempt).min(1000);
            for _ in 0..50 {
                let d = delay(attempt, base, max, None, &mut rng).as_millis() as u64;
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d} ms");
            }
        }
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let mut rng = StdRng::seed_from_u64(2);
        let d = delay(
            0,
            Duration::from_millis(100),
            Duration::from_secs(1),
            Some(Duration::from_secs(3)),
            &mut rng,
        );
        assert_eq!(d, Duration::from_secs(3));
        let d = delay(
            3,
            Duration::from_millis(100),
            Duration::from_secs(1),
            Some(Duration::from_millis(1)),
            &mut rng,
        );
        assert!(d >= Duration::from_millis(400));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
