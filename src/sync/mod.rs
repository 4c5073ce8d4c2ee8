//! The synchronisation engine: epochs and readiness ([`epochs`]), packet
//! files ([`packets`]), export, import, creation packets, and the apply
//! engine ([`apply`]: a pure plan, a journal, and the disk steps).

pub mod adopt;
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
pub mod kept;
pub mod keys;
pub mod mirror;
pub mod packets;
pub mod record;
pub mod scrub;
pub mod seals;

pub use crate::sys::stop::StopFlag;
