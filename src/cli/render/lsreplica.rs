//! `lsreplica`: the family's members as this replica knows them.

use std::fmt::Write;

use crate::error::{printable, Result};
use crate::replica::Replica;
use crate::store::identity;

/// Renders the member listing. `long` adds the packet log and epoch rows.
pub fn render_members(replica: &Replica, long: bool) -> Result<String> {
    let me = replica.identity.replica_id;
    let members = replica.members()?;
    let table = replica.state().epoch_table()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Family \"{}\" (family id {}), {} member{}:",
        replica.identity.family_name,
        replica.identity.family_id,
        members.len(),
        if members.len() == 1 { "" } else { "s" }
    );
    let width = members.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for member in &members {
        let local = if member.replica == me {
            " (this replica)"
        } else {
            ""
        };
        let fingerprint = identity::fingerprint(&member.public_key);
        if !long {
            let _ = writeln!(
                out,
                "  {:<width$}  key {fingerprint}{local}",
                printable(&member.name)
            );
            continue;
        }
        let _ = writeln!(out, "replica \"{}\"{local}", printable(&member.name));
        let _ = writeln!(out, "  replica id:        {}", member.replica);
        let _ = writeln!(out, "  key fingerprint:   {fingerprint}");
        // The key itself, for a relay host's shipping.toml `trusted_keys`.
        let _ = writeln!(
            out,
            "  public key:        {}",
            hex::encode(member.public_key)
        );
        if member.replica != me {
            for (label, direction) in [
                ("last sent:        ", "sent"),
                ("last received:    ", "received"),
            ] {
                let text = match replica.state().last_packet(direction, &member.replica)? {
                    Some(p) => format!(
                        "{} (sequence {}, {})",
                        // A packet file's name, from elsewhere (a bay).
                        printable(&p.file_name),
                        p.sequence,
                        crate::sys::clock::format_time_ns(p.at_ns)
                    ),
                    None => "none".into(),
                };
                let _ = writeln!(out, "  {label} {text}");
            }
        }
        let row = table.get(&member.replica);
        let entries: Vec<String> = members
            .iter()
            .map(|origin| {
                let epoch = row
                    .and_then(|r| r.get(&origin.replica))
                    .copied()
                    .unwrap_or(0);
                format!("{}={epoch}", printable(&origin.name))
            })
            .collect();
        let kind = if member.replica == me {
            "exact"
        } else {
            "estimate"
        };
        let _ = writeln!(out, "  epoch row ({kind}): {}", entries.join(" "));
    }
    Ok(out)
}
