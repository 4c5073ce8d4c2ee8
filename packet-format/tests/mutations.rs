//! Deterministic mutation test: every single-byte flip, every truncation
//! and a set of extensions of a sample packet must be rejected with an
//! error, never accepted and never a panic.

mod common;

use std::path::Path;

use common::*;
use packet_format::{examine_packet, render_listing, verify_packet};

fn assert_rejected(dir: &Path, bytes: &[u8], what: &str) {
    let path = dir.join("mutant.zip");
    std::fs::write(&path, bytes).unwrap();
    let trusted = [public_key(&SENDER_SECRET)];
    if let Ok(packet) = verify_packet(&path, &trusted) {
        panic!("{what}: mutant accepted: {:?}", packet.header());
    }
    // The listing path must cope with the same damage.
    let exam = examine_packet(&path, &trusted);
    assert!(exam.error.is_some(), "{what}: examine found nothing wrong");
    let _ = render_listing(&exam, true);
}

fn mutate_positions(original: &[u8], positions: impl Iterator<Item = usize>) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = original.to_vec();
    for at in positions {
        for mask in [0x01u8, 0x80, 0xff] {
            bytes[at] ^= mask;
            assert_rejected(dir.path(), &bytes, &format!("flip {mask:#x} at {at}"));
            bytes[at] ^= mask;
        }
    }
}

#[test]
fn every_byte_flip_of_a_small_packet_is_rejected() {
    let original = std::fs::read("tests/vectors/update.zip").unwrap();
    verify_packet(
        Path::new("tests/vectors/update.zip"),
        &[public_key(&SENDER_SECRET)],
    )
    .unwrap();
    mutate_positions(&original, 0..original.len());
}

#[test]
fn every_truncation_and_some_extensions_are_rejected() {
    let original = std::fs::read("tests/vectors/update.zip").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for len in 0..original.len() {
        assert_rejected(dir.path(), &original[..len], &format!("truncated to {len}"));
    }
    for extra in [
        &b"\0"[..],
        b"PK",
        b"PK\x05\x06",
        &[0u8; 22],
        &original[original.len() - 22..],
    ] {
        let mut bytes = original.clone();
        bytes.extend_from_slice(extra);
        assert_rejected(dir.path(), &bytes, &format!("extended by {extra:?}"));
        let mut prefixed = extra.to_vec();
        prefixed.extend_from_slice(&original);
        assert_rejected(dir.path(), &prefixed, &format!("prefixed by {extra:?}"));
    }
}

#[test]
fn sampled_flips_of_a_full_size_part_are_rejected() {
    // A 64 KiB part of a split packet: every byte of the metadata regions
    // (first record headers, and everything after the chunk data), and a
    // sample of the chunk data in between.
    let original = std::fs::read("tests/vectors/multipart_2of3.zip").unwrap();
    let len = original.len();
    let positions = (0..256)
        .chain((256..len - 1024).step_by(997))
        .chain(len - 1024..len);
    mutate_positions(&original, positions);
}
