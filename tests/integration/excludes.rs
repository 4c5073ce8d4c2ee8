//! Excludes that change: a path excluded here while it was deleted here or
//! made elsewhere is missing once the exclude is lifted; it is reported
//! (never recorded as deleted) until a sibling resends it. And local
//! (excluded) files inside a directory a sibling deletes are kept.

use std::path::Path;

use crate::helpers::*;

#[test]
fn paths_missing_after_an_exclude_is_lifted_are_reported_and_come_back_when_resent() {
    let fam = family(
        &["alpha", "beta", "gamma"],
        &[("docs/a.txt", "a"), ("docs/b.txt", "b"), ("keep.txt", "k")],
    );
    let (a, b, g) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    set_excludes(&b, &["docs/"]);
    let forgot = run(&b, "syncreplica", ["-record"]).ok();
    assert!(
        forgot.stdout.contains("Forgot 3 path(s)"),
        "{}",
        forgot.stdout
    );
    // Deleted here while excluded; docs/c.txt is made at alpha meanwhile.
    std::fs::remove_dir_all(b.join("docs")).unwrap();
    write(&a, "docs/c.txt", "made while beta excluded docs");
    let out = fam.packet_dir("c");
    export_to(&a, &out, &["beta", "gamma"], &[]).ok();
    import_from(&b, &[&out]).ok();
    import_from(&g, &[&out]).ok();

    set_excludes(&b, &[]);
    let status = run(&b, "syncreplica", ["-status"]).ok();
    assert!(
        status.stdout.contains("no changes to record")
            && status.stdout.contains("missing:       docs\n"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stderr
            .contains("1 path the family holds is missing here")
            && status
                .stderr
                .contains("syncreplica -export -resendpath 'docs' -out DIR beta"),
        "{}",
        status.stderr
    );
    // Recording sees no deletion and reports the same, every time.
    let epoch = own_epoch(&b);
    for _ in 0..2 {
        let record = run(&b, "syncreplica", ["-record"]).ok();
        assert!(
            record.stdout.contains("Nothing to record"),
            "{}",
            record.stdout
        );
        assert!(record.stderr.contains("missing here"), "{}", record.stderr);
    }
    assert_eq!(own_epoch(&b), epoch, "nothing recorded as deleted");

    // The repair, at a sibling that has them: it goes to every sibling.
    let resent = fam.packet_dir("resent");
    let res = export_to(&a, &resent, &["beta", "gamma"], &["-resendpath", "docs"]).ok();
    assert!(
        res.stdout.contains("Recorded 4 paths again"),
        "{}",
        res.stdout
    );
    let back = import_from(&b, &[&resent]).ok();
    assert!(back.stdout.contains("4 added"), "{}", back.stdout);
    assert!(!back.stderr.contains("missing"), "{}", back.stderr);
    assert_eq!(tree_listing(&a), tree_listing(&b));
    let record = run(&b, "syncreplica", ["-record"]).ok();
    assert!(record.stderr.is_empty(), "{}", record.stderr);
    // A sibling that had them all along only takes the new versions.
    let same = import_from(&g, &[&resent]).ok();
    assert!(same.stdout.contains("0 in conflict"), "{}", same.stdout);
    assert_eq!(tree_listing(&a), tree_listing(&g));
}

#[test]
fn a_resend_of_a_path_this_replica_lacks_changes_nothing() {
    let fam = family(&["alpha", "beta"], &[("docs/a.txt", "a")]);
    let a = fam.root("alpha");
    write(&a, "pending.txt", "not recorded yet");
    let before = everything_under(&a);
    let out = fam.packet_dir("none");
    for (args, message) in [
        (
            vec!["-record", "-resendpath", "nothere"],
            "does not hold it",
        ),
        (vec!["-record", "-resendpath", "../docs"], "'.' or '..'"),
    ] {
        let res = run(&a, "syncreplica", &args).fails_with(2);
        assert!(res.stderr.contains(message), "{args:?}: {}", res.stderr);
        assert_eq!(everything_under(&a), before, "{args:?}");
    }
    let res = export_to(&a, &out, &["beta"], &["-resendpath", "nothere"]).fails_with(2);
    assert!(res.stderr.contains("does not hold it"), "{}", res.stderr);
    assert_eq!(everything_under(&a), before);
    let usage = run(&a, "syncreplica", ["-status", "-resendpath", "docs"]).fails_with(2);
    assert!(
        usage.stderr.contains("-resendpath applies to"),
        "{}",
        usage.stderr
    );
}

#[test]
fn local_files_in_a_directory_a_sibling_deletes_are_kept_and_said_so() {
    let fam = family(&["alpha", "beta"], &[("d/f.txt", "f")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    set_excludes(&b, &["*.tmp"]);
    write(&b, "d/scratch.tmp", "local only");
    run(&b, "syncreplica", ["-record"]).ok();
    std::fs::remove_dir_all(a.join("d")).unwrap();
    let out = fam.packet_dir("ab");
    export_to(&a, &out, &["beta"], &[]).ok();
    let res = import_from(&b, &[&out]).ok();
    // The local file moved d's time, which beta recorded (directory times
    // travel since format 2.3): either way d stays, and the conflict says so.
    assert!(
        res.stdout.contains(
            "conflict: d: kept as a directory, it still has content; alpha's deletion gave way"
        ) || res.stdout.contains(
            "conflict: d: concurrent changes by beta (directory) and alpha (a deletion); kept beta's"
        ),
        "{}",
        res.stdout
    );
    assert!(!b.join("d/f.txt").exists());
    assert_eq!(
        std::fs::read_to_string(b.join("d/scratch.tmp")).unwrap(),
        "local only"
    );
    // The directory that stayed goes back to alpha, the local file does not.
    let back = fam.packet_dir("ba");
    export_to(&b, &back, &["alpha"], &[]).ok();
    import_from(&a, &[&back]).ok();
    assert!(a.join("d").is_dir());
    assert!(!a.join("d/scratch.tmp").exists());
}

/// Live recorded paths of `root`, sorted.
fn recorded(root: &Path) -> Vec<String> {
    let replica = syncreplica::replica::Replica::open(root).unwrap();
    let mut paths: Vec<String> = replica
        .state()
        .load_entries()
        .unwrap()
        .into_iter()
        .filter(|(_, e)| e.state != syncreplica::ops::PathState::Deleted)
        .map(|(p, _)| String::from_utf8(p).unwrap())
        .collect();
    paths.sort();
    paths
}

/// A bad pattern in the local ignore file stops the commands that scan,
/// naming the file and the line; fixed, they work again.
#[test]
fn a_bad_local_pattern_is_an_error_naming_the_file_and_line() {
    let fam = family(&["alpha"], &[("f", "0")]);
    let a = fam.root("alpha");
    write(&a, ".syncreplicaignore", "*.tmp\n{a,b\n");
    let before = everything_under(&a);
    for args in [vec!["-record"], vec!["-status"]] {
        let res = run(&a, "syncreplica", &args).fails_with(1);
        assert!(
            res.stderr
                .contains(".syncreplicaignore: line 2: bad exclude pattern")
                && res.stderr.contains("'{a,b'"),
            "{args:?}: {}",
            res.stderr
        );
    }
    assert_eq!(everything_under(&a), before);
    write(&a, ".syncreplicaignore", "*.tmp\n");
    run(&a, "syncreplica", ["-record"]).ok();
}

/// Shared patterns travel as an ordinary file that each replica's own
/// `.syncreplicaignore` includes. They keep new paths out, never make a
/// replica forget a recorded one, and a broken shared file is skipped
/// with a warning: no sibling can stop replication or break a replica
/// through it.
#[test]
fn shared_patterns_keep_new_paths_out_and_never_forget_recorded_ones() {
    let fam = family(&["alpha", "beta"], &[("f", "0"), ("old.log", "recorded")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    for root in [&a, &b] {
        write(root, ".syncreplicaignore", "#include conf/shared.ignore\n");
    }
    write(&a, "conf/shared.ignore", "*.log\n");
    write(&a, "a.log", "alpha's log");
    run(&a, "syncreplica", ["-record"]).ok();
    assert_eq!(
        recorded(&a),
        ["", "conf", "conf/shared.ignore", "f", "old.log"]
    );
    let out = fam.packet_dir("shared");
    export_to(&a, &out, &["beta"], &[]).ok();
    import_from(&b, &[&out]).ok();
    write(&b, "b.log", "beta's log");
    write(&b, "old.log", "changed at beta");
    run(&b, "syncreplica", ["-record"]).ok();
    // The recorded log still travels; the new ones stay local.
    assert_eq!(
        recorded(&b),
        ["", "conf", "conf/shared.ignore", "f", "old.log"]
    );

    // A member makes the shared file exclude everything: nothing recorded
    // is forgotten, and changes still go both ways.
    write(&a, "conf/shared.ignore", "*\n");
    write(&a, "f", "changed at alpha");
    let out = fam.packet_dir("everything");
    export_to(&a, &out, &["beta"], &[]).ok();
    let res = import_from(&b, &[&out]).ok();
    assert!(res.stdout.contains("2 changed"), "{}", res.stdout);
    let record = run(&b, "syncreplica", ["-record"]).ok();
    assert!(!record.stdout.contains("Forgot"), "{}", record.stdout);
    assert_eq!(
        recorded(&b),
        ["", "conf", "conf/shared.ignore", "f", "old.log"]
    );
    assert_eq!(
        std::fs::read_to_string(b.join("f")).unwrap(),
        "changed at alpha"
    );

    // A broken shared file: a warning naming it and the line, then
    // recording and exporting as usual, without its patterns.
    write(&a, "conf/shared.ignore", "*.log\n{a,b\n");
    let out = fam.packet_dir("broken");
    export_to(&a, &out, &["beta"], &[]).ok();
    import_from(&b, &[&out]).ok();
    write(&b, "new.txt", "made at beta");
    let record = run(&b, "syncreplica", ["-record"]).ok();
    assert!(
        record.stderr.contains(
            "conf/shared.ignore: included by .syncreplicaignore line 1 but skipped: line 2: error parsing glob '{a,b'"
        ),
        "{}",
        record.stderr
    );
    assert!(
        // b.log, new.txt, and the root's mtime they moved.
        record.stdout.contains("Recorded 3 changes"),
        "{}",
        record.stdout
    );
    assert!(recorded(&b).contains(&"b.log".to_string()));
    let back = fam.packet_dir("back");
    export_to(&b, &back, &["alpha"], &[]).ok();
    import_from(&a, &[&back]).ok();
    assert_eq!(
        std::fs::read_to_string(a.join("new.txt")).unwrap(),
        "made at beta"
    );
}

/// A replica that recorded its `.syncreplicaignore` (as versions before
/// it became local did) forgets it at the next record, without sending a
/// deletion, and keeps the file.
#[test]
fn an_ignore_file_recorded_before_is_forgotten_not_deleted() {
    let fam = family(&["alpha"], &[("f", "0")]);
    let a = fam.root("alpha");
    write(&a, ".syncreplicaignore", "*.tmp\n");
    {
        let mut replica = syncreplica::replica::Replica::open(&a)
            .unwrap()
            .lock("test")
            .unwrap();
        let me = replica.identity.replica_id;
        let version = syncreplica::ops::VersionVector([(me, 1)].into());
        let state = file_state(b"*.tmp\n");
        let author = me;
        replica
            .state_mut()
            .transaction(|tx| {
                Ok(syncreplica::store::state::put_entry(
                    tx,
                    &syncreplica::store::state::EntryWrite {
                        path: b".syncreplicaignore",
                        state: &state,
                        version: &version,
                        author: &author,
                        stat: None,
                        scanned_ns: None,
                    },
                )?)
            })
            .unwrap();
    }
    let epoch = own_epoch(&a);
    let record = run(&a, "syncreplica", ["-record"]).ok();
    assert!(
        record.stdout.contains("Forgot 1 path(s)"),
        "{}",
        record.stdout
    );
    // The root's mtime (moved by the files made above) is the one change.
    assert_eq!(own_epoch(&a), epoch + 1, "no deletion recorded");
    assert_eq!(recorded(&a), ["", "f"]);
    assert!(a.join(".syncreplicaignore").exists());
}

/// Shared patterns cannot suppress the conflict copy that keeps the
/// losing side of a conflict: the copy is recorded as soon as it is made.
#[test]
fn shared_patterns_never_suppress_a_conflict_copy() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    for root in [&a, &b] {
        write(root, ".syncreplicaignore", "#include shared.ignore\n");
    }
    for (round, patterns) in [(1, "nothing-yet\n"), (2, "*\n")] {
        write(&a, "shared.ignore", patterns);
        let out = fam.packet_dir(&format!("shared-{round}"));
        export_to(&a, &out, &["beta"], &[]).ok();
        import_from(&b, &[&out]).ok();
    }
    write(&b, "f", "beta's edit, the older one");
    run(&b, "syncreplica", ["-record"]).ok();
    write(&a, "f", "alpha's edit, the newer one");
    let filetime = |root: &Path, secs: i64| {
        let file = std::fs::File::options()
            .write(true)
            .open(root.join("f"))
            .unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
            .unwrap();
    };
    filetime(&b, 1_000_000_000);
    filetime(&a, 2_000_000_000);
    run(&b, "syncreplica", ["-record"]).ok();
    let out = fam.packet_dir("conflict");
    export_to(&a, &out, &["beta"], &[]).ok();
    let res = import_from(&b, &[&out]).ok();
    assert!(res.stdout.contains("1 conflict"), "{}", res.stdout);
    let copies: Vec<String> = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("f.sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}\n{}", res.stdout);
    assert_eq!(
        std::fs::read_to_string(b.join(&copies[0])).unwrap(),
        "beta's edit, the older one"
    );
    assert!(recorded(&b).contains(&copies[0]));
}
