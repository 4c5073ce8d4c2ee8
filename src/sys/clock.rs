//! The process clock and the time formats used in listings.

/// Now, in nanoseconds since the Unix epoch (0 if the clock is set before
/// 1970).
pub fn now_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as i64
}

/// Now, as decisions that wait for a period (automatic resend) see it:
/// [`now_ns`], moved forward by the test hook's clock shift
/// ([`crate::sys::testhook::clock_shift_ns`]) when a test sets one.
pub fn now_ns_for_waiting() -> i64 {
    now_ns().saturating_add(crate::sys::testhook::clock_shift_ns())
}

/// Now, exactly, for operation and packet time stamps.
pub fn now() -> packet_format::ops::Timestamp {
    packet_format::ops::Timestamp::now()
}

/// A file time (seconds and nanoseconds since the Unix epoch, as `stat`
/// gives them) in nanoseconds, saturating: times before 1677 or after 2262
/// become the nearest representable instant instead of wrapping. Only for
/// the scan's local stat comparisons, where a saturated time still differs
/// from other versions of the file in ctime, inode or size; what travels
/// is exact ([`now`], `tree::scan::file_mtime`).
pub fn file_time_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// UTC time for JSON listings, RFC 3339, e.g. `2026-11-21T22:06:41Z`.
pub fn rfc3339_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// UTC time for listings, e.g. `2026-11-21 22:06:41 UTC`.
pub fn format_time_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}
