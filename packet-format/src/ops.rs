//! Operation records: the units of change that travel inside packets.
//!
//! These types are part of the packet format contract (see `SPEC.md`): their
//! postcard encoding is what a replica stores in its operation log and what it
//! ships. Enums may only grow by appending variants; fields are never
//! reordered or removed within a major version.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// A point in time: whole seconds since 1970-01-01 00:00:00 UTC (negative
/// before it) and the nanoseconds after that second (`0..1_000_000_000`).
///
/// Two fields rather than one nanosecond count, so that every time a
/// filesystem can hold travels unchanged: an `i64` of nanoseconds only
/// spans 1677..2262 (SPEC.md §6). A decoded `nanos` of 10^9 or more is an
/// error, so each instant has exactly one encoding. The derived order is
/// chronological.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "RawTimestamp")]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

#[derive(Deserialize)]
struct RawTimestamp {
    secs: i64,
    nanos: u32,
}

impl TryFrom<RawTimestamp> for Timestamp {
    type Error = String;

    fn try_from(raw: RawTimestamp) -> Result<Self, String> {
        Timestamp::new(raw.secs, raw.nanos)
            .ok_or_else(|| format!("time stamp nanoseconds {} out of range", raw.nanos))
    }
}

impl Timestamp {
    /// `None` when `nanos` is not below 10^9.
    pub fn new(secs: i64, nanos: u32) -> Option<Timestamp> {
        (nanos < 1_000_000_000).then_some(Timestamp { secs, nanos })
    }

    /// From `stat`'s two fields; a negative or oversized nanosecond field
    /// (which no sane kernel reports) is carried into the seconds.
    pub fn from_stat(secs: i64, nsec: i64) -> Timestamp {
        let secs = secs.saturating_add(nsec.div_euclid(1_000_000_000));
        Timestamp {
            secs,
            nanos: nsec.rem_euclid(1_000_000_000) as u32,
        }
    }

    /// From nanoseconds since the Unix epoch (the range of an `i64`).
    pub fn from_nanos(nanos: i64) -> Timestamp {
        Timestamp::from_stat(0, nanos)
    }

    /// Nanoseconds since the Unix epoch, saturating outside 1677..2262:
    /// for local comparisons and display only, never for the wire.
    pub fn as_nanos_saturating(&self) -> i64 {
        self.secs
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(self.nanos))
    }

    /// The current time of the system clock.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(std::time::SystemTime::now())
    }

    /// From a [`std::time::SystemTime`], before or after 1970.
    pub fn from_system_time(time: std::time::SystemTime) -> Timestamp {
        match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => Timestamp {
                secs: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                nanos: after.subsec_nanos(),
            },
            Err(before) => {
                let before = before.duration();
                let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
                match before.subsec_nanos() {
                    0 => Timestamp {
                        secs: -secs,
                        nanos: 0,
                    },
                    n => Timestamp {
                        secs: -secs - 1,
                        nanos: 1_000_000_000 - n,
                    },
                }
            }
        }
    }
}

/// One entry of an [`Extensions`] map: a registered key (SPEC.md §6.4) and
/// its value, the postcard encoding of the type the key is registered with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Extension {
    pub key: u32,
    pub value: Vec<u8>,
}

/// Metadata beyond the fixed fields of a path state: owners, ACLs,
/// extended attributes, hard-link groups and whatever later minor versions
/// register (SPEC.md §6.4). Keys are strictly ascending (checked when
/// decoding, so each map has one encoding). An **odd** key is *critical*: a
/// reader that does not know it must not apply the state. An **even** key
/// may be ignored by a reader that does not know it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Extension>")]
pub struct Extensions(Vec<Extension>);

impl TryFrom<Vec<Extension>> for Extensions {
    type Error = String;

    fn try_from(entries: Vec<Extension>) -> Result<Self, String> {
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].key >= pair[1].key) {
            return Err(format!(
                "metadata keys out of order or repeated ({} then {})",
                pair[0].key, pair[1].key
            ));
        }
        Ok(Extensions(entries))
    }
}

impl Extensions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Extension> {
        self.0.iter()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: u32) -> Option<&[u8]> {
        self.0
            .binary_search_by_key(&key, |entry| entry.key)
            .ok()
            .map(|at| self.0[at].value.as_slice())
    }

    /// Stores `value` under `key`, replacing any earlier value.
    pub fn insert(&mut self, key: u32, value: Vec<u8>) {
        match self.0.binary_search_by_key(&key, |entry| entry.key) {
            Ok(at) => self.0[at].value = value,
            Err(at) => self.0.insert(at, Extension { key, value }),
        }
    }

    /// The first critical (odd) key not in `known`: the reason a reader
    /// that knows only `known` must refuse the state.
    pub fn unknown_critical(&self, known: &[u32]) -> Option<u32> {
        self.0
            .iter()
            .map(|entry| entry.key)
            .find(|key| key % 2 == 1 && !known.contains(key))
    }
}

/// What a path became.
///
/// On the wire each state is a kind code and a length-prefixed body
/// (SPEC.md §6.3), so that a reader meets a state kind added by a later
/// minor version as [`PathState::Unknown`] and refuses it by name instead
/// of failing to decode the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathState {
    /// A regular file. `mode` holds the permission bits (exec bit included).
    File {
        mode: u32,
        mtime: Timestamp,
        size: u64,
        chunks: Vec<ChunkRef>,
        ext: Extensions,
    },
    /// A directory; recorded for every directory so empty ones survive.
    /// `mtime` is `None` where the origin does not keep directory times.
    Directory {
        mode: u32,
        mtime: Option<Timestamp>,
        ext: Extensions,
    },
    /// A symbolic link, stored as its target bytes and never followed.
    Symlink {
        target: Vec<u8>,
        mtime: Option<Timestamp>,
        ext: Extensions,
    },
    /// A FIFO, socket or device node (format 2.3, SPEC.md §6.3). `kind` is
    /// a [`special_kind`] code; `major`/`minor` the device number of a
    /// device node (0 for a FIFO or socket).
    Special {
        kind: u32,
        mode: u32,
        major: u32,
        minor: u32,
        mtime: Timestamp,
        ext: Extensions,
    },
    /// The path no longer exists.
    Deleted,
    /// A state kind from a newer minor version: it decodes, so listings
    /// can show it, but it is never applied.
    Unknown { kind: u32, body: Vec<u8> },
}

impl PathState {
    /// A directory with just a mode.
    pub fn directory(mode: u32) -> PathState {
        PathState::Directory {
            mode,
            mtime: None,
            ext: Extensions::default(),
        }
    }

    /// A symbolic link with just a target.
    pub fn symlink(target: Vec<u8>) -> PathState {
        PathState::Symlink {
            target,
            mtime: None,
            ext: Extensions::default(),
        }
    }

    /// The metadata extensions of the state, if its kind has any.
    pub fn extensions(&self) -> Option<&Extensions> {
        match self {
            PathState::File { ext, .. }
            | PathState::Directory { ext, .. }
            | PathState::Symlink { ext, .. }
            | PathState::Special { ext, .. } => Some(ext),
            PathState::Deleted | PathState::Unknown { .. } => None,
        }
    }
}

/// Path-state kind codes (SPEC.md §6.3).
pub mod state_kind {
    pub const FILE: u32 = 1;
    pub const DIRECTORY: u32 = 2;
    pub const SYMLINK: u32 = 3;
    pub const DELETED: u32 = 4;
    /// FIFOs, sockets and device nodes (format 2.3).
    pub const SPECIAL: u32 = 6;
}

/// What a [`PathState::Special`] is (SPEC.md §6.3).
pub mod special_kind {
    pub const FIFO: u32 = 1;
    pub const SOCKET: u32 = 2;
    pub const CHAR_DEVICE: u32 = 3;
    pub const BLOCK_DEVICE: u32 = 4;
}

/// Operation kind codes (SPEC.md §6.2). Codes from [`change_kind::INFORMATIONAL`]
/// up name operations a reader that does not know them may keep and relay
/// without applying; any other unknown code makes the packet unusable.
pub mod change_kind {
    pub const PATH: u32 = 1;
    pub const ADD_MEMBER: u32 = 2;
    pub const RESOLVE: u32 = 3;
    /// A member leaves the family for good (`rmreplica`).
    pub const REMOVE_MEMBER: u32 = 5;
    /// A member replaces its own signing and encryption keys
    /// (`mkreplica -rekey`, format 2.9).
    pub const REKEY_MEMBER: u32 = 6;
    pub const INFORMATIONAL: u32 = 0x1_0000;
    /// A member's encryption key (format 2.5, informational): kept as
    /// [`super::Change::Unknown`] so that it is logged and relayed like
    /// any informational kind; see [`super::MemberKeys`].
    pub const MEMBER_KEYS: u32 = 0x1_0003;
}

/// The body of an informational `MemberKeys` operation (kind `0x10003`,
/// SPEC.md §6.2): `replica`'s age X25519 public key (`age1...`), which
/// packets to it are encrypted to (SPEC.md §4.2). Announced by the
/// replica itself (at creation, on `mkreplica -rekey`) or, for a replica
/// made by `mkreplica -export`, by the member that made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberKeys {
    pub replica: Id,
    pub encryption_key: String,
}

impl MemberKeys {
    /// The change that carries it.
    pub fn to_change(&self) -> Change {
        Change::Unknown {
            kind: change_kind::MEMBER_KEYS,
            body: postcard::to_stdvec(self).expect("encoding cannot fail"),
        }
    }

    /// The announcement `change` carries, if it is one that decodes.
    pub fn from_change(change: &Change) -> Option<MemberKeys> {
        match change {
            Change::Unknown { kind, body } if *kind == change_kind::MEMBER_KEYS => {
                match postcard::take_from_bytes::<MemberKeys>(body) {
                    Ok((keys, [])) => Some(keys),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// A change carried by an operation.
///
/// On the wire: a kind code and a length-prefixed body (SPEC.md §6.2).
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// A member was removed from the family for good (`rmreplica`): from
    /// the receipt of this operation on, no packet that member signs is
    /// accepted, and it is no longer sent anything. Its operations that
    /// other members relay still are (they were made while it belonged).
    /// `name` is the member's name as the remover knew it (informational).
    RemoveMember { replica: Id, name: String },
    /// A member replaced its own keys (`mkreplica -rekey`, format 2.9):
    /// logged as its own operation at epoch E, in a run of its own sealed
    /// with `old_key`. Its operations up to E are sealed, and its packets
    /// whose own epochs reach no further than E signed, with `old_key`;
    /// those after E with `new_key`. Packets to it are encrypted to
    /// `encryption_key` (age X25519, `age1...`) once this is received.
    /// `replica` is always the operation's origin: a member rekeys only
    /// itself (SPEC.md §7.1).
    RekeyMember {
        replica: Id,
        old_key: [u8; 32],
        new_key: [u8; 32],
        encryption_key: String,
    },
    /// An operation kind from a newer minor version, kept as received.
    Unknown { kind: u32, body: Vec<u8> },
}

impl Change {
    /// Whether a reader that does not know this change may keep and relay
    /// it without applying it (SPEC.md §6.2).
    pub fn is_informational(&self) -> bool {
        matches!(self, Change::Unknown { kind, .. } if *kind >= change_kind::INFORMATIONAL)
    }
}

// The wire bodies. Serialising borrows; deserialising owns.

#[derive(Serialize)]
struct FileBodyRef<'a> {
    mode: u32,
    mtime: &'a Timestamp,
    size: u64,
    chunks: &'a [ChunkRef],
    ext: &'a Extensions,
}

#[derive(Deserialize)]
struct FileBody {
    mode: u32,
    mtime: Timestamp,
    size: u64,
    chunks: Vec<ChunkRef>,
    ext: Extensions,
}

#[derive(Serialize)]
struct DirectoryBodyRef<'a> {
    mode: u32,
    mtime: &'a Option<Timestamp>,
    ext: &'a Extensions,
}

#[derive(Deserialize)]
struct DirectoryBody {
    mode: u32,
    mtime: Option<Timestamp>,
    ext: Extensions,
}

#[derive(Serialize)]
struct SymlinkBodyRef<'a> {
    target: &'a [u8],
    mtime: &'a Option<Timestamp>,
    ext: &'a Extensions,
}

#[derive(Deserialize)]
struct SymlinkBody {
    target: Vec<u8>,
    mtime: Option<Timestamp>,
    ext: Extensions,
}

#[derive(Serialize)]
struct SpecialBodyRef<'a> {
    kind: u32,
    mode: u32,
    major: u32,
    minor: u32,
    mtime: &'a Timestamp,
    ext: &'a Extensions,
}

#[derive(Deserialize)]
struct SpecialBody {
    kind: u32,
    mode: u32,
    major: u32,
    minor: u32,
    mtime: Timestamp,
    ext: Extensions,
}

#[derive(Serialize)]
struct PathBodyRef<'a> {
    path: &'a [u8],
    version: &'a VersionVector,
    state: &'a PathState,
}

#[derive(Deserialize)]
struct PathBody {
    path: Vec<u8>,
    version: VersionVector,
    state: PathState,
}

#[derive(Serialize)]
struct AddMemberBodyRef<'a> {
    replica: &'a Id,
    name: &'a str,
    public_key: &'a [u8; 32],
}

#[derive(Deserialize)]
struct AddMemberBody {
    replica: Id,
    name: String,
    public_key: [u8; 32],
}

#[derive(Serialize)]
struct RemoveMemberBodyRef<'a> {
    replica: &'a Id,
    name: &'a str,
}

#[derive(Deserialize)]
struct RemoveMemberBody {
    replica: Id,
    name: String,
}

#[derive(Serialize)]
struct RekeyMemberBodyRef<'a> {
    replica: &'a Id,
    old_key: &'a [u8; 32],
    new_key: &'a [u8; 32],
    encryption_key: &'a str,
}

#[derive(Deserialize)]
struct RekeyMemberBody {
    replica: Id,
    old_key: [u8; 32],
    new_key: [u8; 32],
    encryption_key: String,
}

#[derive(Serialize)]
struct ResolveBodyRef<'a> {
    path: &'a [u8],
    version: &'a VersionVector,
    state: &'a PathState,
    author: &'a Id,
}

#[derive(Deserialize)]
struct ResolveBody {
    path: Vec<u8>,
    version: VersionVector,
    state: PathState,
    author: Id,
}

/// Serialises `(kind, postcard(body))`.
fn serialize_tagged<S: Serializer, B: Serialize>(
    serializer: S,
    kind: u32,
    body: &B,
) -> Result<S::Ok, S::Error> {
    let bytes = postcard::to_stdvec(body).map_err(serde::ser::Error::custom)?;
    (kind, serde_bytes_ref(&bytes)).serialize(serializer)
}

/// Bytes serialise as a length and the bytes, like `Vec<u8>` in postcard.
fn serde_bytes_ref(bytes: &[u8]) -> &[u8] {
    bytes
}

/// Decodes a body that must use every byte it was given: trailing bytes
/// would be a second encoding of the same value.
fn decode_body<'de, B: Deserialize<'de>, E: serde::de::Error>(
    what: &str,
    bytes: &'de [u8],
) -> Result<B, E> {
    match postcard::take_from_bytes::<B>(bytes) {
        Ok((body, [])) => Ok(body),
        Ok((_, rest)) => Err(E::custom(format!(
            "{what} has {} trailing bytes",
            rest.len()
        ))),
        Err(err) => Err(E::custom(format!("{what}: {err}"))),
    }
}

impl Serialize for PathState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use state_kind::*;
        match self {
            PathState::File {
                mode,
                mtime,
                size,
                chunks,
                ext,
            } => serialize_tagged(
                serializer,
                FILE,
                &FileBodyRef {
                    mode: *mode,
                    mtime,
                    size: *size,
                    chunks,
                    ext,
                },
            ),
            PathState::Directory { mode, mtime, ext } => serialize_tagged(
                serializer,
                DIRECTORY,
                &DirectoryBodyRef {
                    mode: *mode,
                    mtime,
                    ext,
                },
            ),
            PathState::Symlink { target, mtime, ext } => {
                serialize_tagged(serializer, SYMLINK, &SymlinkBodyRef { target, mtime, ext })
            }
            PathState::Special {
                kind,
                mode,
                major,
                minor,
                mtime,
                ext,
            } => serialize_tagged(
                serializer,
                SPECIAL,
                &SpecialBodyRef {
                    kind: *kind,
                    mode: *mode,
                    major: *major,
                    minor: *minor,
                    mtime,
                    ext,
                },
            ),
            PathState::Deleted => serialize_tagged(serializer, DELETED, &()),
            PathState::Unknown { kind, body } => {
                (*kind, serde_bytes_ref(body)).serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for PathState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use state_kind::*;
        let (kind, body): (u32, Vec<u8>) = Deserialize::deserialize(deserializer)?;
        Ok(match kind {
            FILE => {
                let b: FileBody = decode_body("file state", &body)?;
                PathState::File {
                    mode: b.mode,
                    mtime: b.mtime,
                    size: b.size,
                    chunks: b.chunks,
                    ext: b.ext,
                }
            }
            DIRECTORY => {
                let b: DirectoryBody = decode_body("directory state", &body)?;
                PathState::Directory {
                    mode: b.mode,
                    mtime: b.mtime,
                    ext: b.ext,
                }
            }
            SYMLINK => {
                let b: SymlinkBody = decode_body("symlink state", &body)?;
                PathState::Symlink {
                    target: b.target,
                    mtime: b.mtime,
                    ext: b.ext,
                }
            }
            DELETED => {
                decode_body::<(), _>("deleted state", &body)?;
                PathState::Deleted
            }
            SPECIAL => {
                let b: SpecialBody = decode_body("special file state", &body)?;
                PathState::Special {
                    kind: b.kind,
                    mode: b.mode,
                    major: b.major,
                    minor: b.minor,
                    mtime: b.mtime,
                    ext: b.ext,
                }
            }
            kind => PathState::Unknown { kind, body },
        })
    }
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use change_kind::*;
        match self {
            Change::Path {
                path,
                version,
                state,
            } => serialize_tagged(
                serializer,
                PATH,
                &PathBodyRef {
                    path,
                    version,
                    state,
                },
            ),
            Change::AddMember {
                replica,
                name,
                public_key,
            } => serialize_tagged(
                serializer,
                ADD_MEMBER,
                &AddMemberBodyRef {
                    replica,
                    name,
                    public_key,
                },
            ),
            Change::Resolve {
                path,
                version,
                state,
                author,
            } => serialize_tagged(
                serializer,
                RESOLVE,
                &ResolveBodyRef {
                    path,
                    version,
                    state,
                    author,
                },
            ),
            Change::RemoveMember { replica, name } => serialize_tagged(
                serializer,
                REMOVE_MEMBER,
                &RemoveMemberBodyRef { replica, name },
            ),
            Change::RekeyMember {
                replica,
                old_key,
                new_key,
                encryption_key,
            } => serialize_tagged(
                serializer,
                REKEY_MEMBER,
                &RekeyMemberBodyRef {
                    replica,
                    old_key,
                    new_key,
                    encryption_key,
                },
            ),
            Change::Unknown { kind, body } => (*kind, serde_bytes_ref(body)).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use change_kind::*;
        let (kind, body): (u32, Vec<u8>) = Deserialize::deserialize(deserializer)?;
        Ok(match kind {
            PATH => {
                let b: PathBody = decode_body("path change", &body)?;
                Change::Path {
                    path: b.path,
                    version: b.version,
                    state: b.state,
                }
            }
            ADD_MEMBER => {
                let b: AddMemberBody = decode_body("member change", &body)?;
                Change::AddMember {
                    replica: b.replica,
                    name: b.name,
                    public_key: b.public_key,
                }
            }
            RESOLVE => {
                let b: ResolveBody = decode_body("resolve change", &body)?;
                Change::Resolve {
                    path: b.path,
                    version: b.version,
                    state: b.state,
                    author: b.author,
                }
            }
            REMOVE_MEMBER => {
                let b: RemoveMemberBody = decode_body("member removal", &body)?;
                Change::RemoveMember {
                    replica: b.replica,
                    name: b.name,
                }
            }
            REKEY_MEMBER => {
                let b: RekeyMemberBody = decode_body("member key rotation", &body)?;
                Change::RekeyMember {
                    replica: b.replica,
                    old_key: b.old_key,
                    new_key: b.new_key,
                    encryption_key: b.encryption_key,
                }
            }
            kind => Change::Unknown { kind, body },
        })
    }
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
            Change::AddMember { .. }
            | Change::RemoveMember { .. }
            | Change::RekeyMember { .. }
            | Change::Unknown { .. } => None,
        }
    }
}

/// One entry of an origin replica's operation log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub origin: Id,
    pub epoch: u64,
    /// Wall-clock time the origin recorded the change; informational only,
    /// never used to order operations.
    pub recorded: Timestamp,
    pub change: Change,
}

impl Operation {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("operation encoding cannot fail")
    }

    /// Decodes one operation, which must use every byte of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Operation, postcard::Error> {
        match postcard::take_from_bytes(bytes)? {
            (op, []) => Ok(op),
            _ => Err(postcard::Error::DeserializeBadEncoding),
        }
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
            recorded: Timestamp::from_nanos(1),
            change: Change::Path {
                path: b"dir/\xffname".to_vec(),
                version: vv(&[(7, 3)]),
                state: PathState::File {
                    mode: 0o755,
                    mtime: Timestamp {
                        secs: 13_569_465_600, // 2400-01-01
                        nanos: 5,
                    },
                    size: 4,
                    chunks: vec![ChunkRef {
                        id: [1; 32],
                        len: 4,
                    }],
                    ext: Extensions::default(),
                },
            },
        };
        assert_eq!(Operation::decode(&op.encode()).unwrap(), op);
        let mut trailing = op.encode();
        trailing.push(0);
        assert!(Operation::decode(&trailing).is_err());
    }

    #[test]
    fn unknown_kinds_decode_and_reencode_unchanged() {
        let op = Operation {
            origin: Id([7; 16]),
            epoch: 1,
            recorded: Timestamp::default(),
            change: Change::Unknown {
                kind: change_kind::INFORMATIONAL + 5,
                body: vec![1, 2, 3],
            },
        };
        let bytes = op.encode();
        let back = Operation::decode(&bytes).unwrap();
        assert!(back.change.is_informational());
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn time_stamps_keep_every_instant() {
        for (secs, nanos) in [
            (-62_135_596_800, 0),
            (-1, 999_999_999),
            (i64::MAX, 1),
            (i64::MIN, 0),
        ] {
            let t = Timestamp::new(secs, nanos).unwrap();
            assert_eq!(
                postcard::from_bytes::<Timestamp>(&postcard::to_stdvec(&t).unwrap()).unwrap(),
                t
            );
        }
        let bad = postcard::to_stdvec(&(0i64, 1_000_000_000u32)).unwrap();
        assert!(postcard::from_bytes::<Timestamp>(&bad).is_err());
        let before = std::time::UNIX_EPOCH - std::time::Duration::new(1, 250);
        assert_eq!(
            Timestamp::from_system_time(before),
            Timestamp {
                secs: -2,
                nanos: 999_999_750
            }
        );
        assert_eq!(
            Timestamp::from_stat(-5, 3).as_nanos_saturating(),
            -4_999_999_997
        );
    }

    #[test]
    fn extension_keys_are_strictly_ascending() {
        let mut ext = Extensions::default();
        ext.insert(4, vec![1]);
        ext.insert(1, vec![2]);
        assert_eq!(ext.get(1), Some(&[2u8][..]));
        assert_eq!(ext.unknown_critical(&[]), Some(1));
        assert_eq!(ext.unknown_critical(&[1]), None);
        let unordered = postcard::to_stdvec(&vec![(4u32, vec![1u8]), (1, vec![2])]).unwrap();
        assert!(postcard::from_bytes::<Extensions>(&unordered).is_err());
    }
}
