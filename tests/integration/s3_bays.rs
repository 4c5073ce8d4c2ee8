//! Storage bays on S3 (a real Ceph RADOS Gateway on 127.0.0.1, started by
//! `.ci/ceph-rgw`): several `shipping_server`s sharing one bay, `mkorder`
//! and `lspacket` on it, expiry to an S3 return bay, `-import -receive`
//! from an S3 incoming bay. Each test works under a prefix of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shipping::s3::{unique_id, S3Options, S3Store, S3Url};
use shipping::BayStore;
use syncreplica::ops::{Change, PathState, VersionVector};

use crate::helpers::*;
use crate::shipping::{free_port, Server};

/// The S3 service, or None (the test skips, saying so; under CI=true it
/// fails instead). Its credentials go to every process the test starts
/// through the standard AWS variables.
fn service() -> Option<test_support::S3Server> {
    let server = test_support::s3_server()?;
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        for (key, value) in server.env() {
            std::env::set_var(key, value);
        }
    });
    Some(server)
}

/// `[classes.default]` with both bays under `s3://BUCKET/PREFIX`.
fn s3_class(server: &test_support::S3Server, prefix: &str, lease: u64) -> String {
    format!(
        "[classes.default]\nstorage_bay = \"s3://{bucket}/{prefix}/bay\"\n\
         return_bay = \"s3://{bucket}/{prefix}/return\"\nendpoint = \"{endpoint}\"\n\
         region = \"{region}\"\nallow_http = true\nlease_seconds = {lease}\n",
        bucket = server.bucket,
        endpoint = server.endpoint,
        region = server.region,
    )
}

/// The test's view of one bay, to look at it directly.
fn store(server: &test_support::S3Server, prefix: &str, bay: &str) -> S3Store {
    let url = S3Url::parse(&format!("s3://{}/{prefix}/{bay}", server.bucket)).unwrap();
    S3Store::open(
        &url,
        &S3Options {
            endpoint: Some(server.endpoint.clone()),
            region: Some(server.region.clone()),
            allow_http: true,
            credentials: Some((server.access_key.clone(), server.secret_key.clone())),
            ..S3Options::default()
        },
    )
    .unwrap()
}

fn public_key(root: &Path, name: &str) -> String {
    let members = run(root, "lsreplica", ["-long"]).ok().stdout;
    members
        .split(&format!("replica \"{name}\""))
        .nth(1)
        .and_then(|rest| rest.split("public key:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("lsreplica -long prints the public key")
        .to_string()
}

/// `count` distinct packets from boston (for ship), each with its own
/// name: created `first`, `first + 1`… seconds after 2023-11-14.
fn packets(fam: &Family, out: &Path, first: i64, count: i64) -> Vec<PathBuf> {
    let boston = fam.root("boston");
    let ship = fam.root("ship");
    let who = Forgery {
        origin: &boston,
        sender: &boston,
        signer: &boston,
        sealer: &boston,
    };
    for i in first..first + count {
        let change = Change::Path {
            path: format!("d{i}").into_bytes(),
            version: VersionVector(Default::default()),
            state: PathState::directory(0o755),
        };
        forge(&who, &ship, out, vec![change], |meta| {
            meta.created = syncreplica::ops::Timestamp::new(1_700_000_000 + i, 0).unwrap();
            meta.targets[0].seq = i as u64 + 1;
        });
    }
    packet_files(out)
}

/// A receiving host for `replica`, trusting boston's key, with its bays
/// in a directory.
fn receiver(dir: &Path, replica: &str, boston_key: &str) -> (Server, PathBuf) {
    let conf = dir.join(format!("recv-{replica}.toml"));
    let bay = dir.join(format!("recv-{replica}-bay"));
    std::fs::write(
        &conf,
        format!(
            "local_replicas = [\"{replica}\"]\ntrusted_keys = [\"{boston_key}\"]\n\
             [classes.default]\nstorage_bay = \"{0}\"\nreturn_bay = \"{0}/return\"\n",
            bay.display()
        ),
    )
    .unwrap();
    (
        Server::start(&conf, "127.0.0.1:0", &[]),
        bay.join("incoming"),
    )
}

/// Receipts a receiver answered 200 ("already here"): transmissions
/// repeated, recognised by the packet's id and part.
fn repeats(server: &Server) -> usize {
    server
        .log()
        .lines()
        .filter(|line| line.contains("accepted PUT") && line.contains(": 200 "))
        .count()
}

struct Hub {
    fam: Family,
    server: test_support::S3Server,
    prefix: String,
    conf: PathBuf,
    ship: (Server, PathBuf),
    lab: (Server, PathBuf),
    notified: PathBuf,
}

/// A family (boston sends), two receivers (ship and lab) and a hub
/// configuration whose bays are on S3, with `count` packets queued there
/// for both destinations by `mkorder`; bay locks held `lease` seconds.
fn hub(count: i64, lease: u64) -> Option<Hub> {
    let server = service()?;
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path().to_path_buf();
    let key = public_key(&fam.root("boston"), "boston");
    let ship = receiver(&dir, "ship", &key);
    let lab = receiver(&dir, "lab", &key);
    let prefix = format!("hub-{}", unique_id());
    let notified = dir.join("notified.log");
    let conf = dir.join("hub.toml");
    std::fs::write(
        &conf,
        format!(
            "trusted_keys = [\"{key}\"]\nnotify = 'echo \"$SYNCREPLICA_PACKET\" >> {}'\n\
             {}\n[destinations.ship]\nurl = \"{}\"\n[destinations.lab]\nurl = \"{}\"\n\
             [destinations.nowhere]\nurl = \"http://127.0.0.1:{}\"\n",
            notified.display(),
            s3_class(&server, &prefix, lease),
            ship.0.url(),
            lab.0.url(),
            free_port(),
        ),
    )
    .unwrap();
    let out = fam.packet_dir("queued");
    let files = packets(&fam, &out, 0, count);
    assert_eq!(files.len(), count as usize);
    let mut args = vec!["-shipconf".to_string(), conf.display().to_string()];
    for file in &files {
        args.push("-data".into());
        args.push(file.display().to_string());
    }
    args.extend(["ship".into(), "lab".into()]);
    let queued = run(&dir, "mkorder", &args).ok();
    assert_eq!(
        queued.stdout.matches("Submitted ").count(),
        count as usize,
        "{}",
        queued.stdout
    );
    Some(Hub {
        fam,
        server,
        prefix,
        conf,
        ship,
        lab,
        notified,
    })
}

impl Hub {
    fn outgoing(&self) -> S3Store {
        store(&self.server, &self.prefix, "bay/outgoing")
    }

    /// Orders still in the shared outgoing bay.
    fn orders_left(&self) -> usize {
        self.outgoing()
            .list()
            .unwrap()
            .iter()
            .filter(|n| n.ends_with(".order"))
            .count()
    }

    fn start(&self) -> Server {
        Server::start(&self.conf, "127.0.0.1:0", &["-poll", "-interval", "1"])
    }

    /// Every packet of `count` reached both receivers, each stored once.
    fn assert_all_arrived(&self, count: usize) {
        for (_, incoming) in [&self.ship, &self.lab] {
            assert_eq!(
                packet_files(incoming).len(),
                count,
                "{}",
                incoming.display()
            );
        }
    }
}

#[test]
fn three_servers_share_one_s3_bay_and_deliver_each_packet_exactly_once() {
    // A lease long against any stall of a live server on a loaded machine.
    let Some(hub) = hub(200, 20) else {
        return;
    };
    // A packet for a destination nobody answers, expiring at once: it
    // must reach the return bay once, with one notification, whichever
    // server's pass finds it.
    let out = hub.fam.packet_dir("expiring");
    let expiring = &packets(&hub.fam, &out, 1000, 1)[0];
    let queued = run(
        hub.fam.dir.path(),
        "mkorder",
        [
            "-shipconf",
            hub.conf.to_str().unwrap(),
            "-pexpire",
            "1s",
            "-data",
            expiring.to_str().unwrap(),
            "nowhere",
        ],
    )
    .ok();
    assert!(queued.stdout.contains("Submitted "), "{}", queued.stdout);

    let started = Instant::now();
    let servers: Vec<Server> = (0..3).map(|_| hub.start()).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while hub.orders_left() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} orders left; logs:\n{}",
            hub.orders_left(),
            servers.iter().map(Server::log).collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "3 servers shipped 200 packets to 2 destinations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let logs: String = servers.iter().map(Server::log).collect();
    // Claims spread the orders over the servers: each one delivered some.
    for server in &servers {
        assert!(server.log().contains("delivered sync_"), "{}", server.log());
    }
    for server in servers {
        assert_eq!(server.terminate(), 0);
    }
    hub.assert_all_arrived(200);
    // Without kills, no transmission is repeated.
    assert_eq!(repeats(&hub.ship.0), 0, "{}", hub.ship.0.log());
    assert_eq!(repeats(&hub.lab.0), 0, "{}", hub.lab.0.log());
    // The expired packet is in the return bay once, with its order, and
    // the administrator was told once.
    let name = expiring.file_name().unwrap().to_str().unwrap();
    let returned = store(&hub.server, &hub.prefix, "return").list().unwrap();
    assert_eq!(
        returned,
        [name.to_string(), format!("{name}.order")],
        "{logs}"
    );
    let told = std::fs::read_to_string(&hub.notified).unwrap();
    assert_eq!(told.lines().collect::<Vec<_>>(), [name], "{logs}");
    assert_eq!(
        logs.matches(&format!("expired {name}")).count(),
        1,
        "{logs}"
    );
    // Nothing is left in the shared bay: no packet, no lock.
    assert_eq!(
        hub.outgoing().list_all_keys().unwrap(),
        Vec::<String>::new()
    );

    // lspacket lists the return bay's packet with its order, by its
    // s3:// name.
    let listed = run(
        hub.fam.dir.path(),
        "lspacket",
        ["-shipconf", hub.conf.to_str().unwrap(), "-short"],
    )
    .ok();
    assert_eq!(
        listed.stdout.trim(),
        format!("s3://{}/{}/return/{name}", hub.server.bucket, hub.prefix)
    );
}

#[test]
fn an_order_another_server_claimed_is_left_to_it_and_a_dead_servers_claim_is_taken_over() {
    let Some(hub) = hub(3, 20) else {
        return;
    };
    let outgoing = hub.outgoing();
    let packets: Vec<String> = outgoing
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| !n.ends_with(".order"))
        .collect();
    assert_eq!(packets.len(), 3);
    // Another server is working on the first order (its claim is renewed
    // while this test holds it)...
    let busy = outgoing
        .claim_order(&packets[0])
        .unwrap()
        .expect("nobody else claims it");
    // ...and one that died held the second: its lease ran out.
    let expired = chrono::Utc::now().timestamp() - 1;
    assert!(outgoing
        .create_new(
            &format!(".claim-{}", packets[1]),
            format!("holder = \"dead:1\"\nexpires = {expired}\n").as_bytes()
        )
        .unwrap());
    let server = hub.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while hub.orders_left() > 1 {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Passes go on (one a second) while the claimed order is left alone.
    std::thread::sleep(Duration::from_secs(3));
    assert!(busy.held());
    let arrived = |incoming: &Path| -> Vec<String> {
        packet_files(incoming)
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect()
    };
    let mut expected = vec![packets[1].clone(), packets[2].clone()];
    expected.sort();
    assert_eq!(arrived(&hub.ship.1), expected, "{}", server.log());
    assert_eq!(arrived(&hub.lab.1), expected, "{}", server.log());
    assert!(outgoing.exists(&format!("{}.order", packets[0])).unwrap());
    // Released: the next pass delivers it.
    drop(busy);
    while hub.orders_left() > 0 {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.terminate(), 0);
    hub.assert_all_arrived(3);
    assert_eq!(repeats(&hub.ship.0) + repeats(&hub.lab.0), 0);
    // No claim is left behind.
    assert_eq!(outgoing.list_all_keys().unwrap(), Vec::<String>::new());
}

#[test]
fn shipping_server_order_works_through_an_order_named_by_its_s3_url() {
    let Some(hub) = hub(1, 20) else {
        return;
    };
    let outgoing = hub.outgoing();
    let packet = outgoing
        .list()
        .unwrap()
        .into_iter()
        .find(|n| !n.ends_with(".order"))
        .unwrap();
    let conf = hub.conf.to_str().unwrap();
    let url = format!("{}/{packet}.order", outgoing.describe());
    // Named while another server holds its claim: left to it.
    let claim = outgoing.claim_order(&packet).unwrap().unwrap();
    let left = run(
        hub.fam.dir.path(),
        "shipping_server",
        ["-shipconf", conf, &url],
    )
    .ok();
    assert!(left.stdout.contains("left to it"), "{}", left.stdout);
    drop(claim);
    let shipped = run(
        hub.fam.dir.path(),
        "shipping_server",
        ["-shipconf", conf, &url],
    )
    .ok();
    assert!(
        shipped.stdout.contains(&format!("delivered {packet}")),
        "{}",
        shipped.stdout
    );
    hub.assert_all_arrived(1);
    assert_eq!(outgoing.list_all_keys().unwrap(), Vec::<String>::new());
    // A URL outside every class's outgoing bay is refused, naming it.
    let elsewhere = format!(
        "s3://{}/elsewhere/outgoing/{packet}.order",
        hub.server.bucket
    );
    let refused = run(
        hub.fam.dir.path(),
        "shipping_server",
        ["-shipconf", conf, &elsewhere],
    )
    .fails_with(1);
    assert!(
        refused
            .stderr
            .contains("not in the outgoing bay of any storage class on S3"),
        "{}",
        refused.stderr
    );
}

#[test]
fn servers_killed_and_restarted_at_random_lose_nothing_and_store_nothing_twice() {
    // Short leases: a killed server's lock holds the others up that long.
    let Some(hub) = hub(200, 4) else {
        return;
    };
    let mut rng = test_support::XorShift(0x005e_ed16);
    let mut servers: Vec<Server> = (0..3).map(|_| hub.start()).collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut kills = 0;
    while hub.orders_left() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} orders left",
            hub.orders_left()
        );
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500) as u64));
        if kills < 12 {
            let victim = rng.below(servers.len());
            servers.remove(victim).kill();
            kills += 1;
            servers.push(hub.start());
        }
    }
    for server in servers {
        assert_eq!(server.terminate(), 0);
    }
    // Every packet reached both destinations and is stored there once (a
    // repeated transmission is answered "already here" and not stored
    // again).
    hub.assert_all_arrived(200);
    let repeated = repeats(&hub.ship.0) + repeats(&hub.lab.0);
    eprintln!("{kills} kills; transmissions repeated after a kill: {repeated}");
    // A kill repeats at most the one hand-over in progress.
    assert!(repeated <= kills, "{repeated} repeats for {kills} kills");
}

#[test]
fn import_receive_reads_an_s3_incoming_bay() {
    let Some(server) = service() else {
        return;
    };
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let prefix = format!("recv-{}", unique_id());
    let conf = dir.join("ship.toml");
    std::fs::write(
        &conf,
        format!(
            "local_replicas = [\"ship\"]\ntrusted_replicas = [\"{}\"]\n{}",
            fam.root("ship").display(),
            s3_class(&server, &prefix, 60)
        ),
    )
    .unwrap();
    write(&fam.root("boston"), "f", "1");
    write(&fam.root("boston"), "g", "new");
    let out = fam.packet_dir("sent");
    export_to(&fam.root("boston"), &out, &["ship"], &[]).ok();
    let packet = &packet_files(&out)[0];
    let name = packet.file_name().unwrap().to_str().unwrap();
    // It arrives over HTTP at a server whose incoming bay is on S3.
    let receiving = Server::start(&conf, "127.0.0.1:0", &[]);
    let answer = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
        .arg(packet)
        .arg(format!("{}/packets/{name}", receiving.url()))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout),
        "201",
        "{}",
        receiving.log()
    );
    drop(receiving);
    let incoming = store(&server, &prefix, "bay/incoming");
    assert_eq!(incoming.list().unwrap(), [name]);

    let imported = run(
        &fam.root("ship"),
        "syncreplica",
        ["-import", "-receive", "-shipconf", conf.to_str().unwrap()],
    )
    .ok();
    assert!(
        imported.stdout.contains("Applied packet"),
        "{}",
        imported.stdout
    );
    assert_eq!(
        tree_listing(&fam.root("ship")),
        tree_listing(&fam.root("boston"))
    );
    // Consumed: gone from the bucket.
    assert_eq!(incoming.list_all_keys().unwrap(), Vec::<String>::new());
}

/// A hub configuration with its bays on S3 under `prefix`, a destination
/// nobody answers ("nowhere") and a notify command that writes each
/// notice's body to `notice`; returns its path.
fn lone_hub(dir: &Path, server: &test_support::S3Server, prefix: &str, notice: &Path) -> PathBuf {
    let conf = dir.join(format!("{prefix}.toml"));
    std::fs::write(
        &conf,
        format!(
            "notify = \"cat > '{}'\"\n{}\n[destinations.nowhere]\nurl = \"http://127.0.0.1:{}\"\n",
            notice.display(),
            s3_class(server, prefix, 20),
            free_port(),
        ),
    )
    .unwrap();
    conf
}

#[test]
fn the_mkorder_command_an_expiry_notice_gives_resends_the_packet_from_the_s3_return_bay() {
    let Some(server) = service() else {
        return;
    };
    let fam = family(&["boston", "ship"], &[("f", "0")]);
    let dir = fam.dir.path();
    let prefix = format!("ret-{}", unique_id());
    let notice = dir.join("notice.txt");
    let conf = lone_hub(dir, &server, &prefix, &notice);
    let conf_arg = conf.to_str().unwrap();
    let out = fam.packet_dir("expiring");
    let packet = &packets(&fam, &out, 0, 1)[0];
    let name = packet.file_name().unwrap().to_str().unwrap().to_string();
    let bytes = std::fs::read(packet).unwrap();
    run(
        dir,
        "mkorder",
        [
            "-shipconf",
            conf_arg,
            "-pexpire",
            "1s",
            "-data",
            packet.to_str().unwrap(),
            "nowhere",
        ],
    )
    .ok();
    std::thread::sleep(Duration::from_millis(1100));
    let pass = run(dir, "shipping_server", ["-shipconf", conf_arg, "-poll"]).ok();
    assert!(pass.stdout.contains("1 expired"), "{}", pass.stdout);
    let returned = store(&server, &prefix, "return");
    assert_eq!(
        returned.list().unwrap(),
        [name.clone(), format!("{name}.order")]
    );

    // The notice's command, run as the administrator would (with the
    // hub's configuration), queues the packet again from the return bay.
    let told = std::fs::read_to_string(&notice).expect("the notify program ran");
    let command = told
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("mkorder -data "))
        .unwrap_or_else(|| panic!("no mkorder command in:\n{told}"));
    let url = format!("s3://{}/{prefix}/return/{name}", server.bucket);
    assert_eq!(command, format!("mkorder -data {url} nowhere"));
    let mut args: Vec<&str> = command.split_whitespace().skip(1).collect();
    args.extend(["-shipconf", conf_arg]);
    let again = run(dir, "mkorder", &args).ok();
    assert!(again.stdout.contains("Submitted "), "{}", again.stdout);
    let outgoing = store(&server, &prefix, "bay/outgoing");
    assert_eq!(
        outgoing.list().unwrap(),
        [name.clone(), format!("{name}.order")]
    );
    assert_eq!(outgoing.read(&name).unwrap(), bytes);
    // Moved: no longer in the return bay, nor is its expired order (the
    // new one in the outgoing bay replaces it; review 16b).
    assert!(!returned.exists(&name).unwrap());
    assert!(!returned.exists(&format!("{name}.order")).unwrap());

    // A packet that is not there, or a URL outside every class's bays,
    // is refused with exit 1, naming it, and nothing is queued.
    let missing = run(
        dir,
        "mkorder",
        ["-shipconf", conf_arg, "-data", &url, "nowhere"],
    )
    .fails_with(1);
    assert!(
        missing
            .stderr
            .contains(&format!("no packet {name} in s3://")),
        "{}",
        missing.stderr
    );
    let elsewhere = format!("s3://{}/elsewhere/return/{name}", server.bucket);
    let refused = run(
        dir,
        "mkorder",
        ["-shipconf", conf_arg, "-data", &elsewhere, "nowhere"],
    )
    .fails_with(1);
    assert!(
        refused
            .stderr
            .contains("is not a bay of any storage class on S3"),
        "{}",
        refused.stderr
    );
}

#[test]
fn lspacket_skips_a_packet_delivered_from_the_s3_bay_between_the_listing_and_its_read() {
    let Some(hub) = hub(2, 20) else {
        return;
    };
    let outgoing = hub.outgoing();
    let names: Vec<String> = outgoing
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| !n.ends_with(".order"))
        .collect();
    assert_eq!(names.len(), 2);
    let marker = hub.fam.dir.path().join("listed.marker");
    let paused = start_paused_at(
        hub.fam.dir.path(),
        "lspacket",
        ["-shipconf", hub.conf.to_str().unwrap(), "-short"],
        "lspacket-listed:outgoing",
        &marker,
    );
    // A server delivers the first packet meanwhile: packet, then order.
    outgoing.remove(&names[0]).unwrap();
    outgoing.remove(&format!("{}.order", names[0])).unwrap();
    let listed = paused.resume();
    assert_eq!(listed.code, 0, "{}\n{}", listed.stdout, listed.stderr);
    assert_eq!(
        listed.stdout.trim(),
        format!("{}/{}", outgoing.describe(), names[1])
    );
    assert_eq!(listed.stderr, "");
}

/// `name args…` in `dir` with the S3 variables changed: `set` given,
/// `unset` removed.
fn run_s3_env(dir: &Path, name: &str, args: &[&str], set: &[(&str, &str)], unset: &[&str]) -> Run {
    let mut command = command(name, args);
    command.current_dir(dir).stdin(std::process::Stdio::null());
    for (key, value) in set {
        command.env(key, value);
    }
    for key in unset {
        command.env_remove(key);
    }
    let output = command.output().expect("binary starts");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn s3_configuration_mistakes_are_said_plainly_with_what_to_do() {
    let Some(server) = service() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let prefix = format!("conf-{}", unique_id());
    let conf = dir.join("hub.toml");
    let conf_arg = conf.to_str().unwrap();
    let good = s3_class(&server, &prefix, 20);
    let write_conf = |class: &str| std::fs::write(&conf, class).unwrap();
    // Each mistake, for a reading and a writing command: the bay, the
    // endpoint, what is wrong, and a hint; never the raw service answer
    // or the internal probe object.
    let said = |set: &[(&str, &str)], unset: &[&str], words: &[&str], hint: &str| {
        for name in ["lspacket", "shipping_server"] {
            let args: &[&str] = match name {
                "lspacket" => &["-shipconf", conf_arg],
                _ => &["-shipconf", conf_arg, "-poll"],
            };
            let run = run_s3_env(dir, name, args, set, unset).fails_with(1);
            let first = run.stderr.lines().next().unwrap_or_default();
            assert!(
                first.starts_with(&format!("{name}: error: s3://{}/{prefix}/", server.bucket)),
                "{}",
                run.stderr
            );
            for word in words {
                assert!(run.stderr.contains(word), "{word}: {}", run.stderr);
            }
            assert!(
                run.stderr.contains(&format!("{name}: hint: {hint}")),
                "{}",
                run.stderr
            );
            for raw in [".lock-probe", "Error performing", "<Code>"] {
                assert!(!run.stderr.contains(raw), "{raw}: {}", run.stderr);
            }
            assert_eq!(run.stderr.lines().count(), 2, "said once: {}", run.stderr);
        }
    };
    // The wrong endpoint: nothing listens there.
    let port = free_port();
    write_conf(&good.replace(&server.endpoint, &format!("http://127.0.0.1:{port}")));
    said(
        &[],
        &[],
        &[
            &format!("(endpoint http://127.0.0.1:{port})"),
            "cannot reach the service (connection refused)",
        ],
        "check endpoint in the class",
    );
    // A bucket that does not exist.
    write_conf(&good.replace(
        &format!("s3://{}/", server.bucket),
        "s3://no-such-bucket-16/",
    ));
    let said_bucket = |words: &[&str], hint: &str| {
        for name in ["lspacket", "shipping_server"] {
            let args: &[&str] = match name {
                "lspacket" => &["-shipconf", conf_arg],
                _ => &["-shipconf", conf_arg, "-poll"],
            };
            let run = run_s3_env(dir, name, args, &[], &[]).fails_with(1);
            for word in words {
                assert!(run.stderr.contains(word), "{word}: {}", run.stderr);
            }
            assert!(run.stderr.contains(hint), "{}", run.stderr);
            assert!(!run.stderr.contains(".lock-probe"), "{}", run.stderr);
        }
    };
    said_bucket(
        &["the bucket no-such-bucket-16 does not exist there"],
        "hint: create it",
    );
    write_conf(&good);
    // A wrong secret, an unknown key id, no credentials at all.
    said(
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        &[],
        &[&format!(
            "the secret key is not the one of access key id {}",
            server.access_key
        )],
        "correct the secret key",
    );
    said(
        &[("AWS_ACCESS_KEY_ID", "NOSUCHKEY16")],
        &[],
        &["the service knows no access key id NOSUCHKEY16"],
        "correct the access key id",
    );
    said(
        &[("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")],
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        &["no credentials found"],
        "credentials come from the environment of the program (AWS_ACCESS_KEY_ID",
    );
    // Credentials written into the configuration.
    write_conf(&format!("{good}aws_secret_access_key = \"x\"\n"));
    let run = run_s3_env(dir, "lspacket", &["-shipconf", conf_arg], &[], &[]).fails_with(1);
    assert!(
        run.stderr.contains("never put in shipping.toml")
            && run.stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        run.stderr
    );
    // Plain HTTP not allowed: said once, not once per bay.
    write_conf(&good.replace("allow_http = true\n", ""));
    let run = run_s3_env(dir, "lspacket", &["-shipconf", conf_arg], &[], &[]).fails_with(1);
    assert_eq!(
        run.stderr.matches("plain HTTP").count(),
        1,
        "{}",
        run.stderr
    );

    // lspacket writes nothing: credentials that may only list and read
    // list the bay; shipping_server, which writes, is told they may not.
    let Some((key, secret)) = server.read_only.clone() else {
        eprintln!("SKIPPED (read-only part): the S3 script made no read-only user");
        return;
    };
    write_conf(&good);
    let read_only = [
        ("AWS_ACCESS_KEY_ID", key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let listed = run_s3_env(dir, "lspacket", &["-shipconf", conf_arg], &read_only, &[]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout.trim(), "No packets found.");
    let refused = run_s3_env(
        dir,
        "shipping_server",
        &["-shipconf", conf_arg, "-poll"],
        &read_only,
        &[],
    )
    .fails_with(1);
    assert!(
        refused.stderr.contains(&format!(
            "access key id {key} (credentials from the environment"
        )),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("is not allowed to write in bucket"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("hint: give that user read and write"),
        "{}",
        refused.stderr
    );
}

#[test]
fn claims_left_by_dead_servers_after_their_order_was_done_are_swept() {
    let Some(hub) = hub(1, 20) else {
        return;
    };
    let outgoing = hub.outgoing();
    let queued = outgoing
        .list()
        .unwrap()
        .into_iter()
        .find(|n| !n.ends_with(".order"))
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let claim = |packet: &str, holder: &str, expires: i64| {
        assert!(outgoing
            .create_new(
                &format!(".claim-{packet}"),
                format!("holder = \"{holder}\"\nexpires = {expires}\n").as_bytes()
            )
            .unwrap());
    };
    // A server died after finishing an order (its claim ran out)...
    claim("sync_done_1.zip", "dead:1", now - 5);
    // ...another is finishing one right now (its claim runs)...
    claim("sync_busy_2.zip", "alive:2", now + 600);
    // ...and one died while working on an order still queued: the next
    // claim takes that one over (and releases it when done).
    claim(&queued, "dead:3", now - 5);
    let pass = run(
        hub.fam.dir.path(),
        "shipping_server",
        ["-shipconf", hub.conf.to_str().unwrap(), "-poll"],
    )
    .ok();
    assert!(
        pass.stdout
            .contains("removed .claim-sync_done_1.zip in s3://")
            && pass
                .stdout
                .contains("the claim of dead:1, which stopped before releasing it"),
        "{}",
        pass.stdout
    );
    assert!(
        pass.stdout.contains(&format!("delivered {queued}")),
        "{}",
        pass.stdout
    );
    assert!(!pass.stdout.contains("error:"), "{}", pass.stdout);
    assert_eq!(
        outgoing.list_all_keys().unwrap(),
        [".claim-sync_busy_2.zip"],
        "{}",
        pass.stdout
    );
}

#[test]
fn export_fship_to_an_s3_class_says_where_the_packets_went() {
    let Some(hub) = hub(1, 20) else {
        return;
    };
    let dir = hub.fam.dir.path();
    let data_home = dir.join("fresh-data-home");
    write(&hub.fam.root("boston"), "f", "exported");
    let conf = hub.conf.to_str().unwrap();
    let data = data_home.to_str().unwrap();
    let shipped = run_s3_env(
        &hub.fam.root("boston"),
        "syncreplica",
        &["-export", "-fship", "-shipconf", conf, "ship"],
        &[("XDG_DATA_HOME", data)],
        &[],
    );
    assert_eq!(shipped.code, 0, "{}", shipped.stderr);
    let outgoing = hub.outgoing();
    for wrong in [
        "Created the outgoing bay",
        "s3-staging",
        "Removed the",
        "nothing was written",
    ] {
        assert!(
            !shipped.stdout.contains(wrong),
            "{wrong}: {}",
            shipped.stdout
        );
    }
    // The part is named where it went, and so is the queue.
    assert!(
        shipped
            .stdout
            .contains(&format!("\n  {}/sync_boston_", outgoing.describe())),
        "{}",
        shipped.stdout
    );
    assert!(
        shipped.stdout.contains(&format!(
            "for shipping in storage class default, in {} (expires",
            outgoing.describe()
        )),
        "{}",
        shipped.stdout
    );
    assert!(
        shipped.stdout.contains("delivered sync_boston_"),
        "{}",
        shipped.stdout
    );
}
