//! `lspacket`: MultiSite's packet listing, with the local replica's view.

use packet_format::{render_listing_with, Examination, Header, SignatureStatus, Target};
use serde::Serialize;

use crate::error::{printable, printable_path};
use crate::sync::epochs::LocalView;
use std::path::PathBuf;

/// Whether a listed packet should make lspacket exit non-zero.
pub fn is_problem(exam: &Examination) -> bool {
    exam.error.is_some() || !matches!(exam.signature, Some(SignatureStatus::Verified))
}

fn note_for(view: Option<&LocalView>, header: &Header, target: &Target) -> Option<String> {
    let view = view?;
    (target.id == view.replica).then(|| format!("(local: {})", view.readiness(header)))
}

/// Text listing of one packet. A damaged or unverified packet gets no
/// readiness note: it cannot be applied, whatever its epochs say.
///
/// The listing escapes the names and comment it takes from the header,
/// but for the family name; that, and the file's path (a name from
/// elsewhere when it sits in a bay), are made printable here first.
pub fn render_text(mut exam: Examination, long: bool, view: Option<&LocalView>) -> String {
    let header = exam.header.clone().filter(|_| !is_problem(&exam));
    exam.path = PathBuf::from(printable_path(&exam.path));
    if let Some(header) = exam.header.as_mut() {
        header.family.name = printable(&header.family.name).into_owned();
    }
    render_listing_with(&exam, long, &|target| {
        header.as_ref().and_then(|h| note_for(view, h, target))
    })
}

/// Version of `lspacket -fmt json`'s shape; raised when a field changes
/// meaning or goes (new fields may be added without it).
pub const JSON_VERSION: u32 = 1;

/// `lspacket -fmt json`: every packet listed, in listing order (an empty
/// list when none was found).
#[derive(Debug, Serialize)]
pub struct PacketList {
    pub version: u32,
    pub packets: Vec<PacketJson>,
    /// Uploads received in part, kept for their senders to resume (listed
    /// with the bays only; left out when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partials: Vec<PartialJson>,
}

/// An upload received in part (see shipping/FORMAT.md, "Resuming an
/// upload").
#[derive(Debug, Serialize)]
pub struct PartialJson {
    /// The packet's file name.
    pub packet: String,
    pub storage_class: String,
    /// Bytes held so far.
    pub held: u64,
    /// The packet's whole size in bytes, as its sender declared.
    pub size: u64,
    pub sha256: String,
    /// When bytes were last added (RFC 3339, UTC).
    pub modified: String,
}

/// One line for a partial upload: `Partial upload: NAME, HELD of SIZE
/// bytes (P %), class C, last added AGE ago`.
pub fn render_partial_text(
    class: &str,
    partial: &shipping::receive::Partial,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let percent = if partial.size == 0 {
        100.0
    } else {
        partial.held as f64 * 100.0 / partial.size as f64
    };
    let age = (now - partial.modified).num_seconds().max(0);
    let age = match age {
        0..=119 => format!("{age} s"),
        120..=7199 => format!("{} min", age / 60),
        _ => format!("{} h", age / 3600),
    };
    format!(
        "Partial upload: {}, {} of {} bytes ({percent:.1} %), class {class}, last added {age} ago\n",
        crate::error::printable(&partial.packet),
        partial.held,
        partial.size
    )
}

/// One packet file. The header fields are there only when its header
/// could be read (a damaged file has `path`, `size`, `damaged`).
#[derive(Debug, Serialize)]
pub struct PacketJson {
    pub path: String,
    /// The file's size in bytes (`null`: it could not be opened).
    pub size: Option<u64>,
    /// What is wrong with it (`null`: intact).
    pub damaged: Option<String>,
    /// `null` when the file could not be read that far.
    pub signature: Option<SignatureJson>,
    #[serde(flatten)]
    pub header: Option<HeaderJson>,
    /// For a packet in a storage bay: its class and bay
    /// ("outgoing", "incoming", "return").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bay: Option<String>,
    /// For a packet in a storage bay: its shipping order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderJson>,
}

/// Who signed a packet, as far as this replica can tell.
#[derive(Debug, Serialize)]
pub struct SignatureJson {
    /// "verified", "unknown key", "bad", or "not checked" (outside a
    /// replica: no family keys to check it against).
    pub status: &'static str,
    /// The signing key's SHA-256 fingerprint (`null` when verified).
    pub fingerprint: Option<String>,
}

/// What a packet's header says (unauthenticated unless the signature is
/// "verified").
#[derive(Debug, Serialize)]
pub struct HeaderJson {
    /// "Update", "Replica Creation" or "Unknown (CODE)".
    #[serde(rename = "type")]
    pub kind: String,
    pub family: NamedJson,
    pub sender: NamedJson,
    pub packet_id: String,
    pub comment: String,
    pub part: u32,
    pub parts: u32,
    /// RFC 3339, UTC.
    pub created: String,
    /// "MAJOR.MINOR".
    pub format_version: String,
    pub targets: Vec<TargetJson>,
    /// Per origin replica id (hex): the first and last epochs carried.
    pub epoch_ranges: std::collections::BTreeMap<String, RangeJson>,
    /// The sender copy's incarnation id (format 2.1), `null` before.
    pub sender_incarnation: Option<String>,
    /// To whom the contents are encrypted (format 2.5); `null`: in the clear.
    pub encryption: Option<EncryptionJson>,
    /// The sender's tree digest at its epoch row (format 2.2), `null` before.
    pub tree_digest: Option<DigestJson>,
}

/// The recipients of an encrypted packet.
#[derive(Debug, Serialize)]
pub struct EncryptionJson {
    pub recipients: Vec<RecipientJson>,
    /// Also encrypted to a passphrase (creation packets).
    pub passphrase: bool,
}

/// One recipient: the member and its age X25519 public key (`age1…`).
#[derive(Debug, Serialize)]
pub struct RecipientJson {
    pub id: String,
    pub key: String,
}

/// A name with its id (hex).
#[derive(Debug, Serialize)]
pub struct NamedJson {
    pub name: String,
    pub id: String,
}

/// One target of a packet.
#[derive(Debug, Serialize)]
pub struct TargetJson {
    pub name: String,
    pub id: String,
    /// The packet's sequence number for this target.
    pub sequence: u64,
    /// Whether this target is the replica lspacket runs in.
    pub local: bool,
    /// For the local target of an intact packet: "can be applied now",
    /// "waits for …", "applied already" (as in the text listing).
    pub status: Option<String>,
}

/// A run of epochs.
#[derive(Debug, Serialize)]
pub struct RangeJson {
    pub first: u64,
    pub last: u64,
}

/// A packet's tree digest, in brief.
#[derive(Debug, Serialize)]
pub struct DigestJson {
    pub root: String,
    pub entries: u64,
    /// The sender's exclude patterns (text from elsewhere, kept as data).
    pub patterns: Vec<String>,
    pub assumed_target_patterns: String,
    pub nodes: usize,
}

/// JSON object for one packet (the bay and order are filled by the caller).
pub fn render_json(exam: &Examination, view: Option<&LocalView>) -> PacketJson {
    let signature = exam.signature.as_ref().map(|s| match s {
        SignatureStatus::Verified => SignatureJson {
            status: "verified",
            fingerprint: None,
        },
        SignatureStatus::UnknownKey { fingerprint } => SignatureJson {
            status: "unknown key",
            fingerprint: Some(fingerprint.clone()),
        },
        SignatureStatus::Bad { fingerprint } => SignatureJson {
            status: "bad",
            fingerprint: Some(fingerprint.clone()),
        },
    });
    let header = exam.header.as_ref().map(|header| HeaderJson {
        kind: match header.kind {
            packet_format::PacketKind::Update => "Update".to_string(),
            packet_format::PacketKind::ReplicaCreation => "Replica Creation".to_string(),
            packet_format::PacketKind::Unknown(code) => format!("Unknown ({code})"),
        },
        family: NamedJson {
            name: header.family.name.clone(),
            id: header.family.id.to_hex(),
        },
        sender: NamedJson {
            name: header.sender.name.clone(),
            id: header.sender.id.to_hex(),
        },
        packet_id: header.packet_id.to_hex(),
        comment: header.comment.clone(),
        part: header.part,
        parts: header.parts,
        created: rfc3339_secs(header.created.secs),
        format_version: format!("{}.{}", header.version.major, header.version.minor),
        targets: header
            .targets
            .iter()
            .map(|t| {
                let local = view.is_some_and(|v| v.replica == t.id);
                TargetJson {
                    name: t.name.clone(),
                    id: t.id.to_hex(),
                    sequence: t.seq,
                    local,
                    status: view
                        .filter(|_| local && !is_problem(exam))
                        .map(|v| v.readiness(header).to_string()),
                }
            })
            .collect(),
        epoch_ranges: header
            .epoch_ranges
            .iter()
            .map(|(origin, r)| {
                (
                    origin.to_hex(),
                    RangeJson {
                        first: r.first,
                        last: r.last,
                    },
                )
            })
            .collect(),
        sender_incarnation: header.incarnation.map(|id| id.to_hex()),
        encryption: header.encryption.as_ref().map(|e| EncryptionJson {
            recipients: e
                .recipients
                .iter()
                .map(|r| RecipientJson {
                    id: r.id.to_hex(),
                    key: r.key.clone(),
                })
                .collect(),
            passphrase: e.passphrase,
        }),
        tree_digest: header.tree_digest.as_ref().map(|d| DigestJson {
            root: hex::encode(d.root),
            entries: d.entries,
            patterns: d.patterns.clone(),
            assumed_target_patterns: hex::encode(d.assumed),
            nodes: d.nodes.len(),
        }),
    });
    PacketJson {
        path: exam.path.display().to_string(),
        size: exam.size,
        damaged: exam.error.as_ref().map(|e| e.to_string()),
        signature,
        header,
        storage_class: None,
        bay: None,
        order: None,
    }
}

/// Seconds since the epoch as RFC 3339 (UTC, `Z`).
fn rfc3339_secs(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

/// Text lines about a packet's shipping order (after its listing).
pub fn render_order_text(order: &shipping::ShippingOrder, returned: bool) -> String {
    use shipping::order::format_time;
    let mut out = String::new();
    if returned {
        out.push_str(&format!(
            "Returned: expired at {} before reaching {}\n",
            format_time(&order.expires),
            printable(&order.destinations.join(", "))
        ));
    } else {
        out.push_str(&format!(
            "Shipping order: to {}; created {}; expires {}\n",
            printable(&order.destinations.join(", ")),
            format_time(&order.created),
            format_time(&order.expires)
        ));
    }
    for (destination, attempts) in &order.attempts {
        out.push_str(&format!(
            "  delivery to {}: {} failed attempt{}, last at {}: {}; next try after {}\n",
            printable(destination),
            attempts.failures,
            if attempts.failures == 1 { "" } else { "s" },
            format_time(&attempts.last_attempt),
            // May quote what a remote server answered.
            printable(&attempts.last_error),
            format_time(&attempts.next_retry)
        ));
    }
    out
}

/// A packet's shipping order (times RFC 3339, UTC).
#[derive(Debug, Serialize)]
pub struct OrderJson {
    pub destinations: Vec<String>,
    pub created: String,
    pub expires: String,
    /// Per destination: its failed delivery attempts so far.
    pub attempts: std::collections::BTreeMap<String, AttemptsJson>,
}

/// Failed delivery attempts to one destination.
#[derive(Debug, Serialize)]
pub struct AttemptsJson {
    pub failures: u32,
    pub last_attempt: String,
    pub last_error: String,
    pub next_retry: String,
}

/// JSON object for a packet's shipping order.
pub fn render_order_json(order: &shipping::ShippingOrder) -> OrderJson {
    use shipping::order::format_time;
    OrderJson {
        destinations: order.destinations.clone(),
        created: format_time(&order.created),
        expires: format_time(&order.expires),
        attempts: order
            .attempts
            .iter()
            .map(|(d, a)| {
                (
                    d.clone(),
                    AttemptsJson {
                        failures: a.failures,
                        last_attempt: format_time(&a.last_attempt),
                        last_error: a.last_error.clone(),
                        next_retry: format_time(&a.next_retry),
                    },
                )
            })
            .collect(),
    }
}
