//! The `leadgate:plugin/scorer@0.1.0` world on the host side: load a
//! component that claims to implement it, check that it does, and call it
//! with each lead's subject (the lead, its enrichment attributes, its
//! events and its account's peers), lowered from the host's borrowed data.

use crate::engine::Runtime;
use crate::failure::Phase;
use crate::load::{self, Capability, Loaded};
use crate::sandbox::Sandbox;
use crate::session::Session;
use crate::{CallError, LoadError};
use leadgate_lead::score as s;
use std::path::Path;
use wasmtime::component::ResourceAny;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "scorer",
        ownership: Borrowing { duplicate_if_necessary: true },
        // The shared types are generated once, by the validator world.
        with: {
            "leadgate:plugin/types": crate::wit::t,
        },
    });
}

use crate::wit::{Lists, lead_param, t};
use bindings::exports::leadgate::plugin::score as wit;

const CAPABILITY: Capability = Capability {
    interface: "score",
    world: "scorer",
};

/// A score component, compiled and linked once, ready to instantiate.
pub type ScorerComponent = Loaded<bindings::ScorerPre<Sandbox>>;

impl ScorerComponent {
    /// Loads and checks the component at `path`.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<ScorerComponent, LoadError> {
        Loaded::new(
            runtime,
            path,
            CAPABILITY,
            load::wasi_only,
            bindings::ScorerPre::new,
        )
    }

    /// A fresh instance with the tenant's settings (JSON) applied.
    pub fn instantiate(&self, settings: &str) -> Result<ScorerInstance, CallError> {
        crate::load::instantiate!(self, settings, ScorerInstance, |bindings| bindings
            .leadgate_plugin_score()
            .scorer())
    }
}

/// One live instance of a score component, configured for a tenant.
pub struct ScorerInstance {
    session: Session,
    bindings: bindings::Scorer,
    handle: ResourceAny,
}

/// A person's events as columns.
struct Columns {
    kinds: Vec<u8>,
    at: Vec<i64>,
    categories: Vec<u8>,
    values: Vec<f64>,
}

impl Columns {
    fn of(list: &[s::Event]) -> Columns {
        let mut c = Columns {
            kinds: Vec::with_capacity(list.len()),
            at: Vec::with_capacity(list.len()),
            categories: Vec::with_capacity(list.len()),
            values: Vec::with_capacity(list.len()),
        };
        for e in list {
            let kind = s::EventKind::ALL
                .iter()
                .position(|k| *k == e.kind)
                .unwrap_or_default();
            c.kinds.push(kind as u8);
            c.at.push(e.at);
            c.categories.push(e.category);
            c.values.push(e.value);
        }
        c
    }

    fn param(&self) -> wit::Events<'_> {
        wit::Events {
            kinds: &self.kinds,
            at: &self.at,
            categories: &self.categories,
            values: &self.values,
        }
    }
}

/// A subject's borrowed lists, kept alive for the call.
struct Parts<'a> {
    lists: Lists<'a>,
    attributes: Vec<wit::Attribute<'a>>,
    categories: Vec<&'a str>,
    events: Columns,
    peer_events: Vec<Columns>,
}

impl ScorerInstance {
    /// Scores `subjects` in one call as of `now`. On any error the instance
    /// must be dropped.
    pub fn score(
        &mut self,
        subjects: &[&s::Subject],
        now: i64,
    ) -> Result<Vec<s::Scored>, CallError> {
        let deadline = self.session.arm(subjects.len());
        let parts: Vec<Parts<'_>> = subjects
            .iter()
            .map(|x| Parts {
                lists: Lists::of(&x.lead),
                attributes: x
                    .attributes
                    .iter()
                    .map(|(n, v)| wit::Attribute { name: n, value: v })
                    .collect(),
                categories: x.categories.iter().take(255).map(String::as_str).collect(),
                events: Columns::of(&x.events),
                peer_events: x.peers.iter().map(|p| Columns::of(&p.events)).collect(),
            })
            .collect();
        let peers: Vec<Vec<wit::Peer<'_>>> = subjects
            .iter()
            .zip(&parts)
            .map(|(x, p)| {
                x.peers
                    .iter()
                    .zip(&p.peer_events)
                    .map(|(peer, ev)| wit::Peer {
                        id: &peer.id,
                        job_title: peer.job_title.as_deref(),
                        seniority: peer.seniority.as_deref(),
                        events: ev.param(),
                    })
                    .collect()
            })
            .collect();
        let input: Vec<wit::Subject<'_>> = subjects
            .iter()
            .zip(&parts)
            .zip(&peers)
            .map(|((x, p), peers)| wit::Subject {
                lead: lead_param(&x.lead, &p.lists),
                attributes: &p.attributes,
                categories: &p.categories,
                events: p.events.param(),
                peers,
            })
            .collect();
        let cx = t::CallContext {
            tenant: subjects.first().map_or("", |x| x.lead.tenant.as_str()),
            now,
        };
        let out = self
            .bindings
            .leadgate_plugin_score()
            .scorer()
            .call_score(&mut self.session.store, self.handle, &input, cx)
            .map_err(|e| self.session.failed(e, deadline, Phase::Call))?;
        Ok(crate::one_each(out, subjects.len())?
            .into_iter()
            .map(scored_from_wit)
            .collect())
    }

    /// Whether the instance has served its share of calls.
    pub fn worn_out(&self) -> bool {
        self.session.worn_out()
    }
}

fn finite(x: f64, lo: f64, hi: f64) -> f64 {
    if x.is_finite() { x.clamp(lo, hi) } else { lo }
}

/// A component's answer, with its numbers held to their ranges.
fn scored_from_wit(r: wit::Scored) -> s::Scored {
    s::Scored {
        total: r.total.min(100),
        grade: r.grade,
        fit: finite(r.fit, 0.0, 100.0),
        engagement: finite(r.engagement, 0.0, 100.0),
        intent: finite(r.intent, 0.0, 100.0),
        probability: r.probability.map(|p| finite(p, 0.0, 1.0)),
        reasons: r
            .reasons
            .into_iter()
            .map(|x| s::Reason {
                code: x.code,
                factor: x.factor,
                contribution: if x.contribution.is_finite() {
                    x.contribution
                } else {
                    0.0
                },
                detail: x.detail,
            })
            .collect(),
    }
}
