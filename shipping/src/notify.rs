//! Telling an administrator: the configured `notify` command is run by
//! `/bin/sh -c`, with the message on its standard input and the subject in
//! the environment, so `mail -s "$SYNCREPLICA_SUBJECT" root` works as is.

use std::io::Write;
use std::process::{Command, Stdio};

/// Environment variable holding the notification's subject.
pub const SUBJECT_ENV: &str = "SYNCREPLICA_SUBJECT";
/// Environment variable holding the packet file name concerned.
pub const PACKET_ENV: &str = "SYNCREPLICA_PACKET";
/// Environment variable holding what happened (`expired`).
pub const EVENT_ENV: &str = "SYNCREPLICA_EVENT";

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event: &'static str,
    pub packet: String,
    pub subject: String,
    pub body: String,
}

/// Runs `command` for `notice` and waits for it; an error says why it
/// failed (it does not undo what is being notified).
pub fn run(command: &str, notice: &Notice) -> Result<(), String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env(SUBJECT_ENV, &notice.subject)
        .env(PACKET_ENV, &notice.packet)
        .env(EVENT_ENV, notice.event)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("notify command {command:?}: cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is not an error.
        let _ = stdin.write_all(notice.body.as_bytes());
    }
    let status = child
        .wait()
        .map_err(|e| format!("notify command {command:?}: {e}"))?;
    if !status.success() {
        return Err(format!("notify command {command:?} failed ({status})"));
    }
    Ok(())
}
