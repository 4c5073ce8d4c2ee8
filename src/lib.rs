//! syncreplica: keeps directory-tree replicas in step between sites that are
//! poorly connected or not connected at all.
//!
//! The layers, each depending only on those below it:
//!
//! ```text
//! bin/      ~10-line mains: parse, call cli, exit
//! cli/      the only layer that prints, exits, or uses clap/indicatif/anyhow
//! sync/     the engine: epochs, packets, export, import, creation, apply,
//!           delta (recipes, content requests), family (acks, clones,
//!           removal, restore), digest (tree digests)
//! replica   Replica (read) → LockedReplica (write); ship: bays for replicas
//! tree/     the working tree: relpath, confined, excludes, chunking, scan
//! store/    .syncreplica/: layout, identity, config, lock, state database
//! sys/      OS glue: durable writes, clock, progress facade;   error: library errors only
//! ```

pub mod cli;
pub mod error;
pub mod replica;
pub(crate) mod ship;
pub(crate) mod ship_trust;
pub(crate) mod sys;

// Public so the integration tests can drive the engine below the commands
// (apply batches with crash hooks, scans with hooks, forged states); they
// are not an API, and their docs are hidden.
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod sync;
#[doc(hidden)]
pub mod tree;

// The API: what a program embedding syncreplica needs.
pub use error::{Error, Refusal, Result};
pub use packet_format::ops;
pub use replica::{LockedReplica, Replica};
