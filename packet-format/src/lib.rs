//! syncreplica's packet container, format 2. See `SPEC.md` for the
//! byte-level layout and the rules a reader enforces.
//!
//! A packet is the only thing that travels between sites. One physical
//! packet is one zip file (`unzip -l` / `unzip -t` accept it) holding:
//!
//! * `chunks` — content chunk pieces, each zstd-compressed where that helps;
//! * `operations` — the operation records (one zstd frame, or plain);
//! * `creation` — replica-creation packets only: the new replica and family;
//! * `header` — format version, metadata and the SHA-256 of every entry above;
//! * `signature` — Ed25519 over the header bytes as stored.
//!
//! Writing: [`PacketWriter`]. Reading: [`verify_packet`] then
//! [`VerifiedPacket::operation_records`] / [`VerifiedPacket::chunk_pieces`],
//! or [`LogicalPacket`] to reassemble all parts. Listing: [`examine_packet`]
//! and [`render_listing`].
//!
//! ```no_run
//! # fn main() -> Result<(), packet_format::Error> {
//! use packet_format::{verify_packet, LogicalPacket, PacketMeta, PacketWriter};
//! # let (meta, secret, public): (PacketMeta, [u8; 32], [u8; 32]) = todo!();
//! # let (ops, chunks): (Vec<packet_format::ops::Operation>, Vec<([u8; 32], Vec<u8>)>) = todo!();
//! // Export: chunks of a file first, then the operation that uses them.
//! let mut writer = PacketWriter::create("outgoing".as_ref(), 50 << 20, &secret, meta)?;
//! for (id, bytes) in &chunks {
//!     writer.add_chunk(id, bytes)?;
//! }
//! for op in &ops {
//!     writer.add_operation(op)?;
//! }
//! let parts = writer.finish()?;
//!
//! // Import: verify every part, then stream the contents.
//! let verified = parts
//!     .iter()
//!     .map(|part| verify_packet(&part.path, &[public]))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let packet = LogicalPacket::assemble(verified)?;
//! for chunk in packet.chunks() {
//!     let (id, bytes) = chunk?;
//!     // store the chunk ...
//! #   let _ = (id, bytes);
//! }
//! for op in packet.operations() {
//!     let op = op?;
//!     // apply the operation (commit only after both iterators ended cleanly) ...
//! #   let _ = op;
//! }
//! # Ok(())
//! # }
//! ```

mod container;
pub mod delta;
mod encoders;
mod error;
mod header;
mod listing;
mod logical;
mod naming;
pub mod ops;
mod reader;
mod records;
pub mod seals;
pub mod vocabulary;
mod write_behind;
mod writer;

/// Re-exported so callers name the same age types the format uses.
pub use age;
pub use error::{Error, ErrorKind, Result};
pub use header::{
    digest_items, key_fingerprint, CreationPayload, DigestMetadata, DigestNode, Encoding,
    Encryption, EncryptionRecipient, EntryInfo, EpochRange, FormatVersion, Header, HeaderRotation,
    Member, Named, PacketKind, ProvedRotation, RootParts, Target, TreeDigest, FORMAT_MAJOR,
    FORMAT_MINOR, MAGIC, MAX_DIGEST_NODES, MAX_HEADER_ROTATIONS, MINOR_WITH_CHUNK_GROUPS,
    MINOR_WITH_DIGEST_METADATA, MINOR_WITH_ENCRYPTION, MINOR_WITH_REKEY, MINOR_WITH_ROOT_DIGEST,
    MINOR_WITH_ROOT_METADATA, MINOR_WITH_ROTATIONS, MINOR_WITH_SYSTEM_METADATA, SIGNATURE_CONTEXT,
};
pub use listing::{render_listing, render_listing_with};
pub use logical::{BaseChunks, LogicalChunks, LogicalOperations, LogicalPacket};
pub use naming::{
    canonical_file_name, is_packet_file_name, is_partial_name, packet_file_name, partial_owner,
    partial_prefix, this_host_id, utc_display, utc_timestamp, PartialOwner, PARTIAL_PREFIX,
    PARTIAL_SUFFIX,
};
pub use reader::{
    examine_packet, examine_packet_with, verify_packet, verify_packet_with,
    verify_packet_with_progress, ChunkPiece, ChunkPieces, Decryption, Examination, OperationRecord,
    OperationRecords, Progress, SignatureStatus, VerifiedPacket, PROGRESS_BATCH,
};
pub use writer::{EncryptTo, PacketMeta, PacketWriter, WrittenPart};

/// Smallest accepted maximum packet size. Pieces of chunks and operations
/// are split across parts, so any size at or above this works.
pub const MIN_PART_SIZE: u64 = 64 * 1024;
/// Largest accepted maximum packet size: keeps every zip offset and size in
/// 31 bits, so no Zip64 records are ever needed.
pub const MAX_PART_SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// Largest chunk the format carries.
pub const MAX_CHUNK_LEN: usize = 256 * 1024;
/// Largest decoded chunk group (SPEC.md §5.2): several chunks compressed
/// as one zstd frame, so that redundancy between small files is seen.
pub const MAX_GROUP_LEN: usize = 4 * 1024 * 1024;
/// Largest encoded operation (a file of ~400k chunks).
pub const MAX_OPERATION_LEN: usize = 16 * 1024 * 1024;
/// Largest `header` entry a reader accepts.
pub const MAX_HEADER_LEN: u64 = 1024 * 1024;
/// Largest `creation` entry a reader accepts.
pub const MAX_CREATION_LEN: u64 = 16 * 1024 * 1024;
/// Largest `seals` entry a reader accepts (about 190 000 seals).
pub const MAX_SEALS_LEN: u64 = 16 * 1024 * 1024;

/// Fixed entry names (SPEC.md §3). No name from a packet is ever used as a
/// path on disk.
pub const ENTRY_CHUNKS: &str = "chunks";
pub const ENTRY_OPERATIONS: &str = "operations";
pub const ENTRY_CREATION: &str = "creation";
pub const ENTRY_SEALS: &str = "seals";
/// Passphrase-encrypted packets only: the packet key, an age X25519
/// identity encrypted to the passphrase (SPEC.md §4.2).
pub const ENTRY_PASSKEY: &str = "passkey";
/// Creation packets only, always encrypted: the new replica's secret keys
/// (SPEC.md §8).
pub const ENTRY_SECRETS: &str = "secrets";
pub const ENTRY_HEADER: &str = "header";
pub const ENTRY_SIGNATURE: &str = "signature";

/// Helpers to build deliberately malformed packets for test vectors.
/// Not part of the supported API.
#[doc(hidden)]
pub mod testing {
    use std::io::BufWriter;
    use std::path::Path;

    use ed25519_dalek::{Signer, SigningKey};

    use crate::container::ZipLayout;
    use crate::header::{encode_header, Header, SIGNATURE_CONTEXT};

    /// Encodes a header with whatever version it claims.
    pub fn encode_header_raw(header: &Header) -> Vec<u8> {
        encode_header(header)
    }

    /// Signs header bytes as a writer would.
    pub fn sign_header(secret_key: &[u8; 32], header_bytes: &[u8]) -> [u8; 64] {
        let mut message = SIGNATURE_CONTEXT.to_vec();
        message.extend_from_slice(header_bytes);
        SigningKey::from_bytes(secret_key).sign(&message).to_bytes()
    }

    /// Writes a zip of the given entries, in order, in the canonical layout
    /// (SPEC.md §3), whatever the entries hold.
    pub fn write_raw_zip(path: &Path, entries: &[(&str, &[u8])]) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut zip = ZipLayout::new(BufWriter::new(file));
        for (name, bytes) in entries {
            zip.add_entry(name, bytes)?;
        }
        zip.finish()?.into_inner().map_err(|err| err.into_error())?;
        Ok(())
    }
}
