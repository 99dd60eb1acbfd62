//! The `leadgate:plugin/validator@0.1.0` world on the host side: load a
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

#[doc(hidden)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "validator",
        // Leads are lowered straight from the host's borrowed strings.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

use bindings::exports::leadgate::plugin::validate as wit;
use bindings::leadgate::plugin::types as t;

use crate::wit::{Lists, lead_param};

fn lead_from_wit(l: t::LeadResult) -> m::Lead {
    m::lead_from_wit!(l, self::bindings::leadgate::plugin::types)
}

/// The export a validate component must have.
pub const EXPORT: &str = "leadgate:plugin/validate@0.1.0";
const CAPABILITY: Capability = Capability {
    interface: "validate",
    world: "validator",
};

/// A validate component, compiled and linked once, ready to instantiate.
pub type ValidatorComponent = Loaded<bindings::ValidatorPre<Sandbox>>;

impl ValidatorComponent {
    /// Loads and checks the component at `path`.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<ValidatorComponent, LoadError> {
        Loaded::new(
            runtime,
            path,
            CAPABILITY,
            load::wasi_only,
            bindings::ValidatorPre::new,
        )
    }

    /// A fresh instance with the tenant's settings (JSON) applied.
    pub fn instantiate(&self, settings: &str) -> Result<ValidatorInstance, CallError> {
        crate::load::instantiate!(self, settings, ValidatorInstance, |bindings| bindings
            .leadgate_plugin_validate()
            .validator())
    }
}

/// One live instance of a validate component, configured for a tenant.
pub struct ValidatorInstance {
    session: Session,
    bindings: bindings::Validator,
    handle: ResourceAny,
}

impl ValidatorInstance {
    /// Validates `leads` in one call. On any error the instance must be
    /// dropped: its state is no longer trustworthy.
    pub fn validate_batch(
        &mut self,
        leads: &[m::Lead],
        now: i64,
    ) -> Result<Vec<m::Validation>, CallError> {
        let deadline = self.session.arm(leads.len());
        let lists: Vec<Lists<'_>> = leads.iter().map(Lists::of).collect();
        let input: Vec<t::LeadParam<'_>> = leads
            .iter()
            .zip(&lists)
            .map(|(l, x)| lead_param(l, x))
            .collect();
        let cx = t::CallContext {
            tenant: leads.first().map_or("", |l| l.tenant.as_str()),
            now,
        };
        let out = self
            .bindings
            .leadgate_plugin_validate()
            .validator()
            .call_validate_batch(&mut self.session.store, self.handle, &input, cx)
            .map_err(|e| self.session.failed(e, deadline, Phase::Call))?;
        Ok(crate::one_each(out, leads.len())?
            .into_iter()
            .map(validation_from_wit)
            .collect())
    }

    /// Validates one lead.
    pub fn validate(&mut self, lead: &m::Lead, now: i64) -> Result<m::Validation, CallError> {
        let deadline = self.session.arm(1);
        let cx = t::CallContext {
            tenant: &lead.tenant,
            now,
        };
        let lists = Lists::of(lead);
        self.bindings
            .leadgate_plugin_validate()
            .validator()
            .call_validate(
                &mut self.session.store,
                self.handle,
                lead_param(lead, &lists),
                cx,
            )
            .map(validation_from_wit)
            .map_err(|e| self.session.failed(e, deadline, Phase::Call))
    }

    /// Whether the instance has served its share of calls and should be
    /// replaced by a fresh one.
    pub fn worn_out(&self) -> bool {
        self.session.worn_out()
    }
}

fn validation_from_wit(v: wit::Validation) -> m::Validation {
    m::Validation {
        verdict: match v.verdict {
            wit::Verdict::Accept => m::Verdict::Accept,
            wit::Verdict::Reject => m::Verdict::Reject,
            wit::Verdict::Review => m::Verdict::Review,
        },
        lead: lead_from_wit(v.lead),
        issues: v
            .issues
            .into_iter()
            .map(|i| m::issue_from_wit!(i, self::bindings::leadgate::plugin::types))
            .collect(),
    }
}
