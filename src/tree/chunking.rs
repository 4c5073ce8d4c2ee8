//! Content-defined chunking (FastCDC, about 64 KiB on average) with SHA-256
//! chunk ids. Boundaries follow the content, so an insertion early in a file
//! changes only the chunks around it, and later exports ship only those.

use std::io::Read;
use std::sync::OnceLock;

use fastcdc::v2020::StreamCDC;
use sha2::{Digest, Sha256};

use crate::ops::{ChunkId, ChunkRef};

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
        let chunk = chunk.map_err(cdc_error)?;
        let reference = reference_of(&chunk.data);
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

/// Files from this size on are worth [`chunk_stream_pipelined`]'s thread.
pub const PIPELINE_FROM: u64 = 8 << 20;

/// Chunks in flight between the two threads of [`chunk_stream_pipelined`].
const PIPELINE_DEPTH: usize = 8;

/// [`chunk_stream`] on two threads: one reads and finds the boundaries,
/// this one hashes (and calls `on_chunk`), each about half the work, a
/// few chunks in flight between them (at most 8 × 256 KiB). For large
/// files; the same chunks, in the same order.
pub fn chunk_stream_pipelined<R: Read + Send>(
    reader: R,
    mut on_chunk: impl FnMut(&ChunkRef, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<Vec<ChunkRef>> {
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel(PIPELINE_DEPTH);
        scope.spawn(move || {
            for chunk in StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
                let item = chunk.map(|c| c.data).map_err(cdc_error);
                let failed = item.is_err();
                // The receiver is gone when `on_chunk` failed: stop.
                if send.send(item).is_err() || failed {
                    break;
                }
            }
        });
        let mut chunks = Vec::new();
        for data in receive {
            let data = data?;
            let reference = reference_of(&data);
            on_chunk(&reference, &data)?;
            chunks.push(reference);
        }
        Ok(chunks)
    })
}

fn cdc_error(err: fastcdc::v2020::Error) -> std::io::Error {
    match err {
        fastcdc::v2020::Error::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// The reference of a chunk: its SHA-256 and length.
fn reference_of(data: &[u8]) -> ChunkRef {
    // Zero runs (holes, blank disk image space) cost a scan of the bytes,
    // not a hash.
    let id = if is_all_zero(data) {
        zero_chunk_id(data.len())
    } else {
        Sha256::digest(data).into()
    };
    ChunkRef {
        id,
        len: data.len() as u32,
    }
}

/// Reads a file from its start, handing out zeros for its holes without
/// reading them (`lseek` SEEK_DATA / SEEK_HOLE): a 1 GiB image holding
/// 8 KiB of data costs two reads and a few seeks, not 1 GiB of page
/// cache. Where the filesystem cannot tell holes (the seeks fail), it
/// reads everything. Reads stop at `size`, the length the caller stat'ed;
/// a file that grows or shrinks meanwhile is the caller's to notice (its
/// stat moves).
pub struct HoleSkippingReader<'a> {
    file: &'a std::fs::File,
    size: u64,
    pos: u64,
    /// Data (or unknown) up to here from `pos`.
    data_end: u64,
    /// Zeros (a hole) up to here from `pos`.
    hole_end: u64,
}

impl<'a> HoleSkippingReader<'a> {
    pub fn new(file: &'a std::fs::File, size: u64) -> Self {
        HoleSkippingReader {
            file,
            size,
            pos: 0,
            data_end: 0,
            hole_end: 0,
        }
    }

    /// Finds what lies at `pos`: sets `hole_end` past it when a hole
    /// starts there, otherwise `data_end`.
    fn locate(&mut self) {
        use rustix::fs::{seek, SeekFrom};
        match seek(self.file, SeekFrom::Data(self.pos)) {
            Ok(data) if data > self.pos => self.hole_end = data.min(self.size),
            Ok(_) => {
                self.data_end = match seek(self.file, SeekFrom::Hole(self.pos)) {
                    Ok(hole) if hole > self.pos => hole,
                    _ => u64::MAX,
                }
            }
            // No data from here to the end: all hole.
            Err(rustix::io::Errno::NXIO) => self.hole_end = self.size,
            // Holes unknown here: read it all.
            Err(_) => self.data_end = u64::MAX,
        }
    }
}

impl Read for HoleSkippingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.hole_end && self.pos >= self.data_end {
            self.locate();
        }
        let left = self.size - self.pos;
        let n = if self.pos < self.hole_end {
            let n = (self.hole_end - self.pos).min(left).min(buf.len() as u64) as usize;
            buf[..n].fill(0);
            n
        } else {
            let n = (self.data_end - self.pos).min(left).min(buf.len() as u64) as usize;
            self.file.read_at(&mut buf[..n], self.pos)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Whether every byte of `bytes` is zero.
pub fn is_all_zero(bytes: &[u8]) -> bool {
    // OR-folded in blocks, which the compiler vectorises; a per-byte
    // `all` would stop early but run a byte at a time.
    bytes
        .chunks(256)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// SHA-256 of `len` zero bytes, for `len` up to [`MAX_CHUNK`] (panics
/// above). Cheap after the first call: SHA-256 eats 64-byte blocks, so
/// the hasher's state after each whole number of zero blocks is kept
/// (4,096 states, about 450 KB, built once from one pass over 256 KiB)
/// and only the last partial block is hashed per call.
pub fn zero_chunk_id(len: usize) -> ChunkId {
    static STATES: OnceLock<Vec<Sha256>> = OnceLock::new();
    let states = STATES.get_or_init(|| {
        let mut hasher = Sha256::new();
        let mut states = Vec::with_capacity(MAX_CHUNK / 64 + 1);
        states.push(hasher.clone());
        for _ in 0..MAX_CHUNK / 64 {
            hasher.update([0u8; 64]);
            states.push(hasher.clone());
        }
        states
    });
    assert!(len <= MAX_CHUNK, "a chunk is at most {MAX_CHUNK} bytes");
    let mut hasher = states[len / 64].clone();
    hasher.update(&[0u8; 64][..len % 64]);
    hasher.finalize().into()
}

/// Whether `chunk` is all zeros: a hole's worth of content, which a
/// receiver leaves unwritten (a hole) and does not count as space used.
pub fn is_zero_chunk(chunk: &ChunkRef) -> bool {
    chunk.len as usize <= MAX_CHUNK && zero_chunk_id(chunk.len as usize) == chunk.id
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
    fn the_pipelined_chunker_cuts_the_same_chunks() {
        let data = [pseudo_random(3 << 20, 5), vec![0; 1 << 20]].concat();
        let plain = chunk_stream(&data[..], |_, _| Ok(())).unwrap();
        let mut rebuilt = Vec::new();
        let piped = chunk_stream_pipelined(&data[..], |_, bytes| {
            rebuilt.extend_from_slice(bytes);
            Ok(())
        })
        .unwrap();
        assert_eq!(plain, piped);
        assert_eq!(rebuilt, data);
        // A failing callback ends it, with its error.
        let err = chunk_stream_pipelined(&data[..], |_, _| Err(std::io::Error::other("stop")))
            .unwrap_err();
        assert_eq!(err.to_string(), "stop");
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
    fn zero_chunk_ids_are_the_hash_of_zeros() {
        for len in [0, 1, 63, 64, 65, 4096, 100_000, MAX_CHUNK] {
            let zeros = vec![0u8; len];
            let id: ChunkId = Sha256::digest(&zeros).into();
            assert_eq!(zero_chunk_id(len), id, "{len}");
            assert!(is_all_zero(&zeros));
        }
        let mut one = vec![0u8; 1000];
        one[999] = 1;
        assert!(!is_all_zero(&one));
        let chunk = ChunkRef {
            id: Sha256::digest(&one).into(),
            len: 1000,
        };
        assert!(!is_zero_chunk(&chunk));
        // A file of zeros chunks into zero chunks, named as any chunk is.
        let data = [pseudo_random(100_000, 3), vec![0u8; 1 << 20]].concat();
        let chunks = chunk_stream(&data[..], |chunk, bytes| {
            assert_eq!(chunk.id, <[u8; 32]>::from(Sha256::digest(bytes)));
            Ok(())
        })
        .unwrap();
        assert!(chunks.iter().filter(|c| is_zero_chunk(c)).count() >= 3);
    }

    #[test]
    fn the_hole_skipping_reader_reads_what_the_file_holds() {
        use std::io::{Seek, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut file = std::fs::File::create(&path).unwrap();
        let data = pseudo_random(10_000, 4);
        // Hole, data, hole, data, trailing hole.
        file.seek(std::io::SeekFrom::Start(3 << 20)).unwrap();
        file.write_all(&data).unwrap();
        file.seek(std::io::SeekFrom::Start(7 << 20)).unwrap();
        file.write_all(&data).unwrap();
        file.set_len(9 << 20).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut read = Vec::new();
        HoleSkippingReader::new(&file, 9 << 20)
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, std::fs::read(&path).unwrap());
        // Stops at the size given.
        let mut read = Vec::new();
        HoleSkippingReader::new(&file, (3 << 20) + 5)
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read.len(), (3 << 20) + 5);
        assert_eq!(&read[3 << 20..], &data[..5]);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk_stream(&b""[..], |_, _| Ok(())).unwrap().is_empty());
    }
}
