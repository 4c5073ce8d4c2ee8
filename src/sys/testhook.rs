//! Test hook: deterministic kills at named points, for the tests that
//! prove an interrupted command loses nothing and leaves nothing stuck.
//!
//! When the environment variable `SYNCREPLICA_TEST_CRASH_AT` names the
//! point reached, the process aborts at once (`std::process::abort`, no
//! cleanup, no destructors), as `kill -9` would. Unset (as in every real
//! use) it does nothing. This is the only place that reads the variable.
//!
//! Points (see the callers): `export-writing` (a part file open),
//! `export-after-parts`,
//! `export-before-commit`, `apply-after-commit` (an import's batch is
//! committed, none of its disk steps run), `apply-exchange-before-swap`
//! and `apply-exchange-after-swap` (a file replaced in one step,
//! `RENAME_EXCHANGE`: its marker written, before and after the swap),
//! `import-after-commit`,
//! `mkreplica-import-before-rename`, `mkreplica-init-before-rename`.
//!
//! Pauses, for tests that must act while a command is midway (send it a
//! signal, change a file): when `SYNCREPLICA_TEST_PAUSE_AT` names the point
//! reached and `SYNCREPLICA_TEST_PAUSE_MARKER` names a file, the process
//! creates that file (holding its pid) and waits until the test removes it
//! or a signal asks the process to stop. Points: `export-writing` (an
//! update export that has written its first operation, a creation export
//! its first file's content; both have their first part file open),
//! `scan-after-read:NAME` (a scan has read a file named NAME, and not yet
//! checked whether it changed meanwhile; [`pause_after_reading`]),
//! `apply-after-displacing:PATH` (an import has taken the version it
//! replaces at PATH from the name; [`pause_at_path`]),
//! `lspacket-listed:BAY` (`lspacket` has listed the packets of a storage
//! bay, outgoing, incoming or return, and read none of them yet).
//!
//! A forced filesystem: when `SYNCREPLICA_TEST_FOLD` is set, its words
//! (`case`, `unicode`, comma-separated; empty or `none` for neither) replace
//! the probe of how the replica's filesystem compares names, so the tests
//! can act out a case- or normalisation-folding filesystem (exFAT, vfat,
//! APFS) on the ones they have. Nothing is cached from it.

/// A clock moved forward, for the tests of waiting periods (automatic
/// resend after `resend_after`): `SYNCREPLICA_TEST_CLOCK_SHIFT` holds
/// whole seconds added to the time those decisions take as now
/// ([`crate::sys::clock::now_ns_for_waiting`]), so a test need not sleep.
/// Nothing else sees it: file and operation times stay true.
pub const CLOCK_SHIFT_VAR: &str = "SYNCREPLICA_TEST_CLOCK_SHIFT";

/// [`CLOCK_SHIFT_VAR`] in nanoseconds; 0 when unset or not a number.
pub fn clock_shift_ns() -> i64 {
    std::env::var(CLOCK_SHIFT_VAR)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .map_or(0, |secs| secs.saturating_mul(1_000_000_000))
}

/// How long a step runs before its progress line is drawn, in
/// milliseconds (`SYNCREPLICA_TEST_PROGRESS_AFTER_MS`; `0` draws it at
/// once), for the tests that look at progress lines of short steps.
pub const PROGRESS_AFTER_VAR: &str = "SYNCREPLICA_TEST_PROGRESS_AFTER_MS";

/// [`PROGRESS_AFTER_VAR`], or `None` when unset or not a number.
pub fn progress_after() -> Option<std::time::Duration> {
    std::env::var(PROGRESS_AFTER_VAR)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
}

/// The environment variable naming a file that [`count`] appends to.
pub const COUNTS_VAR: &str = "SYNCREPLICA_TEST_COUNTS";

/// When `SYNCREPLICA_TEST_COUNTS` names a file: appends `NAME N` to it, so
/// that a test can check how much work a step did (rows read, not time).
pub fn count(name: &str, n: u64) {
    if let Some(file) = std::env::var_os(COUNTS_VAR) {
        use std::io::Write;
        if let Ok(mut out) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
        {
            let _ = writeln!(out, "{name} {n}");
        }
    }
}

/// The environment variable naming the point to abort at.
pub const CRASH_AT_VAR: &str = "SYNCREPLICA_TEST_CRASH_AT";

/// Aborts the process if `SYNCREPLICA_TEST_CRASH_AT` is `point`.
pub fn crash_point(point: &str) {
    if std::env::var_os(CRASH_AT_VAR).is_some_and(|v| v == point) {
        std::process::abort();
    }
}

/// The environment variable naming the point to pause at.
pub const PAUSE_AT_VAR: &str = "SYNCREPLICA_TEST_PAUSE_AT";
/// The environment variable naming the marker file of a pause.
pub const PAUSE_MARKER_VAR: &str = "SYNCREPLICA_TEST_PAUSE_MARKER";

/// If `SYNCREPLICA_TEST_PAUSE_AT` is `point`: writes the marker file and
/// waits until it is removed or `stop` says a signal arrived.
pub fn pause_point(point: &str, stop: &crate::sys::stop::StopFlag) {
    if std::env::var_os(PAUSE_AT_VAR).is_none_or(|v| v != point) {
        return;
    }
    let Some(marker) = std::env::var_os(PAUSE_MARKER_VAR) else {
        return;
    };
    let marker = std::path::PathBuf::from(marker);
    let temp = marker.with_extension("writing");
    // Written whole, then renamed: the test never sees half a marker.
    if std::fs::write(&temp, std::process::id().to_string())
        .and_then(|()| std::fs::rename(&temp, &marker))
        .is_err()
    {
        return;
    }
    while marker.exists() && stop.signal().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The pause point `scan-after-read:NAME` for the file at `path` (NAME
/// its file name): a test changes the file there, as a writer racing the
/// scan would.
pub fn pause_after_reading(path: &std::path::Path) {
    let Some(wanted) = std::env::var_os(PAUSE_AT_VAR) else {
        return;
    };
    let Some(name) = path.file_name() else {
        return;
    };
    let mut point = std::ffi::OsString::from("scan-after-read:");
    point.push(name);
    if wanted == point {
        pause_point(&point.to_string_lossy(), &crate::sys::stop::StopFlag::new());
    }
}

/// The pause point `PREFIX` + the replica-relative `rel` (e.g.
/// `apply-after-displacing:d/f`: an import has taken the version it
/// replaces from the name, and not yet settled it).
pub fn pause_at_path(prefix: &str, rel: &[u8]) {
    let Some(wanted) = std::env::var_os(PAUSE_AT_VAR) else {
        return;
    };
    let mut point = std::ffi::OsString::from(prefix);
    point.push(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rel));
    if wanted == point {
        pause_point(&point.to_string_lossy(), &crate::sys::stop::StopFlag::new());
    }
}

/// The environment variable that forces the answer of the folding probe.
pub const FOLD_VAR: &str = "SYNCREPLICA_TEST_FOLD";

/// `Some((folds_case, folds_unicode))` when `SYNCREPLICA_TEST_FOLD` is
/// set; other words than `case`, `unicode` and `none` are ignored.
pub fn forced_folding() -> Option<(bool, bool)> {
    let value = std::env::var(FOLD_VAR).ok()?;
    let words: Vec<&str> = value.split(',').map(str::trim).collect();
    Some((words.contains(&"case"), words.contains(&"unicode")))
}
