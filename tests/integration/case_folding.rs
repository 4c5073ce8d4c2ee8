//! Sites whose filesystem folds case or Unicode normalisation (exFAT,
//! vfat, APFS, casefold ext4): two names the family tells apart are one
//! name there. An import keeps both (one as a conflict copy), never lets
//! one overwrite the other, and a later scan does not take the missing
//! spelling for a deletion.
//!
//! The machines here have no such filesystem to hand, so most tests act one
//! out with the probe forced (`SYNCREPLICA_TEST_FOLD`, see
//! `sys::testhook`); the last one mounts a real exFAT image through FUSE
//! where it can, and says why it is skipped where it cannot.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::helpers::*;

/// `name args…` in `cwd`, on a filesystem acted out as folding `folds`
/// (`case`, `unicode`, `case,unicode`).
fn run_folding<I, S>(cwd: &Path, folds: &str, name: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = command(name, args)
        .current_dir(cwd)
        .env("SYNCREPLICA_TEST_FOLD", folds)
        .stdin(Stdio::null())
        .output()
        .expect("binary starts");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `syncreplica -export -out` from `from` to `to`, then `-import` at `to`
/// acted out as folding `folds`; returns the import's run.
fn ship(fam: &Family, from: &str, to: &str, label: &str, folds: &str) -> Run {
    let out = fam.packet_dir(label);
    export_to(&fam.root(from), &out, &[to], &[]).ok();
    run_folding(
        &fam.root(to),
        folds,
        "syncreplica",
        [OsStr::new("-import"), out.as_os_str()],
    )
    .ok()
}

/// Names under `root` (state folder left out), sorted.
fn names(root: &Path) -> Vec<String> {
    files_under(root)
}

/// The one conflict copy of `stem` under `root`, with its content.
fn conflict_copy(root: &Path, stem: &str) -> (String, String) {
    let copies: Vec<String> = names(root)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{stem}.sync-conflict-")))
        .collect();
    assert_eq!(copies.len(), 1, "copies of {stem}: {copies:?}");
    let content = std::fs::read_to_string(root.join(&copies[0])).unwrap();
    (copies[0].clone(), content)
}

#[test]
fn a_folding_site_keeps_both_names_of_a_case_pair_and_deletes_neither() {
    let fam = family(&["alpha", "beta"], &[("Report.txt", "alpha's Report")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&alpha, "report.txt", "alpha's report");
    let res = ship(&fam, "alpha", "beta", "1", "case");
    // The incoming name is kept beside, never over, the one beta has.
    assert_eq!(
        std::fs::read_to_string(beta.join("Report.txt")).unwrap(),
        "alpha's Report"
    );
    assert!(!beta.join("report.txt").exists(), "{}", res.stdout);
    let (copy, content) = conflict_copy(&beta, "report");
    assert_eq!(content, "alpha's report");
    assert!(copy.ends_with("-alpha.txt"), "{copy}");
    assert!(
        res.stdout.contains(&format!(
            "report.txt: report.txt and Report.txt are the same name on this filesystem \
             (it ignores case); kept Report.txt, and alpha's report.txt as {copy}"
        )),
        "{}",
        res.stdout
    );
    assert!(res.stdout.contains("1 conflict"), "{}", res.stdout);

    // The tree is as recorded: the missing spelling is no local deletion.
    let status = run_folding(&beta, "case", "syncreplica", ["-status"]).ok();
    assert!(status.stdout.contains("no changes"), "{}", status.stdout);

    // A deletion of the other spelling leaves beta's file alone.
    std::fs::remove_file(alpha.join("report.txt")).unwrap();
    let res = ship(&fam, "alpha", "beta", "2", "case");
    assert!(res.stdout.contains("0 deleted"), "{}", res.stdout);
    assert_eq!(
        std::fs::read_to_string(beta.join("Report.txt")).unwrap(),
        "alpha's Report"
    );
    assert_eq!(conflict_copy(&beta, "report").1, "alpha's report");

    // Back at alpha nothing was deleted: the copy arrives beside Report.txt.
    let out = fam.packet_dir("3");
    run_folding(
        &beta,
        "case",
        "syncreplica",
        [
            OsStr::new("-export"),
            "-out".as_ref(),
            out.as_os_str(),
            "alpha".as_ref(),
        ],
    )
    .ok();
    let res = import_from(&alpha, &[&out]).ok();
    assert!(res.stdout.contains("0 deleted"), "{}", res.stdout);
    assert_eq!(
        std::fs::read_to_string(alpha.join("Report.txt")).unwrap(),
        "alpha's Report"
    );
    assert_eq!(conflict_copy(&alpha, "report").1, "alpha's report");
}

#[test]
fn names_that_fold_together_in_one_batch_keep_the_first_and_copy_the_others() {
    let fam = family(&["alpha", "beta"], &[("keep", "k")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&alpha, "docs/Report.txt", "upper");
    write(&alpha, "docs/report.txt", "lower");
    write(&alpha, "docs/REPORT.txt", "shout");
    write(&alpha, "docs/same.txt", "same");
    write(&alpha, "docs/SAME.txt", "same");
    let res = ship(&fam, "alpha", "beta", "1", "case");
    // The first in byte order keeps the name: REPORT.txt < Report.txt < report.txt.
    assert_eq!(
        std::fs::read_to_string(beta.join("docs/REPORT.txt")).unwrap(),
        "shout"
    );
    assert!(!beta.join("docs/Report.txt").exists());
    assert!(!beta.join("docs/report.txt").exists());
    assert_eq!(conflict_copy(&beta.join("docs"), "Report").1, "upper");
    assert_eq!(conflict_copy(&beta.join("docs"), "report").1, "lower");
    assert!(!beta.join("docs/same.txt").exists());
    assert!(
        res.stdout.contains(
            "docs/same.txt: docs/same.txt and docs/SAME.txt are the same name on this \
             filesystem (it ignores case); kept docs/SAME.txt, which has the same content"
        ),
        "{}",
        res.stdout
    );
    assert!(res.stdout.contains("3 conflicts"), "{}", res.stdout);
    let status = run_folding(&beta, "case", "syncreplica", ["-status"]).ok();
    assert!(status.stdout.contains("no changes"), "{}", status.stdout);
}

#[test]
fn a_folder_that_folds_onto_a_local_one_keeps_its_files_as_conflict_copies_there() {
    let fam = family(&["alpha", "beta"], &[("keep", "k")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&beta, "docs/mine.txt", "beta's");
    write(&alpha, "Docs/theirs.txt", "alpha's");
    let res = ship(&fam, "alpha", "beta", "1", "case");
    assert!(!beta.join("Docs").exists(), "{}", res.stdout);
    assert_eq!(
        std::fs::read_to_string(beta.join("docs/mine.txt")).unwrap(),
        "beta's"
    );
    let (copy, content) = conflict_copy(&beta.join("docs"), "theirs");
    assert_eq!(content, "alpha's");
    assert!(
        res.stdout.contains(&format!(
            "Docs/theirs.txt: its folder Docs and docs are the same name on this filesystem \
             (it ignores case); kept docs, and alpha's Docs/theirs.txt as docs/{copy}"
        )),
        "{}",
        res.stdout
    );
    assert!(
        res.stdout.contains("Docs: Docs and docs are the same name"),
        "{}",
        res.stdout
    );
}

#[test]
fn nfc_and_nfd_spellings_are_one_name_where_normalisation_folds() {
    let nfc = "caf\u{e9}.txt";
    let nfd = "cafe\u{301}.txt";
    let fam = family(&["alpha", "beta"], &[(nfc, "composed")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&alpha, nfd, "decomposed");
    // Case folding alone tells them apart: both are made.
    let other = family(&["alpha", "beta"], &[(nfc, "composed")]);
    write(&other.root("alpha"), nfd, "decomposed");
    ship(&other, "alpha", "beta", "1", "case");
    assert!(other.root("beta").join(nfd).exists());

    let res = ship(&fam, "alpha", "beta", "1", "unicode");
    assert_eq!(std::fs::read_to_string(beta.join(nfc)).unwrap(), "composed");
    assert!(!beta.join(nfd).exists(), "{}", res.stdout);
    let (copy, content) = conflict_copy(&beta, "cafe\u{301}");
    assert_eq!(content, "decomposed");
    assert!(
        res.stdout.contains(&format!(
            "{nfd}: {nfd} and {nfc} are the same name on this filesystem \
             (it ignores Unicode normalisation); kept {nfc}, and alpha's {nfd} as {copy}"
        )),
        "{}",
        res.stdout
    );
    assert!(res.stdout.contains("1 conflict"), "{}", res.stdout);
    let status = run_folding(&beta, "unicode", "syncreplica", ["-status"]).ok();
    assert!(status.stdout.contains("no changes"), "{}", status.stdout);
}

#[test]
fn a_creation_packet_on_a_folding_site_keeps_the_other_spelling_as_a_copy() {
    let fam = family(
        &["alpha"],
        &[
            ("Report.txt", "upper"),
            ("report.txt", "lower"),
            (".SyncReplica/x", "not state"),
        ],
    );
    let out = fam.packet_dir("creation");
    mkreplica_export(&fam.root("alpha"), &out, "beta").ok();
    let beta = fam.root("beta");
    let res = run_folding(
        fam.dir.path(),
        "case",
        "mkreplica",
        [
            OsStr::new("-import"),
            "-replica".as_ref(),
            beta.as_os_str(),
            out.as_os_str(),
        ],
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(beta.join("Report.txt")).unwrap(),
        "upper"
    );
    assert!(!beta.join("report.txt").exists(), "{}", res.stdout);
    let (copy, content) = conflict_copy(&beta, "report");
    assert_eq!(content, "lower");
    assert!(
        res.stdout.contains(&format!(
            "conflict: report.txt: report.txt and Report.txt are the same name on this \
             filesystem (it ignores case); kept Report.txt, and alpha's report.txt as {copy}"
        )),
        "{}",
        res.stdout
    );
    assert!(!beta.join(".SyncReplica").exists(), "{}", res.stdout);
    assert!(
        res.stdout
            .contains(".SyncReplica: .SyncReplica and .syncreplica are the same name"),
        "{}",
        res.stdout
    );
    // The copy is new here; report.txt is not missing.
    let status = run_folding(&beta, "case", "syncreplica", ["-status"]).ok();
    assert!(!status.stdout.contains("deleted"), "{}", status.stdout);
    assert!(
        status.stdout.contains(&format!("new file:      {copy}")),
        "{}",
        status.stdout
    );
}

/// A replica whose state holds both spellings (made where the filesystem
/// told them apart, then copied onto a stick that holds only one): the
/// missing one is left as recorded, with a warning, not deleted in the
/// family.
#[test]
fn a_record_on_a_folding_site_does_not_delete_the_spelling_it_cannot_hold() {
    let fam = family(
        &["alpha", "beta"],
        &[
            ("Report.txt", "upper"),
            ("report.txt", "lower"),
            ("D/x", "upper x"),
            ("d/x", "lower x"),
        ],
    );
    let beta = fam.root("beta");
    // What a folding copy of the tree holds: one of each pair.
    std::fs::remove_file(beta.join("report.txt")).unwrap();
    std::fs::remove_dir_all(beta.join("d")).unwrap();
    let before = own_epoch(&beta);

    let status = run_folding(&beta, "case", "syncreplica", ["-status"]).ok();
    assert!(!status.stdout.contains("deleted"), "{}", status.stdout);
    let warnings = format!("{}{}", status.stdout, status.stderr);
    assert!(
        warnings.contains("report.txt: not on disk: Report.txt holds its name"),
        "{warnings}"
    );
    assert!(
        warnings.contains("d/x: not on disk: D holds its name"),
        "{warnings}"
    );
    run_folding(&beta, "case", "syncreplica", ["-record"]).ok();
    // One change: the root's mtime, which the removals moved (the root's
    // own state is replicated); no deletion.
    assert_eq!(own_epoch(&beta), before + 1);

    // Where names are told apart, the same absence is a deletion.
    let status = run(&beta, "syncreplica", ["-status"]).ok();
    assert!(
        status.stdout.contains("deleted:       report.txt"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_case_only_rename_on_a_folding_site_is_recorded_as_a_rename() {
    let fam = family(&["alpha", "beta"], &[("Report.txt", "r")]);
    let beta = fam.root("beta");
    std::fs::rename(beta.join("Report.txt"), beta.join("REPORT.txt")).unwrap();
    let status = run_folding(&beta, "case", "syncreplica", ["-status"]).ok();
    assert!(
        status.stdout.contains("deleted:       Report.txt"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("new file:      REPORT.txt"),
        "{}",
        status.stdout
    );
}

#[test]
fn the_probe_is_cached_in_the_state_folder() {
    let fam = family(&["alpha", "beta"], &[("a", "1")]);
    let alpha = fam.root("alpha");
    let cache = alpha.join(".syncreplica/filesystem.toml");
    std::fs::remove_file(&cache).ok();
    write(&alpha, "b", "2");
    run(&alpha, "syncreplica", ["-record"]).ok();
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains("folds_case = false"), "{text}");
    assert!(text.contains("folds_unicode = false"), "{text}");
    // A cache from another filesystem is probed again.
    std::fs::write(
        &cache,
        "device = 1\nfs_type = 1\nfolds_case = true\nfolds_unicode = true\n",
    )
    .unwrap();
    run(&alpha, "syncreplica", ["-record"]).ok();
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains("folds_case = false"), "{text}");
}

/// An exFAT image mounted through FUSE (`exfat-fuse`), removed on drop.
struct ExfatMount {
    dir: tempfile::TempDir,
    mount: PathBuf,
    loop_device: String,
}

impl ExfatMount {
    /// The mount, or why there can be none here.
    fn new() -> Result<ExfatMount, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root (losetup and mount need it)".into());
        }
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse".into());
        }
        for tool in ["mkfs.exfat", "mount.exfat-fuse", "losetup", "umount"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Err(format!(
                    "{tool} is missing (apt-get install exfatprogs exfat-fuse)"
                ));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("stick.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let sh = |args: &[&OsStr]| -> Result<String, String> {
            let output = Command::new(args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())?;
            if !output.status.success() {
                return Err(format!(
                    "{} failed: {}",
                    args[0].to_string_lossy(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        };
        sh(&["mkfs.exfat".as_ref(), image.as_os_str()])?;
        let loop_device = sh(&[
            "losetup".as_ref(),
            "-f".as_ref(),
            "--show".as_ref(),
            image.as_os_str(),
        ])?;
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let mounted = ExfatMount {
            dir,
            mount,
            loop_device,
        };
        sh(&[
            "mount.exfat-fuse".as_ref(),
            OsStr::new(&mounted.loop_device),
            mounted.mount.as_os_str(),
        ])?;
        Ok(mounted)
    }
}

impl Drop for ExfatMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = Command::new("losetup")
            .args(["-d", &self.loop_device])
            .status();
        let _ = &self.dir;
    }
}

/// The same promises on a real case-folding filesystem, without the
/// forced probe. Skipped, saying why, where no exFAT can be mounted.
#[test]
fn a_real_exfat_replica_keeps_both_spellings() {
    let stick = match ExfatMount::new() {
        Ok(stick) => stick,
        Err(why) => {
            eprintln!("skipped: cannot mount an exFAT image here: {why}");
            return;
        }
    };
    let fam = family(&["alpha"], &[("Report.txt", "alpha's Report")]);
    let alpha = fam.root("alpha");
    let out = fam.packet_dir("creation");
    mkreplica_export(&alpha, &out, "beta").ok();
    let beta = stick.mount.join("beta");
    run(
        fam.dir.path(),
        "mkreplica",
        [
            OsStr::new("-import"),
            "-replica".as_ref(),
            beta.as_os_str(),
            out.as_os_str(),
        ],
    )
    .ok();
    let cache = std::fs::read_to_string(beta.join(".syncreplica/filesystem.toml")).unwrap();
    assert!(cache.contains("folds_case = true"), "{cache}");

    write(&alpha, "report.txt", "alpha's report");
    let out = fam.packet_dir("1");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    let res = import_from(&beta, &[&out]).ok();
    assert!(
        res.stdout.contains(
            "report.txt and Report.txt are the same name on this filesystem (it ignores case)"
        ),
        "{}",
        res.stdout
    );
    let listed: Vec<OsString> = std::fs::read_dir(&beta)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(listed.contains(&OsString::from("Report.txt")), "{listed:?}");
    assert!(
        !listed.contains(&OsString::from("report.txt")),
        "{listed:?}"
    );
    assert_eq!(
        std::fs::read_to_string(beta.join("Report.txt")).unwrap(),
        "alpha's Report"
    );
    assert_eq!(conflict_copy(&beta, "report").1, "alpha's report");
    let status = run(&beta, "syncreplica", ["-status"]).ok();
    assert!(!status.stdout.contains("deleted"), "{}", status.stdout);

    // alpha deletes its report.txt: beta's Report.txt is another file.
    std::fs::remove_file(alpha.join("report.txt")).unwrap();
    let out = fam.packet_dir("2");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    let res = import_from(&beta, &[&out]).ok();
    assert!(res.stdout.contains("0 deleted"), "{}", res.stdout);
    assert_eq!(
        std::fs::read_to_string(beta.join("Report.txt")).unwrap(),
        "alpha's Report"
    );
    drop(stick);
}

/// A folder a case-sensitive site may have, `.SyncReplica`, is the state
/// folder on a site that folds case: nothing may be made in it.
#[test]
fn a_path_that_folds_onto_the_state_folder_is_not_made() {
    let fam = family(&["alpha", "beta"], &[("keep", "k")]);
    let (alpha, beta) = (fam.root("alpha"), fam.root("beta"));
    write(&alpha, ".SyncReplica/state.db", "not a database");
    let res = ship(&fam, "alpha", "beta", "1", "case");
    assert!(!beta.join(".SyncReplica").exists(), "{}", res.stdout);
    assert!(
        res.stdout.contains(
            ".SyncReplica: .SyncReplica and .syncreplica are the same name on this filesystem"
        ),
        "{}",
        res.stdout
    );
    assert!(
        res.stdout
            .contains(".SyncReplica/state.db: its folder .SyncReplica and .syncreplica"),
        "{}",
        res.stdout
    );
    run_folding(&beta, "case", "syncreplica", ["-status"]).ok();
}
