//! Writes and verifies a 1 GiB logical packet in 50 MiB parts, and compares
//! the throughput with `sha256sum` over the same bytes.
//!
//! ```text
//! cargo run --release -p packet-format --example bench_packets [SIZE_MIB] [MAXSIZE_MIB]
//! ```
//!
//! Data: 64 KiB chunks, three in four incompressible, one in four text.
//! Peak memory is the process's VmHWM (resident high-water mark).

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::time::Instant;

use packet_format::ops::{
    Change, ChunkRef, Extensions, Id, Operation, PathState, Timestamp, VersionVector,
};
use packet_format::{
    verify_packet, EpochRange, LogicalPacket, Named, PacketKind, PacketMeta, PacketWriter, Target,
};
use sha2::{Digest, Sha256};

const CHUNK: usize = 64 * 1024;
const CHUNKS_PER_FILE: usize = 16;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let total_mib = args.first().copied().unwrap_or(1024);
    let max_size = args.get(1).copied().unwrap_or(50) << 20;
    let total = total_mib << 20;
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data.bin");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();

    // 1. The input data, written to a file so sha256sum can read the same bytes.
    let mut data = BufWriter::new(std::fs::File::create(&data_path).unwrap());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut block = vec![0u8; CHUNK];
    for index in 0..total / CHUNK as u64 {
        if index % 4 == 3 {
            let line = format!("chunk {index}: lorem ipsum dolor sit amet, consectetur\n");
            for (byte, text) in block.iter_mut().zip(line.bytes().cycle()) {
                *byte = text;
            }
        } else {
            for word in block.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
        }
        data.write_all(&block).unwrap();
    }
    data.into_inner().unwrap().sync_all().unwrap();

    // 2. sha256sum over the data file, for scale.
    let started = Instant::now();
    let output = std::process::Command::new("sha256sum")
        .arg(&data_path)
        .output()
        .expect("sha256sum");
    let sha256sum_secs = started.elapsed().as_secs_f64();
    assert!(output.status.success());

    // 3. Write the packet, streaming chunks from the data file.
    let sender = Id([1; 16]);
    let meta = PacketMeta {
        kind: PacketKind::Update,
        family: Named {
            id: Id([2; 16]),
            name: "bench".into(),
        },
        sender: Named {
            id: sender,
            name: "here".into(),
        },
        targets: vec![Target {
            id: Id([3; 16]),
            name: "there".into(),
            seq: 1,
        }],
        packet_id: Id([4; 16]),
        created: Timestamp::default(),
        comment: "benchmark".into(),
        epoch_ranges: BTreeMap::from([(
            sender,
            EpochRange {
                first: 1,
                last: u64::MAX,
            },
        )]),
        epoch_row: BTreeMap::new(),
        seals: Vec::new(),
        creation: None,
        incarnation: None,
        tree_digest: None,
        encryption: None,
        secrets: None,
        rotations: Vec::new(),
    };
    let started = Instant::now();
    let mut writer = PacketWriter::create(&out_dir, max_size, &[7; 32], meta).unwrap();
    let mut input = std::fs::File::open(&data_path).unwrap();
    let mut refs = Vec::new();
    let mut epoch = 0;
    loop {
        let mut filled = 0;
        while filled < CHUNK {
            let n = input.read(&mut block[filled..]).unwrap();
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled > 0 {
            let id: [u8; 32] = Sha256::digest(&block[..filled]).into();
            writer.add_chunk(&id, &block[..filled]).unwrap();
            refs.push(ChunkRef {
                id,
                len: filled as u32,
            });
        }
        if refs.len() == CHUNKS_PER_FILE || (filled == 0 && !refs.is_empty()) {
            epoch += 1;
            let op = Operation {
                origin: sender,
                epoch,
                recorded: Timestamp::default(),
                change: Change::Path {
                    path: format!("data/file{epoch:06}.bin").into_bytes(),
                    version: VersionVector(BTreeMap::from([(sender, epoch)])),
                    state: PathState::File {
                        mode: 0o644,
                        mtime: Timestamp::default(),
                        size: refs.iter().map(|r| r.len as u64).sum(),
                        chunks: std::mem::take(&mut refs),
                        ext: Extensions::default(),
                    },
                },
            };
            writer.add_operation(&op).unwrap();
        }
        if filled == 0 {
            break;
        }
    }
    let parts = writer.finish().unwrap();
    let write_secs = started.elapsed().as_secs_f64();
    let packet_bytes: u64 = parts.iter().map(|p| p.size).sum();
    let largest = parts.iter().map(|p| p.size).max().unwrap();
    assert!(largest <= max_size);

    // 4. Verify every part (full check: signature, pins, records, chunk hashes).
    let trusted = [ed25519_dalek::SigningKey::from_bytes(&[7; 32])
        .verifying_key()
        .to_bytes()];
    let started = Instant::now();
    let verified: Vec<_> = parts
        .iter()
        .map(|p| verify_packet(&p.path, &trusted).unwrap())
        .collect();
    let verify_secs = started.elapsed().as_secs_f64();

    // 5. Read the logical packet back as an importer would.
    let started = Instant::now();
    let logical = LogicalPacket::assemble(verified).unwrap();
    let mut read_bytes = 0u64;
    for chunk in logical.chunks() {
        read_bytes += chunk.unwrap().1.len() as u64;
    }
    let ops = logical.operations().count();
    let read_secs = started.elapsed().as_secs_f64();
    assert_eq!(read_bytes, total);
    assert_eq!(ops as u64, epoch);

    let mib = total as f64 / (1 << 20) as f64;
    println!(
        "data: {total_mib} MiB in {}-byte chunks; packet: {} parts of at most {} bytes (largest {largest}), {:.1} MiB on disk",
        CHUNK,
        parts.len(),
        max_size,
        packet_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "sha256sum data:     {sha256sum_secs:7.2} s  {:8.1} MiB/s",
        mib / sha256sum_secs
    );
    println!(
        "write packet:       {write_secs:7.2} s  {:8.1} MiB/s",
        mib / write_secs
    );
    println!(
        "verify all parts:   {verify_secs:7.2} s  {:8.1} MiB/s",
        mib / verify_secs
    );
    println!(
        "read logical packet:{read_secs:7.2} s  {:8.1} MiB/s",
        mib / read_secs
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: unknown");
    println!(
        "peak memory ({})",
        hwm.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
}
