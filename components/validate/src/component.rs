//! The capability as the SDK sees it: [`Validator`] implements
//! [`leadgate_sdk::Validate`] over the native logic in this crate, and the
//! `wasm32` build exports it as `leadgate:plugin/validate@0.1.0`.

use crate::Settings;
use leadgate_lead::{Lead, Validation};
use leadgate_sdk::{CallContext, Validate};

/// The validate component: the tenant's settings, opened once.
#[derive(Debug, Clone)]
pub struct Validator {
    settings: Settings,
}

impl Validate for Validator {
    fn open(settings: &str) -> Result<Self, String> {
        let settings = Settings::from_json(settings).map_err(|e| e.to_string())?;
        Ok(Validator { settings })
    }

    fn validate(&self, lead: Lead, cx: &CallContext) -> Validation {
        crate::validate_owned(lead, &self.settings, cx.now)
    }

    /// Builds the phone metadata and lists at build time, so a fresh
    /// instance does not.
    fn pre_initialize() {
        crate::warm_up();
    }
}

#[cfg(target_arch = "wasm32")]
leadgate_sdk::export_validate!(Validator);
