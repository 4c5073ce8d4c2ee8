//! Partial uploads of a class whose bays are on S3, kept in the bucket
//! itself (the class's incoming prefix), so that an upload cut off at one
//! server resumes at any server sharing the bay (FORMAT.md, "Resuming an
//! upload").
//!
//! A partial of packet NAME is a few objects beside the incoming bay's
//! entries, hidden from its listing (their names start with `.`):
//! - `.partial-NAME.info`: `size = N`, `sha256 = HEX` and `started = TIME`,
//!   one a line: what the bytes are the start of;
//! - `.partial-NAME.at-OFFSET` (`OFFSET` in 20 decimal digits): the bytes
//!   from `OFFSET` on, [`PIECE_SIZE`] at most, written whole by one PUT.
//!
//! The bytes held are those of the pieces that follow one another from
//! offset 0. An upload adds to a partial only while it holds the lease
//! `.lock-partial-NAME` (create-only or compare-and-swap PUT, as every lock
//! of an S3 bay), so two servers never add to one partial at once.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::bay::{open_bay, Bay, BayStore};
use crate::config::StorageClass;
use crate::receive::{internal, Partial, Receipt, Receiver, Rejection, Resume, PARTIAL_MAX_AGE};
use crate::s3::S3Store;

/// Names of partials' objects start with this.
pub const PARTIAL_PREFIX: &str = ".partial-";
/// Largest piece: what a cut-off upload can lose at most is what was
/// still on its way; the bytes of a piece are spooled on the receiving
/// server's disk until the piece is full (or the upload ends or breaks)
/// and written by one PUT. A 2 GiB packet is 512 pieces.
pub const PIECE_SIZE: u64 = 4 << 20;

fn info_name(packet: &str) -> String {
    format!("{PARTIAL_PREFIX}{packet}.info")
}

fn piece_start(packet: &str) -> String {
    format!("{PARTIAL_PREFIX}{packet}.at-")
}

fn piece_name(packet: &str, offset: u64) -> String {
    format!("{}{offset:020}", piece_start(packet))
}

fn lock_name(packet: &str) -> String {
    format!(".lock-partial-{packet}")
}

/// The incoming bay of an S3 class, on S3.
fn incoming(receiver: &Receiver<'_>) -> Result<Box<dyn BayStore>, Rejection> {
    let bay = open_bay(&receiver.class, Bay::Incoming).map_err(internal)?;
    if bay.s3().is_none() {
        return Err(internal(format!(
            "{}: the incoming bay of an S3 class is not on S3",
            bay.describe()
        )));
    }
    Ok(bay)
}

/// `size = N` and `sha256 = HEX` of a partial's description.
fn read_info(store: &S3Store, packet: &str) -> crate::Result<Option<(u64, String)>> {
    let Some((data, _)) = store.read_versioned(&info_name(packet))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&data);
    let mut size = None;
    let mut sha256 = None;
    for line in text.lines() {
        match line.split_once(" = ") {
            Some(("size", value)) => size = value.parse().ok(),
            Some(("sha256", value)) => sha256 = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(size.zip(sha256))
}

/// A partial's pieces: (offset, length, name, time), by offset.
type Piece = (u64, u64, String, DateTime<Utc>);

fn pieces(store: &S3Store, packet: &str) -> crate::Result<Vec<Piece>> {
    let start = piece_start(packet);
    let mut found: Vec<Piece> = store
        .list_starting(&start)?
        .into_iter()
        .filter_map(|(name, size, time)| {
            let offset = name.strip_prefix(&start)?.parse().ok()?;
            Some((offset, size, name, time))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The pieces that follow one another from offset 0 (others, left by an
/// upload that went wrong, are not counted), and the bytes they hold.
fn contiguous(all: Vec<Piece>) -> (Vec<Piece>, u64) {
    let mut held = 0;
    let mut run = Vec::new();
    for piece in all {
        if piece.0 != held {
            break;
        }
        held += piece.1;
        run.push(piece);
    }
    (run, held)
}

/// Removes the partial of `packet`: pieces first, its description last.
fn remove(store: &S3Store, packet: &str) -> crate::Result<()> {
    for (_, _, name, _) in pieces(store, packet)? {
        store.delete(&name)?;
    }
    store.delete(&info_name(packet))
}

/// Bytes held of `packet` (`size` bytes with SHA-256 `sha256`) in the
/// class's bucket; 0 when none or a partial of other bytes is held.
pub fn held(
    receiver: &Receiver<'_>,
    packet: &str,
    size: u64,
    sha256: &str,
) -> Result<u64, Rejection> {
    let bay = incoming(receiver)?;
    let store = bay.s3().expect("on S3");
    match read_info(store, packet).map_err(internal)? {
        Some((held_size, held_sha))
            if held_size == size && held_sha.eq_ignore_ascii_case(sha256) =>
        {
            let (_, held) = contiguous(pieces(store, packet).map_err(internal)?);
            Ok(held.min(size))
        }
        _ => Ok(0),
    }
}

/// The partial uploads kept in the class's bucket. Partials untouched
/// for [`PARTIAL_MAX_AGE`] at `now` (by any server) are removed, not
/// listed, unless an upload holds them.
pub fn list(class: &StorageClass, now: DateTime<Utc>) -> crate::Result<Vec<Partial>> {
    let bay = open_bay(class, Bay::Incoming)?;
    let Some(store) = bay.s3() else {
        return Ok(Vec::new());
    };
    let mut partials = Vec::new();
    for (name, _, info_time) in store.list_starting(PARTIAL_PREFIX)? {
        let Some(packet) = name
            .strip_prefix(PARTIAL_PREFIX)
            .and_then(|rest| rest.strip_suffix(".info"))
        else {
            continue;
        };
        let Some((size, sha256)) = read_info(store, packet)? else {
            continue;
        };
        let (run, held) = contiguous(pieces(store, packet)?);
        let modified = run
            .iter()
            .map(|p| p.3)
            .chain([info_time])
            .max()
            .unwrap_or(info_time);
        if modified + PARTIAL_MAX_AGE < now {
            if crate::bay::read_only() {
                continue;
            }
            if let Some(_lock) = store.try_lock(&lock_name(packet), store.lease())? {
                remove(store, packet)?;
            }
            continue;
        }
        partials.push(Partial {
            packet: packet.to_string(),
            held,
            size,
            sha256,
            modified,
        });
    }
    Ok(partials)
}

/// [`Receiver::receive_resumable`] into a class on S3: the partial is
/// kept in the bucket (see the module's description), the packet is
/// checked whole from there, then stored as any upload.
pub fn receive(
    receiver: &Receiver<'_>,
    name: &str,
    resume: Resume<'_>,
    body: &mut dyn Read,
    expires: Option<DateTime<Utc>>,
    destinations: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<Receipt, Rejection> {
    let bay = incoming(receiver)?;
    let store = bay.s3().expect("on S3");
    // Sweeps partials abandoned long enough.
    let _ = list(&receiver.class, now);
    let Some(lock) = store
        .try_lock(&lock_name(name), store.lease())
        .map_err(internal)?
    else {
        return Err(Rejection::new(
            409,
            format!("{name}: another upload of this packet is in progress (here or at another server of this bay); try again when it has ended"),
        ));
    };
    let matches = read_info(store, name)
        .map_err(internal)?
        .is_some_and(|(size, sha)| size == resume.size && sha.eq_ignore_ascii_case(resume.sha256));
    let mut held = if matches {
        contiguous(pieces(store, name).map_err(internal)?).1
    } else {
        // Another packet, or none: what is there is not spliced on.
        remove(store, name).map_err(internal)?;
        let info = format!(
            "size = {}\nsha256 = {}\nstarted = {}\n",
            resume.size,
            resume.sha256.to_ascii_lowercase(),
            crate::order::format_time(&now)
        );
        store
            .write(&info_name(name), info.as_bytes())
            .map_err(internal)?;
        0
    };
    // A sender starting over (one that did not ask what is held) gets
    // what it asks for: the partial is started afresh.
    if held > resume.size || (resume.start == 0 && held > 0) {
        for (_, _, piece, _) in pieces(store, name).map_err(internal)? {
            store.delete(&piece).map_err(internal)?;
        }
        held = 0;
    }
    resume.check_start(name, held)?;

    // The body in pieces: spooled here, each written by one PUT once full,
    // and what arrived when the body ends or breaks.
    let want = resume.size - held;
    let mut spool = tempfile::tempfile().map_err(|e| internal(format!("{name}: {e}")))?;
    let mut spooled = 0u64;
    let mut received = 0u64;
    let put_piece =
        |spool: &mut File, spooled: &mut u64, held: &mut u64| -> Result<(), Rejection> {
            if *spooled == 0 {
                return Ok(());
            }
            if !lock.held() {
                return Err(Rejection::new(
                    409,
                    format!(
                    "{name}: the lease on its partial upload was lost; ask again how much is held"
                ),
                ));
            }
            spool
                .seek(SeekFrom::Start(0))
                .map_err(|e| internal(format!("{name}: {e}")))?;
            store
                .write_from(
                    &piece_name(name, *held),
                    &mut Read::take(&mut *spool, *spooled),
                )
                .map_err(internal)?;
            *held += *spooled;
            *spooled = 0;
            spool
                .set_len(0)
                .map_err(|e| internal(format!("{name}: {e}")))?;
            spool
                .seek(SeekFrom::Start(0))
                .map_err(|e| internal(format!("{name}: {e}")))?;
            Ok(())
        };
    let mut buffer = vec![0u8; 64 * 1024];
    let mut body = body.take(want.saturating_add(1));
    let outcome: io::Result<()> = loop {
        let room = (PIECE_SIZE - spooled).min(buffer.len() as u64) as usize;
        let n = match body.read(&mut buffer[..room]) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => break Err(err),
        };
        if received + n as u64 > want {
            break Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "longer than the size it declared",
            ));
        }
        if let Err(err) = spool.write_all(&buffer[..n]) {
            return Err(internal(format!("{name}: {err}")));
        }
        received += n as u64;
        spooled += n as u64;
        if spooled == PIECE_SIZE {
            put_piece(&mut spool, &mut spooled, &mut held)?;
        }
    };
    if let Err(err) = outcome {
        if err.kind() == io::ErrorKind::InvalidData {
            let _ = remove(store, name);
            return Err(Rejection::new(400, format!("{name}: {err}; nothing kept")));
        }
        // What arrived is kept for the next attempt, at any server.
        put_piece(&mut spool, &mut spooled, &mut held)?;
        return Err(Rejection::new(
            400,
            format!(
                "{name}: upload broken off after {received} bytes: {err}; {held} of {} bytes held for resuming",
                resume.size
            ),
        ));
    }
    put_piece(&mut spool, &mut spooled, &mut held)?;
    if held < resume.size {
        return Err(Rejection::new(
            400,
            format!(
                "{name}: upload ended after {received} bytes; {held} of {} bytes held for resuming",
                resume.size
            ),
        ));
    }

    // Whole: the pieces, in order, into one file here, hashed on the way;
    // checked in full before anything else.
    let spool_dir = std::env::temp_dir();
    let mut temp = tempfile::Builder::new()
        .prefix(crate::receive::RECEIVE_TEMP_PREFIX)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(&spool_dir)
        .map_err(|e| internal(format!("{}: {e}", spool_dir.display())))?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let (run, _) = contiguous(pieces(store, name).map_err(internal)?);
    for (_, _, piece, _) in &run {
        let mut reader = store.open(piece).map_err(internal)?;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(internal(format!("{name}: reading {piece}: {err}"))),
            };
            hasher.update(&buffer[..n]);
            temp.write_all(&buffer[..n])
                .map_err(|e| internal(format!("{name}: {e}")))?;
            total += n as u64;
        }
    }
    temp.flush().map_err(|e| internal(format!("{name}: {e}")))?;
    let sha256 = hex::encode(hasher.finalize());
    if total != resume.size || !sha256.eq_ignore_ascii_case(resume.sha256) {
        let _ = remove(store, name);
        return Err(Rejection::new(
            400,
            format!(
                "{name}: the {total} bytes received have SHA-256 {sha256}, not {} bytes with {} as announced; nothing kept",
                resume.size, resume.sha256
            ),
        ));
    }
    let stored = receiver.store(name, temp, &spool_dir, &sha256, expires, destinations, now);
    // Done with, stored or refused; kept only when the bay could not be
    // written (the next attempt then sends nothing again).
    if !matches!(&stored, Err(rejection) if rejection.status >= 500) {
        let _ = remove(store, name);
    }
    drop(lock);
    stored
}
