//! Verifying and reading packets (SPEC.md §12).
//!
//! Order of checks, cheapest and least trusting first: zip structure, header
//! prefix (magic, major version), signature over the header bytes exactly as
//! received, header body, entry set and sizes, then every entry streamed
//! through SHA-256 while its records are decoded with bounded sizes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::container::{self, EntryLocation};
use crate::error::{Error, ErrorKind, Result};
use crate::header::{
    decode_body, decode_prefix, is_newer_minor, key_fingerprint, CreationPayload, Encoding,
    EntryInfo, Header, PacketKind, SIGNATURE_CONTEXT,
};
use crate::ops::{ChunkId, Operation};
use crate::records::{
    ChunkRecordHeader, OpRecordHeader, CHUNK_RECORD_HEADER_LEN, CODEC_GROUP, CODEC_RECIPE,
    CODEC_ZSTD, GROUP_MEMBER_HEADER_LEN, OP_RECORD_HEADER_LEN,
};
use crate::{
    ENTRY_CHUNKS, ENTRY_CREATION, ENTRY_HEADER, ENTRY_OPERATIONS, ENTRY_PASSKEY, ENTRY_SEALS,
    ENTRY_SECRETS, ENTRY_SIGNATURE, MAX_CREATION_LEN, MAX_HEADER_LEN, MAX_PART_SIZE,
};

/// Largest `passkey` or `secrets` entry a reader accepts.
const MAX_KEY_ENTRY_LEN: u64 = 64 * 1024;

/// The secrets a reader may use to decrypt packets (SPEC.md §4.2).
#[derive(Default)]
pub struct Decryption {
    /// This replica's age X25519 identities (current first, then older
    /// ones kept after a key rotation).
    pub identities: Vec<age::x25519::Identity>,
    /// The passphrase of passphrase-encrypted packets, if known.
    pub passphrase: Option<age::secrecy::SecretString>,
    /// Packet keys already recovered from a `passkey` entry, by the
    /// entry's SHA-256: every part of a logical packet carries the same
    /// one, and scrypt is slow on purpose.
    packet_keys: Mutex<HashMap<[u8; 32], Arc<age::x25519::Identity>>>,
}

impl std::fmt::Debug for Decryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryption")
            .field("identities", &self.identities.len())
            .field("passphrase", &self.passphrase.is_some())
            .finish()
    }
}

impl Decryption {
    /// Decryption with these identities and passphrase.
    pub fn new(
        identities: Vec<age::x25519::Identity>,
        passphrase: Option<age::secrecy::SecretString>,
    ) -> Decryption {
        Decryption {
            identities,
            passphrase,
            packet_keys: Mutex::new(HashMap::new()),
        }
    }
}

/// What a reader holds to decrypt one packet's entries.
#[derive(Clone)]
struct Keys {
    decryption: Arc<Decryption>,
    packet_key: Option<Arc<age::x25519::Identity>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.decryption.fmt(f)
    }
}

impl Keys {
    fn identities(&self) -> Vec<&dyn age::Identity> {
        let mut all: Vec<&dyn age::Identity> = self
            .decryption
            .identities
            .iter()
            .map(|id| id as &dyn age::Identity)
            .collect();
        if let Some(key) = &self.packet_key {
            all.push(&**key as &dyn age::Identity);
        }
        all
    }
}

/// Largest zstd window a reader allocates: 8 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Outcome of checking a header's signature against the trusted keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Signed by a trusted key, signature valid.
    Verified,
    /// The signing key is not trusted (the signature itself may be valid);
    /// `fingerprint` names the key.
    UnknownKey { fingerprint: String },
    /// The signature does not match the header: damaged or forged.
    Bad { fingerprint: String },
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureStatus::Verified => write!(f, "verified"),
            SignatureStatus::UnknownKey { fingerprint } => write!(f, "unknown key {fingerprint}"),
            SignatureStatus::Bad { fingerprint } => write!(f, "BAD (key {fingerprint})"),
        }
    }
}

/// One physical packet that passed every check of [`verify_packet`].
#[derive(Clone, Debug)]
pub struct VerifiedPacket {
    path: PathBuf,
    size: u64,
    header: Header,
    creation: Option<CreationPayload>,
    seals: Vec<crate::seals::Seal>,
    locations: Vec<EntryLocation>,
    /// The keys its encrypted entries are read with; `None` when it has
    /// none or was verified without decrypting.
    keys: Option<Keys>,
    /// Some entry is encrypted and was only checked against its pins, not
    /// decrypted: records cannot be read.
    sealed: bool,
    /// The `secrets` entry, decrypted (creation packets with keys).
    secrets: Option<Vec<u8>>,
    /// Told the bytes read while it is verified
    /// ([`verify_packet_with_progress`]); `None` once it is.
    progress: Option<Progress>,
}

/// Called as a packet is verified with the number of bytes of the packet
/// file just read (entry data, in batches of at most
/// [`PROGRESS_BATCH`] bytes, the rest when an entry is done): the sum
/// over a verification is about the file's size (less its zip headers,
/// more where an entry is read twice).
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// Bytes read between two calls of a [`Progress`] callback, at most.
pub const PROGRESS_BATCH: u64 = 1 << 20;

/// What [`examine_packet`] could learn about a packet, damaged or not.
#[derive(Debug)]
pub struct Examination {
    pub path: PathBuf,
    /// File size, if the file could be opened.
    pub size: Option<u64>,
    /// The header, if it could be decoded. Unless `signature` is
    /// [`SignatureStatus::Verified`] it is unauthenticated.
    pub header: Option<Header>,
    pub signature: Option<SignatureStatus>,
    /// The first problem found, `None` if the packet is intact (an unknown
    /// key alone is reported in `signature`, not here).
    pub error: Option<Error>,
}

/// Fully verifies one physical packet: structure, format version, signature
/// by one of `trusted_keys` (Ed25519 public keys), every entry's size and
/// SHA-256, every record's bounds, every whole chunk's SHA-256, and that
/// every operation decodes. Nothing in the packet should be acted on unless
/// this returns `Ok`.
pub fn verify_packet(path: &Path, trusted_keys: &[[u8; 32]]) -> Result<VerifiedPacket> {
    verify_packet_with(path, trusted_keys, None)
}

/// [`verify_packet`], decrypting encrypted entries with `decryption`
/// (SPEC.md §4.2). Without it (a hub), an encrypted entry is checked
/// against its size and SHA-256 only, and the packet verifies with
/// [`VerifiedPacket::is_sealed`] set. With it, a packet none of whose
/// recipients it holds a key of fails with [`ErrorKind::NotForThisReplica`],
/// a passphrase packet without the passphrase with
/// [`ErrorKind::PassphraseNeeded`], a wrong passphrase with
/// [`ErrorKind::WrongPassphrase`].
pub fn verify_packet_with(
    path: &Path,
    trusted_keys: &[[u8; 32]],
    decryption: Option<&Arc<Decryption>>,
) -> Result<VerifiedPacket> {
    verify(path, trusted_keys, decryption, None)
}

/// [`verify_packet_with`], telling `progress` the bytes read as it goes
/// (for a progress bar: the checks read the whole file, which takes
/// seconds for a large part).
pub fn verify_packet_with_progress(
    path: &Path,
    trusted_keys: &[[u8; 32]],
    decryption: Option<&Arc<Decryption>>,
    progress: Progress,
) -> Result<VerifiedPacket> {
    verify(path, trusted_keys, decryption, Some(progress))
}

fn verify(
    path: &Path,
    trusted_keys: &[[u8; 32]],
    decryption: Option<&Arc<Decryption>>,
    progress: Option<Progress>,
) -> Result<VerifiedPacket> {
    let opened = open_checked(path, trusted_keys)?;
    match &opened.status {
        SignatureStatus::Verified => {}
        SignatureStatus::UnknownKey { fingerprint } => {
            return Err(ErrorKind::UnknownKey {
                fingerprint: fingerprint.clone(),
            }
            .at(path))
        }
        SignatureStatus::Bad { fingerprint } => {
            return Err(ErrorKind::BadSignature {
                fingerprint: fingerprint.clone(),
            }
            .at(path))
        }
    }
    let header = decode_body(&opened.header_bytes, &opened.prefix).map_err(|k| k.at(path))?;
    finish_verification(opened, header, decryption, progress)
}

/// Checks a packet as far as possible without failing early, for listings
/// of packets that may be damaged or signed by keys not (yet) trusted.
pub fn examine_packet(path: &Path, trusted_keys: &[[u8; 32]]) -> Examination {
    examine_packet_with(path, trusted_keys, None)
}

/// [`examine_packet`], decrypting with `decryption` where it can (see
/// [`verify_packet_with`]).
pub fn examine_packet_with(
    path: &Path,
    trusted_keys: &[[u8; 32]],
    decryption: Option<&Arc<Decryption>>,
) -> Examination {
    let mut exam = Examination {
        path: path.to_path_buf(),
        size: std::fs::metadata(path).ok().map(|m| m.len()),
        header: None,
        signature: None,
        error: None,
    };
    let opened = match open_checked(path, trusted_keys) {
        Ok(opened) => opened,
        Err(err) => {
            exam.error = Some(err);
            return exam;
        }
    };
    exam.signature = Some(opened.status.clone());
    let header = match decode_body(&opened.header_bytes, &opened.prefix) {
        Ok(header) => header,
        Err(kind) => {
            exam.error = Some(kind.at(path));
            return exam;
        }
    };
    exam.header = Some(header.clone());
    if let SignatureStatus::Bad { fingerprint } = &opened.status {
        exam.error = Some(
            ErrorKind::BadSignature {
                fingerprint: fingerprint.clone(),
            }
            .at(path),
        );
        return exam;
    }
    if let Err(err) = finish_verification(opened, header, decryption, None) {
        exam.error = Some(err);
    }
    exam
}

/// A packet whose structure, prefix and signature have been looked at.
struct Opened {
    path: PathBuf,
    size: u64,
    locations: Vec<EntryLocation>,
    header_bytes: Vec<u8>,
    prefix: crate::header::HeaderPrefix,
    status: SignatureStatus,
}

fn open_checked(path: &Path, trusted_keys: &[[u8; 32]]) -> Result<Opened> {
    let fail = |kind: ErrorKind| kind.at(path);
    let mut file = File::open(path).map_err(|err| fail(ErrorKind::io("opening", err)))?;
    let size = file
        .metadata()
        .map_err(|err| fail(ErrorKind::io("reading metadata", err)))?
        .len();
    if size > MAX_PART_SIZE {
        return Err(fail(ErrorKind::FileTooLarge {
            size,
            limit: MAX_PART_SIZE,
        }));
    }
    let locations = container::scan(&mut file, size).map_err(fail)?;
    let count = locations.len();
    for (index, name) in [
        (count.wrapping_sub(2), ENTRY_HEADER),
        (count - 1, ENTRY_SIGNATURE),
    ] {
        if locations.get(index).map(|l| l.name.as_str()) != Some(name) {
            return Err(fail(if locations.iter().any(|l| l.name == name) {
                ErrorKind::NonCanonicalZip("header and signature must be the last entries".into())
            } else {
                ErrorKind::MissingEntry { name: name.into() }
            }));
        }
    }
    let header_loc = &locations[count - 2];
    if header_loc.size > MAX_HEADER_LEN {
        return Err(fail(ErrorKind::OversizedEntry {
            name: ENTRY_HEADER.into(),
            limit: MAX_HEADER_LEN,
        }));
    }
    let header_bytes = read_small_entry(&mut file, header_loc).map_err(fail)?;
    let signature_loc = &locations[count - 1];
    if signature_loc.size != 64 {
        return Err(fail(ErrorKind::MalformedRecord {
            name: ENTRY_SIGNATURE.into(),
            detail: format!("{} bytes instead of 64", signature_loc.size),
        }));
    }
    let signature: [u8; 64] = read_small_entry(&mut file, signature_loc)
        .map_err(fail)?
        .try_into()
        .expect("size checked");
    let prefix = decode_prefix(&header_bytes).map_err(fail)?;
    let status = signature_status(&prefix.signer_key, &header_bytes, &signature, trusted_keys);
    Ok(Opened {
        path: path.to_path_buf(),
        size,
        locations,
        header_bytes,
        prefix,
        status,
    })
}

/// Checks the signature over the header bytes as received.
fn signature_status(
    key: &[u8; 32],
    header_bytes: &[u8],
    signature: &[u8; 64],
    trusted_keys: &[[u8; 32]],
) -> SignatureStatus {
    let fingerprint = key_fingerprint(key);
    let mut message = Vec::with_capacity(SIGNATURE_CONTEXT.len() + header_bytes.len());
    message.extend_from_slice(SIGNATURE_CONTEXT);
    message.extend_from_slice(header_bytes);
    let valid = VerifyingKey::from_bytes(key).is_ok_and(|key| {
        key.verify_strict(&message, &Signature::from_bytes(signature))
            .is_ok()
    });
    if !valid {
        SignatureStatus::Bad { fingerprint }
    } else if trusted_keys.contains(key) {
        SignatureStatus::Verified
    } else {
        SignatureStatus::UnknownKey { fingerprint }
    }
}

fn read_small_entry(file: &mut File, location: &EntryLocation) -> Result<Vec<u8>, ErrorKind> {
    let mut bytes = vec![0u8; location.size as usize];
    file.seek(SeekFrom::Start(location.data_offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|err| ErrorKind::io(format!("reading entry {:?}", location.name), err))?;
    if crc32fast::hash(&bytes) != location.crc32 {
        return Err(ErrorKind::CrcMismatch {
            name: location.name.clone(),
        });
    }
    Ok(bytes)
}

/// Is `name` an entry this version knows?
fn is_known_entry(name: &str) -> bool {
    matches!(
        name,
        ENTRY_CHUNKS
            | ENTRY_OPERATIONS
            | ENTRY_CREATION
            | ENTRY_SEALS
            | ENTRY_PASSKEY
            | ENTRY_SECRETS
    )
}

/// Checks that the zip entries are exactly those the header pins, in the
/// header's order, with the pinned sizes and sane encodings.
fn check_entry_set(header: &Header, locations: &[EntryLocation]) -> Result<(), ErrorKind> {
    let data_locations = &locations[..locations.len() - 2];
    for location in data_locations {
        if header.entry(&location.name).is_none() {
            return Err(ErrorKind::UnexpectedEntry {
                name: location.name.clone(),
            });
        }
    }
    for (index, entry) in header.entries.iter().enumerate() {
        let Some(location) = data_locations.get(index) else {
            return Err(ErrorKind::MissingEntry {
                name: entry.name.clone(),
            });
        };
        if location.name != entry.name {
            return Err(if data_locations.iter().any(|l| l.name == entry.name) {
                ErrorKind::NonCanonicalZip("entries are not in header order".into())
            } else {
                ErrorKind::MissingEntry {
                    name: entry.name.clone(),
                }
            });
        }
        if !is_known_entry(&entry.name) && !is_newer_minor(header.version) {
            return Err(ErrorKind::UnexpectedEntry {
                name: entry.name.clone(),
            });
        }
        if location.size != entry.stored_size {
            return Err(ErrorKind::EntrySizeMismatch {
                name: entry.name.clone(),
                declared: entry.stored_size,
                actual: location.size,
            });
        }
        let can_encrypt =
            header.version.minor >= crate::MINOR_WITH_ENCRYPTION && header.encryption.is_some();
        let encoding_ok = match entry.encoding {
            Encoding::Plain => entry.raw_size == entry.stored_size && entry.name != ENTRY_SECRETS,
            Encoding::Zstd => entry.name == ENTRY_OPERATIONS || !is_known_entry(&entry.name),
            Encoding::AgePlain => {
                can_encrypt
                    && matches!(
                        entry.name.as_str(),
                        ENTRY_CHUNKS | ENTRY_OPERATIONS | ENTRY_CREATION | ENTRY_SECRETS
                    )
            }
            Encoding::AgeZstd => can_encrypt && entry.name == ENTRY_OPERATIONS,
            Encoding::Unknown(_) => false,
        };
        if !encoding_ok {
            return Err(ErrorKind::UnknownEncoding {
                name: entry.name.clone(),
            });
        }
        let limit = match entry.name.as_str() {
            ENTRY_CREATION => MAX_CREATION_LEN,
            ENTRY_PASSKEY | ENTRY_SECRETS => MAX_KEY_ENTRY_LEN,
            ENTRY_SEALS => crate::MAX_SEALS_LEN,
            _ => MAX_PART_SIZE,
        };
        if entry.raw_size > limit {
            return Err(ErrorKind::OversizedEntry {
                name: entry.name.clone(),
                limit,
            });
        }
    }
    for required in [ENTRY_CHUNKS, ENTRY_OPERATIONS, ENTRY_SEALS] {
        if header.entry(required).is_none() {
            return Err(ErrorKind::MissingEntry {
                name: required.into(),
            });
        }
    }
    let has_creation = header.entry(ENTRY_CREATION).is_some();
    match (header.kind == PacketKind::ReplicaCreation, has_creation) {
        (true, false) => Err(ErrorKind::MissingEntry {
            name: ENTRY_CREATION.into(),
        }),
        (false, true) => Err(ErrorKind::UnexpectedEntry {
            name: ENTRY_CREATION.into(),
        }),
        _ => Ok(()),
    }?;
    if !has_creation && header.entry(ENTRY_SECRETS).is_some() {
        return Err(ErrorKind::UnexpectedEntry {
            name: ENTRY_SECRETS.into(),
        });
    }
    let passphrase = header.encryption.as_ref().is_some_and(|e| e.passphrase);
    if passphrase != header.entry(ENTRY_PASSKEY).is_some() {
        return Err(if passphrase {
            ErrorKind::MissingEntry {
                name: ENTRY_PASSKEY.into(),
            }
        } else {
            ErrorKind::UnexpectedEntry {
                name: ENTRY_PASSKEY.into(),
            }
        });
    }
    let encrypted = header.entries.iter().any(|e| e.encoding.is_encrypted());
    if header.encryption.is_some() && !encrypted {
        return Err(ErrorKind::MalformedHeader(
            "the header names recipients but no entry is encrypted".into(),
        ));
    }
    Ok(())
}

/// Recovers the packet key from the `passkey` entry with the passphrase.
fn packet_key(
    packet: &VerifiedPacket,
    decryption: &Decryption,
) -> Result<Arc<age::x25519::Identity>> {
    let path = &packet.path;
    let bytes = packet.read_whole_entry(ENTRY_PASSKEY, Mode::Verify)?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if let Some(key) = decryption
        .packet_keys
        .lock()
        .expect("not poisoned")
        .get(&digest)
    {
        return Ok(key.clone());
    }
    let Some(passphrase) = &decryption.passphrase else {
        return Err(ErrorKind::PassphraseNeeded.at(path));
    };
    let identity = age::scrypt::Identity::new(passphrase.clone());
    let decryptor = age::Decryptor::new_buffered(&bytes[..]).map_err(|err| {
        ErrorKind::Decryption {
            name: ENTRY_PASSKEY.into(),
            detail: err.to_string(),
        }
        .at(path)
    })?;
    let mut plain = String::new();
    match decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)) {
        Ok(mut reader) => reader.read_to_string(&mut plain).map_err(|err| {
            ErrorKind::Decryption {
                name: ENTRY_PASSKEY.into(),
                detail: err.to_string(),
            }
            .at(path)
        })?,
        Err(age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys) => {
            return Err(ErrorKind::WrongPassphrase.at(path))
        }
        Err(err) => {
            return Err(ErrorKind::Decryption {
                name: ENTRY_PASSKEY.into(),
                detail: err.to_string(),
            }
            .at(path))
        }
    };
    let key: age::x25519::Identity = plain.trim().parse().map_err(|err: &str| {
        ErrorKind::Decryption {
            name: ENTRY_PASSKEY.into(),
            detail: err.to_string(),
        }
        .at(path)
    })?;
    let key = Arc::new(key);
    decryption
        .packet_keys
        .lock()
        .expect("not poisoned")
        .insert(digest, key.clone());
    Ok(key)
}

fn finish_verification(
    opened: Opened,
    header: Header,
    decryption: Option<&Arc<Decryption>>,
    progress: Option<Progress>,
) -> Result<VerifiedPacket> {
    let path = opened.path;
    check_entry_set(&header, &opened.locations).map_err(|k| k.at(&path))?;
    let encrypted = header.entries.iter().any(|e| e.encoding.is_encrypted());
    let mut packet = VerifiedPacket {
        path,
        size: opened.size,
        header,
        creation: None,
        seals: Vec::new(),
        locations: opened.locations,
        keys: None,
        sealed: false,
        secrets: None,
        progress,
    };
    if packet.header.entry(ENTRY_PASSKEY).is_some() {
        // Checked against its pins whether or not it can be opened.
        packet.read_whole_entry(ENTRY_PASSKEY, Mode::Verify)?;
    }
    if encrypted {
        match decryption {
            None => packet.sealed = true,
            Some(decryption) => {
                let packet_key = if packet.header.entry(ENTRY_PASSKEY).is_some() {
                    match packet_key(&packet, decryption) {
                        Ok(key) => Some(key),
                        // A member-encrypted packet that also has a
                        // passphrase is read with the member's key.
                        Err(err)
                            if !decryption.identities.is_empty()
                                && packet
                                    .header
                                    .encryption
                                    .as_ref()
                                    .is_some_and(|e| !e.recipients.is_empty())
                                && matches!(err.kind, ErrorKind::PassphraseNeeded) =>
                        {
                            None
                        }
                        Err(err) => return Err(err),
                    }
                } else {
                    None
                };
                packet.keys = Some(Keys {
                    decryption: decryption.clone(),
                    packet_key,
                });
            }
        }
    }
    if packet.sealed {
        // A hub: every encrypted entry against its size and SHA-256 only.
        let names: Vec<String> = packet
            .header
            .entries
            .iter()
            .filter(|e| e.encoding.is_encrypted())
            .map(|e| e.name.clone())
            .collect();
        for name in names {
            let location = packet.location(&name).clone();
            let entry = packet.header.entry(&name).expect("pinned").clone();
            let mut stream = packet.stream(&location)?;
            stream
                .finish(&entry, &location, Mode::Verify)
                .map_err(|k| k.at(&packet.path))?;
        }
        return finish_seals(packet);
    }
    // Stream every entry once, decoding records as the importer will.
    // Records, not chunks: a chunk group is one record of several chunks.
    let mut pieces = packet.pieces(Mode::Verify)?;
    for piece in pieces.by_ref() {
        piece?;
    }
    let chunk_records = pieces.reader.index;
    let mut operation_records = 0u64;
    for record in packet.records(Mode::Verify)? {
        record?;
        operation_records += 1;
    }
    if chunk_records != packet.header.chunk_records
        || operation_records != packet.header.operation_records
    {
        return Err(ErrorKind::MalformedHeader(format!(
            "header counts {} chunk and {} operation records, entries hold {chunk_records} and {operation_records}",
            packet.header.chunk_records, packet.header.operation_records
        ))
        .at(&packet.path));
    }
    if packet.header.entry(ENTRY_CREATION).is_some() {
        let bytes = packet.read_whole_entry(ENTRY_CREATION, Mode::Verify)?;
        let payload =
            crate::header::decode_creation(&bytes, packet.header.version).map_err(|detail| {
                ErrorKind::MalformedRecord {
                    name: ENTRY_CREATION.into(),
                    detail,
                }
                .at(&packet.path)
            })?;
        packet.creation = Some(payload);
    }
    if packet.header.entry(ENTRY_SECRETS).is_some() {
        packet.secrets = Some(packet.read_whole_entry(ENTRY_SECRETS, Mode::Verify)?);
    }
    finish_seals(packet)
}

/// Reads the seals, then checks (and ignores) entries of newer minors.
fn finish_seals(mut packet: VerifiedPacket) -> Result<VerifiedPacket> {
    let bytes = packet.read_whole_entry(ENTRY_SEALS, Mode::Verify)?;
    let malformed = |detail: String| {
        ErrorKind::MalformedRecord {
            name: ENTRY_SEALS.into(),
            detail,
        }
        .at(&packet.path)
    };
    let seals = match postcard::take_from_bytes::<Vec<crate::seals::Seal>>(&bytes) {
        Ok((seals, [])) => seals,
        Ok(_) => return Err(malformed("bytes after the seals".into())),
        Err(err) => return Err(malformed(err.to_string())),
    };
    if let Some(seal) = seals.iter().find(|seal| !seal.is_well_formed()) {
        return Err(malformed(format!(
            "seal of {} for epochs {}..={} is malformed",
            seal.origin, seal.first, seal.last
        )));
    }
    packet.seals = seals;
    // Entries from a newer minor version: check them, then ignore them.
    let unknown: Vec<String> = packet
        .header
        .entries
        .iter()
        .filter(|e| !is_known_entry(&e.name))
        .map(|e| e.name.clone())
        .collect();
    for name in unknown {
        let location = packet.location(&name).clone();
        let entry = packet.header.entry(&name).expect("pinned").clone();
        let mut stream = packet.stream(&location)?;
        stream
            .finish(&entry, &location, Mode::Verify)
            .map_err(|k| k.at(&packet.path))?;
    }
    // Verified: later reads (the import's) are not the verification's.
    packet.progress = None;
    Ok(packet)
}

/// Whether a digest mismatch means damage (first check) or that the file
/// was replaced after it was verified (reading later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Verify,
    Read,
}

impl VerifiedPacket {
    /// An entry's stream, telling [`Self::progress`] what it reads.
    fn stream(&self, location: &EntryLocation) -> Result<EntryStream> {
        let mut stream = EntryStream::open(&self.path, location)?;
        stream.progress = self.progress.clone();
        Ok(stream)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// File size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The replica-creation payload, for creation packets (`None` when
    /// it is encrypted and was not decrypted).
    pub fn creation(&self) -> Option<&CreationPayload> {
        self.creation.as_ref()
    }

    /// Is some entry encrypted and not decrypted (verified by a reader
    /// without keys)? Its records and creation payload cannot be read.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Is any of its entries encrypted?
    pub fn is_encrypted(&self) -> bool {
        self.header
            .entries
            .iter()
            .any(|e| e.encoding.is_encrypted())
    }

    /// The decrypted `secrets` entry of a creation packet.
    pub fn secrets(&self) -> Option<&[u8]> {
        self.secrets.as_deref()
    }

    /// The origin seals this part carries (every part carries all of the
    /// logical packet's; SPEC.md §7).
    pub fn seals(&self) -> &[crate::seals::Seal] {
        &self.seals
    }

    /// Streams the chunk pieces of this part, in stored order. Whole chunks
    /// are checked against their SHA-256 as they are read; pieces of split
    /// chunks are checked by [`crate::LogicalPacket`] once reassembled. The
    /// entry is re-hashed while reading: the last item is an error if the
    /// file changed since verification, so act on the data only after the
    /// iterator has ended cleanly.
    pub fn chunk_pieces(&self) -> Result<ChunkPieces> {
        self.pieces(Mode::Read)
    }

    /// Streams the operation records of this part; see [`Self::chunk_pieces`]
    /// for the end-of-stream check.
    pub fn operation_records(&self) -> Result<OperationRecords> {
        self.records(Mode::Read)
    }

    fn location(&self, name: &str) -> &EntryLocation {
        self.locations
            .iter()
            .find(|l| l.name == name)
            .expect("entry set checked")
    }

    fn record_reader(&self, name: &str, mode: Mode) -> Result<RecordReader> {
        let location = self.location(name).clone();
        let entry = self.header.entry(name).expect("entry set checked").clone();
        let stream = self.stream(&location)?;
        let content = match entry.encoding {
            Encoding::Plain => Content::Plain(stream),
            Encoding::AgePlain | Encoding::AgeZstd => self.decrypting(stream, &entry, &location)?,
            _ => {
                let zstd_error = |err: std::io::Error| {
                    ErrorKind::Decompression {
                        name: name.into(),
                        detail: err.to_string(),
                    }
                    .at(&self.path)
                };
                let mut decoder = zstd::stream::read::Decoder::with_buffer(BufReader::new(stream))
                    .map_err(zstd_error)?
                    .single_frame();
                // A frame may ask for a window of up to 2 GiB; refuse more
                // than we write (level 3 uses at most 2 MiB) with margin, to
                // keep memory bounded whatever the packet says.
                decoder
                    .window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .map_err(zstd_error)?;
                Content::Zstd(Box::new(decoder))
            }
        };
        Ok(RecordReader {
            path: self.path.clone(),
            raw_left: entry.raw_size,
            entry,
            location,
            content: Some(content),
            mode,
            index: 0,
            must_end: false,
            done: false,
        })
    }

    /// Opens an encrypted entry for reading through age.
    fn decrypting(
        &self,
        stream: EntryStream,
        entry: &EntryInfo,
        location: &EntryLocation,
    ) -> Result<Content> {
        let name = entry.name.clone();
        let Some(keys) = &self.keys else {
            return Err(ErrorKind::Encrypted { name }.at(&self.path));
        };
        let shared = Rc::new(RefCell::new(stream));
        let failed = |detail: String| {
            // Damage first: a ciphertext that does not match its pin is
            // reported as such, not as a decryption failure.
            if let Ok(mut stream) = EntryStream::open(&self.path, location) {
                if let Err(kind @ ErrorKind::DigestMismatch { .. }) =
                    stream.finish(entry, location, Mode::Verify)
                {
                    return kind.at(&self.path);
                }
            }
            ErrorKind::Decryption {
                name: entry.name.clone(),
                detail,
            }
            .at(&self.path)
        };
        let decryptor = age::Decryptor::new_buffered(BufReader::new(SharedStream(shared.clone())))
            .map_err(|err| failed(err.to_string()))?;
        let reader = match decryptor.decrypt(keys.identities().into_iter()) {
            Ok(reader) => reader,
            Err(age::DecryptError::NoMatchingKeys) => {
                let recipients = self
                    .header
                    .encryption
                    .as_ref()
                    .map(|e| {
                        e.recipients
                            .iter()
                            .map(|r| r.id.to_hex())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                return Err(ErrorKind::NotForThisReplica { recipients }.at(&self.path));
            }
            Err(err) => return Err(failed(err.to_string())),
        };
        Ok(if entry.encoding == Encoding::AgeZstd {
            let zstd_error = |err: std::io::Error| {
                ErrorKind::Decompression {
                    name: name.clone(),
                    detail: err.to_string(),
                }
                .at(&self.path)
            };
            let mut decoder = zstd::stream::read::Decoder::with_buffer(BufReader::new(reader))
                .map_err(zstd_error)?
                .single_frame();
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(zstd_error)?;
            Content::AgeZstd(Box::new(decoder), shared)
        } else {
            Content::Age(Box::new(reader), shared)
        })
    }

    fn pieces(&self, mode: Mode) -> Result<ChunkPieces> {
        Ok(ChunkPieces {
            reader: self.record_reader(ENTRY_CHUNKS, mode)?,
            groups: self.header.version.minor >= crate::MINOR_WITH_CHUNK_GROUPS,
            queued: std::collections::VecDeque::new(),
        })
    }

    fn records(&self, mode: Mode) -> Result<OperationRecords> {
        Ok(OperationRecords {
            reader: self.record_reader(ENTRY_OPERATIONS, mode)?,
        })
    }

    fn read_whole_entry(&self, name: &str, mode: Mode) -> Result<Vec<u8>> {
        let mut reader = self.record_reader(name, mode)?;
        let mut bytes = vec![0u8; reader.raw_left as usize];
        reader
            .read_exact_raw(&mut bytes)
            .map_err(|k| reader.fail(k))?;
        match reader.at_end() {
            Ok(true) => Ok(bytes),
            Ok(false) => unreachable!("all bytes were read"),
            Err(kind) => Err(reader.fail(kind)),
        }
    }
}

/// Reads one zip entry's bytes, hashing them as they go by.
struct EntryStream {
    inner: Take<BufReader<File>>,
    sha: Sha256,
    crc: crc32fast::Hasher,
    /// Told the bytes read, [`PROGRESS_BATCH`] at a time and the rest on
    /// drop.
    progress: Option<Progress>,
    /// Bytes read not yet told.
    unreported: u64,
}

impl EntryStream {
    fn open(path: &Path, location: &EntryLocation) -> Result<EntryStream> {
        let mut file = File::open(path).map_err(|err| ErrorKind::io("reopening", err).at(path))?;
        file.seek(SeekFrom::Start(location.data_offset))
            .map_err(|err| ErrorKind::io("seeking", err).at(path))?;
        Ok(EntryStream {
            inner: BufReader::with_capacity(1 << 18, file).take(location.size),
            sha: Sha256::new(),
            crc: crc32fast::Hasher::new(),
            progress: None,
            unreported: 0,
        })
    }

    fn report(&mut self) {
        if let Some(progress) = &self.progress {
            if self.unreported > 0 {
                (progress.0)(self.unreported);
            }
        }
        self.unreported = 0;
    }

    /// Hashes whatever was not read yet and compares with the pins.
    fn finish(
        &mut self,
        entry: &EntryInfo,
        location: &EntryLocation,
        mode: Mode,
    ) -> Result<(), ErrorKind> {
        std::io::copy(self, &mut std::io::sink())
            .map_err(|err| ErrorKind::io(format!("reading entry {:?}", entry.name), err))?;
        if self.inner.limit() != 0 {
            return Err(ErrorKind::Truncated(format!(
                "entry {:?} is cut short",
                entry.name
            )));
        }
        let sha: [u8; 32] = std::mem::take(&mut self.sha).finalize().into();
        if sha != entry.sha256 {
            return Err(match mode {
                Mode::Verify => ErrorKind::DigestMismatch {
                    name: entry.name.clone(),
                },
                Mode::Read => ErrorKind::ChangedSinceVerification {
                    name: entry.name.clone(),
                },
            });
        }
        if std::mem::take(&mut self.crc).finalize() != location.crc32 {
            return Err(ErrorKind::CrcMismatch {
                name: entry.name.clone(),
            });
        }
        Ok(())
    }
}

impl Read for EntryStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.unreported += n as u64;
        if self.unreported >= PROGRESS_BATCH {
            self.report();
        }
        Ok(n)
    }
}

impl Drop for EntryStream {
    fn drop(&mut self) {
        self.report();
    }
}

/// An entry stream that the age decryptor reads while the reader keeps
/// hold of it, to check its pins at the end.
struct SharedStream(Rc<RefCell<EntryStream>>);

impl Read for SharedStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

type AgeReader = age::stream::StreamReader<BufReader<SharedStream>>;

/// An entry's decoded content.
enum Content {
    Plain(EntryStream),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<EntryStream>>>),
    Age(Box<AgeReader>, Rc<RefCell<EntryStream>>),
    AgeZstd(
        Box<zstd::stream::read::Decoder<'static, BufReader<AgeReader>>>,
        Rc<RefCell<EntryStream>>,
    ),
}

impl Content {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Content::Plain(stream) => stream.read(buf),
            Content::Zstd(decoder) => decoder.read(buf),
            Content::Age(reader, _) => reader.read(buf),
            Content::AgeZstd(decoder, _) => decoder.read(buf),
        }
    }

    fn is_decoding(&self) -> bool {
        !matches!(self, Content::Plain(_))
    }

    /// The underlying stream, and whether the decoder left bytes unused.
    fn into_stream(self) -> (EntryStream, bool) {
        let unshare = |shared: Rc<RefCell<EntryStream>>| {
            Rc::try_unwrap(shared)
                .ok()
                .expect("the decoder that shared it is gone")
                .into_inner()
        };
        match self {
            Content::Plain(stream) => (stream, false),
            Content::Zstd(decoder) => {
                let buffered = decoder.finish();
                let leftover = !buffered.buffer().is_empty();
                (buffered.into_inner(), leftover)
            }
            Content::Age(reader, shared) => {
                drop(reader);
                (unshare(shared), false)
            }
            Content::AgeZstd(decoder, shared) => {
                let leftover = !decoder.finish().buffer().is_empty();
                (unshare(shared), leftover)
            }
        }
    }
}

/// Reads length-checked records from an entry's content, never more than
/// the header's declared raw size, and checks the entry's pins at the end.
struct RecordReader {
    path: PathBuf,
    entry: EntryInfo,
    location: EntryLocation,
    content: Option<Content>,
    raw_left: u64,
    mode: Mode,
    index: u64,
    /// The previous record was an unfinished piece: nothing may follow.
    must_end: bool,
    done: bool,
}

impl RecordReader {
    fn fail(&mut self, kind: ErrorKind) -> Error {
        self.done = true;
        // A record that fails to parse in an entry whose digest is wrong is
        // reported as the digest failure: that is the actual cause.
        let kind = match kind {
            ErrorKind::DigestMismatch { .. }
            | ErrorKind::ChangedSinceVerification { .. }
            | ErrorKind::CrcMismatch { .. } => kind,
            other => match self.content.take() {
                Some(content) => {
                    let (mut stream, _) = content.into_stream();
                    match stream.finish(&self.entry, &self.location, self.mode) {
                        Err(
                            digest @ (ErrorKind::DigestMismatch { .. }
                            | ErrorKind::ChangedSinceVerification { .. }),
                        ) => digest,
                        _ => other,
                    }
                }
                None => other,
            },
        };
        kind.at(&self.path)
    }

    fn malformed(&self, detail: impl Into<String>) -> ErrorKind {
        ErrorKind::MalformedRecord {
            name: self.entry.name.clone(),
            detail: detail.into(),
        }
    }

    fn read_exact_raw(&mut self, buf: &mut [u8]) -> Result<(), ErrorKind> {
        if buf.len() as u64 > self.raw_left {
            return Err(self.malformed("record runs past the entry's declared size"));
        }
        let content = self.content.as_mut().expect("reader still open");
        let mut filled = 0;
        while filled < buf.len() {
            match content.read(&mut buf[filled..]) {
                Ok(0) => return Err(self.malformed("entry ends inside a record")),
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(if content.is_decoding() {
                        ErrorKind::Decompression {
                            name: self.entry.name.clone(),
                            detail: err.to_string(),
                        }
                    } else {
                        ErrorKind::io(format!("reading entry {:?}", self.entry.name), err)
                    })
                }
            }
        }
        self.raw_left -= buf.len() as u64;
        Ok(())
    }

    /// At a record boundary: is the content over? If so, checks that it
    /// really ends here and that the entry matches its pins.
    fn at_end(&mut self) -> Result<bool, ErrorKind> {
        if self.raw_left > 0 {
            return Ok(false);
        }
        let mut content = self.content.take().expect("reader still open");
        let mut probe = [0u8; 1];
        let more = loop {
            match content.read(&mut probe) {
                Ok(n) => break n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(ErrorKind::Decompression {
                        name: self.entry.name.clone(),
                        detail: err.to_string(),
                    })
                }
            }
        };
        let (mut stream, leftover) = content.into_stream();
        let pins = stream.finish(&self.entry, &self.location, self.mode);
        pins?;
        if more != 0 {
            return Err(ErrorKind::OversizedEntry {
                name: self.entry.name.clone(),
                limit: self.entry.raw_size,
            });
        }
        if leftover {
            return Err(self.malformed("bytes after the zstd frame"));
        }
        self.done = true;
        Ok(true)
    }

    /// Piece placement: a piece continuing an earlier part's record must be
    /// the first record, and an unfinished piece must be the last.
    fn check_piece_position(&mut self, offset: u32, len: u32, total: u32) -> Result<(), ErrorKind> {
        if self.must_end {
            return Err(self.malformed("record after an unfinished piece"));
        }
        if offset > 0 && self.index > 0 {
            return Err(self.malformed("continuation piece is not the first record"));
        }
        if offset as u64 + len as u64 != total as u64 {
            self.must_end = true;
        }
        self.index += 1;
        Ok(())
    }
}

/// A piece of a chunk: the whole chunk when `offset == 0` and
/// `data.len() == chunk_len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPiece {
    pub id: ChunkId,
    pub chunk_len: u32,
    pub offset: u32,
    /// `data` is an encoded [`crate::delta::Recipe`] for the whole chunk
    /// (codec 2), not the chunk's bytes.
    pub recipe: bool,
    pub data: Vec<u8>,
}

impl ChunkPiece {
    /// Whether `data` holds the whole chunk's bytes.
    pub fn is_whole(&self) -> bool {
        !self.recipe && self.offset == 0 && self.data.len() == self.chunk_len as usize
    }
}

/// Iterator over the chunk pieces of one part.
pub struct ChunkPieces {
    reader: RecordReader,
    /// The packet's minor allows chunk groups (codec 3, SPEC.md §5.2).
    groups: bool,
    /// The rest of a chunk group's chunks, each checked already.
    queued: std::collections::VecDeque<ChunkPiece>,
}

impl ChunkPieces {
    fn next_piece(&mut self) -> Result<Option<ChunkPiece>, ErrorKind> {
        if let Some(piece) = self.queued.pop_front() {
            return Ok(Some(piece));
        }
        let reader = &mut self.reader;
        if reader.at_end()? {
            return Ok(None);
        }
        let mut fixed = [0u8; CHUNK_RECORD_HEADER_LEN];
        reader.read_exact_raw(&mut fixed)?;
        let record = ChunkRecordHeader::decode(&fixed);
        if record.codec == CODEC_GROUP && !self.groups {
            return Err(reader.malformed(format!(
                "unknown codec {CODEC_GROUP} (chunk groups need format 2.{} or later)",
                crate::MINOR_WITH_CHUNK_GROUPS
            )));
        }
        record.check().map_err(|detail| reader.malformed(detail))?;
        reader.check_piece_position(record.offset, record.piece_len, record.chunk_len)?;
        let mut stored = vec![0u8; record.stored_len as usize];
        reader.read_exact_raw(&mut stored)?;
        if record.codec == CODEC_GROUP {
            self.queued = decode_group(reader, &record, &stored)?;
            return Ok(self.queued.pop_front());
        }
        let data = if record.codec == CODEC_RECIPE {
            stored
        } else if record.codec == CODEC_ZSTD {
            let data =
                zstd::bulk::decompress(&stored, record.piece_len as usize).map_err(|err| {
                    ErrorKind::Decompression {
                        name: reader.entry.name.clone(),
                        detail: format!("chunk {}: {err}", hex::encode(record.id)),
                    }
                })?;
            if data.len() != record.piece_len as usize {
                return Err(reader.malformed("piece decompresses to the wrong length"));
            }
            data
        } else {
            stored
        };
        let piece = ChunkPiece {
            id: record.id,
            chunk_len: record.chunk_len,
            offset: record.offset,
            recipe: record.codec == CODEC_RECIPE,
            data,
        };
        if piece.is_whole() && Sha256::digest(&piece.data).as_slice() != piece.id {
            return Err(ErrorKind::ChunkDigestMismatch {
                chunk: hex::encode(piece.id),
            });
        }
        Ok(Some(piece))
    }
}

/// The chunks of a chunk group record (SPEC.md §5.2), each checked
/// against its id.
fn decode_group(
    reader: &RecordReader,
    record: &ChunkRecordHeader,
    stored: &[u8],
) -> Result<std::collections::VecDeque<ChunkPiece>, ErrorKind> {
    let decoded = zstd::bulk::decompress(stored, record.piece_len as usize).map_err(|err| {
        ErrorKind::Decompression {
            name: reader.entry.name.clone(),
            detail: format!("chunk group: {err}"),
        }
    })?;
    if decoded.len() != record.piece_len as usize {
        return Err(reader.malformed("chunk group decompresses to the wrong length"));
    }
    let mut chunks = std::collections::VecDeque::new();
    let mut rest = decoded.as_slice();
    while !rest.is_empty() {
        if rest.len() < GROUP_MEMBER_HEADER_LEN {
            return Err(reader.malformed("chunk group ends inside a chunk's head"));
        }
        let id: ChunkId = rest[..32].try_into().expect("32 bytes");
        let len = u32::from_le_bytes(rest[32..36].try_into().expect("4 bytes"));
        rest = &rest[GROUP_MEMBER_HEADER_LEN..];
        if len == 0 || len as usize > crate::MAX_CHUNK_LEN || len as usize > rest.len() {
            return Err(reader.malformed(format!(
                "chunk {} in a group: length {len} out of range",
                hex::encode(id)
            )));
        }
        let (data, after) = rest.split_at(len as usize);
        rest = after;
        if Sha256::digest(data).as_slice() != id {
            return Err(ErrorKind::ChunkDigestMismatch {
                chunk: hex::encode(id),
            });
        }
        chunks.push_back(ChunkPiece {
            id,
            chunk_len: len,
            offset: 0,
            recipe: false,
            data: data.to_vec(),
        });
    }
    if chunks.len() < 2 {
        return Err(reader.malformed("a chunk group holds fewer than 2 chunks"));
    }
    Ok(chunks)
}

impl Iterator for ChunkPieces {
    type Item = Result<ChunkPiece>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.done {
            return None;
        }
        match self.next_piece() {
            Ok(piece) => piece.map(Ok),
            Err(kind) => Some(Err(self.reader.fail(kind))),
        }
    }
}

/// One record of the `operations` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationRecord {
    Whole(Operation),
    /// Part of an operation too large for the room left in a part;
    /// [`crate::LogicalPacket`] reassembles these.
    Piece {
        total_len: u32,
        offset: u32,
        bytes: Vec<u8>,
    },
}

/// Iterator over the operation records of one part.
pub struct OperationRecords {
    reader: RecordReader,
}

pub(crate) fn decode_operation(bytes: &[u8]) -> Result<Operation, String> {
    match postcard::take_from_bytes::<Operation>(bytes) {
        Ok((op, [])) => Ok(op),
        Ok(_) => Err("bytes after the operation".into()),
        Err(err) => Err(format!("operation does not decode: {err}")),
    }
}

impl OperationRecords {
    fn next_record(&mut self) -> Result<Option<OperationRecord>, ErrorKind> {
        let reader = &mut self.reader;
        if reader.at_end()? {
            return Ok(None);
        }
        let mut fixed = [0u8; OP_RECORD_HEADER_LEN];
        reader.read_exact_raw(&mut fixed)?;
        let record = OpRecordHeader::decode(&fixed);
        record.check().map_err(|detail| reader.malformed(detail))?;
        reader.check_piece_position(record.offset, record.piece_len, record.total_len)?;
        let mut bytes = vec![0u8; record.piece_len as usize];
        reader.read_exact_raw(&mut bytes)?;
        if record.offset == 0 && record.piece_len == record.total_len {
            let op = decode_operation(&bytes).map_err(|detail| reader.malformed(detail))?;
            Ok(Some(OperationRecord::Whole(op)))
        } else {
            Ok(Some(OperationRecord::Piece {
                total_len: record.total_len,
                offset: record.offset,
                bytes,
            }))
        }
    }
}

impl Iterator for OperationRecords {
    type Item = Result<OperationRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.done {
            return None;
        }
        match self.next_record() {
            Ok(record) => record.map(Ok),
            Err(kind) => Some(Err(self.reader.fail(kind))),
        }
    }
}
