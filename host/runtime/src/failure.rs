//! Turning a wasmtime error into what happened, in words a person can act
//! on: a deadline, the memory limit, or a trap with the component's own last
//! words (a Rust guest's panic message).

use crate::CallError;
use crate::engine::Runtime;
use crate::sandbox::Sandbox;
use std::time::Duration;
use wasmtime::{Store, Trap};

/// What was going on when a component failed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Instantiate,
    Call,
}

/// Turns a wasmtime error into what happened, in words a person can act on:
/// the root cause, plus the last line the component wrote to stderr (a Rust
/// guest's panic message lands there).
pub(crate) fn classify(
    runtime: &Runtime,
    store: &Store<Sandbox>,
    e: wasmtime::Error,
    deadline: Duration,
    phase: Phase,
) -> CallError {
    tracing::debug!("component failure: {e:?}");
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return CallError::Timeout {
            deadline_ms: deadline.as_millis() as u64,
        };
    }
    let root = e.root_cause().to_string();
    if root.contains("forcing trap when growing memory")
        || root.contains("forcing a memory growth failure")
    {
        return CallError::Memory {
            limit_mib: (runtime.limits.memory_bytes >> 20) as u64,
        };
    }
    let message = match last_words(&store.data().stderr()) {
        Some(words) => format!("{root} (component stderr: {words})"),
        None => root,
    };
    match phase {
        Phase::Instantiate => CallError::Instantiate(message),
        Phase::Call => CallError::Trap { message },
    }
}

/// The most telling part of what a component printed: a Rust panic's
/// location and message, else its last line.
fn last_words(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
        return Some(lines[i..lines.len().min(i + 2)].join(" "));
    }
    lines.last().map(|l| (*l).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_is_reported_by_its_message() {
        let stderr = "starting\nthread '<unnamed>' panicked at src/lib.rs:40:22:\nchaos fixture: panic on cue\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            last_words(stderr).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:40:22: chaos fixture: panic on cue")
        );
    }

    #[test]
    fn otherwise_the_last_line_counts_and_silence_is_none() {
        assert_eq!(last_words("a\nb\n\n").as_deref(), Some("b"));
        assert_eq!(last_words(""), None);
        assert_eq!(last_words("note: run with `RUST_BACKTRACE=1`\n"), None);
    }

    #[test]
    fn errors_have_stable_codes() {
        assert_eq!(
            CallError::Timeout { deadline_ms: 5 }.code(),
            "component.timeout"
        );
        assert_eq!(
            CallError::Memory { limit_mib: 1 }.code(),
            "component.memory"
        );
        assert_eq!(
            CallError::Trap {
                message: String::new()
            }
            .code(),
            "component.trap"
        );
        let text = CallError::Memory { limit_mib: 32 }.to_string();
        assert!(text.contains("32 MiB"), "{text}");
    }
}
