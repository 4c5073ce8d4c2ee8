//! Typed errors. Every variant names what it is about: the file, the
//! configuration key, the bay entry or the destination.
//!
//! A variant that wraps a lower-level error shows it in its own message
//! (`{cause}`) and does not also report it as its `source()`, so that a
//! caller printing the whole chain (anyhow's `{:#}`) shows it once.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `shipping.toml` is malformed: an unknown key, a bad value or an
    /// inconsistency between entries.
    #[error("{}: {}{message}", path.display(), crate::toml_config::position(*line, key.as_deref()))]
    Config {
        path: PathBuf,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// The key as written (`table.key`), when known.
        key: Option<String>,
        message: String,
    },

    /// A configuration file that was asked for explicitly (`-shipconf`,
    /// `SYNCREPLICA_SHIPPING_CONF`) does not exist.
    #[error("{}: shipping configuration not found ({origin})", path.display())]
    ConfigMissing { path: PathBuf, origin: &'static str },

    /// No configuration file exists and there is no home directory to put
    /// the default storage bays in.
    #[error(
        "no shipping configuration found and no user data directory for the default storage bays"
    )]
    NoDataDir,

    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        /// Shown in the message, so not a `source()`.
        cause: std::io::Error,
    },

    /// An operation on a bay entry failed.
    #[error("{bay}: {name}: {cause}")]
    Bay {
        bay: String,
        name: String,
        /// Shown in the message, so not a `source()`.
        cause: std::io::Error,
    },

    /// An S3 bay that cannot be used as configured: bad settings, no
    /// credentials, or a service that ignores conditional writes.
    #[error("{bay}: {message}")]
    S3 { bay: String, message: String },

    /// An S3 bay the service will not let us use as configured: the
    /// endpoint cannot be reached, the bucket does not exist, the
    /// credentials are missing, wrong or not allowed; `hint` says what to
    /// do about it.
    #[error("{bay} (endpoint {endpoint}): {problem}")]
    S3Access {
        bay: String,
        endpoint: String,
        problem: String,
        hint: String,
    },

    /// A bay entry name that is not a plain file name.
    #[error("{bay}: bad entry name {name:?}: {why}")]
    BadEntryName {
        bay: String,
        name: String,
        why: &'static str,
    },

    /// No route, default route or destination entry leads to `destination`.
    #[error("no route to {destination:?}: {why}")]
    UnknownDestination { destination: String, why: String },

    /// Following routes for `destination` came back to a name already seen.
    #[error("route loop for {destination:?}: {}", chain.join(" -> "))]
    RouteLoop {
        destination: String,
        chain: Vec<String>,
    },

    /// No storage class of that name is configured.
    #[error("no storage class {class:?}: it has no [classes.{class}] table")]
    UnknownClass { class: String },

    /// A packet copied into a directory bay or destination (a stick)
    /// found its filesystem full: what was written of it was removed.
    #[error(
        "{bay}: no room for {name}: the disk is full ({} free); nothing of it was left there",
        crate::size::human(*free)
    )]
    BayFull {
        bay: String,
        name: String,
        free: u64,
    },

    /// A shipping order that cannot be read or does not make sense;
    /// `bay` is empty for an order named on the command line.
    #[error("{}shipping order {name}: {message}", bay_prefix(bay))]
    Order {
        bay: String,
        name: String,
        message: String,
    },

    /// The destination is not (or no longer) among the order's remaining
    /// destinations.
    #[error("shipping order for {packet}: {destination:?} is not a remaining destination")]
    NotADestination { packet: String, destination: String },

    /// A replica named in `trusted_replicas` whose members cannot be read.
    #[error("trusted replica {}: {message}", root.display())]
    TrustedReplica { root: PathBuf, message: String },

    /// The HTTP listener could not be started.
    /// `kind` lets the command give a hint that fits the cause.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        addr: String,
        message: String,
        kind: std::io::ErrorKind,
    },

    /// Delivery to a hop failed.
    #[error("{hop}: {message}")]
    Delivery { hop: String, message: String },

    /// The hop is receiving another upload of this packet (it answered
    /// 409 each time it was asked): not a failure of the link, tried
    /// again in the next pass.
    #[error("{hop}: {message}")]
    Busy { hop: String, message: String },

    /// The packet's bytes do not match its shipping order.
    #[error("{bay}: packet {packet} does not match its shipping order: {why}")]
    PacketMismatch {
        bay: String,
        packet: String,
        why: String,
    },

    /// This server's claim on an order ran out or was taken over by
    /// another server (this one stalled past its lease): the order is no
    /// longer this server's to change.
    #[error("{bay}: claim on the shipping order of {packet} lost: {why}; left to the server that holds it now")]
    ClaimLost {
        bay: String,
        packet: String,
        why: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    /// True when the error says a bay entry does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Bay { cause, .. } | Error::Io { cause, .. } => {
                cause.kind() == std::io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}

/// `"BAY: "`, or nothing when no bay is named.
fn bay_prefix(bay: &str) -> String {
    if bay.is_empty() {
        String::new()
    } else {
        format!("{bay}: ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_shown_once() {
        let gone = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let errors = [
            Error::io("/bays/x", gone()),
            Error::Bay {
                bay: "outgoing".into(),
                name: "p".into(),
                cause: gone(),
            },
        ];
        for err in errors {
            let mut chain = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                chain = format!("{chain}: {cause}");
                source = cause.source();
            }
            assert_eq!(chain.matches("gone").count(), 1, "{chain}");
            assert!(err.is_not_found());
        }
    }
}
