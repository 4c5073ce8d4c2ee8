//! The architecture's rules, checked on the source and the built programs:
//! dependencies point one way between the layers of `src/` (see `lib.rs`),
//! the crates depend on what they should, errors say their cause once, and a
//! closed pipe is not an error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::helpers::*;

/// The layers of `src/`, each with the layers it may use (besides itself
/// and `ops`, packet-format's operation types re-exported at the root).
const LAYERS: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("sys", &["error"]),
    // Everything that names a file of the state folder uses store::layout.
    ("store", &["sys", "error"]),
    ("tree", &["store", "sys", "error"]),
    ("replica", &["store", "tree", "sys", "error"]),
    ("sync", &["replica", "store", "tree", "sys", "error"]),
    ("ship", &["sync", "replica", "store", "sys", "error"]),
    ("ship_trust", &["store", "sys", "error"]),
    (
        "cli",
        &[
            "sync",
            "replica",
            "ship",
            "ship_trust",
            "store",
            "tree",
            "sys",
            "error",
        ],
    ),
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The layer of a file below `src/`: its first path component, without
/// `.rs`.
fn layer_of(src: &Path, file: &Path) -> String {
    let first = file.strip_prefix(src).unwrap().components().next().unwrap();
    let name = first.as_os_str().to_str().unwrap();
    name.strip_suffix(".rs").unwrap_or(name).to_string()
}

/// The code of a file without its comment lines (docs may name any module).
fn code(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::NAME` a piece of code uses.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            used.insert(name);
        }
        rest = after;
    }
    used
}

#[test]
fn dependencies_between_layers_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for file in rust_files(&src) {
        let layer = layer_of(&src, &file);
        if layer == "bin" || layer == "lib" {
            continue;
        }
        let allowed = LAYERS
            .iter()
            .find(|(name, _)| *name == layer)
            .unwrap_or_else(|| panic!("{}: a layer the test does not know", file.display()))
            .1;
        for used in crate_paths(&code(&file)) {
            // The root's re-exports of the error module.
            let used = match used.as_str() {
                "Error" | "Result" => "error".to_string(),
                _ => used,
            };
            if used != layer && used != "ops" && !allowed.contains(&used.as_str()) {
                wrong.push(format!("{} ({layer}) uses crate::{used}", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn only_the_cli_layer_prints_exits_or_uses_cli_libraries() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for file in rust_files(&src) {
        let layer = layer_of(&src, &file);
        if layer == "cli" || layer == "bin" {
            continue;
        }
        let code = code(&file);
        for word in [
            "clap::",
            "indicatif::",
            "anyhow",
            "println!",
            "eprintln!",
            "process::exit",
        ] {
            // Unit tests may print what they like.
            let body = code.split("#[cfg(test)]").next().unwrap();
            if body.contains(word) {
                wrong.push(format!("{} uses {word}", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn bins_are_thin() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    for file in rust_files(&bin) {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 12, "{} has {lines} lines", file.display());
    }
}

fn dependency_names(manifest: &str, table: &str) -> Vec<String> {
    let value: toml::Table = toml::from_str(manifest).unwrap();
    value
        .get(table)
        .and_then(|t| t.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn crates_depend_on_what_they_should() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipping = std::fs::read_to_string(root.join("shipping/Cargo.toml")).unwrap();
    let deps = dependency_names(&shipping, "dependencies");
    for forbidden in ["rusqlite", "clap", "anyhow", "signal-hook"] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "shipping depends on {forbidden}"
        );
    }
    let packet_format = std::fs::read_to_string(root.join("packet-format/Cargo.toml")).unwrap();
    assert!(!dependency_names(&packet_format, "dependencies")
        .iter()
        .any(|d| d == "zip"));
    let syncreplica = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(!dependency_names(&syncreplica, "dependencies")
        .iter()
        .any(|d| d == "clap_complete"));
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    // sha2 may be there twice: age (packet encryption) still builds its
    // KDFs on sha2 0.10, beside the workspace's own; never more.
    for (package, allowed) in [("zstd", 1), ("sha2", 2)] {
        let versions = lock
            .lines()
            .filter(|l| *l == format!("name = \"{package}\""))
            .count();
        assert!(
            versions <= allowed,
            "Cargo.lock has {versions} versions of {package}"
        );
    }
}

#[test]
fn an_os_error_is_said_once() {
    let dir = tree(&[]);
    let missing = dir.path().join("nonexistent");
    let out = run(dir.path(), "lspacket", [missing.to_str().unwrap()]).fails_with(2);
    assert_eq!(
        out.stderr
            .to_lowercase()
            .matches("no such file or directory")
            .count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn a_closed_stdout_ends_a_listing_quietly_with_0() {
    let dir = tree(&[("a", "a")]);
    init(dir.path(), "alpha");
    for i in 0..50 {
        write(dir.path(), &format!("new{i}.txt"), "unrecorded");
    }
    for (command, args) in [
        ("syncreplica", vec!["-status"]),
        ("lsreplica", vec!["-long"]),
        ("lsepoch", vec![]),
    ] {
        // A pipe whose reading end is closed before the command writes, as
        // `syncreplica -status | head -0` leaves it.
        let (reader, writer) = rustix::pipe::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(binary_path(command))
            .args(&args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::from(writer))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{command}: {stderr}");
        assert!(!stderr.contains("panicked"), "{command}: {stderr}");
    }
}

#[test]
fn usage_errors_exit_2_wherever_they_are_found() {
    let dir = tree(&[("a", "a")]);
    init(dir.path(), "alpha");
    let outside = tree(&[]);
    let cases: &[(&Path, &str, &[&str], &str)] = &[
        (
            dir.path(),
            "chepoch",
            &["alpha", "alpha=abc"],
            "is not a whole number",
        ),
        (
            outside.path(),
            "syncreplica",
            &["-export", "-ship", "-pexpire", "garbage", "x"],
            "garbage",
        ),
        (
            outside.path(),
            "syncreplica",
            &["-export", "-out", ".", "-maxsize", "10k", "x"],
            "10k",
        ),
        (
            outside.path(),
            "mkreplica",
            &["-import", "-fingerprint", "zz", "."],
            "64 hexadecimal digits",
        ),
        (
            outside.path(),
            "shipping_server",
            &["-listen", "notanaddr"],
            "IP:PORT",
        ),
        (
            dir.path(),
            "syncreplica",
            &["-status", "extra"],
            "take no operands",
        ),
        (
            dir.path(),
            "syncreplica",
            &["-statsu"],
            "unknown option -statsu\n\n  tip: a similar argument exists: '-status'",
        ),
        (
            dir.path(),
            "lsreplica",
            &["-bogus"],
            "unknown option -bogus",
        ),
        (
            dir.path(),
            "syncreplica",
            &["-import", "-maxsize", "1m", "-fullcontent", "x"],
            "-maxsize, -fullcontent apply to -export only",
        ),
        (
            dir.path(),
            "syncreplica",
            &["-record", "-c", "why"],
            "-comment applies to -export only",
        ),
        (
            dir.path(),
            "syncreplica",
            &["-export", "-resendpath", "-out", "/tmp/x", "beta"],
            "a value is required for '-resendpath <PATH>'",
        ),
    ];
    for (cwd, command, args, says) in cases {
        let out = run(cwd, command, args.iter().copied()).fails_with(2);
        assert!(
            out.stderr.contains(says),
            "{command} {args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn an_option_with_an_optional_value_leaves_the_next_option_alone() {
    // The README's daemon form: -listen takes no value here.
    let out = run(
        Path::new("/"),
        "shipping_server",
        [
            "-listen",
            "-poll",
            "-interval",
            "5",
            "-shipconf",
            "/nonexistent.toml",
        ],
    )
    .fails_with(1);
    assert!(
        !out.stderr.contains("unexpected argument"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_full_standard_output_is_an_error_that_says_so() {
    let dir = tree(&[("a", "a")]);
    init(dir.path(), "alpha");
    write(dir.path(), "b", "unrecorded");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = std::process::Command::new(binary_path("syncreplica"))
        .arg("-status")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::from(full))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("standard output"), "{stderr}");
}

#[test]
fn a_closed_stdout_does_not_stop_an_export_halfway() {
    let fam = family(&["alpha", "beta"], &[("f", "0")]);
    let a = fam.root("alpha");
    let conf = bay_shipping_conf(fam.dir.path());
    write(&a, "f", "changed");
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(binary_path("syncreplica"))
        .args([
            "-export",
            "-ship",
            "-shipconf",
            conf.to_str().unwrap(),
            "beta",
        ])
        .current_dir(&a)
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Every part has its shipping order.
    let bay = fam.dir.path().join("bay");
    let names = entry_names(&bay.join("outgoing"));
    let packets = names.iter().filter(|n| n.ends_with(".zip")).count();
    let orders = names.iter().filter(|n| n.ends_with(".order")).count();
    assert!(packets > 0 && packets == orders, "{names:?}");
}
