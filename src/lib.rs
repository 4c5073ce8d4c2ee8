//! syncreplica: keeps directory-tree replicas in step between sites that are
//! poorly connected or not connected at all.
//!
//! The binaries in `src/bin/` are glue: they parse arguments with the clap
//! definitions in [`cli`], call into these modules and print. Everything a
//! command does is here, so it can be tested without a process boundary.

pub mod apply;
pub mod chunking;
pub mod cli;
pub mod config;
pub mod creation;
pub mod epochs;
pub mod error;
pub mod excludes;
pub mod export;
pub mod fsutil;
pub mod identity;
pub mod import;
pub mod listing;
pub mod lock;
pub mod members;
pub mod packets;
pub mod relpath;
pub mod replica;
pub mod scan;
pub mod ship;
pub mod ship_trust;
pub mod state;

pub use error::{Error, Result};
pub use packet_format::ops;
