//! The `enricher` world: an [`Enrich`](crate::Enrich) exported as
//! `leadgate:plugin/enrich@0.1.0`, asking the host's
//! `leadgate:plugin/lookup@0.1.0` through [`HostLookups`].

super::capability!("leadgate:sdk/enricher@0.1.0", enrich, Enrich, Enricher);

use bindings::leadgate::plugin::lookup as host;
use leadgate_lead::enrich as e;

/// The host's lookups (`interface lookup`): what its providers fetched or
/// its cache holds. A confidence that is not a number reads as 0.
pub struct HostLookups;

impl e::Lookups for HostLookups {
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

impl<T: Enrich> wit::GuestEnricher for Resource<T> {
    fn open(settings: String) -> Result<wit::Enricher, String> {
        Ok(wit::Enricher::new(Resource(T::open(&settings)?)))
    }

    fn enrich(&self, leads: Vec<t::Lead>, cx: t::CallContext) -> Vec<wit::Enrichment> {
        let cx = cx_from_wit(cx);
        leads
            .into_iter()
            .map(|l| {
                let r = self.0.enrich(&lead_from_wit(l), &mut HostLookups, &cx);
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
                    issues: r.issues.into_iter().map(issue_into_wit).collect(),
                }
            })
            .collect()
    }
}
