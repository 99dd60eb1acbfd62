//! The WebAssembly face of the score capability: exports
//! `leadgate:plugin/score@0.1.0` over the native logic in this crate.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/v0.1.0", "wit"],
        world: "leadgate:score-component/component",
        generate_all,
    });
}

/// Scoring allocates many small strings; talc serves them faster than the
/// default dlmalloc inside WebAssembly.
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

use bindings::exports::leadgate::plugin::score as wit;
use bindings::leadgate::plugin::types as t;
use leadgate_lead as m;
use leadgate_lead::score as s;

struct Component;

impl wit::Guest for Component {
    type Scorer = Scorer;
}

struct Scorer {
    inner: crate::Scorer,
}

/// Events from their columns; an unknown kind code is skipped, a category
/// index out of range is no category.
fn events(x: wit::Events, categories: usize) -> Vec<s::Event> {
    let n = x
        .kinds
        .len()
        .min(x.at.len())
        .min(x.categories.len())
        .min(x.values.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let Some(kind) = s::EventKind::ALL.get(usize::from(x.kinds[i])).copied() else {
            continue;
        };
        let c = x.categories[i];
        out.push(s::Event {
            kind,
            at: x.at[i],
            category: if usize::from(c) <= categories { c } else { 0 },
            value: x.values[i],
        });
    }
    out
}

fn subject(x: wit::Subject) -> s::Subject {
    let l: t::Lead = x.lead;
    let n = x.categories.len();
    s::Subject {
        lead: m::lead_from_wit!(l, crate::component::bindings::leadgate::plugin::types),
        attributes: x
            .attributes
            .into_iter()
            .map(|a| (a.name, a.value))
            .collect(),
        categories: x.categories,
        events: events(x.events, n),
        peers: x
            .peers
            .into_iter()
            .map(|p| s::Peer {
                id: p.id,
                job_title: p.job_title,
                seniority: p.seniority,
                events: events(p.events, n),
            })
            .collect(),
    }
}

impl wit::GuestScorer for Scorer {
    fn open(settings: String) -> Result<wit::Scorer, String> {
        let inner = crate::Scorer::from_json(&settings).map_err(|e| e.to_string())?;
        Ok(wit::Scorer::new(Scorer { inner }))
    }

    fn score(&self, subjects: Vec<wit::Subject>, cx: t::CallContext) -> Vec<wit::Scored> {
        subjects
            .into_iter()
            .map(|x| {
                let r = self.inner.score(&subject(x), cx.now);
                wit::Scored {
                    total: r.total,
                    grade: r.grade,
                    fit: r.fit,
                    engagement: r.engagement,
                    intent: r.intent,
                    probability: r.probability,
                    reasons: r
                        .reasons
                        .into_iter()
                        .map(|r| wit::Reason {
                            code: r.code,
                            factor: r.factor,
                            contribution: r.contribution,
                            detail: r.detail,
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

bindings::export!(Component with_types_in bindings);
