//! The pipeline every lead goes through, as a library the CLI and the
//! service share: configuration (`leadgate.toml`, the service's sections
//! included) and its checks, the engine that runs a batch through validate,
//! enrich, dedupe and classification and records it (`engine`), each stage's
//! host side (`enrich`, `matcher` and `matching`, `classify`, `score`),
//! behavioural events, reading input files (`batch`), the clock, logging,
//! and running a component call in isolation (`isolate`). It knows nothing
//! of HTTP, of the CLI, or of fitting models.

pub mod assign;
pub mod batch;
pub mod classify;
pub mod clock;
pub mod config;
pub mod engine;
pub mod enrich;
pub mod events;
pub mod isolate;
pub mod logging;
pub mod matcher;
pub mod matching;
pub mod pass;
pub mod rules;
pub mod score;
