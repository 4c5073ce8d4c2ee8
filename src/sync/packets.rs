//! Finding packet files, grouping parts into logical packets, and the
//! packet's chunks as a source that imports read content from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use packet_format::{examine_packet, Examination, LogicalPacket};

use crate::error::{Error, IoContext, Result};
use crate::ops::{ChunkId, Id};
use crate::sync::apply::ChunkSource;

/// Packet files named on a command line: files as given, directories
/// listed (not recursively; only `sync_*.zip`/`repl_*.zip` names, so the
/// shipping orders beside packets in a bay or on a stick are skipped),
/// sorted by name with the numbers in it compared as numbers
/// ([`by_name_and_number`]: `_ship_9` before `_ship_10`, part 2 before part 10).
pub fn collect_packet_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for arg in args {
        let meta = std::fs::metadata(arg).map_err(|cause| match cause.kind() {
            std::io::ErrorKind::NotFound => Error::no_such_file(arg, None),
            _ => Error::io(arg, cause),
        })?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(arg)
                .at(arg)?
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.path())
                .filter(|path| path.is_file() && is_packet_name(path))
                .collect();
            found.sort_by(|a, b| by_name_and_number(a.as_os_str(), b.as_os_str()));
            files.extend(found);
        } else {
            files.push(arg.clone());
        }
    }
    Ok(files)
}

/// The files of directory `dir` that [`collect_packet_files`] skips for
/// their names (shipping orders and hidden files aside), sorted: what a
/// user who renamed a packet (an e-mail attachment saved as
/// `attachment.zip`) needs to be told about.
pub fn other_files_in(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && !is_packet_name(path))
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            (!name.starts_with('.') && !name.ends_with(".order")).then_some(name)
        })
        .collect();
    names.sort_by(|a, b| by_name_and_number(a.as_ref(), b.as_ref()));
    Ok(names)
}

/// A file that is not a packet, and why (see [`not_a_packet`]).
pub type NotAPacket = (PathBuf, String);

/// The files of directory `dir` that [`collect_packet_files`] skips for
/// their names (shipping orders and hidden files aside), sorted, split
/// into those that start as a packet does ([`not_a_packet`] finds nothing
/// against them: renamed packets, such as an e-mail attachment saved as
/// `attachment.zip`) and the others, each with why it is not one.
pub fn renamed_packets_in(dir: &Path) -> Result<(Vec<PathBuf>, Vec<NotAPacket>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && !is_packet_name(path))
        .filter(|path| {
            path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                !name.starts_with('.') && !name.ends_with(".order")
            })
        })
        .collect();
    files.sort_by(|a, b| by_name_and_number(a.as_os_str(), b.as_os_str()));
    let mut renamed = Vec::new();
    let mut others = Vec::new();
    for file in files {
        match not_a_packet(&file) {
            None => renamed.push(file),
            Some(why) => others.push((file, why)),
        }
    }
    Ok((renamed, others))
}

/// Orders names as a person reads them: runs of ASCII digits compared as
/// numbers (`sync_a_..._ship_9.zip` before `..._ship_10.zip`, `_2of12`
/// before `_10of12`), everything else byte by byte. Equal numbers written
/// with different leading zeros fall back to the bytes, so the order is
/// total and two distinct names never compare equal.
pub fn by_name_and_number(a: &std::ffi::OsStr, b: &std::ffi::OsStr) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    use std::os::unix::ffi::OsStrExt;
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let run = |s: &[u8], from: usize| {
                let end = s[from..]
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .map_or(s.len(), |n| from + n);
                (from, end)
            };
            let ((si, ei), (sj, ej)) = (run(x, i), run(y, j));
            let trim = |d: &[u8]| -> usize { d.iter().take_while(|&&c| c == b'0').count() };
            let (dx, dy) = (&x[si..ei], &y[sj..ej]);
            let (dx, dy) = (&dx[trim(dx)..], &dy[trim(dy)..]);
            // More significant digits: larger; as many: digit by digit.
            match dx.len().cmp(&dy.len()).then_with(|| dx.cmp(dy)) {
                Ordering::Equal => {}
                other => return other,
            }
            (i, j) = (ei, ej);
        } else {
            match x[i].cmp(&y[j]) {
                Ordering::Equal => {}
                other => return other,
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| x.cmp(y))
}

fn is_packet_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(packet_format::is_packet_file_name)
}

/// Examined packets grouped by logical packet id, with the damaged ones
/// apart (they have no trustworthy id).
pub struct Grouped {
    pub logical: BTreeMap<Id, Vec<Examination>>,
    pub damaged: Vec<Examination>,
}

pub fn examine_all(files: &[PathBuf], trusted_keys: &[[u8; 32]]) -> Grouped {
    let mut grouped = Grouped {
        logical: BTreeMap::new(),
        damaged: Vec::new(),
    };
    // Examining reads every byte (the signature covers the whole file).
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    let _checking = crate::sys::progress::phase(
        "checking packets",
        crate::sys::progress::Unit::Bytes,
        Some(sizes.iter().sum()),
    );
    for (file, size) in files.iter().zip(sizes) {
        let exam = examine_packet(file, trusted_keys);
        crate::sys::progress::advance(size);
        match (&exam.error, &exam.header) {
            (None, Some(header)) => {
                let id = header.packet_id;
                grouped.logical.entry(id).or_default().push(exam);
            }
            _ => grouped.damaged.push(exam),
        }
    }
    grouped
}

/// The chunks a logical packet carries, as a [`ChunkSource`]: streamed
/// from its parts in stored order each time they are asked for, one chunk
/// in memory at a time and no copy of them written anywhere (the engine
/// writes each straight to where it is needed).
pub struct PacketChunks<'a> {
    packet: &'a LogicalPacket,
}

impl<'a> PacketChunks<'a> {
    pub fn new(packet: &'a LogicalPacket) -> PacketChunks<'a> {
        PacketChunks { packet }
    }
}

/// Chunks read ahead of the one being written (at most 256 KiB each).
const READ_AHEAD: usize = 8;

impl ChunkSource for PacketChunks<'_> {
    /// Every chunk of the packet, whatever `wanted` says: the packet is
    /// read in order anyway, and the sink skips what it does not need.
    /// The reader has checked each chunk against its id; a part changed
    /// since it was verified ends the stream with an error, after chunks
    /// were handed over, which the engine has only staged by then.
    fn deliver(
        &mut self,
        _wanted: &[ChunkId],
        sink: &mut dyn FnMut(&ChunkId, &[u8]) -> Result<()>,
    ) -> Result<()> {
        // Reading a chunk (decompressing it, checking its SHA-256) and
        // writing it out take about as long each: a second thread reads
        // ahead while this one writes, a few chunks at most (the channel's
        // bound) held between them.
        std::thread::scope(|scope| {
            let (send, receive) = std::sync::mpsc::sync_channel(READ_AHEAD);
            let packet = self.packet;
            scope.spawn(move || {
                for chunk in packet.chunks() {
                    let failed = chunk.is_err();
                    // The receiver is gone when the sink failed: stop.
                    if send.send(chunk).is_err() || failed {
                        break;
                    }
                }
            });
            for chunk in receive {
                let (id, bytes) = chunk?;
                sink(&id, &bytes)?;
            }
            Ok(())
        })
    }

    /// `packet_format`'s reader checks every chunk's SHA-256 against its
    /// id before handing it over.
    fn checks_ids(&self) -> bool {
        true
    }

    /// Every chunk of the packet is streamed, wanted or not.
    fn reads_wanted(&self) -> bool {
        false
    }

    /// As `deliver`, building the chunks the packet carries as recipes
    /// from `nearby` and `bases` (each rebuilt chunk is checked against
    /// its SHA-256). The same read-ahead thread reads, rebuilds and
    /// checks, and reads the bases `nearby` finds (the files of the tree)
    /// itself, while this thread writes the chunks before them: asking
    /// this thread for each base made the two wait on each other, about a
    /// third of staging a 1 % edit of 20,000 files. Only what `nearby`
    /// does not find is asked of `bases` here (it need not be `Send`),
    /// and the reader waits for the answer.
    fn deliver_with(
        &mut self,
        _wanted: &[ChunkId],
        nearby: Option<&crate::sync::apply::NearbyChunks>,
        bases: &mut packet_format::BaseChunks,
        sink: &mut dyn FnMut(&ChunkId, &[u8]) -> Result<()>,
    ) -> Result<()> {
        enum Ahead {
            Chunk(packet_format::Result<(ChunkId, Vec<u8>)>),
            /// A base the reader needs, and where to send its bytes.
            Base(
                crate::ops::ChunkRef,
                std::sync::mpsc::SyncSender<Option<Vec<u8>>>,
            ),
        }
        std::thread::scope(|scope| {
            let (send, receive) = std::sync::mpsc::sync_channel(READ_AHEAD);
            let packet = self.packet;
            scope.spawn(move || {
                let asker = send.clone();
                // When this thread's receiver is gone (the sink failed),
                // a base is "not found" and the stream ends.
                let mut ask = move |chunk: &crate::ops::ChunkRef| {
                    if let Some(found) = nearby.and_then(|nearby| nearby(chunk)) {
                        return Some(found);
                    }
                    let (reply, answer) = std::sync::mpsc::sync_channel(1);
                    asker.send(Ahead::Base(*chunk, reply)).ok()?;
                    answer.recv().ok().flatten()
                };
                for chunk in packet.chunks_with(&mut ask) {
                    let failed = chunk.is_err();
                    if send.send(Ahead::Chunk(chunk)).is_err() || failed {
                        break;
                    }
                }
            });
            for message in receive {
                match message {
                    Ahead::Chunk(chunk) => {
                        let (id, bytes) = chunk?;
                        sink(&id, &bytes)?;
                    }
                    Ahead::Base(chunk, reply) => {
                        // The reader is gone only after an error it sent.
                        let _ = reply.send(bases(&chunk));
                    }
                }
            }
            Ok(())
        })
    }
}

/// Why the file at `path` is no packet at all, or `None` when it may be
/// one that is damaged: a packet is a zip archive whose first entry is
/// `chunks` (SPEC.md §3, canonical layout), so a file that does not start
/// as a zip archive, or whose first entry is another, is not one.
pub fn not_a_packet(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut start = [0u8; 30 + 16];
    let mut file = std::fs::File::open(path).ok()?;
    let mut have = 0;
    while have < start.len() {
        match file.read(&mut start[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(_) => return None,
        }
    }
    let start = &start[..have];
    if !start.starts_with(b"PK\x03\x04") {
        return Some("not a zip archive (a packet is a zip file)".into());
    }
    if start.len() < 30 {
        return None;
    }
    let name_len = usize::from(u16::from_le_bytes([start[26], start[27]]));
    let name = &start[30..start.len().min(30 + name_len)];
    if name_len == b"chunks".len() && name == b"chunks" {
        return None;
    }
    // The whole name was read, or its first 16 bytes differ already.
    if name.len() == name_len || !b"chunks".starts_with(name) {
        return Some(format!(
            "a zip archive whose first entry is \"{}\", not a packet's",
            crate::error::printable_bytes(name)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::by_name_and_number;

    #[test]
    fn names_sort_with_their_numbers_as_numbers() {
        let mut names = vec![
            "sync_a_20261130T120000Z_ship_10.zip",
            "sync_a_20261130T120000Z_ship_9.zip",
            "sync_a_20261130T120000Z_ship_11_10of12.zip",
            "sync_a_20261130T120000Z_ship_11_2of12.zip",
            "sync_a_20261130T120000Z_ship_011.zip",
            "sync_a_20261130T120000Z_ship_11.zip",
            "sync_a_20261130T115959Z_ship_12.zip",
            "repl_a_20261130T120000Z_b.zip",
        ];
        names.sort_by(|a, b| by_name_and_number(a.as_ref(), b.as_ref()));
        assert_eq!(
            names,
            [
                "repl_a_20261130T120000Z_b.zip",
                "sync_a_20261130T115959Z_ship_12.zip",
                "sync_a_20261130T120000Z_ship_9.zip",
                "sync_a_20261130T120000Z_ship_10.zip",
                "sync_a_20261130T120000Z_ship_011.zip",
                "sync_a_20261130T120000Z_ship_11.zip",
                "sync_a_20261130T120000Z_ship_11_2of12.zip",
                "sync_a_20261130T120000Z_ship_11_10of12.zip",
            ]
        );
    }
}
