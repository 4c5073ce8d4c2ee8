//! Operation records: the units of change that travel inside packets.
//!
//! These types are part of the packet format contract (see `SPEC.md`): their
//! postcard encoding is what a replica stores in its operation log and what it
//! ships. Enums may only grow by appending variants; fields are never
//! reordered or removed within a major version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// 128-bit random identifier of a replica or a replica family.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Id(pub [u8; 16]);

impl Id {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Id> {
        let bytes = hex::decode(text).ok()?;
        Some(Id(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

/// SHA-256 of a chunk's bytes.
pub type ChunkId = [u8; 32];

/// One content-defined chunk of a file version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// For each origin replica, the highest of its epochs that a version of a
/// path has seen. Used to tell "newer" from "concurrent" without clocks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(pub BTreeMap<Id, u64>);

/// How two version vectors relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causality {
    Equal,
    Before,
    After,
    Concurrent,
}

impl VersionVector {
    pub fn get(&self, origin: &Id) -> u64 {
        self.0.get(origin).copied().unwrap_or(0)
    }

    pub fn set(&mut self, origin: Id, epoch: u64) {
        self.0.insert(origin, epoch);
    }

    /// Compares `self` with `other`: `Before` means `other` has seen
    /// everything `self` has and more.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let mut less = false;
        let mut greater = false;
        for origin in self.0.keys().chain(other.0.keys()) {
            let (a, b) = (self.get(origin), other.get(origin));
            less |= a < b;
            greater |= a > b;
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// The element-wise maximum of both vectors.
    pub fn merged(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        for (origin, epoch) in &other.0 {
            let slot = out.0.entry(*origin).or_insert(0);
            *slot = (*slot).max(*epoch);
        }
        out
    }
}

/// What a path became.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathState {
    /// A regular file. `mode` holds the permission bits (exec bit included).
    File {
        mode: u32,
        mtime_ns: i64,
        size: u64,
        chunks: Vec<ChunkRef>,
    },
    /// A directory; recorded for every directory so empty ones survive.
    Directory { mode: u32 },
    /// A symbolic link, stored as its target bytes and never followed.
    Symlink { target: Vec<u8> },
    /// The path no longer exists.
    Deleted,
}

/// A change carried by an operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `path` is relative to the replica root, `/`-separated, raw bytes
    /// (non-UTF-8 names are kept exactly). Receivers must treat it as hostile.
    Path {
        path: Vec<u8>,
        version: VersionVector,
        state: PathState,
    },
    /// A replica joined the family; siblings learn its signing key.
    AddMember {
        replica: Id,
        name: String,
        public_key: [u8; 32],
    },
    /// A replica resolved concurrent versions of `path` and records the
    /// outcome, so that siblings adopt the merged version. `state` is the
    /// winner's and `author` the replica that made the winning version,
    /// which need not be the operation's origin: conflict copies are named
    /// after authors, and must be named alike everywhere.
    Resolve {
        path: Vec<u8>,
        version: VersionVector,
        state: PathState,
        author: Id,
    },
}

/// The parts of a change that concern a path.
#[derive(Clone, Copy, Debug)]
pub struct PathChange<'a> {
    pub path: &'a Vec<u8>,
    pub version: &'a VersionVector,
    pub state: &'a PathState,
    /// Who made `state`; `None` means the operation's origin.
    pub author: Option<Id>,
}

impl Change {
    /// The path, version and state of a `Path` or `Resolve` change.
    pub fn path_change(&self) -> Option<PathChange<'_>> {
        match self {
            Change::Path {
                path,
                version,
                state,
            } => Some(PathChange {
                path,
                version,
                state,
                author: None,
            }),
            Change::Resolve {
                path,
                version,
                state,
                author,
            } => Some(PathChange {
                path,
                version,
                state,
                author: Some(*author),
            }),
            Change::AddMember { .. } => None,
        }
    }
}

/// One entry of an origin replica's operation log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub origin: Id,
    pub epoch: u64,
    /// Wall-clock time the origin recorded the change (ns since the epoch);
    /// informational only, never used to order operations.
    pub recorded_ns: i64,
    pub change: Change,
}

impl Operation {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("operation encoding cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<Operation, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(u8, u64)]) -> VersionVector {
        VersionVector(pairs.iter().map(|(k, v)| (Id([*k; 16]), *v)).collect())
    }

    #[test]
    fn version_vectors_compare_causally() {
        assert_eq!(vv(&[(1, 1)]).compare(&vv(&[(1, 1)])), Causality::Equal);
        assert_eq!(vv(&[(1, 1)]).compare(&vv(&[(1, 2)])), Causality::Before);
        assert_eq!(
            vv(&[(1, 2), (2, 1)]).compare(&vv(&[(1, 2)])),
            Causality::After
        );
        assert_eq!(vv(&[(1, 2)]).compare(&vv(&[(2, 1)])), Causality::Concurrent);
        assert_eq!(vv(&[(1, 2)]).merged(&vv(&[(2, 1)])), vv(&[(1, 2), (2, 1)]));
    }

    #[test]
    fn operations_round_trip() {
        let op = Operation {
            origin: Id([7; 16]),
            epoch: 3,
            recorded_ns: 1,
            change: Change::Path {
                path: b"dir/\xffname".to_vec(),
                version: vv(&[(7, 3)]),
                state: PathState::File {
                    mode: 0o755,
                    mtime_ns: 5,
                    size: 4,
                    chunks: vec![ChunkRef {
                        id: [1; 32],
                        len: 4,
                    }],
                },
            },
        };
        assert_eq!(Operation::decode(&op.encode()).unwrap(), op);
    }
}
