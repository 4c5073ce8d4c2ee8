//! The state database, `.syncreplica/state.db` (SQLite, WAL mode).
//!
//! It holds the recorded state of every path, the operation log, the epoch
//! table, the family's members and a log of packets sent and received.
//! Every change is made inside a transaction, so a crash leaves the
//! database as it was before or after a command's change, never between.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{Error, Result};
use crate::ops::{ChunkId, Id, Operation, PathState, VersionVector};
use crate::store::layout::STATE_DB_FILE;
use packet_format::seals::{Seal, SealTail, Signature};

/// The error of a [`State::transaction`] body: SQL errors get the
/// database's path when they leave the transaction, so none is ever
/// reported without it.
#[derive(Debug)]
pub enum TxError {
    Sql(rusqlite::Error),
    Other(Error),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> TxError {
        TxError::Sql(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> TxError {
        TxError::Other(e)
    }
}

/// 2: operations and states in packet format 2's encoding (SPEC.md §6).
const SCHEMA_VERSION: i64 = 2;

/// The entries an import placed and [`mark_placed`] has not marked yet:
/// a few at a time, so the index stays about as small as one batch. In
/// [`SCHEMA`] too (same name, same columns and condition).
const PLACED_INDEX: &str = "CREATE INDEX IF NOT EXISTS entries_placed ON entries (path)
     WHERE ctime_ns IS NULL AND scanned_ns IS NULL;";

const SCHEMA: &str = "
CREATE TABLE members (
    replica     BLOB PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    public_key  BLOB NOT NULL,
    added_ns    INTEGER NOT NULL
);
-- Recorded state of every path. Deleted paths stay as tombstones (state
-- Deleted) so their version vectors take part in conflict detection.
-- The stat columns are what the scan's fast path compares; NULL when the
-- path has not been stat'ed since it was last written.
CREATE TABLE entries (
    path        BLOB PRIMARY KEY,
    state       BLOB NOT NULL,
    version     BLOB NOT NULL,
    size        INTEGER,
    mtime_ns    INTEGER,
    ctime_ns    INTEGER,
    inode       INTEGER,
    mode        INTEGER,
    scanned_ns  INTEGER,
    -- Replica whose operation produced this state (this replica for local
    -- changes): names conflict copies the same way at every replica.
    author      BLOB NOT NULL
);
CREATE INDEX entries_placed ON entries (path)
    WHERE ctime_ns IS NULL AND scanned_ns IS NULL;
CREATE TABLE oplog (
    origin      BLOB NOT NULL,
    epoch       INTEGER NOT NULL,
    op          BLOB NOT NULL,
    PRIMARY KEY (origin, epoch)
);
-- Row `row_replica` says: that member has `origin`'s operations up to
-- `epoch`. This replica's own row is exact; the others are estimates.
CREATE TABLE epochs (
    row_replica BLOB NOT NULL,
    origin      BLOB NOT NULL,
    epoch       INTEGER NOT NULL,
    PRIMARY KEY (row_replica, origin)
);
-- Origin seals (packet SPEC.md §7): an origin's signature over a run of
-- its operations, kept to authenticate them to every later receiver. A
-- seal with a tail covers this replica's share of a run it holds only in
-- part (epochs first .. tail_epoch - 1).
CREATE TABLE seals (
    origin      BLOB NOT NULL,
    first       INTEGER NOT NULL,
    last        INTEGER NOT NULL,
    signature   BLOB NOT NULL,
    tail_epoch  INTEGER,
    tail_link   BLOB,
    PRIMARY KEY (origin, first)
);
CREATE TABLE packets (
    id          INTEGER PRIMARY KEY,
    direction   TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
    peer        BLOB NOT NULL,
    packet_id   TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    file_name   TEXT NOT NULL,
    at_ns       INTEGER NOT NULL
);
";

/// Stat fields that the scan's fast path compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatKey {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub mode: u32,
}

/// Every recorded entry by path ([`State::load_entries`]). Hashed with
/// foldhash: SipHash, the standard map's, was a tenth of a scan of 20,000
/// clean files (each path hashed when loaded and again when looked up).
/// Paths also come from other members' packets; foldhash's seed is drawn
/// per process, so no sender can choose paths that collide here.
pub type Entries = HashMap<Vec<u8>, RecordedEntry, foldhash::fast::RandomState>;

/// What the database knows of one path.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEntry {
    pub state: PathState,
    pub version: VersionVector,
    pub stat: Option<StatKey>,
    /// Wall-clock start of the scan that took `stat`, for the racy check.
    pub scanned_ns: Option<i64>,
    /// Replica whose operation produced `state`.
    pub author: Id,
}

/// A member of the family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub replica: Id,
    pub name: String,
    pub public_key: [u8; 32],
}

/// One packet in the sent/received log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketLogEntry {
    pub sequence: u64,
    pub file_name: String,
    pub at_ns: i64,
}

pub struct State {
    conn: Connection,
    path: PathBuf,
}

/// Column `column` of `row`, a BLOB, borrowed where SQLite holds it; any
/// other type is the error `row.get::<_, Vec<u8>>` gives (the column's
/// name and the type found).
fn blob_column<'r>(row: &'r rusqlite::Row, column: usize) -> rusqlite::Result<&'r [u8]> {
    let value = row.get_ref(column)?;
    value.as_blob().map_err(|_| {
        rusqlite::Error::InvalidColumnType(
            column,
            row.as_ref().column_name(column).unwrap_or("?").to_string(),
            value.data_type(),
        )
    })
}

impl State {
    /// Opens (and on first use creates) the database in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<State> {
        let path = state_dir.join(STATE_DB_FILE);
        let conn = Connection::open(&path).map_err(|source| Error::Database {
            path: path.clone(),
            cause: source,
        })?;
        let state = State { conn, path };
        state.configure()?;
        Ok(state)
    }

    /// Opens the database in `state_dir` for reading only, for the
    /// listing commands: it works for a user who may read the replica but
    /// not write it, and on a read-only filesystem. Nothing is created,
    /// converted or checkpointed.
    ///
    /// SQLite reads a WAL database through its `-shm` index, which it
    /// creates if missing. Where it cannot (a folder the user may not
    /// write, a read-only filesystem) and the `-wal` file is absent or
    /// empty, every committed transaction is in the main file, which is
    /// then opened `immutable=1` (no locks, no `-shm`). A non-empty `-wal`
    /// that cannot be indexed is an error rather than a stale read.
    pub fn open_read_only(state_dir: &Path) -> Result<State> {
        let path = state_dir.join(STATE_DB_FILE);
        // SQLite would create a missing file even read-only via a URI:
        // report it as the missing file it is.
        std::fs::metadata(&path).map_err(|cause| Error::Io {
            path: path.clone(),
            cause,
        })?;
        let state = match State::open_uri(&path, "mode=ro") {
            Ok(state) => state,
            Err(err) => {
                let wal = state_dir.join(format!("{STATE_DB_FILE}-wal"));
                let wal_empty = match std::fs::metadata(&wal) {
                    Ok(meta) => meta.len() == 0,
                    Err(e) => e.kind() == std::io::ErrorKind::NotFound,
                };
                if !wal_empty {
                    return Err(err);
                }
                State::open_uri(&path, "immutable=1").map_err(|_| err)?
            }
        };
        Ok(state)
    }

    fn open_uri(path: &Path, parameters: &str) -> Result<State> {
        use rusqlite::OpenFlags;
        let uri = format!("file:{}?{parameters}", uri_path(path));
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&uri, flags).map_err(|cause| Error::Database {
            path: path.to_path_buf(),
            cause,
        })?;
        let state = State {
            conn,
            path: path.to_path_buf(),
        };
        let db = |source| state.db_error(source);
        // A read-only connection cannot checkpoint; say so anyway, so
        // closing it never tries to.
        state
            .conn
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(db)?;
        state
            .conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        // Reading the schema version makes SQLite open the file (and its
        // WAL) now, so a failure shows here and not in the first query.
        let version: i64 = state
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(db)?;
        match version {
            SCHEMA_VERSION => Ok(state),
            0 => Err(state.corrupt("not initialised (no schema)")),
            found => Err(Error::SchemaVersion {
                path: state.path.clone(),
                found,
                known: SCHEMA_VERSION,
            }),
        }
    }

    /// Whether the connection is read-only (opened by [`State::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
    }

    fn configure(&self) -> Result<()> {
        let db = |source| self.db_error(source);
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::CorruptState {
                path: self.path.clone(),
                what: format!("cannot switch to WAL journal mode (got {mode})"),
            });
        }
        // FULL: a committed transaction survives power loss, which matters
        // more here than write speed.
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(db)?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(db)?;
        match version {
            0 => {
                let tx = self.conn.unchecked_transaction().map_err(db)?;
                tx.execute_batch(SCHEMA).map_err(db)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(db)?;
                tx.commit().map_err(db)
            }
            SCHEMA_VERSION => Ok(()),
            found => Err(Error::SchemaVersion {
                path: self.path.clone(),
                found,
                known: SCHEMA_VERSION,
            }),
        }
    }

    /// The connection, for a batch's scratch database attached to it
    /// (`sync::apply::batch`).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn db_error(&self, source: rusqlite::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            cause: source,
        }
    }

    fn db_error_at(path: &Path, source: rusqlite::Error) -> Error {
        Error::Database {
            path: path.to_path_buf(),
            cause: source,
        }
    }

    /// The error for a failed write of the database at `path`:
    /// [`Error::StateFull`] when its filesystem is full (SQLite says so, or
    /// an I/O error meets a full filesystem), else [`Error::Database`].
    fn write_error_at(path: &Path, source: rusqlite::Error) -> Error {
        let dir = path.parent().unwrap_or(Path::new("."));
        let free = crate::sys::fsutil::free_space(dir).ok();
        let full = match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => true,
            // A write that failed for want of room can surface as an I/O
            // error: then the filesystem has (next to) nothing left.
            Some(rusqlite::ErrorCode::SystemIoFailure) => free.is_some_and(|f| f < 64 * 1024),
            _ => false,
        };
        if !full {
            return Self::db_error_at(path, source);
        }
        Error::StateFull {
            file: path.to_path_buf(),
            mount: crate::sys::fsutil::mount_point(dir),
            free: free.unwrap_or(0),
        }
    }

    fn corrupt(&self, what: impl Into<String>) -> Error {
        Error::CorruptState {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    /// Runs `body` in one transaction: all of it is committed, or none.
    /// SQL errors inside `body` leave it as [`Error::Database`] naming this
    /// database.
    pub fn transaction<T>(
        &mut self,
        body: impl FnOnce(&Transaction) -> std::result::Result<T, TxError>,
    ) -> Result<T> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| Self::db_error_at(&path, e))?;
        let value = body(&tx).map_err(|err| match err {
            TxError::Sql(source) => Self::write_error_at(&path, source),
            TxError::Other(other) => other,
        })?;
        tx.commit().map_err(|e| Self::write_error_at(&path, e))?;
        Ok(value)
    }

    /// The encryption key (age X25519 recipient, `age1...`) announced for
    /// `replica`, if any (issue 15).
    pub fn member_encryption_key(&self, replica: &Id) -> Result<Option<String>> {
        if !self.has_table("member_keys")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT encryption_key FROM member_keys WHERE replica = ?1",
                [replica.0.as_slice()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.db_error(source))
    }

    /// Whether the database has table `name`, asked without creating it:
    /// tables made on first use are read this way, so that a read-only
    /// connection works before they exist.
    fn has_table(&self, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [name],
                |row| row.get::<_, bool>(0),
            )
            .map_err(|source| self.db_error(source))
    }

    /// The packed pieces of `chunk` ([`crate::tree::chunking::pack_pieces`]),
    /// if a scan or an import recorded them.
    pub fn chunk_pieces(&self, chunk: &ChunkId) -> Result<Option<Vec<u8>>> {
        if !self.has_table("chunk_pieces")? {
            return Ok(None);
        }
        self.conn
            .prepare_cached("SELECT pieces FROM chunk_pieces WHERE chunk = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([chunk.as_slice()], |row| row.get(0))
                    .optional()
            })
            .map_err(|source| self.db_error(source))
    }

    /// Whether the state has a table of chunk pieces (the first scan or
    /// import that records some makes it).
    pub fn records_chunk_pieces(&self) -> Result<bool> {
        self.has_table("chunk_pieces")
    }

    /// Whether the pieces of `chunk` are recorded; only once
    /// [`State::records_chunk_pieces`].
    pub fn has_chunk_pieces(&self, chunk: &ChunkId) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM chunk_pieces WHERE chunk = ?1")
            .and_then(|mut statement| statement.exists([chunk.as_slice()]))
            .map_err(|source| self.db_error(source))
    }

    /// [`put_chunk_pieces`] in a transaction of its own, outside any
    /// other (a scan's pages, see [`crate::tree::scan::PieceStore`]): the
    /// rows are true of their chunks whatever else is recorded, so they
    /// need not wait for it.
    pub fn put_chunk_pieces_now(&self, page: &[(ChunkId, Vec<u8>)]) -> Result<()> {
        let write = |source| Self::write_error_at(&self.path, source);
        let tx = self.conn.unchecked_transaction().map_err(write)?;
        put_chunk_pieces(&tx, page).map_err(write)?;
        tx.commit().map_err(write)
    }

    /// Content requests (see `crate::sync::delta`) with `peer` in `role`
    /// (`asked`: this replica asked `peer`; `to_answer`: `peer` asked this
    /// replica; `answered`: this replica answered `peer`): each path and
    /// when.
    pub fn content_requests(&self, peer: &Id, role: &str) -> Result<Vec<(Vec<u8>, i64)>> {
        let db = |source| self.db_error(source);
        if !self.has_table("content_requests")? {
            return Ok(Vec::new());
        }
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT path, at_ns FROM content_requests WHERE peer = ?1 AND role = ?2
                 ORDER BY path",
            )
            .map_err(db)?;
        let rows = statement
            .query_map(params![peer.0.as_slice(), role], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// The last epoch of `origin` whose content requests this replica
    /// took (see [`note_requests_taken`]); 0 for none.
    pub fn requests_taken_through(&self, origin: &Id) -> Result<u64> {
        let db = |source| self.db_error(source);
        if !self.has_table("content_requests_taken")? {
            return Ok(0);
        }
        let epoch: Option<i64> = self
            .conn
            .query_row(
                "SELECT epoch FROM content_requests_taken WHERE origin = ?1",
                params![origin.0.as_slice()],
                |row| row.get(0),
            )
            .optional()
            .map_err(db)?;
        Ok(epoch.map_or(0, |e| e as u64))
    }

    /// The paths other members than `peer` asked this replica for whole
    /// (content requests to answer or answered): their re-assertions
    /// answer those members, and say nothing of what `peer` holds.
    pub fn paths_requested_by_others(
        &self,
        peer: &Id,
    ) -> Result<std::collections::HashSet<Vec<u8>>> {
        let db = |source| self.db_error(source);
        if !self.has_table("content_requests")? {
            return Ok(std::collections::HashSet::new());
        }
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT path FROM content_requests WHERE peer != ?1
                 AND role IN ('to_answer', 'answered')",
            )
            .map_err(db)?;
        let rows = statement
            .query_map(params![peer.0.as_slice()], |row| row.get(0))
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// The disk steps of imports that failed for good, oldest first, read
    /// without creating their table (so it works on a read-only
    /// connection).
    pub fn failed_steps(&self) -> Result<Vec<FailedStep>> {
        let db = |source| self.db_error(source);
        if !self.has_table("failed_apply")? {
            return Ok(Vec::new());
        }
        let mut statement = self
            .conn
            .prepare("SELECT path, source, at_ns, step, error FROM failed_apply ORDER BY id")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok(FailedStep {
                    path: row.get(0)?,
                    source: row.get(1)?,
                    at_ns: row.get(2)?,
                    step: row.get(3)?,
                    error: row.get(4)?,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// Whether the apply journal holds actions, read without creating its
    /// table (so it works on a read-only connection).
    pub fn has_pending_apply(&self) -> Result<bool> {
        let db = |source| self.db_error(source);
        if !self.has_table("pending_apply")? {
            return Ok(false);
        }
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM pending_apply)", [], |row| {
                row.get::<_, bool>(0)
            })
            .map_err(db)
    }

    /// The exclude rules (`Excludes::rules`) stored by the last record
    /// that found no path missing because of them; `None` if none was
    /// stored yet. Read without creating the table, so it works on a
    /// read-only connection.
    pub fn recorded_excludes(&self) -> Result<Option<String>> {
        let db = |source| self.db_error(source);
        if !self.has_table("recorded_excludes")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT rules FROM recorded_excludes WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(db)
    }

    /// Exclude patterns (config.toml `exclude`, as in force) that left the
    /// family's paths out when this replica was made: they match
    /// something the family has, even where this tree has nothing they
    /// match. Read without creating the table.
    pub fn family_excluded(&self) -> Result<Vec<String>> {
        let db = |source| self.db_error(source);
        if !self.has_table("family_excluded")? {
            return Ok(Vec::new());
        }
        let mut statement = self
            .conn
            .prepare("SELECT pattern FROM family_excluded ORDER BY pattern")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<String>>>().map_err(db)
    }

    /// The member this replica mirrors (`mkreplica -import -mirror`,
    /// `chreplica -mirror`), or `None` for an ordinary member.
    pub fn mirror_upstream(&self) -> Result<Option<Id>> {
        let db = |source| self.db_error(source);
        if !self.has_table("mirror")? {
            return Ok(None);
        }
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT upstream FROM mirror WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(db)?;
        Ok(blob.and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok().map(Id)))
    }

    /// The items of `preserve` (and whether as root) the recorded state
    /// was last reconciled with ([`crate::store::config::Preserve::kept_bits`]);
    /// `None` for a replica made before this was remembered.
    pub fn kept_items(&self) -> Result<Option<u32>> {
        if !self.has_table("kept_items")? {
            return Ok(None);
        }
        self.conn
            .query_row("SELECT items FROM kept_items WHERE id = 1", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()
            .map(|items| items.map(|i| i as u32))
            .map_err(|source| self.db_error(source))
    }

    /// Every recorded entry, tombstones included, keyed by path.
    pub fn load_entries(&self) -> Result<Entries> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare(
                "SELECT path, state, version, size, mtime_ns, ctime_ns, inode, mode, scanned_ns,
                 author FROM entries",
            )
            .map_err(db)?;
        // Sized once: growing the map rehashed every path several times
        // over (a sixth of reading 20,000 entries).
        let count: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM entries", [], |row| row.get(0))
            .map_err(db)?;
        let mut rows = statement.query([]).map_err(db)?;
        let mut entries = Entries::with_capacity_and_hasher(
            usize::try_from(count).unwrap_or(0),
            Default::default(),
        );
        // The encoded columns are decoded where SQLite holds them, not
        // copied out first (`blob_column`).
        while let Some(row) = rows.next().map_err(db)? {
            let path: Vec<u8> = blob_column(row, 0).map_err(db)?.to_vec();
            let state = blob_column(row, 1).map_err(db)?;
            let version = blob_column(row, 2).map_err(db)?;
            let size: Option<i64> = row.get(3).map_err(db)?;
            let stat = match size {
                Some(size) => Some(StatKey {
                    size: size as u64,
                    mtime_ns: row.get(4).map_err(db)?,
                    ctime_ns: row.get(5).map_err(db)?,
                    inode: row.get::<_, i64>(6).map_err(db)? as u64,
                    mode: row.get(7).map_err(db)?,
                }),
                None => None,
            };
            let entry = RecordedEntry {
                state: postcard::from_bytes(state)
                    .map_err(|e| self.corrupt(format!("entry state: {e}")))?,
                version: postcard::from_bytes(version)
                    .map_err(|e| self.corrupt(format!("entry version: {e}")))?,
                stat,
                scanned_ns: row.get(8).map_err(db)?,
                author: Id(blob_column(row, 9)
                    .map_err(db)?
                    .try_into()
                    .map_err(|_| self.corrupt("entry author: bad replica id"))?),
            };
            entries.insert(path, entry);
        }
        crate::sys::testhook::count("entries-read", entries.len() as u64);
        Ok(entries)
    }

    pub fn members(&self) -> Result<Vec<Member>> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare("SELECT replica, name, public_key FROM members ORDER BY name")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(db)?;
        let mut members = Vec::new();
        for row in rows {
            let (replica, name, key) = row.map_err(db)?;
            members.push(Member {
                replica: Id(replica
                    .try_into()
                    .map_err(|_| self.corrupt(format!("member {name}: bad replica id")))?),
                public_key: key
                    .try_into()
                    .map_err(|_| self.corrupt(format!("member {name}: bad public key")))?,
                name,
            });
        }
        Ok(members)
    }

    /// The epoch table: row replica -> origin -> highest epoch.
    pub fn epoch_table(&self) -> Result<HashMap<Id, HashMap<Id, u64>>> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare("SELECT row_replica, origin, epoch FROM epochs")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(db)?;
        let mut table: HashMap<Id, HashMap<Id, u64>> = HashMap::new();
        for row in rows {
            let (row_replica, origin, epoch) = row.map_err(db)?;
            let id = |bytes: Vec<u8>| {
                bytes
                    .try_into()
                    .map(Id)
                    .map_err(|_| self.corrupt("epoch table: bad replica id"))
            };
            table
                .entry(id(row_replica)?)
                .or_default()
                .insert(id(origin)?, epoch as u64);
        }
        Ok(table)
    }

    /// The highest epoch `row` is known (or, for this replica, recorded) to
    /// have of `origin`.
    pub fn epoch(&self, row: &Id, origin: &Id) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT epoch FROM epochs WHERE row_replica = ?1 AND origin = ?2",
                params![row.0.as_slice(), origin.0.as_slice()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|e| e.unwrap_or(0) as u64)
            .map_err(|source| self.db_error(source))
    }

    /// The newest packet logged in `direction` ("sent"/"received") for
    /// `peer`: the highest sequence number (the sender numbers its packets
    /// to each target in order), the last logged among equals. A late
    /// duplicate of an older packet, imported after a newer one, does not
    /// take its place.
    pub fn last_packet(&self, direction: &str, peer: &Id) -> Result<Option<PacketLogEntry>> {
        self.conn
            .query_row(
                "SELECT sequence, file_name, at_ns FROM packets
                 WHERE direction = ?1 AND peer = ?2 ORDER BY sequence DESC, id DESC LIMIT 1",
                params![direction, peer.0.as_slice()],
                |row| {
                    Ok(PacketLogEntry {
                        sequence: row.get::<_, i64>(0)? as u64,
                        file_name: row.get(1)?,
                        at_ns: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|source| self.db_error(source))
    }

    /// Operations of `origin` with epochs in `after+1..=upto`, each with its
    /// local log position. Log positions order operations as this replica
    /// recorded or received them, which respects causality: an operation is
    /// only ever logged after everything it was based on.
    pub fn operations_between(
        &self,
        origin: &Id,
        after: u64,
        upto: u64,
    ) -> Result<Vec<(i64, Operation)>> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT rowid, epoch, op FROM oplog
                 WHERE origin = ?1 AND epoch > ?2 AND epoch <= ?3 ORDER BY epoch",
            )
            .map_err(db)?;
        let rows = statement
            .query_map(
                params![origin.0.as_slice(), after as i64, upto as i64],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )
            .map_err(db)?;
        let mut ops = Vec::new();
        let mut expected = after + 1;
        for row in rows {
            let (position, epoch, bytes) = row.map_err(db)?;
            if epoch as u64 != expected {
                return Err(self.corrupt(format!(
                    "the operation log of {origin} lacks epoch {expected}"
                )));
            }
            expected += 1;
            let op =
                Operation::decode(&bytes).map_err(|e| self.corrupt(format!("oplog entry: {e}")))?;
            ops.push((position, op));
        }
        if expected != upto + 1 {
            return Err(self.corrupt(format!(
                "the operation log of {origin} lacks epochs {expected}-{upto}"
            )));
        }
        Ok(ops)
    }

    /// Every logged operation, in log order, for `visit`.
    pub fn for_each_operation(&self, mut visit: impl FnMut(Operation)) -> Result<()> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare("SELECT op FROM oplog ORDER BY rowid")
            .map_err(db)?;
        let mut rows = statement.query([]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let bytes: Vec<u8> = row.get(0).map_err(db)?;
            visit(
                Operation::decode(&bytes).map_err(|e| self.corrupt(format!("oplog entry: {e}")))?,
            );
        }
        Ok(())
    }

    /// As [`Self::for_each_operation`], decoding only the operations whose
    /// encoding `wanted` accepts (a cheap look at the bytes, so that a
    /// caller interested in a few paths does not decode the whole log).
    pub fn for_each_operation_where(
        &self,
        mut wanted: impl FnMut(&[u8]) -> bool,
        mut visit: impl FnMut(Operation),
    ) -> Result<()> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare("SELECT op FROM oplog ORDER BY rowid")
            .map_err(db)?;
        let mut rows = statement.query([]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let rusqlite::types::ValueRef::Blob(bytes) = row.get_ref(0).map_err(db)? else {
                return Err(self.corrupt("oplog entry: not a blob"));
            };
            if !wanted(bytes) {
                continue;
            }
            visit(Operation::decode(bytes).map_err(|e| self.corrupt(format!("oplog entry: {e}")))?);
        }
        Ok(())
    }

    /// The encodings of `origin`'s operations `first..=last`, in epoch
    /// order, exactly as logged (what seals sign).
    /// Calls `f` with the encodings of `origin`'s logged operations
    /// `first..=last`, from the last one back, one at a time (a seal's run
    /// can be millions long); returns how many there were.
    pub fn fold_operations_backwards(
        &self,
        origin: &Id,
        first: u64,
        last: u64,
        mut f: impl FnMut(&[u8]),
    ) -> Result<u64> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT op FROM oplog WHERE origin = ?1 AND epoch >= ?2 AND epoch <= ?3
                 ORDER BY epoch DESC",
            )
            .map_err(db)?;
        let mut rows = statement
            .query(params![origin.0.as_slice(), first as i64, last as i64])
            .map_err(db)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(db)? {
            let bytes: Vec<u8> = row.get(0).map_err(db)?;
            f(&bytes);
            count += 1;
        }
        Ok(count)
    }

    pub fn operation_bytes(&self, origin: &Id, first: u64, last: u64) -> Result<Vec<Vec<u8>>> {
        operation_bytes(&self.conn, origin, first, last).map_err(|source| self.db_error(source))
    }

    /// The seals of `origin` whose runs meet `first..=last`, by first epoch.
    pub fn seals_meeting(&self, origin: &Id, first: u64, last: u64) -> Result<Vec<Seal>> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT first, last, signature, tail_epoch, tail_link FROM seals
                 WHERE origin = ?1 AND last >= ?2 AND first <= ?3 ORDER BY first",
            )
            .map_err(db)?;
        let mut rows = statement
            .query(params![origin.0.as_slice(), first as i64, last as i64])
            .map_err(db)?;
        let mut seals = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let signature: Vec<u8> = row.get(2).map_err(db)?;
            let tail_epoch: Option<i64> = row.get(3).map_err(db)?;
            let tail_link: Option<Vec<u8>> = row.get(4).map_err(db)?;
            let tail = match (tail_epoch, tail_link) {
                (Some(epoch), Some(link)) => Some(SealTail {
                    epoch: epoch as u64,
                    link: link
                        .try_into()
                        .map_err(|_| self.corrupt("seal tail link is not 32 bytes"))?,
                }),
                _ => None,
            };
            seals.push(Seal {
                origin: *origin,
                first: row.get::<_, i64>(0).map_err(db)? as u64,
                last: row.get::<_, i64>(1).map_err(db)? as u64,
                signature: Signature(
                    signature
                        .try_into()
                        .map_err(|_| self.corrupt("seal signature is not 64 bytes"))?,
                ),
                tail,
            });
        }
        Ok(seals)
    }

    /// Whether the packet log has a packet with this id.
    pub fn packet_logged(&self, packet_id: &Id) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM packets WHERE packet_id = ?1",
                params![packet_id.to_hex()],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count > 0)
            .map_err(|source| self.db_error(source))
    }

    /// The next sequence number of packets from this replica to `peer`.
    pub fn next_sequence(&self, peer: &Id) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(sequence), 0) FROM packets
                 WHERE direction = 'sent' AND peer = ?1",
                params![peer.0.as_slice()],
                |row| row.get::<_, i64>(0),
            )
            .map(|last| last as u64 + 1)
            .map_err(|source| self.db_error(source))
    }

    /// The operation `origin` numbered `epoch`, if this replica has it.
    pub fn operation(&self, origin: &Id, epoch: u64) -> Result<Option<Operation>> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT op FROM oplog WHERE origin = ?1 AND epoch = ?2",
                params![origin.0.as_slice(), epoch as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.db_error(source))?;
        bytes
            .map(|b| Operation::decode(&b).map_err(|e| self.corrupt(format!("oplog entry: {e}"))))
            .transpose()
    }
}

/// `path` as the path of an SQLite `file:` URI: `%`, `?` and `#` (and
/// any byte that is not printable ASCII) percent-encoded.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &byte in path.as_os_str().as_bytes() {
        match byte {
            b'%' | b'?' | b'#' => out.push_str(&format!("%{byte:02X}")),
            0x21..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

// Writes, used inside `State::transaction`. They take the transaction so a
// caller cannot write outside one.

pub fn insert_member(tx: &Transaction, member: &Member, added_ns: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO members (replica, name, public_key, added_ns) VALUES (?1, ?2, ?3, ?4)",
        params![
            member.replica.0.as_slice(),
            member.name,
            member.public_key.as_slice(),
            added_ns
        ],
    )
    .map(drop)
}

pub fn set_epoch(tx: &Transaction, row: &Id, origin: &Id, epoch: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO epochs (row_replica, origin, epoch) VALUES (?1, ?2, ?3)
         ON CONFLICT (row_replica, origin) DO UPDATE SET epoch = excluded.epoch",
        params![row.0.as_slice(), origin.0.as_slice(), epoch as i64],
    )
    .map(drop)
}

pub fn append_operation(tx: &Transaction, op: &Operation) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO oplog (origin, epoch, op) VALUES (?1, ?2, ?3)")?
        .execute(params![
            op.origin.0.as_slice(),
            op.epoch as i64,
            op.encode()
        ])?;
    note_member_keys(tx, op)
}

// Encryption keys of members (issue 15), from the `MemberKeys` operations
// logged: made on first use.
const MEMBER_KEYS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS member_keys (
    replica         BLOB PRIMARY KEY,
    encryption_key  TEXT NOT NULL,
    -- The operation that announced it.
    origin          BLOB NOT NULL,
    epoch           INTEGER NOT NULL
)";

/// Records the key a `MemberKeys` operation announces. A replica's own
/// announcement wins over the one the member that made it logged, and a
/// later one of the same origin over an earlier one (key rotation).
pub fn note_member_keys(tx: &Connection, op: &Operation) -> rusqlite::Result<()> {
    let Some(keys) = packet_format::ops::MemberKeys::from_change(&op.change) else {
        return Ok(());
    };
    tx.execute_batch(MEMBER_KEYS_SCHEMA)?;
    let held: Option<(Vec<u8>, i64)> = tx
        .query_row(
            "SELECT origin, epoch FROM member_keys WHERE replica = ?1",
            [keys.replica.0.as_slice()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let by_self = op.origin == keys.replica;
    let replace = match held {
        None => true,
        Some((origin, epoch)) => {
            let held_by_self = origin == keys.replica.0;
            (by_self && !held_by_self)
                || (by_self == held_by_self && origin == op.origin.0 && epoch < op.epoch as i64)
        }
    };
    if replace {
        tx.execute(
            "INSERT INTO member_keys (replica, encryption_key, origin, epoch) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (replica) DO UPDATE SET encryption_key = excluded.encryption_key,
                 origin = excluded.origin, epoch = excluded.epoch",
            params![
                keys.replica.0.as_slice(),
                keys.encryption_key,
                op.origin.0.as_slice(),
                op.epoch as i64
            ],
        )?;
    }
    Ok(())
}

/// See [`State::operation_bytes`]; also inside a transaction.
pub fn operation_bytes(
    conn: &Connection,
    origin: &Id,
    first: u64,
    last: u64,
) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut statement = conn.prepare_cached(
        "SELECT op FROM oplog WHERE origin = ?1 AND epoch >= ?2 AND epoch <= ?3 ORDER BY epoch",
    )?;
    let rows = statement.query_map(
        params![origin.0.as_slice(), first as i64, last as i64],
        |row| row.get::<_, Vec<u8>>(0),
    )?;
    rows.collect()
}

/// Seals this replica's own run `first..=last` (just logged in `tx`) with
/// its signing key and stores the seal: every command that logs operations
/// of its own does this in the same transaction, so no operation of this
/// replica's ever exists unsealed.
pub fn seal_own_run(
    tx: &Transaction,
    secret: &[u8; 32],
    origin: &Id,
    first: u64,
    last: u64,
) -> rusqlite::Result<Seal> {
    let ops = operation_bytes(tx, origin, first, last)?;
    assert_eq!(
        ops.len() as u64,
        last - first + 1,
        "the run was just logged"
    );
    let head =
        packet_format::seals::chain(ops.iter().map(Vec::as_slice), packet_format::seals::END);
    let seal = Seal::sign(secret, *origin, first, last, &head);
    put_seal(tx, &seal)?;
    Ok(seal)
}

/// Stores a seal, replacing one of the same run that covers less (a
/// shorter share, or the same share: the newer wins).
pub fn put_seal(tx: &Transaction, seal: &Seal) -> rusqlite::Result<()> {
    let existing: Option<Option<i64>> = tx
        .query_row(
            "SELECT tail_epoch FROM seals WHERE origin = ?1 AND first = ?2",
            params![seal.origin.0.as_slice(), seal.first as i64],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(existing) = existing {
        let held = existing.map_or(u64::MAX, |epoch| epoch as u64);
        let offered = seal.tail.map_or(u64::MAX, |tail| tail.epoch);
        if offered < held {
            return Ok(());
        }
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO seals (origin, first, last, signature, tail_epoch, tail_link)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        seal.origin.0.as_slice(),
        seal.first as i64,
        seal.last as i64,
        seal.signature.0.as_slice(),
        seal.tail.map(|tail| tail.epoch as i64),
        seal.tail.map(|tail| tail.link.to_vec()),
    ])
    .map(drop)
}

/// Records the packed pieces of chunks (made on first use: a second level
/// of content-defined cuts inside each chunk, 10 bytes per ~512 bytes of
/// content, about 22 MB per GiB with the table's index, that lets an
/// export send a changed chunk as a recipe over the chunk it replaces). A
/// chunk's pieces never change, so rows are only added. A rowid table:
/// rows of about 1.3 KB would spill to overflow pages in a WITHOUT ROWID
/// one (47 MB per GiB measured).
pub fn put_chunk_pieces<'a>(
    tx: &Transaction,
    pieces: impl IntoIterator<Item = &'a (ChunkId, Vec<u8>)>,
) -> rusqlite::Result<()> {
    let mut pieces = pieces.into_iter().peekable();
    if pieces.peek().is_none() {
        return Ok(());
    }
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS chunk_pieces (
             chunk  BLOB PRIMARY KEY,
             pieces BLOB NOT NULL
         )",
    )?;
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO chunk_pieces (chunk, pieces) VALUES (?1, ?2)")?;
    for (chunk, packed) in pieces {
        insert.execute(params![chunk.as_slice(), packed])?;
    }
    Ok(())
}

/// [`put_chunk_pieces`] of every row (chunk, pieces) of `table` (a
/// table of an attached scratch database, e.g. `batch.pieces`).
pub fn put_chunk_pieces_from(tx: &Transaction, table: &str) -> rusqlite::Result<()> {
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS chunk_pieces (
             chunk  BLOB PRIMARY KEY,
             pieces BLOB NOT NULL
         );
         INSERT OR IGNORE INTO main.chunk_pieces (chunk, pieces)
             SELECT chunk, pieces FROM {table};"
    ))
}

/// Notes a content request with `peer` in `role` for `path` at `at_ns`
/// (see [`State::content_requests`]), replacing an earlier one.
pub fn put_content_request(
    tx: &Transaction,
    peer: &Id,
    path: &[u8],
    role: &str,
    at_ns: i64,
) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS content_requests (
             peer  BLOB NOT NULL,
             path  BLOB NOT NULL,
             role  TEXT NOT NULL CHECK (role IN ('asked', 'to_answer', 'answered')),
             at_ns INTEGER NOT NULL,
             PRIMARY KEY (peer, path, role)
         )",
    )?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO content_requests (peer, path, role, at_ns) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![peer.0.as_slice(), path, role, at_ns])
    .map(drop)
}

/// Notes that the content request `origin`:`epoch` was taken: a request
/// taken ahead of its packet (which waited) is not taken again when the
/// packet is applied.
pub fn note_requests_taken(tx: &Transaction, origin: &Id, epoch: u64) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS content_requests_taken (
             origin BLOB PRIMARY KEY,
             epoch  INTEGER NOT NULL
         )",
    )?;
    tx.prepare_cached(
        "INSERT INTO content_requests_taken (origin, epoch) VALUES (?1, ?2)
         ON CONFLICT (origin) DO UPDATE SET epoch = max(epoch, excluded.epoch)",
    )?
    .execute(params![origin.0.as_slice(), epoch as i64])
    .map(drop)
}

/// Forgets the content request with `peer` in `role` for `path`.
pub fn forget_content_request(
    tx: &Transaction,
    peer: &Id,
    path: &[u8],
    role: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM content_requests WHERE peer = ?1 AND path = ?2 AND role = ?3")?
        .execute(params![peer.0.as_slice(), path, role])
        .map(drop)
}

/// Sets `row`'s epoch of `origin` to `epoch` if it is higher: an estimate
/// lowered so that what a member lacks is sent again.
pub fn lower_epoch(tx: &Transaction, row: &Id, origin: &Id, epoch: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE epochs SET epoch = ?3 WHERE row_replica = ?1 AND origin = ?2 AND epoch > ?3",
    )?
    .execute(params![row.0.as_slice(), origin.0.as_slice(), epoch as i64])
    .map(drop)
}

/// What `put_entry` writes for one path.
pub struct EntryWrite<'a> {
    pub path: &'a [u8],
    pub state: &'a PathState,
    pub version: &'a VersionVector,
    pub author: &'a Id,
    pub stat: Option<StatKey>,
    pub scanned_ns: Option<i64>,
}

pub fn put_entry(tx: &Transaction, entry: &EntryWrite) -> rusqlite::Result<()> {
    let EntryWrite {
        path,
        state,
        version,
        author,
        stat,
        scanned_ns,
    } = *entry;
    let state = postcard::to_stdvec(state).expect("state encodes");
    let version = postcard::to_stdvec(version).expect("version encodes");
    tx.prepare_cached(
        "INSERT OR REPLACE INTO entries
         (path, state, version, size, mtime_ns, ctime_ns, inode, mode, scanned_ns, author)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        path,
        state,
        version,
        stat.map(|s| s.size as i64),
        stat.map(|s| s.mtime_ns),
        stat.map(|s| s.ctime_ns),
        stat.map(|s| s.inode as i64),
        stat.map(|s| s.mode),
        scanned_ns,
        author.0.as_slice(),
    ])
    .map(drop)
}

/// Marks the entries an import wrote without a stat (its disk steps done
/// by `at_ns`): `scanned_ns` becomes `at_ns`, so a scan can tell a
/// change of the file's metadata made after the import (its ctime is
/// later) from what the import left (`tree::scan`: a `chgrp` that only
/// moves the ctime). Without a stat, `scanned_ns` means nothing else: such
/// an entry's file is read by the next scan whatever its time.
///
/// The rows it looks for are found through a partial index holding only
/// them ([`PLACED_INDEX`]): without it the update read the whole table,
/// 6 MB and 20 ms of a 200-file import into 20,000 files.
pub fn mark_placed(tx: &Transaction, at_ns: i64) -> rusqlite::Result<()> {
    // A state made before the index existed gets it here (once: a scan).
    tx.execute_batch(PLACED_INDEX)?;
    tx.prepare_cached(
        "UPDATE entries SET scanned_ns = ?1 WHERE ctime_ns IS NULL AND scanned_ns IS NULL",
    )?
    .execute(params![at_ns])
    .map(drop)
}

/// Updates only the fast-path columns (content unchanged).
pub fn refresh_stat(
    tx: &Transaction,
    path: &[u8],
    stat: StatKey,
    scanned_ns: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE entries SET size = ?2, mtime_ns = ?3, ctime_ns = ?4, inode = ?5, mode = ?6,
         scanned_ns = ?7 WHERE path = ?1",
    )?
    .execute(params![
        path,
        stat.size as i64,
        stat.mtime_ns,
        stat.ctime_ns,
        stat.inode as i64,
        stat.mode,
        scanned_ns
    ])
    .map(drop)
}

/// Logs a packet sent to or received from `peer`.
pub fn log_packet(
    tx: &Transaction,
    direction: &str,
    peer: &Id,
    packet_id: &Id,
    sequence: u64,
    file_name: &str,
    at_ns: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO packets (direction, peer, packet_id, sequence, file_name, at_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            direction,
            peer.0.as_slice(),
            packet_id.to_hex(),
            sequence as i64,
            file_name,
            at_ns
        ],
    )
    .map(drop)
}

/// Raises `row`'s entry for `origin` to `epoch`; never lowers it.
pub fn raise_epoch(tx: &Transaction, row: &Id, origin: &Id, epoch: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO epochs (row_replica, origin, epoch) VALUES (?1, ?2, ?3)
         ON CONFLICT (row_replica, origin) DO UPDATE SET epoch = MAX(epoch, excluded.epoch)",
        params![row.0.as_slice(), origin.0.as_slice(), epoch as i64],
    )
    .map(drop)
}

pub fn forget_entry(tx: &Transaction, path: &[u8]) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM entries WHERE path = ?1")?
        .execute(params![path])
        .map(drop)
}

// The apply journal of `crate::sync::apply`: the disk actions of a committed
// batch that are not known to be done yet. Created on first use, so older
// databases need no migration.

/// Creates the `pending_apply` journal table, and those kept with it, if
/// they do not exist.
pub fn create_pending_apply(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS pending_apply (
             seq     INTEGER PRIMARY KEY,
             action  BLOB NOT NULL
         );",
    )?;
    create_pending_apply_extras(tx)
}

// The journal's rows are written by the commit from the plan's spooled
// actions (`sync::apply::spool`) and read back a page at a time
// (`sync::apply::JournalPages`).

/// Empties the journal once every action is done, with what it kept for
/// steps that fail ([`keep_entry_before_apply`], [`set_pending_apply_source`]).
pub fn clear_pending_apply(tx: &Transaction) -> rusqlite::Result<()> {
    create_pending_apply(tx)?;
    tx.execute_batch(
        "DELETE FROM pending_apply;
         DELETE FROM pending_apply_before;
         DELETE FROM pending_apply_source;",
    )
}

// What a committed batch needs if one of its disk steps fails for good:
// the entries of the paths its actions touch as they were before it (so a
// failed path's entry can say what the tree still holds), and what the
// batch came from. Created with the journal, kept until it is cleared.

fn create_pending_apply_extras(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS pending_apply_before (
             path        BLOB PRIMARY KEY,
             present     INTEGER NOT NULL,
             state       BLOB,
             version     BLOB,
             size        INTEGER,
             mtime_ns    INTEGER,
             ctime_ns    INTEGER,
             inode       INTEGER,
             mode        INTEGER,
             scanned_ns  INTEGER,
             author      BLOB
         );
         CREATE TABLE IF NOT EXISTS pending_apply_source (
             id      INTEGER PRIMARY KEY CHECK (id = 1),
             source  TEXT NOT NULL
         );",
    )
}

/// Notes `path`'s entry as it is before the batch (or that it has none),
/// unless it is noted already. Call before the batch's entries are written.
pub fn keep_entry_before_apply(tx: &Transaction, path: &[u8]) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO pending_apply_before
         SELECT path, 1, state, version, size, mtime_ns, ctime_ns, inode, mode, scanned_ns, author
         FROM entries WHERE path = ?1",
    )?
    .execute(params![path])?;
    tx.prepare_cached("INSERT OR IGNORE INTO pending_apply_before (path, present) VALUES (?1, 0)")?
        .execute(params![path])
        .map(drop)
}

/// Puts `path`'s entry back as [`keep_entry_before_apply`] noted it (none,
/// if it had none); does nothing for a path not noted.
pub fn restore_entry_before_apply(tx: &Transaction, path: &[u8]) -> rusqlite::Result<()> {
    create_pending_apply_extras(tx)?;
    let present: Option<bool> = tx
        .prepare_cached("SELECT present FROM pending_apply_before WHERE path = ?1")?
        .query_row(params![path], |row| row.get(0))
        .optional()?;
    match present {
        None => Ok(()),
        Some(false) => forget_entry(tx, path),
        Some(true) => tx
            .prepare_cached(
                "INSERT OR REPLACE INTO entries
                 (path, state, version, size, mtime_ns, ctime_ns, inode, mode, scanned_ns, author)
                 SELECT path, state, version, size, mtime_ns, ctime_ns, inode, mode, scanned_ns, author
                 FROM pending_apply_before WHERE path = ?1",
            )?
            .execute(params![path])
            .map(drop),
    }
}

/// Names what the batch being committed came from (a packet's file name),
/// for the steps of it that fail.
pub fn set_pending_apply_source(tx: &Transaction, source: &str) -> rusqlite::Result<()> {
    create_pending_apply_extras(tx)?;
    tx.execute(
        "INSERT OR REPLACE INTO pending_apply_source (id, source) VALUES (1, ?1)",
        params![source],
    )
    .map(drop)
}

/// What [`set_pending_apply_source`] named, if anything.
pub fn pending_apply_source(tx: &Transaction) -> rusqlite::Result<Option<String>> {
    create_pending_apply_extras(tx)?;
    tx.query_row("SELECT source FROM pending_apply_source", [], |row| {
        row.get(0)
    })
    .optional()
}

// Disk steps of committed batches that failed for good (see
// `crate::sync::apply`, rule 9): listed by `-status` until a later batch
// writes the path, or a record takes a local change of it. Created on
// first use, so older databases need no migration.

/// A disk step that an import could not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStep {
    pub path: Vec<u8>,
    /// What the batch came from (a packet's file name).
    pub source: String,
    /// When it failed, ns since the Unix epoch.
    pub at_ns: i64,
    /// The step, in words ("placing the new version").
    pub step: String,
    /// The error, in words.
    pub error: String,
}

fn create_failed_apply(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS failed_apply (
             id      INTEGER PRIMARY KEY,
             path    BLOB NOT NULL,
             source  TEXT NOT NULL,
             at_ns   INTEGER NOT NULL,
             step    TEXT NOT NULL,
             error   TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS failed_apply_path ON failed_apply (path);",
    )
}

/// Records a step that failed; an earlier failure of the same path is
/// replaced.
pub fn add_failed_step(tx: &Transaction, failed: &FailedStep) -> rusqlite::Result<()> {
    forget_failed_steps(tx, [failed.path.as_slice()])?;
    tx.prepare_cached(
        "INSERT INTO failed_apply (path, source, at_ns, step, error)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        failed.path,
        failed.source,
        failed.at_ns,
        failed.step,
        failed.error
    ])
    .map(drop)
}

/// Forgets the failed steps of `paths`, if any: the paths were written
/// since.
pub fn forget_failed_steps<'a>(
    tx: &Transaction,
    paths: impl IntoIterator<Item = &'a [u8]>,
) -> rusqlite::Result<()> {
    create_failed_apply(tx)?;
    // Nearly always empty: then a batch's or a record's paths are not
    // looked up one by one.
    let any: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM failed_apply)", [], |row| {
        row.get(0)
    })?;
    if !any {
        return Ok(());
    }
    let mut delete = tx.prepare_cached("DELETE FROM failed_apply WHERE path = ?1")?;
    for path in paths {
        delete.execute(params![path])?;
    }
    Ok(())
}

/// [`forget_failed_steps`] for the paths `query` selects (one column,
/// e.g. from a batch's scratch database), without reading them here.
pub fn forget_failed_steps_in(tx: &Transaction, query: &str) -> rusqlite::Result<()> {
    create_failed_apply(tx)?;
    tx.execute(
        &format!("DELETE FROM failed_apply WHERE path IN ({query})"),
        [],
    )
    .map(drop)
}

// The exclude rules in force at the last record that found nothing
// missing because of them (see `crate::sync::record`). Created on first
// use, so older databases need no migration.

/// Stores `rules` as the exclude rules of the last record.
pub fn set_recorded_excludes(tx: &Transaction, rules: &str) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS recorded_excludes (
             id      INTEGER PRIMARY KEY CHECK (id = 1),
             rules   TEXT NOT NULL
         );",
    )?;
    tx.execute(
        "INSERT INTO recorded_excludes (id, rules) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET rules = excluded.rules",
        params![rules],
    )
    .map(drop)
}

/// Adds `patterns` to [`State::family_excluded`].
pub fn add_family_excluded(tx: &Transaction, patterns: &[String]) -> rusqlite::Result<()> {
    tx.execute_batch("CREATE TABLE IF NOT EXISTS family_excluded (pattern TEXT PRIMARY KEY);")?;
    for pattern in patterns {
        tx.execute(
            "INSERT OR IGNORE INTO family_excluded (pattern) VALUES (?1)",
            params![pattern],
        )?;
    }
    Ok(())
}

/// Remembers the items (bits) the recorded state is reconciled with now
/// (see [`State::kept_items`]).
pub fn set_kept_items(tx: &Transaction, items: u32) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS kept_items (
             id    INTEGER PRIMARY KEY CHECK (id = 1),
             items INTEGER NOT NULL
         );",
    )?;
    tx.execute(
        "INSERT INTO kept_items (id, items) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET items = excluded.items",
        params![i64::from(items)],
    )
    .map(drop)
}

/// Makes this replica a mirror of `upstream`, or (`None`) an ordinary
/// member (see [`State::mirror_upstream`]).
pub fn set_mirror(tx: &Transaction, upstream: Option<&Id>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS mirror (
             id       INTEGER PRIMARY KEY CHECK (id = 1),
             upstream BLOB NOT NULL
         );",
    )?;
    match upstream {
        Some(id) => tx
            .execute(
                "INSERT INTO mirror (id, upstream) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET upstream = excluded.upstream",
                params![id.0.as_slice()],
            )
            .map(drop),
        None => tx.execute("DELETE FROM mirror", []).map(drop),
    }
}

// The family's health (issue 13): what each sibling confirmed, when this
// replica last heard from it, when it sent what is still unconfirmed, this
// replica's incarnation, the incarnations seen of each member and the
// clone alarms raised. Tables made on first use, so older databases need
// no migration; reads work on a read-only connection.

const FAMILY_TABLES: &str = "
CREATE TABLE IF NOT EXISTS confirmed (
    sibling     BLOB NOT NULL,
    origin      BLOB NOT NULL,
    epoch       INTEGER NOT NULL,
    -- When `epoch` was reached: the receipt of the packet that raised it.
    at_ns       INTEGER NOT NULL,
    PRIMARY KEY (sibling, origin)
);
CREATE TABLE IF NOT EXISTS heard (
    sibling     BLOB PRIMARY KEY,
    at_ns       INTEGER NOT NULL,
    packet      TEXT NOT NULL
);
-- One row per export and origin still unconfirmed: the target was sent
-- `origin`'s epochs up to `last` at `at_ns`. Rows go once confirmed.
CREATE TABLE IF NOT EXISTS sent_ranges (
    target      BLOB NOT NULL,
    origin      BLOB NOT NULL,
    last        INTEGER NOT NULL,
    at_ns       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS own_incarnation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    incarnation BLOB NOT NULL,
    at_ns       INTEGER NOT NULL,
    -- The creation packet this copy was made from ('' for a family's first
    -- replica, or one made before incarnations existed).
    creation_packet TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incarnations (
    replica     BLOB PRIMARY KEY,
    incarnation BLOB NOT NULL,
    at_ns       INTEGER NOT NULL,
    packet      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clone_alarms (
    id          INTEGER PRIMARY KEY,
    replica     BLOB NOT NULL,
    at_ns       INTEGER NOT NULL,
    packet      TEXT NOT NULL,
    what        TEXT NOT NULL
);
";

fn family_tables(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(FAMILY_TABLES)
}

/// One origin of a sibling's confirmed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    pub epoch: u64,
    /// When this replica received the packet that confirmed `epoch`.
    pub at_ns: i64,
}

/// The last packet received from a sibling (its row came with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub at_ns: i64,
    pub packet: String,
}

/// An incarnation of a member as first seen here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownIncarnation {
    pub incarnation: Id,
    pub at_ns: i64,
    pub packet: String,
}

/// A clone alarm raised here (see `crate::sync::family`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneAlarm {
    pub replica: Id,
    pub at_ns: i64,
    pub packet: String,
    pub what: String,
}

impl State {
    /// Every sibling's confirmed row: sibling -> origin -> confirmed.
    pub fn confirmed_table(&self) -> Result<HashMap<Id, HashMap<Id, Confirmed>>> {
        let db = |source| self.db_error(source);
        let mut table: HashMap<Id, HashMap<Id, Confirmed>> = HashMap::new();
        if !self.has_table("confirmed")? {
            return Ok(table);
        }
        let mut statement = self
            .conn
            .prepare("SELECT sibling, origin, epoch, at_ns FROM confirmed")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(db)?;
        for row in rows {
            let (sibling, origin, epoch, at_ns) = row.map_err(db)?;
            let (Some(sibling), Some(origin)) = (id_of(&sibling), id_of(&origin)) else {
                return Err(self.corrupt("confirmed: an id is not 16 bytes"));
            };
            table.entry(sibling).or_default().insert(
                origin,
                Confirmed {
                    epoch: epoch as u64,
                    at_ns,
                },
            );
        }
        Ok(table)
    }

    /// When this replica last received a packet from `sibling`.
    pub fn heard(&self, sibling: &Id) -> Result<Option<Heard>> {
        if !self.has_table("heard")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT at_ns, packet FROM heard WHERE sibling = ?1",
                params![sibling.0.as_slice()],
                |row| {
                    Ok(Heard {
                        at_ns: row.get(0)?,
                        packet: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|source| self.db_error(source))
    }

    /// This copy's incarnation id and the creation packet it came from
    /// ('' if none is known), if it has one yet.
    pub fn own_incarnation(&self) -> Result<Option<(Id, String)>> {
        if !self.has_table("own_incarnation")? {
            return Ok(None);
        }
        let row: Option<(Vec<u8>, String)> = self
            .conn
            .query_row(
                "SELECT incarnation, creation_packet FROM own_incarnation WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|source| self.db_error(source))?;
        match row {
            None => Ok(None),
            Some((bytes, packet)) => match id_of(&bytes) {
                Some(id) => Ok(Some((id, packet))),
                None => Err(self.corrupt("own_incarnation: not 16 bytes")),
            },
        }
    }

    /// The incarnation of `replica` this replica accepts packets from.
    pub fn known_incarnation(&self, replica: &Id) -> Result<Option<KnownIncarnation>> {
        if !self.has_table("incarnations")? {
            return Ok(None);
        }
        let row: Option<(Vec<u8>, i64, String)> = self
            .conn
            .query_row(
                "SELECT incarnation, at_ns, packet FROM incarnations WHERE replica = ?1",
                params![replica.0.as_slice()],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(|source| self.db_error(source))?;
        match row {
            None => Ok(None),
            Some((bytes, at_ns, packet)) => match id_of(&bytes) {
                Some(incarnation) => Ok(Some(KnownIncarnation {
                    incarnation,
                    at_ns,
                    packet,
                })),
                None => Err(self.corrupt("incarnations: not 16 bytes")),
            },
        }
    }

    /// Clone alarms raised here, oldest first.
    pub fn clone_alarms(&self) -> Result<Vec<CloneAlarm>> {
        let db = |source| self.db_error(source);
        if !self.has_table("clone_alarms")? {
            return Ok(Vec::new());
        }
        let mut statement = self
            .conn
            .prepare("SELECT replica, at_ns, packet, what FROM clone_alarms ORDER BY id")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .map_err(db)?;
        let mut alarms = Vec::new();
        for row in rows {
            let (replica, at_ns, packet, what) = row.map_err(db)?;
            let replica = id_of(&replica).ok_or_else(|| self.corrupt("clone_alarms: bad id"))?;
            alarms.push(CloneAlarm {
                replica,
                at_ns,
                packet,
                what,
            });
        }
        Ok(alarms)
    }

    /// The creation packet this replica wrote for `replica`, if any (its
    /// first part's file name and when).
    pub fn creation_packet_for(&self, replica: &Id) -> Result<Option<PacketLogEntry>> {
        self.conn
            .query_row(
                "SELECT sequence, file_name, at_ns FROM packets
                 WHERE direction = 'sent' AND peer = ?1 AND packet_id = ?2
                 ORDER BY id LIMIT 1",
                params![replica.0.as_slice(), Id([0; 16]).to_hex()],
                |row| {
                    Ok(PacketLogEntry {
                        sequence: row.get::<_, i64>(0)? as u64,
                        file_name: row.get(1)?,
                        at_ns: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|source| self.db_error(source))
    }
}

fn id_of(bytes: &[u8]) -> Option<Id> {
    <[u8; 16]>::try_from(bytes).ok().map(Id)
}

/// Notes `sibling`'s epoch row, received at `at_ns` in `packet`: each
/// origin's confirmed epoch rises to it (never falls: an old packet can
/// arrive late), and what it confirms is no longer waiting for a resend.
/// Its time is when it was last confirmed: a packet that confirms as much
/// again (or more) moves it on, a late older one does not.
pub fn note_confirmation(
    tx: &Transaction,
    sibling: &Id,
    row: &[(Id, u64)],
    at_ns: i64,
    packet: &str,
) -> rusqlite::Result<()> {
    family_tables(tx)?;
    for (origin, epoch) in row {
        tx.execute(
            "INSERT INTO confirmed (sibling, origin, epoch, at_ns) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sibling, origin) DO UPDATE SET
                 at_ns = CASE WHEN excluded.epoch >= epoch THEN MAX(at_ns, excluded.at_ns) ELSE at_ns END,
                 epoch = MAX(epoch, excluded.epoch)",
            params![
                sibling.0.as_slice(),
                origin.0.as_slice(),
                *epoch as i64,
                at_ns
            ],
        )?;
        tx.execute(
            "DELETE FROM sent_ranges WHERE target = ?1 AND origin = ?2 AND last <= ?3",
            params![sibling.0.as_slice(), origin.0.as_slice(), *epoch as i64],
        )?;
    }
    tx.execute(
        "INSERT INTO heard (sibling, at_ns, packet) VALUES (?1, ?2, ?3)
         ON CONFLICT (sibling) DO UPDATE SET at_ns = excluded.at_ns, packet = excluded.packet",
        params![sibling.0.as_slice(), at_ns, packet],
    )
    .map(drop)
}

/// Notes that `target` was sent `origin`'s epochs `first..=last` at
/// `at_ns`. Earlier sends this one repeats are superseded: the time to
/// wait for their confirmation starts again.
pub fn note_sent(
    tx: &Transaction,
    target: &Id,
    origin: &Id,
    first: u64,
    last: u64,
    at_ns: i64,
) -> rusqlite::Result<()> {
    family_tables(tx)?;
    tx.execute(
        "DELETE FROM sent_ranges WHERE target = ?1 AND origin = ?2 AND last >= ?3 AND last <= ?4",
        params![
            target.0.as_slice(),
            origin.0.as_slice(),
            first as i64,
            last as i64
        ],
    )?;
    tx.execute(
        "INSERT INTO sent_ranges (target, origin, last, at_ns) VALUES (?1, ?2, ?3, ?4)",
        params![target.0.as_slice(), origin.0.as_slice(), last as i64, at_ns],
    )
    .map(drop)
}

/// Stores this copy's incarnation (once: an existing one is kept).
pub fn set_own_incarnation(
    tx: &Transaction,
    incarnation: &Id,
    at_ns: i64,
    creation_packet: &str,
) -> rusqlite::Result<()> {
    family_tables(tx)?;
    tx.execute(
        "INSERT OR IGNORE INTO own_incarnation (id, incarnation, at_ns, creation_packet)
         VALUES (1, ?1, ?2, ?3)",
        params![incarnation.0.as_slice(), at_ns, creation_packet],
    )
    .map(drop)
}

/// Records the incarnation of `replica` that packets are accepted from
/// (the first one seen; an existing record is kept).
pub fn record_incarnation(
    tx: &Transaction,
    replica: &Id,
    incarnation: &Id,
    at_ns: i64,
    packet: &str,
) -> rusqlite::Result<()> {
    family_tables(tx)?;
    tx.execute(
        "INSERT OR IGNORE INTO incarnations (replica, incarnation, at_ns, packet)
         VALUES (?1, ?2, ?3, ?4)",
        params![
            replica.0.as_slice(),
            incarnation.0.as_slice(),
            at_ns,
            packet
        ],
    )
    .map(drop)
}

/// Records a clone alarm about `replica` (once per packet).
pub fn add_clone_alarm(tx: &Transaction, alarm: &CloneAlarm) -> rusqlite::Result<()> {
    family_tables(tx)?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM clone_alarms WHERE replica = ?1 AND packet = ?2)",
        params![alarm.replica.0.as_slice(), alarm.packet],
        |row| row.get(0),
    )?;
    if exists {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO clone_alarms (replica, at_ns, packet, what) VALUES (?1, ?2, ?3, ?4)",
        params![
            alarm.replica.0.as_slice(),
            alarm.at_ns,
            alarm.packet,
            alarm.what
        ],
    )
    .map(drop)
}

// When this replica last told a member's refused copy that it is refused
// (an export carrying that member's first change again, see
// `export::tell_a_refused_copy`): told once per new alarm. Made on first
// use.
const CLONE_TELLS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS clone_tells (
    replica     BLOB PRIMARY KEY,
    at_ns       INTEGER NOT NULL
);
";

/// Notes that a packet to `replica` told its refused copy, at `at_ns`.
pub fn note_clone_told(tx: &Transaction, replica: &Id, at_ns: i64) -> rusqlite::Result<()> {
    tx.execute_batch(CLONE_TELLS_TABLE)?;
    tx.execute(
        "INSERT OR REPLACE INTO clone_tells (replica, at_ns) VALUES (?1, ?2)",
        params![replica.0.as_slice(), at_ns],
    )
    .map(drop)
}

impl State {
    /// When a packet to `replica` last told its refused copy so.
    pub fn clone_told(&self, replica: &Id) -> Result<Option<i64>> {
        if !self.has_table("clone_tells")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT at_ns FROM clone_tells WHERE replica = ?1",
                params![replica.0.as_slice()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.db_error(source))
    }
}

/// Clears the clone alarms about `replica` (it was restored from a
/// backup: the restore explains, and renumbers, the change it numbered
/// like one this replica holds).
pub fn clear_clone_alarms(tx: &Transaction, replica: &Id) -> rusqlite::Result<()> {
    family_tables(tx)?;
    tx.execute(
        "DELETE FROM clone_alarms WHERE replica = ?1",
        params![replica.0.as_slice()],
    )
    .map(drop)
}

// Proof of convergence (issue 13): each sibling's exclude patterns as its
// packets carry them, the last tree digest received from each sibling with
// what the comparison found, and the last time each was verified in step.
// Tables made on first use; reads work on a read-only connection.

const DIGEST_TABLES: &str = "
CREATE TABLE IF NOT EXISTS sibling_patterns (
    sibling     BLOB PRIMARY KEY,
    patterns    BLOB NOT NULL,
    at_ns       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sibling_preserved (
    sibling     BLOB PRIMARY KEY,
    -- digest items (packet_format::digest_items) it preserves
    items       INTEGER NOT NULL,
    at_ns       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS digests_received (
    sibling     BLOB PRIMARY KEY,
    at_ns       INTEGER NOT NULL,
    packet      TEXT NOT NULL,
    -- postcard map origin -> epoch: the version the digest describes
    row         BLOB NOT NULL,
    -- postcard TreeDigest
    digest      BLOB NOT NULL,
    -- 'verified', 'differs', or 'not compared: WHY'
    outcome     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS digests_verified (
    sibling     BLOB PRIMARY KEY,
    at_ns       INTEGER NOT NULL,
    packet      TEXT NOT NULL,
    row         BLOB NOT NULL,
    entries     INTEGER NOT NULL
);
";

fn digest_tables(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(DIGEST_TABLES)
}

/// The last tree digest received from a sibling, and the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestReceived {
    pub sibling: Id,
    pub at_ns: i64,
    pub packet: String,
    pub row: BTreeMap<Id, u64>,
    pub digest: packet_format::TreeDigest,
    pub outcome: String,
}

/// The last time this replica was verified in step with a sibling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestVerified {
    pub sibling: Id,
    pub at_ns: i64,
    pub packet: String,
    pub row: BTreeMap<Id, u64>,
    pub entries: u64,
}

fn digest_id_of(bytes: Vec<u8>) -> Id {
    Id(bytes.try_into().unwrap_or([0; 16]))
}

impl State {
    /// A sibling's exclude patterns as its last packet with a digest
    /// carried them (`None`: never heard).
    pub fn sibling_patterns(&self, sibling: &Id) -> Result<Option<Vec<String>>> {
        if !self.has_table("sibling_patterns")? {
            return Ok(None);
        }
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT patterns FROM sibling_patterns WHERE sibling = ?1",
                params![sibling.0.as_slice()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.db_error(source))?;
        bytes
            .map(|b| postcard::from_bytes(&b).map_err(|e| self.corrupt(format!("patterns: {e}"))))
            .transpose()
    }

    /// The digest items a sibling preserves as its last packet with a
    /// digest said (`None`: never heard; 0 from a version without them).
    pub fn sibling_preserved(&self, sibling: &Id) -> Result<Option<u32>> {
        if !self.has_table("sibling_preserved")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT items FROM sibling_preserved WHERE sibling = ?1",
                params![sibling.0.as_slice()],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|items| items.map(|i| i as u32))
            .map_err(|source| self.db_error(source))
    }

    /// The last digest received from each sibling.
    pub fn digests_received(&self) -> Result<Vec<DigestReceived>> {
        if !self.has_table("digests_received")? {
            return Ok(Vec::new());
        }
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare(
                "SELECT sibling, at_ns, packet, row, digest, outcome FROM digests_received
                 ORDER BY sibling",
            )
            .map_err(db)?;
        let mut rows = statement.query([]).map_err(db)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let row_bytes: Vec<u8> = row.get(3).map_err(db)?;
            let digest: Vec<u8> = row.get(4).map_err(db)?;
            out.push(DigestReceived {
                sibling: digest_id_of(row.get(0).map_err(db)?),
                at_ns: row.get(1).map_err(db)?,
                packet: row.get(2).map_err(db)?,
                row: postcard::from_bytes(&row_bytes)
                    .map_err(|e| self.corrupt(format!("digest row: {e}")))?,
                digest: decode_received_digest(&digest)
                    .map_err(|e| self.corrupt(format!("digest: {e}")))?,
                outcome: row.get(5).map_err(db)?,
            });
        }
        Ok(out)
    }

    /// When this replica was last verified in step with each sibling.
    pub fn digests_verified(&self) -> Result<Vec<DigestVerified>> {
        if !self.has_table("digests_verified")? {
            return Ok(Vec::new());
        }
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare(
                "SELECT sibling, at_ns, packet, row, entries FROM digests_verified
                 ORDER BY sibling",
            )
            .map_err(db)?;
        let mut rows = statement.query([]).map_err(db)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let row_bytes: Vec<u8> = row.get(3).map_err(db)?;
            out.push(DigestVerified {
                sibling: digest_id_of(row.get(0).map_err(db)?),
                at_ns: row.get(1).map_err(db)?,
                packet: row.get(2).map_err(db)?,
                row: postcard::from_bytes(&row_bytes)
                    .map_err(|e| self.corrupt(format!("digest row: {e}")))?,
                entries: row.get::<_, i64>(4).map_err(db)? as u64,
            });
        }
        Ok(out)
    }
}

/// Keeps a sibling's exclude patterns, as its packet carried them.
pub fn set_sibling_patterns(
    tx: &Transaction,
    sibling: &Id,
    patterns: &[String],
    at_ns: i64,
) -> rusqlite::Result<()> {
    digest_tables(tx)?;
    let bytes = postcard::to_stdvec(patterns).expect("encoding cannot fail");
    tx.execute(
        "INSERT OR REPLACE INTO sibling_patterns (sibling, patterns, at_ns) VALUES (?1, ?2, ?3)",
        params![sibling.0.as_slice(), bytes, at_ns],
    )
    .map(drop)
}

/// Notes the digest items `sibling` preserves (from its packet's digest).
pub fn set_sibling_preserved(
    tx: &Transaction,
    sibling: &Id,
    items: u32,
    at_ns: i64,
) -> rusqlite::Result<()> {
    digest_tables(tx)?;
    tx.execute(
        "INSERT OR REPLACE INTO sibling_preserved (sibling, items, at_ns) VALUES (?1, ?2, ?3)",
        params![sibling.0.as_slice(), i64::from(items), at_ns],
    )
    .map(drop)
}

// Removed members (`rmreplica`, issue 13): a member removed for good, by
// whose operation, and when this replica applied it. Made on first use
// like the family tables.

const REMOVED_TABLE: &str = "
CREATE TABLE IF NOT EXISTS removed_members (
    replica     BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    -- The operation that removed it: its origin (the remover) and epoch.
    by_origin   BLOB NOT NULL,
    by_epoch    INTEGER NOT NULL,
    at_ns       INTEGER NOT NULL
);
";

/// A member removed from the family (see `Change::RemoveMember`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub replica: Id,
    /// Its name as the removal operation gave it.
    pub name: String,
    /// The member whose operation removed it, and that operation's epoch.
    pub by: Id,
    pub by_epoch: u64,
    /// When this replica applied (or recorded) the removal.
    pub at_ns: i64,
}

impl State {
    /// Every member removed from the family, as far as this replica knows.
    pub fn removed_members(&self) -> Result<Vec<Removed>> {
        let db = |source| self.db_error(source);
        if !self.has_table("removed_members")? {
            return Ok(Vec::new());
        }
        let mut statement = self
            .conn
            .prepare(
                "SELECT replica, name, by_origin, by_epoch, at_ns FROM removed_members ORDER BY at_ns",
            )
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .map_err(db)?;
        let mut removed = Vec::new();
        for row in rows {
            let (replica, name, by, by_epoch, at_ns) = row.map_err(db)?;
            let (Some(replica), Some(by)) = (id_of(&replica), id_of(&by)) else {
                return Err(self.corrupt("removed_members: an id is not 16 bytes"));
            };
            removed.push(Removed {
                replica,
                name,
                by,
                by_epoch: by_epoch as u64,
                at_ns,
            });
        }
        Ok(removed)
    }

    /// The removal of `replica`, if it was removed.
    pub fn removal_of(&self, replica: &Id) -> Result<Option<Removed>> {
        Ok(self
            .removed_members()?
            .into_iter()
            .find(|r| r.replica == *replica))
    }
}

/// Records that `removed.replica` left the family (the first removal
/// wins), and forgets what was waiting for its confirmation: a removed
/// member holds nothing back.
pub fn mark_removed(tx: &Transaction, removed: &Removed) -> rusqlite::Result<()> {
    tx.execute_batch(REMOVED_TABLE)?;
    family_tables(tx)?;
    tx.execute(
        "INSERT OR IGNORE INTO removed_members (replica, name, by_origin, by_epoch, at_ns)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            removed.replica.0.as_slice(),
            removed.name,
            removed.by.0.as_slice(),
            removed.by_epoch as i64,
            removed.at_ns
        ],
    )?;
    tx.execute(
        "DELETE FROM sent_ranges WHERE target = ?1",
        params![removed.replica.0.as_slice()],
    )
    .map(drop)
}

/// Keeps the last digest received from a sibling and, when verified,
/// the verification.
/// A digest as [`note_digest`] stores it.
fn decode_received_digest(bytes: &[u8]) -> postcard::Result<packet_format::TreeDigest> {
    let (mut digest, rest): (packet_format::TreeDigest, &[u8]) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        let (metadata, after) = postcard::take_from_bytes(rest)?;
        digest.metadata = metadata;
        if !after.is_empty() {
            digest.root_parts = postcard::from_bytes(after)?;
        }
    }
    Ok(digest)
}

pub fn note_digest(tx: &Transaction, received: &DigestReceived) -> rusqlite::Result<()> {
    digest_tables(tx)?;
    let row = postcard::to_stdvec(&received.row).expect("encoding cannot fail");
    // The digest, then its metadata field and its root's parts (header
    // fields of their own in the packet, formats 2.7 and 2.11), which
    // older rows lack.
    let mut digest = postcard::to_stdvec(&received.digest).expect("encoding cannot fail");
    digest.extend(postcard::to_stdvec(&received.digest.metadata).expect("encoding cannot fail"));
    digest.extend(postcard::to_stdvec(&received.digest.root_parts).expect("encoding cannot fail"));
    tx.execute(
        "INSERT OR REPLACE INTO digests_received (sibling, at_ns, packet, row, digest, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            received.sibling.0.as_slice(),
            received.at_ns,
            received.packet,
            row,
            digest,
            received.outcome
        ],
    )?;
    if received.outcome == "verified" {
        tx.execute(
            "INSERT OR REPLACE INTO digests_verified (sibling, at_ns, packet, row, entries)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                received.sibling.0.as_slice(),
                received.at_ns,
                received.packet,
                row,
                received.digest.entries as i64
            ],
        )?;
    }
    Ok(())
}

// Restore from a backup (`mkreplica -restore`, issue 13). A replica whose
// directory was restored from an old copy has forgotten changes it
// already sent: siblings hold epochs of its own that it does not. While
// `restore` has an unfinished row, the replica records nothing of its own
// (it would number a change like one its siblings hold); it notes, from
// each sibling's packets, the highest of its own epochs that sibling has
// (the sibling's row), and takes its forgotten changes back from them.

const RESTORE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS restore (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    at_ns       INTEGER NOT NULL,
    -- This replica's own epoch when it was marked restored.
    own_epoch   INTEGER NOT NULL,
    -- The highest of its own epochs any sibling's packet said it holds.
    highest_seen INTEGER NOT NULL,
    finished_ns INTEGER
);
-- The siblings a restore waits to hear from, and when it did.
CREATE TABLE IF NOT EXISTS restore_siblings (
    sibling     BLOB PRIMARY KEY,
    heard_ns    INTEGER
);
-- The newest creation time of a packet each sibling signed (its clock):
-- a packet created later whose row holds less of the sibling's own
-- changes than it confirmed before comes from a restored copy.
CREATE TABLE IF NOT EXISTS sender_clock (
    sibling     BLOB PRIMARY KEY,
    created_ns  INTEGER NOT NULL
);
";

fn restore_tables(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(RESTORE_TABLES)
}

/// The state of a restore (`mkreplica -restore`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreStatus {
    pub at_ns: i64,
    pub own_epoch: u64,
    pub highest_seen: u64,
    /// Each sibling waited for, and when it was heard from since.
    pub siblings: Vec<(Id, Option<i64>)>,
    pub finished_ns: Option<i64>,
}

impl State {
    /// The last restore of this replica, finished or not.
    pub fn restore_status(&self) -> Result<Option<RestoreStatus>> {
        let db = |source| self.db_error(source);
        if !self.has_table("restore")? {
            return Ok(None);
        }
        let row: Option<(i64, i64, i64, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT at_ns, own_epoch, highest_seen, finished_ns FROM restore WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(db)?;
        let Some((at_ns, own_epoch, highest_seen, finished_ns)) = row else {
            return Ok(None);
        };
        let mut statement = self
            .conn
            .prepare("SELECT sibling, heard_ns FROM restore_siblings")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Option<i64>>(1)?))
            })
            .map_err(db)?;
        let mut siblings = Vec::new();
        for row in rows {
            let (sibling, heard) = row.map_err(db)?;
            let sibling = id_of(&sibling).ok_or_else(|| self.corrupt("restore: bad id"))?;
            siblings.push((sibling, heard));
        }
        Ok(Some(RestoreStatus {
            at_ns,
            own_epoch: own_epoch as u64,
            highest_seen: highest_seen as u64,
            siblings,
            finished_ns,
        }))
    }

    /// The newest creation time (the sender's clock, ns) of a packet from
    /// `sibling` seen here.
    pub fn sender_clock(&self, sibling: &Id) -> Result<Option<i64>> {
        if !self.has_table("sender_clock")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT created_ns FROM sender_clock WHERE sibling = ?1",
                params![sibling.0.as_slice()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.db_error(source))
    }
}

/// Marks this replica restored at `at_ns`, with its own epoch `own_epoch`,
/// waiting to hear from `siblings` (a restore begun before starts over).
pub fn start_restore(
    tx: &Transaction,
    at_ns: i64,
    own_epoch: u64,
    siblings: &[Id],
) -> rusqlite::Result<()> {
    restore_tables(tx)?;
    tx.execute("DELETE FROM restore", [])?;
    tx.execute("DELETE FROM restore_siblings", [])?;
    tx.execute(
        "INSERT INTO restore (id, at_ns, own_epoch, highest_seen) VALUES (1, ?1, ?2, ?2)",
        params![at_ns, own_epoch as i64],
    )?;
    for sibling in siblings {
        tx.execute(
            "INSERT INTO restore_siblings (sibling) VALUES (?1)",
            params![sibling.0.as_slice()],
        )?;
    }
    Ok(())
}

/// Notes, during a restore, a packet from `sibling` whose row says it
/// holds this replica's own changes up to `holds`.
pub fn note_restore_heard(
    tx: &Transaction,
    sibling: &Id,
    holds: u64,
    at_ns: i64,
) -> rusqlite::Result<()> {
    restore_tables(tx)?;
    tx.execute(
        "UPDATE restore SET highest_seen = MAX(highest_seen, ?1) WHERE finished_ns IS NULL",
        params![holds.min(i64::MAX as u64) as i64],
    )?;
    tx.execute(
        "UPDATE restore_siblings SET heard_ns = ?2 WHERE sibling = ?1 AND heard_ns IS NULL",
        params![sibling.0.as_slice(), at_ns],
    )
    .map(drop)
}

/// Ends the restore at `at_ns`.
pub fn finish_restore(tx: &Transaction, at_ns: i64) -> rusqlite::Result<()> {
    restore_tables(tx)?;
    tx.execute(
        "UPDATE restore SET finished_ns = ?1 WHERE finished_ns IS NULL",
        params![at_ns],
    )
    .map(drop)
}

// What a restore sets aside (issue 13): the restored copy may have
// numbered changes of its own like ones a sibling already holds from
// before the disk died (same epoch, other content). Those are taken out of
// the log, the sibling's taken back in their place, and they are logged
// again, renumbered after every epoch any sibling has seen, when the
// restore finishes. `restore_base` is the epoch of its own the copy states
// in its packets during the restore: every sibling held at least that
// much of it, so its siblings send back (and it compares) everything
// above.
const RESTORE_SET_ASIDE: &str = "
CREATE TABLE IF NOT EXISTS restore_base (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    base        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS restore_set_aside (
    epoch       INTEGER PRIMARY KEY,
    op          BLOB NOT NULL
);
";

/// Sets the epoch of its own this replica states during a restore.
pub fn set_restore_base(tx: &Transaction, base: u64) -> rusqlite::Result<()> {
    tx.execute_batch(RESTORE_SET_ASIDE)?;
    tx.execute(
        "INSERT OR REPLACE INTO restore_base (id, base) VALUES (1, ?1)",
        params![base.min(i64::MAX as u64) as i64],
    )
    .map(drop)
}

/// Takes this replica's own operations `from..=top` (`me`'s) out of the
/// log into `restore_set_aside`, with their seals: a seal of a run that
/// begins before `from` is replaced by one over the run's share below it
/// (signed with `secret`). Its own epoch becomes `from - 1`.
pub fn set_aside_own(
    tx: &Transaction,
    secret: &[u8; 32],
    me: &Id,
    from: u64,
    top: u64,
) -> rusqlite::Result<()> {
    tx.execute_batch(RESTORE_SET_ASIDE)?;
    tx.execute(
        "INSERT OR REPLACE INTO restore_set_aside (epoch, op)
         SELECT epoch, op FROM oplog WHERE origin = ?1 AND epoch >= ?2 AND epoch <= ?3",
        params![me.0.as_slice(), from as i64, top as i64],
    )?;
    tx.execute(
        "DELETE FROM oplog WHERE origin = ?1 AND epoch >= ?2 AND epoch <= ?3",
        params![me.0.as_slice(), from as i64, top as i64],
    )?;
    let cut: Option<i64> = tx
        .query_row(
            "SELECT first FROM seals WHERE origin = ?1 AND first < ?2 AND last >= ?2",
            params![me.0.as_slice(), from as i64],
            |row| row.get(0),
        )
        .optional()?;
    tx.execute(
        "DELETE FROM seals WHERE origin = ?1 AND last >= ?2",
        params![me.0.as_slice(), from as i64],
    )?;
    if let Some(first) = cut {
        seal_own_run(tx, secret, me, first as u64, from - 1)?;
    }
    set_epoch(tx, me, me, from - 1)
}

/// Forgets what a restore set aside (logged again, renumbered).
pub fn clear_set_aside(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(RESTORE_SET_ASIDE)?;
    tx.execute("DELETE FROM restore_set_aside", []).map(drop)
}

/// Gives the entry of `path` the version `new` if it has `old` (a change
/// renumbered by a restore); returns whether it had.
pub fn renumber_entry_version(
    tx: &Transaction,
    path: &[u8],
    old: &VersionVector,
    new: &VersionVector,
) -> rusqlite::Result<bool> {
    let old = postcard::to_stdvec(old).expect("version encodes");
    let new = postcard::to_stdvec(new).expect("version encodes");
    tx.execute(
        "UPDATE entries SET version = ?3 WHERE path = ?1 AND version = ?2",
        params![path, old, new],
    )
    .map(|changed| changed > 0)
}

impl State {
    /// The operation log's size: (operations, bytes of their encodings).
    pub fn oplog_size(&self) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(op)), 0) FROM oplog",
                [],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
            )
            .map_err(|source| self.db_error(source))
    }

    /// The recorded version of `path`, if it has an entry.
    pub fn entry_version(&self, path: &[u8]) -> Result<Option<VersionVector>> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT version FROM entries WHERE path = ?1",
                params![path],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.db_error(source))?;
        bytes
            .map(|b| {
                postcard::from_bytes(&b)
                    .map_err(|_| self.corrupt("entries: a version does not decode"))
            })
            .transpose()
    }

    /// The epoch of its own this replica states during a restore.
    pub fn restore_base(&self) -> Result<Option<u64>> {
        if !self.has_table("restore_base")? {
            return Ok(None);
        }
        self.conn
            .query_row("SELECT base FROM restore_base WHERE id = 1", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()
            .map(|base| base.map(|b| b as u64))
            .map_err(|source| self.db_error(source))
    }

    /// The operations of its own a restore set aside: (old epoch,
    /// encoding), by epoch.
    pub fn set_aside(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let db = |source| self.db_error(source);
        if !self.has_table("restore_set_aside")? {
            return Ok(Vec::new());
        }
        let mut statement = self
            .conn
            .prepare("SELECT epoch, op FROM restore_set_aside ORDER BY epoch")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get::<_, Vec<u8>>(1)?))
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }
}

/// Keeps the newest creation time seen of `sibling`'s packets.
pub fn note_sender_clock(tx: &Transaction, sibling: &Id, created_ns: i64) -> rusqlite::Result<()> {
    restore_tables(tx)?;
    tx.execute(
        "INSERT INTO sender_clock (sibling, created_ns) VALUES (?1, ?2)
         ON CONFLICT (sibling) DO UPDATE SET created_ns = MAX(created_ns, excluded.created_ns)",
        params![sibling.0.as_slice(), created_ns],
    )
    .map(drop)
}

/// A sibling restored from a backup: its row (`row`, as its packet states
/// it) replaces this replica's estimate of it and its confirmations, so
/// the next export sends it what it forgot.
pub fn lower_row(tx: &Transaction, sibling: &Id, row: &[(Id, u64)]) -> rusqlite::Result<()> {
    family_tables(tx)?;
    for (origin, epoch) in row {
        tx.execute(
            "INSERT INTO epochs (row_replica, origin, epoch) VALUES (?1, ?2, ?3)
             ON CONFLICT (row_replica, origin) DO UPDATE SET epoch = MIN(epoch, excluded.epoch)",
            params![sibling.0.as_slice(), origin.0.as_slice(), *epoch as i64],
        )?;
        tx.execute(
            "UPDATE confirmed SET epoch = MIN(epoch, ?3) WHERE sibling = ?1 AND origin = ?2",
            params![sibling.0.as_slice(), origin.0.as_slice(), *epoch as i64],
        )?;
    }
    tx.execute(
        "DELETE FROM sent_ranges WHERE target = ?1",
        params![sibling.0.as_slice()],
    )
    .map(drop)
}

// The packet format each member writes, as its newest packet here says
// (issue 13, mixed versions): what an export to it may use.

const VERSIONS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS member_versions (
    sibling     BLOB PRIMARY KEY,
    major       INTEGER NOT NULL,
    minor       INTEGER NOT NULL,
    at_ns       INTEGER NOT NULL
);
";

/// A member's packet format as last seen, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenVersion {
    pub version: packet_format::FormatVersion,
    pub at_ns: i64,
}

impl State {
    /// The packet format of `sibling`'s newest packet seen here.
    pub fn member_version(&self, sibling: &Id) -> Result<Option<SeenVersion>> {
        if !self.has_table("member_versions")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT major, minor, at_ns FROM member_versions WHERE sibling = ?1",
                params![sibling.0.as_slice()],
                |row| {
                    Ok(SeenVersion {
                        version: packet_format::FormatVersion {
                            major: row.get::<_, i64>(0)? as u16,
                            minor: row.get::<_, i64>(1)? as u16,
                        },
                        at_ns: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|source| self.db_error(source))
    }
}

/// Notes that `sibling`'s newest packet uses `version`.
pub fn note_member_version(
    tx: &Transaction,
    sibling: &Id,
    version: packet_format::FormatVersion,
    at_ns: i64,
) -> rusqlite::Result<()> {
    tx.execute_batch(VERSIONS_TABLE)?;
    tx.execute(
        "INSERT INTO member_versions (sibling, major, minor, at_ns) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (sibling) DO UPDATE SET major = excluded.major, minor = excluded.minor,
             at_ns = excluded.at_ns",
        params![
            sibling.0.as_slice(),
            i64::from(version.major),
            i64::from(version.minor),
            at_ns
        ],
    )
    .map(drop)
}

impl State {
    /// One row of the epoch table (origin -> epoch): what
    /// [`State::epoch_table`] holds for `row`, without reading the others
    /// (a family of N members has N rows of N origins).
    pub fn epoch_row(&self, row: &Id) -> Result<HashMap<Id, u64>> {
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare_cached("SELECT origin, epoch FROM epochs WHERE row_replica = ?1")
            .map_err(db)?;
        let rows = statement
            .query_map(params![row.0.as_slice()], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(db)?;
        let mut out = HashMap::new();
        for entry in rows {
            let (origin, epoch) = entry.map_err(db)?;
            let origin =
                id_of(&origin).ok_or_else(|| self.corrupt("epoch table: bad replica id"))?;
            out.insert(origin, epoch as u64);
        }
        Ok(out)
    }

    /// One sibling's confirmed row (see [`State::confirmed_table`]).
    pub fn confirmed_row(&self, sibling: &Id) -> Result<HashMap<Id, Confirmed>> {
        let mut out = HashMap::new();
        if !self.has_table("confirmed")? {
            return Ok(out);
        }
        let sql = "SELECT origin, epoch, at_ns FROM confirmed WHERE sibling = ?1";
        for (origin, epoch, at_ns) in self.origin_rows(sql, sibling, "confirmed")? {
            out.insert(origin, Confirmed { epoch, at_ns });
        }
        Ok(out)
    }

    /// The (origin, epoch, time) rows `sql` selects for `key` (its `?1`),
    /// `table` naming them in an error.
    fn origin_rows(&self, sql: &str, key: &Id, table: &str) -> Result<Vec<(Id, u64, i64)>> {
        let db = |source| self.db_error(source);
        let mut statement = self.conn.prepare_cached(sql).map_err(db)?;
        let rows = statement
            .query_map(params![key.0.as_slice()], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (origin, epoch, at_ns) = row.map_err(db)?;
            let origin = id_of(&origin).ok_or_else(|| self.corrupt(format!("{table}: bad id")))?;
            out.push((origin, epoch as u64, at_ns));
        }
        Ok(out)
    }
}

impl State {
    /// Every send to `target` still waiting for its confirmation, per
    /// origin: (last epoch sent, when). One query for an export, rather
    /// than one per origin (a family of N members has N origins).
    pub fn unconfirmed_sends(&self, target: &Id) -> Result<HashMap<Id, Vec<(u64, i64)>>> {
        let mut out: HashMap<Id, Vec<(u64, i64)>> = HashMap::new();
        if !self.has_table("sent_ranges")? {
            return Ok(out);
        }
        let sql = "SELECT origin, last, at_ns FROM sent_ranges WHERE target = ?1";
        for (origin, last, at_ns) in self.origin_rows(sql, target, "sent_ranges")? {
            out.entry(origin).or_default().push((last, at_ns));
        }
        Ok(out)
    }
}

// Scrubbed history (issue 13, "Bounded history"; packet SPEC.md §8.1):
// per origin, the signed checkpoint of the epochs no longer in the log.
// Made on first use, so older databases need no migration.
const CHECKPOINT_TABLE: &str = "
CREATE TABLE IF NOT EXISTS checkpoints (
    origin      BLOB PRIMARY KEY,
    through     INTEGER NOT NULL,
    history     BLOB NOT NULL,
    signer      BLOB NOT NULL,
    signature   BLOB NOT NULL
);
";

/// Stores `checkpoint` as its origin's (replacing an older one: a later
/// checkpoint covers everything an earlier one did).
pub fn put_checkpoint(
    tx: &Transaction,
    checkpoint: &packet_format::seals::Checkpoint,
) -> rusqlite::Result<()> {
    tx.execute_batch(CHECKPOINT_TABLE)?;
    tx.execute(
        "INSERT OR REPLACE INTO checkpoints (origin, through, history, signer, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            checkpoint.origin.0.as_slice(),
            checkpoint.through as i64,
            checkpoint.history.as_slice(),
            checkpoint.signer.0.as_slice(),
            checkpoint.signature.0.as_slice(),
        ],
    )?;
    Ok(())
}

/// Deletes `origin`'s operations `1..=through` from the log, with the
/// seals of the runs they made up (whole runs only: the caller scrubs at a
/// run's end). Returns how many operations and how many bytes went.
pub fn scrub_operations(
    tx: &Transaction,
    origin: &Id,
    through: u64,
) -> rusqlite::Result<(u64, u64)> {
    let (count, bytes): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(op)), 0) FROM oplog WHERE origin = ?1 AND epoch <= ?2",
        params![origin.0.as_slice(), through as i64],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    // A fingerprint of each operation that goes, so that a copy of it
    // arriving later can still be told from a different operation with
    // that number (clone detection, `family::differs_from_log`).
    tx.execute_batch(SCRUBBED_TABLE)?;
    {
        let mut select =
            tx.prepare("SELECT epoch, op FROM oplog WHERE origin = ?1 AND epoch <= ?2")?;
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO scrubbed_ops (origin, epoch, fingerprint) VALUES (?1, ?2, ?3)",
        )?;
        let mut rows = select.query(params![origin.0.as_slice(), through as i64])?;
        while let Some(row) = rows.next()? {
            let epoch: i64 = row.get(0)?;
            let op: Vec<u8> = row.get(1)?;
            insert.execute(params![origin.0.as_slice(), epoch, op_fingerprint(&op)])?;
        }
    }
    tx.execute(
        "DELETE FROM oplog WHERE origin = ?1 AND epoch <= ?2",
        params![origin.0.as_slice(), through as i64],
    )?;
    tx.execute(
        "DELETE FROM seals WHERE origin = ?1 AND last <= ?2",
        params![origin.0.as_slice(), through as i64],
    )?;
    Ok((count as u64, bytes as u64))
}

// The fingerprints of scrubbed operations: 8 bytes of the SHA-256 of each
// one's encoding (as the log held it), about 30 bytes a row where the
// operation took hundreds. Enough to tell an operation from a different
// one numbered alike (two copies of its origin), which is an accident,
// not an attack: any member holding the origin's key could forge either.
// Made on first use.
const SCRUBBED_TABLE: &str = "
CREATE TABLE IF NOT EXISTS scrubbed_ops (
    origin      BLOB NOT NULL,
    epoch       INTEGER NOT NULL,
    fingerprint INTEGER NOT NULL,
    PRIMARY KEY (origin, epoch)
) WITHOUT ROWID;
";

/// The fingerprint a scrubbed operation (its encoding, `op`) leaves.
pub fn op_fingerprint(op: &[u8]) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(op);
    i64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl State {
    /// The fingerprint ([`op_fingerprint`]) of `origin`'s operation
    /// `epoch`, if it was scrubbed from the log.
    pub fn scrubbed_fingerprint(&self, origin: &Id, epoch: u64) -> Result<Option<i64>> {
        if !self.has_table("scrubbed_ops")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT fingerprint FROM scrubbed_ops WHERE origin = ?1 AND epoch = ?2",
                params![origin.0.as_slice(), epoch as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.db_error(source))
    }

    /// Every checkpoint this replica holds, by origin.
    pub fn checkpoints(&self) -> Result<BTreeMap<Id, packet_format::seals::Checkpoint>> {
        let db = |source| self.db_error(source);
        let mut out = BTreeMap::new();
        if !self.has_table("checkpoints")? {
            return Ok(out);
        }
        let mut statement = self
            .conn
            .prepare("SELECT origin, through, history, signer, signature FROM checkpoints")
            .map_err(db)?;
        let mut rows = statement.query([]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let bad = || self.corrupt("checkpoints: a field has the wrong length");
            let origin = id_of(&row.get::<_, Vec<u8>>(0).map_err(db)?).ok_or_else(bad)?;
            let signer = id_of(&row.get::<_, Vec<u8>>(3).map_err(db)?).ok_or_else(bad)?;
            let history: [u8; 32] = row
                .get::<_, Vec<u8>>(2)
                .map_err(db)?
                .try_into()
                .map_err(|_| bad())?;
            let signature: [u8; 64] = row
                .get::<_, Vec<u8>>(4)
                .map_err(db)?
                .try_into()
                .map_err(|_| bad())?;
            out.insert(
                origin,
                packet_format::seals::Checkpoint {
                    origin,
                    through: row.get::<_, i64>(1).map_err(db)? as u64,
                    history,
                    signer,
                    signature: Signature(signature),
                },
            );
        }
        Ok(out)
    }

    /// The last epoch of `origin` scrubbed from this replica's log (0:
    /// none).
    pub fn scrubbed_through(&self, origin: &Id) -> Result<u64> {
        Ok(self
            .checkpoints()?
            .get(origin)
            .map_or(0, |checkpoint| checkpoint.through))
    }

    /// The recorded state and version of `path`, if it has an entry
    /// (tombstones included).
    pub fn entry_state(&self, path: &[u8]) -> Result<Option<(PathState, VersionVector)>> {
        let db = |source| self.db_error(source);
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT state, version FROM entries WHERE path = ?1",
                params![path],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let Some((state, version)) = row else {
            return Ok(None);
        };
        Ok(Some((
            postcard::from_bytes(&state).map_err(|e| self.corrupt(format!("entry state: {e}")))?,
            postcard::from_bytes(&version)
                .map_err(|e| self.corrupt(format!("entry version: {e}")))?,
        )))
    }
}

// Key rotations (issue 15, `mkreplica -rekey`, SPEC.md §7.1): made on
// first use. `members.public_key` holds each member's current key; this
// table the keys it had before, so that what they signed still verifies
// for the epochs they were good for.
const ROTATIONS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rotations (
    replica     BLOB NOT NULL,
    -- The member's own epoch of the RekeyMember operation: `old_key` is
    -- good for its epochs up to this one, `new_key` after it.
    epoch       INTEGER NOT NULL,
    old_key     BLOB NOT NULL,
    new_key     BLOB NOT NULL,
    at_ns       INTEGER NOT NULL,
    PRIMARY KEY (replica, epoch)
)";

/// A member's key rotation, as this replica holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub replica: Id,
    /// The member's own epoch of its `RekeyMember` operation.
    pub epoch: u64,
    pub old_key: [u8; 32],
    pub new_key: [u8; 32],
    /// When this replica took it (nanoseconds since 1970, UTC).
    pub at_ns: i64,
}

/// Takes a rotation in `tx`: keeps the old key in the history, makes the
/// new one the member's current key, and the announced encryption key
/// the one packets to it are encrypted to.
pub fn rekey_member(
    tx: &Connection,
    rotation: &Rotation,
    encryption_key: &str,
) -> rusqlite::Result<()> {
    tx.execute_batch(ROTATIONS_SCHEMA)?;
    tx.execute(
        "INSERT INTO rotations (replica, epoch, old_key, new_key, at_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            rotation.replica.0.as_slice(),
            rotation.epoch as i64,
            rotation.old_key.as_slice(),
            rotation.new_key.as_slice(),
            rotation.at_ns
        ],
    )?;
    tx.execute(
        "UPDATE members SET public_key = ?2 WHERE replica = ?1",
        params![rotation.replica.0.as_slice(), rotation.new_key.as_slice()],
    )?;
    tx.execute_batch(MEMBER_KEYS_SCHEMA)?;
    tx.execute(
        "INSERT INTO member_keys (replica, encryption_key, origin, epoch) VALUES (?1, ?2, ?1, ?3)
         ON CONFLICT (replica) DO UPDATE SET encryption_key = excluded.encryption_key,
             origin = excluded.origin, epoch = excluded.epoch
         WHERE NOT (member_keys.origin = excluded.origin AND member_keys.epoch > excluded.epoch)",
        params![
            rotation.replica.0.as_slice(),
            encryption_key,
            rotation.epoch as i64
        ],
    )?;
    Ok(())
}

impl State {
    /// Every key rotation this replica holds, by member then epoch.
    pub fn rotations(&self) -> Result<Vec<Rotation>> {
        if !self.has_table("rotations")? {
            return Ok(Vec::new());
        }
        let db = |source| self.db_error(source);
        let mut statement = self
            .conn
            .prepare(
                "SELECT replica, epoch, old_key, new_key, at_ns FROM rotations \
                 ORDER BY replica, epoch",
            )
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (replica, epoch, old_key, new_key, at_ns) = row.map_err(db)?;
            let bad = || self.corrupt("rotations: bad replica id or key");
            out.push(Rotation {
                replica: Id(replica.try_into().map_err(|_| bad())?),
                epoch: epoch as u64,
                old_key: old_key.try_into().map_err(|_| bad())?,
                new_key: new_key.try_into().map_err(|_| bad())?,
                at_ns,
            });
        }
        Ok(out)
    }
}
