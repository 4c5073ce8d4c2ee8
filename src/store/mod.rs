//! The `.syncreplica/` folder of a replica: the names in it ([`layout`]),
//! identity and signing key ([`identity`]), settings ([`config`]), the
//! replica lock ([`lock`]), the state database ([`state`]) and what a probe
//! found about the filesystem ([`filesystem`]); and, outside it, the
//! replicas imports made on this host ([`hosted`]).

pub mod config;
pub mod filesystem;
pub mod hosted;
pub mod identity;
pub mod layout;
pub mod lock;
pub mod state;
