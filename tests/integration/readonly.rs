//! Where the replica cannot be written: by a user with read access only,
//! on a read-only filesystem, and on a filesystem too small for a packet.
//!
//! The tests run as root; the "ordinary user" is `nobody` (through
//! `setpriv`, or `runuser`), and the filesystems are tmpfs mounts. Where
//! neither tool exists, or mounting is not permitted, a test says so and
//! skips that part.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

/// The command that runs a program as `nobody`, if one exists here and
/// this process may switch users.
pub(crate) fn as_nobody() -> Option<Vec<&'static str>> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let works = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("true")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let setpriv = vec![
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ];
    let runuser = vec!["runuser", "-u", "nobody", "--"];
    [setpriv, runuser].into_iter().find(|cmd| works(cmd))
}

pub(crate) fn run_with<I, S>(prefix: &[&str], cwd: &Path, name: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = match prefix {
        [] => Command::new(binary_path(name)),
        [first, rest @ ..] => {
            let mut command = Command::new(first);
            command.args(rest).arg(binary_path(name));
            command
        }
    };
    let output = command
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("binary starts");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every file under `dir`, state folder included, with its size, mtime
/// and content digest: "nothing changed" is this listing staying equal.
fn snapshot(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if meta.is_dir() {
                out.push(format!("dir {rel} {:o}", meta.mode()));
                pending.push(path);
            } else {
                let digest = sha2::Digest::finalize(
                    <sha2::Sha256 as sha2::Digest>::new_with_prefix(std::fs::read(&path).unwrap()),
                );
                out.push(format!(
                    "file {rel} {:o} {} {}",
                    meta.mode(),
                    meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                    hex::encode(digest)
                ));
            }
        }
    }
    out.sort();
    out
}

/// Readable by all, writable by the owner (root) only; the signing key
/// stays private (no listing needs it).
fn make_read_only_for_others(dir: &Path) {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if !["signing_key", "encryption_key"]
                .iter()
                .any(|key| path.file_name() == Some(OsStr::new(key)))
            {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }
}

/// A replica with one recorded file and one change not yet recorded.
fn replica_with_pending_change() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("alpha");
    std::fs::create_dir(&root).unwrap();
    write(&root, "recorded.txt", "recorded\n");
    init(&root, "alpha");
    write(&root, "new.txt", "not recorded yet\n");
    (dir, root)
}

/// The listing commands succeed and the writing one fails naming `why`,
/// exit 1, with a hint; nothing under `dir` changes.
fn check_listings_work_and_record_fails(prefix: &[&str], dir: &Path, root: &Path, why: &str) {
    let before = snapshot(dir);
    let status = run_with(prefix, root, "syncreplica", ["-status"]).ok();
    assert!(status.stdout.contains("new.txt"), "{}", status.stdout);
    let epochs = run_with(prefix, root, "lsepoch", None::<&str>).ok();
    // The root and one file.
    assert!(epochs.stdout.contains("alpha = 2"), "{}", epochs.stdout);
    let members = run_with(prefix, root, "lsreplica", None::<&str>).ok();
    assert!(members.stdout.contains("alpha"), "{}", members.stdout);
    let record = run_with(prefix, root, "syncreplica", ["-record"]).fails_with(1);
    assert!(
        record.stderr.contains(&format!(
            "syncreplica: error: cannot change replica {}",
            root.display()
        )) && record.stderr.contains(why)
            && record.stderr.contains("syncreplica: hint: "),
        "{}",
        record.stderr
    );
    assert_eq!(snapshot(dir), before, "nothing may change");
}

#[test]
fn listings_work_for_a_user_who_may_only_read() {
    let Some(nobody) = as_nobody() else {
        eprintln!("note: skipped: not root, or neither setpriv nor runuser can run as nobody");
        return;
    };
    let (dir, root) = replica_with_pending_change();
    make_read_only_for_others(dir.path());
    check_listings_work_and_record_fails(&nobody, dir.path(), &root, "permission denied");
    // Without the -wal and -shm files a writer's clean exit removes, which
    // this user could not create.
    let state = root.join(".syncreplica");
    for name in ["state.db-wal", "state.db-shm"] {
        let path = state.join(name);
        if path.exists() {
            if name.ends_with("wal") {
                assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
            }
            std::fs::remove_file(path).unwrap();
        }
    }
    check_listings_work_and_record_fails(&nobody, dir.path(), &root, "permission denied");
    // The owner still records.
    run(&root, "syncreplica", ["-record"]).ok();
}

/// A user who may read the replica but not its private keys lists
/// packets: those encrypted to this replica are said to be unreadable by
/// this user (not a problem: exit 0), plain ones are listed as intact; the
/// other listings work too.
#[test]
fn lspacket_works_for_a_user_who_may_not_read_the_replicas_key() {
    let Some(nobody) = as_nobody() else {
        eprintln!("note: skipped: not root, or neither setpriv nor runuser can run as nobody");
        return;
    };
    let family = family(&["alpha", "beta"], &[("a.txt", "a\n")]);
    let (alpha, beta) = (family.root("alpha"), family.root("beta"));
    write(&beta, "b.txt", "b\n");
    let sealed = family.packet_dir("sealed");
    export_to(&beta, &sealed, &["alpha"], &[]).ok();
    write(&beta, "c.txt", "c\n");
    let plain = family.packet_dir("plain");
    export_to(&beta, &plain, &["alpha"], &["-noencrypt"]).ok();
    assert!(alpha.join(".syncreplica/encryption_key").exists());
    make_read_only_for_others(family.dir.path());
    let before = snapshot(&alpha);
    let listed = run_with(&nobody, &alpha, "lspacket", [&sealed]).ok();
    assert!(
        listed
            .stdout
            .contains("encrypted to this replica; this user may not read the replica's key")
            && listed.stdout.contains("encryption_key"),
        "{}",
        listed.stdout
    );
    let json = run_with(
        &nobody,
        &alpha,
        "lspacket",
        ["-fmt".as_ref(), "json".as_ref(), sealed.as_os_str()],
    )
    .ok();
    assert!(
        json.stdout.contains("\"not readable by this user\""),
        "{}",
        json.stdout
    );
    let listed = run_with(&nobody, &alpha, "lspacket", [&plain]).ok();
    assert!(!listed.stdout.contains("not readable"), "{}", listed.stdout);
    for (name, args) in [
        ("lsepoch", vec![]),
        ("lsreplica", vec![]),
        ("syncreplica", vec!["-status"]),
    ] {
        run_with(&nobody, &alpha, name, args).ok();
    }
    assert_eq!(snapshot(&alpha), before, "nothing may change");
}

/// A tmpfs mounted at a fresh directory, unmounted on drop; `None` where
/// mounting is not permitted.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(size: &str) -> Option<Mount> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then_some(Mount { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Changes the filesystem's size to `bytes`.
    fn resize(&self, bytes: u64) {
        let done = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(done.success());
    }

    fn remount_read_only(&self) {
        let done = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(done.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn listings_work_on_a_read_only_filesystem() {
    let Some(mount) = Mount::tmpfs("16m") else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    let (_dir, original) = replica_with_pending_change();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&original)
        .arg(mount.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let root = mount.path().join("alpha");
    mount.remount_read_only();
    check_listings_work_and_record_fails(&[], mount.path(), &root, "read-only file system");
}

/// `mkreplica -import` of a creation packet for beta, exported by the
/// family's alpha, making beta on `mount`: beta's root and the import's
/// run (not checked: the caller says how it must end).
fn beta_made_on(family: &Family, mount: &Mount) -> (PathBuf, Run) {
    let creation = family.packet_dir("creation");
    mkreplica_export(&family.root("alpha"), &creation, "beta").ok();
    let beta = mount.path().join("beta");
    let made = mkreplica_import_at(family.dir.path(), &beta, &creation);
    (beta, made)
}

/// A family whose replica alpha is on the disk and beta (made by
/// `mkreplica -import`) is on `mount`, and an update packet for beta
/// (outside `mount`) that adds `big.bin`: `mib` MiB that no compression
/// shrinks. Returns the family, beta's root, the packet's folder and the
/// content.
fn update_for_a_replica_on(mount: &Mount, mib: usize) -> (Family, PathBuf, PathBuf, Vec<u8>) {
    let family = family(&["alpha"], &[("small.txt", "small\n")]);
    let alpha = family.root("alpha");
    let (beta, made) = beta_made_on(&family, mount);
    made.ok();
    let big = random_bytes(0x5eed, mib * 1024 * 1024);
    std::fs::write(alpha.join("big.bin"), &big).unwrap();
    let out = family.packet_dir("updates");
    export_to(&alpha, &out, &["beta"], &[]).ok();
    (family, beta, out, big)
}

#[test]
fn a_packet_larger_than_the_free_space_is_refused_before_anything_is_written() {
    let Some(mount) = Mount::tmpfs("2m") else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    let (_family, beta, out, big) = update_for_a_replica_on(&mount, 3);
    let before = tree_listing(&beta);
    let alpha_at_beta = epoch_in_row(&beta, "beta", "alpha");
    let import = import_from(&beta, &[&out]).fails_with(1);
    // The 3 MiB staged, written once (no copy of the packet's chunks).
    assert!(
        import.stderr.contains("syncreplica: error: refused ")
            && import.stderr.contains(": needs 3.0 MiB, has ")
            && import.stderr.contains(&format!(
                " free on {} (the filesystem of replica {}); nothing was changed",
                mount.path().display(),
                beta.display()
            ))
            && import
                .stderr
                .contains("syncreplica: hint: free space on that filesystem"),
        "{}",
        import.stderr
    );
    assert_eq!(tree_listing(&beta), before);
    assert_eq!(epoch_in_row(&beta, "beta", "alpha"), alpha_at_beta);
    assert!(
        !beta.join(".syncreplica/staging").exists(),
        "nothing staged"
    );
    // On a filesystem with room, the same packet applies.
    mount.resize(32 * 1024 * 1024);
    import_from(&beta, &[&out]).ok();
    assert_eq!(std::fs::read(beta.join("big.bin")).unwrap(), big);
}

/// One 256 KiB chunk referenced 4,096 times: a packet of about 1 MiB
/// whose file is 1 GiB once written. Legitimate content can be like that,
/// so it is not refused for its shape: the space it writes is counted,
/// every reference as written, before anything is staged, and on a
/// filesystem without that room it is refused whole.
#[test]
fn a_chunk_referenced_thousands_of_times_is_counted_as_written() {
    use syncreplica::ops::{Change, ChunkRef, PathState, Timestamp, VersionVector};
    let Some(mount) = Mount::tmpfs("16m") else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    let (family, beta, _out, _big) = update_for_a_replica_on(&mount, 1);
    let alpha = family.root("alpha");
    let chunk = random_bytes(0xbad, packet_format::MAX_CHUNK_LEN);
    let id: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&chunk)).into();
    let references = 4096;
    let state = PathState::File {
        mode: 0o644,
        mtime: Timestamp::new(1_700_000_000, 0).unwrap(),
        size: (references * chunk.len()) as u64,
        chunks: vec![
            ChunkRef {
                id,
                len: chunk.len() as u32,
            };
            references
        ],
        ext: Default::default(),
    };
    let alpha_id = syncreplica::replica::Replica::open(&alpha)
        .unwrap()
        .identity
        .replica_id;
    let have = epoch_in_row(&beta, "beta", "alpha");
    let who = Forgery {
        origin: &alpha,
        sender: &alpha,
        signer: &alpha,
        sealer: &alpha,
    };
    let out = family.packet_dir("references");
    forge_with_content(
        &who,
        &beta,
        &out,
        vec![Change::Path {
            path: b"gigabyte.bin".to_vec(),
            version: VersionVector([(alpha_id, have + 1)].into()),
            state,
        }],
        &[&chunk],
        |_| {},
    );
    let before = tree_listing(&beta);
    let import = import_from(&beta, &[&out]).fails_with(1);
    assert!(
        import.stderr.contains(": needs 1.0 GiB, has ")
            && import.stderr.contains("nothing was changed"),
        "{}",
        import.stderr
    );
    assert_eq!(tree_listing(&beta), before);
    assert_eq!(epoch_in_row(&beta, "beta", "alpha"), have);
    assert!(!beta.join(".syncreplica/staging").exists());
    // Still healthy: it records and exports.
    write(&beta, "after.txt", "still works");
    run(&beta, "syncreplica", ["-record"]).ok();
    let back = family.packet_dir("back");
    export_to(&beta, &back, &["alpha"], &[]).ok();
    assert_eq!(packet_files(&back).len(), 1);
}

#[test]
fn an_import_writes_new_content_once_so_it_fits_in_less_than_twice_its_size() {
    let Some(mount) = Mount::tmpfs("64m") else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    const MIB: u64 = 1024 * 1024;
    let new = 8 * MIB;
    let (_family, beta, out, big) = update_for_a_replica_on(&mount, (new / MIB) as usize);
    // Shrink the filesystem to leave 1.3 times the new content free: room
    // for it written once (and for the database's growth), not twice.
    let stat = rustix::fs::statvfs(mount.path()).unwrap();
    let used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize;
    let size = (used + new * 13 / 10).next_multiple_of(4096);
    mount.resize(size);
    let stat = rustix::fs::statvfs(mount.path()).unwrap();
    let free = stat.f_bavail * stat.f_frsize;
    assert!(
        free >= new * 5 / 4 && free < new * 3 / 2,
        "{free} bytes free for {new} bytes of new content"
    );
    import_from(&beta, &[&out]).ok();
    assert_eq!(std::fs::read(beta.join("big.bin")).unwrap(), big);
    assert!(!beta.join(".syncreplica/staging").exists());
}

#[test]
fn mkreplica_import_writes_content_once_so_it_fits_in_less_than_twice_its_size() {
    const MIB: u64 = 1024 * 1024;
    const HEAD: usize = 256 * 1024;
    let new = 8 * MIB;
    // 1.3 times the content: room for it written once, and the database.
    let Some(mount) = Mount::tmpfs(&(new * 13 / 10).next_multiple_of(4096).to_string()) else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    let family = family(&["alpha"], &[]);
    let alpha = family.root("alpha");
    let big = random_bytes(0xc0ffee, new as usize);
    // Shared chunks are written at each place that needs them.
    std::fs::write(alpha.join("big.bin"), &big).unwrap();
    std::fs::create_dir(alpha.join("d")).unwrap();
    std::fs::write(alpha.join("d/head.bin"), &big[..HEAD]).unwrap();
    run(&alpha, "syncreplica", ["-record"]).ok();
    let (beta, made) = beta_made_on(&family, &mount);
    made.ok();
    assert_eq!(std::fs::read(beta.join("big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(beta.join("d/head.bin")).unwrap(),
        &big[..HEAD]
    );
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));
    assert!(!beta.join(".syncreplica/staging").exists());
}

/// A new replica larger than the free space is refused before anything is
/// made, saying how much it needs and has (it used to fail midway with
/// "No space left on device" on an internal path).
#[test]
fn a_new_replica_larger_than_the_free_space_is_refused_first() {
    let Some(mount) = Mount::tmpfs("1048576") else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    let family = family(&["alpha"], &[]);
    let alpha = family.root("alpha");
    let big = random_bytes(7, 4 << 20);
    std::fs::write(alpha.join("big.bin"), &big).unwrap();
    let (beta, refused) = beta_made_on(&family, &mount);
    let refused = refused.fails_with(1);
    assert!(
        refused.stderr.contains("needs 4.0 MiB"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("free on"), "{}", refused.stderr);
    assert!(!beta.exists());
}

/// Gives `dir` and everything under it to `nobody`.
pub(crate) fn give_to_nobody(dir: &Path) {
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_ordinary_user_imports_into_a_read_only_directory_and_its_mode_stays() {
    let Some(prefix) = as_nobody() else {
        eprintln!("note: skipped: not root, or neither setpriv nor runuser can run as nobody");
        return;
    };
    let fam = family(
        &["alpha", "beta"],
        &[("ro/f.txt", "old"), ("other.txt", "o")],
    );
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    write(&a, "ro/f.txt", "new content");
    write(&a, "ro/added.txt", "added");
    let out = fam.packet_dir("ro");
    export_to(&a, &out, &["beta"], &[]).ok();
    // The directory that holds the replicas must be passable for nobody.
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
    };
    set_mode(fam.dir.path(), 0o755);
    give_to_nobody(&b);
    give_to_nobody(&out);
    set_mode(&b.join("ro"), 0o555);
    let res = run_with(
        &prefix,
        &b,
        "syncreplica",
        [OsStr::new("-import"), out.as_os_str()],
    );
    assert_eq!(res.code, 0, "{}\n{}", res.stdout, res.stderr);
    assert_eq!(
        std::fs::read_to_string(b.join("ro/f.txt")).unwrap(),
        "new content"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("ro/added.txt")).unwrap(),
        "added"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(b.join("ro")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o7777, 0o555);
    // Nothing left to record (no chmod to send back), nothing pending.
    let status = run_with(&prefix, &b, "syncreplica", ["-status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(!status.stdout.contains("ro"), "{}", status.stdout);
    assert!(!status.stderr.contains("interrupted"), "{}", status.stderr);
}

#[test]
fn an_export_to_a_folder_the_user_cannot_write_records_nothing() {
    let Some(prefix) = as_nobody() else {
        eprintln!("note: skipped: not root, or neither setpriv nor runuser can run as nobody");
        return;
    };
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let a = fam.root("alpha");
    std::fs::set_permissions(
        fam.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    give_to_nobody(&a);
    let out = fam.packet_dir("not-writable");
    write(&a, "f", "changed");
    give_to_nobody(&a);
    let before = run_with(&prefix, &a, "syncreplica", ["-status"]).stdout;
    assert!(before.contains('f'), "{before}");
    let res = run_with(
        &prefix,
        &a,
        "syncreplica",
        [
            OsStr::new("-export"),
            "-out".as_ref(),
            out.as_os_str(),
            "beta".as_ref(),
        ],
    );
    assert_eq!(res.code, 1, "{}", res.stderr);
    assert!(res.stderr.contains("permission denied"), "{}", res.stderr);
    assert!(!res.stderr.contains(".syncpkt"), "{}", res.stderr);
    // Nothing was recorded: the change is still pending.
    assert_eq!(
        run_with(&prefix, &a, "syncreplica", ["-status"]).stdout,
        before
    );
}

/// A packet this user may not read is reported as unreadable, not damaged.
#[test]
fn lspacket_says_an_unreadable_packet_cannot_be_read() {
    let Some(prefix) = as_nobody() else {
        eprintln!("note: skipped: needs root to run a command as nobody");
        return;
    };
    let fam = family(&["alpha", "beta"], &[("a.txt", "a")]);
    let a = fam.root("alpha");
    write(&a, "b.txt", "b");
    let out = fam.packet_dir("usb");
    export_to(&a, &out, &["beta"], &[]).ok();
    let packet = packet_files(&out).remove(0);
    std::fs::set_permissions(&packet, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(fam.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let listed = run_with(&prefix, Path::new("/"), "lspacket", [packet.as_os_str()]);
    assert_eq!(listed.code, 1, "{}{}", listed.stdout, listed.stderr);
    assert!(
        listed.stdout.contains("Packet cannot be read"),
        "{}",
        listed.stdout
    );
    assert!(!listed.stdout.contains("damaged:"), "{}", listed.stdout);
}

/// Every entry of `dir` (a stick), names only: what an export left there.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A stick that fills up while an export writes to it: the error names
/// the -out directory (not the temporary part file) and its free space,
/// the hint the options that help, and nothing is left on the stick or
/// recorded as sent, so the same export works once there is room.
#[test]
fn a_full_stick_names_the_out_directory_and_leaves_nothing_behind() {
    let Some(stick) = Mount::tmpfs("1m") else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    let fam = family(&["alpha", "beta"], &[("small.txt", "small\n")]);
    let alpha = fam.root("alpha");
    std::fs::write(alpha.join("big.bin"), random_bytes(0xf011, 3 << 20)).unwrap();
    run(&alpha, "syncreplica", ["-record"]).ok();
    // What alpha believes beta has: raised only by an export that wrote.
    let before = epoch_in_row(&alpha, "beta", "alpha");
    let full = export_to(&alpha, stick.path(), &["beta"], &[]).fails_with(1);
    let expected = format!(
        "syncreplica: error: no room for packets in the -out directory {}: writing the packet for \
         \"beta\" failed: its filesystem is full; what was written of it was removed, and nothing is \
         recorded as sent (",
        stick.path().display()
    );
    assert!(full.stderr.starts_with(&expected), "{}", full.stderr);
    assert!(
        full.stderr
            .contains("syncreplica: hint: no -maxsize fits: every part must be there at once, and together they need more than the ")
            && full.stderr.contains(" free there (smaller parts only split the same bytes): make room on that disk")
            && !full.stderr.contains("500m")
            && !full.stderr.contains("several sticks")
            && full.stderr.contains("-workdir DIR"),
        "{}",
        full.stderr
    );
    assert!(
        !full.stderr.contains(".partial") && !full.stderr.contains("os error"),
        "no internal file name, the OS error said in words: {}",
        full.stderr
    );
    // The hint's size is the room the error names (statvfs of the stick).
    let free = full.stderr[expected.len()..]
        .split(" free on ")
        .next()
        .unwrap();
    assert!(
        full.stderr.contains(&format!(
            "together they need more than the {free} free there"
        )),
        "{}",
        full.stderr
    );
    assert_eq!(names_in(stick.path()), Vec::<String>::new());
    assert_eq!(
        epoch_in_row(&alpha, "beta", "alpha"),
        before,
        "nothing recorded as sent"
    );

    // Less room than the smallest part: said so, with both sizes.
    let stat = rustix::fs::statvfs(stick.path()).unwrap();
    let room = stat.f_bavail * stat.f_frsize;
    let filler = stick.path().join("filler");
    std::fs::write(&filler, vec![0u8; (room - (16 << 10)) as usize]).unwrap();
    let tiny = export_to(&alpha, stick.path(), &["beta"], &[]).fails_with(1);
    assert!(
        tiny.stderr.contains(
            "syncreplica: hint: no -maxsize fits: the smallest part (-maxsize 64k) is larger than the "
        ),
        "{}",
        tiny.stderr
    );
    std::fs::remove_file(&filler).unwrap();

    // Written elsewhere first (-workdir), the parts fill the stick as they
    // are moved there: the same, nothing left in either place.
    let work = tempfile::tempdir().unwrap();
    let full = export_to(
        &alpha,
        stick.path(),
        &["beta"],
        &[
            "-maxsize",
            "512k",
            "-workdir",
            work.path().to_str().unwrap(),
        ],
    )
    .fails_with(1);
    assert!(full.stderr.starts_with(&expected), "{}", full.stderr);
    assert_eq!(names_in(stick.path()), Vec::<String>::new());
    assert_eq!(names_in(work.path()), Vec::<String>::new());
    assert_eq!(epoch_in_row(&alpha, "beta", "alpha"), before);

    // A creation packet: the same, without -workdir (mkreplica has none),
    // and no key file left.
    let full = mkreplica_export(&alpha, stick.path(), "gamma").fails_with(1);
    assert!(
        full.stderr.contains(&format!(
            "mkreplica: error: no room for packets in the -out directory {}: writing the creation \
             packet for \"gamma\" failed",
            stick.path().display()
        )) && full
            .stderr
            .contains("no -maxsize fits: every part must be there at once")
            && !full.stderr.contains("-workdir"),
        "{}",
        full.stderr
    );
    assert_eq!(names_in(stick.path()), Vec::<String>::new());

    // With room, the same export goes through whole.
    stick.resize(16 << 20);
    export_to(&alpha, stick.path(), &["beta"], &[]).ok();
    import_from(&fam.root("beta"), &[stick.path()]).ok();
    assert_eq!(tree_listing(&fam.root("beta")), tree_listing(&alpha));
}

/// Every check on -out comes before anything is recorded: a read-only
/// or full -out is refused with the local change still unrecorded, by
/// mkreplica -export as by syncreplica -export.
#[test]
fn an_unusable_out_is_refused_before_anything_is_recorded() {
    let Some(stick) = Mount::tmpfs("16m") else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    let fam = family(&["alpha", "beta"], &[("small.txt", "small\n")]);
    let alpha = fam.root("alpha");
    run(&alpha, "syncreplica", ["-record"]).ok();
    write(&alpha, "new.txt", "not recorded yet\n");
    let before = everything_under(&alpha);
    stick.remount_read_only();
    let refused = mkreplica_export(&alpha, &stick.path().join("new"), "gamma").fails_with(1);
    assert!(
        refused
            .stderr
            .contains("cannot write packets to the -out directory")
            && refused.stderr.contains("read-only file system")
            && !refused.stderr.contains("os error"),
        "{}",
        refused.stderr
    );
    assert_eq!(everything_under(&alpha), before, "nothing recorded");
    let refused = mkreplica_export(&alpha, stick.path(), "gamma").fails_with(1);
    assert!(
        refused
            .stderr
            .contains("cannot write packets to the -out directory"),
        "{}",
        refused.stderr
    );
    assert_eq!(everything_under(&alpha), before, "nothing recorded");
    let refused = export_to(&alpha, stick.path(), &["beta"], &[]).fails_with(1);
    assert!(
        refused
            .stderr
            .contains("cannot write packets to the -out directory"),
        "{}",
        refused.stderr
    );
    assert_eq!(everything_under(&alpha), before, "nothing recorded");

    // A stick with less room than the smallest part: refused, said so.
    let full = Mount::tmpfs("1m").unwrap();
    std::fs::write(
        full.path().join("filler"),
        vec![0u8; 1024 * 1024 - 16 * 1024],
    )
    .ok();
    let refused = mkreplica_export(&alpha, full.path(), "gamma").fails_with(1);
    assert!(
        refused.stderr.contains(&format!(
            "mkreplica: error: no room for packets in the -out directory {}: an export needs at \
             least 64.0 KiB there; nothing was recorded or written",
            full.path().display()
        )),
        "{}",
        refused.stderr
    );
    assert_eq!(everything_under(&alpha), before, "nothing recorded");
    let refused = export_to(&alpha, full.path(), &["beta"], &[]).fails_with(1);
    assert!(
        refused
            .stderr
            .contains("an export needs at least 64.0 KiB there"),
        "{}",
        refused.stderr
    );
    assert_eq!(everything_under(&alpha), before, "nothing recorded");
}

/// A stick as a shipping destination (`dir =`) that is full: the failed
/// delivery names the stick and the packet and says the disk is full,
/// with the free space; nothing of the packet is left there, and it stays
/// queued.
#[test]
fn a_full_stick_as_a_shipping_destination_is_said_to_be_full() {
    let Some(stick) = Mount::tmpfs("1m") else {
        eprintln!("note: skipped: mounting a tmpfs is not permitted here");
        return;
    };
    let fam = family(&["alpha", "beta"], &[("small.txt", "small\n")]);
    let alpha = fam.root("alpha");
    std::fs::write(alpha.join("big.bin"), random_bytes(0x5eed, 3 << 20)).unwrap();
    let conf = fam.dir.path().join("shipping.toml");
    std::fs::write(
        &conf,
        format!(
            "default_route = \"stick\"\n\n[destinations.stick]\ndir = \"{}\"\n\n\
             [classes.default]\nstorage_bay = \"{1}/bay\"\nreturn_bay = \"{1}/bay/return\"\n",
            stick.path().display(),
            fam.dir.path().display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    run(
        &alpha,
        "syncreplica",
        ["-export", "-ship", "-shipconf", conf, "beta"],
    )
    .ok();
    let poll = run(
        fam.dir.path(),
        "shipping_server",
        ["-poll", "-shipconf", conf],
    )
    .fails_with(1);
    let said = format!("{}{}", poll.stdout, poll.stderr);
    assert!(
        said.contains(&format!(
            "{}: no room for sync_alpha_",
            stick.path().display()
        )) && said.contains(": the disk is full (")
            && said.contains("nothing of it was left there")
            && !said.contains("os error"),
        "{said}"
    );
    assert!(
        names_in(stick.path())
            .iter()
            .all(|n| !n.starts_with("sync_")),
        "{:?}",
        names_in(stick.path())
    );
    // The storage bay holds its outgoing packets in bay/outgoing.
    assert_eq!(
        packet_files(&fam.dir.path().join("bay/outgoing")).len(),
        1,
        "still queued"
    );
}
