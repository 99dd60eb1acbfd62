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

/// A capability world: its generated `bindings` (with the export macro the
/// crate's `export_*!` macros call), the conversions, and the component
/// and resource types the generated traits are implemented on. `$world` is
/// the SDK world, `$iface` the interface it exports, `$trait` the SDK's
/// trait, `$resource` the contract's resource.
macro_rules! capability {
    ($world:literal, $iface:ident, $trait:ident, $resource:ident) => {
        #[doc(hidden)]
        pub mod bindings {
            wit_bindgen::generate!({
                path: ["../../wit/v0.1.0", "wit/v0.1.0"],
                world: $world,
                generate_all,
                pub_export_macro: true,
                export_macro_name: "export",
            });
        }

        use crate::$trait;
        use bindings::exports::leadgate::plugin::$iface as wit;

        super::conversions!(self::bindings::leadgate::plugin::types);

        /// The component the crate's export macro exports.
        #[doc(hidden)]
        pub struct Component<T>(std::marker::PhantomData<T>);

        /// An open instance of the contract's resource over the author's type.
        #[doc(hidden)]
        pub struct Resource<T>(T);

        impl<T: $trait> bindings::Guest for Component<T> {
            fn wizer_initialize() {
                T::pre_initialize();
            }
        }

        impl<T: $trait> wit::Guest for Component<T> {
            type $resource = Resource<T>;
        }
    };
}
pub(crate) use capability;

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
