//! The directory transport: a packet and its order copied atomically, the
//! packet first, checked against the order on the way.

use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use shipping::order::order_name;
use shipping::transport::deliver;
use shipping::{deliver_to_dir, BayStore, DirStore, Error, MemStore, ShippingOrder, StorageClass};

const PACKET: &str = "sync_boston_20261121T232549Z_ship_7.zip";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap()
}

/// An outgoing bay holding a packet and its order for ship, lab and far.
fn outgoing(store: &dyn BayStore, data: &[u8]) -> ShippingOrder {
    store.write(PACKET, data).unwrap();
    let class = StorageClass::under(Path::new("/bays/default"));
    let created = Utc.with_ymd_and_hms(2026, 11, 21, 23, 25, 49).unwrap();
    let mut order = ShippingOrder::create(
        store,
        PACKET,
        "default",
        &class,
        &["ship", "lab", "far"],
        created,
    )
    .unwrap();
    order.record_failure("ship", "no route", created).unwrap();
    order.save(store).unwrap();
    order
}

fn packet_data() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

/// Entry names, lock files left out.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut names = test_support::entry_names(dir);
    names.retain(|name| !name.starts_with(".lock"));
    names
}

#[test]
fn delivers_packet_and_order_into_a_directory() {
    let bay = tempfile::tempdir().unwrap();
    let usb = tempfile::tempdir().unwrap();
    let from = DirStore::new(bay.path());
    let order = outgoing(&from, &packet_data());

    let handed = deliver_to_dir(&from, PACKET, usb.path(), &["ship", "far"], now()).unwrap();

    assert_eq!(
        dir_names(usb.path()),
        [PACKET.to_string(), order_name(PACKET)]
    );
    assert_eq!(
        std::fs::read(usb.path().join(PACKET)).unwrap(),
        packet_data()
    );
    let copied = ShippingOrder::load(&DirStore::new(usb.path()), PACKET).unwrap();
    assert_eq!(copied, handed);
    assert_eq!(copied.destinations, ["ship", "far"]);
    assert!(copied.attempts.is_empty());
    assert_eq!(copied.sha256, order.sha256);
    assert_eq!(copied.expires, order.expires);
    let last = copied.history.last().unwrap();
    assert!(
        last.starts_with("2026-11-22T08:00:00Z handed to "),
        "{last}"
    );
    assert!(last.contains(&usb.path().display().to_string()), "{last}");
    assert!(last.ends_with("for ship, far"), "{last}");
    copied.verify_packet(&DirStore::new(usb.path())).unwrap();

    // The source is left for the caller to update.
    assert_eq!(ShippingOrder::load(&from, PACKET).unwrap(), order);
    assert_eq!(
        dir_names(bay.path()),
        [PACKET.to_string(), order_name(PACKET)]
    );
}

#[test]
fn no_destinations_means_all_remaining() {
    let from = MemStore::new("outgoing");
    outgoing(&from, b"packet");
    let usb = tempfile::tempdir().unwrap();
    let handed = deliver_to_dir(&from, PACKET, usb.path(), &[], now()).unwrap();
    assert_eq!(handed.destinations, ["ship", "lab", "far"]);
}

#[test]
fn delivering_again_replaces_the_packet_and_adds_the_destinations() {
    let from = MemStore::new("outgoing");
    outgoing(&from, b"packet");
    let usb = tempfile::tempdir().unwrap();
    std::fs::write(usb.path().join(PACKET), b"stale").unwrap();
    deliver_to_dir(&from, PACKET, usb.path(), &["lab"], now()).unwrap();
    deliver_to_dir(&from, PACKET, usb.path(), &["far"], now()).unwrap();
    assert_eq!(std::fs::read(usb.path().join(PACKET)).unwrap(), b"packet");
    let copied = ShippingOrder::load(&DirStore::new(usb.path()), PACKET).unwrap();
    assert_eq!(copied.destinations, ["lab", "far"]);
    assert!(copied.history.last().unwrap().contains("now also for far"));
    assert_eq!(dir_names(usb.path()).len(), 2);
}

#[test]
fn a_packet_that_no_longer_matches_its_order_is_not_delivered() {
    for damage in [&b"packet-but-longer"[..], b"pocket", b"pack"] {
        let from = MemStore::new("outgoing");
        outgoing(&from, b"packet");
        from.write(PACKET, damage).unwrap();
        let usb = tempfile::tempdir().unwrap();
        let err = deliver_to_dir(&from, PACKET, usb.path(), &[], now()).unwrap_err();
        assert!(matches!(err, Error::PacketMismatch { .. }), "{err}");
        assert!(err.to_string().contains(PACKET), "{err}");
        assert!(
            dir_names(usb.path()).is_empty(),
            "{:?}",
            dir_names(usb.path())
        );
    }
}

#[test]
fn unknown_destinations_are_refused_before_copying() {
    let from = MemStore::new("outgoing");
    outgoing(&from, b"packet");
    let usb = tempfile::tempdir().unwrap();
    let err = deliver_to_dir(&from, PACKET, usb.path(), &["lab", "mars"], now()).unwrap_err();
    assert!(
        matches!(&err, Error::NotADestination { destination, .. } if destination == "mars"),
        "{err}"
    );
    assert!(dir_names(usb.path()).is_empty());
}

#[test]
fn a_missing_directory_is_not_created() {
    let from = MemStore::new("outgoing");
    outgoing(&from, b"packet");
    let root = tempfile::tempdir().unwrap();
    let mount = root.path().join("usb");
    let err = deliver_to_dir(&from, PACKET, &mount, &[], now()).unwrap_err();
    assert!(err.to_string().contains("usb"), "{err}");
    assert!(!mount.exists());

    std::fs::write(&mount, b"a file").unwrap();
    let err = deliver_to_dir(&from, PACKET, &mount, &[], now()).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn a_packet_without_an_order_is_not_delivered() {
    let from = MemStore::new("outgoing");
    from.write(PACKET, b"packet").unwrap();
    let usb = tempfile::tempdir().unwrap();
    let err = deliver_to_dir(&from, PACKET, usb.path(), &[], now()).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&order_name(PACKET)), "{err}");
    assert!(dir_names(usb.path()).is_empty());
}

/// A store that records the order of writes.
struct Recording {
    inner: MemStore,
    writes: Mutex<Vec<String>>,
}

impl BayStore for Recording {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(&self) -> shipping::Result<Vec<String>> {
        self.inner.list()
    }
    fn exists(&self, name: &str) -> shipping::Result<bool> {
        self.inner.exists(name)
    }
    fn size(&self, name: &str) -> shipping::Result<u64> {
        self.inner.size(name)
    }
    fn open(&self, name: &str) -> shipping::Result<Box<dyn Read + Send + '_>> {
        self.inner.open(name)
    }
    fn write_from(&self, name: &str, reader: &mut dyn Read) -> shipping::Result<u64> {
        self.writes.lock().unwrap().push(name.to_string());
        self.inner.write_from(name, reader)
    }
    fn remove(&self, name: &str) -> shipping::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> shipping::Result<()> {
        self.inner.rename(from, to)
    }
    fn lock(&self, name: &str) -> shipping::Result<Box<dyn Send>> {
        self.inner.lock(name)
    }
    fn modified(&self, name: &str) -> shipping::Result<chrono::DateTime<chrono::Utc>> {
        self.inner.modified(name)
    }
}

#[test]
fn the_order_is_written_after_the_packet() {
    let from = MemStore::new("outgoing");
    outgoing(&from, &packet_data());
    let to = Recording {
        inner: MemStore::new("incoming"),
        writes: Mutex::new(Vec::new()),
    };
    let handed = deliver(&from, PACKET, &to, &["lab"], now()).unwrap();
    assert_eq!(
        *to.writes.lock().unwrap(),
        [PACKET.to_string(), order_name(PACKET)]
    );
    assert_eq!(to.inner.read(PACKET).unwrap(), packet_data());
    assert_eq!(ShippingOrder::load(&to.inner, PACKET).unwrap(), handed);
    assert!(handed
        .history
        .last()
        .unwrap()
        .contains("handed to memory:incoming for lab"));
}
