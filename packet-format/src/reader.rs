//! Verifying and reading packets (SPEC.md §12).
//!
//! Order of checks, cheapest and least trusting first: zip structure, header
//! prefix (magic, major version), signature over the header bytes exactly as
//! received, header body, entry set and sizes, then every entry streamed
//! through SHA-256 while its records are decoded with bounded sizes.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};

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
    ChunkRecordHeader, OpRecordHeader, CHUNK_RECORD_HEADER_LEN, CODEC_RECIPE, CODEC_ZSTD,
    OP_RECORD_HEADER_LEN,
};
use crate::{
    ENTRY_CHUNKS, ENTRY_CREATION, ENTRY_HEADER, ENTRY_OPERATIONS, ENTRY_SEALS, ENTRY_SIGNATURE,
    MAX_CREATION_LEN, MAX_HEADER_LEN, MAX_PART_SIZE,
};

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
}

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
    finish_verification(opened, header)
}

/// Checks a packet as far as possible without failing early, for listings
/// of packets that may be damaged or signed by keys not (yet) trusted.
pub fn examine_packet(path: &Path, trusted_keys: &[[u8; 32]]) -> Examination {
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
    if let Err(err) = finish_verification(opened, header) {
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
        ENTRY_CHUNKS | ENTRY_OPERATIONS | ENTRY_CREATION | ENTRY_SEALS
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
        let encoding_ok = match entry.encoding {
            Encoding::Plain => entry.raw_size == entry.stored_size,
            Encoding::Zstd => entry.name == ENTRY_OPERATIONS || !is_known_entry(&entry.name),
            Encoding::Unknown(_) => false,
        };
        if !encoding_ok {
            return Err(ErrorKind::UnknownEncoding {
                name: entry.name.clone(),
            });
        }
        let limit = match entry.name.as_str() {
            ENTRY_CREATION => MAX_CREATION_LEN,
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
    }
}

fn finish_verification(opened: Opened, header: Header) -> Result<VerifiedPacket> {
    let path = opened.path;
    check_entry_set(&header, &opened.locations).map_err(|k| k.at(&path))?;
    let mut packet = VerifiedPacket {
        path,
        size: opened.size,
        header,
        creation: None,
        seals: Vec::new(),
        locations: opened.locations,
    };
    // Stream every entry once, decoding records as the importer will.
    let mut chunk_records = 0u64;
    for piece in packet.pieces(Mode::Verify)? {
        piece?;
        chunk_records += 1;
    }
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
        let mut stream = EntryStream::open(&packet.path, &location)?;
        stream
            .finish(&entry, &location, Mode::Verify)
            .map_err(|k| k.at(&packet.path))?;
    }
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

    /// The replica-creation payload, for creation packets.
    pub fn creation(&self) -> Option<&CreationPayload> {
        self.creation.as_ref()
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
        let stream = EntryStream::open(&self.path, &location)?;
        let content = match entry.encoding {
            Encoding::Plain => Content::Plain(stream),
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

    fn pieces(&self, mode: Mode) -> Result<ChunkPieces> {
        Ok(ChunkPieces {
            reader: self.record_reader(ENTRY_CHUNKS, mode)?,
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
        })
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
        Ok(n)
    }
}

/// An entry's decoded content.
enum Content {
    Plain(EntryStream),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<EntryStream>>>),
}

impl Content {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Content::Plain(stream) => stream.read(buf),
            Content::Zstd(decoder) => decoder.read(buf),
        }
    }

    /// The underlying stream, and whether the decoder left bytes unused.
    fn into_stream(self) -> (EntryStream, bool) {
        match self {
            Content::Plain(stream) => (stream, false),
            Content::Zstd(decoder) => {
                let buffered = decoder.finish();
                let leftover = !buffered.buffer().is_empty();
                (buffered.into_inner(), leftover)
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
                    return Err(if matches!(content, Content::Zstd(_)) {
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
}

impl ChunkPieces {
    fn next_piece(&mut self) -> Result<Option<ChunkPiece>, ErrorKind> {
        let reader = &mut self.reader;
        if reader.at_end()? {
            return Ok(None);
        }
        let mut fixed = [0u8; CHUNK_RECORD_HEADER_LEN];
        reader.read_exact_raw(&mut fixed)?;
        let record = ChunkRecordHeader::decode(&fixed);
        record.check().map_err(|detail| reader.malformed(detail))?;
        reader.check_piece_position(record.offset, record.piece_len, record.chunk_len)?;
        let mut stored = vec![0u8; record.stored_len as usize];
        reader.read_exact_raw(&mut stored)?;
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
