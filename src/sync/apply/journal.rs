//! The apply journal: the disk actions of a committed batch, stored in the
//! state database in the same transaction as the batch, and replayed after
//! a crash until they are all done.
//!
//! Each action is stored as one row: the magic [`JOURNAL_MAGIC`], a
//! version byte ([`JOURNAL_VERSION`]), then the action's postcard
//! encoding. A journal left by another version of this program is refused
//! with a clear error instead of being misread (postcard is not
//! self-describing: a changed enum would decode as a different action).
//! The magic matters: rows of earlier development builds carried no tag,
//! and their first byte (the enum discriminant) could pass for a version
//! byte; a row without the magic is never decoded.

use serde::{Deserialize, Serialize};

use crate::ops::Timestamp;

/// Every journal row starts with these bytes.
pub(crate) const JOURNAL_MAGIC: &[u8; 3] = b"SRJ";

/// The version of the journal encoding. Raise it whenever [`Action`]
/// changes shape.
pub(crate) const JOURNAL_VERSION: u8 = 4;

/// One disk action of the journal. Every action can run again after a
/// crash and leaves the same result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Action {
    /// Removes `path` if it is a regular file still as `expect` says (a
    /// file changed meanwhile is the user's and stays), keeping it as
    /// `keep` (relative to the state folder) when given.
    RemoveFile {
        path: Vec<u8>,
        expect: Expect,
        keep: Option<Vec<u8>>,
    },
    /// Removes `path` if it is a symlink or a special file.
    RemoveSpecial { path: Vec<u8> },
    /// Removes `path` if it is a directory (empty by then).
    RemoveDir { path: Vec<u8> },
    /// Creates the directory `path` if it does not exist, with its final
    /// mode plus owner access (exact once `SetDirMode` ran).
    MakeDir { path: Vec<u8>, mode: u32 },
    /// Renames staged file `staged` to `path`; done once it is gone. What
    /// is at `path` is first moved aside: if it is not what `expect` says
    /// (a save during the import), it is kept as a conflict copy; if it is,
    /// it becomes `keep` (the soft-deleted version), when given. A kept
    /// version is a real copy when the file has other names (hard links),
    /// so a later edit through them cannot change it.
    Place {
        staged: u64,
        path: Vec<u8>,
        expect: Expect,
        keep: Option<Vec<u8>>,
    },
    /// Makes `path` a symlink to `target`; what is there is moved aside
    /// first, as for `Place`.
    Link {
        path: Vec<u8>,
        target: Vec<u8>,
        expect: Expect,
        keep: Option<Vec<u8>>,
    },
    /// Makes a FIFO, socket or device node at `path`; what is there is
    /// moved aside first, as for `Place`.
    MakeNode {
        path: Vec<u8>,
        kind: u32,
        mode: u32,
        major: u32,
        minor: u32,
        expect: Expect,
        keep: Option<Vec<u8>>,
    },
    /// Sets a file's mode and mtime (content unchanged), unless the file
    /// changed since the plan (then the local edit wins).
    SetFileMeta {
        path: Vec<u8>,
        mode: u32,
        mtime: Timestamp,
        expect: Expect,
    },
    /// Sets a directory's mode, after everything inside it is done.
    SetDirMode { path: Vec<u8>, mode: u32 },
    /// Puts back the recorded time of a directory whose content an import
    /// changed (placing and removing names moves it), after everything.
    SetDirTime { path: Vec<u8>, mtime: Timestamp },
    /// Gives what is at `path` (if it is of `kind`) the metadata of `ext`
    /// that this replica preserves (owner, group, ACLs, xattrs; a file
    /// whose hard-link leader is another path becomes a link to it), then
    /// `mode` and `mtime`. After the content is placed; for a directory,
    /// after everything inside it (its mtime is last).
    SetMeta {
        path: Vec<u8>,
        kind: MetaKind,
        mode: Option<u32>,
        mtime: Option<Timestamp>,
        ext: crate::ops::Extensions,
    },
}

/// The kind of object a [`Action::SetMeta`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MetaKind {
    File,
    Directory,
    Symlink,
    /// A FIFO, socket or device node.
    Special,
}

/// What the plan found at a path that an action replaces or removes.
/// Anything else there when the action runs is a concurrent local change,
/// which is never discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Expect {
    /// Nothing was there.
    Absent,
    /// A regular file, as `lstat` showed it.
    File {
        inode: u64,
        size: u64,
        mtime_ns: i64,
        ctime_ns: i64,
    },
    /// A symlink, by its target (a link's whole content): the first 16
    /// bytes of the target's SHA-256. A link a person makes during the
    /// import with another target is theirs; one with the same target is
    /// the same link.
    Symlink { target_hash: [u8; 16] },
    /// A special file (FIFO, socket, device: it holds no user data).
    Other,
    /// A file the last scan could not vouch for (busy, or changed after
    /// the scan): whatever is there is kept, never discarded.
    Unverified,
}

/// The `ctime_ns` of an [`Expect::File`] for a file with other names
/// (a hard-link set): every change the import makes to one name (its
/// metadata, a rename aside) moves the ctime of all, so only inode, size
/// and mtime are compared for them.
pub(crate) const ANY_CTIME: i64 = i64::MIN;

impl Expect {
    /// Whether `stat` (an `lstat` now; `None`: nothing there) is what the
    /// plan saw.
    pub(crate) fn holds(&self, stat: Option<&rustix::fs::Stat>) -> bool {
        use rustix::fs::FileType;
        match (self, stat) {
            (Expect::Absent, None) => true,
            (
                Expect::File {
                    inode,
                    size,
                    mtime_ns,
                    ctime_ns,
                },
                Some(stat),
            ) => {
                FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                    && stat.st_ino == *inode
                    && stat.st_size as u64 == *size
                    && stat_mtime_ns(stat) == *mtime_ns
                    && (*ctime_ns == ANY_CTIME || stat_ctime_ns(stat) == *ctime_ns)
            }
            // The target is compared by the caller, who can read the link
            // (`Expect::holds_link`); a stat alone only says it is a link.
            (Expect::Symlink { .. }, Some(stat)) => {
                FileType::from_raw_mode(stat.st_mode) == FileType::Symlink
            }
            (Expect::Other, Some(stat)) => !matches!(
                FileType::from_raw_mode(stat.st_mode),
                FileType::RegularFile | FileType::Directory
            ),
            _ => false,
        }
    }

    /// Whether `stat`, of the file after it was renamed aside, is the file
    /// the plan saw: the rename itself changed its ctime, so that is
    /// compared before the rename ([`Expect::ctime_holds`]).
    pub(crate) fn holds_moved(&self, stat: &rustix::fs::Stat) -> bool {
        match *self {
            Expect::File {
                inode,
                size,
                mtime_ns,
                ..
            } => {
                rustix::fs::FileType::from_raw_mode(stat.st_mode)
                    == rustix::fs::FileType::RegularFile
                    && stat.st_ino == inode
                    && stat.st_size as u64 == size
                    && stat_mtime_ns(stat) == mtime_ns
            }
            _ => self.holds(Some(stat)),
        }
    }

    /// Whether the link at `path` (ours: the staging folder) is the one
    /// the plan saw, for a [`Expect::Symlink`]; true for other expectations.
    pub(crate) fn holds_link(&self, path: &std::path::Path) -> bool {
        match self {
            Expect::Symlink { target_hash } => std::fs::read_link(path).is_ok_and(|target| {
                use std::os::unix::ffi::OsStrExt;
                &Expect::hash_target(target.as_os_str().as_bytes()) == target_hash
            }),
            _ => true,
        }
    }

    /// The hash a [`Expect::Symlink`] keeps of a link target.
    pub(crate) fn hash_target(target: &[u8]) -> [u8; 16] {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(target);
        let mut short = [0; 16];
        short.copy_from_slice(&digest[..16]);
        short
    }

    /// Whether the ctime in `stat` (taken before a rename) is the one the
    /// plan saw; true for expectations without one.
    pub(crate) fn ctime_holds(&self, stat: &rustix::fs::Stat) -> bool {
        match self {
            Expect::File { ctime_ns, .. } => {
                *ctime_ns == ANY_CTIME || stat_ctime_ns(stat) == *ctime_ns
            }
            _ => true,
        }
    }
}

/// The mtime in `stat`, exactly (any year).
#[allow(clippy::unnecessary_cast)]
pub(crate) fn stat_mtime(stat: &rustix::fs::Stat) -> Timestamp {
    Timestamp::from_stat(stat.st_mtime as i64, stat.st_mtime_nsec as i64)
}

/// The mtime in `stat`, in ns since the Unix epoch (saturating): for
/// comparing two stats of one file, where a saturated far time still
/// differs in ctime, inode or size from any other version.
// The casts are no-ops on 64-bit Linux, not on every target.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn stat_mtime_ns(stat: &rustix::fs::Stat) -> i64 {
    (stat.st_mtime as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(stat.st_mtime_nsec as i64)
}

#[allow(clippy::unnecessary_cast)]
pub(crate) fn stat_ctime_ns(stat: &rustix::fs::Stat) -> i64 {
    (stat.st_ctime as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(stat.st_ctime_nsec as i64)
}

impl Action {
    /// The path the action works on, relative to the root.
    pub(crate) fn path(&self) -> &[u8] {
        match self {
            Action::RemoveFile { path, .. }
            | Action::RemoveSpecial { path }
            | Action::RemoveDir { path }
            | Action::MakeDir { path, .. }
            | Action::Place { path, .. }
            | Action::Link { path, .. }
            | Action::MakeNode { path, .. }
            | Action::SetFileMeta { path, .. }
            | Action::SetDirMode { path, .. }
            | Action::SetMeta { path, .. }
            | Action::SetDirTime { path, .. } => path,
        }
    }

    /// The action, in words, for a report of its failure.
    pub(crate) fn step(&self) -> &'static str {
        match self {
            Action::RemoveFile { .. } => "removing the file",
            Action::RemoveSpecial { .. } => "removing the link or special file",
            Action::RemoveDir { .. } => "removing the folder",
            Action::MakeDir { .. } => "making the folder",
            Action::Place { .. } => "placing the new version",
            Action::Link { .. } => "making the link",
            Action::MakeNode { .. } => "making the special file",
            Action::SetFileMeta { .. } => "setting the file's mode and time",
            Action::SetDirMode { .. } => "setting the folder's mode",
            Action::SetMeta { .. } => "setting owner, ACLs, attributes, links and time",
            Action::SetDirTime { .. } => "setting the folder's time",
        }
    }

    /// The row stored in the journal.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = JOURNAL_MAGIC.to_vec();
        bytes.push(JOURNAL_VERSION);
        bytes.extend(postcard::to_stdvec(self).expect("actions encode"));
        bytes
    }

    /// Reads a journal row; the error says what is wrong with it.
    pub(crate) fn decode(row: &[u8]) -> Result<Action, String> {
        let Some(tagged) = row.strip_prefix(JOURNAL_MAGIC) else {
            return Err(if row.is_empty() {
                "empty journal row".into()
            } else {
                "an interrupted import's journal written by an earlier development build \
                 of syncreplica (rows without a format tag): finish it with that build \
                 (its next import or sync does), or check the tree and delete the \
                 pending_apply rows of .syncreplica/state.db"
                    .into()
            });
        };
        match tagged.split_first() {
            Some((&JOURNAL_VERSION, body)) => {
                postcard::from_bytes(body).map_err(|e| format!("undecodable action: {e}"))
            }
            Some((&version, _)) => Err(format!(
                "journal version {version}, this program knows {JOURNAL_VERSION}: \
                 finish the interrupted import with the version of syncreplica that began it"
            )),
            None => Err("journal row without a version".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_with_their_version_and_other_versions_are_refused() {
        let action = Action::MakeDir {
            path: b"a/b".to_vec(),
            mode: 0o755,
        };
        let row = action.encode();
        assert_eq!(&row[..3], JOURNAL_MAGIC);
        assert_eq!(row[3], JOURNAL_VERSION);
        assert_eq!(Action::decode(&row).unwrap(), action);
        let mut other = row.clone();
        other[3] = JOURNAL_VERSION + 1;
        assert!(Action::decode(&other)
            .unwrap_err()
            .contains("journal version"));
        assert!(Action::decode(&[]).is_err());
        assert!(Action::decode(JOURNAL_MAGIC).is_err());
    }

    #[test]
    fn an_untagged_row_of_an_earlier_build_is_refused_not_misread() {
        // Earlier development builds stored the bare postcard encoding:
        // its first byte is the enum discriminant (`MakeDir` is 3, and
        // `RemoveDir`'s 2 equals the old one-byte tag), which a bare
        // version byte could not tell from a tag.
        for action in [
            Action::SetDirMode {
                path: b"d".to_vec(),
                mode: 0o755,
            },
            Action::MakeDir {
                path: b"a/b".to_vec(),
                mode: 0o755,
            },
            Action::RemoveSpecial {
                path: b"x".to_vec(),
            },
        ] {
            let legacy = postcard::to_stdvec(&action).unwrap();
            let err = Action::decode(&legacy).unwrap_err();
            assert!(err.contains("earlier development build"), "{err}");
            assert!(err.contains("pending_apply"), "{err}");
        }
        // A row of the one-byte-tag format (tag 2, then postcard).
        let mut tagged = vec![2u8];
        tagged.extend(
            postcard::to_stdvec(&Action::RemoveDir {
                path: b"d".to_vec(),
            })
            .unwrap(),
        );
        assert!(Action::decode(&tagged)
            .unwrap_err()
            .contains("earlier development build"));
    }
}
