//! Every name in a replica's state folder, in one place.
//!
//! ```text
//! ROOT/.syncreplica/          STATE_DIR
//!     identity.toml           IDENTITY_FILE   family and replica names and ids
//!     signing_key             SIGNING_KEY_FILE  ed25519 secret key, mode 0600
//!     config.toml             CONFIG_FILE     settings (store::config)
//!     state.db                STATE_DB_FILE   SQLite: entries, oplog, epochs, members
//!     lock                    LOCK_FILE       flock, naming the holder's pid
//!     filesystem.toml         FILESYSTEM_FILE how the filesystem compares names (a probe's cache)
//!     staging/                STAGING_DIR     new content of an import in progress
//!     deleted/YYYYMMDD/       DELETED_DIR     what imports replaced or deleted
//! ```
//!
//! Inside the tree itself, outside the state folder, an import uses the
//! names in [`TREE_TEMP_NAMES`] beside a target while it works. Packets can
//! never name them and scans never record them (see `tree::relpath`).

use std::path::{Path, PathBuf};

/// The state folder at the root of every replica; packets can never name
/// it (see `tree::relpath`).
pub const STATE_DIR: &str = ".syncreplica";
/// The replica's identity (family and replica names and ids).
pub const IDENTITY_FILE: &str = "identity.toml";
/// The replica's ed25519 signing key, mode 0600.
pub const SIGNING_KEY_FILE: &str = "signing_key";
/// The replica's settings.
pub const CONFIG_FILE: &str = "config.toml";
/// The state database.
pub const STATE_DB_FILE: &str = "state.db";
/// The lock file that commands which change the replica hold.
pub const LOCK_FILE: &str = "lock";
/// What a probe found about the filesystem (`store::filesystem`).
pub const FILESYSTEM_FILE: &str = "filesystem.toml";
/// Where an import stages new content before it is placed.
pub const STAGING_DIR: &str = "staging";
/// Where files an import deletes or replaces are kept, by day.
pub const DELETED_DIR: &str = "deleted";

/// Temporary name beside a target while an import copies a file onto
/// another filesystem mounted inside the replica.
pub const TEMP_NEW_FILE: &str = ".syncreplica-new-file";
/// Every temporary name an import uses inside the tree: reserved, so a
/// packet can never name one and the engine never mistakes a user's file
/// for its own temporary.
pub const TREE_TEMP_NAMES: &[&str] = &[TEMP_NEW_FILE];

/// Whether `name` (one path component) is one of [`TREE_TEMP_NAMES`].
pub fn is_tree_temp_name(name: &[u8]) -> bool {
    TREE_TEMP_NAMES.iter().any(|temp| temp.as_bytes() == name)
}

/// The state folder of the replica rooted at `root`.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR)
}
