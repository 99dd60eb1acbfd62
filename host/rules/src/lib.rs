//! Workflow rules as documents: what a rule listens for (a trigger), what
//! must hold (a CEL condition over the lead, its enrichment, score, stage
//! and the trigger's window), how often a lead may enter it (re-enrolment),
//! what ends it (a goal) and what it does (actions). This crate owns the
//! documents — reading them from TOML, checking them (every refusal names
//! the file, the line, the rule and the field) — and their evaluation
//! ([`engine`]): what fires for one lead, given what the rules kept of it.
//! It touches no store, network or clock: the pipeline runs the rules over
//! the store, `leadgate rules test` in memory, and the caller carries the
//! actions out.
//!
//! ```toml
//! [[rule]]
//! id = "pricing-revisit"
//! version = 1
//! trigger = { on = "event", events = ["page_view"], categories = ["pricing"], count = 2, within = "48h" }
//! when = 'score.grade != "D"'
//! enrol = { policy = "cooldown", period = "7d" }
//! actions = [
//!   { type = "alert", message = "pricing page visited twice in 48 h" },
//!   { type = "score", points = 20, reason = "pricing revisit" },
//! ]
//! ```

mod condition;
mod doc;
pub mod engine;

pub use condition::{Condition, EventFacts, Facts, VARIABLES};
pub use doc::{
    Action, Enrol, Mode, Rule, RuleSet, SequenceOp, Trigger, format_duration_ms, parse,
    parse_duration_ms,
};

/// A rules document or condition refused, or a condition that could not
/// be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A document refused: where, which rule and field, and why.
    #[error("{file}:{line}: {rule}{field}: {reason}", rule = rule_label(.rule), field = field_label(.field))]
    Invalid {
        file: String,
        line: usize,
        rule: Option<String>,
        field: Option<String>,
        reason: String,
    },
    /// A document that could not be read.
    #[error("{file}: {reason}")]
    Unreadable { file: String, reason: String },
    /// A condition that failed on a lead's facts (a missing key, a type
    /// the operator does not take).
    #[error("rule {rule}: {field} could not be evaluated: {reason}")]
    Evaluation {
        rule: String,
        field: String,
        reason: String,
    },
}

fn rule_label(rule: &Option<String>) -> String {
    rule.as_ref()
        .map(|r| format!("rule {r:?}"))
        .unwrap_or_default()
}

fn field_label(field: &Option<String>) -> String {
    match field {
        Some(f) => format!(": {f}"),
        None => String::new(),
    }
}

/// Reads and checks the rules documents at `paths`, in order; a rule id
/// may appear once across them.
pub fn load(paths: &[std::path::PathBuf]) -> Result<RuleSet, Vec<RulesError>> {
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    for path in paths {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => match parse(&file, &text) {
                Ok(more) => {
                    if let Err(e) = set.extend(more) {
                        errors.extend(e);
                    }
                }
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(RulesError::Unreadable {
                file,
                reason: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}
