//! Forwarding inside a time budget: which answers of the core count as
//! accepted, which are worth another attempt, and how long to wait.

/// What the core's answer means for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the core has the submission (logged under its idempotency key).
    Accepted,
    /// 408, 425, 429 or 5xx, or no answer: try again while the budget lasts.
    Retry,
    /// Any other answer: the same request would get it again.
    Refused,
}

pub fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Accepted,
        408 | 425 | 429 | 500..=599 => Outcome::Retry,
        _ => Outcome::Refused,
    }
}

/// The wait before attempt `attempt + 1` (0-based `attempt` just failed):
/// the shared schedule ([`leadgate_backoff::delay`]) from 50 ms doubling to
/// at most 800 ms, not jittered (one request's retries inside its own
/// budget), or what the core's `Retry-After` asks (seconds) when that is
/// longer. `None` when the wait would not leave `min_attempt_ms` of the
/// `remaining_ms` budget for the next attempt.
pub fn wait_ms(
    attempt: u32,
    retry_after_s: Option<u64>,
    remaining_ms: u64,
    min_attempt_ms: u64,
) -> Option<u64> {
    let wait = leadgate_backoff::delay(
        attempt,
        std::time::Duration::from_millis(50),
        std::time::Duration::from_millis(800),
        retry_after_s.map(std::time::Duration::from_secs),
        1.0,
    );
    let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    (wait.saturating_add(min_attempt_ms) <= remaining_ms).then_some(wait)
}

/// The `Retry-After` the edge gives its sender when the core could not be
/// reached: what the core asked for, else 5 seconds.
pub fn retry_after(core_asked_s: Option<u64>) -> u64 {
    core_asked_s.unwrap_or(5).clamp(1, 3_600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert_eq!(outcome(200), Outcome::Accepted);
        assert_eq!(outcome(202), Outcome::Accepted);
        assert_eq!(outcome(429), Outcome::Retry);
        assert_eq!(outcome(503), Outcome::Retry);
        assert_eq!(outcome(401), Outcome::Refused);
        assert_eq!(outcome(422), Outcome::Refused);
    }

    #[test]
    fn waits_grow_and_stay_inside_the_budget() {
        assert_eq!(wait_ms(0, None, 4_000, 100), Some(50));
        assert_eq!(wait_ms(1, None, 4_000, 100), Some(100));
        assert_eq!(wait_ms(9, None, 4_000, 100), Some(800));
        assert_eq!(wait_ms(0, Some(2), 4_000, 100), Some(2_000));
        assert_eq!(wait_ms(0, Some(5), 4_000, 100), None);
        assert_eq!(wait_ms(3, None, 450, 100), None);
        assert_eq!(retry_after(None), 5);
        assert_eq!(retry_after(Some(0)), 1);
    }
}
