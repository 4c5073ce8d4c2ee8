//! When what a replica keeps grows (config.toml's `preserve` gets an item,
//! or a member made by a user that is not root is run by root, whose
//! default keeps more and who can apply more), the values of those items
//! on disk are whatever this replica left there: it never applied them.
//! They are not local changes (review 14e items 1 and 2: they were
//! recorded and sent, and stripped the family's xattrs and ACLs, owners,
//! setuid bits and device nodes at the origin). The state database
//! remembers the set the recorded state was last reconciled with
//! ([`crate::store::state::State::kept_items`]); until the recorded values
//! of the new items are set on disk, scans leave them out
//! ([`crate::replica::Replica::preserve`]). The first command that takes
//! the lock sets them ([`reconcile`]) and remembers the new set. A set
//! that shrinks needs nothing on disk: a scan carries the recorded values
//! of what it does not keep.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::ops::PathState;
use crate::replica::{LockedReplica, ROOT_BIT};
use crate::store::config::Preserve;
use crate::store::state;
use crate::sync::apply::{set_meta, MetaKind};
use crate::tree::confined::{ConfinedRoot, Located};
use crate::tree::meta::{self, Names, Unapplied};

/// What [`reconcile`] set on disk.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// What grew, in words ("now keeping acls, xattrs", "now running as root").
    pub grown: String,
    /// Paths given a recorded value (or made: a device node, a FIFO).
    pub set: u64,
    /// What could not be applied, one line per item with a count.
    pub unapplied: Vec<String>,
    /// Paths left as they were, with why.
    pub notes: Vec<String>,
}

/// Sets on disk the recorded values of what this replica keeps now and
/// did not keep when its state was last reconciled, and remembers the set
/// it keeps now. `None` when nothing grew (a replica made before the set
/// was remembered starts remembering it now).
pub fn reconcile(replica: &mut LockedReplica) -> Result<Option<Reconciled>> {
    let wanted = replica.wanted_preserve();
    let now = wanted.kept_bits(rustix::process::geteuid().is_root());
    let then = replica.state().kept_items()?;
    if then == Some(now) {
        return Ok(None);
    }
    // Root sets now what it reads: no longer as the user before it.
    meta::set_as_unprivileged(false);
    let report = match then {
        Some(then) if now & !then != 0 => Some(set_grown(replica, &wanted, then, now)?),
        _ => None,
    };
    replica
        .state_mut()
        .transaction(|tx| Ok(state::set_kept_items(tx, now)?))?;
    Ok(report)
}

/// What grew from `then` to `now`, in words; `None` when nothing did.
pub fn grown_words(then: u32, now: u32) -> Option<String> {
    let items = Preserve::bit_names(now & !ROOT_BIT, then);
    let mut parts = Vec::new();
    if !items.is_empty() {
        parts.push(format!("now keeping {}", items.join(", ")));
    }
    if now & ROOT_BIT != 0 && then & ROOT_BIT == 0 {
        parts.push(
            if parts.is_empty() {
                "now running as root"
            } else {
                "running as root"
            }
            .to_string(),
        );
    }
    (!parts.is_empty()).then(|| parts.join(", and "))
}

fn set_grown(
    replica: &LockedReplica,
    wanted: &Preserve,
    then: u32,
    now: u32,
) -> Result<Reconciled> {
    let old = wanted.within(then);
    let root_gained = now & ROOT_BIT != 0 && then & ROOT_BIT == 0;
    // Only what grew is set: the items kept before are as this replica's
    // user left them (a change of theirs is recorded by the next scan).
    // Root sets what a user that is not root could not: owner and group,
    // attributes outside user.*, setuid bits.
    let grown = Preserve {
        owner: wanted.owner && (!old.owner || root_gained),
        group: wanted.group && (!old.group || root_gained),
        acls: wanted.acls && !old.acls,
        xattrs: wanted.xattrs && (!old.xattrs || root_gained),
        hardlinks: wanted.hardlinks && !old.hardlinks,
        devices: wanted.devices && !old.devices,
        specials: wanted.specials && !old.specials,
        numeric_ids: wanted.numeric_ids,
    };
    // Only root's xattrs grew: the user.* ones on disk are that user's.
    let only_root_xattrs = grown.xattrs && old.xattrs;
    let entries = replica.entries()?;
    let confined = ConfinedRoot::open(&replica.root)?;
    let locate_leader = |leader: &[u8]| confined.locate(leader, false);
    let mut names = Names::default();
    let mut unapplied = Unapplied::default();
    let mut notes = Vec::new();
    let mut set = 0u64;
    let mut touched_dirs: BTreeSet<Vec<u8>> = BTreeSet::new();
    // Every other entry before the directories, these deepest first: what
    // is made in a directory moves its time, set back last.
    let mut paths: Vec<&Vec<u8>> = entries
        .iter()
        .filter(|(_, e)| e.state != PathState::Deleted)
        .map(|(p, _)| p)
        .collect();
    paths.sort_by_key(|p| {
        let is_dir = matches!(entries[*p].state, PathState::Directory { .. });
        (
            is_dir,
            std::cmp::Reverse(p.iter().filter(|&&b| b == b'/').count()),
        )
    });
    for path in paths {
        let state = &entries[path].state;
        let (kind, mode, ext) = match state {
            PathState::File { mode, ext, .. } => (MetaKind::File, *mode, ext),
            PathState::Directory { mode, ext, .. } => (MetaKind::Directory, *mode, ext),
            PathState::Symlink { ext, .. } => (MetaKind::Symlink, 0, ext),
            PathState::Special { mode, ext, .. } => (MetaKind::Special, *mode, ext),
            _ => continue,
        };
        let Located::At(place) = confined.locate(path, false)? else {
            continue;
        };
        let before = place.stat()?;
        let mut made = false;
        if before.is_none() {
            // A special file this replica did not keep was recorded, not
            // made: it is made now.
            let PathState::Special {
                kind: special,
                mode,
                major,
                minor,
                ..
            } = state
            else {
                continue;
            };
            if !grown.keeps_special(*special) {
                continue;
            }
            if let Err(err) = place.make_node(*special, *mode, *major, *minor) {
                notes.push(format!(
                    "{}: not made: {}",
                    crate::tree::relpath::display(path),
                    meta::why_not("devices", &err)
                ));
                continue;
            }
            made = true;
        }
        let mut with = grown;
        // A name of a hard-link set is linked to the set's first name only
        // where both are as recorded (a file edited here since is not
        // replaced by another name's content).
        if let (MetaKind::File, true, Some(stat)) = (kind, with.hardlinks, &before) {
            with.hardlinks = as_recorded(state, stat)
                && meta::hard_link_leader(ext).is_some_and(|leader| {
                    let leader_state = entries.get(&leader).map(|e| &e.state);
                    matches!(confined.locate(&leader, false), Ok(Located::At(first))
                    if first.stat().ok().flatten().is_some_and(|s| {
                        leader_state.is_some_and(|l| as_recorded(l, &s))
                    }))
                });
        }
        let mut ext = ext.clone();
        if only_root_xattrs {
            keep_user_xattrs(&place, &mut ext);
        }
        let mode = if made {
            Some(mode)
        } else if (with.owner || with.group) && matches!(kind, MetaKind::File | MetaKind::Special) {
            // chown clears setuid bits: the mode on disk goes back on,
            // with the recorded bits root can set now.
            before
                .as_ref()
                .map(|s| (s.st_mode & 0o7777 & !0o6000) | (mode & 0o6000))
        } else {
            None
        };
        let mtime = match state {
            PathState::Special { mtime, .. } if made => Some(*mtime),
            _ => None,
        };
        set_meta(
            &place,
            &locate_leader,
            path,
            kind,
            mode,
            mtime,
            &ext,
            &with,
            &mut names,
            &mut unapplied,
            &mut notes,
        )?;
        let after = place.stat()?;
        let changed = match (&before, &after) {
            (Some(b), Some(a)) => {
                (b.st_ctime, b.st_ctime_nsec, b.st_ino) != (a.st_ctime, a.st_ctime_nsec, a.st_ino)
            }
            _ => made,
        };
        if changed {
            set += 1;
        }
        let relinked = matches!((&before, &after), (Some(b), Some(a)) if b.st_ino != a.st_ino);
        if made || relinked {
            let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
            touched_dirs.insert(path[..cut].to_vec());
        }
    }
    // What was made or linked in a directory moved its time: set back to
    // the recorded one, or the next scan would take it for a change.
    for dir in touched_dirs.iter().rev() {
        if let Some(PathState::Directory {
            mtime: Some(mtime), ..
        }) = entries.get(dir).map(|e| &e.state)
        {
            if let Located::At(place) = confined.locate(dir, false)? {
                place.set_mtime(*mtime)?;
            }
        }
    }
    Ok(Reconciled {
        grown: grown_words(then, now).unwrap_or_default(),
        set,
        unapplied: unapplied.lines(),
        notes,
    })
}

/// Whether the file `stat` has the size and mtime of its recorded `state`.
fn as_recorded(state: &PathState, stat: &rustix::fs::Stat) -> bool {
    matches!(state, PathState::File { size, mtime, .. }
        if *size == stat.st_size as u64
            && mtime.secs == stat.st_mtime
            && i128::from(mtime.nanos) == i128::from(stat.st_mtime_nsec))
}

/// Puts the `user.*` attributes on disk at `place` into `ext` in place of
/// the recorded ones (root sets only the others, which the user before it
/// could not).
fn keep_user_xattrs(place: &crate::tree::confined::Place, ext: &mut crate::ops::Extensions) {
    let recorded: meta::Xattrs = ext
        .get(meta::keys::XATTRS)
        .and_then(|bytes| postcard::from_bytes(bytes).ok())
        .unwrap_or_default();
    let disk = place.display_path();
    let mut merged: meta::Xattrs = recorded
        .into_iter()
        .filter(|(name, _)| !name.starts_with(b"user."))
        .collect();
    if let Ok(list) = xattr::list(&disk) {
        for name in list {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()).to_vec();
            if !bytes.starts_with(b"user.") {
                continue;
            }
            if let Ok(Some(value)) = xattr::get(&disk, &name) {
                merged.push((bytes, value));
            }
        }
    }
    merged.sort();
    ext.insert(meta::keys::XATTRS, meta::encode(&merged));
}
