//! The `leadgate:plugin/deduper@0.1.0` world on the host side: load a
//! component that claims to implement it, check that it does, and call it.

use crate::engine::Runtime;
use crate::failure::Phase;
use crate::load::{self, Capability, Loaded};
use crate::sandbox::Sandbox;
use crate::session::Session;
use crate::{CallError, LoadError};
use leadgate_lead as m;
use std::path::Path;
use wasmtime::component::ResourceAny;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "deduper",
        ownership: Borrowing { duplicate_if_necessary: true },
        // The shared types are generated once, by the validator world.
        with: {
            "leadgate:plugin/types": crate::wit::t,
        },
    });
}

use crate::wit::{Lists, lead_param, t};

const CAPABILITY: Capability = Capability {
    interface: "dedupe",
    world: "deduper",
};

/// A dedupe component, compiled and linked once, ready to instantiate.
pub type DeduperComponent = Loaded<bindings::DeduperPre<Sandbox>>;

impl DeduperComponent {
    /// Loads and checks the component at `path`.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<DeduperComponent, LoadError> {
        Loaded::new(
            runtime,
            path,
            CAPABILITY,
            load::wasi_only,
            bindings::DeduperPre::new,
        )
    }

    /// A fresh instance with the tenant's settings (JSON) applied.
    pub fn instantiate(&self, settings: &str) -> Result<DeduperInstance, CallError> {
        crate::load::instantiate!(self, settings, DeduperInstance, |bindings| bindings
            .leadgate_plugin_dedupe()
            .deduper())
    }
}

/// One live instance of a dedupe component, configured for a tenant.
pub struct DeduperInstance {
    session: Session,
    bindings: bindings::Deduper,
    handle: ResourceAny,
}

fn params<'a>(leads: &[&'a m::Lead], lists: &'a [Lists<'a>]) -> Vec<t::Lead<'a>> {
    leads
        .iter()
        .zip(lists)
        .map(|(l, x)| lead_param(l, x))
        .collect()
}

impl DeduperInstance {
    /// Blocking keys of each lead, in order. On any error the instance must
    /// be dropped.
    pub fn keys(&mut self, leads: &[&m::Lead], now: i64) -> Result<Vec<Vec<String>>, CallError> {
        let deadline = self.session.arm(leads.len());
        let lists: Vec<Lists<'_>> = leads.iter().map(|l| Lists::of(l)).collect();
        let input = params(leads, &lists);
        let cx = t::CallContext {
            tenant: leads.first().map_or("", |l| l.tenant.as_str()),
            now,
        };
        let out = self
            .bindings
            .leadgate_plugin_dedupe()
            .deduper()
            .call_keys(&mut self.session.store, self.handle, &input, cx)
            .map_err(|e| self.session.failed(e, deadline, Phase::Call))?;
        crate::one_each(out, leads.len())
    }

    /// Compares `pairs` (indexes into `leads`), in order.
    pub fn compare(
        &mut self,
        leads: &[&m::Lead],
        pairs: &[(u32, u32)],
        explain: bool,
        now: i64,
    ) -> Result<Vec<m::Match>, CallError> {
        let deadline = self.session.arm(pairs.len().div_ceil(8).max(1));
        let lists: Vec<Lists<'_>> = leads.iter().map(|l| Lists::of(l)).collect();
        let input = params(leads, &lists);
        let cx = t::CallContext {
            tenant: leads.first().map_or("", |l| l.tenant.as_str()),
            now,
        };
        let out = self
            .bindings
            .leadgate_plugin_dedupe()
            .deduper()
            .call_compare(
                &mut self.session.store,
                self.handle,
                &input,
                pairs,
                explain,
                cx,
            )
            .map_err(|e| self.session.failed(e, deadline, Phase::Call))?;
        Ok(crate::one_each(out, pairs.len())?
            .into_iter()
            .map(|r| m::Match {
                probability: if r.probability.is_finite() {
                    r.probability.clamp(0.0, 1.0)
                } else {
                    0.0
                },
                evidence: r
                    .evidence
                    .into_iter()
                    .map(|e| m::Evidence {
                        field: e.field,
                        level: e.level,
                        similarity: e.similarity,
                        weight: e.weight,
                        detail: e.detail,
                    })
                    .collect(),
            })
            .collect())
    }

    /// Whether the instance has served its share of calls.
    pub fn worn_out(&self) -> bool {
        self.session.worn_out()
    }
}
