//! Typed errors. Every error names the packet file it is about; `kind`
//! says what is wrong, one variant per distinct failure.

use std::path::PathBuf;

use crate::header::FormatVersion;

/// A failure reading, verifying or writing a packet file.
#[derive(Debug, thiserror::Error)]
#[error("packet {}: {kind}", path.display())]
pub struct Error {
    /// The packet file (for writer errors: the part file or output directory).
    pub path: PathBuf,
    pub kind: ErrorKind,
}

/// What is wrong. Match on this to tell failures apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The cause is printed in the message and not also exposed as
    /// `source()`, so a chain of errors never repeats it.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },

    // --- zip container ---
    #[error("truncated or not a zip archive: {0}")]
    Truncated(String),
    #[error("{bytes} bytes of trailing garbage after the end of the zip archive")]
    TrailingGarbage { bytes: u64 },
    #[error("file is {size} bytes, larger than any packet may be ({limit})")]
    FileTooLarge { size: u64, limit: u64 },
    #[error("zip structure is not the canonical packet layout: {0}")]
    NonCanonicalZip(String),
    #[error("entry {name:?} appears more than once")]
    DuplicateEntry { name: String },
    #[error("unexpected entry {name:?}")]
    UnexpectedEntry { name: String },
    #[error("required entry {name:?} is missing")]
    MissingEntry { name: String },
    #[error("CRC-32 of entry {name:?} does not match")]
    CrcMismatch { name: String },

    // --- header and signature ---
    #[error("not a syncreplica packet (bad magic)")]
    NotAPacket,
    #[error("packet format {}.x is newer than this program supports ({}.{})", version.major, crate::FORMAT_MAJOR, crate::FORMAT_MINOR)]
    NewerFormat { version: FormatVersion },
    #[error("packet format {version} is older than this program reads ({}.x); the sending site must upgrade syncreplica and export again", crate::FORMAT_MAJOR)]
    OlderFormat { version: FormatVersion },
    #[error("malformed header: {0}")]
    MalformedHeader(String),
    #[error("signed by unknown key {fingerprint}")]
    UnknownKey { fingerprint: String },
    #[error("BAD signature (key {fingerprint}): packet was damaged or forged")]
    BadSignature { fingerprint: String },

    // --- entries ---
    #[error("entry {name:?} is {actual} bytes, the header says {declared}")]
    EntrySizeMismatch {
        name: String,
        declared: u64,
        actual: u64,
    },
    #[error("entry {name:?} is larger than allowed ({limit} bytes)")]
    OversizedEntry { name: String, limit: u64 },
    #[error("SHA-256 of entry {name:?} does not match the header")]
    DigestMismatch { name: String },
    #[error("entry {name:?} uses an unknown encoding")]
    UnknownEncoding { name: String },
    #[error("entry {name:?} cannot be decompressed: {detail}")]
    Decompression { name: String, detail: String },
    #[error("entry {name:?}: malformed record: {detail}")]
    MalformedRecord { name: String, detail: String },
    #[error("chunk {chunk} does not match its SHA-256")]
    ChunkDigestMismatch { chunk: String },
    #[error("chunk {chunk} is given as changes to chunk {base}, which is not at hand")]
    MissingBase { chunk: String, base: String },
    #[error("entry {name:?} cannot be decrypted: {detail}")]
    Decryption { name: String, detail: String },
    #[error("entry {name:?} is encrypted and was verified without keys: it cannot be read")]
    Encrypted { name: String },
    #[error("encrypted for other replicas ({recipients}): this replica holds none of their keys")]
    NotForThisReplica { recipients: String },
    #[error("encrypted with a passphrase, and none was given")]
    PassphraseNeeded,
    #[error("the passphrase does not open this packet")]
    WrongPassphrase,
    #[error("entry {name:?} changed on disk since it was verified")]
    ChangedSinceVerification { name: String },

    // --- logical packets ---
    #[error("parts do not form one complete logical packet: {0}")]
    IncompleteLogicalPacket(String),
    #[error("operations do not match the header's epoch ranges: {0}")]
    EpochRanges(String),

    // --- writer ---
    #[error("maximum packet size {requested} is below the minimum of {minimum} bytes")]
    MaxSizeTooSmall { requested: u64, minimum: u64 },
    #[error("maximum packet size {requested} is above the maximum of {maximum} bytes")]
    MaxSizeTooLarge { requested: u64, maximum: u64 },
    #[error("packet metadata needs {needed} bytes, leaving too little room under the maximum size {max_size}")]
    MetadataTooLarge { needed: u64, max_size: u64 },
    #[error("invalid packet metadata: {0}")]
    InvalidMetadata(String),
    #[error("chunk of {len} bytes is larger than the maximum of {limit}")]
    ChunkTooLarge { len: usize, limit: usize },
    #[error("chunk data does not hash to its id {chunk}")]
    ChunkIdMismatch { chunk: String },
    #[error("operation encodes to {len} bytes, larger than the maximum of {limit}")]
    OperationTooLarge { len: usize, limit: usize },
    #[error("operation {origin}:{epoch} is outside the declared epoch ranges")]
    OperationOutsideEpochRanges { origin: String, epoch: u64 },
    #[error("zip writer: {0}")]
    Zip(String),
    #[error("internal error: part is {size} bytes, over the cap {max_size}")]
    PartOverCap { size: u64, max_size: u64 },
    #[error("packet file {0} already exists")]
    AlreadyExists(String),
}

impl ErrorKind {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ErrorKind {
        ErrorKind::Io {
            context: context.into(),
            cause: source,
        }
    }

    pub(crate) fn at(self, path: impl Into<PathBuf>) -> Error {
        Error {
            path: path.into(),
            kind: self,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
