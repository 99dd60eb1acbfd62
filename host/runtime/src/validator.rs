//! The `leadgate:plugin/validator@0.1.0` world on the host side: load a
//! component that claims to implement it, check that it does, and call it.

use crate::engine::Runtime;
use crate::sandbox::Sandbox;
use crate::{CONTRACT_VERSION, CallError, LoadError};
use leadgate_lead as m;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Store, Trap};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "validator",
        // Leads are lowered straight from the host's borrowed strings.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

use bindings::exports::leadgate::plugin::validate as wit;
use bindings::leadgate::plugin::types as t;

/// The export a validate component must have.
pub const EXPORT: &str = "leadgate:plugin/validate@0.1.0";
const WORLD: &str = "leadgate:plugin/validator@0.1.0";

/// A validate component, compiled and linked once, ready to instantiate.
pub struct ValidatorComponent {
    runtime: Runtime,
    pre: bindings::ValidatorPre<Sandbox>,
    path: PathBuf,
    digest: String,
}

impl ValidatorComponent {
    /// Loads and checks the component at `path`.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<ValidatorComponent, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let digest = crate::digest(&bytes);
        let component = runtime
            .compile(&bytes, &digest)
            .map_err(|e| LoadError::Invalid {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })?;
        check_exports(runtime, &component, path)?;
        let mut linker: Linker<Sandbox> = Linker::new(&runtime.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
            let text = format!("{e:#}");
            match text.split('`').nth(1) {
                Some(import) if text.contains("import") => LoadError::UnsupportedImport {
                    path: path.to_path_buf(),
                    import: import.to_string(),
                },
                _ => LoadError::Invalid {
                    path: path.to_path_buf(),
                    reason: text,
                },
            }
        })?;
        let pre = bindings::ValidatorPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
            path: path.to_path_buf(),
            world: WORLD.into(),
            reason: format!("{e:#}"),
        })?;
        Ok(ValidatorComponent {
            runtime: runtime.clone(),
            pre,
            path: path.to_path_buf(),
            digest,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the component file.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// A fresh instance with the tenant's settings (JSON) applied.
    pub fn instantiate(&self, settings: &str) -> Result<ValidatorInstance, CallError> {
        let mut store = Sandbox::store(&self.runtime);
        let deadline = self.runtime.limits.deadline;
        store.set_epoch_deadline(self.runtime.ticks(deadline));
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&self.runtime, &store, e, deadline, Phase::Instantiate))?;
        let opened = bindings
            .leadgate_plugin_validate()
            .validator()
            .call_open(&mut store, settings)
            .map_err(|e| classify(&self.runtime, &store, e, deadline, Phase::Instantiate))?;
        let handle = opened.map_err(CallError::Settings)?;
        Ok(ValidatorInstance {
            runtime: self.runtime.clone(),
            store,
            bindings,
            handle,
            calls: 0,
            name: self.path.display().to_string(),
        })
    }
}

/// Refuses a component that is not a validator of this contract version, with
/// a message that says what it is instead.
fn check_exports(runtime: &Runtime, component: &Component, path: &Path) -> Result<(), LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(&runtime.engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.iter().any(|e| e == EXPORT) {
        return Ok(());
    }
    let wrong = |reason: String| LoadError::WrongWorld {
        path: path.to_path_buf(),
        world: WORLD.into(),
        reason,
    };
    if let Some(other) = exports
        .iter()
        .find(|e| e.starts_with("leadgate:plugin/validate@"))
    {
        let version = other.rsplit('@').next().unwrap_or("?");
        return Err(wrong(format!(
            "it was built against contract version {version}; this host speaks {CONTRACT_VERSION}"
        )));
    }
    if let Some(other) = exports.iter().find(|e| e.starts_with("leadgate:plugin/")) {
        return Err(wrong(format!(
            "it implements `{other}`, a different capability; check which component is configured for which capability"
        )));
    }
    let listed = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports.join(", ")
    };
    Err(wrong(format!(
        "it does not export `{EXPORT}` (it exports {listed})"
    )))
}

/// What was going on when a component failed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Call,
}

/// Turns a wasmtime error into what happened, in words a person can act on:
/// the root cause, plus the last line the component wrote to stderr (a Rust
/// guest's panic message lands there).
fn classify(
    runtime: &Runtime,
    store: &Store<Sandbox>,
    e: wasmtime::Error,
    deadline: Duration,
    phase: Phase,
) -> CallError {
    tracing::debug!("component failure: {e:?}");
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return CallError::Timeout {
            deadline_ms: deadline.as_millis() as u64,
        };
    }
    let root = e.root_cause().to_string();
    if root.contains("forcing trap when growing memory")
        || root.contains("forcing a memory growth failure")
    {
        return CallError::Memory {
            limit_mib: (runtime.limits.memory_bytes >> 20) as u64,
        };
    }
    let message = match last_words(&store.data().stderr()) {
        Some(words) => format!("{root} (component stderr: {words})"),
        None => root,
    };
    match phase {
        Phase::Instantiate => CallError::Instantiate(message),
        Phase::Call => CallError::Trap { message },
    }
}

/// The most telling part of what a component printed: a Rust panic's
/// location and message, else its last line.
fn last_words(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
        return Some(lines[i..lines.len().min(i + 2)].join(" "));
    }
    lines.last().map(|l| (*l).to_string())
}

/// One live instance of a validate component, configured for a tenant.
pub struct ValidatorInstance {
    runtime: Runtime,
    store: Store<Sandbox>,
    bindings: bindings::Validator,
    handle: ResourceAny,
    calls: u32,
    name: String,
}

impl ValidatorInstance {
    /// Validates `leads` in one call. On any error the instance must be
    /// dropped: its state is no longer trustworthy.
    pub fn validate_batch(
        &mut self,
        leads: &[m::Lead],
        now: i64,
    ) -> Result<Vec<m::Validation>, CallError> {
        let deadline = self.arm(leads.len());
        let lists: Vec<Lists<'_>> = leads.iter().map(Lists::of).collect();
        let input: Vec<t::LeadParam<'_>> = leads
            .iter()
            .zip(&lists)
            .map(|(l, x)| lead_param(l, x))
            .collect();
        let cx = t::CallContext {
            tenant: leads.first().map_or("", |l| l.tenant.as_str()),
            now,
        };
        let out = self
            .bindings
            .leadgate_plugin_validate()
            .validator()
            .call_validate_batch(&mut self.store, self.handle, &input, cx)
            .map_err(|e| classify(&self.runtime, &self.store, e, deadline, Phase::Call))?;
        if out.len() != leads.len() {
            return Err(CallError::Protocol {
                sent: leads.len(),
                got: out.len(),
            });
        }
        Ok(out.into_iter().map(validation_from_wit).collect())
    }

    /// Validates one lead.
    pub fn validate(&mut self, lead: &m::Lead, now: i64) -> Result<m::Validation, CallError> {
        let deadline = self.arm(1);
        let cx = t::CallContext {
            tenant: &lead.tenant,
            now,
        };
        let lists = Lists::of(lead);
        self.bindings
            .leadgate_plugin_validate()
            .validator()
            .call_validate(&mut self.store, self.handle, lead_param(lead, &lists), cx)
            .map(validation_from_wit)
            .map_err(|e| classify(&self.runtime, &self.store, e, deadline, Phase::Call))
    }

    /// Starts a call for `leads` leads: sets the deadline (per lead) and
    /// counts the call. Returns the deadline for error messages.
    fn arm(&mut self, leads: usize) -> Duration {
        let n = u32::try_from(leads.max(1)).unwrap_or(u32::MAX);
        let deadline = self.runtime.limits.deadline.saturating_mul(n);
        self.store.set_epoch_deadline(self.runtime.ticks(deadline));
        self.calls += 1;
        deadline
    }

    /// Whether the instance has served its share of calls and should be
    /// replaced by a fresh one.
    pub fn worn_out(&self) -> bool {
        self.calls >= self.runtime.limits.calls_per_instance
    }
}

impl Drop for ValidatorInstance {
    fn drop(&mut self) {
        self.store.data().flush_output(&self.name);
    }
}

/// The list fields of a lead in their borrowed WIT form.
struct Lists<'a> {
    consent: Vec<t::ConsentParam<'a>>,
    external_ids: Vec<t::ExternalIdParam<'a>>,
    custom: Vec<t::CustomFieldParam<'a>>,
}

impl<'a> Lists<'a> {
    fn of(l: &'a m::Lead) -> Lists<'a> {
        Lists {
            consent: l
                .consent
                .iter()
                .map(|c| t::ConsentParam {
                    purpose: &c.purpose,
                    granted: c.granted,
                    recorded_at: c.recorded_at.as_deref(),
                })
                .collect(),
            external_ids: l
                .external_ids
                .iter()
                .map(|e| t::ExternalIdParam {
                    system: &e.system,
                    id: &e.id,
                })
                .collect(),
            custom: l
                .custom
                .iter()
                .map(|c| t::CustomFieldParam {
                    key: &c.key,
                    value: &c.value,
                })
                .collect(),
        }
    }
}

/// A lead as a borrowed WIT parameter: lowered into the component without
/// copying its strings on the host first.
fn lead_param<'a>(l: &'a m::Lead, lists: &'a Lists<'a>) -> t::LeadParam<'a> {
    t::LeadParam {
        id: &l.id,
        tenant: &l.tenant,
        source: match l.source {
            m::Source::Form => t::Source::Form,
            m::Source::Ads => t::Source::Ads,
            m::Source::Import => t::Source::Import,
            m::Source::Crm => t::Source::Crm,
            m::Source::Api => t::Source::Api,
            m::Source::Other => t::Source::Other,
        },
        received_at: l.received_at,
        email: l.email.as_deref(),
        phone: l.phone.as_deref(),
        phone_extension: l.phone_extension.as_deref(),
        first_name: l.first_name.as_deref(),
        last_name: l.last_name.as_deref(),
        full_name: l.full_name.as_deref(),
        job_title: l.job_title.as_deref(),
        company: l.company.as_deref(),
        company_key: l.company_key.as_deref(),
        website: l.website.as_deref(),
        domain: l.domain.as_deref(),
        street: l.street.as_deref(),
        city: l.city.as_deref(),
        postcode: l.postcode.as_deref(),
        region: l.region.as_deref(),
        country: l.country.as_deref(),
        consent: &lists.consent,
        external_ids: &lists.external_ids,
        custom: &lists.custom,
    }
}

fn lead_from_wit(l: t::LeadResult) -> m::Lead {
    m::lead_from_wit!(l, self::bindings::leadgate::plugin::types)
}

fn validation_from_wit(v: wit::Validation) -> m::Validation {
    m::Validation {
        verdict: match v.verdict {
            wit::Verdict::Accept => m::Verdict::Accept,
            wit::Verdict::Reject => m::Verdict::Reject,
            wit::Verdict::Review => m::Verdict::Review,
        },
        lead: lead_from_wit(v.lead),
        issues: v
            .issues
            .into_iter()
            .map(|i| m::issue_from_wit!(i, self::bindings::leadgate::plugin::types))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_is_reported_by_its_message() {
        let stderr = "starting\nthread '<unnamed>' panicked at src/lib.rs:40:22:\nchaos fixture: panic on cue\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            last_words(stderr).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:40:22: chaos fixture: panic on cue")
        );
    }

    #[test]
    fn otherwise_the_last_line_counts_and_silence_is_none() {
        assert_eq!(last_words("a\nb\n\n").as_deref(), Some("b"));
        assert_eq!(last_words(""), None);
        assert_eq!(last_words("note: run with `RUST_BACKTRACE=1`\n"), None);
    }

    #[test]
    fn errors_have_stable_codes() {
        assert_eq!(
            CallError::Timeout { deadline_ms: 5 }.code(),
            "component.timeout"
        );
        assert_eq!(
            CallError::Memory { limit_mib: 1 }.code(),
            "component.memory"
        );
        assert_eq!(
            CallError::Trap {
                message: String::new()
            }
            .code(),
            "component.trap"
        );
        let text = CallError::Memory { limit_mib: 32 }.to_string();
        assert!(text.contains("32 MiB"), "{text}");
    }
}
