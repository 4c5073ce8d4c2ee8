//! Working through shipping orders: what `shipping_server -poll`,
//! `shipping_server ORDER…` and `syncreplica -export -fship` do.
//!
//! For each order in an outgoing bay: an expired one goes, with its packet,
//! to the return bay and the administrator is told; otherwise each
//! destination whose turn has come is delivered through the next hop of
//! its route (a local replica's packet is copied into the incoming bay).
//! A delivered destination leaves the order, which is saved after every
//! hop so that a crash repeats at most one delivery (receivers ignore
//! duplicates). A failed delivery is recorded with its backoff and tried
//! again at a later pass. When no destination is left, the packet and its
//! order are removed.
//!
//! One pass at a time works on a directory bay: passes take an exclusive
//! lock on the bay's `.lock` file, so a daemon, a cron job and `-fship`
//! never deliver the same order twice at once. On a bay shared by several
//! servers (S3) each order is claimed instead, while it is worked on
//! ([`BayStore::claim_order`]): servers work on different orders at once,
//! and one that finds its claim lost stops working on that order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::bay::{
    copy_between, open_bay, Bay, BayStore, DirLock, DirStore, OrderClaim, ENTRIES_LOCK, PASS_LOCK,
};
use crate::config::{Hop, ShippingConfig, StorageClass};
use crate::error::{Error, Result};
use crate::notify::{self, Notice};
use crate::order::{
    format_time, list_bay, move_with_order, order_name, packet_of, remove_with_order, ShippingOrder,
};
use crate::transport::deliver_to_dir_checked;

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Destinations reached (one packet to one destination counts once).
    pub delivered: usize,
    /// Delivery attempts that failed and will be retried.
    pub failed: usize,
    /// Packets whose delivery is complete, removed from the bay.
    pub completed: usize,
    /// Orders that expired and went to the return bay.
    pub expired: usize,
    /// Orders with nothing due yet (waiting for their retry time).
    pub waiting: usize,
    /// Orders or packets that could not be worked on (unreadable order,
    /// packet that no longer matches it, a bay that cannot be read).
    pub errors: usize,
}

impl PassReport {
    fn add(&mut self, other: &PassReport) {
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.completed += other.completed;
        self.expired += other.expired;
        self.waiting += other.waiting;
        self.errors += other.errors;
    }

    /// True when nothing failed.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.errors == 0
    }

    /// Whether a polling server logs this pass's summary, `last` being the
    /// previous pass's report: when something happened (a delivery, a
    /// failure, a completion, an expiry, an error) or the counts changed,
    /// so that orders left waiting do not repeat the same line every pass.
    pub fn worth_saying(&self, last: Option<&PassReport>) -> bool {
        let happened =
            self.delivered + self.failed + self.completed + self.expired + self.errors > 0;
        *self != PassReport::default() && (happened || last != Some(self))
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} delivered, {} failed (retried later), {} complete, {} expired, {} waiting, {} errors",
            self.delivered, self.failed, self.completed, self.expired, self.waiting, self.errors
        )
    }
}

/// Which destinations of an order a pass attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Those that never failed and those whose backoff has passed.
    AfterBackoff,
    /// All of them: the administrator named the order.
    Now,
}

/// Works through shipping orders.
pub struct Shipper<'a> {
    pub config: &'a ShippingConfig,
    /// Gets one line per event.
    pub log: &'a (dyn Fn(&str) + Sync),
}

impl Shipper<'_> {
    /// Works through every order in the outgoing bays of `classes`.
    pub fn poll(&self, classes: &[String], now: DateTime<Utc>) -> Result<PassReport> {
        let mut report = PassReport::default();
        for class_name in classes {
            let class = self.config.class(class_name)?;
            let outgoing = open_bay(class, Bay::Outgoing)?;
            let outgoing = outgoing.as_ref();
            let _lock = pass_lock(outgoing)?;
            let listing = match list_bay(outgoing) {
                Ok(listing) => listing,
                Err(err) => {
                    self.say(&format!("error: {err}"));
                    report.errors += 1;
                    continue;
                }
            };
            let adopted = self.clean_up(outgoing, class_name, class, &listing, now);
            self.sweep_dead_claims(outgoing, &listing);
            if class.s3.is_none() {
                self.sweep_abandoned(&[class.outgoing_dir(), class.incoming_dir()], now);
            }
            let mut work: Vec<&String> = listing.ordered.iter().chain(&adopted).collect();
            if outgoing.claims_orders() {
                // Servers sharing the bay start at different places in
                // it, so that they seldom try to claim the same order.
                let start = usize::try_from(random_seed()).unwrap_or(0) % work.len().max(1);
                work.rotate_left(start);
            }
            for packet in work {
                report.add(&self.process(outgoing, class, packet, now, Due::AfterBackoff));
            }
        }
        // A server killed while copying into a directory destination (a
        // USB stick, a relay's drop folder) leaves its temporary file
        // there; nothing else would ever remove it.
        let drops: Vec<PathBuf> = self
            .config
            .destinations
            .values()
            .filter_map(|hop| match hop {
                Hop::Dir(dir) => Some(dir.clone()),
                Hop::Url(_) => None,
            })
            .collect();
        self.sweep_abandoned(&drops, now);
        Ok(report)
    }

    /// Works through the orders of `packets` (file names in the outgoing
    /// bay of `class_name`) only: `-fship`. Every remaining destination is
    /// attempted now, backoff or not: a shipping_server pass may have
    /// failed the order (and set a backoff) between its queueing and this
    /// call, and `-fship` must report its own attempt, not a silent wait.
    /// An order another process delivered meanwhile is said so (and is no
    /// failure); one another server holds the claim of counts as an error
    /// (this call delivered nothing of it).
    pub fn ship(
        &self,
        class_name: &str,
        packets: &[String],
        now: DateTime<Utc>,
    ) -> Result<PassReport> {
        let class = self.config.class(class_name)?;
        let outgoing = open_bay(class, Bay::Outgoing)?;
        let outgoing = outgoing.as_ref();
        let _lock = pass_lock(outgoing)?;
        let mut report = PassReport::default();
        for packet in packets {
            // Under the pass lock (a directory bay) the order is as the
            // last pass left it: gone means delivered everywhere.
            if !outgoing.exists(&order_name(packet)).unwrap_or(true) {
                self.say(&format!(
                    "{packet}: already delivered by another process (shipping_server), its order is complete"
                ));
                continue;
            }
            let one = self.process(outgoing, class, packet, now, Due::Now);
            if one == PassReport::default() && outgoing.exists(&order_name(packet)).unwrap_or(true)
            {
                // Left to the server holding its claim (said by process).
                self.say(&format!(
                    "{packet}: not delivered by this command: another process is delivering it"
                ));
                report.errors += 1;
            }
            report.add(&one);
        }
        Ok(report)
    }

    /// Works through the orders named on a command line: each path is an
    /// order file or its packet, in any directory; the order's storage
    /// class gives the incoming and return bays. Every remaining
    /// destination is attempted at once, backoff or not: naming an order
    /// is asking for it. Every order named is checked first (found,
    /// readable, of a storage class the configuration has): one that is
    /// not refuses them all, before anything is delivered. An order named
    /// twice is worked through once.
    pub fn process_paths(&self, paths: &[PathBuf], now: DateTime<Utc>) -> Result<PassReport> {
        let mut named: Vec<(PathBuf, String)> = Vec::new();
        let mut in_s3: Vec<(String, &StorageClass, String)> = Vec::new();
        for path in paths {
            // An order in an S3 bay, named by its URL.
            if let Some(url) = path.to_str().filter(|p| p.starts_with("s3://")) {
                let (class_name, class, packet) = self.s3_order(url)?;
                let bay = open_bay(class, Bay::Outgoing)?;
                ShippingOrder::load(bay.as_ref(), &packet)?;
                if !in_s3
                    .iter()
                    .any(|(c, _, p)| *c == class_name && *p == packet)
                {
                    in_s3.push((class_name, class, packet));
                }
                continue;
            }
            let (dir, packet) = split_order_path(path)?;
            let order = ShippingOrder::load(&DirStore::new(&dir), &packet)?;
            self.config.class(&order.storage_class)?;
            if !named.contains(&(dir.clone(), packet.clone())) {
                named.push((dir, packet));
            }
        }
        let mut report = PassReport::default();
        for (_, class, packet) in in_s3 {
            // Claimed like any pass's orders: one held by another server
            // is left to it (and said so).
            let bay = open_bay(class, Bay::Outgoing)?;
            report.add(&self.process(bay.as_ref(), class, &packet, now, Due::Now));
        }
        for (dir, packet) in named {
            let store = DirStore::new(&dir);
            let _lock = DirLock::take(&dir, PASS_LOCK)?;
            // Read again under the lock: a pass may have changed it since.
            let class = ShippingOrder::load(&store, &packet)
                .and_then(|order| self.config.class(&order.storage_class));
            match class {
                Ok(class) => report.add(&self.process(&store, class, &packet, now, Due::Now)),
                Err(err) => {
                    self.say(&format!("error: {err}"));
                    report.errors += 1;
                }
            }
        }
        Ok(report)
    }

    /// The storage class whose outgoing bay on S3 holds the order or packet
    /// `url` (`s3://BUCKET/PREFIX/outgoing/NAME[.order]`), and the packet's
    /// name.
    fn s3_order<'c>(&'c self, url: &str) -> Result<(String, &'c StorageClass, String)> {
        let (bay, name) = url.rsplit_once('/').unwrap_or((url, ""));
        let bad = |message: String| Error::Order {
            bay: bay.to_string(),
            name: name.to_string(),
            message,
        };
        let packet = packet_of(name).unwrap_or(name).to_string();
        crate::bay::check_name(bay, &packet)?;
        for (class_name, class) in &self.config.classes {
            let Some(s3) = &class.s3 else { continue };
            let outgoing = format!(
                "{}/{}",
                s3.storage_url.trim_end_matches('/'),
                Bay::Outgoing.name()
            );
            if outgoing == bay {
                return Ok((class_name.clone(), class, packet));
            }
        }
        Err(bad(
            "not in the outgoing bay of any storage class on S3 in the shipping configuration \
             (expected s3://BUCKET/PREFIX/outgoing/PACKET.order, PREFIX a class's storage_bay)"
                .into(),
        ))
    }

    /// Removes orders whose packet is gone (what an interrupted removal
    /// leaves: packets always go first), and deals with packets that have
    /// no order (an export or mkorder cut off between the two): one sent
    /// by a replica of this host (`local_replicas`) is queued for the
    /// targets in its header, as `mkorder -data` would; another is pointed
    /// at. Returns the packets queued.
    fn clean_up(
        &self,
        outgoing: &dyn BayStore,
        class_name: &str,
        class: &StorageClass,
        listing: &crate::order::BayListing,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        let mut adopted = Vec::new();
        for order in &listing.orphan_orders {
            let packet = packet_of(order).unwrap_or_default();
            let removed = outgoing.lock(ENTRIES_LOCK).and_then(|_entries| {
                // Looked at again under the lock: a packet may have been
                // placed since the listing.
                if outgoing.exists(packet)? {
                    return Ok(());
                }
                // Servers sharing the bay all find the leftover: gone
                // already is another one's removal, not an error.
                match outgoing.remove(order) {
                    Err(err) if err.is_not_found() => Ok(()),
                    removed => removed,
                }
            });
            if let Err(err) = removed {
                self.say(&format!("error: removing leftover order {order}: {err}"));
            }
        }
        for packet in &listing.unordered {
            let old_enough = outgoing
                .modified(packet)
                .is_ok_and(|t| t + chrono::Duration::minutes(1) < now);
            if !old_enough {
                continue;
            }
            match self.adopt(outgoing, class_name, class, packet, now) {
                Ok(true) => {
                    adopted.push(packet.clone());
                    continue;
                }
                Ok(false) => {}
                Err(err) => self.say(&format!("error: queueing {packet}: {err}")),
            }
            self.say(&format!(
                "warning: {packet} in {} has no shipping order and is not shipped; \
                 queue it with mkorder -data {}/{packet}",
                outgoing.describe(),
                outgoing.describe()
            ));
        }
        adopted
    }

    /// Queues `packet`, lying in `outgoing` without an order, if a replica
    /// of this host sent it: the orders of an export killed before it wrote
    /// them. Returns whether it did.
    fn adopt(
        &self,
        outgoing: &dyn BayStore,
        class_name: &str,
        class: &StorageClass,
        packet: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // The packet format reads a file: a packet in an S3 bay is looked
        // at through a local copy.
        let copy;
        let path = match outgoing.local_dir() {
            Some(dir) => dir.join(packet),
            None => {
                copy = tempfile::NamedTempFile::new().map_err(|e| outgoing.error(packet, e))?;
                let mut reader = outgoing.open(packet)?;
                std::io::copy(&mut reader, &mut copy.as_file())
                    .map_err(|e| outgoing.error(packet, e))?;
                copy.path().to_path_buf()
            }
        };
        let exam = packet_format::examine_packet(&path, &[]);
        let Some(header) = exam.header.filter(|_| exam.error.is_none()) else {
            return Ok(false);
        };
        if !self.config.is_local(&header.sender.name) || header.targets.is_empty() {
            return Ok(false);
        }
        let destinations: Vec<&str> = header.targets.iter().map(|t| t.name.as_str()).collect();
        let _entries = outgoing.lock(ENTRIES_LOCK)?;
        if outgoing.exists(&order_name(packet))? {
            return Ok(false);
        }
        let order = ShippingOrder::create(outgoing, packet, class_name, class, &destinations, now)?;
        order.save(outgoing)?;
        self.say(&format!(
            "queued {packet} in {} for {}: a packet of local replica {} left without a shipping order (an interrupted export)",
            outgoing.describe(),
            destinations.join(", "),
            header.sender.name
        ));
        Ok(true)
    }

    /// Removes the claim objects (`.claim-PACKET`) of servers that died
    /// after their order was done (or returned): their lease has run out
    /// and the order is gone, so nobody will take them over. A claim whose
    /// order is still there is left: the next server to claim the order
    /// takes it over. Nothing for a bay without claims.
    #[cfg(feature = "s3")]
    fn sweep_dead_claims(&self, outgoing: &dyn BayStore, listing: &crate::order::BayListing) {
        let Some(store) = outgoing.s3() else {
            return;
        };
        let claims = match store.list_starting(crate::s3::CLAIM_PREFIX) {
            Ok(claims) => claims,
            Err(err) => {
                self.say(&format!(
                    "error: listing the claims in {}: {err}",
                    store.describe()
                ));
                return;
            }
        };
        for (name, _, _) in claims {
            let packet = &name[crate::s3::CLAIM_PREFIX.len()..];
            if listing.ordered.iter().any(|p| p == packet) {
                continue;
            }
            match store.remove_dead_claim(&name, &order_name(packet)) {
                Ok(Some(holder)) => self.say(&format!(
                    "removed {name} in {}: the claim of {holder}, which stopped before \
                     releasing it; its order is done",
                    store.describe()
                )),
                Ok(None) => {}
                Err(err) => self.say(&format!("error: removing {name}: {err}")),
            }
        }
    }

    #[cfg(not(feature = "s3"))]
    fn sweep_dead_claims(&self, _outgoing: &dyn BayStore, _listing: &crate::order::BayListing) {}

    /// Removes temporary files (`.tmp-*`) untouched for a day: what writes
    /// cut off by a crash leave. A write in progress touches its file far
    /// more often than that (uploads time out after `idle_timeout`).
    fn sweep_abandoned(&self, dirs: &[PathBuf], now: DateTime<Utc>) {
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with(crate::bay::TEMP_PREFIX) {
                    continue;
                }
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| DateTime::<Utc>::from(t) + chrono::Duration::days(1) < now);
                if stale {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => self.say(&format!(
                            "removed {}, a temporary file abandoned a day ago or more",
                            entry.path().display()
                        )),
                        Err(err) => self.say(&format!(
                            "error: removing {}: {err}",
                            entry.path().display()
                        )),
                    }
                }
            }
        }
    }

    fn say(&self, line: &str) {
        (self.log)(line);
    }

    /// One order: expiry, then each due destination through its hop.
    fn process(
        &self,
        out: &dyn BayStore,
        class: &StorageClass,
        packet: &str,
        now: DateTime<Utc>,
        due: Due,
    ) -> PassReport {
        let mut report = PassReport::default();
        let claim = match out.claim_order(packet) {
            Ok(Some(claim)) => claim,
            // Another server is working on it.
            Ok(None) => {
                if due == Due::Now {
                    self.say(&format!(
                        "{packet}: another server is working on its order (it holds the claim); left to it"
                    ));
                }
                return report;
            }
            Err(err) => {
                self.say(&format!("error: claiming the order of {packet}: {err}"));
                report.errors += 1;
                return report;
            }
        };
        let claim = claim.as_ref();
        // The order is read once claimed: what the previous holder saved
        // last. Gone means another server finished it since the listing.
        if out.claims_orders() && !matches!(out.exists(&order_name(packet)), Ok(true) | Err(_)) {
            return report;
        }
        // Transfers read the packet through this view, which fails once
        // the claim is lost: the transfer stops there.
        let guarded = Guarded {
            inner: out,
            claim,
            packet,
        };
        let mut order = match ShippingOrder::load(out, packet) {
            Ok(order) => order,
            Err(err) => {
                self.say(&format!("error: {err}"));
                report.errors += 1;
                return report;
            }
        };
        // What this pass set out with: destinations a concurrent upload
        // adds meanwhile are kept when the order is saved.
        let original = order.destinations.clone();
        if order.is_expired(now) {
            match self.expire(out, class, &mut order, claim, now) {
                Ok(()) => report.expired += 1,
                Err(err) => {
                    self.say(&format!("error: returning expired {packet}: {err}"));
                    report.errors += 1;
                }
            }
            return report;
        }
        let due: Vec<String> = match due {
            Due::AfterBackoff => order.due(now).into_iter().map(str::to_string).collect(),
            Due::Now => order.destinations.clone(),
        };
        if due.is_empty() {
            report.waiting += 1;
            return report;
        }

        // Destinations by the hop that takes them; local ones apart.
        // `unsaved` says the order changed since it was last written.
        let mut unsaved = false;
        let mut local: Vec<String> = Vec::new();
        let mut hops: BTreeMap<String, (Hop, Vec<String>)> = BTreeMap::new();
        for destination in &due {
            match self.config.next_hop(destination) {
                Ok(None) => local.push(destination.clone()),
                Ok(Some(next)) => hops
                    .entry(next.name)
                    .or_insert_with(|| (next.hop, Vec::new()))
                    .1
                    .push(destination.clone()),
                Err(err) => {
                    self.failed(&mut order, packet, destination, "routing", &err, now, None);
                    // Not a transient failure: said as what to change.
                    self.say(&format!(
                        "error: shipping.toml has no way to {destination}: add [destinations.{destination}] \
                         (url or dir), a [routes] entry or default_route; a polling server re-reads \
                         the file at its next pass"
                    ));
                    report.failed += 1;
                    unsaved = true;
                }
            }
        }

        if !local.is_empty() {
            let outcome = open_bay(class, Bay::Incoming).and_then(|incoming| {
                order.verify_packet(&guarded)?;
                copy_between(&guarded, packet, incoming.as_ref(), packet)?;
                Ok(incoming.describe())
            });
            if self.stopped_by_lost_claim(out, packet, "the incoming bay", &outcome, claim) {
                return report;
            }
            self.settle(
                &mut order,
                packet,
                &local,
                "the incoming bay",
                outcome,
                (now, None),
                &mut report,
            );
            unsaved = true;
        }

        for (hop_name, (hop, destinations)) in hops {
            if order.is_complete() {
                break;
            }
            // Saved before each hand-over, so a crash repeats at most one.
            if unsaved && !self.persist(out, &mut order, &original, claim, now, &mut report) {
                return report;
            }
            // A paid link outside its hours waits, with no failed attempt.
            let link = self.config.link(&hop_name);
            let until = match link.window_at(now) {
                Ok(end) => end,
                Err(opens) => {
                    // Said, and noted in the order, once per change: not
                    // at every pass of every server.
                    let waiting = format!(
                        "waiting for {hop_name}'s hours ({}), from {}",
                        link.hours.map(|h| h.to_string()).unwrap_or_default(),
                        crate::order::format_time(&opens)
                    );
                    if !order.history.last().is_some_and(|l| l.ends_with(&waiting)) {
                        self.say(&format!("{packet}: {waiting}"));
                        order.note(now, &waiting);
                        unsaved = true;
                    }
                    report.waiting += 1;
                    continue;
                }
            };
            let began = std::time::Instant::now();
            let names: Vec<&str> = destinations.iter().map(String::as_str).collect();
            let outcome =
                match &hop {
                    // Said as the HTTP transport says a repeated hand-over.
                    Hop::Dir(dir) => deliver_to_dir_checked(&guarded, packet, dir, &names, now)
                        .map(|(_, held)| match held {
                            true => {
                                format!("{}: {packet}: already stored there whole", dir.display())
                            }
                            false => dir.display().to_string(),
                        }),
                    Hop::Url(url) => {
                        let limit = crate::http::Limit {
                            max_rate: link.max_rate,
                            until: until.map(|end| {
                                let hours = link.hours.map(|h| h.to_string()).unwrap_or_default();
                                (end, format!("{hop_name}'s hours ({hours}) ended"))
                            }),
                        };
                        crate::http::upload_limited(url, &guarded, &order, &names, &limit)
                            .map(|answer| format!("{url}: {answer}"))
                    }
                };
            if self.stopped_by_lost_claim(out, packet, &hop_name, &outcome, claim) {
                return report;
            }
            // A failure is dated when it happened (a transfer takes time),
            // and one the window's end cut is tried again when the window
            // opens next, not at a time already past or while it is shut.
            let failed_at = now + chrono::Duration::from_std(began.elapsed()).unwrap_or_default();
            let reopens = link.window_at(failed_at).err();
            self.settle(
                &mut order,
                packet,
                &destinations,
                &hop_name,
                outcome,
                (failed_at, reopens),
                &mut report,
            );
            unsaved = true;
        }
        if unsaved {
            self.persist(out, &mut order, &original, claim, now, &mut report);
        }
        report
    }

    /// Saves the order (or removes it with its packet when complete);
    /// false, after logging why, when that failed.
    fn persist(
        &self,
        out: &dyn BayStore,
        order: &mut ShippingOrder,
        original: &[String],
        claim: &dyn OrderClaim,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> bool {
        match self.save(out, order, original, claim, now, report) {
            Ok(()) => true,
            // Not an error of the bay: this server stalled, another one
            // carries on with the order.
            Err(err @ Error::ClaimLost { .. }) => {
                self.say(&err.to_string());
                false
            }
            Err(err) => {
                self.say(&format!("error: {err}"));
                report.errors += 1;
                false
            }
        }
    }

    /// True (after saying so) when a hand-over failed because this server
    /// lost its claim on the order meanwhile: that is no failed attempt
    /// of the destination, and nothing of it is counted or recorded in
    /// the order (which this server no longer writes): the order is the
    /// work of the server that holds the claim now.
    fn stopped_by_lost_claim(
        &self,
        out: &dyn BayStore,
        packet: &str,
        hop_name: &str,
        outcome: &Result<String>,
        claim: &dyn OrderClaim,
    ) -> bool {
        if outcome.is_ok() {
            return false;
        }
        match check_claim(out, packet, claim) {
            Ok(()) => false,
            Err(lost) => {
                self.say(&format!(
                    "{lost} (the transfer via {hop_name} stopped; not counted as a failed attempt)"
                ));
                true
            }
        }
    }

    /// Records the outcome of one hand-over for `destinations`.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        order: &mut ShippingOrder,
        packet: &str,
        destinations: &[String],
        hop_name: &str,
        outcome: Result<String>,
        (now, not_before): (DateTime<Utc>, Option<DateTime<Utc>>),
        report: &mut PassReport,
    ) {
        match outcome {
            Ok(answer) => {
                for destination in destinations {
                    if order.mark_delivered(destination, now).is_ok() {
                        report.delivered += 1;
                    }
                }
                self.say(&format!(
                    "delivered {packet} for {} via {hop_name} ({answer})",
                    destinations.join(", ")
                ));
            }
            // Another upload of the packet is still being received there
            // (the hop answered 409 each time): not the link failing, so
            // no failed attempt and no backoff; the next pass asks again.
            Err(err @ Error::Busy { .. }) => self.say(&format!(
                "not sent {packet} for {} via {hop_name}: {err}; tried again in the next pass",
                destinations.join(", ")
            )),
            Err(err) => {
                for destination in destinations {
                    self.failed(order, packet, destination, hop_name, &err, now, not_before);
                    report.failed += 1;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn failed(
        &self,
        order: &mut ShippingOrder,
        packet: &str,
        destination: &str,
        hop_name: &str,
        err: &Error,
        now: DateTime<Utc>,
        not_before: Option<DateTime<Utc>>,
    ) {
        let error = err.to_string();
        match order.record_failure_not_before(destination, &error, now, not_before) {
            Ok(next) => self.say(&format!(
                "failed {packet} for {destination} via {hop_name}: {error}; next try after {}",
                format_time(&next)
            )),
            Err(other) => self.say(&format!("error: {other}")),
        }
    }

    /// Saves the order, or removes packet and order when it is complete.
    /// Destinations added on disk since the pass read the order (the same
    /// packet received again for more destinations) are kept.
    fn save(
        &self,
        out: &dyn BayStore,
        order: &mut ShippingOrder,
        original: &[String],
        claim: &dyn OrderClaim,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<()> {
        let _entries = out.lock(ENTRIES_LOCK)?;
        // A server that lost its claim leaves the order to the one that
        // holds it now (which read the order as it was saved last).
        check_claim(out, &order.packet, claim)?;
        if let Ok(on_disk) = ShippingOrder::load(out, &order.packet) {
            let added: Vec<String> = on_disk
                .destinations
                .iter()
                .filter(|d| !original.contains(d))
                .cloned()
                .collect();
            order.add_destinations(&added, now, "added while this pass ran");
        }
        if order.is_complete() {
            remove_with_order(out, &order.packet)?;
            report.completed += 1;
            self.say(&format!("{}: delivered everywhere, removed", order.packet));
            Ok(())
        } else {
            order.save(out)
        }
    }

    /// Moves an expired packet and its order to the return bay and tells
    /// the administrator.
    fn expire(
        &self,
        out: &dyn BayStore,
        class: &StorageClass,
        order: &mut ShippingOrder,
        claim: &dyn OrderClaim,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let returned = open_bay(class, Bay::Return)?;
        let returned = returned.as_ref();
        {
            let _entries = out.lock(ENTRIES_LOCK)?;
            // Returned, and the administrator told, by the claim's holder
            // only: once.
            check_claim(out, &order.packet, claim)?;
            // The order as it stands now, with anything added meanwhile.
            if let Ok(on_disk) = ShippingOrder::load(out, &order.packet) {
                *order = on_disk;
            }
            order.note(
                now,
                &format!(
                    "expired before reaching {}; moved to the return bay {}",
                    order.destinations.join(", "),
                    returned.describe()
                ),
            );
            order.save(out)?;
            move_with_order(out, returned, &order.packet)?;
        }
        let subject = format!("syncreplica: packet {} expired undelivered", order.packet);
        let body = format!(
            "The packet {packet} expired at {expires} before it reached {destinations}.\n\
             It was created at {created} and has been moved to the return bay:\n\
             \x20   {bay}/{packet}\n\
             Its shipping order beside it tells what was tried:\n\
             \x20   {bay}/{order_file}\n\
             To send it again, once the route works:\n\
             \x20   mkorder -data {bay}/{packet} {destinations_args}\n",
            packet = order.packet,
            expires = format_time(&order.expires),
            destinations = order.destinations.join(", "),
            created = format_time(&order.created),
            bay = returned.describe(),
            order_file = order_name(&order.packet),
            destinations_args = order.destinations.join(" "),
        );
        self.say(&format!(
            "expired {}: moved to the return bay {}",
            order.packet,
            returned.describe()
        ));
        if let Some(command) = &self.config.notify {
            let notice = Notice {
                event: "expired",
                packet: order.packet.clone(),
                subject,
                body,
            };
            match notify::run(command, &notice) {
                Ok(()) => self.say(&format!("notified: {}", notice.subject)),
                Err(err) => self.say(&format!("error: {err}")),
            }
        }
        Ok(())
    }
}

/// The pass lock of a bay whose passes exclude each other as a whole; none
/// for a bay whose orders are claimed one by one.
fn pass_lock(outgoing: &dyn BayStore) -> Result<Option<Box<dyn Send>>> {
    if outgoing.claims_orders() {
        Ok(None)
    } else {
        outgoing.lock(PASS_LOCK).map(Some)
    }
}

/// Refuses to go on with an order whose claim this server lost.
fn check_claim(out: &dyn BayStore, packet: &str, claim: &dyn OrderClaim) -> Result<()> {
    if claim.held() {
        Ok(())
    } else {
        Err(Error::ClaimLost {
            bay: out.describe(),
            packet: packet.to_string(),
            why: "its lease ran out or another server took it over".into(),
        })
    }
}

/// A number that differs between processes and passes.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A bay seen through a claim on one order: reads of entries fail once
/// the claim is lost, so a transfer in progress stops (and writes nothing
/// at its target: writes there are atomic).
struct Guarded<'a> {
    inner: &'a dyn BayStore,
    claim: &'a dyn OrderClaim,
    packet: &'a str,
}

impl Guarded<'_> {
    fn check(&self) -> Result<()> {
        check_claim(self.inner, self.packet, self.claim)
    }
}

/// A reader that fails once the claim is lost.
struct GuardedReader<'a> {
    inner: Box<dyn std::io::Read + Send + 'a>,
    claim: &'a dyn OrderClaim,
}

impl std::io::Read for GuardedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.claim.held() {
            return Err(std::io::Error::other(
                "claim on the shipping order lost (its lease ran out or another server took it \
                 over); transfer stopped",
            ));
        }
        self.inner.read(buf)
    }
}

impl BayStore for Guarded<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn local_dir(&self) -> Option<&Path> {
        self.inner.local_dir()
    }
    fn list(&self) -> Result<Vec<String>> {
        self.inner.list()
    }
    fn exists(&self, name: &str) -> Result<bool> {
        self.inner.exists(name)
    }
    fn size(&self, name: &str) -> Result<u64> {
        self.inner.size(name)
    }
    fn open(&self, name: &str) -> Result<Box<dyn std::io::Read + Send + '_>> {
        self.check()?;
        Ok(Box::new(GuardedReader {
            inner: self.inner.open(name)?,
            claim: self.claim,
        }))
    }
    fn write_from(&self, name: &str, reader: &mut dyn std::io::Read) -> Result<u64> {
        self.check()?;
        self.inner.write_from(name, reader)
    }
    fn remove(&self, name: &str) -> Result<()> {
        self.check()?;
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.check()?;
        self.inner.rename(from, to)
    }
    fn modified(&self, name: &str) -> Result<DateTime<Utc>> {
        self.inner.modified(name)
    }
    fn lock(&self, name: &str) -> Result<Box<dyn Send>> {
        self.inner.lock(name)
    }
    fn claims_orders(&self) -> bool {
        self.inner.claims_orders()
    }
    #[cfg(feature = "s3")]
    fn s3(&self) -> Option<&crate::s3::S3Store> {
        self.inner.s3()
    }
}

/// The bay directory and packet name of an order path (`X.zip.order`) or
/// a packet path (`X.zip`).
pub fn split_order_path(path: &Path) -> Result<(PathBuf, String)> {
    let bad = |why: &str| Error::Order {
        bay: path
            .parent()
            .map_or_else(|| ".".to_string(), |p| p.display().to_string()),
        // The bay is the folder; the order is named by its file name
        // (the whole path once, not twice).
        name: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        message: why.to_string(),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("not a file name"))?;
    let packet = packet_of(name).unwrap_or(name).to_string();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.join(order_name(&packet)).is_file() {
        return Err(bad(
            "no shipping order found (expected PACKET.order beside the packet)",
        ));
    }
    Ok((dir, packet))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::test_packets::*;

    const NOW: &str = "2026-11-21T10:00:00Z";

    /// A log that pushes each line into `lines`.
    fn pushing_into(lines: &Mutex<Vec<String>>) -> impl Fn(&str) + Sync + '_ {
        move |line: &str| lines.lock().unwrap().push(line.to_string())
    }

    struct Setup {
        dir: tempfile::TempDir,
        config: ShippingConfig,
        lines: Mutex<Vec<String>>,
    }

    impl Setup {
        fn new() -> Setup {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config(dir.path());
            config.local_replicas = vec!["here".into()];
            let usb = dir.path().join("usb");
            std::fs::create_dir(&usb).unwrap();
            config.destinations.insert("usb".into(), Hop::Dir(usb));
            config
                .routes
                .insert("usb".into(), vec!["ship".into(), "lab".into()]);
            Setup {
                dir,
                config,
                lines: Mutex::new(Vec::new()),
            }
        }

        fn outgoing(&self) -> DirStore {
            DirStore::create(self.dir.path().join("bays/outgoing")).unwrap()
        }

        /// Queues a packet for `destinations`; returns its name.
        fn queue(&self, seq: u64, destinations: &[&str]) -> String {
            let path = packet(self.outgoing().dir(), destinations[0], seq, &SENDER_SECRET);
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let class = self.config.class("default").unwrap();
            ShippingOrder::create(
                &self.outgoing(),
                &name,
                "default",
                class,
                destinations,
                at(NOW),
            )
            .unwrap()
            .save(&self.outgoing())
            .unwrap();
            name
        }

        fn poll(&self, now: &str) -> PassReport {
            let log = pushing_into(&self.lines);
            self.shipper(&log)
                .poll(&["default".to_string()], at(now))
                .unwrap()
        }

        /// A shipper for this set-up's configuration whose lines go to
        /// `log`.
        fn shipper<'a>(&'a self, log: &'a (dyn Fn(&str) + Sync)) -> Shipper<'a> {
            Shipper {
                config: &self.config,
                log,
            }
        }

        fn files(&self) -> Vec<String> {
            files_under(self.dir.path())
                .into_iter()
                .filter(|f| !f.starts_with("src"))
                .collect()
        }
    }

    #[test]
    fn local_and_directory_destinations_are_delivered_and_the_order_completes() {
        let setup = Setup::new();
        let name = setup.queue(1, &["here", "ship", "lab"]);
        let report = setup.poll(NOW);
        assert_eq!(report.delivered, 3, "{report:?}");
        assert_eq!(report.completed, 1);
        assert_eq!(
            setup.files(),
            [
                format!("bays/incoming/{name}"),
                format!("usb/{name}"),
                format!("usb/{name}.order"),
            ]
        );
        let handed =
            ShippingOrder::load(&DirStore::new(setup.dir.path().join("usb")), &name).unwrap();
        assert_eq!(handed.destinations, ["ship", "lab"]);
        assert!(handed.attempts.is_empty());
    }

    #[test]
    fn a_temporary_file_abandoned_in_a_directory_destination_is_swept() {
        let setup = Setup::new();
        let usb = setup.dir.path().join("usb");
        let abandoned = usb.join(format!("{}wYeI6O", crate::bay::TEMP_PREFIX));
        let fresh = usb.join(format!("{}busy01", crate::bay::TEMP_PREFIX));
        let other = usb.join("notes.txt");
        for file in [&abandoned, &fresh, &other] {
            std::fs::write(file, b"part of a packet").unwrap();
        }
        // Two days before the pass: abandoned. The others were written now
        // (after the pass's time), as by a server still copying.
        let old = std::time::SystemTime::from(at("2026-11-19T10:00:00Z"));
        std::fs::File::options()
            .write(true)
            .open(&abandoned)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(old)
            .unwrap();
        setup.poll(NOW);
        assert!(!abandoned.exists(), "abandoned temporary file left");
        assert!(
            fresh.exists(),
            "a temporary file still being written removed"
        );
        assert!(other.exists(), "a file that is not ours removed");
        let lines = setup.lines.lock().unwrap().join("\n");
        assert!(
            lines.contains(&format!("removed {}", abandoned.display())),
            "{lines}"
        );
    }

    #[test]
    fn a_pass_summary_is_said_when_something_happened_or_changed() {
        let waiting = PassReport {
            waiting: 1,
            ..PassReport::default()
        };
        let failed = PassReport {
            failed: 1,
            ..PassReport::default()
        };
        assert!(!PassReport::default().worth_saying(None));
        assert!(waiting.worth_saying(None), "the first pass");
        assert!(!waiting.worth_saying(Some(&waiting)), "the same wait again");
        assert!(waiting.worth_saying(Some(&failed)), "counts changed");
        assert!(failed.worth_saying(Some(&failed)), "a failure is news");
    }

    #[test]
    fn a_directory_hand_over_repeated_after_a_kill_is_recognised_and_writes_nothing() {
        use std::os::unix::fs::MetadataExt;
        let setup = Setup::new();
        let name = setup.queue(1, &["ship", "lab"]);
        // The order as it stood before the pass: what a server killed
        // after the hand-over, before saving the order, leaves.
        let before = ShippingOrder::load(&setup.outgoing(), &name).unwrap();
        let packet = setup.outgoing().read(&name).unwrap();
        assert_eq!(setup.poll(NOW).completed, 1);
        let usb = setup.dir.path().join("usb");
        let inode = |file: &str| std::fs::metadata(usb.join(file)).unwrap().ino();
        let (packet_inode, order_inode) = (inode(&name), inode(&format!("{name}.order")));
        setup.outgoing().write(&name, &packet).unwrap();
        before.save(&setup.outgoing()).unwrap();
        setup.lines.lock().unwrap().clear();

        let again = setup.poll(NOW);
        assert_eq!((again.delivered, again.completed), (2, 1), "{again:?}");
        let lines = setup.lines.lock().unwrap().join("\n");
        assert!(
            lines.contains(&format!(
                "delivered {name} for ship, lab via usb ({}: {name}: already stored there whole)",
                usb.display()
            )),
            "{lines}"
        );
        // Nothing there was written again.
        assert_eq!(inode(&name), packet_inode);
        assert_eq!(inode(&format!("{name}.order")), order_inode);
    }

    /// A directory bay with its calls to `open` and `lock` replaced by
    /// `open` and `lock` (given the bay and the name): a bay that misbehaves
    /// in one way, like everything else a `DirStore`.
    struct Hooked {
        bay: DirStore,
        open: for<'a> fn(&'a DirStore, &str) -> Result<Box<dyn std::io::Read + Send + 'a>>,
        lock: fn(&DirStore, &str) -> Result<Box<dyn Send>>,
    }

    impl Hooked {
        /// `bay` with its own `open` and `lock`: change one of them.
        fn new(bay: DirStore) -> Hooked {
            Hooked {
                bay,
                open: |bay, name| bay.open(name),
                lock: |bay, name| bay.lock(name),
            }
        }
    }

    impl BayStore for Hooked {
        fn describe(&self) -> String {
            self.bay.describe()
        }
        fn list(&self) -> Result<Vec<String>> {
            self.bay.list()
        }
        fn exists(&self, name: &str) -> Result<bool> {
            self.bay.exists(name)
        }
        fn size(&self, name: &str) -> Result<u64> {
            self.bay.size(name)
        }
        fn open(&self, name: &str) -> Result<Box<dyn std::io::Read + Send + '_>> {
            (self.open)(&self.bay, name)
        }
        fn write_from(&self, name: &str, reader: &mut dyn std::io::Read) -> Result<u64> {
            self.bay.write_from(name, reader)
        }
        fn remove(&self, name: &str) -> Result<()> {
            self.bay.remove(name)
        }
        fn rename(&self, from: &str, to: &str) -> Result<()> {
            self.bay.rename(from, to)
        }
        fn modified(&self, name: &str) -> Result<DateTime<Utc>> {
            self.bay.modified(name)
        }
        fn lock(&self, name: &str) -> Result<Box<dyn Send>> {
            (self.lock)(&self.bay, name)
        }
    }

    /// A bay whose packets take 20 ms to fail to read: a transfer that
    /// runs into the end of its link's window.
    fn slow(bay: DirStore) -> Hooked {
        Hooked {
            open: |bay, name| {
                if packet_of(name).is_some() {
                    return bay.open(name);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                Err(bay.error(name, std::io::Error::other("the link went down")))
            },
            ..Hooked::new(bay)
        }
    }

    #[test]
    fn a_transfer_the_window_cut_is_tried_again_when_it_opens_and_waiting_is_said_once() {
        let mut setup = Setup::new();
        setup.config.links.insert(
            "usb".into(),
            crate::link::Link {
                max_rate: None,
                hours: Some(crate::link::Hours::parse("09:00-11:00 UTC").unwrap()),
            },
        );
        let name = setup.queue(1, &["ship"]);
        let lines = Mutex::new(Vec::new());
        let log = pushing_into(&lines);
        let shipper = setup.shipper(&log);
        let class = setup.config.class("default").unwrap();
        let slow = slow(setup.outgoing());
        // The pass starts just inside the window; the transfer fails just
        // after its end.
        let started = at("2026-11-21T10:59:59.990Z");
        let report = shipper.process(&slow, class, &name, started, Due::AfterBackoff);
        assert_eq!(report.failed, 1, "{report:?}");
        let order = ShippingOrder::load(&setup.outgoing(), &name).unwrap();
        let attempts = &order.attempts["ship"];
        assert!(
            attempts.last_attempt >= at("2026-11-21T11:00:00Z"),
            "{attempts:?}"
        );
        assert_eq!(attempts.next_retry, at("2026-11-22T09:00:00Z"));
        assert!(
            lines
                .lock()
                .unwrap()
                .last()
                .unwrap()
                .ends_with("next try after 2026-11-22T09:00:00Z"),
            "{:?}",
            lines.lock().unwrap()
        );

        // Outside the window: waiting is said, and noted in the order,
        // once; later passes (of any server) say nothing more.
        lines.lock().unwrap().clear();
        let closed = at("2026-11-22T12:00:00Z");
        let due = Due::Now;
        for _ in 0..3 {
            let report = shipper.process(&setup.outgoing(), class, &name, closed, due);
            assert_eq!(report.waiting, 1, "{report:?}");
        }
        let said = lines.lock().unwrap().clone();
        assert_eq!(
            said,
            [format!(
                "{name}: waiting for usb's hours (09:00-11:00 UTC), from 2026-11-23T09:00:00Z"
            )]
        );
        let order = ShippingOrder::load(&setup.outgoing(), &name).unwrap();
        assert!(order
            .history
            .last()
            .unwrap()
            .ends_with("waiting for usb's hours (09:00-11:00 UTC), from 2026-11-23T09:00:00Z"));
    }

    #[test]
    fn a_failure_is_recorded_and_retried_after_its_backoff() {
        let setup = Setup::new();
        let name = setup.queue(1, &["nowhere", "here"]);
        let report = setup.poll(NOW);
        assert_eq!((report.delivered, report.failed), (1, 1), "{report:?}");
        let order = ShippingOrder::load(&setup.outgoing(), &name).unwrap();
        assert_eq!(order.destinations, ["nowhere"]);
        assert_eq!(order.attempts["nowhere"].failures, 1);
        assert!(order.attempts["nowhere"].last_error.contains("no route"));
        // Before the backoff has passed nothing is tried; after it, it is.
        assert_eq!(setup.poll("2026-11-21T10:00:30Z").waiting, 1);
        let again = setup.poll("2026-11-21T10:01:00Z");
        assert_eq!(again.failed, 1, "{again:?}");
        let order = ShippingOrder::load(&setup.outgoing(), &name).unwrap();
        assert_eq!(order.attempts["nowhere"].failures, 2);
        assert!(setup
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with(&format!("failed {name} for nowhere"))));
    }

    #[test]
    fn fship_attempts_an_order_a_pass_failed_meanwhile_and_reports_it() {
        // The race of `-export -fship` with a running shipping_server: the
        // server's pass fails the order just queued (and sets a backoff)
        // before -fship takes the pass lock.
        let setup = Setup::new();
        let name = setup.queue(1, &["nowhere"]);
        assert_eq!(setup.poll(NOW).failed, 1);
        let lines = Mutex::new(Vec::<String>::new());
        let log = pushing_into(&lines);
        let shipper = setup.shipper(&log);
        let report = shipper
            .ship(
                "default",
                std::slice::from_ref(&name),
                at("2026-11-21T10:00:30Z"),
            )
            .unwrap();
        assert_eq!((report.failed, report.waiting), (1, 0), "{report:?}");
        assert!(!report.is_clean());
        assert!(
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with(&format!("failed {name} for nowhere"))),
            "{lines:?}"
        );
    }

    #[test]
    fn fship_of_an_order_delivered_meanwhile_says_so() {
        let setup = Setup::new();
        let name = setup.queue(1, &["here"]);
        assert_eq!(setup.poll(NOW).completed, 1);
        let lines = Mutex::new(Vec::<String>::new());
        let log = pushing_into(&lines);
        let shipper = setup.shipper(&log);
        let report = shipper
            .ship("default", std::slice::from_ref(&name), at(NOW))
            .unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(
            *lines.lock().unwrap(),
            [format!(
                "{name}: already delivered by another process (shipping_server), its order is complete"
            )]
        );
    }

    #[test]
    fn an_expired_order_goes_to_the_return_bay_and_notifies() {
        let mut setup = Setup::new();
        let notice = setup.dir.path().join("notice");
        setup.config.notify = Some(format!(
            "{{ echo \"$SYNCREPLICA_EVENT $SYNCREPLICA_PACKET\"; cat; }} > '{}'",
            notice.display()
        ));
        let name = setup.queue(1, &["nowhere"]);
        let report = setup.poll("2026-12-05T10:00:00Z");
        assert_eq!(report.expired, 1, "{report:?}");
        assert_eq!(
            setup.files(),
            [
                format!("bays/return/{name}"),
                format!("bays/return/{name}.order"),
                "notice".to_string(),
            ]
        );
        let told = std::fs::read_to_string(&notice).unwrap();
        assert!(told.starts_with(&format!("expired {name}\n")), "{told}");
        assert!(told.contains("before it reached nowhere"), "{told}");
        let order =
            ShippingOrder::load(&DirStore::new(setup.dir.path().join("bays/return")), &name)
                .unwrap();
        assert!(order
            .history
            .last()
            .unwrap()
            .contains("moved to the return bay"));
    }

    #[test]
    fn a_packet_that_no_longer_matches_its_order_is_not_delivered() {
        let setup = Setup::new();
        let name = setup.queue(1, &["ship"]);
        let path = setup.outgoing().dir().join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let report = setup.poll(NOW);
        assert_eq!((report.delivered, report.failed), (0, 1), "{report:?}");
        assert_eq!(
            files_under(&setup.dir.path().join("usb")),
            Vec::<String>::new(),
            "nothing written to the hop"
        );
    }

    #[test]
    fn leftover_orders_are_removed_and_unreadable_ones_reported() {
        let setup = Setup::new();
        let outgoing = setup.outgoing();
        outgoing
            .write("sync_gone.zip.order", b"format = 1\n")
            .unwrap();
        outgoing.write("sync_bad.zip", b"x").unwrap();
        outgoing
            .write("sync_bad.zip.order", b"this is not toml")
            .unwrap();
        let report = setup.poll(NOW);
        assert_eq!(report.errors, 1, "{report:?}");
        assert!(!outgoing.exists("sync_gone.zip.order").unwrap());
        assert!(
            outgoing.exists("sync_bad.zip.order").unwrap(),
            "kept for the administrator"
        );
    }

    /// A bay where another server removes the leftover order
    /// `sync_gone.zip.order` just before this one takes the entries lock.
    fn racing(bay: DirStore) -> Hooked {
        Hooked {
            lock: |bay, name| {
                if name == ENTRIES_LOCK {
                    let _ = bay.remove("sync_gone.zip.order");
                }
                bay.lock(name)
            },
            ..Hooked::new(bay)
        }
    }

    #[test]
    fn a_leftover_order_another_server_removed_first_is_no_error() {
        let setup = Setup::new();
        let outgoing = setup.outgoing();
        outgoing
            .write("sync_gone.zip.order", b"format = 1\n")
            .unwrap();
        let racing = racing(outgoing.clone());
        let listing = list_bay(&racing).unwrap();
        assert_eq!(listing.orphan_orders, ["sync_gone.zip.order"]);
        let lines = Mutex::new(Vec::new());
        let log = pushing_into(&lines);
        let shipper = setup.shipper(&log);
        let class = setup.config.class("default").unwrap();
        shipper.clean_up(&racing, "default", class, &listing, at(NOW));
        assert!(!outgoing.exists("sync_gone.zip.order").unwrap());
        assert_eq!(lines.lock().unwrap().clone(), Vec::<String>::new());
    }

    #[test]
    fn order_paths_name_the_order_or_its_packet() {
        let setup = Setup::new();
        let name = setup.queue(1, &["here"]);
        let dir = setup.outgoing().dir().to_path_buf();
        let (found_dir, packet) = split_order_path(&dir.join(format!("{name}.order"))).unwrap();
        assert_eq!(
            (found_dir.as_path(), packet.as_str()),
            (dir.as_path(), name.as_str())
        );
        assert_eq!(split_order_path(&dir.join(&name)).unwrap().1, name);
        assert!(split_order_path(&dir.join("sync_none.zip")).is_err());
        let shipper = setup.shipper(&|_| {});
        let report = shipper.process_paths(&[dir.join(&name)], at(NOW)).unwrap();
        assert_eq!(report.completed, 1);
    }

    #[test]
    fn a_directory_hop_into_another_hosts_outgoing_bay_is_delivered_there() {
        let sender = Setup::new();
        let receiver = Setup::new();
        let receiver_outgoing = receiver.outgoing();
        let mut sender_config = sender.config.clone();
        sender_config.destinations.insert(
            "share".into(),
            Hop::Dir(receiver_outgoing.dir().to_path_buf()),
        );
        sender_config
            .routes
            .insert("share".into(), vec!["here2".into()]);
        let sending = Setup {
            dir: sender.dir,
            config: sender_config,
            lines: Mutex::new(Vec::new()),
        };
        let name = sending.queue(1, &["here2"]);
        assert_eq!(sending.poll(NOW).completed, 1);

        // At the other host, "here2" is local: its pass moves the packet
        // to the incoming bay, where -import -receive finds it.
        let mut receiving = receiver;
        receiving.config.local_replicas = vec!["here2".into()];
        let report = receiving.poll(NOW);
        assert_eq!(report.completed, 1, "{report:?}");
        assert_eq!(receiving.files(), [format!("bays/incoming/{name}")]);
    }

    #[test]
    fn a_named_order_is_attempted_at_once_whatever_its_backoff() {
        let setup = Setup::new();
        let name = setup.queue(1, &["nowhere"]);
        assert_eq!(setup.poll(NOW).failed, 1);
        assert_eq!(setup.poll(NOW).waiting, 1, "backoff");
        let shipper = setup.shipper(&|_| {});
        let path = setup.outgoing().dir().join(&name);
        let report = shipper.process_paths(&[path], at(NOW)).unwrap();
        assert_eq!(report.failed, 1, "{report:?}");
        let order = ShippingOrder::load(&setup.outgoing(), &name).unwrap();
        assert_eq!(order.attempts["nowhere"].failures, 2);
    }

    /// A bay whose orders are claimed one by one (as on S3), over a
    /// directory: its claims are lost once `lose_after` bytes of a packet
    /// have been read, or at once when `busy`.
    struct Claiming {
        inner: DirStore,
        lose_after: Option<usize>,
        busy: bool,
        flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    struct FlagClaim(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl OrderClaim for FlagClaim {
        fn held(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// Reads of a packet that lose the claim after `left` bytes.
    struct Losing {
        inner: Box<dyn std::io::Read + Send + 'static>,
        left: usize,
        flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl std::io::Read for Losing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                self.flag.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            let len = buf.len().min(self.left.max(1));
            let n = self.inner.read(&mut buf[..len])?;
            self.left = self.left.saturating_sub(n);
            Ok(n)
        }
    }

    impl BayStore for Claiming {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn list(&self) -> Result<Vec<String>> {
            self.inner.list()
        }
        fn exists(&self, name: &str) -> Result<bool> {
            self.inner.exists(name)
        }
        fn size(&self, name: &str) -> Result<u64> {
            self.inner.size(name)
        }
        fn open(&self, name: &str) -> Result<Box<dyn std::io::Read + Send + '_>> {
            let file = std::fs::File::open(self.inner.path(name)?).unwrap();
            match self.lose_after {
                Some(left) if packet_of(name).is_none() => Ok(Box::new(Losing {
                    inner: Box::new(file),
                    left,
                    flag: self.flag.clone(),
                })),
                _ => Ok(Box::new(file)),
            }
        }
        fn write_from(&self, name: &str, reader: &mut dyn std::io::Read) -> Result<u64> {
            self.inner.write_from(name, reader)
        }
        fn remove(&self, name: &str) -> Result<()> {
            self.inner.remove(name)
        }
        fn rename(&self, from: &str, to: &str) -> Result<()> {
            self.inner.rename(from, to)
        }
        fn modified(&self, name: &str) -> Result<DateTime<Utc>> {
            self.inner.modified(name)
        }
        fn lock(&self, name: &str) -> Result<Box<dyn Send>> {
            self.inner.lock(name)
        }
        fn claims_orders(&self) -> bool {
            true
        }
        fn claim_order(&self, _packet: &str) -> Result<Option<Box<dyn OrderClaim>>> {
            if self.busy {
                return Ok(None);
            }
            self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(Some(Box::new(FlagClaim(self.flag.clone()))))
        }
    }

    #[test]
    fn a_server_that_loses_its_claim_stops_the_transfer_and_leaves_the_order() {
        let setup = Setup::new();
        let name = setup.queue(1, &["ship"]);
        let before = ShippingOrder::load(&setup.outgoing(), &name).unwrap();
        let store = Claiming {
            inner: setup.outgoing(),
            lose_after: Some(100),
            busy: false,
            flag: Default::default(),
        };
        let lines = Mutex::new(Vec::new());
        let log = pushing_into(&lines);
        let shipper = setup.shipper(&log);
        let class = setup.config.class("default").unwrap();
        let report = shipper.process(&store, class, &name, at(NOW), Due::AfterBackoff);
        // The copy to the directory hop stopped: nothing written there.
        assert_eq!(
            files_under(&setup.dir.path().join("usb")),
            Vec::<String>::new()
        );
        // Another server's work now: no failed attempt, no error.
        assert_eq!(report, PassReport::default());
        // The order is left as it was, for the server that holds it now.
        assert_eq!(
            ShippingOrder::load(&setup.outgoing(), &name).unwrap(),
            before
        );
        let lines = lines.lock().unwrap().join("\n");
        assert!(
            lines.contains(&format!("claim on the shipping order of {name} lost")),
            "{lines}"
        );
        assert!(lines.contains("not counted as a failed attempt"), "{lines}");
        assert!(!lines.contains(&format!("failed {name}")), "{lines}");

        // An order another server has claimed is left alone.
        let busy = Claiming {
            busy: true,
            lose_after: None,
            ..store
        };
        let report = shipper.process(&busy, class, &name, at(NOW), Due::AfterBackoff);
        assert_eq!(report, PassReport::default());
        assert_eq!(
            files_under(&setup.dir.path().join("usb")),
            Vec::<String>::new()
        );
        // Claimed and held: delivered.
        let free = Claiming {
            busy: false,
            ..busy
        };
        let report = shipper.process(&free, class, &name, at(NOW), Due::AfterBackoff);
        assert_eq!(report.completed, 1, "{report:?}");
    }

    #[test]
    fn temporary_files_abandoned_for_a_day_are_swept() {
        let setup = Setup::new();
        let outgoing = setup.outgoing();
        let old = outgoing.dir().join(".tmp-old");
        let fresh = outgoing.dir().join(".tmp-fresh");
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&fresh, b"x").unwrap();
        let two_days_ago =
            std::time::SystemTime::from(at(NOW)) - std::time::Duration::from_secs(2 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        let fresh_time = std::time::SystemTime::from(at(NOW));
        std::fs::File::options()
            .write(true)
            .open(&fresh)
            .unwrap()
            .set_modified(fresh_time)
            .unwrap();
        setup.poll(NOW);
        assert!(!old.exists());
        assert!(fresh.exists());
    }
}
