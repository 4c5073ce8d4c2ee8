//! Members' signing keys over time (issue 15, key rotation; packet
//! SPEC.md §7.1).
//!
//! A member that ran `mkreplica -rekey` logged, as its own operation at
//! its epoch E, a `RekeyMember` sealed with its old key. From then on:
//! its operations up to E are sealed, and its packets whose own epochs
//! reach no further than E are signed, with the old key; everything after
//! E with the new one. Packets carry no trustworthy time, so the rule is
//! by epochs: a packet signed by the old key that carries the member's
//! own operations beyond E (or whose epoch row says it holds them) is
//! refused, and so is a seal by the old key of operations beyond E,
//! whoever relays it. Packets written before the rotation (in flight)
//! still verify: their epochs are all at or below E.

use std::collections::HashMap;
use std::path::PathBuf;

use packet_format::seals::{link, END};
use packet_format::{Header, LogicalPacket, SignatureStatus};

use crate::error::{Refusal, Result};
use crate::ops::{Change, Id, Operation};
use crate::store::state::State;

/// What key signs or seals which of a member's own epochs.
#[derive(Clone, Debug, Default)]
pub struct KeyBook {
    current: HashMap<Id, [u8; 32]>,
    /// Per member, its rotations in epoch order.
    history: HashMap<Id, Vec<Step>>,
}

/// One rotation in a member's history: (epoch, old key, new key).
type Step = (u64, [u8; 32], [u8; 32]);

/// Whose a key is, and for which of that member's own epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyUse {
    pub member: Id,
    /// Good for the member's epochs after this one (0: from its first).
    pub after: u64,
    /// ... up to this one (`None`: the member's current key).
    pub through: Option<u64>,
}

impl KeyBook {
    /// A book of current keys only (no rotation known).
    pub fn new(current: HashMap<Id, [u8; 32]>) -> KeyBook {
        KeyBook {
            current,
            history: HashMap::new(),
        }
    }

    /// The members' keys and rotations this replica holds.
    pub fn load(state: &State) -> Result<KeyBook> {
        let mut book = KeyBook::new(
            state
                .members()?
                .into_iter()
                .map(|m| (m.replica, m.public_key))
                .collect(),
        );
        for rotation in state.rotations()? {
            book.history.entry(rotation.replica).or_default().push((
                rotation.epoch,
                rotation.old_key,
                rotation.new_key,
            ));
        }
        Ok(book)
    }

    /// The key that signs and seals `member`'s own epoch `epoch`.
    pub fn key_for(&self, member: &Id, epoch: u64) -> Option<[u8; 32]> {
        if let Some(rotations) = self.history.get(member) {
            if let Some((_, old, _)) = rotations.iter().find(|(at, _, _)| epoch <= *at) {
                return Some(*old);
            }
        }
        self.current.get(member).copied()
    }

    /// `member`'s current key.
    pub fn current(&self, member: &Id) -> Option<[u8; 32]> {
        self.current.get(member).copied()
    }

    /// Every key a packet may be signed with: the current ones and those
    /// replaced by a rotation (good for the epochs before it).
    pub fn all_keys(&self) -> Vec<[u8; 32]> {
        let mut keys: Vec<[u8; 32]> = self.current.values().copied().collect();
        for rotations in self.history.values() {
            keys.extend(rotations.iter().map(|(_, old, _)| *old));
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Whose `key` is, and for which own epochs.
    pub fn owner(&self, key: &[u8; 32]) -> Option<KeyUse> {
        for (member, rotations) in &self.history {
            let mut after = 0;
            for (epoch, old, _) in rotations {
                if old == key {
                    return Some(KeyUse {
                        member: *member,
                        after,
                        through: Some(*epoch),
                    });
                }
                after = *epoch;
            }
        }
        self.current
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(member, _)| KeyUse {
                member: *member,
                after: self
                    .history
                    .get(member)
                    .and_then(|r| r.last())
                    .map_or(0, |r| r.0),
                through: None,
            })
    }

    /// The first rotation of `member` at an epoch E with `first <= E <
    /// last`: one a run `first..=last` would span.
    pub fn rotation_within(&self, member: &Id, first: u64, last: u64) -> Option<u64> {
        self.history
            .get(member)?
            .iter()
            .map(|(epoch, _, _)| *epoch)
            .find(|epoch| first <= *epoch && *epoch < last)
    }

    /// A member introduced by an `AddMember` (a key already held wins).
    pub fn add_member(&mut self, member: Id, key: [u8; 32]) {
        self.current.entry(member).or_insert(key);
    }

    /// Takes `member`'s rotation at its epoch `epoch` from `old` to `new`.
    /// `Ok(false)` when the book has it already; an error (for the user)
    /// when `old` is not the key the member had at `epoch`, or the
    /// rotation is not after its last one.
    pub fn rotate(
        &mut self,
        member: Id,
        epoch: u64,
        old: [u8; 32],
        new: [u8; 32],
    ) -> std::result::Result<bool, String> {
        let rotations = self.history.entry(member).or_default();
        if rotations.contains(&(epoch, old, new)) {
            return Ok(false);
        }
        if let Some((last, _, _)) = rotations.last() {
            if epoch <= *last {
                return Err(format!(
                    "a key rotation at its epoch {epoch}, not after its last one (epoch {last})"
                ));
            }
        }
        match self.current.get(&member) {
            Some(current) if *current == old => {}
            Some(_) => {
                return Err(format!(
                    "a key rotation at its epoch {epoch} from a key that is not the one it has \
                     (fingerprint {})",
                    crate::store::identity::fingerprint(&old)
                ))
            }
            None => {
                return Err(format!(
                    "a key rotation at its epoch {epoch} of a non-member"
                ))
            }
        }
        rotations.push((epoch, old, new));
        self.current.insert(member, new);
        Ok(true)
    }
}

/// A refusal of a packet or seal made with `member`'s key retired at its
/// epoch `epoch` for epochs after it: `what` says what was beyond it.
pub fn retired(member: &str, epoch: u64, what: String) -> Refusal {
    Refusal::RetiredKey {
        member: member.to_string(),
        epoch,
        what,
    }
}

/// "change 6" or "changes 6-8".
pub fn changes(first: u64, last: u64) -> String {
    match first == last {
        true => format!("change {first}"),
        false => format!("changes {first}-{last}"),
    }
}

/// Checks that `header`'s signer, a key of the sender's, is good for the
/// sender's own epochs the packet carries and its epoch row claims (the
/// packet rule of the module doc). `name` names the sender.
pub fn check_signer_epochs(
    book: &KeyBook,
    header: &Header,
    name: &str,
) -> std::result::Result<(), Refusal> {
    let sender = header.sender.id;
    let Some(key_use) = book.owner(&header.signer_key) else {
        return Ok(());
    };
    if key_use.member != sender {
        return Ok(());
    }
    let Some(through) = key_use.through else {
        return Ok(());
    };
    if let Some(range) = header.epoch_ranges.get(&sender) {
        if range.last > through {
            return Err(retired(
                name,
                through,
                format!(
                    "the packet carries its {}",
                    changes(range.first, range.last)
                ),
            ));
        }
    }
    let row = header.epoch_row.get(&sender).copied().unwrap_or(0);
    if row > through {
        return Err(retired(
            name,
            through,
            format!("the packet's epoch row says it holds its changes up to {row}"),
        ));
    }
    Ok(())
}

/// The rotations a packet signed by a key this replica does not know
/// brings to vouch for that key: the sender's `RekeyMember` operations
/// that lead from the key `book` holds for it to the packet's signer,
/// each in a run of its own whose seal verifies with the key it
/// replaces. The files are verified with `signer`, the key their headers
/// name, for this (the
/// key is not trusted until the rotations vouch for it). Returns them as
/// (member, epoch, old, new) in epoch order, taken into `book` too; none
/// when the packet is not such a one (it is then refused as not a
/// member's, as before).
pub fn rotations_vouching(
    book: &mut KeyBook,
    files: &[PathBuf],
    signer: [u8; 32],
    decryption: Option<&std::sync::Arc<packet_format::Decryption>>,
) -> Vec<(Id, u64, [u8; 32], [u8; 32])> {
    let mut parts = Vec::new();
    for file in files {
        match packet_format::verify_packet_with(file, &[signer], decryption) {
            Ok(part) => parts.push(part),
            Err(_) => return Vec::new(),
        }
    }
    let Ok(packet) = LogicalPacket::assemble(parts) else {
        return Vec::new();
    };
    let header = packet.header().clone();
    let sender = header.sender.id;
    if book.current(&sender).is_none() || book.owner(&header.signer_key).is_some() {
        return Vec::new();
    }
    let mut found: Vec<Operation> = Vec::new();
    for op in packet.operations() {
        let Ok(op) = op else { return Vec::new() };
        if op.origin == sender && matches!(op.change, Change::RekeyMember { .. }) {
            // Read before the packet is trusted: a bound on what it may
            // make this replica hold (no member rotates that often).
            if found.len() == MAX_VOUCHING_ROTATIONS {
                return Vec::new();
            }
            found.push(op);
        }
    }
    let mut trial = book.clone();
    let mut taken = Vec::new();
    for op in found {
        let Change::RekeyMember {
            replica,
            old_key,
            new_key,
            ..
        } = &op.change
        else {
            continue;
        };
        if *replica != sender {
            return Vec::new();
        }
        let Some(seal) = packet
            .seals()
            .iter()
            .find(|s| s.origin == sender && s.first == op.epoch && s.carried_last() == op.epoch)
        else {
            return Vec::new();
        };
        let head = link(&END, &op.encode());
        if trial.key_for(&sender, op.epoch) != Some(*old_key) || !seal.verify(old_key, &head) {
            return Vec::new();
        }
        if trial.rotate(sender, op.epoch, *old_key, *new_key).is_err() {
            return Vec::new();
        }
        taken.push((sender, op.epoch, *old_key, *new_key));
    }
    if trial.current(&sender) != Some(header.signer_key) {
        return Vec::new();
    }
    *book = trial;
    taken
}

/// [`rotations_vouching`] for a reader that cannot decrypt the packet
/// (`lspacket` of a packet encrypted for others): the rotations its
/// header carries in the clear (SPEC.md §4.3), proved by their seals,
/// leading from the key `book` holds for the sender (agreeing with the
/// rotations it knows) to the header's signer. Taken into `book` when
/// they do; whether they did.
pub fn header_vouching(book: &mut KeyBook, header: &Header) -> bool {
    let sender = header.sender.id;
    if book.current(&sender).is_none() || book.owner(&header.signer_key).is_some() {
        return false;
    }
    let Ok(proved) = header.proved_rotations() else {
        return false;
    };
    let mut trial = book.clone();
    for step in &proved {
        if trial.key_for(&sender, step.epoch) != Some(step.old_key) {
            return false;
        }
        if trial
            .rotate(sender, step.epoch, step.old_key, step.new_key)
            .is_err()
        {
            return false;
        }
    }
    if proved.is_empty() || trial.current(&sender) != Some(header.signer_key) {
        return false;
    }
    *book = trial;
    true
}

/// The most rotations of its sender a packet signed by an unknown key may
/// bring to vouch for it.
const MAX_VOUCHING_ROTATIONS: usize = 64;

/// Whether `status` says a packet is signed by a key not known here.
pub fn unknown_key(status: &Option<SignatureStatus>) -> bool {
    matches!(status, Some(SignatureStatus::UnknownKey { .. }))
}

impl KeyBook {
    /// The rotation epoch of a key `member` replaced before its epoch
    /// `epoch` for which `verifies` holds: the evidence that something
    /// was made with a retired key for epochs it is no longer good for.
    pub fn retired_key_verifying(
        &self,
        member: &Id,
        epoch: u64,
        verifies: impl Fn(&[u8; 32]) -> bool,
    ) -> Option<u64> {
        self.history
            .get(member)?
            .iter()
            .find(|(at, old, _)| *at < epoch && verifies(old))
            .map(|(at, _, _)| *at)
    }
}

/// What `mkreplica -rekey` did.
#[derive(Clone, Debug)]
pub struct Rekey {
    /// This replica's own epoch of the `RekeyMember` operation.
    pub epoch: u64,
    pub old_key: [u8; 32],
    pub new_key: [u8; 32],
    /// The new age recipient (`age1...`).
    pub encryption_key: String,
}

/// Replaces this replica's signing and encryption keys (`mkreplica
/// -rekey`, SPEC.md §7.1): logs a `RekeyMember` operation of its own at
/// its next epoch E, in a run of its own sealed with the old key, and
/// from then on signs and seals with the new key; packets to it are
/// encrypted to the new recipient once a sibling has the operation. The
/// old signing key is discarded; the old age identity is kept in
/// [`crate::store::identity::RETIRED_KEYS_FILE`] to read packets encrypted to it before.
///
/// Crash-safe: the new keys are written beside the old ones first
/// (`*.next`), the operation and the new member key committed in one
/// transaction, then the files renamed; [`crate::store::identity::settle`] (run whenever the
/// lock is taken) finishes or undoes an interrupted rotation by what the
/// database says. Refused during a restore (`mkreplica -restore`: no
/// change of its own can be numbered then). The caller holds the lock.
pub fn rekey(replica: &mut crate::replica::LockedReplica) -> Result<Rekey> {
    use crate::store::{identity, state};
    crate::sync::family::refuse_while_restoring(replica, "mkreplica -rekey (a key rotation)")?;
    let dir = replica.state_dir();
    let me = replica.identity.replica_id;
    let old = replica.signing_key()?;
    let old_key = old.verifying_key().to_bytes();
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source works");
    let new = ed25519_dalek::SigningKey::from_bytes(&secret);
    let new_key = new.verifying_key().to_bytes();
    let age_key = age::x25519::Identity::generate();
    let encryption_key = age_key.to_public().to_string();
    {
        use age::secrecy::ExposeSecret;
        let signing_next = identity::next_path(&identity::signing_key_path(&dir));
        let encryption_next = identity::next_path(&identity::encryption_key_path(&dir));
        crate::sys::fsutil::create_new_file(&signing_next, &secret, 0o600)?;
        let text = format!("{}\n", age_key.to_string().expose_secret());
        crate::sys::fsutil::create_new_file(&encryption_next, text.as_bytes(), 0o600)?;
    }
    let epoch = replica.state().epoch(&me, &me)? + 1;
    let op = Operation {
        origin: me,
        epoch,
        recorded: crate::sys::clock::now(),
        change: Change::RekeyMember {
            replica: me,
            old_key,
            new_key,
            encryption_key: encryption_key.clone(),
        },
    };
    let rotation = state::Rotation {
        replica: me,
        epoch,
        old_key,
        new_key,
        at_ns: crate::sys::clock::now_ns(),
    };
    let old_secret = old.to_bytes();
    let committed = replica.state_mut().transaction(|tx| {
        state::append_operation(tx, &op)?;
        state::set_epoch(tx, &me, &me, epoch)?;
        // A run of its own, sealed with the old key: every member can
        // verify it with what it knows, and it vouches for the new key.
        state::seal_own_run(tx, &old_secret, &me, epoch, epoch)?;
        state::rekey_member(tx, &rotation, &encryption_key)?;
        Ok(())
    });
    if let Err(err) = committed {
        let _ = identity::settle(&dir, replica.state(), &me);
        return Err(err);
    }
    crate::sys::testhook::crash_point("rekey-after-commit");
    identity::settle(&dir, replica.state(), &me)?;
    Ok(Rekey {
        epoch,
        old_key,
        new_key,
        encryption_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> Id {
        Id([byte; 16])
    }

    #[test]
    fn each_key_is_good_for_the_epochs_up_to_its_rotation() {
        let mut book = KeyBook::new([(id(1), [1; 32])].into());
        assert_eq!(book.rotate(id(1), 5, [1; 32], [2; 32]), Ok(true));
        assert_eq!(
            book.rotate(id(1), 5, [1; 32], [2; 32]),
            Ok(false),
            "held already"
        );
        assert_eq!(book.rotate(id(1), 9, [2; 32], [3; 32]), Ok(true));
        assert_eq!(book.key_for(&id(1), 1), Some([1; 32]));
        assert_eq!(
            book.key_for(&id(1), 5),
            Some([1; 32]),
            "the rotation itself"
        );
        assert_eq!(book.key_for(&id(1), 6), Some([2; 32]));
        assert_eq!(book.key_for(&id(1), 10), Some([3; 32]));
        let owner = |key| book.owner(&[key; 32]).map(|u| (u.after, u.through));
        assert_eq!(owner(1), Some((0, Some(5))));
        assert_eq!(owner(2), Some((5, Some(9))));
        assert_eq!(owner(3), Some((9, None)));
        assert_eq!(book.rotation_within(&id(1), 3, 6), Some(5));
        assert_eq!(book.rotation_within(&id(1), 6, 9), None);
        assert_eq!(book.all_keys().len(), 3);
    }

    #[test]
    fn a_rotation_from_another_key_or_out_of_order_is_refused() {
        let mut book = KeyBook::new([(id(1), [1; 32])].into());
        assert!(book.rotate(id(1), 5, [7; 32], [2; 32]).is_err());
        assert!(
            book.rotate(id(2), 5, [1; 32], [2; 32]).is_err(),
            "not a member"
        );
        book.rotate(id(1), 5, [1; 32], [2; 32]).unwrap();
        assert!(book.rotate(id(1), 4, [2; 32], [3; 32]).is_err());
        assert_eq!(book.current(&id(1)), Some([2; 32]));
    }
}
