//! Steps (b), (d) and (e): staging file contents, running the journal's
//! disk actions, and purging soft-deleted files.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::journal::{stat_mtime, stat_mtime_ns, Action, Expect, MetaKind};
use super::plan::Plan;
use super::{is_injected_crash, ApplyHooks, ChunkSource};
use crate::error::{Error, IoContext, Refusal, Result};
use crate::ops::{ChunkId, ChunkRef, PathState, Timestamp};
use crate::replica::Replica;
use crate::store::layout::{DELETED_DIR, STAGING_DIR, TEMP_NEW_FILE};
use crate::sync::assemble::{self, Options};
use crate::tree::confined::{ConfinedRoot, DiskKind, Located, Place};
use crate::tree::relpath;
use rustix::fs::FileType;

/// Fsyncs a folder of the state folder (staging, soft-deleted files);
/// never one of the tree, which [`ConfinedRoot::sync_dir`] reaches.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(rustix::fs::fsync(&fd)?)
}

/// What [`stage`] wrote.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// Bytes of content.
    pub bytes: u64,
    /// Of `bytes`: from the packets, copied from files held here, left as
    /// holes ([`assemble::Assembled`]).
    pub from_packets: u64,
    pub copied: u64,
    pub holes: u64,
    /// Files staged but not fsynced yet, and the staging folder (`None`:
    /// nothing was staged): [`Staged::make_durable`], before the journal
    /// that names them commits.
    pub unsynced: Vec<PathBuf>,
    pub folder: Option<PathBuf>,
}

impl Staged {
    /// Fsyncs what staging left unsynced, then the staging folder and
    /// the state folder that holds its name (staging made it).
    pub fn make_durable(&self) -> Result<()> {
        assemble::fsync_all(&self.unsynced)?;
        let Some(folder) = &self.folder else {
            return Ok(());
        };
        sync_dir(folder).at(folder)?;
        match folder.parent() {
            Some(state_dir) => sync_dir(state_dir).at(state_dir),
            None => Ok(()),
        }
    }
}

/// The packed pieces ([`crate::tree::chunking::pack_pieces`]) of every
/// chunk staged, for the state database: the table `batch.pieces` of the
/// batch's scratch database, which the commit copies into the state
/// ([`crate::store::state::put_chunk_pieces_from`]) rather than a list in
/// memory (one for each chunk of new content).
pub(crate) struct Pieces<'a> {
    file: &'a Path,
}

impl<'a> Pieces<'a> {
    /// An empty table `batch.pieces` (`file` is the scratch database's,
    /// for errors).
    pub fn create(conn: &rusqlite::Connection, file: &'a Path) -> Result<Pieces<'a>> {
        let pieces = Pieces { file };
        conn.execute_batch(
            "DROP TABLE IF EXISTS batch.pieces;
             CREATE TABLE batch.pieces (chunk BLOB PRIMARY KEY, pieces BLOB NOT NULL);",
        )
        .map_err(|e| pieces.write_error(e))?;
        Ok(pieces)
    }

    fn write_error(&self, e: rusqlite::Error) -> Error {
        super::batch::write_error(
            self.file,
            e,
            || "noting the pieces of the chunks staged".to_string(),
            |e| Error::CorruptState {
                path: self.file.to_path_buf(),
                what: format!("pieces of the chunks of the batch: {e}"),
            },
        )
    }

    fn put(&self, conn: &rusqlite::Connection, id: &ChunkId, packed: &[u8]) -> Result<()> {
        conn.prepare_cached("INSERT OR IGNORE INTO batch.pieces (chunk, pieces) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(rusqlite::params![id.as_slice(), packed]))
            .map(drop)
            .map_err(|e| self.write_error(e))
    }
}

/// Step (b): writes every new file under `.syncreplica/staging/<n>`,
/// fsynced but for the last page of files and the folders
/// ([`Staged::make_durable`], which the commit waits for). Returns what
/// it wrote. On an error (other than an injected crash) the staging
/// folder is removed again.
pub(crate) fn stage(
    replica: &Replica,
    plan: &Plan,
    source: &mut dyn ChunkSource,
    hooks: &mut ApplyHooks,
) -> Result<Staged> {
    if plan.jobs.is_empty() {
        return Ok(Staged::default());
    }
    let staging = replica.state_dir().join(STAGING_DIR);
    let result = stage_all(replica, plan, source, hooks, &staging);
    if let Err(err) = &result {
        if !is_injected_crash(err) {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    result
}

fn stage_all(
    replica: &Replica,
    plan: &Plan,
    source: &mut dyn ChunkSource,
    hooks: &mut ApplyHooks,
    staging: &Path,
) -> Result<Staged> {
    std::fs::create_dir_all(staging).at(staging)?;
    let confined = ConfinedRoot::open(&replica.root)?;
    let tree = TreeChunks {
        confined: &confined,
        recorded: &plan.recorded,
        index: std::sync::OnceLock::new(),
    };
    // The packet's reader looks in the tree itself; what it asks of the
    // staging thread is then looked for only beyond the tree.
    let nearby = |chunk: &ChunkRef| tree.find(chunk);
    let local = std::cell::RefCell::new(LocalFinder {
        root: &replica.root,
        tree: &tree,
        soft_deleted: None,
        state: replica.state(),
        copies_of: &plan.copies_of,
        history: None,
    });
    let conn = replica.state().conn();
    let jobs = &plan.jobs;
    let pieces = Pieces::create(conn, plan.entries.file())?;
    // Each distinct chunk is counted once, as `on_chunk` sees it.
    let content = jobs.distinct_bytes(conn)?;
    let _staging = crate::sys::progress::phase(
        "writing new content",
        crate::sys::progress::Unit::Bytes,
        Some(content),
    );
    let cut =
        |bytes: &[u8]| crate::tree::chunking::pack_pieces(&crate::tree::chunking::pieces(bytes));
    // The pieces are cut on a thread of their own, and recorded here as
    // they come back: cut here, they were a fifth of this thread's work
    // while the packet's reader left the other core half idle.
    let (to_cut, waiting) = std::sync::mpsc::sync_channel::<(ChunkId, Vec<u8>)>(PIECES_AHEAD);
    let (cut_one, cut_ones) = std::sync::mpsc::channel::<(ChunkId, Vec<u8>)>();
    std::thread::scope(|scope| {
        let cutter = std::thread::Builder::new()
            .name("cut-pieces".into())
            .spawn_scoped(scope, move || {
                for (id, bytes) in waiting {
                    if cut_one.send((id, cut(&bytes))).is_err() {
                        return;
                    }
                }
            });
        // Without the thread (it could not start, or it is gone), here.
        let mut to_cut = cutter.is_ok().then_some(to_cut);
        let written = stage_files(
            conn,
            plan,
            staging,
            source,
            hooks,
            &nearby,
            &local,
            &mut |id: &ChunkId, bytes: &[u8]| {
                crate::sys::progress::advance(bytes.len() as u64);
                if let Some(sender) = &to_cut {
                    if sender.send((*id, bytes.to_vec())).is_ok() {
                        while let Ok((id, packed)) = cut_ones.try_recv() {
                            pieces.put(conn, &id, &packed)?;
                        }
                        return Ok(());
                    }
                    to_cut = None;
                }
                pieces.put(conn, id, &cut(bytes))
            },
        );
        // The thread ends once it has cut what it was sent.
        drop(to_cut);
        if let Ok(cutter) = cutter {
            if let Err(panic) = cutter.join() {
                std::panic::resume_unwind(panic);
            }
        }
        let written = written?;
        for (id, packed) in cut_ones.try_iter() {
            pieces.put(conn, &id, &packed)?;
        }
        Ok(Staged {
            bytes: written.bytes,
            from_packets: written.from_source,
            copied: written.copied,
            holes: written.holes,
            unsynced: written.unsynced,
            folder: Some(staging.to_path_buf()),
        })
    })
}

/// Chunks sent to be cut into pieces and not cut yet, at most: a few
/// megabytes of copies.
const PIECES_AHEAD: usize = 32;

/// [`assemble::write_files`] of the plan's jobs into `staging`, each new
/// chunk given to `on_chunk`.
#[allow(clippy::too_many_arguments)]
fn stage_files(
    conn: &rusqlite::Connection,
    plan: &Plan,
    staging: &Path,
    source: &mut dyn ChunkSource,
    hooks: &mut ApplyHooks,
    nearby: &super::NearbyChunks,
    local: &std::cell::RefCell<LocalFinder>,
    on_chunk: &mut dyn FnMut(&ChunkId, &[u8]) -> Result<()>,
) -> Result<assemble::Assembled> {
    assemble::write_files(
        conn,
        &plan.jobs,
        staging,
        source,
        Options {
            on_chunk: Some(on_chunk),
            nearby: Some((nearby, &mut |chunk| {
                local.borrow_mut().find_beyond_tree(chunk)
            })),
            elsewhere: &mut |chunk| local.borrow_mut().find(chunk),
            missing: &|chunk, rel| {
                Error::Refused(Refusal::MissingContent {
                    chunk: hex::encode(chunk.id),
                    path: relpath::display(rel),
                    // A conflict copy's content is asked for under the
                    // path whose version it keeps: the sender has that one.
                    rel: plan.copies_of.get(rel).map_or(rel, Vec::as_slice).to_vec(),
                })
            },
            fsync: assemble::Fsync::EachButLastPage,
            after_file: &mut || hooks.step("staged a file"),
        },
    )
}

/// Chunk id -> the places (path, offset) it was at in the logged versions
/// of some paths ([`index_history`]).
type LocalIndex = HashMap<ChunkId, Vec<(Vec<u8>, u64)>>;

/// Finds chunks in the recorded files of the tree, verified against the
/// id; shared by the thread that reads a packet ahead (for the bases of
/// its recipes) and the one that stages.
struct TreeChunks<'a> {
    confined: &'a ConfinedRoot,
    recorded: &'a crate::store::state::Entries,
    /// (chunk id, path, offset) of every recorded file's chunks, sorted by
    /// id, built on first use. One sorted list borrowing the paths, not a
    /// map of cloned paths: for 20,000 files, building and freeing the map
    /// was 30 ms of a 1 % edit's import (`bench/sync_vs_rsync.sh`).
    index: std::sync::OnceLock<Vec<(ChunkId, &'a [u8], u64)>>,
}

impl TreeChunks<'_> {
    /// The chunk's bytes from the first recorded place that still holds
    /// them; `None` if none does.
    fn find(&self, chunk: &ChunkRef) -> Option<Vec<u8>> {
        let index = self.index.get_or_init(|| {
            let mut index = Vec::new();
            for (path, entry) in self.recorded {
                if let PathState::File { chunks, .. } = &entry.state {
                    let mut offset = 0;
                    for c in chunks {
                        index.push((c.id, path.as_slice(), offset));
                        offset += u64::from(c.len);
                    }
                }
            }
            // Stable: the places of one chunk keep the order they had.
            index.sort_by_key(|(id, _, _)| *id);
            index
        });
        let first = index.partition_point(|(id, _, _)| *id < chunk.id);
        index[first..]
            .iter()
            .take_while(|(id, _, _)| *id == chunk.id)
            .find_map(|(_, path, offset)| read_in_tree(self.confined, path, *offset, chunk))
    }
}

/// Finds the chunks a packet does not carry in a file this replica has,
/// or among its soft-deleted files; always verified against the id.
struct LocalFinder<'a> {
    root: &'a Path,
    tree: &'a TreeChunks<'a>,
    /// Chunk id -> (file, offset) among soft-deleted files, built on first
    /// use: a version an earlier import replaced may be what a conflict
    /// copy or a rename needs now.
    soft_deleted: Option<HashMap<ChunkId, (PathBuf, u64)>>,
    /// For the earlier versions (in the log) of the paths this batch
    /// writes: chunk id -> (path, offset in that version).
    state: &'a crate::store::state::State,
    copies_of: &'a HashMap<Vec<u8>, Vec<u8>>,
    /// Built on the first chunk found nowhere else.
    history: Option<LocalIndex>,
}

fn verified(chunk: &ChunkRef, bytes: &[u8]) -> bool {
    bytes.len() == chunk.len as usize && Sha256::digest(bytes).as_slice() == chunk.id
}

fn read_at(path: &Path, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    read_from(file, offset, len)
}

fn read_from(mut file: File, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0; len as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

impl<'a> LocalFinder<'a> {
    /// The chunk's bytes, verified; `None` if no file here holds it.
    fn find(&mut self, chunk: &ChunkRef) -> Option<Vec<u8>> {
        self.tree
            .find(chunk)
            .or_else(|| self.find_beyond_tree(chunk))
    }

    /// As [`LocalFinder::find`], past the recorded files of the tree
    /// (where `TreeChunks` looked already): soft-deleted files, then the
    /// places of the logged versions of the batch's paths.
    fn find_beyond_tree(&mut self, chunk: &ChunkRef) -> Option<Vec<u8>> {
        let root = self.root;
        let deleted = self
            .soft_deleted
            .get_or_insert_with(|| index_soft_deleted(root));
        if let Some((path, offset)) = deleted.get(&chunk.id) {
            if let Ok(bytes) = read_at(path, *offset, chunk.len) {
                if verified(chunk, &bytes) {
                    return Some(bytes);
                }
            }
        }
        // A version the sender relied on that a local edit here replaced
        // since (both members changed the file: the packet's version is
        // given against the one they shared): the bytes of that version
        // often still stand at the same place in the file (an append, an
        // edit further on), checked against the id as always. Without
        // this the packet would be refused and the conflict take rounds.
        let (state, copies_of) = (self.state, self.copies_of);
        let history = self
            .history
            .get_or_insert_with(|| index_history(state, copies_of).unwrap_or_default());
        let spots = history
            .get(&chunk.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Listed once per chunk, not once per place it may be.
        let days = match spots.is_empty() {
            true => Vec::new(),
            false => soft_deleted_days(self.root),
        };
        for (path, offset) in spots {
            if let Some(bytes) = read_in_tree(self.tree.confined, path, *offset, chunk) {
                return Some(bytes);
            }
            // Or in the copy set aside under `.syncreplica/deleted/<day>/`
            // (a mirror sets a local edit aside before the import).
            for day in &days {
                let copy = day.join(std::ffi::OsStr::from_bytes(path));
                if let Ok(bytes) = read_at(&copy, *offset, chunk.len) {
                    if verified(chunk, &bytes) {
                        return Some(bytes);
                    }
                }
            }
        }
        None
    }
}

/// `chunk`'s bytes at `offset` in the tree's file `path`, if they are
/// what its id says.
fn read_in_tree(
    confined: &ConfinedRoot,
    path: &[u8],
    offset: u64,
    chunk: &ChunkRef,
) -> Option<Vec<u8>> {
    let bytes = confined
        .open_file(path)
        .and_then(|file| read_from(file, offset, chunk.len))
        .ok()?;
    verified(chunk, &bytes).then_some(bytes)
}

/// The folders of `.syncreplica/deleted/`, newest first.
fn soft_deleted_days(root: &Path) -> Vec<PathBuf> {
    let dir = root.join(crate::store::layout::STATE_DIR).join(DELETED_DIR);
    let mut days: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    days.sort();
    days.reverse();
    days
}

/// Where the chunks of the logged file versions of the paths this batch
/// writes (a conflict copy counts as the path whose version it keeps)
/// were, by path and offset. Only the log's operations that name one of
/// those paths are decoded.
fn index_history(
    state: &crate::store::state::State,
    copies_of: &HashMap<Vec<u8>, Vec<u8>>,
) -> Result<LocalIndex> {
    let mut paths: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    {
        let mut statement = state
            .conn()
            .prepare("SELECT rel FROM batch.targets")
            .map_err(|e| Error::CorruptState {
                path: PathBuf::from("batch"),
                what: e.to_string(),
            })?;
        let rels = statement
            .query_map([], |row| row.get::<_, Vec<u8>>(0))
            .map_err(|e| Error::CorruptState {
                path: PathBuf::from("batch"),
                what: e.to_string(),
            })?;
        for rel in rels.flatten() {
            paths.insert(copies_of.get(&rel).cloned().unwrap_or(rel));
        }
    }
    let mut index = LocalIndex::new();
    let names: Vec<&Vec<u8>> = paths.iter().filter(|p| !p.is_empty()).collect();
    if names.is_empty() {
        return Ok(index);
    }
    let finder = aho_corasick::AhoCorasick::new(&names).ok();
    let wanted = |bytes: &[u8]| finder.as_ref().is_none_or(|f| f.is_match(bytes));
    state.for_each_operation_where(wanted, |op| {
        let Some(change) = op.change.path_change() else {
            return;
        };
        if !paths.contains(change.path.as_slice()) {
            return;
        }
        if let PathState::File { chunks, .. } = change.state {
            let mut offset = 0;
            for c in chunks {
                let spots = index.entry(c.id).or_default();
                if !spots.contains(&(change.path.clone(), offset)) {
                    spots.push((change.path.clone(), offset));
                }
                offset += u64::from(c.len);
            }
        }
    })?;
    Ok(index)
}

/// Chunks of every file under `.syncreplica/deleted/`, cut the way the scan
/// cuts files, so the ids match those of the versions they were.
fn index_soft_deleted(root: &Path) -> HashMap<ChunkId, (PathBuf, u64)> {
    let mut index = HashMap::new();
    let mut pending = vec![root.join(crate::store::layout::STATE_DIR).join(DELETED_DIR)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let Ok(file) = std::fs::File::open(&path) else {
                    continue;
                };
                let mut offset = 0u64;
                let _ = crate::tree::chunking::chunk_stream(file, |chunk, _| {
                    index.entry(chunk.id).or_insert((path.clone(), offset));
                    offset += u64::from(chunk.len);
                    Ok(())
                });
            }
        }
    }
    index
}

/// A disk action that could not be done because the tree changed since
/// the batch was planned; it is skipped (never forced) and reported.
fn skipped(notes: &mut Vec<String>, rel: &[u8], why: &str) {
    notes.push(format!(
        "{}: left as it is: {why} (changed during the import)",
        relpath::display(rel)
    ));
}

fn file_type(place: &Place) -> Result<Option<FileType>> {
    Ok(place
        .stat()?
        .map(|stat| FileType::from_raw_mode(stat.st_mode)))
}

fn lstat(path: &Path) -> Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::io(path, err)),
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).to_path_buf()
}

/// A journal action that failed for good: not retried (see the module
/// documentation of [`super`], rule 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub path: Vec<u8>,
    /// The step, in words.
    pub step: String,
    /// The error, in words.
    pub error: String,
}

/// At most this many folders the journal changed wait in memory to be
/// fsynced ([`execute`]); then they are fsynced, and forgotten.
pub(crate) const TOUCHED_HELD: usize = 4096;

/// The actions that failed while the journal ran: the first
/// [`FAILURES_HELD`] in memory, the rest on disk in the staging folder
/// (`staging/failures.db`, a scratch database gone with it), since a
/// packet can make every one of a million steps fail (a full disk). Made
/// anew by each run of the journal (a run after a crash tries every
/// action again).
#[derive(Default)]
pub(crate) struct Failures {
    held: Vec<Failure>,
    held_paths: std::collections::HashSet<Vec<u8>>,
    /// The rest, once there are more: the scratch database and its file.
    spilled: Option<(rusqlite::Connection, PathBuf)>,
    /// Where the scratch database goes.
    staging: PathBuf,
    count: u64,
}

impl std::fmt::Debug for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failures")
            .field("held", &self.held)
            .field("count", &self.count)
            .finish()
    }
}

/// Failures held in memory; from the one after, they go to disk.
const FAILURES_HELD: usize = 1024;

/// Failures read back at once by [`Failures::for_each`].
const FAILURES_PAGE: i64 = 1024;

fn failures_error(file: &Path, e: rusqlite::Error) -> Error {
    Error::Database {
        path: file.to_path_buf(),
        cause: e,
    }
}

impl Failures {
    fn new(staging: &Path) -> Failures {
        Failures {
            staging: staging.to_path_buf(),
            ..Failures::default()
        }
    }

    fn spill(staging: &Path) -> Result<(rusqlite::Connection, PathBuf)> {
        let file = staging.join("failures.db");
        let _ = std::fs::remove_file(&file);
        let conn = rusqlite::Connection::open(&file).map_err(|e| failures_error(&file, e))?;
        // Nothing depends on it lasting: it is made again if the journal
        // runs again.
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE;
             CREATE TABLE failed (
                 n INTEGER PRIMARY KEY,
                 path BLOB NOT NULL,
                 step TEXT NOT NULL,
                 error TEXT NOT NULL
             );
             CREATE INDEX failed_path ON failed (path);",
        )
        .map_err(|e| failures_error(&file, e))?;
        Ok((conn, file))
    }

    fn push(&mut self, failure: Failure) -> Result<()> {
        self.count += 1;
        if self.held.len() < FAILURES_HELD {
            self.held_paths.insert(failure.path.clone());
            self.held.push(failure);
            return Ok(());
        }
        if self.spilled.is_none() {
            self.spilled = Some(Failures::spill(&self.staging)?);
        }
        let (conn, file) = self.spilled.as_ref().expect("made above");
        conn.prepare_cached("INSERT INTO failed (path, step, error) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute((&failure.path, &failure.step, &failure.error)))
            .map_err(|e| failures_error(file, e))?;
        Ok(())
    }

    /// Whether a step on `path` failed.
    fn has(&self, path: &[u8]) -> Result<bool> {
        if self.held_paths.contains(path) {
            return Ok(true);
        }
        let Some((conn, file)) = &self.spilled else {
            return Ok(false);
        };
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM failed WHERE path = ?1)")
            .and_then(|mut s| s.query_row([path], |row| row.get(0)))
            .map_err(|e| failures_error(file, e))
    }

    /// Each failure in the order they came, those on disk read a page at
    /// a time.
    pub fn for_each<E: From<Error>>(
        &self,
        mut f: impl FnMut(&Failure) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        for failure in &self.held {
            f(failure)?;
        }
        let Some((conn, file)) = &self.spilled else {
            return Ok(());
        };
        let mut after = 0i64;
        loop {
            let page: Vec<(i64, Vec<u8>, String, String)> = conn
                .prepare_cached(
                    "SELECT n, path, step, error FROM failed WHERE n > ?1 ORDER BY n LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map((after, FAILURES_PAGE), |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })?
                    .collect()
                })
                .map_err(|e| E::from(failures_error(file, e)))?;
            let Some(last) = page.last().map(|row| row.0) else {
                return Ok(());
            };
            after = last;
            for (_, path, step, error) in page {
                f(&Failure { path, step, error })?;
            }
        }
    }
}

/// What running the journal did besides its actions.
#[derive(Debug)]
pub(crate) struct Executed {
    /// Actions that failed.
    pub failures: Failures,
    /// Metadata this replica keeps but could not apply, by item.
    pub unapplied: crate::tree::meta::Unapplied,
}

/// Step (d): runs the journal, then fsyncs the directories it changed.
/// An action that fails is recorded in [`Executed::failures`] (anything
/// it had moved aside is put back, or kept) and the others run on: one
/// step that cannot be done never stops the rest, nor the replica. Only
/// a crash injected by a test, and a state folder that cannot be
/// written, stop it. Actions skipped because the tree changed meanwhile,
/// and versions kept as conflict copies, are noted in `lines`.
pub(crate) fn execute(
    replica: &Replica,
    actions: &mut dyn Iterator<Item = Result<(u64, Action)>>,
    hooks: &mut ApplyHooks,
    lines: &mut super::lines::Lines,
) -> Result<Executed> {
    let confined = ConfinedRoot::open(&replica.root)?;
    let state_dir = replica.state_dir();
    let staging = state_dir.join(STAGING_DIR);
    // Folders the actions changed, fsynced before the journal is done:
    // a page of [`TOUCHED_HELD`] at a time, so that a packet changing a
    // million folders does not hold a million paths (a folder fsynced
    // early and changed again later is fsynced again).
    let mut touched = BTreeSet::new();
    let mut notes = Vec::new();
    // What the actions replace or remove is moved aside there first (see
    // `displace`), so it can be compared with what the plan saw.
    std::fs::create_dir_all(&staging).at(&staging)?;
    let ctx = Context {
        confined: &confined,
        state_dir: &state_dir,
        staging: &staging,
        replica_name: &replica.identity.replica_name,
        hook: hooks.before_resolve.clone(),
        kept_in: Default::default(),
        preserve: replica.preserve(),
        names: Default::default(),
        unapplied: Default::default(),
    };
    // Paths one of whose steps failed (looked up there): their later
    // steps (the metadata and time that follow a placement) are skipped,
    // so the path keeps its older version whole, as its restored entry
    // says; otherwise the old file would get the new version's time and
    // the next scan would take it for a local change.
    let mut failures = Failures::new(&staging);
    for next in actions {
        let (seq, action) = next?;
        let (seq, action) = (seq as usize, &action);
        if failures.has(action.path())? {
            hooks.step("ran a journal action")?;
            continue;
        }
        let ran = run(&ctx, seq, action, &mut touched, &mut notes);
        for note in notes.drain(..) {
            lines.conflict(note)?;
        }
        if let Err(err) = ran {
            if is_injected_crash(&err) {
                return Err(err);
            }
            put_back_displaced(&ctx, seq, action.path());
            failures.push(Failure {
                path: action.path().to_vec(),
                step: action.step().to_string(),
                error: err.to_string(),
            })?;
        }
        if touched.len() >= TOUCHED_HELD {
            sync_dirs(&confined, std::mem::take(&mut touched), &[], &mut failures)?;
        }
        hooks.step("ran a journal action")?;
    }
    // A folder whose mode is put back is fsynced after that, whether or
    // not it was already (its mode is its own inode's).
    restore_dir_modes(&confined, &staging, &mut touched, &mut failures)?;
    // Before the journal is marked done: a kept version whose rename a
    // crash lost is still aside in staging, and is kept from there
    // (`keep_leftovers`). The tree's folders and the kept versions'
    // folders are fsynced in one parallel run: most of them wait for the
    // same journal commit, where two runs one after the other wait for two.
    let kept_in: Vec<PathBuf> = ctx.kept_in.take().into_iter().collect();
    sync_dirs(&confined, touched, &kept_in, &mut failures)?;
    Ok(Executed {
        failures,
        unapplied: ctx.unapplied.take(),
    })
}

/// After action `seq` on `rel` failed: what it had moved aside goes back
/// to `rel` if nothing is there, so the path holds what it held before.
/// Anything else stays aside and is kept with the soft-deleted files when
/// the staging folder goes (`keep_leftovers`).
fn put_back_displaced(ctx: &Context, seq: usize, rel: &[u8]) {
    let aside = ctx.aside(seq);
    let Ok(Located::At(place)) = ctx.confined.locate(rel, false) else {
        return;
    };
    // A temporary copy this action made beside the path goes (it is
    // noted as ours; anything else under that name is left alone).
    let marker = temp_marker(&aside);
    if let Ok(Some((dev, ino))) = read_temp_marker(&marker) {
        let temp = OsStr::new(TEMP_NEW_FILE);
        if let Ok(Some(stat)) = place.stat_sibling(temp) {
            if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                && (stat.st_dev, stat.st_ino) == (dev, ino)
            {
                let _ = place.remove_sibling(temp);
            }
        }
        let _ = std::fs::remove_file(&marker);
    }
    if lstat(&aside).ok().flatten().is_some() && place.rename_in_new(&aside).is_ok() {
        let _ = std::fs::remove_file(changed_marker(&aside));
    }
}

/// Fsyncs the tree's directories the actions changed (relative to the
/// root), each opened beneath the root as a directory, without following
/// a symlink or blocking: one replaced since (by a symlink, a FIFO...) is
/// skipped. One that cannot be synced is a failure of its own.
///
/// With them, the folders of `.syncreplica/deleted/` in `kept_in`: one of
/// those that cannot be synced is an error of the state folder (the
/// kept version's rename may not last), returned after every fsync ran.
fn sync_dirs(
    confined: &ConfinedRoot,
    dirs: BTreeSet<Vec<u8>>,
    kept_in: &[PathBuf],
    failures: &mut Failures,
) -> Result<()> {
    enum Folder<'a> {
        Tree(Vec<u8>),
        Kept(&'a Path),
    }
    let folders: Vec<Folder> = dirs
        .into_iter()
        .map(Folder::Tree)
        .chain(kept_in.iter().map(|folder| Folder::Kept(folder)))
        .collect();
    // Several at once: the journal commits them together.
    let synced =
        crate::sys::fsutil::in_parallel(&folders, crate::sys::fsutil::FSYNC_THREADS, |folder| {
            match folder {
                Folder::Tree(dir) => confined.sync_dir(dir),
                Folder::Kept(folder) => sync_dir(folder).at(folder),
            }
        });
    let mut kept_error = None;
    for (folder, result) in folders.into_iter().zip(synced) {
        match (folder, result) {
            (_, Ok(())) => {}
            (Folder::Tree(dir), Err(err)) => failures.push(Failure {
                path: dir,
                step: "writing the folder to disk (fsync)".to_string(),
                error: err.to_string(),
            })?,
            (Folder::Kept(_), Err(err)) => {
                kept_error.get_or_insert(err);
            }
        }
    }
    kept_error.map_or(Ok(()), Err)
}

/// What every journal action needs.
struct Context<'a> {
    confined: &'a ConfinedRoot,
    state_dir: &'a Path,
    staging: &'a Path,
    /// This replica's name, for conflict copies of local changes.
    replica_name: &'a str,
    hook: Option<crate::tree::confined::ResolveHook>,
    /// What this replica keeps, and what of it could not be applied.
    preserve: crate::tree::meta::Preserve,
    names: std::cell::RefCell<crate::tree::meta::Names>,
    unapplied: std::cell::RefCell<crate::tree::meta::Unapplied>,
    /// Folders of `.syncreplica/deleted/` that kept versions were renamed
    /// into, fsynced once each at the end of the journal (one fsync per
    /// folder, not per kept file).
    kept_in: std::cell::RefCell<BTreeSet<PathBuf>>,
}

impl Context<'_> {
    /// Resolves an action's path: its parent is held as a handle, so what
    /// was checked is what is used (see `tree::confined`). Every caller
    /// changes something there, so the directory that will change is made
    /// writable first if it is read-only (see [`Context::writable`]).
    fn locate(&self, path: &[u8], create: bool) -> Result<Located> {
        let parent = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => &path[..i],
            None => &b""[..],
        };
        // The deepest directory that exists: the one a creation changes.
        let mut dir = parent;
        loop {
            if self.confined.dir_stat(dir)?.is_some() {
                self.writable(dir)?;
                break;
            }
            match dir.iter().rposition(|&b| b == b'/') {
                Some(i) => dir = &dir[..i],
                None if !dir.is_empty() => dir = b"",
                None => break,
            }
        }
        self.confined.locate_with(path, create, self.hook.as_ref())
    }

    /// Makes the directory `rel` writable for its owner if this process
    /// owns it and it is not (an ordinary user's replica may hold a 0555
    /// directory: the importer owns the tree and may change it). The mode
    /// the directory had is noted in the staging folder first, and put
    /// back by [`restore_dir_modes`] once the journal ran, also after a
    /// crash, so a read-only directory never becomes a change of its own.
    fn writable(&self, rel: &[u8]) -> Result<()> {
        let euid = rustix::process::geteuid();
        if euid.is_root() {
            return Ok(());
        }
        let Some(stat) = self.confined.dir_stat(rel)? else {
            return Ok(());
        };
        if stat.st_uid != euid.as_raw() || stat.st_mode & 0o200 != 0 {
            return Ok(());
        }
        let marker = dir_mode_marker(self.staging, rel);
        if lstat(&marker)?.is_none() {
            crate::sys::fsutil::write_atomic(
                &marker,
                format!("{:o}\n{}", stat.st_mode & 0o7777, hex::encode(rel)).as_bytes(),
                0o600,
            )?;
        }
        self.confined
            .set_dir_mode(rel, (stat.st_mode & 0o7777) | 0o700)
    }

    /// Where action `seq` moves what it replaces or removes.
    fn aside(&self, seq: usize) -> PathBuf {
        self.staging.join(format!("displaced-{seq}"))
    }
}

/// Where [`Context::writable`] notes the mode a directory `rel` had: a
/// name of fixed length (a hash of the path), since a directory's path can
/// be far longer than a file name may be. The path itself is in the
/// marker, after the mode.
fn dir_mode_marker(staging: &Path, rel: &[u8]) -> PathBuf {
    let digest = Sha256::digest(rel);
    staging.join(format!("dirmode-{}", hex::encode(&digest[..16])))
}

/// The directory (relative to the root) and mode a marker of
/// [`dir_mode_marker`] notes.
fn read_dir_mode_marker(marker: &Path) -> Result<(Vec<u8>, u32)> {
    let text = std::fs::read_to_string(marker).at(marker)?;
    let corrupt = || Error::CorruptState {
        path: marker.to_path_buf(),
        what: format!("not a mode and a directory: {text:?}"),
    };
    let (mode, rel) = text.split_once('\n').ok_or_else(corrupt)?;
    let mode = u32::from_str_radix(mode.trim(), 8).map_err(|_| corrupt())?;
    let rel = hex::decode(rel.trim()).map_err(|_| corrupt())?;
    Ok((rel, mode))
}

/// Puts back the modes of the directories [`Context::writable`] opened up,
/// unless a journal action set a new one meanwhile (its marker is gone).
/// A mode that cannot be put back is a failure (the marker goes all the
/// same: the journal is not run again for it).
fn restore_dir_modes(
    confined: &ConfinedRoot,
    staging: &Path,
    touched: &mut BTreeSet<Vec<u8>>,
    failures: &mut Failures,
) -> Result<()> {
    let Ok(listing) = std::fs::read_dir(staging) else {
        return Ok(());
    };
    let mut markers: Vec<(Vec<u8>, u32, PathBuf)> = Vec::new();
    for entry in listing.flatten() {
        if entry.file_name().as_bytes().starts_with(b"dirmode-") {
            let marker = entry.path();
            let (rel, mode) = read_dir_mode_marker(&marker)?;
            markers.push((rel, mode, marker));
        }
    }
    // Deepest first: a parent made read-only again would refuse nothing
    // here, but order keeps the intent plain.
    markers.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    for (rel, mode, marker) in markers {
        if let Err(err) = confined.set_dir_mode(&rel, mode) {
            failures.push(Failure {
                path: rel,
                step: "putting the folder's mode back".to_string(),
                error: err.to_string(),
            })?;
        } else {
            touched.insert(rel);
        }
        std::fs::remove_file(&marker).at(&marker)?;
    }
    Ok(())
}

/// Moves what is at `place` (unless it is a directory or nothing) to
/// `aside`, unless an earlier run of the action did. `false` when it cannot
/// be moved there (another filesystem mounted inside the replica). When
/// the file's ctime (which the rename changes) is no longer the one the
/// plan saw, a marker beside `aside` says so to [`settle`].
fn displace(place: &Place, aside: &Path, expect: &Expect) -> Result<bool> {
    if lstat(aside)?.is_some() {
        return Ok(true);
    }
    let Some(before) = place.stat()? else {
        return Ok(true);
    };
    if FileType::from_raw_mode(before.st_mode) == FileType::Directory {
        return Ok(true);
    }
    let changed = changed_marker(aside);
    if !expect.ctime_holds(&before) {
        File::create(&changed).at(&changed)?;
    }
    match place.move_out(aside) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let _ = std::fs::remove_file(&changed);
            Ok(true)
        }
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            let _ = std::fs::remove_file(&changed);
            Ok(false)
        }
        Err(err) => Err(Error::io(place.display_path(), err)),
    }
}

/// Swaps the staged file `from` with what is at `place` (a file, a
/// symlink or a special file; not a directory) in one step
/// (`RENAME_EXCHANGE`), then moves what was there from `from` to `aside`,
/// as [`displace`] would have: for [`settle`] to keep or drop. `false`
/// (nothing done) when nothing is there or the filesystem cannot swap
/// (then [`displace`] and a rename do it in two steps). A marker beside
/// `aside` names the staged file's inode while the swap may have happened
/// and its result is not yet at `aside`: [`finish_exchange`] completes it
/// after a crash.
fn exchange(place: &Place, from: &Path, aside: &Path, expect: &Expect) -> Result<bool> {
    if lstat(aside)?.is_some() {
        return Ok(false);
    }
    let Some(before) = place.stat()? else {
        return Ok(false);
    };
    if FileType::from_raw_mode(before.st_mode) == FileType::Directory {
        return Ok(false);
    }
    let Some(staged) = lstat(from)? else {
        return Ok(false);
    };
    let marker = exchange_marker(aside);
    std::fs::write(
        &marker,
        std::os::unix::fs::MetadataExt::ino(&staged).to_string(),
    )
    .at(&marker)?;
    let changed = changed_marker(aside);
    if !expect.ctime_holds(&before) {
        File::create(&changed).at(&changed)?;
    }
    crate::sys::testhook::crash_point("apply-exchange-before-swap");
    let swapped = rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        place.parent(),
        place.name(),
        rustix::fs::RenameFlags::EXCHANGE,
    );
    match swapped {
        Ok(()) => {
            crate::sys::testhook::crash_point("apply-exchange-after-swap");
            finish_exchange(from, aside)?;
            Ok(true)
        }
        // Not supported here, another filesystem, or the name went
        // meanwhile: the two-step way decides.
        Err(_) => {
            let _ = std::fs::remove_file(&changed);
            std::fs::remove_file(&marker).at(&marker)?;
            Ok(false)
        }
    }
}

fn exchange_marker(aside: &Path) -> PathBuf {
    let mut name = aside.as_os_str().to_owned();
    name.push(".exchange");
    PathBuf::from(name)
}

/// Completes an [`exchange`] a crash interrupted: when `from` holds
/// another inode than the staged file the marker names, the swap happened
/// and `from` holds what was at the name: moved to `aside`.
fn finish_exchange(from: &Path, aside: &Path) -> Result<()> {
    let marker = exchange_marker(aside);
    let Ok(text) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let staged: Option<u64> = text.trim().parse().ok();
    if let Some(found) = lstat(from)? {
        if Some(std::os::unix::fs::MetadataExt::ino(&found)) != staged && lstat(aside)?.is_none() {
            std::fs::rename(from, aside).at(aside)?;
        }
    }
    std::fs::remove_file(&marker).at(&marker)
}

fn changed_marker(aside: &Path) -> PathBuf {
    let mut name = aside.as_os_str().to_owned();
    name.push(".changed");
    PathBuf::from(name)
}

/// Settles what [`displace`] moved aside for the action on `rel`: the
/// version the plan expected is dropped (a copy was kept before, where the
/// plan wanted one); anything else is a local change made during the
/// import and is kept, beside `rel` as a conflict copy (`put_back`: at
/// `rel` itself, when the action only removed it).
fn settle(
    ctx: &Context,
    rel: &[u8],
    aside: &Path,
    expect: &Expect,
    keep: Option<&[u8]>,
    put_back: bool,
    notes: &mut Vec<String>,
) -> Result<()> {
    let stat = match rustix::fs::lstat(aside) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(errno) => return Err(Error::io(aside, errno.into())),
    };
    let marker = changed_marker(aside);
    let ctime_changed = lstat(&marker)?.is_some();
    let outcome = settle_found(
        ctx,
        rel,
        aside,
        &stat,
        expect,
        !ctime_changed,
        keep,
        put_back,
        notes,
    );
    if ctime_changed && outcome.is_ok() {
        std::fs::remove_file(&marker).at(&marker)?;
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
fn settle_found(
    ctx: &Context,
    rel: &[u8],
    aside: &Path,
    stat: &rustix::fs::Stat,
    expect: &Expect,
    ctime_held: bool,
    keep: Option<&[u8]>,
    put_back: bool,
    notes: &mut Vec<String>,
) -> Result<()> {
    if ctime_held && expect.holds_moved(stat) && expect.holds_link(aside) {
        if let Some(keep) = keep {
            return keep_version(
                ctx,
                aside,
                stat,
                &ctx.state_dir.join(OsStr::from_bytes(keep)),
            );
        }
        return std::fs::remove_file(aside).at(aside);
    }
    if put_back {
        if let Located::At(place) = ctx.locate(rel, true)? {
            match place.rename_in_new(aside) {
                Ok(()) => {
                    notes.push(format!(
                        "{}: changed here during the import; the local version is kept",
                        relpath::display(rel)
                    ));
                    return Ok(());
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(Error::io(place.display_path(), err)),
            }
        }
    }
    keep_as_conflict_copy(ctx, rel, aside, stat_mtime(stat), notes)
}

/// Keeps the replaced version `aside` as `target` (soft-deleted): renamed
/// when `aside` is the file's only name, copied when the file has other
/// names in the tree (a later edit through them must not reach the kept
/// version).
fn keep_version(ctx: &Context, aside: &Path, stat: &rustix::fs::Stat, target: &Path) -> Result<()> {
    let folder = parent_of(target);
    std::fs::create_dir_all(&folder).at(&folder)?;
    if lstat(target)?.is_none() {
        if stat.st_nlink > 1 {
            let mut partial = target.to_path_buf().into_os_string();
            partial.push(".partial");
            let partial = PathBuf::from(partial);
            let mut from = File::open(aside).at(aside)?;
            let mtime = from.metadata().and_then(|m| m.modified()).at(aside)?;
            let mut copy = File::create(&partial).at(&partial)?;
            std::io::copy(&mut from, &mut copy).at(&partial)?;
            copy.set_modified(mtime).at(&partial)?;
            copy.sync_all().at(&partial)?;
            std::fs::rename(&partial, target).at(target)?;
        } else {
            std::fs::rename(aside, target).at(target)?;
            ctx.kept_in.borrow_mut().insert(folder);
            return Ok(());
        }
        ctx.kept_in.borrow_mut().insert(folder);
    }
    std::fs::remove_file(aside).at(aside)
}

/// Tries the conflict-copy names beside `rel` (`NAME.sync-conflict-…`,
/// then `.1`, `.2`…) until `take` moves the local version to one that
/// nothing holds; says where it went. `false` when no name can be used
/// (the directory is gone or blocked).
fn take_conflict_name(
    ctx: &Context,
    rel: &[u8],
    mtime: Timestamp,
    create: bool,
    notes: &mut Vec<String>,
    mut take: impl FnMut(&Place) -> std::io::Result<()>,
) -> Result<bool> {
    let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => (&b""[..], rel),
    };
    let base = super::conflict_copy_name(name, Some(mtime), ctx.replica_name);
    for attempt in 0..1000u32 {
        let mut copy = parent.to_vec();
        copy.extend_from_slice(&base);
        if attempt > 0 {
            copy.extend_from_slice(format!(".{attempt}").as_bytes());
        }
        if relpath::lexical_problem(&copy).is_some()
            || !relpath::fits_below(ctx.confined.root(), &copy)
        {
            // No name beside it (too long): kept with the soft-deleted
            // files instead.
            return Ok(false);
        }
        let Located::At(place) = ctx.locate(&copy, create)? else {
            return Ok(false);
        };
        match take(&place) {
            Ok(()) => {
                notes.push(format!(
                    "{}: changed here during the import; the local version is kept as {}",
                    relpath::display(rel),
                    relpath::display(&copy)
                ));
                return Ok(true);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(Error::io(place.display_path(), err)),
        }
    }
    Ok(false)
}

/// Moves `aside` (a local version made during the import) into the tree
/// beside `rel`, under a conflict-copy name no file has yet, and says so.
fn keep_as_conflict_copy(
    ctx: &Context,
    rel: &[u8],
    aside: &Path,
    mtime: Timestamp,
    notes: &mut Vec<String>,
) -> Result<()> {
    let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
    let moved = take_conflict_name(ctx, rel, mtime, true, notes, |place| {
        place.rename_in_new(aside)
    })?;
    if moved {
        return Ok(());
    }
    // Nowhere in the tree to put it (its directory went away): it is kept
    // with the soft-deleted files of the day, which the import never purges
    // early.
    let day = chrono::Utc::now().format("%Y%m%d").to_string();
    let folder = ctx.state_dir.join(DELETED_DIR).join(day);
    std::fs::create_dir_all(&folder).at(&folder)?;
    // Shortened, so that the suffixes keep it within a file name's length.
    let name = &name[..name.len().min(200)];
    let kept = unique_in(
        &folder,
        &format!(
            "{}.local-{}",
            String::from_utf8_lossy(name),
            aside
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ),
    );
    rename_new(aside, &kept)?;
    notes.push(format!(
        "{}: changed here during the import; the local version is kept as {}",
        relpath::display(rel),
        kept.display()
    ));
    Ok(())
}

/// A name in `folder` starting with `base` that nothing has yet.
fn unique_in(folder: &Path, base: &str) -> PathBuf {
    let mut candidate = folder.join(base);
    let mut n = 1;
    while candidate.symlink_metadata().is_ok() {
        candidate = folder.join(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Renames `from` to `to` (both in the state folder) unless something is
/// at `to`: a kept version never replaces another.
fn rename_new(from: &Path, to: &Path) -> Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .or_else(|errno| match errno {
        rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS if to.symlink_metadata().is_err() => {
            rustix::fs::rename(from, to)
        }
        other => Err(other),
    })
    .map_err(|e| Error::io(to, e.into()))
}

/// Moves what an interrupted action left aside and nothing settled
/// (`displaced-N`) to the soft-deleted files of the day before the staging
/// folder goes: a version moved aside is never deleted with it.
pub(crate) fn keep_leftovers(staging: &Path, state_dir: &Path) -> Result<()> {
    let Ok(listing) = std::fs::read_dir(staging) else {
        return Ok(());
    };
    let day = chrono::Utc::now().format("%Y%m%d").to_string();
    let folder = state_dir.join(DELETED_DIR).join(day);
    for entry in listing.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_aside = name.starts_with("displaced-")
            && !name.ends_with(".changed")
            && !name.ends_with(".temp");
        if is_aside {
            std::fs::create_dir_all(&folder).at(&folder)?;
            let kept = unique_in(&folder, &format!("left-by-import.{name}"));
            rename_new(&entry.path(), &kept)?;
        }
    }
    Ok(())
}

/// Without a place aside (another filesystem mounted inside the replica):
/// a local change found at `place` is renamed to a conflict copy in its own
/// directory before the action goes on.
fn guard_in_place(
    ctx: &Context,
    rel: &[u8],
    place: &Place,
    expect: &Expect,
    notes: &mut Vec<String>,
) -> Result<()> {
    let stat = place.stat()?;
    let same_link = match expect {
        Expect::Symlink { target_hash } => place
            .read_link()
            .is_ok_and(|target| Expect::hash_target(&target) == *target_hash),
        _ => true,
    };
    if stat.is_none() || (expect.holds(stat.as_ref()) && same_link) {
        return Ok(());
    }
    let mtime = stat.as_ref().map_or(Timestamp::default(), stat_mtime);
    let moved = take_conflict_name(ctx, rel, mtime, false, notes, |target| {
        place.rename_sibling_new(place.name(), target.name())
    })?;
    if moved {
        return Ok(());
    }
    // Nothing may replace a local version that cannot be kept.
    Err(Error::io(
        place.display_path(),
        std::io::Error::other("changed here during the import and no conflict-copy name is free"),
    ))
}

fn run(
    ctx: &Context,
    seq: usize,
    action: &Action,
    touched: &mut BTreeSet<Vec<u8>>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let staging = ctx.staging;
    let locate = |path: &[u8], create: bool| ctx.locate(path, create);
    match action {
        Action::RemoveFile { path, expect, keep } => {
            let aside = ctx.aside(seq);
            // What an interrupted run moved aside is settled first, whatever
            // the tree looks like now.
            settle(ctx, path, &aside, expect, keep.as_deref(), true, notes)?;
            if let Located::At(place) = locate(path, false)? {
                if file_type(&place)? != Some(FileType::RegularFile) {
                    return Ok(());
                }
                if displace(&place, &aside, expect)? {
                    settle(ctx, path, &aside, expect, keep.as_deref(), true, notes)?;
                } else if expect.holds(place.stat()?.as_ref()) {
                    place
                        .remove(false)
                        .map_err(|e| Error::io(place.display_path(), e))?;
                } else {
                    skipped(notes, path, "it was changed here");
                }
                touched.insert(place.parent_rel().to_vec());
            }
        }
        Action::RemoveSpecial { path } => {
            if let Located::At(place) = locate(path, false)? {
                if file_type(&place)?
                    .is_some_and(|t| t != FileType::Directory && t != FileType::RegularFile)
                {
                    place
                        .remove(false)
                        .map_err(|e| Error::io(place.display_path(), e))?;
                    touched.insert(place.parent_rel().to_vec());
                }
            }
        }
        Action::RemoveDir { path } => {
            if let Located::At(place) = locate(path, false)? {
                if file_type(&place)? == Some(FileType::Directory) {
                    match place.remove(true) {
                        Ok(()) => {
                            touched.insert(place.parent_rel().to_vec());
                        }
                        Err(err)
                            if err.raw_os_error()
                                == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) =>
                        {
                            skipped(notes, path, "the directory is not empty");
                        }
                        Err(err) => return Err(Error::io(place.display_path(), err)),
                    }
                }
            }
        }
        Action::MakeDir { path, mode } => {
            let place = match locate(path, true)? {
                Located::At(place) => place,
                Located::Blocked(why) => {
                    skipped(notes, path, why);
                    return Ok(());
                }
            };
            match place.make_dir(0o700) {
                Ok(()) => {
                    place.set_mode(mode | 0o700)?;
                    touched.insert(place.parent_rel().to_vec());
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    if file_type(&place)? != Some(FileType::Directory) {
                        skipped(notes, path, "something else is there");
                    }
                }
                Err(err) => return Err(Error::io(place.display_path(), err)),
            }
        }
        Action::Place {
            staged,
            path,
            expect,
            keep,
        } => {
            let from = staging.join(staged.to_string());
            let aside = ctx.aside(seq);
            finish_exchange(&from, &aside)?;
            settle(ctx, path, &aside, expect, keep.as_deref(), false, notes)?;
            if lstat(&from)?.is_none() {
                return Ok(());
            }
            let place = match locate(path, true)? {
                Located::At(place) => place,
                Located::Blocked(why) => {
                    skipped(notes, path, why);
                    return Ok(());
                }
            };
            if file_type(&place)? == Some(FileType::Directory) {
                skipped(notes, path, "a directory is there");
                return Ok(());
            }
            let aside = ctx.aside(seq);
            // A version the plan knew of is replaced in one step where the
            // filesystem can: the name never stands empty (a server keeps
            // serving a file during an import that replaces it). Something
            // made where the plan found nothing takes the two-step way,
            // which keeps it and tries again.
            if !matches!(expect, Expect::Absent) && exchange(&place, &from, &aside, expect)? {
                crate::sys::testhook::pause_at_path("apply-after-displacing:", path);
                settle(ctx, path, &aside, expect, keep.as_deref(), false, notes)?;
                touched.insert(place.parent_rel().to_vec());
                return Ok(());
            }
            if !displace(&place, &aside, expect)? {
                // Another filesystem inside the replica: guard, then copy.
                guard_in_place(ctx, path, &place, expect, notes)?;
                copy_into_place(ctx, seq, path, &from, &place, notes)?;
                touched.insert(place.parent_rel().to_vec());
                return Ok(());
            }
            crate::sys::testhook::pause_at_path("apply-after-displacing:", path);
            settle(ctx, path, &aside, expect, keep.as_deref(), false, notes)?;
            // Nothing is at the name now; one created in the meantime is
            // the user's, kept as a conflict copy, and the placement tried
            // again (a few times: a directory made there meanwhile ends it).
            let mut attempts = 0;
            loop {
                attempts += 1;
                match place.rename_in_new(&from) {
                    Ok(()) => break,
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                        if attempts > 5 || file_type(&place)? == Some(FileType::Directory) {
                            skipped(notes, path, "something was made there during the import");
                            return Ok(());
                        }
                        if !displace(&place, &aside, expect)? {
                            guard_in_place(ctx, path, &place, &Expect::Absent, notes)?;
                        }
                        settle(ctx, path, &aside, &Expect::Absent, None, false, notes)?;
                    }
                    Err(err)
                        if err.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) =>
                    {
                        copy_into_place(ctx, seq, path, &from, &place, notes)?;
                        break;
                    }
                    Err(err) => return Err(Error::io(place.display_path(), err)),
                }
            }
            touched.insert(place.parent_rel().to_vec());
        }
        Action::Link {
            path,
            target,
            expect,
            keep,
        } => {
            let aside = ctx.aside(seq);
            settle(ctx, path, &aside, expect, keep.as_deref(), false, notes)?;
            let place = match locate(path, true)? {
                Located::At(place) => place,
                Located::Blocked(why) => {
                    skipped(notes, path, why);
                    return Ok(());
                }
            };
            match place.kind()? {
                DiskKind::Dir(_) => {
                    skipped(notes, path, "a directory is there");
                    return Ok(());
                }
                DiskKind::Symlink(now) if now == *target => return Ok(()),
                _ => {}
            }
            let aside = ctx.aside(seq);
            if !displace(&place, &aside, expect)? {
                guard_in_place(ctx, path, &place, expect, notes)?;
                place
                    .remove(false)
                    .map_err(|e| Error::io(place.display_path(), e))?;
            }
            settle(ctx, path, &aside, expect, keep.as_deref(), false, notes)?;
            let mut attempts = 0;
            loop {
                attempts += 1;
                match place.symlink(target) {
                    Ok(()) => break,
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                        if attempts > 5 || file_type(&place)? == Some(FileType::Directory) {
                            skipped(notes, path, "something was made there during the import");
                            return Ok(());
                        }
                        if !displace(&place, &aside, expect)? {
                            return Err(Error::io(place.display_path(), err));
                        }
                        settle(ctx, path, &aside, &Expect::Absent, None, false, notes)?;
                    }
                    Err(err) => return Err(Error::io(place.display_path(), err)),
                }
            }
            touched.insert(place.parent_rel().to_vec());
        }
        Action::MakeNode {
            path,
            kind,
            mode,
            major,
            minor,
            expect,
            keep,
        } => {
            let aside = ctx.aside(seq);
            settle(ctx, path, &aside, expect, keep.as_deref(), false, notes)?;
            let place = match locate(path, true)? {
                Located::At(place) => place,
                Located::Blocked(why) => {
                    skipped(notes, path, why);
                    return Ok(());
                }
            };
            match place.kind()? {
                DiskKind::Dir(_) => {
                    skipped(notes, path, "a directory is there");
                    return Ok(());
                }
                DiskKind::Missing => {}
                _ => {
                    if !displace(&place, &aside, expect)? {
                        guard_in_place(ctx, path, &place, expect, notes)?;
                        place
                            .remove(false)
                            .map_err(|e| Error::io(place.display_path(), e))?;
                    }
                    settle(ctx, path, &aside, expect, keep.as_deref(), false, notes)?;
                }
            }
            match place.make_node(*kind, *mode, *major, *minor) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    skipped(notes, path, "something was made there during the import");
                    return Ok(());
                }
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    ctx.unapplied
                        .borrow_mut()
                        .note("devices", crate::tree::meta::why_not("devices", &err));
                    return Ok(());
                }
                Err(err) => return Err(Error::io(place.display_path(), err)),
            }
            touched.insert(place.parent_rel().to_vec());
        }
        Action::SetFileMeta {
            path,
            mode,
            mtime,
            expect,
        } => {
            if let Located::At(place) = locate(path, false)? {
                let Some(stat) = place.stat()? else {
                    return Ok(());
                };
                if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                    return Ok(());
                }
                // Setuid/setgid bits are the SetMeta that follows's (after
                // the owner, if at all): left as they are here.
                let mode = &((*mode & 0o1777) | (stat.st_mode & 0o6000));
                let done = stat.st_mode & 0o7777 == *mode & 0o7777 && stat_mtime(&stat) == *mtime;
                if done {
                    return Ok(());
                }
                // The file the plan saw, or that file half-way through this
                // action (a run cut off between the chmod and the utimes,
                // which changed its ctime and maybe its mode).
                let half_done = match *expect {
                    Expect::File {
                        inode,
                        size,
                        mtime_ns: seen,
                        ..
                    } => {
                        stat.st_ino == inode
                            && stat.st_size as u64 == size
                            && stat_mtime_ns(&stat) == seen
                            && stat.st_mode & 0o7777 == *mode & 0o7777
                    }
                    _ => false,
                };
                if !expect.holds(Some(&stat)) && !half_done {
                    // Edited here during the import: the edit wins.
                    skipped(notes, path, "it was changed here");
                    return Ok(());
                }
                place.set_mode(*mode)?;
                place.set_mtime(*mtime)?;
            }
        }
        Action::SetMeta {
            path,
            kind,
            mode,
            mtime,
            ext,
        } => {
            let Located::At(place) = locate(path, false)? else {
                return Ok(());
            };
            set_meta(
                &place,
                &|leader: &[u8]| ctx.locate(leader, false),
                path,
                *kind,
                *mode,
                *mtime,
                ext,
                &ctx.preserve,
                &mut ctx.names.borrow_mut(),
                &mut ctx.unapplied.borrow_mut(),
                notes,
            )?;
        }
        Action::SetDirTime { path, mtime } => {
            if let Located::At(place) = locate(path, false)? {
                if file_type(&place)? == Some(FileType::Directory) {
                    place.set_mtime(*mtime)?;
                }
            }
        }
        Action::SetDirMode { path, mode } => {
            if let Located::At(place) = locate(path, false)? {
                if file_type(&place)? == Some(FileType::Directory) {
                    place.set_mode(*mode)?;
                }
            }
            // The packet's mode wins over the one noted when the directory
            // was opened up for this import.
            let marker = dir_mode_marker(ctx.staging, path);
            match std::fs::remove_file(&marker) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(&marker, err)),
            }
        }
    }
    Ok(())
}

/// Gives what is at `place` (if it is of `kind`) the metadata of `ext`
/// that `preserve` keeps, then `mode` and `mtime` (see
/// [`Action::SetMeta`]). `locate` finds a hard-link leader.
#[allow(clippy::too_many_arguments)]
pub(crate) fn set_meta(
    place: &Place,
    locate: &dyn Fn(&[u8]) -> Result<Located>,
    path: &[u8],
    kind: MetaKind,
    mode: Option<u32>,
    mtime: Option<Timestamp>,
    ext: &crate::ops::Extensions,
    preserve: &crate::tree::meta::Preserve,
    names: &mut crate::tree::meta::Names,
    unapplied: &mut crate::tree::meta::Unapplied,
    notes: &mut Vec<String>,
) -> Result<()> {
    let Some(stat) = place.stat()? else {
        return Ok(());
    };
    let found = FileType::from_raw_mode(stat.st_mode);
    let fits = match kind {
        MetaKind::File => found == FileType::RegularFile,
        MetaKind::Directory => found == FileType::Directory,
        MetaKind::Symlink => found == FileType::Symlink,
        MetaKind::Special => matches!(
            found,
            FileType::Fifo | FileType::Socket | FileType::CharacterDevice | FileType::BlockDevice
        ),
    };
    if !fits {
        return Ok(());
    }
    if kind == MetaKind::File && preserve.hardlinks {
        if let Some(leader) =
            crate::tree::meta::hard_link_leader(ext).filter(|leader| leader != path)
        {
            link_to_leader(locate, place, &stat, &leader, notes)?;
        }
    }
    // A handle of the name itself, never followed: the metadata calls go
    // through its /proc entry, so they reach exactly it.
    let fd = rustix::fs::openat(
        place.parent(),
        place.name(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io(place.display_path(), e.into()))?;
    let handle = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ));
    crate::tree::meta::apply(
        &handle,
        ext,
        mode.filter(|_| kind != MetaKind::Symlink),
        kind == MetaKind::Symlink,
        kind == MetaKind::Directory,
        preserve,
        names,
        unapplied,
    )
    .map_err(|e| Error::io(place.display_path(), e))?;
    if let Some(mtime) = mtime {
        place.set_mtime(mtime)?;
    }
    Ok(())
}

/// Makes the file at `place` (`stat`) another name of `leader`, the first
/// name of its hard-link set, if it is not one already: the leader is
/// linked to the reserved temporary name beside it, which is renamed over
/// it. A leader that is not a regular file here is left (noted).
fn link_to_leader(
    locate: &dyn Fn(&[u8]) -> Result<Located>,
    place: &Place,
    stat: &rustix::fs::Stat,
    leader: &[u8],
    notes: &mut Vec<String>,
) -> Result<()> {
    let Located::At(first) = locate(leader)? else {
        skipped(
            notes,
            place_rel(place).as_slice(),
            "its hard-link leader is not reachable",
        );
        return Ok(());
    };
    let Some(first_stat) = first.stat()? else {
        return Ok(());
    };
    if FileType::from_raw_mode(first_stat.st_mode) != FileType::RegularFile
        || (first_stat.st_dev, first_stat.st_ino) == (stat.st_dev, stat.st_ino)
    {
        return Ok(());
    }
    let temp = OsStr::new(TEMP_NEW_FILE);
    // The reserved name: anything there is a leftover of this step.
    let _ = place.remove_sibling(temp);
    rustix::fs::linkat(
        first.parent(),
        first.name(),
        place.parent(),
        temp,
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| Error::io(place.display_path(), e.into()))?;
    place
        .rename_sibling(temp)
        .map_err(|e| Error::io(place.display_path(), e))
}

fn place_rel(place: &Place) -> Vec<u8> {
    let mut rel = place.parent_rel().to_vec();
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(place.name().as_bytes());
    rel
}

/// Copies `from` to a temporary name beside `to` (mode and mtime kept),
/// fsyncs it, renames it over `to` and removes `from`. Run again after a
/// crash, it copies the same bytes again.
///
/// The temporary name ([`TEMP_NEW_FILE`]) is reserved: no packet can name
/// it and no scan records it. Still, only a temporary this action made is
/// ever removed: it is created with `O_EXCL`, and its device and inode are
/// noted in the staging folder until it is renamed into place. Anything
/// else found under that name is a user's file, kept as a conflict copy.
fn copy_into_place(
    ctx: &Context,
    seq: usize,
    rel: &[u8],
    from: &Path,
    to: &Place,
    notes: &mut Vec<String>,
) -> Result<()> {
    let temp = OsStr::new(TEMP_NEW_FILE);
    let temp_path = to.parent_path().join(temp);
    let marker = temp_marker(&ctx.aside(seq));
    if let Some(ours) = read_temp_marker(&marker)? {
        // Left by this action before a crash: removed only if it is still
        // the very file it made.
        if let Some(stat) = to.stat_sibling(temp).at(&temp_path)? {
            if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                && (stat.st_dev, stat.st_ino) == ours
            {
                to.remove_sibling(temp).at(&temp_path)?;
            }
        }
        std::fs::remove_file(&marker).at(&marker)?;
    }
    let mut copy = loop {
        match to.create_sibling(temp) {
            Ok(file) => break file,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                keep_foreign_temp(ctx, rel, to, notes)?;
            }
            Err(err) => return Err(Error::io(&temp_path, err)),
        }
    };
    let made = rustix::fs::fstat(&copy).map_err(|e| Error::io(&temp_path, e.into()))?;
    std::fs::write(&marker, format!("{} {}\n", made.st_dev, made.st_ino)).at(&marker)?;
    let mut source = File::open(from).at(from)?;
    let meta = source.metadata().at(from)?;
    std::io::copy(&mut source, &mut copy).at(&temp_path)?;
    copy.set_permissions(meta.permissions()).at(&temp_path)?;
    copy.set_modified(meta.modified().at(from)?)
        .at(&temp_path)?;
    copy.sync_all().at(&temp_path)?;
    to.rename_sibling(temp)
        .map_err(|e| Error::io(to.display_path(), e))?;
    match std::fs::remove_file(&marker) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(Error::io(&marker, err)),
    }
    std::fs::remove_file(from).at(from)
}

/// Where [`copy_into_place`] notes the temporary it made for the action
/// whose displaced file would be `aside`.
fn temp_marker(aside: &Path) -> PathBuf {
    let mut name = aside.as_os_str().to_owned();
    name.push(".temp");
    PathBuf::from(name)
}

/// The (device, inode) a temp marker notes; `None` without a marker (or
/// with one cut short by a crash: its temporary is then kept, as a
/// user's).
fn read_temp_marker(marker: &Path) -> Result<Option<(u64, u64)>> {
    let text = match std::fs::read_to_string(marker) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io(marker, err)),
    };
    let mut numbers = text.split_whitespace().map(str::parse::<u64>);
    Ok(match (numbers.next(), numbers.next()) {
        (Some(Ok(dev)), Some(Ok(ino))) => Some((dev, ino)),
        _ => None,
    })
}

/// Something that is not this import's is at the temporary name beside
/// `to`: renamed to a conflict-copy name in the same directory (never
/// removed), and said so.
fn keep_foreign_temp(ctx: &Context, rel: &[u8], to: &Place, notes: &mut Vec<String>) -> Result<()> {
    let temp = OsStr::new(TEMP_NEW_FILE);
    let temp_path = to.parent_path().join(temp);
    let Some(stat) = to.stat_sibling(temp).at(&temp_path)? else {
        return Ok(());
    };
    let parent = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..=i],
        None => &b""[..],
    };
    let base = super::conflict_copy_name(
        TEMP_NEW_FILE.as_bytes(),
        Some(stat_mtime(&stat)),
        ctx.replica_name,
    );
    for attempt in 0..1000u32 {
        let mut name = base.clone();
        if attempt > 0 {
            name.extend_from_slice(format!(".{attempt}").as_bytes());
        }
        match to.rename_sibling_new(temp, OsStr::from_bytes(&name)) {
            Ok(()) => {
                let mut copy = parent.to_vec();
                copy.extend_from_slice(&name);
                notes.push(format!(
                    "{}{}: a file had the name the import uses for its temporary \
                     copies; it is kept as {}",
                    relpath::display(parent),
                    TEMP_NEW_FILE,
                    relpath::display(&copy)
                ));
                return Ok(());
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(Error::io(&temp_path, err)),
        }
    }
    Err(Error::io(
        &temp_path,
        std::io::Error::other("no free conflict-copy name for it"),
    ))
}

/// Removes the day folders of `.syncreplica/deleted/` that are more than
/// `older_than_days` days old (today's folder is 0 days old). Returns the
/// number of files removed.
pub fn purge_soft_deleted(replica: &Replica, older_than_days: u32) -> Result<u64> {
    let deleted = replica.state_dir().join(DELETED_DIR);
    let listing = match std::fs::read_dir(&deleted) {
        Ok(listing) => listing,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(Error::io(&deleted, err)),
    };
    let today = chrono::Utc::now().date_naive();
    let mut purged = 0;
    for item in listing {
        let item = item.at(&deleted)?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(day) = name
            .get(..8)
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        else {
            continue;
        };
        let rest = &name[8..];
        if !(rest.is_empty()
            || (rest.starts_with('.') && rest[1..].bytes().all(|b| b.is_ascii_digit())))
        {
            continue;
        }
        if (today - day).num_days() <= i64::from(older_than_days) {
            continue;
        }
        let folder = item.path();
        purged += count_files(&folder)?;
        std::fs::remove_dir_all(&folder).at(&folder)?;
    }
    Ok(purged)
}

fn count_files(dir: &Path) -> Result<u64> {
    let mut count = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir).at(&dir)? {
            let item = item.at(&dir)?;
            if item.file_type().at(item.path())?.is_dir() {
                pending.push(item.path());
            } else {
                count += 1;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_those_held_go_to_disk_and_are_all_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut failures = Failures::new(dir.path());
        let n = FAILURES_HELD + 2500;
        for i in 0..n {
            failures
                .push(Failure {
                    path: format!("p{i}").into_bytes(),
                    step: "placing the new version".into(),
                    error: format!("error {i}"),
                })
                .unwrap();
        }
        assert_eq!(failures.count, n as u64);
        assert_eq!(failures.held.len(), FAILURES_HELD);
        assert!(dir.path().join("failures.db").exists());
        assert!(failures.has(b"p0").unwrap());
        assert!(failures.has(format!("p{}", n - 1).as_bytes()).unwrap());
        assert!(!failures.has(b"p-none").unwrap());
        let mut seen = Vec::new();
        failures
            .for_each(|f| {
                seen.push((f.path.clone(), f.error.clone()));
                Ok::<(), Error>(())
            })
            .unwrap();
        assert_eq!(seen.len(), n);
        for (i, (path, error)) in seen.iter().enumerate() {
            assert_eq!(path, format!("p{i}").as_bytes());
            assert_eq!(error, &format!("error {i}"));
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        confined: ConfinedRoot,
        state_dir: PathBuf,
        staging: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let state_dir = root.join(crate::store::layout::STATE_DIR);
        let staging = state_dir.join(STAGING_DIR);
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        let confined = ConfinedRoot::open(&root).unwrap();
        Fixture {
            _dir: dir,
            root,
            confined,
            state_dir,
            staging,
        }
    }

    impl Fixture {
        fn ctx(&self) -> Context<'_> {
            Context {
                confined: &self.confined,
                state_dir: &self.state_dir,
                staging: &self.staging,
                replica_name: "beta",
                hook: None,
                kept_in: Default::default(),
                preserve: crate::tree::meta::Preserve::default_for_user(),
                names: Default::default(),
                unapplied: Default::default(),
            }
        }

        fn staged(&self, content: &[u8]) -> PathBuf {
            let from = self.staging.join("0");
            std::fs::write(&from, content).unwrap();
            from
        }

        fn place(&self, rel: &[u8]) -> Place {
            match self.confined.locate(rel, false).unwrap() {
                Located::At(place) => place,
                Located::Blocked(why) => panic!("{why}"),
            }
        }

        fn names_in_d(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.root.join("d"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    #[test]
    fn a_users_file_at_the_temporary_name_is_kept_as_a_conflict_copy() {
        let f = fixture();
        std::fs::write(f.root.join("d").join(TEMP_NEW_FILE), b"the user's").unwrap();
        let from = f.staged(b"new content");
        let mut notes = Vec::new();
        copy_into_place(&f.ctx(), 0, b"d/x", &from, &f.place(b"d/x"), &mut notes).unwrap();
        assert_eq!(std::fs::read(f.root.join("d/x")).unwrap(), b"new content");
        assert!(!from.exists());
        let names = f.names_in_d();
        assert_eq!(names.len(), 2, "{names:?}");
        let kept = names
            .iter()
            .find(|n| n.starts_with(&format!("{TEMP_NEW_FILE}.sync-conflict-")))
            .expect("kept");
        assert_eq!(
            std::fs::read(f.root.join("d").join(kept)).unwrap(),
            b"the user's"
        );
        assert!(notes.iter().any(|n| n.contains(kept.as_str())), "{notes:?}");
        // Nothing left in staging but the staging folder itself.
        assert_eq!(std::fs::read_dir(&f.staging).unwrap().count(), 0);
    }

    #[test]
    fn a_temporary_left_by_the_same_action_before_a_crash_is_removed() {
        let f = fixture();
        let place = f.place(b"d/x");
        // The temporary an earlier run made, and its marker.
        let temp = place.create_sibling(OsStr::new(TEMP_NEW_FILE)).unwrap();
        let stat = rustix::fs::fstat(&temp).unwrap();
        std::fs::write(
            temp_marker(&f.ctx().aside(0)),
            format!("{} {}\n", stat.st_dev, stat.st_ino),
        )
        .unwrap();
        drop(temp);
        let from = f.staged(b"new content");
        let mut notes = Vec::new();
        copy_into_place(&f.ctx(), 0, b"d/x", &from, &place, &mut notes).unwrap();
        assert_eq!(f.names_in_d(), vec!["x".to_string()]);
        assert!(notes.is_empty(), "{notes:?}");
        // A marker naming another file does not make a user's file ours.
        std::fs::write(f.root.join("d").join(TEMP_NEW_FILE), b"the user's").unwrap();
        std::fs::write(temp_marker(&f.ctx().aside(1)), "1 1\n").unwrap();
        let from = f.staged(b"newer content");
        copy_into_place(&f.ctx(), 1, b"d/x", &from, &place, &mut notes).unwrap();
        assert_eq!(f.names_in_d().len(), 2, "{:?}", f.names_in_d());
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn sync_dirs_skips_a_directory_replaced_by_a_fifo_or_a_symlink() {
        let f = fixture();
        std::fs::rename(f.root.join("d"), f.root.join("d.real")).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(f.root.join("d"))
            .status()
            .unwrap();
        assert!(status.success());
        std::os::unix::fs::symlink("/", f.root.join("e")).unwrap();
        let dirs = [b"d".to_vec(), b"e".to_vec(), b"gone".to_vec(), Vec::new()]
            .into_iter()
            .collect();
        // Would block forever opening the FIFO if it were opened for
        // reading like a file.
        let mut failures = Failures::new(&f.root);
        sync_dirs(&f.confined, dirs, &[], &mut failures).unwrap();
        assert_eq!(failures.held, Vec::new());
        assert_eq!(failures.count, 0);
    }
}
