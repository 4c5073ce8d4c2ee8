//! Writing files from their chunk lists with every byte written once: each
//! file is made at its full size first, then every chunk is written at each
//! place that needs it as the [`ChunkSource`] streams it (a packet: in the
//! order its parts store them), then the chunks the source does not carry
//! are read from elsewhere (this replica's own files) the same way.
//!
//! Nothing is copied beside the packet on the way (an earlier version
//! spooled its chunks to a temporary file first), so what an import writes
//! before its commit is the content it stages, and no more. Memory holds
//! one chunk at a time, and a few bytes for every chunk reference.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Refusal, Result};
use crate::ops::{ChunkId, ChunkRef, Timestamp};
use crate::sync::apply::ChunkSource;
use crate::tree::{chunking, relpath};

/// One file to write.
pub(crate) struct Target<'a> {
    /// Where it is written: a folder of ours, outside the tree. Anything
    /// there is replaced.
    pub path: PathBuf,
    /// The tree path it is for, for messages.
    pub rel: &'a [u8],
    pub chunks: &'a [ChunkRef],
    pub mode: u32,
    pub mtime: Timestamp,
}

/// Sees each chunk written: its id and bytes.
pub(crate) type OnChunk<'a> = dyn FnMut(&ChunkId, &[u8]) + 'a;

/// How [`write_files`] treats what its source does not carry, and how
/// durable the files must be.
pub(crate) struct Options<'a> {
    /// Called once with each distinct chunk written, from the source or
    /// from elsewhere, once it is checked.
    pub on_chunk: Option<&'a mut OnChunk<'a>>,
    /// The bytes of a chunk the source did not deliver, read from
    /// elsewhere and already checked against its id and length; `None`
    /// when found nowhere.
    pub elsewhere: &'a mut dyn FnMut(&ChunkRef) -> Option<Vec<u8>>,
    /// What a chunk found nowhere, needed by the file `rel`, means: an
    /// error, or `None` to leave the files that need it out (they are
    /// removed, and listed in [`Assembled::incomplete`]).
    pub missing: &'a dyn Fn(&ChunkRef, &[u8]) -> Option<Error>,
    /// Fsync each file once written (several at once, see [`fsync_all`]).
    pub fsync: bool,
    /// Called once per file, in order, when it is complete.
    pub after_file: &'a mut dyn FnMut() -> Result<()>,
}

/// A place a chunk goes: the file's index in the targets, and the offset.
struct Spot {
    file: usize,
    offset: u64,
}

/// What [`write_files`] wrote.
#[derive(Debug)]
pub(crate) struct Assembled {
    /// Bytes of content: the sum of the complete files' sizes.
    pub bytes: u64,
    /// Of `bytes`: written from what the source delivered (for a packet:
    /// chunks it carries whole, or rebuilds from changes to chunks held
    /// here).
    pub from_source: u64,
    /// Of `bytes`: copied from chunks held here (`Options::elsewhere`).
    pub copied: u64,
    /// Of `bytes`: all-zero chunks, left as holes (not written).
    pub holes: u64,
    /// The targets (by index) left out for want of a chunk, removed.
    // Only tests read it now: the one caller that leaves files out, the
    // creation import, assembles in pages of its own
    // (`creation::write_content`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub incomplete: Vec<usize>,
}

/// Writes every target from its chunk list: content, then mode and mtime.
/// Returns what it wrote ([`Assembled`]). Every chunk
/// is checked against its id and length before it is written (the id by
/// the source when it says it checks them, [`ChunkSource::checks_ids`]).
/// All-zero chunks are not written at all, nor zero 4 KiB blocks within a
/// chunk: the files are sparse where their content is zeros. Errors: a
/// chunk whose bytes do not match its id ([`Refusal::BadContent`]), one
/// found nowhere (`options.missing`), the source's own (a damaged packet),
/// and I/O. On error the targets are left as they are, for the caller to
/// remove.
pub(crate) fn write_files(
    targets: &[Target],
    source: &mut dyn ChunkSource,
    options: Options,
) -> Result<Assembled> {
    // Where each chunk goes, keyed by id and length: a reference with the
    // right id but another length cannot be served by those bytes.
    let mut spots: HashMap<(ChunkId, u32), Vec<Spot>> = HashMap::new();
    // The chunks in the order the files first need them, so the chunk a
    // message names is the first one missing.
    let mut order: Vec<(ChunkId, u32)> = Vec::new();
    let mut total = 0u64;
    // Per target: bytes from the source, copied here, left as holes.
    let mut origins = vec![[0u64; 3]; targets.len()];
    for (index, target) in targets.iter().enumerate() {
        let file = open(&target.path, true).at(&target.path)?;
        let mut offset = 0u64;
        for chunk in target.chunks {
            if chunking::is_zero_chunk(chunk) {
                // Never written: the file is made at its full length
                // below, and what was never written is a hole that reads
                // as zeros. A sparse file stays sparse.
                offset += u64::from(chunk.len);
                origins[index][2] += u64::from(chunk.len);
                continue;
            }
            let key = (chunk.id, chunk.len);
            spots
                .entry(key)
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(Spot {
                    file: index,
                    offset,
                });
            offset += u64::from(chunk.len);
        }
        // Sparse until written: it takes room only as chunks land.
        file.set_len(offset).at(&target.path)?;
        total += offset;
    }

    let mut writers = Writers {
        targets,
        open: Vec::new(),
    };
    let wanted: Vec<ChunkId> = order.iter().map(|(id, _)| *id).collect();
    let mut on_chunk = options.on_chunk;
    // A packet's reader has hashed every chunk already (a chunk rebuilt
    // from a recipe included): a second SHA-256 of every byte would only
    // cost time.
    let check = !source.checks_ids();
    let delivered = source.deliver_with(&wanted, &mut *options.elsewhere, &mut |id, bytes| {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return Ok(());
        };
        // Not needed, or written already.
        let Some(places) = spots.remove(&(*id, len)) else {
            return Ok(());
        };
        if check && Sha256::digest(bytes).as_slice() != id {
            return Err(Error::Refused(Refusal::BadContent {
                chunk: hex::encode(id),
                path: relpath::display(targets[places[0].file].rel),
            }));
        }
        if let Some(on_chunk) = on_chunk.as_mut() {
            on_chunk(id, bytes);
        }
        for spot in &places {
            origins[spot.file][0] += u64::from(len);
        }
        writers.put(&places, bytes)
    });
    if let Err(Error::Packet(err)) = &delivered {
        // A chunk the packet gives as changes to one this replica should
        // hold, which it does not (or no longer) hold: as a chunk missing.
        if let packet_format::ErrorKind::MissingBase { chunk, base } = &err.kind {
            let needed_by = spots
                .iter()
                .find(|((id, _), _)| hex::encode(id) == *chunk)
                .map(|(_, places)| targets[places[0].file].rel);
            if let Some(rel) = needed_by {
                if let Some(err) = (options.missing)(
                    &ChunkRef {
                        id: hex::decode(base)
                            .ok()
                            .and_then(|b| b.try_into().ok())
                            .unwrap_or_default(),
                        len: 0,
                    },
                    rel,
                ) {
                    return Err(err);
                }
            }
        }
    }
    delivered?;
    let mut incomplete: Vec<usize> = Vec::new();
    for key in &order {
        let Some(places) = spots.remove(key) else {
            continue;
        };
        let chunk = ChunkRef {
            id: key.0,
            len: key.1,
        };
        let Some(bytes) = (options.elsewhere)(&chunk) else {
            match (options.missing)(&chunk, targets[places[0].file].rel) {
                Some(err) => return Err(err),
                None => {
                    incomplete.extend(places.iter().map(|spot| spot.file));
                    continue;
                }
            }
        };
        if let Some(on_chunk) = on_chunk.as_mut() {
            on_chunk(&chunk.id, &bytes);
        }
        for spot in &places {
            origins[spot.file][1] += u64::from(chunk.len);
        }
        writers.put(&places, &bytes)?;
    }
    drop(writers);
    incomplete.sort_unstable();
    incomplete.dedup();
    for &index in &incomplete {
        let path = &targets[index].path;
        std::fs::remove_file(path).at(path)?;
        total -= targets[index]
            .chunks
            .iter()
            .map(|c| u64::from(c.len))
            .sum::<u64>();
    }

    // Mode and mtime last: no write follows them, and a read-only mode
    // does not stop one.
    for (index, target) in targets.iter().enumerate() {
        if incomplete.binary_search(&index).is_ok() {
            continue;
        }
        let file = open(&target.path, false).at(&target.path)?;
        // Setuid/setgid bits go on after the owner, if at all
        // (`crate::tree::meta::apply`): never on a staged file.
        file.set_permissions(std::fs::Permissions::from_mode(target.mode & 0o1777))
            .at(&target.path)?;
        crate::tree::confined::set_file_mtime(&file, target.mtime).at(&target.path)?;
        (options.after_file)()?;
    }
    if options.fsync {
        let complete: Vec<&Path> = targets
            .iter()
            .enumerate()
            .filter(|(index, _)| incomplete.binary_search(index).is_err())
            .map(|(_, target)| target.path.as_path())
            .collect();
        fsync_all(&complete)?;
    }
    let complete = |kind: usize| -> u64 {
        origins
            .iter()
            .enumerate()
            .filter(|(index, _)| incomplete.binary_search(index).is_err())
            .map(|(_, origin)| origin[kind])
            .sum()
    };
    Ok(Assembled {
        bytes: total,
        from_source: complete(0),
        copied: complete(1),
        holes: complete(2),
        incomplete,
    })
}

/// Fsyncs every file in `paths`, several at once
/// ([`crate::sys::fsutil::in_parallel`]); the first error once all are
/// done.
fn fsync_all(paths: &[&Path]) -> Result<()> {
    crate::sys::fsutil::in_parallel(paths, crate::sys::fsutil::FSYNC_THREADS, |path| {
        open(path, false).and_then(|file| file.sync_all()).at(path)
    })
    .into_iter()
    .collect()
}

/// Opens a target: created (replacing anything there) and writable, or
/// for reading; never through a symlink.
pub(crate) fn open(path: &Path, create: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    if create {
        options.write(true).create(true).truncate(true).mode(0o600);
    } else {
        options.read(true);
    }
    options
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// The targets open for writing, the most recently used last: chunks come
/// mostly in file order, and a few handles spare reopening without holding
/// one per file.
struct Writers<'a> {
    targets: &'a [Target<'a>],
    open: Vec<(usize, File)>,
}

const OPEN_WRITERS: usize = 16;

/// The block size holes are made of: a zero block of the file (at a
/// multiple of this offset) is not written, so it stays a hole. 4 KiB is
/// the block of ext4, xfs and btrfs as usually made; on a filesystem with
/// larger blocks a partly written block is simply allocated.
const HOLE_BLOCK: u64 = 4096;

/// Writes `bytes` at `offset` of a file that is a hole there (made by
/// `set_len`, never written), leaving the zero blocks in it unwritten.
pub(crate) fn write_sparse(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    let end = offset + bytes.len() as u64;
    // Runs of non-zero blocks, each written in one call.
    let mut run_start: Option<u64> = None;
    let mut at = offset;
    while at < end {
        let block_end = ((at / HOLE_BLOCK + 1) * HOLE_BLOCK).min(end);
        let block = &bytes[(at - offset) as usize..(block_end - offset) as usize];
        let zero = chunking::is_all_zero(block);
        match (zero, run_start) {
            (false, None) => run_start = Some(at),
            (true, Some(start)) => {
                file.write_all_at(
                    &bytes[(start - offset) as usize..(at - offset) as usize],
                    start,
                )?;
                run_start = None;
            }
            _ => {}
        }
        at = block_end;
    }
    if let Some(start) = run_start {
        file.write_all_at(&bytes[(start - offset) as usize..], start)?;
    }
    Ok(())
}

/// Opens a target made by [`open`] for writing its chunks, never through
/// a symlink.
pub(crate) fn open_for_write(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

impl Writers<'_> {
    fn put(&mut self, places: &[Spot], bytes: &[u8]) -> Result<()> {
        for spot in places {
            let path = &self.targets[spot.file].path;
            let file = self.file(spot.file)?;
            write_sparse(file, bytes, spot.offset).at(path)?;
        }
        Ok(())
    }

    fn file(&mut self, index: usize) -> Result<&File> {
        match self.open.iter().position(|(i, _)| *i == index) {
            Some(at) => {
                let entry = self.open.remove(at);
                self.open.push(entry);
            }
            None => {
                if self.open.len() == OPEN_WRITERS {
                    self.open.remove(0);
                }
                let path = &self.targets[index].path;
                let file = open_for_write(path).at(path)?;
                self.open.push((index, file));
            }
        }
        Ok(&self.open.last().expect("pushed above").1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn chunk(bytes: &[u8]) -> ChunkRef {
        ChunkRef {
            id: Sha256::digest(bytes).into(),
            len: bytes.len() as u32,
        }
    }

    /// Hands over `chunks` in the order given, whatever is wanted, as a
    /// packet does (duplicates and unneeded chunks included).
    struct Stream(Vec<Vec<u8>>);

    impl ChunkSource for Stream {
        fn deliver(
            &mut self,
            _wanted: &[ChunkId],
            sink: &mut dyn FnMut(&ChunkId, &[u8]) -> Result<()>,
        ) -> Result<()> {
            for bytes in &self.0 {
                sink(&chunk(bytes).id, bytes)?;
            }
            Ok(())
        }
    }

    fn missing(chunk: &ChunkRef, rel: &[u8]) -> Option<Error> {
        Some(Error::Refused(Refusal::MissingContent {
            chunk: hex::encode(chunk.id),
            path: relpath::display(rel),
            rel: rel.to_vec(),
        }))
    }

    #[test]
    fn each_chunk_lands_at_every_place_that_needs_it_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            b"alpha ".as_slice(),
            b"bravo ".as_slice(),
            b"local".as_slice(),
        );
        let first = [chunk(a), chunk(b), chunk(a), chunk(c)];
        let second = [chunk(b), chunk(c), chunk(a)];
        let empty: [ChunkRef; 0] = [];
        let targets = [
            Target {
                path: dir.path().join("0"),
                rel: b"first",
                chunks: &first,
                mode: 0o444,
                mtime: Timestamp::new(1_500_000_000, 123_456_789).unwrap(),
            },
            Target {
                path: dir.path().join("1"),
                rel: b"second",
                chunks: &second,
                mode: 0o755,
                mtime: Timestamp::new(-1, 0).unwrap(),
            },
            Target {
                path: dir.path().join("2"),
                rel: b"empty",
                chunks: &empty,
                mode: 0o600,
                mtime: Timestamp::default(),
            },
        ];
        // Stored last-needed first, one twice, and one no file needs.
        let mut source = Stream(vec![
            b.to_vec(),
            b"unneeded".to_vec(),
            a.to_vec(),
            b.to_vec(),
        ]);
        let mut asked = Vec::new();
        let mut files_done = 0;
        let written = write_files(
            &targets,
            &mut source,
            Options {
                on_chunk: None,
                elsewhere: &mut |wanted| {
                    asked.push(wanted.id);
                    (wanted.id == chunk(c).id).then(|| c.to_vec())
                },
                missing: &missing,
                fsync: true,
                after_file: &mut || {
                    files_done += 1;
                    Ok(())
                },
            },
        )
        .unwrap();
        assert_eq!(written.bytes, 23 + 17);
        assert!(written.incomplete.is_empty());
        assert_eq!(files_done, 3);
        // Asked once for the one chunk the source did not carry.
        assert_eq!(asked, vec![chunk(c).id]);
        let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
        assert_eq!(read("0"), b"alpha bravo alpha local");
        assert_eq!(read("1"), b"bravo localalpha ");
        assert_eq!(read("2"), b"");
        let meta = std::fs::metadata(dir.path().join("0")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o444);
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (1_500_000_000, 123_456_789)
        );
        let meta = std::fs::metadata(dir.path().join("1")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert_eq!(meta.mtime(), -1);
    }

    #[test]
    fn bytes_that_do_not_match_their_id_and_chunks_found_nowhere_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wanted = [chunk(b"right"), chunk(b"absent")];
        let targets = [Target {
            path: dir.path().join("0"),
            rel: b"d/f.txt",
            chunks: &wanted,
            mode: 0o644,
            mtime: Timestamp::default(),
        }];
        let run = |source: &mut dyn ChunkSource| {
            write_files(
                &targets,
                source,
                Options {
                    on_chunk: None,
                    elsewhere: &mut |_| None,
                    missing: &missing,
                    fsync: false,
                    after_file: &mut || Ok(()),
                },
            )
            .unwrap_err()
        };
        // Same length as "right", other bytes.
        let id = chunk(b"right").id;
        let mut forged = |asked: &ChunkId| Ok((*asked == id).then(|| b"wrong".to_vec()));
        let err = run(&mut forged);
        assert!(
            matches!(&err, Error::Refused(Refusal::BadContent { chunk, path })
                if *chunk == hex::encode(id) && path == "d/f.txt"),
            "{err:?}"
        );
        let err = run(&mut Stream(vec![b"right".to_vec()]));
        assert!(
            matches!(&err, Error::Refused(Refusal::MissingContent { chunk, .. })
                if *chunk == hex::encode(self::chunk(b"absent").id)),
            "{err:?}"
        );
    }
}

#[cfg(test)]
mod sparse {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Zero chunks and zero blocks inside chunks are left unwritten: the
    /// file holds the right bytes and allocates only its data blocks.
    #[test]
    fn zeros_are_left_as_holes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 + 1).collect();
        let zeros = vec![0u8; chunking::MAX_CHUNK];
        let mut tail = vec![0u8; 65536];
        tail[..100].fill(7);
        let chunks: Vec<ChunkRef> = [&data, &zeros, &tail]
            .iter()
            .map(|bytes| ChunkRef {
                id: Sha256::digest(bytes).into(),
                len: bytes.len() as u32,
            })
            .collect();
        let targets = [Target {
            path: dir.path().join("0"),
            rel: b"disk.img",
            chunks: &chunks,
            mode: 0o644,
            mtime: Timestamp::default(),
        }];
        let mut asked = Vec::new();
        let mut source = |id: &ChunkId| {
            asked.push(*id);
            Ok([&data, &zeros, &tail]
                .into_iter()
                .find(|bytes| Sha256::digest(bytes).as_slice() == id)
                .cloned())
        };
        write_files(
            &targets,
            &mut source,
            Options {
                elsewhere: &mut |_| None,
                missing: &|_, _| None,
                fsync: false,
                after_file: &mut || Ok(()),
                on_chunk: None,
            },
        )
        .unwrap();
        // The zero chunk is not even asked for.
        assert_eq!(asked, vec![chunks[0].id, chunks[2].id]);
        let written = std::fs::read(dir.path().join("0")).unwrap();
        assert_eq!(written, [data.clone(), zeros, tail].concat());
        // Blocks of 4 KiB: two for the data, one for the tail's 100 bytes.
        let allocated = std::fs::metadata(dir.path().join("0")).unwrap().blocks() * 512;
        assert!(allocated <= 3 * 4096, "{allocated} bytes allocated");
    }
}

#[cfg(test)]
mod left_out {
    use super::*;

    /// With `missing` answering `None`, the files needing a chunk found
    /// nowhere are left out and removed; the others are written.
    #[test]
    fn files_lacking_a_chunk_can_be_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let have = ChunkRef {
            id: Sha256::digest(b"have").into(),
            len: 4,
        };
        let lost = ChunkRef {
            id: Sha256::digest(b"lost").into(),
            len: 4,
        };
        let (whole, partial) = ([have], [have, lost]);
        let targets = [
            Target {
                path: dir.path().join("0"),
                rel: b"whole",
                chunks: &whole,
                mode: 0o644,
                mtime: Timestamp::default(),
            },
            Target {
                path: dir.path().join("1"),
                rel: b"partial",
                chunks: &partial,
                mode: 0o644,
                mtime: Timestamp::default(),
            },
        ];
        let id = have.id;
        let mut source = |asked: &ChunkId| Ok((*asked == id).then(|| b"have".to_vec()));
        let written = write_files(
            &targets,
            &mut source,
            Options {
                on_chunk: None,
                elsewhere: &mut |_| None,
                missing: &|_, _| None,
                fsync: false,
                after_file: &mut || Ok(()),
            },
        )
        .unwrap();
        assert_eq!((written.bytes, written.incomplete), (4, vec![1]));
        assert_eq!(std::fs::read(dir.path().join("0")).unwrap(), b"have");
        assert!(!dir.path().join("1").exists());
    }
}
