//! The operations of one batch, kept on disk while the batch is checked,
//! planned and committed, rather than in memory: a packet from a sibling
//! that was disconnected for long legitimately carries millions of them
//! (packet SPEC.md §13 sets no cap), and a few hundred bytes each in memory
//! made a million cost hundreds of MB.
//!
//! They go to a scratch database, `.syncreplica/batch-ops.db`, attached to
//! the state database's connection as `batch` (no journal, no fsync: it is
//! thrown away after the batch, and after a crash). The engine reads them
//! back in slices of at most [`OPS_IN_MEMORY`] decoded operations, or one
//! row at a time; what it keeps per operation is a few bits
//! ([`OpBits`]). Being attached, the scratch rows are read inside the
//! batch's commit transaction, which copies the accepted ones into the
//! operation log: the batch stays atomic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::error::{Error, Result};
use crate::ops::{Change, Id, Operation, VersionVector};
use crate::store::state::State;

/// At most this many operations of a batch are decoded and held at once
/// (a slice read back in [`OpBatch::for_each`], or written by
/// [`OpBatch::push`]).
pub const OPS_IN_MEMORY: usize = 4096;

/// And at most about this many bytes of their encodings: one operation
/// may encode to 16 MiB (a file's chunk list; packet SPEC.md §13), and
/// such lists compress to next to nothing in a packet, so 4,096 of them
/// would be 64 GiB decoded. A slice ends after the operation that
/// reaches it (one operation is always read whole).
pub const OP_BYTES_IN_MEMORY: usize = 16 << 20;

/// The scratch database's file, in the state folder.
pub const SCRATCH_FILE: &str = "batch-ops.db";

/// One bit per operation of a batch, by its position (from 0).
#[derive(Debug, Clone, Default)]
pub struct OpBits(Vec<u64>);

impl OpBits {
    pub fn set(&mut self, index: u64) {
        let word = (index / 64) as usize;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (index % 64);
    }

    pub fn get(&self, index: u64) -> bool {
        self.0
            .get((index / 64) as usize)
            .is_some_and(|w| w & (1 << (index % 64)) != 0)
    }
}

/// A batch's operations, in the order given, in the scratch database. Made
/// by [`OpBatch::create`], filled by [`OpBatch::push`], then read;
/// [`OpBatch::close`] detaches and removes the scratch database.
/// A row of the scratch table: a path change's path and version are
/// kept apart too, so the pass that reads them decodes nothing else.
struct Row {
    origin: Id,
    epoch: u64,
    path: Option<Vec<u8>>,
    version: Option<Vec<u8>>,
    repeat: bool,
    op: Vec<u8>,
}

pub struct OpBatch {
    file: PathBuf,
    len: u64,
    /// Rows not yet written.
    pending: Vec<Row>,
    /// The bytes of their encodings.
    pending_bytes: usize,
    /// Per origin, the highest epoch this replica logged or an earlier
    /// operation of the batch brought: an operation at or below it is
    /// never applied (the planner skips it as already had).
    high: HashMap<Id, u64>,
    /// `AddMember` operations: (origin, epoch, member, key). Few.
    added: Vec<(Id, u64, Id, [u8; 32])>,
    /// `RekeyMember` operations: (origin, epoch, member, old key, new
    /// key). Few.
    rekeyed: Vec<crate::sync::seals::Rekeyed>,
    /// The most operations held decoded at once by a reader so far.
    largest_slice: std::cell::Cell<usize>,
    sealed: bool,
}

/// The error for `source`, met writing the scratch database `file` while
/// doing `what`: [`Error::ScratchFull`] when its filesystem is full (SQLite
/// says so, or an I/O error meets a full filesystem), else `other`.
pub(crate) fn write_error(
    file: &Path,
    source: rusqlite::Error,
    what: impl FnOnce() -> String,
    other: impl FnOnce(rusqlite::Error) -> Error,
) -> Error {
    let dir = file.parent().unwrap_or(Path::new("."));
    let free = crate::sys::fsutil::free_space(dir).ok();
    let full = match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => true,
        // A write that failed for want of room can surface as an I/O
        // error: then the filesystem has (next to) nothing left.
        Some(rusqlite::ErrorCode::SystemIoFailure) => free.is_some_and(|f| f < 64 * 1024),
        _ => false,
    };
    if !full {
        return other(source);
    }
    Error::ScratchFull {
        file: file.to_path_buf(),
        mount: crate::sys::fsutil::mount_point(dir),
        free: free.unwrap_or(0),
        what: what(),
    }
}

fn scratch_error(file: &Path, what: impl std::fmt::Display) -> Error {
    Error::CorruptState {
        path: file.to_path_buf(),
        what: format!("scratch database of the batch: {what}"),
    }
}

impl OpBatch {
    /// Starts an empty batch in a fresh scratch database beside `state`'s
    /// (one left by an interrupted run is replaced). `logged` is this
    /// replica's own epoch row (what it logged of each origin).
    pub fn create(state: &State, logged: &HashMap<Id, u64>) -> Result<OpBatch> {
        let conn = state.conn();
        let file = state
            .path()
            .parent()
            .unwrap_or(Path::new("."))
            .join(SCRATCH_FILE);
        detach_if_attached(conn).map_err(|e| state.db_error(e))?;
        remove_scratch(&file)?;
        let db = |e| write_error(&file, e, || "making it".to_string(), |e| state.db_error(e));
        conn.execute("ATTACH DATABASE ?1 AS batch", [file.to_string_lossy()])
            .map_err(db)?;
        // Thrown away after the batch (and after a crash): no journal, no
        // fsync. A fixed cache of 16 MiB (its index is sorted in it, where
        // the default 2 MiB spills to temporary files). Locked once for
        // the batch (the replica's lock already keeps others out): in the
        // default mode every statement outside a transaction took and
        // dropped its file lock, looked for a hot journal (two stats) and
        // re-read the header, about ten system calls each, and an import
        // of a 200-file change ran some 2,000 of them.
        conn.execute_batch(
            "PRAGMA batch.journal_mode = OFF;
             PRAGMA batch.synchronous = OFF;
             PRAGMA batch.locking_mode = EXCLUSIVE;
             PRAGMA batch.cache_size = -16384;
             CREATE TABLE batch.ops (
                 seq INTEGER PRIMARY KEY,
                 origin BLOB NOT NULL,
                 epoch INTEGER NOT NULL,
                 path BLOB,
                 version BLOB,
                 repeat INTEGER NOT NULL,
                 op BLOB NOT NULL
             );
             CREATE INDEX batch.ops_by_origin ON ops (origin, epoch);",
        )
        .map_err(|e| {
            let err = db(e);
            // Nothing of it is kept.
            let _ = conn.execute_batch("DETACH DATABASE batch");
            let _ = remove_scratch(&file);
            err
        })?;
        Ok(OpBatch {
            file,
            len: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            high: logged.clone(),
            added: Vec::new(),
            rekeyed: Vec::new(),
            largest_slice: std::cell::Cell::new(0),
            sealed: false,
        })
    }

    /// Appends `op` (written in slices of [`OPS_IN_MEMORY`] operations or
    /// [`OP_BYTES_IN_MEMORY`] bytes).
    pub fn push(&mut self, state: &State, op: &Operation) -> Result<()> {
        debug_assert!(!self.sealed, "pushed after reading");
        let high = self.high.entry(op.origin).or_insert(0);
        let repeat = op.epoch <= *high;
        *high = (*high).max(op.epoch);
        if let Change::AddMember {
            replica,
            public_key,
            ..
        } = &op.change
        {
            self.added
                .push((op.origin, op.epoch, *replica, *public_key));
        }
        if let Change::RekeyMember {
            replica,
            old_key,
            new_key,
            ..
        } = &op.change
        {
            self.rekeyed
                .push((op.origin, op.epoch, *replica, *old_key, *new_key));
        }
        let change = op.change.path_change();
        let encoded = op.encode();
        self.pending_bytes += encoded.len();
        self.pending.push(Row {
            origin: op.origin,
            epoch: op.epoch,
            path: change.as_ref().map(|c| c.path.clone()),
            version: change
                .map(|c| postcard::to_stdvec(c.version).expect("version vectors encode")),
            repeat,
            op: encoded,
        });
        if self.pending.len() >= OPS_IN_MEMORY || self.pending_bytes >= OP_BYTES_IN_MEMORY {
            self.flush(state)?;
        }
        Ok(())
    }

    fn flush(&mut self, state: &State) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let before = self.len;
        let mut write = || -> rusqlite::Result<()> {
            let tx = state.conn().unchecked_transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO batch.ops (seq, origin, epoch, path, version, repeat, op)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for row in &rows {
                    insert.execute(params![
                        self.len as i64,
                        row.origin.0.as_slice(),
                        row.epoch as i64,
                        row.path,
                        row.version,
                        row.repeat,
                        row.op
                    ])?;
                    self.len += 1;
                }
            }
            tx.commit()
        };
        write().map_err(|e| {
            write_error(
                &self.file,
                e,
                || format!("copying the packet's operations ({before} so far)"),
                |e| state.db_error(e),
            )
        })
    }

    /// Ends the filling: writes what is pending and indexes the rows.
    fn seal(&mut self, state: &State) -> Result<()> {
        if self.sealed {
            return Ok(());
        }
        self.flush(state)?;
        state
            .conn()
            .execute_batch(
                "CREATE INDEX batch.ops_by_path ON ops (path, seq) WHERE path IS NOT NULL;",
            )
            .map_err(|e| {
                write_error(
                    &self.file,
                    e,
                    || format!("indexing the packet's {} operations", self.len),
                    |e| state.db_error(e),
                )
            })?;
        self.sealed = true;
        Ok(())
    }

    /// Ends the filling; to be called once every operation is pushed.
    pub fn finish(&mut self, state: &State) -> Result<()> {
        self.seal(state)
    }

    /// The scratch database's file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Operations in the batch.
    pub fn len(&self) -> u64 {
        self.len + self.pending.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most operations a reader held decoded at once so far.
    pub fn largest_slice(&self) -> usize {
        self.largest_slice.get()
    }

    /// The batch's `AddMember` operations: (origin, epoch, member, key).
    pub fn added_members(&self) -> &[(Id, u64, Id, [u8; 32])] {
        &self.added
    }

    fn decode(&self, bytes: &[u8]) -> Result<Operation> {
        Operation::decode(bytes).map_err(|e| scratch_error(&self.file, e))
    }

    /// Calls `f` with each operation and its position, in order, decoding
    /// at most [`OPS_IN_MEMORY`] at a time, and at most about
    /// [`OP_BYTES_IN_MEMORY`] of their encodings.
    pub fn for_each(
        &self,
        conn: &Connection,
        mut f: impl FnMut(u64, &Operation) -> Result<()>,
    ) -> Result<()> {
        debug_assert!(self.sealed, "read before finish");
        let mut next = 0u64;
        while next < self.len {
            let end = (next + OPS_IN_MEMORY as u64).min(self.len);
            let mut slice: Vec<(u64, Operation)> = Vec::new();
            {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT seq, op FROM batch.ops WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
                    )
                    .map_err(|e| scratch_error(&self.file, e))?;
                let mut rows = statement
                    .query(params![next as i64, end as i64])
                    .map_err(|e| scratch_error(&self.file, e))?;
                let mut bytes_read = 0usize;
                while let Some(row) = rows.next().map_err(|e| scratch_error(&self.file, e))? {
                    let seq: i64 = row.get(0).map_err(|e| scratch_error(&self.file, e))?;
                    let bytes: Vec<u8> = row.get(1).map_err(|e| scratch_error(&self.file, e))?;
                    bytes_read += bytes.len();
                    slice.push((seq as u64, self.decode(&bytes)?));
                    if bytes_read >= OP_BYTES_IN_MEMORY {
                        break;
                    }
                }
            }
            self.largest_slice
                .set(self.largest_slice.get().max(slice.len()));
            let Some(&(last, _)) = slice.last() else {
                return Err(scratch_error(&self.file, "operations missing"));
            };
            for (seq, op) in &slice {
                f(*seq, op)?;
            }
            next = last + 1;
        }
        Ok(())
    }

    /// The operation of the batch from `origin` at `epoch` (the last
    /// pushed, should there be several), if any: a relative file state's
    /// base ([`crate::sync::delta::Expander`]). Can be asked while filling.
    pub fn operation(
        &self,
        conn: &Connection,
        origin: Id,
        epoch: u64,
    ) -> Result<Option<Operation>> {
        if let Some(row) = self
            .pending
            .iter()
            .rev()
            .find(|row| row.origin == origin && row.epoch == epoch)
        {
            return self.decode(&row.op).map(Some);
        }
        let err = |e| scratch_error(&self.file, e);
        let bytes: Option<Vec<u8>> = conn
            .prepare_cached(
                "SELECT op FROM batch.ops WHERE origin = ?1 AND epoch = ?2 ORDER BY seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                rusqlite::OptionalExtension::optional(
                    s.query_row(params![origin.0.as_slice(), epoch as i64], |row| row.get(0)),
                )
            })
            .map_err(err)?;
        bytes.map(|b| self.decode(&b)).transpose()
    }

    /// Copies the operations that are not repeats (what the planner
    /// accepts from a batch it does not refuse) into the operation log, in
    /// the commit's transaction `tx`; returns how many.
    pub fn log_into(&self, tx: &Connection) -> rusqlite::Result<u64> {
        tx.execute(
            "INSERT INTO main.oplog (origin, epoch, op)
             SELECT origin, epoch, op FROM batch.ops WHERE NOT repeat ORDER BY seq",
            [],
        )
        .map(|rows| rows as u64)
    }

    /// Records the encryption keys the batch's `MemberKeys` operations
    /// announce (issue 15), in the commit's transaction `tx`, as
    /// [`state::append_operation`] does for operations logged one by one.
    /// The encoded kind is looked for first (`MemberKeys`, 0x10003, is
    /// the varint 83 80 04 in an encoded operation), so other operations
    /// are not decoded.
    pub fn note_member_keys(&self, tx: &Connection) -> rusqlite::Result<()> {
        let mut statement = tx.prepare(
            "SELECT op FROM batch.ops WHERE NOT repeat AND instr(op, X'838004') > 0 ORDER BY seq",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let bytes: Vec<u8> = row.get(0)?;
            if let Ok(op) = postcard::from_bytes::<Operation>(&bytes) {
                crate::store::state::note_member_keys(tx, &op)?;
            }
        }
        Ok(())
    }

    /// For each path the batch changes, in byte order, its operations
    /// from the last one back (position and version), leaving out repeats
    /// (an operation at or below an epoch its origin had already: never
    /// applied): `f(path, position, version)`, one row at a time.
    pub fn for_each_by_path_backwards(
        &self,
        conn: &Connection,
        mut f: impl FnMut(&[u8], u64, &VersionVector) -> Result<()>,
    ) -> Result<()> {
        debug_assert!(self.sealed, "read before finish");
        let err = |e| scratch_error(&self.file, e);
        let mut statement = conn
            .prepare(
                "SELECT path, seq, version FROM batch.ops
                 WHERE path IS NOT NULL AND NOT repeat ORDER BY path, seq DESC",
            )
            .map_err(err)?;
        let mut rows = statement.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let path: Vec<u8> = row.get(0).map_err(err)?;
            let seq: i64 = row.get(1).map_err(err)?;
            let bytes: Vec<u8> = row.get(2).map_err(err)?;
            let version: VersionVector =
                postcard::from_bytes(&bytes).map_err(|e| scratch_error(&self.file, e))?;
            f(&path, seq as u64, &version)?;
        }
        Ok(())
    }

    /// Calls `f` with every operation that is not a repeat (origin,
    /// epoch, encoding), from the last one back, one at a time. Each
    /// origin's come in descending epochs: a batch's operations of one
    /// origin that are not repeats rise in batch order.
    pub fn for_each_backwards(
        &self,
        conn: &Connection,
        mut f: impl FnMut(Id, u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let err = |e| scratch_error(&self.file, e);
        let mut statement = conn
            .prepare("SELECT origin, epoch, op FROM batch.ops WHERE NOT repeat ORDER BY seq DESC")
            .map_err(err)?;
        let mut rows = statement.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let origin: Vec<u8> = row.get(0).map_err(err)?;
            let origin = id_of(&origin)
                .ok_or_else(|| scratch_error(&self.file, "an origin that is not 16 bytes"))?;
            let epoch: i64 = row.get(1).map_err(err)?;
            let bytes: Vec<u8> = row.get(2).map_err(err)?;
            f(origin, epoch as u64, &bytes)?;
        }
        Ok(())
    }

    /// Detaches and removes the scratch database.
    pub fn close(self, state: &State) {
        // Nothing depends on these: a leftover is replaced next time.
        let _ = state.conn().execute_batch("DETACH DATABASE batch");
        let _ = remove_scratch(&self.file);
    }
}

/// A batch as the seal check reads it ([`crate::sync::seals::verify_incoming`]).
pub struct Reading<'a> {
    pub batch: &'a OpBatch,
    pub conn: &'a Connection,
}

impl crate::sync::seals::Incoming for Reading<'_> {
    fn backwards(&self, f: &mut crate::sync::seals::OpVisitor) -> Result<()> {
        self.batch.for_each_backwards(self.conn, f)
    }

    fn added_members(&self) -> Vec<(Id, u64, Id, [u8; 32])> {
        self.batch.added.clone()
    }

    fn rekeyed(&self) -> Vec<crate::sync::seals::Rekeyed> {
        self.batch.rekeyed.clone()
    }
}

fn id_of(bytes: &[u8]) -> Option<Id> {
    Some(Id(bytes.try_into().ok()?))
}

fn detach_if_attached(conn: &Connection) -> rusqlite::Result<()> {
    let attached: bool = conn
        .prepare("SELECT 1 FROM pragma_database_list WHERE name = 'batch'")?
        .exists([])?;
    if attached {
        conn.execute_batch("DETACH DATABASE batch")?;
    }
    Ok(())
}

/// Removes the scratch database an interrupted batch left in `state`'s
/// folder, unless a batch of this connection is using it.
pub fn remove_stale(state: &State) -> Result<()> {
    let attached = state
        .conn()
        .prepare("SELECT 1 FROM pragma_database_list WHERE name = 'batch'")
        .and_then(|mut s| s.exists([]))
        .map_err(|e| state.db_error(e))?;
    if attached {
        return Ok(());
    }
    let dir = state.path().parent().unwrap_or(Path::new("."));
    remove_scratch(&dir.join(SCRATCH_FILE))
}

/// Removes a scratch database (and any journal SQLite kept of it).
fn remove_scratch(file: &Path) -> Result<()> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(PathBuf::from(name), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::PathState;

    fn op(origin: Id, epoch: u64, path: &str) -> Operation {
        let mut version = VersionVector::default();
        version.set(origin, epoch);
        Operation {
            origin,
            epoch,
            recorded: Default::default(),
            change: Change::Path {
                path: path.as_bytes().to_vec(),
                version,
                state: PathState::Deleted,
            },
        }
    }

    #[test]
    fn operations_with_long_chunk_lists_are_held_a_bounded_number_of_bytes_at_a_time() {
        // Files of 32,768 chunks each (some 1.2 MB encoded): far fewer than
        // a slice of operations make more bytes than a slice may hold.
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let origin = Id([1; 16]);
        let mut batch = OpBatch::create(&state, &HashMap::new()).unwrap();
        let chunks: Vec<crate::ops::ChunkRef> = (0..32_768u32)
            .map(|i| crate::ops::ChunkRef {
                id: [(i % 251) as u8; 32],
                len: 65_536,
            })
            .collect();
        let big = |epoch: u64| {
            let mut op = op(origin, epoch, &format!("f{epoch}"));
            if let Change::Path { state, .. } = &mut op.change {
                *state = PathState::File {
                    mode: 0o644,
                    mtime: Default::default(),
                    size: 32_768 * 65_536,
                    chunks: chunks.clone(),
                    ext: Default::default(),
                };
            }
            op
        };
        let encoded = big(1).encode().len();
        let count = 3 * (OP_BYTES_IN_MEMORY / encoded) as u64 + 2;
        assert!(count < OPS_IN_MEMORY as u64);
        for epoch in 1..=count {
            batch.push(&state, &big(epoch)).unwrap();
            assert!(batch.pending_bytes < OP_BYTES_IN_MEMORY);
        }
        batch.finish(&state).unwrap();
        let mut seen = Vec::new();
        batch
            .for_each(state.conn(), |position, op| {
                if let Change::Path { state, .. } = &op.change {
                    assert!(
                        matches!(state, PathState::File { chunks: c, .. } if c.len() == 32_768)
                    );
                }
                seen.push((position, op.epoch));
                Ok(())
            })
            .unwrap();
        let expected: Vec<(u64, u64)> = (0..count).map(|i| (i, i + 1)).collect();
        assert_eq!(seen, expected);
        // A slice ends after the operation that reaches the bound.
        assert_eq!(
            batch.largest_slice(),
            OP_BYTES_IN_MEMORY.div_ceil(encoded),
            "operations held decoded at once"
        );
        batch.close(&state);
    }

    #[test]
    fn a_batch_is_read_back_in_order_a_bounded_slice_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let origin = Id([1; 16]);
        // Epochs 1 and 2 are logged already: repeats.
        let logged = HashMap::from([(origin, 2)]);
        let mut batch = OpBatch::create(&state, &logged).unwrap();
        let file = dir.path().join(SCRATCH_FILE);
        assert!(file.exists());
        let count = 2 * OPS_IN_MEMORY as u64 + 5;
        let paths = ["b", "a", "c/d"];
        for i in 0..count {
            batch
                .push(&state, &op(origin, i + 1, paths[(i % 3) as usize]))
                .unwrap();
            // Written as it goes: never more than a slice pending.
            assert!(batch.pending.len() < OPS_IN_MEMORY);
        }
        batch.finish(&state).unwrap();
        assert_eq!(batch.len(), count);

        let mut seen = Vec::new();
        batch
            .for_each(state.conn(), |position, op| {
                seen.push((position, op.epoch));
                Ok(())
            })
            .unwrap();
        let expected: Vec<(u64, u64)> = (0..count).map(|i| (i, i + 1)).collect();
        assert_eq!(seen, expected);
        assert_eq!(batch.largest_slice(), OPS_IN_MEMORY);

        // By path in byte order, each path's last operation first, the
        // repeats (epochs 1 and 2) left out.
        let mut rows = Vec::new();
        batch
            .for_each_by_path_backwards(state.conn(), |path, position, version| {
                assert_eq!(version.get(&origin), position + 1);
                rows.push((path.to_vec(), position));
                Ok(())
            })
            .unwrap();
        assert_eq!(rows.len() as u64, count - 2);
        let mut sorted = rows.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        assert_eq!(rows, sorted);
        assert!(rows.iter().all(|(_, position)| *position >= 2));

        batch.close(&state);
        assert!(!file.exists());
        // A fresh batch on the same connection after a close.
        OpBatch::create(&state, &logged).unwrap().close(&state);
    }
}
