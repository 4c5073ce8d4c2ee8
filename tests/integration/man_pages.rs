//! The committed man pages must match the clap definitions.
//! Regenerate with: SYNCREPLICA_UPDATE_MAN=1 cargo test --test integration man_pages

use std::path::Path;

use syncreplica::cli;

#[test]
fn committed_man_pages_are_current() {
    let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    if std::env::var_os("SYNCREPLICA_UPDATE_MAN").is_some() {
        cli::write_man_pages(&man_dir).unwrap();
    }
    let stale = cli::stale_man_pages(&man_dir);
    assert!(
        stale.is_empty(),
        "man pages out of date for {stale:?}; regenerate with \
         SYNCREPLICA_UPDATE_MAN=1 cargo test --test integration man_pages and commit man/"
    );
}

#[test]
fn a_changed_or_missing_page_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    cli::write_man_pages(dir.path()).unwrap();
    assert!(cli::stale_man_pages(dir.path()).is_empty());

    let page = dir.path().join("lsepoch.1");
    let mut text = std::fs::read_to_string(&page).unwrap();
    text = text.replace("epoch", "epoc");
    std::fs::write(&page, text).unwrap();
    std::fs::remove_file(dir.path().join("chepoch.1")).unwrap();
    let mut stale = cli::stale_man_pages(dir.path());
    stale.sort();
    assert_eq!(stale, ["chepoch", "lsepoch"]);
}

#[test]
fn every_binary_has_a_page() {
    let names: Vec<String> = cli::all_commands()
        .iter()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in [
        "syncreplica",
        "mkreplica",
        "lsreplica",
        "lsepoch",
        "chepoch",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} has no clap definition"
        );
    }
}
