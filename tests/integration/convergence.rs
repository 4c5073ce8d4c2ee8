//! Convergence as a property: random edits at three replicas, packets
//! delivered in random order with duplicates, through the real commands.
//! Every replica that has received the same operations has the same tree.
//!
//! The random test runs twice: with -fullcontent, and without it, where
//! packets rely on what their targets are believed to hold (reused chunks,
//! relative file states, recipes) while renames race deletions and edits
//! race edits; a packet that relies on content gone meanwhile waits and asks the
//! sender for it (a content request) and the exchanges converge with no
//! person involved. A third test has one editor at a time and checks that
//! recipes are used.

use std::path::{Path, PathBuf};

use crate::helpers::*;

/// A small set of names, so replicas often touch the same paths.
const PATHS: &[&str] = &[
    "a.txt",
    "b.txt",
    "d1/a.txt",
    "d1/b.txt",
    "d2/c.txt",
    "d2/sub/x.bin",
    "big1.bin",
    "d1/big2.bin",
];

/// An edit in place of a large-ish file: a few bytes overwritten, some
/// appended, or a block of random bytes written at a random place (made
/// first if absent). Exports then reuse the chunks the target holds and
/// send changed chunks as recipes.
fn edit_in_place(rng: &mut XorShift, path: &Path) {
    use std::os::unix::fs::FileExt;
    if path.is_dir() || std::fs::create_dir_all(path.parent().unwrap()).is_err() {
        return;
    }
    if !path.is_file() {
        let _ = std::fs::write(path, random_bytes(rng.next(), 200_000 + rng.below(400_000)));
        return;
    }
    let Ok(file) = std::fs::File::options().write(true).open(path) else {
        return;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let at = rng.next() % len;
    let bytes = match rng.below(3) {
        0 => random_bytes(rng.next(), 1 + rng.below(16)),
        1 => random_bytes(rng.next(), 4096),
        _ => vec![0u8; 1 + rng.below(70_000)],
    };
    let at = if rng.below(4) == 0 { len } else { at };
    let _ = file.write_all_at(&bytes, at);
}

fn random_edit(rng: &mut XorShift, root: &Path, label: &str) {
    let path = root.join(PATHS[rng.below(PATHS.len())]);
    match rng.below(9) {
        7 | 8 => edit_in_place(rng, &path),
        0..=2 => {
            if std::fs::create_dir_all(path.parent().unwrap()).is_ok() && !path.is_dir() {
                let content = format!("{label} wrote {}\n", rng.next()).repeat(1 + rng.below(50));
                let _ = std::fs::write(&path, content);
            }
        }
        3 => {
            let _ = std::fs::remove_file(&path);
        }
        4 => {
            let to = root.join(PATHS[rng.below(PATHS.len())]);
            if path.is_file()
                && !to.exists()
                && std::fs::create_dir_all(to.parent().unwrap()).is_ok()
            {
                let _ = std::fs::rename(&path, &to);
            }
        }
        5 => {
            use std::os::unix::fs::PermissionsExt;
            if path.is_file() {
                let mode = if rng.below(2) == 0 { 0o755 } else { 0o644 };
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
            }
        }
        _ => {
            let _ = std::fs::create_dir_all(root.join(format!("empty-{}", rng.below(3))));
        }
    }
}

/// An import that may leave a packet waiting for content this replica no
/// longer holds (exit 0): it then asks the sender for it (a content
/// request). Returns whether it did.
fn import_tolerating_refusals(root: &Path, sources: &[&Path]) -> bool {
    let run = import_from(root, sources);
    assert!(
        run.code == 0,
        "import failed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run.stdout.contains("(a content request), and its answer")
}

/// Returns how many imports asked for content (content requests).
fn converge_with_seed(seed: u64, full_content: bool) -> usize {
    let mut asked = 0;
    let flags: &[&str] = if full_content { &["-fullcontent"] } else { &[] };
    let names = ["r0", "r1", "r2"];
    let fam = family(&names, &[("a.txt", "start\n")]);
    // r0's first update tells r1 about r2 (and r2 about nothing new).
    let intro = fam.packet_dir("intro");
    export_to(&fam.root("r0"), &intro, &["r1", "r2"], &[]).ok();
    import_from(&fam.root("r1"), &[&intro]).ok();
    import_from(&fam.root("r2"), &[&intro]).ok();
    let mut rng = XorShift(seed);
    let mut pool: Vec<PathBuf> = Vec::new();
    let mut exports = 0;

    for round in 0..4 {
        for name in names {
            for _ in 0..1 + rng.below(4) {
                random_edit(&mut rng, &fam.root(name), name);
            }
        }
        for name in names {
            let targets: Vec<&str> = names
                .iter()
                .copied()
                .filter(|t| *t != name && rng.below(3) > 0)
                .collect();
            if targets.is_empty() {
                continue;
            }
            exports += 1;
            let out = fam.packet_dir(&format!("{round}-{exports}"));
            export_to(&fam.root(name), &out, &targets, flags).ok();
            pool.push(out);
        }
        // Random deliveries, duplicates and wrong recipients included.
        for _ in 0..pool.len().min(6) {
            let packets = &pool[rng.below(pool.len())];
            let at = names[rng.below(names.len())];
            asked += usize::from(import_tolerating_refusals(&fam.root(at), &[packets]));
        }
    }

    // Everyone exchanges with everyone until nothing is left to send
    // (content requests and their answers take a round each).
    for _ in 0..10 {
        let mut sent_any = false;
        for name in names {
            let others: Vec<&str> = names.iter().copied().filter(|t| *t != name).collect();
            exports += 1;
            let out = fam.packet_dir(&format!("final-{exports}"));
            export_to(&fam.root(name), &out, &others, flags).ok();
            sent_any |= !packet_files(&out).is_empty();
            pool.push(out);
        }
        for name in names {
            let mut order: Vec<&PathBuf> = pool.iter().collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            let sources: Vec<&Path> = order.iter().map(|p| p.as_path()).collect();
            asked += usize::from(import_tolerating_refusals(&fam.root(name), &sources));
        }
        if !sent_any {
            break;
        }
    }
    let first = tree_listing(&fam.root("r0"));
    for name in &names[1..] {
        assert_eq!(
            tree_listing(&fam.root(name)),
            first,
            "seed {seed}: {name} differs from r0"
        );
    }
    asked
}

/// One replica at a time edits (so no version the target holds is ever
/// changed under it), the others receive its packets in random order with
/// duplicates, then everyone exchanges with everyone without
/// -fullcontent: chunks the targets hold are reused, file states travel
/// relative to the targets' versions, changed chunks as recipes, through
/// relays too. Every round ends with the same tree everywhere.
fn converge_reusing_content_with_seed(seed: u64) {
    let names = ["r0", "r1", "r2"];
    let fam = family(&names, &[("a.txt", "start\n")]);
    let intro = fam.packet_dir("intro");
    export_to(&fam.root("r0"), &intro, &["r1", "r2"], &[]).ok();
    import_from(&fam.root("r1"), &[&intro]).ok();
    import_from(&fam.root("r2"), &[&intro]).ok();
    let mut rng = XorShift(seed);
    let mut exports = 0;
    let mut recipes = false;
    for round in 0..5 {
        let editor = names[rng.below(names.len())];
        for _ in 0..2 + rng.below(5) {
            random_edit(&mut rng, &fam.root(editor), editor);
        }
        // At least one large file edited in place every round.
        let big = ["big1.bin", "d1/big2.bin"][rng.below(2)];
        edit_in_place(&mut rng, &fam.root(editor).join(big));
        // The editor to one or both others, delivered in random order,
        // duplicates included; then everyone to everyone until quiet.
        let mut pool: Vec<PathBuf> = Vec::new();
        for pass in 0..6 {
            let mut sent_any = false;
            for name in names {
                if pass == 0 && name != editor {
                    continue;
                }
                let targets: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|t| *t != name && (pass > 0 || rng.below(3) > 0))
                    .collect();
                if targets.is_empty() {
                    continue;
                }
                exports += 1;
                let out = fam.packet_dir(&format!("reuse-{round}-{exports}"));
                let run = export_to(&fam.root(name), &out, &targets, &[]).ok();
                recipes |= run.stdout.contains("as changes to chunks it has");
                sent_any |= !packet_files(&out).is_empty();
                pool.push(out);
            }
            for name in names {
                let mut order: Vec<&PathBuf> = pool.iter().collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                let Some(again) = order.first().copied() else {
                    continue;
                };
                order.push(again);
                let sources: Vec<&Path> = order.iter().map(|p| p.as_path()).collect();
                import_from(&fam.root(name), &sources).ok();
            }
            if pass > 0 && !sent_any {
                break;
            }
        }
        let first = tree_listing(&fam.root("r0"));
        for name in &names[1..] {
            assert_eq!(
                tree_listing(&fam.root(name)),
                first,
                "seed {seed}, round {round}: {name} differs from r0"
            );
        }
    }
    assert!(recipes, "seed {seed}: no chunk travelled as a recipe");
}

#[test]
fn one_editor_at_a_time_converges_reusing_content() {
    for seed in [0x5eed_0001, 99, 123_456_789] {
        converge_reusing_content_with_seed(seed);
    }
}

#[test]
fn random_edits_and_random_delivery_converge() {
    for seed in [0x9e37_79b9_7f4a_7c15, 42, 7_777_777] {
        converge_with_seed(seed, true);
    }
}

/// The same without -fullcontent: packets rely on what their targets are
/// believed to hold, renames race deletions and edits race edits, and
/// every import refused for content gone meanwhile is repaired by a
/// content request, with no person involved.
#[test]
fn random_edits_converge_relying_on_content_requests() {
    let mut asked = 0;
    for seed in [0x9e37_79b9_7f4a_7c15, 42, 7_777_777] {
        asked += converge_with_seed(seed, false);
    }
    eprintln!("{asked} imports asked for content");
    assert!(asked > 0, "no import had to ask for content");
}
