//! Hostile members: packets validly signed by a real member's key, with
//! forged fields. Each is refused as a whole, with the replica unchanged
//! and still healthy (a -record and an export work afterwards), or capped
//! to what is true.

use std::path::Path;

use syncreplica::ops::{Change, PathState, VersionVector};
use syncreplica::replica::Replica;

use crate::helpers::*;

fn id_of(root: &Path) -> syncreplica::ops::Id {
    Replica::open(root).unwrap().identity.replica_id
}

/// After a refusal: the tree is as it was, and the replica records and
/// exports as usual.
fn still_healthy(fam: &Family, root: &Path, target: &str) {
    write(root, "after-refusal.txt", "still works");
    run(root, "syncreplica", ["-record"]).ok();
    let out = fam.packet_dir(&format!("healthy-{target}"));
    let before = packet_files(&out).len();
    export_to(root, &out, &[target], &[]).ok();
    assert_eq!(packet_files(&out).len(), before + 1);
}

/// A packet `root` makes of its own operations, honestly sealed.
fn own(root: &Path) -> Forgery<'_> {
    Forgery {
        origin: root,
        sender: root,
        signer: root,
        sealer: root,
    }
}

/// A new directory `path` with `version`.
fn dir_change(path: &str, version: Vec<(syncreplica::ops::Id, u64)>) -> Change {
    Change::Path {
        path: path.as_bytes().to_vec(),
        version: VersionVector(version.into_iter().collect()),
        state: PathState::directory(0o755),
    }
}

#[test]
fn a_packet_signed_by_one_member_in_anothers_name_is_refused() {
    let fam = family(&["alpha", "beta", "gamma"], &[("f", "0")]);
    let (a, b, c) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    // Beta learns of gamma from alpha.
    let intro = fam.packet_dir("intro");
    export_to(&a, &intro, &["beta"], &[]).ok();
    import_from(&b, &[&intro]).ok();
    let alpha = id_of(&a);
    let have = epoch_in_row(&b, "beta", "alpha");
    let out = fam.packet_dir("forged");
    // Gamma signs; the header says alpha, and claims alpha holds 2^62 of
    // everything.
    let who = Forgery {
        origin: &a,
        sender: &a,
        signer: &c,
        sealer: &c,
    };
    forge(
        &who,
        &b,
        &out,
        vec![dir_change("planted", vec![(alpha, have + 1)])],
        |meta| {
            for epoch in meta.epoch_row.values_mut() {
                *epoch = 1 << 62;
            }
        },
    );
    let before = tree_listing(&b);
    let res = import_from(&b, &[&out]);
    assert_ne!(res.code, 0, "accepted:\n{}", res.stdout);
    assert!(
        res.stderr
            .contains("claims to come from \"alpha\" but is signed by \"gamma\""),
        "{}",
        res.stderr
    );
    assert_eq!(tree_listing(&b), before);
    assert_eq!(
        epoch_in_row(&b, "alpha", "alpha"),
        epoch_in_row(&b, "beta", "alpha")
    );
    still_healthy(&fam, &b, "alpha");
}

#[test]
fn an_epoch_row_beyond_what_exists_is_capped_and_exports_go_on() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let alpha = id_of(&a);
    let have = epoch_in_row(&b, "beta", "alpha");
    let out = fam.packet_dir("row");
    forge(
        &own(&a),
        &b,
        &out,
        vec![dir_change("d", vec![(alpha, have + 1)])],
        |meta| {
            for epoch in meta.epoch_row.values_mut() {
                *epoch = 1 << 62;
            }
        },
    );
    import_from(&b, &[&out]).ok();
    // Beta's estimate of alpha is what exists, not 2^62: its own later
    // changes still go to alpha.
    let beta_own = epoch_in_row(&b, "beta", "beta");
    assert!(epoch_in_row(&b, "alpha", "beta") <= beta_own);
    assert_eq!(epoch_in_row(&b, "alpha", "alpha"), have + 1);
    write(&b, "from-beta.txt", "news");
    let back = fam.packet_dir("back");
    export_to(&b, &back, &["alpha"], &[]).ok();
    assert_eq!(packet_files(&back).len(), 1, "beta still exports to alpha");
}

#[test]
fn a_version_claiming_epochs_that_exist_nowhere_is_refused() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let alpha = id_of(&a);
    let have = epoch_in_row(&b, "beta", "alpha");
    let out = fam.packet_dir("version");
    forge(
        &own(&a),
        &b,
        &out,
        vec![dir_change("d", vec![(alpha, u64::MAX)])],
        |_| {},
    );
    let before = tree_listing(&b);
    let res = import_from(&b, &[&out]);
    assert_ne!(res.code, 0, "accepted:\n{}", res.stdout);
    assert!(
        res.stderr
            .contains(&format!("claims epoch {} of", u64::MAX)),
        "{}",
        res.stderr
    );
    assert_eq!(tree_listing(&b), before);
    assert_eq!(epoch_in_row(&b, "beta", "alpha"), have);
    still_healthy(&fam, &b, "alpha");
}

/// A member relaying operations in another member's name (its own packet,
/// its own key, but operations "of alpha" it sealed itself), or without
/// any seal: refused, because only the origin can seal its operations
/// (an altered operation fails the same check). Genuine relays work (the
/// three-site relay tests).
#[test]
fn operations_not_sealed_by_their_origin_are_refused() {
    let fam = family(&["alpha", "beta", "gamma"], &[("f", "0")]);
    let (a, b, c) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    let intro = fam.packet_dir("intro");
    export_to(&a, &intro, &["beta"], &[]).ok();
    import_from(&b, &[&intro]).ok();
    let alpha = id_of(&a);
    let have = epoch_in_row(&b, "beta", "alpha");
    let out = fam.packet_dir("not-alphas");
    let who = Forgery {
        origin: &a,
        sender: &c,
        signer: &c,
        sealer: &c,
    };
    forge(
        &who,
        &b,
        &out,
        vec![dir_change("planted", vec![(alpha, have + 1)])],
        |_| {},
    );
    let before = tree_listing(&b);
    let res = import_from(&b, &[&out]);
    assert_ne!(res.code, 0, "accepted:\n{}", res.stdout);
    assert!(res.stderr.contains("does not verify"), "{}", res.stderr);
    assert_eq!(tree_listing(&b), before);
    assert_eq!(epoch_in_row(&b, "beta", "alpha"), have);

    // No seal at all.
    let bare = fam.packet_dir("bare");
    forge(
        &who,
        &b,
        &bare,
        vec![dir_change("planted", vec![(alpha, have + 1)])],
        |meta| meta.seals.clear(),
    );
    let res = import_from(&b, &[&bare]);
    assert_ne!(res.code, 0, "accepted:\n{}", res.stdout);
    assert!(res.stderr.contains("carries no seal"), "{}", res.stderr);
    assert_eq!(tree_listing(&b), before);
    still_healthy(&fam, &b, "alpha");
}

// One packet must never brick a replica: every check that can fail comes
// before the commit, and a disk step that still fails after it is reported
// and recorded, never replayed forever.

/// `changes` as `a`'s next operations at `b`, each with the version
/// {a: its epoch}.
fn next_of(a: &Path, b: &Path, changes: Vec<(String, PathState)>) -> Vec<Change> {
    let origin = id_of(a);
    let have = epoch_in_row(b, "beta", "alpha");
    changes
        .into_iter()
        .enumerate()
        .map(|(i, (path, state))| Change::Path {
            path: path.into_bytes(),
            version: VersionVector([(origin, have + 1 + i as u64)].into_iter().collect()),
            state,
        })
        .collect()
}

fn empty_file() -> PathState {
    PathState::File {
        mode: 0o644,
        mtime: syncreplica::ops::Timestamp::new(1_700_000_000, 0).unwrap(),
        size: 0,
        chunks: Vec::new(),
        ext: Default::default(),
    }
}

/// A relative path of exactly `len` bytes: folders named with 199 `x`s,
/// then a last name of `y`s ending in `end`.
fn path_of_len(len: usize, end: &str) -> String {
    let mut path = String::new();
    while len - path.len() > 200 + end.len() {
        path.push_str(&"x".repeat(199));
        path.push('/');
    }
    let rest = len - path.len() - end.len();
    path.push_str(&"y".repeat(rest));
    path.push_str(end);
    assert_eq!(path.len(), len);
    path
}

/// No import is left half done.
fn nothing_pending(root: &Path) {
    let status = run(root, "syncreplica", ["-status"]).ok();
    assert!(!status.stderr.contains("interrupted"), "{}", status.stderr);
    assert!(!root.join(".syncreplica/staging").exists());
}

/// The engine once used `.syncreplica-new-link` beside a symlink it made:
/// a packet making a folder of that name, then a link beside it, made
/// every later command replay a failing step. The engine's only name in
/// the tree (`.syncreplica-new-file`) cannot be named by a packet at all.
#[test]
fn names_like_the_engines_temporaries_never_stick_an_import() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let out = fam.packet_dir("old-temp");
    let changes = next_of(
        &a,
        &b,
        vec![
            ("d".into(), PathState::directory(0o755)),
            (
                "d/.syncreplica-new-link".into(),
                PathState::directory(0o755),
            ),
            ("d/l".into(), PathState::symlink(b"target".to_vec())),
        ],
    );
    forge(&own(&a), &b, &out, changes, |_| {});
    import_from(&b, &[&out]).ok();
    assert!(b.join("d/.syncreplica-new-link").is_dir());
    assert_eq!(
        std::fs::read_link(b.join("d/l")).unwrap(),
        Path::new("target")
    );
    nothing_pending(&b);
    still_healthy(&fam, &b, "alpha");

    let out = fam.packet_dir("temp");
    let changes = next_of(
        &a,
        &b,
        vec![
            ("e".into(), PathState::directory(0o755)),
            (
                "e/.syncreplica-new-file".into(),
                PathState::directory(0o755),
            ),
            ("e/l".into(), PathState::symlink(b"target".to_vec())),
        ],
    );
    forge(&own(&a), &b, &out, changes, |_| {});
    let before = tree_listing(&b);
    let res = import_from(&b, &[&out]);
    assert_ne!(res.code, 0, "accepted:\n{}", res.stdout);
    assert!(
        res.stderr.contains("names a temporary file of the import"),
        "{}",
        res.stderr
    );
    assert_eq!(tree_listing(&b), before);
    nothing_pending(&b);
    still_healthy(&fam, &b, "alpha");
}

/// A folder whose path is longer than a file name may be (here 130
/// bytes) once made every import that created it stick: the engine noted
/// the folder's mode under a file named after the path.
#[test]
fn a_folder_with_a_long_name_from_a_sibling_is_made_and_nothing_sticks() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let long = "d".repeat(130);
    write(&a, &format!("{long}/{long}/inside.txt"), "content");
    run(&a, "syncreplica", ["-record"]).ok();
    let out = fam.packet_dir("long-dir");
    export_to(&a, &out, &["beta"], &[]).ok();
    import_from(&b, &[&out]).ok();
    assert_eq!(
        std::fs::read_to_string(b.join(format!("{long}/{long}/inside.txt"))).unwrap(),
        "content"
    );
    nothing_pending(&b);
    still_healthy(&fam, &b, "alpha");
    assert_eq!(tree_listing(&a).len() + 1, tree_listing(&b).len());
}

/// A path the packet format allows (4,095 bytes) but that this replica's
/// root makes longer than the system takes (root + "/" + path over 4,095
/// bytes) is not made here: logged and relayed like an excluded path,
/// with a note, so no scan, export or editor ever meets a path it cannot
/// open. One that fits exactly is made.
#[test]
fn a_path_too_long_for_this_replicas_root_is_not_made_here() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let room = 4095 - b.as_os_str().len() - 1;
    let too_long = path_of_len(4095, ".txt");
    let just_too_long = path_of_len(room + 1, ".txt");
    let fits = format!("fits/{}", path_of_len(room - 5, ".txt"));
    // 2,047 one-letter folders: 4,093 bytes.
    let mut changes = Vec::new();
    let mut deep = String::from("a");
    for _ in 0..2047 {
        changes.push((deep.clone(), PathState::directory(0o755)));
        deep.push_str("/a");
    }
    changes.push((too_long.clone(), empty_file()));
    changes.push((just_too_long.clone(), empty_file()));
    changes.push((fits.clone(), empty_file()));
    let count = changes.len() as u64;
    let alpha_had = epoch_in_row(&b, "beta", "alpha");
    let out = fam.packet_dir("long");
    forge(&own(&a), &b, &out, next_of(&a, &b, changes), |_| {});
    let before = tree_listing(&b);
    let res = import_from(&b, &[&out]).ok();
    assert!(
        res.stdout.contains("not made here") && res.stdout.contains("4095"),
        "{}",
        res.stdout
    );
    // Logged (so relayed), not made.
    assert_eq!(epoch_in_row(&b, "beta", "alpha"), alpha_had + count);
    assert!(b.join(&fits).is_file());
    // The one-letter folders are made as deep as they fit.
    let fit = (room + 1) / 2;
    let chain = |depth: usize| vec!["a"; depth].join("/");
    assert!(b.join(chain(fit)).is_dir());
    assert!(!b.join(chain(fit + 1)).exists());
    let mut after = tree_listing(&b);
    after.retain(|line| !line.contains(" fits") && !line.starts_with("dir  a"));
    assert_eq!(after, before);
    assert!(!b.join(&too_long[..199]).exists());
    nothing_pending(&b);
    still_healthy(&fam, &b, "alpha");
}

/// A file whose path fits in the tree but not below
/// `.syncreplica/deleted/YYYYMMDD/`: the import that replaced it failed
/// to keep its old version, and every later command replayed that. The
/// old version is kept under a shorter name in the day's folder instead.
#[test]
fn a_replaced_file_whose_kept_path_would_be_too_long_is_still_kept() {
    // Roots of the same length: the path fits in both trees.
    let fam = family(&["alpha", "gamma"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("gamma"));
    assert_eq!(a.as_os_str().len(), b.as_os_str().len());
    // Fits in the tree (root + "/" + path = 4,081 bytes), not under
    // .syncreplica/deleted/YYYYMMDD/ (4,111).
    let path = path_of_len(4095 - b.as_os_str().len() - 15, ".txt");
    write(&a, &path, "first version");
    run(&a, "syncreplica", ["-record"]).ok();
    let out = fam.packet_dir("first");
    export_to(&a, &out, &["gamma"], &[]).ok();
    import_from(&b, &[&out]).ok();
    assert_eq!(
        std::fs::read_to_string(b.join(&path)).unwrap(),
        "first version"
    );
    write(&a, &path, "second version");
    run(&a, "syncreplica", ["-record"]).ok();
    let out = fam.packet_dir("second");
    export_to(&a, &out, &["gamma"], &[]).ok();
    import_from(&b, &[&out]).ok();
    assert_eq!(
        std::fs::read_to_string(b.join(&path)).unwrap(),
        "second version"
    );
    let deleted = b.join(".syncreplica/deleted");
    let kept: Vec<_> = files_under(&deleted)
        .into_iter()
        .filter(|f| std::fs::read(deleted.join(f)).is_ok_and(|c| c == b"first version"))
        .collect();
    assert_eq!(kept.len(), 1, "the first version is kept");
    nothing_pending(&b);
    still_healthy(&fam, &b, "alpha");
}
