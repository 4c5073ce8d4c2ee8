//! Storage bays and the storage backend under them.
//!
//! A bay is a flat set of named entries: packet parts and their shipping
//! orders. [`BayStore`] is the backend (in the manner of rustic_core's
//! backends): [`DirStore`] keeps entries as files in a directory and
//! [`MemStore`] keeps them in memory for tests. Every write is atomic: a
//! reader sees the old entry or the complete new one, never a part.
//!
//! A storage class has three bays ([`Bays`]): `outgoing` (packets and
//! orders waiting to be shipped), `incoming` (packets received and waiting
//! to be imported or forwarded) and `return` (expired packets sent back).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::StorageClass;
use crate::error::{Error, Result};

/// Lock file a pass over a bay holds for its whole length (passes exclude
/// each other).
pub const PASS_LOCK: &str = ".lock";
/// Lock file held for a moment around changes that must not interleave:
/// placing a packet with its order, merging destinations into an order,
/// removing or moving a packet with its order.
pub const ENTRIES_LOCK: &str = ".lock-entries";

/// An exclusive advisory lock (flock) on a file in a bay directory,
/// released when dropped.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Waits for and takes the lock `name` (one of [`PASS_LOCK`],
    /// [`ENTRIES_LOCK`]) in `dir`.
    pub fn take(dir: &Path, name: &str) -> Result<DirLock> {
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(DirLock { _file: file })
    }
}

/// A server's claim on one shipping order while it works on it (an S3
/// bay shared by several servers: see FORMAT.md, "Bays on S3"). Released
/// when dropped.
pub trait OrderClaim: Send + Sync {
    /// True while the claim is this server's: false once its lease ran
    /// out unrenewed or another server took it over. Work on the order
    /// stops then, and the order is not written again.
    fn held(&self) -> bool;

    /// True once the claim was found taken over by another server (this
    /// one was stalled past its lease), as opposed to merely run out.
    /// Never, for a claim nothing can take over.
    fn lost(&self) -> bool {
        false
    }
}

/// The claim of a bay whose passes exclude each other as a whole (a
/// directory, memory): always held.
struct WholeBayClaim;

impl OrderClaim for WholeBayClaim {
    fn held(&self) -> bool {
        true
    }
}

/// Entry names starting with this are temporary files of writes in
/// progress; they are never listed.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A backend holding one bay's entries.
pub trait BayStore: Send + Sync {
    /// Names the bay in messages: its directory, or `memory:LABEL`.
    fn describe(&self) -> String;

    /// The directory behind the store, when it is one (lets moves between
    /// directories be renames).
    fn local_dir(&self) -> Option<&Path> {
        None
    }

    /// The entries' names, sorted. Temporary files and names starting
    /// with `.` are left out.
    fn list(&self) -> Result<Vec<String>>;

    /// True when the entry exists.
    fn exists(&self, name: &str) -> Result<bool>;

    /// The entry's size in bytes.
    fn size(&self, name: &str) -> Result<u64>;

    /// Opens the entry for streaming reads.
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send + '_>>;

    /// Writes the entry atomically from `reader`, replacing any entry of
    /// that name; returns the bytes written. When the reader fails, no
    /// entry and no temporary file is left behind.
    fn write_from(&self, name: &str, reader: &mut dyn Read) -> Result<u64>;

    /// Removes the entry.
    fn remove(&self, name: &str) -> Result<()>;

    /// Renames an entry within the store atomically, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Reads the whole entry.
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        self.open(name)?
            .read_to_end(&mut data)
            .map_err(|e| self.error(name, e))?;
        Ok(data)
    }

    /// Writes the whole entry atomically.
    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        self.write_from(name, &mut &data[..]).map(|_| ())
    }

    /// Moves an entry into another store (another bay) as `new_name`. The
    /// target sees the complete entry or nothing; the source entry is
    /// removed only after the target's is in place.
    fn move_to(&self, name: &str, target: &dyn BayStore, new_name: &str) -> Result<()> {
        copy_between(self, name, target, new_name)?;
        self.remove(name)
    }

    /// When the entry was last written.
    fn modified(&self, name: &str) -> Result<chrono::DateTime<chrono::Utc>>;

    /// Takes the lock `name` (one of [`PASS_LOCK`], [`ENTRIES_LOCK`]) of
    /// this bay, waiting for it; released when the guard is dropped. A
    /// directory takes a flock on a file, an S3 bay a lease object (see
    /// FORMAT.md), memory a lock in the process.
    fn lock(&self, name: &str) -> Result<Box<dyn Send>>;

    /// True when passes over this bay claim one order at a time
    /// ([`BayStore::claim_order`]) so that several servers work on
    /// different orders at once; false when a pass holds [`PASS_LOCK`]
    /// over the whole bay (a directory: one host).
    fn claims_orders(&self) -> bool {
        false
    }

    /// Claims the order of `packet` for this process without waiting:
    /// None when another server's claim on it is live. A bay without
    /// per-order claims returns a claim that is always held (the pass
    /// lock already excludes other passes).
    fn claim_order(&self, packet: &str) -> Result<Option<Box<dyn OrderClaim>>> {
        let _ = packet;
        Ok(Some(Box::new(WholeBayClaim)))
    }

    /// The S3 store behind this one, when it is one: its create-only and
    /// compare-and-swap writes.
    #[cfg(feature = "s3")]
    fn s3(&self) -> Option<&crate::s3::S3Store> {
        None
    }

    /// An error about entry `name` of this store.
    fn error(&self, name: &str, cause: io::Error) -> Error {
        Error::Bay {
            bay: self.describe(),
            name: name.to_string(),
            cause,
        }
    }
}

/// Copies an entry from one store to another atomically.
pub fn copy_between(
    from: &(impl BayStore + ?Sized),
    name: &str,
    to: &dyn BayStore,
    new_name: &str,
) -> Result<u64> {
    let mut reader = from.open(name)?;
    to.write_from(new_name, &mut reader)
}

/// Refuses names that are not a plain file name, or that are reserved for
/// temporary files.
pub fn check_name(bay: &str, name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else if name.contains(['/', '\\', '\0']) {
        Some("it contains a path separator or NUL")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::BadEntryName {
            bay: bay.to_string(),
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// A bay kept as files in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// A store over `dir`, which must exist when it is used.
    pub fn new(dir: impl Into<PathBuf>) -> DirStore {
        DirStore { dir: dir.into() }
    }

    /// A store over `dir`, creating it (and its parents) if needed.
    pub fn create(dir: impl Into<PathBuf>) -> Result<DirStore> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(DirStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of entry `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(&self.describe(), name)?;
        Ok(self.dir.join(name))
    }

    fn sync_dir(&self) -> Result<()> {
        sync_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }

    /// Makes a complete, flushed temporary file created in this store's
    /// directory (same file system) the entry `name`, by renaming it: the
    /// last step of [`BayStore::write_from`], for a writer that had to
    /// check the file before deciding where it goes.
    pub fn adopt(&self, name: &str, temp: tempfile::NamedTempFile) -> Result<()> {
        let path = self.path(name)?;
        temp.as_file().sync_all().map_err(|e| self.error(name, e))?;
        temp.persist(&path).map_err(|e| self.error(name, e.error))?;
        self.sync_dir()
    }
}

/// Makes a directory's entries (creations, renames) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl BayStore for DirStore {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn lock(&self, name: &str) -> Result<Box<dyn Send>> {
        Ok(Box::new(DirLock::take(&self.dir, name)?))
    }

    fn modified(&self, name: &str) -> Result<chrono::DateTime<chrono::Utc>> {
        let path = self.path(name)?;
        std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(chrono::DateTime::from)
            .map_err(|e| self.error(name, e))
    }

    fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let is_file = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
            if is_file {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, name: &str) -> Result<bool> {
        let path = self.path(name)?;
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(self.error(name, err)),
        }
    }

    fn size(&self, name: &str) -> Result<u64> {
        let path = self.path(name)?;
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| self.error(name, e))
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send + '_>> {
        let path = self.path(name)?;
        let file = File::open(&path).map_err(|e| self.error(name, e))?;
        Ok(Box::new(io::BufReader::new(file)))
    }

    fn write_from(&self, name: &str, reader: &mut dyn Read) -> Result<u64> {
        // The name is checked before anything is written.
        self.path(name)?;
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            // 0666 less the umask, as the packets themselves (tempfile's
            // default is 0600): bays shared by a service account and
            // local users work through groups and the umask.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let copied = {
            let mut out = io::BufWriter::new(temp.as_file_mut());
            io::copy(reader, &mut out).and_then(|written| out.flush().map(|()| written))
        };
        let written = match copied {
            Ok(written) => written,
            Err(cause) => {
                // Removed first, so the free space said is what is there.
                drop(temp);
                return Err(match cause.kind() {
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::BayFull {
                        bay: self.describe(),
                        name: name.to_string(),
                        free: crate::receive::available_space(&self.dir).unwrap_or(0),
                    },
                    _ => self.error(name, cause),
                });
            }
        };
        self.adopt(name, temp)?;
        Ok(written)
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        std::fs::remove_file(&path).map_err(|e| self.error(name, e))?;
        self.sync_dir()
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let source = self.path(from)?;
        let target = self.path(to)?;
        std::fs::rename(&source, &target).map_err(|e| self.error(from, e))?;
        self.sync_dir()
    }

    fn move_to(&self, name: &str, target: &dyn BayStore, new_name: &str) -> Result<()> {
        let source = self.path(name)?;
        if let Some(dir) = target.local_dir() {
            check_name(&target.describe(), new_name)?;
            match std::fs::rename(&source, dir.join(new_name)) {
                Ok(()) => {
                    sync_dir(dir).map_err(|e| Error::io(dir, e))?;
                    return self.sync_dir();
                }
                // Another file system: copy, then remove.
                Err(err) if err.kind() == io::ErrorKind::CrossesDevices => {}
                Err(err) => return Err(self.error(name, err)),
            }
        }
        copy_between(self, name, target, new_name)?;
        self.remove(name)
    }
}

/// A bay kept in memory, for tests. Clones share the same entries.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    label: String,
    entries: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    locks: Arc<(
        Mutex<std::collections::BTreeSet<String>>,
        std::sync::Condvar,
    )>,
    /// When each entry was written.
    times: Arc<Mutex<BTreeMap<String, chrono::DateTime<chrono::Utc>>>>,
}

/// A lock of a [`MemStore`], released when dropped.
struct MemLock {
    locks: Arc<(
        Mutex<std::collections::BTreeSet<String>>,
        std::sync::Condvar,
    )>,
    name: String,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        let (held, released) = &*self.locks;
        held.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.name);
        released.notify_all();
    }
}

impl MemStore {
    pub fn new(label: &str) -> MemStore {
        MemStore {
            label: label.to_string(),
            entries: Arc::default(),
            locks: Arc::default(),
            times: Arc::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn missing(&self, name: &str) -> Error {
        self.error(name, io::Error::from(io::ErrorKind::NotFound))
    }
}

impl BayStore for MemStore {
    fn describe(&self) -> String {
        format!("memory:{}", self.label)
    }

    fn lock(&self, name: &str) -> Result<Box<dyn Send>> {
        let (held, released) = &*self.locks;
        let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
        while held.contains(name) {
            held = released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.insert(name.to_string());
        drop(held);
        Ok(Box::new(MemLock {
            locks: self.locks.clone(),
            name: name.to_string(),
        }))
    }

    fn modified(&self, name: &str) -> Result<chrono::DateTime<chrono::Utc>> {
        check_name(&self.describe(), name)?;
        if !self.entries().contains_key(name) {
            return Err(self.missing(name));
        }
        let times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        // An entry renamed keeps no time of its own: the epoch (old).
        Ok(times.get(name).copied().unwrap_or_default())
    }

    fn list(&self) -> Result<Vec<String>> {
        Ok(self.entries().keys().cloned().collect())
    }

    fn exists(&self, name: &str) -> Result<bool> {
        check_name(&self.describe(), name)?;
        Ok(self.entries().contains_key(name))
    }

    fn size(&self, name: &str) -> Result<u64> {
        check_name(&self.describe(), name)?;
        self.entries()
            .get(name)
            .map(|data| data.len() as u64)
            .ok_or_else(|| self.missing(name))
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send + '_>> {
        check_name(&self.describe(), name)?;
        let data = self
            .entries()
            .get(name)
            .cloned()
            .ok_or_else(|| self.missing(name))?;
        Ok(Box::new(io::Cursor::new(data)))
    }

    fn write_from(&self, name: &str, reader: &mut dyn Read) -> Result<u64> {
        check_name(&self.describe(), name)?;
        let mut data = Vec::new();
        reader
            .read_to_end(&mut data)
            .map_err(|e| self.error(name, e))?;
        let written = data.len() as u64;
        self.entries().insert(name.to_string(), data);
        self.times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), chrono::Utc::now());
        Ok(written)
    }

    fn remove(&self, name: &str) -> Result<()> {
        check_name(&self.describe(), name)?;
        self.entries()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| self.missing(name))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        check_name(&self.describe(), from)?;
        check_name(&self.describe(), to)?;
        let mut entries = self.entries();
        let data = entries.remove(from).ok_or_else(|| self.missing(from))?;
        entries.insert(to.to_string(), data);
        Ok(())
    }
}

/// Set by a process that only reads bays ([`set_read_only`]).
static READ_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Declares that this process only reads bays (`lspacket`): an S3 bay is
/// then checked with a listing only, never with a probe write, so
/// credentials that may only list and read do; and nothing is swept
/// (expired partial uploads are left to the servers).
pub fn set_read_only() {
    READ_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// True once [`set_read_only`] was called.
pub fn read_only() -> bool {
    READ_ONLY.load(std::sync::atomic::Ordering::Relaxed)
}

/// One bay of a storage class: its directory (created if missing) or,
/// for a class on S3, its prefix. The first time a process opens an S3
/// bay it checks that the service honours conditional writes.
pub fn open_bay(class: &StorageClass, bay: Bay) -> Result<Box<dyn BayStore>> {
    let dir = || match bay {
        Bay::Outgoing => class.outgoing_dir(),
        Bay::Incoming => class.incoming_dir(),
        Bay::Return => class.return_dir(),
    };
    match &class.s3 {
        None => Ok(Box::new(DirStore::create(dir())?)),
        Some(s3) if bay == Bay::Return && s3.return_url.is_none() => {
            Ok(Box::new(DirStore::create(dir())?))
        }
        Some(s3) => open_s3_bay(s3, bay),
    }
}

#[cfg(feature = "s3")]
fn open_s3_bay(class: &crate::config::S3Class, bay: Bay) -> Result<Box<dyn BayStore>> {
    use crate::s3::{S3Options, S3Store, S3Url};
    let bad = |url: &str, message: String| Error::S3 {
        bay: url.to_string(),
        message,
    };
    let url = match bay {
        Bay::Return => class.return_url.clone().unwrap_or_default(),
        _ => class.storage_url.clone(),
    };
    let mut parsed = S3Url::parse(&url).map_err(|m| bad(&url, m))?;
    if bay != Bay::Return {
        parsed = parsed.join(bay.name());
    }
    if let Some(endpoint) = &class.endpoint {
        if endpoint.starts_with("http://") && !class.allow_http {
            return Err(Error::S3Access {
                bay: url.clone(),
                endpoint: endpoint.clone(),
                problem: "the endpoint is plain HTTP: credentials and packets would cross the \
                          network unencrypted"
                    .into(),
                hint: "use https://, or set allow_http = true in the class when the service \
                       is on this host or a trusted network"
                    .into(),
            });
        }
    }
    // One client (connection pool and runtime) per service and bucket for
    // the whole process, checked once for conditional writes; each bay is
    // a view of it.
    static CLIENTS: Mutex<Vec<(String, S3Store)>> = Mutex::new(Vec::new());
    let service = format!(
        "{:?} {:?} {} {:?} {:?} {}",
        class.endpoint,
        class.region,
        class.allow_http,
        class.profile,
        class.lease_seconds,
        parsed.bucket
    );
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, client)) = clients.iter().find(|(key, _)| *key == service) {
        return Ok(Box::new(client.sibling(&parsed)));
    }
    let options = S3Options {
        endpoint: class.endpoint.clone(),
        region: class.region.clone(),
        allow_http: class.allow_http,
        profile: class.profile.clone(),
        lease: class.lease_seconds.map(std::time::Duration::from_secs),
        credentials: None,
    };
    let store = S3Store::open(&parsed, &options)?;
    // A listing first: a wrong endpoint, bucket or credentials are said
    // plainly. A process that only reads bays (lspacket) writes no probe:
    // read-only credentials must do for it.
    store.check_readable()?;
    if !read_only() {
        store.check_conditional_writes()?;
    }
    clients.push((service, store.sibling(&parsed)));
    Ok(Box::new(store))
}

#[cfg(not(feature = "s3"))]
fn open_s3_bay(class: &crate::config::S3Class, _bay: Bay) -> Result<Box<dyn BayStore>> {
    Err(Error::S3 {
        bay: class.storage_url.clone(),
        message: "this program was built without S3 support; rebuild with the cargo feature \
                  `s3` (./install.sh --s3, or cargo install --locked --features s3 --path . in the source tree)"
            .into(),
    })
}

/// The storage class (its name) and the bay whose S3 prefix is `bay_url`
/// (`s3://BUCKET/PREFIX/outgoing`, `…/incoming`, or a class's
/// `return_bay`), if the configuration has one: how a packet named by its
/// `s3://` URL (as the expiry notification names it) is found.
pub fn s3_bay_named<'c>(
    config: &'c crate::config::ShippingConfig,
    bay_url: &str,
) -> Option<(&'c str, &'c StorageClass, Bay)> {
    let wanted = bay_url.trim_end_matches('/');
    for (class_name, class) in &config.classes {
        let Some(s3) = &class.s3 else { continue };
        let storage = s3.storage_url.trim_end_matches('/');
        for bay in [Bay::Outgoing, Bay::Incoming] {
            if format!("{storage}/{}", bay.name()) == wanted {
                return Some((class_name, class, bay));
            }
        }
        if s3
            .return_url
            .as_deref()
            .is_some_and(|url| url.trim_end_matches('/') == wanted)
        {
            return Some((class_name, class, Bay::Return));
        }
    }
    None
}

/// One of a storage class's three bays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bay {
    Outgoing,
    Incoming,
    Return,
}

impl Bay {
    pub const ALL: [Bay; 3] = [Bay::Outgoing, Bay::Incoming, Bay::Return];

    pub fn name(self) -> &'static str {
        match self {
            Bay::Outgoing => "outgoing",
            Bay::Incoming => "incoming",
            Bay::Return => "return",
        }
    }
}

/// A storage class's bays.
pub struct Bays {
    outgoing: Box<dyn BayStore>,
    incoming: Box<dyn BayStore>,
    returned: Box<dyn BayStore>,
}

impl Bays {
    pub fn new(
        outgoing: Box<dyn BayStore>,
        incoming: Box<dyn BayStore>,
        returned: Box<dyn BayStore>,
    ) -> Bays {
        Bays {
            outgoing,
            incoming,
            returned,
        }
    }

    /// The class's bays: directories, created if missing, or S3 prefixes.
    pub fn open(class: &StorageClass) -> Result<Bays> {
        Ok(Bays::new(
            open_bay(class, Bay::Outgoing)?,
            open_bay(class, Bay::Incoming)?,
            open_bay(class, Bay::Return)?,
        ))
    }

    /// Three empty in-memory bays labelled `LABEL/outgoing` and so on.
    pub fn in_memory(label: &str) -> Bays {
        let store = |bay: Bay| Box::new(MemStore::new(&format!("{label}/{}", bay.name())));
        Bays::new(
            store(Bay::Outgoing),
            store(Bay::Incoming),
            store(Bay::Return),
        )
    }

    pub fn get(&self, bay: Bay) -> &dyn BayStore {
        match bay {
            Bay::Outgoing => self.outgoing.as_ref(),
            Bay::Incoming => self.incoming.as_ref(),
            Bay::Return => self.returned.as_ref(),
        }
    }

    /// Moves entry `name` from one bay to another, keeping its name.
    pub fn move_entry(&self, from: Bay, to: Bay, name: &str) -> Result<()> {
        self.get(from).move_to(name, self.get(to), name)
    }
}
