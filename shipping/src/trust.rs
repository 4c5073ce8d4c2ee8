//! The keys whose packets this host accepts: `trusted_keys` from the
//! configuration, plus every current member of the families of the
//! replicas named in `trusted_replicas`. Members are read afresh for each
//! packet, so a member added by an import is trusted from then on without
//! a restart.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::config::ShippingConfig;
use crate::error::{Error, Result};

/// The replica's state database, relative to its root. The `members`
/// table (name, public_key BLOB) is the part of syncreplica's schema this
/// crate reads; it never writes there.
pub const STATE_DB: &str = ".syncreplica/state.db";

/// All trusted keys, configured ones first, without repeats.
pub fn trusted_keys(config: &ShippingConfig) -> Result<Vec<[u8; 32]>> {
    let mut keys: Vec<[u8; 32]> = config.trusted_keys.iter().map(|k| k.to_bytes()).collect();
    for root in &config.trusted_replicas {
        for key in member_keys(root)? {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

/// Public keys of the members of the family of the replica rooted at
/// `root`, as that replica knows them.
pub fn member_keys(root: &Path) -> Result<Vec<[u8; 32]>> {
    let db = root.join(STATE_DB);
    let bad = |message: String| Error::TrustedReplica {
        root: root.to_path_buf(),
        message,
    };
    if !db.is_file() {
        return Err(bad(format!(
            "{} does not exist: not a replica root",
            db.display()
        )));
    }
    let connection = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| bad(format!("{}: {e}", db.display())))?;
    connection
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| bad(e.to_string()))?;
    let mut statement = connection
        .prepare("SELECT name, public_key FROM members ORDER BY name")
        .map_err(|e| bad(format!("{}: {e}", db.display())))?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(|e| bad(e.to_string()))?;
    let mut keys = Vec::new();
    for row in rows {
        let (name, key) = row.map_err(|e| bad(e.to_string()))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| bad(format!("member {name:?} has a malformed public key")))?;
        keys.push(key);
    }
    Ok(keys)
}
