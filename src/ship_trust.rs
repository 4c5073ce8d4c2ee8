//! The members of a replica's family, for shipping's `trusted_replicas`:
//! syncreplica's side of [`shipping::trust::MemberKeys`]. The shipping
//! crate does not know the state database; this reads its members and
//! key rotations, read-only (a shipping server may run as a user who can only
//! read the replica), afresh for each call.

use std::path::Path;

use shipping::trust::{KnownRotation, MemberKeys, MemberKeysError};

use crate::store::layout::state_dir;
use crate::store::layout::STATE_DB_FILE;
use crate::store::state::State;

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

/// The key rotations the replica rooted at `root` knows (none in a
/// database made before key rotation). Read-only.
pub fn rotations(root: &Path) -> Result<Vec<KnownRotation>, MemberKeysError> {
    Ok(open(root)?
        .rotations()?
        .into_iter()
        .map(|rotation| KnownRotation {
            member: rotation.replica.0,
            epoch: rotation.epoch,
            old_key: rotation.old_key,
            new_key: rotation.new_key,
        })
        .collect())
}

/// Public keys of the members of the family of the replica rooted at
/// `root`, as that replica knows them now. Nothing is written, and no
/// database is created where there is none.
pub fn member_keys(root: &Path) -> Result<Vec<[u8; 32]>, MemberKeysError> {
    let state = open(root)?;
    let mut keys: Vec<[u8; 32]> = state.members()?.iter().map(|m| m.public_key).collect();
    // Keys members replaced (mkreplica -rekey): packets they signed before
    // the rotation may still be travelling. Which epochs such a key is
    // good for is the importing replica's check, not the route's.
    keys.extend(state.rotations()?.iter().map(|rotation| rotation.old_key));
    Ok(keys)
}

/// The replica's state database, read-only (a shipping server may run as
/// a user who can only read the replica), opened afresh for each call.
fn open(root: &Path) -> Result<State, MemberKeysError> {
    let dir = state_dir(root);
    if !dir.join(STATE_DB_FILE).is_file() {
        return Err(format!(
            "{} does not exist: not a replica root",
            dir.join(STATE_DB_FILE).display()
        )
        .into());
    }
    Ok(State::open_read_only(&dir)?)
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
