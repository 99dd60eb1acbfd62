//! The `validator` world: a [`Validate`](crate::Validate) exported as
//! `leadgate:plugin/validate@0.1.0`.

super::capability!(
    "leadgate:sdk/validator@0.1.0",
    validate,
    Validate,
    Validator
);

impl<T: Validate> wit::GuestValidator for Resource<T> {
    fn open(settings: String) -> Result<wit::Validator, String> {
        Ok(wit::Validator::new(Resource(T::open(&settings)?)))
    }

    fn validate(&self, lead: t::Lead, cx: t::CallContext) -> wit::Validation {
        validation_into_wit(self.0.validate(lead_from_wit(lead), &cx_from_wit(cx)))
    }

    fn validate_batch(&self, leads: Vec<t::Lead>, cx: t::CallContext) -> Vec<wit::Validation> {
        let leads = leads.into_iter().map(lead_from_wit).collect();
        self.0
            .validate_batch(leads, &cx_from_wit(cx))
            .into_iter()
            .map(validation_into_wit)
            .collect()
    }
}

fn validation_into_wit(v: m::Validation) -> wit::Validation {
    wit::Validation {
        verdict: match v.verdict {
            m::Verdict::Accept => wit::Verdict::Accept,
            m::Verdict::Reject => wit::Verdict::Reject,
            m::Verdict::Review => wit::Verdict::Review,
        },
        lead: lead_into_wit(v.lead),
        issues: v.issues.into_iter().map(issue_into_wit).collect(),
    }
}
