//! Chunk encoding on a small pool of worker threads, for
//! [`crate::writer::PacketWriter::with_encoder_threads`]: each group of
//! chunks is checked against the chunks' ids and compressed on a worker,
//! and the writer writes the results in the order the groups were added,
//! so the packet is byte for byte what one thread writes. Memory is
//! bounded: at most `threads + 1` groups are in flight (each at most the
//! writer's group size, plus its compressed form).

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::ops::ChunkId;
use crate::records::{CODEC_PLAIN, CODEC_ZSTD, GROUP_MEMBER_HEADER_LEN};

/// Chunks encoded together: `bytes` is the decoded form of a chunk group
/// (SPEC.md §5.2: each chunk as id, length, bytes), `members` where each
/// chunk's bytes lie in it. One member is written as an ordinary record.
#[derive(Default)]
pub(crate) struct Group {
    pub bytes: Vec<u8>,
    pub members: Vec<(ChunkId, std::ops::Range<usize>)>,
    /// Members whose bytes nobody has checked against their id yet (the
    /// others were checked by the caller as they were read): only these
    /// are hashed before encoding, so no chunk is hashed twice.
    pub unchecked: Vec<usize>,
}

impl Group {
    /// Appends chunk `id` with its bytes, to be checked against `id`
    /// before it is encoded.
    pub fn push(&mut self, id: &ChunkId, data: &[u8]) {
        self.unchecked.push(self.members.len());
        self.push_checked(id, data.len(), |slot| slot.copy_from_slice(data));
    }

    /// Appends chunk `id` of `len` bytes, which `fill` writes in place
    /// (no copy); the caller vouches that they match `id`.
    pub fn push_checked(&mut self, id: &ChunkId, len: usize, fill: impl FnOnce(&mut [u8])) {
        let _ = self.try_push_checked(id, len, |slot| {
            fill(slot);
            Ok::<bool, ()>(true)
        });
    }

    /// As [`Self::push_checked`] where `fill` may fail or find the bytes
    /// wrong (`Ok(false)`): the group is then left as it was.
    pub fn try_push_checked<E>(
        &mut self,
        id: &ChunkId,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let mark = self.bytes.len();
        self.bytes.extend_from_slice(id);
        self.bytes.extend_from_slice(&(len as u32).to_le_bytes());
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        match fill(&mut self.bytes[start..]) {
            Ok(true) => {
                self.members.push((*id, start..self.bytes.len()));
                Ok(true)
            }
            other => {
                self.bytes.truncate(mark);
                other
            }
        }
    }

    /// Decoded length were `len` more bytes of chunk added.
    pub fn len_with(&self, len: usize) -> usize {
        self.bytes.len() + GROUP_MEMBER_HEADER_LEN + len
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn data(&self, index: usize) -> &[u8] {
        &self.bytes[self.members[index].1.clone()]
    }
}

/// How a worker stores a group.
pub(crate) enum Stored {
    /// A group of one chunk: its codec and stored bytes, as an ordinary
    /// record.
    Single(u8, Vec<u8>),
    /// Several chunks as one zstd frame of the group's bytes (codec 3).
    Frame(Vec<u8>),
    /// Several chunks that do not compress together: each stored plain.
    Plain,
}

/// A group as a worker leaves it (`Err`: a chunk does not match its id,
/// or zstd failed).
pub(crate) struct Encoded {
    pub group: Group,
    pub stored: Result<Stored, EncodeError>,
}

pub(crate) enum EncodeError {
    IdMismatch(ChunkId),
    Zstd(std::io::Error),
}

struct Job {
    seq: u64,
    group: Group,
}

pub(crate) struct EncoderPool {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<(u64, Encoded)>,
    workers: Vec<JoinHandle<()>>,
    /// Results come back in any order; held here until their turn.
    ready: BTreeMap<u64, Encoded>,
    next_seq: u64,
    next_out: u64,
    capacity: u64,
}

impl EncoderPool {
    /// `threads` workers (at least 1) compressing at `level`.
    pub fn new(threads: usize, level: i32) -> EncoderPool {
        let threads = threads.max(1);
        // Groups are large (up to the writer's group size): one each
        // worker, one waiting.
        let capacity = threads as u64 + 1;
        let (jobs, job_queue) = sync_channel::<Job>(capacity as usize);
        let job_queue = Arc::new(Mutex::new(job_queue));
        let (done, results) = sync_channel(capacity as usize);
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&job_queue);
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut compressor = zstd::bulk::Compressor::new(level).ok();
                    loop {
                        // The lock is held only to take a job, not to work on it.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let stored = encode(compressor.as_mut(), &job.group, true);
                        let encoded = Encoded {
                            group: job.group,
                            stored,
                        };
                        if done.send((job.seq, encoded)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        EncoderPool {
            jobs: Some(jobs),
            results,
            workers,
            ready: BTreeMap::new(),
            next_seq: 0,
            next_out: 0,
            capacity,
        }
    }

    /// Whether no chunk is in flight.
    pub fn is_idle(&self) -> bool {
        self.next_out == self.next_seq
    }

    /// Hands a group to the workers. The caller first takes results
    /// ([`Self::next_in_order`]) while [`Self::is_full`].
    pub fn submit(&mut self, group: Group) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let job = Job { seq, group };
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        // The workers only stop when the pool is dropped.
        debug_assert!(matches!(sent, Some(Ok(()))));
    }

    /// Whether as many chunks as allowed are in flight.
    pub fn is_full(&self) -> bool {
        self.next_seq - self.next_out >= self.capacity
    }

    /// The oldest chunk in flight, once encoded (waits for it); `None`
    /// when none is in flight.
    pub fn next_in_order(&mut self) -> Option<Encoded> {
        if self.is_idle() {
            return None;
        }
        while !self.ready.contains_key(&self.next_out) {
            // A worker panicked (cannot happen short of a bug): treat the
            // chunk as unencodable rather than hang.
            let Ok((seq, encoded)) = self.results.recv() else {
                return None;
            };
            self.ready.insert(seq, encoded);
        }
        let encoded = self.ready.remove(&self.next_out);
        self.next_out += 1;
        encoded
    }
}

impl Drop for EncoderPool {
    fn drop(&mut self) {
        // Closing the job queue stops the workers once they finish (their
        // results, if any, are dropped with the receiver).
        self.jobs = None;
        while self.results.try_recv().is_ok() {}
        let workers = std::mem::take(&mut self.workers);
        drop(std::mem::replace(&mut self.results, sync_channel(0).1));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

/// How a group is stored, as the writer does it on one thread: each
/// chunk checked against its id, then compressed alone (one chunk) or as
/// one frame (several).
/// `check_ids`: false where the caller checked them as they came.
pub(crate) fn encode(
    compressor: Option<&mut zstd::bulk::Compressor<'static>>,
    group: &Group,
    check_ids: bool,
) -> Result<Stored, EncodeError> {
    for &index in group.unchecked.iter().filter(|_| check_ids) {
        let id = &group.members[index].0;
        if Sha256::digest(group.data(index)).as_slice() != id {
            return Err(EncodeError::IdMismatch(*id));
        }
    }
    let compressor = match compressor {
        Some(compressor) => compressor,
        None => {
            return Err(EncodeError::Zstd(std::io::Error::other(
                "zstd did not start",
            )))
        }
    };
    if group.members.len() == 1 {
        let data = group.data(0);
        let compressed = compressor.compress(data).map_err(EncodeError::Zstd)?;
        let (codec, stored) = choose(data, compressed);
        return Ok(Stored::Single(codec, stored));
    }
    let raw = &group.bytes;
    let compressed = compressor.compress(raw).map_err(EncodeError::Zstd)?;
    Ok(if compressed.len() < raw.len() - raw.len() / 32 {
        Stored::Frame(compressed)
    } else {
        Stored::Plain
    })
}

/// Compressed only where it helps: anything that saves less than ~3% is
/// stored plain.
pub(crate) fn choose(raw: &[u8], compressed: Vec<u8>) -> (u8, Vec<u8>) {
    if compressed.len() < raw.len() - raw.len() / 32 {
        (CODEC_ZSTD, compressed)
    } else {
        (CODEC_PLAIN, raw.to_vec())
    }
}
