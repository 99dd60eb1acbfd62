//! A circuit breaker: after `threshold` unhealthy failures in a row the
//! circuit opens and calls fail at once for `cooldown`; then one trial call
//! is let through (half-open). Its success closes the circuit, its failure
//! opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
    opened: u64,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner {
                failures: 0,
                opened_at: None,
                trial_in_flight: false,
                opened: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn state(&self) -> State {
        let g = self.lock();
        match g.opened_at {
            None => State::Closed,
            Some(at) if at.elapsed() < self.cooldown => State::Open,
            Some(_) => State::HalfOpen,
        }
    }

    /// May a call go through now? `Err(consecutive failures, time until a
    /// trial)` when the circuit is open or its trial call is under way.
    pub fn allow(&self) -> Result<(), (u32, Duration)> {
        let mut g = self.lock();
        match g.opened_at {
            None => Ok(()),
            Some(at) => {
                let since = at.elapsed();
                if since < self.cooldown {
                    Err((g.failures, self.cooldown - since))
                } else if g.trial_in_flight {
                    Err((g.failures, Duration::ZERO))
                } else {
                    g.trial_in_flight = true;
                    Ok(())
                }
            }
        }
    }

    /// A call succeeded (or failed in a way that says nothing of health).
    pub fn success(&self) {
        let mut g = self.lock();
        g.failures = 0;
        g.opened_at = None;
        g.trial_in_flight = false;
    }

    /// An unhealthy failure; `true` if it opened the circuit.
    pub fn failure(&self) -> bool {
        let mut g = self.lock();
        g.failures = g.failures.saturating_add(1);
        let trial_failed = g.trial_in_flight;
        g.trial_in_flight = false;
        if trial_failed || (g.opened_at.is_none() && g.failures >= self.threshold) {
            g.opened_at = Some(Instant::now());
            g.opened += 1;
            true
        } else {
            false
        }
    }

    /// A call let through ended without saying anything of health (e.g.
    /// rate limited): a half-open trial slot is freed for the next caller.
    pub fn neutral(&self) {
        self.lock().trial_in_flight = false;
    }

    /// How many times the circuit has opened.
    pub fn times_opened(&self) -> u64 {
        self.lock().opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_half_opens_then_closes() {
        let b = Breaker::new(3, Duration::from_millis(40));
        for _ in 0..2 {
            assert!(b.allow().is_ok());
            assert!(!b.failure());
        }
        assert!(b.allow().is_ok());
        assert!(b.failure(), "third failure opens");
        assert_eq!(b.state(), State::Open);
        let (failures, wait) = b.allow().unwrap_err();
        assert_eq!(failures, 3);
        assert!(wait <= Duration::from_millis(40));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.allow().is_ok(), "one trial");
        assert!(b.allow().is_err(), "only one trial at a time");
        b.success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn a_failed_trial_opens_again() {
        let b = Breaker::new(1, Duration::from_millis(20));
        assert!(b.failure());
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow().is_ok());
        assert!(b.failure());
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.times_opened(), 2);
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(1));
        assert!(!b.failure());
        b.success();
        assert!(!b.failure());
        assert_eq!(b.state(), State::Closed);
    }
}
