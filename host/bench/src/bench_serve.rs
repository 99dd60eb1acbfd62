//! `leadgate-bench serve`: the service's intake under load, over real
//! HTTP on loopback.
//!
//! The store is filled with `stored` leads first (natively, as `bench
//! --dedupe` does), so every new lead is matched against them. The real
//! binary is started as a child process (`leadgate serve`, handoff off)
//! with the tenant's configuration — its enrichment providers, dedupe and
//! scoring — and an open-loop load generator sends `POST /v1/leads` with
//! `batch` leads each at a fixed rate of leads per second from
//! `concurrency` connections. Latency is measured from when each request
//! was *due*, not when it was sent, so a server that falls behind shows
//! it (no coordinated omission). The server's resident memory is sampled
//! every second.
//!
//! The baseline is the batch pipeline: `leadgate run` over the same leads
//! against a copy of the same store, in the same process run.

use crate::load::percentile;
use anyhow::{Context, Result, bail};
use leadgate::config::Config;
use leadgate_store::prelude::*;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    pub stored: usize,
    /// Leads per second offered.
    pub rate: f64,
    /// Leads per request.
    pub batch: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Also on PostgreSQL, after SQLite: a server where the benchmark may
    /// create and drop databases.
    pub postgres: Option<String>,
}

/// Where the service's store and the batch baseline's copy of it are.
enum Stores {
    Sqlite,
    Postgres {
        serve: crate::bench_postgres::Database,
        baseline: crate::bench_postgres::Database,
    },
}

/// The benchmark on SQLite, then (with `--postgres`) on PostgreSQL, in
/// one process.
pub fn run(config: &Config, config_path: Option<&std::path::Path>, o: &Options) -> Result<()> {
    run_on(config, config_path, o, Stores::Sqlite)?;
    if let Some(server) = &o.postgres {
        let pid = std::process::id();
        let stores = Stores::Postgres {
            serve: crate::bench_postgres::Database::create(
                server,
                &format!("leadgate_bench_{pid}_serve"),
            )?,
            baseline: crate::bench_postgres::Database::create(
                server,
                &format!("leadgate_bench_{pid}_baseline"),
            )?,
        };
        run_on(config, config_path, o, stores)?;
    }
    Ok(())
}

/// The server's anonymous resident memory (heap, stacks: what a leak
/// grows), in KiB. File pages of the memory-mapped store are left out:
/// they are the page cache, and grow with the store.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// CPU time the process has used so far (all its threads, user and
/// system), from `/proc`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, ticks) = name_and_ticks(&stat)?;
    Some(ticks as f64 / ticks_per_second()?)
}

/// The name and the CPU time (user and system, in clock ticks) in a
/// process's or a thread's `stat` line.
fn name_and_ticks(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may hold spaces or parentheses; after
    // it the state is the first field, user and system time the 12th and
    // 13th.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut f = stat.get(close + 2..)?.split_whitespace().skip(11);
    let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some((name, ticks))
}

fn ticks_per_second() -> Option<f64> {
    // SAFETY: a plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

/// What the server's threads do, by the names `leadgate serve` gives them.
const ROLES: [&str; 5] = ["front", "record", "background", "HTTP", "other"];

fn role_of(thread: &str) -> usize {
    if thread.starts_with("pipeline-") {
        0
    } else if thread.starts_with("record-") {
        1
    } else if thread == "background" {
        2
    } else if thread.starts_with("tokio-rt") {
        3
    } else {
        4
    }
}

/// CPU seconds each role's threads have used so far ([`ROLES`]; threads
/// that have ended are not counted).
fn cpu_by_role(pid: u32) -> Option<[f64; ROLES.len()]> {
    let hz = ticks_per_second()?;
    let mut out = [0.0; ROLES.len()];
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, ticks)) = name_and_ticks(&stat) {
            out[role_of(name)] += ticks as f64 / hz;
        }
    }
    Some(out)
}

/// The server's CPU time so far, `at` seconds since the load began: the
/// process's (every thread's, those ended too) and each role's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cpu {
    at: f64,
    total: f64,
    roles: [f64; ROLES.len()],
}

impl Cpu {
    fn read(pid: u32, at: f64) -> Option<Cpu> {
        Some(Cpu {
            at,
            total: cpu_seconds(pid)?,
            roles: cpu_by_role(pid)?,
        })
    }
}

/// What was used between the samples at `from` and `to` seconds (the
/// first sample at or after each; the last one past the end), with `at`
/// the time between them.
fn used_between(samples: &[Cpu], from: f64, to: f64) -> Option<Cpu> {
    let a = samples.iter().find(|c| c.at >= from)?;
    let b = samples.iter().find(|c| c.at >= to).or(samples.last())?;
    (b.at > a.at).then(|| Cpu {
        at: b.at - a.at,
        total: b.total - a.total,
        roles: std::array::from_fn(|i| b.roles[i] - a.roles[i]),
    })
}

/// `front 0.65 · record 0.69 · ...`: each role's share, by `per`.
fn roles_text(used: &[f64; ROLES.len()], per: f64, unit: &str) -> String {
    ROLES
        .iter()
        .zip(used)
        .filter(|(_, u)| **u > 0.0)
        .map(|(r, u)| {
            format!(
                "{r} {:.*}{unit}",
                if unit.is_empty() { 2 } else { 0 },
                u / per
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Kills the child when dropped.
pub(crate) struct Child(pub(crate) std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's output line by line in a thread of its own: the text
/// after `marker` on the line that has it (where the child listens) comes
/// out of the receiver; every other line goes to `other`.
pub(crate) fn announced(
    stream: impl std::io::Read + Send + 'static,
    marker: &'static str,
    other: impl Fn(&str) + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            match line.split(marker).nth(1) {
                Some(rest) => {
                    let _ = tx.send(rest.trim().trim_end_matches('/').to_string());
                }
                None => other(&line),
            }
        }
    });
    rx
}

/// Removes the files when dropped.
pub(crate) struct Cleanup(pub(crate) Vec<std::path::PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// CSV rows as JSON objects keyed by header, as a form or an API client
/// would send them.
pub(crate) fn objects(path: &std::path::Path) -> Result<Vec<serde_json::Value>> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = r.headers()?.clone();
    let mut out = Vec::new();
    for row in r.records() {
        let row = row?;
        let mut o = serde_json::Map::new();
        for (h, v) in headers.iter().zip(row.iter()) {
            if !v.is_empty() {
                o.insert(h.to_string(), serde_json::Value::String(v.to_string()));
            }
        }
        out.push(serde_json::Value::Object(o));
    }
    Ok(out)
}

fn run_on(
    config: &Config,
    config_path: Option<&std::path::Path>,
    o: &Options,
    stores: Stores,
) -> Result<()> {
    if o.batch == 0 || o.concurrency == 0 || o.rate <= 0.0 {
        bail!("--batch, --concurrency and --rate must be positive");
    }
    let config_path = config_path.context(
        "bench serve needs the tenant's configuration: pass --config (e.g. samples/leadgate.toml)",
    )?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("leadgate-bench-serve-{pid}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("bench.db").display().to_string();
    let (db, baseline_db) = match &stores {
        Stores::Sqlite => (file, dir.join("baseline.db").display().to_string()),
        Stores::Postgres { serve, baseline } => (serve.url.clone(), baseline.url.clone()),
    };
    let bench_config = write_bench_config(config_path, &db, o)?;
    let _cleanup = Cleanup(vec![bench_config.clone(), dir.clone()]);

    // The stored base.
    eprintln!("bench serve: filling the store with {} leads…", o.stored);
    let base_csv = dir.join("base.csv");
    leadgate_sample::write(o.stored, 41, &base_csv, None, None)?;
    {
        let mut store = leadgate_store::Store::open(&db)?;
        let leads = leadgate_sample::read_leads(&base_csv)?;
        crate::bench_dedupe::fill(config, &mut store, leads, leadgate::clock::now_ms())?;
        // Closing the store folds its write-ahead log into the file, so
        // the file can be copied.
    }
    // The load: new leads, some of them duplicates of stored ones.
    let expected = (o.rate * (o.duration + o.warmup).as_secs_f64() * 1.2) as usize + 10_000;
    let load_csv = dir.join("load.csv");
    leadgate_sample::write(expected, 43, &load_csv, None, None)?;
    let leads = objects(&load_csv)?;
    let bodies: Arc<Vec<String>> = Arc::new(
        leads
            .chunks(o.batch)
            .map(|c| serde_json::Value::Array(c.to_vec()).to_string())
            .collect(),
    );
    // The baseline store: a copy, for `run` afterwards.
    match &stores {
        Stores::Sqlite => {
            std::fs::copy(&db, &baseline_db).context("cannot copy the store")?;
        }
        Stores::Postgres { .. } => {
            let from = leadgate_store::Store::open(&db)?;
            let mut to = leadgate_store::Store::open(&baseline_db)?;
            leadgate_store::copy::copy_store(&from, &mut to, |_| {})?;
        }
    }

    let key = leadgate::serve::auth::new_key(&config.tenant);
    leadgate_store::Store::open(&db)?.add_api_key(
        &config.tenant,
        "bench",
        &leadgate::serve::auth::hash(&key),
        &leadgate::serve::auth::prefix(&key),
        leadgate::clock::now_ms(),
    )?;

    let (child, server_pid, url) = start_server(&bench_config)?;
    eprintln!(
        "bench serve: {url} · {} leads/s offered in requests of {} · {} connections · {} s (+{} s warm-up)",
        o.rate,
        o.batch,
        o.concurrency,
        o.duration.as_secs(),
        o.warmup.as_secs()
    );

    // Open-loop load.
    let body_of = bodies.clone();
    let send = Arc::new(move |agent: &ureq::Agent, i: u64| -> u16 {
        let r = agent
            .post(format!("{url}/v1/leads"))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", format!("bench-{i}"))
            .send(&body_of[i as usize]);
        crate::load::status_of(r)
    });
    let mut rss: Vec<(f64, u64)> = Vec::new();
    // The server's CPU time at each tick, in all and by kind of thread.
    let mut cpu: Vec<Cpu> = Vec::new();
    let m = crate::load::open_loop(
        &crate::load::Load {
            rate: o.rate / o.batch as f64,
            concurrency: o.concurrency,
            duration: o.duration,
            warmup: o.warmup,
            max_requests: bodies.len() as u64,
        },
        send,
        |elapsed| {
            if let Some(kib) = rss_kib(server_pid) {
                rss.push((elapsed.as_secs_f64(), kib));
            }
            if let Some(c) = Cpu::read(server_pid, elapsed.as_secs_f64()) {
                cpu.push(c);
            }
        },
    )?;
    let (ok, accepted) = (m.count(200), m.count(202));
    let failed = m.latencies.len() as u64 - ok - accepted;
    let lat = &m.latencies;
    let measured = m.seconds;
    let warmup = o.warmup;
    let leads_per_s = ((ok + accepted) as f64 * o.batch as f64) / measured;
    // What the server used while measured: from the end of the warm-up
    // to the last sample (the load generator's own CPU is not in it).
    let server_cpu = used_between(&cpu, o.warmup.as_secs_f64(), f64::INFINITY);
    drop(child);

    // The batch pipeline over the same leads, for the ratio.
    let done_leads = ((ok + accepted + failed) as usize * o.batch).min(leads.len());
    let base_run = batch_baseline(config, &leads, done_leads, &dir, &baseline_db)?;

    println!(
        "bench serve on {} ({} stored leads, {} leads per request, {} connections)",
        match stores {
            Stores::Sqlite => "SQLite",
            Stores::Postgres { .. } => "PostgreSQL",
        },
        o.stored,
        o.batch,
        o.concurrency
    );
    println!(
        "  offered {:.0} leads/s · done {:.0} leads/s over {:.0} s ({} requests: {} 200, {} 202, {} failed)",
        o.rate,
        leads_per_s,
        measured,
        ok + accepted + failed,
        ok,
        accepted,
        failed
    );
    println!(
        "  latency (from when each request was due): p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · max {:.2} ms",
        percentile(lat, 0.5).as_secs_f64() * 1e3,
        percentile(lat, 0.9).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    if o.duration >= Duration::from_secs(60) {
        print_windows(o, &m.timeline, &rss, &cpu);
    }
    if let Some(Cpu {
        at: over,
        total: used,
        roles,
    }) = server_cpu
    {
        println!(
            "  server CPU: {:.2} cores ({:.1} s over {:.1} s) · {:.0} µs per lead done",
            used / over,
            used,
            over,
            used / over / leads_per_s.max(1e-9) * 1e6
        );
        println!("    by thread (cores): {}", roles_text(&roles, over, ""));
    }
    print_memory(&rss, warmup);
    println!(
        "  batch baseline (`leadgate run` + scoring, same leads, same store): {:.0} leads/s · service/batch {:.2}",
        base_run,
        leads_per_s / base_run
    );
    Ok(())
}

/// A long run, window by window (a tenth of the run, at least 10 s, by
/// when requests were due): where a backlog builds and whether it drains,
/// with the server's memory and CPU per lead by thread.
fn print_windows(o: &Options, timeline: &[(f64, Duration)], rss: &[(f64, u64)], cpu: &[Cpu]) {
    // A long run, window by window: where a backlog builds, and
    // whether it drains.
    let width = (o.duration.as_secs_f64() / 10.0).round().max(10.0);
    println!(
        "  by when requests were due ({width:.0} s windows; server CPU per lead due by thread):"
    );
    for w in crate::load::windows(timeline, width) {
        let mem = rss
            .iter()
            .find(|(t, _)| *t >= o.warmup.as_secs_f64() + w.from + width)
            .or(rss.last())
            .map_or(0.0, |r| r.1 as f64 / 1024.0);
        let from = o.warmup.as_secs_f64() + w.from;
        let by_thread = used_between(cpu, from, from + width)
            .map(|used| {
                let leads = (w.requests * o.batch).max(1) as f64;
                format!(" · {}", roles_text(&used.roles, leads / 1e6, " µs"))
            })
            .unwrap_or_default();
        println!(
            "    {:>4.0}–{:<4.0} s: {:>5} requests · p50 {:>8.2} ms · p99 {:>8.2} ms · max {:>8.2} ms · memory {:>6.1} MiB{by_thread}",
            w.from,
            w.from + width,
            w.requests,
            crate::load::ms(w.p50),
            crate::load::ms(w.p99),
            crate::load::ms(w.max),
            mem
        );
    }
}

/// The server's memory (anonymous RSS) after the warm-up, at the end, at
/// most, and its growth over the second half of the run.
fn print_memory(rss: &[(f64, u64)], warmup: Duration) {
    let first = rss
        .iter()
        .find(|(t, _)| *t >= warmup.as_secs_f64())
        .map_or(0, |r| r.1);
    let last = rss.last().map_or(0, |r| r.1);
    let max = rss.iter().map(|r| r.1).max().unwrap_or(0);
    println!(
        "  server memory (anonymous RSS): {:.1} MiB after warm-up · {:.1} MiB at the end · {:.1} MiB max",
        first as f64 / 1024.0,
        last as f64 / 1024.0,
        max as f64 / 1024.0
    );
    if rss.len() >= 20 {
        // Growth per minute over the second half of the run.
        let half: Vec<&(f64, u64)> = rss.iter().skip(rss.len() / 2).collect();
        let (t1, m1) = (half[0].0, half[0].1 as f64);
        let (t2, m2) = (half[half.len() - 1].0, half[half.len() - 1].1 as f64);
        println!(
            "  memory growth over the second half: {:+.2} MiB/min",
            (m2 - m1) / 1024.0 / ((t2 - t1).max(1e-9) / 60.0)
        );
    }
}

/// The tenant's configuration beside the original (its relative paths
/// still resolve), with the bench's store at `db`, no pipeline file, and
/// the tenant's own `[serve]` (its batching, its HTTP threads) with the
/// limits that would refuse the load lifted and no other tenants.
fn write_bench_config(
    config_path: &std::path::Path,
    db: &str,
    o: &Options,
) -> Result<std::path::PathBuf> {
    // The tenant's configuration beside the original (its relative paths
    // still resolve), with the bench's store and no pipeline file.
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text)?;
    let mut store_t = toml::Table::new();
    store_t.insert(
        if leadgate::config::is_postgres(db) {
            "url"
        } else {
            "path"
        }
        .into(),
        db.into(),
    );
    doc.insert("store".into(), store_t.into());
    if let Some(toml::Value::Table(score)) = doc.get_mut("score") {
        score.remove("pipeline");
    }
    // The tenant's own `[serve]` (its batching, its HTTP threads), with
    // the limits that would refuse the load lifted; no other tenants.
    let mut serve_t = match doc.remove("serve") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    serve_t.remove("tenants");
    serve_t.insert("rate_limit_per_second".into(), 1_000_000i64.into());
    serve_t.insert("rate_limit_burst".into(), 1_000_000i64.into());
    serve_t.insert(
        "max_leads_per_request".into(),
        (o.batch.max(1) as i64).into(),
    );
    serve_t.insert("max_body_bytes".into(), (16i64 << 20).into());
    doc.insert("serve".into(), serve_t.into());
    let pid = std::process::id();
    let bench_config = config_path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(format!(".leadgate-bench-serve-{pid}.toml"));
    std::fs::write(&bench_config, toml::to_string(&doc)?)
        .with_context(|| format!("cannot write {}", bench_config.display()))?;
    Ok(bench_config)
}

/// Starts `leadgate serve` on the bench's configuration and waits until it
/// is ready; the server (stopped when dropped), its pid and its URL.
fn start_server(bench_config: &std::path::Path) -> Result<(Child, u32, String)> {
    let exe = crate::leadgate_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(["--config"])
        .arg(bench_config)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-handoff",
            "--text-logs",
        ])
        .env(
            "LEADGATE_LOG",
            std::env::var("LEADGATE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start leadgate serve")?;
    let stderr = child
        .stderr
        .take()
        .context("no standard error from the server")?;
    let child = Child(child);
    let server_pid = child.0.id();
    let rx = announced(stderr, "listening on ", |line| {
        if line.contains("ERROR") || line.contains("DEBUG") || line.starts_with("error") {
            eprintln!("server: {line}");
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .context("the server did not start")?;
    let agent = crate::load::agent();
    let ready_by = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = agent.get(format!("{url}/readyz")).call()
            && r.status().as_u16() == 200
        {
            break;
        }
        if Instant::now() > ready_by {
            bail!("the server did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((child, server_pid, url))
}

/// The batch pipeline (`leadgate run` and scoring) over the first of the
/// same leads (as many as the service did, within 1,000–50,000) on a copy
/// of the same store, for the ratio: leads per second.
fn batch_baseline(
    config: &Config,
    leads: &[serde_json::Value],
    done: usize,
    dir: &std::path::Path,
    baseline_db: &str,
) -> Result<f64> {
    let n = done.clamp(1_000, 50_000);
    let ndjson = dir.join("baseline.ndjson");
    let mut text = String::new();
    for l in leads.iter().take(n) {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    std::fs::write(&ndjson, text)?;
    let mut c = config.clone();
    c.score.pipeline = None;
    let opts = leadgate::run::RunOptions {
        input: ndjson.display().to_string(),
        format: Some(leadgate_ingest::Format::Ndjson),
        map: Vec::new(),
        output: String::new(),
        source: leadgate_lead::Source::Api,
        db: baseline_db.to_string(),
        progress: false,
        quiet: true,
        import: false,
    };
    let started = Instant::now();
    let report = leadgate::run::run(&c, &opts)?;
    if c.score.enabled {
        let leads = leadgate_store::Store::open(&opts.db)?.run_leads(report.run_id)?;
        leadgate::score::rescore_stored(&c, &opts.db, Some(leads), "run", None)?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_s_cpu_time_is_read_and_grows_with_work() {
        let me = std::process::id();
        let before = cpu_seconds(me).expect("this process's CPU time");
        // Busy until it shows (a few clock ticks), however loaded the
        // machine; a reader that never moves fails after 30 s.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.05 && started.elapsed() < Duration::from_secs(30) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = cpu_seconds(me).expect("this process's CPU time");
        }
        assert!(after - before >= 0.05, "{before} → {after}");
        assert!(cpu_seconds(u32::MAX).is_none());
        // This thread is in the process's split ("other": it is not one of
        // the server's), and the split adds up to the process's time.
        let split = cpu_by_role(me).expect("this process's threads");
        assert!(split[ROLES.len() - 1] > 0.0, "{split:?}");
        let total = cpu_seconds(me).expect("this process's CPU time");
        let sum: f64 = split.iter().sum();
        assert!(sum <= total + 0.05, "threads {sum} > process {total}");
        assert!(cpu_by_role(u32::MAX).is_none());
    }

    #[test]
    fn a_stat_line_gives_the_name_and_the_cpu_ticks() {
        // A thread named with a space and a parenthesis: 7 + 3 ticks.
        let line = "42 (record-a) b) S 1 42 42 0 -1 4194368 100 0 0 0 7 3 0 0 20 0 9 0 5";
        assert_eq!(name_and_ticks(line), Some(("record-a) b", 10)));
        assert_eq!(name_and_ticks("42 (x) S 1"), None);
        assert_eq!(name_and_ticks("no name at all"), None);
    }

    #[test]
    fn threads_are_told_apart_by_the_names_serve_gives_them() {
        let role = |n: &str| ROLES[role_of(n)];
        assert_eq!(role("pipeline-demo"), "front");
        assert_eq!(role("record-demo"), "record");
        assert_eq!(role("background"), "background");
        assert_eq!(role("tokio-rt-worker"), "HTTP");
        assert_eq!(role("leadgate-epoch"), "other");
        assert_eq!(role("leadgate"), "other");
    }

    #[test]
    fn each_role_s_time_between_two_moments_is_split_per_lead() {
        let sample = |at, roles: [f64; ROLES.len()]| Cpu {
            at,
            total: roles.iter().sum(),
            roles,
        };
        let samples = vec![
            sample(0.0, [0.0, 0.0, 0.0, 0.0, 0.0]),
            sample(5.0, [1.0, 2.0, 0.0, 0.5, 0.0]),
            sample(15.0, [3.0, 3.0, 0.2, 1.0, 0.0]),
        ];
        let Cpu {
            at, roles: used, ..
        } = used_between(&samples, 5.0, 15.0).expect("two samples");
        assert_eq!(used, [2.0, 1.0, 0.2, 0.5, 0.0]);
        assert_eq!(at, 10.0);
        // 10,000 leads: 200 µs a lead at the front.
        assert_eq!(
            roles_text(&used, 10_000.0 / 1e6, " µs"),
            "front 200 µs · record 100 µs · background 20 µs · HTTP 50 µs"
        );
        assert_eq!(
            roles_text(&used, 10.0, ""),
            "front 0.20 · record 0.10 · background 0.02 · HTTP 0.05"
        );
        // Past the last sample: up to it. Nothing after `from`: nothing.
        assert!(used_between(&samples, 5.0, 99.0).is_some());
        assert!(used_between(&samples, 16.0, 20.0).is_none());
    }
}
