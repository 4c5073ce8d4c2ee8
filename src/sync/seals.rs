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
                    "operations {}..={} of {origin} have no origin seal",
                    covered + 1,
                    range.last
                ),
            });
        }
    }
    Ok(out)
}

fn unsealed(what: String) -> Error {
    Error::Refused(Refusal::Unsealed { what })
}

/// The operations a packet brings, as [`verify_incoming`] reads them: a
/// slice (a creation packet's) or an import's batch, kept on disk
/// ([`crate::sync::apply::batch::OpBatch`]) and read one at a time.
pub trait Incoming {
    /// Calls `f` with each (origin, epoch) brought, by origin, then epoch.
    fn each_epoch(&self, f: &mut dyn FnMut(Id, u64) -> Result<()>) -> Result<()>;
    /// Calls `f` with the encodings of `origin`'s operations
    /// `first..=last` brought, from the last back; returns how many.
    fn backwards(
        &self,
        origin: &Id,
        first: u64,
        last: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<u64>;
    /// The `AddMember` operations brought: (origin, epoch, member, key).
    fn added_members(&self) -> Vec<(Id, u64, Id, [u8; 32])>;
}

impl Incoming for [Operation] {
    fn each_epoch(&self, f: &mut dyn FnMut(Id, u64) -> Result<()>) -> Result<()> {
        let mut keys: Vec<(Id, u64)> = self.iter().map(|op| (op.origin, op.epoch)).collect();
        keys.sort_unstable();
        keys.dedup();
        for (origin, epoch) in keys {
            f(origin, epoch)?;
        }
        Ok(())
    }

    fn backwards(
        &self,
        origin: &Id,
        first: u64,
        last: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<u64> {
        let mut run: BTreeMap<u64, &Operation> = BTreeMap::new();
        for op in self {
            if op.origin == *origin && (first..=last).contains(&op.epoch) {
                run.entry(op.epoch).or_insert(op);
            }
        }
        for (epoch, op) in run.iter().rev() {
            f(*epoch, &op.encode())?;
        }
        Ok(run.len() as u64)
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
}

/// Checks that every operation of `incoming` (the operations a packet
/// brings that this replica lacks, per origin in epoch order) is covered
/// by a verified seal of `seals` (rule 3). `held` is this replica's own
/// row (what it logged of each origin), `keys` the members' keys. Returns
/// the seals to keep. Holds no operation: each run is chained from its
/// end, one operation at a time.
pub fn verify_incoming(
    state: Option<&State>,
    seals: &[Seal],
    incoming: &(impl Incoming + ?Sized),
    held: &HashMap<Id, u64>,
    keys: &HashMap<Id, [u8; 32]>,
) -> Result<Vec<Seal>> {
    let mut keys = keys.clone();
    // Each incoming operation, the seal that covers it (by index); runs
    // are long, so the last seal found is tried first.
    let mut pending: Vec<(usize, &Seal)> = Vec::new();
    let mut last_found: Option<usize> = None;
    incoming.each_epoch(&mut |origin, epoch| {
        let covers = |seal: &Seal| {
            seal.origin == origin && seal.first <= epoch && epoch <= seal.carried_last()
        };
        let found = match last_found.filter(|&i| covers(&seals[i])) {
            Some(found) => found,
            None => {
                let Some(found) = seals.iter().position(covers) else {
                    return Err(unsealed(format!(
                        "operation {epoch} of {origin} carries no seal of its origin"
                    )));
                };
                found
            }
        };
        last_found = Some(found);
        if !pending.iter().any(|(index, _)| *index == found) {
            pending.push((found, &seals[found]));
        }
        Ok(())
    })?;
    let added = incoming.added_members();
    let mut verified = Vec::new();
    // Verify what can be, learn the keys its AddMember operations bring,
    // and go on until nothing more verifies.
    while !pending.is_empty() {
        let before = pending.len();
        let mut left = Vec::new();
        for (index, seal) in pending {
            let Some(key) = keys.get(&seal.origin).copied() else {
                left.push((index, seal));
                continue;
            };
            let head = run_head(state, seal, incoming, held)?;
            if !seal.verify(&key, &head) {
                return Err(unsealed(format!(
                    "the seal of operations {}..={} of {} does not verify: they were not \
                     written as they are by that replica",
                    seal.first,
                    seal.carried_last(),
                    seal.origin
                )));
            }
            for (origin, epoch, replica, public_key) in &added {
                if *origin == seal.origin && (seal.first..=seal.carried_last()).contains(epoch) {
                    keys.entry(*replica).or_insert(*public_key);
                }
            }
            verified.push(*seal);
        }
        if left.len() == before {
            let (_, seal) = left[0];
            return Err(unsealed(format!(
                "operations of {} are sealed by a replica that is not a member",
                seal.origin
            )));
        }
        pending = left;
    }
    Ok(verified)
}

/// The head of a seal's carried run ([`chain`] from its link after the
/// carried part): the packet's operations, then what this replica logged,
/// each folded in from the end back, one at a time.
fn run_head(
    state: Option<&State>,
    seal: &Seal,
    incoming: &(impl Incoming + ?Sized),
    held: &HashMap<Id, u64>,
) -> Result<[u8; 32]> {
    let have = held.get(&seal.origin).copied().unwrap_or(0);
    let from_packet = have.max(seal.first - 1) + 1;
    let mut head = seal.after_carried();
    if from_packet <= seal.carried_last() {
        let mut expected = seal.carried_last();
        let mut missing = None;
        incoming.backwards(
            &seal.origin,
            from_packet,
            seal.carried_last(),
            &mut |epoch, bytes| {
                if epoch != expected {
                    missing.get_or_insert(expected);
                }
                expected = epoch.saturating_sub(1);
                head = link(&head, bytes);
                Ok(())
            },
        )?;
        if expected >= from_packet {
            missing.get_or_insert(expected);
        }
        if let Some(epoch) = missing {
            return Err(unsealed(format!(
                "the seal of {}..={} of {} needs operation {epoch}, which neither this \
                 replica nor the packet holds",
                seal.first,
                seal.carried_last(),
                seal.origin
            )));
        }
    }
    if seal.first <= have {
        let state = state.expect("a replica that holds operations has a state");
        let last = have.min(seal.carried_last());
        let count = state.fold_operations_backwards(&seal.origin, seal.first, last, |bytes| {
            head = link(&head, bytes);
        })?;
        if count != last - seal.first + 1 {
            return Err(unsealed(format!(
                "operations {}..={} of {} are not all at hand to check their seal",
                seal.first,
                seal.carried_last(),
                seal.origin
            )));
        }
    }
    Ok(head)
}
