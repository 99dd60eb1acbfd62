//! `leadgate`: the host runner. Batch work from the command line; every
//! capability runs as a sandboxed WebAssembly component.
//!
//! Exit codes: 0 done; 1 error (nothing or only part processed — the
//! message says which); 2 bad usage; 3 done, but some leads went to the
//! exception queue.

/// The host allocates a string per field per lead on every component call;
/// mimalloc is markedly faster at that than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;

use clap::Parser;
use commands::{Cli, Command, execute};
use leadgate::logging;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up its own (JSON, at `info`) logging.
    if !matches!(cli.command, Command::Serve { .. }) {
        logging::init("warn", false);
    }
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
