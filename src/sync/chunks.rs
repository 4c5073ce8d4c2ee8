//! Chunks this replica's current files hold, read back for packets
//! (update and creation exports alike).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use packet_format::PacketWriter;

use crate::error::{Error, Result};
use crate::ops::{ChunkId, PathState};
use crate::replica::Replica;
use crate::store::layout;
use crate::tree::relpath;

/// Threads that compress chunks while an export reads the next ones
/// ([`PacketWriter::with_encoder_threads`]): one per core, at most 4 (the
/// reading thread checks each chunk's hash itself). One core: none.
pub fn encoder_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Where this replica's current files hold each chunk.
pub struct LocalChunks {
    /// Every (path, offset, length) of each chunk indexed (all of them,
    /// or those asked for: [`LocalChunks::index_where`]), in no particular
    /// order:
    /// a chunk shared by several files is read from another one when the
    /// first has changed.
    places: HashMap<ChunkId, Vec<(Vec<u8>, u64, u32)>>,
    /// Files found changed since the scan recorded them (busy files):
    /// never read again in this export.
    changed: HashSet<Vec<u8>>,
    /// The file read last: chunks are mostly asked for in file order, so
    /// it is kept open rather than reopened for every chunk.
    open: Option<(Vec<u8>, std::fs::File)>,
    /// Names in the snapshot folder ([`layout::SNAPSHOTS_DIR`]): a file
    /// with a snapshot was recorded from it, so its content is read there.
    snapshots: HashSet<String>,
}

/// What became of a chunk asked for a packet ([`LocalChunks::add_to`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRead {
    /// Read from a current file, checked and added: its length in bytes.
    Added(u64),
    /// No current file holds it (a version overwritten since).
    NotHeld,
    /// The files that held it no longer hold it as the scan recorded them
    /// (rewritten, shrunk or removed since: a busy file); this one, on
    /// disk, is the first found so. Nothing was added.
    Changed(PathBuf),
}

impl LocalChunks {
    pub fn index(replica: &Replica) -> Result<LocalChunks> {
        LocalChunks::index_where(replica, |_| true)
    }

    /// [`LocalChunks::index`] of only the chunks `wanted` accepts: an
    /// update's packet looks up the chunks of its own operations, and
    /// indexing every chunk of the tree (33,000 places, each with its
    /// path copied, for 20,000 files) cost more than reading what a 1 %
    /// edit ships.
    pub fn index_where(
        replica: &Replica,
        wanted: impl Fn(&ChunkId) -> bool,
    ) -> Result<LocalChunks> {
        let mut places: HashMap<ChunkId, Vec<(Vec<u8>, u64, u32)>> = HashMap::new();
        for (path, entry) in replica.entries()?.iter() {
            if let PathState::File { chunks, .. } = &entry.state {
                let mut offset = 0u64;
                for chunk in chunks {
                    if !wanted(&chunk.id) {
                        offset += u64::from(chunk.len);
                        continue;
                    }
                    places
                        .entry(chunk.id)
                        .or_default()
                        .push((path.clone(), offset, chunk.len));
                    offset += u64::from(chunk.len);
                }
            }
        }
        let snapshots = std::fs::read_dir(replica.state_dir().join(layout::SNAPSHOTS_DIR))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        Ok(LocalChunks {
            places,
            changed: HashSet::new(),
            open: None,
            snapshots,
        })
    }

    /// Reads chunk `id` from a current file of the replica rooted at
    /// `root`, checks it against its id and adds it to `writer`. A
    /// file whose bytes are no longer what the scan recorded is taken for
    /// busy and left alone from then on; the chunk is then read from
    /// another file that holds it, if any.
    pub fn add_to(
        &mut self,
        root: &Path,
        writer: &mut PacketWriter,
        id: &ChunkId,
    ) -> Result<ChunkRead> {
        let Some(places) = self.places.get(id) else {
            return Ok(ChunkRead::NotHeld);
        };
        let mut first_changed = None;
        for (path, offset, len) in places.clone() {
            let disk = self.disk_path(root, &path);
            if self.changed.contains(&path) {
                first_changed.get_or_insert(disk);
                continue;
            }
            // Read straight into the packet's open chunk group and checked
            // there, not left to the writer: its encoder threads would
            // report a mismatch only later, and a busy file must be known
            // now (the chunk is then read elsewhere). Checked here, the
            // bytes are not hashed again.
            let read = writer.add_chunk_with(id, len as usize, |slot| {
                use sha2::{Digest, Sha256};
                self.read_into(&path, &disk, offset, slot)?;
                Ok::<bool, Error>(Sha256::digest(&*slot).as_slice() == id)
            });
            let read = match read {
                Ok(true) => Ok(u64::from(len)),
                Ok(false) => Err(Error::ChangedDuringExport { path: disk.clone() }),
                Err(err) => Err(err),
            };
            match read {
                Ok(len) => return Ok(ChunkRead::Added(len)),
                Err(Error::ChangedDuringExport { path: disk }) => {
                    self.changed.insert(path);
                    first_changed.get_or_insert(disk);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(first_changed.map_or(ChunkRead::NotHeld, ChunkRead::Changed))
    }

    /// The bytes of chunk `id` read from a current file and checked
    /// against the id, as [`LocalChunks::add_to`] finds them, without
    /// adding them anywhere: `Ok(Err(..))` says why there are none.
    pub fn read(
        &mut self,
        root: &Path,
        id: &ChunkId,
    ) -> Result<std::result::Result<Vec<u8>, ChunkRead>> {
        use sha2::{Digest, Sha256};
        let Some(places) = self.places.get(id) else {
            return Ok(Err(ChunkRead::NotHeld));
        };
        let mut first_changed = None;
        for (path, offset, len) in places.clone() {
            let disk = self.disk_path(root, &path);
            if self.changed.contains(&path) {
                first_changed.get_or_insert(disk);
                continue;
            }
            match self.read_at(&path, &disk, offset, len) {
                Ok(bytes) if Sha256::digest(&bytes).as_slice() == id => return Ok(Ok(bytes)),
                Ok(_) | Err(Error::ChangedDuringExport { .. }) => {
                    self.changed.insert(path);
                    first_changed.get_or_insert(disk);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(Err(
            first_changed.map_or(ChunkRead::NotHeld, ChunkRead::Changed)
        ))
    }

    /// Where the recorded content of `path` is read: the point-in-time
    /// clone the scan made of a file that kept changing, if it made one,
    /// else the file itself.
    fn disk_path(&self, root: &Path, path: &[u8]) -> std::path::PathBuf {
        let snapshot = layout::snapshot_name(path);
        if self.snapshots.contains(&snapshot) {
            layout::state_dir(root)
                .join(layout::SNAPSHOTS_DIR)
                .join(snapshot)
        } else {
            relpath::to_disk_path(root, path)
        }
    }

    /// The `len` bytes at `offset` of `path` (`disk` on disk), not yet
    /// checked against their id.
    fn read_at(&mut self, path: &[u8], disk: &Path, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; len as usize];
        self.read_into(path, disk, offset, &mut bytes)?;
        Ok(bytes)
    }

    /// Fills `bytes` from `offset` of `path` (`disk` on disk).
    fn read_into(&mut self, path: &[u8], disk: &Path, offset: u64, bytes: &mut [u8]) -> Result<()> {
        // A file removed or shrunk since the scan is a file changed since
        // the scan, as one whose bytes no longer match.
        let changed = |err: std::io::Error| match err.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof => {
                Error::ChangedDuringExport {
                    path: disk.to_path_buf(),
                }
            }
            _ => Error::io(disk, err),
        };
        if self.open.as_ref().is_none_or(|(open, _)| open != path) {
            let file = std::fs::File::open(disk).map_err(changed)?;
            self.open = Some((path.to_vec(), file));
        }
        let file = &mut self.open.as_mut().expect("opened above").1;
        // Positioned reads: one system call a chunk, not a seek and a read.
        std::os::unix::fs::FileExt::read_exact_at(&*file, bytes, offset).map_err(changed)
    }
}
