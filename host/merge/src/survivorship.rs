//! Golden records: one lead made from a merged group's members, field by
//! field. The members are never changed; the golden record is derived from
//! them and can be recomputed at any time (after an unmerge, for example).

use leadgate_lead::{Consent, Lead, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a field's surviving value is chosen among the members that have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The value of the most recently received member.
    MostRecent,
    /// The longest value (ties: most recent).
    MostComplete,
    /// The value from the member whose source ranks first in
    /// `source_priority` (ties: most recent).
    SourcePriority,
}

/// The tenant's survivorship rules (`[dedupe.survivorship]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// The rule for fields not named in `fields`.
    pub default: Rule,
    /// Per-field rules, by canonical field name.
    pub fields: BTreeMap<String, Rule>,
    /// Sources, most trusted first, for `source_priority`.
    pub source_priority: Vec<Source>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            default: Rule::MostRecent,
            fields: BTreeMap::new(),
            source_priority: vec![
                Source::Crm,
                Source::Form,
                Source::Api,
                Source::Import,
                Source::Ads,
                Source::Other,
            ],
        }
    }
}

/// A rule names a field that is not one.
#[derive(Debug, thiserror::Error)]
#[error("dedupe.survivorship.fields: '{0}' is not a lead field (use one of {fields})", fields = leadgate_lead::TEXT_FIELDS.join(", "))]
pub struct UnknownField(pub String);

impl Rules {
    pub fn check(&self) -> Result<(), UnknownField> {
        match self
            .fields
            .keys()
            .find(|f| !leadgate_lead::TEXT_FIELDS.contains(&f.as_str()))
        {
            Some(f) => Err(UnknownField(f.clone())),
            None => Ok(()),
        }
    }

    fn rule(&self, field: &str) -> Rule {
        self.fields.get(field).copied().unwrap_or(self.default)
    }

    fn rank(&self, source: Source) -> usize {
        self.source_priority
            .iter()
            .position(|s| *s == source)
            .unwrap_or(self.source_priority.len())
    }
}

/// A golden record: the surviving values, where each came from, and every
/// other email and phone the members had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    /// The master lead's id.
    pub id: String,
    pub lead: Lead,
    /// Field → id of the member its value came from.
    pub field_sources: BTreeMap<String, String>,
    /// Emails and phones that did not survive as the primary value.
    pub secondary_emails: Vec<String>,
    pub secondary_phones: Vec<String>,
    /// Every member, master first.
    pub members: Vec<String>,
}

/// The golden record of `members` (id, normalized lead), the first being
/// the master. `None` for an empty group.
pub fn golden(members: &[(String, Lead)], rules: &Rules) -> Option<Golden> {
    let (master_id, master) = members.first()?;
    let mut lead = Lead {
        id: master_id.clone(),
        tenant: master.tenant.clone(),
        source: master.source,
        received_at: members
            .iter()
            .map(|(_, l)| l.received_at)
            .min()
            .unwrap_or(0),
        ..Lead::default()
    };
    let mut field_sources = BTreeMap::new();
    for field in leadgate_lead::TEXT_FIELDS {
        let rule = rules.rule(field);
        let mut best: Option<(&str, &str, &Lead)> = None;
        for (id, m) in members {
            let Some(value) = text(m, field) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((_, v, b)) => match rule {
                    Rule::MostRecent => m.received_at >= b.received_at,
                    Rule::MostComplete => {
                        let (n, o) = (value.chars().count(), v.chars().count());
                        n > o || (n == o && m.received_at >= b.received_at)
                    }
                    Rule::SourcePriority => {
                        let (n, o) = (rules.rank(m.source), rules.rank(b.source));
                        n < o || (n == o && m.received_at >= b.received_at)
                    }
                },
            };
            if better {
                best = Some((id, value, m));
            }
        }
        if let Some((id, value, _)) = best {
            if let Some(slot) = lead.field_mut(field) {
                *slot = Some(value.to_string());
            }
            field_sources.insert((*field).to_string(), id.to_string());
        }
    }
    let others = |get: fn(&Lead) -> Option<&String>, primary: &Option<String>| {
        let mut v: Vec<String> = Vec::new();
        for (_, m) in members {
            if let Some(x) = get(m)
                && Some(x) != primary.as_ref()
                && !v.contains(x)
            {
                v.push(x.clone());
            }
        }
        v
    };
    let secondary_emails = others(|l| l.email.as_ref(), &lead.email);
    let secondary_phones = others(|l| l.phone.as_ref(), &lead.phone);
    lead.consent = consent(members);
    for (_, m) in members {
        for e in &m.external_ids {
            if !lead.external_ids.contains(e) {
                lead.external_ids.push(e.clone());
            }
        }
        for c in &m.custom {
            match lead.custom.iter_mut().find(|x| x.key == c.key) {
                Some(x) => x.value.clone_from(&c.value),
                None => lead.custom.push(c.clone()),
            }
        }
    }
    Some(Golden {
        id: master_id.clone(),
        lead,
        field_sources,
        secondary_emails,
        secondary_phones,
        members: members.iter().map(|(id, _)| id.clone()).collect(),
    })
}

fn text<'a>(lead: &'a Lead, field: &str) -> Option<&'a str> {
    lead.field(field)
}

/// One consent per purpose: an opt-out anywhere in the group wins over any
/// grant, so a merge can never re-subscribe someone.
pub fn consent(members: &[(String, Lead)]) -> Vec<Consent> {
    let mut out: Vec<Consent> = Vec::new();
    for (_, m) in members {
        for c in &m.consent {
            match out.iter_mut().find(|x| x.purpose == c.purpose) {
                Some(x) if x.granted && !c.granted => *x = c.clone(),
                Some(_) => {}
                None => out.push(c.clone()),
            }
        }
    }
    out
}

/// Whether two leads disagree on consent: one granted a purpose the other
/// withdrew. Such a pair is never merged without a person looking at it.
pub fn consent_conflict(a: &Lead, b: &Lead) -> Option<String> {
    a.consent.iter().find_map(|x| {
        b.consent
            .iter()
            .find(|y| y.purpose == x.purpose && y.granted != x.granted)
            .map(|_| x.purpose.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, at: i64, source: Source, f: impl FnOnce(&mut Lead)) -> (String, Lead) {
        let mut l = Lead {
            id: id.into(),
            received_at: at,
            source,
            ..Lead::default()
        };
        f(&mut l);
        (id.into(), l)
    }

    #[test]
    fn most_recent_non_empty_wins_and_other_contacts_are_kept() {
        let members = vec![
            member("a", 1, Source::Crm, |l| {
                l.email = Some("old@acme.com".into());
                l.job_title = Some("Engineer".into());
                l.city = Some("Paris".into());
            }),
            member("b", 2, Source::Form, |l| {
                l.email = Some("new@acme.com".into());
                l.job_title = Some("CTO".into());
            }),
        ];
        let g = golden(&members, &Rules::default()).unwrap();
        assert_eq!(g.id, "a");
        assert_eq!(g.lead.email.as_deref(), Some("new@acme.com"));
        assert_eq!(g.lead.city.as_deref(), Some("Paris"), "empty never wins");
        assert_eq!(g.secondary_emails, vec!["old@acme.com".to_string()]);
        assert_eq!(g.field_sources["job_title"], "b");
        assert_eq!(g.members, vec!["a", "b"]);
    }

    #[test]
    fn most_complete_and_source_priority() {
        let members = vec![
            member("a", 1, Source::Crm, |l| {
                l.company = Some("Acme Incorporated".into())
            }),
            member("b", 2, Source::Form, |l| l.company = Some("Acme".into())),
        ];
        let mut rules = Rules::default();
        rules.fields.insert("company".into(), Rule::MostComplete);
        assert_eq!(
            golden(&members, &rules).unwrap().lead.company.as_deref(),
            Some("Acme Incorporated")
        );
        rules.fields.insert("company".into(), Rule::SourcePriority);
        rules.source_priority = vec![Source::Form, Source::Crm];
        assert_eq!(
            golden(&members, &rules).unwrap().lead.company.as_deref(),
            Some("Acme")
        );
        rules.fields.insert("nope".into(), Rule::MostRecent);
        assert!(rules.check().unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn an_opt_out_wins_and_is_a_conflict() {
        let grant = |g: bool| Consent {
            purpose: "marketing".into(),
            granted: g,
            recorded_at: None,
        };
        let members = vec![
            member("a", 1, Source::Crm, |l| l.consent = vec![grant(false)]),
            member("b", 2, Source::Form, |l| l.consent = vec![grant(true)]),
        ];
        let g = golden(&members, &Rules::default()).unwrap();
        assert_eq!(g.lead.consent, vec![grant(false)]);
        assert_eq!(
            consent_conflict(&members[0].1, &members[1].1).as_deref(),
            Some("marketing")
        );
        assert_eq!(consent_conflict(&members[0].1, &members[0].1), None);
    }
}
