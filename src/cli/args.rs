//! The single-dash option handling every syncreplica command shares,
//! `shipping_server` included.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use clap::{Command, CommandFactory, FromArgMatches};

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

/// Parses the process arguments into `T`, accepting single-dash long
/// options; a bad command line prints `COMMAND: error: …` and exits 2
/// ([`super::EXIT_USAGE`]).
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
            std::process::exit(super::EXIT_SUCCESS);
        }
        Err(err) => {
            let _ = write!(std::io::stderr(), "{name}: {}", err.render());
            std::process::exit(super::EXIT_USAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::shipping_server::Args;

    fn normalized(args: &[&str]) -> Vec<String> {
        let command = Args::command();
        normalize_args(&command, args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_options_become_double_dash() {
        assert_eq!(
            normalized(&["shipping_server", "-poll", "-sclass", "-poll"]),
            ["shipping_server", "--poll", "--sclass", "-poll"]
        );
        assert_eq!(
            normalized(&["shipping_server", "-sclass=x", "--poll"]),
            ["shipping_server", "--sclass=x", "--poll"]
        );
    }

    #[test]
    fn unknown_words_and_positionals_after_double_dash_are_kept() {
        assert_eq!(
            normalized(&["shipping_server", "-bogus", "--", "-poll"]),
            ["shipping_server", "-bogus", "--", "-poll"]
        );
    }
}
