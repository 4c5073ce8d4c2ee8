//! Origin authentication (packet SPEC.md §7): which seals an export
//! carries, and the check an import makes that every operation it takes
//! was signed by its origin, whoever relayed it.
//!
//! Rules (written here once, applied by export, import and replica
//! creation):
//! 1. Every operation a replica logs of its own is sealed in the same
//!    transaction (`store::state::seal_own_run`).
//! 2. An export carries, for each origin, the seals of every run its
//!    operations belong to; a run it carries only up to some epoch gets a
//!    tail there, computed from the exporter's log.
//! 3. An import takes an operation only when a seal of its origin covers
//!    it and verifies with the origin's key over the run's operations: the
//!    ones this replica already logged (trusted, exactly as logged) and
//!    the packet's. Keys come from the members, and from the `AddMember`
//!    operations of runs already verified in the same packet (a new
//!    member's first operations can travel with its introduction).

use std::collections::{BTreeMap, HashMap};

use packet_format::seals::{chain, link, Seal, SealTail};
use packet_format::EpochRange;

use crate::error::{Error, Refusal, Result};
use crate::ops::{Change, Id, Operation};
use crate::store::state::State;
use crate::sync::keys::KeyBook;

/// The seals an export of `ranges` (per origin, the epochs it carries)
/// must carry, from the exporter's store, with tails where a range stops
/// inside a run. Fails when an operation has no seal ([`Error::CorruptState`]:
/// rule 1 makes that impossible for a healthy replica).
pub fn for_export(state: &State, ranges: &BTreeMap<Id, EpochRange>) -> Result<Vec<Seal>> {
    let mut out = Vec::new();
    for (origin, range) in ranges {
        let seals = state.seals_meeting(origin, range.first, range.last)?;
        let mut covered = range.first - 1;
        for mut seal in seals {
            if seal.first > covered + 1 {
                break;
            }
            if seal.carried_last() > range.last {
                // Cut short: the link after the range, from the log.
                let rest = state.operation_bytes(origin, range.last + 1, seal.carried_last())?;
                let link = chain(rest.iter().map(Vec::as_slice), seal.after_carried());
                seal.tail = Some(SealTail {
                    epoch: range.last + 1,
                    link,
                });
            }
            covered = covered.max(seal.carried_last());
            out.push(seal);
        }
        if covered < range.last {
            return Err(Error::CorruptState {
                path: state.path().to_path_buf(),
                what: format!(
                    "operations {}-{} of {origin} have no origin seal",
                    covered + 1,
                    range.last
                ),
            });
        }
    }
    Ok(out)
}

/// `origin` as this replica names it (its member name, printable), or
/// its id.
fn name_of(state: Option<&State>, origin: &Id) -> String {
    state
        .and_then(|s| s.members().ok())
        .and_then(|members| members.into_iter().find(|m| m.replica == *origin))
        .map_or_else(
            || origin.to_string(),
            |m| crate::error::printable(&m.name).into_owned(),
        )
}

fn unsealed(what: String) -> Error {
    Error::Refused(Refusal::Unsealed { what })
}

/// A visitor of operations (origin, epoch, encoding).
pub type OpVisitor<'a> = dyn FnMut(Id, u64, &[u8]) -> Result<()> + 'a;

/// The operations a packet brings, as [`verify_incoming`] reads them: a
/// slice (a creation packet's) or an import's batch, kept on disk
/// ([`crate::sync::apply::batch::OpBatch`]) and read one at a time.
pub trait Incoming {
    /// Calls `f` with each operation brought (origin, epoch, encoding),
    /// each epoch of an origin once, each origin's from its highest epoch
    /// down (origins may interleave).
    fn backwards(&self, f: &mut OpVisitor) -> Result<()>;
    /// The `AddMember` operations brought: (origin, epoch, member, key).
    fn added_members(&self) -> Vec<(Id, u64, Id, [u8; 32])>;
    /// The `RekeyMember` operations brought.
    fn rekeyed(&self) -> Vec<Rekeyed>;
}

/// A `RekeyMember` operation: (origin, epoch, member, old key, new key).
pub type Rekeyed = (Id, u64, Id, [u8; 32], [u8; 32]);

impl Incoming for [Operation] {
    fn backwards(&self, f: &mut OpVisitor) -> Result<()> {
        let mut ops: BTreeMap<(Id, u64), &Operation> = BTreeMap::new();
        for op in self {
            ops.entry((op.origin, op.epoch)).or_insert(op);
        }
        for ((origin, epoch), op) in ops.iter().rev() {
            f(*origin, *epoch, &op.encode())?;
        }
        Ok(())
    }

    fn added_members(&self) -> Vec<(Id, u64, Id, [u8; 32])> {
        self.iter()
            .filter_map(|op| match &op.change {
                Change::AddMember {
                    replica,
                    public_key,
                    ..
                } => Some((op.origin, op.epoch, *replica, *public_key)),
                _ => None,
            })
            .collect()
    }

    fn rekeyed(&self) -> Vec<Rekeyed> {
        self.iter()
            .filter_map(|op| match &op.change {
                Change::RekeyMember {
                    replica,
                    old_key,
                    new_key,
                    ..
                } => Some((op.origin, op.epoch, *replica, *old_key, *new_key)),
                _ => None,
            })
            .collect()
    }
}

/// A seal being checked: the head of its carried run so far, folded in
/// from the end, and the next epoch (down) the packet must bring.
struct Folding {
    head: [u8; 32],
    /// The packet brings `from_packet..=carried_last`.
    from_packet: u64,
    expected: u64,
    missing: Option<u64>,
    /// Whether the packet brings any operation it covers.
    touched: bool,
}

/// Checks that every operation of `incoming` (the operations a packet
/// brings that this replica lacks, per origin in epoch order) is covered
/// by a verified seal of `seals` (rule 3). `held` is this replica's own
/// row (what it logged of each origin), `keys` the members' keys over
/// time: a seal verifies with the key its origin had for the run's
/// epochs (SPEC.md §7.1), and a run may not reach past a rotation.
/// Returns the seals to keep (those covering an operation brought).
///
/// Holds no operation: one pass over them, from the last back, folds each
/// into the head of every seal covering it (seals of an origin swept by
/// their carried range); what this replica logged of a run is folded in
/// after, also one at a time.
pub fn verify_incoming(
    state: Option<&State>,
    seals: &[Seal],
    incoming: &(impl Incoming + ?Sized),
    held: &HashMap<Id, u64>,
    keys: &KeyBook,
) -> Result<Vec<Seal>> {
    let mut keys = keys.clone();
    let mut folding: Vec<Folding> = seals
        .iter()
        .map(|seal| {
            let have = held.get(&seal.origin).copied().unwrap_or(0);
            let from_packet = have.max(seal.first.saturating_sub(1)) + 1;
            Folding {
                head: seal.after_carried(),
                from_packet,
                expected: seal.carried_last(),
                missing: None,
                touched: false,
            }
        })
        .collect();
    // Per origin, its seals by carried end, highest first, and how many of
    // them the sweep has reached; the ones reached whose start it has not
    // passed are active.
    let mut by_origin: HashMap<Id, (Vec<usize>, usize, Vec<usize>)> = HashMap::new();
    for (index, seal) in seals.iter().enumerate() {
        by_origin.entry(seal.origin).or_default().0.push(index);
    }
    for (order, _, _) in by_origin.values_mut() {
        order.sort_by_key(|&i| std::cmp::Reverse(seals[i].carried_last()));
    }
    incoming.backwards(&mut |origin, epoch, bytes| {
        let Some((order, reached, active)) = by_origin.get_mut(&origin) else {
            return Err(unsealed(format!(
                "operation {epoch} of {origin} carries no seal of its origin"
            )));
        };
        while *reached < order.len() && seals[order[*reached]].carried_last() >= epoch {
            active.push(order[*reached]);
            *reached += 1;
        }
        active.retain(|&i| epoch >= seals[i].first);
        if active.is_empty() {
            return Err(unsealed(format!(
                "operation {epoch} of {origin} carries no seal of its origin"
            )));
        }
        for &i in active.iter() {
            let fold = &mut folding[i];
            fold.touched = true;
            if epoch < fold.from_packet {
                // Logged here already: folded in from the log.
                continue;
            }
            if epoch != fold.expected {
                fold.missing.get_or_insert(fold.expected);
            }
            fold.expected = epoch.saturating_sub(1);
            fold.head = link(&fold.head, bytes);
        }
        Ok(())
    })?;
    let mut pending: Vec<usize> = Vec::new();
    for (index, seal) in seals.iter().enumerate() {
        let fold = &mut folding[index];
        if !fold.touched {
            continue;
        }
        if fold.expected >= fold.from_packet && fold.from_packet <= seal.carried_last() {
            fold.missing.get_or_insert(fold.expected);
        }
        if let Some(epoch) = fold.missing {
            return Err(unsealed(format!(
                "the seal of {}-{} of {} needs operation {epoch}, which neither this \
                 replica nor the packet holds",
                seal.first,
                seal.carried_last(),
                seal.origin
            )));
        }
        let have = held.get(&seal.origin).copied().unwrap_or(0);
        if seal.first <= have {
            let state = state.expect("a replica that holds operations has a state");
            let last = have.min(seal.carried_last());
            let head = &mut fold.head;
            let count =
                state.fold_operations_backwards(&seal.origin, seal.first, last, |bytes| {
                    *head = link(head, bytes);
                })?;
            if count != last - seal.first + 1 {
                return Err(unsealed(format!(
                    "operations {}-{} of {} are not all at hand to check their seal",
                    seal.first,
                    seal.carried_last(),
                    seal.origin
                )));
            }
        }
        pending.push(index);
    }
    let added = incoming.added_members();
    // Rotations brought, not yet taken: a seal of its origin after one
    // waits until the seal covering it has verified (its new key).
    let mut rotations = incoming.rekeyed();
    let mut verified = Vec::new();
    // Verify what can be, learn the keys its AddMember and RekeyMember
    // operations bring, and go on until nothing more verifies.
    while !pending.is_empty() {
        let before = pending.len();
        let mut left = Vec::new();
        for index in pending {
            let seal = &seals[index];
            let waits = rotations
                .iter()
                .any(|(origin, epoch, ..)| *origin == seal.origin && *epoch < seal.first);
            let key = keys.key_for(&seal.origin, seal.first);
            let Some(key) = key.filter(|_| !waits) else {
                left.push(index);
                continue;
            };
            if let Some(epoch) = keys.rotation_within(&seal.origin, seal.first, seal.carried_last())
            {
                return Err(Error::Refused(crate::sync::keys::retired(
                    &name_of(state, &seal.origin),
                    epoch,
                    format!(
                        "one seal covers its {}, across the rotation",
                        crate::sync::keys::changes(seal.first, seal.carried_last())
                    ),
                )));
            }
            if !seal.verify(&key, &folding[index].head) {
                // Made with a key the origin replaced before these epochs?
                if let Some(epoch) = keys.retired_key_verifying(&seal.origin, seal.first, |old| {
                    seal.verify(old, &folding[index].head)
                }) {
                    return Err(Error::Refused(crate::sync::keys::retired(
                        &name_of(state, &seal.origin),
                        epoch,
                        format!(
                            "that key seals its {} (whoever relayed them)",
                            crate::sync::keys::changes(seal.first, seal.carried_last())
                        ),
                    )));
                }
                return Err(unsealed(format!(
                    "the seal of operations {}-{} of {} does not verify: they were not \
                     written as they are by that replica",
                    seal.first,
                    seal.carried_last(),
                    seal.origin
                )));
            }
            for (origin, epoch, replica, public_key) in &added {
                if *origin == seal.origin && (seal.first..=seal.carried_last()).contains(epoch) {
                    keys.add_member(*replica, *public_key);
                }
            }
            let mut taken = Vec::new();
            for (position, (origin, epoch, replica, old, new)) in rotations.iter().enumerate() {
                if *origin == seal.origin && (seal.first..=seal.carried_last()).contains(epoch) {
                    if replica != origin || seal.first != *epoch || seal.carried_last() != *epoch {
                        return Err(unsealed(format!(
                            "operation {epoch} of {origin} rotates the keys of {replica} in a run \
                             of its origin's other than its own (only a member rekeys itself, in a \
                             run of one operation)"
                        )));
                    }
                    keys.rotate(*origin, *epoch, *old, *new)
                        .map_err(|why| unsealed(format!("{origin} makes {why}")))?;
                    taken.push(position);
                }
            }
            for position in taken.into_iter().rev() {
                rotations.remove(position);
            }
            verified.push(*seal);
        }
        if left.len() == before {
            let seal = &seals[left[0]];
            return Err(unsealed(format!(
                "operations of {} are sealed by a replica that is not a member",
                seal.origin
            )));
        }
        pending = left;
    }
    Ok(verified)
}
