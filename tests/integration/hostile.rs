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
