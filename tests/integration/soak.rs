//! Soak test: imports racing a person who keeps working in the same tree.
//!
//! Ignored by default (it runs for about a minute). Run it with
//! `cargo test --release --test integration soak -- --ignored --nocapture`;
//! `SOAK_ROUNDS` (default 20) and `SOAK_FILES` (default 4500) change its
//! size. Each round, the sibling changes, creates and deletes files and
//! exports; the import at this replica runs as a real process while a
//! thread edits in place, saves editor-style (new file renamed over the
//! old), creates files where the packet creates them, and renames files.
//! Afterwards every version the thread wrote must exist somewhere in the
//! tree, at its path or as a conflict copy, unless the thread itself saved
//! over it: before each save it reads the file, and only when that still
//! holds its own last version there is the old version retired. So an
//! edit the import clobbered is caught even when a later save hides it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::helpers::*;

/// Every regular file's content in the tree, the state folder excluded.
fn contents(root: &Path) -> BTreeSet<Vec<u8>> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_name() == ".syncreplica" {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    found.insert(bytes);
                }
            }
        }
    }
    found
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the editing thread wrote: per path the content it wrote last
/// there, and every version that must still exist somewhere.
#[derive(Default)]
struct Written {
    last: BTreeMap<PathBuf, Vec<u8>>,
    expected: BTreeSet<Vec<u8>>,
}

type Left = Arc<Mutex<Written>>;

/// Edits `root` until `stop`, choosing among `paths`; returns the number of
/// edits made.
fn edit_until(
    root: PathBuf,
    paths: Vec<String>,
    round: usize,
    left: Left,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut rng = XorShift(round as u64 * 7919 + 1);
    let mut edits = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let rel = &paths[rng.below(paths.len())];
        let path = root.join(rel);
        let token = format!("user edit {round}-{edits} of {rel}").into_bytes();
        // What the path holds right before this save: if it is still this
        // thread's last version there, saving over it retires that one.
        let before = std::fs::read(&path).ok();
        let wrote = match rng.below(4) {
            // In place.
            0 => std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &token))
                .is_ok(),
            // Editor-style.
            1 => {
                let temp = root.join(format!(".edit-{round}-{edits}.tmp"));
                std::fs::write(&temp, &token).is_ok() && std::fs::rename(&temp, &path).is_ok()
            }
            // Create where nothing is (often where the packet creates).
            2 => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &token))
                .is_ok(),
            // Rename a file away; what it held must survive under its new name.
            _ => {
                let to = root.join(format!("renamed-{round}-{edits}.txt"));
                if std::fs::rename(&path, &to).is_ok() {
                    let mut left = left.lock().unwrap();
                    if let Some(content) = left.last.remove(&path) {
                        left.last.insert(to, content);
                    }
                }
                false
            }
        };
        if wrote {
            let mut left = left.lock().unwrap();
            if let Some(previous) = left.last.get(&path).cloned() {
                if before.as_ref() == Some(&previous) {
                    left.expected.remove(&previous);
                }
            }
            left.expected.insert(token.clone());
            left.last.insert(path, token);
        }
        edits += 1;
        std::thread::sleep(std::time::Duration::from_micros(300));
    }
    edits
}

#[test]
#[ignore]
fn edits_racing_imports_are_never_lost() {
    let rounds = env_number("SOAK_ROUNDS", 20);
    let files = env_number("SOAK_FILES", 4500);
    let initial: Vec<(String, String)> = (0..files)
        .map(|i| (format!("d{}/f{i}.txt", i % 20), format!("initial {i}")))
        .collect();
    let refs: Vec<(&str, &str)> = initial
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let fam = family(&["alpha", "beta"], &refs);
    let (a, b) = (fam.root("alpha"), fam.root("beta"));
    let started = std::time::Instant::now();
    let (mut total_edits, mut total_ops) = (0, 0);
    for round in 0..rounds {
        // The sibling changes a third, creates some and deletes some.
        let mut rng = XorShift(round as u64 + 100);
        let mut touched = Vec::new();
        for i in 0..files {
            if rng.below(3) == 0 {
                let rel = format!("d{}/f{i}.txt", i % 20);
                if a.join(&rel).exists() {
                    write(&a, &rel, &format!("alpha round {round} file {i}"));
                    touched.push(rel);
                }
            }
        }
        for i in 0..files / 4 {
            let rel = format!("new{round}/n{i}.txt");
            write(&a, &rel, &format!("alpha new {round} {i}"));
            touched.push(rel);
        }
        for i in (round..files).step_by(97) {
            let _ = std::fs::remove_file(a.join(format!("d{}/f{i}.txt", i % 20)));
        }
        total_ops += touched.len();
        let out = fam.packet_dir(&format!("round{round}"));
        export_to(&a, &out, &["beta"], &[]).ok();

        // The import runs while someone works in the same tree.
        let left: Left = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let editor = {
            let (root, left, stop) = (b.clone(), left.clone(), stop.clone());
            std::thread::spawn(move || edit_until(root, touched, round, left, stop))
        };
        let import = std::process::Command::new(binary_path("syncreplica"))
            .args(["-import".as_ref(), out.as_os_str()])
            .current_dir(&b)
            .output()
            .unwrap();
        stop.store(true, Ordering::SeqCst);
        total_edits += editor.join().unwrap();
        assert!(
            import.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        let present = contents(&b);
        let lost: Vec<String> = left
            .lock()
            .unwrap()
            .expected
            .iter()
            .filter(|content| !present.contains(*content))
            .map(|content| String::from_utf8_lossy(content).into_owned())
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: lost {} edits: {lost:#?}",
            lost.len()
        );

        // Send beta's edits back, so the next round starts from one state.
        let back = fam.packet_dir(&format!("back{round}"));
        export_to(&b, &back, &["alpha"], &[]).ok();
        import_from(&a, &[&back]).ok();
    }
    println!(
        "soak: {rounds} rounds, {total_ops} operations imported, {total_edits} racing edits, none lost, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
