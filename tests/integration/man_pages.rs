//! The committed man pages must match the clap definitions.
//! Regenerate with: SYNCREPLICA_UPDATE_MAN=1 cargo test --test integration man_pages

use std::path::Path;

use clap::Command;
use syncreplica::cli;

/// Renders the man page (roff) of one command.
fn render_man_page(command: Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .expect("rendering into memory cannot fail");
    out
}

/// Names of the commands whose page in `man_dir` is missing or differs from
/// what their clap definition renders now.
fn stale_man_pages(man_dir: &Path) -> Vec<String> {
    cli::all_commands()
        .into_iter()
        .filter_map(|command| {
            let name = command.get_name().to_string();
            let expected = render_man_page(command);
            let committed = std::fs::read(man_dir.join(format!("{name}.1"))).ok();
            (committed.as_deref() != Some(&expected[..])).then_some(name)
        })
        .collect()
}

/// Writes every command's man page into `man_dir`.
fn write_man_pages(man_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(man_dir)?;
    for command in cli::all_commands() {
        let path = man_dir.join(format!("{}.1", command.get_name()));
        std::fs::write(path, render_man_page(command))?;
    }
    Ok(())
}

#[test]
fn committed_man_pages_are_current() {
    let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    if std::env::var_os("SYNCREPLICA_UPDATE_MAN").is_some() {
        write_man_pages(&man_dir).unwrap();
    }
    let stale = stale_man_pages(&man_dir);
    assert!(
        stale.is_empty(),
        "man pages out of date for {stale:?}; regenerate with \
         SYNCREPLICA_UPDATE_MAN=1 cargo test --test integration man_pages and commit man/"
    );
}

#[test]
fn a_changed_or_missing_page_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    write_man_pages(dir.path()).unwrap();
    assert!(stale_man_pages(dir.path()).is_empty());

    let page = dir.path().join("lsepoch.1");
    let mut text = std::fs::read_to_string(&page).unwrap();
    text = text.replace("epoch", "epoc");
    std::fs::write(&page, text).unwrap();
    std::fs::remove_file(dir.path().join("chepoch.1")).unwrap();
    let mut stale = stale_man_pages(dir.path());
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
        "lspacket",
        "mkorder",
        "shipping_server",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} has no clap definition"
        );
    }
}
