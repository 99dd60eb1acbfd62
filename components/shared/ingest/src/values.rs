//! Parsing typed values out of text cells: timestamps, consent flags.

/// Milliseconds since the epoch from RFC 3339, a date (midnight UTC), or
/// Unix seconds / milliseconds.
pub fn timestamp_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        // Ten digits or fewer: seconds; more: milliseconds.
        return Some(if n.abs() < 100_000_000_000 {
            n * 1000
        } else {
            n
        });
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_millisecond());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_millisecond());
    }
    None
}

/// A yes/no cell.
pub fn flag(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "on" | "opt-in" | "optin" | "opted in" | "granted" | "x" => {
            Some(true)
        }
        "0" | "false" | "no" | "n" | "off" | "opt-out" | "optout" | "opted out" | "denied"
        | "withdrawn" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_common_shapes() {
        assert_eq!(timestamp_ms("1700000000"), Some(1_700_000_000_000));
        assert_eq!(timestamp_ms("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(
            timestamp_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            timestamp_ms("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(timestamp_ms("2023-11-14 22:13:20"), Some(1_700_000_000_000));
        assert_eq!(timestamp_ms("2023-11-14"), Some(1_699_920_000_000));
        assert_eq!(timestamp_ms("last tuesday"), None);
    }

    #[test]
    fn flags() {
        assert_eq!(flag(" Yes "), Some(true));
        assert_eq!(flag("opt-out"), Some(false));
        assert_eq!(flag("maybe"), None);
    }
}
