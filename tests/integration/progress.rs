//! The progress line: in bytes, with rate and time left, on a terminal
//! only (a pseudo-terminal here), never in pipes; `-quiet` silences it and
//! the summaries.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::helpers::*;

/// Runs the program in a pseudo-terminal (python3's `pty`: standard
/// input, output and error are all the terminal, 120 columns wide) and
/// returns its exit code and everything it wrote there.
const PTY_RUNNER: &str = r#"
import fcntl, os, pty, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    columns = int(os.environ.get('PTY_COLUMNS', '120'))
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 24, columns, 0, 0))
    os.execv(sys.argv[1], sys.argv[1:])
out = b''
log = open(os.environ['PTY_LOG'], 'ab', buffering=0) if os.environ.get('PTY_LOG') else None
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
    if log:
        log.write(data)
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

///
/// Each step's line is drawn at once (`SYNCREPLICA_TEST_PROGRESS_AFTER_MS`
/// 0), so the small trees here show it; [`run_on_terminal_as_is`] keeps
/// the real delay.
fn run_on_terminal<I, S>(cwd: &Path, name: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_on_terminal_of(120, cwd, name, args)
}

/// [`run_on_terminal`] on a terminal `columns` wide.
fn run_on_terminal_of<I, S>(columns: u16, cwd: &Path, name: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = pty_command(columns, cwd, name, args);
    command.env("SYNCREPLICA_TEST_PROGRESS_AFTER_MS", "0");
    ran(command.output().expect("python3 runs"))
}

/// [`run_on_terminal`] with a step's line drawn after the real delay.
fn run_on_terminal_as_is<I, S>(cwd: &Path, name: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ran(pty_command(120, cwd, name, args)
        .output()
        .expect("python3 runs"))
}

/// The command that runs `name args…` on a pseudo-terminal `columns` wide.
fn pty_command<I, S>(columns: u16, cwd: &Path, name: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new("python3");
    command
        .env("PTY_COLUMNS", columns.to_string())
        .arg("-c")
        .arg(PTY_RUNNER)
        .arg(binary_path(name))
        .args(with_test_passphrase(name, args))
        .env("SYNCREPLICA_TEST_SCRYPT_LOG_N", "10")
        .env("XDG_DATA_HOME", test_data_home())
        .env_remove("SYNCREPLICA_TEST_PROGRESS_AFTER_MS")
        .current_dir(cwd);
    command
}

fn ran(output: std::process::Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Whether `text` holds a progress line of the phase `what`: its text and
/// a byte rate.
fn shows_progress(text: &str, what: &str) -> bool {
    text.lines()
        .flat_map(|line| line.split('\r'))
        .any(|line| line.contains(what) && line.contains("B/s"))
}

/// Nothing a progress line writes: no phase text, no rate, no escapes.
#[track_caller]
fn assert_no_progress(run: &Run) {
    for text in [&run.stdout, &run.stderr] {
        for sign in [
            "B/s",
            "scanning the tree",
            "hashing new",
            "exporting to",
            "\x1b[",
        ] {
            assert!(!text.contains(sign), "{sign:?} in {text:?}");
        }
    }
}

/// The arguments of `syncreplica -export -out OUT b`.
fn export_for_b(out: &Path) -> [&OsStr; 4] {
    [
        OsStr::new("-export"),
        OsStr::new("-out"),
        out.as_os_str(),
        OsStr::new("b"),
    ]
}

/// The arguments of `syncreplica -import OUT`.
fn import_of(out: &Path) -> [&OsStr; 2] {
    [OsStr::new("-import"), out.as_os_str()]
}

/// What a terminal shows of `stdout`: erased lines taken out and each
/// redraw (after a carriage return) on a line of its own.
fn screen_of(stdout: &str) -> String {
    stdout.replace("\x1b[2K", "").replace('\r', "\n")
}

/// A family a, b where a has 3 MB more than b: a large enough export.
fn family_with_new_content() -> Family {
    let family = family(&["a", "b"], &[("small", "x")]);
    std::fs::write(family.root("a").join("big"), random_bytes(7, 3 << 20)).unwrap();
    family
}

#[test]
fn progress_is_shown_in_bytes_on_a_terminal() {
    let family = family_with_new_content();
    let out = family.packet_dir("tty");
    let export = run_on_terminal(&family.root("a"), "syncreplica", export_for_b(&out)).ok();
    for phase in ["hashing new and changed files", "exporting to b"] {
        assert!(
            shows_progress(&export.stdout, phase),
            "{phase}: {}",
            export.stdout
        );
    }
    // The scan's walk counts files.
    assert!(export.stdout.contains("files"), "{}", export.stdout);
    // The summary follows on a line of its own, not glued to the bar.
    let screen = screen_of(&export.stdout);
    assert!(
        screen.lines().any(|line| line.starts_with("Exported to b")),
        "{}",
        export.stdout
    );
    let import = run_on_terminal(&family.root("b"), "syncreplica", import_of(&out)).ok();
    for phase in [
        "checking packets",
        "verifying sync_a_",
        "writing new content",
    ] {
        assert!(
            shows_progress(&import.stdout, phase),
            "{phase}: {}",
            import.stdout
        );
    }
    assert_eq!(
        std::fs::read(family.root("b").join("big")).unwrap(),
        random_bytes(7, 3 << 20)
    );
    let verify = run_on_terminal(&family.root("b"), "syncreplica", ["-verify"]).ok();
    assert!(
        shows_progress(&verify.stdout, "reading recorded files back"),
        "{}",
        verify.stdout
    );
}

#[test]
fn progress_never_goes_to_pipes() {
    let family = family_with_new_content();
    let out = family.packet_dir("pipe");
    let export = export_to(&family.root("a"), &out, &["b"], &[]).ok();
    assert_no_progress(&export);
    assert!(export.stdout.contains("Exported to b"), "{}", export.stdout);
    let import = import_from(&family.root("b"), &[&out]).ok();
    assert_no_progress(&import);
    assert!(
        import.stdout.contains("Applied packet from a"),
        "{}",
        import.stdout
    );
}

#[test]
fn quiet_silences_progress_and_summaries_but_not_the_work() {
    let family = family_with_new_content();
    let out = family.packet_dir("quiet");
    let export = run_on_terminal(
        &family.root("a"),
        "syncreplica",
        [
            OsStr::new("-export"),
            "-quiet".as_ref(),
            "-out".as_ref(),
            out.as_os_str(),
            "b".as_ref(),
        ],
    )
    .ok();
    assert_no_progress(&export);
    assert!(!export.stdout.contains("Exported"), "{}", export.stdout);
    assert_eq!(packet_files(&out).len(), 1);
    let import = run_on_terminal(
        &family.root("b"),
        "syncreplica",
        [OsStr::new("-import"), "-q".as_ref(), out.as_os_str()],
    )
    .ok();
    assert_no_progress(&import);
    assert!(!import.stdout.contains("Applied"), "{}", import.stdout);
    assert!(family.root("b").join("big").exists());
    // -status prints what it is asked for: -quiet would only hide it.
    run(&family.root("b"), "syncreplica", ["-status", "-quiet"]).fails_with(2);
    // The new member's fingerprint is the one line -quiet keeps: the
    // receiving site needs it.
    let creation = family.packet_dir("quiet-creation");
    let made = run(
        &family.root("a"),
        "mkreplica",
        [
            OsStr::new("-export"),
            "-quiet".as_ref(),
            "-out".as_ref(),
            creation.as_os_str(),
            "c".as_ref(),
        ],
    )
    .ok();
    assert!(
        made.stdout.contains("fingerprint") && !made.stdout.contains("Wrote"),
        "{}",
        made.stdout
    );
}

#[test]
fn mkreplica_import_shows_progress_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("big"), random_bytes(3, 3 << 20)).unwrap();
    init(&first, "a");
    let out = dir.path().join("creation");
    let export = run_on_terminal(&first, "mkreplica", export_for_b(&out)).ok();
    assert!(
        shows_progress(&export.stdout, "writing the creation packet"),
        "{}",
        export.stdout
    );
    let root = dir.path().join("b");
    let import = run_on_terminal(
        dir.path(),
        "mkreplica",
        [
            OsStr::new("-import"),
            "-replica".as_ref(),
            root.as_os_str(),
            out.as_os_str(),
        ],
    )
    .ok();
    for phase in [
        "checking packets",
        "verifying the creation packet",
        "writing the replica's files",
    ] {
        assert!(
            shows_progress(&import.stdout, phase),
            "{phase}: {}",
            import.stdout
        );
    }
    assert!(
        import.stdout.contains("Created replica \"b\""),
        "{}",
        import.stdout
    );
}

#[test]
fn shipping_deliveries_show_progress_on_a_terminal() {
    let family = family_with_new_content();
    let conf = bay_shipping_conf(family.dir.path());
    std::fs::create_dir_all(family.dir.path().join("relay")).unwrap();
    let export = run_on_terminal(
        &family.root("a"),
        "syncreplica",
        [
            OsStr::new("-export"),
            "-fship".as_ref(),
            "-shipconf".as_ref(),
            conf.as_os_str(),
            "b".as_ref(),
        ],
    )
    .ok();
    assert!(
        shows_progress(&export.stdout, "copying sync_a_"),
        "{}",
        export.stdout
    );
    assert_eq!(packet_files(&family.dir.path().join("relay")).len(), 1);
}

/// Every line drawn on the terminal, escape sequences taken out, each
/// redraw (after a carriage return) on its own.
fn drawn_lines(text: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then one final letter.
            if chars.peek() == Some(&'[') {
                chars.next();
                for next in chars.by_ref() {
                    if next.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\r', '\n'])
        .map(str::to_string)
        .filter(|line| !line.is_empty())
        .collect()
}

/// On a narrow terminal the progress line still fits on one line: the
/// bar goes first, then a long name is shortened in the middle with "…".
#[test]
fn the_progress_line_fits_a_narrow_terminal() {
    let fam = family_with_new_content();
    let out = fam.packet_dir("narrow");
    export_to(&fam.root("a"), &out, &["b"], &[]).ok();
    // "verifying sync_a_…_b_2.zip" is longer than the room left.
    let columns = 60;
    let run = run_on_terminal_of(columns, &fam.root("b"), "syncreplica", import_of(&out));
    assert_eq!(run.code, 0, "{}", run.stdout);
    let progress: Vec<String> = drawn_lines(&run.stdout)
        .into_iter()
        .filter(|line| line.contains("B/s"))
        .collect();
    assert!(!progress.is_empty(), "{}", run.stdout);
    for line in &progress {
        assert!(
            line.trim_end().chars().count() < usize::from(columns),
            "wider than {columns} columns: {line:?}"
        );
    }
    assert!(
        progress
            .iter()
            .any(|line| line.contains("verify…") && line.contains("Z_b_2.zip")),
        "a long name shortened in the middle: {progress:#?}"
    );
}

/// A step done in less than a second draws no progress line: one drawn
/// and cleared at once is only flicker.
#[test]
fn a_quick_step_draws_no_progress_line() {
    let family = family(&["a", "b"], &[("small", "x")]);
    std::fs::write(family.root("a").join("new"), "a few bytes").unwrap();
    let out = family.packet_dir("quick");
    let export = run_on_terminal_as_is(&family.root("a"), "syncreplica", export_for_b(&out)).ok();
    assert_no_progress(&export);
    assert!(export.stdout.contains("Exported to b"), "{}", export.stdout);
    let import = run_on_terminal_as_is(&family.root("b"), "syncreplica", import_of(&out)).ok();
    assert_no_progress(&import);
    assert!(family.root("b").join("new").exists());
}

/// A step that runs for a second draws its line then: an export held at
/// its first written operation (the pause hook) shows "exporting to b"
/// while it waits, and goes on when the test has seen it.
#[test]
fn a_step_that_runs_for_a_second_draws_its_line() {
    let family = family_with_new_content();
    let out = family.packet_dir("slow");
    let marker = family.dir.path().join("paused");
    let log = family.dir.path().join("terminal.log");
    let mut child = pty_command(120, &family.root("a"), "syncreplica", export_for_b(&out))
        .env("PTY_LOG", &log)
        .env("SYNCREPLICA_TEST_PAUSE_AT", "export-writing")
        .env("SYNCREPLICA_TEST_PAUSE_MARKER", &marker)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // Waits for what the terminal shows, not for time to pass (bounded,
    // so a broken build fails rather than hangs).
    let started = std::time::Instant::now();
    let shown = loop {
        let text = std::fs::read(&log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text).into_owned();
        if marker.exists() && shows_progress(&text, "exporting to b") {
            break true;
        }
        if child.try_wait().unwrap().is_some() || started.elapsed().as_secs() > 120 {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&marker);
    let output = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(shown, "no progress line while paused: {screen}");
    assert_eq!(output.status.code(), Some(0), "{screen}");
    assert!(screen.contains("Exported to b"), "{screen}");
}

/// The import's verification of a packet in parts names the part being
/// checked (review 17c item 8: the line kept naming part 1 while parts 2
/// and 3 were checked).
#[test]
fn the_verify_line_names_each_part_as_it_is_checked() {
    let family = family_with_new_content();
    let out = family.packet_dir("parts");
    export_to(&family.root("a"), &out, &["b"], &["-maxsize", "1m"]).ok();
    let mut parts: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".zip"))
        .collect();
    parts.sort();
    assert!(parts.len() >= 3, "{parts:?}");
    let import = run_on_terminal(&family.root("b"), "syncreplica", import_of(&out)).ok();
    for part in &parts {
        let stem = part.trim_end_matches(".zip");
        assert!(
            shows_progress(&import.stdout, &format!("verifying {stem}")),
            "{part}: {}",
            import.stdout
        );
    }
}

/// The time left is shown only once a step has run a few seconds and done
/// some of its bytes (review 17d item 14: "00:53:57" from a slow start,
/// rising, for a step done in 3 s): the first line of each step shows
/// `--:--:--`.
#[test]
fn time_left_waits_until_it_means_something() {
    let family = family_with_new_content();
    let out = family.packet_dir("tty");
    let export = run_on_terminal(&family.root("a"), "syncreplica", export_for_b(&out)).ok();
    let screen = screen_of(&export.stdout);
    let mut seen = std::collections::BTreeSet::new();
    for line in screen
        .lines()
        .filter(|l| l.contains("% ") && l.contains("B/s"))
    {
        // The step's text is what follows the time field.
        let step = line
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string();
        if seen.insert(step) {
            assert!(line.contains("--:--:--"), "{line:?} in {screen}");
        }
    }
    assert!(!seen.is_empty(), "{screen}");
}
