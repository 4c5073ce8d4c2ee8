//! Shipping on paid links, through real `shipping_server` processes: an
//! upload cut off again and again resumes from what the receiver holds, a
//! destination's `max_rate` holds the bytes sent, and its `hours` hold the
//! transfer until the window opens.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::helpers::*;
use crate::shipping::{
    arg, bay, make_retries_due, receiver_conf, shipping_conf, shipping_server, Server,
};

/// What the proxy saw of one connection: bytes the client sent through
/// it, and when the first and the last of them came.
#[derive(Debug, Clone)]
struct Seen {
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    cut: bool,
}

#[derive(Default)]
struct ProxyState {
    /// Cut the connection that has passed on this many bytes (the front
    /// one; taken off once used).
    cuts: VecDeque<u64>,
    connections: Vec<Seen>,
}

/// A TCP proxy in front of `upstream` that counts what clients send and
/// drops a connection (both ways, as a link going down) once it has
/// passed on as many bytes as the next of its cuts.
struct Proxy {
    url: String,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    fn start(upstream: &str, cuts: &[u64]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ProxyState {
            cuts: cuts.iter().copied().collect(),
            connections: Vec::new(),
        }));
        let upstream = upstream.to_string();
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let upstream = upstream.clone();
                let state = shared.clone();
                std::thread::spawn(move || relay(client, &upstream, &state));
            }
        });
        Proxy { url, state }
    }

    fn connections(&self) -> Vec<Seen> {
        self.state.lock().unwrap().connections.clone()
    }

    /// Bytes clients sent through, over all connections.
    fn total(&self) -> u64 {
        self.connections().iter().map(|c| c.bytes).sum()
    }

    fn cuts_left(&self) -> usize {
        self.state.lock().unwrap().cuts.len()
    }
}

fn relay(mut client: TcpStream, upstream: &str, state: &Mutex<ProxyState>) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let index = {
        let mut state = state.lock().unwrap();
        state.connections.push(Seen {
            bytes: 0,
            first: None,
            last: None,
            cut: false,
        });
        state.connections.len() - 1
    };
    // Answers go back as they come.
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let mut buffer = vec![0u8; 64 * 1024];
    let mut passed = 0u64;
    loop {
        // Never past the next cut.
        let room = {
            let state = state.lock().unwrap();
            match state.cuts.front() {
                Some(&cut) => (cut - passed).min(buffer.len() as u64) as usize,
                None => buffer.len(),
            }
        };
        let n = match client.read(&mut buffer[..room]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server.write_all(&buffer[..n]).is_err() {
            break;
        }
        passed += n as u64;
        let now = Instant::now();
        let mut state = state.lock().unwrap();
        let seen = &mut state.connections[index];
        seen.bytes += n as u64;
        seen.first.get_or_insert(now);
        seen.last = Some(now);
        if state.cuts.front() == Some(&passed) {
            state.cuts.pop_front();
            state.connections[index].cut = true;
            drop(state);
            // The link goes down: both ends lose the connection at once.
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// xorshift64*: reproducible bytes that do not compress.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    fn write_file(&mut self, path: &Path, size: usize) {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut block = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            for word in block.chunks_mut(8) {
                word.copy_from_slice(&self.next().to_le_bytes()[..word.len()]);
            }
            let n = left.min(block.len());
            file.write_all(&block[..n]).unwrap();
            left -= n;
        }
        file.flush().unwrap();
    }
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hex::encode(hasher.finalize())
}

/// Files under `dir` whose names start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Waits (30 s at most) until `receiver` has written down `cuts` cut-off
/// uploads: a sender's next pass right after a cut may otherwise ask how
/// much is held before the receiver has noticed the cut, send from the
/// older offset and be refused (416) after pushing its body, which
/// these tests would count as bytes moved. (Real passes are minutes
/// apart, after the retry backoff.)
fn wait_until_cuts_written_down(receiver: &Server, cuts: usize) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while receiver.log().matches("held for resuming").count() < cuts && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `lspacket -shipconf CONF` once it lists a partial upload of `name`:
/// the receiver may still be writing down the end of the cut-off upload
/// when the sender has given up on it.
fn listing_with_partial(dir: &Path, conf: &Path, name: &str) -> Run {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listing = run(dir, "lspacket", ["-shipconf", arg(conf)]);
        if listing
            .stdout
            .contains(&format!("Partial upload: {name}, "))
            || Instant::now() > deadline
        {
            return listing;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A sender reaching "ship" at `url`, with `limits` in its destination
/// entry.
fn paid_sender_conf(dir: &Path, url: &str, limits: &str) -> std::path::PathBuf {
    shipping_conf(
        dir,
        "sender",
        "",
        &format!("[destinations.ship]\nurl = \"{url}\"\n{limits}\n"),
    )
}

/// Exports boston's change of a `size`-byte file of noise to "ship" and
/// queues it in the sender's outgoing bay; returns the packet's path.
fn queue_noise(fam: &Family, sender: &Path, size: usize, seed: u64) -> std::path::PathBuf {
    Noise(seed).write_file(&fam.root("boston").join("big.bin"), size);
    run(
        &fam.root("boston"),
        "syncreplica",
        ["-export", "-ship", "-shipconf", arg(sender), "ship"],
    )
    .ok();
    let packets = packet_files(&bay(sender, "outgoing"));
    assert_eq!(packets.len(), 1, "{packets:?}");
    packets[0].clone()
}

/// boston and ship, ship's receiving server (its shipping.toml and the
/// server) and the proxy a paid link's sender reaches it through, which
/// cuts its connections after `cuts` bytes each (see `Proxy::start`).
fn receiver_behind_a_proxy(cuts: &[u64]) -> (Family, PathBuf, Server, Proxy) {
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let receiver_conf = receiver_conf(&fam);
    let receiver = Server::start(&receiver_conf, "127.0.0.1:0", &[]);
    let proxy = Proxy::start(&receiver.addr, cuts);
    (fam, receiver_conf, receiver, proxy)
}

#[test]
fn a_200_mb_upload_cut_four_times_resumes_and_moves_less_than_1_2_times_its_size() {
    // The proxy's cuts are decided before the packet exists: each one
    // after 5 % to 24 % of 200 MiB more (deterministic seed), so all four
    // come before the end, wherever the packet's size lands.
    let mib = 1u64 << 20;
    let mut noise = Noise(0x5eed_0016);
    let cuts: Vec<u64> = (0..4).map(|_| noise.between(10 * mib, 48 * mib)).collect();
    let (fam, receiver_conf, receiver, proxy) = receiver_behind_a_proxy(&cuts);
    let dir = fam.dir.path();
    let sender = paid_sender_conf(dir, &proxy.url, "");
    let packet = queue_noise(&fam, &sender, 200 << 20, 16);
    let size = std::fs::metadata(&packet).unwrap().len();
    let sha = sha256_of(&packet);
    let name = packet.file_name().unwrap().to_str().unwrap().to_string();
    let incoming = bay(&receiver_conf, "incoming");

    let mut passes = 0;
    let mut failed_passes = 0;
    while bay(&sender, "outgoing").join(&name).exists() {
        passes += 1;
        assert!(passes <= 8, "still not delivered after 7 passes");
        let pass = shipping_server(&sender, &["-poll"]);
        if pass.code != 0 {
            failed_passes += 1;
            wait_until_cuts_written_down(&receiver, failed_passes);
        }
        if passes == 1 {
            // Cut off: the receiver keeps what came, and says so.
            assert_eq!(pass.code, 1, "{}\n{}", pass.stdout, pass.stderr);
            let listing = listing_with_partial(dir, &receiver_conf, &name);
            assert_eq!(named(&incoming, ".tmp-partial-").len(), 2);
            assert!(
                listing
                    .stdout
                    .contains(&format!("Partial upload: {name}, "))
                    && listing.stdout.contains(&format!(" of {size} bytes (")),
                "{}",
                listing.stdout
            );
        }
        make_retries_due(&bay(&sender, "outgoing"));
    }
    let moved = proxy.total();
    let ratio = moved as f64 / size as f64;
    let cut = proxy.connections().iter().filter(|c| c.cut).count();
    eprintln!(
        "resumed upload: packet {size} bytes, {cut} cuts at {cuts:?} bytes into their connections, \
         {passes} passes, {moved} bytes moved through the link ({ratio:.3}x)"
    );
    assert_eq!((cut, proxy.cuts_left()), (4, 0), "every cut happened");
    assert!(ratio < 1.2, "{moved} bytes moved for {size}: {ratio:.3}x");
    assert!(moved >= size, "{moved} < {size}");
    // Stored whole and verified, the partial gone.
    assert_eq!(sha256_of(&incoming.join(&name)), sha);
    assert_eq!(named(&incoming, ".tmp-"), Vec::<String>::new());
    let listing = run(dir, "lspacket", ["-shipconf", arg(&receiver_conf)]).ok();
    assert!(
        !listing.stdout.contains("Partial upload"),
        "{}",
        listing.stdout
    );
    drop(receiver);
}

#[test]
fn a_destinations_max_rate_is_honoured_within_ten_percent() {
    let (fam, receiver_conf, receiver, proxy) = receiver_behind_a_proxy(&[]);
    let dir = fam.dir.path();
    let rate = 2.0 * (1 << 20) as f64;
    let sender = paid_sender_conf(dir, &proxy.url, "max_rate = \"2m\"");
    let packet = queue_noise(&fam, &sender, 4 << 20, 2);
    let size = std::fs::metadata(&packet).unwrap().len();
    let started = Instant::now();
    shipping_server(&sender, &["-poll"]).ok();
    let took = started.elapsed().as_secs_f64();
    // The upload is the connection that carried the packet.
    let upload = proxy
        .connections()
        .into_iter()
        .max_by_key(|c| c.bytes)
        .unwrap();
    assert!(upload.bytes >= size, "{upload:?}");
    let span = (upload.last.unwrap() - upload.first.unwrap()).as_secs_f64();
    let measured = upload.bytes as f64 / span;
    eprintln!(
        "max_rate 2 MiB/s: {} bytes in {span:.3} s = {:.3} MiB/s ({:+.1} %), the pass took {took:.2} s",
        upload.bytes,
        measured / (1 << 20) as f64,
        (measured / rate - 1.0) * 100.0
    );
    assert!(measured <= rate * 1.10, "{measured} bytes/s");
    // Only the cap is strict; a loaded machine may send slower.
    assert!(measured >= rate * 0.5, "{measured} bytes/s");
    assert!(bay(&receiver_conf, "incoming")
        .join(packet.file_name().unwrap())
        .exists());
    drop(receiver);
}

#[test]
fn outside_its_hours_a_destination_waits_and_inside_them_it_is_delivered() {
    let (fam, receiver_conf, receiver, proxy) = receiver_behind_a_proxy(&[]);
    let dir = fam.dir.path();
    let hour = chrono::Timelike::hour(&chrono::Utc::now());
    let window = |from: u32, to: u32| {
        format!(
            "hours = \"{:02}:00-{:02}:00 UTC\"",
            (hour + from) % 24,
            (hour + to) % 24
        )
    };
    // Two to three hours from now: closed.
    let sender = paid_sender_conf(dir, &proxy.url, &window(2, 3));
    let packet = queue_noise(&fam, &sender, 64 << 10, 3);
    let pass = shipping_server(&sender, &["-poll"]).ok();
    assert!(pass.stdout.contains("1 waiting"), "{}", pass.stdout);
    assert!(
        pass.stdout.contains("waiting for ship's hours"),
        "{}",
        pass.stdout
    );
    assert_eq!(proxy.total(), 0, "nothing crossed the link");
    assert!(packet.exists());
    // Said once, not at every pass.
    let again = shipping_server(&sender, &["-poll"]).ok();
    assert!(again.stdout.contains("1 waiting"), "{}", again.stdout);
    assert!(
        !again.stdout.contains("waiting for ship's hours"),
        "{}",
        again.stdout
    );
    // Waiting for the window is no failed attempt (no backoff); the
    // listing says the order waits, and until when.
    let listing = run(&fam.root("boston"), "lspacket", ["-shipconf", arg(&sender)]).ok();
    assert!(listing.stdout.contains("to ship"), "{}", listing.stdout);
    let opens = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    assert!(
        listing.stdout.contains(&format!(
            "  delivery to ship: waits for ship's hours ({:02}:00-{:02}:00 UTC), until {opens}",
            (hour + 2) % 24,
            (hour + 3) % 24
        )),
        "{}",
        listing.stdout
    );
    assert!(
        !listing.stdout.contains("failed attempt"),
        "{}",
        listing.stdout
    );
    // A transfer the window's end cut left a failed attempt whose backoff
    // ran out before the window opens: the next try is the opening, in
    // text and JSON, and JSON says what the order waits for (review 16b).
    let order = bay(&sender, "outgoing").join(format!(
        "{}.order",
        packet.file_name().unwrap().to_str().unwrap()
    ));
    let mut text = std::fs::read_to_string(&order).unwrap();
    text.push_str(
        "\n[attempts.ship]\nfailures = 1\nlast_attempt = \"2020-01-01T00:00:00Z\"\n\
         last_error = \"cut by the end of the window\"\nnext_retry = \"2020-01-01T00:01:00Z\"\n",
    );
    std::fs::write(&order, text).unwrap();
    let listing = run(&fam.root("boston"), "lspacket", ["-shipconf", arg(&sender)]).ok();
    assert!(
        listing.stdout.contains(&format!("next try after {opens}")),
        "{}",
        listing.stdout
    );
    let json = run(
        &fam.root("boston"),
        "lspacket",
        ["-shipconf", arg(&sender), "-fmt", "json"],
    )
    .ok();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let listed = &value["packets"][0]["order"];
    assert_eq!(
        listed["attempts"]["ship"]["next_retry"],
        opens.as_str(),
        "{listed}"
    );
    assert_eq!(
        listed["waiting_for_hours"]["ship"]["until"],
        opens.as_str(),
        "{listed}"
    );
    assert_eq!(
        listed["waiting_for_hours"]["ship"]["hop"], "ship",
        "{listed}"
    );

    // From an hour ago to two hours on: open.
    let sender = paid_sender_conf(dir, &proxy.url, &window(23, 2));
    let pass = shipping_server(&sender, &["-poll"]).ok();
    assert!(pass.stdout.contains("1 delivered"), "{}", pass.stdout);
    assert!(bay(&receiver_conf, "incoming")
        .join(packet.file_name().unwrap())
        .exists());
    drop(receiver);
}

/// Into a class whose bays are on S3: the partial is kept in the bucket
/// (nothing on the receiving server's disk) and the packet goes into the
/// bucket once whole and verified.
#[cfg(feature = "s3")]
#[test]
fn an_upload_into_an_s3_bay_cut_twice_resumes_and_lands_in_the_bucket_once() {
    use shipping::BayStore;
    let Some((server, fam, prefix, receiver_conf)) = ship_receiving_on_s3("paid") else {
        return;
    };
    let dir = fam.dir.path();
    let receiving = Server::start(&receiver_conf, "127.0.0.1:0", &[]);
    let mib = 1u64 << 20;
    let cuts = [3 * mib, 2 * mib];
    let proxy = Proxy::start(&receiving.addr, &cuts);
    let sender = paid_sender_conf(dir, &proxy.url, "");
    let packet = queue_noise(&fam, &sender, 8 << 20, 5);
    let (size, name, bytes) = size_name_and_bytes(&packet);
    let mut passes = 0;
    let mut failed_passes = 0;
    while bay(&sender, "outgoing").join(&name).exists() {
        passes += 1;
        assert!(passes <= 5, "still not delivered after 4 passes");
        let pass = shipping_server(&sender, &["-poll"]);
        if pass.code != 0 {
            failed_passes += 1;
            wait_until_cuts_written_down(&receiving, failed_passes);
        }
        if passes == 1 {
            assert_eq!(pass.code, 1, "{}\n{}", pass.stdout, pass.stderr);
            let listing = listing_with_partial(dir, &receiver_conf, &name);
            assert!(
                listing
                    .stdout
                    .contains(&format!("Partial upload: {name}, ")),
                "{}\n{}",
                listing.stdout,
                listing.stderr
            );
        }
        make_retries_due(&bay(&sender, "outgoing"));
    }
    let moved = proxy.total();
    eprintln!(
        "S3 bay: {size} bytes, 2 cuts, {moved} bytes moved ({:.3}x)",
        moved as f64 / size as f64
    );
    assert_eq!(proxy.cuts_left(), 0);
    assert!((moved as f64) < size as f64 * 1.2, "{moved} for {size}");
    let incoming = s3_incoming(&server, &prefix);
    assert_eq!(incoming.list().unwrap(), [name.as_str()]);
    assert!(
        incoming.read(&name).unwrap() == bytes,
        "the bucket holds the packet as sent"
    );
    // No partial left on the receiving server's disk.
    let class = shipping::config::ShippingConfig::load(Some(&receiver_conf))
        .unwrap()
        .0;
    let partials = shipping::receive::partial_dir(class.class("default").unwrap());
    assert_eq!(named(&partials, ".tmp-"), Vec::<String>::new());
    drop(receiving);
}

/// Into a class on S3 shared by two servers: an upload cut off at one
/// resumes at the other, from the partial the first kept in the bucket.
#[cfg(feature = "s3")]
#[test]
fn an_upload_into_an_s3_bay_cut_at_one_server_resumes_at_another() {
    use shipping::BayStore;
    let Some((server, fam, prefix, receiver_conf)) = ship_receiving_on_s3("paid-two") else {
        return;
    };
    let dir = fam.dir.path();
    // Two hosts, as far as their disks go: each its own TMPDIR, where a
    // server spools what it receives.
    let (tmp_first, tmp_second) = (dir.join("tmp-first"), dir.join("tmp-second"));
    std::fs::create_dir_all(&tmp_first).unwrap();
    std::fs::create_dir_all(&tmp_second).unwrap();
    let first = Server::start_with_env(
        &receiver_conf,
        "127.0.0.1:0",
        &[],
        &[("TMPDIR", &tmp_first)],
    );
    let second = Server::start_with_env(
        &receiver_conf,
        "127.0.0.1:0",
        &[],
        &[("TMPDIR", &tmp_second)],
    );
    let mib = 1u64 << 20;
    // Cut past the first piece (4 MiB) and into the second.
    let to_first = Proxy::start(&first.addr, &[6 * mib]);
    let to_second = Proxy::start(&second.addr, &[]);
    let sender = paid_sender_conf(dir, &to_first.url, "");
    let packet = queue_noise(&fam, &sender, 10 << 20, 11);
    let (size, name, bytes) = size_name_and_bytes(&packet);

    let pass = shipping_server(&sender, &["-poll"]);
    assert_eq!(pass.code, 1, "{}\n{}", pass.stdout, pass.stderr);
    wait_until_cuts_written_down(&first, 1);
    assert_eq!(to_first.cuts_left(), 0);
    // The other server sees the partial the first one kept.
    let listing = run(dir, "lspacket", ["-shipconf", arg(&receiver_conf)]);
    assert!(
        listing
            .stdout
            .contains(&format!("Partial upload: {name}, ")),
        "{}\n{}",
        listing.stdout,
        listing.stderr
    );

    // The sender now reaches the second server.
    let sender = paid_sender_conf(dir, &to_second.url, "");
    make_retries_due(&bay(&sender, "outgoing"));
    let pass = shipping_server(&sender, &["-poll"]);
    assert_eq!(pass.code, 0, "{}\n{}", pass.stdout, pass.stderr);
    assert!(pass.stdout.contains("(resumed: "), "{}", pass.stdout);
    assert!(!bay(&sender, "outgoing").join(&name).exists());
    let moved = to_first.total() + to_second.total();
    eprintln!(
        "S3 bay, two servers: {size} bytes, cut at one, resumed at the other, {moved} bytes moved ({:.3}x)",
        moved as f64 / size as f64
    );
    assert!((moved as f64) < size as f64 * 1.2, "{moved} for {size}");
    assert!(second.log().contains("accepted PUT"), "{}", second.log());

    let incoming = s3_incoming(&server, &prefix);
    assert!(
        incoming.read(&name).unwrap() == bytes,
        "the bucket holds the packet as sent"
    );
    // Nothing of the partial is left in the bucket.
    assert_eq!(incoming.list_all_keys().unwrap(), [name.as_str()]);
    drop((first, second));
}

/// boston and ship, ship's receiver keeping its bays on the test S3
/// server under a fresh prefix `WORD-ID`: the server, the family, the
/// prefix and the receiver's shipping.toml. None when there is no S3
/// server to test with (the test is skipped).
#[cfg(feature = "s3")]
fn ship_receiving_on_s3(
    word: &str,
) -> Option<(test_support::S3Server, Family, String, std::path::PathBuf)> {
    let server = test_support::s3_server()?;
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let prefix = format!("{word}-{}", shipping::s3::unique_id());
    let receiver_conf = s3_receiver_conf(&fam, &server, &prefix);
    Some((server, fam, prefix, receiver_conf))
}

/// The size, file name and bytes of the packet file `packet`.
#[cfg(feature = "s3")]
fn size_name_and_bytes(packet: &Path) -> (u64, String, Vec<u8>) {
    let size = std::fs::metadata(packet).unwrap().len();
    let name = packet.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(packet).unwrap();
    (size, name, bytes)
}

/// A receiving server's shipping.toml for `ship` with its bays on S3 under
/// `prefix` in the test bucket; the server's credentials go into this
/// process's environment once, where the servers it starts find them.
#[cfg(feature = "s3")]
fn s3_receiver_conf(
    fam: &Family,
    server: &test_support::S3Server,
    prefix: &str,
) -> std::path::PathBuf {
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        for (key, value) in server.env() {
            std::env::set_var(key, value);
        }
    });
    let receiver_conf = fam.dir.path().join("receiver.toml");
    std::fs::write(
        &receiver_conf,
        format!(
            "local_replicas = [\"ship\"]\ntrusted_replicas = [\"{}\"]\n[classes.default]\n\
             storage_bay = \"s3://{bucket}/{prefix}/bay\"\nreturn_bay = \"s3://{bucket}/{prefix}/return\"\n\
             endpoint = \"{endpoint}\"\nregion = \"{region}\"\nallow_http = true\n",
            fam.root("ship").display(),
            bucket = server.bucket,
            endpoint = server.endpoint,
            region = server.region,
        ),
    )
    .unwrap();
    receiver_conf
}

/// The incoming bay under `prefix` in the test bucket, opened directly.
#[cfg(feature = "s3")]
fn s3_incoming(server: &test_support::S3Server, prefix: &str) -> shipping::s3::S3Store {
    let url = shipping::s3::S3Url::parse(&format!("s3://{}/{prefix}/bay/incoming", server.bucket))
        .unwrap();
    shipping::s3::S3Store::open(
        &url,
        &shipping::s3::S3Options {
            endpoint: Some(server.endpoint.clone()),
            region: Some(server.region.clone()),
            allow_http: true,
            credentials: Some((server.access_key.clone(), server.secret_key.clone())),
            ..shipping::s3::S3Options::default()
        },
    )
    .unwrap()
}
