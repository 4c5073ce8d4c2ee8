//! `lsepoch` and `chepoch`: the epoch table, MultiSite's epoch number matrix.
//!
//! Row R, column O holds the highest epoch of origin O's operations that R
//! has. This replica's own row is exact. The other rows are estimates: an
//! export raises them, and an administrator lowers one with `chepoch` after
//! a packet was lost, so the next export sends its operations again.

use std::fmt::Write;

use crate::error::{Error, Result};
use crate::replica::{LockedReplica, Replica};
use crate::store::state::{self, Member};

/// Renders the rows named in `rows` (names or ids), or all of them.
pub fn render_rows(replica: &Replica, rows: &[String]) -> Result<String> {
    let me = replica.identity.replica_id;
    let members = replica.members()?;
    let selected: Vec<Member> = if rows.is_empty() {
        members.clone()
    } else {
        rows.iter()
            .map(|name| replica.member(name))
            .collect::<Result<_>>()?
    };
    let table = replica.state().epoch_table()?;
    let width = members.iter().map(|m| m.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "For replica family \"{}\" (family id {}):",
        replica.identity.family_name, replica.identity.family_id
    );
    for row in &selected {
        let kind = if row.replica == me {
            "this replica; exact"
        } else {
            "estimate"
        };
        let _ = writeln!(out, "Epochs in row \"{}\" ({kind}):", row.name);
        let values = table.get(&row.replica);
        for origin in &members {
            let epoch = values
                .and_then(|v| v.get(&origin.replica))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "  {:<width$} = {epoch:<8} (replica id {})",
                origin.name, origin.replica
            );
        }
    }
    Ok(out)
}

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
