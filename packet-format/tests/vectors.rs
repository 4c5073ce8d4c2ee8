//! Each committed vector in `tests/vectors/` (made by
//! `cargo run -p packet-format --example make_vectors`) checked on its own.

mod common;

use std::path::PathBuf;

use common::*;
use packet_format::{
    examine_packet, render_listing, verify_packet, ErrorKind, LogicalPacket, PacketKind,
    SignatureStatus,
};

fn vector(name: &str) -> PathBuf {
    // Relative, so that paths in listings and snapshots do not depend on
    // where the checkout lives (tests run in the crate directory).
    PathBuf::from("tests/vectors").join(name)
}

fn trusted() -> [[u8; 32]; 1] {
    [public_key(&SENDER_SECRET)]
}

fn failure(name: &str) -> ErrorKind {
    let err = verify_packet(&vector(name), &trusted()).expect_err("vector must be rejected");
    assert_eq!(err.path, vector(name), "error names the packet file");
    err.kind
}

#[test]
fn update_vector_verifies_and_reads() {
    let packet = verify_packet(&vector("update.zip"), &trusted()).unwrap();
    let header = packet.header();
    assert_eq!(header.kind, PacketKind::Update);
    assert_eq!((header.part, header.parts), (1, 1));
    assert_eq!(header.targets[0].seq, 42);
    assert_eq!(header.created_ns, CREATED_NS);
    let logical = LogicalPacket::assemble(vec![packet]).unwrap();
    let ops: Vec<_> = logical.operations().collect::<Result<_, _>>().unwrap();
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[0], file_op(1, "docs/file0.txt", &[text(1, 3000)]));
    let chunks: Vec<_> = logical.chunks().collect::<Result<_, _>>().unwrap();
    assert_eq!(chunks.len(), 4);
    assert_eq!(chunks[1].1, noise(2, 700));
}

#[test]
fn creation_vector_verifies() {
    let packet = verify_packet(&vector("creation.zip"), &trusted()).unwrap();
    assert_eq!(packet.header().kind, PacketKind::ReplicaCreation);
    let creation = packet.creation().unwrap();
    assert_eq!(creation.new_replica.name, "lambik");
    assert_eq!(creation.members[0].public_key, public_key(&SENDER_SECRET));
}

#[test]
fn multipart_vector_reassembles() {
    let parts: Vec<_> = (1..=3)
        .map(|k| verify_packet(&vector(&format!("multipart_{k}of3.zip")), &trusted()).unwrap())
        .collect();
    for (index, part) in parts.iter().enumerate() {
        assert_eq!(part.header().part, index as u32 + 1);
        assert_eq!(part.header().parts, 3);
        assert!(part.size() <= packet_format::MIN_PART_SIZE);
    }
    // Parts may be handed over in any order.
    let logical = LogicalPacket::assemble(parts.into_iter().rev().collect()).unwrap();
    let chunks: Vec<_> = logical.chunks().collect::<Result<_, _>>().unwrap();
    let expected = [noise(10, 100_000), text(11, 20_000), noise(12, 60_000)];
    assert_eq!(chunks.len(), 3);
    for ((id, data), want) in chunks.iter().zip(&expected) {
        assert_eq!(data, want);
        assert_eq!(*id, chunk_id(want));
    }
    assert_eq!(logical.operations().count(), 2);
}

#[test]
fn missing_part_is_reported() {
    let parts: Vec<_> = [1, 3]
        .iter()
        .map(|k| verify_packet(&vector(&format!("multipart_{k}of3.zip")), &trusted()).unwrap())
        .collect();
    let err = LogicalPacket::assemble(parts).err().unwrap();
    assert!(
        matches!(err.kind, ErrorKind::IncompleteLogicalPacket(_)),
        "{err}"
    );
}

#[test]
fn bad_signature_vector() {
    assert!(matches!(
        failure("bad_signature.zip"),
        ErrorKind::BadSignature { .. }
    ));
}

#[test]
fn unknown_key_vector() {
    let kind = failure("unknown_key.zip");
    let ErrorKind::UnknownKey { fingerprint } = kind else {
        panic!("{kind}")
    };
    assert_eq!(
        fingerprint,
        packet_format::key_fingerprint(&public_key(&OTHER_SECRET))
    );
    // Trusting the key makes it verify.
    verify_packet(&vector("unknown_key.zip"), &[public_key(&OTHER_SECRET)]).unwrap();
}

#[test]
fn flipped_chunk_vector() {
    let kind = failure("flipped_chunk.zip");
    assert!(
        matches!(&kind, ErrorKind::DigestMismatch { name } if name == "chunks"),
        "{kind}"
    );
}

#[test]
fn truncated_vector() {
    let kind = failure("truncated.zip");
    assert!(matches!(kind, ErrorKind::Truncated(_)), "{kind}");
}

#[test]
fn newer_major_vector() {
    let kind = failure("newer_major.zip");
    assert!(matches!(kind, ErrorKind::NewerFormat { version } if version.major == 2));
    assert!(kind
        .to_string()
        .starts_with("packet format 2.x is newer than this program supports"));
}

#[test]
fn duplicate_entry_vector() {
    let kind = failure("duplicate_entry.zip");
    assert!(
        matches!(&kind, ErrorKind::DuplicateEntry { name } if name == "chunks"),
        "{kind}"
    );
}

#[test]
fn oversized_entry_vector() {
    let kind = failure("oversized_entry.zip");
    assert!(
        matches!(&kind, ErrorKind::OversizedEntry { name, .. } if name == "operations"),
        "{kind}"
    );
}

#[test]
fn trailing_garbage_vector() {
    let kind = failure("trailing_garbage.zip");
    assert!(
        matches!(kind, ErrorKind::TrailingGarbage { bytes: 37 }),
        "{kind}"
    );
}

#[test]
fn listing_of_an_update_vector() {
    let exam = examine_packet(&vector("update.zip"), &trusted());
    insta::assert_snapshot!("listing_update_long", render_listing(&exam, true));
    insta::assert_snapshot!("listing_update_short", render_listing(&exam, false));
}

#[test]
fn listing_of_damaged_and_untrusted_packets() {
    let exam = examine_packet(&vector("flipped_chunk.zip"), &trusted());
    assert_eq!(exam.signature, Some(SignatureStatus::Verified));
    let text = render_listing(&exam, false);
    assert!(
        text.contains("Packet is damaged: SHA-256 of entry \"chunks\" does not match"),
        "{text}"
    );

    let exam = examine_packet(&vector("bad_signature.zip"), &trusted());
    assert!(matches!(exam.signature, Some(SignatureStatus::Bad { .. })));
    assert!(render_listing(&exam, true).contains("Signature: BAD"));

    let exam = examine_packet(&vector("unknown_key.zip"), &trusted());
    assert!(exam.error.is_none());
    assert!(render_listing(&exam, true).contains("Signature: unknown key "));

    let exam = examine_packet(&vector("truncated.zip"), &trusted());
    assert!(exam.header.is_none());
    insta::assert_snapshot!("listing_truncated", render_listing(&exam, true));
}

#[test]
fn info_zip_accepts_the_valid_vectors() {
    // Standard tools must be able to list and test a packet. Skipped where
    // Info-ZIP unzip is not installed.
    if std::process::Command::new("unzip")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("unzip not installed; skipping");
        return;
    }
    let valid = [
        "update.zip",
        "creation.zip",
        "multipart_1of3.zip",
        "multipart_2of3.zip",
        "multipart_3of3.zip",
    ];
    for name in valid {
        for flag in ["-l", "-tq"] {
            let output = std::process::Command::new("unzip")
                .arg(flag)
                .arg(vector(name))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "unzip {flag} {name}: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
    }
}
