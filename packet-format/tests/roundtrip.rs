//! Write-then-read round trips, splitting, and the size cap.

mod common;

use common::*;
use packet_format::{
    canonical_file_name, verify_packet, verify_packet_with_progress, ErrorKind, LogicalPacket,
    PacketKind, PacketWriter, Progress, MIN_PART_SIZE, PROGRESS_BATCH,
};

/// Writes `files` (each a list of chunks) as one logical packet and reads
/// it back, checking every part against the cap.
fn round_trip(max_size: u64, files: &[Vec<Vec<u8>>]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        max_size,
        &SENDER_SECRET,
        carrying(meta(PacketKind::Update), files.len() as u64),
    )
    .unwrap();
    let mut expected_ops = Vec::new();
    let mut expected_chunks = Vec::new();
    for (index, chunks) in files.iter().enumerate() {
        for chunk in chunks {
            writer.add_chunk(&chunk_id(chunk), chunk).unwrap();
            expected_chunks.push((chunk_id(chunk), chunk.clone()));
        }
        let op = file_op(index as u64 + 1, &format!("dir/file{index}"), chunks);
        writer.add_operation(&op).unwrap();
        expected_ops.push(op);
    }
    let parts = writer.finish().unwrap();
    let trusted = [public_key(&SENDER_SECRET)];
    let mut verified = Vec::new();
    for part in &parts {
        assert!(
            part.size <= max_size,
            "part {} is {} > {max_size}",
            part.part,
            part.size
        );
        assert_eq!(std::fs::metadata(&part.path).unwrap().len(), part.size);
        let packet = verify_packet(&part.path, &trusted).unwrap();
        assert_eq!(
            canonical_file_name(packet.header(), packet.creation()),
            part.file_name,
            "the name a reader derives from the signed header is the writer's"
        );
        verified.push(packet);
    }
    let logical = LogicalPacket::assemble(verified).unwrap();
    let ops: Vec<_> = logical.operations().collect::<Result<_, _>>().unwrap();
    assert_eq!(ops, expected_ops);
    let chunks: Vec<_> = logical.chunks().collect::<Result<_, _>>().unwrap();
    assert_eq!(chunks, expected_chunks);
    parts.len()
}

#[test]
fn single_part_round_trip() {
    let files = vec![vec![text(1, 5000), noise(2, 70_000)], vec![noise(3, 100)]];
    assert_eq!(round_trip(10 << 20, &files), 1);
}

#[test]
fn empty_packet_has_one_part() {
    assert_eq!(round_trip(MIN_PART_SIZE, &[]), 1);
}

#[test]
fn big_chunks_span_parts_at_the_minimum_size() {
    let files = vec![
        (0..6).map(|i| noise(i, 256 * 1024)).collect::<Vec<_>>(),
        vec![text(9, 256 * 1024)],
    ];
    let parts = round_trip(MIN_PART_SIZE, &files);
    assert!(parts > 20, "{parts} parts");
}

#[test]
fn huge_operation_spans_parts() {
    // 5000 chunk references encode to ~190 KiB: more than a 64 KiB part.
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        MIN_PART_SIZE,
        &SENDER_SECRET,
        carrying(meta(PacketKind::Update), 1),
    )
    .unwrap();
    let chunks: Vec<Vec<u8>> = (0..5000).map(|i| noise(i, 8)).collect();
    let op = file_op(1, "big", &chunks);
    writer.add_operation(&op).unwrap();
    let parts = writer.finish().unwrap();
    assert!(parts.len() >= 3);
    let trusted = [public_key(&SENDER_SECRET)];
    let verified = parts
        .iter()
        .map(|p| {
            assert!(p.size <= MIN_PART_SIZE);
            verify_packet(&p.path, &trusted).unwrap()
        })
        .collect();
    let logical = LogicalPacket::assemble(verified).unwrap();
    let ops: Vec<_> = logical.operations().collect::<Result<_, _>>().unwrap();
    assert_eq!(ops, vec![op]);
}

/// Property-style sweep: many caps and mixes; no part may exceed its cap.
#[test]
fn no_part_ever_exceeds_the_cap() {
    let mut seed = 1u64;
    for step in 0..24u64 {
        let max_size = MIN_PART_SIZE + step * 7919 + (step * step * 1543) % 50_000;
        let files: Vec<Vec<Vec<u8>>> = (0..4)
            .map(|f| {
                (0..3)
                    .map(|c| {
                        seed += 1;
                        let len = 1 + ((seed * 2_654_435_761 + f * 31 + c) % (256 * 1024)) as usize;
                        if matches!(seed % 3, 0) {
                            text(seed, len)
                        } else {
                            noise(seed, len)
                        }
                    })
                    .collect()
            })
            .collect();
        round_trip(max_size, &files);
    }
}

#[test]
fn sizes_outside_the_limits_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = PacketWriter::create(
        dir.path(),
        MIN_PART_SIZE - 1,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err.kind, ErrorKind::MaxSizeTooSmall { .. }),
        "{err}"
    );
    let err = PacketWriter::create(
        dir.path(),
        1 << 40,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err.kind, ErrorKind::MaxSizeTooLarge { .. }),
        "{err}"
    );
    let mut huge = meta(PacketKind::Update);
    huge.comment = "x".repeat(60_000);
    let err = PacketWriter::create(dir.path(), MIN_PART_SIZE, &SENDER_SECRET, huge)
        .err()
        .unwrap();
    assert!(
        matches!(err.kind, ErrorKind::MetadataTooLarge { .. }),
        "{err}"
    );
}

#[test]
fn writer_refuses_mislabelled_chunks_and_stray_operations() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        MIN_PART_SIZE,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .unwrap();
    let err = writer.add_chunk(&[0; 32], b"data").unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::ChunkIdMismatch { .. }),
        "{err}"
    );
    let err = writer.add_operation(&file_op(5000, "x", &[])).unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::OperationOutsideEpochRanges { .. }),
        "{err}"
    );
}

#[test]
fn creation_packets_carry_their_payload() {
    let dir = tempfile::tempdir().unwrap();
    let writer = PacketWriter::create(
        dir.path(),
        1 << 20,
        &SENDER_SECRET,
        meta(PacketKind::ReplicaCreation),
    )
    .unwrap();
    let parts = writer.finish().unwrap();
    assert_eq!(
        parts[0].file_name,
        "repl_boston_20251121T103000Z_lambik.zip"
    );
    let packet = verify_packet(&parts[0].path, &[public_key(&SENDER_SECRET)]).unwrap();
    assert_eq!(packet.creation().unwrap().new_replica.name, "lambik");
    assert_eq!(
        canonical_file_name(packet.header(), packet.creation()),
        parts[0].file_name
    );
}

#[test]
fn unknown_key_and_existing_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let writer = PacketWriter::create(
        dir.path(),
        MIN_PART_SIZE,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .unwrap();
    let parts = writer.finish().unwrap();
    assert_eq!(
        parts[0].file_name,
        "sync_boston_20251121T103000Z_lambik_42.zip"
    );
    let err = verify_packet(&parts[0].path, &[public_key(&OTHER_SECRET)]).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::UnknownKey { .. }), "{err}");
    let writer = PacketWriter::create(
        dir.path(),
        MIN_PART_SIZE,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .unwrap();
    let err = writer.finish().unwrap_err();
    assert!(matches!(err.kind, ErrorKind::AlreadyExists(_)), "{err}");
    // Nothing but the one packet is left behind (temporary parts are gone).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_file_replaced_after_verification_is_caught_while_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        1 << 20,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .unwrap();
    let chunk = noise(5, 4000);
    writer.add_chunk(&chunk_id(&chunk), &chunk).unwrap();
    let parts = writer.finish().unwrap();
    let packet = verify_packet(&parts[0].path, &[public_key(&SENDER_SECRET)]).unwrap();
    // Same size, one byte different, CRC not even fixed: only the re-hash
    // while reading can notice.
    let mut bytes = std::fs::read(&parts[0].path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&parts[0].path, bytes).unwrap();
    let results: Vec<_> = packet.chunk_pieces().unwrap().collect();
    let err = results
        .into_iter()
        .find_map(Result::err)
        .expect("change detected");
    assert!(
        matches!(err.kind, ErrorKind::ChangedSinceVerification { .. }),
        "{err}"
    );
}

#[test]
fn inconsistent_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut to_self = meta(PacketKind::Update);
    to_self.targets[0].id = to_self.sender.id;
    let mut no_payload = meta(PacketKind::ReplicaCreation);
    no_payload.creation = None;
    let mut stray_payload = meta(PacketKind::ReplicaCreation);
    stray_payload.kind = PacketKind::Update;
    for bad in [to_self, no_payload, stray_payload] {
        let err = PacketWriter::create(dir.path(), MIN_PART_SIZE, &SENDER_SECRET, bad)
            .err()
            .unwrap();
        assert!(matches!(err.kind, ErrorKind::InvalidMetadata(_)), "{err}");
    }
}

#[test]
fn an_abandoned_writer_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        MIN_PART_SIZE,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .unwrap();
    for seed in 0..4 {
        let chunk = noise(seed, 100_000);
        writer.add_chunk(&chunk_id(&chunk), &chunk).unwrap();
    }
    drop(writer);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Writes `files` (lists of chunks) with `threads` encoder threads and
/// returns the parts' bytes.
fn written_with(threads: usize, max_size: u64, files: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        max_size,
        &SENDER_SECRET,
        carrying(meta(PacketKind::Update), files.len() as u64),
    )
    .unwrap()
    .with_encoder_threads(threads);
    for (index, chunks) in files.iter().enumerate() {
        for chunk in chunks {
            writer
                .add_chunk_owned(&chunk_id(chunk), chunk.clone())
                .unwrap();
        }
        let op = file_op(index as u64 + 1, &format!("dir/file{index}"), chunks);
        writer.add_operation(&op).unwrap();
    }
    let parts = writer.finish().unwrap();
    parts
        .iter()
        .map(|part| std::fs::read(&part.path).unwrap())
        .collect()
}

#[test]
fn encoder_threads_write_the_same_packet_as_one_thread() {
    // Text-like (compressible) and random chunks, enough of them to fill
    // the workers' queue many times and to split parts.
    let mut seed = 7u64;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let files: Vec<Vec<Vec<u8>>> = (0..6)
        .map(|file| {
            (0..9)
                .map(|n| {
                    if (file + n) % 2 == 0 {
                        random(20_000 + n * 3_000)
                    } else {
                        format!("line {file} {n}\n").repeat(3_000).into_bytes()
                    }
                })
                .collect()
        })
        .collect();
    for max_size in [MIN_PART_SIZE, 100 << 20] {
        let one = written_with(0, max_size, &files);
        let pooled = written_with(3, max_size, &files);
        assert!(max_size > MIN_PART_SIZE || one.len() > 1, "parts split");
        assert_eq!(one, pooled, "max size {max_size}");
    }
}

/// How a test hands chunks to the writer.
#[derive(Clone, Copy, Debug)]
enum Handing {
    /// `add_chunk_owned`: the writer (or its workers) checks the id.
    Owned,
    /// `add_checked_chunk`: the caller checked it.
    Checked,
    /// `add_chunk_with`, every chunk first tried with bytes that do not
    /// match (`Ok(false)`) and with a failing read, as an export does when
    /// a busy file holds it, then filled right.
    InPlace,
}

/// A caller's own error, as `add_chunk_with` allows.
#[derive(Debug)]
enum ReadFailed {
    Read,
    #[allow(dead_code)]
    Packet(packet_format::Error),
}

impl From<packet_format::Error> for ReadFailed {
    fn from(err: packet_format::Error) -> ReadFailed {
        ReadFailed::Packet(err)
    }
}

fn written_handing(
    threads: usize,
    max_size: u64,
    files: &[Vec<Vec<u8>>],
    handing: Handing,
) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        max_size,
        &SENDER_SECRET,
        carrying(meta(PacketKind::Update), files.len() as u64),
    )
    .unwrap()
    .with_encoder_threads(threads);
    for (index, chunks) in files.iter().enumerate() {
        for chunk in chunks {
            let id = chunk_id(chunk);
            match handing {
                Handing::Owned => writer.add_chunk_owned(&id, chunk.clone()).unwrap(),
                Handing::Checked => writer.add_checked_chunk(&id, chunk).unwrap(),
                Handing::InPlace => {
                    let wrong = writer
                        .add_chunk_with(&id, chunk.len(), |slot| {
                            slot.fill(0xAA);
                            Ok::<bool, packet_format::Error>(false)
                        })
                        .unwrap();
                    assert!(!wrong);
                    let failed = writer.add_chunk_with(&id, chunk.len(), |slot| {
                        slot[..1].fill(1);
                        Err::<bool, ReadFailed>(ReadFailed::Read)
                    });
                    assert!(matches!(failed, Err(ReadFailed::Read)));
                    let added = writer
                        .add_chunk_with(&id, chunk.len(), |slot| {
                            slot.copy_from_slice(chunk);
                            Ok::<bool, packet_format::Error>(true)
                        })
                        .unwrap();
                    assert!(added);
                }
            }
        }
        let op = file_op(index as u64 + 1, &format!("dir/file{index}"), chunks);
        writer.add_operation(&op).unwrap();
    }
    let parts = writer.finish().unwrap();
    parts
        .iter()
        .map(|part| std::fs::read(&part.path).unwrap())
        .collect()
}

#[test]
fn chunks_checked_by_the_caller_or_read_in_place_write_the_same_packet() {
    let files = small_text_files(300);
    for max_size in [MIN_PART_SIZE, 100 << 20] {
        for threads in [0, 2] {
            let owned = written_handing(threads, max_size, &files, Handing::Owned);
            for handing in [Handing::Checked, Handing::InPlace] {
                let other = written_handing(threads, max_size, &files, handing);
                assert!(
                    owned == other,
                    "{handing:?}, {threads} threads, max size {max_size}: the packets differ"
                );
            }
        }
    }
}

#[test]
fn encoder_threads_refuse_a_mislabelled_chunk_by_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        MIN_PART_SIZE,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .unwrap()
    .with_encoder_threads(2);
    writer.add_chunk(&[0; 32], b"data").unwrap();
    let err = writer.finish().unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::ChunkIdMismatch { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Small text files drawing on one vocabulary: what chunk groups are for.
fn small_text_files(count: usize) -> Vec<Vec<Vec<u8>>> {
    let mut seed = 11u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let words: Vec<String> = (0..800)
        .map(|_| {
            let len = 3 + next() % 7;
            (0..len)
                .map(|_| (b'a' + (next() % 26) as u8) as char)
                .collect()
        })
        .collect();
    (0..count)
        .map(|_| {
            let len = 500 + (next() % 6000) as usize;
            let mut file = Vec::new();
            while file.len() < len {
                file.extend_from_slice(words[(next() % 800) as usize].as_bytes());
                file.push(b' ');
            }
            file.truncate(len);
            vec![file]
        })
        .collect()
}

#[test]
fn small_chunks_travel_in_groups_much_smaller_than_alone() {
    let files = small_text_files(600);
    assert_eq!(round_trip(100 << 20, &files), 1);
    let packet = written_with(0, 100 << 20, &files).remove(0);
    let alone: usize = files
        .iter()
        .map(|chunks| zstd::bulk::compress(&chunks[0], 3).unwrap().len() + 49)
        .sum();
    assert!(
        (packet.len() as f64) < alone as f64 * 0.7,
        "grouped {} bytes against {alone} compressed one by one",
        packet.len()
    );
}

#[test]
fn grouped_chunks_are_never_in_a_later_part_than_their_operation() {
    // About 5 MB of text in parts of 1 MiB: groups fit where a part has
    // room, and where it has not their chunks are written one by one.
    let files = small_text_files(1600);
    let parts = round_trip(1 << 20, &files);
    assert!(parts > 2, "{parts} parts");
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        1 << 20,
        &SENDER_SECRET,
        carrying(meta(PacketKind::Update), files.len() as u64),
    )
    .unwrap()
    .with_encoder_threads(2);
    for (index, chunks) in files.iter().enumerate() {
        writer.add_chunk(&chunk_id(&chunks[0]), &chunks[0]).unwrap();
        let op = file_op(index as u64 + 1, &format!("dir/file{index}"), chunks);
        writer.add_operation(&op).unwrap();
    }
    let trusted = [public_key(&SENDER_SECRET)];
    let mut seen = std::collections::HashSet::new();
    let mut groups = 0;
    for part in writer.finish().unwrap() {
        let packet = verify_packet(&part.path, &trusted).unwrap();
        let pieces: Vec<_> = packet
            .chunk_pieces()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        groups += usize::from((pieces.len() as u64) > packet.header().chunk_records);
        seen.extend(pieces.into_iter().map(|piece| piece.id));
        for record in packet.operation_records().unwrap() {
            if let packet_format::OperationRecord::Whole(op) = record.unwrap() {
                let path = &op.change.path_change().unwrap().path;
                let index: usize = std::str::from_utf8(path).unwrap()["dir/file".len()..]
                    .parse()
                    .unwrap();
                assert!(
                    seen.contains(&chunk_id(&files[index][0])),
                    "operation {index} in part {} before its chunk",
                    part.part
                );
            }
        }
    }
    assert!(groups > 0, "some parts hold chunk groups");
}

/// The verifier tells its progress callback the bytes it reads as it
/// goes, in batches of at most PROGRESS_BATCH: about the whole file (all
/// but its zip headers) over several calls, and nothing more once the
/// packet is verified (reading it later is not verifying it).
#[test]
fn verification_reports_the_bytes_it_reads_as_it_goes() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PacketWriter::create(
        dir.path(),
        64 << 20,
        &SENDER_SECRET,
        meta(PacketKind::Update),
    )
    .unwrap();
    for seed in 0..40 {
        let chunk = noise(seed, 128 << 10);
        writer.add_chunk(&chunk_id(&chunk), &chunk).unwrap();
    }
    let parts = writer.finish().unwrap();
    assert_eq!(parts.len(), 1);
    let size = parts[0].size;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let progress = Progress(Arc::new(move |read| seen.lock().unwrap().push(read)));
    let packet = verify_packet_with_progress(
        &parts[0].path,
        &[public_key(&SENDER_SECRET)],
        None,
        progress,
    )
    .unwrap();
    let reported = calls.lock().unwrap().clone();
    let sum: u64 = reported.iter().sum();
    assert!(reported.len() >= 5, "{reported:?}");
    assert!(
        reported.iter().all(|&n| n > 0 && n <= PROGRESS_BATCH),
        "{reported:?}"
    );
    assert!(sum <= size && sum + (64 << 10) >= size, "{sum} of {size}");
    let chunks = packet.chunk_pieces().unwrap().count();
    assert_eq!(chunks, 40);
    assert_eq!(
        calls.lock().unwrap().len(),
        reported.len(),
        "reading is not verifying"
    );
}
