//! The sandbox: one wasmtime [`Engine`] for the process, components loaded
//! once as an [`InstancePre`](wasmtime::component::InstancePre) and
//! instantiated from the pooling allocator, every call under a deadline
//! (epoch interruption) and a memory limit.
//!
//! Components get a minimal WASI: no files, no network, no environment, a
//! frozen clock; their stdout/stderr are captured into the host's log. A
//! component that traps, runs past its deadline or exceeds its memory is
//! stopped with a [`CallError`] naming what happened; the host carries on.
//!
//! - [`engine`]: the engine, its limits and the epoch ticker.
//! - [`sandbox`]: the per-instance store (WASI context, limits).
//! - [`validator`]: the `leadgate:plugin/validator@0.1.0` world.
//! - [`deduper`]: the `leadgate:plugin/deduper@0.1.0` world.
//! - [`enricher`]: the `leadgate:plugin/enricher@0.1.0` world, whose
//!   `lookup` imports the host answers.
//! - [`scorer`]: the `leadgate:plugin/scorer@0.1.0` world.
//! - [`preinit`]: build-time pre-initialization (wizer) of a component.

pub mod deduper;
pub mod engine;
pub mod enricher;
mod failure;
mod load;
pub mod preinit;
pub mod sandbox;
pub mod scorer;
mod session;
pub mod validator;
#[doc(hidden)]
pub mod wit;

pub use deduper::{DeduperComponent, DeduperInstance};
pub use engine::{Limits, Runtime};
pub use enricher::{EnricherComponent, EnricherInstance};
pub use load::Loaded;
pub use scorer::{ScorerComponent, ScorerInstance};
pub use validator::{ValidatorComponent, ValidatorInstance};

use std::path::PathBuf;

/// The contract version this host speaks.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// A component could not be loaded for a capability.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} does not implement the {world} world: {reason}")]
    WrongWorld {
        path: PathBuf,
        world: String,
        reason: String,
    },
    #[error(
        "{path} imports {import}, which the host does not provide (components may import only WASI 0.2 interfaces)"
    )]
    UnsupportedImport { path: PathBuf, import: String },
    #[error("the wasmtime engine could not be set up: {0}")]
    Engine(String),
}

/// A call into a component failed; the lead goes to the exception queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the component ran past its deadline of {deadline_ms} ms and was stopped")]
    Timeout { deadline_ms: u64 },
    #[error("the component exceeded its memory limit of {limit_mib} MiB and was stopped")]
    Memory { limit_mib: u64 },
    #[error("the component trapped: {message}")]
    Trap { message: String },
    #[error("the component refused its settings: {0}")]
    Settings(String),
    #[error("the component could not be instantiated: {0}")]
    Instantiate(String),
    #[error("the component returned {got} results for {sent} leads")]
    Protocol { sent: usize, got: usize },
}

impl CallError {
    /// A stable code for issue lists and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Timeout { .. } => "component.timeout",
            CallError::Memory { .. } => "component.memory",
            CallError::Trap { .. } => "component.trap",
            CallError::Settings(_) => "component.settings",
            CallError::Instantiate(_) => "component.instantiate",
            CallError::Protocol { .. } => "component.protocol",
        }
    }
}

/// `out` if it has one result per item sent, else the protocol error.
pub(crate) fn one_each<T>(out: Vec<T>, sent: usize) -> Result<Vec<T>, CallError> {
    if out.len() == sent {
        Ok(out)
    } else {
        Err(CallError::Protocol {
            sent,
            got: out.len(),
        })
    }
}

/// Hex SHA-256 of a component's bytes: which exact build made a decision.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
