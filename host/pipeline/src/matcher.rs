//! The host's side of dedupe, shared by `run`, `import` and `dedupe`:
//! calling the dedupe component (fresh instances when one fails or wears
//! out, the failing lead isolated), and the tenant's policy that turns a
//! match probability into a decision.

use crate::config::DedupeConfig;
use anyhow::{Result, bail};
use leadgate_lead::{Lead, Match};
use leadgate_runtime::{CallError, DeduperComponent, DeduperInstance};
use serde::Serialize;

/// Calls the dedupe component.
pub struct Matcher<'a> {
    component: &'a DeduperComponent,
    settings: String,
    instance: Option<DeduperInstance>,
    /// Only keys of these passes (key prefixes), when set.
    passes: Option<Vec<String>>,
}

/// Whether a blocking key belongs to one of `passes` (its prefix before
/// the first `:`).
pub fn in_passes(key: &str, passes: &[String]) -> bool {
    let pass = key.split_once(':').map_or(key, |(p, _)| p);
    passes.iter().any(|p| p == pass)
}

impl<'a> Matcher<'a> {
    /// Opens an instance up front so refused settings stop the job before
    /// any lead is processed.
    pub fn new(component: &'a DeduperComponent, settings: String) -> Result<Matcher<'a>> {
        let mut m = Matcher {
            component,
            settings,
            instance: None,
            passes: None,
        };
        if let Err(e) = m.instance() {
            bail!("dedupe component {}: {e}", component.path().display());
        }
        Ok(m)
    }

    fn instance(&mut self) -> Result<&mut DeduperInstance, CallError> {
        if self.instance.as_ref().is_none_or(DeduperInstance::worn_out) {
            self.instance = None;
            self.instance = Some(self.component.instantiate(&self.settings)?);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| CallError::Instantiate("no instance".into()))
    }

    /// Keys of these passes only (the store path's narrow passes).
    pub fn only_passes(mut self, passes: &[String]) -> Self {
        self.passes = Some(passes.to_vec());
        self
    }

    /// Blocking keys of each lead; a lead the component fails on gets the
    /// error (and no keys) while the others go on.
    pub fn keys(&mut self, leads: &[&Lead], now: i64) -> Vec<Result<Vec<String>, CallError>> {
        let mut keys = self.all_keys(leads, now);
        if let Some(passes) = &self.passes {
            for k in keys.iter_mut().flatten() {
                k.retain(|k| in_passes(k, passes));
            }
        }
        keys
    }

    fn all_keys(&mut self, leads: &[&Lead], now: i64) -> Vec<Result<Vec<String>, CallError>> {
        crate::isolate::isolate(
            self,
            leads,
            |m, all| m.instance().and_then(|i| i.keys(all, now)),
            |m, lead| {
                m.instance()
                    .and_then(|i| i.keys(std::slice::from_ref(lead), now))
                    .map(|mut k| k.pop().unwrap_or_default())
            },
            |m| m.instance = None,
        )
    }

    /// Compares pairs of `leads` given by index, each lead sent once per
    /// pair it is in: one result per pair; a pair with an index out of
    /// range is not sent and gets an error.
    pub fn compare_pairs(
        &mut self,
        leads: &[Lead],
        pairs: &[(u32, u32)],
        explain: bool,
        now: i64,
    ) -> Vec<Result<Match, CallError>> {
        let mut pool: Vec<&Lead> = Vec::with_capacity(pairs.len() * 2);
        let mut local = Vec::with_capacity(pairs.len());
        let mut known = Vec::with_capacity(pairs.len());
        for &(a, b) in pairs {
            let pair = leads.get(a as usize).zip(leads.get(b as usize));
            known.push(pair.is_some());
            if let Some((x, y)) = pair {
                local.push((pool.len() as u32, pool.len() as u32 + 1));
                pool.push(x);
                pool.push(y);
            }
        }
        let mut compared = self.compare(&pool, &local, explain, now).into_iter();
        known
            .into_iter()
            .map(|ok| {
                let next = if ok { compared.next() } else { None };
                next.unwrap_or(Err(CallError::Protocol {
                    sent: leads.len(),
                    got: 0,
                }))
            })
            .collect()
    }

    /// Compares `pairs` of `leads`; a pair the component fails on gets the
    /// error while the others go on.
    pub fn compare(
        &mut self,
        leads: &[&Lead],
        pairs: &[(u32, u32)],
        explain: bool,
        now: i64,
    ) -> Vec<Result<Match, CallError>> {
        crate::isolate::isolate(
            self,
            pairs,
            |m, all| {
                m.instance()
                    .and_then(|i| i.compare(leads, all, explain, now))
            },
            |m, &(a, b)| {
                let (Some(x), Some(y)) = (leads.get(a as usize), leads.get(b as usize)) else {
                    return Err(CallError::Protocol {
                        sent: leads.len(),
                        got: 0,
                    });
                };
                m.instance()
                    .and_then(|i| i.compare(&[*x, *y], &[(0, 1)], explain, now))
                    .and_then(|mut r| r.pop().ok_or(CallError::Protocol { sent: 1, got: 0 }))
            },
            |m| m.instance = None,
        )
    }
}

/// What the tenant's policy makes of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The same person, merged into the master's golden record.
    Merge,
    /// The same person, linked to the master (auto-merge is off).
    Link,
    /// Maybe the same person: a review item.
    Review,
    Distinct,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Merge => "merge",
            Decision::Link => "link",
            Decision::Review => "review",
            Decision::Distinct => "distinct",
        }
    }
}

/// The tenant's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub review: f64,
    pub auto_merge: f64,
    pub auto_merge_enabled: bool,
}

impl Policy {
    pub fn of(c: &DedupeConfig) -> Policy {
        Policy {
            review: c.review,
            auto_merge: c.auto_merge,
            auto_merge_enabled: c.auto_merge_enabled,
        }
    }

    /// The decision for a pair with `probability`; a consent conflict never
    /// merges or links silently: it goes to review.
    pub fn decide(&self, probability: f64, consent_conflict: bool) -> Decision {
        if probability >= self.auto_merge {
            if consent_conflict {
                Decision::Review
            } else if self.auto_merge_enabled {
                Decision::Merge
            } else {
                Decision::Link
            }
        } else if probability >= self.review {
            Decision::Review
        } else {
            Decision::Distinct
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_the_consent_rule() {
        let p = Policy {
            review: 0.5,
            auto_merge: 0.95,
            auto_merge_enabled: true,
        };
        assert_eq!(p.decide(0.99, false), Decision::Merge);
        assert_eq!(p.decide(0.99, true), Decision::Review);
        assert_eq!(p.decide(0.7, false), Decision::Review);
        assert_eq!(p.decide(0.2, false), Decision::Distinct);
        let off = Policy {
            auto_merge_enabled: false,
            ..p
        };
        assert_eq!(off.decide(0.99, false), Decision::Link);
    }
}
