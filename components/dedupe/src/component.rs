//! The capability as the SDK sees it: [`Deduper`](crate::Deduper)
//! implements [`leadgate_sdk::Dedupe`], and the `wasm32` build exports it
//! as `leadgate:plugin/dedupe@0.1.0`.

use crate::Deduper;
use leadgate_lead::{Lead, Match};
use leadgate_sdk::{CallContext, Dedupe};

impl Dedupe for Deduper {
    fn open(settings: &str) -> Result<Self, String> {
        Deduper::from_json(settings).map_err(|e| e.to_string())
    }

    fn keys(&self, lead: &Lead, _cx: &CallContext) -> Vec<String> {
        Deduper::keys(self, lead)
    }

    fn compare(
        &self,
        leads: &[Lead],
        pairs: &[(u32, u32)],
        explain: bool,
        _cx: &CallContext,
    ) -> Vec<Match> {
        Deduper::compare(self, leads, pairs, explain)
    }
}

#[cfg(target_arch = "wasm32")]
leadgate_sdk::export_dedupe!(Deduper);
