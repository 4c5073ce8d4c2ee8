//! Two concurrent versions of one object's metadata, merged field by field
//! (rule 5 of [`super`]; issue 14). Applies to two directories, and to two
//! files with the same content, two symlinks with the same target or two
//! special files of the same kind and device: whatever differs is
//! metadata, so nothing is lost by merging and no conflict copy is made.
//!
//! Every field's rule is a join (commutative, associative, idempotent), so
//! every member merges the same versions to the same state, whatever the
//! order they arrive in, and the state merged from two versions merged
//! with a third equals any other order's:
//! - mode: the bits both allow (read, write, execute, setuid, setgid: the
//!   stricter), the sticky bit if either has it (it restricts deletion);
//! - mtime: the newer (a directory's always moves on as entries come and
//!   go, so a directory's is reported only beside another field that
//!   differed);
//! - owner user and group, separately: the lower id (root's 0 first: the
//!   stricter owner), then the name; a side that does not keep it yields;
//! - access and default ACLs, each whole: the one with fewer entries (none
//!   at all first: `setfacl -b` stays), then the smaller entries; the
//!   access ACL's owner, group-class and other permissions then follow
//!   the merged mode, as the kernel keeps them; in a three-way merge where
//!   both sides changed the access ACL's entries, the ACL kept keeps its
//!   own mask and the mode's group class follows it (the result is that
//!   side's ACL, as reported);
//! - extended attributes, per name: every name either side has; of two
//!   values, the greater bytes;
//! - any other metadata key: the greater encoding (absent counts least).
//!
//! With the versions' common ancestor (the base, [`merge3`]) the merge is
//! three-way, field by field: a field only one side changed since the
//! base takes that side's value, silently (a `chown` on one member and a
//! `chmod` on another both stay); only a field both sides changed, to
//! different values, follows the rules above and is reported (which
//! value was kept, whose it was and the other value). The owner's user
//! and group and each extended attribute count as fields of their own.
//! Without a base (history scrubbed, or the object made on both sides) a
//! merge cannot tell which side changed a field: every field that
//! differed follows the rules and is reported.

use crate::ops::{Extensions, PathState, Timestamp};
use crate::tree::meta::{keys, Acl, AclEntry, Owner, Principal, Xattrs};

/// The two sides' names, for the report, and what each side's members
/// held of it: a side that is itself a merge of several members' versions
/// names, per field, the member whose value it is (review 14c item 3).
pub(crate) struct Sides<'a> {
    pub a: &'a str,
    pub b: &'a str,
    /// Per side, members' own latest versions it descends from, by name
    /// (empty: the side's name answers for every field).
    pub held_a: &'a [(String, PathState)],
    pub held_b: &'a [(String, PathState)],
}

impl<'a> Sides<'a> {
    /// Sides named `a` and `b`, nothing known of what they merged.
    pub fn named(a: &'a str, b: &'a str) -> Sides<'a> {
        Sides {
            a,
            b,
            held_a: &[],
            held_b: &[],
        }
    }

    /// The name of the member of side `a` (`first`) or `b` whose own
    /// version `has` the value reported: the side's name when its own
    /// version has it (or nothing is known), else the first other member
    /// whose version has it.
    fn who(&self, first: bool, has: impl Fn(&PathState) -> bool) -> &'a str {
        let (name, held) = if first {
            (self.a, self.held_a)
        } else {
            (self.b, self.held_b)
        };
        if held
            .iter()
            .any(|(member, state)| member == name && has(state))
        {
            return name;
        }
        held.iter()
            .find(|(_, state)| has(state))
            .map_or(name, |(member, _)| member.as_str())
    }
}

fn mode_of(state: &PathState) -> Option<u32> {
    parts(state).and_then(|p| p.0)
}

fn ext_value(state: &PathState, key: u32) -> Option<Vec<u8>> {
    parts(state).and_then(|p| p.2.get(key).map(<[u8]>::to_vec))
}

/// `a` and `b` merged three-way against their common ancestor `base`
/// (see the module comment), and one phrase per field both sides changed
/// to different values. Where `base` is `None` or another kind of object
/// than `a` and `b`, [`merge`]. `None` as [`merge`].
pub(crate) fn merge3(
    base: Option<&PathState>,
    a: &PathState,
    b: &PathState,
    sides: &Sides,
) -> Option<(PathState, Vec<String>)> {
    let (Some(base), Some(mut pa), Some(mut pb)) = (base, parts(a), parts(b)) else {
        return merge(a, b, sides);
    };
    let Some(po) =
        parts(base).filter(|_| std::mem::discriminant(base) == std::mem::discriminant(a))
    else {
        return merge(a, b, sides);
    };
    // Both sides gave the object other access ACLs: each ACL's mask is
    // its side's group class of the mode (a `setfacl` that changes the
    // mask changes the mode), so those bits go with the ACL kept, not with
    // the mode merged (review 14e item 4: the report named one side's ACL,
    // and the disk got it with the other side's mask).
    let acl_of = |p: &Parts| decode::<Acl>(p.2.get(keys::ACL_ACCESS)).flatten();
    let acl_conflict = acl_of(&pa) != acl_of(&po)
        && acl_of(&pb) != acl_of(&po)
        && acl_of(&pa).as_ref().map(acl_rank) != acl_of(&pb).as_ref().map(acl_rank);
    // A field one side left as the base had it takes the other side's
    // value on both sides: the two-way merge then has nothing to decide.
    if acl_conflict {
        let group = |m: Option<u32>| m.map_or(0, |m| m & 0o070);
        let rest = |m: Option<u32>| m.map(|m| m & !0o070);
        let (mut ra, mut rb) = (rest(pa.0), rest(pb.0));
        one_sided(&mut ra, &mut rb, &rest(po.0));
        (pa.0, pb.0) = (ra.map(|m| m | group(pa.0)), rb.map(|m| m | group(pb.0)));
    } else {
        one_sided(&mut pa.0, &mut pb.0, &po.0);
    }
    one_sided(&mut pa.1, &mut pb.1, &po.1);
    let mut keys_of: Vec<u32> = [&pa.2, &pb.2, &po.2]
        .iter()
        .flat_map(|ext| ext.iter().map(|e| e.key))
        .collect();
    keys_of.sort_unstable();
    keys_of.dedup();
    let (mut ext_a, mut ext_b) = (Extensions::default(), Extensions::default());
    for key in keys_of {
        let (mut va, mut vb, vo) = (
            pa.2.get(key).map(<[u8]>::to_vec),
            pb.2.get(key).map(<[u8]>::to_vec),
            po.2.get(key).map(<[u8]>::to_vec),
        );
        match key {
            keys::OWNER => one_sided_owner(&mut va, &mut vb, &vo),
            keys::XATTRS => one_sided_xattrs(&mut va, &mut vb, &vo),
            _ => one_sided(&mut va, &mut vb, &vo),
        }
        for (ext, value) in [(&mut ext_a, va), (&mut ext_b, vb)] {
            if let Some(value) = value {
                ext.insert(key, value);
            }
        }
    }
    (pa.2, pb.2) = (ext_a, ext_b);
    let masks = (mask_of(acl_of(&pa)), mask_of(acl_of(&pb)));
    let ranks = (
        acl_of(&pa).as_ref().map(acl_rank),
        acl_of(&pb).as_ref().map(acl_rank),
    );
    let modes = (pa.0, pb.0);
    let (mut merged, mut notes) = merge(&with_parts(a, pa), &with_parts(b, pb), sides)?;
    if acl_conflict {
        // The ACL kept is one side's whole: its mask, and the mode's group
        // class with it.
        let Some((Some(mode), mtime, mut ext)) = parts(&merged) else {
            return Some((merged, notes));
        };
        let Some(mut kept) = decode::<Acl>(ext.get(keys::ACL_ACCESS)).flatten() else {
            return Some((merged, notes));
        };
        let rank = Some(acl_rank(&kept));
        let mask = if rank == ranks.0 {
            masks.0
        } else if rank == ranks.1 {
            masks.1
        } else {
            None
        };
        if let Some(mask) = mask {
            for entry in kept.iter_mut().filter(|e| e.tag == ACL_MASK) {
                entry.perm = mask;
            }
            ext.insert(keys::ACL_ACCESS, encode(&kept));
            let settled = (mode & !0o070) | (u32::from(mask & 7) << 3);
            if settled != mode {
                // The mode's report, if any, named the bits before.
                notes.retain(|note| !(note.starts_with("kept ") && note.contains(" mode ")));
                if let (Some(ma), Some(mb)) = modes {
                    if ma != mb {
                        let name_a = sides.who(true, |s| mode_of(s) == Some(ma));
                        let name_b = sides.who(false, |s| mode_of(s) == Some(mb));
                        notes.push(format!(
                            "kept mode {settled:04o}, its group class the mask of the access ACL \
                             kept (not {name_a}'s {ma:04o} nor {name_b}'s {mb:04o})"
                        ));
                    }
                }
            }
            merged = with_parts(&merged, (Some(settled), mtime, ext));
        }
    }
    Some((merged, notes))
}

/// The mask entry's permissions of an ACL, if it has one.
fn mask_of(acl: Option<Acl>) -> Option<u16> {
    acl?.iter().find(|e| e.tag == ACL_MASK).map(|e| e.perm)
}

/// Two concurrent versions of a file where one side changed the content
/// since `base` and the other only metadata (a `chown`, `chmod`,
/// `setfacl`, `setfattr` or `touch`): the content side's content with
/// every metadata field merged three-way as [`merge3`] does (the
/// metadata side's changed fields kept, a field both changed decided by
/// the rules and reported). `None` when these are not three files, or
/// when both sides (or neither) changed the content: a real content
/// conflict.
pub(crate) fn merge3_content(
    base: &PathState,
    a: &PathState,
    b: &PathState,
    sides: &Sides,
) -> Option<(PathState, Vec<String>)> {
    let content = |state: &PathState| match state {
        PathState::File { size, chunks, .. } => Some((*size, chunks.clone())),
        _ => None,
    };
    let (ca, cb, co) = (content(a)?, content(b)?, content(base)?);
    let changed = match (ca != co, cb != co) {
        (true, false) => &ca,
        (false, true) => &cb,
        _ => return None,
    };
    let with_content = |state: &PathState| {
        let mut state = state.clone();
        if let PathState::File { size, chunks, .. } = &mut state {
            (*size, *chunks) = changed.clone();
        }
        state
    };
    merge3(
        Some(&with_content(base)),
        &with_content(a),
        &with_content(b),
        sides,
    )
}

/// The fields a merge decides: mode (none for a symlink), mtime,
/// extensions.
type Parts = (Option<u32>, Option<Timestamp>, Extensions);

fn parts(state: &PathState) -> Option<Parts> {
    match state {
        PathState::Directory { mode, mtime, ext } => Some((Some(*mode), *mtime, ext.clone())),
        PathState::File {
            mode, mtime, ext, ..
        }
        | PathState::Special {
            mode, mtime, ext, ..
        } => Some((Some(*mode), Some(*mtime), ext.clone())),
        PathState::Symlink { mtime, ext, .. } => Some((None, *mtime, ext.clone())),
        _ => None,
    }
}

/// `state` with the fields `parts` gave it replaced.
fn with_parts(state: &PathState, (new_mode, new_mtime, new_ext): Parts) -> PathState {
    let mut state = state.clone();
    match &mut state {
        PathState::Directory { mode, mtime, ext } => {
            *mode = new_mode.unwrap_or(*mode);
            *mtime = new_mtime;
            *ext = new_ext;
        }
        PathState::File {
            mode, mtime, ext, ..
        }
        | PathState::Special {
            mode, mtime, ext, ..
        } => {
            *mode = new_mode.unwrap_or(*mode);
            *mtime = new_mtime.unwrap_or(*mtime);
            *ext = new_ext;
        }
        PathState::Symlink { mtime, ext, .. } => {
            *mtime = new_mtime;
            *ext = new_ext;
        }
        _ => {}
    }
    state
}

/// One field three-way: a side that kept the base's value takes the
/// other side's.
fn one_sided<T: PartialEq + Clone>(a: &mut T, b: &mut T, base: &T) {
    if a == base {
        *a = b.clone();
    } else if b == base {
        *b = a.clone();
    }
}

/// The owner key three-way, its user and group each a field.
fn one_sided_owner(a: &mut Option<Vec<u8>>, b: &mut Option<Vec<u8>>, base: &Option<Vec<u8>>) {
    let (Some(oa), Some(ob), Some(oo)) = (
        decode::<Owner>(a.as_deref()),
        decode::<Owner>(b.as_deref()),
        decode::<Owner>(base.as_deref()),
    ) else {
        return one_sided(a, b, base);
    };
    let (mut oa, mut ob, oo) = (
        oa.unwrap_or_default(),
        ob.unwrap_or_default(),
        oo.unwrap_or_default(),
    );
    one_sided(&mut oa.user, &mut ob.user, &oo.user);
    one_sided(&mut oa.group, &mut ob.group, &oo.group);
    let back = |o: Owner| (o != Owner::default()).then(|| encode(&o));
    *a = back(oa);
    *b = back(ob);
}

/// The extended attributes three-way, each name a field (absent is a
/// value: a name removed on one side stays removed).
fn one_sided_xattrs(a: &mut Option<Vec<u8>>, b: &mut Option<Vec<u8>>, base: &Option<Vec<u8>>) {
    let (Some(xa), Some(xb), Some(xo)) = (
        decode::<Xattrs>(a.as_deref()),
        decode::<Xattrs>(b.as_deref()),
        decode::<Xattrs>(base.as_deref()),
    ) else {
        return one_sided(a, b, base);
    };
    let (present_a, present_b) = (xa.is_some(), xb.is_some());
    let (xa, xb, xo) = (
        xa.unwrap_or_default(),
        xb.unwrap_or_default(),
        xo.unwrap_or_default(),
    );
    let mut names: Vec<&Vec<u8>> = xa.iter().chain(&xb).chain(&xo).map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    let find = |list: &Xattrs, name: &[u8]| -> Option<Vec<u8>> {
        list.iter()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, v)| v.clone())
    };
    let (mut out_a, mut out_b): (Xattrs, Xattrs) = (Vec::new(), Vec::new());
    for name in names {
        let (mut va, mut vb) = (find(&xa, name), find(&xb, name));
        one_sided(&mut va, &mut vb, &find(&xo, name));
        out_a.extend(va.map(|v| (name.clone(), v)));
        out_b.extend(vb.map(|v| (name.clone(), v)));
    }
    // No attributes left is no key, as the scan records it (an empty
    // list a side had stays as it was).
    let back = |out: Xattrs, had_empty: bool| (!out.is_empty() || had_empty).then(|| encode(&out));
    *a = back(out_a, present_a && xa.is_empty());
    *b = back(out_b, present_b && xb.is_empty());
}

/// `a` and `b` merged, and one phrase per field that differed ("kept
/// boston's stricter mode 0700 (not lambik's 0750)"); `None` when they are
/// not two versions of the same object (kind, content, target or device
/// differ).
pub(crate) fn merge(
    a: &PathState,
    b: &PathState,
    sides: &Sides,
) -> Option<(PathState, Vec<String>)> {
    let mut notes = Vec::new();
    let merged = match (a, b) {
        (
            PathState::Directory {
                mode: mode_a,
                mtime: mtime_a,
                ext: ext_a,
            },
            PathState::Directory {
                mode: mode_b,
                mtime: mtime_b,
                ext: ext_b,
            },
        ) => {
            let mode = merge_mode(*mode_a, *mode_b, sides, &mut notes);
            let ext = merge_ext(ext_a, ext_b, Some(mode), sides, &mut notes);
            // A directory's time moves whenever a name comes or goes: it is
            // reported only beside another field that differed, where a
            // silently kept time would be a surprise (review 14b item 2).
            let mtime = if notes.is_empty() {
                (*mtime_a).max(*mtime_b)
            } else {
                merge_time(*mtime_a, *mtime_b, sides, &mut notes)
            };
            PathState::Directory { mode, mtime, ext }
        }
        (
            PathState::File {
                mode: mode_a,
                mtime: mtime_a,
                size,
                chunks,
                ext: ext_a,
            },
            PathState::File {
                mode: mode_b,
                mtime: mtime_b,
                size: size_b,
                chunks: chunks_b,
                ext: ext_b,
            },
        ) if size == size_b && chunks == chunks_b => {
            let mode = merge_mode(*mode_a, *mode_b, sides, &mut notes);
            let mtime = merge_time(Some(*mtime_a), Some(*mtime_b), sides, &mut notes);
            PathState::File {
                mode,
                mtime: mtime.unwrap_or(*mtime_a),
                size: *size,
                chunks: chunks.clone(),
                ext: merge_ext(ext_a, ext_b, Some(mode), sides, &mut notes),
            }
        }
        (
            PathState::Symlink {
                target,
                mtime: mtime_a,
                ext: ext_a,
            },
            PathState::Symlink {
                target: target_b,
                mtime: mtime_b,
                ext: ext_b,
            },
        ) if target == target_b => PathState::Symlink {
            target: target.clone(),
            mtime: merge_time(*mtime_a, *mtime_b, sides, &mut notes),
            // A symlink's own ACL does not exist on Linux: no mode to follow.
            ext: merge_ext(ext_a, ext_b, None, sides, &mut notes),
        },
        (
            PathState::Special {
                kind,
                mode: mode_a,
                major,
                minor,
                mtime: mtime_a,
                ext: ext_a,
            },
            PathState::Special {
                kind: kind_b,
                mode: mode_b,
                major: major_b,
                minor: minor_b,
                mtime: mtime_b,
                ext: ext_b,
            },
        ) if (kind, major, minor) == (kind_b, major_b, minor_b) => {
            let mode = merge_mode(*mode_a, *mode_b, sides, &mut notes);
            let mtime = merge_time(Some(*mtime_a), Some(*mtime_b), sides, &mut notes);
            PathState::Special {
                kind: *kind,
                mode,
                major: *major,
                minor: *minor,
                mtime: mtime.unwrap_or(*mtime_a),
                ext: merge_ext(ext_a, ext_b, Some(mode), sides, &mut notes),
            }
        }
        _ => return None,
    };
    Some((merged, notes))
}

const STICKY: u32 = 0o1000;

/// The stricter of two modes: the bits both allow, the sticky bit if
/// either has it.
pub(crate) fn merged_mode(a: u32, b: u32) -> u32 {
    (a & b & !STICKY) | ((a | b) & STICKY)
}

fn merge_mode(a: u32, b: u32, sides: &Sides, notes: &mut Vec<String>) -> u32 {
    let mode = merged_mode(a, b);
    if a != b {
        let name_a = sides.who(true, |s| mode_of(s) == Some(a));
        let name_b = sides.who(false, |s| mode_of(s) == Some(b));
        notes.push(if mode == a {
            format!("kept {name_a}'s stricter mode {a:04o} (not {name_b}'s {b:04o})")
        } else if mode == b {
            format!("kept {name_b}'s stricter mode {b:04o} (not {name_a}'s {a:04o})")
        } else {
            format!(
                "kept mode {mode:04o}, what both allow (not {name_a}'s {a:04o} nor {name_b}'s {b:04o})"
            )
        });
    }
    mode
}

fn show_time(time: Option<Timestamp>) -> String {
    match time {
        None => "none".to_string(),
        Some(t) if t.nanos == 0 => packet_format::utc_display(t.secs),
        Some(t) => format!(
            "{}.{:09}{}",
            packet_format::utc_display(t.secs).trim_end_matches(" UTC"),
            t.nanos,
            " UTC"
        ),
    }
}

/// The newer time, reported when they differ (files, symlinks, special
/// files).
fn merge_time(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    sides: &Sides,
    notes: &mut Vec<String>,
) -> Option<Timestamp> {
    let newer = a.max(b);
    if a != b {
        let time_of = |s: &PathState| parts(s).and_then(|p| p.1);
        let (kept, lost, winner, loser) = pick(newer == a, a, b, sides, |s, v| time_of(s) == *v);
        notes.push(format!(
            "kept {winner}'s newer mtime {} (not {loser}'s {})",
            show_time(kept),
            show_time(lost)
        ));
    }
    newer
}

/// The two sides' values of one field, the one kept first: `(kept, lost,
/// winner, loser)` names, each the member whose version `has` that value
/// ([`Sides::who`]).
fn pick<'s, T>(
    first_wins: bool,
    a: T,
    b: T,
    sides: &Sides<'s>,
    has: impl Fn(&PathState, &T) -> bool,
) -> (T, T, &'s str, &'s str) {
    let (kept, lost) = if first_wins { (a, b) } else { (b, a) };
    let winner = sides.who(first_wins, |s| has(s, &kept));
    let loser = sides.who(!first_wins, |s| has(s, &lost));
    (kept, lost, winner, loser)
}

fn merge_ext(
    a: &Extensions,
    b: &Extensions,
    mode: Option<u32>,
    sides: &Sides,
    notes: &mut Vec<String>,
) -> Extensions {
    let mut keys_of: Vec<u32> = a.iter().chain(b.iter()).map(|e| e.key).collect();
    keys_of.sort_unstable();
    keys_of.dedup();
    let mut out = Extensions::default();
    for key in keys_of {
        let (va, vb) = (a.get(key), b.get(key));
        let merged = match key {
            keys::OWNER => merge_owner(va, vb, sides, notes),
            keys::ACL_ACCESS => merge_acl("access ACL", va, vb, mode, sides, notes),
            keys::ACL_DEFAULT => merge_acl("default ACL", va, vb, None, sides, notes),
            keys::XATTRS => merge_xattrs(va, vb, sides, notes),
            _ => None,
        }
        .unwrap_or_else(|| merge_other(key, va, vb, sides, notes));
        if let Some(value) = merged {
            out.insert(key, value);
        }
    }
    out
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("metadata encodes")
}

fn decode<T: serde::de::DeserializeOwned>(value: Option<&[u8]>) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(bytes) => postcard::from_bytes(bytes).ok().map(Some),
    }
}

/// A key this version does not merge by meaning (or a value it cannot
/// decode): the greater encoding, absent counting least.
fn merge_other(
    key: u32,
    a: Option<&[u8]>,
    b: Option<&[u8]>,
    sides: &Sides,
    notes: &mut Vec<String>,
) -> Option<Vec<u8>> {
    if a != b {
        let (kept, _, winner, loser) = pick(a >= b, a, b, sides, |s, v| {
            ext_value(s, key).as_deref() == *v
        });
        let what = if key == keys::HARD_LINK {
            "hard-link set".to_string()
        } else {
            format!("metadata under key {key}")
        };
        notes.push(format!("kept {winner}'s {what} (not {loser}'s)"));
        return kept.map(<[u8]>::to_vec);
    }
    a.map(<[u8]>::to_vec)
}

fn show_principal(who: &Option<Principal>) -> String {
    match who {
        None => "none".to_string(),
        Some(Principal { id, name: None }) => id.to_string(),
        Some(Principal {
            id,
            name: Some(name),
        }) => format!("{}({id})", crate::error::printable(name)),
    }
}

/// The lower id, then the name; a side without one yields.
fn stricter_principal(a: &Option<Principal>, b: &Option<Principal>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a.id, &a.name) <= (b.id, &b.name),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn merge_owner(
    a: Option<&[u8]>,
    b: Option<&[u8]>,
    sides: &Sides,
    notes: &mut Vec<String>,
) -> Option<Option<Vec<u8>>> {
    let (a, b) = (decode::<Owner>(a)?, decode::<Owner>(b)?);
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    let mut out = Owner::default();
    for (word, va, vb, slot) in [
        ("owner", &a.user, &b.user, &mut out.user),
        ("group", &a.group, &b.group, &mut out.group),
    ] {
        let principal_of = |s: &PathState| {
            let owner = decode::<Owner>(ext_value(s, keys::OWNER).as_deref())??;
            Some(if word == "owner" {
                owner.user
            } else {
                owner.group
            })
        };
        let (kept, lost, winner, loser) =
            pick(stricter_principal(va, vb), va, vb, sides, |s, v| {
                principal_of(s).as_ref() == Some(*v)
            });
        if va != vb && lost.is_some() {
            notes.push(format!(
                "kept {winner}'s {word} {} (not {loser}'s {}; the lower id)",
                show_principal(kept),
                show_principal(lost)
            ));
        }
        *slot = kept.clone();
    }
    Some((out != Owner::default()).then(|| encode(&out)))
}

const ACL_USER_OBJ: u16 = 1;
const ACL_USER: u16 = 2;
const ACL_GROUP_OBJ: u16 = 4;
const ACL_GROUP: u16 = 8;
const ACL_MASK: u16 = 16;
const ACL_OTHER: u16 = 32;

/// An ACL entry as [`acl_rank`] orders it: tag, who (id, name), perm.
type AclRankEntry = (u16, Option<(u32, Option<String>)>, u16);

/// What orders ACLs: the number of entries, then the entries with the
/// permissions that follow the mode left out (so an ACL's rank does not
/// change when it is made to follow a merged mode).
fn acl_rank(acl: &Acl) -> (usize, Vec<AclRankEntry>) {
    (
        acl.len(),
        acl.iter()
            .map(|e| {
                let follows_mode = matches!(e.tag, ACL_USER_OBJ | ACL_MASK | ACL_OTHER)
                    || (e.tag == ACL_GROUP_OBJ && !acl.iter().any(|m| m.tag == ACL_MASK));
                let who = e.who.as_ref().map(|p| (p.id, p.name.clone()));
                (e.tag, who, if follows_mode { 0 } else { e.perm })
            })
            .collect(),
    )
}

/// The access ACL made to agree with `mode`: the kernel keeps the owner,
/// group class (the mask where there is one) and other permissions of
/// the ACL and of the mode the same.
fn follow_mode(acl: &mut Acl, mode: u32) {
    let has_mask = acl.iter().any(|e| e.tag == ACL_MASK);
    for entry in acl.iter_mut() {
        let bits = match entry.tag {
            ACL_USER_OBJ => mode >> 6,
            ACL_MASK => mode >> 3,
            ACL_GROUP_OBJ if !has_mask => mode >> 3,
            ACL_OTHER => mode,
            _ => continue,
        };
        entry.perm = (bits & 7) as u16;
    }
}

fn show_perm(perm: u16) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|&(bit, c)| if perm & bit != 0 { c } else { '-' })
        .collect()
}

pub(crate) fn show_acl(acl: &Option<Acl>) -> String {
    let Some(acl) = acl else {
        return "none".to_string();
    };
    acl.iter()
        .map(|AclEntry { tag, perm, who }| {
            let kind = match *tag {
                ACL_USER_OBJ | ACL_USER => "u",
                ACL_GROUP_OBJ | ACL_GROUP => "g",
                ACL_MASK => "m",
                ACL_OTHER => "o",
                _ => "?",
            };
            let who = match who {
                Some(Principal {
                    name: Some(name), ..
                }) => crate::error::printable(name).into_owned(),
                Some(Principal { id, .. }) => id.to_string(),
                None => String::new(),
            };
            format!("{kind}:{who}:{}", show_perm(*perm))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn merge_acl(
    word: &str,
    a: Option<&[u8]>,
    b: Option<&[u8]>,
    mode: Option<u32>,
    sides: &Sides,
    notes: &mut Vec<String>,
) -> Option<Option<Vec<u8>>> {
    let (a, b) = (decode::<Acl>(a)?, decode::<Acl>(b)?);
    let rank = |acl: &Option<Acl>| acl.as_ref().map(acl_rank);
    // None (no ACL) ranks first: the fewest grants.
    let key = if word == "access ACL" {
        keys::ACL_ACCESS
    } else {
        keys::ACL_DEFAULT
    };
    let acl_of = |s: &PathState| decode::<Acl>(ext_value(s, key).as_deref());
    let (kept, lost, winner, loser) = pick(rank(&a) <= rank(&b), &a, &b, sides, |s, v| {
        acl_of(s).as_ref() == Some(*v)
    });
    if rank(&a) != rank(&b) {
        let why = if kept.as_ref().map(Vec::len) == lost.as_ref().map(Vec::len) {
            "the smaller entries"
        } else {
            "the fewer entries"
        };
        notes.push(format!(
            "kept {winner}'s {word} {} (not {loser}'s {}; {why})",
            show_acl(kept),
            show_acl(lost)
        ));
    }
    let mut kept = kept.clone();
    if let (Some(acl), Some(mode)) = (kept.as_mut(), mode) {
        follow_mode(acl, mode);
    }
    Some(kept.map(|acl| encode(&acl)))
}

pub(crate) fn show_value(value: &[u8]) -> String {
    const MAX: usize = 40;
    let shown = crate::error::printable_bytes(&value[..value.len().min(MAX)]);
    if value.len() > MAX {
        format!("\"{shown}…\" ({} bytes)", value.len())
    } else {
        format!("\"{shown}\"")
    }
}

fn merge_xattrs(
    a: Option<&[u8]>,
    b: Option<&[u8]>,
    sides: &Sides,
    notes: &mut Vec<String>,
) -> Option<Option<Vec<u8>>> {
    let (a, b) = (decode::<Xattrs>(a)?, decode::<Xattrs>(b)?);
    let (present_a, present_b) = (a.is_some(), b.is_some());
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    let mut names: Vec<&Vec<u8>> = a.iter().chain(b.iter()).map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    let find = |list: &Xattrs, name: &[u8]| -> Option<Vec<u8>> {
        list.iter()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, v)| v.clone())
    };
    let mut out: Xattrs = Vec::new();
    for name in names {
        let (va, vb) = (find(&a, name), find(&b, name));
        let value_of = |s: &PathState| {
            let attrs = decode::<Xattrs>(ext_value(s, keys::XATTRS).as_deref())?;
            Some(find(&attrs.unwrap_or_default(), name))
        };
        let (kept, lost, winner, loser) = pick(va >= vb, &va, &vb, sides, |s, v| {
            value_of(s).as_ref() == Some(*v)
        });
        if va != vb {
            let shown = crate::error::printable_bytes(name);
            let lost = match lost {
                Some(value) => format!("{loser}'s {}", show_value(value)),
                None => format!("{loser}'s, which has none"),
            };
            let kept_value = show_value(kept.as_deref().unwrap_or_default());
            notes.push(format!(
                "kept {winner}'s xattr {shown} = {kept_value} (not {lost})"
            ));
        }
        out.push((name.clone(), kept.clone().expect("one side has each name")));
    }
    Some((present_a || present_b).then(|| encode(&out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(id: u32) -> Option<Principal> {
        Some(Principal { id, name: None })
    }

    fn dir(mode: u32, secs: i64, owner: u32, attr: Option<&str>, acl: Option<Acl>) -> PathState {
        let mut ext = Extensions::default();
        ext.insert(
            keys::OWNER,
            encode(&Owner {
                user: principal(owner),
                group: principal(owner),
            }),
        );
        if let Some(value) = attr {
            let attrs: Xattrs = vec![(b"user.side".to_vec(), value.as_bytes().to_vec())];
            ext.insert(keys::XATTRS, encode(&attrs));
        }
        if let Some(acl) = acl {
            ext.insert(keys::ACL_ACCESS, encode(&acl));
        }
        PathState::Directory {
            mode,
            mtime: Some(Timestamp::new(secs, 0).unwrap()),
            ext,
        }
    }

    fn acl(mode: u32, named: &[u32]) -> Acl {
        let entry = |tag, perm, who| AclEntry { tag, perm, who };
        let mut acl = vec![entry(ACL_USER_OBJ, ((mode >> 6) & 7) as u16, None)];
        for id in named {
            acl.push(entry(ACL_USER, 5, principal(*id)));
        }
        acl.push(entry(ACL_GROUP_OBJ, 5, None));
        acl.push(entry(ACL_MASK, ((mode >> 3) & 7) as u16, None));
        acl.push(entry(ACL_OTHER, (mode & 7) as u16, None));
        acl
    }

    const SIDES: Sides = Sides {
        a: "a",
        b: "b",
        held_a: &[],
        held_b: &[],
    };

    #[test]
    fn merges_are_the_same_in_any_order_and_grouping() {
        let states = [
            dir(0o750, 10, 1000, Some("x"), Some(acl(0o750, &[4242]))),
            dir(0o1755, 30, 0, None, None),
            dir(0o700, 20, 4242, Some("y"), Some(acl(0o700, &[7, 8]))),
        ];
        let m = |x: &PathState, y: &PathState| merge(x, y, &SIDES).unwrap().0;
        for x in &states {
            assert_eq!(&m(x, x), x);
            for y in &states {
                assert_eq!(m(x, y), m(y, x));
                for z in &states {
                    assert_eq!(m(&m(x, y), z), m(x, &m(y, z)));
                }
            }
        }
        let all = m(&m(&states[0], &states[1]), &states[2]);
        let PathState::Directory { mode, mtime, ext } = &all else {
            panic!("{all:?}");
        };
        assert_eq!(*mode, 0o1700);
        assert_eq!(*mtime, Some(Timestamp::new(30, 0).unwrap()));
        let owner: Owner = postcard::from_bytes(ext.get(keys::OWNER).unwrap()).unwrap();
        assert_eq!(owner.user, principal(0));
        assert!(ext.get(keys::ACL_ACCESS).is_none(), "no ACL is the fewest");
        let attrs: Xattrs = postcard::from_bytes(ext.get(keys::XATTRS).unwrap()).unwrap();
        assert_eq!(attrs, vec![(b"user.side".to_vec(), b"y".to_vec())]);
    }

    #[test]
    fn a_field_changed_on_one_side_only_takes_that_sides_value_silently() {
        let base = dir(0o755, 10, 1000, Some("x"), None);
        // a: owner (user and group) and the attribute; b: mode and time.
        let a = dir(0o755, 10, 4242, None, None);
        let b = dir(0o700, 20, 1000, Some("x"), None);
        let (merged, notes) = merge3(Some(&base), &a, &b, &SIDES).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(merged, dir(0o700, 20, 4242, None, None));
        assert_eq!(merge3(Some(&base), &b, &a, &SIDES).unwrap().0, merged);
        // Without a base: today's rules, every difference reported (the
        // folder's time too, as it differs beside other fields).
        let (_, notes) = merge3(None, &a, &b, &SIDES).unwrap();
        assert_eq!(notes.len(), 5, "{notes:?}");
        // Both changed the mode: the rule decides, and says so; the user
        // (a) and the group (b) each changed on one side only.
        let with_group = |state: PathState, user: u32, group: u32| {
            let PathState::Directory {
                mode,
                mtime,
                mut ext,
            } = state
            else {
                panic!()
            };
            ext.insert(
                keys::OWNER,
                encode(&Owner {
                    user: principal(user),
                    group: principal(group),
                }),
            );
            PathState::Directory { mode, mtime, ext }
        };
        let a = with_group(dir(0o750, 10, 0, Some("x"), None), 4242, 1000);
        let b = with_group(dir(0o705, 10, 0, Some("x"), None), 1000, 4343);
        let (merged, notes) = merge3(Some(&base), &a, &b, &SIDES).unwrap();
        assert_eq!(
            notes,
            ["kept mode 0700, what both allow (not a's 0750 nor b's 0705)"]
        );
        assert_eq!(
            merged,
            with_group(dir(0o700, 10, 0, Some("x"), None), 4242, 4343)
        );
    }

    #[test]
    fn attributes_merge_three_way_name_by_name() {
        let with = |pairs: &[(&str, &str)]| {
            let PathState::Directory {
                mode,
                mtime,
                mut ext,
            } = dir(0o755, 10, 0, None, None)
            else {
                panic!()
            };
            let attrs: Xattrs = pairs
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            ext.insert(keys::XATTRS, encode(&attrs));
            PathState::Directory { mode, mtime, ext }
        };
        let base = with(&[("user.gone", "1"), ("user.kept", "1")]);
        // a removes user.gone; b changes user.kept and adds user.new.
        let a = with(&[("user.kept", "1")]);
        let b = with(&[("user.gone", "1"), ("user.kept", "2"), ("user.new", "3")]);
        let (merged, notes) = merge3(Some(&base), &a, &b, &SIDES).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(merged, with(&[("user.kept", "2"), ("user.new", "3")]));
    }

    #[test]
    fn every_field_that_differed_is_reported_with_both_values() {
        let a = dir(0o750, 10, 1000, Some("x"), Some(acl(0o750, &[4242])));
        let b = dir(0o700, 20, 4242, None, Some(acl(0o700, &[4242, 7])));
        let (merged, notes) = merge(&a, &b, &Sides::named("boston", "lambik")).unwrap();
        assert_eq!(
            notes,
            [
                "kept lambik's stricter mode 0700 (not boston's 0750)",
                "kept boston's owner 1000 (not lambik's 4242; the lower id)",
                "kept boston's group 1000 (not lambik's 4242; the lower id)",
                "kept boston's xattr user.side = \"x\" (not lambik's, which has none)",
                "kept boston's access ACL u::rwx,u:4242:r-x,g::r-x,m::r-x,o::--- \
                 (not lambik's u::rwx,u:4242:r-x,u:7:r-x,g::r-x,m::---,o::---; the fewer entries)",
                "kept lambik's newer mtime 1970-01-01 00:00:20 UTC (not boston's 1970-01-01 00:00:10 UTC)",
            ]
            .map(str::to_string)
        );
        // The kept ACL follows the merged mode.
        let PathState::Directory { ext, .. } = merged else {
            panic!()
        };
        let kept: Acl = postcard::from_bytes(ext.get(keys::ACL_ACCESS).unwrap()).unwrap();
        assert_eq!(kept, acl(0o700, &[4242]));
        // A directory's time alone is not reported (it moves as names come
        // and go); equal states say nothing.
        assert!(merge(&a, &a, &SIDES).unwrap().1.is_empty());
        let later = dir(0o750, 99, 1000, Some("x"), Some(acl(0o750, &[4242])));
        assert!(merge(&a, &later, &SIDES).unwrap().1.is_empty());
    }

    #[test]
    fn files_merge_only_with_the_same_content() {
        let file = |mode, secs, len| PathState::File {
            mode,
            mtime: Timestamp::new(secs, 0).unwrap(),
            size: 0,
            chunks: Vec::new(),
            ext: {
                let mut ext = Extensions::default();
                ext.insert(keys::HARD_LINK, vec![len]);
                ext
            },
        };
        let (merged, notes) = merge(&file(0o644, 1, 1), &file(0o600, 2, 1), &SIDES).unwrap();
        assert_eq!(merged, file(0o600, 2, 1));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[1].starts_with("kept b's newer mtime 1970-01-01 00:00:02 UTC"));
        assert!(merge(&file(0o644, 1, 1), &PathState::directory(0o755), &SIDES).is_none());
    }
}
