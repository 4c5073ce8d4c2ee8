//! What `mkreplica -import` checks in a creation packet before it makes
//! anything: every check an update import makes (the sender is the
//! signer, every operation sealed by its origin, paths and states as the
//! apply engine takes them, version vectors and epoch rows bounded by what
//! exists), with the shared functions of [`crate::sync::import`] and
//! [`crate::sync::apply`], and what only a whole log can be checked for:
//! every origin's operations from epoch 1, or from right after a verified
//! checkpoint of its scrubbed history (packet SPEC.md §8.1), and the member
//! list against the log's `AddMember` operations.
//!
//! Whom the new replica trusts: the packet's signer, whose key fingerprint
//! its administrator checks (with `-fingerprint`, or against the one the
//! sender printed). The family's first member (made by `mkreplica -init`)
//! joins without an `AddMember` operation; every other member is added by
//! one, sealed by the member that added it. So the member list must be
//! exactly that first member and the members the log adds, with the keys
//! the log gives them; the first member's key is the list's, and every
//! seal is verified from it outward (each added member's key learned from
//! its verified `AddMember`). The signer must be one of these members.
//! What this does not stop: the signer vouches for the first member's key
//! (it is nowhere else to be found), so a signer could make a family of
//! its own invention; the replica made from it then accepts no packet of
//! the real family's members but the signer's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use packet_format::seals::{Checkpoint, Seal};
use packet_format::{CreationPayload, LogicalPacket};
use rusqlite::{params, Connection};

use crate::error::{Error, Result};
use crate::ops::{Change, Id, Operation, PathState};
use crate::store::state::{Member, StatKey};
use crate::sync::apply::{needs_newer_for, sanitize, validate_path_state};
use crate::sync::import::{cap_row, check_sender, check_version};

/// A creation packet that passed [`check`]: what the new replica is made
/// of.
pub(crate) struct Checked {
    /// The operations as sent, in packet order (the log keeps them so:
    /// their seals cover their bytes), and per path its last operation,
    /// on disk ([`Scratch`]), not in memory: a creation packet carries an
    /// operation per path of the family's tree, millions for a large one.
    pub scratch: Scratch,
    /// The seals that verified, to keep with the operations.
    pub seals: Vec<Seal>,
    /// The checkpoints that verified (SPEC.md §8.1), to keep: each origin's
    /// operations up to one are not carried.
    pub checkpoints: Vec<Checkpoint>,
    /// The members: the family's first member, then those the log adds,
    /// in the order it adds them.
    pub members: Vec<Member>,
    /// The members' key rotations the log carries (SPEC.md §7.1), in
    /// epoch order per member, with the encryption key each announces.
    pub rotations: Vec<(crate::store::state::Rotation, String)>,
    /// Bytes of content the paths' end states need (all-zero chunks
    /// left out: they are holes), each reference counted.
    pub content_bytes: u64,
    /// Per origin, the last epoch the packet carries (it carries every one
    /// from 1, or from right after the origin's checkpoint), or the
    /// checkpoint's when it carries none: the new replica's own row.
    pub carried: BTreeMap<Id, u64>,
    /// The sender's epoch row as stated, members only (never beyond
    /// `carried`: a row claiming more is refused).
    pub sender_row: BTreeMap<Id, u64>,
    /// The sender's estimates of the other members' rows, members only,
    /// capped at `carried`; neither the sender's nor the new replica's.
    pub estimates: BTreeMap<Id, BTreeMap<Id, u64>>,
}

/// Checks a verified creation packet (its parts' signatures and digests,
/// and its operations against its `epoch_ranges`, are the reader's) and
/// reads its operations into a scratch database made in `scratch_dir` (a
/// folder no packet path reaches: the state folder under construction),
/// which the returned [`Checked`] removes when dropped. Names in `payload`
/// are validated by the caller. Memory holds a page of operations at a
/// time ([`PAGE`]), and per member a few bytes. Errors:
/// [`Error::BadCreationPacket`] naming what is wrong, the reader's errors
/// (a damaged packet), and [`Error::ScratchFull`] when the scratch
/// database finds its filesystem full.
pub(crate) fn check(
    packet: &LogicalPacket,
    payload: &CreationPayload,
    scratch_dir: &Path,
) -> Result<Checked> {
    let header = packet.header();
    let bad = |what: String| Error::BadCreationPacket {
        packet: packet.parts()[0].path().to_path_buf(),
        what,
    };
    // The update import's refusals, as this packet's.
    let refused = |err: Error| match err {
        Error::Refused(refusal) => bad(refusal.to_string()),
        other => other,
    };
    let list = &payload.members;
    let who = |id: &Id| match list.iter().find(|m| m.id == *id) {
        Some(m) => format!("\"{}\" ({id})", m.name.escape_debug()),
        None => id.to_string(),
    };
    let new = payload.new_replica.id;

    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    for member in list {
        if !ids.insert(member.id) {
            return Err(bad(format!("its member list names {} twice", member.id)));
        }
        if !names.insert(member.name.as_str()) {
            return Err(bad(format!(
                "its member list has two members named \"{}\"",
                member.name.escape_debug()
            )));
        }
    }

    // The operations go to the scratch database a page at a time; what is
    // kept of them in memory is the few that add members.
    let mut scratch = Scratch::create(scratch_dir)?;
    let mut adding: Vec<AddedBy> = Vec::new();
    let mut rekeying: Vec<(crate::sync::seals::Rekeyed, String)> = Vec::new();
    let mut page: Vec<EncodedOp> = Vec::with_capacity(PAGE);
    let mut page_bytes = 0usize;
    for op in packet.operations() {
        let op = op?;
        if let Some(what) = needs_newer_for(&op) {
            return Err(bad(format!("{what} needs a newer syncreplica")));
        }
        if let Change::AddMember {
            replica,
            name,
            public_key,
        } = &op.change
        {
            adding.push(AddedBy {
                origin: op.origin,
                epoch: op.epoch,
                replica: *replica,
                name: name.clone(),
                key: *public_key,
            });
        }
        if let Change::RekeyMember {
            replica,
            old_key,
            new_key,
            encryption_key,
        } = &op.change
        {
            rekeying.push((
                (op.origin, op.epoch, *replica, *old_key, *new_key),
                encryption_key.clone(),
            ));
        }
        let encoded = EncodedOp::of(&op);
        page_bytes += encoded.op.len();
        page.push(encoded);
        if page.len() >= PAGE || page_bytes >= PAGE_BYTES {
            scratch.append(&page)?;
            page.clear();
            page_bytes = 0;
        }
    }
    scratch.append(&page)?;
    drop(page);
    scratch.index()?;

    // Checkpoints (SPEC.md §8.1): each of an origin and by a signer of the
    // member list, not of the new replica, signed with the signer's key
    // there, standing for the epochs before its origin's range exactly.
    let mut checkpoints: BTreeMap<Id, Checkpoint> = BTreeMap::new();
    for checkpoint in &payload.checkpoints {
        let at = format!(
            "its checkpoint of operations 1-{} of {}",
            checkpoint.through,
            who(&checkpoint.origin)
        );
        if checkpoint.origin == new {
            return Err(bad(format!(
                "{at} is of the new replica itself, which has made none"
            )));
        }
        if !list.iter().any(|m| m.id == checkpoint.origin) {
            return Err(bad(format!("{at} is of a replica not in its member list")));
        }
        let Some(signer) = list.iter().find(|m| m.id == checkpoint.signer) else {
            return Err(bad(format!(
                "{at} is signed by {}, not in its member list",
                checkpoint.signer
            )));
        };
        // Signed with the key the signer had then: its current one, or one
        // a rotation of the log replaced since.
        let signed = checkpoint.verify(&signer.public_key)
            || rekeying
                .iter()
                .any(|((origin, _, _, old, _), _)| *origin == signer.id && checkpoint.verify(old));
        if !signed {
            return Err(bad(format!(
                "{at} does not verify with the key of {}, which it names as its signer: \
                 it was not made as it is by that member",
                who(&signer.id)
            )));
        }
        if let Some(range) = header.epoch_ranges.get(&checkpoint.origin) {
            if range.first != checkpoint.through + 1 {
                return Err(bad(format!(
                    "{at} does not end where the operations it carries of that origin \
                     ({}-{}) begin",
                    range.first, range.last
                )));
            }
        }
        checkpoints.insert(checkpoint.origin, *checkpoint);
    }

    // The reader checked that each origin's operations are exactly its
    // range, without gap or repeat. A new replica starts with the whole
    // log: nothing but a checkpoint accounts for epochs before a range's
    // first, and the new replica has made nothing yet.
    let mut carried: BTreeMap<Id, u64> = checkpoints
        .values()
        .map(|c| (c.origin, c.through))
        .collect();
    for (origin, range) in &header.epoch_ranges {
        if *origin == new {
            return Err(bad(format!(
                "it carries operations {}-{} of the new replica {} itself, which has made none",
                range.first,
                range.last,
                who(origin)
            )));
        }
        if range.first != 1 && !checkpoints.contains_key(origin) {
            return Err(bad(format!(
                "it carries operations {}-{} of {} but not 1-{}: a new replica takes \
                 every operation of every member, and no checkpoint accounts for the \
                 missing ones",
                range.first,
                range.last,
                who(origin),
                range.first - 1
            )));
        }
        carried.insert(*origin, range.last);
    }

    // Each member's key before its rotations (SPEC.md §7.1): the member
    // list gives the current keys, the log's rotations lead there from
    // the key the member joined with, which its first runs are sealed
    // with.
    let mut joined_with: HashMap<Id, [u8; 32]> = HashMap::new();
    for member in list {
        let mut key = member.public_key;
        for ((origin, epoch, replica, old, new), _) in rekeying.iter().rev() {
            if replica != origin {
                return Err(bad(format!(
                    "operation {epoch} of {} rotates the keys of {}: a member rekeys only itself",
                    who(origin),
                    who(replica)
                )));
            }
            if *replica == member.id {
                if *new != key {
                    return Err(bad(format!(
                        "its member list gives {} a key that its key rotations do not lead to",
                        who(&member.id)
                    )));
                }
                key = *old;
            }
        }
        joined_with.insert(member.id, key);
    }
    let original =
        |m: &packet_format::Member| joined_with.get(&m.id).copied().unwrap_or(m.public_key);

    // The members the log adds, each once (again with the same name and
    // key is harmless, as an update import takes it).
    struct Added<'a> {
        name: &'a str,
        key: [u8; 32],
        by: &'a AddedBy,
    }
    let mut added: BTreeMap<Id, Added> = BTreeMap::new();
    let mut order: Vec<Id> = Vec::new();
    for op in &adding {
        let (replica, name, public_key) = (&op.replica, &op.name, &op.key);
        match added.get(replica) {
            Some(known) if known.name == name && known.key == *public_key => {}
            Some(known) => {
                return Err(bad(format!(
                    "operation {} of {} and operation {} of {} add member {replica} with \
                     different names or keys",
                    known.by.epoch,
                    who(&known.by.origin),
                    op.epoch,
                    who(&op.origin)
                )))
            }
            None => {
                if let Some((other, _)) = added.iter().find(|(_, a)| a.name == name) {
                    return Err(bad(format!(
                        "operation {} of {} adds member \"{}\" ({replica}), a name member {other} has",
                        op.epoch,
                        who(&op.origin),
                        name.escape_debug()
                    )));
                }
                added.insert(
                    *replica,
                    Added {
                        name,
                        key: *public_key,
                        by: op,
                    },
                );
                order.push(*replica);
            }
        }
    }
    // The family's first member is the one member no operation adds. Once
    // history is scrubbed (a checkpoint), so may the operations adding
    // members be: then every member no operation adds is taken as the
    // signer vouches for it, as it vouches for the first member.
    let unadded: Vec<&packet_format::Member> =
        list.iter().filter(|m| !added.contains_key(&m.id)).collect();
    let vouched: Vec<&packet_format::Member> = if checkpoints.is_empty() {
        Vec::new()
    } else {
        unadded.clone()
    };
    let first = match unadded.as_slice() {
        [one, ..] if !vouched.is_empty() => *one,
        [one] => *one,
        [] => {
            return Err(bad(
                "an operation of it adds every member of its member list, so none is the \
                 family's first member (the one member that joins without an AddMember \
                 operation)"
                    .into(),
            ))
        }
        several => {
            let named: Vec<String> = several.iter().map(|m| who(&m.id)).collect();
            return Err(bad(format!(
                "its member list names {}, which no operation of it adds: only the family's \
                 first member joins without an AddMember operation",
                named.join(" and ")
            )));
        }
    };
    // A member whose rotation was scrubbed (its checkpoint covers it) is
    // listed with a key no operation left leads to from its AddMember's:
    // the signer vouches for it, as for a member whose AddMember went.
    let mut rescued: Vec<&packet_format::Member> = Vec::new();
    for id in &order {
        let add = &added[id];
        match list.iter().find(|m| m.id == *id) {
            Some(m)
                if m.name == add.name && original(m) != add.key && checkpoints.contains_key(id) =>
            {
                rescued.push(m);
            }
            None => {
                return Err(bad(format!(
                    "member \"{}\" ({id}), added by operation {} of {}, is missing from its \
                     member list",
                    add.name.escape_debug(),
                    add.by.epoch,
                    who(&add.by.origin)
                )))
            }
            Some(m) if m.name != add.name || original(m) != add.key => {
                return Err(bad(format!(
                    "its member list gives {} another name or key than operation {} of {}, \
                     which adds it",
                    who(id),
                    add.by.epoch,
                    who(&add.by.origin)
                )))
            }
            Some(_) => {}
        }
    }
    let roots: Vec<&packet_format::Member> = if vouched.is_empty() {
        vec![first]
    } else {
        vouched
    };
    let members: Vec<Member> = roots
        .iter()
        .copied()
        .chain(
            order
                .iter()
                .filter_map(|id| list.iter().find(|m| m.id == *id)),
        )
        .map(|m| Member {
            replica: m.id,
            name: m.name.clone(),
            public_key: m.public_key,
        })
        .collect();

    // Every operation sealed by its origin, with keys from the first
    // member's outward (the new replica holds nothing yet).
    let keys = crate::sync::keys::KeyBook::new(
        roots
            .iter()
            .map(|m| (m.id, original(m)))
            .chain(rescued.iter().map(|m| (m.id, m.public_key)))
            .collect(),
    );
    let rekeyed: Vec<crate::sync::seals::Rekeyed> = rekeying.iter().map(|(r, _)| *r).collect();
    let seals = crate::sync::seals::verify_incoming(
        None,
        packet.seals(),
        &Incoming {
            scratch: &scratch,
            added: &adding,
            rekeyed: &rekeyed,
        },
        &HashMap::new(),
        &keys,
    )
    .map_err(refused)?;
    check_sender(&members, header).map_err(refused)?;
    // The sender made the new member, and nobody else.
    match added.get(&new) {
        None => {
            return Err(bad(format!(
                "no operation of it adds the new replica {}",
                who(&new)
            )))
        }
        Some(add) if add.by.origin != header.sender.id => {
            return Err(bad(format!(
                "the new replica {} is added by {}, not by the packet's sender {}",
                who(&new),
                who(&add.by.origin),
                who(&header.sender.id)
            )))
        }
        Some(add) if add.name != payload.new_replica.name => {
            return Err(bad(format!(
                "it names the new replica \"{}\", but the operation adding {new} names it \"{}\"",
                payload.new_replica.name.escape_debug(),
                add.name.escape_debug()
            )))
        }
        Some(_) => {}
    }

    // Paths as an import checks them: every one lexically, and the state
    // each path ends with (the one applied) as the apply engine takes it.
    // Versions as an import checks them, in the same pass (each pass
    // decodes every operation again).
    scratch.for_each_op(|_, op| {
        if let Some(change) = op.change.path_change() {
            validate_path_state(change.path, change.state).map_err(refused)?;
        }
        check_version(op, &carried).map_err(refused)
    })?;
    // Each path's last operation, taken by the database (sorted by path).
    scratch.last_per_path()?;
    let mut content_bytes = 0u64;
    scratch
        .for_each_path(false, |row| {
            if let PathState::File { chunks, .. } = &row.state {
                content_bytes += chunks
                    .iter()
                    .filter(|c| !crate::tree::chunking::is_zero_chunk(c))
                    .map(|c| u64::from(c.len))
                    .sum::<u64>();
            }
            Ok(())
        })
        .map_err(refused)?;

    // The sender's row is its own: exact, and all of it travels. One
    // claiming more than the packet carries would have the new replica
    // believe it holds operations it lacks (its first export would fail).
    // Estimates of the others are the sender's beliefs (chepoch may set
    // them beyond what it holds): capped, as an update import caps them.
    let is_member = |id: &Id| members.iter().any(|m| m.replica == *id);
    for (origin, epoch) in &header.epoch_row {
        let has = carried.get(origin).copied().unwrap_or(0);
        if *epoch > has {
            return Err(bad(format!(
                "its sender's epoch row claims epoch {epoch} of {}, but it carries the \
                 operations of that origin only up to {has}",
                who(origin)
            )));
        }
    }
    let sender_row = header
        .epoch_row
        .iter()
        .filter(|(origin, _)| is_member(origin))
        .map(|(origin, epoch)| (*origin, *epoch))
        .collect();
    let mut estimates = BTreeMap::new();
    for (member, row) in &payload.estimates {
        if !is_member(member) {
            return Err(bad(format!(
                "it estimates the epoch row of {member}, which is not a member"
            )));
        }
        if *member == new || *member == header.sender.id {
            continue;
        }
        let row: BTreeMap<Id, u64> = row
            .iter()
            .filter(|(origin, _)| is_member(origin))
            .map(|(origin, epoch)| (*origin, *epoch))
            .collect();
        estimates.insert(*member, cap_row(&row, &carried));
    }
    let rotations = rekeying
        .into_iter()
        .map(|((_, epoch, replica, old_key, new_key), encryption_key)| {
            (
                crate::store::state::Rotation {
                    replica,
                    epoch,
                    old_key,
                    new_key,
                    at_ns: header.created.as_nanos_saturating(),
                },
                encryption_key,
            )
        })
        .collect();
    Ok(Checked {
        scratch,
        seals,
        checkpoints: checkpoints.into_values().collect(),
        members,
        rotations,
        content_bytes,
        carried,
        sender_row,
        estimates,
    })
}

/// An `AddMember` operation of the packet: (its origin and epoch, the
/// member, its name and key).
pub(crate) struct AddedBy {
    pub origin: Id,
    pub epoch: u64,
    pub replica: Id,
    pub name: String,
    pub key: [u8; 32],
}

/// At most this many operations (or paths) of a creation packet are
/// decoded and held at once.
pub(crate) const PAGE: usize = 4096;

/// And at most about this many bytes of their encodings (a page ends
/// after the operation that reaches it): one operation may encode to
/// 16 MiB (a file's chunk list, which compresses to next to nothing in a
/// packet), so a page of [`PAGE`] of them would be 64 GiB.
pub(crate) const PAGE_BYTES: usize = 16 << 20;

/// An operation as the scratch database stores it.
pub(crate) struct EncodedOp {
    origin: Id,
    epoch: u64,
    path: Option<Vec<u8>>,
    op: Vec<u8>,
}

impl EncodedOp {
    fn of(op: &Operation) -> EncodedOp {
        EncodedOp {
            origin: op.origin,
            epoch: op.epoch,
            path: op.change.path_change().map(|c| c.path.to_vec()),
            op: op.encode(),
        }
    }
}

/// The scratch database's file, in the state folder under construction;
/// removed before that folder becomes the replica's.
pub(crate) const SCRATCH_FILE: &str = "creation-ops.db";

/// A creation packet's operations on disk while the new replica is made
/// (no journal, no fsync: it is thrown away after, or with the unfinished
/// state folder). Tables: `ops` (each operation as sent, by position),
/// `paths` (per path its last operation, then where its content is staged
/// and its stat once made), `spots` (where each chunk goes), `staged`
/// (the files written from the packet's chunks, conflict copies
/// included), `carried` (the length of each chunk the packet carries that
/// a file wants). Removed when dropped.
pub(crate) struct Scratch {
    conn: Connection,
    file: PathBuf,
    len: u64,
}

/// One path of the new tree, read back from [`Scratch`].
pub(crate) struct PathRow {
    pub path: Vec<u8>,
    /// Its last operation.
    pub op: Operation,
    /// The state that operation gives it, as the apply engine applies it
    /// (see [`sanitize`]).
    pub state: PathState,
    /// Where its content was written ([`Scratch::stage`]), if it was.
    pub staged: Option<u64>,
    /// Its content was left out: the packet does not carry it.
    pub incomplete: bool,
    /// Not made: this filesystem folds its name into another's.
    pub dropped: bool,
    pub stat: Option<StatKey>,
}

impl PathRow {
    /// The member that made this path's state.
    pub fn author(&self) -> Id {
        self.op
            .change
            .path_change()
            .and_then(|c| c.author)
            .unwrap_or(self.op.origin)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Nothing depends on it: an abandoned one goes with its folder.
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Scratch {
    fn create(dir: &Path) -> Result<Scratch> {
        let file = dir.join(SCRATCH_FILE);
        let _ = std::fs::remove_file(&file);
        let fail = |e| scratch_write_error(&file, e, "making it");
        let conn = Connection::open(&file).map_err(fail)?;
        // A fixed cache of 16 MiB: indexes are sorted in it, where the
        // default 2 MiB spills to temporary files.
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA cache_size = -16384;
             PRAGMA temp_store = FILE;
             CREATE TABLE ops (
                 seq INTEGER PRIMARY KEY,
                 origin BLOB NOT NULL,
                 epoch INTEGER NOT NULL,
                 path BLOB,
                 op BLOB NOT NULL
             );
             CREATE TABLE paths (
                 path BLOB PRIMARY KEY,
                 seq INTEGER NOT NULL,
                 staged INTEGER,
                 dropped INTEGER NOT NULL DEFAULT 0,
                 st_size INTEGER,
                 st_mtime INTEGER,
                 st_ctime INTEGER,
                 st_inode INTEGER,
                 st_mode INTEGER
             );
             CREATE TABLE staged (
                 n INTEGER PRIMARY KEY,
                 path BLOB NOT NULL,
                 copy INTEGER NOT NULL,
                 mode INTEGER NOT NULL,
                 secs INTEGER NOT NULL,
                 nanos INTEGER NOT NULL,
                 incomplete INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE spots (id BLOB NOT NULL, len INTEGER NOT NULL,
                                 file INTEGER NOT NULL, offset INTEGER NOT NULL);
             CREATE TABLE carried (id BLOB PRIMARY KEY, len INTEGER NOT NULL);",
        )
        .map_err(fail)?;
        Ok(Scratch { conn, file, len: 0 })
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The error for a failed write of the scratch database while doing
    /// `what`: [`Error::ScratchFull`] when its filesystem is full.
    pub(crate) fn write_error(&self, source: rusqlite::Error, what: &str) -> Error {
        scratch_write_error(&self.file, source, what)
    }

    /// The error for a failed read.
    pub(crate) fn read_error(&self, what: impl std::fmt::Display) -> Error {
        read_error(&self.file, what)
    }

    fn append(&mut self, ops: &[EncodedOp]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let before = self.len;
        let mut len = self.len;
        let write = |len: &mut u64| -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO ops (seq, origin, epoch, path, op) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for op in ops {
                    insert.execute(params![
                        *len as i64,
                        op.origin.0.as_slice(),
                        op.epoch as i64,
                        op.path,
                        op.op
                    ])?;
                    *len += 1;
                }
            }
            tx.commit()
        };
        write(&mut len).map_err(|e| {
            self.write_error(
                e,
                &format!("copying the packet's operations ({before} so far)"),
            )
        })?;
        self.len = len;
        Ok(())
    }

    fn index(&self) -> Result<()> {
        self.conn
            .execute_batch(
                "CREATE INDEX ops_by_origin ON ops (origin, epoch);
                 CREATE INDEX ops_by_path ON ops (path, seq) WHERE path IS NOT NULL;",
            )
            .map_err(|e| self.write_error(e, "indexing the packet's operations"))
    }

    /// Fills `paths`: per path, its last operation.
    fn last_per_path(&self) -> Result<()> {
        self.conn
            .execute_batch(
                "INSERT INTO paths (path, seq)
                 SELECT path, MAX(seq) FROM ops WHERE path IS NOT NULL GROUP BY path",
            )
            .map_err(|e| self.write_error(e, "taking each path's last operation"))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Operation> {
        Operation::decode(bytes).map_err(|e| self.read_error(e))
    }

    /// Calls `f` with each operation and its position, in packet order,
    /// decoding a page at a time ([`PAGE`] operations, [`PAGE_BYTES`]).
    pub fn for_each_op(&self, mut f: impl FnMut(u64, &Operation) -> Result<()>) -> Result<()> {
        let mut next = 0u64;
        while next < self.len {
            let end = next + PAGE as u64;
            let mut page: Vec<(u64, Operation)> = Vec::new();
            let mut page_bytes = 0usize;
            {
                let err = |e| read_error(&self.file, e);
                let mut statement = self
                    .conn
                    .prepare_cached(
                        "SELECT seq, op FROM ops WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
                    )
                    .map_err(err)?;
                let mut rows = statement
                    .query(params![next as i64, end as i64])
                    .map_err(err)?;
                while let Some(row) = rows.next().map_err(err)? {
                    let seq: i64 = row.get(0).map_err(err)?;
                    let bytes: Vec<u8> = row.get(1).map_err(err)?;
                    page_bytes += bytes.len();
                    page.push((seq as u64, self.decode(&bytes)?));
                    if page_bytes >= PAGE_BYTES {
                        break;
                    }
                }
            }
            let Some(&(last, _)) = page.last() else {
                return Err(self.read_error("operations missing"));
            };
            for (seq, op) in &page {
                f(*seq, op)?;
            }
            next = last + 1;
        }
        Ok(())
    }

    /// Calls `f` with each path of the new tree, in byte order (`desc`:
    /// the reverse), a page at a time ([`PAGE`] paths, [`PAGE_BYTES`] of
    /// their operations): rows may be changed by `f`.
    pub fn for_each_path(
        &self,
        desc: bool,
        mut f: impl FnMut(&PathRow) -> Result<()>,
    ) -> Result<()> {
        let sql = format!(
            "SELECT p.path, o.op, p.staged, COALESCE(s.incomplete, 0), p.dropped,
                    p.st_size, p.st_mtime, p.st_ctime, p.st_inode, p.st_mode
             FROM paths p JOIN ops o ON o.seq = p.seq
             LEFT JOIN staged s ON s.n = p.staged
             WHERE (?1 IS NULL OR p.path {} ?1)
             ORDER BY p.path {} LIMIT {PAGE}",
            if desc { "<" } else { ">" },
            if desc { "DESC" } else { "ASC" }
        );
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut page: Vec<PathRow> = Vec::new();
            let mut page_bytes = 0usize;
            {
                let err = |e| read_error(&self.file, e);
                let mut statement = self.conn.prepare_cached(&sql).map_err(err)?;
                let mut rows = statement.query(params![after]).map_err(err)?;
                while let Some(row) = rows.next().map_err(err)? {
                    let path: Vec<u8> = row.get(0).map_err(err)?;
                    let bytes: Vec<u8> = row.get(1).map_err(err)?;
                    // Twice: the operation and the state taken from it.
                    page_bytes += 2 * bytes.len();
                    let op = self.decode(&bytes)?;
                    let change = op.change.path_change().ok_or_else(|| {
                        self.read_error("a path's last operation is not of a path")
                    })?;
                    let state = sanitize(&path, change.state)?;
                    let staged: Option<i64> = row.get(2).map_err(err)?;
                    let incomplete: bool = row.get(3).map_err(err)?;
                    let dropped: bool = row.get(4).map_err(err)?;
                    let size: Option<i64> = row.get(5).map_err(err)?;
                    let stat = match size {
                        None => None,
                        Some(size) => Some(StatKey {
                            size: size as u64,
                            mtime_ns: row.get(6).map_err(err)?,
                            ctime_ns: row.get(7).map_err(err)?,
                            inode: row.get::<_, i64>(8).map_err(err)? as u64,
                            mode: row.get(9).map_err(err)?,
                        }),
                    };
                    page.push(PathRow {
                        path,
                        op,
                        state,
                        staged: staged.map(|n| n as u64),
                        incomplete,
                        dropped,
                        stat,
                    });
                    if page_bytes >= PAGE_BYTES {
                        break;
                    }
                }
            }
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.path.clone());
            for row in &page {
                f(row)?;
            }
        }
    }

    /// Begins a transaction of the scratch database (its writes are
    /// many: one transaction is far quicker than one each).
    pub fn begin(&self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN")
            .map_err(|e| self.write_error(e, "starting a transaction"))
    }

    /// Commits what [`Scratch::begin`] began.
    pub fn commit(&self) -> Result<()> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.write_error(e, "writing its rows"))
    }

    /// The conflict copies staged and complete: (where staged, tree path).
    /// Few: one per name this filesystem folds.
    pub fn staged_copies(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let err = |e| self.read_error(e);
        let mut statement = self
            .conn
            .prepare("SELECT n, path FROM staged WHERE copy AND NOT incomplete ORDER BY n")
            .map_err(err)?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
            .map_err(err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(err)
    }

    /// Every path of the new tree with its last operation's position and
    /// state, in memory (`mkreplica -import -adopt`, which holds the
    /// adopted tree in memory anyway).
    pub fn load_paths(&self) -> Result<BTreeMap<Vec<u8>, (u64, PathState)>> {
        let mut paths = BTreeMap::new();
        self.for_each_path(false, |row| {
            paths.insert(row.path.clone(), (0, row.state.clone()));
            Ok(())
        })?;
        Ok(paths)
    }

    /// Runs `body` in one transaction of the scratch database.
    pub fn batch<T>(
        &self,
        what: &str,
        body: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let run = || -> rusqlite::Result<T> {
            let tx = self.conn.unchecked_transaction()?;
            let value = body(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|e| self.write_error(e, what))
    }
}

fn read_error(file: &Path, what: impl std::fmt::Display) -> Error {
    Error::CorruptState {
        path: file.to_path_buf(),
        what: format!("scratch database of the creation import: {what}"),
    }
}

fn scratch_write_error(file: &Path, source: rusqlite::Error, what: &str) -> Error {
    crate::sync::apply::batch::write_error(
        file,
        source,
        || what.to_string(),
        |e| read_error(file, e),
    )
}

/// The packet's operations as the seal check reads them.
struct Incoming<'a> {
    scratch: &'a Scratch,
    added: &'a [AddedBy],
    rekeyed: &'a [crate::sync::seals::Rekeyed],
}

impl crate::sync::seals::Incoming for Incoming<'_> {
    fn backwards(&self, f: &mut crate::sync::seals::OpVisitor) -> Result<()> {
        let scratch = self.scratch;
        let err = |e| read_error(&scratch.file, e);
        // Each origin's from its highest epoch down; the reader refused
        // repeats, so each (origin, epoch) is once.
        let mut statement = scratch
            .conn
            .prepare("SELECT origin, epoch, op FROM ops ORDER BY origin DESC, epoch DESC")
            .map_err(err)?;
        let mut rows = statement.query([]).map_err(err)?;
        let mut previous: Option<(Vec<u8>, i64)> = None;
        while let Some(row) = rows.next().map_err(err)? {
            let origin: Vec<u8> = row.get(0).map_err(err)?;
            let epoch: i64 = row.get(1).map_err(err)?;
            if previous.as_ref() == Some(&(origin.clone(), epoch)) {
                continue;
            }
            let bytes: Vec<u8> = row.get(2).map_err(err)?;
            let id = Id(origin
                .as_slice()
                .try_into()
                .map_err(|_| scratch.read_error("an origin that is not 16 bytes"))?);
            f(id, epoch as u64, &bytes)?;
            previous = Some((origin, epoch));
        }
        Ok(())
    }

    fn added_members(&self) -> Vec<(Id, u64, Id, [u8; 32])> {
        self.added
            .iter()
            .map(|a| (a.origin, a.epoch, a.replica, a.key))
            .collect()
    }

    fn rekeyed(&self) -> Vec<crate::sync::seals::Rekeyed> {
        self.rekeyed.to_vec()
    }
}
