//! `syncreplica -import`: verify packets and apply them in sequence order,
//! whatever order they arrive or are named in.
//!
//! Every packet is verified in full (signature by a current family member,
//! every entry's digest) before anything is applied. Logical packets are
//! applied one at a time, each atomically (see [`crate::sync::apply`]), in an
//! order where each packet's first epochs follow what this replica has:
//! one that depends on changes not yet received waits, and is applied in
//! the same run as soon as its predecessor is. A packet already applied is
//! reported as such; one for another family or replica is left alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use packet_format::{verify_packet_with, Examination, LogicalPacket, PacketKind, SignatureStatus};

use crate::error::{Error, Refusal, Result};
use crate::ops::{Id, Operation};
use crate::replica::LockedReplica;
use crate::store::state::Member;
use crate::sync::apply::batch::OpBatch;
use crate::sync::apply::{self, ApplyHooks, ApplyReport};
use crate::sync::epochs::{LocalView, Readiness};
use crate::sync::packets::{self, PacketChunks};

/// What happened to one logical packet.
#[derive(Debug)]
pub enum PacketOutcome {
    Applied {
        files: Vec<PathBuf>,
        sender: String,
        report: Box<ApplyReport>,
    },
    AlreadyApplied {
        files: Vec<PathBuf>,
    },
    /// A packet with no changes, only its sender's epoch row (`-export
    /// -ack`): noted as the sender's confirmation.
    Acknowledged {
        files: Vec<PathBuf>,
        sender: String,
    },
    /// Waits for earlier changes (or missing parts); left in place.
    /// `sender` is the sender's name as its header gives it.
    Waiting {
        files: Vec<PathBuf>,
        sender: String,
        why: String,
    },
    /// Not for this replica, or not importable here; left in place.
    /// `not_for_us` says the packet belongs to another family or other
    /// members (an error when the user named the file itself), as opposed
    /// to a second copy of a part.
    LeftAlone {
        files: Vec<PathBuf>,
        why: String,
        not_for_us: bool,
    },
    /// Something learnt from a packet's header that the user should know
    /// (a sibling restored from a backup).
    Note {
        note: String,
    },
    /// A packet file (or its order) that could not be removed after its
    /// packet was applied or found already applied (read-only media, say).
    NotRemoved {
        file: PathBuf,
        error: Error,
    },
    /// The comparison of the packet's tree digest with this replica's
    /// tree (follows the packet's `Applied` or `Acknowledged` outcome).
    Digest(crate::sync::digest::Check),
    /// Damaged, not signed by a family member, or refused by the apply
    /// engine; left in place, and nothing of it applied.
    Refused {
        files: Vec<PathBuf>,
        why: Refusal,
    },
}

/// Options of an import run.
pub struct ImportRequest {
    pub sources: Vec<PathBuf>,
    /// Remove packet files once applied, or found already applied.
    pub remove: bool,
}

/// Imports every packet found in `request.sources`. The caller holds the
/// lock. Local changes are recorded right before the first packet is
/// applied, so they take part in conflict detection; an import that
/// applies nothing (a source missing, every packet refused, waiting or
/// already applied) records nothing either.
pub fn import(replica: &mut LockedReplica, request: &ImportRequest) -> Result<Vec<PacketOutcome>> {
    let files = packets::collect_packet_files(&request.sources)?;
    let mut recorded = false;
    // Key rotations that packets signed with a member's new key brought to
    // vouch for it (SPEC.md §7.1), trusted for this run before they are
    // applied.
    let mut vouched: Vec<Vouched> = Vec::new();
    let mut outcomes = import_files(replica, request, &files, &mut recorded, &mut vouched)?;
    // A packet signed by a member that joined in a packet applied just now
    // (its key arrived with that one) gets a second chance.
    loop {
        let retry: Vec<PathBuf> = outcomes
            .iter()
            .filter_map(|o| match o {
                PacketOutcome::Refused {
                    files,
                    why: Refusal::NotAMember { .. },
                } => Some(files.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let keys = key_book(replica, &vouched)?.all_keys();
        let now_trusted = retry.iter().any(|file| {
            packet_format::examine_packet(file, &keys).signature == Some(SignatureStatus::Verified)
        });
        if !now_trusted {
            return Ok(without_repeated_checks(outcomes));
        }
        outcomes.retain(|o| {
            !matches!(
                o,
                PacketOutcome::Refused {
                    why: Refusal::NotAMember { .. },
                    ..
                }
            )
        });
        outcomes.extend(import_files(
            replica,
            request,
            &retry,
            &mut recorded,
            &mut vouched,
        )?);
    }
}

/// Leaves out a digest comparison that says the same as one before it
/// (the same sender, version and outcome: two packets of one sibling at
/// one version, say an acknowledgement beside a packet applied before).
fn without_repeated_checks(outcomes: Vec<PacketOutcome>) -> Vec<PacketOutcome> {
    let mut seen: Vec<crate::sync::digest::Check> = Vec::new();
    outcomes
        .into_iter()
        .filter(|outcome| match outcome {
            PacketOutcome::Digest(check) if seen.contains(check) => false,
            PacketOutcome::Digest(check) => {
                seen.push(check.clone());
                true
            }
            _ => true,
        })
        .collect()
}

/// `recorded` says whether local changes were recorded already in this
/// run; they are before the first packet is applied.
fn import_files(
    replica: &mut LockedReplica,
    request: &ImportRequest,
    files: &[PathBuf],
    recorded: &mut bool,
    vouched: &mut Vec<Vouched>,
) -> Result<Vec<PacketOutcome>> {
    let mut book = key_book(replica, vouched)?;
    let mut grouped = packets::examine_all(files, &book.all_keys());
    // A packet signed with a key not known here, that brings the
    // rotations leading to it from its sender's key: examined again, now
    // trusting the key.
    let mut renewed = false;
    for parts in grouped.logical.values_mut() {
        if !parts
            .iter()
            .any(|e| crate::sync::keys::unknown_key(&e.signature))
        {
            continue;
        }
        let Some(signer) = parts[0].header.as_ref().map(|h| h.signer_key) else {
            continue;
        };
        let paths: Vec<PathBuf> = parts.iter().map(|e| e.path.clone()).collect();
        let decryption = crate::sync::crypt::decryption(replica)?;
        let found =
            crate::sync::keys::rotations_vouching(&mut book, &paths, signer, decryption.as_ref());
        if !found.is_empty() {
            vouched.extend(found);
            renewed = true;
        }
    }
    if renewed {
        grouped = packets::examine_all(files, &book.all_keys());
    }
    let mut outcomes = Vec::new();
    for exam in grouped.damaged {
        let why = match exam.error {
            Some(err) => refusal_of(err),
            None => Refusal::Unreadable {
                cause: "no packet header found".into(),
            },
        };
        outcomes.push(PacketOutcome::Refused {
            files: vec![exam.path],
            why,
        });
    }

    let me = replica.identity.replica_id;
    let mut candidates: BTreeMap<Id, Vec<Examination>> = BTreeMap::new();
    let mut member_notes: HashMap<Id, crate::sync::family::MemberNote> = HashMap::new();
    for (id, all_parts) in grouped.logical {
        // The same part twice (a copy under another name) is one part.
        let mut parts: Vec<Examination> = Vec::new();
        for exam in all_parts {
            let part = exam.header.as_ref().map(|h| h.part);
            if parts
                .iter()
                .any(|p| p.header.as_ref().map(|h| h.part) == part)
            {
                outcomes.push(PacketOutcome::LeftAlone {
                    files: vec![exam.path],
                    why: "a second copy of a part named already".into(),
                    not_for_us: false,
                });
            } else {
                parts.push(exam);
            }
        }
        let files: Vec<PathBuf> = parts.iter().map(|e| e.path.clone()).collect();
        let header = parts[0]
            .header
            .clone()
            .expect("grouped packets have headers");
        if header.family.id != replica.identity.family_id {
            outcomes.push(PacketOutcome::LeftAlone {
                files,
                why: format!(
                    "meant for family \"{}\", not \"{}\"",
                    crate::error::printable(&header.family.name),
                    replica.identity.family_name
                ),
                not_for_us: true,
            });
        } else if header.kind == PacketKind::ReplicaCreation
            && header.targets.iter().any(|t| t.id == me)
        {
            // The packet this replica was made from: used already, so
            // -remove clears it away like any applied packet.
            let removal = remove_if(request.remove, &files);
            outcomes.push(PacketOutcome::AlreadyApplied { files });
            outcomes.extend(removal);
        } else if header.kind == PacketKind::ReplicaCreation {
            let names: Vec<std::borrow::Cow<str>> = header
                .targets
                .iter()
                .map(|t| crate::error::printable(&t.name))
                .collect();
            outcomes.push(PacketOutcome::LeftAlone {
                files,
                why: format!(
                    "a replica-creation packet for new member {}; use mkreplica -import at its site",
                    names.join(", ")
                ),
                not_for_us: true,
            });
        } else if header.kind != PacketKind::Update {
            outcomes.push(PacketOutcome::LeftAlone {
                files,
                why: "a packet kind this version does not know".into(),
                not_for_us: true,
            });
        } else if !header.targets.iter().any(|t| t.id == me) {
            let names: Vec<std::borrow::Cow<str>> = header
                .targets
                .iter()
                .map(|t| crate::error::printable(&t.name))
                .collect();
            outcomes.push(PacketOutcome::LeftAlone {
                files,
                why: format!("meant for {}", names.join(", ")),
                not_for_us: true,
            });
        } else if let Some(bad) = parts
            .iter()
            .find(|e| !matches!(e.signature, Some(SignatureStatus::Verified)))
        {
            outcomes.push(PacketOutcome::Refused {
                files,
                why: Refusal::NotAMember {
                    signature: bad
                        .signature
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                },
            });
        } else if parts.len() as u64 != u64::from(header.parts) {
            let mut present: Vec<u32> = parts
                .iter()
                .filter_map(|e| e.header.as_ref().map(|h| h.part))
                .collect();
            present.sort_unstable();
            let mut view = LocalView::of(replica)?;
            view.parts
                .insert(header.packet_id, present.iter().copied().collect());
            let readiness = view.readiness(&header);
            if matches!(readiness, Readiness::Superseded { .. }) {
                // A later packet (a resend) brought what it carries: its
                // parts are cleared away like an applied packet's.
                outcomes.push(PacketOutcome::Note {
                    note: format!("{}: {readiness}", first_file_name(&files)),
                });
                let removal = remove_if(request.remove, &files);
                outcomes.push(PacketOutcome::AlreadyApplied { files });
                outcomes.extend(removal);
                continue;
            }
            outcomes.push(PacketOutcome::Waiting {
                files,
                sender: header.sender.name.clone(),
                why: crate::sync::epochs::missing_parts_note(&present, header.parts),
            });
        } else {
            // Before readiness: the other copy's packets would otherwise be
            // "already applied", their changes silently lost.
            let packet = first_file_name(&files);
            if let Some(why) = crate::sync::family::check_removed(replica, &header.sender.id)? {
                outcomes.push(PacketOutcome::Refused { files, why });
                continue;
            }
            if let Some(why) = crate::sync::family::check_retired_restore(replica, &header)? {
                outcomes.push(PacketOutcome::Refused { files, why });
                continue;
            }
            match crate::sync::family::check_incarnation(replica, &header, &packet)? {
                Some(why) => outcomes.push(PacketOutcome::Refused { files, why }),
                None => {
                    // Taken only once the packet is accepted: nothing of a
                    // refused packet is (not even what its row says).
                    if let Some(note) = crate::sync::family::assess_member_packet(replica, &header)?
                    {
                        member_notes.insert(id, note);
                    }
                    let paths: Vec<PathBuf> = parts.iter().map(|e| e.path.clone()).collect();
                    if let Some(note) = set_aside_collisions(replica, &paths, vouched)? {
                        outcomes.push(PacketOutcome::Note { note });
                    }
                    candidates.insert(id, parts);
                }
            }
        }
    }

    let mut failed: Vec<(Vec<Examination>, Refusal)> = Vec::new();
    // Apply whatever is ready, until nothing more is.
    loop {
        let view = LocalView::of(replica)?;
        let mut progressed = false;
        // In a stable order a user can follow (what is already applied is
        // said in this order): by sender, then by the first change each
        // carries, then by creation time.
        let mut ids: Vec<Id> = candidates.keys().copied().collect();
        ids.sort_by_cached_key(|id| {
            let header = candidates[id][0].header.as_ref().expect("header");
            let own = header.epoch_ranges.get(&header.sender.id).map(|r| r.first);
            let first = header.epoch_ranges.values().map(|r| r.first).min();
            (header.sender.name.clone(), own, first, header.created, *id)
        });
        // Oldest first among the ready ones, for a stable order.
        let mut ready: Vec<(packet_format::ops::Timestamp, Id)> = Vec::new();
        for id in ids {
            let header = candidates[&id][0].header.as_ref().expect("header");
            match view.readiness(header) {
                Readiness::Applied => {
                    let header = header.clone();
                    let parts = candidates.remove(&id).expect("present");
                    let files: Vec<PathBuf> = parts.into_iter().map(|e| e.path).collect();
                    // Nothing to apply, but its sender's row confirms what
                    // the sender has (an acknowledgement, or a resend that
                    // crossed this replica's own), once per packet.
                    if !replica.state().packet_logged(&header.packet_id)? {
                        let acknowledged = acknowledge(replica, &files, vouched);
                        let check = match &acknowledged {
                            Ok(_) => crate::sync::digest::check_after_import(
                                replica,
                                &header,
                                &first_file_name(&files),
                            ),
                            Err(_) => None,
                        };
                        if acknowledged.is_ok() {
                            outcomes.extend(take_note(replica, &mut member_notes, &id)?);
                        }
                        match acknowledged {
                            Ok(sender) if header.epoch_ranges.is_empty() => {
                                let removal = remove_if(request.remove, &files);
                                outcomes.push(PacketOutcome::Acknowledged { files, sender });
                                outcomes.extend(check.map(PacketOutcome::Digest));
                                outcomes.extend(removal);
                                continue;
                            }
                            Ok(_) => {
                                outcomes.extend(check.map(PacketOutcome::Digest));
                            }
                            Err(Error::Packet(err)) => {
                                outcomes.push(PacketOutcome::Refused {
                                    files,
                                    why: refusal_of(err),
                                });
                                continue;
                            }
                            Err(Error::Refused(why)) => {
                                outcomes.push(PacketOutcome::Refused { files, why });
                                continue;
                            }
                            Err(err) => return Err(err),
                        }
                    }
                    let removal = remove_if(request.remove, &files);
                    outcomes.push(PacketOutcome::AlreadyApplied { files });
                    outcomes.extend(removal);
                }
                Readiness::Ready => ready.push((header.created, id)),
                // Candidates have every part (checked above); a view
                // without part counts never says MissingParts.
                Readiness::Waits { .. }
                | Readiness::MissingParts { .. }
                | Readiness::Superseded { .. } => {}
            }
        }
        ready.sort();
        if let Some(&(_, id)) = ready.first() {
            let parts = candidates.remove(&id).expect("present");
            let files: Vec<PathBuf> = parts.iter().map(|e| e.path.clone()).collect();
            if !*recorded {
                // During a restore (`mkreplica -restore`) local changes are
                // left unrecorded, not refused: each would be numbered like
                // a change a sibling may hold, and refusing would keep the
                // restore from ever finishing. The apply engine keeps what
                // it finds on disk that the recorded state does not vouch
                // for.
                let (_, summary, waiting) = crate::sync::record::record_for_export(replica)?;
                *recorded = true;
                if waiting > 0 {
                    outcomes.push(PacketOutcome::Note {
                        note: format!(
                            "this replica is being restored from a backup: {} not recorded \
                             yet (it would be numbered like a change a sibling may hold); \
                             the first record after the restore finishes takes {}",
                            match waiting {
                                1 => "1 local change is".to_string(),
                                n => format!("{n} local changes are"),
                            },
                            if waiting == 1 { "it" } else { "them" }
                        ),
                    });
                }
                if let Some(undone) = &summary.mirror {
                    outcomes.extend(
                        crate::sync::mirror::notes(undone)
                            .into_iter()
                            .map(|note| PacketOutcome::Note { note }),
                    );
                }
            }
            match apply_logical(replica, &files, vouched) {
                Ok((sender, report)) => {
                    outcomes.extend(take_note(replica, &mut member_notes, &id)?);
                    let header = parts[0].header.clone().expect("header");
                    let check = crate::sync::digest::check_after_import(
                        replica,
                        &header,
                        &first_file_name(&files),
                    );
                    let removal = remove_if(request.remove, &files);
                    outcomes.push(PacketOutcome::Applied {
                        files,
                        sender,
                        report: Box::new(report),
                    });
                    outcomes.extend(check.map(PacketOutcome::Digest));
                    outcomes.extend(removal);
                }
                Err(Error::Packet(err)) => outcomes.push(PacketOutcome::Refused {
                    files,
                    why: refusal_of(err),
                }),
                // Refused whole (apply is atomic): try the others; another
                // packet may carry the same changes (a resend).
                Err(Error::Refused(refusal)) => failed.push((parts, refusal)),
                Err(err) => return Err(err),
            }
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    let view = LocalView::of(replica)?;
    // Content a refused packet relied on this replica holding, that it no
    // longer holds: asked of the packet's sender (a content request, which
    // this replica's next packet to it carries).
    let mut wanted: BTreeMap<Id, Vec<Vec<u8>>> = BTreeMap::new();
    for (parts, why) in &failed {
        let header = parts[0].header.as_ref().expect("header");
        if let Refusal::MissingContent { rel, .. } = why {
            if view.readiness(header) != Readiness::Applied {
                wanted
                    .entry(header.sender.id)
                    .or_default()
                    .push(rel.clone());
            }
        }
    }
    for (sender, paths) in wanted {
        crate::sync::delta::ask_for_content(replica, sender, &paths)?;
    }
    // Content requests in packets that cannot be applied now, from a
    // sender this replica asked for content: two members that each
    // refused the other's packet for content it relied on each ask in
    // their next packet, which waits at the other for the very packet it
    // refused. Taken now (never applied: the packet's changes wait), so
    // each answers the other and both packets are superseded.
    let stuck = failed
        .iter()
        .filter(|(_, why)| matches!(why, Refusal::MissingContent { .. }))
        .map(|(parts, _)| parts)
        .chain(candidates.values());
    for parts in stuck {
        let header = parts[0].header.as_ref().expect("header");
        if replica
            .state()
            .content_requests(&header.sender.id, "asked")?
            .is_empty()
        {
            continue;
        }
        let files: Vec<PathBuf> = parts.iter().map(|e| e.path.clone()).collect();
        let notes = take_requests_ahead(replica, &files, vouched)?;
        outcomes.extend(notes.into_iter().map(|note| PacketOutcome::Note { note }));
    }
    for (parts, why) in failed {
        let header = parts[0].header.clone().expect("header");
        let files: Vec<PathBuf> = parts.into_iter().map(|e| e.path).collect();
        let cloned = matches!(why, Refusal::Cloned { .. });
        if !cloned && view.readiness(&header) == Readiness::Applied {
            let removal = remove_if(request.remove, &files);
            outcomes.push(PacketOutcome::AlreadyApplied { files });
            outcomes.extend(removal);
        } else if let Refusal::MissingContent { path, .. } = &why {
            // Not a fault of the packet nor of this replica (both changed
            // the file, or a step was lost): it waits, left in place, for
            // the content this replica asked its sender for above; the
            // answer supersedes or completes it. Nothing of it applied.
            outcomes.push(PacketOutcome::Waiting {
                files,
                sender: header.sender.name.clone(),
                why: format!(
                    "waits: it gives {path} against a version this replica no longer holds \
                     ({why}); the content is asked of {} with this replica's next packet to it \
                     (a content request), and its answer brings these changes; where packets \
                     only go one way, at the sender lower its estimate with chepoch to this \
                     replica's row (lsepoch here) and export again with -fullcontent",
                    header.sender.name
                ),
            });
        } else {
            outcomes.push(PacketOutcome::Refused { files, why });
        }
    }
    for (id, parts) in candidates {
        // Not refused: what it says of its sender (during a restore here,
        // what it holds of this replica's own) counts already.
        outcomes.extend(take_note(replica, &mut member_notes, &id)?);
        let header = parts[0].header.clone().expect("header");
        let why = view.readiness(&header).to_string();
        outcomes.push(PacketOutcome::Waiting {
            files: parts.into_iter().map(|e| e.path).collect(),
            sender: header.sender.name.clone(),
            why,
        });
    }
    once_per_import(&mut outcomes);
    Ok(outcomes)
}

/// A path in conflict in several packets of one import (each merged in
/// turn) is reported once, on the last packet that touched it: its note
/// says the final outcome, followed by what the earlier packets did with
/// it (another side's conflict copy, say), so every side's value stays
/// said. A note names its path before the first ": ".
fn once_per_import(outcomes: &mut [PacketOutcome]) {
    let split = |note: &str| -> (String, String) {
        match note.split_once(": ") {
            Some((path, rest)) => (path.to_string(), rest.to_string()),
            None => (note.to_string(), String::new()),
        }
    };
    // Path -> where its last note is (outcome, index in that report).
    let mut last: HashMap<String, (usize, usize)> = HashMap::new();
    for (n, outcome) in outcomes.iter().enumerate() {
        if let PacketOutcome::Applied { report, .. } = outcome {
            for (i, note) in report.conflicts.iter().enumerate() {
                last.insert(split(note).0, (n, i));
            }
        }
    }
    // Earlier notes of each path, in import order, moved onto its last.
    let mut earlier: HashMap<(usize, usize), Vec<String>> = HashMap::new();
    for (n, outcome) in outcomes.iter_mut().enumerate() {
        if let PacketOutcome::Applied { report, .. } = outcome {
            let mut i = 0;
            report.conflicts.retain(|note| {
                let (path, rest) = split(note);
                let here = (n, i);
                i += 1;
                let target = last[&path];
                if target == here {
                    return true;
                }
                earlier.entry(target).or_default().push(rest);
                false
            });
        }
    }
    for ((n, i), before) in earlier {
        if let PacketOutcome::Applied { report, .. } = &mut outcomes[n] {
            // `i` counted the notes before the removals: find it again by
            // its place among the kept ones of this report.
            let kept_before = last.values().filter(|&&(m, j)| m == n && j < i).count();
            if let Some(note) = report.conflicts.get_mut(kept_before) {
                note.push_str(&format!(
                    "; earlier in this import: {}",
                    before.join("; then ")
                ));
            }
        }
    }
}

/// Takes what the accepted packet `id` says of its sender
/// ([`crate::sync::family::take_member_note`]), once; returns the note for
/// the user, if any.
fn take_note(
    replica: &mut LockedReplica,
    notes: &mut HashMap<Id, crate::sync::family::MemberNote>,
    id: &Id,
) -> Result<Option<PacketOutcome>> {
    let Some(note) = notes.remove(id) else {
        return Ok(None);
    };
    Ok(crate::sync::family::take_member_note(replica, &note)?
        .map(|note| PacketOutcome::Note { note }))
}

/// Verifies all parts of one logical packet again (they were examined, now
/// they are checked in full, right before use) and applies it.
///
/// Memory stays bounded whatever the number of operations: they stream
/// from the packet into the batch's scratch database ([`OpBatch`]),
/// checked one at a time on the way (echoes skipped, versions bounded),
/// and the seal check and the apply engine read them back from there.
fn apply_logical(
    replica: &mut LockedReplica,
    files: &[PathBuf],
    vouched: &[Vouched],
) -> Result<(String, ApplyReport)> {
    let book = key_book(replica, vouched)?;
    let keys = book.all_keys();
    let decryption = crate::sync::crypt::decryption(replica)?;
    let mut parts = Vec::new();
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    let verifying = crate::sys::progress::phase(
        &format!("verifying {}", first_file_name(files)),
        crate::sys::progress::Unit::Bytes,
        Some(sizes.iter().sum()),
    );
    for (n, (file, size)) in files.iter().zip(sizes).enumerate() {
        // The line names the part being checked.
        if n > 0 {
            let name = file.file_name().unwrap_or(file.as_os_str());
            crate::sys::progress::relabel(&format!("verifying {}", name.to_string_lossy()));
        }
        parts.push(verify_with_progress(
            file,
            size,
            &keys,
            decryption.as_ref(),
        )?);
    }
    drop(verifying);
    let packet = LogicalPacket::assemble(parts)?;
    let header = packet.header().clone();
    // Named as this replica knows the member who signed (a validated
    // name), never as the header claims.
    let sender = check_signer(&replica.members()?, &book, &header)?;
    let own = apply::own_row(replica)?;
    let mut batch = OpBatch::create(replica.state(), &own)?;
    let result = apply_packet(replica, files, &packet, &own, &mut batch, &book);
    batch.close(replica.state());
    Ok((sender, result?))
}

/// The content requests addressed to this replica that the packet made
/// of `files` carries from its own sender, taken ahead of the packet
/// (which waits, or was refused): see `crate::sync::delta::take_requests`.
/// A packet that does not verify, or whose signer is not its sender, gives
/// none (the import says why where it refuses it). Returns the requests'
/// notes.
fn take_requests_ahead(
    replica: &mut LockedReplica,
    files: &[PathBuf],
    vouched: &[Vouched],
) -> Result<Vec<String>> {
    let book = key_book(replica, vouched)?;
    let keys = book.all_keys();
    let decryption = crate::sync::crypt::decryption(replica)?;
    let mut parts = Vec::new();
    for file in files {
        match verify_packet_with(file, &keys, decryption.as_ref()) {
            Ok(part) => parts.push(part),
            Err(_) => return Ok(Vec::new()),
        }
    }
    let Ok(packet) = LogicalPacket::assemble(parts) else {
        return Ok(Vec::new());
    };
    let header = packet.header();
    if check_signer(&replica.members()?, &book, header).is_err() {
        return Ok(Vec::new());
    }
    let me = replica.identity.replica_id;
    let own = apply::own_row(replica)?;
    let mut requests = Vec::new();
    for op in packet.operations() {
        let Ok(op) = op else {
            return Ok(Vec::new());
        };
        // The sender's own requests (its signature vouches for them), of
        // changes this replica does not have.
        if op.origin == header.sender.id
            && op.epoch > own.get(&op.origin).copied().unwrap_or(0)
            && packet_format::delta::ContentRequest::of(&op.change).is_some_and(|r| r.to == me)
        {
            requests.push(op);
        }
    }
    crate::sync::delta::take_requests(replica, &requests)
}

/// Verifies one part (`size` bytes) as [`verify_packet_with`] does,
/// advancing the progress phase by the bytes the verifier reports reading
/// (packet-format's [`packet_format::Progress`]), never past `size`; what
/// it did not report (zip headers) is added at the end.
pub(crate) fn verify_with_progress(
    file: &Path,
    size: u64,
    keys: &[[u8; 32]],
    decryption: Option<&std::sync::Arc<packet_format::Decryption>>,
) -> packet_format::Result<packet_format::VerifiedPacket> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let reported = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&reported);
    let progress = packet_format::Progress(Arc::new(move |read: u64| {
        // An entry read twice (a damage check) counts once.
        let before = counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |done| {
                Some(done.saturating_add(read).min(size))
            })
            .unwrap_or(size);
        crate::sys::progress::advance(before.saturating_add(read).min(size) - before);
    }));
    let result = packet_format::verify_packet_with_progress(file, keys, decryption, progress);
    crate::sys::progress::advance(size.saturating_sub(reported.load(Ordering::Relaxed)));
    result
}

/// [`apply_logical`] once the packet is verified, with `batch` to fill.
fn apply_packet(
    replica: &mut LockedReplica,
    files: &[PathBuf],
    packet: &LogicalPacket,
    own: &HashMap<Id, u64>,
    batch: &mut OpBatch,
    keys: &crate::sync::keys::KeyBook,
) -> Result<ApplyReport> {
    let header = packet.header();
    let me = replica.identity.replica_id;
    let first_name = first_file_name(files);
    // File states given relative to another version become full states
    // here, before seals, the log or the engine see them.
    let mut expander = crate::sync::delta::Expander::new(replica.state());
    // Content requests addressed to this replica, answered by its next
    // export to their origin (few: each names at most 1,024 paths).
    let mut requests: Vec<Operation> = Vec::new();
    let mut different: Option<Operation> = None;
    // A change of its own this copy never made, outside a restore.
    let mut never_made: Option<u64> = None;
    let restoring = crate::sync::family::restore_wait(replica)?.is_some();
    // What anyone can hold of each origin: what this replica has, or what
    // the packet carries (its reader checks the epoch ranges).
    let mut known: BTreeMap<Id, u64> = own.iter().map(|(o, e)| (*o, *e)).collect();
    for (origin, range) in &header.epoch_ranges {
        let slot = known.entry(*origin).or_insert(0);
        *slot = (*slot).max(range.last);
    }
    for op in packet.operations() {
        let op = op?;
        // Echoes of this replica's own operations and duplicates are
        // skipped, once found the same as this replica's (else two copies
        // of their origin are in use); the engine checks the rest for gaps.
        if op.epoch > own.get(&op.origin).copied().unwrap_or(0) {
            if op.origin == me && !restoring {
                never_made = Some(op.epoch);
                break;
            }
            // Echoes skipped first: a later operation relative to one of
            // them finds it in this replica's log.
            let op = expander.expand_in(op, Some(&*batch))?;
            check_version(&op, &known)?;
            if packet_format::delta::ContentRequest::of(&op.change).is_some_and(|r| r.to == me) {
                requests.push(op.clone());
            }
            batch.push(replica.state(), &op)?;
        } else if let Some(full) = expand_copy(&mut expander, op) {
            // A copy of an operation this replica has: the same, or the
            // sign of two copies of its origin (checked in full below).
            if crate::sync::family::differs_from_log(replica.state(), &full)? {
                different = Some(full);
                break;
            }
        }
    }
    refuse_a_different_copy(replica, different, &first_name)?;
    if let Some(epoch) = never_made {
        let made = own.get(&me).copied().unwrap_or(0);
        return Err(Error::Refused(crate::sync::family::refuse_own_never_made(
            replica,
            epoch,
            made,
            &first_name,
        )?));
    }
    batch.finish(replica.state())?;
    let reading = crate::sync::apply::batch::Reading {
        batch,
        conn: replica.state().conn(),
    };
    let seals = crate::sync::seals::verify_incoming(
        Some(replica.state()),
        packet.seals(),
        &reading,
        own,
        keys,
    )?;
    let mut chunks = PacketChunks::new(packet);
    let sequence = header
        .targets
        .iter()
        .find(|t| t.id == me)
        .map_or(0, |t| t.seq);
    let receipt = apply::Receipt {
        sender: header.sender.id,
        epoch_row: cap_row(&header.epoch_row, &known).into_iter().collect(),
        packet_id: header.packet_id,
        sequence,
        file_name: first_name,
        at_ns: crate::sys::clock::now_ns(),
        seals,
    };
    // The digest check after the apply (`check_after_import`) is
    // computed beside the apply's disk steps (an error here is the
    // check's to report, not the import's).
    let mut hooks = ApplyHooks {
        digest: crate::sync::digest::DigestKey::for_import_check(replica, header)
            .ok()
            .flatten(),
        ..ApplyHooks::default()
    };
    let mut report = apply::apply_stored(replica, batch, &mut chunks, &mut hooks, Some(&receipt))?;
    // Requests for content addressed to this replica: answered by the
    // next export to their origin.
    report
        .requests
        .extend(crate::sync::delta::take_requests(replica, &requests)?);
    crate::sys::testhook::crash_point("import-after-commit");
    Ok(report)
}

/// During a restore (`mkreplica -restore`), compares the packet's copies
/// of this replica's own changes with the ones it logged: the first that
/// differs (the restored copy numbered a change like one made before the
/// backup came back, which the sibling holds) sets aside its own changes
/// from there on ([`crate::sync::family::set_aside_from`]), so the
/// sibling's apply in their place; the restore's end logs them again,
/// renumbered. Returns a note for the user then. A packet that is not
/// whole or does not verify is left to the import proper to refuse.
fn set_aside_collisions(
    replica: &mut LockedReplica,
    files: &[PathBuf],
    vouched: &[Vouched],
) -> Result<Option<String>> {
    if crate::sync::family::restore_wait(replica)?.is_none() {
        return Ok(None);
    }
    let me = replica.identity.replica_id;
    let own = replica.state().epoch(&me, &me)?;
    let keys = key_book(replica, vouched)?.all_keys();
    let decryption = crate::sync::crypt::decryption(replica)?;
    let mut parts = Vec::new();
    for file in files {
        match verify_packet_with(file, &keys, decryption.as_ref()) {
            Ok(part) => parts.push(part),
            Err(_) => return Ok(None),
        }
    }
    let Ok(packet) = LogicalPacket::assemble(parts) else {
        return Ok(None);
    };
    if packet
        .header()
        .epoch_ranges
        .get(&me)
        .is_none_or(|range| range.first > own)
    {
        return Ok(None);
    }
    let mut expander = crate::sync::delta::Expander::new(replica.state());
    let mut first_different = None;
    for op in packet.operations() {
        let Ok(op) = op else { break };
        if op.origin != me || op.epoch > own {
            continue;
        }
        if let Some(full) = expand_copy(&mut expander, op) {
            if crate::sync::family::differs_from_log(replica.state(), &full)? {
                first_different = Some(full.epoch);
                break;
            }
        }
    }
    let Some(epoch) = first_different else {
        return Ok(None);
    };
    let (first, last) = crate::sync::family::set_aside_from(replica, epoch)?;
    let changes = match first == last {
        true => format!("change {first}"),
        false => format!("changes {first}-{last}"),
    };
    Ok(Some(format!(
        "{} holds a different change of this replica's own numbered {epoch}: made before the \
         backup came back; its own {changes} are set aside and, once the restore finishes, \
         logged again numbered after every change a sibling holds",
        crate::error::printable(&first_file_name(files))
    )))
}

/// Raises the clone alarm, and refuses the packet, for `different`: a copy
/// of an operation this replica has that differs from its own.
fn refuse_a_different_copy(
    replica: &mut LockedReplica,
    different: Option<Operation>,
    packet: &str,
) -> Result<()> {
    let Some(op) = different else {
        return Ok(());
    };
    match crate::sync::family::check_duplicates(replica, std::slice::from_ref(&op), packet)? {
        Some(refusal) => Err(Error::Refused(refusal)),
        None => Ok(()),
    }
}

/// A copy of an operation this replica has, in full, to compare with its
/// own: a relative file state is expanded against its base; `None` when
/// that cannot be done (the base is not here), and then nothing is
/// compared (the copy is skipped as every copy is).
fn expand_copy(expander: &mut crate::sync::delta::Expander, op: Operation) -> Option<Operation> {
    expander.expand(op).ok()
}

/// The first file of a packet, by name, as the packet log keeps it.
fn first_file_name(files: &[PathBuf]) -> String {
    files
        .first()
        .and_then(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Notes a verified packet that brings nothing new (an acknowledgement,
/// or operations this replica has) as its sender's confirmation: raises
/// the sender's estimate to its row, keeps the row as confirmed, and logs
/// the packet as received, in one transaction. Its operations are checked
/// against this replica's own copies first (clone detection). Returns the
/// sender's name.
fn acknowledge(
    replica: &mut LockedReplica,
    files: &[PathBuf],
    vouched: &[Vouched],
) -> Result<String> {
    let book = key_book(replica, vouched)?;
    let keys = book.all_keys();
    let decryption = crate::sync::crypt::decryption(replica)?;
    let mut parts = Vec::new();
    for file in files {
        parts.push(verify_packet_with(file, &keys, decryption.as_ref())?);
    }
    let packet = LogicalPacket::assemble(parts)?;
    let header = packet.header().clone();
    let sender = check_signer(&replica.members()?, &book, &header)?;
    let me = replica.identity.replica_id;
    let own = replica.state().epoch_row(&me)?;
    let first_name = first_file_name(files);
    let mut expander = crate::sync::delta::Expander::new(replica.state());
    let mut different: Option<Operation> = None;
    for op in packet.operations() {
        if let Some(full) = expand_copy(&mut expander, op?) {
            if crate::sync::family::differs_from_log(replica.state(), &full)? {
                different = Some(full);
                break;
            }
        }
    }
    refuse_a_different_copy(replica, different, &first_name)?;
    let known: BTreeMap<Id, u64> = own.iter().map(|(o, e)| (*o, *e)).collect();
    let row: Vec<(Id, u64)> = cap_row(&header.epoch_row, &known).into_iter().collect();
    let sequence = header
        .targets
        .iter()
        .find(|t| t.id == me)
        .map_or(0, |t| t.seq);
    let at_ns = crate::sys::clock::now_ns();
    replica.state_mut().transaction(|tx| {
        for (origin, epoch) in &row {
            crate::store::state::raise_epoch(tx, &header.sender.id, origin, *epoch)?;
        }
        crate::store::state::note_confirmation(tx, &header.sender.id, &row, at_ns, &first_name)?;
        crate::store::state::log_packet(
            tx,
            "received",
            &header.sender.id,
            &header.packet_id,
            sequence,
            &first_name,
            at_ns,
        )?;
        Ok(())
    })?;
    Ok(sender)
}

/// An epoch row a packet states (its sender's, or an estimate of another
/// member's), capped per origin at `known`: what this replica holds or the
/// packet carries, 0 for an origin absent there. No one can hold more of
/// an origin than exists, and this replica can never send more than it
/// knows, so a claim beyond that is capped: no estimate can be poisoned
/// into "has it all" (which would stop every export to that member), and
/// every stored value fits SQLite's signed integers.
pub(crate) fn cap_row(row: &BTreeMap<Id, u64>, known: &BTreeMap<Id, u64>) -> BTreeMap<Id, u64> {
    row.iter()
        .map(|(origin, epoch)| {
            let cap = known.get(origin).copied().unwrap_or(0);
            (*origin, (*epoch).min(cap))
        })
        .collect()
}

/// Refuses a packet whose header names as sender a member (of `members`)
/// other than the one whose key signed it ([`Refusal::Impersonation`]):
/// the sender's epoch row and sequence numbers are believed as that
/// member's. Returns the sender's name as this replica knows it (the
/// header's name is not checked, and never shown).
pub(crate) fn check_sender(members: &[Member], header: &packet_format::Header) -> Result<String> {
    let signer = members
        .iter()
        .find(|m| m.public_key == header.signer_key)
        .map_or_else(
            || format!("key {}", header.signer_fingerprint()),
            |m| format!("\"{}\"", crate::error::printable(&m.name)),
        );
    let claimed = members.iter().find(|m| m.replica == header.sender.id);
    match claimed {
        Some(member) if member.public_key == header.signer_key => Ok(member.name.clone()),
        _ => Err(Error::Refused(Refusal::Impersonation {
            claimed: format!("\"{}\"", crate::error::printable(&header.sender.name)),
            signer,
        })),
    }
}

/// A key rotation a packet brought to vouch for its signer (member,
/// epoch, old key, new key): [`crate::sync::keys::rotations_vouching`].
type Vouched = (Id, u64, [u8; 32], [u8; 32]);

/// The members' keys over time as this replica holds them, with the
/// rotations packets of this run vouched for and it has not applied yet.
fn key_book(replica: &LockedReplica, vouched: &[Vouched]) -> Result<crate::sync::keys::KeyBook> {
    let mut book = crate::sync::keys::KeyBook::load(replica.state())?;
    for (member, epoch, old, new) in vouched {
        // Applied since (then held already) or superseded: nothing to add.
        let _ = book.rotate(*member, *epoch, *old, *new);
    }
    Ok(book)
}

/// [`check_sender`] for an update: the signer may be the sender's current
/// key or one a rotation replaced, and then only for the sender's own
/// epochs up to that rotation ([`Refusal::RetiredKey`], SPEC.md §7.1).
/// Returns the sender's name as this replica knows it.
pub(crate) fn check_signer(
    members: &[Member],
    book: &crate::sync::keys::KeyBook,
    header: &packet_format::Header,
) -> Result<String> {
    let owner = book.owner(&header.signer_key);
    let signer = owner
        .and_then(|o| members.iter().find(|m| m.replica == o.member))
        .map_or_else(
            || format!("key {}", header.signer_fingerprint()),
            |m| format!("\"{}\"", crate::error::printable(&m.name)),
        );
    match members.iter().find(|m| m.replica == header.sender.id) {
        Some(member) if owner.is_some_and(|o| o.member == member.replica) => {
            crate::sync::keys::check_signer_epochs(
                book,
                header,
                &crate::error::printable(&member.name),
            )
            .map_err(Error::Refused)?;
            Ok(member.name.clone())
        }
        _ => Err(Error::Refused(Refusal::Impersonation {
            claimed: format!("\"{}\"", crate::error::printable(&header.sender.name)),
            signer,
        })),
    }
}

/// Refuses an operation whose version vector claims epochs that exist
/// nowhere (beyond `known`, per origin the highest epoch this replica
/// holds or the packet carries) as [`Refusal::OperationLog`]: such a claim
/// would make every genuine later edit of the path look older.
pub(crate) fn check_version(op: &Operation, known: &BTreeMap<Id, u64>) -> Result<()> {
    if let Some(change) = op.change.path_change() {
        for (origin, epoch) in &change.version.0 {
            let cap = known.get(origin).copied().unwrap_or(0);
            if *epoch > cap {
                return Err(Error::Refused(Refusal::OperationLog {
                    what: format!(
                        "operation {} of {} gives \"{}\" a version that claims epoch {epoch} of {origin}, \
                         which neither this replica nor the packet holds (at most {cap})",
                        op.epoch,
                        op.origin,
                        crate::tree::relpath::display(change.path)
                    ),
                }));
            }
        }
    }
    Ok(())
}

/// With `remove`, removes consumed packet files, and the shipping order a
/// directory transport left beside each (`PACKET.order`), if any. The
/// packet is applied whatever happens here: a file that cannot be removed
/// is reported, not an error that would hide what was applied.
fn remove_if(remove: bool, files: &[PathBuf]) -> Vec<PacketOutcome> {
    let mut failed = Vec::new();
    if !remove {
        return failed;
    }
    for file in files {
        if let Err(err) = std::fs::remove_file(file) {
            failed.push(PacketOutcome::NotRemoved {
                file: file.clone(),
                error: Error::io(file, err),
            });
            continue;
        }
        let mut order = file.clone().into_os_string();
        order.push(shipping::order::ORDER_SUFFIX);
        match std::fs::remove_file(&order) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => failed.push(PacketOutcome::NotRemoved {
                file: PathBuf::from(&order),
                error: Error::io(PathBuf::from(order), err),
            }),
        }
    }
    failed
}

/// A packet-format error as the refusal of its packet: damage, a file
/// that could not be read at all (which is not the packet's fault), or a
/// file that is no packet.
fn refusal_of(err: packet_format::Error) -> Refusal {
    match &err.kind {
        packet_format::ErrorKind::Io { .. } => Refusal::Unreadable {
            cause: err.to_string(),
        },
        _ => match crate::sync::packets::not_a_packet(&err.path) {
            Some(why) => Refusal::NotAPacket { why },
            None => Refusal::Damaged(err),
        },
    }
}
