//! Shipping orders: one per packet part, a TOML file named
//! `<packet file name>.order` beside the packet in its bay. The order says
//! which destinations the packet still has to reach, how delivery to each
//! has gone, and when the packet expires. `FORMAT.md` documents the file.

use std::collections::BTreeMap;
use std::io::Read;

use chrono::{DateTime, Duration, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bay::BayStore;
use crate::config::{validate_name, StorageClass};
use crate::error::{Error, Result};

/// Suffix of an order's entry name.
pub const ORDER_SUFFIX: &str = ".order";
/// The `format` value this crate writes and reads.
pub const ORDER_FORMAT: u32 = 1;
/// Wait after the first failed attempt.
pub const FIRST_RETRY: Duration = Duration::minutes(1);
/// Longest wait between attempts.
pub const MAX_RETRY: Duration = Duration::hours(1);

/// The order's entry name for a packet: `<packet>.order`.
pub fn order_name(packet: &str) -> String {
    format!("{packet}{ORDER_SUFFIX}")
}

/// The packet an order entry belongs to, if `name` is an order's name.
pub fn packet_of(order: &str) -> Option<&str> {
    order
        .strip_suffix(ORDER_SUFFIX)
        .filter(|packet| !packet.is_empty())
}

/// How long to wait before the next attempt after `failures` failed
/// attempts in a row: nothing before the first failure, then 1 minute,
/// doubling with each further failure up to 1 hour.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::zero();
    }
    let doublings = (failures - 1).min(6);
    (FIRST_RETRY * (1 << doublings)).min(MAX_RETRY)
}

/// A time as written in orders: RFC 3339, UTC, whole seconds
/// (`2026-11-21T23:25:49Z`).
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Delivery attempts to one destination that have failed so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempts {
    /// Failed attempts in a row.
    pub failures: u32,
    /// When the last attempt failed.
    #[serde(with = "rfc3339")]
    pub last_attempt: DateTime<Utc>,
    /// Why it failed.
    pub last_error: String,
    /// No attempt is made before this time.
    #[serde(with = "rfc3339")]
    pub next_retry: DateTime<Utc>,
}

/// A shipping order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingOrder {
    /// Format version, [`ORDER_FORMAT`].
    pub format: u32,
    /// The packet part's file name, in the same bay.
    pub packet: String,
    /// SHA-256 of the packet file, 64 lowercase hex digits.
    pub sha256: String,
    /// Size of the packet file in bytes.
    pub size: u64,
    /// The storage class whose bays hold the packet.
    pub storage_class: String,
    #[serde(with = "rfc3339")]
    pub created: DateTime<Utc>,
    /// After this the packet goes back to the return bay.
    #[serde(with = "rfc3339")]
    pub expires: DateTime<Utc>,
    /// Destinations (replica names) the packet has still to reach.
    pub destinations: Vec<String>,
    /// What happened, one line per event, oldest first.
    #[serde(default)]
    pub history: Vec<String>,
    /// Failed attempts, by destination; a destination without an entry
    /// has not failed yet.
    #[serde(default)]
    pub attempts: BTreeMap<String, Attempts>,
}

impl ShippingOrder {
    /// Makes an order for the packet `packet` already in `store`, hashing
    /// it as a stream. It expires `class.expiry_days` after `now`. The
    /// order is not saved.
    pub fn create(
        store: &dyn BayStore,
        packet: &str,
        class_name: &str,
        class: &StorageClass,
        destinations: &[&str],
        now: DateTime<Utc>,
    ) -> Result<ShippingOrder> {
        let bad = |message: String| Error::Order {
            bay: store.describe(),
            name: order_name(packet),
            message,
        };
        if packet_of(packet).is_some() {
            return Err(bad("a shipping order cannot be shipped as a packet".into()));
        }
        validate_name(class_name).map_err(|m| bad(format!("storage class: {m}")))?;
        let destinations = check_destinations(destinations.iter().copied()).map_err(bad)?;
        let (sha256, size) = hash_entry(store, packet)?;
        let created = now.trunc_subsecs(0);
        let expires = created + Duration::days(i64::from(class.expiry_days));
        let history = vec![format!(
            "{} created for {} (expires {})",
            format_time(&created),
            destinations.join(", "),
            format_time(&expires)
        )];
        Ok(ShippingOrder {
            format: ORDER_FORMAT,
            packet: packet.to_string(),
            sha256,
            size,
            storage_class: class_name.to_string(),
            created,
            expires,
            destinations,
            history,
            attempts: BTreeMap::new(),
        })
    }

    /// Reads the order of packet `packet` from `store`.
    pub fn load(store: &dyn BayStore, packet: &str) -> Result<ShippingOrder> {
        let name = order_name(packet);
        let data = store.read(&name)?;
        let bad = |message: String| Error::Order {
            bay: store.describe(),
            name: name.clone(),
            message,
        };
        let text = String::from_utf8(data).map_err(|_| bad("it is not UTF-8 text".into()))?;
        let order: ShippingOrder = toml::from_str(&text).map_err(|err| {
            let message = err.message().trim().to_string();
            bad(match err.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message,
            })
        })?;
        order.check(packet).map_err(bad)?;
        Ok(order)
    }

    /// Writes the order beside its packet in `store`, atomically.
    pub fn save(&self, store: &dyn BayStore) -> Result<()> {
        let text = self.to_toml();
        store.write(&order_name(&self.packet), text.as_bytes())
    }

    /// The order file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("an order always serializes")
    }

    fn check(&self, packet: &str) -> Result<(), String> {
        if self.format != ORDER_FORMAT {
            return Err(format!(
                "format {} is not supported (this program reads format {ORDER_FORMAT})",
                self.format
            ));
        }
        if self.packet != packet {
            return Err(format!(
                "it is for packet {:?}, not {packet:?}",
                self.packet
            ));
        }
        validate_name(&self.storage_class).map_err(|m| format!("storage_class: {m}"))?;
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha256 {:?} is not 64 hex digits", self.sha256));
        }
        for name in &self.destinations {
            validate_name(name).map_err(|m| format!("destinations: {m}"))?;
        }
        if let Some(stray) = self
            .attempts
            .keys()
            .find(|d| !self.destinations.contains(d))
        {
            return Err(format!(
                "attempts for {stray:?}, which is not a remaining destination"
            ));
        }
        Ok(())
    }

    /// True when no destination is left.
    pub fn is_complete(&self) -> bool {
        self.destinations.is_empty()
    }

    /// True when the order has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires
    }

    /// The remaining destinations an attempt may be made for at `now`:
    /// those that never failed and those whose retry time has come.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<&str> {
        self.destinations
            .iter()
            .filter(|d| self.attempts.get(*d).is_none_or(|a| a.next_retry <= now))
            .map(String::as_str)
            .collect()
    }

    /// Records that the packet reached `destination` (or the hop that now
    /// answers for it); returns true when no destination is left.
    pub fn mark_delivered(&mut self, destination: &str, now: DateTime<Utc>) -> Result<bool> {
        let index = self.position(destination)?;
        self.destinations.remove(index);
        self.attempts.remove(destination);
        self.history.push(format!(
            "{} delivered to {destination}",
            format_time(&now.trunc_subsecs(0))
        ));
        Ok(self.is_complete())
    }

    /// Records a failed attempt for `destination`; returns the time before
    /// which no new attempt is to be made.
    pub fn record_failure(
        &mut self,
        destination: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        self.record_failure_not_before(destination, error, now, None)
    }

    /// [`ShippingOrder::record_failure`], the next try not before
    /// `not_before` (the next opening of a link's `hours` window that
    /// cut the transfer).
    pub fn record_failure_not_before(
        &mut self,
        destination: &str,
        error: &str,
        now: DateTime<Utc>,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>> {
        self.position(destination)?;
        let now = now.trunc_subsecs(0);
        let error = error.replace(['\n', '\r'], " ");
        let failures = self
            .attempts
            .get(destination)
            .map_or(0, |a| a.failures)
            .saturating_add(1);
        let next_retry = (now + backoff(failures)).max(not_before.unwrap_or(now));
        self.attempts.insert(
            destination.to_string(),
            Attempts {
                failures,
                last_attempt: now,
                last_error: error.clone(),
                next_retry,
            },
        );
        self.history.push(format!(
            "{} attempt {failures} for {destination} failed: {error}; next try after {}",
            format_time(&now),
            format_time(&next_retry)
        ));
        Ok(next_retry)
    }

    /// Adds the destinations of `names` the order does not list yet, with
    /// a history line saying `why`; true when any was added.
    pub fn add_destinations(&mut self, names: &[String], now: DateTime<Utc>, why: &str) -> bool {
        let added: Vec<String> = names
            .iter()
            .filter(|name| !self.destinations.contains(name))
            .cloned()
            .collect();
        if added.is_empty() {
            return false;
        }
        self.destinations.extend(added.iter().cloned());
        self.note(now, &format!("{why}: now also for {}", added.join(", ")));
        true
    }

    /// Adds a line to the history, stamped with `now`.
    pub fn note(&mut self, now: DateTime<Utc>, what: &str) {
        self.history.push(format!(
            "{} {}",
            format_time(&now.trunc_subsecs(0)),
            what.replace(['\n', '\r'], " ")
        ));
    }

    /// Checks that the packet in `store` has the size and SHA-256 the
    /// order records.
    pub fn verify_packet(&self, store: &dyn BayStore) -> Result<()> {
        let (sha256, size) = hash_entry(store, &self.packet)?;
        let why = if size != self.size {
            format!("size {size}, the order says {}", self.size)
        } else if !sha256.eq_ignore_ascii_case(&self.sha256) {
            format!("SHA-256 {sha256}, the order says {}", self.sha256)
        } else {
            return Ok(());
        };
        Err(Error::PacketMismatch {
            bay: store.describe(),
            packet: self.packet.clone(),
            why,
        })
    }

    fn position(&self, destination: &str) -> Result<usize> {
        self.destinations
            .iter()
            .position(|d| d == destination)
            .ok_or_else(|| Error::NotADestination {
                packet: self.packet.clone(),
                destination: destination.to_string(),
            })
    }
}

/// What a bay holds, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BayListing {
    /// Packets with their order beside them: the ones to ship.
    pub ordered: Vec<String>,
    /// Packets without an order: received for a local replica, or written
    /// by hand (`-out`); never shipped.
    pub unordered: Vec<String>,
    /// Orders whose packet is missing: left over from an interrupted
    /// removal or move.
    pub orphan_orders: Vec<String>,
}

/// Sorts a bay's entries into packets with and without orders, and orders
/// without packets.
pub fn list_bay(store: &dyn BayStore) -> Result<BayListing> {
    let names = store.list()?;
    let present = |name: &str| names.binary_search_by(|n| n.as_str().cmp(name)).is_ok();
    let mut listing = BayListing::default();
    for name in &names {
        match packet_of(name) {
            Some(packet) if !present(packet) => listing.orphan_orders.push(name.clone()),
            Some(_) => {}
            None if present(&order_name(name)) => listing.ordered.push(name.clone()),
            None => listing.unordered.push(name.clone()),
        }
    }
    Ok(listing)
}

/// Removes a packet and its order from `store`: the packet first, so a
/// crash in between leaves an order whose packet is gone (which says what
/// happened) rather than a packet no order accounts for.
pub fn remove_with_order(store: &dyn BayStore, packet: &str) -> Result<()> {
    // Gone already: another server (sharing an S3 bay) removed it.
    for entry in [packet.to_string(), order_name(packet)] {
        match store.remove(&entry) {
            Err(err) if !err.is_not_found() => return Err(err),
            _ => {}
        }
    }
    Ok(())
}

/// Moves a packet and its order to another bay: the packet first, then the
/// order, so the target never holds an order whose packet is incomplete.
pub fn move_with_order(from: &dyn BayStore, to: &dyn BayStore, packet: &str) -> Result<()> {
    let order = order_name(packet);
    from.move_to(packet, to, packet)?;
    from.move_to(&order, to, &order)
}

/// SHA-256 (hex) and size of an entry, read as a stream.
pub fn hash_entry(store: &dyn BayStore, name: &str) -> Result<(String, u64)> {
    let mut reader = store.open(name)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(store.error(name, err)),
        };
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn check_destinations<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut list: Vec<String> = Vec::new();
    for name in names {
        validate_name(name).map_err(|m| format!("destination: {m}"))?;
        if !list.iter().any(|d| d == name) {
            list.push(name.to_string());
        }
    }
    if list.is_empty() {
        return Err("an order needs at least one destination".into());
    }
    Ok(list)
}

mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("bad time {text:?}: {e}")))
    }
}
