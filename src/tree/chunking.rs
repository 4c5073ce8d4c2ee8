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
    fn empty_input_has_no_chunks() {
        assert!(chunk_stream(&b""[..], |_, _| Ok(())).unwrap().is_empty());
    }
}
