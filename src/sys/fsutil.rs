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

/// fsyncs made at once by [`in_parallel`]'s callers.
pub const FSYNC_THREADS: usize = 8;

/// Calls `f` on every item, on up to `threads` threads at once, and
/// returns the results in the items' order. For fsyncs: a filesystem's
/// journal takes concurrent fsyncs into one commit (ext4, xfs), where one
/// after the other each waits for a commit of its own. (A `syncfs` gives
/// the same guarantee in one call but waits for every other process's
/// writes on the filesystem too: 2.5 s under a build, where 50 fsyncs
/// took 0.1 s.)
pub fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if items.len() <= 1 || threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(items.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return done;
                        };
                        done.push((index, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a worker does not panic"))
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Flushes every file of the filesystem holding `path` to disk (syncfs).
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = std::fs::File::open(path).at(path)?;
    rustix::fs::syncfs(&dir).map_err(|e| crate::Error::io(path, e.into()))
}

/// Whether the filesystem holding `path` is mounted read-only (false when
/// that cannot be told).
pub fn is_read_only_fs(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .map(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
        .unwrap_or(false)
}

/// Bytes an unprivileged process may still write on the filesystem
/// holding `path` (`f_bavail * f_frsize`).
pub fn free_space(path: &Path) -> Result<u64> {
    let stat = rustix::fs::statvfs(path).map_err(|e| crate::Error::io(path, e.into()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The mount point of the filesystem holding `path`: its highest ancestor
/// on the same device (`path` itself if that cannot be told).
pub fn mount_point(path: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    let Ok(device) = std::fs::metadata(path).map(|m| m.dev()) else {
        return path.to_path_buf();
    };
    let mut top = path;
    for dir in path.ancestors().skip(1) {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.dev() == device => top = dir,
            _ => break,
        }
    }
    top.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_parallel_keeps_the_order() {
        let items: Vec<u32> = (0..100).collect();
        let doubled = in_parallel(&items, 8, |n| n * 2);
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        assert!(in_parallel(&[] as &[u32], 8, |n| *n).is_empty());
    }

    #[test]
    fn mount_point_is_an_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let top = mount_point(dir.path());
        assert!(dir.path().starts_with(&top));
        assert!(free_space(dir.path()).is_ok());
    }
}
