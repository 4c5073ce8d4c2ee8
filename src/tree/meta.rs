//! System metadata beyond mode and mtime: owner and group, POSIX ACLs,
//! extended attributes and hard-link sets, carried in a path state's
//! metadata map (packet-format SPEC.md §6.4, keys 2 to 10).
//!
//! Reading ([`read`]) happens in the scan, on paths that are never
//! followed (`l*` calls). Applying ([`apply`]) happens in the import and in
//! `mkreplica -import`, through a path the caller proved inside the
//! replica. What a replica reads and applies is its `preserve` setting
//! ([`Preserve`]); an item it keeps but cannot apply (not root, a
//! filesystem without xattrs) is counted in [`Unapplied`] so the import
//! warns once with a count.
//!
//! POSIX ACLs are read and written as the kernel's `system.posix_acl_*`
//! attributes (through the `xattr` crate): the kernel's format is stable
//! (version 2: a u32 header, then `{tag u16, perm u16, id u32}` entries,
//! little-endian), and this keeps libacl out of the build.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ops::Extensions;

pub use crate::store::config::meta_keys as keys;

/// A user or a group: the numeric id, and the name it had where it was
/// read (none when that system had no name for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: u32,
    pub name: Option<String>,
}

/// Key 2: owner user and group; `None` where the origin does not keep it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub user: Option<Principal>,
    pub group: Option<Principal>,
}

/// Key 4: extended attributes outside `system.*`, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// One POSIX ACL entry. `tag`: 1 owner, 2 named user, 4 owning group,
/// 8 named group, 16 mask, 32 other (the kernel's codes). `perm`: rwx bits.
/// `who`: the user or group of a named entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    pub who: Option<Principal>,
}

/// Keys 6 and 8: an access or default ACL, in the kernel's order.
pub type Acl = Vec<AclEntry>;

const ACL_XATTR_ACCESS: &str = "system.posix_acl_access";
const ACL_XATTR_DEFAULT: &str = "system.posix_acl_default";
const ACL_USER: u16 = 2;
const ACL_GROUP: u16 = 8;
const ACL_UNDEFINED_ID: u32 = u32::MAX;

pub use crate::store::config::Preserve;

/// Id <-> name lookups through the system's user and group databases
/// (NSS), cached for one scan or import.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
    user_ids: HashMap<String, Option<u32>>,
    group_ids: HashMap<String, Option<u32>>,
}

impl Names {
    pub fn user(&mut self, id: u32, numeric: bool) -> Principal {
        let name = if numeric {
            None
        } else {
            self.users
                .entry(id)
                .or_insert_with(|| {
                    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id))
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                })
                .clone()
        };
        Principal { id, name }
    }

    pub fn group(&mut self, id: u32, numeric: bool) -> Principal {
        let name = if numeric {
            None
        } else {
            self.groups
                .entry(id)
                .or_insert_with(|| {
                    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(id))
                        .ok()
                        .flatten()
                        .map(|g| g.name)
                })
                .clone()
        };
        Principal { id, name }
    }

    /// The local id for a user: by name where it has one known here (and
    /// names are used), else the number.
    pub fn local_uid(&mut self, who: &Principal, numeric: bool) -> u32 {
        match (&who.name, numeric) {
            (Some(name), false) => self
                .user_ids
                .entry(name.clone())
                .or_insert_with(|| {
                    nix::unistd::User::from_name(name)
                        .ok()
                        .flatten()
                        .map(|u| u.uid.as_raw())
                })
                .unwrap_or(who.id),
            _ => who.id,
        }
    }

    pub fn local_gid(&mut self, who: &Principal, numeric: bool) -> u32 {
        match (&who.name, numeric) {
            (Some(name), false) => self
                .group_ids
                .entry(name.clone())
                .or_insert_with(|| {
                    nix::unistd::Group::from_name(name)
                        .ok()
                        .flatten()
                        .map(|g| g.gid.as_raw())
                })
                .unwrap_or(who.id),
            _ => who.id,
        }
    }
}

/// The special-file kind of a file type; `None` for a file, directory
/// or symlink.
pub fn special_kind_of(file_type: std::fs::FileType) -> Option<u32> {
    use crate::ops::special_kind;
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        Some(special_kind::FIFO)
    } else if file_type.is_socket() {
        Some(special_kind::SOCKET)
    } else if file_type.is_char_device() {
        Some(special_kind::CHAR_DEVICE)
    } else if file_type.is_block_device() {
        Some(special_kind::BLOCK_DEVICE)
    } else {
        None
    }
}

/// Whether an error means "this filesystem has no such attributes" (not a
/// failure of this path).
fn unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(code) if code == rustix::io::Errno::OPNOTSUPP.raw_os_error()
            || code == rustix::io::Errno::NOTSUP.raw_os_error()
    )
}

/// Why `item` could not be applied, in one wording for every item: a
/// refusal to a user that is not root says so (not the raw "Operation not
/// permitted"), naming what it lacks; a filesystem that has no such thing
/// says that; anything else is the error itself (review 14b item 8).
pub fn why_not(item: &str, err: &io::Error) -> String {
    let refused = matches!(
        err.raw_os_error(),
        Some(code) if code == rustix::io::Errno::PERM.raw_os_error()
            || code == rustix::io::Errno::ACCESS.raw_os_error()
    );
    if refused && !rustix::process::geteuid().is_root() {
        return match item {
            "owner" => "not running as root (the files are this user's here)",
            "group" => "not running as root, and this user is not a member of the group",
            "xattrs" => "not running as root (only user.* attributes can be set)",
            _ => "not running as root",
        }
        .to_string();
    }
    if unsupported(err) {
        return "this filesystem does not support them".to_string();
    }
    err.to_string()
}

/// Set while a replica's recorded state was last reconciled by a user
/// that is not root and root runs it now, until root has set on disk what
/// that user could not ([`crate::sync::kept`]): meanwhile a scan takes
/// what only root can apply from the recorded state, as that user's did.
static AS_UNPRIVILEGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// See [`AS_UNPRIVILEGED`].
pub fn set_as_unprivileged(yes: bool) {
    AS_UNPRIVILEGED.store(yes, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process reads and applies as root (see [`AS_UNPRIVILEGED`]).
pub fn acts_as_root() -> bool {
    rustix::process::geteuid().is_root()
        && !AS_UNPRIVILEGED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Decodes the kernel's ACL attribute; `None` when it is malformed.
fn decode_acl(bytes: &[u8], names: &mut Names, numeric: bool) -> Option<Acl> {
    let (header, body) = bytes.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*header) != 2 || body.len() % 8 != 0 {
        return None;
    }
    Some(
        body.chunks_exact(8)
            .map(|entry| {
                let tag = u16::from_le_bytes([entry[0], entry[1]]);
                let perm = u16::from_le_bytes([entry[2], entry[3]]);
                let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
                let who = match tag {
                    ACL_USER => Some(names.user(id, numeric)),
                    ACL_GROUP => Some(names.group(id, numeric)),
                    _ => None,
                };
                AclEntry { tag, perm, who }
            })
            .collect(),
    )
}

fn encode_acl(acl: &Acl, names: &mut Names, numeric: bool) -> Vec<u8> {
    let mut bytes = 2u32.to_le_bytes().to_vec();
    for entry in acl {
        let id = match (&entry.who, entry.tag) {
            (Some(who), ACL_USER) => names.local_uid(who, numeric),
            (Some(who), ACL_GROUP) => names.local_gid(who, numeric),
            _ => ACL_UNDEFINED_ID,
        };
        bytes.extend_from_slice(&entry.tag.to_le_bytes());
        bytes.extend_from_slice(&entry.perm.to_le_bytes());
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    bytes
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("metadata encodes")
}

/// The metadata of the object at `path` (never followed), as `preserve`
/// keeps it, set into `ext` (keys `preserve` keeps are replaced or
/// removed; others are left). `uid`/`gid` come from the caller's `lstat`.
/// `hard_link`: the leader of the path's hard-link set (its smallest name
/// in the tree), when it has other names in the tree.
#[allow(clippy::too_many_arguments)]
pub fn read(
    path: &Path,
    uid: u32,
    gid: u32,
    is_symlink: bool,
    is_dir: bool,
    hard_link: Option<&[u8]>,
    preserve: &Preserve,
    names: &mut Names,
    ext: &mut Extensions,
) {
    let kept = preserve.keys();
    let mut others = Extensions::default();
    for entry in ext.iter().filter(|entry| !kept.contains(&entry.key)) {
        others.insert(entry.key, entry.value.clone());
    }
    *ext = others;
    if preserve.owner || preserve.group {
        let owner = Owner {
            user: preserve
                .owner
                .then(|| names.user(uid, preserve.numeric_ids)),
            group: preserve
                .group
                .then(|| names.group(gid, preserve.numeric_ids)),
        };
        ext.insert(keys::OWNER, encode(&owner));
    }
    if preserve.xattrs || (preserve.acls && !is_symlink) {
        // An unreadable or unsupported attribute list reads as none.
        let listed: Vec<std::ffi::OsString> = match xattr::list(path) {
            Ok(list) => list.collect(),
            Err(_) => Vec::new(),
        };
        let mut attrs: Xattrs = Vec::new();
        for name in listed {
            let name_bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()).to_vec();
            if name_bytes.starts_with(b"system.") {
                continue;
            }
            if preserve.xattrs {
                if let Ok(Some(value)) = xattr::get(path, &name) {
                    attrs.push((name_bytes, value));
                }
            }
        }
        if preserve.xattrs && !attrs.is_empty() {
            attrs.sort();
            ext.insert(keys::XATTRS, encode(&attrs));
        }
        if preserve.acls && !is_symlink {
            let mut read_acl = |attr: &str, key: u32| {
                if let Ok(Some(bytes)) = xattr::get(path, attr) {
                    if let Some(acl) = decode_acl(&bytes, names, preserve.numeric_ids) {
                        ext.insert(key, encode(&acl));
                    }
                }
            };
            read_acl(ACL_XATTR_ACCESS, keys::ACL_ACCESS);
            if is_dir {
                read_acl(ACL_XATTR_DEFAULT, keys::ACL_DEFAULT);
            }
        }
    }
    if let (true, Some(leader)) = (preserve.hardlinks, hard_link) {
        ext.insert(keys::HARD_LINK, encode(&leader.to_vec()));
    }
}

/// Users and groups are recorded by name with the id as a fallback, and
/// applied the way this replica applies them ([`Names::local_uid`]): by
/// name where names are kept and the name resolves here, by number under
/// `numeric_ids`. A principal the scan saw (`seen`, read the way this
/// replica reads) that is the one applying `recorded` gives here is not a
/// local change: it becomes `recorded`. Without this a member whose name
/// map differs (same name, other id) or that keeps numeric ids recorded
/// every owner an import gave it as a change, and sent it back (review
/// 14c item 2).
fn same_as_applied(
    seen: &mut Principal,
    recorded: &Principal,
    group: bool,
    names: &mut Names,
    numeric: bool,
) {
    let mut local = |numeric: bool| {
        if group {
            names.local_gid(recorded, numeric)
        } else {
            names.local_uid(recorded, numeric)
        }
    };
    // Either way of applying counts: a member whose numeric_ids was just
    // switched holds what the other way gave, and that is no local change
    // (review 14d item 2: it was recorded, and sent the family this site's
    // ids); its next import of the path applies as the setting now says.
    if *seen != *recorded && (seen.id == local(numeric) || seen.id == local(!numeric)) {
        *seen = recorded.clone();
    }
}

/// [`same_as_applied`] for the owner and the named ACL entries of `new`
/// (what the scan read), against `old` (the recorded metadata).
pub fn keep_recorded_principals(
    new: &mut Extensions,
    old: &Extensions,
    preserve: &Preserve,
    names: &mut Names,
) {
    let numeric = preserve.numeric_ids;
    if let (Some(mut seen), Some(recorded)) = (owner(new), owner(old)) {
        if let (Some(seen), Some(recorded)) = (seen.user.as_mut(), recorded.user.as_ref()) {
            same_as_applied(seen, recorded, false, names, numeric);
        }
        if let (Some(seen), Some(recorded)) = (seen.group.as_mut(), recorded.group.as_ref()) {
            same_as_applied(seen, recorded, true, names, numeric);
        }
        new.insert(keys::OWNER, encode(&seen));
    }
    for key in [keys::ACL_ACCESS, keys::ACL_DEFAULT] {
        let acl = |ext: &Extensions| -> Option<Acl> { postcard::from_bytes(ext.get(key)?).ok() };
        let (Some(mut seen), Some(recorded)) = (acl(new), acl(old)) else {
            continue;
        };
        if seen.len() != recorded.len() {
            continue;
        }
        for (seen, recorded) in seen.iter_mut().zip(&recorded) {
            if seen.tag != recorded.tag || seen.perm != recorded.perm {
                continue;
            }
            if let (Some(who), Some(recorded_who)) = (seen.who.as_mut(), recorded.who.as_ref()) {
                same_as_applied(who, recorded_who, seen.tag == ACL_GROUP, names, numeric);
            }
        }
        new.insert(key, encode(&seen));
    }
}

/// For a process that is not root: the items it can never apply come
/// from the recorded state `old`, not from disk (a file's owner, extended
/// attributes outside `user.*`, and a group it is not a member of), so
/// that what an import could not apply here never looks like a local
/// change (which would go back to the family as one). Root applies
/// everything, and is not asked.
pub fn carry_unappliable(new: &mut Extensions, old: &Extensions) {
    if acts_as_root() {
        return;
    }
    if let (Some(recorded), Some(seen)) = (owner(old), owner(new)) {
        let group = match (seen.group, recorded.group.clone()) {
            // Root reading as the user before it: which groups that user
            // could set is not known here, so none is taken from disk.
            (Some(_), Some(recorded))
                if AS_UNPRIVILEGED.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                Some(recorded)
            }
            (Some(seen), Some(recorded)) => Some(group_seen_or_recorded(seen, recorded)),
            (_, recorded) => recorded,
        };
        let carried = Owner {
            user: recorded.user,
            group,
        };
        new.insert(keys::OWNER, encode(&carried));
    } else if let Some(recorded) = old.get(keys::OWNER) {
        if new.get(keys::OWNER).is_some() {
            new.insert(keys::OWNER, recorded.to_vec());
        }
    }
    let attrs = |ext: &Extensions| -> Xattrs {
        ext.get(keys::XATTRS)
            .and_then(|bytes| postcard::from_bytes(bytes).ok())
            .unwrap_or_default()
    };
    let (seen, recorded) = (attrs(new), attrs(old));
    if recorded.iter().all(|(name, _)| name.starts_with(b"user.")) {
        return;
    }
    let mut merged: Xattrs = seen
        .into_iter()
        .filter(|(name, _)| name.starts_with(b"user."))
        .chain(
            recorded
                .into_iter()
                .filter(|(name, _)| !name.starts_with(b"user.")),
        )
        .collect();
    merged.sort();
    new.insert(keys::XATTRS, encode(&merged));
}

/// The group a scan by a user that is not root records: the recorded one
/// when the file has it (by number or name); the one on disk when it was
/// set here: when this user could set the recorded one (so an import
/// did), or when the file is not in this user's own group (where a file
/// an import could not give the recorded group stays). A `chgrp` to this
/// user's own group of a file whose recorded group it cannot set leaves
/// the group the import left, and is not seen: it changes nothing on
/// disk (its ctime moves, as a `chmod` to the same mode moves it).
fn group_seen_or_recorded(seen: Principal, recorded: Principal) -> Principal {
    let same = seen.id == recorded.id || (seen.name.is_some() && seen.name == recorded.name);
    if same {
        return recorded;
    }
    let egid = rustix::process::getegid().as_raw();
    let local = |who: &Principal| {
        who.name
            .as_deref()
            .and_then(|name| nix::unistd::Group::from_name(name).ok().flatten())
            .map_or(who.id, |g| g.gid.as_raw())
    };
    let member = |gid: u32| {
        gid == egid
            || nix::unistd::getgroups().is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
    };
    if member(local(&recorded)) || seen.id != egid {
        seen
    } else {
        recorded
    }
}

/// The setuid (`0o4000`) and setgid (`0o2000`) bits of a file or special
/// file this replica sets, for a state with metadata `ext`: only as root,
/// and only where it gives the file its recorded owner (setuid) or group
/// (setgid), as `rsync -aHAX` does. Elsewhere the file would be setuid to
/// whoever owns it here (this user, or root where owners are not kept).
/// Returns the bits kept (a mask) and why the others are not.
pub fn set_id_bits_kept(ext: &Extensions, preserve: &Preserve) -> (u32, &'static str) {
    if !acts_as_root() {
        return (0, "not running as root");
    }
    let owner = owner(ext).unwrap_or_default();
    let mut kept = 0;
    if preserve.owner && owner.user.is_some() {
        kept |= 0o4000;
    }
    if preserve.group && owner.group.is_some() {
        kept |= 0o2000;
    }
    // A member that keeps owners sets the bits whenever the state names
    // the owner: a member that does not keep them carries the recorded
    // one (`carry_unobserved`), so only a file that member made itself
    // comes without. That file is not given the bits: a user that is not
    // root at its own member would otherwise make root's setuid files at
    // every member that keeps owners.
    let why =
        if (preserve.owner && owner.user.is_none()) || (preserve.group && owner.group.is_none()) {
            "the origin recorded no owner (it does not keep owners): the file would be setuid to \
         whoever owns it here"
        } else {
            "owners are not kept here: the file would be setuid to whoever owns it here"
        };
    (kept, why)
}

/// For a replica that cannot set them ([`set_id_bits_kept`]): the
/// setuid/setgid bits of a file's recorded mode (`old_mode`, metadata
/// `old_ext`) that an import could not apply, put into `new_mode` (what
/// the scan saw), so that their absence here never looks like a local
/// change (which would take them from the family).
pub fn carry_set_id_bits(
    new_mode: &mut u32,
    old_mode: u32,
    old_ext: &Extensions,
    preserve: &Preserve,
) {
    let (kept, _) = set_id_bits_kept(old_ext, preserve);
    *new_mode |= old_mode & 0o6000 & !kept;
}

/// `ext` without the keys this replica does not preserve: what its
/// comparisons (the tree digest) look at.
pub fn kept_only(ext: &Extensions, preserve: &Preserve) -> Extensions {
    let kept = preserve.keys();
    let mut out = Extensions::default();
    for entry in ext.iter() {
        if !keys::OBSERVED.contains(&entry.key) || kept.contains(&entry.key) {
            out.insert(entry.key, entry.value.clone());
        }
    }
    out
}

/// The leader of a hard-link set named in `ext`, if any.
pub fn hard_link_leader(ext: &Extensions) -> Option<Vec<u8>> {
    postcard::from_bytes(ext.get(keys::HARD_LINK)?).ok()
}

/// The owner recorded in `ext`, if any.
pub fn owner(ext: &Extensions) -> Option<Owner> {
    postcard::from_bytes(ext.get(keys::OWNER)?).ok()
}

/// Items of metadata an import or creation could not apply, by item name,
/// with how many paths each affected: warned about once with the count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unapplied(pub std::collections::BTreeMap<&'static str, (u64, String)>);

impl Unapplied {
    pub fn note(&mut self, item: &'static str, why: String) {
        let slot = self.0.entry(item).or_insert((0, why));
        slot.0 += 1;
    }

    /// Drops what was noted of `item` (a mirror's note of what it did not
    /// set back leaves out what its user could not have changed).
    pub fn forget(&mut self, item: &str) {
        self.0.remove(item);
    }

    pub fn merge(&mut self, other: Unapplied) {
        for (item, (count, why)) in other.0 {
            let slot = self.0.entry(item).or_insert((0, why));
            slot.0 += count;
        }
    }

    /// One line per item, e.g. "owner not applied to 12 paths: Operation
    /// not permitted (not running as root)".
    pub fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(item, (count, why))| {
                let paths = if *count == 1 { "path" } else { "paths" };
                format!("{item} not applied to {count} {paths}: {why}")
            })
            .collect()
    }
}

/// Applies the metadata of `ext` that `preserve` keeps to the object at
/// `path` (a name the caller proved inside the replica; a `/proc/self/fd`
/// path of an `O_PATH` handle, so it is followed to exactly that object),
/// then `mode` (after the owner: `chown` clears setuid bits) for files and
/// directories; a file's setuid/setgid bits only as [`set_id_bits_kept`]
/// allows. What cannot be applied is counted in `unapplied`, never an
/// error: the content is in place either way.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    path: &Path,
    ext: &Extensions,
    mode: Option<u32>,
    is_symlink: bool,
    is_dir: bool,
    preserve: &Preserve,
    names: &mut Names,
    unapplied: &mut Unapplied,
) -> io::Result<()> {
    let stat = rustix::fs::stat(path).map_err(io::Error::from)?;
    // Setuid/setgid bits of a file or special file go on only where its
    // owner does ([`set_id_bits_kept`]); the others are counted.
    let (mut set_id_kept, mut set_id_why) = if is_dir {
        (0o6000, "")
    } else {
        set_id_bits_kept(ext, preserve)
    };
    let recorded_owner = owner(ext);
    // A user that is not root cannot give files another owner: they are
    // its own here, and that is said with a count (as a group it cannot
    // set is).
    if let (false, Some(user)) = (
        preserve.owner || acts_as_root(),
        recorded_owner.as_ref().and_then(|o| o.user.as_ref()),
    ) {
        if names.local_uid(user, preserve.numeric_ids) != stat.st_uid {
            unapplied.note(
                "owner",
                "not running as root (the files are this user's here)".to_string(),
            );
        }
    }
    if let (true, Some(owner)) = (preserve.owner || preserve.group, recorded_owner) {
        let uid = owner
            .user
            .as_ref()
            .filter(|_| preserve.owner)
            .map(|who| names.local_uid(who, preserve.numeric_ids))
            .filter(|uid| *uid != stat.st_uid);
        let gid = owner
            .group
            .as_ref()
            .filter(|_| preserve.group)
            .map(|who| names.local_gid(who, preserve.numeric_ids))
            .filter(|gid| *gid != stat.st_gid);
        if uid.is_some() || gid.is_some() {
            let result = rustix::fs::chown(
                path,
                uid.map(rustix::fs::Uid::from_raw),
                gid.map(rustix::fs::Gid::from_raw),
            );
            if let Err(errno) = result {
                let err = io::Error::from(errno);
                if uid.is_some() {
                    unapplied.note("owner", why_not("owner", &err));
                }
                if gid.is_some() {
                    unapplied.note("group", why_not("group", &err));
                }
                // A directory's setgid bit only passes its group on.
                let lost = set_id_kept & (uid.map_or(0, |_| 0o4000) | gid.map_or(0, |_| 0o2000));
                if !is_dir && lost != 0 {
                    set_id_kept &= !lost;
                    set_id_why = "the owner or group could not be set";
                }
            }
        }
    }
    if preserve.xattrs {
        let wanted: Xattrs = ext
            .get(keys::XATTRS)
            .and_then(|bytes| postcard::from_bytes(bytes).ok())
            .unwrap_or_default();
        let present: Vec<std::ffi::OsString> = match xattr::list_deref(path) {
            Ok(list) => list.collect(),
            Err(err) if unsupported(&err) => Vec::new(),
            Err(err) => return Err(err),
        };
        // The count is of paths: a file whose four attributes all fail is
        // one path not applied, so only the first failure is noted.
        let mut failed: Option<io::Error> = None;
        for name in &present {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
            if bytes.starts_with(b"system.") || wanted.iter().any(|(n, _)| n == bytes) {
                continue;
            }
            if let Err(err) = xattr::remove_deref(path, name) {
                failed.get_or_insert(err);
            }
        }
        for (name, value) in &wanted {
            let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
            if xattr::get_deref(path, name).ok().flatten().as_deref() == Some(value.as_slice()) {
                continue;
            }
            if let Err(err) = xattr::set_deref(path, name, value) {
                failed.get_or_insert(err);
            }
        }
        if let Some(err) = failed {
            unapplied.note("xattrs", why_not("xattrs", &err));
        }
    }
    if preserve.acls && !is_symlink {
        let mut put = |attr: &str, key: u32| {
            let wanted: Option<Acl> = ext.get(key).and_then(|b| postcard::from_bytes(b).ok());
            let now = xattr::get_deref(path, attr).ok().flatten();
            let result = match wanted {
                Some(acl) => {
                    let bytes = encode_acl(&acl, names, preserve.numeric_ids);
                    if now.as_deref() == Some(bytes.as_slice()) {
                        return;
                    }
                    xattr::set_deref(path, attr, &bytes)
                }
                None if now.is_some() => xattr::remove_deref(path, attr),
                None => return,
            };
            if let Err(err) = result {
                unapplied.note("acls", why_not("acls", &err));
            }
        };
        put(ACL_XATTR_ACCESS, keys::ACL_ACCESS);
        if is_dir {
            put(ACL_XATTR_DEFAULT, keys::ACL_DEFAULT);
        }
    }
    if let (Some(mut mode), false) = (mode, is_symlink) {
        if mode & 0o6000 & !set_id_kept != 0 {
            unapplied.note("setuid/setgid bits", set_id_why.to_string());
            mode &= !(0o6000 & !set_id_kept);
        }
        let now = rustix::fs::stat(path).map_err(io::Error::from)?;
        if now.st_mode & 0o7777 != mode & 0o7777 {
            rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
                .map_err(io::Error::from)?;
        }
    }
    Ok(())
}

/// `ext` without the keys this version observes on disk: what a scan
/// carries over from the recorded state.
pub fn without_observed(ext: &Extensions) -> Extensions {
    let mut out = Extensions::default();
    for entry in ext.iter() {
        if !keys::OBSERVED.contains(&entry.key) {
            out.insert(entry.key, entry.value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_attribute_round_trips_by_number() {
        // user::rw-, user:4242:r--, group::r--, mask::r--, other::---
        let mut bytes = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 4242),
            (4, 4, u32::MAX),
            (16, 4, u32::MAX),
            (32, 0, u32::MAX),
        ] {
            bytes.extend_from_slice(&tag.to_le_bytes());
            bytes.extend_from_slice(&perm.to_le_bytes());
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        let mut names = Names::default();
        let acl = decode_acl(&bytes, &mut names, true).unwrap();
        assert_eq!(acl.len(), 5);
        assert_eq!(
            acl[1].who,
            Some(Principal {
                id: 4242,
                name: None
            })
        );
        assert_eq!(encode_acl(&acl, &mut names, true), bytes);
        assert!(decode_acl(&bytes[..7], &mut names, true).is_none());
    }

    #[test]
    fn preserve_names_are_checked() {
        let p = Preserve::from_names(&["owner".into(), "acls".into()], false).unwrap();
        assert!(p.owner && p.acls && !p.group && !p.xattrs);
        assert_eq!(
            p.keys(),
            vec![keys::OWNER, keys::ACL_ACCESS, keys::ACL_DEFAULT]
        );
        let err = Preserve::from_names(&["acl".into()], false).unwrap_err();
        assert!(err.contains("\"acl\""), "{err}");
    }
}
