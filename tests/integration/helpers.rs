//! Shared helpers: run a command, make trees, read a replica's state.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use syncreplica::ops::{Change, Operation};
use syncreplica::replica::Replica;

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

fn binary(name: &str) -> PathBuf {
    let path = match name {
        "syncreplica" => env!("CARGO_BIN_EXE_syncreplica"),
        "mkreplica" => env!("CARGO_BIN_EXE_mkreplica"),
        "lsreplica" => env!("CARGO_BIN_EXE_lsreplica"),
        "lsepoch" => env!("CARGO_BIN_EXE_lsepoch"),
        "lspacket" => env!("CARGO_BIN_EXE_lspacket"),
        "chepoch" => env!("CARGO_BIN_EXE_chepoch"),
        other => panic!("no binary {other}"),
    };
    PathBuf::from(path)
}

/// Runs `name args…` in `cwd` with `stdin` as its input.
pub fn run_in<I, S>(cwd: &Path, name: &str, args: I, stdin: &str) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::io::Write;
    let mut child = Command::new(binary(name))
        .args(args)
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

pub fn run<I, S>(cwd: &Path, name: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_in(cwd, name, args, "")
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
    while let Some(op) = replica.state.operation(&me, epoch).unwrap() {
        ops.push(op);
        epoch += 1;
    }
    ops
}

pub fn own_epoch(root: &Path) -> u64 {
    let replica = Replica::open(root).unwrap();
    let me = replica.identity.replica_id;
    replica.state.epoch(&me, &me).unwrap()
}

/// (path, state) of each path operation, for compact assertions.
pub fn path_changes(ops: &[Operation]) -> Vec<(Vec<u8>, syncreplica::ops::PathState)> {
    ops.iter()
        .filter_map(|op| match &op.change {
            Change::Path { path, state, .. } => Some((path.clone(), state.clone())),
            _ => None,
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
    ]
}
