//! The replica side of shipping: putting packets into a storage class's
//! outgoing bay with their shipping orders (`syncreplica -export -ship`,
//! `mkorder`), forwarding them at once (`-fship`), and finding what has
//! arrived in the incoming bays (`syncreplica -import -receive`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use shipping::bay::{open_bay, Bay, BayStore};
use shipping::order::{format_time, order_name, ShippingOrder};
use shipping::poll::{PassReport, Shipper};
use shipping::{ConfigSource, ShippingConfig, DEFAULT_STORAGE_CLASS};

use crate::error::{Error, Result};

/// The shipping configuration in effect and where it came from.
pub struct Shipping {
    pub config: ShippingConfig,
    pub source: ConfigSource,
}

/// What [`Shipping::withdraw`] did: (packet, whether it was removed) per
/// order changed, and the bays on S3 it left alone.
pub type Withdrawn = (Vec<(String, bool)>, Vec<String>);

impl Shipping {
    /// Loads the configuration (`-shipconf`, the environment, the user's
    /// and the system's config directories, else the built-in default).
    pub fn load(explicit: Option<&Path>) -> Result<Shipping> {
        // A -shipconf that names nothing is a usage mistake (exit 2).
        if let Some(path) = explicit.filter(|p| !p.exists()) {
            return Err(crate::Error::no_such_file(path, Some("-shipconf")));
        }
        let (config, source) = ShippingConfig::load(explicit)?;
        Ok(Shipping { config, source })
    }

    /// The class named by `-sclass`, or `default`.
    pub fn class_name(&self, sclass: Option<&str>) -> Result<String> {
        let name = sclass.unwrap_or(DEFAULT_STORAGE_CLASS);
        self.config.class(name).map_err(|e| self.config_error(e))?;
        Ok(name.to_string())
    }

    /// The classes `-sclass` selects: the one named, else all of them.
    pub fn classes(&self, sclass: Option<&str>) -> Result<Vec<String>> {
        match sclass {
            Some(name) => Ok(vec![self.class_name(Some(name))?]),
            None => Ok(self.config.classes.keys().cloned().collect()),
        }
    }

    /// Refuses, before anything is queued, a destination no route,
    /// default route or `[destinations]` entry leads to (or whose routes
    /// loop): that is a configuration to fix, not a delivery failure to
    /// retry until the order expires.
    pub fn check_routes<'a>(&self, destinations: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for destination in destinations {
            self.config
                .next_hop(destination)
                .map_err(|e| self.config_error(e))?;
        }
        Ok(())
    }

    /// `err`, which the configuration caused, naming the file in use.
    pub fn config_error(&self, err: shipping::Error) -> crate::Error {
        crate::Error::ShippingConfig {
            config: config_name(&self.source),
            cause: err,
        }
    }

    /// The outgoing bay of `class_name`: a directory (created if
    /// missing) or an S3 prefix.
    pub fn outgoing(&self, class_name: &str) -> Result<Box<dyn BayStore>> {
        let class = self.config.class(class_name)?;
        Ok(open_bay(class, Bay::Outgoing)?)
    }

    /// Where `-export -ship` writes its packets for class `class_name`:
    /// the outgoing bay itself when it is a directory; for a bay on S3, a
    /// local staging directory (packets are written there, then uploaded
    /// whole by [`Shipping::upload_staged`] before their orders are made).
    pub fn export_dir(&self, class_name: &str) -> Result<PathBuf> {
        let outgoing = self.outgoing(class_name)?;
        match outgoing.local_dir() {
            Some(dir) => Ok(dir.to_path_buf()),
            None => Ok(self.staging_dir(class_name)),
        }
    }

    /// True when `dir` is the local staging directory of class
    /// `class_name`'s exports (a class on S3), not its outgoing bay.
    pub fn is_staging(&self, class_name: &str, dir: &Path) -> bool {
        self.staging_dir(class_name) == dir
    }

    /// The staging directory of an S3 class's exports: kept between runs,
    /// so parts an interrupted export left there are found and queued by
    /// the next one.
    fn staging_dir(&self, class_name: &str) -> PathBuf {
        let base = directories::ProjectDirs::from("", "", "syncreplica")
            .map(|dirs| dirs.data_local_dir().join("s3-staging"))
            .unwrap_or_else(|| std::env::temp_dir().join("syncreplica-s3-staging"));
        base.join(class_name)
    }

    /// Uploads packets `names` from the staging directory into the S3
    /// outgoing bay of `class_name` and removes the staged files; nothing
    /// for a directory bay (the export wrote them in place).
    pub fn upload_staged(&self, class_name: &str, names: &[String]) -> Result<()> {
        let outgoing = self.outgoing(class_name)?;
        if outgoing.local_dir().is_some() {
            return Ok(());
        }
        let staging = self.staging_dir(class_name);
        for name in names {
            let path = staging.join(name);
            let mut file = std::fs::File::open(&path).map_err(|e| Error::Io {
                path: path.clone(),
                cause: e,
            })?;
            outgoing.write_from(name, &mut file)?;
            std::fs::remove_file(&path).map_err(|e| Error::Io {
                path: path.clone(),
                cause: e,
            })?;
        }
        Ok(())
    }

    /// Writes a shipping order for each packet already in the outgoing
    /// bay of `class_name`: `(file name, destinations)`.
    pub fn order_packets(
        &self,
        class_name: &str,
        packets: &[(String, Vec<String>)],
        expires: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ShippingOrder>> {
        let class = self.config.class(class_name)?;
        let outgoing = self.outgoing(class_name)?;
        let mut orders = Vec::new();
        for (packet, destinations) in packets {
            let names: Vec<&str> = destinations.iter().map(String::as_str).collect();
            let mut order =
                ShippingOrder::create(outgoing.as_ref(), packet, class_name, class, &names, now)?;
            if let Some(expires) = expires {
                order.expires = expires;
                order.note(
                    now,
                    &format!("expiry set to {} (-pexpire)", format_time(&expires)),
                );
            }
            order.save(outgoing.as_ref())?;
            orders.push(order);
        }
        Ok(orders)
    }

    /// Delivers the named packets of `class_name`'s outgoing bay to their
    /// first hop now (`-fship`); later hops are their hosts' business.
    pub fn forward_now(
        &self,
        class_name: &str,
        packets: &[String],
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<PassReport> {
        let shipper = Shipper {
            config: &self.config,
            log,
        };
        Ok(shipper.ship(class_name, packets, Utc::now())?)
    }

    /// Takes `member` (removed from the family) out of every shipping order
    /// in the outgoing bays on a directory: it will never accept a packet,
    /// so its deliveries would only be retried until they expire. An order
    /// left with no destination is removed with its packet. Bays on S3,
    /// whose orders other servers may hold, are left as they are and
    /// named in the answer. Returns (packet, whether it was removed) per
    /// order changed, and the S3 bays not looked at.
    /// Only packets of `family` are touched: another family on this host
    /// may have a member of the same name.
    pub fn withdraw(
        &self,
        family: &crate::ops::Id,
        member: &str,
        now: DateTime<Utc>,
    ) -> Result<Withdrawn> {
        let mut changed = Vec::new();
        let mut skipped = Vec::new();
        for (class_name, class) in &self.config.classes {
            // A bay never made holds no order (and is not made here).
            if class.s3.is_none() && !class.outgoing_dir().is_dir() {
                continue;
            }
            let outgoing = self.outgoing(class_name)?;
            let outgoing = outgoing.as_ref();
            if outgoing.claims_orders() {
                skipped.push(outgoing.describe());
                continue;
            }
            // As a shipping_server pass: no pass works on the bay meanwhile.
            let _pass = outgoing.lock(shipping::bay::PASS_LOCK)?;
            for packet in shipping::order::list_bay(outgoing)?.ordered {
                // A receiver adds destinations to orders under this lock.
                let _entries = outgoing.lock(shipping::bay::ENTRIES_LOCK)?;
                let mut order = ShippingOrder::load(outgoing, &packet)?;
                let Some(at) = order.destinations.iter().position(|d| d == member) else {
                    continue;
                };
                let ours = outgoing.local_dir().is_some_and(|dir| {
                    packet_format::examine_packet(&dir.join(&packet), &[])
                        .header
                        .is_some_and(|header| header.family.id == *family)
                });
                if !ours {
                    continue;
                }
                order.destinations.remove(at);
                order.attempts.remove(member);
                order.note(
                    now,
                    &format!("{member} withdrawn: removed from the family (rmreplica)"),
                );
                let removed = order.is_complete();
                if removed {
                    shipping::order::remove_with_order(outgoing, &packet)?;
                } else {
                    order.save(outgoing)?;
                }
                changed.push((packet, removed));
            }
        }
        Ok((changed, skipped))
    }

    /// Packets sent by `sender` lying in the outgoing bay of `class_name`,
    /// with their headers and whether each has its shipping order (an
    /// export killed between writing its parts and queueing them leaves
    /// them without), sorted by name.
    pub fn packets_from(
        &self,
        class_name: &str,
        sender: &crate::ops::Id,
    ) -> Result<Vec<(PathBuf, packet_format::Header, bool)>> {
        let outgoing = self.outgoing(class_name)?;
        // An S3 bay's exports were staged locally: what an interrupted
        // one left is there (none of it has an order).
        let (dir, listing) = match outgoing.local_dir() {
            Some(dir) => (
                dir.to_path_buf(),
                shipping::order::list_bay(outgoing.as_ref())?,
            ),
            None => {
                let dir = self.staging_dir(class_name);
                if !dir.is_dir() {
                    return Ok(Vec::new());
                }
                let store = shipping::DirStore::new(&dir);
                (dir, shipping::order::list_bay(&store)?)
            }
        };
        let mut found = Vec::new();
        let all = listing
            .unordered
            .iter()
            .map(|n| (n, false))
            .chain(listing.ordered.iter().map(|n| (n, true)));
        for (name, ordered) in all {
            if !name.starts_with("sync_") {
                continue;
            }
            let path = dir.join(name);
            let exam = packet_format::examine_packet(&path, &[]);
            if let (None, Some(header)) = (exam.error, exam.header) {
                if header.sender.id == *sender {
                    found.push((path, header, ordered));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// The packet files waiting in the incoming bays of `classes`. A
    /// packet in an S3 incoming bay is streamed into a local staging
    /// directory first (the import verifies it there before applying
    /// anything); [`Fetched::settle`] then removes from the bucket what
    /// the import consumed.
    /// Where the incoming bays of `classes` are, as a user finds them: a
    /// directory, or `s3://bucket/prefix/incoming/`.
    pub fn incoming_places(&self, classes: &[String]) -> Result<Vec<String>> {
        classes
            .iter()
            .map(|name| {
                let class = self.config.class(name)?;
                Ok(match &class.s3 {
                    Some(s3) => format!("{}/incoming/", s3.storage_url.trim_end_matches('/')),
                    None => crate::error::printable_path(&class.incoming_dir()),
                })
            })
            .collect()
    }

    pub fn incoming_packets(&self, classes: &[String]) -> Result<(Vec<PathBuf>, Fetched)> {
        let mut files = Vec::new();
        let mut fetched = Fetched::default();
        for class_name in classes {
            let class = self.config.class(class_name)?;
            if class.s3.is_some() {
                let incoming = open_bay(class, Bay::Incoming)?;
                let staging = self.staging_dir(class_name).join("incoming");
                std::fs::create_dir_all(&staging).map_err(|e| Error::Io {
                    path: staging.clone(),
                    cause: e,
                })?;
                let local = shipping::DirStore::new(&staging);
                for name in incoming.list()? {
                    if shipping::order::packet_of(&name).is_some() {
                        continue;
                    }
                    let path = staging.join(&name);
                    let have = std::fs::metadata(&path).map(|m| m.len()).ok();
                    if have != Some(incoming.size(&name)?) {
                        shipping::bay::copy_between(incoming.as_ref(), &name, &local, &name)?;
                    }
                    files.push(path.clone());
                    fetched.entries.push((path, name, fetched.stores.len()));
                }
                fetched.stores.push(incoming);
                continue;
            }
            let dir = class.incoming_dir();
            if !dir.is_dir() {
                continue;
            }
            files.extend(crate::sync::packets::collect_packet_files(&[dir])?);
        }
        files.sort();
        files.dedup();
        Ok((files, fetched))
    }
}

/// Packets fetched from S3 incoming bays into local staging files.
#[derive(Default)]
pub struct Fetched {
    stores: Vec<Box<dyn BayStore>>,
    /// (local file, entry name in the bay, index of its store).
    entries: Vec<(PathBuf, String, usize)>,
}

impl Fetched {
    /// Removes from the bucket each packet whose staged copy the import
    /// consumed (removed), and its order if it has one. Returns the
    /// problems, one line each.
    pub fn settle(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (path, name, store) in &self.entries {
            if path.exists() {
                continue;
            }
            let store = &self.stores[*store];
            for entry in [name.clone(), order_name(name)] {
                match store.remove(&entry) {
                    Ok(()) => {}
                    Err(err) if err.is_not_found() => {}
                    Err(err) => problems.push(err.to_string()),
                }
            }
        }
        problems
    }
}

/// What `mkorder` did with one packet.
pub struct Submitted {
    pub order: ShippingOrder,
    /// Where the packet now waits: a directory or `s3://bucket/prefix`.
    pub bay: String,
}

/// `mkorder`: copies (or, without `copy`, moves) each packet file into
/// the outgoing bay of `class_name` and writes its order. Destinations
/// default to the targets in the packet's header. Every packet is checked
/// before any is submitted, so a bad one submits nothing.
pub fn submit_files(
    shipping: &Shipping,
    class_name: &str,
    files: &[PathBuf],
    destinations: &[String],
    expires: Option<DateTime<Utc>>,
    copy: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Submitted>> {
    // Looked at, not created: a refused submission leaves no new bay
    // behind. It is created once every packet has passed its checks.
    let class = shipping.config.class(class_name)?;
    let outgoing: Box<dyn BayStore> = match &class.s3 {
        None => Box::new(shipping::DirStore::new(class.outgoing_dir())),
        Some(_) => open_bay(class, Bay::Outgoing)?,
    };
    let mut planned: Vec<(Source, String, Vec<String>, bool)> = Vec::new();
    for file in files {
        // A packet in an S3 bay, named by its URL (as the expiry
        // notification names a returned packet): read through the bay.
        let remote = match file.to_str().filter(|f| f.starts_with("s3://")) {
            Some(url) => Some(s3_packet(shipping, url)?),
            None => None,
        };
        // Said as such, before its name is judged: a typo, or a shell
        // pattern that matched nothing.
        if remote.is_none()
            && std::fs::symlink_metadata(file)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            return Err(Error::no_such_file(file, Some("-data")));
        }
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::NotSubmittable {
                path: file.clone(),
                why: "not a packet file name".into(),
            })?
            .to_string();
        // The bay holds one entry per name: a second file of that name would
        // replace the first one's packet under its order.
        if let Some((first, ..)) = planned.iter().find(|(_, other, ..)| *other == name) {
            return Err(Error::NotSubmittable {
                path: file.clone(),
                why: format!("{name} is named twice (also as {})", first.describe()),
            });
        }
        shipping::receive::check_packet_name(&name).map_err(|r| Error::NotSubmittable {
            path: file.clone(),
            why: r.reason.to_string(),
        })?;
        let source = match remote {
            Some((store, copy)) => Source::Bay { store, copy },
            None => Source::File(file.clone()),
        };
        let exam = packet_format::examine_packet(source.local(), &[]);
        let header = match (&exam.error, &exam.header) {
            (None, Some(header)) => header,
            (Some(err), _) => {
                return Err(Error::NotSubmittable {
                    path: file.clone(),
                    why: format!("damaged, not submitted: {}", err.kind),
                })
            }
            (None, None) => {
                return Err(Error::NotSubmittable {
                    path: file.clone(),
                    why: "no readable header".into(),
                })
            }
        };
        let targets = if destinations.is_empty() {
            header.targets.iter().map(|t| t.name.clone()).collect()
        } else {
            destinations.to_vec()
        };
        if targets.is_empty() {
            return Err(Error::NotSubmittable {
                path: file.clone(),
                why: "its header names no target; name the DESTINATIONs".into(),
            });
        }
        for target in &targets {
            shipping::config::validate_name(target).map_err(|why| Error::BadName {
                name: target.clone(),
                why,
            })?;
        }
        if !destinations.is_empty() {
            check_destination_names(shipping, file, header, &targets)?;
        }
        shipping.check_routes(targets.iter().map(String::as_str))?;
        // A packet already in the outgoing bay without an order (an export
        // cut off before its orders were written) is queued where it is.
        let in_place = match &source {
            Source::File(file) => file
                .parent()
                .and_then(|dir| dir.canonicalize().ok())
                .zip(outgoing.local_dir().and_then(|d| d.canonicalize().ok()))
                .is_some_and(|(dir, bay)| dir == bay),
            Source::Bay { store, .. } => store.describe() == outgoing.describe(),
        };
        let queued = outgoing.exists(&order_name(&name))?;
        if queued || (!in_place && outgoing.exists(&name)?) {
            return Err(Error::NotSubmittable {
                path: file.clone(),
                why: format!(
                    "{name} is already in {}{}",
                    outgoing.describe(),
                    if queued {
                        format!("; its order is {}", order_name(&name))
                    } else {
                        String::new()
                    }
                ),
            });
        }
        planned.push((source, name, targets, in_place));
    }

    let outgoing = shipping.outgoing(class_name)?;
    let mut submitted = Vec::new();
    for (source, name, targets, in_place) in planned {
        if !in_place {
            let (mut reader, size): (Box<dyn std::io::Read + Send + '_>, _) = match &source {
                Source::File(file) => {
                    let opened = std::fs::File::open(file).map_err(|e| Error::Io {
                        path: file.clone(),
                        cause: e,
                    })?;
                    let size = opened.metadata().ok().map(|m| m.len());
                    (Box::new(opened), size)
                }
                Source::Bay { store, .. } => (store.open(&name)?, store.size(&name).ok()),
            };
            let _copying = crate::sys::progress::phase(
                &format!("copying {name} into the outgoing bay"),
                crate::sys::progress::Unit::Bytes,
                size,
            );
            outgoing.write_from(&name, &mut Counted(&mut reader))?;
        }
        let order = shipping
            .order_packets(class_name, &[(name.clone(), targets)], expires, now)?
            .remove(0);
        if !copy && !in_place {
            match &source {
                Source::File(file) => {
                    std::fs::remove_file(file).map_err(|e| Error::Io {
                        path: file.clone(),
                        cause: e,
                    })?;
                    // The order that came with it (a return bay's expired
                    // order, a stick's copy) is about a packet no longer
                    // there: the new order in the outgoing bay replaces it.
                    let old_order = file.with_file_name(order_name(&name));
                    match std::fs::remove_file(&old_order) {
                        Ok(()) => {}
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(err) => {
                            return Err(Error::Io {
                                path: old_order,
                                cause: err,
                            })
                        }
                    }
                }
                // Gone meanwhile (another mkorder of it): nothing to move.
                Source::Bay { store, .. } => {
                    for entry in [name.clone(), order_name(&name)] {
                        match store.remove(&entry) {
                            Ok(()) => {}
                            Err(err) if err.is_not_found() => {}
                            Err(err) => return Err(err.into()),
                        }
                    }
                }
            }
        }
        submitted.push(Submitted {
            order,
            bay: outgoing.describe(),
        });
    }
    Ok(submitted)
}

/// Where a packet given to `mkorder` is.
enum Source {
    /// A file.
    File(PathBuf),
    /// An entry of a bay on S3, and the local copy it was examined in.
    Bay {
        store: Box<dyn BayStore>,
        copy: tempfile::NamedTempFile,
    },
}

impl Source {
    /// The file to examine: the file itself, or the local copy.
    fn local(&self) -> &Path {
        match self {
            Source::File(file) => file,
            Source::Bay { copy, .. } => copy.path(),
        }
    }

    /// Names it in messages: its path, or its `s3://` URL.
    fn describe(&self) -> String {
        match self {
            Source::File(file) => file.display().to_string(),
            Source::Bay { store, .. } => store.describe(),
        }
    }
}

/// The bay holding the packet at `url` (`s3://BUCKET/PREFIX/BAY/PACKET`,
/// BAY one of a class's bays on S3 in the configuration) and a local copy
/// of it to examine.
fn s3_packet(
    shipping: &Shipping,
    url: &str,
) -> Result<(Box<dyn BayStore>, tempfile::NamedTempFile)> {
    let path = PathBuf::from(url);
    let (bay_url, name) = url.rsplit_once('/').unwrap_or((url, ""));
    let Some((_, class, bay)) = shipping::bay::s3_bay_named(&shipping.config, bay_url) else {
        return Err(Error::NotSubmittable {
            path,
            why: format!(
                "{bay_url} is not a bay of any storage class on S3 in {} (expected \
                 s3://BUCKET/PREFIX/BAY/PACKET, BAY the outgoing, incoming or return bay of a class)",
                config_name(&shipping.source)
            ),
        });
    };
    let store = open_bay(class, bay)?;
    shipping::bay::check_name(&store.describe(), name)?;
    let copy = tempfile::NamedTempFile::new().map_err(|e| Error::Io {
        path: std::env::temp_dir(),
        cause: e,
    })?;
    let fetched = store.open(name).and_then(|mut reader| {
        std::io::copy(&mut reader, &mut copy.as_file()).map_err(|e| store.error(name, e))
    });
    match fetched {
        Ok(_) => Ok((store, copy)),
        Err(err) if err.is_not_found() => Err(Error::NotSubmittable {
            path,
            why: format!("no packet {name} in {}", store.describe()),
        }),
        Err(err) => Err(err.into()),
    }
}

/// A reader that reports the bytes read as progress.
struct Counted<R>(R);

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        crate::sys::progress::advance(n as u64);
        Ok(n)
    }
}

/// Reads `-pexpire`: a number of days (`7`, `7d`), hours (`12h`), seconds
/// (`90s`), a date (`2026-12-01`, midnight UTC) or an RFC 3339 time. It
/// must lie ahead.
pub fn parse_expiry(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let bad = |why: String| Error::BadExpiry {
        value: text.to_string(),
        why,
    };
    let trimmed = text.trim();
    const FORMS: &str =
        "expected days (7 or 7d), hours (12h), seconds (90s), a date (2026-12-01) or an RFC 3339 time";
    let relative = |digits: &str, unit: chrono::Duration| -> Result<DateTime<Utc>> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(FORMS.into()));
        }
        let count: i32 = digits
            .parse()
            .map_err(|_| bad("the number is too large".into()))?;
        if count <= 0 {
            return Err(bad("it must be at least 1".into()));
        }
        Ok(now + unit * count)
    };
    let when = if let Some(days) = trimmed.strip_suffix('d') {
        relative(days, chrono::Duration::days(1))?
    } else if let Some(hours) = trimmed.strip_suffix('h') {
        relative(hours, chrono::Duration::hours(1))?
    } else if let Some(seconds) = trimmed.strip_suffix('s') {
        relative(seconds, chrono::Duration::seconds(1))?
    } else if trimmed.bytes().all(|b| b.is_ascii_digit()) && !trimmed.is_empty() {
        relative(trimmed, chrono::Duration::days(1))?
    } else if let Ok(date) = chrono::NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        date.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
    } else if let Ok(time) = DateTime::parse_from_rfc3339(trimmed) {
        time.with_timezone(&Utc)
    } else {
        return Err(bad(FORMS.into()));
    };
    if when <= now {
        return Err(bad(format!("{} is not in the future", format_time(&when))));
    }
    Ok(when)
}

/// Wraps a shipping library error.
/// The shipping configuration in use, as messages name it: its file (and
/// how it was found), or the built-in default.
pub fn config_name(source: &shipping::config::ConfigSource) -> String {
    match source.path() {
        Some(_) => format!("shipping configuration {source}"),
        None => "the built-in shipping configuration (no shipping.toml found)".to_string(),
    }
}

/// Refuses a DESTINATION named on the command line that no route leads to
/// and that no name the packet's header or shipping.toml knows is: a typo
/// (exit 2, with the nearest known name), not a [destinations] entry to add.
fn check_destination_names(
    shipping: &Shipping,
    file: &Path,
    header: &packet_format::Header,
    destinations: &[String],
) -> Result<()> {
    let config = &shipping.config;
    let mut known: Vec<&str> = header.targets.iter().map(|t| t.name.as_str()).collect();
    known.push(&header.sender.name);
    known.extend(config.local_replicas.iter().map(String::as_str));
    known.extend(config.destinations.keys().map(String::as_str));
    known.extend(config.routes.values().flatten().map(String::as_str));
    for destination in destinations {
        if config.next_hop(destination).is_ok() || known.contains(&destination.as_str()) {
            continue;
        }
        let nearest = known
            .iter()
            .map(|k| (strsim::damerau_levenshtein(destination, k), *k))
            .filter(|(d, _)| *d <= 2)
            .min();
        let targets: Vec<&str> = header.targets.iter().map(|t| t.name.as_str()).collect();
        let mut why = format!(
            "not a target of {} ({}) nor a name in {}, and no route leads to it",
            file.display(),
            targets.join(", "),
            config_name(&shipping.source)
        );
        if let Some((_, name)) = nearest {
            why.push_str(&format!("; did you mean \"{name}\"?"));
        }
        return Err(Error::Member {
            name: destination.clone(),
            why,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_accepts_days_hours_dates_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |t: &str| format_time(&parse_expiry(t, now).unwrap());
        assert_eq!(at("7"), "2026-11-28T10:00:00Z");
        assert_eq!(at("2d"), "2026-11-23T10:00:00Z");
        assert_eq!(at("12h"), "2026-11-21T22:00:00Z");
        assert_eq!(at("90s"), "2026-11-21T10:01:30Z");
        assert_eq!(at("2026-12-01"), "2026-12-01T00:00:00Z");
        assert_eq!(at("2026-11-22T08:00:00+02:00"), "2026-11-22T06:00:00Z");
        for bad in ["0", "-1d", "soon", "2026-11-20", ""] {
            assert!(
                matches!(parse_expiry(bad, now), Err(Error::BadExpiry { .. })),
                "{bad}"
            );
        }
    }
}
