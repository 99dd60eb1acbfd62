//! Lead routing: who gets a qualified lead, and why. Pure decisions over
//! the reps, their load and the `[routing]` table — no store, no clock, no
//! I/O; the host reads the reps and their counts from the store, routes a
//! batch against one [`Roster`], and records each [`Decision`] with its
//! explanation.
//!
//! - [`rep`]: who can receive leads (teams, time zone and working hours,
//!   capacity, weight, away).
//! - [`config`]: `[routing]` — steps, teams and their strategies, the
//!   territory table, the fallback chain and queue, the response SLA.
//! - [`router`]: the decision.

pub mod config;
pub mod rep;
pub mod router;

pub use config::{OnBreach, RoutingConfig, Sla, Strategy, Team, Territory};
pub use rep::{Hours, Rep};
pub use router::{AccountOwner, Candidate, Decision, Load, Roster, Router, Step, Subject};

/// Why reps or the routing table were refused; each names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("rep {rep:?}: {field}: {reason}")]
    Rep {
        rep: String,
        field: String,
        reason: String,
    },
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
}

/// An RFC 3339 time (`2026-12-07T10:30:00Z`, or with an offset) as
/// milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (2026-12-07T10:30:00Z): {e}"))
}

/// Milliseconds since the epoch as an RFC 3339 time in UTC.
pub fn format_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// The local date (`2026-12-07`) in IANA time zone `timezone` at `ms`
/// since the epoch; none for a zone that does not exist.
pub fn local_day(timezone: &str, ms: i64) -> Option<String> {
    let tz = jiff::tz::TimeZone::get(timezone).ok()?;
    Some(
        jiff::Timestamp::from_millisecond(ms)
            .ok()?
            .to_zoned(tz)
            .date()
            .to_string(),
    )
}
