//! Storage bays, shipping orders, routes and transports.
//!
//! This crate is where `shipping_server` will live (see issue "Shipping").
//! It holds only the shared vocabulary so far, so the workspace layout is
//! fixed from the start.

/// Name of the storage class used when none is given.
pub const DEFAULT_STORAGE_CLASS: &str = "default";
