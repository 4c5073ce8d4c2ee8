//! The synchronisation engine: epochs and readiness ([`epochs`]), packet
//! files ([`packets`]), export, import, creation packets, and the apply
//! engine ([`apply`]: a pure plan, a journal, and the disk steps).

pub mod apply;
pub(crate) mod assemble;
pub mod chunks;
pub mod creation;
mod creation_check;
pub mod crypt;
pub mod delta;
pub mod digest;
pub mod epochs;
pub mod export;
pub mod family;
pub mod import;
pub mod packets;
pub mod record;
pub mod seals;

/// Progress of a long step, for the CLI to show (a bar on a terminal,
/// nothing in pipes and logs). The library only reports; it never prints.
pub trait Progress {
    /// Starts a phase of `total` units, described by `what`.
    fn start(&self, what: &str, total: u64);
    /// `done` more units are finished.
    fn advance(&self, done: u64);
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _what: &str, _total: u64) {}
    fn advance(&self, _done: u64) {}
}

pub use crate::sys::stop::StopFlag;
