//! Names as the replica's filesystem compares them.
//!
//! Paths in a family are byte strings: `Report.txt` and `report.txt`, or
//! the NFC and NFD spellings of `café`, are two paths. Some filesystems
//! (exFAT, vfat, APFS, ext4 with casefold, most USB sticks) take such
//! names for one: they *fold* case, Unicode normalisation, or both. On
//! such a site only one of the two can be in the tree; [`Folding::key`]
//! says which paths are the same there, and [`probe`] finds out how the
//! filesystem behaves.

use std::borrow::Cow;
use std::io::ErrorKind;
use std::path::Path;

use unicode_normalization::UnicodeNormalization;

/// How a filesystem compares names. The default folds nothing (as ext4,
/// xfs, btrfs and tmpfs do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Folding {
    /// `Report.txt` and `report.txt` name one file.
    pub case: bool,
    /// `café` in NFC (U+00E9) and in NFD (`e` + U+0301) name one file.
    pub unicode: bool,
}

impl Folding {
    /// Whether any two distinct names can be one file here.
    pub fn folds(&self) -> bool {
        self.case || self.unicode
    }

    /// The key under which this filesystem compares `path` (a replica
    /// path: components separated by `/`): two paths with equal keys are
    /// one path here. Without folding, the path itself. Case is folded with
    /// Unicode's lower-case mapping (ASCII only in names that are not
    /// UTF-8); normalisation by canonical decomposition (NFD).
    pub fn key<'a>(&self, path: &'a [u8]) -> Cow<'a, [u8]> {
        if !self.folds() {
            return Cow::Borrowed(path);
        }
        if path.is_ascii() || std::str::from_utf8(path).is_err() {
            // Normalisation leaves ASCII alone and does not apply to names
            // that are not text.
            return if self.case && path.iter().any(u8::is_ascii_uppercase) {
                Cow::Owned(path.to_ascii_lowercase())
            } else {
                Cow::Borrowed(path)
            };
        }
        let text = std::str::from_utf8(path).expect("checked above");
        let mut key: String = if self.unicode {
            text.nfd().collect()
        } else {
            text.to_string()
        };
        if self.case {
            key = key.to_lowercase();
            if self.unicode {
                // Lower-casing can make a name that decomposes further.
                key = key.nfd().collect();
            }
        }
        Cow::Owned(key.into_bytes())
    }

    /// Whether `a` and `b` are one name here.
    pub fn same(&self, a: &[u8], b: &[u8]) -> bool {
        a == b || (self.folds() && self.key(a) == self.key(b))
    }

    /// "it ignores case", for messages such as "X and Y are the same name
    /// on this filesystem (it ignores case)".
    pub fn describe(&self) -> &'static str {
        match (self.case, self.unicode) {
            (true, true) => "it ignores case and Unicode normalisation",
            (true, false) => "it ignores case",
            (false, true) => "it ignores Unicode normalisation",
            (false, false) => "it tells every name apart",
        }
    }
}

/// Finds out how the filesystem holding `dir` compares names: creates a
/// file with a mixed-case name in `dir` and looks it up under another
/// case, then the same with `é` in NFC and in NFD; the probe files are
/// removed. `dir` must be writable and on the filesystem in question (the
/// replica's state folder). A filesystem that cannot hold a probe name at
/// all (no such characters) does not fold it.
///
/// Errors: creating, looking up or removing the probe files failed
/// otherwise (read-only filesystem, permission denied).
pub fn probe(dir: &Path) -> std::io::Result<Folding> {
    let case = probe_pair(dir, "Case", "cASE")?;
    let unicode = probe_pair(dir, "\u{e9}", "e\u{301}")?;
    Ok(Folding { case, unicode })
}

/// Whether `other` finds a file made under the name `made` (each the end
/// of a probe name unique to this process).
fn probe_pair(dir: &Path, made: &str, other: &str) -> std::io::Result<bool> {
    let now = crate::sys::clock::now_ns();
    for attempt in 0..100u32 {
        let tag = format!(".probe-{}-{now:x}-{attempt}-", std::process::id());
        let made_path = dir.join(format!("{tag}{made}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&made_path)
        {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => continue,
            // EILSEQ, EINVAL: the filesystem cannot hold this name, so it
            // cannot fold it onto another either.
            Err(err) if cannot_hold_name(&err) => return Ok(false),
            Err(err) => return Err(err),
        }
        let found = std::fs::symlink_metadata(dir.join(format!("{tag}{other}")));
        // Removed under the name it was made with, whatever the lookup said.
        std::fs::remove_file(&made_path)?;
        return match found {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        };
    }
    Err(std::io::Error::new(
        ErrorKind::AlreadyExists,
        "no free probe name",
    ))
}

fn cannot_hold_name(err: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(err), Some(Errno::ILSEQ | Errno::INVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let none = Folding::default();
        assert_eq!(none.key(b"Report.txt").as_ref(), b"Report.txt");
        let case = Folding {
            case: true,
            unicode: false,
        };
        assert_eq!(case.key(b"Docs/Report.TXT").as_ref(), b"docs/report.txt");
        assert!(case.same("CAFÉ".as_bytes(), "café".as_bytes()));
        assert!(!case.same("caf\u{e9}".as_bytes(), "cafe\u{301}".as_bytes()));
        // Not UTF-8: ASCII letters fold, other bytes stay.
        assert!(case.same(b"A\xff", b"a\xff"));
        assert!(!case.same(b"A\xff", b"a\xfe"));
        let unicode = Folding {
            case: false,
            unicode: true,
        };
        assert!(unicode.same("caf\u{e9}".as_bytes(), "cafe\u{301}".as_bytes()));
        assert!(!unicode.same(b"Report.txt", b"report.txt"));
        let both = Folding {
            case: true,
            unicode: true,
        };
        assert!(both.same("CAF\u{c9}/x".as_bytes(), "cafe\u{301}/X".as_bytes()));
        assert!(!both.same(b"a/b", b"a/c"));
    }

    /// The filesystem the tests run on (ext4, tmpfs, xfs, btrfs on the
    /// machines here) folds nothing; on a developer's folding filesystem
    /// this says so instead of failing obscurely elsewhere.
    #[test]
    fn probe_of_a_case_sensitive_filesystem_finds_no_folding() {
        let dir = tempfile::tempdir().unwrap();
        let found = probe(dir.path()).unwrap();
        assert_eq!(
            found,
            Folding::default(),
            "this test needs a filesystem that folds nothing"
        );
        // Nothing is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
