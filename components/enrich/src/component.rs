//! The WebAssembly face of the enrich capability: exports
//! `leadgate:plugin/enrich@0.1.0` over the native logic in this crate, and
//! answers [`Lookups`](crate::Lookups) through the host's imported
//! `leadgate:plugin/lookup@0.1.0`.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/v0.1.0", "wit"],
        world: "leadgate:enrich-component/component",
        generate_all,
    });
}

/// Enrichment allocates many small strings; talc serves them faster than
/// the default dlmalloc inside WebAssembly.
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

use bindings::exports::leadgate::plugin::enrich as wit;
use bindings::leadgate::plugin::lookup as host;
use bindings::leadgate::plugin::types as t;
use leadgate_lead as m;
use leadgate_lead::enrich as e;

struct Component;

impl wit::Guest for Component {
    type Enricher = Enricher;
}

struct Enricher {
    inner: crate::Enricher,
}

fn from_wit(l: t::Lead) -> m::Lead {
    m::lead_from_wit!(l, crate::component::bindings::leadgate::plugin::types)
}

fn provenance(p: host::Provenance) -> e::Provenance {
    e::Provenance {
        outcome: match p.outcome {
            host::Outcome::Found => e::Outcome::Found,
            host::Outcome::NotFound => e::Outcome::NotFound,
            host::Outcome::Unavailable => e::Outcome::Unavailable,
            host::Outcome::Pending => e::Outcome::Pending,
        },
        source: p.source,
        confidence: if p.confidence.is_finite() {
            p.confidence.clamp(0.0, 1.0)
        } else {
            0.0
        },
        stale: p.stale,
        detail: p.detail,
    }
}

/// The host's lookups.
struct Host;

impl crate::Lookups for Host {
    fn company(&mut self, domain: &str) -> e::Answer<e::Company> {
        let a = host::company_by_domain(domain);
        e::Answer {
            provenance: provenance(a.provenance),
            value: a.company.map(|c| e::Company {
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

    fn person(&mut self, email: &str) -> e::Answer<e::Person> {
        let a = host::person_by_email(email);
        e::Answer {
            provenance: provenance(a.provenance),
            value: a.person.map(|p| e::Person {
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

impl wit::GuestEnricher for Enricher {
    fn open(settings: String) -> Result<wit::Enricher, String> {
        let inner = crate::Enricher::from_json(&settings).map_err(|e| e.to_string())?;
        Ok(wit::Enricher::new(Enricher { inner }))
    }

    fn enrich(&self, leads: Vec<t::Lead>, _cx: t::CallContext) -> Vec<wit::Enrichment> {
        leads
            .into_iter()
            .map(|l| {
                let r = self.inner.enrich(&from_wit(l), &mut Host);
                wit::Enrichment {
                    status: match r.status {
                        e::EnrichStatus::Complete => wit::Status::Complete,
                        e::EnrichStatus::Partial => wit::Status::Partial,
                        e::EnrichStatus::Failed => wit::Status::Failed,
                    },
                    fields: r
                        .fields
                        .into_iter()
                        .map(|f| wit::EnrichedField {
                            field: f.field,
                            value: f.value,
                            source: f.source,
                            confidence: f.confidence,
                        })
                        .collect(),
                    issues: r
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
            })
            .collect()
    }
}

bindings::export!(Component with_types_in bindings);
