//! Origin seals (SPEC.md §7): each origin replica signs every run of its
//! own operations, and the seal travels with those operations through
//! every relay, so a receiver authenticates each operation's origin and
//! not just the packet's signer.
//!
//! A run is epochs `first..=last` of one origin, recorded together. Its
//! operations are chained backwards: `link(last + 1) = END` (32 zero
//! bytes) and `link(e) = SHA-256(link(e + 1) || encoding of operation e)`;
//! the seal signs `link(first)`, the run's *head*. A packet that carries
//! only epochs `first..=k` of a run (the rest follows later) adds the
//! seal's *tail*, `link(k + 1)`, so its receiver can compute the head
//! from what it holds.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::ops::Id;

/// Domain separation: the signed message is this, then the run.
pub const SEAL_CONTEXT: &[u8] = b"syncreplica seal v1\n";
/// The link after a run's last operation.
pub const END: [u8; 32] = [0; 32];

/// An Ed25519 signature (64 bytes, written as 64 bytes, no length).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}…", hex::encode(&self.0[..8]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(64)?;
        for byte in &self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Signature;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut out = [0u8; 64];
                for (index, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(index, &self))?;
                }
                Ok(Signature(out))
            }
        }
        deserializer.deserialize_tuple(64, Bytes)
    }
}

/// Where a packet's share of a run stops short of the run's end: the first
/// epoch it does not carry and the link there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SealTail {
    pub epoch: u64,
    pub link: [u8; 32],
}

/// An origin's signature over one run of its operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Seal {
    pub origin: Id,
    pub first: u64,
    pub last: u64,
    pub signature: Signature,
    /// Present when the packet carries the run only up to `tail.epoch - 1`.
    pub tail: Option<SealTail>,
}

/// `SHA-256(next || op)`: the link of an operation whose encoding is `op`,
/// given the link of the next epoch of its run.
pub fn link(next: &[u8; 32], op: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(next);
    hash.update(op);
    hash.finalize().into()
}

/// The link of the first of `ops` (encodings in epoch order), given the
/// link after the last of them ([`END`] when they reach the run's end).
pub fn chain<'a>(ops: impl DoubleEndedIterator<Item = &'a [u8]>, after: [u8; 32]) -> [u8; 32] {
    ops.rev().fold(after, |next, op| link(&next, op))
}

/// The message a seal signs.
pub fn seal_message(origin: &Id, first: u64, last: u64, head: &[u8; 32]) -> Vec<u8> {
    let mut message = SEAL_CONTEXT.to_vec();
    message.extend_from_slice(&origin.0);
    message.extend_from_slice(&first.to_le_bytes());
    message.extend_from_slice(&last.to_le_bytes());
    message.extend_from_slice(head);
    message
}

impl Seal {
    /// Seals the run `first..=last` of `origin` whose head is `head`
    /// ([`chain`] of all its operations from [`END`]).
    pub fn sign(secret: &[u8; 32], origin: Id, first: u64, last: u64, head: &[u8; 32]) -> Seal {
        let signature = SigningKey::from_bytes(secret)
            .sign(&seal_message(&origin, first, last, head))
            .to_bytes();
        Seal {
            origin,
            first,
            last,
            signature: Signature(signature),
            tail: None,
        }
    }

    /// Whether `public_key` (the origin's) signed this run with head `head`.
    /// Strict verification, as for packet signatures.
    pub fn verify(&self, public_key: &[u8; 32], head: &[u8; 32]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(public_key) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(
            &seal_message(&self.origin, self.first, self.last, head),
            &signature,
        )
        .is_ok()
    }

    /// The last epoch this packet's share of the run reaches.
    pub fn carried_last(&self) -> u64 {
        self.tail.map_or(self.last, |tail| tail.epoch - 1)
    }

    /// The link after the carried share: the tail's, or [`END`].
    pub fn after_carried(&self) -> [u8; 32] {
        self.tail.map_or(END, |tail| tail.link)
    }

    /// Whether the seal is well formed: `first <= last`, and a tail, if
    /// any, inside the run and after its first epoch.
    pub fn is_well_formed(&self) -> bool {
        self.first >= 1
            && self.first <= self.last
            && self
                .tail
                .is_none_or(|tail| self.first < tail.epoch && tail.epoch <= self.last)
    }
}

/// Domain separation for checkpoints: the signed message is this, then
/// the checkpoint's fields.
pub const CHECKPOINT_CONTEXT: &[u8] = b"syncreplica checkpoint v1\n";
/// The history digest before an origin's first operation.
pub const HISTORY_START: [u8; 32] = [0; 32];

/// The history digest through an operation whose encoding is `op`, given
/// the digest through the epoch before ([`HISTORY_START`] before epoch 1):
/// `SHA-256(before || op)`. Chained forwards, so a later checkpoint extends
/// an earlier one with the operations between them.
pub fn history(before: &[u8; 32], op: &[u8]) -> [u8; 32] {
    link(before, op)
}

/// A signed statement that an origin's operations `1..=through` were
/// scrubbed from a member's log once every member held them (SPEC.md
/// §8.1). `history` is the digest of those operations ([`history`] chained
/// from [`HISTORY_START`]); `signer` is the member that scrubbed them and
/// signed, with its member key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    pub origin: Id,
    pub through: u64,
    pub history: [u8; 32],
    pub signer: Id,
    pub signature: Signature,
}

/// The message a checkpoint signs.
pub fn checkpoint_message(origin: &Id, through: u64, history: &[u8; 32], signer: &Id) -> Vec<u8> {
    let mut message = CHECKPOINT_CONTEXT.to_vec();
    message.extend_from_slice(&origin.0);
    message.extend_from_slice(&through.to_le_bytes());
    message.extend_from_slice(history);
    message.extend_from_slice(&signer.0);
    message
}

impl Checkpoint {
    /// Signs, as `signer` with its member key `secret`, that `origin`'s
    /// operations `1..=through`, whose history digest is `history`, are
    /// scrubbed.
    pub fn sign(
        secret: &[u8; 32],
        signer: Id,
        origin: Id,
        through: u64,
        history: [u8; 32],
    ) -> Checkpoint {
        let signature = SigningKey::from_bytes(secret)
            .sign(&checkpoint_message(&origin, through, &history, &signer))
            .to_bytes();
        Checkpoint {
            origin,
            through,
            history,
            signer,
            signature: Signature(signature),
        }
    }

    /// Whether `public_key` (the signer's) signed this checkpoint. Strict
    /// verification, as for packet signatures.
    pub fn verify(&self, public_key: &[u8; 32]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(public_key) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(
            &checkpoint_message(&self.origin, self.through, &self.history, &self.signer),
            &signature,
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_verifies_whole_or_from_a_tail_and_nothing_else() {
        let secret = [9u8; 32];
        let public = SigningKey::from_bytes(&secret).verifying_key().to_bytes();
        let ops: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let all = || ops.iter().map(Vec::as_slice);
        let head = chain(all(), END);
        let seal = Seal::sign(&secret, Id([1; 16]), 3, 7, &head);
        assert!(seal.verify(&public, &head));
        // A share of epochs 3..=5 with the tail at 6.
        let tail = chain(ops[3..].iter().map(Vec::as_slice), END);
        let share = chain(ops[..3].iter().map(Vec::as_slice), tail);
        assert_eq!(share, head);
        // Another operation, another order, another key: no.
        let mut forged = ops.clone();
        forged[1][0] ^= 1;
        assert!(!seal.verify(&public, &chain(forged.iter().map(Vec::as_slice), END)));
        assert!(!seal.verify(&[7; 32], &head));
        let mut moved = seal;
        moved.first = 2;
        assert!(!moved.verify(&public, &head));
        let bytes = postcard::to_stdvec(&seal).unwrap();
        assert_eq!(postcard::from_bytes::<Seal>(&bytes).unwrap(), seal);
        assert_eq!(bytes.len(), 16 + 1 + 1 + 64 + 1);
    }

    #[test]
    fn a_checkpoint_verifies_with_its_signer_key_and_nothing_else() {
        let secret = [9u8; 32];
        let public = SigningKey::from_bytes(&secret).verifying_key().to_bytes();
        let digest = [b"a".as_slice(), b"b"]
            .iter()
            .fold(HISTORY_START, |before, op| history(&before, op));
        let checkpoint = Checkpoint::sign(&secret, Id([2; 16]), Id([1; 16]), 2, digest);
        assert!(checkpoint.verify(&public));
        assert!(!checkpoint.verify(&[7; 32]));
        for tweak in 0..4 {
            let mut forged = checkpoint;
            match tweak {
                0 => forged.through = 3,
                1 => forged.history[0] ^= 1,
                2 => forged.origin = Id([3; 16]),
                _ => forged.signer = Id([3; 16]),
            }
            assert!(!forged.verify(&public), "tweak {tweak}");
        }
        let bytes = postcard::to_stdvec(&checkpoint).unwrap();
        assert_eq!(
            postcard::from_bytes::<Checkpoint>(&bytes).unwrap(),
            checkpoint
        );
        assert_eq!(bytes.len(), 16 + 1 + 32 + 16 + 64);
    }
}
