//! The foundation: mkreplica -init, change capture, excludes, locking,
//! lsreplica, lsepoch and chepoch.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use syncreplica::ops::{Id, PathState};
use syncreplica::replica::Replica;
use syncreplica::store::state::{self, Member};
use syncreplica::tree::scan::ScanHooks;

use crate::helpers::*;

fn file_chunks(state: &PathState) -> &[syncreplica::ops::ChunkRef] {
    match state {
        PathState::File { chunks, .. } => chunks,
        other => panic!("expected a file, got {other:?}"),
    }
}

#[test]
fn init_records_existing_content_and_status_is_clean() {
    let dir = tree(&[("a.txt", "alpha"), ("sub/b.txt", "beta")]);
    let out = run(
        dir.path(),
        "mkreplica",
        ["-init", "-family", "fam", "alpha"],
    )
    .ok();
    assert!(
        out.stdout
            .contains("Created replica \"alpha\" of new family \"fam\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("key fingerprint:"), "{}", out.stdout);
    let ops = path_changes(&own_operations_after(dir.path(), 0));
    let paths: Vec<&[u8]> = ops.iter().map(|(p, _)| p.as_slice()).collect();
    // The root first (its own metadata, SPEC.md §6.2.1).
    assert_eq!(paths, [&b""[..], b"a.txt", b"sub", b"sub/b.txt"]);
    assert_eq!(own_epoch(dir.path()), 4);

    let status = run(dir.path(), "syncreplica", ["-status"]).ok();
    assert!(
        status.stdout.contains("no changes to record"),
        "{}",
        status.stdout
    );
    let key_mode = std::fs::metadata(dir.path().join(".syncreplica/signing_key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
}

#[test]
fn every_kind_of_change_is_captured() {
    let dir = tree(&[
        ("keep.txt", "unchanged"),
        ("modify.txt", "before"),
        ("delete.txt", "doomed"),
        ("rename-from.txt", "some content that moves"),
        ("script.sh", "#!/bin/sh\necho hi\n"),
    ]);
    init(dir.path(), "alpha");
    let root = dir.path();
    let before = own_epoch(root);

    write(root, "new/created.txt", "fresh");
    write(root, "modify.txt", "after, and longer");
    std::fs::remove_file(root.join("delete.txt")).unwrap();
    std::fs::rename(root.join("rename-from.txt"), root.join("rename-to.txt")).unwrap();
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("keep.txt", root.join("link")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    let raw_name = std::ffi::OsStr::from_bytes(b"caf\xe9-\xff.bin");
    std::fs::write(root.join(raw_name), "latin-1 name").unwrap();

    let status = run(root, "syncreplica", ["-status"]).ok();
    for line in [
        "new file:      new/created.txt",
        "new directory: new",
        "modified:      modify.txt",
        "deleted:       delete.txt",
        "deleted:       rename-from.txt",
        "new file:      rename-to.txt",
        "mode changed:  script.sh (644 -> 755)",
        "new symlink:   link -> keep.txt",
        "new directory: empty",
        "new file:      caf\\xe9-\\xff.bin",
    ] {
        assert!(
            status.stdout.contains(line),
            "missing {line:?} in:\n{}",
            status.stdout
        );
    }
    assert!(
        !status
            .stdout
            .lines()
            .any(|l| l.ends_with(" keep.txt") && !l.contains("->")),
        "{}",
        status.stdout
    );
    // -status records nothing.
    assert_eq!(own_epoch(root), before);

    let out = run(root, "syncreplica", ["-record"]).ok();
    // Ten paths, and the root whose mtime the adds and removes moved.
    assert!(out.stdout.contains("Recorded 11 changes"), "{}", out.stdout);
    let ops = own_operations_after(root, before);
    assert_eq!(ops.len(), 11);
    assert_eq!(
        ops.iter().map(|o| o.epoch).collect::<Vec<_>>(),
        (before + 1..=before + 11).collect::<Vec<_>>()
    );
    let changes = path_changes(&ops);
    let state_of = |path: &[u8]| {
        changes
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no op for {}", String::from_utf8_lossy(path)))
    };
    // Deletions come first, so a later create never collides with them.
    assert_eq!(changes[0].1, PathState::Deleted);
    assert_eq!(state_of(b"delete.txt"), PathState::Deleted);
    assert_eq!(state_of(b"rename-from.txt"), PathState::Deleted);
    assert!(matches!(
        state_of(b"link"),
        PathState::Symlink { target, mtime: Some(_), .. } if target == b"keep.txt"
    ));
    assert!(matches!(state_of(b"empty"), PathState::Directory { .. }));
    assert!(matches!(
        state_of(b"script.sh"),
        PathState::File { mode: 0o755, .. }
    ));
    assert!(matches!(
        state_of(b"caf\xe9-\xff.bin"),
        PathState::File { size: 12, .. }
    ));

    // A rename is a delete plus a create of content already known.
    let original = path_changes(&own_operations_after(root, 0))
        .into_iter()
        .find(|(p, _)| p == b"rename-from.txt")
        .unwrap()
        .1;
    assert_eq!(
        file_chunks(&state_of(b"rename-to.txt")),
        file_chunks(&original)
    );

    let status = run(root, "syncreplica", ["-status"]).ok();
    assert!(
        status.stdout.contains("no changes to record"),
        "{}",
        status.stdout
    );
}

#[test]
fn type_changes_and_directory_removal_are_ordered_safely() {
    let dir = tree(&[("d/x.txt", "x"), ("f", "file")]);
    init(dir.path(), "alpha");
    let root = dir.path();
    let before = own_epoch(root);
    std::fs::remove_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d"), "now a file").unwrap();
    std::fs::remove_file(root.join("f")).unwrap();
    std::fs::create_dir(root.join("f")).unwrap();
    run(root, "syncreplica", ["-record"]).ok();
    let changes = path_changes(&own_operations_after(root, before));
    let order: Vec<&[u8]> = changes.iter().map(|(p, _)| p.as_slice()).collect();
    // The root's mtime moved too: it sorts first among the updates.
    assert_eq!(order, [&b"d/x.txt"[..], b"", b"d", b"f"]);
    assert_eq!(changes[0].1, PathState::Deleted);
    assert!(matches!(changes[2].1, PathState::File { .. }));
    assert!(matches!(changes[3].1, PathState::Directory { .. }));
}

#[test]
fn unchanged_files_are_not_read_but_racily_clean_ones_are() {
    let dir = tree(&[("old.txt", "settled long ago")]);
    // Let old.txt's timestamps fall outside the racy window first.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    init(dir.path(), "alpha");
    let replica = Replica::open(dir.path()).unwrap();
    let outcome = replica.scan(&mut ScanHooks::default()).unwrap();
    assert_eq!(outcome.files_seen, 1);
    assert_eq!(
        outcome.files_read, 0,
        "an unchanged, settled file must not be read"
    );

    // Written just before it was recorded: racily clean, so it is read again
    // even though its stat has not changed since.
    write(dir.path(), "fresh.txt", "just written");
    let mut replica = Replica::open(dir.path()).unwrap().lock("test").unwrap();
    let outcome = replica.scan(&mut ScanHooks::default()).unwrap();
    replica.record(&outcome).unwrap();
    let outcome = replica.scan(&mut ScanHooks::default()).unwrap();
    assert_eq!(outcome.files_read, 1, "the racily clean file is re-hashed");
    assert!(outcome.changes.is_empty());

    // Same size, same mtime, new content: caught.
    let path = dir.path().join("fresh.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "JUST WRITTEN").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let outcome = replica.scan(&mut ScanHooks::default()).unwrap();
    assert_eq!(outcome.changes.len(), 1);
    assert_eq!(outcome.changes[0].path, b"fresh.txt");
}

#[test]
fn files_read_on_two_threads_are_seen_as_on_one() {
    let dir = tree(&[("steady.txt", "steady")]);
    init(dir.path(), "alpha");
    // Enough to read for a second thread (8 files, 256 KiB): new files
    // of many sizes, an empty one and one that is a hole. Whether the
    // thread is used is checked through the commands
    // (`delta::many_small_files_edited_twice_ship_recipes_both_times`).
    for i in 0..30u64 {
        let content = random_bytes(40 + i, 20_000 + 3_000 * i as usize);
        std::fs::write(dir.path().join(format!("f{i:02}")), content).unwrap();
    }
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    std::fs::File::create(dir.path().join("hole"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let replica = Replica::open(dir.path()).unwrap();
    let two = replica.scan(&mut ScanHooks::default()).unwrap();
    // A test's hook keeps the reading on the scan's own thread.
    let mut hooks = ScanHooks {
        after_read: Some(Box::new(|_: &Path| {})),
    };
    let one = replica.scan(&mut hooks).unwrap();
    drop(hooks);
    assert_eq!(two.files_read, 33, "the new files and the racily clean one");
    assert_eq!(two.files_read, one.files_read);
    assert_eq!(two.bytes_read, one.bytes_read);
    let states = |outcome: &syncreplica::tree::scan::ScanOutcome| {
        outcome
            .changes
            .iter()
            .map(|c| (c.path.clone(), c.new.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(states(&two), states(&one));
    assert_eq!(two.changes.len(), 32 + 1, "32 new files and the root");
    let pieces = |mut outcome: syncreplica::tree::scan::ScanOutcome| {
        outcome.pieces.sort();
        outcome.pieces
    };
    let (two, one) = (pieces(two), pieces(one));
    assert!(!two.is_empty());
    assert_eq!(two, one);
}

#[test]
fn a_file_changing_during_the_scan_is_never_recorded_half_written() {
    let dir = tree(&[("steady.txt", "steady")]);
    init(dir.path(), "alpha");
    let root = dir.path().to_path_buf();
    write(&root, "growing.log", "line 1\n");
    let mut replica = Replica::open(&root).unwrap().lock("test").unwrap();
    let before = own_epoch(&root);

    // A writer that appends every time the scanner finishes reading.
    let mut appended = 0;
    let mut hooks = ScanHooks {
        after_read: Some(Box::new(|path: &Path| {
            if path.ends_with("growing.log") {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                writeln!(f, "more").unwrap();
                appended += 1;
            }
        })),
    };
    let outcome = replica.scan(&mut hooks).unwrap();
    drop(hooks);
    assert_eq!(appended, syncreplica::tree::scan::READ_ATTEMPTS);
    assert!(outcome.changes.iter().all(|c| c.path != b"growing.log"));
    let warning = outcome
        .warnings
        .iter()
        .find(|w| w.path == b"growing.log")
        .expect("a warning");
    assert!(
        warning
            .kind
            .to_string()
            .contains("changed while being read"),
        "{}",
        warning.kind
    );
    replica.record(&outcome).unwrap();
    assert!(
        outcome.changes.iter().all(|c| c.path.is_empty()),
        "only the root's mtime may have moved"
    );
    let root_moved = outcome.changes.len() as u64;
    assert_eq!(own_epoch(&root), before + root_moved);

    // A writer that changes the file once: the retry records the final content.
    let mut changed_once = false;
    let mut hooks = ScanHooks {
        after_read: Some(Box::new(|path: &Path| {
            if path.ends_with("growing.log") && !changed_once {
                std::fs::write(path, "rewritten completely\n").unwrap();
                changed_once = true;
            }
        })),
    };
    let outcome = replica.scan(&mut hooks).unwrap();
    drop(hooks);
    let change = outcome
        .changes
        .iter()
        .find(|c| c.path == b"growing.log")
        .unwrap();
    match &change.new {
        PathState::File { size, .. } => assert_eq!(*size, "rewritten completely\n".len() as u64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn excludes_from_ignore_file_and_config_stay_local() {
    let dir = tree(&[
        (".syncreplicaignore", "*.tmp\ncache/\n"),
        ("etc/hosts", "127.0.0.1 here"),
        ("etc/passwd", "root:x:0:0"),
        ("work.tmp", "scratch"),
        ("cache/blob", "cached"),
        ("kept.txt", "kept"),
    ]);
    // The config is written by mkreplica; set the excludes right after.
    init(dir.path(), "alpha");
    let root = dir.path();
    let paths: Vec<Vec<u8>> = path_changes(&own_operations_after(root, 0))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(!paths.contains(&b"work.tmp".to_vec()));
    assert!(!paths.iter().any(|p| p.starts_with(b"cache")));
    assert!(paths.contains(&b"etc/hosts".to_vec()));

    let config = root.join(".syncreplica/config.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("exclude = []", "exclude = [\"/etc/hosts\", \"/etc/fstab\"]");
    std::fs::write(&config, text).unwrap();
    let etc_time = std::fs::metadata(root.join("etc"))
        .unwrap()
        .modified()
        .unwrap();
    let root_time = std::fs::metadata(root).unwrap().modified().unwrap();
    write(root, "etc/fstab", "/dev/sda1 / ext4");
    write(root, "etc/hosts", "changed here only");
    write(root, "other.tmp", "also ignored");
    // Making the excluded fstab moved etc's time (a change of its own,
    // not this test's subject): put back.
    std::fs::File::open(root.join("etc"))
        .unwrap()
        .set_modified(etc_time)
        .unwrap();
    // The same for the root, which making other.tmp moved.
    std::fs::File::open(root)
        .unwrap()
        .set_modified(root_time)
        .unwrap();

    let status = run(root, "syncreplica", ["-status"]).ok();
    assert!(
        status.stdout.contains("now excluded:  etc/hosts"),
        "{}",
        status.stdout
    );
    // Nothing but the newly excluded path: said so, not "0 changes ...:".
    assert!(
        status
            .stdout
            .contains("no changes to record; newly excluded:\n  now excluded:  etc/hosts"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("fstab"), "{}", status.stdout);
    assert!(!status.stdout.contains("other.tmp"), "{}", status.stdout);
    let before = own_epoch(root);
    run(root, "syncreplica", ["-record"]).ok();
    // Newly excluded: forgotten locally, never reported as deleted.
    assert!(own_operations_after(root, before).is_empty());
    assert!(root.join("etc/hosts").exists());
    let replica = Replica::open(root).unwrap();
    assert!(!replica
        .state()
        .load_entries()
        .unwrap()
        .contains_key(b"etc/hosts".as_slice()));
}

#[test]
fn a_bad_config_is_a_clear_error_naming_file_and_line() {
    let dir = tree(&[("a", "a")]);
    init(dir.path(), "alpha");
    let config = dir.path().join(".syncreplica/config.toml");
    std::fs::write(&config, "exclude = []\nsoft_delete_dayz = 4\n").unwrap();
    let out = run(dir.path(), "syncreplica", ["-status"]).fails_with(1);
    assert!(
        out.stderr.starts_with("syncreplica: error: "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("config.toml: line 2"), "{}", out.stderr);
    assert!(out.stderr.contains("soft_delete_dayz"), "{}", out.stderr);
}

#[test]
fn special_files_are_skipped_with_a_warning() {
    let dir = tree(&[("a", "a")]);
    let fifo = dir.path().join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let out = run(
        dir.path(),
        "mkreplica",
        ["-init", "-family", "fam", "alpha"],
    )
    .ok();
    // FIFOs are kept by default (preserve: specials; format 2.3).
    assert!(!out.stderr.contains("pipe"), "{}", out.stderr);
    // The root, the file and the FIFO.
    assert_eq!(own_epoch(dir.path()), 3);
    // A replica that does not keep them skips them with a warning, and
    // does not take the recorded one for deleted.
    let config = dir.path().join(".syncreplica/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\npreserve = [\"owner\", \"group\", \"acls\", \"xattrs\", \"hardlinks\"]\n"),
    )
    .unwrap();
    // Making and removing the FIFOs moves the root's mtime (a change of
    // its own, not this test's subject): put back below.
    let root_time = std::fs::metadata(dir.path()).unwrap().modified().unwrap();
    let second = dir.path().join("pipe2");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &second,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::fs::remove_file(&fifo).unwrap();
    std::fs::File::open(dir.path())
        .unwrap()
        .set_modified(root_time)
        .unwrap();
    let status = run(dir.path(), "syncreplica", ["-status"]).ok();
    assert!(
        status
            .stderr
            .contains("syncreplica: warning: pipe2: is a fifo; skipped"),
        "{}",
        status.stderr
    );
    assert!(
        status.stdout.contains("no changes to record"),
        "{}",
        status.stdout
    );
}

#[test]
fn mkreplica_refuses_nested_replicas_and_changes_nothing() {
    let dir = tree(&[("inner/file", "x")]);
    init(dir.path(), "outer");
    let out = run(
        dir.path(),
        "mkreplica",
        ["-init", "-family", "other", "-replica", "inner", "nested"],
    )
    .fails_with(2);
    assert!(
        out.stderr.contains("is already inside replica \"outer\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("mkreplica: hint:"), "{}", out.stderr);
    assert!(!dir.path().join("inner/.syncreplica").exists());
    // A directory still to be made is named as asked, not as its nearest
    // existing ancestor.
    let out = run(
        dir.path(),
        "mkreplica",
        [
            "-init",
            "-family",
            "other",
            "-replica",
            "inner/new/deeper",
            "nested",
        ],
    )
    .fails_with(2);
    let root = std::fs::canonicalize(dir.path()).unwrap();
    assert!(
        out.stderr.contains(&format!(
            "{} is already inside replica \"outer\"",
            root.join("inner/new/deeper").display()
        )),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("inner/new").exists());

    // The other way round: a replica below the new root.
    let outer = tempfile::tempdir().unwrap();
    std::fs::create_dir(outer.path().join("below")).unwrap();
    init(&outer.path().join("below"), "below");
    let out = run(
        outer.path(),
        "mkreplica",
        ["-init", "-family", "f", "above"],
    )
    .fails_with(2);
    assert!(
        out.stderr.contains("already holds a replica"),
        "{}",
        out.stderr
    );
    assert!(!outer.path().join(".syncreplica").exists());
    assert!(std::fs::read_dir(outer.path()).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".syncreplica")
    }));
}

#[test]
fn bad_names_and_missing_replicas_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        "mkreplica",
        ["-init", "-family", "fam", "bad name"],
    )
    .fails_with(2);
    assert!(
        out.stderr.contains("invalid replica name \"bad name\""),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join(".syncreplica").exists());

    let out = run(dir.path(), "syncreplica", ["-status"]).fails_with(2);
    assert!(
        out.stderr
            .contains("syncreplica: error: no replica found in"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("syncreplica: hint:"), "{}", out.stderr);

    let out = run(dir.path(), "syncreplica", ["-frobnicate"]).fails_with(2);
    assert!(
        out.stderr.starts_with("syncreplica: error:"),
        "{}",
        out.stderr
    );
}

#[test]
fn single_and_double_dash_options_are_equivalent() {
    let dir = tree(&[("a", "a")]);
    let sub = dir.path().join("deep/er");
    std::fs::create_dir_all(&sub).unwrap();
    run(
        dir.path(),
        "mkreplica",
        ["--init", "--family=fam", "--replica", ".", "alpha"],
    )
    .ok();
    // Found from a subdirectory, as git does, and named with -replica.
    let a = run(&sub, "syncreplica", ["-status"]).ok();
    let b = run(
        Path::new("/"),
        "syncreplica",
        [
            std::ffi::OsStr::new("--status"),
            "--replica".as_ref(),
            dir.path().as_os_str(),
        ],
    )
    .ok();
    let c = run(
        Path::new("/"),
        "syncreplica",
        [
            std::ffi::OsStr::new("-status"),
            "-replica".as_ref(),
            dir.path().as_os_str(),
        ],
    )
    .ok();
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(b.stdout, c.stdout);
}

#[test]
fn a_second_process_is_locked_out_with_the_holders_pid() {
    let dir = tree(&[("a", "a")]);
    init(dir.path(), "alpha");
    let replica = Replica::open(dir.path()).unwrap();
    let lock = replica.lock("integration test").unwrap();
    write(dir.path(), "b", "b");
    let out = run(dir.path(), "syncreplica", ["-record"]).fails_with(3);
    let pid = std::process::id();
    assert!(
        out.stderr
            .contains(&format!("is locked by process {pid} (integration test)")),
        "{}",
        out.stderr
    );
    drop(lock);
    let out = run(dir.path(), "syncreplica", ["-record"]).ok();
    assert!(!out.stderr.contains("took over"), "{}", out.stderr);
}

#[test]
fn a_stale_lock_of_a_dead_process_is_taken_over() {
    let dir = tree(&[("a", "a")]);
    init(dir.path(), "alpha");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    std::fs::write(
        dir.path().join(".syncreplica/lock"),
        format!("{dead_pid}\nsyncreplica -record\n"),
    )
    .unwrap();
    write(dir.path(), "b", "b");
    let out = run(dir.path(), "syncreplica", ["-record"]).ok();
    assert!(
        out.stderr.contains("took over the lock")
            && out.stderr.contains(&format!("left by process {dead_pid}")),
        "{}",
        out.stderr
    );
    // b, and the root's mtime that making it moved.
    assert!(out.stdout.contains("Recorded 2 changes"), "{}", out.stdout);
}

/// Adds a sibling member directly, as an import of its creation packet will.
fn add_sibling(root: &Path, name: &str) -> Id {
    let mut replica = Replica::open(root).unwrap().lock("test").unwrap();
    let id = Id([name.len() as u8; 16]);
    replica
        .state_mut()
        .transaction(|tx| {
            state::insert_member(
                tx,
                &Member {
                    replica: id,
                    name: name.into(),
                    public_key: [9; 32],
                },
                0,
            )?;
            Ok(())
        })
        .unwrap();
    id
}

#[test]
fn lsepoch_and_chepoch_show_and_repair_estimates() {
    let dir = tree(&[("a", "1"), ("b", "2"), ("c", "3")]);
    init(dir.path(), "alpha");
    let root = dir.path();
    add_sibling(root, "boston_hub");

    let out = run(root, "lsepoch", [] as [&str; 0]).ok();
    insta::with_settings!({filters => redactions()}, {
        insta::assert_snapshot!("lsepoch_two_members", out.stdout);
    });

    // A confirmation is required; "no" (or end of input) changes nothing.
    let out = run_answering(root, "chepoch", ["boston_hub", "alpha=2"], "no\n").fails_with(1);
    assert!(out.stderr.contains("not confirmed"), "{}", out.stderr);
    assert!(run(root, "lsepoch", ["boston_hub"])
        .ok()
        .stdout
        .contains("alpha      = 0 "));
    let out = run_answering(root, "chepoch", ["boston_hub", "alpha=2"], "yes\n").ok();
    assert!(
        out.stdout
            .contains("Entry for alpha in row \"boston_hub\" changed from: 0 to 2"),
        "{}",
        out.stdout
    );
    let out = run(
        root,
        "chepoch",
        ["-force", "boston_hub", "alpha=1", "boston_hub=7"],
    )
    .ok();
    assert!(
        out.stdout.contains("changed from: 2 to 1"),
        "{}",
        out.stdout
    );
    let row = run(root, "lsepoch", ["boston_hub"]).ok().stdout;
    assert!(
        row.contains("Epochs in row \"boston_hub\" (estimate)"),
        "{row}"
    );
    assert!(row.contains("alpha      = 1 "), "{row}");
    assert!(row.contains("boston_hub = 7 "), "{row}");
    assert!(!row.contains("row \"alpha\""), "{row}");

    // Every one is a mistake on the command line (2): a malformed
    // setting, found before the replica is read, and a row or an origin
    // the replica's members and epochs cannot take.
    for (args, message, code) in [
        (
            vec!["-force", "alpha", "alpha=1"],
            "this replica's own row",
            2,
        ),
        (
            vec!["-force", "nowhere", "alpha=1"],
            "unknown replica \"nowhere\"",
            2,
        ),
        (
            vec!["-force", "boston_hub", "alpha"],
            "expected ORIGIN=EPOCH",
            2,
        ),
        (
            vec!["-force", "boston_hub", "alpha=x"],
            "is not a whole number",
            2,
        ),
        (
            vec!["-force", "boston_hub", "alpha=99"],
            "recorded only up to epoch 4",
            2,
        ),
        (
            vec!["-force", "boston_hub", "alpha=1", "alpha=2"],
            "named twice",
            2,
        ),
    ] {
        let out = run(root, "chepoch", &args).fails_with(code);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    // None of the refused requests changed anything.
    assert_eq!(run(root, "lsepoch", ["boston_hub"]).ok().stdout, row);
}

#[test]
fn lsreplica_lists_members_with_fingerprints() {
    let dir = tree(&[("a", "1")]);
    init(dir.path(), "alpha");
    add_sibling(dir.path(), "beta");
    let short = run(dir.path(), "lsreplica", [] as [&str; 0]).ok();
    let long = run(dir.path(), "lsreplica", ["-long"]).ok();
    // An operation's encoding holds its time: its length varies by a byte.
    let mut filters = redactions();
    filters.push((r"(operation log: .*), \d+ bytes", "$1, [N] bytes"));
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("lsreplica_short", short.stdout);
        insta::assert_snapshot!("lsreplica_long", long.stdout);
    });
}

#[test]
fn files_dated_far_from_now_record_without_wrapping_or_phantom_changes() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    // 2400-01-01, 1600-01-01 and 1969-12-31: beyond and before what i64
    // nanoseconds hold, and before 1970.
    for (name, secs) in [
        ("future.txt", 13_569_465_600i64),
        ("past.txt", -11_676_096_000),
        ("before1970.txt", -86_400),
    ] {
        write(&a, name, name);
        let file = std::fs::File::options()
            .write(true)
            .open(a.join(name))
            .unwrap();
        let when = if secs >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
        };
        file.set_modified(when).unwrap();
    }
    run(&a, "syncreplica", ["-record"]).ok();
    // Nothing changed since: nothing to record, at the origin...
    let status = run(&a, "syncreplica", ["-status"]).ok();
    assert!(!status.stdout.contains("future.txt"), "{}", status.stdout);
    let out = fam.packet_dir("dates");
    export_to(&a, &out, &["beta"], &[]).ok();
    import_from(&b, &[&out]).ok();
    // ...nor at the receiver, and before-1970 keeps its exact time.
    let status = run(&b, "syncreplica", ["-status"]).ok();
    for name in ["future.txt", "past.txt", "before1970.txt"] {
        assert!(!status.stdout.contains(name), "{}", status.stdout);
        assert_eq!(std::fs::read_to_string(b.join(name)).unwrap(), name);
    }
    assert_eq!(
        std::fs::metadata(b.join("before1970.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(86_400)
    );
    // Nothing goes back to overwrite the origin.
    let back = fam.packet_dir("back");
    let res = export_to(&b, &back, &["alpha"], &[]).ok();
    assert!(res.stdout.contains("lacks nothing"), "{}", res.stdout);
}

#[test]
fn status_in_json_lists_every_change_for_scripts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tree(&[
        ("keep.txt", "same"),
        ("gone.txt", "x"),
        ("run.sh", "#!/bin/sh\n"),
    ]);
    let root = dir.path();
    init(root, "alpha");
    let clean = run(root, "syncreplica", ["-status", "-fmt", "json"]).ok();
    let value: serde_json::Value = serde_json::from_str(&clean.stdout).unwrap();
    assert_eq!(value["version"], 1);
    assert_eq!(value["changes"], serde_json::json!([]));
    assert_eq!(value["not_applied"], serde_json::json!([]));

    let root_time = std::fs::metadata(root).unwrap().modified().unwrap();
    write(root, "new.txt", "fresh");
    std::fs::remove_file(root.join("gone.txt")).unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The root's mtime, moved by the add and the remove, is a change of
    // its own (listed as "."): put back, not this test's subject.
    std::fs::File::open(root)
        .unwrap()
        .set_modified(root_time)
        .unwrap();
    let out = run(root, "syncreplica", ["-status", "-fmt", "json"]).ok();
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value["replica"], "alpha");
    let changes: Vec<(String, String)> = value["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("deleted".to_string(), "gone.txt".to_string()),
            ("new".to_string(), "new.txt".to_string()),
            ("mode changed".to_string(), "run.sh".to_string()),
        ]
    );
    let mode = &value["changes"][2];
    assert_eq!(
        (mode["old_mode"].as_u64(), mode["new_mode"].as_u64()),
        (Some(0o644), Some(0o755))
    );
    // JSON is for -status, -export and -import; elsewhere it is a usage error.
    let refused = run(root, "syncreplica", ["-record", "-fmt", "json"]).fails_with(2);
    assert!(
        refused
            .stderr
            .contains("-fmt json applies to -status, -export and -import"),
        "{}",
        refused.stderr
    );
}

#[test]
fn an_out_directory_that_cannot_be_made_is_refused_clearly_before_anything_is_recorded() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let alpha = fam.root("alpha");
    write(&alpha, "b.txt", "new");
    let before = own_epoch(&alpha);
    // /proc takes no new directories.
    let out = std::path::Path::new("/proc/nope");
    let refused = export_to(&alpha, out, &["beta"], &[]).fails_with(1);
    assert!(
        refused.stderr.contains(
            "syncreplica: error: cannot write packets to the -out directory /proc/nope: it does \
             not exist and cannot be made there"
        ) && refused
            .stderr
            .contains("syncreplica: hint: name with -out a directory"),
        "{}",
        refused.stderr
    );
    assert_eq!(own_epoch(&alpha), before);
    let refused = mkreplica_export(&alpha, out, "gamma").fails_with(1);
    assert!(
        refused
            .stderr
            .contains("mkreplica: error: cannot write packets to the -out directory /proc/nope")
            && refused.stderr.contains("mkreplica: hint:"),
        "{}",
        refused.stderr
    );
    assert_eq!(own_epoch(&alpha), before);
}

#[test]
fn the_entries_a_record_keeps_in_memory_are_those_it_wrote() {
    // Later steps of the same command (an export's chunk index and tree
    // digest, an import's plan) use what the record kept, not the database.
    let dir = tree(&[
        ("edit.txt", "before"),
        ("gone.txt", "deleted soon"),
        ("same.txt", "unchanged"),
        ("skip/x.txt", "excluded soon"),
    ]);
    init(dir.path(), "alpha");
    write(dir.path(), "edit.txt", "after, longer");
    std::fs::remove_file(dir.path().join("gone.txt")).unwrap();
    write(dir.path(), "new/file.txt", "new");
    set_excludes(dir.path(), &["skip"]);
    let mut replica = Replica::open(dir.path()).unwrap().lock("test").unwrap();
    let outcome = replica.scan(&mut ScanHooks::default()).unwrap();
    // Every kind of write a record makes: changes (a deletion among them),
    // stat refreshes (same.txt, written just before init recorded it, is
    // read again and found the same) and forgotten paths.
    assert!(outcome.changes.iter().any(|c| c.new == PathState::Deleted));
    assert!(outcome.changes.iter().any(|c| c.path == b"new/file.txt"));
    assert!(outcome.refreshed.iter().any(|(p, _)| p == b"same.txt"));
    assert!(!outcome.newly_excluded.is_empty());
    replica.record(&outcome).unwrap();
    let kept = replica.entries().unwrap();
    let stored = state::State::open_read_only(&dir.path().join(".syncreplica"))
        .unwrap()
        .load_entries()
        .unwrap();
    assert_eq!(*kept, stored);
}
