//! Change capture: compare the tree with the recorded state.
//!
//! The scan walks the tree (never following symlinks), skips excluded
//! paths and the state folder, and compares each path with what the state
//! database recorded. It does not write anything; [`crate::replica`] records
//! the outcome as operations, or `syncreplica -status` prints it.
//!
//! Fast path: a file whose size, mtime, ctime and inode match the recorded
//! stat is not read, unless it is "racily clean": changed so close to the
//! scan that recorded it that a later change within the filesystem's
//! timestamp granularity could look identical. Those are re-hashed, as git
//! does. A file that changes while it is read (stat before and after
//! differ) is retried, then reported, and never recorded half-written.

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::chunking;
use crate::error::{Error, Result};
use crate::excludes::Excludes;
use crate::ops::PathState;
use crate::relpath;
use crate::state::{RecordedEntry, StatKey};

/// Files changed less than this long before the scan that recorded them are
/// re-read at the next scan. Two seconds covers coarse filesystems (FAT
/// keeps 2 s, ext3 and many network filesystems 1 s).
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// How often a file that changes while being read is read again.
pub const READ_ATTEMPTS: usize = 3;

/// One path whose state differs from the recorded one.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalChange {
    pub path: Vec<u8>,
    /// The recorded state; `None` when the path was never recorded or is a
    /// tombstone.
    pub old: Option<PathState>,
    pub new: PathState,
    /// Stat of the file as read, for the fast path of the next scan.
    pub stat: Option<StatKey>,
}

/// How a change is shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    ModeChanged,
    TimeChanged,
    TypeChanged,
    Deleted,
}

impl ChangeKind {
    pub fn label(self) -> &'static str {
        match self {
            ChangeKind::Added => "new",
            ChangeKind::Modified => "modified",
            ChangeKind::ModeChanged => "mode changed",
            ChangeKind::TimeChanged => "touched",
            ChangeKind::TypeChanged => "type changed",
            ChangeKind::Deleted => "deleted",
        }
    }
}

pub fn type_name(state: &PathState) -> &'static str {
    match state {
        PathState::File { .. } => "file",
        PathState::Directory { .. } => "directory",
        PathState::Symlink { .. } => "symlink",
        PathState::Deleted => "nothing",
    }
}

impl LocalChange {
    pub fn kind(&self) -> ChangeKind {
        use PathState::*;
        match (&self.old, &self.new) {
            (None, _) => ChangeKind::Added,
            (Some(_), Deleted) => ChangeKind::Deleted,
            (
                Some(File {
                    chunks: a,
                    mode: ma,
                    ..
                }),
                File {
                    chunks: b,
                    mode: mb,
                    ..
                },
            ) => {
                if a != b {
                    ChangeKind::Modified
                } else if ma != mb {
                    ChangeKind::ModeChanged
                } else {
                    ChangeKind::TimeChanged
                }
            }
            (Some(Directory { .. }), Directory { .. }) => ChangeKind::ModeChanged,
            (Some(Symlink { .. }), Symlink { .. }) => ChangeKind::Modified,
            (Some(_), _) => ChangeKind::TypeChanged,
        }
    }

    /// e.g. "new file: docs/a.txt" or "mode changed: run.sh (644 -> 755)".
    pub fn describe(&self) -> String {
        let path = relpath::display(&self.path);
        let kind = self.kind();
        match (kind, &self.old, &self.new) {
            (ChangeKind::Added, _, PathState::Symlink { target }) => {
                format!("new symlink:   {path} -> {}", relpath::display(target))
            }
            (ChangeKind::Added, _, new) => {
                format!("{:<14} {path}", format!("new {}:", type_name(new)))
            }
            (ChangeKind::TypeChanged, Some(old), new) => format!(
                "type changed:  {path} ({} -> {})",
                type_name(old),
                type_name(new)
            ),
            (ChangeKind::ModeChanged, Some(old), new) => format!(
                "mode changed:  {path} ({:o} -> {:o})",
                mode_of(old),
                mode_of(new)
            ),
            (kind, _, _) => format!("{:<14} {path}", format!("{}:", kind.label())),
        }
    }
}

fn mode_of(state: &PathState) -> u32 {
    match state {
        PathState::File { mode, .. } | PathState::Directory { mode } => *mode,
        _ => 0,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanWarning {
    pub path: Vec<u8>,
    pub message: String,
}

impl std::fmt::Display for ScanWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", relpath::display(&self.path), self.message)
    }
}

#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Wall-clock time the scan started (ns since the Unix epoch).
    pub scanned_ns: i64,
    /// Deletions first, deepest paths first; then the rest in path order,
    /// so parents exist before their children.
    pub changes: Vec<LocalChange>,
    /// Files whose content was confirmed unchanged but whose stat moved
    /// (re-hashed racy files, touched-but-same files): only the fast-path
    /// columns need updating.
    pub refreshed: Vec<(Vec<u8>, StatKey)>,
    /// Recorded paths that are excluded now: forgotten locally, never
    /// reported to siblings as deleted.
    pub newly_excluded: Vec<Vec<u8>>,
    pub warnings: Vec<ScanWarning>,
    pub files_seen: u64,
    pub files_read: u64,
    pub bytes_read: u64,
}

/// Test hooks, to make races deterministic.
#[derive(Default)]
pub struct ScanHooks<'a> {
    /// Called after a file's content was read and before its stat is
    /// checked again.
    pub after_read: Option<Box<dyn FnMut(&Path) + 'a>>,
}

pub fn now_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as i64
}

pub fn stat_key(meta: &Metadata) -> StatKey {
    StatKey {
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
        mode: meta.mode() & 0o7777,
    }
}

/// Whether a file must be read, or its recorded content can be trusted.
pub fn needs_read(recorded: &RecordedEntry, current: &StatKey) -> bool {
    let (Some(stat), Some(scanned_ns)) = (recorded.stat, recorded.scanned_ns) else {
        return true;
    };
    if !matches!(recorded.state, PathState::File { .. }) || stat != *current {
        return true;
    }
    // Racily clean: the file changed so shortly before its stat was taken
    // that another change in the same timestamp tick would be invisible.
    stat.mtime_ns.max(stat.ctime_ns) >= scanned_ns - RACY_WINDOW_NS
}

pub fn scan(
    root: &Path,
    excludes: &Excludes,
    recorded: &HashMap<Vec<u8>, RecordedEntry>,
    hooks: &mut ScanHooks,
) -> Result<ScanOutcome> {
    let mut outcome = ScanOutcome {
        scanned_ns: now_ns(),
        ..ScanOutcome::default()
    };
    let mut seen: HashSet<Vec<u8>> = HashSet::with_capacity(recorded.len());
    // Directories we could not list: what they hold is unknown, not deleted.
    let mut unreadable: Vec<Vec<u8>> = Vec::new();
    let mut updates: Vec<LocalChange> = Vec::new();

    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().cmp(b.file_name()))
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0
                || !excludes.excludes_disk_path(entry.path(), entry.file_type().is_dir())
        });
    for item in walker {
        let entry = match item {
            Ok(entry) => entry,
            Err(err) => {
                let Some(path) = err.path().map(Path::to_path_buf) else {
                    return Err(Error::io(root, std::io::Error::other(err.to_string())));
                };
                if path == root {
                    return Err(Error::io(
                        root,
                        err.into_io_error()
                            .unwrap_or_else(|| std::io::Error::other("cannot read")),
                    ));
                }
                let rel = relpath::relative_bytes(root, &path).unwrap_or_default();
                outcome.warnings.push(ScanWarning {
                    path: rel.clone(),
                    message: format!("cannot read, left as recorded: {err}"),
                });
                unreadable.push(rel);
                continue;
            }
        };
        if entry.depth() == 0 {
            continue;
        }
        let Some(rel) = relpath::relative_bytes(root, entry.path()) else {
            continue;
        };
        if entry.file_name().as_bytes() == relpath::STATE_DIR.as_bytes() {
            // A nested replica's state folder: never replicated.
            outcome.warnings.push(ScanWarning {
                path: rel,
                message: "a nested replica's state folder, skipped".into(),
            });
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(err) => {
                // Vanished between listing and stat: treat as not seen.
                if err.io_error().map(|e| e.kind()) == Some(std::io::ErrorKind::NotFound) {
                    continue;
                }
                outcome.warnings.push(ScanWarning {
                    path: rel.clone(),
                    message: format!("cannot stat, left as recorded: {err}"),
                });
                seen.insert(rel);
                continue;
            }
        };
        let file_type = meta.file_type();
        let old = recorded.get(&rel);
        let old_state = old.map(|e| &e.state).filter(|s| **s != PathState::Deleted);
        let new_state;
        let mut new_stat = None;
        if file_type.is_dir() {
            new_state = PathState::Directory {
                mode: meta.mode() & 0o7777,
            };
        } else if file_type.is_symlink() {
            match std::fs::read_link(entry.path()) {
                Ok(target) => {
                    new_state = PathState::Symlink {
                        target: target.as_os_str().as_bytes().to_vec(),
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    outcome.warnings.push(ScanWarning {
                        path: rel.clone(),
                        message: format!("cannot read link, left as recorded: {err}"),
                    });
                    seen.insert(rel);
                    continue;
                }
            }
        } else if file_type.is_file() {
            outcome.files_seen += 1;
            let current = stat_key(&meta);
            if old.is_some_and(|old| !needs_read(old, &current)) {
                seen.insert(rel);
                continue;
            }
            match read_stable(entry.path(), &mut outcome, hooks) {
                Ok(ReadResult::Stable { state, stat }) => {
                    new_state = state;
                    new_stat = Some(stat);
                }
                Ok(ReadResult::Vanished) => continue,
                Ok(ReadResult::KeptChanging) => {
                    outcome.warnings.push(ScanWarning {
                        path: rel.clone(),
                        message: format!(
                            "changed while being read ({READ_ATTEMPTS} attempts); not recorded this time"
                        ),
                    });
                    seen.insert(rel);
                    continue;
                }
                Err(err) => {
                    outcome.warnings.push(ScanWarning {
                        path: rel.clone(),
                        message: format!("cannot read, left as recorded: {err}"),
                    });
                    seen.insert(rel);
                    continue;
                }
            }
        } else {
            let what = if file_type.is_fifo() {
                "fifo"
            } else if file_type.is_socket() {
                "socket"
            } else if file_type.is_block_device() || file_type.is_char_device() {
                "device"
            } else {
                "special file"
            };
            outcome.warnings.push(ScanWarning {
                path: rel,
                message: format!("is a {what}; skipped"),
            });
            continue;
        }

        if old_state == Some(&new_state) {
            if let Some(stat) = new_stat {
                outcome.refreshed.push((rel.clone(), stat));
            }
        } else {
            updates.push(LocalChange {
                path: rel.clone(),
                old: old_state.cloned(),
                new: new_state,
                stat: new_stat,
            });
        }
        seen.insert(rel);
    }

    let mut deletions = Vec::new();
    for (path, entry) in recorded {
        if entry.state == PathState::Deleted || seen.contains(path) {
            continue;
        }
        if unreadable.iter().any(|dir| relpath::is_within(path, dir)) {
            continue;
        }
        let is_dir = matches!(entry.state, PathState::Directory { .. });
        if excludes.excludes_relative(path, is_dir) {
            outcome.newly_excluded.push(path.clone());
            continue;
        }
        deletions.push(LocalChange {
            path: path.clone(),
            old: Some(entry.state.clone()),
            new: PathState::Deleted,
            stat: None,
        });
    }
    deletions.sort_by(|a, b| b.path.cmp(&a.path));
    updates.sort_by(|a, b| a.path.cmp(&b.path));
    outcome.newly_excluded.sort();
    outcome.changes = deletions;
    outcome.changes.extend(updates);
    Ok(outcome)
}

enum ReadResult {
    Stable { state: PathState, stat: StatKey },
    Vanished,
    KeptChanging,
}

/// Reads and chunks a file, and makes sure it did not change meanwhile:
/// the stat before and after reading, and the path's stat after, must agree.
fn read_stable(
    path: &Path,
    outcome: &mut ScanOutcome,
    hooks: &mut ScanHooks,
) -> std::io::Result<ReadResult> {
    for _ in 0..READ_ATTEMPTS {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ReadResult::Vanished)
            }
            Err(err) => return Err(err),
        };
        // Taken from the open file, so a file replaced between listing and
        // opening is judged by what was actually read.
        let before = stat_key(&file.metadata()?);
        let mut bytes = 0u64;
        let chunks = chunking::chunk_stream(&file, |chunk, _| {
            bytes += u64::from(chunk.len);
            Ok(())
        })?;
        outcome.files_read += 1;
        outcome.bytes_read += bytes;
        if let Some(hook) = hooks.after_read.as_mut() {
            hook(path);
        }
        let after = stat_key(&file.metadata()?);
        let at_path = match std::fs::symlink_metadata(path) {
            Ok(meta) => stat_key(&meta),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ReadResult::Vanished)
            }
            Err(err) => return Err(err),
        };
        if same_content_stat(&before, &after)
            && same_content_stat(&after, &at_path)
            && bytes == after.size
        {
            return Ok(ReadResult::Stable {
                state: PathState::File {
                    mode: after.mode,
                    mtime_ns: after.mtime_ns,
                    size: after.size,
                    chunks,
                },
                stat: after,
            });
        }
    }
    Ok(ReadResult::KeptChanging)
}

fn same_content_stat(a: &StatKey, b: &StatKey) -> bool {
    a.size == b.size && a.mtime_ns == b.mtime_ns && a.ctime_ns == b.ctime_ns && a.inode == b.inode
}

/// The `syncreplica -status` report.
pub fn render_status(replica_name: &str, root: &Path, outcome: &ScanOutcome) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let count = outcome.changes.len();
    if count == 0 && outcome.newly_excluded.is_empty() {
        let _ = writeln!(
            out,
            "Replica \"{replica_name}\" ({}): no changes to record; the tree matches the recorded state.",
            root.display()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Replica \"{replica_name}\" ({}): {count} change{} not yet recorded:",
        root.display(),
        if count == 1 { "" } else { "s" }
    );
    for change in &outcome.changes {
        let _ = writeln!(out, "  {}", change.describe());
    }
    for path in &outcome.newly_excluded {
        let _ = writeln!(
            out,
            "  {:<14} {} (will be forgotten locally, not deleted elsewhere)",
            "now excluded:",
            relpath::display(path)
        );
    }
    out
}
