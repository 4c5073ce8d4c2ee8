//! Shipping orders: creation, round trips through both stores, retries with
//! back-off, delivery, expiry and damaged orders.

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use shipping::order::{
    backoff, format_time, list_bay, move_with_order, order_name, packet_of, remove_with_order,
    BayListing, ORDER_FORMAT,
};
use shipping::{BayStore, DirStore, Error, MemStore, ShippingOrder, StorageClass};

const PACKET: &str = "sync_boston_20261121T232549Z_ship_7_1of2.zip";
/// SHA-256 of "abc".
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 23, 25, 49).unwrap() + Duration::milliseconds(250)
}

fn class() -> StorageClass {
    StorageClass::under(std::path::Path::new("/bays/default"))
}

fn with_each_store(test: impl Fn(&dyn BayStore)) {
    test(&MemStore::new("outgoing"));
    let dir = tempfile::tempdir().unwrap();
    test(&DirStore::new(dir.path()));
    for name in test_support::entry_names(dir.path()) {
        assert!(!name.starts_with('.'), "left behind: {name}");
    }
}

fn new_order(store: &dyn BayStore) -> ShippingOrder {
    store.write(PACKET, b"abc").unwrap();
    ShippingOrder::create(
        store,
        PACKET,
        "default",
        &class(),
        &["ship", "lab", "ship"],
        now(),
    )
    .unwrap()
}

#[test]
fn backoff_doubles_from_one_minute_up_to_one_hour() {
    let minutes: Vec<i64> = (0..10).map(|n| backoff(n).num_minutes()).collect();
    assert_eq!(minutes, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(u32::MAX), Duration::hours(1));
}

#[test]
fn create_hashes_the_packet_and_sets_expiry() {
    with_each_store(|store| {
        let order = new_order(store);
        assert_eq!(order.format, ORDER_FORMAT);
        assert_eq!(order.packet, PACKET);
        assert_eq!(order.sha256, ABC_SHA256);
        assert_eq!(order.size, 3);
        assert_eq!(order.storage_class, "default");
        assert_eq!(order.destinations, ["ship", "lab"]);
        assert_eq!(format_time(&order.created), "2026-11-21T23:25:49Z");
        assert_eq!(format_time(&order.expires), "2026-12-05T23:25:49Z");
        assert!(order.attempts.is_empty());
        assert_eq!(order.history.len(), 1);
        assert!(order.history[0].contains("created for ship, lab"));
        // Not saved until asked.
        assert!(!store.exists(&order_name(PACKET)).unwrap());
    });
}

#[test]
fn create_uses_the_class_expiry() {
    let store = MemStore::new("o");
    store.write(PACKET, b"abc").unwrap();
    let class = StorageClass {
        expiry_days: 3,
        ..class()
    };
    let order = ShippingOrder::create(&store, PACKET, "usb", &class, &["ship"], now()).unwrap();
    assert_eq!(order.expires - order.created, Duration::days(3));
}

#[test]
fn create_refuses_bad_requests() {
    with_each_store(|store| {
        let missing =
            ShippingOrder::create(store, "gone.zip", "default", &class(), &["ship"], now())
                .unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        store.write(PACKET, b"abc").unwrap();
        for (destinations, why) in [
            (&[][..], "at least one destination"),
            (&["bad name"][..], "bad name"),
        ] {
            let err =
                ShippingOrder::create(store, PACKET, "default", &class(), destinations, now())
                    .unwrap_err();
            assert!(matches!(err, Error::Order { .. }), "{err}");
            assert!(err.to_string().contains(why), "{err}");
            assert!(err.to_string().contains(&order_name(PACKET)), "{err}");
        }
        store.write("x.zip.order", b"").unwrap();
        assert!(
            ShippingOrder::create(store, "x.zip.order", "default", &class(), &["s"], now())
                .is_err()
        );
    });
}

#[test]
fn save_and_load_round_trip() {
    with_each_store(|store| {
        let mut order = new_order(store);
        order
            .record_failure("lab", "connection refused\nby lab", now())
            .unwrap();
        order.save(store).unwrap();
        assert_eq!(
            store.list().unwrap(),
            [PACKET.to_string(), order_name(PACKET)]
        );
        let loaded = ShippingOrder::load(store, PACKET).unwrap();
        assert_eq!(loaded, order);
        let text = String::from_utf8(store.read(&order_name(PACKET)).unwrap()).unwrap();
        assert!(
            text.contains("created = \"2026-11-21T23:25:49Z\""),
            "{text}"
        );
        assert!(text.contains("[attempts.lab]"), "{text}");
        assert!(
            text.contains("last_error = \"connection refused by lab\""),
            "{text}"
        );
    });
}

#[test]
fn the_order_file_reads_as_documented() {
    let store = MemStore::new("o");
    let mut order = new_order(&store);
    order
        .record_failure("lab", "http://lab:7421: connection refused", now())
        .unwrap();
    order
        .mark_delivered("ship", now() + Duration::minutes(5))
        .unwrap();
    let expected = r#"format = 1
packet = "sync_boston_20261121T232549Z_ship_7_1of2.zip"
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
size = 3
storage_class = "default"
created = "2026-11-21T23:25:49Z"
expires = "2026-12-05T23:25:49Z"
destinations = ["lab"]
history = [
    "2026-11-21T23:25:49Z created for ship, lab (expires 2026-12-05T23:25:49Z)",
    "2026-11-21T23:25:49Z attempt 1 for lab failed: http://lab:7421: connection refused; next try after 2026-11-21T23:26:49Z",
    "2026-11-21T23:30:49Z delivered to ship",
]

[attempts.lab]
failures = 1
last_attempt = "2026-11-21T23:25:49Z"
last_error = "http://lab:7421: connection refused"
next_retry = "2026-11-21T23:26:49Z"
"#;
    assert_eq!(order.to_toml(), expected);
    // FORMAT.md shows this very text.
    let format_md = include_str!("../FORMAT.md");
    assert!(
        format_md.contains(expected),
        "FORMAT.md's example is out of date"
    );
}

#[test]
fn failures_back_off_and_due_follows_them() {
    let store = MemStore::new("o");
    let mut order = new_order(&store);
    let start = now();
    assert_eq!(order.due(start), ["ship", "lab"]);

    let mut at = start;
    for (attempt, wait) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
        let next = order.record_failure("lab", "refused", at).unwrap();
        let at_secs = at.trunc_subsecs(0);
        assert_eq!(next, at_secs + Duration::minutes(wait), "attempt {attempt}");
        assert_eq!(order.attempts["lab"].failures, attempt);
        assert_eq!(order.due(next - Duration::seconds(1)), ["ship"]);
        assert_eq!(order.due(next), ["ship", "lab"]);
        at = next;
    }
    assert_eq!(order.history.len(), 5);
    assert!(order.history[4].contains("attempt 4 for lab failed: refused"));

    // Delivery clears the destination's attempts.
    assert!(!order.mark_delivered("lab", at).unwrap());
    assert!(order.attempts.is_empty());
    assert_eq!(order.due(at), ["ship"]);
}

#[test]
fn delivering_to_every_destination_completes_the_order() {
    let store = MemStore::new("o");
    let mut order = new_order(&store);
    assert!(!order.is_complete());
    assert!(!order.mark_delivered("ship", now()).unwrap());
    assert!(order.mark_delivered("lab", now()).unwrap());
    assert!(order.is_complete());
    for destination in ["lab", "mars"] {
        let err = order.mark_delivered(destination, now()).unwrap_err();
        assert!(
            matches!(&err, Error::NotADestination { destination: d, .. } if d == destination),
            "{err}"
        );
        assert!(err.to_string().contains(PACKET), "{err}");
    }
    assert!(order.record_failure("mars", "x", now()).is_err());
}

#[test]
fn expiry() {
    let store = MemStore::new("o");
    let order = new_order(&store);
    let expires = order.expires;
    assert!(!order.is_expired(now()));
    assert!(!order.is_expired(expires - Duration::seconds(1)));
    assert!(order.is_expired(expires));
    assert!(order.is_expired(expires + Duration::days(30)));
}

#[test]
fn verify_packet_detects_changes() {
    with_each_store(|store| {
        let order = new_order(store);
        order.verify_packet(store).unwrap();
        store.write(PACKET, b"abd").unwrap();
        let err = order.verify_packet(store).unwrap_err();
        assert!(matches!(err, Error::PacketMismatch { .. }), "{err}");
        assert!(err.to_string().contains("SHA-256"), "{err}");
        store.write(PACKET, b"abcd").unwrap();
        assert!(order
            .verify_packet(store)
            .unwrap_err()
            .to_string()
            .contains("size 4"));
    });
}

fn damaged(text_edit: impl Fn(String) -> String) -> Error {
    let store = MemStore::new("o");
    let order = new_order(&store);
    let text = text_edit(order.to_toml());
    store.write(&order_name(PACKET), text.as_bytes()).unwrap();
    ShippingOrder::load(&store, PACKET).unwrap_err()
}

#[test]
fn damaged_orders_are_errors_naming_the_order() {
    let unknown = damaged(|t| t.replace("size = 3\n", "size = 3\npriority = 1\n"));
    let shown = unknown.to_string();
    assert!(shown.contains(&order_name(PACKET)), "{shown}");
    assert!(shown.contains("memory:o"), "{shown}");
    assert!(shown.contains("line 5"), "{shown}");
    assert!(shown.contains("priority"), "{shown}");

    let bad_time = damaged(|t| t.replace("2026-12-05T23:25:49Z\"\n", "next week\"\n"));
    assert!(
        bad_time.to_string().contains("bad time \"next week\""),
        "{bad_time}"
    );

    let version = damaged(|t| t.replace("format = 1", "format = 2"));
    assert!(
        version.to_string().contains("format 2 is not supported"),
        "{version}"
    );

    let other = damaged(|t| t.replace("_1of2.zip\"", "_2of2.zip\""));
    assert!(other.to_string().contains("is for packet"), "{other}");

    let hash = damaged(|t| t.replace(ABC_SHA256, "abc"));
    assert!(hash.to_string().contains("64 hex digits"), "{hash}");

    let stray = damaged(|t| {
        format!("{t}\n[attempts.mars]\nfailures = 1\nlast_attempt = \"2026-11-21T23:25:49Z\"\nlast_error = \"x\"\nnext_retry = \"2026-11-21T23:25:49Z\"\n")
    });
    assert!(stray.to_string().contains("\"mars\""), "{stray}");

    let binary = damaged(|_| "\u{0}".to_string());
    assert!(binary.to_string().contains("line 1"), "{binary}");

    let store = MemStore::new("o");
    store.write(&order_name(PACKET), &[0xff, 0xfe]).unwrap();
    let not_utf8 = ShippingOrder::load(&store, PACKET).unwrap_err();
    assert!(not_utf8.to_string().contains("not UTF-8"), "{not_utf8}");
    assert!(ShippingOrder::load(&store, "gone.zip")
        .unwrap_err()
        .is_not_found());
}

#[test]
fn order_names() {
    assert_eq!(order_name("p.zip"), "p.zip.order");
    assert_eq!(packet_of("p.zip.order"), Some("p.zip"));
    assert_eq!(packet_of("p.zip"), None);
    assert_eq!(packet_of(".order"), None);
}

#[test]
fn move_and_remove_with_order() {
    let dir = tempfile::tempdir().unwrap();
    let dir_store = DirStore::new(dir.path());
    let mem_store = MemStore::new("return");
    for (from, to) in [
        (
            &MemStore::new("out") as &dyn BayStore,
            &mem_store as &dyn BayStore,
        ),
        (
            &dir_store as &dyn BayStore,
            &MemStore::new("r") as &dyn BayStore,
        ),
    ] {
        let order = new_order(from);
        order.save(from).unwrap();
        move_with_order(from, to, PACKET).unwrap();
        assert!(from.list().unwrap().is_empty());
        assert_eq!(ShippingOrder::load(to, PACKET).unwrap(), order);
        remove_with_order(to, PACKET).unwrap();
        assert!(to.list().unwrap().is_empty());
    }
}

#[test]
fn bay_listing_sorts_packets_and_orders() {
    with_each_store(|store| {
        assert_eq!(list_bay(store).unwrap(), BayListing::default());
        let order = new_order(store);
        order.save(store).unwrap();
        store.write("a_manual.zip", b"x").unwrap();
        store.write("z_gone.zip.order", b"x").unwrap();
        assert_eq!(
            list_bay(store).unwrap(),
            BayListing {
                ordered: vec![PACKET.to_string()],
                unordered: vec!["a_manual.zip".to_string()],
                orphan_orders: vec!["z_gone.zip.order".to_string()],
            }
        );
    });
}

#[test]
fn a_bad_storage_class_in_an_order_is_an_error() {
    let err = damaged(|t| t.replace("storage_class = \"default\"", "storage_class = \"\""));
    assert!(err.to_string().contains("storage_class"), "{err}");
}
