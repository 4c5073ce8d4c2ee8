//! The replicas `mkreplica -import` made on this host, per user: so a
//! second import of one creation packet on the same host (two copies of one
//! member, which its siblings refuse as clones) is refused at once, not
//! found by a clone alarm weeks later.
//!
//! One small TOML file per import in `DATA_DIR/syncreplica/replicas/`
//! (`directories`' local data folder: `~/.local/share` on Linux), named by
//! the member's replica id, the time and the process, so imports running
//! at once never write the same file:
//!
//! ```toml
//! replica_id = "…32 hex digits…"
//! root = "/srv/ship"
//! made = "2026-11-30T19:04:34Z"
//! ```
//!
//! An entry counts only while its root still holds that member (its
//! identity file says so): a copy that was deleted, or moved away, frees
//! the member for a new import (a lost replica made anew). Entries whose
//! root no longer holds it are removed when they are looked at. The record
//! is a convenience, never a source of truth: a host without a data folder,
//! or one that cannot be written, records and checks nothing.

use std::path::{Path, PathBuf};

use crate::ops::Id;
use crate::store::identity::Identity;
use crate::store::layout;

/// A copy of a member made on this host that is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosted {
    /// The copy's replica root.
    pub root: PathBuf,
    /// When it was made (RFC 3339, UTC).
    pub made: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    replica_id: String,
    root: PathBuf,
    made: String,
}

/// The folder of the entries, when this host has a data folder.
fn folder() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "syncreplica")
        .map(|dirs| dirs.data_local_dir().join("replicas"))
}

/// The copies of member `replica` made on this host that still hold it;
/// entries whose root no longer does are removed.
pub fn copies_of(replica: &Id) -> Vec<Hosted> {
    let Some(folder) = folder() else {
        return Vec::new();
    };
    let prefix = format!("{}.", replica.to_hex());
    let Ok(listing) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut copies = Vec::new();
    for path in listing.filter_map(|e| e.ok()).map(|e| e.path()) {
        if !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".toml"))
        {
            continue;
        }
        let Some(entry) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| toml::from_str::<Entry>(&text).ok())
        else {
            continue;
        };
        if holds(&entry.root, replica) {
            copies.push(Hosted {
                root: entry.root,
                made: entry.made,
            });
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    copies.sort_by(|a, b| a.made.cmp(&b.made));
    copies
}

/// Whether the replica rooted at `root` is member `replica`.
fn holds(root: &Path, replica: &Id) -> bool {
    Identity::load(&layout::state_dir(root)).is_ok_and(|identity| identity.replica_id == *replica)
}

/// Records that member `replica` was made at `root` (canonical) now. Best
/// effort: a failure is returned for a warning, and changes nothing else.
pub fn record(replica: &Id, root: &Path) -> std::io::Result<()> {
    let Some(folder) = folder() else {
        return Ok(());
    };
    std::fs::create_dir_all(&folder)?;
    let made = chrono::Utc::now();
    let entry = Entry {
        replica_id: replica.to_hex(),
        root: root.to_path_buf(),
        made: made.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let text = toml::to_string(&entry).map_err(std::io::Error::other)?;
    let name = format!(
        "{}.{}.{}.toml",
        replica.to_hex(),
        made.format("%Y%m%dT%H%M%S%.9fZ"),
        std::process::id()
    );
    // Written whole, then renamed: a reader never sees half an entry.
    let temp = folder.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, folder.join(name))
}
