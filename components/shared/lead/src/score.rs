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

/// One behavioural event of a lead (a row of `record events`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// 0 for none; `n` for the subject's `categories[n - 1]`.
    #[serde(default)]
    pub category: u8,
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
    /// The page categories its and its peers' events refer to (at most 255).
    pub categories: Vec<String>,
    /// Most recent first.
    pub events: Vec<Event>,
    pub peers: Vec<Peer>,
}

/// Up to 255 category names, each event referring to one by index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Categories {
    pub names: Vec<String>,
}

impl Categories {
    /// The index of `name` (added if new) for [`Event::category`]: 0 for
    /// none, or when the table is full.
    pub fn index(&mut self, name: Option<&str>) -> u8 {
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return 0;
        };
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            return (i + 1) as u8;
        }
        if self.names.len() >= 255 {
            return 0;
        }
        self.names.push(name.to_ascii_lowercase());
        self.names.len() as u8
    }
}

impl Subject {
    /// The category name of `e`, if it has one.
    pub fn category(&self, e: &Event) -> Option<&str> {
        usize::from(e.category)
            .checked_sub(1)
            .and_then(|i| self.categories.get(i))
            .map(String::as_str)
    }

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
