//! Recording local changes: the step every command that changes a replica
//! takes first; what it finds missing after the exclude rules changed; and
//! re-asserting recorded paths so that siblings that lack them get them
//! again (`-resendpath`).
//!
//! # Excludes that change
//!
//! A path that becomes excluded is forgotten locally (its entry goes,
//! nothing is sent). Operations on it from siblings are logged but not
//! applied while it is excluded. So when the exclude is lifted, a path
//! that was deleted here meanwhile, or that siblings made meanwhile, is
//! neither on disk nor recorded: no scan sees it, and no sibling sends it
//! (their estimates say this replica has those operations). The state
//! keeps the rules of the last record ([`State::recorded_excludes`]); when
//! the rules in force differ, the operation log tells which paths the
//! family holds (the newest versions this replica knows of, not all
//! deleted), and those that are included now, not recorded and absent
//! from the disk are reported as missing, never recorded as deletions. A
//! sibling that holds them sends them again after `syncreplica -record
//! -resendpath PATH` or `-export -resendpath PATH` ([`resend`]). The rules are
//! stored only by a record that finds nothing missing, so the report
//! comes back with every record until the paths are back (or excluded
//! again).
//!
//! [`State::recorded_excludes`]: crate::store::state::State::recorded_excludes

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::ops::{Causality, Change, Operation, PathState, VersionVector};
use crate::replica::{LockedReplica, RecordSummary, Replica};
use crate::store::state::{self, EntryWrite};
use crate::tree::excludes::Excludes;
use crate::tree::relpath;
use crate::tree::scan::{ScanHooks, ScanOutcome};

/// Finishes an import that a crash interrupted (so its half-placed files
/// are not taken for local edits), then scans and records every local
/// change, and says which paths the family holds that this replica lacks
/// since its exclude rules changed ([`RecordSummary::missing`]).
pub fn record_local_changes(replica: &mut LockedReplica) -> Result<(ScanOutcome, RecordSummary)> {
    crate::sync::apply::recover(replica)?;
    let outcome = replica.scan_to_record(&mut ScanHooks::default())?;
    if !outcome.changes.is_empty() {
        crate::sync::family::refuse_while_restoring(replica, "recording local changes")?;
    }
    record_scanned(replica, outcome)
}

/// [`record_local_changes`] for an export: while this replica is being
/// restored from a backup (`mkreplica -restore`), its local changes are
/// left unrecorded, not refused, so that `-export` and `-export -ack`
/// still tell its siblings of the restore (without that, the restore
/// could never finish). Returns how many changes wait, for the caller
/// to say so.
pub fn record_for_export(
    replica: &mut LockedReplica,
) -> Result<(ScanOutcome, RecordSummary, usize)> {
    if crate::sync::family::restore_wait(replica)?.is_some() {
        crate::sync::apply::recover(replica)?;
        let mut outcome = replica.scan_to_record(&mut ScanHooks::default())?;
        let waiting = outcome.changes.len();
        // The changes wait; what the scan found unchanged is still noted
        // (the fast path's stat columns: a restored copy's files have new
        // inodes and times), so that an import's plan knows them.
        outcome.changes.clear();
        let (outcome, summary) = record_scanned(replica, outcome)?;
        return Ok((outcome, summary, waiting));
    }
    let (outcome, summary) = record_local_changes(replica)?;
    Ok((outcome, summary, 0))
}

/// Records what a scan found, and notes the paths missing since the
/// exclude rules changed.
fn record_scanned(
    replica: &mut LockedReplica,
    mut outcome: ScanOutcome,
) -> Result<(ScanOutcome, RecordSummary)> {
    // A mirror records nothing of its own: what its scan found is undone.
    let mirror = match replica.state().mirror_upstream()? {
        Some(upstream) => Some(crate::sync::mirror::keep_family_versions(
            replica,
            &mut outcome,
            upstream,
        )?),
        None => None,
    };
    let mut summary = replica.record(&outcome)?;
    summary.mirror = mirror;
    let excludes = replica.excludes()?;
    if let Some(missing) = missing_since_excludes_changed(replica, &excludes)? {
        if missing.is_empty() {
            replica
                .state_mut()
                .transaction(|tx| Ok(state::set_recorded_excludes(tx, excludes.rules())?))?;
        }
        summary.missing = missing;
    }
    Ok((outcome, summary))
}

/// When the exclude rules differ from those of the last record that found
/// nothing missing (or none were stored yet): the paths the family holds
/// that this replica lacks, included now, neither recorded nor on disk,
/// sorted, each given once (a missing directory stands for what it held).
/// `None` when the rules are those stored. Reads only.
pub fn missing_since_excludes_changed(
    replica: &Replica,
    excludes: &Excludes,
) -> Result<Option<Vec<Vec<u8>>>> {
    if replica.state().recorded_excludes()?.as_deref() == Some(excludes.rules()) {
        return Ok(None);
    }
    let entries = replica.entries()?;
    // The newest versions this replica knows of each unrecorded path:
    // those no other one has seen (several when they are concurrent).
    let mut newest: HashMap<Vec<u8>, Vec<(VersionVector, PathState)>> = HashMap::new();
    replica.state().for_each_operation(|op| {
        let Some(change) = op.change.path_change() else {
            return;
        };
        if entries.contains_key(change.path.as_slice()) {
            return;
        }
        let known = newest.entry(change.path.clone()).or_default();
        if known.iter().any(|(version, _)| {
            matches!(
                change.version.compare(version),
                Causality::Before | Causality::Equal
            )
        }) {
            return;
        }
        known.retain(|(version, _)| change.version.compare(version) != Causality::After);
        known.push((change.version.clone(), change.state.clone()));
    })?;
    let mut missing: Vec<Vec<u8>> = newest
        .into_iter()
        .filter(|(path, versions)| {
            // Any existing state beats a deletion (the conflict rule).
            let held = versions.iter().find(|(_, s)| *s != PathState::Deleted);
            held.is_some_and(|(_, state)| {
                let is_dir = matches!(state, PathState::Directory { .. });
                !excludes.excludes_relative(path, is_dir, false)
                    && std::fs::symlink_metadata(relpath::to_disk_path(&replica.root, path))
                        .is_err()
            })
        })
        .map(|(path, _)| path)
        .collect();
    missing.sort();
    // A missing directory stands for the missing paths below it.
    let mut top: Vec<Vec<u8>> = Vec::new();
    for path in missing {
        if !top.last().is_some_and(|dir| relpath::is_within(&path, dir)) {
            top.push(path);
        }
    }
    Ok(Some(top))
}

/// A `-resendpath PATH` argument as replica-relative bytes: relative to the
/// replica root, as `-status` and the warnings print paths (a trailing
/// `/` is dropped).
pub fn resend_path(arg: &std::ffi::OsStr) -> Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut path = arg.as_bytes();
    while path.len() > 1 && path.ends_with(b"/") {
        path = &path[..path.len() - 1];
    }
    if let Some(why) = relpath::lexical_problem(path) {
        return Err(Error::BadResendPath {
            path: arg.to_string_lossy().into_owned(),
            why: why.to_string(),
        });
    }
    Ok(path.to_vec())
}

/// Checks, before anything is recorded, that this replica holds each path
/// to resend: recorded and not deleted, or on disk (recorded by the
/// record that comes first), and not excluded.
pub fn check_resend(replica: &Replica, paths: &[Vec<u8>]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let entries = replica.entries()?;
    let excludes = replica.excludes()?;
    for path in paths {
        let meta = std::fs::symlink_metadata(relpath::to_disk_path(&replica.root, path));
        let is_dir = meta.as_ref().is_ok_and(|m| m.is_dir());
        let recorded = entries
            .get(path)
            .is_some_and(|e| e.state != PathState::Deleted);
        if excludes.excludes_relative(path, is_dir, recorded) || !(recorded || meta.is_ok()) {
            return Err(Error::NotHeld {
                path: relpath::display(path),
                replica: replica.identity.replica_name.clone(),
            });
        }
    }
    Ok(())
}

/// What [`resend`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resent {
    /// Epochs of the new operations, if any.
    pub epochs: Option<(u64, u64)>,
    /// Paths re-asserted (those named and everything recorded below them).
    pub paths: usize,
    /// Paths named of which nothing is recorded any more (deleted since
    /// [`check_resend`]): nothing resent for them.
    pub gone: Vec<Vec<u8>>,
}

/// Re-asserts the recorded state of each path named, and of everything
/// recorded below it, as new operations of this replica (`Resolve`, with
/// the recorded version plus this replica's next epoch, the recorded
/// state and author), in one transaction. The next export sends them, with
/// their content, to every sibling: one that lacks a path makes it; one
/// that has that version only takes the new version vector; one that
/// changed the path meanwhile sees a conflict, settled by the usual rule.
/// The caller holds the lock and has recorded local changes.
pub fn resend(replica: &mut LockedReplica, paths: &[Vec<u8>]) -> Result<Resent> {
    crate::sync::family::refuse_while_restoring(replica, "-resendpath")?;
    let me = replica.identity.replica_id;
    let entries = replica.entries()?;
    let mut chosen: Vec<&Vec<u8>> = Vec::new();
    let mut gone = Vec::new();
    let mut seen: HashSet<&Vec<u8>> = HashSet::new();
    for path in paths {
        let mut below: Vec<&Vec<u8>> = entries
            .iter()
            .filter(|(p, e)| relpath::is_within(p, path) && e.state != PathState::Deleted)
            .map(|(p, _)| p)
            .collect();
        if below.is_empty() {
            gone.push(path.clone());
        }
        below.sort();
        chosen.extend(below.into_iter().filter(|p| seen.insert(*p)));
    }
    chosen.sort();
    let last = replica.state().epoch(&me, &me)?;
    let now = crate::sys::clock::now();
    let count = chosen.len();
    let secret = replica.signing_key()?.to_bytes();
    replica.state_mut().transaction(|tx| {
        let mut epoch = last;
        for path in &chosen {
            let entry = &entries[*path];
            epoch += 1;
            let mut version = entry.version.clone();
            version.set(me, epoch);
            let op = Operation {
                origin: me,
                epoch,
                recorded: now,
                change: Change::Resolve {
                    path: (*path).clone(),
                    version: version.clone(),
                    state: entry.state.clone(),
                    author: entry.author,
                },
            };
            state::append_operation(tx, &op)?;
            state::put_entry(
                tx,
                &EntryWrite {
                    path,
                    state: &entry.state,
                    version: &version,
                    author: &entry.author,
                    stat: entry.stat,
                    scanned_ns: entry.scanned_ns,
                },
            )?;
        }
        if epoch > last {
            state::set_epoch(tx, &me, &me, epoch)?;
            state::seal_own_run(tx, &secret, &me, last + 1, epoch)?;
        }
        Ok(())
    })?;
    Ok(Resent {
        epochs: (count > 0).then_some((last + 1, last + count as u64)),
        paths: count,
        gone,
    })
}
