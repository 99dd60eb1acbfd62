//! The documentation's links: every relative link in the README, the
//! changelog, BENCHMARKS.md and the book under `docs/` names a file or
//! folder of the repository, every chapter the book's summary lists exists,
//! and every page of the book is in its summary.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the cli package sits two folders below the repository")
}

/// Markdown files of the documentation.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["README.md", "CHANGELOG.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs/ is readable") {
            let path = entry.expect("a docs entry").path();
            // `docs/src/adr` is a link to `docs/adr`: walked once.
            if path.is_symlink() {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The targets of `[text](target)` links outside code blocks and spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans may hold `](`: drop them first.
        let plain: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

#[test]
fn every_relative_link_names_a_file_of_the_repository() {
    let root = root();
    let mut broken = Vec::new();
    let docs = documents(&root);
    assert!(docs.len() > 20, "the book has its pages: {docs:?}");
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("a readable document");
        for target in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
                || target.starts_with('#')
            {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            let base = doc.parent().expect("a document has a folder");
            if !base.join(path).exists() {
                broken.push(format!("{}: {target}", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_book_summary_and_its_pages_agree() {
    let src = root().join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).expect("docs/src/SUMMARY.md");
    let listed: Vec<String> = links(&summary);
    for page in &listed {
        assert!(
            src.join(page).is_file(),
            "SUMMARY.md lists {page}, which is missing"
        );
    }
    let mut unlisted = Vec::new();
    for doc in documents(&root()) {
        let Ok(rel) = doc.strip_prefix(&src) else {
            continue;
        };
        let rel = rel.to_string_lossy().to_string();
        if rel != "SUMMARY.md" && !listed.contains(&rel) {
            unlisted.push(rel);
        }
    }
    assert!(
        unlisted.is_empty(),
        "pages missing from SUMMARY.md: {unlisted:?}"
    );
}

#[test]
fn the_readme_stays_a_guide() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; reference goes in docs/"
    );
    // Its first lines are the two commands.
    assert!(readme.contains("cargo xtask demo"));
    assert!(readme.contains("cargo xtask test"));
}
