//! Packets written now, read by general zip tools: the `zip` crate and
//! Info-ZIP `unzip` (skipped where it is not installed). The committed
//! vectors get the same checks in `vectors.rs`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use packet_format::{
    verify_packet, PacketKind, PacketWriter, ENTRY_CHUNKS, ENTRY_CREATION, ENTRY_HEADER,
    ENTRY_OPERATIONS, ENTRY_SEALS, ENTRY_SIGNATURE, MIN_PART_SIZE,
};

fn write(dir: &Path, kind: PacketKind, max_size: u64, files: &[Vec<Vec<u8>>]) -> Vec<PathBuf> {
    let mut writer = PacketWriter::create(
        dir,
        max_size,
        &SENDER_SECRET,
        carrying(meta(kind), files.len() as u64),
    )
    .unwrap();
    for (index, chunks) in files.iter().enumerate() {
        for chunk in chunks {
            writer.add_chunk(&chunk_id(chunk), chunk).unwrap();
        }
        let op = file_op(index as u64 + 1, &format!("dir/file{index}"), chunks);
        writer.add_operation(&op).unwrap();
    }
    writer
        .finish()
        .unwrap()
        .into_iter()
        .map(|part| part.path)
        .collect()
}

fn fresh_packets(dir: &Path) -> Vec<(PathBuf, PacketKind)> {
    let small = vec![vec![text(1, 3000)], vec![noise(2, 700), text(3, 900)]];
    let spanning = vec![vec![noise(10, 100_000), text(11, 20_000)]];
    let mut packets = Vec::new();
    for (kind, max_size, files) in [
        (PacketKind::Update, 1 << 20, &small),
        (PacketKind::ReplicaCreation, 1 << 20, &small),
        (PacketKind::Update, MIN_PART_SIZE, &spanning),
    ] {
        let sub = dir.join(format!("{}", packets.len()));
        std::fs::create_dir(&sub).unwrap();
        packets.extend(
            write(&sub, kind, max_size, files)
                .into_iter()
                .map(|p| (p, kind)),
        );
    }
    assert!(packets.len() >= 4, "the spanning packet has several parts");
    packets
}

#[test]
fn the_zip_crate_reads_written_packets() {
    let dir = tempfile::tempdir().unwrap();
    for (path, kind) in fresh_packets(dir.path()) {
        let what = path.display();
        verify_packet(&path, &[public_key(&SENDER_SECRET)]).unwrap();
        let mut expected = vec![ENTRY_CHUNKS, ENTRY_OPERATIONS];
        if kind == PacketKind::ReplicaCreation {
            expected.push(ENTRY_CREATION);
        }
        expected.extend([ENTRY_SEALS, ENTRY_HEADER, ENTRY_SIGNATURE]);

        let bytes = std::fs::read(&path).unwrap();
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap())
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        assert!(archive.comment().is_empty(), "{what}");
        assert_eq!(archive.len(), expected.len(), "{what}");
        for (index, name) in expected.iter().enumerate() {
            let mut entry = archive.by_index(index).unwrap();
            assert_eq!(entry.name().unwrap(), *name, "{what}");
            assert_eq!(
                entry.compression(),
                zip::CompressionMethod::Stored,
                "{what}: {name}"
            );
            assert_eq!(entry.compressed_size(), entry.size(), "{what}: {name}");
            assert_eq!(entry.unix_mode(), Some(0o100644), "{what}: {name}");
            assert!(entry.extra_data().unwrap_or_default().is_empty(), "{what}");
            let start = entry.data_start().unwrap() as usize;
            let mut data = Vec::new();
            // read_to_end checks the CRC-32.
            entry
                .read_to_end(&mut data)
                .unwrap_or_else(|err| panic!("{what}: {name}: {err}"));
            assert_eq!(&bytes[start..start + data.len()], data, "{what}: {name}");
            if *name == ENTRY_SIGNATURE {
                assert_eq!(data.len(), 64, "{what}");
            }
        }
    }
}

#[test]
fn info_zip_accepts_written_packets() {
    if std::process::Command::new("unzip")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("unzip not installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (path, _) in fresh_packets(dir.path()) {
        for flag in ["-l", "-tq"] {
            let output = std::process::Command::new("unzip")
                .arg(flag)
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "unzip {flag} {}: {}{}",
                path.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
