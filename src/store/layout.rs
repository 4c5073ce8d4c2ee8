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
//!     snapshots/HASH          SNAPSHOTS_DIR   reflink clones of files that kept changing
//!     reports/import-*.txt    REPORTS_DIR     an import's report lines beyond those it prints
//! ```
//!
//! Inside the tree itself, outside the state folder, an import uses the
//! names in [`TREE_TEMP_NAMES`] beside a target while it works, and
//! `mkreplica -init`/`-import` build the state folder at the root as
//! `.syncreplica.init-PID` ([`STATE_DIR_INIT_PREFIX`]). Packets can never
//! name them and scans never record them (see `tree::relpath`).

use std::path::{Path, PathBuf};

/// The state folder at the root of every replica; packets can never name
/// it (see `tree::relpath`).
pub const STATE_DIR: &str = ".syncreplica";
/// The replica's identity (family and replica names and ids).
pub const IDENTITY_FILE: &str = "identity.toml";
/// The replica's ed25519 signing key, mode 0600.
pub const SIGNING_KEY_FILE: &str = "signing_key";
/// This replica's age X25519 identity (`AGE-SECRET-KEY-1...`), mode 0600:
/// packets to it are encrypted to its public half (issue 15).
pub const ENCRYPTION_KEY_FILE: &str = "encryption_key";
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
/// Where an import writes its report lines when there are more of a kind
/// than it prints (`sync::apply::lines`); the user removes them.
pub const REPORTS_DIR: &str = "reports";
/// Point-in-time clones (reflinks) of files that kept changing while the
/// scan read them, each named by [`snapshot_name`] of its path: the
/// recorded version of such a file is the clone's content, and exports
/// read it from there (`tree::scan`, `sync::chunks`).
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// The name of the snapshot of the tree path `rel` in [`SNAPSHOTS_DIR`]:
/// the hex SHA-256 of the path (any path, of any length, gives a valid
/// file name).
pub fn snapshot_name(rel: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(rel))
}

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

/// The state folder under construction is `STATE_DIR_INIT_PREFIX` + PID:
/// `mkreplica -init` and `-import` build it at the root and rename it to
/// [`STATE_DIR`] last, so there is no replica until it is complete.
pub const STATE_DIR_INIT_PREFIX: &str = ".syncreplica.init-";

/// The state folder process `pid` builds at `root` (see
/// [`STATE_DIR_INIT_PREFIX`]).
pub fn state_dir_under_construction(root: &Path, pid: u32) -> PathBuf {
    root.join(format!("{STATE_DIR_INIT_PREFIX}{pid}"))
}

/// Whether `name` (one path component) has the form of a state folder
/// under construction: [`STATE_DIR_INIT_PREFIX`] and decimal digits.
/// Reserved like [`TREE_TEMP_NAMES`] (for any pid, at any depth): a
/// creation packet, whose paths are made while that folder is built
/// beside them, can never name it, nor what lies in it (the new
/// replica's key, identity and configuration).
pub fn is_state_dir_under_construction(name: &[u8]) -> bool {
    name.strip_prefix(STATE_DIR_INIT_PREFIX.as_bytes())
        .is_some_and(|pid| !pid.is_empty() && pid.iter().all(u8::is_ascii_digit))
}

/// The state folder of the replica rooted at `root`.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR)
}
