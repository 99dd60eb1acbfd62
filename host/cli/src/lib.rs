//! The `leadgate` binary's verbs as a library: `main.rs` parses the
//! command line and calls them (`commands`), and each verb that is more
//! than a call into another crate lives here — `run`, batch clean-up
//! (`dedupe`), `dedupe-train`, `eval`, `report`, `rekey`, re-enrichment,
//! `compose`. What the verbs share is in crates of their own, re-exported
//! here under the names the verbs use: the pipeline (`leadgate-pipeline`),
//! model fitting (`leadgate-learn`), the service (`leadgate-service`).
//! `leadgate-bench` (`host/bench`) builds its benchmarks on it; the sample
//! generator is `leadgate-sample` (`host/sample`).

pub mod compose;
pub mod dedupe;
pub mod eval;
pub mod reenrich;
pub mod rekey;
pub mod report;
pub mod run;
pub mod train;

pub use leadgate_learn::{calibrate, estimate};
pub use leadgate_pipeline::engine as pipeline;
pub use leadgate_pipeline::{
    batch, classify, clock, config, enrich, events, isolate, logging, matcher, matching, score,
};
pub use leadgate_service as serve;
pub use leadgate_service::{handoff, review};
