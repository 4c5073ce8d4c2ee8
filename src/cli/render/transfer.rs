//! `syncreplica -export -fmt json` and `-import -fmt json` (and
//! `mkreplica -import -fmt json`): the summaries, for scripts.

use serde::Serialize;

use crate::sync::{export, import};

/// Version of the export and import summaries' shapes; raised when a field
/// changes meaning or goes (new fields may be added without it).
pub const JSON_VERSION: u32 = 1;

/// `syncreplica -export -fmt json`.
#[derive(Debug, Serialize)]
pub struct ExportJson {
    pub version: u32,
    /// One per TARGET, in the order given.
    pub targets: Vec<TargetJson>,
    /// With -ship/-fship: the packet files queued in the outgoing bay.
    pub queued: Vec<QueuedJson>,
}

/// What an export did for one target.
#[derive(Debug, Serialize)]
pub struct TargetJson {
    pub target: String,
    /// "written", "acknowledgement" (-ack), "up to date" (nothing
    /// written) or "held back" (a busy file; nothing written).
    pub outcome: &'static str,
    /// The packet's sequence number for the target (`null`: none written).
    pub sequence: Option<u64>,
    pub operations: u64,
    pub files_added_or_changed: u64,
    pub deleted: u64,
    pub chunks_sent: u64,
    /// Bytes of chunk data in the packet (recipes counted as written).
    pub chunk_bytes_sent: u64,
    pub chunks_as_recipes: u64,
    pub chunks_reused: u64,
    /// Paths the target asked for (content requests) sent whole.
    pub answered: u64,
    pub parts: Vec<PartJson>,
    pub resent: Vec<ResentJson>,
    /// The busy file that stopped the packet early (`null`: none).
    pub held_back: Option<HeldBackJson>,
}

/// One packet file written.
#[derive(Debug, Serialize)]
pub struct PartJson {
    pub path: String,
    pub size: u64,
}

/// Changes of one origin sent again.
#[derive(Debug, Serialize)]
pub struct ResentJson {
    pub origin: String,
    pub first: u64,
    pub last: u64,
    /// "asked" (-resend) or "unconfirmed" (resend_after passed).
    pub reason: &'static str,
    /// For "unconfirmed": when they were sent, RFC 3339.
    pub sent: Option<String>,
}

/// A busy file and the operations left for the next export.
#[derive(Debug, Serialize)]
pub struct HeldBackJson {
    pub path: String,
    pub operations: u64,
}

/// A packet file queued for shipping.
#[derive(Debug, Serialize)]
pub struct QueuedJson {
    pub packet: String,
    pub destinations: Vec<String>,
    /// RFC 3339.
    pub expires: String,
}

/// The JSON of one target's export.
pub fn target_json(target: &str, result: &export::TargetExport) -> TargetJson {
    let mut json = TargetJson {
        target: target.to_string(),
        outcome: "up to date",
        sequence: None,
        operations: 0,
        files_added_or_changed: 0,
        deleted: 0,
        chunks_sent: 0,
        chunk_bytes_sent: 0,
        chunks_as_recipes: 0,
        chunks_reused: 0,
        answered: 0,
        parts: Vec::new(),
        resent: Vec::new(),
        held_back: None,
    };
    let held = |held: &export::HeldBack| HeldBackJson {
        path: held.path.display().to_string(),
        operations: held.operations,
    };
    match result {
        export::TargetExport::UpToDate => {}
        export::TargetExport::HeldBack(held_back) => {
            json.outcome = "held back";
            json.held_back = Some(held(held_back));
        }
        export::TargetExport::Written(summary) => {
            json.outcome = if summary.ack_only {
                "acknowledgement"
            } else {
                "written"
            };
            json.sequence = Some(summary.sequence);
            json.operations = summary.operations;
            json.files_added_or_changed = summary.files_added_or_changed;
            json.deleted = summary.deleted;
            json.chunks_sent = summary.chunks_sent;
            json.chunk_bytes_sent = summary.chunk_bytes_sent;
            json.chunks_as_recipes = summary.chunks_as_recipes;
            json.chunks_reused = summary.chunks_reused;
            json.answered = summary.answered;
            json.parts = summary
                .parts
                .iter()
                .map(|p| PartJson {
                    path: p.path.display().to_string(),
                    size: p.size,
                })
                .collect();
            json.resent = summary
                .resent
                .iter()
                .map(|r| ResentJson {
                    origin: r.origin.name.clone(),
                    first: r.first,
                    last: r.last,
                    reason: match r.reason {
                        export::ResendReason::Asked => "asked",
                        export::ResendReason::Unconfirmed { .. } => "unconfirmed",
                        export::ResendReason::TellRefusedCopy { .. } => "tell_refused_copy",
                    },
                    sent: match r.reason {
                        export::ResendReason::Unconfirmed { sent_ns, .. } => {
                            Some(crate::sys::clock::rfc3339_ns(sent_ns))
                        }
                        export::ResendReason::Asked
                        | export::ResendReason::TellRefusedCopy { .. } => None,
                    },
                })
                .collect();
            json.held_back = summary.held_back.as_ref().map(held);
        }
    }
    json
}

/// `syncreplica -import -fmt json` and `mkreplica -import -fmt json`'s
/// packet list (mkreplica adds its own object; see the man page).
#[derive(Debug, Serialize, Default)]
pub struct ImportJson {
    pub version: u32,
    /// One per packet (all its parts) found, in the order handled.
    pub packets: Vec<PacketJson>,
    /// Totals over the packets applied.
    pub applied: u64,
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
    pub conflicts: u64,
    pub bytes_written: u64,
    /// Of `bytes_written`: bytes taken from the packets, bytes copied from
    /// content this replica already held, and zeros left as holes.
    pub bytes_from_packets: u64,
    pub bytes_copied: u64,
    pub bytes_as_holes: u64,
    /// What the user should know that is about no one packet (a sibling
    /// restored from a backup, the restore of this replica).
    pub notes: Vec<String>,
}

/// What became of one packet.
#[derive(Debug, Serialize)]
pub struct PacketJson {
    pub files: Vec<String>,
    /// "applied", "already applied", "acknowledgement", "waiting",
    /// "left alone" or "refused".
    pub outcome: &'static str,
    /// The member that signed it (applied, acknowledgement).
    pub sender: Option<String>,
    /// Why it waits, was left alone or was refused.
    pub why: Option<String>,
    /// For "applied": what it changed.
    pub changes: Option<ChangesJson>,
}

/// What an applied packet changed.
#[derive(Debug, Serialize)]
pub struct ChangesJson {
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
    pub bytes_written: u64,
    /// One note per conflict, naming any conflict copy.
    pub conflicts: Vec<String>,
    /// Paths not made here (a limit of this replica), one note per kind.
    pub not_made: Vec<String>,
    /// Metadata not applied here (not root, no xattrs), one note per item
    /// with a count of paths.
    pub not_applied: Vec<String>,
    /// Disk steps that failed after the commit ("not applied here").
    pub failed: Vec<String>,
    /// Conflict notes and failed steps beyond those listed (at most
    /// `sync::apply::lines::LINES_HELD` each): in `report_file`, which
    /// has every note of a list that overflowed.
    pub conflicts_more: u64,
    pub failed_more: u64,
    pub report_file: Option<String>,
}

/// The JSON of an import's outcomes.
pub fn import_json(outcomes: &[import::PacketOutcome]) -> ImportJson {
    let mut json = ImportJson {
        version: JSON_VERSION,
        ..ImportJson::default()
    };
    let files_of = |files: &[std::path::PathBuf]| -> Vec<String> {
        files.iter().map(|f| f.display().to_string()).collect()
    };
    let packet = |files: &[std::path::PathBuf], outcome: &'static str| PacketJson {
        files: files_of(files),
        outcome,
        sender: None,
        why: None,
        changes: None,
    };
    for outcome in outcomes {
        let entry = match outcome {
            import::PacketOutcome::Applied {
                files,
                sender,
                report,
            } => {
                json.applied += 1;
                json.added += report.added;
                json.changed += report.changed;
                json.deleted += report.deleted;
                json.conflicts += report.conflicts.len() as u64 + report.conflicts_more;
                json.bytes_written += report.bytes_written;
                json.bytes_from_packets += report.bytes_from_packets;
                json.bytes_copied += report.bytes_copied;
                json.bytes_as_holes += report.bytes_as_holes;
                PacketJson {
                    sender: Some(sender.clone()),
                    changes: Some(ChangesJson {
                        added: report.added,
                        changed: report.changed,
                        deleted: report.deleted,
                        bytes_written: report.bytes_written,
                        conflicts: report.conflicts.clone(),
                        not_made: report.not_made.clone(),
                        not_applied: report.not_applied.clone(),
                        failed: report
                            .failed
                            .iter()
                            .map(crate::cli::render::status::describe_failed)
                            .collect(),
                        conflicts_more: report.conflicts_more,
                        failed_more: report.failed_more,
                        report_file: report.report_file.as_ref().map(|f| f.display().to_string()),
                    }),
                    ..packet(files, "applied")
                }
            }
            import::PacketOutcome::AlreadyApplied { files } => packet(files, "already applied"),
            import::PacketOutcome::Acknowledged { files, sender } => PacketJson {
                sender: Some(sender.clone()),
                ..packet(files, "acknowledgement")
            },
            import::PacketOutcome::Waiting { files, sender, why } => PacketJson {
                sender: Some(crate::error::printable(sender).into_owned()),
                why: Some(why.clone()),
                ..packet(files, "waiting")
            },
            import::PacketOutcome::LeftAlone { files, why, .. } => PacketJson {
                why: Some(why.clone()),
                ..packet(files, "left alone")
            },
            import::PacketOutcome::Refused { files, why } => PacketJson {
                why: Some(match why {
                    crate::error::Refusal::Damaged(err) => err.kind.to_string(),
                    other => other.to_string(),
                }),
                ..packet(files, "refused")
            },
            import::PacketOutcome::Note { note } => {
                json.notes.push(note.clone());
                continue;
            }
            import::PacketOutcome::Digest(_) | import::PacketOutcome::NotRemoved { .. } => continue,
        };
        json.packets.push(entry);
    }
    json
}

/// `mkreplica -rekey -fmt json`: the keys a replica replaced.
#[derive(Debug, Serialize)]
pub struct RekeyJson {
    pub version: u32,
    pub replica: String,
    pub replica_id: String,
    /// This replica's own epoch of the rotation: the old key is good for
    /// its changes up to it, the new one after.
    pub epoch: u64,
    /// SHA-256 fingerprint of the new signing key.
    pub fingerprint: String,
    /// ... and of the key it replaced.
    pub previous_fingerprint: String,
    /// The new age X25519 recipient (`age1...`).
    pub encryption_key: String,
    /// The new Ed25519 public signing key (64 hex digits), as a shipping
    /// server's `trusted_keys` takes it.
    pub public_key: String,
}

/// `mkreplica -import -fmt json`: the replica made.
#[derive(Debug, Serialize)]
pub struct CreationImportJson {
    pub version: u32,
    pub replica: String,
    pub replica_id: String,
    pub family: String,
    pub family_id: String,
    /// The new replica's root.
    pub root: String,
    /// The creation packet's part files used.
    pub packets: Vec<String>,
    /// The member that wrote the packet.
    pub sender: String,
    /// Files made.
    pub files: u64,
    /// Files the sender found busy and left out (its next update brings them).
    pub not_carried: Vec<String>,
    pub conflicts: Vec<String>,
    /// What this replica could not apply (not root), one note per item
    /// with a count of paths.
    pub not_applied: Vec<String>,
    /// The SHA-256 fingerprint of the key that signed the packet.
    pub fingerprint: String,
    /// Whether it was checked against -fingerprint.
    pub fingerprint_checked: bool,
}
