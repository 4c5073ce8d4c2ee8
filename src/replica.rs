//! A replica: a directory tree with its state folder `.syncreplica/`.
//!
//! The type says who holds the lock: [`Replica`] is for reading (listings,
//! scans); [`Replica::lock`] turns it into a [`LockedReplica`], the only
//! way to reach the state database for writing ([`LockedReplica::state_mut`]),
//! so every function that changes a replica takes `&mut LockedReplica`.
//!
//! [`Replica::open`] opens the state database read-only, so the listing
//! commands work for a user who may only read the replica, and on a
//! read-only filesystem; [`Replica::lock`] takes the lock and opens it
//! again for writing, and says plainly when the user or the filesystem
//! does not allow that ([`Error::NotWritable`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;

use crate::error::{Error, IoContext, Result};
use crate::ops::{Change, Id, Operation, VersionVector};
use crate::store::config::{self, Config};
use crate::store::identity::{self, Identity};
use crate::store::layout;
use crate::store::lock::ReplicaLock;
use crate::store::state::{self, Member, RecordedEntry, State};
use crate::tree::excludes::Excludes;
use crate::tree::folding::Folding;
use crate::tree::scan::{self, ScanHooks, ScanOutcome};

pub struct Replica {
    pub root: PathBuf,
    pub identity: Identity,
    pub config: Config,
    state: State,
    /// The recorded entries as last read or recorded ([`Replica::entries`]);
    /// `None` once this handle may have changed them.
    entries: EntriesCache,
}

/// Every recorded entry, tombstones included, keyed by path
/// ([`State::load_entries`]).
pub use crate::store::state::Entries;

/// What a replica with `config`, run by this user, keeps now
/// ([`crate::store::config::Preserve::kept_bits`]).
pub fn kept_bits_now(config: &Config) -> u32 {
    config
        .preserve()
        .unwrap_or_else(|_| crate::tree::meta::Preserve::default_for_user())
        .kept_bits(rustix::process::geteuid().is_root())
}

/// The bit of [`crate::store::config::Preserve::kept_bits`] that says the
/// items were applied as root.
pub const ROOT_BIT: u32 = 1 << 7;

/// A Mutex, not a RefCell: a `Replica` is shared with scan threads.
/// Beside the entries, a value computed from exactly them by a layer above
/// (an import's tree digest: `sync::digest`), see
/// [`Replica::take_derived`]: it goes whenever they do, under the same
/// lock.
#[derive(Default)]
struct EntriesCache(Mutex<(Option<Arc<Entries>>, Option<Derived>)>);

/// A value computed from the cached entries, of a type this layer does not
/// know.
type Derived = Box<dyn std::any::Any + Send>;

impl EntriesCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Arc<Entries>>, Option<Derived>)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self) -> Option<Arc<Entries>> {
        self.lock().0.clone()
    }

    /// Sets the entries, with what was computed from them if anything.
    fn set_with(&self, entries: Option<Arc<Entries>>, derived: Option<Derived>) {
        let old = std::mem::replace(&mut *self.lock(), (entries, derived));
        free_aside(old.0);
    }

    fn set(&self, entries: Option<Arc<Entries>>) {
        self.set_with(entries, None);
    }

    fn take(&self) -> Option<Arc<Entries>> {
        let (entries, _) = std::mem::take(&mut *self.lock());
        entries
    }

    /// What was computed from the entries, taken, if it is a `T`.
    fn take_derived<T: 'static>(&self) -> Option<T> {
        let derived = self.lock().1.take()?;
        derived.downcast::<T>().ok().map(|boxed| *boxed)
    }
}

impl Drop for EntriesCache {
    fn drop(&mut self) {
        free_aside(self.0.get_mut().unwrap_or_else(|e| e.into_inner()).0.take());
    }
}

/// Frees the last handle on a large map of entries on a thread of its own.
/// Freeing 20,000 entries (each with its chunk list, version and metadata)
/// took 15 ms of an import's 450 ms in `bench/sync_vs_rsync.sh`, on the
/// command's own path; on a thread it overlaps what comes next, and at
/// exit the process ends without waiting for it. Small maps, shared maps
/// and a thread that cannot be started are freed here.
fn free_aside(entries: Option<Arc<Entries>>) {
    const LARGE: usize = 4096;
    let Some(entries) = entries else { return };
    if entries.len() < LARGE || Arc::strong_count(&entries) > 1 {
        return;
    }
    // On failure the closure, and with it the map, is dropped here.
    let _ = std::thread::Builder::new()
        .name("free-entries".into())
        .spawn(move || drop(entries));
}

/// A replica whose lock this process holds: the only handle that can
/// change its state. Reads go through `Deref` to [`Replica`].
pub struct LockedReplica {
    replica: Replica,
    /// `None` only while a new replica's state folder is being built under
    /// a temporary name that no other process can find.
    lock: Option<ReplicaLock>,
}

impl std::ops::Deref for LockedReplica {
    type Target = Replica;
    fn deref(&self) -> &Replica {
        &self.replica
    }
}

impl LockedReplica {
    /// The state database, for writing. Forgets the entries read so far
    /// ([`Replica::entries`]): the caller may change them.
    pub fn state_mut(&mut self) -> &mut State {
        self.replica.entries.set(None);
        &mut self.replica.state
    }

    /// [`LockedReplica::state_mut`] for a write that leaves the entries
    /// alone (what a packet says of its sender, say): the entries read so
    /// far stay, so an import's digest check after it need not read them
    /// all again.
    pub fn state_mut_keeping_entries(&mut self) -> &mut State {
        &mut self.replica.state
    }

    /// This copy's incarnation id (clone detection), carried in every
    /// packet it signs. A replica made before incarnations existed gets
    /// one now, on first use.
    pub fn incarnation(&mut self) -> Result<Id> {
        if let Some((id, _)) = self.state().own_incarnation()? {
            return Ok(id);
        }
        let id = identity::random_id();
        let now = crate::sys::clock::now_ns();
        self.state_mut()
            .transaction(|tx| Ok(state::set_own_incarnation(tx, &id, now, "")?))?;
        // Read back: the stored one wins should two ever race.
        Ok(self.state().own_incarnation()?.map_or(id, |(id, _)| id))
    }

    /// The settings, to change in memory (the file is left as it is).
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.replica.config
    }

    /// The lock held, to tell the user about a lock taken over from a dead
    /// process.
    pub fn held_lock(&self) -> Option<&ReplicaLock> {
        self.lock.as_ref()
    }

    /// Closes the replica's files and lock and opens them again, as a new
    /// process would (after an interrupted import, for instance).
    pub fn reopen(&mut self, command: &str) -> Result<()> {
        let root = self.root.clone();
        // The old lock goes first: this process would otherwise find it taken.
        self.lock = None;
        *self = Replica::open(&root)?.lock(command)?;
        Ok(())
    }

    /// Releases the lock, keeping the replica open for reading.
    pub fn unlock(self) -> Replica {
        self.replica
    }

    /// The lock and a state database open for writing, for `replica`.
    fn take(mut replica: Replica, command: &str) -> Result<LockedReplica> {
        let root = replica.root.clone();
        let dir = replica.state_dir();
        // Checked before the lock is taken: a refused run leaves no
        // root-owned lock file behind to lock its owner out.
        refuse_root_on_user_replica(&replica)?;
        let lock =
            ReplicaLock::acquire(&root, &dir, command).map_err(|e| not_writable(&root, e))?;
        // Opened after the lock is held: the read-only connection may have
        // been opened without locks (`State::open_read_only`).
        replica.state = State::open(&dir).map_err(|e| not_writable(&root, e))?;
        // A key rotation interrupted by a crash (`mkreplica -rekey`) is
        // finished or undone before anything signs.
        crate::store::identity::settle(&dir, &replica.state, &replica.identity.replica_id)?;
        // Read before the lock was held: another process may have changed
        // them since.
        replica.entries.set(None);
        Ok(LockedReplica {
            replica,
            lock: Some(lock),
        })
    }

    /// A replica being assembled under a temporary name (mkreplica), which
    /// no other process can find, so it needs no lock.
    pub(crate) fn unpublished(replica: Replica) -> LockedReplica {
        LockedReplica {
            replica,
            lock: None,
        }
    }

    /// [`Replica::scan`] for a scan whose outcome is recorded: a file
    /// that keeps changing while it is read is cloned (reflink) into the
    /// state folder's [`layout::SNAPSHOTS_DIR`] where the filesystem can,
    /// and the clone's content is what is recorded; snapshots of earlier
    /// scans are removed (see [`scan::scan`]). The entries it reads are
    /// kept for the record ([`Replica::entries`]): under the lock, no other
    /// process changes them.
    pub fn scan_to_record(&self, hooks: &mut ScanHooks) -> Result<ScanOutcome> {
        let snapshots = self.state_dir().join(layout::SNAPSHOTS_DIR);
        self.replica.scan_with(hooks, Some(&snapshots))
    }

    /// Records a scan's changes as operations of this replica, numbered from
    /// its last epoch on, in one transaction.
    pub fn record(&mut self, outcome: &ScanOutcome) -> Result<RecordSummary> {
        let me = self.identity.replica_id;
        let recorded = self.entries()?;
        let last = self.state.epoch(&me, &me)?;
        let now = crate::sys::clock::now();
        let secret = self.signing_key()?.to_bytes();
        // Each change's version: the recorded one, with this replica's
        // epoch of the change.
        let versions: Vec<VersionVector> = (last + 1..)
            .zip(&outcome.changes)
            .map(|(epoch, change)| {
                let mut version = recorded
                    .get(&change.path)
                    .map(|e| e.version.clone())
                    .unwrap_or_default();
                version.set(me, epoch);
                version
            })
            .collect();
        let summary = self.state_mut().transaction(|tx| {
            let mut epoch = last;
            for (change, version) in outcome.changes.iter().zip(&versions) {
                epoch += 1;
                let op = Operation {
                    origin: me,
                    epoch,
                    recorded: now,
                    change: Change::Path {
                        path: change.path.clone(),
                        version: version.clone(),
                        state: change.new.clone(),
                    },
                };
                state::append_operation(tx, &op)?;
                let scanned = change.stat.map(|_| outcome.scanned_ns);
                state::put_entry(
                    tx,
                    &state::EntryWrite {
                        path: &change.path,
                        state: &change.new,
                        version,
                        author: &me,
                        stat: change.stat,
                        scanned_ns: scanned,
                    },
                )?;
            }
            // A path an import could not write is this replica's again
            // once a change of it is recorded.
            state::forget_failed_steps(tx, outcome.changes.iter().map(|c| c.path.as_slice()))?;
            state::put_chunk_pieces(tx, &outcome.pieces)?;
            for (path, stat) in &outcome.refreshed {
                state::refresh_stat(tx, path, *stat, outcome.scanned_ns)?;
            }
            for path in &outcome.newly_excluded {
                state::forget_entry(tx, path)?;
            }
            if epoch > last {
                state::set_epoch(tx, &me, &me, epoch)?;
                state::seal_own_run(tx, &secret, &me, last + 1, epoch)?;
            }
            Ok(RecordSummary {
                epochs: (epoch > last).then_some((last + 1, epoch)),
                forgotten: outcome.newly_excluded.len(),
                missing: Vec::new(),
                mirror: None,
            })
        })?;
        // What was written, applied to the entries read before, so the
        // steps after (an export's chunk index and digest, an import's
        // plan) need not read them all again: as `put_entry`,
        // `refresh_stat` and `forget_entry` left the rows.
        let mut entries = Arc::try_unwrap(recorded).unwrap_or_else(|e| (*e).clone());
        for (change, version) in outcome.changes.iter().zip(versions) {
            entries.insert(
                change.path.clone(),
                RecordedEntry {
                    state: change.new.clone(),
                    version,
                    stat: change.stat,
                    scanned_ns: change.stat.map(|_| outcome.scanned_ns),
                    author: me,
                },
            );
        }
        for (path, stat) in &outcome.refreshed {
            if let Some(entry) = entries.get_mut(path) {
                entry.stat = Some(*stat);
                entry.scanned_ns = Some(outcome.scanned_ns);
            }
        }
        for path in &outcome.newly_excluded {
            entries.remove(path);
        }
        self.replica.entries.set(Some(Arc::new(entries)));
        Ok(summary)
    }
}

/// The pieces a recording scan reads ([`scan::PieceStore`]), looked up
/// and recorded in the replica's state database.
struct StatePieces<'a> {
    state: &'a State,
    /// Whether the table of pieces exists (else nothing is recorded).
    table: bool,
    /// Pieces not recorded yet, [`scan::PIECE_PAGE`] at most.
    page: Vec<(crate::ops::ChunkId, Vec<u8>)>,
    page_bytes: usize,
    /// The first failure, reported once the scan is done; nothing is
    /// looked up or recorded after it.
    error: Option<Error>,
}

impl scan::PieceStore for StatePieces<'_> {
    fn has(&mut self, chunk: &crate::ops::ChunkId) -> bool {
        if !self.table || self.error.is_some() {
            return false;
        }
        self.state.has_chunk_pieces(chunk).unwrap_or_else(|err| {
            self.error = Some(err);
            false
        })
    }

    fn put(&mut self, page: Vec<(crate::ops::ChunkId, Vec<u8>)>) {
        if self.error.is_some() {
            return;
        }
        self.page_bytes += page.iter().map(|(_, packed)| packed.len()).sum::<usize>();
        self.page.extend(page);
        if self.page_bytes < scan::PIECE_PAGE {
            return;
        }
        match self.state.put_chunk_pieces_now(&self.page) {
            Ok(()) => self.table = true,
            Err(err) => self.error = Some(err),
        }
        self.page.clear();
        self.page_bytes = 0;
    }

    fn lookup(&self) -> Option<scan::PieceLookup> {
        if !self.table {
            return Some(Box::new(|_| false));
        }
        // A connection of its own, reading what is committed (pieces are
        // only ever added: a miss costs a second cut, never a wrong row).
        let state = State::open_read_only(self.state.path().parent()?).ok()?;
        Some(Box::new(move |chunk| {
            state.has_chunk_pieces(chunk).unwrap_or(false)
        }))
    }
}

/// Refuses `root` (a canonical path) when it lies in a replica (or is
/// one): replicas do not nest. [`Error::AlreadyInReplica`] names the outer
/// replica; [`Error::IsReplicaRoot`] says that `root` is one.
pub(crate) fn refuse_nesting(root: &Path) -> Result<()> {
    if let Some(outer) = root.ancestors().find(|d| is_replica_root(d)) {
        let name = Identity::load(&state_dir(outer))
            .map(|i| i.replica_name)
            .unwrap_or_else(|_| "?".into());
        if outer == root {
            return Err(Error::IsReplicaRoot {
                path: root.to_path_buf(),
                name,
            });
        }
        return Err(Error::AlreadyInReplica {
            path: root.to_path_buf(),
            root: outer.to_path_buf(),
            name,
        });
    }
    Ok(())
}

/// Refuses a directory that may not exist yet, before anything is
/// created: its nearest existing ancestor must not lie in a replica.
pub(crate) fn refuse_nesting_of_new(dir: &Path) -> Result<()> {
    if let Some(existing) = dir.ancestors().find(|d| d.is_dir()) {
        let canonical = std::fs::canonicalize(existing).at(existing)?;
        match refuse_nesting(&canonical) {
            Err(Error::AlreadyInReplica { root, name, .. }) => {
                // Named as asked (the directory to be made), not as the
                // ancestor that exists; no "/" added when they are one.
                let rest = dir.strip_prefix(existing).unwrap_or(Path::new(""));
                let path = match rest.as_os_str().is_empty() {
                    true => canonical,
                    false => canonical.join(rest),
                };
                return Err(Error::AlreadyInReplica { path, root, name });
            }
            Err(Error::IsReplicaRoot { path, name })
                if dir
                    .strip_prefix(existing)
                    .is_ok_and(|rest| !rest.as_os_str().is_empty()) =>
            {
                // A folder still to be made inside a replica's root.
                return Err(Error::AlreadyInReplica {
                    path: path.join(dir.strip_prefix(existing).unwrap_or(Path::new(""))),
                    root: path,
                    name,
                });
            }
            other => other?,
        }
    }
    Ok(())
}

/// A failure to open the replica for writing, as [`Error::NotWritable`]
/// when the user or the filesystem does not allow writing; other errors
/// as they are.
/// Refuses root a replica whose recorded state a user that is not root
/// last reconciled ([`crate::sync::kept`]), while its config.toml does not
/// set `preserve`: root's default keeps more (owners, devices, setuid
/// bits) and would set the family's recorded values on that user's files,
/// turning them over to other owners (recheck 14e, new problem 1). A
/// `preserve` set in config.toml is the admin's choice, and root goes on.
pub fn refuse_root_on_user_replica(replica: &Replica) -> Result<()> {
    if !rustix::process::geteuid().is_root() || replica.config.preserve.is_some() {
        return Ok(());
    }
    match replica.state.kept_items()? {
        Some(bits) if bits & ROOT_BIT == 0 => {}
        _ => return Ok(()),
    }
    let uid = std::fs::metadata(&replica.root)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .map_err(|e| Error::io(&replica.root, e))?;
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name);
    Err(Error::RootOnUserReplica {
        root: replica.root.clone(),
        uid,
        owner,
    })
}

fn not_writable(root: &Path, err: Error) -> Error {
    use rusqlite::ErrorCode;
    let read_only_fs = match &err {
        Error::Io { cause, .. } => match cause.kind() {
            std::io::ErrorKind::PermissionDenied => false,
            std::io::ErrorKind::ReadOnlyFilesystem => true,
            _ => return err,
        },
        Error::Database { cause, path } => match cause.sqlite_error_code() {
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
                if crate::sys::fsutil::is_read_only_fs(path) {
                    true
                } else {
                    // SQLite writes the database and, beside it, its
                    // -wal and -shm files.
                    let writable =
                        |p: &Path| rustix::fs::access(p, rustix::fs::Access::WRITE_OK).is_ok();
                    if writable(path) && path.parent().is_none_or(writable) {
                        return err;
                    }
                    false
                }
            }
            _ => return err,
        },
        _ => return err,
    };
    let path = match &err {
        Error::Io { path, .. } | Error::Database { path, .. } => path.clone(),
        _ => root.to_path_buf(),
    };
    Error::NotWritable {
        root: root.to_path_buf(),
        path,
        read_only_fs,
    }
}

/// What recording a scan did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    /// Epochs given to the new operations, if any were recorded.
    pub epochs: Option<(u64, u64)>,
    pub forgotten: usize,
    /// Paths the family holds that this replica lacks since its exclude
    /// rules changed (see `crate::sync::record`), filled in by
    /// `record_local_changes`.
    pub missing: Vec<Vec<u8>>,
    /// For a mirror: the local changes undone instead of recorded
    /// (`crate::sync::mirror`), filled in by `record_local_changes`.
    pub mirror: Option<MirrorUndone>,
}

/// What a mirror undid instead of recording (`crate::sync::mirror`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MirrorUndone {
    /// Replicated paths changed here: set aside (where kept, if anything was
    /// on disk) and asked for again.
    pub set_aside: Vec<(Vec<u8>, Option<PathBuf>)>,
    /// Replicated files whose content was changed here: left in place
    /// (served as they are) until the family's version, asked for again,
    /// replaces them.
    pub left_in_place: Vec<Vec<u8>>,
    /// Replicated paths whose metadata was set back.
    pub metadata_restored: Vec<Vec<u8>>,
    /// Names of a hard-link set removed here, made again as links to
    /// another name of the set held here: (path, linked to).
    pub relinked: Vec<(Vec<u8>, Vec<u8>)>,
    /// What could not be set back (items that failed for another reason
    /// than this user's rights, with counts; a hard-link leader out of
    /// reach).
    pub notes: Vec<String>,
    /// Items this user can never apply (not root), one line per item with
    /// a count, as an import says them ("not applied here"): not a failure
    /// to set back.
    pub not_applied: Vec<String>,
    /// New local paths the family does not have: left alone, not recorded.
    pub local_only: usize,
    /// The member asked for the family's versions.
    pub upstream: Option<String>,
}

pub use crate::store::layout::state_dir;

/// Whether `dir` is a replica root (has a state folder with an identity).
pub fn is_replica_root(dir: &Path) -> bool {
    state_dir(dir)
        .join(crate::store::layout::IDENTITY_FILE)
        .is_file()
}

/// Finds the replica root: `start` (or the current directory) and then
/// its parents, as git does.
///
/// Errors: [`Error::BadReplicaDir`] when `start` is given (`-replica DIR`)
/// and is missing or a file ([`check_replica_dir`]);
/// [`Error::NoReplica`] (`named` when `start` was given) when neither it
/// nor a parent is a replica root.
pub fn discover(start: Option<&Path>) -> Result<PathBuf> {
    let named = start.is_some();
    let start = match start {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_dir().at(".")?,
    };
    // Named with -replica: a typo or a file is said as such, not as a bare
    // OS error or "no replica found".
    if named {
        check_replica_dir(&start, true)?;
    }
    let absolute = std::fs::canonicalize(&start).at(&start)?;
    absolute
        .ancestors()
        .find(|dir| is_replica_root(dir))
        .map(Path::to_path_buf)
        .ok_or(Error::NoReplica { start, named })
}

/// Checks a directory named with `-replica DIR` before it is used:
/// [`Error::BadReplicaDir`] when it is a file, when one of its parents is
/// a file (naming that one), or, with `must_exist`, when it is missing.
/// Other failures to look at it (permission denied) are [`Error::Io`].
pub fn check_replica_dir(dir: &Path, must_exist: bool) -> Result<()> {
    let bad = |why: String| {
        Err(Error::BadReplicaDir {
            path: dir.to_path_buf(),
            why,
        })
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bad("is a file, not a directory".into()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => match must_exist {
            true => bad("no such directory".into()),
            false => Ok(()),
        },
        // ENOTDIR: a parent on the way is a file (afile/sub); name it, as
        // the OS error does not.
        Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => {
            match dir
                .ancestors()
                .skip(1)
                .find(|parent| std::fs::metadata(parent).is_ok_and(|meta| !meta.is_dir()))
            {
                Some(file) => bad(format!("{} is a file, not a directory", file.display())),
                None => bad("a parent is not a directory".into()),
            }
        }
        Err(err) => Err(Error::Io {
            path: dir.to_path_buf(),
            cause: err,
        }),
    }
}

impl Replica {
    /// Opens the replica rooted at `root` for reading.
    pub fn open(root: &Path) -> Result<Replica> {
        let dir = state_dir(root);
        let identity = Identity::load(&dir)?;
        let config = Config::load(&config::config_path(&dir))?;
        let state = State::open_read_only(&dir)?;
        // Root running a replica whose state a user that is not root last
        // reconciled reads as that user did until it set on disk what that
        // user could not ([`crate::tree::meta::acts_as_root`]).
        let as_root = rustix::process::geteuid().is_root();
        crate::tree::meta::set_as_unprivileged(
            as_root && state.kept_items()?.is_some_and(|bits| bits & ROOT_BIT == 0),
        );
        Ok(Replica {
            root: root.to_path_buf(),
            identity,
            config,
            state,
            entries: EntriesCache::default(),
        })
    }

    pub fn state_dir(&self) -> PathBuf {
        state_dir(&self.root)
    }

    /// The state database, for reading.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Every recorded entry ([`State::load_entries`]), read once and kept
    /// until this handle next writes the state
    /// ([`LockedReplica::state_mut`]). An export or an import needs them
    /// in several steps (scan, record, resend check, chunk index, tree
    /// digest, plan); reading and decoding them anew in each was 43 % of
    /// the CPU of an export of a few changes in 20,000 files.
    pub fn entries(&self) -> Result<Arc<Entries>> {
        if let Some(entries) = self.entries.get() {
            return Ok(entries);
        }
        let entries = Arc::new(self.state.load_entries()?);
        self.entries.set(Some(Arc::clone(&entries)));
        Ok(entries)
    }

    /// [`Replica::entries`] for a step that keeps them and changes the
    /// state after (an import's plan): taken from the cache, copied only if
    /// they are still shared.
    pub fn take_entries(&self) -> Result<Entries> {
        match self.entries.take() {
            Some(entries) => Ok(Arc::try_unwrap(entries).unwrap_or_else(|e| (*e).clone())),
            None => self.state.load_entries(),
        }
    }

    /// Keeps `entries` as the recorded entries ([`Replica::entries`]):
    /// for a step that just wrote them and knows the rows as it left
    /// them (an import's apply), so the steps after need not read them.
    pub(crate) fn keep_entries(&self, entries: Entries) {
        self.entries.set(Some(Arc::new(entries)));
    }

    /// Keeps `entries` as [`Replica::keep_entries`] does, with `derived`,
    /// a value computed from exactly them (an import's tree digest,
    /// computed while its disk steps ran): the step after takes it
    /// ([`Replica::take_derived`]) instead of computing it again.
    pub(crate) fn keep_entries_with(&self, entries: Entries, derived: Derived) {
        self.entries
            .set_with(Some(Arc::new(entries)), Some(derived));
    }

    /// The value kept with the entries ([`Replica::keep_entries_with`]),
    /// taken: `None` when none was kept, it is not a `T`, or the entries
    /// changed since.
    pub fn take_derived<T: 'static>(&self) -> Option<T> {
        self.entries.take_derived()
    }

    /// Takes the replica's lock, for commands that change it; `command`
    /// is shown to a process that finds it taken.
    pub fn lock(self, command: &str) -> Result<LockedReplica> {
        LockedReplica::take(self, command)
    }

    /// The replica's secret key, from the folder that holds its state
    /// database (which, while `mkreplica -init` builds a replica, is not
    /// yet the final state folder).
    pub fn signing_key(&self) -> Result<SigningKey> {
        let dir = self.state.path().parent().unwrap_or(self.state.path());
        identity::load_signing_key(dir)
    }

    pub fn excludes(&self) -> Result<Excludes> {
        let excludes = Excludes::load(
            &self.root,
            &self.config.exclude,
            &config::config_path(&self.state_dir()),
        )?;
        // A pattern that left the family's paths out at this replica's
        // creation matches something, even where the tree has nothing it
        // matches (review 14c item 5).
        excludes.count_as_matched(&self.state.family_excluded()?);
        Ok(excludes)
    }

    /// How the replica's filesystem compares names: see [`folding`].
    pub fn folding(&self) -> Result<Folding> {
        folding(&self.root, &self.state_dir())
    }

    /// Compares the tree with the recorded state, changing nothing.
    pub fn scan(&self, hooks: &mut ScanHooks) -> Result<ScanOutcome> {
        self.scan_with(hooks, None)
    }

    fn scan_with(&self, hooks: &mut ScanHooks, snapshots: Option<&Path>) -> Result<ScanOutcome> {
        let excludes = self.excludes()?;
        let folding = self.folding()?;
        let state_dir = self.state_dir();
        let cache = &self.entries;
        // A second connection, so the entries load while the tree is walked.
        // Those of a scan whose outcome is recorded are kept
        // ([`LockedReplica::scan_to_record`]).
        let load = move || -> Result<Arc<Entries>> {
            if let Some(entries) = cache.get() {
                return Ok(entries);
            }
            let entries = Arc::new(State::open_read_only(&state_dir)?.load_entries()?);
            if snapshots.is_some() {
                cache.set(Some(Arc::clone(&entries)));
            }
            Ok(entries)
        };
        let preserve = self.preserve();
        // A scan whose outcome is recorded records its chunks' pieces as
        // it goes (see `scan::PieceStore`).
        let mut store = match snapshots {
            Some(_) => Some(StatePieces {
                state: &self.state,
                table: self.state.records_chunk_pieces()?,
                page: Vec::new(),
                page_bytes: 0,
                error: None,
            }),
            None => None,
        };
        let mut outcome = scan::scan(
            &self.root,
            &excludes,
            folding,
            load,
            hooks,
            snapshots,
            &preserve,
            store.as_mut().map(|s| s as &mut dyn scan::PieceStore),
        )?;
        if let Some(store) = store {
            if let Some(err) = store.error {
                return Err(err);
            }
            // The last page goes with the record's own transaction: a
            // scan that reads a few files commits nothing more.
            outcome.pieces = store.page;
        }
        // The root's own state (the empty path) is readable only from
        // packet format 2.10 on, and sealed operations cannot be left out
        // of a packet: while a member's packets show an older reader, a
        // change of the root is not recorded (it would block every export
        // to that member until it upgrades).
        if self.a_member_reads_before_root_metadata()? {
            outcome.changes.retain(|change| !change.path.is_empty());
        }
        Ok(outcome)
    }

    /// Whether a member's packets show a packet format of major 2 older
    /// than [`packet_format::MINOR_WITH_ROOT_METADATA`].
    fn a_member_reads_before_root_metadata(&self) -> Result<bool> {
        let me = self.identity.replica_id;
        for member in self.members()? {
            if member.replica == me {
                continue;
            }
            if let Some(seen) = self.state.member_version(&member.replica)? {
                if seen.version.major == packet_format::FORMAT_MAJOR
                    && seen.version.minor < packet_format::MINOR_WITH_ROOT_METADATA
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// What this replica keeps beyond content, mode and times (checked
    /// when the config was loaded).
    ///
    /// Until the recorded values of items kept now and not when the state
    /// was last reconciled are set on disk ([`crate::sync::kept`], at the
    /// next command that takes the lock), those items are left out: a
    /// value this replica never applied is not a local change (review 14e
    /// items 1 and 2: it was recorded, and stripped the family's).
    pub fn preserve(&self) -> crate::tree::meta::Preserve {
        let wanted = self.wanted_preserve();
        match self.state.kept_items().ok().flatten() {
            Some(bits) => wanted.within(bits),
            None => wanted,
        }
    }

    /// What config.toml (or, unset, the running user) says to keep.
    pub fn wanted_preserve(&self) -> crate::tree::meta::Preserve {
        self.config
            .preserve()
            .unwrap_or_else(|_| crate::tree::meta::Preserve::default_for_user())
    }

    pub fn members(&self) -> Result<Vec<Member>> {
        self.state.members()
    }

    /// Finds a member by name or replica id.
    pub fn member(&self, name_or_id: &str) -> Result<Member> {
        let members = self.members()?;
        members
            .iter()
            .find(|m| m.name == name_or_id)
            .or_else(|| {
                Id::from_hex(name_or_id).and_then(|id| members.iter().find(|m| m.replica == id))
            })
            .cloned()
            .ok_or_else(|| Error::UnknownReplica {
                name: name_or_id.to_string(),
                family: self.identity.family_name.clone(),
            })
    }
}

/// How the filesystem of the replica rooted at `root`, with its state
/// folder at `state_dir`, compares names ([`Folding`]). Forced by the test
/// hook `SYNCREPLICA_TEST_FOLD` (`sys::testhook`); else the probe's answer
/// cached in the state folder (`store::filesystem`) if it was given for
/// this filesystem; else a new probe in the state folder, whose answer is
/// cached (a cache that cannot be written is not an error). Where the
/// state folder cannot be written (read-only replica or filesystem), case
/// folding is told by looking the state folder up under another case, and
/// Unicode normalisation is taken as not folded.
///
/// Errors: the root cannot be stat'ed, or the probe failed otherwise than
/// for want of write access.
pub fn folding(root: &Path, state_dir: &Path) -> Result<Folding> {
    use crate::store::filesystem::{self, FilesystemFacts};
    if let Some((case, unicode)) = crate::sys::testhook::forced_folding() {
        return Ok(Folding { case, unicode });
    }
    let (device, fs_type) = filesystem::identify(root).at(root)?;
    if let Some(facts) = filesystem::load(state_dir, (device, fs_type)) {
        return Ok(Folding {
            case: facts.folds_case,
            unicode: facts.folds_unicode,
        });
    }
    match crate::tree::folding::probe(state_dir) {
        Ok(found) => {
            let facts = FilesystemFacts {
                device,
                fs_type,
                folds_case: found.case,
                folds_unicode: found.unicode,
            };
            // Only a cache: the next command probes again.
            let _ = filesystem::save(state_dir, &facts);
            Ok(found)
        }
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            let name = state_dir.file_name().unwrap_or_default().to_string_lossy();
            let other_case: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            let case = other_case != name
                && state_dir
                    .parent()
                    .is_some_and(|parent| parent.join(&other_case).exists());
            Ok(Folding {
                case,
                unicode: false,
            })
        }
        Err(err) => Err(Error::io(state_dir, err)),
    }
}

/// What `mkreplica -init` did.
pub struct InitReport {
    pub replica: Replica,
    /// Pids of killed earlier runs whose state folder under construction
    /// was removed first.
    pub cleaned_up: Vec<u32>,
    pub scan: ScanOutcome,
    pub record: RecordSummary,
    pub fingerprint: String,
}

/// Creates a new family whose first member, `name`, is rooted at `dir`.
/// Files already there become its initial content. Nothing is left behind
/// if it fails: the state folder is built under a temporary name and
/// renamed into place last.
pub fn init(dir: &Path, family: &str, name: &str) -> Result<InitReport> {
    identity::validate_name(family).map_err(|err| match err {
        Error::BadName { why, .. } => Error::BadName {
            name: family.to_string(),
            why: format!("(family) {why}"),
        },
        other => other,
    })?;
    identity::validate_name(name)?;
    let in_replica = refuse_nesting;
    if !dir.exists() {
        // Refused before anything is created.
        refuse_nesting_of_new(dir)?;
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let root = std::fs::canonicalize(dir).at(dir)?;
    if !root.is_dir() {
        return Err(Error::NotADirectory { path: root });
    }
    in_replica(&root)?;
    // What an earlier run killed before it finished left: its state folder
    // under construction (the tree itself is the user's and untouched).
    let cleaned_up = crate::store::lock::abandoned_init_dirs(&root);
    for (staging, _) in &cleaned_up {
        std::fs::remove_dir_all(staging).at(staging)?;
    }
    let cleaned_up: Vec<u32> = cleaned_up.into_iter().map(|(_, pid)| pid).collect();
    let final_dir = state_dir(&root);
    if final_dir.exists() {
        return Err(Error::ContainsReplica {
            path: root.clone(),
            root: root.clone(),
        });
    }

    let config = Config::default();
    let excludes = Excludes::load(&root, &config.exclude, &config::config_path(&final_dir))?;
    let nothing_recorded = || Ok(Entries::default());
    // Nothing is recorded yet: no recorded path can be missing under
    // another spelling, so how names fold does not matter.
    let outcome = scan::scan(
        &root,
        &excludes,
        Folding::default(),
        nothing_recorded,
        &mut ScanHooks::default(),
        None,
        &config
            .preserve()
            .unwrap_or_else(|_| crate::tree::meta::Preserve::default_for_user()),
        None,
    )?;
    if let Some(nested) = outcome
        .warnings
        .iter()
        .find(|w| w.kind == scan::WarningKind::NestedReplica)
    {
        return Err(Error::ContainsReplica {
            path: root.clone(),
            root: crate::tree::relpath::to_disk_path(&root, &nested.path)
                .parent()
                .unwrap_or(&root)
                .to_path_buf(),
        });
    }

    let staging = crate::store::layout::state_dir_under_construction(&root, std::process::id());
    let built = build_state_dir(&staging, &root, family, name, &outcome, excludes.rules());
    match built {
        Ok(()) => {}
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(err);
        }
    }
    crate::sys::testhook::crash_point("mkreplica-init-before-rename");
    std::fs::rename(&staging, &final_dir).at(&final_dir)?;
    // Building the state folder in the root moved the root's mtime, which
    // the scan recorded before (SPEC.md §6.2.1): put back, or the next
    // scan takes it for a change of the root.
    if let Some(crate::ops::PathState::Directory {
        mtime: Some(mtime), ..
    }) = outcome
        .changes
        .iter()
        .find(|change| change.path.is_empty())
        .map(|change| &change.new)
    {
        let confined = crate::tree::confined::ConfinedRoot::open(&root)?;
        if let crate::tree::confined::Located::At(place) = confined.locate(b"", false)? {
            place.set_mtime(*mtime)?;
        }
    }
    crate::sys::fsutil::sync_dir(&root)?;

    let replica = Replica::open(&root)?;
    let record = RecordSummary {
        epochs: replica_epochs(&replica)?,
        ..RecordSummary::default()
    };
    let key = replica.signing_key()?;
    Ok(InitReport {
        replica,
        cleaned_up,
        scan: outcome,
        record,
        fingerprint: identity::fingerprint(&key.verifying_key().to_bytes()),
    })
}

fn replica_epochs(replica: &Replica) -> Result<Option<(u64, u64)>> {
    let me = replica.identity.replica_id;
    let last = replica.state().epoch(&me, &me)?;
    Ok((last > 0).then_some((1, last)))
}

fn build_state_dir(
    staging: &Path,
    root: &Path,
    family: &str,
    name: &str,
    outcome: &ScanOutcome,
    exclude_rules: &str,
) -> Result<()> {
    std::fs::create_dir(staging).at(staging)?;
    let identity = Identity {
        family_name: family.to_string(),
        family_id: identity::random_id(),
        replica_name: name.to_string(),
        replica_id: identity::random_id(),
    };
    identity.save(staging)?;
    let key = identity::create_signing_key(staging)?;
    config::write_default(staging)?;
    let mut replica = LockedReplica::unpublished(Replica {
        root: root.to_path_buf(),
        config: Config::default(),
        state: State::open(staging)?,
        identity: identity.clone(),
        entries: EntriesCache::default(),
    });
    let me = identity.replica_id;
    replica.state_mut().transaction(|tx| {
        let member = Member {
            replica: me,
            name: name.to_string(),
            public_key: key.verifying_key().to_bytes(),
        };
        state::insert_member(tx, &member, crate::sys::clock::now_ns())?;
        state::set_epoch(tx, &me, &me, 0)?;
        let now = crate::sys::clock::now_ns();
        state::set_own_incarnation(tx, &identity::random_id(), now, "")?;
        // Nothing can be missing because of excludes yet.
        state::set_recorded_excludes(tx, exclude_rules)?;
        state::set_kept_items(tx, kept_bits_now(&Config::default()))?;
        Ok(())
    })?;
    replica.record(outcome)?;
    Ok(())
}
