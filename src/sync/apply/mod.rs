//! The apply engine: brings a batch of operations from other replicas (one
//! logical packet's worth, signatures already verified) into this replica's
//! tree and state database.
//!
//! # Rules
//!
//! 1. **Logging.** Every new operation is appended to the operation log with
//!    its origin (so this replica can forward it later) and this replica's
//!    own epoch row is raised for that origin, in the same transaction as
//!    the entries it changes. An operation whose epoch is at or below the own
//!    row's epoch for its origin is a duplicate and is skipped
//!    (`already_had`). An epoch that leaves a gap (more than one above the
//!    last one logged for that origin) refuses the whole batch; nothing is
//!    changed. An operation that claims to come from this replica but is new
//!    to it is refused the same way.
//! 2. **Members.** `AddMember` inserts the member if absent. The same id with
//!    another key, another id with the same name, or a name that is not a
//!    valid replica name refuses the batch.
//! 3. **Hostile paths.** A path from a packet is hostile until proved
//!    enclosed. The batch is refused ([`crate::Refusal::HostilePath`]) when a
//!    path is empty, absolute, has an empty, `.` or `..` component, contains
//!    NUL, has a component of more than 255 bytes, has a component named
//!    `.syncreplica` (at any depth: scans never record nested state
//!    folders) or `.syncreplica-new-file` (the engine's temporary name),
//!    or when any ancestor is a symlink: on disk now (looked up through
//!    `tree::confined`, beneath the root, never following a link), or as
//!    planned by an earlier operation of the same
//!    batch — unless that symlink is recorded and the operation is
//!    concurrent with it (the sibling never saw the link: it had a
//!    directory there). That is a conflict of structure, which the
//!    directory wins: the link is removed, never followed, and the path is
//!    created in a real directory. An operation whose version has seen the
//!    link and still writes below it is hostile. An ancestor that an
//!    earlier operation of the batch turns into a directory counts as that
//!    directory. A symlink target that is empty or contains NUL, and a file
//!    whose size is not the sum of its chunk lengths, are refused too.
//!    A path that passes these checks but does not fit below this
//!    replica's root (root, `/` and path over 4,095 bytes, Linux's
//!    `PATH_MAX`: the scan, an export or an editor could not open it by
//!    its full name) is not made here: like an excluded path, its
//!    operation is logged and relayed and its epoch raised, but no entry
//!    is written and nothing is touched; the report says so
//!    (`not_made`). A conflict copy that would not fit is not made either
//!    (the replaced version is still kept, rule 8).
//! 4. **Excludes.** Excluded paths (the patterns as loaded when the batch
//!    starts) are never touched: the operation is logged and the epoch raised,
//!    but entry and file stay as they are (`skipped_excluded`). The root
//!    `.syncreplicaignore` is always excluded (each replica's own), and
//!    shared (included) patterns never exclude a path recorded or planned
//!    here ([`crate::tree::excludes`]).
//! 5. **Conflicts** are decided by version vectors, never by wall clocks. The
//!    local side is the recorded entry (a tombstone's version counts; no
//!    entry is the empty vector). Within a batch only the newest version of
//!    a path is compared: an operation that a later one of the batch on the
//!    same path has seen (version `After`) is logged but not
//!    compared, so conflicts are judged on the newest version each side has
//!    and content overwritten at the sender is never needed. A path given
//!    more than 256 (`plan::MAX_CONCURRENT_VERSIONS`) pairwise-concurrent
//!    versions by one batch (or more than the family has members, when it
//!    has more) refuses the batch ([`crate::Refusal::HostilePath`]): an
//!    origin's versions of a path are ordered, so a real history has at
//!    most one per origin, and the planner compares each operation on a
//!    path with at most that many (the latest ones no later operation has
//!    seen), so planning stays linear in the operations.
//!    Incoming `After` local: fast-forward.
//!    `Before` or `Equal`: stale, nothing to do (`already_had`).
//!    `Equal` with another state: two members' resolutions of the same
//!    concurrent versions in different groupings (three members, say):
//!    the join of both (below) is stored under that same version, with no
//!    operation and no report (the merges reported), so every member ends
//!    with the join of every resolution it receives. Two operations of a
//!    batch with equal versions are both compared for that reason.
//!    `Concurrent`: if both states are identical, the merged version is
//!    stored (author: the greater replica id, so every replica stores the
//!    same). Two versions of one object that differ only in metadata (two
//!    directories; two files with the same content; two symlinks with the
//!    same target; two special files of the same kind and device) are
//!    merged field by field (`merge`): the mode bits both allow (the sticky
//!    bit if either has it), the newer mtime, the lower owner and group id,
//!    the ACL with fewer entries (the access ACL then follows the merged
//!    mode), every extended attribute either has (the greater value of
//!    two), other metadata by its greater encoding. Each rule is a join,
//!    so the result is the same at every member whatever the order and
//!    grouping; every field that differed is reported on the path's
//!    conflict line, with the value kept, whose it was, and the other
//!    (a directory's mtime excepted: it moves whenever entries come and
//!    go). Otherwise one winner, the same at every replica:
//!    (0) a directory beats any other state (nothing under it is lost; a
//!    losing file becomes the conflict copy, a losing symlink is dropped);
//!    (a) any existing state beats `Deleted`; (b) the newer file mtime wins
//!    (directories, symlinks and `Deleted` count as mtime 0); (c) on a tie
//!    the state whose postcard encoding is lexicographically greater wins.
//!    The merged or winning state is stored with the merged version
//!    vector and the winner's author (an incoming state's author is the
//!    operation's origin; a field-by-field merge's, the greater of the
//!    two); then, unless a later operation of the batch supersedes it,
//!    the resolution is recorded as an operation of this replica, a
//!    `Change::Resolve` with this replica's next epoch in its log but the
//!    merged version unchanged, keeping the winning version's author (so
//!    conflict copies are named alike everywhere). Every member that
//!    settles the same versions so holds the same version, and the next
//!    change on either side is a plain successor of it (a resolution
//!    version of its own, as before format 2.11, was one the other side had
//!    not seen: its next change was concurrent again and merged again).
//!    An incoming `Resolve` is applied like a `Path` change whose author is
//!    the one it names. Without that operation, replicas that resolved
//!    different pairs of concurrent versions (three replicas, say) could
//!    hold different states under the same version vector; with it, each
//!    receives the others' and joins them. Replicas that resolved the same
//!    conflict send identical states under the same version: nothing to do.
//!    A losing non-empty file whose content differs from the winner's is
//!    kept beside the path as
//!    `NAME.sync-conflict-YYYYMMDD-HHMMSS-REPLICA.EXT`: the loser's mtime
//!    in UTC, the loser author's member name (its 32-hex id if unknown) and
//!    the file name's extension (after the last `.` that is not the first
//!    character), e.g. `report.sync-conflict-20261121-101500-boston.txt`,
//!    `Makefile.sync-conflict-20261121-101500-boston`. Every replica computes
//!    the same name. The copy is written and recorded as an operation of
//!    this replica (next own epoch; version: the copy path's recorded
//!    version, if any, plus this replica's epoch) in the same transaction,
//!    so it travels to siblings; a sibling that made the same copy converges
//!    by the identical-state rule. If the name is taken by different
//!    content, `-2`, `-3`… is appended to the replica name. No copy is made
//!    when the copy's path is excluded by a local pattern (shared patterns
//!    do not apply: the copy is recorded as soon as it is made).
//! 6. **Structure.** After all operations are planned, the tree is made
//!    consistent: a path that ends up deleted, a file or a symlink but still
//!    has content below it (recorded, planned, or on disk and not recorded,
//!    such as excluded files) stays a directory, and every ancestor of a
//!    path that ends up existing becomes a directory. Each such repair is a
//!    conflict that the directory wins, recorded as an operation of this
//!    replica (a displaced file becomes a conflict copy as in rule 5).
//! 7. **Writing states.** A file's content is assembled from its chunk list,
//!    each chunk written once at every place the batch's files need it:
//!    as the [`ChunkSource`] streams it (a packet, in stored order, with no
//!    copy made first), else from a file this replica has whose recorded
//!    chunk list contains it, else from a soft-deleted file; every chunk's
//!    SHA-256 and length are verified before use. A chunk found nowhere
//!    refuses the batch. Before anything is staged, a batch whose staged
//!    content exceeds the free space of the replica's filesystem is
//!    refused ([`crate::Refusal::NoSpace`]). Mode (setuid and setgid
//!    bits only after the owner, by root where owners are kept:
//!    [`crate::tree::meta::set_id_bits_kept`]; the entry records them
//!    either way) and mtime are set. Directories are created, symlinks are created with their
//!    stored target bytes (never followed), deleted paths are removed. A file
//!    whose content is unchanged only gets its mode and mtime set.
//! 8. **Soft delete.** A regular file that an import deletes or replaces is
//!    kept as `.syncreplica/deleted/YYYYMMDD/<path>` (UTC day of the import;
//!    `.1`, `.2`… appended to the name if taken): the displaced file itself
//!    (rule 10), renamed, or a real copy when it has other hard links. A
//!    path too long to be kept there whole is kept as
//!    `.syncreplica/deleted/YYYYMMDD/long-paths/HASH-NAME` (the first 16
//!    bytes of the path's SHA-256 in hex, the last name shortened to 200
//!    bytes). [`purge_soft_deleted`] removes
//!    day folders older than `soft_delete_days`; `apply_batch` calls it at
//!    the end.
//! 9. **Crash safety.** (a) Plan everything, writing nothing (the batch's
//!    operations and the planned entries wait in a scratch database,
//!    [`batch`], never in the state: a crash forgets them; a full disk
//!    there is [`Error::ScratchFull`], with nothing changed); (b) stage every new
//!    file's content under `.syncreplica/staging/<n>`, fsynced (several
//!    at once, so the journal commits them together; the last page of
//!    them, the staging folder and the state folder while (c) is
//!    prepared, before it commits); (c) commit
//!    log, epochs, members, entries (without stat, so the next scan reads
//!    those files once) and a journal of disk actions in one transaction;
//!    (d) execute the journal, every action idempotent, then fsync the
//!    directories (those of the tree it changed, and the soft-deleted
//!    folders that received kept versions); (e) clear the journal and remove the staging folder
//!    (after moving anything still set aside there to the soft-deleted
//!    files: a displaced version is never deleted with it).
//!    An action that the tree no longer allows (a directory to remove that
//!    gained content, a parent that became a file or a symlink since the
//!    plan) is skipped, never forced, and reported in `conflicts`; the next
//!    scan records what is really there.
//!    [`recover`] finishes (d) and (e) after a crash, or removes staging
//!    left by a batch that never committed.
//!    Every check that can refuse a batch (paths, lengths, space) runs
//!    before (c). An action that still fails in (d) (a folder the
//!    importing user may not write, an I/O error) is not retried: the
//!    other actions run on, what it had moved aside goes back to its path
//!    (or is kept with the soft-deleted files), and (e) records it in the
//!    same transaction that clears the journal: the path's entry goes back
//!    to what it was before the batch (the commit notes those entries in
//!    `pending_apply_before`), so the tree and the entry agree and no
//!    scan takes the old version, or its absence, for a local change; and
//!    a row of `failed_apply` says which path, which step, which packet,
//!    when and why. The import reports it (`failed`; the command exits 1
//!    once every packet is done), `syncreplica -status` lists it, and the
//!    replica goes on: local work is recorded, other packets apply, and a
//!    replay after a crash meets the failure once, records it the same
//!    way and clears the journal. The batch's operations stay logged and
//!    its epochs raised, so the other replicas do not send the change
//!    again; once the cause is fixed, `-resendpath PATH` at a sibling that
//!    has it sends it anew. A row goes when a later batch writes its path
//!    or a record takes a local change of it.
//! 10. **Nothing a person made is lost.** Every action that replaces or
//!     removes a file or symlink first moves it aside
//!     (`staging/displaced-N`) and compares it with what the scan before the
//!     import recorded (inode, size, mtime; the ctime before the move; a
//!     symlink's inode; a file placed by an earlier import and never scanned
//!     is verified by content first). A match is the version the plan
//!     replaced (kept per rule 8, or dropped); anything else was made during
//!     the import and is kept: beside the path as a conflict copy, or back
//!     at the path when the action only removed it. New files and links are
//!     placed with `RENAME_NOREPLACE`/`symlinkat`, so one a person created
//!     meanwhile is moved aside and kept the same way. A replayed action
//!     settles what it had set aside before anything else. Between the move
//!     aside and the placement a path is briefly absent.
//! 11. **Names the filesystem folds.** Where the replica's filesystem folds
//!     case or Unicode normalisation (`Replica::folding`: a probe cached in
//!     `.syncreplica/filesystem.toml`), two paths of the family can be one
//!     name on disk. After the operations are planned, a path the batch
//!     makes (not recorded live here) that is the same name as another path
//!     of the tree after the batch, or lies in a folder that is, is not
//!     made: the name stays with, in this order, a path on disk under its
//!     exact name (recorded or not, such as an excluded file or the state
//!     folder, so `.SyncReplica/x` never reaches it), a recorded path, a
//!     conflict copy of this batch, then the first of the batch's paths in
//!     byte order. The operation is logged and its epoch raised, but no
//!     entry is written (as for an excluded path), so no scan takes its
//!     absence for a deletion and the other replicas keep it. A file's
//!     content is kept as a conflict copy (rule 5's name, the operation's
//!     author) in its folder as this filesystem holds it, unless the name's
//!     holder has the same content; every such path is a conflict, with a
//!     note "A and B are the same name on this filesystem (it ignores
//!     case); kept B, and X's A as COPY". On such a filesystem every lookup
//!     of the plan counts a path only under its exact name (listing the
//!     folders), so a deletion or replacement of `report.txt` never reaches
//!     `Report.txt`.
//!
//! The caller holds the replica's lock, has recorded a scan of local changes
//! (so they take part in conflict detection) and calls [`recover`] before
//! each import (`apply_batch` also does).
//!
//! # Limits
//!
//! * A directory mode without owner write (e.g. `0555`) is applied last; a
//!   later batch that must write inside it opens it up for the owner (and
//!   puts the mode back), but a directory of another user that the
//!   process may not write makes those steps fail (rule 9).
//! * A failed step (rule 9) is not retried by the engine: the path stays
//!   at its older version here until a sibling resends it or changes it
//!   again.
//! * Rule 11 decides per batch. A path not made here is not made later
//!   either when the path that holds its name goes (its content is in its
//!   conflict copy); a changed version of it makes another conflict copy.
//!   Case is folded with Unicode's lower-case mapping, which may differ
//!   from a filesystem's own table for rare letters.
//! * The temporary name `.syncreplica-new-file` (`store::layout`'s
//!   `TREE_TEMP_NAMES`) is used beside the target while a file is copied
//!   onto another filesystem mounted inside the replica. Packets can never
//!   name it (rule 3) and scans skip it; a file found under that name that
//!   this import did not make is kept as a conflict copy, never removed.

pub mod batch;
mod disk;
mod journal;
pub(crate) mod lines;
pub(crate) mod merge;
mod plan;
mod planned;
mod spool;
pub(crate) use disk::set_meta;
pub(crate) use journal::MetaKind;
pub(crate) use plan::{needs_newer_for, sanitize};

use journal::Action;

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Refusal, Result};
use crate::ops::{ChunkId, ChunkRef, Operation};
use crate::replica::{LockedReplica, Replica};
use crate::store::layout::STAGING_DIR;
use crate::store::state;

pub use disk::purge_soft_deleted;
pub use plan::{conflict_copy_name, validate_path, validate_path_state, winner_is_first};

/// Finds a chunk held here, checked against its id and length; `None`
/// when not found. Safe to call from any thread.
pub type NearbyChunks<'a> = dyn Fn(&ChunkRef) -> Option<Vec<u8>> + Sync + 'a;

/// Where the bytes of chunks come from, e.g. a packet's chunk entries.
pub trait ChunkSource {
    /// Hands `sink` the chunks this source carries, each once, in the
    /// source's own order. `wanted` lists the chunks the batch needs, in
    /// the order its files first need them: a source that looks chunks up
    /// by id hands over those of `wanted` it has; a packet streams every
    /// chunk it carries in stored order (the sink skips the rest), so no
    /// copy of them is made first. The engine checks every chunk against
    /// its id before use, unless [`ChunkSource::checks_ids`] says the
    /// source did. Errors: the sink's, and the source's own (a damaged
    /// packet).
    fn deliver(
        &mut self,
        wanted: &[ChunkId],
        sink: &mut dyn FnMut(&ChunkId, &[u8]) -> Result<()>,
    ) -> Result<()>;

    /// As [`ChunkSource::deliver`], for a source that may carry chunks as
    /// recipes over chunks held here (chunk codec 2): `bases` finds those,
    /// checked against their id and length. `nearby`, when given, is
    /// asked first and may be called from another thread (a source that
    /// reads ahead on one asks it there, without waiting for the thread
    /// that writes); `bases` is asked for what it does not find. The
    /// default ignores both.
    fn deliver_with(
        &mut self,
        wanted: &[ChunkId],
        _nearby: Option<&NearbyChunks>,
        _bases: &mut packet_format::BaseChunks,
        sink: &mut dyn FnMut(&ChunkId, &[u8]) -> Result<()>,
    ) -> Result<()> {
        self.deliver(wanted, sink)
    }

    /// Whether every chunk this source hands over was checked against its
    /// id already (a packet's reader checks them): the engine then does
    /// not hash it a second time. False unless a source says otherwise.
    fn checks_ids(&self) -> bool {
        false
    }

    /// Whether this source reads `wanted` at all: one that streams every
    /// chunk it carries whatever is wanted (a packet) says no, and the
    /// engine does not gather the list (a chunk id for each chunk of the
    /// batch's new content). True unless a source says otherwise.
    fn reads_wanted(&self) -> bool {
        true
    }
}

/// A source that carries nothing: every chunk must already be local.
pub struct NoChunks;

impl ChunkSource for NoChunks {
    fn deliver(
        &mut self,
        _wanted: &[ChunkId],
        _sink: &mut dyn FnMut(&ChunkId, &[u8]) -> Result<()>,
    ) -> Result<()> {
        Ok(())
    }
}

/// A lookup by id (bytes, or `None` if not carried) as a source.
impl<F> ChunkSource for F
where
    F: FnMut(&ChunkId) -> Result<Option<Vec<u8>>>,
{
    fn deliver(
        &mut self,
        wanted: &[ChunkId],
        sink: &mut dyn FnMut(&ChunkId, &[u8]) -> Result<()>,
    ) -> Result<()> {
        for id in wanted {
            if let Some(bytes) = self(id)? {
                sink(id, &bytes)?;
            }
        }
        Ok(())
    }
}

/// What applying a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Paths that did not exist and now do.
    pub added: u64,
    /// Paths whose state changed.
    pub changed: u64,
    /// Paths that existed and are now deleted.
    pub deleted: u64,
    /// One human-readable note per conflict, naming any conflict copy;
    /// the first [`lines::LINES_HELD`], the rest in `report_file`.
    pub conflicts: Vec<String>,
    /// Conflict notes beyond `conflicts`: in `report_file`.
    pub conflicts_more: u64,
    /// One note per content request addressed to this replica that the
    /// packet carried (`crate::sync::delta::take_requests`): not conflicts.
    pub requests: Vec<String>,
    /// Operations on excluded paths: logged, not applied.
    pub skipped_excluded: u64,
    /// One note per kind of path not made here for a limit of this
    /// replica (a path too long below its root): logged and relayed, not
    /// applied.
    pub not_made: Vec<String>,
    /// One note per item of metadata this replica could not apply (not
    /// root: owners, groups, setuid bits; a filesystem without xattrs),
    /// with how many paths: kept in the state, not on disk here.
    pub not_applied: Vec<String>,
    /// Duplicate operations, and operations older than the recorded state.
    pub already_had: u64,
    /// Bytes of file content of the files made or changed.
    pub bytes_written: u64,
    /// Bytes of files made as new names of a hard-link set whose content
    /// is placed here (links, not content): left out of `bytes_written`.
    pub bytes_linked: u64,
    /// Of `bytes_written`: written from the packets (chunks carried whole
    /// or rebuilt from changes), copied from content held here, left as
    /// holes (all-zero chunks, not written).
    pub bytes_from_packets: u64,
    pub bytes_copied: u64,
    pub bytes_as_holes: u64,
    /// Operations this replica recorded itself (conflict copies, kept
    /// directories).
    pub local_operations: u64,
    /// Soft-deleted files purged at the end.
    pub purged: u64,
    /// FIFOs, sockets and device nodes recorded but not made here (this
    /// replica does not keep them: `preserve` in config.toml).
    pub not_made_special: u64,
    /// The metadata behind `not_applied`, by item with counts: an import
    /// of several packets sums them and says it once (review 14c item 6).
    /// Boxed: the report travels in each packet's outcome.
    pub unapplied: Box<crate::tree::meta::Unapplied>,
    /// Disk steps that failed after the commit (rule 9): not done, the
    /// path's entry as it was, listed by `syncreplica -status`; the first
    /// [`lines::LINES_HELD`], the rest in `report_file`.
    pub failed: Vec<state::FailedStep>,
    /// Failed steps beyond `failed`: in `report_file`.
    pub failed_more: u64,
    /// The file (in `.syncreplica/reports/`) with every conflict note, or
    /// every failed step, when there were more than are held: each kind
    /// that overflowed is there whole.
    pub report_file: Option<PathBuf>,
    /// Members the batch brought (`AddMember`), by name.
    pub members_added: Vec<String>,
    /// Members the batch removed (`RemoveMember`), by name.
    pub members_removed: Vec<String>,
    /// The key rotations (`RekeyMember`) the batch brought, one per
    /// rotation in the order applied: the member's name and its own epoch
    /// of the rotation.
    pub members_rekeyed: Vec<(String, u64)>,
}

/// Test hooks: a deterministic crash-injection point. Steps are counted
/// (after each staged file, before and after the commit, after each
/// journal action, before and after clearing the journal); when the count
/// reaches `crash_at`, the engine returns an error starting with
/// [`Error::InjectedCrash`] at once, without any cleanup, as `kill -9` would.
#[derive(Default, Clone)]
pub struct ApplyHooks {
    pub crash_at: Option<usize>,
    /// Steps counted so far.
    pub steps: usize,
    /// Called with a journal action's parent path right before it is
    /// resolved on disk, so a test can change the tree at the point where
    /// a check-then-use engine could be raced.
    pub before_resolve: Option<crate::tree::confined::ResolveHook>,
    /// The tree digest the caller computes right after the apply (an
    /// import's check against the sender's): computed from the entries
    /// as committed while the disk steps run, and kept with them
    /// ([`crate::replica::Replica::keep_entries_with`]).
    pub digest: Option<crate::sync::digest::DigestKey>,
}

impl std::fmt::Debug for ApplyHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyHooks")
            .field("crash_at", &self.crash_at)
            .field("steps", &self.steps)
            .field("before_resolve", &self.before_resolve.is_some())
            .field("digest", &self.digest)
            .finish()
    }
}

impl ApplyHooks {
    /// Hooks that crash when the step count reaches `step` (from 1).
    pub fn crash_at(step: usize) -> ApplyHooks {
        ApplyHooks {
            crash_at: Some(step),
            ..ApplyHooks::default()
        }
    }

    fn step(&mut self, what: &str) -> Result<()> {
        self.steps += 1;
        if self.crash_at == Some(self.steps) {
            return Err(Error::InjectedCrash {
                step: self.steps,
                what: what.to_string(),
            });
        }
        Ok(())
    }
}

/// Whether `err` is a crash injected by [`ApplyHooks`].
pub fn is_injected_crash(err: &Error) -> bool {
    matches!(err, Error::InjectedCrash { .. })
}

/// Applies `ops` (already verified, from other replicas) to `replica`'s tree
/// and state, following the rules in the module documentation. Either the
/// whole batch is committed, or (on a refused batch) nothing changes.
/// The operations are copied into a [`batch::OpBatch`] first, as an import
/// streams them there ([`apply_stored`]).
pub fn apply_batch(
    replica: &mut LockedReplica,
    ops: &[Operation],
    chunks: &mut dyn ChunkSource,
    hooks: &mut ApplyHooks,
) -> Result<ApplyReport> {
    let logged = own_row(replica)?;
    let mut batch = batch::OpBatch::create(replica.state(), &logged)?;
    let result = (|| {
        for op in ops {
            batch.push(replica.state(), op)?;
        }
        batch.finish(replica.state())?;
        apply_stored(replica, &batch, chunks, hooks, None)
    })();
    batch.close(replica.state());
    result
}

/// This replica's own epoch row: what it logged of each origin.
pub(crate) fn own_row(replica: &Replica) -> Result<std::collections::HashMap<crate::ops::Id, u64>> {
    let me = replica.identity.replica_id;
    replica.state().epoch_row(&me)
}

/// The record of a received packet, committed in the same transaction as
/// the batch it carried: the raised estimate of its sender and the packet
/// log line. Committed apart, a kill in between would leave the packet
/// applied (a re-run says "Already applied") but the sender's estimate
/// low, so the next export would send the sender back its own operations.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub sender: crate::ops::Id,
    /// The sender's own epoch row as the packet states it.
    pub epoch_row: Vec<(crate::ops::Id, u64)>,
    pub packet_id: crate::ops::Id,
    pub sequence: u64,
    pub file_name: String,
    pub at_ns: i64,
    /// The packet's origin seals, verified, kept to pass on with the
    /// operations they cover.
    pub seals: Vec<packet_format::seals::Seal>,
}

/// [`apply_batch`] of the operations in `batch` (filled and finished),
/// committing `receipt` with them. The caller closes `batch`.
pub fn apply_stored(
    replica: &mut LockedReplica,
    batch: &batch::OpBatch,
    chunks: &mut dyn ChunkSource,
    hooks: &mut ApplyHooks,
    receipt: Option<&Receipt>,
) -> Result<ApplyReport> {
    recover(replica)?;
    let mut plan = plan::plan(replica, batch)?;
    check_space(replica, &plan)?;
    let mut lines = std::mem::replace(&mut plan.lines, lines::Lines::new(&replica.state_dir()));
    let mut report = plan.report.clone();
    let staged = disk::stage(replica, &plan, chunks, hooks)?;
    // A new name of a hard-link set is a link to content placed here:
    // not counted as written (its staged copy is replaced by the link).
    let mut linked = plan.report.bytes_linked.min(staged.bytes);
    report.bytes_written = staged.bytes - linked;
    let mut uncount = |bytes: u64| {
        let part = linked.min(bytes);
        linked -= part;
        bytes - part
    };
    report.bytes_copied = uncount(staged.copied);
    report.bytes_from_packets = uncount(staged.from_packets);
    report.bytes_as_holes = uncount(staged.holes);
    hooks.step("before commit")?;
    // The last staged files are fsynced on a thread of their own while
    // the commit is prepared, which waits for them before the journal
    // that names them commits (both took about 30 ms of a 1 % edit's
    // import, one after the other).
    let staged = &staged;
    let committed = std::thread::scope(|scope| {
        let syncing = std::thread::Builder::new()
            .name("fsync-staged".into())
            .spawn_scoped(scope, || staged.make_durable());
        commit(replica, batch, &plan, receipt, move || match syncing {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => staged.make_durable(),
        })
    });
    if let Err(err) = committed {
        let _ = std::fs::remove_dir_all(staging_dir(replica));
        return Err(err);
    }
    hooks.step("after commit")?;
    crate::sys::testhook::crash_point("apply-after-commit");
    // The entries as the commit left them, and the digest asked for:
    // computed on a thread of its own while the disk steps below wait on
    // their fsyncs (30 ms of CPU for 20,000 entries, off the import's
    // path).
    // Only a cache: what fails here is read again when needed (the
    // journal just committed must run first).
    let after = entries_after(replica, &mut plan)
        .ok()
        .flatten()
        .map(Arc::new);
    let digest = match (&after, hooks.digest.take()) {
        (Some(entries), Some(key)) => {
            let entries = Arc::clone(entries);
            std::thread::Builder::new()
                .name("tree-digest".into())
                .spawn(move || {
                    let computed = key.compute(&entries);
                    (key, computed)
                })
                .ok()
        }
        _ => None,
    };
    // Run from the journal just committed, a page at a time, as a
    // recovery runs it.
    let executed = disk::execute(replica, &mut JournalPages::new(replica), hooks, &mut lines)?;
    if report.not_made_special > 0 {
        report
            .not_made
            .push(special_not_made_note(report.not_made_special));
    }
    // Once per import, with a count (never silently dropped).
    report
        .not_applied
        .extend(unapplied_notes(&executed.unapplied));
    report.unapplied = Box::new(executed.unapplied.clone());
    let placed_at = finish(replica, &executed.failures, &mut lines, hooks)?;
    report.report_file = lines.close()?;
    report.conflicts = std::mem::take(&mut lines.conflicts);
    report.conflicts_more = lines.conflicts_more;
    report.failed = std::mem::take(&mut lines.failed);
    report.failed_more = lines.failed_more;
    // The batch is applied; a purge that fails is retried next time.
    report.purged = purge_soft_deleted(replica, replica.config.soft_delete_days).unwrap_or(0);
    let digest = digest.and_then(|thread| thread.join().ok());
    if let (true, Some(entries)) = (report.failed.is_empty(), after) {
        // The digest thread is done with them: not copied.
        let mut entries = Arc::try_unwrap(entries).unwrap_or_else(|shared| (*shared).clone());
        // As `state::mark_placed` left them.
        for entry in entries.values_mut() {
            if entry.stat.is_none() && entry.scanned_ns.is_none() {
                entry.scanned_ns = Some(placed_at);
            }
        }
        match digest {
            Some(digest) => replica.keep_entries_with(entries, Box::new(digest)),
            None => replica.keep_entries(entries),
        }
    }
    Ok(report)
}

/// The most paths a batch plans for which [`entries_after`] keeps the
/// entries.
const KEEP_ENTRIES_UP_TO: i64 = 1024;

/// The plan's recorded entries with the batch's written over them, as the
/// commit left the rows (no stat; `scanned_ns` is set by [`finish`]), to
/// keep as the replica's entries ([`Replica::entries`]) once the batch is
/// applied without failed steps (those entries go back to what they were,
/// in the database only): the steps after an import (its tree digest
/// check, the next packet's plan) need not read and decode them all again,
/// which was a fifth of the CPU of importing a few changes into 20,000
/// files. `None` for a batch of many paths: it would grow the map by each
/// (an import's memory stays bounded by what it changes, see
/// tests/import_memory.rs), where reading them again costs little beside
/// the batch.
fn entries_after(
    replica: &LockedReplica,
    plan: &mut plan::Plan,
) -> Result<Option<crate::replica::Entries>> {
    let planned: i64 = replica
        .state()
        .conn()
        .query_row("SELECT COUNT(*) FROM batch.planned", [], |row| row.get(0))
        .map_err(|source| replica.state().db_error(source))?;
    if planned > KEEP_ENTRIES_UP_TO {
        return Ok(None);
    }
    let mut entries = std::mem::take(&mut plan.recorded);
    plan.entries
        .for_each_row(replica.state().conn(), |path, entry| {
            entries.insert(
                path.to_vec(),
                state::RecordedEntry {
                    state: entry.state.clone(),
                    version: entry.version.clone(),
                    stat: None,
                    scanned_ns: None,
                    author: entry.author,
                },
            );
            Ok(())
        })
        .map_err(|err| match err {
            state::TxError::Sql(source) => replica.state().db_error(source),
            state::TxError::Other(other) => other,
        })?;
    Ok(Some(entries))
}

/// The note for `count` special files recorded but not made here.
pub fn special_not_made_note(count: u64) -> String {
    let (what, them) = if count == 1 {
        ("special file (a FIFO, socket or device node)", "it")
    } else {
        ("special files (FIFOs, sockets or device nodes)", "them")
    };
    format!(
        "{count} {what} recorded, not made: this replica does not keep {them} (preserve in \
         config.toml; device nodes need root)"
    )
}

/// One note per item of metadata not applied here, with its count.
pub fn unapplied_notes(unapplied: &crate::tree::meta::Unapplied) -> Vec<String> {
    unapplied
        .lines()
        .into_iter()
        .map(|line| {
            format!("{line}; kept in the state, not on disk here (see preserve in config.toml)")
        })
        .collect()
}

/// The bytes a batch writes on the replica's filesystem before its
/// commit: the content of every file it stages. Chunks are written
/// straight from the packet into the staged files (`crate::sync::assemble`),
/// so nothing else is written on the way. All-zero chunks are left as
/// holes, so they take no room and are not counted.
fn bytes_needed(plan: &plan::Plan) -> u64 {
    plan.jobs.bytes_to_write()
}

/// Refuses the batch, before anything is staged, when the replica's
/// filesystem lacks the room for the content it stages
/// ([`Refusal::NoSpace`]). The database growth and the rounding of files
/// to blocks are not counted: this catches the packet that cannot fit, not
/// every full disk.
fn check_space(replica: &Replica, plan: &plan::Plan) -> Result<()> {
    let needed = bytes_needed(plan);
    if needed == 0 {
        return Ok(());
    }
    let dir = replica.state_dir();
    let free = crate::sys::fsutil::free_space(&dir)?;
    if needed > free {
        return Err(Error::Refused(Refusal::NoSpace {
            needed,
            free,
            mount: crate::sys::fsutil::mount_point(&dir),
            root: replica.root.clone(),
        }));
    }
    Ok(())
}

/// Finishes a batch interrupted after its commit (runs the rest of its
/// journal), or removes staging left by one interrupted before. Returns
/// whether a committed batch was pending.
pub fn recover(replica: &mut LockedReplica) -> Result<bool> {
    recover_with(replica, &mut ApplyHooks::default())
}

/// Whether an interrupted batch awaits [`recover`]. Until it is finished
/// the tree is between two states: a scan would take the half-applied
/// paths for local changes, so commands that scan and record must call
/// [`recover`] first (they hold the lock), and `-status` can warn.
pub fn is_pending(replica: &Replica) -> Result<bool> {
    // A connection of its own, read-only: `-status` may run where the
    // replica cannot be written, and must see the journal as committed.
    state::State::open_read_only(&replica.state_dir())?.has_pending_apply()
}

/// [`recover`] with crash injection, for tests.
pub fn recover_with(replica: &mut LockedReplica, hooks: &mut ApplyHooks) -> Result<bool> {
    Ok(recover_noting(replica, hooks)?.is_some())
}

/// What finishing an interrupted import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Conflict copies kept, actions skipped: the first
    /// [`lines::LINES_HELD`], the rest in `report_file`.
    pub notes: Vec<String>,
    pub notes_more: u64,
    /// Steps that failed (rule 9): the first [`lines::LINES_HELD`], the
    /// rest in `report_file`.
    pub failed: Vec<state::FailedStep>,
    pub failed_more: u64,
    /// See [`ApplyReport::report_file`].
    pub report_file: Option<PathBuf>,
}

/// [`recover`], returning what finishing the pending batch did, or `None`
/// when nothing was pending: for a command to tell the user.
pub fn recover_reporting(replica: &mut LockedReplica) -> Result<Option<Recovered>> {
    recover_noting(replica, &mut ApplyHooks::default())
}

fn recover_noting(
    replica: &mut LockedReplica,
    hooks: &mut ApplyHooks,
) -> Result<Option<Recovered>> {
    // A batch's scratch database left by a crash (never part of a commit).
    batch::remove_stale(replica.state())?;
    if !replica.state().has_pending_apply()? {
        let staging = staging_dir(replica);
        if staging.exists() {
            // Staging of a batch that never committed holds only staged
            // content; anything set aside is kept all the same.
            disk::keep_leftovers(&staging, &replica.state_dir())?;
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        }
        return Ok(None);
    }
    let mut lines = lines::Lines::new(&replica.state_dir());
    let executed = disk::execute(replica, &mut JournalPages::new(replica), hooks, &mut lines)?;
    finish(replica, &executed.failures, &mut lines, hooks)?;
    Ok(Some(Recovered {
        report_file: lines.close()?,
        notes: std::mem::take(&mut lines.conflicts),
        notes_more: lines.conflicts_more,
        failed: std::mem::take(&mut lines.failed),
        failed_more: lines.failed_more,
    }))
}

/// Actions of the journal read back from the state database at once.
const JOURNAL_PAGE: usize = 1024;

/// The committed journal's actions with their numbers, in order, read a
/// page ([`JOURNAL_PAGE`]) at a time: a batch that changes a million
/// paths has millions of them.
pub(crate) struct JournalPages<'a> {
    state: &'a state::State,
    page: std::collections::VecDeque<(u64, Vec<u8>)>,
    /// The number of the next action to read.
    next: u64,
    done: bool,
}

impl<'a> JournalPages<'a> {
    fn new(replica: &'a Replica) -> JournalPages<'a> {
        JournalPages {
            state: replica.state(),
            page: Default::default(),
            next: 0,
            done: false,
        }
    }

    fn read_page(&mut self) -> Result<()> {
        let rows: Vec<(i64, Vec<u8>)> = self
            .state
            .conn()
            .prepare_cached(&format!(
                "SELECT seq, action FROM pending_apply WHERE seq >= ?1 ORDER BY seq \
                 LIMIT {JOURNAL_PAGE}"
            ))
            .and_then(|mut s| {
                s.query_map([self.next as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.state.db_error(e))?;
        self.done = rows.len() < JOURNAL_PAGE;
        if let Some((last, _)) = rows.last() {
            self.next = *last as u64 + 1;
        }
        self.page
            .extend(rows.into_iter().map(|(seq, bytes)| (seq as u64, bytes)));
        Ok(())
    }
}

impl Iterator for JournalPages<'_> {
    type Item = Result<(u64, Action)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            if let Err(err) = self.read_page() {
                self.done = true;
                return Some(Err(err));
            }
        }
        let (seq, bytes) = self.page.pop_front()?;
        Some(
            Action::decode(&bytes)
                .map(|action| (seq, action))
                .map_err(|e| Error::CorruptState {
                    path: self.state.path().to_path_buf(),
                    what: format!("apply journal: {e}"),
                }),
        )
    }
}

fn staging_dir(replica: &Replica) -> PathBuf {
    replica.state_dir().join(STAGING_DIR)
}

/// Step (c): one transaction with everything the batch changes in the
/// database, and the journal of its disk actions.
fn commit(
    replica: &mut LockedReplica,
    batch: &batch::OpBatch,
    plan: &plan::Plan,
    receipt: Option<&Receipt>,
    staged_durable: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let me = replica.identity.replica_id;
    let now = crate::sys::clock::now_ns();
    if !plan.local_ops.is_empty() {
        if let Some(wait) = crate::sync::family::restore_wait(replica)? {
            return Err(Error::Refused(Refusal::OperationLog {
                what: format!(
                    "this packet's changes meet local ones and would need a new change of this \
                     replica's own (a conflict copy), which it cannot number while it is being \
                     restored from a backup; it waits for {wait}"
                ),
            }));
        }
    }
    let secret = match plan.local_ops.is_empty() {
        true => None,
        false => Some(replica.signing_key()?.to_bytes()),
    };
    let source = match receipt {
        Some(receipt) => format!("packet {}", receipt.file_name),
        None => "an import".to_string(),
    };
    replica.state_mut().transaction(|tx| {
        state::create_pending_apply(tx)?;
        state::set_pending_apply_source(tx, &source)?;
        // The pieces of the chunks staged: so that this replica, too, can
        // send a later change of these files as recipes.
        // (Noted in the scratch database as they were staged, if any.)
        if !plan.jobs.is_empty() {
            state::put_chunk_pieces_from(tx, "batch.pieces")?;
        }
        // Before the entries change: what a path's entry goes back to if
        // a step on it fails for good.
        plan.actions.for_each_path(tx, |path| {
            state::keep_entry_before_apply(tx, path).map_err(state::TxError::from)
        })?;
        // The batch writes these paths anew: an earlier failure on them
        // is moot (a failure of this batch is recorded again).
        state::forget_failed_steps_in(tx, "SELECT path FROM batch.planned")?;
        for member in &plan.new_members {
            state::insert_member(tx, member, now)?;
        }
        for removed in &plan.removed {
            state::mark_removed(tx, removed)?;
        }
        // Copied from the scratch database inside this transaction: the
        // log gets them all, or none. The planner accepted exactly the
        // operations that are not repeats, or refused the batch.
        let logged = batch.log_into(tx)?;
        batch.note_member_keys(tx)?;
        for (rotation, encryption_key) in &plan.rotations {
            state::rekey_member(tx, rotation, encryption_key)?;
        }
        if logged != plan.accepted {
            return Err(Error::CorruptState {
                path: batch.file().to_path_buf(),
                what: format!(
                    "the batch logs {logged} operations where its plan accepted {}",
                    plan.accepted
                ),
            }
            .into());
        }
        plan.local_ops.for_each(tx, |op| {
            state::append_operation(tx, op).map_err(state::TxError::from)
        })?;
        for (origin, epoch) in &plan.raised {
            state::set_epoch(tx, &me, origin, *epoch)?;
        }
        if let Some((first, last)) = plan.local_ops.epochs() {
            state::set_epoch(tx, &me, &me, last)?;
            let secret = secret.expect("loaded when the plan has local operations");
            state::seal_own_run(tx, &secret, &me, first, last)?;
        }
        // Read from the scratch database inside this transaction, one
        // row at a time.
        plan.entries.for_each_row(tx, |path, entry| {
            state::put_entry(
                tx,
                &state::EntryWrite {
                    path,
                    state: &entry.state,
                    version: &entry.version,
                    author: &entry.author,
                    stat: None,
                    scanned_ns: None,
                },
            )
            .map_err(Into::into)
        })?;
        // In the order they run, numbered from 0, from the scratch
        // database inside this transaction.
        let journalled = plan.actions.journal_into(tx)?;
        if journalled != plan.actions.len() {
            return Err(Error::CorruptState {
                path: batch.file().to_path_buf(),
                what: format!(
                    "the journal got {journalled} disk actions where the plan has {}",
                    plan.actions.len()
                ),
            }
            .into());
        }
        if let Some(receipt) = receipt {
            // The sender had everything in its row: raise the estimate of it.
            for (origin, epoch) in &receipt.epoch_row {
                state::raise_epoch(tx, &receipt.sender, origin, *epoch)?;
            }
            // And keep it as what the sender confirmed having, so that
            // exports to it resend only what it lacks (`crate::sync::export`).
            state::note_confirmation(
                tx,
                &receipt.sender,
                &receipt.epoch_row,
                receipt.at_ns,
                &receipt.file_name,
            )?;
            for seal in &receipt.seals {
                state::put_seal(tx, seal)?;
            }
            state::log_packet(
                tx,
                "received",
                &receipt.sender,
                &receipt.packet_id,
                receipt.sequence,
                &receipt.file_name,
                receipt.at_ns,
            )?;
        }
        // Last: the journal commits only once what it moves into the tree
        // is on disk.
        staged_durable()?;
        Ok(())
    })
}

/// Step (e): the journal is done; forget it and the staged files. In the
/// same transaction, each path of a step that failed gets back the entry
/// it had before the batch (the tree still holds that version, or what a
/// scan will find), and the failure is recorded; the failures as recorded
/// go to `lines`. Returns the time the disk steps were done by
/// ([`state::mark_placed`]).
fn finish(
    replica: &mut LockedReplica,
    failures: &disk::Failures,
    lines: &mut lines::Lines,
    hooks: &mut ApplyHooks,
) -> Result<i64> {
    hooks.step("before clearing the journal")?;
    let at_ns = crate::sys::clock::now_ns();
    replica.state_mut().transaction(|tx| {
        let source =
            state::pending_apply_source(tx)?.unwrap_or_else(|| "an interrupted import".to_string());
        failures.for_each(|failure| {
            state::restore_entry_before_apply(tx, &failure.path)?;
            let step = state::FailedStep {
                path: failure.path.clone(),
                source: source.clone(),
                at_ns,
                step: failure.step.clone(),
                error: failure.error.clone(),
            };
            state::add_failed_step(tx, &step)?;
            lines.failed(step).map_err(state::TxError::from)
        })?;
        // Every disk step is done: what the batch placed is as it left it
        // until `at_ns`.
        state::mark_placed(tx, at_ns)?;
        state::clear_pending_apply(tx)?;
        Ok(())
    })?;
    hooks.step("after clearing the journal")?;
    let staging = staging_dir(replica);
    // A version an interrupted action moved aside is kept, never deleted
    // with the staging folder.
    disk::keep_leftovers(&staging, &replica.state_dir())?;
    match std::fs::remove_dir_all(&staging) {
        Ok(()) => Ok(at_ns),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(at_ns),
        Err(err) => Err(Error::io(&staging, err)),
    }
}
