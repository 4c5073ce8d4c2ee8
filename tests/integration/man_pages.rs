//! The committed man pages and shell completion scripts must match the
//! clap definitions. Regenerate with:
//! SYNCREPLICA_UPDATE_MAN=1 cargo test --test integration man_pages

use std::path::Path;

use clap::Command;
use clap_complete::Shell;
use syncreplica::cli;

/// The date the pages carry (mandoc wants one): the date of the release
/// their text describes.
const MANUAL_DATE: &str = "2026-11-30";

/// `text` with its first letter in lower case, as NAME lines have it.
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `text` as roff text: backslashes and dashes escaped, and a line that
/// would start with a control character protected.
fn roff_escape(text: &str) -> String {
    // Non-ASCII characters as \[uXXXX], which groff and mandoc both read
    // whatever the locale.
    let escaped: String = text
        .replace('\\', "\\e")
        .replace('-', "\\-")
        .chars()
        .map(|c| match c.is_ascii() {
            true => c.to_string(),
            false => format!("\\[u{:04X}]", c as u32),
        })
        .collect();
    escaped
        .lines()
        .map(
            |line| match line.starts_with('.') || line.starts_with('\'') {
                true => format!("\\&{line}"),
                false => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

/// Markdown's inline marks (`code`, **bold**) as roff fonts, the rest
/// escaped.
fn roff_inline(text: &str) -> String {
    let mut out = String::new();
    for (i, piece) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("\\fB{}\\fR", roff_escape(piece)));
            continue;
        }
        for (j, part) in piece.split("**").enumerate() {
            match j % 2 {
                1 => out.push_str(&format!("\\fB{}\\fR", roff_escape(part))),
                _ => out.push_str(&roff_escape(part)),
            }
        }
    }
    out
}

/// A synopsis line (as in [`cli::manual`]): options bold, placeholders
/// italic, brackets and bars as they are.
fn roff_synopsis(line: &str) -> String {
    let words: Vec<String> = line
        .split_whitespace()
        .map(|word| {
            let core = word.trim_matches(|c| "[]{}|…".contains(c));
            if core.is_empty() {
                return roff_escape(word);
            }
            let start = word.find(core).unwrap();
            let (before, after) = (&word[..start], &word[start + core.len()..]);
            let styled = if core.starts_with('-') {
                format!("\\fB{}\\fR", roff_escape(core))
            } else if core
                .chars()
                .all(|c| c.is_ascii_uppercase() || "_=".contains(c))
            {
                format!("\\fI{}\\fR", roff_escape(core))
            } else {
                format!("\\fB{}\\fR", roff_escape(core))
            };
            format!("{}{styled}{}", roff_escape(before), roff_escape(after))
        })
        .collect();
    words.join(" ")
}

/// One tagged paragraph: `term` in font `font` (B bold, I italic), then
/// `what` with its `code` marks in bold ([`roff_inline`]).
fn roff_item(font: char, term: &str, what: &str) -> String {
    format!(
        ".TP\n\\f{font}{}\\fR\n{}\n",
        roff_escape(term),
        roff_inline(what)
    )
}

/// Paragraphs of clap's help text as roff: a paragraph per blank-line
/// block; a block of indented lines (a list) stays preformatted; `code`
/// in bold ([`roff_inline`]), never a raw backtick.
fn roff_paragraphs(text: &str) -> String {
    let mut out = String::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        if block.lines().skip(1).all(|l| l.starts_with("  ")) && block.lines().count() > 1 {
            let mut lines = block.lines();
            out.push_str(&format!(".PP\n{}\n", roff_inline(lines.next().unwrap())));
            for line in lines {
                let line = line.trim();
                match line.split_once("  ") {
                    Some((term, what)) => out.push_str(&roff_item('B', term, what.trim())),
                    None => out.push_str(&format!(".IP\n{}\n", roff_inline(line))),
                }
            }
        } else {
            out.push_str(&format!(
                ".PP\n{}\n",
                roff_inline(&block.replace('\n', " "))
            ));
        }
    }
    out
}

/// The man page (roff, section 1) of one command: NAME, SYNOPSIS,
/// DESCRIPTION, OPTIONS, EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES, SEE
/// ALSO, from its clap definition and [`cli::manual`].
fn render_man_page(command: Command) -> Vec<u8> {
    let name = command.get_name().to_string();
    let manual = cli::manual::manual(&name);
    let version = command.get_version().unwrap_or_default().to_string();
    let mut out = format!(
        ".TH {} 1 {MANUAL_DATE} \"syncreplica {version}\" \"User Commands\"\n",
        name.to_uppercase()
    );
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    out += &format!(
        ".SH NAME\n{} \\- {}\n",
        roff_escape(&name),
        roff_escape(&lower_first(about.trim_end_matches('.')))
    );
    out += ".SH SYNOPSIS\n";
    for (i, line) in manual.synopses.iter().enumerate() {
        if i > 0 {
            out += ".br\n";
        }
        out += &format!("{}\n", roff_synopsis(line));
    }
    out += ".SH DESCRIPTION\n";
    let long = command
        .get_long_about()
        .or(command.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    out += &roff_paragraphs(&long);
    out += ".SH OPTIONS\n";
    let mut arguments: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .collect();
    // Options first, then operands, as man pages list them.
    arguments.sort_by_key(|arg| arg.is_positional());
    for arg in arguments {
        let values: Vec<String> = arg
            .get_value_names()
            .map(|names| names.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        let takes = arg.get_action().takes_values();
        let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        let mut term = Vec::new();
        if let Some(short) = arg.get_short() {
            term.push(format!("\\fB\\-{short}\\fR"));
        }
        if let Some(long) = arg.get_long() {
            term.push(format!("\\fB\\-{}\\fR", roff_escape(long)));
        }
        for alias in arg.get_visible_aliases().unwrap_or_default() {
            term.push(format!("\\fB\\-{}\\fR", roff_escape(alias)));
        }
        let mut term = term.join(", ");
        if arg.is_positional() {
            let value = values
                .first()
                .cloned()
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
            let many = matches!(arg.get_action(), clap::ArgAction::Append)
                || arg.get_num_args().is_some_and(|n| n.max_values() > 1);
            term = format!(
                "\\fI{}\\fR{}",
                roff_escape(&value),
                if many { "\\[u2026]" } else { "" }
            );
        } else if takes && !values.is_empty() {
            let value = format!("\\fI{}\\fR", roff_escape(&values[0]));
            term = match optional {
                true => format!("{term} [{value}]"),
                false => format!("{term} {value}"),
            };
        }
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        out += &format!(
            ".TP\n{term}\n{}\n",
            roff_inline(&help.replace("\n\n", " ").replace('\n', " "))
        );
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| match v.get_help() {
                Some(help) => format!("{} ({})", v.get_name(), help),
                None => v.get_name().to_string(),
            })
            .collect();
        if takes && !possible.is_empty() {
            out += &format!(".IP\nValues: {}.\n", roff_escape(&possible.join(", ")));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if takes && !defaults.is_empty() && !arg.is_positional() {
            out += &format!(".IP\nDefault: {}.\n", roff_escape(&defaults.join(", ")));
        }
    }
    out += ".TP\n\\fB\\-h\\fR, \\fB\\-help\\fR\nPrint help (\\fB\\-h\\fR: a summary).\n";
    out += ".TP\n\\fB\\-V\\fR, \\fB\\-version\\fR\nPrint the version.\n";
    let after = command
        .get_after_long_help()
        .or(command.get_after_help())
        .map(|a| a.to_string())
        .unwrap_or_default();
    // The exit status list becomes its section; the rest stays prose.
    let (prose, exit) = match after.split_once("Exit status:\n") {
        Some((before, rest)) => {
            let (list, tail) = rest.split_once("\n\n").unwrap_or((rest, ""));
            (format!("{before}\n\n{tail}"), Some(list.to_string()))
        }
        None => (after.clone(), None),
    };
    out += &roff_paragraphs(&prose);
    if let Some(list) = exit {
        out += ".SH EXIT STATUS\n";
        // An item is "  CODE  WHAT"; a line indented deeper carries on the
        // WHAT of the item above it (the help text wraps long ones).
        let mut items: Vec<(String, String)> = Vec::new();
        for line in list.lines() {
            let indent = line.len() - line.trim_start().len();
            let line = line.trim();
            match items.last_mut() {
                Some((_, what)) if indent > 2 => {
                    what.push(' ');
                    what.push_str(line);
                }
                _ => {
                    let (code, what) = line.split_once("  ").unwrap_or((line, ""));
                    items.push((code.to_string(), what.trim().to_string()));
                }
            }
        }
        for (code, what) in items {
            out += &roff_item('B', &code, &what);
        }
    }
    if !manual.environment.is_empty() {
        out += ".SH ENVIRONMENT\n";
        for (variable, what) in manual.environment {
            out += &roff_item('B', variable, what);
        }
    }
    if !manual.files.is_empty() {
        out += ".SH FILES\n";
        for (path, what) in manual.files {
            out += &roff_item('I', path, what);
        }
    }
    if !manual.json.is_empty() {
        out += &format!(
            ".SH JSON OUTPUT\n.PP\n{}\n",
            roff_escape(cli::manual::JSON_COMMON)
        );
        for (line, fields) in manual.json {
            out += &roff_item('B', line, fields);
        }
    }
    if !manual.examples.is_empty() {
        out += ".SH EXAMPLES\n";
        for (what, line) in manual.examples {
            out += &format!(
                ".PP\n{}:\n.PP\n.RS 4\n.EX\n{}\n.EE\n.RE\n",
                roff_escape(what),
                roff_escape(line)
            );
        }
    }
    let others: Vec<String> = cli::all_commands()
        .iter()
        .map(|c| c.get_name().to_string())
        .filter(|other| *other != name)
        .map(|other| format!("\\fB{}\\fR(1)", roff_escape(&other)))
        .chain(["\\fBsyncreplica\\-shipping\\fR(5)".to_string()])
        .collect();
    out += &format!(".SH SEE ALSO\n{}\n", others.join(",\n"));
    tidy(&out).into_bytes()
}

/// Text lines of at most 80 bytes, as mandoc -T lint wants them: a
/// longer text line is broken at spaces (roff fills them together again);
/// request lines and the no-fill blocks (.EX/.EE examples, .TS/.TE
/// tables) stay as they are.
fn wrap_text_lines(roff: &str) -> String {
    let mut out = Vec::new();
    let mut literal = false;
    for line in roff.split('\n') {
        match line {
            ".EX" | ".TS" => literal = true,
            ".EE" | ".TE" => literal = false,
            _ => {}
        }
        if literal || line.starts_with('.') || line.len() <= 80 {
            out.push(line.to_string());
            continue;
        }
        let mut current = String::new();
        for word in line.split(' ') {
            if !current.is_empty() && current.len() + 1 + word.len() > 80 {
                out.push(std::mem::take(&mut current));
            }
            if current.is_empty() {
                // A continuation that starts like a request is text.
                if word.starts_with('.') || word.starts_with('\'') {
                    current.push_str("\\&");
                }
                current.push_str(word);
            } else {
                current.push(' ');
                current.push_str(word);
            }
        }
        out.push(current);
    }
    out.join("\n")
}

/// Drops the paragraph macros roff ignores anyway (right after a section
/// heading), which mandoc -T lint warns about, and wraps long text lines
/// ([`wrap_text_lines`]).
fn tidy(roff: &str) -> String {
    let roff = &wrap_text_lines(roff);
    roff.replace(".SH SYNOPSIS\n.PP\n", ".SH SYNOPSIS\n")
        .split('\n')
        .collect::<Vec<_>>()
        .windows(2)
        .fold(String::new(), |mut out, pair| {
            if out.is_empty() {
                out.push_str(pair[0]);
                out.push('\n');
            }
            let after_heading = pair[0].starts_with(".SH") || pair[0].starts_with(".SS");
            if !(after_heading && pair[1] == ".PP") {
                out.push_str(pair[1]);
                out.push('\n');
            }
            out
        })
        .trim_end_matches('\n')
        .to_string()
        + "\n"
}

/// A Markdown document (headings, paragraphs, `-` and `1.` lists, fenced
/// code, pipe tables, inline code and bold) as a man page of `section`.
fn markdown_to_man(markdown: &str, name: &str, section: u8, title: &str) -> Vec<u8> {
    let mut out = format!(
        ".TH {} {section} {MANUAL_DATE} \"syncreplica\" \"File Formats\"\n.SH NAME\n{} \\- {}\n",
        name.to_uppercase(),
        roff_escape(name),
        roff_escape(title)
    );
    let mut lines = markdown.lines().peekable();
    let mut paragraph: Vec<String> = Vec::new();
    let flush = |paragraph: &mut Vec<String>, out: &mut String| {
        if !paragraph.is_empty() {
            out.push_str(&format!(".PP\n{}\n", roff_inline(&paragraph.join(" "))));
            paragraph.clear();
        }
    };
    while let Some(line) = lines.next() {
        let trimmed = line.trim_end();
        if let Some(heading) = trimmed.strip_prefix("# ") {
            flush(&mut paragraph, &mut out);
            // A section heading is bold already: code marks are dropped.
            out += &format!(
                ".SH \"{}\"\n",
                roff_escape(&heading.replace('`', "").to_uppercase()).replace('"', "\\(dq")
            );
        } else if let Some(heading) = trimmed.strip_prefix("## ").or(trimmed.strip_prefix("### ")) {
            flush(&mut paragraph, &mut out);
            out += &format!(".SS \"{}\"\n", roff_inline(heading).replace('"', "\\(dq"));
        } else if trimmed.starts_with("```") {
            flush(&mut paragraph, &mut out);
            out += ".PP\n.RS 4\n.EX\n";
            for code in lines.by_ref() {
                if code.trim_end().starts_with("```") {
                    break;
                }
                out += &format!("{}\n", roff_escape(code));
            }
            out += ".EE\n.RE\n";
        } else if trimmed.starts_with('|') {
            flush(&mut paragraph, &mut out);
            let mut rows = vec![trimmed.to_string()];
            while lines.peek().is_some_and(|l| l.starts_with('|')) {
                rows.push(lines.next().unwrap().to_string());
            }
            let cells = |row: &str| -> Vec<String> {
                row.trim()
                    .trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().to_string())
                    .collect()
            };
            let header = cells(&rows[0]);
            // Not adjusted (.na): a narrow column at 80 characters cannot
            // be justified, and groff warns "cannot adjust line".
            out += &format!(
                ".na\n.TS\nallbox tab(\t);\n{}.\n",
                vec!["lx"; header.len()].join(" ")
            );
            for (i, row) in rows.iter().enumerate() {
                if i == 1 {
                    continue; // the | --- | line
                }
                let row: Vec<String> = cells(row)
                    .iter()
                    .map(|c| format!("T{{\n{}\nT}}", roff_inline(c)))
                    .collect();
                out += &format!("{}\n", row.join("\t"));
            }
            out += ".TE\n.ad\n";
        } else if let Some(item) = trimmed.strip_prefix("- ") {
            flush(&mut paragraph, &mut out);
            let mut text = item.to_string();
            while lines
                .peek()
                .is_some_and(|l| l.starts_with("  ") && !l.trim().is_empty())
            {
                text.push(' ');
                text.push_str(lines.next().unwrap().trim());
            }
            out += &format!(".IP \\(bu 2\n{}\n", roff_inline(&text));
        } else if let Some((number, item)) = trimmed
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        {
            flush(&mut paragraph, &mut out);
            let mut text = item.to_string();
            while lines
                .peek()
                .is_some_and(|l| l.starts_with("   ") && !l.trim().is_empty())
            {
                text.push(' ');
                text.push_str(lines.next().unwrap().trim());
            }
            out += &format!(".IP {number}. 4\n{}\n", roff_inline(&text));
        } else if trimmed.is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push(trimmed.to_string());
        }
    }
    flush(&mut paragraph, &mut out);
    out += ".SH SEE ALSO\n\\fBshipping_server\\fR(1), \\fBsyncreplica\\fR(1), \\fBmkorder\\fR(1), \\fBlspacket\\fR(1)\n";
    tidy(&out).into_bytes()
}

/// The completion script of one command for `shell`, offering the options
/// as the documentation spells them (`-replica`; `--replica` still works
/// when typed): clap knows only the two-dash form, so bash's and zsh's
/// scripts are respelled like clap's help text, and fish's long options
/// (`-l NAME`, completed as `--NAME`) become old-style ones (`-o NAME`,
/// completed as `-NAME`).
fn render_completion(shell: Shell, command: Command) -> Vec<u8> {
    let name = command.get_name().to_string();
    let mut command = cli::completion_command(command);
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
            // The modes are subcommands spelled as options (`-export`,
            // see `cli::completion_command`): argparse must keep such an
            // unknown option-like word as the command, not fail on it.
            let text = (lines.join("\n") + "\n").replace("argparse -s (", "argparse -s -i (");
            cli::multisite_spelling(&text)
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
    files.push((
        "man/syncreplica-shipping.5".to_string(),
        markdown_to_man(
            shipping::FORMATS,
            "syncreplica-shipping",
            5,
            "shipping.toml and shipping orders of syncreplica's shipping servers",
        ),
    ));
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
        "chreplica",
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
    let format_page = share.join("man/man5/syncreplica-shipping.5");
    assert!(format_page.is_file());
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
fn install_offers_an_s3_build_and_refuses_it_with_prebuilt_binaries() {
    // Review 17d item 16: no way to install with S3 support.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let help = std::process::Command::new(&script)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout)
            .contains("--s3            build with storage bays on S3"),
        "{help:?}"
    );
    let prefix = tempfile::tempdir().unwrap();
    let binaries = crate::helpers::binary_path("syncreplica");
    let out = std::process::Command::new(&script)
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--s3")
        .arg("--binaries")
        .arg(binaries.parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("with --binaries nothing is built"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_dir(prefix.path()).unwrap().count(), 0);
}

#[cfg(not(feature = "s3"))]
#[test]
fn a_build_without_s3_says_how_to_install_one_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("shipping.toml");
    std::fs::write(
        &conf,
        "[classes.default]\nstorage_bay = \"s3://bucket/hub\"\nreturn_bay = \"s3://bucket/hub/return\"\n",
    )
    .unwrap();
    let out = crate::helpers::run(
        dir.path(),
        "shipping_server",
        ["-shipconf", conf.to_str().unwrap(), "-poll"],
    );
    assert!(
        out.stdout.contains("./install.sh --s3") || out.stderr.contains("./install.sh --s3"),
        "{}{}",
        out.stdout,
        out.stderr
    );
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

/// A value for a placeholder of a synopsis, by its name.
fn sample_value(placeholder: &str) -> String {
    let name = placeholder.trim_end_matches('…');
    match name {
        "SIZE" => "50m".into(),
        "WHEN" => "7d".into(),
        "SECS" => "60".into(),
        "ADDR" => "127.0.0.1:7421".into(),
        "HEX" => "ab".repeat(32),
        "ORIGIN=EPOCH" => "boston=3".into(),
        "CLASS" => "default".into(),
        "TEXT" => "a comment".into(),
        "FAMILY" => "projects".into(),
        "DIR" | "PACKET_OR_DIR" | "FILE" | "PACKET" | "ORDER" => "/media/usb".into(),
        _ => "ship".into(),
    }
}

/// The argument lists a synopsis stands for: optional parts included,
/// `{a | b}` once per alternative, `…` (repetition) once, placeholders
/// given sample values.
fn expand_synopsis(synopsis: &str) -> Vec<Vec<String>> {
    let text = synopsis.replace("\\|", "|");
    // Alternatives of the first brace group, each expanded on its own.
    if let (Some(open), Some(close)) = (text.find('{'), text.find('}')) {
        return text[open + 1..close]
            .split('|')
            .flat_map(|choice| {
                expand_synopsis(&format!(
                    "{}{}{}",
                    &text[..open],
                    choice.trim(),
                    &text[close + 1..]
                ))
            })
            .collect();
    }
    // Of a bracketed `a | b`, the first.
    let mut flat = String::new();
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        let close = open + rest[open..].find(']').expect("brackets are balanced");
        flat.push_str(&rest[..open]);
        flat.push_str(rest[open + 1..close].split('|').next().unwrap().trim());
        rest = &rest[close + 1..];
    }
    flat.push_str(rest);
    let words: Vec<String> = flat
        .split_whitespace()
        .filter(|word| *word != "…")
        .map(|word| {
            let bare = word.trim_end_matches('…');
            let is_placeholder = bare
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c == '=');
            match is_placeholder && !bare.is_empty() {
                true => sample_value(bare),
                false => bare.to_string(),
            }
        })
        .collect();
    vec![words]
}

/// Command lines as the README writes them: its commands table's
/// synopses, and the lines of its shell examples that run a command.
fn readme_command_lines() -> Vec<Vec<String>> {
    let readme = include_str!("../../README.md");
    let names: Vec<String> = cli::all_commands()
        .iter()
        .map(|c| c.get_name().to_string())
        .collect();
    let runs = |line: &str| {
        line.split_whitespace()
            .next()
            .is_some_and(|first| names.iter().any(|n| n == first))
    };
    let mut lines = Vec::new();
    let table = readme
        .split("| command | what it does |")
        .nth(1)
        .expect("the README has a commands table");
    let table = table.split("\n\n").next().unwrap();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cell = row[3..].split('`').next().unwrap();
        if runs(cell) && cell.contains(" -") {
            lines.extend(expand_synopsis(cell));
        }
    }
    let mut in_shell = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_shell = true,
            "```" => in_shell = false,
            text if in_shell && runs(text) => {
                // A placeholder in an example (HEX) gets a sample value.
                let command = text.split('#').next().unwrap().trim().trim_end_matches('&');
                lines.extend(expand_synopsis(command));
            }
            _ => {}
        }
    }
    lines
}

/// Command lines the man pages quote (`syncreplica -export -out DIR`),
/// from the texts they are rendered from: each command's long
/// description, its options' help and the text after them.
fn man_page_command_lines() -> Vec<Vec<String>> {
    let names: Vec<String> = cli::all_commands()
        .iter()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut texts = Vec::new();
    for command in cli::all_commands() {
        texts.extend(command.get_long_about().map(|t| t.to_string()));
        texts.extend(command.get_after_long_help().map(|t| t.to_string()));
        for arg in command.get_arguments() {
            texts.extend(arg.get_long_help().map(|t| t.to_string()));
            texts.extend(arg.get_help().map(|t| t.to_string()));
        }
    }
    let mut lines = Vec::new();
    for text in texts {
        for (i, quoted) in text.split('`').enumerate() {
            let first = quoted.split_whitespace().next().unwrap_or_default();
            if i % 2 == 1 && quoted.contains(" -") && names.iter().any(|n| n == first) {
                lines.extend(expand_synopsis(quoted));
            }
        }
    }
    lines
}

/// A page's NAME line is `NAME \- what it does`, short enough for
/// whatis(1) and apropos(1); outside its example blocks (.EX/.EE, which
/// quote output as it is) no Markdown mark is left: `code` is bold.
fn check_no_markdown_and_a_name_line(page: &Path, roff: &str) {
    let stem = page.file_stem().unwrap().to_str().unwrap();
    let name_line = roff
        .lines()
        .skip_while(|line| *line != ".SH NAME")
        .nth(1)
        .unwrap_or_default();
    let (name, what) = name_line
        .split_once(" \\- ")
        .unwrap_or_else(|| panic!("{}: NAME line {name_line:?}", page.display()));
    assert_eq!(name.replace("\\-", "-"), stem, "{}", page.display());
    assert!(
        !what.is_empty() && what.len() <= 80 && !what.ends_with('.'),
        "{}: the NAME line's description should be one short phrase: {what:?}",
        page.display()
    );
    let mut in_example = false;
    for (number, line) in roff.lines().enumerate() {
        match line {
            ".EX" => in_example = true,
            ".EE" => in_example = false,
            _ if !in_example => assert!(
                !line.contains('`') && !line.contains("**"),
                "{}:{}: Markdown left in the roff: {line}",
                page.display(),
                number + 1
            ),
            _ => {}
        }
    }
}

#[test]
fn every_page_passes_mandoc_and_groff_lint() {
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let pages: Vec<std::path::PathBuf> = std::fs::read_dir(&man)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(pages.len(), cli::all_commands().len() + 1, "{pages:?}");
    for page in pages {
        let roff = std::fs::read_to_string(&page).unwrap();
        check_no_markdown_and_a_name_line(&page, &roff);
        // Every .TP item has a tag line and a body (mandoc accepts an
        // empty one; a wrapped line made into an item of its own shows
        // as one).
        let lines: Vec<&str> = roff.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if *line == ".TP" {
                let body = lines.get(i + 2).copied().unwrap_or("");
                assert!(
                    !body.is_empty() && !body.starts_with(".TP") && !body.starts_with(".SH"),
                    "{}: item {:?} has no body",
                    page.display(),
                    lines.get(i + 1)
                );
            }
        }
        if have_tool("mandoc") {
            let lint = std::process::Command::new("mandoc")
                .args(["-T", "lint", "-W", "style"])
                .arg(&page)
                .output()
                .unwrap();
            assert!(
                lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
                "mandoc -T lint {}: {lint:?}",
                page.display()
            );
        }
        if have_tool("groff") {
            let lint = std::process::Command::new("groff")
                .args(["-ww", "-z", "-t", "-man"])
                .arg(&page)
                .output()
                .unwrap();
            assert!(
                lint.status.success() && lint.stderr.is_empty(),
                "groff -ww {}: {lint:?}",
                page.display()
            );
            // As man(1) shows it on an 80-column terminal (line length 78n).
            let narrow = std::process::Command::new("groff")
                .args(["-ww", "-z", "-t", "-man", "-Tutf8", "-rLL=78n"])
                .arg(&page)
                .output()
                .unwrap();
            assert!(
                narrow.status.success() && narrow.stderr.is_empty(),
                "groff -ww -rLL=78n {}: {narrow:?}",
                page.display()
            );
        }
    }
}

#[test]
fn every_command_line_in_the_readme_and_man_pages_parses_as_written() {
    let mut man = man_page_command_lines();
    for command in cli::all_commands() {
        let manual = cli::manual::manual(command.get_name());
        for line in manual
            .synopses
            .iter()
            .chain(manual.examples.iter().map(|(_, l)| l))
        {
            man.extend(expand_synopsis(line));
        }
    }
    assert!(man.len() > 5, "{man:?}");
    let mut lines = readme_command_lines();
    lines.extend(man);
    assert!(lines.len() > 25, "{lines:?}");
    for words in lines {
        let command = cli::all_commands()
            .into_iter()
            .find(|c| c.get_name() == words[0])
            .unwrap();
        let args = cli::normalize_args(
            &command,
            words.iter().map(std::ffi::OsString::from).collect(),
        );
        if let Err(err) = command.try_get_matches_from(args) {
            panic!("README: {}: {}", words.join(" "), err.render());
        }
    }
}

/// What bash completes after `words` (the last one being completed) with
/// the committed completion script of `command`.
fn bash_completions(command: &str, words: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = format!(
        "source {:?}\nCOMP_WORDS=({})\nCOMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n\
         _{command} {command} \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        root.join("completions/bash").join(command),
        words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_offer_the_options_of_the_chosen_mode() {
    let modes = bash_completions("syncreplica", &["syncreplica", "-"]);
    assert_eq!(
        modes,
        ["-status", "-record", "-scrub", "-export", "-import", "-verify"],
        "the first word is the mode"
    );
    let export = bash_completions("syncreplica", &["syncreplica", "-export", "-"]);
    let import = bash_completions("syncreplica", &["syncreplica", "-import", "-"]);
    for option in [
        "-out", "-maxsize", "-ack", "-fship", "-quiet", "-fmt", "-replica",
    ] {
        assert!(export.contains(&option.to_string()), "{option}: {export:?}");
    }
    for option in ["-receive", "-remove", "-status", "-import"] {
        assert!(
            !export.contains(&option.to_string()),
            "{option}: {export:?}"
        );
    }
    for option in ["-receive", "-remove", "-quiet", "-fmt", "-replica"] {
        assert!(import.contains(&option.to_string()), "{option}: {import:?}");
    }
    for option in ["-out", "-maxsize", "-ack", "-export"] {
        assert!(
            !import.contains(&option.to_string()),
            "{option}: {import:?}"
        );
    }
    // Options later in the line still complete in their mode; values too.
    let later = bash_completions(
        "syncreplica",
        &["syncreplica", "-export", "-out", "x", "-res"],
    );
    assert_eq!(later, ["-resendpath", "-resend"]);
    let formats = bash_completions("syncreplica", &["syncreplica", "-import", "-fmt", ""]);
    assert_eq!(formats, ["text", "json"]);
    let mk = bash_completions("mkreplica", &["mkreplica", "-import", "-"]);
    assert!(mk.contains(&"-fingerprint".to_string()), "{mk:?}");
    assert!(!mk.contains(&"-family".to_string()), "{mk:?}");
}

/// Every option of every command (of each of its modes) is offered by
/// each shell's completion script: none is left out of a per-mode list.
#[test]
fn every_option_appears_in_each_completion_script() {
    for command in cli::all_commands() {
        let name = command.get_name().to_string();
        let completed = cli::completion_command(command.clone());
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(render_completion(shell, command.clone())).unwrap();
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                let Some(long) = arg.get_long() else { continue };
                if ["help", "version"].contains(&long) {
                    continue;
                }
                let written = match shell {
                    Shell::Fish => format!("-o {long}"),
                    _ => format!("-{long}"),
                };
                // A mode is a subcommand named as typed ("-export").
                let is_mode = completed
                    .get_subcommands()
                    .any(|s| s.get_name() == format!("-{long}"));
                assert!(
                    script.contains(&written)
                        || (is_mode && script.contains(&format!("\"-{long}\""))),
                    "{shell:?} completion of {name} lacks -{long}"
                );
            }
            // Each mode offers every option whose help names that mode.
            for sub in completed.get_subcommands() {
                let mode = sub.get_name();
                for arg in command.get_arguments() {
                    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                    let names_mode = help
                        .strip_prefix("With ")
                        .and_then(|rest| rest.split_once(':'))
                        .is_some_and(|(names, _)| names.split([' ', ',']).any(|word| word == mode));
                    if names_mode {
                        assert!(
                            sub.get_arguments().any(|a| a.get_id() == arg.get_id()),
                            "{name} {mode} completion lacks {:?}",
                            arg.get_long()
                        );
                    }
                }
            }
        }
    }
}
