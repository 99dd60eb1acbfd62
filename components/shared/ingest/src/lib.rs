//! Reading lead files into canonical [`Lead`]s.
//!
//! - [`mapping`]: which column feeds which field — header aliases
//!   (`E-mail`, `Zip`, `given_name`, …) and explicit `--map column=field`.
//! - [`reader`]: CSV (delimiter sniffed) and NDJSON readers that yield one
//!   [`Record`] per input record, in order. A record that cannot be read
//!   (bad quoting, invalid UTF-8, oversize field, bad JSON) is yielded as
//!   [`Malformed`] with a reason, never skipped; only I/O failures stop a
//!   reader.

pub mod body;
pub mod mapping;
pub mod reader;
mod values;

pub use mapping::{Mapping, Target};
pub use reader::{Format, Limits, Reader, parse_value};
pub use values::timestamp_ms;

use leadgate_lead::{Issue, Lead};

/// Fatal problems: the input as a whole cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read the input: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read the CSV header: {0}")]
    Header(String),
    #[error("--map {spec}: {reason}")]
    Map { spec: String, reason: String },
}

/// One input record.
#[derive(Debug, Clone)]
pub struct Record {
    /// 1-based record number (a CSV header is not counted).
    pub line: u64,
    pub outcome: Result<Parsed, Malformed>,
}

/// A record read into a lead, with any problems its values had.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub lead: Lead,
    /// Values that could not be used as given (a timestamp that is not one,
    /// a consent flag that is neither yes nor no), named by field.
    pub problems: Vec<Issue>,
    /// Whether the record carried its own `received_at`.
    pub has_received_at: bool,
    /// Whether the record carried its own `source`.
    pub has_source: bool,
}

/// A record that could not be read, with the reason and what could be kept
/// of it (lossy UTF-8) for the exception trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub code: &'static str,
    pub message: String,
    pub raw: String,
}
