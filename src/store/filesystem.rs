//! What a probe found out about the replica's filesystem, cached in
//! `.syncreplica/filesystem.toml` so it is done once:
//!
//! ```toml
//! device = 2049          # st_dev of the replica root when probed
//! fs_type = 61267        # statfs f_type (the filesystem's magic number)
//! folds_case = false
//! folds_unicode = false
//! ```
//!
//! It is only a cache: a file that is missing, unreadable, damaged, or
//! written on another filesystem (the replica was copied or moved: the
//! device or the type differs) is ignored and the probe runs again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Result;
use crate::store::layout::FILESYSTEM_FILE;

/// The probe's answer and the filesystem it was given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemFacts {
    pub device: u64,
    pub fs_type: u64,
    pub folds_case: bool,
    pub folds_unicode: bool,
}

/// The cache file in the state folder `state_dir`.
pub fn facts_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILESYSTEM_FILE)
}

/// `(device, fs_type)` of the filesystem holding `root`.
pub fn identify(root: &Path) -> std::io::Result<(u64, u64)> {
    let device = std::fs::metadata(root)?.dev();
    let fs_type = rustix::fs::statfs(root)
        .map_err(std::io::Error::from)?
        .f_type as u64;
    Ok((device, fs_type))
}

/// The cached facts, if the cache exists, reads well and was written for
/// the filesystem `(device, fs_type)`; `None` otherwise.
pub fn load(state_dir: &Path, (device, fs_type): (u64, u64)) -> Option<FilesystemFacts> {
    let text = std::fs::read_to_string(facts_path(state_dir)).ok()?;
    let facts: FilesystemFacts = toml::from_str(&text).ok()?;
    (facts.device == device && facts.fs_type == fs_type).then_some(facts)
}

/// Writes the cache atomically.
pub fn save(state_dir: &Path, facts: &FilesystemFacts) -> Result<()> {
    let text = format!(
        "# How this replica's filesystem compares names, found by a probe.\n\
         # A cache: syncreplica probes again when it is missing or when the\n\
         # replica is on another filesystem.\n\
         device = {}\nfs_type = {}\nfolds_case = {}\nfolds_unicode = {}\n",
        facts.device, facts.fs_type, facts.folds_case, facts.folds_unicode
    );
    crate::sys::fsutil::write_atomic(&facts_path(state_dir), text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_facts_load_for_the_same_filesystem_only() {
        let dir = tempfile::tempdir().unwrap();
        let here = identify(dir.path()).unwrap();
        let facts = FilesystemFacts {
            device: here.0,
            fs_type: here.1,
            folds_case: true,
            folds_unicode: false,
        };
        assert_eq!(load(dir.path(), here), None);
        save(dir.path(), &facts).unwrap();
        assert_eq!(load(dir.path(), here), Some(facts));
        assert_eq!(load(dir.path(), (here.0 + 1, here.1)), None);
        std::fs::write(facts_path(dir.path()), "folds_case = maybe\n").unwrap();
        assert_eq!(load(dir.path(), here), None);
    }
}
