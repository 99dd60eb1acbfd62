//! Build-time pre-initialization with wizer: instantiate a component, run its
//! `wizer-initialize` export (which builds lazily initialized tables such as
//! phone metadata), and snapshot the resulting memory into a new component.
//! A fresh instance of the snapshot starts with that work already done.

use crate::engine::Runtime;
use crate::sandbox::Sandbox;
use wasmtime::component::{Component, Linker};
use wasmtime_wizer::Wizer;

/// The export wizer calls.
pub const INIT_EXPORT: &str = "wizer-initialize";

/// Errors of [`preinit`].
#[derive(Debug, thiserror::Error)]
pub enum PreinitError {
    #[error("not a valid component: {0}")]
    Invalid(String),
    #[error("pre-initialization failed: {0}")]
    Wizer(String),
}

/// Whether the component exports the pre-initialization hook.
pub fn has_init(runtime: &Runtime, wasm: &[u8]) -> Result<bool, PreinitError> {
    let component = Component::new(&runtime.engine, wasm)
        .map_err(|e| PreinitError::Invalid(format!("{e:#}")))?;
    let found = component
        .component_type()
        .exports(&runtime.engine)
        .any(|(name, _)| name == INIT_EXPORT);
    Ok(found)
}

/// Snapshots `wasm` after running its init export. WASI is linked (with the
/// same sandbox as at run time) because language runtimes touch it while
/// initializing; any other import (an enricher's `lookup`) traps if called,
/// since at build time there is no host to answer it.
pub fn preinit(runtime: &Runtime, wasm: &[u8]) -> Result<Vec<u8>, PreinitError> {
    let mut store = Sandbox::store(runtime);
    store.set_epoch_deadline(runtime.ticks(std::time::Duration::from_secs(120)));
    let mut wizer = Wizer::new();
    wizer.init_func(INIT_EXPORT);
    // The component-level export lifts the core function, so it must stay.
    wizer.keep_init_func(true);
    let run = wizer.run_component(&mut store, wasm, async |store, component| {
        let mut linker: Linker<Sandbox> = Linker::new(store.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        trap_host_imports(&mut linker, component)?;
        linker.instantiate(store, component)
    });
    block_on(run)
        .map(|(snapshot, _results)| snapshot)
        .map_err(|e| PreinitError::Wizer(format!("{e:#}")))
}

/// Defines every function the component imports from outside WASI (an
/// enricher's `lookup`) as one that traps: at build time there is no host
/// to answer, and an init that asks fails with the import's name.
fn trap_host_imports(linker: &mut Linker<Sandbox>, component: &Component) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let engine = linker.engine().clone();
    for (name, item) in component.component_type().imports(&engine) {
        if name.starts_with("wasi:") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut inst = linker.instance(name)?;
        for (func, item) in instance.exports(&engine) {
            if let ComponentItem::ComponentFunc(_) = item.ty {
                let what = format!("{name}#{func}");
                inst.func_new(func, move |_, _, _, _| {
                    Err(wasmtime::format_err!(
                        "{what} was called during pre-initialization, where the host answers nothing"
                    ))
                })?;
            }
        }
    }
    Ok(())
}

/// Drives a future that never waits on I/O (wizer's API is async only so it
/// can serve async embedders; here every step completes synchronously).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}
