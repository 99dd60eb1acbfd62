//! The shared WIT vocabulary (`leadgate:plugin/types`) on the host side:
//! one Rust spelling for every capability's bindings (each maps `types`
//! onto [`t`] with bindgen's `with`), and leads lowered straight from the
//! host's borrowed strings.

use leadgate_lead as m;

/// The generated `types`, under the names every world's bindings expect.
/// Generated once, by the validator world, where leads go both ways
/// (`LeadParam` in, `LeadResult` out); a world where a lead only goes in
/// names it `Lead`.
pub mod t {
    pub use crate::validator::bindings::leadgate::plugin::types::*;
    pub type Lead<'a> = LeadParam<'a>;
    pub type Consent<'a> = ConsentParam<'a>;
    pub type ExternalId<'a> = ExternalIdParam<'a>;
    pub type CustomField<'a> = CustomFieldParam<'a>;
}

/// The list fields of a lead in their borrowed WIT form.
pub(crate) struct Lists<'a> {
    consent: Vec<t::ConsentParam<'a>>,
    external_ids: Vec<t::ExternalIdParam<'a>>,
    custom: Vec<t::CustomFieldParam<'a>>,
}

impl<'a> Lists<'a> {
    pub(crate) fn of(l: &'a m::Lead) -> Lists<'a> {
        Lists {
            consent: l
                .consent
                .iter()
                .map(|c| t::ConsentParam {
                    purpose: &c.purpose,
                    granted: c.granted,
                    recorded_at: c.recorded_at.as_deref(),
                })
                .collect(),
            external_ids: l
                .external_ids
                .iter()
                .map(|e| t::ExternalIdParam {
                    system: &e.system,
                    id: &e.id,
                })
                .collect(),
            custom: l
                .custom
                .iter()
                .map(|c| t::CustomFieldParam {
                    key: &c.key,
                    value: &c.value,
                })
                .collect(),
        }
    }
}

/// A lead as a borrowed WIT parameter: lowered into the component without
/// copying its strings on the host first.
pub(crate) fn lead_param<'a>(l: &'a m::Lead, lists: &'a Lists<'a>) -> t::LeadParam<'a> {
    t::LeadParam {
        id: &l.id,
        tenant: &l.tenant,
        source: match l.source {
            m::Source::Form => t::Source::Form,
            m::Source::Ads => t::Source::Ads,
            m::Source::Import => t::Source::Import,
            m::Source::Crm => t::Source::Crm,
            m::Source::Api => t::Source::Api,
            m::Source::Other => t::Source::Other,
        },
        received_at: l.received_at,
        email: l.email.as_deref(),
        phone: l.phone.as_deref(),
        phone_extension: l.phone_extension.as_deref(),
        first_name: l.first_name.as_deref(),
        last_name: l.last_name.as_deref(),
        full_name: l.full_name.as_deref(),
        job_title: l.job_title.as_deref(),
        company: l.company.as_deref(),
        company_key: l.company_key.as_deref(),
        website: l.website.as_deref(),
        domain: l.domain.as_deref(),
        street: l.street.as_deref(),
        city: l.city.as_deref(),
        postcode: l.postcode.as_deref(),
        region: l.region.as_deref(),
        country: l.country.as_deref(),
        consent: &lists.consent,
        external_ids: &lists.external_ids,
        custom: &lists.custom,
    }
}
