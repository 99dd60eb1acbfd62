//! The guest SDK: the one crate a leadgate component depends on.
//!
//! A capability component is plain Rust over the lead record: implement one
//! trait — [`Validate`], [`Dedupe`], [`Enrich`] or [`Score`] — on a type of
//! yours and name it in the matching export macro. The SDK holds the rest:
//! the bindings generated from each contract version in `wit/` (module
//! [`v0_1_0`]), the conversions between the contract's records and
//! [`leadgate_lead`]'s, the pre-initialization hook `leadgate preinit` calls,
//! and a global allocator (feature `talc`, on by default) that serves the
//! many small strings lead processing allocates faster than the default one.
//! Feature `client` adds `v0_1_0::client`, for a component that calls a
//! validate component (the edge).
//!
//! ```ignore
//! use leadgate_sdk::{CallContext, Validate, lead::{Lead, Validation, Verdict}};
//!
//! struct Strict;
//!
//! impl Validate for Strict {
//!     fn open(_settings: &str) -> Result<Self, String> {
//!         Ok(Strict)
//!     }
//!     fn validate(&self, lead: Lead, _cx: &CallContext) -> Validation {
//!         let verdict = if lead.email.is_some() { Verdict::Accept } else { Verdict::Reject };
//!         Validation { verdict, lead, issues: Vec::new() }
//!     }
//! }
//!
//! #[cfg(target_arch = "wasm32")]
//! leadgate_sdk::export_validate!(Strict);
//! ```
//!
//! The traits and the record types compile natively too, so a component's
//! logic is tested with `cargo test` without a WebAssembly runtime; the
//! bindings and the export macros exist in the `wasm32` build only.
//!
//! This crate links nothing of the host: it is what a customer's component
//! and the bundled ones have in common with the contract, and no more.

pub use leadgate_lead as lead;

use leadgate_lead::enrich::{Enrichment, Lookups};
use leadgate_lead::score::{Scored, Subject};
use leadgate_lead::{Lead, Match, Validation};

#[cfg(target_arch = "wasm32")]
pub mod v0_1_0;

#[cfg(all(target_arch = "wasm32", feature = "talc"))]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// What the host says about a call (`record call-context`): whose lead it is
/// and the time the host holds to be now, in milliseconds since the epoch.
/// A component takes the time from here, never from a clock of its own, so a
/// replay gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    pub tenant: String,
    pub now: i64,
}

/// A validate (and normalize) component (`interface validate`).
pub trait Validate: Sized + 'static {
    /// Opens the validator with the tenant's settings (JSON). A refusal
    /// names the setting and the reason; the host reports it and does not
    /// run the component.
    fn open(settings: &str) -> Result<Self, String>;

    /// The verdict on one lead, the lead as normalized, and its issues.
    fn validate(&self, lead: Lead, cx: &CallContext) -> Validation;

    /// Many leads in one call; one validation a lead, in order.
    fn validate_batch(&self, leads: Vec<Lead>, cx: &CallContext) -> Vec<Validation> {
        leads.into_iter().map(|l| self.validate(l, cx)).collect()
    }

    /// Runs once at build time under `leadgate preinit`; what it builds
    /// (tables, parsed lists) is in every fresh instance's memory.
    fn pre_initialize() {}
}

/// A dedupe (matching) component (`interface dedupe`).
pub trait Dedupe: Sized + 'static {
    /// Opens the deduper with the tenant's settings (JSON).
    fn open(settings: &str) -> Result<Self, String>;

    /// The blocking keys of one lead: leads that share a key are compared.
    fn keys(&self, lead: &Lead, cx: &CallContext) -> Vec<String>;

    /// One match a pair, in order; `pairs` index `leads`. With `explain`,
    /// each match carries its per-field evidence.
    fn compare(
        &self,
        leads: &[Lead],
        pairs: &[(u32, u32)],
        explain: bool,
        cx: &CallContext,
    ) -> Vec<Match>;

    /// Runs once at build time under `leadgate preinit`.
    fn pre_initialize() {}
}

/// An enrich component (`interface enrich`); it asks the host's lookups
/// (`interface lookup`) for what it needs.
pub trait Enrich: Sized + 'static {
    /// Opens the enricher with the tenant's settings (JSON).
    fn open(settings: &str) -> Result<Self, String>;

    /// The fields found for one lead, with their sources and confidence.
    fn enrich(&self, lead: &Lead, lookups: &mut dyn Lookups, cx: &CallContext) -> Enrichment;

    /// Runs once at build time under `leadgate preinit`.
    fn pre_initialize() {}
}

/// A score component (`interface score`).
pub trait Score: Sized + 'static {
    /// Opens the scorer with the tenant's settings (JSON), model included.
    fn open(settings: &str) -> Result<Self, String>;

    /// The score of one lead from its record, attributes, activity and
    /// peers, with the reasons behind it.
    fn score(&self, subject: &Subject, cx: &CallContext) -> Scored;

    /// Runs once at build time under `leadgate preinit`.
    fn pre_initialize() {}
}

/// Exports a [`Validate`] implementation as the component's
/// `leadgate:plugin/validate@0.1.0`.
#[macro_export]
macro_rules! export_validate {
    ($t:ty) => {
        const _: () = {
            type LeadgateValidateComponent = $crate::v0_1_0::validate::Component<$t>;
            $crate::v0_1_0::validate::bindings::export!(
                LeadgateValidateComponent with_types_in $crate::v0_1_0::validate::bindings
            );
        };
    };
}

/// Exports a [`Dedupe`] implementation as the component's
/// `leadgate:plugin/dedupe@0.1.0`.
#[macro_export]
macro_rules! export_dedupe {
    ($t:ty) => {
        const _: () = {
            type LeadgateDedupeComponent = $crate::v0_1_0::dedupe::Component<$t>;
            $crate::v0_1_0::dedupe::bindings::export!(
                LeadgateDedupeComponent with_types_in $crate::v0_1_0::dedupe::bindings
            );
        };
    };
}

/// Exports an [`Enrich`] implementation as the component's
/// `leadgate:plugin/enrich@0.1.0`.
#[macro_export]
macro_rules! export_enrich {
    ($t:ty) => {
        const _: () = {
            type LeadgateEnrichComponent = $crate::v0_1_0::enrich::Component<$t>;
            $crate::v0_1_0::enrich::bindings::export!(
                LeadgateEnrichComponent with_types_in $crate::v0_1_0::enrich::bindings
            );
        };
    };
}

/// Exports a [`Score`] implementation as the component's
/// `leadgate:plugin/score@0.1.0`.
#[macro_export]
macro_rules! export_score {
    ($t:ty) => {
        const _: () = {
            type LeadgateScoreComponent = $crate::v0_1_0::score::Component<$t>;
            $crate::v0_1_0::score::bindings::export!(
                LeadgateScoreComponent with_types_in $crate::v0_1_0::score::bindings
            );
        };
    };
}
