//! The epoch table, MultiSite's epoch number matrix (`lsepoch`, `chepoch`),
//! and what it says about a packet's readiness.
//!
//! Row R, column O holds the highest epoch of origin O's operations that R
//! has. This replica's own row is exact. The other rows are estimates: an
//! export raises them, and an administrator lowers one with `chepoch` after
//! a packet was lost, so the next export sends its operations again.

use std::collections::HashMap;

use packet_format::Header;

use crate::error::{Error, Result};
use crate::ops::Id;
use crate::replica::{LockedReplica, Replica};
use crate::store::state::{self, Member};

/// One planned change of an estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochChange {
    pub origin: Member,
    pub from: u64,
    pub to: u64,
}

/// Checks a `chepoch` request and returns the row and the changes it makes,
/// without changing anything.
pub fn plan_change(
    replica: &Replica,
    row: &str,
    settings: &[String],
) -> Result<(Member, Vec<EpochChange>)> {
    let row = replica.member(row)?;
    if row.replica == replica.identity.replica_id {
        return Err(Error::OwnEpochRow { name: row.name });
    }
    let me = replica.identity.replica_id;
    let mut changes: Vec<EpochChange> = Vec::new();
    for setting in settings {
        let bad = |why: String| Error::BadEpochSetting {
            value: setting.clone(),
            why,
        };
        let (origin, epoch) = setting
            .split_once('=')
            .ok_or_else(|| bad("expected ORIGIN=EPOCH".into()))?;
        let epoch: u64 = epoch
            .trim()
            .parse()
            .map_err(|_| bad(format!("\"{epoch}\" is not a whole number")))?;
        let origin = replica.member(origin.trim())?;
        if origin.replica == me {
            let own = replica.state().epoch(&me, &me)?;
            if epoch > own {
                return Err(bad(format!(
                    "{} has recorded only up to epoch {own}",
                    origin.name
                )));
            }
        }
        if changes.iter().any(|c| c.origin.replica == origin.replica) {
            return Err(bad(format!("{} is named twice", origin.name)));
        }
        changes.push(EpochChange {
            from: replica.state().epoch(&row.replica, &origin.replica)?,
            origin,
            to: epoch,
        });
    }
    Ok((row, changes))
}

/// Applies planned changes in one transaction. The caller holds the lock.
pub fn apply_change(
    replica: &mut LockedReplica,
    row: &Member,
    changes: &[EpochChange],
) -> Result<()> {
    replica.state_mut().transaction(|tx| {
        for change in changes {
            state::set_epoch(tx, &row.replica, &change.origin.replica, change.to)?;
        }
        Ok(())
    })
}

/// What the local replica knows, to annotate targets.
pub struct LocalView {
    pub replica: Id,
    pub own_row: HashMap<Id, u64>,
    pub names: HashMap<Id, String>,
    /// The parts at hand of each logical packet (by packet id), when the
    /// caller knows them (lspacket of a folder): a packet with parts
    /// missing cannot be applied, whatever its epochs say.
    pub parts: HashMap<Id, std::collections::BTreeSet<u32>>,
}

impl LocalView {
    pub fn of(replica: &Replica) -> Result<LocalView> {
        let me = replica.identity.replica_id;
        Ok(LocalView {
            replica: me,
            own_row: replica.state().epoch_row(&me)?,
            names: replica
                .members()?
                .into_iter()
                .map(|m| (m.replica, m.name))
                .collect(),
            parts: HashMap::new(),
        })
    }

    /// Whether this replica can apply a packet with `header` now.
    pub fn readiness(&self, header: &Header) -> Readiness {
        if let Some(present) = self.parts.get(&header.packet_id) {
            if present.len() < header.parts as usize {
                // Every part carries the logical packet's ranges: when a
                // later packet brought all of them, the parts missing are
                // not needed any more (and would never come, a resend
                // having replaced them).
                let applied = !header.epoch_ranges.is_empty()
                    && header.epoch_ranges.iter().all(|(origin, range)| {
                        range.last <= self.own_row.get(origin).copied().unwrap_or(0)
                    });
                if applied {
                    return Readiness::Superseded {
                        present: present.iter().copied().collect(),
                        total: header.parts,
                    };
                }
                return Readiness::MissingParts {
                    present: present.iter().copied().collect(),
                    total: header.parts,
                };
            }
        }
        let mut applied = true;
        for (origin, range) in &header.epoch_ranges {
            let have = self.own_row.get(origin).copied().unwrap_or(0);
            if range.last > have {
                applied = false;
            }
            if range.first > have + 1 {
                return Readiness::Waits {
                    origin: self
                        .names
                        .get(origin)
                        .cloned()
                        .unwrap_or_else(|| origin.to_hex()),
                    first: have + 1,
                    last: range.first - 1,
                    have,
                };
            }
        }
        if applied {
            Readiness::Applied
        } else {
            Readiness::Ready
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Applied,
    /// Parts of the logical packet are not at hand (`present` are, of
    /// `total`).
    MissingParts {
        present: Vec<u32>,
        total: u32,
    },
    /// Some parts are missing (`present` are, of `total`), but everything
    /// the logical packet carries is applied here already (a later packet
    /// brought it): nothing waits for the rest.
    Superseded {
        present: Vec<u32>,
        total: u32,
    },
    /// Changes `first..=last` from `origin` must arrive first.
    Waits {
        origin: String,
        first: u64,
        last: u64,
        have: u64,
    },
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Ready => write!(f, "can be applied now"),
            Readiness::Applied => write!(f, "already applied"),
            Readiness::MissingParts { present, total } => {
                write!(f, "{}", missing_parts_note(present, *total))
            }
            Readiness::Superseded { present, total } => {
                let missing: Vec<u32> = (1..=*total).filter(|p| !present.contains(p)).collect();
                write!(
                    f,
                    "superseded: everything it carries is applied already ({} of {total} not needed)",
                    numbered("part", "parts", &missing)
                )
            }
            Readiness::Waits {
                origin,
                first,
                last,
                have,
            } => match first == last {
                true => write!(
                    f,
                    "waits for change {first} from {origin}; this replica has {have}"
                ),
                false => write!(
                    f,
                    "waits for changes {first}-{last} from {origin}; this replica has {have}"
                ),
            },
        }
    }
}

/// What a logical packet with only some parts at hand waits for, in words:
/// "waits for part 2 of 3 (has parts 1 and 3)". `present` is sorted.
/// lspacket and -import say it alike.
pub fn missing_parts_note(present: &[u32], total: u32) -> String {
    let missing: Vec<u32> = (1..=total).filter(|p| !present.contains(p)).collect();
    format!(
        "waits for {} of {total} (has {})",
        numbered("part", "parts", &missing),
        if present.is_empty() {
            "none".to_string()
        } else {
            numbered("part", "parts", present)
        }
    )
}

/// "part 2", "parts 1 and 3", "parts 1, 2 and 4"; long lists shortened.
fn numbered(one: &str, many: &str, numbers: &[u32]) -> String {
    let shown: Vec<String> = numbers.iter().take(8).map(u32::to_string).collect();
    match shown.len() {
        0 => format!("no {many}"),
        1 => format!("{one} {}", shown[0]),
        _ if numbers.len() > shown.len() => {
            format!("{many} {}, … ({} in all)", shown.join(", "), numbers.len())
        }
        n => format!("{many} {} and {}", shown[..n - 1].join(", "), shown[n - 1]),
    }
}

#[cfg(test)]
mod parts_tests {
    use super::missing_parts_note;

    #[test]
    fn missing_parts_are_said_in_words() {
        assert_eq!(
            missing_parts_note(&[1, 3], 3),
            "waits for part 2 of 3 (has parts 1 and 3)"
        );
        assert_eq!(
            missing_parts_note(&[2], 4),
            "waits for parts 1, 3 and 4 of 4 (has part 2)"
        );
        let present: Vec<u32> = (1..=20).collect();
        assert_eq!(
            missing_parts_note(&present, 30),
            "waits for parts 21, 22, 23, 24, 25, 26, 27, 28, … (10 in all) of 30 (has parts 1, 2, 3, 4, 5, 6, 7, 8, … (20 in all))"
        );
    }
}
