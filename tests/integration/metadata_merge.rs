//! Concurrent metadata changes (issue 14): two members change the
//! metadata of the root, a folder and a file at once; the exchange merges
//! them the same way at both, says what differed and which value was kept,
//! and a later change on either side is a plain successor that arrives
//! unchanged and stays on its own side.
//!
//! rsync (`-aHAXc --numeric-ids`) judges the trees; setfacl and setfattr
//! make the changes. Owners need root: a run that is not root, or a
//! machine without the tools, skips with a message (CI runs as root).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn skip() -> bool {
    for tool in ["rsync", "setfacl", "setfattr", "getfacl", "getfattr"] {
        if !have(tool) {
            eprintln!("SKIPPED: {tool} is not installed (apt-get install rsync acl attr)");
            return true;
        }
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: needs root (owners)");
        return true;
    }
    false
}

/// Runs a shell script in `dir`; it must succeed.
fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A shell command's standard output in `dir`.
fn sh_output(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `rsync -aHAXc --numeric-ids -n -i --delete` would change to make
/// `b` like `a` (roots included), less the state folders.
fn differences(a: &Path, b: &Path) -> Vec<String> {
    let out = Command::new("rsync")
        .args([
            "-aHAXc",
            "--numeric-ids",
            "--dry-run",
            "--itemize-changes",
            "--delete",
            "--exclude=/.syncreplica",
        ])
        .arg(format!("{}/", a.display()))
        .arg(format!("{}/", b.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The metadata of `paths` under `root` that the test changes: owner,
/// group, mode, mtime, ACLs and `user.*` attributes.
fn metadata_of(root: &Path, paths: &[&str]) -> String {
    let mut out = String::new();
    for path in paths {
        let full = root.join(path);
        let meta = std::fs::symlink_metadata(&full).unwrap();
        out += &format!(
            "{path}: {}:{} {:o} {}.{}\n",
            meta.uid(),
            meta.gid(),
            meta.mode() & 0o7777,
            meta.mtime(),
            meta.mtime_nsec()
        );
        let quoted = shell_quote(&full);
        out += &sh_output(
            root,
            &format!("getfacl -cpn {quoted}; getfattr -d -m '^user\\.' --absolute-names {quoted} | tail -n +2"),
        );
    }
    out
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// Both members export before either imports (the changes cross), then
/// both import.
fn cross(fam: &Family, round: &str) -> (Run, Run) {
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    let to_lambik = fam.packet_dir(&format!("{round}-to-lambik"));
    let to_boston = fam.packet_dir(&format!("{round}-to-boston"));
    export_to(&boston, &to_lambik, &["lambik"], &[]).ok();
    export_to(&lambik, &to_boston, &["boston"], &[]).ok();
    let at_lambik = import_from(&lambik, &[&to_lambik]).ok();
    let at_boston = import_from(&boston, &[&to_boston]).ok();
    (at_boston, at_lambik)
}

const PATHS: &[&str] = &["", "d", "d/b.txt"];

#[test]
fn concurrent_metadata_changes_merge_alike_and_later_changes_arrive_unchanged() {
    if skip() {
        return;
    }
    let fam = family(
        &["boston", "lambik"],
        &[("a.txt", "a\n"), ("d/b.txt", "b\n")],
    );
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));

    // Concurrent metadata changes of the root, a folder and a file.
    sh(
        &boston,
        "chown 4242:4343 . d d/b.txt
         setfacl -m u:4242:rx . d
         setfacl -m u:4242:r d/b.txt
         setfattr -n user.side -v boston . d d/b.txt
         chmod 700 d
         touch -d '2011-01-01' d/b.txt d .",
    );
    sh(
        &lambik,
        "chown 1000:1000 . d d/b.txt
         setfacl -m g:4343:rx . d
         setfacl -m g:4343:r d/b.txt
         setfattr -n user.side -v lambik . d d/b.txt
         chmod 750 d
         touch -d '2012-02-02' d/b.txt d .",
    );
    run(&boston, "syncreplica", ["-record"]).ok();
    run(&lambik, "syncreplica", ["-record"]).ok();
    let (at_boston, at_lambik) = cross(&fam, "1");
    // Each side says, per path, every field that differed and which value
    // it kept; both kept the same.
    for imported in [&at_boston, &at_lambik] {
        let out = &imported.stdout;
        for wanted in [
            "3 conflicts",
            "conflict: .: concurrent changes of the replica root by ",
            "kept lambik's owner ",
            "(not boston's 4242; the lower id)",
            "(not boston's 4343; the lower id)",
            "kept lambik's xattr user.side = \"lambik\" (not boston's \"boston\")",
            "kept boston's access ACL u::rwx,u:4242:r-x,",
            "conflict: d: concurrent changes of the folder by ",
            "kept boston's stricter mode 0700 (not lambik's 0750)",
            "conflict: d/b.txt: concurrent changes of its metadata by ",
            "kept lambik's newer mtime 2012-02-02 00:00:00 UTC (not boston's 2011-01-01 00:00:00 UTC)",
        ] {
            assert!(out.contains(wanted), "{wanted:?} missing:\n{out}");
        }
    }
    // Both merged alike: the members are the same tree.
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());
    assert_eq!(differences(&lambik, &boston), Vec::<String>::new());

    // A later change on one side only: a plain successor of the merge,
    // whatever lambik sends meanwhile.
    sh(
        &boston,
        "chown 4343:42 . d d/b.txt
         setfacl -b . d d/b.txt
         setfattr -n user.later -v 1 . d d/b.txt
         touch -d '2020-03-03' d/b.txt d .",
    );
    let wanted = metadata_of(&boston, PATHS);
    run(&boston, "syncreplica", ["-record"]).ok();
    let (at_boston, at_lambik) = cross(&fam, "3");
    for imported in [&at_boston, &at_lambik] {
        assert!(
            !imported.stdout.contains("conflict:"),
            "{}{}",
            imported.stdout,
            imported.stderr
        );
    }
    assert_eq!(metadata_of(&boston, PATHS), wanted, "undone at boston");
    assert_eq!(metadata_of(&lambik, PATHS), wanted, "not arrived at lambik");
    cross(&fam, "4");
    assert_eq!(
        metadata_of(&boston, PATHS),
        wanted,
        "undone at boston later"
    );
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());

    // And the other way round.
    sh(
        &lambik,
        "chown 1000:1000 . d/b.txt
         setfacl -m u:4242:rwx . d/b.txt
         setfattr -x user.later . d/b.txt
         touch -d '2021-04-04' d/b.txt .",
    );
    let wanted = metadata_of(&lambik, PATHS);
    run(&lambik, "syncreplica", ["-record"]).ok();
    for round in ["5", "6"] {
        let (at_boston, at_lambik) = cross(&fam, round);
        for imported in [&at_boston, &at_lambik] {
            assert!(
                !imported.stdout.contains("conflict:"),
                "{}{}",
                imported.stdout,
                imported.stderr
            );
        }
        assert_eq!(metadata_of(&lambik, PATHS), wanted, "undone at lambik");
        assert_eq!(metadata_of(&boston, PATHS), wanted, "not arrived at boston");
    }
    assert_eq!(differences(&lambik, &boston), Vec::<String>::new());
    for member in [&boston, &lambik] {
        let status = run(member, "syncreplica", ["-status"]).ok();
        assert!(
            status.stdout.contains("no changes to record"),
            "{}",
            status.stdout
        );
    }
}

/// Format 2.11: the tree digest covers the replica root's own entry, and
/// `-verify SIBLING` says what differs there. lambik's record of its root
/// goes wrong without a new version (as a buggy apply or a restored
/// database would leave it): the next packet's digest differs, and
/// -verify names the root's time and attributes.
#[test]
fn verify_names_what_differs_in_the_roots_own_entry() {
    use syncreplica::ops::PathState;
    use syncreplica::store::state;
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    // Each learns what the other preserves (the root among it).
    write(&lambik, "l.txt", "l");
    fam.send("lambik", "boston", "0");
    write(&boston, "a.txt", "two");
    let out = fam.packet_dir("1");
    export_to(&boston, &out, &["lambik"], &["-noencrypt"]).ok();
    let listed = run(&out, "lspacket", ["-fmt", "json", "."]);
    let json: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let covered = &json["packets"][0]["tree_digest"]["metadata"]["covered"];
    assert!(
        covered.as_array().unwrap().contains(&"root".into()),
        "{json}"
    );
    let imported = import_from(&lambik, &[&out]).ok();
    assert!(
        imported.stdout.contains("verified in step"),
        "{}",
        imported.stdout
    );

    // lambik's root gains an attribute and another time, and its record
    // says so, without an operation: the scan sees nothing, the version
    // is boston's.
    sh(
        &lambik,
        "setfattr -n user.forged -v 1 . && touch -d @978307200 .",
    );
    let mut db = state::State::open(&lambik.join(".syncreplica")).unwrap();
    let entry = db.load_entries().unwrap()[b"".as_slice()].clone();
    let PathState::Directory { mode, mut ext, .. } = entry.state.clone() else {
        panic!("the root is a directory")
    };
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = ext
        .get(4)
        .map(|bytes| postcard::from_bytes(bytes).unwrap())
        .unwrap_or_default();
    xattrs.push((b"user.forged".to_vec(), b"1".to_vec()));
    xattrs.sort();
    ext.insert(4, postcard::to_allocvec(&xattrs).unwrap());
    let forged = PathState::Directory {
        mode,
        mtime: syncreplica::ops::Timestamp::new(978_307_200, 0),
        ext,
    };
    let meta = std::fs::symlink_metadata(&lambik).unwrap();
    db.transaction(|tx| {
        Ok(state::put_entry(
            tx,
            &state::EntryWrite {
                path: b"",
                state: &forged,
                version: &entry.version,
                author: &entry.author,
                stat: Some(syncreplica::tree::scan::stat_key(&meta)),
                scanned_ns: entry.scanned_ns,
            },
        )?)
    })
    .unwrap();
    drop(db);
    let status = run(&lambik, "syncreplica", ["-status"]).ok();
    assert!(
        status.stdout.contains("no changes to record"),
        "{}",
        status.stdout
    );

    write(&boston, "a.txt", "three");
    let imported = fam.packet_dir("2");
    export_to(&boston, &imported, &["lambik"], &["-noencrypt"]).ok();
    let run_import = import_from(&lambik, &[&imported]).ok();
    assert!(
        run_import
            .stderr
            .contains("this replica's tree differs from boston's at the same version"),
        "{}\n{}",
        run_import.stdout,
        run_import.stderr
    );
    let verify = run(&lambik, "syncreplica", ["-verify", "boston"]);
    assert_eq!(verify.code, 1, "{}\n{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains(
            "\n  . (the replica root itself: its mtime, xattrs differ from the sibling's)\n"
        ),
        "{}",
        verify.stdout
    );
    assert!(!verify.stdout.contains("a.txt"), "{}", verify.stdout);
}

/// Exports from every member to every other one first, then each imports
/// its packets in the order `orders` gives (member, senders in order).
fn all_cross(fam: &Family, names: &[&str], round: &str, orders: &[(&str, [&str; 2])]) -> Vec<Run> {
    for from in names {
        for to in names.iter().filter(|to| *to != from) {
            let out = fam.packet_dir(&format!("{round}-{from}-{to}"));
            export_to(&fam.root(from), &out, &[to], &[]).ok();
        }
    }
    let mut runs = Vec::new();
    for (to, senders) in orders {
        for from in senders {
            let out = fam.packet_dir(&format!("{round}-{from}-{to}"));
            runs.push(import_from(&fam.root(to), &[&out]).ok());
        }
    }
    runs
}

/// Three members change the root's and a file's metadata at once and take
/// each other's changes in different orders (so each merges another
/// grouping first): all end with the same tree, and a later change of one
/// arrives at the others and stays, with no further conflict.
#[test]
fn three_members_merging_in_different_orders_converge() {
    if skip() {
        return;
    }
    let names = ["boston", "lambik", "zurich"];
    let fam = family(&names, &[("f.txt", "f\n")]);
    // Every member learns of every other one.
    fam.send("boston", "lambik", "0");
    sh(
        &fam.root("boston"),
        "chmod 750 . f.txt && setfattr -n user.side -v boston . f.txt && chown 4242 f.txt",
    );
    sh(
        &fam.root("lambik"),
        "chmod 705 . && setfattr -n user.side -v lambik . f.txt && chgrp 4343 f.txt",
    );
    sh(
        &fam.root("zurich"),
        "touch -d 2015-05-05 . f.txt && setfattr -n user.z -v 1 . f.txt && chmod 604 f.txt",
    );
    for name in names {
        run(&fam.root(name), "syncreplica", ["-record"]).ok();
    }
    let orders = [
        ("boston", ["lambik", "zurich"]),
        ("lambik", ["zurich", "boston"]),
        ("zurich", ["boston", "lambik"]),
    ];
    let runs = all_cross(&fam, &names, "1", &orders);
    assert!(runs.iter().any(|r| r.stdout.contains("conflict:")));
    all_cross(&fam, &names, "2", &orders);
    for (a, b) in [
        ("boston", "lambik"),
        ("lambik", "zurich"),
        ("zurich", "boston"),
    ] {
        assert_eq!(
            differences(&fam.root(a), &fam.root(b)),
            Vec::<String>::new(),
            "{a} and {b}"
        );
    }
    let paths = ["", "f.txt"];
    let merged = metadata_of(&fam.root("boston"), &paths);
    // The bits all three allow, every attribute, the newest time.
    assert!(merged.starts_with(": 0:0 700 "), "{merged}");
    assert!(merged.contains("user.side=\"lambik\"") && merged.contains("user.z=\"1\""));

    sh(
        &fam.root("zurich"),
        "chmod 755 . && setfattr -x user.side f.txt && chown 0:0 f.txt",
    );
    let wanted = metadata_of(&fam.root("zurich"), &paths);
    run(&fam.root("zurich"), "syncreplica", ["-record"]).ok();
    for round in ["3", "4"] {
        for imported in all_cross(&fam, &names, round, &orders) {
            assert!(
                !imported.stdout.contains("conflict:"),
                "{}",
                imported.stdout
            );
        }
    }
    for name in names {
        assert_eq!(metadata_of(&fam.root(name), &paths), wanted, "at {name}");
    }
}

/// Review 14b item 1: a field only one side changed since the versions'
/// common base takes that side's value, whatever the other side changed
/// in other fields of the same object at the same time; only a field both
/// sides changed is decided by the rules and reported. A `chown` on one
/// member and a `chmod` on the other of the same file, folder or
/// executable both stay, at both members.
#[test]
fn a_field_changed_on_one_side_only_keeps_that_change() {
    if skip() {
        return;
    }
    let fam = family(
        &["boston", "lambik"],
        &[("passwd", "p\n"), ("ssh/cfg", "c\n"), ("xf", "x\n")],
    );
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    sh(&boston, "chmod 755 passwd xf ssh && chown 1000:1000 xf");
    run(&boston, "syncreplica", ["-record"]).ok();
    cross(&fam, "0");
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());

    // boston: owners; lambik: modes (and one attribute both set).
    sh(
        &boston,
        "chown 4242 passwd && chown 1000 ssh && chmod 600 xf
         setfattr -n user.both -v boston passwd",
    );
    sh(
        &lambik,
        "chmod 600 passwd && chmod 700 ssh && chown 4242 xf
         setfattr -n user.both -v lambik passwd",
    );
    run(&boston, "syncreplica", ["-record"]).ok();
    run(&lambik, "syncreplica", ["-record"]).ok();
    let (at_boston, at_lambik) = cross(&fam, "1");
    for imported in [&at_boston, &at_lambik] {
        let out = &imported.stdout;
        // Only the attribute both set is a conflict, and it says so.
        assert!(
            out.contains("conflict: passwd: concurrent changes of its metadata by ")
                && out.contains(
                    "kept lambik's xattr user.both = \"lambik\" (not boston's \"boston\")"
                ),
            "{out}"
        );
        for not_wanted in ["owner", "mode", "ssh", "xf", "no common earlier version"] {
            assert!(!out.contains(not_wanted), "{not_wanted:?} reported:\n{out}");
        }
    }
    for member in [&boston, &lambik] {
        let meta = |path: &str| std::fs::symlink_metadata(member.join(path)).unwrap();
        let (passwd, ssh, xf) = (meta("passwd"), meta("ssh"), meta("xf"));
        let at = member.display();
        assert_eq!(
            (passwd.uid(), passwd.mode() & 0o7777),
            (4242, 0o600),
            "passwd at {at}"
        );
        assert_eq!(
            (ssh.uid(), ssh.mode() & 0o7777),
            (1000, 0o700),
            "ssh at {at}"
        );
        assert_eq!((xf.uid(), xf.mode() & 0o7777), (4242, 0o600), "xf at {at}");
    }
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());
    for member in [&boston, &lambik] {
        let status = run(member, "syncreplica", ["-status"]).ok();
        assert!(
            status.stdout.contains("no changes to record"),
            "{}",
            status.stdout
        );
    }
}

/// Without a common earlier version (a folder made on both sides at
/// once) the merge cannot tell who changed what: today's rules decide
/// every field that differs, and the conflict line says why.
#[test]
fn a_merge_without_a_common_base_says_so_and_uses_the_rules() {
    if skip() {
        return;
    }
    let fam = family(&["boston", "lambik"], &[("a.txt", "a\n")]);
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    sh(&boston, "mkdir n && chmod 755 n && chown 4242 n");
    sh(&lambik, "mkdir n && chmod 700 n && chown 1000 n");
    run(&boston, "syncreplica", ["-record"]).ok();
    run(&lambik, "syncreplica", ["-record"]).ok();
    let (at_boston, at_lambik) = cross(&fam, "1");
    for imported in [&at_boston, &at_lambik] {
        let out = &imported.stdout;
        for wanted in [
            "conflict: n: concurrent changes of the folder by ",
            "(no common earlier version of it is logged here, so every field that differs \
             was decided by the rules)",
            "kept lambik's stricter mode 0700 (not boston's 0755)",
            "(1000) (not boston's 4242; the lower id)",
        ] {
            assert!(out.contains(wanted), "{wanted:?} missing:\n{out}");
        }
    }
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());
}

#[test]
fn verify_names_the_field_of_a_directory_that_changed_since_recorded() {
    use syncreplica::ops::PathState;
    use syncreplica::store::state;
    let fam = family(&["boston", "lambik"], &[("d/a.txt", "one")]);
    let boston = fam.root("boston");
    sh(&boston, "chmod 0755 d");
    run(&boston, "syncreplica", ["-record"]).ok();
    // The record says 0700; the disk says 0755 (review 14b item 8: the line
    // read "now a directory; recorded a directory").
    let mut db = state::State::open(&boston.join(".syncreplica")).unwrap();
    let entry = db.load_entries().unwrap()[b"d".as_slice()].clone();
    let PathState::Directory { mtime, ext, .. } = entry.state.clone() else {
        panic!("d is a directory")
    };
    let forged = PathState::Directory {
        mode: 0o700,
        mtime,
        ext,
    };
    db.transaction(|tx| {
        Ok(state::put_entry(
            tx,
            &state::EntryWrite {
                path: b"d",
                state: &forged,
                version: &entry.version,
                author: &entry.author,
                stat: entry.stat,
                scanned_ns: entry.scanned_ns,
            },
        )?)
    })
    .unwrap();
    drop(db);
    let verify = run(&boston, "syncreplica", ["-verify"]);
    assert!(
        verify
            .stdout
            .contains("d: changed since recorded: mode (now 0755; recorded 0700)"),
        "{}\n{}",
        verify.stdout,
        verify.stderr
    );
}

/// An import with a few hundred concurrent metadata changes looks each
/// merge base up by path: the rows it steps through without an index
/// (SQLite's full-scan steps, counted through `SYNCREPLICA_TEST_COUNTS`)
/// are about one pass over the log, not one pass per conflicting path.
#[test]
fn many_concurrent_metadata_changes_read_the_log_once() {
    const FILES: usize = 300;
    let names: Vec<String> = (0..FILES).map(|n| format!("d/f{n:03}")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x\n")).collect();
    let fam = family(&["boston", "lambik"], &files);
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    sh(&boston, "chmod 640 d/*");
    run(&boston, "syncreplica", ["-record"]).ok();
    cross(&fam, "0");
    // Both change every file's mode at once: each is a metadata conflict
    // whose merge looks up the common base.
    sh(&boston, "chmod 600 d/*");
    sh(&lambik, "chmod 604 d/*");
    run(&boston, "syncreplica", ["-record"]).ok();
    run(&lambik, "syncreplica", ["-record"]).ok();
    let to_lambik = fam.packet_dir("1-to-lambik");
    export_to(&boston, &to_lambik, &["lambik"], &[]).ok();
    let counts = fam.packet_dir("counts").join("counts.txt");
    let output = Command::new(binary_path("syncreplica"))
        .arg("-import")
        .arg(&to_lambik)
        .current_dir(&lambik)
        .env("SYNCREPLICA_TEST_COUNTS", &counts)
        .output()
        .unwrap();
    let imported = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
    .ok();
    assert!(
        imported.stdout.contains(&format!("{FILES} in conflict")),
        "{}",
        imported.stdout
    );
    let logged = {
        let replica = syncreplica::replica::Replica::open(&lambik).unwrap();
        let mut n = 0u64;
        replica.state().for_each_operation(|_| n += 1).unwrap();
        n
    };
    let text = std::fs::read_to_string(&counts).unwrap();
    let visited: u64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("merge-base-log-rows "))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    // One pass over the log (and the batch's operations) and a bounded
    // lookup per path; a pass per path would be FILES times the log.
    assert!(
        visited <= 2 * logged + 2 * FILES as u64,
        "{visited} rows stepped through for {FILES} paths and a log of {logged}"
    );
    for member in [&boston, &lambik] {
        assert_eq!(mode_of(&member.join("d/f000")), 0o600);
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// `syncreplica -scrub` at `root`, with the clock of waiting decisions
/// 200 days ahead (past the default `oplog_keep_days`).
fn scrub_later(root: &Path) -> Run {
    let output = Command::new(binary_path("syncreplica"))
        .arg("-scrub")
        .current_dir(root)
        .env("SYNCREPLICA_TEST_CLOCK_SHIFT", (200 * 86_400).to_string())
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Once `syncreplica -scrub` has dropped the common base of two
/// concurrent metadata changes from the log, the merge cannot tell which
/// side changed a field: it says so, the rules decide every field that
/// differs, and both members end alike.
#[test]
fn a_merge_after_scrub_dropped_its_base_says_so_and_converges() {
    if skip() {
        return;
    }
    let fam = family(&["boston", "lambik"], &[("passwd", "p\n")]);
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    sh(&boston, "chmod 644 passwd && chown 1000 passwd");
    run(&boston, "syncreplica", ["-record"]).ok();
    cross(&fam, "0");
    // Each confirms the other's operations, then both scrub them.
    for (from, to) in [(&boston, "lambik"), (&lambik, "boston")] {
        let out = fam.packet_dir(&format!("ack-to-{to}"));
        export_to(from, &out, &[to], &["-ack"]).ok();
        import_from(&fam.root(to), &[&out]).ok();
    }
    for member in [&boston, &lambik] {
        let scrubbed = scrub_later(member).ok();
        assert!(scrubbed.stdout.contains("Scrubbed"), "{}", scrubbed.stdout);
    }
    // boston changes the owner only, lambik the mode only: with the base
    // the owner would be boston's and the mode lambik's; without it the
    // rules decide both (stricter mode, lower owner id).
    sh(&boston, "chown 4242 passwd && chmod 640 passwd");
    sh(&lambik, "chmod 600 passwd");
    run(&boston, "syncreplica", ["-record"]).ok();
    run(&lambik, "syncreplica", ["-record"]).ok();
    let (at_boston, at_lambik) = cross(&fam, "1");
    for imported in [&at_boston, &at_lambik] {
        let out = &imported.stdout;
        for wanted in [
            "conflict: passwd: concurrent changes of its metadata by ",
            "(no common earlier version of it is logged here, so every field that differs \
             was decided by the rules)",
            "kept lambik's stricter mode 0600 (not boston's 0640)",
        ] {
            assert!(out.contains(wanted), "{wanted:?} missing:\n{out}");
        }
    }
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());
    assert_eq!(mode_of(&boston.join("passwd")), 0o600);
    // Converged for good: another exchange changes nothing.
    let (again_boston, again_lambik) = cross(&fam, "2");
    for imported in [&again_boston, &again_lambik] {
        assert!(
            !imported.stdout.contains("conflict:"),
            "{}",
            imported.stdout
        );
    }
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());
}

/// A text of `len` bytes that does not repeat (hex of random bytes): cut
/// into several chunks, so an append travels as a change to the last one.
fn big_text(seed: u64, len: usize) -> String {
    random_bytes(seed, len / 2)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn append(root: &Path, path: &str, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join(path))
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The paths under `root` named as conflict copies.
fn conflict_copies(root: &Path) -> Vec<String> {
    tree_listing(root)
        .into_iter()
        .filter(|line| line.contains("sync-conflict"))
        .collect()
}

/// Review 14c item 1: one member changes a file's content while another
/// changes only its metadata (chown, chmod, setfattr, setfacl): both
/// members end with the content and the metadata change, with no
/// conflict copy and no refused packet, and agree on one version.
#[test]
fn a_content_change_and_a_concurrent_metadata_change_merge_without_a_conflict_copy() {
    if skip() {
        return;
    }
    let big = big_text(14, 400_000);
    let fam = family(
        &["boston", "lambik"],
        &[
            ("owned.txt", big.as_str()),
            ("moded.txt", "m\n"),
            ("attr.txt", big.as_str()),
            ("acl.txt", "a\n"),
        ],
    );
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    // Content at boston, metadata at lambik, and the other way round.
    append(&boston, "owned.txt", "boston\n");
    append(&boston, "moded.txt", "boston\n");
    append(&lambik, "attr.txt", "lambik\n");
    append(&lambik, "acl.txt", "lambik\n");
    sh(&lambik, "chown 4242:4343 owned.txt && chmod 600 moded.txt");
    sh(
        &boston,
        "setfattr -n user.side -v boston attr.txt && setfacl -m u:4242:r acl.txt",
    );
    let wanted_owned = std::fs::read(boston.join("owned.txt")).unwrap();
    let wanted_attr = std::fs::read(lambik.join("attr.txt")).unwrap();
    run(&boston, "syncreplica", ["-record"]).ok();
    run(&lambik, "syncreplica", ["-record"]).ok();
    let (at_boston, at_lambik) = cross(&fam, "1");
    for imported in [&at_boston, &at_lambik] {
        let out = format!("{}{}", imported.stdout, imported.stderr);
        for not_wanted in ["conflict:", "refused", "sync-conflict"] {
            assert!(!out.contains(not_wanted), "{not_wanted:?}:\n{out}");
        }
    }
    let (at_boston, at_lambik) = cross(&fam, "2");
    for member in [&boston, &lambik] {
        let at = member.display();
        let meta = |path: &str| std::fs::symlink_metadata(member.join(path)).unwrap();
        assert_eq!(
            std::fs::read(member.join("owned.txt")).unwrap(),
            wanted_owned
        );
        assert_eq!(
            (meta("owned.txt").uid(), meta("owned.txt").gid()),
            (4242, 4343),
            "{at}"
        );
        assert_eq!(
            std::fs::read_to_string(member.join("moded.txt")).unwrap(),
            "m\nboston\n"
        );
        assert_eq!(meta("moded.txt").mode() & 0o7777, 0o600, "{at}");
        assert_eq!(std::fs::read(member.join("attr.txt")).unwrap(), wanted_attr);
        assert!(
            sh_output(member, "getfattr -n user.side attr.txt").contains("boston"),
            "{at}"
        );
        assert_eq!(
            std::fs::read_to_string(member.join("acl.txt")).unwrap(),
            "a\nlambik\n"
        );
        assert!(
            sh_output(member, "getfacl -cpn acl.txt").contains("user:4242:r--"),
            "{at}"
        );
        assert_eq!(conflict_copies(member), Vec::<String>::new(), "{at}");
        let status = run(member, "syncreplica", ["-status"]).ok();
        assert!(
            status.stdout.contains("no changes to record"),
            "{}",
            status.stdout
        );
    }
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());
    // One version: each member's resolution, arriving at the other, is
    // what that one resolved under the same version (nothing to change).
    for imported in [&at_boston, &at_lambik] {
        assert!(
            imported
                .stdout
                .contains("(0 added, 0 changed, 0 deleted, 0 conflicts)"),
            "{}",
            imported.stdout
        );
    }
}

/// Review 14c item 1: two members append to the same large file at once.
/// Each sent its append as a change to the last chunk, which neither
/// holds any more: each refuses the other's packet, and asks for the
/// content in its next packet, which waits at the other for the refused
/// one. The requests are taken ahead of their packets, each answers, and
/// the family converges (the same file and the same conflict copy at
/// both) with no -resend or -fullcontent.
#[test]
fn concurrent_appends_to_one_large_file_converge_without_a_resend() {
    if !have("rsync") {
        eprintln!("SKIPPED: rsync is not installed");
        return;
    }
    let big = big_text(15, 400_000);
    let fam = family(&["boston", "lambik"], &[("log.txt", big.as_str())]);
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    append(&boston, "log.txt", "a\n");
    append(&lambik, "log.txt", "b\n");
    let mut converged = None;
    for round in 1..=5 {
        let label = round.to_string();
        let to_lambik = fam.packet_dir(&format!("{label}-to-lambik"));
        let to_boston = fam.packet_dir(&format!("{label}-to-boston"));
        export_to(&boston, &to_lambik, &["lambik"], &[]).ok();
        export_to(&lambik, &to_boston, &["boston"], &[]).ok();
        // Every packet so far, as a user who keeps them would.
        let all = |to: &str| -> Vec<PathBuf> {
            (1..=round)
                .map(|r| fam.packet_dir(&format!("{r}-to-{to}")))
                .collect()
        };
        let (at_lambik, at_boston) = (all("lambik"), all("boston"));
        let at_lambik: Vec<&Path> = at_lambik.iter().map(PathBuf::as_path).collect();
        let at_boston: Vec<&Path> = at_boston.iter().map(PathBuf::as_path).collect();
        import_from(&lambik, &at_lambik);
        import_from(&boston, &at_boston);
        if round > 1
            && differences(&boston, &lambik).is_empty()
            && conflict_copies(&boston).len() == 1
        {
            converged = Some(round);
            break;
        }
    }
    assert!(
        converged.is_some(),
        "not converged after 5 rounds:\n{:?}",
        differences(&boston, &lambik)
    );
    let content = std::fs::read_to_string(boston.join("log.txt")).unwrap();
    assert!(content == format!("{big}a\n") || content == format!("{big}b\n"));
    for member in [&boston, &lambik] {
        let status = run(member, "syncreplica", ["-status"]).ok();
        assert!(
            status.stdout.contains("no changes to record"),
            "{}",
            status.stdout
        );
    }
}

/// Review 14c item 3: with three members, a side that is itself a merge
/// (zurich merged boston's change with its own before lambik's arrives)
/// does not lend its author's name to another member's value: each value
/// in a conflict line is credited to the member whose own change it was,
/// and the line names every member whose changes meet.
#[test]
fn three_members_conflict_lines_credit_each_value_to_its_member() {
    let names = ["boston", "lambik", "zurich"];
    let fam = family(&names, &[("hl1", "h\n")]);
    fam.send("boston", "lambik", "0");
    for (name, date) in [
        ("boston", "2003-03-03"),
        ("lambik", "2004-04-04"),
        ("zurich", "2005-05-05"),
    ] {
        sh(&fam.root(name), &format!("touch -d {date} hl1"));
        run(&fam.root(name), "syncreplica", ["-record"]).ok();
    }
    let orders = [
        ("boston", ["lambik", "zurich"]),
        ("lambik", ["zurich", "boston"]),
        ("zurich", ["boston", "lambik"]),
    ];
    let runs = all_cross(&fam, &names, "1", &orders);
    let out: String = runs.iter().map(|r| r.stdout.as_str()).collect();
    // zurich merged boston's (its own value kept), then lambik's: its own
    // 2005 is still its own, not boston's.
    let at_zurich = &runs[5].stdout;
    assert!(
        at_zurich.contains(
            "hl1: concurrent changes of its metadata by boston, zurich and lambik; \
             kept zurich's newer mtime 2005-05-05 00:00:00 UTC (not lambik's 2004-04-04 00:00:00 UTC)"
        ),
        "{at_zurich}"
    );
    // boston merged lambik's, then zurich's: the 2004 it lost was lambik's.
    assert!(
        runs[1].stdout.contains(
            "kept zurich's newer mtime 2005-05-05 00:00:00 UTC (not lambik's 2004-04-04 00:00:00 UTC)"
        ),
        "{}",
        runs[1].stdout
    );
    for wrong in [
        "boston's newer mtime 2005",
        "lambik's newer mtime 2005",
        "boston's 2004",
        "zurich's 2004",
    ] {
        assert!(!out.contains(wrong), "{wrong:?}:\n{out}");
    }
    all_cross(&fam, &names, "2", &orders);
    for name in names {
        let mtime = std::fs::metadata(fam.root(name).join("hl1"))
            .unwrap()
            .mtime();
        assert_eq!(mtime, 1_115_251_200, "at {name}");
    }
}

/// One path in conflict in two packets of one import (each merged in
/// turn) is reported once, with the final outcome (review 14d finding 7).
#[test]
fn a_conflict_merged_from_two_packets_of_one_import_is_reported_once() {
    let fam = family(&["a", "b", "c"], &[("f.txt", "start\n")]);
    // a's first update tells b about c.
    let intro = fam.packet_dir("intro");
    export_to(&fam.root("a"), &intro, &["b", "c"], &[]).ok();
    import_from(&fam.root("b"), &[&intro]).ok();
    import_from(&fam.root("c"), &[&intro]).ok();
    for name in ["a", "b", "c"] {
        write(&fam.root(name), "f.txt", &format!("by {name}\n"));
    }
    let (from_a, from_b) = (fam.packet_dir("from-a"), fam.packet_dir("from-b"));
    export_to(&fam.root("a"), &from_a, &["c"], &[]).ok();
    export_to(&fam.root("b"), &from_b, &["c"], &[]).ok();
    let imported = import_from(&fam.root("c"), &[&from_a, &from_b]).ok();
    assert!(
        imported.stdout.contains("2 packets applied"),
        "{}",
        imported.stdout
    );
    let lines = imported
        .stdout
        .lines()
        .filter(|l| l.starts_with("  conflict: f.txt:"))
        .count();
    assert_eq!(lines, 1, "{}", imported.stdout);
    // Every side's version is said: both conflict copies are named.
    assert_eq!(
        imported.stdout.matches(".sync-conflict-").count(),
        2,
        "{}",
        imported.stdout
    );
    assert!(
        imported.stdout.contains("1 in conflict"),
        "{}",
        imported.stdout
    );
}

/// A hard-link set whose metadata both sides changed at once is one
/// conflict, reported once for the set, not once per name (review 14d
/// finding 7).
#[test]
fn a_hard_link_sets_conflict_is_reported_once_per_set() {
    use std::os::unix::fs::PermissionsExt;
    let fam = family(&["a", "b"], &[("f.txt", "start\n")]);
    let (a, b) = (fam.root("a"), fam.root("b"));
    std::fs::hard_link(a.join("f.txt"), a.join("g.txt")).unwrap();
    std::fs::hard_link(a.join("f.txt"), a.join("h.txt")).unwrap();
    fam.send("a", "b", "links");
    assert_eq!(
        std::fs::metadata(b.join("g.txt")).unwrap().ino(),
        std::fs::metadata(b.join("f.txt")).unwrap().ino()
    );
    std::fs::set_permissions(a.join("f.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(b.join("f.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = fam.packet_dir("modes");
    export_to(&a, &out, &["b"], &[]).ok();
    let imported = import_from(&b, &[&out]).ok();
    let lines: Vec<&str> = imported
        .stdout
        .lines()
        .filter(|l| l.starts_with("  conflict: "))
        .collect();
    assert_eq!(lines.len(), 1, "{}", imported.stdout);
    for name in ["f.txt", "g.txt", "h.txt"] {
        assert!(lines[0].contains(name), "{}", imported.stdout);
    }
}

/// The relative paths under `root` (state folder left out) with
/// "sync-conflict" in them, sorted.
fn conflict_copy_paths(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".syncreplica" {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if rel.contains("sync-conflict") {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Both members change the content of a hard-link set of three names at
/// once: one conflict, said once for the set, and one copy of the losing
/// version (a file of its own), the names staying links of the kept
/// version at both (fix14i item 4: three lines and three copies).
#[test]
fn a_content_conflict_on_a_hard_link_set_is_one_conflict_with_one_copy() {
    let fam = family(&["a", "b"], &[("f.txt", "start\n")]);
    let (a, b) = (fam.root("a"), fam.root("b"));
    std::fs::create_dir(a.join("sub")).unwrap();
    std::fs::hard_link(a.join("f.txt"), a.join("g.txt")).unwrap();
    std::fs::hard_link(a.join("f.txt"), a.join("sub/h.txt")).unwrap();
    fam.send("a", "b", "links");
    write_keeping_root_time(&a, "f.txt", "from a\n");
    write_keeping_root_time(&b, "f.txt", "from b, longer\n");
    run(&a, "syncreplica", ["-record"]).ok();
    run(&b, "syncreplica", ["-record"]).ok();
    let to_b = fam.packet_dir("to-b");
    let to_a = fam.packet_dir("to-a");
    export_to(&a, &to_b, &["b"], &[]).ok();
    export_to(&b, &to_a, &["a"], &[]).ok();
    let at_b = import_from(&b, &[&to_b]).ok();
    let at_a = import_from(&a, &[&to_a]).ok();
    for (root, imported) in [(&a, &at_a), (&b, &at_b)] {
        let lines: Vec<&str> = imported
            .stdout
            .lines()
            .filter(|l| l.starts_with("  conflict: "))
            .collect();
        assert_eq!(lines.len(), 1, "{}", imported.stdout);
        for name in ["f.txt", "g.txt", "sub/h.txt", "names of one hard-link set"] {
            assert!(lines[0].contains(name), "{name}: {}", imported.stdout);
        }
        assert_eq!(
            conflict_copy_paths(root).len(),
            1,
            "{:?}\n{}",
            conflict_copy_paths(root),
            imported.stdout
        );
        let ino = |path: &str| std::fs::metadata(root.join(path)).unwrap().ino();
        assert_eq!(ino("f.txt"), ino("g.txt"), "{}", imported.stdout);
        assert_eq!(ino("f.txt"), ino("sub/h.txt"), "{}", imported.stdout);
        let copy = &conflict_copy_paths(root)[0];
        assert_ne!(ino(copy), ino("f.txt"), "the copy is a name of the set");
    }
    let kept = std::fs::read_to_string(a.join("f.txt")).unwrap();
    let copy = std::fs::read_to_string(a.join(&conflict_copy_paths(&a)[0])).unwrap();
    let mut both = [kept, copy];
    both.sort();
    assert_eq!(
        both,
        ["from a\n".to_string(), "from b, longer\n".to_string()]
    );
    assert_eq!(conflict_copy_paths(&a), conflict_copy_paths(&b));
    // One more exchange each way brings nothing new, and both are the
    // same tree.
    fam.send("a", "b", "after-1");
    fam.send("b", "a", "after-2");
    assert_eq!(tree_listing(&a), tree_listing(&b));
    for root in [&a, &b] {
        let ino = |path: &str| std::fs::metadata(root.join(path)).unwrap().ino();
        assert_eq!(ino("f.txt"), ino("sub/h.txt"));
        assert_eq!(
            conflict_copy_paths(root).len(),
            1,
            "{:?}",
            conflict_copy_paths(root)
        );
        let status = run(root, "syncreplica", ["-status"]).ok();
        assert!(
            status.stdout.contains("no changes to record"),
            "{}",
            status.stdout
        );
    }
}

/// After a three-way merge of metadata (root, folder, files), the tree
/// matches what each member recorded at once; each member's resolution
/// (a `Resolve` operation, SPEC.md §6) goes to the other in the next
/// round, which changes nothing there; after that neither has anything to
/// record or to send (fix14i item 5: no extra change beyond the
/// resolutions).
#[test]
fn a_merged_change_leaves_nothing_to_record_or_send_once_exchanged() {
    if skip() {
        return;
    }
    let fam = family(
        &["boston", "lambik"],
        &[("passwd", "p\n"), ("ssh/cfg", "c\n"), ("xf", "x\n")],
    );
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    sh(
        &boston,
        "chown 4242 passwd && chown 1000 ssh && chmod 600 xf
         setfattr -n user.both -v boston passwd
         setfacl -m u:4242:r ssh/cfg
         chown 4242:4343 . && setfacl -m u:4242:rx . && setfattr -n user.side -v boston .
         touch -d '2011-01-01' ssh .",
    );
    sh(
        &lambik,
        "chmod 600 passwd && chmod 700 ssh && chown 4242 xf
         setfattr -n user.both -v lambik passwd
         setfacl -m g:4343:r ssh/cfg
         chown 1000:1000 . && setfacl -m g:4343:rx . && setfattr -n user.side -v lambik .
         touch -d '2012-02-02' ssh .",
    );
    run(&boston, "syncreplica", ["-record"]).ok();
    run(&lambik, "syncreplica", ["-record"]).ok();
    cross(&fam, "1");
    assert_eq!(differences(&boston, &lambik), Vec::<String>::new());
    for member in [&boston, &lambik] {
        let status = run(member, "syncreplica", ["-status"]).ok();
        assert!(
            status.stdout.contains("no changes to record"),
            "after the merge: {}",
            status.stdout
        );
    }
    // Each sends its resolution; the other has it already.
    let (at_boston, at_lambik) = cross(&fam, "2");
    for imported in [&at_boston, &at_lambik] {
        assert!(
            !imported.stdout.contains("conflict:"),
            "{}",
            imported.stdout
        );
    }
    for member in [&boston, &lambik] {
        let status = run(member, "syncreplica", ["-status"]).ok();
        assert!(
            status.stdout.contains("no changes to record"),
            "{}",
            status.stdout
        );
    }
    for (from, to) in [(&boston, "lambik"), (&lambik, "boston")] {
        let out = fam.packet_dir(&format!("3-to-{to}"));
        let exported = export_to(from, &out, &[to], &[]).ok();
        assert!(
            exported
                .stdout
                .contains(&format!("{to} lacks nothing from this replica")),
            "{}",
            exported.stdout
        );
    }
}

/// Review 14e item 3: a name added to a hard-link set at one member while
/// another member removes a different name of it. Both changes hold: the
/// set keeps its first name and the added one, one file everywhere (the
/// first name left alone at the other member kept naming itself, so it
/// did not leave the set there).
#[test]
fn a_link_added_to_a_set_while_another_name_is_removed_keeps_the_set() {
    if skip() {
        return;
    }
    let fam = family(&["boston", "lambik"], &[("h1", "h\n")]);
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    sh(&boston, "ln h1 h2");
    run(&boston, "syncreplica", ["-record"]).ok();
    cross(&fam, "r0");
    let inode = |root: &Path, name: &str| std::fs::metadata(root.join(name)).unwrap().ino();
    assert_eq!(inode(&lambik, "h1"), inode(&lambik, "h2"));

    sh(&boston, "ln h1 h3");
    sh(&lambik, "rm h2");
    for root in [&boston, &lambik] {
        run(root, "syncreplica", ["-record"]).ok();
    }
    cross(&fam, "r1");
    cross(&fam, "r2");
    for root in [&boston, &lambik] {
        assert!(!root.join("h2").exists());
        assert_eq!(inode(root, "h1"), inode(root, "h3"), "{}", root.display());
        assert_eq!(std::fs::metadata(root.join("h1")).unwrap().nlink(), 2);
        let status = run(root, "syncreplica", ["-status"]).ok();
        assert!(status.stdout.contains("no changes"), "{status:?}");
    }
    assert!(
        differences(&boston, &lambik).is_empty(),
        "{:?}",
        differences(&boston, &lambik)
    );
}

/// Review 14e item 4: two members give a file different access ACLs at
/// once (`setfacl -m u:4242:r`, mask r--, mode unchanged; `setfacl -m
/// u:4242:rw`, mask rw-, mode 664). The conflict keeps one side's ACL
/// whole, with its mask and the group mode bits that go with it, and the
/// report names what is on disk.
#[test]
fn an_acl_conflict_keeps_one_sides_acl_with_its_mask_and_says_so() {
    if skip() {
        return;
    }
    let fam = family(&["boston", "lambik"], &[("f", "x\n")]);
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    for root in [&boston, &lambik] {
        sh(root, "chmod 644 f");
        run(root, "syncreplica", ["-record"]).ok();
    }
    cross(&fam, "r0");
    sh(&boston, "setfacl -m u:4242:r f");
    sh(&lambik, "setfacl -m u:4242:rw f");
    for root in [&boston, &lambik] {
        run(root, "syncreplica", ["-record"]).ok();
    }
    let (at_boston, at_lambik) = cross(&fam, "r1");
    let kept = "kept boston's access ACL u::rw-,u:4242:r--,g::r--,m::r--,o::r--";
    for said in [&at_boston.stdout, &at_lambik.stdout] {
        assert!(said.contains(kept), "{said}");
    }
    for root in [&boston, &lambik] {
        let acl = sh_output(root, "getfacl -cpn f");
        assert!(
            acl.contains("user:4242:r--") && acl.contains("mask::r--"),
            "{acl}"
        );
        let mode = std::fs::metadata(root.join("f")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", root.display());
        let status = run(root, "syncreplica", ["-status"]).ok();
        assert!(status.stdout.contains("no changes"), "{status:?}");
    }
    assert!(
        differences(&boston, &lambik).is_empty(),
        "{:?}",
        differences(&boston, &lambik)
    );
}
