//! The `deduper` world: a [`Dedupe`](crate::Dedupe) exported as
//! `leadgate:plugin/dedupe@0.1.0`.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/v0.1.0", "wit/v0.1.0"],
        world: "leadgate:sdk/deduper@0.1.0",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export",
    });
}

use crate::Dedupe;
use bindings::exports::leadgate::plugin::dedupe as wit;
use std::marker::PhantomData;

super::conversions!(self::bindings::leadgate::plugin::types);

/// The component [`export_dedupe!`](crate::export_dedupe) exports.
#[doc(hidden)]
pub struct Component<T>(PhantomData<T>);

/// An open deduper: the contract's resource over the author's type.
#[doc(hidden)]
pub struct Resource<T>(T);

impl<T: Dedupe> bindings::Guest for Component<T> {
    fn wizer_initialize() {
        T::pre_initialize();
    }
}

impl<T: Dedupe> wit::Guest for Component<T> {
    type Deduper = Resource<T>;
}

impl<T: Dedupe> wit::GuestDeduper for Resource<T> {
    fn open(settings: String) -> Result<wit::Deduper, String> {
        Ok(wit::Deduper::new(Resource(T::open(&settings)?)))
    }

    fn keys(&self, leads: Vec<t::Lead>, cx: t::CallContext) -> Vec<Vec<String>> {
        let cx = cx_from_wit(cx);
        leads
            .into_iter()
            .map(|l| self.0.keys(&lead_from_wit(l), &cx))
            .collect()
    }

    fn compare(
        &self,
        leads: Vec<t::Lead>,
        pairs: Vec<(u32, u32)>,
        explain: bool,
        cx: t::CallContext,
    ) -> Vec<wit::MatchResult> {
        let leads: Vec<m::Lead> = leads.into_iter().map(lead_from_wit).collect();
        self.0
            .compare(&leads, &pairs, explain, &cx_from_wit(cx))
            .into_iter()
            .map(|r| wit::MatchResult {
                probability: r.probability,
                evidence: r
                    .evidence
                    .into_iter()
                    .map(|e| wit::Evidence {
                        field: e.field,
                        level: e.level,
                        similarity: e.similarity,
                        weight: e.weight,
                        detail: e.detail,
                    })
                    .collect(),
            })
            .collect()
    }
}
