//! The passphrase of a creation packet (SPEC.md §4.2): read from
//! `-passphrase-file FILE`, or asked on the terminal without echo.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use age::secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, PassphraseProblem, Result};

/// The fewest characters a new passphrase (at `mkreplica -export`) may
/// have. The passphrase is all that protects the new member's secret keys
/// on a stick that may be lost, against an offline guesser that scrypt
/// only slows down: 8 characters is the floor NIST SP 800-63B sets for a
/// memorized secret a user chooses. A passphrase given at `-import` is
/// taken as it is: whatever opens the packet is right.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// The passphrase, from `file` (its first line, without the line end) or,
/// without one, asked on the terminal: twice when `confirm` (a new
/// passphrase, at export), once otherwise. `what` names what needs it,
/// for the error when there is no terminal ([`Error::NoTerminal`], checked
/// before anything is asked). An empty passphrase is refused, and a new
/// one (`confirm`) shorter than [`MIN_PASSPHRASE_CHARS`]. A file that
/// cannot be read is [`Error::PassphraseFile`].
pub fn obtain(file: Option<&Path>, confirm: bool, what: &str) -> Result<Arc<SecretString>> {
    let (passphrase, from) = match file {
        Some(path) => (
            from_file(path)?,
            format!("-passphrase-file {}", path.display()),
        ),
        None => (
            from_terminal(confirm, what)?,
            "typed on the terminal".to_string(),
        ),
    };
    let len = passphrase.expose_secret().chars().count();
    if confirm && len < MIN_PASSPHRASE_CHARS {
        return Err(Error::BadPassphrase {
            from,
            why: PassphraseProblem::TooShort {
                len,
                min: MIN_PASSPHRASE_CHARS,
            },
        });
    }
    Ok(Arc::new(passphrase))
}

fn from_file(path: &Path) -> Result<SecretString> {
    let from = format!("-passphrase-file {}", path.display());
    let bytes = std::fs::read(path).map_err(|cause| Error::PassphraseFile {
        path: path.to_path_buf(),
        cause,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Error::BadPassphrase {
        from: from.clone(),
        why: PassphraseProblem::NotText,
    })?;
    // The first line only, so a file written with echo (one line end) or
    // an editor (a last line end) holds what was meant.
    let line = text.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(Error::BadPassphrase {
            from,
            why: PassphraseProblem::EmptyFirstLine,
        });
    }
    Ok(SecretString::from(line.to_string()))
}

fn from_terminal(confirm: bool, what: &str) -> Result<SecretString> {
    // A script with no terminal gets an error, not a prompt nobody sees
    // (rpassword would open /dev/tty, which a cron job may still have).
    if !std::io::stdin().is_terminal() {
        return Err(Error::NoTerminal { what: what.into() });
    }
    let from = "typed on the terminal".to_string();
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(SecretString::from)
            .map_err(|err| Error::BadPassphrase {
                from: from.clone(),
                why: PassphraseProblem::Terminal(err.to_string()),
            })
    };
    let first = ask(if confirm {
        "New passphrase for the creation packet: "
    } else {
        "Passphrase of the creation packet: "
    })?;
    if first.expose_secret().is_empty() {
        return Err(Error::BadPassphrase {
            from,
            why: PassphraseProblem::Empty,
        });
    }
    if confirm {
        let again = ask("The same passphrase again: ")?;
        if again.expose_secret() != first.expose_secret() {
            return Err(Error::BadPassphrase {
                from,
                why: PassphraseProblem::Differ,
            });
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new passphrase (export) needs [`MIN_PASSPHRASE_CHARS`]; one given
    /// to open a packet (import) is taken as it is.
    #[test]
    fn only_a_new_passphrase_needs_eight_characters() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passphrase");
        std::fs::write(&file, "seven77\n").unwrap();
        match obtain(Some(&file), true, "test") {
            Err(Error::BadPassphrase {
                why: PassphraseProblem::TooShort { len: 7, min: 8 },
                ..
            }) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_eq!(
            obtain(Some(&file), false, "test").unwrap().expose_secret(),
            "seven77"
        );
        // Characters, not bytes: eight letters that take more bytes.
        std::fs::write(&file, "ééééé中中中\n").unwrap();
        assert!(obtain(Some(&file), true, "test").is_ok());
        std::fs::write(&file, "éééé中中中\n").unwrap();
        assert!(obtain(Some(&file), true, "test").is_err());
        // A missing file: said as such, with the OS's error.
        match obtain(Some(&dir.path().join("none")), false, "test") {
            Err(Error::PassphraseFile { cause, .. }) => {
                assert_eq!(cause.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
