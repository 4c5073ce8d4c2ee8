//! Confidential packets (issue 15): each member's age X25519 key pair, its
//! announcement to the family, and the keys an export encrypts to and an
//! import decrypts with. The format is packet-format's SPEC.md §4.2.

use std::sync::Arc;

use packet_format::{Decryption, EncryptTo, EncryptionRecipient};

use crate::error::Result;
use crate::ops::Operation;
use crate::replica::{LockedReplica, Replica};
use crate::store::{identity, state};

/// This replica's age identity, if it has one.
pub fn own_key(replica: &Replica) -> Result<Option<age::x25519::Identity>> {
    identity::load_encryption_key(&replica.state_dir())
}

/// What this replica decrypts packets with: its own identity. `None` for
/// a replica without one (made before packets were encrypted, and that
/// has not exported since): encrypted packets then verify as sealed and
/// are refused as unreadable.
pub fn decryption(replica: &Replica) -> Result<Option<Arc<Decryption>>> {
    let Some(key) = own_key(replica)? else {
        return Ok(None);
    };
    // Then the identities `mkreplica -rekey` retired: packets encrypted to
    // them before the siblings heard of the rotation still open.
    let mut identities = vec![key];
    identities.extend(crate::store::identity::retired_identities(
        &replica.state_dir(),
    )?);
    Ok(Some(Arc::new(Decryption::new(identities, None))))
}

/// Makes sure this replica has an encryption key and that the family has
/// been told of it: creates the key if missing, and logs a sealed
/// `MemberKeys` operation of its own if its current key was never
/// announced. Every export calls it, so replicas made before packets were
/// encrypted get a key with their next export, and their siblings encrypt
/// to them once that export has arrived. Returns whether it logged one.
/// The caller holds the lock.
pub fn ensure_announced(replica: &mut LockedReplica) -> Result<bool> {
    let state_dir = replica.state_dir();
    let key = match identity::load_encryption_key(&state_dir)? {
        Some(key) => key,
        None => identity::create_encryption_key(&state_dir)?,
    };
    let public = key.to_public().to_string();
    let me = replica.identity.replica_id;
    if replica.state().member_encryption_key(&me)?.as_deref() == Some(public.as_str()) {
        return Ok(false);
    }
    let epoch = replica.state().epoch(&me, &me)? + 1;
    let op = Operation {
        origin: me,
        epoch,
        recorded: crate::sys::clock::now(),
        change: packet_format::ops::MemberKeys {
            replica: me,
            encryption_key: public,
        }
        .to_change(),
    };
    let secret = replica.signing_key()?.to_bytes();
    replica.state_mut().transaction(|tx| {
        state::append_operation(tx, &op)?;
        state::set_epoch(tx, &me, &me, epoch)?;
        state::seal_own_run(tx, &secret, &me, epoch, epoch)?;
        Ok(())
    })?;
    Ok(true)
}

/// Why a packet to a target goes unencrypted, when it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plain {
    /// `-noencrypt` or `encrypt = false` in the config.
    Asked,
    /// The target has announced no encryption key yet (a replica made by
    /// an older version that has not exported since).
    NoKey,
}

/// The encryption of a packet to `target`: `Ok(Ok(to))`, or why it goes
/// in the clear.
pub fn for_target(
    replica: &Replica,
    target: &crate::ops::Id,
    noencrypt: bool,
) -> Result<std::result::Result<EncryptTo, Plain>> {
    if noencrypt || !replica.config.encrypt {
        return Ok(Err(Plain::Asked));
    }
    Ok(match replica.state().member_encryption_key(target)? {
        None => Err(Plain::NoKey),
        Some(key) => Ok(EncryptTo {
            recipients: vec![EncryptionRecipient { id: *target, key }],
            passphrase: None,
        }),
    })
}
