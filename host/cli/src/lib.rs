//! The `leadgate` host as a library: every verb of the `leadgate` binary
//! (`main.rs` parses the command line and calls them) and what they share —
//! configuration, the pipeline engine `run` and `serve` share, the service,
//! calibration and training. `leadgate-bench` (`host/bench`) builds its
//! benchmarks on it; the sample generator is `leadgate-sample`
//! (`host/sample`).

pub mod batch;
pub mod calibrate;
pub mod classify;
pub mod clock;
pub mod compose;
pub mod config;
pub mod dedupe;
pub mod enrich;
pub mod estimate;
pub mod eval;
pub mod events;
pub mod handoff;
pub mod isolate;
pub mod logging;
pub mod matcher;
pub mod matching;
pub mod pipeline;
pub mod reenrich;
pub mod rekey;
pub mod report;
pub mod review;
pub mod run;
pub mod score;
pub mod serve;
pub mod train;
