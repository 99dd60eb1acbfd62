//! A token bucket: at most `burst` requests at once, `rate` per second
//! sustained, shared by every thread calling one provider. A server's
//! `Retry-After` pauses the whole bucket, not just the request that got it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

struct State {
    tokens: f64,
    last: Instant,
    /// No token is handed out before this (a server asked us to wait).
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: f64, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: rate_per_second,
            burst: f64::from(burst.max(1)),
            state: Mutex::new(State {
                tokens: f64::from(burst.max(1)),
                last: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// Takes a token if one is there now; else how long until one is.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        if let Some(until) = s.paused_until {
            if now < until {
                return Err(until - now);
            }
            s.paused_until = None;
        }
        let elapsed = now.duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.rate).min(self.burst);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.tokens) / self.rate))
        }
    }

    /// Waits for a token, but not past `deadline`: `false` if it would.
    pub fn acquire_before(&self, deadline: Option<Instant>) -> bool {
        loop {
            match self.try_acquire() {
                Ok(()) => return true,
                Err(wait) => {
                    if deadline.is_some_and(|d| Instant::now() + wait > d) {
                        return false;
                    }
                    std::thread::sleep(wait.max(Duration::from_micros(100)));
                }
            }
        }
    }

    /// Hands out no token for `wait` (a `Retry-After`); the bucket is also
    /// emptied, so the burst does not fire the moment the pause ends.
    pub fn pause(&self, wait: Duration) {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let until = Instant::now() + wait;
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
        s.tokens = 0.0;
        s.last = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let b = TokenBucket::new(100.0, 5);
        for _ in 0..5 {
            assert!(b.try_acquire().is_ok());
        }
        let wait = b.try_acquire().unwrap_err();
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        let start = Instant::now();
        for _ in 0..10 {
            assert!(b.acquire_before(None));
        }
        // Ten more tokens at 100/s take about 100 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(85),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_pause_holds_every_caller_and_a_deadline_gives_up() {
        let b = TokenBucket::new(1000.0, 10);
        b.pause(Duration::from_millis(50));
        assert!(b.try_acquire().is_err());
        assert!(!b.acquire_before(Some(Instant::now() + Duration::from_millis(10))));
        let start = Instant::now();
        assert!(b.acquire_before(None));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
