//! The process-wide wasmtime engine: component model, pooling allocator,
//! epoch interruption driven by a ticker thread, and an on-disk cache of
//! compiled components so a component is compiled once per build, not once
//! per process.

use crate::LoadError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of deadlines (a call
/// is stopped no sooner than its deadline and at most two ticks after
/// it, see `Runtime::ticks`). Spin's default too.
/// Every tick wakes the ticker thread, which takes a core from whatever
/// runs there — at 1 ms that was a thousand interruptions a second of
/// the threads doing the work, for deadlines of a second.
pub const TICK: Duration = Duration::from_millis(10);

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
    cache_dir: Option<PathBuf>,
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
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        spawn_ticker(&engine);
        let cache_dir = match cache_dir {
            Some(dir) => Some(std::path::absolute(&dir).map_err(|e| {
                LoadError::Engine(format!("cache directory {}: {e}", dir.display()))
            })?),
            None => None,
        };
        Ok(Runtime {
            engine,
            limits: Arc::new(limits),
            cache_dir,
        })
    }

    /// Compiles `bytes` (whose SHA-256 is `digest`), or loads the compiled
    /// artifact from the cache directory. Artifacts are stored uncompressed
    /// and memory-mapped when loaded, so a large pre-initialized component
    /// starts in milliseconds and its memory image pages in on demand.
    pub fn compile(&self, bytes: &[u8], digest: &str) -> wasmtime::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes);
        };
        let file = dir.join(format!("{digest}-{}.cwasm", self.compatibility_key()));
        if file.exists() {
            // SAFETY: the file is an artifact this code wrote with
            // `Component::serialize` for this exact engine configuration
            // (the name carries the component's SHA-256 and the engine's
            // compatibility hash), in the user's own cache directory, which
            // is as trusted as the binary itself. wasmtime still checks its
            // header and refuses an incompatible one.
            match unsafe { Component::deserialize_file(&self.engine, &file) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!("recompiling: cached {} is unusable: {e}", file.display()),
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Err(e) = store_artifact(dir, &file, &component) {
            tracing::warn!(
                "cannot cache the compiled component in {}: {e}",
                dir.display()
            );
            return Ok(component);
        }
        // Loaded back from the file just written, as a warm start loads it:
        // the code and the pre-initialized memory images are then mapped
        // from the file, paged in on demand and shared with other
        // processes. The component as compiled would hold them in
        // anonymous memory for the life of the process.
        // SAFETY: as above; the artifact was written by this process, just
        // now, for this engine.
        match unsafe { Component::deserialize_file(&self.engine, &file) } {
            Ok(mapped) => Ok(mapped),
            Err(e) => {
                tracing::warn!(
                    "keeping the compiled component in memory: cached {} is unusable: {e}",
                    file.display()
                );
                Ok(component)
            }
        }
    }

    fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Epoch ticks for a deadline: whole ticks, rounded up, plus one —
    /// the epoch may advance just after the deadline is set, so a call
    /// gets between `n - 1` and `n` ticks, never less than its deadline.
    pub(crate) fn ticks(&self, deadline: Duration) -> u64 {
        (deadline.as_micros().div_ceil(TICK.as_micros())).max(1) as u64 + 1
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

/// Compiled artifacts kept in the cache directory; older ones are removed.
const CACHE_KEEP: usize = 8;

/// Writes a compiled artifact atomically (temporary file, then rename), so a
/// concurrent reader never maps a half-written file, then trims the cache to
/// the [`CACHE_KEEP`] most recently written artifacts.
fn store_artifact(
    dir: &std::path::Path,
    file: &std::path::Path,
    component: &Component,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)?;
    let mut artifacts: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.0));
    for (_, old) in artifacts.into_iter().skip(CACHE_KEEP) {
        // Another process may have removed it already; a mapped file stays
        // valid for whoever has it open.
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks_plus_one() {
        let rt = Runtime::new(Limits::default(), None).unwrap();
        let tick = TICK.as_millis() as u64;
        assert_eq!(rt.ticks(Duration::from_millis(20 * tick)), 21);
        // Not a whole number of ticks: rounded up, never stopped early.
        assert_eq!(rt.ticks(Duration::from_millis(20 * tick + 1)), 22);
        assert_eq!(rt.ticks(Duration::from_micros(10)), 2, "never zero");
    }

    #[test]
    fn a_relative_cache_directory_is_made_absolute() {
        let rt = Runtime::new(Limits::default(), Some(PathBuf::from("rel/cache"))).unwrap();
        assert!(
            rt.cache_dir
                .as_deref()
                .is_some_and(std::path::Path::is_absolute)
        );
    }

    #[test]
    fn digests_are_hex_sha256() {
        assert_eq!(
            crate::digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
