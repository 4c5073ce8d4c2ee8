//! Decodes a committed vector with code written from SPEC.md alone: zip
//! records walked by hand, the postcard header read with a hand-written
//! varint reader, the signature checked with ed25519-dalek directly, entry
//! pins and chunk hashes checked with sha2. Nothing from packet_format is
//! used, so a bug shared by the library's writer and reader cannot hide.

use sha2::{Digest, Sha256};

fn u16le(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Walks local file headers from offset 0: (name, data).
fn zip_entries(file: &[u8]) -> Vec<(String, &[u8])> {
    let mut entries = Vec::new();
    let mut at = 0;
    while u32le(file, at) == 0x0403_4b50 {
        assert_eq!(u16le(file, at + 8), 0, "method must be Stored");
        let size = u32le(file, at + 18) as usize;
        let name_len = u16le(file, at + 26);
        let extra_len = u16le(file, at + 28);
        let name = String::from_utf8(file[at + 30..at + 30 + name_len].to_vec()).unwrap();
        let data_start = at + 30 + name_len + extra_len;
        entries.push((name, &file[data_start..data_start + size]));
        at = data_start + size;
    }
    assert_eq!(
        u32le(file, at),
        0x0201_4b50,
        "central directory follows the entries"
    );
    // End record: last 22 bytes, no comment, no trailing bytes.
    let end = file.len() - 22;
    assert_eq!(u32le(file, end), 0x0605_4b50);
    assert_eq!(u16le(file, end + 10), entries.len());
    entries
}

/// Minimal postcard reader: LEB128 varints, zigzag for signed.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> u64 {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.bytes[self.at];
            self.at += 1;
            value |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint too long")
    }
    fn signed(&mut self) -> i64 {
        let raw = self.varint();
        ((raw >> 1) as i64) ^ -((raw & 1) as i64)
    }
    fn raw(&mut self, n: usize) -> &'a [u8] {
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        out
    }
    fn string(&mut self) -> String {
        let len = self.varint() as usize;
        String::from_utf8(self.raw(len).to_vec()).unwrap()
    }
    fn byte(&mut self) -> u8 {
        self.raw(1)[0]
    }
    /// A length, then that many bytes.
    fn bytes(&mut self) -> &'a [u8] {
        let len = self.varint() as usize;
        self.raw(len)
    }
    /// Seconds (zigzag) then nanoseconds, below 10^9.
    fn time(&mut self) -> (i64, u64) {
        let time = (self.signed(), self.varint());
        assert!(time.1 < 1_000_000_000);
        time
    }
    fn optional_time(&mut self) -> Option<(i64, u64)> {
        match self.byte() {
            0 => None,
            1 => Some(self.time()),
            other => panic!("option tag {other}"),
        }
    }
    /// Key/value pairs, keys strictly ascending.
    fn extensions(&mut self) -> Vec<(u64, Vec<u8>)> {
        let ext: Vec<(u64, Vec<u8>)> = (0..self.varint())
            .map(|_| (self.varint(), self.bytes().to_vec()))
            .collect();
        assert!(ext.windows(2).all(|pair| pair[0].0 < pair[1].0));
        ext
    }
}

struct Pin {
    name: String,
    encoding: u8,
    stored_size: u64,
    sha256: Vec<u8>,
}

#[test]
fn update_vector_decodes_without_the_library() {
    let file = std::fs::read("tests/vectors/update.zip").unwrap();
    let entries = zip_entries(&file);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["chunks", "operations", "seals", "header", "signature"]
    );
    let header = entries[3].1;
    let signature = entries[4].1;

    // Fixed prefix.
    assert_eq!(&header[..8], b"SYNCRPKT");
    assert_eq!(u16le(header, 8), 2, "major");
    assert_eq!(u16le(header, 10), 12, "minor");
    let key: [u8; 32] = header[12..44].try_into().unwrap();
    let expected_key = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32])
        .verifying_key()
        .to_bytes();
    assert_eq!(key, expected_key);

    // Signature over context + header bytes as stored.
    let mut message = b"syncreplica packet header v1\n".to_vec();
    message.extend_from_slice(header);
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(signature.try_into().unwrap());
    verifying.verify_strict(&message, &signature).unwrap();

    // Body, field by field in SPEC order.
    let mut c = Cursor {
        bytes: header,
        at: 44,
    };
    assert_eq!(c.varint(), 1, "kind Update");
    assert_eq!(c.raw(16), [0xf0; 16], "family id");
    assert_eq!(c.string(), "docs");
    assert_eq!(c.raw(16), [0xa1; 16], "sender id");
    assert_eq!(c.string(), "boston");
    assert_eq!(c.varint(), 1, "one target");
    assert_eq!(c.raw(16), [0xb2; 16]);
    assert_eq!(c.string(), "lambik");
    assert_eq!(c.varint(), 42, "sequence number");
    assert_eq!(c.raw(16), [0xc3; 16], "packet id");
    assert_eq!((c.varint(), c.varint()), (1, 1), "part 1 of 1");
    assert_eq!((c.signed(), c.varint()), (1_763_721_000, 0), "created");
    assert_eq!(c.string(), "nightly sync");
    assert_eq!(c.varint(), 1, "one epoch range");
    assert_eq!(c.raw(16), [0xa1; 16]);
    assert_eq!(
        (c.varint(), c.varint()),
        (1, 3),
        "epochs 1..=3: the operations below"
    );
    assert_eq!(c.varint(), 2, "epoch row entries");
    assert_eq!(c.raw(16), [0xa1; 16]);
    assert_eq!(c.varint(), 1000);
    assert_eq!(c.raw(16), [0xb2; 16]);
    assert_eq!(c.varint(), 17);
    let pins: Vec<Pin> = (0..c.varint())
        .map(|_| {
            let name = c.string();
            let encoding = c.byte();
            let stored_size = c.varint();
            let _raw_size = c.varint();
            let sha256 = c.raw(32).to_vec();
            Pin {
                name,
                encoding,
                stored_size,
                sha256,
            }
        })
        .collect();
    let operation_records = c.varint();
    let chunk_records = c.varint();
    // Minor 1: the sender's incarnation, an option (tag 1, then 16 bytes).
    assert_eq!(c.byte(), 1, "incarnation present");
    assert_eq!(c.raw(16), [0xd4; 16], "incarnation id");
    // Minor 2: the tree digest, an option (tag 1, then patterns, assumed,
    // entries, root, nodes).
    assert_eq!(c.byte(), 1, "tree digest present");
    assert_eq!(c.varint(), 1, "one pattern");
    assert_eq!(c.string(), "*.o");
    assert_eq!(c.raw(32), [0xd5; 32], "assumed patterns' hash");
    assert_eq!(c.varint(), 2, "entries");
    assert_eq!(c.raw(32), [0xd6; 32], "root");
    assert_eq!(c.varint(), 1, "one node");
    assert_eq!(c.varint(), 3, "node path length");
    assert_eq!(c.raw(3), b"src");
    assert_eq!(c.raw(32), [0xd7; 32], "node digest");
    // Minor 5: the encryption field, an option: none (not encrypted).
    assert_eq!(c.byte(), 0, "not encrypted");
    // Minor 7: the digest's metadata (§4.1.1), an option: preserved (all
    // seven items), covered (extended attributes 8 + times 32 + the root
    // 64, §4.1.2).
    assert_eq!(c.byte(), 1, "digest metadata present");
    assert_eq!(c.varint(), 127, "preserved");
    assert_eq!(c.varint(), 104, "covered");
    // Minor 11: the root's parts (§4.1.2), an option: five digests.
    assert_eq!(c.byte(), 1, "root parts present");
    for (part, byte) in ["mode", "mtime", "owner", "acls", "xattrs"]
        .iter()
        .zip(0xd8u8..)
    {
        assert_eq!(c.raw(32), [byte; 32], "root part {part}");
    }
    // Minor 12: the sender's rotations (§4.3), a list: none.
    assert_eq!(c.varint(), 0, "no rotations");
    assert_eq!(c.at, header.len(), "nothing after the body");
    assert_eq!(
        (operation_records, chunk_records),
        (3, 1),
        "four chunks in one group record"
    );

    // Every pin matches its entry.
    for (pin, (name, data)) in pins.iter().zip(&entries) {
        assert_eq!(&pin.name, name);
        assert_eq!(pin.stored_size, data.len() as u64);
        assert_eq!(pin.sha256, Sha256::digest(data).to_vec());
    }

    // Chunk records: fixed 49-byte headers, each whole chunk hashing to
    // its id; the four small chunks travel as one chunk group (codec 3).
    assert_eq!(pins[0].encoding, 0);
    let (records, chunks) = walk_chunk_records(entries[0].1, 8);
    assert_eq!(records as u64, chunk_records);
    assert_eq!(records, 1, "one chunk group");
    assert_eq!(entries[0].1[44], 3, "codec 3: chunk group");

    // Operations: three files, docs/file{0,1,2}.txt at epochs 1..=3, whose
    // chunk lists together name the four chunks above, in order.
    let ops = operations(pins[1].encoding, entries[1].1);
    assert_eq!(ops.len() as u64, operation_records);
    let mut chunk_ids = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        assert_eq!(op.origin, [0xa1; 16]);
        assert_eq!(op.epoch, index as u64 + 1);
        assert_eq!(op.recorded, (1_763_721_000, 0));
        let Body::Path {
            path,
            version,
            state,
        } = &op.body
        else {
            panic!("operation {index} is not a path change")
        };
        assert_eq!(path, format!("docs/file{index}.txt").as_bytes());
        assert_eq!(version, &vec![([0xa1; 16], index as u64 + 1)]);
        let State::File {
            mode,
            mtime,
            size,
            chunks,
            ext,
        } = state
        else {
            panic!("operation {index} is not a file")
        };
        assert_eq!((*mode, *mtime), (0o644, Some((1_763_721_000, 0))));
        assert_eq!(*size, chunks.iter().map(|(_, len)| *len).sum::<u64>());
        assert!(ext.is_empty());
        chunk_ids.extend(chunks.iter().map(|(id, _)| id.clone()));
    }
    assert_eq!(chunk_ids.len(), 4);

    // Seals (SPEC §7): one, of the sender's run 1..=3, whole; it signs the
    // backward chain of the operations' bytes.
    let mut s = Cursor {
        bytes: entries[2].1,
        at: 0,
    };
    assert_eq!(s.varint(), 1, "one seal");
    assert_eq!(s.raw(16), [0xa1; 16], "origin");
    assert_eq!((s.varint(), s.varint()), (1, 3), "run");
    let seal_signature = s.raw(64).to_vec();
    assert_eq!(s.byte(), 0, "no tail");
    assert_eq!(s.at, entries[2].1.len());
    let mut link = [0u8; 32];
    for op in ops.iter().rev() {
        let mut hash = Sha256::new();
        hash.update(link);
        hash.update(&op.raw);
        link = hash.finalize().into();
    }
    let mut sealed = b"syncreplica seal v1\n".to_vec();
    sealed.extend_from_slice(&[0xa1; 16]);
    sealed.extend_from_slice(&1u64.to_le_bytes());
    sealed.extend_from_slice(&3u64.to_le_bytes());
    sealed.extend_from_slice(&link);
    let seal_signature =
        ed25519_dalek::Signature::from_bytes(seal_signature.as_slice().try_into().unwrap());
    verifying.verify_strict(&sealed, &seal_signature).unwrap();
    let ids: Vec<Vec<u8>> = chunks.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, chunk_ids);
}

/// A chunk's id and bytes.
type IdAndBytes = (Vec<u8>, Vec<u8>);

/// Walks the records of a `chunks` entry of whole chunks (SPEC §5, §5.2):
/// returns the number of records and each chunk's id and bytes, each
/// checked against its id. `minor`: the packet's, as chunk groups need 8.
fn walk_chunk_records(entry: &[u8], minor: usize) -> (usize, Vec<IdAndBytes>) {
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut records = 0;
    while at < entry.len() {
        let id = &entry[at..at + 32];
        let chunk_len = u32le(entry, at + 32);
        let offset = u32le(entry, at + 36);
        let piece_len = u32le(entry, at + 40);
        let codec = entry[at + 44];
        let stored_len = u32le(entry, at + 45) as usize;
        let stored = &entry[at + 49..at + 49 + stored_len];
        assert_eq!((offset, piece_len), (0, chunk_len), "whole records");
        match codec {
            0 | 1 => {
                let data = if codec == 0 {
                    stored.to_vec()
                } else {
                    zstd::decode_all(stored).unwrap()
                };
                assert!(codec == 0 || stored_len < data.len());
                assert_eq!(data.len() as u32, chunk_len);
                assert_eq!(Sha256::digest(&data).as_slice(), id);
                chunks.push((id.to_vec(), data));
            }
            3 => {
                // A chunk group: id field zero, one zstd frame of
                // (id, u32 length, bytes) per chunk, at least two.
                assert!(minor >= 8, "chunk groups from minor 8 on");
                assert_eq!(id, [0u8; 32]);
                assert!(stored_len < chunk_len as usize);
                assert!(chunk_len as usize <= 4 << 20);
                let group = zstd::decode_all(stored).unwrap();
                assert_eq!(group.len() as u32, chunk_len);
                let mut g = 0;
                let mut members = 0;
                while g < group.len() {
                    let member_id = &group[g..g + 32];
                    let len = u32le(&group, g + 32) as usize;
                    assert!((1..=256 * 1024).contains(&len));
                    let data = &group[g + 36..g + 36 + len];
                    assert_eq!(Sha256::digest(data).as_slice(), member_id);
                    chunks.push((member_id.to_vec(), data.to_vec()));
                    g += 36 + len;
                    members += 1;
                }
                assert_eq!(g, group.len(), "the group's bytes used exactly");
                assert!(members >= 2);
            }
            other => panic!("codec {other}"),
        }
        at += 49 + stored_len;
        records += 1;
    }
    (records, chunks)
}

/// `legacy_update_2_6.zip`, written before chunk groups: the same four
/// chunks, one record each.
#[test]
fn legacy_update_vector_decodes_without_the_library() {
    let file = std::fs::read("tests/vectors/legacy_update_2_6.zip").unwrap();
    let entries = zip_entries(&file);
    assert_eq!(entries[0].0, "chunks");
    let header = entries[3].1;
    assert_eq!(u16le(header, 10), 6, "minor");
    let (records, chunks) = walk_chunk_records(entries[0].1, 6);
    assert_eq!((records, chunks.len()), (4, 4));
    let (_, grouped) = walk_chunk_records(
        zip_entries(&std::fs::read("tests/vectors/update.zip").unwrap())[0].1,
        8,
    );
    assert_eq!(chunks, grouped, "the same chunks as update.zip's group");
}

/// The `creation` entry of `creation.zip`, by hand (SPEC §8, §8.1): the
/// payload, then (minor 6) the checkpoints, each signed by its signer.
#[test]
fn creation_entry_decodes_without_the_library() {
    let file = std::fs::read("tests/vectors/creation.zip").unwrap();
    let entries = zip_entries(&file);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "chunks",
            "operations",
            "creation",
            "seals",
            "header",
            "signature"
        ]
    );
    let header = entries[4].1;
    assert_eq!(u16le(header, 10), 12, "minor");
    let key: [u8; 32] = header[12..44].try_into().unwrap();
    let mut c = Cursor {
        bytes: entries[2].1,
        at: 0,
    };
    assert_eq!(c.raw(16), [0xb2; 16], "new replica id");
    assert_eq!(c.string(), "lambik");
    assert_eq!(c.varint(), 1, "one member");
    assert_eq!(c.raw(16), [0xa1; 16]);
    assert_eq!(c.string(), "boston");
    assert_eq!(c.raw(32), key, "the member's key");
    assert_eq!(c.varint(), 1, "estimates of one member");
    assert_eq!(c.raw(16), [0xa1; 16]);
    assert_eq!(c.varint(), 1, "one origin");
    assert_eq!(c.raw(16), [0xa1; 16]);
    assert_eq!(c.varint(), 3);
    // Minor 6: the checkpoints.
    assert_eq!(c.varint(), 1, "one checkpoint");
    let origin = c.raw(16).to_vec();
    assert_eq!(origin, [0xe1; 16]);
    let through = c.varint();
    assert_eq!(through, 5);
    let history = c.raw(32).to_vec();
    assert_eq!(history, [0xe7; 32]);
    let signer = c.raw(16).to_vec();
    assert_eq!(signer, [0xa1; 16]);
    let signature = c.raw(64).to_vec();
    assert_eq!(c.at, entries[2].1.len(), "nothing after the checkpoints");
    let mut message = b"syncreplica checkpoint v1\n".to_vec();
    message.extend_from_slice(&origin);
    message.extend_from_slice(&through.to_le_bytes());
    message.extend_from_slice(&history);
    message.extend_from_slice(&signer);
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(signature.as_slice().try_into().unwrap());
    verifying.verify_strict(&message, &signature).unwrap();
    // A checkpoint signs every field: another epoch does not verify.
    let mut moved = message.clone();
    moved[26 + 16] ^= 1;
    assert!(verifying.verify_strict(&moved, &signature).is_err());
}

/// Time stamps outside an i64 of nanoseconds, every state kind, metadata
/// extensions and unknown kinds, decoded by hand from `states.zip`.
#[test]
fn states_vector_decodes_without_the_library() {
    let file = std::fs::read("tests/vectors/states.zip").unwrap();
    let entries = zip_entries(&file);
    let header = entries[3].1;
    // Which of the two encodings: a zstd frame starts with the magic
    // 28 b5 2f fd (RFC 8878); plain records start with an operation length,
    // which that would put above the 16 MiB limit.
    let raw = entries[1].1;
    let ops = if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        operations(1, raw)
    } else {
        operations(0, raw)
    };
    assert!(header.starts_with(b"SYNCRPKT"));
    assert_eq!(ops.len(), 13);
    let state = |index: usize| match &ops[index].body {
        Body::Path { state, .. } => state,
        other => panic!("operation {index}: {other:?}"),
    };
    let file_time = |index: usize| match state(index) {
        State::File { mtime, .. } => mtime.unwrap(),
        other => panic!("operation {index}: {other:?}"),
    };
    assert_eq!(file_time(0), (13_569_465_600, 123_456_789), "2400-01-01");
    assert_eq!(file_time(1), (-11_676_096_000, 0), "1600-01-01");
    assert_eq!(file_time(2), (-1, 999_999_999), "just before 1970");
    match state(3) {
        State::Directory { mode, mtime, ext } => {
            assert_eq!((*mode, *mtime), (0o755, Some((1_763_721_000, 5))));
            let keys: Vec<u64> = ext.iter().map(|(key, _)| *key).collect();
            assert_eq!(keys, [2, 1001], "ascending; 1001 is odd, so critical");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(state(4), State::Symlink { target, mtime: None, ext } if target == b"future.txt" && ext.is_empty())
    );
    assert!(matches!(state(5), State::Deleted));
    assert!(matches!(state(6), State::Unknown(77)));
    assert!(matches!(ops[7].body, Body::Unknown(kind) if kind >= 0x1_0000));
    match &ops[8].body {
        Body::RemoveMember { replica, name } => {
            assert_eq!(
                (replica.as_slice(), name.as_str()),
                (&[0x77; 16][..], "gamma")
            );
        }
        other => panic!("operation 8: {other:?}"),
    }
    // Format 2.3 (SPEC §6.3 kind 6, §6.4 keys 2-10): a FIFO and a
    // character device (1, 3), with the system metadata keys.
    for (index, want_kind, want_dev) in [(9, 1, (0, 0)), (10, 3, (1, 3))] {
        match state(index) {
            State::Special {
                kind,
                mode,
                major,
                minor,
                mtime,
                ext,
            } => {
                assert_eq!(
                    (*kind, *mode, (*major, *minor)),
                    (want_kind, 0o620, want_dev)
                );
                assert_eq!(*mtime, (-86_400, 7));
                let keys: Vec<u64> = ext.iter().map(|(key, _)| *key).collect();
                assert_eq!(keys, [2, 4, 6, 10]);
                // Key 2: user { id 0, name "root" }, group { id 4343, no name }.
                let mut c = Cursor {
                    bytes: &ext[0].1,
                    at: 0,
                };
                assert_eq!(c.varint(), 1, "user present");
                assert_eq!(c.varint(), 0);
                assert_eq!(c.varint(), 1, "name present");
                assert_eq!(c.string(), "root");
                assert_eq!(c.varint(), 1, "group present");
                assert_eq!(c.varint(), 4343);
                assert_eq!(c.varint(), 0, "no group name");
                assert_eq!(c.at, ext[0].1.len());
                // Key 4: one attribute user.key = "v".
                let mut c = Cursor {
                    bytes: &ext[1].1,
                    at: 0,
                };
                assert_eq!(c.varint(), 1);
                assert_eq!(c.bytes(), b"user.key");
                assert_eq!(c.bytes(), b"v");
                assert_eq!(c.at, ext[1].1.len());
                // Key 6: five ACL entries { tag, perm, who }.
                let mut c = Cursor {
                    bytes: &ext[2].1,
                    at: 0,
                };
                let entries: Vec<(u64, u64, Option<u64>)> = (0..c.varint())
                    .map(|_| {
                        let (tag, perm) = (c.varint(), c.varint());
                        let who = (c.varint() == 1).then(|| {
                            let id = c.varint();
                            assert_eq!(c.varint(), 0, "no name");
                            id
                        });
                        (tag, perm, who)
                    })
                    .collect();
                assert_eq!(
                    entries,
                    [
                        (1, 6, None),
                        (2, 4, Some(4242)),
                        (4, 4, None),
                        (16, 4, None),
                        (32, 0, None)
                    ]
                );
                assert_eq!(c.at, ext[2].1.len());
                // Key 10: the hard-link leader's path.
                let mut c = Cursor {
                    bytes: &ext[3].1,
                    at: 0,
                };
                assert_eq!(c.bytes(), b"far/past");
                assert_eq!(c.at, ext[3].1.len());
            }
            other => panic!("operation {index}: {other:?}"),
        }
    }
    // Format 2.10 (SPEC §6.2.1): the empty path is the replica root, and
    // only ever a directory.
    match &ops[11].body {
        Body::Path {
            path,
            state: State::Directory { mode, mtime, ext },
            ..
        } => {
            assert!(path.is_empty(), "the root's path is empty");
            assert_eq!((*mode, *mtime), (0o2775, Some((1_700_000_000, 5))));
            let keys: Vec<u64> = ext.iter().map(|(key, _)| *key).collect();
            assert_eq!(keys, [2]);
        }
        other => panic!("operation 11: {other:?}"),
    }
    // Format 2.9 (SPEC §6.2 kind 6, §7.1): the sender's key rotation, from
    // the sender key (secret 0x11) to the other key (secret 0x22).
    match &ops[12].body {
        Body::RekeyMember {
            replica,
            old_key,
            new_key,
            encryption_key,
        } => {
            assert_eq!(replica, &ops[12].origin, "a member rekeys itself");
            let public = |byte: u8| {
                ed25519_dalek::SigningKey::from_bytes(&[byte; 32])
                    .verifying_key()
                    .to_bytes()
                    .to_vec()
            };
            assert_eq!((old_key, new_key), (&public(0x11), &public(0x22)));
            assert!(encryption_key.starts_with("age1") && encryption_key.len() == 62);
        }
        other => panic!("operation 12: {other:?}"),
    }
}

#[derive(Debug)]
struct HandOp {
    /// The operation's bytes, as its record holds them.
    raw: Vec<u8>,
    origin: Vec<u8>,
    epoch: u64,
    recorded: (i64, u64),
    body: Body,
}

#[derive(Debug)]
enum Body {
    Path {
        path: Vec<u8>,
        version: Vec<([u8; 16], u64)>,
        state: State,
    },
    /// Kind 5 (SPEC §6.2): `{ replica: [u8;16], name: string }`.
    RemoveMember {
        replica: Vec<u8>,
        name: String,
    },
    /// Kind 6 (SPEC §6.2, format 2.9): `{ replica: [u8;16], old_key:
    /// [u8;32], new_key: [u8;32], encryption_key: string }`.
    RekeyMember {
        replica: Vec<u8>,
        old_key: Vec<u8>,
        new_key: Vec<u8>,
        encryption_key: String,
    },
    Unknown(u64),
}

#[derive(Debug)]
enum State {
    File {
        mode: u64,
        mtime: Option<(i64, u64)>,
        size: u64,
        chunks: Vec<(Vec<u8>, u64)>,
        ext: Vec<(u64, Vec<u8>)>,
    },
    Directory {
        mode: u64,
        mtime: Option<(i64, u64)>,
        ext: Vec<(u64, Vec<u8>)>,
    },
    Symlink {
        target: Vec<u8>,
        mtime: Option<(i64, u64)>,
        ext: Vec<(u64, Vec<u8>)>,
    },
    /// Kind 6 (SPEC §6.3, format 2.3).
    Special {
        kind: u64,
        mode: u64,
        major: u64,
        minor: u64,
        mtime: (i64, u64),
        ext: Vec<(u64, Vec<u8>)>,
    },
    Deleted,
    /// Kind 5 (SPEC §6.3.1): the body, expanded by the caller.
    Relative(Vec<u8>),
    Unknown(u64),
}

/// The operation records of an `operations` entry (SPEC §6.1), each a
/// whole operation here, decoded per §6.2 and §6.3.
fn operations(encoding: u8, stored: &[u8]) -> Vec<HandOp> {
    let raw = match encoding {
        0 => stored.to_vec(),
        1 => zstd::decode_all(stored).unwrap(),
        other => panic!("encoding {other}"),
    };
    let mut ops = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let total = u32le(&raw, at) as usize;
        let (offset, piece) = (u32le(&raw, at + 4), u32le(&raw, at + 8) as usize);
        assert_eq!((offset, piece), (0, total), "whole operations");
        let bytes = &raw[at + 12..at + 12 + total];
        let mut c = Cursor { bytes, at: 0 };
        let origin = c.raw(16).to_vec();
        let epoch = c.varint();
        let recorded = c.time();
        let kind = c.varint();
        let body = c.bytes();
        assert_eq!(c.at, bytes.len(), "nothing after the operation");
        let body = match kind {
            1 => {
                let mut b = Cursor { bytes: body, at: 0 };
                let path = b.bytes().to_vec();
                let version = (0..b.varint())
                    .map(|_| (b.raw(16).try_into().unwrap(), b.varint()))
                    .collect();
                let state_kind = b.varint();
                let state_body = b.bytes();
                assert_eq!(b.at, body.len(), "nothing after the path body");
                Body::Path {
                    path,
                    version,
                    state: state(state_kind, state_body),
                }
            }
            5 => {
                let mut b = Cursor { bytes: body, at: 0 };
                let replica = b.raw(16).to_vec();
                let name = b.string();
                assert_eq!(b.at, body.len(), "nothing after the member removal");
                Body::RemoveMember { replica, name }
            }
            6 => {
                let mut b = Cursor { bytes: body, at: 0 };
                let replica = b.raw(16).to_vec();
                let old_key = b.raw(32).to_vec();
                let new_key = b.raw(32).to_vec();
                let encryption_key = b.string();
                assert_eq!(b.at, body.len(), "nothing after the key rotation");
                Body::RekeyMember {
                    replica,
                    old_key,
                    new_key,
                    encryption_key,
                }
            }
            other => Body::Unknown(other),
        };
        ops.push(HandOp {
            raw: bytes.to_vec(),
            origin,
            epoch,
            recorded,
            body,
        });
        at += 12 + total;
    }
    ops
}

fn state(kind: u64, body: &[u8]) -> State {
    let mut c = Cursor { bytes: body, at: 0 };
    let state = match kind {
        1 => State::File {
            mode: c.varint(),
            mtime: Some(c.time()),
            size: c.varint(),
            chunks: (0..c.varint())
                .map(|_| (c.raw(32).to_vec(), c.varint()))
                .collect(),
            ext: c.extensions(),
        },
        2 => State::Directory {
            mode: c.varint(),
            mtime: c.optional_time(),
            ext: c.extensions(),
        },
        3 => State::Symlink {
            target: c.bytes().to_vec(),
            mtime: c.optional_time(),
            ext: c.extensions(),
        },
        4 => State::Deleted,
        5 => return State::Relative(body.to_vec()),
        6 => State::Special {
            kind: c.varint(),
            mode: c.varint(),
            major: c.varint(),
            minor: c.varint(),
            mtime: c.time(),
            ext: c.extensions(),
        },
        other => return State::Unknown(other),
    };
    assert_eq!(c.at, body.len(), "nothing after a state body");
    state
}

/// Postcard's unsigned varint (LEB128).
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_time(out: &mut Vec<u8>, (secs, nanos): (i64, u64)) {
    put_varint(out, ((secs << 1) ^ (secs >> 63)) as u64);
    put_varint(out, nanos);
}

/// A relative file state (SPEC §6.3.1, kind 5) and a recipe chunk (§5.1),
/// decoded by hand from `delta.zip`: the relative states are expanded
/// against the operations before them and re-encoded as the file states
/// (kind 1) the origin sealed, and the seal verifies over those; the
/// recipe is built from the base chunk the target holds and hashes to its
/// id.
#[test]
fn delta_vector_decodes_without_the_library() {
    let file = std::fs::read("tests/vectors/delta.zip").unwrap();
    let expect = std::fs::read_to_string("tests/vectors/delta.expect").unwrap();
    let base = hex::decode(
        expect
            .lines()
            .find_map(|line| line.strip_prefix("base: "))
            .unwrap(),
    )
    .unwrap();
    let entries = zip_entries(&file);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["chunks", "operations", "seals", "header", "signature"]
    );

    // The one chunk record: codec 2, a recipe over `base`.
    let chunks = entries[0].1;
    let id = &chunks[..32];
    let chunk_len = u32le(chunks, 32) as usize;
    assert_eq!(
        (u32le(chunks, 36), u32le(chunks, 40) as usize),
        (0, chunk_len)
    );
    assert_eq!(chunks[44], 2, "codec 2: recipe");
    let stored_len = u32le(chunks, 45) as usize;
    assert_eq!(49 + stored_len, chunks.len());
    assert!(stored_len < chunk_len);
    let mut r = Cursor {
        bytes: &chunks[49..],
        at: 0,
    };
    let bases: Vec<(Vec<u8>, u64)> = (0..r.varint())
        .map(|_| (r.raw(32).to_vec(), r.varint()))
        .collect();
    assert_eq!(bases, [(Sha256::digest(&base).to_vec(), base.len() as u64)]);
    enum Step {
        Copy(usize, usize, usize),
        Literal(usize),
    }
    let steps: Vec<Step> = (0..r.varint())
        .map(|_| match r.varint() {
            0 => Step::Copy(
                r.varint() as usize,
                r.varint() as usize,
                r.varint() as usize,
            ),
            1 => Step::Literal(r.varint() as usize),
            other => panic!("step {other}"),
        })
        .collect();
    let literal_codec = r.byte();
    let literals = match literal_codec {
        0 => r.bytes().to_vec(),
        1 => zstd::decode_all(r.bytes()).unwrap(),
        other => panic!("literal codec {other}"),
    };
    assert_eq!(r.at, stored_len, "nothing after the recipe");
    let mut built = Vec::new();
    let mut taken = 0;
    for step in steps {
        match step {
            Step::Copy(b, offset, len) => {
                assert_eq!(b, 0);
                built.extend_from_slice(&base[offset..offset + len]);
            }
            Step::Literal(len) => {
                built.extend_from_slice(&literals[taken..taken + len]);
                taken += len;
            }
        }
    }
    assert_eq!(taken, literals.len());
    assert_eq!(built.len(), chunk_len);
    assert_eq!(Sha256::digest(&built).as_slice(), id, "the rebuilt chunk");

    // Operations: expand kind 5 against the earlier file states.
    let raw = entries[1].1;
    let encoding = if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        1
    } else {
        0
    };
    let ops = operations(encoding, raw);
    assert_eq!(ops.len(), 3);
    // (origin, epoch, chunk list) of each file state so far.
    type Chunks = Vec<(Vec<u8>, u64)>;
    let mut files: Vec<(Vec<u8>, u64, Chunks)> = Vec::new();
    let mut encoded = Vec::new();
    for op in &ops {
        let Body::Path {
            path,
            version,
            state,
        } = &op.body
        else {
            panic!("{op:?}")
        };
        let (mode, mtime, chunks, ext) = match state {
            State::File {
                mode,
                mtime,
                chunks,
                ext,
                ..
            } => {
                // Full states travel as their origin encoded them.
                encoded.push(op.raw.clone());
                files.push((op.origin.clone(), op.epoch, chunks.clone()));
                let _ = (mode, mtime, ext);
                continue;
            }
            State::Relative(body) => {
                let mut c = Cursor { bytes: body, at: 0 };
                let (origin, epoch) = (c.raw(16).to_vec(), c.varint());
                let mode = c.varint();
                let mtime = c.time();
                let base = &files
                    .iter()
                    .find(|(o, e, _)| *o == origin && *e == epoch)
                    .expect("the base is earlier in the packet")
                    .2;
                let mut chunks = Vec::new();
                for _ in 0..c.varint() {
                    match c.varint() {
                        0 => {
                            let (from, count) = (c.varint() as usize, c.varint() as usize);
                            chunks.extend_from_slice(&base[from..from + count]);
                        }
                        1 => {
                            for _ in 0..c.varint() {
                                chunks.push((c.raw(32).to_vec(), c.varint()));
                            }
                        }
                        2 => {
                            let chunk = (c.raw(32).to_vec(), c.varint());
                            let count = c.varint() as usize;
                            chunks.extend(std::iter::repeat_n(chunk, count));
                        }
                        other => panic!("run {other}"),
                    }
                }
                let ext = body[c.at..].to_vec();
                c.extensions();
                assert_eq!(c.at, body.len(), "nothing after the relative state");
                (mode, mtime, chunks, ext)
            }
            other => panic!("{other:?}"),
        };
        // Re-encode as the origin logged it: a kind-1 file state.
        let mut state_body = Vec::new();
        put_varint(&mut state_body, mode);
        put_time(&mut state_body, mtime);
        put_varint(&mut state_body, chunks.iter().map(|c| c.1).sum());
        put_varint(&mut state_body, chunks.len() as u64);
        for (id, len) in &chunks {
            state_body.extend_from_slice(id);
            put_varint(&mut state_body, *len);
        }
        state_body.extend_from_slice(&ext);
        let mut path_body = Vec::new();
        put_bytes(&mut path_body, path);
        put_varint(&mut path_body, version.len() as u64);
        for (origin, epoch) in version {
            path_body.extend_from_slice(origin);
            put_varint(&mut path_body, *epoch);
        }
        put_varint(&mut path_body, 1);
        put_bytes(&mut path_body, &state_body);
        let mut whole = op.origin.clone();
        put_varint(&mut whole, op.epoch);
        put_time(&mut whole, op.recorded);
        put_varint(&mut whole, 1);
        put_bytes(&mut whole, &path_body);
        files.push((op.origin.clone(), op.epoch, chunks));
        encoded.push(whole);
    }
    // The expanded operations are those the sidecar pins...
    let pinned: Vec<String> = expect
        .lines()
        .filter_map(|line| line.strip_prefix("expanded: "))
        .map(|rest| rest.split("sha256=").nth(1).unwrap().to_string())
        .collect();
    let got: Vec<String> = encoded
        .iter()
        .map(|bytes| hex::encode(Sha256::digest(bytes)))
        .collect();
    assert_eq!(got, pinned);
    // ... and the origin's seal (SPEC §7) verifies over them.
    let mut seals = Cursor {
        bytes: entries[2].1,
        at: 0,
    };
    assert_eq!(seals.varint(), 1);
    let origin = seals.raw(16).to_vec();
    let (first, last) = (seals.varint(), seals.varint());
    let signature: [u8; 64] = seals.raw(64).try_into().unwrap();
    assert_eq!(seals.byte(), 0, "no tail");
    let mut link = [0u8; 32];
    for op in encoded.iter().rev() {
        let mut hasher = Sha256::new();
        hasher.update(link);
        hasher.update(op);
        link = hasher.finalize().into();
    }
    let mut message = b"syncreplica seal v1\n".to_vec();
    message.extend_from_slice(&origin);
    message.extend_from_slice(&first.to_le_bytes());
    message.extend_from_slice(&last.to_le_bytes());
    message.extend_from_slice(&link);
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32]).verifying_key();
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
        .unwrap();
}

/// SPEC.md §4.2 and §14: `encrypted.zip` read with the age crate directly
/// and the vector identity: the header ends with the encryption field
/// naming the recipient, and the `chunks` entry (encoding 2) is an age
/// file whose plaintext is chunk records hashing to their ids.
#[test]
fn encrypted_vector_decrypts_with_the_vector_key() {
    use age::secrecy::ExposeSecret;
    let identity: age::x25519::Identity =
        "AGE-SECRET-KEY-1XVENXVENXVENXVENXVENXVENXVENXVENXVENXVENXVENXVENXVES5R36HA"
            .parse()
            .unwrap();
    let _ = identity.to_string().expose_secret().len();
    let file = std::fs::read("tests/vectors/encrypted.zip").unwrap();
    let entries = zip_entries(&file);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["chunks", "operations", "seals", "header", "signature"]
    );
    let header = entries[3].1;
    assert_eq!(u16le(header, 10), 12, "minor");
    // The header ends: option tag 1, one recipient {id, key}, passphrase false.
    let key = identity.to_public().to_string();
    let mut tail = vec![1u8, 1];
    tail.extend_from_slice(&[0xb2; 16]);
    tail.push(key.len() as u8);
    tail.extend_from_slice(key.as_bytes());
    tail.push(0);
    // Then (2.7) the digest's metadata: present, preserved 127, covered
    // 104; then (2.11) the root's parts: present, five digests.
    tail.extend_from_slice(&[1, 127, 104, 1]);
    for byte in 0xd8u8..=0xdc {
        tail.extend_from_slice(&[byte; 32]);
    }
    // Then (2.12) the sender's rotations: an empty list.
    tail.push(0);
    assert!(
        header.ends_with(&tail),
        "encryption field, then the digest metadata, the root's parts and the rotations"
    );

    // chunks: decrypt, then walk the records as in the plain vector.
    let decryptor = age::Decryptor::new(entries[0].1).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .unwrap(),
        &mut plain,
    )
    .unwrap();
    let (_, chunks) = walk_chunk_records(&plain, 8);
    assert_eq!(chunks.len(), 4, "the update vector's four chunks");
    // Not readable without the key: the ciphertext holds no chunk id.
    let first_id = &chunks[0].0;
    assert!(!entries[0].1.windows(32).any(|w| w == first_id.as_slice()));
}
