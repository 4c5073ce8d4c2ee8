//! The entries a batch plans (a path's state as the batch leaves it), kept
//! in the batch's scratch database ([`super::batch`]) rather than in
//! memory: a packet of a million operations on a million distinct paths
//! plans a million entries, and in memory each cost some 600 bytes (a
//! version vector is a map of its own), so the import's memory grew with
//! the packet.
//!
//! Writes go to a small in-memory map first ([`HOT_MAX`] paths at most),
//! which is written to the table `batch.planned` when it is full and
//! before any question about ranges or order; a lookup that misses it
//! reads the table by primary key. The table is thrown away with the
//! scratch database; the commit copies its rows into the state's entries
//! inside its one transaction ([`Planned::for_each_row`]), so the batch
//! stays all-or-nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::plan::Entry;
use crate::error::{Error, Result};
use crate::ops::{Id, PathState, VersionVector};
use crate::store::state::TxError;

/// At most this many planned paths are held in memory before they are
/// written to the scratch table.
pub const HOT_MAX: usize = 4096;

/// Paths read back from the table at once by the ordered walks.
const PAGE: usize = 1024;

/// What kind of state a row holds, in a column of its own so that range
/// questions ("anything live below this?") decode nothing.
fn kind_code(state: &PathState) -> i64 {
    match state {
        PathState::Deleted => 0,
        PathState::File { .. } => 1,
        PathState::Directory { .. } => 2,
        PathState::Symlink { .. } => 3,
        PathState::Unknown { .. } => 4,
        PathState::Special { .. } => 5,
    }
}

/// Which rows an ordered walk ([`Planned::page`]) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// Every planned path.
    All,
    /// Paths that exist after the batch (not `Deleted`).
    Live,
    /// Paths that are not directories after the batch.
    NotDirectories,
}

impl Only {
    fn condition(self) -> &'static str {
        match self {
            Only::All => "1",
            Only::Live => "kind != 0",
            Only::NotDirectories => "kind != 2",
        }
    }
}

/// The planned entries of one batch: see the module documentation.
#[derive(Debug)]
pub struct Planned {
    /// Written to the table on [`Planned::flush`]: `None` deletes the row.
    hot: BTreeMap<Vec<u8>, Option<Entry>>,
    /// The scratch database's file, for errors.
    file: PathBuf,
    /// The most paths held in `hot` at once, for tests.
    largest_hot: usize,
}

fn encode(entry: &Entry) -> Vec<u8> {
    postcard::to_stdvec(&(&entry.state, &entry.version, &entry.author)).expect("entries encode")
}

impl Planned {
    /// An empty plan in `batch.planned` (the batch's scratch database must
    /// be attached to `conn` as `batch`; `file` is its file, for errors).
    pub fn create(conn: &Connection, file: &Path) -> Result<Planned> {
        let planned = Planned {
            hot: BTreeMap::new(),
            file: file.to_path_buf(),
            largest_hot: 0,
        };
        conn.execute_batch(
            "DROP TABLE IF EXISTS batch.planned;
             CREATE TABLE batch.planned (
                 path BLOB PRIMARY KEY,
                 kind INTEGER NOT NULL,
                 entry BLOB NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(|e| {
            super::batch::write_error(
                file,
                e,
                || "planning the packet's changes".to_string(),
                |e| planned.error(e),
            )
        })?;
        Ok(planned)
    }

    /// The scratch database's file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::CorruptState {
            path: self.file.clone(),
            what: format!("planned entries of the batch: {what}"),
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<Entry> {
        let (state, version, author): (PathState, VersionVector, Id) =
            postcard::from_bytes(bytes).map_err(|e| self.error(e))?;
        Ok(Entry {
            state,
            version,
            author,
        })
    }

    /// `path`'s planned entry, if the batch plans one.
    pub fn get(&self, conn: &Connection, path: &[u8]) -> Result<Option<Entry>> {
        if let Some(slot) = self.hot.get(path) {
            return Ok(slot.clone());
        }
        let bytes: Option<Vec<u8>> = conn
            .prepare_cached("SELECT entry FROM batch.planned WHERE path = ?1")
            .and_then(|mut s| s.query_row([path], |row| row.get(0)).optional())
            .map_err(|e| self.error(e))?;
        bytes.map(|b| self.decode(&b)).transpose()
    }

    /// Whether the batch plans an entry for `path`.
    pub fn contains(&self, conn: &Connection, path: &[u8]) -> Result<bool> {
        if let Some(slot) = self.hot.get(path) {
            return Ok(slot.is_some());
        }
        conn.prepare_cached("SELECT 1 FROM batch.planned WHERE path = ?1")
            .and_then(|mut s| s.exists([path]))
            .map_err(|e| self.error(e))
    }

    /// Plans `entry` for `path`; returns the entry it replaces.
    pub fn insert(
        &mut self,
        conn: &Connection,
        path: &[u8],
        entry: Entry,
    ) -> Result<Option<Entry>> {
        let old = self.get(conn, path)?;
        self.hot.insert(path.to_vec(), Some(entry));
        self.after_write(conn)?;
        Ok(old)
    }

    /// Unplans `path`; returns the entry it had.
    pub fn remove(&mut self, conn: &Connection, path: &[u8]) -> Result<Option<Entry>> {
        let old = self.get(conn, path)?;
        if old.is_some() {
            self.hot.insert(path.to_vec(), None);
            self.after_write(conn)?;
        }
        Ok(old)
    }

    fn after_write(&mut self, conn: &Connection) -> Result<()> {
        self.largest_hot = self.largest_hot.max(self.hot.len());
        if self.hot.len() >= HOT_MAX {
            self.flush(conn)?;
        }
        Ok(())
    }

    /// The most paths held in memory at once so far.
    #[cfg(test)]
    pub fn largest_hot(&self) -> usize {
        self.largest_hot
    }

    /// Writes the paths held in memory to the table.
    pub fn flush(&mut self, conn: &Connection) -> Result<()> {
        if self.hot.is_empty() {
            return Ok(());
        }
        let hot = std::mem::take(&mut self.hot);
        let write = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT OR REPLACE INTO batch.planned (path, kind, entry) VALUES (?1, ?2, ?3)",
                )?;
                let mut delete = tx.prepare_cached("DELETE FROM batch.planned WHERE path = ?1")?;
                for (path, slot) in &hot {
                    match slot {
                        Some(entry) => {
                            put.execute(params![path, kind_code(&entry.state), encode(entry)])?;
                        }
                        None => {
                            delete.execute([path])?;
                        }
                    }
                }
            }
            tx.commit()
        };
        write().map_err(|e| {
            super::batch::write_error(
                &self.file,
                e,
                || "planning the packet's changes".to_string(),
                |e| self.error(e),
            )
        })
    }

    /// Whether any path in `lo..hi` (byte order) is planned to exist.
    pub fn any_live_in(&mut self, conn: &Connection, lo: &[u8], hi: &[u8]) -> Result<bool> {
        self.flush(conn)?;
        conn.prepare_cached(
            "SELECT 1 FROM batch.planned WHERE path >= ?1 AND path < ?2 AND kind != 0 LIMIT 1",
        )
        .and_then(|mut s| s.exists([lo, hi]))
        .map_err(|e| self.error(e))
    }

    /// Up to [`PAGE`] planned paths of the kind `only`, in byte order
    /// strictly after `after` (from the first when `None`), or strictly
    /// before it from the last when `backwards`. An empty page is the
    /// end. Changes made between pages are seen by the pages after.
    pub fn page(
        &mut self,
        conn: &Connection,
        after: Option<&[u8]>,
        backwards: bool,
        only: Only,
    ) -> Result<Vec<(Vec<u8>, Entry)>> {
        self.flush(conn)?;
        let (compare, order) = match backwards {
            false => (">", "ASC"),
            true => ("<", "DESC"),
        };
        let bound = match after {
            Some(_) => format!("path {compare} ?1"),
            None => "?1 IS NULL".to_string(),
        };
        let sql = format!(
            "SELECT path, entry FROM batch.planned WHERE {bound} AND {} ORDER BY path {order} \
             LIMIT {PAGE}",
            only.condition()
        );
        let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_map([after], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.error(e))?;
        rows.into_iter()
            .map(|(path, bytes)| Ok((path, self.decode(&bytes)?)))
            .collect()
    }

    /// Whether `f` holds for any planned path and its entry, in no set
    /// order (read from the table and from memory, without writing).
    pub fn any(&self, conn: &Connection, mut f: impl FnMut(&[u8], &Entry) -> bool) -> Result<bool> {
        for (path, slot) in &self.hot {
            if let Some(entry) = slot {
                if f(path, entry) {
                    return Ok(true);
                }
            }
        }
        let mut statement = conn
            .prepare_cached("SELECT path, entry FROM batch.planned")
            .map_err(|e| self.error(e))?;
        let mut rows = statement.query([]).map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let path: Vec<u8> = row.get(0).map_err(|e| self.error(e))?;
            if self.hot.contains_key(&path) {
                continue; // the version in memory counts
            }
            let bytes: Vec<u8> = row.get(1).map_err(|e| self.error(e))?;
            if f(&path, &self.decode(&bytes)?) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Calls `f` with every planned path and its entry, in byte order, one
    /// row at a time, through `conn` (the commit's transaction). The plan
    /// must be flushed ([`Planned::flush`]; a finished plan is).
    pub fn for_each_row(
        &self,
        conn: &Connection,
        mut f: impl FnMut(&[u8], &Entry) -> std::result::Result<(), TxError>,
    ) -> std::result::Result<(), TxError> {
        debug_assert!(self.hot.is_empty(), "read before flush");
        let mut statement = conn
            .prepare("SELECT path, entry FROM batch.planned ORDER BY path")
            .map_err(|e| self.error(e))?;
        let mut rows = statement.query([]).map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let path: Vec<u8> = row.get(0).map_err(|e| self.error(e))?;
            let bytes: Vec<u8> = row.get(1).map_err(|e| self.error(e))?;
            f(&path, &self.decode(&bytes)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state::State;
    use crate::sync::apply::batch::OpBatch;

    fn entry(state: PathState, epoch: u64) -> Entry {
        let mut version = VersionVector::default();
        version.set(Id([1; 16]), epoch);
        Entry {
            state,
            version,
            author: Id([1; 16]),
        }
    }

    #[test]
    fn a_plan_larger_than_memory_holds_is_spilled_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let batch = OpBatch::create(&state, &Default::default()).unwrap();
        let conn = state.conn();
        let mut planned = Planned::create(conn, batch.file()).unwrap();
        let count = 3 * HOT_MAX as u64 + 7;
        let path = |i: u64| format!("d/{i:06}").into_bytes();
        for i in 0..count {
            let state = match i % 3 {
                0 => PathState::Deleted,
                1 => PathState::directory(0o755),
                _ => PathState::symlink(b"t".to_vec()),
            };
            assert_eq!(
                planned.insert(conn, &path(i), entry(state, i + 1)).unwrap(),
                None
            );
        }
        assert!(planned.largest_hot() <= HOT_MAX);
        // The first ones were written to the table, the last are in memory.
        let first = planned.get(conn, &path(0)).unwrap().unwrap();
        assert_eq!(first, entry(PathState::Deleted, 1));
        assert!(planned.contains(conn, &path(count - 1)).unwrap());
        assert!(!planned.contains(conn, b"d/x").unwrap());
        // Replaced and removed, in the table and in memory.
        let old = planned
            .insert(conn, &path(1), entry(PathState::Deleted, 99))
            .unwrap();
        assert_eq!(old, Some(entry(PathState::directory(0o755), 2)));
        assert!(planned.remove(conn, &path(2)).unwrap().is_some());
        assert_eq!(planned.get(conn, &path(2)).unwrap(), None);
        // Ranges and pages see the changes.
        assert!(!planned.any_live_in(conn, &path(0), &path(2)).unwrap());
        assert!(planned.any_live_in(conn, &path(0), &path(5)).unwrap());
        let mut seen = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        loop {
            let page = planned
                .page(conn, last.as_deref(), true, Only::Live)
                .unwrap();
            let Some((end, _)) = page.last() else { break };
            last = Some(end.clone());
            assert!(page.len() <= PAGE);
            seen.extend(page.into_iter().map(|(p, e)| {
                assert_ne!(e.state, PathState::Deleted);
                p
            }));
        }
        let mut expected: Vec<Vec<u8>> = (0..count)
            .filter(|i| i % 3 != 0 && *i != 1 && *i != 2)
            .map(path)
            .collect();
        expected.reverse();
        assert_eq!(seen, expected);
        // The commit's reading, one row at a time, in byte order.
        let mut rows = 0;
        let mut previous: Option<Vec<u8>> = None;
        planned
            .for_each_row(conn, |p, _| {
                assert!(previous.as_deref() < Some(p));
                previous = Some(p.to_vec());
                rows += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(rows, count - 1);
        batch.close(&state);
    }
}
