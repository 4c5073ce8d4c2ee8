//! Adopting a tree that is already there: `mkreplica -import -adopt`.
//!
//! A migrated server holds most of its source's files already. Its new
//! member is made from a manifest (`mkreplica -export -manifest`: a
//! creation packet with the family, the member's identity and the whole
//! log, but no content) over the existing tree:
//!
//! - a file whose content is the recorded one (the same chunk ids) is
//!   kept as it is: not rewritten. Every entry kept or made then takes
//!   the recorded metadata where it differs, through the apply engine's
//!   own code ([`crate::sync::apply::set_meta`]): mode, owner and group,
//!   ACLs, xattrs and hard-link sets as the new member's `preserve`
//!   keeps them, file, symlink and special-file times, and directory
//!   times last, deepest first;
//! - directories, symlinks, empty files and special files (those
//!   `preserve` keeps) the tree lacks are made;
//! - a file with other content stays in place, served as before, until
//!   the creator's answer brings the family's content: the import that
//!   applies the answer replaces it and keeps it as imports keep replaced
//!   versions (`.syncreplica/deleted/DAY/PATH`). Until then its entry is
//!   the file as it is here, under the family's version, so no scan takes
//!   it for a change of this replica's. So does another name of a
//!   hard-link set whose leader waits for its content;
//! - anything else that stands where the family has another kind of entry
//!   is set aside, soft-deleted under `.syncreplica/deleted/DAY/PATH`,
//!   never deleted;
//! - the files the tree lacks, or has other content for, are asked for: the
//!   new member logs content requests addressed to its creator
//!   ([`crate::sync::delta`]); its first packet to the creator carries
//!   them, and the creator's next export sends those files whole;
//! - paths the replica's excludes match (its `.syncreplicaignore`) are left
//!   alone, and local files the family lacks stay where they are, as this
//!   replica's own new files, recorded by its next scan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use packet_format::LogicalPacket;

use crate::error::{Error, IoContext, Result};
use crate::ops::{Extensions, Id, Operation, PathState, Timestamp};
use crate::replica::{self, Replica};
use crate::store::config;
use crate::store::identity::{self, Identity};
use crate::store::layout::{DELETED_DIR, STATE_DIR};
use crate::store::state::{self, StatKey, State};
use crate::sync::apply::MetaKind;
use crate::sync::creation::{check_creation, write_new_state, NewState};
use crate::sync::creation_check::PathRow;
use crate::tree::confined::{ConfinedRoot, Located, Place};
use crate::tree::relpath;
use crate::tree::scan;

/// What [`adopt_creation`] did.
pub struct Adoption {
    pub fingerprint: String,
    /// The creator's name.
    pub sender: String,
    /// Files kept as they were (content already the recorded one).
    pub kept: u64,
    /// Paths whose metadata here (mode, times, and what `preserve` keeps:
    /// owner, group, ACLs, xattrs, hard links) was set to the recorded one.
    pub metadata_fixed: u64,
    /// Directories, symlinks and empty files made.
    pub made: u64,
    /// Files asked for from the creator (missing, or other content here).
    pub asked: Vec<Vec<u8>>,
    /// Of those, the files left in place with their content here until
    /// the answer replaces them.
    pub in_place: Vec<Vec<u8>>,
    /// What could not be done as recorded (a hard-link leader out of
    /// reach).
    pub notes: Vec<String>,
    /// What this member does not apply, one line per item with a count, as
    /// an update import says it ("not applied here"): metadata this user
    /// cannot apply, special files it does not keep.
    pub not_applied: Vec<String>,
    /// What was set aside: the tree path and where it is kept now.
    pub set_aside: Vec<(Vec<u8>, PathBuf)>,
    /// Paths of the family's left alone because this replica excludes them.
    pub excluded: u64,
    /// The `-exclude` patterns that matched nothing (neither here nor in
    /// the family) or named the root's absolute path: warned about.
    pub exclude_warnings: crate::sync::creation::CreationExcludes,
    /// Local files and folders the family lacks: left in place, recorded as
    /// this replica's own by its next scan.
    pub local_only: u64,
}

/// Makes the new replica of a checked creation packet (normally a manifest)
/// over the existing tree at `dir` (see the module documentation).
/// `key_file` holds the new member's secret key; `exclude`: the new
/// member's own exclude patterns (gitignore syntax, written to its
/// config.toml; the paths they match are left alone). Errors: everything
/// [`crate::sync::creation::import_creation`] refuses, `dir` missing or
/// already a replica. On error, nothing set aside is lost: it stays under
/// the unfinished state folder, `.syncreplica.init-PID/deleted/`, which is
/// then kept; running the adoption again carries on (what was set aside is
/// asked for).
pub fn adopt_creation(
    packet: &LogicalPacket,
    dir: &Path,
    key_file: &Path,
    mirror: bool,
    own: &config::OwnSettings,
) -> Result<(Replica, Adoption)> {
    crate::sync::creation::creation_payload(packet)?;
    if !dir.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    replica::refuse_nesting_of_new(dir)?;
    let root = std::fs::canonicalize(dir).at(dir)?;
    if root.join(STATE_DIR).exists() {
        return Err(Error::BadName {
            name: root.display().to_string(),
            why: "it is a replica already (it has a .syncreplica folder); adopt a tree that \
                  is not one"
                .into(),
        });
    }
    let staging = crate::store::layout::state_dir_under_construction(&root, std::process::id());
    std::fs::create_dir(&staging).at(&staging)?;
    // The packet's operations are checked in a scratch database in the
    // state folder being built.
    let result = check_creation(packet, key_file, &staging).and_then(
        |(header, payload, checked, secret, encryption_key)| {
            adopt_into(
                packet,
                &header,
                &payload,
                &checked,
                &root,
                &staging,
                &secret,
                encryption_key.as_deref(),
                mirror,
                own,
            )
        },
    );
    if result.is_err() {
        // Nothing set aside may be lost: the folder goes only when it holds
        // nothing but the state being built.
        if !staging.join(DELETED_DIR).exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    let mut adoption = result?;
    let final_dir = replica::state_dir(&root);
    std::fs::rename(&staging, &final_dir).at(&final_dir)?;
    let replica = Replica::open(&root)?;
    // The rename moved the root's mtime: the recorded one goes back
    // (SPEC.md §6.2.1).
    if let Some((
        PathState::Directory {
            mtime: Some(mtime), ..
        },
        _,
    )) = replica.state().entry_state(b"")?
    {
        let confined = crate::tree::confined::ConfinedRoot::open(&root)?;
        if let crate::tree::confined::Located::At(place) = confined.locate(b"", false)? {
            place.set_mtime(mtime)?;
        }
    }
    crate::sys::fsutil::sync_dir(&root)?;
    for (_, kept) in &mut adoption.set_aside {
        if let Ok(rest) = kept.strip_prefix(&staging) {
            *kept = final_dir.join(rest);
        }
    }
    Ok((replica, adoption))
}

#[allow(clippy::too_many_arguments)]
fn adopt_into(
    packet: &LogicalPacket,
    header: &packet_format::Header,
    payload: &packet_format::CreationPayload,
    checked: &crate::sync::creation_check::Checked,
    root: &Path,
    staging: &Path,
    secret: &[u8; 32],
    encryption_key: Option<&str>,
    mirror: bool,
    own: &config::OwnSettings,
) -> Result<Adoption> {
    // Stored relative, as at a creation import.
    let (exclude, root_prefixed) = crate::tree::excludes::strip_root_prefix(root, &own.exclude);
    let own = &config::OwnSettings {
        exclude,
        ..own.clone()
    };
    let exclude = &own.exclude;
    let identity = Identity {
        family_name: header.family.name.clone(),
        family_id: header.family.id,
        replica_name: payload.new_replica.name.clone(),
        replica_id: payload.new_replica.id,
    };
    identity.save(staging)?;
    crate::sys::fsutil::create_new_file(&identity::signing_key_path(staging), secret, 0o600)?;
    if let Some(key) = encryption_key {
        crate::sys::fsutil::create_new_file(
            &identity::encryption_key_path(staging),
            format!("{key}\n").as_bytes(),
            0o600,
        )?;
    }
    config::write_default(staging)?;
    // The new member's own patterns (mkreplica -import -adopt -exclude) go
    // into its config.toml before the scan: the paths they match are left
    // alone, never read, set aside or asked for (review 14c item 4: they
    // were dropped, and the host's own file was replaced).
    config::set_own_settings(staging, own)?;
    let mut state = State::open(staging)?;
    let excludes =
        crate::tree::excludes::Excludes::load(root, exclude, &config::config_path(staging))?;
    let folding = replica::folding(root, staging)?;
    // What the new member keeps, as `mkreplica -import` reads it: the scan
    // reads and the metadata pass applies exactly that.
    let preserve = config::Config::load(&config::config_path(staging))?
        .preserve()
        .unwrap_or_else(|_| crate::tree::meta::Preserve::default_for_user());

    // What the tree holds, as a scan of a replica that has recorded
    // nothing sees it: every path new, every file read and chunked.
    let outcome = scan::scan(
        root,
        &excludes,
        folding,
        || Ok(crate::store::state::Entries::default()),
        &mut scan::ScanHooks::default(),
        None,
        &preserve,
        None,
    )?;
    let mut local: HashMap<Vec<u8>, (PathState, Option<StatKey>)> = outcome
        .changes
        .into_iter()
        .map(|change| (change.path, (change.new, change.stat)))
        .collect();

    let sender = payload
        .members
        .iter()
        .find(|m| m.id == header.sender.id)
        .map_or_else(|| header.sender.id.to_hex(), |m| m.name.clone());
    let mut adoption = Adoption {
        fingerprint: header.signer_fingerprint(),
        sender,
        kept: 0,
        metadata_fixed: 0,
        made: 0,
        asked: Vec::new(),
        set_aside: Vec::new(),
        excluded: 0,
        exclude_warnings: Default::default(),
        local_only: 0,
        in_place: Vec::new(),
        notes: Vec::new(),
        not_applied: Vec::new(),
    };
    let confined = ConfinedRoot::open(root)?;
    let place_of = |path: &[u8]| -> Result<Place> {
        match confined.locate(path, false)? {
            Located::At(place) => Ok(place),
            Located::Blocked(why) => Err(Error::hostile(relpath::display(path), why)),
        }
    };
    let day = chrono::Utc::now().format("%Y%m%d").to_string();
    let aside_dir = staging.join(DELETED_DIR).join(&day);
    // Sets aside whatever is at `path` (anything: a busy file the scan
    // skipped too), keeping it under the soft-deleted files.
    let mut set_aside = |path: &[u8], place: &Place| -> Result<()> {
        if place.stat()?.is_none() {
            return Ok(());
        }
        let kept = relpath::to_disk_path(&aside_dir, path);
        if let Some(parent) = kept.parent() {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        place.move_out(&kept).at(&kept)?;
        adoption.set_aside.push((path.to_vec(), kept));
        Ok(())
    };
    // The family's tree in memory: an adoption holds the adopted tree's
    // scan anyway.
    let paths = checked.scratch.load_paths()?;
    let mut present: HashSet<Vec<u8>> = HashSet::new();
    let mut stats: HashMap<Vec<u8>, StatKey> = HashMap::new();
    let mut asked: Vec<Vec<u8>> = Vec::new();
    // Files whose content here is not the family's: left in place (served
    // as before until the creator's answer replaces them; the import that
    // brings the answer keeps them as replaced versions), recorded as they
    // are here under the family's version, so no scan takes them for a
    // change of this replica's.
    let mut in_place: Vec<(Vec<u8>, PathState, Option<StatKey>)> = Vec::new();
    // Files whose content here is the family's: a hard-link set is linked
    // only to a leader among them.
    let mut same_content: HashSet<&[u8]> = HashSet::new();
    // Per hard-link set whose first name this member excludes: the first
    // of its names here, in path order, to which the others are linked.
    let mut stand_in: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    // The family's metadata, set after every entry is placed through the
    // apply engine's own code: files, links and specials in path order
    // (every hard-link leader is in place by then), then directories
    // deepest first, each after everything inside it.
    let mut meta_jobs: Vec<MetaJob> = Vec::new();
    let mut dir_jobs: Vec<MetaJob> = Vec::new();
    let mut unapplied = crate::tree::meta::Unapplied::default();
    let mut kept = 0u64;
    let mut metadata_fixed = 0u64;
    let mut made = 0u64;
    let mut excluded = 0u64;
    // Special files this replica does not keep (device nodes, not root).
    let mut not_made_special = 0u64;
    // The patterns that left the family's paths out: kept in the state, so
    // that the scans do not warn that they match nothing here.
    let mut family_excluded: std::collections::BTreeSet<String> = Default::default();
    // Parents before children: the map is sorted.
    for (path, (_, family)) in &paths {
        if crate::tree::excludes::is_local_only(path) || *family == PathState::Deleted {
            continue;
        }
        let is_dir = matches!(family, PathState::Directory { .. });
        if excludes.excludes_relative(path, is_dir, false) {
            if let Some(pattern) = excludes.config_pattern_excluding(path, is_dir) {
                family_excluded.insert(pattern);
            }
            local.remove(path);
            excluded += 1;
            continue;
        }
        // A path under something set aside or never made is not reachable.
        if relpath::ancestors(path)
            .iter()
            .any(|a| !present.contains(*a) && paths.contains_key(*a))
        {
            continue;
        }
        let here = local.remove(path);
        let place = place_of(path)?;
        let disk = place.display_path();
        if here
            .as_ref()
            .is_some_and(|(local, _)| metadata_differs(local, family, &preserve))
        {
            metadata_fixed += 1;
        }
        match family {
            PathState::Directory { mode, mtime, ext } => {
                if !matches!(&here, Some((PathState::Directory { .. }, _))) {
                    set_aside(path, &place)?;
                    place.make_dir(0o700).at(&disk)?;
                    made += 1;
                }
                // The time always: placing and setting aside moved it.
                dir_jobs.push(MetaJob {
                    path,
                    kind: MetaKind::Directory,
                    mode: Some(*mode),
                    mtime: *mtime,
                    ext: std::borrow::Cow::Borrowed(ext),
                });
                present.insert(path.clone());
            }
            PathState::Symlink { target, mtime, ext } => {
                let same = match &here {
                    Some((
                        PathState::Symlink {
                            target: t,
                            mtime: m,
                            ..
                        },
                        _,
                    )) if t == target => Some(*m),
                    _ => None,
                };
                let mtime = match same {
                    Some(local_mtime) => mtime.filter(|m| local_mtime != Some(*m)),
                    None => {
                        set_aside(path, &place)?;
                        place.symlink(target).at(&disk)?;
                        made += 1;
                        *mtime
                    }
                };
                meta_jobs.push(MetaJob {
                    path,
                    kind: MetaKind::Symlink,
                    mode: None,
                    mtime,
                    ext: std::borrow::Cow::Borrowed(ext),
                });
                present.insert(path.clone());
            }
            PathState::File {
                mode,
                mtime,
                chunks,
                ext,
                ..
            } => {
                let local_mtime = match &here {
                    Some((
                        PathState::File {
                            chunks: local_chunks,
                            mtime: local_mtime,
                            ..
                        },
                        Some(_),
                    )) if local_chunks == chunks => Some(*local_mtime),
                    _ => None,
                };
                // A set whose first name this member excludes: its other
                // names are linked to the first of them here, as at a
                // creation import (fix14i item 1: each waited for a leader
                // that never comes, and was asked for).
                let mut ext = std::borrow::Cow::Borrowed(ext);
                let mut leader = crate::tree::meta::hard_link_leader(&ext);
                if let Some(excluded) = leader.as_ref().filter(|l| {
                    preserve.hardlinks
                        && *l != path
                        && (crate::tree::excludes::is_local_only(l)
                            || excludes.excludes_relative(l, false, false))
                }) {
                    let first = stand_in
                        .entry(excluded.clone())
                        .or_insert_with(|| path.clone())
                        .clone();
                    ext.to_mut().insert(
                        crate::tree::meta::keys::HARD_LINK,
                        crate::tree::meta::encode(&first),
                    );
                    leader = Some(first);
                }
                // A name of a hard-link set whose leader does not hold the
                // family's content yet waits for it with the leader: it is
                // linked to the leader the answer places.
                let leader_waits = preserve.hardlinks
                    && leader.is_some_and(|leader| {
                        leader != *path && !same_content.contains(leader.as_slice())
                    });
                match (local_mtime, here) {
                    (Some(local_mtime), _) if !leader_waits => {
                        same_content.insert(path);
                        meta_jobs.push(MetaJob {
                            path,
                            kind: MetaKind::File,
                            mode: Some(*mode),
                            mtime: (local_mtime != *mtime).then_some(*mtime),
                            ext: ext.clone(),
                        });
                        kept += 1;
                    }
                    (_, Some((local @ PathState::File { .. }, stat))) if !chunks.is_empty() => {
                        in_place.push((path.clone(), local, stat));
                        asked.push(path.clone());
                        continue;
                    }
                    _ => {
                        set_aside(path, &place)?;
                        if !chunks.is_empty() {
                            asked.push(path.clone());
                            continue;
                        }
                        // Nothing to ask for: made here.
                        place.create_new().at(&disk)?;
                        meta_jobs.push(MetaJob {
                            path,
                            kind: MetaKind::File,
                            mode: Some(*mode),
                            mtime: Some(*mtime),
                            ext: ext.clone(),
                        });
                        made += 1;
                    }
                }
                present.insert(path.clone());
            }
            PathState::Special {
                kind,
                mode,
                major,
                minor,
                mtime,
                ext,
            } => {
                let same = match &here {
                    Some((
                        PathState::Special {
                            kind: k,
                            major: x,
                            minor: y,
                            mtime: m,
                            ..
                        },
                        _,
                    )) if (k, x, y) == (kind, major, minor) => Some(*m),
                    _ => None,
                };
                let mtime = match same {
                    Some(local_mtime) => (local_mtime != *mtime).then_some(*mtime),
                    None if preserve.keeps_special(*kind) => {
                        set_aside(path, &place)?;
                        if let Err(err) = place.make_node(*kind, *mode, *major, *minor) {
                            if err.kind() != std::io::ErrorKind::PermissionDenied {
                                return Err(Error::io(&disk, err));
                            }
                            unapplied.note("devices", crate::tree::meta::why_not("devices", &err));
                            // Recorded, as `mkreplica -import` records it.
                            present.insert(path.clone());
                            continue;
                        }
                        made += 1;
                        Some(*mtime)
                    }
                    // Not kept here: recorded, not made (as `mkreplica
                    // -import` does, and says with a count); what stood
                    // there is set aside.
                    None => {
                        not_made_special += 1;
                        set_aside(path, &place)?;
                        present.insert(path.clone());
                        continue;
                    }
                };
                meta_jobs.push(MetaJob {
                    path,
                    kind: MetaKind::Special,
                    mode: Some(*mode),
                    mtime,
                    ext: std::borrow::Cow::Borrowed(ext),
                });
                present.insert(path.clone());
            }
            PathState::Deleted | PathState::Unknown { .. } => {}
        }
    }
    let mut names = crate::tree::meta::Names::default();
    let mut notes = Vec::new();
    let locate_leader = |leader: &[u8]| confined.locate(leader, false);
    for job in meta_jobs.iter().chain(dir_jobs.iter().rev()) {
        crate::sync::apply::set_meta(
            &place_of(job.path)?,
            &locate_leader,
            job.path,
            job.kind,
            job.mode,
            job.mtime,
            &job.ext,
            &preserve,
            &mut names,
            &mut unapplied,
            &mut notes,
        )?;
    }
    // The fast-path stats, taken last: every metadata change (to any name
    // of a hard-link set) moves the ctime.
    for job in &meta_jobs {
        if job.kind == MetaKind::File {
            let place = place_of(job.path)?;
            let disk = place.display_path();
            let meta = place.open_read().at(&disk)?.metadata().at(&disk)?;
            stats.insert(job.path.clone(), scan::stat_key(&meta));
        }
    }
    crate::sys::fsutil::sync_filesystem(root)?;
    // What is left of the scan is the tree's own (paths under what was set
    // aside went with it).
    let set_aside_paths: Vec<Vec<u8>> = adoption.set_aside.iter().map(|(p, _)| p.clone()).collect();
    let local_only = local
        .keys()
        .filter(|path| {
            !set_aside_paths
                .iter()
                .any(|a| path.starts_with(a) && path.get(a.len()) == Some(&b'/'))
        })
        .count() as u64;

    let exclude_rules = excludes.rules().to_string();
    let scanned_ns = crate::sys::clock::now_ns();
    let me = payload.new_replica.id;
    let new_state = NewState {
        packet,
        header,
        checked,
        me,
        pieces: &outcome.pieces,
        stats: &|row: &PathRow| stats.get(&row.path).copied(),
        exclude_rules: &exclude_rules,
        scanned_ns,
        mirror_of: mirror.then_some(header.sender.id),
        kept_items: preserve.kept_bits(rustix::process::geteuid().is_root()),
    };
    let on_disk = |row: &PathRow| present.contains(&row.path);
    let creator = header.sender.id;
    // The content requests: the new member's first operations, so its
    // first packet to its creator carries them.
    let have: BTreeMap<Id, u64> = checked
        .carried
        .iter()
        .filter(|(_, epoch)| **epoch > 0)
        .map(|(origin, epoch)| (*origin, *epoch))
        .collect();
    let now = crate::sys::clock::now();
    let requests: Vec<Operation> = asked
        .chunks(packet_format::delta::MAX_REQUESTED_PATHS)
        .enumerate()
        .map(|(n, paths)| Operation {
            origin: me,
            epoch: n as u64 + 1,
            recorded: now,
            change: packet_format::delta::ContentRequest {
                to: creator,
                paths: paths.to_vec(),
                have: have.clone(),
            }
            .to_change(),
        })
        .collect();
    // The family's version of each file left in place, from the checked
    // packet's last operation per path (read from its scratch database,
    // so only these paths' operations are held).
    let waiting: std::collections::BTreeSet<&[u8]> = in_place
        .iter()
        .map(|(path, _, _)| path.as_slice())
        .collect();
    let mut last_ops: BTreeMap<Vec<u8>, Operation> = BTreeMap::new();
    if !waiting.is_empty() {
        checked.scratch.for_each_path(false, |row| {
            if waiting.contains(row.path.as_slice()) {
                last_ops.insert(row.path.clone(), row.op.clone());
            }
            Ok(())
        })?;
    }
    let family_excluded: Vec<String> = family_excluded.into_iter().collect();
    state.transaction(|tx| {
        write_new_state(tx, &new_state, &on_disk)?;
        state::add_family_excluded(tx, &family_excluded)?;
        for (path, local, stat) in &in_place {
            let Some(op) = last_ops.get(path) else {
                continue;
            };
            let Some(change) = op.change.path_change() else {
                continue;
            };
            state::put_entry(
                tx,
                &state::EntryWrite {
                    path,
                    state: local,
                    version: change.version,
                    author: &change.author.unwrap_or(op.origin),
                    stat: *stat,
                    scanned_ns: stat.map(|_| scanned_ns),
                },
            )?;
        }
        for op in &requests {
            state::append_operation(tx, op)?;
        }
        if let Some(last) = requests.last() {
            state::set_epoch(tx, &me, &me, last.epoch)?;
            state::seal_own_run(tx, secret, &me, 1, last.epoch)?;
        }
        for path in &asked {
            state::put_content_request(tx, &creator, path, "asked", scanned_ns)?;
        }
        Ok(())
    })?;
    drop(state);
    adoption.kept = kept;
    adoption.metadata_fixed = metadata_fixed;
    adoption.made = made;
    adoption.asked = asked;
    adoption.excluded = excluded;
    adoption.exclude_warnings = crate::sync::creation::CreationExcludes {
        excluded,
        unmatched: excludes
            .unmatched_config_patterns()
            .into_iter()
            .filter(|p| !family_excluded.contains(p))
            .collect(),
        root_prefixed,
    };
    adoption.local_only = local_only;
    adoption.in_place = in_place.into_iter().map(|(path, _, _)| path).collect();
    adoption.notes = notes;
    // In the update import's words (sync::apply).
    if not_made_special > 0 {
        adoption
            .not_applied
            .push(crate::sync::apply::special_not_made_note(not_made_special));
    }
    adoption
        .not_applied
        .extend(unapplied.lines().into_iter().map(|line| {
            format!("{line}; kept in the state, not on disk here (see preserve in config.toml)")
        }));
    Ok(adoption)
}

/// One path's metadata to set once every entry is placed.
struct MetaJob<'a> {
    path: &'a Vec<u8>,
    kind: MetaKind,
    mode: Option<u32>,
    /// `None`: the time here is the family's already.
    mtime: Option<Timestamp>,
    ext: std::borrow::Cow<'a, Extensions>,
}

/// Whether `local` (as the scan read it) differs from `family` in
/// metadata this replica keeps: mode, time, and the `ext` items of
/// `preserve`. Only for the adoption's count.
fn metadata_differs(
    local: &PathState,
    family: &PathState,
    preserve: &crate::tree::meta::Preserve,
) -> bool {
    let kept =
        |ext: Option<&Extensions>| ext.map(|ext| crate::tree::meta::kept_only(ext, preserve));
    let times = |state: &PathState| match state {
        PathState::File { mtime, .. } | PathState::Special { mtime, .. } => Some(*mtime),
        PathState::Directory { mtime, .. } | PathState::Symlink { mtime, .. } => *mtime,
        _ => None,
    };
    let modes = |state: &PathState| match state {
        PathState::File { mode, .. }
        | PathState::Directory { mode, .. }
        | PathState::Special { mode, .. } => Some(*mode & 0o7777),
        _ => None,
    };
    std::mem::discriminant(local) == std::mem::discriminant(family)
        && (modes(local) != modes(family)
            || times(local) != times(family)
            || kept(local.extensions()) != kept(family.extensions()))
}
