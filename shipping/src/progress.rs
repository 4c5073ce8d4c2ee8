//! Progress of long steps, in bytes, as the libraries report it and a
//! program chooses to show it (syncreplica: a bar on a terminal, nothing
//! in pipes and logs).
//!
//! A facade, like the `log` crate's: the code that reads, hashes, copies
//! or uploads bytes calls [`phase`] and [`advance`] wherever it is, with no
//! progress argument threaded through every layer between it and the
//! command; a program that wants to show progress [`install`]s one
//! [`Meter`] at start-up. Without one, every call costs a load of an
//! unset `OnceLock` and does nothing. It lives in this crate, the lowest
//! one of the workspace that copies bytes (uploads, deliveries), so that
//! syncreplica's scan, export, import and shipping report to one meter.

use std::sync::OnceLock;

/// What is counted in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes read, hashed, written or sent.
    Bytes,
    /// Files found (a tree walk, whose byte count is not known yet).
    Files,
}

/// Shows progress. Phases follow one another, never nest: a new phase
/// replaces the one shown.
pub trait Meter: Send + Sync {
    /// A phase starts: `what` says what it does ("hashing changed files"),
    /// `total` how many units it will count (`None`: not known).
    fn start(&self, what: &str, unit: Unit, total: Option<u64>);
    /// `done` more units of the current phase are finished.
    fn advance(&self, done: u64);
    /// The current phase goes on under another name (the part of a
    /// packet now being checked), its count kept.
    fn relabel(&self, _what: &str) {}
    /// The current phase is over: whatever showed it goes away.
    fn finish(&self);
}

static METER: OnceLock<Box<dyn Meter>> = OnceLock::new();

/// Installs the process's meter. Only the first call counts (a second one
/// returns `false`); call it before any work starts.
pub fn install(meter: Box<dyn Meter>) -> bool {
    METER.set(meter).is_ok()
}

/// Starts a phase (see [`Meter::start`]); it ends when the returned guard
/// is dropped, on success and error alike.
#[must_use = "the phase ends when the guard is dropped"]
pub fn phase(what: &str, unit: Unit, total: Option<u64>) -> Phase {
    if let Some(meter) = METER.get() {
        meter.start(what, unit, total);
    }
    Phase { _private: () }
}

/// `done` more units of the current phase are finished.
pub fn advance(done: u64) {
    if let Some(meter) = METER.get() {
        meter.advance(done);
    }
}

/// The current phase goes on under another name (see [`Meter::relabel`]).
pub fn relabel(what: &str) {
    if let Some(meter) = METER.get() {
        meter.relabel(what);
    }
}

/// A phase in progress; dropping it ends the phase ([`Meter::finish`]).
pub struct Phase {
    _private: (),
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(meter) = METER.get() {
            meter.finish();
        }
    }
}
