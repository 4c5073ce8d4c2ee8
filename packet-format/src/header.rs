//! The packet header: the one signed entry, which pins every other entry.
//!
//! Stored layout of the `header` entry (see `SPEC.md` §4):
//!
//! ```text
//! magic "SYNCRPKT" (8) | major u16 LE | minor u16 LE | signer public key (32) | postcard(Header)
//! ```
//!
//! The magic, version and signer key sit in a fixed-width prefix so a reader
//! can refuse a newer major version, and check the signature, before it
//! decodes a single byte of the variable-length body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ErrorKind;
use crate::ops::{Id, Timestamp};

/// First bytes of every header entry.
pub const MAGIC: [u8; 8] = *b"SYNCRPKT";
/// Major format version this library writes and reads. A reader refuses any
/// other major version.
pub const FORMAT_MAJOR: u16 = 2;
/// Minor format version this library writes. Readers accept newer minors of
/// their own major (the body may only grow at its end).
///
/// 1 appends the sender's incarnation id ([`Header::incarnation`]);
/// 2 appends the sender's tree digest ([`Header::tree_digest`]);
/// 3 adds special-file path states (kind 6) and metadata keys 2-10;
/// 5 appends the encryption field ([`Header::encryption`]) and entry
/// encodings 2 and 3 (age-encrypted entries). Minor 4 was never used;
/// 6 appends checkpoints to the `creation` entry
/// ([`CreationPayload::checkpoints`]);
/// 7 appends the metadata the tree digest covers
/// ([`TreeDigest::metadata`]); 8 adds chunk groups (chunk codec 3,
/// SPEC.md §5.2); 9 adds key rotation (operation kind 6, `RekeyMember`,
/// SPEC.md §7.1); 10 takes the empty path as the replica root (SPEC.md
/// §6.2.1); 11 puts the root's own entry in the tree digest (digest item
/// [`digest_items::ROOT`]) and appends its parts' digests
/// ([`TreeDigest::root_parts`], SPEC.md §4.1.2); 12 appends the sender's
/// rotations ([`Header::rotations`], SPEC.md §4.3) so hubs can verify a
/// rekeyed member's packets.
pub const FORMAT_MINOR: u16 = 12;
/// The first minor whose header body ends with the incarnation field.
pub const MINOR_WITH_INCARNATION: u16 = 1;
/// The first minor whose header body has the tree digest after the
/// incarnation field.
pub const MINOR_WITH_TREE_DIGEST: u16 = 2;
/// Special-file path states (kind 6) and the metadata keys 2-10 (owners,
/// extended attributes, ACLs, hard-link sets).
pub const MINOR_WITH_SYSTEM_METADATA: u16 = 3;
/// The first minor whose header body has the encryption field after the
/// tree digest, and whose entries may use encodings 2 and 3 (SPEC.md §4.2).
pub const MINOR_WITH_ENCRYPTION: u16 = 5;
/// The first minor whose `creation` entry ends with the checkpoints of the
/// origins whose first operations were scrubbed (SPEC.md §8.1).
pub const MINOR_WITH_CHECKPOINT: u16 = 6;
/// The first minor whose header body ends with the tree digest's metadata
/// field (SPEC.md §4.1.1): what the sender preserves, and what metadata
/// the digest's leaves cover.
pub const MINOR_WITH_DIGEST_METADATA: u16 = 7;
/// First minor whose `chunks` entry may hold chunk groups (codec 3, SPEC.md §5.2).
pub const MINOR_WITH_CHUNK_GROUPS: u16 = 8;
/// First minor whose readers know operation kind 6, `RekeyMember`
/// (SPEC.md §7.1); an older reader refuses a packet carrying it.
pub const MINOR_WITH_REKEY: u16 = 9;
/// First minor whose readers take the empty path, the replica root, as a
/// directory state (SPEC.md §6.2.1): the root's owner, mode, ACLs,
/// attributes and mtime travel.
pub const MINOR_WITH_ROOT_METADATA: u16 = 10;
/// The first minor whose header body ends with the digests of the parts
/// of the replica root's own entry ([`TreeDigest::root_parts`], SPEC.md
/// §4.1.2), and whose digests may cover the root ([`digest_items::ROOT`]).
pub const MINOR_WITH_ROOT_DIGEST: u16 = 11;
/// First minor whose header body ends with the rotations field
/// (SPEC.md §4.3): the sender's `RekeyMember` operations the packet
/// carries, readable without decrypting, so that a hub verifies the
/// packet's new key from a key it trusts.
pub const MINOR_WITH_ROTATIONS: u16 = 12;
/// The most rotations a header may carry (more is `MalformedHeader`).
pub const MAX_HEADER_ROTATIONS: usize = 64;
/// Length of the fixed prefix: magic, major, minor, signer key.
pub(crate) const HEADER_PREFIX_LEN: usize = 8 + 2 + 2 + 32;
/// Domain separation for the signature: the signed message is this string
/// followed by the header entry's bytes exactly as stored.
pub const SIGNATURE_CONTEXT: &[u8] = b"syncreplica packet header v1\n";

/// A packet format version, `major.minor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormatVersion {
    pub major: u16,
    pub minor: u16,
}

impl std::fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What a packet is for. Encoded as a `u32` so that kinds added by later
/// minor versions still decode (as [`PacketKind::Unknown`]) instead of
/// making the whole header unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "u32", into = "u32")]
pub enum PacketKind {
    /// Carries operations (and their content) to sibling replicas.
    Update,
    /// Seeds a new replica of the family.
    ReplicaCreation,
    /// A kind from a newer minor version; it may be listed, never applied.
    Unknown(u32),
}

impl From<u32> for PacketKind {
    fn from(code: u32) -> Self {
        match code {
            1 => PacketKind::Update,
            2 => PacketKind::ReplicaCreation,
            other => PacketKind::Unknown(other),
        }
    }
}

impl From<PacketKind> for u32 {
    fn from(kind: PacketKind) -> u32 {
        match kind {
            PacketKind::Update => 1,
            PacketKind::ReplicaCreation => 2,
            PacketKind::Unknown(other) => other,
        }
    }
}

/// A replica or family: its id and human-readable name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    pub id: Id,
    pub name: String,
}

/// A replica the packet is meant for, and this packet's sequence number in
/// the stream from the sender to that replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub id: Id,
    pub name: String,
    pub seq: u64,
}

/// The first and last epoch of one origin replica carried by the logical
/// packet (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRange {
    pub first: u64,
    pub last: u64,
}

/// How an entry's bytes are stored inside its (zip method Stored) entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "u8", into = "u8")]
pub enum Encoding {
    /// The entry's bytes are the content itself.
    Plain,
    /// The entry's bytes are one zstd frame of the content.
    Zstd,
    /// The entry's bytes are an age file (binary, v1) whose plaintext is
    /// the content (minor 5 on, SPEC.md §4.2).
    AgePlain,
    /// The entry's bytes are an age file whose plaintext is one zstd
    /// frame of the content (minor 5 on).
    AgeZstd,
    /// An encoding from a newer minor version.
    Unknown(u8),
}

impl From<u8> for Encoding {
    fn from(code: u8) -> Self {
        match code {
            0 => Encoding::Plain,
            1 => Encoding::Zstd,
            2 => Encoding::AgePlain,
            3 => Encoding::AgeZstd,
            other => Encoding::Unknown(other),
        }
    }
}

impl Encoding {
    /// Is the entry encrypted (encodings 2 and 3)?
    pub fn is_encrypted(self) -> bool {
        matches!(self, Encoding::AgePlain | Encoding::AgeZstd)
    }
}

impl From<Encoding> for u8 {
    fn from(encoding: Encoding) -> u8 {
        match encoding {
            Encoding::Plain => 0,
            Encoding::Zstd => 1,
            Encoding::AgePlain => 2,
            Encoding::AgeZstd => 3,
            Encoding::Unknown(other) => other,
        }
    }
}

/// The header's pin on one other entry of the same physical packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Fixed entry name (see [`crate::ENTRY_CHUNKS`] and friends).
    pub name: String,
    pub encoding: Encoding,
    /// Bytes of the zip entry.
    pub stored_size: u64,
    /// Bytes after decoding; a reader never decodes more than this.
    pub raw_size: u64,
    /// SHA-256 of the zip entry's bytes (`stored_size` of them).
    pub sha256: [u8; 32],
}

/// The decoded header of one physical packet.
///
/// Field order is the wire order; later minor versions may only append
/// fields at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version read from the fixed prefix (not part of the body).
    #[serde(skip)]
    pub version: FormatVersion,
    /// Ed25519 public key that signed this header (fixed prefix).
    #[serde(skip)]
    pub signer_key: [u8; 32],
    pub kind: PacketKind,
    pub family: Named,
    pub sender: Named,
    pub targets: Vec<Target>,
    /// Identifies the logical packet; equal in all its parts.
    pub packet_id: Id,
    /// This physical part, 1-based.
    pub part: u32,
    /// Number of physical parts of the logical packet.
    pub parts: u32,
    /// Creation time (UTC).
    pub created: Timestamp,
    pub comment: String,
    /// For each origin replica, the epochs carried by the logical packet.
    pub epoch_ranges: BTreeMap<Id, EpochRange>,
    /// The sender's own epoch row: for each origin, the highest epoch it had.
    pub epoch_row: BTreeMap<Id, u64>,
    /// Every entry other than `header` and `signature`, in zip order.
    pub entries: Vec<EntryInfo>,
    /// Number of records in the `operations` entry of this part.
    pub operation_records: u64,
    /// Number of records in the `chunks` entry of this part.
    pub chunk_records: u64,
    /// Minor 1 on: the sending replica's incarnation id, chosen at random
    /// when that copy of the replica was made, so that two copies of one
    /// replica (a creation packet imported twice) can be told apart
    /// (clone detection). `None` in a 2.0 header, or when the writer has
    /// none. Appended after the fields above, so it is not part of the
    /// derived encoding: [`encode_header`] and [`decode_body`] handle it.
    #[serde(skip)]
    pub incarnation: Option<Id>,
    /// Minor 2 on: a digest of the sender's recorded tree at `epoch_row`
    /// (proof of convergence, SPEC.md §4). `None` in older headers, or
    /// when the writer sends none. Appended after `incarnation`.
    #[serde(skip)]
    pub tree_digest: Option<TreeDigest>,
    /// Minor 5 on: to whom the packet's encrypted entries are encrypted
    /// (SPEC.md §4.2). `None`: nothing in the packet is encrypted.
    /// Appended after `tree_digest`.
    #[serde(skip)]
    pub encryption: Option<Encryption>,
    /// Minor 12 on: the sender's own `RekeyMember` operations this packet
    /// carries, each with its seal, in epoch order (SPEC.md §4.3). Empty
    /// in older headers. Appended after the digest metadata.
    #[serde(skip)]
    pub rotations: Vec<HeaderRotation>,
}

/// One of the sender's key rotations, in the clear in the header (SPEC.md
/// §4.3): the `RekeyMember` operation record exactly as the `operations`
/// entry holds it (§6.1), and the signature of the seal of its run (§7,
/// `first = last =` the operation's epoch, no tail), made with the key
/// the rotation replaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRotation {
    pub operation: Vec<u8>,
    pub seal: crate::seals::Signature,
}

/// A rotation read from a header and proved by its seal: `member`'s key
/// `old_key`, good for its epochs up to `epoch`, replaced by `new_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvedRotation {
    pub member: Id,
    pub epoch: u64,
    pub old_key: [u8; 32],
    pub new_key: [u8; 32],
}

impl Header {
    /// The header's rotations (SPEC.md §4.3), each checked: a
    /// `RekeyMember` of the sender about itself, at the operation's epoch,
    /// its seal verifying with its `old_key`; in ascending epoch order,
    /// each one's `old_key` the `new_key` of the one before. An error says
    /// which is wrong. Says nothing of whether the first `old_key` is
    /// trusted: the caller decides that.
    pub fn proved_rotations(&self) -> Result<Vec<ProvedRotation>, String> {
        use crate::ops::{Change, Operation};
        use crate::seals::{link, Seal, END};
        let sender = self.sender.id;
        let mut proved: Vec<ProvedRotation> = Vec::new();
        for (index, rotation) in self.rotations.iter().enumerate() {
            let n = index + 1;
            let op = Operation::decode(&rotation.operation)
                .map_err(|err| format!("rotation {n}: not an operation record: {err}"))?;
            let Change::RekeyMember {
                replica,
                old_key,
                new_key,
                ..
            } = op.change
            else {
                return Err(format!("rotation {n}: not a RekeyMember operation"));
            };
            if op.origin != sender || replica != sender {
                return Err(format!("rotation {n}: not the sender's own rotation"));
            }
            if let Some(before) = proved.last() {
                if op.epoch <= before.epoch || old_key != before.new_key {
                    return Err(format!(
                        "rotation {n}: does not follow the one before (epoch {} after {}, \
                         or from another key)",
                        op.epoch, before.epoch
                    ));
                }
            }
            let seal = Seal {
                origin: sender,
                first: op.epoch,
                last: op.epoch,
                signature: rotation.seal,
                tail: None,
            };
            if op.epoch == 0 || !seal.verify(&old_key, &link(&END, &rotation.operation)) {
                return Err(format!(
                    "rotation {n} (epoch {}): its seal does not verify with the key it replaces",
                    op.epoch
                ));
            }
            proved.push(ProvedRotation {
                member: sender,
                epoch: op.epoch,
                old_key,
                new_key,
            });
        }
        Ok(proved)
    }
}

/// Who can read a packet's encrypted entries (SPEC.md §4.2). Informational
/// for listings and routing: what decides is the age header of each
/// encrypted entry, which the header pins by SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// The replicas whose X25519 keys the entries are encrypted to.
    pub recipients: Vec<EncryptionRecipient>,
    /// The entries are encrypted to a key that travels in the `passkey`
    /// entry, itself encrypted to a passphrase (creation packets).
    pub passphrase: bool,
}

/// One recipient of an encrypted packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionRecipient {
    /// The replica.
    pub id: Id,
    /// Its age X25519 recipient, `age1...` (Bech32, 62 characters).
    pub key: String,
}

/// The sender's tree at the version its header's `epoch_row` names, as a
/// Merkle tree over its recorded entries, restricted to the paths that
/// neither the sender's exclude patterns nor the target's (as the sender
/// last heard them) leave out. See SPEC.md §4 for the leaf and node
/// encodings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDigest {
    /// The sender's exclude patterns (gitignore lines: its configured
    /// excludes, its `.syncreplicaignore` and the files that includes), so
    /// a receiver leaves out the same paths.
    pub patterns: Vec<String>,
    /// SHA-256 of the target's patterns the sender left out as well (the
    /// patterns of an empty list when it has not heard them): a receiver
    /// compares only when its own patterns hash the same.
    pub assumed: [u8; 32],
    /// Live entries (not deleted) covered.
    pub entries: u64,
    /// The root node's digest.
    pub root: [u8; 32],
    /// Digests of the nodes below the root (entries and directories),
    /// breadth first from the root's children, at most
    /// [`MAX_DIGEST_NODES`]: where they differ, a receiver can name the
    /// paths (or, in a large tree, the folders) that differ.
    pub nodes: Vec<DigestNode>,
    /// Minor 7 on: what the sender preserves and what metadata the leaves
    /// cover (SPEC.md §4.1.1). `None` in older headers: the leaves cover
    /// no metadata. Not part of the derived encoding: a header field of
    /// its own, appended after `encryption` ([`encode_header`]).
    #[serde(skip)]
    pub metadata: Option<DigestMetadata>,
    /// Minor 11 on: the digests of the parts of the replica root's own
    /// entry (SPEC.md §4.1.2), so a receiver whose root differs can say in
    /// what. Only with [`digest_items::ROOT`] covered, and not in an
    /// encrypted packet (like `nodes`). Not part of the derived encoding:
    /// a header field of its own, appended after the metadata field.
    #[serde(skip)]
    pub root_parts: Option<RootParts>,
}

/// Minor 11: the replica root's own entry, part by part (SPEC.md §4.1.2):
/// each SHA-256 of that part's bytes, of nothing when the digest does not
/// cover the item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootParts {
    /// `mode & 0o1777` (u32 LE).
    pub mode: [u8; 32],
    /// The time as a covered leaf hashes it (item `TIMES`).
    pub mtime: [u8; 32],
    /// Metadata key 2 (items `OWNER`, `GROUP`).
    pub owner: [u8; 32],
    /// Metadata keys 6 and 8 (item `ACLS`).
    pub acls: [u8; 32],
    /// Metadata key 4 (item `XATTRS`).
    pub xattrs: [u8; 32],
}

/// The metadata items of a [`TreeDigest`] (SPEC.md §4.1.1), as bits of
/// [`DigestMetadata`]'s `preserved` and `covered`.
pub mod digest_items {
    /// The owning user (metadata key 2).
    pub const OWNER: u32 = 1;
    /// The owning group (metadata key 2).
    pub const GROUP: u32 = 2;
    /// POSIX ACLs (metadata keys 6 and 8).
    pub const ACLS: u32 = 4;
    /// Extended attributes (metadata key 4).
    pub const XATTRS: u32 = 8;
    /// Hard-link sets (metadata key 10).
    pub const HARDLINKS: u32 = 16;
    /// Directory and symlink modification times.
    pub const TIMES: u32 = 32;
    /// Minor 11: the replica root's own entry (SPEC.md §4.1.2).
    pub const ROOT: u32 = 64;
    /// Every item this version knows.
    pub const ALL: u32 = 127;
}

/// Minor 7: the metadata side of a [`TreeDigest`] (SPEC.md §4.1.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestMetadata {
    /// The items ([`digest_items`]) the sender preserves: a target covers
    /// at most these in its digests to the sender.
    pub preserved: u32,
    /// The items the leaves cover: those the sender preserves and the
    /// target preserves as the sender last heard (none when it never did).
    pub covered: u32,
}

/// One node (an entry or a directory) of a [`TreeDigest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestNode {
    /// Replica-relative, `/`-separated.
    pub path: Vec<u8>,
    pub digest: [u8; 32],
}

/// Most directory nodes a [`TreeDigest`] carries.
pub const MAX_DIGEST_NODES: usize = 256;

impl Header {
    /// The entry pin named `name`, if the header has one.
    pub fn entry(&self, name: &str) -> Option<&EntryInfo> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Lowercase hex SHA-256 of the signer's public key.
    pub fn signer_fingerprint(&self) -> String {
        key_fingerprint(&self.signer_key)
    }
}

/// Lowercase hex SHA-256 of a 32-byte Ed25519 public key: how keys are
/// named in listings and errors.
pub fn key_fingerprint(public_key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// Encodes `header` as the bytes of a `header` entry, with the version
/// stored in `header.version`.
pub(crate) fn encode_header(header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&header.version.major.to_le_bytes());
    out.extend_from_slice(&header.version.minor.to_le_bytes());
    out.extend_from_slice(&header.signer_key);
    let body = postcard::to_stdvec(header).expect("header encoding cannot fail");
    out.extend_from_slice(&body);
    if header.version.minor >= MINOR_WITH_INCARNATION {
        let field = postcard::to_stdvec(&header.incarnation).expect("encoding cannot fail");
        out.extend_from_slice(&field);
    }
    if header.version.minor >= MINOR_WITH_TREE_DIGEST {
        let field = postcard::to_stdvec(&header.tree_digest).expect("encoding cannot fail");
        out.extend_from_slice(&field);
    }
    if header.version.minor >= MINOR_WITH_ENCRYPTION {
        let field = postcard::to_stdvec(&header.encryption).expect("encoding cannot fail");
        out.extend_from_slice(&field);
    }
    if header.version.minor >= MINOR_WITH_DIGEST_METADATA {
        let metadata = header.tree_digest.as_ref().and_then(|d| d.metadata);
        let field = postcard::to_stdvec(&metadata).expect("encoding cannot fail");
        out.extend_from_slice(&field);
    }
    if header.version.minor >= MINOR_WITH_ROOT_DIGEST {
        let parts = header.tree_digest.as_ref().and_then(|d| d.root_parts);
        let field = postcard::to_stdvec(&parts).expect("encoding cannot fail");
        out.extend_from_slice(&field);
    }
    if header.version.minor >= MINOR_WITH_ROTATIONS {
        let field = postcard::to_stdvec(&header.rotations).expect("encoding cannot fail");
        out.extend_from_slice(&field);
    }
    out
}

/// The fixed prefix of a header entry, checked but not yet authenticated.
pub(crate) struct HeaderPrefix {
    pub version: FormatVersion,
    pub signer_key: [u8; 32],
}

/// Is `version` a newer minor of our major? Such packets may carry fields
/// and entries this reader does not know; it verifies and then ignores them.
// While FORMAT_MINOR is 0 clippy sees `minor > 0` as trivial; it is not once
// the minor grows.
#[allow(clippy::absurd_extreme_comparisons)]
pub(crate) fn is_newer_minor(version: FormatVersion) -> bool {
    version.minor > FORMAT_MINOR
}

/// Checks magic and major version; refuses newer majors before anything else.
pub(crate) fn decode_prefix(bytes: &[u8]) -> Result<HeaderPrefix, ErrorKind> {
    if bytes.len() < 12 || bytes[..8] != MAGIC {
        return Err(ErrorKind::NotAPacket);
    }
    let version = FormatVersion {
        major: u16::from_le_bytes([bytes[8], bytes[9]]),
        minor: u16::from_le_bytes([bytes[10], bytes[11]]),
    };
    if version.major > FORMAT_MAJOR {
        return Err(ErrorKind::NewerFormat { version });
    }
    if version.major < FORMAT_MAJOR {
        return Err(ErrorKind::OlderFormat { version });
    }
    if bytes.len() < HEADER_PREFIX_LEN {
        return Err(ErrorKind::MalformedHeader(
            "shorter than its fixed prefix".into(),
        ));
    }
    let mut signer_key = [0u8; 32];
    signer_key.copy_from_slice(&bytes[12..HEADER_PREFIX_LEN]);
    Ok(HeaderPrefix {
        version,
        signer_key,
    })
}

/// Decodes the body after the prefix has been checked (and, in a full
/// verification, the signature too).
pub(crate) fn decode_body(bytes: &[u8], prefix: &HeaderPrefix) -> Result<Header, ErrorKind> {
    let body = &bytes[HEADER_PREFIX_LEN..];
    let (mut header, mut rest): (Header, &[u8]) = postcard::take_from_bytes(body)
        .map_err(|err| ErrorKind::MalformedHeader(format!("cannot decode body: {err}")))?;
    // Fields appended by minor versions, in the order they were added.
    if prefix.version.minor >= MINOR_WITH_INCARNATION {
        let (incarnation, after): (Option<Id>, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|err| {
                ErrorKind::MalformedHeader(format!("cannot decode the incarnation field: {err}"))
            })?;
        header.incarnation = incarnation;
        rest = after;
    }
    if prefix.version.minor >= MINOR_WITH_TREE_DIGEST {
        let (digest, after): (Option<TreeDigest>, &[u8]) = postcard::take_from_bytes(rest)
            .map_err(|err| {
                ErrorKind::MalformedHeader(format!("cannot decode the tree digest field: {err}"))
            })?;
        if digest
            .as_ref()
            .is_some_and(|d| d.nodes.len() > MAX_DIGEST_NODES)
        {
            return Err(ErrorKind::MalformedHeader(format!(
                "the tree digest carries more than {MAX_DIGEST_NODES} nodes"
            )));
        }
        header.tree_digest = digest;
        rest = after;
    }
    if prefix.version.minor >= MINOR_WITH_ENCRYPTION {
        let (encryption, after): (Option<Encryption>, &[u8]) = postcard::take_from_bytes(rest)
            .map_err(|err| {
                ErrorKind::MalformedHeader(format!("cannot decode the encryption field: {err}"))
            })?;
        header.encryption = encryption;
        rest = after;
    }
    if prefix.version.minor >= MINOR_WITH_DIGEST_METADATA {
        let (metadata, after): (Option<DigestMetadata>, &[u8]) = postcard::take_from_bytes(rest)
            .map_err(|err| {
                ErrorKind::MalformedHeader(format!(
                    "cannot decode the tree digest's metadata field: {err}"
                ))
            })?;
        if let Some(metadata) = metadata {
            let Some(digest) = header.tree_digest.as_mut() else {
                return Err(ErrorKind::MalformedHeader(
                    "tree digest metadata without a tree digest".into(),
                ));
            };
            if metadata.covered & !metadata.preserved != 0 {
                return Err(ErrorKind::MalformedHeader(format!(
                    "the tree digest covers metadata items {:#x} the sender does not preserve \
                     ({:#x})",
                    metadata.covered, metadata.preserved
                )));
            }
            digest.metadata = Some(metadata);
        }
        rest = after;
    }
    if prefix.version.minor >= MINOR_WITH_ROOT_DIGEST {
        let (parts, after): (Option<RootParts>, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|err| {
                ErrorKind::MalformedHeader(format!(
                    "cannot decode the tree digest's root field: {err}"
                ))
            })?;
        if let Some(parts) = parts {
            let covers_root = header
                .tree_digest
                .as_ref()
                .and_then(|d| d.metadata)
                .is_some_and(|m| m.covered & digest_items::ROOT != 0);
            if !covers_root {
                return Err(ErrorKind::MalformedHeader(
                    "the root's parts without a tree digest that covers the root".into(),
                ));
            }
            if let Some(digest) = header.tree_digest.as_mut() {
                digest.root_parts = Some(parts);
            }
        }
        rest = after;
    }
    if prefix.version.minor >= MINOR_WITH_ROTATIONS {
        let (rotations, after): (Vec<HeaderRotation>, &[u8]) = postcard::take_from_bytes(rest)
            .map_err(|err| {
                ErrorKind::MalformedHeader(format!("cannot decode the rotations field: {err}"))
            })?;
        if rotations.len() > MAX_HEADER_ROTATIONS {
            return Err(ErrorKind::MalformedHeader(format!(
                "more than {MAX_HEADER_ROTATIONS} rotations"
            )));
        }
        header.rotations = rotations;
        rest = after;
    }
    // A newer minor may append fields; our own minor has nothing after the body.
    if !rest.is_empty() && !is_newer_minor(prefix.version) {
        return Err(ErrorKind::MalformedHeader(format!(
            "{} unexpected bytes after the body",
            rest.len()
        )));
    }
    header.version = prefix.version;
    header.signer_key = prefix.signer_key;
    if header.part == 0 || header.part > header.parts {
        return Err(ErrorKind::MalformedHeader(format!(
            "part {} of {} is impossible",
            header.part, header.parts
        )));
    }
    for (index, entry) in header.entries.iter().enumerate() {
        if header.entries[..index].iter().any(|e| e.name == entry.name) {
            return Err(ErrorKind::MalformedHeader(format!(
                "entry {:?} is pinned twice",
                entry.name
            )));
        }
    }
    Ok(header)
}

/// A family member as announced in a replica-creation packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: Id,
    pub name: String,
    pub public_key: [u8; 32],
}

/// Contents of the `creation` entry of a replica-creation packet: who the
/// new replica is, the family it joins with every member's key, and the
/// sender's estimates of what each member has (so the new replica does not
/// resend what its siblings already hold).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreationPayload {
    pub new_replica: Named,
    pub members: Vec<Member>,
    /// Member id -> (origin id -> highest epoch that member is believed to have).
    pub estimates: BTreeMap<Id, BTreeMap<Id, u64>>,
    /// Minor 6 on: per origin whose operations `1..=through` the sender no
    /// longer holds (scrubbed), the signed checkpoint covering them; at
    /// most one per origin. Encoded after the fields above, only in packets
    /// of minor [`MINOR_WITH_CHECKPOINT`] or later
    /// ([`encode_creation`]/[`decode_creation`]).
    #[serde(skip)]
    pub checkpoints: Vec<crate::seals::Checkpoint>,
}

/// The bytes of a `creation` entry for a packet of format minor `minor`.
pub fn encode_creation(payload: &CreationPayload, minor: u16) -> Vec<u8> {
    let mut out = postcard::to_stdvec(payload).expect("encoding cannot fail");
    if minor >= MINOR_WITH_CHECKPOINT {
        let field = postcard::to_stdvec(&payload.checkpoints).expect("encoding cannot fail");
        out.extend_from_slice(&field);
    }
    out
}

/// Decodes a `creation` entry of a packet of format `version`: the
/// payload, then the fields later minors appended. Bytes after them are an
/// error unless the packet's minor is newer than this reader's. Errors: a
/// description of what does not decode.
pub fn decode_creation(bytes: &[u8], version: FormatVersion) -> Result<CreationPayload, String> {
    let (mut payload, mut rest) =
        postcard::take_from_bytes::<CreationPayload>(bytes).map_err(|err| err.to_string())?;
    if version.minor >= MINOR_WITH_CHECKPOINT {
        let (checkpoints, after): (Vec<crate::seals::Checkpoint>, &[u8]) =
            postcard::take_from_bytes(rest)
                .map_err(|err| format!("cannot decode the checkpoints: {err}"))?;
        for (index, checkpoint) in checkpoints.iter().enumerate() {
            if checkpoint.through == 0 {
                return Err(format!(
                    "the checkpoint of {} covers no operation",
                    checkpoint.origin
                ));
            }
            if checkpoints[..index]
                .iter()
                .any(|c| c.origin == checkpoint.origin)
            {
                return Err(format!(
                    "two checkpoints of {} (at most one per origin)",
                    checkpoint.origin
                ));
            }
        }
        payload.checkpoints = checkpoints;
        rest = after;
    }
    if !rest.is_empty() && !is_newer_minor(version) {
        return Err("bytes after the payload".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(minor: u16, incarnation: Option<Id>) -> Header {
        Header {
            version: FormatVersion { major: 2, minor },
            signer_key: [7; 32],
            kind: PacketKind::Update,
            family: Named {
                id: Id([1; 16]),
                name: "f".into(),
            },
            sender: Named {
                id: Id([2; 16]),
                name: "s".into(),
            },
            targets: Vec::new(),
            packet_id: Id([3; 16]),
            part: 1,
            parts: 1,
            created: Timestamp::new(1, 0).unwrap(),
            comment: String::new(),
            epoch_ranges: BTreeMap::new(),
            epoch_row: BTreeMap::new(),
            entries: Vec::new(),
            operation_records: 0,
            chunk_records: 0,
            incarnation,
            tree_digest: None,
            encryption: None,
            rotations: Vec::new(),
        }
    }

    fn round_trip(original: &Header) -> Result<Header, ErrorKind> {
        let bytes = encode_header(original);
        let prefix = decode_prefix(&bytes)?;
        decode_body(&bytes, &prefix)
    }

    /// A rotation of sender `Id([2; 16])` at `epoch` from the key of
    /// `old_secret` to `new_key`, sealed with `sealer`.
    fn rotation(
        epoch: u64,
        old_secret: [u8; 32],
        new_key: [u8; 32],
        sealer: [u8; 32],
    ) -> HeaderRotation {
        use crate::ops::{Change, Operation};
        let old_key = ed25519_dalek::SigningKey::from_bytes(&old_secret)
            .verifying_key()
            .to_bytes();
        let op = Operation {
            origin: Id([2; 16]),
            epoch,
            recorded: Timestamp::new(5, 0).unwrap(),
            change: Change::RekeyMember {
                replica: Id([2; 16]),
                old_key,
                new_key,
                encryption_key: "age1".into(),
            },
        };
        let operation = op.encode();
        let head = crate::seals::link(&crate::seals::END, &operation);
        let seal = crate::seals::Seal::sign(&sealer, Id([2; 16]), epoch, epoch, &head);
        HeaderRotation {
            operation,
            seal: seal.signature,
        }
    }

    #[test]
    fn rotations_travel_from_minor_12_and_are_proved_by_their_seals() {
        let key = |secret: [u8; 32]| {
            ed25519_dalek::SigningKey::from_bytes(&secret)
                .verifying_key()
                .to_bytes()
        };
        let mut original = header(MINOR_WITH_ROTATIONS, None);
        original.rotations = vec![
            rotation(4, [1; 32], key([2; 32]), [1; 32]),
            rotation(9, [2; 32], key([3; 32]), [2; 32]),
        ];
        let decoded = round_trip(&original).unwrap();
        assert_eq!(decoded.rotations, original.rotations);
        let proved = decoded.proved_rotations().unwrap();
        assert_eq!(proved.len(), 2);
        assert_eq!(
            (proved[0].old_key, proved[1].new_key),
            (key([1; 32]), key([3; 32]))
        );
        // An older minor carries none.
        assert!(round_trip(&header(MINOR_WITH_ROTATIONS - 1, None))
            .unwrap()
            .rotations
            .is_empty());
        // Sealed by another key than the one it replaces.
        original.rotations[1] = rotation(9, [2; 32], key([3; 32]), [7; 32]);
        assert!(original
            .proved_rotations()
            .unwrap_err()
            .contains("does not verify"));
        // Not a chain.
        original.rotations[1] = rotation(9, [5; 32], key([3; 32]), [5; 32]);
        assert!(original
            .proved_rotations()
            .unwrap_err()
            .contains("does not follow"));
        // Too many.
        original.rotations =
            vec![rotation(4, [1; 32], key([2; 32]), [1; 32]); MAX_HEADER_ROTATIONS + 1];
        assert!(matches!(
            round_trip(&original),
            Err(ErrorKind::MalformedHeader(_))
        ));
    }

    #[test]
    fn incarnation_travels_from_minor_1() {
        for incarnation in [None, Some(Id([9; 16]))] {
            let original = header(1, incarnation);
            assert_eq!(round_trip(&original).unwrap(), original);
        }
    }

    #[test]
    fn tree_digest_travels_from_minor_2_and_not_before() {
        let mut original = header(2, Some(Id([9; 16])));
        original.tree_digest = Some(TreeDigest {
            patterns: vec!["*.o".into()],
            assumed: [4; 32],
            entries: 3,
            root: [5; 32],
            nodes: vec![DigestNode {
                path: b"a".to_vec(),
                digest: [6; 32],
            }],
            metadata: None,
            root_parts: None,
        });
        assert_eq!(round_trip(&original).unwrap(), original);
        let mut older = original.clone();
        older.version.minor = 1;
        assert_eq!(round_trip(&older).unwrap().tree_digest, None);
        // A 2.1 reader of a 2.2 header skips the field (newer minor).
        let bytes = encode_header(&original);
        let mut cut = bytes.clone();
        cut[10] = 1;
        let prefix = decode_prefix(&cut).unwrap();
        assert!(
            matches!(
                decode_body(&cut, &prefix),
                Err(ErrorKind::MalformedHeader(_))
            ),
            "a 2.1 header with trailing bytes is malformed"
        );
    }

    #[test]
    fn digest_metadata_travels_from_minor_7_and_must_go_with_a_digest() {
        let mut original = header(7, None);
        original.tree_digest = Some(TreeDigest {
            patterns: Vec::new(),
            assumed: [4; 32],
            entries: 1,
            root: [5; 32],
            nodes: Vec::new(),
            metadata: Some(DigestMetadata {
                preserved: digest_items::ALL,
                covered: digest_items::OWNER | digest_items::TIMES,
            }),
            root_parts: None,
        });
        assert_eq!(round_trip(&original).unwrap(), original);
        // A 2.6 header has no such field: the leaves cover no metadata.
        let mut older = original.clone();
        older.version.minor = 6;
        let decoded = round_trip(&older).unwrap();
        assert_eq!(decoded.tree_digest.unwrap().metadata, None);
        // Covering what the sender does not preserve is malformed.
        let mut wrong = original.clone();
        wrong.tree_digest.as_mut().unwrap().metadata = Some(DigestMetadata {
            preserved: digest_items::OWNER,
            covered: digest_items::ACLS,
        });
        assert!(matches!(
            round_trip(&wrong),
            Err(ErrorKind::MalformedHeader(why)) if why.contains("does not preserve")
        ));
        // The field without a digest is malformed.
        let mut bytes = encode_header(&header(7, None));
        let last = bytes.len() - 1;
        assert_eq!(bytes[last], 0, "no digest metadata");
        bytes.splice(last.., [1, 1, 1]);
        let prefix = decode_prefix(&bytes).unwrap();
        assert!(matches!(
            decode_body(&bytes, &prefix),
            Err(ErrorKind::MalformedHeader(why)) if why.contains("without a tree digest")
        ));
    }

    #[test]
    fn root_parts_travel_from_minor_11_and_only_with_the_root_covered() {
        let parts = RootParts {
            mode: [1; 32],
            mtime: [2; 32],
            owner: [3; 32],
            acls: [4; 32],
            xattrs: [5; 32],
        };
        let mut original = header(11, None);
        original.tree_digest = Some(TreeDigest {
            patterns: Vec::new(),
            assumed: [4; 32],
            entries: 1,
            root: [5; 32],
            nodes: Vec::new(),
            metadata: Some(DigestMetadata {
                preserved: digest_items::ALL,
                covered: digest_items::ROOT | digest_items::OWNER,
            }),
            root_parts: Some(parts),
        });
        assert_eq!(round_trip(&original).unwrap(), original);
        // A 2.10 header has no such field.
        let mut older = original.clone();
        older.version.minor = 10;
        assert_eq!(
            round_trip(&older).unwrap().tree_digest.unwrap().root_parts,
            None
        );
        // Parts of a root the digest does not cover are malformed.
        let mut wrong = original.clone();
        wrong.tree_digest.as_mut().unwrap().metadata = Some(DigestMetadata {
            preserved: digest_items::ALL,
            covered: digest_items::OWNER,
        });
        assert!(matches!(
            round_trip(&wrong),
            Err(ErrorKind::MalformedHeader(why)) if why.contains("covers the root")
        ));
    }

    #[test]
    fn a_tree_digest_with_too_many_nodes_is_malformed() {
        let mut original = header(2, None);
        let node = DigestNode {
            path: b"a".to_vec(),
            digest: [6; 32],
        };
        original.tree_digest = Some(TreeDigest {
            patterns: Vec::new(),
            assumed: [4; 32],
            entries: 0,
            root: [5; 32],
            nodes: vec![node; MAX_DIGEST_NODES],
            metadata: None,
            root_parts: None,
        });
        assert!(round_trip(&original).is_ok());
        original
            .tree_digest
            .as_mut()
            .unwrap()
            .nodes
            .push(DigestNode {
                path: b"b".to_vec(),
                digest: [7; 32],
            });
        assert!(matches!(
            round_trip(&original),
            Err(ErrorKind::MalformedHeader(why)) if why.contains("more than 256 nodes")
        ));
    }

    #[test]
    fn a_2_0_header_has_no_incarnation_and_still_decodes() {
        let original = header(0, Some(Id([9; 16])));
        let decoded = round_trip(&original).unwrap();
        assert_eq!(decoded.incarnation, None, "2.0 has no such field");
        assert_eq!(decoded.version.minor, 0);
    }

    #[test]
    fn a_minor_1_header_without_the_field_is_malformed() {
        let mut bytes = encode_header(&header(0, None));
        bytes[10] = 1;
        let prefix = decode_prefix(&bytes).unwrap();
        assert!(matches!(
            decode_body(&bytes, &prefix),
            Err(ErrorKind::MalformedHeader(_))
        ));
    }
}
