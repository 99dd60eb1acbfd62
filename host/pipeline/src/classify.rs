//! Classification: a qualification state for every lead — `qualified`,
//! `incomplete`, `needs_review` or `rejected` — from its validation and
//! dedupe outcome, the completeness of its data and the confidence of what
//! enrichment filled in, with a reason code for every finding. The tenant
//! decides what is required and what each finding means (`[classify]`).
//!
//! The most severe finding decides: rejected, then needs review, then
//! incomplete; a lead with no finding is qualified.

use anyhow::{Result, bail};
use leadgate_lead::Lead;
use leadgate_lead::enrich::{EnrichStatus, Enrichment};
use leadgate_store::Status;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Qualified,
    Incomplete,
    NeedsReview,
    Rejected,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Qualified => "qualified",
            State::Incomplete => "incomplete",
            State::NeedsReview => "needs_review",
            State::Rejected => "rejected",
        }
    }
}

/// What a finding means for the state; `ignore` drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Ignore,
    Incomplete,
    NeedsReview,
    Rejected,
}

impl Effect {
    fn state(self) -> Option<State> {
        match self {
            Effect::Ignore => None,
            Effect::Incomplete => Some(State::Incomplete),
            Effect::NeedsReview => Some(State::NeedsReview),
            Effect::Rejected => Some(State::Rejected),
        }
    }
}

/// `[classify]` in `leadgate.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Fields a qualified lead has: canonical lead fields (`email`, `phone`,
    /// `company`, `country`, `job_title`, ...) or enrichment attributes
    /// (`industry`, `employee_range`, `seniority`, ...). Missing ones make
    /// the lead `incomplete` (reason `missing.FIELD`).
    pub required: Vec<String>,
    /// Enriched values of required fields below this confidence count as
    /// uncertain (reason `low_confidence.FIELD`).
    pub min_confidence: f64,
    pub low_confidence: Effect,
    /// A free-mail address (gmail.com, ...) instead of a work one
    /// (reason `email.free_mail`).
    pub free_mail: Effect,
    /// Enrichment still waiting on a provider (reason `enrichment.pending`).
    pub enrichment_pending: Effect,
    /// Enrichment failed: providers down, or the component failed
    /// (reason `enrichment.failed`).
    pub enrichment_failed: Effect,
    /// Validation sent the lead to review (reason `validation.review`).
    pub validation_review: Effect,
    /// A possible duplicate waiting for a reviewer (reason `dedupe.review`).
    pub possible_duplicate: Effect,
    /// The same person as a stored lead (reason `dedupe.duplicate`): by
    /// default not a new lead to pass on.
    pub duplicate: Effect,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            required: ["email", "company", "country"].map(String::from).to_vec(),
            min_confidence: 0.6,
            low_confidence: Effect::NeedsReview,
            free_mail: Effect::Ignore,
            enrichment_pending: Effect::Incomplete,
            enrichment_failed: Effect::Incomplete,
            validation_review: Effect::NeedsReview,
            possible_duplicate: Effect::NeedsReview,
            duplicate: Effect::Rejected,
        }
    }
}

impl ClassifyConfig {
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.min_confidence) {
            bail!(
                "classify.min_confidence must be between 0 and 1, not {}",
                self.min_confidence
            );
        }
        for f in &self.required {
            if !leadgate_lead::TEXT_FIELDS.contains(&f.as_str())
                && !leadgate_lead::enrich::FIELDS.contains(&f.as_str())
            {
                bail!(
                    "classify.required: unknown field `{f}` (lead fields: {}; enrichment: {})",
                    leadgate_lead::TEXT_FIELDS.join(", "),
                    leadgate_lead::enrich::FIELDS.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// A lead's qualification: its state and every reason found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Qualification {
    pub state: State,
    pub reasons: Vec<String>,
}

/// What classification looks at.
pub struct Facts<'a> {
    /// The lead's status after validation and dedupe.
    pub status: Status,
    /// The normalized (and enriched) lead; `None` when it never got that far.
    pub lead: Option<&'a Lead>,
    pub enrichment: Option<&'a Enrichment>,
    /// The validate capability's own status (before dedupe).
    pub validation: Status,
    /// Every issue found so far.
    pub issues: &'a [leadgate_lead::Issue],
    /// Enrichment waits on a provider (queued for re-enrichment).
    pub pending: bool,
    /// The enrich component failed on this lead.
    pub enrich_failed: bool,
    /// A component failure sent the lead to the exception queue: its code.
    pub exception: Option<&'a str>,
}

pub struct Classifier {
    config: ClassifyConfig,
}

impl Classifier {
    pub fn new(config: ClassifyConfig) -> Classifier {
        Classifier { config }
    }

    pub fn classify(&self, f: &Facts<'_>) -> Qualification {
        let c = &self.config;
        let mut q = Qualification {
            state: State::Qualified,
            reasons: Vec::new(),
        };
        let mut find = |effect: Option<State>, reason: String| {
            if let Some(s) = effect.filter(|_| !q.reasons.contains(&reason)) {
                q.state = q.state.max(s);
                q.reasons.push(reason);
            }
        };
        if let Some(code) = f.exception {
            find(Some(State::NeedsReview), format!("exception.{code}"));
        }
        match f.status {
            Status::Rejected => find(Some(State::Rejected), "validation.rejected".into()),
            Status::Duplicate => find(c.duplicate.state(), "dedupe.duplicate".into()),
            Status::Accepted | Status::Review | Status::Exception => {}
        }
        for i in f.issues {
            if i.code == "dedupe.possible_duplicate" || i.code == "dedupe.consent_conflict" {
                find(c.possible_duplicate.state(), "dedupe.review".into());
            }
        }
        if f.validation == Status::Review {
            find(c.validation_review.state(), "validation.review".into());
        }
        let Some(lead) = f.lead else {
            // No normalized lead: nothing more to judge. A lead with no
            // other finding here could not be read at all.
            if f.exception.is_none() && f.status != Status::Rejected {
                find(Some(State::NeedsReview), "lead.unreadable".into());
            }
            return q;
        };
        for field in &c.required {
            // Enrichment fills a lead field only when intake left it empty,
            // so an enriched entry is where the value came from.
            match f.enrichment.and_then(|e| e.get(field)) {
                Some(e) if e.confidence < c.min_confidence => {
                    find(c.low_confidence.state(), format!("low_confidence.{field}"));
                }
                Some(_) => {}
                None if lead.field(field).is_some() => {}
                None => find(Some(State::Incomplete), format!("missing.{field}")),
            }
        }
        if f.enrichment
            .and_then(|e| e.get("email_type"))
            .is_some_and(|t| t.value == "free")
        {
            find(c.free_mail.state(), "email.free_mail".into());
        }
        let failed = f.enrich_failed
            || (!f.pending
                && f.enrichment
                    .is_some_and(|e| e.status == EnrichStatus::Failed));
        if failed {
            find(c.enrichment_failed.state(), "enrichment.failed".into());
        } else if f.pending {
            find(c.enrichment_pending.state(), "enrichment.pending".into());
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_lead::enrich::EnrichedField;
    use leadgate_lead::{Issue, Severity};

    fn lead() -> Lead {
        Lead {
            email: Some("jane@acme.com".into()),
            company: Some("Acme".into()),
            country: Some("US".into()),
            ..Lead::default()
        }
    }

    fn facts<'a>(lead: &'a Lead, e: Option<&'a Enrichment>, issues: &'a [Issue]) -> Facts<'a> {
        Facts {
            status: Status::Accepted,
            validation: Status::Accepted,
            lead: Some(lead),
            enrichment: e,
            issues,
            pending: false,
            enrich_failed: false,
            exception: None,
        }
    }

    fn enrichment(fields: &[(&str, &str, f64)], status: EnrichStatus) -> Enrichment {
        Enrichment {
            status,
            fields: fields
                .iter()
                .map(|(f, v, c)| EnrichedField {
                    field: (*f).into(),
                    value: (*v).into(),
                    source: "local".into(),
                    confidence: *c,
                })
                .collect(),
            issues: vec![],
        }
    }

    #[test]
    fn complete_confident_data_qualifies() {
        let c = Classifier::new(ClassifyConfig::default());
        let l = lead();
        let q = c.classify(&facts(&l, None, &[]));
        assert_eq!((q.state, q.reasons.len()), (State::Qualified, 0));
    }

    #[test]
    fn missing_and_uncertain_fields_are_named() {
        let mut cfg = ClassifyConfig::default();
        cfg.required.push("industry".into());
        let c = Classifier::new(cfg);
        let mut l = lead();
        l.company = None;
        let q = c.classify(&facts(&l, None, &[]));
        assert_eq!(q.state, State::Incomplete);
        assert_eq!(q.reasons, ["missing.company", "missing.industry"]);
        let e = enrichment(
            &[("company", "Acme", 0.5), ("industry", "Software", 0.9)],
            EnrichStatus::Complete,
        );
        let q = c.classify(&facts(&l, Some(&e), &[]));
        assert_eq!(q.state, State::NeedsReview);
        assert_eq!(q.reasons, ["low_confidence.company"]);
    }

    #[test]
    fn the_most_severe_finding_decides() {
        let c = Classifier::new(ClassifyConfig::default());
        let mut l = lead();
        l.country = None;
        let issues = [Issue::new(
            "lead",
            "dedupe.possible_duplicate",
            Severity::Warning,
            "maybe",
        )];
        let mut f = facts(&l, None, &issues);
        f.status = Status::Review;
        let q = c.classify(&f);
        assert_eq!(q.state, State::NeedsReview);
        assert_eq!(q.reasons, ["dedupe.review", "missing.country"]);
        f.status = Status::Rejected;
        assert_eq!(c.classify(&f).state, State::Rejected);
        f.status = Status::Duplicate;
        assert!(
            c.classify(&f)
                .reasons
                .contains(&"dedupe.duplicate".to_string())
        );
    }

    #[test]
    fn enrichment_outcomes_follow_the_tenant() {
        let cfg = ClassifyConfig {
            free_mail: Effect::NeedsReview,
            enrichment_pending: Effect::Ignore,
            ..ClassifyConfig::default()
        };
        let c = Classifier::new(cfg);
        let l = lead();
        let e = enrichment(&[("email_type", "free", 1.0)], EnrichStatus::Partial);
        let mut f = facts(&l, Some(&e), &[]);
        f.pending = true;
        let q = c.classify(&f);
        assert_eq!(q.reasons, ["email.free_mail"]);
        assert_eq!(q.state, State::NeedsReview);
        f.enrich_failed = true;
        assert!(
            c.classify(&f)
                .reasons
                .contains(&"enrichment.failed".to_string())
        );
        f.lead = None;
        f.enrich_failed = false;
        f.exception = Some("component.trap");
        assert_eq!(c.classify(&f).reasons, ["exception.component.trap"]);
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let cfg = ClassifyConfig {
            required: vec!["industy".into()],
            ..ClassifyConfig::default()
        };
        assert!(cfg.check().unwrap_err().to_string().contains("industy"));
    }
}
