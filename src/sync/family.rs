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
    let Some(member) = replica
        .members()?
        .into_iter()
        .find(|m| m.replica == sender && m.public_key == header.signer_key)
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
            let what = format!(
                "this packet comes from a copy of it (incarnation {incarnation}) other than the one \
                 this replica has accepted packets from since {} (incarnation {}, first seen in {}); \
                 both copies were made from {origin}",
                crate::sys::clock::format_time_ns(known.at_ns),
                known.incarnation,
                printable(&known.packet)
            );
            raise(replica, &sender, &member.name, packet, what).map(Some)
        }
    }
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
        let stored = replica
            .state()
            .operation_bytes(&op.origin, op.epoch, op.epoch)?;
        let Some(stored) = stored.first() else {
            continue;
        };
        if *stored != op.encode() {
            let name = replica
                .members()?
                .into_iter()
                .find(|m| m.replica == op.origin)
                .map_or_else(|| op.origin.to_hex(), |m| m.name);
            let origin = creation_origin(replica, &op.origin)?;
            let what = format!(
                "the packet carries its change number {} and this replica has a different change \
                 with that number: two copies of it, made from {origin}, number their changes independently",
                op.epoch
            );
            return raise(replica, &op.origin, &name, packet, what).map(Some);
        }
    }
    Ok(None)
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
/// itself, or a member removed already ([`Error::BadName`]).
pub fn remove_member(replica: &mut LockedReplica, name_or_id: &str) -> Result<Removal> {
    let member = replica.member(name_or_id)?;
    let me = replica.identity.replica_id;
    if member.replica == me {
        return Err(crate::error::Error::BadName {
            name: name_or_id.to_string(),
            why: "that is this replica; a replica cannot remove itself: run rmreplica at a sibling"
                .into(),
        });
    }
    if let Some(removed) = replica.state().removal_of(&member.replica)? {
        return Err(crate::error::Error::BadName {
            name: name_or_id.to_string(),
            why: format!("it was removed already, {}", removal_text(replica, &removed)?),
        });
    }
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
pub fn removal_text(
    replica: &crate::replica::Replica,
    removed: &state::Removed,
) -> Result<String> {
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
