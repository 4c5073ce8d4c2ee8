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
    fam.send("alpha", "beta", "intro");
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
    fam.send("alpha", "beta", "intro");
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

// Creation packets (`mkreplica -import`), forged by a real member that
// holds every key of its origins: checked as updates are, and against the
// whole log they must carry. Each refusal names what is wrong and makes
// nothing, even with the signer's fingerprint given.

/// The state a path operation gives, to change.
fn state_mut(op: &mut syncreplica::ops::Operation) -> Option<&mut PathState> {
    match &mut op.change {
        Change::Path { state, .. } | Change::Resolve { state, .. } => Some(state),
        _ => None,
    }
}

/// The last operation of the forged log for `path`.
fn last_op_for<'a>(
    ops: &'a mut [syncreplica::ops::Operation],
    path: &str,
) -> &'a mut syncreplica::ops::Operation {
    ops.iter_mut()
        .rev()
        .find(|op| {
            op.change
                .path_change()
                .is_some_and(|c| c.path == path.as_bytes())
        })
        .unwrap_or_else(|| panic!("no operation for {path}"))
}

/// `mkreplica -import` of the packets in `out` refuses them, saying
/// `says`, and leaves an absent target absent and an empty one empty.
#[track_caller]
fn creation_refused(fam: &Family, fingerprint: &str, out: &Path, says: &str) {
    let absent = fam.dir.path().join("new-absent");
    let res = mkreplica_import(fam.dir.path(), fingerprint, &absent, out);
    assert_ne!(res.code, 0, "accepted:\n{}", res.stdout);
    assert!(res.stderr.contains(says), "{}", res.stderr);
    assert!(
        res.stderr.contains("creation packet") && res.stderr.contains("nothing was created"),
        "{}",
        res.stderr
    );
    assert!(!absent.exists(), "{:?}", entry_names(&absent));
    let empty = fam.dir.path().join("new-empty");
    std::fs::create_dir_all(&empty).unwrap();
    let res = mkreplica_import(fam.dir.path(), fingerprint, &empty, out);
    assert_ne!(res.code, 0, "accepted:\n{}", res.stdout);
    assert!(res.stderr.contains(says), "{}", res.stderr);
    assert!(entry_names(&empty).is_empty(), "{:?}", entry_names(&empty));
}

#[test]
fn a_creation_packet_gets_its_modes_capped_as_an_update_does() {
    use std::os::unix::fs::PermissionsExt;
    let fam = family(&["alpha"], &[("d/f", "content")]);
    let a = fam.root("alpha");
    let out = fam.packet_dir("modes");
    let fingerprint = forge_creation(
        &a,
        &[],
        "gamma",
        &out,
        |forge| {
            for path in ["d", "d/f"] {
                match state_mut(last_op_for(&mut forge.ops, path)).unwrap() {
                    PathState::File { mode, .. } | PathState::Directory { mode, .. } => {
                        *mode = 0o7777
                    }
                    other => panic!("{other:?}"),
                }
            }
        },
        |_| {},
    );
    let g = fam.root("gamma");
    mkreplica_import(fam.dir.path(), &fingerprint, &g, &out).ok();
    let mode = |p: &str| std::fs::metadata(g.join(p)).unwrap().permissions().mode() & 0o7777;
    // Setuid and setgid of a file only where its recorded owner and group
    // are given (root keeping owners, as rsync -a), else dropped and said;
    // the sticky and setgid bits of a directory kept (SPEC.md §6.3: setgid
    // only passes the group on); a directory's setuid bit never.
    if rustix::process::geteuid().is_root() {
        assert_eq!(mode("d/f"), 0o7777);
    } else {
        assert_eq!(mode("d/f"), 0o1777);
    }
    assert_eq!(mode("d"), 0o3777);
    // Recorded as made: the first scan finds nothing changed.
    run(&g, "syncreplica", ["-record"]).ok();
    assert_eq!(own_epoch(&g), 0);
}

#[test]
fn a_creation_packet_missing_the_first_epochs_of_an_origin_is_refused() {
    let fam = family(&["alpha"], &[("f", "0"), ("g", "1")]);
    let a = fam.root("alpha");
    let alpha = id_of(&a);
    let out = fam.packet_dir("gap");
    let fingerprint = forge_creation(
        &a,
        &[],
        "gamma",
        &out,
        |forge| {
            forge
                .ops
                .retain(|op| !(op.origin == alpha && op.epoch == 1))
        },
        |_| {},
    );
    creation_refused(&fam, &fingerprint, &out, "but not 1-1");
}

#[test]
fn a_creation_packet_whose_row_claims_more_than_it_carries_is_refused() {
    let fam = family(&["alpha"], &[("f", "0")]);
    let a = fam.root("alpha");
    let alpha = id_of(&a);
    let out = fam.packet_dir("row");
    let fingerprint = forge_creation(
        &a,
        &[],
        "gamma",
        &out,
        |_| {},
        |meta| {
            let carried = meta.epoch_ranges[&alpha].last;
            meta.epoch_row.insert(alpha, carried + 2);
        },
    );
    creation_refused(&fam, &fingerprint, &out, "claims epoch");
}

#[test]
fn a_creation_packets_estimates_are_capped_and_name_only_members() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let (alpha, beta) = (id_of(&a), id_of(&b));
    let out = fam.packet_dir("estimates");
    let fingerprint = forge_creation(
        &a,
        &[],
        "gamma",
        &out,
        |_| {},
        |meta| {
            let creation = meta.creation.as_mut().unwrap();
            creation
                .estimates
                .insert(beta, [(alpha, 1 << 62), (beta, 1 << 63)].into());
        },
    );
    let g = fam.root("gamma");
    mkreplica_import(fam.dir.path(), &fingerprint, &g, &out).ok();
    assert!(epoch_in_row(&g, "beta", "alpha") <= epoch_in_row(&g, "gamma", "alpha"));
    assert_eq!(epoch_in_row(&g, "beta", "beta"), 0);
    // The new replica's first exports go out as usual.
    write(&g, "from-gamma.txt", "news");
    for target in ["alpha", "beta"] {
        let to = fam.packet_dir(&format!("gamma-{target}"));
        export_to(&g, &to, &[target], &[]).ok();
        assert_eq!(packet_files(&to).len(), 1, "to {target}");
    }

    // An estimate of a replica that is not a member.
    let stranger = syncreplica::store::identity::random_id();
    let out = fam.packet_dir("stranger");
    let fingerprint = forge_creation(
        &a,
        &[],
        "delta",
        &out,
        |_| {},
        |meta| {
            let creation = meta.creation.as_mut().unwrap();
            creation.estimates.insert(stranger, [(alpha, 1)].into());
        },
    );
    creation_refused(&fam, &fingerprint, &out, "which is not a member");
}

#[test]
fn a_creation_packet_whose_sizes_or_chunk_lengths_lie_is_refused() {
    let fam = family(&["alpha"], &[("f", "content")]);
    let a = fam.root("alpha");
    type Lie = fn(&mut PathState);
    let lies: [(&str, Lie, &str); 3] = [
        (
            "size",
            |state| {
                if let PathState::File { size, .. } = state {
                    *size += 1;
                }
            },
            "its size 8 is not the sum of its chunks (7)",
        ),
        (
            "chunk-length",
            |state| {
                if let PathState::File { size, chunks, .. } = state {
                    chunks[0].len += 1;
                    *size += 1;
                }
            },
            "as 8 bytes long, but the packet carries it with 7 bytes",
        ),
        (
            "chunk-limit",
            |state| {
                if let PathState::File { size, chunks, .. } = state {
                    chunks[0].len = 300 * 1024;
                    *size = 300 * 1024;
                }
            },
            "chunks are 1 to 262144 bytes",
        ),
    ];
    for (n, (label, lie, says)) in lies.into_iter().enumerate() {
        let out = fam.packet_dir(label);
        let fingerprint = forge_creation(
            &a,
            &[],
            &format!("new{n}"),
            &out,
            |forge| lie(state_mut(last_op_for(&mut forge.ops, "f")).unwrap()),
            |_| {},
        );
        creation_refused(&fam, &fingerprint, &out, says);
    }
}

#[test]
fn a_creation_packets_member_list_must_be_the_one_its_log_makes() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let a = fam.root("alpha");
    let beta = id_of(&fam.root("beta"));
    let alpha = id_of(&a);

    // An extra member, which no operation adds.
    let out = fam.packet_dir("extra");
    let fingerprint = forge_creation(
        &a,
        &[],
        "gamma",
        &out,
        |_| {},
        |meta| {
            let creation = meta.creation.as_mut().unwrap();
            creation.members.push(packet_format::Member {
                id: syncreplica::store::identity::random_id(),
                name: "mallory".into(),
                public_key: [7; 32],
            });
        },
    );
    creation_refused(&fam, &fingerprint, &out, "\"mallory\" (");
    creation_refused(&fam, &fingerprint, &out, "which no operation of it adds");

    // A real member left out.
    let out = fam.packet_dir("missing");
    let fingerprint = forge_creation(
        &a,
        &[],
        "delta",
        &out,
        |_| {},
        |meta| {
            let creation = meta.creation.as_mut().unwrap();
            creation.members.retain(|m| m.id != beta);
        },
    );
    creation_refused(
        &fam,
        &fingerprint,
        &out,
        &format!("member \"beta\" ({beta}), added by operation"),
    );

    // A member with another key than the operation adding it gives.
    let out = fam.packet_dir("rekeyed");
    let fingerprint = forge_creation(
        &a,
        &[],
        "epsilon",
        &out,
        |_| {},
        |meta| {
            let creation = meta.creation.as_mut().unwrap();
            creation
                .members
                .iter_mut()
                .find(|m| m.id == beta)
                .unwrap()
                .public_key = [9; 32];
        },
    );
    creation_refused(&fam, &fingerprint, &out, "another name or key");

    // The first member with another key: its operations do not verify.
    let out = fam.packet_dir("first-rekeyed");
    let fingerprint = forge_creation(
        &a,
        &[],
        "zeta",
        &out,
        |_| {},
        |meta| {
            let creation = meta.creation.as_mut().unwrap();
            let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
            creation
                .members
                .iter_mut()
                .find(|m| m.id == alpha)
                .unwrap()
                .public_key = key.verifying_key().to_bytes();
        },
    );
    creation_refused(&fam, &fingerprint, &out, "does not verify");
}

#[test]
fn a_creation_packet_signed_by_one_member_in_anothers_name_is_refused() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let alpha_name = Replica::open(&a).unwrap().identity.replica();
    let out = fam.packet_dir("impersonation");
    let fingerprint = forge_creation(
        &b,
        &[&a],
        "gamma",
        &out,
        |_| {},
        |meta| {
            meta.sender = alpha_name;
        },
    );
    creation_refused(
        &fam,
        &fingerprint,
        &out,
        "claims to come from \"alpha\" but is signed by \"beta\"",
    );
}

#[test]
fn a_creation_packet_with_a_version_beyond_what_exists_is_refused() {
    let fam = family(&["alpha"], &[("f", "0")]);
    let a = fam.root("alpha");
    let alpha = id_of(&a);
    let out = fam.packet_dir("version");
    let fingerprint = forge_creation(
        &a,
        &[],
        "gamma",
        &out,
        |forge| {
            if let Change::Path { version, .. } | Change::Resolve { version, .. } =
                &mut last_op_for(&mut forge.ops, "f").change
            {
                version.set(alpha, 1 << 40);
            }
        },
        |_| {},
    );
    creation_refused(
        &fam,
        &fingerprint,
        &out,
        &format!("claims epoch {} of {alpha}", 1u64 << 40),
    );
}

#[test]
fn a_creation_packet_carrying_operations_of_the_new_replica_is_refused() {
    let fam = family(&["alpha"], &[("f", "0")]);
    let a = fam.root("alpha");
    let out = fam.packet_dir("own");
    let fingerprint = forge_creation(
        &a,
        &[],
        "gamma",
        &out,
        |forge| {
            let gamma = forge
                .ops
                .iter()
                .find_map(|op| match &op.change {
                    Change::AddMember { replica, name, .. } if name == "gamma" => Some(*replica),
                    _ => None,
                })
                .unwrap();
            forge.ops.extend(numbered_operations(
                gamma,
                1,
                syncreplica::ops::Timestamp::new(1, 0).unwrap(),
                [dir_change("early", vec![(gamma, 1)])],
            ));
        },
        |_| {},
    );
    creation_refused(&fam, &fingerprint, &out, "of the new replica");
}

/// The new replica's state folder is built as `.syncreplica.init-PID`
/// beside the paths the packet makes: a packet naming such a folder (for
/// any pid) is refused, so it can never replace the new replica's key or
/// configuration.
#[test]
fn a_creation_packet_naming_the_state_folder_under_construction_is_refused() {
    let fam = family(&["alpha"], &[("f", "0")]);
    let a = fam.root("alpha");
    let alpha = id_of(&a);
    let out = fam.packet_dir("init-dir");
    let fingerprint = forge_creation(
        &a,
        &[],
        "gamma",
        &out,
        |forge| {
            let next = forge
                .ops
                .iter()
                .filter(|op| op.origin == alpha)
                .map(|op| op.epoch)
                .max()
                .unwrap()
                + 1;
            forge.ops.extend(numbered_operations(
                alpha,
                next,
                syncreplica::ops::Timestamp::new(1, 0).unwrap(),
                [
                    dir_change(".syncreplica.init-4242", vec![(alpha, next)]),
                    dir_change(".syncreplica.init-4242/more", vec![(alpha, next + 1)]),
                ],
            ));
        },
        |_| {},
    );
    creation_refused(
        &fam,
        &fingerprint,
        &out,
        "names a replica state folder under construction",
    );
    // Such a name in a tree is never recorded (so never sent), and said so.
    let before = own_epoch(&a);
    let root_time = std::fs::metadata(&a).unwrap().modified().unwrap();
    write(&a, ".syncreplica.init-7/x", "a user's");
    // Making it moved the root's mtime (a change of the root's own): put back.
    std::fs::File::open(&a)
        .unwrap()
        .set_modified(root_time)
        .unwrap();
    let res = run(&a, "syncreplica", ["-record"]).ok();
    assert!(
        format!("{}{}", res.stdout, res.stderr).contains("never replicated"),
        "{}\n{}",
        res.stdout,
        res.stderr
    );
    assert_eq!(own_epoch(&a), before);
}

/// The checks take what members' real exports make: a creation packet
/// from a member that is not the family's first, whose log holds members
/// added by others, relayed to it.
#[test]
fn a_creation_packet_from_a_later_member_passes_the_checks() {
    let fam = family(&["alpha", "beta", "gamma"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    // Beta learns of gamma from alpha, then makes delta.
    write(&a, "more.txt", "from alpha");
    fam.send("alpha", "beta", "intro");
    let out = fam.packet_dir("delta");
    let exported = mkreplica_export(&b, &out, "delta").ok();
    assert!(
        exported.stdout.contains("fingerprint"),
        "{}",
        exported.stdout
    );
    let fingerprint = syncreplica::store::identity::fingerprint(
        &Replica::open(&b)
            .unwrap()
            .signing_key()
            .unwrap()
            .verifying_key()
            .to_bytes(),
    );
    let d = fam.root("delta");
    mkreplica_import(fam.dir.path(), &fingerprint, &d, &out).ok();
    assert_eq!(tree_listing(&d), tree_listing(&b));
    let members = run(&d, "lsreplica", [] as [&str; 0]).ok().stdout;
    for name in ["alpha", "beta", "gamma", "delta"] {
        assert!(members.contains(name), "{members}");
    }
    // Its row is the log it holds: its first export goes out.
    write(&d, "from-delta.txt", "news");
    let to = fam.packet_dir("delta-beta");
    export_to(&d, &to, &["beta"], &[]).ok();
    import_from(&b, &[&to]).ok();
    assert_eq!(
        std::fs::read_to_string(b.join("from-delta.txt")).unwrap(),
        "news"
    );
}

/// A path change setting `path` to a file holding `content`, the first
/// version `origin` makes of it.
fn file_change(path: &str, origin: syncreplica::ops::Id, epoch: u64, content: &[u8]) -> Change {
    Change::Path {
        path: path.as_bytes().to_vec(),
        version: VersionVector([(origin, epoch)].into()),
        state: file_state(content),
    }
}

/// The paths `root` has recorded (live entries), sorted.
fn recorded_paths(root: &Path) -> Vec<String> {
    let entries = Replica::open(root).unwrap().state().load_entries().unwrap();
    let mut paths: Vec<String> = entries
        .iter()
        .filter(|(_, e)| e.state != PathState::Deleted)
        .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    paths.sort();
    paths
}

/// `.syncreplicaignore` at the root is each replica's own: a packet
/// writing one (`*`, which would make the receiver forget every entry and
/// apply nothing more; `{a,b`, which would fail its every later record)
/// has it logged, never written, while the rest of the packet applies.
#[test]
fn a_packet_writing_the_ignore_file_steers_nothing() {
    let fam = family(&["alpha", "beta"], &[("f", "0"), ("d/g", "1")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    write(&b, ".syncreplicaignore", "local.tmp\n");
    write(&b, "local.tmp", "beta's own");
    run(&b, "syncreplica", ["-record"]).ok();
    let alpha = id_of(&a);
    for (round, patterns) in [(1, &b"*\n"[..]), (2, b"{a,b\n")] {
        let have = epoch_in_row(&b, "beta", "alpha");
        let entries_before = recorded_paths(&b);
        let new_file = format!("new-{round}.txt");
        let out = fam.packet_dir(&format!("ignore-{round}"));
        forge_with_content(
            &own(&a),
            &b,
            &out,
            vec![
                file_change(".syncreplicaignore", alpha, have + 1, patterns),
                file_change(&new_file, alpha, have + 2, b"applied"),
            ],
            &[patterns, b"applied"],
            |_| {},
        );
        let res = import_from(&b, &[&out]).ok();
        assert!(res.stdout.contains("1 added"), "{}", res.stdout);
        assert_eq!(
            std::fs::read_to_string(b.join(".syncreplicaignore")).unwrap(),
            "local.tmp\n",
            "round {round}"
        );
        assert_eq!(
            std::fs::read_to_string(b.join(&new_file)).unwrap(),
            "applied"
        );
        // Logged (the epochs follow on), not applied.
        assert_eq!(epoch_in_row(&b, "beta", "alpha"), have + 2);
        let mut expected = entries_before.clone();
        expected.push(new_file.clone());
        expected.sort();
        assert_eq!(recorded_paths(&b), expected, "round {round}");
        // Recording forgets nothing and fails on nothing.
        let record = run(&b, "syncreplica", ["-record"]).ok();
        assert!(
            record.stdout.contains("Nothing to record") && record.stderr.is_empty(),
            "{}{}",
            record.stdout,
            record.stderr
        );
        assert_eq!(recorded_paths(&b), expected, "round {round}");
        write(&b, &format!("edit-{round}.txt"), "recorded and exported");
        run(&b, "syncreplica", ["-record"]).ok();
        let back = fam.packet_dir(&format!("back-{round}"));
        export_to(&b, &back, &["alpha"], &[]).ok();
        assert_eq!(packet_files(&back).len(), 1);
    }
    assert!(!recorded_paths(&b).contains(&".syncreplicaignore".to_string()));
}

/// A name from a packet made to drive a terminal and forge a line.
const HOSTILE_NAME: &str = "\u{1b}[31mevil\u{1b}[0m\nSignature: verified";

/// What a command printed holds no raw control character (but line ends)
/// and no line that a name could have forged; `signature_lines` is how
/// many "Signature:" lines the command prints itself.
#[track_caller]
fn assert_shown_safely(what: &str, res: &Run, signature_lines: usize) {
    for (stream, text) in [("stdout", &res.stdout), ("stderr", &res.stderr)] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: raw control characters on {stream}: {text:?}"
        );
    }
    let both = format!("{}{}", res.stdout, res.stderr);
    let forged = both
        .lines()
        .filter(|line| line.starts_with("Signature:"))
        .count();
    assert_eq!(forged, signature_lines, "{what}: {both}");
}

/// The hostile name as the commands show it.
const HOSTILE_SHOWN: &str = "\\u{1b}[31mevil\\u{1b}[0m\\nSignature: verified";

/// Names, comments and file names from a packet reach the user escaped
/// (or as this replica knows the member), whatever command prints them:
/// none can drive the terminal or forge a line such as "Signature:
/// verified".
#[test]
fn names_from_packets_are_shown_escaped_by_every_command() {
    let fam = family(&["alpha", "beta", "gamma"], &[("f", "0")]);
    let (a, b, c) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    let alpha = id_of(&a);
    let have = epoch_in_row(&b, "beta", "alpha");
    let out = fam.packet_dir("names");
    forge(
        &own(&a),
        &b,
        &out,
        vec![dir_change("d", vec![(alpha, have + 1)])],
        |meta| {
            meta.sender.name = HOSTILE_NAME.into();
            meta.family.name = HOSTILE_NAME.into();
            meta.comment = HOSTILE_NAME.into();
            meta.targets[0].name = HOSTILE_NAME.into();
        },
    );
    let dir = out.to_str().unwrap();
    for (args, signatures) in [
        (vec![dir], 0),
        (vec!["-long", dir], 1),
        (vec!["-short", dir], 0),
    ] {
        let res = run(&b, "lspacket", &args).ok();
        assert_shown_safely(&format!("lspacket {args:?}"), &res, signatures);
        if args[0] != "-short" {
            for field in ["Family: ", "Comment supplied at packet creation is: "] {
                assert!(
                    res.stdout.contains(&format!("{field}{HOSTILE_SHOWN}")),
                    "{field}: {}",
                    res.stdout
                );
            }
        }
    }
    let res = import_from(&b, &[&out]).ok();
    assert_shown_safely("-import", &res, 0);
    assert!(
        res.stdout.contains("Applied packet from alpha:"),
        "{}",
        res.stdout
    );
    for (command, args) in [("lsreplica", vec!["-long"]), ("lsepoch", vec![])] {
        let res = run(&b, command, &args).ok();
        assert_shown_safely(command, &res, 0);
    }

    // Left alone: for another member, or another family.
    let gamma = id_of(&c);
    for (label, family_too) in [("other-target", false), ("other-family", true)] {
        let out = fam.packet_dir(label);
        forge(
            &own(&a),
            &b,
            &out,
            vec![dir_change("e", vec![(alpha, have + 2)])],
            |meta| {
                meta.sender.name = HOSTILE_NAME.into();
                meta.targets[0].id = gamma;
                meta.targets[0].name = HOSTILE_NAME.into();
                if family_too {
                    meta.family.id = syncreplica::store::identity::random_id();
                    meta.family.name = HOSTILE_NAME.into();
                }
            },
        );
        let res = import_from(&b, &[&out]).ok();
        assert_shown_safely(label, &res, 0);
        assert!(
            res.stdout.contains("Left alone:") && res.stdout.contains(HOSTILE_SHOWN),
            "{}",
            res.stdout
        );
    }

    // A new member whose name would forge a line: refused, said safely.
    let out = fam.packet_dir("member");
    forge(
        &own(&a),
        &b,
        &out,
        vec![Change::AddMember {
            replica: syncreplica::store::identity::random_id(),
            name: HOSTILE_NAME.into(),
            public_key: [7; 32],
        }],
        |_| {},
    );
    let before = tree_listing(&b);
    let res = import_from(&b, &[&out]);
    assert_eq!(res.code, 1, "{}{}", res.stdout, res.stderr);
    assert_shown_safely("AddMember", &res, 0);
    assert!(res.stderr.contains("refused"), "{}", res.stderr);
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
        res.stdout.contains("not applied here") && res.stdout.contains("4095"),
        "{}",
        res.stdout
    );
    // Logged (so relayed), not made.
    assert_eq!(epoch_in_row(&b, "beta", "alpha"), alpha_had + count);
    assert!(b.join(&fits).is_file());
    // The one-letter folders are made as deep as they fit.
    // Depth k takes 2k - 1 bytes.
    let fit = room.div_ceil(2);
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

/// A disk step that fails after the commit (here: a folder the importing
/// user may not write) is reported, the path's entry keeps what the tree
/// holds, the failure is listed by -status, and the replica goes on:
/// -record, exports and later packets work. Nothing replays it forever.
#[test]
fn a_step_that_fails_after_the_commit_is_reported_and_the_replica_goes_on() {
    use crate::readonly::{as_nobody, give_to_nobody, run_with};
    use std::ffi::OsStr;
    let Some(nobody) = as_nobody() else {
        eprintln!("note: skipped: not root, or neither setpriv nor runuser can run as nobody");
        return;
    };
    let fam = family(
        &["alpha", "beta"],
        &[("locked/old.txt", "old"), ("open/f.txt", "f")],
    );
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    std::fs::set_permissions(
        fam.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    write(&a, "locked/new.txt", "cannot land");
    write(&a, "locked/old.txt", "changed at alpha");
    write(&a, "open/g.txt", "lands");
    run(&a, "syncreplica", ["-record"]).ok();
    let out = fam.packet_dir("first");
    export_to(&a, &out, &["beta"], &[]).ok();
    give_to_nobody(&b);
    give_to_nobody(&out);
    // Beta's user may not write into `locked` (root's).
    let status = std::process::Command::new("chown")
        .arg("root:root")
        .arg(b.join("locked"))
        .status()
        .unwrap();
    assert!(status.success());
    let as_beta = |args: &[&OsStr]| run_with(&nobody, &b, "syncreplica", args.iter().copied());

    let res = as_beta(&[OsStr::new("-import"), out.as_os_str()]);
    assert_eq!(res.code, 1, "{}\n{}", res.stdout, res.stderr);
    assert!(
        res.stderr.contains("locked/new.txt") && res.stderr.contains("ermission denied"),
        "{}",
        res.stderr
    );
    assert!(res.stderr.contains("-resendpath"), "{}", res.stderr);
    // What could be done is done; what could not is as it was.
    assert_eq!(
        std::fs::read_to_string(b.join("open/g.txt")).unwrap(),
        "lands"
    );
    assert!(!b.join("locked/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(b.join("locked/old.txt")).unwrap(),
        "old"
    );
    // Nothing pending, nothing to record (the tree is what the entries
    // say), and -status lists what was not done.
    let status = as_beta(&[OsStr::new("-status")]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(!status.stderr.contains("interrupted"), "{}", status.stderr);
    assert!(
        status.stdout.contains("Not applied here")
            && status.stdout.contains("locked/new.txt")
            && status.stdout.contains("locked/old.txt"),
        "{}",
        status.stdout
    );
    let record = as_beta(&[OsStr::new("-record")]);
    assert_eq!(record.code, 0, "{}", record.stderr);
    assert!(
        record.stdout.contains("Nothing to record"),
        "{}",
        record.stdout
    );
    // Local work and other packets go on.
    write(&a, "open/h.txt", "later");
    run(&a, "syncreplica", ["-record"]).ok();
    let later = fam.packet_dir("later");
    export_to(&a, &later, &["beta"], &[]).ok();
    give_to_nobody(&later);
    let res = as_beta(&[OsStr::new("-import"), later.as_os_str()]);
    assert_eq!(res.code, 0, "{}\n{}", res.stdout, res.stderr);
    assert_eq!(
        std::fs::read_to_string(b.join("open/h.txt")).unwrap(),
        "later"
    );
    write(&b, "open/local.txt", "beta's");
    give_to_nobody(&b.join("open"));
    let record = as_beta(&[OsStr::new("-record")]);
    assert_eq!(record.code, 0, "{}", record.stderr);
    let back = fam.packet_dir("back");
    give_to_nobody(&back);
    let export = as_beta(&[
        OsStr::new("-export"),
        OsStr::new("-out"),
        back.as_os_str(),
        OsStr::new("alpha"),
    ]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    import_from(&a, &[&back]).ok();
    assert_eq!(
        std::fs::read_to_string(a.join("open/local.txt")).unwrap(),
        "beta's"
    );
    // Once the cause is fixed, a resend from alpha brings the paths.
    let status = std::process::Command::new("chown")
        .arg("nobody:nogroup")
        .arg(b.join("locked"))
        .status()
        .unwrap();
    assert!(status.success());
    let resend = fam.packet_dir("resend");
    run(
        &a,
        "syncreplica",
        [
            OsStr::new("-export"),
            OsStr::new("-resendpath"),
            OsStr::new("locked"),
            OsStr::new("-out"),
            resend.as_os_str(),
            OsStr::new("beta"),
        ],
    )
    .ok();
    give_to_nobody(&resend);
    let res = as_beta(&[OsStr::new("-import"), resend.as_os_str()]);
    assert_eq!(res.code, 0, "{}\n{}", res.stdout, res.stderr);
    assert_eq!(
        std::fs::read_to_string(b.join("locked/new.txt")).unwrap(),
        "cannot land"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("locked/old.txt")).unwrap(),
        "changed at alpha"
    );
    let status = as_beta(&[OsStr::new("-status")]);
    assert!(
        !status.stdout.contains("Not applied here"),
        "{}",
        status.stdout
    );
}

/// The same failing step met when an interrupted import is finished (by
/// the next -record): recorded once, never replayed again.
#[test]
fn a_step_that_fails_when_an_interrupted_import_is_finished_is_not_replayed() {
    use crate::readonly::{as_nobody, give_to_nobody, run_with};
    use std::ffi::OsStr;
    let Some(nobody) = as_nobody() else {
        eprintln!("note: skipped: not root, or neither setpriv nor runuser can run as nobody");
        return;
    };
    let fam = family(&["alpha", "beta"], &[("locked/old.txt", "old")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    std::fs::set_permissions(
        fam.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    write(&a, "locked/new.txt", "cannot land");
    write(&a, "open.txt", "lands");
    run(&a, "syncreplica", ["-record"]).ok();
    let out = fam.packet_dir("first");
    export_to(&a, &out, &["beta"], &[]).ok();
    give_to_nobody(&b);
    give_to_nobody(&out);
    let status = std::process::Command::new("chown")
        .arg("root:root")
        .arg(b.join("locked"))
        .status()
        .unwrap();
    assert!(status.success());
    // Killed right after its commit: the journal is pending.
    let mut crashing = nobody.clone();
    crashing.extend(["env", "SYNCREPLICA_TEST_CRASH_AT=apply-after-commit"]);
    let res = run_with(
        &crashing,
        &b,
        "syncreplica",
        [OsStr::new("-import"), out.as_os_str()],
    );
    assert_crashed(&res);
    let as_beta = |args: &[&str]| run_with(&nobody, &b, "syncreplica", args.iter().copied());
    let status = as_beta(&["-status"]);
    assert!(status.stderr.contains("interrupted"), "{}", status.stderr);
    // The next command finishes it: the failing step is reported once.
    let record = as_beta(&["-record"]);
    assert_eq!(record.code, 0, "{}\n{}", record.stdout, record.stderr);
    assert!(
        record
            .stderr
            .contains("finished an import that was interrupted")
            && record.stderr.contains("not applied here: locked/new.txt")
            && record.stderr.contains("ermission denied"),
        "{}",
        record.stderr
    );
    assert!(
        record.stdout.contains("Nothing to record"),
        "{}",
        record.stdout
    );
    assert_eq!(
        std::fs::read_to_string(b.join("open.txt")).unwrap(),
        "lands"
    );
    let again = as_beta(&["-record"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("locked/new.txt"), "{}", again.stderr);
    let status = as_beta(&["-status"]);
    assert!(!status.stderr.contains("interrupted"), "{}", status.stderr);
    assert!(
        status.stdout.contains("not applied:   locked/new.txt"),
        "{}",
        status.stdout
    );
    assert!(!b.join(".syncreplica/staging").exists());
}

/// A packet giving one path more pairwise-concurrent versions than the
/// documented limit (SPEC.md §13): each would cost planning time against
/// every other, and a real family makes at most one per origin. Refused
/// as a whole, naming the path and the limit; the replica unchanged and
/// healthy.
#[test]
fn too_many_concurrent_versions_of_one_path_are_refused() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let n: u64 = std::env::var("SYNCREPLICA_TEST_CONCURRENT").map_or(300, |v| v.parse().unwrap());
    // Beta's own epochs, so versions can claim them.
    for i in 0..n {
        write(&b, &format!("own/{i}"), "x");
    }
    run(&b, "syncreplica", ["-record"]).ok();
    let (alpha, beta) = (id_of(&a), id_of(&b));
    let have = epoch_in_row(&b, "beta", "alpha");
    let beta_has = epoch_in_row(&b, "beta", "beta");
    assert!(beta_has >= n);
    // Operation i: {alpha: have + i, beta: n - i}, so no two are ordered.
    let changes = (1..=n)
        .map(|i| Change::Path {
            path: b"p".to_vec(),
            version: VersionVector([(alpha, have + i), (beta, n - i)].into()),
            state: PathState::symlink(format!("target-{i}").into_bytes()),
        })
        .collect();
    let out = fam.packet_dir("concurrent");
    forge(&own(&a), &b, &out, changes, |_| {});
    let before = tree_listing(&b);
    let started = std::time::Instant::now();
    let res = import_from(&b, &[&out]);
    eprintln!("import of {n} concurrent versions: {:?}", started.elapsed());
    assert_ne!(res.code, 0, "accepted:\n{}", res.stdout);
    assert!(
        res.stderr.contains("\"p\"") && res.stderr.contains("pairwise-concurrent versions"),
        "{}",
        res.stderr
    );
    assert!(tree_listing(&b) == before, "the tree changed");
    assert_eq!(epoch_in_row(&b, "beta", "alpha"), have);
    assert_eq!(epoch_in_row(&b, "beta", "beta"), beta_has);
    still_healthy(&fam, &b, "alpha");
}

/// A packet signed by beta that names alpha as its sender, made later than
/// alpha's last packet and with a row that holds none of alpha's changes,
/// looks like alpha restored from a backup: it must not lower gamma's
/// estimate of alpha, nor note anything of alpha (its format, its clock),
/// before the import refuses it for impersonation.
#[test]
fn a_packet_in_anothers_name_does_not_pass_for_that_member_restored() {
    let fam = family(&["alpha", "beta", "gamma"], &[("f", "0")]);
    let (a, b, g) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    write(&a, "f", "1");
    fam.send("alpha", "gamma", "from-alpha");
    let alpha = id_of(&a);
    // The import's scan may refresh a path's stat columns: only the
    // family's records count here.
    let family_rows = |root: &Path| -> Vec<String> {
        everything_under(root)
            .into_iter()
            .filter(|row| !row.contains("state.db: entries:"))
            .collect()
    };
    let before = family_rows(&g);
    let out = fam.packet_dir("forged");
    let who = Forgery {
        origin: &b,
        sender: &a,
        signer: &b,
        sealer: &b,
    };
    let change = Change::Path {
        path: b"gone".to_vec(),
        version: VersionVector::default(),
        state: PathState::Deleted,
    };
    forge(&who, &g, &out, vec![change], |meta| {
        meta.epoch_row.insert(alpha, 0);
        meta.created = syncreplica::ops::Timestamp::new(4_000_000_000, 0).unwrap();
    });
    let refused = import_from(&g, &[&out]).fails_with(1);
    assert!(
        refused
            .stderr
            .contains("claims to come from \"alpha\" but is signed by \"beta\""),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("restored"), "{}", refused.stdout);
    assert_eq!(family_rows(&g), before);
}

/// Issue 11: a signed packet can make a conflict of every one of its
/// operations. The import prints the first 1,000 notes, says how many
/// more there are and where they all are (a report file in the state
/// folder), and its JSON says the same; nothing is lost.
#[test]
fn a_packet_making_thousands_of_conflicts_reports_a_bounded_list_and_files_them_all() {
    use std::os::unix::fs::PermissionsExt;
    const N: usize = 3000;
    const HELD: usize = 1000;
    let fam = family(&["alpha", "beta", "gamma"], &[("f", "0")]);
    let a = fam.root("alpha");
    let alpha = id_of(&a);
    let name = |i: usize| format!("c{:02}/d{i:05}", i % 16);
    // The receiver makes N folders of its own; alpha, not knowing them,
    // makes the same folders with another mode: N concurrent changes,
    // each a conflict of the folder's metadata. Returns the packet's
    // folder.
    let prepare = |to: &str| {
        let root = fam.root(to);
        for i in 0..N {
            let dir = root.join(name(i));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        run(&root, "syncreplica", ["-record"]).ok();
        let have = epoch_in_row(&root, to, "alpha");
        let changes = (0..N)
            .map(|i| Change::Path {
                path: name(i).into_bytes(),
                version: VersionVector([(alpha, have + 1 + i as u64)].into_iter().collect()),
                state: PathState::directory(0o700),
            })
            .collect();
        let out = fam.packet_dir(&format!("conflicts-{to}"));
        forge(&own(&a), &root, &out, changes, |_| {});
        (root, out)
    };
    let (b, out) = prepare("beta");
    let res = import_from(&b, &[&out]).ok();
    // Every path of the packet is in conflict (the 16 parent folders are
    // made on both sides too, unchanged: no conflict).
    let shown: Vec<&str> = res
        .stdout
        .lines()
        .filter(|l| l.starts_with("  conflict: c"))
        .collect();
    assert_eq!(shown.len(), HELD, "{}", res.stdout);
    assert!(
        res.stdout.contains(&format!(", {N} conflicts)")),
        "{}",
        res.stdout
    );
    assert!(
        res.stdout.contains(&format!("{N} in conflict")),
        "{}",
        res.stdout
    );
    let more = res
        .stdout
        .lines()
        .find(|l| l.starts_with("  conflict: and "))
        .unwrap_or_else(|| panic!("no line for the rest:\n{}", res.stdout));
    assert!(
        more.contains(&format!("and {} more, not shown", N - HELD)),
        "{more}"
    );
    let file = more
        .rsplit_once(" is in ")
        .map(|(_, f)| std::path::PathBuf::from(f))
        .unwrap();
    assert!(
        file.starts_with(b.join(".syncreplica/reports")),
        "{}",
        file.display()
    );
    // The file has every note, each path once, the shown ones first.
    let text = std::fs::read_to_string(&file).unwrap();
    let all: Vec<&str> = text.lines().collect();
    assert_eq!(all.len(), N);
    for (shown, filed) in shown.iter().zip(&all) {
        assert_eq!(shown.trim_start(), *filed);
    }
    let mut paths: Vec<&str> = all
        .iter()
        .map(|l| {
            l.strip_prefix("conflict: ")
                .unwrap()
                .split_once(": ")
                .unwrap()
                .0
        })
        .collect();
    paths.sort_unstable();
    paths.dedup();
    let mut expected: Vec<String> = (0..N).map(name).collect();
    expected.sort_unstable();
    assert_eq!(paths, expected);
    assert!(all
        .iter()
        .all(|l| l.contains("concurrent changes of the folder")));
    // The conflicts were resolved all the same: the stricter mode.
    for i in [0, N - 1] {
        let mode = std::fs::metadata(b.join(name(i)))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}", name(i));
    }

    // The JSON holds the same bound, the count of the rest and the file.
    let (c, out) = prepare("gamma");
    let res = run(
        &c,
        "syncreplica",
        [
            std::ffi::OsStr::new("-import"),
            "-fmt".as_ref(),
            "json".as_ref(),
            out.as_os_str(),
        ],
    )
    .ok();
    let json: serde_json::Value =
        serde_json::from_str(&res.stdout).unwrap_or_else(|e| panic!("{e}: {}", res.stdout));
    assert_eq!(json["conflicts"], N as u64);
    let changes = &json["packets"][0]["changes"];
    assert_eq!(changes["conflicts"].as_array().unwrap().len(), HELD);
    assert_eq!(changes["conflicts_more"], (N - HELD) as u64);
    assert_eq!(changes["failed_more"], 0);
    let file = std::path::PathBuf::from(changes["report_file"].as_str().unwrap());
    assert!(file.starts_with(c.join(".syncreplica/reports")));
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), N);
}
