//! Validly signed packets whose entry contents (and declared encodings and
//! decoded sizes) come from the fuzzer: reaches the record parsers, zstd
//! bounds and reassembly, which the signature shields from `verify_file`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use packet_format::ops::Id;
use packet_format::testing::{encode_header_raw, sign_header, write_raw_zip};
use packet_format::{
    Encoding, EntryInfo, FormatVersion, Header, Named, PacketKind, FORMAT_MAJOR, FORMAT_MINOR,
};
use sha2::{Digest, Sha256};

const SECRET: [u8; 32] = [0x11; 32];
/// An empty list of origin seals (they are checked by importers, not here).
const NO_SEALS: &[u8] = &[0];

fuzz_target!(|data: &[u8]| {
    // Layout: [ops encoding flag][raw size u32 LE][chunks len u32 LE] chunks ops
    if data.len() < 9 {
        return;
    }
    let zstd_ops = data[0] & 1 == 1;
    let raw_hint = u32::from_le_bytes(data[1..5].try_into().unwrap()) as u64;
    let chunks_len = (u32::from_le_bytes(data[5..9].try_into().unwrap()) as usize)
        .min(data.len() - 9);
    let chunks = &data[9..9 + chunks_len];
    let ops = &data[9 + chunks_len..];
    let pin = |name: &str, bytes: &[u8], encoding: Encoding, raw_size: u64| EntryInfo {
        name: name.into(),
        encoding,
        stored_size: bytes.len() as u64,
        raw_size,
        sha256: Sha256::digest(bytes).into(),
    };
    let (ops_encoding, ops_raw) = if zstd_ops {
        (Encoding::Zstd, raw_hint)
    } else {
        (Encoding::Plain, ops.len() as u64)
    };
    let header = Header {
        version: FormatVersion {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
        },
        signer_key: ed25519_dalek::SigningKey::from_bytes(&SECRET)
            .verifying_key()
            .to_bytes(),
        kind: PacketKind::Update,
        family: Named { id: Id([1; 16]), name: "f".into() },
        sender: Named { id: Id([2; 16]), name: "s".into() },
        targets: vec![],
        packet_id: Id([3; 16]),
        part: 1,
        parts: 1,
        created: packet_format::ops::Timestamp::default(),
        comment: String::new(),
        epoch_ranges: BTreeMap::new(),
        epoch_row: BTreeMap::new(),
        entries: vec![
            pin("chunks", chunks, Encoding::Plain, chunks.len() as u64),
            pin("operations", ops, ops_encoding, ops_raw),
            pin("seals", NO_SEALS, Encoding::Plain, NO_SEALS.len() as u64),
        ],
        operation_records: u64::from(data[0] >> 1),
        chunk_records: u64::from(data[1]),
        incarnation: None,
        tree_digest: None,
        encryption: None,
        rotations: vec![],
    };
    let header_bytes = encode_header_raw(&header);
    let signature = sign_header(&SECRET, &header_bytes);
    let dir = std::env::temp_dir().join(format!("pf-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("signed.zip");
    write_raw_zip(
        &path,
        &[
            ("chunks", chunks),
            ("operations", ops),
            ("seals", NO_SEALS),
            ("header", &header_bytes),
            ("signature", &signature),
        ],
    )
    .unwrap();
    let trusted = [header.signer_key];
    if let Ok(packet) = packet_format::verify_packet(&path, &trusted) {
        if let Ok(logical) = packet_format::LogicalPacket::assemble(vec![packet]) {
            for op in logical.operations() {
                let _ = op;
            }
            for chunk in logical.chunks() {
                let _ = chunk;
            }
        }
    }
});
