//! Paths that stay local to one replica.
//!
//! # Local patterns
//!
//! Patterns come from `.syncreplicaignore` at the replica root and from
//! `exclude` in `.syncreplica/config.toml`, both in gitignore syntax (the
//! `ignore` crate does the matching), anchored at the replica root. They
//! are this replica's alone, like Syncthing's `.stignore`: the root
//! `.syncreplicaignore` (and anything below a directory of that name at
//! the root) is itself always excluded, so it is never recorded, never
//! exported, and an operation naming it, from a sibling of an older
//! version or a hostile one, is logged and relayed but never applied
//! ([`is_local_only`]). Without that, a packet writing `*` there made the
//! receiver forget every entry, and one writing `{a,b` made its every
//! later `-record` fail. A `.syncreplicaignore` below the root is an
//! ordinary file: it is replicated and means nothing to the engine.
//!
//! A bad pattern in a local source is an error naming the file and the
//! line (the ignore file) or the entry (config.toml): every command that
//! scans refuses to run until the administrator fixes it.
//!
//! # Shared patterns
//!
//! Patterns meant for the whole family are shared as an ordinary,
//! replicated file that each replica's `.syncreplicaignore` includes by
//! a line `#include PATH` (PATH relative to the replica root; to older
//! versions and to gitignore the line is a comment). An included file's
//! patterns are read as if they stood in `.syncreplicaignore` (anchored
//! at the replica root; `#include` lines in them are comments: includes
//! do not nest), with two differences, because any member can change
//! that file:
//!
//! - they never exclude a path this replica has recorded (and, for a
//!   directory, one that holds recorded paths): like `.gitignore` for
//!   tracked files in git, they keep new paths out, they never make the
//!   replica forget one. To stop replicating a recorded path, a local
//!   pattern is needed: the local administrator's say;
//! - an included file that cannot be used (missing, not a regular file,
//!   reached through a symlink, larger than [`MAX_INCLUDED_BYTES`], not
//!   UTF-8, or holding a pattern that does not parse) is skipped whole,
//!   with a warning ([`Excludes::skipped_includes`]); it never fails a
//!   command.
//!
//! A negation (`!pattern`) in an included file undoes only that file's
//! patterns, never a local one.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, IoContext, Result};
use crate::tree::relpath;

pub const IGNORE_FILE: &str = ".syncreplicaignore";

/// The line prefix in `.syncreplicaignore` that includes a shared file.
pub const INCLUDE_DIRECTIVE: &str = "#include";

/// Largest included file read; a larger one is skipped (with a warning).
pub const MAX_INCLUDED_BYTES: u64 = 1 << 20;

/// Whether `rel` (replica-relative) is the root `.syncreplicaignore` or
/// lies below a directory of that name at the root: local to every
/// replica, never recorded, exported or applied.
pub fn is_local_only(rel: &[u8]) -> bool {
    rel.split(|&b| b == b'/').next() == Some(IGNORE_FILE.as_bytes())
}

/// An included file whose patterns are not in force, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedInclude {
    /// The included path, relative to the replica root.
    pub path: Vec<u8>,
    /// The line of `.syncreplicaignore` that includes it.
    pub line: usize,
    pub why: String,
}

pub struct Excludes {
    root: PathBuf,
    /// The configured patterns and the root ignore file's: in force for
    /// every path.
    local: Gitignore,
    /// The included files' patterns: in force for paths not recorded.
    shared: Gitignore,
    rules: String,
    /// The pattern lines in force, for the tree digest: local ones, then
    /// [`SHARED_MARK`] and the included files' (comments and blank lines
    /// left out).
    patterns: Vec<String>,
    skipped: Vec<SkippedInclude>,
    /// config.toml's patterns as in force (after [`strip_root_prefix`]).
    config_patterns: Vec<String>,
    root_prefixed: Vec<(String, String)>,
    /// Patterns that excluded a path in a walk (for the warning about
    /// patterns that match nothing).
    matched: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Config patterns with the replica root's absolute path in front
/// (`/etc/hosts` at a replica rooted at `/etc`) rewritten relative to the
/// root (`/hosts`), unless the root holds a name like the prefix's first
/// component (then the pattern may mean it). Returns the patterns in
/// force and the rewritten ones as (written, taken as).
pub fn strip_root_prefix(root: &Path, patterns: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    let absolute = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let Some(prefix) = absolute.to_str().filter(|p| *p != "/") else {
        return (patterns.to_vec(), Vec::new());
    };
    let first = prefix
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let shadowed = !first.is_empty() && root.join(first).symlink_metadata().is_ok();
    let mut rewritten = Vec::new();
    let in_force = patterns
        .iter()
        .map(|pattern| {
            let (negation, body) = match pattern.strip_prefix('!') {
                Some(body) => ("!", body),
                None => ("", pattern.as_str()),
            };
            match body.strip_prefix(prefix) {
                Some(rest) if rest.starts_with('/') && rest.len() > 1 && !shadowed => {
                    let taken = format!("{negation}{rest}");
                    rewritten.push((pattern.clone(), taken.clone()));
                    taken
                }
                _ => pattern.clone(),
            }
        })
        .collect();
    (in_force, rewritten)
}

/// Separates the local patterns from the included files' in
/// [`Excludes::patterns`] (a comment to gitignore, so never a pattern).
pub const SHARED_MARK: &str = "#shared";

/// Whether a pattern line means anything (not blank, not a comment).
fn is_pattern(line: &str) -> bool {
    !line.trim().is_empty() && !line.starts_with('#')
}

impl Excludes {
    /// Reads the patterns in force at `root`: `config_patterns` (from the
    /// file `config_path`, named in errors), the root ignore file and the
    /// files it includes.
    ///
    /// Errors: [`Error::ExcludePattern`] for a pattern of a local source
    /// that does not parse, a line of the ignore file that is not UTF-8,
    /// or an `#include` line whose path is not a plain replica-relative
    /// path; [`Error::Io`] when the ignore file exists but cannot be read.
    /// Included files never make it fail (see the module documentation).
    pub fn load(root: &Path, config_patterns: &[String], config_path: &Path) -> Result<Excludes> {
        let mut local = GitignoreBuilder::new(root);
        let mut shared = GitignoreBuilder::new(root);
        let ignore_file = root.join(IGNORE_FILE);
        let mut rules = String::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut shared_patterns: Vec<String> = Vec::new();
        let (config_patterns, root_prefixed) = strip_root_prefix(root, config_patterns);
        let config_patterns = config_patterns.as_slice();
        for pattern in config_patterns {
            rules.push_str(&format!("config: {pattern}\n"));
        }
        let mut includes: Vec<(usize, Vec<u8>)> = Vec::new();
        if ignore_file.exists() {
            let text = std::fs::read(&ignore_file).at(&ignore_file)?;
            rules.push_str(&format!(
                "{IGNORE_FILE}:\n{}",
                String::from_utf8_lossy(&text)
            ));
            for (number, line) in lines(&text) {
                let bad = |message: String| Error::ExcludePattern {
                    path: ignore_file.clone(),
                    place: format!("line {number}"),
                    message,
                };
                let line =
                    std::str::from_utf8(line).map_err(|_| bad("not UTF-8 text".to_string()))?;
                if let Some(path) = include_of(line) {
                    includes.push((number, checked_include(path).map_err(bad)?));
                    continue;
                }
                local
                    .add_line(Some(ignore_file.clone()), line)
                    .map_err(|err| bad(glob_message(&err)))?;
                if is_pattern(line) {
                    patterns.push(line.to_string());
                }
            }
        }
        patterns.extend(config_patterns.iter().filter(|p| is_pattern(p)).cloned());
        for (index, pattern) in config_patterns.iter().enumerate() {
            local
                .add_line(None, pattern)
                .map_err(|err| Error::ExcludePattern {
                    path: config_path.to_path_buf(),
                    place: format!("exclude entry {} ({pattern:?})", index + 1),
                    message: glob_message(&err),
                })?;
        }
        let local = local.build().map_err(|err| Error::ExcludePattern {
            path: ignore_file.clone(),
            place: "patterns".into(),
            message: glob_message(&err),
        })?;

        let mut skipped = Vec::new();
        let confined = if includes.is_empty() {
            None
        } else {
            Some(crate::tree::confined::ConfinedRoot::open(root)?)
        };
        for (line, path) in includes {
            let confined = confined.as_ref().expect("opened when there are includes");
            let shown = relpath::display(&path);
            match read_included(confined, &path).and_then(|text| {
                // Checked on a builder of its own first: a file is taken
                // whole or not at all.
                let mut trial = GitignoreBuilder::new(root);
                add_included(&mut trial, &path, &text)?;
                add_included(&mut shared, &path, &text)?;
                Ok(text)
            }) {
                Ok(text) => {
                    shared_patterns.extend(
                        lines(text.as_bytes())
                            .filter_map(|(_, line)| std::str::from_utf8(line).ok())
                            .filter(|line| is_pattern(line))
                            .map(str::to_string),
                    );
                    rules.push_str(&format!("include {shown}:\n{text}"))
                }
                Err(why) => {
                    rules.push_str(&format!("include {shown}: skipped\n"));
                    skipped.push(SkippedInclude { path, line, why });
                }
            }
        }
        let shared = shared.build().unwrap_or_else(|_| Gitignore::empty());
        if !shared_patterns.is_empty() {
            patterns.push(SHARED_MARK.to_string());
            patterns.extend(shared_patterns);
        }
        Ok(Excludes {
            root: root.to_path_buf(),
            local,
            shared,
            rules,
            patterns,
            skipped,
            config_patterns: config_patterns
                .iter()
                .filter(|p| is_pattern(p) && !p.starts_with('!'))
                .cloned()
                .collect(),
            root_prefixed,
            matched: Default::default(),
        })
    }

    /// Configured patterns that named the replica root's own absolute
    /// path, as (written, taken as): patterns are relative to the root,
    /// so `/etc/hosts` in a replica rooted at `/etc` is taken as `/hosts`.
    pub fn root_prefixed(&self) -> &[(String, String)] {
        &self.root_prefixed
    }

    /// The configured pattern (config.toml `exclude`, as in force) that
    /// excludes a replica-relative path or one of its parents, if one does.
    pub fn config_pattern_excluding(&self, rel: &[u8], is_dir: bool) -> Option<String> {
        let disk = relpath::to_disk_path(&self.root, rel);
        match self.local.matched_path_or_any_parents(&disk, is_dir) {
            ignore::Match::Ignore(glob) => self
                .config_patterns
                .iter()
                .find(|p| p.as_str() == glob.original())
                .cloned(),
            _ => None,
        }
    }

    /// The patterns that excluded a path so far (a Mutex: the walk runs on
    /// a thread of its own, `tree::scan`).
    fn matched(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.matched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts `patterns` as having matched (the family's paths they left
    /// out at an import: see [`crate::store::state::State::family_excluded`]),
    /// so that a tree without those paths does not get them warned about
    /// as matching nothing.
    pub fn count_as_matched<'a>(&self, patterns: impl IntoIterator<Item = &'a String>) {
        let mut matched = self.matched();
        for pattern in patterns {
            matched.insert(pattern.clone());
        }
    }

    /// Configured patterns (config.toml `exclude`) that excluded nothing
    /// during the walks made with these rules so far.
    pub fn unmatched_config_patterns(&self) -> Vec<String> {
        let matched = self.matched();
        self.config_patterns
            .iter()
            .filter(|p| !matched.contains(*p))
            .cloned()
            .collect()
    }

    /// The rules in force, as text: the configured patterns, the ignore
    /// file's content and each included file's. Two loads with the same
    /// text exclude the same paths; the state keeps the text of the last
    /// record, to see when the rules change.
    pub fn rules(&self) -> &str {
        &self.rules
    }

    /// The pattern lines in force (see [`SHARED_MARK`]): what a packet's
    /// tree digest carries so a sibling leaves out the same paths.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Included files whose patterns are not in force, and why.
    pub fn skipped_includes(&self) -> &[SkippedInclude] {
        &self.skipped
    }

    /// Whether any included (shared) pattern is in force: only then does
    /// it matter whether a path is recorded.
    pub fn has_shared(&self) -> bool {
        !self.shared.is_empty()
    }

    /// Whether a replica-relative path is excluded by a pattern matching it
    /// directly, for a walk that tests each directory before descending
    /// and skips the excluded ones (so local patterns need not test
    /// parents again). `recorded`: the path, or for a directory anything
    /// below it, has a live recorded entry (shared patterns never exclude
    /// those, so a walk descends into such a directory and tests what it
    /// holds against the shared patterns with their parents).
    pub fn excludes_relative_direct(&self, rel: &[u8], is_dir: bool, recorded: bool) -> bool {
        if rel == IGNORE_FILE.as_bytes() {
            return true;
        }
        let path = Path::new(std::ffi::OsStr::from_bytes(rel));
        if !self.local.is_empty() {
            if let ignore::Match::Ignore(glob) = self.local.matched(path, is_dir) {
                let mut matched = self.matched();
                if !matched.contains(glob.original()) {
                    matched.insert(glob.original().to_string());
                }
                return true;
            }
        }
        !recorded && self.shared_excludes(rel, is_dir)
    }

    /// Whether a replica-relative path, or any of its parents, is excluded.
    /// `recorded`: the path has a live recorded entry (shared patterns
    /// never exclude it).
    pub fn excludes_relative(&self, rel: &[u8], is_dir: bool, recorded: bool) -> bool {
        if rel.split(|&b| b == b'/').next() == Some(crate::store::layout::STATE_DIR.as_bytes())
            || is_local_only(rel)
        {
            return true;
        }
        let disk = relpath::to_disk_path(&self.root, rel);
        self.local
            .matched_path_or_any_parents(&disk, is_dir)
            .is_ignore()
            || (!recorded && self.shared_excludes(rel, is_dir))
    }

    fn shared_excludes(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.shared.is_empty() {
            return false;
        }
        let disk = relpath::to_disk_path(&self.root, rel);
        self.shared
            .matched_path_or_any_parents(&disk, is_dir)
            .is_ignore()
    }
}

/// The lines of a file, numbered from 1, without their line ends (`\n`
/// or `\r\n`) and, on the first, without a UTF-8 byte-order mark.
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !text.is_empty())
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
}

/// The path of an `#include PATH` line, if it is one.
fn include_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(INCLUDE_DIRECTIVE)?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some(rest.trim())
}

/// An included path as replica-relative bytes (a leading `/` anchors it
/// at the root, as it would anyway): a plain path inside the replica,
/// not the ignore file itself.
fn checked_include(path: &str) -> std::result::Result<Vec<u8>, String> {
    let rel = path.trim_start_matches('/').as_bytes();
    if rel.is_empty() {
        return Err(format!(
            "{INCLUDE_DIRECTIVE} needs a path, relative to the replica root"
        ));
    }
    if let Some(why) = relpath::lexical_problem(rel) {
        return Err(format!("{INCLUDE_DIRECTIVE} {path:?}: {why}"));
    }
    if is_local_only(rel) {
        return Err(format!(
            "{INCLUDE_DIRECTIVE} {path:?}: {IGNORE_FILE} cannot include itself"
        ));
    }
    Ok(rel.to_vec())
}

/// The text of an included file, read beneath the root without following
/// any symlink, or why it cannot be used.
fn read_included(
    confined: &crate::tree::confined::ConfinedRoot,
    rel: &[u8],
) -> std::result::Result<String, String> {
    let file = confined
        .open_file(rel)
        .map_err(|err| match err.raw_os_error() {
            Some(code) if code == rustix::io::Errno::NOENT.raw_os_error() => {
                "not found".to_string()
            }
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                "it is, or lies below, a symlink (never followed)".to_string()
            }
            Some(code) if code == rustix::io::Errno::XDEV.raw_os_error() => {
                "it lies below a symlink (never followed)".to_string()
            }
            _ => format!("cannot be read: {err}"),
        })?;
    let mut bytes = Vec::new();
    file.take(MAX_INCLUDED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot be read: {err}"))?;
    if bytes.len() as u64 > MAX_INCLUDED_BYTES {
        return Err(format!(
            "larger than {} KiB, the most an included file may hold",
            MAX_INCLUDED_BYTES / 1024
        ));
    }
    for (number, line) in lines(&bytes) {
        if std::str::from_utf8(line).is_err() {
            return Err(format!("line {number}: not UTF-8 text"));
        }
    }
    let text = String::from_utf8(bytes).expect("every line checked");
    Ok(text)
}

/// Adds an included file's patterns (`#include` lines in it are comments).
fn add_included(
    builder: &mut GitignoreBuilder,
    rel: &[u8],
    text: &str,
) -> std::result::Result<(), String> {
    let from = PathBuf::from(std::ffi::OsStr::from_bytes(rel));
    for (number, line) in lines(text.as_bytes()) {
        let line = std::str::from_utf8(line).expect("checked when read");
        builder
            .add_line(Some(from.clone()), line)
            .map_err(|err| format!("line {number}: {}", glob_message(&err)))?;
    }
    Ok(())
}

/// The `ignore` crate's message for a pattern, without the file and line
/// it may prefix (the caller names them).
fn glob_message(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithLineNumber { err, .. }
        | ignore::Error::WithDepth { err, .. } => glob_message(err),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)], config: &[&str]) -> Result<Excludes> {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (*p, t.as_bytes())).collect();
        load_bytes(&files, config)
    }

    fn load_bytes(files: &[(&str, &[u8])], config: &[&str]) -> Result<Excludes> {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config: Vec<String> = config.iter().map(|s| s.to_string()).collect();
        let root = dir.path().to_path_buf();
        let loaded = Excludes::load(&root, &config, &root.join("config.toml"));
        // The matchers keep the root only as a prefix to strip.
        drop(dir);
        loaded
    }

    #[test]
    fn the_root_ignore_file_is_always_local() {
        let ex = load(&[], &[]).unwrap();
        assert!(ex.excludes_relative(b".syncreplicaignore", false, true));
        assert!(ex.excludes_relative(b".syncreplicaignore/x", false, false));
        assert!(ex.excludes_relative_direct(b".syncreplicaignore", false, true));
        assert!(!ex.excludes_relative(b"sub/.syncreplicaignore", false, false));
        assert!(is_local_only(b".syncreplicaignore"));
        assert!(!is_local_only(b".syncreplicaignore2"));
    }

    #[test]
    fn a_bad_local_pattern_names_the_file_and_line() {
        let err = load(&[(".syncreplicaignore", "ok.tmp\n\n{a,b\n")], &[])
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains(".syncreplicaignore: line 3: bad exclude pattern")
                && text.contains("{a,b"),
            "{text}"
        );
        let err = load(&[], &["fine", "[z-a"]).err().unwrap().to_string();
        assert!(
            err.contains("config.toml: exclude entry 2 (\"[z-a\"): bad exclude pattern"),
            "{err}"
        );
        let err = load(&[(".syncreplicaignore", "#include ../etc/x\n")], &[])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("line 1:") && err.contains("../etc/x"), "{err}");
    }

    #[test]
    fn shared_patterns_exclude_only_what_is_not_recorded() {
        let ex = load(
            &[
                (".syncreplicaignore", "local.tmp\n#include shared/ignore\n"),
                ("shared/ignore", "*.log\nbuild/\n#include other\n"),
            ],
            &[],
        )
        .unwrap();
        assert!(
            ex.skipped_includes().is_empty(),
            "{:?}",
            ex.skipped_includes()
        );
        assert!(ex.has_shared());
        assert!(ex.excludes_relative(b"x.log", false, false));
        assert!(!ex.excludes_relative(b"x.log", false, true));
        assert!(ex.excludes_relative(b"build/new", false, false));
        assert!(ex.excludes_relative_direct(b"build/new", false, false));
        assert!(ex.excludes_relative(b"local.tmp", false, true));
        assert!(!ex.excludes_relative(b"other", false, false));
        assert!(ex.rules().contains("include shared/ignore:\n*.log\n"));
    }

    #[test]
    fn an_unusable_included_file_is_skipped_with_its_reason() {
        for (content, why) in [
            (&b"ok\n{a,b\n"[..], "line 2: error parsing glob"),
            (b"ok\n\xff\n", "line 2: not UTF-8"),
        ] {
            let ex = load_bytes(
                &[
                    (".syncreplicaignore", b"#include shared.ignore\n"),
                    ("shared.ignore", content),
                ],
                &[],
            )
            .unwrap();
            let skipped = ex.skipped_includes();
            assert_eq!(skipped.len(), 1, "{content:?}");
            assert_eq!(skipped[0].line, 1);
            assert!(skipped[0].why.contains(why), "{:?}", skipped[0]);
            assert!(!ex.has_shared());
            assert!(!ex.excludes_relative(b"ok", false, false));
        }
        let ex = load(&[(".syncreplicaignore", "#include nothere\n")], &[]).unwrap();
        assert_eq!(ex.skipped_includes()[0].why, "not found");
        assert!(ex.rules().contains("include nothere: skipped"));
    }

    #[test]
    fn an_included_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("patterns"), "*\n").unwrap();
        std::fs::write(
            dir.path().join(IGNORE_FILE),
            "#include link\n#include d/p\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path().join("patterns"), dir.path().join("link"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
        let ex = Excludes::load(dir.path(), &[], &dir.path().join("c")).unwrap();
        let skipped = ex.skipped_includes();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(
            skipped.iter().all(|s| s.why.contains("symlink")),
            "{skipped:?}"
        );
        assert!(!ex.has_shared());
    }
}
