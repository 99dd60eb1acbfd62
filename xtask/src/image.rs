//! `cargo xtask image`: the container image, built without pulling a base
//! image. The `leadgate` binary, the components and the shared libraries
//! the binary links (the build machine's, from Debian's packages) are
//! staged as a root file system in `target/image/`, and
//! `deploy/Containerfile` (`FROM scratch`) is built from it with `buildah`
//! (or `podman build`), tagged `leadgate:<version>` and `leadgate:latest`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The user the image runs as (no root in the container).
const UID: u32 = 10001;

pub fn image(root: &Path, components: &[(&str, &str)]) -> Result<(), String> {
    let target = root.join("target");
    let stage = target.join("image");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .map_err(|e| format!("cannot clear {}: {e}", stage.display()))?;
    }
    let fs = stage.join("root");
    let binary = target.join("release").join("leadgate");
    copy(&binary, &fs.join("opt/leadgate/bin/leadgate"))?;
    // Debug information off (symbols stay, so a backtrace still names
    // its functions): most of the binary's size.
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg(fs.join("opt/leadgate/bin/leadgate"))
        .status();
    if !stripped.is_ok_and(|s| s.success()) {
        return Err("cannot strip the binary's debug information (binutils' strip)".into());
    }
    // The components sit beside the binary's directory, where leadgate
    // looks for them (`components_dir`). The edge runs on Spin, not in
    // `leadgate serve`: it stays out.
    for name in components
        .iter()
        .map(|(_, name)| *name)
        .filter(|name| *name != "edge")
    {
        let file = format!("{name}.wasm");
        copy(
            &target.join("components").join(&file),
            &fs.join("opt/leadgate/components").join(&file),
        )?;
    }
    for lib in shared_libraries(&binary)? {
        let inside = fs.join(lib.strip_prefix("/").unwrap_or(&lib));
        copy(&lib, &inside)?;
    }
    write(
        &fs.join("etc/passwd"),
        &format!(
            "root:x:0:0:root:/:/sbin/nologin\nleadgate:x:{UID}:{UID}:leadgate:/var/lib/leadgate:/sbin/nologin\n"
        ),
    )?;
    write(
        &fs.join("etc/group"),
        &format!("root:x:0:\nleadgate:x:{UID}:\n"),
    )?;
    write(&fs.join("etc/nsswitch.conf"), "hosts: files dns\n")?;
    // Directories the leadgate user writes: the store (SQLite's default)
    // and temporary files.
    for dir in ["data", "tmp"] {
        std::fs::create_dir_all(stage.join(dir))
            .map_err(|e| format!("cannot create {}: {e}", stage.join(dir).display()))?;
    }
    set_mode(&stage.join("tmp"), 0o1777)?;
    let containerfile = root.join("deploy").join("Containerfile");
    copy(&containerfile, &stage.join("Containerfile"))?;

    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("leadgate:{version}");
    let mut build = builder()?;
    build.args(["-t", &tag, "-t", "leadgate:latest", "-f"]);
    build.arg(stage.join("Containerfile")).arg(&stage);
    crate::run(&mut build)?;
    eprintln!(
        "xtask: built the image {tag} (and leadgate:latest) from {}",
        stage.display()
    );
    Ok(())
}

/// `buildah bud` (chroot isolation: no daemon, no nested namespaces), else
/// `podman build`.
fn builder() -> Result<Command, String> {
    let found = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("buildah") {
        let mut c = Command::new("buildah");
        c.args(["bud", "--isolation", "chroot", "--layers=false"]);
        return Ok(c);
    }
    if found("podman") {
        let mut c = Command::new("podman");
        c.arg("build");
        return Ok(c);
    }
    Err("neither buildah nor podman is installed (Debian: apt-get install buildah)".into())
}

/// The shared libraries `binary` loads, and the loader, as `ldd` lists them.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("cannot run ldd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, or the
        // loader as `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    if libs.is_empty() {
        return Err(format!("ldd listed no libraries for {}", binary.display()));
    }
    Ok(libs)
}

/// Copies a file's contents (a symbolic link's target) to `to`.
fn copy(from: &Path, to: &Path) -> Result<(), String> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
}
