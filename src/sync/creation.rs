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
//!
//! A file that changed since the scan recorded it (a busy file: the
//! recorded version's content is gone) does not stop the export, as it
//! does not stop an update export: the packet goes without its content,
//! the new replica is made without that file (no entry, so its first scan
//! records no deletion), and the exporter re-asserts the recorded version
//! in an operation after the `AddMember`, which the new member therefore
//! lacks: the next update to it carries that version, or the file's newer
//! one (recorded by that export's scan, superseding it in the same
//! packet).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::params;

use packet_format::{
    CreationPayload, EncryptTo, EncryptionRecipient, EpochRange, LogicalPacket, Named, PacketKind,
    PacketMeta, PacketWriter, Target, WrittenPart,
};

use crate::error::{Error, IoContext, Result};
use crate::ops::{Change, ChunkId, Id, Operation, PathState, Timestamp};
use crate::replica::{self, LockedReplica, Replica};
use crate::store::config;
use crate::store::identity::{self, Identity};
use crate::store::layout::{STAGING_DIR, STATE_DIR};
use crate::store::state::{self, EntryWrite, Member, StatKey, State};
use crate::sync::apply::{self, ChunkSource};
use crate::sync::assemble;
use crate::sync::chunks::{ChunkRead, LocalChunks};
use crate::sync::creation_check::{Checked, PathRow, Scratch, PAGE};
use crate::sync::packets::PacketChunks;
use crate::tree::confined::{ConfinedRoot, Located, Place};
use crate::tree::relpath;
use crate::tree::scan;

/// What `mkreplica -export` wrote.
pub struct CreationExport {
    pub parts: Vec<WrittenPart>,
    /// The key file written (`-keyout`), or `None` when the keys travel
    /// inside the packet, encrypted to the passphrase.
    pub key_file: Option<PathBuf>,
    pub fingerprint: String,
    pub new_replica: Id,
    pub files: u64,
    pub chunk_bytes: u64,
    /// Files (on disk) that changed since the scan recorded them: the
    /// packet does not carry them, and the next update to the new member
    /// does (see [`export_creation`]).
    pub held_back: Vec<PathBuf>,
}

/// How the new member's secret keys (Ed25519 signing key, age identity)
/// leave `mkreplica -export`: never in the clear next to the packet.
pub enum KeysOut {
    /// Inside the packet, in its `secrets` entry; the whole packet is
    /// encrypted to this passphrase (SPEC.md §4.2, §8).
    Passphrase(std::sync::Arc<age::secrecy::SecretString>),
    /// In this key file (made, mode 0600; refused if it exists), carried
    /// by another route; the packet is encrypted to the new member's own
    /// age key, which the key file holds.
    File(PathBuf),
}

/// zstd level of a creation packet's chunks. A creation packet carries the
/// whole tree, so its export is bound by compression. Level 2 against the
/// writer's default 3, on bench/sync_vs_rsync.sh's creation tree (20,000
/// files, 543 MB; release build, 3 runs alternating with `tar | zstd -3
/// -T0`): the export's CPU time 15 % lower (from 1.03-1.20x tar|zstd's
/// to 0.87-0.94x), the packet 1.042x tar|zstd -3's bytes (1.007x at level
/// 3; the target allows 1.05x). Update packets, small and paid for by the
/// byte, keep level 3.
const CREATION_ZSTD_LEVEL: i32 = 2;

/// Writes a replica-creation packet for a new member `new_name` into
/// `out_dir`. The caller holds the lock and has recorded local changes.
/// Busy files are left out (see the module documentation) and listed in
/// [`CreationExport::held_back`]. `manifest`: the packet carries no
/// content at all, only the recorded state (chunk ids included), for a
/// new member made over a tree that holds most of it already
/// (`mkreplica -import -adopt`, [`crate::sync::adopt`]).
#[allow(clippy::too_many_arguments)]
pub fn export_creation(
    replica: &mut LockedReplica,
    new_name: &str,
    out_dir: &Path,
    max_size: u64,
    comment: &str,
    manifest: bool,
    keys_out: &KeysOut,
    stop: &crate::sync::StopFlag,
) -> Result<CreationExport> {
    check_export(replica, new_name, out_dir, max_size, keys_out)?;
    if !out_dir.is_dir() {
        return Err(Error::NotADirectory {
            path: out_dir.to_path_buf(),
        });
    }
    // The new member learns this replica's encryption key from the log.
    crate::sync::crypt::ensure_announced(replica)?;
    let key_file = match keys_out {
        KeysOut::File(path) => Some(path.clone()),
        KeysOut::Passphrase(_) => None,
    };
    let me = replica.identity.replica_id;
    let incarnation = replica.incarnation()?;
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
    let entries = replica.entries()?;
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
    let logged_epoch = replica.state().epoch(&me, &me)?;
    let mut next_epoch = logged_epoch;
    let now = crate::sys::clock::now();
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
                    recorded: now,
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
    // A removal whose operation was scrubbed (`syncreplica -scrub`) is
    // re-issued in this replica's name, so the new member learns it as it
    // learns every path from the re-assertions above (a second removal of
    // a removed member changes nothing elsewhere).
    let checkpoints = replica.state().checkpoints()?;
    for removed in replica.state().removed_members()? {
        let scrubbed = checkpoints
            .get(&removed.by)
            .is_some_and(|c| c.through >= removed.by_epoch);
        if scrubbed && removed.replica != me {
            next_epoch += 1;
            reasserted.push((
                Vec::new(),
                Operation {
                    origin: me,
                    epoch: next_epoch,
                    recorded: now,
                    change: Change::RemoveMember {
                        replica: removed.replica,
                        name: removed.name.clone(),
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
        recorded: now,
        change: Change::AddMember {
            replica: new_id,
            name: new_name.to_string(),
            public_key: new_member.public_key,
        },
    };
    // The new member's encryption key, announced by this replica in the
    // same run: siblings encrypt to it from their first packet on.
    let new_encryption_key = age::x25519::Identity::generate();
    next_epoch += 1;
    let member_keys = Operation {
        origin: me,
        epoch: next_epoch,
        recorded: now,
        change: packet_format::ops::MemberKeys {
            replica: new_id,
            encryption_key: new_encryption_key.to_public().to_string(),
        }
        .to_change(),
    };
    snapshot.push(add_member.clone());
    snapshot.push(member_keys.clone());

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
    // The log's runs are sealed already; the run this export adds (the
    // re-asserted paths and the new member) is sealed here, and stored
    // with it when the export commits.
    let signing_key = replica.signing_key()?;
    let mut logged = ranges.clone();
    match logged.get_mut(&me) {
        Some(range) if range.first > logged_epoch => {
            logged.remove(&me);
        }
        Some(range) => range.last = logged_epoch,
        None => {}
    }
    let mut seals = crate::sync::seals::for_export(replica.state(), &logged)?;
    let new_run: Vec<Vec<u8>> = reasserted
        .iter()
        .map(|(_, op)| op)
        .chain([&add_member, &member_keys])
        .map(Operation::encode)
        .collect();
    let head =
        packet_format::seals::chain(new_run.iter().map(Vec::as_slice), packet_format::seals::END);
    let new_seal = packet_format::seals::Seal::sign(
        &signing_key.to_bytes(),
        me,
        logged_epoch + 1,
        next_epoch,
        &head,
    );
    seals.push(new_seal);
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
        created: now,
        comment: comment.to_string(),
        epoch_ranges: ranges,
        epoch_row: own_row.clone(),
        seals,
        creation: Some(CreationPayload {
            new_replica: Named {
                id: new_id,
                name: new_name.to_string(),
            },
            members,
            estimates,
            // What this replica scrubbed, or received scrubbed: the ranges
            // start right after these (SPEC.md §8.1).
            checkpoints: checkpoints.values().copied().collect(),
        }),
        incarnation: Some(incarnation),
        // The new replica holds exactly the state it is made from; it has
        // no sibling to compare with until a packet arrives.
        tree_digest: None,
        // The new member's keys never travel in the clear: with a
        // passphrase they travel inside, encrypted with everything else;
        // with a key file the packet is encrypted to the key it holds.
        encryption: Some(match keys_out {
            KeysOut::Passphrase(passphrase) => EncryptTo {
                recipients: Vec::new(),
                passphrase: Some(passphrase.clone()),
            },
            KeysOut::File(_) => EncryptTo {
                recipients: vec![EncryptionRecipient {
                    id: new_id,
                    key: new_encryption_key.to_public().to_string(),
                }],
                passphrase: None,
            },
        }),
        secrets: match keys_out {
            KeysOut::Passphrase(_) => {
                Some(key_text(&new_id, &secret, &new_encryption_key).into_bytes())
            }
            KeysOut::File(_) => None,
        },
        rotations: Vec::new(),
    };
    let mut writer = PacketWriter::create(out_dir, max_size, &signing_key.to_bytes(), meta)?
        .with_chunk_level(CREATION_ZSTD_LEVEL)?
        .with_encoder_threads(crate::sync::chunks::encoder_threads());
    // The first thing written is where tests kill or pause a creation export.
    let mut first_written = true;
    let mut written = |stop: &crate::sync::StopFlag| {
        if std::mem::take(&mut first_written) {
            crate::sys::testhook::crash_point("export-writing");
            crate::sys::testhook::pause_point("export-writing", stop);
        }
    };
    // Content of the current tree only: older versions are history the
    // new member keeps for forwarding, not files it needs.
    let mut local = LocalChunks::index(replica)?;
    let mut sent: HashSet<ChunkId> = HashSet::new();
    let mut files = 0;
    let mut chunk_bytes = 0;
    // Busy files: changed since the scan recorded them, so the recorded
    // version's content is gone. The packet goes without it (the new
    // replica makes the rest and leaves these out), and each is
    // re-asserted below, so the next update to the new member carries it,
    // or its new version, as the next update to any sibling carries a busy
    // file held back from an export.
    let mut held_back: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    let mut paths: Vec<&Vec<u8>> = entries.keys().collect();
    paths.sort();
    let content: u64 = entries
        .values()
        .filter_map(|entry| match &entry.state {
            PathState::File { size, .. } => Some(*size),
            _ => None,
        })
        .sum();
    let _writing = crate::sys::progress::phase(
        "writing the creation packet",
        crate::sys::progress::Unit::Bytes,
        Some(content),
    );
    'files: for path in paths {
        if let PathState::File { chunks, .. } = &entries[path].state {
            for chunk in chunks.iter().filter(|_| !manifest) {
                stop.check()?;
                crate::sys::progress::advance(u64::from(chunk.len));
                if sent.contains(&chunk.id) {
                    continue;
                }
                match local.add_to(&replica.root, &mut writer, &chunk.id)? {
                    ChunkRead::Added(len) => {
                        sent.insert(chunk.id);
                        chunk_bytes += len;
                    }
                    ChunkRead::NotHeld => {
                        return Err(Error::ChunkMissingLocally {
                            chunk: hex::encode(chunk.id),
                            path: relpath::display(path),
                        })
                    }
                    ChunkRead::Changed(disk) => {
                        held_back.push((path.clone(), disk));
                        continue 'files;
                    }
                }
            }
            files += 1;
            if files == 1 {
                // The first file's chunks in the part file before the
                // first kill or pause point (the encoder threads may
                // still hold them): a kill there is tested for what it
                // leaves behind.
                writer.chunk_bytes_written()?;
            }
            written(stop);
        }
    }
    for op in &snapshot {
        stop.check()?;
        writer.add_operation(op)?;
        written(stop);
    }
    // The last moment to give up: from here the parts are finished and
    // committed without pause.
    stop.check()?;
    let parts = writer.finish()?;

    // The re-assertions of the busy files: operations of this replica after
    // the AddMember, which the new member lacks (its row stops at the
    // AddMember), built on each file's version as the packet states it.
    let mut last_epoch = next_epoch;
    let reasserted_versions: HashMap<&[u8], &crate::ops::VersionVector> = reasserted
        .iter()
        .filter_map(|(path, op)| {
            op.change
                .path_change()
                .map(|c| (path.as_slice(), c.version))
        })
        .collect();
    let resent: Vec<(Vec<u8>, Operation)> = held_back
        .iter()
        .map(|(path, _)| {
            let entry = &entries[path];
            let mut version = reasserted_versions
                .get(path.as_slice())
                .map_or_else(|| entry.version.clone(), |v| (*v).clone());
            last_epoch += 1;
            version.set(me, last_epoch);
            let op = Operation {
                origin: me,
                epoch: last_epoch,
                recorded: now,
                change: Change::Resolve {
                    path: path.clone(),
                    version,
                    state: entry.state.clone(),
                    author: entry.author,
                },
            };
            (path.clone(), op)
        })
        .collect();
    // A re-assertion is logged, and the path's entry takes its version;
    // the file on disk is as recorded, so its stat stays.
    let log_reassertion =
        |tx: &rusqlite::Transaction, path: &Vec<u8>, op: &Operation| -> rusqlite::Result<()> {
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
            Ok(())
        };
    // A -keyout file is removed again if the commit fails (write_key_out
    // leaves none behind when it fails itself).
    let committed = write_key_out(key_file.as_deref(), &new_id, &secret, &new_encryption_key)
        .and_then(|()| {
            let committed = replica.state_mut().transaction(|tx| {
                for (path, op) in &reasserted {
                    log_reassertion(tx, path, op)?;
                }
                state::append_operation(tx, &add_member)?;
                state::append_operation(tx, &member_keys)?;
                state::put_seal(tx, &new_seal)?;
                state::insert_member(tx, &new_member, now.as_nanos_saturating())?;
                for (path, op) in &resent {
                    log_reassertion(tx, path, op)?;
                }
                if last_epoch > next_epoch {
                    // The re-assertions are a run of their own, sealed like any.
                    let secret = signing_key.to_bytes();
                    state::seal_own_run(tx, &secret, &me, next_epoch + 1, last_epoch)?;
                }
                state::set_epoch(tx, &me, &me, last_epoch)?;
                for (origin, epoch) in &own_row {
                    state::raise_epoch(tx, &new_id, origin, *epoch)?;
                }
                let first = parts.first().map(|p| p.file_name.as_str()).unwrap_or("");
                state::log_packet(
                    tx,
                    "sent",
                    &new_id,
                    &Id([0; 16]),
                    1,
                    first,
                    now.as_nanos_saturating(),
                )?;
                Ok(())
            });
            if let (Err(_), Some(path)) = (&committed, &key_file) {
                let _ = std::fs::remove_file(path);
            }
            committed
        });
    if let Err(err) = committed {
        for part in &parts {
            let _ = std::fs::remove_file(&part.path);
        }
        return Err(err);
    }
    Ok(CreationExport {
        parts,
        key_file,
        fingerprint: identity::fingerprint(&signing_key.verifying_key().to_bytes()),
        new_replica: new_id,
        files,
        chunk_bytes,
        held_back: held_back.into_iter().map(|(_, disk)| disk).collect(),
    })
}

/// The checks of [`export_creation`] that need nothing written: the new
/// name, the size, a member of that name, a `-keyout` file in the way, and
/// `out_dir` (absent, to be created, or a directory). Run before anything
/// is recorded or created.
pub fn check_export(
    replica: &Replica,
    new_name: &str,
    out_dir: &Path,
    max_size: u64,
    keys_out: &KeysOut,
) -> Result<()> {
    identity::validate_name(new_name)?;
    crate::sync::family::refuse_while_restoring(replica, "making a new member")?;
    crate::sync::export::check_max_size(max_size)?;
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(Error::out_is_a_file(out_dir));
    }
    if replica.members()?.iter().any(|m| m.name == new_name) {
        return Err(Error::Member {
            name: new_name.to_string(),
            why: "the family already has a member of that name; choose another NEWNAME".into(),
        });
    }
    if let KeysOut::File(key_file) = keys_out {
        // Never overwritten: it may be another member's key.
        if std::fs::symlink_metadata(key_file).is_ok() {
            return Err(Error::KeyOutExists {
                path: key_file.clone(),
            });
        }
        match key_file.parent() {
            // The -out folder itself, not there yet, is made before the
            // key file is written.
            Some(parent) if same_path(parent, out_dir) => {}
            Some(parent) if !parent.as_os_str().is_empty() && !parent.is_dir() => {
                return Err(Error::KeyOutNoFolder {
                    path: key_file.clone(),
                    folder: parent.to_path_buf(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `a` and `b` name one path (as absolute paths, component by
/// component: `stick/` and `./stick` are one), whether or not it exists.
fn same_path(a: &Path, b: &Path) -> bool {
    match (std::path::absolute(a), std::path::absolute(b)) {
        (Ok(a), Ok(b)) => a.components().eq(b.components()),
        _ => false,
    }
}

/// The text of a key file, which is also what a passphrase-encrypted
/// creation packet carries in its `secrets` entry.
fn key_text(replica: &Id, secret: &[u8; 32], encryption: &age::x25519::Identity) -> String {
    use age::secrecy::ExposeSecret;
    format!(
        "# Signing and encryption keys of a new syncreplica member. Keep them secret; mkreplica -import needs them.\nreplica_id = \"{replica}\"\nsecret_key = \"{}\"\nencryption_key = \"{}\"\n",
        hex::encode(secret),
        encryption.to_string().expose_secret()
    )
}

/// Writes the `-keyout` file, if there is one; on failure none is left
/// (one that was there already is refused, never overwritten).
fn write_key_out(
    path: Option<&Path>,
    replica: &Id,
    secret: &[u8; 32],
    encryption: &age::x25519::Identity,
) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut created = false;
    let written = write_key_file(path, replica, secret, encryption, &mut created);
    if written.is_err() && created {
        let _ = std::fs::remove_file(path);
    }
    written
}

fn write_key_file(
    path: &Path,
    replica: &Id,
    secret: &[u8; 32],
    encryption: &age::x25519::Identity,
    created: &mut bool,
) -> Result<()> {
    let text = key_text(replica, secret, encryption);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|cause| match cause.kind() {
            // Made meanwhile (checked before the export began).
            std::io::ErrorKind::AlreadyExists => Error::KeyOutExists {
                path: path.to_path_buf(),
            },
            _ => Error::io(path, cause),
        })?;
    *created = true;
    file.write_all(text.as_bytes()).at(path)?;
    file.sync_all().at(path)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    replica_id: String,
    secret_key: String,
    /// Absent in key files of older versions: the new replica then makes
    /// its own with its first export.
    #[serde(default)]
    encryption_key: Option<String>,
}

/// The new member's id, signing secret and encryption identity (text).
pub(crate) type NewMemberKeys = (Id, [u8; 32], Option<String>);

pub(crate) fn read_key_file(path: &Path) -> Result<NewMemberKeys> {
    let text = std::fs::read_to_string(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => Error::MissingKeyFile {
            path: path.to_path_buf(),
        },
        _ => Error::io(path, err),
    })?;
    parse_key_text(path, &text)
}

/// Parses a key file's text (`path` names it, or the packet whose
/// `secrets` entry held it, in errors).
fn parse_key_text(path: &Path, text: &str) -> Result<NewMemberKeys> {
    let text = text.to_string();
    let bad = |what: String| Error::BadKeyFile {
        path: path.to_path_buf(),
        what: format!("damaged: {what}"),
    };
    // Not even the shape of one (some other file named by mistake): said
    // as such, not as a damaged key.
    let file: KeyFile = toml::from_str(&text).map_err(|e| match toml::from_str::<toml::Table>(&text) {
        Ok(table) if table.contains_key("secret_key") => bad(config::describe_toml_error(&text, &e)),
        _ => Error::BadKeyFile {
            path: path.to_path_buf(),
            what: "not a key file (mkreplica -export writes NEWNAME.key beside the creation packet)"
                .into(),
        },
    })?;
    let id = Id::from_hex(&file.replica_id)
        .ok_or_else(|| bad("replica_id is not 32 hex digits".into()))?;
    let secret: [u8; 32] = hex::decode(&file.secret_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("secret_key is not 64 hex digits".into()))?;
    if let Some(key) = &file.encryption_key {
        key.parse::<age::x25519::Identity>().map_err(|why| {
            bad(format!(
                "encryption_key is not an age X25519 identity: {why}"
            ))
        })?;
    }
    Ok((id, secret, file.encryption_key))
}

/// What `mkreplica -import` made.
pub struct CreationImport {
    pub replica: Replica,
    /// Pids of killed earlier runs whose half-made tree was removed first.
    pub cleaned_up: Vec<u32>,
    pub fingerprint: String,
    pub sender: String,
    pub files: u64,
    /// Files the packet does not carry (the sender found them busy): not
    /// made here; the sender's next update brings them.
    pub not_carried: Vec<Vec<u8>>,
    /// One note per path the packet has that this filesystem could not
    /// hold beside another one (it folds case or Unicode normalisation),
    /// naming the conflict copy made of it.
    pub conflicts: Vec<String>,
    /// One note per item this replica could not apply (not root: device
    /// nodes, owners, groups, setuid bits), with how many paths: recorded,
    /// not on disk here.
    pub not_applied: Vec<String>,
    /// What the new member's own exclude patterns (`-exclude`) did.
    pub excludes: CreationExcludes,
}

/// What a creation import's exclude patterns (`mkreplica -import
/// -exclude`) left out of the family's paths.
#[derive(Debug, Default, Clone)]
pub struct CreationExcludes {
    /// Paths of the family's left out (a folder's contents counted).
    pub excluded: u64,
    /// Patterns (as in force) that matched none of the family's paths.
    pub unmatched: Vec<String>,
    /// Patterns that named the replica root's absolute path, as (written,
    /// taken as).
    pub root_prefixed: Vec<(String, String)>,
}

/// The signer's fingerprint of a creation packet's first part, for
/// checking out of band before anything is trusted.
pub fn creation_fingerprint(packet: &LogicalPacket) -> String {
    packet.header().signer_fingerprint()
}

/// What [`check_creation`] returns: the header, the creation payload, the
/// checked operations, the new member's secret signing key and its secret
/// encryption key (absent in key files written before encryption).
pub(crate) type CheckedCreation = (
    packet_format::Header,
    CreationPayload,
    Checked,
    [u8; 32],
    Option<String>,
);

/// The checks every creation import makes before anything is made: the
/// packet is a creation packet, its names are valid, everything an update
/// import checks holds ([`crate::sync::creation_check::check`]), and
/// `key_file` holds the new member's key. Returns the header, the creation
/// payload, the checked operations, the secret signing key and the secret
/// encryption key (an age X25519 identity; absent in key files written
/// before encryption).
pub(crate) fn check_creation(
    packet: &LogicalPacket,
    key_file: &Path,
    scratch_dir: &Path,
) -> Result<CheckedCreation> {
    let header = packet.header().clone();
    let payload = creation_payload(packet)?;
    // Names from the packet become the replica's identity and member list.
    identity::validate_name(&payload.new_replica.name)?;
    identity::validate_name(&header.family.name)?;
    for member in &payload.members {
        identity::validate_name(&member.name)?;
    }
    // Everything an update import checks, and the member list against the
    // log, before anything is made.
    let checked = crate::sync::creation_check::check(packet, &payload, scratch_dir)?;
    // A passphrase-encrypted packet carries the keys (decrypted by now);
    // otherwise they come from the key file.
    let (key_id, secret, encryption_key, key_file) = match packet.parts()[0].secrets() {
        Some(bytes) => {
            let path = packet.parts()[0].path().to_path_buf();
            let text = std::str::from_utf8(bytes).map_err(|_| Error::BadCreationPacket {
                packet: path.clone(),
                what: "the keys it carries are not text".into(),
            })?;
            let (id, secret, encryption) = parse_key_text(&path, text)?;
            (id, secret, encryption, path)
        }
        None => {
            let (id, secret, encryption) = read_key_file(key_file)?;
            (id, secret, encryption, key_file.to_path_buf())
        }
    };
    let new = &payload.new_replica;
    let member = checked
        .members
        .iter()
        .find(|m| m.replica == new.id)
        .expect("the check found the new replica among the members");
    let key = ed25519_dalek::SigningKey::from_bytes(&secret);
    if key_id != new.id || key.verifying_key().to_bytes() != member.public_key {
        let owner = checked
            .members
            .iter()
            .find(|m| m.replica == key_id)
            .map(|m| format!("the key of member \"{}\"", crate::error::printable(&m.name)))
            .unwrap_or_else(|| "the key of another replica".into());
        return Err(Error::BadKeyFile {
            path: key_file,
            what: format!(
                "this is {owner}, not of new replica \"{}\" in the packet",
                crate::error::printable(&new.name)
            ),
        });
    }

    Ok((header, payload, checked, secret, encryption_key))
}

/// The creation payload of `packet`; refuses any other packet.
pub(crate) fn creation_payload(packet: &LogicalPacket) -> Result<CreationPayload> {
    packet.parts()[0]
        .creation()
        .cloned()
        .ok_or_else(|| Error::BadCreationPacket {
            packet: packet.parts()[0].path().to_path_buf(),
            what: "not a replica-creation packet".into(),
        })
}

/// Whether a checked creation packet is a manifest
/// (`mkreplica -export -manifest`): it carries no chunk, while some file of
/// its tree has content.
pub(crate) fn is_manifest(packet: &LogicalPacket, checked: &Checked) -> Result<bool> {
    let needs_content = checked.content_bytes > 0;
    Ok(needs_content && packet.chunks().next().is_none())
}

/// Creates the new replica at `dir` (absent or empty) from a verified
/// creation packet. `key_file` holds the new member's secret key. On error,
/// `dir` is left as it was found.
pub fn import_creation(
    packet: &LogicalPacket,
    dir: &Path,
    key_file: &Path,
    mirror: bool,
    own: &config::OwnSettings,
) -> Result<CreationImport> {
    creation_payload(packet)?;
    // Replicas do not nest: refused before anything is created.
    replica::refuse_nesting_of_new(dir)?;
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
                no_content: packet.chunks().next().is_none(),
            });
        }
    } else {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let root = std::fs::canonicalize(dir).at(dir)?;
    // The state folder is built as `.syncreplica.init-PID`, a name no
    // packet path can have (`tree::relpath`), so nothing the packet makes
    // can reach into it, and renamed into place last. The packet's
    // operations are checked in a scratch database there.
    let staging = crate::store::layout::state_dir_under_construction(&root, std::process::id());
    let result = std::fs::create_dir(&staging)
        .at(&staging)
        .and_then(|()| check_creation(packet, key_file, &staging))
        .and_then(|(header, payload, checked, secret, encryption_key)| {
            if is_manifest(packet, &checked)? {
                return Err(Error::ManifestNeedsAdopt {
                    packet: packet.parts()[0].path().to_path_buf(),
                });
            }
            check_space(&root, &checked)?;
            let made = materialize(
                packet,
                &header,
                &payload,
                checked,
                &root,
                &staging,
                &secret,
                mirror,
                own,
                encryption_key.as_deref(),
            )?;
            Ok((header, payload, made))
        });
    match result {
        Ok((
            header,
            payload,
            Materialized {
                replica,
                files,
                not_carried,
                conflicts,
                not_applied,
                excludes,
            },
        )) => Ok(CreationImport {
            replica,
            cleaned_up,
            fingerprint: header.signer_fingerprint(),
            // The name the (validated) member list gives the signer.
            sender: payload
                .members
                .iter()
                .find(|m| m.id == header.sender.id)
                .map_or_else(|| header.sender.id.to_hex(), |m| m.name.clone()),
            files,
            not_carried,
            conflicts,
            not_applied,
            excludes,
        }),
        Err(err) => {
            // Leave the directory as it was found, absent or empty: remove
            // what this run made, and only that (a file a person put there
            // meanwhile stays).
            let _ = std::fs::remove_dir_all(&staging);
            if let Ok(made) = made_by_packet(&root, packet) {
                let _ = remove_made(&made);
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
/// process gone) and the tree it made, but only when everything in `dir`
/// is what the packet makes, as it makes it (see [`made_by_packet`]). If
/// anything else is there (a file a person added or changed, at any
/// depth), nothing is removed and the caller finds the directory not
/// empty. Returns the pids of the runs cleaned up after.
fn remove_abandoned_import(dir: &Path, packet: &LogicalPacket) -> Result<Vec<u32>> {
    let abandoned = crate::store::lock::abandoned_init_dirs(dir);
    if abandoned.is_empty() || dir.join(STATE_DIR).exists() {
        return Ok(Vec::new());
    }
    let made = made_by_packet(dir, packet)?;
    let leftovers: Vec<&PathBuf> = abandoned.iter().map(|(staging, _)| staging).collect();
    if made
        .foreign
        .iter()
        .any(|path| !leftovers.iter().any(|staging| path.starts_with(staging)))
    {
        return Ok(Vec::new());
    }
    for (staging, _) in &abandoned {
        std::fs::remove_dir_all(staging).at(staging)?;
    }
    remove_made(&made)?;
    Ok(abandoned.into_iter().map(|(_, pid)| pid).collect())
}

/// Refuses, before anything is made, a new replica whose files do not
/// fit in the free space of the filesystem that will hold `dir`
/// ([`Refusal::NoSpace`]; content is written once, so the files' size is
/// what it needs, plus the state database, not counted; all-zero chunks
/// are left as holes and cost nothing).
fn check_space(dir: &Path, checked: &crate::sync::creation_check::Checked) -> Result<()> {
    let needed = checked.content_bytes;
    let Some(existing) = dir.ancestors().find(|d| d.is_dir()) else {
        return Ok(());
    };
    let free = crate::sys::fsutil::free_space(existing)?;
    if needed > free {
        return Err(Error::Refused(crate::error::Refusal::NoSpace {
            needed,
            free,
            mount: crate::sys::fsutil::mount_point(existing),
            root: dir.to_path_buf(),
        }));
    }
    Ok(())
}

/// What a directory holds, sorted into what a creation packet makes there
/// (`ours`: files of the packet's size and mtime, links to the packet's
/// target, and directories of the packet's) and everything else
/// (`foreign`), each a path on disk. A directory holding anything foreign
/// is foreign too, so removing `ours` never takes a person's file with it.
struct Made {
    ours: Vec<PathBuf>,
    foreign: Vec<PathBuf>,
}

fn made_by_packet(dir: &Path, packet: &LogicalPacket) -> Result<Made> {
    let mut states: HashMap<Vec<u8>, PathState> = HashMap::new();
    for op in packet.operations() {
        let op = op?;
        if let Some(change) = op.change.path_change() {
            states.insert(change.path.clone(), change.state.clone());
        }
    }
    let mut made = Made {
        ours: Vec::new(),
        foreign: Vec::new(),
    };
    sort_made(dir, &[], &states, &mut made)?;
    Ok(made)
}

/// Sorts the entries of `dir` (tree path `rel`) into `made`; true when all
/// of them are ours.
fn sort_made(
    dir: &Path,
    rel: &[u8],
    states: &HashMap<Vec<u8>, PathState>,
    made: &mut Made,
) -> Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut all_ours = true;
    for entry in std::fs::read_dir(dir).at(dir)?.flatten() {
        let path = entry.path();
        let mut tree_path = rel.to_vec();
        if !tree_path.is_empty() {
            tree_path.push(b'/');
        }
        tree_path.extend_from_slice(entry.file_name().as_bytes());
        let meta = std::fs::symlink_metadata(&path).at(&path)?;
        let ours = match states.get(&tree_path) {
            Some(PathState::Directory { .. }) if meta.is_dir() => {
                sort_made(&path, &tree_path, states, made)?
            }
            Some(PathState::File { size, mtime, .. }) if meta.is_file() => {
                meta.size() == *size
                    && meta.mtime() == mtime.secs
                    && meta.mtime_nsec() == i64::from(mtime.nanos)
            }
            Some(PathState::Symlink { target, .. }) if meta.file_type().is_symlink() => {
                std::fs::read_link(&path).is_ok_and(|t| t.as_os_str().as_bytes() == target)
            }
            Some(PathState::Special { kind, .. }) => {
                crate::tree::meta::special_kind_of(meta.file_type()) == Some(*kind)
            }
            _ => false,
        };
        if ours {
            made.ours.push(path);
        } else {
            all_ours = false;
            made.foreign.push(path);
        }
    }
    Ok(all_ours)
}

/// Removes the paths [`made_by_packet`] found ours, deepest first.
fn remove_made(made: &Made) -> Result<()> {
    let mut ours: Vec<&PathBuf> = made.ours.iter().collect();
    ours.sort_by(|a, b| b.cmp(a));
    for path in ours {
        let meta = std::fs::symlink_metadata(path).at(path)?;
        if meta.is_dir() {
            std::fs::remove_dir(path).at(path)?;
        } else {
            std::fs::remove_file(path).at(path)?;
        }
    }
    Ok(())
}

/// What [`materialize`] made: the replica, its file count, the files the
/// packet did not carry, and the notes on names this filesystem folds.
struct Materialized {
    replica: Replica,
    files: u64,
    not_carried: Vec<Vec<u8>>,
    conflicts: Vec<String>,
    not_applied: Vec<String>,
    excludes: CreationExcludes,
}

/// Makes the new replica at `root` (empty) from a checked creation packet,
/// its state folder built in `staging` (`.syncreplica.init-PID`, which
/// holds the check's scratch database) and renamed into place last.
#[allow(clippy::too_many_arguments)]
fn materialize(
    packet: &LogicalPacket,
    header: &packet_format::Header,
    payload: &CreationPayload,
    checked: Checked,
    root: &Path,
    staging: &Path,
    secret: &[u8; 32],
    mirror: bool,
    own: &config::OwnSettings,
    encryption_key: Option<&str>,
) -> Result<Materialized> {
    // A pattern naming the root's absolute path is stored as the relative
    // one it stands for (review 14d item 11: kept as given, every later
    // command warned about it).
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
    config::set_own_settings(staging, own)?;
    // The new member's own patterns (mkreplica -import -exclude): what
    // they exclude is not written, and gets no entry (as for any import).
    let own_excludes =
        crate::tree::excludes::Excludes::load(root, exclude, &config::config_path(staging))?;
    let mut state = State::open(staging)?;

    let scratch = &checked.scratch;
    // Replaying the log: each path ends as its last operation says (the
    // sender re-asserted any path where that would not give its tree), in
    // the state the apply engine would give it. The paths are read back
    // from the scratch database a page at a time, sorted: parents before
    // children; directory modes last, in case one is read-only. The root
    // ignore file is every replica's own: operations on it (from a version
    // that recorded it) are logged, never made.
    let wanted = |path: &[u8], state: &PathState| {
        !crate::tree::excludes::is_local_only(path)
            && !own_excludes.excludes_relative(
                path,
                matches!(state, PathState::Directory { .. }),
                false,
            )
    };
    let made = |row: &PathRow| !row.dropped && wanted(&row.path, &row.state);
    // What the new member's own patterns left out, pattern by pattern: said
    // with a count; the patterns that matched are kept in its state, so its
    // scans do not warn that they match nothing (the tree has nothing they
    // match); one that matched nothing is warned about now.
    let mut excluded_paths = 0u64;
    let mut matched_patterns: std::collections::BTreeSet<String> = Default::default();
    if !exclude.is_empty() {
        scratch.for_each_path(false, |row| {
            if row.dropped
                || row.state == PathState::Deleted
                || crate::tree::excludes::is_local_only(&row.path)
            {
                return Ok(());
            }
            let is_dir = matches!(row.state, PathState::Directory { .. });
            if let Some(pattern) = own_excludes.config_pattern_excluding(&row.path, is_dir) {
                excluded_paths += 1;
                matched_patterns.insert(pattern);
            }
            Ok(())
        })?;
    }
    let creation_excludes = CreationExcludes {
        excluded: excluded_paths,
        unmatched: own_excludes
            .unmatched_config_patterns()
            .into_iter()
            .filter(|p| !matched_patterns.contains(p))
            .collect(),
        root_prefixed,
    };
    let matched_patterns: Vec<String> = matched_patterns.into_iter().collect();
    // Probed in the state folder being built: the answer is cached there.
    let folding = replica::folding(root, staging)?;
    let staging_name = staging
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    // Only on a filesystem that folds names (case, Unicode normalisation)
    // are the paths held in memory, to find the ones that clash.
    let (copies, fold_notes) = if folding.folds() {
        let mut rows: Vec<(Vec<u8>, PathState, Id)> = Vec::new();
        scratch.for_each_path(false, |row| {
            if wanted(&row.path, &row.state) {
                rows.push((row.path.clone(), row.state.clone(), row.author()));
            }
            Ok(())
        })?;
        let path_ops: Vec<(&Vec<u8>, &PathState)> = rows.iter().map(|(p, s, _)| (p, s)).collect();
        let authors: HashMap<&[u8], Id> = rows.iter().map(|(p, _, a)| (p.as_slice(), *a)).collect();
        let label = |path: &[u8]| {
            let author = authors[path];
            checked
                .members
                .iter()
                .find(|m| m.replica == author)
                .map(|m| m.name.clone())
                .unwrap_or_else(|| author.to_hex())
        };
        let folded = fold_collisions(folding, &path_ops, &staging_name, label);
        scratch.batch("noting the names this filesystem folds", |tx| {
            let mut mark = tx.prepare("UPDATE paths SET dropped = 1 WHERE path = ?1")?;
            for path in &folded.dropped {
                mark.execute([path])?;
            }
            Ok(())
        })?;
        let copies: Vec<(Vec<u8>, PathState)> = folded
            .copies
            .into_iter()
            .map(|(copy, state)| (copy, state.clone()))
            .collect();
        (copies, folded.notes)
    } else {
        (Vec::new(), Vec::new())
    };
    // Every file's content is written once, straight from the packet, in
    // the state folder under construction; each is then renamed into the
    // tree below, in path order with the directories. Conflict copies of
    // names this filesystem folds are written the same way.
    let content = staging.join(STAGING_DIR);
    std::fs::create_dir(&content).at(&content)?;
    write_content(packet, scratch, &mut state, &content, &made, &copies)?;
    let mut files = 0;
    let mut not_carried: Vec<Vec<u8>> = Vec::new();
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
    let set_stat = |path: &[u8], key: StatKey| -> Result<()> {
        scratch
            .conn()
            .prepare_cached(
                "UPDATE paths SET st_size = ?2, st_mtime = ?3, st_ctime = ?4, st_inode = ?5,
                 st_mode = ?6 WHERE path = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    path,
                    key.size as i64,
                    key.mtime_ns,
                    key.ctime_ns,
                    key.inode as i64,
                    key.mode
                ])
            })
            .map(|_| ())
            .map_err(|e| scratch.write_error(e, "noting the files made"))
    };
    // As the new member's config.toml says (-preserve, -numeric-ids).
    let preserve = config::Config::load(&config::config_path(staging))?
        .preserve()
        .unwrap_or_else(|_| crate::tree::meta::Preserve::default_for_user());
    let mut unapplied = crate::tree::meta::Unapplied::default();
    let mut not_made_special = 0u64;
    scratch.begin()?;
    scratch.for_each_path(false, |row| {
        // The root (SPEC.md §6.5) is there already: its metadata is set
        // after the state folder's rename, below.
        if !made(row) || row.path.is_empty() {
            return Ok(());
        }
        let path = &row.path;
        let place = place_of(path)?;
        let disk = place.display_path();
        match &row.state {
            PathState::Directory { .. } => place.make_dir(0o700).at(&disk)?,
            PathState::Symlink { target, .. } => {
                place.symlink_sibling(place.name(), target).at(&disk)?
            }
            PathState::File { .. } => {
                if row.incomplete {
                    not_carried.push(path.clone());
                    return Ok(());
                }
                let n = row.staged.expect("every file made is staged");
                place
                    .rename_in_new(&content.join(n.to_string()))
                    .at(&disk)?;
                // Stat after the rename, which changes the ctime.
                let meta = place.open_read().at(&disk)?.metadata().at(&disk)?;
                set_stat(path, scan::stat_key(&meta))?;
                files += 1;
            }
            PathState::Special {
                kind,
                mode,
                major,
                minor,
                ..
            } => {
                if !preserve.keeps_special(*kind) {
                    not_made_special += 1;
                    return Ok(());
                }
                if let Err(err) = place.make_node(*kind, *mode, *major, *minor) {
                    if err.kind() != std::io::ErrorKind::PermissionDenied {
                        return Err(Error::io(&disk, err));
                    }
                    unapplied.note("devices", crate::tree::meta::why_not("devices", &err));
                }
            }
            PathState::Deleted => {}
            PathState::Unknown { .. } => unreachable!("refused above"),
        }
        Ok(())
    })?;
    scratch.commit()?;
    // Not recorded: the next scan records them as this replica's new files.
    for (n, rel) in scratch.staged_copies()? {
        let place = place_of(&rel)?;
        let disk = place.display_path();
        place
            .rename_in_new(&content.join(n.to_string()))
            .at(&disk)?;
    }
    std::fs::remove_dir(&content).at(&content)?;
    scratch.for_each_path(true, |row| {
        if let PathState::Directory { mode, .. } = &row.state {
            if made(row) && !row.path.is_empty() {
                place_of(&row.path)?.set_mode(*mode)?;
            }
        }
        Ok(())
    })?;
    // Owners, ACLs, attributes and hard links as the new member preserves
    // them (what its user can apply), then times: files and links first
    // (every leader of a hard-link set is placed by now), directories
    // deepest first, each after everything inside it.
    let mut names = crate::tree::meta::Names::default();
    let mut meta_notes = Vec::new();
    let locate_leader = |leader: &[u8]| confined.locate(leader, false);
    // The root's own state, if the packet carries it (format 2.10).
    let mut root_state: Option<PathState> = None;
    let mut stand_in: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut set_meta_of = |row: &PathRow| -> Result<()> {
        if !made(row) {
            return Ok(());
        }
        if row.path.is_empty() {
            root_state = Some(row.state.clone());
            return Ok(());
        }
        let (kind, mode, mtime, ext) = match &row.state {
            PathState::File {
                mode, mtime, ext, ..
            } if !row.incomplete => (apply::MetaKind::File, Some(*mode), Some(*mtime), ext),
            PathState::Symlink { mtime, ext, .. } => (apply::MetaKind::Symlink, None, *mtime, ext),
            PathState::Directory { mode, mtime, ext } => {
                (apply::MetaKind::Directory, Some(*mode), *mtime, ext)
            }
            PathState::Special {
                kind,
                mode,
                mtime,
                ext,
                ..
            } if preserve.keeps_special(*kind) => {
                (apply::MetaKind::Special, Some(*mode), Some(*mtime), ext)
            }
            _ => return Ok(()),
        };
        // A set whose first name this member excludes: its other names are
        // linked to the first of them made here (review 14d item 4: each
        // was a file of its own).
        let mut relinked;
        let mut ext = ext;
        if let (apply::MetaKind::File, Some(leader)) =
            (kind, crate::tree::meta::hard_link_leader(ext))
        {
            let excluded = leader != row.path
                && (crate::tree::excludes::is_local_only(&leader)
                    || own_excludes.excludes_relative(&leader, false, false));
            if excluded {
                match stand_in.get(&leader) {
                    Some(first) => {
                        relinked = ext.clone();
                        relinked.insert(
                            crate::tree::meta::keys::HARD_LINK,
                            crate::tree::meta::encode(first),
                        );
                        ext = &relinked;
                    }
                    None => {
                        stand_in.insert(leader, row.path.clone());
                    }
                }
            }
        }
        let place = place_of(&row.path)?;
        apply::set_meta(
            &place,
            &locate_leader,
            &row.path,
            kind,
            mode,
            mtime,
            ext,
            &preserve,
            &mut names,
            &mut unapplied,
            &mut meta_notes,
        )
    };
    scratch.for_each_path(false, |row| {
        if matches!(row.state, PathState::Directory { .. }) {
            return Ok(());
        }
        set_meta_of(row)
    })?;
    scratch.for_each_path(true, |row| {
        if !matches!(row.state, PathState::Directory { .. }) {
            return Ok(());
        }
        set_meta_of(row)
    })?;
    // The fast-path stats, taken after every name of a hard-link set got
    // its metadata (each change moves the shared inode's ctime).
    scratch.begin()?;
    scratch.for_each_path(false, |row| {
        if matches!(row.state, PathState::File { .. }) && row.stat.is_some() {
            let place = place_of(&row.path)?;
            let disk = place.display_path();
            let meta = place.open_read().at(&disk)?.metadata().at(&disk)?;
            set_stat(&row.path, scan::stat_key(&meta))?;
        }
        Ok(())
    })?;
    scratch.commit()?;
    // One filesystem sync for the whole tree rather than one per file: until
    // the state folder is renamed into place below, there is no replica
    // here, and an interrupted import is simply run again in an empty
    // directory.
    crate::sys::fsutil::sync_filesystem(root)?;
    // The rules the new replica starts with (a shared file that an ignore
    // file would include may have come with the tree, the ignore file
    // itself never does): nothing is missing because of them yet.
    let exclude_rules = crate::tree::excludes::Excludes::load(
        root,
        &config::Config::default().exclude,
        &config::config_path(staging),
    )?
    .rules()
    .to_string();
    let scanned_ns = crate::sys::clock::now_ns();
    let me = payload.new_replica.id;
    let new_state = NewState {
        packet,
        header,
        checked: &checked,
        me,
        pieces: &[],
        stats: &|row: &PathRow| row.stat,
        exclude_rules: &exclude_rules,
        scanned_ns,
        mirror_of: mirror.then_some(header.sender.id),
        kept_items: preserve.kept_bits(rustix::process::geteuid().is_root()),
    };
    // Not on disk here: no entry, so no scan takes its absence for a
    // deletion (rule 11 of the apply engine).
    let on_disk = |row: &PathRow| made(row) && !row.incomplete;
    state.transaction(|tx| {
        write_new_state(tx, &new_state, &on_disk)?;
        state::add_family_excluded(tx, &matched_patterns)?;
        Ok(())
    })?;
    drop(state);
    // The scratch database goes before the folder becomes the replica's.
    drop(checked);
    let final_dir = replica::state_dir(root);
    crate::sys::testhook::crash_point("mkreplica-import-before-rename");
    std::fs::rename(staging, &final_dir).at(&final_dir)?;
    // The rename moved the root's mtime: its recorded metadata goes on
    // now, the mode last (SPEC.md §6.5).
    if let Some(PathState::Directory { mode, mtime, ext }) = &root_state {
        let place = place_of(b"")?;
        apply::set_meta(
            &place,
            &locate_leader,
            b"",
            apply::MetaKind::Directory,
            Some(*mode),
            *mtime,
            ext,
            &preserve,
            &mut names,
            &mut unapplied,
            &mut meta_notes,
        )?;
        place.set_mode(*mode)?;
    }
    crate::sys::fsutil::sync_dir(root)?;
    Ok(Materialized {
        replica: Replica::open(root)?,
        files,
        not_carried,
        conflicts: fold_notes.into_iter().chain(meta_notes).collect(),
        not_applied: (not_made_special > 0)
            .then(|| crate::sync::apply::special_not_made_note(not_made_special))
            .into_iter()
            .chain(unapplied.lines().into_iter().map(|line| {
                format!("{line}; kept in the state, not on disk here (see preserve in config.toml)")
            }))
            .collect(),
        excludes: creation_excludes,
    })
}

/// Writes the content of every file `made` accepts (and of the conflict
/// `copies`) into `content/N`, each byte once: every file is made at its
/// full length (all-zero chunks left as holes), where each chunk goes is
/// noted in the scratch database, then the packet's chunks are read once,
/// in the order it stores them, each written where it goes; last each
/// file's mode and mtime. The packed pieces of every chunk written go to
/// the new replica's `state`. A file whose chunk the packet does not carry
/// is left out (marked incomplete: the sender found it busy); one naming a
/// chunk it carries with another length is refused. Memory holds a page
/// of paths and one chunk (a few read ahead) at a time.
fn write_content(
    packet: &LogicalPacket,
    scratch: &Scratch,
    state: &mut State,
    content: &Path,
    made: &dyn Fn(&PathRow) -> bool,
    copies: &[(Vec<u8>, PathState)],
) -> Result<()> {
    // 1. The files, at their full lengths, and where each chunk goes.
    let mut next = 0u64;
    let mut stage = |tx: &rusqlite::Connection,
                     rel: &[u8],
                     copy: bool,
                     file_state: &PathState|
     -> Result<Option<u64>> {
        let PathState::File {
            mode,
            mtime,
            chunks,
            ..
        } = file_state
        else {
            return Ok(None);
        };
        let n = next;
        next += 1;
        let path = content.join(n.to_string());
        let file = assemble::open(&path, true).at(&path)?;
        let mut offset = 0u64;
        let fail = |e| scratch.write_error(e, "noting where the packet's chunks go");
        for chunk in chunks {
            if !crate::tree::chunking::is_zero_chunk(chunk) {
                tx.prepare_cached(
                    "INSERT INTO spots (id, len, file, offset) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        chunk.id.as_slice(),
                        chunk.len,
                        n as i64,
                        offset as i64
                    ])
                })
                .map_err(fail)?;
            }
            offset += u64::from(chunk.len);
        }
        // Sparse until written: it takes room only as chunks land.
        file.set_len(offset).at(&path)?;
        tx.prepare_cached(
            "INSERT INTO staged (n, path, copy, mode, secs, nanos) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| s.execute(params![n as i64, rel, copy, mode, mtime.secs, mtime.nanos]))
        .map_err(fail)?;
        Ok(Some(n))
    };
    scratch.begin()?;
    let conn = scratch.conn();
    scratch.for_each_path(false, |row| {
        if !made(row) {
            return Ok(());
        }
        if let Some(n) = stage(conn, &row.path, false, &row.state)? {
            conn.prepare_cached("UPDATE paths SET staged = ?2 WHERE path = ?1")
                .and_then(|mut s| s.execute(params![row.path, n as i64]))
                .map_err(|e| scratch.write_error(e, "noting the files staged"))?;
        }
        Ok(())
    })?;
    for (copy, copy_state) in copies {
        stage(conn, copy, true, copy_state)?;
    }
    conn.execute_batch("CREATE INDEX spots_by_chunk ON spots (id, len)")
        .map_err(|e| scratch.write_error(e, "indexing where the packet's chunks go"))?;
    scratch.commit()?;
    // Each distinct chunk is counted once, as it is written.
    let to_write: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(len), 0) FROM (SELECT DISTINCT id, len FROM spots)",
            [],
            |row| row.get(0),
        )
        .map_err(|e| scratch.read_error(e))?;
    let _writing = crate::sys::progress::phase(
        "writing the replica's files",
        crate::sys::progress::Unit::Bytes,
        Some(to_write as u64),
    );

    // 2. The packet's chunks, once, each where it goes.
    let mut pieces: Vec<(ChunkId, Vec<u8>)> = Vec::new();
    let flush_pieces = |state: &mut State, pieces: &mut Vec<(ChunkId, Vec<u8>)>| -> Result<()> {
        let page = std::mem::take(pieces);
        state.transaction(|tx| Ok(state::put_chunk_pieces(tx, &page)?))
    };
    let mut open: Option<(u64, std::fs::File)> = None;
    scratch.begin()?;
    PacketChunks::new(packet).deliver(&[], &mut |id, bytes| {
        let err = |e| scratch.read_error(e);
        let wanted = conn
            .prepare_cached("SELECT 1 FROM spots WHERE id = ?1")
            .and_then(|mut s| s.exists([id.as_slice()]))
            .map_err(err)?;
        if !wanted {
            return Ok(());
        }
        // A chunk's id is the SHA-256 of its bytes, so it has one length:
        // a file naming one the packet carries with another length lies
        // about its content (and its size, the sum of its chunk lengths).
        conn.prepare_cached("INSERT OR REPLACE INTO carried (id, len) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![id.as_slice(), bytes.len() as i64]))
            .map_err(|e| scratch.write_error(e, "noting the chunks carried"))?;
        let Ok(len) = u32::try_from(bytes.len()) else {
            return Ok(());
        };
        let mut any = false;
        {
            let mut statement = conn
                .prepare_cached("SELECT file, offset FROM spots WHERE id = ?1 AND len = ?2")
                .map_err(err)?;
            let mut rows = statement.query(params![id.as_slice(), len]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let n = row.get::<_, i64>(0).map_err(err)? as u64;
                let offset = row.get::<_, i64>(1).map_err(err)? as u64;
                if open.as_ref().is_none_or(|(held, _)| *held != n) {
                    let path = content.join(n.to_string());
                    open = Some((n, assemble::open_for_write(&path).at(&path)?));
                }
                let (_, file) = open.as_ref().expect("just opened");
                let path = content.join(n.to_string());
                assemble::write_sparse(file, bytes, offset).at(&path)?;
                any = true;
            }
        }
        if !any {
            return Ok(());
        }
        crate::sys::progress::advance(bytes.len() as u64);
        let cut = crate::tree::chunking::pieces(bytes);
        pieces.push((*id, crate::tree::chunking::pack_pieces(&cut)));
        if pieces.len() >= PAGE {
            flush_pieces(state, &mut pieces)?;
        }
        conn.prepare_cached("DELETE FROM spots WHERE id = ?1 AND len = ?2")
            .and_then(|mut s| s.execute(params![id.as_slice(), len]))
            .map_err(|e| scratch.write_error(e, "noting the chunks written"))?;
        Ok(())
    })?;
    drop(open);
    flush_pieces(state, &mut pieces)?;

    // 3. What the packet does not carry: a chunk it carries with another
    // length is a lie; one it lacks leaves its files out.
    let missing: Vec<(ChunkId, u32, Option<i64>, Vec<u8>)> = {
        let err = |e| scratch.read_error(e);
        let mut statement = conn
            .prepare(
                "SELECT s.id, s.len, c.len, st.path
                 FROM (SELECT id, len, MIN(file) AS first FROM spots GROUP BY id, len) s
                 JOIN carried c ON c.id = s.id AND c.len != s.len
                 JOIN staged st ON st.n = s.first
                 ORDER BY s.first LIMIT 1",
            )
            .map_err(err)?;
        let mut rows = statement.query([]).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let id: Vec<u8> = row.get(0).map_err(err)?;
            out.push((
                id.try_into().unwrap_or_default(),
                row.get(1).map_err(err)?,
                row.get(2).map_err(err)?,
                row.get(3).map_err(err)?,
            ));
        }
        out
    };
    if let Some((id, len, Some(carried), rel)) = missing.into_iter().next() {
        return Err(Error::BadCreationPacket {
            packet: packet.parts()[0].path().to_path_buf(),
            what: format!(
                "\"{}\" names chunk {} as {len} bytes long, but the packet carries it \
                 with {carried} bytes",
                relpath::display(&rel),
                hex::encode(id),
            ),
        });
    }
    conn.execute_batch(
        "UPDATE staged SET incomplete = 1 WHERE n IN (SELECT file FROM spots);
         DELETE FROM spots;",
    )
    .map_err(|e| scratch.write_error(e, "noting the files not carried"))?;
    scratch.commit()?;

    // 4. Mode and mtime last: no write follows them, and a read-only mode
    // does not stop one. A file left out is removed.
    let mut after = -1i64;
    loop {
        let page: Vec<(i64, u32, Timestamp, bool)> = {
            let err = |e| scratch.read_error(e);
            let mut statement = conn
                .prepare_cached(
                    "SELECT n, mode, secs, nanos, incomplete FROM staged WHERE n > ?1
                     ORDER BY n LIMIT 4096",
                )
                .map_err(err)?;
            let mut rows = statement.query([after]).map_err(err)?;
            let mut page = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                page.push((
                    row.get(0).map_err(err)?,
                    row.get(1).map_err(err)?,
                    Timestamp {
                        secs: row.get(2).map_err(err)?,
                        nanos: row.get(3).map_err(err)?,
                    },
                    row.get(4).map_err(err)?,
                ));
            }
            page
        };
        let Some(last) = page.last() else {
            break;
        };
        after = last.0;
        for (n, mode, mtime, incomplete) in page {
            let path = content.join(n.to_string());
            if incomplete {
                std::fs::remove_file(&path).at(&path)?;
                continue;
            }
            let file = assemble::open(&path, false).at(&path)?;
            // Setuid/setgid bits go on after the owner, if at all
            // (`crate::tree::meta::apply`): never on a staged file.
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o1777))
                .at(&path)?;
            crate::tree::confined::set_file_mtime(&file, mtime).at(&path)?;
        }
    }
    Ok(())
}

/// What a new replica's state database is given (see [`write_new_state`]).
pub(crate) struct NewState<'a> {
    pub packet: &'a LogicalPacket,
    pub header: &'a packet_format::Header,
    pub checked: &'a Checked,
    /// The new replica's id.
    pub me: Id,
    /// Packed pieces of the chunks on disk.
    pub pieces: &'a [(ChunkId, Vec<u8>)],
    /// Stat of each file made or kept, for the next scan's fast path.
    pub stats: &'a dyn Fn(&PathRow) -> Option<StatKey>,
    pub exclude_rules: &'a str,
    pub scanned_ns: i64,
    /// The member the new replica mirrors (`-mirror`: its creator).
    pub mirror_of: Option<Id>,
    /// What it keeps and applied ([`crate::store::config::Preserve::kept_bits`]).
    pub kept_items: u32,
}

/// Writes a new replica's state from its checked creation packet: members,
/// the whole log and its seals, an entry for each path `on_disk` says the
/// tree holds as the packet states it, the epoch table, the sender's
/// confirmation and incarnation, the recorded excludes and the packet log.
/// The log and the paths are read from the check's scratch database a page
/// at a time.
pub(crate) fn write_new_state(
    tx: &rusqlite::Transaction,
    new: &NewState,
    on_disk: &dyn Fn(&PathRow) -> bool,
) -> std::result::Result<(), state::TxError> {
    let NewState {
        packet,
        header,
        checked,
        me,
        pieces,
        stats,
        exclude_rules,
        scanned_ns,
        mirror_of,
        kept_items,
    } = *new;
    if let Some(upstream) = &mirror_of {
        state::set_mirror(tx, Some(upstream))?;
    }
    state::put_chunk_pieces(tx, pieces)?;
    for member in &checked.members {
        state::insert_member(tx, member, header.created.as_nanos_saturating())?;
    }
    for (rotation, encryption_key) in &checked.rotations {
        state::rekey_member(tx, rotation, encryption_key)?;
    }
    // The state database's errors met in the scratch database's pages,
    // kept as such (they name the state database).
    let mut sql: Option<rusqlite::Error> = None;
    let mut sql_of = |result: rusqlite::Result<()>| -> Result<()> {
        result.map_err(|e| {
            sql = Some(e);
            // A stand-in: the error returned is `sql`'s.
            Error::CorruptState {
                path: PathBuf::new(),
                what: String::new(),
            }
        })
    };
    let logged = checked.scratch.for_each_op(|_, op| {
        sql_of(state::append_operation(tx, op))?;
        // The log's removals hold here too (rmreplica).
        if let Change::RemoveMember { replica, name } = &op.change {
            if *replica != op.origin {
                sql_of(state::mark_removed(
                    tx,
                    &state::Removed {
                        replica: *replica,
                        name: match identity::validate_name(name) {
                            Ok(()) => name.clone(),
                            Err(_) => replica.to_hex(),
                        },
                        by: op.origin,
                        by_epoch: op.epoch,
                        at_ns: scanned_ns,
                    },
                ))?;
            }
        }
        Ok(())
    });
    let entered = logged.and_then(|()| {
        checked.scratch.for_each_path(false, |row| {
            if !on_disk(row) {
                return Ok(());
            }
            let Some(change) = row.op.change.path_change() else {
                return Ok(());
            };
            let stat = stats(row);
            let author = row.author();
            sql_of(state::put_entry(
                tx,
                &EntryWrite {
                    path: &row.path,
                    state: &row.state,
                    version: change.version,
                    author: &author,
                    stat,
                    scanned_ns: stat.map(|_| scanned_ns),
                },
            ))
        })
    });
    if let Err(err) = entered {
        return Err(match sql.take() {
            Some(source) => state::TxError::Sql(source),
            None => state::TxError::Other(err),
        });
    }
    for seal in &checked.seals {
        state::put_seal(tx, seal)?;
    }
    for checkpoint in &checked.checkpoints {
        state::put_checkpoint(tx, checkpoint)?;
    }
    // This replica holds the whole log; the sender holds what its row
    // says (no more than that, checked); the others, what the sender
    // believes, capped at what exists.
    for member in &checked.members {
        let epoch = checked.carried.get(&member.replica).copied().unwrap_or(0);
        state::set_epoch(tx, &me, &member.replica, epoch)?;
    }
    for (origin, epoch) in &checked.sender_row {
        state::set_epoch(tx, &header.sender.id, origin, *epoch)?;
    }
    // The sender's row is its confirmation of what it has, as in any
    // packet; and each import of a creation packet makes a copy of its
    // own, told apart by its incarnation (clone detection).
    let packet_name = packet.parts()[0]
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let row: Vec<(Id, u64)> = checked.sender_row.iter().map(|(o, e)| (*o, *e)).collect();
    state::note_confirmation(tx, &header.sender.id, &row, scanned_ns, &packet_name)?;
    state::set_own_incarnation(tx, &identity::random_id(), scanned_ns, &packet_name)?;
    if let Some(incarnation) = &header.incarnation {
        state::record_incarnation(tx, &header.sender.id, incarnation, scanned_ns, &packet_name)?;
    }
    for (member, row) in &checked.estimates {
        for (origin, epoch) in row {
            state::set_epoch(tx, member, origin, *epoch)?;
        }
    }
    state::set_recorded_excludes(tx, exclude_rules)?;
    state::set_kept_items(tx, kept_items)?;
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
}

/// The paths of a creation packet that a filesystem folding names cannot
/// hold (see [`fold_collisions`]).
struct Folded<'a> {
    /// Not made, and not recorded.
    dropped: HashSet<Vec<u8>>,
    /// Conflict copies to write, with the state whose content they hold.
    copies: Vec<(Vec<u8>, &'a PathState)>,
    notes: Vec<String>,
}

/// Rule 11 of the apply engine for a new replica: on a filesystem that
/// folds names, of the paths `path_ops` makes (sorted) that are one name
/// there, the smallest in byte order is made; the others, and what lies in
/// them, are not. Each such file is kept as a conflict copy
/// (`conflict_copy_name`, with `label`'s member name) in the folder as
/// this filesystem holds it, when that folder is made. `staging_name` is
/// the state folder being built at the root: neither its name nor the one
/// it takes at the end (`.syncreplica`) can be a path's.
fn fold_collisions<'a>(
    folding: crate::tree::folding::Folding,
    path_ops: &[(&Vec<u8>, &'a PathState)],
    staging_name: &[u8],
    label: impl Fn(&[u8]) -> String,
) -> Folded<'a> {
    let mut folded = Folded {
        dropped: HashSet::new(),
        copies: Vec::new(),
        notes: Vec::new(),
    };
    if !folding.folds() {
        return folded;
    }
    let live = |state: &PathState| *state != PathState::Deleted;
    // The holder of each name: the first path in byte order.
    let mut holders: HashMap<Vec<u8>, (Vec<u8>, &PathState)> = HashMap::new();
    // The state folder, under the name it is built and the one it takes.
    for name in [staging_name, STATE_DIR.as_bytes()] {
        holders.insert(
            folding.key(name).into_owned(),
            (name.to_vec(), &PathState::Deleted),
        );
    }
    // Names a conflict copy may not take.
    let mut taken: HashSet<Vec<u8>> = path_ops
        .iter()
        .filter(|(_, s)| live(s))
        .map(|(path, _)| folding.key(path).into_owned())
        .chain([staging_name, STATE_DIR.as_bytes()].map(|n| folding.key(n).into_owned()))
        .collect();
    // In byte order, a folder before what it holds: each path made takes
    // its name, for the ones after it.
    for (path, state) in path_ops.iter().filter(|(_, s)| live(s)) {
        let mut prefixes = relpath::ancestors(path);
        prefixes.push(path);
        let clash = prefixes.into_iter().find_map(|prefix| {
            holders
                .get(folding.key(prefix).as_ref())
                .filter(|(holder, _)| holder.as_slice() != prefix)
                .map(|(holder, _)| (prefix, holder.clone()))
        });
        let Some((at, holder)) = clash else {
            holders
                .entry(folding.key(path).into_owned())
                .or_insert(((*path).clone(), *state));
            continue;
        };
        let holder_of = |path: &[u8]| holders.get(folding.key(path).as_ref());
        folded.dropped.insert((*path).clone());
        let what = folding.describe();
        let clash = if at == path.as_slice() {
            format!(
                "{} and {} are the same name on this filesystem ({what})",
                relpath::display(path),
                relpath::display(&holder)
            )
        } else {
            format!(
                "its folder {} and {} are the same name on this filesystem ({what})",
                relpath::display(at),
                relpath::display(&holder)
            )
        };
        let who = label(path);
        let not_made = format!(
            "{who}'s {} is not made here (the other replicas keep it)",
            scan::type_name(state)
        );
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        // The folder as this filesystem holds it, if it is made as one.
        let mut dir: Option<Vec<u8>> = Some(Vec::new());
        for component in parent.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            dir = dir.and_then(|dir| {
                let mut candidate = dir;
                if !candidate.is_empty() {
                    candidate.push(b'/');
                }
                candidate.extend_from_slice(component);
                match holder_of(&candidate) {
                    Some((holder, PathState::Directory { .. })) => Some(holder.clone()),
                    _ => None,
                }
            });
        }
        let outcome = match (state, dir) {
            (
                PathState::File {
                    size,
                    chunks,
                    mtime,
                    ..
                },
                Some(dir),
            ) if *size > 0 => {
                let mut here = dir.clone();
                if !here.is_empty() {
                    here.push(b'/');
                }
                here.extend_from_slice(name);
                let same = match holder_of(&here) {
                    Some((beside, PathState::File { chunks: there, .. })) if there == chunks => {
                        Some(beside)
                    }
                    _ => None,
                };
                if let Some(beside) = same {
                    format!(
                        "kept {}, which has the same content",
                        relpath::display(beside)
                    )
                } else {
                    let copy = (1..=100).find_map(|attempt| {
                        let label = if attempt == 1 {
                            who.clone()
                        } else {
                            format!("{who}-{attempt}")
                        };
                        let mut copy = dir.clone();
                        if !copy.is_empty() {
                            copy.push(b'/');
                        }
                        copy.extend(crate::sync::apply::conflict_copy_name(
                            name,
                            Some(*mtime),
                            &label,
                        ));
                        (crate::sync::apply::validate_path(&copy).is_ok()
                            && taken.insert(folding.key(&copy).into_owned()))
                        .then_some(copy)
                    });
                    match copy {
                        Some(copy) => {
                            let note = format!(
                                "kept {}, and {who}'s {} as {}",
                                relpath::display(&holder),
                                relpath::display(path),
                                relpath::display(&copy)
                            );
                            folded.copies.push((copy, *state));
                            note
                        }
                        None => format!("kept {}; {not_made}", relpath::display(&holder)),
                    }
                }
            }
            (PathState::File { .. }, _) => {
                format!("kept {}; {not_made}", relpath::display(&holder))
            }
            // What lies below a folder that is not made goes unsaid: the
            // folder's note and its files' notes say it.
            _ if at != path.as_slice() => continue,
            _ => format!("kept {}; {not_made}", relpath::display(&holder)),
        };
        folded
            .notes
            .push(format!("{}: {clash}; {outcome}", relpath::display(path)));
    }
    folded
}
