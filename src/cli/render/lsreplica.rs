//! `lsreplica`: the family's members as this replica knows them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::Serialize;

use crate::error::{printable, Result};
use crate::ops::Id;
use crate::replica::Replica;
use crate::store::identity;
use crate::store::state::PacketLogEntry;
use crate::sys::clock::{format_time_ns, rfc3339_ns};

/// Version of the JSON listing's shape; raised when a field changes meaning
/// or goes (new fields may be added without it).
pub const JSON_VERSION: u32 = 1;

/// `lsreplica -fmt json`.
#[derive(Debug, Serialize)]
pub struct MemberList {
    pub version: u32,
    pub family: String,
    pub family_id: String,
    /// This replica's operation log.
    pub oplog: OplogSize,
    pub members: Vec<MemberInfo>,
}

/// The size of this replica's operation log: every operation of every
/// member it holds.
#[derive(Debug, Serialize)]
pub struct OplogSize {
    pub operations: u64,
    /// Bytes of the operations' encodings (the database adds its own
    /// overhead).
    pub bytes: u64,
}

/// One member.
#[derive(Debug, Serialize)]
pub struct MemberInfo {
    pub name: String,
    pub replica_id: String,
    pub key_fingerprint: String,
    /// 64 hex digits (what a relay host's shipping.toml lists).
    pub public_key: String,
    /// Its age X25519 recipient (`age1...`), the newest it announced
    /// (its joining, a `MemberKeys` change, or `mkreplica -rekey`): what
    /// packets to it are encrypted to. `None`: none known here (packets
    /// to it are not encrypted).
    pub encryption_key: Option<String>,
    pub this_replica: bool,
    pub last_sent: Option<PacketInfo>,
    pub last_received: Option<PacketInfo>,
    /// When this replica last received a packet from it (its epoch row
    /// came with it), RFC 3339 UTC.
    pub last_heard: Option<String>,
    /// Changes sent to it (or believed held by it) that it has not
    /// confirmed having: per origin, the epochs past its confirmed row up
    /// to the estimate.
    pub unconfirmed: Vec<Unconfirmed>,
    /// Its epoch row as this replica has it (exact for this replica,
    /// estimates for the others), by origin name.
    pub epoch_row: BTreeMap<String, u64>,
    /// Clone alarms raised here about it (see syncreplica -import).
    pub clone_alarms: Vec<AlarmInfo>,
    /// The packet format it writes ("2.1"): this program's for this
    /// replica, for the others what their newest packet here used; null
    /// for a member never heard from. Exports to it carry nothing its
    /// format predates.
    pub format_version: Option<String>,
    /// The incarnation id (32 hex digits) a clone alarm names: for this
    /// replica its own copy's; for the others the copy whose packets this
    /// replica accepts; null when none is known yet.
    pub incarnation: Option<String>,
    /// For this replica, while a restore from a backup is unfinished
    /// (mkreplica -restore): what it waits for.
    pub restore_waits_for: Option<String>,
    /// For this replica when it is a mirror (mkreplica -import -mirror,
    /// chreplica -mirror): the name of the member it mirrors. A mirror
    /// records no change of its own; the family's version wins there.
    pub mirror_of: Option<String>,
    /// Set when it was removed from the family (rmreplica): by whom and
    /// when. A removed member's packets are refused and nothing is sent
    /// to it.
    pub removed: Option<String>,
    /// Its key rotations (mkreplica -rekey), oldest first: the key
    /// replaced is good for its own changes up to `epoch` only.
    pub rotations: Vec<RotationInfo>,
    /// The last time this replica's tree was verified the same as its
    /// (its packet's tree digest, at the version both held).
    pub verified: Option<DigestInfo>,
    /// The last tree digest received from it and what the comparison
    /// found: "verified", "differs" or "not compared: WHY".
    pub last_digest: Option<DigestInfo>,
}

/// A member's key rotation (mkreplica -rekey).
#[derive(Debug, Serialize)]
pub struct RotationInfo {
    /// The member's own epoch of the rotation.
    pub epoch: u64,
    /// The fingerprint of the signing key it replaced.
    pub previous_key_fingerprint: String,
    /// When this replica took it, RFC 3339 UTC.
    pub at: String,
}

#[derive(Debug, Serialize)]
pub struct DigestInfo {
    /// RFC 3339 UTC.
    pub at: String,
    #[serde(skip)]
    pub at_ns: i64,
    pub packet: String,
    /// The version compared, by origin name.
    pub epoch_row: BTreeMap<String, u64>,
    pub entries: u64,
    pub outcome: String,
}

#[derive(Debug, Serialize)]
pub struct PacketInfo {
    pub file: String,
    pub sequence: u64,
    pub at: String,
}

#[derive(Debug, Serialize)]
pub struct Unconfirmed {
    pub origin: String,
    pub first: u64,
    pub last: u64,
}

#[derive(Debug, Serialize)]
pub struct AlarmInfo {
    pub at: String,
    pub packet: String,
    pub what: String,
}

fn packet_info(entry: Option<PacketLogEntry>) -> Option<PacketInfo> {
    entry.map(|p| PacketInfo {
        file: p.file_name,
        sequence: p.sequence,
        at: rfc3339_ns(p.at_ns),
    })
}

/// The member listing as data.
pub fn members(replica: &Replica) -> Result<MemberList> {
    let me = replica.identity.replica_id;
    let state = replica.state();
    let members = replica.members()?;
    let table = state.epoch_table()?;
    let confirmed = state.confirmed_table()?;
    let alarms = state.clone_alarms()?;
    let rotations = state.rotations()?;
    let received = state.digests_received()?;
    let verified = state.digests_verified()?;
    let by_name = |row: &BTreeMap<Id, u64>| -> BTreeMap<String, u64> {
        row.iter()
            .map(|(origin, epoch)| {
                let name = members
                    .iter()
                    .find(|m| m.replica == *origin)
                    .map_or_else(|| origin.to_hex(), |m| m.name.clone());
                (name, *epoch)
            })
            .collect()
    };
    let removed = state.removed_members()?;
    let mirror_of = state.mirror_upstream()?;
    let names: HashMap<Id, String> = members
        .iter()
        .map(|m| (m.replica, m.name.clone()))
        .collect();
    let mut list = Vec::new();
    for member in &members {
        let own = member.replica == me;
        let row = table.get(&member.replica);
        let epoch_row: BTreeMap<String, u64> = members
            .iter()
            .map(|origin| {
                let epoch = row
                    .and_then(|r| r.get(&origin.replica))
                    .copied()
                    .unwrap_or(0);
                (origin.name.clone(), epoch)
            })
            .collect();
        let removal = removed.iter().find(|r| r.replica == member.replica);
        let mut unconfirmed = Vec::new();
        // A removed member holds nothing back.
        if !own && removal.is_none() {
            let confirmed = confirmed.get(&member.replica);
            for origin in &members {
                let estimate = row
                    .and_then(|r| r.get(&origin.replica))
                    .copied()
                    .unwrap_or(0);
                let have = confirmed
                    .and_then(|c| c.get(&origin.replica))
                    .map_or(0, |c| c.epoch);
                if estimate > have {
                    unconfirmed.push(Unconfirmed {
                        origin: names[&origin.replica].clone(),
                        first: have + 1,
                        last: estimate,
                    });
                }
            }
        }
        list.push(MemberInfo {
            name: member.name.clone(),
            replica_id: member.replica.to_hex(),
            key_fingerprint: identity::fingerprint(&member.public_key),
            public_key: hex::encode(member.public_key),
            encryption_key: match state.member_encryption_key(&member.replica)? {
                Some(key) => Some(key),
                // This replica's own, when the family has no announcement
                // of it: the identity it decrypts with, if this user may
                // read it (a read-only user may not).
                None if own => crate::store::identity::load_encryption_key(&replica.state_dir())
                    .ok()
                    .flatten()
                    .map(|identity| identity.to_public().to_string()),
                None => None,
            },
            this_replica: own,
            last_sent: packet_info(if own {
                None
            } else {
                state.last_packet("sent", &member.replica)?
            }),
            last_received: packet_info(if own {
                None
            } else {
                state.last_packet("received", &member.replica)?
            }),
            last_heard: state.heard(&member.replica)?.map(|h| rfc3339_ns(h.at_ns)),
            unconfirmed,
            epoch_row,
            clone_alarms: alarms
                .iter()
                .filter(|a| a.replica == member.replica)
                .map(|a| AlarmInfo {
                    at: rfc3339_ns(a.at_ns),
                    packet: a.packet.clone(),
                    what: a.what.clone(),
                })
                .collect(),
            verified: verified
                .iter()
                .find(|v| v.sibling == member.replica)
                .map(|v| DigestInfo {
                    at: rfc3339_ns(v.at_ns),
                    at_ns: v.at_ns,
                    packet: v.packet.clone(),
                    epoch_row: by_name(&v.row),
                    entries: v.entries,
                    outcome: "verified".into(),
                }),
            last_digest: received
                .iter()
                .find(|d| d.sibling == member.replica)
                .map(|d| DigestInfo {
                    at: rfc3339_ns(d.at_ns),
                    at_ns: d.at_ns,
                    packet: d.packet.clone(),
                    epoch_row: by_name(&d.row),
                    entries: d.digest.entries,
                    outcome: d.outcome.clone(),
                }),
            incarnation: match own {
                true => state.own_incarnation()?.map(|(id, _)| id.to_hex()),
                false => state
                    .known_incarnation(&member.replica)?
                    .map(|known| known.incarnation.to_hex()),
            },
            format_version: match own {
                true => Some(format!(
                    "{}.{}",
                    packet_format::FORMAT_MAJOR,
                    packet_format::FORMAT_MINOR
                )),
                false => state
                    .member_version(&member.replica)?
                    .map(|seen| seen.version.to_string()),
            },
            restore_waits_for: match own {
                true => crate::sync::family::restore_wait(replica)?.map(|w| w.to_string()),
                false => None,
            },
            removed: removal
                .map(|r| crate::sync::family::removal_text(replica, r))
                .transpose()?,
            rotations: rotations
                .iter()
                .filter(|r| r.replica == member.replica)
                .map(|r| RotationInfo {
                    epoch: r.epoch,
                    previous_key_fingerprint: identity::fingerprint(&r.old_key),
                    at: rfc3339_ns(r.at_ns),
                })
                .collect(),
            mirror_of: match (own, mirror_of) {
                (true, Some(upstream)) => Some(
                    names
                        .get(&upstream)
                        .cloned()
                        .unwrap_or_else(|| upstream.to_hex()),
                ),
                _ => None,
            },
        });
    }
    Ok(MemberList {
        version: JSON_VERSION,
        family: replica.identity.family_name.clone(),
        family_id: replica.identity.family_id.to_hex(),
        oplog: {
            let (operations, bytes) = state.oplog_size()?;
            OplogSize { operations, bytes }
        },
        members: list,
    })
}

/// Renders the member listing. `long` adds the packet log, what each
/// sibling has not confirmed, and the epoch rows.
pub fn render_members(replica: &Replica, long: bool, only: &[String]) -> Result<String> {
    let me = replica.identity.replica_id;
    let state = replica.state();
    let mut listing = members(replica)?;
    select(&mut listing, only, &replica.identity.family_name)?;
    let mut out = String::new();
    let count = listing.members.len();
    let _ = writeln!(
        out,
        "Family \"{}\" (family id {}), {} member{}:",
        replica.identity.family_name,
        replica.identity.family_id,
        count,
        if count == 1 { "" } else { "s" }
    );
    let width = listing
        .members
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(0);
    for member in &listing.members {
        let local = if member.this_replica {
            " (this replica)"
        } else {
            ""
        };
        let cloned = if member.clone_alarms.is_empty() {
            ""
        } else {
            " CLONED: two copies of it are in use (lsreplica -long)"
        };
        let mirror = member
            .mirror_of
            .as_ref()
            .map(|of| format!(" MIRROR of {}", printable(of)))
            .unwrap_or_default();
        let removed = if member.removed.is_some() {
            " REMOVED"
        } else if member.restore_waits_for.is_some() {
            " RESTORING (lsreplica -long)"
        } else {
            ""
        };
        let rekeyed = match member.rotations.last() {
            Some(r) => format!(" (rekeyed at its epoch {})", r.epoch),
            None => String::new(),
        };
        if !long {
            let _ = writeln!(
                out,
                "  {:<width$}  key {}{rekeyed}{local}{mirror}{cloned}{removed}",
                printable(&member.name),
                member.key_fingerprint
            );
            continue;
        }
        let _ = writeln!(out, "replica \"{}\"{local}", printable(&member.name));
        let _ = writeln!(out, "  replica id:        {}", member.replica_id);
        let format = match (&member.format_version, member.this_replica) {
            (Some(version), true) => format!("{version} (this program's)"),
            (Some(version), false) => format!("{version} (its newest packet here)"),
            (None, _) => "unknown (no packet from it yet)".into(),
        };
        let _ = writeln!(out, "  packet format:     {format}");
        if let Some(incarnation) = &member.incarnation {
            let whose = match member.this_replica {
                true => "this copy's",
                false => "the copy accepted here",
            };
            let _ = writeln!(out, "  incarnation:       {incarnation} ({whose})");
        }
        if member.this_replica {
            let _ = writeln!(
                out,
                "  operation log:     {} operation{}, {} bytes",
                listing.oplog.operations,
                if listing.oplog.operations == 1 {
                    ""
                } else {
                    "s"
                },
                listing.oplog.bytes
            );
        }
        if let Some(wait) = &member.restore_waits_for {
            let _ = writeln!(
                out,
                "  restore:           restored from a backup; records no change of its own until it has {wait}"
            );
        }
        if let Some(of) = &member.mirror_of {
            let _ = writeln!(
                out,
                "  mirror:            of \"{}\": records no change of its own; the family's version wins here",
                printable(of)
            );
        }
        if let Some(how) = &member.removed {
            let _ = writeln!(
                out,
                "  removed:           {how}; its packets are refused, nothing is sent to it"
            );
        }
        let _ = writeln!(out, "  key fingerprint:   {}", member.key_fingerprint);
        // The key itself, for a relay host's shipping.toml `trusted_keys`.
        let _ = writeln!(out, "  public key:        {}", member.public_key);
        let _ = match &member.encryption_key {
            Some(key) => writeln!(
                out,
                "  encryption key:    {key} (packets to it are encrypted to it)"
            ),
            None => writeln!(
                out,
                "  encryption key:    none known here (packets to it are not encrypted)"
            ),
        };
        for rotation in &member.rotations {
            let _ = writeln!(
                out,
                "  key replaced:      at its epoch {} (mkreplica -rekey; taken here {}): the key {} \
                 is good for its changes up to {} only",
                rotation.epoch, rotation.at, rotation.previous_key_fingerprint, rotation.epoch
            );
        }
        let id = Id::from_hex(&member.replica_id).unwrap_or(Id([0; 16]));
        if id != me {
            for (label, direction) in [
                ("last sent:        ", "sent"),
                ("last received:    ", "received"),
            ] {
                let text = match state.last_packet(direction, &id)? {
                    Some(p) => format!(
                        "{} (sequence {}, {})",
                        // A packet file's name, from elsewhere (a bay).
                        printable(&p.file_name),
                        p.sequence,
                        format_time_ns(p.at_ns)
                    ),
                    None => "none".into(),
                };
                let _ = writeln!(out, "  {label} {text}");
            }
            let heard = match state.heard(&id)? {
                Some(h) => format_time_ns(h.at_ns),
                None => "never (nothing it has is confirmed; no automatic resend to it)".into(),
            };
            let _ = writeln!(out, "  last heard from:   {heard}");
            let unconfirmed = if member.unconfirmed.is_empty() {
                "nothing".to_string()
            } else {
                let total: u64 = member
                    .unconfirmed
                    .iter()
                    .map(|u| u.last - u.first + 1)
                    .sum();
                let ranges: Vec<String> = member
                    .unconfirmed
                    .iter()
                    .map(|u| match u.first == u.last {
                        true => format!("{} {}", printable(&u.origin), u.first),
                        false => format!("{} {}-{}", printable(&u.origin), u.first, u.last),
                    })
                    .collect();
                format!(
                    "{total} change{} ({})",
                    if total == 1 { "" } else { "s" },
                    ranges.join(", ")
                )
            };
            let _ = writeln!(out, "  unconfirmed:       {unconfirmed}");
            let row = |info: &DigestInfo| -> String {
                info.epoch_row
                    .iter()
                    .filter(|(_, e)| **e > 0)
                    .map(|(o, e)| format!("{}={e}", printable(o)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let verified = match &member.verified {
                Some(v) => format!(
                    "in step at epoch row {} ({} entr{}, {}, packet {})",
                    row(v),
                    v.entries,
                    if v.entries == 1 { "y" } else { "ies" },
                    format_time_ns(v.at_ns),
                    printable(&v.packet)
                ),
                None => "never".into(),
            };
            let _ = writeln!(out, "  verified:          {verified}");
            if let Some(last) = &member.last_digest {
                if last.outcome != "verified" {
                    let _ = writeln!(
                        out,
                        "  last digest:       {} (epoch row {}, {})",
                        if last.outcome == "differs" {
                            "DIFFERS from this replica's tree at that version \
                             (syncreplica -verify lists where)"
                                .to_string()
                        } else {
                            last.outcome.clone()
                        },
                        row(last),
                        format_time_ns(last.at_ns)
                    );
                }
            }
        }
        // In member order, as the family lists them.
        let entries: Vec<String> = listing
            .members
            .iter()
            .map(|origin| {
                let epoch = member.epoch_row.get(&origin.name).copied().unwrap_or(0);
                format!("{}={epoch}", printable(&origin.name))
            })
            .collect();
        let kind = if member.this_replica {
            "exact"
        } else {
            "estimate"
        };
        let _ = writeln!(out, "  epoch row ({kind}): {}", entries.join(" "));
        for alarm in &member.clone_alarms {
            let _ = writeln!(
                out,
                "  CLONED (alarm of {}, packet {}): {}",
                alarm.at,
                printable(&alarm.packet),
                printable(&alarm.what)
            );
        }
    }
    Ok(out)
}

/// Keeps the members `only` names (by name or replica id), in the
/// family's order; all of them when `only` is empty. A name that is no
/// member is [`crate::Error::UnknownReplica`] (exit 2).
pub fn select(listing: &mut MemberList, only: &[String], family: &str) -> Result<()> {
    if only.is_empty() {
        return Ok(());
    }
    for name in only {
        if !listing
            .members
            .iter()
            .any(|m| m.name == *name || m.replica_id == *name)
        {
            return Err(crate::Error::UnknownReplica {
                name: name.clone(),
                family: family.to_string(),
            });
        }
    }
    listing
        .members
        .retain(|m| only.iter().any(|n| *n == m.name || *n == m.replica_id));
    Ok(())
}
