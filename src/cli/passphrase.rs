//! The passphrase of a creation packet (SPEC.md §4.2): read from
//! `-passphrase-file FILE`, or asked on the terminal without echo.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use age::secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// The passphrase, from `file` (its first line, without the line end) or,
/// without one, asked on the terminal: twice when `confirm` (a new
/// passphrase, at export), once otherwise. `what` names what needs it,
/// for the error when there is no terminal ([`Error::NoTerminal`], checked
/// before anything is asked). An empty passphrase is refused.
pub fn obtain(file: Option<&Path>, confirm: bool, what: &str) -> Result<Arc<SecretString>> {
    let passphrase = match file {
        Some(path) => from_file(path)?,
        None => from_terminal(confirm, what)?,
    };
    Ok(Arc::new(passphrase))
}

fn from_file(path: &Path) -> Result<SecretString> {
    let from = format!("-passphrase-file {}", path.display());
    let bytes = std::fs::read(path).map_err(|err| Error::BadPassphrase {
        from: from.clone(),
        why: err.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Error::BadPassphrase {
        from: from.clone(),
        why: "not UTF-8 text".into(),
    })?;
    // The first line only, so a file written with echo (one line end) or
    // an editor (a last line end) holds what was meant.
    let line = text.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(Error::BadPassphrase {
            from,
            why: "its first line is empty".into(),
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
                why: err.to_string(),
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
            why: "it is empty".into(),
        });
    }
    if confirm {
        let again = ask("The same passphrase again: ")?;
        if again.expose_secret() != first.expose_secret() {
            return Err(Error::BadPassphrase {
                from,
                why: "the two passphrases typed differ".into(),
            });
        }
    }
    Ok(first)
}
