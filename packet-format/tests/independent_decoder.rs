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
    assert_eq!(names, ["chunks", "operations", "header", "signature"]);
    let header = entries[2].1;
    let signature = entries[3].1;

    // Fixed prefix.
    assert_eq!(&header[..8], b"SYNCRPKT");
    assert_eq!(u16le(header, 8), 1, "major");
    assert_eq!(u16le(header, 10), 0, "minor");
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
    assert_eq!(c.signed(), 1_763_721_000_000_000_000);
    assert_eq!(c.string(), "nightly sync");
    assert_eq!(c.varint(), 1, "one epoch range");
    assert_eq!(c.raw(16), [0xa1; 16]);
    assert_eq!((c.varint(), c.varint()), (1, 1000));
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
    assert_eq!(c.at, header.len(), "nothing after the body");
    assert_eq!((operation_records, chunk_records), (3, 4));

    // Every pin matches its entry.
    for (pin, (name, data)) in pins.iter().zip(&entries) {
        assert_eq!(&pin.name, name);
        assert_eq!(pin.stored_size, data.len() as u64);
        assert_eq!(pin.sha256, Sha256::digest(data).to_vec());
    }

    // Chunk records: fixed 49-byte headers, each whole chunk hashing to its id.
    assert_eq!(pins[0].encoding, 0);
    let chunks = entries[0].1;
    let mut at = 0;
    let mut count = 0;
    while at < chunks.len() {
        let id = &chunks[at..at + 32];
        let chunk_len = u32le(chunks, at + 32);
        let offset = u32le(chunks, at + 36);
        let piece_len = u32le(chunks, at + 40);
        let codec = chunks[at + 44];
        let stored_len = u32le(chunks, at + 45) as usize;
        let stored = &chunks[at + 49..at + 49 + stored_len];
        assert_eq!(
            (offset, piece_len),
            (0, chunk_len),
            "small chunks are whole"
        );
        let data = match codec {
            0 => stored.to_vec(),
            1 => zstd::decode_all(stored).unwrap(),
            other => panic!("codec {other}"),
        };
        assert_eq!(data.len() as u32, chunk_len);
        assert_eq!(Sha256::digest(&data).as_slice(), id);
        at += 49 + stored_len;
        count += 1;
    }
    assert_eq!(count, chunk_records);
}
