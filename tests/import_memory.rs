//! An import's memory grows with the paths it leaves changed, not with
//! the operations it carries (issue 11; packet SPEC.md §13): a packet of
//! many versions of one path is imported with about the same peak heap
//! whatever their number.
//!
//! A test binary of its own: it counts every allocation of the process
//! (a global allocator) around an in-process import. SQLite's own cache
//! (bounded by its settings) is not counted.

use std::path::Path;
use std::process::Command;

use packet_format::Named;
use syncreplica::replica::Replica;
use syncreplica::sync::import::{import, ImportRequest, PacketOutcome};
use test_support::counting_alloc::{self, Counting};
use test_support::{write_many_ops, ManyOps, ManyOpsPacket};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by every test of this binary: the counters are the process's, so
/// a test running beside a measurement would count in it.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(bin: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `syncreplica -import -replica b packet`, which must succeed.
fn import_ok(b: &Path, packet: &Path) {
    run(
        env!("CARGO_BIN_EXE_syncreplica"),
        &[
            "-import".as_ref(),
            "-replica".as_ref(),
            b.as_os_str(),
            packet.as_os_str(),
        ],
    );
}

/// Nothing an import left over is taken for a local change: `-status` of
/// `b` names nothing under `folder`.
fn no_local_changes_under(b: &Path, folder: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_syncreplica"))
        .args(["-status".as_ref(), "-replica".as_ref(), b.as_os_str()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        !text.contains(folder),
        "status sees changes after the import: {text}"
    );
}

/// Two replicas `a` and `b` of one family under `dir`.
fn pair(dir: &Path) {
    pair_at(dir, &dir.join("b"));
}

/// Replica `a` under `dir` and its sibling at `b`.
fn pair_at(dir: &Path, b: &Path) {
    let mk = env!("CARGO_BIN_EXE_mkreplica");
    let (a, bay) = (dir.join("a"), dir.join("bay"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&bay).unwrap();
    run(
        mk,
        &[
            "-init".as_ref(),
            "-family".as_ref(),
            "f".as_ref(),
            "-replica".as_ref(),
            a.as_os_str(),
            "a".as_ref(),
        ],
    );
    run(
        mk,
        &[
            "-export".as_ref(),
            "-out".as_ref(),
            bay.as_os_str(),
            // The keys in their own file, so that no passphrase is asked.
            "-keyout".as_ref(),
            bay.join("b.key").as_os_str(),
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
            bay.join("b.key").as_os_str(),
            "-replica".as_ref(),
            b.as_os_str(),
            bay.as_os_str(),
        ],
    );
    std::fs::remove_dir_all(&bay).unwrap();
}

/// A packet of `count` operations of `kind` from `a` (under `dir`) to the
/// replica at `b`, in `dir/bay`.
fn many_ops_packet(dir: &Path, b: &Path, count: u64, kind: ManyOps) -> std::path::PathBuf {
    let from = Replica::open(&dir.join("a")).unwrap();
    let to = Replica::open(b).unwrap();
    let origin = from.identity.replica_id;
    let bay = dir.join("bay");
    std::fs::create_dir_all(&bay).unwrap();
    let have = to.state().epoch(&to.identity.replica_id, &origin).unwrap();
    write_many_ops(&ManyOpsPacket {
        family: Named {
            id: from.identity.family_id,
            name: from.identity.family_name.clone(),
        },
        sender: Named {
            id: origin,
            name: from.identity.replica_name.clone(),
        },
        secret: from.signing_key().unwrap().to_bytes(),
        target: Named {
            id: to.identity.replica_id,
            name: to.identity.replica_name.clone(),
        },
        have,
        count,
        kind,
        out_dir: &bay,
    })
}

/// The peak heap (bytes above what was allocated before) of importing a
/// packet of `count` operations of `kind` from `a` into `b`.
fn peak_heap_of_import(count: u64, kind: ManyOps) -> usize {
    let dir = tempfile::tempdir().unwrap();
    pair(dir.path());
    let b = dir.path().join("b");
    let packet = many_ops_packet(dir.path(), &b, count, kind);
    let to = Replica::open(&b).unwrap();
    let origin = Replica::open(&dir.path().join("a"))
        .unwrap()
        .identity
        .replica_id;
    let have = to.state().epoch(&to.identity.replica_id, &origin).unwrap();
    let mut to = to.lock("test").unwrap();
    let base = counting_alloc::start();
    let outcomes = import(
        &mut to,
        &ImportRequest {
            sources: vec![packet],
            remove: false,
        },
    )
    .unwrap();
    let peak = counting_alloc::peak_since(base);
    assert!(
        matches!(outcomes.as_slice(), [PacketOutcome::Applied { .. }]),
        "{outcomes:?}"
    );
    let epoch = to.state().epoch(&to.identity.replica_id, &origin).unwrap();
    assert_eq!(epoch, have + count, "every operation logged");
    peak
}

#[test]
fn an_import_holds_about_the_same_memory_for_5k_and_50k_operations_on_one_path() {
    let _serial = one_at_a_time();
    let small = peak_heap_of_import(5_000, ManyOps::OnePath);
    let large = peak_heap_of_import(50_000, ManyOps::OnePath);
    eprintln!("peak heap: {small} bytes for 5,000 operations, {large} for 50,000");
    // Held per operation before: about 1.5 KB, so some 65 MB more for the
    // larger packet. Allowed now: 2 MiB more (bits per operation, and
    // noise), for ten times the operations.
    assert!(
        large <= small + (2 << 20),
        "peak heap grew from {small} to {large} bytes with ten times the operations"
    );
}

#[test]
fn an_import_holds_about_the_same_memory_for_5k_and_50k_distinct_paths() {
    let _serial = one_at_a_time();
    let small = peak_heap_of_import(5_000, ManyOps::Deleted);
    let large = peak_heap_of_import(50_000, ManyOps::Deleted);
    eprintln!("peak heap: {small} bytes for 5,000 distinct paths, {large} for 50,000");
    // Held per planned path before (its entry, version vector included,
    // and the repair's lists of paths): some 600 bytes, so about 27 MB
    // more for the larger packet. The plan is in the scratch database
    // now: allowed 2 MiB more (noise), for ten times the paths.
    assert!(
        large <= small + (2 << 20),
        "peak heap grew from {small} to {large} bytes with ten times the paths"
    );
}

#[test]
fn an_import_holds_about_the_same_memory_for_5k_and_50k_paths_changed_on_disk() {
    let _serial = one_at_a_time();
    // Directories `dNNN/NNNNNNN` in the same 1,000 folders either way:
    // each path is made on disk, so the plan has disk actions for each
    // (the folders' own, made as this replica's operations, are the same
    // for both).
    let small = peak_heap_of_import(5_000, ManyOps::Dirs);
    let large = peak_heap_of_import(50_000, ManyOps::Dirs);
    eprintln!("peak heap: {small} bytes for 5,000 paths changed on disk, {large} for 50,000");
    // Held per path before: its disk actions (make, metadata, mode) and
    // the set of directories given their metadata, some 360 bytes, so
    // about 16 MB more for the larger packet. The actions are in the
    // scratch database now and the journal is run a page at a time:
    // allowed 2 MiB more (noise), for ten times the paths.
    assert!(
        large <= small + (2 << 20),
        "peak heap grew from {small} to {large} bytes with ten times the paths changed on disk"
    );
}

#[test]
fn an_import_holds_about_the_same_memory_for_5k_and_50k_files_whose_content_changes() {
    let _serial = one_at_a_time();
    // Small files `dNNN/fNNNNNNN` of their own content in the same 1,000
    // folders either way: each is staged from the packet's chunks and
    // placed.
    let small = peak_heap_of_import(5_000, ManyOps::Files);
    let large = peak_heap_of_import(50_000, ManyOps::Files);
    eprintln!("peak heap: {small} bytes for 5,000 files staged, {large} for 50,000");
    // Held per file before: its staging job (path, chunk list), the
    // assembler's target, its chunk's places and the list of chunks
    // wanted, and the chunk's packed pieces, about 300 bytes, so some
    // 13 MB more for the larger packet. They are in the scratch
    // database now: allowed 2 MiB more (noise), for ten times the files.
    assert!(
        large <= small + (2 << 20),
        "peak heap grew from {small} to {large} bytes with ten times the files staged"
    );
}

#[test]
fn an_import_holds_about_the_same_memory_for_2_5k_and_25k_folders_changed_on_disk() {
    let _serial = one_at_a_time();
    // Pairs of directories: a folder of its own (a 200-byte name) and a
    // directory in it, so each folder's content changes on disk and the
    // folder is written to disk (fsynced) once the journal ran.
    let small = peak_heap_of_import(5_000, ManyOps::Spread);
    let large = peak_heap_of_import(50_000, ManyOps::Spread);
    eprintln!("peak heap: {small} bytes for 2,500 folders changed on disk, {large} for 25,000");
    // Held per folder before: its path until the end of the journal,
    // some 230 bytes here, so about 5 MB more for the larger packet. The
    // folders are fsynced a page at a time now: allowed 2 MiB more
    // (noise), for ten times the folders.
    assert!(
        large <= small + (2 << 20),
        "peak heap grew from {small} to {large} bytes with ten times the folders changed on disk"
    );
    // Every folder and the directory in it were made.
    let dir = tempfile::tempdir().unwrap();
    pair(dir.path());
    let b = dir.path().join("b");
    let packet = many_ops_packet(dir.path(), &b, 10_000, ManyOps::Spread);
    import_ok(&b, &packet);
    for index in 0..5_000u64 {
        let folder = b.join(format!("{index:07}{}", "s".repeat(193)));
        assert!(folder.join("d").is_dir(), "{} not made", folder.display());
    }
}

#[test]
fn an_import_of_more_files_than_are_held_in_memory_stages_each_with_its_own_content() {
    let _serial = one_at_a_time();
    // More files than a page of the spooled plan (4,096), so that the
    // jobs and the chunks' places are written to the scratch database and
    // read back; every file must get its own content, mode and time.
    let dir = tempfile::tempdir().unwrap();
    pair(dir.path());
    let b = dir.path().join("b");
    let count = 6_000u64;
    let packet = many_ops_packet(dir.path(), &b, count, ManyOps::Files);
    import_ok(&b, &packet);
    use std::os::unix::fs::MetadataExt;
    for index in 0..count {
        let path = b.join(format!("d{:03}/f{index:07}", index % 1000));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(bytes, ManyOps::content(index), "{}", path.display());
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644, "{}", path.display());
        assert_eq!(meta.mtime(), 1_700_000_000, "{}", path.display());
    }
    assert!(!b.join(".syncreplica/batch-ops.db").exists());
    assert!(!b.join(".syncreplica/staging").exists());
    no_local_changes_under(&b, "d000/");
}

/// The paths of every entry recorded in `replica`, with their states'
/// kinds.
fn recorded_kinds(replica: &Replica) -> std::collections::BTreeMap<Vec<u8>, &'static str> {
    use syncreplica::ops::PathState;
    replica
        .state()
        .load_entries()
        .unwrap()
        .into_iter()
        .map(|(path, entry)| {
            let kind = match entry.state {
                PathState::Directory { .. } => "dir",
                PathState::Deleted => "deleted",
                _ => "other",
            };
            (path, kind)
        })
        .collect()
}

/// A replica `a` under `dir` whose tree holds `count` one-byte files in
/// folders of 1,000, and its creation packet for new member `b` in
/// `dir/bay` (with `b.key`).
fn creation_packet_of(dir: &Path, count: usize) -> std::path::PathBuf {
    let mk = env!("CARGO_BIN_EXE_mkreplica");
    let (a, bay) = (dir.join("a"), dir.join("bay"));
    for index in 0..count {
        let folder = a.join(format!("d{:03}", index / 1000));
        if index % 1000 == 0 {
            std::fs::create_dir_all(&folder).unwrap();
        }
        std::fs::write(folder.join(format!("f{index:07}")), b"x").unwrap();
    }
    std::fs::create_dir_all(&bay).unwrap();
    run(
        mk,
        &[
            "-init".as_ref(),
            "-family".as_ref(),
            "f".as_ref(),
            "-replica".as_ref(),
            a.as_os_str(),
            "a".as_ref(),
        ],
    );
    run(
        mk,
        &[
            "-export".as_ref(),
            "-out".as_ref(),
            bay.as_os_str(),
            // The keys in their own file, so that no passphrase is asked.
            "-keyout".as_ref(),
            bay.join("b.key").as_os_str(),
            "-replica".as_ref(),
            a.as_os_str(),
            "b".as_ref(),
        ],
    );
    bay
}

/// The peak heap (bytes above what was allocated before) of making
/// replica `b` from a creation packet of `count` files, in process.
fn peak_heap_of_creation_import(count: usize) -> usize {
    use syncreplica::sync::creation::import_creation;
    let dir = tempfile::tempdir().unwrap();
    let bay = creation_packet_of(dir.path(), count);
    let part = std::fs::read_dir(&bay)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "zip"))
        .unwrap();
    let signer = packet_format::examine_packet(&part, &[])
        .header
        .unwrap()
        .signer_key;
    // Made with -keyout: encrypted to the new member's own key, which its
    // key file holds (`encryption_key = "AGE-SECRET-KEY-…"`).
    let key_text = std::fs::read_to_string(bay.join("b.key")).unwrap();
    let identity = key_text
        .lines()
        .find_map(|line| line.strip_prefix("encryption_key"))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("the key file holds an encryption key")
        .parse::<age::x25519::Identity>()
        .unwrap();
    let decryption = std::sync::Arc::new(packet_format::Decryption::new(vec![identity], None));
    let packet = packet_format::LogicalPacket::assemble(vec![packet_format::verify_packet_with(
        &part,
        &[signer],
        Some(&decryption),
    )
    .unwrap()])
    .unwrap();
    let b = dir.path().join("b");
    let base = counting_alloc::start();
    let made =
        import_creation(&packet, &b, &bay.join("b.key"), false, &Default::default()).unwrap();
    let peak = counting_alloc::peak_since(base);
    assert_eq!(made.files, count as u64);
    drop(made);
    let to = Replica::open(&b).unwrap();
    // The files, their folders, and the root's own entry.
    assert_eq!(
        to.state().load_entries().unwrap().len(),
        count + count.div_ceil(1000) + 1
    );
    assert!(b
        .join(format!("d{:03}/f{:07}", (count - 1) / 1000, count - 1))
        .is_file());
    peak
}

#[test]
fn a_creation_import_holds_about_the_same_memory_for_5k_and_50k_files() {
    let _serial = one_at_a_time();
    let small = peak_heap_of_creation_import(5_000);
    let large = peak_heap_of_creation_import(50_000);
    eprintln!("peak heap: {small} bytes for 5,000 files, {large} for 50,000");
    // Held per file before: every operation decoded, per path its state,
    // the content targets and stats, about 1.3 KB, so some 60 MB more for
    // the larger packet. The operations and paths are in a scratch
    // database now, read back a page at a time: allowed 2 MiB more
    // (noise), for ten times the files.
    assert!(
        large <= small + (2 << 20),
        "peak heap grew from {small} to {large} bytes with ten times the files"
    );
}

#[test]
fn a_batch_larger_than_the_plan_held_in_memory_is_planned_and_applied_whole() {
    let _serial = one_at_a_time();
    // 6,000 directories `dNNN/NNNNNNN` in 1,000 folders the packet does
    // not make: more planned paths than are held in memory (4,096), so
    // the plan is written to the scratch database mid-way, and the
    // structure repair (each folder made, as this replica's operation)
    // reads it back a page at a time.
    let dir = tempfile::tempdir().unwrap();
    pair(dir.path());
    let b = dir.path().join("b");
    let packet = many_ops_packet(dir.path(), &b, 6_000, ManyOps::Dirs);
    import_ok(&b, &packet);
    let to = Replica::open(&b).unwrap();
    let kinds = recorded_kinds(&to);
    let mut expected = std::collections::BTreeMap::new();
    // The root's own entry (packet format 2.10).
    expected.insert(Vec::new(), "dir");
    for index in 0..6_000u64 {
        let folder = format!("d{:03}", index % 1000);
        expected.insert(folder.clone().into_bytes(), "dir");
        expected.insert(format!("{folder}/{index:07}").into_bytes(), "dir");
    }
    assert_eq!(kinds.len(), expected.len());
    assert!(
        kinds == expected,
        "the entries are not the 6,000 directories and their 1,000 folders"
    );
    for index in [0u64, 4_095, 4_096, 5_999] {
        let path = b.join(format!("d{:03}/{index:07}", index % 1000));
        assert!(path.is_dir(), "{} not made", path.display());
    }
    // The folders were made as this replica's own operations, and the
    // scratch database is gone.
    let me = to.identity.replica_id;
    assert_eq!(to.state().epoch(&me, &me).unwrap(), 1_000);
    assert!(!b.join(".syncreplica/batch-ops.db").exists());
    no_local_changes_under(&b, "d000/");
}

/// Unmounts its mount point when dropped.
struct Mounted(std::path::PathBuf);

/// Mounts a tmpfs of `size` (mount's syntax, e.g. "700k") on `dir`, unmounted
/// when the guard drops; `None` (the test is skipped, said on stderr) where
/// it cannot be mounted (not root), except under CI, where that fails.
fn mount_small_tmpfs(dir: &Path, size: &str) -> Option<Mounted> {
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    match mounted {
        Ok(out) if out.status.success() => Some(Mounted(dir.to_path_buf())),
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                Err(err) => err.to_string(),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot mount a small tmpfs for this test: {why}"
            );
            eprintln!("skipped: cannot mount a small tmpfs (needs root): {why}");
            None
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Files under `dir` (path and size), the state database's rows left out
/// (its WAL changes size as it is read): what a failed import must leave
/// as it was, with the epoch row.
fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // SQLite's companions of the state database, and the lock
            // file, come and go with readers.
            if name.starts_with("state.db-") || name == "lock" {
                continue;
            }
            if meta.is_dir() {
                pending.push(path.clone());
            }
            let size = if name.starts_with("state.db") || meta.is_dir() {
                0
            } else {
                meta.len()
            };
            out.push((path.strip_prefix(dir).unwrap().display().to_string(), size));
        }
    }
    out.sort();
    out
}

#[test]
fn a_full_disk_while_copying_a_packet_into_the_scratch_database_is_a_clear_error() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // The replica on a small filesystem of its own (a tmpfs, which needs
    // root); the packet elsewhere.
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let Some(_unmount) = mount_small_tmpfs(&small, "1536k") else {
        return;
    };
    let b = small.join("b");
    pair_at(dir.path(), &b);
    // Some 40,000 operations: several MB in the scratch database.
    let packet = many_ops_packet(dir.path(), &b, 40_000, ManyOps::Deleted);
    let before = files_under(&b);
    let epochs_before = {
        let to = Replica::open(&b).unwrap();
        to.state().epoch_row(&to.identity.replica_id).unwrap()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_syncreplica"))
        .args([
            "-import".as_ref(),
            "-replica".as_ref(),
            b.as_os_str(),
            packet.as_os_str(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("syncreplica: error: no room for the import's scratch database")
            && stderr.contains("batch-ops.db")
            && stderr.contains("is full")
            && stderr.contains("copying the packet's operations")
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: free space on"), "{stderr}");
    // Nothing half-changed: the scratch database is gone, the files and
    // the epoch row are as they were, and the packet is where it was.
    assert!(!b.join(".syncreplica/batch-ops.db").exists());
    assert_eq!(files_under(&b), before);
    let to = Replica::open(&b).unwrap();
    assert_eq!(
        to.state().epoch_row(&to.identity.replica_id).unwrap(),
        epochs_before
    );
    assert!(packet.exists());
    // And the replica goes on.
    let status = Command::new(env!("CARGO_BIN_EXE_syncreplica"))
        .args(["-status".as_ref(), "-replica".as_ref(), b.as_os_str()])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn a_full_disk_at_the_state_databases_commit_is_a_clear_error_and_changes_nothing() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // The replica on a small filesystem of its own (a tmpfs, which needs
    // root).
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let Some(_unmount) = mount_small_tmpfs(&small, "700k") else {
        return;
    };
    let r = small.join("r");
    std::fs::create_dir_all(&r).unwrap();
    run(
        env!("CARGO_BIN_EXE_mkreplica"),
        &[
            "-init".as_ref(),
            "-family".as_ref(),
            "f".as_ref(),
            "-replica".as_ref(),
            r.as_os_str(),
            "a".as_ref(),
        ],
    );
    // Empty files take no room in a tmpfs, but their 6,000 entries,
    // operations and seals do not fit in what is left for the database.
    for index in 0..6_000 {
        std::fs::write(
            r.join(format!("file-with-a-rather-long-name-{index:05}")),
            b"",
        )
        .unwrap();
    }
    let record = || {
        Command::new(env!("CARGO_BIN_EXE_syncreplica"))
            .args(["-record".as_ref(), "-replica".as_ref(), r.as_os_str()])
            .output()
            .unwrap()
    };
    let out = record();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("syncreplica: error: no room for state database")
            && stderr.contains(".syncreplica/state.db")
            && stderr.contains("is full (")
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hint: free space on {}", small.display())),
        "{stderr}"
    );
    // Nothing recorded: only the root's entry, recorded by -init.
    {
        let to = Replica::open(&r).unwrap();
        let me = to.identity.replica_id;
        assert_eq!(to.state().epoch(&me, &me).unwrap(), 1);
        let entries = to.state().load_entries().unwrap();
        assert!(
            entries.keys().all(|path| path.is_empty()),
            "{}",
            entries.len()
        );
    }
    // With room made, the replica goes on.
    for index in 500..6_000 {
        std::fs::remove_file(r.join(format!("file-with-a-rather-long-name-{index:05}"))).unwrap();
    }
    let out = record();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let to = Replica::open(&r).unwrap();
    // The 500 files and the root.
    assert_eq!(to.state().load_entries().unwrap().len(), 501);
}
