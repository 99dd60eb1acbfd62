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

fn kind(k: wit::EventKind) -> s::EventKind {
    match k {
        wit::EventKind::PageView => s::EventKind::PageView,
        wit::EventKind::ContentDownload => s::EventKind::ContentDownload,
        wit::EventKind::EmailOpen => s::EventKind::EmailOpen,
        wit::EventKind::EmailClick => s::EventKind::EmailClick,
        wit::EventKind::FormSubmission => s::EventKind::FormSubmission,
        wit::EventKind::TrialSignup => s::EventKind::TrialSignup,
        wit::EventKind::ProductUsage => s::EventKind::ProductUsage,
        wit::EventKind::SupportInquiry => s::EventKind::SupportInquiry,
        wit::EventKind::Reply => s::EventKind::Reply,
    }
}

fn events(list: Vec<wit::Event>) -> Vec<s::Event> {
    list.into_iter()
        .map(|e| s::Event {
            kind: kind(e.kind),
            at: e.at,
            category: e.category,
            value: e.value,
        })
        .collect()
}

fn subject(x: wit::Subject) -> s::Subject {
    let l: t::Lead = x.lead;
    s::Subject {
        lead: m::lead_from_wit!(l, crate::component::bindings::leadgate::plugin::types),
        attributes: x
            .attributes
            .into_iter()
            .map(|a| (a.name, a.value))
            .collect(),
        events: events(x.events),
        peers: x
            .peers
            .into_iter()
            .map(|p| s::Peer {
                id: p.id,
                job_title: p.job_title,
                seniority: p.seniority,
                events: events(p.events),
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
