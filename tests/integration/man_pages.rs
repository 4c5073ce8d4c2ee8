//! The committed man pages and shell completion scripts must match the
//! clap definitions. Regenerate with:
//! SYNCREPLICA_UPDATE_MAN=1 cargo test --test integration man_pages

use std::path::Path;

use clap::Command;
use clap_complete::Shell;
use syncreplica::cli;

/// Renders the man page (roff) of one command.
fn render_man_page(command: Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .expect("rendering into memory cannot fail");
    out
}

/// The completion script of one command for `shell`, offering the options
/// as the documentation spells them (`-replica`; `--replica` still works
/// when typed): clap knows only the two-dash form, so bash's and zsh's
/// scripts are respelled like clap's help text, and fish's long options
/// (`-l NAME`, completed as `--NAME`) become old-style ones (`-o NAME`,
/// completed as `-NAME`).
fn render_completion(shell: Shell, mut command: Command) -> Vec<u8> {
    let name = command.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, &name, &mut out);
    let text = String::from_utf8(out).expect("clap_complete writes UTF-8");
    let text = match shell {
        Shell::Fish => {
            let lines: Vec<String> = text
                .lines()
                .map(|line| match line.starts_with("complete -c ") {
                    true => line.replace(" -l ", " -o "),
                    false => line.to_string(),
                })
                .collect();
            cli::multisite_spelling(&(lines.join("\n") + "\n"))
        }
        _ => cli::multisite_spelling(&text),
    };
    text.into_bytes()
}

/// Where an installation puts each shell's completion script, below
/// `completions/` in the source tree and below PREFIX/share when
/// installed (the directories bash-completion, zsh and fish search).
fn completion_file(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Bash => format!("bash/{name}"),
        Shell::Zsh => format!("zsh/_{name}"),
        Shell::Fish => format!("fish/{name}.fish"),
        _ => unreachable!("only bash, zsh and fish scripts are shipped"),
    }
}

/// Every generated file, as its path below the source tree and its
/// content: `man/NAME.1` and `completions/{bash,zsh,fish}/…`.
fn generated_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for command in cli::all_commands() {
        let name = command.get_name().to_string();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            files.push((
                format!("completions/{}", completion_file(shell, &name)),
                render_completion(shell, command.clone()),
            ));
        }
        files.push((format!("man/{name}.1"), render_man_page(command)));
    }
    files
}

/// The generated files missing below `root` or differing from what the
/// clap definitions render now.
fn stale_files(root: &Path) -> Vec<String> {
    generated_files()
        .into_iter()
        .filter_map(|(path, expected)| {
            let committed = std::fs::read(root.join(&path)).ok();
            (committed.as_deref() != Some(&expected[..])).then_some(path)
        })
        .collect()
}

/// Writes every generated file below `root`.
fn write_generated(root: &Path) -> std::io::Result<()> {
    for (path, content) in generated_files() {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a file below root"))?;
        std::fs::write(path, content)?;
    }
    Ok(())
}

#[test]
fn committed_man_pages_and_completions_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("SYNCREPLICA_UPDATE_MAN").is_some() {
        write_generated(root).unwrap();
    }
    let stale = stale_files(root);
    assert!(
        stale.is_empty(),
        "generated files out of date: {stale:?}; regenerate with \
         SYNCREPLICA_UPDATE_MAN=1 cargo test --test integration man_pages and commit man/ and completions/"
    );
}

#[test]
fn a_changed_or_missing_page_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    write_generated(dir.path()).unwrap();
    assert!(stale_files(dir.path()).is_empty());

    let page = dir.path().join("man/lsepoch.1");
    let mut text = std::fs::read_to_string(&page).unwrap();
    text = text.replace("epoch", "epoc");
    std::fs::write(&page, text).unwrap();
    std::fs::remove_file(dir.path().join("man/chepoch.1")).unwrap();
    std::fs::remove_file(dir.path().join("completions/fish/mkorder.fish")).unwrap();
    let mut stale = stale_files(dir.path());
    stale.sort();
    assert_eq!(
        stale,
        [
            "completions/fish/mkorder.fish",
            "man/chepoch.1",
            "man/lsepoch.1"
        ]
    );
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
        "rmreplica",
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

/// Whether `tool` can be run here. Outside CI a missing tool skips the
/// checks that need it, saying so; in CI (`CI` set, where `.ci/run`
/// installs every tool) it fails the test.
fn have_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing; .ci/run installs it"
        );
        eprintln!("note: {tool} is not installed here; its checks are skipped");
    }
    found
}

#[test]
fn install_puts_commands_pages_and_completions_below_a_prefix() {
    let prefix = tempfile::tempdir().unwrap();
    let binaries = crate::helpers::binary_path("syncreplica");
    let binaries = binaries.parent().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let out = std::process::Command::new(&script)
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--binaries")
        .arg(binaries)
        .env_remove("DESTDIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let share = prefix.path().join("share");
    for command in cli::all_commands() {
        let name = command.get_name().to_string();
        let installed = prefix.path().join("bin").join(&name);
        let version = std::process::Command::new(&installed)
            .arg("-version")
            .output()
            .unwrap();
        assert!(
            version.status.success() && String::from_utf8_lossy(&version.stdout).contains(&name),
            "{version:?}"
        );
        let page = share.join(format!("man/man1/{name}.1"));
        if have_tool("man") {
            let shown = std::process::Command::new("man")
                .arg("-l")
                .arg(&page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&shown.stdout);
            assert!(
                shown.status.success() && text.contains("NAME") && text.contains(&name),
                "man -l {}: {shown:?}",
                page.display()
            );
        }
        let scripts = [
            (
                "bash",
                share.join(format!("bash-completion/completions/{name}")),
            ),
            ("zsh", share.join(format!("zsh/site-functions/_{name}"))),
            (
                "fish",
                share.join(format!("fish/vendor_completions.d/{name}.fish")),
            ),
        ];
        for (shell, script) in scripts {
            assert!(script.is_file(), "{} not installed", script.display());
            if have_tool(shell) {
                let checked = std::process::Command::new(shell)
                    .arg("-n")
                    .arg(&script)
                    .output()
                    .unwrap();
                assert!(
                    checked.status.success(),
                    "{shell} -n {}: {checked:?}",
                    script.display()
                );
            }
        }
    }
    // The completions offer the options as documented, with one dash.
    if have_tool("bash") {
        let script = share.join("bash-completion/completions/syncreplica");
        let offered = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}'; COMP_WORDS=(syncreplica -exp); COMP_CWORD=1; \
                 _syncreplica syncreplica -exp syncreplica; echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&offered.stdout).trim(), "-export");
    }
}

#[test]
fn install_refuses_a_binaries_folder_without_the_commands_and_installs_nothing() {
    let prefix = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let out = std::process::Command::new(&script)
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--binaries")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found or not executable"));
    assert_eq!(std::fs::read_dir(prefix.path()).unwrap().count(), 0);
}

#[test]
fn the_systemd_unit_verifies_and_its_command_line_parses() {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    let unit = std::fs::read_to_string(contrib.join("shipping_server.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart line");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/shipping_server"));
    let args: Vec<&str> = words.collect();
    // The unit's options parse: with no configuration the server stops at
    // loading it (exit 1), not at the command line (exit 2).
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let started = std::process::Command::new(crate::helpers::shipping_server_binary())
        .args(&args)
        .env("SYNCREPLICA_SHIPPING_CONF", &missing)
        .output()
        .unwrap();
    assert_eq!(started.status.code(), Some(1), "{started:?}");
    assert!(
        String::from_utf8_lossy(&started.stderr).contains("shipping configuration not found"),
        "{started:?}"
    );
    if !have_tool("systemd-analyze") {
        return;
    }
    // systemd-analyze checks the executable exists and the man page named
    // in Documentation= can be shown.
    let man = dir.path().join("man/man1");
    std::fs::create_dir_all(&man).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("man/shipping_server.1"),
        man.join("shipping_server.1"),
    )
    .unwrap();
    let binary = crate::helpers::shipping_server_binary();
    let local = dir.path().join("shipping_server.service");
    std::fs::write(
        &local,
        unit.replace("/usr/local/bin/shipping_server", binary.to_str().unwrap()),
    )
    .unwrap();
    let verified = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    assert!(verified.stderr.is_empty(), "{verified:?}");
    // The account and the bays' folder are made as the unit expects.
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let users = std::process::Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(contrib.join("syncreplica.sysusers"))
        .output()
        .unwrap();
    assert!(users.status.success(), "{users:?}");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("syncreplica:"), "{passwd}");
    let folders = std::process::Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .arg("--create")
        .arg(contrib.join("syncreplica.tmpfiles"))
        .output()
        .unwrap();
    assert!(folders.status.success(), "{folders:?}");
    assert!(unit.contains("ReadWritePaths=/var/spool/syncreplica"));
    assert!(root.join("var/spool/syncreplica").is_dir());
}
