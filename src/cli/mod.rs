//! The command-line layer: the only code that prints, exits, or uses clap,
//! indicatif and anyhow. One module per command holds its clap definition
//! and its `run` function; [`render`] formats listings; [`report`] turns
//! errors into messages, hints and exit codes.
//!
//! Every command accepts MultiSite's single-dash long options (`-maxsize 50m`)
//! as well as the GNU form (`--maxsize 50m`): [`normalize_args`] rewrites the
//! former into the latter before clap sees them.

/// `print!` that never panics: a closed or failing standard output does
/// not stop the command halfway (see [`report::print`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::report::print(format_args!($($arg)*))
    };
}

/// `println!` that never panics (see [`out!`]).
macro_rules! outln {
    () => {
        $crate::cli::report::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {{
        $crate::cli::report::print(format_args!($($arg)*));
        $crate::cli::report::print(format_args!("\n"));
    }};
}

/// `eprintln!` for one line of a message (a warning, a note): its control
/// characters, newlines included, are escaped (see [`report::print_err`]).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::report::print_err(format_args!($($arg)*))
    };
}

mod args;
pub use args::multisite_spelling;
pub mod chepoch;
pub mod chreplica;
pub mod lsepoch;
pub mod lspacket;
pub mod lsreplica;
pub mod manual;
pub mod mkorder;
pub mod mkreplica;
pub mod render;
pub mod report;
pub mod rmreplica;
pub mod shipping_server;
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
    #[arg(long, value_name = "WHEN", value_parser = expiry_arg)]
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
Options are written with one dash, as in MultiSite (-replica DIR); two dashes work as well.

Exit status:
  0  success
  1  the command failed; the message names the file or value and nothing was half-changed
  2  the command line was wrong
  3  another process holds the replica's lock
  130, 143  an export was interrupted by SIGINT (Ctrl-C) or SIGTERM: the packet being written was removed and is not recorded as sent; targets reported as exported before it stay exported (a second signal ends it at once)";

pub use args::{normalize_args, parse_args};

/// Output formats of the listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// MultiSite's text listing.
    Text,
    /// JSON, for scripts.
    Json,
}

/// clap's parser for `-maxsize`: a size (see [`parse_size`]) of at least
/// the smallest packet that can carry anything, so a bad value is a usage
/// error (exit 2) that echoes what was typed.
pub fn max_size_arg(value: &str) -> Result<u64, String> {
    let why = |err: crate::Error| match err {
        crate::Error::BadSize { why, .. } => why,
        other => other.to_string(),
    };
    let size = parse_size(value).map_err(why)?;
    crate::sync::export::check_max_size(size).map_err(why)?;
    Ok(size)
}

/// clap's check of `-pexpire`: one of the accepted forms, in the future.
pub fn expiry_arg(value: &str) -> Result<String, String> {
    match crate::ship::parse_expiry(value, chrono::Utc::now()) {
        Ok(_) => Ok(value.to_string()),
        Err(crate::Error::BadExpiry { why, .. }) => Err(why),
        Err(other) => Err(other.to_string()),
    }
}

/// clap's check of an `ORIGIN=EPOCH` setting (chepoch): its shape only;
/// the origin is looked up in the replica later.
pub fn epoch_setting_arg(value: &str) -> Result<String, String> {
    let (origin, epoch) = value
        .split_once('=')
        .ok_or("expected ORIGIN=EPOCH, e.g. boston=1300")?;
    if origin.trim().is_empty() {
        return Err("the ORIGIN before '=' is empty".into());
    }
    epoch
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("\"{epoch}\" is not a whole number"))?;
    Ok(value.to_string())
}

/// clap's check of `-fingerprint`: 64 hexadecimal digits.
pub fn fingerprint_arg(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(trimmed.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected 64 hexadecimal digits (the SHA-256 fingerprint mkreplica -export prints), got {} characters",
            trimmed.len()
        ))
    }
}

/// Parses a size such as `65536`, `64k`, `50m` or `2g` (binary multiples).
pub fn parse_size(value: &str) -> crate::Result<u64> {
    shipping::size::parse_size(value).map_err(|why| crate::Error::BadSize {
        value: value.to_string(),
        why: why.to_string(),
    })
}

/// A command's whole life: parses the process arguments into `A` (a bad
/// command line prints `COMMAND: error: …` and exits 2), runs `body`, and
/// turns its outcome into an exit code with [`report::report`].
pub fn main<A: clap::Parser>(
    name: &str,
    body: impl FnOnce(A) -> anyhow::Result<()>,
) -> std::process::ExitCode {
    let args: A = parse_args();
    let outcome = body(args);
    report::report(name, outcome)
}

/// Every command's clap definition, for the man pages and completions
/// (rendered and checked for staleness by `tests/integration/man_pages.rs`
/// with [`manual`], so the renderers are not part of the programs).
pub fn all_commands() -> Vec<Command> {
    vec![
        syncreplica::Args::command(),
        mkreplica::Args::command(),
        lspacket::Args::command(),
        lsreplica::Args::command(),
        lsepoch::Args::command(),
        chepoch::Args::command(),
        rmreplica::Args::command(),
        chreplica::Args::command(),
        mkorder::Args::command(),
        shipping_server::Args::command(),
    ]
}

/// `count` with the noun that fits it: "1 file", "2 files", "0 files".
pub fn counted(count: u64, one: &str, many: &str) -> String {
    match count {
        1 => format!("1 {one}"),
        _ => format!("{count} {many}"),
    }
}

/// A run of epochs as a sentence says it: "epoch 7" or "epochs 7-9".
pub fn epochs(first: u64, last: u64) -> String {
    match first == last {
        true => format!("epoch {first}"),
        false => format!("epochs {first}-{last}"),
    }
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

/// Warns that the file at `path` changed since the scan recorded it (a busy
/// file) and was left for a later export; `what_follows` says what
/// became of it.
pub fn warn_busy_file(name: &str, path: &std::path::Path, what_follows: &str) {
    errln!(
        "{name}: warning: {}: changed since the scan recorded it (still being written?); {what_follows}",
        path.display()
    );
}

/// What a mirror undid instead of recording (`sync::mirror`), one line each.
pub fn print_mirror(summary: &crate::replica::RecordSummary) {
    if let Some(undone) = &summary.mirror {
        for note in crate::sync::mirror::notes(undone) {
            outln!("{note}");
        }
    }
}

/// How many missing paths a warning names (`-status` lists them all).
const MISSING_SHOWN: usize = 10;

/// Warns about paths the family holds that this replica lacks since its
/// exclude rules changed (`sync::record`), and says how to get them back.
pub fn warn_missing(name: &str, replica: &str, missing: &[Vec<u8>]) {
    if missing.is_empty() {
        return;
    }
    let shown: Vec<String> = missing
        .iter()
        .take(MISSING_SHOWN)
        .map(|p| crate::tree::relpath::display(p))
        .collect();
    let more = missing.len() - shown.len();
    let more_text = if more > 0 {
        format!(" and {more} more (syncreplica -status lists them all)")
    } else {
        String::new()
    };
    errln!(
        "{name}: warning: {} path{} the family holds {} missing here (not on disk, not recorded, now included): {}{more_text}; an exclude lifted since does not bring back what was deleted here or made elsewhere while it was in force, and nothing was recorded as deleted",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        if missing.len() == 1 { "is" } else { "are" },
        shown.join(", "),
    );
    let resend: Vec<String> = shown.iter().map(|p| format!("-resend '{p}'")).collect();
    errln!(
        "{name}: hint: at a sibling that has {}, run: syncreplica -export {} -out DIR {replica} (or -record with the same -resend, then export as usual), and import its packet here; or exclude {} again",
        if missing.len() == 1 { "it" } else { "them" },
        resend.join(" "),
        if missing.len() == 1 { "it" } else { "them" },
    );
}

/// Prints scan warnings as `COMMAND: warning: PATH: WHAT`.
pub fn print_warnings(name: &str, warnings: &[crate::tree::scan::ScanWarning]) {
    for warning in warnings {
        errln!("{name}: warning: {warning}");
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

impl crate::sync::Progress for indicatif::ProgressBar {
    fn start(&self, what: &str, total: u64) {
        self.set_length(total);
        self.set_position(0);
        self.set_message(what.to_string());
    }

    fn advance(&self, done: u64) {
        self.inc(done);
    }
}

/// Installs SIGINT and SIGTERM handlers for a long command (an export):
/// the first signal sets the returned flag, which the library checks
/// between operations and chunks and answers by cleaning up and returning
/// [`crate::Error::Interrupted`] (exit 128 + the signal); a second one
/// ends the process at once with that status.
pub fn stop_on_signals() -> anyhow::Result<crate::sync::StopFlag> {
    use anyhow::Context;
    use std::sync::{atomic::AtomicBool, Arc};
    let stop = crate::sync::StopFlag::new();
    let seen = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // In this order: the shutdown sees the flag only from the second
        // signal on.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&seen))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&seen)))
            .and_then(|_| {
                signal_hook::flag::register_usize(signal, Arc::clone(stop.cell()), signal as usize)
            })
            .context("cannot install the signal handlers")?;
    }
    Ok(stop)
}

/// Removes the temporary part files that exports killed on this host left
/// in `dirs` (and any untouched for a day), and says so.
pub fn remove_abandoned_partials(dirs: &[&std::path::Path]) {
    let mut seen = Vec::new();
    for dir in dirs {
        if seen.contains(dir) {
            continue;
        }
        seen.push(*dir);
        for path in crate::sync::export::remove_abandoned_partials(dir) {
            outln!(
                "Removed {}, left unfinished by an interrupted export.",
                path.display()
            );
        }
    }
}

/// Finishes an import a crash or a kill interrupted, before the command
/// does its own work, and says what that did.
pub fn finish_interrupted(
    name: &str,
    replica: &mut crate::replica::LockedReplica,
) -> anyhow::Result<()> {
    if let Some(done) = crate::sync::apply::recover_reporting(replica)? {
        errln!("{name}: note: finished an import that was interrupted");
        for note in done.notes {
            errln!("{name}: note: {note}");
        }
        report_failed(name, &done.failed);
        let paths: Vec<Vec<u8>> = done.failed.into_iter().map(|f| f.path).collect();
        hint_failed(name, &replica.identity.replica_name, &paths);
    }
    Ok(())
}

/// Says which disk steps of an import failed for good (`sync::apply`,
/// rule 9), one error line each.
pub fn report_failed(name: &str, failed: &[crate::store::state::FailedStep]) {
    for step in failed {
        errln!(
            "{name}: error: not applied here: {}",
            crate::cli::render::status::describe_failed(step)
        );
    }
}

/// How to bring the paths of failed steps once their cause is fixed.
pub fn hint_failed(name: &str, replica: &str, paths: &[Vec<u8>]) {
    if paths.is_empty() {
        return;
    }
    let resend: Vec<String> = paths
        .iter()
        .take(MISSING_SHOWN)
        .map(|p| format!("-resend '{}'", crate::tree::relpath::display_short(p, 120)))
        .collect();
    errln!(
        "{name}: hint: the entries keep what the tree holds and the other replicas keep the new versions; once the cause is fixed, run at a sibling: syncreplica -export {} -out DIR {replica}, and import its packet here (syncreplica -status lists {} until then)",
        resend.join(" "),
        if paths.len() == 1 { "it" } else { "them" },
    );
}

/// Tells the user when a lock left by a dead process was taken over.
pub fn print_lock_takeover(name: &str, replica: &crate::replica::LockedReplica) {
    let Some(lock) = replica.held_lock() else {
        return;
    };
    if let Some(pid) = lock.took_over_from {
        errln!(
            "{name}: note: took over the lock {} left by process {pid}, which is no longer running",
            lock.path().display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_epoch_runs_read_as_sentences() {
        assert_eq!(counted(1, "file", "files"), "1 file");
        assert_eq!(counted(0, "file", "files"), "0 files");
        assert_eq!(counted(2, "entry", "entries"), "2 entries");
        assert_eq!(epochs(51, 51), "epoch 51");
        assert_eq!(epochs(1, 3), "epochs 1-3");
    }

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
