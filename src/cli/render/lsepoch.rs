//! `lsepoch`: the epoch table as MultiSite prints it.

use std::fmt::Write;

use crate::error::{printable, Result};
use crate::replica::Replica;
use crate::store::state::Member;

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
        let _ = writeln!(out, "Epochs in row \"{}\" ({kind}):", printable(&row.name));
        let values = table.get(&row.replica);
        for origin in &members {
            let epoch = values
                .and_then(|v| v.get(&origin.replica))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "  {:<width$} = {epoch:<8} (replica id {})",
                printable(&origin.name),
                origin.replica
            );
        }
    }
    Ok(out)
}
