//! Chunk encoding on a small pool of worker threads, for
//! [`crate::writer::PacketWriter::with_encoder_threads`]: each chunk is
//! checked against its id and compressed on a worker, and the writer
//! writes the results in the order the chunks were added, so the packet
//! is byte for byte what one thread writes. Memory is bounded: at most
//! `2 × threads + 2` chunks are in flight (each at most
//! [`crate::MAX_CHUNK_LEN`] bytes, plus its compressed form).

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::ops::ChunkId;
use crate::records::{CODEC_PLAIN, CODEC_ZSTD};

/// A chunk as a worker leaves it: its bytes and how they are stored
/// whole (`Err`: they do not match the id, or zstd failed).
pub(crate) struct Encoded {
    pub id: ChunkId,
    pub data: Vec<u8>,
    pub stored: Result<(u8, Vec<u8>), EncodeError>,
}

pub(crate) enum EncodeError {
    IdMismatch,
    Zstd(std::io::Error),
}

struct Job {
    seq: u64,
    id: ChunkId,
    data: Vec<u8>,
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
        let capacity = 2 * threads as u64 + 2;
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
                        let stored = encode(compressor.as_mut(), &job.id, &job.data);
                        let encoded = Encoded {
                            id: job.id,
                            data: job.data,
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

    /// Hands a chunk to the workers. The caller first takes results
    /// ([`Self::next_in_order`]) while [`Self::is_full`].
    pub fn submit(&mut self, id: ChunkId, data: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let job = Job { seq, id, data };
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

/// How a whole chunk is stored, as the writer does it on one thread.
fn encode(
    compressor: Option<&mut zstd::bulk::Compressor<'static>>,
    id: &ChunkId,
    data: &[u8],
) -> Result<(u8, Vec<u8>), EncodeError> {
    if Sha256::digest(data).as_slice() != id {
        return Err(EncodeError::IdMismatch);
    }
    let compressor = match compressor {
        Some(compressor) => compressor,
        None => {
            return Err(EncodeError::Zstd(std::io::Error::other(
                "zstd did not start",
            )))
        }
    };
    let compressed = compressor.compress(data).map_err(EncodeError::Zstd)?;
    Ok(choose(data, compressed))
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
