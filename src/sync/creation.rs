//! Replica-creation packets: `mkreplica -export` and `mkreplica -import`.
//!
//! The exporting replica makes the new member: a replica id and an ed25519
//! key pair. The member joins the exporter's member list at once and an
//! `AddMember` operation is recorded, so every sibling learns the new
//! member's public key with its next updates and accepts its packets from
//! then on.
//!
//! The packet carries the family's members and a snapshot of the tree: for
//! each path, the logged operation that produced its current state (a path
//! whose state came from a merge is re-asserted by a fresh local operation
//! first, so the shipped version vector is exact). The new replica starts
//! with the exporter's epoch row: it has everything the exporter had.
//!
//! The new member's secret key is NOT in the packet, which may pass through
//! untrusted hands: it is written beside it as `NEWNAME.key` (mode 0600),
//! to be carried separately or by a trusted route.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use packet_format::{
    CreationPayload, EpochRange, LogicalPacket, Named, PacketKind, PacketMeta, PacketWriter,
    Target, WrittenPart,
};

use crate::error::{Error, IoContext, Result};
use crate::ops::{Change, ChunkId, Id, Operation, PathState};
use crate::replica::{self, LockedReplica, Replica};
use crate::store::config;
use crate::store::identity::{self, Identity};
use crate::store::layout::{STAGING_DIR, STATE_DIR};
use crate::store::state::{self, EntryWrite, Member, StatKey, State};
use crate::sync::assemble;
use crate::sync::chunks::LocalChunks;
use crate::sync::packets::PacketChunks;
use crate::tree::confined::{ConfinedRoot, Located, Place};
use crate::tree::relpath;
use crate::tree::scan;

/// What `mkreplica -export` wrote.
pub struct CreationExport {
    pub parts: Vec<WrittenPart>,
    pub key_file: PathBuf,
    pub fingerprint: String,
    pub new_replica: Id,
    pub files: u64,
    pub chunk_bytes: u64,
}

/// Writes a replica-creation packet for a new member `new_name` into
/// `out_dir`. The caller holds the lock and has recorded local changes.
pub fn export_creation(
    replica: &mut LockedReplica,
    new_name: &str,
    out_dir: &Path,
    max_size: u64,
    comment: &str,
    stop: &crate::sync::StopFlag,
) -> Result<CreationExport> {
    identity::validate_name(new_name)?;
    crate::sync::export::check_max_size(max_size)?;
    if !out_dir.is_dir() {
        return Err(Error::NotADirectory {
            path: out_dir.to_path_buf(),
        });
    }
    if replica.members()?.iter().any(|m| m.name == new_name) {
        return Err(Error::BadName {
            name: new_name.to_string(),
            why: "the family already has a member of that name".into(),
        });
    }
    let key_file = out_dir.join(format!("{new_name}.key"));
    if key_file.exists() {
        return Err(Error::BadName {
            name: new_name.to_string(),
            why: format!(
                "{} already exists; remove it or choose another -out",
                key_file.display()
            ),
        });
    }
    let me = replica.identity.replica_id;
    let new_id = identity::random_id();
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source works");
    let new_key = ed25519_dalek::SigningKey::from_bytes(&secret);
    let new_member = Member {
        replica: new_id,
        name: new_name.to_string(),
        public_key: new_key.verifying_key().to_bytes(),
    };

    // The whole operation log travels, so the new member can forward any
    // of it later. A path whose current state is not what its last logged
    // operation says (a merge after a conflict) is re-asserted by a fresh
    // local operation, so that replaying the log gives exactly this tree.
    let entries = replica.state().load_entries()?;
    let mut snapshot: Vec<Operation> = Vec::new();
    replica.state().for_each_operation(|op| snapshot.push(op))?;
    let mut last_by_path: HashMap<&[u8], usize> = HashMap::new();
    for (index, op) in snapshot.iter().enumerate() {
        if let Some(change) = op.change.path_change() {
            last_by_path.insert(change.path.as_slice(), index);
        }
    }
    let mut paths: Vec<&Vec<u8>> = entries.keys().collect();
    paths.sort();
    let mut reasserted: Vec<(Vec<u8>, Operation)> = Vec::new();
    let mut next_epoch = replica.state().epoch(&me, &me)?;
    let now = crate::sys::clock::now_ns();
    for path in paths {
        let entry = &entries[path];
        let exact = last_by_path.get(path.as_slice()).is_some_and(|&index| {
            let op = &snapshot[index];
            op.change.path_change().is_some_and(|c| {
                *c.version == entry.version
                    && *c.state == entry.state
                    && c.author.unwrap_or(op.origin) == entry.author
            })
        });
        if !exact {
            next_epoch += 1;
            let mut version = entry.version.clone();
            version.set(me, next_epoch);
            reasserted.push((
                path.clone(),
                Operation {
                    origin: me,
                    epoch: next_epoch,
                    recorded_ns: now,
                    change: Change::Resolve {
                        path: path.clone(),
                        version,
                        state: entry.state.clone(),
                        author: entry.author,
                    },
                },
            ));
        }
    }
    snapshot.extend(reasserted.iter().map(|(_, op)| op.clone()));
    next_epoch += 1;
    let add_member = Operation {
        origin: me,
        epoch: next_epoch,
        recorded_ns: now,
        change: Change::AddMember {
            replica: new_id,
            name: new_name.to_string(),
            public_key: new_member.public_key,
        },
    };
    snapshot.push(add_member.clone());

    let mut table = replica.state().epoch_table()?;
    let mut own_row: BTreeMap<Id, u64> = table
        .remove(&me)
        .map(|row| row.into_iter().collect())
        .unwrap_or_default();
    let estimates: BTreeMap<Id, BTreeMap<Id, u64>> = table
        .into_iter()
        .map(|(member, row)| (member, row.into_iter().collect()))
        .collect();
    own_row.insert(me, next_epoch);
    let mut ranges: BTreeMap<Id, EpochRange> = BTreeMap::new();
    for op in &snapshot {
        let range = ranges.entry(op.origin).or_insert(EpochRange {
            first: op.epoch,
            last: op.epoch,
        });
        range.first = range.first.min(op.epoch);
        range.last = range.last.max(op.epoch);
    }
    let mut members: Vec<packet_format::Member> = replica
        .members()?
        .into_iter()
        .map(|m| packet_format::Member {
            id: m.replica,
            name: m.name,
            public_key: m.public_key,
        })
        .collect();
    members.push(packet_format::Member {
        id: new_id,
        name: new_name.to_string(),
        public_key: new_member.public_key,
    });
    let meta = PacketMeta {
        kind: PacketKind::ReplicaCreation,
        family: replica.identity.family(),
        sender: replica.identity.replica(),
        targets: vec![Target {
            id: new_id,
            name: new_name.to_string(),
            seq: 1,
        }],
        packet_id: identity::random_id(),
        created_ns: now,
        comment: comment.to_string(),
        epoch_ranges: ranges,
        epoch_row: own_row.clone(),
        creation: Some(CreationPayload {
            new_replica: Named {
                id: new_id,
                name: new_name.to_string(),
            },
            members,
            estimates,
        }),
    };
    let signing_key = replica.signing_key()?;
    let mut writer = PacketWriter::create(out_dir, max_size, &signing_key.to_bytes(), meta)?;
    // Content of the current tree only: older versions are history the
    // new member keeps for forwarding, not files it needs.
    let mut local = LocalChunks::index(replica)?;
    let mut sent: HashSet<ChunkId> = HashSet::new();
    let mut files = 0;
    let mut chunk_bytes = 0;
    let mut paths: Vec<&Vec<u8>> = entries.keys().collect();
    paths.sort();
    for path in paths {
        if let PathState::File { chunks, .. } = &entries[path].state {
            files += 1;
            for chunk in chunks {
                stop.check()?;
                if sent.insert(chunk.id) {
                    let bytes = local.read(&replica.root, &chunk.id)?.ok_or_else(|| {
                        Error::ChunkMissingLocally {
                            chunk: hex::encode(chunk.id),
                            path: relpath::display(path),
                        }
                    })?;
                    chunk_bytes += bytes.len() as u64;
                    crate::sync::chunks::add_local_chunk(&mut writer, &local, &chunk.id, &bytes)?;
                }
            }
        }
    }
    for (index, op) in snapshot.iter().enumerate() {
        stop.check()?;
        writer.add_operation(op)?;
        if index == 0 {
            crate::sys::testhook::crash_point("export-writing");
            crate::sys::testhook::pause_point("export-writing", stop);
        }
    }
    // The last moment to give up: from here the parts are finished and
    // committed without pause.
    stop.check()?;
    let parts = writer.finish()?;

    let committed = write_key_file(&key_file, &new_id, &secret).and_then(|()| {
        replica.state_mut().transaction(|tx| {
            for (path, op) in &reasserted {
                state::append_operation(tx, op)?;
                if let Some(change) = op.change.path_change() {
                    let old = &entries[path];
                    state::put_entry(
                        tx,
                        &EntryWrite {
                            path,
                            state: change.state,
                            version: change.version,
                            author: &old.author,
                            stat: old.stat,
                            scanned_ns: old.scanned_ns,
                        },
                    )?;
                }
            }
            state::append_operation(tx, &add_member)?;
            state::insert_member(tx, &new_member, now)?;
            state::set_epoch(tx, &me, &me, next_epoch)?;
            for (origin, epoch) in &own_row {
                state::raise_epoch(tx, &new_id, origin, *epoch)?;
            }
            let first = parts.first().map(|p| p.file_name.as_str()).unwrap_or("");
            state::log_packet(tx, "sent", &new_id, &Id([0; 16]), 1, first, now)?;
            Ok(())
        })
    });
    if let Err(err) = committed {
        for part in &parts {
            let _ = std::fs::remove_file(&part.path);
        }
        let _ = std::fs::remove_file(&key_file);
        return Err(err);
    }
    Ok(CreationExport {
        parts,
        key_file,
        fingerprint: identity::fingerprint(&signing_key.verifying_key().to_bytes()),
        new_replica: new_id,
        files,
        chunk_bytes,
    })
}

fn write_key_file(path: &Path, replica: &Id, secret: &[u8; 32]) -> Result<()> {
    let text = format!(
        "# Signing key of a new syncreplica member. Keep it secret; mkreplica -import needs it.\nreplica_id = \"{replica}\"\nsecret_key = \"{}\"\n",
        hex::encode(secret)
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .at(path)?;
    file.write_all(text.as_bytes()).at(path)?;
    file.sync_all().at(path)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    replica_id: String,
    secret_key: String,
}

fn read_key_file(path: &Path) -> Result<(Id, [u8; 32])> {
    let text = std::fs::read_to_string(path).at(path)?;
    let bad = |what: String| Error::BadIdentity {
        path: path.to_path_buf(),
        what,
    };
    let file: KeyFile =
        toml::from_str(&text).map_err(|e| bad(config::describe_toml_error(&text, &e)))?;
    let id = Id::from_hex(&file.replica_id)
        .ok_or_else(|| bad("replica_id is not 32 hex digits".into()))?;
    let secret: [u8; 32] = hex::decode(&file.secret_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("secret_key is not 64 hex digits".into()))?;
    Ok((id, secret))
}

/// What `mkreplica -import` made.
pub struct CreationImport {
    pub replica: Replica,
    /// Pids of killed earlier runs whose half-made tree was removed first.
    pub cleaned_up: Vec<u32>,
    pub fingerprint: String,
    pub sender: String,
    pub files: u64,
}

/// The signer's fingerprint of a creation packet's first part, for
/// checking out of band before anything is trusted.
pub fn creation_fingerprint(packet: &LogicalPacket) -> String {
    packet.header().signer_fingerprint()
}

/// Creates the new replica at `dir` (absent or empty) from a verified
/// creation packet. `key_file` holds the new member's secret key. On error,
/// `dir` is left as it was found.
pub fn import_creation(
    packet: &LogicalPacket,
    dir: &Path,
    key_file: &Path,
) -> Result<CreationImport> {
    let header = packet.header().clone();
    let payload =
        packet.parts()[0]
            .creation()
            .cloned()
            .ok_or_else(|| Error::BadCreationPacket {
                what: format!(
                    "{} is not a replica-creation packet",
                    packet.parts()[0].path().display()
                ),
            })?;
    // Names from the packet become the replica's identity and member list.
    identity::validate_name(&payload.new_replica.name)?;
    identity::validate_name(&header.family.name)?;
    for member in &payload.members {
        identity::validate_name(&member.name)?;
    }
    let (key_id, secret) = read_key_file(key_file)?;
    let new = &payload.new_replica;
    let member = payload
        .members
        .iter()
        .find(|m| m.id == new.id)
        .ok_or_else(|| Error::BadCreationPacket {
            what: "the creation packet does not list the new replica among the members".into(),
        })?;
    let key = ed25519_dalek::SigningKey::from_bytes(&secret);
    if key_id != new.id || key.verifying_key().to_bytes() != member.public_key {
        return Err(Error::BadIdentity {
            path: key_file.to_path_buf(),
            what: format!(
                "this key is not the key of new replica \"{}\" in the packet",
                new.name
            ),
        });
    }
    let sender_listed = payload
        .members
        .iter()
        .any(|m| m.id == header.sender.id && m.public_key == header.signer_key);
    if !sender_listed {
        return Err(Error::BadCreationPacket {
            what: "the packet's signer is not the family member it claims to be".into(),
        });
    }

    let existed = dir.exists();
    let cleaned_up = if existed {
        remove_abandoned_import(dir, packet)?
    } else {
        Vec::new()
    };
    if existed {
        let mut entries = std::fs::read_dir(dir).at(dir)?;
        if entries.next().is_some() {
            return Err(Error::NotEmpty {
                dir: dir.to_path_buf(),
            });
        }
    } else {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let root = std::fs::canonicalize(dir).at(dir)?;
    if let Some(outer) = root
        .parent()
        .and_then(|p| p.ancestors().find(|d| replica::is_replica_root(d)))
    {
        return Err(Error::AlreadyInReplica {
            path: root.clone(),
            root: outer.to_path_buf(),
            name: "?".into(),
        });
    }
    let result = materialize(packet, &header, &payload, &root, &secret);
    match result {
        Ok((replica, files)) => Ok(CreationImport {
            replica,
            cleaned_up,
            fingerprint: header.signer_fingerprint(),
            sender: header.sender.name.clone(),
            files,
        }),
        Err(err) => {
            // Leave the directory as it was found: absent or empty.
            if let Ok(entries) = std::fs::read_dir(&root) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() && !path.is_symlink() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
            if !existed {
                let _ = std::fs::remove_dir(&root);
            }
            Err(err)
        }
    }
}

/// Removes what a `mkreplica -import` into `dir` killed before it finished
/// left: its state folder under construction (`.syncreplica.init-PID`, its
/// process gone) and the top-level entries the packet creates. If anything
/// else is there, nothing is removed (the caller then finds the directory
/// not empty). Returns the
/// pids of the runs cleaned up after.
fn remove_abandoned_import(dir: &Path, packet: &LogicalPacket) -> Result<Vec<u32>> {
    let abandoned = crate::store::lock::abandoned_init_dirs(dir);
    if abandoned.is_empty() || dir.join(STATE_DIR).exists() {
        return Ok(Vec::new());
    }
    let mut tops: std::collections::HashSet<Vec<u8>> = Default::default();
    for op in packet.operations() {
        if let Some(change) = op?.change.path_change() {
            let top = change.path.split(|&b| b == b'/').next().unwrap_or_default();
            tops.insert(top.to_vec());
        }
    }
    use std::os::unix::ffi::OsStrExt;
    let ours: Vec<PathBuf> = std::fs::read_dir(dir)
        .at(dir)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| !abandoned.iter().any(|(staging, _)| staging == path))
        .collect();
    if ours.iter().any(|path| {
        !path
            .file_name()
            .is_some_and(|n| tops.contains(n.as_bytes()))
    }) {
        // Something the packet does not make: not only leftovers.
        return Ok(Vec::new());
    }
    for (staging, _) in &abandoned {
        std::fs::remove_dir_all(staging).at(staging)?;
    }
    for path in ours {
        let meta = std::fs::symlink_metadata(&path).at(&path)?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&path).at(&path)?;
        } else {
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(abandoned.into_iter().map(|(_, pid)| pid).collect())
}

fn materialize(
    packet: &LogicalPacket,
    header: &packet_format::Header,
    payload: &CreationPayload,
    root: &Path,
    secret: &[u8; 32],
) -> Result<(Replica, u64)> {
    let staging = root.join(format!("{STATE_DIR}.init-{}", std::process::id()));
    std::fs::create_dir(&staging).at(&staging)?;
    let identity = Identity {
        family_name: header.family.name.clone(),
        family_id: header.family.id,
        replica_name: payload.new_replica.name.clone(),
        replica_id: payload.new_replica.id,
    };
    identity.save(&staging)?;
    crate::sys::fsutil::create_new_file(&identity::signing_key_path(&staging), secret, 0o600)?;
    config::write_default(&staging)?;
    let mut state = State::open(&staging)?;

    let mut ops: Vec<Operation> = Vec::new();
    for op in packet.operations() {
        ops.push(op?);
    }
    // Replaying the log: each path ends as its last operation says (the
    // sender re-asserted any path where that would not give its tree).
    let mut last_by_path: HashMap<&Vec<u8>, &Operation> = HashMap::new();
    for op in &ops {
        if let Some(change) = op.change.path_change() {
            last_by_path.insert(change.path, op);
        }
    }
    // Parents before children; directory modes last, in case one is read-only.
    let mut path_ops: Vec<(&Vec<u8>, &PathState)> = last_by_path
        .iter()
        .filter_map(|(path, op)| op.change.path_change().map(|c| (*path, c.state)))
        .collect();
    path_ops.sort_by(|a, b| a.0.cmp(b.0));
    // Every file's content is written once, straight from the packet, in
    // the state folder under construction; each is then renamed into the
    // tree below, in path order with the directories.
    let content = staging.join(STAGING_DIR);
    std::fs::create_dir(&content).at(&content)?;
    let targets: Vec<assemble::Target> = path_ops
        .iter()
        .filter_map(|(path, path_state)| match path_state {
            PathState::File {
                mode,
                mtime_ns,
                chunks,
                ..
            } => Some((path, mode, mtime_ns, chunks)),
            _ => None,
        })
        .enumerate()
        .map(|(n, (path, mode, mtime_ns, chunks))| assemble::Target {
            path: content.join(n.to_string()),
            rel: path,
            chunks,
            mode: *mode,
            mtime_ns: *mtime_ns,
        })
        .collect();
    assemble::write_files(
        &targets,
        &mut PacketChunks::new(packet),
        assemble::Options {
            elsewhere: &mut |_| None,
            missing: &|chunk, rel| Error::BadCreationPacket {
                what: format!(
                    "chunk {} of {} is not in the creation packet",
                    hex::encode(chunk.id),
                    relpath::display(rel)
                ),
            },
            // One filesystem sync for the whole tree below.
            fsync: false,
            after_file: &mut || Ok(()),
        },
    )?;
    let mut staged = targets.iter().map(|target| &target.path);
    let mut files = 0;
    let mut stats: std::collections::HashMap<Vec<u8>, StatKey> = Default::default();
    let confined = ConfinedRoot::open(root)?;
    // Every path goes through the confined root: its parent is held as a
    // handle, so a directory swapped for a symlink meanwhile is refused,
    // not followed. Parents come first (sorted), so none is created here.
    let place_of = |path: &[u8]| -> Result<Place> {
        match confined.locate(path, false)? {
            Located::At(place) => Ok(place),
            Located::Blocked(why) => Err(Error::hostile(relpath::display(path), why)),
        }
    };
    for (path, path_state) in &path_ops {
        let place = place_of(path)?;
        let disk = place.display_path();
        match path_state {
            PathState::Directory { .. } => place.make_dir(0o700).at(&disk)?,
            PathState::Symlink { target } => {
                place.symlink_sibling(place.name(), target).at(&disk)?
            }
            PathState::File { .. } => {
                let from = staged.next().expect("one staged file per file");
                place.rename_in_new(from).at(&disk)?;
                // Stat after the rename, which changes the ctime.
                let meta = place.open_read().at(&disk)?.metadata().at(&disk)?;
                stats.insert((*path).clone(), scan::stat_key(&meta));
                files += 1;
            }
            PathState::Deleted => {}
        }
    }
    std::fs::remove_dir(&content).at(&content)?;
    for (path, path_state) in path_ops.iter().rev() {
        if let PathState::Directory { mode } = path_state {
            place_of(path)?.set_mode(*mode)?;
        }
    }
    // One filesystem sync for the whole tree rather than one per file: until
    // the state folder is renamed into place below, there is no replica
    // here, and an interrupted import is simply run again in an empty
    // directory.
    crate::sys::fsutil::sync_filesystem(root)?;
    let scanned_ns = crate::sys::clock::now_ns();
    let me = payload.new_replica.id;
    state.transaction(|tx| {
        for member in &payload.members {
            state::insert_member(
                tx,
                &Member {
                    replica: member.id,
                    name: member.name.clone(),
                    public_key: member.public_key,
                },
                header.created_ns,
            )?;
        }
        for op in &ops {
            state::append_operation(tx, op)?;
        }
        for op in last_by_path.values() {
            if let Some(change) = op.change.path_change() {
                let path = change.path;
                let stat = stats.get(path).copied();
                let author = change.author.unwrap_or(op.origin);
                state::put_entry(
                    tx,
                    &EntryWrite {
                        path,
                        state: change.state,
                        version: change.version,
                        author: &author,
                        stat,
                        scanned_ns: stat.map(|_| scanned_ns),
                    },
                )?;
            }
        }
        for (origin, epoch) in &header.epoch_row {
            state::set_epoch(tx, &me, origin, *epoch)?;
            state::set_epoch(tx, &header.sender.id, origin, *epoch)?;
        }
        for (member, row) in &payload.estimates {
            if *member == me || *member == header.sender.id {
                continue;
            }
            for (origin, epoch) in row {
                state::set_epoch(tx, member, origin, *epoch)?;
            }
        }
        state::set_epoch(tx, &me, &me, 0)?;
        state::log_packet(
            tx,
            "received",
            &header.sender.id,
            &header.packet_id,
            1,
            &packet.parts()[0].path().display().to_string(),
            scanned_ns,
        )?;
        Ok(())
    })?;
    drop(state);
    let final_dir = replica::state_dir(root);
    crate::sys::testhook::crash_point("mkreplica-import-before-rename");
    std::fs::rename(&staging, &final_dir).at(&final_dir)?;
    crate::sys::fsutil::sync_dir(root)?;
    Ok((Replica::open(root)?, files))
}
