//! Shipping through real `shipping_server` processes on 127.0.0.1: routes
//! over HTTP and through a directory, retries, expiry, refused uploads,
//! concurrent senders and a hub killed mid-way.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// A running `shipping_server -listen`, killed when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) addr: String,
    log: PathBuf,
}

impl Server {
    /// Starts `shipping_server -shipconf CONF -listen LISTEN EXTRA…` and
    /// waits until it says where it listens.
    pub(crate) fn start(conf: &Path, listen: &str, extra: &[&str]) -> Server {
        Server::start_with_env(conf, listen, extra, &[])
    }

    /// [`Server::start`] with more environment variables.
    pub(crate) fn start_with_env(
        conf: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Server {
        let log = conf.with_extension(format!(
            "log-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = Command::new(shipping_server_binary())
            .arg("-shipconf")
            .arg(conf)
            .args(["-listen", listen])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("shipping_server starts");
        // Owned at once, so a failed start is killed when dropped.
        let mut server = Server {
            child: Some(child),
            addr: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = server.log();
            if let Some(rest) = text.split("listening on ").nth(1) {
                server.addr = rest.split_whitespace().next().unwrap().to_string();
                return server;
            }
            assert!(Instant::now() < deadline, "server did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status: a clean shutdown exits 0.
    pub(crate) fn terminate(mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// SIGKILL: no chance to clean up.
    pub(crate) fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `DIR/NAME.toml`: a default class with bays under `DIR/NAME-bay`,
/// plus `extra` (top-level keys first, then tables).
pub(crate) fn shipping_conf(dir: &Path, name: &str, top: &str, tables: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let bay = dir.join(format!("{name}-bay"));
    std::fs::write(
        &path,
        format!(
            "{top}\n[classes.default]\nstorage_bay = \"{0}\"\nreturn_bay = \"{0}/return\"\n\n{tables}\n",
            bay.display()
        ),
    )
    .unwrap();
    path
}

/// The receiving host of the tests: replica "ship" is local, and packets
/// signed by its family's members are trusted.
pub(crate) fn receiver_conf(fam: &Family) -> PathBuf {
    receiver_conf_with(fam, "")
}

/// [`receiver_conf`] with the top-level settings `extra` before its own.
fn receiver_conf_with(fam: &Family, extra: &str) -> PathBuf {
    let own = format!(
        "local_replicas = [\"ship\"]\ntrusted_replicas = [\"{}\"]",
        fam.root("ship").display()
    );
    let top = if extra.is_empty() {
        own
    } else {
        format!("{extra}\n{own}")
    };
    shipping_conf(fam.dir.path(), "receiver", &top, "")
}

/// A sending host that reaches "ship" directly at `url`.
fn sender_conf(dir: &Path, url: &str) -> PathBuf {
    shipping_conf(
        dir,
        "sender",
        "",
        &format!("[destinations.ship]\nurl = \"{url}\"\n"),
    )
}

/// `syncreplica -import -receive` at replica "ship".
pub(crate) fn receive_at_ship(fam: &Family, receiver_conf: &Path) -> Run {
    run(
        &fam.root("ship"),
        "syncreplica",
        ["-import", "-receive", "-shipconf", arg(receiver_conf)],
    )
    .ok()
}

pub(crate) fn bay(conf: &Path, which: &str) -> PathBuf {
    let name = conf.file_stem().unwrap().to_str().unwrap();
    let root = conf.parent().unwrap().join(format!("{name}-bay"));
    match which {
        "return" => root.join("return"),
        other => root.join(other),
    }
}

pub(crate) fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `shipping_server -shipconf CONF ARGS…`, once.
pub(crate) fn shipping_server(conf: &Path, args: &[&str]) -> Run {
    let mut all = vec!["-shipconf", arg(conf)];
    all.extend_from_slice(args);
    run(conf.parent().unwrap(), "shipping_server", all)
}

/// Makes every failed attempt in the orders of `outgoing` due now, as if
/// the backoff had passed.
pub(crate) fn make_retries_due(outgoing: &Path) {
    for entry in std::fs::read_dir(outgoing).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "order") {
            let text = std::fs::read_to_string(&path).unwrap();
            let due: String = text
                .lines()
                .map(|line| {
                    if line.starts_with("next_retry = ") {
                        "next_retry = \"2000-01-01T00:00:00Z\"".to_string()
                    } else {
                        line.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&path, due).unwrap();
        }
    }
}

/// A port nothing listens on (bound, then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a raw HTTP PUT of `body` to `addr` but sends only its first
/// `sent` bytes; the connection stays open while the stream is kept.
fn start_put(addr: &str, name: &str, body: &[u8], sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "PUT /packets/{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before the whole body is sent.
    let _ = stream.write_all(&body[..sent]);
    stream
}

/// A raw HTTP PUT of `body` to `addr`; returns the status and the
/// answer's text.
pub(crate) fn put(addr: &str, name: &str, body: &[u8]) -> (u16, String) {
    let mut stream = start_put(addr, name, body, body.len());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let text = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, text)
}

/// Sends `request` as it is to `addr` in one write; returns the status and
/// the answer's text, or `None` when no answer came within 15 s.
fn raw_request(addr: &str, request: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stream.write_all(request);
    read_answer(&mut stream)
}

/// The status and text of the answer on `stream`, if one comes.
fn read_answer(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let text = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    Some((status, text.to_string()))
}

/// boston's packet for ship carrying `file` (at boston's root) written
/// with `content`, exported into the family's folder `label`: its path.
fn boston_packet_for_ship(fam: &Family, file: &str, content: &str, label: &str) -> PathBuf {
    write(&fam.root("boston"), file, content);
    let out = fam.packet_dir(label);
    export_to(&fam.root("boston"), &out, &["ship"], &[]).ok();
    packet_files(&out)[0].clone()
}

/// The receiver of `fam` with `extra` top-level settings, and one packet
/// for "ship" (its path).
fn receiver_and_packet(fam: &Family, extra: &str) -> (Server, PathBuf) {
    let conf = receiver_conf_with(fam, extra);
    let receiver = Server::start(&conf, "127.0.0.1:0", &[]);
    let packet = boston_packet_for_ship(fam, "f", "1", "out");
    (receiver, packet)
}

#[test]
fn clients_trickling_request_heads_do_not_keep_uploads_out() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let (receiver, packet) =
        receiver_and_packet(&fam, "head_timeout = 3\nmax_connections_per_peer = 100");
    // More clients than there are upload places, each sending its request
    // head a byte a second (the idle timeout is 300 s).
    let mut slow: Vec<TcpStream> = (0..70)
        .map(|_| TcpStream::connect(&receiver.addr).unwrap())
        .collect();
    let trickler = std::thread::spawn(move || {
        let head = b"PUT /packets/sync_slow.zip HTTP/1.1\r\n";
        for i in 0..5 {
            for stream in &mut slow {
                let _ = stream.write_all(&head[i..=i]);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        slow
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let bytes = std::fs::read(&packet).unwrap();
    let name = packet.file_name().unwrap().to_str().unwrap();
    let (status, text) = put(&receiver.addr, name, &bytes);
    assert_eq!(status, 201, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the upload waited {:?}",
        started.elapsed()
    );
    // The trickling clients were cut off at the head timeout.
    let mut slow = trickler.join().unwrap();
    for stream in slow.iter_mut().take(5) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (status, text) = read_answer(stream).expect("an answer");
        assert_eq!(status, 408, "{text}");
        assert!(text.contains("head_timeout"), "{text}");
    }
}

#[test]
fn one_address_may_hold_only_so_many_connections() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let (receiver, packet) = receiver_and_packet(&fam, "");
    // The default is 8 connections per peer address.
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&receiver.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, text) =
        raw_request(&receiver.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("an answer");
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("max_connections_per_peer"), "{text}");
    assert!(receiver.log().contains("refused connection from 127.0.0.1"));
    // Once they are closed, the address is served again.
    drop(held);
    let bytes = std::fs::read(&packet).unwrap();
    let name = packet.file_name().unwrap().to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) =
            raw_request(&receiver.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("an answer");
        if status == 200 {
            break;
        }
        assert_eq!(status, 429, "{text}");
        assert!(Instant::now() < deadline, "still refused: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, text) = put(&receiver.addr, name, &bytes);
    assert_eq!(status, 201, "{text}");
}

#[test]
fn malformed_request_heads_get_precise_answers() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let (receiver, _) = receiver_and_packet(&fam, "");
    let big_head = format!(
        "PUT /packets/sync_x.zip HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\nContent-Length: 5\r\n\r\nhello",
        "a".repeat(20 * 1024)
    );
    let cases: [(&[u8], u16, &str); 4] = [
        (
            b"PUT /packets/sync_x.zip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
            "Transfer-Encoding \"chunked, gzip\" is not accepted",
        ),
        (
            b"PUT /packets/sync_x.zip HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            400,
            "Content-Length \"+5\" is not a number of bytes",
        ),
        (
            b"PUT /packets/sync_x.zip HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
            400,
            "bare LF",
        ),
        // Sent in one write, so it arrives in one read.
        (big_head.as_bytes(), 431, "larger than 16384 bytes"),
    ];
    for (request, want, says) in cases {
        let shown = String::from_utf8_lossy(&request[..request.len().min(80)]).to_string();
        let (status, text) = raw_request(&receiver.addr, request)
            .unwrap_or_else(|| panic!("no answer to {shown:?}"));
        assert_eq!(status, want, "{shown:?}: {text}");
        assert!(text.contains(says), "{shown:?}: {text}");
    }
}

#[test]
fn sender_hub_receiver_over_http_with_a_directory_leg() {
    let fam = family(&["boston", "ship", "lab"], &[("doc/a.txt", "one")]);
    let dir = fam.dir.path();
    let usb = fam.packet_dir("usb");

    let receiver_conf = receiver_conf(&fam);
    let receiver = Server::start(&receiver_conf, "127.0.0.1:0", &[]);
    let hub_conf = shipping_conf(
        dir,
        "hub",
        &format!("trusted_replicas = [\"{}\"]", fam.root("boston").display()),
        &format!(
            "[routes]\nusb = [\"lab\"]\n\n[destinations.ship]\nurl = \"{}\"\n\n[destinations.usb]\ndir = \"{}\"\n",
            receiver.url(),
            usb.display()
        ),
    );
    let hub = Server::start(&hub_conf, "127.0.0.1:0", &[]);
    let sender_conf = shipping_conf(
        dir,
        "sender",
        "default_route = \"hub\"",
        &format!("[destinations.hub]\nurl = \"{}\"\n", hub.url()),
    );

    write(&fam.root("boston"), "doc/a.txt", "two");
    write(&fam.root("boston"), "doc/b.txt", "new");
    let out = run(
        &fam.root("boston"),
        "syncreplica",
        [
            "-export",
            "-fship",
            "-shipconf",
            arg(&sender_conf),
            "ship",
            "lab",
        ],
    )
    .ok();
    assert!(out.stdout.contains("delivered"), "{}", out.stdout);
    // The hub took responsibility: the sender's bay is empty.
    assert_eq!(
        files_under(&bay(&sender_conf, "outgoing")),
        Vec::<String>::new()
    );
    assert_eq!(
        files_under(&bay(&hub_conf, "outgoing")).len(),
        4,
        "two packets and their orders"
    );

    // The hub forwards in a separate pass: ship over HTTP, lab onto the stick.
    let pass = shipping_server(&hub_conf, &["-poll"]).ok();
    assert!(pass.stdout.contains("2 delivered"), "{}", pass.stdout);
    assert_eq!(
        files_under(&bay(&hub_conf, "outgoing")),
        Vec::<String>::new()
    );
    assert_eq!(packet_files(&usb).len(), 1);
    assert!(usb.read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".zip.order")));

    let ship = receive_at_ship(&fam, &receiver_conf);
    assert!(ship.stdout.contains("1 packet applied"), "{}", ship.stdout);
    let lab = run(
        &fam.root("lab"),
        "syncreplica",
        ["-import", "-remove", arg(&usb)],
    )
    .ok();
    assert!(lab.stdout.contains("1 packet applied"), "{}", lab.stdout);
    assert_eq!(
        files_under(&usb),
        Vec::<String>::new(),
        "packet and order consumed"
    );
    assert_eq!(
        files_under(&bay(&receiver_conf, "incoming")),
        Vec::<String>::new()
    );
    let expected = tree_listing(&fam.root("boston"));
    assert_eq!(tree_listing(&fam.root("ship")), expected);
    assert_eq!(tree_listing(&fam.root("lab")), expected);

    let empty = run(dir, "lspacket", ["-shipconf", arg(&hub_conf)]).ok();
    assert_eq!(empty.stdout.trim(), "No packets found.");
    assert!(hub.log().contains("accepted PUT"), "{}", hub.log());
    assert_eq!(hub.terminate(), 0, "SIGTERM stops the server cleanly");
    assert_eq!(receiver.terminate(), 0);
}

#[test]
fn a_receiver_down_at_the_first_poll_gets_the_packet_at_a_later_one() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let port = free_port();
    let sender_conf = sender_conf(dir, &format!("http://127.0.0.1:{port}"));
    write(&fam.root("boston"), "f", "1");
    run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-ship", "-shipconf", arg(&sender_conf), "ship"],
    )
    .ok();

    let first = shipping_server(&sender_conf, &["-poll"]).fails_with(1);
    assert!(first.stdout.contains("failed"), "{}", first.stdout);
    // -fship fails alike (exit 1), its export recorded and queued.
    write(&fam.root("boston"), "g", "2");
    let epoch = own_epoch(&fam.root("boston"));
    let fship = run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-fship", "-shipconf", arg(&sender_conf), "ship"],
    )
    .fails_with(1);
    assert!(
        fship
            .stderr
            .contains("the export is recorded and its packets are queued, but -fship failed"),
        "{}",
        fship.stderr
    );
    // g, and the root's mtime making it moved.
    assert_eq!(own_epoch(&fam.root("boston")), epoch + 2);
    assert_eq!(packet_files(&bay(&sender_conf, "outgoing")).len(), 2);
    let listing = run(dir, "lspacket", ["-shipconf", arg(&sender_conf)]);
    assert!(
        listing
            .stdout
            .contains("delivery to ship: 1 failed attempt"),
        "{}",
        listing.stdout
    );
    // Said in words, without the HTTP library's internal "io: " prefix.
    assert!(
        listing
            .stdout
            .contains(": connection refused (no shipping server listens there); next try after")
            && !fship.stderr.contains("io: ")
            && !listing.stdout.contains("io: "),
        "{}{}",
        fship.stderr,
        listing.stdout
    );

    let receiver_conf = receiver_conf(&fam);
    let receiver = Server::start(&receiver_conf, &format!("127.0.0.1:{port}"), &[]);
    // Before the backoff has passed, the order waits.
    let early = shipping_server(&sender_conf, &["-poll"]).ok();
    assert!(early.stdout.contains("2 waiting"), "{}", early.stdout);
    make_retries_due(&bay(&sender_conf, "outgoing"));
    let later = shipping_server(&sender_conf, &["-poll"]).ok();
    assert!(later.stdout.contains("2 delivered"), "{}", later.stdout);
    receive_at_ship(&fam, &receiver_conf);
    assert_eq!(
        tree_listing(&fam.root("ship")),
        tree_listing(&fam.root("boston"))
    );
    drop(receiver);
}

#[test]
fn an_expired_order_goes_to_the_return_bay_and_the_administrator_is_told() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let notice = dir.join("notice.txt");
    let sender_conf = shipping_conf(
        dir,
        "sender",
        &format!(
            "notify = \"cat > '{0}'; echo \\\"subject: $SYNCREPLICA_SUBJECT\\\" >> '{0}'\"",
            notice.display()
        ),
        &format!(
            "[destinations.ship]\nurl = \"http://127.0.0.1:{}\"\n",
            free_port()
        ),
    );
    write(&fam.root("boston"), "f", "1");
    run(
        &fam.root("boston"),
        "syncreplica",
        [
            "-export",
            "-ship",
            "-pexpire",
            "1s",
            "-shipconf",
            arg(&sender_conf),
            "ship",
        ],
    )
    .ok();
    std::thread::sleep(Duration::from_millis(2100));
    let pass = shipping_server(&sender_conf, &["-poll"]).ok();
    assert!(pass.stdout.contains("1 expired"), "{}", pass.stdout);
    assert_eq!(
        files_under(&bay(&sender_conf, "outgoing")),
        Vec::<String>::new()
    );
    let return_bay = bay(&sender_conf, "return");
    let returned = files_under(&return_bay);
    assert_eq!(returned.len(), 2, "packet and order: {returned:?}");

    let told = std::fs::read_to_string(&notice).expect("the notify program ran");
    assert!(told.contains("expired at"), "{told}");
    assert!(told.contains("mkorder -data"), "{told}");
    assert!(
        told.contains("subject: syncreplica: packet sync_boston_"),
        "{told}"
    );

    let listing = run(dir, "lspacket", ["-shipconf", arg(&sender_conf)]);
    assert!(
        listing.stdout.contains("Storage bay: return"),
        "{}",
        listing.stdout
    );
    assert!(
        listing.stdout.contains("Returned: expired at"),
        "{}",
        listing.stdout
    );

    // The administrator sends it again from the return bay.
    let packet = return_bay.join(returned.iter().find(|p| p.ends_with(".zip")).unwrap());
    let again = run(
        dir,
        "mkorder",
        ["-shipconf", arg(&sender_conf), "-data", arg(&packet)],
    )
    .ok();
    assert!(again.stdout.contains("for ship"), "{}", again.stdout);
    assert_eq!(files_under(&bay(&sender_conf, "outgoing")).len(), 2);
    assert!(!packet.exists(), "moved out of the return bay");
    // Its expired order goes with it (review 16b: it stayed there).
    assert_eq!(
        files_under(&return_bay),
        Vec::<String>::new(),
        "the return bay is empty"
    );
}

#[test]
fn untrusted_tampered_and_oversized_uploads_are_refused_with_nothing_stored() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let strangers = family(&["zulu", "yankee"], &[("g", "0")]);
    let dir = fam.dir.path();
    let receiver_conf = shipping_conf(
        dir,
        "receiver",
        &format!(
            "local_replicas = [\"ship\", \"yankee\"]\nmax_packet_size = \"100k\"\ntrusted_replicas = [\"{}\"]",
            fam.root("ship").display()
        ),
        "",
    );
    let receiver = Server::start(&receiver_conf, "127.0.0.1:0", &[]);
    let read = |path: &PathBuf| std::fs::read(path).unwrap();
    let name = |path: &PathBuf| path.file_name().unwrap().to_str().unwrap().to_string();

    // Signed, but by a key this server does not trust.
    write(&strangers.root("zulu"), "g", "1");
    let stranger_out = strangers.packet_dir("out");
    export_to(&strangers.root("zulu"), &stranger_out, &["yankee"], &[]).ok();
    let untrusted = &packet_files(&stranger_out)[0];
    let (status, text) = put(&receiver.addr, &name(untrusted), &read(untrusted));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("unknown key"), "{text}");

    // Trusted, but damaged on the way.
    let good = &boston_packet_for_ship(&fam, "f", "1", "out");
    let mut tampered = read(good);
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x40;
    let (status, text) = put(&receiver.addr, &name(good), &tampered);
    assert_eq!(status, 400, "{text}");

    // Not a packet at all, and a name that is not a packet's.
    let (status, _) = put(&receiver.addr, "sync_x.zip", b"PK\x03\x04 hello");
    assert_eq!(status, 400);
    let (status, _) = put(&receiver.addr, "..%2Fescape", b"x");
    assert_eq!(status, 400);

    // Larger than max_packet_size.
    let big: String = (0..40_000u32)
        .map(|i| format!("{:x}", i.wrapping_mul(2654435761)))
        .collect();
    let oversized = &boston_packet_for_ship(&fam, "big", &big, "big");
    assert!(read(oversized).len() > 100 * 1024);
    let (status, text) = put(&receiver.addr, &name(oversized), &read(oversized));
    assert_eq!(status, 413, "{text}");

    let refused = receiver.log().matches("refused PUT").count();
    assert_eq!(refused, 5, "{}", receiver.log());
    assert_eq!(
        files_under(&bay(&receiver_conf, "incoming")),
        Vec::<String>::new()
    );
    assert_eq!(
        files_under(&bay(&receiver_conf, "outgoing")),
        Vec::<String>::new()
    );

    // The intact packet is accepted, once; a repeat is answered 200.
    let (status, text) = put(&receiver.addr, &name(good), &read(good));
    assert_eq!(status, 201, "{text}");
    let (status, _) = put(&receiver.addr, &name(good), &read(good));
    assert_eq!(status, 200);
    assert_eq!(files_under(&bay(&receiver_conf, "incoming")).len(), 1);
}

#[test]
fn two_senders_shipping_at_the_same_time_both_arrive() {
    let fam = family(&["ship", "boston", "lab"], &[("f", "0")]);
    let dir = fam.dir.path();
    let receiver_conf = receiver_conf(&fam);
    let receiver = Server::start(&receiver_conf, "127.0.0.1:0", &[]);
    let mut senders = Vec::new();
    for (name, payload) in [("boston", "b"), ("lab", "l")] {
        let conf = shipping_conf(
            dir,
            &format!("sender-{name}"),
            "",
            &format!("[destinations.ship]\nurl = \"{}\"\n", receiver.url()),
        );
        // A few MiB each, so the uploads overlap.
        let content: String = payload.repeat(3 << 20);
        write(&fam.root(name), &format!("{name}.bin"), &content);
        run(
            &fam.root(name),
            "syncreplica",
            [
                "-export",
                "-ship",
                "-maxsize",
                "1m",
                "-shipconf",
                arg(&conf),
                "ship",
            ],
        )
        .ok();
        senders.push(conf);
    }
    let children: Vec<Child> = senders
        .iter()
        .map(|conf| {
            Command::new(shipping_server_binary())
                .args(["-shipconf", arg(conf), "-poll"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let out = receive_at_ship(&fam, &receiver_conf);
    assert!(out.stdout.contains("2 packets applied"), "{}", out.stdout);
    assert_eq!(
        std::fs::read(fam.root("ship").join("boston.bin"))
            .unwrap()
            .len(),
        3 << 20
    );
    assert_eq!(
        std::fs::read(fam.root("ship").join("lab.bin"))
            .unwrap()
            .len(),
        3 << 20
    );
    drop(receiver);
}

#[test]
fn a_hub_killed_mid_way_and_restarted_loses_nothing() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let receiver_conf = receiver_conf(&fam);
    let receiver = Server::start(&receiver_conf, "127.0.0.1:0", &[]);
    // A hub holds no replica: it trusts the sender's key, as lsreplica
    // -long prints it.
    let members = run(&fam.root("boston"), "lsreplica", ["-long"]).ok().stdout;
    let boston_key = members
        .split("replica \"boston\"")
        .nth(1)
        .and_then(|rest| rest.split("public key:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("lsreplica -long prints the public key");
    let hub_conf = shipping_conf(
        dir,
        "hub",
        &format!("trusted_keys = [\"{boston_key}\"]"),
        &format!("[destinations.ship]\nurl = \"{}\"\n", receiver.url()),
    );
    // Receiving only: the packet stays at the hub until it is killed.
    let hub = Server::start(&hub_conf, "127.0.0.1:0", &[]);
    let hub_addr = hub.addr.clone();
    let sender_conf = sender_conf(dir, &format!("http://{hub_addr}"));
    write(&fam.root("boston"), "f", "1");
    run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-fship", "-shipconf", arg(&sender_conf), "ship"],
    )
    .ok();
    assert_eq!(
        files_under(&bay(&sender_conf, "outgoing")),
        Vec::<String>::new()
    );

    // Another upload is cut off half-way when the hub dies.
    let out = fam.packet_dir("other");
    let large: String = (0..200_000u32)
        .map(|i| format!("{:x}", i.wrapping_mul(2654435761)))
        .collect();
    write(&fam.root("boston"), "g", &large);
    export_to(&fam.root("boston"), &out, &["ship"], &[]).ok();
    let second = &packet_files(&out)[0];
    let bytes = std::fs::read(second).unwrap();
    let cut_off = start_put(
        &hub_addr,
        second.file_name().unwrap().to_str().unwrap(),
        &bytes,
        bytes.len() / 2,
    );
    let hub_incoming = bay(&hub_conf, "incoming");
    let receiving = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&hub_incoming).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp-recv-")
    }) {
        assert!(Instant::now() < receiving, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    hub.kill();
    drop(cut_off);

    // Restarted as a daemon that also forwards.
    let hub = Server::start(&hub_conf, &hub_addr, &["-poll", "-interval", "1"]);
    assert!(
        hub.log().contains("removed 1 upload(s) cut off"),
        "{}",
        hub.log()
    );
    let incoming = bay(&receiver_conf, "incoming");
    let deadline = Instant::now() + Duration::from_secs(30);
    while packet_files(&incoming).is_empty() {
        assert!(Instant::now() < deadline, "not forwarded:\n{}", hub.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Wait for the forwarding pass to finish removing its copy.
    while !files_under(&bay(&hub_conf, "outgoing")).is_empty() {
        assert!(Instant::now() < deadline, "not removed:\n{}", hub.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(hub.terminate(), 0);
    // Nothing half-received survives the restart.
    assert_eq!(
        files_under(&bay(&hub_conf, "incoming")),
        Vec::<String>::new()
    );

    // The cut-off packet is still at its sender, which sends it again.
    let (status, text) = {
        let hub = Server::start(&hub_conf, &hub_addr, &[]);
        let answer = put(
            &hub.addr,
            second.file_name().unwrap().to_str().unwrap(),
            &bytes,
        );
        assert_eq!(hub.terminate(), 0);
        answer
    };
    assert_eq!(status, 201, "{text}");
    shipping_server(&hub_conf, &["-poll"]).ok();
    let out = receive_at_ship(&fam, &receiver_conf);
    assert!(out.stdout.contains("2 packets applied"), "{}", out.stdout);
    assert_eq!(
        tree_listing(&fam.root("ship")),
        tree_listing(&fam.root("boston"))
    );
    drop(receiver);
}

#[test]
fn shipping_server_command_line_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run(
        dir.path(),
        "shipping_server",
        ["-shipconf", "/nonexistent/shipping.toml", "-poll"],
    )
    .fails_with(1);
    assert!(
        missing
            .stderr
            .contains("/nonexistent/shipping.toml: shipping configuration not found"),
        "{}",
        missing.stderr
    );
    let conf = dir.path().join("bad.toml");
    std::fs::write(&conf, "listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
    let bad = run(
        dir.path(),
        "shipping_server",
        ["-shipconf", arg(&conf), "-poll"],
    )
    .fails_with(1);
    assert!(
        bad.stderr.contains("bad.toml: line 2") && bad.stderr.contains("bogus"),
        "{}",
        bad.stderr
    );
    let usage = run(dir.path(), "shipping_server", ["-interval", "5"]).fails_with(2);
    assert!(
        usage.stderr.starts_with("shipping_server: error:"),
        "{}",
        usage.stderr
    );
    let conf = shipping_conf(dir.path(), "ok", "", "");
    let listen = run(
        dir.path(),
        "shipping_server",
        ["-shipconf", arg(&conf), "-listen", "nowhere"],
    )
    .fails_with(2);
    assert!(
        listen.stderr.contains("'nowhere'") && listen.stderr.contains("IP:PORT"),
        "{}",
        listen.stderr
    );
}

#[test]
fn a_listen_failure_gets_the_hint_that_fits_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let conf = shipping_conf(dir.path(), "ok", "", "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let in_use = run(
        dir.path(),
        "shipping_server",
        ["-shipconf", arg(&conf), "-listen", &taken],
    )
    .fails_with(1);
    assert!(
        in_use.stderr.contains(&format!("cannot listen on {taken}"))
            && in_use.stderr.contains("hint: another program"),
        "{}",
        in_use.stderr
    );
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this host.
    let foreign = run(
        dir.path(),
        "shipping_server",
        ["-shipconf", arg(&conf), "-listen", "192.0.2.1:7421"],
    )
    .fails_with(1);
    assert!(
        foreign
            .stderr
            .contains("hint: that IP is not an address of this host")
            && !foreign.stderr.contains("another"),
        "{}",
        foreign.stderr
    );
}

/// The first ```toml example in the README's section under `heading`,
/// parsed as a shipping.toml at /var/lib/syncreplica; panics naming the
/// section if it is missing or does not parse.
fn readme_toml_example(heading: &str) -> shipping::ShippingConfig {
    let readme = include_str!("../../README.md");
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("README has a section \"{heading}\""));
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("README's section \"{heading}\" has a toml example"));
    shipping::ShippingConfig::parse(
        example,
        Path::new("README.md"),
        Some(Path::new("/var/lib/syncreplica")),
    )
    .unwrap_or_else(|err| panic!("README's shipping.toml under \"{heading}\": {err}"))
}

#[test]
fn the_readme_shipping_toml_example_is_valid() {
    let config = readme_toml_example("### Shipping");
    assert!(config.next_hop("ship").unwrap().is_some());
}

#[test]
fn the_readme_s3_bay_example_is_valid() {
    let config = readme_toml_example("### Storage bays on S3");
    let class = config.class("default").unwrap();
    let s3 = class.s3.as_ref().expect("the class is on S3");
    assert_eq!(s3.storage_url, "s3://syncreplica-bays/hub");
    assert_eq!(
        s3.return_url.as_deref(),
        Some("s3://syncreplica-bays/hub/return")
    );
    assert_eq!(s3.endpoint.as_deref(), Some("https://rgw.example.org"));
    assert!(!s3.allow_http);
}

#[test]
fn a_peer_that_falls_silent_mid_upload_is_dropped_and_nothing_is_kept() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let conf = receiver_conf_with(&fam, "idle_timeout = 1\nhead_timeout = 2");
    let receiver = Server::start(&conf, "127.0.0.1:0", &[]);
    let large: String = (0..200_000u32)
        .map(|i| format!("{:x}", i.wrapping_mul(2654435761)))
        .collect();
    let packet = &boston_packet_for_ship(&fam, "g", &large, "out");
    let bytes = std::fs::read(packet).unwrap();
    let name = packet.file_name().unwrap().to_str().unwrap();
    // Half the packet, then silence with the connection left open.
    let _silent = start_put(&receiver.addr, name, &bytes, bytes.len() / 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !receiver.log().contains("refused PUT") {
        assert!(
            Instant::now() < deadline,
            "not dropped:\n{}",
            receiver.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(receiver.log().contains("broken off"), "{}", receiver.log());
    assert_eq!(files_under(&bay(&conf, "incoming")), Vec::<String>::new());
    // A head trickled in a line at a time, each within the idle timeout,
    // is still cut off once the whole head is late (head_timeout).
    let mut trickle = TcpStream::connect(&receiver.addr).unwrap();
    trickle
        .write_all(b"PUT /packets/x.zip HTTP/1.1\r\n")
        .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        if trickle
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .is_err()
        {
            break;
        }
    }
    trickle
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = trickle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("head_timeout"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server still serves others.
    let (status, text) = put(&receiver.addr, name, &bytes);
    assert_eq!(status, 201, "{text}");
}

/// `mkorder -shipconf CONF ARGS…` from `cwd`, not checked.
fn mkorder(cwd: &Path, conf: &Path, args: &[&str]) -> Run {
    let mut all = vec!["-shipconf", arg(conf)];
    all.extend_from_slice(args);
    run(cwd, "mkorder", all)
}

/// boston and ship; a sender's shipping.toml in the family's folder
/// whose hop (port 9, discard) takes nothing; and boston's packet for ship,
/// with a change in it, exported into the folder "out". Returns the
/// family, the shipping.toml and the packet file.
fn a_sender_with_a_packet_for_ship() -> (Family, PathBuf, PathBuf) {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let conf = sender_conf(fam.dir.path(), "http://127.0.0.1:9");
    let packet = boston_packet_for_ship(&fam, "f", "1", "out");
    (fam, conf, packet)
}

#[test]
fn mkorder_checks_every_packet_before_submitting_any() {
    let (fam, conf, good) = a_sender_with_a_packet_for_ship();
    let dir = fam.dir.path();
    let damaged = good.with_file_name("sync_boston_19700101T000000Z_ship_9.zip");
    std::fs::write(&damaged, b"PK\x03\x04 not really").unwrap();

    let refused = mkorder(dir, &conf, &["-data", arg(&good), "-data", arg(&damaged)]).fails_with(1);
    assert!(
        refused.stderr.contains("damaged, not submitted"),
        "{}",
        refused.stderr
    );
    assert!(!bay(&conf, "outgoing").exists(), "no bay made for nothing");
    assert!(good.exists(), "nothing moved");
    // The same packet named twice (here, once as a copy elsewhere) would
    // put two files under one name: refused, nothing submitted.
    let elsewhere = fam.packet_dir("copy").join(good.file_name().unwrap());
    std::fs::copy(&good, &elsewhere).unwrap();
    let twice = mkorder(dir, &conf, &["-data", arg(&good), "-data", arg(&elsewhere)]).fails_with(1);
    assert!(twice.stderr.contains("is named twice"), "{}", twice.stderr);
    assert!(!bay(&conf, "outgoing").exists(), "nothing submitted");
    assert!(good.exists() && elsewhere.exists(), "nothing moved");

    let ok = mkorder(
        dir,
        &conf,
        &["-copy", "-pexpire", "2d", "-data", arg(&good)],
    )
    .ok();
    assert!(ok.stdout.contains("for ship"), "{}", ok.stdout);
    assert!(good.exists(), "-copy keeps the file");
    let again = mkorder(dir, &conf, &["-data", arg(&good)]).fails_with(1);
    assert!(again.stderr.contains("is already in"), "{}", again.stderr);

    let listing = run(dir, "lspacket", ["-shipconf", arg(&conf), "-fmt", "json"]);
    let json: serde_json::Value = serde_json::from_str(&listing.stdout).unwrap();
    let json = &json["packets"];
    assert_eq!(json[0]["bay"], "outgoing");
    assert_eq!(json[0]["storage_class"], "default");
    assert_eq!(json[0]["order"]["destinations"][0], "ship");

    // A packet left in the outgoing bay without an order (an export cut off
    // before queuing) is queued where it lies, as -poll's warning says.
    write(&fam.root("boston"), "f", "2");
    let outgoing = bay(&conf, "outgoing");
    export_to(&fam.root("boston"), &outgoing, &["ship"], &[]).ok();
    let unordered = unordered_in(&outgoing);
    assert_eq!(unordered.len(), 1, "{unordered:?}");
    let queued = mkorder(dir, &conf, &["-data", arg(&unordered[0])]).ok();
    assert!(queued.stdout.contains("for ship"), "{}", queued.stdout);
    assert!(unordered[0].exists(), "left in place");
    let twice = mkorder(dir, &conf, &["-data", arg(&unordered[0])]).fails_with(1);
    assert!(twice.stderr.contains("its order is"), "{}", twice.stderr);
}

/// Packets in `outgoing` without an order beside them.
fn unordered_in(outgoing: &Path) -> Vec<PathBuf> {
    packet_files(outgoing)
        .into_iter()
        .filter(|p| {
            !outgoing
                .join(format!(
                    "{}.order",
                    p.file_name().unwrap().to_str().unwrap()
                ))
                .exists()
        })
        .collect()
}

#[test]
fn an_export_killed_before_queueing_leaves_nothing_unshipped() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let conf = shipping_conf(
        dir,
        "sender",
        "local_replicas = [\"boston\"]",
        "[destinations.ship]\nurl = \"http://127.0.0.1:9\"\n",
    );
    let boston = fam.root("boston");
    let outgoing = bay(&conf, "outgoing");
    write(&boston, "f", "1");
    let args = ["-export", "-ship", "-shipconf", arg(&conf), "ship"];
    // Killed with the parts in the bay and no order yet: the estimate is
    // not raised, and the next export queues the parts it finds.
    assert_crashed(&run_crashing_at(
        &boston,
        "syncreplica",
        args,
        "export-after-parts",
    ));
    assert_eq!(unordered_in(&outgoing).len(), 1);
    let next = run(&boston, "syncreplica", args).ok();
    assert!(
        next.stdout
            .contains("left without a shipping order by an interrupted export"),
        "{}",
        next.stdout
    );
    assert!(
        next.stdout.contains("ship lacks nothing"),
        "{}",
        next.stdout
    );
    assert_eq!(unordered_in(&outgoing), Vec::<PathBuf>::new());

    // Killed after the orders, before the estimate: the next export
    // records the queued packet as sent rather than writing it again.
    write(&boston, "f", "2");
    assert_crashed(&run_crashing_at(
        &boston,
        "syncreplica",
        args,
        "export-before-commit",
    ));
    assert_eq!(unordered_in(&outgoing), Vec::<PathBuf>::new());
    let again = run(&boston, "syncreplica", args).ok();
    assert!(
        again.stdout.contains("ship lacks nothing"),
        "{}",
        again.stdout
    );
    assert_eq!(packet_files(&outgoing).len(), 2);
    write(&boston, "f", "3");
    let third = run(&boston, "syncreplica", args).ok();
    assert!(
        third.stdout.contains("Exported to ship"),
        "{}",
        third.stdout
    );
}

#[test]
fn poll_queues_a_local_replicas_packet_left_without_an_order() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let target = dir.join("ship-dropbox");
    std::fs::create_dir(&target).unwrap();
    let conf = shipping_conf(
        dir,
        "sender",
        "local_replicas = [\"boston\"]",
        &format!("[destinations.ship]\ndir = \"{}\"\n", target.display()),
    );
    let outgoing = bay(&conf, "outgoing");
    write(&fam.root("boston"), "f", "1");
    let args = ["-export", "-ship", "-shipconf", arg(&conf), "ship"];
    assert_crashed(&run_crashing_at(
        &fam.root("boston"),
        "syncreplica",
        args,
        "export-after-parts",
    ));
    let left = unordered_in(&outgoing);
    assert_eq!(left.len(), 1);
    // Old enough not to be an export still at work.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    std::fs::File::options()
        .write(true)
        .open(&left[0])
        .unwrap()
        .set_modified(old)
        .unwrap();
    let pass = shipping_server(&conf, &["-poll"]).ok();
    assert!(pass.stdout.contains("queued"), "{}", pass.stdout);
    assert_eq!(packet_files(&target).len(), 1, "{}", pass.stdout);
}

#[test]
fn named_orders_are_all_checked_before_any_is_delivered() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let conf = receiver_conf(&fam);
    write(&fam.root("boston"), "f", "1");
    run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-ship", "-shipconf", arg(&conf), "ship"],
    )
    .ok();
    let outgoing = bay(&conf, "outgoing");
    let order = packet_files(&outgoing)[0].with_extension("zip.order");
    assert!(order.is_file(), "{:?}", files_under(&outgoing));
    let before = everything_under(&bay(&conf, ""));
    // A second order that is not there: nothing is delivered.
    let missing = dir.join("sync_boston_19700101T000000Z_ship_9.zip.order");
    // (A missing file is a usage mistake: exit 2.)
    let refused = shipping_server(&conf, &[arg(&order), arg(&missing)]).fails_with(2);
    assert!(
        refused
            .stderr
            .contains(&format!("{}: no such file or directory", missing.display())),
        "{}",
        refused.stderr
    );
    assert_eq!(
        everything_under(&bay(&conf, "")),
        before,
        "nothing delivered"
    );
    // An order of a storage class the configuration lacks: the same.
    let other = fam.packet_dir("other");
    let name = packet_files(&outgoing)[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    std::fs::copy(outgoing.join(&name), other.join(&name)).unwrap();
    let text = std::fs::read_to_string(&order).unwrap().replace(
        "storage_class = \"default\"",
        "storage_class = \"elsewhere\"",
    );
    std::fs::write(other.join(format!("{name}.order")), text).unwrap();
    let refused = shipping_server(&conf, &[arg(&order), arg(&other.join(&name))]).fails_with(1);
    assert!(refused.stderr.contains("elsewhere"), "{}", refused.stderr);
    assert_eq!(
        everything_under(&bay(&conf, "")),
        before,
        "nothing delivered"
    );
    // Named alone (and twice), it is delivered once.
    let done = shipping_server(&conf, &[arg(&order), arg(&order)]).ok();
    assert!(done.stdout.contains("1 delivered"), "{}", done.stdout);
    receive_at_ship(&fam, &conf);
    assert_eq!(
        tree_listing(&fam.root("ship")),
        tree_listing(&fam.root("boston"))
    );
}

#[test]
fn a_receive_that_applies_nothing_records_nothing() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let conf = receiver_conf(&fam);
    let ship = fam.root("ship");
    write(&ship, "pending.txt", "not recorded yet");
    let incoming = bay(&conf, "incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(
        incoming.join("sync_boston_19700101T000000Z_ship_9.zip"),
        b"PK\x03\x04 not really",
    )
    .unwrap();
    let before = everything_under(&ship);
    let bay_before = everything_under(&incoming);
    let out = run(
        &ship,
        "syncreplica",
        ["-import", "-receive", "-shipconf", arg(&conf)],
    )
    .fails_with(1);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    assert_eq!(everything_under(&ship), before, "replica unchanged");
    assert_eq!(everything_under(&incoming), bay_before, "bay unchanged");
}

/// A hop that answers every upload with `status` and `body`, once per
/// connection, until the test ends; returns its URL.
fn hostile_hop(status: u16, body: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            // The whole request first, so the sender sees the answer.
            let mut request = Vec::new();
            let mut buffer = [0u8; 65536];
            let mut wanted = None;
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
                if wanted.is_none() {
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        wanted = Some(end + 4 + length);
                    }
                }
                if wanted.is_some_and(|w| request.len() >= w) {
                    break;
                }
            }
            let head = format!(
                "HTTP/1.1 {status} Refused\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    url
}

/// What a remote hop answers is text from elsewhere: in shipping_server's
/// log and in lspacket's listing of the order it is escaped, so it can
/// neither drive a terminal nor forge a log line.
#[test]
fn a_hops_answer_is_logged_and_listed_escaped() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let url = hostile_hop(
        500,
        b"\x1b[2J\x1b[31mno\n2030-01-01T00:00:00Z shipping_server: 1 delivered\r\nSignature: verified",
    );
    let sender_conf = sender_conf(dir, &url);
    write(&fam.root("boston"), "f", "1");
    run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-ship", "-shipconf", arg(&sender_conf), "ship"],
    )
    .ok();
    let poll = shipping_server(&sender_conf, &["-poll"]).fails_with(1);
    let listing = run(dir, "lspacket", ["-shipconf", arg(&sender_conf)]);
    for (what, text) in [
        ("log", &poll.stdout),
        ("log (stderr)", &poll.stderr),
        ("lspacket", &listing.stdout),
        ("lspacket (stderr)", &listing.stderr),
    ] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: raw control characters: {text:?}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("2030") || l.starts_with("Signature: verified")),
            "{what}: a forged line: {text}"
        );
    }
    assert!(
        poll.stdout
            .contains("refused with HTTP 500: \\u{1b}[2J\\u{1b}[31mno\\n2030"),
        "{}",
        poll.stdout
    );
    assert!(
        listing
            .stdout
            .contains("refused with HTTP 500: \\u{1b}[2J\\u{1b}[31mno"),
        "{}",
        listing.stdout
    );
}

/// Runs `name ARGS…` in `cwd` under `umask`.
fn run_with_umask(cwd: &Path, umask: &str, name: &str, args: &[&str]) -> Run {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(binary_path(name))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn modes_of_files_under(dir: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut modes: Vec<(String, u32)> = files_under(dir)
        .into_iter()
        .map(|path| {
            let mode = std::fs::metadata(dir.join(&path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            (path, mode)
        })
        .collect();
    modes.sort();
    modes
}

#[test]
fn packets_bay_files_and_orders_honour_the_umask_and_key_files_stay_private() {
    let fam = family(&["hq", "ship"], &[("a.txt", "one\n")]);
    let hq = fam.root("hq");
    write(&hq, "a.txt", "two\n");
    let out = fam.packet_dir("group");
    run_with_umask(
        &hq,
        "027",
        "syncreplica",
        &["-export", "-out", arg(&out), "ship"],
    )
    .ok();
    let modes = modes_of_files_under(&out);
    assert!(!modes.is_empty());
    assert!(modes.iter().all(|(_, mode)| *mode == 0o640), "{modes:?}");

    write(&hq, "a.txt", "three\n");
    let conf = bay_shipping_conf(fam.dir.path());
    run_with_umask(
        &hq,
        "022",
        "syncreplica",
        &["-export", "-ship", "-shipconf", arg(&conf), "ship"],
    )
    .ok();
    let modes = modes_of_files_under(&fam.dir.path().join("bay"));
    assert!(
        modes.iter().any(|(name, _)| name.ends_with(".order")),
        "{modes:?}"
    );
    assert!(
        modes
            .iter()
            .filter(|(name, _)| !name.contains(".lock"))
            .all(|(_, mode)| *mode == 0o644),
        "{modes:?}"
    );

    // A new member's secret key is never readable by others, whatever the
    // umask says.
    let creation = fam.packet_dir("creation");
    run_with_umask(
        &hq,
        "000",
        "mkreplica",
        &[
            "-export",
            "-out",
            arg(&creation),
            "-keyout",
            arg(&creation.join("lab.key")),
            "lab",
        ],
    )
    .ok();
    let modes = modes_of_files_under(&creation);
    let keys: Vec<_> = modes
        .iter()
        .filter(|(name, _)| name.ends_with(".key"))
        .collect();
    assert!(!keys.is_empty(), "{modes:?}");
    assert!(keys.iter().all(|(_, mode)| *mode == 0o600), "{modes:?}");
    assert!(
        modes
            .iter()
            .filter(|(name, _)| !name.ends_with(".key"))
            .all(|(_, mode)| *mode == 0o666),
        "{modes:?}"
    );
}

/// Issue 15: a hub that holds no replica and no secret, trusting only the
/// sender's signing key, verifies and forwards an encrypted packet; the
/// target reads it.
#[test]
fn a_hub_without_replica_verifies_and_forwards_an_encrypted_packet() {
    let fam = family(&["boston", "lab"], &[("doc/a.txt", "one")]);
    let dir = fam.dir.path();
    let usb = fam.packet_dir("usb");
    let secret = ed25519_dalek::SigningKey::from_bytes(
        &std::fs::read(fam.root("boston").join(".syncreplica/signing_key"))
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let boston_key = hex::encode(secret.verifying_key().to_bytes());
    let hub_conf = shipping_conf(
        dir,
        "hub",
        &format!("trusted_keys = [\"{boston_key}\"]"),
        &format!(
            "[routes]\nusb = [\"lab\"]\n\n[destinations.usb]\ndir = \"{}\"\n",
            usb.display()
        ),
    );
    let hub = Server::start(&hub_conf, "127.0.0.1:0", &[]);
    let sender_conf = shipping_conf(
        dir,
        "sender",
        "default_route = \"hub\"",
        &format!("[destinations.hub]\nurl = \"{}\"\n", hub.url()),
    );
    write(
        &fam.root("boston"),
        "doc/secret-plan.txt",
        "only lab may read this",
    );
    let out = run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-fship", "-shipconf", arg(&sender_conf), "lab"],
    )
    .ok();
    assert!(out.stdout.contains("Encrypted for: lab"), "{}", out.stdout);
    assert!(out.stdout.contains("delivered"), "{}", out.stdout);
    // The hub lists it (no replica there) as encrypted, not damaged.
    let listed = run(dir, "lspacket", ["-shipconf", arg(&hub_conf)]).ok();
    assert!(
        listed.stdout.contains("Encrypted for: lab"),
        "{}",
        listed.stdout
    );
    let pass = shipping_server(&hub_conf, &["-poll"]).ok();
    assert!(pass.stdout.contains("1 delivered"), "{}", pass.stdout);
    for file in packet_files(&usb) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes
            .windows(b"only lab may read".len())
            .any(|w| w == b"only lab may read"));
        assert!(!bytes
            .windows(b"secret-plan".len())
            .any(|w| w == b"secret-plan"));
    }
    let lab = run(
        &fam.root("lab"),
        "syncreplica",
        ["-import", "-remove", arg(&usb)],
    )
    .ok();
    assert!(lab.stdout.contains("1 packet applied"), "{}", lab.stdout);
    assert_eq!(
        std::fs::read_to_string(fam.root("lab").join("doc/secret-plan.txt")).unwrap(),
        "only lab may read this"
    );
}

#[test]
fn a_server_that_trusts_no_key_warns_at_start_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = shipping_conf(dir.path(), "lonely", "local_replicas = [\"ship\"]", "");
    let server = Server::start(&conf, "127.0.0.1:0", &[]);
    let log = server.log();
    assert!(
        log.contains("WARNING: no trusted key") && log.contains(&conf.display().to_string()),
        "{log}"
    );
    assert_eq!(server.terminate(), 0);
    // One that trusts a family says nothing of the kind.
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let server = Server::start(&receiver_conf(&fam), "127.0.0.1:0", &[]);
    assert!(!server.log().contains("no trusted key"), "{}", server.log());
}

#[test]
fn lspacket_skips_a_packet_delivered_between_the_listing_and_its_read() {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let conf = sender_conf(dir, "http://127.0.0.1:9");
    let out = fam.packet_dir("out");
    for content in ["1", "2"] {
        write(&fam.root("boston"), "f", content);
        export_to(&fam.root("boston"), &out, &["ship"], &[]).ok();
    }
    let files = packet_files(&out);
    assert_eq!(files.len(), 2);
    let mut args = vec!["-shipconf", arg(&conf)];
    for file in &files {
        args.extend(["-data", arg(file)]);
    }
    run(dir, "mkorder", &args).ok();
    let outgoing = bay(&conf, "outgoing");
    let marker = dir.join("listed.marker");
    let paused = start_paused_at(
        &fam.root("boston"),
        "lspacket",
        ["-shipconf", arg(&conf), "-short"],
        "lspacket-listed:outgoing",
        &marker,
    );
    // A server delivers the first packet meanwhile: packet, then order.
    let gone = files[0].file_name().unwrap();
    std::fs::remove_file(outgoing.join(gone)).unwrap();
    std::fs::remove_file(outgoing.join(format!("{}.order", gone.to_str().unwrap()))).unwrap();
    let listed = paused.resume();
    assert_eq!(listed.code, 0, "{}\n{}", listed.stdout, listed.stderr);
    assert_eq!(
        listed.stdout.trim(),
        outgoing
            .join(files[1].file_name().unwrap())
            .display()
            .to_string()
    );
    assert_eq!(listed.stderr, "");
}

/// Waits until `server`'s log holds `text` (30 s at most).
fn wait_for_log(server: &Server, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_polling_server_rereads_shipping_toml_when_it_changes() {
    // Review 17d item 2: a destination added to shipping.toml while
    // shipping_server -poll runs is used at its next pass.
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let conf = shipping_conf(dir, "sender", "", "");
    let server = Server::start(&conf, "127.0.0.1:0", &["-poll", "-interval", "1"]);

    // A broken file is not used; its error is logged once.
    std::fs::write(&conf, "bogus = 1\n").unwrap();
    let shown = conf.display().to_string();
    wait_for_log(&server, &format!("error: {shown} changed but is not used"));

    let stick = dir.join("stick");
    std::fs::create_dir(&stick).unwrap();
    shipping_conf(
        dir,
        "sender",
        "",
        &format!("[destinations.ship]\ndir = \"{}\"\n", stick.display()),
    );
    wait_for_log(&server, &format!("{shown} changed; reloaded"));
    assert_eq!(
        server.log().matches("changed but is not used").count(),
        1,
        "{}",
        server.log()
    );

    write(&fam.root("boston"), "f", "1");
    run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-ship", "-shipconf", arg(&conf), "ship"],
    )
    .ok();
    wait_for_log(&server, "delivered everywhere, removed");
    assert_eq!(packet_files(&stick).len(), 1, "{}", server.log());
    assert!(!server.log().contains("no route"), "{}", server.log());
    assert_eq!(server.terminate(), 0);
}

#[test]
fn mkorder_refuses_a_misspelt_destination_naming_the_nearest() {
    // Review 17d item 20: a typo is not a [destinations] entry to add.
    let (fam, conf, packet) = a_sender_with_a_packet_for_ship();
    let dir = fam.dir.path();
    let typo = mkorder(dir, &conf, &["-data", arg(&packet), "-copy", "shipp"]).fails_with(2);
    assert!(
        typo.stderr.contains("member \"shipp\": not a target of")
            && typo.stderr.contains("did you mean \"ship\"?")
            && !typo.stderr.contains("[destinations.shipp]"),
        "{}",
        typo.stderr
    );
    assert!(!bay(&conf, "outgoing").exists(), "nothing queued");
    // A name shipping.toml knows is accepted.
    mkorder(dir, &conf, &["-data", arg(&packet), "-copy", "ship"]).ok();
}

#[test]
fn mkorder_refuses_a_second_packet_given_without_its_own_data() {
    // Review 17d item 4: `-data A.zip B.zip` took B.zip for a replica.
    let (fam, conf, packet) = a_sender_with_a_packet_for_ship();
    let dir = fam.dir.path();
    let second = packet.with_file_name("B.zip");
    std::fs::copy(&packet, &second).unwrap();
    let refused =
        mkorder(dir, &conf, &["-data", arg(&packet), arg(&second), "-copy"]).fails_with(2);
    assert!(
        refused.stderr.contains(&format!(
            "DESTINATION {}: is a file, not a replica name; name each packet with its own -data",
            second.display()
        )),
        "{}",
        refused.stderr
    );
    assert!(!bay(&conf, "outgoing").exists(), "nothing queued");
}

#[test]
fn rmreplica_withdraws_the_removed_member_from_queued_orders() {
    // Review 17d item 11: orders for a removed member were retried until
    // they expired.
    let fam = family(&["boston", "ship", "tdelta"], &[("f", "0")]);
    let dir = fam.dir.path();
    let conf = shipping_conf(
        dir,
        "sender",
        "",
        "[destinations.ship]\nurl = \"http://127.0.0.1:9\"\n\
         [destinations.tdelta]\nurl = \"http://127.0.0.1:9\"\n",
    );
    write(&fam.root("boston"), "f", "1");
    run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-ship", "-shipconf", arg(&conf), "tdelta"],
    )
    .ok();
    let out = fam.packet_dir("out");
    export_to(&fam.root("boston"), &out, &["ship"], &[]).ok();
    let both = packet_files(&out)[0].clone();
    mkorder(dir, &conf, &["-data", arg(&both), "ship", "tdelta"]).ok();
    let outgoing = bay(&conf, "outgoing");
    assert_eq!(packet_files(&outgoing).len(), 2);

    let removed = command("rmreplica", ["-force", "tdelta"])
        .current_dir(fam.root("boston"))
        .env("SYNCREPLICA_SHIPPING_CONF", &conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&removed.stdout);
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(
        stdout.matches("Removed queued packet ").count(),
        1,
        "{stdout}"
    );
    let both_name = both.file_name().unwrap().to_str().unwrap();
    assert!(
        stdout.contains(&format!(
            "Withdrew \"tdelta\" from the shipping order of {both_name}."
        )),
        "{stdout}"
    );
    // Only the packet also for ship is left, its order for ship alone.
    assert_eq!(
        packet_files(&outgoing),
        [outgoing.join(both_name)],
        "{stdout}"
    );
    let order = std::fs::read_to_string(outgoing.join(format!("{both_name}.order"))).unwrap();
    assert!(order.contains("destinations = [\"ship\"]"), "{order}");
}
