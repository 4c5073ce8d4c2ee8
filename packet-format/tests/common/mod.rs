//! Shared fixtures: fixed keys, ids and times so that everything built
//! from them is deterministic.
#![allow(dead_code)]

use std::collections::BTreeMap;

use packet_format::ops::{
    Change, ChunkRef, Extensions, Id, Operation, PathState, Timestamp, VersionVector,
};
use packet_format::{CreationPayload, EpochRange, Member, Named, PacketKind, PacketMeta, Target};
use sha2::{Digest, Sha256};
pub use test_support::public_key;
use test_support::XorShift;

pub const SENDER_SECRET: [u8; 32] = [0x11; 32];
pub const OTHER_SECRET: [u8; 32] = [0x22; 32];
/// 2025-11-21T10:30:00Z
pub const CREATED: Timestamp = Timestamp {
    secs: 1_763_721_000,
    nanos: 0,
};

pub fn sender_id() -> Id {
    Id([0xa1; 16])
}

pub fn target_id() -> Id {
    Id([0xb2; 16])
}

/// The sender's operations `1..=ops` declared in `meta`'s epoch ranges:
/// what a writer must then be given, exactly.
pub fn carrying(mut meta: PacketMeta, ops: u64) -> PacketMeta {
    if ops > 0 {
        meta.epoch_ranges = BTreeMap::from([(
            sender_id(),
            EpochRange {
                first: 1,
                last: ops,
            },
        )]);
    }
    meta
}

/// `meta` with the seal of `ops` (one run of the sender's, from epoch 1),
/// signed with `secret`.
pub fn sealed(mut meta: PacketMeta, secret: &[u8; 32], ops: &[Operation]) -> PacketMeta {
    use packet_format::seals::{chain, Seal, END};
    let encoded: Vec<Vec<u8>> = ops.iter().map(Operation::encode).collect();
    let head = chain(encoded.iter().map(Vec::as_slice), END);
    let last = ops.len() as u64;
    meta.seals = vec![Seal::sign(secret, sender_id(), 1, last, &head)];
    meta
}

/// Metadata of a packet that carries no operations (see [`carrying`]).
pub fn meta(kind: PacketKind) -> PacketMeta {
    let creation = (kind == PacketKind::ReplicaCreation).then(|| CreationPayload {
        new_replica: Named {
            id: target_id(),
            name: "lambik".into(),
        },
        members: vec![Member {
            id: sender_id(),
            name: "boston".into(),
            public_key: public_key(&SENDER_SECRET),
        }],
        estimates: [(sender_id(), [(sender_id(), 3)].into())].into(),
        // Minor 6: the sender scrubbed epochs 1..=5 of origin e1…e1.
        checkpoints: vec![packet_format::seals::Checkpoint::sign(
            &SENDER_SECRET,
            sender_id(),
            Id([0xe1; 16]),
            5,
            [0xe7; 32],
        )],
    });
    PacketMeta {
        kind,
        family: Named {
            id: Id([0xf0; 16]),
            name: "docs".into(),
        },
        sender: Named {
            id: sender_id(),
            name: "boston".into(),
        },
        targets: vec![Target {
            id: target_id(),
            name: "lambik".into(),
            seq: 42,
        }],
        packet_id: Id([0xc3; 16]),
        created: CREATED,
        comment: "nightly sync".into(),
        epoch_ranges: BTreeMap::new(),
        epoch_row: BTreeMap::from([(sender_id(), 1000), (target_id(), 17)]),
        seals: Vec::new(),
        creation,
        incarnation: Some(Id([0xd4; 16])),
        tree_digest: Some(packet_format::TreeDigest {
            patterns: vec!["*.o".into()],
            assumed: [0xd5; 32],
            entries: 2,
            root: [0xd6; 32],
            nodes: vec![packet_format::DigestNode {
                path: b"src".to_vec(),
                digest: [0xd7; 32],
            }],
            metadata: Some(packet_format::DigestMetadata {
                preserved: packet_format::digest_items::ALL,
                covered: packet_format::digest_items::XATTRS
                    | packet_format::digest_items::TIMES
                    | packet_format::digest_items::ROOT,
            }),
            root_parts: Some(packet_format::RootParts {
                mode: [0xd8; 32],
                mtime: [0xd9; 32],
                owner: [0xda; 32],
                acls: [0xdb; 32],
                xattrs: [0xdc; 32],
            }),
        }),
        encryption: None,
        secrets: None,
        rotations: Vec::new(),
    }
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..len).map(|_| (rng.next() >> 24) as u8).collect()
}

/// Compressible bytes: repeated text.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let line = format!("line {seed}: the quick brown fox jumps over the lazy dog\n");
    line.bytes().cycle().take(len).collect()
}

pub fn chunk_id(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn file_op(epoch: u64, path: &str, chunks: &[Vec<u8>]) -> Operation {
    Operation {
        origin: sender_id(),
        epoch,
        recorded: CREATED,
        change: Change::Path {
            path: path.as_bytes().to_vec(),
            version: VersionVector(BTreeMap::from([(sender_id(), epoch)])),
            state: PathState::File {
                mode: 0o644,
                mtime: CREATED,
                size: chunks.iter().map(|c| c.len() as u64).sum(),
                chunks: chunks
                    .iter()
                    .map(|c| ChunkRef {
                        id: chunk_id(c),
                        len: c.len() as u32,
                    })
                    .collect(),
                ext: Extensions::default(),
            },
        },
    }
}
