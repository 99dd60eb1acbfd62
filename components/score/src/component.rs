//! The capability as the SDK sees it: [`Scorer`](crate::Scorer) implements
//! [`leadgate_sdk::Score`], and the `wasm32` build exports it as
//! `leadgate:plugin/score@0.1.0`.

use crate::Scorer;
use leadgate_lead::score::{Scored, Subject};
use leadgate_sdk::{CallContext, Score};

impl Score for Scorer {
    fn open(settings: &str) -> Result<Self, String> {
        Scorer::from_json(settings).map_err(|e| e.to_string())
    }

    fn score(&self, subject: &Subject, cx: &CallContext) -> Scored {
        Scorer::score(self, subject, cx.now)
    }
}

#[cfg(target_arch = "wasm32")]
leadgate_sdk::export_score!(Scorer);
