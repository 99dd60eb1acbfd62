//! Contract version 0.1.0 (`wit/v0.1.0`): one module per world, each with
//! its generated `bindings` and the glue between the generated traits and
//! the SDK's. A component built against this version keeps loading when the
//! contract grows: a new version gets a module beside this one.

#[cfg(feature = "client")]
pub mod client;
pub mod dedupe;
pub mod enrich;
pub mod score;
pub mod validate;

/// The conversions every world needs between its generated `types` and the
/// lead record; `$types` is the world's generated `leadgate::plugin::types`.
macro_rules! conversions {
    ($types:path) => {
        use leadgate_lead as m;
        use $types as t;

        #[allow(dead_code)]
        pub(crate) fn lead_from_wit(l: t::Lead) -> m::Lead {
            m::lead_from_wit!(l, $types)
        }

        #[allow(dead_code)]
        pub(crate) fn lead_into_wit(l: m::Lead) -> t::Lead {
            m::lead_into_wit!(l, $types)
        }

        #[allow(dead_code)]
        pub(crate) fn issue_into_wit(i: m::Issue) -> t::Issue {
            t::Issue {
                field: i.field,
                code: i.code,
                severity: match i.severity {
                    m::Severity::Info => t::Severity::Info,
                    m::Severity::Warning => t::Severity::Warning,
                    m::Severity::Error => t::Severity::Error,
                },
                message: i.message,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn issue_from_wit(i: t::Issue) -> m::Issue {
            m::issue_from_wit!(i, $types)
        }

        #[allow(dead_code)]
        pub(crate) fn cx_from_wit(cx: t::CallContext) -> crate::CallContext {
            crate::CallContext {
                tenant: cx.tenant,
                now: cx.now,
            }
        }

        #[allow(dead_code)]
        pub(crate) fn cx_into_wit(cx: &crate::CallContext) -> t::CallContext {
            t::CallContext {
                tenant: cx.tenant.clone(),
                now: cx.now,
            }
        }
    };
}
pub(crate) use conversions;
