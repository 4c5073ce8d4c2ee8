//! Paths relative to a replica root, as raw bytes.
//!
//! File names on Unix are bytes, not text. syncreplica keeps them exactly,
//! so a name that is not UTF-8 is neither mangled nor rejected. Relative
//! paths are `/`-separated with no leading or trailing slash.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Name of the state folder at a replica's root. It is never scanned,
/// exported or written by an import.
pub const STATE_DIR: &str = ".syncreplica";

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

/// Human-readable form for messages; invalid UTF-8 bytes are escaped as
/// `\xNN`, so two distinct names never print the same.
pub fn display(rel: &[u8]) -> String {
    let mut out = String::with_capacity(rel.len());
    for chunk in rel.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch == '\\' {
                out.push_str("\\\\");
            } else if ch.is_control() {
                out.extend(ch.escape_default());
            } else {
                out.push(ch);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// Whether `ancestor` is `rel` itself or one of its parent directories.
pub fn is_within(rel: &[u8], ancestor: &[u8]) -> bool {
    rel.starts_with(ancestor) && (rel.len() == ancestor.len() || rel[ancestor.len()] == b'/')
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
    fn within_respects_component_boundaries() {
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"ab", b"a"));
    }
}
