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

use packet_format::seals::{chain, Seal, SealTail};
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

/// Checks that every operation of `incoming` (the operations a packet
/// brings that this replica lacks, per origin in epoch order) is covered
/// by a verified seal of `seals` (rule 3). `held` is this replica's own
/// row (what it logged of each origin), `keys` the members' keys. Returns
/// the seals to keep.
pub fn verify_incoming(
    state: Option<&State>,
    seals: &[Seal],
    incoming: &[Operation],
    held: &HashMap<Id, u64>,
    keys: &HashMap<Id, [u8; 32]>,
) -> Result<Vec<Seal>> {
    let mut keys = keys.clone();
    let mut by_origin: BTreeMap<Id, BTreeMap<u64, &Operation>> = BTreeMap::new();
    for op in incoming {
        by_origin.entry(op.origin).or_default().insert(op.epoch, op);
    }
    // Each incoming operation, the seal that covers it (by index).
    let mut pending: Vec<(usize, &Seal)> = Vec::new();
    for (origin, ops) in &by_origin {
        for (epoch, _) in ops.iter() {
            let Some(found) = seals.iter().position(|seal| {
                seal.origin == *origin && seal.first <= *epoch && *epoch <= seal.carried_last()
            }) else {
                return Err(unsealed(format!(
                    "operation {epoch} of {origin} carries no seal of its origin"
                )));
            };
            if !pending.iter().any(|(index, _)| *index == found) {
                pending.push((found, &seals[found]));
            }
        }
    }
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
            let run = run_operations(state, seal, &by_origin, held)?;
            let head = chain(run.iter().map(Vec::as_slice), seal.after_carried());
            if !seal.verify(&key, &head) {
                return Err(unsealed(format!(
                    "the seal of operations {}..={} of {} does not verify: they were not \
                     written as they are by that replica",
                    seal.first,
                    seal.carried_last(),
                    seal.origin
                )));
            }
            if let Some(ops) = by_origin.get(&seal.origin) {
                for op in ops
                    .range(seal.first..=seal.carried_last())
                    .map(|(_, op)| op)
                {
                    if let Change::AddMember {
                        replica,
                        public_key,
                        ..
                    } = &op.change
                    {
                        keys.entry(*replica).or_insert(*public_key);
                    }
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

/// The encodings of a seal's carried run: what this replica logged, then
/// what the packet brings.
fn run_operations(
    state: Option<&State>,
    seal: &Seal,
    by_origin: &BTreeMap<Id, BTreeMap<u64, &Operation>>,
    held: &HashMap<Id, u64>,
) -> Result<Vec<Vec<u8>>> {
    let have = held.get(&seal.origin).copied().unwrap_or(0);
    let mut run = Vec::new();
    if seal.first <= have {
        let state = state.expect("a replica that holds operations has a state");
        run = state.operation_bytes(&seal.origin, seal.first, have.min(seal.carried_last()))?;
    }
    let from_packet = have.max(seal.first - 1) + 1;
    for epoch in from_packet..=seal.carried_last() {
        let op = by_origin
            .get(&seal.origin)
            .and_then(|ops| ops.get(&epoch))
            .ok_or_else(|| {
                unsealed(format!(
                    "the seal of {}..={} of {} needs operation {epoch}, which neither this \
                     replica nor the packet holds",
                    seal.first,
                    seal.carried_last(),
                    seal.origin
                ))
            })?;
        run.push(op.encode());
    }
    if run.len() as u64 != seal.carried_last() - seal.first + 1 {
        return Err(unsealed(format!(
            "operations {}..={} of {} are not all at hand to check their seal",
            seal.first,
            seal.carried_last(),
            seal.origin
        )));
    }
    Ok(run)
}
