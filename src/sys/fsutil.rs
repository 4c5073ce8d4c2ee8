//! Small filesystem helpers that make writes crash-safe.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsynced, then renamed over `path`, then the directory fsynced.
/// A crash leaves either the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(dir)
        .at(dir)?;
    temp.write_all(bytes).at(temp.path())?;
    temp.as_file().sync_all().at(temp.path())?;
    temp.persist(path).map_err(|err| err.error).at(path)?;
    sync_dir(dir)
}

/// Creates `path` with `bytes`, failing if it exists; for secrets, `mode`
/// applies from the first byte written (no window with wider permissions).
pub fn create_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .at(path)?;
    file.write_all(bytes).at(path)?;
    file.sync_all().at(path)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Flushes every file of the filesystem holding `path` to disk (syncfs).
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = std::fs::File::open(path).at(path)?;
    rustix::fs::syncfs(&dir).map_err(|e| crate::Error::io(path, e.into()))
}
