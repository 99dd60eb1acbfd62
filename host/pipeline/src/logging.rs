//! The process's one logging set-up: `tracing` to standard error, filtered
//! by `LEADGATE_LOG` (e.g. `debug`, `leadgate::serve=debug`), as text or
//! as one JSON object a line.

/// Installs the subscriber; `default` is the filter without
/// `LEADGATE_LOG`. A subscriber already installed (tests in one process)
/// is kept.
pub fn init(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEADGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
