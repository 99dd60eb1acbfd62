//! `leadgate-bench notify`: the notifier's cost per alert on a SQLite store
//! on disk — filing new alerts into groups, then flushing the groups into
//! the outbox and delivering each message to a webhook receiver on loopback
//! — against raising the same alerts (one insert each), in the same
//! process.

use anyhow::{Context, Result};
use leadgate_service::notifier::Notifier;
use leadgate_store::prelude::*;
use std::time::Instant;

/// A webhook receiver on loopback that accepts everything.
fn receiver() -> Result<(String, tokio::runtime::Runtime)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    // The body is read, as a real receiver does (one left unread closes
    // the connection).
    let app =
        axum::Router::new().route("/hook", axum::routing::post(|_body: String| async { "ok" }));
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, runtime))
}

fn config(url: &str, group_by: &str) -> Result<leadgate_pipeline::config::Config> {
    let text = format!(
        r#"
tenant = "bench"
[alerts.destinations.hook]
kind = "webhook"
url = "{url}"
[[alerts.routes]]
match = {{ kind = "routing.*" }}
to = ["hook"]
group_by = {group_by}
group_wait_seconds = 60
"#
    );
    let dir =
        std::env::temp_dir().join(format!("leadgate-bench-notify-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("leadgate.toml");
    std::fs::write(&path, text)?;
    leadgate_pipeline::config::Config::load(Some(&path))
}

struct Round {
    raise_us: f64,
    file_us: f64,
    send_us: f64,
    messages: usize,
}

fn round(config: &leadgate_pipeline::config::Config, alerts: usize, now: i64) -> Result<Round> {
    let dir = std::env::temp_dir().join(format!("leadgate-bench-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("notify.db");
    let mut store = leadgate_store::Store::open(&path.to_string_lossy())?;
    let kinds = ["routing.queued", "routing.sla_breach"];
    let started = Instant::now();
    for i in 0..alerts {
        let kind = kinds[i % 2];
        let lead = format!("l{i:06}");
        let labels =
            serde_json::json!({"kind": kind, "lead": lead, "team": format!("t{}", i % 20)});
        store.raise_alert(
            "bench",
            kind,
            &lead,
            &labels.to_string(),
            "lead waits with no rep",
            now,
        )?;
    }
    let raise_us = started.elapsed().as_secs_f64() * 1e6 / alerts as f64;
    // Checkpoints between passes, as the service's background thread
    // does: the log is copied back and started over.
    let wal = leadgate_store::WalLength::default();
    store.checkpoint_round(&wal)?;
    let n = Notifier::open(config)?.context("the bench config has routes")?;
    // Filing only: the groups wait a minute.
    let started = Instant::now();
    loop {
        let p = n.pass(config, &mut store, now)?;
        store.checkpoint_round(&wal)?;
        if p.routed + p.unrouted + p.silenced + p.inhibited == 0 {
            break;
        }
    }
    let file_us = started.elapsed().as_secs_f64() * 1e6 / alerts as f64;
    // Flushing and delivering.
    let later = now + 61_000;
    let started = Instant::now();
    let mut messages = 0;
    loop {
        let p = n.pass(config, &mut store, later)?;
        store.checkpoint_round(&wal)?;
        messages += p.sent as usize;
        if p.queued + p.sent + p.retried == 0 {
            break;
        }
    }
    let send_us = started.elapsed().as_secs_f64() * 1e6 / messages.max(1) as f64;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Round {
        raise_us,
        file_us,
        send_us,
        messages,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Microseconds per bare `POST` of a small JSON body to `url`, one
/// connection kept alive: the floor under each delivery.
fn bare_posts(url: &str, n: usize) -> Result<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let body =
        serde_json::json!({"event": "alerts", "alerts": [{"kind": "routing.queued"}]}).to_string();
    let started = Instant::now();
    for _ in 0..n {
        let mut r = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.as_str())?;
        r.body_mut().read_to_string()?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / n as f64)
}

pub fn run(alerts: usize, rounds: usize) -> Result<()> {
    let (url, _runtime) = receiver()?;
    let bare = median(
        (0..rounds)
            .map(|_| bare_posts(&url, 2_000))
            .collect::<Result<Vec<_>>>()?,
    );
    println!("a bare POST to the loopback webhook (baseline): {bare:.1} µs");
    let now = 1_796_637_600_000; // Monday 2026-12-07 10:00 UTC
    for (what, group_by) in [
        ("one group per lead", r#"["lead"]"#),
        ("groups per kind and team", r#"["kind", "team"]"#),
    ] {
        let config = config(&url, group_by)?;
        let mut raise = Vec::new();
        let mut file = Vec::new();
        let mut send = Vec::new();
        let mut messages = 0;
        for _ in 0..rounds {
            let r = round(&config, alerts, now)?;
            raise.push(r.raise_us);
            file.push(r.file_us);
            send.push(r.send_us);
            messages = r.messages;
        }
        let (raise, file, send) = (median(raise), median(file), median(send));
        println!(
            "notify, {alerts} alerts, {what} (median of {rounds}): raise {raise:.1} µs/alert (baseline) · file {file:.1} µs/alert (ratio {:.2}) · flush and deliver {messages} messages to a loopback webhook {send:.1} µs/message",
            file / raise
        );
    }
    Ok(())
}
