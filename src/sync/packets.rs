//! Finding packet files, grouping parts into logical packets, and the chunk
//! spool that imports read content from.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use packet_format::{examine_packet, Examination, LogicalPacket};

use crate::error::{Error, IoContext, Result};
use crate::ops::{ChunkId, Id};

/// Packet files named on a command line: files as given, directories
/// listed (not recursively; only `sync_*.zip`/`repl_*.zip` names, so the
/// shipping orders beside packets in a bay or on a stick are skipped),
/// sorted by name.
pub fn collect_packet_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for arg in args {
        let meta = std::fs::metadata(arg).at(arg)?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(arg)
                .at(arg)?
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.path())
                .filter(|path| path.is_file() && is_packet_name(path))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(arg.clone());
        }
    }
    Ok(files)
}

fn is_packet_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(packet_format::is_packet_file_name)
}

/// Examined packets grouped by logical packet id, with the damaged ones
/// apart (they have no trustworthy id).
pub struct Grouped {
    pub logical: BTreeMap<Id, Vec<Examination>>,
    pub damaged: Vec<Examination>,
}

pub fn examine_all(files: &[PathBuf], trusted_keys: &[[u8; 32]]) -> Grouped {
    let mut grouped = Grouped {
        logical: BTreeMap::new(),
        damaged: Vec::new(),
    };
    for file in files {
        let exam = examine_packet(file, trusted_keys);
        match (&exam.error, &exam.header) {
            (None, Some(header)) => {
                let id = header.packet_id;
                grouped.logical.entry(id).or_default().push(exam);
            }
            _ => grouped.damaged.push(exam),
        }
    }
    grouped
}

/// Chunks of a logical packet, spooled to a temporary file so that memory
/// stays bounded whatever the packet size, and read back by id.
pub struct ChunkSpool {
    file: std::fs::File,
    path: PathBuf,
    index: HashMap<ChunkId, (u64, u32)>,
}

impl ChunkSpool {
    /// Spools every chunk of `packet` into a temporary file in `dir`. The
    /// packet reader has already checked each chunk against its id.
    pub fn fill(packet: &LogicalPacket, dir: &Path) -> Result<ChunkSpool> {
        let temp = tempfile::tempfile_in(dir).at(dir)?;
        let mut writer = std::io::BufWriter::new(temp);
        let mut index = HashMap::new();
        let mut offset = 0u64;
        for chunk in packet.chunks() {
            let (id, bytes) = chunk?;
            if index.contains_key(&id) {
                continue;
            }
            writer.write_all(&bytes).at(dir)?;
            index.insert(id, (offset, bytes.len() as u32));
            offset += bytes.len() as u64;
        }
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(dir, e.into_error()))?;
        Ok(ChunkSpool {
            file,
            path: dir.to_path_buf(),
            index,
        })
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether the packet carries chunk `id`.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.index.contains_key(id)
    }

    pub fn get(&mut self, id: &ChunkId) -> Result<Option<Vec<u8>>> {
        let Some(&(offset, len)) = self.index.get(id) else {
            return Ok(None);
        };
        let mut bytes = vec![0u8; len as usize];
        self.file.seek(SeekFrom::Start(offset)).at(&self.path)?;
        self.file.read_exact(&mut bytes).at(&self.path)?;
        Ok(Some(bytes))
    }
}
