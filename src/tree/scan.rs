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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::{PathState, Timestamp};
use crate::store::state::{RecordedEntry, StatKey};
use crate::tree::chunking;
use crate::tree::excludes::Excludes;
use crate::tree::folding::Folding;
use crate::tree::meta::{self, Names, Preserve};
use crate::tree::relpath;

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
    /// Owner, group, ACLs, extended attributes or hard links only.
    MetadataChanged,
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
            ChangeKind::MetadataChanged => "metadata",
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
        PathState::Special { kind, .. } => special_name(*kind),
        PathState::Deleted => "nothing",
        PathState::Unknown { .. } => "unknown kind",
    }
}

/// Gives `new` (what the scan saw) what this version cannot observe on
/// disk from `old` (the recorded state of the same kind): metadata
/// extensions it does not know and directory and symlink times, which it
/// does not keep. Without this, a state that arrived with them would look
/// locally changed at the next scan and go back without them.
///
/// Keys this replica preserves are read from disk; the recorded values of
/// the others (keys of later versions, items this replica does not keep)
/// are carried over.
fn carry_unobserved(
    new: &mut PathState,
    old: Option<&PathState>,
    preserve: &Preserve,
    names: &mut Names,
) {
    // A directory or symlink recorded without a time (from an origin that
    // does not keep them: format 2.0-2.2) stays without one until it is
    // made anew, so that an upgrade or an old sibling's packet is not a
    // change of every directory.
    match (&mut *new, old) {
        (PathState::Directory { mtime, .. }, Some(PathState::Directory { mtime: None, .. }))
        | (PathState::Symlink { mtime, .. }, Some(PathState::Symlink { mtime: None, .. })) => {
            *mtime = None;
        }
        _ => {}
    }
    let kept = preserve.keys();
    let same_kind =
        old.is_some_and(|old| std::mem::discriminant(old) == std::mem::discriminant(&*new));
    let (Some(ext), Some(old_ext), true) = (
        state_ext_mut(new),
        old.and_then(PathState::extensions),
        same_kind,
    ) else {
        return;
    };
    for entry in old_ext.iter() {
        if !kept.contains(&entry.key) {
            ext.insert(entry.key, entry.value.clone());
        }
    }
    // Owner and group share one key: a replica that keeps one of them
    // carries the recorded value of the other (review 14b item 3: one
    // that dropped `owner` from `preserve` recorded the owner's absence
    // as a change at every scan, and its sibling put it back at every one).
    // Likewise a recorded owner without a user (or group) came from an
    // origin that keeps only the other half: the user (group) this file
    // got here is not a local change.
    if let (Some(mut seen), Some(recorded)) = (meta::owner(ext), meta::owner(old_ext)) {
        if !preserve.owner || recorded.user.is_none() {
            seen.user = recorded.user;
        }
        if !preserve.group || recorded.group.is_none() {
            seen.group = recorded.group;
        }
        ext.insert(meta::keys::OWNER, meta::encode(&seen));
    }
    meta::keep_recorded_principals(ext, old_ext, preserve, names);
    // A state without an owner came from an origin that does not keep
    // owners (SPEC.md §6.4): the owner it got here is not a local change.
    if old_ext.get(meta::keys::OWNER).is_none() {
        let mut without = crate::ops::Extensions::default();
        for entry in ext.iter().filter(|e| e.key != meta::keys::OWNER) {
            without.insert(entry.key, entry.value.clone());
        }
        *ext = without;
    }
    meta::carry_unappliable(ext, old_ext);
}

/// The items of metadata (owner and group, extended attributes, ACLs)
/// whose value on disk at `path` (`meta` its `lstat`) is not the one
/// recorded in `old`, read and compared as this replica's scan would
/// (what it does not keep or cannot apply counts as recorded; hard-link
/// sets are not looked at). `new`: what was read of the path otherwise,
/// of the same kind as `old`. Each item as "NAME" or "owner (now U:G;
/// recorded U:G)". For `syncreplica -verify` (review 14c item 9).
pub fn metadata_changed(
    path: &Path,
    meta: &Metadata,
    new: &PathState,
    old: &PathState,
    preserve: &Preserve,
    names: &mut Names,
) -> Vec<String> {
    let mut new = new.clone();
    if std::mem::discriminant(&new) != std::mem::discriminant(old) {
        return Vec::new();
    }
    let Some(old_ext) = old.extensions() else {
        return Vec::new();
    };
    let leader = meta::hard_link_leader(old_ext);
    if let Some(ext) = state_ext_mut(&mut new) {
        meta::read(
            path,
            meta.uid(),
            meta.gid(),
            meta.file_type().is_symlink(),
            meta.is_dir(),
            leader.as_deref(),
            preserve,
            names,
            ext,
        );
    }
    carry_unobserved(&mut new, Some(old), preserve, names);
    let Some(ext) = new.extensions() else {
        return Vec::new();
    };
    let ids = |owner: &Option<meta::Owner>| {
        let owner = owner.clone().unwrap_or_default();
        let show = |who: Option<meta::Principal>| {
            who.map_or("-".to_string(), |who| match who.name {
                Some(name) => format!("{name}({})", who.id),
                None => who.id.to_string(),
            })
        };
        format!("{}:{}", show(owner.user), show(owner.group))
    };
    let mut changed = Vec::new();
    for (key, name) in [
        (meta::keys::OWNER, "owner"),
        (meta::keys::XATTRS, "extended attributes"),
        (meta::keys::ACL_ACCESS, "ACL"),
        (meta::keys::ACL_DEFAULT, "default ACL"),
    ] {
        if ext.get(key) == old_ext.get(key) {
            continue;
        }
        if key == meta::keys::OWNER {
            // Named for what changed: a chgrp is a change of group (review
            // 14e item 7).
            let (now, then) = (
                meta::owner(ext).unwrap_or_default(),
                meta::owner(old_ext).unwrap_or_default(),
            );
            let word = match (now.user == then.user, now.group == then.group) {
                (true, false) => "group",
                (false, true) => "owner",
                _ => "owner and group",
            };
            changed.push(format!(
                "{word} (now {}; recorded {})",
                ids(&Some(now)),
                ids(&Some(then))
            ));
        } else {
            changed.push(name.to_string());
        }
    }
    changed
}

fn state_ext_mut(state: &mut PathState) -> Option<&mut crate::ops::Extensions> {
    match state {
        PathState::File { ext, .. }
        | PathState::Directory { ext, .. }
        | PathState::Symlink { ext, .. }
        | PathState::Special { ext, .. } => Some(ext),
        _ => None,
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
                } else if mtime_of(self.old.as_ref()) != mtime_of(Some(&self.new)) {
                    ChangeKind::TimeChanged
                } else {
                    ChangeKind::MetadataChanged
                }
            }
            (Some(Directory { mode: ma, .. }), Directory { mode: mb, .. }) => {
                if ma != mb {
                    ChangeKind::ModeChanged
                } else if mtime_of(self.old.as_ref()) != mtime_of(Some(&self.new)) {
                    ChangeKind::TimeChanged
                } else {
                    ChangeKind::MetadataChanged
                }
            }
            (
                Some(Special {
                    kind: ka,
                    mode: ma,
                    major: xa,
                    minor: ya,
                    ..
                }),
                Special {
                    kind: kb,
                    mode: mb,
                    major: xb,
                    minor: yb,
                    ..
                },
            ) => {
                // A block device replaced by a FIFO is another type of
                // file, as a file replaced by a directory is (review 14c
                // item 11); another device number is a modification.
                if ka != kb {
                    ChangeKind::TypeChanged
                } else if (xa, ya) != (xb, yb) {
                    ChangeKind::Modified
                } else if ma != mb {
                    ChangeKind::ModeChanged
                } else if mtime_of(self.old.as_ref()) != mtime_of(Some(&self.new)) {
                    ChangeKind::TimeChanged
                } else {
                    ChangeKind::MetadataChanged
                }
            }
            (Some(Symlink { target: a, .. }), Symlink { target: b, .. }) => {
                if a != b {
                    ChangeKind::Modified
                } else if mtime_of(self.old.as_ref()) != mtime_of(Some(&self.new)) {
                    ChangeKind::TimeChanged
                } else {
                    ChangeKind::MetadataChanged
                }
            }
            (Some(_), _) => ChangeKind::TypeChanged,
        }
    }

    /// e.g. "new file: docs/a.txt" or "mode changed: run.sh (644 -> 755)".
    pub fn describe(&self) -> String {
        let path = relpath::display(&self.path);
        let kind = self.kind();
        match (kind, &self.old, &self.new) {
            (ChangeKind::Added, _, PathState::Symlink { target, .. }) => {
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

/// "fifo", "socket" or "device".
pub fn special_name(kind: u32) -> &'static str {
    use crate::ops::special_kind;
    match kind {
        special_kind::FIFO => "fifo",
        special_kind::SOCKET => "socket",
        special_kind::CHAR_DEVICE | special_kind::BLOCK_DEVICE => "device",
        _ => "special file",
    }
}

fn mtime_of(state: Option<&PathState>) -> Option<Timestamp> {
    match state? {
        PathState::File { mtime, .. } | PathState::Special { mtime, .. } => Some(*mtime),
        PathState::Directory { mtime, .. } | PathState::Symlink { mtime, .. } => *mtime,
        _ => None,
    }
}

fn mode_of(state: &PathState) -> u32 {
    match state {
        PathState::File { mode, .. }
        | PathState::Directory { mode, .. }
        | PathState::Special { mode, .. } => *mode,
        _ => 0,
    }
}

/// A path the scan left as recorded, or recorded otherwise than it read
/// it (from a snapshot), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanWarning {
    pub path: Vec<u8>,
    pub kind: WarningKind,
}

/// Why a path was left as recorded. Callers match on this, never on text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarningKind {
    #[error("cannot read link, left as recorded: {0}")]
    UnreadableLink(String),
    /// Kept changing while being read, and no clone could be made (not
    /// asked, or the filesystem has no reflinks).
    #[error("changed while being read ({READ_ATTEMPTS} attempts); not recorded this time")]
    Busy,
    /// Kept changing while being read; a point-in-time clone (reflink)
    /// was recorded, and is what exports send.
    #[error(
        "changed while being read ({READ_ATTEMPTS} attempts); recorded as a point-in-time \
         clone (reflink) of it, which exports send"
    )]
    Snapshot,
    #[error("cannot read, left as recorded: {0}")]
    Unreadable(String),
    /// A file that could not be read and has no recorded version.
    #[error("cannot read, not recorded: {0}")]
    UnreadableNew(String),
    #[error("cannot read directory, left as recorded: {0}")]
    UnreadableDirectory(String),
    #[error("a nested replica's state folder, skipped")]
    NestedReplica,
    /// A name an import or mkreplica uses for its temporaries
    /// (`store::layout`).
    #[error("a name syncreplica keeps for its temporaries, never replicated; skipped")]
    TempName,
    #[error("cannot stat, left as recorded: {0}")]
    Unstattable(String),
    /// A recorded path missing from a filesystem that folds names, while
    /// another recorded path with the same name there is on disk: the
    /// filesystem can hold only one of them, so the other's absence is
    /// not a deletion.
    #[error("not on disk: {0} holds its name on this filesystem (which takes both for one name); left as recorded")]
    FoldedAway(String),
    /// A socket, FIFO or device: not replicated.
    #[error("is a {0}; skipped")]
    Special(&'static str),
    /// A shared exclude file that `.syncreplicaignore` includes and that
    /// cannot be used ([`crate::tree::excludes`]): its patterns are not in
    /// force.
    #[error(
        "included by {} line {line} but skipped: {why}; its patterns are not in force until it is fixed",
        crate::tree::excludes::IGNORE_FILE
    )]
    SkippedInclude { line: usize, why: String },
    /// A config.toml `exclude` pattern (the warning's path) that names the
    /// replica root's own absolute path: taken relative to the root.
    #[error(
        "exclude pattern names this replica's root; taken as \"{0}\" (patterns are relative \
         to the replica root: write \"{0}\" in config.toml)"
    )]
    RootPrefixedExclude(String),
    /// A config.toml `exclude` pattern (the warning's path) that excludes
    /// nothing in the tree, and left none of the family's paths out when
    /// this replica was made (those are in its state:
    /// `State::family_excluded`).
    #[error(
        "exclude pattern matches nothing in this tree (patterns are relative to the replica \
         root: at a replica rooted at /etc, /etc/hosts is \"/hosts\")"
    )]
    UnmatchedExclude,
}

impl std::fmt::Display for ScanWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", relpath::display(&self.path), self.kind)
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
    /// The packed pieces ([`chunking::pack_pieces`]) of every chunk read
    /// (but zero chunks), for the state database: what a later export
    /// needs to send the chunk that replaces one of them as a recipe.
    /// Empty for a scan given a [`PieceStore`], which took them.
    pub pieces: Vec<(crate::ops::ChunkId, Vec<u8>)>,
}

/// Where a scan whose outcome is recorded keeps the pieces of the chunks
/// it reads ([`chunking::pieces`]), instead of [`ScanOutcome::pieces`]: a
/// chunk whose pieces are recorded already is not cut again, and the
/// others are recorded in pages as the scan goes. A chunk's pieces are a
/// function of its bytes, and so of its id: rows are only ever added and
/// are true whatever becomes of the scan, so they need not wait for its
/// record. Held whole, a 2 GiB image's pieces were 28 MB of an export's
/// memory, and cutting them again for its unchanged chunks doubled the
/// hashing of an edited file.
pub trait PieceStore {
    /// Whether the pieces of `chunk` are recorded already.
    fn has(&mut self, chunk: &crate::ops::ChunkId) -> bool;
    /// Takes `page` to record, by [`PIECE_PAGE`] or more at a time (one
    /// commit, one sync, each). An error is kept by the store for its
    /// owner to report after the scan (a failure to write the state
    /// database is not a fault of the file being read).
    fn put(&mut self, page: Vec<(crate::ops::ChunkId, Vec<u8>)>);
    /// A lookup like [`PieceStore::has`] for a second thread that reads
    /// files beside the scan's own, answering from what is recorded: it
    /// may miss what this store holds unrecorded, and a chunk cut twice
    /// is recorded once. `None`: that thread cuts the pieces of every
    /// chunk it reads, and this store is given those it does not have.
    fn lookup(&self) -> Option<PieceLookup> {
        None
    }
}

/// [`PieceStore::lookup`]: whether the pieces of a chunk are recorded.
pub type PieceLookup = Box<dyn FnMut(&crate::ops::ChunkId) -> bool + Send>;

/// Packed pieces a scan holds before handing them to its
/// [`PieceStore`], and that a store holds before it records them: about
/// 1,000 chunks' worth.
pub const PIECE_PAGE: usize = 1 << 20;

/// A callback given the on-disk path of a file.
pub type PathHook<'a> = Box<dyn FnMut(&Path) + 'a>;

/// Test hooks, to make races deterministic.
#[derive(Default)]
pub struct ScanHooks<'a> {
    /// Called after a file's content was read and before its stat is
    /// checked again.
    pub after_read: Option<PathHook<'a>>,
}

pub fn stat_key(meta: &Metadata) -> StatKey {
    StatKey {
        size: meta.size(),
        mtime_ns: crate::sys::clock::file_time_ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: crate::sys::clock::file_time_ns(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        mode: meta.mode() & 0o7777,
    }
}

/// A file's modification time, exactly (any year the filesystem holds).
pub fn file_mtime(meta: &Metadata) -> Timestamp {
    Timestamp::from_stat(meta.mtime(), meta.mtime_nsec())
}

/// Whether the metadata of the file recorded as `recorded` was set since
/// (its ctime moved) while its content, time and inode stayed: compared
/// with the recorded stat, or, for a file an import placed and no scan
/// has read yet, with the time the import finished
/// ([`crate::store::state::mark_placed`]).
fn metadata_touched(recorded: &RecordedEntry, current: &StatKey) -> bool {
    match (recorded.stat, recorded.scanned_ns) {
        (Some(stat), _) => {
            stat.ctime_ns != current.ctime_ns
                && stat.size == current.size
                && stat.mtime_ns == current.mtime_ns
                && stat.inode == current.inode
        }
        (None, Some(placed_ns)) => current.ctime_ns > placed_ns,
        (None, None) => false,
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

/// One path found by the walk, before it is compared.
/// What [`walk`] found: the entries, the paths it could not read, and per
/// directory the latest ctime of the excluded names in it.
type Walk = (Vec<Walked>, Vec<Vec<u8>>, HashMap<Vec<u8>, Timestamp>);

struct Walked {
    rel: Vec<u8>,
    kind: WalkedKind,
    stat: StatKey,
    uid: u32,
    gid: u32,
    /// (device, links): hard-link sets are found by (device, inode).
    dev: u64,
    nlink: u64,
    mtime: Timestamp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WalkedKind {
    File,
    Directory,
    Symlink,
    /// A FIFO, socket or device node this replica keeps.
    Special {
        kind: u32,
        major: u32,
        minor: u32,
    },
}

/// Scans the tree under `root`. `load_recorded` fetches the recorded state;
/// it runs on this thread while a second one walks the tree, because both
/// take about as long and neither needs the other until the comparison.
/// `folding` is how the filesystem compares names: where two recorded
/// paths are one name there ([`Folding::key`]) and one of them is on disk,
/// the other's absence is not recorded as a deletion
/// ([`WarningKind::FoldedAway`]).
///
/// `snapshots`: for a scan whose outcome is recorded, the folder where a
/// file that keeps changing while it is read (a running VM's image, a
/// database) is cloned with a reflink (FICLONE: btrfs, xfs, …), its
/// clone chunked and recorded instead ([`WarningKind::Snapshot`]; the
/// exports read its content from the clone). Where the filesystem cannot
/// clone, such a file is left as recorded ([`WarningKind::Busy`]). The
/// folder's other snapshots, from earlier scans, are removed: every file
/// recorded from a snapshot is read again by the next scan (its stat is
/// not recorded), which records the live file or clones it anew. `None`:
/// nothing is written (a `-status` scan).
///
/// The recorded state is only read (`load_recorded` may return a map the
/// caller shares, such as an `Arc` it keeps for the steps after the scan).
#[allow(clippy::too_many_arguments)]
pub fn scan<F, R>(
    root: &Path,
    excludes: &Excludes,
    folding: Folding,
    load_recorded: F,
    hooks: &mut ScanHooks,
    snapshots: Option<&Path>,
    preserve: &Preserve,
    mut pieces: Option<&mut dyn PieceStore>,
) -> Result<ScanOutcome>
where
    F: FnOnce() -> Result<R>,
    R: std::borrow::Borrow<crate::store::state::Entries>,
{
    let mut outcome = ScanOutcome {
        scanned_ns: crate::sys::clock::now_ns(),
        ..ScanOutcome::default()
    };
    for skipped in excludes.skipped_includes() {
        outcome.warnings.push(ScanWarning {
            path: skipped.path.clone(),
            kind: WarningKind::SkippedInclude {
                line: skipped.line,
                why: skipped.why.clone(),
            },
        });
    }
    let walking =
        crate::sys::progress::phase("scanning the tree", crate::sys::progress::Unit::Files, None);
    let (walked, recorded) = if excludes.has_shared() {
        // Shared patterns never exclude recorded paths: the walk needs to
        // know them, so they are loaded first.
        let recorded = load_recorded()?;
        let live: BTreeSet<&[u8]> = recorded
            .borrow()
            .iter()
            .filter(|(_, e)| e.state != PathState::Deleted)
            .map(|(p, _)| p.as_slice())
            .collect();
        let walked = walk(root, excludes, Some(&live), &mut outcome, preserve);
        (walked, Ok(recorded))
    } else {
        // The loader runs on this thread and the walk on the other: the
        // loader makes most of the small allocations (the recorded map's),
        // and the main thread's allocator arena (glibc's, where the
        // commands call this) grows in large steps, where a second
        // thread's grows a page at a time, one mprotect each: about 2,700
        // for 20,000 entries, each taking the address space's lock the
        // walk needs for its page faults.
        std::thread::scope(|scope| {
            let walker = std::thread::Builder::new()
                .name("walk".into())
                .spawn_scoped(scope, || walk(root, excludes, None, &mut outcome, preserve))
                .map_err(|err| Error::io(root, err));
            let recorded = load_recorded();
            let walked = match walker {
                Ok(walker) => walker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(err) => Err(err),
            };
            (walked, recorded)
        })
    };
    drop(walking);
    let (walked, unreadable, excluded_changed) = walked?;
    // One warning per pattern (review 14c item 5): one that named the
    // root's absolute path gets the hint, not also "matches nothing".
    let unmatched = excludes.unmatched_config_patterns();
    for (written, taken) in excludes.root_prefixed() {
        outcome.warnings.push(ScanWarning {
            path: written.as_bytes().to_vec(),
            kind: WarningKind::RootPrefixedExclude(taken.clone()),
        });
    }
    for pattern in unmatched
        .into_iter()
        .filter(|p| !excludes.root_prefixed().iter().any(|(_, taken)| taken == p))
    {
        outcome.warnings.push(ScanWarning {
            path: pattern.into_bytes(),
            kind: WarningKind::UnmatchedExclude,
        });
    }
    let recorded = recorded?;
    let recorded: &crate::store::state::Entries = recorded.borrow();
    // Directories a name of the tree came to or left (only looked for
    // where an excluded name changed): their time moved for that too.
    let names_changed: HashSet<Vec<u8>> = if excluded_changed.is_empty() {
        HashSet::new()
    } else {
        let parent = |path: &[u8]| {
            let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
            path[..cut].to_vec()
        };
        let here: HashSet<&[u8]> = walked.iter().map(|w| w.rel.as_slice()).collect();
        let live = |path: &[u8]| {
            recorded
                .get(path)
                .is_some_and(|e| e.state != PathState::Deleted)
        };
        let came = walked
            .iter()
            .filter(|w| !w.rel.is_empty() && !live(&w.rel))
            .map(|w| parent(&w.rel));
        let left = recorded
            .iter()
            .filter(|(path, e)| {
                e.state != PathState::Deleted && !path.is_empty() && !here.contains(path.as_slice())
            })
            .map(|(path, _)| parent(path));
        came.chain(left)
            .filter(|dir| excluded_changed.contains_key(dir))
            .collect()
    };
    // The recorded paths the walk found, by the address of their key in
    // `recorded` (sorted before the deletions are looked for): the others
    // are gone. Addresses, where a set of the paths hashed each path twice
    // more (a tenth of the comparison of 20,000 clean files).
    let mut seen: Vec<usize> = Vec::with_capacity(recorded.len());
    let key_address = |key: &Vec<u8>| key as *const Vec<u8> as usize;
    // Each walked path's recorded entry, looked up once.
    let looked: Vec<Option<(&Vec<u8>, &RecordedEntry)>> = walked
        .iter()
        .map(|w| recorded.get_key_value(&w.rel))
        .collect();
    // The files the comparison reads, by walked index, with their sizes:
    // new, or not clean by their stat. Decided once here, for this thread
    // and for the second one that shares the reading (`AsideReader`).
    let to_read: Vec<(usize, u64)> = walked
        .iter()
        .zip(&looked)
        .enumerate()
        .filter(|(_, (w, _))| w.kind == WalkedKind::File)
        .filter(|(_, (w, old))| old.is_none_or(|(_, old)| needs_read(old, &w.stat)))
        .map(|(index, (w, _))| (index, w.stat.size))
        .collect();
    let to_hash: u64 = to_read.iter().map(|(_, size)| size).sum();
    let _hashing = crate::sys::progress::phase(
        "hashing new and changed files",
        crate::sys::progress::Unit::Bytes,
        Some(to_hash),
    );
    let mut updates: Vec<LocalChange> = Vec::new();
    let folded = folding
        .folds()
        .then(|| FoldedNames::new(folding, &walked, recorded));

    // Hard-link sets: files with other names in the tree, by (device,
    // inode); each set's leader is its smallest name, so every replica
    // names the same leader.
    let mut leaders: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut set_sizes: HashMap<(u64, u64), usize> = HashMap::new();
    if preserve.hardlinks {
        for found in walked
            .iter()
            .filter(|w| w.kind == WalkedKind::File && w.nlink > 1)
        {
            let key = (found.dev, found.stat.inode);
            *set_sizes.entry(key).or_default() += 1;
            let leader = leaders.entry(key).or_insert_with(|| found.rel.clone());
            if found.rel < *leader {
                *leader = found.rel.clone();
            }
        }
        leaders.retain(|key, _| set_sizes[key] > 1);
        // A set whose recorded first name this replica excludes (so it is
        // not on disk here) keeps that name as its leader while every name
        // of it here records it: the set is the family's, its other names
        // linked to each other (review 14d item 4).
        let mut recorded_leader: HashMap<(u64, u64), Option<Vec<u8>>> = HashMap::new();
        for found in walked
            .iter()
            .filter(|w| w.kind == WalkedKind::File && leaders.contains_key(&(w.dev, w.stat.inode)))
        {
            let theirs = recorded
                .get(&found.rel)
                .and_then(|e| e.state.extensions())
                .and_then(meta::hard_link_leader);
            recorded_leader
                .entry((found.dev, found.stat.inode))
                .and_modify(|known| {
                    if *known != theirs {
                        *known = None;
                    }
                })
                .or_insert(theirs);
        }
        for (key, theirs) in recorded_leader {
            if let Some(theirs) = theirs {
                if excludes.excludes_relative(&theirs, false, false)
                    || crate::tree::excludes::is_local_only(&theirs)
                {
                    leaders.insert(key, theirs);
                }
            }
        }
    }
    let mut names = Names::default();
    // Snapshots this scan made (file names in `snapshots`).
    let mut made_snapshots: std::collections::HashSet<String> = Default::default();
    // The files to read are shared with a second thread where there are
    // enough of them (on a 1 % edit of 20,000 files, reading them was a
    // third of the scan, on one core while the other had nothing to do).
    let mut aside = match hooks.after_read {
        // A test's hook runs where the scan reads: on this thread.
        Some(_) => None,
        None => AsideReader::start(root, &walked, &to_read, pieces.as_deref()),
    };
    let mut reads = vec![false; walked.len()];
    for (index, _) in to_read {
        reads[index] = true;
    }
    let mut looked = looked.into_iter();
    for (index, walked) in walked.into_iter().enumerate() {
        let Walked {
            rel,
            kind,
            stat,
            uid,
            gid,
            dev,
            nlink: _,
            mtime,
        } = walked;
        let old = looked.next().flatten().map(|(recorded_path, old)| {
            seen.push(key_address(recorded_path));
            old
        });
        if kind == WalkedKind::File && !reads[index] {
            // Clean by its stat: most of the tree, so no path is built.
            outcome.files_seen += 1;
            continue;
        }
        let path = relpath::to_disk_path(root, &rel);
        let old_state = old.map(|e| &e.state).filter(|s| **s != PathState::Deleted);
        let mut new_stat = None;
        let new_state = if let WalkedKind::Special { kind, major, minor } = kind {
            PathState::Special {
                kind,
                mode: stat.mode,
                major,
                minor,
                mtime,
                ext: Default::default(),
            }
        } else if kind == WalkedKind::Directory {
            PathState::Directory {
                mode: stat.mode,
                mtime: Some(mtime),
                ext: Default::default(),
            }
        } else if kind == WalkedKind::Symlink {
            match std::fs::read_link(&path) {
                Ok(target) => PathState::Symlink {
                    target: target.as_os_str().as_bytes().to_vec(),
                    mtime: Some(mtime),
                    ext: Default::default(),
                },
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    outcome.warnings.push(ScanWarning {
                        path: rel,
                        kind: WarningKind::UnreadableLink(err.to_string()),
                    });
                    continue;
                }
            }
        } else {
            outcome.files_seen += 1;
            let read = match aside.as_mut().and_then(|aside| aside.take(index)) {
                Some(read) => read.into_scan(&mut outcome, pieces.as_deref_mut()),
                None => read_stable(&path, &mut outcome, hooks, pieces.as_deref_mut()),
            };
            match read {
                Ok(ReadResult::Stable { state, stat }) => {
                    new_stat = Some(stat);
                    state
                }
                Ok(ReadResult::Vanished) => {
                    // Gone after all: not seen (it was pushed last).
                    if old.is_some() {
                        seen.pop();
                    }
                    continue;
                }
                Ok(ReadResult::KeptChanging) => {
                    // A point-in-time clone where the filesystem makes
                    // one; otherwise (or if cloning fails) left as
                    // recorded, with a warning naming it.
                    match snapshots.and_then(|dir| snapshot(&path, dir, &rel, &mut outcome)) {
                        Some(state) => {
                            outcome.warnings.push(ScanWarning {
                                path: rel.clone(),
                                kind: WarningKind::Snapshot,
                            });
                            made_snapshots.insert(crate::store::layout::snapshot_name(&rel));
                            // No stat: the next scan reads the live file again.
                            state
                        }
                        None => {
                            outcome.warnings.push(ScanWarning {
                                path: rel,
                                kind: WarningKind::Busy,
                            });
                            continue;
                        }
                    }
                }
                Err(err) => {
                    // Never recorded: nothing is left as recorded (review
                    // 14e item 9d).
                    let kind = match old_state {
                        Some(_) => WarningKind::Unreadable(err.to_string()),
                        None => WarningKind::UnreadableNew(err.to_string()),
                    };
                    outcome.warnings.push(ScanWarning { path: rel, kind });
                    continue;
                }
            }
        };

        let mut new_state = new_state;
        if let Some(ext) = state_ext_mut(&mut new_state) {
            meta::read(
                &path,
                uid,
                gid,
                kind == WalkedKind::Symlink,
                kind == WalkedKind::Directory,
                leaders.get(&(dev, stat.inode)).map(Vec::as_slice),
                preserve,
                &mut names,
                ext,
            );
        }
        carry_unobserved(&mut new_state, old_state, preserve, &mut names);
        // The first name of a hard-link set left alone (its other names
        // removed) keeps naming itself: its key says only that it leads
        // the set, and dropping it would be a change of that name, which
        // splits it from a name another member added to the set meanwhile
        // (review 14e item 3: `ln h1 h3` at one member and `rm h2` at
        // another left h1 and h3 two files everywhere). A set of one is a
        // file like any other on disk.
        if let (true, PathState::File { ext, .. }, Some(PathState::File { ext: old_ext, .. })) =
            (preserve.hardlinks, &mut new_state, old_state)
        {
            if ext.get(meta::keys::HARD_LINK).is_none()
                && meta::hard_link_leader(old_ext).as_deref() == Some(rel.as_slice())
            {
                ext.insert(meta::keys::HARD_LINK, meta::encode(&rel));
            }
        }
        // A directory whose only change is its time, moved by a name this
        // replica excludes (a daemon's `mv tmp resolv.conf`: the renamed
        // file's ctime is the directory's new time), is not changed: the
        // time is local, like the name (review 14e item 6: every rewrite
        // was a new epoch sent to the family, and a mirror set it back at
        // every command).
        if let (
            PathState::Directory {
                mode,
                mtime: Some(now),
                ext,
            },
            Some(PathState::Directory {
                mode: old_mode,
                mtime: Some(then),
                ext: old_ext,
            }),
        ) = (&mut new_state, old_state)
        {
            let by_excluded = !names_changed.contains(&rel)
                && excluded_changed.get(&rel).is_some_and(|changed| {
                    changed.secs.saturating_add(1) >= now.secs && *changed >= *then
                });
            if now != then && mode == old_mode && ext == old_ext && by_excluded {
                *now = *then;
            }
        }
        // Setuid/setgid bits this replica cannot set (see
        // `meta::set_id_bits_kept`) stay as recorded, unless the file's
        // metadata was set here since (a chmod moves only its ctime).
        let same_content = match (&new_state, old_state) {
            (
                PathState::File { chunks, mtime, .. },
                Some(PathState::File {
                    chunks: old_chunks,
                    mtime: old_mtime,
                    ..
                }),
            ) => chunks == old_chunks && mtime == old_mtime,
            _ => true,
        };
        if let (
            PathState::File { mode, .. } | PathState::Special { mode, .. },
            Some(
                PathState::File {
                    mode: old_mode,
                    ext: old_ext,
                    ..
                }
                | PathState::Special {
                    mode: old_mode,
                    ext: old_ext,
                    ..
                },
            ),
        ) = (&mut new_state, old_state)
        {
            if !(same_content && old.is_some_and(|old| metadata_touched(old, &stat))) {
                meta::carry_set_id_bits(mode, *old_mode, old_ext, preserve);
            }
        }
        // A file whose recorded group this user cannot set keeps the group
        // the import left (carry_unappliable), even where its ctime moved:
        // a `chgrp` to that same group changes nothing on disk, and cannot
        // be told from a `chmod` to the mode it had (which moves the ctime
        // too); taking the group on disk then would give the file this
        // user's group at every member.
        if old_state == Some(&new_state) {
            if let Some(stat) = new_stat {
                outcome.refreshed.push((rel, stat));
            }
        } else {
            updates.push(LocalChange {
                path: rel,
                old: old_state.cloned(),
                new: new_state,
                stat: new_stat,
            });
        }
    }

    if let Some(aside) = aside.take() {
        let assigned = aside.theirs.iter().filter(|&&theirs| theirs).count();
        crate::sys::testhook::count("files-read-aside", assigned as u64);
    }
    let mut deletions = Vec::new();
    seen.sort_unstable();
    for (path, entry) in recorded {
        if entry.state == PathState::Deleted || seen.binary_search(&key_address(path)).is_ok() {
            continue;
        }
        // A special file this replica does not keep (not root: no device
        // nodes) is missing here by choice, not deleted.
        if matches!(entry.state, PathState::Special { kind, .. } if !preserve.keeps_special(kind)) {
            continue;
        }
        if unreadable.iter().any(|dir| relpath::is_within(path, dir)) {
            continue;
        }
        let is_dir = matches!(entry.state, PathState::Directory { .. });
        if excludes.excludes_relative(path, is_dir, true) {
            outcome.newly_excluded.push(path.clone());
            continue;
        }
        if let Some(twin) = folded.as_ref().and_then(|f| f.holder_of(path)) {
            outcome.warnings.push(ScanWarning {
                kind: WarningKind::FoldedAway(relpath::display(twin).to_string()),
                path: path.clone(),
            });
            continue;
        }
        deletions.push(LocalChange {
            path: path.clone(),
            old: Some(entry.state.clone()),
            new: PathState::Deleted,
            stat: None,
        });
    }
    if let Some(dir) = snapshots {
        remove_stale_snapshots(dir, &made_snapshots);
    }
    deletions.sort_by(|a, b| b.path.cmp(&a.path));
    updates.sort_by(|a, b| a.path.cmp(&b.path));
    outcome.newly_excluded.sort();
    outcome.changes = deletions;
    outcome.changes.extend(updates);
    Ok(outcome)
}

/// On a filesystem that folds names: which names the walk found, and how
/// many recorded live paths share each name there.
struct FoldedNames {
    folding: Folding,
    /// Folding key -> a path found on disk with that key.
    on_disk: HashMap<Vec<u8>, Vec<u8>>,
    /// Folding key -> recorded live paths with that key.
    recorded: HashMap<Vec<u8>, usize>,
}

impl FoldedNames {
    fn new(
        folding: Folding,
        walked: &[Walked],
        recorded: &crate::store::state::Entries,
    ) -> FoldedNames {
        let mut on_disk = HashMap::new();
        for found in walked {
            on_disk
                .entry(folding.key(&found.rel).into_owned())
                .or_insert_with(|| found.rel.clone());
        }
        let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
        for (path, entry) in recorded {
            if entry.state != PathState::Deleted {
                *counts.entry(folding.key(path).into_owned()).or_default() += 1;
            }
        }
        FoldedNames {
            folding,
            on_disk,
            recorded: counts,
        }
    }

    /// For a recorded live path the walk did not find: the path on disk
    /// that holds its name, or the name of a folder above it, when the
    /// recorded state has two paths or more under that name (the family
    /// tells them apart, this filesystem cannot). A lone recorded path
    /// under another spelling on disk is a rename (a person changed the
    /// case), recorded as usual.
    fn holder_of(&self, path: &[u8]) -> Option<&[u8]> {
        let mut prefixes = relpath::ancestors(path);
        prefixes.push(path);
        prefixes.into_iter().find_map(|prefix| {
            let key = self.folding.key(prefix);
            if self.recorded.get(key.as_ref()).copied().unwrap_or(0) < 2 {
                return None;
            }
            self.on_disk
                .get(key.as_ref())
                .map(Vec::as_slice)
                .filter(|holder| *holder != prefix)
        })
    }
}

/// Walks the tree, never following symlinks and never entering excluded
/// directories. Returns what it found, parents before children, and the
/// directories it could not read (whose recorded content is then unknown,
/// not deleted); paths that cannot be stat'ed count as unreadable too.
/// `live`: the recorded live paths, given when shared patterns are in
/// force (they never exclude those, nor a directory holding any).
///
/// A hand-written walk rather than `walkdir`: std's `DirEntry::metadata`
/// stats relative to the open directory (`fstatat`), where walkdir stats
/// the full path, and that path lookup was a third of an unchanged scan.
fn walk(
    root: &Path,
    excludes: &Excludes,
    live: Option<&BTreeSet<&[u8]>>,
    outcome: &mut ScanOutcome,
    preserve: &Preserve,
) -> Result<Walk> {
    let mut walked = Vec::new();
    // Per directory, the latest ctime of the excluded names in it: what
    // tells a directory time moved by them (see the scan).
    let mut excluded_changed: HashMap<Vec<u8>, Timestamp> = HashMap::new();
    // The root first, under the empty path (SPEC.md §6.5): its own owner,
    // mode, ACLs, attributes and mtime are replicated like a directory's.
    let top = std::fs::metadata(root).map_err(|err| Error::io(root, err))?;
    walked.push(Walked {
        rel: Vec::new(),
        kind: WalkedKind::Directory,
        stat: stat_key(&top),
        uid: top.uid(),
        gid: top.gid(),
        dev: top.dev(),
        nlink: top.nlink(),
        mtime: file_mtime(&top),
    });
    let mut unreadable: Vec<Vec<u8>> = Vec::new();
    // Directories still to list, as replica-relative paths (root = empty).
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(dir_rel) = pending.pop() {
        let dir = relpath::to_disk_path(root, &dir_rel);
        let listing = std::fs::read_dir(&dir).and_then(|entries| {
            let mut listed = Vec::new();
            for entry in entries {
                let entry = entry?;
                listed.push((entry.file_name(), entry.metadata()));
            }
            Ok(listed)
        });
        let mut listed = match listing {
            Ok(listed) => listed,
            Err(err) if dir_rel.is_empty() => return Err(Error::io(root, err)),
            Err(err) => {
                outcome.warnings.push(ScanWarning {
                    path: dir_rel.clone(),
                    kind: WarningKind::UnreadableDirectory(err.to_string()),
                });
                unreadable.push(dir_rel);
                continue;
            }
        };
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        crate::sys::progress::advance(listed.len() as u64);
        let mut subdirs = Vec::new();
        for (name, meta) in listed {
            let name = name.as_bytes();
            let mut rel = Vec::with_capacity(dir_rel.len() + 1 + name.len());
            if !dir_rel.is_empty() {
                rel.extend_from_slice(&dir_rel);
                rel.push(b'/');
            }
            rel.extend_from_slice(name);
            if name == crate::store::layout::STATE_DIR.as_bytes() {
                if !dir_rel.is_empty() {
                    // A nested replica's state folder: never replicated.
                    outcome.warnings.push(ScanWarning {
                        path: rel,
                        kind: WarningKind::NestedReplica,
                    });
                }
                continue;
            }
            if crate::store::layout::is_tree_temp_name(name)
                || crate::store::layout::is_state_dir_under_construction(name)
            {
                // A packet can never name it (`relpath::lexical_problem`):
                // left by an interrupted import or mkreplica, or a user's
                // file that the next import keeps as a conflict copy.
                outcome.warnings.push(ScanWarning {
                    path: rel,
                    kind: WarningKind::TempName,
                });
                continue;
            }
            let meta = match meta {
                Ok(meta) => meta,
                // Vanished between listing and stat: simply not there.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    outcome.warnings.push(ScanWarning {
                        path: rel.clone(),
                        kind: WarningKind::Unstattable(err.to_string()),
                    });
                    unreadable.push(rel);
                    continue;
                }
            };
            let file_type = meta.file_type();
            let recorded = live.is_some_and(|live| holds_recorded(live, &rel));
            if excludes.excludes_relative_direct(&rel, file_type.is_dir(), recorded) {
                let ctime = Timestamp::from_stat(meta.ctime(), meta.ctime_nsec());
                let latest = excluded_changed.entry(dir_rel.clone()).or_insert(ctime);
                *latest = (*latest).max(ctime);
                continue;
            }
            let special = meta::special_kind_of(file_type);
            if let Some(kind) = special.filter(|kind| preserve.keeps_special(*kind)) {
                walked.push(Walked {
                    rel,
                    kind: WalkedKind::Special {
                        kind,
                        major: rustix::fs::major(meta.rdev()),
                        minor: rustix::fs::minor(meta.rdev()),
                    },
                    stat: stat_key(&meta),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    dev: meta.dev(),
                    nlink: meta.nlink(),
                    mtime: file_mtime(&meta),
                });
                continue;
            }
            if !(file_type.is_dir() || file_type.is_symlink() || file_type.is_file()) {
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
                    kind: WarningKind::Special(what),
                });
                continue;
            }
            let kind = if file_type.is_dir() {
                subdirs.push(walked.len());
                WalkedKind::Directory
            } else if file_type.is_symlink() {
                WalkedKind::Symlink
            } else {
                WalkedKind::File
            };
            walked.push(Walked {
                rel,
                kind,
                stat: stat_key(&meta),
                uid: meta.uid(),
                gid: meta.gid(),
                dev: meta.dev(),
                nlink: meta.nlink(),
                mtime: file_mtime(&meta),
            });
        }
        // Depth first, in name order: push in reverse so the first pops first.
        for &index in subdirs.iter().rev() {
            pending.push(walked[index].rel.clone());
        }
    }
    Ok((walked, unreadable, excluded_changed))
}

/// Whether `rel` or a path below it is in `live`.
fn holds_recorded(live: &BTreeSet<&[u8]>, rel: &[u8]) -> bool {
    if live.contains(rel) {
        return true;
    }
    // Paths below `rel` sort between "rel/" and "rel0" ('0' follows '/').
    let mut below = rel.to_vec();
    below.push(b'/');
    let mut end = rel.to_vec();
    end.push(b'0');
    live.range::<[u8], _>((
        std::ops::Bound::Included(below.as_slice()),
        std::ops::Bound::Excluded(end.as_slice()),
    ))
    .next()
    .is_some()
}

/// Files a second thread reads while the scan compares the others
/// ([`AsideReader::start`]); the scan takes their outcomes in walk order
/// ([`AsideReader::take`]). Dropped, the thread stops after the file it
/// is reading.
struct AsideReader {
    /// By walked index: whether the second thread reads that file.
    theirs: Vec<bool>,
    /// `None` once dropped (the thread's sends then fail).
    outcomes: Option<std::sync::mpsc::Receiver<AsideRead>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One file's [`read_stable`] on the second thread, with what it counted.
struct AsideRead {
    result: std::io::Result<ReadResult>,
    files_read: u64,
    bytes_read: u64,
    /// Pieces to record: without a [`PieceLookup`], of every chunk read.
    pieces: Vec<(crate::ops::ChunkId, Vec<u8>)>,
    /// Whether `pieces` was filtered by a [`PieceLookup`].
    looked_up: bool,
}

/// Below these, a second thread is not worth starting: files to read,
/// and their bytes.
const ASIDE_FROM_FILES: usize = 8;
const ASIDE_FROM_BYTES: u64 = 256 << 10;

impl AsideReader {
    /// Starts a thread reading about half of `to_read` (walked index,
    /// size), balanced by bytes; `None` where it is not worth it (few
    /// files, one core). Files from [`chunking::PIPELINE_FROM`] on stay
    /// with the scan (they get a thread of their own), so a dropped
    /// reader is never held up by a large file.
    fn start(
        root: &Path,
        walked: &[Walked],
        to_read: &[(usize, u64)],
        store: Option<&dyn PieceStore>,
    ) -> Option<AsideReader> {
        let bytes: u64 = to_read.iter().map(|(_, size)| size).sum();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if to_read.len() < ASIDE_FROM_FILES || bytes < ASIDE_FROM_BYTES || cores < 2 {
            return None;
        }
        let mut theirs = vec![false; walked.len()];
        let mut paths = Vec::new();
        let (mut mine_bytes, mut their_bytes) = (0u64, 0u64);
        for &(index, size) in to_read {
            if size < chunking::PIPELINE_FROM && their_bytes <= mine_bytes {
                theirs[index] = true;
                their_bytes += size;
                paths.push(relpath::to_disk_path(root, &walked[index].rel));
            } else {
                mine_bytes += size;
            }
        }
        let lookup = store.and_then(|store| store.lookup());
        // Bounded: results wait for the scan to reach them.
        let (send, outcomes) = std::sync::mpsc::sync_channel(64);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("read-aside".into())
            .spawn(move || {
                let looked_up = lookup.is_some();
                let mut store = lookup.map(|has| LookupStore {
                    has,
                    pieces: Vec::new(),
                });
                let mut hooks = ScanHooks::default();
                for path in paths {
                    if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let mut counted = ScanOutcome::default();
                    let result = read_stable(
                        &path,
                        &mut counted,
                        &mut hooks,
                        store.as_mut().map(|s| s as &mut dyn PieceStore),
                    );
                    let mut pieces = std::mem::take(&mut counted.pieces);
                    if let Some(store) = store.as_mut() {
                        pieces.append(&mut store.pieces);
                    }
                    let read = AsideRead {
                        result,
                        files_read: counted.files_read,
                        bytes_read: counted.bytes_read,
                        pieces,
                        looked_up,
                    };
                    if send.send(read).is_err() {
                        return;
                    }
                }
            })
            // No thread: the scan reads every file itself.
            .ok()?;
        Some(AsideReader {
            theirs,
            outcomes: Some(outcomes),
            stop,
            thread: Some(thread),
        })
    }

    /// The outcome of walked file `index` if the second thread reads it
    /// (waiting for it), else `None`.
    fn take(&mut self, index: usize) -> Option<AsideRead> {
        if !self.theirs.get(index).copied().unwrap_or(false) {
            return None;
        }
        let received = self.outcomes.as_ref().map(|outcomes| outcomes.recv());
        if let Some(Ok(read)) = received {
            return Some(read);
        }
        // The thread is gone before its last file: a panic goes on here.
        if let Some(Err(panic)) = self.thread.take().map(|thread| thread.join()) {
            std::panic::resume_unwind(panic);
        }
        Some(AsideRead {
            result: Err(std::io::Error::other("the second reading thread stopped")),
            files_read: 0,
            bytes_read: 0,
            pieces: Vec::new(),
            looked_up: true,
        })
    }
}

impl AsideRead {
    /// Counts the read in `outcome` and hands its pieces on as
    /// [`read_stable`] on this thread would have.
    fn into_scan<'s>(
        self,
        outcome: &mut ScanOutcome,
        store: Option<&mut (dyn PieceStore + 's)>,
    ) -> std::io::Result<ReadResult> {
        outcome.files_read += self.files_read;
        outcome.bytes_read += self.bytes_read;
        match store {
            Some(store) if self.looked_up => {
                if !self.pieces.is_empty() {
                    store.put(self.pieces);
                }
            }
            Some(store) => {
                let wanted: Vec<_> = self
                    .pieces
                    .into_iter()
                    .filter(|(chunk, _)| !store.has(chunk))
                    .collect();
                if !wanted.is_empty() {
                    store.put(wanted);
                }
            }
            None => outcome.pieces.extend(self.pieces),
        }
        self.result
    }
}

impl Drop for AsideReader {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Its pending send fails once the receiver is gone.
        self.outcomes = None;
        if let Some(thread) = self.thread.take() {
            // A panic after the scan no longer needs its results is
            // not the scan's: it has already reported what it read.
            let _ = thread.join();
        }
    }
}

/// The second thread's [`PieceStore`]: looks up through a
/// [`PieceLookup`], keeps the pieces for the scan's own store.
struct LookupStore {
    has: PieceLookup,
    pieces: Vec<(crate::ops::ChunkId, Vec<u8>)>,
}

impl PieceStore for LookupStore {
    fn has(&mut self, chunk: &crate::ops::ChunkId) -> bool {
        (self.has)(chunk)
    }

    fn put(&mut self, page: Vec<(crate::ops::ChunkId, Vec<u8>)>) {
        self.pieces.extend(page);
    }
}

enum ReadResult {
    Stable { state: PathState, stat: StatKey },
    Vanished,
    KeptChanging,
}

/// Reads and chunks a file, and makes sure it did not change meanwhile:
/// the stat before and after reading, and the path's stat after, must agree.
fn read_stable<'s>(
    path: &Path,
    outcome: &mut ScanOutcome,
    hooks: &mut ScanHooks,
    mut store: Option<&mut (dyn PieceStore + 's)>,
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
        let mut pieces = Vec::new();
        let mut page_bytes = 0usize;
        let reader = chunking::HoleSkippingReader::new(&file, before.size);
        let count = |chunk: &crate::ops::ChunkRef, data: &[u8]| {
            bytes += u64::from(chunk.len);
            crate::sys::progress::advance(u64::from(chunk.len));
            // Zero chunks are never a recipe's base (zeros compress to
            // nothing), so their pieces would go unused.
            if chunking::is_zero_chunk(chunk) {
                return Ok(());
            }
            if let Some(store) = store.as_deref_mut() {
                if store.has(&chunk.id) {
                    return Ok(());
                }
            }
            let packed = chunking::pack_pieces(&chunking::pieces(data));
            page_bytes += packed.len();
            pieces.push((chunk.id, packed));
            if let Some(store) = store.as_deref_mut() {
                if page_bytes >= PIECE_PAGE {
                    store.put(std::mem::take(&mut pieces));
                    page_bytes = 0;
                }
            }
            Ok(())
        };
        let chunks = if before.size >= chunking::PIPELINE_FROM {
            chunking::chunk_stream_pipelined(reader, count)?
        } else {
            chunking::chunk_stream(reader, count)?
        };
        outcome.files_read += 1;
        outcome.bytes_read += bytes;
        if let Some(hook) = hooks.after_read.as_mut() {
            hook(path);
        }
        crate::sys::testhook::pause_after_reading(path);
        let after_meta = file.metadata()?;
        let after = stat_key(&after_meta);
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
            match store.as_deref_mut() {
                Some(store) if !pieces.is_empty() => store.put(pieces),
                Some(_) => {}
                None => outcome.pieces.extend(pieces),
            }
            return Ok(ReadResult::Stable {
                state: PathState::File {
                    mode: after.mode,
                    mtime: file_mtime(&after_meta),
                    size: after.size,
                    chunks,
                    ext: Default::default(),
                },
                stat: after,
            });
        }
    }
    Ok(ReadResult::KeptChanging)
}

/// Clones the file at `path` (tree path `rel`) into `dir` with a reflink
/// (FICLONE), named [`crate::store::layout::snapshot_name`], and chunks
/// the clone: its state, or `None` where the filesystem cannot clone it
/// (not btrfs/xfs, another filesystem than the state folder's) or any
/// step fails (the clone is then removed). The clone is a point in time:
/// the filesystem makes it under the file's lock, so it holds no half
/// write. Its mode and mtime are the file's right after the clone.
fn snapshot(path: &Path, dir: &Path, rel: &[u8], outcome: &mut ScanOutcome) -> Option<PathState> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = crate::store::layout::snapshot_name(rel);
    let temp = dir.join(format!("{name}.new"));
    let mut clone = || -> std::io::Result<PathState> {
        let source = File::open(path)?;
        std::fs::create_dir_all(dir)?;
        let copy = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        rustix::fs::ioctl_ficlone(&copy, &source)?;
        let meta = source.metadata()?;
        let size = copy.metadata()?.len();
        let chunks = chunking::chunk_stream_pipelined(
            chunking::HoleSkippingReader::new(&copy, size),
            |_, _| Ok(()),
        )?;
        outcome.files_read += 1;
        outcome.bytes_read += size;
        std::fs::rename(&temp, dir.join(&name))?;
        Ok(PathState::File {
            mode: meta.mode() & 0o7777,
            mtime: file_mtime(&meta),
            size,
            chunks,
            ext: Default::default(),
        })
    };
    match clone() {
        Ok(state) => Some(state),
        Err(_) => {
            let _ = std::fs::remove_file(&temp);
            // Made above for this clone; left if other snapshots are in it.
            let _ = std::fs::remove_dir(dir);
            None
        }
    }
}

/// Removes every file in the snapshot folder `dir` but those named in
/// `keep` (made by this scan). Best effort: a snapshot left behind only
/// takes room until the next scan.
fn remove_stale_snapshots(dir: &Path, keep: &std::collections::HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|name| keep.contains(name)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn same_content_stat(a: &StatKey, b: &StatKey) -> bool {
    a.size == b.size && a.mtime_ns == b.mtime_ns && a.ctime_ns == b.ctime_ns && a.inode == b.inode
}
