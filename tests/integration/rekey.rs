//! Key rotation (issue 15, `mkreplica -rekey`, packet SPEC.md §7.1): a
//! member replaces its signing and encryption keys; the family learns
//! them from a change signed with the old key; afterwards the old key is
//! good only for the member's epochs up to the rotation, for the packets
//! it signs and for the seals relays carry.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::helpers::*;
use syncreplica::ops::Change;
use syncreplica::replica::Replica;

/// `mkreplica -rekey -fmt json` at `root`: (epoch, new signing key
/// fingerprint, previous fingerprint, new age recipient).
fn rekey(root: &Path) -> (u64, String, String, String) {
    let out = run(root, "mkreplica", ["-rekey", "-fmt", "json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["version"], 1, "{}", out.stdout);
    (
        json["epoch"].as_u64().unwrap(),
        json["fingerprint"].as_str().unwrap().to_string(),
        json["previous_fingerprint"].as_str().unwrap().to_string(),
        json["encryption_key"].as_str().unwrap().to_string(),
    )
}

/// The fingerprint of the key `root` signs with now.
fn signing_fingerprint(root: &Path) -> String {
    let key = Replica::open(root).unwrap().signing_key().unwrap();
    syncreplica::store::identity::fingerprint(&key.verifying_key().to_bytes())
}

/// The age recipient `root` decrypts with now.
fn age_recipient(root: &Path) -> String {
    syncreplica::store::identity::load_encryption_key(&root.join(".syncreplica"))
        .unwrap()
        .unwrap()
        .to_public()
        .to_string()
}

/// Everything under `root` but the entries' rows, whose stat columns the
/// import's scan refreshes; and the number of entries.
fn family_rows(root: &Path) -> (Vec<String>, usize) {
    let all = everything_under(root);
    let entries = all
        .iter()
        .filter(|r| r.contains("state.db: entries:"))
        .count();
    (
        all.into_iter()
            .filter(|row| !row.contains("state.db: entries:"))
            .collect(),
        entries,
    )
}

/// A copy of the replica at `root` (its keys with it) in `to`: what a
/// thief of a backup or of a stolen disk holds.
fn copy_of(root: &Path, to: &Path) -> PathBuf {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(root)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    to.to_path_buf()
}

/// A copy of alpha taken before anything else happens (its old keys with
/// it), in the family's folder: what a thief of a backup or of a stolen
/// disk holds.
fn stolen_copy(fam: &Family) -> PathBuf {
    copy_of(&fam.root("alpha"), &fam.dir.path().join("stolen"))
}

/// A stolen copy of alpha (see `stolen_copy`), then alpha's rotation
/// (`mkreplica -rekey`): the copy and the rotation's epoch.
fn rekey_leaving_a_stolen_copy(fam: &Family) -> (PathBuf, u64) {
    let stolen = stolen_copy(fam);
    let (epoch, ..) = rekey(&fam.root("alpha"));
    (stolen, epoch)
}

/// The thief's packet: alpha's (`origin`) changes, sent, signed and sealed
/// by the `stolen` copy with the old key.
fn signed_with_the_old_key<'a>(origin: &'a Path, stolen: &'a Path) -> Forgery<'a> {
    Forgery {
        origin,
        sender: origin,
        signer: stolen,
        sealer: stolen,
    }
}

/// The planted change the forged packets carry: `planted.txt` deleted.
fn planted_deletion() -> Change {
    Change::Path {
        path: b"planted.txt".to_vec(),
        version: Default::default(),
        state: syncreplica::ops::PathState::Deleted,
    }
}

fn lspacket_long(cwd: &Path, dir: &Path) -> String {
    run(cwd, "lspacket", [OsStr::new("-long"), dir.as_os_str()])
        .ok()
        .stdout
}

#[test]
fn a_rotation_reaches_the_siblings_and_the_new_keys_are_used() {
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    let (a, b, c) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    let old_fingerprint = signing_fingerprint(&a);
    let old_recipient = age_recipient(&a);
    let (epoch, fingerprint, previous, recipient) = rekey(&a);
    assert_eq!(previous, old_fingerprint);
    assert_ne!(fingerprint, old_fingerprint);
    assert_eq!(
        signing_fingerprint(&a),
        fingerprint,
        "alpha signs with the new key"
    );
    assert_eq!(age_recipient(&a), recipient);
    assert_eq!(epoch, own_epoch(&a));
    // The old signing key is gone; the old age identity is kept apart.
    let retired = std::fs::read_to_string(a.join(".syncreplica/retired_encryption_keys")).unwrap();
    assert_eq!(
        retired
            .lines()
            .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .count(),
        1
    );
    assert!(!a.join(".syncreplica/signing_key.next").exists());

    // alpha's next packet (signed with the new key, carrying the rotation
    // and a change after it) is taken by beta.
    write(&a, "after.txt", "after the rotation");
    let out = fam.packet_dir("a-to-b");
    export_to(&a, &out, &["beta"], &[]).ok();
    let listed = lspacket_long(&a, &out);
    assert!(listed.contains(&fingerprint), "{listed}");
    // The header's copy of the rotation (SPEC.md §4.3) is shown.
    assert!(
        listed.contains(&format!(
            "  \"alpha\" at its epoch {epoch}: new key {fingerprint} (replaces {previous})"
        )),
        "{listed}"
    );
    let json = run(
        &a,
        "lspacket",
        [OsStr::new("-fmt"), OsStr::new("json"), out.as_os_str()],
    )
    .ok()
    .stdout;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rotations = &json["packets"][0]["rotations"];
    assert_eq!(rotations[0]["epoch"], epoch, "{json}");
    assert_eq!(
        rotations[0]["new_fingerprint"],
        fingerprint.as_str(),
        "{json}"
    );
    assert_eq!(rotations[0]["old_fingerprint"], previous.as_str(), "{json}");
    let imported = import_from(&b, &[&out]).ok();
    assert!(
        imported
            .stdout
            .contains("member's keys replaced (mkreplica -rekey): \"alpha\""),
        "{}",
        imported.stdout
    );
    assert_eq!(
        std::fs::read_to_string(b.join("after.txt")).unwrap(),
        "after the rotation"
    );
    let members = run(&b, "lsreplica", [] as [&str; 0]).ok().stdout;
    assert!(
        members.contains(&format!("key {fingerprint} (rekeyed at its epoch {epoch})")),
        "{members}"
    );
    let long = run(&b, "lsreplica", ["-long"]).ok().stdout;
    assert!(
        long.contains(&format!("the key {old_fingerprint}")),
        "{long}"
    );

    // Packets to alpha are encrypted to its new key, not the old one.
    let out = fam.packet_dir("b-to-a");
    write(&b, "from-beta.txt", "beta's");
    export_to(&b, &out, &["alpha"], &[]).ok();
    let listed = lspacket_long(&b, &out);
    assert!(
        listed.contains(&format!("alpha: encryption key {recipient}")),
        "{listed}"
    );
    assert!(!listed.contains(&old_recipient), "{listed}");
    import_from(&a, &[&out]).ok();
    assert_eq!(
        std::fs::read_to_string(a.join("from-beta.txt")).unwrap(),
        "beta's"
    );

    // Relayed: gamma hears of the rotation from beta, then takes alpha's
    // own packets signed with the new key.
    fam.send("beta", "gamma", "b-to-c");
    assert!(run(&c, "lsreplica", [] as [&str; 0])
        .ok()
        .stdout
        .contains(&fingerprint));
    write(&a, "later.txt", "later");
    fam.send("alpha", "gamma", "a-to-c");
    assert_eq!(
        std::fs::read_to_string(c.join("later.txt")).unwrap(),
        "later"
    );

    // A new member made after the rotation verifies alpha's history
    // across it (old key up to the rotation, new key after).
    let out = fam.packet_dir("creation-delta");
    mkreplica_export(&a, &out, "delta").ok();
    let d = fam.root("delta");
    mkreplica_import_at(fam.dir.path(), &d, &out).ok();
    let members = run(&d, "lsreplica", [] as [&str; 0]).ok().stdout;
    assert!(
        members.contains(&format!("key {fingerprint} (rekeyed at its epoch {epoch})")),
        "{members}"
    );
}

#[test]
fn a_packet_signed_by_the_old_key_after_the_rotation_is_refused() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let (stolen, epoch) = rekey_leaving_a_stolen_copy(&fam);
    fam.send("alpha", "beta", "rotation");

    // The thief's packet: alpha's changes after the rotation, sealed and
    // signed with the old key.
    let out = fam.packet_dir("forged");
    let who = signed_with_the_old_key(&a, &stolen);
    let change = planted_deletion();
    forge(&who, &b, &out, vec![change], |_| {});
    let before = family_rows(&b);
    let refused = import_from(&b, &[&out]).fails_with(1);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        text.contains(&format!(
            "signed or sealed with the key \"alpha\" replaced at its epoch {epoch} (mkreplica -rekey)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("yet the packet carries its change {}", epoch + 1)),
        "{text}"
    );
    assert_eq!(family_rows(&b), before, "nothing changed");

    // An old-key packet carrying nothing but whose row claims alpha's
    // epochs after the rotation (an acknowledgement) is refused too.
    let out = fam.packet_dir("forged-ack");
    forge(&who, &b, &out, vec![], |meta| {
        meta.epoch_ranges.clear();
        meta.seals.clear();
        let alpha = Replica::open(&a).unwrap().identity.replica_id;
        meta.epoch_row.insert(alpha, epoch + 3);
    });
    let refused = import_from(&b, &[&out]).fails_with(1);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(text.contains("replaced at its epoch"), "{text}");
    assert_eq!(family_rows(&b), before, "nothing changed");
}

#[test]
fn a_relayed_packet_with_an_old_key_seal_beyond_the_rotation_is_refused() {
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    let (a, b, c) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    let (stolen, epoch) = rekey_leaving_a_stolen_copy(&fam);
    fam.send("alpha", "gamma", "rotation");
    // beta (a member, its own key) relays alpha's changes after the
    // rotation, sealed with alpha's old key.
    let out = fam.packet_dir("relayed");
    let who = Forgery {
        origin: &a,
        sender: &b,
        signer: &b,
        sealer: &stolen,
    };
    let change = planted_deletion();
    forge(&who, &c, &out, vec![change], |_| {});
    let before = family_rows(&c);
    let refused = import_from(&c, &[&out]).fails_with(1);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        text.contains(&format!("the key \"alpha\" replaced at its epoch {epoch}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "yet that key seals its change {} (whoever relayed them)",
            epoch + 1
        )),
        "{text}"
    );
    assert_eq!(family_rows(&c), before, "nothing changed");

    // The same relay sealed with alpha's new key is taken.
    let out = fam.packet_dir("relayed-good");
    let who = Forgery {
        origin: &a,
        sender: &b,
        signer: &b,
        sealer: &a,
    };
    let change = planted_deletion();
    forge(&who, &c, &out, vec![change], |_| {});
    import_from(&c, &[&out]).ok();
}

#[test]
fn packets_in_flight_before_the_rotation_still_apply() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    // Written before the rotation: alpha's packet signed with its old key,
    // and beta's encrypted to alpha's old age key.
    write(&a, "before.txt", "alpha before");
    let from_a = fam.packet_dir("a-before");
    export_to(&a, &from_a, &["beta"], &[]).ok();
    write(&b, "from-beta.txt", "beta before");
    let from_b = fam.packet_dir("b-before");
    export_to(&b, &from_b, &["alpha"], &[]).ok();
    let old_recipient = age_recipient(&a);
    assert!(lspacket_long(&b, &from_b).contains(&old_recipient));

    rekey(&a);
    write(&a, "after.txt", "alpha after");
    let after = fam.packet_dir("a-after");
    export_to(&a, &after, &["beta"], &[]).ok();

    // alpha reads beta's packet with its retired key.
    import_from(&a, &[&from_b]).ok();
    assert_eq!(
        std::fs::read_to_string(a.join("from-beta.txt")).unwrap(),
        "beta before"
    );
    // beta takes alpha's old-key packet, then the one after the rotation,
    // and the old-key packet again after the rotation (already applied).
    import_from(&b, &[&after, &from_a]).ok();
    assert_eq!(
        std::fs::read_to_string(b.join("before.txt")).unwrap(),
        "alpha before"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("after.txt")).unwrap(),
        "alpha after"
    );
}

#[test]
fn an_old_key_packet_from_before_the_rotation_applies_after_it() {
    // beta learns the rotation first (relayed by gamma), then alpha's
    // packet written before it arrives: its epochs are all at or below
    // the rotation, so the old key is good for it.
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    // beta hears of gamma (made after it) first.
    fam.send("alpha", "beta", "introduction");
    write(&a, "before.txt", "alpha before");
    let early = fam.packet_dir("early");
    export_to(&a, &early, &["beta"], &[]).ok();
    fam.send("alpha", "gamma", "a-to-c-1");
    rekey(&a);
    fam.send("alpha", "gamma", "a-to-c-2");
    fam.send("gamma", "beta", "c-to-b");
    assert!(run(&b, "lsreplica", [] as [&str; 0])
        .ok()
        .stdout
        .contains("rekeyed at its epoch"));
    let imported = import_from(&b, &[&early]).ok();
    assert!(!imported.stdout.contains("Refused"), "{}", imported.stdout);
}

#[test]
fn a_rekey_interrupted_after_its_commit_is_finished_by_the_next_command() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let a = fam.root("alpha");
    let old = signing_fingerprint(&a);
    let crashed = run_crashing_at(&a, "mkreplica", ["-rekey"], "rekey-after-commit");
    assert_crashed(&crashed);
    assert!(a.join(".syncreplica/signing_key.next").exists());
    // The next command that takes the lock settles it: alpha signs with
    // the key its siblings are told of.
    write(&a, "after.txt", "after");
    let out = fam.packet_dir("after-crash");
    export_to(&a, &out, &["beta"], &[]).ok();
    assert!(!a.join(".syncreplica/signing_key.next").exists());
    assert_ne!(signing_fingerprint(&a), old);
    import_from(&fam.root("beta"), &[&out]).ok();
    assert_eq!(
        std::fs::read_to_string(fam.root("beta").join("after.txt")).unwrap(),
        "after"
    );
}

#[test]
fn rekey_is_refused_with_a_name_or_during_a_restore() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let a = fam.root("alpha");
    let usage = run(&a, "mkreplica", ["-rekey", "beta"]).fails_with(2);
    assert!(
        usage.stderr.contains("-rekey takes no NAME"),
        "{}",
        usage.stderr
    );
    fam.send("beta", "alpha", "heard");
    run(&a, "mkreplica", ["-restore", "beta"]).ok();
    let before = everything_under(&a);
    let refused = run(&a, "mkreplica", ["-rekey"]).fails_with(1);
    assert!(
        refused.stderr.contains("being restored"),
        "{}",
        refused.stderr
    );
    assert_eq!(everything_under(&a), before, "nothing changed");
}

/// Uploads every packet file in `dir` to the shipping server at `addr`:
/// each one's HTTP status and answer.
fn upload_all(addr: &str, dir: &Path) -> Vec<(u16, String)> {
    packet_files(dir)
        .iter()
        .map(|file| {
            let name = file.file_name().unwrap().to_str().unwrap();
            crate::shipping::put(addr, name, &std::fs::read(file).unwrap())
        })
        .collect()
}

/// The public signing key of `root` now, as shipping.toml's
/// `trusted_keys` takes it (64 hex digits).
fn public_key_hex(root: &Path) -> String {
    let key = Replica::open(root).unwrap().signing_key().unwrap();
    key.verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_hub_takes_a_rekeyed_members_packets_and_keeps_its_new_key() {
    use crate::shipping::{shipping_conf, Server};
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    let (a, b, c) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    let dir = fam.dir.path();
    // A hub trusting gamma's family (gamma does not hear of the rotation
    // here), and one trusting keys named in its configuration.
    let family_conf = shipping_conf(
        dir,
        "family-hub",
        &format!(
            "local_replicas = [\"beta\"]\ntrusted_replicas = [\"{}\"]",
            c.display()
        ),
        "",
    );
    let keys_conf = shipping_conf(
        dir,
        "keys-hub",
        &format!(
            "local_replicas = [\"beta\"]\ntrusted_keys = [\"{}\", \"{}\"]",
            public_key_hex(&a),
            public_key_hex(&b)
        ),
        "",
    );
    let family_hub = Server::start(&family_conf, "127.0.0.1:0", &[]);
    let keys_hub = Server::start(&keys_conf, "127.0.0.1:0", &[]);

    let (epoch, ..) = rekey(&a);
    write(&a, "after.txt", "after the rotation");
    let out = fam.packet_dir("rotation");
    export_to(&a, &out, &["beta"], &[]).ok();
    // Signed with the new key, carrying the rotation sealed by the old
    // one: both hubs verify it from the key they trust.
    for (status, text) in upload_all(&family_hub.addr, &out) {
        assert_eq!(status, 201, "{text}");
    }
    // The hub trusting configured keys says (to the sender and in its
    // log) which key to add.
    let new_key = public_key_hex(&a);
    for (status, text) in upload_all(&keys_hub.addr, &out) {
        assert_eq!(status, 201, "{text}");
        assert!(
            text.contains(&format!(
                "member \"alpha\" rotated its key at its epoch {epoch} (mkreplica -rekey); add \
                 {new_key} to trusted_keys"
            )),
            "{text}"
        );
    }
    let learned = dir.join("family-hub-bay/learned_rotations");
    assert!(learned.is_file(), "the family hub keeps the rotation");
    assert!(!dir.join("keys-hub-bay/learned_rotations").exists());

    // beta takes it and acknowledges: alpha's next packet to beta no
    // longer carries the rotation.
    import_from(&b, &[&out]).ok();
    fam.send("beta", "alpha", "ack");
    write(&a, "later.txt", "later");
    let later = fam.packet_dir("later");
    export_to(&a, &later, &["beta"], &[]).ok();
    for (status, text) in upload_all(&family_hub.addr, &later) {
        assert_eq!(status, 201, "the family hub learned the key: {text}");
    }
    // A hub trusting configured keys is told what to do.
    for (status, text) in upload_all(&keys_hub.addr, &later) {
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("mkreplica -rekey"), "{text}");
        assert!(
            text.contains(&format!(
                "that key, {new_key}, which the packet says is member \"alpha\"'s"
            )),
            "{text}"
        );
    }
    // lspacket at each hub (outside any replica) judges its bays by the
    // hub's trust, as its receiver did: what it took with 201 (through
    // the header's rotation, or the rotation it learned) is intact.
    for (conf, packets) in [(&family_conf, 2), (&keys_conf, 1)] {
        let listed = run(dir, "lspacket", [OsStr::new("-shipconf"), conf.as_os_str()])
            .ok()
            .stdout;
        assert!(!listed.contains("unknown key"), "{listed}");
        assert!(!listed.contains("this replica"), "{listed}");
        assert_eq!(listed.matches("Packet is: ").count(), packets, "{listed}");
    }
}

#[test]
fn a_hub_refuses_an_old_key_packet_with_changes_after_the_rotation() {
    use crate::shipping::{shipping_conf, Server};
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    let (a, c) = (fam.root("alpha"), fam.root("gamma"));
    let (stolen, epoch) = rekey_leaving_a_stolen_copy(&fam);
    // The hub's replica, gamma, knows the rotation.
    fam.send("alpha", "gamma", "rotation");
    let conf = shipping_conf(
        fam.dir.path(),
        "hub",
        &format!(
            "local_replicas = [\"gamma\"]\ntrusted_replicas = [\"{}\"]",
            c.display()
        ),
        "",
    );
    let hub = Server::start(&conf, "127.0.0.1:0", &[]);
    let out = fam.packet_dir("forged");
    let who = signed_with_the_old_key(&a, &stolen);
    let change = planted_deletion();
    // For gamma, which has the rotation: the change is its epoch after it.
    forge(&who, &c, &out, vec![change], |_| {});
    for (status, text) in upload_all(&hub.addr, &out) {
        assert_eq!(status, 403, "{text}");
        assert!(
            text.contains(&format!(
                "signed with the key \"alpha\" replaced at its epoch {epoch}"
            )),
            "{text}"
        );
    }
    assert_eq!(
        files_under(&fam.dir.path().join("hub-bay/incoming")),
        Vec::<String>::new(),
        "nothing stored"
    );
}

#[test]
fn lspacket_knows_rotations_as_import_does() {
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    let (a, b, c) = (fam.root("alpha"), fam.root("beta"), fam.root("gamma"));
    let stolen = stolen_copy(&fam);
    // Signed with the old key before the rotation.
    write(&a, "before.txt", "before");
    let early = fam.packet_dir("early");
    export_to(&a, &early, &["beta"], &[]).ok();
    let (epoch, ..) = rekey(&a);
    write(&a, "after.txt", "after");
    let rotation = fam.packet_dir("rotation");
    export_to(&a, &rotation, &["beta"], &[]).ok();

    // Carrying the rotation, signed with the new key: beta (which can
    // read it) and gamma (for which it is sealed) list it as -import
    // takes it, not as signed by an unknown key.
    let listed = run(&b, "lspacket", [rotation.as_os_str()]).ok().stdout;
    assert!(!listed.contains("unknown key"), "{listed}");
    let listed = run(&c, "lspacket", [rotation.as_os_str()]).ok().stdout;
    assert!(listed.contains("this replica cannot read them"), "{listed}");
    assert!(!listed.contains("unknown key"), "{listed}");

    // (The early packet first: the streams to beta are in order.)
    import_from(&b, &[&early, &rotation]).ok();
    assert!(run(&b, "lsreplica", [] as [&str; 0])
        .ok()
        .stdout
        .contains("rekeyed at its epoch"));
    // Written before the rotation, signed with the old key: intact.
    let listed = run(&b, "lspacket", [early.as_os_str()]).ok().stdout;
    assert!(!listed.contains("unknown key"), "{listed}");

    // A thief's packet: the old key, alpha's changes after the rotation.
    let forged = fam.packet_dir("forged");
    let who = signed_with_the_old_key(&a, &stolen);
    let change = planted_deletion();
    forge(&who, &b, &forged, vec![change], |_| {});
    let listed = run(&b, "lspacket", [forged.as_os_str()])
        .fails_with(1)
        .stdout;
    assert!(listed.contains("signed with a replaced key"), "{listed}");
    assert!(
        listed.contains(&format!(
            "the key \"alpha\" replaced at its epoch {epoch} (mkreplica -rekey)"
        )),
        "{listed}"
    );
    let json = run(
        &b,
        "lspacket",
        [OsStr::new("-fmt"), OsStr::new("json"), forged.as_os_str()],
    )
    .fails_with(1)
    .stdout;
    assert!(json.contains("\"replaced key\""), "{json}");
}

#[test]
fn a_stale_copys_packet_from_before_the_rotation_does_not_lower_the_row() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let (stolen, epoch) = rekey_leaving_a_stolen_copy(&fam);
    write(&a, "after.txt", "after");
    fam.send("alpha", "beta", "rotation");
    write(&a, "later.txt", "later");
    fam.send("alpha", "beta", "later");
    // The copy from before the rotation writes a packet now (its epochs
    // all below the rotation, signed with the old key), saying it holds
    // less of its own than alpha confirmed: as if alpha was restored.
    for (name, extra) in [("stale-resend", "-resend"), ("stale-ack", "-ack")] {
        let out = fam.packet_dir(name);
        export_to(&stolen, &out, &["beta"], &[extra]).ok();
        // lspacket judges it by -import's rules, in its words.
        let listed = run(&b, "lspacket", [out.as_os_str()]).fails_with(1).stdout;
        assert!(listed.contains("signed with a replaced key"), "{listed}");
        assert!(listed.contains("not from a packet in flight"), "{listed}");
        assert!(listed.contains("-import refuses it"), "{listed}");
        assert!(!listed.contains("(local:"), "{listed}");
        let before = family_rows(&b);
        let refused = import_from(&b, &[&out]).fails_with(1);
        let text = format!("{}{}", refused.stdout, refused.stderr);
        assert!(!text.contains("restored from a backup:"), "{text}");
        assert!(
            text.contains(&format!("the key \"alpha\" replaced at its epoch {epoch}")),
            "{text}"
        );
        assert!(text.contains("not from a packet in flight"), "{text}");
        assert_eq!(family_rows(&b), before, "{name}: nothing changed");
    }
    // beta's next packet to alpha sends none of alpha's own changes back.
    let out = fam.packet_dir("b-to-a");
    write(&b, "from-beta.txt", "beta's");
    export_to(&b, &out, &["alpha"], &[]).ok();
    let listed = lspacket_long(&b, &out);
    let alpha_id = Replica::open(&a).unwrap().identity.replica_id.to_hex();
    let carried = listed
        .lines()
        .skip_while(|l| !l.contains("referenced by this packet"))
        .take_while(|l| !l.starts_with("Sender's epoch row"))
        .any(|l| l.trim_start().starts_with("alpha "));
    assert!(
        !carried,
        "alpha's own changes sent back to it: {listed} ({alpha_id})"
    );
    import_from(&a, &[&out]).ok();
}

#[test]
fn lsreplica_shows_each_members_encryption_key() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let (_, _, _, recipient) = rekey(&a);
    fam.send("alpha", "beta", "rotation");
    let long = run(&b, "lsreplica", ["-long"]).ok().stdout;
    assert!(
        long.contains(&format!(
            "encryption key:    {recipient} (packets to it are encrypted to it)"
        )),
        "{long}"
    );
    assert!(long.contains(&age_recipient(&b)), "its own: {long}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&b, "lsreplica", ["-fmt", "json"]).ok().stdout).unwrap();
    let keys: Vec<&str> = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["encryption_key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&recipient.as_str()), "{json}");
    assert!(keys.contains(&age_recipient(&b).as_str()), "{json}");
}

#[test]
fn two_rotations_in_one_import_are_said_once_each_with_their_epochs() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let (first, ..) = rekey(&a);
    let (second, fingerprint, ..) = rekey(&a);
    let out = fam.packet_dir("two-rotations");
    export_to(&a, &out, &["beta"], &[]).ok();
    // lspacket follows both from the key beta holds.
    let listed = run(&b, "lspacket", [out.as_os_str()]).ok().stdout;
    assert!(!listed.contains("unknown key"), "{listed}");
    let imported = import_from(&b, &[&out]).ok().stdout;
    let lines: Vec<&str> = imported
        .lines()
        .filter(|l| l.contains("member's keys replaced"))
        .collect();
    assert_eq!(lines.len(), 2, "{imported}");
    assert!(
        lines[0].contains(&format!("\"alpha\" at its epoch {first};")),
        "{imported}"
    );
    assert!(
        lines[1].contains(&format!("\"alpha\" at its epoch {second};")),
        "{imported}"
    );
    assert!(run(&b, "lsreplica", [] as [&str; 0])
        .ok()
        .stdout
        .contains(&fingerprint));
}

#[test]
fn a_relayed_stale_copys_change_numbered_like_the_rotation_names_it() {
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    let b = fam.root("beta");
    let (stolen, epoch) = rekey_leaving_a_stolen_copy(&fam);
    fam.send("alpha", "beta", "rotation");
    // The copy from before the rotation numbers a change of its own like
    // the rotation; gamma, which has not heard of the rotation, takes it
    // and relays it to beta.
    write(&stolen, "planted.txt", "from the copy");
    let out = fam.packet_dir("stale-to-gamma");
    export_to(&stolen, &out, &["gamma"], &[]).ok();
    import_from(&fam.root("gamma"), &[&out]).ok();
    let relayed = fam.packet_dir("gamma-to-beta");
    export_to(&fam.root("gamma"), &relayed, &["beta"], &[]).ok();
    let refused = import_from(&b, &[&relayed]).fails_with(1);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        text.contains("this replica has a different change with that number"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "it replaced its keys at its epoch {epoch} (mkreplica -rekey)"
        )),
        "{text}"
    );
    assert!(!b.join("planted.txt").exists());
}

#[test]
fn lspacket_gives_no_local_status_to_a_stale_copys_packet_beyond_the_rotation() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let (stolen, epoch) = rekey_leaving_a_stolen_copy(&fam);
    for name in ["one.txt", "two.txt"] {
        write(&a, name, name);
        run(&a, "syncreplica", ["-record"]).ok();
    }
    fam.send("alpha", "beta", "rotation");
    // The copy numbers changes of its own like the rotation and after it,
    // which beta holds already (alpha's own): signed with the old key.
    for name in ["x.txt", "y.txt", "z.txt"] {
        write(&stolen, name, name);
        run(&stolen, "syncreplica", ["-record"]).ok();
    }
    let out = fam.packet_dir("stale");
    export_to(&stolen, &out, &["beta"], &[]).ok();
    let refused = import_from(&b, &[&out]).fails_with(1);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        text.contains(&format!("the key \"alpha\" replaced at its epoch {epoch}")),
        "{text}"
    );
    let listed = run(&b, "lspacket", [out.as_os_str()]).fails_with(1).stdout;
    assert!(listed.contains("signed with a replaced key"), "{listed}");
    assert!(!listed.contains("(local:"), "{listed}");
    let json = run(
        &b,
        "lspacket",
        [OsStr::new("-fmt"), OsStr::new("json"), out.as_os_str()],
    )
    .fails_with(1)
    .stdout;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let packet = &json["packets"][0];
    assert_eq!(packet["status"], "replaced key", "{json}");
    let beta = packet["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("{json}"))
        .iter()
        .find(|t| t["local"] == true)
        .unwrap_or_else(|| panic!("{json}"));
    assert!(beta["status"].is_null(), "{json}");
}

#[test]
fn a_rotation_refused_as_a_clone_after_a_stale_copys_change_says_so() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let stolen = stolen_copy(&fam);
    // beta takes the copy's change first: it knows no rotation yet, and
    // the copy signs with the key beta holds for alpha.
    write(&stolen, "planted.txt", "planted");
    let out = fam.packet_dir("stale");
    export_to(&stolen, &out, &["beta"], &[]).ok();
    import_from(&b, &[&out]).ok();
    let (epoch, ..) = rekey(&a);
    let out = fam.packet_dir("rotation");
    export_to(&a, &out, &["beta"], &[]).ok();
    let refused = import_from(&b, &[&out]).fails_with(1);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(text.contains("replica \"alpha\" is cloned"), "{text}");
    assert!(
        text.contains(&format!(
            "this packet carries its key rotation at its epoch {epoch} (mkreplica -rekey), which \
             replaces the key the change this replica took earlier was signed with"
        )),
        "{text}"
    );
    assert!(text.contains("from before the rotation"), "{text}");
}
