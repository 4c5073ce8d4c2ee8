//! Paths that stay local to one replica.
//!
//! Patterns come from `.syncreplicaignore` at the replica root and from
//! `exclude` in `.syncreplica/config.toml`, both in gitignore syntax (the
//! `ignore` crate does the matching). The state folder is always excluded.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, IoContext, Result};
use crate::tree::relpath;

pub const IGNORE_FILE: &str = ".syncreplicaignore";

pub struct Excludes {
    root: PathBuf,
    matcher: Gitignore,
    rules: String,
}

impl Excludes {
    pub fn load(root: &Path, config_patterns: &[String], config_path: &Path) -> Result<Excludes> {
        let mut builder = GitignoreBuilder::new(root);
        let ignore_file = root.join(IGNORE_FILE);
        let mut rules = String::new();
        for pattern in config_patterns {
            rules.push_str(&format!("config: {pattern}\n"));
        }
        if ignore_file.exists() {
            let text = std::fs::read(&ignore_file).at(&ignore_file)?;
            rules.push_str(&format!(
                "{IGNORE_FILE}:\n{}",
                String::from_utf8_lossy(&text)
            ));
            if let Some(err) = builder.add(&ignore_file) {
                return Err(Error::ExcludePattern {
                    path: ignore_file,
                    message: err.to_string(),
                });
            }
        }
        for pattern in config_patterns {
            builder
                .add_line(None, pattern)
                .map_err(|err| Error::ExcludePattern {
                    path: config_path.to_path_buf(),
                    message: err.to_string(),
                })?;
        }
        let matcher = builder.build().map_err(|err| Error::ExcludePattern {
            path: config_path.to_path_buf(),
            message: err.to_string(),
        })?;
        Ok(Excludes {
            root: root.to_path_buf(),
            matcher,
            rules,
        })
    }

    /// The rules in force, as text: the configured patterns and the
    /// ignore file's content. Two loads with the same text exclude the
    /// same paths; the state keeps the text of the last record, to see
    /// when the rules change.
    pub fn rules(&self) -> &str {
        &self.rules
    }

    /// Whether a replica-relative path is excluded by a pattern matching it
    /// directly. A walk tests each directory before descending, so it need
    /// not test parents again.
    pub fn excludes_relative_direct(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.matcher.is_empty() {
            return false;
        }
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(rel));
        self.matcher.matched(path, is_dir).is_ignore()
    }

    /// Whether a replica-relative path, or any of its parents, is excluded.
    pub fn excludes_relative(&self, rel: &[u8], is_dir: bool) -> bool {
        if rel.split(|&b| b == b'/').next() == Some(crate::store::layout::STATE_DIR.as_bytes()) {
            return true;
        }
        let disk = relpath::to_disk_path(&self.root, rel);
        self.matcher
            .matched_path_or_any_parents(&disk, is_dir)
            .is_ignore()
    }
}
