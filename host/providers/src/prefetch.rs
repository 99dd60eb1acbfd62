//! Resolving a batch's lookups before the component runs.
//!
//! What local providers and fresh cache entries can answer is answered at
//! once, on the caller's thread. The rest goes to a pool of worker threads
//! (the tenant's `concurrency`), so a slow provider does not serialize the
//! batch; the same key asked by several leads is fetched once. The caller
//! waits at most the lead's time budget: a lookup not done by then is
//! answered `pending`, the lead goes on, and the fetch finishes in the
//! background, landing in the cache for the re-enrichment that follows.

use crate::chain::{Chain, Resolved, Walk};
use crate::{Fetched, Kind};
use leadgate_lead::enrich::{Answer, Company, Lookups, Outcome, Person, Provenance};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Key = (Kind, String);

enum Slot {
    /// Being fetched; `waiters` callers want the answer.
    InFlight { waiters: usize },
    Done {
        answer: Box<Resolved>,
        waiters: usize,
    },
}

#[derive(Default)]
struct Shared {
    slots: Mutex<HashMap<Key, Slot>>,
    changed: Condvar,
    stop: AtomicBool,
}

struct Job {
    key: Key,
    walk: Box<Walk>,
}

/// Resolves lookups for batches, with a worker pool for remote providers.
pub struct Prefetcher {
    chain: Arc<Chain>,
    jobs: Option<Mutex<Sender<Job>>>,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn pending() -> Resolved {
    (
        Provenance::without(
            Outcome::Pending,
            "host",
            "not answered within the lead's time budget",
        ),
        None,
    )
}

fn worker(chain: Arc<Chain>, shared: Arc<Shared>, jobs: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = match lock(&jobs).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let answer = chain.resume(job.key.0, &job.key.1, job.walk);
        let mut slots = lock(&shared.slots);
        match slots.get(&job.key) {
            Some(Slot::InFlight { waiters }) if *waiters > 0 => {
                let waiters = *waiters;
                slots.insert(
                    job.key,
                    Slot::Done {
                        answer: Box::new(answer),
                        waiters,
                    },
                );
            }
            // Nobody waits any more: the answer is in the cache (if it
            // is worth caching) for whoever asks next.
            _ => {
                slots.remove(&job.key);
            }
        }
        drop(slots);
        shared.changed.notify_all();
    }
}

impl Prefetcher {
    /// A prefetcher over `chain`; `concurrency` worker threads when any
    /// provider is remote.
    pub fn new(chain: Arc<Chain>, concurrency: usize) -> Prefetcher {
        let shared = Arc::new(Shared::default());
        let jobs = if chain.has_remote() {
            let (tx, rx) = channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..concurrency.max(1) {
                let (chain, shared, rx) = (chain.clone(), shared.clone(), rx.clone());
                // A worker that cannot start leaves fewer workers; with none,
                // lookups come back pending and are retried later.
                if let Err(e) = std::thread::Builder::new()
                    .name(format!("enrich-{i}"))
                    .spawn(move || worker(chain, shared, rx))
                {
                    tracing::warn!("cannot start enrichment worker {i}: {e}");
                }
            }
            Some(Mutex::new(tx))
        } else {
            None
        };
        Prefetcher {
            chain,
            jobs,
            shared,
        }
    }

    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    /// Starts fetching `key` (or joins the fetch under way); `wait` registers
    /// the caller as waiting for the answer.
    fn start(&self, key: Key, walk: Box<Walk>, wait: bool) -> bool {
        let Some(jobs) = &self.jobs else {
            return false;
        };
        let mut slots = lock(&self.shared.slots);
        match slots.get_mut(&key) {
            Some(Slot::InFlight { waiters } | Slot::Done { waiters, .. }) => {
                *waiters += usize::from(wait);
                true
            }
            None => {
                if lock(jobs)
                    .send(Job {
                        key: key.clone(),
                        walk,
                    })
                    .is_err()
                {
                    return false;
                }
                slots.insert(
                    key,
                    Slot::InFlight {
                        waiters: usize::from(wait),
                    },
                );
                true
            }
        }
    }

    /// Resolves `requests` (normalized keys) within `budget`.
    pub fn prefetch(&self, requests: &[(Kind, String)], budget: Duration) -> Answers {
        let deadline = Instant::now() + budget;
        let mut answers: HashMap<Key, Resolved> = HashMap::with_capacity(requests.len());
        let mut waiting: Vec<Key> = Vec::new();
        for (kind, key) in requests {
            let k = (*kind, key.clone());
            if answers.contains_key(&k) || waiting.contains(&k) {
                continue;
            }
            match self.chain.resolve_fast(*kind, key) {
                Ok(r) => {
                    answers.insert(k, r);
                }
                Err(walk) => {
                    if self.start(k.clone(), walk, true) {
                        waiting.push(k);
                    } else {
                        answers.insert(k, pending());
                    }
                }
            }
        }
        if !waiting.is_empty() {
            let mut slots = lock(&self.shared.slots);
            loop {
                waiting.retain(|k| {
                    let Some(Slot::Done { answer, waiters }) = slots.get_mut(k) else {
                        return true;
                    };
                    answers.insert(k.clone(), (**answer).clone());
                    *waiters -= 1;
                    if *waiters == 0 {
                        slots.remove(k);
                    }
                    false
                });
                let now = Instant::now();
                if waiting.is_empty() || now >= deadline {
                    break;
                }
                slots = match self.shared.changed.wait_timeout(slots, deadline - now) {
                    Ok((g, _)) => g,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
            // Out of time: these go on as pending; their fetches go on.
            for k in waiting {
                if let Some(Slot::InFlight { waiters } | Slot::Done { waiters, .. }) =
                    slots.get_mut(&k)
                {
                    *waiters = waiters.saturating_sub(1);
                    if *waiters == 0 && matches!(slots.get(&k), Some(Slot::Done { .. })) {
                        slots.remove(&k);
                    }
                }
                answers.insert(k, pending());
            }
        }
        Answers {
            chain: self.chain.clone(),
            answers,
            missed: Vec::new(),
        }
    }

    /// Fetches what a component asked for that was not prefetched, in the
    /// background, so the re-enrichment finds it cached.
    pub fn fetch_later(&self, answers: &mut Answers) {
        for (key, walk) in std::mem::take(&mut answers.missed) {
            self.start(key, walk, false);
        }
    }

    /// Lookups under way or answered and not yet collected.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.slots).len()
    }

    /// Waits up to `max` for background fetches to finish (so their answers
    /// reach the cache before the process ends).
    pub fn settle(&self, max: Duration) {
        let deadline = Instant::now() + max;
        let mut slots = lock(&self.shared.slots);
        while slots.values().any(|s| matches!(s, Slot::InFlight { .. })) {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            slots = match self.shared.changed.wait_timeout(slots, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Queued fetches are dropped; one under way finishes its attempt.
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// A batch's answers: what the component's lookups are served from.
pub struct Answers {
    chain: Arc<Chain>,
    answers: HashMap<Key, Resolved>,
    /// Asked by the component but not prefetched, and not answerable
    /// without waiting.
    missed: Vec<(Key, Box<Walk>)>,
}

impl Answers {
    /// The answer for a key asked during prefetch or by the component.
    pub fn get(&self, kind: Kind, key: &str) -> Option<&Resolved> {
        self.answers.get(&(kind, kind.normalize(key)))
    }

    fn answer(&mut self, kind: Kind, key: &str) -> Resolved {
        let k = (kind, kind.normalize(key));
        if let Some(r) = self.answers.get(&k) {
            return r.clone();
        }
        let r = match self.chain.resolve_fast(kind, &k.1) {
            Ok(r) => r,
            Err(walk) => {
                self.missed.push((k.clone(), walk));
                pending()
            }
        };
        self.answers.insert(k, r.clone());
        r
    }
}

impl Lookups for Answers {
    fn company(&mut self, domain: &str) -> Answer<Company> {
        let (provenance, value) = self.answer(Kind::Company, domain);
        Answer {
            provenance,
            value: match value {
                Some(Fetched::Company(c)) => Some(c),
                _ => None,
            },
        }
    }

    fn person(&mut self, email: &str) -> Answer<Person> {
        let (provenance, value) = self.answer(Kind::Person, email);
        Answer {
            provenance,
            value: match value {
                Some(Fetched::Person(p)) => Some(p),
                _ => None,
            },
        }
    }
}

/// [`Answers`] shared between the host and the component call it is lent
/// to: the host reads what was asked after the call.
#[derive(Clone)]
pub struct SharedAnswers(pub Arc<Mutex<Answers>>);

impl SharedAnswers {
    pub fn new(answers: Answers) -> SharedAnswers {
        SharedAnswers(Arc::new(Mutex::new(answers)))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        lock(&self.0)
    }
}

impl Lookups for SharedAnswers {
    fn company(&mut self, domain: &str) -> Answer<Company> {
        self.lock().company(domain)
    }

    fn person(&mut self, email: &str) -> Answer<Person> {
        self.lock().person(email)
    }
}
