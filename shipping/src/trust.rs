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

    /// The key rotations (`mkreplica -rekey`) the replica rooted at `root`
    /// knows of its members. None by default.
    fn rotations(&self, root: &Path) -> std::result::Result<Vec<KnownRotation>, MemberKeysError> {
        let _ = root;
        Ok(Vec::new())
    }
}

/// A member's key rotation a hub knows: `member`'s key `old_key` is good
/// for its own epochs up to `epoch` only; `new_key` after it (packet
/// SPEC.md §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownRotation {
    pub member: [u8; 16],
    pub epoch: u64,
    pub old_key: [u8; 32],
    pub new_key: [u8; 32],
}

/// File, in the storage bay of the first storage class on a directory,
/// where a hub keeps the rotations it learned from packets of members of
/// its `trusted_replicas` families: one line per rotation, `MEMBER EPOCH
/// OLD NEW` (hex), appended.
pub const LEARNED_ROTATIONS_FILE: &str = "learned_rotations";

/// Everything a hub trusts, with the rotations that limit old keys.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Keys whose signatures are accepted: `trusted_keys`, the members of
    /// `trusted_replicas` families (current keys and keys they replaced),
    /// and new keys learned from their rotations.
    pub keys: Vec<[u8; 32]>,
    /// The keys trusted through `trusted_replicas` (as `keys`): a
    /// rotation proved from one of them is learned and kept.
    pub family_keys: Vec<[u8; 32]>,
    /// Rotations known: the trusted replicas' and those learned.
    pub rotations: Vec<KnownRotation>,
    /// Where learned rotations are kept; `None` when nothing is learned
    /// (no `trusted_replicas`, or no storage class on a directory).
    pub learned: Option<std::path::PathBuf>,
}

impl Trust {
    /// The known rotation replacing `key`, if any.
    pub fn rotation_of(&self, key: &[u8; 32]) -> Option<&KnownRotation> {
        self.rotations.iter().find(|r| r.old_key == *key)
    }

    /// Whether the rotations `header` carries (packet SPEC.md §4.3) vouch
    /// for its signer, a key not in `trusted` (the keys this hub trusts):
    /// they lead, each sealed by the key it replaces, from a key in
    /// `trusted` to the signer, agreeing with every rotation known here.
    /// Returns the key they start from and the rotations not known here
    /// yet (for [`Trust::keep`] when that key is a `family_keys` one), or
    /// why they do not vouch. The packet's signature is the caller's to
    /// check. The receiver and `lspacket` at a hub judge by this alike.
    pub fn header_vouches(
        &self,
        trusted: &[[u8; 32]],
        header: &packet_format::Header,
    ) -> std::result::Result<([u8; 32], Vec<KnownRotation>), String> {
        if header.rotations.is_empty() {
            return Err("it carries none".into());
        }
        let proved = header.proved_rotations()?;
        let first = proved[0].old_key;
        if !trusted.contains(&first) {
            return Err(format!(
                "they start from key {}, which this server does not trust either",
                packet_format::key_fingerprint(&first)
            ));
        }
        let mut learned = Vec::new();
        for step in &proved {
            match self.rotation_of(&step.old_key) {
                Some(known) if known.new_key == step.new_key && known.epoch == step.epoch => {}
                Some(known) => {
                    return Err(format!(
                        "the rotation at epoch {} replaces key {}, which this server knows was \
                         replaced at epoch {} by another key",
                        step.epoch,
                        packet_format::key_fingerprint(&step.old_key),
                        known.epoch
                    ))
                }
                None => learned.push(KnownRotation {
                    member: step.member.0,
                    epoch: step.epoch,
                    old_key: step.old_key,
                    new_key: step.new_key,
                }),
            }
        }
        if proved.last().map(|r| r.new_key) != Some(header.signer_key) {
            return Err("they do not end at the key that signed it".into());
        }
        Ok((first, learned))
    }

    /// Appends `learned` to the learned-rotations file (see
    /// [`LEARNED_ROTATIONS_FILE`]), one line each.
    pub fn keep(&self, learned: &[KnownRotation]) -> std::io::Result<()> {
        use std::io::Write;
        let Some(path) = &self.learned else {
            return Ok(());
        };
        let mut text = String::new();
        for r in learned {
            text.push_str(&format!(
                "{} {} {} {}\n",
                hex::encode(r.member),
                r.epoch,
                hex::encode(r.old_key),
                hex::encode(r.new_key)
            ));
        }
        // One write with O_APPEND: concurrent uploads do not interleave
        // lines; a repeated line is harmless.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

/// Reads a learned-rotations file; lines it cannot read are skipped.
fn read_learned(path: &Path) -> Vec<KnownRotation> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let member: [u8; 16] = hex::decode(words.next()?).ok()?.try_into().ok()?;
            let epoch = words.next()?.parse().ok()?;
            let old_key: [u8; 32] = hex::decode(words.next()?).ok()?.try_into().ok()?;
            let new_key: [u8; 32] = hex::decode(words.next()?).ok()?.try_into().ok()?;
            Some(KnownRotation {
                member,
                epoch,
                old_key,
                new_key,
            })
        })
        .collect()
}

/// What the hub configured by `config` trusts now (see [`Trust`]);
/// `members` reads the families of `trusted_replicas`. A learned rotation
/// counts only while its old key is trusted through a family and no
/// rotation the replicas know replaces that key otherwise.
pub fn trust(config: &ShippingConfig, members: &dyn MemberKeys) -> Result<Trust> {
    let mut trust = Trust {
        keys: trusted_keys(config, members)?,
        ..Trust::default()
    };
    for root in &config.trusted_replicas {
        let error = |err: MemberKeysError| Error::TrustedReplica {
            root: root.to_path_buf(),
            message: chain_text(err.as_ref()),
        };
        trust
            .family_keys
            .extend(members.member_keys(root).map_err(error)?);
        trust
            .rotations
            .extend(members.rotations(root).map_err(error)?);
    }
    if config.trusted_replicas.is_empty() {
        return Ok(trust);
    }
    trust.learned = config
        .classes
        .values()
        .find(|class| class.s3.is_none())
        .map(|class| class.storage_bay.join(LEARNED_ROTATIONS_FILE));
    let mut pending = trust
        .learned
        .as_deref()
        .map(read_learned)
        .unwrap_or_default();
    loop {
        let before = pending.len();
        pending.retain(|r| {
            if trust.rotation_of(&r.old_key).is_some() {
                return false;
            }
            if !trust.family_keys.contains(&r.old_key) {
                return true;
            }
            trust.rotations.push(*r);
            trust.family_keys.push(r.new_key);
            if !trust.keys.contains(&r.new_key) {
                trust.keys.push(r.new_key);
            }
            false
        });
        if pending.len() == before {
            break;
        }
    }
    Ok(trust)
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
