//! `cargo xtask`: everything a fresh machine with only Rust needs.
//!
//! - `build`: add the `wasm32-wasip2` target, build the components (profile
//!   `component`), pre-initialize the validate component with
//!   `leadgate preinit`, and put them in `target/components/`; build the
//!   `leadgate` binary. The edge component (`components/edge`) is also
//!   written statically composed with the validate component, as
//!   `edge-composed.wasm` (what `wasmtime serve` runs; Spin composes
//!   `edge.wasm` itself from `spin.toml`).
//! - `demo`: build, then run the sample data through `leadgate run`,
//!   compare the results with the sample's ground truth (`leadgate eval`),
//!   measure dedupe on the labelled sample (`leadgate eval dedupe`), load
//!   generated behavioural events (`leadgate events`), route the qualified
//!   leads to reps (`leadgate route --unassigned`, `leadgate reps stats`),
//!   fit a conversion model from a generated history (`leadgate
//!   calibrate`), score it in batch (`leadgate score`) and report on it
//!   (`leadgate report`).
//! - `test`: build, make sure the pinned `wasmtime` CLI is installed (the
//!   edge tests run the edge under `wasmtime serve`), then `cargo test
//!   --workspace --release`.
//! - `image`: build, then the container image `leadgate:<version>` from
//!   `deploy/Containerfile`, with no base image (see `image.rs`).
//! - `bench`: build, then `leadgate-bench` (the benchmarks, a binary of
//!   their own; extra arguments passed on, e.g. `dedupe` or `enrich
//!   --rounds 5`).

mod image;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const COMPONENTS: &[(&str, &str)] = &[
    ("leadgate-validate", "validate"),
    ("leadgate-dedupe", "dedupe"),
    ("leadgate-enrich", "enrich"),
    ("leadgate-score", "score"),
    ("leadgate-edge", "edge"),
];
/// The `wasmtime` CLI the edge runs under in tests and benchmarks.
const WASMTIME_CLI: &str = "48.0.8";
/// Components built by a cargo of their own (see `build`).
const BUILT_APART: &[&str] = &["leadgate-edge"];
const FIXTURES: &[(&str, &str)] = &[
    ("fixture-chaos", "chaos"),
    ("fixture-chaos-enrich", "chaos-enrich"),
    ("fixture-wrong-world", "wrong-world"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(),
        Some("demo") => build().and_then(|()| demo()),
        Some("test") => build().and_then(|()| test(&args[1..])),
        Some("bench") => build().and_then(|()| bench(&args[1..])),
        Some("image") => build().and_then(|()| image::image(&root(), COMPONENTS)),
        _ => {
            eprintln!("usage: cargo xtask <build | demo | test | bench | image>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
        });
    match installed {
        Ok(true) => Ok(()),
        Ok(false) => run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"])),
        Err(_) => {
            eprintln!("xtask: rustup not found; assuming the wasm32-wasip2 target is installed");
            Ok(())
        }
    }
}

fn build() -> Result<(), String> {
    ensure_wasm_target()?;
    // The edge calls a validate component (the guest SDK's `client`
    // feature), which cannot be linked into a component that exports
    // validate: it is built by a cargo of its own, so the features the
    // others are built with do not include it.
    let (apart, together): (Vec<&str>, Vec<&str>) = COMPONENTS
        .iter()
        .chain(FIXTURES)
        .map(|(krate, _)| *krate)
        .partition(|krate| BUILT_APART.contains(krate));
    for group in [together, apart] {
        let mut wasm = cargo();
        wasm.args([
            "build",
            "--profile",
            "component",
            "--target",
            "wasm32-wasip2",
        ]);
        for krate in group {
            wasm.args(["-p", krate]);
        }
        run(&mut wasm)?;
    }
    run(cargo().args(["build", "--release", "-p", "leadgate"]))?;

    let target = root().join("target");
    let built = target.join("wasm32-wasip2").join("component");
    let out = target.join("components");
    std::fs::create_dir_all(out.join("fixtures"))
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let leadgate = target
        .join("release")
        .join(format!("leadgate{}", std::env::consts::EXE_SUFFIX));
    for (krate, name) in COMPONENTS {
        let wasm = built.join(format!("{}.wasm", krate.replace('-', "_")));
        run(Command::new(&leadgate)
            .arg("preinit")
            .arg(&wasm)
            .arg(out.join(format!("{name}.wasm"))))?;
    }
    run(Command::new(&leadgate)
        .arg("compose")
        .arg(out.join("edge.wasm"))
        .arg("--plug")
        .arg(out.join("validate.wasm"))
        .arg("--output")
        .arg(out.join("edge-composed.wasm")))?;
    for (krate, name) in FIXTURES {
        let wasm = built.join(format!("{}.wasm", krate.replace('-', "_")));
        let dest = out.join("fixtures").join(format!("{name}.wasm"));
        std::fs::copy(&wasm, &dest)
            .map_err(|e| format!("cannot copy {} to {}: {e}", wasm.display(), dest.display()))?;
    }
    eprintln!("xtask: components are in {}", out.display());
    Ok(())
}

fn leadgate() -> Command {
    let mut c = Command::new(root().join("target").join("release").join("leadgate"));
    c.current_dir(root());
    c
}

fn demo() -> Result<(), String> {
    let results = "target/demo/results.ndjson";
    std::fs::create_dir_all(root().join("target/demo")).map_err(|e| e.to_string())?;
    run(leadgate().args([
        "run",
        "--config",
        "samples/leadgate.toml",
        "--input",
        "samples/leads.csv",
        "--output",
        results,
    ]))?;
    run(leadgate().args([
        "eval",
        "--results",
        results,
        "--truth",
        "samples/leads.truth.csv",
    ]))?;
    run(leadgate().args([
        "--config",
        "samples/leadgate.toml",
        "eval",
        "dedupe",
        "--input",
        "samples/dedupe.labelled.csv",
        "--truth-column",
        "person",
    ]))?;
    // Behavioural events for the sample's leads (some people not in it yet,
    // a repeated id, malformed lines), attached and re-scored; leads that
    // cross the threshold go to target/demo/qualified_lead_pipeline.ndjson.
    run(leadgate().args([
        "sample",
        "--count",
        "2000",
        "--seed",
        "7",
        "--output",
        "target/demo/leads.csv",
        "--events",
        "target/demo/events.ndjson",
        "--history",
        "target/demo/history.csv",
    ]))?;
    run(leadgate().args([
        "--config",
        "samples/leadgate.toml",
        "events",
        "--input",
        "target/demo/events.ndjson",
    ]))?;
    // Every qualified lead to its rep (territory table, round robin), with
    // a response SLA by grade; then the reps' shares and load.
    run(leadgate().args(["--config", "samples/leadgate.toml", "route", "--unassigned"]))?;
    run(leadgate().args(["--config", "samples/leadgate.toml", "reps", "stats"]))?;
    // A conversion model from a history export, its held-out metrics, the
    // history scored in batch, and the calibration and ICP-drift signals.
    run(leadgate().args([
        "--config",
        "samples/leadgate.toml",
        "calibrate",
        "--input",
        "target/demo/history.csv",
        "--outcome",
        "Converted",
        "--output",
        "target/demo/model.toml",
    ]))?;
    run(leadgate().args([
        "--config",
        "samples/leadgate.toml",
        "score",
        "--input",
        "target/demo/history.csv",
        "--model",
        "target/demo/model.toml",
        "--output",
        "target/demo/scores.ndjson",
    ]))?;
    run(leadgate().args([
        "--config",
        "samples/leadgate.toml",
        "report",
        "--input",
        "target/demo/history.csv",
        "--outcome",
        "Converted",
        "--model",
        "target/demo/model.toml",
        "--signals",
        "target/demo/signals.ndjson",
    ]))?;
    eprintln!(
        "xtask: results in {results}; store in target/demo/leadgate.db; surfaced leads in target/demo/qualified_lead_pipeline.ndjson; model and scores in target/demo/"
    );
    Ok(())
}

/// The pinned `wasmtime` CLI: `$LEADGATE_WASMTIME`, else `wasmtime` on the
/// PATH or in cargo's bin directory when it is the pinned version, else
/// installed with `cargo install` (a few minutes, once).
fn ensure_wasmtime() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("LEADGATE_WASMTIME") {
        return Ok(PathBuf::from(p));
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin").join("wasmtime"));
    let candidates = [Some(PathBuf::from("wasmtime")), cargo_bin.clone()];
    for c in candidates.iter().flatten() {
        let version = Command::new(c).arg("--version").output();
        if let Ok(o) = version
            && String::from_utf8_lossy(&o.stdout).trim() == format!("wasmtime {WASMTIME_CLI}")
        {
            return Ok(c.clone());
        }
    }
    run(cargo().args([
        "install",
        "wasmtime-cli",
        "--version",
        WASMTIME_CLI,
        "--locked",
    ]))?;
    cargo_bin.ok_or_else(|| "cannot tell where cargo installed wasmtime".to_string())
}

fn test(extra: &[String]) -> Result<(), String> {
    let wasmtime = ensure_wasmtime()?;
    let mut c = cargo();
    c.args(["test", "--workspace", "--release"]).args(extra);
    c.env("LEADGATE_WASMTIME", wasmtime);
    // One compilation cache for the whole run: each component is compiled once.
    c.env(
        "LEADGATE_CACHE_DIR",
        root().join("target").join("wasmtime-cache"),
    );
    run(&mut c)
}

fn bench(extra: &[String]) -> Result<(), String> {
    run(cargo().args(["build", "--release", "-p", "leadgate-bench"]))?;
    let mut c = Command::new(root().join("target").join("release").join("leadgate-bench"));
    c.current_dir(root())
        .args(["--config", "samples/leadgate.toml"])
        .args(extra);
    run(&mut c)
}
