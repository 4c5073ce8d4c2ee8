//! Streaming, size-capped packet writer.
//!
//! Why the parts are finished only in [`PacketWriter::finish`]: every header
//! carries `part k of n`, and `n` is known only when the stream ends. So each
//! part's data entries (`chunks`, `operations`, maybe `creation`) are first
//! written under a hidden temporary name, laid out as SPEC.md §3 says (see
//! [`ZipLayout`]); only their CRC-32s are kept. At the end the header (with
//! `n`) and the signature entries are written after them, then the central
//! directory and end record, and the part gets its final name. The header is
//! the last data in the file, which zip allows because readers go by the
//! central directory.
//!
//! Why no part can exceed the cap: the zip overhead of the fixed entry set is
//! exact, the header is budgeted at the length it would have with every
//! number at its maximum, and data records are split into pieces so that a
//! record never exceeds the room left in the current part.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use tempfile::TempPath;

use crate::container::{entry_overhead, WrittenEntry, ZipLayout, END_RECORD_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::header::{
    encode_header, CreationPayload, Encoding, EntryInfo, EpochRange, FormatVersion, Header, Named,
    PacketKind, Target, SIGNATURE_CONTEXT,
};
use crate::ops::{ChunkId, Id, Operation, Timestamp};
use crate::records::{
    ChunkRecordHeader, OpRecordHeader, CHUNK_RECORD_HEADER_LEN, CODEC_GROUP, CODEC_PLAIN,
    CODEC_RECIPE, GROUP_MEMBER_HEADER_LEN, OP_RECORD_HEADER_LEN,
};
use crate::write_behind::WriteBehind;
use crate::{
    naming, ENTRY_CHUNKS, ENTRY_CREATION, ENTRY_HEADER, ENTRY_OPERATIONS, ENTRY_PASSKEY,
    ENTRY_SEALS, ENTRY_SECRETS, ENTRY_SIGNATURE, FORMAT_MAJOR, FORMAT_MINOR, MAX_CHUNK_LEN,
    MAX_HEADER_LEN, MAX_OPERATION_LEN, MAX_PART_SIZE, MIN_PART_SIZE,
};

/// Room a part must have for data records once its metadata is paid for.
const MIN_DATA_ROOM: u64 = 16 * 1024;
/// Pieces smaller than this are not worth a record: start a new part.
const MIN_PIECE: u64 = 1024;
/// zstd level: fast enough to keep up with disks, good on text and code.
/// Higher levels were measured on bench/sync_vs_rsync.sh's creation tree
/// (20,000 files, 543 MB; one run, release build, loaded machine): chunk
/// bytes 1.144× `tar | zstd -3` at level 3, 1.155× at 6, 1.151× at 9,
/// 1.150× at 12, 1.143× at 12 tried only where level 3 compresses, for 2–4×
/// the export time. The gap is redundancy *between* files, which frames of
/// one chunk each cannot see (see README, Benchmarks); a level does not close it.
const ZSTD_LEVEL: i32 = 3;
/// Chunks are gathered into groups of about this many decoded bytes and
/// each group is compressed as one zstd frame (SPEC.md §5.2): redundancy
/// between small files, which one frame per chunk cannot see, is then
/// found as `tar | zstd` finds it. Bounded by [`crate::MAX_GROUP_LEN`].
const GROUP_TARGET: usize = 2 * 1024 * 1024;
/// Operations held back until the group holding their chunks is written:
/// past this many bytes the group is written early.
const MAX_HELD_OPS: usize = 4 * 1024 * 1024;

/// Everything a header says that the writer does not work out itself.
#[derive(Clone, Debug)]
pub struct PacketMeta {
    pub kind: PacketKind,
    pub family: Named,
    pub sender: Named,
    /// Replicas the packet is for, each with this packet's sequence number
    /// in the sender's stream to it. The first target's number goes into
    /// the file name.
    pub targets: Vec<Target>,
    /// Identifies the logical packet (random, chosen by the caller).
    pub packet_id: Id,
    /// Creation time (UTC).
    pub created: Timestamp,
    pub comment: String,
    /// Epochs carried, per origin. Every operation added must fall inside.
    pub epoch_ranges: BTreeMap<Id, EpochRange>,
    /// The sender's epoch row at export time.
    pub epoch_row: BTreeMap<Id, u64>,
    /// The origin seals of the runs the operations belong to (SPEC.md §7),
    /// written into every part. A run the packet carries only in part has
    /// its tail set. [`PacketWriter::narrow_epoch_ranges`] may replace them.
    pub seals: Vec<crate::seals::Seal>,
    /// Required for [`PacketKind::ReplicaCreation`], refused otherwise;
    /// repeated in every part so each part stands alone.
    pub creation: Option<CreationPayload>,
    /// The sender's incarnation id ([`Header::incarnation`]), if it has one.
    pub incarnation: Option<Id>,
    /// The sender's tree digest ([`Header::tree_digest`]), if it sends one.
    pub tree_digest: Option<crate::header::TreeDigest>,
    /// `None`: nothing is encrypted. Otherwise every data entry (`chunks`,
    /// `operations`, `creation`, `secrets`) is encrypted as SPEC.md §4.2
    /// says.
    pub encryption: Option<EncryptTo>,
    /// Creation packets only, and only with `encryption`: the new
    /// replica's secret keys, carried in the encrypted `secrets` entry.
    pub secrets: Option<Vec<u8>>,
    /// The sender's own `RekeyMember` operations the packet carries, with
    /// their seals ([`Header::rotations`], SPEC.md §4.3); empty for none.
    pub rotations: Vec<crate::header::HeaderRotation>,
}

/// To whom a packet's contents are encrypted.
#[derive(Clone, Debug, Default)]
pub struct EncryptTo {
    /// Replicas and their age X25519 recipients (`age1...`).
    pub recipients: Vec<crate::header::EncryptionRecipient>,
    /// Also (or instead) encrypt to this passphrase, through a packet key
    /// carried in the `passkey` entry.
    pub passphrase: Option<std::sync::Arc<age::secrecy::SecretString>>,
}

/// The age work factor (log2 of scrypt's N) for passphrase-encrypted
/// packets, unless `SYNCREPLICA_TEST_SCRYPT_LOG_N` lowers it for tests.
fn scrypt_log_n() -> Option<u8> {
    std::env::var("SYNCREPLICA_TEST_SCRYPT_LOG_N")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// What the writer needs to encrypt entries.
struct Sealer {
    recipients: Vec<age::x25519::Recipient>,
    /// Length of an age file of empty plaintext to `recipients`: header,
    /// nonce and one tag. An age file of `n` bytes is this plus `n` plus
    /// 16 for every 64 KiB chunk after the first.
    empty_len: u64,
    /// The `passkey` entry, the same in every part.
    passkey: Option<Vec<u8>>,
}

impl Sealer {
    fn new(to: &EncryptTo) -> Result<Sealer, String> {
        let mut recipients = Vec::new();
        for recipient in &to.recipients {
            let parsed = recipient
                .key
                .parse::<age::x25519::Recipient>()
                .map_err(|err| {
                    format!(
                        "encryption key {:?} of {} is not an age X25519 recipient: {err}",
                        recipient.key, recipient.id
                    )
                })?;
            recipients.push(parsed);
        }
        let passkey = match &to.passphrase {
            None => None,
            Some(passphrase) => {
                let packet_key = age::x25519::Identity::generate();
                recipients.push(packet_key.to_public());
                let mut scrypt = age::scrypt::Recipient::new((**passphrase).clone());
                if let Some(log_n) = scrypt_log_n() {
                    scrypt.set_work_factor(log_n);
                }
                use age::secrecy::ExposeSecret;
                let secret = packet_key.to_string();
                Some(
                    encrypt_bytes(
                        &[&scrypt as &dyn age::Recipient],
                        secret.expose_secret().as_bytes(),
                    )
                    .map_err(|err| format!("encrypting the packet key: {err}"))?,
                )
            }
        };
        if recipients.is_empty() {
            return Err("encryption without any recipient or passphrase".into());
        }
        let mut sealer = Sealer {
            recipients,
            empty_len: 0,
            passkey,
        };
        sealer.empty_len = sealer.encrypt(&[]).map_err(|e| e.to_string())?.len() as u64;
        Ok(sealer)
    }

    fn dyn_recipients(&self) -> Vec<&dyn age::Recipient> {
        self.recipients
            .iter()
            .map(|r| r as &dyn age::Recipient)
            .collect()
    }

    fn encrypt(&self, plain: &[u8]) -> std::io::Result<Vec<u8>> {
        encrypt_bytes(&self.dyn_recipients(), plain)
    }

    fn wrap<W: Write>(&self, out: W) -> std::io::Result<age::stream::StreamWriter<W>> {
        age::Encryptor::with_recipients(self.dyn_recipients().into_iter())
            .map_err(std::io::Error::other)?
            .wrap_output(out)
    }
}

fn encrypt_bytes(recipients: &[&dyn age::Recipient], plain: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plain.len() + 256);
    let mut writer = age::Encryptor::with_recipients(recipients.iter().copied())
        .map_err(std::io::Error::other)?
        .wrap_output(&mut out)?;
    writer.write_all(plain)?;
    writer.finish()?;
    Ok(out)
}

/// A writer that hashes and counts what passes through it.
struct HashCount<W> {
    inner: W,
    sha: Sha256,
    len: u64,
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type PartZip = ZipLayout<BufWriter<WriteBehind>>;

/// Where a part's chunk records go: straight into the zip entry, or
/// through an age encryptor into it.
enum ChunkSink {
    Plain(PartZip),
    Age(age::stream::StreamWriter<HashCount<PartZip>>),
}

impl ChunkSink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            ChunkSink::Plain(zip) => zip.write_all(bytes),
            ChunkSink::Age(writer) => writer.write_all(bytes),
        }
    }
}

/// One physical packet file written by [`PacketWriter::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenPart {
    pub path: PathBuf,
    pub file_name: String,
    pub part: u32,
    pub parts: u32,
    pub size: u64,
}

/// A part whose data entries are being written.
struct OpenPart {
    temp: TempPath,
    zip: ChunkSink,
    chunks_sha: Sha256,
    chunks_len: u64,
    chunk_records: u64,
    /// Operation records are spooled here because the `operations` entry
    /// can only be written after `chunks` is complete.
    ops_spool: BufWriter<File>,
    ops_len: u64,
    op_records: u64,
}

/// A part with data entries complete, waiting for its header.
struct PendingPart {
    temp: TempPath,
    entries: Vec<EntryInfo>,
    /// The CRC-32 of each entry; with `entries` this is the zip layout
    /// written so far (entries are contiguous from offset 0).
    crc32s: Vec<u32>,
    operation_records: u64,
    chunk_records: u64,
}

/// Writes one logical packet as one or more signed physical packet files,
/// none larger than the maximum size.
///
/// Feed it operations and chunk data in stream order. Send a file version's
/// chunks before the operation that references them, so that a chunk is
/// always in the same or an earlier part than its first use. Memory use is
/// independent of packet size: about 100 bytes per part, plus the open
/// chunk group (2 MiB), the groups being compressed and up to 4 MiB of
/// operations waiting for their group (SPEC.md §5.2).
pub struct PacketWriter {
    out_dir: PathBuf,
    max_size: u64,
    signing_key: SigningKey,
    template: Header,
    creation_bytes: Option<Vec<u8>>,
    /// For creation packets: the new replica's name, used in file names.
    new_replica_name: Option<String>,
    header_budget: u64,
    data_room: u64,
    current: Option<OpenPart>,
    pending: Vec<PendingPart>,
    compressor: zstd::bulk::Compressor<'static>,
    /// The zstd level chunks are compressed at ([`ZSTD_LEVEL`] unless
    /// [`PacketWriter::with_chunk_level`] says otherwise).
    level: i32,
    /// Per origin, the first and last epoch added so far.
    added: BTreeMap<Id, EpochRange>,
    seals: Vec<crate::seals::Seal>,
    /// Room reserved in every part for the `seals` entry: the seals with
    /// a tail on each, so narrowing never outgrows it.
    seals_budget: u64,
    /// Workers that check and compress chunks ([`Self::with_encoder_threads`]).
    encoders: Option<crate::encoders::EncoderPool>,
    /// Chunks added and not yet handed to encoding (SPEC.md §5.2).
    group: crate::encoders::Group,
    /// Decoded bytes a group may reach: 0 writes every chunk alone
    /// ([`Self::with_chunk_groups`]).
    group_target: usize,
    /// Groups handed to encoding, and written, so far.
    groups_submitted: u64,
    groups_written: u64,
    /// Encoded operations waiting for the groups before them: each is
    /// written once `groups_written` reaches its number, so that a chunk
    /// is never in a later part than the operation that uses it.
    held_ops: std::collections::VecDeque<(u64, Vec<u8>)>,
    held_ops_len: usize,
    /// Bytes of chunk records written so far, headers included.
    chunk_bytes: u64,
    sealer: Option<Sealer>,
    /// The encrypted `secrets` entry, the same in every part.
    secrets_bytes: Option<Vec<u8>>,
    /// Plaintext length of the `creation` entry (encrypted or not).
    creation_raw_len: u64,
    /// Plaintext length of the `secrets` entry.
    secrets_raw_len: u64,
}

impl PacketWriter {
    /// Starts a logical packet to be written into `out_dir`.
    ///
    /// `max_size` caps every part file, zip overhead included; it must be
    /// within [`MIN_PART_SIZE`]..=[`MAX_PART_SIZE`]. `signing_key` is the
    /// sender's 32-byte Ed25519 secret key.
    pub fn create(
        out_dir: &Path,
        max_size: u64,
        signing_key: &[u8; 32],
        meta: PacketMeta,
    ) -> Result<PacketWriter> {
        let fail = |kind: ErrorKind| kind.at(out_dir);
        if max_size < MIN_PART_SIZE {
            return Err(fail(ErrorKind::MaxSizeTooSmall {
                requested: max_size,
                minimum: MIN_PART_SIZE,
            }));
        }
        if max_size > MAX_PART_SIZE {
            return Err(fail(ErrorKind::MaxSizeTooLarge {
                requested: max_size,
                maximum: MAX_PART_SIZE,
            }));
        }
        check_meta(&meta).map_err(|what| fail(ErrorKind::InvalidMetadata(what)))?;
        let signing_key = SigningKey::from_bytes(signing_key);
        let new_replica_name = meta.creation.as_ref().map(|c| c.new_replica.name.clone());
        let seals_budget = seals_budget(&meta.seals);
        if seals_budget > crate::MAX_SEALS_LEN {
            return Err(fail(ErrorKind::InvalidMetadata(format!(
                "{} seals are more than a part can carry",
                meta.seals.len()
            ))));
        }
        let seals = meta.seals;
        let sealer = match &meta.encryption {
            None => None,
            Some(to) => {
                Some(Sealer::new(to).map_err(|what| fail(ErrorKind::InvalidMetadata(what)))?)
            }
        };
        if meta.secrets.is_some() && (sealer.is_none() || meta.creation.is_none()) {
            return Err(fail(ErrorKind::InvalidMetadata(
                "secret keys travel only in an encrypted creation packet".into(),
            )));
        }
        let seal_bytes = |plain: Vec<u8>| -> Result<Vec<u8>> {
            match &sealer {
                None => Ok(plain),
                Some(sealer) => sealer
                    .encrypt(&plain)
                    .map_err(|err| fail(ErrorKind::io("encrypting an entry", err))),
            }
        };
        let creation_plain = meta
            .creation
            .as_ref()
            .map(|payload| crate::header::encode_creation(payload, FORMAT_MINOR));
        let creation_raw_len = creation_plain.as_ref().map_or(0, |b| b.len() as u64);
        let creation_bytes = creation_plain.map(seal_bytes).transpose()?;
        let secrets_raw_len = meta.secrets.as_ref().map_or(0, |b| b.len() as u64);
        let secrets_bytes = meta.secrets.map(seal_bytes).transpose()?;
        let encryption = meta
            .encryption
            .as_ref()
            .map(|to| crate::header::Encryption {
                recipients: to.recipients.clone(),
                passphrase: to.passphrase.is_some(),
            });
        let template = Header {
            version: FormatVersion {
                major: FORMAT_MAJOR,
                minor: FORMAT_MINOR,
            },
            signer_key: signing_key.verifying_key().to_bytes(),
            kind: meta.kind,
            family: meta.family,
            sender: meta.sender,
            targets: meta.targets,
            packet_id: meta.packet_id,
            part: 1,
            parts: 1,
            created: meta.created,
            comment: meta.comment,
            epoch_ranges: meta.epoch_ranges,
            epoch_row: meta.epoch_row,
            entries: Vec::new(),
            operation_records: 0,
            chunk_records: 0,
            incarnation: meta.incarnation,
            tree_digest: meta.tree_digest,
            encryption,
            rotations: meta.rotations,
        };

        let mut entry_names = vec![ENTRY_CHUNKS, ENTRY_OPERATIONS];
        if creation_bytes.is_some() {
            entry_names.push(ENTRY_CREATION);
        }
        if sealer.as_ref().is_some_and(|s| s.passkey.is_some()) {
            entry_names.push(ENTRY_PASSKEY);
        }
        if secrets_bytes.is_some() {
            entry_names.push(ENTRY_SECRETS);
        }
        entry_names.push(ENTRY_SEALS);
        // The longest header this packet can have: every number at its
        // widest varint, every entry pinned.
        let mut widest = template.clone();
        widest.part = u32::MAX;
        widest.parts = u32::MAX;
        widest.operation_records = u64::MAX;
        widest.chunk_records = u64::MAX;
        widest.entries = entry_names
            .iter()
            .map(|name| EntryInfo {
                name: name.to_string(),
                encoding: Encoding::Zstd,
                stored_size: u64::MAX,
                raw_size: u64::MAX,
                sha256: [0xff; 32],
            })
            .collect();
        let header_budget = encode_header(&widest).len() as u64;
        let zip_overhead: u64 = entry_names
            .iter()
            .chain([&ENTRY_HEADER, &ENTRY_SIGNATURE])
            .map(|name| entry_overhead(name))
            .sum::<u64>()
            + END_RECORD_LEN;
        // Encrypted `chunks` and `operations` each cost an age header,
        // nonce and final tag, and 16 bytes per 64 KiB of plaintext.
        let age_fixed = sealer.as_ref().map_or(0, |s| 2 * s.empty_len + 64);
        let fixed = zip_overhead
            + header_budget
            + 64
            + creation_bytes.as_ref().map_or(0, |b| b.len() as u64)
            + sealer
                .as_ref()
                .and_then(|s| s.passkey.as_ref())
                .map_or(0, |b| b.len() as u64)
            + secrets_bytes.as_ref().map_or(0, |b| b.len() as u64)
            + seals_budget
            + age_fixed;
        if header_budget > MAX_HEADER_LEN || fixed + MIN_DATA_ROOM > max_size {
            return Err(fail(ErrorKind::MetadataTooLarge {
                needed: fixed + MIN_DATA_ROOM,
                max_size,
            }));
        }
        let mut data_room = max_size - fixed;
        if sealer.is_some() {
            // Plaintext `d` costs at most `d + d / 4096` stored bytes.
            data_room = data_room * 4096 / 4097;
        }
        let compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .map_err(|err| fail(ErrorKind::io("starting zstd", err)))?;
        Ok(PacketWriter {
            out_dir: out_dir.to_path_buf(),
            max_size,
            signing_key,
            template,
            creation_bytes,
            new_replica_name,
            header_budget,
            data_room,
            current: None,
            pending: Vec::new(),
            compressor,
            level: ZSTD_LEVEL,
            added: BTreeMap::new(),
            seals,
            seals_budget,
            encoders: None,
            group: crate::encoders::Group::default(),
            group_target: GROUP_TARGET,
            groups_submitted: 0,
            groups_written: 0,
            held_ops: std::collections::VecDeque::new(),
            held_ops_len: 0,
            chunk_bytes: 0,
            sealer,
            secrets_bytes,
            creation_raw_len,
            secrets_raw_len,
        })
    }

    /// Checks and compresses chunks on `threads` worker threads (0 or 1:
    /// on the caller's thread, as without this call), for a writer that
    /// is fed faster than one core compresses. The packet is byte for
    /// byte the same: chunks are written in the order they were added.
    /// Memory: at most `threads + 1` groups of chunks in flight (each about
    /// 2 MiB, and its compressed form). Errors of a chunk
    /// handed to the workers ([`ErrorKind::ChunkIdMismatch`], zstd) come
    /// from a later call: the next `add_chunk*`, `add_operation`,
    /// `add_chunk_recipe` or `finish`; a caller that must know at once
    /// whether bytes match their id checks them itself first.
    pub fn with_encoder_threads(mut self, threads: usize) -> PacketWriter {
        self.encoders =
            (threads > 1).then(|| crate::encoders::EncoderPool::new(threads, self.level));
        self
    }

    /// Compresses chunks at zstd `level` instead of [`ZSTD_LEVEL`] (any
    /// level reads the same: the format does not record it). Call it
    /// before [`Self::with_encoder_threads`]. Errors: zstd refuses the
    /// level ([`ErrorKind::Io`]).
    pub fn with_chunk_level(mut self, level: i32) -> Result<PacketWriter> {
        self.compressor = zstd::bulk::Compressor::new(level)
            .map_err(|err| ErrorKind::io("starting zstd", err).at(&self.out_dir))?;
        self.level = level;
        Ok(self)
    }

    /// Whether chunks may travel in chunk groups (SPEC.md §5.2, the
    /// default): `false` for a target known to read only a minor older
    /// than [`crate::MINOR_WITH_CHUNK_GROUPS`], which would refuse them.
    /// Every chunk is then a record of its own, as such a reader expects.
    pub fn with_chunk_groups(mut self, groups: bool) -> PacketWriter {
        self.group_target = if groups { GROUP_TARGET } else { 0 };
        self
    }

    /// Bytes the chunks added so far take in the packet: their records'
    /// headers and stored (compressed, or recipe) bytes. Waits for the
    /// encoder threads; errors: as [`Self::add_chunk`].
    pub fn chunk_bytes_written(&mut self) -> Result<u64> {
        self.flush_chunks()?;
        Ok(self.chunk_bytes)
    }

    /// Writes every chunk added so far, and the operations held back
    /// behind them.
    fn flush_chunks(&mut self) -> Result<()> {
        self.submit_group()?;
        self.drain_encoders(true)?;
        debug_assert!(self.held_ops.is_empty());
        Ok(())
    }

    /// Hands the open group to encoding (on the workers, or here).
    fn submit_group(&mut self) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        self.groups_submitted += 1;
        if self.encoders.is_some() {
            self.drain_encoders(false)?;
            if let Some(pool) = self.encoders.as_mut() {
                pool.submit(group);
            }
            return Ok(());
        }
        // Ids were checked as the chunks came (`add_chunk`).
        let stored = crate::encoders::encode(Some(&mut self.compressor), &group, false);
        self.write_encoded(crate::encoders::Encoded { group, stored })
    }

    /// Writes one encoded group: a group record, or its chunks one by one
    /// where the group does not compress or does not fit the room left.
    fn write_encoded(&mut self, encoded: crate::encoders::Encoded) -> Result<()> {
        use crate::encoders::{EncodeError, Stored};
        let group = encoded.group;
        match encoded.stored {
            Err(EncodeError::IdMismatch(id)) => {
                return Err(ErrorKind::ChunkIdMismatch {
                    chunk: hex::encode(id),
                }
                .at(&self.out_dir))
            }
            Err(EncodeError::Zstd(err)) => {
                return Err(ErrorKind::io("compressing a chunk", err).at(&self.out_dir))
            }
            Ok(Stored::Single(codec, stored)) => {
                let (id, _) = group.members[0];
                self.write_chunk(&id, group.data(0), Some((codec, stored)))?;
            }
            Ok(Stored::Plain) => {
                for (index, (id, _)) in group.members.iter().enumerate() {
                    let data = group.data(index);
                    self.write_chunk(id, data, Some((CODEC_PLAIN, data.to_vec())))?;
                }
            }
            Ok(Stored::Frame(frame)) => {
                let header_len = CHUNK_RECORD_HEADER_LEN as u64;
                if header_len + frame.len() as u64 <= self.free_room()? {
                    let len = group.bytes.len() as u64;
                    self.write_chunk_record(&[0u8; 32], len, 0, len, CODEC_GROUP, &frame)?;
                } else {
                    // Never split: the chunks fill this part one by one
                    // (compressed alone) and continue in the next.
                    for (index, (id, _)) in group.members.iter().enumerate() {
                        let data = group.data(index);
                        let whole = self.encode_piece(data)?;
                        self.write_chunk(id, data, Some(whole))?;
                    }
                }
            }
        }
        self.groups_written += 1;
        while self
            .held_ops
            .front()
            .is_some_and(|(barrier, _)| *barrier <= self.groups_written)
        {
            let (_, bytes) = self.held_ops.pop_front().expect("just looked");
            self.held_ops_len -= bytes.len();
            self.write_operation(&bytes)?;
        }
        Ok(())
    }

    /// Writes the chunks the workers finished, in order: all of them
    /// (`all`), or only while as many as allowed are in flight.
    fn drain_encoders(&mut self, all: bool) -> Result<()> {
        loop {
            let Some(pool) = self.encoders.as_mut() else {
                return Ok(());
            };
            if !(all || pool.is_full()) {
                return Ok(());
            }
            let Some(encoded) = pool.next_in_order() else {
                if pool.is_idle() {
                    return Ok(());
                }
                return Err(ErrorKind::io(
                    "compressing chunks",
                    std::io::Error::other("a chunk encoder thread stopped"),
                )
                .at(&self.out_dir));
            };
            self.write_encoded(encoded)?;
        }
    }

    /// Bytes each part has for data records (chunks plus operations).
    pub fn data_room_per_part(&self) -> u64 {
        self.data_room
    }

    /// Adds one operation to the stream.
    pub fn add_operation(&mut self, op: &Operation) -> Result<()> {
        let in_range = self
            .template
            .epoch_ranges
            .get(&op.origin)
            .is_some_and(|range| range.first <= op.epoch && op.epoch <= range.last);
        if !in_range {
            return Err(ErrorKind::OperationOutsideEpochRanges {
                origin: op.origin.to_hex(),
                epoch: op.epoch,
            }
            .at(&self.out_dir));
        }
        // Each origin's operations in epoch order, each epoch once, with
        // no gap: what a reader checks (SPEC.md §4).
        let first = self.template.epoch_ranges[&op.origin].first;
        let expected = self
            .added
            .get(&op.origin)
            .map_or(first, |range| range.last.saturating_add(1));
        if op.epoch != expected {
            return Err(ErrorKind::EpochRanges(format!(
                "origin {}: epoch {} added where {expected} belongs",
                op.origin, op.epoch
            ))
            .at(&self.out_dir));
        }
        let bytes = op.encode();
        if bytes.len() > MAX_OPERATION_LEN {
            return Err(ErrorKind::OperationTooLarge {
                len: bytes.len(),
                limit: MAX_OPERATION_LEN,
            }
            .at(&self.out_dir));
        }
        self.added
            .entry(op.origin)
            .or_insert(EpochRange {
                first: op.epoch,
                last: op.epoch,
            })
            .last = op.epoch;
        // Chunks first, as one thread writes them: an operation's part
        // depends on the room the chunks before it took. Until the groups
        // added before it are written, it waits in memory.
        let barrier = self.groups_submitted + u64::from(!self.group.is_empty());
        if barrier <= self.groups_written && self.held_ops.is_empty() {
            return self.write_operation(&bytes);
        }
        self.held_ops_len += bytes.len();
        self.held_ops.push_back((barrier, bytes));
        if self.held_ops_len > MAX_HELD_OPS {
            self.flush_chunks()?;
        }
        Ok(())
    }

    /// Writes one encoded operation's records, split across parts where
    /// it does not fit.
    fn write_operation(&mut self, bytes: &[u8]) -> Result<()> {
        let total = bytes.len() as u64;
        let mut offset = 0u64;
        while offset < total {
            let free = self.free_room()?;
            let rest = total - offset;
            let take = if OP_RECORD_HEADER_LEN as u64 + rest <= free {
                rest
            } else if free >= OP_RECORD_HEADER_LEN as u64 + MIN_PIECE {
                free - OP_RECORD_HEADER_LEN as u64
            } else {
                self.close_part()?;
                continue;
            };
            let record = OpRecordHeader {
                total_len: total as u32,
                offset: offset as u32,
                piece_len: take as u32,
            };
            let piece = &bytes[offset as usize..(offset + take) as usize];
            let part = self.current.as_mut().expect("free_room opened a part");
            let spooled = part
                .ops_spool
                .write_all(&record.encode())
                .and_then(|()| part.ops_spool.write_all(piece));
            if let Err(err) = spooled {
                return Err(ErrorKind::io("spooling operations", err).at(&self.out_dir));
            }
            part.ops_len += OP_RECORD_HEADER_LEN as u64 + take;
            part.op_records += 1;
            offset += take;
        }
        Ok(())
    }

    /// Narrows the epoch ranges the header will state, for a stream that
    /// ends early: each range must lie within the one given at creation
    /// (an origin may be dropped). The caller has added only operations
    /// that fall inside the narrowed ranges, each range covered whole; no
    /// operation outside them may be added after this.
    /// `seals` replace the packet's seals (those of the runs still
    /// carried, with tails where a run is now cut short); they may not
    /// name more runs than before.
    pub fn narrow_epoch_ranges(
        &mut self,
        ranges: BTreeMap<Id, EpochRange>,
        seals: Vec<crate::seals::Seal>,
    ) -> Result<()> {
        if seals_budget(&seals) > self.seals_budget {
            return Err(ErrorKind::InvalidMetadata(
                "narrowing added seals the packet had no room for".into(),
            )
            .at(&self.out_dir));
        }
        for (origin, range) in &ranges {
            let inside = self
                .template
                .epoch_ranges
                .get(origin)
                .is_some_and(|wide| wide.first <= range.first && range.last <= wide.last);
            if !inside || range.first > range.last {
                return Err(ErrorKind::InvalidMetadata(format!(
                    "epoch range {}-{} of {origin} is not within the packet's",
                    range.first, range.last
                ))
                .at(&self.out_dir));
            }
        }
        // The header's rotations (SPEC.md §4.3) are those the packet
        // still carries.
        let sender = self.template.sender.id;
        self.template.rotations.retain(|rotation| {
            crate::ops::Operation::decode(&rotation.operation).is_ok_and(|op| {
                ranges
                    .get(&sender)
                    .is_some_and(|range| range.first <= op.epoch && op.epoch <= range.last)
            })
        });
        // Never longer than the header budgeted for: numbers only shrink
        // and ranges only go.
        self.template.epoch_ranges = ranges;
        self.seals = seals;
        Ok(())
    }

    /// Adds the bytes of one chunk; `id` must be their SHA-256.
    /// Chunks are gathered into groups (SPEC.md §5.2) and written when a
    /// group is full, or before a recipe, or at the end. Without encoder
    /// threads a mismatch is reported here ([`ErrorKind::ChunkIdMismatch`]).
    pub fn add_chunk(&mut self, id: &ChunkId, data: &[u8]) -> Result<()> {
        self.check_chunk_len(data)?;
        // Refuse to sign bytes that do not match their name: a reader would
        // reject the packet anyway, far from the cause. (Encoder threads
        // check them on a worker.)
        if self.encoders.is_none() && Sha256::digest(data).as_slice() != id {
            return Err(ErrorKind::ChunkIdMismatch {
                chunk: hex::encode(id),
            }
            .at(&self.out_dir));
        }
        self.make_room_in_group(data.len())?;
        self.group.push(id, data);
        Ok(())
    }

    /// As [`Self::add_chunk`] (kept for callers that hand over their bytes).
    pub fn add_chunk_owned(&mut self, id: &ChunkId, data: Vec<u8>) -> Result<()> {
        self.add_chunk(id, &data)
    }

    /// As [`Self::add_chunk`] for bytes the caller has just checked against
    /// `id` itself: they are not hashed again (an export reads each chunk
    /// from a file and must know at once whether it still matches).
    pub fn add_checked_chunk(&mut self, id: &ChunkId, data: &[u8]) -> Result<()> {
        self.check_chunk_len(data)?;
        self.make_room_in_group(data.len())?;
        self.group
            .push_checked(id, data.len(), |slot| slot.copy_from_slice(data));
        Ok(())
    }

    /// Adds chunk `id` of `len` bytes, which `fill` writes straight into
    /// the open chunk group (read from a file, say, without a copy) and
    /// checks against `id`: `Ok(true)` keeps the chunk, and it is not
    /// hashed again; `Ok(false)` or an error leaves the packet as it was
    /// (nothing of the chunk is added). Returns what `fill` returned.
    /// Errors: the writer's own (as [`Self::add_chunk`]), or `fill`'s.
    pub fn add_chunk_with<E: From<Error>>(
        &mut self,
        id: &ChunkId,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<bool, E> {
        if len == 0 || len > MAX_CHUNK_LEN {
            return Err(ErrorKind::ChunkTooLarge {
                len,
                limit: MAX_CHUNK_LEN,
            }
            .at(&self.out_dir)
            .into());
        }
        self.make_room_in_group(len)?;
        self.group.try_push_checked(id, len, fill)
    }

    /// Submits the open group if `len` more bytes of chunk would take it
    /// past the group target, and gives a new group its whole buffer at
    /// once (not a series of doublings).
    fn make_room_in_group(&mut self, len: usize) -> Result<()> {
        if !self.group.is_empty() && self.group.len_with(len) > self.group_target {
            self.submit_group()?;
        }
        if self.group.bytes.capacity() == 0 {
            self.group
                .bytes
                .reserve(self.group_target.max(GROUP_MEMBER_HEADER_LEN + len));
        }
        Ok(())
    }

    fn check_chunk_len(&self, data: &[u8]) -> Result<()> {
        if data.is_empty() || data.len() > MAX_CHUNK_LEN {
            return Err(ErrorKind::ChunkTooLarge {
                len: data.len(),
                limit: MAX_CHUNK_LEN,
            }
            .at(&self.out_dir));
        }
        Ok(())
    }

    /// Writes one chunk's records; `whole`: how the whole chunk is stored,
    /// when a worker checked and encoded it already.
    fn write_chunk(
        &mut self,
        id: &ChunkId,
        data: &[u8],
        mut whole: Option<(u8, Vec<u8>)>,
    ) -> Result<()> {
        // Refuse to sign bytes that do not match their name: a reader would
        // reject the packet anyway, far from the cause.
        if whole.is_none() && Sha256::digest(data).as_slice() != id {
            return Err(ErrorKind::ChunkIdMismatch {
                chunk: hex::encode(id),
            }
            .at(&self.out_dir));
        }
        let total = data.len() as u64;
        let mut offset = 0u64;
        while offset < total {
            let free = self.free_room()?;
            let rest = &data[offset as usize..];
            let header_len = CHUNK_RECORD_HEADER_LEN as u64;
            // Try the whole remainder, compressed where that helps.
            if header_len + rest.len() as u64 <= free
                || header_len + (rest.len() as u64) / 2 <= free
            {
                let (codec, stored) = match whole.take() {
                    Some(encoded) if offset == 0 => encoded,
                    _ => self.encode_piece(rest)?,
                };
                if header_len + stored.len() as u64 <= free {
                    self.write_chunk_record(id, total, offset, rest.len() as u64, codec, &stored)?;
                    return Ok(());
                }
            }
            if free < header_len + MIN_PIECE {
                self.close_part()?;
                continue;
            }
            // Split: fill this part with a plain piece, continue in the next.
            let take = free - header_len;
            let piece = rest[..take as usize].to_vec();
            self.write_chunk_record(id, total, offset, take, CODEC_PLAIN, &piece)?;
            offset += take;
            self.close_part()?;
        }
        Ok(())
    }

    /// Adds chunk `id` (`chunk_len` bytes) as a recipe over chunks the
    /// target holds (chunk codec 2). A recipe is never split: it starts a
    /// new part when the room left is too small. Returns `false`, adding
    /// nothing, when the recipe is not smaller than the chunk or cannot fit
    /// in a part: the caller then adds the chunk's bytes. The writer cannot
    /// check a recipe against `id` (it lacks the bases); the receiver does.
    pub fn add_chunk_recipe(
        &mut self,
        id: &ChunkId,
        chunk_len: u32,
        recipe: &crate::delta::Recipe,
    ) -> Result<bool> {
        self.flush_chunks()?;
        let stored = recipe.encode();
        let header_len = CHUNK_RECORD_HEADER_LEN as u64;
        if chunk_len as usize > MAX_CHUNK_LEN
            || stored.len() >= chunk_len as usize
            || header_len + stored.len() as u64 > self.data_room
        {
            return Ok(false);
        }
        if header_len + stored.len() as u64 > self.free_room()? {
            self.close_part()?;
            self.free_room()?;
        }
        let len = u64::from(chunk_len);
        self.write_chunk_record(id, len, 0, len, CODEC_RECIPE, &stored)?;
        Ok(true)
    }

    /// Finishes every part: writes headers and signatures, gives the files
    /// their final names, and returns them in part order.
    pub fn finish(mut self) -> Result<Vec<WrittenPart>> {
        self.flush_chunks()?;
        self.encoders = None;
        if self.added != self.template.epoch_ranges {
            return Err(ErrorKind::EpochRanges(format!(
                "the header declares {:?}, the operations added cover {:?}",
                self.template.epoch_ranges, self.added
            ))
            .at(&self.out_dir));
        }
        if self.current.is_none() && self.pending.is_empty() {
            // An empty logical packet still gets one part (e.g. a creation
            // packet of an empty replica).
            self.open_part()?;
        }
        if self.current.is_some() {
            self.close_part()?;
        }
        let parts = self.pending.len() as u32;
        let names: Vec<String> = (1..=parts)
            .map(|part| {
                naming::packet_file_name_for(&self.template, part, parts, self.creation_name())
            })
            .collect();
        for name in &names {
            if self.out_dir.join(name).exists() {
                return Err(ErrorKind::AlreadyExists(name.clone()).at(self.out_dir.join(name)));
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let mut written = Vec::with_capacity(pending.len());
        let seals_bytes = postcard::to_stdvec(&self.seals).expect("encoding cannot fail");
        let seals_pin = EntryInfo {
            name: ENTRY_SEALS.into(),
            encoding: Encoding::Plain,
            stored_size: seals_bytes.len() as u64,
            raw_size: seals_bytes.len() as u64,
            sha256: Sha256::digest(&seals_bytes).into(),
        };
        for ((index, part), name) in pending.into_iter().enumerate().zip(names) {
            match self.finish_part(index, part, name, parts, &seals_bytes, &seals_pin) {
                Ok(done) => written.push(done),
                Err(err) => {
                    // The parts already given their final names are
                    // removed: a packet is all its parts or nothing, and
                    // a caller told of the error would not know of them.
                    // (The rest are temporary files, removed on drop.)
                    for done in &written {
                        let _ = std::fs::remove_file(&done.path);
                    }
                    return Err(err);
                }
            }
        }
        Ok(written)
    }

    /// Writes part `index`'s header and signature and gives it its final
    /// `name` (never replacing a file of that name).
    fn finish_part(
        &self,
        index: usize,
        part: PendingPart,
        name: String,
        parts: u32,
        seals_bytes: &[u8],
        seals_pin: &EntryInfo,
    ) -> Result<WrittenPart> {
        let mut header = self.template.clone();
        header.part = index as u32 + 1;
        header.parts = parts;
        header.entries = part.entries;
        header.entries.push(seals_pin.clone());
        header.operation_records = part.operation_records;
        header.chunk_records = part.chunk_records;
        let header_bytes = encode_header(&header);
        assert!(
            header_bytes.len() as u64 <= self.header_budget,
            "header outgrew its budget"
        );
        let mut message = SIGNATURE_CONTEXT.to_vec();
        message.extend_from_slice(&header_bytes);
        let signature = self.signing_key.sign(&message).to_bytes();
        let temp_path: &Path = &part.temp;
        let streamed = &header.entries[..header.entries.len() - 1];
        let data_entries =
            written_entries(streamed, &part.crc32s).map_err(|kind| kind.at(temp_path))?;
        append_header_and_signature(
            temp_path,
            data_entries,
            seals_bytes,
            &header_bytes,
            &signature,
        )
        .map_err(|kind| kind.at(temp_path))?;
        let size = std::fs::metadata(temp_path)
            .map_err(|err| ErrorKind::io("reading part size", err).at(temp_path))?
            .len();
        if size > self.max_size {
            return Err(ErrorKind::PartOverCap {
                size,
                max_size: self.max_size,
            }
            .at(temp_path));
        }
        #[cfg(test)]
        tests::fail_part_hook(header.part)
            .map_err(|err| ErrorKind::io("testing", err).at(temp_path))?;
        let path = self.out_dir.join(&name);
        part.temp
            .persist_noclobber(&path)
            .map_err(|err| ErrorKind::io("giving the part its final name", err.error).at(&path))?;
        Ok(WrittenPart {
            path,
            file_name: name,
            part: header.part,
            parts,
            size,
        })
    }

    fn creation_name(&self) -> Option<&str> {
        self.new_replica_name.as_deref()
    }

    /// Room left in the current part, opening one if needed.
    fn free_room(&mut self) -> Result<u64> {
        if self.current.is_none() {
            self.open_part()?;
        }
        let part = self.current.as_ref().expect("just opened");
        Ok(self.data_room - part.chunks_len - part.ops_len)
    }

    fn encode_piece(&mut self, raw: &[u8]) -> Result<(u8, Vec<u8>)> {
        let compressed = self
            .compressor
            .compress(raw)
            .map_err(|err| ErrorKind::io("compressing a chunk", err).at(&self.out_dir))?;
        Ok(crate::encoders::choose(raw, compressed))
    }

    fn write_chunk_record(
        &mut self,
        id: &ChunkId,
        chunk_len: u64,
        offset: u64,
        piece_len: u64,
        codec: u8,
        stored: &[u8],
    ) -> Result<()> {
        let record = ChunkRecordHeader {
            id: *id,
            chunk_len: chunk_len as u32,
            offset: offset as u32,
            piece_len: piece_len as u32,
            codec,
            stored_len: stored.len() as u32,
        }
        .encode();
        let part = self.current.as_mut().expect("free_room opened a part");
        let temp: &Path = &part.temp;
        let written = part
            .zip
            .write_all(&record)
            .and_then(|()| part.zip.write_all(stored));
        if let Err(err) = written {
            return Err(ErrorKind::io("writing chunk data", err).at(temp));
        }
        // Encrypted, the entry is pinned by its ciphertext's hash (taken as
        // it is written): hashing the plaintext too would be a wasted pass.
        if matches!(part.zip, ChunkSink::Plain(_)) {
            part.chunks_sha.update(record);
            part.chunks_sha.update(stored);
        }
        part.chunks_len += (record.len() + stored.len()) as u64;
        part.chunk_records += 1;
        self.chunk_bytes += (record.len() + stored.len()) as u64;
        Ok(())
    }

    fn open_part(&mut self) -> Result<()> {
        // The name says which host and process write it, so that a later
        // export can tell one whose writer is gone (see `naming`).
        let named = tempfile::Builder::new()
            .prefix(&naming::partial_prefix())
            .suffix(naming::PARTIAL_SUFFIX)
            // 0666 less the umask, as any file a program writes (tempfile's
            // default is 0600): a drop folder shared by several accounts
            // works, and a site that wants packets private sets its umask.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&self.out_dir)
            .map_err(|err| ErrorKind::io("creating a part file", err).at(&self.out_dir))?;
        let (file, temp) = named.into_parts();
        // An encrypted packet's operations are spooled on this host's own
        // disk (which holds the plain tree anyway), never next to the
        // packet, which may be on a stick.
        let spool_dir = if self.sealer.is_some() {
            std::env::temp_dir()
        } else {
            self.out_dir.clone()
        };
        let ops_spool = tempfile::tempfile_in(&spool_dir)
            .map_err(|err| ErrorKind::io("creating the operation spool", err).at(&spool_dir))?;
        let mut zip = ZipLayout::new(BufWriter::with_capacity(1 << 20, WriteBehind::new(file)));
        zip.start_entry(ENTRY_CHUNKS)
            .map_err(|err| ErrorKind::io("writing a part", err).at(&temp))?;
        let zip = match &self.sealer {
            None => ChunkSink::Plain(zip),
            Some(sealer) => ChunkSink::Age(
                sealer
                    .wrap(HashCount {
                        inner: zip,
                        sha: Sha256::new(),
                        len: 0,
                    })
                    .map_err(|err| ErrorKind::io("encrypting chunks", err).at(&temp))?,
            ),
        };
        self.current = Some(OpenPart {
            temp,
            zip,
            chunks_sha: Sha256::new(),
            chunks_len: 0,
            chunk_records: 0,
            ops_spool: BufWriter::with_capacity(1 << 16, ops_spool),
            ops_len: 0,
            op_records: 0,
        });
        Ok(())
    }

    fn close_part(&mut self) -> Result<()> {
        let Some(part) = self.current.take() else {
            return Ok(());
        };
        let temp = part.temp;
        let at = |kind: ErrorKind| kind.at(&*temp);
        let (mut zip, chunks_pin) = match part.zip {
            ChunkSink::Plain(zip) => (
                zip,
                EntryInfo {
                    name: ENTRY_CHUNKS.into(),
                    encoding: Encoding::Plain,
                    stored_size: part.chunks_len,
                    raw_size: part.chunks_len,
                    sha256: part.chunks_sha.finalize().into(),
                },
            ),
            ChunkSink::Age(writer) => {
                let counted = writer
                    .finish()
                    .map_err(|err| at(ErrorKind::io("encrypting chunks", err)))?;
                (
                    counted.inner,
                    EntryInfo {
                        name: ENTRY_CHUNKS.into(),
                        encoding: Encoding::AgePlain,
                        stored_size: counted.len,
                        raw_size: part.chunks_len,
                        sha256: counted.sha.finalize().into(),
                    },
                )
            }
        };
        let mut entries = vec![chunks_pin];

        // Operations: compress the spool; keep whichever is smaller.
        let mut raw_ops = part.ops_spool.into_inner().map_err(|err| {
            at(ErrorKind::io(
                "flushing the operation spool",
                err.into_error(),
            ))
        })?;
        raw_ops
            .seek(SeekFrom::Start(0))
            .map_err(|err| at(ErrorKind::io("rewinding the operation spool", err)))?;
        let mut packed_ops = tempfile::tempfile_in(&self.out_dir)
            .map_err(|err| at(ErrorKind::io("creating the operation spool", err)))?;
        zstd::stream::copy_encode(&mut raw_ops, &mut packed_ops, ZSTD_LEVEL)
            .map_err(|err| at(ErrorKind::io("compressing operations", err)))?;
        let packed_len = packed_ops
            .seek(SeekFrom::End(0))
            .map_err(|err| at(ErrorKind::io("measuring the operation spool", err)))?;
        let (mut source, encoding, stored_size) = if packed_len < part.ops_len {
            (packed_ops, Encoding::Zstd, packed_len)
        } else {
            (raw_ops, Encoding::Plain, part.ops_len)
        };
        source
            .seek(SeekFrom::Start(0))
            .map_err(|err| at(ErrorKind::io("rewinding the operation spool", err)))?;
        zip.start_entry(ENTRY_OPERATIONS)
            .map_err(|err| at(ErrorKind::io("writing operations", err)))?;
        match &self.sealer {
            None => {
                let sha256 = copy_hashing(&mut source, &mut zip)
                    .map_err(|err| at(ErrorKind::io("writing operations", err)))?;
                entries.push(EntryInfo {
                    name: ENTRY_OPERATIONS.into(),
                    encoding,
                    stored_size,
                    raw_size: part.ops_len,
                    sha256,
                });
            }
            Some(sealer) => {
                let mut writer = sealer
                    .wrap(HashCount {
                        inner: zip,
                        sha: Sha256::new(),
                        len: 0,
                    })
                    .map_err(|err| at(ErrorKind::io("encrypting operations", err)))?;
                std::io::copy(&mut source, &mut writer)
                    .map_err(|err| at(ErrorKind::io("encrypting operations", err)))?;
                let counted = writer
                    .finish()
                    .map_err(|err| at(ErrorKind::io("encrypting operations", err)))?;
                zip = counted.inner;
                entries.push(EntryInfo {
                    name: ENTRY_OPERATIONS.into(),
                    encoding: if encoding == Encoding::Zstd {
                        Encoding::AgeZstd
                    } else {
                        Encoding::AgePlain
                    },
                    stored_size: counted.len,
                    raw_size: part.ops_len,
                    sha256: counted.sha.finalize().into(),
                });
            }
        }

        let encrypted = self.sealer.is_some();
        let fixed_entries = [
            (
                ENTRY_CREATION,
                self.creation_bytes.as_ref(),
                self.creation_raw_len,
                encrypted,
            ),
            (
                ENTRY_PASSKEY,
                self.sealer.as_ref().and_then(|s| s.passkey.as_ref()),
                0,
                false,
            ),
            (
                ENTRY_SECRETS,
                self.secrets_bytes.as_ref(),
                self.secrets_raw_len,
                true,
            ),
        ];
        for (name, bytes, raw_len, sealed) in fixed_entries {
            let Some(bytes) = bytes else { continue };
            zip.add_entry(name, bytes)
                .map_err(|err| at(ErrorKind::io(format!("writing the {name} entry"), err)))?;
            let stored = bytes.len() as u64;
            entries.push(EntryInfo {
                name: name.into(),
                encoding: if sealed {
                    Encoding::AgePlain
                } else {
                    Encoding::Plain
                },
                stored_size: stored,
                raw_size: if sealed { raw_len } else { stored },
                sha256: Sha256::digest(bytes).into(),
            });
        }
        let (file, written) = zip
            .into_entries()
            .map_err(|err| at(ErrorKind::io("writing a part", err)))?;
        file.into_inner()
            .map_err(|err| err.into_error())
            .and_then(WriteBehind::finish)
            .map_err(|err| at(ErrorKind::io("writing a part", err)))?;
        self.pending.push(PendingPart {
            temp,
            entries,
            crc32s: written.iter().map(|entry| entry.crc32).collect(),
            operation_records: part.op_records,
            chunk_records: part.chunk_records,
        });
        Ok(())
    }
}

/// Refuses metadata that no reader should ever have to make sense of.
fn check_meta(meta: &PacketMeta) -> Result<(), String> {
    if matches!(meta.kind, PacketKind::Unknown(_)) {
        return Err("this version writes only update and replica-creation packets".into());
    }
    if (meta.kind == PacketKind::ReplicaCreation) != meta.creation.is_some() {
        return Err(
            "a creation payload goes with, and only with, a replica-creation packet".into(),
        );
    }
    if meta.targets.is_empty() {
        return Err("a packet needs at least one target".into());
    }
    if meta
        .targets
        .iter()
        .any(|target| target.id == meta.sender.id)
    {
        return Err("the sender cannot be one of the targets".into());
    }
    for (index, target) in meta.targets.iter().enumerate() {
        if meta.targets[..index].iter().any(|t| t.id == target.id) {
            return Err(format!("target {} is named twice", target.id));
        }
    }
    if let Some((origin, _)) = meta.epoch_ranges.iter().find(|(_, r)| r.first > r.last) {
        return Err(format!("epoch range of {origin} ends before it starts"));
    }
    Ok(())
}

fn copy_hashing(source: &mut impl Read, sink: &mut impl Write) -> std::io::Result<[u8; 32]> {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            return Ok(sha.finalize().into());
        }
        sha.update(&buf[..n]);
        sink.write_all(&buf[..n])?;
    }
}

/// The zip entries of a pending part, rebuilt from its pins and CRC-32s:
/// contiguous from offset 0, in pin order.
fn written_entries(pins: &[EntryInfo], crc32s: &[u32]) -> Result<Vec<WrittenEntry>, ErrorKind> {
    let mut entries: Vec<WrittenEntry> = Vec::with_capacity(pins.len());
    for (pin, &crc32) in pins.iter().zip(crc32s) {
        let offset = entries.last().map_or(0, WrittenEntry::end);
        let fits = |value: u64, what: &str| {
            u32::try_from(value).map_err(|_| {
                ErrorKind::Zip(format!(
                    "{what} of entry {:?} ({value}) does not fit a zip field",
                    pin.name
                ))
            })
        };
        entries.push(WrittenEntry {
            name: pin.name.clone(),
            local_offset: fits(offset, "offset")?,
            crc32,
            size: fits(pin.stored_size, "size")?,
        });
    }
    Ok(entries)
}

/// Writes the `header` and `signature` entries after a part's data
/// entries, then the central directory and the end record.
/// Encoded length of `seals` were each to carry a tail: the most they can
/// grow to when narrowed.
fn seals_budget(seals: &[crate::seals::Seal]) -> u64 {
    let widest: Vec<crate::seals::Seal> = seals
        .iter()
        .map(|seal| crate::seals::Seal {
            tail: Some(crate::seals::SealTail {
                epoch: u64::MAX,
                link: [0xff; 32],
            }),
            first: u64::MAX,
            last: u64::MAX,
            ..*seal
        })
        .collect();
    // Plus the widest varint of the list's length.
    postcard::to_stdvec(&widest)
        .expect("encoding cannot fail")
        .len() as u64
        + 10
}

/// Appends the `seals` entry (written last of the data entries, once the
/// seals are final), the header and the signature to a part.
fn append_header_and_signature(
    path: &Path,
    data_entries: Vec<WrittenEntry>,
    seals: &[u8],
    header: &[u8],
    signature: &[u8; 64],
) -> Result<(), ErrorKind> {
    let file = File::options()
        .write(true)
        .open(path)
        .map_err(|err| ErrorKind::io("reopening a part", err))?;
    let expected = data_entries.last().map_or(0, WrittenEntry::end);
    let len = file
        .metadata()
        .map_err(|err| ErrorKind::io("reading part size", err))?
        .len();
    if len != expected {
        return Err(ErrorKind::Zip(format!(
            "part file is {len} bytes, its data entries end at {expected}"
        )));
    }
    let mut zip = ZipLayout::resume(BufWriter::new(file), data_entries)
        .map_err(|err| ErrorKind::io("reopening a part", err))?;
    zip.add_entry(ENTRY_SEALS, seals)
        .map_err(|err| ErrorKind::io("writing the seals", err))?;
    zip.add_entry(ENTRY_HEADER, header)
        .map_err(|err| ErrorKind::io("writing the header", err))?;
    zip.add_entry(ENTRY_SIGNATURE, signature)
        .map_err(|err| ErrorKind::io("writing the signature", err))?;
    let file = zip
        .finish()
        .map_err(|err| ErrorKind::io("writing the central directory", err))?
        .into_inner()
        .map_err(|err| ErrorKind::io("writing the central directory", err.into_error()))?;
    file.sync_all()
        .map_err(|err| ErrorKind::io("syncing a part", err))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::ops::{Change, ChunkRef, Extensions, PathState, VersionVector};
    use crate::{EpochRange, Named, PacketKind, Target, MIN_PART_SIZE};

    thread_local! {
        /// The part whose finishing fails, in this thread's writers.
        static FAIL_AT_PART: Cell<Option<u32>> = const { Cell::new(None) };
    }

    /// Called by `finish_part` just before a part gets its final name.
    pub(super) fn fail_part_hook(part: u32) -> std::io::Result<()> {
        match FAIL_AT_PART.get() == Some(part) {
            true => Err(std::io::Error::from(std::io::ErrorKind::StorageFull)),
            false => Ok(()),
        }
    }

    fn id(byte: u8) -> Id {
        Id([byte; 16])
    }

    /// A writer of one update packet with `files` operations of one
    /// random 40 KiB chunk each: several parts at the smallest size.
    fn written(dir: &Path, files: u64) -> PacketWriter {
        let meta = PacketMeta {
            kind: PacketKind::Update,
            family: Named {
                id: id(0xf0),
                name: "docs".into(),
            },
            sender: Named {
                id: id(0xa1),
                name: "boston".into(),
            },
            targets: vec![Target {
                id: id(0xb2),
                name: "lambik".into(),
                seq: 1,
            }],
            packet_id: id(0xc3),
            created: Timestamp {
                secs: 1_763_721_000,
                nanos: 0,
            },
            comment: String::new(),
            epoch_ranges: BTreeMap::from([(
                id(0xa1),
                EpochRange {
                    first: 1,
                    last: files,
                },
            )]),
            epoch_row: BTreeMap::new(),
            seals: Vec::new(),
            creation: None,
            incarnation: None,
            tree_digest: None,
            encryption: None,
            secrets: None,
            rotations: Vec::new(),
        };
        let mut writer = PacketWriter::create(dir, MIN_PART_SIZE, &[0x11; 32], meta).unwrap();
        let mut random = test_support::XorShift(0x9e37_79b9_7f4a_7c15);
        for epoch in 1..=files {
            let chunk: Vec<u8> = (0..40 << 10).map(|_| random.next() as u8).collect();
            let chunk_id: ChunkId = Sha256::digest(&chunk).into();
            writer.add_chunk(&chunk_id, &chunk).unwrap();
            writer
                .add_operation(&Operation {
                    origin: id(0xa1),
                    epoch,
                    recorded: Timestamp { secs: 0, nanos: 0 },
                    change: Change::Path {
                        path: format!("file{epoch}").into_bytes(),
                        version: VersionVector(BTreeMap::from([(id(0xa1), epoch)])),
                        state: PathState::File {
                            mode: 0o644,
                            mtime: Timestamp { secs: 0, nanos: 0 },
                            size: chunk.len() as u64,
                            chunks: vec![ChunkRef {
                                id: chunk_id,
                                len: chunk.len() as u32,
                            }],
                            ext: Extensions::default(),
                        },
                    },
                })
                .unwrap();
        }
        writer
    }

    /// A packet is all its parts or nothing: a part that cannot be
    /// finished takes the parts already given their final names with it
    /// (a full disk seen late left finished parts in a -workdir).
    #[test]
    fn a_part_that_fails_to_finish_takes_the_finished_parts_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let whole = written(dir.path(), 6).finish().unwrap();
        assert!(whole.len() >= 4, "{} parts", whole.len());
        for part in &whole {
            std::fs::remove_file(&part.path).unwrap();
        }
        for failing in [1, 3, whole.len() as u32] {
            FAIL_AT_PART.set(Some(failing));
            let err = written(dir.path(), 6).finish().unwrap_err();
            FAIL_AT_PART.set(None);
            assert!(
                matches!(&err.kind, ErrorKind::Io { .. }),
                "part {failing}: {err}"
            );
            assert_eq!(
                test_support::entry_names(dir.path()),
                Vec::<String>::new(),
                "part {failing}"
            );
        }
    }
}
