//! Confidential packets (issue 15): update packets are encrypted to their
//! targets' keys; a hub verifies them without any secret; a member that is
//! not a target cannot read them; `-noencrypt` says so in every listing.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use crate::helpers::*;

const WINDOW: usize = 64;

fn window_hash(window: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    window.hash(&mut hasher);
    hasher.finish()
}

/// Every 64-byte window of `content` that occurs in any of `files`.
fn windows_found(content: &[u8], files: &[std::path::PathBuf]) -> usize {
    let mut seen = HashSet::new();
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        for window in bytes.windows(WINDOW) {
            seen.insert(window_hash(window));
        }
    }
    content
        .windows(WINDOW)
        .filter(|w| seen.contains(&window_hash(w)))
        .count()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn decryption_of(root: &Path) -> std::sync::Arc<packet_format::Decryption> {
    let key = syncreplica::store::identity::load_encryption_key(&root.join(".syncreplica"))
        .unwrap()
        .expect("the replica has an encryption key");
    std::sync::Arc::new(packet_format::Decryption::new(vec![key], None))
}

const SECRET_NAME: &str = "quarterly-merger-plans-zebra.bin";

#[test]
fn an_update_packet_hides_every_byte_and_name_and_only_its_target_reads_it() {
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    let content = random_bytes(15, 1 << 20);
    std::fs::write(fam.root("alpha").join(SECRET_NAME), &content).unwrap();
    let out = fam.packet_dir("to-beta");
    let exported = export_to(&fam.root("alpha"), &out, &["beta"], &[]).ok();
    assert!(
        exported.stdout.contains("Encrypted for: beta"),
        "{}",
        exported.stdout
    );
    let files = packet_files(&out);
    assert!(!files.is_empty());
    // Not one 64-byte window of the content, and not the name, anywhere.
    assert_eq!(windows_found(&content, &files), 0);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(!contains(&bytes, SECRET_NAME.as_bytes()), "{file:?}");
    }

    // gamma is a member, but not a target: it cannot decrypt, and says so
    // apart from damage.
    let keys: Vec<[u8; 32]> = syncreplica::replica::Replica::open(&fam.root("gamma"))
        .unwrap()
        .members()
        .unwrap()
        .iter()
        .map(|m| m.public_key)
        .collect();
    let err = packet_format::verify_packet_with(
        &files[0],
        &keys,
        Some(&decryption_of(&fam.root("gamma"))),
    )
    .unwrap_err();
    assert!(
        matches!(err.kind, packet_format::ErrorKind::NotForThisReplica { .. }),
        "{err}"
    );
    let listed = run(&fam.root("gamma"), "lspacket", [out.as_os_str()]).ok();
    assert!(
        listed.stdout.contains("Encrypted for: beta"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("this replica cannot read them"),
        "{}",
        listed.stdout
    );
    assert!(!listed.stdout.contains("damaged"), "{}", listed.stdout);
    // With -long, the recipient's key.
    let long = run(
        &fam.root("gamma"),
        "lspacket",
        [std::ffi::OsStr::new("-long"), out.as_os_str()],
    )
    .ok();
    assert!(
        long.stdout.contains("beta: encryption key age1"),
        "{}",
        long.stdout
    );

    // The target reads and applies it.
    let listed = run(&fam.root("beta"), "lspacket", [out.as_os_str()]).ok();
    assert!(!listed.stdout.contains("cannot"), "{}", listed.stdout);
    import_from(&fam.root("beta"), &[&out]).ok();
    assert_eq!(
        std::fs::read(fam.root("beta").join(SECRET_NAME)).unwrap(),
        content
    );
}

#[test]
fn noencrypt_writes_a_readable_packet_and_every_listing_says_so() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    write(&fam.root("alpha"), SECRET_NAME, "plain words for everyone");
    let out = fam.packet_dir("plain");
    let exported = export_to(&fam.root("alpha"), &out, &["beta"], &["-noencrypt"]).ok();
    assert!(
        exported.stdout.contains("Not encrypted"),
        "{}",
        exported.stdout
    );
    let files = packet_files(&out);
    let listed = run(&fam.root("beta"), "lspacket", [out.as_os_str()]).ok();
    assert!(
        listed.stdout.contains("Encrypted for: not encrypted"),
        "{}",
        listed.stdout
    );
    // In the clear indeed: the name is there to read (operations may be
    // zstd-compressed, the chunk of a short file is stored as is).
    let bytes = std::fs::read(&files[0]).unwrap();
    assert!(contains(&bytes, b"plain words for everyone"));
    import_from(&fam.root("beta"), &[&out]).ok();
    assert_eq!(
        std::fs::read_to_string(fam.root("beta").join(SECRET_NAME)).unwrap(),
        "plain words for everyone"
    );

    // The config says the same for every export.
    let config = fam.root("alpha").join(".syncreplica/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\nencrypt = false\n");
    std::fs::write(&config, text).unwrap();
    write(&fam.root("alpha"), "more.txt", "more");
    let out = fam.packet_dir("plain-config");
    let exported = export_to(&fam.root("alpha"), &out, &["beta"], &[]).ok();
    assert!(
        exported.stdout.contains("Not encrypted"),
        "{}",
        exported.stdout
    );
}

#[test]
fn a_sealed_packet_verifies_without_keys_and_cannot_be_read() {
    let fam = family(&["alpha", "beta"], &[("readme.txt", "hello")]);
    write(&fam.root("alpha"), "a.txt", "secret");
    let out = fam.packet_dir("sealed");
    export_to(&fam.root("alpha"), &out, &["beta"], &[]).ok();
    let file = &packet_files(&out)[0];
    let keys: Vec<[u8; 32]> = syncreplica::replica::Replica::open(&fam.root("alpha"))
        .unwrap()
        .members()
        .unwrap()
        .iter()
        .map(|m| m.public_key)
        .collect();
    // A hub: verified, sealed, unreadable.
    let verified = packet_format::verify_packet(file, &keys).unwrap();
    assert!(verified.is_sealed());
    let err = verified.operation_records().err().expect("sealed");
    assert!(
        matches!(err.kind, packet_format::ErrorKind::Encrypted { .. }),
        "{err}"
    );
    // One flipped ciphertext byte is damage, found without keys.
    let mut bytes = std::fs::read(file).unwrap();
    bytes[200] ^= 1;
    std::fs::write(file, &bytes).unwrap();
    let err = packet_format::verify_packet(file, &keys).unwrap_err();
    assert!(
        matches!(
            err.kind,
            packet_format::ErrorKind::DigestMismatch { .. }
                | packet_format::ErrorKind::CrcMismatch { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_relay_re_encrypts_third_parties_operations_for_the_next_target() {
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    // beta learns of gamma from its creator (beta was made before gamma),
    // then gamma's own key reaches beta with gamma's first export.
    fam.send("alpha", "beta", "gamma-joined");
    fam.send("gamma", "beta", "hello-from-gamma");
    write(
        &fam.root("alpha"),
        SECRET_NAME,
        "relayed, never in the clear",
    );
    fam.send("alpha", "beta", "to-beta");
    let out = fam.packet_dir("relay");
    let relayed = export_to(&fam.root("beta"), &out, &["gamma"], &[]).ok();
    assert!(
        relayed.stdout.contains("Encrypted for: gamma"),
        "{}",
        relayed.stdout
    );
    for file in packet_files(&out) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, SECRET_NAME.as_bytes()), "{file:?}");
        assert!(!contains(&bytes, b"relayed, never"), "{file:?}");
    }
    import_from(&fam.root("gamma"), &[&out]).ok();
    assert_eq!(
        std::fs::read_to_string(fam.root("gamma").join(SECRET_NAME)).unwrap(),
        "relayed, never in the clear"
    );
}

#[test]
fn no_packet_is_encrypted_to_a_removed_member() {
    let fam = family(&["alpha", "beta", "gamma"], &[("readme.txt", "hello")]);
    run(&fam.root("alpha"), "rmreplica", ["-force", "gamma"]).ok();
    write(&fam.root("alpha"), "after.txt", "after the removal");
    let out = fam.packet_dir("to-gamma");
    let refused = export_to(&fam.root("alpha"), &out, &["gamma"], &[]).fails_with(1);
    assert!(refused.stderr.contains("removed"), "{}", refused.stderr);
    assert!(packet_files(&out).is_empty());
    // Exports to the others carry on, encrypted to them alone.
    let out = fam.packet_dir("to-beta");
    let exported = export_to(&fam.root("alpha"), &out, &["beta"], &[]).ok();
    assert!(
        exported.stdout.contains("Encrypted for: beta"),
        "{}",
        exported.stdout
    );
    let listed = run(
        &fam.root("alpha"),
        "lspacket",
        [std::ffi::OsStr::new("-long"), out.as_os_str()],
    )
    .ok();
    assert!(
        !listed.stdout.contains("gamma: encryption key"),
        "{}",
        listed.stdout
    );
}
