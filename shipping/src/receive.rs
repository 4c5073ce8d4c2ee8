//! Receiving a packet from another host (an HTTP upload): checked in full
//! before anything is stored, then placed in the incoming bay (for a local
//! replica) or in the outgoing bay with a new shipping order (store and
//! forward). The sender keeps its copy until it gets our answer, and we
//! answer only once the packet is durable here: responsibility passes on
//! receipt, hop by hop.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use packet_format::ErrorKind;
use sha2::{Digest, Sha256};

use crate::bay::{check_name, open_bay, Bay, BayStore, ENTRIES_LOCK};
use crate::config::{ShippingConfig, StorageClass};
use crate::order::{hash_entry, order_name, ShippingOrder};

/// Largest packet accepted when `max_packet_size` is not configured: the
/// largest part the packet format allows.
pub const DEFAULT_MAX_PACKET_SIZE: u64 = packet_format::MAX_PART_SIZE;

/// Why an upload was refused, with the HTTP status that says so. Nothing
/// of a refused upload is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
}

impl Rejection {
    pub(crate) fn new(status: u16, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// What happened to an accepted packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The packet's file name.
    pub packet: String,
    /// Destinations that are local replicas: the packet waits in the
    /// incoming bay for `syncreplica -import -receive`.
    pub local: Vec<String>,
    /// Destinations this host forwards to: the packet waits in the
    /// outgoing bay with a shipping order.
    pub forwarded: Vec<String>,
    /// The same packet was already here; nothing changed.
    pub duplicate: bool,
    /// SHA-256 (hex) of the packet as received.
    pub sha256: String,
    /// What the administrator should know of it (a key rotation taken
    /// from its header), said with the receipt and so in the log.
    pub note: Option<String>,
}

impl Receipt {
    /// One line for the sender and the log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.local.is_empty() {
            parts.push(format!("in the incoming bay for {}", self.local.join(", ")));
        }
        if !self.forwarded.is_empty() {
            parts.push(format!(
                "in the outgoing bay, to be forwarded to {}",
                self.forwarded.join(", ")
            ));
        }
        let state = if self.duplicate {
            "already here"
        } else {
            "stored"
        };
        let note = self
            .note
            .as_ref()
            .map(|n| format!("; {n}"))
            .unwrap_or_default();
        format!("{}: {state} {}{note}", self.packet, parts.join(" and "))
    }
}

/// Receives packets into one storage class's bays.
pub struct Receiver<'a> {
    pub config: &'a ShippingConfig,
    pub class_name: String,
    pub class: StorageClass,
    /// Ed25519 public keys whose packets are accepted.
    pub trusted_keys: Vec<[u8; 32]>,
    /// Members' key rotations known here, and where new ones are kept
    /// (packet SPEC.md §4.3, §7.1).
    pub trust: crate::trust::Trust,
}

impl Receiver<'_> {
    /// Largest upload accepted.
    pub fn max_packet_size(&self) -> u64 {
        self.config
            .max_packet_size
            .unwrap_or(DEFAULT_MAX_PACKET_SIZE)
    }

    /// Checks what can be checked before reading the body: the name, the
    /// declared length and the free space.
    pub fn precheck(&self, name: &str, declared_len: Option<u64>) -> Result<(), Rejection> {
        check_packet_name(name)?;
        let max = self.max_packet_size();
        if let Some(len) = declared_len {
            if len > max {
                return Err(Rejection::new(
                    413,
                    format!("{name}: {len} bytes is larger than this server accepts ({max} bytes, max_packet_size)"),
                ));
            }
            self.check_space(len)?;
        }
        Ok(())
    }

    fn check_space(&self, incoming: u64) -> Result<(), Rejection> {
        let Some(min_free) = self.config.min_free_space else {
            return Ok(());
        };
        if self.class.s3.is_some() {
            // Object storage tells no free space: its quota answers.
            return Ok(());
        }
        let dir = self.class.storage_bay.as_path();
        let available = available_space(dir).map_err(|err| {
            Rejection::new(
                500,
                format!("cannot tell the free space of {}: {err}", dir.display()),
            )
        })?;
        if available < incoming.saturating_add(min_free) {
            return Err(Rejection::new(
                507,
                format!(
                    "not enough free space in {}: {available} bytes free, the packet needs {incoming} and min_free_space is {min_free}",
                    dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// Receives packet `name` from `body`: streams it to a temporary file,
    /// verifies it in full, then stores it. `expires` is the sender's
    /// order expiry, kept when earlier than this class's own.
    /// `destinations` are the replicas the sender says the packet is for;
    /// without them, the targets in the packet's signed header.
    pub fn receive(
        &self,
        name: &str,
        declared_len: Option<u64>,
        body: &mut dyn Read,
        expires: Option<DateTime<Utc>>,
        destinations: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> Result<Receipt, Rejection> {
        self.precheck(name, declared_len)?;
        // The temporary file is removed when dropped, on every early return.
        // It lies in the incoming bay's directory (renamed into place at the
        // end), or for a bay on S3 in the system's temporary directory: it
        // is verified in full before anything goes into the bucket.
        let spool = if self.class.s3.is_some() {
            std::env::temp_dir()
        } else {
            let incoming = open_bay(&self.class, Bay::Incoming).map_err(internal)?;
            incoming
                .local_dir()
                .map(Path::to_path_buf)
                .unwrap_or_else(std::env::temp_dir)
        };
        let mut temp = tempfile::Builder::new()
            .prefix(RECEIVE_TEMP_PREFIX)
            // 0666 less the umask, as every packet and bay file.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&spool)
            .map_err(|e| internal(format!("{}: {e}", spool.display())))?;
        let (received, sha256) = self.copy_body(name, body, temp.as_file_mut())?;
        if let Some(len) = declared_len {
            if received != len {
                return Err(Rejection::new(
                    400,
                    format!("{name}: upload ended after {received} of {len} bytes"),
                ));
            }
        }
        self.store(name, temp, &spool, &sha256, expires, destinations, now)
    }

    /// Stores packet `name`, received whole into `temp` (in directory
    /// `spool`) with SHA-256 `sha256`: verifies it, then places it in the
    /// bays its destinations call for. See [`Self::receive`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store(
        &self,
        name: &str,
        temp: tempfile::NamedTempFile,
        spool: &Path,
        sha256: &str,
        expires: Option<DateTime<Utc>>,
        destinations: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> Result<Receipt, Rejection> {
        let sha256 = sha256.to_string();
        let incoming = open_bay(&self.class, Bay::Incoming).map_err(internal)?;
        let outgoing = open_bay(&self.class, Bay::Outgoing).map_err(internal)?;
        let (incoming, outgoing) = (incoming.as_ref(), outgoing.as_ref());
        let mut note = None;
        let verified = match packet_format::verify_packet(temp.path(), &self.trusted_keys) {
            Ok(verified) => verified,
            Err(err) if matches!(err.kind, ErrorKind::UnknownKey { .. }) => {
                let (verified, said) = self.vouched(name, temp.path(), &err.kind)?;
                note = said;
                verified
            }
            Err(err) => return Err(refusal(name, &err.kind)),
        };
        self.check_retired_key(name, verified.header())?;
        let (header, canonical) = (
            verified.header().clone(),
            packet_format::canonical_file_name(verified.header(), verified.creation()),
        );
        // The name is the signed header's, not the uploader's: under any
        // other, an old packet could squat a later one's name, or one
        // packet be stored under several.
        if name != canonical {
            return Err(Rejection::new(
                400,
                format!("{name}: the packet's signed header names it {canonical}; upload it under that name"),
            ));
        }
        let identity = PacketIdentity::of(&header);
        let destinations: Vec<String> = match destinations {
            Some(names) => {
                for destination in names {
                    crate::config::validate_name(destination)
                        .map_err(|why| Rejection::new(400, format!("{name}: destination {why}")))?;
                }
                let mut unique: Vec<String> = Vec::new();
                for destination in names {
                    if !unique.contains(destination) {
                        unique.push(destination.clone());
                    }
                }
                unique
            }
            None => header.targets.iter().map(|t| t.name.clone()).collect(),
        };
        if destinations.is_empty() {
            return Err(Rejection::new(400, format!("{name}: no destination")));
        }
        let (local, forwarded): (Vec<String>, Vec<String>) = destinations
            .into_iter()
            .partition(|d| self.config.is_local(d));
        for destination in &forwarded {
            if let Err(err) = self.config.next_hop(destination) {
                return Err(Rejection::new(
                    422,
                    format!("{name}: this host cannot forward it: {err}"),
                ));
            }
        }

        // Everything that could refuse the packet is checked before
        // anything is written, under the lock that orders bay changes, so
        // a pass removing a delivered packet cannot interleave.
        let _entries = outgoing.lock(ENTRIES_LOCK).map_err(internal)?;
        let in_incoming = if local.is_empty() {
            None
        } else {
            Some(self.present(incoming, name, &sha256, &identity)?)
        };
        let in_outgoing = if forwarded.is_empty() {
            None
        } else {
            Some(self.present(outgoing, name, &sha256, &identity)?)
        };
        let existing_order = match in_outgoing {
            Some(true) if outgoing.exists(&order_name(name)).map_err(internal)? => {
                let order = ShippingOrder::load(outgoing, name).map_err(internal)?;
                if !order.sha256.eq_ignore_ascii_case(&sha256) {
                    return Err(Rejection::new(
                        409,
                        format!(
                            "{name}: the order in {} is for other bytes",
                            outgoing.describe()
                        ),
                    ));
                }
                Some(order)
            }
            _ => None,
        };

        // The copies to make: the temporary file itself is renamed into
        // the last one, so a packet needs its size once, not twice.
        let mut targets: Vec<&dyn BayStore> = Vec::new();
        if in_incoming == Some(false) {
            targets.push(incoming);
        }
        if in_outgoing == Some(false) {
            targets.push(outgoing);
        }
        let mut duplicate = targets.is_empty();
        if let Some((last, others)) = targets.split_last() {
            for bay in others {
                let mut source =
                    File::open(temp.path()).map_err(|e| internal(format!("{name}: {e}")))?;
                bay.write_from(name, &mut source).map_err(internal)?;
            }
            match last.local_dir() {
                Some(dir) if dir == spool => crate::bay::DirStore::new(dir)
                    .adopt(name, temp)
                    .map_err(internal)?,
                _ => {
                    let mut source =
                        File::open(temp.path()).map_err(|e| internal(format!("{name}: {e}")))?;
                    last.write_from(name, &mut source).map_err(internal)?;
                }
            }
        }

        if !forwarded.is_empty() {
            match existing_order {
                Some(mut order) => {
                    // The same packet again, perhaps for more destinations.
                    let added = order.add_destinations(&forwarded, now, "received again over HTTP");
                    if added {
                        order.save(outgoing).map_err(internal)?;
                        duplicate = false;
                    }
                }
                None => {
                    let names: Vec<&str> = forwarded.iter().map(String::as_str).collect();
                    let mut order = ShippingOrder::create(
                        outgoing,
                        name,
                        &self.class_name,
                        &self.class,
                        &names,
                        now,
                    )
                    .map_err(internal)?;
                    if let Some(expires) = expires.filter(|e| *e < order.expires) {
                        order.expires = expires;
                    }
                    order.note(now, "received over HTTP");
                    order.save(outgoing).map_err(internal)?;
                    duplicate = false;
                }
            }
        }
        Ok(Receipt {
            packet: name.to_string(),
            local,
            forwarded,
            duplicate,
            sha256,
            note,
        })
    }

    /// Copies the body into `file`, refusing it as soon as it grows past
    /// the size limit; returns its size and SHA-256 (hex).
    fn copy_body(
        &self,
        name: &str,
        body: &mut dyn Read,
        file: &mut File,
    ) -> Result<(u64, String), Rejection> {
        let max = self.max_packet_size();
        // 128 KiB in flight per upload keeps 64 concurrent ones within a
        // few MiB.
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let mut hasher = Sha256::new();
        loop {
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(Rejection::new(
                        400,
                        format!("{name}: upload broken off after {total} bytes: {err}"),
                    ))
                }
            };
            total += n as u64;
            if total > max {
                return Err(Rejection::new(
                    413,
                    format!(
                        "{name}: larger than this server accepts ({max} bytes, max_packet_size)"
                    ),
                ));
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .map_err(|e| internal(format!("{name}: {e}")))?;
        }
        out.flush().map_err(|e| internal(format!("{name}: {e}")))?;
        Ok((total, hex::encode(hasher.finalize())))
    }
}

/// Prefix of the temporary files uploads are received into.
pub const RECEIVE_TEMP_PREFIX: &str = ".tmp-recv-";

/// Removes what uploads cut off by a crash or a kill left in the incoming
/// bay of `class` (only receiving writes these files; call it before
/// listening, when no upload of this class is in progress). Returns how
/// many were removed.
pub fn remove_abandoned_uploads(class: &StorageClass) -> std::io::Result<usize> {
    if class.s3.is_some() {
        // Uploads into S3 bays are spooled in the system's temporary
        // directory, not in the bay.
        return Ok(0);
    }
    let dir = class.incoming_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(RECEIVE_TEMP_PREFIX))
        {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Prefix of the partial uploads kept for resuming: `.tmp-partial-NAME`
/// holds the bytes received so far, `.tmp-partial-NAME.info` what they
/// are the start of (see FORMAT.md, "Resuming an upload").
pub const PARTIAL_PREFIX: &str = ".tmp-partial-";
const PARTIAL_INFO_SUFFIX: &str = ".info";
/// A partial untouched this long is removed (the sender has given up, or
/// sends another packet under that name).
pub const PARTIAL_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// A partial upload kept to be resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// The packet's file name.
    pub packet: String,
    /// Bytes received so far.
    pub held: u64,
    /// The packet's whole size, as its sender declared.
    pub size: u64,
    /// The packet's SHA-256 (hex), as its sender declared.
    pub sha256: String,
    /// When bytes were last added.
    pub modified: DateTime<Utc>,
}

/// The directory the partial uploads of `class` are kept in: its incoming
/// bay. (A class on S3 keeps them in the bucket: [`crate::s3_partial`];
/// for one, this names a private directory of this user under the
/// system's temporary directory, one per bucket and prefix, where a build
/// without the `s3` feature would look.)
pub fn partial_dir(class: &StorageClass) -> PathBuf {
    match &class.s3 {
        None => class.incoming_dir(),
        Some(s3) => {
            let digest = hex::encode(Sha256::digest(s3.storage_url.as_bytes()));
            std::env::temp_dir()
                .join(format!(
                    "syncreplica-partials-{}",
                    rustix::process::getuid().as_raw()
                ))
                .join(&digest[..16])
        }
    }
}

/// Creates the directory partials go in: a bay directory as usual, the
/// private spool of an S3 class owner-only, and refused when another user
/// owns it (the system's temporary directory is shared).
pub(crate) fn make_partial_dir(class: &StorageClass) -> io::Result<PathBuf> {
    let dir = partial_dir(class);
    if class.s3.is_none() {
        std::fs::create_dir_all(&dir)?;
        return Ok(dir);
    }
    let parent = dir.parent().expect("a parent");
    for level in [parent, dir.as_path()] {
        match std::fs::DirBuilder::new().mode(0o700).create(level) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        let meta = std::fs::symlink_metadata(level)?;
        if !meta.is_dir()
            || meta.uid() != rustix::process::getuid().as_raw()
            || meta.mode() & 0o077 != 0
        {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not a directory private to this user: remove it",
                    level.display()
                ),
            ));
        }
    }
    Ok(dir)
}

pub(crate) fn partial_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let data = dir.join(format!("{PARTIAL_PREFIX}{name}"));
    let info = dir.join(format!("{PARTIAL_PREFIX}{name}{PARTIAL_INFO_SUFFIX}"));
    (data, info)
}

/// `size = N` and `sha256 = HEX`, one a line.
fn read_info(path: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut size = None;
    let mut sha256 = None;
    for line in text.lines() {
        match line.split_once(" = ") {
            Some(("size", value)) => size = value.parse().ok(),
            Some(("sha256", value)) => sha256 = Some(value.to_string()),
            _ => {}
        }
    }
    Some((size?, sha256?))
}

/// The partial uploads kept for `class`, by packet name. Partials
/// untouched for [`PARTIAL_MAX_AGE`] at `now` are removed, not listed;
/// a data file without its description is left out.
pub fn list_partials(class: &StorageClass, now: DateTime<Utc>) -> io::Result<Vec<Partial>> {
    if class.s3.is_some() {
        return list_s3_partials(class, now);
    }
    let dir = partial_dir(class);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut partials = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(file) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(packet) = file.strip_prefix(PARTIAL_PREFIX) else {
            continue;
        };
        if packet.ends_with(PARTIAL_INFO_SUFFIX) {
            continue;
        }
        let (data, info) = partial_paths(&dir, packet);
        let Ok(meta) = std::fs::metadata(&data) else {
            continue;
        };
        let modified: DateTime<Utc> = meta.modified().map(DateTime::from).unwrap_or(now);
        if modified + PARTIAL_MAX_AGE < now {
            // Not while an upload holds it.
            if let Ok(file) = File::open(&data) {
                if file.try_lock().is_ok() {
                    let _ = std::fs::remove_file(&info);
                    let _ = std::fs::remove_file(&data);
                }
            }
            continue;
        }
        let Some((size, sha256)) = read_info(&info) else {
            continue;
        };
        partials.push(Partial {
            packet: packet.to_string(),
            held: meta.len(),
            size,
            sha256,
            modified,
        });
    }
    partials.sort_by(|a, b| a.packet.cmp(&b.packet));
    Ok(partials)
}

#[cfg(feature = "s3")]
fn list_s3_partials(class: &StorageClass, now: DateTime<Utc>) -> io::Result<Vec<Partial>> {
    crate::s3_partial::list(class, now).map_err(io::Error::other)
}

#[cfg(not(feature = "s3"))]
fn list_s3_partials(_class: &StorageClass, _now: DateTime<Utc>) -> io::Result<Vec<Partial>> {
    Ok(Vec::new())
}

/// What a resumable upload says of itself: the packet's whole size and
/// SHA-256, and the offset its body starts at.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    pub size: u64,
    pub sha256: &'a str,
    pub start: u64,
}

impl Resume<'_> {
    /// The body must start where what is held of `name` ends (`held`
    /// bytes): otherwise 416, saying where to send from.
    pub(crate) fn check_start(&self, name: &str, held: u64) -> Result<(), Rejection> {
        match self.start == held {
            true => Ok(()),
            false => Err(Rejection::new(
                416,
                format!(
                    "{name}: this server holds {held} of its {} bytes, not {}: send from {held}",
                    self.size, self.start
                ),
            )),
        }
    }
}

impl Receiver<'_> {
    /// Bytes held of packet `name` whose whole is `size` bytes with
    /// SHA-256 `sha256`: what its sender may resume from (0 when nothing
    /// or a partial of other bytes is held).
    pub fn held(&self, name: &str, size: u64, sha256: &str) -> Result<u64, Rejection> {
        check_packet_name(name)?;
        #[cfg(feature = "s3")]
        if self.class.s3.is_some() {
            return crate::s3_partial::held(self, name, size, sha256);
        }
        let dir = partial_dir(&self.class);
        let (data, info) = partial_paths(&dir, name);
        match read_info(&info) {
            Some((held_size, held_sha))
                if held_size == size && held_sha.eq_ignore_ascii_case(sha256) =>
            {
                Ok(std::fs::metadata(&data).map_or(0, |m| m.len().min(size)))
            }
            _ => Ok(0),
        }
    }

    /// True when packet `name` is already stored here whole, as `size`
    /// bytes with SHA-256 `sha256`, for every one of `destinations`: in
    /// the incoming bay for a local replica, in the outgoing bay with an
    /// order listing the destination for one this host forwards to. An
    /// upload of it would change nothing (answered 200 "already here"),
    /// so its sender need not send the body (see FORMAT.md, "Resuming an
    /// upload"). False, never an error, when anything differs or is
    /// missing; a bad destination name is refused with 400.
    pub fn held_whole(
        &self,
        name: &str,
        size: u64,
        sha256: &str,
        destinations: &[String],
    ) -> Result<bool, Rejection> {
        check_packet_name(name)?;
        for destination in destinations {
            crate::config::validate_name(destination)
                .map_err(|why| Rejection::new(400, format!("{name}: destination {why}")))?;
        }
        if destinations.is_empty() {
            return Ok(false);
        }
        let (local, forwarded): (Vec<&String>, Vec<&String>) =
            destinations.iter().partition(|d| self.config.is_local(d));
        if !local.is_empty() {
            let incoming = open_bay(&self.class, Bay::Incoming).map_err(internal)?;
            let incoming = incoming.as_ref();
            // The size first: hashing a packet of another size is wasted.
            let same = incoming.exists(name).map_err(internal)?
                && incoming.size(name).map_err(internal)? == size
                && hash_entry(incoming, name)
                    .map_err(internal)?
                    .0
                    .eq_ignore_ascii_case(sha256);
            if !same {
                return Ok(false);
            }
        }
        if !forwarded.is_empty() {
            let outgoing = open_bay(&self.class, Bay::Outgoing).map_err(internal)?;
            let outgoing = outgoing.as_ref();
            if !outgoing.exists(&order_name(name)).map_err(internal)? {
                return Ok(false);
            }
            // The order was written once the packet beside it was verified
            // and stored: its size and SHA-256 are the packet's.
            let Ok(order) = ShippingOrder::load(outgoing, name) else {
                return Ok(false);
            };
            let listed = forwarded.iter().all(|d| order.destinations.contains(d));
            let same = order.size == size
                && order.sha256.eq_ignore_ascii_case(sha256)
                && listed
                && outgoing.exists(name).map_err(internal)?
                && outgoing.size(name).map_err(internal)? == size;
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Receives the bytes of packet `name` from `resume.start` on, adding
    /// them to what is held of it (see [`Self::held`]); once the packet is
    /// whole, verifies its size and SHA-256 and stores it as
    /// [`Self::receive`] does. An upload cut off keeps what arrived for
    /// the next attempt (the rejection says how much is held); a partial of
    /// other bytes (another size or SHA-256) is discarded, never added to;
    /// a start other than what is held is refused with 416.
    #[allow(clippy::too_many_arguments)]
    pub fn receive_resumable(
        &self,
        name: &str,
        resume: Resume<'_>,
        body: &mut dyn Read,
        expires: Option<DateTime<Utc>>,
        destinations: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> Result<Receipt, Rejection> {
        self.precheck(name, Some(resume.size))?;
        if resume.sha256.len() != 64 || !resume.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection::new(
                400,
                format!(
                    "{name}: {:?} is not a SHA-256 (64 hex digits)",
                    resume.sha256
                ),
            ));
        }
        if resume.start > resume.size {
            return Err(Rejection::new(
                416,
                format!(
                    "{name}: offset {} is past the packet's {} bytes",
                    resume.start, resume.size
                ),
            ));
        }
        #[cfg(feature = "s3")]
        if self.class.s3.is_some() {
            return crate::s3_partial::receive(
                self,
                name,
                resume,
                body,
                expires,
                destinations,
                now,
            );
        }
        let dir = make_partial_dir(&self.class)
            .map_err(|e| internal(format!("{}: {e}", partial_dir(&self.class).display())))?;
        // Sweeps partials abandoned long enough.
        let _ = list_partials(&self.class, now);
        let (data_path, info_path) = partial_paths(&dir, name);
        let failed = |e: io::Error| internal(format!("{}: {e}", data_path.display()));
        let mut data = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o666)
            .open(&data_path)
            .map_err(failed)?;
        match data.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Rejection::new(
                    409,
                    format!("{name}: another upload of this packet is in progress here; try again when it has ended"),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
        // The partial removed or replaced while this one waited for the
        // lock is not this file any more: start again from what is there.
        let same = std::fs::metadata(&data_path)
            .is_ok_and(|m| m.ino() == data.metadata().map(|d| d.ino()).unwrap_or(0));
        if !same {
            return Err(Rejection::new(
                409,
                format!("{name}: another upload of this packet just ended here; ask again how much is held"),
            ));
        }
        let matches = read_info(&info_path).is_some_and(|(size, sha)| {
            size == resume.size && sha.eq_ignore_ascii_case(resume.sha256)
        });
        let mut held = if matches {
            data.metadata().map_err(failed)?.len()
        } else {
            // Another packet, or none: what is there is not spliced on.
            data.set_len(0).map_err(failed)?;
            let info = format!(
                "size = {}\nsha256 = {}\nstarted = {}\n",
                resume.size,
                resume.sha256.to_ascii_lowercase(),
                crate::order::format_time(&now)
            );
            write_small_file(&info_path, info.as_bytes()).map_err(failed)?;
            0
        };
        // A sender starting over (one that did not ask what is held) gets
        // what it asks for: the partial is started afresh.
        if held > resume.size || (resume.start == 0 && held > 0) {
            data.set_len(0).map_err(failed)?;
            held = 0;
        }
        resume.check_start(name, held)?;

        // The body goes at the end of what is held, at most up to the size.
        let want = resume.size - held;
        let mut received = 0u64;
        let copied: io::Result<()> = (|| {
            use std::io::{Seek, SeekFrom};
            data.seek(SeekFrom::Start(held))?;
            let mut out = BufWriter::with_capacity(64 * 1024, &mut data);
            let mut buffer = vec![0u8; 64 * 1024];
            let mut body = body.take(want.saturating_add(1));
            loop {
                let n = match body.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        out.flush()?;
                        return Err(err);
                    }
                };
                if received + n as u64 > want {
                    out.flush()?;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "longer than the size it declared",
                    ));
                }
                out.write_all(&buffer[..n])?;
                received += n as u64;
            }
            out.flush()
        })();
        // What arrived is kept, made durable before it is counted on. Its
        // description is touched too: both are swept a day after the
        // last bytes came, not a day after the first.
        let synced = data.sync_data();
        if let Ok(info) = std::fs::OpenOptions::new().write(true).open(&info_path) {
            let _ = info.set_modified(std::time::SystemTime::now());
        }
        let total = held + received;
        if let Err(err) = copied {
            if err.kind() == io::ErrorKind::InvalidData {
                drop(data);
                let _ = std::fs::remove_file(&info_path);
                let _ = std::fs::remove_file(&data_path);
                return Err(Rejection::new(400, format!("{name}: {err}; nothing kept")));
            }
            return Err(Rejection::new(
                400,
                format!(
                    "{name}: upload broken off after {received} bytes: {err}; {total} of {} bytes held for resuming",
                    resume.size
                ),
            ));
        }
        synced.map_err(failed)?;
        if total < resume.size {
            return Err(Rejection::new(
                400,
                format!(
                    "{name}: upload ended after {received} bytes; {total} of {} bytes held for resuming",
                    resume.size
                ),
            ));
        }

        // Whole: checked in full, from the file, before anything else.
        let sha256 = {
            use std::io::{Seek, SeekFrom};
            data.seek(SeekFrom::Start(0)).map_err(failed)?;
            let mut hasher = Sha256::new();
            let mut buffer = vec![0u8; 256 * 1024];
            let mut file = &data;
            loop {
                match file.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buffer[..n]),
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(failed(err)),
                }
            }
            hex::encode(hasher.finalize())
        };
        // From here the partial is done with: a mismatch or a refusal
        // below removes it with the temporary file it becomes.
        let temp_path = tempfile::Builder::new()
            .prefix(RECEIVE_TEMP_PREFIX)
            .make_in(&dir, |path| std::fs::hard_link(&data_path, path))
            .map_err(failed)?
            .into_temp_path();
        let _ = std::fs::remove_file(&data_path);
        let _ = std::fs::remove_file(&info_path);
        let temp = tempfile::NamedTempFile::from_parts(data, temp_path);
        if !sha256.eq_ignore_ascii_case(resume.sha256) {
            return Err(Rejection::new(
                400,
                format!(
                    "{name}: the {} bytes received have SHA-256 {sha256}, not {} as announced; nothing kept",
                    resume.size, resume.sha256
                ),
            ));
        }
        self.store(name, temp, &dir, &sha256, expires, destinations, now)
    }
}

/// Writes a small file whole (through a temporary file renamed over it).
fn write_small_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a parent");
    let mut temp = tempfile::Builder::new()
        .prefix(crate::bay::TEMP_PREFIX)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Which part of which packet: what tells a duplicate from a conflict.
struct PacketIdentity {
    id: packet_format::ops::Id,
    part: u32,
    parts: u32,
}

impl PacketIdentity {
    fn of(header: &packet_format::Header) -> PacketIdentity {
        PacketIdentity {
            id: header.packet_id,
            part: header.part,
            parts: header.parts,
        }
    }

    fn same_as(&self, other: &PacketIdentity) -> bool {
        self.id == other.id && self.part == other.part && self.parts == other.parts
    }
}

impl std::fmt::Display for PacketIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "packet {} part {} of {}", self.id, self.part, self.parts)
    }
}

impl Receiver<'_> {
    /// Whether `bay` already holds this packet (the same packet id and
    /// part) as `name`, its canonical name; a different packet of that
    /// name is a conflict, refused with 409.
    fn present(
        &self,
        bay: &dyn BayStore,
        name: &str,
        sha256: &str,
        identity: &PacketIdentity,
    ) -> Result<bool, Rejection> {
        if !bay.exists(name).map_err(internal)? {
            return Ok(false);
        }
        let (existing, _) = hash_entry(bay, name).map_err(internal)?;
        if existing == sha256 {
            return Ok(true);
        }
        // Other bytes: the same part signed alike is still a duplicate.
        let copy;
        let path = match bay.local_dir() {
            Some(dir) => dir.join(name),
            None => {
                copy =
                    tempfile::NamedTempFile::new().map_err(|e| internal(format!("{name}: {e}")))?;
                let mut reader = bay.open(name).map_err(internal)?;
                io::copy(&mut reader, &mut copy.as_file())
                    .map_err(|e| internal(format!("{name}: {e}")))?;
                copy.path().to_path_buf()
            }
        };
        let held = packet_format::verify_packet(&path, &self.trusted_keys)
            .map(|verified| PacketIdentity::of(verified.header()));
        match held {
            Ok(held) if held.same_as(identity) => Ok(true),
            Ok(held) => Err(Rejection::new(
                409,
                format!(
                    "{name}: {} already holds a different packet under that name ({held}; this is {identity})",
                    bay.describe()
                ),
            )),
            Err(err) => Err(Rejection::new(
                409,
                format!(
                    "{name}: {} already holds a file of that name that is not this packet ({})",
                    bay.describe(),
                    err.kind
                ),
            )),
        }
    }
}

impl Receiver<'_> {
    /// A packet signed by a key not trusted here (`unknown`, the error)
    /// that carries its sender's rotations (SPEC.md §4.3): accepted when
    /// they lead, each sealed by the key it replaces, from a key trusted
    /// here to the packet's signer, agreeing with every rotation known
    /// here. Rotations learned from a key trusted through
    /// `trusted_replicas` are kept, so the member's later packets (which
    /// no longer carry them) are accepted too.
    fn vouched(
        &self,
        name: &str,
        path: &Path,
        unknown: &ErrorKind,
    ) -> Result<(packet_format::VerifiedPacket, Option<String>), Rejection> {
        let Some(signer) = packet_format::examine_packet(path, &[])
            .header
            .map(|h| h.signer_key)
        else {
            return Err(refusal(name, unknown));
        };
        let verified = match packet_format::verify_packet(path, &[signer]) {
            Ok(verified) => verified,
            Err(err) => return Err(refusal(name, &err.kind)),
        };
        let header = verified.header();
        if header.rotations.is_empty() {
            return Err(unknown_signer(name, unknown, header));
        }
        let forbidden = |why: String| {
            Rejection::new(
                403,
                format!(
                    "{name}: {unknown}, and the key rotations (mkreplica -rekey) the packet \
                     carries do not vouch for it: {why}"
                ),
            )
        };
        let (first, learned) = self
            .trust
            .header_vouches(&self.trusted_keys, header)
            .map_err(forbidden)?;
        let family = self.trust.family_keys.contains(&first);
        if !learned.is_empty() && family {
            self.trust.keep(&learned).map_err(|err| {
                internal(format!(
                    "{name}: keeping the key rotation it carries: {err}"
                ))
            })?;
        }
        // The administrator of a trusted_keys hub must add the new key
        // before the member's packets stop carrying the rotation; one of
        // a trusted_replicas hub learns it without doing anything.
        let member = format!("{:?}", header.sender.name);
        let note = learned.last().map(|r| match family {
            true => format!(
                "member {member} rotated its key at its epoch {} (mkreplica -rekey); the new key \
                 {} is kept in {}",
                r.epoch,
                hex::encode(r.new_key),
                crate::trust::LEARNED_ROTATIONS_FILE
            ),
            false => format!(
                "member {member} rotated its key at its epoch {} (mkreplica -rekey); add {} to \
                 trusted_keys (and restart the server), keeping the old key until its packets \
                 written before the rotation are through",
                r.epoch,
                hex::encode(r.new_key)
            ),
        });
        Ok((verified, note))
    }

    /// Refuses a packet signed with a key its sender replaced at epoch E
    /// (a rotation known here) that carries the sender's changes after E
    /// or whose epoch row says it holds them (SPEC.md §7.1): after the
    /// rotation the member signs only with its new key, so someone else
    /// holding the old one made it. The target would refuse it too.
    fn check_retired_key(
        &self,
        name: &str,
        header: &packet_format::Header,
    ) -> Result<(), Rejection> {
        let Some(rotation) = self.trust.rotation_of(&header.signer_key) else {
            return Ok(());
        };
        let sender = header.sender.id;
        if rotation.member != sender.0 {
            return Ok(());
        }
        let carried = header
            .epoch_ranges
            .get(&sender)
            .filter(|range| range.last > rotation.epoch)
            .map(|range| format!("yet it carries its changes {}-{}", range.first, range.last));
        let row = header.epoch_row.get(&sender).copied().unwrap_or(0);
        let claimed = (row > rotation.epoch)
            .then(|| format!("yet its epoch row says it holds its changes up to {row}"));
        match carried.or(claimed) {
            None => Ok(()),
            Some(what) => Err(Rejection::new(
                403,
                format!(
                    "{name}: signed with the key {:?} replaced at its epoch {} (mkreplica \
                     -rekey), {what}: made by someone else holding the old key",
                    header.sender.name, rotation.epoch
                ),
            )),
        }
    }
}

/// Packet names: a plain file name as the packet format makes them.
pub fn check_packet_name(name: &str) -> Result<(), Rejection> {
    check_name("upload", name).map_err(|err| Rejection::new(400, err.to_string()))?;
    if !packet_format::is_packet_file_name(name) {
        return Err(Rejection::new(
            400,
            format!("{name:?} is not a packet name (sync_*.zip or repl_*.zip)"),
        ));
    }
    Ok(())
}

/// The answer to an intact packet signed by a key this server does not
/// trust, carrying no rotation that vouches for it: names the member it
/// claims to come from and the key, 64 hex digits, as trusted_keys takes
/// it (the claim is unproved: the administrator checks the key at a
/// member before adding it).
fn unknown_signer(name: &str, kind: &ErrorKind, header: &packet_format::Header) -> Rejection {
    Rejection::new(
        403,
        format!(
            "{name}: {kind}; this server does not trust that key, {}, which the packet says \
             is member {:?}'s (if it ran mkreplica -rekey: its packets carrying the rotation \
             teach a trusted_replicas family the new key; for trusted_keys, add this key once \
             lsreplica -long at any member shows it as that member's, restart the server, and \
             remove the old key when the packets written before the rotation are through)",
            hex::encode(header.signer_key),
            header.sender.name
        ),
    )
}

/// The answer to a packet that failed verification.
fn refusal(name: &str, kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::UnknownKey { .. } => Rejection::new(
            403,
            format!(
                "{name}: {kind}; this server does not trust that key (if a member ran \
                 mkreplica -rekey: its packets carrying the rotation teach a trusted_replicas \
                 family the new key; for trusted_keys, add the new one, which lsreplica -long at \
                 any member shows, restart the server, and remove the old key once the packets \
                 written before the rotation are through)"
            ),
        ),
        ErrorKind::NewerFormat { .. } => Rejection::new(
            400,
            format!("{name}: {kind}; upgrade syncreplica on this host"),
        ),
        _ => Rejection::new(
            400,
            format!("{name}: damaged or not a signed syncreplica packet: {kind}"),
        ),
    }
}

pub(crate) fn internal(err: impl std::fmt::Display) -> Rejection {
    Rejection::new(500, err.to_string())
}

/// Bytes an unprivileged user may still write on the file system of `dir`.
pub fn available_space(dir: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail * stat.f_frsize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bay::DirStore;
    use crate::config::Hop;
    use crate::test_packets::*;

    struct Setup {
        dir: tempfile::TempDir,
        config: ShippingConfig,
    }

    impl Setup {
        fn new() -> Setup {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config(dir.path());
            config.local_replicas = vec!["ship".into()];
            config
                .destinations
                .insert("lab".into(), Hop::Url("http://127.0.0.1:9".into()));
            Setup { dir, config }
        }

        fn receiver(&self) -> Receiver<'_> {
            Receiver {
                config: &self.config,
                class_name: "default".into(),
                class: self.config.class("default").unwrap().clone(),
                trusted_keys: vec![public_key(&SENDER_SECRET)],
                trust: Default::default(),
            }
        }

        fn send(
            &self,
            path: &Path,
            name: &str,
            expires: Option<DateTime<Utc>>,
        ) -> Result<Receipt, Rejection> {
            let bytes = std::fs::read(path).unwrap();
            self.receiver().receive(
                name,
                Some(bytes.len() as u64),
                &mut &bytes[..],
                expires,
                None,
                at("2026-11-21T10:00:00Z"),
            )
        }

        fn stored(&self) -> Vec<String> {
            files_under(&self.dir.path().join("bays"))
        }
    }

    fn name_of(path: &Path) -> String {
        path.file_name().unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn a_packet_for_a_local_replica_lands_in_the_incoming_bay_once() {
        let setup = Setup::new();
        let sent = packet(&setup.dir.path().join("src"), "ship", 1, &SENDER_SECRET);
        let name = name_of(&sent);
        let receipt = setup.send(&sent, &name, None).unwrap();
        assert_eq!(receipt.local, ["ship"]);
        assert!(!receipt.duplicate);
        assert_eq!(setup.stored(), [format!("incoming/{name}")]);
        assert_eq!(
            std::fs::read(setup.dir.path().join("bays/incoming").join(&name)).unwrap(),
            std::fs::read(&sent).unwrap()
        );
        assert!(setup.send(&sent, &name, None).unwrap().duplicate);
        assert_eq!(setup.stored().len(), 1);
    }

    #[test]
    fn a_packet_for_elsewhere_is_queued_with_an_order_keeping_the_earlier_expiry() {
        let setup = Setup::new();
        let sent = packet(&setup.dir.path().join("src"), "lab", 1, &SENDER_SECRET);
        let name = name_of(&sent);
        let expires = at("2026-11-25T00:00:00Z");
        let receipt = setup.send(&sent, &name, Some(expires)).unwrap();
        assert_eq!(receipt.forwarded, ["lab"]);
        assert_eq!(
            setup.stored(),
            [format!("outgoing/{name}"), format!("outgoing/{name}.order")]
        );
        let outgoing = DirStore::new(setup.dir.path().join("bays/outgoing"));
        let order = ShippingOrder::load(&outgoing, &name).unwrap();
        assert_eq!(order.destinations, ["lab"]);
        assert_eq!(
            order.expires, expires,
            "the sender's earlier expiry is kept"
        );
        order.verify_packet(&outgoing).unwrap();
        // A later expiry than the class's own is not taken.
        let later = packet(&setup.dir.path().join("src2"), "lab", 2, &SENDER_SECRET);
        setup
            .send(&later, &name_of(&later), Some(at("2030-01-01T00:00:00Z")))
            .unwrap();
        let order = ShippingOrder::load(&outgoing, &name_of(&later)).unwrap();
        assert_eq!(order.expires, at("2026-12-05T10:00:00Z"));
    }

    #[test]
    fn refusals_store_nothing() {
        let setup = Setup::new();
        let src = setup.dir.path().join("src");
        let stranger = packet(&src.join("x"), "ship", 1, &STRANGER_SECRET);
        let refused = setup
            .send(&stranger, &name_of(&stranger), None)
            .unwrap_err();
        assert_eq!(refused.status, 403, "{refused}");

        let good = packet(&src.join("y"), "ship", 2, &SENDER_SECRET);
        let mut damaged = std::fs::read(&good).unwrap();
        let last = damaged.len() - 30;
        damaged[last] ^= 1;
        let refused = setup
            .receiver()
            .receive(
                &name_of(&good),
                None,
                &mut &damaged[..],
                None,
                None,
                Utc::now(),
            )
            .unwrap_err();
        assert_eq!(refused.status, 400, "{refused}");

        let unroutable = packet(&src.join("z"), "nowhere", 3, &SENDER_SECRET);
        let refused = setup
            .send(&unroutable, &name_of(&unroutable), None)
            .unwrap_err();
        assert_eq!(refused.status, 422, "{refused}");

        let refused = setup.send(&good, "../escape.zip", None).unwrap_err();
        assert_eq!(refused.status, 400, "{refused}");
        let refused = setup.send(&good, "notes.txt", None).unwrap_err();
        assert_eq!(refused.status, 400, "{refused}");

        // Cut short: fewer bytes than declared.
        let bytes = std::fs::read(&good).unwrap();
        let refused = setup
            .receiver()
            .receive(
                &name_of(&good),
                Some(bytes.len() as u64 + 10),
                &mut &bytes[..],
                None,
                None,
                Utc::now(),
            )
            .unwrap_err();
        assert_eq!(refused.status, 400, "{refused}");
        assert_eq!(setup.stored(), Vec::<String>::new());
        let incoming = setup.dir.path().join("bays/incoming");
        assert_eq!(
            std::fs::read_dir(incoming).unwrap().count(),
            0,
            "no temporary file left"
        );
    }

    #[test]
    fn size_and_space_limits_are_checked_before_the_body_is_read() {
        struct Untouchable;
        impl Read for Untouchable {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("the body must not be read");
            }
        }
        let mut setup = Setup::new();
        setup.config.max_packet_size = Some(1000);
        let refused = setup
            .receiver()
            .receive(
                "sync_a.zip",
                Some(1001),
                &mut Untouchable,
                None,
                None,
                Utc::now(),
            )
            .unwrap_err();
        assert_eq!(refused.status, 413, "{refused}");
        setup.config.max_packet_size = None;
        setup.config.min_free_space = Some(u64::MAX / 2);
        std::fs::create_dir_all(setup.dir.path().join("bays")).unwrap();
        let refused = setup
            .receiver()
            .receive(
                "sync_a.zip",
                Some(10),
                &mut Untouchable,
                None,
                None,
                Utc::now(),
            )
            .unwrap_err();
        assert_eq!(refused.status, 507, "{refused}");
        assert!(refused.reason.contains("min_free_space"), "{refused}");
    }

    #[test]
    fn an_upload_without_a_length_is_cut_off_at_the_limit() {
        let mut setup = Setup::new();
        setup.config.max_packet_size = Some(64 * 1024);
        let endless = std::io::repeat(0).take(1 << 20);
        let refused = setup
            .receiver()
            .receive("sync_a.zip", None, &mut { endless }, None, None, Utc::now())
            .unwrap_err();
        assert_eq!(refused.status, 413, "{refused}");
        assert_eq!(setup.stored(), Vec::<String>::new());
    }

    #[test]
    fn a_different_packet_under_a_name_already_here_is_a_conflict() {
        let setup = Setup::new();
        let first = packet_with_id(&setup.dir.path().join("a"), "ship", 1, 1, &SENDER_SECRET);
        let second = packet_with_id(&setup.dir.path().join("b"), "ship", 1, 2, &SENDER_SECRET);
        let name = name_of(&first);
        assert_eq!(name, name_of(&second), "two packets, one name");
        setup.send(&first, &name, None).unwrap();
        let refused = setup.send(&second, &name, None).unwrap_err();
        assert_eq!(refused.status, 409, "{refused}");
        assert!(refused.reason.contains("different packet"), "{refused}");
        assert_eq!(
            std::fs::read(setup.dir.path().join("bays/incoming").join(&name)).unwrap(),
            std::fs::read(&first).unwrap(),
            "the first is kept"
        );
    }

    #[test]
    fn a_packet_is_stored_only_under_the_name_its_signed_header_implies() {
        let setup = Setup::new();
        let old = packet(&setup.dir.path().join("a"), "ship", 1, &SENDER_SECRET);
        let future = packet(&setup.dir.path().join("b"), "ship", 2, &SENDER_SECRET);
        // An old packet under a later one's name cannot squat it...
        let refused = setup.send(&old, &name_of(&future), None).unwrap_err();
        assert_eq!(refused.status, 400, "{refused}");
        assert!(
            refused
                .reason
                .contains(&format!("names it {}", name_of(&old))),
            "{refused}"
        );
        assert_eq!(setup.stored(), Vec::<String>::new());
        // ...so the later one still arrives.
        let receipt = setup.send(&future, &name_of(&future), None).unwrap();
        assert!(!receipt.duplicate);
        // One packet under several names is stored once.
        setup.send(&old, &name_of(&old), None).unwrap();
        let other_name = name_of(&old).replace(".zip", "_again.zip");
        let refused = setup.send(&old, &other_name, None).unwrap_err();
        assert_eq!(refused.status, 400, "{refused}");
        assert!(setup.send(&old, &name_of(&old), None).unwrap().duplicate);
        assert_eq!(
            setup.stored(),
            [
                format!("incoming/{}", name_of(&old)),
                format!("incoming/{}", name_of(&future))
            ]
        );
    }

    /// The first `n` bytes of `data`, then a dropped connection.
    struct CutAfter<'a> {
        data: &'a [u8],
        n: usize,
    }

    impl Read for CutAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.n == 0 {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let take = buf.len().min(self.n).min(self.data.len());
            buf[..take].copy_from_slice(&self.data[..take]);
            self.data = &self.data[take..];
            self.n -= take;
            Ok(take)
        }
    }

    fn sha_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    impl Setup {
        fn resume(
            &self,
            name: &str,
            whole: &[u8],
            sha: &str,
            start: usize,
            body: &mut dyn Read,
        ) -> Result<Receipt, Rejection> {
            self.receiver().receive_resumable(
                name,
                Resume {
                    size: whole.len() as u64,
                    sha256: sha,
                    start: start as u64,
                },
                body,
                None,
                None,
                at("2026-11-21T10:00:00Z"),
            )
        }
    }

    #[test]
    fn a_cut_upload_is_kept_and_resumed_to_a_verified_whole() {
        let setup = Setup::new();
        let sent = packet(&setup.dir.path().join("src"), "ship", 1, &SENDER_SECRET);
        let name = name_of(&sent);
        let bytes = std::fs::read(&sent).unwrap();
        let sha = sha_hex(&bytes);
        let half = bytes.len() / 2;
        let cut = setup
            .resume(
                &name,
                &bytes,
                &sha,
                0,
                &mut CutAfter {
                    data: &bytes,
                    n: half,
                },
            )
            .unwrap_err();
        assert_eq!(cut.status, 400, "{cut}");
        assert!(
            cut.reason.contains(&format!(
                "{half} of {} bytes held for resuming",
                bytes.len()
            )),
            "{cut}"
        );
        let receiver = setup.receiver();
        assert_eq!(
            receiver.held(&name, bytes.len() as u64, &sha),
            Ok(half as u64)
        );
        // Asked about other bytes, it holds nothing.
        assert_eq!(
            receiver.held(&name, bytes.len() as u64, &sha_hex(b"other")),
            Ok(0)
        );
        assert_eq!(receiver.held(&name, bytes.len() as u64 + 1, &sha), Ok(0));
        let partials = list_partials(&receiver.class, Utc::now()).unwrap();
        assert_eq!(partials.len(), 1);
        assert_eq!(
            (
                partials[0].packet.as_str(),
                partials[0].held,
                partials[0].size
            ),
            (name.as_str(), half as u64, bytes.len() as u64)
        );
        assert!(
            !setup.dir.path().join("bays/incoming").join(&name).exists(),
            "nothing stored yet"
        );

        // Not from where it stopped: 416, and the partial stays.
        let wrong = setup
            .resume(&name, &bytes, &sha, half + 1, &mut &bytes[half + 1..])
            .unwrap_err();
        assert_eq!(wrong.status, 416, "{wrong}");
        assert_eq!(
            receiver.held(&name, bytes.len() as u64, &sha),
            Ok(half as u64)
        );

        let receipt = setup
            .resume(&name, &bytes, &sha, half, &mut &bytes[half..])
            .unwrap();
        assert_eq!(receipt.local, ["ship"]);
        assert_eq!(receipt.sha256, sha);
        assert_eq!(setup.stored(), [format!("incoming/{name}")]);
        assert_eq!(
            std::fs::read(setup.dir.path().join("bays/incoming").join(&name)).unwrap(),
            bytes
        );
        assert_eq!(list_partials(&receiver.class, Utc::now()).unwrap(), []);
        let incoming = setup.dir.path().join("bays/incoming");
        let leftovers: Vec<_> = std::fs::read_dir(&incoming)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp"))
            .collect();
        assert_eq!(leftovers, Vec::<std::ffi::OsString>::new());
    }

    #[test]
    fn a_partial_of_other_bytes_is_discarded_never_spliced() {
        let setup = Setup::new();
        let first = packet_with_id(&setup.dir.path().join("a"), "ship", 1, 1, &SENDER_SECRET);
        let second = packet_with_id(&setup.dir.path().join("b"), "ship", 1, 2, &SENDER_SECRET);
        let name = name_of(&first);
        let (a, b) = (
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap(),
        );
        let half = a.len() / 2;
        setup
            .resume(
                &name,
                &a,
                &sha_hex(&a),
                0,
                &mut CutAfter { data: &a, n: half },
            )
            .unwrap_err();
        // Another packet under that name: its sender is told nothing is
        // held, and what was held of the first is not spliced on.
        let receiver = setup.receiver();
        assert_eq!(receiver.held(&name, b.len() as u64, &sha_hex(&b)), Ok(0));
        setup
            .resume(&name, &b, &sha_hex(&b), 0, &mut &b[..])
            .unwrap();
        assert_eq!(
            std::fs::read(setup.dir.path().join("bays/incoming").join(&name)).unwrap(),
            b
        );

        // Bytes that do not add up to the SHA-256 announced: refused
        // whole, nothing kept.
        let setup = Setup::new();
        setup
            .resume(
                &name,
                &a,
                &sha_hex(&a),
                0,
                &mut CutAfter { data: &a, n: half },
            )
            .unwrap_err();
        let mut spliced = a[..half].to_vec();
        spliced.extend_from_slice(&b[half..a.len().min(b.len())]);
        spliced.resize(a.len(), 0);
        let refused = setup
            .resume(&name, &a, &sha_hex(&a), half, &mut &spliced[half..])
            .unwrap_err();
        assert_eq!(refused.status, 400, "{refused}");
        assert!(refused.reason.contains("nothing kept"), "{refused}");
        assert_eq!(setup.stored(), Vec::<String>::new());
        assert_eq!(
            list_partials(&setup.receiver().class, Utc::now()).unwrap(),
            []
        );
        assert_eq!(
            std::fs::read_dir(setup.dir.path().join("bays/incoming"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn partials_untouched_for_a_day_are_swept() {
        let setup = Setup::new();
        let sent = packet(&setup.dir.path().join("src"), "ship", 1, &SENDER_SECRET);
        let name = name_of(&sent);
        let bytes = std::fs::read(&sent).unwrap();
        setup
            .resume(
                &name,
                &bytes,
                &sha_hex(&bytes),
                0,
                &mut CutAfter {
                    data: &bytes,
                    n: 100,
                },
            )
            .unwrap_err();
        let class = setup.receiver().class;
        let now = Utc::now();
        assert_eq!(
            list_partials(&class, now + chrono::TimeDelta::hours(23))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            list_partials(&class, now + chrono::TimeDelta::hours(25)).unwrap(),
            []
        );
        assert_eq!(
            std::fs::read_dir(setup.dir.path().join("bays/incoming"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn the_same_packet_for_more_destinations_extends_its_order() {
        let mut setup = Setup::new();
        setup
            .config
            .destinations
            .insert("far".into(), Hop::Url("http://127.0.0.1:9".into()));
        let sent = packet(&setup.dir.path().join("src"), "lab", 1, &SENDER_SECRET);
        let name = name_of(&sent);
        let bytes = std::fs::read(&sent).unwrap();
        let send = |destinations: &[String]| {
            setup.receiver().receive(
                &name,
                Some(bytes.len() as u64),
                &mut &bytes[..],
                None,
                Some(destinations),
                at("2026-11-21T10:00:00Z"),
            )
        };
        assert!(!send(&["lab".into()]).unwrap().duplicate);
        assert!(send(&["lab".into()]).unwrap().duplicate);
        let more = send(&["lab".into(), "far".into()]).unwrap();
        assert!(!more.duplicate, "a new destination is news");
        let outgoing = DirStore::new(setup.dir.path().join("bays/outgoing"));
        let order = ShippingOrder::load(&outgoing, &name).unwrap();
        assert_eq!(order.destinations, ["lab", "far"]);
    }
}
