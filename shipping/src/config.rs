//! The shipping configuration, `shipping.toml`: storage classes and their
//! bays, routes, destinations, the replicas received here, trusted keys and
//! the server's settings. It plays the part of MultiSite's `shipping.conf`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::error::{Error, Result};
use crate::toml_config::{self, line_of, TomlError};
use crate::DEFAULT_STORAGE_CLASS;

/// Environment variable naming the configuration file.
pub const CONF_ENV: &str = "SYNCREPLICA_SHIPPING_CONF";
/// File name looked for in the user's and the system's config directories.
pub const CONF_FILE_NAME: &str = "shipping.toml";
/// System-wide configuration directory.
pub const SYSTEM_CONF_DIR: &str = "/etc/syncreplica";
/// Seconds a connection may stay silent, when `idle_timeout` is not set.
pub const DEFAULT_IDLE_TIMEOUT: u64 = 300;
/// Seconds a connection has to send its whole request head, when
/// `head_timeout` is not set.
pub const DEFAULT_HEAD_TIMEOUT: u64 = 10;
/// Connections one peer address may have open at once, when
/// `max_connections_per_peer` is not set.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: u64 = 8;
/// Days an order lives before it expires, when a class does not say.
pub const DEFAULT_EXPIRY_DAYS: u32 = 14;

/// A commented example of every setting; it parses (see the tests), and
/// the man page quotes it.
pub const EXAMPLE_SHIPPING_TOML: &str = r#"# syncreplica shipping configuration (shipping.toml).

# Address the shipping server listens on for packets sent over HTTP.
listen = "0.0.0.0:7421"

# Refuse to receive a packet when less than this would stay free in the
# bay (k, m and g suffixes; a plain number is bytes).
min_free_space = "1g"

# Refuse packets larger than this over HTTP (default 2g, the largest part
# the packet format allows).
max_packet_size = "200m"

# Drop a connection that sends nothing for this many seconds (default 300),
# so that peers vanishing mid-upload do not tie up the server.
idle_timeout = 300

# Drop a connection that has not sent its whole request head within this
# many seconds (default 10): a client trickling its head cannot hold on.
head_timeout = 10

# Connections one peer address may have open at once (default 8); more
# are answered 429.
max_connections_per_peer = 8

# Program run to tell an administrator about expired and returned packets.
notify = "/usr/local/bin/syncreplica-notify"

# Replicas whose packets are received on this host: their packets stay in
# the incoming bay instead of being forwarded.
local_replicas = ["boston"]

# Packets are accepted for relay or receipt only when signed by one of
# these ed25519 public keys (64 hex digits) or by a member of one of these
# replicas' families.
trusted_keys = ["3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"]
trusted_replicas = ["/srv/projects"]

# Hop for destinations that have neither a route nor an entry of their own.
default_route = "hub"

# Storage classes. Each has a storage bay (holding outgoing/ and incoming/)
# and a return bay for expired packets. The class "default" always exists;
# without an entry it lives under the user's data directory.
[classes.default]
storage_bay = "/var/spool/syncreplica/default"
return_bay = "/var/spool/syncreplica/default/return"
expiry_days = 14

# Routes: next hop = [destinations reached through it], like MultiSite's
# ROUTE next-hop destination... Destinations with no route go straight to
# their own entry below, or through default_route when they have none.
[routes]
hub = ["ship", "lab"]

# How to reach a destination or a hop: an HTTP shipping server, or a
# directory (a USB stick, a shared folder).
[destinations.hub]
url = "http://hub.example.org:7421"
# A paid link: at most 2 MiB a second (k, m and g suffixes), and only from
# 22:00 to 06:00 local time ("HH:MM-HH:MM UTC" for UTC). A transfer still
# running when the window closes is cut there and resumes where it stopped
# in the next window.
max_rate = "2m"
hours = "22:00-06:00"

[destinations.usb]
dir = "/media/usb"
"#;

/// One storage class: where its packets wait and where expired ones return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageClass {
    /// Holds `outgoing/` and `incoming/`.
    pub storage_bay: PathBuf,
    /// Expired packets come back here.
    pub return_bay: PathBuf,
    /// Days from an order's creation to its expiry.
    pub expiry_days: u32,
    /// Set when the bays are on S3 (`storage_bay = "s3://..."`); then
    /// `storage_bay` and `return_bay` are not used as directories unless
    /// `return_bay` is a directory ([`S3Class::return_url`] None).
    pub s3: Option<S3Class>,
}

/// Where an S3 storage class's bays are and how to reach the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Class {
    /// `s3://bucket/prefix`: `outgoing/` and `incoming/` are under it.
    pub storage_url: String,
    /// `s3://bucket/prefix` of the return bay, or None when `return_bay`
    /// is a directory.
    pub return_url: Option<String>,
    /// `http(s)://host:port` of an S3-compatible service (AWS without).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// A plain-HTTP endpoint is accepted only when this is set.
    pub allow_http: bool,
    /// Profile of the shared AWS credentials file.
    pub profile: Option<String>,
    /// Seconds a bay lock lives without renewal.
    pub lease_seconds: Option<u64>,
}

impl StorageClass {
    /// A class whose bays all live under `root`: `outgoing/`, `incoming/`
    /// and `return/`.
    pub fn under(root: &Path) -> StorageClass {
        StorageClass {
            storage_bay: root.to_path_buf(),
            return_bay: root.join("return"),
            expiry_days: DEFAULT_EXPIRY_DAYS,
            s3: None,
        }
    }

    pub fn outgoing_dir(&self) -> PathBuf {
        self.storage_bay.join("outgoing")
    }

    pub fn incoming_dir(&self) -> PathBuf {
        self.storage_bay.join("incoming")
    }

    pub fn return_dir(&self) -> PathBuf {
        self.return_bay.clone()
    }
}

/// How to reach a destination or a hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// A shipping server, `http://host:port`.
    Url(String),
    /// A directory packets are copied into.
    Dir(PathBuf),
}

/// The entry a destination's packets go to next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// The `destinations` entry used: the destination itself or a hop.
    pub name: String,
    pub hop: Hop,
}

/// An ed25519 public key, stored as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustedKey(String);

impl TrustedKey {
    pub fn parse(text: &str) -> Result<TrustedKey, String> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{text:?} is not an ed25519 public key: expected 64 hex digits"
            ));
        }
        Ok(TrustedKey(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&self.0, &mut bytes).expect("validated when parsed");
        bytes
    }
}

impl fmt::Display for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The whole shipping configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShippingConfig {
    pub classes: BTreeMap<String, StorageClass>,
    /// Next hop -> the destinations reached through it.
    pub routes: BTreeMap<String, Vec<String>>,
    /// Hop for destinations with neither a route nor an entry.
    pub default_route: Option<String>,
    pub destinations: BTreeMap<String, Hop>,
    /// Limits of the `destinations` entries that set `max_rate` or
    /// `hours`, by entry name.
    pub links: BTreeMap<String, crate::link::Link>,
    pub local_replicas: Vec<String>,
    pub trusted_keys: Vec<TrustedKey>,
    /// Replica roots whose family members' keys are trusted.
    pub trusted_replicas: Vec<PathBuf>,
    /// Bytes that must stay free in a bay after receiving a packet.
    pub min_free_space: Option<u64>,
    /// Largest packet received over HTTP.
    pub max_packet_size: Option<u64>,
    /// Seconds a connection may stay silent before the server drops it.
    pub idle_timeout: Option<u64>,
    /// Seconds a connection has to send its whole request head.
    pub head_timeout: Option<u64>,
    /// Connections one peer address may have open at once.
    pub max_connections_per_peer: Option<u64>,
    /// Command run to notify an administrator.
    pub notify: Option<String>,
    pub listen: Option<SocketAddr>,
}

/// Where the configuration in effect came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Given on the command line (`-shipconf PATH`).
    Explicit(PathBuf),
    /// Named by `SYNCREPLICA_SHIPPING_CONF`.
    Environment(PathBuf),
    /// The user's config directory.
    User(PathBuf),
    /// `/etc/syncreplica/shipping.toml`.
    System(PathBuf),
    /// No file: the built-in default.
    Embedded,
}

impl ConfigSource {
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Explicit(p)
            | ConfigSource::Environment(p)
            | ConfigSource::User(p)
            | ConfigSource::System(p) => Some(p),
            ConfigSource::Embedded => None,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Explicit(p) => write!(f, "{} (-shipconf)", p.display()),
            ConfigSource::Environment(p) => write!(f, "{} ({CONF_ENV})", p.display()),
            ConfigSource::User(p) => write!(f, "{} (user)", p.display()),
            ConfigSource::System(p) => write!(f, "{} (system)", p.display()),
            ConfigSource::Embedded => f.write_str("built-in default"),
        }
    }
}

/// The places a configuration is looked for, so tests can point them at
/// temporary directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// `-shipconf PATH`: must exist.
    pub explicit: Option<PathBuf>,
    /// The value of `SYNCREPLICA_SHIPPING_CONF`: must exist when set.
    pub env_value: Option<OsString>,
    /// Holds `shipping.toml` if the user has one.
    pub user_config_dir: Option<PathBuf>,
    /// Holds `shipping.toml` if the system has one.
    pub system_dir: Option<PathBuf>,
    /// The user's data directory: the default class's bays live in
    /// `bays/default/` under it.
    pub data_dir: Option<PathBuf>,
}

impl Lookup {
    /// The real places: the environment variable, the user's directories
    /// (`directories::ProjectDirs`) and `/etc/syncreplica`.
    pub fn from_environment(explicit: Option<&Path>) -> Lookup {
        let dirs = directories::ProjectDirs::from("", "", "syncreplica");
        Lookup {
            explicit: explicit.map(Path::to_path_buf),
            env_value: std::env::var_os(CONF_ENV),
            user_config_dir: dirs.as_ref().map(|d| d.config_dir().to_path_buf()),
            system_dir: Some(PathBuf::from(SYSTEM_CONF_DIR)),
            data_dir: dirs.as_ref().map(|d| d.data_dir().to_path_buf()),
        }
    }
}

impl ShippingConfig {
    /// Finds and reads the configuration: `explicit`, then
    /// `SYNCREPLICA_SHIPPING_CONF`, then the user's config directory, then
    /// `/etc/syncreplica/shipping.toml`, else the built-in default.
    pub fn load(explicit: Option<&Path>) -> Result<(ShippingConfig, ConfigSource)> {
        ShippingConfig::load_with(&Lookup::from_environment(explicit))
    }

    /// `load` with the places given.
    pub fn load_with(lookup: &Lookup) -> Result<(ShippingConfig, ConfigSource)> {
        let data_dir = lookup.data_dir.as_deref();
        if let Some(path) = &lookup.explicit {
            let config = ShippingConfig::read(path, "given with -shipconf", data_dir)?;
            return Ok((config, ConfigSource::Explicit(path.clone())));
        }
        if let Some(value) = lookup.env_value.as_ref().filter(|v| !v.is_empty()) {
            let path = PathBuf::from(value);
            let config =
                ShippingConfig::read(&path, "named by SYNCREPLICA_SHIPPING_CONF", data_dir)?;
            return Ok((config, ConfigSource::Environment(path)));
        }
        if let Some(dir) = &lookup.user_config_dir {
            let path = dir.join(CONF_FILE_NAME);
            if let Some(config) = ShippingConfig::read_if_present(&path, data_dir)? {
                return Ok((config, ConfigSource::User(path)));
            }
        }
        if let Some(dir) = &lookup.system_dir {
            let path = dir.join(CONF_FILE_NAME);
            if let Some(config) = ShippingConfig::read_if_present(&path, data_dir)? {
                return Ok((config, ConfigSource::System(path)));
            }
        }
        let data_dir = data_dir.ok_or(Error::NoDataDir)?;
        Ok((ShippingConfig::embedded(data_dir), ConfigSource::Embedded))
    }

    /// The built-in default: one class, `default`, with its bays in
    /// `DATA_DIR/bays/default/{outgoing,incoming,return}`.
    pub fn embedded(data_dir: &Path) -> ShippingConfig {
        let mut config = ShippingConfig::default();
        config
            .classes
            .insert(DEFAULT_STORAGE_CLASS.to_string(), default_class(data_dir));
        config
    }

    fn read(path: &Path, origin: &'static str, data_dir: Option<&Path>) -> Result<ShippingConfig> {
        match ShippingConfig::read_if_present(path, data_dir)? {
            Some(config) => Ok(config),
            None => Err(Error::ConfigMissing {
                path: path.to_path_buf(),
                origin,
            }),
        }
    }

    fn read_if_present(path: &Path, data_dir: Option<&Path>) -> Result<Option<ShippingConfig>> {
        match std::fs::read_to_string(path) {
            Ok(text) => ShippingConfig::parse(&text, path, data_dir).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(Error::io(path, err)),
        }
    }

    /// Parses configuration text read from `path` (named in errors). When
    /// it has no `default` class and `data_dir` is known, the built-in
    /// default class is added.
    pub fn parse(text: &str, path: &Path, data_dir: Option<&Path>) -> Result<ShippingConfig> {
        let raw: RawConfig = toml_config::parse(text).map_err(|err| config_error(path, err))?;
        let places = RoutePlaces::of(&raw, text);
        for (Name(name), class) in &raw.classes {
            if let Some((key, at, why)) = class.misplaced_s3_key() {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    line: Some(line_of(text, at)),
                    key: Some(format!("classes.{name}.{key}")),
                    message: why,
                });
            }
        }
        let mut config = raw.into_config();
        if !config.classes.contains_key(DEFAULT_STORAGE_CLASS) {
            if let Some(data_dir) = data_dir {
                config
                    .classes
                    .insert(DEFAULT_STORAGE_CLASS.to_string(), default_class(data_dir));
            }
        }
        config.check(&places, path)?;
        Ok(config)
    }

    /// Checks between entries: a destination is routed through one hop
    /// only, and every hop can be reached without a loop. Errors point at
    /// the entries' places in the file.
    fn check(&self, places: &RoutePlaces, path: &Path) -> Result<()> {
        let error = |line: Option<usize>, key: String, message: String| Error::Config {
            path: path.to_path_buf(),
            line,
            key: Some(key),
            message,
        };
        // In the order written, so the error is at the first routing.
        let mut routed: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
        for (destination, hop, line) in &places.destinations {
            match routed.get(destination.as_str()) {
                Some((other, _)) if other == hop => {}
                Some((other, other_line)) => {
                    return Err(error(
                        Some(*other_line),
                        format!("routes.{other}"),
                        format!(
                            "destination {destination:?} is routed through both {other:?} and {hop:?}"
                        ),
                    ));
                }
                None => {
                    routed.insert(destination, (hop, *line));
                }
            }
        }
        let hops = self
            .routes
            .keys()
            .map(|hop| (hop, format!("routes.{hop}"), places.hops.get(hop).copied()))
            .chain(
                self.default_route
                    .iter()
                    .map(|hop| (hop, "default_route".to_string(), places.default_route)),
            );
        for (hop, key, line) in hops {
            if let Err(err) = self.resolve(hop) {
                return Err(error(line, key, err.to_string()));
            }
        }
        Ok(())
    }

    /// The limits of the link to `destinations` entry `entry` (none when
    /// it sets neither `max_rate` nor `hours`).
    pub fn link(&self, entry: &str) -> crate::link::Link {
        self.links.get(entry).copied().unwrap_or_default()
    }

    /// The storage class called `name`.
    pub fn class(&self, name: &str) -> Result<&StorageClass> {
        self.classes.get(name).ok_or_else(|| Error::UnknownClass {
            class: name.to_string(),
        })
    }

    /// True when packets for `replica` are received on this host.
    pub fn is_local(&self, replica: &str) -> bool {
        self.local_replicas.iter().any(|r| r == replica)
    }

    /// Where a packet for `destination` goes next: `None` when the
    /// destination is a local replica (the packet stays in the incoming
    /// bay), else the hop's entry. A routed destination goes to its next
    /// hop, an unrouted one to its own entry, and one with neither to
    /// `default_route`; a hop is resolved the same way.
    pub fn next_hop(&self, destination: &str) -> Result<Option<NextHop>> {
        if self.is_local(destination) {
            return Ok(None);
        }
        self.resolve(destination).map(Some)
    }

    fn resolve(&self, destination: &str) -> Result<NextHop> {
        let mut chain = vec![destination.to_string()];
        let mut name = destination;
        loop {
            let next = if let Some(hop) = self.routed_through(name) {
                hop
            } else if let Some(hop) = self.destinations.get(name) {
                return Ok(NextHop {
                    name: name.to_string(),
                    hop: hop.clone(),
                });
            } else if let Some(default) = self.default_route.as_deref().filter(|d| *d != name) {
                default
            } else {
                let why = if name == destination {
                    "it has no route and no destinations entry, and there is no default_route"
                        .to_string()
                } else {
                    format!("its next hop {name:?} has no route and no destinations entry")
                };
                return Err(Error::UnknownDestination {
                    destination: destination.to_string(),
                    why,
                });
            };
            if chain.iter().any(|seen| seen == next) {
                chain.push(next.to_string());
                return Err(Error::RouteLoop {
                    destination: destination.to_string(),
                    chain,
                });
            }
            chain.push(next.to_string());
            name = next;
        }
    }

    /// The hop `destination` is explicitly routed through, if any.
    fn routed_through(&self, destination: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|(_, destinations)| destinations.iter().any(|d| d == destination))
            .map(|(hop, _)| hop.as_str())
    }
}

fn default_class(data_dir: &Path) -> StorageClass {
    StorageClass::under(&data_dir.join("bays").join(DEFAULT_STORAGE_CLASS))
}

/// Reads a size with an optional k, m or g suffix (powers of 1024).
pub fn parse_size(value: &str) -> Result<u64, String> {
    crate::size::parse_size(value).map_err(|why| format!("bad size {value:?}: {why}"))
}

/// Replica and hop names: the alphabet of replica names.
pub fn validate_name(name: &str) -> Result<(), String> {
    packet_format::vocabulary::check_name(name).map_err(|why| format!("bad name {name:?}: {why}"))
}

/// Checks an `http://host[:port][/path]` URL.
pub fn validate_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| format!("bad url {url:?}: {why}");
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("it must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("it has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains white space"));
    }
    if authority.contains('@') {
        return Err(bad("user names are not supported"));
    }
    // The port follows the last ':' outside an IPv6 literal's brackets.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    if let Some(colon) = authority[host_end..].rfind(':') {
        let port = &authority[host_end + colon + 1..];
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
        if host_end + colon == 0 {
            return Err(bad("it has no host"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Deserialization: the raw file, with a span-carrying error for every value.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    classes: BTreeMap<Name, RawClass>,
    #[serde(default)]
    routes: BTreeMap<Name, Spanned<Vec<Spanned<Name>>>>,
    #[serde(default)]
    default_route: Option<Spanned<Name>>,
    #[serde(default)]
    destinations: BTreeMap<Name, RawDestination>,
    #[serde(default)]
    local_replicas: Vec<Name>,
    #[serde(default)]
    trusted_keys: Vec<RawKey>,
    #[serde(default)]
    trusted_replicas: Vec<AbsPath>,
    #[serde(default, deserialize_with = "de_size")]
    min_free_space: Option<u64>,
    #[serde(default, deserialize_with = "de_size")]
    max_packet_size: Option<u64>,
    #[serde(default, deserialize_with = "de_idle_timeout")]
    idle_timeout: Option<u64>,
    #[serde(default, deserialize_with = "de_head_timeout")]
    head_timeout: Option<u64>,
    #[serde(default, deserialize_with = "de_max_connections_per_peer")]
    max_connections_per_peer: Option<u64>,
    #[serde(default, deserialize_with = "de_notify")]
    notify: Option<String>,
    #[serde(default, deserialize_with = "de_listen")]
    listen: Option<SocketAddr>,
}

impl RawConfig {
    fn into_config(self) -> ShippingConfig {
        let mut local_replicas: Vec<String> = Vec::new();
        for Name(name) in self.local_replicas {
            if !local_replicas.contains(&name) {
                local_replicas.push(name);
            }
        }
        let mut trusted_keys: Vec<TrustedKey> = Vec::new();
        for RawKey(key) in self.trusted_keys {
            if !trusted_keys.contains(&key) {
                trusted_keys.push(key);
            }
        }
        ShippingConfig {
            classes: self
                .classes
                .into_iter()
                .map(|(Name(name), class)| (name, class.into_class()))
                .collect(),
            routes: self
                .routes
                .into_iter()
                .map(|(Name(hop), destinations)| {
                    let mut seen = BTreeSet::new();
                    let list = destinations
                        .into_inner()
                        .into_iter()
                        .map(|d| d.into_inner().0)
                        .filter(|d| seen.insert(d.clone()))
                        .collect();
                    (hop, list)
                })
                .collect(),
            default_route: self.default_route.map(|n| n.into_inner().0),
            links: self
                .destinations
                .iter()
                .filter(|(_, dest)| dest.1 != crate::link::Link::default())
                .map(|(Name(name), dest)| (name.clone(), dest.1))
                .collect(),
            destinations: self
                .destinations
                .into_iter()
                .map(|(Name(name), dest)| (name, dest.0))
                .collect(),
            local_replicas,
            trusted_keys,
            trusted_replicas: self.trusted_replicas.into_iter().map(|p| p.0).collect(),
            min_free_space: self.min_free_space,
            max_packet_size: self.max_packet_size,
            idle_timeout: self.idle_timeout,
            head_timeout: self.head_timeout,
            max_connections_per_peer: self.max_connections_per_peer,
            notify: self.notify,
            listen: self.listen,
        }
    }
}

/// Lines of the route entries, for the checks between entries.
struct RoutePlaces {
    /// Hop -> the line of its `routes` entry.
    hops: BTreeMap<String, usize>,
    /// (destination, hop, line) of every routed destination, in the order
    /// written.
    destinations: Vec<(String, String, usize)>,
    default_route: Option<usize>,
}

impl RoutePlaces {
    fn of(raw: &RawConfig, text: &str) -> RoutePlaces {
        let mut destinations: Vec<(usize, String, String)> = Vec::new();
        let mut hops = BTreeMap::new();
        for (Name(hop), list) in &raw.routes {
            hops.insert(hop.clone(), line_of(text, list.span().start));
            for destination in list.get_ref() {
                let at = destination.span().start;
                destinations.push((at, destination.get_ref().0.clone(), hop.clone()));
            }
        }
        destinations.sort();
        RoutePlaces {
            hops,
            destinations: destinations
                .into_iter()
                .map(|(at, destination, hop)| (destination, hop, line_of(text, at)))
                .collect(),
            default_route: raw
                .default_route
                .as_ref()
                .map(|hop| line_of(text, hop.span().start)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    storage_bay: BayLocation,
    return_bay: Spanned<BayLocation>,
    #[serde(default = "default_expiry_days", deserialize_with = "de_expiry_days")]
    expiry_days: u32,
    // Spanned: set on a class whose bays are directories, each is an
    // error at its line.
    #[serde(default)]
    endpoint: Option<Spanned<Endpoint>>,
    #[serde(default)]
    region: Option<Spanned<Name>>,
    #[serde(default)]
    allow_http: Option<Spanned<bool>>,
    #[serde(default)]
    profile: Option<Spanned<Name>>,
    #[serde(default)]
    lease_seconds: Option<Spanned<u64>>,
}

impl RawClass {
    /// The first S3 setting of a class whose storage bay is a directory
    /// (or an `s3://` return bay for it), as (its key, its offset in the
    /// text, why): such a class would silently ignore it.
    fn misplaced_s3_key(&self) -> Option<(&'static str, usize, String)> {
        if matches!(self.storage_bay, BayLocation::S3(_)) {
            return None;
        }
        let why = "is a setting of a class on S3, and this class's storage_bay is a directory; \
                   remove it, or set storage_bay = \"s3://BUCKET/PREFIX\""
            .to_string();
        let keys = [
            ("endpoint", self.endpoint.as_ref().map(|v| v.span().start)),
            ("region", self.region.as_ref().map(|v| v.span().start)),
            (
                "allow_http",
                self.allow_http.as_ref().map(|v| v.span().start),
            ),
            ("profile", self.profile.as_ref().map(|v| v.span().start)),
            (
                "lease_seconds",
                self.lease_seconds.as_ref().map(|v| v.span().start),
            ),
        ];
        let first = keys
            .into_iter()
            .filter_map(|(key, at)| at.map(|at| (key, at)))
            .min_by_key(|(_, at)| *at);
        if let Some((key, at)) = first {
            return Some((key, at, why));
        }
        if matches!(self.return_bay.get_ref(), BayLocation::S3(_)) {
            return Some((
                "return_bay",
                self.return_bay.span().start,
                "is on S3 while this class's storage_bay is a directory: an S3 return bay \
                 needs the class's storage_bay on S3 too (its endpoint and credentials); \
                 use a directory"
                    .into(),
            ));
        }
        None
    }

    fn into_class(self) -> StorageClass {
        let path = |location: &BayLocation| match location {
            BayLocation::Dir(path) => path.clone(),
            BayLocation::S3(_) => PathBuf::new(),
        };
        let s3 = match &self.storage_bay {
            BayLocation::S3(url) => Some(S3Class {
                storage_url: url.clone(),
                return_url: match self.return_bay.get_ref() {
                    BayLocation::S3(url) => Some(url.clone()),
                    BayLocation::Dir(_) => None,
                },
                endpoint: self.endpoint.map(|u| u.into_inner().0),
                region: self.region.map(|n| n.into_inner().0),
                allow_http: self.allow_http.is_some_and(|b| b.into_inner()),
                profile: self.profile.map(|n| n.into_inner().0),
                lease_seconds: self.lease_seconds.map(Spanned::into_inner),
            }),
            BayLocation::Dir(_) => None,
        };
        StorageClass {
            storage_bay: path(&self.storage_bay),
            return_bay: path(self.return_bay.get_ref()),
            expiry_days: self.expiry_days,
            s3,
        }
    }
}

/// An S3 service's `http://host[:port]` or `https://host[:port]`.
struct Endpoint(String);

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_string(d, |text| {
            let plain = match text.strip_prefix("https://") {
                Some(rest) => format!("http://{rest}"),
                None => text.to_string(),
            };
            validate_url(&plain).map_err(|e| e.replace("http://", "http:// or https://"))?;
            Ok(Endpoint(text.trim_end_matches('/').to_string()))
        })
    }
}

/// A bay: an absolute directory or `s3://bucket/prefix`.
enum BayLocation {
    Dir(PathBuf),
    S3(String),
}

impl<'de> Deserialize<'de> for BayLocation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_string(d, |text| {
            if let Some(rest) = text.strip_prefix("s3://") {
                check_s3_url(text, rest)?;
                return Ok(BayLocation::S3(text.trim_end_matches('/').to_string()));
            }
            let path = PathBuf::from(text);
            if !path.is_absolute() {
                return Err(format!(
                    "{text:?} is not an absolute path (nor an s3://bucket/prefix URL)"
                ));
            }
            Ok(BayLocation::Dir(path))
        })
    }
}

/// Checks `s3://BUCKET[/PREFIX]` (`rest` is what follows `s3://`).
fn check_s3_url(text: &str, rest: &str) -> Result<(), String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(format!(
            "{text:?}: {bucket:?} is not a bucket name (3 to 63 of a-z, 0-9, '-', '.')"
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty()
        && prefix
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!(
            "{text:?}: the prefix has an empty, '.' or '..' part"
        ));
    }
    Ok(())
}

fn default_expiry_days() -> u32 {
    DEFAULT_EXPIRY_DAYS
}

/// Deserializes a string and checks it inside the string's own
/// deserializer, so that toml reports the error at the value (an element
/// of a list, say) and not at the table or list holding it.
fn checked_string<'de, D, T>(d: D, check: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Checked<T>(fn(&str) -> Result<T, String>);

    impl<T> serde::de::Visitor<'_> for Checked<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<T, E> {
            (self.0)(value).map_err(E::custom)
        }
    }

    d.deserialize_str(Checked(check))
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_string(d, |name| {
            validate_name(name)?;
            Ok(Name(name.to_string()))
        })
    }
}

struct AbsPath(PathBuf);

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_string(d, |text| {
            let path = PathBuf::from(text);
            if !path.is_absolute() {
                return Err(format!("{text:?} is not an absolute path"));
            }
            Ok(AbsPath(path))
        })
    }
}

struct RawKey(TrustedKey);

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_string(d, |text| TrustedKey::parse(text).map(RawKey))
    }
}

struct Url(String);

impl<'de> Deserialize<'de> for Url {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_string(d, |text| {
            validate_url(text)?;
            Ok(Url(text.to_string()))
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationFields {
    url: Option<Url>,
    dir: Option<AbsPath>,
    #[serde(default, deserialize_with = "de_max_rate")]
    max_rate: Option<u64>,
    #[serde(default, deserialize_with = "de_hours")]
    hours: Option<crate::link::Hours>,
}

struct RawDestination(Hop, crate::link::Link);

impl<'de> Deserialize<'de> for RawDestination {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fields = DestinationFields::deserialize(d)?;
        let link = crate::link::Link {
            max_rate: fields.max_rate,
            hours: fields.hours,
        };
        match fields {
            DestinationFields {
                url: Some(url),
                dir: None,
                ..
            } => Ok(RawDestination(Hop::Url(url.0), link)),
            DestinationFields {
                url: None,
                dir: Some(_),
                max_rate: Some(_),
                ..
            } => Err(serde::de::Error::custom(
                "`max_rate` holds uploads to a `url` destination; a `dir` destination is \
                 copied at the speed of its device (leave max_rate out here)",
            )),
            DestinationFields {
                url: None,
                dir: Some(dir),
                ..
            } => Ok(RawDestination(Hop::Dir(dir.0), link)),
            _ => Err(serde::de::Error::custom(
                "a destination needs exactly one of `url` and `dir`",
            )),
        }
    }
}

fn de_max_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    checked_string(d, |text| {
        let rate = parse_size(text).map_err(|e| e.replace("bad size", "bad max_rate"))?;
        if rate == 0 {
            return Err(format!(
                "max_rate {text:?} would send nothing: give bytes a second above 0 (k, m and g suffixes), or leave max_rate out for no cap"
            ));
        }
        Ok(Some(rate))
    })
}

fn de_hours<'de, D: Deserializer<'de>>(d: D) -> Result<Option<crate::link::Hours>, D::Error> {
    checked_string(d, |text| crate::link::Hours::parse(text).map(Some))
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    checked_string(d, |text| parse_size(text).map(Some))
}

fn de_idle_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::toml_config::whole_number(d, "idle_timeout", "seconds", 1, 86_400).map(Some)
}

fn de_head_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::toml_config::whole_number(d, "head_timeout", "seconds", 1, 3600).map(Some)
}

fn de_max_connections_per_peer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::toml_config::whole_number(d, "max_connections_per_peer", "connections", 1, 1024)
        .map(Some)
}

fn de_notify<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked_string(d, |text| {
        if text.trim().is_empty() {
            return Err("the notify command is empty".to_string());
        }
        Ok(Some(text.to_string()))
    })
}

fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    checked_string(d, |text| {
        text.trim().parse::<SocketAddr>().map(Some).map_err(|_| {
            format!(
                "bad listen address {text:?}: expected IP:PORT, such as 0.0.0.0:7421 or [::]:7421"
            )
        })
    })
}

fn de_expiry_days<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    crate::toml_config::whole_number(d, "expiry_days", "days", 1, u64::from(u32::MAX))
        .map(|days| days as u32)
}

/// A TOML error in `path` as [`Error::Config`].
fn config_error(path: &Path, err: TomlError) -> Error {
    // Credentials written into the file: not an unknown key to look up,
    // but a secret in the wrong place.
    let field = err.key.as_deref().and_then(|k| k.rsplit('.').next());
    let secret = field.is_some_and(|field| {
        let field = field.to_ascii_lowercase();
        [
            "access_key",
            "secret",
            "session_token",
            "credential",
            "password",
        ]
        .iter()
        .any(|word| field.contains(word))
    });
    let message = if secret && err.message.starts_with("unknown field") {
        "S3 credentials are never put in shipping.toml (it is readable by more than the \
         service): remove this key, and give them in the environment of the program \
         (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; for the systemd \
         service, an EnvironmentFile= of its unit) or in the shared credentials file \
         (~/.aws/credentials; profile = \"NAME\" in the class picks its section)"
            .to_string()
    } else {
        err.message
    };
    Error::Config {
        path: path.to_path_buf(),
        line: err.line,
        key: err.key,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ShippingConfig> {
        ShippingConfig::parse(text, Path::new("/etc/syncreplica/shipping.toml"), None)
    }

    fn config_error(text: &str) -> (Option<usize>, Option<String>, String) {
        match parse(text).unwrap_err() {
            err @ Error::Config { .. } => {
                let shown = err.to_string();
                let Error::Config {
                    path, line, key, ..
                } = err
                else {
                    unreachable!()
                };
                assert_eq!(path, Path::new("/etc/syncreplica/shipping.toml"));
                assert!(
                    shown.starts_with("/etc/syncreplica/shipping.toml: "),
                    "{shown}"
                );
                (line, key, shown)
            }
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn every_prefix_of_the_example_parses_or_fails_cleanly() {
        let text = format!("{EXAMPLE_SHIPPING_TOML}\n# ünïcödé ✓\nnotify = \"é\"\n");
        for (end, _) in text.char_indices() {
            let _ = parse(&text[..end]);
            let _ = parse(&text[end..]);
        }
        let crlf = EXAMPLE_SHIPPING_TOML.replace('\n', "\r\n");
        assert_eq!(parse(&crlf).unwrap(), parse(EXAMPLE_SHIPPING_TOML).unwrap());
        let (line, key, _) = config_error("notify = \"x\"\r\nbogus = 1\r\n");
        assert_eq!((line, key.as_deref()), (Some(2), Some("bogus")));
    }

    #[test]
    fn credentials_in_the_file_are_refused_saying_where_they_belong() {
        for key in ["access_key_id", "secret_access_key", "aws_session_token"] {
            let (line, found, shown) = config_error(&format!(
                "[classes.default]\nstorage_bay = \"s3://bays/hub\"\n\
                 return_bay = \"/srv/return\"\n{key} = \"x\"\n"
            ));
            assert_eq!(line, Some(4), "{shown}");
            assert_eq!(found.as_deref(), Some(&*format!("classes.default.{key}")));
            assert!(shown.contains("never put in shipping.toml"), "{shown}");
            assert!(shown.contains("AWS_ACCESS_KEY_ID"), "{shown}");
            assert!(!shown.contains("expected one of"), "{shown}");
        }
        // Other unknown keys keep the list of the known ones.
        let (_, _, shown) = config_error("bogus = 1\n");
        assert!(shown.contains("unknown field"), "{shown}");
    }

    #[test]
    fn inline_tables_name_the_enclosing_key() {
        let (line, key, shown) =
            config_error("[classes]\ndefault = { storage_bay = \"bays\", return_bay = \"/r\" }\n");
        assert_eq!(line, Some(2));
        assert!(key.unwrap().starts_with("classes."), "{shown}");
        assert!(shown.contains("not an absolute path"), "{shown}");
    }

    #[test]
    fn the_format_document_shows_the_example() {
        let format_md = include_str!("../FORMAT.md");
        assert!(
            format_md.contains(EXAMPLE_SHIPPING_TOML),
            "FORMAT.md's shipping.toml example is out of date"
        );
    }

    #[test]
    fn a_bad_idle_timeout_names_its_line_and_key() {
        let (line, key, shown) = config_error("listen = \"127.0.0.1:1\"\nidle_timeout = 0\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("idle_timeout"));
        assert!(shown.contains("from 1 to 86400"), "{shown}");
    }

    #[test]
    fn bad_head_timeouts_and_connection_caps_name_their_line_and_key() {
        let (line, key, shown) = config_error("listen = \"127.0.0.1:1\"\nhead_timeout = 0\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("head_timeout"));
        assert!(shown.contains("from 1 to 3600"), "{shown}");
        let (line, key, shown) = config_error("max_connections_per_peer = 5000\n");
        assert_eq!(line, Some(1));
        assert_eq!(key.as_deref(), Some("max_connections_per_peer"));
        assert!(shown.contains("from 1 to 1024"), "{shown}");
    }

    #[test]
    fn example_parses() {
        let config = parse(EXAMPLE_SHIPPING_TOML).unwrap();
        assert_eq!(config.listen, Some("0.0.0.0:7421".parse().unwrap()));
        assert_eq!(config.min_free_space, Some(1 << 30));
        assert_eq!(config.local_replicas, ["boston"]);
        assert_eq!(config.head_timeout, Some(10));
        assert_eq!(config.max_connections_per_peer, Some(8));
        assert_eq!(config.trusted_replicas, [PathBuf::from("/srv/projects")]);
        assert_eq!(config.trusted_keys[0].to_bytes()[0], 0x3b);
        let class = config.class("default").unwrap();
        assert_eq!(class.expiry_days, 14);
        assert_eq!(
            class.outgoing_dir(),
            Path::new("/var/spool/syncreplica/default/outgoing")
        );
        assert_eq!(config.routes["hub"], ["ship", "lab"]);
        assert_eq!(config.default_route.as_deref(), Some("hub"));
        assert_eq!(
            config.destinations["usb"],
            Hop::Dir(PathBuf::from("/media/usb"))
        );
    }

    #[test]
    fn empty_file_with_data_dir_has_the_default_class() {
        let config = ShippingConfig::parse(
            "",
            Path::new("s.toml"),
            Some(Path::new("/home/u/.local/share/syncreplica")),
        )
        .unwrap();
        let class = config.class(DEFAULT_STORAGE_CLASS).unwrap();
        assert_eq!(
            class.incoming_dir(),
            Path::new("/home/u/.local/share/syncreplica/bays/default/incoming")
        );
        assert_eq!(
            class.return_dir(),
            Path::new("/home/u/.local/share/syncreplica/bays/default/return")
        );
        assert_eq!(class.expiry_days, DEFAULT_EXPIRY_DAYS);
        assert!(
            matches!(config.class("tapes"), Err(Error::UnknownClass { class }) if class == "tapes")
        );
    }

    #[test]
    fn expiry_days_defaults_to_14() {
        let config = parse("[classes.usb]\nstorage_bay = \"/s\"\nreturn_bay = \"/r\"\n").unwrap();
        assert_eq!(config.classes["usb"].expiry_days, 14);
        assert!(!config.classes.contains_key("default"));
    }

    #[test]
    fn unknown_top_level_key_names_line_and_key() {
        let (line, key, shown) = config_error("listen = \"127.0.0.1:1\"\nnotfy = \"mail\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("notfy"));
        assert!(shown.contains("line 2"), "{shown}");
        assert!(shown.contains("notfy"), "{shown}");
    }

    #[test]
    fn unknown_key_in_a_class_names_the_table() {
        let text = "[classes.default]\nstorage_bay = \"/s\"\nreturn_bay = \"/r\"\nexpiry = 3\n";
        let (line, key, shown) = config_error(text);
        assert_eq!(line, Some(4));
        assert_eq!(key.as_deref(), Some("classes.default.expiry"), "{shown}");
        // FORMAT.md quotes this message.
        assert!(include_str!("../FORMAT.md").contains(&shown), "{shown}");
    }

    #[test]
    fn unknown_table_names_line_and_key() {
        let (line, key, shown) = config_error("\n\n[destination.hub]\nurl = \"http://h:1\"\n");
        assert_eq!(line, Some(3), "{shown}");
        assert!(key.unwrap().starts_with("destination"), "{shown}");
    }

    #[test]
    fn bad_size_names_line_and_key() {
        let (line, key, shown) = config_error("listen = \"[::1]:7421\"\nmin_free_space = \"1t\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("min_free_space"));
        assert!(shown.contains("suffix must be k, m or g"), "{shown}");
        let (_, _, shown) = config_error("min_free_space = \"lots\"\n");
        assert!(shown.contains("bad size \"lots\""), "{shown}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("3k"), Ok(3072));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("1.5g").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
        assert!(parse_size("17179869184g").is_err());
    }

    #[test]
    fn bad_listen_address_names_line_and_key() {
        let (line, key, shown) = config_error("\nlisten = \"localhost\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("listen"));
        assert!(
            shown.contains("bad listen address \"localhost\""),
            "{shown}"
        );
        assert!(parse("listen = \"0.0.0.0:99999\"").is_err());
        assert_eq!(
            parse("listen = \"[::]:7421\"").unwrap().listen,
            Some("[::]:7421".parse().unwrap())
        );
    }

    #[test]
    fn bad_trusted_key_in_a_multi_line_list() {
        let good = "ab".repeat(32);
        let text = format!("trusted_keys = [\n  \"{good}\",\n  \"abc\",\n]\n");
        let (line, key, shown) = config_error(&text);
        assert_eq!(line, Some(3));
        assert_eq!(key.as_deref(), Some("trusted_keys"));
        assert!(shown.contains("64 hex digits"), "{shown}");
        let upper = format!("trusted_keys = [\"{}\"]", good.to_uppercase());
        assert_eq!(parse(&upper).unwrap().trusted_keys[0].as_str(), good);
        let (_, _, shown) = config_error(&format!("trusted_keys = [\"{}zz\"]", "a".repeat(62)));
        assert!(shown.contains("64 hex digits"), "{shown}");
    }

    #[test]
    fn relative_paths_are_refused() {
        let (line, key, shown) =
            config_error("[classes.default]\nstorage_bay = \"bays\"\nreturn_bay = \"/r\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("classes.default.storage_bay"));
        assert!(shown.contains("not an absolute path"), "{shown}");
        let (_, key, _) = config_error("trusted_replicas = [\"srv\"]\n");
        assert_eq!(key.as_deref(), Some("trusted_replicas"));
    }

    #[test]
    fn bad_expiry_days() {
        let (line, key, shown) = config_error(
            "[classes.default]\nstorage_bay = \"/s\"\nreturn_bay = \"/r\"\nexpiry_days = 0\n",
        );
        assert_eq!(line, Some(4));
        assert_eq!(key.as_deref(), Some("classes.default.expiry_days"));
        assert!(
            shown.contains("expiry_days = 0") && shown.contains("from 1 to"),
            "{shown}"
        );
    }

    #[test]
    fn bad_destinations() {
        let (line, key, shown) = config_error("[destinations.hub]\nurl = \"ftp://hub\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("destinations.hub.url"), "{shown}");
        assert!(shown.contains("http://"), "{shown}");
        let (_, _, shown) =
            config_error("[destinations.hub]\nurl = \"http://hub:1\"\ndir = \"/media/usb\"\n");
        assert!(shown.contains("exactly one of `url` and `dir`"), "{shown}");
        let (line, key, shown) = config_error("[destinations.hub]\nhost = \"hub\"\n");
        assert_eq!(line, Some(2));
        assert_eq!(key.as_deref(), Some("destinations.hub.host"), "{shown}");
        let (_, _, shown) = config_error("[destinations.hub]\nurl = \"http://hub:0\"\n");
        assert!(shown.contains("port"), "{shown}");
    }

    #[test]
    fn urls() {
        assert!(validate_url("http://hub.example.org:7421").is_ok());
        assert!(validate_url("http://hub").is_ok());
        assert!(validate_url("http://[::1]:7421/ship").is_ok());
        assert!(validate_url("http://").is_err());
        assert!(validate_url("http://:80").is_err());
        assert!(validate_url("http://h:x").is_err());
        assert!(validate_url("http://u@h:1").is_err());
        assert!(validate_url("http://h 1").is_err());
        assert!(validate_url("https://h").is_err());
    }

    #[test]
    fn bad_names() {
        let (line, key, shown) = config_error("local_replicas = [\"ok\", \"bad name\"]\n");
        assert_eq!(line, Some(1));
        assert_eq!(key.as_deref(), Some("local_replicas"));
        assert!(shown.contains("bad name \"bad name\""), "{shown}");
        let (line, _, shown) = config_error("[routes]\nhub = [\"ship\"]\n\"-x\" = [\"lab\"]\n");
        assert_eq!(line, Some(3), "{shown}");
    }

    #[test]
    fn empty_notify_is_refused() {
        let (_, key, _) = config_error("notify = \"  \"\n");
        assert_eq!(key.as_deref(), Some("notify"));
    }

    const ROUTED: &str = r#"
local_replicas = ["boston"]
default_route = "hub"

[routes]
hub = ["ship", "lab"]
relay = ["far"]

[destinations.hub]
url = "http://hub:7421"

[destinations.relay]
dir = "/media/usb"

[destinations.lab]
url = "http://lab:7421"

[destinations.near]
url = "http://near:7421"
"#;

    fn hop(name: &str, hop: Hop) -> Option<NextHop> {
        Some(NextHop {
            name: name.to_string(),
            hop,
        })
    }

    #[test]
    fn route_resolution() {
        let config = parse(ROUTED).unwrap();
        let hub = Hop::Url("http://hub:7421".into());
        // Local replicas are not shipped anywhere.
        assert_eq!(config.next_hop("boston").unwrap(), None);
        // A routed destination goes to its hop, even with its own entry.
        assert_eq!(config.next_hop("ship").unwrap(), hop("hub", hub.clone()));
        assert_eq!(config.next_hop("lab").unwrap(), hop("hub", hub.clone()));
        assert_eq!(
            config.next_hop("far").unwrap(),
            hop("relay", Hop::Dir("/media/usb".into()))
        );
        // An unrouted destination with an entry goes straight to it.
        assert_eq!(
            config.next_hop("near").unwrap(),
            hop("near", Hop::Url("http://near:7421".into()))
        );
        // A hop is itself a destination.
        assert_eq!(config.next_hop("hub").unwrap(), hop("hub", hub.clone()));
        // Anything else takes the default route.
        assert_eq!(config.next_hop("elsewhere").unwrap(), hop("hub", hub));
    }

    #[test]
    fn unknown_destination_without_default_route() {
        let config = parse("[destinations.hub]\nurl = \"http://hub:1\"\n").unwrap();
        let err = config.next_hop("mars").unwrap_err();
        assert!(
            matches!(&err, Error::UnknownDestination { destination, .. } if destination == "mars"),
            "{err}"
        );
        assert!(err.to_string().contains("no default_route"), "{err}");
    }

    #[test]
    fn hop_without_entry_is_an_error_at_load() {
        let (line, key, shown) = config_error("\n[routes]\nhub = [\"ship\"]\n");
        assert_eq!(line, Some(3), "{shown}");
        assert_eq!(key.as_deref(), Some("routes.hub"));
        assert!(shown.contains("no route to \"hub\""), "{shown}");
        let (line, key, shown) = config_error("default_route = \"hub\"\n");
        assert_eq!(line, Some(1), "{shown}");
        assert_eq!(key.as_deref(), Some("default_route"));
    }

    #[test]
    fn route_loops_are_refused() {
        let (_, _, shown) = config_error("[routes]\na = [\"b\"]\nb = [\"a\"]\n");
        assert!(shown.contains("route loop"), "{shown}");
        assert!(shown.contains("a -> b -> a"), "{shown}");
        // Through the default route too.
        let text =
            "default_route = \"a\"\n[routes]\nb = [\"a\"]\n[destinations.b]\nurl = \"http://b\"\n";
        let config = parse(text).unwrap();
        assert_eq!(config.next_hop("x").unwrap().unwrap().name, "b");
        let looped = ShippingConfig {
            default_route: Some("a".into()),
            routes: [
                ("b".to_string(), vec!["a".to_string()]),
                ("a".to_string(), vec!["b".to_string()]),
            ]
            .into_iter()
            .collect(),
            ..ShippingConfig::default()
        };
        assert!(matches!(looped.next_hop("x"), Err(Error::RouteLoop { .. })));
    }

    #[test]
    fn link_limits_are_read_and_bad_ones_name_their_line_and_key() {
        let config = parse(EXAMPLE_SHIPPING_TOML).unwrap();
        let hub = config.link("hub");
        assert_eq!(hub.max_rate, Some(2 << 20));
        assert_eq!(hub.hours.unwrap().to_string(), "22:00-06:00");
        assert_eq!(config.link("usb"), crate::link::Link::default());

        let (line, key, shown) =
            config_error("[destinations.hub]\nurl = \"http://h\"\nmax_rate = \"2q\"\n");
        assert_eq!(
            (line, key.as_deref()),
            (Some(3), Some("destinations.hub.max_rate"))
        );
        assert!(shown.contains("bad max_rate \"2q\""), "{shown}");
        let (line, key, shown) =
            config_error("[destinations.hub]\nurl = \"http://h\"\nmax_rate = \"0\"\n");
        assert_eq!(
            (line, key.as_deref()),
            (Some(3), Some("destinations.hub.max_rate"))
        );
        assert!(shown.contains("would send nothing"), "{shown}");
        let (line, key, shown) =
            config_error("[destinations.hub]\nurl = \"http://h\"\n\nhours = \"22:00-26:00\"\n");
        assert_eq!(
            (line, key.as_deref()),
            (Some(4), Some("destinations.hub.hours"))
        );
        assert!(shown.contains("bad hours \"22:00-26:00\""), "{shown}");
        let (_, key, shown) =
            config_error("[destinations.usb]\ndir = \"/media/usb\"\nmax_rate = \"1m\"\n");
        assert_eq!(key.as_deref(), Some("destinations.usb"));
        assert!(shown.contains("a `dir` destination"), "{shown}");
        // A window on a directory destination is fine: it says when.
        let config =
            parse("[destinations.usb]\ndir = \"/media/usb\"\nhours = \"01:00-02:00 UTC\"\n")
                .unwrap();
        assert!(config.link("usb").hours.unwrap().utc);
    }

    #[test]
    fn destination_routed_twice_is_refused() {
        let text = "[routes]\nhub = [\"ship\"]\nother = [\"ship\"]\n[destinations.hub]\nurl = \"http://h\"\n[destinations.other]\nurl = \"http://o\"\n";
        let (line, key, shown) = config_error(text);
        assert_eq!(line, Some(2), "{shown}");
        assert!(key.unwrap().starts_with("routes."), "{shown}");
        assert!(shown.contains("routed through both"), "{shown}");
    }

    #[test]
    fn duplicates_in_lists_are_dropped() {
        let key = "cd".repeat(32);
        let config = parse(&format!(
            "local_replicas = [\"a\", \"a\"]\ntrusted_keys = [\"{key}\", \"{}\"]\n",
            key.to_uppercase()
        ))
        .unwrap();
        assert_eq!(config.local_replicas, ["a"]);
        assert_eq!(config.trusted_keys.len(), 1);
    }

    #[test]
    fn s3_settings_on_a_directory_class_are_refused_at_their_line() {
        let text = "[classes.default]\nstorage_bay = \"/srv/bays\"\nreturn_bay = \"/srv/return\"\n\
                    expiry_days = 3\nregion = \"default\"\nendpoint = \"https://rgw.example.org\"\n";
        let (line, key, shown) = config_error(text);
        assert_eq!(line, Some(5), "{shown}");
        assert_eq!(key.as_deref(), Some("classes.default.region"), "{shown}");
        assert!(shown.contains("storage_bay is a directory"), "{shown}");
        for (setting, name) in [
            ("allow_http = true", "allow_http"),
            ("lease_seconds = 30", "lease_seconds"),
            ("profile = \"x\"", "profile"),
        ] {
            let text =
                format!("[classes.c]\nstorage_bay = \"/b\"\nreturn_bay = \"/r\"\n{setting}\n");
            let (line, key, shown) = config_error(&text);
            assert_eq!(line, Some(4), "{shown}");
            assert_eq!(key, Some(format!("classes.c.{name}")), "{shown}");
        }
        // An S3 return bay for a directory class: refused, not ignored.
        let text = "[classes.c]\nstorage_bay = \"/b\"\nreturn_bay = \"s3://bays/r\"\n";
        let (line, key, shown) = config_error(text);
        assert_eq!(line, Some(3), "{shown}");
        assert_eq!(key.as_deref(), Some("classes.c.return_bay"), "{shown}");
        // The same settings on an S3 class are fine.
        parse(
            "[classes.c]\nstorage_bay = \"s3://bays/b\"\nreturn_bay = \"/r\"\nregion = \"default\"\n\
             allow_http = true\nendpoint = \"http://127.0.0.1:7480\"\nlease_seconds = 30\n",
        )
        .unwrap();
    }
}
