//! Which operations the log may scrub (issue 13, "Bounded history"):
//! per origin, the longest run of epochs from 1 that every member still in
//! the family has confirmed holding and that is older than
//! `oplog_keep_days`.
//!
//! Rules, and why:
//! 1. Every member but this replica and the removed ones must have
//!    confirmed the operation (its `confirmed` row, from the epoch rows of
//!    its own packets): nobody will ever ask for it again in an update.
//!    The origin counts like any member (a restored origin fetches its own
//!    operations back from its siblings). A member that never confirmed
//!    anything of an origin holds all of that origin back; a removed
//!    member holds nothing back.
//! 2. Only whole runs go (SPEC.md §7): a seal signs a run's every
//!    operation, so a run cut in two could no longer be verified, and a
//!    run this replica holds only in part (a seal with a tail) stops the
//!    scrub for its origin.
//! 3. Age is the operation's recording time (its origin's clock) against
//!    this replica's clock for waiting periods (so tests move it with
//!    `SYNCREPLICA_TEST_CLOCK_SHIFT`). A run goes only when its newest
//!    operation is old enough; an origin whose clock runs ahead only
//!    delays its scrub, and one that runs behind cannot make anything
//!    scrubbable that some member still lacks (rule 1).
//! 4. The scrubbed range of an origin is a prefix `1..=k`: a later
//!    operation is never scrubbed before an earlier one, so what remains
//!    is one range per origin, as packets carry them. A signed checkpoint
//!    (packet SPEC.md §8.1) covers it: made here with this replica's key
//!    (chaining the history digest on from the previous checkpoint), kept,
//!    and carried in creation packets, whose receiver accepts a range that
//!    starts right after it.
//! 5. Nothing is scrubbed while this replica's own restore is unfinished
//!    (its siblings are sending back what it lost, checked against its
//!    log).
//!
//! What stays: the recorded entries (tombstones too) with their version
//! vectors, which conflict detection compares and from which a creation
//! packet re-asserts every path whose last operation is gone.

use std::collections::{BTreeMap, HashMap};

use packet_format::seals::{history, Checkpoint, HISTORY_START};

use crate::error::{Error, Result};
use crate::ops::{Id, Operation};
use crate::replica::LockedReplica;
use crate::store::state::{self, Confirmed, State};

/// Seconds in a day, for `oplog_keep_days`.
const DAY_SECS: i64 = 86_400;

/// One run of an origin's operations as this replica holds it: epochs
/// `first..=last`, whether it holds all of it (its seal has no tail), and
/// the newest recording time among its operations (seconds since the Unix
/// epoch; `None` when not read because the run is beyond what may go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: u64,
    pub last: u64,
    pub whole: bool,
    pub newest_secs: Option<i64>,
}

/// The last epoch of an origin that may be scrubbed, given what is
/// scrubbed already (`start`: its checkpoint's epoch, 0 for none), its
/// runs held by first epoch, the epoch every awaited member confirmed
/// holding (`confirmed`), and the newest recording time that counts as old
/// enough (`cutoff_secs`, seconds since the Unix epoch). `start` when
/// nothing more may go. Rules 2 to 4.
pub fn scrub_through(runs: &[Run], start: u64, confirmed: u64, cutoff_secs: i64) -> u64 {
    let mut through = start;
    for run in runs {
        // A gap (a run that does not start right after what may go) or a
        // run held in part ends the prefix.
        if run.first != through + 1 || !run.whole || run.last > confirmed {
            break;
        }
        match run.newest_secs {
            Some(newest) if newest <= cutoff_secs => through = run.last,
            _ => break,
        }
    }
    through
}

/// The epoch of `origin` every member of `awaited` confirmed holding: the
/// least of their confirmed rows, 0 for one that confirmed nothing of it,
/// and every epoch (`u64::MAX`) when no member is awaited (this replica is
/// the family's only member left). Rule 1.
pub fn confirmed_by_all(
    origin: &Id,
    awaited: &[Id],
    table: &HashMap<Id, HashMap<Id, Confirmed>>,
) -> u64 {
    awaited
        .iter()
        .map(|member| confirmed_epoch(table, member, origin))
        .min()
        .unwrap_or(u64::MAX)
}

/// The epoch of `origin` that `member` confirmed holding; 0 when none.
fn confirmed_epoch(table: &HashMap<Id, HashMap<Id, Confirmed>>, member: &Id, origin: &Id) -> u64 {
    table
        .get(member)
        .and_then(|row| row.get(origin))
        .map_or(0, |c| c.epoch)
}

/// The members whose confirmations a scrub waits for: every member still
/// in the family but this replica (`me`). Errors: the store's.
fn awaited_members(state: &State, me: &Id) -> Result<Vec<Id>> {
    let removed: Vec<Id> = state
        .removed_members()?
        .into_iter()
        .map(|r| r.replica)
        .collect();
    Ok(state
        .members()?
        .into_iter()
        .map(|m| m.replica)
        .filter(|id| id != me && !removed.contains(id))
        .collect())
}

/// What a member lacks of one origin: `(origin, confirmed, held)`, the
/// epoch it confirmed and the epoch this replica holds.
pub type Lack = (Id, u64, u64);

/// The members still in the family (other than `me`) that have not
/// confirmed holding everything this replica holds, each with the origins
/// it lacks as `(origin, confirmed, held)`: what holds a scrub back, for
/// `syncreplica -scrub` to name. Errors: the store's.
pub fn holding_back(state: &State, me: &Id) -> Result<Vec<(Id, Vec<Lack>)>> {
    let table = state.confirmed_table()?;
    let mut held = Vec::new();
    for member in state.members()? {
        let epoch = state.epoch(me, &member.replica)?;
        if epoch > 0 {
            held.push((member.replica, epoch));
        }
    }
    let mut back = Vec::new();
    for member in awaited_members(state, me)? {
        let lacks: Vec<Lack> = held
            .iter()
            .filter_map(|(origin, epoch)| {
                let confirmed = confirmed_epoch(&table, &member, origin);
                (confirmed < *epoch).then_some((*origin, confirmed, *epoch))
            })
            .collect();
        if !lacks.is_empty() {
            back.push((member, lacks));
        }
    }
    Ok(back)
}

/// Per origin, the last epoch the log of this replica (`me`) may scrub,
/// with `keep_days` (`oplog_keep_days`) of history kept, at `now_ns` (the
/// clock for waiting periods). Origins with nothing to scrub are left out.
/// Reads the recording times of the operations that may go, and no others.
/// Errors: the store's ([`crate::error::Error::Db`],
/// [`crate::error::Error::CorruptState`] for an undecodable operation).
pub fn scrub_points(
    state: &State,
    me: &Id,
    keep_days: u64,
    now_ns: i64,
) -> Result<BTreeMap<Id, u64>> {
    let awaited = awaited_members(state, me)?;
    let table = state.confirmed_table()?;
    let checkpoints = state.checkpoints()?;
    let keep_secs = i64::try_from(keep_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_SECS);
    let cutoff_secs = (now_ns / 1_000_000_000).saturating_sub(keep_secs);
    let mut points = BTreeMap::new();
    for (origin, held) in state.epoch_row(me)? {
        let confirmed = confirmed_by_all(&origin, &awaited, &table).min(held);
        let start = checkpoints.get(&origin).map_or(0, |c| c.through);
        if confirmed <= start {
            continue;
        }
        let mut runs = Vec::new();
        for seal in state.seals_meeting(&origin, start + 1, confirmed)? {
            let newest_secs = if seal.tail.is_none() && seal.last <= confirmed {
                let mut newest: Option<i64> = None;
                let mut bad = None;
                state.fold_operations_backwards(&origin, seal.first, seal.last, |bytes| {
                    match Operation::decode(bytes) {
                        Ok(op) => {
                            newest =
                                Some(newest.map_or(op.recorded.secs, |n| n.max(op.recorded.secs)))
                        }
                        Err(err) => bad = Some(err),
                    }
                })?;
                if let Some(err) = bad {
                    return Err(Error::CorruptState {
                        path: state.path().to_path_buf(),
                        what: format!("oplog entry of {origin}: {err}"),
                    });
                }
                newest
            } else {
                None
            };
            runs.push(Run {
                first: seal.first,
                last: seal.last,
                whole: seal.tail.is_none(),
                newest_secs,
            });
        }
        let through = scrub_through(&runs, start, confirmed, cutoff_secs);
        if through > start {
            points.insert(origin, through);
        }
    }
    Ok(points)
}

/// What a scrub deleted of one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    pub origin: Id,
    /// Epochs `from..=through` went (`from` is 1 for the first scrub).
    pub from: u64,
    pub through: u64,
    pub operations: u64,
    pub bytes: u64,
}

/// Scrubs this replica's log (see the module documentation) with
/// `keep_days` of history kept, at `now_ns`: per origin, signs a
/// checkpoint over the history digest through the last epoch that may go,
/// then deletes those operations and their runs' seals, each origin in one
/// transaction. Returns what went, by origin; nothing during an
/// unfinished restore. The caller holds the lock. Errors: the store's, and
/// [`Error::CorruptState`] when an operation to scrub is missing.
pub fn scrub(replica: &mut LockedReplica, keep_days: u64, now_ns: i64) -> Result<Vec<Scrubbed>> {
    if crate::sync::family::restore_wait(replica)?.is_some() {
        return Ok(Vec::new());
    }
    let me = replica.identity.replica_id;
    let points = scrub_points(replica.state(), &me, keep_days, now_ns)?;
    if points.is_empty() {
        return Ok(Vec::new());
    }
    let secret = replica.signing_key()?.to_bytes();
    let checkpoints = replica.state().checkpoints()?;
    let mut done = Vec::new();
    for (origin, through) in points {
        let (start, mut digest) = checkpoints
            .get(&origin)
            .map_or((0, HISTORY_START), |c| (c.through, c.history));
        let mut count = 0;
        for bytes in replica
            .state()
            .operation_bytes(&origin, start + 1, through)?
        {
            digest = history(&digest, &bytes);
            count += 1;
        }
        if count != through - start {
            return Err(Error::CorruptState {
                path: replica.state().path().to_path_buf(),
                what: format!(
                    "the operation log of {origin} lacks some of epochs {}-{through}",
                    start + 1
                ),
            });
        }
        let checkpoint = Checkpoint::sign(&secret, me, origin, through, digest);
        let (operations, bytes) = replica.state_mut().transaction(|tx| {
            state::put_checkpoint(tx, &checkpoint)?;
            Ok(state::scrub_operations(tx, &origin, through)?)
        })?;
        done.push(Scrubbed {
            origin,
            from: start + 1,
            through,
            operations,
            bytes,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(first: u64, last: u64, newest_secs: i64) -> Run {
        Run {
            first,
            last,
            whole: true,
            newest_secs: Some(newest_secs),
        }
    }

    #[test]
    fn whole_old_confirmed_runs_go_from_epoch_one() {
        let runs = [run(1, 3, 10), run(4, 4, 20), run(5, 9, 30)];
        assert_eq!(scrub_through(&runs, 0, 9, 30), 9);
        assert_eq!(
            scrub_through(&runs, 0, 100, 25),
            4,
            "the too-young run stays"
        );
    }

    #[test]
    fn an_unconfirmed_operation_keeps_its_whole_run() {
        let runs = [run(1, 3, 10), run(4, 6, 10)];
        // Epoch 5 is not confirmed by all: run 4..=6 stays whole.
        assert_eq!(scrub_through(&runs, 0, 5, 100), 3);
        assert_eq!(scrub_through(&runs, 0, 2, 100), 0);
        assert_eq!(scrub_through(&runs, 0, 0, 100), 0);
    }

    #[test]
    fn a_young_run_stops_the_later_old_ones() {
        let runs = [run(1, 1, 10), run(2, 2, 50), run(3, 3, 10)];
        assert_eq!(scrub_through(&runs, 0, 3, 20), 1);
    }

    #[test]
    fn a_gap_or_a_partly_held_run_stops_the_prefix() {
        let gap = [run(1, 2, 10), run(4, 5, 10)];
        assert_eq!(scrub_through(&gap, 0, 5, 100), 2);
        let not_from_one = [run(2, 3, 10)];
        assert_eq!(scrub_through(&not_from_one, 0, 3, 100), 0);
        let mut partial = run(3, 5, 10);
        partial.whole = false;
        assert_eq!(scrub_through(&[run(1, 2, 10), partial], 0, 5, 100), 2);
        let unread = Run {
            newest_secs: None,
            ..run(1, 2, 0)
        };
        assert_eq!(scrub_through(&[unread], 0, 5, 100), 0);
    }

    #[test]
    fn a_scrub_goes_on_from_the_last_checkpoint() {
        let runs = [run(4, 6, 10), run(7, 9, 10)];
        assert_eq!(scrub_through(&runs, 3, 9, 100), 9);
        assert_eq!(scrub_through(&runs, 3, 8, 100), 6);
        assert_eq!(scrub_through(&runs, 3, 5, 100), 3, "nothing more");
        assert_eq!(scrub_through(&runs, 2, 9, 100), 2, "epoch 3 is missing");
    }

    #[test]
    fn the_least_confirmation_of_the_awaited_members_counts() {
        let origin = Id([1; 16]);
        let (a, b, gone) = (Id([2; 16]), Id([3; 16]), Id([4; 16]));
        let confirmed = |epoch| Confirmed { epoch, at_ns: 0 };
        let mut table: HashMap<Id, HashMap<Id, Confirmed>> = HashMap::new();
        table.entry(a).or_default().insert(origin, confirmed(7));
        table.entry(b).or_default().insert(origin, confirmed(4));
        table.entry(gone).or_default().insert(origin, confirmed(1));
        // The removed member `gone` is not awaited: it holds nothing back.
        assert_eq!(confirmed_by_all(&origin, &[a, b], &table), 4);
        assert_eq!(confirmed_by_all(&origin, &[a, b, gone], &table), 1);
        // A member that confirmed nothing of the origin holds it all back.
        let silent = Id([5; 16]);
        assert_eq!(confirmed_by_all(&origin, &[a, silent], &table), 0);
        // Alone in the family: nobody else to wait for.
        assert_eq!(confirmed_by_all(&origin, &[], &table), u64::MAX);
    }
}
