//! Writing a large file that ends with an fsync, without waiting for all
//! of it at the end.
//!
//! Linux keeps written pages dirty in memory until about a tenth of the
//! available memory is dirty or they are 30 s old, so a packet part of a
//! few hundred MiB is still all in memory when its writer fsyncs it, and
//! the fsync then waits for the whole file to reach the disk. On the
//! development machine (a virtual disk whose flush costs in proportion to
//! the bytes written since the last one) that was 0.48 s of a 2.9 s
//! export of a 300 MB creation packet, with nothing else running.
//!
//! A [`WriteBehind`] has a thread of its own fdatasync the file every
//! [`WRITE_BEHIND_STEP`] bytes written, while the writer goes on
//! (compressing, hashing, encrypting): the final fsync then waits for the
//! last step only (0.01 s there). Measured with a 300 MB file written at
//! the export's pace: final fsync 0.50 s without, 0.01 s with the thread,
//! 0.24–0.43 s with `posix_fadvise(DONTNEED)` (which only starts the
//! writeback, not the device flush), the writes themselves no slower.
//! (`sync_file_range` would start writeback per range too, but neither
//! rustix nor nix offers it without `unsafe`, and it flushes no device
//! cache either: the fadvise figures above show what that leaves.)
//!
//! Only for files written in offset order. A staged file that an import
//! patches (the packet's new chunks first, scattered, then the rest copied
//! from the old version around them) would have its scattered chunks
//! allocated first and the rest inserted between them: ext4 then splits
//! its extent tree's leaves, and a 2 GiB disk image took 76 KiB more at
//! the receiver than at the sender (measured with `bench/vm_image.sh`),
//! where the final fsync alone allocates in offset order.
//!
//! An fdatasync error is not lost: the thread stops at the first one and
//! [`WriteBehind::finish`] returns it (the thread's file shares the
//! writer's open file description, so the writer's own fsync might not
//! report it again).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Bytes written between two background fdatasyncs (8 MiB): large enough
/// that their flushes cost little next to the writes, small enough that
/// the final fsync waits for little. A file smaller than this never
/// starts the thread.
pub const WRITE_BEHIND_STEP: u64 = 8 << 20;

/// A [`File`] written mostly front to back (seeks are allowed) whose
/// written bytes are made durable by a background thread as they
/// accumulate. Wrap it in a `BufWriter` as the file itself; end with
/// [`WriteBehind::finish`], then fsync the file as before: that is still
/// what makes it durable.
#[derive(Debug)]
pub struct WriteBehind {
    file: File,
    /// Where the next write goes.
    position: u64,
    /// Where the writes were when the thread was last asked to flush.
    handed: u64,
    flusher: Option<Flusher>,
    /// The thread could not be started: not tried again.
    alone: bool,
    /// The error the thread stopped at, for [`WriteBehind::finish`].
    failed: Option<io::Error>,
}

#[derive(Debug)]
struct Flusher {
    /// One pending request at most: a request made while the thread
    /// flushes is merged into the next (its fdatasync covers it). Dropped
    /// (a writer given up on an error), the thread ends after the
    /// fdatasyncs already asked for (two at most).
    wake: SyncSender<()>,
    thread: JoinHandle<io::Result<()>>,
}

impl WriteBehind {
    /// Wraps `file`, whose next write goes at offset 0 (a new file).
    pub fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            position: 0,
            handed: 0,
            flusher: None,
            alone: false,
            failed: None,
        }
    }

    /// Waits for the background flushes and gives the file back, for its
    /// fsync.
    ///
    /// # Errors
    /// The first error of a background fdatasync: the writeback of some of
    /// the bytes written failed.
    pub fn finish(mut self) -> io::Result<File> {
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        self.stop_flusher()?;
        Ok(self.file)
    }

    fn stop_flusher(&mut self) -> io::Result<()> {
        let Some(Flusher { wake, thread }) = self.flusher.take() else {
            return Ok(());
        };
        drop(wake);
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the write-behind thread panicked")))
    }

    fn hand_over(&mut self) {
        if self.position < self.handed.saturating_add(WRITE_BEHIND_STEP) {
            return;
        }
        self.handed = self.position;
        if self.flusher.is_none() && !self.alone {
            self.flusher = start_flusher(&self.file);
            // No thread to be had (a process limit): the final fsync does
            // it all, as without write-behind.
            self.alone = self.flusher.is_none();
        }
        let Some(flusher) = &self.flusher else {
            return;
        };
        match flusher.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            // The thread stopped at an error: kept for `finish` (the bytes
            // of this write are written, so `write` must not fail).
            Err(TrySendError::Disconnected(())) => {
                if let Err(err) = self.stop_flusher() {
                    self.failed.get_or_insert(err);
                }
            }
        }
    }
}

fn start_flusher(file: &File) -> Option<Flusher> {
    let file = file.try_clone().ok()?;
    let (wake, woken) = sync_channel::<()>(1);
    let thread = std::thread::Builder::new()
        .name("write-behind".into())
        .spawn(move || {
            for () in woken {
                file.sync_data()?;
            }
            Ok(())
        })
        .ok()?;
    Some(Flusher { wake, thread })
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.position += n as u64;
        self.hand_over();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for WriteBehind {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        // Writes behind the last hand-over (a header filled in later) are
        // flushed by the next fdatasync or the final fsync; hand-overs go
        // on counting from `handed`.
        self.position = self.file.seek(to)?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn what_is_written_reads_back_across_steps_and_seeks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).unwrap());
        let block: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        for _ in 0..(WRITE_BEHIND_STEP as usize / block.len() * 2 + 3) {
            w.write_all(&block).unwrap();
        }
        assert!(w.flusher.is_some(), "two steps written: the thread runs");
        let end = w.stream_position().unwrap();
        w.seek(SeekFrom::Start(5)).unwrap();
        w.write_all(b"HEADER").unwrap();
        w.seek(SeekFrom::Start(end)).unwrap();
        w.write_all(b"tail").unwrap();
        w.finish().unwrap().sync_all().unwrap();
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len() as u64, end + 4);
        assert_eq!(&back[5..11], b"HEADER");
        assert_eq!(&back[11..20], &block[11..20]);
        assert_eq!(&back[back.len() - 4..], b"tail");
    }

    #[test]
    fn a_small_file_starts_no_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WriteBehind::new(File::create(dir.path().join("f")).unwrap());
        w.write_all(&[7; 4096]).unwrap();
        assert!(w.flusher.is_none());
        w.finish().unwrap();
    }
}
