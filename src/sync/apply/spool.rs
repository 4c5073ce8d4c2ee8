//! The disk actions a plan derives, kept in the batch's scratch database
//! ([`super::batch`]) rather than in memory: a packet that changes a
//! million paths on disk plans two or three actions for each, and in
//! memory they cost some 360 bytes a path (a path copied into each, a
//! file's metadata), so the import's memory grew with the packet.
//!
//! The planner hands its actions over a page of paths at a time
//! ([`Actions::put`]), in three groups that run in this order: removals
//! (deepest path first), creations (in the order planned), then the
//! directories' modes and times (deepest path first, so a directory's
//! time is set after everything below it). The table `batch.actions`
//! holds each action's journal encoding with its group, its path and its
//! place in the group; the commit copies them into the journal in that
//! order inside its one transaction ([`Actions::journal_into`]), and the
//! journal is then run a page at a time from the state database
//! ([`super::JournalPages`]). Memory holds at most [`HELD`] actions.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use super::journal::Action;
use crate::error::{Error, Result};

/// At most this many actions wait in memory before they are written to
/// the table.
pub const HELD: usize = 4096;

/// The groups of actions, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// Removals, deepest path first (ties in the order given).
    Removals = 0,
    /// Creations and metadata of files and links, in the order given.
    Creations = 1,
    /// Directories' modes, metadata and times, deepest path first (ties
    /// in the reverse of the order given).
    DirModes = 2,
}

/// A scratch table's file and the words its errors use: what the batch
/// was doing when a write failed, and what the table holds.
#[derive(Debug)]
struct Scratch {
    file: PathBuf,
    doing: &'static str,
    what: &'static str,
}

impl Scratch {
    fn write_error(&self, e: rusqlite::Error) -> Error {
        super::batch::write_error(&self.file, e, || self.doing.to_string(), |e| self.error(e))
    }

    fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::CorruptState {
            path: self.file.clone(),
            what: format!("{}: {what}", self.what),
        }
    }
}

/// A row waiting to be written: group, place in the group, path, encoding.
type Row = (i64, i64, Vec<u8>, Vec<u8>);

/// The actions of one plan, in `batch.actions`: see the module
/// documentation.
#[derive(Debug)]
pub(crate) struct Actions {
    held: Vec<Row>,
    /// The next place given in any group (rising: only the order within
    /// a group matters).
    next: i64,
    /// The next place given by [`Actions::put_first`] (falling).
    first: i64,
    len: u64,
    /// The scratch database's file and the words of its errors.
    table: Scratch,
}

impl Actions {
    /// An empty table `batch.actions` (the batch's scratch database must
    /// be attached to `conn` as `batch`; `file` is its file, for errors).
    pub fn create(conn: &Connection, file: &Path) -> Result<Actions> {
        let actions = Actions {
            held: Vec::new(),
            next: 0,
            first: -1,
            len: 0,
            table: Scratch {
                file: file.to_path_buf(),
                doing: "planning the packet's disk actions",
                what: "disk actions of the batch",
            },
        };
        conn.execute_batch(
            "DROP TABLE IF EXISTS batch.actions;
             CREATE TABLE batch.actions (
                 grp INTEGER NOT NULL,
                 place INTEGER NOT NULL,
                 path BLOB NOT NULL,
                 action BLOB NOT NULL
             );",
        )
        .map_err(|e| actions.table.write_error(e))?;
        Ok(actions)
    }

    /// Adds `actions` to `group`, after those it holds.
    pub fn put(
        &mut self,
        conn: &Connection,
        group: Group,
        actions: impl IntoIterator<Item = Action>,
    ) -> Result<()> {
        for action in actions {
            let place = self.next;
            self.next += 1;
            self.hold(conn, group, place, &action)?;
        }
        Ok(())
    }

    /// Adds `action` to `group` before every action it holds (and before
    /// those given this way earlier).
    pub fn put_first(&mut self, conn: &Connection, group: Group, action: &Action) -> Result<()> {
        let place = self.first;
        self.first -= 1;
        self.hold(conn, group, place, action)
    }

    fn hold(&mut self, conn: &Connection, group: Group, place: i64, action: &Action) -> Result<()> {
        self.held
            .push((group as i64, place, action.path().to_vec(), action.encode()));
        self.len += 1;
        if self.held.len() >= HELD {
            self.flush(conn)?;
        }
        Ok(())
    }

    /// Writes the actions held in memory to the table.
    pub fn flush(&mut self, conn: &Connection) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let write = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO batch.actions (grp, place, path, action) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (group, place, path, action) in &held {
                    insert.execute(params![group, place, path, action])?;
                }
            }
            tx.commit()
        };
        write().map_err(|e| self.table.write_error(e))
    }

    /// How many actions the plan has.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Calls `f` with the path of every action (a path once per action),
    /// one row at a time, through `conn` (the commit's transaction). The
    /// actions must be flushed ([`Actions::flush`]).
    pub fn for_each_path<E: From<Error>>(
        &self,
        conn: &Connection,
        mut f: impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        debug_assert!(self.held.is_empty(), "read before flush");
        let mut statement = conn
            .prepare("SELECT path FROM batch.actions")
            .map_err(|e| self.table.error(e))?;
        let mut rows = statement.query([]).map_err(|e| self.table.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.table.error(e))? {
            let path: Vec<u8> = row.get(0).map_err(|e| self.table.error(e))?;
            f(&path)?;
        }
        Ok(())
    }

    /// Copies every action into the journal table `main.pending_apply`, in
    /// the order they run (numbered from 0), through `conn` (the commit's
    /// transaction); returns how many. The actions must be flushed.
    pub fn journal_into(&self, conn: &Connection) -> rusqlite::Result<u64> {
        debug_assert!(self.held.is_empty(), "read before flush");
        conn.execute(
            "INSERT INTO main.pending_apply (seq, action)
             SELECT row_number() OVER (
                        ORDER BY grp,
                                 CASE WHEN grp = 1 THEN X'' ELSE path END DESC,
                                 CASE WHEN grp = 2 THEN -place ELSE place END
                    ) - 1,
                    action
             FROM batch.actions",
            [],
        )
        .map(|rows| rows as u64)
    }
}

/// The folders whose content a plan changes (each once), in the table
/// `batch.folders` of the batch's scratch database rather than a set in
/// memory: a packet that adds a file to each of a million folders has a
/// million of them. Memory holds at most [`HELD`] before they are written.
#[derive(Debug)]
pub(crate) struct Folders {
    held: std::collections::BTreeSet<Vec<u8>>,
    table: Scratch,
}

impl Folders {
    /// An empty table `batch.folders` (`file` is the scratch database's,
    /// for errors).
    pub fn create(conn: &Connection, file: &Path) -> Result<Folders> {
        let folders = Folders {
            held: Default::default(),
            table: Scratch {
                file: file.to_path_buf(),
                doing: "noting the folders whose content changes",
                what: "folders of the batch",
            },
        };
        conn.execute_batch(
            "DROP TABLE IF EXISTS batch.folders;
             CREATE TABLE batch.folders (path BLOB PRIMARY KEY) WITHOUT ROWID;",
        )
        .map_err(|e| folders.table.write_error(e))?;
        Ok(folders)
    }

    /// Adds `path` (once, however often it is given).
    pub fn insert(&mut self, conn: &Connection, path: &[u8]) -> Result<()> {
        if !self.held.contains(path) {
            self.held.insert(path.to_vec());
            if self.held.len() >= HELD {
                self.flush(conn)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, conn: &Connection) -> Result<()> {
        let held = std::mem::take(&mut self.held);
        let write = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            {
                let mut insert =
                    tx.prepare_cached("INSERT OR IGNORE INTO batch.folders (path) VALUES (?1)")?;
                for path in &held {
                    insert.execute([path])?;
                }
            }
            tx.commit()
        };
        write().map_err(|e| self.table.write_error(e))
    }

    /// Calls `f` with every folder, in byte order, a page of 1,024 at a
    /// time (`f` may write other tables of the scratch database).
    pub fn for_each(
        mut self,
        conn: &Connection,
        mut f: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.flush(conn)?;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page: Vec<Vec<u8>> = conn
                .prepare_cached(
                    "SELECT path FROM batch.folders WHERE ?1 IS NULL OR path > ?1 \
                     ORDER BY path LIMIT 1024",
                )
                .and_then(|mut s| s.query_map([&after], |row| row.get(0))?.collect())
                .map_err(|e| self.table.error(e))?;
            for path in &page {
                f(path)?;
            }
            if page.len() < 1024 {
                return Ok(());
            }
            after = page.last().cloned();
        }
    }
}

/// The names a plan reserves under `.syncreplica/deleted/` for the
/// versions it keeps of files it replaces or removes (relative to the
/// state folder): each kept file's name, and the folders that will hold
/// it. In the table `batch.reserved` of the batch's scratch database
/// rather than in memory: a packet that replaces a million files reserves
/// a million names. Memory holds at most [`HELD`] before they are
/// written; a lookup reads those, then the table.
#[derive(Debug)]
pub(crate) struct ReservedNames {
    /// Name -> whether it is a kept file's (else a folder's).
    held: std::collections::BTreeMap<Vec<u8>, bool>,
    table: Scratch,
}

impl ReservedNames {
    /// An empty table `batch.reserved` (`file` is the scratch database's,
    /// for errors).
    pub fn create(conn: &Connection, file: &Path) -> Result<ReservedNames> {
        let names = ReservedNames {
            held: Default::default(),
            table: Scratch {
                file: file.to_path_buf(),
                doing: "reserving names for the versions kept",
                what: "names reserved by the batch",
            },
        };
        conn.execute_batch(
            "DROP TABLE IF EXISTS batch.reserved;
             CREATE TABLE batch.reserved (
                 name BLOB PRIMARY KEY,
                 file INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(|e| names.table.write_error(e))?;
        Ok(names)
    }

    /// Whether `name` is reserved: `Some(true)` for a kept file's name,
    /// `Some(false)` for a folder that holds one.
    pub fn get(&self, conn: &Connection, name: &[u8]) -> Result<Option<bool>> {
        if let Some(&file) = self.held.get(name) {
            return Ok(Some(file));
        }
        use rusqlite::OptionalExtension;
        conn.prepare_cached("SELECT file FROM batch.reserved WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |row| row.get(0)).optional())
            .map_err(|e| self.table.error(e))
    }

    /// Reserves `name`, a kept file's (`file`) or a folder's. A folder
    /// already reserved stays as it is.
    pub fn insert(&mut self, conn: &Connection, name: &[u8], file: bool) -> Result<()> {
        self.held.entry(name.to_vec()).or_insert(file);
        if self.held.len() >= HELD {
            self.flush(conn)?;
        }
        Ok(())
    }

    fn flush(&mut self, conn: &Connection) -> Result<()> {
        let held = std::mem::take(&mut self.held);
        let write = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO batch.reserved (name, file) VALUES (?1, ?2)",
                )?;
                for (name, file) in &held {
                    insert.execute(params![name, file])?;
                }
            }
            tx.commit()
        };
        write().map_err(|e| self.table.write_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state::State;
    use crate::sync::apply::batch::OpBatch;

    fn dir(path: &str) -> Action {
        Action::MakeDir {
            path: path.as_bytes().to_vec(),
            mode: 0o755,
        }
    }

    fn remove(path: &str) -> Action {
        Action::RemoveDir {
            path: path.as_bytes().to_vec(),
        }
    }

    fn mode(path: &str) -> Action {
        Action::SetDirMode {
            path: path.as_bytes().to_vec(),
            mode: 0o700,
        }
    }

    fn time(path: &str) -> Action {
        Action::SetDirTime {
            path: path.as_bytes().to_vec(),
            mtime: Default::default(),
        }
    }

    /// The order the planner gave before the actions were spooled: the
    /// removals sorted deepest first, the creations as given, the
    /// directories' actions (those put first in front) reversed, then
    /// sorted deepest first (stable sorts).
    fn in_memory_order(
        removals: &[Action],
        creations: &[Action],
        first: &[Action],
        dir_modes: &[Action],
    ) -> Vec<Action> {
        let mut removals = removals.to_vec();
        removals.sort_by(|a, b| b.path().cmp(a.path()));
        let mut modes: Vec<Action> = first.iter().rev().cloned().collect();
        modes.extend(dir_modes.iter().cloned());
        let mut modes: Vec<Action> = modes.into_iter().rev().collect();
        modes.sort_by(|a, b| b.path().cmp(a.path()));
        let mut all = removals;
        all.extend(creations.iter().cloned());
        all.extend(modes);
        all
    }

    #[test]
    fn spooled_actions_are_journalled_in_the_order_the_planner_gave() {
        let dir_ = tempfile::tempdir().unwrap();
        let mut state = State::open(dir_.path()).unwrap();
        let batch = OpBatch::create(&state, &Default::default()).unwrap();
        let mut actions = Actions::create(state.conn(), batch.file()).unwrap();
        // More than is held in memory, in pages as the planner gives them.
        let (mut removals, mut creations, mut first, mut modes) = (vec![], vec![], vec![], vec![]);
        for page in 0..3 {
            let (mut r, mut c, mut m): (Vec<Action>, Vec<Action>, Vec<Action>) =
                (vec![], vec![], vec![]);
            for i in 0..HELD / 2 {
                let p = format!("p{page}/{:05}", (i * 7919) % (HELD / 2));
                r.push(remove(&format!("{p}/x")));
                // Same path twice: ties keep the order given.
                r.push(Action::RemoveSpecial {
                    path: format!("{p}/x").into_bytes(),
                });
                c.push(dir(&p));
                m.push(Action::SetDirMode {
                    path: p.clone().into_bytes(),
                    mode: 0o755,
                });
                m.push(mode(&p));
            }
            removals.extend(r.iter().cloned());
            creations.extend(c.iter().cloned());
            modes.extend(m.iter().cloned());
            actions
                .put(state.conn(), Group::Removals, r.drain(..))
                .unwrap();
            actions
                .put(state.conn(), Group::Creations, c.drain(..))
                .unwrap();
            actions
                .put(state.conn(), Group::DirModes, m.drain(..))
                .unwrap();
        }
        for parent in ["p0", "p1", "p2", "q"] {
            first.push(time(parent));
            actions
                .put_first(state.conn(), Group::DirModes, &time(parent))
                .unwrap();
        }
        actions.flush(state.conn()).unwrap();
        let expected = in_memory_order(&removals, &creations, &first, &modes);
        assert_eq!(actions.len(), expected.len() as u64);
        let journalled = state
            .transaction(|tx| {
                crate::store::state::create_pending_apply(tx)?;
                let n = actions.journal_into(tx)?;
                let mut paths = 0u64;
                actions.for_each_path(tx, |_| -> std::result::Result<(), Error> {
                    paths += 1;
                    Ok(())
                })?;
                assert_eq!(paths, n);
                let mut statement =
                    tx.prepare("SELECT seq, action FROM pending_apply ORDER BY seq")?;
                let rows: Vec<(i64, Vec<u8>)> = statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(rows)
            })
            .unwrap();
        for (index, (seq, _)) in journalled.iter().enumerate() {
            assert_eq!(*seq, index as i64);
        }
        let decoded: Vec<Action> = journalled
            .iter()
            .map(|(_, bytes)| Action::decode(bytes).unwrap())
            .collect();
        assert!(decoded == expected, "the journal's order differs");
        batch.close(&state);
    }
}

/// The operations this replica records itself in a batch (conflict
/// copies, resolutions, folders made again), in the table
/// `batch.local_ops` of the batch's scratch database rather than a list in
/// memory: a packet of concurrent versions can make one of each of its
/// operations. Memory holds at most [`HELD`] before they are written; the
/// commit reads them back a row at a time ([`LocalOps::for_each`]).
#[derive(Debug)]
pub(crate) struct LocalOps {
    held: Vec<crate::ops::Operation>,
    len: u64,
    /// The first and last epochs given.
    first: Option<u64>,
    last: Option<u64>,
    table: Scratch,
}

impl LocalOps {
    /// An empty table `batch.local_ops` (`file` is the scratch database's,
    /// for errors).
    pub fn create(conn: &Connection, file: &Path) -> Result<LocalOps> {
        let ops = LocalOps {
            held: Vec::new(),
            len: 0,
            first: None,
            last: None,
            table: Scratch {
                file: file.to_path_buf(),
                doing: "noting this replica's own operations of the batch",
                what: "this replica's operations of the batch",
            },
        };
        conn.execute_batch(
            "DROP TABLE IF EXISTS batch.local_ops;
             CREATE TABLE batch.local_ops (epoch INTEGER PRIMARY KEY, op BLOB NOT NULL);",
        )
        .map_err(|e| ops.table.write_error(e))?;
        Ok(ops)
    }

    /// Adds `op`, whose epoch follows the last one's.
    pub fn push(&mut self, conn: &Connection, op: crate::ops::Operation) -> Result<()> {
        self.first.get_or_insert(op.epoch);
        self.last = Some(op.epoch);
        self.held.push(op);
        self.len += 1;
        if self.held.len() >= HELD {
            self.flush(conn)?;
        }
        Ok(())
    }

    /// Writes the operations held in memory to the table.
    pub fn flush(&mut self, conn: &Connection) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let write = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            {
                let mut insert =
                    tx.prepare_cached("INSERT INTO batch.local_ops (epoch, op) VALUES (?1, ?2)")?;
                for op in &held {
                    insert.execute(params![op.epoch as i64, op.encode()])?;
                }
            }
            tx.commit()
        };
        write().map_err(|e| self.table.write_error(e))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first and last epochs of the operations, if any.
    pub fn epochs(&self) -> Option<(u64, u64)> {
        self.first.zip(self.last)
    }

    /// Calls `f` with every operation in epoch order, one row at a time,
    /// through `conn` (the commit's transaction). Must be flushed.
    pub fn for_each<E: From<Error>>(
        &self,
        conn: &Connection,
        mut f: impl FnMut(&crate::ops::Operation) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        debug_assert!(self.held.is_empty(), "read before flush");
        if self.len == 0 {
            return Ok(());
        }
        let mut statement = conn
            .prepare("SELECT op FROM batch.local_ops ORDER BY epoch")
            .map_err(|e| self.table.error(e))?;
        let mut rows = statement.query([]).map_err(|e| self.table.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.table.error(e))? {
            let bytes: Vec<u8> = row.get(0).map_err(|e| self.table.error(e))?;
            let op = crate::ops::Operation::decode(&bytes).map_err(|e| self.table.error(e))?;
            f(&op)?;
        }
        Ok(())
    }
}
