//! The rules document: its TOML shape, and the checks that turn it into
//! [`Rule`]s — every refusal with the file, line, rule and field.

use crate::RulesError;
use crate::condition::Condition;
use leadgate_lead::Source;
use leadgate_lead::score::EventKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

/// The qualification states a lead can move to.
const QUALIFICATIONS: &[&str] = &["qualified", "incomplete", "needs_review", "rejected"];

/// Fields whose change a `field_changed` trigger can listen for, besides
/// the text fields.
const OTHER_FIELDS: &[&str] = &["country", "consent", "custom"];

/// The longest rule id.
const MAX_ID: usize = 64;

/// The lateness allowed by default: an event stamped inside a window that
/// arrives up to this long after the window closed still counts.
const DEFAULT_LATENESS_MS: i64 = 3_600_000;

/// Whether a rule acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// It runs and its actions are carried out.
    #[default]
    Active,
    /// It runs and records what it would have done; nothing is carried out.
    Shadow,
    /// It does not run.
    Paused,
}

/// What starts a rule for a lead.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum Trigger {
    /// `count` events of one of `kinds` (and, when given, of a page in one
    /// of `categories`) within `within_ms` of each other, on the events'
    /// own timestamps; an event arriving up to `lateness_ms` after its
    /// window closed still counts.
    Event {
        kinds: Vec<EventKind>,
        categories: Vec<String>,
        count: u32,
        within_ms: Option<i64>,
        lateness_ms: i64,
    },
    /// A lead recorded for the first time (from one of `sources`, when given).
    LeadCreated { sources: Vec<Source> },
    /// The score going from below `above` to at least it, or from at least
    /// `below` to under it.
    ScoreCrossed {
        above: Option<u8>,
        below: Option<u8>,
    },
    /// The qualification moving to one of `to` (any, when empty).
    QualificationChanged { to: Vec<String> },
    /// The lifecycle or opportunity stage moving to one of `to` (any, when
    /// empty).
    StageChanged { to: Vec<String> },
    /// One of `fields` changing value.
    FieldChanged { fields: Vec<String> },
    /// A match dedupe could not settle (sent to review).
    DuplicateConflict,
    /// Enrichment failing on a lead that needed it.
    EnrichmentFailed,
    /// No activity for `after_ms` (since the lead entered `stage`, when
    /// given); re-armed by each activity.
    Inactivity {
        after_ms: i64,
        stage: Option<String>,
    },
}

/// How often one lead may enter a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Enrol {
    /// Once ever.
    #[default]
    Once,
    /// Once in each period (calendar-free: a period from the last entry).
    OncePer { period_ms: i64 },
    /// Again only when `period_ms` has passed since the last run ended.
    Cooldown { period_ms: i64 },
    /// Every time the trigger fires (each still once per trigger).
    Every,
}

/// Start or stop an outbound sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceOp {
    #[default]
    Start,
    Stop,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Tell people, through the notifier (the lead's rep and team labels
    /// are added).
    Alert { message: String },
    /// Adjust the score by `points`, shown among its reasons.
    Score { points: i32, reason: String },
    /// Route the lead now.
    Assign {},
    /// Enrich the lead now.
    Enrich {},
    /// Write these properties to the CRM record.
    CrmUpdate { fields: BTreeMap<String, String> },
    /// Create a task on the CRM record, due after `due` when given.
    CrmTask {
        title: String,
        #[serde(default)]
        due: Option<String>,
    },
    /// Start or stop an outbound sequence.
    Sequence {
        sequence: String,
        #[serde(default)]
        op: SequenceOp,
    },
    /// Move the lifecycle stage.
    Stage { to: String },
    /// Open a review item with this reason.
    Review { reason: String },
}

impl Action {
    /// The action's type as documents spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Alert { .. } => "alert",
            Action::Score { .. } => "score",
            Action::Assign {} => "assign",
            Action::Enrich {} => "enrich",
            Action::CrmUpdate { .. } => "crm_update",
            Action::CrmTask { .. } => "crm_task",
            Action::Sequence { .. } => "sequence",
            Action::Stage { .. } => "stage",
            Action::Review { .. } => "review",
        }
    }
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub version: u32,
    pub description: String,
    pub mode: Mode,
    pub trigger: Trigger,
    pub when: Option<Condition>,
    pub goal: Option<Condition>,
    pub enrol: Enrol,
    pub actions: Vec<Action>,
    /// Where it is written.
    pub file: String,
    pub line: usize,
}

impl Rule {
    /// What the rule does, as canonical JSON: trigger, conditions,
    /// enrolment and actions — not its mode, description or place. A
    /// store keeps each version's; the same id and version doing
    /// something else is refused.
    pub fn behaviour(&self) -> String {
        serde_json::json!({
            "trigger": self.trigger,
            "when": self.when.as_ref().map(|c| c.source()),
            "goal": self.goal.as_ref().map(|c| c.source()),
            "enrol": self.enrol,
            "actions": self.actions,
        })
        .to_string()
    }
}

/// Checked rules, ids unique, and the limits every rule's actions share.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Frequency caps per action type: at most `count` of it for one lead
    /// within `per_ms`, whatever rule fires it.
    pub caps: BTreeMap<String, Cap>,
    /// Lifecycle stages whose leads are started in no sequence (by
    /// default `customer`).
    pub suppress_stages: Option<Vec<String>>,
}

/// A frequency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cap {
    pub count: u32,
    pub per_ms: i64,
}

impl RuleSet {
    /// The stages whose leads start no sequence.
    pub fn suppressed_stages(&self) -> Vec<String> {
        self.suppress_stages
            .clone()
            .unwrap_or_else(|| vec!["customer".to_string()])
    }
}

impl RuleSet {
    /// Adds `more`, refusing ids already present.
    pub fn extend(&mut self, more: RuleSet) -> Result<(), Vec<RulesError>> {
        let mut errors = Vec::new();
        // Limits may be set in one document only.
        let limited = |s: &RuleSet| !s.caps.is_empty() || s.suppress_stages.is_some();
        if limited(self) && limited(&more) {
            errors.push(RulesError::Invalid {
                file: more
                    .rules
                    .first()
                    .map(|r| r.file.clone())
                    .unwrap_or_default(),
                line: 1,
                rule: None,
                field: Some("limits".into()),
                reason: "[limits] is set in another document too: set it in one".into(),
            });
        } else if limited(&more) {
            self.caps = more.caps.clone();
            self.suppress_stages = more.suppress_stages.clone();
        }
        for r in more.rules {
            if let Some(first) = self.rules.iter().find(|k| k.id == r.id) {
                errors.push(RulesError::Invalid {
                    file: r.file.clone(),
                    line: r.line,
                    rule: Some(r.id.clone()),
                    field: Some("id".into()),
                    reason: format!("also defined at {}:{}", first.file, first.line),
                });
            } else {
                self.rules.push(r);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    limits: Option<Spanned<RawLimits>>,
}

/// `[limits]`: frequency caps per action type, stages kept out of
/// sequences.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    caps: BTreeMap<String, RawCap>,
    #[serde(default)]
    suppress_stages: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    count: u32,
    per: String,
}

/// The action types, as documents spell them.
const ACTION_TYPES: &[&str] = &[
    "alert",
    "score",
    "assign",
    "enrich",
    "crm_update",
    "crm_task",
    "sequence",
    "stage",
    "review",
];

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    #[serde(default = "one")]
    version: u32,
    #[serde(default)]
    description: String,
    #[serde(default)]
    mode: Mode,
    trigger: Spanned<RawTrigger>,
    #[serde(default)]
    when: Option<Spanned<String>>,
    #[serde(default)]
    goal: Option<Spanned<String>>,
    #[serde(default)]
    enrol: Option<Spanned<RawEnrol>>,
    #[serde(default)]
    actions: Vec<Spanned<Action>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    on: String,
    events: Option<Vec<String>>,
    categories: Option<Vec<String>>,
    count: Option<u32>,
    within: Option<String>,
    lateness: Option<String>,
    sources: Option<Vec<String>>,
    above: Option<i64>,
    below: Option<i64>,
    to: Option<Vec<String>>,
    fields: Option<Vec<String>>,
    after: Option<String>,
    stage: Option<String>,
}

impl RawTrigger {
    /// The settings given, by name.
    fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |set: bool, name: &'static str| {
            if set {
                out.push(name);
            }
        };
        add(self.events.is_some(), "events");
        add(self.categories.is_some(), "categories");
        add(self.count.is_some(), "count");
        add(self.within.is_some(), "within");
        add(self.lateness.is_some(), "lateness");
        add(self.sources.is_some(), "sources");
        add(self.above.is_some(), "above");
        add(self.below.is_some(), "below");
        add(self.to.is_some(), "to");
        add(self.fields.is_some(), "fields");
        add(self.after.is_some(), "after");
        add(self.stage.is_some(), "stage");
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrol {
    policy: String,
    period: Option<String>,
}

/// A duration with its unit (`90s`, `15m`, `48h`, `30d`, `2w`, `1h30m`), in
/// milliseconds; a bare number, months or years are refused.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty: write a duration such as 48h or 30d".into());
    }
    if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "{t:?} has no unit: write {t}h, {t}d or {t}m (s, m, h, d, w)"
        ));
    }
    let span: jiff::Span = t
        .parse()
        .map_err(|e| format!("{t:?} is not a duration such as 48h or 30d ({e})"))?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(format!(
            "{t:?}: months and years have no fixed length; write days (30d)"
        ));
    }
    let ms = span
        .total(jiff::SpanTotal::from(jiff::Unit::Millisecond).days_are_24_hours())
        .map_err(|e| format!("{t:?}: {e}"))?;
    if ms < 1.0 {
        return Err(format!("{t:?} must be longer than zero"));
    }
    if ms > i64::MAX as f64 {
        return Err(format!("{t:?} is too long"));
    }
    Ok(ms as i64)
}

/// A duration in the largest unit that divides it (`7d`, `48h`, `90s`).
pub fn format_duration_ms(ms: i64) -> String {
    for (unit, size) in [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .unwrap_or(text)
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// Reads and checks one rules document; `file` names it in refusals. All
/// refusals are returned, not only the first.
pub fn parse(file: &str, text: &str) -> Result<RuleSet, Vec<RulesError>> {
    let doc: File = toml::from_str(text).map_err(|e| {
        vec![RulesError::Invalid {
            file: file.to_string(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            rule: None,
            field: None,
            reason: e.message().trim().to_string(),
        }]
    })?;
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    for raw in doc.rule {
        let line = line_of(text, raw.span().start);
        let raw = raw.into_inner();
        let id = raw.id.get_ref().trim().to_string();
        let refused_before = errors.len();
        let mut refuse = |at: usize, field: &str, reason: String| {
            errors.push(RulesError::Invalid {
                file: file.to_string(),
                line: line_of(text, at),
                rule: Some(id.clone()).filter(|i| !i.is_empty()),
                field: Some(field.to_string()),
                reason,
            })
        };
        if let Err(reason) = check_id(&id) {
            refuse(raw.id.span().start, "id", reason);
        }
        if raw.version == 0 {
            refuse(raw.id.span().start, "version", "starts at 1".into());
        }
        let trigger_at = raw.trigger.span().start;
        let trigger = match check_trigger(raw.trigger.get_ref()) {
            Ok(t) => Some(t),
            Err((field, reason)) => {
                refuse(trigger_at, &format!("trigger.{field}"), reason);
                None
            }
        };
        let mut condition = |c: &Option<Spanned<String>>, field: &str| match c {
            None => None,
            Some(s) => match Condition::compile(s.get_ref()).and_then(|c| c.check().map(|()| c)) {
                Ok(c) => Some(c),
                Err(reason) => {
                    refuse(s.span().start, field, reason);
                    None
                }
            },
        };
        let when = condition(&raw.when, "when");
        let goal = condition(&raw.goal, "goal");
        let enrol = match &raw.enrol {
            None => Some(Enrol::Once),
            Some(e) => match check_enrol(e.get_ref()) {
                Ok(e) => Some(e),
                Err(reason) => {
                    refuse(e.span().start, "enrol", reason);
                    None
                }
            },
        };
        if raw.actions.is_empty() && raw.mode != Mode::Paused {
            refuse(
                line_start(text, line),
                "actions",
                "a rule needs at least one action".into(),
            );
        }
        let mut actions = Vec::new();
        for (i, a) in raw.actions.iter().enumerate() {
            match check_action(a.get_ref()) {
                Ok(()) => actions.push(a.get_ref().clone()),
                Err(reason) => refuse(
                    a.span().start,
                    &format!("actions[{i}] ({})", a.get_ref().kind()),
                    reason,
                ),
            }
        }
        if set.rules.iter().any(|r| r.id == id) {
            refuse(
                raw.id.span().start,
                "id",
                "is used by another rule in this file".into(),
            );
            continue;
        }
        // A rule with a refusal of its own is not kept: the document is
        // refused anyway.
        let (Some(trigger), Some(enrol)) = (trigger, enrol) else {
            continue;
        };
        if errors.len() > refused_before {
            continue;
        }
        set.rules.push(Rule {
            id,
            version: raw.version,
            description: raw.description,
            mode: raw.mode,
            trigger,
            when,
            goal,
            enrol,
            actions,
            file: file.to_string(),
            line,
        });
    }
    if let Some(limits) = doc.limits {
        let line = line_of(text, limits.span().start);
        let limits = limits.into_inner();
        let mut refuse = |field: String, reason: String| {
            errors.push(RulesError::Invalid {
                file: file.to_string(),
                line,
                rule: None,
                field: Some(field),
                reason,
            })
        };
        for (kind, cap) in limits.caps {
            if !ACTION_TYPES.contains(&kind.as_str()) {
                refuse(
                    format!("limits.caps.{kind}"),
                    format!("not an action type; use one of {}", ACTION_TYPES.join(", ")),
                );
                continue;
            }
            if cap.count == 0 {
                refuse(
                    format!("limits.caps.{kind}.count"),
                    "must be at least 1 (leave the action out of the rules instead)".into(),
                );
                continue;
            }
            match parse_duration_ms(&cap.per) {
                Ok(per_ms) => {
                    set.caps.insert(
                        kind,
                        Cap {
                            count: cap.count,
                            per_ms,
                        },
                    );
                }
                Err(reason) => refuse(format!("limits.caps.{kind}.per"), reason),
            }
        }
        set.suppress_stages = limits
            .suppress_stages
            .map(|v| v.iter().map(|s| s.trim().to_ascii_lowercase()).collect());
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// The byte offset where `line` starts.
fn line_start(text: &str, line: usize) -> usize {
    if line <= 1 {
        return 0;
    }
    text.match_indices('\n')
        .nth(line - 2)
        .map_or(text.len(), |(i, _)| i + 1)
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    if id.len() > MAX_ID {
        return Err(format!("is longer than {MAX_ID} characters"));
    }
    let ok = id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(format!(
            "{id:?}: lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// The settings each trigger takes.
fn settings_of(on: &str) -> Option<&'static [&'static str]> {
    Some(match on {
        "event" => &["events", "categories", "count", "within", "lateness"],
        "lead_created" => &["sources"],
        "score_crossed" => &["above", "below"],
        "qualification_changed" | "stage_changed" => &["to"],
        "field_changed" => &["fields"],
        "duplicate_conflict" | "enrichment_failed" => &[],
        "inactivity" => &["after", "stage"],
        _ => return None,
    })
}

const TRIGGERS: &str = "event, lead_created, score_crossed, qualification_changed, stage_changed, field_changed, duplicate_conflict, enrichment_failed, inactivity";

fn non_empty(list: &[String], what: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let v = v.trim();
        if v.is_empty() {
            return Err(format!("an empty {what}"));
        }
        out.push(v.to_string());
    }
    Ok(out)
}

fn check_trigger(t: &RawTrigger) -> Result<Trigger, (String, String)> {
    let on = t.on.trim();
    let Some(allowed) = settings_of(on) else {
        return Err((
            "on".into(),
            format!("unknown trigger {on:?} (known: {TRIGGERS})"),
        ));
    };
    if let Some(extra) = t.given().into_iter().find(|g| !allowed.contains(g)) {
        return Err((
            extra.into(),
            format!(
                "is not a setting of an {on:?} trigger (its settings: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ),
        ));
    }
    let bad = |field: &str, reason: String| (field.to_string(), reason);
    let duration = |field: &str, v: &Option<String>| -> Result<Option<i64>, (String, String)> {
        v.as_deref()
            .map(parse_duration_ms)
            .transpose()
            .map_err(|e| bad(field, e))
    };
    Ok(match on {
        "event" => {
            let events = t.events.as_deref().unwrap_or_default();
            if events.is_empty() {
                return Err(bad("events", "name at least one event type".into()));
            }
            let mut kinds = Vec::new();
            for e in events {
                let e = e.trim();
                match EventKind::ALL.iter().find(|k| k.as_str() == e) {
                    Some(k) => kinds.push(*k),
                    None => {
                        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                        let hint = EventKind::parse(e)
                            .map(|k| format!("; write {:?}", k.as_str()))
                            .unwrap_or_default();
                        return Err(bad(
                            "events",
                            format!(
                                "unknown event type {e:?} (known: {}){hint}",
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
            let count = t.count.unwrap_or(1);
            if count == 0 {
                return Err(bad("count", "must be at least 1".into()));
            }
            let within_ms = duration("within", &t.within)?;
            if count > 1 && within_ms.is_none() {
                return Err(bad(
                    "within",
                    format!("{count} events need a window: within = \"48h\""),
                ));
            }
            Trigger::Event {
                kinds,
                categories: non_empty(t.categories.as_deref().unwrap_or_default(), "category")
                    .map_err(|e| bad("categories", e))?,
                count,
                within_ms,
                lateness_ms: duration("lateness", &t.lateness)?.unwrap_or(DEFAULT_LATENESS_MS),
            }
        }
        "lead_created" => {
            let mut sources = Vec::new();
            for s in t.sources.as_deref().unwrap_or_default() {
                let known = ["form", "ads", "import", "crm", "api", "other"];
                match Source::parse(s).filter(|_| known.contains(&s.trim())) {
                    Some(src) => sources.push(src),
                    None => {
                        return Err(bad(
                            "sources",
                            format!("unknown source {s:?} (known: {})", known.join(", ")),
                        ));
                    }
                }
            }
            Trigger::LeadCreated { sources }
        }
        "score_crossed" => {
            let level = |field: &str, v: Option<i64>| -> Result<Option<u8>, (String, String)> {
                v.map(|v| {
                    u8::try_from(v)
                        .ok()
                        .filter(|v| *v <= 100)
                        .ok_or_else(|| bad(field, format!("{v} is not a score from 0 to 100")))
                })
                .transpose()
            };
            let (above, below) = (level("above", t.above)?, level("below", t.below)?);
            if above.is_some() == below.is_some() {
                return Err(bad(
                    "above",
                    "give one of above (crossing up) or below (crossing down)".into(),
                ));
            }
            Trigger::ScoreCrossed { above, below }
        }
        "qualification_changed" => {
            let to = non_empty(t.to.as_deref().unwrap_or_default(), "state")
                .map_err(|e| bad("to", e))?;
            if let Some(s) = to.iter().find(|s| !QUALIFICATIONS.contains(&s.as_str())) {
                return Err(bad(
                    "to",
                    format!(
                        "unknown qualification {s:?} (known: {})",
                        QUALIFICATIONS.join(", ")
                    ),
                ));
            }
            Trigger::QualificationChanged { to }
        }
        "stage_changed" => Trigger::StageChanged {
            to: non_empty(t.to.as_deref().unwrap_or_default(), "stage")
                .map_err(|e| bad("to", e))?
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
        },
        "field_changed" => {
            let fields = non_empty(t.fields.as_deref().unwrap_or_default(), "field")
                .map_err(|e| bad("fields", e))?;
            if fields.is_empty() {
                return Err(bad("fields", "name at least one field".into()));
            }
            if let Some(f) = fields.iter().find(|f| {
                !leadgate_lead::TEXT_FIELDS.contains(&f.as_str())
                    && !OTHER_FIELDS.contains(&f.as_str())
            }) {
                return Err(bad("fields", format!("{f:?} is not a lead field")));
            }
            Trigger::FieldChanged { fields }
        }
        "duplicate_conflict" => Trigger::DuplicateConflict,
        "enrichment_failed" => Trigger::EnrichmentFailed,
        _ => {
            let Some(after_ms) = duration("after", &t.after)? else {
                return Err(bad(
                    "after",
                    "how long without activity: after = \"30d\"".into(),
                ));
            };
            let stage = match t.stage.as_deref().map(str::trim) {
                Some("") => return Err(bad("stage", "is empty".into())),
                s => s.map(str::to_ascii_lowercase),
            };
            Trigger::Inactivity { after_ms, stage }
        }
    })
}

fn check_enrol(e: &RawEnrol) -> Result<Enrol, String> {
    let period = || -> Result<i64, String> {
        match &e.period {
            Some(p) => parse_duration_ms(p).map_err(|r| format!("period: {r}")),
            None => Err(format!(
                "policy {:?} needs a period (period = \"7d\")",
                e.policy
            )),
        }
    };
    let no_period = |enrol: Enrol| {
        if e.period.is_some() {
            Err(format!("policy {:?} takes no period", e.policy))
        } else {
            Ok(enrol)
        }
    };
    match e.policy.trim() {
        "once" => no_period(Enrol::Once),
        "every" => no_period(Enrol::Every),
        "once_per" => Ok(Enrol::OncePer {
            period_ms: period()?,
        }),
        "cooldown" => Ok(Enrol::Cooldown {
            period_ms: period()?,
        }),
        p => Err(format!(
            "unknown policy {p:?} (known: once, once_per, cooldown, every)"
        )),
    }
}

fn check_action(a: &Action) -> Result<(), String> {
    let text = |v: &str, field: &str| {
        if v.trim().is_empty() {
            Err(format!("{field} is empty"))
        } else {
            Ok(())
        }
    };
    match a {
        Action::Alert { message } => text(message, "message"),
        Action::Score { points, reason } => {
            if *points == 0 || points.abs() > 100 {
                return Err(format!(
                    "points: {points} is not from -100 to 100 (and not 0)"
                ));
            }
            text(reason, "reason")
        }
        Action::Assign {} | Action::Enrich {} => Ok(()),
        Action::CrmUpdate { fields } => {
            if fields.is_empty() {
                return Err("fields: name at least one CRM property".into());
            }
            match fields.keys().find(|k| k.trim().is_empty()) {
                Some(_) => Err("fields: an empty property name".into()),
                None => Ok(()),
            }
        }
        Action::CrmTask { title, due } => {
            text(title, "title")?;
            match due {
                Some(d) => parse_duration_ms(d)
                    .map(|_| ())
                    .map_err(|e| format!("due: {e}")),
                None => Ok(()),
            }
        }
        Action::Sequence { sequence, .. } => text(sequence, "sequence"),
        Action::Stage { to } => text(to, "to"),
        Action::Review { reason } => text(reason, "reason"),
    }
}
