//! What a new user trips on, found by walking the README on release
//! binaries (issue 17): each test covers one kind of message or exit code
//! in every command where it occurs.

use std::ffi::OsStr;
use std::path::Path;

use crate::helpers::*;

/// `mkreplica -export -keyout FILE` where FILE exists: the message says
/// the key file exists and is never overwritten, and the hint what to do
/// (not the import side's `-key`); exit 2, nothing written.
#[test]
fn a_keyout_file_in_the_way_is_said_as_such_with_what_to_do() {
    let fam = family(&["alpha"], &[("a.txt", "one")]);
    let existing = fam.dir.path().join("old.key");
    std::fs::write(&existing, "keys of an earlier export\n").unwrap();
    let out = fam.dir.path().join("stick");
    // `mkreplica -export -out OUT -keyout KEY beta` at alpha: refused, exit 2.
    let export_keyout =
        |key: &Path| mkreplica_export_keyout(&fam.root("alpha"), &out, key, "beta").fails_with(2);
    let refused = export_keyout(&existing);
    let expected = format!(
        "-keyout {}: the file exists already, and a key file is never overwritten",
        existing.display()
    );
    assert!(refused.stderr.contains(&expected), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("hint: name another file with -keyout")
            && refused.stderr.contains("remove it and export again")
            && !refused.stderr.contains("name with -key "),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "keys of an earlier export\n"
    );
    assert!(!out.exists(), "nothing made");
    // A folder that is not there: said, with how to make it.
    let nowhere = fam.dir.path().join("nowhere").join("beta.key");
    let refused = export_keyout(&nowhere);
    assert!(
        refused.stderr.contains("its folder")
            && refused.stderr.contains("does not exist")
            && refused.stderr.contains("mkdir -m 700"),
        "{}",
        refused.stderr
    );
}

/// A `-passphrase-file` that is not there says so (path, OS error), not
/// "must not be empty"; one given with `-keyout` is refused (exit 2) with
/// why; a new passphrase needs 8 characters.
#[test]
fn passphrase_file_mistakes_are_said_as_they_are() {
    let fam = family(&["alpha"], &[("a.txt", "one")]);
    let out = fam.dir.path().join("stick");
    let export = |extra: &[&OsStr]| {
        let mut args: Vec<&OsStr> = vec!["-export".as_ref(), "-out".as_ref(), out.as_os_str()];
        args.extend_from_slice(extra);
        args.push("beta".as_ref());
        command_as_given("mkreplica", args)
            .current_dir(fam.root("alpha"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let missing = fam.dir.path().join("no-such-passphrase");
    let run = export(&["-passphrase-file".as_ref(), missing.as_os_str()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "-passphrase-file {}: cannot be read: no such file or directory;",
            missing.display()
        )) && stderr.contains("hint: check the name")
            && !stderr.contains("os error")
            && !stderr.contains("must not be empty"),
        "{stderr}"
    );
    // With -keyout: the packet would not be encrypted to it.
    let passphrase = fam.dir.path().join("passphrase");
    std::fs::write(&passphrase, "long enough passphrase\n").unwrap();
    let keyout = fam.dir.path().join("beta.key");
    let run = export(&[
        "-passphrase-file".as_ref(),
        passphrase.as_os_str(),
        "-keyout".as_ref(),
        keyout.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("-passphrase-file and -keyout do not go together")
            && stderr.contains("encrypted to the new member's key"),
        "{stderr}"
    );
    assert!(!keyout.exists() && !out.exists());
    // Too short a new passphrase.
    let short = fam.dir.path().join("short");
    std::fs::write(&short, "1234567\n").unwrap();
    let run = export(&["-passphrase-file".as_ref(), short.as_os_str()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("it has 7 characters, fewer than the 8 a new passphrase needs")
            && stderr.contains("hint: choose a passphrase of at least 8 characters"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing made");
    // Eight are enough.
    std::fs::write(&short, "12345678\n").unwrap();
    let run = export(&["-passphrase-file".as_ref(), short.as_os_str()]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// A file named on the command line that is not there says "no such
/// file" with its path; a shell pattern that matched nothing says so with
/// the pattern: exit 2 in every command that reads packet files.
#[test]
fn a_missing_file_or_an_unmatched_pattern_is_said_as_such_everywhere() {
    let fam = family(&["alpha"], &[("a.txt", "one")]);
    let dir = fam.dir.path();
    let missing = dir.join("sync_alpha_20261130T120000Z_beta_1.zip");
    let pattern = dir.join("stick").join("*.zip");
    let shipconf = bay_shipping_conf(dir);
    for file in [&missing, &pattern] {
        let runs = [
            run(
                dir,
                "mkorder",
                [
                    OsStr::new("-shipconf"),
                    shipconf.as_os_str(),
                    "-data".as_ref(),
                    file.as_os_str(),
                ],
            )
            .fails_with(2),
            run(dir, "lspacket", [file.as_os_str()]).fails_with(2),
            import_from(&fam.root("alpha"), &[file]).fails_with(2),
            mkreplica_import_at(dir, &dir.join("new"), file).fails_with(2),
        ];
        for refused in runs {
            let said = if file == &pattern {
                format!("{}: matches no file", pattern.display())
            } else {
                format!("{}: no such file or directory", missing.display())
            };
            assert!(refused.stderr.contains(&said), "{said}: {}", refused.stderr);
            assert!(
                !refused.stderr.contains("damaged") && !refused.stderr.contains("not a packet"),
                "{}",
                refused.stderr
            );
        }
    }
}

/// `lspacket DIR` of a folder holding only a renamed packet lists it, and
/// says that the imports skip it there and what its name should be; a
/// folder of other files says which were skipped and why.
#[test]
fn lspacket_lists_a_renamed_packet_and_says_what_it_skipped() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    write(&fam.root("alpha"), "b.txt", "two");
    let out = fam.packet_dir("out");
    export_to(&fam.root("alpha"), &out, &["beta"], &[]).ok();
    let packet = packet_files(&out).remove(0);
    let name = packet.file_name().unwrap().to_str().unwrap().to_string();
    let mail = fam.dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    std::fs::copy(&packet, mail.join("attachment.zip")).unwrap();
    let listed = run(&fam.root("beta"), "lspacket", [mail.as_os_str()]).ok();
    assert!(
        listed.stdout.contains("attachment.zip") && listed.stdout.contains("Packet type: Update"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains(&format!(
            "skip it in a folder: name the file itself, or rename it to {name}"
        )),
        "{}",
        listed.stdout
    );
    assert!(
        !listed.stdout.contains("No packets found"),
        "{}",
        listed.stdout
    );
    let json = run(
        &fam.root("beta"),
        "lspacket",
        [OsStr::new("-fmt"), "json".as_ref(), mail.as_os_str()],
    )
    .ok();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["packets"][0]["packet_name"], name.as_str());
    // As -import says of it.
    let skipped = import_from(&fam.root("beta"), &[&mail]).ok();
    assert!(
        skipped
            .stdout
            .contains("skipped 1 other file: attachment.zip"),
        "{}",
        skipped.stdout
    );
    // Files that are no packet: which, and why.
    let photos = fam.dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("notes.txt"), "not a packet").unwrap();
    let listed = run(&fam.root("beta"), "lspacket", [photos.as_os_str()]).ok();
    assert!(
        listed.stdout.contains(&format!(
            "No packets in {}; skipped 1 other file, none of them a packet:",
            photos.display()
        )) && listed.stdout.contains("  notes.txt: not a zip archive"),
        "{}",
        listed.stdout
    );
}

/// The -out directory a command makes is announced when it is made,
/// before the packets written into it; one that stays empty is removed
/// again, and that is said too.
#[test]
fn the_out_directory_is_announced_before_what_goes_into_it() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    write(&fam.root("alpha"), "b.txt", "two");
    let position = |text: &str, what: &str| {
        text.lines()
            .position(|line| line.starts_with(what))
            .unwrap_or_else(|| panic!("{what}: {text}"))
    };
    let out = fam.dir.path().join("new-out");
    let export = export_to(&fam.root("alpha"), &out, &["beta"], &[]).ok();
    assert!(
        position(&export.stdout, "Created the -out directory")
            < position(&export.stdout, "Exported to beta"),
        "{}",
        export.stdout
    );
    // Nothing to send: made, then removed, both said.
    let empty = fam.dir.path().join("empty-out");
    let nothing = export_to(&fam.root("alpha"), &empty, &["beta"], &[]).ok();
    assert!(!empty.exists());
    assert!(
        position(&nothing.stdout, "Created the -out directory")
            < position(&nothing.stdout, "Removed the -out directory"),
        "{}",
        nothing.stdout
    );
    let creation = fam.dir.path().join("new-creation");
    let made = mkreplica_export(&fam.root("alpha"), &creation, "gamma").ok();
    assert!(
        position(&made.stdout, "Created the -out directory")
            < position(&made.stdout, "Wrote the replica-creation packet"),
        "{}",
        made.stdout
    );
}

/// `mkreplica -import` (or `-init`) naming a replica's own root says that
/// it is that replica, with no trailing slash, and hints at what was
/// likely meant (syncreplica -import, or a directory of its own).
#[test]
fn making_a_replica_at_a_replica_s_own_root_says_so() {
    let fam = family(&["alpha"], &[("a.txt", "one")]);
    let creation = fam.packet_dir("creation");
    mkreplica_export(&fam.root("alpha"), &creation, "beta").ok();
    let root = std::fs::canonicalize(fam.root("alpha")).unwrap();
    let with_slash = format!("{}/", fam.root("alpha").display());
    let import =
        mkreplica_import_at(fam.dir.path(), Path::new(&with_slash), &creation).fails_with(1);
    let init = run(
        fam.dir.path(),
        "mkreplica",
        [
            OsStr::new("-init"),
            "-family".as_ref(),
            "other".as_ref(),
            "-replica".as_ref(),
            with_slash.as_ref(),
            "x".as_ref(),
        ],
    )
    .fails_with(1);
    for refused in [import, init] {
        assert!(
            refused.stderr.contains(&format!(
                "error: {} is the root of replica \"alpha\"; a new replica cannot be made there\n",
                root.display()
            )),
            "{}",
            refused.stderr
        );
        assert!(
            refused
                .stderr
                .contains("to bring packets into replica \"alpha\", run syncreplica -import")
                && !refused.stderr.contains("cannot be nested"),
            "{}",
            refused.stderr
        );
    }
    // Inside it, the nesting rule still speaks.
    let inside = mkreplica_import_at(fam.dir.path(), &fam.root("alpha").join("sub"), &creation)
        .fails_with(2);
    assert!(
        inside
            .stderr
            .contains("is already inside replica \"alpha\""),
        "{}",
        inside.stderr
    );
}

/// A member name that names nothing, or may not be named there, is a
/// mistake on the command line: exit 2, in every command taking one.
#[test]
fn a_member_name_that_cannot_be_used_exits_2_everywhere() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let alpha = fam.root("alpha");
    let out = fam.dir.path().join("out");
    let cases: Vec<(&str, Vec<&OsStr>, &str)> = vec![
        (
            "syncreplica",
            vec![
                "-export".as_ref(),
                "-out".as_ref(),
                out.as_os_str(),
                "NOSUCH".as_ref(),
            ],
            "unknown replica \"NOSUCH\"",
        ),
        (
            "syncreplica",
            vec![
                "-export".as_ref(),
                "-out".as_ref(),
                out.as_os_str(),
                "alpha".as_ref(),
            ],
            "that is this replica",
        ),
        (
            "lsepoch",
            vec!["NOSUCH".as_ref()],
            "unknown replica \"NOSUCH\"",
        ),
        (
            "chepoch",
            vec!["NOSUCH".as_ref(), "alpha=1".as_ref()],
            "unknown replica \"NOSUCH\"",
        ),
        (
            "chepoch",
            vec!["beta".as_ref(), "NOSUCH=1".as_ref()],
            "unknown replica \"NOSUCH\"",
        ),
        (
            "rmreplica",
            vec!["NOSUCH".as_ref()],
            "unknown replica \"NOSUCH\"",
        ),
        ("rmreplica", vec!["alpha".as_ref()], "that is this replica"),
        (
            "chreplica",
            vec!["-mirror".as_ref(), "NOSUCH".as_ref()],
            "unknown replica \"NOSUCH\"",
        ),
        (
            "mkreplica",
            vec!["-restore".as_ref(), "NOSUCH".as_ref()],
            "unknown replica \"NOSUCH\"",
        ),
        (
            "mkreplica",
            vec![
                "-export".as_ref(),
                "-out".as_ref(),
                out.as_os_str(),
                "beta".as_ref(),
            ],
            "already has a member of that name",
        ),
    ];
    for (name, args, said) in cases {
        let refused = run(&alpha, name, &args).fails_with(2);
        assert!(
            refused.stderr.contains(said),
            "{name} {args:?}: {}",
            refused.stderr
        );
    }
    assert!(!out.exists());
}

/// One creation packet imported twice on one host: the second import is
/// refused while the first copy is there, naming it; once that copy is
/// gone, the packet makes the member again (a lost replica made anew).
#[test]
fn a_second_import_of_one_creation_packet_on_one_host_is_refused() {
    let fam = family(&["alpha"], &[("a.txt", "one")]);
    let creation = fam.packet_dir("creation");
    mkreplica_export(&fam.root("alpha"), &creation, "beta").ok();
    let host = fam.dir.path().join("host-data");
    let import = |root: &Path| {
        run_as_another_host(
            fam.dir.path(),
            "mkreplica",
            [
                OsStr::new("-import"),
                "-replica".as_ref(),
                root.as_os_str(),
                creation.as_os_str(),
            ],
            &host,
        )
    };
    let first = fam.root("beta");
    import(&first).ok();
    let second = fam.root("beta-again");
    let refused = import(&second).fails_with(1);
    let first_canonical = std::fs::canonicalize(&first).unwrap();
    assert!(
        refused.stderr.contains(&format!(
            "replica \"beta\" of this creation packet is on this host already, at {}",
            first_canonical.display()
        )) && refused.stderr.contains("a clone")
            && refused
                .stderr
                .contains("hint: to make another member, run mkreplica -export NEWNAME"),
        "{}",
        refused.stderr
    );
    assert!(!second.exists(), "nothing made");
    // Another host (another data folder) cannot know: a clone, which the
    // siblings' clone alarm is for.
    let elsewhere = fam.root("beta-elsewhere");
    run_as_another_host(
        fam.dir.path(),
        "mkreplica",
        [
            OsStr::new("-import"),
            "-replica".as_ref(),
            elsewhere.as_os_str(),
            creation.as_os_str(),
        ],
        &fam.dir.path().join("other-host-data"),
    )
    .ok();
    // The first copy lost: the packet makes it anew.
    std::fs::remove_dir_all(&first).unwrap();
    import(&second).ok();
    assert_eq!(
        std::fs::read_to_string(second.join("a.txt")).unwrap(),
        "one"
    );
}

/// At a new member, the creation packet it was made from (sealed with a
/// passphrase lspacket is not given) is listed as already applied, exit 0;
/// the JSON listing names the verified signer. At the sender the same
/// packet says it is encrypted with a passphrase.
#[test]
fn lspacket_lists_the_creation_packet_a_member_was_made_from_as_applied() {
    let family = family(&["alpha", "beta"], &[("a.txt", "a\n")]);
    let creation = family.dir.path().join("creation-beta");
    let listed = run(&family.root("beta"), "lspacket", [&creation]).ok();
    assert!(
        listed.stdout.contains("(local: already applied)") && !listed.stdout.contains("encrypted"),
        "{}",
        listed.stdout
    );
    let json = run(
        &family.root("beta"),
        "lspacket",
        ["-fmt".as_ref(), "json".as_ref(), creation.as_os_str()],
    )
    .ok();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let packet = &value["packets"][0];
    assert_eq!(packet["status"], "intact", "{}", json.stdout);
    assert_eq!(packet["targets"][0]["status"], "already applied");
    assert_eq!(packet["signature"]["status"], "verified");
    assert_eq!(
        packet["signature"]["fingerprint"].as_str().map(str::len),
        Some(64),
        "{}",
        json.stdout
    );
    let at_sender = run(&family.root("alpha"), "lspacket", [&creation]).ok();
    assert!(
        at_sender
            .stdout
            .contains("Contents: encrypted with a passphrase; this replica cannot read them."),
        "{}",
        at_sender.stdout
    );
}

/// chepoch refusing an epoch beyond what the origin recorded hints a value
/// it would accept (the origin's last epoch), not an arbitrary example.
#[test]
fn chepoch_hints_an_epoch_it_would_accept() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "a\n")]);
    let alpha = fam.root("alpha");
    let own = own_epoch(&alpha);
    let refused = run(&alpha, "chepoch", ["beta", "alpha=4000"]).fails_with(2);
    assert!(
        refused
            .stderr
            .contains(&format!("has recorded only up to epoch {own}"))
            && refused.stderr.contains(&format!("e.g. alpha={own}"))
            && !refused.stderr.contains("1300"),
        "{}",
        refused.stderr
    );
}

/// lspacket -long counts one record in the singular.
#[test]
fn lspacket_long_counts_one_chunk_record_in_the_singular() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "a\n")]);
    let alpha = fam.root("alpha");
    write(&alpha, "b.txt", "one small file\n");
    let out = fam.packet_dir("one");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    let listed = run(&alpha, "lspacket", ["-long".as_ref(), out.as_os_str()]).ok();
    assert!(
        listed.stdout.contains("and 1 chunk record.")
            && !listed.stdout.contains(" 1 chunk records"),
        "{}",
        listed.stdout
    );
}

/// `syncreplica -export ship` (forgot -out): the tip says where packets
/// can go, not that "ship" should be the option -ship.
#[test]
fn export_without_a_destination_says_what_it_needs() {
    let fam = family(&["alpha"], &[("a.txt", "a\n")]);
    for target in ["ship", "boston"] {
        let refused = run(&fam.root("alpha"), "syncreplica", ["-export", target]).fails_with(2);
        assert!(
            refused
                .stderr
                .contains("tip: -export needs -out DIR, -ship or -fship")
                && !refused.stderr.contains("options start with a dash"),
            "{}",
            refused.stderr
        );
    }
    let refused = run(&fam.root("alpha"), "syncreplica", ["status"]).fails_with(2);
    assert!(
        refused
            .stderr
            .contains("tip: options start with a dash: -status"),
        "{}",
        refused.stderr
    );
}

/// A -passphrase-file too short for a new passphrase is a wrong value on
/// the command line: exit 2, as a missing one.
#[test]
fn a_short_passphrase_file_exits_2() {
    let fam = family(&["alpha"], &[("a.txt", "a\n")]);
    let short = fam.dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let out = fam.dir.path().join("stick");
    let refused = run(
        &fam.root("alpha"),
        "mkreplica",
        [
            OsStr::new("-export"),
            "-passphrase-file".as_ref(),
            short.as_os_str(),
            "-out".as_ref(),
            out.as_os_str(),
            "beta".as_ref(),
        ],
    )
    .fails_with(2);
    assert!(
        refused.stderr.contains("mkreplica: error: "),
        "{}",
        refused.stderr
    );
}

/// Packets written into the replica's own tree (review 17c item 2a): a
/// scan would record them as replicated files. -out inside the replica is
/// refused before anything is recorded, with the exclude line to add; once
/// excluded, the export goes there and the next scan records nothing of it.
#[test]
fn an_out_folder_inside_the_replica_is_refused_unless_excluded() {
    let fam = family(&["ship", "boston"], &[("a.txt", "one")]);
    let ship = fam.root("ship");
    write(&ship, "a.txt", "two");
    let before = everything_under(&ship);
    let refused = run(
        &ship,
        "syncreplica",
        ["-export", "-out", "outbox", "boston"],
    );
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("-out directory outbox is inside replica")
            && refused.stderr.contains("add the line `/outbox/`"),
        "{}",
        refused.stderr
    );
    assert_eq!(everything_under(&ship), before);
    write(&ship, ".syncreplicaignore", "/outbox/\n");
    run(
        &ship,
        "syncreplica",
        ["-export", "-out", "outbox", "boston"],
    )
    .ok();
    assert!(std::fs::read_dir(ship.join("outbox")).unwrap().count() > 0);
    let status = run(&ship, "syncreplica", ["-status"]).ok();
    assert!(!status.stdout.contains("outbox"), "{}", status.stdout);
    // The same at the root (-out .): the hint names the packets' pattern.
    let refused = run(&ship, "syncreplica", ["-export", "-out", ".", "boston"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("`/sync_*.zip`"),
        "{}",
        refused.stderr
    );
}

/// Packets imported from inside the tree (review 17c item 2b): `cp
/// stick/sync_*.zip . ; syncreplica -import -remove .` recorded the packet
/// as a new file, and -remove made that a replicated delete. Refused, with
/// nothing changed; from an excluded folder the import works, and the next
/// export ships nothing of the packet.
#[test]
fn importing_packets_from_inside_the_replica_is_refused_unless_excluded() {
    let fam = family(&["ship", "boston"], &[("a.txt", "one")]);
    let (ship, boston) = (fam.root("ship"), fam.root("boston"));
    write(&boston, "b.txt", "from boston");
    let stick = fam.packet_dir("1");
    export_to(&boston, &stick, &["ship"], &[]).ok();
    let packet = packet_files(&stick)[0].clone();
    let name = packet.file_name().unwrap().to_owned();
    std::fs::copy(&packet, ship.join(&name)).unwrap();
    let before = everything_under(&ship);
    let refused = run(&ship, "syncreplica", ["-import", "-remove", "."]);
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("packet folder . is inside replica")
            && refused.stderr.contains("`/sync_*.zip`"),
        "{}",
        refused.stderr
    );
    assert_eq!(everything_under(&ship), before);
    // Named as a file: refused too.
    let refused = run(
        &ship,
        "syncreplica",
        [OsStr::new("-import"), name.as_os_str()],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(!ship.join("b.txt").exists());
    // Kept local: imported, removed, and no replicated add or delete.
    write(&ship, ".syncreplicaignore", "/sync_*.zip\n");
    run(&ship, "syncreplica", ["-import", "-remove", "."]).ok();
    assert_eq!(
        std::fs::read_to_string(ship.join("b.txt")).unwrap(),
        "from boston"
    );
    assert!(!ship.join(&name).exists());
    let status = run(&ship, "syncreplica", ["-status"]).ok();
    assert!(!status.stdout.contains("sync_"), "{}", status.stdout);
    let back = fam.packet_dir("2");
    let sent = export_to(&ship, &back, &["boston"], &[]).ok();
    // The export may carry the ignore file and the root's new time, never
    // a delete of the packet.
    assert!(
        sent.stdout.contains(", 0 deleted") || !sent.stdout.contains("deleted"),
        "{}",
        sent.stdout
    );
}

/// `mkreplica -import` given update packets (review 17c item 12) points at
/// the command that takes them, and creates nothing.
#[test]
fn mkreplica_import_of_update_packets_points_at_syncreplica_import() {
    let fam = family(&["ship", "boston"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    write(&boston, "b.txt", "from boston");
    let stick = fam.packet_dir("1");
    export_to(&boston, &stick, &["ship"], &[]).ok();
    let target = fam.dir.path().join("newone");
    let refused = mkreplica_import_at(fam.dir.path(), &target, &stick);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("not a replica-creation packet but an update packet")
            && refused
                .stderr
                .contains("syncreplica -import brings update packets"),
        "{}",
        refused.stderr
    );
    assert!(!target.exists());
}

/// `mkorder -data` of a directory, or of one file named twice (review 17c
/// item 10), is a usage mistake: exit 2, nothing submitted.
#[test]
fn mkorder_data_of_a_directory_or_twice_the_same_file_exits_2() {
    let fam = family(&["alpha"], &[("a.txt", "one")]);
    let dir = fam.dir.path();
    let shipconf = bay_shipping_conf(dir);
    let packet = dir.join("sync_alpha_20261130T120000Z_beta_1.zip");
    std::fs::write(&packet, b"not checked before the usage").unwrap();
    let again = dir.join(".").join(packet.file_name().unwrap());
    let before = everything_under(dir);
    let cases: [(&[&OsStr], &str); 2] = [
        (&[dir.as_os_str()], "is a directory"),
        (&[packet.as_os_str(), again.as_os_str()], "is named twice"),
    ];
    for (data, said) in cases {
        let mut args = vec![
            OsStr::new("-copy"),
            OsStr::new("-shipconf"),
            shipconf.as_os_str(),
        ];
        for path in data {
            args.extend([OsStr::new("-data"), path]);
        }
        let refused = run(dir, "mkorder", args).fails_with(2);
        assert!(refused.stderr.contains(said), "{}", refused.stderr);
    }
    assert_eq!(everything_under(dir), before);
}

/// `shipping_server ORDER` of an order that is not there (review 17c item
/// 10) exits 2 like every other command given a missing file.
#[test]
fn shipping_server_of_a_missing_order_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let shipconf = bay_shipping_conf(dir.path());
    let refused = run(
        dir.path(),
        "shipping_server",
        [
            OsStr::new("-shipconf"),
            shipconf.as_os_str(),
            OsStr::new("nothere.order"),
        ],
    )
    .fails_with(2);
    assert!(
        refused
            .stderr
            .contains("nothere.order: no such file or directory"),
        "{}",
        refused.stderr
    );
}

/// Every command that works on a replica, each with arguments that would
/// do, the replica left to `-replica` or the current directory.
fn commands_on_a_replica(out: &Path) -> Vec<(&'static str, Vec<std::ffi::OsString>)> {
    let out = out.as_os_str().to_owned();
    let words =
        |words: &[&str]| -> Vec<std::ffi::OsString> { words.iter().map(|w| w.into()).collect() };
    vec![
        ("syncreplica", words(&["-status"])),
        ("syncreplica", words(&["-record"])),
        (
            "syncreplica",
            [
                words(&["-export", "-out"]),
                vec![out.clone()],
                words(&["beta"]),
            ]
            .concat(),
        ),
        (
            "syncreplica",
            [words(&["-import"]), vec![out.clone()]].concat(),
        ),
        ("lsreplica", words(&["-long"])),
        ("lsepoch", words(&[])),
        ("chepoch", words(&["beta", "alpha=1"])),
        ("chreplica", words(&["-mirror", "beta"])),
        ("rmreplica", words(&["beta"])),
        (
            "mkreplica",
            [
                words(&["-export", "-out"]),
                vec![out.clone()],
                words(&["gamma"]),
            ]
            .concat(),
        ),
        ("mkreplica", words(&["-restore"])),
        ("mkreplica", words(&["-rekey"])),
    ]
}

/// A folder that is no replica, named with `-replica` or the current
/// directory: a usage mistake (exit 2) in every command, the explicit one
/// said as `-replica DIR: not a replica` with a hint that asks whether it
/// is the right folder and names the command that makes one there.
#[test]
fn a_folder_that_is_no_replica_exits_2_everywhere_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let out = dir.path().join("out");
    let mut named = commands_on_a_replica(&out);
    named.push(("lspacket", vec![plain.as_os_str().to_owned()]));
    for (name, args) in named {
        let args = [vec!["-replica".into(), plain.as_os_str().to_owned()], args].concat();
        let refused = run(dir.path(), name, &args).fails_with(2);
        let said = format!("{name}: error: -replica {}: not a replica", plain.display());
        assert!(
            refused.stderr.contains(&said),
            "{name} {args:?}: {}",
            refused.stderr
        );
        let hint = format!(
            "{name}: hint: is {0} the right folder? mkreplica -import PACKET -replica {0} makes",
            plain.display()
        );
        assert!(
            refused.stderr.contains(&hint),
            "{name} {args:?}: {}",
            refused.stderr
        );
    }
    // lspacket lists packets outside a replica: only -replica is a mistake.
    for (name, args) in commands_on_a_replica(&out) {
        let refused = run(&plain, name, &args).fails_with(2);
        assert!(
            refused.stderr.contains("no replica found in") && refused.stderr.contains(
                "hint: run the command inside a replica, or name one with -replica DIR; mkreplica -import PACKET makes one"
            ),
            "{name} {args:?}: {}",
            refused.stderr
        );
    }
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&plain).unwrap().count(),
        0,
        "nothing made"
    );
}

/// `-replica FILE`, or a path through a file (`FILE/sub`): "is a file, not
/// a directory" (naming the file), exit 2, no bare OS error, in every
/// command, mkreplica -init and -import (which make the folder) too;
/// nothing is made.
#[test]
fn a_file_named_with_replica_is_said_as_such_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "not a folder").unwrap();
    let out = dir.path().join("out");
    let mut commands = commands_on_a_replica(&out);
    commands.push(("lspacket", vec![dir.path().as_os_str().to_owned()]));
    commands.push((
        "mkreplica",
        vec![
            "-init".into(),
            "-family".into(),
            "fam".into(),
            "alpha".into(),
        ],
    ));
    commands.push((
        "mkreplica",
        vec!["-import".into(), out.as_os_str().to_owned()],
    ));
    let through = file.join("sub");
    for (named, said) in [
        (
            &file,
            format!("-replica {}: is a file, not a directory", file.display()),
        ),
        (
            &through,
            format!(
                "-replica {}: {} is a file, not a directory",
                through.display(),
                file.display()
            ),
        ),
    ] {
        for (name, args) in &commands {
            let args = [
                vec!["-replica".into(), named.as_os_str().to_owned()],
                args.clone(),
            ]
            .concat();
            let refused = run(dir.path(), name, &args).fails_with(2);
            assert!(
                refused.stderr.contains(&format!("{name}: error: {said}\n")),
                "{name} {args:?}: {}",
                refused.stderr
            );
            assert!(
                refused
                    .stderr
                    .contains(&format!("{name}: hint: -replica DIR names a folder")),
                "{}",
                refused.stderr
            );
            assert!(!refused.stderr.contains("os error"), "{}", refused.stderr);
        }
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing made"
    );
}

/// Inside a replica, `-import nosuch.zip` or an unmatched `nosuch_*.zip`
/// (review 17d item 1) is "no such file"/"matches no file", exit 2, as
/// outside one; not "is inside replica" with an exclude hint. A packet
/// named inside the tree gets a hint line that matches the file (no
/// trailing `/`, which makes a pattern match folders only).
#[test]
fn a_missing_packet_named_inside_a_replica_is_said_as_such() {
    let fam = family(&["ship", "boston"], &[("a.txt", "one")]);
    let ship = fam.root("ship");
    for (name, said) in [
        ("nosuch.zip", "nosuch.zip: no such file or directory"),
        ("nosuch_*.zip", "nosuch_*.zip: matches no file"),
    ] {
        let refused = run(&ship, "syncreplica", ["-import", name]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(refused.stderr.contains(said), "{}", refused.stderr);
        assert!(
            !refused.stderr.contains("inside replica"),
            "{}",
            refused.stderr
        );
    }
    write(&ship, "sync_x.zip", "not really");
    let refused = run(&ship, "syncreplica", ["-import", "sync_x.zip"]);
    assert!(
        refused.stderr.contains("add the line `/sync_x.zip`"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("`/sync_x.zip/`"),
        "{}",
        refused.stderr
    );
}

/// The README's exit rule (review 17d items 5 and 10): a value not
/// allowed where it is named exits 2, and so does a question with no
/// terminal to ask it on: `-out` a file (the message names -out, with a
/// hint), a `-shipconf` that is not there, chepoch and rmreplica without
/// -force from a script (refused before anything is shown or done, with
/// the hint -force); a creation packet whose NEWNAME.key is not beside it.
/// A `-keyout` file in the -out folder that is still to be made is fine.
#[test]
fn values_not_allowed_there_and_questions_without_a_terminal_exit_2() {
    let fam = family(&["ship", "boston"], &[("a.txt", "one")]);
    let (ship, dir) = (fam.root("ship"), fam.dir.path().to_path_buf());
    write(&ship, "a.txt", "two");
    std::fs::write(dir.join("pass.txt"), "x").unwrap();
    let before = everything_under(&ship);
    let refused = run(
        &ship,
        "syncreplica",
        [
            OsStr::new("-export"),
            "-out".as_ref(),
            dir.join("pass.txt").as_os_str(),
            "boston".as_ref(),
        ],
    )
    .fails_with(2);
    assert!(
        refused.stderr.contains("-out ") && refused.stderr.contains("is a file, not a directory"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("hint: name with -out a directory"),
        "{}",
        refused.stderr
    );
    let refused = run(
        &ship,
        "syncreplica",
        [
            OsStr::new("-import"),
            "-receive".as_ref(),
            "-shipconf".as_ref(),
            dir.join("nonexist.toml").as_os_str(),
        ],
    )
    .fails_with(2);
    assert!(
        refused.stderr.contains("-shipconf ") && refused.stderr.contains("no such file"),
        "{}",
        refused.stderr
    );
    for (command, args, what) in [
        (
            "chepoch",
            vec!["boston", "ship=0"],
            "changing row \"boston\"",
        ),
        ("rmreplica", vec!["boston"], "removing member \"boston\""),
    ] {
        let refused = run_in(&ship, command, &args, "yes\n").fails_with(2);
        assert!(
            refused.stderr.contains(&format!(
                "{what} asks for confirmation, and standard input is not a terminal"
            )) && refused.stderr.contains("add -force"),
            "{}",
            refused.stderr
        );
        assert!(
            refused.stdout.is_empty(),
            "asked nothing: {}",
            refused.stdout
        );
    }
    assert_eq!(everything_under(&ship), before);
    // -keyout in the -out folder to be made; the key then moved away:
    // the import without -key has no NEWNAME.key beside the packet.
    let stick = dir.join("stick");
    let made = mkreplica_export_keyout(&ship, &stick, &stick.join("kship3.key"), "kship3").ok();
    assert!(stick.join("kship3.key").is_file(), "{}", made.stdout);
    std::fs::rename(stick.join("kship3.key"), dir.join("elsewhere.key")).unwrap();
    let packet = packet_files(&stick)[0].clone();
    let refused = mkreplica_import_at(&dir, &dir.join("k3"), &packet).fails_with(2);
    assert!(
        refused
            .stderr
            .contains("no key file for the new member there"),
        "{}",
        refused.stderr
    );
}

/// A packet waiting for one change says "change N", not "changes N-N"
/// (review 17d item 7), in -import, lspacket and the JSON `why`.
#[test]
fn a_packet_waiting_for_one_change_says_change_n() {
    let fam = family(&["alpha", "beta"], &[("f.txt", "v0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let (first, second) = (fam.packet_dir("first"), fam.packet_dir("second"));
    write(&a, "f.txt", "v1");
    export_to(&a, &first, &["beta"], &[]).ok();
    write(&a, "f.txt", "v2, longer");
    export_to(&a, &second, &["beta"], &[]).ok();
    let import = import_from(&b, &[&second]).ok();
    let listing = run(&b, "lspacket", [&second]).ok();
    let json = run(
        &b,
        "syncreplica",
        [
            OsStr::new("-import"),
            "-fmt".as_ref(),
            "json".as_ref(),
            second.as_os_str(),
        ],
    )
    .ok();
    for text in [&import.stdout, &listing.stdout, &json.stdout] {
        let at = text
            .find("waits for change")
            .unwrap_or_else(|| panic!("{text}"));
        let said: String = text[at..].chars().take_while(|c| *c != ';').collect();
        assert!(
            said.starts_with("waits for change ") && !said.contains('-'),
            "{said}"
        );
    }
}

/// "Nothing here" names the place looked at (review 17d item 18): the
/// incoming bay's folder (not only shipping.toml's path), and the folder
/// lspacket was given.
#[test]
fn nothing_found_names_where_it_looked() {
    let fam = family(&["ship"], &[("a.txt", "one")]);
    let dir = fam.dir.path();
    let conf = bay_shipping_conf(dir);
    let received = run(
        &fam.root("ship"),
        "syncreplica",
        [
            OsStr::new("-import"),
            "-receive".as_ref(),
            "-shipconf".as_ref(),
            conf.as_os_str(),
        ],
    )
    .ok();
    assert!(
        received.stdout.contains("No packets in the incoming bay ")
            && received.stdout.contains("/bay/incoming"),
        "{}",
        received.stdout
    );
    let empty = fam.packet_dir("empty");
    let listed = run(dir, "lspacket", [&empty]).ok();
    assert_eq!(
        listed.stdout.trim(),
        format!("No packet files in {}.", empty.display())
    );
}

/// "Already applied:" lines come in the order of the changes they carry
/// (review 17d item 19), not the order of a hash map.
#[test]
fn already_applied_packets_are_said_in_order() {
    let fam = family(&["alpha", "beta"], &[("f.txt", "v0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let stick = fam.packet_dir("stick");
    let mut names = Vec::new();
    for round in 1..=6 {
        write(&a, "f.txt", &format!("version {round}"));
        let before: Vec<_> = std::fs::read_dir(&stick)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        export_to(&a, &stick, &["beta"], &[]).ok();
        let new = std::fs::read_dir(&stick)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .find(|n| !before.contains(n))
            .unwrap();
        names.push(new.to_string_lossy().into_owned());
    }
    import_from(&b, &[&stick]).ok();
    let again = import_from(&b, &[&stick]).ok();
    let said: Vec<&str> = again
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Already applied: "))
        .map(|f| f.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(said, names, "{}", again.stdout);
}
