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
mod passphrase;
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
  2  the command line was wrong: an option, a combination, or a value that names nothing
     there is (a member, a file to read, a replica) or may not be named there (packets or
     an -out folder inside the replica, a replica inside another); or a question with no
     terminal to ask it on (no -force, -passphrase-file or -key); or a change, run as root,
     of a member a user that is not root made, whose config.toml does not set preserve
  3  another process holds the replica's lock
  130, 143  an export was interrupted by SIGINT (Ctrl-C) or SIGTERM: the packet being written
     was removed and is not recorded as sent; targets reported as exported before it stay
     exported (a second signal ends it at once)";

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

/// The modes of `command` whose options differ (the mode flag, and the
/// ids of the options and operands that apply with it), for completions.
fn completion_modes(command: &str) -> &'static [(&'static str, &'static [&'static str])] {
    match command {
        "syncreplica" => &[
            ("status", &["fmt", "replica"]),
            ("record", &["resendpath", "quiet", "replica"]),
            ("scrub", &["quiet", "replica"]),
            (
                "export",
                &[
                    "out",
                    "ship",
                    "fship",
                    "pexpire",
                    "shipconf",
                    "sclass",
                    "maxsize",
                    "fullcontent",
                    "comment",
                    "ncomment",
                    "workdir",
                    "resendpath",
                    "resend",
                    "ack",
                    "fmt",
                    "quiet",
                    "replica",
                    "targets",
                ],
            ),
            (
                "import",
                &[
                    "receive", "remove", "sclass", "shipconf", "fmt", "quiet", "replica", "targets",
                ],
            ),
            ("verify", &["replica", "targets"]),
        ],
        "mkreplica" => &[
            ("init", &["family", "quiet", "replica", "names"]),
            (
                "export",
                &[
                    "out", "maxsize", "comment", "ncomment", "quiet", "replica", "names",
                ],
            ),
            (
                "import",
                &["fingerprint", "key", "fmt", "quiet", "replica", "names"],
            ),
            ("restore", &["quiet", "replica", "names"]),
            ("rekey", &["fmt", "quiet", "replica"]),
        ],
        _ => &[],
    }
}

/// Whether `arg` is offered with `mode` in completions: when the table
/// ([`completion_modes`]) lists it there, or when its help says so ("With
/// -export or -import: …"), or when neither names any mode for it (a new
/// option is then offered everywhere rather than missed). Mode flags and
/// help/version are never offered inside a mode.
fn applies_in(
    arg: &clap::Arg,
    mode: &str,
    ids: &[&str],
    modes: &[(&'static str, &'static [&'static str])],
) -> bool {
    let id = arg.get_id().as_str();
    if modes.iter().any(|(m, _)| *m == id) || ["help", "version"].contains(&id) {
        return false;
    }
    if ids.contains(&id) {
        return true;
    }
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let said: Vec<&str> = help
        .strip_prefix("With ")
        .and_then(|rest| rest.split_once(':'))
        .map(|(names, _)| {
            names
                .split([' ', ','])
                .filter_map(|word| word.strip_prefix('-'))
                .filter(|word| modes.iter().any(|(m, _)| m == word))
                .collect()
        })
        .unwrap_or_default();
    let listed = modes.iter().any(|(_, ids)| ids.contains(&id));
    said.contains(&mode) || (said.is_empty() && !listed)
}

/// The command as shell completions see it: for a command with modes
/// (`syncreplica -export`, `mkreplica -import`), each mode is a
/// subcommand named as typed (`-export`) that offers only its own
/// options, so `syncreplica -export <TAB>` offers export options and not
/// import ones. clap_complete knows only subcommands, not option groups:
/// this shape exists for the generators only, never for parsing.
pub fn completion_command(command: Command) -> Command {
    let modes = completion_modes(command.get_name());
    if modes.is_empty() {
        return command;
    }
    // clap takes names as `&'static str` (without its "string" feature):
    // the few a generator run needs are leaked, once per script written.
    fn leak(text: &str) -> &'static str {
        Box::leak(text.to_string().into_boxed_str())
    }
    // A copy of an argument without its relations to others (which name
    // arguments and groups a mode's subcommand does not have).
    let copy = |arg: &clap::Arg| -> clap::Arg {
        let mut new = clap::Arg::new(arg.get_id().clone())
            .action(arg.get_action().clone())
            .value_parser(arg.get_value_parser().clone())
            .value_hint(arg.get_value_hint());
        if let Some(long) = arg.get_long() {
            new = new.long(leak(long));
        }
        if let Some(short) = arg.get_short() {
            new = new.short(short);
        }
        if let Some(aliases) = arg.get_visible_aliases() {
            new = new.visible_aliases(aliases.into_iter().map(leak).collect::<Vec<_>>());
        }
        if let Some(help) = arg.get_help() {
            new = new.help(help.clone());
        }
        if let Some(names) = arg.get_value_names() {
            new = new.value_names(names.iter().map(|n| leak(n)).collect::<Vec<_>>());
        }
        if let Some(range) = arg.get_num_args() {
            new = new.num_args(range);
        }
        new
    };
    let mut root = Command::new(leak(command.get_name()))
        .about(command.get_about().cloned().unwrap_or_default())
        .disable_help_subcommand(true)
        .disable_version_flag(true)
        .disable_help_flag(true);
    for (mode, ids) in modes {
        let Some(flag) = command.get_arguments().find(|a| a.get_id() == *mode) else {
            continue;
        };
        let mut sub = Command::new(leak(&format!("-{mode}")))
            .disable_help_flag(true)
            .disable_version_flag(true);
        if let Some(help) = flag.get_help() {
            sub = sub.about(help.clone());
        }
        for arg in command
            .get_arguments()
            .filter(|a| applies_in(a, mode, ids, modes))
        {
            sub = sub.arg(copy(arg));
        }
        root = root.subcommand(sub);
    }
    root
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
/// Refuses, before anything is shown or done, a question nobody could
/// answer: standard input is not a terminal (a script, `</dev/null`).
/// `what`: what the command would do, for the message. Errors:
/// [`Error::NeedsConfirmation`](crate::error::Error::NeedsConfirmation) (exit 2).
pub fn require_terminal_to_confirm(what: String) -> crate::error::Result<()> {
    use std::io::IsTerminal;
    match std::io::stdin().is_terminal() {
        true => Ok(()),
        false => Err(crate::error::Error::NeedsConfirmation { what }),
    }
}

pub fn confirm(question: &str) -> std::io::Result<bool> {
    let mut stdout = std::io::stdout();
    write!(stdout, "{question} [no] ")?;
    stdout.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    let answer = answer.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// Warns, with what to do, when this replica learnt that it is the copy
/// of itself that its siblings refuse (a clone alarm about its own id,
/// raised by a sibling's packet: see `sync::family::check_duplicates`).
pub fn warn_self_clone(name: &str, replica: &crate::replica::Replica) -> crate::error::Result<()> {
    let me = replica.identity.replica_id;
    if let Some(alarm) = replica
        .state()
        .clone_alarms()?
        .into_iter()
        .rev()
        .find(|a| a.replica == me)
    {
        errln!(
            "{name}: warning: this replica is a clone (alarm of {}, packet {}): {}",
            crate::sys::clock::format_time_ns(alarm.at_ns),
            crate::error::printable(&alarm.packet),
            alarm.what
        );
        errln!(
            "{name}: hint: its changes never reach the family; at a sibling, make a new member \
             with mkreplica -export NEWNAME, import it into a new directory here, move this copy's \
             changed files into it, and stop using this copy"
        );
    }
    Ok(())
}

/// Warns about each `[siblings.NAME]` table of config.toml whose NAME is
/// no member of the family (a typing error leaves its settings applying to
/// no one), naming the file, the unknown name and the nearest member name.
pub fn warn_config(name: &str, replica: &crate::replica::Replica) -> crate::error::Result<()> {
    if replica.config.siblings.is_empty() {
        return Ok(());
    }
    let members: Vec<String> = replica.members()?.into_iter().map(|m| m.name).collect();
    let file = crate::store::config::config_path(&replica.state_dir());
    for sibling in replica.config.siblings.keys() {
        if members.contains(sibling) {
            continue;
        }
        let nearest = members
            .iter()
            .filter(|m| **m != replica.identity.replica_name)
            .map(|m| (strsim::damerau_levenshtein(sibling, m), m))
            .min();
        let suggestion = match nearest {
            Some((distance, member)) if distance <= sibling.chars().count().max(2) / 2 + 1 => {
                format!(
                    "; did you mean [siblings.{}]?",
                    crate::error::printable(member)
                )
            }
            _ => format!(
                "; the members are {}",
                members
                    .iter()
                    .map(|m| crate::error::printable(m).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        errln!(
            "{name}: warning: {}: [siblings.{}] names no member of the family, so its settings apply \
             to no one{suggestion}",
            file.display(),
            crate::error::printable(sibling)
        );
    }
    Ok(())
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
    let resend: Vec<String> = shown.iter().map(|p| format!("-resendpath '{p}'")).collect();
    errln!(
        "{name}: hint: at a sibling that has {}, run: syncreplica -export {} -out DIR {replica} (or -record with the same -resendpath, then export as usual), and import its packet here; or exclude {} again",
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

/// Shows the progress the library reports ([`crate::sys::progress`]) as
/// one line on standard error, like `rsync --info=progress2`: bytes done,
/// percentage, rate and time left, then what is being done. Only when
/// standard error is a terminal and `quiet` is false: pipes, files and
/// logs get the summary lines alone. A step's line is drawn once the step
/// has run for [`PROGRESS_AFTER`]. Call once, before the work starts.
pub fn show_progress(quiet: bool) {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return;
    }
    crate::sys::progress::install(Box::new(TerminalMeter));
}

/// The bar of the phase in progress, if any: [`report::print`] and
/// [`report::print_err`] hide it while they write (see [`above_progress`]).
static CURRENT_BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Runs `write` with the progress line (if one is shown) taken off the
/// terminal, so a message is never glued to it, and draws it again after.
pub(crate) fn above_progress<R>(write: impl FnOnce() -> R) -> R {
    let bar = CURRENT_BAR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// [`crate::sys::progress::Meter`] drawing an indicatif bar on stderr.
struct TerminalMeter;

/// How often the line is redrawn while nothing advances (a part being
/// verified whole), so the time shown keeps moving.
const PROGRESS_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a step runs before its progress line is drawn: a step done
/// sooner shows none (a line drawn and cleared at once is only flicker).
const PROGRESS_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts the steps started and finished, so a step's delayed drawing
/// (see [`PROGRESS_AFTER`]) does not draw a later one's bar.
static PROGRESS_STEP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The progress line's template for a terminal `columns` wide, and the
/// columns its fields take before the message (at most: a rate of
/// "1023.99 KiB/s", times under 100 hours). A narrow terminal drops the
/// bar, then the rate, so the line never wraps (a wrapped line is drawn
/// again below itself at every update).
fn progress_template(
    unit: crate::sys::progress::Unit,
    total: Option<u64>,
    columns: usize,
) -> (&'static str, usize) {
    use crate::sys::progress::Unit;
    match (unit, total) {
        (Unit::Bytes, Some(_)) if columns >= 62 + 20 => (
            "{bytes:>10} {percent:>3}% {bytes_per_sec:>13} {time_left} [{bar:20}] {wide_msg}",
            62,
        ),
        (Unit::Bytes, Some(_)) if columns >= 40 + 16 => (
            "{bytes:>10} {percent:>3}% {bytes_per_sec:>13} {time_left} {wide_msg}",
            40,
        ),
        (Unit::Bytes, Some(_)) => ("{bytes:>10} {percent:>3}% {time_left} {wide_msg}", 26),
        (Unit::Bytes, None) if columns >= 34 + 16 => (
            "{bytes:>10} {bytes_per_sec:>13} {elapsed_precise} {wide_msg}",
            34,
        ),
        (Unit::Bytes, None) => ("{bytes:>10} {elapsed_precise} {wide_msg}", 20),
        (Unit::Files, _) => ("{pos:>10} files {elapsed_precise} {wide_msg}", 27),
    }
}

/// How long a step runs, and how much of it is done, before the time left
/// is shown: an estimate from a slow start (a passphrase's key derivation
/// before any byte is verified) only rises, and says nothing.
const TIME_LEFT_AFTER: std::time::Duration = std::time::Duration::from_secs(3);
const TIME_LEFT_FROM_FRACTION: f32 = 0.02;

/// The `{time_left}` field: indicatif's estimate as HH:MM:SS once the step
/// has run [`TIME_LEFT_AFTER`] and done [`TIME_LEFT_FROM_FRACTION`] of
/// its bytes, else `--:--:--` (as wide, so the line does not jump).
fn time_left(state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write) {
    if state.elapsed() < TIME_LEFT_AFTER || state.fraction() < TIME_LEFT_FROM_FRACTION {
        let _ = out.write_str("--:--:--");
        return;
    }
    let secs = state.eta().as_secs();
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// `text` in at most `columns` columns: whole if it fits, else its start
/// and its end with "…" between, the end (a file name's last part, a
/// part number) kept longer than the start.
fn fit_to_width(text: &str, columns: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= columns {
        return text.to_string();
    }
    if columns == 0 {
        return String::new();
    }
    let keep = columns - 1;
    let head = keep / 3;
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// The width of the terminal standard error is, in columns (80 when it
/// cannot be told).
fn terminal_columns() -> usize {
    console::Term::stderr()
        .size_checked()
        .map_or(80, |(_, columns)| usize::from(columns))
}

/// What the line in progress shows, to fit it again when the terminal's
/// width changes.
static CURRENT_LINE: std::sync::Mutex<Option<ProgressLine>> = std::sync::Mutex::new(None);

struct ProgressLine {
    what: String,
    unit: crate::sys::progress::Unit,
    total: Option<u64>,
    columns: usize,
}

impl ProgressLine {
    /// Styles `bar` for a terminal `columns` wide: the template that fits
    /// and the message shortened to the room left (indicatif would cut
    /// its end off, where a file name's most telling part is).
    fn fit(&mut self, bar: &indicatif::ProgressBar, columns: usize) {
        self.columns = columns;
        let (template, fixed) = progress_template(self.unit, self.total, columns);
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.with_key("time_left", time_left).progress_chars("=> "));
        }
        // One column spare: a line that fills the last column makes some
        // terminals wrap.
        let room = columns.saturating_sub(fixed + 1);
        bar.set_message(fit_to_width(&self.what, room));
    }
}

impl crate::sys::progress::Meter for TerminalMeter {
    fn start(&self, what: &str, unit: crate::sys::progress::Unit, total: Option<u64>) {
        use std::sync::atomic::Ordering;
        let after = crate::sys::testhook::progress_after().unwrap_or(PROGRESS_AFTER);
        // Counted (rate, time left) from now, drawn only from `after` on.
        let bar = indicatif::ProgressBar::with_draw_target(
            total,
            match after.is_zero() {
                true => indicatif::ProgressDrawTarget::stderr(),
                false => indicatif::ProgressDrawTarget::hidden(),
            },
        );
        let mut line = ProgressLine {
            what: crate::error::neutralized(what, false).into_owned(),
            unit,
            total,
            columns: 0,
        };
        line.fit(&bar, terminal_columns());
        *CURRENT_LINE.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
        bar.enable_steady_tick(PROGRESS_TICK);
        bar.force_draw();
        let previous = CURRENT_BAR
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(bar);
        if let Some(previous) = previous {
            previous.finish_and_clear();
        }
        let step = PROGRESS_STEP.fetch_add(1, Ordering::SeqCst) + 1;
        if !after.is_zero() {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                let bar = CURRENT_BAR
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .filter(|_| PROGRESS_STEP.load(Ordering::SeqCst) == step);
                if let Some(bar) = bar {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    bar.force_draw();
                }
            });
        }
    }

    fn advance(&self, done: u64) {
        if let Some(bar) = CURRENT_BAR
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            bar.inc(done);
            // A file that grew while it was read: the total follows.
            if bar.length().is_some_and(|len| bar.position() > len) {
                bar.set_length(bar.position());
            }
            // A terminal made narrower or wider: the line follows.
            let columns = terminal_columns();
            if let Some(line) = CURRENT_LINE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .filter(|line| line.columns != columns)
            {
                line.fit(bar, columns);
            }
        }
    }

    fn relabel(&self, what: &str) {
        let bar = CURRENT_BAR
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let (Some(bar), Some(line)) = (
            bar,
            CURRENT_LINE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut(),
        ) {
            line.what = crate::error::neutralized(what, false).into_owned();
            let columns = line.columns;
            line.fit(&bar, columns);
            bar.force_draw();
        }
    }

    fn finish(&self) {
        PROGRESS_STEP.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        CURRENT_LINE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let bar = CURRENT_BAR.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
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
        let file = || {
            done.report_file
                .as_ref()
                .map_or("the import's report file".to_string(), |f| {
                    f.display().to_string()
                })
        };
        if done.notes_more > 0 {
            errln!(
                "{name}: note: and {} more, not shown: every one is in {}",
                done.notes_more,
                file()
            );
        }
        report_failed(name, &done.failed);
        if done.failed_more > 0 {
            errln!(
                "{name}: error: not applied here: and {} more steps, not shown: every failed step is in {} (and syncreplica -status lists them)",
                done.failed_more,
                file()
            );
        }
        let paths: Vec<Vec<u8>> = done.failed.into_iter().map(|f| f.path).collect();
        hint_failed(name, &replica.identity.replica_name, &paths);
    }
    // What this replica keeps grew since its state was last reconciled:
    // the recorded values are set on disk before any scan.
    if let Some(done) = crate::sync::kept::reconcile(replica)? {
        // Bounded like the other report lines.
        const SHOWN: usize = 1_000;
        for line in done.replaced.iter().take(SHOWN) {
            errln!("{name}: note: {line}");
        }
        if done.replaced.len() > SHOWN {
            errln!(
                "{name}: note: and {} more values replaced by the recorded ones",
                done.replaced.len() - SHOWN
            );
        }
        errln!(
            "{name}: note: {}: set {} from the recorded state (values never applied here \
             are not local changes)",
            done.grown,
            counted(done.set, "path", "paths")
        );
        for line in done.unapplied.iter().chain(&done.notes) {
            errln!("{name}: note: not applied here: {line}");
        }
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
        .map(|p| {
            format!(
                "-resendpath '{}'",
                crate::tree::relpath::display_short(p, 120)
            )
        })
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

/// Every check on where an export writes, made before anything is
/// recorded or changed: `out` (made if missing, and removed again when
/// the returned guard drops with nothing in it) and `work` (-workdir,
/// which must exist) are directories this user can create files in, on
/// filesystems with room for at least the smallest part
/// ([`packet_format::MIN_PART_SIZE`]). Removes the temporary files of
/// exports that are provably over from both. A directory made is
/// announced once every check has passed, as "Created the ROLE DIR."
/// (`role`: "-out directory", "outgoing bay"), before anything is written
/// into it.
/// Refuses packets written into (`-out`) or imported from the replica's
/// own tree where its excludes do not keep them out: a scan would record
/// them as replicated files, and an import's -remove as a replicated
/// delete. `path` may not exist yet (a new -out folder); a folder passes
/// when a packet named in it (`sync_*.zip`) is excluded. Errors:
/// [`Error::PacketsInsideReplica`](crate::error::Error::PacketsInsideReplica),
/// or the excludes' own errors.
pub(crate) fn check_packets_outside_tree(
    replica: &crate::replica::Replica,
    path: &std::path::Path,
    role: &'static str,
) -> crate::error::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // The absolute path: its longest existing part resolved, the rest
    // appended.
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    let resolved = loop {
        match std::fs::canonicalize(&existing) {
            Ok(resolved) => break resolved,
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = match parent.as_os_str().is_empty() {
                        true => std::path::PathBuf::from("."),
                        false => parent.to_path_buf(),
                    };
                }
                _ => return Ok(()),
            },
        }
    };
    let absolute = rest.iter().rev().fold(resolved, |a, name| a.join(name));
    let root = std::fs::canonicalize(&replica.root).unwrap_or_else(|_| replica.root.clone());
    let Ok(rel) = absolute.strip_prefix(&root) else {
        return Ok(());
    };
    let rel = rel.as_os_str().as_bytes().to_vec();
    // A folder, or a name that is not there yet (only -out folders get
    // this far without being there: missing packets are refused before).
    let is_dir = path.is_dir() || (!path.exists() && role != "packet");
    let probe = match (is_dir, rel.is_empty()) {
        (false, _) => rel.clone(),
        (true, true) => b"sync_probe.zip".to_vec(),
        (true, false) => [rel.as_slice(), b"/sync_probe.zip"].concat(),
    };
    if replica.excludes()?.excludes_relative(&probe, false, false) {
        return Ok(());
    }
    Err(crate::error::Error::PacketsInsideReplica {
        role,
        path: path.to_path_buf(),
        root: replica.root.clone(),
        rel,
        is_dir,
    })
}

pub(crate) fn prepare_out(
    out: &std::path::Path,
    work: Option<&std::path::Path>,
    role: &'static str,
) -> crate::error::Result<CreatedOut> {
    use crate::error::Error;
    check_workdir(work)?;
    let dirs: Vec<&std::path::Path> = work.into_iter().chain([out]).collect();
    for dir in &dirs {
        if dir.exists() && !dir.is_dir() {
            return Err(match *dir == out {
                true => Error::out_is_a_file(out),
                false => Error::NotADirectory {
                    path: dir.to_path_buf(),
                },
            });
        }
    }
    let mut created = CreatedOut::ensure(out)?;
    for dir in &dirs {
        // A directory this user cannot write to (its permissions, or a
        // read-only filesystem) is refused now. Asked, not tried: a file
        // made and removed there would change the directory's mtime,
        // which a scan records when -out is inside the replica.
        rustix::fs::accessat(
            rustix::fs::CWD,
            *dir,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            rustix::fs::AtFlags::EACCESS,
        )
        .map_err(|e| {
            // The kind in words ("permission denied"), as the OS says it
            // for any file made there.
            let cause = std::io::Error::from(std::io::Error::from(e).kind());
            match *dir == out {
                true => Error::out_directory(out, false, &cause),
                false => Error::io(*dir, cause),
            }
        })?;
    }
    remove_abandoned_partials(&dirs);
    for (dir, role) in work
        .map(|w| (w, "-workdir"))
        .into_iter()
        .chain([(out, "-out directory")])
    {
        let free = crate::sys::fsutil::free_space(dir)?;
        if free < packet_format::MIN_PART_SIZE {
            return Err(Error::NoRoomForPackets {
                dir: dir.to_path_buf(),
                role,
                mount: crate::sys::fsutil::mount_point(
                    &std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
                ),
                free,
                what: format!(
                    "an export needs at least {} there; nothing was recorded or written",
                    crate::error::human_size(packet_format::MIN_PART_SIZE)
                ),
                options: match work {
                    Some(_) => "-maxsize and -workdir",
                    None => "-maxsize",
                },
            });
        }
    }
    created.announce(role);
    Ok(created)
}

/// A -workdir must exist: not made for the user, unlike -out, as a
/// working folder that is not there is most likely a typing error or an
/// unmounted disk (a usage error, exit 2).
pub(crate) fn check_workdir(work: Option<&std::path::Path>) -> crate::error::Result<()> {
    match work {
        Some(work) if !work.exists() => Err(crate::error::Error::MissingDirectory {
            path: work.to_path_buf(),
            what: "the -workdir",
        }),
        _ => Ok(()),
    }
}

/// The role given to [`prepare_out`] for a directory of the program's own
/// (the local staging of an S3 outgoing bay): its making and removal are
/// not said.
pub(crate) const OUT_UNSAID: &str = "staging directory";

/// An `-out` directory this run created: removed again when the run ends
/// with nothing in it (no packet written, or a failure), so a refused or
/// empty export leaves no trace. Removes only an empty directory, and only
/// one this run made; says so if it had said it was made.
pub(crate) struct CreatedOut {
    /// The directories made, deepest first.
    made: Vec<std::path::PathBuf>,
    /// What it is called ("-out directory"), once its making was said.
    announced: Option<&'static str>,
}

impl CreatedOut {
    /// Creates `out` (and missing parents) unless it exists.
    pub(crate) fn ensure(out: &std::path::Path) -> crate::error::Result<CreatedOut> {
        let made: Vec<std::path::PathBuf> = out
            .ancestors()
            .take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists())
            .map(std::path::Path::to_path_buf)
            .collect();
        if !made.is_empty() {
            std::fs::create_dir_all(out)
                .map_err(|e| crate::error::Error::out_directory(out, true, &e))?;
        }
        Ok(CreatedOut {
            made,
            announced: None,
        })
    }

    /// Says that the directory was made (if it was), when it was: before
    /// the lines about what goes into it. Nothing for [`OUT_UNSAID`].
    fn announce(&mut self, role: &'static str) {
        if role == OUT_UNSAID {
            return;
        }
        if let Some(out) = self.made.first() {
            outln!("Created the {role} {}.", out.display());
            self.announced = Some(role);
        }
    }
}

impl Drop for CreatedOut {
    fn drop(&mut self) {
        let Some(out) = self.made.first().cloned() else {
            return;
        };
        for dir in &self.made {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
        if let (Some(role), false) = (self.announced, out.is_dir()) {
            outln!(
                "Removed the {role} {} again: nothing was written to it.",
                out.display()
            );
        }
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
    fn a_long_name_is_shortened_in_the_middle_to_fit() {
        assert_eq!(fit_to_width("exporting to beta", 40), "exporting to beta");
        let name = "sending sync_alpha_20261130T120000Z_beta_12_3of5.zip";
        let fitted = fit_to_width(name, 30);
        assert_eq!(fitted.chars().count(), 30);
        assert_eq!(fitted, "sending s…00Z_beta_12_3of5.zip");
        assert_eq!(fit_to_width(name, 0), "");
    }

    #[test]
    fn the_progress_line_never_needs_more_than_the_terminal() {
        use crate::sys::progress::Unit;
        for columns in [40, 50, 60, 80, 120] {
            for (unit, total) in [
                (Unit::Bytes, Some(1)),
                (Unit::Bytes, None),
                (Unit::Files, None),
            ] {
                let (template, fixed) = progress_template(unit, total, columns);
                assert!(fixed + 10 <= columns, "{template} at {columns}");
            }
        }
        assert!(progress_template(Unit::Bytes, Some(1), 120)
            .0
            .contains("{bar"));
        assert!(!progress_template(Unit::Bytes, Some(1), 60)
            .0
            .contains("{bar"));
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
