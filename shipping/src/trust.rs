//! The keys whose packets this host accepts: `trusted_keys` from the
//! configuration, plus every current member of the families of the
//! replicas named in `trusted_replicas`. Members are read afresh for each
//! packet, so a member added by an import is trusted from then on without
//! a restart.
//!
//! How a replica's members are read is not this crate's business: the
//! caller hands in a [`MemberKeys`] (syncreplica reads the replica's state
//! database).

use std::path::Path;

use crate::config::ShippingConfig;
use crate::error::{Error, Result};

/// Why the members of a replica could not be read.
pub type MemberKeysError = Box<dyn std::error::Error + Send + Sync>;

/// Reads the public keys of the current members of a replica's family.
pub trait MemberKeys: Sync {
    /// Public keys of the members of the family of the replica rooted at
    /// `root`, as that replica knows them now.
    fn member_keys(&self, root: &Path) -> std::result::Result<Vec<[u8; 32]>, MemberKeysError>;
}

impl<F> MemberKeys for F
where
    F: Fn(&Path) -> std::result::Result<Vec<[u8; 32]>, MemberKeysError> + Sync,
{
    fn member_keys(&self, root: &Path) -> std::result::Result<Vec<[u8; 32]>, MemberKeysError> {
        self(root)
    }
}

/// All trusted keys, configured ones first, without repeats; `members`
/// reads the families of `trusted_replicas`.
pub fn trusted_keys(config: &ShippingConfig, members: &dyn MemberKeys) -> Result<Vec<[u8; 32]>> {
    let mut keys: Vec<[u8; 32]> = config.trusted_keys.iter().map(|k| k.to_bytes()).collect();
    for root in &config.trusted_replicas {
        let found = members
            .member_keys(root)
            .map_err(|err| Error::TrustedReplica {
                root: root.to_path_buf(),
                message: chain_text(err.as_ref()),
            })?;
        for key in found {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

/// An error and its causes, joined by ": "; a cause that the text already
/// shows is not repeated.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text = format!("{text}: {shown}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "state.db: {}", self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn config(keys: &[[u8; 32]], replicas: &[&str]) -> ShippingConfig {
        ShippingConfig {
            trusted_keys: keys
                .iter()
                .map(|k| crate::config::TrustedKey::parse(&hex::encode(k)).unwrap())
                .collect(),
            trusted_replicas: replicas.iter().map(PathBuf::from).collect(),
            ..ShippingConfig::default()
        }
    }

    #[test]
    fn configured_keys_come_first_without_repeats() {
        let members = |root: &Path| -> std::result::Result<Vec<[u8; 32]>, MemberKeysError> {
            assert_eq!(root, Path::new("/srv/a"));
            Ok(vec![[2; 32], [1; 32]])
        };
        let keys = trusted_keys(&config(&[[1; 32]], &["/srv/a"]), &members).unwrap();
        assert_eq!(keys, [[1; 32], [2; 32]]);
    }

    #[test]
    fn members_are_read_each_time() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let members = |_: &Path| -> std::result::Result<Vec<[u8; 32]>, MemberKeysError> {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(vec![[n as u8 + 1; 32]])
        };
        let config = config(&[], &["/srv/a"]);
        assert_eq!(trusted_keys(&config, &members).unwrap(), [[1; 32]]);
        assert_eq!(trusted_keys(&config, &members).unwrap(), [[2; 32]]);
    }

    #[test]
    fn an_unreadable_replica_names_it_and_its_cause_once() {
        let members = |_: &Path| -> std::result::Result<Vec<[u8; 32]>, MemberKeysError> {
            let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
            Err(Box::new(Outer(io)))
        };
        let err = trusted_keys(&config(&[], &["/srv/a"]), &members).unwrap_err();
        assert!(matches!(&err, Error::TrustedReplica { root, .. } if root == Path::new("/srv/a")));
        assert_eq!(err.to_string(), "trusted replica /srv/a: state.db: denied");
    }
}
