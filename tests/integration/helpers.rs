//! Shared helpers: run a command, make trees, read a replica's state.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use syncreplica::ops::Operation;
use syncreplica::replica::Replica;

pub use test_support::{entry_names, files_under, numbered_operations, XorShift};

/// Output of one command run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails_with(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The passphrase every test's creation packets use unless the test says
/// otherwise (the `-passphrase-file` [`command`] adds).
pub const TEST_PASSPHRASE: &str = "correct horse battery staple";

/// A file holding [`TEST_PASSPHRASE`], made once per test process.
pub fn test_passphrase_file() -> &'static Path {
    static FILE: std::sync::OnceLock<tempfile::TempPath> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("{TEST_PASSPHRASE}\n")).unwrap();
        file.into_temp_path()
    })
}

/// The command `name args…`, as every helper runs it: `mkreplica -export`
/// and `-import` get `-passphrase-file` with [`TEST_PASSPHRASE`] unless the
/// arguments choose how keys travel (`-keyout`, `-key`,
/// `-passphrase-file`; tests of the passphrase itself use
/// [`command_as_given`]); scrypt runs at a low work factor.
pub fn command<I, S>(name: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    command_as_given(name, with_test_passphrase(name, args))
}

/// `args` with the `-passphrase-file` that [`command`] adds, if it adds one.
pub fn with_test_passphrase<I, S>(name: &str, args: I) -> Vec<std::ffi::OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut args: Vec<std::ffi::OsString> =
        args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let chooses = |flag: &str| args.iter().any(|a| a == flag);
    if name == "mkreplica"
        && (chooses("-export") || chooses("-import"))
        && !["-keyout", "-key", "-passphrase-file"]
            .iter()
            .any(|f| chooses(f))
    {
        args.push("-passphrase-file".into());
        args.push(test_passphrase_file().into());
    }
    args
}

/// The command `name args…` exactly as given (scrypt at a low work factor).
pub fn command_as_given<I, S>(name: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(binary(name));
    command
        .args(args)
        .env("SYNCREPLICA_TEST_SCRYPT_LOG_N", "10")
        // mkreplica -import records each replica it makes in the user's
        // data folder: the tests keep theirs out of the real home.
        .env("XDG_DATA_HOME", test_data_home());
    command
}

/// The data folder every test's commands use (`XDG_DATA_HOME`), where
/// `mkreplica -import` records the replicas made on a host: kept out of the
/// real home.
pub fn test_data_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("data-home")
}

fn binary(name: &str) -> PathBuf {
    let path = match name {
        "syncreplica" => env!("CARGO_BIN_EXE_syncreplica"),
        "mkreplica" => env!("CARGO_BIN_EXE_mkreplica"),
        "lsreplica" => env!("CARGO_BIN_EXE_lsreplica"),
        "lsepoch" => env!("CARGO_BIN_EXE_lsepoch"),
        "lspacket" => env!("CARGO_BIN_EXE_lspacket"),
        "chepoch" => env!("CARGO_BIN_EXE_chepoch"),
        "rmreplica" => env!("CARGO_BIN_EXE_rmreplica"),
        "chreplica" => env!("CARGO_BIN_EXE_chreplica"),
        "mkorder" => env!("CARGO_BIN_EXE_mkorder"),
        "shipping_server" => env!("CARGO_BIN_EXE_shipping_server"),
        other => panic!("no binary {other}"),
    };
    PathBuf::from(path)
}

/// The sum of the counts named `name` that a command wrote to `file`
/// (`SYNCREPLICA_TEST_COUNTS`); 0 when it wrote none.
pub fn test_count(file: &Path, name: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

/// The path of one of the programs, for tests that start it themselves.
pub fn binary_path(name: &str) -> PathBuf {
    binary(name)
}

/// The `shipping_server` binary, for tests that start it themselves.
pub fn shipping_server_binary() -> PathBuf {
    binary("shipping_server")
}

/// Runs `name args…` in `cwd` with `stdin` as its input.
pub fn run_in<I, S>(cwd: &Path, name: &str, args: I, stdin: &str) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::io::Write;
    let mut child = command(name, args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).ok();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Starts `name args…` in `cwd` with a terminal (a pseudo-terminal, made
/// by python3) as its standard input: for the commands that ask a
/// question only where someone can answer it. What the test writes to the
/// returned child's stdin is typed on that terminal once the test closes
/// it; standard output and error are the child's own pipes.
pub fn spawn_on_terminal<I, S>(cwd: &Path, name: &str, args: I) -> std::process::Child
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    const ON_A_TERMINAL: &str = r#"
import os, subprocess, sys
master, slave = os.openpty()
child = subprocess.Popen(sys.argv[1:], stdin=slave)
os.close(slave)
os.write(master, sys.stdin.buffer.read())
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
"#;
    let program = command(name, args);
    Command::new("python3")
        .arg("-c")
        .arg(ON_A_TERMINAL)
        .arg(program.get_program())
        .args(program.get_args())
        .envs(program.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

/// Runs `name args…` in `cwd` on a terminal ([`spawn_on_terminal`]) on
/// which `typed` is typed.
pub fn run_answering<I, S>(cwd: &Path, name: &str, args: I, typed: &str) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::io::Write;
    let mut child = spawn_on_terminal(cwd, name, args);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `name args…` in `cwd` killed at the named test-hook point
/// (`SYNCREPLICA_TEST_CRASH_AT`, see `syncreplica::sys::testhook`).
pub fn run_crashing_at<I, S>(cwd: &Path, name: &str, args: I, point: &str) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_env(
        cwd,
        name,
        args,
        ("SYNCREPLICA_TEST_CRASH_AT", point.as_ref()),
    )
}

/// Runs `name args…` in `cwd` with one more environment variable, standard
/// input closed.
fn run_with_env<I, S>(cwd: &Path, name: &str, args: I, (key, value): (&str, &OsStr)) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = command(name, args)
        .current_dir(cwd)
        .env(key, value)
        .stdin(Stdio::null())
        .output()
        .expect("binary starts");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts that a run was killed at its crash point (no exit status).
#[track_caller]
pub fn assert_crashed(run: &Run) {
    assert_eq!(
        run.code, -1,
        "expected a kill at the crash point:\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

pub fn run<I, S>(cwd: &Path, name: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_in(cwd, name, args, "")
}

/// [`run`] as another host would: with `data_home` as its data folder
/// (`XDG_DATA_HOME`), where `mkreplica -import` records the replicas made
/// on a host (so a second import of one creation packet on one host is
/// refused; on two hosts it makes a clone).
pub fn run_as_another_host<I, S>(cwd: &Path, name: &str, args: I, data_home: &Path) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_env(cwd, name, args, ("XDG_DATA_HOME", data_home.as_os_str()))
}

/// A fresh temporary directory with a tree `files` (path, content).
pub fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        write(dir.path(), path, content);
    }
    dir
}

pub fn write(root: &Path, path: &str, content: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// [`write`], then the replica root's mtime put back: a test whose subject
/// is not the root's own state (replicated since format 2.10, and moved by
/// every name added at the top) sees only the file's change.
pub fn write_keeping_root_time(root: &Path, path: &str, content: &str) {
    let time = std::fs::metadata(root).unwrap().modified().unwrap();
    write(root, path, content);
    std::fs::File::open(root)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// Creates a family with `name` as its first member at `root`.
pub fn init(root: &Path, name: &str) {
    run(root, "mkreplica", ["-init", "-family", "fam", name]).ok();
}

/// Operations this replica recorded with epochs after `after`, in order.
pub fn own_operations_after(root: &Path, after: u64) -> Vec<Operation> {
    let replica = Replica::open(root).unwrap();
    let me = replica.identity.replica_id;
    let mut ops = Vec::new();
    let mut epoch = after + 1;
    while let Some(op) = replica.state().operation(&me, epoch).unwrap() {
        ops.push(op);
        epoch += 1;
    }
    ops
}

pub fn own_epoch(root: &Path) -> u64 {
    let replica = Replica::open(root).unwrap();
    let me = replica.identity.replica_id;
    replica.state().epoch(&me, &me).unwrap()
}

/// (path, state) of each path operation, for compact assertions.
pub fn path_changes(ops: &[Operation]) -> Vec<(Vec<u8>, syncreplica::ops::PathState)> {
    ops.iter()
        .filter_map(|op| {
            op.change
                .path_change()
                .map(|c| (c.path.clone(), c.state.clone()))
        })
        .collect()
}

/// Insta filters that hide what differs from run to run.
pub fn redactions() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\b[0-9a-f]{64}\b", "[FINGERPRINT]"),
        (r"\b[0-9a-f]{32}\b", "[ID]"),
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        (r"process \d+", "process [PID]"),
        (r"\bage1[02-9ac-hj-np-z]{58}\b", "[AGE-RECIPIENT]"),
    ]
}

/// A family of replicas made the way users make them: the first with
/// `mkreplica -init`, the others from creation packets it exports.
pub struct Family {
    pub dir: tempfile::TempDir,
}

impl Family {
    pub fn root(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Exports from member `from` to member `to` into a fresh packet
    /// directory named after `label`, and imports it at `to`; both must
    /// succeed.
    pub fn send(&self, from: &str, to: &str, label: &str) {
        let out = self.packet_dir(label);
        export_to(&self.root(from), &out, &[to], &[]).ok();
        import_from(&self.root(to), &[&out]).ok();
    }

    /// A fresh, empty directory under the family's temporary folder.
    pub fn packet_dir(&self, label: &str) -> PathBuf {
        let dir = self.dir.path().join(format!("packets-{label}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// Makes replicas `names[0]` (with `files`) and the rest from creation
/// packets exported by the first.
pub fn family(names: &[&str], files: &[(&str, &str)]) -> Family {
    family_in(tempfile::tempdir().unwrap(), names, files)
}

/// [`family`] in `dir` (a folder on a filesystem of the test's choosing).
pub fn family_in(dir: tempfile::TempDir, names: &[&str], files: &[(&str, &str)]) -> Family {
    let first = dir.path().join(names[0]);
    std::fs::create_dir(&first).unwrap();
    for (path, content) in files {
        write(&first, path, content);
    }
    init(&first, names[0]);
    for name in &names[1..] {
        let out = dir.path().join(format!("creation-{name}"));
        std::fs::create_dir(&out).unwrap();
        run(
            &first,
            "mkreplica",
            [
                OsStr::new("-export"),
                "-out".as_ref(),
                out.as_os_str(),
                name.as_ref(),
            ],
        )
        .ok();
        let root = dir.path().join(name);
        run(
            dir.path(),
            "mkreplica",
            [
                OsStr::new("-import"),
                "-replica".as_ref(),
                root.as_os_str(),
                out.as_os_str(),
            ],
        )
        .ok();
    }
    Family { dir }
}

/// `mkreplica -export -out OUT NAME` at `root`: a creation packet for a new
/// member NAME.
pub fn mkreplica_export(root: &Path, out: &Path, name: &str) -> Run {
    run(
        root,
        "mkreplica",
        [
            OsStr::new("-export"),
            OsStr::new("-out"),
            out.as_os_str(),
            OsStr::new(name),
        ],
    )
}

/// `len` pseudo-random bytes from `seed` (incompressible content).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut random = XorShift(seed);
    (0..len.div_ceil(8))
        .flat_map(|_| random.next().to_le_bytes())
        .take(len)
        .collect()
}

/// A `shipping.toml` in `dir` with one storage class, "default", whose
/// bays are `dir/bay` (outgoing, incoming) and `dir/bay/return`; every
/// destination is routed to the directory hop `dir/relay`.
pub fn bay_shipping_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("shipping.toml");
    std::fs::write(
        &conf,
        format!(
            "default_route = \"relay\"\n\n[destinations.relay]\ndir = \"{0}/relay\"\n\n\
             [classes.default]\nstorage_bay = \"{0}/bay\"\nreturn_bay = \"{0}/bay/return\"\n",
            dir.display()
        ),
    )
    .unwrap();
    conf
}

/// `syncreplica -export -out DIR TARGETS…` at `root`.
pub fn export_to(root: &Path, out: &Path, targets: &[&str], extra: &[&str]) -> Run {
    let mut args: Vec<std::ffi::OsString> = vec!["-export".into(), "-out".into(), out.into()];
    args.extend(extra.iter().map(|a| a.into()));
    args.extend(targets.iter().map(|t| t.into()));
    run(root, "syncreplica", args)
}

/// `syncreplica -import SOURCES…` at `root`.
pub fn import_from(root: &Path, sources: &[&Path]) -> Run {
    let mut args: Vec<std::ffi::OsString> = vec!["-import".into()];
    args.extend(sources.iter().map(|s| s.as_os_str().to_owned()));
    run(root, "syncreplica", args)
}

/// Every path under `root` (state folder excluded) with its type, mode,
/// mtime and content or link target: two replicas are "the same tree"
/// when these listings are equal.
pub fn tree_listing(root: &Path) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap();
            if rel.as_os_str().as_bytes() == b".syncreplica" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = String::from_utf8_lossy(rel.as_os_str().as_bytes()).into_owned();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push(format!("link {name} -> {}", target.display()));
            } else if meta.is_dir() {
                out.push(format!("dir  {name} {:o}", meta.mode() & 0o7777));
                pending.push(path);
            } else {
                let content = std::fs::read(&path).unwrap();
                let digest = sha2::Digest::finalize(
                    <sha2::Sha256 as sha2::Digest>::new_with_prefix(&content),
                );
                out.push(format!(
                    "file {name} {:o} {}.{:09} {}",
                    meta.mode() & 0o7777,
                    meta.mtime(),
                    meta.mtime_nsec(),
                    hex::encode(digest)
                ));
            }
        }
    }
    out.sort();
    out
}

/// Packet files in `dir`, sorted.
pub fn packet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zip"))
        .collect();
    files.sort();
    files
}

/// The epoch of `origin` in row `row` as `lsepoch` prints it at `root`.
pub fn epoch_in_row(root: &Path, row: &str, origin: &str) -> u64 {
    let listing = run(root, "lsepoch", [row]).ok().stdout;
    listing
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{origin} ")))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {origin} in row {row}:\n{listing}"))
}

/// A command started paused at a test-hook point
/// (`SYNCREPLICA_TEST_PAUSE_AT`, see `syncreplica::sys::testhook`).
pub struct Paused {
    pub child: std::process::Child,
    pub marker: PathBuf,
}

/// `syncreplica -export -out OUT beta` at `root`, paused at the
/// `export-writing` point (see [`start_paused_at`]).
pub fn export_paused(root: &Path, out: &Path, marker: &Path) -> Paused {
    start_paused_at(
        root,
        "syncreplica",
        [
            OsStr::new("-export"),
            OsStr::new("-out"),
            out.as_os_str(),
            OsStr::new("beta"),
        ],
        "export-writing",
        marker,
    )
}

/// Starts `name args…` in `cwd` to pause at `point`, and returns once it
/// is there (its marker file exists). Panics if it ends before.
pub fn start_paused_at<I, S>(cwd: &Path, name: &str, args: I, point: &str, marker: &Path) -> Paused
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = command(name, args)
        .current_dir(cwd)
        .env("SYNCREPLICA_TEST_PAUSE_AT", point)
        .env("SYNCREPLICA_TEST_PAUSE_MARKER", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    // Waits for the process to reach the point, not for time to pass.
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            panic!(
                "{name} ended ({status}) before pausing at {point}:\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Paused {
        child,
        marker: marker.to_path_buf(),
    }
}

impl Paused {
    /// Sends `signal` to the paused process and waits for it to end.
    pub fn signal(self, signal: rustix::process::Signal) -> Run {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).unwrap();
        self.finish()
    }

    /// Lets the paused process go on to the next time it reaches its
    /// point, and returns once it is there. Panics if it ends before.
    pub fn next(&mut self) {
        std::fs::remove_file(&self.marker).unwrap();
        while !self.marker.exists() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("ended ({status}) before pausing again");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Lets the paused process go on, and waits for it to end.
    pub fn resume(self) -> Run {
        std::fs::remove_file(&self.marker).unwrap();
        self.finish()
    }

    fn finish(self) -> Run {
        let output = self.child.wait_with_output().unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A packet from `sender` (its real key) to `target` carrying `changes` as
/// `sender`'s next operations (after what `target` has of it), sealed by
/// it, written into `out`: what a compromised or buggy sibling could send.
pub fn forged_packet(
    sender: &Path,
    target: &Path,
    out: &Path,
    changes: Vec<syncreplica::ops::Change>,
) {
    let who = Forgery {
        origin: sender,
        sender,
        signer: sender,
        sealer: sender,
    };
    forge(&who, target, out, changes, |_| {});
}

/// Whose a forged packet claims to be and whose keys made it: operations
/// of `origin` (numbered after what the target has of it) sealed with
/// `sealer`'s key, in a packet naming `sender` and signed by `signer`.
pub struct Forgery<'a> {
    pub origin: &'a Path,
    pub sender: &'a Path,
    pub signer: &'a Path,
    pub sealer: &'a Path,
}

/// Writes the packet `who` describes into `out`, for `target`, after
/// `tweak` has changed any header field it likes.
pub fn forge(
    who: &Forgery,
    target: &Path,
    out: &Path,
    changes: Vec<syncreplica::ops::Change>,
    tweak: impl FnOnce(&mut packet_format::PacketMeta),
) {
    forge_with_content(who, target, out, changes, &[], tweak);
}

/// A one-chunk file state holding `content` (not empty), for
/// [`forge_with_content`].
pub fn file_state(content: &[u8]) -> syncreplica::ops::PathState {
    use sha2::Digest;
    syncreplica::ops::PathState::File {
        mode: 0o644,
        mtime: syncreplica::ops::Timestamp::new(1_700_000_000, 0).unwrap(),
        size: content.len() as u64,
        chunks: vec![syncreplica::ops::ChunkRef {
            id: sha2::Sha256::digest(content).into(),
            len: content.len() as u32,
        }],
        ext: Default::default(),
    }
}

/// [`forge`], the packet also carrying `contents` as chunks (each one
/// chunk, as [`file_state`] makes them).
pub fn forge_with_content(
    who: &Forgery,
    target: &Path,
    out: &Path,
    changes: Vec<syncreplica::ops::Change>,
    contents: &[&[u8]],
    tweak: impl FnOnce(&mut packet_format::PacketMeta),
) {
    use packet_format::seals::{chain, Seal, END};
    use packet_format::{EpochRange, Named, PacketKind, PacketMeta, PacketWriter, Target};
    use syncreplica::replica::Replica;
    let key_of = |root: &Path| {
        Replica::open(root)
            .unwrap()
            .signing_key()
            .unwrap()
            .to_bytes()
    };
    let origin = Replica::open(who.origin).unwrap().identity.replica_id;
    let from = Replica::open(who.sender).unwrap();
    let to = Replica::open(target).unwrap();
    let have = to.state().epoch(&to.identity.replica_id, &origin).unwrap();
    let ops = numbered_operations(
        origin,
        have + 1,
        syncreplica::ops::Timestamp::new(1, 0).unwrap(),
        changes,
    );
    let count = ops.len() as u64;
    let encoded: Vec<Vec<u8>> = ops.iter().map(|op| op.encode()).collect();
    let head = chain(encoded.iter().map(Vec::as_slice), END);
    let seal = Seal::sign(&key_of(who.sealer), origin, have + 1, have + count, &head);
    let mut meta = PacketMeta {
        kind: PacketKind::Update,
        family: Named {
            id: from.identity.family_id,
            name: from.identity.family_name.clone(),
        },
        sender: Named {
            id: from.identity.replica_id,
            name: from.identity.replica_name.clone(),
        },
        targets: vec![Target {
            id: to.identity.replica_id,
            name: to.identity.replica_name.clone(),
            seq: 99,
        }],
        packet_id: syncreplica::store::identity::random_id(),
        created: syncreplica::ops::Timestamp::new(1, 0).unwrap(),
        comment: "forged".into(),
        epoch_ranges: [(
            origin,
            EpochRange {
                first: have + 1,
                last: have + count,
            },
        )]
        .into(),
        epoch_row: [(origin, have + count)].into(),
        seals: vec![seal],
        creation: None,
        incarnation: None,
        tree_digest: None,
        encryption: None,
        secrets: None,
        rotations: Vec::new(),
    };
    tweak(&mut meta);
    let mut writer = PacketWriter::create(out, 1 << 20, &key_of(who.signer), meta).unwrap();
    for op in &ops {
        writer.add_operation(op).unwrap();
    }
    for content in contents {
        let id: [u8; 32] =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(content)).into();
        writer.add_chunk(&id, content).unwrap();
    }
    writer.finish().unwrap();
}

/// Everything a command could change in a directory (a replica with its
/// state folder, a bay): every file with its mode, mtime and content
/// digest, every directory with its mode, and the state database's rows
/// (SQLite's own files are compared by content, not bytes: a reader may
/// touch its index). "Nothing changed" is this listing staying equal.
/// The replica's lock file is left out: it only says who holds the lock,
/// and every command that may change the replica takes it.
pub fn everything_under(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if meta.is_dir() {
                out.push(format!("dir {rel} {:o}", meta.mode()));
                pending.push(path);
            } else if name == "state.db" {
                out.extend(
                    database_rows(&path)
                        .into_iter()
                        .map(|r| format!("{rel}: {r}")),
                );
            } else if name.starts_with("state.db-") || rel == ".syncreplica/lock" {
                continue;
            } else {
                let digest = sha2::Digest::finalize(
                    <sha2::Sha256 as sha2::Digest>::new_with_prefix(std::fs::read(&path).unwrap()),
                );
                out.push(format!(
                    "file {rel} {:o} {} {}",
                    meta.mode(),
                    meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                    hex::encode(digest)
                ));
            }
        }
    }
    out.sort();
    out
}

/// Every row of every table of an SQLite database, as text, sorted.
fn database_rows(path: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(|name| name.unwrap())
        .collect();
    let mut rows = Vec::new();
    for table in tables {
        let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = statement.column_count();
        let mut query = statement.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let values: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect();
            rows.push(format!("{table}: {}", values.join(" | ")));
        }
    }
    rows.sort();
    rows
}

/// A creation packet being forged (see [`forge_creation`]): its
/// operations, in packet order, and the chunks it carries.
pub struct CreationForge {
    pub ops: Vec<Operation>,
    pub chunks: Vec<([u8; 32], Vec<u8>)>,
}

/// Forges a creation packet for a new member `name`, as a compromised or
/// buggy `sender` could: a real `mkreplica -export` at `sender` makes the
/// honest packet and the new member's key file; `edit` then changes its
/// operations and chunks; each origin's operations are sealed again (one
/// seal per origin over what the packet carries of it) with that origin's
/// real key, taken from the replicas `keys` (and the new member's key
/// file); `tweak` then sets any header or payload field (the ranges, row,
/// seals and members are in place by then). The packet is signed with
/// `sender`'s key and written into `out`, the key file `NAME.key` beside
/// it. Returns the signer's fingerprint, for `mkreplica -import
/// -fingerprint`.
pub fn forge_creation(
    sender: &Path,
    keys: &[&Path],
    name: &str,
    out: &Path,
    edit: impl FnOnce(&mut CreationForge),
    tweak: impl FnOnce(&mut packet_format::PacketMeta),
) -> String {
    use packet_format::seals::{chain, Seal, END};
    use packet_format::{EpochRange, LogicalPacket, PacketMeta, PacketWriter};
    use std::collections::{BTreeMap, HashMap};
    use syncreplica::ops::Id;
    let honest = tempfile::tempdir().unwrap();
    let key_file = honest.path().join(format!("{name}.key"));
    run(
        sender,
        "mkreplica",
        [
            OsStr::new("-export"),
            "-out".as_ref(),
            honest.path().as_os_str(),
            "-keyout".as_ref(),
            key_file.as_os_str(),
            name.as_ref(),
        ],
    )
    .ok();
    let from = Replica::open(sender).unwrap();
    let signer = from.signing_key().unwrap();
    let mut secrets: HashMap<Id, [u8; 32]> = HashMap::new();
    for root in keys.iter().chain([&sender]) {
        let replica = Replica::open(root).unwrap();
        secrets.insert(
            replica.identity.replica_id,
            replica.signing_key().unwrap().to_bytes(),
        );
    }
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    let field = |key: &str| {
        key_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap()
            .to_string()
    };
    let new_secret: [u8; 32] = hex::decode(field("secret_key"))
        .unwrap()
        .try_into()
        .unwrap();
    secrets.insert(Id::from_hex(&field("replica_id")).unwrap(), new_secret);
    std::fs::copy(&key_file, out.join(format!("{name}.key"))).unwrap();
    // The honest packet is encrypted to the new member's key (-keyout).
    let decryption = std::sync::Arc::new(packet_format::Decryption::new(
        vec![field("encryption_key").parse().unwrap()],
        None,
    ));

    let parts = packet_files(honest.path())
        .iter()
        .map(|file| {
            packet_format::verify_packet_with(
                file,
                &[signer.verifying_key().to_bytes()],
                Some(&decryption),
            )
            .unwrap()
        })
        .collect();
    let packet = LogicalPacket::assemble(parts).unwrap();
    let header = packet.header().clone();
    let mut forge = CreationForge {
        ops: packet.operations().map(|op| op.unwrap()).collect(),
        chunks: packet
            .chunks()
            .map(|chunk| {
                let (id, bytes) = chunk.unwrap();
                (id, bytes)
            })
            .collect(),
    };
    let creation = packet.parts()[0].creation().cloned();
    edit(&mut forge);

    let mut by_origin: BTreeMap<Id, Vec<&Operation>> = BTreeMap::new();
    for op in &forge.ops {
        by_origin.entry(op.origin).or_default().push(op);
    }
    let mut ranges = BTreeMap::new();
    let mut seals = Vec::new();
    for (origin, ops) in &by_origin {
        let (first, last) = (ops[0].epoch, ops[ops.len() - 1].epoch);
        ranges.insert(*origin, EpochRange { first, last });
        let encoded: Vec<Vec<u8>> = ops.iter().map(|op| op.encode()).collect();
        let head = chain(encoded.iter().map(Vec::as_slice), END);
        let secret = secrets
            .get(origin)
            .unwrap_or_else(|| panic!("no key for origin {origin}"));
        seals.push(Seal::sign(secret, *origin, first, last, &head));
    }
    let mut meta = PacketMeta {
        kind: header.kind,
        family: header.family.clone(),
        sender: header.sender.clone(),
        targets: header.targets.clone(),
        packet_id: syncreplica::store::identity::random_id(),
        created: header.created,
        comment: "forged".into(),
        epoch_ranges: ranges,
        epoch_row: header.epoch_row.clone(),
        seals,
        creation,
        // A forger copies what the genuine header says.
        incarnation: header.incarnation,
        tree_digest: header.tree_digest.clone(),
        encryption: None,
        secrets: None,
        rotations: Vec::new(),
    };
    tweak(&mut meta);
    let mut writer = PacketWriter::create(out, 1 << 20, &signer.to_bytes(), meta).unwrap();
    for (id, bytes) in &forge.chunks {
        writer.add_chunk(id, bytes).unwrap();
    }
    for op in &forge.ops {
        writer.add_operation(op).unwrap();
    }
    writer.finish().unwrap();
    syncreplica::store::identity::fingerprint(&signer.verifying_key().to_bytes())
}

/// `mkreplica -import -fingerprint FINGERPRINT -replica ROOT PACKETS`
/// from `cwd`.
pub fn mkreplica_import(cwd: &Path, fingerprint: &str, root: &Path, packets: &Path) -> Run {
    run(
        cwd,
        "mkreplica",
        [
            OsStr::new("-import"),
            "-fingerprint".as_ref(),
            fingerprint.as_ref(),
            "-replica".as_ref(),
            root.as_os_str(),
            packets.as_os_str(),
        ],
    )
}

/// Sets the `exclude` patterns of `root`'s config.toml.
pub fn set_excludes(root: &Path, patterns: &[&str]) {
    let config = root.join(".syncreplica/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("exclude = "))
        .unwrap()
        .to_string();
    let quoted: Vec<String> = patterns.iter().map(|p| format!("\"{p}\"")).collect();
    let text = text.replace(&line, &format!("exclude = [{}]", quoted.join(", ")));
    std::fs::write(&config, text).unwrap();
}

/// `mkreplica -import -replica ROOT PACKETS` from `cwd`, not checked: the
/// caller says how it must end.
pub fn mkreplica_import_at(cwd: &Path, root: &Path, packets: &Path) -> Run {
    run(
        cwd,
        "mkreplica",
        [
            OsStr::new("-import"),
            "-replica".as_ref(),
            root.as_os_str(),
            packets.as_os_str(),
        ],
    )
}

/// `mkreplica -export -out OUT -keyout KEY NAME` at `root`, not checked: a
/// creation packet for a new member NAME, its keys in their own file KEY.
pub fn mkreplica_export_keyout(root: &Path, out: &Path, key: &Path, name: &str) -> Run {
    run(
        root,
        "mkreplica",
        [
            OsStr::new("-export"),
            "-out".as_ref(),
            out.as_os_str(),
            "-keyout".as_ref(),
            key.as_os_str(),
            name.as_ref(),
        ],
    )
}
