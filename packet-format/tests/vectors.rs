//! Every committed vector in `tests/vectors/` (made by
//! `cargo run -p packet-format --example make_vectors`) checked against its
//! sidecar `NAME.expect`, whose format is described in
//! `tests/vectors/README.md`. A vector without a sidecar, a sidecar without
//! a vector, or a sidecar line this test does not understand fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use packet_format::ops::{change_kind, Change, PathState, Timestamp};
use packet_format::{
    examine_packet, render_listing, verify_packet, ErrorKind, LogicalPacket, PacketKind,
    SignatureStatus, VerifiedPacket,
};
use sha2::{Digest, Sha256};

const DIR: &str = "tests/vectors";

fn vector(name: &str) -> PathBuf {
    // Relative, so that paths in listings and snapshots do not depend on
    // where the checkout lives (tests run in the crate directory).
    PathBuf::from(DIR).join(name)
}

/// One sidecar: `key: value` lines in file order.
struct Expect {
    file: PathBuf,
    lines: Vec<(String, String)>,
}

impl Expect {
    fn read(path: &Path) -> Expect {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let mut lines = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                panic!("{}:{}: expected `key: value`", path.display(), number + 1);
            };
            lines.push((key.trim().to_string(), value.trim().to_string()));
        }
        Expect {
            file: path.to_path_buf(),
            lines,
        }
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, key: &str) -> Option<&str> {
        let values = self.all(key);
        assert!(
            values.len() <= 1,
            "{}: `{key}` given {} times",
            self.file.display(),
            values.len()
        );
        values.first().copied()
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.one(key).map(|v| self.parse(key, v))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, value: &str) -> T {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{}: `{key}`: cannot read {value:?}", self.file.display()))
    }

    /// `INDEX k=v k=v ...` (or `WORD k=v ...`): the first word and the pairs.
    fn indexed<'a>(&self, key: &str, value: &'a str) -> (&'a str, BTreeMap<&'a str, &'a str>) {
        let mut words = value.split_whitespace();
        let first = words.next().unwrap_or("");
        let fields = words
            .map(|word| {
                word.split_once('=').unwrap_or_else(|| {
                    panic!(
                        "{}: `{key}`: {word:?} is not field=value",
                        self.file.display()
                    )
                })
            })
            .collect();
        (first, fields)
    }
}

const KEYS: &[&str] = &[
    "expect",
    "message",
    "trust",
    "signer",
    "kind",
    "part",
    "packet",
    "size-at-most",
    "created",
    "target",
    "new-replica",
    "member",
    "operations",
    "operation",
    "read-error",
    "seals",
    "seal",
    "chunks",
    "chunk",
    "base",
    "expanded",
    "listing-signature",
    "listing-error",
    "listing-header",
    "listing-short",
    "listing-long",
    "unzip",
    "identity",
];

/// `SECS.NANOS`, nanoseconds in nine digits: the sidecar form of a time.
fn time_text(time: &Timestamp) -> String {
    format!("{}.{:09}", time.secs, time.nanos)
}

/// The wire kind code of a change (SPEC.md §6.2).
fn change_kind(change: &Change) -> u32 {
    match change {
        Change::Path { .. } => change_kind::PATH,
        Change::AddMember { .. } => change_kind::ADD_MEMBER,
        Change::Resolve { .. } => change_kind::RESOLVE,
        Change::RemoveMember { .. } => change_kind::REMOVE_MEMBER,
        Change::RekeyMember { .. } => change_kind::REKEY_MEMBER,
        Change::Unknown { kind, .. } => *kind,
    }
}

fn state_text(state: &PathState) -> String {
    match state {
        PathState::File { .. } => "file".into(),
        PathState::Directory { .. } => "directory".into(),
        PathState::Symlink { .. } => "symlink".into(),
        PathState::Special { kind, .. } => format!("special:{kind}"),
        PathState::Deleted => "deleted".into(),
        PathState::Unknown {
            kind: packet_format::delta::FILE_RELATIVE,
            ..
        } => "file-relative".into(),
        PathState::Unknown { kind, .. } => format!("unknown:{kind}"),
    }
}

fn key_from_hex(what: &str, text: &str) -> [u8; 32] {
    hex::decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .unwrap_or_else(|| panic!("{what}: {text:?} is not 32 bytes of hex"))
}

/// The variant name of an error and the fields a sidecar may check.
fn error_fields(kind: &ErrorKind) -> (String, BTreeMap<&'static str, String>) {
    let debug = format!("{kind:?}");
    let name = debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string();
    let mut fields = BTreeMap::new();
    match kind {
        ErrorKind::UnknownKey { fingerprint } | ErrorKind::BadSignature { fingerprint } => {
            fields.insert("fingerprint", fingerprint.clone());
        }
        ErrorKind::DigestMismatch { name }
        | ErrorKind::DuplicateEntry { name }
        | ErrorKind::OversizedEntry { name, .. } => {
            fields.insert("name", name.clone());
        }
        ErrorKind::NewerFormat { version } | ErrorKind::OlderFormat { version } => {
            fields.insert("major", version.major.to_string());
            fields.insert("minor", version.minor.to_string());
        }
        ErrorKind::TrailingGarbage { bytes } => {
            fields.insert("bytes", bytes.to_string());
        }
        _ => {}
    }
    (name, fields)
}

/// Vector file names in the directory, each with its sidecar.
fn vectors() -> Vec<(String, Expect)> {
    let mut zips = Vec::new();
    let mut sidecars = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".zip") {
            zips.push(stem.to_string());
        } else if let Some(stem) = name.strip_suffix(".expect") {
            sidecars.push(stem.to_string());
        }
    }
    zips.sort();
    sidecars.sort();
    for stem in &sidecars {
        assert!(
            zips.contains(stem),
            "{DIR}/{stem}.expect has no vector {stem}.zip"
        );
    }
    assert!(!zips.is_empty(), "no vectors in {DIR}");
    zips.into_iter()
        .map(|stem| {
            let sidecar = vector(&format!("{stem}.expect"));
            assert!(
                sidecar.exists(),
                "vector {DIR}/{stem}.zip has no sidecar {}",
                sidecar.display()
            );
            (format!("{stem}.zip"), Expect::read(&sidecar))
        })
        .collect()
}

#[test]
fn every_vector_meets_its_sidecar() {
    let all = vectors();
    for (name, expect) in &all {
        check_vector(name, expect, &all);
    }
}

fn check_vector(name: &str, expect: &Expect, all: &[(String, Expect)]) {
    let path = vector(name);
    let file = expect.file.display().to_string();
    for (key, _) in &expect.lines {
        assert!(KEYS.contains(&key.as_str()), "{file}: unknown key `{key}`");
    }
    let trusted: Vec<[u8; 32]> = expect
        .all("trust")
        .iter()
        .map(|hex| key_from_hex(&file, hex))
        .collect();
    assert!(!trusted.is_empty(), "{file}: no `trust` key");
    let outcome = expect
        .one("expect")
        .unwrap_or_else(|| panic!("{file}: no `expect` line"));
    // An encrypted vector is read with the identity its sidecar gives.
    let decryption = expect.one("identity").map(|identity| {
        std::sync::Arc::new(packet_format::Decryption::new(
            vec![identity.parse().expect("an age identity")],
            None,
        ))
    });
    let result = packet_format::verify_packet_with(&path, &trusted, decryption.as_ref());

    if outcome == "ok" {
        let packet = result.unwrap_or_else(|err| panic!("{name} must verify: {err}"));
        assert!(
            expect.one("message").is_none(),
            "{file}: `message` needs an error"
        );
        check_header(name, expect, &packet);
        check_content(name, expect, &packet, all);
    } else {
        let Some(error) = outcome.strip_prefix("error ") else {
            panic!("{file}: `expect` is `ok` or `error KIND ...`, not {outcome:?}");
        };
        let (kind_name, fields) = expect.indexed("expect", error);
        let err = match result {
            Ok(_) => panic!("{name} must be rejected with {kind_name}"),
            Err(err) => err,
        };
        assert_eq!(err.path, path, "{name}: error names the packet file");
        let (actual_name, actual_fields) = error_fields(&err.kind);
        assert_eq!(actual_name, kind_name, "{name}: {}", err.kind);
        for (field, want) in fields {
            let got = actual_fields.get(field).unwrap_or_else(|| {
                panic!("{file}: the test cannot read field `{field}` of {kind_name}")
            });
            assert_eq!(got, want, "{name}: {field} of {}", err.kind);
        }
        if let Some(message) = expect.one("message") {
            let text = err.kind.to_string();
            assert!(text.starts_with(message), "{name}: message {text:?}");
        }
        for key in ["kind", "part", "operations", "operation", "chunks", "chunk"] {
            assert!(
                expect.all(key).is_empty(),
                "{file}: `{key}` needs `expect: ok`"
            );
        }
    }

    if let Some(signer) = expect.one("signer") {
        verify_packet(&path, &[key_from_hex(&file, signer)])
            .unwrap_or_else(|err| panic!("{name} must verify with its signer's key: {err}"));
    }
    check_listing(name, expect, &trusted);
    if expect.one("unzip") == Some("ok") {
        check_info_zip(name);
    } else if let Some(other) = expect.one("unzip") {
        panic!("{file}: `unzip` is only ever `ok`, not {other:?}");
    }
}

fn check_header(name: &str, expect: &Expect, packet: &VerifiedPacket) {
    let header = packet.header();
    let file = expect.file.display().to_string();
    if let Some(kind) = expect.one("kind") {
        let want = match kind {
            "update" => PacketKind::Update,
            "creation" => PacketKind::ReplicaCreation,
            other => panic!("{file}: unknown kind {other:?}"),
        };
        assert_eq!(header.kind, want, "{name}");
    }
    if let Some(part) = expect.one("part") {
        let (k, n) = part
            .split_once('/')
            .unwrap_or_else(|| panic!("{file}: `part` is K/N"));
        let want: (u32, u32) = (expect.parse("part", k), expect.parse("part", n));
        assert_eq!((header.part, header.parts), want, "{name}");
    }
    if let Some(limit) = expect.number("size-at-most") {
        assert!(packet.size() <= limit, "{name}: {} bytes", packet.size());
        assert_eq!(
            std::fs::metadata(vector(name)).unwrap().len(),
            packet.size()
        );
    }
    if let Some(created) = expect.one("created") {
        assert_eq!(time_text(&header.created), created, "{name}");
    }
    for line in expect.all("target") {
        let (index, fields) = expect.indexed("target", line);
        let target = &header.targets[expect.parse::<usize>("target", index)];
        for (field, want) in fields {
            match field {
                "seq" => assert_eq!(target.seq.to_string(), want, "{name}"),
                "name" => assert_eq!(target.name, want, "{name}"),
                other => panic!("{file}: `target` has no field {other:?}"),
            }
        }
    }
    if let Some(new_replica) = expect.one("new-replica") {
        let creation = packet.creation().expect("a creation payload");
        assert_eq!(creation.new_replica.name, new_replica, "{name}");
    }
    for line in expect.all("member") {
        let creation = packet.creation().expect("a creation payload");
        let (index, fields) = expect.indexed("member", line);
        let member = &creation.members[expect.parse::<usize>("member", index)];
        for (field, want) in fields {
            match field {
                "name" => assert_eq!(member.name, want, "{name}"),
                "key" => assert_eq!(hex::encode(member.public_key), want, "{name}"),
                other => panic!("{file}: `member` has no field {other:?}"),
            }
        }
    }
}

/// Operations and chunks of the logical packet this vector belongs to: the
/// vectors with the same `packet` name, handed over in reverse order (parts
/// may come in any order). Without any one of them, reassembly must fail.
fn check_content(name: &str, expect: &Expect, packet: &VerifiedPacket, all: &[(String, Expect)]) {
    let file = expect.file.display().to_string();
    let mut parts = vec![packet.clone()];
    if let Some(group) = expect.one("packet") {
        let siblings: Vec<_> = all
            .iter()
            .filter(|(other, e)| other != name && e.one("packet") == Some(group))
            .map(|(other, e)| {
                let trusted: Vec<[u8; 32]> = e
                    .all("trust")
                    .iter()
                    .map(|h| key_from_hex(other, h))
                    .collect();
                verify_packet(&vector(other), &trusted).unwrap()
            })
            .collect();
        for (index, _) in siblings.iter().enumerate() {
            // This part and all siblings but one: incomplete.
            let mut some = vec![packet.clone()];
            some.extend(
                siblings
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != index)
                    .map(|(_, p)| p.clone()),
            );
            let err = LogicalPacket::assemble(some)
                .err()
                .unwrap_or_else(|| panic!("{name}: packet {group} assembled with a part missing"));
            assert!(
                matches!(err.kind, ErrorKind::IncompleteLogicalPacket(_)),
                "{name}: {err}"
            );
        }
        if !siblings.is_empty() {
            let err = LogicalPacket::assemble(siblings.clone())
                .err()
                .unwrap_or_else(|| panic!("packet {group} assembled without {name}"));
            assert!(
                matches!(err.kind, ErrorKind::IncompleteLogicalPacket(_)),
                "{name}: {err}"
            );
        }
        parts.extend(siblings);
        parts.sort_by_key(|part| std::cmp::Reverse(part.header().part));
    }
    let logical =
        LogicalPacket::assemble(parts).unwrap_or_else(|err| panic!("{name}: reassembly: {err}"));
    if let Some(want) = expect.one("read-error") {
        let err = logical
            .operations()
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("{name}: operations read without {want}"));
        assert_eq!(error_fields(&err.kind).0, want, "{name}: {}", err.kind);
        return;
    }
    let ops: Vec<_> = logical
        .operations()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("{name}: {err}"));
    // The chunks the target holds, that recipes are built from.
    let bases: std::collections::HashMap<[u8; 32], Vec<u8>> = expect
        .all("base")
        .into_iter()
        .map(|text| {
            let bytes = hex::decode(text).unwrap_or_else(|_| panic!("{file}: base is not hex"));
            (Sha256::digest(&bytes).into(), bytes)
        })
        .collect();
    let mut find_base = |chunk: &packet_format::ops::ChunkRef| {
        bases
            .get(&chunk.id)
            .filter(|bytes| bytes.len() == chunk.len as usize)
            .cloned()
    };
    let chunks: Vec<_> = logical
        .chunks_with(&mut find_base)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("{name}: {err}"));
    // Relative file states expanded, as a receiver does before it checks
    // seals (SPEC.md §6.3.1); bases within the packet only.
    let mut files: std::collections::HashMap<(packet_format::ops::Id, u64), Vec<_>> =
        std::collections::HashMap::new();
    let expanded: Vec<packet_format::ops::Operation> = ops
        .iter()
        .map(|op| {
            let mut op = op.clone();
            if let Change::Path { state, .. } | Change::Resolve { state, .. } = &mut op.change {
                if let PathState::Unknown {
                    kind: packet_format::delta::FILE_RELATIVE,
                    body,
                } = state
                {
                    let relative = packet_format::delta::RelativeFile::decode(body)
                        .unwrap_or_else(|err| panic!("{name}: {err}"));
                    let base = &files[&(relative.base.origin, relative.base.epoch)];
                    *state = relative
                        .expand(base)
                        .unwrap_or_else(|err| panic!("{name}: {err}"));
                }
                if let PathState::File { chunks, .. } = state {
                    files.insert((op.origin, op.epoch), chunks.clone());
                }
            }
            op
        })
        .collect();
    for line in expect.all("expanded") {
        let (index, fields) = expect.indexed("expanded", line);
        let op = &expanded[expect.parse::<usize>("expanded", index)];
        for (field, want) in fields {
            match field {
                "sha256" => assert_eq!(
                    hex::encode(Sha256::digest(op.encode())),
                    want,
                    "{name}: {line}"
                ),
                other => panic!("{file}: `expanded` has no field {other:?}"),
            }
        }
    }
    if let Some(count) = expect.number("operations") {
        assert_eq!(ops.len() as u64, count, "{name}: operations");
    }
    for line in expect.all("operation") {
        let (index, fields) = expect.indexed("operation", line);
        let op = &ops[expect.parse::<usize>("operation", index)];
        for (field, want) in fields {
            match field {
                "epoch" => assert_eq!(op.epoch.to_string(), want, "{name}: {line}"),
                "path" => {
                    let Some(change) = op.change.path_change() else {
                        panic!("{name}: {line}: not a path operation")
                    };
                    assert_eq!(String::from_utf8_lossy(change.path), want, "{name}: {line}");
                }
                "kind" => assert_eq!(change_kind(&op.change).to_string(), want, "{name}: {line}"),
                "state" => {
                    let state = op.change.path_change().map(|c| c.state);
                    assert_eq!(
                        state.map_or("none".into(), state_text),
                        want,
                        "{name}: {line}"
                    )
                }
                "mtime" => {
                    let state = op.change.path_change().map(|c| c.state);
                    let mtime = match state {
                        Some(PathState::File { mtime, .. } | PathState::Special { mtime, .. }) => {
                            Some(*mtime)
                        }
                        Some(
                            PathState::Directory { mtime, .. } | PathState::Symlink { mtime, .. },
                        ) => *mtime,
                        _ => None,
                    };
                    assert_eq!(
                        mtime.as_ref().map_or("none".into(), time_text),
                        want,
                        "{name}: {line}"
                    )
                }
                "ext" => {
                    let keys: Vec<String> = op
                        .change
                        .path_change()
                        .and_then(|c| c.state.extensions())
                        .map(|ext| ext.iter().map(|e| e.key.to_string()).collect())
                        .unwrap_or_default();
                    let keys = if keys.is_empty() {
                        "none".into()
                    } else {
                        keys.join(",")
                    };
                    assert_eq!(keys, want, "{name}: {line}")
                }
                "sha256" => assert_eq!(
                    hex::encode(Sha256::digest(op.encode())),
                    want,
                    "{name}: {line}"
                ),
                other => panic!("{file}: `operation` has no field {other:?}"),
            }
        }
    }
    if let Some(count) = expect.number("seals") {
        assert_eq!(logical.seals().len() as u64, count, "{name}: seals");
    }
    for line in expect.all("seal") {
        let (index, fields) = expect.indexed("seal", line);
        let seal = &logical.seals()[expect.parse::<usize>("seal", index)];
        for (field, want) in fields {
            let got = match field {
                "first" => seal.first.to_string(),
                "last" => seal.last.to_string(),
                "tail" => seal.tail.map_or("none".into(), |t| t.epoch.to_string()),
                other => panic!("{file}: `seal` has no field {other:?}"),
            };
            assert_eq!(got, want, "{name}: {line}");
        }
        // It verifies with the signer's key over the carried operations.
        let signer = key_from_hex(&file, expect.one("signer").expect("`seal` needs `signer`"));
        let run: Vec<Vec<u8>> = expanded
            .iter()
            .filter(|op| op.origin == seal.origin)
            .filter(|op| (seal.first..=seal.carried_last()).contains(&op.epoch))
            .map(|op| op.encode())
            .collect();
        let head = packet_format::seals::chain(run.iter().map(Vec::as_slice), seal.after_carried());
        assert!(
            seal.verify(&signer, &head),
            "{name}: {line} does not verify"
        );
    }
    if let Some(count) = expect.number("chunks") {
        assert_eq!(chunks.len() as u64, count, "{name}: chunks");
    }
    for line in expect.all("chunk") {
        let (index, fields) = expect.indexed("chunk", line);
        let (id, data) = &chunks[expect.parse::<usize>("chunk", index)];
        for (field, want) in fields {
            match field {
                "len" => assert_eq!(data.len().to_string(), want, "{name}: {line}"),
                "sha256" => {
                    assert_eq!(hex::encode(Sha256::digest(data)), want, "{name}: {line}");
                    assert_eq!(hex::encode(id), want, "{name}: {line}: id");
                }
                other => panic!("{file}: `chunk` has no field {other:?}"),
            }
        }
    }
}

fn check_listing(name: &str, expect: &Expect, trusted: &[[u8; 32]]) {
    let file = expect.file.display().to_string();
    let exam = examine_packet(&vector(name), trusted);
    if let Some(want) = expect.one("listing-signature") {
        let got = match &exam.signature {
            None => "none",
            Some(SignatureStatus::Verified) => "verified",
            Some(SignatureStatus::UnknownKey { .. }) => "unknown-key",
            Some(SignatureStatus::Bad { .. }) => "bad",
        };
        assert_eq!(got, want, "{name}: listing signature");
    }
    match expect.one("listing-error") {
        None => {}
        Some("none") => assert!(exam.error.is_none(), "{name}: {:?}", exam.error),
        Some(text) => {
            let error = exam
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(text), "{name}: listing error {error:?}");
        }
    }
    match expect.one("listing-header") {
        None => {}
        Some("none") => assert!(exam.header.is_none(), "{name}"),
        Some("present") => assert!(exam.header.is_some(), "{name}"),
        Some(other) => panic!("{file}: `listing-header` is none or present, not {other:?}"),
    }
    for (key, long) in [("listing-short", false), ("listing-long", true)] {
        let text = render_listing(&exam, long);
        for want in expect.all(key) {
            assert!(text.contains(want), "{name}: {key} {want:?} not in\n{text}");
        }
    }
}

/// Standard tools must be able to list and test a packet. Skipped where
/// Info-ZIP unzip is not installed.
fn check_info_zip(name: &str) {
    if std::process::Command::new("unzip")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("unzip not installed; skipping {name}");
        return;
    }
    for flag in ["-l", "-tq"] {
        let output = std::process::Command::new("unzip")
            .arg(flag)
            .arg(vector(name))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "unzip {flag} {name}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

#[test]
fn listing_of_an_update_vector() {
    let trusted = [common::public_key(&common::SENDER_SECRET)];
    let exam = examine_packet(&vector("update.zip"), &trusted);
    insta::assert_snapshot!("listing_update_long", render_listing(&exam, true));
    insta::assert_snapshot!("listing_update_short", render_listing(&exam, false));
}

#[test]
fn listing_of_a_truncated_vector() {
    let trusted = [common::public_key(&common::SENDER_SECRET)];
    let exam = examine_packet(&vector("truncated.zip"), &trusted);
    insta::assert_snapshot!("listing_truncated", render_listing(&exam, true));
}
