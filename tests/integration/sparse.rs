//! Sparse files keep their holes at every receiver (creation import,
//! update import, staging), and a file that keeps changing while it is
//! read is exported as a point-in-time clone where the filesystem has
//! reflinks (xfs on a loop device here), and left out with a warning
//! naming it elsewhere.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

const GIB: u64 = 1 << 30;

/// Bytes the file at `path` occupies on disk (st_blocks).
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Whether two files have the same bytes, compared 1 MiB at a time.
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// A filesystem mounted at a fresh directory, unmounted on drop: a tmpfs,
/// or an image (`mkfs` on a loop device). `None`, with the reason, where
/// that is not possible here.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn at(&self) -> &Path {
        self.dir.path()
    }

    fn with_args(args: &[&OsStr]) -> Result<Mount, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root (mount needs it)".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(args)
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(Mount { dir })
    }

    fn tmpfs(size: &str) -> Result<Mount, String> {
        Mount::with_args(&[
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "-o".as_ref(),
            OsStr::new(&format!("size={size}")),
            "tmpfs".as_ref(),
        ])
    }

    /// A 512 MiB xfs with reflinks, from an image file in `images`.
    fn xfs(images: &Path) -> Result<Mount, String> {
        let image = images.join("xfs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        let made = Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image)
            .output()
            .map_err(|e| format!("mkfs.xfs: {e} (apt-get install xfsprogs)"))?;
        if !made.status.success() {
            return Err(String::from_utf8_lossy(&made.stderr).trim().to_string());
        }
        Mount::with_args(&["-o".as_ref(), "loop".as_ref(), image.as_os_str()])
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A 1 GiB image holding 8 KiB of data (two 4 KiB blocks, far apart).
fn sparse_image(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(GIB).unwrap();
    file.write_all_at(&random_bytes(1, 4096), 100 << 20)
        .unwrap();
    file.write_all_at(&random_bytes(2, 4096), 900 << 20)
        .unwrap();
}

/// A 1 GiB image holding 8 KiB of data is made at a new member on a
/// 200 MiB filesystem, and keeps its holes there, at creation and through
/// an update; the packets carry about the data, not the gigabyte.
#[test]
fn a_sparse_image_keeps_its_holes_at_the_receiver() {
    let small = match Mount::tmpfs("200m") {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("note: skipped: cannot mount a tmpfs here: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let alpha = dir.path().join("alpha");
    std::fs::create_dir(&alpha).unwrap();
    let image = alpha.join("disk.img");
    sparse_image(&image);
    let at_sender = allocated(&image);
    assert!(
        at_sender < 1 << 20,
        "the sender's image is sparse: {at_sender}"
    );
    init(&alpha, "alpha");

    let creation = dir.path().join("creation");
    std::fs::create_dir(&creation).unwrap();
    mkreplica_export(&alpha, &creation, "beta").ok();
    let packet_bytes: u64 = packet_files(&creation)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(packet_bytes < 256 << 10, "creation packet: {packet_bytes}");
    let beta = small.at().join("beta");
    mkreplica_import_at(dir.path(), &beta, &creation).ok();
    let received = beta.join("disk.img");
    assert!(same_bytes(&image, &received));
    assert!(
        allocated(&received) <= at_sender + (64 << 10),
        "at the receiver {} bytes, at the sender {at_sender}",
        allocated(&received)
    );

    // An update: 4 KiB written in the middle of a hole.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    file.write_all_at(&random_bytes(3, 4096), 500 << 20)
        .unwrap();
    drop(file);
    let out = dir.path().join("update");
    std::fs::create_dir(&out).unwrap();
    export_to(&alpha, &out, &["beta"], &[]).ok();
    let packet_bytes: u64 = packet_files(&out)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(packet_bytes < 1 << 20, "update packet: {packet_bytes}");
    import_from(&beta, &[&out]).ok();
    let received = beta.join("disk.img");
    assert!(same_bytes(&image, &received));
    let at_sender = allocated(&image);
    assert!(
        allocated(&received) <= at_sender + (64 << 10),
        "at the receiver {} bytes, at the sender {at_sender}",
        allocated(&received)
    );
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));
}

/// Starts `syncreplica -export -out OUT beta` at `root` to pause after
/// every read of `vm.img` by its scan; the caller changes the file at each
/// pause (a running VM's image), then lets it finish.
fn export_pausing_after_reads(root: &Path, out: &Path, marker: &Path) -> Paused {
    start_paused_at(
        root,
        "syncreplica",
        [
            OsStr::new("-export"),
            OsStr::new("-out"),
            out.as_os_str(),
            OsStr::new("beta"),
        ],
        "scan-after-read:vm.img",
        marker,
    )
}

/// Acts out a file written all the time: at each of the scan's reads
/// (paused after each), 4 KiB of `image` is rewritten; then the export
/// goes on. Returns the finished export.
fn export_while_writing(root: &Path, out: &Path, marker: &Path, image: &Path) -> Run {
    let mut paused = export_pausing_after_reads(root, out, marker);
    let file = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    let attempts = syncreplica::tree::scan::READ_ATTEMPTS as u64;
    for n in 0..attempts {
        file.write_all_at(&random_bytes(100 + n, 4096), n * 65536)
            .unwrap();
        if n + 1 < attempts {
            paused.next();
        }
    }
    paused.resume()
}

fn busy_family(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let alpha = dir.join("alpha");
    std::fs::create_dir(&alpha).unwrap();
    write(&alpha, "quiet.txt", "never changes");
    init(&alpha, "alpha");
    let creation = dir.join("creation");
    std::fs::create_dir(&creation).unwrap();
    mkreplica_export(&alpha, &creation, "beta").ok();
    let beta = dir.join("beta");
    mkreplica_import_at(dir, &beta, &creation).ok();
    let image = alpha.join("vm.img");
    std::fs::write(&image, random_bytes(7, 1 << 20)).unwrap();
    (alpha, beta, image)
}

/// Where the filesystem has reflinks, a file that changes at every read
/// is recorded and exported as a point-in-time clone, and the export says
/// so; the receiver gets exactly the clone's bytes.
#[test]
fn a_file_that_never_stops_changing_is_exported_as_a_reflink_clone() {
    let images = tempfile::tempdir().unwrap();
    let xfs = match Mount::xfs(images.path()) {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("note: skipped: no xfs with reflinks here: {why}");
            return;
        }
    };
    let dir = tempfile::TempDir::new_in(xfs.at()).unwrap();
    let (alpha, beta, image) = busy_family(dir.path());
    let out = dir.path().join("packets");
    std::fs::create_dir(&out).unwrap();
    let marker = dir.path().join("paused");
    let res = export_while_writing(&alpha, &out, &marker, &image).ok();
    assert!(
        res.stderr.contains(
            "vm.img: changed while being read (3 attempts); recorded as a point-in-time clone"
        ),
        "{}",
        res.stderr
    );
    // The clone is the content after the last write.
    let snapshot_dir = alpha.join(".syncreplica/snapshots");
    let snapshots = std::fs::read_dir(&snapshot_dir).unwrap().count();
    assert_eq!(snapshots, 1);
    import_from(&beta, &[&out]).ok();
    assert!(same_bytes(&image, &beta.join("vm.img")));
    // Once it stops changing, the live file is recorded again and the
    // snapshot goes.
    run(&alpha, "syncreplica", ["-record"]).ok();
    assert_eq!(std::fs::read_dir(&snapshot_dir).unwrap().count(), 0);
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));
}

/// Where the filesystem has no reflinks, a file that changes at every
/// read is retried, then left out with a warning naming it; the rest of
/// the export ships, and the file follows once it is quiet.
#[test]
fn a_file_that_never_stops_changing_is_left_out_where_there_are_no_reflinks() {
    let dir = tempfile::tempdir().unwrap();
    let (alpha, beta, image) = busy_family(dir.path());
    let probe = dir.path().join("probe");
    std::fs::write(&probe, "x").unwrap();
    let cloned = Command::new("cp")
        .args(["--reflink=always"])
        .arg(&probe)
        .arg(dir.path().join("probe2"))
        .output()
        .unwrap();
    if cloned.status.success() {
        eprintln!("note: skipped: the temporary folder's filesystem has reflinks");
        return;
    }
    write(&alpha, "other.txt", "ships anyway");
    let out = dir.path().join("packets");
    std::fs::create_dir(&out).unwrap();
    let marker = dir.path().join("paused");
    let res = export_while_writing(&alpha, &out, &marker, &image).ok();
    assert!(
        res.stderr
            .contains("vm.img: changed while being read (3 attempts); not recorded this time"),
        "{}",
        res.stderr
    );
    assert!(!alpha.join(".syncreplica/snapshots").exists());
    import_from(&beta, &[&out]).ok();
    assert_eq!(
        std::fs::read_to_string(beta.join("other.txt")).unwrap(),
        "ships anyway"
    );
    assert!(!beta.join("vm.img").exists());
    let out2 = dir.path().join("packets2");
    std::fs::create_dir(&out2).unwrap();
    export_to(&alpha, &out2, &["beta"], &[]).ok();
    import_from(&beta, &[&out2]).ok();
    assert_eq!(tree_listing(&alpha), tree_listing(&beta));
}
