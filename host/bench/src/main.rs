//! `leadgate-bench`: leadgate's benchmarks — validate, dedupe, enrich and
//! score natively and through the components, `leadgate run` end to end,
//! the store on PostgreSQL against SQLite, and the HTTP service and the
//! edge under an open-loop load. Numbers,
//! method and how to reproduce each are in BENCHMARKS.md; `cargo xtask
//! bench` builds everything and runs it. It is built beside the `leadgate`
//! binary and measures that binary's code (the `leadgate` library, the
//! bundled components, and for `serve` the binary itself), without being
//! part of it.

/// The same allocator as the `leadgate` binary, so the code measured runs
/// as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_cli;
mod bench_dedupe;
mod bench_edge;
mod bench_enrich;
mod bench_notify;
mod bench_postgres;
mod bench_routing;
mod bench_rules;
mod bench_score;
mod bench_serve;
mod load;

use clap::Parser;
use leadgate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "leadgate-bench",
    version,
    about = "leadgate's benchmarks: validate (the default), or one of the subcommands"
)]
struct Cli {
    /// Tenant configuration (leadgate.toml); defaults apply without one.
    #[arg(long, global = true, env = "LEADGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    bench: bench_cli::BenchArgs,
}

/// The `leadgate` binary the benchmarks run as a child process: beside
/// this one (`cargo build` puts both in `target/release`).
pub(crate) fn leadgate_exe() -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let me = std::env::current_exe().context("cannot find the leadgate-bench executable")?;
    let exe = me.with_file_name(format!("leadgate{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        exe.is_file(),
        "{} is missing: build it beside leadgate-bench (`cargo build --release -p leadgate`, or `cargo xtask bench`)",
        exe.display()
    );
    Ok(exe)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    leadgate::logging::init("warn", false);
    let run = Config::load(cli.config.as_deref())
        .and_then(|config| bench_cli::execute(&config, cli.config.as_deref(), cli.bench));
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
