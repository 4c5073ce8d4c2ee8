//! From a command's outcome to what the user sees: `COMMAND: error: …`, a
//! `hint:` line where one helps, and the documented exit code. Hints and
//! exit codes live here, not in the library's errors.

use std::io::Write;
use std::process::ExitCode;

use crate::error::{Error, Refusal};

use super::{EXIT_FAILURE, EXIT_LOCKED, EXIT_SUCCESS, EXIT_USAGE};

/// A command line that clap accepted but that is still wrong (a
/// combination of options, a missing operand): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Returns early with a [`Usage`] error.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::cli::report::Usage(format!($($arg)*)).into())
    };
}
pub(crate) use usage;

/// Prints `err` (if any) as `NAME: error: …` and an optional hint, and
/// returns the exit code. A closed standard output (`| head`) is not an
/// error: the command stops quietly with 0, as ripgrep does.
pub fn report(name: &str, outcome: anyhow::Result<()>) -> ExitCode {
    let err = match outcome {
        Ok(()) => return ExitCode::from(EXIT_SUCCESS as u8),
        Err(err) => err,
    };
    if is_broken_pipe(&err) {
        return ExitCode::from(EXIT_SUCCESS as u8);
    }
    let mut stderr = std::io::stderr().lock();
    // `{:#}` is the message with its causes, joined by ": "; the library's
    // errors print their cause in Display and expose no source, so nothing
    // is said twice.
    let _ = writeln!(stderr, "{name}: error: {err:#}");
    let library = err.chain().find_map(|e| e.downcast_ref::<Error>());
    if let Some(hint) = library.and_then(hint) {
        let _ = writeln!(stderr, "{name}: hint: {hint}");
    }
    let code = if err.chain().any(|e| e.is::<Usage>()) {
        let _ = writeln!(stderr, "{name}: hint: {name} --help lists the options");
        EXIT_USAGE
    } else {
        library.map_or(EXIT_FAILURE, exit_code)
    };
    ExitCode::from(code as u8)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(e.downcast_ref::<Error>(), Some(Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Process exit code for a library error (documented in every man page).
pub fn exit_code(err: &Error) -> i32 {
    match err {
        Error::Locked { .. } => EXIT_LOCKED,
        Error::BadSize { .. } | Error::BadExpiry { .. } => EXIT_USAGE,
        _ => EXIT_FAILURE,
    }
}

/// A second line for the user: what to do about it.
pub fn hint(err: &Error) -> Option<String> {
    Some(match err {
        Error::NoReplica { .. } => {
            "run the command inside a replica, name one with -replica DIR, or create one with mkreplica -init".into()
        }
        Error::AlreadyInReplica { .. } | Error::ContainsReplica { .. } => {
            "replicas cannot be nested; choose a directory outside any replica".into()
        }
        Error::Locked { .. } => {
            "wait for that process to finish; a lock whose process has died is taken over automatically".into()
        }
        Error::BadSize { .. } => {
            "write a number of bytes with an optional k, m or g suffix, e.g. 50m".into()
        }
        Error::UnknownReplica { .. } => "lsreplica lists the family's members".into(),
        Error::BadEpochSetting { .. } => {
            "write ORIGIN=EPOCH, e.g. boston=1300, with ORIGIN a member's name".into()
        }
        Error::SchemaTooNew { .. } => "use a newer syncreplica".into(),
        Error::Refused(Refusal::MissingContent { .. }) => return None,
        Error::Shipping(shipping::Error::UnknownClass { .. }) => {
            "storage classes are the [classes.NAME] tables of shipping.toml; without -sclass the class is \"default\"".into()
        }
        Error::Shipping(shipping::Error::Config { .. }) => {
            "shipping_server(1) and shipping/FORMAT.md describe every key".into()
        }
        _ => return None,
    })
}
