//! leadgate at the edge: the component `spin.toml` deploys for form intake
//! and CRM webhooks.
//!
//! It does what must happen before a submission leaves the edge, and
//! nothing the core owns:
//!
//! - normalize and validate each submission with the *same* validate
//!   component the host runs (imported as `leadgate:plugin/validate@0.1.0`
//!   and composed in: through `spin.toml`'s dependencies under Spin, or
//!   statically with `leadgate compose` for `wasmtime serve`), answering
//!   422 with field errors a form can show;
//! - verify webhook signatures with the host's own code
//!   (`leadgate-signature`);
//! - forward what passes to the core (`leadgate serve`) with the tenant's
//!   key and an idempotency key, retrying inside the request's time budget,
//!   and answer 2xx only when the core accepted it — otherwise 503 with
//!   `Retry-After`, so the form or the CRM delivers again and nothing is
//!   lost.
//!
//! Configuration comes from environment variables only ([`config`]), which
//! both Spin (`environment` in `spin.toml`, `spin up --env`) and `wasmtime
//! serve --env` provide. The modules here are plain Rust, tested natively;
//! the WASI HTTP face (`component`) exists only in the WebAssembly build.

pub mod config;
pub mod intake;
pub mod retry;

#[cfg(target_arch = "wasm32")]
mod component;

/// An answer that is not the core's: status, machine code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds the sender should wait before delivering again (503s).
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503: the submission was not taken; deliver it again later.
    pub fn unavailable(code: &'static str, message: impl Into<String>, seconds: u64) -> Refusal {
        Refusal {
            retry_after: Some(seconds),
            ..Refusal::new(503, code, message)
        }
    }

    /// The JSON body: `{"error": {"code", "message"}}`, as the core answers.
    pub fn body(&self) -> String {
        serde_json::json!({"error": {"code": self.code, "message": self.message}}).to_string()
    }
}
