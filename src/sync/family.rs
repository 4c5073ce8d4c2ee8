//! Clone detection (issue 13): two copies of one replica.
//!
//! One creation packet imported twice gives two replicas with the same
//! identity and key. Each edits and numbers its changes from the same
//! epoch; the first copy's packets apply at a sibling, the second's are
//! "already applied" there and its changes never arrive. So each copy
//! draws a random incarnation id when it is made, and carries it in every
//! packet it signs (header field, SPEC.md §4). A member accepts packets
//! from the first incarnation of a replica it hears from and refuses the
//! other's, with an alarm; and an operation that arrives numbered like a
//! different one this replica has (the same origin and epoch, other
//! bytes: what a relay passes on from the other copy) raises the same
//! alarm. Nothing of a refused packet is applied, so nothing is lost: its
//! files stay where they are.

use packet_format::Header;

use crate::error::{printable, Refusal, Result};
use crate::ops::{Id, Operation};
use crate::replica::LockedReplica;
use crate::store::state::{self, CloneAlarm};

/// Checks the sender's incarnation in `header` (signature verified,
/// sender a member) against the one this replica accepts packets from,
/// recording it when it is the first seen. Returns the refusal, after
/// recording the alarm, when it is another copy's. `packet` names the
/// packet's first file.
pub fn check_incarnation(
    replica: &mut LockedReplica,
    header: &Header,
    packet: &str,
) -> Result<Option<Refusal>> {
    let Some(incarnation) = header.incarnation else {
        // Written before incarnations existed: nothing to compare.
        return Ok(None);
    };
    let sender = header.sender.id;
    // Two copies name their packets alike (same sender, target, sequence,
    // often the same second): each is named by its packet id too.
    let packet = &format!("{packet} (packet id {})", header.packet_id);
    // The sender's key, current or replaced by a rotation (a packet in
    // flight): the import checks which epochs it is good for.
    let signed_by_sender = crate::sync::keys::KeyBook::load(replica.state())?
        .owner(&header.signer_key)
        .is_some_and(|o| o.member == sender);
    let Some(member) = replica
        .members()?
        .into_iter()
        .find(|m| m.replica == sender && signed_by_sender)
    else {
        // Not the sender's own key: the import refuses it for that.
        return Ok(None);
    };
    if sender == replica.identity.replica_id {
        // A packet signed in this replica's own name by another copy.
        if let Some((own, _)) = replica.state().own_incarnation()? {
            if own != incarnation {
                let what = format!(
                    "this packet was signed in its name by another copy of it (incarnation {incarnation}; this copy is {own})"
                );
                return raise(replica, &sender, &member.name, packet, what).map(Some);
            }
        }
        return Ok(None);
    }
    let now = crate::sys::clock::now_ns();
    match replica.state().known_incarnation(&sender)? {
        None => {
            replica.state_mut().transaction(|tx| {
                Ok(state::record_incarnation(
                    tx,
                    &sender,
                    &incarnation,
                    now,
                    packet,
                )?)
            })?;
            Ok(None)
        }
        Some(known) if known.incarnation == incarnation => Ok(None),
        Some(known) => {
            let origin = creation_origin(replica, &sender)?;
            // Each copy named by its own packet: the refused one by this
            // packet, the accepted one by the first packet seen from it.
            let what = format!(
                "the refused copy (incarnation {incarnation}) wrote the packet {}; the accepted copy \
                 (incarnation {}) wrote the packet {}, the first this replica took from it, on {}; \
                 both copies were made from {origin}",
                printable(packet),
                known.incarnation,
                printable(&known.packet),
                crate::sys::clock::format_time_ns(known.at_ns),
            );
            raise(replica, &sender, &member.name, packet, what).map(Some)
        }
    }
}

/// Whether this replica's log holds a different operation under `op`'s
/// origin and epoch (`op` in full, its relative file state expanded):
/// the sign of two copies of its origin. Reads only.
pub fn differs_from_log(state: &crate::store::state::State, op: &Operation) -> Result<bool> {
    let encoded = op.encode();
    let stored = state.operation_bytes(&op.origin, op.epoch, op.epoch)?;
    if let Some(stored) = stored.first() {
        return Ok(*stored != encoded);
    }
    // Scrubbed: its fingerprint stays (see `state::scrub_operations`), so
    // a copy's different change is told apart after a scrub too.
    Ok(state
        .scrubbed_fingerprint(&op.origin, op.epoch)?
        .is_some_and(|kept| kept != crate::store::state::op_fingerprint(&encoded)))
}

/// Compares the operations of a packet that this replica has already
/// (same origin and epoch) with its own copies: a different one means two
/// copies of the origin number their changes independently. Returns the
/// refusal, after recording the alarm.
pub fn check_duplicates(
    replica: &mut LockedReplica,
    ops: &[Operation],
    packet: &str,
) -> Result<Option<Refusal>> {
    for op in ops {
        if differs_from_log(replica.state(), op)? {
            let name = replica
                .members()?
                .into_iter()
                .find(|m| m.replica == op.origin)
                .map_or_else(|| op.origin.to_hex(), |m| m.name);
            let origin = creation_origin(replica, &op.origin)?;
            let what = if op.origin == replica.identity.replica_id {
                format!(
                    "THIS replica is the copy its siblings refuse: the packet carries change {} of \
                     its own as another copy of it made it, and this copy made a different change \
                     with that number; both copies were made from {origin}, and the siblings \
                     accept the other's packets, so this copy's changes never reach them",
                    op.epoch
                )
            } else {
                format!(
                    "the packet carries its change number {} and this replica has a different change \
                     with that number: two copies of it, made from {origin}, number their changes independently{}",
                    op.epoch,
                    match carried_rotation_note(replica.state(), ops, &op.origin, op.epoch)? {
                        Some(note) => note,
                        None => rotation_note(replica.state(), &op.origin, op.epoch)?,
                    }
                )
            };
            return raise(replica, &op.origin, &name, packet, what).map(Some);
        }
    }
    Ok(None)
}

/// When `origin` replaced its keys (`mkreplica -rekey`) at an epoch at or
/// after `epoch`, the words that say so: a copy numbering its changes
/// like the member's own up to its rotation is likely one from before it
/// (a stolen disk or an old backup). Said the same whether the packet
/// came from that copy or through a relay. Empty otherwise.
fn rotation_note(state: &crate::store::state::State, origin: &Id, epoch: u64) -> Result<String> {
    let rotation = state
        .rotations()?
        .into_iter()
        .filter(|r| r.replica == *origin && r.epoch >= epoch)
        .min_by_key(|r| r.epoch);
    Ok(match rotation {
        Some(r) => format!(
            "; it replaced its keys at its epoch {} (mkreplica -rekey), so the other copy is \
             likely one from before the rotation (a stolen disk or an old backup), its changes \
             sealed with the old key",
            r.epoch
        ),
        None => String::new(),
    })
}

/// When the refused packet (`ops`) itself carries `origin`'s key rotation
/// at or after `epoch` (`mkreplica -rekey`), replacing the key this
/// replica holds for `origin` (the one the change it took earlier was
/// signed with), the words that say what that likely means: the change
/// taken earlier came from a copy of the member from before its rotation
/// (a stolen disk or an old backup), and this packet from the member that
/// rotated; and what to do. `None` otherwise.
fn carried_rotation_note(
    state: &crate::store::state::State,
    ops: &[Operation],
    origin: &Id,
    epoch: u64,
) -> Result<Option<String>> {
    let book = crate::sync::keys::KeyBook::load(state)?;
    let Some(current) = book.current(origin) else {
        return Ok(None);
    };
    let rotation = ops.iter().find_map(|op| match &op.change {
        crate::ops::Change::RekeyMember {
            replica, old_key, ..
        } if op.origin == *origin
            && replica == origin
            && op.epoch >= epoch
            && *old_key == current =>
        {
            Some(op.epoch)
        }
        _ => None,
    });
    Ok(rotation.map(|at| {
        format!(
            "; this packet carries its key rotation at its epoch {at} (mkreplica -rekey), which \
             replaces the key the change this replica took earlier was signed with: that change \
             likely came from a copy of it from before the rotation (a stolen disk or an old \
             backup), this packet from the member that rotated. Check at that member's site that \
             it ran mkreplica -rekey (lsreplica -long there shows the rotation); if it did, its old \
             key is in other hands and this replica holds the copy's change: handle it as a \
             clone (below), keeping the copy that rotated"
        )
    }))
}

/// Refuses a packet that carries a change of this replica's own numbered
/// `epoch`, beyond the `own` it ever made, outside a restore: another copy
/// of this replica made it (a sibling that refused that copy's twin sends
/// it back on purpose, see `export`), or this copy was restored from a
/// backup without `mkreplica -restore`. Records the alarm about itself
/// and returns the refusal.
pub fn refuse_own_never_made(
    replica: &mut LockedReplica,
    epoch: u64,
    own: u64,
    packet: &str,
) -> Result<Refusal> {
    let me = replica.identity.replica_id;
    let name = replica.identity.replica_name.clone();
    let origin = creation_origin(replica, &me)?;
    let what = format!(
        "THIS replica is the copy its siblings refuse: the packet carries change {epoch} of its \
         own, which this copy never made (it made {own}): another copy of it, made from {origin}, \
         is in use and the siblings accept that copy's packets, so this copy's changes never \
         reach them (if this copy was restored from a backup instead, run mkreplica -restore here)"
    );
    raise(replica, &me, &name, packet, what)
}

/// Where the copies of `replica` came from, as far as this replica knows.
fn creation_origin(replica: &LockedReplica, cloned: &Id) -> Result<String> {
    if let Some(made) = replica.state().creation_packet_for(cloned)? {
        return Ok(format!(
            "the creation packet {} that this replica wrote on {}",
            printable(&made.file_name),
            crate::sys::clock::format_time_ns(made.at_ns)
        ));
    }
    if *cloned == replica.identity.replica_id {
        if let Some((_, packet)) = replica.state().own_incarnation()? {
            if !packet.is_empty() {
                return Ok(format!("the creation packet {}", printable(&packet)));
            }
        }
    }
    Ok("one creation packet imported twice (or a copied replica directory)".into())
}

/// Records the alarm and returns the refusal.
fn raise(
    replica: &mut LockedReplica,
    cloned: &Id,
    name: &str,
    packet: &str,
    what: String,
) -> Result<Refusal> {
    let alarm = CloneAlarm {
        replica: *cloned,
        at_ns: crate::sys::clock::now_ns(),
        packet: packet.to_string(),
        what: what.clone(),
    };
    replica
        .state_mut()
        .transaction(|tx| Ok(state::add_clone_alarm(tx, &alarm)?))?;
    Ok(Refusal::Cloned {
        replica: printable(name).into_owned(),
        what,
    })
}

/// The member `name_or_id` if `rmreplica` may remove it (checked before
/// the question is asked, on a replica opened for reading): not this
/// replica, not removed already, and no restore of this replica's
/// unfinished. Errors as [`remove_member`].
pub fn check_removable(
    replica: &crate::replica::Replica,
    name_or_id: &str,
) -> Result<crate::store::state::Member> {
    let member = replica.member(name_or_id)?;
    let me = replica.identity.replica_id;
    if member.replica == me {
        return Err(crate::error::Error::Member {
            name: name_or_id.to_string(),
            why: "that is this replica; a replica cannot remove itself: run rmreplica at a sibling"
                .into(),
        });
    }
    if let Some(removed) = replica.state().removal_of(&member.replica)? {
        return Err(crate::error::Error::Member {
            name: name_or_id.to_string(),
            why: format!(
                "it was removed already, {}",
                removal_text(replica, &removed)?
            ),
        });
    }
    refuse_while_restoring(replica, "removing a member")?;
    Ok(member)
}

/// What `rmreplica` did.
#[derive(Debug, Clone)]
pub struct Removal {
    pub member: crate::store::state::Member,
    /// The epoch of this replica's operation that records the removal.
    pub epoch: u64,
}

/// Removes the member `name_or_id` from the family for good (`rmreplica`):
/// logs a sealed `RemoveMember` operation of this replica's, which every
/// export then carries to the siblings, and applies it here, in one
/// transaction. From then on this replica accepts no packet that member
/// signs ([`check_removed`]), refuses it as an export target, and no
/// longer waits for its confirmations. The caller holds the lock.
///
/// Errors: an unknown member ([`Error::UnknownReplica`]), this replica
/// itself, or a member removed already ([`Error::Member`]).
pub fn remove_member(replica: &mut LockedReplica, name_or_id: &str) -> Result<Removal> {
    let member = check_removable(replica, name_or_id)?;
    let me = replica.identity.replica_id;
    let last = replica.state().epoch(&me, &me)?;
    let epoch = last + 1;
    let op = Operation {
        origin: me,
        epoch,
        recorded: crate::sys::clock::now(),
        change: crate::ops::Change::RemoveMember {
            replica: member.replica,
            name: member.name.clone(),
        },
    };
    let removed = state::Removed {
        replica: member.replica,
        name: member.name.clone(),
        by: me,
        by_epoch: epoch,
        at_ns: crate::sys::clock::now_ns(),
    };
    let secret = replica.signing_key()?.to_bytes();
    replica.state_mut().transaction(|tx| {
        state::append_operation(tx, &op)?;
        state::set_epoch(tx, &me, &me, epoch)?;
        state::seal_own_run(tx, &secret, &me, epoch, epoch)?;
        state::mark_removed(tx, &removed)?;
        Ok(())
    })?;
    Ok(Removal { member, epoch })
}

/// "by NAME's operation N on DATE", for messages about a removal.
pub fn removal_text(replica: &crate::replica::Replica, removed: &state::Removed) -> Result<String> {
    let by = replica
        .members()?
        .into_iter()
        .find(|m| m.replica == removed.by)
        .map_or_else(|| removed.by.to_hex(), |m| printable(&m.name).into_owned());
    Ok(format!(
        "by rmreplica at {by} (its change {}), applied here on {}",
        removed.by_epoch,
        crate::sys::clock::format_time_ns(removed.at_ns)
    ))
}

/// Refuses a packet signed by a removed member (`sender`, its signature
/// verified): nothing of it is applied, not even its epoch row.
pub fn check_removed(replica: &LockedReplica, sender: &Id) -> Result<Option<Refusal>> {
    let Some(removed) = replica.state().removal_of(sender)? else {
        return Ok(None);
    };
    Ok(Some(Refusal::Removed {
        replica: printable(&removed.name).into_owned(),
        how: removal_text(replica, &removed)?,
    }))
}

/// What a restore still waits for (see [`start_restore`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreWait {
    /// Siblings not heard from since the restore, by name.
    pub siblings: Vec<String>,
    /// This replica's own changes a sibling holds and it does not yet:
    /// the epochs `first..=last`.
    pub own_missing: Option<(u64, u64)>,
}

impl RestoreWait {
    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty() && self.own_missing.is_none()
    }
}

impl std::fmt::Display for RestoreWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.siblings.is_empty() {
            let names: Vec<String> = self.siblings.iter().map(|n| format!("\"{n}\"")).collect();
            parts.push(format!("a packet from {}", names.join(", ")));
        }
        if let Some((first, last)) = self.own_missing {
            let changes = match first == last {
                true => format!("change {first}"),
                false => format!("changes {first}-{last}"),
            };
            parts.push(format!(
                "its own {changes} that a sibling holds and it forgot"
            ));
        }
        if parts.is_empty() {
            // Everything arrived; the import or export that saw it last
            // ends the restore (see `finish_restore_if_done`).
            return f.write_str(
                "nothing more (every sibling waited for was heard from; the next syncreplica -import \
                 finishes the restore)",
            );
        }
        f.write_str(&parts.join(" and "))
    }
}

/// Marks this replica restored from a backup (`mkreplica -restore`): it
/// records nothing of its own until it has heard from each of `siblings`
/// (names or ids; every current member but itself when empty) and holds
/// again every change of its own that their rows say they hold, which
/// their next exports to it send. With no names, a member this replica
/// never received a packet from is left out (one that never sends, a
/// one-way link, would keep the restore waiting for ever): named in the
/// second value. The caller holds the lock. Returns what the restore
/// waits for.
pub fn start_restore(
    replica: &mut LockedReplica,
    siblings: &[String],
) -> Result<(RestoreWait, Vec<String>)> {
    let me = replica.identity.replica_id;
    let removed: Vec<Id> = replica
        .state()
        .removed_members()?
        .into_iter()
        .map(|r| r.replica)
        .collect();
    let mut ids = Vec::new();
    let mut never_heard = Vec::new();
    if siblings.is_empty() {
        for member in replica.members()? {
            if member.replica == me || removed.contains(&member.replica) {
                continue;
            }
            if replica.state().heard(&member.replica)?.is_none() {
                never_heard.push(printable(&member.name).into_owned());
                continue;
            }
            ids.push(member.replica);
        }
    }
    for name in siblings {
        let member = replica.member(name)?;
        if member.replica == me {
            return Err(crate::error::Error::Member {
                name: name.clone(),
                why: "that is this replica; name the siblings to wait for".into(),
            });
        }
        if !ids.contains(&member.replica) {
            ids.push(member.replica);
        }
    }
    let own = replica.state().epoch(&me, &me)?;
    // The copy states, during the restore, the least of its own that every
    // sibling waited for confirmed holding: each sibling takes it for a
    // restore and sends back everything above, which this replica compares
    // with its own (`set_aside_collisions`).
    let confirmed = replica.state().confirmed_table()?;
    let base = ids
        .iter()
        .map(|id| {
            confirmed
                .get(id)
                .and_then(|row| row.get(&me))
                .map_or(0, |c| c.epoch)
        })
        .min()
        .unwrap_or(own)
        .min(own);
    let now = crate::sys::clock::now_ns();
    replica.state_mut().transaction(|tx| {
        state::start_restore(tx, now, own, &ids)?;
        state::set_restore_base(tx, base)?;
        Ok(())
    })?;
    Ok((restore_wait(replica)?.unwrap_or_default(), never_heard))
}

/// The epoch of its own this replica states in its packets: during an
/// unfinished restore, the least of its own every sibling waited for
/// confirmed holding (so each sends back its copies of the rest); else
/// `own`.
pub fn stated_own_epoch(replica: &crate::replica::Replica, own: u64) -> Result<u64> {
    if restore_wait(replica)?.is_none() {
        return Ok(own);
    }
    Ok(replica.state().restore_base()?.unwrap_or(own).min(own))
}

/// During a restore, a sibling's copy of a change of this replica's own
/// (`epoch`) differs from the one this copy logged: the copy numbered a
/// change of its own like one made before the backup was restored. Its
/// own changes from `epoch` on are set aside (out of the log, their seals
/// cut; logged again, renumbered after every epoch any sibling has seen,
/// when the restore finishes), so the sibling's apply in their place.
/// Returns the range set aside.
pub fn set_aside_from(replica: &mut LockedReplica, epoch: u64) -> Result<(u64, u64)> {
    let me = replica.identity.replica_id;
    let top = replica.state().epoch(&me, &me)?;
    let secret = replica.signing_key()?.to_bytes();
    replica
        .state_mut()
        .transaction(|tx| Ok(state::set_aside_own(tx, &secret, &me, epoch, top)?))?;
    Ok((epoch, top))
}

/// What the end of a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreEnd {
    /// Changes of its own renumbered: (old epoch, new epoch).
    pub renumbered: Vec<(u64, u64)>,
    /// Changes of its own set aside and not logged again: their paths
    /// took a sibling's later change meanwhile (old epoch, path).
    pub superseded: Vec<(u64, Vec<u8>)>,
}

impl std::fmt::Display for RestoreEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.renumbered.is_empty() {
            let n = self.renumbered.len();
            let pairs: Vec<String> = self
                .renumbered
                .iter()
                .map(|(old, new)| format!("{old} is now {new}"))
                .collect();
            write!(
                f,
                "renumbered {n} change{} of its own numbered like one a sibling holds: {}",
                if n == 1 { "" } else { "s" },
                pairs.join(", ")
            )?;
        }
        for (old, path) in &self.superseded {
            write!(
                f,
                "{}its change {old} to \"{}\" was not kept: a sibling's later change of that path \
                 came back meanwhile",
                if self.renumbered.is_empty() { "" } else { "; " },
                String::from_utf8_lossy(path)
            )?;
        }
        Ok(())
    }
}

/// Logs again, renumbered after this replica's own epoch (by then the
/// highest any sibling has seen), the changes of its own the restore set
/// aside; the recorded versions of their paths follow. One transaction.
fn renumber_set_aside(replica: &mut LockedReplica) -> Result<RestoreEnd> {
    let set_aside = replica.state().set_aside()?;
    let mut end = RestoreEnd::default();
    if set_aside.is_empty() {
        return Ok(end);
    }
    let me = replica.identity.replica_id;
    let own = replica.state().epoch(&me, &me)?;
    let mut ops = Vec::new();
    // Per path, the version the last change set aside left there.
    let mut last: std::collections::HashMap<Vec<u8>, crate::ops::VersionVector> =
        std::collections::HashMap::new();
    for (old, bytes) in &set_aside {
        let op = Operation::decode(bytes).map_err(|e| crate::error::Error::CorruptState {
            path: replica.state().path().to_path_buf(),
            what: format!("a change set aside by the restore does not decode: {e}"),
        })?;
        if let Some((path, version)) = path_version(&op.change) {
            last.insert(path.to_vec(), version.clone());
        }
        ops.push((*old, op));
    }
    // A path whose recorded version is no longer the one the changes set
    // aside left there took a sibling's change since: logging them again
    // would make the siblings' trees differ from this one.
    let mut superseded = std::collections::HashSet::new();
    for (path, version) in &last {
        if replica.state().entry_version(path)?.as_ref() != Some(version) {
            superseded.insert(path.clone());
        }
    }
    let secret = replica.signing_key()?.to_bytes();
    replica.state_mut().transaction(|tx| {
        let mut epoch = own;
        for (old, mut op) in ops {
            let new = epoch + 1;
            if let crate::ops::Change::Path { path, version, .. }
            | crate::ops::Change::Resolve { path, version, .. } = &mut op.change
            {
                if superseded.contains(path.as_slice()) {
                    end.superseded.push((old, path.clone()));
                    continue;
                }
                let before = version.clone();
                if version.get(&me) == old {
                    version.set(me, new);
                }
                // Only the last change of a path left its version there.
                state::renumber_entry_version(tx, path, &before, version)?;
            }
            op.epoch = new;
            state::append_operation(tx, &op)?;
            end.renumbered.push((old, new));
            epoch = new;
        }
        if epoch > own {
            state::set_epoch(tx, &me, &me, epoch)?;
            state::seal_own_run(tx, &secret, &me, own + 1, epoch)?;
        }
        state::clear_set_aside(tx)?;
        Ok(())
    })?;
    Ok(end)
}

fn path_version(change: &crate::ops::Change) -> Option<(&[u8], &crate::ops::VersionVector)> {
    match change {
        crate::ops::Change::Path { path, version, .. }
        | crate::ops::Change::Resolve { path, version, .. } => Some((path, version)),
        _ => None,
    }
}

/// What an unfinished restore waits for; `None` when there is none.
pub fn restore_wait(replica: &crate::replica::Replica) -> Result<Option<RestoreWait>> {
    let Some(status) = replica.state().restore_status()? else {
        return Ok(None);
    };
    if status.finished_ns.is_some() {
        return Ok(None);
    }
    let me = replica.identity.replica_id;
    let members = replica.members()?;
    let removed = replica.state().removed_members()?;
    let siblings = status
        .siblings
        .iter()
        .filter(|(id, heard)| heard.is_none() && !removed.iter().any(|r| r.replica == *id))
        .map(|(id, _)| {
            members
                .iter()
                .find(|m| m.replica == *id)
                .map_or_else(|| id.to_hex(), |m| printable(&m.name).into_owned())
        })
        .collect();
    let own = replica.state().epoch(&me, &me)?;
    let own_missing = (status.highest_seen > own).then_some((own + 1, status.highest_seen));
    Ok(Some(RestoreWait {
        siblings,
        own_missing,
    }))
}

/// Ends an unfinished restore that waits for nothing more, logging again
/// (renumbered) the changes of its own it set aside. Returns what it did
/// when it ended now.
pub fn finish_restore_if_done(replica: &mut LockedReplica) -> Result<Option<RestoreEnd>> {
    match restore_wait(replica)? {
        Some(wait) if wait.is_empty() => {
            let end = renumber_set_aside(replica)?;
            let now = crate::sys::clock::now_ns();
            replica
                .state_mut()
                .transaction(|tx| Ok(state::finish_restore(tx, now)?))?;
            Ok(Some(end))
        }
        _ => Ok(None),
    }
}

/// Refuses `what` (something that would log a change of this replica's
/// own) while a restore is unfinished: it would be numbered like a change
/// a sibling may hold.
pub fn refuse_while_restoring(replica: &crate::replica::Replica, what: &str) -> Result<()> {
    match restore_wait(replica)? {
        Some(wait) => Err(crate::error::Error::Restoring {
            what: what.to_string(),
            waits: wait.to_string(),
        }),
        None => Ok(()),
    }
}

/// A sender restored from a backup: its row (per origin this replica
/// knows), the epoch of its own it states, and the one it had confirmed.
type Restored = (Vec<(Id, u64)>, u64, u64);

/// What a verified packet of a current member says about its sender and
/// about this replica's restore, assessed before the packet is applied
/// ([`assess_member_packet`]) and taken only once the packet is accepted
/// ([`take_member_note`]): nothing of a refused packet is taken.
#[derive(Debug, Clone)]
pub struct MemberNote {
    sender: Id,
    created: i64,
    version: packet_format::FormatVersion,
    /// Whether this packet is the sender's newest seen (it then says
    /// which format the sender writes now).
    newest: bool,
    /// The sender was restored from a backup: its row, per origin this
    /// replica knows, to lower the estimate of it to; with the epochs of
    /// its own it states and had confirmed before.
    restored: Option<Restored>,
    /// During this replica's restore: what the sender holds of its own.
    restoring_holds: Option<u64>,
}

/// Assesses a verified packet of a current member (`header`), before it is
/// applied, reading only: during this replica's restore, what the sender
/// holds of this replica's own changes; and whether the sender itself was
/// restored from a backup (a packet it made later than any seen before,
/// whose row holds less of its own changes than it confirmed): then this
/// replica's estimate of it falls to that row, so the next export sends it
/// what it forgot. `None` for a packet that does not speak for its sender.
pub fn assess_member_packet(
    replica: &crate::replica::Replica,
    header: &Header,
) -> Result<Option<MemberNote>> {
    let me = replica.identity.replica_id;
    let sender = header.sender.id;
    // Only what the sender signed itself speaks for it: a packet naming
    // another member as its sender is refused later (impersonation), and
    // must not lower that member's estimates or set its format first.
    if crate::sync::keys::KeyBook::load(replica.state())?
        .owner(&header.signer_key)
        .is_none_or(|o| o.member != sender)
    {
        return Ok(None);
    }
    let created = header.created.as_nanos_saturating();
    let previous = replica.state().sender_clock(&sender)?;
    let confirmed = replica
        .state()
        .confirmed_table()?
        .get(&sender)
        .and_then(|row| row.get(&sender))
        .map_or(0, |c| c.epoch);
    let stated = header.epoch_row.get(&sender).copied().unwrap_or(0);
    let restored = previous.is_some_and(|p| created > p) && stated < confirmed;
    let restored = match restored {
        // Every origin this replica knows: one the sender's row lacks, it
        // holds nothing of.
        true => Some((
            replica
                .state()
                .epoch_row(&me)?
                .keys()
                .map(|origin| (*origin, header.epoch_row.get(origin).copied().unwrap_or(0)))
                .collect(),
            stated,
            confirmed,
        )),
        false => None,
    };
    let restoring_holds = match restore_wait(replica)?.is_some() {
        true => Some(header.epoch_row.get(&me).copied().unwrap_or(0)),
        false => None,
    };
    Ok(Some(MemberNote {
        sender,
        created,
        version: header.version,
        // The newest packet says which format the sender writes now (a
        // late old one must not take it back).
        newest: previous.is_none_or(|p| created >= p),
        restored,
        restoring_holds,
    }))
}

/// Refuses a packet signed with a key its sender replaced at epoch E
/// (`mkreplica -rekey`) that is not one written before the rotation
/// (SPEC.md §7.1, "in flight"): one that would be taken as its sender
/// restored from a backup ([`assess_member_packet`]: made later than any
/// packet of the sender seen here, its row holding fewer of its own
/// changes than the sender confirmed). A genuine packet in flight was
/// made before the sender's later packets, and a real restore after the
/// rotation signs with the new key; such a packet comes from a copy of
/// the sender from before the rotation (a stolen disk or backup), and
/// taking it would lower this replica's estimate of the sender and send
/// the sender's own changes back to that copy.
pub fn check_retired_restore(
    replica: &crate::replica::Replica,
    header: &Header,
) -> Result<Option<Refusal>> {
    let book = crate::sync::keys::KeyBook::load(replica.state())?;
    let seen = SenderSeen::of(replica, &header.sender.id)?;
    Ok(retired_restore(&book, &seen, header))
}

/// What this replica has seen of a sender, as [`retired_restore`] judges
/// a packet of it by: the creation time (ns) of the newest packet of it
/// taken here, and its own epoch it confirmed holding.
#[derive(Debug, Clone, Copy, Default)]
pub struct SenderSeen {
    pub newest_ns: Option<i64>,
    pub confirmed: u64,
}

impl SenderSeen {
    /// What `replica` has seen of `sender`.
    pub fn of(replica: &crate::replica::Replica, sender: &Id) -> Result<SenderSeen> {
        let confirmed = replica
            .state()
            .confirmed_table()?
            .get(sender)
            .and_then(|row| row.get(sender))
            .map_or(0, |c| c.epoch);
        Ok(SenderSeen {
            newest_ns: replica.state().sender_clock(sender)?,
            confirmed,
        })
    }
}

/// The key rules -import applies to a packet signed by its sender's key,
/// current or replaced (SPEC.md §7.1), as one: the replaced key's epochs
/// ([`crate::sync::keys::check_signer_epochs`]) and the stale copy
/// ([`retired_restore`]). `lspacket` judges by this too, so that it
/// lists as refused exactly what -import refuses, in the same words.
pub fn key_rule_refusal(
    book: &crate::sync::keys::KeyBook,
    seen: &SenderSeen,
    header: &Header,
) -> Option<Refusal> {
    let name = printable(&header.sender.name);
    crate::sync::keys::check_signer_epochs(book, header, &name)
        .err()
        .or_else(|| retired_restore(book, seen, header))
}

/// [`check_retired_restore`] on what was loaded: `book` the keys, `seen`
/// what this replica has seen of the packet's sender.
pub fn retired_restore(
    book: &crate::sync::keys::KeyBook,
    seen: &SenderSeen,
    header: &Header,
) -> Option<Refusal> {
    let sender = header.sender.id;
    let through = book
        .owner(&header.signer_key)
        .filter(|o| o.member == sender)
        .and_then(|o| o.through)?;
    let confirmed = seen.confirmed;
    let stated = header.epoch_row.get(&sender).copied().unwrap_or(0);
    let created = header.created.as_nanos_saturating();
    if !(seen.newest_ns.is_some_and(|p| created > p) && stated < confirmed) {
        return None;
    }
    Some(crate::sync::keys::retired(
        &printable(&header.sender.name),
        through,
        format!(
            "the packet, made later than every packet of it seen here, says it holds its own \
             changes up to {stated} only, not {confirmed} as it confirmed: it comes from a copy \
             of it from before the rotation (a stolen disk or an old backup), not from a packet \
             in flight; a replica restored from a backup older than its rotation must be made \
             again (mkreplica -export at a sibling)"
        ),
    ))
}

/// Takes what [`assess_member_packet`] found, once its packet is accepted
/// (applied, acknowledged, or waiting for earlier changes), in one
/// transaction. A restored sender's clone alarms are cleared: the restore
/// explains the change it numbered like one this replica holds (its
/// restore renumbers it). Returns a note for the user when the sender was
/// restored.
pub fn take_member_note(replica: &mut LockedReplica, note: &MemberNote) -> Result<Option<String>> {
    let now = crate::sys::clock::now_ns();
    let sender = note.sender;
    let alarms = match note.restored {
        Some(_) => replica
            .state()
            .clone_alarms()?
            .into_iter()
            .filter(|a| a.replica == sender)
            .count(),
        None => 0,
    };
    // Rows about the sender only, never an entry.
    replica.state_mut_keeping_entries().transaction(|tx| {
        if note.newest {
            state::note_member_version(tx, &sender, note.version, now)?;
        }
        state::note_sender_clock(tx, &sender, note.created)?;
        if let Some((row, _, _)) = &note.restored {
            state::lower_row(tx, &sender, row)?;
            if alarms > 0 {
                state::clear_clone_alarms(tx, &sender)?;
            }
        }
        if let Some(holds) = note.restoring_holds {
            state::note_restore_heard(tx, &sender, holds, now)?;
        }
        Ok(())
    })?;
    let Some((_, stated, confirmed)) = &note.restored else {
        return Ok(None);
    };
    let name = replica
        .members()?
        .into_iter()
        .find(|m| m.replica == sender)
        .map_or_else(|| sender.to_hex(), |m| printable(&m.name).into_owned());
    let cleared = match alarms {
        0 => String::new(),
        _ => "; its clone alarm is cleared (the restore renumbers the change of its own it had \
              numbered like one this replica holds)"
            .to_string(),
    };
    Ok(Some(format!(
        "\"{name}\" was restored from a backup: it holds its own changes up to {stated}, not {confirmed} \
         as it said before; the next export to it sends what it forgot{cleared}"
    )))
}

/// The first minor of packet format 2 whose readers know `RemoveMember`
/// (operation kind 5): 2.2, the version that brought it with the tree
/// digest. An older reader refuses it by name (NeedsNewer).
pub const MINOR_WITH_REMOVE_MEMBER: u16 = 2;

/// Whether `target` reads chunk groups (packet format 2.8, SPEC.md
/// §5.2): yes unless the packets it sent show an older minor of major 2.
/// A member never heard from is assumed to read what this program writes.
pub fn reads_chunk_groups(
    replica: &crate::replica::Replica,
    target: &crate::store::state::Member,
) -> Result<bool> {
    Ok(match replica.state().member_version(&target.replica)? {
        None => true,
        Some(seen) => {
            seen.version.major != packet_format::FORMAT_MAJOR
                || seen.version.minor >= packet_format::MINOR_WITH_CHUNK_GROUPS
        }
    })
}

/// The lowest packet format (major 2) whose readers can apply `change`.
pub fn minor_needed(change: &crate::ops::Change) -> u16 {
    use crate::ops::Change;
    match change {
        // The replica root (the empty path): readers before 2.10 refuse it.
        Change::Path { path, .. } | Change::Resolve { path, .. } if path.is_empty() => {
            packet_format::MINOR_WITH_ROOT_METADATA
        }
        Change::Path { .. } | Change::AddMember { .. } | Change::Resolve { .. } => 0,
        Change::RemoveMember { .. } => MINOR_WITH_REMOVE_MEMBER,
        Change::RekeyMember { .. } => packet_format::MINOR_WITH_REKEY,
        // Relayed unread by any reader.
        Change::Unknown { .. } if change.is_informational() => 0,
        Change::Unknown { .. } => packet_format::FORMAT_MINOR,
    }
}

/// Refuses an export to `target` of `ops` that the packet format its
/// packets show it reads cannot carry: an older major (it can read no
/// packet this program writes), or an operation kind that came after its
/// minor. A member never heard from is assumed to read what this program
/// writes (nothing better is known: a one-way link). Errors with
/// [`crate::error::Error::NeedsUpgrade`].
pub fn check_target_version(
    replica: &crate::replica::Replica,
    target: &crate::store::state::Member,
    ops: &[Operation],
) -> Result<()> {
    let Some(seen) = replica.state().member_version(&target.replica)? else {
        return Ok(());
    };
    let has = seen.version;
    let writes = packet_format::FormatVersion {
        major: packet_format::FORMAT_MAJOR,
        minor: packet_format::FORMAT_MINOR,
    };
    let refuse = |needs: packet_format::FormatVersion, what: String| {
        Err(crate::error::Error::NeedsUpgrade {
            member: printable(&target.name).into_owned(),
            has: has.to_string(),
            needs: needs.to_string(),
            what,
        })
    };
    if has.major < writes.major {
        return refuse(
            writes,
            format!("this syncreplica writes packet format {writes}"),
        );
    }
    if has.major > writes.major {
        // Its packets would not have been read here: nothing to check.
        return Ok(());
    }
    if let Some(op) = ops.iter().find(|op| minor_needed(&op.change) > has.minor) {
        let needs = packet_format::FormatVersion {
            major: writes.major,
            minor: minor_needed(&op.change),
        };
        let what = match &op.change {
            crate::ops::Change::RemoveMember { name, .. } => {
                format!(
                    "the packet carries the removal of \"{}\" (rmreplica)",
                    printable(name)
                )
            }
            crate::ops::Change::RekeyMember { .. } => {
                "the packet carries a member's key rotation (mkreplica -rekey)".into()
            }
            crate::ops::Change::Path { path, .. } | crate::ops::Change::Resolve { path, .. }
                if path.is_empty() =>
            {
                "the packet carries the replica root's own metadata (owner, mode, mtime)".into()
            }
            _ => "the packet carries an operation kind its format predates".into(),
        };
        return refuse(needs, what);
    }
    Ok(())
}
