//! A family that heals itself (issue 13): acknowledgements, automatic
//! resend of what a sibling never confirmed, `-resend`, `-ack`, and
//! clone detection (two copies of one replica; an ambiguous creation
//! folder). Waiting periods use the test clock
//! (`SYNCREPLICA_TEST_CLOCK_SHIFT`), never sleeps.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

/// `syncreplica -export -out OUT TARGET` at `root`, with the clock of
/// waiting decisions `shift_secs` ahead.
fn export_later(root: &Path, out: &Path, target: &str, shift_secs: u64) -> Run {
    let output = Command::new(binary_path("syncreplica"))
        .args([
            OsStr::new("-export"),
            "-out".as_ref(),
            out.as_os_str(),
            target.as_ref(),
        ])
        .current_dir(root)
        .env("SYNCREPLICA_TEST_CLOCK_SHIFT", shift_secs.to_string())
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Sets `resend_after` in the replica's config.toml.
fn set_resend_after(root: &Path, value: &str) {
    let path = root.join(".syncreplica/config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "resend_after = \"7d\"",
        &format!("resend_after = \"{value}\""),
    );
    assert!(text.contains(&format!("resend_after = \"{value}\"")));
    std::fs::write(&path, text).unwrap();
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap()
}

/// `-export -ack` from `from` to `to`, imported at `to`.
fn acknowledge(fam: &Family, from: &str, to: &str, label: &str) -> Run {
    let out = fam.packet_dir(label);
    let run = export_to(&fam.root(from), &out, &[to], &["-ack"]).ok();
    assert!(
        run.stdout.contains("Wrote an acknowledgement"),
        "{}",
        run.stdout
    );
    import_from(&fam.root(to), &[&out]).ok()
}

fn lsepoch_json(root: &Path) -> serde_json::Value {
    let run = run(root, "lsepoch", ["-fmt", "json"]).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

fn lsreplica_json(root: &Path) -> serde_json::Value {
    let run = run(root, "lsreplica", ["-fmt", "json"]).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

/// The confirmed epoch of `origin` in `row`, as lsepoch -fmt json says.
fn confirmed(root: &Path, row: &str, origin: &str) -> Option<u64> {
    let table = lsepoch_json(root);
    assert_eq!(table["version"], 1);
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["replica"] == row)
        .unwrap()
        .clone();
    let cell = row["origins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["origin"] == origin)
        .unwrap()
        .clone();
    cell["confirmed"].as_u64()
}

#[test]
fn a_lost_packet_is_resent_after_resend_after_without_chepoch() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    let lambik = fam.root("lambik");
    set_resend_after(&boston, "1h");
    // lambik confirms what it has: boston now knows it answers.
    let acked = acknowledge(&fam, "lambik", "boston", "hello");
    assert!(
        acked.stdout.contains("Acknowledgement from lambik"),
        "{}",
        acked.stdout
    );
    let before = confirmed(&boston, "lambik", "boston").unwrap();

    write(&boston, "a.txt", "two");
    let lost = fam.packet_dir("lost");
    export_to(&boston, &lost, &["lambik"], &[]).ok();
    // The packet is lost on the way. Within resend_after nothing goes again.
    let soon = fam.packet_dir("soon");
    let run = export_later(&boston, &soon, "lambik", 30 * 60).ok();
    assert!(run.stdout.contains("lacks nothing"), "{}", run.stdout);
    assert!(packet_files(&soon).is_empty());

    // Past resend_after, unconfirmed: resent, and the export says why.
    let later = fam.packet_dir("later");
    let run = export_later(&boston, &later, "lambik", 2 * 3600).ok();
    assert!(
        run.stdout
            .contains("Resending to lambik 1 change of boston (epoch "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("resend_after = 1h"), "{}", run.stdout);
    import_from(&lambik, &[&later]).ok();
    assert_eq!(read(&lambik, "a.txt"), "two");

    // lambik's next packet confirms it: nothing is resent any more.
    acknowledge(&fam, "lambik", "boston", "thanks");
    assert_eq!(
        confirmed(&boston, "lambik", "boston"),
        Some(before + 1),
        "the acknowledgement confirms the resent change"
    );
    let again = fam.packet_dir("again");
    let run = export_later(&boston, &again, "lambik", 4 * 3600).ok();
    assert!(run.stdout.contains("lacks nothing"), "{}", run.stdout);
    assert!(packet_files(&again).is_empty());
}

#[test]
fn no_automatic_resend_on_a_one_way_link_but_resend_resends() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    let lambik = fam.root("lambik");
    write(&boston, "a.txt", "two");
    let lost = fam.packet_dir("lost");
    export_to(&boston, &lost, &["lambik"], &[]).ok();
    // lambik never sends anything back: nothing confirms, nothing is
    // resent by itself, even long after the default 7 days.
    let later = fam.packet_dir("later");
    let waited = export_later(&boston, &later, "lambik", 30 * 24 * 3600).ok();
    assert!(waited.stdout.contains("lacks nothing"), "{}", waited.stdout);
    let listing = run(&boston, "lsreplica", ["-long"]).ok().stdout;
    assert!(listing.contains("last heard from:   never"), "{listing}");

    let now = fam.packet_dir("now");
    let resent = export_to(&boston, &now, &["lambik"], &["-resend"]).ok();
    assert!(
        resent.stdout.contains("Resending to lambik"),
        "{}",
        resent.stdout
    );
    assert!(resent.stdout.contains("-resend"), "{}", resent.stdout);
    let imported = import_from(&lambik, &[&now]).ok();
    assert!(
        imported.stdout.contains("Applied packet from boston"),
        "{}",
        imported.stdout
    );
    assert_eq!(read(&lambik, "a.txt"), "two");
}

#[test]
fn an_ack_confirms_and_the_listings_show_it() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    write(&boston, "b.txt", "new");
    fam.send("boston", "lambik", "update");
    let own = own_epoch(&boston);
    assert_eq!(epoch_in_row(&boston, "lambik", "boston"), own);
    assert_eq!(
        confirmed(&boston, "lambik", "boston"),
        None,
        "lambik never sent boston a packet"
    );
    let members = lsreplica_json(&boston);
    assert_eq!(members["version"], 1);
    let lambik = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "lambik")
        .unwrap()
        .clone();
    assert_eq!(lambik["unconfirmed"][0]["origin"], "boston");
    assert_eq!(lambik["unconfirmed"][0]["first"], 1);
    assert_eq!(lambik["unconfirmed"][0]["last"], own);
    assert!(lambik["last_heard"].is_null());

    acknowledge(&fam, "lambik", "boston", "ack");
    assert_eq!(confirmed(&boston, "lambik", "boston"), Some(own));
    let members = lsreplica_json(&boston);
    let lambik = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "lambik")
        .unwrap()
        .clone();
    assert_eq!(lambik["unconfirmed"].as_array().unwrap().len(), 0);
    assert!(lambik["last_heard"].is_string());
    let text = run(&boston, "lsepoch", ["lambik"]).ok().stdout;
    assert!(text.contains(&format!("confirmed {own} on")), "{text}");
    let long = run(&boston, "lsreplica", ["-long"]).ok().stdout;
    assert!(long.contains("unconfirmed:       nothing"), "{long}");
    // An acknowledgement imported again is already applied.
    let again = import_from(&boston, &[&fam.packet_dir("ack")]).ok();
    assert!(again.stdout.contains("Already applied"), "{}", again.stdout);
}

#[test]
fn resend_after_per_sibling_overrides_the_global_value() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    set_resend_after(&boston, "1h");
    let config = boston.join(".syncreplica/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[siblings.lambik]\nresend_after = \"never\"\n");
    std::fs::write(&config, text).unwrap();
    acknowledge(&fam, "lambik", "boston", "hello");
    write(&boston, "a.txt", "two");
    export_to(&boston, &fam.packet_dir("lost"), &["lambik"], &[]).ok();
    let later = fam.packet_dir("later");
    let run = export_later(&boston, &later, "lambik", 365 * 24 * 3600).ok();
    assert!(run.stdout.contains("lacks nothing"), "{}", run.stdout);

    // A value that is no period is refused, naming the file and the line.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("resend_after = \"never\"", "resend_after = \"soon\"");
    std::fs::write(&config, text).unwrap();
    let refused = export_to(&boston, &later, &["lambik"], &[]).fails_with(1);
    assert!(refused.stderr.contains("config.toml"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("\"soon\" is not a period"),
        "{}",
        refused.stderr
    );
}

/// Two replicas made from one creation packet, on two hosts (one host
/// refuses a second import while the first copy is there).
fn twins(fam: &Family) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let boston = fam.root("boston");
    let creation = fam.packet_dir("creation");
    mkreplica_export(&boston, &creation, "lambik").ok();
    let first = fam.root("lambik");
    let second = fam.root("lambik-twin");
    for (root, host) in [(&first, "host-1"), (&second, "host-2")] {
        run_as_another_host(
            fam.dir.path(),
            "mkreplica",
            [
                OsStr::new("-import"),
                "-replica".as_ref(),
                root.as_os_str(),
                creation.as_os_str(),
            ],
            &fam.dir.path().join(host),
        )
        .ok();
    }
    (boston, first, second)
}

#[test]
fn a_twin_is_refused_with_nothing_lost_at_the_parent() {
    let fam = family(&["boston"], &[("a.txt", "one")]);
    let (boston, first, second) = twins(&fam);
    write(&first, "first.txt", "from the first copy");
    write(&second, "second.txt", "from the second copy");
    fam.send("lambik", "boston", "first");
    assert_eq!(read(&boston, "first.txt"), "from the first copy");

    let out = fam.packet_dir("second");
    export_to(&second, &out, &["boston"], &[]).ok();
    let tree_before = tree_listing(&boston);
    let refused = import_from(&boston, &[&out]).fails_with(1);
    assert!(
        refused.stderr.contains("replica \"lambik\" is cloned"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("creation packet repl_boston_"),
        "{}",
        refused.stderr
    );
    // Each copy is named by a packet of its own.
    let refused_file = packet_files(&out)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let accepted_file = packet_files(&fam.packet_dir("first"))[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Both files may be named alike (same sender, target, sequence and
    // second): the packet ids tell the copies apart.
    let ids: Vec<&str> = refused
        .stderr
        .split("(packet id ")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap())
        .collect();
    assert!(
        refused.stderr.contains(&format!(
            "wrote the packet {refused_file} (packet id {}); the accepted copy",
            ids[0]
        )) && refused.stderr.contains(&format!(
            "wrote the packet {accepted_file} (packet id {}), the first",
            ids[1]
        )) && ids[0] != ids[1],
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("mkreplica -export"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stdout.contains("Already applied"),
        "{}",
        refused.stdout
    );
    // Nothing lost: the parent's tree as it was, the refused packet kept.
    assert_eq!(tree_listing(&boston), tree_before);
    assert!(!boston.join("second.txt").exists());
    assert_eq!(packet_files(&out).len(), 1);
    let listing = run(&boston, "lsreplica", Vec::<&str>::new()).ok().stdout;
    assert!(
        listing.contains("lambik") && listing.contains("CLONED"),
        "{listing}"
    );
    let long = run(&boston, "lsreplica", ["-long"]).ok().stdout;
    assert!(long.contains("CLONED (alarm of"), "{long}");
    let members = lsreplica_json(&boston);
    let alarms = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "lambik")
        .unwrap()["clone_alarms"]
        .clone();
    assert_eq!(alarms.as_array().unwrap().len(), 1, "{alarms}");
    // The first copy goes on being accepted.
    write(&first, "first.txt", "again");
    fam.send("lambik", "boston", "first-again");
    assert_eq!(read(&boston, "first.txt"), "again");

    // boston's next packet to "lambik" tells the refused copy what it is;
    // the accepted copy takes the same packet as any other.
    write(&boston, "b.txt", "from boston");
    let out = fam.packet_dir("told");
    export_to(&boston, &out, &["lambik"], &[]).ok();
    let copy = fam.packet_dir("told-copy");
    for file in packet_files(&out) {
        std::fs::copy(&file, copy.join(file.file_name().unwrap())).unwrap();
    }
    let tree_before = tree_listing(&second);
    let told = import_from(&second, &[&copy]).fails_with(1);
    assert!(
        told.stderr
            .contains("replica \"lambik\" is cloned: THIS replica is the copy its siblings refuse"),
        "{}",
        told.stderr
    );
    assert!(!second.join("b.txt").exists());
    let listing = run(&second, "lsreplica", Vec::<&str>::new()).ok().stdout;
    assert!(
        listing
            .lines()
            .any(|l| l.contains("lambik") && l.contains("this replica") && l.contains("CLONED")),
        "{listing}"
    );
    let status = run(&second, "syncreplica", ["-status"]).ok();
    assert!(
        status
            .stderr
            .contains("syncreplica: warning: this replica is a clone (alarm of")
            && status.stderr.contains("mkreplica -export NEWNAME"),
        "{}",
        status.stderr
    );
    assert_eq!(tree_listing(&second), tree_before);
    let accepted = import_from(&first, &[&out]).ok();
    assert!(
        accepted.stdout.contains("Applied packet from boston"),
        "{}",
        accepted.stdout
    );
    assert_eq!(read(&first, "b.txt"), "from boston");
}

#[test]
fn a_twin_relayed_by_a_sibling_is_refused_for_its_other_change() {
    let fam = family(&["boston", "carol"], &[("a.txt", "one")]);
    let (boston, first, second) = twins(&fam);
    let carol = fam.root("carol");
    // carol learns of lambik.
    fam.send("boston", "carol", "introduce");
    // Each copy makes its change number 1.., one heard by boston, the other
    // by carol; carol passes its copy's on to boston.
    write(&first, "first.txt", "first");
    write(&second, "second.txt", "second");
    fam.send("lambik", "boston", "first");
    let out = fam.packet_dir("to-carol");
    export_to(&second, &out, &["carol"], &[]).ok();
    import_from(&carol, &[&out]).ok();
    let relay = fam.packet_dir("relay");
    export_to(&carol, &relay, &["boston"], &[]).ok();
    let tree_before = tree_listing(&boston);
    let refused = import_from(&boston, &[&relay]).fails_with(1);
    assert!(
        refused.stderr.contains("replica \"lambik\" is cloned"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("different change"),
        "{}",
        refused.stderr
    );
    assert_eq!(tree_listing(&boston), tree_before);
}

#[test]
fn mkreplica_import_refuses_a_folder_with_two_creation_packets() {
    let fam = family(&["boston"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    let creation = fam.packet_dir("creation");
    mkreplica_export(&boston, &creation, "lambik").ok();
    mkreplica_export(&boston, &creation, "carol").ok();
    let target = fam.root("new");
    let refused = mkreplica_import_at(fam.dir.path(), &target, &creation).fails_with(1);
    assert!(refused.stderr.contains("ambiguous"), "{}", refused.stderr);
    // One packet a line, never an escaped "\n".
    assert!(!refused.stderr.contains("\\n"), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("mkreplica: the replica-creation packets found:\nmkreplica:   "),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("\"lambik\""), "{}", refused.stderr);
    assert!(refused.stderr.contains("\"carol\""), "{}", refused.stderr);
    assert!(!target.exists(), "nothing created");

    // Named by its file, one is used, and the command says which.
    let packet = packet_files(&creation)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("_carol"))
        .unwrap();
    let made = mkreplica_import_at(fam.dir.path(), &target, &packet).ok();
    assert!(
        made.stdout.contains("Used the creation packet") && made.stdout.contains("\"carol\""),
        "{}",
        made.stdout
    );
}

fn lsreplica_member(root: &Path, name: &str) -> serde_json::Value {
    lsreplica_json(root)["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()
        .clone()
}

#[test]
fn rmreplica_removes_a_member_for_good_at_every_sibling() {
    let fam = family(&["alpha", "beta", "gamma"], &[("a.txt", "one")]);
    let (alpha, beta, gamma) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    // gamma's change made while it belongs reaches alpha, and alpha sends
    // gamma a change it never confirms.
    write(&gamma, "b.txt", "from gamma");
    fam.send("gamma", "alpha", "gamma-b");
    write(&alpha, "a.txt", "two");
    export_to(&alpha, &fam.packet_dir("to-gamma"), &["gamma"], &[]).ok();
    assert!(
        !lsreplica_member(&alpha, "gamma")["unconfirmed"]
            .as_array()
            .unwrap()
            .is_empty(),
        "alpha waits for gamma's confirmation"
    );
    // gamma's packets written before it is removed, for later.
    write(&gamma, "c.txt", "late");
    let late_alpha = fam.packet_dir("late-alpha");
    let late_beta = fam.packet_dir("late-beta");
    export_to(&gamma, &late_alpha, &["alpha"], &[]).ok();
    export_to(&gamma, &late_beta, &["beta"], &[]).ok();

    // Refusals touch nothing.
    let before = everything_under(&alpha);
    let own = run(&alpha, "rmreplica", ["-force", "alpha"]).fails_with(2);
    assert!(
        own.stderr.contains("cannot remove itself"),
        "{}",
        own.stderr
    );
    let unknown = run(&alpha, "rmreplica", ["-force", "delta"]).fails_with(2);
    assert!(unknown.stderr.contains("delta"), "{}", unknown.stderr);
    let unconfirmed = run_answering(&alpha, "rmreplica", ["gamma"], "no\n").fails_with(1);
    assert!(
        unconfirmed.stderr.contains("not confirmed"),
        "{}",
        unconfirmed.stderr
    );
    assert_eq!(everything_under(&alpha), before);

    let removed = run(&alpha, "rmreplica", ["-force", "gamma"]).ok();
    assert!(
        removed.stdout.contains("Removed \"gamma\""),
        "{}",
        removed.stdout
    );
    let again = run(&alpha, "rmreplica", ["-force", "gamma"]).fails_with(2);
    assert!(again.stderr.contains("removed already"), "{}", again.stderr);
    let listing = run(&alpha, "lsreplica", Vec::<&str>::new()).ok().stdout;
    assert!(
        listing
            .lines()
            .any(|l| l.contains("gamma") && l.contains("REMOVED")),
        "{listing}"
    );
    let member = lsreplica_member(&alpha, "gamma");
    assert!(member["removed"].is_string(), "{member}");
    assert!(
        member["unconfirmed"].as_array().unwrap().is_empty(),
        "a removed member holds nothing back: {member}"
    );

    // No longer an export target.
    let out = fam.packet_dir("refused-target");
    let refused = export_to(&alpha, &out, &["gamma"], &[]).fails_with(2);
    assert!(
        refused.stderr.contains("removed from the family"),
        "{}",
        refused.stderr
    );
    assert!(packet_files(&out).is_empty());

    // Its packets are refused, with nothing applied.
    let before = everything_under(&alpha);
    let refused = import_from(&alpha, &[&late_alpha]).fails_with(1);
    assert!(
        refused
            .stderr
            .contains("signed by \"gamma\", which was removed"),
        "{}",
        refused.stderr
    );
    assert!(!alpha.join("c.txt").exists());
    assert_eq!(everything_under(&alpha), before);

    // The removal travels: beta applies it with gamma's earlier change,
    // which alpha relays, and then refuses gamma's packet too.
    let out = fam.packet_dir("removal");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    let applied = import_from(&beta, &[&out]).ok();
    assert!(
        applied
            .stdout
            .contains("  member removed from the family (rmreplica): \"gamma\""),
        "{}",
        applied.stdout
    );
    let epochs = run(&beta, "lsepoch", Vec::<&str>::new()).ok().stdout;
    assert!(
        epochs.contains("Epochs in row \"gamma\" (estimate; REMOVED from the family"),
        "{epochs}"
    );
    assert!(
        epochs.contains("Epochs in row \"alpha\" (estimate):"),
        "{epochs}"
    );
    let json = lsepoch_json(&beta);
    let rows = json["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["removed"] == (r["replica"] == "gamma")),
        "{json}"
    );
    assert_eq!(read(&beta, "b.txt"), "from gamma");
    assert_eq!(read(&beta, "a.txt"), "two");
    assert!(lsreplica_member(&beta, "gamma")["removed"].is_string());
    let refused = import_from(&beta, &[&late_beta]).fails_with(1);
    assert!(
        refused.stderr.contains("which was removed from the family"),
        "{}",
        refused.stderr
    );
    assert!(!beta.join("c.txt").exists());
    // alpha and beta go on without it.
    write(&beta, "d.txt", "after");
    fam.send("beta", "alpha", "after");
    assert_eq!(read(&alpha, "d.txt"), "after");
}

/// `cp -a FROM TO`: a backup of a replica's directory, state included.
fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args([OsStr::new("-a"), from.as_os_str(), to.as_os_str()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// alpha and beta holding `a.txt`; alpha's first change sent to beta and
/// acknowledged (a member never heard from is not waited for); then a
/// `cp -a` backup of alpha, returned beside the family.
fn alpha_backed_up_after_an_acknowledged_change() -> (Family, PathBuf) {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    fam.send("alpha", "beta", "first");
    acknowledge(&fam, "beta", "alpha", "first-back");
    let backup = fam.dir.path().join("alpha-backup");
    copy_dir(&fam.root("alpha"), &backup);
    (fam, backup)
}

/// The replica's disk dies: `root` is removed and the old `backup` comes
/// back in its place.
fn bring_back_the_backup(backup: &Path, root: &Path) {
    std::fs::remove_dir_all(root).unwrap();
    copy_dir(backup, root);
}

#[test]
fn a_replica_restored_from_an_old_copy_takes_back_its_changes_and_reuses_no_epoch() {
    let (fam, backup) = alpha_backed_up_after_an_acknowledged_change();
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    let epoch_at_backup = own_epoch(&alpha);

    // Changes made and sent after the backup: beta holds them.
    write_keeping_root_time(&alpha, "a.txt", "two");
    write_keeping_root_time(&alpha, "b.txt", "made after the backup");
    fam.send("alpha", "beta", "after-backup");
    let highest = own_epoch(&alpha);
    assert!(highest > epoch_at_backup);

    // The disk dies; the old copy comes back.
    bring_back_the_backup(&backup, &alpha);
    assert_eq!(own_epoch(&alpha), epoch_at_backup);
    let marked = run(&alpha, "mkreplica", ["-restore"]).ok();
    assert!(
        marked.stdout.contains("a packet from \"beta\""),
        "{}",
        marked.stdout
    );
    // Nothing of its own is numbered meanwhile.
    write_keeping_root_time(&alpha, "c.txt", "too early");
    let refused = run(&alpha, "syncreplica", ["-record"]).fails_with(1);
    assert!(
        refused.stderr.contains("being restored from a backup")
            && refused
                .stderr
                .contains("mkreplica -restore again naming only the others"),
        "{}",
        refused.stderr
    );
    assert_eq!(own_epoch(&alpha), epoch_at_backup);
    let listing = run(&alpha, "lsreplica", ["-long"]).ok().stdout;
    assert!(listing.contains("restore:"), "{listing}");

    // alpha's acknowledgement tells beta, local edit or not (left
    // unrecorded, and said so); beta's export returns the rest.
    let out = fam.packet_dir("restored-ack");
    let ack = export_to(&alpha, &out, &["beta"], &["-ack"]).ok();
    assert!(
        ack.stderr.contains("1 local change is not recorded yet"),
        "{}",
        ack.stderr
    );
    assert_eq!(own_epoch(&alpha), epoch_at_backup);
    std::fs::remove_file(alpha.join("c.txt")).unwrap();
    let noted = import_from(&beta, &[&out]).ok();
    assert!(
        noted
            .stdout
            .contains("\"alpha\" was restored from a backup"),
        "{}",
        noted.stdout
    );
    let out = fam.packet_dir("returned");
    export_to(&beta, &out, &["alpha"], &[]).ok();
    let back = import_from(&alpha, &[&out]).ok();
    assert!(back.stdout.contains("Restore finished"), "{}", back.stdout);
    assert_eq!(own_epoch(&alpha), highest);
    assert_eq!(read(&alpha, "a.txt"), "two");
    assert_eq!(read(&alpha, "b.txt"), "made after the backup");

    // New changes are numbered after everything beta has: no epoch twice,
    // no clone alarm, and both trees converge.
    write_keeping_root_time(&alpha, "d.txt", "after the restore");
    fam.send("alpha", "beta", "new");
    assert_eq!(own_epoch(&alpha), highest + 1);
    assert_eq!(read(&beta, "d.txt"), "after the restore");
    assert!(lsreplica_member(&beta, "alpha")["clone_alarms"]
        .as_array()
        .unwrap()
        .is_empty());
    write_keeping_root_time(&beta, "e.txt", "from beta");
    fam.send("beta", "alpha", "last");
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));
}

/// Sets, in `root`'s state, the packet format `member`'s newest packet
/// used: what a sibling running an older syncreplica leaves there.
fn pretend_member_writes(root: &Path, member: &str, major: u16, minor: u16) {
    let id = lsreplica_member(root, member)["replica_id"]
        .as_str()
        .unwrap()
        .to_string();
    let conn = rusqlite::Connection::open(root.join(".syncreplica/state.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE member_versions SET major = ?2, minor = ?3 WHERE sibling = ?1",
            rusqlite::params![hex::decode(id).unwrap(), major, minor],
        )
        .unwrap();
    assert_eq!(changed, 1, "a packet from {member} was imported before");
}

#[test]
fn each_member_s_packet_format_is_learnt_and_an_export_it_cannot_read_is_refused() {
    let fam = family(&["alpha", "beta", "gamma"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    let writes = format!(
        "{}.{}",
        packet_format::FORMAT_MAJOR,
        packet_format::FORMAT_MINOR
    );
    // Never heard from: unknown.
    assert!(lsreplica_member(&alpha, "beta")["format_version"].is_null());
    assert_eq!(lsreplica_member(&alpha, "alpha")["format_version"], *writes);
    write(&beta, "b.txt", "from beta");
    fam.send("beta", "alpha", "hello");
    assert_eq!(lsreplica_member(&alpha, "beta")["format_version"], *writes);
    let listing = run(&alpha, "lsreplica", ["-long"]).ok().stdout;
    assert!(
        listing.contains(&format!(
            "packet format:     {writes} (its newest packet here)"
        )),
        "{listing}"
    );

    // beta still runs a release that predates member removal.
    pretend_member_writes(&alpha, "beta", 2, 0);
    run(&alpha, "rmreplica", ["-force", "gamma"]).ok();
    let out = fam.packet_dir("too-new");
    let refused = export_to(&alpha, &out, &["beta"], &[]).fails_with(1);
    assert!(
        refused
            .stderr
            .contains("cannot export to \"beta\": its packets show it reads packet format 2.0"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("removal of \"gamma\""),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("upgrade syncreplica at \"beta\""),
        "{}",
        refused.stderr
    );
    assert!(packet_files(&out).is_empty());
    // An acknowledgement carries no operation: any 2.x reader takes it.
    export_to(&alpha, &out, &["beta"], &["-ack"]).ok();
    // An older major reads nothing this program writes.
    pretend_member_writes(&alpha, "beta", 1, 3);
    let refused = export_to(&alpha, &fam.packet_dir("major"), &["beta"], &["-ack"]).fails_with(1);
    assert!(
        refused.stderr.contains("reads packet format 1.3"),
        "{}",
        refused.stderr
    );

    // beta upgrades: its next packet says so, and the export goes.
    write(&beta, "b.txt", "upgraded");
    fam.send("beta", "alpha", "upgraded");
    fam.send("alpha", "beta", "removal");
    assert!(lsreplica_member(&beta, "gamma")["removed"].is_string());
}

/// How packets travel along the links of a simulated family.
#[derive(Clone, Copy, Debug)]
enum Topology {
    /// Every member exchanges packets with the first only.
    Star,
    /// Member i exchanges packets with i - 1 and i + 1 only.
    Chain,
}

/// A family of `SYNCREPLICA_SCALE_MEMBERS` (default 200) replicas, made
/// with the real programs, whose members edit files of their own while
/// packets travel along `topology`'s links for `lossy` rounds, each
/// packet lost (15 %) or imported twice, once a round late (10 %), at
/// random; then rounds without loss until every tree is the same, which
/// must take at most `members` rounds plus 2. Nothing but automatic
/// resend (resend_after = 1h, the clock moved 2h a round) repairs the
/// losses: no chepoch, no -resend, no -fullcontent.
fn simulate_family(topology: Topology, seed: u64) {
    let members: usize = std::env::var("SYNCREPLICA_SCALE_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let lossy: u64 = 3;
    let names: Vec<String> = (0..members).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // On a memory filesystem where there is one: the simulation syncs
    // thousands of databases and packets.
    let dir = match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    let fam = family_in(dir, &refs, &[("shared.txt", "base")]);
    for name in &names {
        set_resend_after(&fam.root(name), "1h");
    }
    // Each link in both directions, in an order that carries a change
    // across the whole family in one sweep where it can.
    let mut links: Vec<(usize, usize)> = match topology {
        Topology::Star => (1..members)
            .map(|i| (i, 0))
            .chain((1..members).map(|i| (0, i)))
            .collect(),
        Topology::Chain => (0..members - 1)
            .map(|i| (i, i + 1))
            .chain((1..members).rev().map(|i| (i, i - 1)))
            .collect(),
    };
    links.shrink_to_fit();
    let mut rng = XorShift(seed);
    // Packets imported a second time one round late: (target, copy).
    let mut late: Vec<(usize, std::path::PathBuf)> = Vec::new();
    let mut sweep = 0u64;
    let converged = |fam: &Family| {
        let first = tree_listing(&fam.root(&names[0]));
        names[1..]
            .iter()
            .all(|name| tree_listing(&fam.root(name)) == first)
    };
    loop {
        sweep += 1;
        let losing = sweep <= lossy;
        if losing {
            for (i, name) in names.iter().enumerate() {
                if rng.below(10) == 0 {
                    write(
                        &fam.root(name),
                        &format!("own-{i}.txt"),
                        &format!("sweep {sweep}"),
                    );
                }
            }
        }
        // In a chain a member learns of those made after it only as the
        // news travels down the chain: until then their packets are
        // refused as from no member (and count as lost).
        let import = |to: usize, dir: &Path| {
            let run = import_from(&fam.root(&names[to]), &[dir]);
            if run.code != 0 {
                assert!(
                    run.stderr.contains("not signed by a current member"),
                    "{}{}",
                    run.stdout,
                    run.stderr
                );
            }
        };
        for (index, late_packet) in std::mem::take(&mut late) {
            import(index, &late_packet);
        }
        for (step, &(from, to)) in links.iter().enumerate() {
            let out = fam.packet_dir(&format!("{sweep}-{step}"));
            let run = export_later(&fam.root(&names[from]), &out, &names[to], sweep * 7200);
            if run.code != 0 && run.stderr.contains("unknown replica") {
                continue; // not known there yet (see `import`)
            }
            run.ok();
            if packet_files(&out).is_empty() {
                // A member with nothing to send acknowledges what it has,
                // as a scheduled job would: a sibling that never hears
                // from it could not tell what it lost.
                export_to(&fam.root(&names[from]), &out, &[&names[to]], &["-ack"]).ok();
            }
            let fate = rng.below(20);
            if losing && fate < 3 {
                continue; // lost
            }
            if losing && fate < 5 {
                let copy = fam.packet_dir(&format!("{sweep}-{step}-late"));
                for file in packet_files(&out) {
                    std::fs::copy(&file, copy.join(file.file_name().unwrap())).unwrap();
                }
                late.push((to, copy));
            }
            import(to, &out);
            std::fs::remove_dir_all(&out).unwrap();
        }
        if !losing && converged(&fam) {
            break;
        }
        if sweep > lossy + members as u64 + 2 {
            let first = tree_listing(&fam.root(&names[0]));
            let behind: Vec<String> = names
                .iter()
                .filter_map(|name| {
                    let listing = tree_listing(&fam.root(name));
                    let missing: Vec<&String> =
                        first.iter().filter(|l| !listing.contains(l)).collect();
                    let extra: Vec<&String> =
                        listing.iter().filter(|l| !first.contains(l)).collect();
                    (listing != first).then(|| format!("{name}: lacks {missing:?}, has {extra:?}"))
                })
                .collect();
            panic!(
                "{topology:?}: {members} replicas not in step after {sweep} sweeps:\n{}",
                behind.join("\n")
            );
        }
    }
    eprintln!("{topology:?}: {members} replicas in step after {sweep} sweeps ({lossy} lossy)");
}

/// The scale of the family (issue 13), star topology. Slow (minutes):
/// `cargo test --test integration family::two_hundred -- --ignored --nocapture`;
/// `SYNCREPLICA_SCALE_MEMBERS=N` for another size.
#[test]
#[ignore]
fn two_hundred_replicas_in_a_star_converge_despite_lost_and_duplicated_packets() {
    simulate_family(Topology::Star, 0x5eed_0001);
}

/// The same in a chain, where every change is relayed member to member.
#[test]
#[ignore]
fn two_hundred_replicas_in_a_chain_converge_despite_lost_and_duplicated_packets() {
    simulate_family(Topology::Chain, 0x5eed_0002);
}

#[test]
fn a_member_made_after_a_removal_knows_of_it() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let alpha = fam.root("alpha");
    run(&alpha, "rmreplica", ["-force", "beta"]).ok();
    let out = fam.packet_dir("creation-gamma");
    mkreplica_export(&alpha, &out, "gamma").ok();
    let gamma = fam.dir.path().join("gamma");
    mkreplica_import_at(fam.dir.path(), &gamma, &out).ok();
    assert!(
        lsreplica_member(&gamma, "beta")["removed"].is_string(),
        "{}",
        lsreplica_member(&gamma, "beta")
    );
    let refused = export_to(&gamma, &fam.packet_dir("to-beta"), &["beta"], &[]).fails_with(2);
    assert!(
        refused.stderr.contains("removed from the family"),
        "{}",
        refused.stderr
    );
}

/// The restored copy numbered a change of its own like one a sibling holds
/// from before the disk died (same origin and epoch, other content), and
/// even sent it, before anyone ran `mkreplica -restore`. The restore takes
/// the sibling's change back and renumbers its own after every epoch any
/// sibling has seen: nothing lost, no epoch reused, both trees the same.
#[test]
fn a_restored_copy_s_own_change_numbered_like_a_sibling_s_is_renumbered() {
    let (fam, backup) = alpha_backed_up_after_an_acknowledged_change();
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    let at_backup = own_epoch(&alpha);

    // The lost disk's last change, which beta holds.
    write_keeping_root_time(&alpha, "b.txt", "made after the backup");
    fam.send("alpha", "beta", "after-backup");
    assert_eq!(own_epoch(&alpha), at_backup + 1);

    // The old copy comes back and, before anyone thinks of a restore,
    // records a change numbered at_backup + 1 too, and sends it: beta
    // refuses it (the same number, other content).
    bring_back_the_backup(&backup, &alpha);
    write_keeping_root_time(&alpha, "c.txt", "made by the restored copy");
    let out = fam.packet_dir("collides");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    assert_eq!(own_epoch(&alpha), at_backup + 1);
    let refused = import_from(&beta, &[&out]);
    assert!(
        refused.stdout.contains("different change") || refused.stderr.contains("different change"),
        "{refused:?}"
    );

    // Now the restore.
    run(&alpha, "mkreplica", ["-restore"]).ok();
    let out = fam.packet_dir("restored-ack");
    export_to(&alpha, &out, &["beta"], &["-ack"]).ok();
    let noted = import_from(&beta, &[&out]).ok();
    assert!(
        noted
            .stdout
            .contains("\"alpha\" was restored from a backup"),
        "{}",
        noted.stdout
    );
    let out = fam.packet_dir("returned");
    export_to(&beta, &out, &["alpha"], &[]).ok();
    let back = import_from(&alpha, &[&out]).ok();
    assert!(back.stdout.contains("Restore finished"), "{}", back.stdout);
    assert!(
        back.stdout.contains(&format!(
            "renumbered 1 change of its own numbered like one a sibling holds: {} is now {}",
            at_backup + 1,
            at_backup + 2
        )),
        "{}",
        back.stdout
    );
    assert_eq!(read(&alpha, "b.txt"), "made after the backup");
    assert_eq!(read(&alpha, "c.txt"), "made by the restored copy");
    assert_eq!(own_epoch(&alpha), at_backup + 2);

    // The renumbered change travels as a new one; no alarm, no epoch twice.
    fam.send("alpha", "beta", "renumbered");
    assert_eq!(read(&beta, "c.txt"), "made by the restored copy");
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));
    write_keeping_root_time(&alpha, "d.txt", "after the restore");
    fam.send("alpha", "beta", "new");
    assert_eq!(own_epoch(&alpha), at_backup + 3);
    fam.send("beta", "alpha", "last");
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));
    let ops = own_operations_after(&alpha, at_backup);
    assert_eq!(ops.len(), 3);
}

/// The line of `lsreplica -long` at `root` that begins with `label`,
/// inside `member`'s block.
fn long_line(root: &Path, member: &str, label: &str) -> String {
    let listing = run(root, "lsreplica", ["-long"]).ok().stdout;
    let block = listing
        .split("\n\n")
        .find(|b| b.contains(&format!("\"{member}\"")) || b.starts_with(member))
        .unwrap_or_else(|| panic!("no block for {member}:\n{listing}"));
    block
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label} line:\n{block}"))
        .to_string()
}

#[test]
fn a_late_duplicate_does_not_take_the_place_of_the_newest_packet_received() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&beta, "b.txt", "first");
    let older = fam.packet_dir("older");
    export_to(&beta, &older, &["alpha"], &[]).ok();
    write(&beta, "b.txt", "second");
    // The first packet is late; the next resends what it carried.
    let newer = fam.packet_dir("newer");
    export_to(&beta, &newer, &["alpha"], &["-resend"]).ok();
    import_from(&alpha, &[&newer]).ok();
    let newest = packet_files(&newer)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let line = long_line(&alpha, "beta", "last received:");
    assert!(line.contains(&newest), "{line}");
    // The older packet turns up late: nothing new, and it does not pass
    // for the newest.
    import_from(&alpha, &[&older]).ok();
    assert_eq!(read(&alpha, "b.txt"), "second");
    let line = long_line(&alpha, "beta", "last received:");
    assert!(line.contains(&newest), "{line}");
    let json = lsreplica_member(&alpha, "beta");
    assert_eq!(json["last_received"]["file"], *newest, "{json}");
}

#[test]
fn a_restore_with_no_names_leaves_out_members_never_heard_from() {
    let fam = family(&["alpha", "beta", "gamma"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&beta, "b.txt", "from beta");
    fam.send("beta", "alpha", "hello");
    // gamma never sent alpha anything (a one-way link).
    let marked = run(&alpha, "mkreplica", ["-restore"]).ok();
    assert!(
        marked
            .stdout
            .contains("Not waiting for \"gamma\": no packet from it was ever imported here")
            && marked.stdout.contains("a packet from \"beta\"")
            && !marked.stdout.contains("a packet from \"beta\", \"gamma\""),
        "{}",
        marked.stdout
    );
    let out = fam.packet_dir("ack");
    export_to(&beta, &out, &["alpha"], &["-ack"]).ok();
    let done = import_from(&alpha, &[&out]).ok();
    assert!(done.stdout.contains("Restore finished"), "{}", done.stdout);
    // Named, it is waited for.
    let named = run(&alpha, "mkreplica", ["-restore", "gamma"]).ok();
    assert!(
        named.stdout.contains("a packet from \"gamma\""),
        "{}",
        named.stdout
    );
}

#[test]
fn an_unknown_sibling_in_config_toml_is_warned_about_with_the_nearest_name() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    let config = boston.join(".syncreplica/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[siblings.lambic]\nresend_after = \"never\"\n");
    std::fs::write(&config, text).unwrap();
    let expected = format!(
        "warning: {}: [siblings.lambic] names no member of the family, so its settings apply to \
         no one; did you mean [siblings.lambik]?",
        config.display()
    );
    let status = run(&boston, "syncreplica", ["-status"]).ok();
    assert!(
        status.stderr.contains(&format!("syncreplica: {expected}")),
        "{}",
        status.stderr
    );
    let listing = run(&boston, "lsreplica", ["-long"]).ok();
    assert!(
        listing.stderr.contains(&format!("lsreplica: {expected}")),
        "{}",
        listing.stderr
    );
    let out = fam.packet_dir("export");
    let export = export_to(&boston, &out, &["lambik"], &[]).ok();
    assert!(export.stderr.contains(&expected), "{}", export.stderr);
    // A name far from every member: the members are listed instead.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[siblings.lambic]", "[siblings.zzzzzzzz]");
    std::fs::write(&config, text).unwrap();
    let status = run(&boston, "syncreplica", ["-status"]).ok();
    assert!(
        status
            .stderr
            .contains("[siblings.zzzzzzzz] names no member of the family, so its settings apply to no one; the members are boston, lambik"),
        "{}",
        status.stderr
    );
}

#[test]
fn a_new_member_is_named_in_the_import_summary() {
    let fam = family(&["alpha", "beta", "gamma"], &[("a.txt", "one")]);
    // beta was made before gamma: alpha's next packet introduces it.
    let out = fam.packet_dir("intro");
    export_to(&fam.root("alpha"), &out, &["beta"], &[]).ok();
    let applied = import_from(&fam.root("beta"), &[&out]).ok();
    assert!(
        applied
            .stdout
            .contains("  new member of the family: \"gamma\""),
        "{}",
        applied.stdout
    );
}

#[test]
fn lsreplica_long_shows_the_size_of_the_operation_log() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let alpha = fam.root("alpha");
    let json = lsreplica_json(&alpha);
    let operations = json["oplog"]["operations"].as_u64().unwrap();
    let bytes = json["oplog"]["bytes"].as_u64().unwrap();
    assert!(operations >= 2 && bytes > 0, "{json}");
    write(&alpha, "b.txt", "two");
    run(&alpha, "syncreplica", ["-record"]).ok();
    let json = lsreplica_json(&alpha);
    // b.txt, and the root whose mtime adding it moved.
    assert_eq!(
        json["oplog"]["operations"].as_u64().unwrap(),
        operations + 2
    );
    assert!(json["oplog"]["bytes"].as_u64().unwrap() > bytes);
    let line = long_line(&alpha, "alpha", "operation log:");
    assert_eq!(
        line.trim(),
        format!(
            "operation log:     {} operations, {} bytes",
            operations + 2,
            json["oplog"]["bytes"]
        )
    );
}

// Bounded history: scrubbing the operation log (`syncreplica -scrub`,
// oplog_keep_days) and the checkpoints creation packets carry after it.

/// Days past the default `oplog_keep_days` (180), in seconds.
const PAST_KEEP_SECS: u64 = 200 * 86_400;

/// `syncreplica -scrub` at `root`, with the clock of waiting decisions
/// `shift_secs` ahead.
fn scrub_later(root: &Path, shift_secs: u64) -> Run {
    let output = Command::new(binary_path("syncreplica"))
        .arg("-scrub")
        .current_dir(root)
        .env("SYNCREPLICA_TEST_CLOCK_SHIFT", shift_secs.to_string())
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The epochs of `origin` (a member name) still in `root`'s log.
fn logged_epochs(root: &Path, origin: &str) -> Vec<u64> {
    let replica = syncreplica::replica::Replica::open(root).unwrap();
    let id = replica.member(origin).unwrap().replica;
    let mut epochs = Vec::new();
    replica
        .state()
        .for_each_operation(|op| {
            if op.origin == id {
                epochs.push(op.epoch);
            }
        })
        .unwrap();
    epochs
}

#[test]
fn scrub_then_a_creation_packet_makes_an_identical_member() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one"), ("d/b.txt", "two")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&alpha, "a.txt", "one, edited");
    write(&alpha, "c.txt", "three");
    std::fs::remove_file(alpha.join("d/b.txt")).unwrap();
    fam.send("alpha", "beta", "edits");
    acknowledge(&fam, "beta", "alpha", "ack");
    let before = logged_epochs(&alpha, "alpha");
    assert!(before.contains(&1), "{before:?}");
    // Confirmed by all, but not old enough: nothing goes.
    let young = scrub_later(&alpha, 0).ok();
    assert!(
        young.stdout.contains("Nothing to scrub"),
        "{}",
        young.stdout
    );
    assert_eq!(logged_epochs(&alpha, "alpha"), before);
    let scrubbed = scrub_later(&alpha, PAST_KEEP_SECS).ok();
    assert!(
        scrubbed.stdout.contains("Scrubbed") && scrubbed.stdout.contains("of \"alpha\""),
        "{}",
        scrubbed.stdout
    );
    assert!(
        logged_epochs(&alpha, "alpha").is_empty(),
        "every operation of alpha went: {:?}",
        logged_epochs(&alpha, "alpha")
    );
    // A new member made after the scrub holds the same tree, and takes
    // later changes.
    let out = fam.packet_dir("creation-gamma");
    mkreplica_export(&alpha, &out, "gamma").ok();
    let gamma = fam.root("gamma");
    mkreplica_import_at(fam.dir.path(), &gamma, &out).ok();
    assert_eq!(tree_listing(&gamma), tree_listing(&alpha));
    assert_eq!(tree_listing(&gamma), tree_listing(&beta));
    write(&alpha, "e.txt", "after the scrub");
    fam.send("alpha", "gamma", "later");
    assert_eq!(read(&gamma, "e.txt"), "after the scrub");
    assert!(!gamma.join("d/b.txt").exists());
    // beta, which needs nothing scrubbed, still takes updates.
    fam.send("alpha", "beta", "later-beta");
    assert_eq!(read(&beta, "e.txt"), "after the scrub");
}

#[test]
fn an_unconfirmed_operation_stays_and_a_removed_member_no_longer_holds_the_scrub_back() {
    let fam = family(&["alpha", "beta", "gamma"], &[("a.txt", "one")]);
    let alpha = fam.root("alpha");
    write(&alpha, "a.txt", "two");
    fam.send("alpha", "beta", "edit");
    acknowledge(&fam, "beta", "alpha", "ack");
    // gamma never confirmed anything: it holds every operation back.
    let held = scrub_later(&alpha, PAST_KEEP_SECS).ok();
    assert!(held.stdout.contains("Nothing to scrub"), "{}", held.stdout);
    // It says who holds it back, and what each lacks.
    assert!(
        held.stdout
            .contains("held back by \"gamma\": it confirmed nothing of alpha"),
        "{}",
        held.stdout
    );
    assert!(
        !held.stdout.contains("held back by \"beta\""),
        "{}",
        held.stdout
    );
    let confirmed_by_beta = own_epoch(&alpha);
    run(&alpha, "rmreplica", ["-force", "gamma"]).ok();
    // A change beta never confirmed (and the removal itself).
    write(&alpha, "b.txt", "unconfirmed");
    run(&alpha, "syncreplica", ["-record"]).ok();
    let last = own_epoch(&alpha);
    assert!(last > confirmed_by_beta + 1);
    let scrubbed = scrub_later(&alpha, PAST_KEEP_SECS).ok();
    assert!(scrubbed.stdout.contains("Scrubbed"), "{}", scrubbed.stdout);
    let left = logged_epochs(&alpha, "alpha");
    assert_eq!(
        left,
        (confirmed_by_beta + 1..=last).collect::<Vec<_>>(),
        "what beta confirmed went, nothing else"
    );
}

#[test]
fn a_creation_packet_with_a_forged_or_missing_checkpoint_is_refused() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&alpha, "a.txt", "two");
    fam.send("alpha", "beta", "edit");
    acknowledge(&fam, "beta", "alpha", "ack");
    scrub_later(&alpha, PAST_KEEP_SECS).ok();
    let secret = syncreplica::replica::Replica::open(&alpha)
        .unwrap()
        .signing_key()
        .unwrap()
        .to_bytes();
    type Tweak = Box<dyn FnOnce(&mut packet_format::PacketMeta)>;
    let cases: Vec<(&str, Tweak, &str)> = vec![
        (
            "missing",
            Box::new(|meta| meta.creation.as_mut().unwrap().checkpoints.clear()),
            "no checkpoint accounts for the missing ones",
        ),
        (
            "forged",
            Box::new(|meta| meta.creation.as_mut().unwrap().checkpoints[0].history[0] ^= 1),
            "does not verify",
        ),
        (
            // Signed by its signer, but for one operation more than the
            // packet leaves out.
            "moved",
            Box::new(move |meta| {
                let checkpoint = &mut meta.creation.as_mut().unwrap().checkpoints[0];
                *checkpoint = packet_format::seals::Checkpoint::sign(
                    &secret,
                    checkpoint.signer,
                    checkpoint.origin,
                    checkpoint.through + 1,
                    checkpoint.history,
                );
            }),
            "does not end where",
        ),
    ];
    for (label, tweak, expected) in cases {
        let out = fam.packet_dir(&format!("forged-{label}"));
        let name = format!("new-{label}");
        let fingerprint = forge_creation(&alpha, &[&beta], &name, &out, |_| {}, tweak);
        let root = fam.dir.path().join(format!("delta-{label}"));
        let refused = mkreplica_import(fam.dir.path(), &fingerprint, &root, &out).fails_with(1);
        assert!(
            refused.stderr.contains(expected),
            "{label}: {}",
            refused.stderr
        );
        assert!(!root.exists(), "{label}: nothing made");
    }
}

#[test]
fn a_restore_finishes_although_a_file_was_edited_meanwhile() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    acknowledge(&fam, "beta", "alpha", "hello");
    run(&beta, "mkreplica", ["-restore"]).ok();
    // Someone edits the restored tree before the restore is over.
    write(&beta, "new.txt", "made during the restore");
    acknowledge(&fam, "beta", "alpha", "restored-ack");
    write(&alpha, "b.txt", "from alpha");
    let out = fam.packet_dir("back");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    let back = import_from(&beta, &[&out]).ok();
    assert!(back.stdout.contains("Restore finished"), "{}", back.stdout);
    assert!(
        // new.txt, and the root's mtime making it moved.
        back.stdout.contains("2 local changes are not recorded yet"),
        "{}",
        back.stdout
    );
    assert_eq!(read(&beta, "b.txt"), "from alpha");
    assert_eq!(read(&beta, "new.txt"), "made during the restore");
    // Recorded once the restore is over, and it travels.
    fam.send("beta", "alpha", "after");
    assert_eq!(read(&alpha, "new.txt"), "made during the restore");
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));
}

#[test]
fn a_copied_replica_s_packet_takes_nothing_and_stays_refused_after_a_scrub() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    acknowledge(&fam, "beta", "alpha", "hello");
    let copy = fam.dir.path().join("beta-copy");
    copy_dir(&beta, &copy);
    write(&beta, "x1.txt", "first of beta");
    write(&beta, "x2.txt", "second of beta");
    fam.send("beta", "alpha", "edits");
    let own = own_epoch(&beta);
    assert!(own >= 2);
    assert_eq!(confirmed(&alpha, "beta", "beta"), Some(own));
    // The copy numbers its own change like beta's first.
    write(&copy, "y.txt", "from the copy");
    let out = fam.packet_dir("from-copy");
    export_to(&copy, &out, &["alpha"], &[]).ok();
    let again = fam.packet_dir("from-copy-again");
    for file in packet_files(&out) {
        std::fs::copy(&file, again.join(file.file_name().unwrap())).unwrap();
    }
    let refused = import_from(&alpha, &[&out]).fails_with(1);
    assert!(refused.stderr.contains("cloned"), "{refused:?}");
    // One copy restored from a backup without -restore is told the way out.
    assert!(
        refused
            .stderr
            .contains("run mkreplica -restore there instead"),
        "{refused:?}"
    );
    // Nothing of the refused packet was taken: not its row either.
    assert!(
        !refused.stdout.contains("restored from a backup"),
        "{refused:?}"
    );
    assert_eq!(confirmed(&alpha, "beta", "beta"), Some(own));
    assert_eq!(epoch_in_row(&alpha, "beta", "beta"), own);

    // Every member holds everything; beta's changes are scrubbed at alpha.
    acknowledge(&fam, "beta", "alpha", "all");
    let scrubbed = scrub_later(&alpha, PAST_KEEP_SECS).ok();
    assert!(scrubbed.stdout.contains("Scrubbed"), "{}", scrubbed.stdout);
    assert!(logged_epochs(&alpha, "beta").is_empty());

    // The copy's packet, imported again with -remove: still refused, and
    // it stays.
    let before = packet_files(&again);
    let refused = run(
        &alpha,
        "syncreplica",
        [OsStr::new("-import"), "-remove".as_ref(), again.as_os_str()],
    )
    .fails_with(1);
    assert!(refused.stderr.contains("cloned"), "{refused:?}");
    assert!(!refused.stdout.contains("Already applied"), "{refused:?}");
    assert_eq!(packet_files(&again), before);
    assert!(!alpha.join("y.txt").exists());
}

/// `syncreplica -export -fmt json -out OUT TARGET` at `root`: the target's
/// object.
fn export_json(root: &Path, out: &Path, target: &str) -> serde_json::Value {
    let run = export_to(root, out, &[target], &["-fmt", "json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    json["targets"][0].clone()
}

#[test]
fn after_a_restore_nothing_confirmed_is_resent_and_the_clone_alarm_clears() {
    let (fam, backup) = alpha_backed_up_after_an_acknowledged_change();
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&alpha, "b.txt", "made after the backup");
    fam.send("alpha", "beta", "after-backup");
    // The old copy comes back and sends a change numbered like the lost
    // one: beta raises the clone alarm.
    bring_back_the_backup(&backup, &alpha);
    write(&alpha, "c.txt", "made by the restored copy");
    let out = fam.packet_dir("collides");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    import_from(&beta, &[&out]).fails_with(1);
    assert_eq!(
        lsreplica_member(&beta, "alpha")["clone_alarms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The restore explains it: the alarm clears.
    run(&alpha, "mkreplica", ["-restore"]).ok();
    let noted = acknowledge(&fam, "alpha", "beta", "restored-ack");
    assert!(
        noted.stdout.contains("its clone alarm is cleared"),
        "{}",
        noted.stdout
    );
    assert!(lsreplica_member(&beta, "alpha")["clone_alarms"]
        .as_array()
        .unwrap()
        .is_empty());
    let out = fam.packet_dir("returned");
    export_to(&beta, &out, &["alpha"], &[]).ok();
    let back = import_from(&alpha, &[&out]).ok();
    // Its own change set aside is no damage: no false warning.
    assert!(!back.stderr.contains("WARNING"), "{}", back.stderr);
    fam.send("alpha", "beta", "renumbered");
    acknowledge(&fam, "alpha", "beta", "confirms");
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));

    // Every later packet to alpha carries only what is new, twice over.
    for round in 0..2 {
        write(&beta, &format!("new{round}.txt"), "from beta");
        let out = fam.packet_dir(&format!("new{round}"));
        let sent = export_json(&beta, &out, "alpha");
        // The file, and the root's mtime adding it moved.
        assert_eq!(sent["operations"], 2, "{sent}");
        assert_eq!(sent["resent"], serde_json::json!([]), "{sent}");
        import_from(&alpha, &[&out]).ok();
        acknowledge(&fam, "alpha", "beta", &format!("ack{round}"));
    }
}

#[test]
fn rmreplica_refuses_what_it_cannot_remove_before_asking() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let alpha = fam.root("alpha");
    let own = run_answering(&alpha, "rmreplica", ["alpha"], "y\n").fails_with(2);
    assert!(own.stderr.contains("cannot remove itself"), "{own:?}");
    assert!(!own.stdout.contains("for good?"), "{own:?}");
    assert!(!own.stderr.contains("for good?"), "{own:?}");
    run(&alpha, "rmreplica", ["-force", "beta"]).ok();
    let again = run_answering(&alpha, "rmreplica", ["beta"], "y\n").fails_with(2);
    assert!(again.stderr.contains("removed already"), "{again:?}");
    assert!(!again.stdout.contains("for good?"), "{again:?}");
    assert!(!again.stderr.contains("for good?"), "{again:?}");
}

#[test]
fn lsepoch_gives_the_time_a_row_was_last_confirmed() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    let at = |root: &Path| {
        let replica = syncreplica::replica::Replica::open(root).unwrap();
        let beta_id = replica.member("beta").unwrap().replica;
        let alpha_id = replica.member("alpha").unwrap().replica;
        replica.state().confirmed_table().unwrap()[&beta_id][&alpha_id].at_ns
    };
    acknowledge(&fam, "beta", "alpha", "first");
    let first = at(&alpha);
    // The same row again, later: confirmed again, now.
    acknowledge(&fam, "beta", "alpha", "second");
    let second = at(&alpha);
    assert!(second > first, "{first} then {second}");
    assert_eq!(own_epoch(&beta), epoch_in_row(&alpha, "beta", "beta"));
}

#[test]
fn lspacket_long_names_the_members_it_knows_in_the_sender_s_row() {
    let fam = family(&["alpha", "beta", "gamma"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    // beta learns of gamma (made after it), and gamma's change reaches
    // alpha, whose row then holds gamma.
    write(&alpha, "first.txt", "one");
    fam.send("alpha", "beta", "members");
    write(&fam.root("gamma"), "g.txt", "from gamma");
    fam.send("gamma", "alpha", "g");
    write(&alpha, "b.txt", "two");
    let out = fam.packet_dir("p");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    let gamma_id = syncreplica::replica::Replica::open(&alpha)
        .unwrap()
        .member("gamma")
        .unwrap()
        .replica
        .to_hex();
    let listing = run(
        &beta,
        "lspacket",
        [OsStr::new("-long"), packet_files(&out)[0].as_os_str()],
    )
    .ok();
    assert!(
        listing.stdout.contains("Sender's epoch row:"),
        "{}",
        listing.stdout
    );
    assert!(listing.stdout.contains("\n  gamma="), "{}", listing.stdout);
    assert!(
        !listing.stdout.contains(&format!("  {gamma_id}=")),
        "{}",
        listing.stdout
    );
}

#[test]
fn one_import_says_verified_in_step_once_per_sibling_and_version() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    acknowledge(&fam, "beta", "alpha", "hello");
    write(&alpha, "b.txt", "two");
    let out = fam.packet_dir("both");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    // The same changes again (a resend) beside it.
    export_to(&alpha, &out, &["beta"], &["-resend"]).ok();
    assert_eq!(packet_files(&out).len(), 2);
    let imported = import_from(&beta, &[&out]).ok();
    assert_eq!(
        imported.stdout.matches("verified in step").count(),
        1,
        "{}",
        imported.stdout
    );
}

#[test]
fn an_export_with_nothing_new_says_what_stays_unconfirmed_and_how_to_resend() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let alpha = fam.root("alpha");
    set_resend_after(&alpha, "never");
    acknowledge(&fam, "beta", "alpha", "hello");
    write(&alpha, "b.txt", "two");
    let lost = fam.packet_dir("lost");
    export_to(&alpha, &lost, &["beta"], &[]).ok();
    let again = fam.packet_dir("again");
    let run = export_later(&alpha, &again, "beta", 30 * 86_400);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("lacks nothing"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("2 changes sent to beta not confirmed yet; resend_after is never for beta")
            && run.stdout.contains("syncreplica -export -resend beta"),
        "{}",
        run.stdout
    );
}

#[test]
fn lsreplica_shows_each_copy_s_incarnation_that_the_clone_alarm_names() {
    let fam = family(&["boston"], &[("a.txt", "one")]);
    let (boston, first, second) = twins(&fam);
    let own = |root: &Path| {
        let listing = lsreplica_json(root);
        listing["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["this_replica"] == true)
            .unwrap()["incarnation"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (one, two) = (own(&first), own(&second));
    assert_ne!(one, two);
    write(&first, "first.txt", "from the first copy");
    fam.send("lambik", "boston", "first");
    assert_eq!(
        lsreplica_member(&boston, "lambik")["incarnation"],
        one.as_str()
    );
    write(&second, "second.txt", "from the second copy");
    let out = fam.packet_dir("second");
    export_to(&second, &out, &["boston"], &[]).ok();
    let refused = import_from(&boston, &[&out]).fails_with(1);
    assert!(refused.stderr.contains(&two), "{}", refused.stderr);
    let long = run(&second, "lsreplica", ["-long"]).ok().stdout;
    assert!(
        long.contains(&format!("  incarnation:       {two} (this copy's)")),
        "{long}"
    );
}

/// Chunk groups (packet format 2.8, SPEC.md §5.2) go only to members
/// whose packets show a reader that knows them; an older one would refuse
/// the packet, so it gets every chunk as a record of its own.
#[test]
fn a_member_reading_an_older_format_gets_every_chunk_as_a_record_of_its_own() {
    let fam = family(&["alpha", "beta"], &[("a.txt", "one")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&beta, "b.txt", "from beta");
    fam.send("beta", "alpha", "hello");
    let texts = |first: usize| -> Vec<(String, String)> {
        (first..first + 5)
            .map(|i| {
                (
                    format!("t{i}.txt"),
                    format!("text number {i} ").repeat(40 + i),
                )
            })
            .collect()
    };
    // Chunk records in the packet: each chunk alone, or fewer (groups).
    let records = |out: &Path| -> u64 {
        let listed = run(&alpha, "lspacket", [OsStr::new("-long"), out.as_os_str()])
            .ok()
            .stdout;
        let line = listed
            .lines()
            .find(|line| line.starts_with("Packet contains"))
            .unwrap_or_else(|| panic!("{listed}"));
        let (_, rest) = line.split_once(" records and ").unwrap();
        rest.split(' ').next().unwrap().parse().unwrap()
    };

    // beta still runs 2.6.
    pretend_member_writes(&alpha, "beta", 2, 6);
    for (name, text) in texts(0) {
        write(&alpha, &name, &text);
    }
    let old = fam.packet_dir("for-2.6");
    export_to(&alpha, &old, &["beta"], &[]).ok();
    assert_eq!(records(&old), 5);

    // Once its packets show 2.8, small files' chunks share a group.
    pretend_member_writes(&alpha, "beta", 2, packet_format::FORMAT_MINOR);
    for (name, text) in texts(5) {
        write(&alpha, &name, &text);
    }
    let new = fam.packet_dir("for-2.8");
    export_to(&alpha, &new, &["beta"], &[]).ok();
    // (The first file's chunk is written alone, before the export's
    // first kill point.)
    assert!(records(&new) < 5, "{} chunk records", records(&new));

    import_from(&beta, &[&old]).ok();
    import_from(&beta, &[&new]).ok();
    for (name, text) in texts(0).into_iter().chain(texts(5)) {
        assert_eq!(read(&beta, &name), text);
    }
}

#[test]
fn lsreplica_lists_only_the_members_named() {
    // Review 17d item 8: `lsreplica shipp` was an "unexpected argument".
    let fam = family(&["boston", "lambik", "ship"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    let one = run(&boston, "lsreplica", ["ship"]).ok().stdout;
    assert!(one.contains("ship"), "{one}");
    assert!(
        !one.contains("lambik") && !one.contains("boston ("),
        "{one}"
    );
    let json = run(&boston, "lsreplica", ["-fmt", "json", "lambik", "ship"])
        .ok()
        .stdout;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lambik", "ship"]);
    let typo = run(&boston, "lsreplica", ["shipp"]).fails_with(2);
    assert!(
        typo.stderr.contains("unknown replica \"shipp\""),
        "{}",
        typo.stderr
    );
}
