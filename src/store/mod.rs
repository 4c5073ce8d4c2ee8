//! The `.syncreplica/` folder of a replica: the names in it ([`layout`]),
//! identity and signing key ([`identity`]), settings ([`config`]), the
//! replica lock ([`lock`]) and the state database ([`state`]).

pub mod config;
pub mod identity;
pub mod layout;
pub mod lock;
pub mod state;
