//! leadgate's notifier: who is told about an alert, when, and how.
//!
//! An alert (a routing queue entry, a missed response SLA, a new hot lead, a
//! dead-lettered handoff, a review past its SLA …) is a kind, a set of
//! labels (`kind`, `lead`, `rep`, `team`, …) and a message. This crate
//! decides, with Prometheus Alertmanager's semantics, what becomes of it:
//!
//! - [`config`]: `[alerts]` in `leadgate.toml` — destinations (Slack,
//!   a signed JSON webhook, email over SMTP), routes (matchers → destinations,
//!   grouping, group wait and interval, repeat interval, quiet hours) and
//!   inhibition rules.
//! - [`policy`]: matchers, fingerprints (the dedup key), which routes an
//!   alert takes and its group, inhibition, silences, and the end of quiet
//!   hours.
//! - [`render`]: one notification per group — Slack Block Kit, the webhook
//!   document, an email — listing its alerts with their lead, score and
//!   reasons, and a link.
//! - [`send`]: the transports (HTTP for Slack and webhooks, SMTP by
//!   `lettre`), each answer sorted into sent, worth retrying, or refused.
//!
//! It keeps nothing: the store holds alerts, groups, the outbox of
//! notifications and silences, and the service's scheduler drives them.

pub mod config;
pub mod policy;
pub mod render;
pub mod send;

pub use config::{AlertsConfig, Destination, DestinationKind, Inhibit, Route, Security, Smtp};
pub use policy::{Alert, Matcher, Matchers, Policy, RouteMatch, Silence, fingerprint};
pub use render::{LeadView, Rendered, render};
pub use send::{Deliver, Delivery, Outcome, Transport};

/// A refused `[alerts]` setting or silence, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct NotifyError {
    pub key: String,
    pub reason: String,
}

impl NotifyError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> NotifyError {
        NotifyError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
