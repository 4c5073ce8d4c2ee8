//! syncreplica's packet container, format v1. See `SPEC.md`.

pub mod ops;
