//! The process clock and the time formats used in listings.

/// Now, in nanoseconds since the Unix epoch (0 if the clock is set before
/// 1970).
pub fn now_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as i64
}

/// UTC time for listings, e.g. `2026-11-21 22:06:41 UTC`.
pub fn format_time_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}
