//! `leadgate compose`: static composition. Plugs capability components
//! into a component that imports them — the edge component
//! (`components/edge`) and the validate component, say — and writes one
//! component with those imports satisfied, for runtimes that do not compose
//! at load time (`wasmtime serve`, SpinKube) and for CI.
//!
//! Spin does the same at load time from `spin.toml`'s
//! `[component.edge.dependencies]`; both take the plug by its exported
//! interface name, so a customer's own validator is swapped in the same
//! way: point either at its `.wasm`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// What a composition did.
#[derive(Debug)]
pub struct Report {
    /// Per plug: its path and the imports of the socket it satisfied.
    pub plugged: Vec<(PathBuf, Vec<String>)>,
    /// Imports the composed component still has (the runtime provides them).
    pub imports: Vec<String>,
    pub bytes: usize,
}

/// Plugs `plugs` into `socket` and writes the result to `output`.
pub fn compose(socket: &Path, plugs: &[PathBuf], output: &Path) -> Result<Report> {
    if plugs.is_empty() {
        bail!("nothing to plug in: give at least one --plug component");
    }
    let mut graph = CompositionGraph::new();
    let load = |graph: &mut CompositionGraph, name: &str, path: &Path| -> Result<_> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let package = Package::from_bytes(name, None, bytes, graph.types_mut())
            .with_context(|| format!("{} is not a WebAssembly component", path.display()))?;
        graph
            .register_package(package)
            .with_context(|| format!("cannot use {}", path.display()))
    };
    let socket_id = load(&mut graph, "leadgate:socket", socket)?;
    let socket_imports: Vec<String> = graph.types()[graph[socket_id].ty()]
        .imports
        .keys()
        .cloned()
        .collect();
    let mut plugged = Vec::new();
    let mut ids = Vec::new();
    for (i, path) in plugs.iter().enumerate() {
        let id = load(&mut graph, &format!("leadgate:plug{i}"), path)?;
        let exports: Vec<String> = graph.types()[graph[id].ty()]
            .exports
            .keys()
            .filter(|e| socket_imports.contains(e))
            .cloned()
            .collect();
        if exports.is_empty() {
            bail!(
                "{} exports nothing {} imports (it imports: {})",
                path.display(),
                socket.display(),
                socket_imports.join(", ")
            );
        }
        plugged.push((path.clone(), exports));
        ids.push(id);
    }
    wac_graph::plug(&mut graph, ids, socket_id).map_err(|e| {
        anyhow::anyhow!(
            "cannot plug into {}: {e}{}",
            socket.display(),
            std::error::Error::source(&e)
                .map(|s| format!(": {s:#}"))
                .unwrap_or_default()
        )
    })?;
    let bytes = graph
        .encode(EncodeOptions::default())
        .context("cannot encode the composed component")?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(output, &bytes).with_context(|| format!("cannot write {}", output.display()))?;
    // What is left for the runtime to provide, read back from the result.
    let len = bytes.len();
    let mut check = CompositionGraph::new();
    let composed = Package::from_bytes("leadgate:composed", None, bytes, check.types_mut())
        .context("the composed component does not read back")?;
    let imports: Vec<String> = check.types()[composed.ty()]
        .imports
        .keys()
        .cloned()
        .collect();
    Ok(Report {
        plugged,
        imports,
        bytes: len,
    })
}
