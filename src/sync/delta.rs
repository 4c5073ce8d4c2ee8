//! Paying for the change, not the file: relative file states (a file's
//! chunk list given against a version the target holds, SPEC.md §6.3.1)
//! and chunk recipes (a changed chunk given as pieces of the chunk it
//! replaces plus the new bytes, SPEC.md §5.1).
//!
//! Both sides: the exporter finds, per path, the version the target is
//! believed to hold ([`held_versions`]) and encodes against it; the
//! importer expands relative states before anything else looks at the
//! operations ([`Expander`]), so seals, the log and the engine only ever
//! see full states.

use std::collections::{HashMap, HashSet};

use packet_format::delta::{OperationRef, Recipe, RelativeFile, Step, FILE_RELATIVE};

use crate::error::{Error, Refusal, Result};
use crate::ops::{Change, ChunkId, ChunkRef, Id, Operation, PathState};
use crate::store::state::State;
use crate::tree::chunking::{self, Piece};
use crate::tree::relpath;

/// The version of a path the target is believed to hold: the operation
/// that made it and its chunks (empty for a state that is not a file).
#[derive(Debug, Clone)]
pub struct Held {
    pub op: OperationRef,
    pub chunks: Vec<ChunkRef>,
    /// The file state as that operation gave it.
    pub state: PathState,
}

/// For each path `ops` touch, the version the target holds per `estimate`:
/// the last operation on the path, in this replica's log order, whose
/// version vector the estimate covers. Paths the target holds nothing of
/// (or holds deleted) are absent, and so are paths that an operation of
/// `ops` re-asserts with exactly that state: a re-assertion (`-resendpath`, a
/// busy file left out of a creation packet) says the target may have that
/// version in its log without its content (it was excluded there, a step
/// failed there, the packet went without it), so nothing of it is relied
/// on. Except where the re-assertion (a resolution) answers another
/// member's content request (`answers_for_others`, paths): only that
/// member gets the content whole; this target's version is relied on.
pub fn held_versions(
    state: &State,
    estimate: &HashMap<Id, u64>,
    ops: &[Operation],
    answers_for_others: &HashSet<Vec<u8>>,
) -> Result<HashMap<Vec<u8>, Held>> {
    let paths: HashSet<&[u8]> = ops
        .iter()
        .filter_map(|op| op.change.path_change().map(|c| c.path.as_slice()))
        .collect();
    let mut held = held_by_log(state, estimate, &paths)?;
    for op in ops {
        if let Some(change) = op.change.path_change() {
            let answer = matches!(op.change, Change::Resolve { .. })
                && answers_for_others.contains(change.path.as_slice());
            if !answer
                && held
                    .get(change.path.as_slice())
                    .is_some_and(|h| h.state == *change.state)
            {
                held.remove(change.path.as_slice());
            }
        }
    }
    Ok(held)
}

fn held_by_log(
    state: &State,
    estimate: &HashMap<Id, u64>,
    paths: &HashSet<&[u8]>,
) -> Result<HashMap<Vec<u8>, Held>> {
    let has_version = |version: &crate::ops::VersionVector| {
        version
            .0
            .iter()
            .all(|(origin, epoch)| *epoch <= estimate.get(origin).copied().unwrap_or(0))
    };
    let mut held: HashMap<Vec<u8>, Held> = HashMap::new();
    if paths.is_empty() {
        return Ok(held);
    }
    // An operation names its path verbatim in its encoding: one that
    // contains none of `paths` is not decoded (the log is most of an
    // export's reading when few paths change). A false match costs only
    // the decoding; the path is compared exactly below.
    // The root (the empty path) is left out: it is always a directory, so
    // it is never held as a file, and its empty name would match every
    // operation. (Should the automaton not build, every operation is
    // decoded.)
    let finder = aho_corasick::AhoCorasick::new(paths.iter().filter(|p| !p.is_empty())).ok();
    let wanted = |bytes: &[u8]| finder.as_ref().is_none_or(|f| f.is_match(bytes));
    state.for_each_operation_where(wanted, |op| {
        let Some(change) = op.change.path_change() else {
            return;
        };
        // The operation itself must be one the target has: a resolution's
        // version need not name its own epoch.
        let has_op = op.epoch <= estimate.get(&op.origin).copied().unwrap_or(0);
        if !paths.contains(change.path.as_slice()) || !has_version(change.version) || !has_op {
            return;
        }
        match change.state {
            PathState::File { chunks, .. } => {
                held.insert(
                    change.path.clone(),
                    Held {
                        op: OperationRef {
                            origin: op.origin,
                            epoch: op.epoch,
                        },
                        chunks: chunks.clone(),
                        state: change.state.clone(),
                    },
                );
            }
            _ => {
                held.remove(change.path.as_slice());
            }
        }
    })?;
    Ok(held)
}

/// `op` with its file state given relative to `base` (whose chunks are
/// `base_chunks`) when that is shorter; `op` unchanged otherwise.
pub fn relative_op(op: &Operation, base: OperationRef, base_chunks: &[ChunkRef]) -> Operation {
    let mut out = op.clone();
    let state = match &mut out.change {
        Change::Path { state, .. } | Change::Resolve { state, .. } => state,
        _ => return out,
    };
    let PathState::File {
        mode,
        mtime,
        chunks,
        ext,
        ..
    } = &*state
    else {
        return out;
    };
    let relative = RelativeFile {
        base,
        mode: *mode,
        mtime: *mtime,
        runs: RelativeFile::runs_between(base_chunks, chunks),
        ext: ext.clone(),
    }
    .to_state();
    let shorter = postcard::to_stdvec(&relative)
        .map(|b| b.len())
        .unwrap_or(usize::MAX)
        < postcard::to_stdvec(&*state).map(|b| b.len()).unwrap_or(0);
    if shorter {
        *state = relative;
    }
    out
}

/// Expands the relative file states of a packet's operations, in packet
/// order: the base of each is an earlier operation of the packet or one
/// this replica logged.
///
/// A base among the packet's new operations is looked up in the batch they
/// go to ([`Expander::expand_in`]), kept on disk: nothing is held in
/// memory per file operation, however many the packet carries.
pub struct Expander<'a> {
    state: &'a State,
}

impl<'a> Expander<'a> {
    /// An expander whose bases are operations this replica logged (or
    /// those of a batch, [`Expander::expand_in`]).
    pub fn new(state: &'a State) -> Expander<'a> {
        Expander { state }
    }

    /// The operation `origin`:`epoch`, from `batch` or the log.
    fn base(
        &self,
        batch: Option<&crate::sync::apply::batch::OpBatch>,
        origin: Id,
        epoch: u64,
    ) -> Result<Option<Operation>> {
        if let Some(batch) = batch {
            if let Some(op) = batch.operation(self.state.conn(), origin, epoch)? {
                return Ok(Some(op));
            }
        }
        self.state.operation(&origin, epoch)
    }

    /// `op` with a relative file state replaced by the full one. Errors: a
    /// base this replica does not have or that is not a file
    /// ([`Refusal::OperationLog`]), a malformed relative state.
    pub fn expand(&mut self, op: Operation) -> Result<Operation> {
        self.expand_in(op, None)
    }

    /// [`Expander::expand`], with the base also looked up in `batch`,
    /// which the caller fills with the expanded operations in packet
    /// order.
    pub fn expand_in(
        &mut self,
        mut op: Operation,
        batch: Option<&crate::sync::apply::batch::OpBatch>,
    ) -> Result<Operation> {
        let (path, state) = match &mut op.change {
            Change::Path { path, state, .. } | Change::Resolve { path, state, .. } => {
                (path.clone(), state)
            }
            _ => return Ok(op),
        };
        let (origin, epoch) = (op.origin, op.epoch);
        let refuse = |what: String| {
            Error::Refused(Refusal::OperationLog {
                what: format!(
                    "operation {origin}:{epoch} on \"{}\": {what}",
                    relpath::display(&path)
                ),
            })
        };
        if let PathState::Unknown {
            kind: FILE_RELATIVE,
            body,
        } = &*state
        {
            let relative = RelativeFile::decode(body).map_err(refuse)?;
            let base = relative.base;
            let expanded = match self.base(batch, base.origin, base.epoch)? {
                Some(base_op) => match base_op.change.path_change().map(|c| c.state) {
                    Some(PathState::File { chunks, .. }) => relative.expand(chunks),
                    _ => Err(format!(
                        "its file is given relative to operation {}:{}, which is not a file",
                        base.origin, base.epoch
                    )),
                },
                // Scrubbed here (`sync::scrub`): the path's recorded
                // state is that operation's when its version says so.
                None => match self.scrubbed_base(&path, base.origin, base.epoch)? {
                    Some(chunks) => relative.expand(&chunks),
                    None => Err(format!(
                        "its file is given relative to operation {}:{}, which this replica does \
                         not have (the sender's estimate of this replica is ahead of it: see \
                         lsepoch and chepoch)",
                        base.origin, base.epoch
                    )),
                },
            };
            *state = expanded.map_err(refuse)?;
        }
        Ok(op)
    }
}

impl Expander<'_> {
    /// The chunks of operation `origin:epoch` on `path` when this replica
    /// scrubbed it and still records its state: the path's entry is a file
    /// whose version names exactly that operation of its origin (no later
    /// one of that origin touched it; a later one of another origin would
    /// be the sender's base instead, as the target holds it).
    fn scrubbed_base(&self, path: &[u8], origin: Id, epoch: u64) -> Result<Option<Vec<ChunkRef>>> {
        if epoch > self.state.scrubbed_through(&origin)? {
            return Ok(None);
        }
        Ok(match self.state.entry_state(path)? {
            Some((PathState::File { chunks, .. }, version)) if version.get(&origin) == epoch => {
                Some(chunks)
            }
            _ => None,
        })
    }
}

/// Builds recipes for the changed chunks of one file version against the
/// chunks of the version the target holds, using the pieces recorded for
/// those (chunks without recorded pieces are not used).
pub struct RecipeMaker<'a> {
    state: &'a State,
    /// The target's version's chunks (but zero chunks), with
    /// their offsets in that version, in offset order.
    old: Vec<(u64, ChunkRef)>,
    /// The pieces of the old chunks near the last chunk asked for. Only
    /// those: a file's changed chunks come in offset order, and keeping
    /// every old chunk's pieces held a large file's whole piece list by
    /// the end (16 bytes a ~512-byte piece: 45 MB for the 2 GiB image of
    /// bench/vm_image.sh, with its scattered writes).
    pieces: HashMap<ChunkId, Option<Vec<Piece>>>,
}

/// How far from a new chunk's place (in bytes) the old chunks it may be
/// built from are looked for: an edit in place or a small insertion
/// keeps the old bytes near.
const NEAR: u64 = 1024 * 1024;

impl<'a> RecipeMaker<'a> {
    pub fn new(state: &'a State, held: &[ChunkRef]) -> RecipeMaker<'a> {
        let mut offset = 0u64;
        let mut old = Vec::new();
        for chunk in held {
            // Every chunk of the held version is a base the receiver has,
            // a chunk the new version keeps too: content repeats (a disk
            // image holds the same blocks many times), and the old chunk
            // at the place of an edit is often also kept elsewhere in the
            // file. Zero chunks give nothing a recipe needs (zeros
            // compress to nothing), so they take no base slot.
            if !chunking::is_zero_chunk(chunk) {
                old.push((offset, *chunk));
            }
            offset += u64::from(chunk.len);
        }
        RecipeMaker {
            state,
            old,
            pieces: HashMap::new(),
        }
    }

    /// A recipe for `bytes` (the new chunk `id`, at `offset` in its file),
    /// or `None` when the old chunks near it share too little with it.
    pub fn recipe(&mut self, offset: u64, bytes: &[u8]) -> Result<Option<Recipe>> {
        if self.old.is_empty() {
            return Ok(None);
        }
        let end = offset + bytes.len() as u64;
        // `old` is in offset order, and so are the chunks' ends (they do
        // not overlap): those ending after `offset - NEAR` and starting
        // before `end + NEAR` are a slice of it.
        let first = self
            .old
            .partition_point(|(at, c)| at + u64::from(c.len) + NEAR <= offset);
        let last = self.old.partition_point(|(at, _)| *at < end + NEAR);
        let mut near: Vec<(u64, ChunkRef)> = self.old[first..last.max(first)].to_vec();
        near.sort_by_key(|(at, _)| at.abs_diff(offset));
        // A chunk held at several places is one base, the nearest.
        let mut seen = HashSet::new();
        near.retain(|(_, chunk)| seen.insert(chunk.id));
        // Pieces of chunks no longer near are let go (see `pieces`).
        self.pieces.retain(|id, _| seen.contains(id));
        near.truncate(packet_format::delta::MAX_RECIPE_BASES);
        // Fingerprint -> (index in `near`, offset, length).
        let mut found: HashMap<u64, (usize, u32, u32)> = HashMap::new();
        for (index, (_, chunk)) in near.iter().enumerate() {
            let pieces = match self.pieces.get(&chunk.id) {
                Some(pieces) => pieces,
                None => {
                    let pieces = self
                        .state
                        .chunk_pieces(&chunk.id)?
                        .and_then(|packed| chunking::unpack_pieces(&packed))
                        .filter(|p| p.iter().map(|p| p.len).sum::<u32>() == chunk.len);
                    self.pieces.entry(chunk.id).or_insert(pieces)
                }
            };
            for piece in pieces.iter().flatten() {
                found
                    .entry(piece.print)
                    .or_insert((index, piece.offset, piece.len));
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        let mut used: Vec<usize> = Vec::new();
        let mut steps: Vec<Step> = Vec::new();
        let mut literals = Vec::new();
        let mut copied = 0usize;
        let mut zeros = 0usize;
        for piece in chunking::pieces(bytes) {
            let data = &bytes[piece.offset as usize..(piece.offset + piece.len) as usize];
            // Zeros (blank image space around a write) go as literals: in
            // the literals' zstd frame they cost next to nothing, where
            // copying them took a step per piece (the same zero piece of
            // a base, never a contiguous run).
            let zero = chunking::is_all_zero(data);
            if zero {
                zeros += data.len();
            }
            match found
                .get(&piece.print)
                .filter(|f| f.2 == piece.len && !zero)
            {
                Some(&(index, from, len)) => {
                    let base = match used.iter().position(|&u| u == index) {
                        Some(at) => at,
                        None => {
                            used.push(index);
                            used.len() - 1
                        }
                    } as u32;
                    copied += len as usize;
                    match steps.last_mut() {
                        Some(Step::Copy {
                            base: b,
                            offset: o,
                            len: l,
                        }) if *b == base && *o + *l == from => *l += len,
                        _ => steps.push(Step::Copy {
                            base,
                            offset: from,
                            len,
                        }),
                    }
                }
                None => {
                    literals.extend_from_slice(data);
                    match steps.last_mut() {
                        Some(Step::Literal { len }) => *len += piece.len,
                        _ => steps.push(Step::Literal { len: piece.len }),
                    }
                }
            }
        }
        // Worth it only when much of the chunk is found (or zeros).
        if used.is_empty() || copied + zeros < bytes.len() / 4 {
            return Ok(None);
        }
        let bases = used.iter().map(|&index| near[index].1).collect();
        Ok(Some(Recipe::new(bases, steps, literals)))
    }
}

// Content requests (issue 12, item 5). Reuse makes a packet depend on what
// its target holds; the target may have changed or lost it (it edited the
// file, a rename raced a delete). Its import then applies nothing of the
// packet and asks the sender, in an informational operation of its own
// ([`ContentRequest`]) that its next packet carries, to send those paths
// whole; the sender notes the request, sends again from the requester's
// row, with those paths' content whole, and the waiting packet is then
// superseded. No person needed.

/// A path is asked for, or answered, at most once in this long.
pub const RESEND_AFTER_NS: i64 = 3600 * 1_000_000_000;

/// After an import refused packets from `sender` for content it relied on
/// this replica holding: asks `sender` for `paths` whole (those not asked
/// for within [`RESEND_AFTER_NS`]), by logging a sealed content request.
/// Returns the paths asked for now.
pub fn ask_for_content(
    replica: &mut crate::replica::LockedReplica,
    sender: Id,
    paths: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>> {
    let now = crate::sys::clock::now_ns();
    let asked: HashMap<Vec<u8>, i64> = replica
        .state()
        .content_requests(&sender, "asked")?
        .into_iter()
        .collect();
    let mut fresh: Vec<Vec<u8>> = paths
        .iter()
        .filter(|path| {
            asked
                .get(*path)
                .is_none_or(|at| now - at >= RESEND_AFTER_NS)
        })
        .cloned()
        .collect();
    fresh.sort();
    fresh.dedup();
    fresh.truncate(packet_format::delta::MAX_REQUESTED_PATHS);
    if fresh.is_empty() {
        return Ok(fresh);
    }
    let me = replica.identity.replica_id;
    let have: std::collections::BTreeMap<Id, u64> =
        replica.state().epoch_row(&me)?.into_iter().collect();
    let last = replica.state().epoch(&me, &me)?;
    let secret = replica.signing_key()?.to_bytes();
    let op = Operation {
        origin: me,
        epoch: last + 1,
        recorded: crate::sys::clock::now(),
        change: packet_format::delta::ContentRequest {
            to: sender,
            paths: fresh.clone(),
            have,
        }
        .to_change(),
    };
    replica.state_mut().transaction(|tx| {
        crate::store::state::append_operation(tx, &op)?;
        crate::store::state::set_epoch(tx, &me, &me, op.epoch)?;
        crate::store::state::seal_own_run(tx, &secret, &me, op.epoch, op.epoch)?;
        for path in &fresh {
            crate::store::state::put_content_request(tx, &sender, path, "asked", now)?;
        }
        Ok(())
    })?;
    Ok(fresh)
}

/// Notes the content requests addressed to this replica among `ops` (just
/// applied): each path (not answered within [`RESEND_AFTER_NS`]) is to be
/// sent whole with the next export to the requester, and the requester's
/// estimate is lowered to the row it stated, so that export sends again
/// what it lacks. Returns one note per request, for the import's report.
pub fn take_requests(
    replica: &mut crate::replica::LockedReplica,
    ops: &[Operation],
) -> Result<Vec<String>> {
    let me = replica.identity.replica_id;
    let now = crate::sys::clock::now_ns();
    let mut notes = Vec::new();
    for op in ops {
        let Some(request) = packet_format::delta::ContentRequest::of(&op.change) else {
            continue;
        };
        if request.to != me || op.origin == me {
            continue;
        }
        // Taken already, ahead of its packet (see `import`).
        if op.epoch <= replica.state().requests_taken_through(&op.origin)? {
            continue;
        }
        let answered: HashMap<Vec<u8>, i64> = replica
            .state()
            .content_requests(&op.origin, "answered")?
            .into_iter()
            .collect();
        // A path whose version here the requester lacked when it asked
        // (its row then, `have`) and has confirmed holding since (its
        // packets' rows) came to it after it asked: a mirror that set its
        // own edit aside and asked, then applied the family's version from
        // the same import (review 14e item 8: it was shipped whole again).
        let confirmed = replica.state().confirmed_row(&op.origin)?;
        let mut applied_since = Vec::new();
        for path in &request.paths {
            let Some(version) = replica.state().entry_version(path)? else {
                continue;
            };
            let covered = |row: &dyn Fn(&Id) -> u64| version.0.iter().all(|(o, e)| row(o) >= *e);
            if !covered(&|o| request.have.get(o).copied().unwrap_or(0))
                && covered(&|o| confirmed.get(o).map_or(0, |c| c.epoch))
            {
                applied_since.push(path.clone());
            }
        }
        let paths: Vec<&Vec<u8>> = request
            .paths
            .iter()
            .filter(|path| !applied_since.contains(path))
            .filter(|path| {
                answered
                    .get(*path)
                    .is_none_or(|at| now - at >= RESEND_AFTER_NS)
            })
            .collect();
        let name = replica
            .members()?
            .into_iter()
            .find(|m| m.replica == op.origin)
            .map_or_else(|| op.origin.to_hex(), |m| m.name);
        if paths.is_empty() && applied_since.len() == request.paths.len() {
            replica.state_mut().transaction(|tx| {
                Ok(crate::store::state::note_requests_taken(
                    tx, &op.origin, op.epoch,
                )?)
            })?;
            notes.push(format!(
                "{} asked for the content of {}, and has applied this replica's version of it \
                 since; not sent again",
                crate::error::printable(&name),
                match applied_since.len() {
                    1 => "1 path".to_string(),
                    n => format!("{n} paths"),
                }
            ));
            continue;
        }
        if paths.is_empty() {
            replica.state_mut().transaction(|tx| {
                Ok(crate::store::state::note_requests_taken(
                    tx, &op.origin, op.epoch,
                )?)
            })?;
            notes.push(format!(
                "{} asks again for content sent whole within the hour; not sent again yet",
                crate::error::printable(&name)
            ));
            continue;
        }
        let estimate = replica.state().epoch_row(&op.origin)?;
        replica.state_mut().transaction(|tx| {
            crate::store::state::note_requests_taken(tx, &op.origin, op.epoch)?;
            for path in &paths {
                crate::store::state::put_content_request(tx, &op.origin, path, "to_answer", now)?;
            }
            for (origin, epoch) in &request.have {
                crate::store::state::lower_epoch(tx, &op.origin, origin, *epoch)?;
            }
            // An origin the requester's row leaves out is one it has
            // nothing of (its own changes it always has).
            for origin in estimate.keys() {
                if *origin != op.origin && !request.have.contains_key(origin) {
                    crate::store::state::lower_epoch(tx, &op.origin, origin, 0)?;
                }
            }
            Ok(())
        })?;
        let owned: Vec<Vec<u8>> = paths.iter().map(|p| (*p).clone()).collect();
        reassert_held(replica, &request.have, &owned)?;
        notes.push(format!(
            "{} asks for the content of {} path{} (\"{}\"{}): the next export to it sends {} whole",
            crate::error::printable(&name),
            paths.len(),
            if paths.len() == 1 { "" } else { "s" },
            relpath::display(paths[0]),
            if paths.len() > 1 { ", ..." } else { "" },
            if paths.len() == 1 { "it" } else { "them" },
        ));
    }
    Ok(notes)
}

/// Re-asserts, as fresh operations of this replica, the current state of
/// each of `paths` that the requester already holds by its own account
/// (`have` covers the version): a member made over an existing tree
/// (`mkreplica -import -adopt`) has the whole log but lacks the content of
/// some files, so no operation it lacks would carry them. The
/// re-assertion dominates the version it holds, and the next export to it
/// sends the path whole (it is asked for); siblings receive the same state
/// again, content they hold.
fn reassert_held(
    replica: &mut crate::replica::LockedReplica,
    have: &std::collections::BTreeMap<Id, u64>,
    paths: &[Vec<u8>],
) -> Result<()> {
    let covered = |version: &crate::ops::VersionVector| {
        version
            .0
            .iter()
            .all(|(origin, epoch)| *epoch <= have.get(origin).copied().unwrap_or(0))
    };
    let entries = replica.entries()?;
    let wanted: Vec<(&Vec<u8>, &crate::store::state::RecordedEntry)> = paths
        .iter()
        .filter_map(|path| entries.get(path).map(|entry| (path, entry)))
        .filter(|(_, entry)| entry.state != PathState::Deleted && covered(&entry.version))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let me = replica.identity.replica_id;
    let first = replica.state().epoch(&me, &me)? + 1;
    let secret = replica.signing_key()?.to_bytes();
    let now = crate::sys::clock::now();
    let ops: Vec<Operation> = wanted
        .iter()
        .enumerate()
        .map(|(n, (path, entry))| {
            let epoch = first + n as u64;
            let mut version = entry.version.clone();
            version.set(me, epoch);
            Operation {
                origin: me,
                epoch,
                recorded: now,
                change: Change::Resolve {
                    path: (*path).clone(),
                    version,
                    state: entry.state.clone(),
                    author: entry.author,
                },
            }
        })
        .collect();
    let last = first + ops.len() as u64 - 1;
    replica.state_mut().transaction(|tx| {
        for (op, (path, entry)) in ops.iter().zip(&wanted) {
            crate::store::state::append_operation(tx, op)?;
            if let Some(change) = op.change.path_change() {
                crate::store::state::put_entry(
                    tx,
                    &crate::store::state::EntryWrite {
                        path,
                        state: change.state,
                        version: change.version,
                        author: &entry.author,
                        stat: entry.stat,
                        scanned_ns: entry.scanned_ns,
                    },
                )?;
            }
        }
        crate::store::state::set_epoch(tx, &me, &me, last)?;
        crate::store::state::seal_own_run(tx, &secret, &me, first, last)?;
        Ok(())
    })?;
    Ok(())
}
