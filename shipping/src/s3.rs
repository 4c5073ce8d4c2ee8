//! Storage bays on S3-compatible object storage (the `s3` feature).
//!
//! A bay is a key prefix in a bucket (`s3://bucket/prefix/outgoing/`), and
//! an entry is the object under it. The client is the `object_store`
//! crate, which is async: each [`S3Store`] keeps its own small tokio
//! runtime and blocks on it, so the rest of the crate stays synchronous.
//!
//! S3 has no rename and no locks; what it does have on the services we
//! support (AWS S3, Ceph RGW, MinIO, R2) is a conditional single PUT:
//! `If-None-Match: *` (create only) and `If-Match: ETAG` (compare and
//! swap). Locks are built on these ([`S3Store::take_lock`]): a lock is a small
//! object holding its holder and a lease expiry, created only if absent,
//! taken over only by a compare-and-swap on an expired lease, renewed by
//! compare-and-swap while held. A server that dies leaves a lease that
//! expires. Stores that ignore conditions (Garage) are refused when the
//! store is opened ([`S3Store::check_conditional_writes`]). FORMAT.md
//! tells the whole protocol.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use crate::bay::{check_name, BayStore};
use crate::error::{Error, Result};

/// Parts of a multipart upload: S3's smallest part is 5 MiB; 8 MiB parts
/// take a 2 GiB packet in 256 parts, well under the limit of 10,000.
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once: with the one being filled, an
/// upload holds at most `UPLOADS_IN_FLIGHT + 1` of the shared part
/// buffers ([`PART_BUFFERS`]).
pub const UPLOADS_IN_FLIGHT: usize = 2;
/// How long a lock is held without renewal before others may take it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Part buffers (each [`PART_SIZE`]) that every multipart upload of the
/// process shares: an upload holds one it is filling and the ones of its
/// parts in flight, and waits for one when all are taken. They are made
/// once and kept, so the memory of all uploads together stays at
/// `PART_BUFFERS * PART_SIZE` (32 MiB) whatever their number. (Buffers
/// allocated and freed by each upload's own thread were kept by the
/// allocator in that thread's arena: 50 concurrent 10 MiB uploads into an
/// S3 bay peaked at 288 MiB.)
pub const PART_BUFFERS: usize = 4;
/// Entries smaller than this go in one PUT from a buffer of their own:
/// orders, and small packets.
pub const SMALL_ENTRY: usize = 256 << 10;

struct PartPool {
    state: std::sync::Mutex<PoolState>,
    freed: std::sync::Condvar,
}

struct PoolState {
    free: Vec<Vec<u8>>,
    made: usize,
}

static PART_POOL: PartPool = PartPool {
    state: std::sync::Mutex::new(PoolState {
        free: Vec::new(),
        made: 0,
    }),
    freed: std::sync::Condvar::new(),
};

/// One buffer of the pool, holding a part's bytes (`len` of them);
/// given back when dropped (by the upload's task once the part is sent).
struct PartBuf {
    data: Vec<u8>,
    len: usize,
}

impl PartBuf {
    /// Takes a free buffer, making one while fewer than [`PART_BUFFERS`]
    /// exist, else waiting for one to be given back. Called on the
    /// writer's own thread, never on the runtime's.
    fn take() -> PartBuf {
        let mut state = PART_POOL.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(data) = state.free.pop() {
                return PartBuf { data, len: 0 };
            }
            if state.made < PART_BUFFERS {
                state.made += 1;
                drop(state);
                return PartBuf {
                    data: vec![0; PART_SIZE],
                    len: 0,
                };
            }
            state = PART_POOL
                .freed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Fills the buffer from `reader` up to its size or the reader's end;
    /// the bytes read.
    fn fill(&mut self, reader: &mut dyn Read) -> io::Result<usize> {
        let start = self.len;
        while self.len < self.data.len() {
            match reader.read(&mut self.data[self.len..]) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(self.len - start)
    }

    fn is_full(&self) -> bool {
        self.len == self.data.len()
    }

    fn into_payload(self) -> PutPayload {
        PutPayload::from(Bytes::from_owner(self))
    }
}

impl AsRef<[u8]> for PartBuf {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for PartBuf {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        if data.len() == PART_SIZE {
            let mut state = PART_POOL.state.lock().unwrap_or_else(|e| e.into_inner());
            state.free.push(data);
            drop(state);
            PART_POOL.freed.notify_one();
        }
    }
}

/// A bucket and key prefix: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://bucket` or `s3://bucket/prefix/...`.
    pub fn parse(text: &str) -> std::result::Result<S3Url, String> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{text:?} does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "{text:?}: bucket {bucket:?} is not a bucket name (3 to 63 of a-z, 0-9, '-', '.')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|s| s == "." || s == "..")
            || prefix.contains("//")
            || prefix.contains(['\\', '\0'])
        {
            return Err(format!(
                "{text:?}: the prefix has an empty, '.' or '..' part"
            ));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The URL one level down: `s3://bucket/prefix/name`.
    pub fn join(&self, name: &str) -> S3Url {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        };
        S3Url {
            bucket: self.bucket.clone(),
            prefix,
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach the service. Credentials are never here: they come from
/// the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`, profile
/// `AWS_PROFILE` or `default`), or the instance's metadata service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// `http(s)://host:port` of an S3-compatible service; AWS when absent
    /// (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region; else `AWS_REGION`, `AWS_DEFAULT_REGION`, then `us-east-1`.
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint (a service on the same host or LAN).
    pub allow_http: bool,
    /// Profile of the shared credentials file; else `AWS_PROFILE`.
    pub profile: Option<String>,
    /// Lease of a bay lock; [`DEFAULT_LEASE`] when absent.
    pub lease: Option<Duration>,
    /// Access key id and secret given by a program (tests); the
    /// configuration file never sets them.
    pub credentials: Option<(String, String)>,
}

/// One bay on S3: the objects under `url`'s prefix.
pub struct S3Store {
    url: S3Url,
    store: Arc<AmazonS3>,
    runtime: Arc<tokio::runtime::Runtime>,
    /// Ceph RGW compares `If-Match` with the ETag without its quotes;
    /// set once a quoted one failed and the bare one matched.
    bare_etags: Arc<AtomicBool>,
    /// How long a lock lives without renewal.
    lease: Duration,
    /// How the service is reached and who we are there, for messages.
    access: Arc<Access>,
}

/// The endpoint and the credentials' origin of a store, for messages that
/// tell what to fix.
#[derive(Debug)]
struct Access {
    /// `http(s)://host:port`, or `AWS S3` when no endpoint is set.
    endpoint: String,
    /// Where the credentials came from: the environment, a file and
    /// profile, the program, or the instance's metadata service.
    from: String,
    /// The access key id in use, when known.
    key_id: Option<String>,
}

/// Where credentials are looked for, said in messages about missing or
/// refused ones.
const CREDENTIALS_HELP: &str = "credentials come from the environment of the program \
     (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and AWS_SESSION_TOKEN for temporary ones; \
     for the systemd service, an EnvironmentFile= of its unit), else the shared credentials \
     file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials; profile = \"NAME\" in the \
     class or AWS_PROFILE picks its section); shipping.toml never holds them";

/// A version of an entry, for compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(UpdateVersion);

impl S3Store {
    /// Opens the bay at `url`. Nothing is sent yet.
    pub fn open(url: &S3Url, options: &S3Options) -> Result<S3Store> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-bay")
            .enable_all()
            .build()
            .map_err(|e| s3_config_error(url, format!("starting the S3 client's threads: {e}")))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
        if let Some(endpoint) = options
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        {
            builder = builder.with_endpoint(endpoint);
        }
        let region = options
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
        if let Some(region) = region {
            builder = builder.with_region(region);
        }
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        let mut access = Access {
            endpoint: endpoint.clone().unwrap_or_else(|| "AWS S3".into()),
            from: String::new(),
            key_id: None,
        };
        let env_key = std::env::var("AWS_ACCESS_KEY_ID").ok();
        if let Some((key, secret)) = &options.credentials {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
            access.from = "the program".into();
            access.key_id = Some(key.clone());
        } else if let Some(key) = env_key {
            if std::env::var_os("AWS_SECRET_ACCESS_KEY").is_none() {
                return Err(Error::S3Access {
                    bay: url.to_string(),
                    endpoint: access.endpoint,
                    problem: "AWS_ACCESS_KEY_ID is set in the environment but \
                              AWS_SECRET_ACCESS_KEY is not"
                        .into(),
                    hint: format!("set both, or neither; {CREDENTIALS_HELP}"),
                });
            }
            access.from = "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)".into();
            access.key_id = Some(key);
        } else {
            match shared_credentials(options.profile.as_deref())
                .map_err(|message| s3_config_error(url, message))?
            {
                Some((creds, origin)) => {
                    access.from = origin;
                    access.key_id = Some(creds.access_key_id.clone());
                    builder = builder
                        .with_access_key_id(creds.access_key_id)
                        .with_secret_access_key(creds.secret_access_key);
                    if let Some(token) = creds.session_token {
                        builder = builder.with_token(token);
                    }
                }
                // Only AWS itself has an instance metadata service (or a
                // container's or web identity's credentials): against
                // another service, asking it would only wait and fail.
                None if endpoint.is_some()
                    && [
                        "AWS_WEB_IDENTITY_TOKEN_FILE",
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    ]
                    .iter()
                    .all(|var| std::env::var_os(var).is_none()) =>
                {
                    return Err(Error::S3Access {
                        bay: url.to_string(),
                        endpoint: access.endpoint,
                        problem: "no credentials found".into(),
                        hint: CREDENTIALS_HELP.into(),
                    });
                }
                None => {
                    access.from = "the instance's metadata service (no AWS_ACCESS_KEY_ID in \
                                   the environment, no credentials file)"
                        .into();
                }
            }
        }
        let store = builder
            .with_allow_http(options.allow_http)
            .build()
            .map_err(|e| s3_config_error(url, e.to_string()))?;
        Ok(S3Store {
            url: url.clone(),
            store: Arc::new(store),
            runtime: Arc::new(runtime),
            bare_etags: Arc::default(),
            lease: options.lease.unwrap_or(DEFAULT_LEASE),
            access: Arc::new(access),
        })
    }

    /// The store of a sibling bay (`name` under this one's parent
    /// prefix is not meant: `url` is given whole), sharing the client
    /// and runtime.
    pub fn sibling(&self, url: &S3Url) -> S3Store {
        S3Store {
            url: url.clone(),
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            bare_etags: self.bare_etags.clone(),
            lease: self.lease,
            access: self.access.clone(),
        }
    }

    pub fn url(&self) -> &S3Url {
        &self.url
    }

    fn key(&self, name: &str) -> Result<ObjectPath> {
        // Lock and claim objects (`.lock*`, `.claim-*`) are ours too; only
        // user names are checked strictly.
        if !name.starts_with(".lock")
            && !name.starts_with(CLAIM_PREFIX)
            && !name.starts_with(crate::s3_partial::PARTIAL_PREFIX)
        {
            check_name(&self.describe(), name)?;
        }
        Ok(self.prefix_path().join(name))
    }

    fn prefix_path(&self) -> ObjectPath {
        ObjectPath::from(self.url.prefix.as_str())
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn err(&self, name: &str, err: object_store::Error) -> Error {
        if let Some(access) = self.diagnose(&err) {
            return access;
        }
        let kind = match &err {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            object_store::Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            _ => io::ErrorKind::Other,
        };
        self.error(name, io::Error::new(kind, err))
    }

    /// A clear error for a failure that comes from how the bay is
    /// configured or reached (endpoint, bucket, credentials) rather than
    /// from the entry at hand; None for other failures.
    fn diagnose(&self, err: &object_store::Error) -> Option<Error> {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(" / ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        let access = &self.access;
        let bucket = &self.url.bucket;
        let key_id = access.key_id.as_deref().unwrap_or("(unknown)");
        let (problem, hint) = if text.contains("<Code>NoSuchBucket</Code>") {
            (
                format!("the bucket {bucket} does not exist there"),
                format!(
                    "create it (for example aws s3 mb s3://{bucket} --endpoint-url {}), or correct \
                     the bucket in the class's storage_bay or return_bay",
                    access.endpoint
                ),
            )
        } else if text.contains("<Code>SignatureDoesNotMatch</Code>") {
            (
                format!(
                    "the service refused the credentials from {}: the secret key is not the one \
                     of access key id {key_id}",
                    access.from
                ),
                format!("correct the secret key; {CREDENTIALS_HELP}"),
            )
        } else if text.contains("<Code>InvalidAccessKeyId</Code>") {
            (
                format!(
                    "the service knows no access key id {key_id} (credentials from {})",
                    access.from
                ),
                format!(
                    "correct the access key id, or the endpoint if the key belongs to another \
                     service; {CREDENTIALS_HELP}"
                ),
            )
        } else if text.contains("<Code>AccessDenied</Code>") {
            let what = if text.contains("performing PUT") || text.contains("performing POST") {
                "write"
            } else if text.contains("performing DELETE") {
                "delete"
            } else {
                "read"
            };
            (
                format!(
                    "access key id {key_id} (credentials from {}) is not allowed to {what} in \
                     bucket {bucket}",
                    access.from
                ),
                "give that user read and write access to the bucket (lspacket needs only list \
                 and read)"
                    .into(),
            )
        } else if text.contains("169.254.169.254") {
            (
                "no credentials found (the instance metadata service, asked last, did not \
                 give any)"
                    .into(),
                CREDENTIALS_HELP.into(),
            )
        } else if text.contains("error sending request") || text.contains("Connection refused") {
            let why = if text.contains("Connection refused") {
                "connection refused"
            } else if text.contains("dns error") || text.contains("lookup address") {
                "host name not found"
            } else if text.contains("timed out") {
                "timed out"
            } else {
                "no answer"
            };
            (
                format!("cannot reach the service ({why})"),
                "check endpoint in the class (scheme, host and port) and that the S3 service \
                 runs there and is reachable from this host"
                    .into(),
            )
        } else {
            return None;
        };
        Some(Error::S3Access {
            bay: self.url.to_string(),
            endpoint: access.endpoint.clone(),
            problem,
            hint,
        })
    }

    /// Checks that the bay can be read as configured: one listing of its
    /// prefix, which fails clearly on a wrong endpoint, a missing bucket
    /// or wrong credentials. Writes nothing (read-only credentials pass).
    pub fn check_readable(&self) -> Result<()> {
        let prefix = self.prefix_path();
        self.block_on(self.store.list_with_delimiter(Some(&prefix)))
            .map(|_| ())
            .map_err(|e| self.err("", e))
    }

    /// How long a lock or claim of this store lives without renewal.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The entries whose names start with `start`, hidden ones (`.…`)
    /// included, with their sizes and times, sorted by name.
    pub fn list_starting(
        &self,
        start: &str,
    ) -> Result<Vec<(String, u64, chrono::DateTime<chrono::Utc>)>> {
        let prefix = self.prefix_path();
        let listed = self.block_on(self.store.list_with_delimiter(Some(&prefix)));
        let listed = listed.map_err(|e| self.err("", e))?;
        let mut found: Vec<_> = listed
            .objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                name.starts_with(start)
                    .then_some((name, meta.size, meta.last_modified))
            })
            .collect();
        found.sort();
        Ok(found)
    }

    /// Deletes entry `name`; an entry already gone is no error.
    pub fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name)?;
        match self.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.err(name, err)),
        }
    }

    /// Waits for one part of a multipart upload to be stored.
    fn join_part(
        &self,
        name: &str,
        sent: tokio::task::JoinHandle<object_store::Result<()>>,
    ) -> Result<()> {
        match self.block_on(sent) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.err(name, err)),
            Err(join) => Err(self.error(name, io::Error::other(join))),
        }
    }

    /// Writes `data` as entry `name` only if there is none; false when
    /// there already was one (nothing changed).
    pub fn create_new(&self, name: &str, data: &[u8]) -> Result<bool> {
        let key = self.key(name)?;
        let payload = PutPayload::from(Bytes::copy_from_slice(data));
        let put = self
            .store
            .put_opts(&key, payload, PutOptions::from(PutMode::Create));
        match self.block_on(put) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(err) => Err(self.err(name, err)),
        }
    }

    /// The entry's content with its version, or None when it is absent.
    pub fn read_versioned(&self, name: &str) -> Result<Option<(Vec<u8>, Version)>> {
        let key = self.key(name)?;
        let got = self.block_on(async {
            let got = self.store.get(&key).await?;
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let bytes = got.bytes().await?;
            Ok::<_, object_store::Error>((bytes.to_vec(), Version(version)))
        });
        match got {
            Ok(got) => Ok(Some(got)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(self.err(name, err)),
        }
    }

    /// Replaces entry `name` with `data` only if it is still at
    /// `version`; false when it changed meanwhile (nothing written).
    pub fn replace_if(&self, name: &str, data: &[u8], version: &Version) -> Result<bool> {
        let key = self.key(name)?;
        let attempt = |version: UpdateVersion| {
            let payload = PutPayload::from(Bytes::copy_from_slice(data));
            self.block_on(self.store.put_opts(
                &key,
                payload,
                PutOptions::from(PutMode::Update(version)),
            ))
        };
        let bare = |v: &UpdateVersion| UpdateVersion {
            e_tag: v.e_tag.as_ref().map(|t| t.trim_matches('"').to_string()),
            version: v.version.clone(),
        };
        let first = if self.bare_etags.load(Ordering::Relaxed) {
            bare(&version.0)
        } else {
            version.0.clone()
        };
        match attempt(first) {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. }) => {
                let quoted = version
                    .0
                    .e_tag
                    .as_deref()
                    .is_some_and(|t| t.starts_with('"'));
                if self.bare_etags.load(Ordering::Relaxed) || !quoted {
                    return Ok(false);
                }
                // Ceph RGW matches If-Match against the bare ETag only:
                // try that form once, and keep it if it works.
                match attempt(bare(&version.0)) {
                    Ok(_) => {
                        self.bare_etags.store(true, Ordering::Relaxed);
                        Ok(true)
                    }
                    Err(object_store::Error::Precondition { .. }) => Ok(false),
                    Err(err) => Err(self.err(name, err)),
                }
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(self.err(name, err)),
        }
    }

    /// Every key under the bay's prefix, relative to it, sorted: entries,
    /// lock objects and anything deeper (for checks and clean-up).
    pub fn list_all_keys(&self) -> Result<Vec<String>> {
        let prefix = self.prefix_path();
        let listed: Vec<_> = self.block_on(self.store.list(Some(&prefix)).collect::<Vec<_>>());
        let mut names = Vec::new();
        for meta in listed {
            let meta = meta.map_err(|e| self.err("", e))?;
            let key = meta.location.as_ref();
            let relative = key
                .strip_prefix(prefix.as_ref())
                .unwrap_or(key)
                .trim_start_matches('/');
            names.push(relative.to_string());
        }
        names.sort();
        Ok(names)
    }

    /// Refuses a service that ignores conditional writes (Garage does): on
    /// such a service two servers could both believe they hold a lock or
    /// created an order. Two create-only PUTs of one fresh probe key must
    /// not both succeed, and a compare-and-swap against a stale version
    /// must fail.
    pub fn check_conditional_writes(&self) -> Result<()> {
        let probe = format!(".lock-probe-{}", unique_id());
        let first = self.create_new(&probe, b"1")?;
        let second = self.create_new(&probe, b"2")?;
        let stale = match self.read_versioned(&probe)? {
            Some((_, version)) => {
                self.replace_if(&probe, b"3", &version)?;
                self.replace_if(&probe, b"4", &version)?
            }
            None => true,
        };
        let key = self.key(&probe)?;
        let _ = self.block_on(self.store.delete(&key));
        if !first || second || stale {
            return Err(s3_config_error(
                &self.url,
                "the service ignores conditional writes (If-None-Match / If-Match on PUT): \
                 several shipping servers could deliver one packet twice, so it cannot hold a bay; \
                 use a service that honours them (AWS S3, Ceph RGW, MinIO, Cloudflare R2)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Takes the lock `name` (a lease object in the bay), waiting while
    /// another holder's lease runs; the guard renews it every third of
    /// `lease` and removes it when dropped.
    pub fn take_lock(&self, name: &str, lease: Duration) -> Result<S3Lock> {
        let mut wait = Duration::from_millis(20);
        loop {
            if let Some(lock) = self.try_lock(name, lease)? {
                return Ok(lock);
            }
            std::thread::sleep(wait);
            // Short holds (.lock-entries) are the common case: look again
            // soon, but not more than four times a second.
            wait = (wait * 2).min(Duration::from_millis(250));
        }
    }

    /// Takes the lock or claim `name` if it is free or its holder's lease
    /// has run out; None, at once, when another holder's lease runs. Of
    /// racing takers exactly one gets it (create-only PUT, or
    /// compare-and-swap on the expired lease object).
    pub fn try_lock(&self, name: &str, lease: Duration) -> Result<Option<S3Lock>> {
        let holder = format!("{}:{}", hostname(), unique_id());
        // The renewals are scheduled from the moment the expiry written
        // was reckoned, not from when taking the lock ended.
        let reckoned = std::time::Instant::now();
        let body = lease_body(&holder, lease);
        let mut taken = self.create_new(name, body.as_bytes())?;
        if !taken {
            match self.read_versioned(name)? {
                // Released meanwhile: one more create-only attempt.
                None => taken = self.create_new(name, body.as_bytes())?,
                Some((data, version)) => {
                    let expired = parse_lease(&data).is_none_or(|(_, until)| until < now_secs());
                    taken = expired && self.replace_if(name, body.as_bytes(), &version)?;
                }
            }
        }
        let expires = parse_lease(body.as_bytes()).map_or(0, |(_, until)| until);
        Ok(taken.then(|| {
            S3Lock::start(
                self.sibling(&self.url),
                name,
                holder,
                lease,
                expires,
                reckoned,
            )
        }))
    }

    /// Removes claim `name` if its lease ran out and `order` (the order
    /// it claimed) is gone: the claim of a server that died after its
    /// order was done. Returns its holder when removed. S3 cannot delete
    /// conditionally: the claim is read, the order looked for, then the
    /// claim deleted; a server that takes over the name in that moment
    /// (a new order of the same packet) finds its claim gone at its next
    /// renewal and stops, as on any lost claim, so nothing is delivered
    /// twice.
    pub fn remove_dead_claim(&self, name: &str, order: &str) -> Result<Option<String>> {
        let Some((holder, until)) = self.lease_holder(name)? else {
            return Ok(None);
        };
        if until >= now_secs() || self.exists(order)? {
            return Ok(None);
        }
        self.delete(name)?;
        Ok(Some(holder))
    }

    /// Who holds the lock or claim `name` and until when (Unix seconds),
    /// if anyone does.
    pub fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        Ok(self
            .read_versioned(name)?
            .and_then(|(data, _)| parse_lease(&data)))
    }
}

/// The claim object of the order of `packet` in its bay.
pub fn claim_name(packet: &str) -> String {
    format!("{CLAIM_PREFIX}{packet}")
}

/// Claim objects' names start with this (then the packet's name).
pub const CLAIM_PREFIX: &str = ".claim-";

/// A held lock or order claim; renewed in the background, released on
/// drop.
pub struct S3Lock {
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    lost: Arc<AtomicBool>,
    /// The expiry (Unix seconds) last written by this holder.
    expires: Arc<AtomicI64>,
}

impl S3Lock {
    /// Starts renewing the lock `name` just taken by `holder`: `expires`
    /// is the expiry (Unix seconds) the lease object holds, reckoned at
    /// `reckoned`.
    fn start(
        store: S3Store,
        name: &str,
        holder: String,
        lease: Duration,
        expires: i64,
        reckoned: std::time::Instant,
    ) -> S3Lock {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let lost = Arc::new(AtomicBool::new(false));
        let expires = Arc::new(AtomicI64::new(expires));
        let (lost2, expires2) = (lost.clone(), expires.clone());
        let name = name.to_string();
        let renewer = std::thread::spawn(move || {
            // Renewed every third of the lease until the lock is dropped
            // (then released below, if it is still ours). The rounds keep
            // to a schedule counted from the expiry first written: a slow
            // answer from the service does not push the later renewals
            // back by its delay. A round that starts late (the one before
            // overran) sets the next a whole period on, not at once.
            let period = lease / 3;
            let mut next = reckoned + period;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(next.saturating_duration_since(std::time::Instant::now()))
            {
                let now = std::time::Instant::now();
                next += period;
                if next < now {
                    next = now + period;
                }
                if lost2.load(Ordering::Relaxed) {
                    continue;
                }
                let body = lease_body(&holder, lease);
                match store.read_versioned(&name) {
                    Ok(Some((data, version)))
                        if parse_lease(&data).is_some_and(|(h, _)| h == holder) =>
                    {
                        match store.replace_if(&name, body.as_bytes(), &version) {
                            Ok(true) => {
                                let until = parse_lease(body.as_bytes()).map_or(0, |(_, t)| t);
                                expires2.store(until, Ordering::Relaxed);
                            }
                            // Changed between the read and the write: by
                            // a server that took it over.
                            Ok(false) => lost2.store(true, Ordering::Relaxed),
                            // The service did not answer: tried again at
                            // the next round; `held` turns false when the
                            // lease runs out meanwhile.
                            Err(_) => {}
                        }
                    }
                    // Gone, or another holder's: taken over.
                    Ok(_) => lost2.store(true, Ordering::Relaxed),
                    Err(_) => {}
                }
            }
            // S3 (and RGW) cannot delete conditionally: delete only after
            // seeing the lease is still ours. A holder whose lease expired
            // while it slept may remove a successor's lock in the moment
            // between; leases are long against that moment.
            if let Ok(Some((data, _))) = store.read_versioned(&name) {
                if parse_lease(&data).is_some_and(|(h, _)| h == holder) {
                    if let Ok(key) = store.key(&name) {
                        let _ = store.block_on(store.store.delete(&key));
                    }
                }
            }
        });
        S3Lock {
            stop: Some(stop),
            renewer: Some(renewer),
            lost,
            expires,
        }
    }

    /// True when a renewal found the lock taken over (this holder was
    /// stalled past its lease).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// True while the lock is this holder's: not found taken over, and
    /// the lease it last wrote has not run out (a holder whose renewals
    /// fail, or that was stalled, stops counting on it before another
    /// server may take it over).
    pub fn held(&self) -> bool {
        !self.lost() && now_secs() < self.expires.load(Ordering::Relaxed)
    }
}

impl crate::bay::OrderClaim for S3Lock {
    fn held(&self) -> bool {
        S3Lock::held(self)
    }

    fn lost(&self) -> bool {
        S3Lock::lost(self)
    }
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
    }
}

fn lease_body(holder: &str, lease: Duration) -> String {
    format!(
        "holder = {holder:?}\nexpires = {}\n",
        now_secs() + lease.as_secs().max(1) as i64
    )
}

/// (holder, expiry in Unix seconds) of a lease object.
fn parse_lease(data: &[u8]) -> Option<(String, i64)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut holder = None;
    let mut expires = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("holder = ") {
            holder = Some(value.trim_matches('"').to_string());
        } else if let Some(value) = line.strip_prefix("expires = ") {
            expires = value.trim().parse().ok();
        }
    }
    Some((holder?, expires?))
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// A name no other writer uses: process id, time and a counter.
pub fn unique_id() -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn s3_config_error(url: &S3Url, message: String) -> Error {
    Error::S3 {
        bay: url.to_string(),
        message,
    }
}

struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// The profile's keys from the shared credentials file, with words
/// naming the file and profile, if it has them.
fn shared_credentials(
    profile: Option<&str>,
) -> std::result::Result<Option<(Credentials, String)>, String> {
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(path) => std::path::PathBuf::from(path),
        None => match directories::BaseDirs::new() {
            Some(dirs) => dirs.home_dir().join(".aws/credentials"),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("reading {}: {err}", path.display())),
    };
    let profile = profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let mut section = String::new();
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    match (key, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some((
            Credentials {
                access_key_id,
                secret_access_key,
                session_token: token,
            },
            format!("{}, profile {profile}", path.display()),
        ))),
        _ => Ok(None),
    }
}

impl BayStore for S3Store {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn list(&self) -> Result<Vec<String>> {
        let prefix = self.prefix_path();
        let listed = self.block_on(self.store.list_with_delimiter(Some(&prefix)));
        let listed = listed.map_err(|e| self.err("", e))?;
        let mut names: Vec<String> = listed
            .objects
            .into_iter()
            .filter_map(|meta| meta.location.filename().map(str::to_string))
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    fn exists(&self, name: &str) -> Result<bool> {
        let key = self.key(name)?;
        match self.block_on(self.store.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(self.err(name, err)),
        }
    }

    fn modified(&self, name: &str) -> Result<chrono::DateTime<chrono::Utc>> {
        let key = self.key(name)?;
        self.block_on(self.store.head(&key))
            .map(|meta| meta.last_modified)
            .map_err(|e| self.err(name, e))
    }

    fn size(&self, name: &str) -> Result<u64> {
        let key = self.key(name)?;
        self.block_on(self.store.head(&key))
            .map(|meta| meta.size)
            .map_err(|e| self.err(name, e))
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send + '_>> {
        let key = self.key(name)?;
        let got = self
            .block_on(self.store.get(&key))
            .map_err(|e| self.err(name, e))?;
        Ok(Box::new(StreamReader {
            store: self,
            stream: got.into_stream(),
            chunk: Bytes::new(),
        }))
    }

    fn write_from(&self, name: &str, reader: &mut dyn Read) -> Result<u64> {
        let key = self.key(name)?;
        // A small entry (an order, a small packet) goes in one PUT from a
        // buffer of its own; a larger one through the shared part buffers
        // (PART_BUFFERS): in one PUT up to PART_SIZE, else in parts, so
        // memory stays bounded whatever the size and number of writes.
        let mut small = Vec::new();
        let read = Read::take(&mut *reader, SMALL_ENTRY as u64)
            .read_to_end(&mut small)
            .map_err(|e| self.error(name, e))?;
        if read < SMALL_ENTRY {
            self.block_on(self.store.put(&key, PutPayload::from(small)))
                .map_err(|e| self.err(name, e))?;
            return Ok(read as u64);
        }
        let mut part = PartBuf::take();
        part.data[..read].copy_from_slice(&small);
        part.len = read;
        drop(small);
        part.fill(reader).map_err(|e| self.error(name, e))?;
        if !part.is_full() {
            let written = part.len as u64;
            self.block_on(self.store.put(&key, part.into_payload()))
                .map_err(|e| self.err(name, e))?;
            return Ok(written);
        }
        let mut upload = self
            .block_on(self.store.put_multipart(&key))
            .map_err(|e| self.err(name, e))?;
        let mut in_flight = std::collections::VecDeque::new();
        let mut written = 0u64;
        let outcome: Result<()> = loop {
            written += part.len as u64;
            let last = !part.is_full();
            // Each part is sent by a task of the runtime; its buffer goes
            // back to the pool once the part is stored.
            in_flight.push_back(self.runtime.spawn(upload.put_part(part.into_payload())));
            if last {
                break Ok(());
            }
            if in_flight.len() >= UPLOADS_IN_FLIGHT {
                let sent = in_flight.pop_front().expect("a part in flight");
                if let Err(err) = self.join_part(name, sent) {
                    break Err(err);
                }
            }
            part = PartBuf::take();
            match part.fill(reader) {
                // The end fell on a part's boundary.
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(err) => break Err(self.error(name, err)),
            }
        };
        let outcome = outcome.and_then(|()| {
            while let Some(sent) = in_flight.pop_front() {
                self.join_part(name, sent)?;
            }
            self.block_on(upload.complete())
                .map_err(|e| self.err(name, e))
                .map(|_| ())
        });
        match outcome {
            Ok(()) => Ok(written),
            Err(err) => {
                // Nothing becomes visible: the parts are dropped.
                for sent in in_flight {
                    sent.abort();
                }
                let _ = self.block_on(upload.abort());
                Err(err)
            }
        }
    }

    fn remove(&self, name: &str) -> Result<()> {
        let key = self.key(name)?;
        // S3 deletes of a missing key succeed; callers expect NotFound.
        self.block_on(self.store.head(&key))
            .map_err(|e| self.err(name, e))?;
        self.block_on(self.store.delete(&key))
            .map_err(|e| self.err(name, e))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        // S3 has no rename: a server-side copy (the target appears whole),
        // then the source is deleted.
        let source = self.key(from)?;
        let target = self.key(to)?;
        self.block_on(self.store.copy(&source, &target))
            .map_err(|e| self.err(from, e))?;
        self.block_on(self.store.delete(&source))
            .map_err(|e| self.err(from, e))
    }

    fn s3(&self) -> Option<&S3Store> {
        Some(self)
    }

    fn lock(&self, name: &str) -> Result<Box<dyn Send>> {
        Ok(Box::new(self.take_lock(name, self.lease)?))
    }

    fn claims_orders(&self) -> bool {
        true
    }

    fn claim_order(&self, packet: &str) -> Result<Option<Box<dyn crate::bay::OrderClaim>>> {
        check_name(&self.describe(), packet)?;
        Ok(self
            .try_lock(&claim_name(packet), self.lease)?
            .map(|claim| Box::new(claim) as Box<dyn crate::bay::OrderClaim>))
    }
}

/// Blocking reads over an object's byte stream; holds one chunk at a time.
struct StreamReader<'a> {
    store: &'a S3Store,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for StreamReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.store.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(err)) => return Err(io::Error::other(err)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = S3Url::parse("s3://bays/hub/default/").unwrap();
        assert_eq!(url.bucket, "bays");
        assert_eq!(url.prefix, "hub/default");
        assert_eq!(
            url.join("outgoing").to_string(),
            "s3://bays/hub/default/outgoing"
        );
        assert_eq!(S3Url::parse("s3://bays").unwrap().prefix, "");
        for bad in [
            "/srv/bays",
            "s3://",
            "s3://B/x",
            "s3://bays/a/../b",
            "s3://bays/a//b",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leases_round_trip() {
        let body = lease_body("host:1-2-3", Duration::from_secs(60));
        let (holder, until) = parse_lease(body.as_bytes()).unwrap();
        assert_eq!(holder, "host:1-2-3");
        assert!(until > now_secs() + 50);
        assert_eq!(parse_lease(b"junk"), None);
    }
}
