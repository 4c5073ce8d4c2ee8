//! Content-defined chunking (FastCDC, about 64 KiB on average) with SHA-256
//! chunk ids. Boundaries follow the content, so an insertion early in a file
//! changes only the chunks around it, and later exports ship only those.

use std::io::Read;

use fastcdc::v2020::StreamCDC;
use sha2::{Digest, Sha256};

use crate::ops::ChunkRef;

pub const MIN_CHUNK: usize = 16 * 1024;
pub const AVG_CHUNK: usize = 64 * 1024;
pub const MAX_CHUNK: usize = 256 * 1024;

/// Cuts `reader` into chunks, calling `on_chunk` with each chunk's reference
/// and bytes, and returns the file's chunk list. Memory use is bounded by
/// the maximum chunk size, whatever the file size.
pub fn chunk_stream<R: Read>(
    reader: R,
    mut on_chunk: impl FnMut(&ChunkRef, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<Vec<ChunkRef>> {
    let mut chunks = Vec::new();
    for chunk in StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
        let chunk = chunk.map_err(|err| match err {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        let reference = ChunkRef {
            id: Sha256::digest(&chunk.data).into(),
            len: chunk.length as u32,
        };
        on_chunk(&reference, &chunk.data)?;
        chunks.push(reference);
    }
    Ok(chunks)
}

/// Second level, inside each chunk: content-defined pieces of about 512 B
/// (128 B to 2 KiB), cut from the chunk's start, so the same chunk always
/// has the same pieces. A changed chunk then travels as the pieces the
/// receiver holds in the chunk it replaces plus the new bytes
/// ([`packet_format::delta::Recipe`]); an in-place write of 4 KiB costs
/// about 5.7 KiB instead of the whole ~64 KiB chunk. Smaller pieces cost
/// state: 10 bytes each in `state.db` (about 22 MB per GiB of content);
/// with 1 KiB pieces a 4 KiB write cost 1.68x its bytes, with 512 B 1.41x.
pub const MIN_PIECE: usize = 128;
pub const AVG_PIECE: usize = 512;
pub const MAX_PIECE: usize = 2048;

/// Bytes per piece in a packed piece list: length (u16 LE) and fingerprint.
pub const PIECE_RECORD: usize = 2 + 8;

/// One piece of a chunk: where it starts, its length, and its fingerprint
/// (the first 8 bytes of its SHA-256; fingerprints never travel, they only
/// find pieces the receiver already holds, and the receiver checks every
/// rebuilt chunk against its full SHA-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub offset: u32,
    pub len: u32,
    pub print: u64,
}

/// The pieces of one chunk's bytes, in order.
pub fn pieces(chunk: &[u8]) -> Vec<Piece> {
    if chunk.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(chunk, MIN_PIECE, AVG_PIECE, MAX_PIECE)
        .map(|cut| {
            let bytes = &chunk[cut.offset..cut.offset + cut.length];
            let digest = Sha256::digest(bytes);
            Piece {
                offset: cut.offset as u32,
                len: cut.length as u32,
                print: u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")),
            }
        })
        .collect()
}

/// The pieces of a chunk packed for the state database:
/// [`PIECE_RECORD`] bytes each.
pub fn pack_pieces(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pieces.len() * PIECE_RECORD);
    for piece in pieces {
        out.extend_from_slice(&(piece.len as u16).to_le_bytes());
        out.extend_from_slice(&piece.print.to_le_bytes());
    }
    out
}

/// The inverse of [`pack_pieces`]; `None` for bytes it did not write.
pub fn unpack_pieces(packed: &[u8]) -> Option<Vec<Piece>> {
    if !packed.len().is_multiple_of(PIECE_RECORD) {
        return None;
    }
    let mut offset = 0u32;
    Some(
        packed
            .chunks_exact(PIECE_RECORD)
            .map(|record| {
                let len = u32::from(u16::from_le_bytes([record[0], record[1]]));
                let piece = Piece {
                    offset,
                    len,
                    print: u64::from_le_bytes(record[2..].try_into().expect("8 bytes")),
                };
                offset += len;
                piece
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_content_within_bounds() {
        let data = pseudo_random(3 << 20, 1);
        let mut rebuilt = Vec::new();
        let chunks = chunk_stream(&data[..], |_, bytes| {
            rebuilt.extend_from_slice(bytes);
            Ok(())
        })
        .unwrap();
        assert_eq!(rebuilt, data);
        assert!(chunks.len() > 10, "about 64 KiB each: {}", chunks.len());
        assert!(chunks.iter().all(|c| c.len as usize <= MAX_CHUNK));
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.len as usize >= MIN_CHUNK));
    }

    #[test]
    fn an_insertion_changes_few_chunks() {
        let data = pseudo_random(4 << 20, 2);
        let mut edited = data.clone();
        edited.splice(1_000_000..1_000_000, b"inserted".iter().copied());
        let ids = |d: &[u8]| chunk_stream(d, |_, _| Ok(())).unwrap();
        let before = ids(&data);
        let after = ids(&edited);
        let shared = after.iter().filter(|c| before.contains(c)).count();
        assert!(
            after.len() - shared <= 3,
            "{} of {} changed",
            after.len() - shared,
            after.len()
        );
    }

    #[test]
    fn a_small_write_changes_few_pieces() {
        let data = pseudo_random(64 * 1024, 3);
        let mut edited = data.clone();
        edited[30_000..30_000 + 4096].copy_from_slice(&pseudo_random(4096, 4));
        let before = pieces(&data);
        let after = pieces(&edited);
        assert_eq!(unpack_pieces(&pack_pieces(&before)).unwrap(), before);
        let old: std::collections::HashSet<u64> = before.iter().map(|p| p.print).collect();
        let fresh: u32 = after
            .iter()
            .filter(|p| !old.contains(&p.print))
            .map(|p| p.len)
            .sum();
        assert!(fresh < 4096 + 3 * 1024, "{fresh} bytes of new pieces");
        assert!(after.iter().all(|p| p.len as usize <= MAX_PIECE));
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk_stream(&b""[..], |_, _| Ok(())).unwrap().is_empty());
    }
}
