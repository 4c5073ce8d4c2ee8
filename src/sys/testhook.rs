//! Test hook: deterministic kills at named points, for the tests that
//! prove an interrupted command loses nothing and leaves nothing stuck.
//!
//! When the environment variable `SYNCREPLICA_TEST_CRASH_AT` names the
//! point reached, the process aborts at once (`std::process::abort`, no
//! cleanup, no destructors), as `kill -9` would. Unset (as in every real
//! use) it does nothing. This is the only place that reads the variable.
//!
//! Points (see the callers): `export-after-parts`,
//! `export-before-commit`, `import-after-commit`,
//! `mkreplica-import-before-rename`, `mkreplica-init-before-rename`.

/// The environment variable naming the point to abort at.
pub const CRASH_AT_VAR: &str = "SYNCREPLICA_TEST_CRASH_AT";

/// Aborts the process if `SYNCREPLICA_TEST_CRASH_AT` is `point`.
pub fn crash_point(point: &str) {
    if std::env::var_os(CRASH_AT_VAR).is_some_and(|v| v == point) {
        std::process::abort();
    }
}
