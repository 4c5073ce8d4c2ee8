//! `lspacket`: MultiSite's packet listing, with the local replica's view.

use packet_format::{render_listing_with, Examination, Header, SignatureStatus, Target};
use serde::Serialize;

use crate::error::{printable, printable_path};
use crate::sync::epochs::LocalView;
use std::path::PathBuf;

/// Whether a listed packet is intact and signed by a known key (only
/// such a packet gets a readiness note).
pub fn is_problem(exam: &Examination) -> bool {
    exam.error.is_some() || !matches!(exam.signature, Some(SignatureStatus::Verified))
}

/// What a listed file is, as far as this replica can tell: each listing
/// says it, the summary counts files by it, and the JSON listing carries
/// it as `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Intact, signed by a member this replica knows.
    Intact,
    /// Intact; its signature not checked, for want of a replica's keys.
    NotChecked,
    /// Intact, its contents encrypted to other members' keys (a hub
    /// passes it on; this replica cannot read it).
    EncryptedForOthers,
    /// Not a zip archive, or a zip archive that is not a packet (an
    /// unrelated file given a packet's name, or named explicitly).
    NotAPacket,
    /// The file cannot be read (permissions, I/O): not damage.
    Unreadable,
    /// Truncated, or not what was signed: a hash, size, signature or
    /// structure that does not match.
    Damaged,
    /// Written in a packet format this program does not read.
    UnsupportedFormat,
    /// Intact as far as can be seen, signed by a key that is not a
    /// member's this replica knows.
    UnknownKey,
    /// Signed with a key its member replaced (`mkreplica -rekey`) at
    /// epoch E, yet carrying (or claiming) that member's changes after E:
    /// -import refuses it (SPEC.md §7.1).
    RetiredKey,
    /// A packet of a family this replica does not belong to.
    OtherFamily,
    /// Intact as far as can be seen without opening it, encrypted to
    /// this replica, whose key this user may not read. Not a problem:
    /// the replica's owner reads it.
    KeyUnreadable,
}

impl Verdict {
    /// The words the summary uses for `n` files.
    pub fn counted(self, n: u64) -> String {
        match self == Verdict::NotAPacket && n != 1 {
            true => format!("{n} not packets"),
            false => format!("{n} {}", self.words()),
        }
    }

    /// The words a listing and the summary use.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Intact => "intact",
            Verdict::NotChecked => "intact, signature not checked",
            Verdict::EncryptedForOthers => "encrypted for others",
            Verdict::NotAPacket => "not a packet",
            Verdict::Unreadable => "unreadable",
            Verdict::Damaged => "damaged",
            Verdict::UnsupportedFormat => "of an unsupported packet format",
            Verdict::UnknownKey => "signed by an unknown key",
            Verdict::RetiredKey => "signed with a replaced key",
            Verdict::OtherFamily => "of another family",
            Verdict::KeyUnreadable => "not readable by this user",
        }
    }

    /// The JSON listing's `status`.
    pub fn json(self) -> &'static str {
        match self {
            Verdict::Intact => "intact",
            Verdict::NotChecked => "not checked",
            Verdict::EncryptedForOthers => "encrypted for others",
            Verdict::NotAPacket => "not a packet",
            Verdict::Unreadable => "unreadable",
            Verdict::Damaged => "damaged",
            Verdict::UnsupportedFormat => "unsupported format",
            Verdict::UnknownKey => "unknown key",
            Verdict::RetiredKey => "replaced key",
            Verdict::OtherFamily => "another family",
            Verdict::KeyUnreadable => "not readable by this user",
        }
    }
}

/// Who is looking at a packet: the replica lspacket runs for (its id and
/// family), if any, and whether signatures can be checked at all.
pub struct Reader {
    pub replica: Option<crate::ops::Id>,
    pub family: Option<(crate::ops::Id, String)>,
    /// No keys to check against (packets named outside any replica).
    pub unchecked: bool,
    /// Listing a hub's bays outside any replica: keys are the hub's
    /// (trusted_keys, trusted_replicas, the rotations it learned).
    pub hub: bool,
    /// Why this user cannot read the replica's own decryption key (a
    /// user with read access only): packets encrypted to this replica
    /// are then listed as [`Verdict::KeyUnreadable`].
    pub key_unreadable: Option<String>,
    /// The members' keys over time (with rotations), inside a replica:
    /// a packet signed with a replaced key is judged by the key rule
    /// -import applies.
    pub book: Option<crate::sync::keys::KeyBook>,
    /// What the replica has seen of each listed packet's sender (the
    /// stale-copy rule of -import, [`crate::sync::family::retired_restore`]).
    pub seen: std::collections::BTreeMap<crate::ops::Id, crate::sync::family::SenderSeen>,
}

/// One listed file's verdict, and why when it is not usable.
pub struct Judged {
    pub verdict: Verdict,
    /// What is wrong, in words (`None`: nothing).
    pub why: Option<String>,
    /// Whether it makes lspacket exit 1: anything this replica should
    /// be able to use and cannot.
    pub problem: bool,
}

/// Judges one examined file for `reader`.
pub fn judge(exam: &Examination, reader: &Reader) -> Judged {
    use packet_format::ErrorKind;
    let judged = |verdict, why: Option<String>, problem| Judged {
        verdict,
        why,
        problem,
    };
    let targets_me = exam
        .header
        .as_ref()
        .is_some_and(|h| h.targets.iter().any(|t| Some(t.id) == reader.replica));
    if let Some(err) = &exam.error {
        let why = Some(crate::error::plain_os_errors(&err.kind.to_string()).into_owned());
        return match &err.kind {
            ErrorKind::Io { .. } => judged(Verdict::Unreadable, why, true),
            ErrorKind::NewerFormat { .. } | ErrorKind::OlderFormat { .. } => {
                judged(Verdict::UnsupportedFormat, why, true)
            }
            ErrorKind::NotForThisReplica { .. }
            | ErrorKind::PassphraseNeeded
            | ErrorKind::WrongPassphrase => judged(Verdict::EncryptedForOthers, why, targets_me),
            _ => match crate::sync::packets::not_a_packet(&exam.path) {
                Some(what) => judged(Verdict::NotAPacket, Some(what), true),
                None => judged(Verdict::Damaged, why, true),
            },
        };
    }
    let header = exam.header.as_ref();
    if let (Some(header), Some((family, name))) = (header, &reader.family) {
        if header.family.id != *family {
            let why = format!(
                "its family is \"{}\" ({}); this replica's is \"{}\" ({family})",
                printable(&header.family.name),
                header.family.id,
                printable(name)
            );
            return judged(Verdict::OtherFamily, Some(why), true);
        }
    }
    match &exam.signature {
        Some(SignatureStatus::UnknownKey { .. }) if reader.unchecked => {
            judged(Verdict::NotChecked, None, false)
        }
        Some(SignatureStatus::UnknownKey { fingerprint }) if reader.hub => judged(
            Verdict::UnknownKey,
            Some(format!(
                "key {fingerprint} is not one this hub trusts (trusted_keys, the members of \
                 trusted_replicas, or a key rotation it learned or the packet carries)"
            )),
            true,
        ),
        Some(SignatureStatus::UnknownKey { fingerprint }) => judged(
            Verdict::UnknownKey,
            Some(format!(
                "key {fingerprint} is not a member's this replica knows"
            )),
            true,
        ),
        Some(SignatureStatus::Bad { fingerprint }) => judged(
            Verdict::Damaged,
            Some(format!("BAD signature (key {fingerprint})")),
            true,
        ),
        _ => {
            // The key rule -import applies (SPEC.md §7.1).
            let retired = header.zip(reader.book.as_ref()).and_then(|(header, book)| {
                let seen = reader
                    .seen
                    .get(&header.sender.id)
                    .copied()
                    .unwrap_or_default();
                crate::sync::family::key_rule_refusal(book, &seen, header)
            });
            match retired {
                Some(refusal) => {
                    let why = refusal.to_string().replace(
                        "; nothing of this packet was applied",
                        "; -import refuses it",
                    );
                    judged(Verdict::RetiredKey, Some(why), true)
                }
                None => judged_readable(exam, reader),
            }
        }
    }
}

/// [`judge`] for an intact packet signed by a key this replica trusts
/// for it (or not checked).
fn judged_readable(exam: &Examination, reader: &Reader) -> Judged {
    let judged = |verdict, why: Option<String>, problem| Judged {
        verdict,
        why,
        problem,
    };
    let header = exam.header.as_ref();
    let targets_me = header.is_some_and(|h| h.targets.iter().any(|t| Some(t.id) == reader.replica));
    let sealed_for_others =
        header.is_some_and(|h| h.encryption.is_some() && reader.replica.is_some() && !targets_me);
    let sealed_for_me = header.is_some_and(|h| h.encryption.is_some() && targets_me);
    match (sealed_for_others, &reader.key_unreadable) {
        (true, _) => judged(Verdict::EncryptedForOthers, None, false),
        (false, Some(why)) if sealed_for_me => {
            judged(Verdict::KeyUnreadable, Some(why.clone()), false)
        }
        (false, _) => judged(Verdict::Intact, None, false),
    }
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
///
/// The last line says what is wrong with a file that cannot be used
/// here, in the words of its [`Verdict`] (the packet crate's own line
/// calls everything it cannot verify damaged).
pub fn render_text(
    mut exam: Examination,
    judged: &Judged,
    long: bool,
    view: Option<&LocalView>,
) -> String {
    // Nor does one the key rules refuse: it is not applied, whatever
    // its epochs say.
    let header = exam
        .header
        .clone()
        .filter(|_| !is_problem(&exam) && judged.verdict != Verdict::RetiredKey);
    exam.path = PathBuf::from(printable_path(&exam.path));
    if let Some(header) = exam.header.as_mut() {
        header.family.name = printable(&header.family.name).into_owned();
    }
    exam.error = None;
    if judged.verdict == Verdict::NotAPacket {
        // Whatever a file that is not a packet seems to say is noise.
        exam.header = None;
        exam.signature = None;
    }
    let text = render_listing_with(&exam, long, &|target| {
        header.as_ref().and_then(|h| note_for(view, h, target))
    });
    // The packet crate's -long line says "N operation records and M
    // chunk records" whatever N and M are.
    let text = text
        .replace(
            "contains 1 operation records",
            "contains 1 operation record",
        )
        .replace(" and 1 chunk records.", " and 1 chunk record.");
    let mut text = without_empty_lines(&text);
    if long && judged.verdict != Verdict::NotAPacket {
        if let Some(digest) = exam.header.as_ref().and_then(|h| h.tree_digest.as_ref()) {
            text.push_str(&digest_lines(digest));
        }
        if let Some(header) = exam.header.as_ref() {
            text.push_str(&rotation_lines(header));
        }
    }
    let line = match (judged.verdict, &judged.why) {
        (Verdict::Intact | Verdict::NotChecked, _) => None,
        (Verdict::EncryptedForOthers, None) => {
            let to = match header.as_ref().and_then(|h| h.encryption.as_ref()) {
                Some(e) if e.passphrase => "with a passphrase",
                Some(e) if e.recipients.is_empty() => "to the new member's key file",
                _ => "for the targets above",
            };
            Some(format!(
                "Contents: encrypted {to}; this replica cannot read them."
            ))
        }
        (Verdict::NotAPacket, why) => Some(format!(
            "Not a packet: {}",
            why.as_deref().unwrap_or("no packet header")
        )),
        (Verdict::KeyUnreadable, why) => Some(format!(
            "Contents: encrypted to this replica; {}.",
            why.as_deref().unwrap_or_default()
        )),
        (Verdict::Unreadable, why) => Some(format!(
            "Packet cannot be read: {}",
            why.as_deref().unwrap_or_default()
        )),
        (verdict, why) => Some(format!(
            "Packet is {}: {}",
            verdict.words(),
            why.as_deref().unwrap_or_default()
        )),
    };
    if let Some(line) = line {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// The sender's key rotations a header carries (SPEC.md §4.3), as
/// `-long` and `-fmt json` show them: (epoch, new key fingerprint), or
/// why they do not hold together.
fn header_rotations(header: &Header) -> Result<Vec<RotationJson>, String> {
    let proved = header.proved_rotations()?;
    Ok(proved
        .iter()
        .map(|r| RotationJson {
            member: header.sender.id.to_hex(),
            epoch: r.epoch,
            new_fingerprint: crate::store::identity::fingerprint(&r.new_key),
            old_fingerprint: crate::store::identity::fingerprint(&r.old_key),
        })
        .collect())
}

/// The `-long` lines about the rotations a header carries (none when it
/// carries none).
fn rotation_lines(header: &Header) -> String {
    if header.rotations.is_empty() {
        return String::new();
    }
    let name = printable(&header.sender.name);
    match header_rotations(header) {
        Ok(rotations) => {
            let mut out = String::from("Key rotations carried (SPEC.md 4.3):\n");
            for r in rotations {
                out.push_str(&format!(
                    "  \"{name}\" at its epoch {}: new key {} (replaces {})\n",
                    r.epoch, r.new_fingerprint, r.old_fingerprint
                ));
            }
            out
        }
        Err(why) => format!(
            "Key rotations carried: {} that do not hold: {why}\n",
            header.rotations.len()
        ),
    }
}

/// The `-long` lines about a packet's tree digest (SPEC.md §4.1, §4.1.1):
/// its size and root, and which metadata items the sender preserves and
/// the leaves cover (a receiver compares only where it preserves every
/// covered item).
fn digest_lines(digest: &packet_format::TreeDigest) -> String {
    let mut out = format!(
        "Tree digest: {} entries, root {}, {} nodes\n",
        digest.entries,
        hex::encode(digest.root),
        digest.nodes.len()
    );
    match &digest.metadata {
        None => out.push_str("  metadata: none covered (no metadata field: format before 2.7)\n"),
        Some(meta) => {
            let words = |bits: u32| {
                let names = digest_item_names(bits);
                match names.is_empty() {
                    true => "none".to_string(),
                    false => names.join(", "),
                }
            };
            out.push_str(&format!(
                "  metadata covered: {}\n  sender preserves: {}\n",
                words(meta.covered),
                words(meta.preserved)
            ));
        }
    }
    out
}

/// The names of the metadata items `bits` holds ([`packet_format::digest_items`]),
/// in bit order; a bit this version does not know is named by its value.
pub fn digest_item_names(bits: u32) -> Vec<String> {
    use packet_format::digest_items as items;
    let known = [
        (items::OWNER, "owner"),
        (items::GROUP, "group"),
        (items::ACLS, "acls"),
        (items::XATTRS, "xattrs"),
        (items::HARDLINKS, "hardlinks"),
        (items::TIMES, "times"),
        (items::ROOT, "root"),
    ];
    (0..32)
        .map(|shift| 1u32 << shift)
        .filter(|bit| bits & bit != 0)
        .map(|bit| {
            known
                .iter()
                .find(|(b, _)| *b == bit)
                .map(|(_, name)| name.to_string())
                .unwrap_or_else(|| format!("bit {bit}"))
        })
        .collect()
}

/// The headings of a listing whose items are indented below them.
const HEADINGS: &[&str] = &[
    "Packet intended for the following targets:",
    "The following replicas are referenced by this packet:",
    "Sender's epoch row:",
];

/// `listing` without the lines that say nothing: a heading with no item
/// under it (an acknowledgement carries no epoch ranges), and the comment
/// line of a packet written without one.
fn without_empty_lines(listing: &str) -> String {
    let lines: Vec<&str> = listing.lines().collect();
    let mut out = String::with_capacity(listing.len());
    for (i, line) in lines.iter().enumerate() {
        let heading_alone =
            HEADINGS.contains(line) && !lines.get(i + 1).is_some_and(|next| next.starts_with("  "));
        if heading_alone || *line == "Comment supplied at packet creation is: " {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Version of `lspacket -fmt json`'s shape; raised when a field changes
/// meaning or goes (new fields may be added without it).
/// 2: `damaged` became `status` and `problem` (a file that is not a
/// packet, or signed by an unknown key, is not damaged).
pub const JSON_VERSION: u32 = 2;

/// `lspacket -fmt json`: every packet listed, in listing order (an empty
/// list when none was found), and how many there are of each status.
#[derive(Debug, Serialize)]
pub struct PacketList {
    pub version: u32,
    pub packets: Vec<PacketJson>,
    /// Uploads received in part, kept for their senders to resume (listed
    /// with the bays only; left out when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partials: Vec<PartialJson>,
    /// Per `status` (only those that occur): how many files have it.
    pub summary: std::collections::BTreeMap<&'static str, u64>,
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
    /// "intact", "not checked" (intact; outside a replica, no keys to
    /// check the signature against), "encrypted for others", "not a
    /// packet", "unreadable", "damaged", "unsupported format", "unknown
    /// key" or "another family" ([`Verdict::json`]).
    pub status: &'static str,
    /// What is wrong with it, in words (`null`: nothing).
    pub problem: Option<String>,
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
    /// For a packet found in a folder under a name that is not a
    /// packet's (renamed on the way, e.g. `attachment.zip`), which the
    /// imports skip there: the name its writer gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_name: Option<String>,
}

/// Who signed a packet, as far as this replica can tell.
#[derive(Debug, Serialize)]
pub struct SignatureJson {
    /// "verified", "unknown key", "bad", or "not checked" (outside a
    /// replica: no family keys to check it against).
    pub status: &'static str,
    /// The signing key's SHA-256 fingerprint (`null` only when the
    /// header could not be read).
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
    /// The sender's key rotations the header carries (format 2.12, SPEC.md
    /// §4.3), in epoch order; empty when none (or when they do not hold
    /// together: `rotations_error` says why).
    pub rotations: Vec<RotationJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotations_error: Option<String>,
}

/// One key rotation a header carries.
#[derive(Debug, Serialize)]
pub struct RotationJson {
    /// The member that rotated (the sender), id in hex.
    pub member: String,
    /// Its epoch of the rotation: the replaced key is good for its
    /// changes up to it.
    pub epoch: u64,
    /// SHA-256 fingerprints (hex) of the new and the replaced signing key.
    pub new_fingerprint: String,
    pub old_fingerprint: String,
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
    /// What metadata the leaves cover and the sender preserves (format
    /// 2.7, SPEC.md §4.1.1); `null` in older packets (no metadata covered).
    pub metadata: Option<DigestMetadataJson>,
}

/// A tree digest's metadata field: item names ("owner", "group", "acls",
/// "xattrs", "hardlinks", "times", "root" (2.11); an unknown bit as "bit N").
#[derive(Debug, Serialize)]
pub struct DigestMetadataJson {
    pub covered: Vec<String>,
    pub preserved: Vec<String>,
}

/// JSON object for one packet (the bay and order are filled by the caller).
pub fn render_json(exam: &Examination, judged: &Judged, view: Option<&LocalView>) -> PacketJson {
    let signature = exam.signature.as_ref().map(|s| match s {
        SignatureStatus::Verified => SignatureJson {
            status: "verified",
            fingerprint: exam.header.as_ref().map(|h| h.signer_fingerprint()),
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
                        .filter(|_| {
                            local && !is_problem(exam) && judged.verdict != Verdict::RetiredKey
                        })
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
        rotations: header_rotations(header).unwrap_or_default(),
        rotations_error: header_rotations(header).err(),
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
            metadata: d.metadata.map(|m| DigestMetadataJson {
                covered: digest_item_names(m.covered),
                preserved: digest_item_names(m.preserved),
            }),
        }),
    });
    PacketJson {
        path: exam.path.display().to_string(),
        size: exam.size,
        status: judged.verdict.json(),
        problem: judged.why.clone(),
        signature: signature.filter(|_| judged.verdict != Verdict::NotAPacket),
        header: header.filter(|_| judged.verdict != Verdict::NotAPacket),
        storage_class: None,
        bay: None,
        order: None,
        packet_name: None,
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
    /// Per destination whose next hop's `hours` window is shut now: the
    /// hop, its hours and when the window opens (the order waits until
    /// then, and `next_retry` is not before it).
    pub waiting_for_hours: std::collections::BTreeMap<String, WaitJson>,
}

/// A destination waiting for its hop's `hours` window to open.
#[derive(Debug, Serialize)]
pub struct WaitJson {
    pub hop: String,
    pub hours: String,
    pub until: String,
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
        waiting_for_hours: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_empty_lines;

    #[test]
    fn headings_with_nothing_under_them_and_an_empty_comment_are_left_out() {
        let listing = "Packet is: p.zip\n\
            Comment supplied at packet creation is: \n\
            Packet intended for the following targets:\n\
            \x20 beta (00)\n\
            The following replicas are referenced by this packet:\n\
            Sender's epoch row:\n\
            \x20 alpha=5\n\
            Signature: verified\n";
        assert_eq!(
            without_empty_lines(listing),
            "Packet is: p.zip\n\
             Packet intended for the following targets:\n\
             \x20 beta (00)\n\
             Sender's epoch row:\n\
             \x20 alpha=5\n\
             Signature: verified\n"
        );
        let commented = "Comment supplied at packet creation is: weekly\n";
        assert_eq!(without_empty_lines(commented), commented);
    }
}
