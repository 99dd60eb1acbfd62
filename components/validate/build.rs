//! Compiles the domain lists into sorted static arrays, so the component does
//! no parsing or hashing when a fresh instance starts: a lookup is a binary
//! search over data that lives in the binary's read-only section.
//!
//! - disposable domains: the `mailchecker` crate's list (refresh with
//!   `cargo update -p mailchecker`);
//! - free-mail providers: `../shared/lead/data/free-mail.txt` (the shared list);
//!   role-account local parts: `data/role-accounts.txt` here.

use std::{env, fs, io::Write, path::PathBuf};

fn write_list(out: &mut impl Write, name: &str, mut items: Vec<String>) -> std::io::Result<()> {
    items
        .iter_mut()
        .for_each(|s| *s = s.trim().to_ascii_lowercase());
    items.retain(|s| !s.is_empty() && !s.starts_with('#'));
    items.sort();
    items.dedup();
    writeln!(out, "pub static {name}: &[&str] = &[")?;
    for item in &items {
        writeln!(out, "    {item:?},")?;
    }
    writeln!(out, "];")
}

fn read_lines(path: &str) -> Vec<String> {
    println!("cargo::rerun-if-changed={path}");
    match fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) => panic!("cannot read {path}: {e}"),
    }
}

fn main() -> std::io::Result<()> {
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(std::io::Error::other)?);
    let mut out = fs::File::create(out_dir.join("lists.rs"))?;
    let disposable = mailchecker::blacklist()
        .into_iter()
        .map(str::to_string)
        .collect();
    write_list(&mut out, "DISPOSABLE", disposable)?;
    write_list(
        &mut out,
        "FREE_MAIL",
        read_lines("../shared/lead/data/free-mail.txt"),
    )?;
    write_list(
        &mut out,
        "ROLE_ACCOUNTS",
        read_lines("data/role-accounts.txt"),
    )?;
    Ok(())
}
