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
        to_wit(crate::validate_owned(
            from_wit(lead),
            &self.settings,
            cx.now,
        ))
    }

    fn validate_batch(&self, leads: Vec<t::Lead>, cx: t::CallContext) -> Vec<wit::Validation> {
        leads
            .into_iter()
            .map(|lead| {
                to_wit(crate::validate_owned(
                    from_wit(lead),
                    &self.settings,
                    cx.now,
                ))
            })
            .collect()
    }
}

fn from_wit(l: t::Lead) -> m::Lead {
    m::lead_from_wit!(l, crate::component::bindings::leadgate::plugin::types)
}

fn lead_to_wit(l: m::Lead) -> t::Lead {
    t::Lead {
        id: l.id,
        tenant: l.tenant,
        source: match l.source {
            m::Source::Form => t::Source::Form,
            m::Source::Ads => t::Source::Ads,
            m::Source::Import => t::Source::Import,
            m::Source::Crm => t::Source::Crm,
            m::Source::Api => t::Source::Api,
            m::Source::Other => t::Source::Other,
        },
        received_at: l.received_at,
        email: l.email,
        phone: l.phone,
        phone_extension: l.phone_extension,
        first_name: l.first_name,
        last_name: l.last_name,
        full_name: l.full_name,
        job_title: l.job_title,
        company: l.company,
        company_key: l.company_key,
        website: l.website,
        domain: l.domain,
        street: l.street,
        city: l.city,
        postcode: l.postcode,
        region: l.region,
        country: l.country,
        consent: l
            .consent
            .into_iter()
            .map(|c| t::Consent {
                purpose: c.purpose,
                granted: c.granted,
                recorded_at: c.recorded_at,
            })
            .collect(),
        external_ids: l
            .external_ids
            .into_iter()
            .map(|e| t::ExternalId {
                system: e.system,
                id: e.id,
            })
            .collect(),
        custom: l
            .custom
            .into_iter()
            .map(|c| t::CustomField {
                key: c.key,
                value: c.value,
            })
            .collect(),
    }
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
