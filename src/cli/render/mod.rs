//! Text and JSON renderings of what the library returns: the only code
//! besides the binaries that formats for people.

pub mod lsepoch;
pub mod lspacket;
pub mod lsreplica;
pub mod status;
pub mod transfer;
