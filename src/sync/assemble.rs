//! Writing files from their chunk lists with every byte written once: each
//! file is made at its full size first, then every chunk is written at each
//! place that needs it as the [`ChunkSource`] streams it (a packet: in the
//! order its parts store them), then the chunks the source does not carry
//! are read from elsewhere (this replica's own files) the same way.
//!
//! Nothing is copied beside the packet on the way (an earlier version
//! spooled its chunks to a temporary file first), so what an import writes
//! before its commit is the content it stages, and no more. The files to
//! write and the places of their chunks are rows of the batch's scratch
//! database ([`Targets`]), not held in memory: an import that changes the
//! content of a million files held some 300 bytes for each. Memory holds
//! one chunk at a time (and the places of that one chunk), and a page of
//! rows.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Refusal, Result};
use crate::ops::{ChunkId, ChunkRef, Timestamp};
use crate::sync::apply::ChunkSource;
use crate::tree::{chunking, relpath};

/// Rows read back from the scratch database at once.
const PAGE: usize = 1024;

/// Rows that wait in memory before they are written to the scratch
/// database.
const HELD: usize = 4096;

/// A file waiting to be written to `batch.targets`.
struct TargetRow {
    n: u64,
    rel: Vec<u8>,
    mode: u32,
    mtime: Timestamp,
    size: u64,
}

/// The files [`write_files`] writes, numbered from 0 in the order added,
/// and where each of their chunks goes: the tables `batch.targets` (number,
/// tree path, mode, mtime, size) and `batch.spots` (chunk id and length,
/// file, offset; in the order the files need them) of a scratch database
/// attached to the connection as `batch`. Memory holds at most [`HELD`]
/// rows of each before they are written.
#[derive(Default)]
pub(crate) struct Targets {
    held: Vec<TargetRow>,
    held_spots: Vec<(ChunkId, u32, u64, u64)>,
    len: u64,
    size: u64,
    /// Bytes of chunks that are not all zeros, each time a file needs one.
    bytes: u64,
    /// Bytes of all-zero chunks, left as holes.
    holes: u64,
    /// The scratch database's file, for errors.
    file: PathBuf,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("len", &self.len)
            .field("size", &self.size)
            .finish()
    }
}

impl Targets {
    /// Empty tables `batch.targets` and `batch.spots` (the scratch
    /// database must be attached to `conn` as `batch`; `file` is its
    /// file, for errors).
    pub fn create(conn: &Connection, file: &Path) -> Result<Targets> {
        let targets = Targets {
            file: file.to_path_buf(),
            ..Targets::default()
        };
        conn.execute_batch(
            "DROP TABLE IF EXISTS batch.targets;
             DROP TABLE IF EXISTS batch.spots;
             CREATE TABLE batch.targets (
                 n INTEGER PRIMARY KEY,
                 rel BLOB NOT NULL,
                 mode INTEGER NOT NULL,
                 secs INTEGER NOT NULL,
                 nanos INTEGER NOT NULL,
                 size INTEGER NOT NULL
             );
             CREATE TABLE batch.spots (
                 id BLOB NOT NULL,
                 len INTEGER NOT NULL,
                 file INTEGER NOT NULL,
                 offset INTEGER NOT NULL
             );",
        )
        .map_err(|e| targets.write_error(e))?;
        Ok(targets)
    }

    fn write_error(&self, e: rusqlite::Error) -> Error {
        crate::sync::apply::batch::write_error(
            &self.file,
            e,
            || "noting the files to stage".to_string(),
            |e| self.error(e),
        )
    }

    fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::CorruptState {
            path: self.file.clone(),
            what: format!("files to stage of the batch: {what}"),
        }
    }

    /// Adds the file for tree path `rel` made of `chunks`, with `mode` and
    /// `mtime`; returns its number (from 0, in the order added).
    pub fn add(
        &mut self,
        conn: &Connection,
        rel: &[u8],
        chunks: &[ChunkRef],
        mode: u32,
        mtime: Timestamp,
    ) -> Result<u64> {
        let n = self.len;
        self.len += 1;
        let mut offset = 0u64;
        for chunk in chunks {
            if chunking::is_zero_chunk(chunk) {
                // Never written: the file is made at its full length, and
                // what was never written is a hole that reads as zeros.
                self.holes += u64::from(chunk.len);
            } else {
                self.bytes += u64::from(chunk.len);
                self.held_spots.push((chunk.id, chunk.len, n, offset));
            }
            offset += u64::from(chunk.len);
        }
        self.size += offset;
        self.held.push(TargetRow {
            n,
            rel: rel.to_vec(),
            mode,
            mtime,
            size: offset,
        });
        if self.held.len() >= HELD || self.held_spots.len() >= HELD {
            self.flush(conn)?;
        }
        Ok(n)
    }

    fn flush(&mut self, conn: &Connection) -> Result<()> {
        let (held, spots) = (
            std::mem::take(&mut self.held),
            std::mem::take(&mut self.held_spots),
        );
        let write = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO batch.targets (n, rel, mode, secs, nanos, size)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for row in &held {
                    insert.execute(params![
                        row.n as i64,
                        row.rel,
                        row.mode,
                        row.mtime.secs,
                        row.mtime.nanos,
                        row.size as i64
                    ])?;
                }
                let mut insert = tx.prepare_cached(
                    "INSERT INTO batch.spots (id, len, file, offset) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (id, len, file, offset) in &spots {
                    insert.execute(params![id.as_slice(), len, *file as i64, *offset as i64])?;
                }
            }
            tx.commit()
        };
        write().map_err(|e| self.write_error(e))
    }

    /// Writes what is held and indexes the places by chunk: call once,
    /// after the last [`Targets::add`].
    pub fn finish(&mut self, conn: &Connection) -> Result<()> {
        self.flush(conn)?;
        conn.execute_batch("CREATE INDEX batch.spots_by_chunk ON spots (id, len)")
            .map_err(|e| self.write_error(e))
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes written to the files: every chunk that is not all zeros, each
    /// time a file needs it (all-zero chunks are holes).
    pub fn bytes_to_write(&self) -> u64 {
        self.bytes
    }

    /// Bytes of the distinct chunks the files need (not all zeros): what
    /// is fetched or read once each.
    pub fn distinct_bytes(&self, conn: &Connection) -> Result<u64> {
        conn.query_row(
            "SELECT COALESCE(SUM(len), 0) FROM (SELECT DISTINCT id, len FROM batch.spots)",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map(|bytes| bytes as u64)
        .map_err(|e| self.error(e))
    }

    /// The tree path of file `n`.
    fn rel(&self, conn: &Connection, n: u64) -> Result<Vec<u8>> {
        conn.prepare_cached("SELECT rel FROM batch.targets WHERE n = ?1")
            .and_then(|mut s| s.query_row([n as i64], |row| row.get(0)))
            .map_err(|e| self.error(e))
    }

    /// The places of chunk (`id`, `len`) not yet written: (file, offset).
    fn spots(&self, conn: &Connection, id: &[u8], len: u32) -> Result<Vec<Spot>> {
        conn.prepare_cached(
            "SELECT file, offset FROM batch.spots WHERE id = ?1 AND len = ?2 ORDER BY rowid",
        )
        .and_then(|mut s| {
            s.query_map(params![id, len], |row| {
                Ok(Spot {
                    file: row.get::<_, i64>(0)? as u64,
                    offset: row.get::<_, i64>(1)? as u64,
                })
            })?
            .collect()
        })
        .map_err(|e| self.error(e))
    }

    /// Notes chunk (`id`, `len`) as written at all its places.
    fn written(&self, conn: &Connection, id: &[u8], len: u32) -> Result<()> {
        conn.prepare_cached("DELETE FROM batch.spots WHERE id = ?1 AND len = ?2")
            .and_then(|mut s| s.execute(params![id, len]))
            .map(drop)
            .map_err(|e| self.write_error(e))
    }

    /// Calls `f` with each file's number, mode and mtime, in order, a page
    /// at a time.
    fn for_each(
        &self,
        conn: &Connection,
        mut f: impl FnMut(u64, u32, Timestamp) -> Result<()>,
    ) -> Result<()> {
        let mut next = 0i64;
        loop {
            let page: Vec<(i64, u32, i64, u32)> = conn
                .prepare_cached(&format!(
                    "SELECT n, mode, secs, nanos FROM batch.targets WHERE n >= ?1 ORDER BY n \
                     LIMIT {PAGE}"
                ))
                .and_then(|mut s| {
                    s.query_map([next], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })?
                    .collect()
                })
                .map_err(|e| self.error(e))?;
            for &(n, mode, secs, nanos) in &page {
                let mtime = Timestamp::new(secs, nanos)
                    .ok_or_else(|| self.error(format!("a time of {secs} s {nanos} ns")))?;
                f(n as u64, mode, mtime)?;
            }
            match page.last() {
                Some((n, ..)) if page.len() == PAGE => next = n + 1,
                _ => return Ok(()),
            }
        }
    }

    /// Calls `f` with each file's number and size, in order, a page at a
    /// time.
    fn for_each_size(
        &self,
        conn: &Connection,
        mut f: impl FnMut(u64, u64) -> Result<()>,
    ) -> Result<()> {
        let mut next = 0i64;
        loop {
            let page: Vec<(i64, i64)> = conn
                .prepare_cached(&format!(
                    "SELECT n, size FROM batch.targets WHERE n >= ?1 ORDER BY n LIMIT {PAGE}"
                ))
                .and_then(|mut s| {
                    s.query_map([next], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect()
                })
                .map_err(|e| self.error(e))?;
            for &(n, size) in &page {
                f(n as u64, size as u64)?;
            }
            match page.last() {
                Some((n, _)) if page.len() == PAGE => next = n + 1,
                _ => return Ok(()),
            }
        }
    }

    /// The chunks still to write (id, length, place of the first file
    /// needing it), in the order the files first need them, a page after
    /// the place `after`.
    fn unwritten_after(&self, conn: &Connection, after: i64) -> Result<Vec<(ChunkRef, i64)>> {
        conn.prepare_cached(&format!(
            "SELECT id, len, rowid FROM batch.spots WHERE rowid > ?1 ORDER BY rowid LIMIT {PAGE}"
        ))
        .and_then(|mut s| {
            s.query_map([after], |row| {
                let id: Vec<u8> = row.get(0)?;
                Ok((id, row.get::<_, u32>(1)?, row.get::<_, i64>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| self.error(e))?
        .into_iter()
        .map(|(id, len, rowid)| {
            let id = ChunkId::try_from(id.as_slice())
                .map_err(|_| self.error(format!("a chunk id of {} bytes", id.len())))?;
            Ok((ChunkRef { id, len }, rowid))
        })
        .collect()
    }

    /// The chunks in the order the files first need them, each once.
    fn wanted(&self, conn: &Connection) -> Result<Vec<ChunkId>> {
        let mut wanted = Vec::new();
        let mut after = 0i64;
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = self.unwritten_after(conn, after)?;
            for (chunk, _) in &page {
                if seen.insert((chunk.id, chunk.len)) {
                    wanted.push(chunk.id);
                }
            }
            match page.last() {
                Some((_, rowid)) if page.len() == PAGE => after = *rowid,
                _ => return Ok(wanted),
            }
        }
    }

    /// Where file `n` is written in `dir`.
    pub fn path(dir: &Path, n: u64) -> PathBuf {
        dir.join(n.to_string())
    }
}

/// Sees each chunk written: its id and bytes.
pub(crate) type OnChunk<'a> = dyn FnMut(&ChunkId, &[u8]) -> Result<()> + 'a;

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
    /// Where the source may look for the bases of its recipes from a
    /// thread of its own ([`ChunkSource::deliver_with`]), and what to ask
    /// on this thread for a base it does not find there (in place of
    /// `elsewhere`, which would look where it looked already). `None`:
    /// `elsewhere` finds the bases.
    pub nearby: Option<(
        &'a crate::sync::apply::NearbyChunks<'a>,
        &'a mut packet_format::BaseChunks<'a>,
    )>,
    /// The error for a chunk found nowhere, needed by the file `rel`.
    pub missing: &'a dyn Fn(&ChunkRef, &[u8]) -> Error,
    /// Whether and when the files are fsynced.
    pub fsync: Fsync,
    /// Called once per file, in order, when it is complete.
    pub after_file: &'a mut dyn FnMut() -> Result<()>,
}

/// How [`write_files`] makes the files it writes durable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fsync {
    /// Not at all: the caller has its own way.
    Never,
    /// Each file, several at once ([`fsync_all`]), before it returns.
    Each,
    /// Each file, but the last page of them (up to [`PAGE`] files) is
    /// left to the caller ([`Assembled::unsynced`]), to fsync while it
    /// does other work that must only finish after them.
    EachButLastPage,
}

/// A place a chunk goes: the file's number, and the offset.
struct Spot {
    file: u64,
    offset: u64,
}

/// What [`write_files`] wrote.
#[derive(Debug)]
pub(crate) struct Assembled {
    /// Bytes of content: the sum of the files' sizes.
    pub bytes: u64,
    /// Of `bytes`: written from what the source delivered (for a packet:
    /// chunks it carries whole, or rebuilds from changes to chunks held
    /// here).
    pub from_source: u64,
    /// Of `bytes`: copied from chunks held here (`Options::elsewhere`).
    pub copied: u64,
    /// Of `bytes`: all-zero chunks, left as holes (not written).
    pub holes: u64,
    /// With [`Fsync::EachButLastPage`]: the files written but not yet
    /// fsynced ([`fsync_all`] them before relying on them).
    pub unsynced: Vec<PathBuf>,
}

/// Writes every file of `targets` (finished, [`Targets::finish`]) in `dir`
/// (file `n` as `dir/n`; anything there is replaced) from its chunk list:
/// content, then mode and mtime. `conn` is the connection the scratch
/// database of `targets` is attached to; the places of the chunks written
/// are removed from it. Returns what it wrote ([`Assembled`]). Every chunk
/// is checked against its id and length before it is written (the id by
/// the source when it says it checks them, [`ChunkSource::checks_ids`]).
/// All-zero chunks are not written at all, nor zero 4 KiB blocks within a
/// chunk: the files are sparse where their content is zeros. Errors: a
/// chunk whose bytes do not match its id ([`Refusal::BadContent`]), one
/// found nowhere (`options.missing`), the source's own (a damaged packet),
/// the scratch database's, and I/O. On error the files are left as they
/// are, for the caller to remove.
pub(crate) fn write_files(
    conn: &Connection,
    targets: &Targets,
    dir: &Path,
    source: &mut dyn ChunkSource,
    options: Options,
) -> Result<Assembled> {
    targets.for_each_size(conn, |n, size| {
        let path = Targets::path(dir, n);
        let file = open(&path, true).at(&path)?;
        // Sparse until written: it takes room only as chunks land.
        file.set_len(size).at(&path)
    })?;
    // One transaction for the places noted as written (the scratch
    // database has no journal to keep: a failed batch throws it away).
    let tx = conn.unchecked_transaction().map_err(|e| targets.error(e))?;
    let mut writers = Writers {
        dir,
        open: Vec::new(),
    };
    // Only a source that looks chunks up by id reads the list: a packet
    // streams what it carries.
    let wanted = match source.reads_wanted() {
        true => targets.wanted(conn)?,
        false => Vec::new(),
    };
    let mut on_chunk = options.on_chunk;
    let (mut from_source, mut copied) = (0u64, 0u64);
    // A packet's reader has hashed every chunk already (a chunk rebuilt
    // from a recipe included): a second SHA-256 of every byte would only
    // cost time.
    let check = !source.checks_ids();
    let (nearby, bases): (_, &mut packet_format::BaseChunks) = match options.nearby {
        Some((nearby, beyond)) => (Some(nearby), beyond),
        None => (None, &mut *options.elsewhere),
    };
    let delivered = source.deliver_with(&wanted, nearby, bases, &mut |id, bytes| {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return Ok(());
        };
        // Not needed, or written already.
        let places = targets.spots(conn, id, len)?;
        let Some(first) = places.first() else {
            return Ok(());
        };
        if check && Sha256::digest(bytes).as_slice() != id {
            return Err(Error::Refused(Refusal::BadContent {
                chunk: hex::encode(id),
                path: relpath::display(&targets.rel(conn, first.file)?),
            }));
        }
        if let Some(on_chunk) = on_chunk.as_mut() {
            on_chunk(id, bytes)?;
        }
        from_source += u64::from(len) * places.len() as u64;
        writers.put(&places, bytes)?;
        targets.written(conn, id, len)
    });
    if let Err(Error::Packet(err)) = &delivered {
        // A chunk the packet gives as changes to one this replica should
        // hold, which it does not (or no longer) hold: as a chunk missing.
        if let packet_format::ErrorKind::MissingBase { chunk, base } = &err.kind {
            let needed_by = hex::decode(chunk)
                .ok()
                .and_then(|id| {
                    conn.prepare_cached(
                        "SELECT file FROM batch.spots WHERE id = ?1 ORDER BY rowid LIMIT 1",
                    )
                    .and_then(|mut s| s.query_row([id], |row| row.get::<_, i64>(0)))
                    .ok()
                })
                .map(|n| targets.rel(conn, n as u64))
                .transpose()?;
            if let Some(rel) = needed_by {
                return Err((options.missing)(
                    &ChunkRef {
                        id: hex::decode(base)
                            .ok()
                            .and_then(|b| b.try_into().ok())
                            .unwrap_or_default(),
                        len: 0,
                    },
                    &rel,
                ));
            }
        }
    }
    delivered?;
    // What the source did not carry, in the order the files first need
    // it, a page of places at a time.
    let mut after = 0i64;
    loop {
        let page = targets.unwritten_after(conn, after)?;
        for (chunk, _) in &page {
            let places = targets.spots(conn, &chunk.id, chunk.len)?;
            let Some(first) = places.first() else {
                // Written for an earlier place of this page.
                continue;
            };
            let Some(bytes) = (options.elsewhere)(chunk) else {
                return Err((options.missing)(chunk, &targets.rel(conn, first.file)?));
            };
            if let Some(on_chunk) = on_chunk.as_mut() {
                on_chunk(&chunk.id, &bytes)?;
            }
            copied += u64::from(chunk.len) * places.len() as u64;
            writers.put(&places, &bytes)?;
            targets.written(conn, &chunk.id, chunk.len)?;
        }
        match page.last() {
            Some((_, rowid)) if page.len() == PAGE => after = *rowid,
            _ => break,
        }
    }
    drop(writers);
    tx.commit().map_err(|e| targets.write_error(e))?;

    // Mode and mtime last: no write follows them, and a read-only mode
    // does not stop one. Fsynced a page at a time.
    let mut done: Vec<PathBuf> = Vec::new();
    targets.for_each(conn, |n, mode, mtime| {
        let path = Targets::path(dir, n);
        let file = open(&path, false).at(&path)?;
        // Setuid/setgid bits go on after the owner, if at all
        // (`crate::tree::meta::apply`): never on a staged file.
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o1777))
            .at(&path)?;
        crate::tree::confined::set_file_mtime(&file, mtime).at(&path)?;
        (options.after_file)()?;
        if options.fsync != Fsync::Never {
            done.push(path);
            if done.len() == PAGE {
                fsync_all(&std::mem::take(&mut done))?;
            }
        }
        Ok(())
    })?;
    if options.fsync == Fsync::Each {
        fsync_all(&std::mem::take(&mut done))?;
    }
    Ok(Assembled {
        bytes: targets.size,
        from_source,
        copied,
        holes: targets.holes,
        unsynced: done,
    })
}

/// Fsyncs every file in `paths`, several at once
/// ([`crate::sys::fsutil::in_parallel`]); the first error once all are
/// done.
pub(crate) fn fsync_all(paths: &[PathBuf]) -> Result<()> {
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

/// The files open for writing, the most recently used last: chunks come
/// mostly in file order, and a few handles spare reopening without holding
/// one per file.
struct Writers<'a> {
    dir: &'a Path,
    open: Vec<(u64, File)>,
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
            let file = self.file(spot.file)?;
            write_sparse(file, bytes, spot.offset).at(Targets::path(self.dir, spot.file))?;
        }
        Ok(())
    }

    fn file(&mut self, n: u64) -> Result<&File> {
        match self.open.iter().position(|(i, _)| *i == n) {
            Some(at) => {
                let entry = self.open.remove(at);
                self.open.push(entry);
            }
            None => {
                if self.open.len() == OPEN_WRITERS {
                    self.open.remove(0);
                }
                let path = Targets::path(self.dir, n);
                let file = open_for_write(&path).at(&path)?;
                self.open.push((n, file));
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

    /// A connection with a scratch database (in `dir`) attached as
    /// `batch`, holding `files` (tree path, chunks, mode, mtime) as
    /// targets numbered from 0.
    pub(super) fn targets_in(
        dir: &Path,
        files: &[(&[u8], &[ChunkRef], u32, Timestamp)],
    ) -> (Connection, Targets) {
        let conn = Connection::open_in_memory().unwrap();
        let scratch = dir.join("scratch.db");
        let _ = std::fs::remove_file(&scratch);
        conn.execute("ATTACH DATABASE ?1 AS batch", [scratch.to_str().unwrap()])
            .unwrap();
        let mut targets = Targets::create(&conn, &scratch).unwrap();
        for (rel, chunks, mode, mtime) in files {
            targets.add(&conn, rel, chunks, *mode, *mtime).unwrap();
        }
        targets.finish(&conn).unwrap();
        (conn, targets)
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

    pub(super) fn missing(chunk: &ChunkRef, rel: &[u8]) -> Error {
        Error::Refused(Refusal::MissingContent {
            chunk: hex::encode(chunk.id),
            path: relpath::display(rel),
            rel: rel.to_vec(),
        })
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
        let (conn, targets) = targets_in(
            dir.path(),
            &[
                (
                    b"first",
                    &first,
                    0o444,
                    Timestamp::new(1_500_000_000, 123_456_789).unwrap(),
                ),
                (b"second", &second, 0o755, Timestamp::new(-1, 0).unwrap()),
                (b"empty", &empty, 0o600, Timestamp::default()),
            ],
        );
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
            &conn,
            &targets,
            dir.path(),
            &mut source,
            Options {
                on_chunk: None,
                nearby: None,
                elsewhere: &mut |wanted| {
                    asked.push(wanted.id);
                    (wanted.id == chunk(c).id).then(|| c.to_vec())
                },
                missing: &missing,
                fsync: Fsync::Each,
                after_file: &mut || {
                    files_done += 1;
                    Ok(())
                },
            },
        )
        .unwrap();
        assert_eq!(written.bytes, 23 + 17);
        assert_eq!(
            (written.from_source, written.copied, written.holes),
            (6 * 5, 5 * 2, 0)
        );
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
        let run = |source: &mut dyn ChunkSource| {
            let (conn, targets) = targets_in(
                dir.path(),
                &[(b"d/f.txt", &wanted, 0o644, Timestamp::default())],
            );
            write_files(
                &conn,
                &targets,
                dir.path(),
                source,
                Options {
                    on_chunk: None,
                    nearby: None,
                    elsewhere: &mut |_| None,
                    missing: &missing,
                    fsync: Fsync::Never,
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
        let (conn, targets) = super::tests::targets_in(
            dir.path(),
            &[(b"disk.img", &chunks, 0o644, Timestamp::default())],
        );
        let mut asked = Vec::new();
        let mut source = |id: &ChunkId| {
            asked.push(*id);
            Ok([&data, &zeros, &tail]
                .into_iter()
                .find(|bytes| Sha256::digest(bytes).as_slice() == id)
                .cloned())
        };
        write_files(
            &conn,
            &targets,
            dir.path(),
            &mut source,
            Options {
                nearby: None,
                elsewhere: &mut |_| None,
                missing: &super::tests::missing,
                fsync: Fsync::Never,
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
