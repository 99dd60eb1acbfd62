//! Loading a component for one capability: read, compile (through the
//! cache), check it exports the capability's interface at this contract
//! version, and link it against the sandbox's WASI.

use crate::engine::Runtime;
use crate::sandbox::Sandbox;
use crate::{CONTRACT_VERSION, LoadError};
use std::path::{Path, PathBuf};
use wasmtime::component::{Component, InstancePre, Linker};

/// A capability's interface and world, for loading and error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capability {
    /// e.g. `validate`.
    pub interface: &'static str,
    /// e.g. `validator`.
    pub world: &'static str,
}

impl Capability {
    pub fn export(&self) -> String {
        format!("leadgate:plugin/{}@{CONTRACT_VERSION}", self.interface)
    }

    pub fn world_name(&self) -> String {
        format!("leadgate:plugin/{}@{CONTRACT_VERSION}", self.world)
    }
}

/// A component compiled and linked, ready to instantiate.
struct Linked {
    instance_pre: InstancePre<Sandbox>,
    digest: String,
}

/// A component compiled, checked and linked for one world (`P`: the
/// world's typed `InstancePre` from `bindgen!`), ready to instantiate. Each
/// world names it: [`ValidatorComponent`](crate::ValidatorComponent),
/// [`DeduperComponent`](crate::DeduperComponent),
/// [`EnricherComponent`](crate::EnricherComponent).
pub struct Loaded<P> {
    pub(crate) runtime: Runtime,
    pub(crate) pre: P,
    path: PathBuf,
    digest: String,
}

impl<P> Loaded<P> {
    /// Loads the component at `path` for `cap`, linking WASI and `imports`;
    /// `typed` checks the world's exports and types the result.
    pub(crate) fn new(
        runtime: &Runtime,
        path: &Path,
        cap: Capability,
        imports: HostImports,
        typed: impl FnOnce(InstancePre<Sandbox>) -> wasmtime::Result<P>,
    ) -> Result<Loaded<P>, LoadError> {
        let linked = load(runtime, path, cap, imports)?;
        let pre =
            typed(linked.instance_pre).map_err(|e| wrong_world(path, cap, format!("{e:#}")))?;
        Ok(Loaded {
            runtime: runtime.clone(),
            pre,
            path: path.to_path_buf(),
            digest: linked.digest,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the component file.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// A fresh store for one instance of this component.
    pub(crate) fn session(&self) -> crate::session::Session {
        crate::session::Session::new(&self.runtime, self.path.display().to_string())
    }
}

/// A world's `instantiate`: a fresh store, the component instantiated from
/// its `InstancePre`, and the world's resource opened with the tenant's
/// settings (`$open` reaches the resource from the bindings, e.g.
/// `|b| b.leadgate_plugin_score().scorer()`). Evaluates to
/// `Result<$instance, CallError>`.
macro_rules! instantiate {
    ($loaded:expr, $settings:expr, $instance:ident, |$b:ident| $open:expr) => {{
        let mut session = $loaded.session();
        let $b = $loaded
            .pre
            .instantiate(&mut session.store)
            .map_err(|e| session.failed_to_start(e))?;
        let opened = $open
            .call_open(&mut session.store, $settings)
            .map_err(|e| session.failed_to_start(e))?;
        let handle = opened.map_err(crate::CallError::Settings)?;
        Ok($instance {
            session,
            bindings: $b,
            handle,
        })
    }};
}
pub(crate) use instantiate;

/// Host interfaces a world imports beyond WASI, added to its linker.
pub(crate) type HostImports = fn(&mut Linker<Sandbox>) -> wasmtime::Result<()>;

/// No host imports beyond WASI.
pub(crate) fn wasi_only(_: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    Ok(())
}

/// Loads and checks the component at `path` for `cap`, linking WASI and
/// the world's own host imports.
fn load(
    runtime: &Runtime,
    path: &Path,
    cap: Capability,
    imports: HostImports,
) -> Result<Linked, LoadError> {
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
    check_exports(runtime, &component, path, cap)?;
    let mut linker: Linker<Sandbox> = Linker::new(&runtime.engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| LoadError::Engine(e.to_string()))?;
    imports(&mut linker).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
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
    Ok(Linked {
        instance_pre,
        digest,
    })
}

/// The error for a component whose exports do not match the world.
pub(crate) fn wrong_world(path: &Path, cap: Capability, reason: String) -> LoadError {
    LoadError::WrongWorld {
        path: PathBuf::from(path),
        world: cap.world_name(),
        reason,
    }
}

/// Refuses a component that does not implement `cap` at this contract
/// version, with a message that says what it is instead.
fn check_exports(
    runtime: &Runtime,
    component: &Component,
    path: &Path,
    cap: Capability,
) -> Result<(), LoadError> {
    let export = cap.export();
    let exports: Vec<String> = component
        .component_type()
        .exports(&runtime.engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.contains(&export) {
        return Ok(());
    }
    let family = format!("leadgate:plugin/{}@", cap.interface);
    if let Some(other) = exports.iter().find(|e| e.starts_with(&family)) {
        let version = other.rsplit('@').next().unwrap_or("?");
        return Err(wrong_world(
            path,
            cap,
            format!(
                "it was built against contract version {version}; this host speaks {CONTRACT_VERSION}"
            ),
        ));
    }
    if let Some(other) = exports.iter().find(|e| e.starts_with("leadgate:plugin/")) {
        return Err(wrong_world(
            path,
            cap,
            format!(
                "it implements `{other}`, a different capability; check which component is configured for which capability"
            ),
        ));
    }
    let listed = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports.join(", ")
    };
    Err(wrong_world(
        path,
        cap,
        format!("it does not export `{export}` (it exports {listed})"),
    ))
}
