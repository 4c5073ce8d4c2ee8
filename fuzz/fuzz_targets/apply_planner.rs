//! The apply engine against random operation streams (issue: hostile
//! packets). Each input is read as a batch of a sibling's operations on a
//! small tree: paths from a small alphabet that includes `..`, the state
//! folder, a local symlink out of the tree and names the engine uses;
//! states of every kind; versions that are newer, older or concurrent.
//! Whatever the engine does with it, it must not panic, must not write
//! outside the replica, must leave the replica unchanged when it refuses
//! the batch, and the replica must stay usable: finishing any pending
//! batch, scanning and recording all work afterwards.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use syncreplica::ops::{
    Change, ChunkId, ChunkRef, Id, Operation, PathState, Timestamp, VersionVector,
};
use syncreplica::store::state::{self, Member};
use syncreplica::sync::apply::{self, ApplyHooks};
use syncreplica::tree::scan::ScanHooks;

const COMPONENTS: &[&[u8]] = &[
    b"a",
    b"b",
    b"c.txt",
    b"out",
    b"..",
    b".",
    b"",
    b".syncreplica",
    b".SyncReplica",
    b".syncreplica-new-file",
    b"x\xff",
    b"d",
];
const TARGETS: &[&[u8]] = &[b"a", b"../..", b"/tmp", b"out/victim", b"c.txt"];
const CONTENTS: &[&[u8]] = &[b"one", b"two two", b"", b"three three three"];

/// Reads the input a byte at a time; zeros when it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }
    fn pick<'b, T>(&mut self, from: &'b [T]) -> &'b T {
        &from[self.next() as usize % from.len()]
    }
}

fn chunk_of(content: &[u8]) -> ChunkRef {
    ChunkRef {
        id: Sha256::digest(content).into(),
        len: content.len() as u32,
    }
}

/// Every file, link and directory under `dir`, with content: what
/// "unchanged" compares.
fn listing(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.as_os_str().as_encoded_bytes().to_vec();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if !path.ends_with(".syncreplica") {
                    pending.push(path);
                }
                out.push((name, b"dir".to_vec()));
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                out.push((name, target.as_os_str().as_encoded_bytes().to_vec()));
            } else {
                out.push((name, std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"untouched").unwrap();
    let root = dir.path().join("beta");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("c.txt"), b"local").unwrap();
    std::fs::write(root.join("d/a"), b"two two").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
    let report = syncreplica::replica::init(&root, "fam", "beta").unwrap();
    let mut beta = report.replica.lock("fuzz").unwrap();
    let alpha = Id([0xa1; 16]);
    beta.state_mut()
        .transaction(|tx| {
            state::insert_member(
                tx,
                &Member {
                    replica: alpha,
                    name: "alpha".into(),
                    public_key: [7; 32],
                },
                0,
            )?;
            Ok(())
        })
        .unwrap();
    let me = beta.identity.replica_id;
    let own = beta.state().epoch(&me, &me).unwrap();

    let count = 1 + input.next() as usize % 12;
    let mut ops = Vec::new();
    for index in 0..count {
        let depth = 1 + input.next() as usize % 3;
        let mut path = Vec::new();
        for level in 0..depth {
            if level > 0 {
                path.push(b'/');
            }
            let component: &[u8] = input.pick::<&[u8]>(COMPONENTS);
            path.extend_from_slice(component);
        }
        let state = match input.next() % 5 {
            0 | 1 => {
                let content = *input.pick(CONTENTS);
                let chunks = if content.is_empty() {
                    vec![]
                } else {
                    vec![chunk_of(content)]
                };
                PathState::File {
                    mode: u32::from(input.next()) << 4 | 0o4,
                    mtime: Timestamp::new(i64::from(input.next() as i8) << 30, 0).unwrap(),
                    size: content.len() as u64,
                    chunks,
                    ext: Default::default(),
                }
            }
            2 => PathState::directory(u32::from(input.next()) << 3 | 0o700),
            3 => {
                let target: &[u8] = input.pick::<&[u8]>(TARGETS);
                PathState::symlink(target.to_vec())
            }
            _ => PathState::Deleted,
        };
        // Mostly the next epoch; sometimes a gap or a repeat.
        let epoch = match input.next() % 16 {
            0 => index as u64 + 3,
            1 => index as u64,
            _ => index as u64 + 1,
        };
        let mut version = VersionVector(BTreeMap::from([(alpha, epoch)]));
        if input.next() % 3 == 0 {
            version.set(me, own.min(u64::from(input.next() % 4)));
        }
        let change = if input.next() % 7 == 0 {
            Change::Resolve {
                path,
                version,
                state,
                author: me,
            }
        } else {
            Change::Path {
                path,
                version,
                state,
            }
        };
        ops.push(Operation {
            origin: alpha,
            epoch,
            recorded: Timestamp::default(),
            change,
        });
    }

    let before = listing(dir.path());
    let mut source = |id: &ChunkId| {
        Ok(CONTENTS
            .iter()
            .find(|content| Sha256::digest(content).as_slice() == id)
            .map(|content| content.to_vec()))
    };
    let result = apply::apply_batch(&mut beta, &ops, &mut source, &mut ApplyHooks::default());
    assert_eq!(
        std::fs::read(outside.join("victim")).unwrap(),
        b"untouched",
        "wrote outside the replica"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    if result.is_err() {
        assert_eq!(listing(dir.path()), before, "a refused batch changed the tree");
    }
    // Still usable.
    apply::recover(&mut beta).unwrap();
    let outcome = beta.scan(&mut ScanHooks::default()).unwrap();
    beta.record(&outcome).unwrap();
});
