//! Rules run over a tenant's leads and events in memory, on an injected
//! clock: which rule fires for which lead, when, under which idempotency
//! key, with which actions carried out or suppressed and why. Nothing is
//! performed here — the caller carries the actions out (or, for
//! `leadgate rules test`, writes them down).
//!
//! - **Event windows** are counted on the events' own timestamps. An event
//!   arriving more than the trigger's `lateness` after the last window
//!   that could hold it closed (its time + `within`) fires nothing on
//!   arrival (it still counts in later windows). A window's key
//!   is its earliest event, so the same window fires once however many
//!   events fall in it and in whatever order they arrive; an event id seen
//!   before is ignored.
//! - **Keys** are rule × lead × trigger window, without the version: a
//!   new version of a rule does not fire again what an older one fired.
//! - **Enrolment**: `once`, `once_per` (from the last entry), `cooldown`
//!   (from the end of the last run), `every`. A rule with a goal keeps its
//!   run open until the goal holds; while open, the lead does not enter
//!   again. A goal that already holds keeps the lead out.
//! - **Inactivity** timers are kept by due time and re-armed by each
//!   event; [`Engine::advance`] reads only the due ones.
//! - **Suppression**: a sequence start for a lead who refused consent for
//!   `email` or `marketing`, or who is already in that sequence, is
//!   suppressed with its reason; so is every action of a lead the
//!   enrolment policy keeps out.

use crate::condition::{EventFacts, Facts};
use crate::doc::{Action, Enrol, Mode, Rule, RuleSet, SequenceOp, Trigger};
use leadgate_lead::Lead;
use leadgate_lead::score::{EventKind, Scored};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Consent purposes whose refusal keeps a lead out of sequences.
const SEQUENCE_CONSENTS: &[&str] = &["email", "marketing"];

/// What the engine knows of a lead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadState {
    pub lead: Lead,
    pub enrichment: Vec<(String, String)>,
    pub score: Option<Scored>,
    pub stage: Option<String>,
    pub qualification: Option<String>,
}

/// A behavioural event for a lead.
#[derive(Debug, Clone, PartialEq)]
pub struct EventIn {
    pub id: String,
    pub kind: EventKind,
    pub category: Option<String>,
    pub url: Option<String>,
    /// When it happened (ms).
    pub at: i64,
}

/// An action a rule suppressed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suppressed {
    #[serde(rename = "type")]
    pub kind: String,
    pub reason: String,
}

/// One run of a rule for a lead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    /// When (ms): the trigger's time.
    pub at: i64,
    pub rule: String,
    pub version: u32,
    pub lead_id: String,
    pub email: Option<String>,
    /// Rule × lead × trigger window: a retry, a redelivered event or a
    /// restart never repeats it.
    pub key: String,
    /// `active`, or `shadow` (what it would do; nothing is carried out).
    pub mode: Mode,
    /// What fired it (`event`, `inactivity`, …).
    pub trigger: &'static str,
    pub actions: Vec<Action>,
    pub suppressed: Vec<Suppressed>,
    /// Why the condition could not be evaluated (the rule stopped there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Enrolment {
    last_entry: Option<i64>,
    /// When the last run ended; `None` while one is open.
    run_end: Option<i64>,
    open: bool,
}

#[derive(Debug, Default)]
struct LeadRecord {
    state: LeadState,
    /// Events seen, by id.
    seen: HashSet<String>,
    /// Events kept for windows: (at, kind, category).
    events: Vec<(i64, EventKind, Option<String>)>,
    /// When the lead entered its current stage.
    stage_since: i64,
    sequences: BTreeSet<String>,
}

/// Rules run in memory over leads and events in time order.
pub struct Engine {
    rules: RuleSet,
    leads: HashMap<String, LeadRecord>,
    fired: HashSet<String>,
    /// By (rule id, lead).
    enrolments: HashMap<(String, String), Enrolment>,
    /// Inactivity timers: due time by (rule id, lead), and the same
    /// ordered by due time.
    timers: HashMap<(String, String), i64>,
    due: BTreeSet<(i64, String, String)>,
}

/// A trigger that matched: its kind, key suffix, time and event.
struct Hit {
    trigger: &'static str,
    window: String,
    at: i64,
    event: Option<EventIn>,
    window_count: u32,
}

impl Engine {
    pub fn new(rules: RuleSet) -> Engine {
        Engine {
            rules,
            leads: HashMap::new(),
            fired: HashSet::new(),
            enrolments: HashMap::new(),
            timers: HashMap::new(),
            due: BTreeSet::new(),
        }
    }

    /// Replaces the rules with new versions, keeping what fired, the
    /// enrolments and the timers: a key that fired under an older version
    /// does not fire again.
    pub fn set_rules(&mut self, rules: RuleSet) {
        self.rules = rules;
    }

    /// Timers waiting (inactivity).
    pub fn pending_timers(&self) -> usize {
        self.due.len()
    }

    /// A lead recorded or changed at `at`: fires `lead_created` for a new
    /// one, and `score_crossed`, `qualification_changed`, `stage_changed`
    /// and `field_changed` for what changed; ends runs whose goal now
    /// holds.
    pub fn lead(&mut self, id: &str, state: LeadState, at: i64) -> Vec<Execution> {
        let mut hits: Vec<(usize, Hit)> = Vec::new();
        let before = self.leads.get(id).map(|r| r.state.clone());
        let record = self.leads.entry(id.to_string()).or_default();
        if before.as_ref().map(|b| &b.stage) != Some(&state.stage) {
            record.stage_since = at;
        }
        record.state = state.clone();
        for (i, rule) in self.rules.rules.iter().enumerate() {
            let hit = |trigger: &'static str, window: String| Hit {
                trigger,
                window,
                at,
                event: None,
                window_count: 0,
            };
            match (&rule.trigger, &before) {
                (Trigger::LeadCreated { sources }, None)
                    if sources.is_empty() || sources.contains(&state.lead.source) =>
                {
                    hits.push((i, hit("lead_created", "created".into())));
                }
                (Trigger::ScoreCrossed { above, below }, Some(b)) => {
                    let old = b.score.as_ref().map(|s| s.total);
                    let new = state.score.as_ref().map(|s| s.total);
                    let crossed = match (above, below, old, new) {
                        (Some(l), _, o, Some(n)) => n >= *l && o.is_none_or(|o| o < *l),
                        (_, Some(l), Some(o), Some(n)) => n < *l && o >= *l,
                        _ => false,
                    };
                    if crossed {
                        hits.push((i, hit("score_crossed", format!("score:{at}"))));
                    }
                }
                (Trigger::ScoreCrossed { above: Some(l), .. }, None)
                    if state.score.as_ref().is_some_and(|s| s.total >= *l) =>
                {
                    hits.push((i, hit("score_crossed", format!("score:{at}"))));
                }
                (Trigger::QualificationChanged { to }, b) => {
                    let old = b.as_ref().and_then(|b| b.qualification.as_deref());
                    if let Some(q) = state.qualification.as_deref()
                        && old != Some(q)
                        && (to.is_empty() || to.iter().any(|t| t == q))
                    {
                        hits.push((
                            i,
                            hit("qualification_changed", format!("qualification:{q}:{at}")),
                        ));
                    }
                }
                (Trigger::StageChanged { to }, b) => {
                    let old = b.as_ref().and_then(|b| b.stage.as_deref());
                    if let Some(s) = state.stage.as_deref()
                        && old != Some(s)
                        && (to.is_empty() || to.iter().any(|t| t == s))
                    {
                        hits.push((i, hit("stage_changed", format!("stage:{s}:{at}"))));
                    }
                }
                (Trigger::FieldChanged { fields }, Some(b)) => {
                    let changed: Vec<&String> = fields
                        .iter()
                        .filter(|f| field_of(&b.lead, f) != field_of(&state.lead, f))
                        .collect();
                    if !changed.is_empty() {
                        let names: Vec<&str> = changed.iter().map(|s| s.as_str()).collect();
                        hits.push((
                            i,
                            hit("field_changed", format!("fields:{}:{at}", names.join(","))),
                        ));
                    }
                }
                _ => {}
            }
        }
        self.rearm_inactivity(id, at);
        self.end_runs(id, at);
        let mut out = Vec::new();
        for (i, hit) in hits {
            out.extend(self.fire(i, id, hit));
        }
        out
    }

    /// Something the pipeline saw about a lead: `duplicate_conflict` or
    /// `enrichment_failed`, with an id of its own (the review item, the
    /// attempt) for the key.
    pub fn signal(&mut self, id: &str, trigger: &str, signal_id: &str, at: i64) -> Vec<Execution> {
        let mut out = Vec::new();
        for i in 0..self.rules.rules.len() {
            let name = match (&self.rules.rules[i].trigger, trigger) {
                (Trigger::DuplicateConflict, "duplicate_conflict") => "duplicate_conflict",
                (Trigger::EnrichmentFailed, "enrichment_failed") => "enrichment_failed",
                _ => continue,
            };
            out.extend(self.fire(
                i,
                id,
                Hit {
                    trigger: name,
                    window: format!("{name}:{signal_id}"),
                    at,
                    event: None,
                    window_count: 0,
                },
            ));
        }
        out
    }

    /// An event for lead `id`, arriving at `now`: the event windows it
    /// completes, and the lead's inactivity timers re-armed. An event id
    /// seen before for the lead changes nothing.
    pub fn event(&mut self, id: &str, ev: EventIn, now: i64) -> Vec<Execution> {
        let record = self.leads.entry(id.to_string()).or_default();
        if !record.seen.insert(ev.id.clone()) {
            return Vec::new();
        }
        let at = record.events.partition_point(|e| e.0 <= ev.at);
        record
            .events
            .insert(at, (ev.at, ev.kind, ev.category.clone()));
        let mut hits = Vec::new();
        for (i, rule) in self.rules.rules.iter().enumerate() {
            let Trigger::Event {
                kinds,
                categories,
                count,
                within_ms,
                lateness_ms,
            } = &rule.trigger
            else {
                continue;
            };
            let matches = |kind: EventKind, category: &Option<String>| {
                kinds.contains(&kind)
                    && (categories.is_empty()
                        || category.as_ref().is_some_and(|c| categories.contains(c)))
            };
            // Too late: it arrived more than `lateness` after the last
            // window that could hold it closed.
            let w = within_ms.unwrap_or(0);
            if !matches(ev.kind, &ev.category) || now - ev.at > w.saturating_add(*lateness_ms) {
                continue;
            }
            if *count <= 1 {
                hits.push((
                    i,
                    Hit {
                        trigger: "event",
                        window: format!("event:{}", ev.id),
                        at: ev.at,
                        event: Some(ev.clone()),
                        window_count: 1,
                    },
                ));
                continue;
            }
            let times: Vec<i64> = record
                .events
                .iter()
                .filter(|(_, k, c)| matches(*k, c))
                .map(|(t, _, _)| *t)
                .collect();
            // The earliest window of `w` holding this event and `count`
            // matching events.
            let found = times
                .iter()
                .filter(|s| **s <= ev.at && ev.at - **s <= w)
                .find_map(|s| {
                    let inside: Vec<i64> = times
                        .iter()
                        .copied()
                        .filter(|t| *t >= *s && *t - *s <= w)
                        .collect();
                    let end = inside.iter().copied().max().unwrap_or(*s);
                    (inside.len() >= *count as usize).then_some((*s, inside.len(), end))
                });
            if let Some((start, n, end)) = found {
                hits.push((
                    i,
                    Hit {
                        trigger: "event",
                        window: format!("window:{start}"),
                        at: end,
                        event: Some(ev.clone()),
                        window_count: u32::try_from(n).unwrap_or(u32::MAX),
                    },
                ));
            }
        }
        self.rearm_inactivity(id, ev.at);
        self.end_runs(id, now);
        let mut out = Vec::new();
        for (i, hit) in hits {
            out.extend(self.fire(i, id, hit));
        }
        out
    }

    /// Fires the inactivity timers due by `now`, earliest first; each is
    /// checked again before it fires (the lead still in its stage).
    pub fn advance(&mut self, now: i64) -> Vec<Execution> {
        let mut out = Vec::new();
        while let Some((due, rule_id, lead)) = self.due.first().cloned() {
            if due > now {
                break;
            }
            self.due.remove(&(due, rule_id.clone(), lead.clone()));
            self.timers.remove(&(rule_id.clone(), lead.clone()));
            let Some(i) = self.rules.rules.iter().position(|r| r.id == rule_id) else {
                continue;
            };
            let Trigger::Inactivity { stage, .. } = &self.rules.rules[i].trigger else {
                continue;
            };
            let in_stage = self
                .leads
                .get(&lead)
                .is_some_and(|r| stage.is_none() || r.state.stage == *stage);
            if !in_stage {
                continue;
            }
            out.extend(self.fire(
                i,
                &lead,
                Hit {
                    trigger: "inactivity",
                    window: format!("inactive:{due}"),
                    at: due,
                    event: None,
                    window_count: 0,
                },
            ));
        }
        out
    }

    /// Re-arms lead `id`'s inactivity timers from `at` (its last activity,
    /// or the time it entered the stage a timer waits in).
    fn rearm_inactivity(&mut self, id: &str, at: i64) {
        let Some(record) = self.leads.get(id) else {
            return;
        };
        for rule in &self.rules.rules {
            let Trigger::Inactivity { after_ms, stage } = &rule.trigger else {
                continue;
            };
            if rule.mode == Mode::Paused {
                continue;
            }
            let key = (rule.id.clone(), id.to_string());
            if let Some(old) = self.timers.remove(&key) {
                self.due.remove(&(old, rule.id.clone(), id.to_string()));
            }
            let armed = match stage {
                Some(s) => record.state.stage.as_deref() == Some(s.as_str()),
                None => true,
            };
            if armed {
                let from = at.max(record.stage_since);
                let due = from.saturating_add(*after_ms);
                self.timers.insert(key, due);
                self.due.insert((due, rule.id.clone(), id.to_string()));
            }
        }
    }

    /// Ends the lead's open runs whose goal now holds.
    fn end_runs(&mut self, id: &str, at: i64) {
        let Some(record) = self.leads.get(id) else {
            return;
        };
        for rule in &self.rules.rules {
            let Some(goal) = &rule.goal else {
                continue;
            };
            let Some(e) = self.enrolments.get_mut(&(rule.id.clone(), id.to_string())) else {
                continue;
            };
            if e.open && goal.eval(&facts(&record.state, None, 0)).unwrap_or(false) {
                e.open = false;
                e.run_end = Some(at);
            }
        }
    }

    /// Runs rule `i` for lead `id` on `hit`, unless its key fired before.
    fn fire(&mut self, i: usize, id: &str, hit: Hit) -> Option<Execution> {
        let rule: &Rule = &self.rules.rules[i];
        if rule.mode == Mode::Paused {
            return None;
        }
        let key = format!("{}:{}:{}", rule.id, id, hit.window);
        if self.fired.contains(&key) {
            return None;
        }
        let record = self.leads.entry(id.to_string()).or_default();
        let ev = hit.event.as_ref().map(|e| EventFacts {
            kind: e.kind.as_str(),
            category: e.category.as_deref(),
            url: e.url.as_deref(),
            at: e.at,
        });
        let f = facts(&record.state, ev, hit.window_count);
        let mut exec = Execution {
            at: hit.at,
            rule: rule.id.clone(),
            version: rule.version,
            lead_id: id.to_string(),
            email: record.state.lead.email.clone(),
            key: key.clone(),
            mode: rule.mode,
            trigger: hit.trigger,
            actions: Vec::new(),
            suppressed: Vec::new(),
            failed: None,
        };
        if let Some(when) = &rule.when {
            match when.eval(&f) {
                Ok(true) => {}
                // Not met: a later signal of the same window may meet it.
                Ok(false) => return None,
                Err(reason) => {
                    self.fired.insert(key);
                    exec.failed = Some(format!("when: {reason}"));
                    return Some(exec);
                }
            }
        }
        self.fired.insert(key);
        let keep_out = |exec: &mut Execution, reason: String| {
            exec.suppressed = rule
                .actions
                .iter()
                .map(|a| Suppressed {
                    kind: a.kind().into(),
                    reason: reason.clone(),
                })
                .collect();
        };
        if let Some(goal) = &rule.goal
            && goal.eval(&f).unwrap_or(false)
        {
            keep_out(&mut exec, "the rule's goal already holds".into());
            return Some(exec);
        }
        let enrolment = self
            .enrolments
            .entry((rule.id.clone(), id.to_string()))
            .or_default();
        let held = match (rule.enrol, enrolment.last_entry) {
            _ if enrolment.open => Some(format!(
                "in a run of this rule since {}",
                enrolment.last_entry.unwrap_or_default()
            )),
            (Enrol::Once, Some(at)) => Some(format!("enrolled once already (at {at})")),
            (Enrol::OncePer { period_ms }, Some(at)) if hit.at - at < period_ms => Some(format!(
                "once per {}: entered at {at}",
                crate::doc::format_duration_ms(period_ms)
            )),
            (Enrol::Cooldown { period_ms }, Some(_)) => enrolment
                .run_end
                .filter(|end| hit.at - end < period_ms)
                .map(|end| {
                    format!(
                        "cooling down for {} after the run that ended at {end}",
                        crate::doc::format_duration_ms(period_ms)
                    )
                }),
            _ => None,
        };
        if let Some(reason) = held {
            keep_out(&mut exec, reason);
            return Some(exec);
        }
        enrolment.last_entry = Some(hit.at);
        enrolment.open = rule.goal.is_some();
        enrolment.run_end = if enrolment.open { None } else { Some(hit.at) };
        let opted_out = record
            .state
            .lead
            .consent
            .iter()
            .find(|c| {
                !c.granted && SEQUENCE_CONSENTS.contains(&c.purpose.to_ascii_lowercase().as_str())
            })
            .map(|c| c.purpose.clone());
        for a in &rule.actions {
            if let Action::Sequence { sequence, op } = a {
                let reason = match op {
                    SequenceOp::Start => opted_out
                        .as_ref()
                        .map(|p| format!("opted out ({p} consent refused)"))
                        .or_else(|| {
                            record
                                .sequences
                                .contains(sequence)
                                .then(|| format!("already in sequence {sequence:?}"))
                        }),
                    SequenceOp::Stop => (!record.sequences.contains(sequence))
                        .then(|| format!("not in sequence {sequence:?}")),
                };
                if let Some(reason) = reason {
                    exec.suppressed.push(Suppressed {
                        kind: a.kind().into(),
                        reason,
                    });
                    continue;
                }
                if rule.mode == Mode::Active {
                    match op {
                        SequenceOp::Start => record.sequences.insert(sequence.clone()),
                        SequenceOp::Stop => record.sequences.remove(sequence),
                    };
                }
            }
            exec.actions.push(a.clone());
        }
        Some(exec)
    }
}

fn facts<'a>(s: &'a LeadState, event: Option<EventFacts<'a>>, window: u32) -> Facts<'a> {
    Facts {
        lead: &s.lead,
        enrichment: &s.enrichment,
        score: s.score.as_ref(),
        stage: s.stage.as_deref(),
        qualification: s.qualification.as_deref(),
        event,
        window,
    }
}

/// A field's value, for `field_changed`.
fn field_of(lead: &Lead, field: &str) -> String {
    match field {
        "country" => lead.country.clone().unwrap_or_default(),
        "consent" => serde_json::to_string(&lead.consent).unwrap_or_default(),
        "custom" => serde_json::to_string(&lead.custom).unwrap_or_default(),
        f => lead.field(f).unwrap_or_default().to_string(),
    }
}
