//! What one component instance lives in: a [`Store`] with a minimal WASI
//! context (no preopened directories, no network, no environment, a frozen
//! clock, captured stdout/stderr) and a memory limiter.

use crate::engine::Runtime;
use leadgate_lead::enrich::Lookups;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Bytes of a component's stdout/stderr kept per instance.
const OUTPUT_CAPACITY: usize = 64 * 1024;

/// The host state of one instance.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    stderr: MemoryOutputPipe,
    stdout: MemoryOutputPipe,
    /// What answers an enrich component's `lookup` imports during a call
    /// (set by the host for the call's duration; `None` outside one).
    pub(crate) lookups: Option<Box<dyn Lookups + Send>>,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The clock a component sees: always the Unix epoch. "Now" is passed in.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl Sandbox {
    pub fn new(runtime: &Runtime) -> Sandbox {
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .stdout(stdout.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .insecure_random_seed(0x6c65_6164_6761_7465)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(runtime.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            limits,
            stderr,
            stdout,
            lookups: None,
        }
    }

    /// Creates a store for one instance with limits installed.
    pub fn store(runtime: &Runtime) -> Store<Sandbox> {
        let mut store = Store::new(&runtime.engine, Sandbox::new(runtime));
        store.limiter(|s| &mut s.limits);
        store
    }

    /// Moves what the component printed into the host's log.
    pub fn flush_output(&self, component: &str) {
        for (stream, pipe) in [("stderr", &self.stderr), ("stdout", &self.stdout)] {
            let bytes = pipe.contents();
            if !bytes.is_empty() {
                for line in String::from_utf8_lossy(&bytes).lines() {
                    tracing::warn!(component, stream, "{line}");
                }
            }
        }
    }

    /// Everything the component wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}
