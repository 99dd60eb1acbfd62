//! The WebAssembly face of the dedupe capability: exports
//! `leadgate:plugin/dedupe@0.1.0` over the native logic in this crate.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/v0.1.0", "wit"],
        world: "leadgate:dedupe-component/component",
        generate_all,
    });
}

/// Matching allocates many small strings (folded names, keys); talc serves
/// them faster than the default dlmalloc inside WebAssembly.
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

use bindings::exports::leadgate::plugin::dedupe as wit;
use bindings::leadgate::plugin::types as t;
use leadgate_lead as m;

struct Component;

impl wit::Guest for Component {
    type Deduper = Deduper;
}

struct Deduper {
    inner: crate::Deduper,
}

fn from_wit(l: t::Lead) -> m::Lead {
    m::lead_from_wit!(l, crate::component::bindings::leadgate::plugin::types)
}

impl wit::GuestDeduper for Deduper {
    fn open(settings: String) -> Result<wit::Deduper, String> {
        let inner = crate::Deduper::from_json(&settings).map_err(|e| e.to_string())?;
        Ok(wit::Deduper::new(Deduper { inner }))
    }

    fn keys(&self, leads: Vec<t::Lead>, _cx: t::CallContext) -> Vec<Vec<String>> {
        leads
            .into_iter()
            .map(|l| self.inner.keys(&from_wit(l)))
            .collect()
    }

    fn compare(
        &self,
        leads: Vec<t::Lead>,
        pairs: Vec<(u32, u32)>,
        explain: bool,
        _cx: t::CallContext,
    ) -> Vec<wit::MatchResult> {
        let leads: Vec<m::Lead> = leads.into_iter().map(from_wit).collect();
        self.inner
            .compare(&leads, &pairs, explain)
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

bindings::export!(Component with_types_in bindings);
