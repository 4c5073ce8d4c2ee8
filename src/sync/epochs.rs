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
}

impl LocalView {
    pub fn of(replica: &Replica) -> Result<LocalView> {
        let me = replica.identity.replica_id;
        Ok(LocalView {
            replica: me,
            own_row: replica
                .state()
                .epoch_table()?
                .remove(&me)
                .unwrap_or_default(),
            names: replica
                .members()?
                .into_iter()
                .map(|m| (m.replica, m.name))
                .collect(),
        })
    }

    /// Whether this replica can apply a packet with `header` now.
    pub fn readiness(&self, header: &Header) -> Readiness {
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
            Readiness::Waits {
                origin,
                first,
                last,
                have,
            } => write!(
                f,
                "waits for changes {first}-{last} from {origin}; this replica has {have}"
            ),
        }
    }
}
