//! Command-line definitions shared by the binaries and the man pages.
//!
//! Every command accepts MultiSite's single-dash long options (`-maxsize 50m`)
//! as well as the GNU form (`--maxsize 50m`): [`normalize_args`] rewrites the
//! former into the latter before clap sees them.

pub mod chepoch;
pub mod lsepoch;
pub mod lspacket;
pub mod lsreplica;
pub mod mkreplica;
pub mod syncreplica;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use clap::{Command, CommandFactory, FromArgMatches};

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

/// Rewrites `-name` and `-name=value` into `--name` and `--name=value` when
/// `name` is a long option of `command`. Values of options are left alone,
/// and so is everything after `--`.
pub fn normalize_args(command: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut takes_value = std::collections::HashMap::new();
    for arg in command.get_arguments() {
        let needs_value = arg.get_action().takes_values();
        if let Some(long) = arg.get_long() {
            takes_value.insert(long.to_string(), needs_value);
        }
        for alias in arg.get_all_aliases().unwrap_or_default() {
            takes_value.insert(alias.to_string(), needs_value);
        }
    }
    takes_value.insert("help".into(), false);
    if command.get_version().is_some() {
        takes_value.insert("version".into(), false);
    }

    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    let mut skip_value = false;
    let mut rest_positional = false;
    for arg in iter {
        if rest_positional || skip_value {
            skip_value = false;
            out.push(arg);
            continue;
        }
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            rest_positional = true;
            out.push(arg);
            continue;
        }
        let (dashes, body) = if let Some(body) = bytes.strip_prefix(b"--") {
            (2, body)
        } else if let Some(body) = bytes.strip_prefix(b"-") {
            (1, body)
        } else {
            out.push(arg);
            continue;
        };
        let name_end = body.iter().position(|&b| b == b'=').unwrap_or(body.len());
        let name = String::from_utf8_lossy(&body[..name_end]);
        match takes_value.get(name.as_ref()) {
            Some(&needs_value) if dashes == 2 || name.len() > 1 => {
                skip_value = needs_value && name_end == body.len();
                let mut rewritten = b"--".to_vec();
                rewritten.extend_from_slice(body);
                out.push(OsString::from_vec(rewritten));
            }
            _ => out.push(arg),
        }
    }
    out
}

/// Parses a size such as `65536`, `64k`, `50m` or `2g` (binary multiples).
pub fn parse_size(value: &str) -> crate::Result<u64> {
    packet_format::vocabulary::parse_size(value).map_err(|why| crate::Error::BadSize {
        value: value.to_string(),
        why: why.to_string(),
    })
}

/// Parses the process arguments into `T`, accepting single-dash long
/// options. Prints clap's message as `COMMAND: error: …` and exits 2 on a
/// bad command line.
pub fn parse_args<T: CommandFactory + FromArgMatches>() -> T {
    let command = T::command();
    let name = command.get_name().to_string();
    let args = normalize_args(&command, std::env::args_os().collect());
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|mut matches| T::from_arg_matches_mut(&mut matches));
    match parsed {
        Ok(args) => args,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            std::process::exit(EXIT_SUCCESS);
        }
        Err(err) => {
            let rendered = err.render().to_string();
            let _ = write!(std::io::stderr(), "{name}: {rendered}");
            std::process::exit(EXIT_USAGE);
        }
    }
}

/// Runs a command's body and turns its error into `COMMAND: error: …`,
/// an optional `hint:` line and the documented exit code.
pub fn run(name: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ! {
    match body() {
        Ok(()) => std::process::exit(EXIT_SUCCESS),
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let mut message = err.to_string();
            for cause in err.chain().skip(1) {
                message.push_str(&format!(": {cause}"));
            }
            let _ = writeln!(stderr, "{name}: error: {message}");
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

    fn normalized(args: &[&str]) -> Vec<String> {
        let command = syncreplica::Args::command();
        normalize_args(&command, args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_options_become_double_dash() {
        assert_eq!(
            normalized(&["syncreplica", "-status", "-replica", "-status"]),
            ["syncreplica", "--status", "--replica", "-status"]
        );
        assert_eq!(
            normalized(&["syncreplica", "-replica=/x", "--status"]),
            ["syncreplica", "--replica=/x", "--status"]
        );
    }

    #[test]
    fn unknown_words_and_positionals_after_double_dash_are_kept() {
        assert_eq!(
            normalized(&["syncreplica", "-bogus", "--", "-status"]),
            ["syncreplica", "-bogus", "--", "-status"]
        );
    }

    #[test]
    fn a_bad_size_is_a_typed_error_naming_it() {
        // The suffixes themselves are tested in packet_format::vocabulary.
        assert_eq!(parse_size("50m").unwrap(), 50 << 20);
        match parse_size("5x") {
            Err(crate::Error::BadSize { value, .. }) => assert_eq!(value, "5x"),
            other => panic!("{other:?}"),
        }
    }
}
