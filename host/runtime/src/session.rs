//! One live component instance's store and bookkeeping, whatever the
//! capability: the per-call deadline, the count of calls served, turning a
//! failure into a [`CallError`], and the component's output flushed to the
//! log when the instance goes.

use crate::CallError;
use crate::engine::Runtime;
use crate::failure::{Phase, classify};
use crate::sandbox::Sandbox;
use std::time::Duration;
use wasmtime::Store;

pub(crate) struct Session {
    pub runtime: Runtime,
    pub store: Store<Sandbox>,
    calls: u32,
    name: String,
}

impl Session {
    /// A fresh store, armed with one deadline for instantiation.
    pub fn new(runtime: &Runtime, name: String) -> Session {
        let mut store = Sandbox::store(runtime);
        store.set_epoch_deadline(runtime.ticks(runtime.limits.deadline));
        Session {
            runtime: runtime.clone(),
            store,
            calls: 0,
            name,
        }
    }

    /// Starts a call worth `units` leads or pairs: sets the deadline (per
    /// unit) and counts the call. Returns the deadline for error messages.
    pub fn arm(&mut self, units: usize) -> Duration {
        let n = u32::try_from(units.max(1)).unwrap_or(u32::MAX);
        let deadline = self.runtime.limits.deadline.saturating_mul(n);
        self.store.set_epoch_deadline(self.runtime.ticks(deadline));
        self.calls += 1;
        deadline
    }

    /// What went wrong, for a failure during a call armed with `deadline`.
    pub fn failed(&self, e: wasmtime::Error, deadline: Duration, phase: Phase) -> CallError {
        classify(&self.runtime, &self.store, e, deadline, phase)
    }

    /// A failure while instantiating or opening.
    pub fn failed_to_start(&self, e: wasmtime::Error) -> CallError {
        self.failed(e, self.runtime.limits.deadline, Phase::Instantiate)
    }

    /// Whether the instance has served its share of calls and should be
    /// replaced by a fresh one.
    pub fn worn_out(&self) -> bool {
        self.calls >= self.runtime.limits.calls_per_instance
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.store.data().flush_output(&self.name);
    }
}
