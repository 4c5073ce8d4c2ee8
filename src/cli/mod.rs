//! Command-line definitions shared by the binaries and the man pages.
//!
//! Every command accepts MultiSite's single-dash long options (`-maxsize 50m`)
//! as well as the GNU form (`--maxsize 50m`): [`normalize_args`] rewrites the
//! former into the latter before clap sees them.

pub mod chepoch;
pub mod lsepoch;
pub mod lspacket;
pub mod lsreplica;
pub mod mkorder;
pub mod mkreplica;
pub mod syncreplica;

use std::io::Write;

use clap::{Command, CommandFactory};

/// Options of the commands that put packets into storage bays
/// (`syncreplica -export -ship`/`-fship`, `-import -receive`, `mkorder`).
#[derive(Debug, clap::Args)]
pub struct BayOptions {
    /// When packets put into a storage bay expire if undelivered: days
    /// (7 or 7d), hours (12h), seconds (90s), a date (2026-12-01) or an
    /// RFC 3339 time (default: the storage class's expiry_days, 14).
    #[arg(long, value_name = "WHEN")]
    pub pexpire: Option<String>,

    /// The shipping configuration to use, instead of looking in
    /// $SYNCREPLICA_SHIPPING_CONF, the user's config directory and
    /// /etc/syncreplica/shipping.toml.
    #[arg(long, value_name = "FILE")]
    pub shipconf: Option<std::path::PathBuf>,
}

/// Success.
pub const EXIT_SUCCESS: i32 = 0;
/// The command failed; the message says why. Nothing was half-changed.
pub const EXIT_FAILURE: i32 = 1;
/// The command line was wrong.
pub const EXIT_USAGE: i32 = 2;
/// Another process holds the replica's lock.
pub const EXIT_LOCKED: i32 = 3;

/// Appended to every command's help and man page.
pub const EXIT_STATUS_HELP: &str = "\
Options may be written with one dash, as in MultiSite (-replica DIR), or two (--replica DIR).

Exit status:
  0  success
  1  the command failed; the message names the file or value and nothing was half-changed
  2  the command line was wrong
  3  another process holds the replica's lock";

/// Rewrites MultiSite's single-dash long options into clap's form; shared
/// with `shipping_server`, whose crate this CLI depends on.
pub use shipping::cli::normalize_args;

/// Parses a size such as `65536`, `64k`, `50m` or `2g` (binary multiples).
pub fn parse_size(value: &str) -> crate::Result<u64> {
    shipping::size::parse_size(value).map_err(|why| crate::Error::BadSize {
        value: value.to_string(),
        why: why.to_string(),
    })
}

/// Parses the process arguments into `T`, accepting single-dash long
/// options; a bad command line prints `COMMAND: error: …` and exits 2
/// ([`EXIT_USAGE`]). Shared with `shipping_server`.
pub use shipping::cli::parse_args;

/// Runs a command's body and turns its error into `COMMAND: error: …`,
/// an optional `hint:` line and the documented exit code.
pub fn run(name: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ! {
    match body() {
        Ok(()) => std::process::exit(EXIT_SUCCESS),
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            // `{:#}` is the message with its causes, joined by ": ".
            let _ = writeln!(stderr, "{name}: error: {err:#}");
            let library = err.chain().find_map(|e| e.downcast_ref::<crate::Error>());
            if let Some(hint) = library.and_then(|e| e.hint()) {
                let _ = writeln!(stderr, "{name}: hint: {hint}");
            }
            std::process::exit(library.map_or(EXIT_FAILURE, |e| e.exit_code()));
        }
    }
}

/// Every command's clap definition, for man pages and their staleness test.
pub fn all_commands() -> Vec<Command> {
    vec![
        syncreplica::Args::command(),
        mkreplica::Args::command(),
        lspacket::Args::command(),
        lsreplica::Args::command(),
        lsepoch::Args::command(),
        chepoch::Args::command(),
        mkorder::Args::command(),
        shipping::cli::Args::command(),
    ]
}

/// Renders the man page (roff) of one command.
pub fn render_man_page(command: Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .expect("rendering into memory cannot fail");
    out
}

/// Asks a yes/no question on the terminal; anything but "y"/"yes" is no,
/// and so is end of input (a script without -force never changes anything).
pub fn confirm(question: &str) -> std::io::Result<bool> {
    let mut stdout = std::io::stdout();
    write!(stdout, "{question} [no] ")?;
    stdout.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    let answer = answer.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// Prints scan warnings as `COMMAND: warning: PATH: WHAT`.
pub fn print_warnings(name: &str, warnings: &[crate::scan::ScanWarning]) {
    for warning in warnings {
        eprintln!("{name}: warning: {warning}");
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise (so
/// scripts and logs get only the summary lines).
pub fn progress_bar() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Tells the user when a lock left by a dead process was taken over.
pub fn print_lock_takeover(name: &str, lock: &crate::lock::ReplicaLock) {
    if let Some(pid) = lock.took_over_from {
        eprintln!(
            "{name}: note: took over the lock {} left by process {pid}, which is no longer running",
            lock.path().display()
        );
    }
}

/// Names of the commands whose page in `man_dir` is missing or differs from
/// what their clap definition renders now.
pub fn stale_man_pages(man_dir: &std::path::Path) -> Vec<String> {
    all_commands()
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
pub fn write_man_pages(man_dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(man_dir)?;
    for command in all_commands() {
        let path = man_dir.join(format!("{}.1", command.get_name()));
        std::fs::write(path, render_man_page(command))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_size_is_a_typed_error_naming_it() {
        // The suffixes themselves are tested in shipping::size.
        assert_eq!(parse_size("50m").unwrap(), 50 << 20);
        match parse_size("5x") {
            Err(crate::Error::BadSize { value, .. }) => assert_eq!(value, "5x"),
            other => panic!("{other:?}"),
        }
    }
}
