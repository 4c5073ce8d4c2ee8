//! The apply engine on real trees: replicas made with the library,
//! operations taken from one replica's log and applied to another's with
//! `apply::apply_batch`, chunks served from the sender's files.

use crate::helpers::{numbered_operations, XorShift};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use syncreplica::error::Refusal;
use syncreplica::ops::{
    Change, ChunkId, ChunkRef, Id, Operation, PathState, Timestamp, VersionVector,
};
use syncreplica::replica::LockedReplica;
use syncreplica::store::state::{self, Member};
use syncreplica::sync::apply::{self, ApplyHooks, ApplyReport, ChunkSource};
use syncreplica::tree::scan::ScanHooks;
use syncreplica::Error;

// ---------------------------------------------------------------- helpers

/// 2026-11-21 10:15:00 UTC, in seconds.
const T0: u64 = 1_795_256_100;

struct Site {
    _dir: tempfile::TempDir,
    replica: LockedReplica,
}

impl Site {
    fn root(&self) -> PathBuf {
        self.replica.root.clone()
    }

    fn id(&self) -> Id {
        self.replica.identity.replica_id
    }

    /// Applies `ops` with chunks from `chunks`, no hooks.
    fn apply(
        &mut self,
        ops: &[Operation],
        chunks: &mut dyn ChunkSource,
    ) -> Result<ApplyReport, Error> {
        apply::apply_batch(&mut self.replica, ops, chunks, &mut ApplyHooks::default())
    }

    fn row(&self) -> HashMap<Id, u64> {
        self.replica
            .state()
            .epoch_table()
            .unwrap()
            .remove(&self.id())
            .unwrap_or_default()
    }
}

/// Writes `content` at `path` (parents made) with mtime `T0 + secs`.
fn put(root: &Path, path: &str, content: &[u8], secs: u64) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(&full, content).unwrap();
    set_mtime(&full, secs);
}

fn set_mtime(path: &Path, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(T0 + secs))
        .unwrap();
}

/// A replica `name` made with the library in its own temporary folder,
/// with `files` (path, content) as its initial content.
fn site(name: &str, files: &[(&str, &str)]) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    std::fs::create_dir(&root).unwrap();
    for (i, (path, content)) in files.iter().enumerate() {
        put(&root, path, content.as_bytes(), i as u64);
    }
    let report = syncreplica::replica::init(&root, "fam", name).unwrap();
    Site {
        _dir: dir,
        replica: report.replica.lock("test").unwrap(),
    }
}

/// Lets every site know every other as a member.
fn introduce(sites: &mut [&mut Site]) {
    let members: Vec<Member> = sites
        .iter()
        .map(|s| Member {
            replica: s.id(),
            name: s.replica.identity.replica_name.clone(),
            public_key: s.replica.signing_key().unwrap().verifying_key().to_bytes(),
        })
        .collect();
    for site in sites.iter_mut() {
        let me = site.id();
        site.replica
            .state_mut()
            .transaction(|tx| {
                for member in members.iter().filter(|m| m.replica != me) {
                    state::insert_member(tx, member, 0)?;
                }
                Ok(())
            })
            .unwrap();
    }
}

fn pair(alpha_files: &[(&str, &str)], beta_files: &[(&str, &str)]) -> (Site, Site) {
    let mut alpha = site("alpha", alpha_files);
    let mut beta = site("beta", beta_files);
    introduce(&mut [&mut alpha, &mut beta]);
    (alpha, beta)
}

/// Scans and records local changes; returns how many there were.
fn record(site: &mut Site) -> usize {
    let outcome = site.replica.scan(&mut ScanHooks::default()).unwrap();
    site.replica.record(&outcome).unwrap();
    outcome.changes.len()
}

fn unrecorded(site: &Site) -> Vec<String> {
    let outcome = site.replica.scan(&mut ScanHooks::default()).unwrap();
    outcome.changes.iter().map(|c| c.describe()).collect()
}

/// Operations `from` has and `to` lacks, in `from`'s log order.
fn missing_ops(from: &Site, to: &Site) -> Vec<Operation> {
    let have = to.row();
    let mut ops = Vec::new();
    for (origin, upto) in from.row() {
        let after = have.get(&origin).copied().unwrap_or(0);
        if upto > after {
            ops.extend(
                from.replica
                    .state()
                    .operations_between(&origin, after, upto)
                    .unwrap(),
            );
        }
    }
    ops.sort_by_key(|(position, _)| *position);
    ops.into_iter().map(|(_, op)| op).collect()
}

/// Chunks as a packet would carry them: everything the sender's files
/// hold, except chunks withheld because the receiver has them.
#[derive(Default)]
struct Store {
    chunks: HashMap<ChunkId, Vec<u8>>,
    withheld: HashSet<ChunkId>,
    served: u64,
}

impl Store {
    fn of(site: &Site) -> Store {
        let mut store = Store::default();
        store.add(site);
        store
    }

    fn add(&mut self, site: &Site) {
        for (path, entry) in site.replica.state().load_entries().unwrap() {
            if let PathState::File { chunks, .. } = entry.state {
                let Ok(bytes) = std::fs::read(site.root().join(OsStr::from_bytes(&path))) else {
                    continue;
                };
                let mut offset = 0;
                for chunk in chunks {
                    let end = offset + chunk.len as usize;
                    if let Some(slice) = bytes.get(offset..end) {
                        self.chunks
                            .entry(chunk.id)
                            .or_insert_with(|| slice.to_vec());
                    }
                    offset = end;
                }
            }
        }
    }

    fn withholding(mut self, site: &Site) -> Store {
        self.withheld = chunk_ids(site);
        self
    }
}

impl ChunkSource for Store {
    fn deliver(
        &mut self,
        wanted: &[ChunkId],
        sink: &mut dyn FnMut(&ChunkId, &[u8]) -> syncreplica::Result<()>,
    ) -> syncreplica::Result<()> {
        for id in wanted {
            if self.withheld.contains(id) {
                continue;
            }
            if let Some(bytes) = self.chunks.get(id) {
                self.served += 1;
                sink(id, bytes)?;
            }
        }
        Ok(())
    }
}

fn chunk_ids(site: &Site) -> HashSet<ChunkId> {
    let mut ids = HashSet::new();
    for entry in site.replica.state().load_entries().unwrap().values() {
        if let PathState::File { chunks, .. } = &entry.state {
            ids.extend(chunks.iter().map(|c| c.id));
        }
    }
    ids
}

/// Records `to`'s local changes, then applies what `from` has that `to`
/// lacks, carrying only chunks `to` does not have. `None` if nothing to do.
fn sync(from: &Site, to: &mut Site) -> Option<(ApplyReport, u64)> {
    record(to);
    let ops = missing_ops(from, to);
    if ops.is_empty() {
        return None;
    }
    let mut store = Store::of(from).withholding(to);
    let report = to.apply(&ops, &mut store).unwrap();
    Some((report, store.served))
}

/// Exchanges operations between all sites until none has anything new.
fn settle(sites: &mut [Site]) {
    settle_with(sites, &mut Store::default());
}

/// [`settle`] with chunks from `store` as well as from the sites' files.
fn settle_with(sites: &mut [Site], store: &mut Store) {
    for _ in 0..10 {
        let changed: usize = sites.iter_mut().map(record).sum();
        let mut moved = false;
        for from in 0..sites.len() {
            for to in 0..sites.len() {
                if from == to {
                    continue;
                }
                let (a, b) = two(sites, from, to);
                record(b);
                let ops = missing_ops(a, b);
                if ops.is_empty() {
                    continue;
                }
                moved = true;
                store.add(a);
                store.add(b);
                b.apply(&ops, store).unwrap();
            }
        }
        if !moved && changed == 0 {
            return;
        }
    }
    panic!("the sites did not settle");
}

fn two(sites: &mut [Site], from: usize, to: usize) -> (&Site, &mut Site) {
    assert_ne!(from, to);
    if from < to {
        let (left, right) = sites.split_at_mut(to);
        (&left[from], &mut right[0])
    } else {
        let (left, right) = sites.split_at_mut(from);
        (&right[0], &mut left[to])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        mtime_ns: i64,
        content: Vec<u8>,
    },
    Dir {
        mode: u32,
    },
    Link(Vec<u8>),
}

/// Every path of the tree (state folder excluded): content, mode and
/// mtime of files, modes of directories (empty ones included), link
/// targets.
fn listing(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut pending = vec![Vec::new()];
    while let Some(dir) = pending.pop() {
        let disk = root.join(OsStr::from_bytes(&dir));
        for item in std::fs::read_dir(&disk).unwrap() {
            let item = item.unwrap();
            let mut rel = dir.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(item.file_name().as_bytes());
            if rel == b".syncreplica" {
                continue;
            }
            let meta = std::fs::symlink_metadata(item.path()).unwrap();
            let node = if meta.file_type().is_symlink() {
                Node::Link(
                    std::fs::read_link(item.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if meta.is_dir() {
                pending.push(rel.clone());
                Node::Dir {
                    mode: meta.mode() & 0o7777,
                }
            } else {
                Node::File {
                    mode: meta.mode() & 0o7777,
                    mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                    content: std::fs::read(item.path()).unwrap(),
                }
            };
            out.insert(rel, node);
        }
    }
    out
}

#[track_caller]
fn assert_same_trees(a: &Site, b: &Site) {
    let (left, right) = (listing(&a.root()), listing(&b.root()));
    if left != right {
        let keys: BTreeSet<&Vec<u8>> = left.keys().chain(right.keys()).collect();
        let mut diff = String::new();
        for key in keys {
            if left.get(key) != right.get(key) {
                diff.push_str(&format!(
                    "{}:\n  {}: {:?}\n  {}: {:?}\n",
                    String::from_utf8_lossy(key),
                    a.replica.identity.replica_name,
                    left.get(key).map(short),
                    b.replica.identity.replica_name,
                    right.get(key).map(short),
                ));
            }
        }
        panic!("trees differ:\n{diff}");
    }
}

fn short_state(state: &PathState) -> String {
    match state {
        PathState::File {
            mode,
            mtime,
            chunks,
            ..
        } => format!(
            "file {mode:o} {}.{:09} {:?}",
            mtime.secs,
            mtime.nanos,
            chunks.first().map(|c| hex::encode(&c.id[..3]))
        ),
        other => format!("{other:?}"),
    }
}

fn short(node: &Node) -> String {
    match node {
        Node::File {
            mode,
            mtime_ns,
            content,
        } => format!(
            "file {mode:o} {mtime_ns} {:?}",
            String::from_utf8_lossy(&content[..content.len().min(40)])
        ),
        other => format!("{other:?}"),
    }
}

fn content(site: &Site, path: &str) -> Vec<u8> {
    std::fs::read(site.root().join(path)).unwrap()
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed.max(1));
    (0..len).map(|_| rng.next() as u8).collect()
}

fn today() -> String {
    chrono::Utc::now().format("%Y%m%d").to_string()
}

// ------------------------------------------------------------------ tests

#[test]
fn changes_of_every_kind_arrive_and_leave_nothing_to_record() {
    let (mut alpha, mut beta) = pair(
        &[
            ("a.txt", "alpha"),
            ("sub/b.txt", "beta"),
            ("script.sh", "#!/bin/sh\necho hi\n"),
        ],
        &[],
    );
    let root = alpha.root();
    std::fs::write(root.join("big.bin"), pseudo_random(400_000, 7)).unwrap();
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"caf\xe9-\xff.bin")), b"raw").unwrap();
    record(&mut alpha);

    let (report, _) = sync(&alpha, &mut beta).unwrap();
    assert_same_trees(&alpha, &beta);
    assert_eq!(report.added, 8, "{report:?}");
    assert!(report.conflicts.is_empty(), "{report:?}");
    assert!(report.bytes_written >= 400_000, "{report:?}");
    assert_eq!(unrecorded(&beta), Vec::<String>::new());
    assert_eq!(beta.row()[&alpha.id()], alpha.row()[&alpha.id()]);

    // A rename carries no chunk: the receiver rebuilds it from its copy.
    std::fs::create_dir(root.join("moved")).unwrap();
    std::fs::rename(root.join("big.bin"), root.join("moved/big.bin")).unwrap();
    record(&mut alpha);
    let (report, served) = sync(&alpha, &mut beta).unwrap();
    assert_eq!(served, 0, "no chunk should be carried for a rename");
    assert_eq!((report.added, report.deleted), (2, 1), "{report:?}");
    assert_same_trees(&alpha, &beta);
    assert_eq!(unrecorded(&beta), Vec::<String>::new());

    // Modify, delete, exec bit off, retarget, remove an empty directory.
    put(&root, "a.txt", b"alpha, edited", 100);
    std::fs::remove_file(root.join("sub/b.txt")).unwrap();
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::remove_file(root.join("link")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("link")).unwrap();
    std::fs::remove_dir(root.join("empty")).unwrap();
    put(&root, "new/deep/file.txt", b"fresh", 200);
    record(&mut alpha);
    let (report, served) = sync(&alpha, &mut beta).unwrap();
    assert_same_trees(&alpha, &beta);
    assert_eq!(unrecorded(&beta), Vec::<String>::new());
    assert_eq!(served, 2, "only the two new contents travel");
    assert_eq!(report.deleted, 2, "{report:?}");

    // Replaced and deleted content is kept aside (soft delete).
    let deleted = beta.root().join(".syncreplica/deleted").join(today());
    assert_eq!(std::fs::read(deleted.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(deleted.join("sub/b.txt")).unwrap(), b"beta");
    assert!(deleted.join("big.bin").is_file());
    assert!(!beta.root().join(".syncreplica/staging").exists());
}

#[test]
fn duplicates_are_skipped_and_gaps_refused() {
    let (mut alpha, mut beta) = pair(&[("one.txt", "1"), ("two.txt", "2")], &[]);
    sync(&alpha, &mut beta).unwrap();
    let me = alpha.id();
    let all: Vec<Operation> = alpha
        .replica
        .state()
        .operations_between(&me, 0, alpha.row()[&me])
        .unwrap()
        .into_iter()
        .map(|(_, op)| op)
        .collect();
    let before = listing(&beta.root());
    let report = beta.apply(&all, &mut apply::NoChunks).unwrap();
    assert_eq!(report.already_had, all.len() as u64);
    assert_eq!(listing(&beta.root()), before);

    let root = alpha.root();
    put(&root, "three.txt", b"3", 10);
    put(&root, "four.txt", b"4", 11);
    put(&root, "one.txt", b"one", 12);
    record(&mut alpha);
    let ops = missing_ops(&alpha, &beta);
    // Three names, and the root whose mtime adding two of them moved.
    assert_eq!(ops.len(), 4);
    let row = beta.row();
    let err = beta.apply(&ops[1..], &mut Store::of(&alpha)).unwrap_err();
    assert!(
        matches!(err, Error::Refused(Refusal::OperationLog { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("not contiguous"), "{err}");
    assert_eq!(listing(&beta.root()), before);
    assert_eq!(beta.row(), row);

    let batch = [ops[0].clone(), ops[0].clone(), all[0].clone()]
        .into_iter()
        .chain(ops[1..].iter().cloned())
        .collect::<Vec<_>>();
    let report = beta.apply(&batch, &mut Store::of(&alpha)).unwrap();
    assert_eq!(report.already_had, 2);
    assert_eq!((report.added, report.changed), (2, 2));
    assert_same_trees(&alpha, &beta);
}

fn file_state(content: &[u8]) -> (PathState, Store) {
    let id: ChunkId =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(content)).into();
    let mut store = Store::default();
    store.chunks.insert(id, content.to_vec());
    (
        PathState::File {
            mode: 0o644,
            mtime: Timestamp::default(),
            size: content.len() as u64,
            chunks: vec![ChunkRef {
                id,
                len: content.len() as u32,
            }],
            ext: Default::default(),
        },
        store,
    )
}

/// Operations of `origin` numbered from `first`, one per (path, state).
fn forged(origin: Id, first: u64, changes: &[(&[u8], PathState)]) -> Vec<Operation> {
    let changes = changes.iter().enumerate().map(|(i, (path, state))| {
        let mut version = VersionVector::default();
        version.set(origin, first + i as u64);
        Change::Path {
            path: path.to_vec(),
            version,
            state: state.clone(),
        }
    });
    numbered_operations(origin, first, Timestamp::default(), changes)
}

#[test]
fn a_concurrent_write_below_a_local_symlink_replaces_the_link_never_follows_it() {
    let (alpha, mut beta) = pair(&[], &[("keep.txt", "kept")]);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), b"untouched").unwrap();
    std::os::unix::fs::symlink(outside.path(), beta.root().join("out")).unwrap();
    record(&mut beta);
    let (file, mut store) = file_state(b"evil");
    let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
    let ops = forged(alpha.id(), first, &[(b"out/victim", file)]);
    let report = beta.apply(&ops, &mut store).unwrap();
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    let out = std::fs::symlink_metadata(beta.root().join("out")).unwrap();
    assert!(out.is_dir(), "the link gave way to a directory");
    assert_eq!(
        std::fs::read(beta.root().join("out/victim")).unwrap(),
        b"evil"
    );
    assert_eq!(
        std::fs::read(outside.path().join("victim")).unwrap(),
        b"untouched"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
}

/// A link the batch replaces by a directory before writing below it is
/// that directory: nothing is reached through a link.
#[test]
fn a_link_a_batch_turns_into_a_directory_holds_what_it_writes_below() {
    let (alpha, mut beta) = pair(&[], &[("keep.txt", "kept")]);
    let (file, mut store) = file_state(b"below");
    let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
    let ops = forged(
        alpha.id(),
        first,
        &[
            (b"d", PathState::directory(0o755)),
            (b"d/l", PathState::symlink(b"/".to_vec())),
            (b"d/l", PathState::directory(0o755)),
            (b"d/l/x", file),
        ],
    );
    beta.apply(&ops, &mut store).unwrap();
    assert!(std::fs::symlink_metadata(beta.root().join("d/l"))
        .unwrap()
        .is_dir());
    assert_eq!(std::fs::read(beta.root().join("d/l/x")).unwrap(), b"below");
}

#[test]
fn hostile_paths_are_refused_and_change_nothing() {
    let (alpha, mut beta) = pair(&[], &[("keep.txt", "kept"), ("inside/x.txt", "x")]);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), b"untouched").unwrap();
    std::os::unix::fs::symlink(outside.path(), beta.root().join("out")).unwrap();
    record(&mut beta);
    let (file, _) = file_state(b"evil");
    let link = |target: &str| PathState::symlink(target.as_bytes().to_vec());
    let outside_path = outside.path().to_str().unwrap().to_string();
    type Case<'a> = (&'a str, Vec<(&'a [u8], PathState)>);
    let cases: Vec<Case> = vec![
        ("parent", vec![(b"../x", file.clone())]),
        ("absolute", vec![(b"/etc/x", file.clone())]),
        (
            "state folder",
            vec![(b".syncreplica/state.db", file.clone())],
        ),
        ("dot", vec![(b"a/./b", file.clone())]),
        ("empty component", vec![(b"a//b", file.clone())]),
        ("empty", vec![(b"", file.clone())]),
        ("the root as a symlink", vec![(b"", link("/etc"))]),
        ("the root removed", vec![(b"", PathState::Deleted)]),
        ("nul", vec![(b"a\0b", file.clone())]),
        (
            "symlink made earlier in the batch",
            vec![
                (b"ok.txt", file.clone()),
                (b"l", link(&outside_path)),
                (b"l/victim", file.clone()),
            ],
        ),
        (
            "symlink made earlier in the batch, deep",
            vec![
                (b"d", PathState::directory(0o755)),
                (b"d/e", PathState::directory(0o755)),
                (b"d/e/l", link(&outside_path)),
                (b"d/e/l/x/victim", file.clone()),
            ],
        ),
        (
            "pre-existing local symlink",
            vec![(b"out/victim", file.clone())],
        ),
        (
            "deep through a local symlink",
            vec![(b"out/new/deeper", file.clone())],
        ),
    ];
    for (what, changes) in cases {
        let before = (listing(&beta.root()), beta.row(), listing(outside.path()));
        let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
        let mut ops = forged(alpha.id(), first, &changes);
        if what.contains("local symlink") {
            // A sender that has seen the link and still writes below it:
            // hostile. (One that never saw it is a concurrent change of
            // structure, which the directory wins; see the next test.)
            let entries = beta.replica.state().load_entries().unwrap();
            let seen = entries[b"out".as_slice()].version.clone();
            for op in &mut ops {
                if let Change::Path { version, .. } = &mut op.change {
                    *version = version.merged(&seen);
                }
            }
        }
        let (_, mut store) = file_state(b"evil");
        let err = beta.apply(&ops, &mut store).unwrap_err();
        assert!(
            matches!(err, Error::Refused(Refusal::HostilePath { .. })),
            "{what}: expected a refused path, got {err}"
        );
        let after = (listing(&beta.root()), beta.row(), listing(outside.path()));
        assert!(before == after, "{what}: the replica changed");
        assert!(!beta.root().join(".syncreplica/staging").exists(), "{what}");
    }
    assert_eq!(
        std::fs::read(outside.path().join("victim")).unwrap(),
        b"untouched"
    );
}

#[test]
fn excluded_paths_are_left_alone() {
    let (mut alpha, mut beta) = pair(
        &[("local.cfg", "theirs"), ("shared.txt", "shared")],
        &[("local.cfg", "mine")],
    );
    beta.replica.config_mut().exclude = vec!["local.cfg".into()];
    record(&mut beta);
    let (report, _) = sync(&alpha, &mut beta).unwrap();
    assert_eq!(report.skipped_excluded, 1, "{report:?}");
    assert_eq!(content(&beta, "local.cfg"), b"mine");
    assert_eq!(content(&beta, "shared.txt"), b"shared");
    assert_eq!(beta.row()[&alpha.id()], alpha.row()[&alpha.id()]);

    put(&alpha.root(), "local.cfg", b"theirs again", 50);
    std::fs::remove_file(alpha.root().join("local.cfg")).unwrap();
    record(&mut alpha);
    let (report, _) = sync(&alpha, &mut beta).unwrap();
    assert_eq!(report.skipped_excluded, 1, "{report:?}");
    assert_eq!(content(&beta, "local.cfg"), b"mine");
    assert_eq!(unrecorded(&beta), Vec::<String>::new());
}

#[test]
fn concurrent_edits_converge_on_one_winner_and_one_conflict_copy() {
    let (alpha, beta) = pair(&[("report.txt", "original")], &[]);
    let mut sites = vec![alpha, beta];
    settle(&mut sites);
    put(&sites[0].root(), "report.txt", b"alpha's version", 0);
    put(&sites[1].root(), "report.txt", b"beta's version", 60);
    record(&mut sites[0]);
    record(&mut sites[1]);
    // Both directions carry the concurrent edit.
    let to_beta = missing_ops(&sites[0], &sites[1]);
    let to_alpha = missing_ops(&sites[1], &sites[0]);
    let mut store = Store::of(&sites[0]);
    store.add(&sites[1]);
    let report_beta = apply::apply_batch(
        &mut sites[1].replica,
        &to_beta,
        &mut store,
        &mut ApplyHooks::default(),
    )
    .unwrap();
    let report_alpha = apply::apply_batch(
        &mut sites[0].replica,
        &to_alpha,
        &mut store,
        &mut ApplyHooks::default(),
    )
    .unwrap();
    let copy = "report.sync-conflict-20261121-101500-alpha.txt";
    for report in [&report_alpha, &report_beta] {
        assert_eq!(report.conflicts.len(), 1, "{report:?}");
        assert!(report.conflicts[0].contains(copy), "{report:?}");
    }
    settle(&mut sites);
    assert_same_trees(&sites[0], &sites[1]);
    for site in &sites {
        assert_eq!(content(site, "report.txt"), b"beta's version");
        assert_eq!(content(site, copy), b"alpha's version");
        assert_eq!(unrecorded(site), Vec::<String>::new());
    }
    // The loser's local content was also kept aside at alpha.
    let kept = sites[0]
        .root()
        .join(".syncreplica/deleted")
        .join(today())
        .join("report.txt");
    assert_eq!(std::fs::read(kept).unwrap(), b"alpha's version");
}

#[test]
fn a_modification_beats_a_concurrent_deletion() {
    let (alpha, beta) = pair(&[("doc.txt", "v1"), ("other.txt", "o")], &[]);
    let mut sites = vec![alpha, beta];
    settle(&mut sites);
    std::fs::remove_file(sites[0].root().join("doc.txt")).unwrap();
    put(&sites[1].root(), "doc.txt", b"v2 from beta", 30);
    settle(&mut sites);
    assert_same_trees(&sites[0], &sites[1]);
    assert_eq!(content(&sites[0], "doc.txt"), b"v2 from beta");
    let names: Vec<_> = listing(&sites[0].root()).into_keys().collect();
    assert_eq!(names, [b"doc.txt".to_vec(), b"other.txt".to_vec()]);
}

#[test]
fn a_directory_beats_a_concurrent_file_which_becomes_the_conflict_copy() {
    let (alpha, beta) = pair(&[("x", "a file")], &[]);
    let mut sites = vec![alpha, beta];
    settle(&mut sites);
    std::fs::remove_file(sites[0].root().join("x")).unwrap();
    put(&sites[0].root(), "x/inner.txt", b"inside", 5);
    put(&sites[1].root(), "x", b"beta's file", 90);
    settle(&mut sites);
    assert_same_trees(&sites[0], &sites[1]);
    let tree = listing(&sites[0].root());
    assert!(matches!(tree[&b"x".to_vec()], Node::Dir { .. }), "{tree:?}");
    assert_eq!(content(&sites[0], "x/inner.txt"), b"inside");
    assert_eq!(
        content(&sites[0], "x.sync-conflict-20261121-101630-beta"),
        b"beta's file"
    );
}

#[test]
fn a_deleted_directory_with_local_content_is_kept() {
    let (alpha, beta) = pair(&[("d/f.txt", "f")], &[]);
    let mut sites = vec![alpha, beta];
    settle(&mut sites);
    sites[1].replica.config_mut().exclude = vec!["*.tmp".into()];
    put(&sites[1].root(), "d/scratch.tmp", b"local only", 1);
    record(&mut sites[1]);
    std::fs::remove_dir_all(sites[0].root().join("d")).unwrap();
    record(&mut sites[0]);
    let (report, _) = {
        let (a, b) = two(&mut sites, 0, 1);
        sync(a, b).unwrap()
    };
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    assert!(!sites[1].root().join("d/f.txt").exists());
    assert_eq!(content(&sites[1], "d/scratch.tmp"), b"local only");
    settle(&mut sites);
    assert!(sites[0].root().join("d").is_dir());
}

#[test]
fn soft_deleted_files_are_purged_by_day() {
    let (_alpha, beta) = pair(&[], &[]);
    let deleted = beta.root().join(".syncreplica/deleted");
    put(&deleted, "20000101/old/a.txt", b"a", 0);
    put(&deleted, "20000101.1/b.txt", b"b", 0);
    put(&deleted, &format!("{}/c.txt", today()), b"c", 0);
    assert_eq!(apply::purge_soft_deleted(&beta.replica, 30).unwrap(), 2);
    assert!(!deleted.join("20000101").exists());
    assert!(deleted.join(today()).join("c.txt").exists());
}

/// Alpha and beta after a first sync, then alpha's batch with creates,
/// modifies, deletes, a rename, a mode change, a symlink and a concurrent
/// edit that conflicts with beta's. Deterministic, so every call builds the
/// same trees.
fn crash_fixture() -> (Site, Site, Vec<Operation>) {
    let (mut alpha, mut beta) = pair(
        &[
            ("keep.txt", "keep"),
            ("edit.txt", "before"),
            ("gone.txt", "gone"),
            ("move-from.txt", "moving content"),
            ("dir/old.txt", "old"),
            ("conflict.txt", "base"),
        ],
        &[],
    );
    sync(&alpha, &mut beta).unwrap();
    let root = alpha.root();
    put(&root, "edit.txt", b"after", 20);
    std::fs::remove_file(root.join("gone.txt")).unwrap();
    std::fs::create_dir(root.join("moved")).unwrap();
    std::fs::rename(root.join("move-from.txt"), root.join("moved/to.txt")).unwrap();
    put(&root, "new.txt", &pseudo_random(200_000, 3), 21);
    std::fs::create_dir(root.join("newdir")).unwrap();
    std::fs::remove_dir_all(root.join("dir")).unwrap();
    std::fs::set_permissions(
        root.join("keep.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("keep.txt", root.join("link")).unwrap();
    put(&root, "conflict.txt", b"alpha's edit", 22);
    record(&mut alpha);
    put(&beta.root(), "conflict.txt", b"beta's newer edit", 40);
    record(&mut beta);
    let ops = missing_ops(&alpha, &beta);
    (alpha, beta, ops)
}

#[test]
fn a_crash_at_any_step_leaves_old_or_new_and_rerunning_finishes() {
    let (alpha, mut beta, ops) = crash_fixture();
    let old = listing(&beta.root());
    let mut hooks = ApplyHooks::default();
    let clean_report =
        apply::apply_batch(&mut beta.replica, &ops, &mut Store::of(&alpha), &mut hooks).unwrap();
    assert_eq!(clean_report.conflicts.len(), 1, "{clean_report:?}");
    let steps = hooks.steps;
    let new = listing(&beta.root());
    let new_row = (beta.row()[&alpha.id()], beta.row()[&beta.id()]);
    assert!(steps > 15, "{steps} steps");

    for k in 1..=steps {
        let (alpha, mut beta, ops) = crash_fixture();
        assert_eq!(listing(&beta.root()), old);
        let err = apply::apply_batch(
            &mut beta.replica,
            &ops,
            &mut Store::of(&alpha),
            &mut ApplyHooks::crash_at(k),
        )
        .unwrap_err();
        assert!(apply::is_injected_crash(&err), "step {k}: {err}");
        let now = listing(&beta.root());
        let paths: BTreeSet<&Vec<u8>> = old.keys().chain(new.keys()).chain(now.keys()).collect();
        for path in paths {
            let current = now.get(path);
            assert!(
                current == old.get(path) || current == new.get(path),
                "step {k}: {} is neither old nor new: {:?}",
                String::from_utf8_lossy(path),
                current
            );
        }
        // Reopen, as a new process would, and finish.
        let root = beta.root();
        beta.replica.reopen("test").unwrap();
        if k % 3 == 0 {
            // A crash while recovering is recovered from too.
            let _ = apply::recover_with(&mut beta.replica, &mut ApplyHooks::crash_at(2));
            beta.replica.reopen("test").unwrap();
        }
        apply::recover(&mut beta.replica).unwrap();
        let report = beta.apply(&ops, &mut Store::of(&alpha)).unwrap();
        assert_eq!(listing(&beta.root()), new, "step {k}");
        let row = (beta.row()[&alpha.id()], beta.row()[&beta.id()]);
        assert_eq!(row, new_row, "step {k}: epochs differ");
        // Each operation logged once: the log holds exactly epochs 1..=row,
        // and the conflict copy was recorded once.
        for (origin, upto) in [(alpha.id(), row.0), (beta.id(), row.1)] {
            let logged = beta
                .replica
                .state()
                .operations_between(&origin, 0, upto)
                .unwrap();
            assert_eq!(logged.len() as u64, upto, "step {k}");
            let beyond = beta.replica.state().operation(&origin, upto + 1).unwrap();
            assert!(beyond.is_none(), "step {k}");
        }
        let committed = report.already_had == ops.len() as u64;
        assert!(committed || report == clean_report, "step {k}: {report:?}");
        assert_eq!(unrecorded(&beta), Vec::<String>::new(), "step {k}");
        assert!(!root.join(".syncreplica/staging").exists(), "step {k}");
    }
}

/// One random local edit in a small namespace, so replicas collide often.
fn random_edit(root: &Path, rng: &mut XorShift, stamp: u64) {
    let dirs = ["", "d0/", "d1/", "d1/e/"];
    let dir = dirs[rng.below(dirs.len())];
    let mut name = format!("{dir}f{}", rng.below(4));
    let dir_name = rng.below(8) == 0;
    if dir_name {
        // A file where other replicas may have a directory.
        name = ["d0", "d1/e"][rng.below(2)].to_string();
    }
    let path = root.join(&name);
    let existing: Vec<PathBuf> = walk_files(root);
    match rng.below(8) {
        0..=2 => {
            if path.is_dir() || path.parent().is_some_and(|p| p.exists() && !p.is_dir()) {
                return;
            }
            let len = if rng.below(5) == 0 { 70_000 } else { 20 };
            let bytes = pseudo_random(len, rng.next());
            if path.is_symlink() {
                std::fs::remove_file(&path).unwrap();
            }
            let _ = std::fs::create_dir_all(path.parent().unwrap());
            if std::fs::write(&path, bytes).is_ok() {
                set_mtime(&path, stamp + rng.below(1000) as u64);
            }
        }
        3 => {
            if let Some(victim) = existing.get(rng.below(existing.len().max(1))) {
                std::fs::remove_file(victim).unwrap();
            }
        }
        4 => {
            if let Some(from) = existing.get(rng.below(existing.len().max(1))) {
                if !path.exists() && !path.is_symlink() && path.parent().unwrap().is_dir() {
                    std::fs::rename(from, &path).unwrap();
                }
            }
        }
        5 => {
            let victim = root.join(dirs[1 + rng.below(dirs.len() - 1)]);
            if victim.is_dir() && !victim.is_symlink() {
                std::fs::remove_dir_all(victim).unwrap();
            }
        }
        6 => {
            // Never a symlink where a sibling may have a directory: an
            // incoming path below a local symlink is refused (rule 3), which
            // would stop replication until someone removes the link.
            if !dir_name && !path.exists() && !path.is_symlink() && path.parent().unwrap().is_dir()
            {
                std::os::unix::fs::symlink(format!("target{}", rng.below(3)), &path).unwrap();
            }
        }
        _ => {
            if let Some(file) = existing.get(rng.below(existing.len().max(1))) {
                let mode = [0o644, 0o755, 0o600][rng.below(3)];
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
}

fn walk_files(root: &Path) -> Vec<PathBuf> {
    listing(root)
        .into_iter()
        .filter(|(_, node)| matches!(node, Node::File { .. }))
        .map(|(rel, _)| root.join(OsStr::from_bytes(&rel)))
        .collect()
}

/// Ops `from` has beyond `to`, per origin in order, interleaved at random
/// across origins, with some operations `to` already has mixed in.
fn shuffled_batch(from: &Site, to: &Site, rng: &mut XorShift) -> Vec<Operation> {
    let have = to.row();
    let mut queues: Vec<Vec<Operation>> = Vec::new();
    let mut dups = Vec::new();
    for (origin, upto) in from.row() {
        let after = have.get(&origin).copied().unwrap_or(0).min(upto);
        let ops: Vec<Operation> = from
            .replica
            .state()
            .operations_between(&origin, 0, upto)
            .unwrap()
            .into_iter()
            .map(|(_, op)| op)
            .collect();
        dups.extend(ops[..after as usize].iter().cloned());
        queues.push(ops[after as usize..].to_vec());
    }
    let mut batch = Vec::new();
    loop {
        let live: Vec<usize> = (0..queues.len())
            .filter(|&i| !queues[i].is_empty())
            .collect();
        if live.is_empty() {
            break;
        }
        let q = live[rng.below(live.len())];
        batch.push(queues[q].remove(0));
        if !dups.is_empty() && rng.below(4) == 0 {
            batch.push(dups[rng.below(dups.len())].clone());
        }
    }
    batch
}

/// Prints every site's tree, entries and operations, for debugging.
fn dump(sites: &[Site]) {
    for site in sites {
        let name = &site.replica.identity.replica_name;
        eprintln!("== {name}: unrecorded {:?}", unrecorded(site));
        for (path, node) in listing(&site.root()) {
            eprintln!("  disk {} {}", String::from_utf8_lossy(&path), short(&node));
        }
        let mut entries: Vec<_> = site
            .replica
            .state()
            .load_entries()
            .unwrap()
            .into_iter()
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let names: HashMap<Id, String> = site
            .replica
            .members()
            .unwrap()
            .into_iter()
            .map(|m| (m.replica, m.name))
            .collect();
        let version = |v: &VersionVector| -> Vec<String> {
            v.0.iter()
                .map(|(k, e)| format!("{}:{e}", names[k]))
                .collect()
        };
        for (path, entry) in entries {
            eprintln!(
                "  entry {} {} {:?}",
                String::from_utf8_lossy(&path),
                short_state(&entry.state),
                version(&entry.version)
            );
        }
        let mut ops = Vec::new();
        for (origin, upto) in site.row() {
            ops.extend(
                site.replica
                    .state()
                    .operations_between(&origin, 0, upto)
                    .unwrap(),
            );
        }
        ops.sort_by_key(|(position, _)| *position);
        for (position, op) in ops {
            if let Change::Path {
                path,
                version: v,
                state,
            } = &op.change
            {
                eprintln!(
                    "  op#{position} {}:{} {} {:?} {}",
                    names[&op.origin],
                    op.epoch,
                    String::from_utf8_lossy(path),
                    version(v),
                    short_state(state)
                );
            }
        }
    }
}

#[test]
fn three_replicas_converge_under_random_edits_and_orders() {
    // APPLY_SEEDS=N runs more seeds, for a longer search.
    let seeds: u64 = std::env::var("APPLY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rounds: u64 = std::env::var("APPLY_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for seed in 1..=seeds {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ seed);
        let mut alpha = site(
            "alpha",
            &[("d0/f0", "zero"), ("d1/e/f1", "one"), ("f2", "two")],
        );
        let mut beta = site("beta", &[]);
        let mut gamma = site("gamma", &[]);
        introduce(&mut [&mut alpha, &mut beta, &mut gamma]);
        let mut sites = vec![alpha, beta, gamma];
        let mut store = Store::default();
        settle(&mut sites);
        for round in 0..rounds {
            for site in sites.iter_mut() {
                for _ in 0..1 + rng.below(3) {
                    random_edit(&site.root(), &mut rng, round * 10_000);
                }
                record(site);
                store.add(site);
            }
            for _ in 0..4 {
                let from = rng.below(3);
                let to = (from + 1 + rng.below(2)) % 3;
                let (a, b) = two(&mut sites, from, to);
                record(b);
                store.add(b);
                let batch = shuffled_batch(a, b, &mut rng);
                // Now and then the import is killed at a random step; the
                // next one recovers and applies the same batch again.
                let mut hooks = match rng.below(4) {
                    0 => ApplyHooks::crash_at(1 + rng.below(30)),
                    _ => ApplyHooks::default(),
                };
                let applied = apply::apply_batch(&mut b.replica, &batch, &mut store, &mut hooks);
                match applied {
                    Ok(_) => {}
                    Err(e) if apply::is_injected_crash(&e) => {
                        b.replica.reopen("test").unwrap();
                        apply::recover(&mut b.replica).unwrap();
                        b.apply(&batch, &mut store)
                            .unwrap_or_else(|e| panic!("seed {seed} round {round}, again: {e}"));
                    }
                    Err(e) => panic!("seed {seed} round {round}: {e}"),
                }
                store.add(b);
            }
        }
        settle_with(&mut sites, &mut store);
        if std::env::var("APPLY_DEBUG").is_ok() {
            dump(&sites);
        }
        assert_same_trees(&sites[0], &sites[1]);
        assert_same_trees(&sites[0], &sites[2]);
        for site in &sites {
            assert_eq!(unrecorded(site), Vec::<String>::new(), "seed {seed}");
        }
    }
}

#[test]
fn members_are_added_once_and_a_changed_key_is_refused() {
    let (alpha, mut beta) = pair(&[], &[]);
    let newcomer = Id([7; 16]);
    let add = |epoch: u64, replica: Id, name: &str, key: u8| Operation {
        origin: alpha.id(),
        epoch,
        recorded: Timestamp::default(),
        change: Change::AddMember {
            replica,
            name: name.into(),
            public_key: [key; 32],
        },
    };
    let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
    apply::apply_batch(
        &mut beta.replica,
        &[
            add(first, newcomer, "gamma", 1),
            add(first + 1, newcomer, "gamma", 1),
        ],
        &mut apply::NoChunks,
        &mut ApplyHooks::default(),
    )
    .unwrap();
    let gamma = beta.replica.member("gamma").unwrap();
    assert_eq!((gamma.replica, gamma.public_key), (newcomer, [1; 32]));

    for (what, op) in [
        ("another key", add(first + 2, newcomer, "gamma", 2)),
        ("a taken name", add(first + 2, Id([8; 16]), "gamma", 3)),
        ("a bad name", add(first + 2, Id([9; 16]), "../x", 3)),
    ] {
        let row = beta.row();
        let err = beta.apply(&[op], &mut apply::NoChunks).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused(Refusal::Membership { .. }) | Error::BadName { .. }
            ),
            "{what}: {err}"
        );
        assert_eq!(beta.row(), row, "{what}");
        assert_eq!(beta.replica.members().unwrap().len(), 3, "{what}");
    }
}

#[test]
fn a_chunk_found_nowhere_refuses_the_batch() {
    let (mut alpha, mut beta) = pair(&[("a.txt", "a")], &[]);
    sync(&alpha, &mut beta).unwrap();
    put(&alpha.root(), "b.txt", b"new content", 5);
    put(&alpha.root(), "a.txt", b"changed", 6);
    record(&mut alpha);
    let ops = missing_ops(&alpha, &beta);
    let before = (listing(&beta.root()), beta.row());
    let mut store = Store::of(&alpha);
    store
        .chunks
        .retain(|_, bytes| bytes.as_slice() != b"changed");
    let err = beta.apply(&ops, &mut store).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither in the packet nor in this replica"),
        "{err}"
    );
    assert!(err.to_string().contains("a.txt"), "{err}");
    assert!(before == (listing(&beta.root()), beta.row()));
    assert!(!beta.root().join(".syncreplica/staging").exists());

    // Bytes that do not match their id are refused too.
    let mut store = Store::of(&alpha);
    for bytes in store.chunks.values_mut() {
        if bytes.as_slice() == b"changed" {
            *bytes = b"CHANGED".to_vec();
        }
    }
    let err = beta.apply(&ops, &mut store).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(before == (listing(&beta.root()), beta.row()));
}

#[test]
fn an_action_the_tree_no_longer_allows_is_skipped_not_forced() {
    let (mut alpha, mut beta) = pair(&[("d/f.txt", "f")], &[]);
    sync(&alpha, &mut beta).unwrap();
    std::fs::remove_dir_all(alpha.root().join("d")).unwrap();
    record(&mut alpha);
    let ops = missing_ops(&alpha, &beta);
    // Crash right after the commit (found on a copy of the situation),
    // then someone adds to the directory before the journal runs.
    let mut commit_step = None;
    for k in 1..10 {
        let (mut a, mut b) = pair(&[("d/f.txt", "f")], &[]);
        sync(&a, &mut b).unwrap();
        std::fs::remove_dir_all(a.root().join("d")).unwrap();
        record(&mut a);
        let ops = missing_ops(&a, &b);
        let mut hooks = ApplyHooks::crash_at(k);
        let err =
            apply::apply_batch(&mut b.replica, &ops, &mut Store::of(&a), &mut hooks).unwrap_err();
        if err.to_string().contains("after commit") {
            commit_step = Some(k);
            break;
        }
    }
    let k = commit_step.expect("a step right after the commit");
    apply::apply_batch(
        &mut beta.replica,
        &ops,
        &mut Store::of(&alpha),
        &mut ApplyHooks::crash_at(k),
    )
    .unwrap_err();
    put(&beta.root(), "d/late.txt", b"written meanwhile", 9);
    assert!(apply::is_pending(&beta.replica).unwrap());
    assert!(apply::recover(&mut beta.replica).unwrap());
    assert!(!apply::is_pending(&beta.replica).unwrap());
    assert!(!beta.root().join("d/f.txt").exists());
    assert_eq!(content(&beta, "d/late.txt"), b"written meanwhile");
    assert!(!apply::recover(&mut beta.replica).unwrap());
    // The next scan records what is really there.
    record(&mut beta);
    assert_eq!(unrecorded(&beta), Vec::<String>::new());
}

/// Timing of a large batch: `cargo test ... apply::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_of_a_large_batch() {
    let (mut alpha, mut beta) = pair(&[], &[]);
    let root = alpha.root();
    for i in 0..20_000u64 {
        put(
            &root,
            &format!("d{}/e{}/f{i}.txt", i % 20, i % 7),
            format!("file {i}").as_bytes(),
            i,
        );
    }
    record(&mut alpha);
    let ops = missing_ops(&alpha, &beta);
    let mut store = Store::of(&alpha);
    let started = std::time::Instant::now();
    let report = beta.apply(&ops, &mut store).unwrap();
    eprintln!(
        "{} ops applied in {:?}: {report:?}",
        ops.len(),
        started.elapsed()
    );
    for i in 0..20_000u64 {
        std::fs::remove_file(root.join(format!("d{}/e{}/f{i}.txt", i % 20, i % 7))).unwrap();
    }
    record(&mut alpha);
    let ops = missing_ops(&alpha, &beta);
    let started = std::time::Instant::now();
    let report = beta.apply(&ops, &mut store).unwrap();
    eprintln!(
        "{} deletions applied in {:?}: {} deleted",
        ops.len(),
        started.elapsed(),
        report.deleted
    );
}

#[test]
fn a_path_soft_deleted_twice_a_day_keeps_both_versions() {
    let (mut alpha, mut beta) = pair(&[("a.txt", "first")], &[]);
    sync(&alpha, &mut beta).unwrap();
    for (content, secs) in [(&b"second"[..], 10), (b"third", 20)] {
        put(&alpha.root(), "a.txt", content, secs);
        record(&mut alpha);
        sync(&alpha, &mut beta).unwrap();
    }
    let day = beta.root().join(".syncreplica/deleted").join(today());
    assert_eq!(std::fs::read(day.join("a.txt")).unwrap(), b"first");
    assert_eq!(std::fs::read(day.join("a.txt.1")).unwrap(), b"second");
    assert_eq!(content(&beta, "a.txt"), b"third");
}

/// Everything under `dir`, for "nothing was written outside" checks.
fn everything_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Swaps the directory `root/d` for a symlink to `outside` (keeping the
/// real one as `d.real`), or back; errors are ignored, as a racing
/// attacker would.
fn swap_dir_for_link(root: &Path, outside: &Path) {
    let (d, real) = (root.join("d"), root.join("d.real"));
    match std::fs::symlink_metadata(&d) {
        Ok(meta) if meta.is_dir() => {
            if std::fs::rename(&d, &real).is_ok() {
                let _ = std::os::unix::fs::symlink(outside, &d);
            }
        }
        Ok(_) => {
            let _ = std::fs::remove_file(&d);
            let _ = std::fs::rename(&real, &d);
        }
        Err(_) => {
            let _ = std::fs::rename(&real, &d);
        }
    }
}

/// Operations of `origin` numbered from `first`, one per (path, state),
/// each having seen what `site` records at its path: they fast-forward it
/// (no conflict to decide), so a chmod or touch always becomes an action.
fn forged_over(
    site: &Site,
    origin: Id,
    first: u64,
    changes: &[(&[u8], PathState)],
) -> Vec<Operation> {
    let recorded = site.replica.state().load_entries().unwrap();
    let changes = changes.iter().enumerate().map(|(i, (path, state))| {
        let mut version = recorded
            .get(*path)
            .map(|entry| entry.version.clone())
            .unwrap_or_default();
        version.set(origin, first + i as u64);
        Change::Path {
            path: path.to_vec(),
            version,
            state: state.clone(),
        }
    });
    numbered_operations(origin, first, Timestamp::default(), changes)
}

/// The empty path is the replica root (packet format 2.10): its mode and
/// mtime are applied to the root itself, and a name placed in it does not
/// leave the root's mtime moved.
#[test]
fn the_roots_own_state_is_applied_to_the_root() {
    let (alpha, mut beta) = pair(&[], &[("keep.txt", "kept")]);
    record(&mut beta);
    let (file, mut store) = file_state(b"new");
    let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
    let mtime = Timestamp {
        secs: 1_000_000_000,
        nanos: 7,
    };
    let root = PathState::Directory {
        mode: 0o750,
        mtime: Some(mtime),
        ext: Default::default(),
    };
    let ops = forged_over(&beta, alpha.id(), first, &[(b"new.txt", file), (b"", root)]);
    beta.apply(&ops, &mut store).unwrap();
    let meta = std::fs::metadata(beta.root()).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o750);
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_000_000_000, 7));
    assert_eq!(std::fs::read(beta.root().join("new.txt")).unwrap(), b"new");
    // The next name placed there puts the root's recorded mtime back.
    let (other, mut store) = file_state(b"other");
    let ops = forged_over(&beta, alpha.id(), first + 2, &[(b"other.txt", other)]);
    beta.apply(&ops, &mut store).unwrap();
    let meta = std::fs::metadata(beta.root()).unwrap();
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_000_000_000, 7));
}

/// `state` (a file) with another mode and mtime: same content.
fn touched(state: &PathState, mode: u32, secs: u64) -> PathState {
    let PathState::File { size, chunks, .. } = state else {
        panic!("not a file: {state:?}");
    };
    PathState::File {
        mode,
        mtime: Timestamp::new((T0 + secs) as i64, 0).unwrap(),
        size: *size,
        chunks: chunks.clone(),
        ext: Default::default(),
    }
}

/// Mode, mtime (s, ns) and content (for files) of a path.
type Meta = (u32, i64, i64, Option<Vec<u8>>);

/// Mode, mtime and content (for files) of `path`, not following a symlink.
fn meta_of(path: &Path) -> Meta {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let content = meta.is_file().then(|| std::fs::read(path).unwrap());
    (meta.mode(), meta.mtime(), meta.mtime_nsec(), content)
}

/// A folder outside every replica with one file, `kept.txt` (the name a
/// replica's `d/kept.txt` has once `d` leads there), at a fixed mtime; and
/// what must stay as it is: mode, mtime and content of both.
fn outside_with_a_file() -> (tempfile::TempDir, impl Fn() -> Vec<Meta>) {
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("kept.txt");
    std::fs::write(&file, b"outside").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    set_mtime(&file, 1);
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = outside.path().to_path_buf();
    let state = move || vec![meta_of(&dir), meta_of(&dir.join("kept.txt"))];
    (outside, state)
}

#[test]
fn a_directory_swapped_for_a_symlink_between_check_and_use_is_never_followed() {
    let (alpha, mut beta) = pair(&[], &[("d/kept.txt", "mine")]);
    let (outside, outside_state) = outside_with_a_file();
    let before = outside_state();
    let (file, mut store) = file_state(b"from the packet");
    let (mine, _) = file_state(b"mine");
    let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
    // A chmod of `d` and a touch of `d/kept.txt` (SetDirMode and
    // SetFileMeta), besides new content below `d`.
    let ops = forged_over(
        &beta,
        alpha.id(),
        first,
        &[
            (b"d", PathState::directory(0o700)),
            (b"d/kept.txt", touched(&mine, 0o600, 5000)),
            (b"d/new.txt", file.clone()),
            (b"d/sub", PathState::directory(0o755)),
            (b"d/sub/deeper.txt", file.clone()),
        ],
    );
    // The plan sees a real directory `d`; right before the first action
    // below it is resolved, `d` becomes a symlink to a folder outside.
    let root = beta.root();
    let target = outside.path().to_path_buf();
    let swapped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = swapped.clone();
    let mut hooks = ApplyHooks {
        before_resolve: Some(std::sync::Arc::new(move |path: &[u8]| {
            if path.starts_with(b"d/") && !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                swap_dir_for_link(&root, &target);
            }
        })),
        ..ApplyHooks::default()
    };
    let report = apply::apply_batch(&mut beta.replica, &ops, &mut store, &mut hooks).unwrap();
    assert!(
        swapped.load(std::sync::atomic::Ordering::SeqCst),
        "the hook ran"
    );
    assert_eq!(
        everything_under(outside.path()),
        vec![outside.path().join("kept.txt")]
    );
    assert_eq!(outside_state(), before, "mode or mtime changed outside");
    // The actions below the swapped directory were skipped and said so.
    assert!(
        report.conflicts.iter().any(|n| n.contains("symlink")),
        "{:?}",
        report.conflicts
    );
    assert_eq!(
        std::fs::read(beta.root().join("d.real/kept.txt")).unwrap(),
        b"mine"
    );
}

#[test]
fn imports_racing_a_directory_symlink_swap_never_write_outside() {
    let (alpha, mut beta) = pair(&[], &[("d/kept.txt", "mine")]);
    let (outside, outside_state) = outside_with_a_file();
    let before = outside_state();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (root, outside, stop) = (beta.root(), outside.path().to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                swap_dir_for_link(&root, &outside);
                swaps += 1;
            }
            swaps
        })
    };
    let started = std::time::Instant::now();
    let mut rounds = 0;
    let (mut kept, _) = file_state(b"mine");
    while rounds < 300 && started.elapsed() < Duration::from_secs(20) {
        let (file, mut store) = file_state(format!("round {rounds}").as_bytes());
        // `d/kept.txt` gets new content one round, a chmod and touch
        // (SetFileMeta) the next; `d` is chmodded (SetDirMode) every round.
        if rounds % 2 == 0 {
            kept = touched(&kept, [0o600, 0o640][rounds / 2 % 2], 10 + rounds as u64);
        } else {
            kept = file.clone();
        }
        let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
        let ops = forged_over(
            &beta,
            alpha.id(),
            first,
            &[
                (b"d", PathState::directory([0o700, 0o750][rounds % 2])),
                (format!("d/f{rounds}").as_bytes(), file.clone()),
                (b"d/kept.txt", kept.clone()),
                (format!("d/n{rounds}/g").as_bytes(), file),
            ],
        );
        // Refusals and skipped actions are fine; a write outside is not,
        // nor a chmod or a touch.
        let _ = apply::apply_batch(
            &mut beta.replica,
            &ops,
            &mut store,
            &mut ApplyHooks::default(),
        );
        assert_eq!(
            everything_under(outside.path()),
            vec![outside.path().join("kept.txt")],
            "round {rounds}"
        );
        assert_eq!(outside_state(), before, "round {rounds}");
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let swaps = swapper.join().unwrap();
    assert!(rounds >= 20 && swaps > 0, "{rounds} rounds, {swaps} swaps");
}

/// Runs `apply` on another thread; fails the test if it has not returned
/// within a minute (a blocking open of a FIFO never returns).
fn within_a_minute<T: Send + 'static>(apply: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(apply());
    });
    receive
        .recv_timeout(Duration::from_secs(60))
        .expect("the import hung (opened a FIFO?)")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_directory_or_file_swapped_for_a_fifo_never_hangs_an_import() {
    let (alpha, mut beta) = pair(&[], &[("d/kept.txt", "mine")]);
    // 1. `d`, where the import placed a file, becomes a FIFO before the
    //    import fsyncs the directories it changed.
    let (file, mut store) = file_state(b"from the packet");
    let (other, other_store) = file_state(b"another");
    store.chunks.extend(other_store.chunks);
    let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
    let ops = forged_over(
        &beta,
        alpha.id(),
        first,
        &[(b"d/new.txt", file.clone()), (b"z.txt", other.clone())],
    );
    let root = beta.root();
    let mut hooks = ApplyHooks {
        before_resolve: Some(std::sync::Arc::new(move |path: &[u8]| {
            if path == b"z.txt" && !root.join("d.real").exists() {
                std::fs::rename(root.join("d"), root.join("d.real")).unwrap();
                mkfifo(&root.join("d"));
            }
        })),
        ..ApplyHooks::default()
    };
    let (beta, result) = within_a_minute(move || {
        let result = apply::apply_batch(&mut beta.replica, &ops, &mut store, &mut hooks);
        (beta, result)
    });
    result.unwrap();
    let mut beta = beta;
    assert_eq!(
        std::fs::read(beta.root().join("d.real/new.txt")).unwrap(),
        b"from the packet"
    );
    assert_eq!(content(&beta, "z.txt"), b"another");
    // 2. `z.txt`, placed by that import (so not scanned since: the next
    //    import reads it to verify it), becomes a FIFO.
    std::fs::remove_file(beta.root().join("z.txt")).unwrap();
    mkfifo(&beta.root().join("z.txt"));
    let (third, mut store) = file_state(b"third");
    let first = beta.row().get(&alpha.id()).copied().unwrap_or(0) + 1;
    let ops = forged_over(&beta, alpha.id(), first, &[(b"z.txt", third)]);
    let (beta, result) = within_a_minute(move || {
        let result = apply::apply_batch(
            &mut beta.replica,
            &ops,
            &mut store,
            &mut ApplyHooks::default(),
        );
        (beta, result)
    });
    let report = result.unwrap();
    assert_eq!(content(&beta, "z.txt"), b"third", "{report:?}");
}

// ------------------------------------------- saves racing an import

/// Applies what `from` has that `to` lacks, with `edit` run on `to`'s tree
/// right before the engine resolves `at` for a disk action (once): a user's
/// save at the worst moment.
fn sync_racing(
    from: &Site,
    to: &mut Site,
    at: &str,
    edit: impl Fn(&Path) + Send + Sync + 'static,
) -> ApplyReport {
    record(to);
    let ops = missing_ops(from, to);
    assert!(!ops.is_empty());
    let root = to.root();
    let at = at.as_bytes().to_vec();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let mut hooks = ApplyHooks {
        before_resolve: Some(std::sync::Arc::new(move |path: &[u8]| {
            if path == at.as_slice() && !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                edit(&root);
            }
        })),
        ..ApplyHooks::default()
    };
    let mut store = Store::of(from);
    let report = apply::apply_batch(&mut to.replica, &ops, &mut store, &mut hooks).unwrap();
    assert!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        "the edit ran"
    );
    report
}

/// Every file in `dir` (not below) whose name starts with `stem`, with its
/// content.
fn files_starting(dir: &Path, stem: &str) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(stem))
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    found.sort();
    found
}

/// An editor's save: a new file renamed over the old one.
fn save_by_rename(path: &Path, content: &[u8]) {
    let temp = path.with_extension("swp-tmp");
    std::fs::write(&temp, content).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn a_save_racing_a_replacement_is_kept_as_a_conflict_copy() {
    for by_rename in [true, false] {
        let (mut alpha, mut beta) = pair(&[("doc.txt", "v1")], &[]);
        sync(&alpha, &mut beta).unwrap();
        put(&alpha.root(), "doc.txt", b"alpha's v2", 20);
        record(&mut alpha);
        let report = sync_racing(&alpha, &mut beta, "doc.txt", move |root| {
            let path = root.join("doc.txt");
            if by_rename {
                save_by_rename(&path, b"beta's save");
            } else {
                std::fs::write(&path, b"beta's save, in place").unwrap();
            }
        });
        let found = files_starting(&beta.root(), "doc");
        let mine: &[u8] = if by_rename {
            b"beta's save"
        } else {
            b"beta's save, in place"
        };
        assert_eq!(content(&beta, "doc.txt"), b"alpha's v2", "{found:?}");
        assert!(
            found
                .iter()
                .any(|(name, c)| name.contains("sync-conflict") && c == mine),
            "by rename: {by_rename}: {found:?}"
        );
        assert!(
            report
                .conflicts
                .iter()
                .any(|c| c.contains("changed here during the import")),
            "{report:?}"
        );
        // The next scan records the kept save, so the next export sends it.
        assert!(record(&mut beta) >= 1);
    }
}

#[test]
fn a_file_created_where_an_import_creates_one_is_kept() {
    let (mut alpha, mut beta) = pair(&[("a.txt", "a")], &[]);
    sync(&alpha, &mut beta).unwrap();
    put(&alpha.root(), "new.txt", b"alpha's new file", 30);
    record(&mut alpha);
    let report = sync_racing(&alpha, &mut beta, "new.txt", |root| {
        std::fs::write(root.join("new.txt"), b"beta made this too").unwrap();
    });
    let found = files_starting(&beta.root(), "new");
    assert_eq!(content(&beta, "new.txt"), b"alpha's new file");
    assert!(
        found
            .iter()
            .any(|(name, c)| name.contains("sync-conflict") && c == b"beta made this too"),
        "{found:?}"
    );
    assert!(!report.conflicts.is_empty());
}

#[test]
fn an_edit_racing_a_deletion_stays() {
    let (mut alpha, mut beta) = pair(&[("gone.txt", "old")], &[]);
    sync(&alpha, &mut beta).unwrap();
    std::fs::remove_file(alpha.root().join("gone.txt")).unwrap();
    record(&mut alpha);
    let report = sync_racing(&alpha, &mut beta, "gone.txt", |root| {
        save_by_rename(&root.join("gone.txt"), b"edited meanwhile");
    });
    assert_eq!(content(&beta, "gone.txt"), b"edited meanwhile");
    assert!(
        report
            .conflicts
            .iter()
            .any(|c| c.contains("local version is kept")),
        "{report:?}"
    );
}

#[test]
fn an_edit_racing_a_chmod_or_touch_wins() {
    let (mut alpha, mut beta) = pair(&[("m.txt", "same")], &[]);
    sync(&alpha, &mut beta).unwrap();
    let path = alpha.root().join("m.txt");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    set_mtime(&path, 40);
    record(&mut alpha);
    let report = sync_racing(&alpha, &mut beta, "m.txt", |root| {
        std::fs::write(root.join("m.txt"), b"edited meanwhile").unwrap();
    });
    assert_eq!(content(&beta, "m.txt"), b"edited meanwhile");
    assert!(
        report.conflicts.iter().any(|c| c.contains("changed here")),
        "{report:?}"
    );
}

#[test]
fn an_edit_racing_a_symlink_replacing_the_file_is_kept() {
    let (mut alpha, mut beta) = pair(&[("l", "file first")], &[]);
    sync(&alpha, &mut beta).unwrap();
    std::fs::remove_file(alpha.root().join("l")).unwrap();
    std::os::unix::fs::symlink("target", alpha.root().join("l")).unwrap();
    record(&mut alpha);
    sync_racing(&alpha, &mut beta, "l", |root| {
        std::fs::write(root.join("l"), b"edited meanwhile").unwrap();
    });
    assert_eq!(
        std::fs::read_link(beta.root().join("l")).unwrap(),
        PathBuf::from("target")
    );
    let found = files_starting(&beta.root(), "l");
    assert!(
        found.iter().any(|(_, c)| c == b"edited meanwhile"),
        "{found:?}"
    );
}

#[test]
fn a_file_made_where_an_import_makes_a_directory_is_kept() {
    let (mut alpha, mut beta) = pair(&[("a.txt", "a")], &[]);
    sync(&alpha, &mut beta).unwrap();
    put(&alpha.root(), "dir/inner.txt", b"inner", 50);
    record(&mut alpha);
    let report = sync_racing(&alpha, &mut beta, "dir", |root| {
        std::fs::write(root.join("dir"), b"a file made meanwhile").unwrap();
    });
    assert_eq!(content(&beta, "dir"), b"a file made meanwhile");
    assert!(!report.conflicts.is_empty(), "{report:?}");
}

#[test]
fn a_file_added_to_a_directory_an_import_replaces_by_a_file_is_kept() {
    let (mut alpha, mut beta) = pair(&[("d/x.txt", "x")], &[]);
    sync(&alpha, &mut beta).unwrap();
    std::fs::remove_dir_all(alpha.root().join("d")).unwrap();
    put(&alpha.root(), "d", b"now a file", 60);
    record(&mut alpha);
    sync_racing(&alpha, &mut beta, "d/x.txt", |root| {
        std::fs::write(root.join("d/added.txt"), b"added meanwhile").unwrap();
    });
    assert_eq!(content(&beta, "d/added.txt"), b"added meanwhile");
}

#[test]
fn a_file_an_import_replaces_by_a_directory_keeps_a_racing_edit() {
    let (mut alpha, mut beta) = pair(&[("f", "a file")], &[]);
    sync(&alpha, &mut beta).unwrap();
    std::fs::remove_file(alpha.root().join("f")).unwrap();
    put(&alpha.root(), "f/inside.txt", b"inside", 70);
    record(&mut alpha);
    sync_racing(&alpha, &mut beta, "f", |root| {
        save_by_rename(&root.join("f"), b"edited meanwhile");
    });
    let kept = files_starting(&beta.root(), "f");
    assert!(
        kept.iter().any(|(_, c)| c == b"edited meanwhile"),
        "{kept:?}"
    );
}

#[test]
fn the_kept_version_of_a_hard_linked_file_is_a_real_copy() {
    let (mut alpha, mut beta) = pair(&[("a.txt", "version 1")], &[]);
    sync(&alpha, &mut beta).unwrap();
    // At beta, a second name for the same file, outside the replica's view.
    beta.replica.config_mut().exclude = vec!["other-name".into()];
    std::fs::hard_link(beta.root().join("a.txt"), beta.root().join("other-name")).unwrap();
    put(&alpha.root(), "a.txt", b"version 2", 80);
    record(&mut alpha);
    sync(&alpha, &mut beta).unwrap();
    assert_eq!(content(&beta, "a.txt"), b"version 2");
    // Editing the other name must not change the kept version 1.
    std::fs::write(
        beta.root().join("other-name"),
        b"edited through the other name",
    )
    .unwrap();
    let deleted = beta.root().join(".syncreplica/deleted").join(today());
    let kept = files_starting(&deleted, "a");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].1, b"version 1");
}

#[test]
fn a_directory_made_where_a_placement_retries_ends_it_instead_of_spinning() {
    let (mut alpha, mut beta) = pair(&[("a.txt", "a")], &[]);
    sync(&alpha, &mut beta).unwrap();
    put(&alpha.root(), "new.txt", b"alpha's new file", 30);
    record(&mut alpha);
    record(&mut beta);
    let ops = missing_ops(&alpha, &beta);
    let root = beta.root();
    let mut hooks = ApplyHooks {
        before_resolve: Some(std::sync::Arc::new(move |path: &[u8]| {
            if path == b"new.txt" && !root.join("new.txt").exists() {
                // A file appears where the packet creates one...
                std::fs::write(root.join("new.txt"), b"user's file").unwrap();
            } else if path.starts_with(b"new.sync-conflict") {
                // ...and, while it is being kept, a directory takes its place.
                let _ = std::fs::create_dir(root.join("new.txt"));
            }
        })),
        ..ApplyHooks::default()
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut store = Store::of(&alpha);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let result = apply::apply_batch(&mut beta.replica, &ops, &mut store, &mut hooks);
            done_tx.send(result.map(|r| r.conflicts)).unwrap();
        });
        let notes = done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the import ends")
            .unwrap();
        assert!(notes.iter().any(|n| n.contains("new.txt")), "{notes:?}");
    });
    assert!(beta.root().join("new.txt").is_dir());
    let kept = files_starting(&beta.root(), "new");
    assert!(kept.iter().any(|(_, c)| c == b"user's file"), "{kept:?}");
}

/// Applies `ops` from `from` at `to` and crashes it right after the
/// commit: the journal is pending, nothing of it ran.
fn crash_right_after_commit(from: &Site, to: &mut Site, ops: &[Operation]) {
    for k in 1..10 {
        let mut hooks = ApplyHooks::crash_at(k);
        let err =
            apply::apply_batch(&mut to.replica, ops, &mut Store::of(from), &mut hooks).unwrap_err();
        if err.to_string().contains("after commit") {
            return;
        }
        to.replica.reopen("test").unwrap();
        apply::recover(&mut to.replica).unwrap();
    }
    panic!("no step right after the commit");
}

#[test]
fn a_version_moved_aside_before_a_crash_is_kept_when_the_import_is_finished() {
    let (mut alpha, mut beta) = pair(&[("doc.txt", "v1")], &[]);
    sync(&alpha, &mut beta).unwrap();
    put(&alpha.root(), "doc.txt", b"alpha's v2", 20);
    record(&mut alpha);
    record(&mut beta);
    let ops = missing_ops(&alpha, &beta);
    // Crash right after the commit: the journal is pending.
    crash_right_after_commit(&alpha, &mut beta, &ops);
    // As if the placement had moved a user's save aside, then the process
    // died; meanwhile a directory took the path.
    let staging = beta.root().join(".syncreplica/staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("displaced-0"), b"USER SAVE during import").unwrap();
    std::fs::remove_file(beta.root().join("doc.txt")).unwrap();
    std::fs::create_dir(beta.root().join("doc.txt")).unwrap();
    beta.replica.reopen("test").unwrap();
    assert!(apply::recover(&mut beta.replica).unwrap());
    let root = beta.root();
    let mut everywhere: Vec<Vec<u8>> = test_support::files_under(&root)
        .into_iter()
        .filter_map(|p| std::fs::read(root.join(p)).ok())
        .collect();
    everywhere.sort();
    assert!(
        everywhere.iter().any(|c| c == b"USER SAVE during import"),
        "the moved-aside version is gone"
    );
}

#[test]
fn a_symlink_made_during_an_import_is_kept() {
    let (mut alpha, mut beta) = pair(&[("a", "a")], &[]);
    std::os::unix::fs::symlink("a", alpha.root().join("l")).unwrap();
    record(&mut alpha);
    sync(&alpha, &mut beta).unwrap();
    std::fs::remove_file(alpha.root().join("l")).unwrap();
    put(&alpha.root(), "l", b"now a file", 90);
    record(&mut alpha);
    sync_racing(&alpha, &mut beta, "l", |root| {
        std::fs::remove_file(root.join("l")).unwrap();
        std::os::unix::fs::symlink("mine", root.join("l")).unwrap();
    });
    assert_eq!(content(&beta, "l"), b"now a file");
    let kept: Vec<PathBuf> = std::fs::read_dir(beta.root())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("l.sync-conflict")
        })
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    assert_eq!(kept, [PathBuf::from("mine")]);
}

#[test]
fn the_command_that_finishes_an_interrupted_import_says_what_it_did() {
    let (mut alpha, mut beta) = pair(&[("doc.txt", "v1")], &[]);
    sync(&alpha, &mut beta).unwrap();
    put(&alpha.root(), "doc.txt", b"alpha's v2", 20);
    record(&mut alpha);
    record(&mut beta);
    let ops = missing_ops(&alpha, &beta);
    crash_right_after_commit(&alpha, &mut beta, &ops);
    // Someone saved the file before the import was finished.
    save_by_rename(&beta.root().join("doc.txt"), b"saved meanwhile");
    let Site { _dir, replica } = beta;
    let root = replica.root.clone();
    drop(replica);
    let out = crate::helpers::run(&root, "syncreplica", ["-record"]).ok();
    assert!(
        out.stderr
            .contains("finished an import that was interrupted")
            && out.stderr.contains("doc.txt"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(root.join("doc.txt")).unwrap(), b"alpha's v2");
    let kept = files_starting(&root, "doc");
    assert!(
        kept.iter().any(|(_, c)| c == b"saved meanwhile"),
        "{kept:?}"
    );
}
