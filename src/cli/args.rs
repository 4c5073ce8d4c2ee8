//! The single-dash option handling every syncreplica command shares,
//! `shipping_server` included.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use clap::{Command, CommandFactory, FromArgMatches};

/// Rewrites `-name` and `-name=value` into `--name` and `--name=value`:
/// for the long options of `command`, and for any other word of more than
/// one letter too (no command has bundled short flags), so clap reports an
/// unknown `-statsu` by its name and suggests `--status`, not `-s`. Values
/// of options are left alone, and so is everything after `--`; an option
/// whose value is optional (`-listen [ADDR]`) takes the next word only if
/// it is not an option.
pub fn normalize_args(command: &Command, args: Vec<OsString>) -> Vec<OsString> {
    // Long name -> (takes a value, the value is optional).
    let mut takes_value = std::collections::HashMap::new();
    for arg in command.get_arguments() {
        let needs_value = arg.get_action().takes_values();
        let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        if let Some(long) = arg.get_long() {
            takes_value.insert(long.to_string(), (needs_value, optional));
        }
        for alias in arg.get_all_aliases().unwrap_or_default() {
            takes_value.insert(alias.to_string(), (needs_value, optional));
        }
    }
    takes_value.insert("help".into(), (false, false));
    if command.get_version().is_some() {
        takes_value.insert("version".into(), (false, false));
    }

    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    let mut skip_value = false;
    let mut optional_value = false;
    let mut rest_positional = false;
    for arg in iter {
        let looks_like_option = arg.as_bytes().len() > 1 && arg.as_bytes()[0] == b'-';
        // A value that is one of the command's own options (`-resendpath
        // -out DIR`) means the value was left out: clap then says which
        // option needs one, rather than taking `-out` for a path and
        // failing on `-o`. A path spelt like an option is written `./-out`.
        let is_known_option = looks_like_option && {
            let body = arg.as_bytes().trim_ascii_start();
            let body = body
                .strip_prefix(b"--")
                .or(body.strip_prefix(b"-"))
                .unwrap_or(body);
            let end = body.iter().position(|&b| b == b'=').unwrap_or(body.len());
            takes_value.contains_key(String::from_utf8_lossy(&body[..end]).as_ref())
        };
        if rest_positional
            || (skip_value && !(optional_value && looks_like_option) && !is_known_option)
        {
            skip_value = false;
            // A value spelt like an option (`-maxsize -5m`) is joined to its
            // option, so clap checks it as a value ("invalid value '-5m'")
            // instead of taking it for an unknown option.
            if looks_like_option && !rest_positional {
                if let Some(last) = out.last_mut() {
                    last.push("=");
                    last.push(&arg);
                    continue;
                }
            }
            out.push(arg);
            continue;
        }
        skip_value = false;
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
            Some(&(needs_value, optional)) if dashes == 2 || name.len() > 1 => {
                skip_value = needs_value && name_end == body.len();
                optional_value = optional;
                let mut rewritten = b"--".to_vec();
                rewritten.extend_from_slice(body);
                out.push(OsString::from_vec(rewritten));
            }
            // An unknown word: clap names it whole and suggests the option
            // meant.
            None if dashes == 1 && name.len() > 1 => {
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
            // Help and version: on stdout, spelled as the documentation
            // spells the options; the doc comments' `code` marks (bold in
            // the man pages) are Markdown, not text.
            let _ = write!(
                std::io::stdout(),
                "{}",
                multisite_spelling(&err.render().to_string()).replace('`', "")
            );
            std::process::exit(super::EXIT_SUCCESS);
        }
        Err(err) => {
            let raw: Vec<OsString> = std::env::args_os().skip(1).collect();
            let text = usage_error_text(&T::command(), &err, &raw);
            let _ = write!(std::io::stderr(), "{name}: {text}");
            std::process::exit(super::EXIT_USAGE);
        }
    }
}

/// clap's error for a bad command line, as this tool's users read it: an
/// unknown option echoed as typed (`raw`, the arguments after the program
/// name) with the options the command has when clap has no suggestion; no
/// "use '-- -x'" tip (no command here takes operands that start with a
/// dash); an operand that is an option's name without its dash (`status`)
/// suggested as the option; and the command's real synopsis as the usage
/// line, not clap's rebuild of it from the arguments given.
pub fn usage_error_text(command: &Command, err: &clap::Error, raw: &[OsString]) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let mut text = multisite_spelling(&err.render().to_string());
    // The "to pass '-x' as a value, use '-- -x'" tip.
    let mut kept = Vec::new();
    let mut skip_blank = false;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("tip: to pass '") {
            skip_blank = true;
            continue;
        }
        if skip_blank && line.trim().is_empty() {
            skip_blank = false;
            continue;
        }
        skip_blank = false;
        kept.push(line);
    }
    text = kept.concat();
    let own_options = || -> Vec<String> {
        command
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(|l| format!("-{l}")))
            .collect()
    };
    if err.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(word)) = err.get(ContextKind::InvalidArg) {
            // The word as typed: clap saw it with two dashes.
            let body = word.trim_start_matches('-');
            let typed = raw
                .iter()
                .filter_map(|a| a.to_str())
                .find(|a| {
                    let b = a.trim_start_matches('-');
                    a.starts_with('-') && (b == body || b.split('=').next() == Some(body))
                })
                .map(|a| a.split('=').next().unwrap_or(a).to_string());
            if let Some(typed) = typed {
                text = text.replacen(
                    &format!("unknown option -{body}"),
                    &format!("unknown option {typed}"),
                    1,
                );
            }
            if err.get(ContextKind::SuggestedArg).is_none() {
                let insert = format!(
                    "\n  tip: {} has no option -{body}; its options: {}\n",
                    command.get_name(),
                    own_options().join(", ")
                );
                if let Some(at) = text.find('\n') {
                    text.insert_str(at + 1, &insert);
                }
            }
        }
    }
    if err.kind() == ErrorKind::MissingRequiredArgument {
        // `syncreplica status`, by git habit.
        let longs = own_options();
        let word = raw
            .iter()
            .filter_map(|a| a.to_str())
            .find(|a| !a.starts_with('-') && longs.contains(&format!("-{a}")));
        // `syncreplica -export ship`: the word is a TARGET (a member may
        // well be named "ship"); what is missing is where the packets go.
        let tip = match (text.contains("<-out <DIR>|-ship|-fship>"), word) {
            (true, _) => Some("-export needs -out DIR, -ship or -fship".to_string()),
            (false, Some(word)) => Some(format!("options start with a dash: -{word}")),
            (false, None) => None,
        };
        if let Some(tip) = tip {
            if let Some(at) = text.find("Usage: ") {
                text.insert_str(at, &format!("  tip: {tip}\n\n"));
            }
        }
    }
    // The real synopsis in place of clap's usage line.
    let real = multisite_spelling(&command.clone().render_usage().to_string());
    let real = real
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string();
    if let Some(start) = text.find("Usage: ") {
        let end = text[start..].find('\n').map_or(text.len(), |e| start + e);
        text.replace_range(start..end, &real);
    }
    text
}

/// Rewrites clap's text (help, usage, errors) into the spelling the man
/// pages and MultiSite use: `--status` becomes `-status`, and clap's
/// "unexpected argument '--statsu' found" (after [`normalize_args`] made
/// `-statsu` a long word) becomes "unknown option -statsu". A bare `--`
/// (the end of options) and dashes inside words are left alone. Help
/// texts therefore never quote another tool's `--option` literally.
pub fn multisite_spelling(text: &str) -> String {
    let text = rewrite_unknown(text);
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-');
        if starts_word
            && bytes[i..].starts_with(b"--")
            && bytes.get(i + 2).is_some_and(|b| b.is_ascii_lowercase())
        {
            out.push('-');
            i += 2;
            continue;
        }
        let ch = text[i..].chars().next().expect("i is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// clap's "unexpected argument 'X' found" for an option-like word, in the
/// words of the issue tracker's users: "unknown option X".
fn rewrite_unknown(text: &str) -> String {
    const PREFIX: &str = "unexpected argument '-";
    let Some(start) = text.find(PREFIX) else {
        return text.to_string();
    };
    let word_start = start + PREFIX.len() - 1;
    let Some(len) = text[word_start..].find("' found") else {
        return text.to_string();
    };
    let word = &text[word_start..word_start + len];
    format!(
        "{}unknown option {word}{}",
        &text[..start],
        &text[word_start + len + "' found".len()..]
    )
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
            normalized(&["shipping_server", "-poll", "-sclass", "default"]),
            ["shipping_server", "--poll", "--sclass", "default"]
        );
        assert_eq!(
            normalized(&["shipping_server", "-sclass=x", "--poll"]),
            ["shipping_server", "--sclass=x", "--poll"]
        );
    }

    #[test]
    fn unknown_words_are_named_whole_and_positionals_after_double_dash_kept() {
        assert_eq!(
            normalized(&["shipping_server", "-bogus", "--", "-poll"]),
            ["shipping_server", "--bogus", "--", "-poll"]
        );
    }

    #[test]
    fn a_missing_value_does_not_swallow_the_next_option() {
        assert_eq!(
            normalized(&["shipping_server", "-sclass", "-poll"]),
            ["shipping_server", "--sclass", "--poll"]
        );
        // Any other word is a value, even one that starts with a dash.
        assert_eq!(
            normalized(&["shipping_server", "-sclass", "-x-class"]),
            ["shipping_server", "--sclass=-x-class"]
        );
    }

    #[test]
    fn an_optional_value_does_not_swallow_the_next_option() {
        assert_eq!(
            normalized(&["shipping_server", "-listen", "-poll", "-interval", "5"]),
            ["shipping_server", "--listen", "--poll", "--interval", "5"]
        );
        assert_eq!(
            normalized(&["shipping_server", "-listen", "127.0.0.1:1", "-poll"]),
            ["shipping_server", "--listen", "127.0.0.1:1", "--poll"]
        );
    }

    #[test]
    fn clap_text_is_spelled_with_one_dash() {
        assert_eq!(
            multisite_spelling(
                "error: unexpected argument '--statsu' found\n\n  tip: a similar argument exists: '--status'\n\nUsage: syncreplica <--status|--record> [X]...\n\nFor more information, try '--help'.\n"
            ),
            "error: unknown option -statsu\n\n  tip: a similar argument exists: '-status'\n\nUsage: syncreplica <-status|-record> [X]...\n\nFor more information, try '-help'.\n"
        );
        // The end of options, and dashes inside words, are left alone.
        assert_eq!(
            multisite_spelling("use '-- --bogus'; a--b; re-export -- x"),
            "use '-- -bogus'; a--b; re-export -- x"
        );
        assert_eq!(
            multisite_spelling("a value is required for '--maxsize <SIZE>'"),
            "a value is required for '-maxsize <SIZE>'"
        );
    }
}
