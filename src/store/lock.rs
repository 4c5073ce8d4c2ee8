//! One process at a time may change a replica.
//!
//! The lock is an advisory `flock` on `.syncreplica/lock`, which the kernel
//! releases when the holder dies, so a crash never wedges the replica. The
//! file also holds the holder's pid and command, for two messages: the
//! holder's pid when the lock is busy, and a note when a lock left behind
//! by a dead process is taken over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::store::layout::LOCK_FILE;

/// Held while a command changes the replica; released on drop.
#[derive(Debug)]
pub struct ReplicaLock {
    file: File,
    path: PathBuf,
    /// Pid of a dead process whose lock was taken over, for the caller to report.
    pub took_over_from: Option<u32>,
}

impl ReplicaLock {
    pub fn acquire(root: &Path, state_dir: &Path, command: &str) -> Result<ReplicaLock> {
        let path = state_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let (pid, holder) = read_holder(&mut file);
                return Err(Error::Locked {
                    root: root.to_path_buf(),
                    pid: pid.unwrap_or(0),
                    command: holder,
                });
            }
            Err(TryLockError::Error(err)) => return Err(Error::io(&path, err)),
        }
        // We hold the lock. A pid still in the file belongs to a process
        // that died holding it (a clean exit empties the file).
        let (previous, _) = read_holder(&mut file);
        let took_over_from = previous.filter(|&pid| pid != std::process::id());
        let record = format!("{}\n{}\n", std::process::id(), command);
        file.set_len(0).at(&path)?;
        file.seek(SeekFrom::Start(0)).at(&path)?;
        file.write_all(record.as_bytes()).at(&path)?;
        file.sync_all().at(&path)?;
        Ok(ReplicaLock {
            file,
            path,
            took_over_from,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ReplicaLock {
    fn drop(&mut self) {
        // Empty the record first so the next holder does not report a
        // takeover; the kernel drops the flock when the file closes.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> (Option<u32>, Option<String>) {
    let mut text = String::new();
    if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_string(&mut text).is_err() {
        return (None, None);
    }
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse().ok());
    let command = lines.next().map(str::to_string).filter(|c| !c.is_empty());
    (pid, command)
}

/// Whether a process with this pid exists (used in messages only: the
/// flock, not the pid, decides who holds the lock).
pub fn process_is_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0: only checks that the process exists (EPERM: it does, as
    // another user's).
    matches!(
        rustix::process::test_kill_process(pid),
        Ok(()) | Err(rustix::io::Errno::PERM)
    )
}

/// The state folders under construction (`.syncreplica.init-PID`) in
/// `root` whose process is gone: what a `mkreplica -init` or `-import`
/// killed before it renamed its state folder into place leaves. A folder
/// whose process still runs is not listed (it may be at work).
pub fn abandoned_init_dirs(root: &Path) -> Vec<(PathBuf, u32)> {
    let prefix = crate::store::layout::STATE_DIR_INIT_PREFIX;
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, u32)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let pid: u32 = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            let abandoned = pid != std::process::id() && !process_is_alive(pid);
            abandoned.then(|| (entry.path(), pid))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = ReplicaLock::acquire(dir.path(), dir.path(), "test one").unwrap();
        let err = ReplicaLock::acquire(dir.path(), dir.path(), "test two").unwrap_err();
        match err {
            Error::Locked { pid, command, .. } => {
                assert_eq!(pid, std::process::id());
                assert_eq!(command.as_deref(), Some("test one"));
            }
            other => panic!("expected Locked, got {other}"),
        }
        drop(first);
        let again = ReplicaLock::acquire(dir.path(), dir.path(), "test three").unwrap();
        assert_eq!(again.took_over_from, None);
    }

    #[test]
    fn stale_record_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LOCK_FILE),
            "999999999\nsyncreplica -record\n",
        )
        .unwrap();
        let lock = ReplicaLock::acquire(dir.path(), dir.path(), "test").unwrap();
        assert_eq!(lock.took_over_from, Some(999_999_999));
        assert!(!process_is_alive(999_999_999));
        assert!(process_is_alive(std::process::id()));
    }
}
