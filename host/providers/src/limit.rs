//! A provider's rate limit: at most `burst` requests at once, `rate` per
//! second sustained, shared by every thread calling one provider (a
//! `governor` limiter). A server's `Retry-After` pauses the whole bucket,
//! not just the request that got it.

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TokenBucket {
    limiter: RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>,
    clock: DefaultClock,
    pause: Mutex<Pause>,
}

/// A server asked us to wait.
#[derive(Default)]
struct Pause {
    /// No token is handed out before this.
    until: Option<Instant>,
    /// The tokens that came in during the pause are dropped when it ends,
    /// so the burst does not fire the moment it does.
    drain: bool,
}

impl TokenBucket {
    /// A full bucket. A rate that is not a positive number allows one
    /// request an hour.
    pub fn new(rate_per_second: f64, burst: u32) -> TokenBucket {
        let period = if rate_per_second.is_finite() && rate_per_second > 0.0 {
            Duration::from_secs_f64(1.0 / rate_per_second)
        } else {
            Duration::from_secs(3600)
        };
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        TokenBucket {
            limiter: RateLimiter::direct(quota),
            clock: DefaultClock::default(),
            pause: Mutex::new(Pause::default()),
        }
    }

    /// Takes a token if one is there now; else how long until one is.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        {
            let mut p = match self.pause.lock() {
                Ok(p) => p,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some(until) = p.until {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                p.until = None;
            }
            if std::mem::take(&mut p.drain) {
                while self.limiter.check().is_ok() {}
            }
        }
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
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
        let mut p = match self.pause.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        let until = Instant::now() + wait;
        if p.until.is_none_or(|u| u < until) {
            p.until = Some(until);
        }
        p.drain = true;
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
