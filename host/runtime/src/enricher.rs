//! The `leadgate:plugin/enricher@0.1.0` world on the host side: load a
//! component that claims to implement it, check that it does, link the
//! `lookup` interface it imports, and call it.
//!
//! The component's lookups are answered synchronously by whatever
//! [`Lookups`] the caller lends for the call: the host fetches (with its
//! rate limits, retries and budget) *before* the call, so a lookup inside
//! the sandbox never waits on the network and never eats the deadline.

use crate::engine::Runtime;
use crate::failure::Phase;
use crate::load::{Capability, Loaded};
use crate::sandbox::Sandbox;
use crate::session::Session;
use crate::{CallError, LoadError};
use leadgate_lead as m;
use leadgate_lead::enrich as e;
use std::path::Path;
use wasmtime::component::{HasSelf, Linker, ResourceAny};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "enricher",
        ownership: Borrowing { duplicate_if_necessary: true },
        // The shared types are generated once, by the validator world.
        with: {
            "leadgate:plugin/types": crate::wit::t,
        },
    });
}

use crate::wit::{Lists, lead_param, t};
use bindings::exports::leadgate::plugin::enrich as wit;
use bindings::leadgate::plugin::lookup as host;

const CAPABILITY: Capability = Capability {
    interface: "enrich",
    world: "enricher",
};

fn provenance(p: e::Provenance) -> host::Provenance {
    host::Provenance {
        outcome: match p.outcome {
            e::Outcome::Found => host::Outcome::Found,
            e::Outcome::NotFound => host::Outcome::NotFound,
            e::Outcome::Unavailable => host::Outcome::Unavailable,
            e::Outcome::Pending => host::Outcome::Pending,
        },
        source: p.source,
        confidence: p.confidence,
        stale: p.stale,
        detail: p.detail,
    }
}

/// Outside a call nothing is lent: every lookup is unavailable.
fn unlent<T>() -> e::Answer<T> {
    e::Answer::without(
        e::Outcome::Unavailable,
        "host",
        "no lookups outside an enrich call",
    )
}

impl host::Host for Sandbox {
    fn company_by_domain(&mut self, domain: String) -> host::CompanyAnswer {
        let a = match self.lookups.as_mut() {
            Some(l) => l.company(&domain),
            None => unlent(),
        };
        host::CompanyAnswer {
            provenance: provenance(a.provenance),
            company: a.value.map(|c| host::Company {
                domain: c.domain,
                name: c.name,
                industry: c.industry,
                employee_range: c.employee_range,
                revenue_range: c.revenue_range,
                country: c.country,
                city: c.city,
                technologies: c.technologies,
            }),
        }
    }

    fn person_by_email(&mut self, email: String) -> host::PersonAnswer {
        let a = match self.lookups.as_mut() {
            Some(l) => l.person(&email),
            None => unlent(),
        };
        host::PersonAnswer {
            provenance: provenance(a.provenance),
            person: a.value.map(|p| host::Person {
                email: p.email,
                first_name: p.first_name,
                last_name: p.last_name,
                job_title: p.job_title,
                seniority: p.seniority,
                department: p.department,
                company_domain: p.company_domain,
                country: p.country,
                city: p.city,
                linkedin: p.linkedin,
            }),
        }
    }
}

fn link_lookup(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    host::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |s| s)
}

/// A enrich component, compiled and linked once, ready to instantiate.
pub type EnricherComponent = Loaded<bindings::EnricherPre<Sandbox>>;

impl EnricherComponent {
    /// Loads and checks the component at `path`.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<EnricherComponent, LoadError> {
        Loaded::new(
            runtime,
            path,
            CAPABILITY,
            link_lookup,
            bindings::EnricherPre::new,
        )
    }

    /// A fresh instance with the tenant's settings (JSON) applied.
    pub fn instantiate(&self, settings: &str) -> Result<EnricherInstance, CallError> {
        crate::load::instantiate!(self, settings, EnricherInstance, |bindings| bindings
            .leadgate_plugin_enrich()
            .enricher())
    }
}

/// One live instance of an enrich component, configured for a tenant.
pub struct EnricherInstance {
    session: Session,
    bindings: bindings::Enricher,
    handle: ResourceAny,
}

/// The lookups lent to a call.
pub type LentLookups = Box<dyn e::Lookups + Send>;

impl EnricherInstance {
    /// Enriches `leads` in one call; the component's lookups are answered
    /// by `lookups`, which is lent for the call and handed back (also when
    /// the call fails). On any error the instance must be dropped.
    pub fn enrich(
        &mut self,
        leads: &[&m::Lead],
        now: i64,
        lookups: &mut Option<LentLookups>,
    ) -> Result<Vec<e::Enrichment>, CallError> {
        let deadline = self.session.arm(leads.len());
        let lists: Vec<Lists<'_>> = leads.iter().map(|l| Lists::of(l)).collect();
        let input: Vec<t::Lead<'_>> = leads
            .iter()
            .zip(&lists)
            .map(|(l, x)| lead_param(l, x))
            .collect();
        let cx = t::CallContext {
            tenant: leads.first().map_or("", |l| l.tenant.as_str()),
            now,
        };
        self.session.store.data_mut().lookups = lookups.take();
        let out = self
            .bindings
            .leadgate_plugin_enrich()
            .enricher()
            .call_enrich(&mut self.session.store, self.handle, &input, cx);
        *lookups = self.session.store.data_mut().lookups.take();
        let out = out.map_err(|e| self.session.failed(e, deadline, Phase::Call))?;
        Ok(crate::one_each(out, leads.len())?
            .into_iter()
            .map(enrichment_from_wit)
            .collect())
    }

    /// Whether the instance has served its share of calls.
    pub fn worn_out(&self) -> bool {
        self.session.worn_out()
    }
}

fn enrichment_from_wit(r: wit::Enrichment) -> e::Enrichment {
    e::Enrichment {
        status: match r.status {
            wit::Status::Complete => e::EnrichStatus::Complete,
            wit::Status::Partial => e::EnrichStatus::Partial,
            wit::Status::Failed => e::EnrichStatus::Failed,
        },
        fields: r
            .fields
            .into_iter()
            .map(|f| e::EnrichedField {
                field: f.field,
                value: f.value,
                source: f.source,
                confidence: if f.confidence.is_finite() {
                    f.confidence.clamp(0.0, 1.0)
                } else {
                    0.0
                },
            })
            .collect(),
        issues: r
            .issues
            .into_iter()
            .map(|i| m::issue_from_wit!(i, crate::wit::t))
            .collect(),
    }
}
