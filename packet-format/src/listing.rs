//! MultiSite `lspacket`-style text for a packet, damaged ones included.

use std::fmt::Write;

use crate::header::{Header, PacketKind, Target};
use crate::naming::utc_display;
use crate::ops::Id;
use crate::reader::{Examination, SignatureStatus};

/// Renders the listing of one examined packet. `long` adds the sender,
/// epochs, format version, size and signature lines.
pub fn render_listing(exam: &Examination, long: bool) -> String {
    render_listing_with(exam, long, &|_| None)
}

/// Like [`render_listing`], with `target_note` adding a remark after each
/// target (the CLI marks the local replica and whether it can apply the
/// packet now).
pub fn render_listing_with(
    exam: &Examination,
    long: bool,
    target_note: &dyn Fn(&Target) -> Option<String>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Packet is: {}", exam.path.display());
    if let Some(header) = &exam.header {
        render_header(&mut out, header, long, target_note);
        if long {
            if let Some(size) = exam.size {
                let _ = writeln!(out, "Packet size: {size} bytes");
            }
            let _ = writeln!(out, "Signing key: {}", header.signer_fingerprint());
        }
    }
    if let Some(status) = &exam.signature {
        let text = match status {
            SignatureStatus::Verified => "verified".to_string(),
            SignatureStatus::UnknownKey { fingerprint } => format!("unknown key {fingerprint}"),
            SignatureStatus::Bad { .. } => "BAD".to_string(),
        };
        if long || !matches!(status, SignatureStatus::Verified) {
            let _ = writeln!(out, "Signature: {text}");
        }
    }
    if let Some(err) = &exam.error {
        // A file that cannot be read (permissions, I/O) is not damaged.
        // Nor is one that is intact but not for this reader's keys.
        let what = match err.kind {
            crate::ErrorKind::Io { .. } => "Packet cannot be read",
            crate::ErrorKind::NotForThisReplica { .. }
            | crate::ErrorKind::PassphraseNeeded
            | crate::ErrorKind::WrongPassphrase => "Packet cannot be decrypted here",
            _ => "Packet is damaged",
        };
        let _ = writeln!(out, "{what}: {}", err.kind);
    }
    out
}

fn name_of(header: &Header, id: &Id) -> Option<String> {
    if *id == header.sender.id {
        return Some(header.sender.name.clone());
    }
    header
        .targets
        .iter()
        .find(|t| t.id == *id)
        .map(|t| t.name.clone())
}

fn render_header(
    out: &mut String,
    header: &Header,
    long: bool,
    target_note: &dyn Fn(&Target) -> Option<String>,
) {
    let kind = match header.kind {
        PacketKind::Update => "Update".to_string(),
        PacketKind::ReplicaCreation => "Replica Creation".to_string(),
        PacketKind::Unknown(code) => format!("Unknown ({code})"),
    };
    let _ = writeln!(out, "Packet type: {kind}");
    let _ = writeln!(out, "Family: {} ({})", header.family.name, header.family.id);
    let _ = writeln!(
        out,
        "Comment supplied at packet creation is: {}",
        header.comment.escape_debug()
    );
    let _ = writeln!(out, "Packet intended for the following targets:");
    for target in &header.targets {
        let note = target_note(target)
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} ({}){note}",
            target.name.escape_debug(),
            target.id
        );
    }
    match &header.encryption {
        None => {
            let _ = writeln!(out, "Encrypted for: not encrypted");
        }
        Some(encryption) => {
            let mut names: Vec<String> = encryption
                .recipients
                .iter()
                .map(|r| {
                    name_of(header, &r.id)
                        .map(|n| n.escape_debug().to_string())
                        .unwrap_or_else(|| r.id.to_hex())
                })
                .collect();
            if encryption.passphrase {
                names.push("a passphrase".into());
            }
            let _ = writeln!(out, "Encrypted for: {}", names.join(", "));
            if long {
                for recipient in &encryption.recipients {
                    let label = name_of(header, &recipient.id)
                        .map(|n| n.escape_debug().to_string())
                        .unwrap_or_else(|| recipient.id.to_hex());
                    let _ = writeln!(out, "  {label}: encryption key {}", recipient.key);
                }
            }
        }
    }
    let _ = writeln!(out, "Packet fragment: {} of {}", header.part, header.parts);
    match header.targets.as_slice() {
        [only] => {
            let _ = writeln!(out, "The packet sequence number is {}", only.seq);
        }
        targets => {
            for target in targets {
                let _ = writeln!(
                    out,
                    "The packet sequence number for {} is {}",
                    target.name.escape_debug(),
                    target.seq
                );
            }
        }
    }
    if !long {
        return;
    }
    let _ = writeln!(out, "Packet identifier is: {}", header.packet_id);
    let _ = writeln!(
        out,
        "Originating replica is: {} ({})",
        header.sender.name.escape_debug(),
        header.sender.id
    );
    let _ = writeln!(out, "Created: {}", utc_display(header.created.secs));
    let _ = writeln!(out, "The following replicas are referenced by this packet:");
    for (origin, range) in &header.epoch_ranges {
        let label = name_of(header, origin).unwrap_or_else(|| origin.to_hex());
        let _ = writeln!(
            out,
            "  {}  first epoch is {}  last epoch is {}",
            label.escape_debug(),
            range.first,
            range.last
        );
    }
    let _ = writeln!(out, "Sender's epoch row:");
    for (origin, epoch) in &header.epoch_row {
        let label = name_of(header, origin).unwrap_or_else(|| origin.to_hex());
        let _ = writeln!(out, "  {}={}", label.escape_debug(), epoch);
    }
    let _ = writeln!(
        out,
        "The major packet version is {}, the minor packet version is {}",
        header.version.major, header.version.minor
    );
    let _ = writeln!(
        out,
        "Packet contains {} operation records and {} chunk records.",
        header.operation_records, header.chunk_records
    );
}
