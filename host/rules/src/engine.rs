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
//!   `email` or `marketing`, whose stage is kept out of sequences
//!   (`customer` by default), or who is already in that sequence, is
//!   suppressed with its reason; so is an action past its type's frequency
//!   cap for the lead, and every action of a lead the enrolment policy
//!   keeps out.

use crate::condition::{EventFacts, Facts};
use crate::doc::{Action, Enrol, Mode, Rule, RuleSet, SequenceOp, Trigger};
use leadgate_lead::Lead;
use leadgate_lead::score::{EventKind, Scored};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// A lead's entry into a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Enrolment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_entry: Option<i64>,
    /// When the last run ended; `None` while one is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_end: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
}

/// What the rules last saw of a lead, to tell what changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The fields `field_changed` triggers watch, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// An event kept for windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    pub id: String,
    pub at: i64,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// Everything the rules keep of one lead between signals: what they last
/// saw of it, the events its windows still need, the keys that fired,
/// its enrolments, sequences and inactivity timers. A store keeps it as
/// JSON, one row a lead; the in-memory [`Engine`] keeps it in a map.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadRules {
    /// `None` until the lead is first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
    /// The lead as of the last signal (the caller sets it; not kept).
    #[serde(skip)]
    pub state: LeadState,
    /// Events inside the longest window and its lateness, by time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Kept>,
    /// When the lead entered its current stage.
    #[serde(default)]
    pub stage_since: i64,
    /// The latest activity seen (an event's time, or a change).
    #[serde(default)]
    pub last_activity: i64,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sequences: BTreeSet<String>,
    /// Keys that fired (rule × lead × window).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub fired: BTreeSet<String>,
    /// By rule id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub enrolments: BTreeMap<String, Enrolment>,
    /// Inactivity timers: due time by rule id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timers: BTreeMap<String, i64>,
    /// When actions of a capped type went out, by type (inside the cap's
    /// period).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sent: BTreeMap<String, Vec<i64>>,
}

impl LeadRules {
    /// The earliest inactivity timer, if one is armed.
    pub fn next_due(&self) -> Option<i64> {
        self.timers.values().copied().min()
    }
}

/// A rule set, ready to run over one lead's [`LeadRules`] at a time: the
/// store-backed runner and the in-memory [`Engine`] both call it, so
/// `leadgate rules test` and the service decide alike.
pub struct Evaluator {
    rules: RuleSet,
    /// How long an event can still matter: twice the longest window
    /// plus its lateness.
    horizon_ms: i64,
    /// The fields `field_changed` triggers watch.
    watched: BTreeSet<String>,
    /// Stages whose leads start no sequence.
    suppress_stages: Vec<String>,
}

/// A trigger that matched: its kind, key suffix, time and event.
struct Hit {
    trigger: &'static str,
    window: String,
    at: i64,
    event: Option<EventIn>,
    window_count: u32,
}

impl Evaluator {
    pub fn new(rules: RuleSet) -> Evaluator {
        let mut horizon_ms = 0i64;
        let mut watched = BTreeSet::new();
        for r in &rules.rules {
            match &r.trigger {
                Trigger::Event {
                    within_ms,
                    lateness_ms,
                    ..
                } => {
                    // The latest event that can still fire arrives
                    // `within + lateness` after its time, and its window
                    // reaches `within` further back.
                    let w = within_ms.unwrap_or(0);
                    horizon_ms = horizon_ms.max(w.saturating_mul(2).saturating_add(*lateness_ms));
                }
                Trigger::FieldChanged { fields } => watched.extend(fields.iter().cloned()),
                _ => {}
            }
        }
        Evaluator {
            suppress_stages: rules.suppressed_stages(),
            rules,
            horizon_ms,
            watched,
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// How long an event can still matter: twice the longest window plus
    /// its lateness (an event that can still fire, and the window behind
    /// it).
    pub fn horizon_ms(&self) -> i64 {
        self.horizon_ms
    }

    fn seen_of(&self, state: &LeadState) -> Seen {
        Seen {
            score: state.score.as_ref().map(|s| s.total),
            qualification: state.qualification.clone(),
            stage: state.stage.clone(),
            fields: self
                .watched
                .iter()
                .map(|f| (f.clone(), field_of(&state.lead, f)))
                .collect(),
        }
    }

    /// Lead `id` recorded or changed at `at`: fires `lead_created` for a
    /// new one, and `score_crossed`, `qualification_changed`,
    /// `stage_changed` and `field_changed` for what changed since `rec`
    /// last saw it; ends runs whose goal now holds. A new lead or a new
    /// stage (re-)arms the inactivity timers; nothing else here counts as
    /// the lead's activity.
    pub fn lead(&self, rec: &mut LeadRules, id: &str, state: LeadState, at: i64) -> Vec<Execution> {
        let mut hits: Vec<(usize, Hit)> = Vec::new();
        let before = rec.seen.take();
        let now = self.seen_of(&state);
        if before.as_ref().map(|b| &b.stage) != Some(&now.stage) {
            rec.stage_since = at;
        }
        rec.state = state;
        let state = &rec.state;
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
                    let old = b.score;
                    let new = now.score;
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
                    if now.score.is_some_and(|s| s >= *l) =>
                {
                    hits.push((i, hit("score_crossed", format!("score:{at}"))));
                }
                (Trigger::QualificationChanged { to }, b) => {
                    let old = b.as_ref().and_then(|b| b.qualification.as_deref());
                    if let Some(q) = now.qualification.as_deref()
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
                    if let Some(s) = now.stage.as_deref()
                        && old != Some(s)
                        && (to.is_empty() || to.iter().any(|t| t == s))
                    {
                        hits.push((i, hit("stage_changed", format!("stage:{s}:{at}"))));
                    }
                }
                (Trigger::FieldChanged { fields }, Some(b)) => {
                    let changed: Vec<&str> = fields
                        .iter()
                        .filter(|f| b.fields.get(*f) != now.fields.get(*f))
                        .map(|f| f.as_str())
                        .collect();
                    if !changed.is_empty() {
                        hits.push((
                            i,
                            hit(
                                "field_changed",
                                format!("fields:{}:{at}", changed.join(",")),
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        // Entering a stage (or first being seen) arms the inactivity
        // timers that wait in it; other changes (a score moving) are not
        // the lead's activity.
        let stage_moved = before.as_ref().is_none_or(|b| b.stage != now.stage);
        rec.seen = Some(now);
        if stage_moved {
            self.rearm_inactivity(rec, at);
        }
        self.end_runs(rec, at);
        hits.into_iter()
            .filter_map(|(i, hit)| self.fire(rec, i, id, hit))
            .collect()
    }

    /// Something the pipeline saw about a lead: `duplicate_conflict` or
    /// `enrichment_failed`, with an id of its own (the review item, the
    /// attempt) for the key.
    pub fn signal(
        &self,
        rec: &mut LeadRules,
        id: &str,
        trigger: &str,
        signal_id: &str,
        at: i64,
    ) -> Vec<Execution> {
        let mut out = Vec::new();
        for i in 0..self.rules.rules.len() {
            let name = match (&self.rules.rules[i].trigger, trigger) {
                (Trigger::DuplicateConflict, "duplicate_conflict") => "duplicate_conflict",
                (Trigger::EnrichmentFailed, "enrichment_failed") => "enrichment_failed",
                _ => continue,
            };
            out.extend(self.fire(
                rec,
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
    /// seen before for the lead changes nothing; events older than every
    /// window and its lateness are let go.
    pub fn event(&self, rec: &mut LeadRules, id: &str, ev: EventIn, now: i64) -> Vec<Execution> {
        let horizon = now.saturating_sub(self.horizon_ms);
        if rec.events.iter().any(|k| k.id == ev.id) {
            return Vec::new();
        }
        rec.events.retain(|k| k.at >= horizon);
        if ev.at >= horizon {
            let at = rec.events.partition_point(|e| e.at <= ev.at);
            rec.events.insert(
                at,
                Kept {
                    id: ev.id.clone(),
                    at: ev.at,
                    kind: ev.kind.as_str().to_string(),
                    category: ev.category.clone(),
                },
            );
        }
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
            let matches = |kind: &str, category: &Option<String>| {
                kinds.iter().any(|k| k.as_str() == kind)
                    && (categories.is_empty()
                        || category.as_ref().is_some_and(|c| categories.contains(c)))
            };
            // Too late: it arrived more than `lateness` after the last
            // window that could hold it closed.
            let w = within_ms.unwrap_or(0);
            if !matches(ev.kind.as_str(), &ev.category)
                || now - ev.at > w.saturating_add(*lateness_ms)
            {
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
            let times: Vec<i64> = rec
                .events
                .iter()
                .filter(|k| matches(&k.kind, &k.category))
                .map(|k| k.at)
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
        self.rearm_inactivity(rec, ev.at);
        self.end_runs(rec, now);
        hits.into_iter()
            .filter_map(|(i, hit)| self.fire(rec, i, id, hit))
            .collect()
    }

    /// Fires lead `id`'s inactivity timers due by `now`, earliest first;
    /// each is checked again before it fires (the lead still in its
    /// stage).
    pub fn due(&self, rec: &mut LeadRules, id: &str, now: i64) -> Vec<Execution> {
        let mut due: Vec<(i64, String)> = rec
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(r, at)| (*at, r.clone()))
            .collect();
        due.sort();
        let mut out = Vec::new();
        for (at, rule_id) in due {
            rec.timers.remove(&rule_id);
            let Some(i) = self.rules.rules.iter().position(|r| r.id == rule_id) else {
                continue;
            };
            let Trigger::Inactivity { stage, .. } = &self.rules.rules[i].trigger else {
                continue;
            };
            if stage.is_some() && rec.state.stage != *stage {
                continue;
            }
            out.extend(self.fire(
                rec,
                i,
                id,
                Hit {
                    trigger: "inactivity",
                    window: format!("inactive:{at}"),
                    at,
                    event: None,
                    window_count: 0,
                },
            ));
        }
        out
    }

    /// Re-arms the lead's inactivity timers from `at` (its last activity,
    /// or the time it entered the stage a timer waits in); an activity
    /// older than one seen before moves nothing back.
    fn rearm_inactivity(&self, rec: &mut LeadRules, at: i64) {
        rec.last_activity = rec.last_activity.max(at);
        let at = rec.last_activity;
        for rule in &self.rules.rules {
            let Trigger::Inactivity { after_ms, stage } = &rule.trigger else {
                continue;
            };
            rec.timers.remove(&rule.id);
            if rule.mode == Mode::Paused {
                continue;
            }
            let armed = match stage {
                Some(s) => rec.state.stage.as_deref() == Some(s.as_str()),
                None => true,
            };
            if armed {
                let from = at.max(rec.stage_since);
                rec.timers
                    .insert(rule.id.clone(), from.saturating_add(*after_ms));
            }
        }
    }

    /// Ends the lead's open runs whose goal now holds.
    fn end_runs(&self, rec: &mut LeadRules, at: i64) {
        for rule in &self.rules.rules {
            let Some(goal) = &rule.goal else {
                continue;
            };
            let Some(e) = rec.enrolments.get_mut(&rule.id) else {
                continue;
            };
            if e.open && goal.eval(&facts(&rec.state, None, 0)).unwrap_or(false) {
                e.open = false;
                e.run_end = Some(at);
            }
        }
    }

    /// Runs rule `i` for lead `id` on `hit`, unless its key fired before.
    fn fire(&self, rec: &mut LeadRules, i: usize, id: &str, hit: Hit) -> Option<Execution> {
        let rule: &Rule = &self.rules.rules[i];
        if rule.mode == Mode::Paused {
            return None;
        }
        let key = format!("{}:{}:{}", rule.id, id, hit.window);
        if rec.fired.contains(&key) {
            return None;
        }
        let ev = hit.event.as_ref().map(|e| EventFacts {
            kind: e.kind.as_str(),
            category: e.category.as_deref(),
            url: e.url.as_deref(),
            at: e.at,
        });
        let f = facts(&rec.state, ev, hit.window_count);
        let mut exec = Execution {
            at: hit.at,
            rule: rule.id.clone(),
            version: rule.version,
            lead_id: id.to_string(),
            email: rec.state.lead.email.clone(),
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
                    rec.fired.insert(key);
                    exec.failed = Some(format!("when: {reason}"));
                    return Some(exec);
                }
            }
        }
        rec.fired.insert(key);
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
        let enrolment = rec.enrolments.entry(rule.id.clone()).or_default();
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
        let opted_out = rec
            .state
            .lead
            .consent
            .iter()
            .find(|c| {
                !c.granted && SEQUENCE_CONSENTS.contains(&c.purpose.to_ascii_lowercase().as_str())
            })
            .map(|c| c.purpose.clone());
        let kept_out_stage = rec
            .state
            .stage
            .as_ref()
            .filter(|s| self.suppress_stages.contains(s))
            .cloned();
        for a in &rule.actions {
            if let Some(cap) = self.rules.caps.get(a.kind()) {
                let sent = rec.sent.entry(a.kind().to_string()).or_default();
                sent.retain(|t| hit.at - *t < cap.per_ms);
                if sent.len() >= cap.count as usize {
                    exec.suppressed.push(Suppressed {
                        kind: a.kind().into(),
                        reason: format!(
                            "frequency cap: {} {} per {} for a lead",
                            cap.count,
                            a.kind(),
                            crate::doc::format_duration_ms(cap.per_ms)
                        ),
                    });
                    continue;
                }
                if rule.mode == Mode::Active {
                    sent.push(hit.at);
                }
            }
            if let Action::Sequence { sequence, op } = a {
                let reason = match op {
                    SequenceOp::Start => opted_out
                        .as_ref()
                        .map(|p| format!("opted out ({p} consent refused)"))
                        .or_else(|| {
                            kept_out_stage
                                .as_ref()
                                .map(|s| format!("the lead's stage is {s}: no sequences"))
                        })
                        .or_else(|| {
                            rec.sequences
                                .contains(sequence)
                                .then(|| format!("already in sequence {sequence:?}"))
                        }),
                    SequenceOp::Stop => (!rec.sequences.contains(sequence))
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
                        SequenceOp::Start => rec.sequences.insert(sequence.clone()),
                        SequenceOp::Stop => rec.sequences.remove(sequence),
                    };
                }
            }
            exec.actions.push(a.clone());
        }
        Some(exec)
    }
}

/// Rules run in memory over leads and events in time order (for
/// `leadgate rules test` and benchmarks): each lead's [`LeadRules`] in a
/// map, and every armed timer ordered by due time, so [`Engine::advance`]
/// reads only the due ones.
pub struct Engine {
    eval: Evaluator,
    leads: HashMap<String, LeadRules>,
    /// (due, lead) for every lead with an armed timer, and each lead's
    /// entries in it.
    due: BTreeSet<(i64, String)>,
    armed: HashMap<String, Vec<i64>>,
}

impl Engine {
    pub fn new(rules: RuleSet) -> Engine {
        Engine {
            eval: Evaluator::new(rules),
            leads: HashMap::new(),
            due: BTreeSet::new(),
            armed: HashMap::new(),
        }
    }

    /// Replaces the rules with new versions, keeping what fired, the
    /// enrolments and the timers: a key that fired under an older version
    /// does not fire again.
    pub fn set_rules(&mut self, rules: RuleSet) {
        self.eval = Evaluator::new(rules);
    }

    /// Timers waiting (inactivity).
    pub fn pending_timers(&self) -> usize {
        self.leads.values().map(|r| r.timers.len()).sum()
    }

    /// The lead's record, as a store would keep it.
    pub fn record(&self, id: &str) -> Option<&LeadRules> {
        self.leads.get(id)
    }

    /// Keeps the due index in step with lead `id`'s timers.
    fn rearm(&mut self, id: &str) {
        for at in self.armed.remove(id).unwrap_or_default() {
            self.due.remove(&(at, id.to_string()));
        }
        let times: Vec<i64> = self
            .leads
            .get(id)
            .map(|r| r.timers.values().copied().collect())
            .unwrap_or_default();
        for at in &times {
            self.due.insert((*at, id.to_string()));
        }
        if !times.is_empty() {
            self.armed.insert(id.to_string(), times);
        }
    }

    /// See [`Evaluator::lead`].
    pub fn lead(&mut self, id: &str, state: LeadState, at: i64) -> Vec<Execution> {
        let rec = self.leads.entry(id.to_string()).or_default();
        let out = self.eval.lead(rec, id, state, at);
        self.rearm(id);
        out
    }

    /// See [`Evaluator::signal`].
    pub fn signal(&mut self, id: &str, trigger: &str, signal_id: &str, at: i64) -> Vec<Execution> {
        let rec = self.leads.entry(id.to_string()).or_default();
        self.eval.signal(rec, id, trigger, signal_id, at)
    }

    /// See [`Evaluator::event`].
    pub fn event(&mut self, id: &str, ev: EventIn, now: i64) -> Vec<Execution> {
        let rec = self.leads.entry(id.to_string()).or_default();
        let out = self.eval.event(rec, id, ev, now);
        self.rearm(id);
        out
    }

    /// Fires the inactivity timers due by `now`, earliest first.
    pub fn advance(&mut self, now: i64) -> Vec<Execution> {
        let mut out = Vec::new();
        while let Some((due, lead)) = self.due.first().cloned() {
            if due > now {
                break;
            }
            // Fire this lead's timers up to `due` (the others later, in
            // time order with the rest).
            if let Some(rec) = self.leads.get_mut(&lead) {
                out.extend(self.eval.due(rec, &lead, due));
            }
            self.rearm(&lead);
        }
        out
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
