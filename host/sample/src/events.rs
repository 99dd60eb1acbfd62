//! Behavioural events for generated leads, with a few malformed lines on
//! purpose.

use crate::SampleError;
use leadgate_lead::Lead;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;

/// Behavioural events for the readable leads of the generated file at
/// `leads`: most leads a few, some a buying pattern (pricing and
/// comparison pages, a trial, usage), some accounts several people at
/// once; plus events of people not in the file yet, one repeated event id
/// and a few malformed lines, as real feeds have. Times are within the
/// 60 days before `now`.
pub fn write_events(leads: &Path, path: &Path, seed: u64, now: i64) -> Result<usize, SampleError> {
    let leads = crate::read_leads(leads)?;
    events(&leads, path, seed, now).map_err(|source| SampleError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn events(leads: &[Lead], path: &Path, seed: u64, now: i64) -> std::io::Result<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xe7e7);
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::new(file);
    let day = 86_400_000i64;
    let pages = [
        "/",
        "/blog/lead-routing",
        "/docs/getting-started",
        "/pricing",
        "/compare/leadgate-vs-spreadsheets",
        "/careers",
        "/customers",
        "/demo",
    ];
    let mut n = 0usize;
    let line = |out: &mut std::io::BufWriter<std::fs::File>,
                v: serde_json::Value|
     -> std::io::Result<()> {
        writeln!(out, "{v}")?;
        Ok(())
    };
    // Accounts that research together: a few domains whose people all buy.
    let hot_domains: Vec<String> = leads
        .iter()
        .filter_map(|l| {
            l.email
                .as_deref()?
                .rsplit_once('@')
                .map(|(_, d)| d.to_lowercase())
        })
        .filter(|d| !d.contains("gmail") && !d.contains("yahoo") && !d.contains("hotmail"))
        .step_by(37)
        .take(12)
        .collect();
    for l in leads {
        let Some(email) = l.email.as_deref().map(|e| e.trim().to_lowercase()) else {
            continue;
        };
        if !email
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            || email.contains(' ')
        {
            continue;
        }
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        let buyer = hot_domains.contains(&domain) || rng.random_bool(0.08);
        let count = if buyer {
            rng.random_range(6..20)
        } else if rng.random_bool(0.5) {
            rng.random_range(1..5)
        } else {
            0
        };
        for _ in 0..count {
            let at = now
                - rng.random_range(0..60 * day)
                - if buyer {
                    0
                } else {
                    rng.random_range(0..20 * day)
                };
            let (kind, extra): (&str, serde_json::Value) = match rng.random_range(0..10) {
                0..=4 => {
                    let page = if buyer {
                        pages[rng.random_range(2..5)]
                    } else {
                        pages[rng.random_range(0..pages.len())]
                    };
                    (
                        "page_view",
                        serde_json::json!({"url": format!("https://leadgate.example{page}")}),
                    )
                }
                5 => ("email_open", serde_json::json!({})),
                6 => ("email_click", serde_json::json!({})),
                7 => (
                    "content_download",
                    serde_json::json!({"asset": "revops-guide.pdf"}),
                ),
                8 if buyer => ("trial_signup", serde_json::json!({})),
                8 => ("form_submission", serde_json::json!({"form": "newsletter"})),
                _ if buyer => (
                    "product_usage",
                    serde_json::json!({"value": rng.random_range(1..10)}),
                ),
                _ => ("reply", serde_json::json!({})),
            };
            n += 1;
            let mut v = serde_json::json!({"id": format!("ev-{n}"), "type": kind, "at": at, "email": email});
            if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            line(&mut out, v)?;
        }
    }
    // People not in the file yet: kept, attached when they appear.
    for i in 0..20 {
        n += 1;
        line(
            &mut out,
            serde_json::json!({"id": format!("ev-{n}"), "type": "page_view", "at": now - (i + 1) * 3_600_000,
                               "email": format!("visitor{i}@newprospect{i}.example"), "url": "https://leadgate.example/pricing"}),
        )?;
    }
    // A repeated id (ignored) and malformed lines (rejected with a reason).
    line(
        &mut out,
        serde_json::json!({"id": "ev-1", "type": "reply", "at": now, "email": "someone@example.com"}),
    )?;
    writeln!(
        out,
        r#"{{"id": "bad-1", "type": "webinar", "at": {now}, "email": "a@b.example"}}"#
    )?;
    writeln!(
        out,
        r#"{{"id": "bad-2", "type": "page_view", "email": "a@b.example"}}"#
    )?;
    writeln!(
        out,
        r#"{{"id": "bad-3", "type": "page_view", "at": {now}}}"#
    )?;
    writeln!(out, "not json at all")?;
    out.flush()?;
    Ok(n + 5)
}
