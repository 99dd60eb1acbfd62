//! The capability as the SDK sees it: [`Enricher`](crate::Enricher)
//! implements [`leadgate_sdk::Enrich`], answered by the host's lookups, and
//! the `wasm32` build exports it as `leadgate:plugin/enrich@0.1.0`.

use crate::Enricher;
use leadgate_lead::Lead;
use leadgate_lead::enrich::{Enrichment, Lookups};
use leadgate_sdk::{CallContext, Enrich};

impl Enrich for Enricher {
    fn open(settings: &str) -> Result<Self, String> {
        Enricher::from_json(settings).map_err(|e| e.to_string())
    }

    fn enrich(&self, lead: &Lead, lookups: &mut dyn Lookups, _cx: &CallContext) -> Enrichment {
        Enricher::enrich(self, lead, lookups)
    }
}

#[cfg(target_arch = "wasm32")]
leadgate_sdk::export_enrich!(Enricher);
