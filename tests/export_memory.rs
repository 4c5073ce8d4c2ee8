//! An export of a large file edited in place holds about the same memory
//! whatever the file's size (issue 12: at most 64 MiB for the 2 GiB image
//! of bench/vm_image.sh). Held before: the pieces (second-level cuts) of
//! every chunk the scan read, until the export ended, and the pieces of
//! every old chunk a recipe was built over, about 40 bytes per ~512 bytes
//! of the file.
//!
//! A test binary of its own: it counts every allocation of the process
//! (a global allocator) around an in-process record and export, as
//! `syncreplica -export` runs them. SQLite's own cache (bounded by its
//! settings) is not counted.

use std::path::Path;
use std::process::Command;

use syncreplica::replica::Replica;
use syncreplica::sync::export::{export_updates, ExportRequest, Mode, TargetExport};
use test_support::counting_alloc::{self, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by every test of this binary: the counters are the process's, so
/// a test running beside a measurement would count in it.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(bin: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pseudo-random bytes (xorshift64*), incompressible as a VM image's
/// rewritten blocks are.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Replica `a` under `dir` holding `disk.img` of `mib` MiB, and its
/// sibling `b` made from it.
fn pair_with_image(dir: &Path, mib: usize) {
    let mk = env!("CARGO_BIN_EXE_mkreplica");
    let (a, b, bay) = (dir.join("a"), dir.join("b"), dir.join("bay"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&bay).unwrap();
    std::fs::write(a.join("disk.img"), random_bytes(mib << 20, 42)).unwrap();
    let init = ["-init", "-family", "f", "-replica"];
    let mut args: Vec<&std::ffi::OsStr> = init.iter().map(|s| s.as_ref()).collect();
    args.extend([a.as_os_str(), "a".as_ref()]);
    run(mk, &args);
    let key = bay.join("b.key");
    run(
        mk,
        &[
            "-export".as_ref(),
            "-out".as_ref(),
            bay.as_os_str(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-replica".as_ref(),
            a.as_os_str(),
            "b".as_ref(),
        ],
    );
    run(
        mk,
        &[
            "-import".as_ref(),
            "-key".as_ref(),
            key.as_os_str(),
            "-replica".as_ref(),
            b.as_os_str(),
            bay.as_os_str(),
        ],
    );
    std::fs::remove_dir_all(&bay).unwrap();
}

/// Rewrites 1 % of the 4 KiB blocks of `file` with random data, at
/// scattered places (every 100th block, shifted).
fn rewrite_scattered_blocks(file: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let blocks = f.metadata().unwrap().len() / 4096;
    for (n, block) in (0..blocks).step_by(100).enumerate() {
        let at = (block + (n as u64 * 37) % 100).min(blocks - 1);
        f.write_all_at(&random_bytes(4096, 1000 + n as u64), at * 4096)
            .unwrap();
    }
}

/// The peak heap (bytes above what was allocated before) of recording and
/// exporting, in one process as `syncreplica -export` does, an image of
/// `mib` MiB with 1 % of its blocks rewritten.
fn peak_heap_of_export(mib: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    pair_with_image(dir.path(), mib);
    let a = dir.path().join("a");
    rewrite_scattered_blocks(&a.join("disk.img"));
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut replica = Replica::open(&a).unwrap().lock("test").unwrap();
    let stop = syncreplica::sync::StopFlag::new();
    let targets = ["b".to_string()];
    let base = counting_alloc::start();
    // The scan's outcome is kept until the export ends, as the command
    // keeps it (for its warnings).
    let (outcome, _, _) = syncreplica::sync::record::record_for_export(&mut replica).unwrap();
    let results = export_updates(
        &mut replica,
        &ExportRequest {
            targets: &targets,
            out_dir: &out,
            out_role: "-out directory",
            work_dir: None,
            max_size: 2 << 30,
            comment: "",
            full_content: false,
            before_commit: None,
            stop: &stop,
            after_target: None,
            mode: Mode::Normal,
            noencrypt: false,
        },
    )
    .unwrap();
    let peak = counting_alloc::peak_since(base);
    drop(outcome);
    let [(_, TargetExport::Written(summary))] = results.as_slice() else {
        panic!("no packet written");
    };
    // The changed chunks went as recipes over the old ones: the path
    // whose memory is measured.
    assert!(summary.chunks_as_recipes > 0, "{summary:?}");
    peak
}

#[test]
fn an_export_of_an_image_edited_in_place_holds_about_the_same_memory_at_32_and_128_mib() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let small = peak_heap_of_export(32);
    let large = peak_heap_of_export(128);
    eprintln!("peak heap: {small} bytes for a 32 MiB image, {large} for 128 MiB");
    // Held before for the larger image: its pieces as the scan read them
    // (about 2.7 MB) and those of the old chunks the recipes were built
    // over (about 4 MB), some 5 MB more than for the smaller one. Allowed
    // now: 2 MiB more (the chunk lists, a few bytes per 64 KiB chunk, and
    // noise), for four times the image.
    assert!(
        large <= small + (2 << 20),
        "peak heap grew from {small} to {large} bytes with four times the image"
    );
}
