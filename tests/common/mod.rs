//! What the integration test binaries share: the built components and the
//! real `leadgate` binary run in a test's own directory. Not every test
//! binary uses every helper.

#![allow(dead_code)]

pub mod core;
pub mod crm;
pub mod pg;
pub mod store;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The components `cargo xtask build` made.
pub fn components() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/components");
    assert!(
        dir.join("validate.wasm").exists() && dir.join("fixtures/chaos.wasm").exists(),
        "components are not built: run `cargo xtask build` (or `cargo xtask test`)"
    );
    dir
}

/// `leadgate` in `dir`, with the built components and no configuration
/// from the environment. Its store is the configuration's or `--db`'s; on a
/// PostgreSQL run (`store::on_postgres`) a command without `--db` gets the
/// test's database `s.db` in place of the configuration's file.
pub fn leadgate(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_leadgate"));
    c.current_dir(dir)
        .env("LEADGATE_COMPONENTS", components())
        .env_remove("LEADGATE_CONFIG")
        .env_remove("LEADGATE_DB");
    if store::on_postgres() {
        c.env("LEADGATE_DB", store::location("s.db"));
    }
    c
}

/// Runs `leadgate` in `dir` with `args`; it must succeed.
pub fn ok(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = leadgate(dir).args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fake HTTP server's socket on loopback, and the runtime that will
/// serve it.
pub struct Loopback {
    pub url: String,
    listener: tokio::net::TcpListener,
    runtime: tokio::runtime::Runtime,
}

impl Loopback {
    pub fn bind() -> Loopback {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Loopback {
            url,
            listener,
            runtime,
        }
    }

    /// Serves `app` until the returned runtime is dropped.
    pub fn serve(self, app: axum::Router) -> tokio::runtime::Runtime {
        let listener = self.listener;
        self.runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        self.runtime
    }
}
