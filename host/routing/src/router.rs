//! The routing decision: first match wins — the lead's own CRM owner, its
//! account's owner, then the territory table's team, shared within the
//! team by its strategy, with the fallback chain and finally the queue.
//! Every decision carries its explanation: the step and rule that matched
//! and the candidates considered, with why each was passed over.

use crate::RoutingError;
use crate::config::{RoutingConfig, Strategy, Territory};
use crate::rep::{Hours, Rep};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Candidates kept in an explanation, at most (the rest are counted).
const MAX_CANDIDATES: usize = 24;

/// What the router knows of a lead.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[serde(default)]
    pub lead_id: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub employee_range: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub grade: Option<String>,
    /// The lead's own CRM owner id (from `owner_fields`).
    #[serde(default)]
    pub owner_id: Option<String>,
    /// The rep who owns the lead's account, and how that was found (the
    /// store's to find, never given).
    #[serde(default, skip_deserializing)]
    pub account_owner: Option<AccountOwner>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOwner {
    pub rep: String,
    /// e.g. `lead l-42 of domain acme.com`.
    pub via: String,
}

/// A rep's assignments so far, as the store counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// The rep's local date `today` counts (`2026-12-07`).
    pub day: String,
    pub today: u32,
    /// Assigned and not yet touched.
    pub open: u32,
    pub total: u64,
    pub last_at: Option<i64>,
    /// The tenant-wide turn of the rep's last assignment: round robin's
    /// order, distinct within a batch where `last_at` is the same.
    #[serde(default)]
    pub turn: i64,
}

/// Which step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The lead's own CRM owner.
    Owner,
    /// The owner of the lead's account.
    Account,
    /// A row of the territory table.
    Territory,
    /// No row matched: the default team.
    Default,
    /// The lead's team had no one: a team of the fallback chain.
    Fallback,
    /// No one anywhere: the queue.
    Queue,
    /// A person chose the rep.
    Manual,
}

/// A rep considered, and what became of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub rep: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// `chosen`, or why not: `away`, `outside_hours`, `daily_capacity`,
    /// `open_capacity`, `excluded`, `unknown_owner`, `not_in_store`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Who gets a lead, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// None: no one could take it; it waits in `team` (the queue).
    pub rep: Option<String>,
    pub team: String,
    pub step: Step,
    /// The rule in words, e.g. `territory "emea" (row 2): country=FR`.
    pub rule: String,
    /// How the team shared it, e.g. `round_robin: after bo`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub distribution: String,
    pub sla_minutes: u32,
    pub candidates: Vec<Candidate>,
    /// Candidates passed over beyond those listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_candidates: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The reps and the configuration, indexed for routing.
#[derive(Debug, Clone)]
pub struct Router {
    config: RoutingConfig,
    reps: Vec<Rep>,
    hours: Vec<Hours>,
    zones: Vec<jiff::tz::TimeZone>,
    by_id: HashMap<String, usize>,
    by_owner: HashMap<String, usize>,
    /// Members per team, by rep id.
    members: HashMap<String, Vec<usize>>,
    territories: Vec<Territory>,
}

/// Reps' availability and load at one instant, for a batch of leads.
#[derive(Debug, Clone)]
pub struct Roster {
    pub now: i64,
    /// Why each rep (by index) cannot take leads now, apart from load.
    out: Vec<Option<(&'static str, String)>>,
    loads: Vec<Load>,
    /// Each rep's local date now.
    days: Vec<String>,
    /// The last turn given out.
    turn: i64,
}

impl Router {
    pub fn new(config: RoutingConfig, mut reps: Vec<Rep>) -> Result<Router, RoutingError> {
        config.check()?;
        reps.sort_by(|a, b| a.id.cmp(&b.id));
        let mut hours = Vec::with_capacity(reps.len());
        let mut zones = Vec::with_capacity(reps.len());
        let mut by_id = HashMap::new();
        let mut by_owner = HashMap::new();
        let mut members: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in reps.iter().enumerate() {
            r.check()?;
            hours.push(Hours::parse(&r.hours).map_err(|reason| RoutingError::Rep {
                rep: r.id.clone(),
                field: "hours".into(),
                reason,
            })?);
            zones.push(
                jiff::tz::TimeZone::get(&r.timezone).map_err(|e| RoutingError::Rep {
                    rep: r.id.clone(),
                    field: "timezone".into(),
                    reason: e.to_string(),
                })?,
            );
            by_id.insert(r.id.clone(), i);
            if let Some(o) = &r.crm_owner_id {
                by_owner.insert(o.clone(), i);
            }
            for t in &r.teams {
                members.entry(t.clone()).or_default().push(i);
            }
        }
        let territories = config.territories.clone();
        Ok(Router {
            config,
            reps,
            hours,
            zones,
            by_id,
            by_owner,
            members,
            territories,
        })
    }

    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    pub fn reps(&self) -> &[Rep] {
        &self.reps
    }

    pub fn rep(&self, id: &str) -> Option<&Rep> {
        self.by_id.get(id).map(|i| &self.reps[*i])
    }

    /// The rep with this CRM owner id.
    pub fn by_owner(&self, owner: &str) -> Option<&Rep> {
        self.by_owner.get(owner).map(|i| &self.reps[*i])
    }

    /// The rep's local date at `now` (`2026-12-07`), which `Load::day`
    /// names.
    pub fn local_day(&self, rep: &str, now: i64) -> Option<String> {
        let i = *self.by_id.get(rep)?;
        Some(local(&self.zones[i], now).date().to_string())
    }

    /// Availability and load of every rep at `now`; `loads` by rep id
    /// (a rep without one has had no leads).
    pub fn roster(&self, loads: &HashMap<String, Load>, now: i64) -> Roster {
        let mut out = Vec::with_capacity(self.reps.len());
        let mut ls = Vec::with_capacity(self.reps.len());
        let mut days = Vec::with_capacity(self.reps.len());
        for (i, r) in self.reps.iter().enumerate() {
            let zoned = local(&self.zones[i], now);
            let day = zoned.date().to_string();
            let away = r.away && r.away_until.is_none_or(|u| u > now);
            let why = if away {
                Some((
                    "away",
                    r.away_until
                        .map(|u| format!("until {}", stamp(u)))
                        .unwrap_or_default(),
                ))
            } else if !self.hours[i].any() {
                let minute = u16::try_from(zoned.hour()).unwrap_or(0) * 60
                    + u16::try_from(zoned.minute()).unwrap_or(0);
                (!self.hours[i].contains(zoned.weekday(), minute)).then(|| {
                    (
                        "outside_hours",
                        format!(
                            "{} {} ({}); hours {}",
                            zoned.strftime("%a %H:%M"),
                            r.timezone,
                            zoned.date(),
                            r.hours
                        ),
                    )
                })
            } else {
                None
            };
            out.push(why);
            let mut load = loads.get(&r.id).cloned().unwrap_or_default();
            if load.day != day {
                load.today = 0;
                load.day.clone_from(&day);
            }
            ls.push(load);
            days.push(day);
        }
        let turn = ls.iter().map(|l| l.turn).max().unwrap_or(0);
        Roster {
            now,
            out,
            loads: ls,
            days,
            turn,
        }
    }

    /// Who gets `lead`, and why; `exclude` are reps left out (those who
    /// breached its SLA). Decides only: [`Router::apply`] counts it.
    pub fn route(&self, roster: &Roster, lead: &Subject, exclude: &[String]) -> Decision {
        let sla_minutes = self.config.sla.minutes_for(lead.grade.as_deref());
        let mut cands = Candidates::default();
        // 1. An existing owner.
        if self.config.existing_owner {
            if let Some(owner) = &lead.owner_id {
                match self.by_owner.get(owner) {
                    Some(&i) => match self.unavailable(roster, i, exclude) {
                        None => {
                            cands.push(&self.reps[i].id, None, "chosen", String::new());
                            return self.decided(
                                Some(i),
                                String::new(),
                                Step::Owner,
                                format!("the lead's CRM owner {owner}"),
                                String::new(),
                                sla_minutes,
                                cands,
                            );
                        }
                        Some((why, detail)) => {
                            cands.push(&self.reps[i].id, None, why, detail);
                        }
                    },
                    None => cands.push(
                        owner,
                        None,
                        "unknown_owner",
                        "no rep has this crm_owner_id".into(),
                    ),
                }
            }
            if let Some(acc) = &lead.account_owner {
                match self.by_id.get(&acc.rep) {
                    Some(&i) => match self.unavailable(roster, i, exclude) {
                        None => {
                            cands.push(&acc.rep, None, "chosen", String::new());
                            return self.decided(
                                Some(i),
                                String::new(),
                                Step::Account,
                                format!("the account's owner ({})", acc.via),
                                String::new(),
                                sla_minutes,
                                cands,
                            );
                        }
                        Some((why, detail)) => cands.push(&acc.rep, None, why, detail),
                    },
                    None => cands.push(
                        &acc.rep,
                        None,
                        "not_in_store",
                        format!("owns the account ({}) but is not a rep", acc.via),
                    ),
                }
            }
        }
        // 2. The territory table.
        let (team, step, rule) = match self
            .territories
            .iter()
            .enumerate()
            .find(|(_, t)| matches(t, lead))
        {
            Some((i, t)) => (
                t.team.as_str(),
                Step::Territory,
                format!("territory {:?} (row {}): {}", t.name, i + 1, conditions(t)),
            ),
            None => (
                self.config.default_team.as_str(),
                Step::Default,
                "no territory matched: the default team".to_string(),
            ),
        };
        // 3. Within the team, then the fallback chain.
        let mut chain: Vec<&str> = vec![team];
        let extra = self
            .config
            .teams
            .get(team)
            .map(|t| t.fallback.as_slice())
            .unwrap_or_default();
        for t in extra.iter().chain(&self.config.fallback) {
            if !chain.contains(&t.as_str()) {
                chain.push(t);
            }
        }
        for (n, t) in chain.iter().enumerate() {
            if *t == self.config.queue {
                break;
            }
            if let Some((i, how)) = self.distribute(roster, t, exclude, &mut cands) {
                let (step, rule) = if n == 0 {
                    (step, rule)
                } else {
                    (
                        Step::Fallback,
                        format!("{rule}; no one available in {team:?}: fallback team {t:?}"),
                    )
                };
                return self.decided(
                    Some(i),
                    (*t).to_string(),
                    step,
                    rule,
                    how,
                    sla_minutes,
                    cands,
                );
            }
        }
        let tried = chain
            .iter()
            .filter(|t| **t != self.config.queue)
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.decided(
            None,
            self.config.queue.clone(),
            Step::Queue,
            format!("{rule}; no one available in {tried}: held in the queue"),
            String::new(),
            sla_minutes,
            cands,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn decided(
        &self,
        rep: Option<usize>,
        team: String,
        step: Step,
        rule: String,
        distribution: String,
        sla_minutes: u32,
        cands: Candidates,
    ) -> Decision {
        let team = match (rep, team.is_empty()) {
            (Some(i), true) => self.reps[i].teams.first().cloned().unwrap_or_default(),
            _ => team,
        };
        Decision {
            rep: rep.map(|i| self.reps[i].id.clone()),
            team,
            step,
            rule,
            distribution,
            sla_minutes,
            candidates: cands.list,
            more_candidates: cands.more,
        }
    }

    /// Why rep `i` cannot take a lead now, if they cannot.
    fn unavailable(
        &self,
        roster: &Roster,
        i: usize,
        exclude: &[String],
    ) -> Option<(&'static str, String)> {
        let r = &self.reps[i];
        if exclude.contains(&r.id) {
            return Some(("excluded", "missed this lead's response SLA".into()));
        }
        if let Some((why, detail)) = &roster.out[i] {
            return Some((why, detail.clone()));
        }
        let l = &roster.loads[i];
        if let Some(cap) = r.capacity_per_day
            && l.today >= cap
        {
            return Some(("daily_capacity", format!("{}/{cap} today", l.today)));
        }
        if let Some(cap) = r.max_open
            && l.open >= cap
        {
            return Some((
                "open_capacity",
                format!("{}/{cap} awaiting first touch", l.open),
            ));
        }
        None
    }

    /// The member of `team` who gets the lead by the team's strategy.
    fn distribute(
        &self,
        roster: &Roster,
        team: &str,
        exclude: &[String],
        cands: &mut Candidates,
    ) -> Option<(usize, String)> {
        let members = self.members.get(team)?;
        let strategy = self
            .config
            .teams
            .get(team)
            .map(|t| t.strategy)
            .unwrap_or_default();
        let mut open = Vec::with_capacity(members.len());
        for &i in members {
            match self.unavailable(roster, i, exclude) {
                None => open.push(i),
                Some((why, detail)) => cands.push(&self.reps[i].id, Some(team), why, detail),
            }
        }
        if open.is_empty() {
            return None;
        }
        let loads = &roster.loads;
        let (chosen, how) = match strategy {
            Strategy::RoundRobin => {
                // The member after the one who got a lead last.
                let last = members
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| loads[**i].turn > 0)
                    .map(|(pos, &i)| (loads[i].turn, pos))
                    .max();
                let start = last.map_or(0, |(_, pos)| pos + 1);
                let pick = (0..members.len())
                    .map(|k| members[(start + k) % members.len()])
                    .find(|i| open.contains(i))?;
                let how = match last {
                    Some((_, pos)) => format!("round_robin: after {}", self.reps[members[pos]].id),
                    None => "round_robin: first turn".into(),
                };
                (pick, how)
            }
            Strategy::Weighted => {
                let pick = *open.iter().min_by(|&&a, &&b| {
                    let (wa, wb) = (
                        u128::from(self.reps[a].weight),
                        u128::from(self.reps[b].weight),
                    );
                    (u128::from(loads[a].total) * wb)
                        .cmp(&(u128::from(loads[b].total) * wa))
                        .then(loads[a].turn.cmp(&loads[b].turn))
                })?;
                (
                    pick,
                    format!(
                        "weighted: {} leads for weight {}, the lowest share",
                        loads[pick].total, self.reps[pick].weight
                    ),
                )
            }
            Strategy::LeastLoaded => {
                let pick = *open
                    .iter()
                    .min_by_key(|&&i| (loads[i].open, loads[i].today, loads[i].turn))?;
                (
                    pick,
                    format!(
                        "least_loaded: {} awaiting first touch, {} today",
                        loads[pick].open, loads[pick].today
                    ),
                )
            }
        };
        cands.push(&self.reps[chosen].id, Some(team), "chosen", String::new());
        Some((chosen, how))
    }

    /// Counts an assignment in the roster, so the next lead of the batch
    /// sees it.
    pub fn apply(&self, roster: &mut Roster, decision: &Decision) {
        if let Some(i) = decision.rep.as_ref().and_then(|r| self.by_id.get(r)) {
            let l = &mut roster.loads[*i];
            l.today += 1;
            l.open += 1;
            l.total += 1;
            l.last_at = Some(roster.now);
            roster.turn += 1;
            l.turn = roster.turn;
        }
    }
}

impl Roster {
    /// The rep's load as counted, with its local day.
    pub fn load(&self, router: &Router, rep: &str) -> Option<&Load> {
        router.by_id.get(rep).map(|i| &self.loads[*i])
    }

    /// The turn of rep's last assignment, as counted.
    pub fn turn(&self, router: &Router, rep: &str) -> i64 {
        router.by_id.get(rep).map_or(0, |i| self.loads[*i].turn)
    }

    /// The local date of rep index `i`.
    pub fn day(&self, router: &Router, rep: &str) -> Option<&str> {
        router.by_id.get(rep).map(|i| self.days[*i].as_str())
    }
}

#[derive(Default)]
struct Candidates {
    list: Vec<Candidate>,
    more: u32,
}

impl Candidates {
    fn push(&mut self, rep: &str, team: Option<&str>, outcome: &str, detail: String) {
        if self.list.len() >= MAX_CANDIDATES && outcome != "chosen" {
            self.more += 1;
            return;
        }
        self.list.push(Candidate {
            rep: rep.to_string(),
            team: team.map(str::to_string),
            outcome: outcome.to_string(),
            detail,
        });
    }
}

fn local(tz: &jiff::tz::TimeZone, now: i64) -> jiff::Zoned {
    jiff::Timestamp::from_millisecond(now)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
}

fn stamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn any_of(values: &[String], v: Option<&str>) -> bool {
    values.is_empty()
        || v.is_some_and(|v| {
            values
                .iter()
                .any(|x| x.trim().eq_ignore_ascii_case(v.trim()))
        })
}

fn matches(t: &Territory, s: &Subject) -> bool {
    any_of(&t.country, s.country.as_deref())
        && any_of(&t.region, s.region.as_deref())
        && any_of(&t.industry, s.industry.as_deref())
        && any_of(&t.employees, s.employee_range.as_deref())
        && any_of(&t.source, s.source.as_deref())
        && any_of(&t.grade, s.grade.as_deref())
}

fn conditions(t: &Territory) -> String {
    let parts: Vec<String> = [
        ("country", &t.country),
        ("region", &t.region),
        ("industry", &t.industry),
        ("employees", &t.employees),
        ("source", &t.source),
        ("grade", &t.grade),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", v.join("|")))
    .collect();
    if parts.is_empty() {
        "catch-all".into()
    } else {
        parts.join(" ")
    }
}
