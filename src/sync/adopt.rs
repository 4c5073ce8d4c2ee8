//! Adopting a tree that is already there: `mkreplica -import -adopt`.
//!
//! A migrated server holds most of its source's files already. Its new
//! member is made from a manifest (`mkreplica -export -manifest`: a
//! creation packet with the family, the member's identity and the whole
//! log, but no content) over the existing tree:
//!
//! - a file whose content is the recorded one (the same chunk ids) is
//!   kept as it is: not rewritten; its mode and mtime are set only where
//!   they differ from the recorded ones;
//! - directories and symlinks the tree lacks are made;
//! - what stands where the family has something else (a file with other
//!   content, another kind of entry) is set aside, soft-deleted under
//!   `.syncreplica/deleted/DAY/PATH` as imports keep replaced versions,
//!   never deleted;
//! - the files the tree lacks, or had other content for, are asked for: the
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
use crate::ops::{Id, Operation, PathState};
use crate::replica::{self, Replica};
use crate::store::config;
use crate::store::identity::{self, Identity};
use crate::store::layout::{DELETED_DIR, STATE_DIR};
use crate::store::state::{self, StatKey, State};
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
    /// Of those, files whose mode or mtime was set to the recorded one.
    pub metadata_fixed: u64,
    /// Directories, symlinks and empty files made.
    pub made: u64,
    /// Files asked for from the creator (missing, or other content here).
    pub asked: Vec<Vec<u8>>,
    /// What was set aside: the tree path and where it is kept now.
    pub set_aside: Vec<(Vec<u8>, PathBuf)>,
    /// Paths of the family's left alone because this replica excludes them.
    pub excluded: u64,
    /// Local files and folders the family lacks: left in place, recorded as
    /// this replica's own by its next scan.
    pub local_only: u64,
}

/// Makes the new replica of a checked creation packet (normally a manifest)
/// over the existing tree at `dir` (see the module documentation).
/// `key_file` holds the new member's secret key. Errors: everything
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
    crate::sys::fsutil::sync_dir(&root)?;
    for (_, kept) in &mut adoption.set_aside {
        if let Ok(rest) = kept.strip_prefix(&staging) {
            *kept = final_dir.join(rest);
        }
    }
    Ok((Replica::open(&root)?, adoption))
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
) -> Result<Adoption> {
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
    let mut state = State::open(staging)?;
    let excludes = crate::tree::excludes::Excludes::load(
        root,
        &config::Config::default().exclude,
        &config::config_path(staging),
    )?;
    let folding = replica::folding(root, staging)?;

    // What the tree holds, as a scan of a replica that has recorded
    // nothing sees it: every path new, every file read and chunked.
    let outcome = scan::scan(
        root,
        &excludes,
        folding,
        || Ok(HashMap::new()),
        &mut scan::ScanHooks::default(),
        None,
        &crate::tree::meta::Preserve::default_for_user(),
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
        local_only: 0,
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
    let mut dir_modes: Vec<(&Vec<u8>, u32)> = Vec::new();
    let mut kept = 0u64;
    let mut metadata_fixed = 0u64;
    let mut made = 0u64;
    let mut excluded = 0u64;
    // Parents before children: the map is sorted.
    for (path, (_, family)) in &paths {
        if crate::tree::excludes::is_local_only(path) || *family == PathState::Deleted {
            continue;
        }
        let is_dir = matches!(family, PathState::Directory { .. });
        if excludes.excludes_relative(path, is_dir, false) {
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
        match family {
            PathState::Directory { mode, .. } => {
                match &here {
                    Some((
                        PathState::Directory {
                            mode: local_mode, ..
                        },
                        _,
                    )) => {
                        if local_mode != mode {
                            dir_modes.push((path, *mode));
                        }
                    }
                    _ => {
                        set_aside(path, &place)?;
                        place.make_dir(0o700).at(&disk)?;
                        dir_modes.push((path, *mode));
                        made += 1;
                    }
                }
                present.insert(path.clone());
            }
            PathState::Symlink { target, .. } => {
                let same =
                    matches!(&here, Some((PathState::Symlink { target: t, .. }, _)) if t == target);
                if !same {
                    set_aside(path, &place)?;
                    place.symlink(target).at(&disk)?;
                    made += 1;
                }
                present.insert(path.clone());
            }
            PathState::File {
                mode,
                mtime,
                chunks,
                ..
            } => {
                let same = match &here {
                    Some((
                        PathState::File {
                            chunks: local_chunks,
                            mode: local_mode,
                            mtime: local_mtime,
                            ..
                        },
                        Some(_),
                    )) if local_chunks == chunks => Some((*local_mode, *local_mtime)),
                    _ => None,
                };
                match same {
                    Some((local_mode, local_mtime)) => {
                        if local_mode != *mode {
                            place.set_mode(*mode)?;
                        }
                        if local_mtime != *mtime {
                            place.set_mtime(*mtime)?;
                        }
                        if local_mode != *mode || local_mtime != *mtime {
                            metadata_fixed += 1;
                        }
                        kept += 1;
                    }
                    None => {
                        set_aside(path, &place)?;
                        if chunks.is_empty() {
                            // Nothing to ask for: made here.
                            let file = place.create_new().at(&disk)?;
                            use std::os::unix::fs::PermissionsExt;
                            file.set_permissions(std::fs::Permissions::from_mode(*mode))
                                .at(&disk)?;
                            crate::tree::confined::set_file_mtime(&file, *mtime).at(&disk)?;
                            made += 1;
                        } else {
                            asked.push(path.clone());
                            continue;
                        }
                    }
                }
                let meta = std::fs::symlink_metadata(&disk).at(&disk)?;
                stats.insert(path.clone(), scan::stat_key(&meta));
                present.insert(path.clone());
            }
            PathState::Special {
                kind, major, minor, ..
            } => {
                let same = matches!(
                    &here,
                    Some((PathState::Special { kind: k, major: x, minor: y, .. }, _))
                        if (k, x, y) == (kind, major, minor)
                );
                if !same {
                    // Made by the apply engine when the creator re-asserts
                    // it (as root; recorded, not made otherwise).
                    set_aside(path, &place)?;
                    asked.push(path.clone());
                    continue;
                }
                present.insert(path.clone());
            }
            PathState::Deleted | PathState::Unknown { .. } => {}
        }
    }
    // Directory modes last, deepest first, in case one is read-only.
    for (path, mode) in dir_modes.iter().rev() {
        place_of(path)?.set_mode(*mode)?;
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
    state.transaction(|tx| {
        write_new_state(tx, &new_state, &on_disk)?;
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
    adoption.local_only = local_only;
    Ok(adoption)
}
