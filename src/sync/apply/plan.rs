//! Step (a): decide every path's final state and every disk action.
//! Nothing here writes; an error refuses the batch unchanged.
//!
//! Memory: the batch's operations stay in its scratch database
//! ([`super::batch::OpBatch`]) and are read back in slices of at most
//! [`super::batch::OPS_IN_MEMORY`]; per operation the plan keeps one bit
//! (superseded). The paths' final entries go to the same scratch
//! database ([`super::planned::Planned`], at most
//! [`super::planned::HOT_MAX`] in memory), and the walks over them
//! (structure repair, the disk actions) read them back a page at a
//! time. The disk actions go to the same database as they are derived
//! ([`super::spool`]), and the journal is run from the state database a
//! page at a time; so do the files it stages (new content) and where
//! their chunks go ([`crate::sync::assemble::Targets`]), the folders
//! whose content changes ([`super::spool::Folders`]) and the names
//! reserved for kept versions ([`super::spool::ReservedNames`]), and this
//! replica's own operations (conflict copies, resolutions, folders made:
//! [`super::spool::LocalOps`]); the conflicts' notes are bounded
//! ([`super::lines`]). What the plan still holds in memory grows with the
//! replica's recorded entries, with the paths whose conflict it resolves
//! and the conflict copies it names (a version vector, a path), and, on a
//! filesystem that folds names, with the paths made: not with the
//! operations, nor with the other paths whose entry, disk state or
//! content changes.

use std::cell::{Cell, OnceCell, RefCell};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::batch::{OpBatch, OpBits};
use super::journal::{Action, Expect, MetaKind};
use super::lines::Lines;
use super::merge;
use super::planned::{Only, Planned};
use super::spool::{Actions, Folders, Group, LocalOps, ReservedNames};
use super::ApplyReport;
use crate::error::{Error, Refusal, Result};
use crate::ops::{Causality, Change, Id, Operation, PathState, Timestamp, VersionVector};
use crate::replica::Replica;
use crate::store::identity;
use crate::store::layout::DELETED_DIR;
use crate::store::layout::STATE_DIR;
use crate::store::state::{Member, RecordedEntry, Removed};
use crate::sync::assemble::Targets;
use crate::tree::confined::{ConfinedRoot, DiskKind};
use crate::tree::excludes::Excludes;
use crate::tree::folding::Folding;
use crate::tree::relpath::{self, ancestors, NAME_MAX, PATH_MAX};
use rustix::fs::FileType;
use rustix::io::Errno;

/// Mode of directories this replica creates to hold incoming paths.
const DEFAULT_DIR_MODE: u32 = 0o755;

/// A path's state as the batch leaves it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub state: PathState,
    pub version: VersionVector,
    pub author: Id,
}

/// Everything a batch will do.
pub(crate) struct Plan {
    /// How many new incoming operations the log gets (every one of the
    /// batch that is not a repeat; they stay in its scratch database).
    pub accepted: u64,
    /// Origin -> new epoch of this replica's own row.
    pub raised: BTreeMap<Id, u64>,
    pub new_members: Vec<Member>,
    /// Members this batch removes (`RemoveMember`), with the removing
    /// operation's origin and epoch.
    pub removed: Vec<Removed>,
    /// Members' key rotations (`RekeyMember`), with the encryption key
    /// each announces.
    pub rotations: Vec<(crate::store::state::Rotation, String)>,
    /// Operations this replica records itself (conflict copies, kept
    /// dirs), in the batch's scratch database (flushed).
    pub local_ops: LocalOps,
    /// Final entries of every path the batch touches, in the batch's
    /// scratch database (flushed).
    pub entries: Planned,
    /// Disk actions, in the batch's scratch database (flushed), for the
    /// commit to copy into the journal in the order they run.
    pub actions: Actions,
    /// The files to assemble in the staging folder (`staging/<n>`), in
    /// the batch's scratch database (finished).
    pub jobs: Targets,
    /// The recorded state before the batch: where local chunks are.
    pub recorded: crate::store::state::Entries,
    /// Conflict copies this batch makes, by path, with the path whose
    /// version each keeps: content missing for a copy is asked of the
    /// sender under that path (a path the sender has; the copy's name is
    /// this replica's).
    pub copies_of: HashMap<Vec<u8>, Vec<u8>>,
    pub report: ApplyReport,
    /// The conflicts' notes (bounded: see [`Lines`]); the journal's run
    /// adds its own.
    pub lines: Lines,
}

fn hostile(path: &[u8], why: impl Into<String>) -> Error {
    Error::hostile(relpath::display(path), why)
}

fn log_refusal(what: impl Into<String>) -> Error {
    Error::Refused(Refusal::OperationLog { what: what.into() })
}

fn membership_refusal(what: impl Into<String>) -> Error {
    Error::Refused(Refusal::Membership { what: what.into() })
}

/// Checks a path from a packet on its bytes alone: not empty, relative,
/// no empty, `.` or `..` component, no NUL, no `.syncreplica` component,
/// names of at most 255 bytes.
pub fn validate_path(path: &[u8]) -> Result<()> {
    match relpath::lexical_problem(path) {
        Some(why) => Err(hostile(path, why)),
        None => Ok(()),
    }
}

/// [`validate_path`] for a path with the state a packet gives it: the
/// empty path names the replica root (packet format 2.10, SPEC.md §6.5),
/// valid only as a directory; a root that would become a file, a symlink,
/// a special file or nothing is refused as hostile.
pub fn validate_path_state(path: &[u8], state: &PathState) -> Result<()> {
    if !path.is_empty() {
        return validate_path(path);
    }
    match state {
        PathState::Directory { .. } => Ok(()),
        PathState::Deleted => Err(hostile(
            path,
            "it removes the replica root (the root is only ever a directory)",
        )),
        _ => Err(hostile(
            path,
            format!(
                "it names the replica root as a {} (the root is only ever a directory)",
                crate::tree::scan::type_name(state)
            ),
        )),
    }
}

/// Critical metadata keys (SPEC.md §6.4) this version applies: none yet.
const KNOWN_CRITICAL_KEYS: &[u32] = &[];

fn needs_newer(what: String) -> Error {
    Error::Refused(Refusal::NeedsNewer { what })
}

/// What in `op` a later format version added that this version can
/// neither apply nor ignore (SPEC.md §6.2–6.4), if anything.
pub(crate) fn needs_newer_for(op: &Operation) -> Option<String> {
    if let Change::Unknown { kind, .. } = &op.change {
        return (!op.change.is_informational())
            .then(|| format!("operation {} (operation kind {kind})", op.epoch));
    }
    let change = op.change.path_change()?;
    let path = relpath::display(change.path);
    if let PathState::Unknown { kind, .. } = change.state {
        return Some(format!("the state of \"{path}\" (path-state kind {kind})"));
    }
    let ext = change.state.extensions()?;
    let key = ext.unknown_critical(KNOWN_CRITICAL_KEYS)?;
    Some(format!("the metadata of \"{path}\" (critical key {key})"))
}

/// Checks an incoming state and drops what is never applied (bits
/// outside `0o7777`, a directory's setuid bit): what an import applies and
/// what `mkreplica -import` makes alike. A file's setuid/setgid bits are
/// kept in the state; whether they go on disk is the receiver's
/// ([`crate::tree::meta::set_id_bits_kept`]). Refuses ([`Refusal::HostilePath`]) a file whose chunks are not
/// 1 ..= [`packet_format::MAX_CHUNK_LEN`] bytes each or whose size is not
/// their sum, and a symlink target that is empty, too long or holds NUL.
/// Operations are checked by [`needs_newer_for`] first.
pub(crate) fn sanitize(path: &[u8], state: &PathState) -> Result<PathState> {
    Ok(match state {
        PathState::File {
            mode,
            mtime,
            size,
            chunks,
            ext,
        } => {
            // SPEC.md §13: no writer makes another length, and the
            // assembler sizes the file from these before any byte arrives.
            if let Some(bad) = chunks
                .iter()
                .find(|c| c.len == 0 || c.len as usize > packet_format::MAX_CHUNK_LEN)
            {
                return Err(hostile(
                    path,
                    format!(
                        "its chunk {} is {} bytes long (chunks are 1 to {} bytes)",
                        hex::encode(bad.id),
                        bad.len,
                        packet_format::MAX_CHUNK_LEN
                    ),
                ));
            }
            let total: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
            if total != *size {
                return Err(hostile(
                    path,
                    format!("its size {size} is not the sum of its chunks ({total})"),
                ));
            }
            PathState::File {
                mode: mode & 0o7777,
                mtime: *mtime,
                size: *size,
                chunks: chunks.clone(),
                ext: ext.clone(),
            }
        }
        PathState::Directory { mode, mtime, ext } => PathState::Directory {
            mode: mode & 0o3777,
            mtime: *mtime,
            ext: ext.clone(),
        },
        PathState::Symlink { target, .. } => {
            if target.is_empty() || target.contains(&0) || target.len() > PATH_MAX {
                return Err(hostile(
                    path,
                    "its symlink target is empty, too long or contains NUL",
                ));
            }
            state.clone()
        }
        PathState::Special {
            kind,
            mode,
            major,
            minor,
            mtime,
            ext,
        } => {
            if !(1..=4).contains(kind) {
                return Err(needs_newer(format!(
                    "the state of \"{}\" (special file kind {kind})",
                    relpath::display(path)
                )));
            }
            PathState::Special {
                kind: *kind,
                mode: mode & 0o7777,
                major: *major,
                minor: *minor,
                mtime: *mtime,
                ext: ext.clone(),
            }
        }
        PathState::Deleted => PathState::Deleted,
        PathState::Unknown { kind, .. } => {
            return Err(needs_newer(format!(
                "the state of \"{}\" (path-state kind {kind})",
                relpath::display(path)
            )))
        }
    })
}

fn mtime_rank(state: &PathState) -> (bool, bool, Timestamp) {
    (
        matches!(state, PathState::Directory { .. }),
        !matches!(state, PathState::Deleted),
        match state {
            PathState::File { mtime, .. } => *mtime,
            _ => Timestamp::default(),
        },
    )
}

/// Whether `a` wins a conflict against the different state `b`: a
/// directory beats anything else, any state beats `Deleted`, then the newer
/// file mtime (others count as 0), then the greater postcard encoding.
pub fn winner_is_first(a: &PathState, b: &PathState) -> bool {
    match mtime_rank(a).cmp(&mtime_rank(b)) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => {
            postcard::to_stdvec(a).expect("states encode")
                > postcard::to_stdvec(b).expect("states encode")
        }
    }
}

/// The join of two different states held under one version (see
/// `Causality::Equal` in [`Planner::path_operation`]): their field-by-field
/// merge where they are one object ([`merge::merge`]), else rule 5's
/// winner; with the author it keeps.
fn join_states(a: &PathState, a_author: Id, b: &PathState, b_author: Id) -> (PathState, Id) {
    let sides = merge::Sides::named("", "");
    if let Some((merged, _)) = merge::merge(a, b, &sides) {
        return (merged, a_author.max(b_author));
    }
    if winner_is_first(a, b) {
        (a.clone(), a_author)
    } else {
        (b.clone(), b_author)
    }
}

/// `NAME.sync-conflict-YYYYMMDD-HHMMSS-REPLICA.EXT` for a file `name`
/// whose losing version has mtime `mtime` and was made by `replica`
/// (`NAME.sync-conflict-REPLICA.EXT` for a version without a time, such
/// as a symlink's). Years outside 0..=9999 print with their sign or extra
/// digits.
/// The extension is what follows the last `.` that is not the name's first
/// character. The stem is shortened if the name would exceed 255 bytes.
pub fn conflict_copy_name(name: &[u8], mtime: Option<Timestamp>, replica: &str) -> Vec<u8> {
    let dot = name.iter().rposition(|&b| b == b'.').filter(|&i| i > 0);
    let (stem, ext) = match dot {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    let middle = match mtime {
        Some(mtime) => {
            let stamp = packet_format::utc_timestamp(mtime.secs).replace('T', "-");
            format!(".sync-conflict-{}-{replica}", stamp.trim_end_matches('Z'))
        }
        None => format!(".sync-conflict-{replica}"),
    };
    let ext_len = ext.map_or(0, |e| e.len() + 1);
    let keep = NAME_MAX
        .saturating_sub(middle.len() + ext_len)
        .min(stem.len());
    let mut out = stem[..keep].to_vec();
    out.extend_from_slice(middle.as_bytes());
    if let Some(ext) = ext {
        out.push(b'.');
        out.extend_from_slice(ext);
    }
    out
}

fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = parent.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The range of keys strictly below `path` in a sorted map.
fn below(path: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut lo = path.to_vec();
    lo.push(b'/');
    let mut hi = path.to_vec();
    hi.push(b'/' + 1);
    (lo, hi)
}

/// Polynomial hashes of byte strings modulo the prime 2^61 - 1, with a
/// base drawn at random per process (so no packet can be made to
/// collide): the hashes of all the prefixes of a path in one pass. Equal
/// hashes are only a hint, always confirmed by comparing the paths.
#[derive(Debug, Clone, Copy)]
struct PrefixHasher {
    base: u64,
}

const HASH_PRIME: u64 = (1 << 61) - 1;

impl PrefixHasher {
    fn new() -> PrefixHasher {
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        PrefixHasher {
            base: 256 + random % (HASH_PRIME - 512),
        }
    }

    /// `hash * base + byte + 1` modulo the prime, for `hash` below it
    /// (2^61 ≡ 1: the high bits fold onto the low ones).
    fn step(&self, hash: u64, byte: u8) -> u64 {
        let product = u128::from(hash) * u128::from(self.base) + u128::from(byte) + 1;
        let folded = (product as u64 & HASH_PRIME) + (product >> 61) as u64;
        if folded >= HASH_PRIME {
            folded - HASH_PRIME
        } else {
            folded
        }
    }

    fn hash(&self, bytes: &[u8]) -> u64 {
        bytes.iter().fold(0, |hash, &byte| self.step(hash, byte))
    }

    /// (length, hash) of each proper ancestor of `path`, shallowest first
    /// (as [`ancestors`] lists them).
    fn ancestors(&self, path: &[u8]) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        let mut hash = 0;
        for (i, &byte) in path.iter().enumerate() {
            if byte == b'/' {
                out.push((i, hash));
            }
            hash = self.step(hash, byte);
        }
        out
    }
}

/// Exact names in one folder.
type Names = HashSet<Vec<u8>>;

/// A file version's content, as a key.
type ChunkIds = Vec<crate::ops::ChunkRef>;

/// A hard-link set's content conflict: (its leader, the losing content,
/// the loser's author, the winner's author).
type LinkCopyKey = (Vec<u8>, ChunkIds, Id, Id);

struct Planner<'a> {
    root: &'a Path,
    /// The state's connection, with the batch's scratch database attached.
    conn: &'a rusqlite::Connection,
    confined: ConfinedRoot,
    me: Id,
    excludes: Excludes,
    /// What this replica keeps (special files it does not keep are
    /// recorded, not made).
    preserve: crate::tree::meta::Preserve,
    recorded: crate::store::state::Entries,
    /// Live recorded paths, sorted, for "anything below this?" questions.
    recorded_live: BTreeSet<Vec<u8>>,
    /// Entries as the batch leaves them, spilled to the scratch database.
    planned: Planned,
    members: Vec<Member>,
    new_members: Vec<Member>,
    removed: Vec<Removed>,
    rotations: Vec<(crate::store::state::Rotation, String)>,
    last: HashMap<Id, u64>,
    raised: BTreeMap<Id, u64>,
    accepted: u64,
    own_epoch: u64,
    /// Restored from a backup and not yet whole again: this replica's own
    /// changes that siblings return are accepted (`mkreplica -restore`).
    restoring: bool,
    local_ops: LocalOps,
    /// Paths whose conflict this batch resolved, with the merged version
    /// the resolution was stored under.
    resolved: BTreeMap<Vec<u8>, VersionVector>,
    /// See [`Plan::copies_of`].
    copies_of: HashMap<Vec<u8>, Vec<u8>>,
    /// Metadata conflicts of hard-link sets reported so far: (leader, the
    /// note after its path) -> (place in `lines.conflicts`, the names):
    /// a set's names share one inode, so one conflict is said once.
    link_conflicts: HashMap<(Vec<u8>, String), (usize, Vec<String>)>,
    /// Content conflicts of hard-link sets reported so far: (leader, the
    /// losing version, its author, the winner's author) -> (place in
    /// `lines.conflicts`, the names, the note after the first name): one
    /// conflict and one copy per set.
    link_copies: HashMap<LinkCopyKey, (usize, Vec<String>, String)>,
    report: ApplyReport,
    /// The conflicts' notes, the first held, the rest in a report file.
    lines: Lines,
    now_ns: i64,
    /// Operations (by position in the batch) that a later operation of
    /// this batch on the same path has already seen: only the later one is
    /// compared with the local state. Conflicts are thus judged on the
    /// newest version each side has, whatever way the operations were
    /// batched, and the content of a version overwritten at its sender is
    /// never needed.
    superseded: OpBits,
    /// Keyed hashes of path prefixes (see [`PrefixHasher`]).
    hasher: PrefixHasher,
    /// Hashes of the paths `planned` holds as symlinks, with their counts:
    /// which ancestors of a path may be planned links, in one pass.
    link_hashes: HashMap<u64, u32>,
    /// Paths not made because they do not fit below the root
    /// (`relpath::fits_below`): the first in batch order, and how many
    /// (counted per operation; only the first is named).
    too_long: Option<(Vec<u8>, u64)>,
    /// Per origin, the last epoch scrubbed from the log (0: none): a merge
    /// base older than that may not be the versions' latest common one.
    scrubbed_through: BTreeMap<Id, u64>,
    /// Whether `batch.log_paths` (the log's path operations by path, for
    /// [`Planner::merge_base`]) is built: on the first merge base looked
    /// up, in one pass over the log.
    log_index: Cell<bool>,
    /// Rows of the operation log and the batch stepped through without an
    /// index to find merge bases (for tests: `SYNCREPLICA_TEST_COUNTS`).
    log_rows_read: Cell<u64>,
    /// How the replica's filesystem compares names (`tree::folding`).
    folding: Folding,
    /// On a filesystem that folds names: exact names listed in each
    /// directory looked at (`None`: not listable), by directory path.
    listings: RefCell<HashMap<Vec<u8>, Option<Names>>>,
    /// On a filesystem that folds names: recorded live paths by folding
    /// key, made on first use.
    recorded_keys: OnceCell<HashMap<Vec<u8>, Vec<Vec<u8>>>>,
}

/// At most this many pairwise-concurrent versions of one path in one
/// batch (SPEC.md §13), or one per member when the family is larger:
/// each origin's versions of a path are ordered (an origin only ever
/// raises its own version of a path), so a real history has at most one
/// per origin, and planning costs the operations on a path times this.
pub const MAX_CONCURRENT_VERSIONS: usize = 256;

/// The operations of `batch` that a later one on the same path
/// supersedes, by position. Each path's operations are walked from the
/// last (read from the scratch database in path order, one at a time),
/// keeping the latest versions no later one has seen (pairwise
/// concurrent): a later operation has seen this one exactly when one of
/// those has. Refuses ([`Refusal::HostilePath`]) a path with more than
/// `limit` of them. Memory: that frontier, and a bit per operation.
fn superseded_in_batch(
    conn: &rusqlite::Connection,
    batch: &OpBatch,
    limit: usize,
) -> Result<OpBits> {
    let mut superseded = OpBits::default();
    let mut current: Option<Vec<u8>> = None;
    // The maximal versions of the operations after the current one.
    let mut frontier: Vec<VersionVector> = Vec::new();
    // A repeated operation is never applied (the planner skips it as
    // already had), so it supersedes nothing: the batch leaves repeats out.
    batch.for_each_by_path_backwards(conn, |path, position, mine| {
        if current.as_deref() != Some(path) {
            current = Some(path.to_vec());
            frontier.clear();
        }
        // Not an equal version: two states under one version are two
        // members' resolutions, which are joined (`Causality::Equal` in
        // `path_operation`), not one replacing the other.
        let seen_later = frontier
            .iter()
            .any(|later| later.compare(mine) == Causality::After);
        if seen_later {
            superseded.set(position);
            return Ok(());
        }
        frontier.retain(|later| later.compare(mine) != Causality::Before);
        frontier.push(mine.clone());
        if frontier.len() > limit {
            return Err(hostile(
                path,
                format!(
                    "this packet gives it more than {limit} pairwise-concurrent versions \
                     (the limit per path and packet; a family makes at most one per member)"
                ),
            ));
        }
        Ok(())
    })?;
    Ok(superseded)
}

/// Plans a batch: see the module documentation of [`super`] for the rules.
pub(crate) fn plan(replica: &Replica, batch: &OpBatch) -> Result<Plan> {
    let me = replica.identity.replica_id;
    let last = replica.state().epoch_row(&me)?;
    let own_epoch = last.get(&me).copied().unwrap_or(0);
    let recorded = replica.take_entries()?;
    let recorded_live = recorded
        .iter()
        .filter(|(_, e)| e.state != PathState::Deleted)
        .map(|(p, _)| p.clone())
        .collect();
    let members = replica.members()?;
    let conn = replica.state().conn();
    let superseded = superseded_in_batch(conn, batch, MAX_CONCURRENT_VERSIONS.max(members.len()))?;
    let planned = Planned::create(conn, batch.file())?;
    let mut planner = Planner {
        root: &replica.root,
        conn,
        confined: ConfinedRoot::open(&replica.root)?,
        me,
        excludes: replica.excludes()?,
        preserve: replica.preserve(),
        recorded,
        recorded_live,
        planned,
        members,
        new_members: Vec::new(),
        removed: Vec::new(),
        rotations: Vec::new(),
        last,
        raised: BTreeMap::new(),
        accepted: 0,
        own_epoch,
        restoring: crate::sync::family::restore_wait(replica)?.is_some(),
        local_ops: LocalOps::create(conn, batch.file())?,
        resolved: BTreeMap::new(),
        copies_of: HashMap::new(),
        link_conflicts: HashMap::new(),
        link_copies: HashMap::new(),
        report: ApplyReport::default(),
        lines: Lines::new(&replica.state_dir()),
        now_ns: crate::sys::clock::now_ns(),
        superseded,
        too_long: None,
        scrubbed_through: replica
            .state()
            .checkpoints()?
            .into_iter()
            .map(|(origin, checkpoint)| (origin, checkpoint.through))
            .collect(),
        hasher: PrefixHasher::new(),
        link_hashes: HashMap::new(),
        log_index: Cell::new(false),
        log_rows_read: Cell::new(0),
        folding: replica.folding()?,
        listings: RefCell::new(HashMap::new()),
        recorded_keys: OnceCell::new(),
    };
    batch.for_each(conn, |position, op| planner.operation(position, op))?;
    planner.fold_collisions()?;
    planner.record_resolutions()?;
    planner.repair_structure()?;
    crate::sys::testhook::count("merge-base-log-rows", planner.log_rows_read.get());
    planner.finish()
}

impl Planner<'_> {
    fn label(&self, id: &Id) -> String {
        self.members
            .iter()
            .find(|m| m.replica == *id)
            .filter(|m| identity::validate_name(&m.name).is_ok())
            .map(|m| m.name.clone())
            .unwrap_or_else(|| id.to_hex())
    }

    fn operation(&mut self, position: u64, op: &Operation) -> Result<()> {
        let last = self.last.get(&op.origin).copied().unwrap_or(0);
        if op.epoch <= last {
            self.report.already_had += 1;
            return Ok(());
        }
        if op.origin == self.me && !self.restoring {
            return Err(log_refusal(format!(
                "operation {} claims to come from this replica, which has recorded only {last}",
                op.epoch
            )));
        }
        if op.epoch != last + 1 {
            return Err(log_refusal(format!(
                "operations of {} are not contiguous: {} follows {last}, so {}..{} are missing",
                self.label(&op.origin),
                op.epoch,
                last + 1,
                op.epoch - 1
            )));
        }
        if let Some(what) = needs_newer_for(op) {
            return Err(needs_newer(format!("{what} of {}", self.label(&op.origin))));
        }
        self.last.insert(op.origin, op.epoch);
        self.raised.insert(op.origin, op.epoch);
        if op.origin == self.me {
            // A change of its own that this replica, restored from a
            // backup, forgot and a sibling returns.
            self.own_epoch = self.own_epoch.max(op.epoch);
        }
        self.accepted += 1;
        match &op.change {
            Change::AddMember {
                replica,
                name,
                public_key,
            } => self.add_member(*replica, name, *public_key),
            Change::RemoveMember { replica, name } => {
                self.remove_member(op.origin, op.epoch, *replica, name)
            }
            Change::RekeyMember {
                replica,
                old_key,
                new_key,
                encryption_key,
            } => self.rekey_member(op, *replica, *old_key, *new_key, encryption_key),
            Change::Path { path, state, .. } | Change::Resolve { path, state, .. }
                if self.superseded.get(position) =>
            {
                // Logged (above) but not compared: see `superseded`.
                validate_path_state(path, state)
            }
            Change::Path {
                path,
                version,
                state,
            } => self.path_operation(op.origin, path, version, state),
            Change::Resolve {
                path,
                version,
                state,
                author,
            } => self.path_operation(*author, path, version, state),
            // Logged and relayed, never applied (SPEC.md §6.2); the
            // others were refused above.
            Change::Unknown { .. } => Ok(()),
        }
    }

    fn add_member(&mut self, replica: Id, name: &str, public_key: [u8; 32]) -> Result<()> {
        if let Some(known) = self.members.iter().find(|m| m.replica == replica) {
            if known.public_key != public_key {
                return Err(membership_refusal(format!(
                    "member \"{}\" ({replica}) is already known with another signing key",
                    crate::error::printable(&known.name)
                )));
            }
            return Ok(());
        }
        // Validated before it is shown in any message; a bad name refuses
        // this packet, not the whole import.
        identity::validate_name(name).map_err(|err| membership_refusal(err.to_string()))?;
        if let Some(known) = self.members.iter().find(|m| m.name == name) {
            return Err(membership_refusal(format!(
                "new member \"{name}\" ({replica}) has the name of member {}",
                known.replica
            )));
        }
        let member = Member {
            replica,
            name: name.to_string(),
            public_key,
        };
        self.members.push(member.clone());
        self.new_members.push(member);
        Ok(())
    }

    /// A member's key rotation, its own operation `op` (SPEC.md §7.1): the
    /// member's key becomes `new_key` from here on. The seal check took
    /// it already (it verified the member's later runs with `new_key`).
    fn rekey_member(
        &mut self,
        op: &Operation,
        replica: Id,
        old_key: [u8; 32],
        new_key: [u8; 32],
        encryption_key: &str,
    ) -> Result<()> {
        if replica != op.origin {
            return Err(membership_refusal(format!(
                "operation {} of {} rotates the keys of {}: a member rekeys only itself",
                op.epoch,
                self.label(&op.origin),
                self.label(&replica)
            )));
        }
        if encryption_key.parse::<age::x25519::Recipient>().is_err() {
            return Err(membership_refusal(format!(
                "operation {} of {} announces an encryption key that is not an age X25519 \
                 recipient",
                op.epoch,
                self.label(&op.origin)
            )));
        }
        let label = self.label(&replica);
        let Some(member) = self.members.iter_mut().find(|m| m.replica == replica) else {
            return Err(membership_refusal(format!(
                "operation {} of {replica} rotates the keys of a replica that is not a member",
                op.epoch
            )));
        };
        if member.public_key != old_key {
            return Err(membership_refusal(format!(
                "operation {} of \"{label}\" rotates its keys from a key that is not the one \
                 this replica holds for it",
                op.epoch
            )));
        }
        member.public_key = new_key;
        self.rotations.push((
            crate::store::state::Rotation {
                replica,
                epoch: op.epoch,
                old_key,
                new_key,
                at_ns: self.now_ns,
            },
            encryption_key.to_string(),
        ));
        Ok(())
    }

    /// A member removed for good by `origin`'s operation `epoch`. The
    /// removal of an id not (yet) known is kept too: its `AddMember` may
    /// arrive later by another route, and the member stays removed.
    fn remove_member(&mut self, origin: Id, epoch: u64, replica: Id, name: &str) -> Result<()> {
        if replica == origin {
            return Err(membership_refusal(format!(
                "operation {epoch} of {} removes its own origin from the family",
                self.label(&origin)
            )));
        }
        let name = match identity::validate_name(name) {
            Ok(()) => name.to_string(),
            Err(_) => replica.to_hex(),
        };
        self.removed.push(Removed {
            replica,
            name,
            by: origin,
            by_epoch: epoch,
            at_ns: self.now_ns,
        });
        Ok(())
    }

    fn effective(&self, path: &[u8]) -> Result<Option<Entry>> {
        if let Some(entry) = self.planned.get(self.conn, path)? {
            return Ok(Some(entry));
        }
        Ok(self.recorded.get(path).map(|e| Entry {
            state: e.state.clone(),
            version: e.version.clone(),
            author: e.author,
        }))
    }

    fn excluded(&self, path: &[u8], is_dir: bool) -> Result<bool> {
        // Shared patterns never exclude a path recorded (or planned) here.
        let recorded = self
            .effective(path)?
            .is_some_and(|e| e.state != PathState::Deleted);
        self.excluded_as(path, is_dir, recorded)
    }

    /// [`Planner::excluded`], with `recorded` saying whether shared
    /// patterns are out of play for `path`.
    fn excluded_as(&self, path: &[u8], is_dir: bool, recorded: bool) -> Result<bool> {
        let dir_elsewhere = is_dir
            || self
                .effective(path)?
                .is_some_and(|e| matches!(e.state, PathState::Directory { .. }))
            || matches!(self.disk_kind(path)?, DiskKind::Dir(_));
        Ok(self.excludes.excludes_relative(path, is_dir, recorded)
            || (dir_elsewhere && self.excludes.excludes_relative(path, true, recorded)))
    }

    /// No ancestor may be a symlink: as planned by this batch, or on disk
    /// (unless this batch already turned it into a directory).
    /// Allows an operation at `version` below the symlink at `ancestor`
    /// only when the link is recorded (or planned) and the operation is
    /// concurrent with it: the sibling never saw the link and had a
    /// directory there, a conflict of structure the directory wins
    /// (structure repair removes the link, never following it). Anything
    /// else is an attempt to reach through the link.
    fn through_link(
        &self,
        path: &[u8],
        ancestor: &[u8],
        version: &VersionVector,
        where_: &str,
    ) -> Result<()> {
        let planned = self.planned.get(self.conn, ancestor)?;
        let (state, link_version) = match &planned {
            Some(entry) => (Some(&entry.state), Some(&entry.version)),
            None => {
                let entry = self.recorded.get(ancestor);
                (entry.map(|e| &e.state), entry.map(|e| &e.version))
            }
        };
        let concurrent = matches!(state, Some(PathState::Symlink { .. }))
            && link_version.is_some_and(|v| version.compare(v) == Causality::Concurrent);
        if concurrent {
            return Ok(());
        }
        Err(hostile(
            path,
            format!(
                "its parent {} is a symlink {where_}",
                relpath::display(ancestor)
            ),
        ))
    }

    /// Rule 3 for the ancestors of `path`: none may be a symlink, planned
    /// (every one is checked) or on disk (looked up beneath the root, no
    /// symlink followed; the first ancestor that is not a real directory
    /// decides, and only above the first planned link). Near-linear in the
    /// path's length, whatever its depth: planned links are found by
    /// prefix hash, and the first ancestor that is not a directory on disk
    /// by bisection (on a filesystem that does not fold names).
    fn check_ancestors(&self, path: &[u8], version: &VersionVector) -> Result<()> {
        let ancestors = ancestors(path);
        let links = self.planned_links_among(path, &ancestors)?;
        let disk_end = links.first().copied().unwrap_or(ancestors.len());
        if let Some(j) = self.first_not_dir(&ancestors[..disk_end])? {
            let ancestor = ancestors[j];
            let kind = self.disk_kind(ancestor)?;
            let planned_dir = matches!(
                self.planned.get(self.conn, ancestor)?.map(|e| e.state),
                Some(PathState::Directory { .. })
            );
            // Missing, or replaced by a directory before use: nothing
            // below it is reached on disk.
            if let (DiskKind::Symlink(_), false) = (&kind, planned_dir) {
                self.through_link(path, ancestor, version, "in this replica")?;
            }
        }
        for i in links {
            self.through_link(path, ancestors[i], version, "made earlier in this batch")?;
        }
        Ok(())
    }

    /// The indices in `ancestors` (of `path`, shallowest first) of the
    /// ones this batch plans as symlinks.
    fn planned_links_among(&self, path: &[u8], ancestors: &[&[u8]]) -> Result<Vec<usize>> {
        if self.link_hashes.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for (i, (len, hash)) in self.hasher.ancestors(path).into_iter().enumerate() {
            if !self.link_hashes.contains_key(&hash) {
                continue;
            }
            debug_assert_eq!(ancestors[i].len(), len);
            if let Some(PathState::Symlink { .. }) =
                self.planned.get(self.conn, ancestors[i])?.map(|e| e.state)
            {
                found.push(i);
            }
        }
        Ok(found)
    }

    /// The index of the first of `dirs` (a path's ancestors, shallowest
    /// first) that is not a real directory on disk, if any. Where names do
    /// not fold, an ancestor opens as a directory beneath the root exactly
    /// when all before it do, so a bisection finds it.
    fn first_not_dir(&self, dirs: &[&[u8]]) -> Result<Option<usize>> {
        if self.folding.folds() {
            for (i, dir) in dirs.iter().enumerate() {
                if !matches!(self.disk_kind(dir)?, DiskKind::Dir(_)) {
                    return Ok(Some(i));
                }
            }
            return Ok(None);
        }
        let (mut lo, mut hi) = (0, dirs.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.confined.dir_stat(dirs[mid])?.is_some() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok((lo < dirs.len()).then_some(lo))
    }

    /// Sets `path`'s planned entry, keeping [`Planner::link_hashes`] in
    /// step.
    fn set_planned(&mut self, path: &[u8], entry: Entry) -> Result<()> {
        let now_link = matches!(entry.state, PathState::Symlink { .. });
        let was_link = self
            .planned
            .insert(self.conn, path, entry)?
            .is_some_and(|old| matches!(old.state, PathState::Symlink { .. }));
        self.count_link(path, now_link, was_link);
        Ok(())
    }

    /// Removes `path`'s planned entry, keeping [`Planner::link_hashes`] in
    /// step.
    fn unplan(&mut self, path: &[u8]) -> Result<Option<Entry>> {
        let Some(old) = self.planned.remove(self.conn, path)? else {
            return Ok(None);
        };
        self.count_link(path, false, matches!(old.state, PathState::Symlink { .. }));
        Ok(Some(old))
    }

    fn count_link(&mut self, path: &[u8], now_link: bool, was_link: bool) {
        if now_link == was_link {
            return;
        }
        let hash = self.hasher.hash(path);
        if now_link {
            *self.link_hashes.entry(hash).or_default() += 1;
        } else if let Some(count) = self.link_hashes.get_mut(&hash) {
            *count -= 1;
            if *count == 0 {
                self.link_hashes.remove(&hash);
            }
        }
    }

    fn path_operation(
        &mut self,
        origin: Id,
        path: &[u8],
        version: &VersionVector,
        state: &PathState,
    ) -> Result<()> {
        validate_path_state(path, state)?;
        let incoming = sanitize(path, state)?;
        if !relpath::fits_below(self.root, path) {
            // Rule 3: longer than this system takes below this root. Like
            // an excluded path: logged and relayed, never made.
            match &mut self.too_long {
                Some((_, count)) => *count += 1,
                None => self.too_long = Some((path.to_vec(), 1)),
            }
            return Ok(());
        }
        self.check_ancestors(path, version)?;
        let is_dir = matches!(incoming, PathState::Directory { .. });
        if self.excluded(path, is_dir)? {
            self.report.skipped_excluded += 1;
            return Ok(());
        }
        let local = self.effective(path)?.unwrap_or(Entry {
            state: PathState::Deleted,
            version: VersionVector::default(),
            author: origin,
        });
        match version.compare(&local.version) {
            Causality::After => {
                self.set_planned(
                    path,
                    Entry {
                        state: incoming,
                        version: version.clone(),
                        author: origin,
                    },
                )?;
            }
            Causality::Before => self.report.already_had += 1,
            Causality::Equal if local.state == incoming => self.report.already_had += 1,
            Causality::Equal => {
                // Two states under one version: members that merged the
                // same concurrent versions in different groupings (three
                // members, say) and sent their resolutions. Every merge
                // is a join, so taking the join of both here (no new
                // version, no report: the merges reported) brings every
                // member to the same state once all resolutions arrived.
                let (state, author) = join_states(&local.state, local.author, &incoming, origin);
                if state != local.state {
                    self.set_planned(
                        path,
                        Entry {
                            state,
                            version: local.version,
                            author,
                        },
                    )?;
                }
            }
            Causality::Concurrent => {
                let incoming_version = version;
                let version = local.version.merged(version);
                if local.state == incoming {
                    let author = local.author.max(origin);
                    self.set_planned(
                        path,
                        Entry {
                            state: incoming,
                            version,
                            author,
                        },
                    )?;
                    return Ok(());
                }
                // Two versions of one object that differ in metadata only
                // (a folder's are always merged: nothing below it is
                // lost): merged field by field, the same at every member,
                // so that a local chmod is not undone by a sibling's new
                // time below it; every field that differed is reported.
                let (mine, theirs) = (self.label(&local.author), self.label(&origin));
                let sides = merge::Sides::named(&theirs, &mine);
                // Three-way against the latest state both versions descend
                // from, so that a field only one side changed keeps that
                // change; it is looked up only when the versions differ in
                // a field the two-way merge would decide.
                let two_way = merge::merge(&incoming, &local.state, &sides);
                let base = match &two_way {
                    Some((_, notes)) if !notes.is_empty() => {
                        // A base of another kind (a file where both now
                        // have a folder, a deletion) is no base for it.
                        let same_kind = |base: &PathState| {
                            std::mem::discriminant(base) == std::mem::discriminant(&local.state)
                        };
                        Some(
                            self.merge_base(path, incoming_version, &local.version)?
                                .filter(same_kind),
                        )
                    }
                    _ => None,
                };
                let merged = match &base {
                    Some(Some(base)) => merge::merge3(Some(base), &incoming, &local.state, &sides),
                    _ => two_way,
                };
                // One side changed the file's content, the other only its
                // metadata: the content with the other side's metadata,
                // no conflict copy (review 14c item 1).
                let content_base = match (&merged, &local.state, &incoming) {
                    (None, PathState::File { .. }, PathState::File { .. }) => {
                        self.merge_base(path, incoming_version, &local.version)?
                    }
                    _ => None,
                };
                let decide = |sides: &merge::Sides| match (&content_base, &base) {
                    (Some(content_base), _) => {
                        merge::merge3_content(content_base, &incoming, &local.state, sides)
                    }
                    (None, Some(Some(base))) => {
                        merge::merge3(Some(base), &incoming, &local.state, sides)
                    }
                    (None, _) => merge::merge(&incoming, &local.state, sides),
                };
                let mut merged = decide(&sides);
                let mut by = format!("{mine} and {theirs}");
                if merged.as_ref().is_some_and(|(_, notes)| !notes.is_empty()) {
                    // Reported: each value is credited to the member whose
                    // own version holds it, not to a side that merged it,
                    // and the members whose changes meet here are named
                    // (a side may be a merge of several).
                    let held_a = self.held_by_members(path, incoming_version)?;
                    let held_b = self.held_by_members(path, &local.version)?;
                    let mut names: Vec<&str> = Vec::new();
                    for (held, other) in [(&held_b, incoming_version), (&held_a, &local.version)] {
                        for (name, _, seen) in held.iter() {
                            let changed = !matches!(
                                seen.compare(other),
                                Causality::Before | Causality::Equal
                            );
                            if changed && !names.contains(&name.as_str()) {
                                names.push(name);
                            }
                        }
                    }
                    if names.len() >= 2 {
                        let last = names.pop().expect("two names");
                        by = format!("{} and {last}", names.join(", "));
                    }
                    let strip = |held: Vec<(String, PathState, VersionVector)>| -> Vec<(String, PathState)> {
                        held.into_iter().map(|(n, s, _)| (n, s)).collect()
                    };
                    let (held_a, held_b) = (strip(held_a), strip(held_b));
                    merged = decide(&merge::Sides {
                        a: &theirs,
                        b: &mine,
                        held_a: &held_a,
                        held_b: &held_b,
                    });
                }
                if let Some((merged, notes)) = merged {
                    self.resolved.insert(path.to_vec(), version.clone());
                    self.set_planned(
                        path,
                        Entry {
                            state: merged,
                            version,
                            author: local.author.max(origin),
                        },
                    )?;
                    if !notes.is_empty() {
                        let what = match (&local.state, path.is_empty()) {
                            (_, true) => "the replica root",
                            (PathState::Directory { .. }, _) => "the folder",
                            _ => "its metadata",
                        };
                        let unbased = if matches!(base, Some(None)) {
                            " (no common earlier version of it is logged here, so every \
                             field that differs was decided by the rules)"
                        } else {
                            ""
                        };
                        let rest = format!(
                            "concurrent changes of {what} by {by}{unbased}; {}",
                            notes.join("; "),
                        );
                        let leader = match &local.state {
                            PathState::File { ext, .. } => crate::tree::meta::hard_link_leader(ext),
                            _ => None,
                        };
                        self.report_conflict(path, leader, rest)?;
                    }
                    return Ok(());
                }
                let incoming_wins = winner_is_first(&incoming, &local.state);
                let (winner, winner_author, loser, loser_author) = if incoming_wins {
                    (incoming, origin, local.state, local.author)
                } else {
                    (local.state, local.author, incoming, origin)
                };
                self.resolved.insert(path.to_vec(), version.clone());
                self.set_planned(
                    path,
                    Entry {
                        state: winner.clone(),
                        version,
                        author: winner_author,
                    },
                )?;
                // The names of one hard-link set are one file: one
                // conflict, said once for the set, with one copy, named
                // after the set's first name at every member (fix14i item
                // 4: one line and one copy per name).
                let set = same_link_set(&winner, &loser).map(|leader| {
                    let chunks = match &loser {
                        PathState::File { chunks, .. } => chunks.clone(),
                        _ => Vec::new(),
                    };
                    (leader, chunks, loser_author, winner_author)
                });
                let name = relpath::display(path).to_string();
                if let Some((at, names, rest)) =
                    set.as_ref().and_then(|key| self.link_copies.get_mut(key))
                {
                    names.push(name);
                    return link_set_line(&mut self.lines, *at, names, rest);
                }
                let copy_at = set.as_ref().map_or(path, |(leader, ..)| leader.as_slice());
                let copy = self.conflict_copy(copy_at, &loser, loser_author, Some(&winner))?;
                let rest = format!(
                    "concurrent changes by {} ({}) and {} ({}); kept {}'s{}",
                    self.label(&winner_author),
                    change_word(&winner),
                    self.label(&loser_author),
                    change_word(&loser),
                    self.label(&winner_author),
                    copy_note(copy.as_deref()),
                );
                self.lines.conflict(format!("{name}: {rest}"))?;
                if let Some(key) = set {
                    self.link_copies
                        .insert(key, (self.lines.conflicts.len() - 1, vec![name], rest));
                }
            }
        }
        Ok(())
    }

    /// Reports `path`'s conflict (`rest`: the note after the path); the
    /// names of one hard-link set (`leader`) with the same note share one
    /// line.
    fn report_conflict(
        &mut self,
        path: &[u8],
        leader: Option<Vec<u8>>,
        rest: String,
    ) -> Result<()> {
        let name = relpath::display(path).to_string();
        let Some(leader) = leader else {
            return self.lines.conflict(format!("{name}: {rest}"));
        };
        let key = (leader, rest);
        if let Some((at, names)) = self.link_conflicts.get_mut(&key) {
            names.push(name);
            return link_set_line(&mut self.lines, *at, names, &key.1);
        }
        self.lines.conflict(format!("{name}: {}", key.1))?;
        let at = self.lines.conflicts.len() - 1;
        self.link_conflicts.insert(key, (at, vec![name]));
        Ok(())
    }

    /// Each member's own latest version of `path` (its last change of
    /// it, not a resolution) that `version` has seen, named, with its
    /// version vector, in name order: who a merged version's values came from, for a conflict's
    /// report. Read from the log and this batch, as [`Self::merge_base`].
    fn held_by_members(
        &self,
        path: &[u8],
        version: &VersionVector,
    ) -> Result<Vec<(String, PathState, VersionVector)>> {
        let err = |e: rusqlite::Error| log_refusal(format!("reading the operation log: {e}"));
        // By the log's index by path, as [`Self::merge_base`]: a scan of
        // the whole log for each conflict made a packet of 200,000
        // conflicts take hours.
        self.index_log_paths()?;
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT o.op FROM batch.log_paths p
                     JOIN main.oplog o ON o.origin = p.origin AND o.epoch = p.epoch
                     WHERE p.path = ?1
                 UNION ALL SELECT op FROM batch.ops WHERE NOT repeat AND path = ?1",
            )
            .map_err(err)?;
        let mut rows = statement.query([path]).map_err(err)?;
        let mut latest: BTreeMap<Id, (u64, PathState, VersionVector)> = BTreeMap::new();
        while let Some(row) = rows.next().map_err(err)? {
            let bytes: Vec<u8> = row.get(0).map_err(err)?;
            let Ok(op) = Operation::decode(&bytes) else {
                continue;
            };
            let Change::Path {
                path: p,
                version: v,
                state,
            } = op.change
            else {
                continue;
            };
            let seen = matches!(v.compare(version), Causality::Before | Causality::Equal);
            if p != path || !seen || latest.get(&op.origin).is_some_and(|(e, ..)| *e >= op.epoch) {
                continue;
            }
            if let Ok(state) = sanitize(path, &state) {
                latest.insert(op.origin, (op.epoch, state, v));
            }
        }
        let mut held: Vec<(String, PathState, VersionVector)> = latest
            .into_iter()
            .map(|(origin, (_, state, v))| (self.label(&origin), state, v))
            .collect();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(held)
    }

    /// The merge base of two concurrent versions `a` and `b` of `path`:
    /// the state of the latest logged operation on `path` (in the log or
    /// this batch) whose version both have seen. `None` when there is no
    /// single latest one (the object was made on both sides, or two
    /// unrelated versions are both latest) or when history it could hide
    /// was scrubbed from the log.
    fn merge_base(
        &self,
        path: &[u8],
        a: &VersionVector,
        b: &VersionVector,
    ) -> Result<Option<PathState>> {
        let seen_by = |v: &VersionVector, by: &VersionVector| {
            matches!(v.compare(by), Causality::Before | Causality::Equal)
        };
        let err = |e: rusqlite::Error| log_refusal(format!("reading the operation log: {e}"));
        // The log has no index by path: one is made in the batch's scratch
        // database on the first lookup, so that an import with many
        // conflicting paths reads the log once, not once per path.
        self.index_log_paths()?;
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT o.op FROM batch.log_paths p
                     JOIN main.oplog o ON o.origin = p.origin AND o.epoch = p.epoch
                     WHERE p.path = ?1
                 UNION ALL SELECT op FROM batch.ops WHERE NOT repeat AND path = ?1",
            )
            .map_err(err)?;
        let mut rows = statement.query([path]).map_err(err)?;
        let mut latest: Vec<(VersionVector, PathState)> = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let bytes: Vec<u8> = row.get(0).map_err(err)?;
            let Ok(op) = Operation::decode(&bytes) else {
                continue;
            };
            let (Change::Path {
                path: p,
                version,
                state,
            }
            | Change::Resolve {
                path: p,
                version,
                state,
                ..
            }) = op.change
            else {
                continue;
            };
            if p != path || !seen_by(&version, a) || !seen_by(&version, b) {
                continue;
            }
            if latest
                .iter()
                .any(|(v, _)| version.compare(v) == Causality::Before)
            {
                continue;
            }
            latest.retain(|(v, _)| v.compare(&version) != Causality::Before);
            let Ok(state) = sanitize(path, &state) else {
                continue;
            };
            if !latest.contains(&(version.clone(), state.clone())) {
                latest.push((version, state));
            }
        }
        drop(rows);
        // Rows SQLite stepped through without an index (SQLITE_STMTSTATUS_FULLSCAN_STEP),
        // counted for tests: each lookup must take its path's rows only.
        self.count_log_rows(statement.reset_status(rusqlite::StatementStatus::FullscanStep));
        let [(version, state)] = <[_; 1]>::try_from(latest)
            .unwrap_or_else(|_| [(VersionVector::default(), PathState::Deleted)]);
        if state == PathState::Deleted && version == VersionVector::default() {
            return Ok(None);
        }
        // A scrubbed operation between the base found and the versions'
        // meet could have been the real base.
        let hidden = self.scrubbed_through.iter().any(|(origin, through)| {
            *through > version.get(origin) && a.get(origin).min(b.get(origin)) > version.get(origin)
        });
        Ok((!hidden).then_some(state))
    }

    /// Makes `batch.log_paths`, the path of every path operation of the
    /// log with its key, indexed by path, in one pass over the log; once
    /// per plan. The log does not change while the batch is planned.
    fn index_log_paths(&self) -> Result<()> {
        if self.log_index.get() {
            return Ok(());
        }
        let err = |e: rusqlite::Error| log_refusal(format!("indexing the operation log: {e}"));
        self.conn
            .execute_batch(
                "DROP TABLE IF EXISTS batch.log_paths;
                 CREATE TABLE batch.log_paths (
                     path BLOB NOT NULL, origin BLOB NOT NULL, epoch INTEGER NOT NULL
                 );",
            )
            .map_err(err)?;
        let mut insert = self
            .conn
            .prepare("INSERT INTO batch.log_paths (path, origin, epoch) VALUES (?1, ?2, ?3)")
            .map_err(err)?;
        let mut select = self
            .conn
            .prepare("SELECT origin, epoch, op FROM main.oplog")
            .map_err(err)?;
        let mut rows = select.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let bytes: Vec<u8> = row.get(2).map_err(err)?;
            let Ok(op) = Operation::decode(&bytes) else {
                continue;
            };
            if let Change::Path { path, .. } | Change::Resolve { path, .. } = &op.change {
                let origin: Vec<u8> = row.get(0).map_err(err)?;
                let epoch: i64 = row.get(1).map_err(err)?;
                insert
                    .execute(rusqlite::params![path, origin, epoch])
                    .map_err(err)?;
            }
        }
        drop(rows);
        self.count_log_rows(select.reset_status(rusqlite::StatementStatus::FullscanStep));
        // The batch's own operations are looked up by path too.
        self.conn
            .execute_batch(
                "CREATE INDEX batch.log_paths_by_path ON log_paths (path);
                 CREATE INDEX IF NOT EXISTS batch.ops_by_path ON ops (path);",
            )
            .map_err(err)?;
        self.log_index.set(true);
        Ok(())
    }

    fn count_log_rows(&self, steps: i32) {
        let steps = u64::try_from(steps).unwrap_or(0);
        self.log_rows_read.set(self.log_rows_read.get() + steps);
    }

    /// Records an operation of this replica that sets `path` to `state`.
    fn local_operation(&mut self, path: &[u8], state: PathState) -> Result<()> {
        self.local_operation_by(path, state, None)
    }

    /// Records a local operation; with `author`, a resolution that keeps
    /// the winning version's author (see `Change::Resolve`).
    fn local_operation_by(
        &mut self,
        path: &[u8],
        state: PathState,
        author: Option<Id>,
    ) -> Result<()> {
        let mut version = self.effective(path)?.map(|e| e.version).unwrap_or_default();
        self.own_epoch += 1;
        version.set(self.me, self.own_epoch);
        let change = match author {
            Some(author) => Change::Resolve {
                path: path.to_vec(),
                version: version.clone(),
                state: state.clone(),
                author,
            },
            None => Change::Path {
                path: path.to_vec(),
                version: version.clone(),
                state: state.clone(),
            },
        };
        self.local_ops.push(
            self.conn,
            Operation {
                origin: self.me,
                epoch: self.own_epoch,
                recorded: Timestamp::from_nanos(self.now_ns),
                change,
            },
        )?;
        self.set_planned(
            path,
            Entry {
                state,
                version,
                author: author.unwrap_or(self.me),
            },
        )
    }

    /// Keeps a losing file beside `path` (rule 5); returns the copy's path.
    fn conflict_copy(
        &mut self,
        path: &[u8],
        loser: &PathState,
        loser_author: Id,
        winner: Option<&PathState>,
    ) -> Result<Option<Vec<u8>>> {
        let (parent, name) = split_last(path);
        let copy = self.conflict_copy_in(parent, name, loser, loser_author, winner)?;
        if let Some(copy) = &copy {
            self.copies_of.insert(copy.clone(), path.to_vec());
        }
        Ok(copy)
    }

    /// Keeps a losing file, named after `name`, in the folder `parent`
    /// (rules 5 and 11); returns the copy's path.
    fn conflict_copy_in(
        &mut self,
        parent: &[u8],
        name: &[u8],
        loser: &PathState,
        loser_author: Id,
        winner: Option<&PathState>,
    ) -> Result<Option<Vec<u8>>> {
        // Files (empty ones too) and symlinks: what a person made. A
        // directory never loses, and a deletion holds nothing to keep.
        let stamp = match (loser, winner) {
            (PathState::File { chunks, .. }, Some(PathState::File { chunks: same, .. }))
                if same == chunks =>
            {
                return Ok(None);
            }
            (PathState::Symlink { target, .. }, Some(PathState::Symlink { target: same, .. }))
                if same == target =>
            {
                return Ok(None);
            }
            (PathState::File { mtime, .. }, _) => Some(*mtime),
            (PathState::Symlink { mtime, .. }, _) => *mtime,
            _ => return Ok(None),
        };
        // A copy is a file of its own: never another name of the loser's
        // hard-link set (it would be linked to the set's kept version).
        let kept = without_hard_link(loser);
        let loser = &kept;
        let who = self.label(&loser_author);
        for attempt in 1..=100 {
            let label = if attempt == 1 {
                who.clone()
            } else {
                format!("{who}-{attempt}")
            };
            let copy = join(parent, &conflict_copy_name(name, stamp, &label));
            // A copy is recorded as soon as it is made, so shared patterns
            // (which a sibling may have set to `*`) cannot suppress it.
            if validate_path(&copy).is_err()
                || !relpath::fits_below(self.root, &copy)
                || self.excluded_as(&copy, false, true)?
            {
                return Ok(None);
            }
            match self.effective(&copy)? {
                Some(entry) if entry.state == *loser => return Ok(Some(copy)),
                Some(entry) if entry.state != PathState::Deleted => continue,
                _ => {}
            }
            if !self.recorded.contains_key(&copy) && self.disk_kind(&copy)? != DiskKind::Missing {
                continue; // an unrecorded local file has that name
            }
            if self.fold_taken(&copy)? {
                continue; // another spelling of it is taken on this filesystem
            }
            self.local_operation(&copy, kept.clone())?;
            return Ok(Some(copy));
        }
        Ok(None)
    }

    /// Whether anything would remain below `path` after the batch.
    fn has_live_descendants(&mut self, path: &[u8]) -> Result<bool> {
        let (lo, hi) = below(path);
        if self.planned.any_live_in(self.conn, &lo, &hi)? {
            return Ok(true);
        }
        for recorded in self.recorded_live.range(lo..hi) {
            if !self.planned.contains(self.conn, recorded)? {
                return Ok(true);
            }
        }
        if !matches!(self.disk_kind(path)?, DiskKind::Dir(_)) {
            return Ok(false);
        }
        // Unrecorded local content (excluded files, for instance), listed
        // through directory handles opened beneath the root: a directory
        // swapped for a symlink meanwhile is not listed (not followed).
        let mut pending = vec![path.to_vec()];
        while let Some(dir) = pending.pop() {
            let listing = match self.confined.list_dir(&dir) {
                Ok(listing) => listing,
                Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT | Errno::XDEV) => continue,
                Err(errno) => {
                    let disk = relpath::to_disk_path(self.root, &dir);
                    return Err(Error::io(&disk, errno.into()));
                }
            };
            for (name, kind) in listing {
                let child = join(&dir, &name);
                let planned_deleted = self
                    .planned
                    .get(self.conn, &child)?
                    .is_some_and(|e| e.state == PathState::Deleted);
                if !planned_deleted {
                    return Ok(true);
                }
                if kind == FileType::Directory {
                    pending.push(child);
                }
            }
        }
        Ok(false)
    }

    fn dir_mode_for(&self, path: &[u8]) -> Result<u32> {
        if let Some(PathState::Directory { mode, .. }) = self.recorded.get(path).map(|e| &e.state) {
            return Ok(*mode);
        }
        Ok(match self.disk_kind(path)? {
            DiskKind::Dir(mode) => mode & 0o1777,
            _ => DEFAULT_DIR_MODE,
        })
    }

    /// Rule 5: a resolved conflict is recorded as an operation of this
    /// replica (this replica's next epoch in its log, but the merged
    /// version unchanged), unless a later operation of the batch
    /// superseded it. Without it, replicas that resolved different pairs of
    /// concurrent versions could hold different states under the same
    /// version vector and never converge (they join them on arrival). The
    /// version stays the merged one, which every member that merged the
    /// same versions holds too: a resolution of its own would make a
    /// version the other side has not seen, and that side's next change
    /// would be concurrent with it again, and merged again, for ever.
    fn record_resolutions(&mut self) -> Result<()> {
        for (path, version) in std::mem::take(&mut self.resolved) {
            let Some(entry) = self.planned.get(self.conn, &path)? else {
                continue;
            };
            if entry.version == version {
                self.own_epoch += 1;
                self.local_ops.push(
                    self.conn,
                    Operation {
                        origin: self.me,
                        epoch: self.own_epoch,
                        recorded: Timestamp::from_nanos(self.now_ns),
                        change: Change::Resolve {
                            path,
                            version,
                            state: entry.state,
                            author: entry.author,
                        },
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Rule 6: what ends up with content below it is a directory, and so
    /// is every ancestor of what ends up existing.
    fn repair_structure(&mut self) -> Result<()> {
        for _round in 0..8 {
            let mut changed = false;
            // The paths that are not directories, from the last back, a
            // page at a time from the scratch database (a path this loop
            // plans before the current one is seen too: harmless, it is
            // looked at as the next round would).
            let mut last: Option<Vec<u8>> = None;
            loop {
                let page =
                    self.planned
                        .page(self.conn, last.as_deref(), true, Only::NotDirectories)?;
                let Some((end, _)) = page.last() else {
                    break;
                };
                last = Some(end.clone());
                for (path, _) in page {
                    changed |= self.keep_as_directory(&path)?;
                }
            }
            // Every path that exists after the batch, in byte order, a
            // page at a time.
            let mut previous: Option<Vec<u8>> = None;
            loop {
                let page = self
                    .planned
                    .page(self.conn, previous.as_deref(), false, Only::Live)?;
                if page.is_empty() {
                    break;
                }
                for (path, _) in page {
                    changed |= self.make_ancestors_directories(&path, previous.as_deref())?;
                    previous = Some(path);
                }
            }
            if !changed {
                return Ok(());
            }
        }
        Err(Error::Refused(Refusal::Inconsistent))
    }

    /// Rule 6 for `path`, not a directory after the batch: if anything
    /// would remain below it, it stays a directory (recorded as an
    /// operation of this replica; a displaced file becomes a conflict
    /// copy). Returns whether it changed the plan.
    fn keep_as_directory(&mut self, path: &[u8]) -> Result<bool> {
        // Read afresh: the page may be older than the plan.
        let Some(displaced) = self.planned.get(self.conn, path)? else {
            return Ok(false);
        };
        if matches!(displaced.state, PathState::Directory { .. })
            || !self.has_live_descendants(path)?
        {
            return Ok(false);
        }
        let mode = self.dir_mode_for(path)?;
        self.local_operation(path, PathState::directory(mode))?;
        let copy = self.conflict_copy(path, &displaced.state, displaced.author, None)?;
        let what = match displaced.state {
            PathState::Deleted => "deletion".to_string(),
            ref other => crate::tree::scan::type_name(other).to_string(),
        };
        let note = format!(
            "{}: kept as a directory, it still has content; {}'s {what} gave way{}",
            relpath::display(path),
            self.label(&displaced.author),
            copy_note(copy.as_deref()),
        );
        self.lines.conflict(note)?;
        Ok(true)
    }

    /// Rule 6 for `path`, which exists after the batch: every ancestor
    /// becomes a directory (recorded as an operation of this replica; a
    /// displaced file becomes a conflict copy). In byte order, a path's
    /// ancestors that are also ancestors of `previous` (the path before
    /// it; or that path, a directory) were made sure of already: each
    /// path costs its own length, not its depth times its length.
    /// Returns whether it changed the plan.
    fn make_ancestors_directories(&mut self, path: &[u8], previous: Option<&[u8]>) -> Result<bool> {
        let mut changed = false;
        let known = match previous {
            Some(previous) => self.known_directories(path, previous)?,
            None => 0,
        };
        for ancestor in ancestors(path).into_iter().skip(known) {
            let current = self.effective(ancestor)?;
            let fine = match &current {
                Some(entry) => matches!(entry.state, PathState::Directory { .. }),
                None => matches!(self.disk_kind(ancestor)?, DiskKind::Dir(_)),
            };
            if fine {
                continue;
            }
            let mode = self.dir_mode_for(ancestor)?;
            self.local_operation(ancestor, PathState::directory(mode))?;
            let mut copy = None;
            if let Some(entry) = &current {
                copy = self.conflict_copy(ancestor, &entry.state, entry.author, None)?;
            }
            if current
                .as_ref()
                .is_some_and(|e| e.state != PathState::Deleted)
            {
                let displaced = current.expect("checked");
                let note = format!(
                    "{}: made a directory again to hold {}; {}'s {} gave way{}",
                    relpath::display(ancestor),
                    relpath::display(path),
                    self.label(&displaced.author),
                    crate::tree::scan::type_name(&displaced.state),
                    copy_note(copy.as_deref()),
                );
                self.lines.conflict(note)?;
            }
            changed = true;
        }
        Ok(changed)
    }

    /// How many of `path`'s ancestors (shallowest first) are ancestors of
    /// `previous`, or `previous` itself when it is a directory after the
    /// batch: those [`Planner::repair_structure`] made sure of with
    /// `previous`.
    fn known_directories(&self, path: &[u8], previous: &[u8]) -> Result<usize> {
        let common = path
            .iter()
            .zip(previous)
            .take_while(|(a, b)| a == b)
            .count();
        let mut known = 0;
        for (i, &byte) in path.iter().enumerate().take(common + 1) {
            if byte != b'/' {
                continue;
            }
            // `path[..i]` is an ancestor of `path`.
            let of_previous = i < common
                || (i == previous.len()
                    && self
                        .effective(previous)?
                        .is_some_and(|e| matches!(e.state, PathState::Directory { .. })));
            if !of_previous {
                break;
            }
            known += 1;
        }
        Ok(known)
    }

    /// The expectation for a file the recorded state has no stat for: the
    /// file as it is now, if its content is the recorded content;
    /// otherwise [`Expect::Unverified`] (it is then kept, never discarded).
    fn verify_unscanned(&self, path: &[u8]) -> Result<Expect> {
        let Some(PathState::File { chunks, .. }) = self.recorded.get(path).map(|e| &e.state) else {
            return Ok(Expect::Unverified);
        };
        let Ok(file) = self.confined.open_file(path) else {
            return Ok(Expect::Unverified);
        };
        let Ok(before) = rustix::fs::fstat(&file) else {
            return Ok(Expect::Unverified);
        };
        match crate::tree::chunking::chunk_stream(&file, |_, _| Ok(())) {
            Ok(found) if found == *chunks => {}
            _ => return Ok(Expect::Unverified),
        }
        let mtime_ns = super::journal::stat_mtime_ns(&before);
        Ok(Expect::File {
            inode: before.st_ino,
            size: before.st_size as u64,
            mtime_ns,
            ctime_ns: if recorded_linked(self.recorded.get(path)) {
                super::journal::ANY_CTIME
            } else {
                super::journal::stat_ctime_ns(&before)
            },
        })
    }

    /// Derives the disk actions and counts, step (a)'s result.
    fn finish(mut self) -> Result<Plan> {
        let day = chrono::Utc::now().format("%Y%m%d").to_string();
        let mut reserved = Reserved::create(self.conn, self.planned.file())?;
        let mut removals: Vec<(Vec<u8>, Action)> = Vec::new();
        let mut creations = Vec::new();
        let mut dir_modes = Vec::new();
        // The actions go to the scratch database a page of paths at a
        // time (`super::spool`): these vectors hold one page's. So do the
        // files to stage (`Targets`).
        let mut spooled = Actions::create(self.conn, self.planned.file())?;
        let mut jobs = Targets::create(self.conn, self.planned.file())?;
        // The planned entries a page at a time, in byte order.
        // Parents of changed paths: their mtime moves as names are placed
        // or removed, and is put back to the recorded one at the end.
        let mut parents = Folders::create(self.conn, self.planned.file())?;
        // Hard-link sets whose first name this replica excludes: see
        // [`Planner::stand_in_leader`].
        let mut stand_ins = StandIns::default();
        let mut last: Option<Vec<u8>> = None;
        loop {
            let page = self
                .planned
                .page(self.conn, last.as_deref(), false, Only::All)?;
            let Some((end, _)) = page.last() else {
                break;
            };
            last = Some(end.clone());
            for (path, entry) in &page {
                self.note_stand_in(&mut stand_ins, path, &entry.state)?;
                let before = self
                    .recorded
                    .get(path)
                    .map(|e| e.state.clone())
                    .unwrap_or(PathState::Deleted);
                if before == entry.state {
                    continue;
                }
                // A top-level path's parent is the root (""): its recorded
                // mtime is put back too (SPEC.md §6.5).
                if !path.is_empty() {
                    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    parents.insert(self.conn, &path[..cut])?;
                }
                match (
                    before != PathState::Deleted,
                    entry.state != PathState::Deleted,
                ) {
                    (false, true) => self.report.added += 1,
                    (true, false) => self.report.deleted += 1,
                    (true, true) => self.report.changed += 1,
                    (false, false) => {}
                }
                // What is there now, and the exact file the actions may replace
                // or remove: anything else found when they run is a save made
                // during the import, kept (see `journal::Expect`).
                // The expectation comes from the scan that recorded the state
                // this plan decided on, not from a look now: a file saved after
                // that scan must not be taken for the version it replaced.
                let disk = self.disk_kind(path)?;
                let expect = match (&disk, self.recorded.get(path).and_then(|e| e.stat)) {
                    (DiskKind::Missing, _) => Expect::Absent,
                    (DiskKind::File, Some(stat)) => Expect::File {
                        inode: stat.inode,
                        size: stat.size,
                        mtime_ns: stat.mtime_ns,
                        ctime_ns: if recorded_linked(self.recorded.get(path)) {
                            super::journal::ANY_CTIME
                        } else {
                            stat.ctime_ns
                        },
                    },
                    // Placed by an earlier import and not scanned since: its
                    // content is checked now instead.
                    (DiskKind::File, None) => self.verify_unscanned(path)?,
                    // A link the scan did not record as it is now is someone's
                    // new one: kept, never replaced.
                    (DiskKind::Symlink(now), _)
                        if !matches!(
                            self.recorded.get(path).map(|e| &e.state),
                            Some(PathState::Symlink { target, .. }) if target == now
                        ) =>
                    {
                        Expect::Unverified
                    }
                    (DiskKind::Symlink(target), _) => Expect::Symlink {
                        target_hash: Expect::hash_target(target),
                    },
                    _ => Expect::Other,
                };
                let p = path.clone();
                // Where the file replaced or removed here is kept (a rename of
                // the displaced file, or a copy when it has other names).
                let mut keep: Option<Vec<u8>> = None;
                let conn = self.conn;
                let mut keep_old_file = || -> Result<()> {
                    keep = Some(reserved.soft_delete_target(conn, self.root, &day, path)?);
                    Ok(())
                };
                match &entry.state {
                    PathState::File {
                        mode,
                        mtime,
                        size,
                        chunks,
                        ext,
                    } => {
                        // Linked to the first name of its set held here when
                        // this replica excludes the set's own first name.
                        let linked_ext = self.stand_in_leader(&mut stand_ins, path, chunks, ext)?;
                        let set_meta = Action::SetMeta {
                            path: p.clone(),
                            kind: MetaKind::File,
                            mode: Some(*mode),
                            mtime: Some(*mtime),
                            ext: linked_ext.clone(),
                        };
                        // A name leaving a hard-link set gets a file of its own.
                        let leader = crate::tree::meta::hard_link_leader(ext);
                        let same_content = matches!(
                            &before,
                        PathState::File { chunks: old, ext: old_ext, .. }
                            if old == chunks
                                && (leader.is_some()
                                    || crate::tree::meta::hard_link_leader(old_ext).is_none())
                        );
                        if disk == DiskKind::File && same_content {
                            creations.push(Action::SetFileMeta {
                                path: p.clone(),
                                mode: *mode,
                                mtime: *mtime,
                                expect,
                            });
                            creations.push(set_meta);
                            continue;
                        }
                        match disk {
                            DiskKind::File => keep_old_file()?,
                            DiskKind::Dir(_) => {
                                removals.push((p.clone(), Action::RemoveDir { path: p.clone() }))
                            }
                            _ => {}
                        }
                        if self.links_to_leader(path, chunks, &linked_ext)? {
                            self.report.bytes_linked += size;
                        }
                        let staged = jobs.add(self.conn, &p, chunks, *mode, *mtime)?;
                        // A directory there is removed first: then nothing is.
                        let expect = if matches!(disk, DiskKind::Dir(_)) {
                            Expect::Absent
                        } else {
                            expect
                        };
                        creations.push(Action::Place {
                            staged,
                            path: p,
                            expect,
                            keep,
                        });
                        for (other, relink) in
                            self.set_edited_through(path, &before, chunks, ext)?
                        {
                            let cut = other.iter().rposition(|&b| b == b'/').unwrap_or(0);
                            parents.insert(self.conn, &other[..cut])?;
                            creations.push(relink);
                        }
                        creations.push(set_meta);
                    }
                    PathState::Directory { mode, mtime, ext } => {
                        match disk {
                            DiskKind::Dir(_) => {}
                            DiskKind::File => {
                                keep_old_file()?;
                                removals.push((
                                    p.clone(),
                                    Action::RemoveFile {
                                        path: p.clone(),
                                        expect,
                                        keep,
                                    },
                                ));
                                creations.push(Action::MakeDir {
                                    path: p.clone(),
                                    mode: *mode,
                                });
                            }
                            DiskKind::Missing => creations.push(Action::MakeDir {
                                path: p.clone(),
                                mode: *mode,
                            }),
                            DiskKind::Symlink(_) | DiskKind::Other => {
                                removals
                                    .push((p.clone(), Action::RemoveSpecial { path: p.clone() }));
                                creations.push(Action::MakeDir {
                                    path: p.clone(),
                                    mode: *mode,
                                });
                            }
                        }
                        // Run in reverse: the mode, then the metadata and time.
                        dir_modes.push(Action::SetMeta {
                            path: p.clone(),
                            kind: MetaKind::Directory,
                            mode: Some(*mode),
                            mtime: *mtime,
                            ext: ext.clone(),
                        });
                        dir_modes.push(Action::SetDirMode {
                            path: p,
                            mode: *mode,
                        });
                    }
                    PathState::Symlink { target, mtime, ext } => {
                        let set_meta = Action::SetMeta {
                            path: p.clone(),
                            kind: MetaKind::Symlink,
                            mode: None,
                            mtime: *mtime,
                            ext: ext.clone(),
                        };
                        match &disk {
                            DiskKind::Symlink(now) if now == target => {
                                creations.push(set_meta);
                                continue;
                            }
                            DiskKind::File => keep_old_file()?,
                            DiskKind::Dir(_) => {
                                removals.push((p.clone(), Action::RemoveDir { path: p.clone() }))
                            }
                            _ => {}
                        }
                        let expect = if matches!(disk, DiskKind::Dir(_)) {
                            Expect::Absent
                        } else {
                            expect
                        };
                        creations.push(Action::Link {
                            path: p,
                            target: target.clone(),
                            expect,
                            keep,
                        });
                        creations.push(set_meta);
                    }
                    PathState::Special {
                        kind,
                        mode,
                        major,
                        minor,
                        mtime,
                        ext,
                    } => {
                        let set_meta = Action::SetMeta {
                            path: p.clone(),
                            kind: MetaKind::Special,
                            mode: Some(*mode),
                            mtime: Some(*mtime),
                            ext: ext.clone(),
                        };
                        if !self.preserve.keeps_special(*kind) {
                            // Recorded, not made: counted and warned about.
                            self.report.not_made_special += 1;
                            continue;
                        }
                        let same_node = matches!(
                            &before,
                            PathState::Special { kind: k, major: x, minor: y, .. }
                                if (k, x, y) == (kind, major, minor)
                        );
                        if disk == DiskKind::Other && same_node {
                            creations.push(set_meta);
                            continue;
                        }
                        match &disk {
                            DiskKind::File => keep_old_file()?,
                            DiskKind::Dir(_) => {
                                removals.push((p.clone(), Action::RemoveDir { path: p.clone() }))
                            }
                            _ => {}
                        }
                        let expect = if matches!(disk, DiskKind::Dir(_)) {
                            Expect::Absent
                        } else {
                            expect
                        };
                        creations.push(Action::MakeNode {
                            path: p,
                            kind: *kind,
                            mode: *mode,
                            major: *major,
                            minor: *minor,
                            expect,
                            keep,
                        });
                        creations.push(set_meta);
                    }
                    PathState::Deleted => match disk {
                        DiskKind::Missing => {}
                        DiskKind::File => {
                            keep_old_file()?;
                            removals.push((
                                p.clone(),
                                Action::RemoveFile {
                                    path: p,
                                    expect,
                                    keep,
                                },
                            ));
                        }
                        DiskKind::Dir(_) => {
                            removals.push((p.clone(), Action::RemoveDir { path: p }))
                        }
                        DiskKind::Symlink(_) | DiskKind::Other => {
                            removals.push((p.clone(), Action::RemoveSpecial { path: p }))
                        }
                    },
                    // Refused before planning (`needs_newer_for`).
                    PathState::Unknown { .. } => {}
                }
            }
            // Sorted as they run by the spool: removals deepest first, so
            // children go before their directory; directories' actions
            // deepest first, so a directory's mtime is set after
            // everything below it (each SetDirMode before its SetMeta).
            let conn = self.conn;
            spooled.put(conn, Group::Removals, removals.drain(..).map(|(_, a)| a))?;
            spooled.put(conn, Group::Creations, creations.drain(..))?;
            spooled.put(conn, Group::DirModes, dir_modes.drain(..))?;
        }
        // A directory whose content changed but whose own state did not:
        // its recorded mtime (and metadata) is put back, as at the origin.
        // A directory whose state changed was given its metadata above.
        parents.for_each(self.conn, |parent| {
            let recorded = self.recorded.get(parent).map(|e| &e.state);
            let state = match self.planned.get(self.conn, parent)? {
                Some(entry)
                    if matches!(entry.state, PathState::Directory { .. })
                        && recorded != Some(&entry.state) =>
                {
                    return Ok(());
                }
                Some(entry) => Some(entry.state),
                None => recorded.cloned(),
            };
            if let Some(PathState::Directory {
                mtime: Some(mtime), ..
            }) = state
            {
                spooled.put_first(
                    self.conn,
                    Group::DirModes,
                    &Action::SetDirTime {
                        path: parent.to_vec(),
                        mtime,
                    },
                )?;
            }
            Ok(())
        })?;
        spooled.flush(self.conn)?;
        jobs.finish(self.conn)?;
        self.local_ops.flush(self.conn)?;
        self.report.local_operations = self.local_ops.len();
        if let Some((first, count)) = &self.too_long {
            let more = match count - 1 {
                0 => String::new(),
                1 => " and 1 path below or beside it".to_string(),
                n => format!(" and {n} paths below or beside it"),
            };
            let room = relpath::PATH_MAX.saturating_sub(self.root.as_os_str().len() + 1);
            self.report.not_made.push(format!(
                "{}{more}: longer than this replica's root {} leaves room for \
                 (a path may have {room} bytes here: {} in all, the most the system \
                 opens); the other replicas keep them",
                relpath::display_short(first, 120),
                self.root.display(),
                relpath::PATH_MAX,
            ));
        }
        // Said in the import summary: who joined or left the family.
        self.report.members_added = self.new_members.iter().map(|m| m.name.clone()).collect();
        self.report.members_removed = self.removed.iter().map(|r| r.name.clone()).collect();
        self.report.members_rekeyed = self
            .rotations
            .iter()
            .map(|(r, _)| (self.label(&r.replica), r.epoch))
            .collect();
        Ok(Plan {
            accepted: self.accepted,
            raised: self.raised,
            new_members: self.new_members,
            removed: self.removed,
            rotations: self.rotations,
            local_ops: self.local_ops,
            entries: self.planned,
            actions: spooled,
            jobs,
            recorded: self.recorded,
            copies_of: self.copies_of,
            report: self.report,
            lines: self.lines,
        })
    }
}

/// Hard-link sets whose first name (their leader, the name every member
/// records) this replica excludes: that name is not in the tree here, so
/// the set's other names are linked to the first of them it holds, as the
/// creation import links them (review 14d item 4; fix14i item 1: an update
/// import left each a file of its own).
#[derive(Default)]
struct StandIns {
    /// Per excluded leader, the names recorded with it, sorted: made on
    /// first use, in one pass over the recorded state.
    recorded: Option<HashMap<Vec<u8>, Vec<Vec<u8>>>>,
    /// Per (excluded leader, content): the first name in byte order the
    /// batch plans with them, as the planned entries go by in that order.
    first_planned: HashMap<(Vec<u8>, ChunkIds), Vec<u8>>,
    /// Per (excluded leader, content): the first recorded name the batch
    /// leaves with them, once looked up.
    first_recorded: HashMap<(Vec<u8>, ChunkIds), Option<Vec<u8>>>,
}

impl Planner<'_> {
    /// Whether this replica excludes `leader`, the first name of a
    /// hard-link set (as its scan decides it: `tree::scan`).
    fn leader_excluded(&self, leader: &[u8]) -> bool {
        crate::tree::excludes::is_local_only(leader)
            || self.excludes.excludes_relative(leader, false, false)
    }

    /// Notes the planned entry `path` (`state`) in `stand_ins` when it is a
    /// name of a set whose leader this replica excludes. Called for every
    /// planned entry in byte order.
    fn note_stand_in(
        &self,
        stand_ins: &mut StandIns,
        path: &[u8],
        state: &PathState,
    ) -> Result<()> {
        if !self.preserve.hardlinks {
            return Ok(());
        }
        let PathState::File { chunks, ext, .. } = state else {
            return Ok(());
        };
        let Some(leader) = crate::tree::meta::hard_link_leader(ext).filter(|l| l != path) else {
            return Ok(());
        };
        if self.leader_excluded(&leader) {
            stand_ins
                .first_planned
                .entry((leader, chunks.clone()))
                .or_insert_with(|| path.to_vec());
        }
        Ok(())
    }

    /// `ext` (the metadata of the file `path` with `chunks`) as it is
    /// applied here: when this replica excludes the set's leader, the
    /// leader named is the set's first name (in byte order) that the batch
    /// leaves here with the same content, `path` itself when it is that
    /// one (then it is linked to nothing). Its recorded state keeps the
    /// family's leader.
    fn stand_in_leader(
        &self,
        stand_ins: &mut StandIns,
        path: &[u8],
        chunks: &[crate::ops::ChunkRef],
        ext: &crate::ops::Extensions,
    ) -> Result<crate::ops::Extensions> {
        use crate::tree::meta::hard_link_leader;
        if !self.preserve.hardlinks {
            return Ok(ext.clone());
        }
        let Some(leader) = hard_link_leader(ext).filter(|l| l != path) else {
            return Ok(ext.clone());
        };
        if !self.leader_excluded(&leader) {
            return Ok(ext.clone());
        }
        let key = (leader, chunks.to_vec());
        if !stand_ins.first_recorded.contains_key(&key) {
            let index = stand_ins.recorded.get_or_insert_with(|| {
                let mut index: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
                for (name, entry) in &self.recorded {
                    if let PathState::File { ext, .. } = &entry.state {
                        if let Some(leader) = hard_link_leader(ext).filter(|l| l != name) {
                            if self.leader_excluded(&leader) {
                                index.entry(leader).or_default().push(name.clone());
                            }
                        }
                    }
                }
                for names in index.values_mut() {
                    names.sort();
                }
                index
            });
            let mut first = None;
            for name in index.get(&key.0).into_iter().flatten() {
                // As the batch leaves it.
                let state = match self.planned.get(self.conn, name)? {
                    Some(entry) => entry.state,
                    None => self.recorded[name].state.clone(),
                };
                if matches!(&state, PathState::File { chunks: same, ext, .. }
                    if same.as_slice() == chunks
                        && hard_link_leader(ext).as_deref() == Some(key.0.as_slice()))
                {
                    first = Some(name.clone());
                    break;
                }
            }
            stand_ins.first_recorded.insert(key.clone(), first);
        }
        let first = [
            stand_ins.first_planned.get(&key),
            stand_ins.first_recorded[&key].as_ref(),
        ]
        .into_iter()
        .flatten()
        .min()
        .cloned();
        let Some(first) = first else {
            return Ok(ext.clone());
        };
        let mut linked = ext.clone();
        linked.insert(
            crate::tree::meta::keys::HARD_LINK,
            crate::tree::meta::encode(&first),
        );
        Ok(linked)
    }
}

/// Rule 11: names that a folding filesystem takes for one.
impl Planner<'_> {
    /// A content change of one name of a hard-link set, from a member that
    /// does not keep hard links (it carries the recorded set, but its other
    /// names are files of their own there): here, where the names are one
    /// file, it is an edit of the set (review 14d item 3: the name got an
    /// inode of its own, and the broken set went back to the family).
    /// Returns, for each other name of the set that this batch leaves alone
    /// and that is on disk one file with `path`, the action that links it
    /// to the new file: the leader first (to `path`, when `path` is not
    /// the leader), then the rest to the leader. Their recorded state is
    /// left as it was: the next scan records their new content, which goes
    /// to the members that keep them as files of their own.
    fn set_edited_through(
        &self,
        path: &[u8],
        before: &PathState,
        chunks: &[crate::ops::ChunkRef],
        ext: &crate::ops::Extensions,
    ) -> Result<Vec<(Vec<u8>, Action)>> {
        use crate::tree::meta::hard_link_leader;
        if !self.preserve.hardlinks {
            return Ok(Vec::new());
        }
        let Some(leader) = hard_link_leader(ext) else {
            return Ok(Vec::new());
        };
        let PathState::File {
            chunks: old_chunks,
            ext: old_ext,
            ..
        } = before
        else {
            return Ok(Vec::new());
        };
        if old_chunks.as_slice() == chunks
            || hard_link_leader(old_ext).as_deref() != Some(leader.as_slice())
        {
            return Ok(Vec::new());
        }
        let inode = |name: &[u8]| -> Result<Option<(u64, u64)>> {
            Ok(match self.confined.locate(name, false)? {
                crate::tree::confined::Located::At(place) => place.stat()?.and_then(|st| {
                    (rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::RegularFile)
                        .then_some((st.st_dev, st.st_ino))
                }),
                crate::tree::confined::Located::Blocked(_) => None,
            })
        };
        let Some(here) = inode(path)? else {
            return Ok(Vec::new());
        };
        let mut others: Vec<(&Vec<u8>, &crate::ops::Extensions)> = Vec::new();
        for (other, entry) in &self.recorded {
            let PathState::File {
                chunks: other_chunks,
                ext: other_ext,
                ..
            } = &entry.state
            else {
                continue;
            };
            if other.as_slice() == path
                || other_chunks != old_chunks
                || (hard_link_leader(other_ext).as_deref() != Some(leader.as_slice())
                    && other.as_slice() != leader.as_slice())
            {
                continue;
            }
            // A name this batch changes is the batch's; one that is not the
            // same file here any more was changed here: both left alone.
            if self.planned.get(self.conn, other)?.is_some() || inode(other)? != Some(here) {
                continue;
            }
            others.push((other, other_ext));
        }
        // The leader first: the others are linked to it. A leader this
        // replica excludes is not here: every other name is linked to
        // `path`.
        let excluded = self.leader_excluded(&leader);
        others.sort_by_key(|(other, _)| (other.as_slice() != leader.as_slice(), (*other).clone()));
        let mut out = Vec::new();
        for (other, other_ext) in others {
            let mut relink_ext = other_ext.clone();
            if other.as_slice() == leader.as_slice() || excluded {
                relink_ext.insert(
                    crate::tree::meta::keys::HARD_LINK,
                    crate::tree::meta::encode(&path.to_vec()),
                );
            }
            out.push((
                other.clone(),
                Action::SetMeta {
                    path: other.clone(),
                    kind: MetaKind::File,
                    mode: None,
                    mtime: None,
                    ext: relink_ext,
                },
            ));
        }
        Ok(out)
    }

    /// Whether the file `path` (with `chunks`) ends as a hard link to its
    /// leader, a name this batch leaves with the same content: its bytes
    /// are a link, not content written or copied (review 14c item 10).
    fn links_to_leader(
        &self,
        path: &[u8],
        chunks: &[crate::ops::ChunkRef],
        ext: &crate::ops::Extensions,
    ) -> Result<bool> {
        if !self.preserve.hardlinks {
            return Ok(false);
        }
        let Some(leader) = crate::tree::meta::hard_link_leader(ext).filter(|l| l != path) else {
            return Ok(false);
        };
        let last = match self.planned.get(self.conn, &leader)? {
            Some(entry) => Some(entry.state),
            None => self.recorded.get(&leader).map(|e| e.state.clone()),
        };
        Ok(matches!(last, Some(PathState::File { chunks: same, .. }) if same == chunks))
    }

    /// What is on disk at exactly `path`. On a filesystem that folds
    /// names a lookup also answers for another spelling (`report.txt`
    /// finds `Report.txt`), so there a path counts only when each of its
    /// components is listed under its exact name.
    fn disk_kind(&self, path: &[u8]) -> Result<DiskKind> {
        let kind = self.confined.kind(path)?;
        if kind == DiskKind::Missing || !self.folding.folds() || self.exactly_on_disk(path)? {
            return Ok(kind);
        }
        Ok(DiskKind::Missing)
    }

    /// Whether every component of `path` is listed in its folder under
    /// its exact name.
    fn exactly_on_disk(&self, path: &[u8]) -> Result<bool> {
        let mut parent_len = 0;
        let mut start = 0;
        for name in path.split(|&b| b == b'/') {
            let listed = self.in_listing(&path[..parent_len], |names| {
                names.is_some_and(|names| names.contains(name))
            })?;
            if !listed {
                return Ok(false);
            }
            parent_len = start + name.len();
            start = parent_len + 1;
        }
        Ok(true)
    }

    /// `look` applied to the exact names in the folder `dir` (the root when
    /// empty), `None` when it is not a folder reachable beneath the root.
    /// Listed once per batch.
    fn in_listing<T>(&self, dir: &[u8], look: impl FnOnce(Option<&Names>) -> T) -> Result<T> {
        if let Some(names) = self.listings.borrow().get(dir) {
            return Ok(look(names.as_ref()));
        }
        let names = match self.confined.list_dir(dir) {
            Ok(listing) => Some(listing.into_iter().map(|(name, _)| name).collect()),
            Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT | Errno::XDEV | Errno::INVAL) => None,
            Err(errno) => {
                let disk = relpath::to_disk_path(self.root, dir);
                return Err(Error::io(&disk, errno.into()));
            }
        };
        let value = look(names.as_ref());
        self.listings.borrow_mut().insert(dir.to_vec(), names);
        Ok(value)
    }

    /// Whether another path that is the same name as `path` on this
    /// filesystem is in the tree, or will be after the batch: recorded,
    /// planned, or an unrecorded name on disk. Always false on a
    /// filesystem that tells every name apart.
    fn fold_taken(&self, path: &[u8]) -> Result<bool> {
        if !self.folding.folds() {
            return Ok(false);
        }
        let key = self.folding.key(path);
        let recorded = self.recorded_keys.get_or_init(|| {
            let mut by_key: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
            for path in &self.recorded_live {
                by_key
                    .entry(self.folding.key(path).into_owned())
                    .or_default()
                    .push(path.clone());
            }
            by_key
        });
        for other in recorded.get(key.as_ref()).into_iter().flatten() {
            let stays = other.as_slice() != path
                && !self
                    .planned
                    .get(self.conn, other)?
                    .is_some_and(|e| e.state == PathState::Deleted);
            if stays {
                return Ok(true);
            }
        }
        // Every planned path read (only where names fold).
        if self.planned.any(self.conn, |other, entry| {
            other != path && entry.state != PathState::Deleted && self.folding.key(other) == key
        })? {
            return Ok(true);
        }
        let (parent, name) = split_last(path);
        if !parent.is_empty() && !self.exactly_on_disk(parent)? {
            return Ok(false);
        }
        let name_key = self.folding.key(name);
        self.in_listing(parent, |names| {
            names.is_some_and(|names| {
                names
                    .iter()
                    .any(|other| other.as_slice() != name && self.folding.key(other) == name_key)
            })
        })
    }

    /// Rule 11: on a filesystem that folds names, a path this batch makes
    /// that is the same name there as another path of the tree is not
    /// made. The name goes to, in this order: a path on disk under its
    /// exact name (recorded or not: an excluded file, the state folder), a
    /// recorded path, a path this replica makes in the batch (a conflict
    /// copy), then the first in byte order of the paths the batch makes.
    /// A path whose folder is such a name is not made either. The file's
    /// content is kept as a conflict copy, in the folder as this filesystem
    /// holds it; nothing is recorded for the path itself, so the next scan
    /// does not take its absence for a deletion and the other replicas
    /// keep it.
    fn fold_collisions(&mut self) -> Result<()> {
        const ON_DISK: u8 = 0;
        const RECORDED: u8 = 1;
        const MADE_HERE: u8 = 2;
        if !self.folding.folds() {
            return Ok(());
        }
        let mut made_here: HashSet<Vec<u8>> = HashSet::new();
        self.local_ops.flush(self.conn)?;
        self.local_ops.for_each(self.conn, |op| {
            if let Some(change) = op.change.path_change() {
                made_here.insert(change.path.clone());
            }
            Ok::<(), Error>(())
        })?;
        // In byte order. Held in memory: only where names fold.
        let mut new_paths: Vec<Vec<u8>> = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        loop {
            let page = self
                .planned
                .page(self.conn, last.as_deref(), false, Only::Live)?;
            let Some((end, _)) = page.last() else {
                break;
            };
            last = Some(end.clone());
            new_paths.extend(
                page.into_iter()
                    .map(|(path, _)| path)
                    .filter(|path| !self.recorded_live.contains(path) && !made_here.contains(path)),
            );
        }
        if new_paths.is_empty() {
            return Ok(());
        }
        // Every name the tree will hold, by folding key.
        let mut groups: HashMap<Vec<u8>, Vec<(u8, Vec<u8>)>> = HashMap::new();
        let mut add = |rank: u8, path: &[u8]| {
            groups
                .entry(self.folding.key(path).into_owned())
                .or_default()
                .push((rank, path.to_vec()));
        };
        for path in &self.recorded_live {
            if !self
                .planned
                .get(self.conn, path)?
                .is_some_and(|e| e.state == PathState::Deleted)
            {
                add(RECORDED, path);
            }
        }
        for path in &made_here {
            if self
                .planned
                .get(self.conn, path)?
                .is_some_and(|e| e.state != PathState::Deleted)
                && !self.recorded_live.contains(path)
            {
                add(MADE_HERE, path);
            }
        }
        // Unrecorded names on disk in every folder the new paths go through.
        let mut dirs: BTreeSet<Vec<u8>> = BTreeSet::from([Vec::new()]);
        for path in &new_paths {
            dirs.extend(ancestors(path).into_iter().map(<[u8]>::to_vec));
        }
        for dir in &dirs {
            if !dir.is_empty() && !self.exactly_on_disk(dir)? {
                continue;
            }
            let names: Vec<Vec<u8>> = self.in_listing(dir, |names| {
                names
                    .map(|n| n.iter().cloned().collect())
                    .unwrap_or_default()
            })?;
            for name in names {
                let path = join(dir, &name);
                if !self.recorded_live.contains(&path)
                    && !self.planned.contains(self.conn, &path)?
                {
                    add(ON_DISK, &path);
                }
            }
        }
        // A recorded path is on disk, unless another spelling of it is (a
        // state recorded where the filesystem told them apart).
        for group in groups.values_mut().filter(|g| g.len() > 1) {
            for (rank, path) in group.iter_mut() {
                if *rank == RECORDED && self.exactly_on_disk(path)? {
                    *rank = ON_DISK;
                }
            }
        }
        let mut holders: HashMap<Vec<u8>, Vec<u8>> = groups
            .into_iter()
            .filter_map(|(key, group)| group.into_iter().min().map(|(_, path)| (key, path)))
            .collect();
        // The new paths in byte order, a folder before what it holds: each
        // one made takes its name, for the ones after it.
        let folding = self.folding;
        let mut dropped = Vec::new();
        for path in &new_paths {
            let mut prefixes = ancestors(path);
            prefixes.push(path);
            let clash = prefixes.into_iter().find_map(|prefix| {
                holders
                    .get(folding.key(prefix).as_ref())
                    .filter(|holder| holder.as_slice() != prefix)
                    .map(|holder| (prefix.to_vec(), holder.clone()))
            });
            match clash {
                Some((at, holder)) => dropped.push((path.clone(), at, holder)),
                None => {
                    holders
                        .entry(folding.key(path).into_owned())
                        .or_insert_with(|| path.clone());
                }
            }
        }
        let holder_of = |path: &[u8]| holders.get(folding.key(path).as_ref());
        for (path, at, holder) in dropped {
            let Some(entry) = self.unplan(&path)? else {
                continue;
            };
            self.resolved.remove(&path);
            let (parent, name) = split_last(&path);
            // The folder as this filesystem holds it.
            let mut dir = Vec::new();
            for component in parent.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
                let candidate = join(&dir, component);
                dir = holder_of(&candidate).cloned().unwrap_or(candidate);
            }
            let what = self.folding.describe();
            let clash = if at == path {
                format!(
                    "{} and {} are the same name on this filesystem ({what})",
                    relpath::display(&path),
                    relpath::display(&holder)
                )
            } else {
                format!(
                    "its folder {} and {} are the same name on this filesystem ({what})",
                    relpath::display(&at),
                    relpath::display(&holder)
                )
            };
            let who = self.label(&entry.author);
            let kind = crate::tree::scan::type_name(&entry.state);
            let not_made = format!("{who}'s {kind} is not made here (the other replicas keep it)");
            let outcome = match &entry.state {
                PathState::File { size, chunks, .. } => {
                    // What holds its name here, whose content may be the same.
                    let here = join(&dir, name);
                    let beside = holder_of(&here).cloned().unwrap_or(here);
                    let same = matches!(
                        self.effective(&beside)?.map(|e| e.state),
                        Some(PathState::File { chunks: ref there, .. }) if there == chunks
                    );
                    if same {
                        format!(
                            "kept {}, which has the same content",
                            relpath::display(&beside)
                        )
                    } else if *size == 0 {
                        format!(
                            "kept {}; {who}'s empty file is not made here",
                            relpath::display(&holder)
                        )
                    } else if !self.holds_folder(&dir)? {
                        format!("kept {}; {not_made}", relpath::display(&holder))
                    } else {
                        match self.conflict_copy_in(&dir, name, &entry.state, entry.author, None)? {
                            Some(copy) => format!(
                                "kept {}, and {who}'s {} as {}",
                                relpath::display(&holder),
                                relpath::display(&path),
                                relpath::display(&copy)
                            ),
                            None => format!("kept {}; {not_made}", relpath::display(&holder)),
                        }
                    }
                }
                // What lies below a folder that is not made goes unsaid:
                // the folder's note and its files' notes say it.
                _ if at != path => continue,
                _ => format!("kept {}; {not_made}", relpath::display(&holder)),
            };
            self.lines
                .conflict(format!("{}: {clash}; {outcome}", relpath::display(&path)))?;
        }
        Ok(())
    }

    /// Whether `dir` is, or can become without displacing anything, a
    /// folder: each of its prefixes is a directory after the batch, or
    /// nothing at all.
    fn holds_folder(&self, dir: &[u8]) -> Result<bool> {
        if !dir.is_empty() && validate_path(dir).is_err() {
            // The state folder, whose name another spelling folded onto.
            return Ok(false);
        }
        let mut prefixes = ancestors(dir);
        if !dir.is_empty() {
            prefixes.push(dir);
        }
        for prefix in prefixes {
            let fine = match self.effective(prefix)?.map(|e| e.state) {
                Some(PathState::Directory { .. } | PathState::Deleted) => true,
                Some(_) => false,
                None => matches!(
                    self.disk_kind(prefix)?,
                    DiskKind::Dir(_) | DiskKind::Missing
                ),
            };
            if !fine {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether a recorded file has other names (a hard-link set).
fn recorded_linked(entry: Option<&RecordedEntry>) -> bool {
    matches!(
        entry.map(|e| &e.state),
        Some(PathState::File { ext, .. }) if crate::tree::meta::hard_link_leader(ext).is_some()
    )
}

fn copy_note(copy: Option<&[u8]>) -> String {
    match copy {
        Some(copy) => format!("; the other version is kept as {}", relpath::display(copy)),
        None => String::new(),
    }
}

/// `long-paths/HASH-NAME`: where a version whose path is too long to be
/// kept whole is kept, below the day's folder (see
/// `Reserved::soft_delete_target`).
fn short_kept_name(path: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(path);
    let (_, name) = split_last(path);
    let mut keep = name.len().min(200);
    // Not in the middle of a character, where the name is UTF-8.
    while keep < name.len() && std::str::from_utf8(&name[..keep]).is_err() && keep > 196 {
        keep -= 1;
    }
    let mut out = format!("long-paths/{}-", hex::encode(&digest[..16])).into_bytes();
    out.extend_from_slice(&name[..keep]);
    out
}

/// Soft-delete names handed out in this batch.
struct Reserved {
    /// In the batch's scratch database (`super::spool`).
    names: ReservedNames,
}

impl Reserved {
    fn create(conn: &rusqlite::Connection, file: &Path) -> Result<Reserved> {
        Ok(Reserved {
            names: ReservedNames::create(conn, file)?,
        })
    }

    /// `deleted/DAY/PATH` relative to the state folder, with `.1`, `.2`…
    /// appended to the name if taken (and `DAY.1`… if a parent is taken by
    /// a file).
    ///
    /// A path too long to be kept there whole (the state folder's path,
    /// `deleted/DAY.N/`, the path and a `.NNN` or `.partial` suffix over
    /// [`PATH_MAX`]) is kept as `deleted/DAY/long-paths/HASH-NAME`
    /// instead: HASH is the first 16 bytes of the path's SHA-256 in hex,
    /// NAME its last name (shortened to 200 bytes), so the old version is
    /// kept whatever the path's length.
    fn soft_delete_target(
        &mut self,
        conn: &rusqlite::Connection,
        root: &Path,
        day: &str,
        path: &[u8],
    ) -> Result<Vec<u8>> {
        let state_dir = root.join(STATE_DIR);
        let exists = |rel: &[u8]| {
            let disk: PathBuf = state_dir.join(OsStr::from_bytes(rel));
            std::fs::symlink_metadata(disk).ok()
        };
        // Room for `DAY.NNN`, `.NNN` and `.partial` (a copy's temporary).
        const SUFFIXES: usize = 4 + 4 + 8;
        let whole = state_dir.as_os_str().len() + 1 + DELETED_DIR.len() + 1 + day.len() + 1;
        let short;
        let path = if whole + path.len() + SUFFIXES > PATH_MAX {
            short = short_kept_name(path);
            short.as_slice()
        } else {
            path
        };
        for folder in 0.. {
            let day_dir = if folder == 0 {
                format!("{DELETED_DIR}/{day}")
            } else {
                format!("{DELETED_DIR}/{day}.{folder}")
            };
            let base = join(day_dir.as_bytes(), path);
            let mut blocked = false;
            for ancestor in ancestors(&base) {
                if self.names.get(conn, ancestor)? == Some(true)
                    || exists(ancestor).is_some_and(|m| !m.file_type().is_dir())
                {
                    blocked = true;
                    break;
                }
            }
            if blocked {
                continue;
            }
            for suffix in 0..1000 {
                let mut candidate = base.clone();
                if suffix > 0 {
                    candidate.extend_from_slice(format!(".{suffix}").as_bytes());
                }
                if self.names.get(conn, &candidate)?.is_some() || exists(&candidate).is_some() {
                    continue;
                }
                for ancestor in ancestors(&candidate) {
                    self.names.insert(conn, ancestor, false)?;
                }
                self.names.insert(conn, &candidate, true)?;
                return Ok(candidate);
            }
        }
        unreachable!("some day folder is free")
    }
}

/// A concurrent change in a conflict note: what the version is, "a
/// deletion" rather than "nothing" for a path deleted.
/// `state` less its hard-link leader (a file's copy is a file of its own).
fn without_hard_link(state: &PathState) -> PathState {
    let mut state = state.clone();
    if let PathState::File { ext, .. } = &mut state {
        if ext.get(crate::tree::meta::keys::HARD_LINK).is_some() {
            let mut out = crate::ops::Extensions::default();
            for entry in ext
                .iter()
                .filter(|e| e.key != crate::tree::meta::keys::HARD_LINK)
            {
                out.insert(entry.key, entry.value.clone());
            }
            *ext = out;
        }
    }
    state
}

/// The leader of the hard-link set both files `a` and `b` are names of,
/// if they are names of one.
fn same_link_set(a: &PathState, b: &PathState) -> Option<Vec<u8>> {
    let (PathState::File { ext: a, .. }, PathState::File { ext: b, .. }) = (a, b) else {
        return None;
    };
    let leader = crate::tree::meta::hard_link_leader(a)?;
    (crate::tree::meta::hard_link_leader(b).as_ref() == Some(&leader)).then_some(leader)
}

fn change_word(state: &PathState) -> &'static str {
    match state {
        PathState::Deleted => "a deletion",
        other => crate::tree::scan::type_name(other),
    }
}

/// Adds the last of `names` (the names of one hard-link set met so far,
/// the first holding line `at`) to the set's one conflict line (`rest`: the
/// note after the path). Once the notes overflow to the report file (which
/// has them as they came), a further name gets a line of its own.
fn link_set_line(lines: &mut Lines, at: usize, names: &[String], rest: &str) -> Result<()> {
    let (first, others) = names.split_first().expect("one name at least");
    let joined = format!(
        "{first}: {rest} (the same for {}: names of one hard-link set)",
        others.join(", ")
    );
    match lines.held_conflict_mut(at) {
        Some(line) => {
            *line = joined;
            Ok(())
        }
        None => {
            let name = names.last().expect("one name at least");
            lines.conflict(format!(
                "{name}: {rest} (the same as for {first}: names of one hard-link set)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_copy_names() {
        // 2026-11-21 10:15:00 UTC
        let ns = Timestamp::new(1_795_256_100, 0).unwrap();
        assert_eq!(
            conflict_copy_name(b"report.txt", Some(ns), "boston"),
            b"report.sync-conflict-20261121-101500-boston.txt".to_vec()
        );
        assert_eq!(
            conflict_copy_name(b"Makefile", Some(ns), "boston"),
            b"Makefile.sync-conflict-20261121-101500-boston".to_vec()
        );
        assert_eq!(
            conflict_copy_name(b".bashrc", Some(ns), "b"),
            b".bashrc.sync-conflict-20261121-101500-b".to_vec()
        );
        assert_eq!(
            conflict_copy_name(b"a.tar.gz", Some(ns), "b"),
            b"a.tar.sync-conflict-20261121-101500-b.gz".to_vec()
        );
        let long = vec![b'x'; 250];
        assert!(conflict_copy_name(&long, Some(ns), "b").len() <= NAME_MAX);
        // Times an i64 of nanoseconds cannot hold.
        let far = Timestamp::new(13_569_465_600, 0).unwrap();
        assert_eq!(
            conflict_copy_name(b"a.txt", Some(far), "b"),
            b"a.sync-conflict-24000101-000000-b.txt".to_vec()
        );
    }

    #[test]
    fn names_reserved_before_the_ones_held_in_memory_still_count() {
        // More names than are held in memory: the first ones are read
        // back from the scratch database.
        let dir = tempfile::tempdir().unwrap();
        let state = crate::store::state::State::open(dir.path()).unwrap();
        let batch = OpBatch::create(&state, &Default::default()).unwrap();
        let conn = state.conn();
        let mut reserved = Reserved::create(conn, batch.file()).unwrap();
        let mut keep = |path: &str| {
            String::from_utf8(
                reserved
                    .soft_delete_target(conn, dir.path(), "20260101", path.as_bytes())
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(keep("a"), "deleted/20260101/a");
        assert_eq!(keep("d/x"), "deleted/20260101/d/x");
        for index in 0..super::super::spool::HELD * 2 {
            keep(&format!("f/{index}"));
        }
        // Taken: the same name, a name below a kept file, and a folder's.
        assert_eq!(keep("a"), "deleted/20260101/a.1");
        assert_eq!(keep("a/b"), "deleted/20260101.1/a/b");
        assert_eq!(keep("d"), "deleted/20260101/d.1");
        assert_eq!(keep("f/0"), "deleted/20260101/f/0.1");
        batch.close(&state);
    }

    #[test]
    fn a_kept_version_too_long_to_keep_whole_gets_a_short_name() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::store::state::State::open(dir.path()).unwrap();
        let batch = OpBatch::create(&state, &Default::default()).unwrap();
        let conn = state.conn();
        let mut reserved = Reserved::create(conn, batch.file()).unwrap();
        let short = reserved
            .soft_delete_target(conn, dir.path(), "20260101", b"d/x.txt")
            .unwrap();
        assert_eq!(short, b"deleted/20260101/d/x.txt");
        let name = "n".repeat(250);
        let long = format!("{}/{name}", "d".repeat(3800));
        let kept = reserved
            .soft_delete_target(conn, dir.path(), "20260101", long.as_bytes())
            .unwrap();
        let kept = String::from_utf8(kept).unwrap();
        assert!(kept.starts_with("deleted/20260101/long-paths/"), "{kept}");
        let last = kept.rsplit('/').next().unwrap();
        assert_eq!(last.len(), 32 + 1 + 200, "{last}");
        assert!(last.ends_with(&name[..200]));
        // Another path with the same last name gets another hash.
        let other = format!("{}/{name}", "e".repeat(3800));
        let other = reserved
            .soft_delete_target(conn, dir.path(), "20260101", other.as_bytes())
            .unwrap();
        assert_ne!(other, kept.as_bytes());
        batch.close(&state);
    }

    #[test]
    fn prefix_hashes_are_the_hashes_of_the_prefixes() {
        let hasher = PrefixHasher::new();
        let path = b"a/bc/\xff\xfe/d";
        let prefixes = hasher.ancestors(path);
        assert_eq!(prefixes.len(), 3);
        for (len, hash) in prefixes {
            assert_eq!(hash, hasher.hash(&path[..len]));
        }
        assert_ne!(hasher.hash(b"a/b"), hasher.hash(b"a/c"));
        // The reduction stays below the prime with the largest inputs.
        let top = PrefixHasher {
            base: HASH_PRIME - 1,
        };
        let mut hash = HASH_PRIME - 1;
        for _ in 0..100 {
            hash = top.step(hash, 255);
            assert!(hash < HASH_PRIME);
        }
    }

    #[test]
    fn hostile_paths_are_refused_as_relpath_judges_them() {
        // The cases themselves are tested in `relpath`.
        assert!(matches!(
            validate_path(b"../x"),
            Err(Error::Refused(Refusal::HostilePath { .. }))
        ));
        validate_path(b"d/f.txt").unwrap();
    }

    #[test]
    fn winners() {
        let file = |secs| PathState::File {
            mode: 0o644,
            mtime: Timestamp { secs, nanos: 0 },
            size: 0,
            chunks: vec![],
            ext: Default::default(),
        };
        let dir = PathState::directory(0o755);
        assert!(winner_is_first(&file(1), &PathState::Deleted));
        assert!(!winner_is_first(&PathState::Deleted, &file(1)));
        assert!(winner_is_first(&file(2), &file(1)));
        // 2400 is newer than 2200: no wrapping of nanosecond counts.
        assert!(winner_is_first(&file(13_569_465_600), &file(7_258_118_400)));
        assert!(winner_is_first(&file(1), &file(-11_676_096_000)));
        assert!(winner_is_first(&dir, &file(i64::MAX)));
        let link = PathState::symlink(b"x".to_vec());
        assert!(winner_is_first(&dir, &link));
        // Ties are broken by encoding, and never both ways.
        let a = PathState::symlink(b"a".to_vec());
        assert_ne!(winner_is_first(&a, &link), winner_is_first(&link, &a));
    }
}
