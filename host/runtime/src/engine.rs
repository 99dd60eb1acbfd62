//! The process-wide wasmtime engine: component model, pooling allocator,
//! epoch interruption driven by a ticker thread, and an on-disk compilation
//! cache so a component is compiled once per build, not once per process.

use crate::LoadError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

/// How often the epoch advances: the granularity of deadlines.
pub const TICK: Duration = Duration::from_millis(1);

/// Per-call limits applied to every component instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall time a call may take per lead before it is stopped.
    pub deadline: Duration,
    /// Linear memory an instance may use.
    pub memory_bytes: usize,
    /// How many instances may be alive at once (pool size).
    pub max_instances: u32,
    /// Reuse an instance for this many calls before starting a fresh one.
    pub calls_per_instance: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(1000),
            memory_bytes: 128 << 20,
            max_instances: 16,
            calls_per_instance: 10_000,
        }
    }
}

/// The engine plus its limits. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) limits: Arc<Limits>,
}

impl Runtime {
    /// Builds the engine. `cache_dir` enables wasmtime's compilation cache.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Runtime, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(1 << 20);
        // `LEADGATE_PROFILE=perfmap` writes /tmp/perf-PID.map so `perf`
        // can name JIT-compiled component functions.
        if std::env::var_os("LEADGATE_PROFILE").is_some_and(|v| v == "perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let mut pool = PoolingAllocationConfig::default();
        let instances = limits.max_instances.max(1);
        pool.total_component_instances(instances);
        pool.total_core_instances(instances * 16);
        pool.total_memories(instances * 4);
        pool.total_tables(instances * 16);
        pool.max_memories_per_component(8);
        // Slots keep wasmtime's default size (4 GiB of address space, not
        // memory) so compiled code can rely on guard pages instead of bounds
        // checks on every load and store; the memory limit itself is enforced
        // per store by the limiter (see `sandbox.rs`).
        pool.max_component_instance_size(1 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = cache_dir {
            // wasmtime wants an absolute path; a relative one means "from here".
            let dir = std::path::absolute(&dir).map_err(|e| {
                LoadError::Engine(format!("cache directory {}: {e}", dir.display()))
            })?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            let cache = Cache::new(cache).map_err(|e| LoadError::Engine(format!("cache: {e}")))?;
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        spawn_ticker(&engine);
        Ok(Runtime {
            engine,
            limits: Arc::new(limits),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Epoch ticks for a deadline (at least one).
    pub(crate) fn ticks(&self, deadline: Duration) -> u64 {
        (deadline.as_micros() / TICK.as_micros()).max(1) as u64 + 1
    }
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
fn spawn_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("leadgate-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch ticker, deadlines will not fire: {e}");
    }
}
