//! Real, signed packets and throw-away configurations for this crate's
//! unit tests.

use std::path::{Path, PathBuf};

use packet_format::ops::Id;
use packet_format::{Named, PacketKind, PacketMeta, PacketWriter, Target};

use crate::config::{ShippingConfig, StorageClass};
use crate::DEFAULT_STORAGE_CLASS;

pub use test_support::{files_under, public_key};

pub const SENDER_SECRET: [u8; 32] = [7; 32];
pub const STRANGER_SECRET: [u8; 32] = [9; 32];

/// A time written in RFC 3339.
pub fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Writes an empty update packet from "boston" to `target`, signed with
/// `secret`, into `dir`; returns its path.
pub fn packet(dir: &Path, target: &str, seq: u64, secret: &[u8; 32]) -> PathBuf {
    packet_with_id(dir, target, seq, seq as u8, secret)
}

/// [`packet`] carrying `size` bytes of noise (one chunk, from `seed`), for
/// uploads that take a while.
pub fn packet_with_noise(dir: &Path, target: &str, seq: u64, size: usize, seed: u64) -> PathBuf {
    use sha2::Digest;
    let mut state = seed | 1;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    write_packet(dir, target, seq, seq as u8, &SENDER_SECRET, |writer| {
        // Chunks of at most 256 KiB, as the format allows.
        for chunk in data.chunks(256 << 10) {
            let id: [u8; 32] = sha2::Sha256::digest(chunk).into();
            writer.add_chunk(&id, chunk).unwrap();
        }
    })
}

/// [`packet`] with packet id `[id; 16]`: two packets differing only in
/// their id get the same file name.
pub fn packet_with_id(dir: &Path, target: &str, seq: u64, id: u8, secret: &[u8; 32]) -> PathBuf {
    write_packet(dir, target, seq, id, secret, |_| {})
}

fn write_packet(
    dir: &Path,
    target: &str,
    seq: u64,
    id: u8,
    secret: &[u8; 32],
    fill: impl FnOnce(&mut PacketWriter),
) -> PathBuf {
    let meta = PacketMeta {
        kind: PacketKind::Update,
        family: Named {
            id: Id([1; 16]),
            name: "fam".into(),
        },
        sender: Named {
            id: Id([2; 16]),
            name: "boston".into(),
        },
        targets: vec![Target {
            id: Id([3; 16]),
            name: target.into(),
            seq,
        }],
        packet_id: Id([id; 16]),
        created: packet_format::ops::Timestamp::new(1_790_000_000, seq as u32).expect("seq < 10^9"),
        comment: String::new(),
        epoch_ranges: Default::default(),
        epoch_row: Default::default(),
        seals: Vec::new(),
        creation: None,
        incarnation: None,
        tree_digest: None,
        encryption: None,
        secrets: None,
        rotations: Vec::new(),
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut writer = PacketWriter::create(dir, 64 << 20, secret, meta).unwrap();
    fill(&mut writer);
    writer.finish().unwrap().remove(0).path
}

/// A configuration whose default class lives under `root`.
pub fn config(root: &Path) -> ShippingConfig {
    let mut config = ShippingConfig::default();
    config.classes.insert(
        DEFAULT_STORAGE_CLASS.to_string(),
        StorageClass::under(&root.join("bays")),
    );
    config
}
