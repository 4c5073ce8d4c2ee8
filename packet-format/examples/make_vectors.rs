//! Regenerates the committed test vectors in `tests/vectors/`, each with its
//! sidecar `NAME.expect` (format: `tests/vectors/README.md`):
//!
//! ```text
//! cargo run -p packet-format --example make_vectors
//! ```
//!
//! Keys, ids, times and data are fixed, so the output is byte-identical on
//! every run (given the same zstd crate version). Tests only read the
//! committed files; a change in these bytes is a format change. The
//! sidecars say what this program meant each vector to be, worked out from
//! its inputs, not read back from the vectors.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use packet_format::ops::{
    change_kind, Change, ChunkRef, Extensions, Operation, PathState, Timestamp, VersionVector,
};
use packet_format::testing::{encode_header_raw, sign_header, write_raw_zip};
use packet_format::{
    key_fingerprint, verify_packet, Encoding, FormatVersion, Header, PacketKind, PacketWriter,
    ENTRY_CHUNKS, ENTRY_HEADER, ENTRY_OPERATIONS, ENTRY_SIGNATURE, MIN_PART_SIZE,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The vector recipient's age identity (secret bytes all `0x33`): the
/// key `encrypted.zip` is decrypted with (SPEC.md §14).
pub const VECTOR_IDENTITY: &str =
    "AGE-SECRET-KEY-1XVENXVENXVENXVENXVENXVENXVENXVENXVENXVENXVENXVENXVES5R36HA";

fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        // `legacy_*` vectors were written by older minors and are kept as
        // they were: readers must still read them.
        let legacy = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("legacy_"));
        if !legacy
            && path
                .extension()
                .is_some_and(|e| e == "zip" || e == "expect")
        {
            std::fs::remove_file(path).unwrap();
        }
    }

    // Valid packets.
    let update = write_packet(
        &out,
        "update",
        PacketKind::Update,
        1 << 20,
        &SENDER_SECRET,
        small_files(),
    );
    write_packet(
        &out,
        "creation",
        PacketKind::ReplicaCreation,
        1 << 20,
        &SENDER_SECRET,
        small_files(),
    );
    let multi = write_packet(
        &out,
        "multipart",
        PacketKind::Update,
        MIN_PART_SIZE,
        &SENDER_SECRET,
        spanning_files(),
    );
    assert_eq!(multi.len(), 3, "multipart vector should have three parts");
    write_packet(
        &out,
        "unknown_key",
        PacketKind::Update,
        1 << 20,
        &OTHER_SECRET,
        small_files(),
    );

    write_encrypted(&out, &SENDER_SECRET, small_files());

    let valid = &update[0];
    let entries = read_entries(valid);
    let header = verify_packet(valid, &[public_key(&SENDER_SECRET)])
        .unwrap()
        .header()
        .clone();

    // Signed by the key the header names? No: by another one.
    let header_bytes = encode_header_raw(&header);
    let forged = sign_header(&OTHER_SECRET, &header_bytes);
    write_with(
        &out.join("bad_signature.zip"),
        &entries,
        &header_bytes,
        &forged,
    );

    // One byte of chunk data flipped after signing (zip CRC recomputed, so
    // only the header's SHA-256 pin can catch it).
    let mut flipped = entries.clone();
    let chunks = &mut flipped
        .iter_mut()
        .find(|(n, _)| n == ENTRY_CHUNKS)
        .unwrap()
        .1;
    let middle = chunks.len() / 2;
    chunks[middle] ^= 0x40;
    write_with(
        &out.join("flipped_chunk.zip"),
        &flipped,
        &header_bytes,
        &sign_header(&SENDER_SECRET, &header_bytes),
    );

    // Truncated in the middle.
    let bytes = std::fs::read(valid).unwrap();
    std::fs::write(out.join("truncated.zip"), &bytes[..bytes.len() / 2]).unwrap();

    // Trailing garbage after a valid packet.
    let mut garbage = bytes.clone();
    let appended = b"trailing garbage appended in transit\n";
    garbage.extend_from_slice(appended);
    std::fs::write(out.join("trailing_garbage.zip"), garbage).unwrap();

    // A correctly signed packet from the past: format 1 kept times in
    // nanoseconds and had no kind envelopes.
    let mut past = header.clone();
    past.version = FormatVersion { major: 1, minor: 0 };
    let past_bytes = encode_header_raw(&past);
    write_with(
        &out.join("older_major.zip"),
        &entries,
        &past_bytes,
        &sign_header(&SENDER_SECRET, &past_bytes),
    );

    // A correctly signed packet from the future.
    let mut future = header.clone();
    future.version = FormatVersion { major: 3, minor: 0 };
    let future_bytes = encode_header_raw(&future);
    write_with(
        &out.join("newer_major.zip"),
        &entries,
        &future_bytes,
        &sign_header(&SENDER_SECRET, &future_bytes),
    );

    // Format 2.6 knew no chunk groups: a validly signed 2.6 header over
    // update.zip's entries, whose chunks travel as a group (codec 3).
    let mut before_groups = header.clone();
    before_groups.version = FormatVersion { major: 2, minor: 6 };
    let before_groups_bytes = encode_header_raw(&before_groups);
    write_with(
        &out.join("group_in_2_6.zip"),
        &entries,
        &before_groups_bytes,
        &sign_header(&SENDER_SECRET, &before_groups_bytes),
    );

    // Two entries named "chunks": write a placeholder name of the same
    // length, then patch it in both the local and central headers.
    let dup_path = out.join("duplicate_entry.zip");
    let mut dup_entries: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    dup_entries.insert(1, ("chunkx", b"extra"));
    let sig = sign_header(&SENDER_SECRET, &header_bytes);
    dup_entries.push((ENTRY_HEADER, &header_bytes));
    dup_entries.push((ENTRY_SIGNATURE, &sig));
    write_raw_zip(&dup_path, &dup_entries).unwrap();
    let mut dup = std::fs::read(&dup_path).unwrap();
    let mut patched = 0;
    for at in 0..dup.len() - 6 {
        if &dup[at..at + 6] == b"chunkx" {
            dup[at..at + 6].copy_from_slice(b"chunks");
            patched += 1;
        }
    }
    assert_eq!(patched, 2);
    std::fs::write(&dup_path, dup).unwrap();

    // Operations entry that decompresses to more than the header declares
    // (a validly signed zip bomb): real records, then 4 MiB of zeros.
    let raw_ops = decoded_operations(&header, &entries);
    let mut bomb_content = raw_ops.clone();
    bomb_content.extend(std::iter::repeat_n(0u8, 4 << 20));
    let bomb = zstd::bulk::compress(&bomb_content, 19).unwrap();
    let mut bomb_header = header.clone();
    let pin = bomb_header
        .entries
        .iter_mut()
        .find(|e| e.name == ENTRY_OPERATIONS)
        .unwrap();
    pin.encoding = Encoding::Zstd;
    pin.stored_size = bomb.len() as u64;
    pin.raw_size = raw_ops.len() as u64;
    pin.sha256 = Sha256::digest(&bomb).into();
    let bomb_bytes = encode_header_raw(&bomb_header);
    let mut bomb_entries = entries.clone();
    bomb_entries
        .iter_mut()
        .find(|(n, _)| n == ENTRY_OPERATIONS)
        .unwrap()
        .1 = bomb;
    write_with(
        &out.join("oversized_entry.zip"),
        &bomb_entries,
        &bomb_bytes,
        &sign_header(&SENDER_SECRET, &bomb_bytes),
    );

    write_states_packet(&out);
    write_delta_packet(&out);
    // Validly signed, but the operations repeat epoch 2 and never reach
    // the declared 3: a duplicate a reader must refuse, not deduplicate.
    let mut dup_ops = Vec::new();
    for (epoch, (index, chunks)) in [1u64, 2, 2]
        .into_iter()
        .zip(small_files().iter().enumerate())
    {
        let op = file_op(epoch, &format!("docs/file{index}.txt"), chunks);
        let bytes = op.encode();
        dup_ops.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        dup_ops.extend_from_slice(&0u32.to_le_bytes());
        dup_ops.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        dup_ops.extend_from_slice(&bytes);
    }
    let mut dup_header = header.clone();
    let pin = dup_header
        .entries
        .iter_mut()
        .find(|e| e.name == ENTRY_OPERATIONS)
        .unwrap();
    pin.encoding = Encoding::Plain;
    pin.stored_size = dup_ops.len() as u64;
    pin.raw_size = dup_ops.len() as u64;
    pin.sha256 = Sha256::digest(&dup_ops).into();
    let dup_header_bytes = encode_header_raw(&dup_header);
    let mut dup_op_entries = entries.clone();
    dup_op_entries
        .iter_mut()
        .find(|(n, _)| n == ENTRY_OPERATIONS)
        .unwrap()
        .1 = dup_ops;
    write_with(
        &out.join("epoch_duplicate.zip"),
        &dup_op_entries,
        &dup_header_bytes,
        &sign_header(&SENDER_SECRET, &dup_header_bytes),
    );

    write_sidecars(&out, appended.len());

    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        println!("{}", name.to_string_lossy());
    }
}

/// Small files: some compressible, some not.
fn small_files() -> Vec<Vec<Vec<u8>>> {
    vec![
        vec![text(1, 3000)],
        vec![noise(2, 700), text(3, 900)],
        vec![noise(4, 64)],
    ]
}

/// Enough incompressible data to span three or more 64 KiB parts.
fn spanning_files() -> Vec<Vec<Vec<u8>>> {
    vec![
        vec![noise(10, 100_000), text(11, 20_000)],
        vec![noise(12, 60_000)],
    ]
}

fn write_packet(
    out: &Path,
    stem: &str,
    kind: PacketKind,
    max_size: u64,
    secret: &[u8; 32],
    files: Vec<Vec<Vec<u8>>>,
) -> Vec<PathBuf> {
    let dir = tempfile::tempdir().unwrap();
    let ops: Vec<Operation> = files
        .iter()
        .enumerate()
        .map(|(index, chunks)| file_op(index as u64 + 1, &format!("docs/file{index}.txt"), chunks))
        .collect();
    let meta = sealed(carrying(meta(kind), ops.len() as u64), secret, &ops);
    let mut writer = PacketWriter::create(dir.path(), max_size, secret, meta).unwrap();
    for (chunks, op) in files.iter().zip(&ops) {
        for chunk in chunks {
            writer.add_chunk(&chunk_id(chunk), chunk).unwrap();
        }
        writer.add_operation(op).unwrap();
    }
    let parts = writer.finish().unwrap();
    parts
        .iter()
        .map(|part| {
            let name = if part.parts > 1 {
                format!("{stem}_{}of{}.zip", part.part, part.parts)
            } else {
                format!("{stem}.zip")
            };
            let path = out.join(name);
            std::fs::copy(&part.path, &path).unwrap();
            path
        })
        .collect()
}

/// `encrypted.zip`: the update vector's content, encrypted (SPEC.md §4.2)
/// to the recipient of [`VECTOR_IDENTITY`].
fn write_encrypted(out: &Path, secret: &[u8; 32], files: Vec<Vec<Vec<u8>>>) {
    let dir = tempfile::tempdir().unwrap();
    let ops: Vec<Operation> = files
        .iter()
        .enumerate()
        .map(|(index, chunks)| file_op(index as u64 + 1, &format!("docs/file{index}.txt"), chunks))
        .collect();
    let identity: packet_format::age::x25519::Identity = VECTOR_IDENTITY.parse().unwrap();
    let mut meta = sealed(
        carrying(meta(PacketKind::Update), ops.len() as u64),
        secret,
        &ops,
    );
    meta.encryption = Some(packet_format::EncryptTo {
        recipients: vec![packet_format::EncryptionRecipient {
            id: meta.targets[0].id,
            key: identity.to_public().to_string(),
        }],
        passphrase: None,
    });
    let mut writer = PacketWriter::create(dir.path(), 1 << 20, secret, meta).unwrap();
    for (chunks, op) in files.iter().zip(&ops) {
        for chunk in chunks {
            writer.add_chunk(&chunk_id(chunk), chunk).unwrap();
        }
        writer.add_operation(op).unwrap();
    }
    let parts = writer.finish().unwrap();
    std::fs::copy(&parts[0].path, out.join("encrypted.zip")).unwrap();
}

/// The data entries (all but header and signature) of a packet, in order.
fn read_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).unwrap();
        let name = file.name().unwrap().to_string();
        if name == ENTRY_HEADER || name == ENTRY_SIGNATURE {
            continue;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        entries.push((name, bytes));
    }
    entries
}

fn decoded_operations(header: &Header, entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let stored = &entries
        .iter()
        .find(|(n, _)| n == ENTRY_OPERATIONS)
        .unwrap()
        .1;
    match header.entry(ENTRY_OPERATIONS).unwrap().encoding {
        Encoding::Zstd => zstd::decode_all(stored.as_slice()).unwrap(),
        _ => stored.clone(),
    }
}

fn write_with(path: &Path, entries: &[(String, Vec<u8>)], header: &[u8], signature: &[u8; 64]) {
    let mut all: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    all.push((ENTRY_HEADER, header));
    all.push((ENTRY_SIGNATURE, signature));
    write_raw_zip(path, &all).unwrap();
}

/// What each vector is meant to be, in the sidecar format of
/// `tests/vectors/README.md`.
fn write_sidecars(out: &Path, garbage_len: usize) {
    let sender = hex::encode(public_key(&SENDER_SECRET));
    let other = hex::encode(public_key(&OTHER_SECRET));
    let sender_fp = key_fingerprint(&public_key(&SENDER_SECRET));
    let other_fp = key_fingerprint(&public_key(&OTHER_SECRET));
    let trust = format!("trust: {sender}");

    let valid = |comment: &str, header: Vec<String>, files: &[Vec<Vec<u8>>]| {
        let mut lines = vec![
            format!("# {comment}"),
            "expect: ok".to_string(),
            trust.clone(),
            format!("signer: {sender}"),
        ];
        lines.extend(header);
        lines.extend(content(files));
        lines.extend([
            "listing-signature: verified".to_string(),
            "listing-error: none".to_string(),
            "listing-header: present".to_string(),
            "unzip: ok".to_string(),
        ]);
        lines
    };
    let failing = |comment: &str, expect: String| {
        vec![
            format!("# {comment}"),
            format!("expect: {expect}"),
            trust.clone(),
        ]
    };
    let mut sidecars: Vec<(String, Vec<String>)> = Vec::new();

    let update = valid(
        "A valid update packet.",
        vec![
            "kind: update".into(),
            "part: 1/1".into(),
            format!("created: {}.{:09}", CREATED.secs, CREATED.nanos),
            "target: 0 seq=42 name=lambik".into(),
        ],
        &small_files(),
    );
    sidecars.push(("update".into(), update));

    let mut encrypted = valid(
        "A valid update packet, its entries encrypted to the vector identity.",
        vec![
            "kind: update".into(),
            "part: 1/1".into(),
            "target: 0 seq=42 name=lambik".into(),
        ],
        &small_files(),
    );
    encrypted.insert(2, format!("identity: {VECTOR_IDENTITY}"));
    sidecars.push(("encrypted".into(), encrypted));

    let creation = valid(
        "A valid replica-creation packet.",
        vec![
            "kind: creation".into(),
            "part: 1/1".into(),
            "new-replica: lambik".into(),
            format!("member: 0 name=boston key={sender}"),
        ],
        &small_files(),
    );
    sidecars.push(("creation".into(), creation));

    for k in 1..=3 {
        let part = valid(
            "A valid update split at the 64 KiB minimum, a chunk spanning parts.",
            vec![
                "kind: update".into(),
                format!("part: {k}/3"),
                "packet: multipart".into(),
                format!("size-at-most: {MIN_PART_SIZE}"),
            ],
            &spanning_files(),
        );
        sidecars.push((format!("multipart_{k}of3"), part));
    }

    let mut unknown = failing(
        "Valid, but signed by the other key, which is not trusted.",
        format!("error UnknownKey fingerprint={other_fp}"),
    );
    unknown.extend([
        format!("signer: {other}"),
        "listing-signature: unknown-key".into(),
        "listing-error: none".into(),
        format!("listing-long: Signature: unknown key {other_fp}"),
        "unzip: ok".into(),
    ]);
    sidecars.push(("unknown_key".into(), unknown));

    let mut bad = failing(
        "Header signed by a key other than the one it names.",
        format!("error BadSignature fingerprint={sender_fp}"),
    );
    bad.extend([
        "listing-signature: bad".into(),
        "listing-long: Signature: BAD".into(),
    ]);
    sidecars.push(("bad_signature".into(), bad));

    let mut flipped = failing(
        "One chunk byte flipped after signing, zip CRC-32 fixed up.",
        "error DigestMismatch name=chunks".into(),
    );
    flipped.extend([
        "listing-signature: verified".into(),
        "listing-short: Packet is damaged: SHA-256 of entry \"chunks\" does not match".into(),
    ]);
    sidecars.push(("flipped_chunk".into(), flipped));

    let mut truncated = failing("The first half of update.zip.", "error Truncated".into());
    truncated.push("listing-header: none".into());
    sidecars.push(("truncated".into(), truncated));

    let mut newer = failing(
        "A validly signed header claiming format 3.0.",
        "error NewerFormat major=3".into(),
    );
    newer.push("message: packet format 3.x is newer than this program supports".into());
    sidecars.push(("newer_major".into(), newer));

    let mut older = failing(
        "A validly signed header claiming format 1.0.",
        "error OlderFormat major=1".into(),
    );
    older.push("message: packet format 1.0 is older than this program reads (2.x)".into());
    sidecars.push(("older_major".into(), older));

    let mut group_in_2_6 = failing(
        "update.zip's entries under a validly signed 2.6 header: a chunk group (codec 3) is refused before 2.8.",
        "error MalformedRecord".into(),
    );
    group_in_2_6.push(
        "message: entry \"chunks\": malformed record: unknown codec 3 (chunk groups need format 2.8 or later)"
            .into(),
    );
    sidecars.push(("group_in_2_6".into(), group_in_2_6));

    sidecars.push(("states".into(), states_sidecar(&trust, &sender)));
    sidecars.push(("delta".into(), delta_sidecar(&trust, &sender)));

    sidecars.push((
        "epoch_duplicate".into(),
        vec![
            "# Validly signed; the operations carry epochs 1, 2, 2 of a declared 1..=3.".into(),
            "expect: ok".into(),
            trust.clone(),
            "read-error: EpochRanges".into(),
            "listing-signature: verified".into(),
            "unzip: ok".into(),
        ],
    ));

    sidecars.push((
        "duplicate_entry".into(),
        failing(
            "Two entries named chunks.",
            "error DuplicateEntry name=chunks".into(),
        ),
    ));
    sidecars.push((
        "oversized_entry".into(),
        failing(
            "Validly signed; operations decodes to 4 MiB more than declared.",
            "error OversizedEntry name=operations".into(),
        ),
    ));
    sidecars.push((
        "trailing_garbage".into(),
        failing(
            "update.zip with bytes appended.",
            format!("error TrailingGarbage bytes={garbage_len}"),
        ),
    ));

    for (stem, lines) in sidecars {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(out.join(format!("{stem}.expect")), text).unwrap();
    }
}

/// Every path-state kind, time stamps far outside an `i64` of nanoseconds
/// (before 1677, before 1970 with nanoseconds, after 2262), directory and
/// symlink times, metadata extensions (one ignorable, one critical), an
/// operation of an informational kind and one of a state kind this version
/// does not know: what `states.zip` carries, in order.
fn states_ops() -> (Vec<u8>, Vec<Operation>) {
    let data = text(20, 500);
    let chunk = ChunkRef {
        id: chunk_id(&data),
        len: data.len() as u32,
    };
    let at = |secs, nanos| Timestamp::new(secs, nanos).unwrap();
    let file = |mtime| PathState::File {
        mode: 0o640,
        mtime,
        size: data.len() as u64,
        chunks: vec![chunk],
        ext: Extensions::default(),
    };
    let mut ext = Extensions::default();
    ext.insert(2, b"ignorable".to_vec());
    ext.insert(1001, b"critical".to_vec());
    let changes = vec![
        ("far/future.txt", file(at(13_569_465_600, 123_456_789))), // 2400-01-01
        ("far/past.txt", file(at(-11_676_096_000, 0))),            // 1600-01-01
        ("far/before-1970.txt", file(at(-1, 999_999_999))),
        (
            "far",
            PathState::Directory {
                mode: 0o755,
                mtime: Some(at(CREATED.secs, 5)),
                ext,
            },
        ),
        (
            "far/link",
            PathState::Symlink {
                target: b"future.txt".to_vec(),
                mtime: None,
                ext: Extensions::default(),
            },
        ),
        ("far/gone.txt", PathState::Deleted),
        (
            "far/fifo",
            PathState::Unknown {
                kind: 77,
                body: vec![0x01, 0xa4],
            },
        ),
    ];
    let mut ops: Vec<Operation> = changes
        .into_iter()
        .enumerate()
        .map(|(index, (path, state))| Operation {
            origin: sender_id(),
            epoch: index as u64 + 1,
            recorded: CREATED,
            change: Change::Path {
                path: path.as_bytes().to_vec(),
                version: VersionVector(BTreeMap::from([(sender_id(), index as u64 + 1)])),
                state,
            },
        })
        .collect();
    ops.push(Operation {
        origin: sender_id(),
        epoch: ops.len() as u64 + 1,
        recorded: CREATED,
        change: Change::Unknown {
            kind: change_kind::INFORMATIONAL + 1,
            body: b"a tree digest, say".to_vec(),
        },
    });
    ops.push(Operation {
        origin: sender_id(),
        epoch: ops.len() as u64 + 1,
        recorded: CREATED,
        change: Change::RemoveMember {
            replica: packet_format::ops::Id([0x77; 16]),
            name: "gamma".into(),
        },
    });
    // Format 2.3: special files, and the system metadata keys (SPEC.md
    // §6.4): owner root (0) and group 4343 without a name, one extended
    // attribute, an access ACL, a hard-link leader.
    let mut system = Extensions::default();
    system.insert(
        2,
        vec![1, 0, 1, 4, b'r', b'o', b'o', b't', 1, 0xf7, 0x21, 0],
    );
    system.insert(
        4,
        vec![
            1, 8, b'u', b's', b'e', b'r', b'.', b'k', b'e', b'y', 1, b'v',
        ],
    );
    // user::rw- (tag 1, perm 6), user 4242 r-- unnamed, group::r--,
    // mask::r--, other::---.
    system.insert(
        6,
        vec![
            5, 1, 6, 0, 2, 4, 1, 0x92, 0x21, 0, 4, 4, 0, 16, 4, 0, 32, 0, 0,
        ],
    );
    system.insert(10, vec![8, b'f', b'a', b'r', b'/', b'p', b'a', b's', b't']);
    for (path, kind, major, minor) in [("far/fifo-2", 1, 0, 0), ("far/null", 3, 1, 3)] {
        ops.push(Operation {
            origin: sender_id(),
            epoch: ops.len() as u64 + 1,
            recorded: CREATED,
            change: Change::Path {
                path: path.as_bytes().to_vec(),
                version: VersionVector(BTreeMap::from([(sender_id(), ops.len() as u64 + 1)])),
                state: PathState::Special {
                    kind,
                    mode: 0o620,
                    major,
                    minor,
                    mtime: at(-86_400, 7),
                    ext: system.clone(),
                },
            },
        });
    }
    // Format 2.10: the replica root's own metadata, under the empty path
    // (SPEC.md §6.2.1): a directory, setgid, owned by root and group 4343.
    let mut root_ext = Extensions::default();
    root_ext.insert(
        2,
        vec![1, 0, 1, 4, b'r', b'o', b'o', b't', 1, 0xf7, 0x21, 0],
    );
    ops.push(Operation {
        origin: sender_id(),
        epoch: ops.len() as u64 + 1,
        recorded: CREATED,
        change: Change::Path {
            path: Vec::new(),
            version: VersionVector(BTreeMap::from([(sender_id(), ops.len() as u64 + 1)])),
            state: PathState::Directory {
                mode: 0o2775,
                mtime: Some(at(1_700_000_000, 5)),
                ext: root_ext,
            },
        },
    });
    // Format 2.9: the sender replaces its keys (SPEC.md §7.1), the other
    // vector key becoming its signing key.
    ops.push(Operation {
        origin: sender_id(),
        epoch: ops.len() as u64 + 1,
        recorded: CREATED,
        change: Change::RekeyMember {
            replica: sender_id(),
            old_key: public_key(&SENDER_SECRET),
            new_key: public_key(&OTHER_SECRET),
            encryption_key: vector_recipient(),
        },
    });
    (data, ops)
}

/// The age recipient of the vector identity.
fn vector_recipient() -> String {
    VECTOR_IDENTITY
        .parse::<packet_format::age::x25519::Identity>()
        .unwrap()
        .to_public()
        .to_string()
}

fn write_states_packet(out: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let (data, ops) = states_ops();
    let mut writer = PacketWriter::create(
        dir.path(),
        1 << 20,
        &SENDER_SECRET,
        sealed(
            carrying(meta(PacketKind::Update), ops.len() as u64),
            &SENDER_SECRET,
            &ops,
        ),
    )
    .unwrap();
    writer.add_chunk(&chunk_id(&data), &data).unwrap();
    for op in &ops {
        writer.add_operation(op).unwrap();
    }
    let parts = writer.finish().unwrap();
    std::fs::copy(&parts[0].path, out.join("states.zip")).unwrap();
}

fn states_sidecar(trust: &str, sender: &str) -> Vec<String> {
    let (data, ops) = states_ops();
    let mut lines = vec![
        "# Every state kind, far time stamps, extensions, unknown kinds.".to_string(),
        "expect: ok".into(),
        trust.to_string(),
        format!("signer: {sender}"),
        "kind: update".into(),
        format!("operations: {}", ops.len()),
        "seals: 1".into(),
        format!("seal: 0 first=1 last={} tail=none", ops.len()),
    ];
    let expected = [
        ("file", "13569465600.123456789", "none"),
        ("file", "-11676096000.000000000", "none"),
        ("file", "-1.999999999", "none"),
        ("directory", "1763721000.000000005", "2,1001"),
        ("symlink", "none", "none"),
        ("deleted", "none", "none"),
        ("unknown:77", "none", "none"),
        ("none", "none", "none"),
        ("none", "none", "none"),
        ("special:1", "-86400.000000007", "2,4,6,10"),
        ("special:3", "-86400.000000007", "2,4,6,10"),
        ("directory", "1700000000.000000005", "2"),
        ("none", "none", "none"),
    ];
    for (index, (op, (state, mtime, ext))) in ops.iter().zip(expected).enumerate() {
        let kind = match &op.change {
            Change::Unknown { kind, .. } => *kind,
            Change::RemoveMember { .. } => change_kind::REMOVE_MEMBER,
            Change::RekeyMember { .. } => change_kind::REKEY_MEMBER,
            _ => change_kind::PATH,
        };
        let path = match op.change.path_change() {
            Some(change) => format!(" path={}", String::from_utf8_lossy(change.path)),
            None => String::new(),
        };
        lines.push(format!(
            "operation: {index} epoch={} kind={kind}{path} state={state} mtime={mtime} ext={ext} sha256={}",
            op.epoch,
            hex::encode(Sha256::digest(op.encode()))
        ));
    }
    lines.extend([
        "chunks: 1".to_string(),
        format!(
            "chunk: 0 len={} sha256={}",
            data.len(),
            hex::encode(chunk_id(&data))
        ),
        "listing-signature: verified".into(),
        "listing-error: none".into(),
        "listing-header: present".into(),
        "unzip: ok".into(),
    ]);
    lines
}

/// What `delta.zip` is made of: the chunk the target holds (`base`), the
/// chunk that replaces it (`edited`, sent as a recipe over `base`), the
/// other chunks the target holds, the full operations as the origin
/// logged and sealed them, and those the packet carries (operation 2
/// relative to 1, operation 3, a change of mode only, relative to 2).
struct Delta {
    base: Vec<u8>,
    edited: Vec<u8>,
    recipe: packet_format::delta::Recipe,
    full: Vec<Operation>,
    carried: Vec<Operation>,
}

fn delta_ops() -> Delta {
    use packet_format::delta::{OperationRef, Recipe, RelativeFile, Step};
    let base = text(30, 600);
    let mut edited = base.clone();
    edited[200..210].copy_from_slice(b"0123456789");
    let (x, y, z) = (text(31, 100), text(32, 100), vec![0u8; 64]);
    let first = file_op(1, "disk.img", &[base.clone(), x.clone(), y.clone()]);
    let second = file_op(
        2,
        "disk.img",
        &[edited.clone(), x, y, z.clone(), z.clone(), z],
    );
    let mut third = file_op(3, "disk.img", &[]);
    let (
        Change::Path {
            state: second_state,
            ..
        },
        Change::Path {
            state: third_state, ..
        },
    ) = (&second.change, &mut third.change)
    else {
        unreachable!()
    };
    *third_state = match second_state.clone() {
        PathState::File {
            mtime,
            size,
            chunks,
            ext,
            ..
        } => PathState::File {
            mode: 0o600,
            mtime,
            size,
            chunks,
            ext,
        },
        _ => unreachable!(),
    };
    let full = vec![first, second, third];
    let chunks_of = |op: &Operation| match op.change.path_change().map(|c| c.state) {
        Some(PathState::File { chunks, .. }) => chunks.clone(),
        _ => unreachable!(),
    };
    let relative = |op: &Operation, base: &Operation| {
        let PathState::File {
            mode, mtime, ext, ..
        } = op.change.path_change().unwrap().state.clone()
        else {
            unreachable!()
        };
        let state = RelativeFile {
            base: OperationRef {
                origin: base.origin,
                epoch: base.epoch,
            },
            mode,
            mtime,
            runs: RelativeFile::runs_between(&chunks_of(base), &chunks_of(op)),
            ext,
        }
        .to_state();
        let mut out = op.clone();
        if let Change::Path { state: s, .. } = &mut out.change {
            *s = state;
        }
        out
    };
    let carried = vec![
        full[0].clone(),
        relative(&full[1], &full[0]),
        relative(&full[2], &full[1]),
    ];
    let recipe = Recipe::new(
        vec![ChunkRef {
            id: chunk_id(&base),
            len: base.len() as u32,
        }],
        vec![
            Step::Copy {
                base: 0,
                offset: 0,
                len: 200,
            },
            Step::Literal { len: 10 },
            Step::Copy {
                base: 0,
                offset: 210,
                len: 390,
            },
        ],
        b"0123456789".to_vec(),
    );
    Delta {
        base,
        edited,
        recipe,
        full,
        carried,
    }
}

fn write_delta_packet(out: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let delta = delta_ops();
    let mut writer = PacketWriter::create(
        dir.path(),
        1 << 20,
        &SENDER_SECRET,
        sealed(
            carrying(meta(PacketKind::Update), delta.full.len() as u64),
            &SENDER_SECRET,
            &delta.full,
        ),
    )
    .unwrap();
    assert!(writer
        .add_chunk_recipe(
            &chunk_id(&delta.edited),
            delta.edited.len() as u32,
            &delta.recipe
        )
        .unwrap());
    for op in &delta.carried {
        writer.add_operation(op).unwrap();
    }
    let parts = writer.finish().unwrap();
    std::fs::copy(&parts[0].path, out.join("delta.zip")).unwrap();
}

fn delta_sidecar(trust: &str, sender: &str) -> Vec<String> {
    let delta = delta_ops();
    let mut lines = vec![
        "# A file state relative to another (kind 5) and a chunk as a recipe (codec 2)."
            .to_string(),
        "expect: ok".into(),
        trust.to_string(),
        format!("signer: {sender}"),
        "kind: update".into(),
        format!("operations: {}", delta.carried.len()),
        "seals: 1".into(),
        format!("seal: 0 first=1 last={} tail=none", delta.full.len()),
        format!("base: {}", hex::encode(&delta.base)),
    ];
    let states = ["file", "file-relative", "file-relative"];
    for (index, (op, state)) in delta.carried.iter().zip(states).enumerate() {
        lines.push(format!(
            "operation: {index} epoch={} path=disk.img state={state} sha256={}",
            op.epoch,
            hex::encode(Sha256::digest(op.encode()))
        ));
    }
    for (index, op) in delta.full.iter().enumerate() {
        lines.push(format!(
            "expanded: {index} sha256={}",
            hex::encode(Sha256::digest(op.encode()))
        ));
    }
    lines.extend([
        "chunks: 1".to_string(),
        format!(
            "chunk: 0 len={} sha256={}",
            delta.edited.len(),
            hex::encode(chunk_id(&delta.edited))
        ),
        "listing-signature: verified".into(),
        "listing-error: none".into(),
        "listing-header: present".into(),
        "unzip: ok".into(),
    ]);
    lines
}

/// Expected operations and chunks of a packet made by `write_packet`.
fn content(files: &[Vec<Vec<u8>>]) -> Vec<String> {
    let mut lines = vec![
        format!("operations: {}", files.len()),
        "seals: 1".to_string(),
        format!("seal: 0 first=1 last={} tail=none", files.len()),
    ];
    for (index, chunks) in files.iter().enumerate() {
        let path = format!("docs/file{index}.txt");
        let op = file_op(index as u64 + 1, &path, chunks);
        lines.push(format!(
            "operation: {index} epoch={} path={path} sha256={}",
            op.epoch,
            hex::encode(Sha256::digest(op.encode()))
        ));
    }
    let all: Vec<&Vec<u8>> = files.iter().flatten().collect();
    lines.push(format!("chunks: {}", all.len()));
    for (index, chunk) in all.iter().enumerate() {
        lines.push(format!(
            "chunk: {index} len={} sha256={}",
            chunk.len(),
            hex::encode(chunk_id(chunk))
        ));
    }
    lines
}
