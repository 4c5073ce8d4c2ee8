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

use packet_format::seals::{Checkpoint, Seal};
use packet_format::{CreationPayload, LogicalPacket};

use crate::error::{Error, Result};
use crate::ops::{Change, Id, Operation, PathState};
use crate::store::state::Member;
use crate::sync::apply::{needs_newer_for, sanitize, validate_path};
use crate::sync::import::{cap_row, check_sender, check_versions};

/// A creation packet that passed [`check`]: what the new replica is made
/// of.
pub(crate) struct Checked {
    /// The operations as sent, in packet order: the log keeps them so
    /// (their seals cover their bytes).
    pub ops: Vec<Operation>,
    /// The seals that verified, to keep with the operations.
    pub seals: Vec<Seal>,
    /// The checkpoints that verified (SPEC.md §8.1), to keep: each origin's
    /// operations up to one are not carried.
    pub checkpoints: Vec<Checkpoint>,
    /// The members: the family's first member, then those the log adds,
    /// in the order it adds them.
    pub members: Vec<Member>,
    /// Per path, its last operation (an index into `ops`) and the state it
    /// gives the path, as the apply engine applies it (setuid and setgid
    /// dropped).
    pub paths: BTreeMap<Vec<u8>, (usize, PathState)>,
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
/// reads its operations. Names in `payload` are validated by the caller.
/// Errors: [`Error::BadCreationPacket`] naming what is wrong, and the
/// reader's errors (a damaged packet).
pub(crate) fn check(packet: &LogicalPacket, payload: &CreationPayload) -> Result<Checked> {
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

    let mut ops: Vec<Operation> = Vec::new();
    for op in packet.operations() {
        let op = op?;
        if let Some(what) = needs_newer_for(&op) {
            return Err(bad(format!("{what} needs a newer syncreplica")));
        }
        ops.push(op);
    }

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
        if !checkpoint.verify(&signer.public_key) {
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

    // The members the log adds, each once (again with the same name and
    // key is harmless, as an update import takes it).
    struct Added<'a> {
        name: &'a str,
        key: [u8; 32],
        by: &'a Operation,
    }
    let mut added: BTreeMap<Id, Added> = BTreeMap::new();
    let mut order: Vec<Id> = Vec::new();
    for op in &ops {
        let Change::AddMember {
            replica,
            name,
            public_key,
        } = &op.change
        else {
            continue;
        };
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
    for id in &order {
        let add = &added[id];
        match list.iter().find(|m| m.id == *id) {
            None => {
                return Err(bad(format!(
                    "member \"{}\" ({id}), added by operation {} of {}, is missing from its \
                     member list",
                    add.name.escape_debug(),
                    add.by.epoch,
                    who(&add.by.origin)
                )))
            }
            Some(m) if m.name != add.name || m.public_key != add.key => {
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
    let keys: HashMap<Id, [u8; 32]> = roots.iter().map(|m| (m.id, m.public_key)).collect();
    let seals = crate::sync::seals::verify_incoming(
        None,
        packet.seals(),
        ops.as_slice(),
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
    let mut last: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        if let Some(change) = op.change.path_change() {
            validate_path(change.path).map_err(refused)?;
            last.insert(change.path.as_slice(), index);
        }
    }
    let mut paths = BTreeMap::new();
    for (path, index) in last {
        let change = ops[index].change.path_change().expect("a path operation");
        let state = sanitize(path, change.state).map_err(refused)?;
        paths.insert(path.to_vec(), (index, state));
    }
    check_versions(&ops, &carried).map_err(refused)?;

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
    Ok(Checked {
        ops,
        seals,
        checkpoints: checkpoints.into_values().collect(),
        members,
        paths,
        carried,
        sender_row,
        estimates,
    })
}
