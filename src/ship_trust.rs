//! The members of a replica's family, for shipping's `trusted_replicas`:
//! syncreplica's side of [`shipping::trust::MemberKeys`]. The shipping
//! crate does not know the state database; this reads its `members`
//! table, read-only (a shipping server may run as a user who can only
//! read the replica), afresh for each call.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use shipping::trust::{KnownRotation, MemberKeys, MemberKeysError};

use crate::error::Error;
use crate::store::layout::state_dir;
use crate::store::layout::STATE_DB_FILE;

/// Reads the members of replicas from their state databases.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaMembers;

impl MemberKeys for ReplicaMembers {
    fn member_keys(&self, root: &Path) -> Result<Vec<[u8; 32]>, MemberKeysError> {
        member_keys(root)
    }

    fn rotations(&self, root: &Path) -> Result<Vec<KnownRotation>, MemberKeysError> {
        rotations(root)
    }
}

/// The key rotations the replica rooted at `root` knows (its `rotations`
/// table; none in a database made before key rotation). Read-only.
pub fn rotations(root: &Path) -> Result<Vec<KnownRotation>, MemberKeysError> {
    let path = state_dir(root).join(STATE_DB_FILE);
    let db = |source| Error::Database {
        path: path.clone(),
        cause: source,
    };
    let connection =
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db)?;
    let rotated: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rotations')",
            [],
            |row| row.get(0),
        )
        .map_err(db)?;
    if !rotated {
        return Ok(Vec::new());
    }
    let mut statement = connection
        .prepare("SELECT replica, epoch, old_key, new_key FROM rotations ORDER BY replica, epoch")
        .map_err(db)?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, Vec<u8>>(3)?,
            ))
        })
        .map_err(db)?;
    let mut found = Vec::new();
    for row in rows {
        let (member, epoch, old_key, new_key) = row.map_err(db)?;
        let bad = || Error::CorruptState {
            path: path.clone(),
            what: "rotations: a row with a bad id or key".into(),
        };
        found.push(KnownRotation {
            member: member.try_into().map_err(|_| bad())?,
            epoch: u64::try_from(epoch).map_err(|_| bad())?,
            old_key: old_key.try_into().map_err(|_| bad())?,
            new_key: new_key.try_into().map_err(|_| bad())?,
        });
    }
    Ok(found)
}

/// Public keys of the members of the family of the replica rooted at
/// `root`, as that replica knows them now. Nothing is written, and no
/// database is created where there is none.
pub fn member_keys(root: &Path) -> Result<Vec<[u8; 32]>, MemberKeysError> {
    let path = state_dir(root).join(STATE_DB_FILE);
    if !path.is_file() {
        return Err(format!("{} does not exist: not a replica root", path.display()).into());
    }
    let db = |source| Error::Database {
        path: path.clone(),
        cause: source,
    };
    let connection =
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db)?;
    let mut statement = connection
        .prepare("SELECT name, public_key FROM members ORDER BY name")
        .map_err(db)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(db)?;
    let mut keys = Vec::new();
    for row in rows {
        let (name, key) = row.map_err(db)?;
        let key: [u8; 32] = key.try_into().map_err(|_| Error::CorruptState {
            path: path.clone(),
            what: format!("member {name}: bad public key"),
        })?;
        keys.push(key);
    }
    // Keys members replaced (mkreplica -rekey): packets they signed before
    // the rotation may still be travelling. Which epochs such a key is
    // good for is the importing replica's check, not the route's.
    let rotated: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rotations')",
            [],
            |row| row.get(0),
        )
        .map_err(db)?;
    if rotated {
        let mut statement = connection
            .prepare("SELECT old_key FROM rotations")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| row.get::<_, Vec<u8>>(0))
            .map_err(db)?;
        for row in rows {
            if let Ok(key) = <[u8; 32]>::try_from(row.map_err(db)?) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_replica_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let err = ReplicaMembers.member_keys(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a replica root"), "{err}");
        assert!(!state_dir(dir.path()).exists());
    }
}
