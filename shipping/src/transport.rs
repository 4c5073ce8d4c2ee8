//! Transports that hand a packet and its shipping order to the next hop.
//! The directory transport copies both into a directory: a USB stick, a
//! shared folder, another host's outgoing bay (whose shipping server then
//! delivers or forwards the packet by its order).

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::bay::{BayStore, DirLock, DirStore, ENTRIES_LOCK};
use crate::error::{Error, Result};
use crate::order::ShippingOrder;

/// Copies packet `packet` and its order from `from` into the directory
/// `dest_dir`, which must exist (a missing mount point is an error, not a
/// reason to fill the root file system). See [`deliver`].
pub fn deliver_to_dir(
    from: &dyn BayStore,
    packet: &str,
    dest_dir: &Path,
    destinations: &[&str],
    now: DateTime<Utc>,
) -> Result<ShippingOrder> {
    check_dir(dest_dir)?;
    deliver_checked(from, packet, &DirStore::new(dest_dir), destinations, now).map(|(o, _)| o)
}

/// [`deliver_to_dir`], also saying whether the directory held the packet
/// whole already for every destination handed: a hand-over repeated after
/// a kill, recognised as [`deliver_checked`] says.
pub fn deliver_to_dir_checked(
    from: &dyn BayStore,
    packet: &str,
    dest_dir: &Path,
    destinations: &[&str],
    now: DateTime<Utc>,
) -> Result<(ShippingOrder, bool)> {
    check_dir(dest_dir)?;
    deliver_checked(from, packet, &DirStore::new(dest_dir), destinations, now)
}

fn check_dir(dest_dir: &Path) -> Result<()> {
    match std::fs::metadata(dest_dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::io(
            dest_dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        )),
        Err(err) => Err(Error::io(dest_dir, err)),
    }
}

/// Copies packet `packet` and its order from `from` into `to`, each
/// atomically, the packet first: whoever watches `to` never sees an order
/// whose packet is incomplete. The packet is checked against the order's
/// size and SHA-256 while it is copied; on a mismatch nothing is written.
///
/// The copied order lists `destinations` (all remaining destinations when
/// empty), each of which must be one of the order's remaining
/// destinations, with no failed attempts, and a history line saying where
/// it was handed over. The source order is left as it is: the caller marks
/// the destinations delivered. Delivering the same packet again adds its
/// destinations to the order already there.
pub fn deliver(
    from: &dyn BayStore,
    packet: &str,
    to: &dyn BayStore,
    destinations: &[&str],
    now: DateTime<Utc>,
) -> Result<ShippingOrder> {
    deliver_checked(from, packet, to, destinations, now).map(|(order, _)| order)
}

/// [`deliver`], also saying whether `to` held the packet whole already for
/// every destination handed (true: nothing was written there). A packet
/// already there with the order's size and SHA-256 is not written again
/// (the bytes are the same); its order there gains the destinations it
/// lacks. Recognised so, a hand-over repeated after a kill (the sender
/// died before it recorded the delivery) changes nothing and is said as
/// the HTTP transport says it.
pub fn deliver_checked(
    from: &dyn BayStore,
    packet: &str,
    to: &dyn BayStore,
    destinations: &[&str],
    now: DateTime<Utc>,
) -> Result<(ShippingOrder, bool)> {
    let order = ShippingOrder::load(from, packet)?;
    let handed: Vec<String> = if destinations.is_empty() {
        order.destinations.clone()
    } else {
        let mut list: Vec<String> = Vec::new();
        for destination in destinations {
            if !order.destinations.iter().any(|d| d == destination) {
                return Err(Error::NotADestination {
                    packet: packet.to_string(),
                    destination: destination.to_string(),
                });
            }
            if !list.iter().any(|d| d == destination) {
                list.push(destination.to_string());
            }
        }
        list
    };

    // Another host's bay may be working on the same directory: placing
    // the packet with its order must not interleave with its passes.
    let _entries = match to.local_dir() {
        Some(dir) => Some(DirLock::take(dir, ENTRIES_LOCK)?),
        None => None,
    };
    // The same bytes there already (a hand-over repeated after a kill, or
    // one for other destinations): not written again.
    let held = to.size(packet).is_ok_and(|size| size == order.size)
        && crate::order::hash_entry(to, packet)
            .is_ok_and(|(sha256, _)| sha256.eq_ignore_ascii_case(&order.sha256));
    let written = if held {
        Ok(order.size)
    } else {
        let mismatch = AtomicBool::new(false);
        let mut reader = CheckingReader::new(from.open(packet)?, &order, &mismatch);
        let copying = crate::progress::phase(
            &format!("copying {packet}"),
            crate::progress::Unit::Bytes,
            Some(order.size),
        );
        let written = to.write_from(packet, &mut reader);
        drop(copying);
        if written.is_err() && mismatch.load(Ordering::Relaxed) {
            return Err(Error::PacketMismatch {
                bay: from.describe(),
                packet: packet.to_string(),
                why: "its size or SHA-256 differs from the order's".to_string(),
            });
        }
        written
    };
    written?;

    // The same packet handed over before (for other destinations, say):
    // its order there gains the new destinations rather than losing the
    // old ones.
    if let Ok(mut existing) = ShippingOrder::load(to, packet) {
        if existing.sha256.eq_ignore_ascii_case(&order.sha256) {
            let added = existing.add_destinations(
                &handed,
                now,
                &format!("handed again from {}", from.describe()),
            );
            if added {
                existing.save(to)?;
            }
            return Ok((existing, held && !added));
        }
    }
    let mut forwarded = order.clone();
    forwarded.destinations = handed;
    forwarded.attempts.clear();
    forwarded.note(
        now,
        &format!(
            "handed to {} for {}",
            to.describe(),
            forwarded.destinations.join(", ")
        ),
    );
    forwarded.save(to)?;
    Ok((forwarded, false))
}

/// Passes bytes through while hashing them; at the end, fails the read if
/// the size or hash differs from the order's (and sets `mismatch`).
pub(crate) struct CheckingReader<'a, R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    expected_size: u64,
    expected_sha256: &'a str,
    mismatch: &'a AtomicBool,
    done: bool,
}

impl<'a, R> CheckingReader<'a, R> {
    pub(crate) fn new(
        inner: R,
        order: &'a ShippingOrder,
        mismatch: &'a AtomicBool,
    ) -> CheckingReader<'a, R> {
        CheckingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
            expected_size: order.size,
            expected_sha256: &order.sha256,
            mismatch,
            done: false,
        }
    }
}

impl<R: Read> Read for CheckingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        // Never read past the expected size: a consumer that stops at the
        // size it was told (an HTTP body with Content-Length) must still
        // get the check, so it is made on the read that reaches the size,
        // before those last bytes are handed over.
        let room = self.expected_size.saturating_sub(self.size);
        let limit = if room == 0 {
            1
        } else {
            buf.len().min(usize::try_from(room).unwrap_or(usize::MAX))
        };
        let n = self.inner.read(&mut buf[..limit])?;
        crate::progress::advance(n as u64);
        self.size += n as u64;
        self.hasher.update(&buf[..n]);
        let bad = if n == 0 || self.size == self.expected_size {
            self.done = n == 0;
            let digest = hex::encode(self.hasher.clone().finalize());
            let bad = self.size != self.expected_size
                || !digest.eq_ignore_ascii_case(self.expected_sha256);
            if !bad && n > 0 {
                // One more read must show the end: a longer file fails.
                let mut probe = [0u8; 1];
                if self.inner.read(&mut probe)? != 0 {
                    self.size += 1;
                }
            }
            bad || self.size != self.expected_size
        } else {
            self.size > self.expected_size
        };
        if bad {
            self.mismatch.store(true, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the packet does not match its shipping order",
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader<'a>(data: &'a [u8], sha256: &'a str, flag: &'a AtomicBool) -> impl Read + 'a {
        CheckingReader {
            inner: data,
            hasher: Sha256::new(),
            size: 0,
            expected_size: 3,
            expected_sha256: sha256,
            mismatch: flag,
            done: false,
        }
    }

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn reads_after_the_end_stay_at_the_end() {
        let flag = AtomicBool::new(false);
        let mut r = reader(b"abc", ABC, &flag);
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(r.read(&mut buf).unwrap(), 1);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert!(!flag.load(Ordering::Relaxed));
    }

    #[test]
    fn a_longer_stream_fails_as_soon_as_it_is_too_long() {
        let flag = AtomicBool::new(false);
        let mut r = reader(b"abcdef", ABC, &flag);
        let mut buf = [0u8; 4];
        assert_eq!(
            r.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(flag.load(Ordering::Relaxed));
    }

    #[test]
    fn a_different_hash_fails_at_the_end() {
        let flag = AtomicBool::new(false);
        let mut r = reader(b"abd", ABC, &flag);
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        assert!(flag.load(Ordering::Relaxed));
    }

    #[test]
    fn a_reader_stopping_at_the_size_still_gets_the_check() {
        // As an HTTP client with Content-Length reads: exactly size bytes.
        let flag = AtomicBool::new(false);
        let mut r = reader(b"abd", ABC, &flag);
        let mut buf = [0u8; 3];
        assert!(r.read_exact(&mut buf).is_err());
        assert!(flag.load(Ordering::Relaxed));
        let flag = AtomicBool::new(false);
        let mut r = reader(b"abc", ABC, &flag);
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        assert!(!flag.load(Ordering::Relaxed));
    }
}
