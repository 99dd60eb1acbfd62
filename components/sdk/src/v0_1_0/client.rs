//! The `validate-client` world: calling a validate component from another
//! component (the edge). Composition — `leadgate compose`, or Spin's
//! component dependencies — plugs the validate component into the import.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/v0.1.0", "wit/v0.1.0"],
        world: "leadgate:sdk/validate-client@0.1.0",
        generate_all,
    });
}

use bindings::leadgate::plugin::validate as v;

super::conversions!(self::bindings::leadgate::plugin::types);

/// An open instance of the plugged-in validate component.
pub struct Validator(v::Validator);

impl Validator {
    /// Opens the plugged-in validator with `settings` (JSON); its refusal
    /// as it gave it.
    pub fn open(settings: &str) -> Result<Self, String> {
        v::Validator::open(settings).map(Validator)
    }

    /// Validates one lead.
    pub fn validate(&self, lead: m::Lead, cx: &crate::CallContext) -> m::Validation {
        let r = self.0.validate(&lead_into_wit(lead), &cx_into_wit(cx));
        m::Validation {
            verdict: match r.verdict {
                v::Verdict::Accept => m::Verdict::Accept,
                v::Verdict::Reject => m::Verdict::Reject,
                v::Verdict::Review => m::Verdict::Review,
            },
            lead: lead_from_wit(r.lead),
            issues: r.issues.into_iter().map(issue_from_wit).collect(),
        }
    }
}
