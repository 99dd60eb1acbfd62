//! The open-loop load generator the HTTP benchmarks share (`bench serve`,
//! `bench edge`): requests are *due* at a fixed rate, sent from a pool of
//! keep-alive connections, and each one's latency is measured from when it
//! was due — not when it was sent — so a server that falls behind shows it
//! (no coordinated omission).

use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shape of the load.
pub struct Load {
    /// Requests per second.
    pub rate: f64,
    pub concurrency: usize,
    pub duration: Duration,
    /// Sent first and not measured.
    pub warmup: Duration,
    /// Most requests to send (the bodies prepared).
    pub max_requests: u64,
}

/// What a run measured (warm-up left out).
pub struct Measured {
    /// Latencies, sorted.
    pub latencies: Vec<Duration>,
    /// Latencies by answer status, sorted (0: no answer).
    pub by_status: BTreeMap<u16, Vec<Duration>>,
    /// Seconds from the end of the warm-up to the last answer.
    pub seconds: f64,
    /// Each measured request: seconds from the end of the warm-up to when
    /// it was due, and its latency; in order of when they were due.
    pub timeline: Vec<(f64, Duration)>,
}

impl Measured {
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status).map_or(0, |v| v.len() as u64)
    }
}

/// The `p` quantile (0–1) of sorted `v`.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The `p` quantile (0–1) of `v`, sorting it first.
pub fn percentile_of(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    percentile(v, p)
}

/// Milliseconds, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// An answer's status, its body read to the end so the connection can be
/// reused; 0 when no answer came.
pub fn status_of(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> u16 {
    match r {
        Ok(mut resp) => {
            let _ = resp.body_mut().read_to_string();
            resp.status().as_u16()
        }
        Err(_) => 0,
    }
}

/// A client for a load: every answer returned whatever its status, and
/// each step of a request (connect, send, wait, read) under a timeout of
/// its own — not one over the whole request. ureq resolves the address
/// on every request, pooled connection or not, and under an overall
/// timeout it resolves in a new thread so it can give up: a thread
/// started and ended per request, which the server under test then
/// competes with for the same cores. Without one, an address such as
/// `127.0.0.1:port` is resolved in place, by parsing it.
pub fn agent() -> ureq::Agent {
    let step = Some(Duration::from_secs(60));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_send_request(step)
        .timeout_send_body(step)
        .timeout_recv_response(step)
        .timeout_recv_body(step)
        .build()
        .into()
}

/// Sends request `i` with the given connection and returns the answer's
/// status (0 when no answer came).
pub type Sender = Arc<dyn Fn(&ureq::Agent, u64) -> u16 + Send + Sync>;

/// Sends request `i` with `send(agent, i)` (returning the status, 0 when no
/// answer came) when it is due; `tick` runs about once a second while the
/// load runs (sampling memory, say).
pub fn open_loop(load: &Load, send: Sender, mut tick: impl FnMut(Duration)) -> Result<Measured> {
    let per_request = Duration::from_secs_f64(1.0 / load.rate.max(1e-9));
    let total = (((load.duration + load.warmup).as_secs_f64() / per_request.as_secs_f64()) as u64)
        .min(load.max_requests);
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now() + Duration::from_millis(200);
    let measured_from = t0 + load.warmup;
    let mut threads = Vec::new();
    for _ in 0..load.concurrency.max(1) {
        let (next, stop, send) = (next.clone(), stop.clone(), send.clone());
        threads.push(std::thread::spawn(move || {
            let agent = agent();
            let mut seen: Vec<(u16, f64, Duration)> = Vec::new();
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = t0 + per_request.mul_f64(i as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let status = send(&agent, i);
                last = Instant::now();
                if due >= measured_from {
                    seen.push((
                        status,
                        (due - measured_from).as_secs_f64(),
                        last.saturating_duration_since(due),
                    ));
                }
            }
            (seen, last)
        }));
    }
    let started = Instant::now();
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(1000));
        tick(started.elapsed());
        if started.elapsed() > load.duration + load.warmup + Duration::from_secs(120) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let mut end = measured_from;
    let mut by_status: BTreeMap<u16, Vec<Duration>> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut timeline = Vec::new();
    for t in threads {
        let (seen, last) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
        end = end.max(last);
        for (status, at, d) in seen {
            by_status.entry(status).or_default().push(d);
            latencies.push(d);
            timeline.push((at, d));
        }
    }
    latencies.sort();
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
    for v in by_status.values_mut() {
        v.sort();
    }
    Ok(Measured {
        latencies,
        by_status,
        seconds: end
            .saturating_duration_since(measured_from)
            .as_secs_f64()
            .max(1e-9),
        timeline,
    })
}

/// One window of a run's timeline: the requests due in it and their
/// latencies.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Seconds from the end of the warm-up to the window's start.
    pub from: f64,
    pub requests: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// `timeline` (in order of when requests were due) cut into windows of
/// `width` seconds; a window where nothing was due is left out.
pub fn windows(timeline: &[(f64, Duration)], width: f64) -> Vec<Window> {
    let mut out = Vec::new();
    let mut rest = timeline;
    while let Some(&(first, _)) = rest.first() {
        let k = (first / width).floor();
        let end = rest
            .iter()
            .position(|(at, _)| (at / width).floor() != k)
            .unwrap_or(rest.len());
        let mut lat: Vec<Duration> = rest[..end].iter().map(|(_, d)| *d).collect();
        lat.sort();
        out.push(Window {
            from: k * width,
            requests: lat.len(),
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
            max: lat.last().copied().unwrap_or_default(),
        });
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_load_client_resolves_in_place_and_still_times_out() {
        let t = agent().config().timeouts();
        // Any of these makes ureq resolve every request in a new thread.
        assert_eq!((t.global, t.per_call, t.resolve), (None, None, None));
        // And a server that stops answering still ends the request.
        for step in [t.connect, t.send_request, t.recv_response, t.recv_body] {
            assert!(step.is_some_and(|d| d <= Duration::from_secs(60)), "{t:?}");
        }
    }

    #[test]
    fn a_timeline_is_cut_into_windows_by_when_requests_were_due() {
        let timeline = vec![
            (0.1, ms(5)),
            (0.5, ms(1)),
            (9.9, ms(3)),
            (10.0, ms(40)),
            (25.0, ms(7)),
            (29.99, ms(9)),
        ];
        let w = windows(&timeline, 10.0);
        assert_eq!(w.len(), 3, "nothing was due from 10 s to 20 s: {w:?}");
        assert_eq!((w[0].from, w[0].requests), (0.0, 3));
        assert_eq!((w[0].p50, w[0].max), (ms(3), ms(5)));
        assert_eq!((w[1].from, w[1].requests, w[1].p99), (10.0, 1, ms(40)));
        assert_eq!((w[2].from, w[2].requests, w[2].max), (20.0, 2, ms(9)));
        assert!(windows(&[], 10.0).is_empty());
    }
}
