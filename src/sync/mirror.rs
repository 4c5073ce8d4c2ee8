//! Mirrors for cut-over: a member that is an exact copy of the family's
//! tree, whatever is written there meanwhile.
//!
//! A mirror (`mkreplica -import -mirror`, `chreplica -mirror UPSTREAM`)
//! never records a change of its own as authoritative. What the scan that
//! starts every command finds on a replicated path (one with a live
//! recorded entry) is undone instead of recorded:
//!
//! - metadata changed on a path whose content (a symlink's target, a
//!   special file's device) is the recorded one is set back at once, all
//!   that is recorded as an import sets it: mode (setuid bits as
//!   [`crate::tree::meta::set_id_bits_kept`] allows), owner, group, ACLs,
//!   xattrs, hard links and times; a file recorded with no other name that
//!   got one here (`ln FILE NEW`, NEW a local path) gets an inode of its
//!   own again, NEW keeping the old one;
//! - a removed name of a hard-link set another name of which is held here
//!   with its recorded content is linked to it again, not asked for;
//! - a file whose content was changed here (a service appending to or
//!   rewriting `passwd`) is left in place, served as it is, and the
//!   family's version is asked for from UPSTREAM with a content request
//!   ([`crate::sync::delta`]): the mirror's next packet to UPSTREAM
//!   carries it, and UPSTREAM's next export brings the version back. Until
//!   then its entry is the file as it is here under the family's version
//!   (as an adoption leaves a differing file), so no scan takes it for a
//!   change of this replica's and nothing of it is sent; the import that
//!   applies the answer replaces it in one step and keeps it as imports
//!   keep replaced versions (`.syncreplica/deleted/DAY/PATH`). Moving it
//!   aside at once left the path missing until the answer came, possibly
//!   for days (review 14e item 5: no `/etc/passwd` on a live server);
//! - anything else (a deletion, another kind of entry) is set aside
//!   (whatever is on disk is moved to `.syncreplica/deleted/DAY/PATH`,
//!   soft-deleted as imports keep replaced versions), the path's entry is
//!   forgotten, and the family's version is asked for the same way.
//!
//! Paths the family does not have (new local files) are neither recorded
//! nor touched: they stay as local files, never sent. The family's
//! versions always win: packets are applied as in any member.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};
use crate::ops::{Id, Operation, PathState};
use crate::replica::LockedReplica;
use crate::store::layout::DELETED_DIR;
use crate::store::state;
use crate::store::state::StatKey;
use crate::sync::apply::{set_meta, MetaKind};
use crate::tree::confined::{ConfinedRoot, Located};
use crate::tree::relpath;
use crate::tree::scan::ScanOutcome;

pub use crate::replica::MirrorUndone as Undone;

/// What a mirror does with one change its scan found (see the module
/// documentation): `-status` says it before any command does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Only metadata changed on a replicated path: set back at once.
    SetBack,
    /// A removed name of a hard-link set: linked again to this other name
    /// of the set, held here with the family's content (a way of setting
    /// it back: nothing is asked for).
    Relinked(Vec<u8>),
    /// New content in a replicated file: left in place until the
    /// family's version, asked for, replaces it.
    LeftInPlace,
    /// A deletion or another kind of entry on a replicated path: set
    /// aside and the family's version asked for.
    SetAside,
    /// A path the family does not have: left alone, never recorded.
    LeftAlone,
}

impl Fate {
    /// The word `-status -fmt json` gives it: "set back", "left in
    /// place", "set aside" or "left alone".
    pub fn word(&self) -> &'static str {
        match self {
            Fate::SetBack | Fate::Relinked(_) => "set back",
            Fate::LeftInPlace => "left in place",
            Fate::SetAside => "set aside",
            Fate::LeftAlone => "left alone",
        }
    }
}

/// The [`Fate`] of each of `changes` (a scan's, in its order) on the
/// mirror `replica`: what [`keep_family_versions`] does with it, found
/// the same way (a removed name of a hard-link set is linked again where
/// [`keep_family_versions`] would link it; fix14i item 2: `-status` said
/// it would be set aside and asked for).
pub fn fates(
    replica: &crate::replica::Replica,
    changes: &[crate::tree::scan::LocalChange],
) -> Result<Vec<Fate>> {
    let confined = ConfinedRoot::open(&replica.root)?;
    let entries = replica.entries()?;
    let unusable = unusable_for_relinks(changes);
    changes
        .iter()
        .map(|change| {
            if let (PathState::Deleted, Some(PathState::File { ext, .. })) =
                (&change.new, &change.old)
            {
                if let Some((other, _)) =
                    relink_source(&confined, &entries, &unusable, &change.path, ext)?
                {
                    return Ok(Fate::Relinked(other));
                }
            }
            Ok(fate(change))
        })
        .collect()
}

/// Paths whose content here is not the recorded one (or that are gone):
/// no removed name of a hard-link set is linked to them.
fn unusable_for_relinks(
    changes: &[crate::tree::scan::LocalChange],
) -> std::collections::HashSet<Vec<u8>> {
    changes
        .iter()
        .filter(|change| match (&change.old, &change.new) {
            (Some(PathState::File { chunks: a, .. }), PathState::File { chunks: b, .. }) => a != b,
            _ => true,
        })
        .map(|change| change.path.clone())
        .collect()
}

/// The [`Fate`] of `change` on a mirror, from the change alone (see
/// [`fates`], which also knows what a removed name is linked to).
pub fn fate(change: &crate::tree::scan::LocalChange) -> Fate {
    let Some(old) = &change.old else {
        return Fate::LeftAlone;
    };
    let same = match (old, &change.new) {
        (PathState::File { chunks: a, .. }, PathState::File { chunks: b, .. }) if a != b => {
            return Fate::LeftInPlace;
        }
        (PathState::File { .. }, PathState::File { .. }) => true,
        (PathState::Directory { .. }, PathState::Directory { .. }) => true,
        (PathState::Symlink { target: a, .. }, PathState::Symlink { target: b, .. }) => a == b,
        (
            PathState::Special {
                kind: k,
                major: x,
                minor: y,
                ..
            },
            PathState::Special {
                kind: k2,
                major: x2,
                minor: y2,
                ..
            },
        ) => (k, x, y) == (k2, x2, y2),
        _ => false,
    };
    if same {
        Fate::SetBack
    } else {
        Fate::SetAside
    }
}

/// The name of `upstream` among `replica`'s members (its id in hex when
/// it is not one).
pub fn upstream_name(replica: &crate::replica::Replica, upstream: Id) -> Result<String> {
    Ok(replica
        .members()?
        .into_iter()
        .find(|m| m.replica == upstream)
        .map_or_else(|| upstream.to_hex(), |m| m.name))
}

/// For a mirror of `upstream`: takes out of `outcome` every local change
/// and undoes those on replicated paths (see the module documentation),
/// so that recording the rest records nothing of this replica's own.
pub fn keep_family_versions(
    replica: &mut LockedReplica,
    outcome: &mut ScanOutcome,
    upstream: Id,
) -> Result<Undone> {
    let mut undone = Undone::default();
    let changes = std::mem::take(&mut outcome.changes);
    if changes.is_empty() {
        return Ok(undone);
    }
    let confined = ConfinedRoot::open(&replica.root)?;
    let day = chrono::Utc::now().format("%Y%m%d").to_string();
    let aside_dir = replica.state_dir().join(DELETED_DIR).join(day);
    let preserve = replica.preserve();
    let mut names = crate::tree::meta::Names::default();
    let mut unapplied = crate::tree::meta::Unapplied::default();
    let mut forget: Vec<Vec<u8>> = Vec::new();
    // Files with new content here, left in place: their entry becomes the
    // file as it is (the scan's state and stat) under the family's version.
    let mut in_place: Vec<(Vec<u8>, PathState, Option<StatKey>)> = Vec::new();
    let mut refreshed: Vec<(Vec<u8>, StatKey)> = Vec::new();
    let mut dirs_later = Vec::new();
    // Files given an inode of their own: renaming moved their folder's time.
    let mut renamed: Vec<Vec<u8>> = Vec::new();
    let entries = replica.entries()?;
    let unusable = unusable_for_relinks(&changes);
    // Deletions come deepest first, then the rest in path order: what is
    // under a folder set aside went with it.
    for change in changes {
        let Some(old) = &change.old else {
            // A new name of a file of the family's (`ln FILE NEW`): the
            // family's names get an inode of their own again, NEW keeping
            // the old one (review 14d item 5: NEW shared it, and a later
            // write to NEW changed the family's file).
            if preserve.hardlinks && matches!(change.new, PathState::File { .. }) {
                separate_from_local_name(
                    &confined,
                    &entries,
                    &change.path,
                    &preserve,
                    &mut names,
                    &mut unapplied,
                    &mut undone.notes,
                    &mut refreshed,
                    &mut renamed,
                )?;
            }
            undone.local_only += 1;
            continue;
        };
        let path = change.path.clone();
        let place = match confined.locate(&path, false)? {
            Located::At(place) => place,
            Located::Blocked(why) => return Err(Error::hostile(relpath::display(&path), why)),
        };
        // A removed name of a hard-link set: linked again to a name of the
        // set held here with the recorded content (review 14c item 8: it
        // was asked for, and the set's other names were "set back" at
        // every command, their leader missing).
        if let (PathState::Deleted, PathState::File { ext, .. }) = (&change.new, old) {
            if let Some(linked) = relink(&confined, &entries, &unusable, &path, ext, &place)? {
                let disk = place.display_path();
                let meta = std::fs::symlink_metadata(&disk).at(&disk)?;
                refreshed.push((path.clone(), crate::tree::scan::stat_key(&meta)));
                undone.relinked.push((path, linked));
                continue;
            }
        }
        // The same content (target, device): only metadata changed here,
        // and all of it is set back as an import sets it.
        let meta_of = match (old, &change.new) {
            (
                PathState::File {
                    chunks: a,
                    mode,
                    mtime,
                    ext,
                    ..
                },
                PathState::File { chunks: b, .. },
            ) if a == b => Some((MetaKind::File, Some(*mode), Some(*mtime), ext)),
            (PathState::Directory { mode, mtime, ext }, PathState::Directory { .. }) => {
                Some((MetaKind::Directory, Some(*mode), *mtime, ext))
            }
            (
                PathState::Symlink {
                    target: a,
                    mtime,
                    ext,
                },
                PathState::Symlink { target: b, .. },
            ) if a == b => Some((MetaKind::Symlink, None, *mtime, ext)),
            (
                PathState::Special {
                    kind: k,
                    mode,
                    major: x,
                    minor: y,
                    mtime,
                    ext,
                },
                PathState::Special {
                    kind: k2,
                    major: x2,
                    minor: y2,
                    ..
                },
            ) if (k, x, y) == (k2, x2, y2) => {
                Some((MetaKind::Special, Some(*mode), Some(*mtime), ext))
            }
            _ => None,
        };
        if let Some((kind, mode, mtime, ext)) = meta_of {
            // A directory's metadata (its time) is set last: placing a name
            // in it (re-linking a hard link) would move its time again
            // (review 14b item 6).
            if kind == MetaKind::Directory {
                dirs_later.push((place, path, mode, mtime, ext.clone()));
                continue;
            }
            // A file recorded with no other name that has one here: the
            // other name is a local path (a recorded one would be in the
            // set), left alone; the family's file gets its own inode.
            if kind == MetaKind::File
                && preserve.hardlinks
                && crate::tree::meta::hard_link_leader(ext).is_none()
                && place.stat()?.is_some_and(|stat| stat.st_nlink > 1)
            {
                own_inode(&place)?;
                renamed.push(path.clone());
            }
            // A set whose recorded leader is not here (asked for): the
            // others cannot be linked to it until it comes, and are not
            // "set back" at every command meanwhile.
            if kind == MetaKind::File && only_leader_missing(&confined, old, &change.new)? {
                let disk = place.display_path();
                let meta = std::fs::symlink_metadata(&disk).at(&disk)?;
                refreshed.push((path.clone(), crate::tree::scan::stat_key(&meta)));
                continue;
            }
            set_meta(
                &place,
                &|leader: &[u8]| confined.locate(leader, false),
                &path,
                kind,
                mode,
                mtime,
                ext,
                &preserve,
                &mut names,
                &mut unapplied,
                &mut undone.notes,
            )?;
            let disk = place.display_path();
            if kind == MetaKind::File {
                let meta = std::fs::symlink_metadata(&disk).at(&disk)?;
                refreshed.push((path.clone(), crate::tree::scan::stat_key(&meta)));
            }
            undone.metadata_restored.push(path);
            continue;
        }
        // New content in a file (the same kind of entry): left in place,
        // served as it is, until the family's version replaces it.
        if matches!(
            (old, &change.new),
            (PathState::File { .. }, PathState::File { .. })
        ) {
            in_place.push((path.clone(), change.new.clone(), change.stat));
            undone.left_in_place.push(path);
            continue;
        }
        let kept = if place.stat()?.is_some() {
            let mut kept = relpath::to_disk_path(&aside_dir, &path);
            let mut n = 0;
            while kept.symlink_metadata().is_ok() {
                n += 1;
                let mut name = relpath::to_disk_path(&aside_dir, &path).into_os_string();
                name.push(format!(".{n}"));
                kept = PathBuf::from(name);
            }
            if let Some(parent) = kept.parent() {
                std::fs::create_dir_all(parent).at(parent)?;
            }
            place.move_out(&kept).at(&kept)?;
            Some(kept)
        } else {
            None
        };
        undone.set_aside.push((path.clone(), kept));
        forget.push(path);
    }
    // Deepest first: setting a folder's metadata does not move its
    // parent's time, but an unwritable parent set first would stop the rest.
    for (place, path, mode, mtime, ext) in dirs_later.into_iter().rev() {
        set_meta(
            &place,
            &|leader: &[u8]| confined.locate(leader, false),
            &path,
            MetaKind::Directory,
            mode,
            mtime,
            &ext,
            &preserve,
            &mut names,
            &mut unapplied,
            &mut undone.notes,
        )?;
        undone.metadata_restored.push(path);
    }
    // A user that is not root cannot give a file to another owner: an owner
    // that differs here is one an import could not apply (said by that
    // import), not a local change, and not something this mirror failed to
    // set back (review 14d item 9).
    if !rustix::process::geteuid().is_root() {
        unapplied.forget("owner");
    }
    // What this user can never apply (not root: a group it is not a
    // member of, security.* attributes) is no failure to set back either:
    // said once per item with a count, as an import says it (fix14i item
    // 3: a "not set back: group" line at every command).
    let (not_root, other): (Vec<_>, Vec<_>) = std::mem::take(&mut unapplied.0)
        .into_iter()
        .partition(|(_, (_, why))| why.starts_with("not running as root"));
    undone.not_applied = crate::sync::apply::unapplied_notes(&crate::tree::meta::Unapplied(
        not_root.into_iter().collect(),
    ));
    undone
        .notes
        .extend(crate::tree::meta::Unapplied(other.into_iter().collect()).lines());
    // What a folder set aside held is gone with it: forgotten too, and
    // asked for (the folder's re-assertion alone would not bring it).
    // Moving a path aside (or linking one again) moved its folder's time:
    // set back too, or the next command would find the folder changed.
    let mut parents: Vec<&[u8]> = undone
        .set_aside
        .iter()
        .filter(|(_, kept)| kept.is_some())
        .map(|(path, _)| path)
        .chain(undone.relinked.iter().map(|(path, _)| path))
        .chain(renamed.iter())
        .map(|path| {
            let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
            &path[..cut]
        })
        .collect();
    parents.sort();
    parents.dedup();
    for parent in parents {
        if forget.iter().any(|f| relpath::is_within(parent, f)) {
            continue;
        }
        if let Some(PathState::Directory {
            mtime: Some(mtime), ..
        }) = entries.get(parent).map(|e| &e.state)
        {
            if let Located::At(place) = confined.locate(parent, false)? {
                place.set_mtime(*mtime)?;
            }
        }
    }
    let gone: Vec<Vec<u8>> = entries
        .iter()
        .filter(|(path, entry)| {
            entry.state != PathState::Deleted
                && !forget.contains(path)
                && relpath::ancestors(path)
                    .iter()
                    .any(|a| forget.iter().any(|f| f.as_slice() == *a))
        })
        .map(|(path, _)| path.clone())
        .collect();
    forget.extend(gone);
    forget.sort();
    undone.upstream = Some(upstream_name(replica, upstream)?);
    let me = replica.identity.replica_id;
    let have: BTreeMap<Id, u64> = replica.state().epoch_row(&me)?.into_iter().collect();
    let first = replica.state().epoch(&me, &me)? + 1;
    let now = crate::sys::clock::now();
    // Asked for: what was set aside or forgotten, and what was left in place.
    let mut asked: Vec<Vec<u8>> = forget
        .iter()
        .cloned()
        .chain(in_place.iter().map(|(path, _, _)| path.clone()))
        .collect();
    asked.sort();
    let requests: Vec<Operation> = asked
        .chunks(packet_format::delta::MAX_REQUESTED_PATHS)
        .enumerate()
        .map(|(n, paths)| Operation {
            origin: me,
            epoch: first + n as u64,
            recorded: now,
            change: packet_format::delta::ContentRequest {
                to: upstream,
                paths: paths.to_vec(),
                have: have.clone(),
            }
            .to_change(),
        })
        .collect();
    let secret = replica.signing_key()?.to_bytes();
    let scanned_ns = outcome.scanned_ns;
    let now_ns = crate::sys::clock::now_ns();
    replica.state_mut().transaction(|tx| {
        for path in &forget {
            state::forget_entry(tx, path)?;
        }
        for (path, stat) in &refreshed {
            state::refresh_stat(tx, path, *stat, scanned_ns)?;
        }
        for op in &requests {
            state::append_operation(tx, op)?;
        }
        if let Some(last) = requests.last() {
            state::set_epoch(tx, &me, &me, last.epoch)?;
            state::seal_own_run(tx, &secret, &me, first, last.epoch)?;
        }
        for (path, local, stat) in &in_place {
            let Some(entry) = entries.get(path) else {
                continue;
            };
            state::put_entry(
                tx,
                &state::EntryWrite {
                    path,
                    state: local,
                    version: &entry.version,
                    author: &entry.author,
                    stat: *stat,
                    scanned_ns: stat.map(|_| scanned_ns),
                },
            )?;
        }
        for path in &asked {
            state::put_content_request(tx, &upstream, path, "asked", now_ns)?;
        }
        Ok(())
    })?;
    Ok(undone)
}

/// Links the removed name `path` (recorded metadata `ext`, at `place`) to
/// another name of its recorded hard-link set that is on disk as recorded
/// (not in `unusable`); returns that name, or `None` where there is none.
fn relink(
    confined: &ConfinedRoot,
    entries: &crate::store::state::Entries,
    unusable: &std::collections::HashSet<Vec<u8>>,
    path: &[u8],
    ext: &crate::ops::Extensions,
    place: &crate::tree::confined::Place,
) -> Result<Option<Vec<u8>>> {
    let Some((other, from)) = relink_source(confined, entries, unusable, path, ext)? else {
        return Ok(None);
    };
    rustix::fs::linkat(
        from.parent(),
        from.name(),
        place.parent(),
        place.name(),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| Error::io(place.display_path(), e.into()))?;
    Ok(Some(other))
}

/// The name [`relink`] links the removed name `path` to, and where it is:
/// the first (in byte order) other name of its recorded hard-link set that
/// is a regular file here and not in `unusable`.
fn relink_source(
    confined: &ConfinedRoot,
    entries: &crate::store::state::Entries,
    unusable: &std::collections::HashSet<Vec<u8>>,
    path: &[u8],
    ext: &crate::ops::Extensions,
) -> Result<Option<(Vec<u8>, crate::tree::confined::Place)>> {
    use crate::tree::meta::hard_link_leader;
    let Some(leader) = hard_link_leader(ext) else {
        return Ok(None);
    };
    let mut others: Vec<&Vec<u8>> = entries
        .iter()
        .filter(|(other, entry)| {
            other.as_slice() != path
                && !unusable.contains(*other)
                && matches!(&entry.state, PathState::File { ext, .. }
                    if hard_link_leader(ext).as_deref() == Some(leader.as_slice()))
        })
        .map(|(other, _)| other)
        .collect();
    others.sort();
    for other in others {
        let Located::At(from) = confined.locate(other, false)? else {
            continue;
        };
        if !from
            .stat()?
            .is_some_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file())
        {
            continue;
        }
        return Ok(Some((other.clone(), from)));
    }
    Ok(None)
}

/// Whether the recorded state `old` and the state seen `new` differ
/// only in the hard-link leader, the recorded leader being absent here.
fn only_leader_missing(confined: &ConfinedRoot, old: &PathState, new: &PathState) -> Result<bool> {
    use crate::tree::meta::keys::HARD_LINK;
    let Some(leader) = old
        .extensions()
        .and_then(crate::tree::meta::hard_link_leader)
    else {
        return Ok(false);
    };
    let without = |state: &PathState| {
        let mut state = state.clone();
        if let PathState::File { ext, .. } = &mut state {
            let mut out = crate::ops::Extensions::default();
            for entry in ext.iter().filter(|e| e.key != HARD_LINK) {
                out.insert(entry.key, entry.value.clone());
            }
            *ext = out;
        }
        state
    };
    if without(old) != without(new) {
        return Ok(false);
    }
    Ok(match confined.locate(&leader, false)? {
        Located::At(place) => place.stat()?.is_none(),
        Located::Blocked(_) => false,
    })
}

/// Gives the file at `place` an inode of its own: its content copied to
/// the reserved temporary name beside it, renamed over it (the other
/// names keep the old inode). Metadata is set by the caller after.
/// For the new local name `path`: the recorded files that are one file
/// with it on disk get an inode of their own (their first name a copy,
/// its metadata the recorded one, the others linked to it); `path` keeps
/// the old inode.
#[allow(clippy::too_many_arguments)]
fn separate_from_local_name(
    confined: &ConfinedRoot,
    entries: &crate::store::state::Entries,
    path: &[u8],
    preserve: &crate::tree::meta::Preserve,
    names: &mut crate::tree::meta::Names,
    unapplied: &mut crate::tree::meta::Unapplied,
    notes: &mut Vec<String>,
    refreshed: &mut Vec<(Vec<u8>, StatKey)>,
    renamed: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let Located::At(place) = confined.locate(path, false)? else {
        return Ok(());
    };
    let Some(stat) = place.stat()? else {
        return Ok(());
    };
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile
        || stat.st_nlink < 2
    {
        return Ok(());
    }
    // Recorded names with this inode number (from the recorded stats, so
    // few files are looked at; one placed by an import and not scanned
    // since has none), checked on disk.
    let mut family: Vec<(Vec<u8>, crate::tree::confined::Place)> = Vec::new();
    for (other, entry) in entries {
        if other.as_slice() == path
            || !matches!(entry.state, PathState::File { .. })
            || entry.stat.is_some_and(|key| key.inode != stat.st_ino)
        {
            continue;
        }
        let Located::At(at) = confined.locate(other, false)? else {
            continue;
        };
        if at
            .stat()?
            .is_some_and(|s| (s.st_dev, s.st_ino) == (stat.st_dev, stat.st_ino))
        {
            family.push((other.clone(), at));
        }
    }
    family.sort_by(|a, b| a.0.cmp(&b.0));
    for (n, (name, at)) in family.iter().enumerate() {
        let PathState::File {
            mode, mtime, ext, ..
        } = &entries[name].state
        else {
            continue;
        };
        let mut ext = ext.clone();
        if n == 0 {
            own_inode(at)?;
        } else {
            // Linked to the first, whatever the recorded leader.
            ext.insert(
                crate::tree::meta::keys::HARD_LINK,
                crate::tree::meta::encode(&family[0].0),
            );
        }
        set_meta(
            at,
            &|leader: &[u8]| confined.locate(leader, false),
            name,
            MetaKind::File,
            Some(*mode),
            Some(*mtime),
            &ext,
            preserve,
            names,
            unapplied,
            notes,
        )?;
        let disk = at.display_path();
        let meta = std::fs::symlink_metadata(&disk).at(&disk)?;
        refreshed.push((name.to_vec(), crate::tree::scan::stat_key(&meta)));
        renamed.push(name.to_vec());
    }
    Ok(())
}

fn own_inode(place: &crate::tree::confined::Place) -> Result<()> {
    let temp = std::ffi::OsStr::new(crate::store::layout::TEMP_NEW_FILE);
    let disk = place.display_path();
    // The reserved name: anything there is a leftover of this step.
    let _ = place.remove_sibling(temp);
    let mut from = place.open_read().at(&disk)?;
    let mut to = place.create_sibling(temp).at(&disk)?;
    std::io::copy(&mut from, &mut to).at(&disk)?;
    to.sync_all().at(&disk)?;
    place.rename_sibling(temp).at(&disk)
}

/// One line per thing undone, for the command's report: e.g. "mirror: etc/hosts
/// changed here; set aside as .syncreplica/deleted/20261130/etc/hosts, the
/// family's version asked for from alpha".
pub fn notes(undone: &Undone) -> Vec<String> {
    let upstream = crate::error::printable(undone.upstream.as_deref().unwrap_or("?"));
    let mut notes: Vec<String> = undone
        .set_aside
        .iter()
        .map(|(path, kept)| match kept {
            Some(kept) => format!(
                "mirror: {} changed here; set aside as {}, the family's version asked for from {upstream}",
                relpath::display(path),
                crate::error::printable_path(kept)
            ),
            None => format!(
                "mirror: {} deleted here; the family's version asked for from {upstream}",
                relpath::display(path)
            ),
        })
        .collect();
    notes.extend(undone.left_in_place.iter().map(|path| {
        format!(
            "mirror: {} changed here; left in place until the family's version, asked for from \
             {upstream}, replaces it",
            relpath::display(path)
        )
    }));
    notes.extend(undone.relinked.iter().map(|(path, to)| {
        format!(
            "mirror: {} deleted here; linked again to {} (a name of its hard-link set)",
            relpath::display(path),
            relpath::display(to)
        )
    }));
    notes.extend(undone.metadata_restored.iter().map(|path| {
        format!(
            "mirror: {}: metadata changed here; set back to the family's",
            relpath::display(path)
        )
    }));
    notes.extend(
        undone
            .notes
            .iter()
            .map(|note| format!("mirror: not set back: {note}")),
    );
    notes.extend(
        undone
            .not_applied
            .iter()
            .map(|note| format!("not applied here: {note}")),
    );
    // New local paths the family does not have are not repeated by every
    // command (they are found by every scan): `-status` lists them.
    notes
}
