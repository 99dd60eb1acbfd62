//! `[routing]` in `leadgate.toml`: the steps, the teams and how each
//! shares its leads, the territory table, the fallback chain, and the
//! response SLA per grade.

use crate::{Rep, RoutingError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[routing]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Route qualified leads (off: leads are handed off with no owner).
    pub enabled: bool,
    /// The lead's own CRM owner, else its account's owner, gets it when
    /// they are available.
    pub existing_owner: bool,
    /// Custom fields and enrichment attributes that carry a CRM owner id,
    /// first found wins.
    pub owner_fields: Vec<String>,
    /// The territory table, first match wins.
    pub territories: Vec<Territory>,
    /// The team of a lead no territory matches.
    pub default_team: String,
    /// Teams tried in order when the lead's team has no one available;
    /// the last resort is `queue`.
    pub fallback: Vec<String>,
    /// Where a lead no one can take waits — never dropped: it is held
    /// (not handed off), someone is alerted, and it is routed again every
    /// `retry_minutes`.
    pub queue: String,
    pub retry_minutes: u32,
    pub teams: BTreeMap<String, Team>,
    pub sla: Sla,
    /// CRM contact properties whose change is a rep's first touch (a
    /// HubSpot `contact.propertyChange` webhook): by default "last
    /// contacted" (a call, sales email or meeting logged) and a reply to a
    /// sales email. Empty: CRM activity is not a touch.
    pub touch_properties: Vec<String>,
    /// Reps written to the store when it has none for the tenant (after
    /// that, `leadgate reps` and the API change them).
    pub reps: Vec<Rep>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            enabled: false,
            existing_owner: true,
            owner_fields: vec![
                "owner_id".into(),
                "crm_owner_id".into(),
                "hubspot_owner_id".into(),
            ],
            territories: Vec::new(),
            default_team: "sales".into(),
            fallback: Vec::new(),
            queue: "unassigned".into(),
            retry_minutes: 5,
            teams: BTreeMap::new(),
            sla: Sla::default(),
            touch_properties: vec![
                "notes_last_contacted".into(),
                "hs_sales_email_last_replied".into(),
            ],
            reps: Vec::new(),
        }
    }
}

/// How a team shares its leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// In turn: the member after the one who got the last lead.
    #[default]
    RoundRobin,
    /// Each member's share of all the team's leads follows their weight.
    Weighted,
    /// The member with the fewest leads waiting for a first touch.
    LeastLoaded,
}

/// `[routing.teams.<id>]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Team {
    pub name: String,
    pub strategy: Strategy,
    /// Tried before the global chain when no member is available.
    pub fallback: Vec<String>,
}

/// One row of the territory table: every condition given must hold
/// (values compared case-insensitively, any of a list); a row with none
/// is a catch-all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Territory {
    pub name: String,
    pub country: Vec<String>,
    pub region: Vec<String>,
    pub industry: Vec<String>,
    /// Employee ranges as enrichment names them (`51-200`).
    pub employees: Vec<String>,
    pub source: Vec<String>,
    pub grade: Vec<String>,
    pub team: String,
}

/// `[routing.sla]`: minutes to a rep's first touch, per score grade.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sla {
    pub minutes: BTreeMap<String, u32>,
    pub default_minutes: u32,
    /// On a breach: `reassign` (to the next rep, the breaching one left
    /// out) or `escalate` (alert, the rep keeps the lead).
    pub on_breach: OnBreach,
    /// Reassignments of one lead before it only escalates.
    pub max_reassignments: u32,
}

impl Default for Sla {
    fn default() -> Self {
        Sla {
            minutes: BTreeMap::from([("A".into(), 15), ("B".into(), 60)]),
            default_minutes: 240,
            on_breach: OnBreach::Reassign,
            max_reassignments: 2,
        }
    }
}

impl Sla {
    /// Minutes to first touch for a lead of `grade`.
    pub fn minutes_for(&self, grade: Option<&str>) -> u32 {
        grade
            .and_then(|g| self.minutes.get(g))
            .copied()
            .unwrap_or(self.default_minutes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBreach {
    #[default]
    Reassign,
    Escalate,
}

impl RoutingConfig {
    /// Checks the table against the teams; every refusal names the key.
    pub fn check(&self) -> Result<(), RoutingError> {
        let bad = |key: String, reason: String| RoutingError::Config { key, reason };
        let known = |t: &str| t == self.queue || self.teams.contains_key(t);
        if self.queue.trim().is_empty() {
            return Err(bad("routing.queue".into(), "must name a queue".into()));
        }
        if let Some(i) = self
            .touch_properties
            .iter()
            .position(|p| p.trim().is_empty())
        {
            return Err(bad(
                format!("routing.touch_properties[{i}]"),
                "must name a CRM property".into(),
            ));
        }
        if !known(&self.default_team) {
            return Err(bad(
                "routing.default_team".into(),
                format!("{:?} is not in [routing.teams]", self.default_team),
            ));
        }
        for (i, t) in self.territories.iter().enumerate() {
            if !known(&t.team) {
                return Err(bad(
                    format!("routing.territories[{i}].team"),
                    format!("{:?} is not in [routing.teams]", t.team),
                ));
            }
        }
        for f in &self.fallback {
            if !known(f) {
                return Err(bad(
                    "routing.fallback".into(),
                    format!("{f:?} is not in [routing.teams]"),
                ));
            }
        }
        for (id, team) in &self.teams {
            for f in &team.fallback {
                if !known(f) {
                    return Err(bad(
                        format!("routing.teams.{id}.fallback"),
                        format!("{f:?} is not in [routing.teams]"),
                    ));
                }
            }
        }
        if self.retry_minutes == 0 {
            return Err(bad(
                "routing.retry_minutes".into(),
                "must be at least 1".into(),
            ));
        }
        if self.sla.default_minutes == 0 || self.sla.minutes.values().any(|m| *m == 0) {
            return Err(bad(
                "routing.sla".into(),
                "minutes must be at least 1".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.reps {
            r.check()?;
            if !seen.insert(&r.id) {
                return Err(bad(
                    "routing.reps".into(),
                    format!("{:?} is listed twice", r.id),
                ));
            }
        }
        Ok(())
    }
}
