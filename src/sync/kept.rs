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
    /// Values on disk that the recorded ones replaced or removed, one line
    /// each, path first (a value the local user set while the item was
    /// not kept is lost: the user is told which).
    pub replaced: Vec<String>,
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
    let mut replaced = Vec::new();
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
        if let (false, Some(stat)) = (made, &before) {
            for what in replaced_values(&place, stat, kind, &ext, &with, &mut names) {
                replaced.push(format!("{}: {what}", crate::tree::relpath::display(path)));
            }
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
        replaced,
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

/// What setting the recorded values `ext` of the items `with` keeps
/// replaces or removes on disk at `place` (`stat`: its lstat), in words;
/// nothing for a value that equals the recorded one, or one only added.
fn replaced_values(
    place: &crate::tree::confined::Place,
    stat: &rustix::fs::Stat,
    kind: MetaKind,
    ext: &crate::ops::Extensions,
    with: &Preserve,
    names: &mut Names,
) -> Vec<String> {
    use crate::sync::apply::merge::{show_acl, show_value};
    use meta::{keys, Acl, Principal};
    let mut out = Vec::new();
    let numeric = with.numeric_ids;
    let is_symlink = matches!(kind, MetaKind::Symlink);
    let only = Preserve {
        owner: with.owner,
        group: with.group,
        acls: with.acls,
        xattrs: with.xattrs,
        hardlinks: false,
        devices: false,
        specials: false,
        numeric_ids: numeric,
    };
    let mut disk = crate::ops::Extensions::default();
    meta::read(
        &place.display_path(),
        stat.st_uid,
        stat.st_gid,
        is_symlink,
        matches!(kind, MetaKind::Directory),
        None,
        &only,
        names,
        &mut disk,
    );
    let who = |p: &Principal| match &p.name {
        Some(name) => format!("{}({})", crate::error::printable(name), p.id),
        None => p.id.to_string(),
    };
    if let Some(recorded) = meta::owner(ext) {
        if let (true, Some(user)) = (with.owner, &recorded.user) {
            if names.local_uid(user, numeric) != stat.st_uid {
                let now = names.user(stat.st_uid, numeric);
                out.push(format!(
                    "owner {} replaced by the recorded {}",
                    who(&now),
                    who(user)
                ));
            }
        }
        if let (true, Some(group)) = (with.group, &recorded.group) {
            if names.local_gid(group, numeric) != stat.st_gid {
                let now = names.group(stat.st_gid, numeric);
                out.push(format!(
                    "group {} replaced by the recorded {}",
                    who(&now),
                    who(group)
                ));
            }
        }
    }
    if with.xattrs {
        let decode = |e: &crate::ops::Extensions| -> meta::Xattrs {
            e.get(keys::XATTRS)
                .and_then(|bytes| postcard::from_bytes(bytes).ok())
                .unwrap_or_default()
        };
        let (on_disk, recorded) = (decode(&disk), decode(ext));
        for (name, value) in &on_disk {
            let shown = crate::error::printable_bytes(name);
            match recorded.iter().find(|(n, _)| n == name) {
                Some((_, v)) if v == value => {}
                Some((_, v)) => out.push(format!(
                    "xattr {shown} {} replaced by the recorded {}",
                    show_value(value),
                    show_value(v)
                )),
                None => out.push(format!("xattr {shown} removed (not recorded)")),
            }
        }
    }
    if with.acls && !is_symlink {
        for (key, word) in [
            (keys::ACL_ACCESS, "access ACL"),
            (keys::ACL_DEFAULT, "default ACL"),
        ] {
            let acl = |e: &crate::ops::Extensions| -> Option<Acl> {
                e.get(key)
                    .and_then(|bytes| postcard::from_bytes(bytes).ok())
            };
            let (on_disk, recorded) = (acl(&disk), acl(ext));
            let Some(now) = &on_disk else { continue };
            // Named entries compare by the id the recorded one gives here.
            let local = |a: &Acl, names: &mut Names| -> Vec<(u16, u16, Option<u32>)> {
                a.iter()
                    .map(|e| {
                        let id = e.who.as_ref().map(|p| match e.tag {
                            8 => names.local_gid(p, numeric),
                            _ => names.local_uid(p, numeric),
                        });
                        (e.tag, e.perm, id)
                    })
                    .collect()
            };
            match &recorded {
                Some(rec) if local(rec, names) == local(now, names) => {}
                Some(_) => out.push(format!(
                    "{word} {} replaced by the recorded {}",
                    show_acl(&on_disk),
                    show_acl(&recorded)
                )),
                None => out.push(format!(
                    "{word} {} removed (not recorded)",
                    show_acl(&on_disk)
                )),
            }
        }
    }
    out
}
