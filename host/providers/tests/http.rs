//! The provider policy against a misbehaving API on loopback: the retry
//! schedule, `Retry-After`, the circuit breaker opening and closing, stale
//! cache fallback, the request rate never above the limit, timeouts,
//! malformed JSON, connection resets, the time budget and concurrency.

#![allow(clippy::unwrap_used)]

use fixture_fake_provider::{FakeProvider, Reply, company_json};
use leadgate_lead::enrich::{Company, Outcome};
use leadgate_providers::cache::Entry;
use leadgate_providers::chain::Chain;
use leadgate_providers::config::ProviderConfig;
use leadgate_providers::local::LocalProvider;
use leadgate_providers::{Fetched, Guarded, Kind, Prefetcher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn config(server: &FakeProvider, extra: serde_json::Value) -> ProviderConfig {
    let mut v = serde_json::json!({
        "name": "api",
        "kind": "http",
        "lookup": "company",
        "url": format!("{}/v1/companies?domain={{domain}}", server.url()),
        "record": "/data",
        "fields": {"name": "/legalName", "industry": "/category/industry", "technologies": "/tech"},
        "rate_per_second": 1000.0,
        "burst": 100,
        "timeout_ms": 1000,
        "backoff_base_ms": 40,
        "backoff_max_ms": 400,
    });
    if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            base.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).unwrap()
}

fn chain(configs: &[ProviderConfig]) -> Arc<Chain> {
    Arc::new(
        Chain::from_config(configs, std::path::Path::new("."))
            .unwrap()
            .0,
    )
}

fn gaps(server: &FakeProvider) -> Vec<f64> {
    server.arrivals().windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn retries_back_off_exponentially_with_jitter() {
    let server = FakeProvider::start(|r| match r.nth_for_path {
        0 | 1 => Reply::Status(503),
        _ => Reply::Json(company_json("acme.com")),
    });
    let chain = chain(&[config(&server, serde_json::json!({}))]);
    let (p, v) = chain.resolve(Kind::Company, "acme.com");
    assert_eq!(p.outcome, Outcome::Found, "{p:?}");
    assert!(matches!(
        v,
        Some(Fetched::Company(Company {
            industry: Some(_),
            ..
        }))
    ));
    let g = gaps(&server);
    assert_eq!(g.len(), 2, "three requests: {g:?}");
    // Retry n waits base·2ⁿ jittered over its upper half: 20–40 ms, then 40–80 ms.
    assert!(g[0] >= 0.019 && g[0] < 0.2, "first backoff {g:?}");
    assert!(g[1] >= 0.039 && g[1] < 0.3, "second backoff {g:?}");
    let s = &chain.stats()[0];
    assert_eq!((s.attempts, s.retries, s.found), (3, 2, 1));
    assert_eq!(s.errors["http_503"], 2);
}

#[test]
fn a_429_is_retried_after_the_servers_retry_after() {
    let server = FakeProvider::start(|r| match r.nth_for_path {
        0 => Reply::TooMany {
            retry_after_secs: 1,
        },
        _ => Reply::Json(company_json("acme.com")),
    });
    let chain = chain(&[config(&server, serde_json::json!({}))]);
    let (p, _) = chain.resolve(Kind::Company, "acme.com");
    assert_eq!(p.outcome, Outcome::Found);
    let g = gaps(&server);
    assert_eq!(g.len(), 1);
    assert!(g[0] >= 0.95, "Retry-After: 1 honoured, waited {g:?}");
    // Being rate limited is not a sign of ill health.
    assert_eq!(chain.stats()[0].circuit_opened, 0);
}

#[test]
fn a_retry_after_longer_than_allowed_fails_now() {
    let server = FakeProvider::start(|_| Reply::TooMany {
        retry_after_secs: 120,
    });
    let chain = chain(&[config(
        &server,
        serde_json::json!({"max_retry_wait_ms": 500}),
    )]);
    let started = Instant::now();
    let (p, _) = chain.resolve(Kind::Company, "acme.com");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(p.outcome, Outcome::Unavailable);
    assert!(p.detail.contains("429"), "{}", p.detail);
}

#[test]
fn the_breaker_opens_after_failures_and_closes_after_a_good_trial() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let server = FakeProvider::start(move |r| {
        if h.load(Ordering::SeqCst) {
            Reply::Json(company_json(&r.path))
        } else {
            Reply::Status(500)
        }
    });
    let chain = chain(&[config(
        &server,
        serde_json::json!({"max_retries": 0, "breaker_failures": 3, "breaker_cooldown_ms": 300}),
    )]);
    for i in 0..5 {
        let (p, _) = chain.resolve(Kind::Company, &format!("d{i}.com"));
        assert_eq!(p.outcome, Outcome::Unavailable);
        if i >= 3 {
            assert!(p.detail.contains("circuit open"), "{}", p.detail);
        }
    }
    assert_eq!(server.requests().len(), 3, "an open circuit sends nothing");
    assert_eq!(chain.stats()[0].circuit_opened, 1);
    std::thread::sleep(Duration::from_millis(350));
    healthy.store(true, Ordering::SeqCst);
    let (p, _) = chain.resolve(Kind::Company, "trial.com");
    assert_eq!(
        p.outcome,
        Outcome::Found,
        "the half-open trial goes through"
    );
    let (p, _) = chain.resolve(Kind::Company, "after.com");
    assert_eq!(p.outcome, Outcome::Found, "closed again");
    assert_eq!(server.requests().len(), 5);
    assert_eq!(chain.stats()[0].errors["circuit_open"], 2);
}

#[test]
fn stale_cache_is_served_when_the_provider_fails() {
    let server = FakeProvider::start(|_| Reply::Status(502));
    let chain = chain(&[config(
        &server,
        serde_json::json!({"max_retries": 1, "cache_ttl_secs": 86400}),
    )]);
    let old = Company {
        domain: "acme.com".into(),
        industry: Some("Software".into()),
        ..Company::default()
    };
    chain.cache.load([Entry {
        provider: "api".into(),
        kind: Kind::Company,
        key: "acme.com".into(),
        value: Fetched::Company(old.clone()),
        fetched_at: leadgate_providers::now_ms() - 3 * 86_400_000,
    }]);
    let (p, v) = chain.resolve(Kind::Company, "acme.com");
    assert_eq!(p.outcome, Outcome::Found);
    assert!(p.stale);
    assert!(p.detail.contains("HTTP 502"), "{}", p.detail);
    assert_eq!(v, Some(Fetched::Company(old)));
    let s = &chain.stats()[0];
    assert_eq!((s.stale_served, s.failed, s.cache_misses), (1, 1, 1));
    // A fresh entry is served without asking the provider.
    chain.cache.put(
        "api",
        Kind::Company,
        "fresh.com",
        Fetched::NotFound,
        leadgate_providers::now_ms(),
    );
    let before = server.requests().len();
    let (p, _) = chain.resolve(Kind::Company, "fresh.com");
    assert_eq!(p.outcome, Outcome::NotFound);
    assert_eq!(server.requests().len(), before);
    assert_eq!(chain.stats()[0].cache_hits, 1);
}

#[test]
fn the_request_rate_never_exceeds_the_limit() {
    let server = FakeProvider::start(|r| Reply::Json(company_json(&r.path)));
    let chain = chain(&[config(
        &server,
        serde_json::json!({"rate_per_second": 40.0, "burst": 4}),
    )]);
    let prefetcher = Prefetcher::new(chain.clone(), 16);
    let keys: Vec<(Kind, String)> = (0..48)
        .map(|i| (Kind::Company, format!("c{i}.com")))
        .collect();
    let answers = prefetcher.prefetch(&keys, Duration::from_secs(10));
    assert!(
        keys.iter()
            .all(|(k, d)| answers.get(*k, d).unwrap().0.outcome == Outcome::Found)
    );
    assert_eq!(server.requests().len(), 48);
    // A bucket of 4 refilled at 40/s: at most 4 + 40·T in any window T
    // (two more for the arrival jitter of loopback on a loaded machine).
    let second = server.max_in_window(Duration::from_secs(1));
    assert!(second <= 4 + 40 + 2, "{second} in one second");
    let quarter = server.max_in_window(Duration::from_millis(250));
    assert!(quarter <= 4 + 10 + 2, "{quarter} in a quarter second");
    let span = server.arrivals().last().unwrap() - server.arrivals()[0];
    assert!(
        span >= 0.9,
        "44 requests past the burst at 40/s take over a second: {span}"
    );
}

#[test]
fn slow_answers_time_out_and_are_retried() {
    let server = FakeProvider::start(|_| Reply::Slow(Duration::from_secs(2), company_json("x")));
    let chain = chain(&[config(
        &server,
        serde_json::json!({"timeout_ms": 150, "max_retries": 1}),
    )]);
    let started = Instant::now();
    let (p, _) = chain.resolve(Kind::Company, "slow.com");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(p.outcome, Outcome::Unavailable);
    assert!(p.detail.contains("timed out"), "{}", p.detail);
    assert_eq!(chain.stats()[0].errors["timeout"], 2);
}

#[test]
fn malformed_json_is_not_retried_and_resets_are() {
    let server = FakeProvider::start(|r| {
        if r.path.contains("broken") {
            Reply::Malformed
        } else if r.nth_for_path == 0 {
            Reply::Reset
        } else {
            Reply::Json(company_json("reset.com"))
        }
    });
    let chain = chain(&[config(&server, serde_json::json!({}))]);
    let (p, _) = chain.resolve(Kind::Company, "broken.com");
    assert_eq!(p.outcome, Outcome::Unavailable);
    assert!(p.detail.contains("malformed"), "{}", p.detail);
    assert_eq!(
        server.requests().len(),
        1,
        "a malformed body is not retried"
    );
    let (p, _) = chain.resolve(Kind::Company, "reset.com");
    assert_eq!(p.outcome, Outcome::Found, "{p:?}");
    let s = &chain.stats()[0];
    assert_eq!(s.errors["connection"], 1);
    assert_eq!(s.errors["malformed"], 1);
}

#[test]
fn the_chain_falls_back_in_order() {
    let server = FakeProvider::start(|r| {
        if r.path.contains("down") {
            Reply::Status(500)
        } else {
            Reply::NotFound
        }
    });
    let c = config(&server, serde_json::json!({"max_retries": 0}));
    let api = Guarded::new(
        "api",
        Box::new(leadgate_providers::http::HttpProvider::new(&c, Duration::from_secs(1)).unwrap()),
        c.policy().unwrap(),
        0.8,
    );
    let local = Guarded::new(
        "local",
        Box::new(LocalProvider::from_records(
            vec![Company {
                domain: "known.com".into(),
                name: Some("Known".into()),
                ..Company::default()
            }],
            vec![],
        )),
        Default::default(),
        0.9,
    );
    let chain = Chain::new(vec![api, local]);
    let (p, _) = chain.resolve(Kind::Company, "known.com");
    assert_eq!((p.outcome, p.source.as_str()), (Outcome::Found, "local"));
    let (p, _) = chain.resolve(Kind::Company, "unknown.com");
    assert_eq!((p.outcome, p.source.as_str()), (Outcome::NotFound, "api"));
    let (p, _) = chain.resolve(Kind::Company, "down.com");
    assert_eq!(
        p.outcome,
        Outcome::Unavailable,
        "a failed provider might have known"
    );
    let (p, _) = chain.resolve(Kind::Person, "a@b.com");
    assert_eq!((p.outcome, p.source.as_str()), (Outcome::NotFound, "none"));
}

#[test]
fn the_budget_bounds_the_wait_and_the_fetch_lands_in_the_cache() {
    let server =
        FakeProvider::start(|r| Reply::Slow(Duration::from_millis(500), company_json(&r.path)));
    let chain = chain(&[config(&server, serde_json::json!({}))]);
    let prefetcher = Prefetcher::new(chain.clone(), 4);
    let keys = vec![
        (Kind::Company, "a.com".to_string()),
        (Kind::Company, "b.com".to_string()),
        (Kind::Company, "a.com".to_string()),
    ];
    let started = Instant::now();
    let answers = prefetcher.prefetch(&keys, Duration::from_millis(100));
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        answers.get(Kind::Company, "a.com").unwrap().0.outcome,
        Outcome::Pending
    );
    prefetcher.settle(Duration::from_secs(5));
    assert_eq!(
        server.requests().len(),
        2,
        "a key asked twice is fetched once"
    );
    let answers = prefetcher.prefetch(&keys, Duration::from_millis(100));
    assert_eq!(
        answers.get(Kind::Company, "b.com").unwrap().0.outcome,
        Outcome::Found
    );
    assert_eq!(
        server.requests().len(),
        2,
        "the second batch is served from the cache"
    );
    assert_eq!(
        chain.cache.take_new().len(),
        2,
        "new entries are kept for the store"
    );
}

#[test]
fn a_slow_provider_does_not_serialize_the_batch() {
    let server =
        FakeProvider::start(|r| Reply::Slow(Duration::from_millis(300), company_json(&r.path)));
    let chain = chain(&[config(&server, serde_json::json!({}))]);
    let prefetcher = Prefetcher::new(chain, 16);
    let keys: Vec<(Kind, String)> = (0..16)
        .map(|i| (Kind::Company, format!("s{i}.com")))
        .collect();
    let started = Instant::now();
    let answers = prefetcher.prefetch(&keys, Duration::from_secs(10));
    // One at a time would take 16 × 300 ms = 4.8 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        keys.iter()
            .all(|(k, d)| answers.get(*k, d).unwrap().0.outcome == Outcome::Found)
    );
}

#[test]
fn the_credential_comes_from_the_environment_and_is_sent() {
    let server = FakeProvider::start(|r| Reply::Json(company_json(&r.path)));
    // A variable no other test reads.
    // SAFETY: set once, before any thread of this test reads it; the name is
    // this test's own.
    unsafe { std::env::set_var("LEADGATE_TEST_FAKE_API_KEY", "s3cret") };
    let chain = chain(&[config(
        &server,
        serde_json::json!({"auth_env": "LEADGATE_TEST_FAKE_API_KEY", "auth_prefix": "Bearer "}),
    )]);
    let (p, _) = chain.resolve(Kind::Company, "acme.com");
    assert_eq!(p.outcome, Outcome::Found);
    let sent = server.requests();
    assert_eq!(sent[0].authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(sent[0].path, "/v1/companies?domain=acme.com");
}
