//! The dedupe stage of `leadgate run` and `import`: each new lead is matched
//! against the stored leads that share a blocking key and against the leads
//! of the same run not yet written to the store (two rows of one file can be
//! the same person), and the tenant's policy decides merge, link, review or
//! distinct.

use crate::matcher::{Decision, Matcher, Policy};
use anyhow::Result;
use leadgate_lead::{Evidence, Lead};
use leadgate_merge::survivorship;
use leadgate_runtime::CallError;
use leadgate_store::prelude::*;
use leadgate_store::{Store, key_hash};
use serde::Serialize;
use std::collections::HashMap;

/// What matching found for one lead.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub decision: Decision,
    /// The master (merge, link) or the other lead of the pair (review).
    pub with: String,
    pub probability: f64,
    /// Set when the two leads disagree on consent for this purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_conflict: Option<String>,
    pub evidence: Vec<Evidence>,
}

/// The stage's result for one lead.
#[derive(Debug, Default)]
pub struct Matched {
    /// Hashed blocking keys, for the store's index.
    pub keys: Vec<i64>,
    /// The best match at or above the review threshold.
    pub found: Option<Found>,
    /// The component failed on this lead: matching was skipped.
    pub error: Option<CallError>,
}

/// Up to this many pairs, one comparison call returns the evidence too.
const EXPLAIN_ALL: usize = 32;

/// A lead of this run not yet in the store.
struct Recent {
    id: String,
    lead: Lead,
    master: Option<String>,
}

pub struct Stage<'a> {
    matcher: Matcher<'a>,
    policy: Policy,
    tenant: String,
    per_key: usize,
    max_candidates: usize,
    /// Leads matched but not yet in the store, oldest first; positions in
    /// `index` count from the first lead ever held (`base` of them have
    /// been forgotten since).
    recent: std::collections::VecDeque<Recent>,
    base: usize,
    index: leadgate_store::KeyMap<Vec<usize>>,
}

/// A candidate for one lead: where it lives in the compare pool and what
/// it resolves to.
struct Cand {
    pool: u32,
    id: String,
    master: MasterOf,
}

/// Where a candidate's master comes from.
enum MasterOf {
    /// A stored lead: known when fetched.
    Stored(String),
    /// A lead of this run not yet stored (index into `recent`): known once
    /// that lead's own match is decided, earlier in the same batch.
    Recent(usize),
}

impl<'a> Stage<'a> {
    pub fn new(
        matcher: Matcher<'a>,
        policy: Policy,
        tenant: &str,
        per_key: usize,
        max_candidates: usize,
    ) -> Stage<'a> {
        Stage {
            matcher,
            policy,
            tenant: tenant.to_string(),
            per_key,
            max_candidates,
            recent: std::collections::VecDeque::new(),
            base: 0,
            index: HashMap::default(),
        }
    }

    /// The leads in the store now include everything matched so far.
    pub fn flushed(&mut self) {
        self.base += self.recent.len();
        self.recent.clear();
        self.index.clear();
    }

    /// The oldest `n` leads matched are in the store now (another thread
    /// recorded them); the later ones are still only here.
    pub fn forget_oldest(&mut self, n: usize) {
        let n = n.min(self.recent.len());
        if n == self.recent.len() {
            self.flushed();
            return;
        }
        self.recent.drain(..n);
        self.base += n;
        let base = self.base;
        self.index.retain(|_, positions| {
            positions.retain(|p| *p >= base);
            !positions.is_empty()
        });
    }

    /// Matches `leads` (normalized, ids set), in order.
    pub fn match_leads(
        &mut self,
        store: &Store,
        leads: &[&Lead],
        now: i64,
    ) -> Result<Vec<Matched>> {
        let mut out: Vec<Matched> = leads.iter().map(|_| Matched::default()).collect();
        let keys = self.matcher.keys(leads, now);
        let mut pool: Vec<Lead> = Vec::new();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut owners: Vec<(usize, Cand)> = Vec::new();
        let mut first_recent = Vec::with_capacity(leads.len());
        let hashed: Vec<Result<Vec<i64>, CallError>> = keys
            .into_iter()
            .map(|k| k.map(|k| k.iter().map(|k| key_hash(&self.tenant, k)).collect()))
            .collect();
        let lookups: Vec<Vec<i64>> = hashed
            .iter()
            .map(|h| h.as_ref().ok().cloned().unwrap_or_default())
            .collect();
        let started = std::time::Instant::now();
        let stored =
            store.candidates_for_each(&self.tenant, &lookups, self.per_key, self.max_candidates)?;
        let fetched = started.elapsed();
        for (i, ((lead, hashes), stored)) in leads.iter().zip(hashed).zip(stored).enumerate() {
            let hashes = match hashes {
                Ok(h) => h,
                Err(e) => {
                    out[i].error = Some(e);
                    first_recent.push(None);
                    continue;
                }
            };
            // The lead joins the compare pool with its first candidate:
            // most new leads have none, and each lead sent costs a copy
            // into the component and its features there.
            let mut me: Option<u32> = None;
            let mut seen: Vec<String> = Vec::new();
            for c in stored {
                if seen.len() >= self.max_candidates || c.id == lead.id {
                    continue;
                }
                let master = MasterOf::Stored(c.master.clone().unwrap_or_else(|| c.id.clone()));
                seen.push(c.id.clone());
                let a = place(&mut pool, &mut me, lead);
                owners.push((
                    i,
                    Cand {
                        pool: pool.len() as u32,
                        id: c.id,
                        master,
                    },
                ));
                pairs.push((a, pool.len() as u32));
                pool.push(c.lead);
            }
            let mut recent: Vec<usize> = Vec::new();
            for h in &hashes {
                if let Some(rs) = self.index.get(h) {
                    for r in rs.iter().rev().take(self.per_key) {
                        if !recent.contains(r) {
                            recent.push(*r);
                        }
                    }
                }
            }
            for r in recent {
                if seen.len() >= self.max_candidates {
                    break;
                }
                let rec = &self.recent[r - self.base];
                if seen.contains(&rec.id) {
                    continue;
                }
                seen.push(rec.id.clone());
                let a = place(&mut pool, &mut me, lead);
                owners.push((
                    i,
                    Cand {
                        pool: pool.len() as u32,
                        id: rec.id.clone(),
                        master: MasterOf::Recent(r),
                    },
                ));
                pairs.push((a, pool.len() as u32));
                pool.push(rec.lead.clone());
            }
            let r = self.base + self.recent.len();
            for h in &hashes {
                self.index.entry(*h).or_default().push(r);
            }
            self.recent.push_back(Recent {
                id: lead.id.clone(),
                lead: Lead::clone(lead),
                master: None,
            });
            first_recent.push(Some(r));
            out[i].keys = hashes;
        }

        let pool_refs: Vec<&Lead> = pool.iter().collect();
        // Few pairs (one lead from a form or a webhook): the evidence comes
        // with the first call, saving a second one.
        let explain_all = pairs.len() <= EXPLAIN_ALL;
        let compared_at = std::time::Instant::now();
        let mut results = self.matcher.compare(&pool_refs, &pairs, explain_all, now);
        tracing::debug!(
            leads = leads.len(),
            keys = lookups.iter().map(Vec::len).sum::<usize>(),
            pool = pool.len(),
            pairs = pairs.len(),
            fetch_ms = fetched.as_secs_f64() * 1e3,
            compare_ms = compared_at.elapsed().as_secs_f64() * 1e3,
            "candidates compared"
        );
        // The best candidate of each lead.
        let mut best: Vec<Option<(f64, usize)>> = vec![None; leads.len()];
        for (k, ((i, _), result)) in owners.iter().zip(&results).enumerate() {
            match result {
                Ok(m) => {
                    if best[*i].is_none_or(|(p, _)| m.probability > p) {
                        best[*i] = Some((m.probability, k));
                    }
                }
                Err(e) if out[*i].error.is_none() => out[*i].error = Some(e.clone()),
                Err(_) => {}
            }
        }
        // Evidence for the pairs that will be acted on or reviewed.
        let explain: Vec<usize> = best
            .iter()
            .flatten()
            .filter(|(p, _)| *p >= self.policy.review)
            .map(|(_, k)| *k)
            .collect();
        let mut evidence: HashMap<usize, Vec<Evidence>> = HashMap::new();
        if explain_all {
            for k in explain {
                if let Some(Ok(m)) = results.get_mut(k) {
                    evidence.insert(k, std::mem::take(&mut m.evidence));
                }
            }
        } else {
            let explain_pairs: Vec<(u32, u32)> = explain.iter().map(|k| pairs[*k]).collect();
            let explained = self.matcher.compare(&pool_refs, &explain_pairs, true, now);
            for (k, m) in explain.into_iter().zip(explained) {
                if let Ok(m) = m {
                    evidence.insert(k, m.evidence);
                }
            }
        }

        for (i, b) in best.into_iter().enumerate() {
            let Some((probability, k)) = b else { continue };
            if probability < self.policy.review {
                continue;
            }
            let cand = &owners[k].1;
            let other = &pool[cand.pool as usize];
            let master = match &cand.master {
                MasterOf::Stored(m) => m.clone(),
                MasterOf::Recent(r) => self
                    .recent
                    .get(*r - self.base)
                    .map(|rec| rec.master.clone().unwrap_or_else(|| rec.id.clone()))
                    .unwrap_or_else(|| cand.id.clone()),
            };
            let conflict = survivorship::consent_conflict(leads[i], other);
            let decision = self.policy.decide(probability, conflict.is_some());
            let with = match decision {
                Decision::Merge | Decision::Link => {
                    if let Some(r) = first_recent[i] {
                        self.recent[r - self.base].master = Some(master.clone());
                    }
                    master
                }
                _ => cand.id.clone(),
            };
            out[i].found = Some(Found {
                decision,
                with,
                probability,
                consent_conflict: conflict,
                evidence: evidence.remove(&k).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

/// `lead`'s place in the compare pool, adding it on first use.
fn place(pool: &mut Vec<Lead>, me: &mut Option<u32>, lead: &Lead) -> u32 {
    *me.get_or_insert_with(|| {
        pool.push(lead.clone());
        (pool.len() - 1) as u32
    })
}

/// Recomputes and stores the golden record of each master in `masters`.
pub fn refresh_golden(
    store: &Store,
    tenant: &str,
    masters: &[String],
    rules: &survivorship::Rules,
    now: i64,
) -> Result<()> {
    for master in masters {
        let mut members: Vec<(String, Lead)> = store
            .golden_members(master)?
            .into_iter()
            .map(|m| (m.id, m.lead))
            .collect();
        // The master first: the golden record carries its id.
        if let Some(pos) = members.iter().position(|(id, _)| id == master) {
            let m = members.remove(pos);
            members.insert(0, m);
        }
        let record = if members.len() > 1 {
            survivorship::golden(&members, rules)
                .map(|g| serde_json::to_string(&g))
                .transpose()?
        } else {
            None
        };
        store.set_golden(tenant, master, record.as_deref(), now)?;
    }
    Ok(())
}
