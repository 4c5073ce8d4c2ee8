//! Every name in a replica's state folder, in one place.
//!
//! ```text
//! ROOT/.syncreplica/          STATE_DIR
//!     identity.toml           IDENTITY_FILE   family and replica names and ids
//!     signing_key             SIGNING_KEY_FILE  ed25519 secret key, mode 0600
//!     config.toml             CONFIG_FILE     settings (store::config)
//!     state.db                STATE_DB_FILE   SQLite: entries, oplog, epochs, members
//!     lock                    LOCK_FILE       flock, naming the holder's pid
//!     staging/                STAGING_DIR     new content of an import in progress
//!     deleted/YYYYMMDD/       DELETED_DIR     what imports replaced or deleted
//! ```

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
/// Where an import stages new content before it is placed.
pub const STAGING_DIR: &str = "staging";
/// Where files an import deletes or replaces are kept, by day.
pub const DELETED_DIR: &str = "deleted";

/// The state folder of the replica rooted at `root`.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(STATE_DIR)
}
