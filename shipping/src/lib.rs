//! Storage bays, shipping orders, routes and transports: the library under
//! syncreplica's store-and-forward shipping (MultiSite's `shipping_server`,
//! `shipping.conf`, storage bays and shipping orders).
//!
//! * [`config`]: `shipping.toml`, its lookup order and route resolution;
//! * [`bay`]: the storage-backend trait [`BayStore`] with a directory and an
//!   in-memory implementation, and a storage class's three bays;
//! * [`order`]: one shipping order per packet part, its retries and expiry;
//! * [`transport`]: delivery of a packet and its order into a directory;
//! * [`server`]: receiving over HTTP and polling until told to stop;
//! * `s3` (feature `s3`): bays on S3-compatible object storage;
//! * [`trust`]: the keys whose packets are accepted;
//! * [`toml_config`]: TOML files parsed with errors naming line and key.
//!
//! The `shipping_server` command (its command line and signals) lives in
//! the syncreplica crate.

pub mod bay;
pub mod config;
pub mod error;
pub mod http;
pub mod link;
pub mod notify;
pub mod order;
pub mod poll;
pub mod progress;
pub mod receive;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "s3")]
pub mod s3_partial;
pub mod server;
pub mod size;
pub mod toml_config;
pub mod transport;
pub mod trust;

#[cfg(test)]
mod test_packets;

pub use bay::{Bay, BayStore, Bays, DirStore, MemStore};
pub use config::{ConfigSource, Hop, Lookup, NextHop, ShippingConfig, StorageClass};
pub use error::{Error, Result};
pub use order::ShippingOrder;
pub use transport::deliver_to_dir;

/// The formats of shipping orders, bays and `shipping.toml`, for the man page.
pub const FORMATS: &str = include_str!("../FORMAT.md");

/// Name of the storage class used when none is given.
pub const DEFAULT_STORAGE_CLASS: &str = "default";
