//! Proof of convergence (issue 13): every packet carries its sender's tree
//! digest; a receiver that holds exactly the version it describes compares
//! and says "verified in step", or warns loudly; local excludes never raise
//! a false alarm; `syncreplica -verify` finds content changed behind the
//! scan's back, and lists where the tree differs from a sibling's digest.

use std::path::{Path, PathBuf};

use crate::helpers::*;

fn lsreplica_json(root: &Path) -> serde_json::Value {
    let run = run(root, "lsreplica", ["-fmt", "json"]).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

fn member<'a>(listing: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    listing["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()
}

/// Exports `from` → `to` and imports; returns the import's run.
fn send(fam: &Family, from: &str, to: &str, label: &str, extra: &[&str]) -> Run {
    let out = fam.packet_dir(label);
    // In the clear: an encrypted packet's digest carries no nodes (they
    // name paths, and the header is readable by every hop), and these
    // tests are about the nodes too (SPEC.md §4.2).
    let mut extra = extra.to_vec();
    extra.push("-noencrypt");
    export_to(&fam.root(from), &out, &[to], &extra).ok();
    import_from(&fam.root(to), &[&out])
}

#[test]
fn a_receiver_at_the_same_version_is_verified_in_step_and_lsreplica_says_so() {
    let fam = family(
        &["boston", "lambik"],
        &[("a.txt", "one"), ("d/b.txt", "two")],
    );
    let lambik = fam.root("lambik");
    write(&fam.root("boston"), "a.txt", "changed");
    let out = fam.packet_dir("1");
    export_to(&fam.root("boston"), &out, &["lambik"], &["-noencrypt"]).ok();
    // lspacket shows the digest the packet carries.
    // (Outside a replica the signer is unknown: lspacket exits 1.)
    let listed = crate::helpers::run(&out, "lspacket", ["-fmt", "json", "."]);
    let json: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let json = &json["packets"];
    let writes = format!(
        "{}.{}",
        packet_format::FORMAT_MAJOR,
        packet_format::FORMAT_MINOR
    );
    assert_eq!(json[0]["format_version"], *writes, "{json}");
    assert_eq!(json[0]["tree_digest"]["entries"], 3, "{json}");
    // a.txt, d and d/b.txt: every entry of a small tree.
    assert_eq!(json[0]["tree_digest"]["nodes"], 3, "{json}");
    // The metadata field (SPEC.md §4.1.1): what boston preserves (as
    // root or not, it keeps directory and symlink times) and what the
    // leaves cover (lambik has not told boston what it keeps yet).
    let metadata = &json[0]["tree_digest"]["metadata"];
    let preserved = metadata["preserved"].as_array().unwrap();
    assert!(preserved.contains(&"times".into()), "{json}");
    assert!(preserved.contains(&"xattrs".into()), "{json}");
    assert!(metadata["covered"].is_array(), "{json}");
    let long = crate::helpers::run(&out, "lspacket", ["-long", "."]);
    let root = json[0]["tree_digest"]["root"].as_str().unwrap();
    assert!(
        long.stdout
            .contains(&format!("Tree digest: 3 entries, root {root}, 3 nodes\n")),
        "{}",
        long.stdout
    );
    assert!(
        long.stdout.contains("\n  metadata covered: "),
        "{}",
        long.stdout
    );
    let names: Vec<&str> = preserved.iter().map(|v| v.as_str().unwrap()).collect();
    assert!(
        long.stdout
            .contains(&format!("\n  sender preserves: {}\n", names.join(", "))),
        "{}",
        long.stdout
    );
    let run = import_from(&lambik, &[&out]).ok();
    assert!(
        run.stdout
            .contains("verified in step with boston at epoch row boston=8 (3 entries)"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("WARNING"), "{}", run.stderr);

    let long = crate::helpers::run(&lambik, "lsreplica", ["-long"]).ok();
    assert!(
        long.stdout
            .contains("  verified:          in step at epoch row boston=8 (3 entries, "),
        "{}",
        long.stdout
    );
    let listing = lsreplica_json(&lambik);
    let boston = member(&listing, "boston");
    assert_eq!(boston["verified"]["epoch_row"]["boston"], 8);
    assert_eq!(boston["verified"]["entries"], 3);
    assert_eq!(boston["last_digest"]["outcome"], "verified");
    // boston has not heard a digest from lambik.
    let listing = lsreplica_json(&fam.root("boston"));
    assert!(member(&listing, "lambik")["verified"].is_null());

    // lambik changes something before the next packet arrives: another
    // version, so nothing is compared (and nothing is said).
    write(&lambik, "mine.txt", "x");
    run_ok_record(&lambik);
    write(&fam.root("boston"), "a.txt", "again");
    let run = send(&fam, "boston", "lambik", "2", &[]).ok();
    assert!(!run.stdout.contains("verified in step"), "{}", run.stdout);
    assert!(!run.stderr.contains("WARNING"), "{}", run.stderr);
    let listing = lsreplica_json(&lambik);
    let outcome = member(&listing, "boston")["last_digest"]["outcome"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        outcome.starts_with("not compared: this replica holds another version"),
        "{outcome}"
    );
    // The last verification stays.
    assert_eq!(
        member(&listing, "boston")["verified"]["epoch_row"]["boston"],
        8
    );
}

fn run_ok_record(root: &Path) {
    run(root, "syncreplica", ["-record"]).ok();
}

#[test]
fn local_excludes_at_one_site_raise_no_false_alarm_and_are_verified_over_the_rest() {
    let fam = family(
        &["boston", "lambik"],
        &[("a.txt", "one"), ("build/out.o", "obj"), ("notes.log", "l")],
    );
    let (boston, lambik) = (fam.root("boston"), fam.root("lambik"));
    // lambik keeps *.log and build/ local (config.toml); boston keeps
    // secret.txt local through its .syncreplicaignore.
    set_excludes(&lambik, &["*.log", "/build/"]);
    run_ok_record(&lambik);
    write(&boston, ".syncreplicaignore", "secret.txt\n");
    write(&boston, "secret.txt", "s");

    // boston has not heard lambik's patterns: its digest covers notes.log
    // and build/, which lambik forgot. Not compared, no alarm.
    write(&boston, "a.txt", "two");
    let run = send(&fam, "boston", "lambik", "1", &[]).ok();
    assert!(!run.stderr.contains("WARNING"), "{}", run.stderr);
    assert!(!run.stdout.contains("verified in step"), "{}", run.stdout);
    let listing = lsreplica_json(&lambik);
    assert!(
        member(&listing, "boston")["last_digest"]["outcome"]
            .as_str()
            .unwrap()
            .contains("does not know this replica's exclude patterns"),
        "{listing}"
    );
    // -verify says so too, and raises no alarm.
    let verify = crate::helpers::run(&lambik, "syncreplica", ["-verify", "boston"]).ok();
    assert!(
        verify.stdout.contains("Not compared with boston"),
        "{}",
        verify.stdout
    );

    // lambik's acknowledgement carries its patterns to boston; boston's
    // next packet leaves out what either side excludes and is verified.
    let run = send(&fam, "lambik", "boston", "ack", &["-ack"]).ok();
    assert!(!run.stderr.contains("WARNING"), "{}", run.stderr);
    write(&boston, "a.txt", "three");
    write(&boston, "build/new.o", "obj2");
    let run = send(&fam, "boston", "lambik", "2", &[]).ok();
    assert!(!run.stderr.contains("WARNING"), "{}", run.stderr);
    assert!(
        run.stdout.contains("verified in step with boston"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(!lambik.join("build/new.o").exists());
    assert!(!lambik.join("secret.txt").exists());
    // And the other way round: boston verifies lambik's packet.
    write(&lambik, "from-lambik.txt", "l");
    let run = send(&fam, "lambik", "boston", "3", &[]).ok();
    assert!(
        run.stdout.contains("verified in step with lambik"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}

/// Writes `content` into `path` and puts its modification time back: the
/// time it had, which it returns.
fn write_keeping_its_mtime(path: &Path, content: &[u8]) -> std::time::SystemTime {
    let before = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    before
}

/// boston and lambik holding a.txt, docs/deep/c.txt and e/f.txt;
/// lambik's docs/deep/c.txt goes wrong without a new version
/// (`diverge_silently`), and boston changes a.txt (not yet sent). The
/// family and lambik's root.
fn lambik_silently_diverged_and_a_change_at_boston() -> (Family, PathBuf) {
    let fam = family(
        &["boston", "lambik"],
        &[
            ("a.txt", "one"),
            ("docs/deep/c.txt", "three"),
            ("e/f.txt", "f"),
        ],
    );
    let lambik = fam.root("lambik");
    diverge_silently(&lambik, "docs/deep/c.txt", "thr3e");
    write(&fam.root("boston"), "a.txt", "two");
    (fam, lambik)
}

/// `-verify boston`'s output names docs/deep/c.txt first under the
/// heading of the paths where boston's digest does not go deeper.
#[track_caller]
fn assert_names_deep_c_txt(stdout: &str) {
    assert!(
        stdout.contains("where boston's digest does not go deeper):\n  docs/deep/c.txt\n"),
        "{stdout}"
    );
}

/// Puts `content` (as long as the old) into `rel` with its mtime kept, and
/// records it in `root`'s state database without an operation, as a buggy
/// apply or a restored backup of the database would: the tree and its
/// record agree, the scan sees nothing, and the version is unchanged.
fn diverge_silently(root: &Path, rel: &str, content: &str) {
    use syncreplica::ops::PathState;
    use syncreplica::store::state;
    let path = root.join(rel);
    write_keeping_its_mtime(&path, content.as_bytes());
    let meta = std::fs::symlink_metadata(&path).unwrap();
    let new_chunks =
        syncreplica::tree::chunking::chunk_stream(content.as_bytes(), |_, _| Ok(())).unwrap();
    let entry = state::State::open(&root.join(".syncreplica"))
        .unwrap()
        .load_entries()
        .unwrap()[rel.as_bytes()]
    .clone();
    let PathState::File {
        mode,
        mtime,
        size,
        ext,
        ..
    } = entry.state
    else {
        panic!("not a file")
    };
    assert_eq!(size, content.len() as u64);
    let changed = PathState::File {
        mode,
        mtime,
        size,
        chunks: new_chunks,
        ext,
    };
    record_as(root, rel, &changed, &meta);
}

/// Rewrites the recorded entry of `rel` to `recorded` with `meta`'s stat,
/// its version and author kept: what the state would say had the scan
/// taken the file as it now is on disk to hold `recorded`.
fn record_as(
    root: &Path,
    rel: &str,
    recorded: &syncreplica::ops::PathState,
    meta: &std::fs::Metadata,
) {
    use syncreplica::store::state;
    let mut db = state::State::open(&root.join(".syncreplica")).unwrap();
    let entry = db.load_entries().unwrap()[rel.as_bytes()].clone();
    db.transaction(|tx| {
        Ok(state::put_entry(
            tx,
            &state::EntryWrite {
                path: rel.as_bytes(),
                state: recorded,
                version: &entry.version,
                author: &entry.author,
                stat: Some(syncreplica::tree::scan::stat_key(meta)),
                scanned_ns: entry.scanned_ns,
            },
        )?)
    })
    .unwrap();
}

#[test]
fn a_digest_mismatch_is_a_loud_warning_and_verify_lists_where() {
    let (fam, lambik) = lambik_silently_diverged_and_a_change_at_boston();
    let run = send(&fam, "boston", "lambik", "1", &[]).ok();
    assert!(
        run.stderr.contains(
            "syncreplica: WARNING: this replica's tree differs from boston's at the same version (epoch row boston="
        ),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("`syncreplica -verify boston` lists"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("verified in step"), "{}", run.stdout);
    let long = crate::helpers::run(&lambik, "lsreplica", ["-long"]).ok();
    assert!(
        long.stdout.contains("  verified:          never"),
        "{}",
        long.stdout
    );
    assert!(
        long.stdout.contains("  last digest:       DIFFERS"),
        "{}",
        long.stdout
    );

    // The command the warning names: the path that differs.
    let verify = crate::helpers::run(&lambik, "syncreplica", ["-verify", "boston"]);
    assert_eq!(verify.code, 1, "{}\n{}", verify.stdout, verify.stderr);
    assert_names_deep_c_txt(&verify.stdout);
    // boston itself is in step with nobody's digest yet, and its disk is
    // as recorded.
    let at_boston = crate::helpers::run(&fam.root("boston"), "syncreplica", ["-verify"]).ok();
    assert!(
        at_boston.stdout.contains("on disk the same"),
        "{}",
        at_boston.stdout
    );
}

#[test]
fn verify_finds_content_changed_behind_the_scans_back() {
    let fam = family(
        &["boston"],
        &[("a.txt", "hello world"), ("d/b.bin", "0123456789")],
    );
    let boston = fam.root("boston");
    let clean = crate::helpers::run(&boston, "syncreplica", ["-verify"]).ok();
    assert!(
        clean
            .stdout
            .contains("Read 2 files (21 bytes) back from disk"),
        "{}",
        clean.stdout
    );
    assert!(
        clean.stdout.contains("on disk the same"),
        "{}",
        clean.stdout
    );
    assert!(!clean.stdout.contains("damaged"), "{}", clean.stdout);

    // Same size, and the mtime put back (utimensat): the scan's fast path
    // compares size and time stamps, not content.
    let path = boston.join("d/b.bin");
    let before = write_keeping_its_mtime(&path, b"0123456780");
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
    // That write moved the change time, which the scan sees: an ordinary
    // local change, as -status says, not damage.
    let run = crate::helpers::run(&boston, "syncreplica", ["-verify"]);
    assert!(
        run.stdout.contains("not as recorded: d/b.bin"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("damaged"), "{}", run.stdout);
    let status = crate::helpers::run(&boston, "syncreplica", ["-status"]).ok();
    assert!(status.stdout.contains("d/b.bin"), "{}", status.stdout);
    // Bit rot moves no time stamp: the recorded stat is the file's own
    // now (as if the content changed under it), the recorded content not.
    {
        let recorded = syncreplica::store::state::State::open(&boston.join(".syncreplica"))
            .unwrap()
            .load_entries()
            .unwrap()[b"d/b.bin".as_slice()]
        .state
        .clone();
        record_as(
            &boston,
            "d/b.bin",
            &recorded,
            &std::fs::symlink_metadata(&path).unwrap(),
        );
    }

    let run = crate::helpers::run(&boston, "syncreplica", ["-verify"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "damaged: d/b.bin: content differs from what was recorded, with the same size and mtime"
        ),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("a.txt"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("WARNING: 1 file changed behind the scan's back"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("verify: 1 damaged file"),
        "{}",
        run.stderr
    );

    // An ordinary edit is a change to record, not damage.
    write(&boston, "a.txt", "hello there, world");
    let run = crate::helpers::run(&boston, "syncreplica", ["-verify"]);
    assert!(
        run.stdout
            .contains("not as recorded: a.txt: changed since recorded"),
        "{}",
        run.stdout
    );
}

#[test]
fn verify_refuses_two_siblings_and_names_an_unknown_one() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let boston = fam.root("boston");
    let run = crate::helpers::run(&boston, "syncreplica", ["-verify", "lambik", "boston"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("-verify takes at most one SIBLING"),
        "{}",
        run.stderr
    );
    let run = crate::helpers::run(&boston, "syncreplica", ["-verify", "nobody"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("nobody"), "{}", run.stderr);
    let run = crate::helpers::run(&boston, "syncreplica", ["-verify", "lambik"]).ok();
    assert!(
        run.stdout.contains("Nothing received from lambik yet")
            && !run.stdout.contains("syncreplica 2.2"),
        "{}",
        run.stdout
    );
}

#[test]
fn verify_against_encrypted_packets_names_no_identical_path() {
    let (fam, lambik) = lambik_silently_diverged_and_a_change_at_boston();
    // Encrypted (the default): the digest carries its root alone.
    let out = fam.packet_dir("1");
    export_to(&fam.root("boston"), &out, &["lambik"], &[]).ok();
    let run = import_from(&lambik, &[&out]).ok();
    assert!(
        run.stderr
            .contains("this replica's tree differs from boston's")
            && run.stderr.contains("cannot be told from this packet"),
        "{}",
        run.stderr
    );
    let verify = crate::helpers::run(&lambik, "syncreplica", ["-verify", "boston"]);
    assert_eq!(verify.code, 1, "{}\n{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains(
            "which paths cannot be told: boston's packets carry only the root digest, because they are encrypted"
        ),
        "{}",
        verify.stdout
    );
    for same in ["a.txt", "  e\n", "  docs\n"] {
        assert!(!verify.stdout.contains(same), "{same}: {}", verify.stdout);
    }
    // The way out it names: one packet in the clear.
    let ack = fam.packet_dir("ack");
    export_to(
        &fam.root("boston"),
        &ack,
        &["lambik"],
        &["-ack", "-noencrypt"],
    )
    .ok();
    import_from(&lambik, &[&ack]).ok();
    let verify = crate::helpers::run(&lambik, "syncreplica", ["-verify", "boston"]);
    assert_names_deep_c_txt(&verify.stdout);
}

/// A covered metadata item that differs between the recorded trees (here
/// an extended attribute lambik's state says a.txt has, forged into the
/// state behind the scan's back, as a restored database or a buggy apply
/// would leave it) raises the digest warning once both sides cover it:
/// the leaves hash the `ext` metadata both members preserve (§4.1.1).
#[test]
fn a_covered_metadata_difference_raises_the_digest_warning() {
    use syncreplica::ops::PathState;
    use syncreplica::store::state;
    let fam = family(&["boston", "lambik"], &[("a.txt", "one"), ("b.txt", "two")]);
    let lambik = fam.root("lambik");
    // lambik tells boston what it preserves; boston's next digest covers
    // extended attributes, which both keep (user.* always).
    write(&lambik, "c.txt", "lambik's");
    send(&fam, "lambik", "boston", "0", &[]).ok();
    write(&fam.root("boston"), "b.txt", "three");
    let out = fam.packet_dir("1");
    export_to(&fam.root("boston"), &out, &["lambik"], &["-noencrypt"]).ok();
    let listed = crate::helpers::run(&out, "lspacket", ["-fmt", "json", "."]);
    let json: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let covered = &json["packets"][0]["tree_digest"]["metadata"]["covered"];
    assert!(
        covered.as_array().unwrap().contains(&"xattrs".into()),
        "{json}"
    );
    let run = import_from(&lambik, &[&out]).ok();
    assert!(run.stdout.contains("verified in step"), "{}", run.stdout);

    // lambik's record of a.txt gains an attribute its disk does not have;
    // the stat is unchanged, so its scans see nothing and its version is
    // boston's.
    let entry = state::State::open(&lambik.join(".syncreplica"))
        .unwrap()
        .load_entries()
        .unwrap()[b"a.txt".as_slice()]
    .clone();
    let PathState::File {
        mode,
        mtime,
        size,
        chunks,
        mut ext,
    } = entry.state.clone()
    else {
        panic!("not a file")
    };
    let xattrs: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"user.forged".to_vec(), b"1".to_vec())];
    ext.insert(4, postcard::to_allocvec(&xattrs).unwrap());
    let forged = PathState::File {
        mode,
        mtime,
        size,
        chunks,
        ext,
    };
    let meta = std::fs::symlink_metadata(lambik.join("a.txt")).unwrap();
    // Scanned "later" than the racy window (2 s after the file's last
    // change), so the scan trusts the record without reading the file.
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        + 3_000_000_000;
    let mut db = state::State::open(&lambik.join(".syncreplica")).unwrap();
    db.transaction(|tx| {
        Ok(state::put_entry(
            tx,
            &state::EntryWrite {
                path: b"a.txt",
                state: &forged,
                version: &entry.version,
                author: &entry.author,
                stat: Some(syncreplica::tree::scan::stat_key(&meta)),
                scanned_ns: Some(later),
            },
        )?)
    })
    .unwrap();
    let status = crate::helpers::run(&lambik, "syncreplica", ["-status"]).ok();
    assert!(!status.stdout.contains("a.txt"), "{}", status.stdout);

    write(&fam.root("boston"), "b.txt", "four");
    let run = send(&fam, "boston", "lambik", "2", &[]).ok();
    assert!(
        run.stderr.contains(
            "syncreplica: WARNING: this replica's tree differs from boston's at the same version"
        ),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stdout.contains("verified in step"), "{}", run.stdout);
    let verify = crate::helpers::run(&lambik, "syncreplica", ["-verify", "boston"]);
    assert_eq!(verify.code, 1, "{}\n{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("\n  a.txt\n"), "{}", verify.stdout);
}

/// After an ordinary round trip the sibling's last digest is usually of an
/// older version (this replica has changed since): the trees differ by
/// those changes, which is no damage. -verify says "not comparable yet",
/// names both rows and exits 0 (review 17c item 14).
#[test]
fn verify_against_an_older_digest_is_not_comparable_yet_not_an_error() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let lambik = fam.root("lambik");
    write(&fam.root("boston"), "a.txt", "two");
    send(&fam, "boston", "lambik", "1", &[]).ok();
    // lambik changes on: boston's digest is now of an older version.
    write(&lambik, "new.txt", "n");
    run_ok_record(&lambik);
    let verify = crate::helpers::run(&lambik, "syncreplica", ["-verify", "boston"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert!(
        verify
            .stdout
            .contains("Last digest from boston: at epoch row")
            && verify.stdout.contains("This replica now holds epoch row")
            && verify.stdout.contains("Not comparable yet")
            && verify.stdout.contains("  new.txt\n"),
        "{}",
        verify.stdout
    );
    assert!(!verify.stderr.contains("differs"), "{}", verify.stderr);
}

/// The same with encrypted packets (the default), whose digest carries its
/// root alone (review 17d item 15): -verify says that which paths differ
/// cannot be told, not a list of "/ (somewhere in the tree)".
#[test]
fn verify_against_an_older_encrypted_digest_says_what_cannot_be_told() {
    let fam = family(&["boston", "lambik"], &[("a.txt", "one")]);
    let lambik = fam.root("lambik");
    write(&fam.root("boston"), "a.txt", "two");
    let out = fam.packet_dir("1");
    export_to(&fam.root("boston"), &out, &["lambik"], &[]).ok();
    import_from(&lambik, &[&out]).ok();
    write(&lambik, "new.txt", "n");
    run_ok_record(&lambik);
    let verify = crate::helpers::run(&lambik, "syncreplica", ["-verify", "boston"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains("Not comparable yet")
            && verify
                .stdout
                .contains("carries only the root digest (its packets are encrypted)")
            && !verify.stdout.contains("somewhere in the tree")
            && !verify.stdout.contains("\n  /"),
        "{}",
        verify.stdout
    );
}
