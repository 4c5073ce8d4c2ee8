//! Chunks this replica's current files hold, read back for packets
//! (update and creation exports alike).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use packet_format::PacketWriter;

use crate::error::{Error, IoContext, Result};
use crate::ops::{ChunkId, PathState};
use crate::replica::Replica;
use crate::tree::relpath;

/// Where this replica's current files hold each chunk.
pub struct LocalChunks {
    places: HashMap<ChunkId, (Vec<u8>, u64, u32)>,
    /// The file read last: chunks are mostly asked for in file order, so
    /// it is kept open rather than reopened for every chunk.
    open: Option<(Vec<u8>, std::fs::File)>,
    /// Where the last chunk came from, for messages.
    last_read: Option<std::path::PathBuf>,
}

impl LocalChunks {
    pub fn index(replica: &Replica) -> Result<LocalChunks> {
        let mut places = HashMap::new();
        for (path, entry) in replica.state().load_entries()? {
            if let PathState::File { chunks, .. } = &entry.state {
                let mut offset = 0u64;
                for chunk in chunks {
                    places
                        .entry(chunk.id)
                        .or_insert((path.clone(), offset, chunk.len));
                    offset += u64::from(chunk.len);
                }
            }
        }
        Ok(LocalChunks {
            places,
            open: None,
            last_read: None,
        })
    }

    /// The chunk's bytes, read from a current file and checked against its
    /// id; `None` if no current file holds it.
    pub fn read(&mut self, root: &Path, id: &ChunkId) -> Result<Option<Vec<u8>>> {
        let Some((path, offset, len)) = self.places.get(id) else {
            return Ok(None);
        };
        let disk = relpath::to_disk_path(root, path);
        // A file removed or shrunk since the scan is a file changed since
        // the scan, as one whose bytes no longer match (`add_local_chunk`).
        let changed = |err: std::io::Error, disk: &Path| match err.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof => {
                Error::ChangedDuringExport {
                    path: disk.to_path_buf(),
                }
            }
            _ => Error::io(disk, err),
        };
        if self.open.as_ref().is_none_or(|(open, _)| open != path) {
            let file = std::fs::File::open(&disk).map_err(|err| changed(err, &disk))?;
            self.open = Some((path.clone(), file));
        }
        let file = &mut self.open.as_mut().expect("opened above").1;
        file.seek(SeekFrom::Start(*offset)).at(&disk)?;
        let mut bytes = vec![0u8; *len as usize];
        file.read_exact(&mut bytes)
            .map_err(|err| changed(err, &disk))?;
        // Not hashed here: the packet writer checks every chunk against its
        // id, and `add_chunk` below turns a mismatch into this message.
        self.last_read = Some(disk);
        Ok(Some(bytes))
    }
}

/// Adds a chunk read by `local` to `writer`; a chunk whose bytes no longer
/// match its id means the file changed after the scan recorded it.
pub fn add_local_chunk(
    writer: &mut PacketWriter,
    local: &LocalChunks,
    id: &ChunkId,
    bytes: &[u8],
) -> Result<()> {
    writer.add_chunk(id, bytes).map_err(|err| match err.kind {
        packet_format::ErrorKind::ChunkIdMismatch { .. } => Error::ChangedDuringExport {
            path: local.last_read.clone().unwrap_or_default(),
        },
        _ => Error::Packet(err),
    })
}
