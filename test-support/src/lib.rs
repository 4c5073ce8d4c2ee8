//! Helpers shared by the tests of the workspace's crates: directory
//! walks, fixed keys, seeded random data and numbered operations.
//!
//! It depends on `packet-format` only, never on `syncreplica`, so that
//! `shipping`'s and `packet-format`'s own tests can use it too; helpers
//! that need a replica live in `tests/integration/helpers.rs`.

pub mod counting_alloc;

use std::path::Path;

use sha2::Digest;

use packet_format::ops::{Change, Id, Operation, Timestamp};

/// Every file under `dir` but lock files (`.lock*`), relative, sorted.
/// A missing directory has none.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".lock")
            {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The ed25519 public key of `secret`.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(secret)
        .verifying_key()
        .to_bytes()
}

/// A small seeded generator (xorshift64), so random tests repeat exactly.
/// The seed must not be 0.
pub struct XorShift(pub u64);

impl XorShift {
    // An endless generator of u64s, not meant to be an Iterator.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Operations of `origin`, one per change, numbered from epoch `first`,
/// all recorded at `recorded`: what a sibling (honest or not) sends.
pub fn numbered_operations(
    origin: Id,
    first: u64,
    recorded: Timestamp,
    changes: impl IntoIterator<Item = Change>,
) -> Vec<Operation> {
    changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| Operation {
            origin,
            epoch: first + i as u64,
            recorded,
            change,
        })
        .collect()
}

/// The names of the entries directly in `dir`, sorted.
pub fn entry_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The shape of a packet of many small operations ([`write_many_ops`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManyOps {
    /// N versions of the one directory `d`.
    OnePath,
    /// N tombstones `dNNN/fNNNNNNN` of paths never made: entries, no
    /// disk work.
    Deleted,
    /// N directories `dNNN/NNNNNNN`, each made on disk.
    Dirs,
    /// N small files `dNNN/fNNNNNNN`, each of its own content (one chunk
    /// of 504 bytes the packet carries, [`ManyOps::content`]): each staged
    /// and placed.
    Files,
    /// N directories in pairs, each pair a folder of its own at the top
    /// (a name of 200 bytes) and one directory `d` in it: N/2 folders
    /// whose content changes on disk, each written to disk (fsynced)
    /// once.
    Spread,
    /// N directories nested in one chain `d/d/d…` (depth N; at most
    /// 2,047, where the path reaches 4,095 bytes).
    Deep,
    /// The paths of [`ManyOps::Dirs`], mode 0700: where the receiver made
    /// those directories itself (mode 0755), each operation is concurrent
    /// with its own change, and each ends as a conflict (of the folder's
    /// mode) the import reports.
    Conflicts,
}

impl ManyOps {
    /// `one`, `deleted`, `dirs`, `files`, `spread`, `deep` or
    /// `conflicts`.
    pub fn parse(name: &str) -> Option<ManyOps> {
        match name {
            "one" => Some(ManyOps::OnePath),
            "deleted" => Some(ManyOps::Deleted),
            "dirs" => Some(ManyOps::Dirs),
            "files" => Some(ManyOps::Files),
            "spread" => Some(ManyOps::Spread),
            "deep" => Some(ManyOps::Deep),
            "conflicts" => Some(ManyOps::Conflicts),
            _ => None,
        }
    }

    /// The content of the `index`th file of [`ManyOps::Files`]: 504
    /// bytes. Not much smaller: the packet's chunk groups (2 MiB) are
    /// read a group at a time, so tiny chunks would make the reader hold
    /// many more of them at once for a larger packet, up to that bound.
    pub fn content(index: u64) -> Vec<u8> {
        format!("content of file {index:07}\n")
            .repeat(21)
            .into_bytes()
    }

    /// Operation `epoch` of `origin`, the `index`th (from 0) of the packet.
    pub fn operation(self, origin: Id, epoch: u64, index: u64) -> Operation {
        use packet_format::ops::{PathState, VersionVector};
        let mut version = VersionVector::default();
        version.set(origin, epoch);
        let (path, state) = match self {
            ManyOps::OnePath => (b"d".to_vec(), PathState::directory(0o755)),
            ManyOps::Deleted => (
                format!("d{:03}/f{index:07}", index % 1000).into_bytes(),
                PathState::Deleted,
            ),
            ManyOps::Dirs => (
                format!("d{:03}/{index:07}", index % 1000).into_bytes(),
                PathState::directory(0o755),
            ),
            ManyOps::Conflicts => (
                format!("d{:03}/{index:07}", index % 1000).into_bytes(),
                PathState::directory(0o700),
            ),
            ManyOps::Spread => {
                let folder = format!("{:07}{}", index / 2, "s".repeat(193));
                let path = if index.is_multiple_of(2) {
                    folder
                } else {
                    format!("{folder}/d")
                };
                (path.into_bytes(), PathState::directory(0o755))
            }
            ManyOps::Deep => {
                let mut path = b"d".to_vec();
                for _ in 0..index {
                    path.extend_from_slice(b"/d");
                }
                (path, PathState::directory(0o755))
            }
            ManyOps::Files => {
                let content = ManyOps::content(index);
                (
                    format!("d{:03}/f{index:07}", index % 1000).into_bytes(),
                    PathState::File {
                        mode: 0o644,
                        mtime: Timestamp::new(1_700_000_000, 0).unwrap(),
                        size: content.len() as u64,
                        chunks: vec![packet_format::ops::ChunkRef {
                            id: sha2::Sha256::digest(&content).into(),
                            len: content.len() as u32,
                        }],
                        ext: Default::default(),
                    },
                )
            }
        };
        Operation {
            origin,
            epoch,
            recorded: Timestamp::new(1, 0).unwrap(),
            change: Change::Path {
                path,
                version,
                state,
            },
        }
    }
}

/// Who sends a packet of [`write_many_ops`], and to whom.
pub struct ManyOpsPacket<'a> {
    pub family: packet_format::Named,
    /// The sender, also the operations' origin, sealer and signer.
    pub sender: packet_format::Named,
    pub secret: [u8; 32],
    pub target: packet_format::Named,
    /// What the target holds of the sender's operations: the packet's
    /// first epoch follows it.
    pub have: u64,
    pub count: u64,
    pub kind: ManyOps,
    pub out_dir: &'a Path,
}

/// Writes an update packet of `count` small operations of `kind`, sealed
/// and signed by the sender, as an honest but long-disconnected sibling
/// would send, without holding them all (for memory tests and
/// `bench/import_memory.sh`). Returns the packet file.
pub fn write_many_ops(spec: &ManyOpsPacket) -> std::path::PathBuf {
    use packet_format::seals::{link, Seal, END};
    use packet_format::{EpochRange, PacketKind, PacketMeta, PacketWriter, Target};
    let origin = spec.sender.id;
    let first = spec.have + 1;
    let op = |index: u64| spec.kind.operation(origin, first + index, index);
    // The seal's head chains the run from its end: the operations are
    // made again, last first, rather than held.
    let mut head = END;
    for index in (0..spec.count).rev() {
        head = link(&head, &op(index).encode());
    }
    let last = spec.have + spec.count;
    let seal = Seal::sign(&spec.secret, origin, first, last, &head);
    let meta = PacketMeta {
        kind: PacketKind::Update,
        family: spec.family.clone(),
        sender: spec.sender.clone(),
        targets: vec![Target {
            id: spec.target.id,
            name: spec.target.name.clone(),
            seq: 99,
        }],
        packet_id: {
            let mut id = [0x5a; 16];
            id[..8].copy_from_slice(&spec.have.to_le_bytes());
            id[8..].copy_from_slice(&spec.count.to_le_bytes());
            Id(id)
        },
        created: Timestamp::new(1, 0).unwrap(),
        comment: format!("{} operations ({:?})", spec.count, spec.kind),
        epoch_ranges: [(origin, EpochRange { first, last })].into(),
        epoch_row: [(origin, last)].into(),
        seals: vec![seal],
        creation: None,
        incarnation: None,
        tree_digest: None,
        encryption: None,
        secrets: None,
        rotations: Vec::new(),
    };
    let mut writer = PacketWriter::create(spec.out_dir, 1 << 31, &spec.secret, meta).unwrap();
    for index in 0..spec.count {
        writer.add_operation(&op(index)).unwrap();
        if spec.kind == ManyOps::Files {
            let content = ManyOps::content(index);
            let id: [u8; 32] = sha2::Sha256::digest(&content).into();
            writer.add_chunk(&id, &content).unwrap();
        }
    }
    let parts = writer.finish().unwrap();
    parts[0].path.clone()
}

/// Where the tests' S3 service is: what `.ci/ceph-rgw start` prints.
#[derive(Debug, Clone)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// Access key id and secret of a user that may only list and read
    /// the bucket, when the script made one.
    pub read_only: Option<(String, String)>,
}

impl S3Server {
    /// The environment a process needs to reach the service
    /// (`AWS_ACCESS_KEY_ID` and so on).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", self.region.clone()),
        ]
    }
}

/// The tests' S3 service (a Ceph RADOS Gateway on 127.0.0.1), started by
/// `.ci/ceph-rgw start` (idempotent) on first use. None, after printing
/// why, when it cannot be started on this machine (no root, no apt-get):
/// the caller skips. Under `CI=true` that is a failure instead: CI must
/// run the S3 tests.
pub fn s3_server() -> Option<S3Server> {
    static SERVER: std::sync::OnceLock<Result<S3Server, String>> = std::sync::OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/ceph-rgw");
        // Bounded, so that a start that cannot finish fails the tests
        // instead of hanging them (installing and starting takes about
        // two minutes).
        let out = std::process::Command::new("timeout")
            .arg("900")
            .arg("bash")
            .arg(&script)
            .arg("start")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            return Err(format!(
                "{} start failed ({}):\n{}",
                script.display(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {key}=")))
                .map(str::to_string)
                .ok_or_else(|| format!("{} start printed no {key}", script.display()))
        };
        Ok(S3Server {
            endpoint: value("SYNCREPLICA_TEST_S3_ENDPOINT")?,
            bucket: value("SYNCREPLICA_TEST_S3_BUCKET")?,
            access_key: value("AWS_ACCESS_KEY_ID")?,
            secret_key: value("AWS_SECRET_ACCESS_KEY")?,
            region: value("AWS_REGION")?,
            read_only: value("SYNCREPLICA_TEST_S3_READONLY_KEY")
                .ok()
                .zip(value("SYNCREPLICA_TEST_S3_READONLY_SECRET").ok()),
        })
    });
    match server {
        Ok(server) => Some(server.clone()),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and the S3 test service cannot be started: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED (S3 part): no S3 test service on this machine: {why}");
            None
        }
    }
}

/// A reader of `len` bytes from a seeded generator: the same seed gives
/// the same bytes, without holding them in memory.
pub fn seeded_bytes_reader(seed: u64, len: usize) -> impl std::io::Read {
    struct Seeded {
        rng: XorShift,
        left: usize,
    }
    impl std::io::Read for Seeded {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.left);
            for byte in &mut buf[..n] {
                *byte = self.rng.next() as u8;
            }
            self.left -= n;
            Ok(n)
        }
    }
    Seeded {
        rng: XorShift(seed.max(1)),
        left: len,
    }
}
