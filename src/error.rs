//! Typed errors of the library. Every variant names the file or value it is
//! about, so the CLI can print `COMMAND: error: WHAT` without guessing.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    #[error("no replica found in {start} or any of its parent directories")]
    NoReplica { start: PathBuf },

    #[error("{path} is already inside replica \"{name}\" (rooted at {root})")]
    AlreadyInReplica {
        path: PathBuf,
        root: PathBuf,
        name: String,
    },

    #[error("{path} already holds a replica (rooted at {root}) below it")]
    ContainsReplica { path: PathBuf, root: PathBuf },

    #[error("replica {root} is locked by process {pid}{}", holder_detail(.command))]
    Locked {
        root: PathBuf,
        pid: u32,
        command: Option<String>,
    },

    #[error("state database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "state database {path} has schema version {found}; this program knows version {known}"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error("state database {path} is damaged: {what}")]
    CorruptState { path: PathBuf, what: String },

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{path}: bad exclude pattern: {message}")]
    ExcludePattern { path: PathBuf, message: String },

    #[error("invalid size \"{value}\": {why}")]
    BadSize { value: String, why: String },

    #[error("invalid replica name \"{name}\": {why}")]
    BadName { name: String, why: String },

    #[error("unknown replica \"{name}\" in family \"{family}\"")]
    UnknownReplica { name: String, family: String },

    #[error("invalid epoch setting \"{value}\": {why}")]
    BadEpochSetting { value: String, why: String },

    #[error("row \"{name}\" is this replica's own row; it is exact and cannot be changed")]
    OwnEpochRow { name: String },

    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },

    #[error("identity file {path} is damaged: {what}")]
    BadIdentity { path: PathBuf, what: String },

    #[error("packet path \"{path}\" refused: {why}")]
    HostilePath { path: String, why: String },

    #[error("{what}")]
    ApplyFailed { what: String },

    #[error("{message}")]
    Packet { message: String },

    #[error("invalid -pexpire \"{value}\": {why}")]
    BadExpiry { value: String, why: String },

    #[error(transparent)]
    Shipping(shipping::Error),
}

fn holder_detail(command: &Option<String>) -> String {
    match command {
        Some(command) => format!(" ({command})"),
        None => String::new(),
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A second line for the user: what to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NoReplica { .. } => Some(
                "run the command inside a replica, name one with -replica DIR, or create one with mkreplica -init"
                    .into(),
            ),
            Error::AlreadyInReplica { .. } | Error::ContainsReplica { .. } => {
                Some("replicas cannot be nested; choose a directory outside any replica".into())
            }
            Error::Locked { .. } => Some(
                "wait for that process to finish; a lock whose process has died is taken over automatically"
                    .into(),
            ),
            Error::BadSize { .. } => {
                Some("write a number of bytes with an optional k, m or g suffix, e.g. 50m".into())
            }
            Error::UnknownReplica { .. } => Some("lsreplica lists the family's members".into()),
            Error::BadEpochSetting { .. } => {
                Some("write ORIGIN=EPOCH, e.g. boston=1300, with ORIGIN a member's name".into())
            }
            Error::SchemaTooNew { .. } => Some("use a newer syncreplica".into()),
            Error::Shipping(shipping::Error::UnknownClass { .. }) => Some(
                "storage classes are the [classes.NAME] tables of shipping.toml; without -sclass the class is \"default\"".into(),
            ),
            Error::Shipping(shipping::Error::Config { .. }) => {
                Some("shipping_server(1) and shipping/FORMAT.md describe every key".into())
            }
            _ => None,
        }
    }

    /// Process exit code for this error (documented in every man page).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Locked { .. } => crate::cli::EXIT_LOCKED,
            _ => crate::cli::EXIT_FAILURE,
        }
    }
}

impl From<rusqlite::Error> for Error {
    /// For SQL run inside `State::transaction`, which puts in the
    /// database's path before the error leaves it.
    fn from(source: rusqlite::Error) -> Error {
        Error::Database {
            path: PathBuf::new(),
            source,
        }
    }
}

/// Adds the path to an `io::Error`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::io(path, source))
    }
}
