//! The synchronisation engine: epochs and readiness ([`epochs`]), packet
//! files ([`packets`]), export, import, creation packets, and the apply
//! engine ([`apply`]: a pure plan, a journal, and the disk steps).

pub mod apply;
pub mod chunks;
pub mod creation;
pub mod epochs;
pub mod export;
pub mod import;
pub mod packets;
pub mod record;
