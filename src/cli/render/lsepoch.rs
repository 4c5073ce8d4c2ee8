//! `lsepoch`: the epoch table as MultiSite prints it, with what each
//! sibling confirmed beside this replica's estimate of it.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use crate::error::{printable, Result};
use crate::ops::Id;
use crate::replica::Replica;
use crate::store::state::{Confirmed, Member};
use crate::sys::clock::{format_time_ns, rfc3339_ns};

/// Version of the JSON listing's shape; raised when a field changes meaning
/// or goes (new fields may be added without it).
pub const JSON_VERSION: u32 = 1;

/// `lsepoch -fmt json`.
#[derive(Debug, Serialize)]
pub struct EpochTable {
    pub version: u32,
    pub family: String,
    pub family_id: String,
    pub replica: String,
    pub rows: Vec<EpochRow>,
}

/// One member's row.
#[derive(Debug, Serialize)]
pub struct EpochRow {
    pub replica: String,
    pub replica_id: String,
    /// This replica's own row: exact. Any other row is an estimate.
    pub exact: bool,
    /// Removed from the family (`rmreplica`): its row no longer changes,
    /// and it holds back nothing.
    pub removed: bool,
    pub origins: Vec<EpochCell>,
}

/// One origin of a row.
#[derive(Debug, Serialize)]
pub struct EpochCell {
    pub origin: String,
    pub origin_id: String,
    /// The row's epoch: exact for this replica, else the estimate (what
    /// was sent to that member, or learnt it has).
    pub epoch: u64,
    /// What that member confirmed having (from the epoch row of its
    /// newest packet); absent in this replica's row and before the member
    /// sent anything.
    pub confirmed: Option<u64>,
    /// When that confirmation arrived (RFC 3339, UTC).
    pub confirmed_at: Option<String>,
}

/// The table, rows named in `rows` (names or ids) or all of them.
pub fn table(replica: &Replica, rows: &[String]) -> Result<EpochTable> {
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
    let confirmed = replica.state().confirmed_table()?;
    let removed: Vec<Id> = replica
        .state()
        .removed_members()?
        .into_iter()
        .map(|r| r.replica)
        .collect();
    let empty: HashMap<Id, Confirmed> = HashMap::new();
    Ok(EpochTable {
        version: JSON_VERSION,
        family: replica.identity.family_name.clone(),
        family_id: replica.identity.family_id.to_hex(),
        replica: replica.identity.replica_name.clone(),
        rows: selected
            .iter()
            .map(|row| {
                let values = table.get(&row.replica);
                let own = row.replica == me;
                let confirmed = confirmed.get(&row.replica).unwrap_or(&empty);
                EpochRow {
                    replica: row.name.clone(),
                    replica_id: row.replica.to_hex(),
                    exact: own,
                    removed: removed.contains(&row.replica),
                    origins: members
                        .iter()
                        .map(|origin| {
                            let c = confirmed.get(&origin.replica).filter(|_| !own);
                            EpochCell {
                                origin: origin.name.clone(),
                                origin_id: origin.replica.to_hex(),
                                epoch: values
                                    .and_then(|v| v.get(&origin.replica))
                                    .copied()
                                    .unwrap_or(0),
                                confirmed: c.map(|c| c.epoch),
                                confirmed_at: c.map(|c| rfc3339_ns(c.at_ns)),
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
    })
}

/// Renders the rows named in `rows` (names or ids), or all of them.
pub fn render_rows(replica: &Replica, rows: &[String]) -> Result<String> {
    let listing = table(replica, rows)?;
    let confirmed = replica.state().confirmed_table()?;
    let width = listing
        .rows
        .first()
        .map(|r| r.origins.iter().map(|o| o.origin.len()).max().unwrap_or(0))
        .unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "For replica family \"{}\" (family id {}):",
        replica.identity.family_name, replica.identity.family_id
    );
    for row in &listing.rows {
        let kind = if row.exact {
            "this replica; exact"
        } else if row.removed {
            "estimate; REMOVED from the family by rmreplica, it holds back nothing"
        } else {
            "estimate"
        };
        let _ = writeln!(
            out,
            "Epochs in row \"{}\" ({kind}):",
            printable(&row.replica)
        );
        let row_id = Id::from_hex(&row.replica_id).unwrap_or(Id([0; 16]));
        for cell in &row.origins {
            let mut line = format!(
                "  {:<width$} = {:<8} (replica id {})",
                printable(&cell.origin),
                cell.epoch,
                cell.origin_id
            );
            if !row.exact {
                let origin = Id::from_hex(&cell.origin_id).unwrap_or(Id([0; 16]));
                let c = confirmed.get(&row_id).and_then(|r| r.get(&origin));
                match c {
                    Some(c) => {
                        let _ = write!(
                            line,
                            "  confirmed {} on {}",
                            c.epoch,
                            format_time_ns(c.at_ns)
                        );
                    }
                    None => line.push_str("  confirmed: nothing yet"),
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(out)
}
