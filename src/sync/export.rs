//! `syncreplica -export`: write the operations each target lacks into
//! signed, size-capped packets.
//!
//! For each target, the epoch table's estimate row says what the target is
//! believed to have of every origin; everything this replica has beyond
//! that is sent, third replicas' operations included, so a hub forwards
//! what passes through it. Afterwards the estimates are raised, as
//! MultiSite does.
//!
//! Acknowledgements: every packet carries its sender's epoch row, which
//! this replica keeps as that sibling's *confirmed* row
//! (`state::note_confirmation`). What was sent (the estimate) but is not
//! confirmed `resend_after` after it was sent is sent again by the next
//! export to that sibling, if the sibling confirms at all (has sent this
//! replica a packet: on a one-way link nothing ever confirms). A lost
//! packet is so repaired without `chepoch`; [`Mode::ResendAll`] resends
//! every unconfirmed operation at once, and [`Mode::AckOnly`] writes a
//! packet with no operations, only this replica's row, for a sibling that
//! has nothing else to send.
//!
//! Bytes: operations travel in the order this replica logged them (which
//! respects causality). Content travels as chunks, each once, and never a
//! chunk the target already holds (a renamed or copied file ships no
//! bytes); see `chunks_target_has`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use packet_format::{EpochRange, PacketKind, PacketMeta, PacketWriter, Target, WrittenPart};

use crate::error::{Error, IoContext, Result};
use crate::ops::{ChunkId, Id, Operation, PathState};
use crate::replica::{LockedReplica, Replica};
use crate::store::identity;
use crate::store::state::{self, Member};
use crate::sync::chunks::{ChunkRead, LocalChunks};
use crate::sync::delta;
use packet_format::delta::OperationRef;

/// See [`ExportRequest::before_commit`].
/// See [`ExportRequest::after_target`].
pub type AfterTarget<'a> = dyn Fn(&Member, &TargetExport) + 'a;

pub type BeforeCommit<'a> = dyn Fn(&Member, &[WrittenPart]) -> Result<()> + 'a;

/// What an export sends besides what the estimates say the target lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// What the target lacks, and again what it has not confirmed
    /// `resend_after` after it was sent (siblings that confirm only).
    #[default]
    Normal,
    /// What the target lacks, and again everything it has not confirmed,
    /// now (`-resend`).
    ResendAll,
    /// No operations: a packet carrying only this replica's epoch row, as
    /// an acknowledgement (`-ack`).
    AckOnly,
}

/// Why operations are sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResendReason {
    /// Sent at `sent_ns` and still unconfirmed `after` later.
    Unconfirmed {
        sent_ns: i64,
        after: crate::store::config::ResendAfter,
    },
    /// `-resend` asked for it.
    Asked,
    /// The target's own first change, sent again once after a clone alarm
    /// about it (raised at `alarm_ns`): the refused copy learns it is
    /// refused; the accepted one skips it.
    TellRefusedCopy { alarm_ns: i64 },
}

/// Operations of one origin sent again to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    pub origin: Member,
    /// The epochs sent again (`first..=last`): past the target's confirmed
    /// epoch, up to what it was believed to have.
    pub first: u64,
    pub last: u64,
    pub reason: ResendReason,
}

/// What to export and where.
pub struct ExportRequest<'a> {
    pub targets: &'a [String],
    /// Existing directory that receives the packet files.
    pub out_dir: &'a Path,
    /// What `out_dir` is to the user, for messages: "-out directory", or
    /// "outgoing bay" (-ship).
    pub out_role: &'static str,
    /// Where parts are written before they are moved to `out_dir`
    /// (default: `out_dir` itself; parts appear there only when complete).
    pub work_dir: Option<&'a Path>,
    pub max_size: u64,
    pub comment: &'a str,
    /// Ship the content of every final state, even chunks the target is
    /// believed to hold (for a target that no longer has them).
    pub full_content: bool,
    /// Called with each target's parts once they are in `out_dir`, before
    /// the target's estimates are raised (`-ship` writes the shipping
    /// orders here): an error, or a kill, leaves the estimates as they
    /// were, so the next export sends the same operations again rather
    /// than believing delivered what nothing will ship.
    pub before_commit: Option<&'a BeforeCommit<'a>>,
    /// Checked between operations and chunks: once a signal has set it,
    /// the packet being written is discarded (its temporary files removed)
    /// and the export returns [`Error::Interrupted`] without raising that
    /// target's estimates. Targets finished before it stay exported.
    pub stop: &'a crate::sync::StopFlag,
    /// Called as each target is done, in order, so that what was exported
    /// is reported even when a later target is interrupted or fails.
    pub after_target: Option<&'a AfterTarget<'a>>,
    /// Resends and acknowledgements ([`Mode`]).
    pub mode: Mode,
    /// `-noencrypt`: write the packets in the clear even where the target
    /// has an encryption key (the config's `encrypt = false` does the same).
    pub noencrypt: bool,
}

/// What was sent to one target.
#[derive(Debug, Default, Clone)]
pub struct ExportSummary {
    pub operations: u64,
    pub files_added_or_changed: u64,
    pub deleted: u64,
    pub chunks_sent: u64,
    /// Bytes of file content in the chunks shipped (whole or as recipes),
    /// before compression: see `chunk_bytes_carried` for their cost.
    pub chunk_bytes_sent: u64,
    /// Of `chunks_sent`, those sent as recipes over chunks the target
    /// holds (chunk codec 2).
    pub chunks_as_recipes: u64,
    /// Paths the target had asked for whole (content requests), sent so.
    pub answered: u64,
    /// Chunks referenced but not shipped because the target has them.
    pub chunks_reused: u64,
    /// Bytes of file content in `chunks_reused` (each reference counted;
    /// a hard-link set's names once).
    pub chunk_bytes_reused: u64,
    /// Bytes the packet spends on chunks (records, compressed data and
    /// recipes): what shipping `chunk_bytes_sent` bytes of content costs.
    pub chunk_bytes_carried: u64,
    pub parts: Vec<WrittenPart>,
    pub sequence: u64,
    /// Set when the packet stops before the operations it should have
    /// ended with (see [`HeldBack`]).
    pub held_back: Option<HeldBack>,
    /// Operations sent again, per origin, and why.
    pub resent: Vec<Resend>,
    /// A packet with no operations, only this replica's row ([`Mode::AckOnly`]).
    pub ack_only: bool,
    /// To whom the packet is encrypted (age recipients), or why it is not.
    pub encryption:
        Option<std::result::Result<packet_format::EncryptTo, crate::sync::crypt::Plain>>,
}

/// A file whose content was no longer what the scan recorded when the
/// export came to read it (rewritten, shrunk or removed meanwhile: a busy
/// file). Epochs must stay contiguous, so the packet stops before the
/// first operation that needs that content: the operations before it are
/// shipped and the estimates raised only past them; this one and the rest
/// follow with the next export, which records the file's new version
/// first (the old version's content is then no longer at hand and is not
/// needed: the new version supersedes it within that packet). For the
/// same reason a packet never ends between an operation whose content is
/// no longer at hand and the later one on its path that supersedes it:
/// when that one's file is busy, the packet stops before both.
#[derive(Debug, Clone)]
pub struct HeldBack {
    /// The changed file, on disk.
    pub path: std::path::PathBuf,
    /// Operations left for the next export.
    pub operations: u64,
}

pub enum TargetExport {
    /// The target lacks nothing.
    UpToDate,
    Written(ExportSummary),
    /// The very first operation the target lacks needs content that could
    /// no longer be read as recorded: no packet was written.
    HeldBack(HeldBack),
}

/// Checks a -maxsize value against the packet format's limits.
pub fn check_max_size(max_size: u64) -> Result<()> {
    let bad = |why: String| Error::BadSize {
        value: max_size.to_string(),
        why,
    };
    if max_size < packet_format::MIN_PART_SIZE {
        return Err(bad(format!(
            "packets cannot be smaller than {} bytes (64k)",
            packet_format::MIN_PART_SIZE
        )));
    }
    if max_size > packet_format::MAX_PART_SIZE {
        return Err(bad(format!(
            "packets cannot be larger than {} bytes (2g)",
            packet_format::MAX_PART_SIZE
        )));
    }
    Ok(())
}

/// Resolves the targets, refusing unknown names and this replica itself.
pub fn resolve_targets(replica: &Replica, names: &[String]) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    for name in names {
        let member = replica.member(name)?;
        if member.replica == replica.identity.replica_id {
            return Err(Error::Member {
                name: name.clone(),
                why: "that is this replica; name a sibling to export to".into(),
            });
        }
        if let Some(removed) = replica.state().removal_of(&member.replica)? {
            return Err(Error::Member {
                name: name.clone(),
                why: format!(
                    "removed from the family {}; nothing is sent to it",
                    crate::sync::family::removal_text(replica, &removed)?
                ),
            });
        }
        if !members.iter().any(|m: &Member| m.replica == member.replica) {
            members.push(member);
        }
    }
    Ok(members)
}

/// Exports to every target. The caller holds the lock and has recorded
/// local changes first.
pub fn export_updates(
    replica: &mut LockedReplica,
    request: &ExportRequest,
) -> Result<Vec<(Member, TargetExport)>> {
    if !request.out_dir.is_dir() {
        return Err(Error::NotADirectory {
            path: request.out_dir.to_path_buf(),
        });
    }
    check_max_size(request.max_size)?;
    let targets = resolve_targets(replica, request.targets)?;
    // Before the first packet: a replica without a key gets one, and the
    // family hears of it with this export.
    crate::sync::crypt::ensure_announced(replica)?;
    let mut results = Vec::new();
    for target in targets {
        // A full disk is said as such, naming the directory the user
        // gave, not the temporary file that failed.
        let mut dirs = vec![(request.out_dir, request.out_role)];
        if let Some(work) = request.work_dir.filter(|w| *w != request.out_dir) {
            dirs.insert(0, (work, "-workdir"));
        }
        let outcome = export_to(replica, &target, request).map_err(|err| {
            when_no_room(
                err,
                &dirs,
                || format!("writing the packet for \"{}\"", target.name),
                "-maxsize and -workdir",
            )
        })?;
        if let Some(after) = request.after_target {
            after(&target, &outcome);
        }
        results.push((target, outcome));
    }
    Ok(results)
}

/// After a clone alarm about `target` (this replica refused packets of
/// another copy of it), the next packet to it also carries the first
/// change of the target's own this replica holds: the copy it accepts
/// skips it (its own, the same), the refused copy finds it differs from
/// its own change of that number, or that it never made it, and is told
/// it is the refused copy (`family::check_duplicates`,
/// `family::refuse_own_never_made`) instead of only ever hearing that its
/// tree differs. Once per alarm (a change the target confirmed is not
/// sent again and again), and announced: returns the resend to report.
fn tell_a_refused_copy(
    replica: &LockedReplica,
    target: &Member,
    own_row: &BTreeMap<Id, u64>,
    ranges: &mut BTreeMap<Id, EpochRange>,
    ops: &mut Vec<(i64, Operation)>,
) -> Result<Option<Resend>> {
    let Some(alarm_ns) = replica
        .state()
        .clone_alarms()?
        .iter()
        .filter(|a| a.replica == target.replica)
        .map(|a| a.at_ns)
        .max()
    else {
        return Ok(None);
    };
    if ranges.contains_key(&target.replica)
        || own_row.get(&target.replica).copied().unwrap_or(0) == 0
        || replica
            .state()
            .clone_told(&target.replica)?
            .is_some_and(|told| told >= alarm_ns)
    {
        return Ok(None);
    }
    // Its first change scrubbed: nothing left to tell it with.
    if replica.state().scrubbed_through(&target.replica)? >= 1 {
        return Ok(None);
    }
    let first = replica.state().operations_between(&target.replica, 0, 1)?;
    if first.is_empty() {
        return Ok(None);
    }
    ranges.insert(target.replica, EpochRange { first: 1, last: 1 });
    ops.extend(first);
    Ok(Some(Resend {
        origin: target.clone(),
        first: 1,
        last: 1,
        reason: ResendReason::TellRefusedCopy { alarm_ns },
    }))
}

fn export_to(
    replica: &mut LockedReplica,
    target: &Member,
    request: &ExportRequest,
) -> Result<TargetExport> {
    let me = replica.identity.replica_id;
    // Two rows, not the table: it has a row per member.
    let mut own_row: BTreeMap<Id, u64> = replica.state().epoch_row(&me)?.into_iter().collect();
    // During a restore, less of its own than it logged (see
    // family::stated_own_epoch): its siblings send back their copies. The
    // tree digest then describes no row the packet states: left out.
    let mut row_is_exact = true;
    if let Some(own) = own_row.get_mut(&me) {
        let stated = crate::sync::family::stated_own_epoch(replica, *own)?;
        row_is_exact = stated == *own;
        *own = stated;
    }
    let mut estimate = replica.state().epoch_row(&target.replica)?;
    let mut resent = match request.mode {
        Mode::AckOnly => Vec::new(),
        mode => plan_resend(replica, target, &own_row, &mut estimate, mode)?,
    };
    let ack_only = request.mode == Mode::AckOnly;

    let mut ranges = BTreeMap::new();
    let mut ops: Vec<(i64, Operation)> = Vec::new();
    for (origin, &have) in own_row.iter().filter(|_| !ack_only) {
        let believed = estimate.get(origin).copied().unwrap_or(0);
        if have > believed {
            // Scrubbed (see `sync::scrub`): every member confirmed holding
            // these, so only a lowered estimate (chepoch, a resend, a
            // restored target) asks for them again.
            let scrubbed = replica.state().scrubbed_through(origin)?;
            if believed < scrubbed {
                let origin_name = replica
                    .members()?
                    .into_iter()
                    .find(|m| m.replica == *origin)
                    .map_or_else(|| origin.to_string(), |m| m.name);
                return Err(Error::CannotCatchUp {
                    name: target.name.clone(),
                    why: format!(
                        "it needs operations {}-{scrubbed} of \"{}\", which this replica \
                         scrubbed from its log once every member confirmed holding them \
                         (oplog_keep_days); make it anew from a creation packet \
                         (mkreplica -export), or raise its row with chepoch if it does hold them",
                        believed + 1,
                        crate::error::printable(&origin_name)
                    ),
                });
            }
            ranges.insert(
                *origin,
                EpochRange {
                    first: believed + 1,
                    last: have,
                },
            );
            ops.extend(replica.state().operations_between(origin, believed, have)?);
        }
    }
    if ops.is_empty() && !ack_only {
        return Ok(TargetExport::UpToDate);
    }
    let mut told = false;
    if !ack_only {
        if let Some(tell) = tell_a_refused_copy(replica, target, &own_row, &mut ranges, &mut ops)? {
            resent.push(tell);
            told = true;
        }
    }
    ops.sort_by_key(|(position, _)| *position);
    let ops: Vec<Operation> = ops.into_iter().map(|(_, op)| op).collect();
    crate::sync::family::check_target_version(replica, target, &ops)?;

    let touched: HashSet<&[u8]> = ops
        .iter()
        .filter_map(|op| op.change.path_change().map(|c| c.path.as_slice()))
        .collect();
    // The version of each path this packet touches that the target holds:
    // file states are sent relative to it, and changed chunks as recipes
    // over its chunks.
    let answers_for_others = replica.state().paths_requested_by_others(&target.replica)?;
    // The tree digest is computed beside what follows (it only reads the
    // recorded entries).
    let digest = match row_is_exact {
        true => Some(crate::sync::digest::ExportDigest::read(replica, &target.replica)?.spawn()),
        false => None,
    };
    let mut held = delta::held_versions(replica.state(), &estimate, &ops, &answers_for_others)?;
    // Paths the target asked for whole (content requests): nothing of them
    // is relied on.
    let requested: HashSet<Vec<u8>> = replica
        .state()
        .content_requests(&target.replica, "to_answer")?
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    held.retain(|path, _| !requested.contains(path));
    // Only the chunks of this packet's operations are ever looked up (in
    // what the target has, and where they are here): the sets below hold
    // no others.
    let wanted: HashSet<ChunkId> = ops.iter().flat_map(op_chunks).map(|c| c.id).collect();
    let target_has = if request.full_content {
        HashSet::new()
    } else {
        chunks_target_has(replica, &estimate, &touched, &held, &wanted)?
    };
    let mut local = LocalChunks::index_where(replica, |id| wanted.contains(id))?;
    // For each operation, the version the target holds that it is best
    // sent against: the target's version of its path, or, for a path the
    // target lacks (a rename's or a copy's destination), a version of a
    // touched path that shares a chunk with it.
    let mut by_chunk: HashMap<ChunkId, &delta::Held> = HashMap::new();
    for version in held.values() {
        for chunk in &version.chunks {
            by_chunk.entry(chunk.id).or_insert(version);
        }
    }
    let held_base: Vec<Option<&delta::Held>> = ops
        .iter()
        .map(|op| {
            let change = op.change.path_change()?;
            held.get(change.path.as_slice())
                .or_else(|| op_chunks(op).find_map(|c| by_chunk.get(&c.id).copied()))
        })
        .collect();

    let sequence = replica.state().next_sequence(&target.replica)?;
    let packet_id = identity::random_id();
    let now = crate::sys::clock::now();
    let seals = crate::sync::seals::for_export(replica.state(), &ranges)?;
    let rotations = header_rotations(&me, &ops, &seals);
    let meta = PacketMeta {
        kind: PacketKind::Update,
        family: replica.identity.family(),
        sender: replica.identity.replica(),
        targets: vec![Target {
            id: target.replica,
            name: target.name.clone(),
            seq: sequence,
        }],
        packet_id,
        created: now,
        comment: request.comment.to_string(),
        epoch_ranges: ranges.clone(),
        epoch_row: own_row.clone(),
        seals,
        creation: None,
        incarnation: Some(replica.incarnation()?),
        tree_digest: digest.map(crate::sync::digest::DigestThread::join),
        encryption: None,
        secrets: None,
        rotations,
    };
    let write_dir = request.work_dir.unwrap_or(request.out_dir);
    let key = replica.signing_key()?.to_bytes();
    let encryption = crate::sync::crypt::for_target(replica, &target.replica, request.noencrypt)?;
    let mut meta = PacketMeta {
        encryption: encryption.clone().ok(),
        ..meta
    };
    if meta.encryption.is_some() {
        // The digest's nodes name paths, and the header is readable by
        // every hop: an encrypted packet proves convergence by the root
        // alone (SPEC.md §4.2). The root's parts go too: a mode or an
        // owner is guessed back from its hash.
        if let Some(digest) = meta.tree_digest.as_mut() {
            digest.nodes.clear();
            digest.root_parts = None;
        }
    }
    let mut writer = PacketWriter::create(write_dir, request.max_size, &key, meta)?
        .with_encoder_threads(crate::sync::chunks::encoder_threads())
        // A member whose packets show an older reader would refuse them.
        .with_chunk_groups(crate::sync::family::reads_chunk_groups(replica, target)?);
    let mut summary = ExportSummary {
        sequence,
        resent,
        ack_only,
        encryption: Some(encryption),
        ..ExportSummary::default()
    };
    let mut sent: HashSet<ChunkId> = HashSet::new();
    // In bytes of the operations' content, each chunk counted as it is
    // written or found not needed (the target has it, or the packet does).
    let content: u64 = ops
        .iter()
        .flat_map(op_chunks)
        .map(|chunk| u64::from(chunk.len))
        .sum();
    let _writing = crate::sys::progress::phase(
        &format!("exporting to {}", target.name),
        crate::sys::progress::Unit::Bytes,
        Some(content),
    );
    // For each operation, the next one of the packet on the same path: an
    // operation whose content is no longer at hand relies on it.
    let mut next_on_path: Vec<Option<usize>> = vec![None; ops.len()];
    let mut later: HashMap<&[u8], usize> = HashMap::new();
    for (index, op) in ops.iter().enumerate().rev() {
        if let Some(change) = op.change.path_change() {
            next_on_path[index] = later.insert(change.path.as_slice(), index);
        }
    }
    // The epochs shipped so far, per origin: the ranges the packet states
    // if it has to stop early.
    let mut shipped: BTreeMap<Id, EpochRange> = BTreeMap::new();
    let mut held_back = None;
    // Operations whose content (or that of what they rely on) is in the
    // packet already.
    let mut in_packet = vec![false; ops.len()];
    // Per path, the last file operation of the packet so far: the base a
    // later one on the path is given relative to.
    let mut last_file: HashMap<&[u8], (OperationRef, &[crate::ops::ChunkRef])> = HashMap::new();
    // Leaders of the hard-link sets whose reused content is counted.
    let mut sets_counted: HashSet<Vec<u8>> = HashSet::new();
    'ops: for (index, op) in ops.iter().enumerate() {
        request.stop.check()?;
        // Counted once the operation is in the packet (a path the target
        // asked for whole relies on nothing).
        let asked = op
            .change
            .path_change()
            .is_some_and(|c| requested.contains(c.path.as_slice()));
        // A hard-link set's names share one content: counted once, with
        // the first of its names the packet carries.
        let again = op.change.path_change().is_some_and(|c| match c.state {
            PathState::File { ext, .. } => crate::tree::meta::hard_link_leader(ext)
                .is_some_and(|leader| !sets_counted.insert(leader)),
            _ => false,
        });
        let (reused, reused_bytes) = op_chunks(op)
            .filter(|chunk| !again && !asked && target_has.contains(&chunk.id))
            .fold((0u64, 0u64), |(n, bytes), chunk| {
                (n + 1, bytes + u64::from(chunk.len))
            });
        // This operation's content, and, where it is no longer at hand
        // (a version overwritten since), that of the later operations on
        // the same path it relies on: the target applies only the newest
        // version of a path in a packet, so the packet must not end
        // between the two.
        let mut at = Some(index);
        let mut walked = Vec::new();
        while let Some(current) = at.filter(|&i| !in_packet[i]) {
            walked.push(current);
            let whole = ops[current]
                .change
                .path_change()
                .is_some_and(|c| requested.contains(c.path.as_slice()));
            let base_chunks = held_base[current]
                .filter(|_| !request.full_content && !whole)
                .map(|h| h.chunks.as_slice());
            let no_chunks = HashSet::new();
            match ship_content(
                &ops[current],
                &mut local,
                replica.state(),
                base_chunks,
                &replica.root,
                &mut writer,
                if whole { &no_chunks } else { &target_has },
                &mut sent,
                &mut summary,
                request.stop,
            )? {
                Content::Shipped => at = None,
                Content::ReliesOnLater => at = next_on_path[current],
                // A busy file: its content is no longer what its
                // operation recorded. The packet stops before this
                // operation (see `HeldBack`); chunks already added are
                // unused.
                Content::Changed(path) => {
                    held_back = Some(HeldBack {
                        path,
                        operations: (ops.len() - index) as u64,
                    });
                    break 'ops;
                }
            }
        }
        // Their content is in the packet (each chain is walked once).
        for i in walked {
            in_packet[i] = true;
        }
        match op.change.path_change().map(|c| c.state) {
            Some(PathState::Deleted) => summary.deleted += 1,
            Some(_) => summary.files_added_or_changed += 1,
            None => {}
        }
        summary.chunks_reused += reused;
        summary.chunk_bytes_reused += reused_bytes;
        let relative = op.change.path_change().and_then(|change| {
            let base = last_file
                .get(change.path.as_slice())
                .copied()
                .or_else(|| held_base[index].map(|h| (h.op, h.chunks.as_slice())))?;
            Some(delta::relative_op(op, base.0, base.1))
        });
        writer.add_operation(relative.as_ref().unwrap_or(op))?;
        if let Some(change) = op.change.path_change() {
            if let PathState::File { chunks, .. } = change.state {
                let this = OperationRef {
                    origin: op.origin,
                    epoch: op.epoch,
                };
                last_file.insert(change.path.as_slice(), (this, chunks.as_slice()));
            }
        }
        shipped
            .entry(op.origin)
            .and_modify(|range| range.last = op.epoch)
            .or_insert(EpochRange {
                first: op.epoch,
                last: op.epoch,
            });
        summary.operations += 1;
        if summary.operations == 1 {
            // The first operation and its chunks in the part file before
            // the first kill or pause point (the writer holds chunks back
            // to compress them in groups): a kill there is tested for what
            // it leaves behind.
            writer.chunk_bytes_written()?;
            crate::sys::testhook::crash_point("export-writing");
            crate::sys::testhook::pause_point("export-writing", request.stop);
        }
    }
    let ranges = match held_back {
        None => ranges,
        // Nothing could be read as recorded: no packet (the writer's
        // temporary files go with it).
        Some(held_back) if summary.operations == 0 => {
            return Ok(TargetExport::HeldBack(held_back));
        }
        Some(held_back) => {
            // Each origin's operations travel in epoch order, so what was
            // added is, per origin, the start of its range, without gaps.
            let seals = crate::sync::seals::for_export(replica.state(), &shipped)?;
            writer.narrow_epoch_ranges(shipped.clone(), seals)?;
            summary.held_back = Some(held_back);
            shipped
        }
    };
    // The last moment to give up: from here the parts are finished and
    // committed without pause.
    request.stop.check()?;
    summary.chunk_bytes_carried = writer.chunk_bytes_written()?;
    let mut parts = writer.finish()?;
    if let Some(work_dir) = request.work_dir {
        if work_dir != request.out_dir {
            for i in 0..parts.len() {
                let destination = request.out_dir.join(&parts[i].file_name);
                if let Err(err) = move_file(&parts[i].path, &destination) {
                    // Nothing is recorded as sent: no part of it stays,
                    // neither those moved already nor those still in the
                    // working directory.
                    for part in &parts {
                        let _ = std::fs::remove_file(&part.path);
                    }
                    return Err(err);
                }
                parts[i].path = destination;
            }
        }
    }
    crate::sys::testhook::crash_point("export-after-parts");
    if let Some(before_commit) = request.before_commit {
        before_commit(target, &parts)?;
    }
    crate::sys::testhook::crash_point("export-before-commit");
    let first_name = parts
        .first()
        .map(|p| p.file_name.clone())
        .unwrap_or_default();
    let answered: Vec<Vec<u8>> = requested.into_iter().collect();
    summary.answered = answered.len() as u64;
    record_sent(
        replica,
        &target.replica,
        &ranges,
        &packet_id,
        sequence,
        &first_name,
        now.as_nanos_saturating(),
        &answered,
    )?;
    if told {
        let at = crate::sys::clock::now_ns();
        replica
            .state_mut()
            .transaction(|tx| Ok(state::note_clone_told(tx, &target.replica, at)?))?;
    }
    summary.parts = parts;
    Ok(TargetExport::Written(summary))
}

/// The chunks of an operation's file state (none for other states).
fn op_chunks(op: &Operation) -> impl Iterator<Item = &crate::ops::ChunkRef> {
    let chunks: &[crate::ops::ChunkRef] = match op.change.path_change().map(|c| c.state) {
        Some(PathState::File { chunks, .. }) => chunks,
        _ => &[],
    };
    chunks.iter()
}

/// Whether an operation's content is in the packet ([`ship_content`]).
enum Content {
    /// Every chunk the target lacks is in the packet.
    Shipped,
    /// Some chunk is no longer held by any current file: the version was
    /// overwritten since, and a later operation on the path supersedes it.
    ReliesOnLater,
    /// The file holding a chunk changed since the scan (a busy file).
    Changed(std::path::PathBuf),
}

/// Adds to `writer` every chunk of `op` that the target lacks and the
/// packet does not carry yet, read from the current files. Any version
/// here may be what the target ends up with (conflict resolution there
/// can pick one that is not the last in this packet), so the content of
/// every version still at hand travels, each chunk once.
#[allow(clippy::too_many_arguments)]
fn ship_content(
    op: &Operation,
    local: &mut LocalChunks,
    state: &crate::store::state::State,
    base_chunks: Option<&[crate::ops::ChunkRef]>,
    root: &Path,
    writer: &mut PacketWriter,
    target_has: &HashSet<ChunkId>,
    sent: &mut HashSet<ChunkId>,
    summary: &mut ExportSummary,
    stop: &crate::sync::StopFlag,
) -> Result<Content> {
    let mut content = Content::Shipped;
    let mut recipes = base_chunks.map(|held| delta::RecipeMaker::new(state, held));
    let mut offset = 0u64;
    for chunk in op_chunks(op) {
        stop.check()?;
        crate::sys::progress::advance(u64::from(chunk.len));
        let at = offset;
        offset += u64::from(chunk.len);
        if target_has.contains(&chunk.id) || sent.contains(&chunk.id) {
            continue;
        }
        if let Some(maker) = recipes.as_mut() {
            // A changed chunk of a file the target holds a version of: as
            // the pieces it holds of the old chunks near it plus the new
            // bytes, where that is smaller.
            match local.read(root, &chunk.id)? {
                Ok(bytes) => {
                    if let Some(recipe) = maker.recipe(at, &bytes)? {
                        if writer.add_chunk_recipe(&chunk.id, chunk.len, &recipe)? {
                            sent.insert(chunk.id);
                            summary.chunks_sent += 1;
                            summary.chunks_as_recipes += 1;
                            summary.chunk_bytes_sent += u64::from(chunk.len);
                            continue;
                        }
                    }
                    summary.chunk_bytes_sent += bytes.len() as u64;
                    // `local.read` checked the bytes against the id.
                    writer.add_checked_chunk(&chunk.id, &bytes)?;
                    sent.insert(chunk.id);
                    summary.chunks_sent += 1;
                    continue;
                }
                Err(ChunkRead::NotHeld) => {
                    content = Content::ReliesOnLater;
                    continue;
                }
                Err(ChunkRead::Changed(path)) => return Ok(Content::Changed(path)),
                Err(ChunkRead::Added(_)) => unreachable!("read never adds"),
            }
        }
        match local.add_to(root, writer, &chunk.id)? {
            ChunkRead::Added(len) => {
                sent.insert(chunk.id);
                summary.chunks_sent += 1;
                summary.chunk_bytes_sent += len;
            }
            ChunkRead::NotHeld => content = Content::ReliesOnLater,
            ChunkRead::Changed(path) => return Ok(Content::Changed(path)),
        }
    }
    Ok(content)
}

/// Raises `target`'s estimates past `ranges` and logs the packet as sent.
#[allow(clippy::too_many_arguments)]
fn record_sent(
    replica: &mut LockedReplica,
    target: &Id,
    ranges: &BTreeMap<Id, EpochRange>,
    packet_id: &Id,
    sequence: u64,
    first_name: &str,
    now: i64,
    answered: &[Vec<u8>],
) -> Result<()> {
    replica.state_mut().transaction(|tx| {
        for (origin, range) in ranges {
            state::raise_epoch(tx, target, origin, range.last)?;
            state::note_sent(tx, target, origin, range.first, range.last, now)?;
        }
        // Content requests of the target this packet answers.
        for path in answered {
            state::forget_content_request(tx, target, path, "to_answer")?;
            state::put_content_request(tx, target, path, "answered", now)?;
        }
        state::log_packet(tx, "sent", target, packet_id, sequence, first_name, now)?;
        Ok(())
    })
}

/// Records as sent a packet of this replica found complete (every part
/// present) and queued but never recorded: an export killed after writing
/// its parts and before raising the estimates. Does nothing if it is
/// recorded already. `first_name` names its first part.
pub fn record_adopted(
    replica: &mut LockedReplica,
    header: &packet_format::Header,
    first_name: &str,
) -> Result<()> {
    let me = replica.identity.replica_id;
    if header.sender.id != me
        || header.kind != PacketKind::Update
        || replica.state().packet_logged(&header.packet_id)?
    {
        return Ok(());
    }
    for target in &header.targets {
        record_sent(
            replica,
            &target.id,
            &header.epoch_ranges,
            &header.packet_id,
            target.seq,
            first_name,
            crate::sys::clock::now_ns(),
            &[],
        )?;
    }
    Ok(())
}

/// Lowers `estimate` (the target's row, in memory only) to what the target
/// confirmed, for each origin whose unconfirmed operations are to be sent
/// again: with [`Mode::ResendAll`] all of them; otherwise those sent
/// `resend_after` ago or more, and only if the target has ever sent this
/// replica a packet (a one-way link never confirms). The stored estimate
/// is left alone: the export raises it again as it records what it sent.
fn plan_resend(
    replica: &Replica,
    target: &Member,
    own_row: &BTreeMap<Id, u64>,
    estimate: &mut HashMap<Id, u64>,
    mode: Mode,
) -> Result<Vec<Resend>> {
    let state = replica.state();
    let confirmed = state.confirmed_row(&target.replica)?;
    let after = replica.config.resend_after_for(&target.name);
    let confirms = state.heard(&target.replica)?.is_some();
    let sends = state.unconfirmed_sends(&target.replica)?;
    let now = crate::sys::clock::now_ns_for_waiting();
    let members: HashMap<Id, Member> = replica
        .members()?
        .into_iter()
        .map(|m| (m.replica, m))
        .collect();
    let mut resent = Vec::new();
    for (origin, &have) in own_row {
        let believed = estimate.get(origin).copied().unwrap_or(0).min(have);
        let confirmed = confirmed.get(origin).map_or(0, |c| c.epoch);
        if believed <= confirmed {
            continue;
        }
        let reason = match mode {
            Mode::ResendAll => ResendReason::Asked,
            _ => {
                let (Some(period), true) = (after.0, confirms) else {
                    continue;
                };
                // The oldest send still unconfirmed beyond `confirmed`.
                let Some(sent_ns) = sends
                    .get(origin)
                    .into_iter()
                    .flatten()
                    .filter(|(last, _)| *last > confirmed)
                    .map(|(_, at)| *at)
                    .min()
                else {
                    continue;
                };
                let waited = now.saturating_sub(sent_ns);
                if waited < 0 || (waited as u128) < period.as_nanos() {
                    continue;
                }
                ResendReason::Unconfirmed { sent_ns, after }
            }
        };
        let Some(member) = members.get(origin) else {
            continue;
        };
        estimate.insert(*origin, confirmed);
        resent.push(Resend {
            origin: member.clone(),
            first: confirmed + 1,
            last: believed,
            reason,
        });
    }
    Ok(resent)
}

/// Chunks the target will hold when it applies this packet, so they need
/// not travel: those of every version the target is believed to hold (per
/// the estimate), that is of this replica's current files whose version the
/// target has and that this packet does not touch, and of the version the
/// target holds of each path the packet touches (`held`): the target reads
/// those from the file before it replaces it, from a rename's source, or
/// from its soft-deleted files, checking each against its id.
///
/// Only the chunks in `wanted` (those of the packet's operations, the only
/// ones looked up) are kept.
///
/// Older versions are never relied on: the target may no longer have them.
/// If the target did change such a file concurrently, its import stops with
/// a message naming the chunk, and `-fullcontent` resends everything.
fn chunks_target_has(
    replica: &Replica,
    estimate: &HashMap<Id, u64>,
    touched: &HashSet<&[u8]>,
    held: &HashMap<Vec<u8>, delta::Held>,
    wanted: &HashSet<ChunkId>,
) -> Result<HashSet<ChunkId>> {
    let has_version = |version: &crate::ops::VersionVector| {
        version
            .0
            .iter()
            .all(|(origin, epoch)| *epoch <= estimate.get(origin).copied().unwrap_or(0))
    };
    let mut has = HashSet::new();
    for (path, entry) in replica.entries()?.iter() {
        if let PathState::File { chunks, .. } = &entry.state {
            if !touched.contains(path.as_slice()) && has_version(&entry.version) {
                has.extend(chunks.iter().map(|c| c.id).filter(|id| wanted.contains(id)));
            }
        }
    }
    for version in held.values() {
        has.extend(
            version
                .chunks
                .iter()
                .map(|c| c.id)
                .filter(|id| wanted.contains(id)),
        );
    }
    Ok(has)
}

/// `err` as [`Error::NoRoomForPackets`] when it is a write that
/// found no space left (ENOSPC, or a disk quota) in one of `dirs`
/// ((directory, role), the first holding the file that failed; the last
/// when the error names no file, as a full storage bay does); otherwise,
/// and for a file in none of `dirs`, unchanged. Call it once what was being
/// written is removed, so the free space reported is what is there.
pub fn when_no_room(
    err: Error,
    dirs: &[(&std::path::Path, &'static str)],
    writing: impl FnOnce() -> String,
    options: &'static str,
) -> Error {
    let failed = match &err {
        Error::Io { path, cause } if no_space(cause) => Some(path.clone()),
        Error::Packet(err) => match &err.kind {
            packet_format::ErrorKind::Io { cause, .. } if no_space(cause) => Some(err.path.clone()),
            _ => None,
        },
        Error::Shipping(shipping::Error::Bay { cause, .. }) if no_space(cause) => None,
        Error::Shipping(shipping::Error::BayFull { .. }) => None,
        _ => return err,
    };
    let Some(&(last, last_role)) = dirs.last() else {
        return err;
    };
    // A file elsewhere (a spool in the system's temporary directory) is
    // said as the error names it: blaming the -out disk would send the
    // user to make room on the wrong one.
    let (dir, role) = match failed {
        None => (last, last_role),
        Some(file) => match dirs
            .iter()
            .find(|(dir, _)| file.parent() == Some(dir) || file == *dir)
        {
            Some(&found) => found,
            None => return err,
        },
    };
    Error::NoRoomForPackets {
        dir: dir.to_path_buf(),
        role,
        mount: crate::sys::fsutil::mount_point(
            &std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        ),
        free: crate::sys::fsutil::free_space(dir).unwrap_or(0),
        what: format!(
            "{} failed: its filesystem is full; what was written of it was removed, and \
             nothing is recorded as sent",
            writing()
        ),
        options,
    }
}

/// Whether a write failed for want of space: the filesystem is full
/// (ENOSPC) or the user's disk quota is used up (EDQUOT).
fn no_space(cause: &std::io::Error) -> bool {
    matches!(
        cause.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Moves a finished part: rename when possible, else copy and fsync.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let temp = to.with_extension("partial");
    let copied = std::fs::copy(from, &temp)
        .and_then(|_| std::fs::File::open(&temp)?.sync_all())
        .at(&temp)
        .and_then(|()| std::fs::rename(&temp, to).at(to));
    if copied.is_err() {
        // A half-copied part on a full stick is worse than none.
        let _ = std::fs::remove_file(&temp);
    }
    copied?;
    std::fs::remove_file(from).at(from)?;
    Ok(())
}

/// How long a temporary part file may go untouched before any export may
/// take it for abandoned, whoever wrote it.
pub const ABANDONED_PARTIAL_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes from `dir` the temporary part files (`.syncpkt-*.partial`) of
/// exports that are provably over: written on this host by a process that
/// no longer runs (killed, or the machine went down), or untouched for
/// [`ABANDONED_PARTIAL_AGE`]. Never another host's recent ones: a stick may
/// be shared by hosts exporting at once. Returns what it removed; a file
/// that cannot be removed is left (the export then fails, or not, on its
/// own merits).
pub fn remove_abandoned_partials(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = std::time::SystemTime::now();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !packet_format::is_partial_name(name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let dead_here = packet_format::partial_owner(name).is_some_and(|owner| {
            owner.host == packet_format::this_host_id()
                && owner.pid != std::process::id()
                && !crate::store::lock::process_is_alive(owner.pid)
        });
        let stale = meta
            .modified()
            .ok()
            .and_then(|mtime| now.duration_since(mtime).ok())
            .is_some_and(|age| age > ABANDONED_PARTIAL_AGE);
        if (dead_here || stale) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed.sort();
    removed
}

/// The sender's own key rotations among `ops`, with their seals from
/// `seals`, for the header (SPEC.md §4.3): hubs, which cannot read the
/// encrypted operations, verify the packet's new key with them.
fn header_rotations(
    me: &Id,
    ops: &[Operation],
    seals: &[packet_format::seals::Seal],
) -> Vec<packet_format::HeaderRotation> {
    ops.iter()
        .filter(|op| {
            op.origin == *me && matches!(op.change, crate::ops::Change::RekeyMember { .. })
        })
        .filter_map(|op| {
            let seal = seals.iter().find(|s| {
                s.origin == *me && s.first == op.epoch && s.last == op.epoch && s.tail.is_none()
            })?;
            Some(packet_format::HeaderRotation {
                operation: op.encode(),
                seal: seal.signature,
            })
        })
        .take(packet_format::MAX_HEADER_ROTATIONS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_disk_at(path: &str) -> Error {
        Error::io(path, std::io::Error::from(std::io::ErrorKind::StorageFull))
    }

    /// A full disk is blamed on the directory that holds the file that
    /// failed; a file in none of them (a spool in the system's temporary
    /// directory) keeps its own error, never the -out disk's name.
    #[test]
    fn a_full_disk_is_said_of_the_directory_that_filled_up() {
        let dirs = [
            (Path::new("/work"), "-workdir"),
            (Path::new("/stick"), "-out directory"),
        ];
        let said =
            |path: &str| when_no_room(full_disk_at(path), &dirs, || "writing".into(), "-maxsize");
        for (path, role) in [
            ("/work/p.partial", "-workdir"),
            ("/stick/p.zip", "-out directory"),
        ] {
            match said(path) {
                Error::NoRoomForPackets { role: said, .. } => assert_eq!(said, role, "{path}"),
                other => panic!("{path}: {other}"),
            }
        }
        match said("/tmp/spool") {
            Error::Io { path, .. } => assert_eq!(path, Path::new("/tmp/spool")),
            other => panic!("a spool elsewhere: {other}"),
        }
    }
}
