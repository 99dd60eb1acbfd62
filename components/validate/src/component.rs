//! The WebAssembly face of the validate capability: exports
//! `leadgate:plugin/validate@0.1.0` over the native logic in this crate.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/v0.1.0", "wit"],
        world: "leadgate:validate-component/component",
        generate_all,
    });
}

/// Validation allocates a few dozen small strings per lead; talc serves them
/// markedly faster than the default dlmalloc inside WebAssembly.
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

use bindings::exports::leadgate::plugin::validate as wit;
use bindings::leadgate::plugin::types as t;
use leadgate_lead as m;

struct Component;

impl bindings::Guest for Component {
    fn wizer_initialize() {
        crate::warm_up();
    }
}

impl wit::Guest for Component {
    type Validator = Validator;
}

struct Validator {
    settings: crate::Settings,
}

impl wit::GuestValidator for Validator {
    fn open(settings: String) -> Result<wit::Validator, String> {
        let settings = crate::Settings::from_json(&settings).map_err(|e| e.to_string())?;
        Ok(wit::Validator::new(Validator { settings }))
    }

    fn validate(&self, lead: t::Lead, cx: t::CallContext) -> wit::Validation {
        self.one(lead, cx.now)
    }

    fn validate_batch(&self, leads: Vec<t::Lead>, cx: t::CallContext) -> Vec<wit::Validation> {
        leads
            .into_iter()
            .map(|lead| self.one(lead, cx.now))
            .collect()
    }
}

impl Validator {
    fn one(&self, lead: t::Lead, now: i64) -> wit::Validation {
        to_wit(crate::validate_owned(from_wit(lead), &self.settings, now))
    }
}

fn from_wit(l: t::Lead) -> m::Lead {
    m::lead_from_wit!(l, crate::component::bindings::leadgate::plugin::types)
}

fn lead_to_wit(l: m::Lead) -> t::Lead {
    m::lead_into_wit!(l, crate::component::bindings::leadgate::plugin::types)
}

fn to_wit(v: m::Validation) -> wit::Validation {
    wit::Validation {
        verdict: match v.verdict {
            m::Verdict::Accept => wit::Verdict::Accept,
            m::Verdict::Reject => wit::Verdict::Reject,
            m::Verdict::Review => wit::Verdict::Review,
        },
        lead: lead_to_wit(v.lead),
        issues: v
            .issues
            .into_iter()
            .map(|i| t::Issue {
                field: i.field,
                code: i.code,
                severity: match i.severity {
                    m::Severity::Info => t::Severity::Info,
                    m::Severity::Warning => t::Severity::Warning,
                    m::Severity::Error => t::Severity::Error,
                },
                message: i.message,
            })
            .collect(),
    }
}

bindings::export!(Component with_types_in bindings);
