//! Paths relative to a replica root, as raw bytes.
//!
//! File names on Unix are bytes, not text. syncreplica keeps them exactly,
//! so a name that is not UTF-8 is neither mangled nor rejected. Relative
//! paths are `/`-separated with no leading or trailing slash.

use crate::store::layout::{is_state_dir_under_construction, is_tree_temp_name, STATE_DIR};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// `path` (below `root`) as replica-relative bytes. `None` for the root itself
/// or a path outside it.
pub fn relative_bytes(root: &Path, path: &Path) -> Option<Vec<u8>> {
    let rel = path.strip_prefix(root).ok()?;
    let mut out = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name.as_bytes());
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The on-disk path of a replica-relative path that is already known to be
/// well-formed (it came from this replica's own scan or state).
pub fn to_disk_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Human-readable form for messages ([`crate::error::printable_bytes`]):
/// control characters and invalid UTF-8 bytes are escaped, so two
/// distinct names never print the same and none can forge a line.
/// The root itself (the empty path) prints as `.`.
pub fn display(rel: &[u8]) -> String {
    if rel.is_empty() {
        return ".".to_string();
    }
    crate::error::printable_bytes(rel)
}

/// Proper ancestors of the relative path `rel`, shallowest first
/// (`a/b/c` gives `a`, `a/b`).
pub fn ancestors(rel: &[u8]) -> Vec<&[u8]> {
    rel.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| &rel[..i])
        .collect()
}

/// Whether `ancestor` is `rel` itself or one of its parent directories.
pub fn is_within(rel: &[u8], ancestor: &[u8]) -> bool {
    rel.starts_with(ancestor) && (rel.len() == ancestor.len() || rel[ancestor.len()] == b'/')
}

/// Longest file name most filesystems accept.
pub const NAME_MAX: usize = 255;
/// Longest path accepted from a packet, and longest full path on disk
/// (Linux's `PATH_MAX` is 4096 bytes with the terminating NUL): the
/// system refuses longer ones with `ENAMETOOLONG`.
pub const PATH_MAX: usize = 4095;

/// Whether `rel` fits below `root` on disk: `root/rel` is at most
/// [`PATH_MAX`] bytes, so every tool (the scan, an export, an editor) can
/// open it by its full name. A packet path that does not fit is not made
/// in this replica (see `sync::apply`, rule 3).
pub fn fits_below(root: &Path, rel: &[u8]) -> bool {
    root.as_os_str().len() + 1 + rel.len() <= PATH_MAX
}

/// `rel` shortened for a message: its first and last bytes around `…`
/// when it is longer than `max` bytes (a path of 4,000 bytes is not
/// read, only recognised).
pub fn display_short(rel: &[u8], max: usize) -> String {
    if rel.len() <= max {
        return display(rel);
    }
    let head = max * 2 / 3;
    let tail = max - head;
    format!(
        "{}…{} ({} bytes)",
        display(&rel[..head]),
        display(&rel[rel.len() - tail..]),
        rel.len()
    )
}

/// Why a path taken from a packet cannot be used, judged on its bytes
/// alone: every name in a packet is hostile until proved enclosed.
pub fn lexical_problem(rel: &[u8]) -> Option<&'static str> {
    if rel.is_empty() {
        return Some("it is empty");
    }
    if rel.starts_with(b"/") {
        return Some("it is absolute");
    }
    if rel.contains(&0) {
        return Some("it contains a NUL byte");
    }
    if rel.len() > PATH_MAX {
        return Some("it is too long");
    }
    for component in rel.split(|&b| b == b'/') {
        match component {
            b"" => return Some("it has an empty component"),
            b"." | b".." => return Some("it has a '.' or '..' component"),
            // The scan never records a state folder, at any depth.
            name if name == STATE_DIR.as_bytes() => {
                return Some("it names a replica state folder (.syncreplica)")
            }
            // The engine's own temporaries (at any depth, so every prefix
            // of a valid path is valid too): never a packet's to name.
            name if is_tree_temp_name(name) => {
                return Some("it names a temporary file of the import (.syncreplica-new-file)")
            }
            // Where mkreplica builds the state folder: a creation packet's
            // paths are made beside it, and must never reach into it.
            name if is_state_dir_under_construction(name) => {
                return Some(
                    "it names a replica state folder under construction (.syncreplica.init-PID)",
                )
            }
            name if name.len() > NAME_MAX => return Some("a name in it is longer than 255 bytes"),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_bytes_keeps_raw_names() {
        let root = Path::new("/r");
        let name = OsStr::from_bytes(b"caf\xe9");
        assert_eq!(
            relative_bytes(root, &root.join("d").join(name)).unwrap(),
            b"d/caf\xe9".to_vec()
        );
        assert_eq!(relative_bytes(root, root), None);
        assert_eq!(relative_bytes(root, Path::new("/other")), None);
    }

    #[test]
    fn display_escapes_invalid_utf8_and_controls() {
        assert_eq!(display(b"caf\xe9/x"), "caf\\xe9/x");
        assert_eq!(display(b"a\nb"), "a\\nb");
        assert_eq!(display("été".as_bytes()), "été");
    }

    #[test]
    fn hostile_paths_are_refused_lexically() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"../x",
            b"a/../../x",
            b"a/./b",
            b"a//b",
            b"a/",
            b".syncreplica/state.db",
            b"sub/.syncreplica/x",
            b".syncreplica-new-file",
            b"d/.syncreplica-new-file",
            b"d/.syncreplica-new-file/x",
            b".syncreplica.init-4242/signing_key",
            b"d/.syncreplica.init-1",
            b"a\0b",
        ] {
            assert!(lexical_problem(bad).is_some(), "{}", display(bad));
        }
        for good in [
            &b"a"[..],
            b"dir/file.txt",
            b"caf\xe9",
            b"..hidden",
            b"sub/.syncreplicaignore",
            b"d/.syncreplica-new-file.sync-conflict-20261121-101500-beta",
            b".syncreplica.init-",
            b".syncreplica.init-notes",
            b".syncreplica.init-12.txt",
        ] {
            assert_eq!(lexical_problem(good), None, "{}", display(good));
        }
    }

    #[test]
    fn a_path_fits_below_a_root_up_to_path_max_in_all() {
        let root = Path::new("/r/oo/t");
        let room = PATH_MAX - "/r/oo/t/".len();
        assert!(fits_below(root, &vec![b'a'; room]));
        assert!(!fits_below(root, &vec![b'a'; room + 1]));
    }

    #[test]
    fn long_paths_are_shortened_for_messages() {
        assert_eq!(display_short(b"a/b", 10), "a/b");
        let long = [b"x".repeat(100), b"/end.txt".to_vec()].concat();
        let short = display_short(&long, 30);
        assert!(short.starts_with(&"x".repeat(20)), "{short}");
        assert!(short.ends_with("/end.txt (108 bytes)"), "{short}");
    }

    #[test]
    fn within_respects_component_boundaries() {
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"ab", b"a"));
    }
}
