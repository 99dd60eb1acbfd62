//! The score capability's records (`wit/v0.1.0/score.wit`): behavioural
//! events, the account's other leads, and what a scorer returns, in Rust
//! with serde, so the host's event store, its surfacing and the native
//! scorer share one spelling.

use crate::Lead;
use serde::{Deserialize, Serialize};

/// What a behavioural event was (`enum event-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PageView,
    ContentDownload,
    EmailOpen,
    EmailClick,
    FormSubmission,
    TrialSignup,
    ProductUsage,
    SupportInquiry,
    Reply,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::PageView,
        EventKind::ContentDownload,
        EventKind::EmailOpen,
        EventKind::EmailClick,
        EventKind::FormSubmission,
        EventKind::TrialSignup,
        EventKind::ProductUsage,
        EventKind::SupportInquiry,
        EventKind::Reply,
    ];

    /// The name in files, settings and reason codes (`page_view`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PageView => "page_view",
            EventKind::ContentDownload => "content_download",
            EventKind::EmailOpen => "email_open",
            EventKind::EmailClick => "email_click",
            EventKind::FormSubmission => "form_submission",
            EventKind::TrialSignup => "trial_signup",
            EventKind::ProductUsage => "product_usage",
            EventKind::SupportInquiry => "support_inquiry",
            EventKind::Reply => "reply",
        }
    }

    /// Parses a kind as event sources write it: `page_view`, `page-view`,
    /// `Page View`, `pageview` and a few common synonyms.
    pub fn parse(s: &str) -> Option<EventKind> {
        let k: String = s
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Some(match k.as_str() {
            "pageview" | "page" | "visit" | "view" => EventKind::PageView,
            "contentdownload" | "download" | "assetdownload" => EventKind::ContentDownload,
            "emailopen" | "open" | "emailopened" => EventKind::EmailOpen,
            "emailclick" | "click" | "emailclicked" | "linkclick" => EventKind::EmailClick,
            "formsubmission" | "formsubmit" | "form" | "formfill" => EventKind::FormSubmission,
            "trialsignup" | "trial" | "signup" | "trialstart" => EventKind::TrialSignup,
            "productusage" | "usage" | "productevent" => EventKind::ProductUsage,
            "supportinquiry" | "support" | "supportticket" | "ticket" => EventKind::SupportInquiry,
            "reply" | "emailreply" | "replied" => EventKind::Reply,
            _ => return None,
        })
    }
}

/// One behavioural event of a lead (`record event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// A quantity; 1 when the event had none.
    #[serde(default = "one")]
    pub value: f64,
}

fn one() -> f64 {
    1.0
}

/// Another lead of the same account (`record peer`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub id: String,
    pub job_title: Option<String>,
    pub seniority: Option<String>,
    /// Most recent first.
    pub events: Vec<Event>,
}

/// Everything a lead is scored on (`record subject`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub lead: Lead,
    /// Enrichment attributes, `(name, value)`.
    pub attributes: Vec<(String, String)>,
    /// Most recent first.
    pub events: Vec<Event>,
    pub peers: Vec<Peer>,
}

impl Subject {
    /// The value named `name`: an attribute, a lead text field, or a custom
    /// field (`custom.KEY` or just `KEY`, case-insensitive). Empty values
    /// count as absent.
    pub fn value(&self, name: &str) -> Option<&str> {
        let name = name.trim();
        if let Some(key) = name.strip_prefix("custom.") {
            return self.custom(key);
        }
        if let Some((_, v)) = self
            .attributes
            .iter()
            .find(|(n, v)| n.eq_ignore_ascii_case(name) && !v.trim().is_empty())
        {
            return Some(v.as_str());
        }
        self.lead.field(name).or_else(|| self.custom(name))
    }

    fn custom(&self, key: &str) -> Option<&str> {
        self.lead
            .custom
            .iter()
            .find(|c| c.key.eq_ignore_ascii_case(key) && !c.value.trim().is_empty())
            .map(|c| c.value.as_str())
    }
}

/// One factor of a score (`record reason`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub factor: String,
    pub contribution: f64,
    pub detail: String,
}

/// A lead's score (`record scored`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub total: u8,
    pub grade: String,
    pub fit: f64,
    pub engagement: f64,
    pub intent: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    pub reasons: Vec<Reason>,
}
