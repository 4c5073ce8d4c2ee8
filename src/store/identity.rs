//! A replica's identity and signing key.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::ops::Id;
use crate::store::layout::{ENCRYPTION_KEY_FILE, IDENTITY_FILE, SIGNING_KEY_FILE};
use crate::sys::fsutil;

/// Who this replica is. Stored as `.syncreplica/identity.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub family_name: String,
    pub family_id: Id,
    pub replica_name: String,
    pub replica_id: Id,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    family_name: String,
    family_id: String,
    replica_name: String,
    replica_id: String,
}

impl Identity {
    /// The family as packet headers name it.
    pub fn family(&self) -> packet_format::Named {
        packet_format::Named {
            id: self.family_id,
            name: self.family_name.clone(),
        }
    }

    /// This replica as packet headers name it.
    pub fn replica(&self) -> packet_format::Named {
        packet_format::Named {
            id: self.replica_id,
            name: self.replica_name.clone(),
        }
    }

    pub fn load(state_dir: &Path) -> Result<Identity> {
        let path = state_dir.join(IDENTITY_FILE);
        let text = std::fs::read_to_string(&path).at(&path)?;
        let file: IdentityFile = toml::from_str(&text).map_err(|err| Error::BadIdentity {
            path: path.clone(),
            what: crate::store::config::describe_toml_error(&text, &err),
        })?;
        let id = |hex: &str, what: &str| {
            Id::from_hex(hex).ok_or_else(|| Error::BadIdentity {
                path: path.clone(),
                what: format!("{what} \"{hex}\" is not 32 hex digits"),
            })
        };
        Ok(Identity {
            family_id: id(&file.family_id, "family_id")?,
            replica_id: id(&file.replica_id, "replica_id")?,
            family_name: file.family_name,
            replica_name: file.replica_name,
        })
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let file = IdentityFile {
            family_name: self.family_name.clone(),
            family_id: self.family_id.to_hex(),
            replica_name: self.replica_name.clone(),
            replica_id: self.replica_id.to_hex(),
        };
        let text = format!(
            "# Identity of this replica. Do not edit: siblings know it by these ids.\n{}",
            toml::to_string(&file).expect("identity serializes")
        );
        fsutil::write_atomic(&state_dir.join(IDENTITY_FILE), text.as_bytes(), 0o644)
    }
}

/// A fresh random id.
pub fn random_id() -> Id {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    Id(bytes)
}

/// Generates a signing key and stores it with mode 0600.
pub fn create_signing_key(state_dir: &Path) -> Result<SigningKey> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source works");
    let key = SigningKey::from_bytes(&secret);
    fsutil::create_new_file(&signing_key_path(state_dir), &secret, 0o600)?;
    Ok(key)
}

pub fn load_signing_key(state_dir: &Path) -> Result<SigningKey> {
    load_signing_key_at(&signing_key_path(state_dir))
}

/// The signing key in the file `path` (32 secret bytes).
pub fn load_signing_key_at(path: &Path) -> Result<SigningKey> {
    let path = path.to_path_buf();
    let bytes = std::fs::read(&path).at(&path)?;
    let secret: [u8; 32] = bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| Error::BadIdentity {
            path: path.clone(),
            what: format!("a signing key is 32 bytes, this file has {}", bytes.len()),
        })?;
    Ok(SigningKey::from_bytes(&secret))
}

pub fn signing_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SIGNING_KEY_FILE)
}

/// Where the age X25519 identity of the replica whose state directory is
/// `state_dir` is kept.
pub fn encryption_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(ENCRYPTION_KEY_FILE)
}

/// Generates an age X25519 identity and stores it, mode 0600, as a new
/// file (an existing one is an error: a key is never overwritten).
pub fn create_encryption_key(state_dir: &Path) -> Result<age::x25519::Identity> {
    use age::secrecy::ExposeSecret;
    let key = age::x25519::Identity::generate();
    let text = format!("{}\n", key.to_string().expose_secret());
    fsutil::create_new_file(&encryption_key_path(state_dir), text.as_bytes(), 0o600)?;
    Ok(key)
}

/// The replica's age identity; `None` for a replica made before packets
/// were encrypted, which has none yet.
pub fn load_encryption_key(state_dir: &Path) -> Result<Option<age::x25519::Identity>> {
    let path = encryption_key_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).at(&path),
    };
    text.trim()
        .parse::<age::x25519::Identity>()
        .map(Some)
        .map_err(|why| Error::BadIdentity {
            path: path.clone(),
            what: format!("not an age X25519 identity: {why}"),
        })
}

/// The fingerprint users compare out of band: SHA-256 of the public key.
pub fn fingerprint(public_key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// Replica and family names appear in packet file names and on command
/// lines, so they are kept to a portable alphabet.
pub fn validate_name(name: &str) -> Result<()> {
    packet_format::vocabulary::check_name(name).map_err(|why| Error::BadName {
        name: name.to_string(),
        why: why.to_string(),
    })
}

/// The file, in the state folder, holding this replica's age identities
/// that `mkreplica -rekey` replaced (`# retired ...` comment lines, then
/// one `AGE-SECRET-KEY-1...` per line, mode 0600): kept only to decrypt
/// packets encrypted to them before the siblings heard of the rotation.
pub const RETIRED_KEYS_FILE: &str = "retired_encryption_keys";
/// A new key waiting for its rotation to be committed: beside the key
/// file it replaces, with this suffix.
const NEXT_SUFFIX: &str = ".next";

pub fn next_path(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(NEXT_SUFFIX);
    PathBuf::from(name)
}

/// Finishes a rotation whose new keys wait beside the old ones (see
/// `sync::keys::rekey`, `mkreplica -rekey`): when the database holds the
/// waiting signing key as this replica's (the rotation was committed), the old age identity goes to
/// [`RETIRED_KEYS_FILE`] and the new keys replace the old files; else
/// (interrupted before the commit) the waiting keys are removed. Nothing
/// to do, the usual case, costs one `stat`.
pub fn settle(dir: &std::path::Path, state: &crate::store::state::State, me: &Id) -> Result<()> {
    use crate::error::IoContext;
    let signing = signing_key_path(dir);
    let encryption = encryption_key_path(dir);
    let (signing_next, encryption_next) = (next_path(&signing), next_path(&encryption));
    if !signing_next.exists() {
        // The signing key is renamed last: without it nothing waits (an
        // encryption key left alone was never committed).
        if encryption_next.exists() {
            std::fs::remove_file(&encryption_next).at(&encryption_next)?;
        }
        return Ok(());
    }
    let waiting = load_signing_key_at(&signing_next)?;
    let current = state
        .members()?
        .into_iter()
        .find(|m| m.replica == *me)
        .map(|m| m.public_key);
    if current != Some(waiting.verifying_key().to_bytes()) {
        for path in [&encryption_next, &signing_next] {
            if path.exists() {
                std::fs::remove_file(path).at(path)?;
            }
        }
        return crate::sys::fsutil::sync_dir(dir);
    }
    if encryption_next.exists() {
        if let Some(old) = load_encryption_key(dir)? {
            use age::secrecy::ExposeSecret;
            use std::io::Write;
            let retired = dir.join(RETIRED_KEYS_FILE);
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode_0600()
                .open(&retired)
                .at(&retired)?;
            let line = format!(
                "# retired {} (mkreplica -rekey): kept to read packets encrypted to it before\n{}\n",
                crate::sys::clock::rfc3339_ns(crate::sys::clock::now_ns()),
                old.to_string().expose_secret()
            );
            file.write_all(line.as_bytes()).at(&retired)?;
            file.sync_all().at(&retired)?;
        }
        std::fs::rename(&encryption_next, &encryption).at(&encryption)?;
    }
    std::fs::rename(&signing_next, &signing).at(&signing)?;
    crate::sys::fsutil::sync_dir(dir)
}

/// The age identities `mkreplica -rekey` retired, oldest first (none when it never
/// ran). Errors name the file.
pub fn retired_identities(dir: &std::path::Path) -> Result<Vec<age::x25519::Identity>> {
    use crate::error::IoContext;
    let path = dir.join(RETIRED_KEYS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).at(&path),
    };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.parse::<age::x25519::Identity>()
                .map_err(|why| crate::error::Error::BadIdentity {
                    path: path.clone(),
                    what: format!("a line that is not an age X25519 identity: {why}"),
                })
        })
        .collect()
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_name_is_a_typed_error_naming_it() {
        // The alphabet itself is tested in packet_format::vocabulary.
        match validate_name("a b") {
            Err(Error::BadName { name, .. }) => assert_eq!(name, "a b"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identity_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity {
            family_name: "fam".into(),
            family_id: random_id(),
            replica_name: "alpha".into(),
            replica_id: random_id(),
        };
        identity.save(dir.path()).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), identity);
    }

    #[test]
    fn signing_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = create_signing_key(dir.path()).unwrap();
        let mode = std::fs::metadata(signing_key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_signing_key(dir.path()).unwrap().to_bytes(),
            key.to_bytes()
        );
    }
}
