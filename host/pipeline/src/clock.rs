//! The host's clock: "now" as milliseconds since the Unix epoch (UTC), the
//! unit of every stored timestamp and of the components' call context.

/// Milliseconds since the Unix epoch; 0 if the system clock is before it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
