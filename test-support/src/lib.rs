//! Helpers shared by the tests of the workspace's crates: directory
//! walks, fixed keys, seeded random data and numbered operations.
//!
//! It depends on `packet-format` only, never on `syncreplica`, so that
//! `shipping`'s and `packet-format`'s own tests can use it too; helpers
//! that need a replica live in `tests/integration/helpers.rs`.

use std::path::Path;

use packet_format::ops::{Change, Id, Operation, Timestamp};

/// Every file under `dir` but lock files (`.lock*`), relative, sorted.
/// A missing directory has none.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".lock")
            {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The ed25519 public key of `secret`.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(secret)
        .verifying_key()
        .to_bytes()
}

/// A small seeded generator (xorshift64), so random tests repeat exactly.
/// The seed must not be 0.
pub struct XorShift(pub u64);

impl XorShift {
    // An endless generator of u64s, not meant to be an Iterator.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Operations of `origin`, one per change, numbered from epoch `first`,
/// all recorded at `recorded`: what a sibling (honest or not) sends.
pub fn numbered_operations(
    origin: Id,
    first: u64,
    recorded: Timestamp,
    changes: impl IntoIterator<Item = Change>,
) -> Vec<Operation> {
    changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| Operation {
            origin,
            epoch: first + i as u64,
            recorded,
            change,
        })
        .collect()
}

/// The names of the entries directly in `dir`, sorted.
pub fn entry_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
