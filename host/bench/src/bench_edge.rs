//! `leadgate-bench edge`: the edge component (`components/edge`,
//! composed with the validate component) under `wasmtime serve`, every
//! request on a fresh instance (`--max-instance-reuse-count 1`), over real
//! HTTP on loopback.
//!
//! Generated form submissions — the sample generator's messy leads, so
//! some are rejected with 422 at the edge and the rest are forwarded — are
//! sent as `application/x-www-form-urlencoded` at a fixed rate by the
//! open-loop generator (`load`). The core is a stand-in on loopback that
//! accepts at once, so what is measured is the edge: instantiation, body,
//! mapping, validation in the composed component, and the forward.
//!
//! The native baseline is the same forms through the same code natively,
//! in this process: the edge crate's form reading and mapping and the
//! validate crate — no HTTP, no instance.

use crate::bench_serve::{Child, Cleanup, announced, objects};
use crate::load::{Load, ms, percentile};
use anyhow::{Context, Result, bail};
use leadgate::config::Config;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    /// The `wasmtime` CLI.
    pub wasmtime: PathBuf,
    /// The composed edge component.
    pub component: PathBuf,
    /// Requests per second offered.
    pub rate: f64,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Extra `wasmtime serve` options (e.g. `-O pooling-allocator=y`).
    pub runtime_args: Vec<String>,
}

/// A core that accepts everything at once, on loopback.
fn stand_in_core() -> Result<(String, tokio::runtime::Runtime)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"results":[{"lead_id":"bench","status":"accepted"}]}"#,
        )
    });
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, runtime))
}

pub fn run(config: &Config, o: &Options) -> Result<()> {
    if !o.component.exists() {
        bail!(
            "{} does not exist: run `cargo xtask build` first",
            o.component.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("leadgate-bench-edge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _cleanup = Cleanup(vec![dir.clone()]);
    let n = ((o.rate * (o.duration + o.warmup).as_secs_f64()) as usize + 1_000).max(2_000);
    let csv = dir.join("forms.csv");
    leadgate_sample::write(n, 47, &csv, None, None)?;
    let forms: Vec<serde_json::Map<String, serde_json::Value>> = objects(&csv)?
        .into_iter()
        .filter_map(|v| match v {
            serde_json::Value::Object(o) => Some(o),
            _ => None,
        })
        .collect();
    let bodies: Arc<Vec<String>> = Arc::new(
        forms
            .iter()
            .map(|f| {
                let mut s = form_urlencoded::Serializer::new(String::new());
                for (k, v) in f {
                    s.append_pair(k, v.as_str().unwrap_or_default());
                }
                s.finish()
            })
            .collect(),
    );

    // The native baseline: the same forms, the same code, in process.
    let settings_json = config.validate_settings()?;
    let settings = leadgate_validate::Settings::from_json(&settings_json)?;
    let mut native = Vec::with_capacity(bodies.len().min(5_000));
    let mut native_rejected = 0usize;
    for body in bodies.iter().take(5_000) {
        let t = Instant::now();
        let fields = leadgate_edge::intake::form_fields(
            body.as_bytes(),
            "application/x-www-form-urlencoded",
            "bench",
        )
        .map_err(|r| anyhow::anyhow!("{}", r.message))?;
        let (lead, _) = leadgate_edge::intake::lead_of(
            &serde_json::Value::Object(fields),
            &config.tenant,
            leadgate_lead::Source::Form,
            leadgate::clock::now_ms(),
        )
        .map_err(|r| anyhow::anyhow!("{}", r.message))?;
        let v = leadgate_validate::validate_owned(lead, &settings, leadgate::clock::now_ms());
        native.push(t.elapsed());
        if v.verdict == leadgate_lead::Verdict::Reject {
            native_rejected += 1;
        }
        std::hint::black_box(v);
    }
    native.sort();

    let (core, _runtime) = stand_in_core()?;
    let mut cmd = std::process::Command::new(&o.wasmtime);
    cmd.args([
        "serve",
        "-Scli",
        "--addr",
        "127.0.0.1:0",
        "--max-instance-reuse-count",
        "1",
    ])
    .args(&o.runtime_args)
    .args(["--env", &format!("LEADGATE_UPSTREAM={core}")])
    .args(["--env", "LEADGATE_API_KEY=lg_bench_00"])
    .args(["--env", &format!("LEADGATE_TENANT={}", config.tenant)])
    .args([
        "--env",
        &format!("LEADGATE_VALIDATE_SETTINGS={settings_json}"),
    ])
    .arg(&o.component)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot run {} (the wasmtime CLI 48.0.8: `cargo install wasmtime-cli --version 48.0.8 --locked`)",
            o.wasmtime.display()
        )
    })?;
    // wasmtime says where it listens on standard error.
    let stderr = child.stderr.take().context("no output from wasmtime")?;
    let child = Child(child);
    let rx = announced(stderr, "Serving HTTP on ", |_| {});
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .context("wasmtime serve did not start")?;
    eprintln!(
        "bench edge: {url} · {} forms/s · {} connections · {} s (+{} s warm-up) · {}",
        o.rate,
        o.concurrency,
        o.duration.as_secs(),
        o.warmup.as_secs(),
        o.component.display()
    );
    let body_of = bodies.clone();
    let send = Arc::new(move |agent: &ureq::Agent, i: u64| -> u16 {
        let r = agent
            .post(format!("{url}/forms/bench"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(&body_of[i as usize % body_of.len()]);
        crate::load::status_of(r)
    });
    let m = crate::load::open_loop(
        &Load {
            rate: o.rate,
            concurrency: o.concurrency,
            duration: o.duration,
            warmup: o.warmup,
            max_requests: u64::MAX,
        },
        send,
        |_| {},
    )?;
    drop(child);

    let line = |name: &str, v: &[Duration]| {
        println!(
            "  {name:<22} {:>6} · p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · max {:.2} ms",
            v.len(),
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.9)),
            ms(percentile(v, 0.99)),
            ms(v.last().copied().unwrap_or_default())
        );
    };
    println!(
        "bench edge (wasmtime serve, a fresh instance per request{})",
        if o.runtime_args.is_empty() {
            String::new()
        } else {
            format!(", {}", o.runtime_args.join(" "))
        }
    );
    println!(
        "  offered {:.0} forms/s · done {:.0}/s over {:.0} s",
        o.rate,
        m.latencies.len() as f64 / m.seconds,
        m.seconds
    );
    line("all", &m.latencies);
    for (status, v) in &m.by_status {
        let name = match status {
            200 => "200 forwarded".to_string(),
            422 => "422 rejected at edge".to_string(),
            0 => "no answer".to_string(),
            s => format!("{s}"),
        };
        line(&name, v);
    }
    let native_p50 = percentile(&native, 0.5);
    println!(
        "  native baseline (same forms, same code, in process): p50 {:.1} µs · p99 {:.1} µs · {} of {} rejected",
        native_p50.as_secs_f64() * 1e6,
        percentile(&native, 0.99).as_secs_f64() * 1e6,
        native_rejected,
        native.len()
    );
    println!(
        "  edge p50 / native p50: {:.0}×",
        percentile(&m.latencies, 0.5).as_secs_f64() / native_p50.as_secs_f64().max(1e-9)
    );
    Ok(())
}
