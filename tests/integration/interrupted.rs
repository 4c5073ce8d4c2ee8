//! Nothing a user made is ever lost, and no interruption leaves a replica
//! stuck: commands killed at named points (the test hook
//! `SYNCREPLICA_TEST_CRASH_AT`) and commands that fail.

use std::ffi::OsStr;

use crate::helpers::*;

#[test]
fn an_import_killed_after_its_commit_has_raised_the_senders_estimate() {
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    write(&a, "new.txt", "made at alpha");
    let out = fam.packet_dir("ab");
    export_to(&a, &out, &["beta"], &[]).ok();
    let killed = run_crashing_at(
        &b,
        "syncreplica",
        ["-import".as_ref(), out.as_os_str()],
        "import-after-commit",
    );
    assert_crashed(&killed);
    // The batch's operations waited in a scratch database, which a crash
    // leaves behind and the next command's recovery removes.
    let scratch = b.join(".syncreplica/batch-ops.db");
    assert!(scratch.exists());
    let again = import_from(&b, &[&out]).ok();
    assert!(again.stdout.contains("Already applied"), "{}", again.stdout);
    assert!(!scratch.exists());
    // beta knows alpha has its own operations: nothing goes back.
    let back = export_to(&b, &fam.packet_dir("ba"), &["alpha"], &[]).ok();
    assert!(
        back.stdout.contains("alpha lacks nothing"),
        "{}",
        back.stdout
    );
    let log = run(&b, "lspacket", [out.as_os_str()]).ok().stdout;
    assert!(log.contains("already applied"), "{log}");
}

fn init_leftovers(root: &std::path::Path) -> Vec<String> {
    entry_names(root)
        .into_iter()
        .filter(|n| n.starts_with(".syncreplica.init-"))
        .collect()
}

#[test]
fn a_killed_mkreplica_import_is_cleaned_up_by_the_next_run() {
    let fam = family(&["alpha"], &[("docs/a.txt", "hello"), ("b.txt", "b")]);
    let a = fam.root("alpha");
    let out = fam.packet_dir("creation");
    mkreplica_export(&a, &out, "beta").ok();
    let b = fam.root("beta");
    let args: [&std::ffi::OsStr; 4] = [
        "-import".as_ref(),
        "-replica".as_ref(),
        b.as_os_str(),
        out.as_os_str(),
    ];
    let killed = run_crashing_at(
        fam.dir.path(),
        "mkreplica",
        args,
        "mkreplica-import-before-rename",
    );
    assert_crashed(&killed);
    assert_eq!(init_leftovers(&b).len(), 1, "{:?}", entry_names(&b));
    // A file the user put there meanwhile is not the packet's: kept, and
    // the directory is then not empty.
    write(&b, "mine.txt", "user's");
    let refused = run(fam.dir.path(), "mkreplica", args).fails_with(1);
    assert!(refused.stderr.contains("not empty"), "{}", refused.stderr);
    assert_eq!(
        std::fs::read_to_string(b.join("mine.txt")).unwrap(),
        "user's"
    );
    std::fs::remove_file(b.join("mine.txt")).unwrap();
    // Deeper down too, and a packet file a person edited: kept, refused.
    write(&b, "docs/mine.txt", "user's too");
    let refused = run(fam.dir.path(), "mkreplica", args).fails_with(1);
    assert!(refused.stderr.contains("not empty"), "{}", refused.stderr);
    assert_eq!(
        std::fs::read_to_string(b.join("docs/mine.txt")).unwrap(),
        "user's too"
    );
    std::fs::remove_file(b.join("docs/mine.txt")).unwrap();
    write(&b, "docs/a.txt", "edited after the kill");
    run(fam.dir.path(), "mkreplica", args).fails_with(1);
    assert_eq!(
        std::fs::read_to_string(b.join("docs/a.txt")).unwrap(),
        "edited after the kill"
    );
    std::fs::remove_file(b.join("docs/a.txt")).unwrap();
    let again = run(fam.dir.path(), "mkreplica", args).ok();
    assert!(
        again.stdout.contains("killed before it finished"),
        "{}",
        again.stdout
    );
    assert!(init_leftovers(&b).is_empty());
    assert_eq!(tree_listing(&a), tree_listing(&b));
}

#[test]
fn a_killed_mkreplica_init_is_cleaned_up_by_the_next_run() {
    let dir = tree(&[("a.txt", "a")]);
    let args = ["-init", "-family", "fam", "alpha"];
    assert_crashed(&run_crashing_at(
        dir.path(),
        "mkreplica",
        args,
        "mkreplica-init-before-rename",
    ));
    assert_eq!(init_leftovers(dir.path()).len(), 1);
    let again = run(dir.path(), "mkreplica", args).ok();
    assert!(
        again.stdout.contains("killed before it finished"),
        "{}",
        again.stdout
    );
    assert!(init_leftovers(dir.path()).is_empty());
    let status = run(dir.path(), "syncreplica", ["-status"]).ok();
    assert!(!status.stdout.contains("init-"), "{}", status.stdout);
}

#[test]
fn mkreplica_init_refused_for_nesting_creates_nothing() {
    let dir = tree(&[("a.txt", "a")]);
    init(dir.path(), "outer");
    let inner = dir.path().join("sub/inner");
    let refused = run(
        dir.path(),
        "mkreplica",
        [
            "-init".as_ref(),
            "-family".as_ref(),
            "f2".as_ref(),
            "-replica".as_ref(),
            inner.as_os_str(),
            "inner".as_ref(),
        ] as [&std::ffi::OsStr; 6],
    );
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(!dir.path().join("sub").exists());
}

#[test]
fn a_refused_export_records_nothing_and_a_missing_out_dir_is_created_last() {
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let a = fam.root("alpha");
    write(&a, "new.txt", "pending");
    let before = own_epoch(&a);
    let missing = fam.dir.path().join("stick/packets");
    // A file where the directory should be: refused, nothing recorded.
    let file = fam.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    export_to(&a, &file, &["beta"], &[]).fails_with(2);
    assert_eq!(own_epoch(&a), before);
    // A bad target with a missing directory: nothing recorded or created.
    export_to(&a, &missing, &["nobody"], &[]).fails_with(2);
    assert_eq!(own_epoch(&a), before);
    assert!(!missing.exists());
    // A missing directory alone is created, and said so.
    let made = export_to(&a, &missing, &["beta"], &[]).ok();
    assert!(
        made.stdout.contains("Created the -out directory"),
        "{}",
        made.stdout
    );
    assert_eq!(packet_files(&missing).len(), 1);
}

#[test]
fn import_remove_that_cannot_remove_reports_what_was_applied_then_fails() {
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    write(&a, "new.txt", "made at alpha");
    let out = fam.packet_dir("ro");
    export_to(&a, &out, &["beta"], &[]).ok();
    // What read-only media does to every removal, done deterministically
    // (even for root): the order beside the packet cannot be removed.
    let name = packet_files(&out)[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let order = out.join(format!("{name}.order"));
    write(&order, "inside", "x");
    let res = run(
        &b,
        "syncreplica",
        ["-import".as_ref(), "-remove".as_ref(), out.as_os_str()],
    )
    .fails_with(1);
    assert!(
        res.stdout.contains("Applied packet from alpha"),
        "{}",
        res.stdout
    );
    assert!(
        res.stdout.contains("Import summary: 1 packet applied"),
        "{}",
        res.stdout
    );
    assert!(
        res.stderr.contains("could not remove the packet file")
            && res.stderr.contains(&format!("{name}.order")),
        "{}",
        res.stderr
    );
    assert_eq!(
        std::fs::read_to_string(b.join("new.txt")).unwrap(),
        "made at alpha"
    );
}

/// Files whose names an unfinished packet part has.
fn partials(dir: &std::path::Path) -> Vec<String> {
    entry_names(dir)
        .into_iter()
        .filter(|n| n.starts_with(".syncpkt-") && n.ends_with(".partial"))
        .collect()
}

#[test]
fn a_signalled_export_removes_its_partial_files_commits_nothing_and_exits_143() {
    let big: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    write(&a, "big.txt", &big);
    write(&a, "new.txt", "made at alpha");
    let estimate = epoch_in_row(&a, "beta", "alpha");
    let out = fam.packet_dir("ab");
    let marker = fam.dir.path().join("paused");
    let paused = export_paused(&a, &out, &marker);
    assert_eq!(partials(&out).len(), 1, "{:?}", entry_names(&out));
    let res = paused.signal(rustix::process::Signal::TERM);
    assert_eq!(res.code, 143, "{res:?}");
    assert!(
        res.stderr.contains("interrupted by SIGTERM"),
        "{}",
        res.stderr
    );
    assert_eq!(
        entry_names(&out),
        Vec::<String>::new(),
        "nothing left behind"
    );
    assert_eq!(
        epoch_in_row(&a, "beta", "alpha"),
        estimate,
        "estimate unchanged"
    );
    // The lock was released and the next export sends everything.
    let again = export_to(&a, &out, &["beta"], &[]).ok();
    assert!(
        again.stdout.contains("Exported to beta"),
        "{}",
        again.stdout
    );
    import_from(&b, &[&out]).ok();
    assert_eq!(std::fs::read_to_string(b.join("big.txt")).unwrap(), big);
    assert_eq!(tree_listing(&a), tree_listing(&b));
}

#[test]
fn an_interrupted_mkreplica_export_leaves_nothing_and_exits_130() {
    let big: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
    let fam = family(&["alpha"], &[("big.txt", &big), ("b.txt", "b")]);
    let a = fam.root("alpha");
    let out = fam.packet_dir("creation");
    let marker = fam.dir.path().join("paused");
    let args = [
        "-export".as_ref(),
        "-out".as_ref(),
        out.as_os_str(),
        "beta".as_ref(),
    ] as [&std::ffi::OsStr; 4];
    let paused = start_paused_at(&a, "mkreplica", args, "export-writing", &marker);
    assert_eq!(partials(&out).len(), 1, "{:?}", entry_names(&out));
    let res = paused.signal(rustix::process::Signal::INT);
    assert_eq!(res.code, 130, "{res:?}");
    assert!(
        res.stderr.contains("interrupted by SIGINT"),
        "{}",
        res.stderr
    );
    assert_eq!(
        entry_names(&out),
        Vec::<String>::new(),
        "no part, no key file"
    );
    let members = run(&a, "lsreplica", [] as [&str; 0]).ok().stdout;
    assert!(!members.contains("beta"), "{members}");
    // Unlocked and unchanged: the same export works now.
    run(&a, "mkreplica", args).ok();
}

#[test]
fn a_later_export_removes_partials_only_when_provably_abandoned() {
    let big: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    write(&a, "big.txt", &big);
    let out = fam.packet_dir("ab");
    let killed = run_crashing_at(
        &a,
        "syncreplica",
        [
            "-export".as_ref(),
            "-out".as_ref(),
            out.as_os_str(),
            "beta".as_ref(),
        ] as [&std::ffi::OsStr; 4],
        "export-writing",
    );
    assert_crashed(&killed);
    let left = partials(&out);
    assert_eq!(left.len(), 1, "{:?}", entry_names(&out));
    // Another host's export, under way (its pid means nothing here).
    let elsewhere = ".syncpkt-0123456789abcdef-999999999-Xy12Ab.partial";
    // One of this host whose process still runs (this test).
    let running = format!("{}Cd34Ef.partial", packet_format::partial_prefix());
    // Another host's, untouched for two days: abandoned whoever wrote it.
    let old = ".syncpkt-0123456789abcdef-7-Gh56Ij.partial";
    for name in [elsewhere, running.as_str(), old] {
        std::fs::write(out.join(name), "unfinished").unwrap();
    }
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(48 * 3600);
    std::fs::File::options()
        .write(true)
        .open(out.join(old))
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let res = export_to(&a, &out, &["beta"], &[]).ok();
    assert!(res.stdout.contains(&left[0]), "{}", res.stdout);
    assert!(res.stdout.contains(old), "{}", res.stdout);
    let mut kept = vec![elsewhere.to_string(), running];
    kept.sort();
    assert_eq!(partials(&out), kept);
    for name in &kept {
        std::fs::remove_file(out.join(name)).unwrap();
    }
    import_from(&b, &[&out]).ok();
    assert_eq!(tree_listing(&a), tree_listing(&b));
}

#[test]
fn a_refused_or_unconfirmed_chepoch_changes_nothing() {
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let a = fam.root("alpha");
    let before = everything_under(&a);
    for (args, message) in [
        (vec!["nobody", "alpha=1"], "unknown replica \"nobody\""),
        (vec!["alpha", "alpha=1"], "this replica's own row"),
        (vec!["beta", "alpha=99"], "recorded only up to epoch"),
        (vec!["beta", "alpha=0", "alpha=1"], "named twice"),
        (
            vec!["-force", "beta", "nobody=1"],
            "unknown replica \"nobody\"",
        ),
    ] {
        let out = run(&a, "chepoch", &args).fails_with(2);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        assert_eq!(everything_under(&a), before, "{args:?}");
    }
    let out = run_answering(&a, "chepoch", ["beta", "alpha=0"], "no\n").fails_with(1);
    assert!(out.stderr.contains("not confirmed"), "{}", out.stderr);
    assert_eq!(everything_under(&a), before, "unconfirmed");
    run_answering(&a, "chepoch", ["beta", "alpha=0"], "yes\n").ok();
    assert_eq!(epoch_in_row(&a, "beta", "alpha"), 0);
}

#[test]
fn a_refused_lsepoch_changes_nothing() {
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let a = fam.root("alpha");
    let before = everything_under(&a);
    let out = run(&a, "lsepoch", ["nobody"]).fails_with(2);
    assert!(
        out.stderr.contains("unknown replica \"nobody\""),
        "{}",
        out.stderr
    );
    assert_eq!(everything_under(&a), before);
}

#[test]
fn an_import_that_applies_nothing_records_nothing() {
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let b = fam.root("beta");
    write(&b, "pending.txt", "not recorded yet");
    let before = everything_under(&b);
    // A source that is not there: refused before anything is recorded.
    let missing = fam.dir.path().join("no-such-stick");
    let out = import_from(&b, &[&missing]).fails_with(2);
    assert!(out.stderr.contains("no-such-stick"), "{}", out.stderr);
    assert_eq!(everything_under(&b), before);
    // A damaged packet: refused, and the replica is unchanged (the
    // pending change is not recorded either).
    let dir = fam.packet_dir("damaged");
    std::fs::write(
        dir.join("sync_alpha_19700101T000000Z_beta_9.zip"),
        b"PK\x03\x04 not really",
    )
    .unwrap();
    let out = import_from(&b, &[&dir]).fails_with(1);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    assert_eq!(everything_under(&b), before);
    // Applying a packet records the pending change first, as always.
    write(&fam.root("alpha"), "new.txt", "from alpha");
    let out = fam.packet_dir("good");
    export_to(&fam.root("alpha"), &out, &["beta"], &[]).ok();
    let epoch = own_epoch(&b);
    import_from(&b, &[&out]).ok();
    // pending.txt, the root's mtime making it moved, and the root's two
    // concurrent versions merged (alpha's new.txt moved alpha's root).
    assert_eq!(own_epoch(&b), epoch + 3);
    assert!(b.join("new.txt").exists());
}

#[test]
fn chepoch_does_not_hold_the_lock_while_its_question_waits() {
    use std::io::{Read, Write};
    let fam = family(&["alpha", "beta"], &[("base.txt", "base")]);
    let a = fam.root("alpha");
    let mut asking = spawn_on_terminal(&a, "chepoch", ["beta", "alpha=0"]);
    // Waits for the question itself, not for time to pass.
    let mut stdout = asking.stdout.take().unwrap();
    let mut shown = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&shown).contains("[no] ") {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "chepoch ended early");
        shown.push(byte[0]);
    }
    // Someone may answer tomorrow: meanwhile the replica is not locked.
    write(&a, "new.txt", "recorded while chepoch asks");
    let record = run(&a, "syncreplica", ["-record"]);
    asking.stdin.take().unwrap().write_all(b"yes\n").unwrap();
    let status = asking.wait().unwrap();
    record.ok();
    // The change was planned before that record and still applies: the
    // record moved alpha's own row, not beta's.
    assert!(status.success());
    assert_eq!(epoch_in_row(&a, "beta", "alpha"), 0);
}

/// `mkreplica -import` into a directory inside a replica is refused
/// before anything is made: no directory appears in the outer replica (it
/// would be recorded and sent to its siblings), and the message names it.
#[test]
fn mkreplica_import_refused_for_nesting_creates_nothing() {
    let fam = family(&["alpha"], &[("docs/a.txt", "hello")]);
    let a = fam.root("alpha");
    let out = fam.packet_dir("creation");
    mkreplica_export(&a, &out, "beta").ok();
    let before = everything_under(&a);
    let inside = a.join("x/y/z");
    let refused = run(
        fam.dir.path(),
        "mkreplica",
        [
            "-import".as_ref(),
            "-replica".as_ref(),
            inside.as_os_str(),
            out.as_os_str(),
        ] as [&std::ffi::OsStr; 4],
    )
    .fails_with(2);
    assert!(
        refused.stderr.contains("inside replica \"alpha\""),
        "{}",
        refused.stderr
    );
    assert!(!a.join("x").exists());
    assert_eq!(everything_under(&a), before);
}

/// An export to two targets interrupted while writing the second says
/// what it did for the first: exported (its packet stays, its estimate is
/// raised) before the message that the packet being written was removed.
#[test]
fn an_interrupted_export_to_several_targets_reports_those_done() {
    let fam = family(&["alpha", "beta", "gamma"], &[("seed", "0")]);
    let a = fam.root("alpha");
    write(&a, "news.txt", "news");
    let out = fam.packet_dir("usb");
    let marker = fam.dir.path().join("paused");
    let mut paused = start_paused_at(
        &a,
        "syncreplica",
        [
            OsStr::new("-export"),
            OsStr::new("-out"),
            out.as_os_str(),
            OsStr::new("beta"),
            OsStr::new("gamma"),
        ],
        "export-writing",
        &marker,
    );
    paused.next(); // beta written; now writing gamma's
    let run = paused.signal(rustix::process::Signal::INT);
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert!(run.stdout.contains("Exported to beta"), "{}", run.stdout);
    assert!(!run.stdout.contains("Exported to gamma"), "{}", run.stdout);
    assert!(
        run.stderr.contains("interrupted by SIGINT"),
        "{}",
        run.stderr
    );
    let names = entry_names(&out);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].contains("_beta_"), "{names:?}");
}

/// A file replaced in one step (`RENAME_EXCHANGE`) by an import killed
/// just before or just after the swap: the next command's recovery
/// completes it from the marker beside the displaced name. The replica
/// ends with the new version, the one it replaced dropped (it was the
/// version the plan expected, not a local change), no conflict copy, no
/// leftovers in the staging folder, and nothing left to record.
#[test]
fn an_import_killed_around_a_one_step_replacement_completes_it() {
    for point in ["apply-exchange-before-swap", "apply-exchange-after-swap"] {
        let fam = family(&["alpha", "beta"], &[("f.txt", "old"), ("g.txt", "g")]);
        let (a, b) = (fam.root("alpha"), fam.root("beta"));
        write(&a, "f.txt", "the new version");
        let out = fam.packet_dir(point);
        export_to(&a, &out, &["beta"], &[]).ok();
        let killed = run_crashing_at(
            &b,
            "syncreplica",
            ["-import".as_ref(), out.as_os_str()],
            point,
        );
        if killed.code == 0 {
            eprintln!("SKIPPED {point}: this filesystem cannot swap names (RENAME_EXCHANGE)");
            continue;
        }
        assert_crashed(&killed);
        // Killed midway: the swap's marker waits in the staging folder.
        let markers = |root: &std::path::Path| -> Vec<String> {
            everything_under(&root.join(".syncreplica"))
                .into_iter()
                .filter(|line| line.contains("displaced-"))
                .collect()
        };
        assert!(
            markers(&b).iter().any(|line| line.contains(".exchange")),
            "{point}: {:?}",
            everything_under(&b.join(".syncreplica"))
        );
        let again = import_from(&b, &[&out]).ok();
        assert!(
            again.stdout.contains("Already applied"),
            "{point}: {}",
            again.stdout
        );
        assert_eq!(
            std::fs::read_to_string(b.join("f.txt")).unwrap(),
            "the new version",
            "{point}"
        );
        assert_eq!(tree_listing(&a), tree_listing(&b), "{point}");
        assert_eq!(markers(&b), Vec::<String>::new(), "{point}");
        let status = run(&b, "syncreplica", ["-status"]).ok();
        assert!(
            status.stdout.contains("no changes to record"),
            "{point}: {}",
            status.stdout
        );
    }
}
