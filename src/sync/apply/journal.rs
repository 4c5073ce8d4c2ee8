//! The apply journal: the disk actions of a committed batch, stored in the
//! state database in the same transaction as the batch, and replayed after
//! a crash until they are all done.
//!
//! Each action is stored as one row: a version tag byte
//! ([`JOURNAL_VERSION`]) followed by the action's postcard encoding. A
//! journal left by another version of this program is refused with a
//! clear error instead of being misread (postcard is not self-describing:
//! a changed enum would decode as a different action).

use serde::{Deserialize, Serialize};

/// The version of the journal encoding. Raise it whenever [`Action`]
/// changes shape.
pub(crate) const JOURNAL_VERSION: u8 = 1;

/// One disk action of the journal. Every action can run again after a
/// crash and leaves the same result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Action {
    /// Hard-links (or copies) the regular file at `path` to `to`, relative
    /// to the state folder; done once `to` exists.
    Preserve { path: Vec<u8>, to: Vec<u8> },
    /// Removes `path` if it is a regular file.
    RemoveFile { path: Vec<u8> },
    /// Removes `path` if it is a symlink or a special file.
    RemoveSpecial { path: Vec<u8> },
    /// Removes `path` if it is a directory (empty by then).
    RemoveDir { path: Vec<u8> },
    /// Creates the directory `path` if it does not exist, with its final
    /// mode plus owner access (exact once `SetDirMode` ran).
    MakeDir { path: Vec<u8>, mode: u32 },
    /// Renames staged file `staged` to `path`; done once it is gone.
    Place { staged: u64, path: Vec<u8> },
    /// Makes `path` a symlink to `target`, replacing what is there in one
    /// rename.
    Link { path: Vec<u8>, target: Vec<u8> },
    /// Sets a file's mode and mtime (content unchanged).
    SetFileMeta {
        path: Vec<u8>,
        mode: u32,
        mtime_ns: i64,
    },
    /// Sets a directory's mode, after everything inside it is done.
    SetDirMode { path: Vec<u8>, mode: u32 },
}

impl Action {
    /// The row stored in the journal.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![JOURNAL_VERSION];
        bytes.extend(postcard::to_stdvec(self).expect("actions encode"));
        bytes
    }

    /// Reads a journal row; the error says what is wrong with it.
    pub(crate) fn decode(row: &[u8]) -> Result<Action, String> {
        match row.split_first() {
            Some((&JOURNAL_VERSION, body)) => {
                postcard::from_bytes(body).map_err(|e| format!("undecodable action: {e}"))
            }
            Some((&version, _)) => Err(format!(
                "journal version {version}, this program knows {JOURNAL_VERSION}: \
                 finish the interrupted import with the version of syncreplica that began it"
            )),
            None => Err("empty journal row".into()),
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
        assert_eq!(row[0], JOURNAL_VERSION);
        assert_eq!(Action::decode(&row).unwrap(), action);
        let mut other = row.clone();
        other[0] = JOURNAL_VERSION + 1;
        assert!(Action::decode(&other)
            .unwrap_err()
            .contains("journal version"));
        assert!(Action::decode(&[]).is_err());
    }
}
