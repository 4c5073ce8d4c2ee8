//! Confidential packets (issue 15): update packets are encrypted to their
//! targets' keys; a hub verifies them without any secret; a member that is
//! not a target cannot read them; `-noencrypt` says so in every listing.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

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
    let refused = export_to(&fam.root("alpha"), &out, &["gamma"], &[]).fails_with(2);
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

/// `name args…` in `cwd` with a terminal as its standard input (util-linux
/// `script` gives it a pseudo-terminal), `input` typed there.
fn run_on_terminal(cwd: &Path, name: &str, args: &[&std::ffi::OsStr], input: &str) -> Run {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let quote = |arg: &std::ffi::OsStr| {
        format!(
            "'{}'",
            String::from_utf8_lossy(arg.as_bytes()).replace('\'', "'\\''")
        )
    };
    let mut line = quote(binary_path(name).as_os_str());
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(cwd)
        .env("SYNCREPLICA_TEST_SCRYPT_LOG_N", "10")
        .env("XDG_DATA_HOME", test_data_home())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    // Kept open until the command is done: script ends its session at
    // the end of its input.
    let output = child.wait_with_output().unwrap();
    drop(stdin);
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The new member's secret signing key and age identity, as its replica
/// keeps them.
fn secrets_of(root: &Path) -> Vec<Vec<u8>> {
    use age::secrecy::ExposeSecret;
    let replica = syncreplica::replica::Replica::open(root).unwrap();
    let signing = replica.signing_key().unwrap().to_bytes();
    let age_key = syncreplica::store::identity::load_encryption_key(&root.join(".syncreplica"))
        .unwrap()
        .unwrap();
    vec![
        signing.to_vec(),
        hex::encode(signing).into_bytes(),
        age_key.to_string().expose_secret().as_bytes().to_vec(),
    ]
}

fn mkreplica_args(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<std::ffi::OsString> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

/// `mkreplica ARGS…` in `cwd` as given (no passphrase file added), with
/// no terminal and nothing on stdin: what a script or a service sees.
fn mkreplica_without_a_terminal<I, S>(cwd: &Path, args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    command_as_given("mkreplica", args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The packets in `out`, after checking nothing else was written there
/// (no key file beside them).
#[track_caller]
fn only_packets_in(out: &Path) -> Vec<PathBuf> {
    let files = packet_files(out);
    assert_eq!(
        files_under(out).len(),
        files.len(),
        "{:?}",
        files_under(out)
    );
    files
}

#[test]
fn a_creation_packet_carries_the_keys_encrypted_to_a_passphrase_and_only_it_opens_it() {
    let fam = family(&["alpha"], &[("readme.txt", "hello")]);
    let content = random_bytes(16, 1 << 20);
    std::fs::write(fam.root("alpha").join(SECRET_NAME), &content).unwrap();
    let dir = fam.dir.path();
    let out = fam.packet_dir("stick");
    let right = dir.join("right.pass");
    std::fs::write(&right, "a passphrase told by telephone\n").unwrap();
    let exported = mkreplica_without_a_terminal(
        &fam.root("alpha"),
        mkreplica_args(&[
            &"-export",
            &"-out",
            &out,
            &"-passphrase-file",
            &right,
            &"beta",
        ]),
    );
    assert!(exported.status.success(), "{exported:?}");
    let stdout = String::from_utf8_lossy(&exported.stdout);
    assert!(stdout.contains("encrypted to the passphrase"), "{stdout}");
    // The packet alone: no key file beside it.
    let files = only_packets_in(&out);
    let listed = run(dir, "lspacket", [out.as_os_str()]).ok();
    assert!(
        listed.stdout.contains("Encrypted for: a passphrase"),
        "{}",
        listed.stdout
    );
    assert_eq!(windows_found(&content, &files), 0);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(!contains(&bytes, SECRET_NAME.as_bytes()), "{file:?}");
    }

    let beta = dir.join("beta");
    let import = |passphrase: Option<&Path>| {
        let mut args = mkreplica_args(&[&"-import", &"-replica", &beta]);
        if let Some(file) = passphrase {
            args.extend(mkreplica_args(&[&"-passphrase-file", &file]));
        }
        args.push(out.clone().into_os_string());
        let output = mkreplica_without_a_terminal(dir, args);
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };
    // A wrong passphrase: said so, nothing made.
    let wrong = dir.join("wrong.pass");
    std::fs::write(&wrong, "a passphrase misheard\n").unwrap();
    let refused = import(Some(&wrong)).fails_with(1);
    assert!(
        refused
            .stderr
            .contains("the passphrase does not open this packet")
            && refused.stderr.contains("hint: check the passphrase"),
        "{}",
        refused.stderr
    );
    assert!(!beta.exists());
    // None, and no terminal to ask it on: a usage error with a hint.
    let refused = import(None).fails_with(2);
    assert!(
        refused.stderr.contains("needs a passphrase")
            && refused.stderr.contains("standard input is not a terminal")
            && refused.stderr.contains("-passphrase-file FILE"),
        "{}",
        refused.stderr
    );
    assert!(!beta.exists());
    // An empty one: refused.
    let empty = dir.join("empty.pass");
    std::fs::write(&empty, "\n").unwrap();
    let refused = import(Some(&empty)).fails_with(1);
    assert!(
        refused.stderr.contains("its first line is empty"),
        "{}",
        refused.stderr
    );
    assert!(!beta.exists());
    // The right one makes the member, with the keys the packet carried.
    import(Some(&right)).ok();
    assert_eq!(std::fs::read(beta.join(SECRET_NAME)).unwrap(), content);
    for secret in secrets_of(&beta) {
        for file in &files {
            assert!(!contains(&std::fs::read(file).unwrap(), &secret));
        }
    }
    // It is a member: its packets are accepted by alpha.
    write(&beta, "from-beta.txt", "made at beta");
    let back = fam.packet_dir("back");
    export_to(&beta, &back, &["alpha"], &[]).ok();
    import_from(&fam.root("alpha"), &[&back]).ok();
    assert!(fam.root("alpha").join("from-beta.txt").is_file());
}

#[test]
fn mkreplica_export_without_a_terminal_or_passphrase_file_refuses_before_doing_anything() {
    let fam = family(&["alpha"], &[("readme.txt", "hello")]);
    write(&fam.root("alpha"), "new.txt", "not yet recorded");
    let epoch = own_epoch(&fam.root("alpha"));
    let out = fam.dir.path().join("stick");
    let output = mkreplica_without_a_terminal(
        &fam.root("alpha"),
        mkreplica_args(&[&"-export", &"-out", &out, &"beta"]),
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "mkreplica -export (the creation packet is encrypted to one) needs a passphrase"
        ) && stderr.contains("-keyout FILE"),
        "{stderr}"
    );
    assert!(!out.exists());
    assert_eq!(own_epoch(&fam.root("alpha")), epoch);
}

#[test]
fn the_passphrase_is_asked_on_the_terminal_twice_at_export_and_once_at_import() {
    let fam = family(&["alpha"], &[("readme.txt", "hello")]);
    let dir = fam.dir.path();
    let out = fam.packet_dir("stick");
    // `mkreplica -export -out OUT beta` at alpha, `typed` at its terminal.
    let export_typing = |typed: &str| {
        run_on_terminal(
            &fam.root("alpha"),
            "mkreplica",
            &[
                "-export".as_ref(),
                "-out".as_ref(),
                out.as_os_str(),
                "beta".as_ref(),
            ],
            typed,
        )
    };
    // Two different ones: refused, nothing written.
    let mistyped = export_typing("first try\nfirst tyr\n");
    assert_ne!(mistyped.code, 0, "{mistyped:?}");
    assert!(
        mistyped.stdout.contains("the two passphrases typed differ"),
        "{mistyped:?}"
    );
    assert!(packet_files(&out).is_empty());
    let exported = export_typing("typed twice\ntyped twice\n");
    assert_eq!(exported.code, 0, "{exported:?}");
    assert!(
        exported
            .stdout
            .contains("New passphrase for the creation packet: ")
            && exported.stdout.contains("The same passphrase again: "),
        "{exported:?}"
    );
    let beta = dir.join("beta");
    let imported = run_on_terminal(
        dir,
        "mkreplica",
        &[
            "-import".as_ref(),
            "-replica".as_ref(),
            beta.as_os_str(),
            out.as_os_str(),
        ],
        "typed twice\n",
    );
    assert_eq!(imported.code, 0, "{imported:?}");
    assert!(
        imported
            .stdout
            .contains("Passphrase of the creation packet: "),
        "{imported:?}"
    );
    assert!(beta.join("readme.txt").is_file());
}

#[test]
fn keyout_writes_the_keys_to_their_own_file_and_the_packet_is_encrypted_to_them() {
    let fam = family(&["alpha"], &[("readme.txt", "hello")]);
    let content = random_bytes(17, 256 << 10);
    std::fs::write(fam.root("alpha").join(SECRET_NAME), &content).unwrap();
    let dir = fam.dir.path();
    let out = fam.packet_dir("stick");
    let key = dir.join("by-courier").join("beta.key");
    std::fs::create_dir(key.parent().unwrap()).unwrap();
    let exported = mkreplica_without_a_terminal(
        &fam.root("alpha"),
        mkreplica_args(&[&"-export", &"-out", &out, &"-keyout", &key, &"beta"]),
    );
    assert!(exported.status.success(), "{exported:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let files = only_packets_in(&out);
    assert_eq!(windows_found(&content, &files), 0);
    let listed = run(dir, "lspacket", [out.as_os_str()]).ok();
    assert!(
        listed.stdout.contains("Encrypted for: beta"),
        "{}",
        listed.stdout
    );
    // Without the key file: where it was looked for, and how to name it.
    let beta = dir.join("beta");
    let missing =
        mkreplica_without_a_terminal(dir, mkreplica_args(&[&"-import", &"-replica", &beta, &out]));
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("name it with -key FILE"),
        "{missing:?}"
    );
    assert!(!beta.exists());
    // No passphrase is asked (no terminal here) with the key file named.
    let made = mkreplica_without_a_terminal(
        dir,
        mkreplica_args(&[&"-import", &"-replica", &beta, &"-key", &key, &out]),
    );
    assert!(made.status.success(), "{made:?}");
    assert_eq!(std::fs::read(beta.join(SECRET_NAME)).unwrap(), content);
}

/// `./demo.sh` runs unattended: its first part (making the two replicas
/// from a creation packet) is run as it stands, with no terminal.
#[test]
fn demo_sh_makes_its_replicas_without_a_terminal() {
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/demo.sh")).unwrap();
    let start = script.find("show() {").expect("demo.sh defines show");
    let last = "show lsreplica -replica boston\n";
    let end = script.find(last).expect("demo.sh lists boston's members") + last.len();
    let bin = binary_path("mkreplica");
    let work = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\nexport PATH=\"{}:$PATH\"\n{}",
            bin.parent().unwrap().display(),
            &script[start..end]
        ))
        .current_dir(work.path())
        .env("SYNCREPLICA_TEST_SCRYPT_LOG_N", "10")
        .env("XDG_DATA_HOME", test_data_home())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(work.path().join("ship/docs/report.txt").is_file());
    // Nothing secret is left behind with the packet.
    assert!(std::fs::read_dir(work.path().join("usb"))
        .unwrap()
        .next()
        .is_none());
    assert!(!work.path().join("passphrase").exists());
}
